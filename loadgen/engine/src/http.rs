//! The engine's HTTP/1.1 client: keep-alive connections in a LIFO pool per
//! endpoint, requests written and answers parsed in place.
//!
//! Why not hyper's client: its legacy pool costs a connection task, a
//! dispatch channel and several allocations per request, and wakes two
//! tasks per answer. The engine sends many small requests on loopback and
//! must cost less CPU per request than the system it measures, so a request
//! here is one `write` of a reused buffer and one or two `read`s into
//! another; the answer is parsed with `httparse` and handed to the caller
//! as a borrowed slice (no copy, no allocation). Supported: `Content-Length`
//! and chunked bodies, bodies ending at connection close, `Connection:
//! close`. Not supported (not needed by a load generator on loopback): TLS,
//! proxies, redirects, pipelining, 1xx answers other than being skipped.
//!
//! A pooled connection that the server closed while idle is detected when
//! its first read returns nothing; the request is then retried once on a
//! fresh connection (nothing of it was answered). Connections belong to the
//! runtime that opened them: make one [`Client`] per runtime.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most response headers parsed.
const MAX_HEADERS: usize = 64;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted (a bigger answer is an `io` error).
const MAX_BODY: usize = 256 * 1024 * 1024;
/// Idle connections kept per endpoint.
const MAX_IDLE: usize = 4096;

/// Where requests go: a resolved address and the `Host` header for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub host: String,
}

impl Endpoint {
    /// Parses `http://host:port` (a trailing `/` or path is refused) and
    /// resolves the host once.
    pub fn parse(base: &str) -> Result<Self, String> {
        let rest = base.strip_prefix("http://").ok_or_else(|| {
            format!("`{base}` is not an http:// URL (hint: write e.g. `http://127.0.0.1:8080`)")
        })?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(format!(
                "`{base}` must be a base URL without a path (hint: `http://127.0.0.1:8080`)"
            ));
        }
        let addr = resolve(host)?;
        Ok(Self {
            addr,
            host: host.to_owned(),
        })
    }
}

