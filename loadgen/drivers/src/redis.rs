//! `redis.command`'s driver: one command per request on a Redis service,
//! in RESP2 over a plain TCP connection (no client library: a command is
//! an array of bulk strings, a reply one of five types).
//!
//! Connections are pooled per engine runtime, one request in flight per
//! connection, at most [`MAX_CONNECTIONS`] per runtime; a connection that
//! failed is dropped and the next request opens a new one.
//!
//! Outcomes: `redis_error` for an error reply (`-ERR …`), `connect`,
//! `io` for a connection lost mid-request, `bad_response` for a reply that
//! is not RESP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gauntlet_engine::Connections;
use gauntlet_recorder::Outcome;
use gauntlet_scenario::RedisCommand;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::data::{Ctx, Rng, Template};
use crate::pool::Pools;
use crate::{Call, Chain, Target};

/// Most connections one engine runtime opens per operation.
pub const MAX_CONNECTIONS: usize = 32;
/// Largest bulk reply read.
const MAX_BULK: usize = 64 << 20;
/// Deepest nesting of arrays read.
const MAX_DEPTH: usize = 8;

type Conn = BufReader<TcpStream>;

/// A prepared `redis.command`.
pub struct RedisCall {
    target: Target,
    args: Vec<Template>,
    seed: u64,
    stream: u64,
    next: AtomicU64,
    pools: Pools<Conn>,
}

pub fn prepare(c: &RedisCommand, at: &crate::PrepareAt) -> Result<RedisCall, String> {
    Ok(RedisCall {
        target: at.target.clone(),
        args: c
            .command
            .iter()
            .map(|a| Template::text(a, &at.shared.counters))
            .collect(),
        seed: at.seed,
        stream: at.stream,
        next: AtomicU64::new(0),
        pools: Pools::new(MAX_CONNECTIONS),
    })
}

/// A command as RESP: an array of bulk strings.
pub fn encode(args: &[String]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A reply: `Ok(true)` a value, `Ok(false)` an error reply, `Err` unreadable.
pub async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    depth: usize,
) -> Result<bool, String> {
    let mut line = Vec::new();
    let n = r
        .read_until(b'\n', &mut line)
        .await
        .map_err(|_| "io".to_owned())?;
    if n == 0 {
        return Err("io".to_owned());
    }
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err("bad_response".to_owned());
    }
    let body = &line[1..line.len() - 2];
    let number = || {
        std::str::from_utf8(body)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| "bad_response".to_owned())
    };
    match line[0] {
        b'+' | b':' => Ok(true),
        b'-' => Ok(false),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(true);
            }
            let len = len as usize;
            if len > MAX_BULK {
                return Err("bad_response".to_owned());
            }
            let mut data = vec![0; len + 2];
            r.read_exact(&mut data).await.map_err(|_| "io".to_owned())?;
            Ok(true)
        }
        b'*' => {
            let len = number()?;
            if depth >= MAX_DEPTH {
                return Err("bad_response".to_owned());
            }
            let mut ok = true;
            for _ in 0..len.max(0) {
                ok &= Box::pin(read_reply(r, depth + 1)).await?;
            }
            Ok(ok)
        }
        _ => Err("bad_response".to_owned()),
    }
}

impl RedisCall {
    async fn run(&self, conns: &Connections, chain: &mut Chain) -> Outcome {
        let pool = self.pools.of(conns);
        let Ok(_permit) = pool.permits.acquire().await else {
            return Outcome::Error("io".to_owned());
        };
        let idle = pool.take();
        let mut conn = match idle {
            Some(c) => c,
            None => {
                let Ok(endpoint) = self.target.endpoint() else {
                    return Outcome::Error("connect".to_owned());
                };
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    TcpStream::connect(endpoint.addr),
                )
                .await
                {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        BufReader::new(s)
                    }
                    _ => return Outcome::Error("connect".to_owned()),
                }
            }
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut rng = Rng::for_request(self.seed, self.stream, n);
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                a.render(
                    &Ctx {
                        seq: chain.seq,
                        key: None,
                    },
                    &mut rng,
                )
            })
            .collect();
        if conn.get_mut().write_all(&encode(&args)).await.is_err() {
            return Outcome::Error("io".to_owned());
        }
        match read_reply(&mut conn, 0).await {
            Ok(ok) => {
                pool.put(conn);
                if ok {
                    Outcome::Ok
                } else {
                    Outcome::Error("redis_error".to_owned())
                }
            }
            Err(kind) => Outcome::Error(kind),
        }
    }
}

impl Call for RedisCall {
    fn perform<'a>(
        &'a self,
        conns: &'a Connections,
        chain: &'a mut Chain,
    ) -> impl std::future::Future<Output = Outcome> + Send + 'a {
        self.run(conns, chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_are_read_whole_and_errors_told_apart() {
        assert_eq!(
            encode(&["SET".into(), "k".into(), "vv".into()]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n"
        );
        let mut r: &[u8] = b"+OK\r\n$3\r\nabc\r\n*2\r\n:1\r\n$-1\r\n-ERR bad\r\n";
        assert_eq!(read_reply(&mut r, 0).await, Ok(true));
        assert_eq!(read_reply(&mut r, 0).await, Ok(true));
        assert_eq!(read_reply(&mut r, 0).await, Ok(true));
        assert_eq!(read_reply(&mut r, 0).await, Ok(false));
        assert_eq!(read_reply(&mut r, 0).await, Err("io".to_owned()));
        let mut bad: &[u8] = b"?what\r\n";
        assert_eq!(
            read_reply(&mut bad, 0).await,
            Err("bad_response".to_owned())
        );
    }
}
