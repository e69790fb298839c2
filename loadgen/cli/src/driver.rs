//! Drivers: turn a planned operation into requests against a service and
//! classify the outcome. One driver per protocol; today the fabric's HTTP API.
//!
//! Everything that can be prepared before the run is: request bodies are
//! generated from the seed up front (a pool per operation), so the engine's
//! per-operation cost is a pool pick, a request and a response check.
//!
//! Operations run on the engine's own HTTP client (`crate::http`); the
//! hyper client here serves the control path only (stream set-up, readiness,
//! metrics scrapes).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fabric_wire::{AppendRequest, AppendResponse, EventIn, LatestOffsetResponse};
use gauntlet_recorder::Outcome;
use gauntlet_scenario::{Action, ReadFrom};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::http::{self, Endpoint};
use crate::plan::PlannedOperation;

/// The shape of a read answer (`fabric_wire::ReadResponse`), checked
/// without copying the messages: a read of 100 events would otherwise cost
/// the engine more than the request itself.
#[derive(serde::Deserialize)]
struct ReadCheck<'a> {
    #[serde(borrow)]
    status: &'a str,
    messages: Vec<serde::de::IgnoredAny>,
}

/// Distinct request bodies prepared per append operation.
const BODY_POOL: usize = 64;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1.1 client sized for `max_in_flight` concurrent operations.
pub fn http_client(max_in_flight: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_in_flight)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// What a driver needs to run one operation, prepared once.
pub enum Prepared {
    StreamAppend {
        endpoint: Endpoint,
        path: String,
        bodies: Vec<Bytes>,
        batch: usize,
        latest: Arc<AtomicI64>,
    },
    StreamRead {
        endpoint: Endpoint,
        stream: String,
        from: ReadFrom,
        max: u32,
        latest: Arc<AtomicI64>,
    },
    Http(HttpPrepared),
}

/// Highest offset acknowledged per stream during this run, shared by the
/// operations that touch the stream (`-1`: none known yet).
#[derive(Default)]
pub struct StreamOffsets {
    known: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<AtomicI64>>>,
}

impl StreamOffsets {
    fn get(&self, base: &str, stream: &str) -> Arc<AtomicI64> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .entry((base.to_owned(), stream.to_owned()))
            .or_insert_with(|| Arc::new(AtomicI64::new(-1)))
            .clone()
    }
}

/// Prepares an operation against the service at `base` (`http://127.0.0.1:PORT`).
pub fn prepare(
    op: &PlannedOperation,
    base: &str,
    seed: u64,
    index: usize,
    offsets: &StreamOffsets,
) -> Result<Prepared, String> {
    let endpoint = Endpoint::parse(base)?;
    Ok(match &op.action {
        Action::StreamAppend(a) => {
            let mut rng = ChaCha8Rng::seed_from_u64(
                seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let bodies = (0..BODY_POOL)
                .map(|_| {
                    let events = (0..a.batch)
                        .map(|_| {
                            let mut payload = vec![0u8; a.payload.0 as usize];
                            rng.fill_bytes(&mut payload);
                            EventIn {
                                payload: fabric_wire::encode_payload(&payload),
                                headers: Default::default(),
                            }
                        })
                        .collect();
                    Bytes::from(serde_json::to_vec(&AppendRequest { events }).unwrap_or_default())
                })
                .collect();
            Prepared::StreamAppend {
                endpoint,
                path: fabric_wire::stream_path(&a.stream, "events"),
                bodies,
                batch: a.batch as usize,
                latest: offsets.get(base, &a.stream),
            }
        }
        Action::Http(h) => Prepared::Http(HttpPrepared::new(h, endpoint)),
        Action::StreamRead(r) => Prepared::StreamRead {
            endpoint,
            stream: r.stream.clone(),
            from: r.from,
            max: r.max,
            latest: offsets.get(base, &r.stream),
        },
    })
}

/// Creates what an operation needs before the run starts (its stream), so
/// the first reads find an empty stream rather than a missing one.
pub async fn setup(client: &HttpClient, op: &PlannedOperation, base: &str) -> Result<(), String> {
    let stream = match &op.action {
        Action::StreamAppend(a) => &a.stream,
        Action::StreamRead(r) => &r.stream,
        Action::Http(_) => return Ok(()),
    };
    let uri = format!("{base}/api/v1/streams/{stream}");
    match send(client, Method::PUT, &uri, Bytes::new()).await {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, body)) => Err(format!(
            "creating stream `{stream}` for operation `{}` answered {status}: {}",
            op.name,
            String::from_utf8_lossy(&body)
        )),
        Err(kind) => Err(format!(
            "creating stream `{stream}` for operation `{}` failed ({kind})",
            op.name
        )),
    }
}

