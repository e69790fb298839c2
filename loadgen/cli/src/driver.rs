//! Drivers: turn a planned operation into requests against a service and
//! classify the outcome. One driver per protocol; today the fabric's HTTP API.
//!
//! Everything that can be prepared before the run is: request bodies are
//! generated from the seed up front (a pool per operation), so the engine's
//! per-operation cost is a pool pick, a request and a response check.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fabric_wire::{AppendRequest, AppendResponse, EventIn, LatestOffsetResponse};
use gauntlet_control::Endpoint;
use gauntlet_recorder::Outcome;
use gauntlet_scenario::{Action, ReadFrom};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

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
        endpoint: watch::Receiver<Endpoint>,
        /// The request path; the base URL is read per request (it changes
        /// when a container restarts).
        path: String,
        bodies: Vec<Bytes>,
        batch: usize,
        latest: Arc<AtomicI64>,
    },
    StreamRead {
        endpoint: watch::Receiver<Endpoint>,
        stream: String,
        from: ReadFrom,
        max: u32,
        latest: Arc<AtomicI64>,
    },
}

/// Highest offset acknowledged per stream during this run, shared by the
/// operations that touch the stream (`-1`: none known yet).
#[derive(Default)]
pub struct StreamOffsets {
    known: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<AtomicI64>>>,
}

impl StreamOffsets {
    fn get(&self, service: &str, stream: &str) -> Arc<AtomicI64> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .entry((service.to_owned(), stream.to_owned()))
            .or_insert_with(|| Arc::new(AtomicI64::new(-1)))
            .clone()
    }
}

/// Prepares an operation against the service whose endpoint `endpoint` follows.
pub fn prepare(
    op: &PlannedOperation,
    endpoint: watch::Receiver<Endpoint>,
    seed: u64,
    index: usize,
    offsets: &StreamOffsets,
) -> Prepared {
    match &op.action {
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
                latest: offsets.get(&op.service, &a.stream),
            }
        }
        Action::StreamRead(r) => Prepared::StreamRead {
            endpoint,
            stream: r.stream.clone(),
            from: r.from,
            max: r.max,
            latest: offsets.get(&op.service, &r.stream),
        },
    }
}

/// Creates what an operation needs before the run starts (its stream), so
/// the first reads find an empty stream rather than a missing one.
pub async fn setup(client: &HttpClient, op: &PlannedOperation, base: &str) -> Result<(), String> {
    let stream = match &op.action {
        Action::StreamAppend(a) => &a.stream,
        Action::StreamRead(r) => &r.stream,
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

fn http_status(status: StatusCode) -> Outcome {
    Outcome::Error(format!("http_{}", status.as_u16()))
}

impl Prepared {
    /// Runs the operation once; `pick` selects among prepared bodies.
    pub async fn execute(&self, client: &HttpClient, pick: usize) -> Outcome {
        match self {
            Prepared::StreamAppend {
                endpoint,
                path,
                bodies,
                batch,
                latest,
            } => {
                let body = bodies[pick % bodies.len()].clone();
                let uri = format!("{}{path}", endpoint.borrow().base_url());
                match send(client, Method::POST, &uri, body).await {
                    Ok((status, body)) if status.is_success() => {
                        match serde_json::from_slice::<AppendResponse>(&body) {
                            Ok(resp) if resp.offsets.len() == *batch => {
                                if let Some(&last) = resp.offsets.iter().max() {
                                    latest.fetch_max(last as i64, Ordering::Relaxed);
                                }
                                Outcome::Ok
                            }
                            _ => Outcome::Error("bad_response".to_owned()),
                        }
                    }
                    Ok((status, _)) => http_status(status),
                    Err(kind) => Outcome::Error(kind),
                }
            }
            Prepared::StreamRead {
                endpoint,
                stream,
                from,
                max,
                latest,
            } => {
                let base = endpoint.borrow().base_url();
                let offset = match from {
                    ReadFrom::Start => 0,
                    ReadFrom::Offset(o) => *o,
                    ReadFrom::Latest(n) => {
                        let mut known = latest.load(Ordering::Relaxed);
                        if known < 0 {
                            // Nothing appended in this run yet: ask the stream.
                            let uri = format!(
                                "{base}{}",
                                fabric_wire::stream_path(stream, "offsets/latest")
                            );
                            match send(client, Method::GET, &uri, Bytes::new()).await {
                                Ok((status, body)) if status.is_success() => {
                                    match serde_json::from_slice::<LatestOffsetResponse>(&body) {
                                        Ok(resp) => {
                                            known = resp.offset;
                                            latest.fetch_max(known, Ordering::Relaxed);
                                        }
                                        Err(_) => return Outcome::Error("bad_response".to_owned()),
                                    }
                                }
                                Ok((status, _)) => return http_status(status),
                                Err(kind) => return Outcome::Error(kind),
                            }
                        }
                        (known + 1).saturating_sub(*n as i64).max(0) as u64
                    }
                };
                let uri = format!(
                    "{base}{}?offset={offset}&max_messages={max}",
                    fabric_wire::stream_path(stream, "messages")
                );
                match send(client, Method::GET, &uri, Bytes::new()).await {
                    Ok((status, body)) if status.is_success() => {
                        match serde_json::from_slice::<ReadCheck>(&body) {
                            Ok(resp)
                                if resp.status == "success"
                                    && resp.messages.len() <= *max as usize =>
                            {
                                Outcome::Ok
                            }
                            _ => Outcome::Error("bad_response".to_owned()),
                        }
                    }
                    Ok((status, _)) => http_status(status),
                    Err(kind) => Outcome::Error(kind),
                }
            }
        }
    }
}