/// Resolves `host` or `host:port` (port 80 when none) once, to its first
/// address; shared by the engine's connection kinds.
pub fn resolve(host: &str) -> Result<SocketAddr, String> {
    let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{host}` resolves to no address"))
}

/// How a request failed, as an error kind for the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be opened.
    Connect,
    /// The connection broke, or the answer was not valid HTTP/1.1.
    Io,
}

impl Failure {
    pub fn kind(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Io => "io",
        }
    }
}

struct Conn {
    stream: TcpStream,
    /// Bytes read from the socket; holds the head and, unless chunked, the body.
    read: Vec<u8>,
    /// The request being written; reused.
    write: Vec<u8>,
    /// A decoded chunked body.
    chunked: Vec<u8>,
}

#[derive(Default)]
struct Idle {
    conns: Vec<(SocketAddr, Conn)>,
}

/// A pool of keep-alive connections, any number of endpoints.
#[derive(Default)]
pub struct Client {
    idle: Mutex<Idle>,
}

/// An answer; its body borrows the connection's buffer, which goes back to
/// the pool when the answer is dropped (if the connection may be reused).
pub struct Response<'a> {
    pub status: u16,
    client: &'a Client,
    addr: SocketAddr,
    conn: Option<Conn>,
    body: BodyAt,
    reuse: bool,
}

#[derive(Clone, Copy)]
enum BodyAt {
    Read(usize, usize),
    Chunked,
}

impl Response<'_> {
    pub fn body(&self) -> &[u8] {
        match (self.body, &self.conn) {
            (BodyAt::Read(start, end), Some(c)) => &c.read[start..end],
            (BodyAt::Chunked, Some(c)) => &c.chunked,
            (_, None) => &[],
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Drop for Response<'_> {
    fn drop(&mut self) {
        if self.reuse
            && let Some(conn) = self.conn.take()
        {
            self.client.put(self.addr, conn);
        }
    }
}

/// Writes a request head into `out`.
fn write_head(
    out: &mut Vec<u8>,
    method: &str,
    host: &str,
    path: &str,
    headers: &[u8],
    body_len: usize,
) {
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(headers);
    if body_len > 0 || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "Content-Length: {body_len}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Renders headers as the lines [`Client::send`] takes.
pub fn header_lines<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The head of an answer: status, where the body starts, how it is framed.
struct Head {
    status: u16,
    head_len: usize,
    framing: Framing,
    close: bool,
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn parse_head(buf: &[u8], method: &str) -> Result<Option<Head>, Failure> {
    // Left uninitialised: httparse writes the headers it finds, and filling
    // 64 empty ones first cost as much as parsing an answer (seen with perf).
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::Io),
    };
    let status = resp.code.ok_or(Failure::Io)?;
    let mut close = resp.version == Some(0);
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).map_err(|_| Failure::Io)?;
            length = Some(v.trim().parse::<usize>().map_err(|_| Failure::Io)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .split(|&b| b == b',')
                .next_back()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value;
            if v.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    let framing =
        if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(Failure::Io);
            }
            Framing::Length(n)
        } else {
            close = true;
            Framing::UntilClose
        };
    Ok(Some(Head {
        status,
        head_len,
        framing,
        close,
    }))
}

/// Decodes a chunked body from `buf` into `out`; `Ok(Some(end))` once the
/// last chunk and trailers are in `buf` (`end`: bytes consumed).
fn decode_chunked(buf: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, Failure> {
    out.clear();
    let mut at = 0;
    loop {
        let Some(line_end) = find_crlf(&buf[at..]) else {
            return Ok(None);
        };
        let line = &buf[at..at + line_end];
        let size_text = line.split(|&b| b == b';').next().unwrap_or(line);
        let size_text = std::str::from_utf8(size_text).map_err(|_| Failure::Io)?;
        let size = usize::from_str_radix(size_text.trim(), 16).map_err(|_| Failure::Io)?;
        at += line_end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(end) = find_crlf(&buf[at..]) else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if out.len() + size > MAX_BODY {
            return Err(Failure::Io);
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(Failure::Io);
        }
        at += size + 2;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

impl Client {
    pub fn new() -> Self {
        Self::default()
    }

    fn take(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let at = idle.conns.iter().rposition(|(a, _)| *a == addr)?;
        Some(idle.conns.swap_remove(at).1)
    }

    fn put(&self, addr: SocketAddr, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.conns.len() < MAX_IDLE {
            idle.conns.push((addr, conn));
        }
    }

    async fn connect(addr: SocketAddr) -> Result<Conn, Failure> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|_| Failure::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            read: Vec::with_capacity(16 * 1024),
            write: Vec::with_capacity(4 * 1024),
            chunked: Vec::new(),
        })
    }

    /// Sends one request and reads its answer. `path` includes the query;
    /// `headers` are header lines, each ending in CRLF (see [`header_lines`]).
    pub async fn send<'c>(
        &'c self,
        endpoint: &Endpoint,
        method: &str,
        path: &str,
        headers: &[u8],
        body: &[u8],
    ) -> Result<Response<'c>, Failure> {
        let addr = endpoint.addr;
        // A pooled connection may have been closed by the server while idle;
        // then the request is sent again, once, on a fresh connection.
        for _ in 0..2 {
            let (mut conn, reused) = match self.take(addr) {
                Some(c) => (c, true),
                None => (Self::connect(addr).await?, false),
            };
            write_head(
                &mut conn.write,
                method,
                &endpoint.host,
                path,
                headers,
                body.len(),
            );
            conn.write.extend_from_slice(body);
            if conn.stream.write_all(&conn.write).await.is_err() {
                if reused {
                    continue;
                }
                return Err(Failure::Io);
            }
            match Self::read_answer(&mut conn, method).await {
                Ok((status, body_at, close)) => {
                    return Ok(Response {
                        status,
                        client: self,
                        addr,
                        conn: Some(conn),
                        body: body_at,
                        reuse: !close,
                    });
                }
                Err(None) if reused => continue,
                Err(_) => return Err(Failure::Io),
            }
        }
        Err(Failure::Io)
    }

    /// Reads one answer; `Err(None)`: the connection closed before any byte.
    async fn read_answer(
        conn: &mut Conn,
        method: &str,
    ) -> Result<(u16, BodyAt, bool), Option<Failure>> {
        conn.read.clear();
        let head = loop {
            let n = read_more(conn).await.map_err(Some)?;
            if n == 0 {
                return Err(if conn.read.is_empty() {
                    None
                } else {
                    Some(Failure::Io)
                });
            }
            if let Some(head) = parse_head(&conn.read, method).map_err(Some)? {
                if (100..200).contains(&head.status) {
                    // An interim answer: drop it, read the real one.
                    conn.read.drain(..head.head_len);
                    continue;
                }
                break head;
            }
            if conn.read.len() > MAX_HEAD {
                return Err(Some(Failure::Io));
            }
        };
        let start = head.head_len;
        let mut close = head.close;
        let body = match head.framing {
            Framing::Length(n) => {
                while conn.read.len() < start + n {
                    if read_more(conn).await.map_err(Some)? == 0 {
                        return Err(Some(Failure::Io));
                    }
                }
                if conn.read.len() > start + n {
                    // Bytes beyond the answer: nothing was pipelined, so the
                    // stream is out of step; do not reuse it.
                    close = true;
                }
                BodyAt::Read(start, start + n)
            }
            Framing::UntilClose => {
                while read_more(conn).await.map_err(Some)? > 0 {
                    if conn.read.len() > start + MAX_BODY {
                        return Err(Some(Failure::Io));
                    }
                }
                BodyAt::Read(start, conn.read.len())
            }
            Framing::Chunked => loop {
                let mut out = std::mem::take(&mut conn.chunked);
                let done = decode_chunked(&conn.read[start..], &mut out);
                conn.chunked = out;
                match done.map_err(Some)? {
                    Some(used) => {
                        if start + used != conn.read.len() {
                            close = true;
                        }
                        break BodyAt::Chunked;
                    }
                    None => {
                        if read_more(conn).await.map_err(Some)? == 0 {
                            return Err(Some(Failure::Io));
                        }
                    }
                }
            },
        };
        Ok((head.status, body, close))
    }
}

/// Reads what the socket has into the connection's buffer; 0 at EOF.
async fn read_more(conn: &mut Conn) -> Result<usize, Failure> {
    if conn.read.capacity() - conn.read.len() < 4096 {
        conn.read.reserve(conn.read.capacity().max(8192));
    }
    conn.stream
        .read_buf(&mut conn.read)
        .await
        .map_err(|_| Failure::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_framed_by_length_chunks_or_close() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "GET")
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 200);
        assert!(matches!(h.framing, Framing::Length(5)));
        assert!(!h.close);
        let h = parse_head(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            "POST",
        )
        .unwrap()
        .unwrap();
        assert!(matches!(h.framing, Framing::Chunked));
        assert!(h.close);
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", "GET")
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Framing::UntilClose));
        assert!(h.close);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Len", "GET")
                .unwrap()
                .is_none()
        );
        assert!(parse_head(b"garbage\r\n\r\n", "GET").is_err());
    }

    #[test]
    fn chunked_bodies_decode_only_when_complete() {
        let mut out = Vec::new();
        let full = b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nTrailer: y\r\n\r\n";
        assert_eq!(decode_chunked(full, &mut out).unwrap(), Some(full.len()));
        assert_eq!(out, b"hello world");
        for cut in 0..full.len() {
            assert_eq!(
                decode_chunked(&full[..cut], &mut out).unwrap(),
                None,
                "{cut}"
            );
        }
        assert!(decode_chunked(b"zz\r\n", &mut out).is_err());
    }

    #[test]
    fn request_heads_carry_host_and_length() {
        let mut out = Vec::new();
        let headers = header_lines([("X-A", "1")]);
        write_head(&mut out, "POST", "127.0.0.1:9", "/a?b=1", &headers, 3);
        assert_eq!(
            out,
            b"POST /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n"
        );
        write_head(&mut out, "GET", "h", "/", b"", 0);
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    }

    #[test]
    fn endpoints_need_a_base_url() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(e.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(e.host, "127.0.0.1:8080");
        assert!(Endpoint::parse("https://127.0.0.1:1").is_err());
        assert!(Endpoint::parse("http://127.0.0.1:1/x").is_err());
    }

    /// A real socket: keep-alive reuse, a server that closes idle
    /// connections (the request is retried), chunked answers.
    #[tokio::test]
    async fn requests_reuse_connections_and_survive_a_closed_idle_one() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut accepted = 0;
            // First connection: two answers, then the server closes it.
            // Second connection: a chunked answer.
            while accepted < 2 {
                let (mut s, _) = listener.accept().await.unwrap();
                accepted += 1;
                let answers: &[&[u8]] = if accepted == 1 {
                    &[
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                    ]
                } else {
                    &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"]
                };
                for answer in answers {
                    let mut buf = vec![0u8; 4096];
                    let mut got = 0;
                    while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        got += s.read(&mut buf[got..]).await.unwrap();
                    }
                    s.write_all(answer).await.unwrap();
                }
            }
            accepted
        });
        let client = Client::new();
        let endpoint = Endpoint::parse(&format!("http://{addr}")).unwrap();
        let r = client.send(&endpoint, "GET", "/", b"", b"").await.unwrap();
        assert_eq!((r.status, r.body()), (200, &b"ok"[..]));
        drop(r);
        let r = client
            .send(&endpoint, "POST", "/x", b"", b"{}")
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        assert!(r.body().is_empty());
        drop(r);
        // The server closed the first connection after two answers.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let r = client.send(&endpoint, "GET", "/", b"", b"").await.unwrap();
        assert_eq!((r.status, r.body()), (200, &b"abc"[..]));
        drop(r);
        assert_eq!(server.await.unwrap(), 2);
    }
}