/// Why a request failed, as an error kind for the recorder.
fn transport_error(e: &hyper_util::client::legacy::Error) -> String {
    if e.is_connect() {
        "connect".to_owned()
    } else {
        "io".to_owned()
    }
}

async fn send(
    client: &HttpClient,
    method: Method,
    uri: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let mut builder = Request::builder().method(method).uri(uri);
    if !body.is_empty() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|_| "bad_request".to_owned())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| transport_error(&e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|_| "io".to_owned())?
        .to_bytes();
    Ok((status, body))
}

/// Header of requests with a JSON body.
const JSON_HEADER: &[u8] = b"Content-Type: application/json\r\n";

fn failed(f: http::Failure) -> Outcome {
    Outcome::Error(f.kind().to_owned())
}

fn http_code(status: u16) -> Outcome {
    Outcome::Error(format!("http_{status}"))
}

// ---- The generic `http` operation (minimal: fixed URL, headers, body, expected status).

/// An `http` operation, its request head and body rendered once.
pub struct HttpPrepared {
    endpoint: Endpoint,
    method: String,
    path: String,
    headers: Vec<u8>,
    body: Vec<u8>,
    expect: u16,
}

impl HttpPrepared {
    fn new(h: &gauntlet_scenario::HttpRequest, endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            method: h.method.clone(),
            path: h.url.clone(),
            headers: http::header_lines(h.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            body: h.body.clone().unwrap_or_default().into_bytes(),
            expect: h.expect,
        }
    }

    async fn execute(&self, client: &http::Client) -> Outcome {
        match client
            .send(
                &self.endpoint,
                &self.method,
                &self.path,
                &self.headers,
                &self.body,
            )
            .await
        {
            Ok(resp) if resp.status == self.expect => Outcome::Ok,
            Ok(resp) => http_code(resp.status),
            Err(f) => failed(f),
        }
    }
}

// ---- end of the `http` operation.

impl Prepared {
    /// Runs the operation once; `pick` selects among prepared bodies.
    pub async fn execute(&self, client: &http::Client, pick: usize) -> Outcome {
        match self {
            Prepared::Http(h) => h.execute(client).await,
            Prepared::StreamAppend {
                endpoint,
                path,
                bodies,
                batch,
                latest,
            } => {
                let body = &bodies[pick % bodies.len()];
                match client.send(endpoint, "POST", path, JSON_HEADER, body).await {
                    Ok(resp) if resp.is_success() => {
                        match serde_json::from_slice::<AppendResponse>(resp.body()) {
                            Ok(r) if r.offsets.len() == *batch => {
                                if let Some(&last) = r.offsets.iter().max() {
                                    latest.fetch_max(last as i64, Ordering::Relaxed);
                                }
                                Outcome::Ok
                            }
                            _ => Outcome::Error("bad_response".to_owned()),
                        }
                    }
                    Ok(resp) => http_code(resp.status),
                    Err(f) => failed(f),
                }
            }
            Prepared::StreamRead {
                endpoint,
                stream,
                from,
                max,
                latest,
            } => {
                let offset = match from {
                    ReadFrom::Start => 0,
                    ReadFrom::Offset(o) => *o,
                    ReadFrom::Latest(n) => {
                        let mut known = latest.load(Ordering::Relaxed);
                        if known < 0 {
                            // Nothing appended in this run yet: ask the stream.
                            let path = fabric_wire::stream_path(stream, "offsets/latest");
                            match client.send(endpoint, "GET", &path, b"", b"").await {
                                Ok(resp) if resp.is_success() => {
                                    match serde_json::from_slice::<LatestOffsetResponse>(
                                        resp.body(),
                                    ) {
                                        Ok(r) => {
                                            known = r.offset;
                                            latest.fetch_max(known, Ordering::Relaxed);
                                        }
                                        Err(_) => return Outcome::Error("bad_response".to_owned()),
                                    }
                                }
                                Ok(resp) => return http_code(resp.status),
                                Err(f) => return failed(f),
                            }
                        }
                        (known + 1).saturating_sub(*n as i64).max(0) as u64
                    }
                };
                let path = format!(
                    "{}?offset={offset}&max_messages={max}",
                    fabric_wire::stream_path(stream, "messages")
                );
                match client.send(endpoint, "GET", &path, b"", b"").await {
                    Ok(resp) if resp.is_success() => {
                        match serde_json::from_slice::<ReadCheck>(resp.body()) {
                            Ok(r) if r.status == "success" && r.messages.len() <= *max as usize => {
                                Outcome::Ok
                            }
                            _ => Outcome::Error("bad_response".to_owned()),
                        }
                    }
                    Ok(resp) => http_code(resp.status),
                    Err(f) => failed(f),
                }
            }
        }
    }
}
