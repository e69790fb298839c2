//! What the end-to-end tests share: the real `actor-node` binary started
//! on loopback and driven over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_actor-node");

pub struct Node {
    pub child: Child,
    pub base: String,
    pub log: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::Client,
}

impl Node {
    pub fn start(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("AIRSSYS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AIRSSYS_TEST_FAULTS", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(["--http-port", "0", "--metrics-port", "0", "--data-dir"])
            .arg(data)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn actor-node");
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
                sink.lock().unwrap().push(line);
            }
        });
        let base = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no address announced; log: {:?}", log.lock().unwrap()));
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(a) = v["http_addr"].as_str()
            {
                break format!("http://{a}");
            }
        };
        Node {
            child,
            base,
            log,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    pub async fn ready(&self) {
        for _ in 0..400 {
            if let Ok(r) = self.http.get(self.url("/ready")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("never ready; log: {:?}", self.log.lock().unwrap());
    }

    pub async fn put(&self, name: &str, toml: &str) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(&format!("/api/v1/components/{name}")))
            .header("content-type", "text/toml")
            .body(toml.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, name: &str, keys: &[&str]) -> (u16, Value) {
        let messages: Vec<Value> = keys
            .iter()
            .map(|k| json!({"key": k, "payload": 1}))
            .collect();
        self.post(
            &format!("/api/v1/components/{name}/messages"),
            json!({"messages": messages}),
        )
        .await
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..1500 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("did not exit; log: {:?}", self.log.lock().unwrap());
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

pub fn spec(kind: &str, extra: &str) -> String {
    format!("[behavior]\nkind = \"{kind}\"\n{extra}")
}

/// `head` forwarding to the counter `count`.
pub async fn head_to_counter(n: &Node) {
    assert_eq!(
        n.put("head", &spec("forward", "to = \"count\"")).await.0,
        201
    );
    assert_eq!(n.put("count", &spec("counter", "")).await.0, 201);
}

pub fn err_code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}
