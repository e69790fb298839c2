//! Shared helpers of the end-to-end tests: start the real `fabric-node`
//! binary on loopback, wait for readiness, check JSON errors.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use fabric_wire::ReadResponse;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_fabric-node");
pub const CONFIG_ENV: [&str; 10] = [
    "SERVER_HTTP_ADDR",
    "METRICS_ADDR",
    "STORAGE_DATA_DIR",
    "STORAGE_FSYNC_POLICY",
    "STORAGE_FSYNC_INTERVAL",
    "STORAGE_SEGMENT_BYTES",
    "LOGGING_LEVEL",
    "LOGGING_FORMAT",
    "FLOWMESH_AUTO_CREATE",
    "FLOWMESH_AUTH_TOKEN",
];

pub struct Node {
    pub child: Child,
    pub base: String,
    pub metrics_base: Option<String>,
    pub log: Arc<Mutex<Vec<String>>>,
}

fn addr_after(line: &str, marker: &str) -> Option<String> {
    let at = line.find(marker)? + marker.len();
    Some(
        line[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
            .collect(),
    )
}

impl Node {
    pub fn start(data: &Path, args: &[&str]) -> Node {
        Self::start_env(data, args, &[])
    }

    /// Starts a node with extra environment variables.
    pub fn start_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(BIN);
        for k in CONFIG_ENV {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(["--http-addr", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn fabric-node");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
                sink.lock().unwrap().push(line);
            }
        });
        let want_metrics = args.contains(&"--metrics-addr");
        let (mut base, mut metrics_base) = (None, None);
        while base.is_none() || (want_metrics && metrics_base.is_none()) {
            let line = rx
                .recv_timeout(Duration::from_secs(15))
                .unwrap_or_else(|_| panic!("no address announced; log: {:?}", log.lock().unwrap()));
            if let Some(a) = addr_after(&line, "serving metrics on ") {
                metrics_base = Some(format!("http://{a}"));
            } else if let Some(a) = addr_after(&line, "listening on ") {
                base = Some(format!("http://{a}"));
            }
        }
        Node {
            child,
            base: base.unwrap(),
            metrics_base,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0);
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        for _ in 0..300 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("node did not exit; log: {:?}", self.log.lock().unwrap());
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub async fn wait_ready(c: &reqwest::Client, node: &Node) {
    for _ in 0..400 {
        if let Ok(r) = c.get(node.url("/ready")).send().await {
            if r.status() == 200 {
                return;
            }
            assert_eq!(r.status(), 503);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["code"], "unavailable");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("node never became ready");
}

pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) {
    assert_eq!(resp.status(), status);
    let ct = resp.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("application/json"), "content type {ct}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string());
}

/// Every message of `stream`, paging through reads.
pub async fn read_all(c: &reqwest::Client, node: &Node, stream: &str) -> Vec<fabric_wire::Message> {
    let mut out: Vec<fabric_wire::Message> = Vec::new();
    let mut from = 0;
    for _ in 0..10_000 {
        let r = c
            .get(node.url(&format!(
                "/api/v1/streams/{stream}/messages?offset={from}&max_messages=1000"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: ReadResponse = r.json().await.unwrap();
        let Some(last) = page.messages.last() else {
            return out;
        };
        from = last.offset + 1;
        out.extend(page.messages);
    }
    panic!("read did not terminate");
}
