//! Readiness probes, shared by both stacks: an HTTP GET that must answer
//! 2xx, Redis `PING`, and PostgreSQL's startup exchange. Each probe is one
//! bounded attempt; callers poll.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ATTEMPT: Duration = Duration::from_secs(1);

/// `GET path` on `addr` (`host:port`) answers a 2xx status.
pub async fn http_ok(addr: &str, path: &str) -> bool {
    tokio::time::timeout(ATTEMPT, async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 16];
        let mut got = 0;
        while got < 12 {
            let n = stream.read(&mut head[got..]).await.ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let line = std::str::from_utf8(&head[..got]).ok()?;
        let status = line.strip_prefix("HTTP/1.")?.get(2..5)?;
        Some(status.starts_with('2'))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Redis answers `PING` with `+PONG` on `addr`.
pub async fn redis_pong(addr: &str) -> bool {
    tokio::time::timeout(ATTEMPT, async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"+PONG\r\n")
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// PostgreSQL on `addr` accepts connections, judged as `pg_isready` does:
/// a startup message (protocol 3.0, `user` and `database` as given) is
/// answered by anything but an error whose SQLSTATE is 57P03
/// (`cannot_connect_now`: starting up, shutting down, in recovery). An
/// authentication request counts as ready: the server is up.
pub async fn postgres_ready(addr: &str, user: &str, database: &str) -> bool {
    tokio::time::timeout(ATTEMPT, async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes()); // 3.0
        for (k, v) in [("user", user), ("database", database)] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut message = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        stream.write_all(&message).await.ok()?;
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await.ok()?;
        let ready = match head[0] {
            b'R' => true,
            b'E' => {
                let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                let mut fields = vec![0u8; len.saturating_sub(4).min(8192)];
                stream.read_exact(&mut fields).await.ok()?;
                sqlstate(&fields) != Some("57P03")
            }
            _ => false,
        };
        // Terminate, so the server logs no broken connection.
        let _ = stream.write_all(&[b'X', 0, 0, 0, 4]).await;
        Some(ready)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// The `C` (code) field of an ErrorResponse's fields.
fn sqlstate(fields: &[u8]) -> Option<&str> {
    fields
        .split(|b| *b == 0)
        .find_map(|f| f.strip_prefix(b"C"))
        .and_then(|c| std::str::from_utf8(c).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn one_answer(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer).await;
        });
        addr
    }

    #[tokio::test]
    async fn http_probe_reads_the_status() {
        let ok = one_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert!(http_ok(&ok, "/ready").await);
        let unavailable = one_answer(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert!(!http_ok(&unavailable, "/ready").await);
        let garbage = one_answer(b"+PONG\r\n").await;
        assert!(!http_ok(&garbage, "/ready").await);
    }

    #[tokio::test]
    async fn redis_probe_wants_pong() {
        let pong = one_answer(b"+PONG\r\n").await;
        assert!(redis_pong(&pong).await);
        let loading = one_answer(b"-LOADING Redis is loading\r\n").await;
        assert!(!redis_pong(&loading).await);
    }

    #[tokio::test]
    async fn postgres_probe_follows_pg_isready() {
        let ok = one_answer(b"R\0\0\0\x08\0\0\0\0").await;
        assert!(postgres_ready(&ok, "postgres", "postgres").await);
        let starting =
            one_answer(b"E\0\0\0\x37SFATAL\0C57P03\0Mthe database system is starting up\0\0").await;
        assert!(!postgres_ready(&starting, "postgres", "postgres").await);
        let no_role = one_answer(b"E\0\0\0\x1cSFATAL\0C28000\0Mno role\0\0").await;
        assert!(postgres_ready(&no_role, "postgres", "postgres").await);
        let garbage = one_answer(b"HTTP/1.1 200 OK\r\n\r\n").await;
        assert!(!postgres_ready(&garbage, "postgres", "postgres").await);
    }

    #[tokio::test]
    async fn nothing_listening_is_not_ready() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(!http_ok(&format!("127.0.0.1:{port}"), "/ready").await);
        assert!(!redis_pong(&format!("127.0.0.1:{port}")).await);
        assert!(!postgres_ready(&format!("127.0.0.1:{port}"), "postgres", "postgres").await);
    }
}
