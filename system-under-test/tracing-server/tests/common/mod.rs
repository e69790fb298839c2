//! Test support: PostgreSQL and Redis booted as local processes by
//! Gauntlet's process stack, `tracing-server` started against them, a
//! WebSocket client speaking the protocol crate's types, and direct
//! PostgreSQL access to check what was stored.

#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use gauntlet_stack::ProcessStack;
use gauntlet_stack::bins::Locator;
use gauntlet_stack::gauntlet_control::Stack as _;
use reflow_tracing_protocol::{TraceEvent, TracingRequest, TracingResponse};
use tokio_tungstenite::tungstenite::Message;

const SCENARIO: &str = r#"
name: tracing-server-test
stack:
  services:
    db: { kind: postgres }
    cache: { kind: redis }
workload:
  phases:
    - { name: steady, duration: 1s, rate: 1/s }
  operations:
    - { name: probe, http: { service: db, url: / } }
"#;

/// PostgreSQL + Redis of one test.
pub struct Env {
    pub stack: ProcessStack,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub async fn boot() -> Env {
        let scenario = gauntlet_scenario::load("tracing-server-test.yaml", SCENARIO, &[])
            .expect("the test scenario loads");
        let dir = tempfile::tempdir().unwrap();
        let stack = ProcessStack::boot(&scenario, dir.path(), &Locator::default(), true)
            .await
            .expect("postgresql-15 and redis-server must be installed (ci/setup.sh installs them)");
        Env { stack, dir }
    }

    pub fn db_url(&self) -> String {
        let e = self.stack.endpoint("db").unwrap();
        format!("postgresql://postgres@{}:{}/postgres", e.host, e.port)
    }

    pub fn redis_url(&self) -> String {
        let e = self.stack.endpoint("cache").unwrap();
        format!("redis://{}:{}", e.host, e.port)
    }

    pub async fn pg(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.db_url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL answers");
        tokio::spawn(conn);
        client
    }

    /// Starts a server with the test defaults and `vars` over them.
    pub fn server(&self, name: &str, vars: &[(&str, &str)]) -> Server {
        let mut all: Vec<(String, String)> = vec![
            ("TRACING_BIND_ADDRESS".into(), "127.0.0.1:0".into()),
            ("TRACING_DATABASE_URL".into(), self.db_url()),
            ("TRACING_REDIS_URL".into(), self.redis_url()),
            ("RUST_LOG".into(), "info".into()),
        ];
        for (k, v) in vars {
            all.retain(|(a, _)| a != k);
            all.push((k.to_string(), v.to_string()));
        }
        Server::start(self.dir.path(), name, &all, None)
    }

    pub async fn shutdown(self) {
        let reports = self.stack.shutdown().await;
        assert!(reports.iter().all(|r| r.graceful), "{reports:?}");
    }
}

pub struct Server {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tracing-server")
}

impl Server {
    pub fn start(
        dir: &Path,
        name: &str,
        vars: &[(String, String)],
        config: Option<&Path>,
    ) -> Server {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        for k in [
            "TRACING_BIND_ADDRESS",
            "TRACING_DATABASE_URL",
            "TRACING_REDIS_URL",
            "TRACING_MAX_CONNECTIONS",
            "TRACING_METRICS_ADDRESS",
            "TRACING_BATCH_SIZE",
            "TRACING_BATCH_TIMEOUT_MS",
            "TRACING_MAX_EVENT_SIZE",
            "TRACING_MAX_PENDING_EVENTS",
            "JWT_SECRET",
            "TRACING_REQUIRE_AUTH",
        ] {
            cmd.env_remove(k);
        }
        cmd.envs(vars.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().expect("tracing-server starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("\"listening\"")) {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                break v["addr"].as_str().unwrap().parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the server did not announce its address:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child: Some(child),
            addr,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).await
    }

    /// Polls `/ready` (bounded) until it answers `want`.
    pub async fn wait_ready(&self, want: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, body) = self.get("/ready").await;
            if code == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/ready stayed {code} {body} (wanted {want})\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/health` (bounded) until `pred` holds on (status, json).
    pub async fn wait_health(
        &self,
        what: &str,
        pred: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, body) = self.get("/health").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if pred(code, &v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "/health never showed {what}: {code} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .find(|l| {
                l.starts_with(name)
                    && l[name.len()..].starts_with([' ', '{'])
                    && !l.starts_with('#')
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Waits (bounded) for the exit; returns the exit code (None: by signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let run = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code: u16 = text.split(' ').nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|x| x.1.to_owned())
            .unwrap_or_default();
        // Chunked bodies: keep the JSON / text between the chunk sizes.
        let body = if text
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(&body)
        } else {
            body
        };
        Some((code, body))
    };
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .ok()
        .flatten()
        .unwrap_or((0, String::new()))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Client {
    pub ws: Ws,
}

impl Client {
    pub async fn connect(server: &Server) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(server.url())
            .await
            .expect("connects");
        Client { ws }
    }

    pub async fn send(&mut self, req: &TracingRequest) {
        self.ws
            .send(Message::Text(serde_json::to_string(req).unwrap().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    /// The next data frame (text or zstd binary) as a response.
    pub async fn recv(&mut self) -> TracingResponse {
        let deadline = Duration::from_secs(30);
        loop {
            let msg = tokio::time::timeout(deadline, self.ws.next())
                .await
                .expect("an answer within 30 s")
                .expect("the connection is open")
                .expect("no socket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Binary(b) => {
                    let mut out = Vec::new();
                    zstd::stream::read::Decoder::new(&b[..])
                        .unwrap()
                        .read_to_end(&mut out)
                        .unwrap();
                    return serde_json::from_slice(&out).unwrap();
                }
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => continue,
            }
        }
    }

    pub async fn ask(&mut self, req: &TracingRequest) -> TracingResponse {
        self.send(req).await;
        self.recv().await
    }

    /// Records one event; the answer.
    pub async fn record(&mut self, trace: uuid::Uuid, event: &TraceEvent) -> TracingResponse {
        self.ask(&TracingRequest::RecordEvent {
            trace_id: reflow_tracing_protocol::TraceId(trace),
            event: event.clone(),
        })
        .await
    }

    /// Waits for the close frame; its code.
    pub async fn closed(&mut self) -> Option<u16> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(30), self.ws.next()).await {
                Ok(Some(Ok(Message::Close(c)))) => return c.map(|c| u16::from(c.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
        None
    }
}

pub fn acked(r: &TracingResponse) -> bool {
    matches!(
        r,
        TracingResponse::EventRecorded {
            success: true,
            error: None
        }
    )
}

pub fn event(actor: &str) -> TraceEvent {
    TraceEvent::message_sent(actor.to_owned(), "out".into(), "Msg".into(), 42)
}

/// Event ids stored in PostgreSQL among `ids`.
pub async fn stored(pg: &tokio_postgres::Client, ids: &[uuid::Uuid]) -> usize {
    let row = pg
        .query_one(
            "SELECT count(*) FROM tracing.events WHERE event_id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0) as usize
}
