//! Drivers: turn a planned operation into requests against a service and
//! classify the outcome. Two protocols: the fabric's HTTP API (streams,
//! consumer groups, queues, KV) and generic HTTP.
//!
//! Each operation is prepared once ([`prepare`]): paths, generators and
//! headers are built before the run, so the per-request cost is a payload
//! draw, a request and a response check. The service's address is *not*
//! baked in: every request reads the service's current [`Endpoint`] from a
//! `watch` channel ([`Target`]), so a container restarted on a new host
//! port is followed at once.
//!
//! Operations run on the engine's own HTTP client (`crate::http`): a
//! request writes a reused buffer and parses the answer in place. The hyper
//! client here ([`HttpClient`]) serves the control path only (readiness,
//! metrics scrapes).
//!
//! An operation may chain steps (`then:`); what a step acts on — the jobs a
//! reserve got, the key a put wrote, the offset a read reached — travels in
//! a [`Chain`]. Each step is recorded as its own operation
//! (`OPERATION.STEP`), its latency counted from the end of the step before.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fabric_wire::{
    AppendResponse, EnqueueResponse, JobsResponse, LatestOffsetResponse, ReserveResponse,
};
use gauntlet_control::Endpoint;
use gauntlet_recorder::Outcome;
use gauntlet_scenario::{Action, Expect, KeySpec, Missing, Payload, ReadFrom};
use http_body_util::Full;
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::data::{Counters, Ctx, KeyGen, PayloadGen, Rng, Template};
use crate::http;
use crate::plan::PlannedOperation;

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

/// The last endpoint seen and the engine client's endpoint for it.
type Resolved = (Endpoint, Arc<http::Endpoint>);

/// Where a service is reached now: its endpoint (which may change during
/// the run) and, for an external base URL, a path prefix.
#[derive(Clone)]
pub struct Target {
    endpoint: watch::Receiver<Endpoint>,
    prefix: Arc<str>,
    /// The engine client's endpoint for the last endpoint seen, so a
    /// request neither resolves nor allocates while the endpoint stays.
    resolved: Arc<std::sync::Mutex<Option<Resolved>>>,
}

impl Target {
    pub fn new(endpoint: watch::Receiver<Endpoint>, prefix: &str) -> Self {
        Self {
            endpoint,
            prefix: prefix.trim_end_matches('/').into(),
            resolved: Arc::default(),
        }
    }

    /// The service's current endpoint for the engine's client: an IP
    /// address is used as is; a host name is resolved when the endpoint
    /// changes, not per request.
    pub fn endpoint(&self) -> Result<Arc<http::Endpoint>, String> {
        let ep = self.endpoint.borrow();
        let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, at)) = &*resolved
            && seen.host == ep.host
            && seen.port == ep.port
        {
            return Ok(at.clone());
        }
        let host = ep.host.trim_start_matches('[').trim_end_matches(']');
        let addr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => std::net::SocketAddr::new(ip, ep.port),
            Err(_) => {
                use std::net::ToSocketAddrs as _;
                (host, ep.port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| "connect".to_owned())?
            }
        };
        let at = Arc::new(http::Endpoint {
            addr,
            host: if addr.is_ipv6() {
                format!("[{host}]:{}", ep.port)
            } else {
                format!("{host}:{}", ep.port)
            },
        });
        *resolved = Some((ep.clone(), at.clone()));
        Ok(at)
    }

    /// `path` under the service's base URL (with an external URL's prefix).
    fn path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        if self.prefix.is_empty() {
            std::borrow::Cow::Borrowed(path)
        } else {
            std::borrow::Cow::Owned(format!("{}{path}", self.prefix))
        }
    }

    /// The absolute URL of `path` at the service's current endpoint.
    pub fn url(&self, path: &str) -> String {
        let ep = self.endpoint.borrow();
        let mut url = String::with_capacity(24 + ep.host.len() + self.prefix.len() + path.len());
        let _ = write!(url, "http://{}:{}{}{}", ep.host, ep.port, self.prefix, path);
        url
    }
}

/// State shared by the operations of a run: the highest offset known per
/// stream, and the templates' named counters.
#[derive(Default)]
pub struct Shared {
    offsets: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<AtomicI64>>>,
    groups: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<i64>>>>,
    pub counters: Counters,
}

impl Shared {
    /// The offset this run last committed for a consumer group, behind the
    /// lock every commit of the group takes: a group's commits are sent one
    /// at a time, in increasing order, as one consumer would.
    fn group(&self, service: &str, stream: &str, group: &str) -> Arc<tokio::sync::Mutex<i64>> {
        let mut known = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        known
            .entry(format!("{service}\u{0}{stream}\u{0}{group}"))
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(-1)))
            .clone()
    }

    /// Highest offset acknowledged or seen on `stream` of `service` (`-1`: none yet).
    fn latest(&self, service: &str, stream: &str) -> Arc<AtomicI64> {
        let mut known = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        known
            .entry((service.to_owned(), stream.to_owned()))
            .or_insert_with(|| Arc::new(AtomicI64::new(-1)))
            .clone()
    }
}

/// What one step hands to the next.
#[derive(Debug, Default)]
pub struct Chain {
    seq: u64,
    /// Jobs leased: (id, lease id).
    jobs: Vec<(String, Option<String>)>,
    key: Option<String>,
    offset: Option<u64>,
    /// The history, when the scenario has `checks:`.
    tap: Option<Arc<crate::history::Tap>>,
}

/// The shape of a read answer, keeping only each message's offset.
#[derive(serde::Deserialize)]
struct ReadOffsets<'a> {
    #[serde(borrow)]
    status: &'a str,
    messages: Vec<OffsetOnly>,
}

#[derive(serde::Deserialize)]
struct OffsetOnly {
    offset: u64,
}

enum Call {
    StreamAppend {
        target: Target,
        path: String,
        payload: PayloadGen,
        bodies: Bodies,
        batch: u32,
        latest: Arc<AtomicI64>,
    },
    StreamRead {
        target: Target,
        stream: String,
        from: ReadFrom,
        max: u32,
        latest: Arc<AtomicI64>,
        /// `follow`: the next offset to read.
        cursor: AtomicU64,
    },
    StreamCommit {
        target: Target,
        stream: String,
        path: String,
        latest: Arc<AtomicI64>,
        /// The group's last committed offset; held while committing.
        committed: Arc<tokio::sync::Mutex<i64>>,
    },
    QueueEnqueue {
        target: Target,
        path: String,
        payload: PayloadGen,
        bodies: Bodies,
        delay_s: f64,
    },
    QueueReserve {
        target: Target,
        path: String,
        body: Bytes,
        many: bool,
    },
    QueueSettle {
        target: Target,
        /// `/api/v1/queues/t/ns/q/jobs/`.
        jobs_path: String,
        nack: bool,
        delay_s: Option<f64>,
    },
    Kv {
        target: Target,
        verb: KvVerb,
        /// `/api/v1/kv/t/ns/s/keys/`.
        keys_path: String,
        /// `None`: the key the previous step used.
        key: Option<KeyGen>,
        missing: Missing,
    },
    Http {
        target: Target,
        method: String,
        url: Template,
        /// The URL rendered once, when it has no placeholder.
        fixed_url: Option<String>,
        /// Header lines, as the engine's client writes them.
        headers: Vec<u8>,
        body: Option<PayloadGen>,
        expect: Expect,
        seed: u64,
        stream: u64,
    },
}

/// Request bodies prepared before the run when they do not depend on the
/// request (random payloads): a pool drawn from the seed, request *n*
/// taking body *n* mod the pool's size. Templates are rendered per request.
enum Bodies {
    Pool(Vec<Bytes>),
    Render,
}

/// Most bodies, and most bytes, a pool holds.
const BODY_POOL: usize = 64;
const POOL_BYTES: usize = 32 << 20;

impl Bodies {
    fn new(payload: &Payload, per_body: u64, make: impl Fn(&Ctx) -> Bytes) -> Self {
        let Payload::Random(dist) = payload else {
            return Bodies::Render;
        };
        // Base64 and the JSON around it.
        let estimate = (dist.max() * 4 / 3 + 32) * per_body;
        let n = (POOL_BYTES as u64 / estimate.max(1)).clamp(1, BODY_POOL as u64);
        Bodies::Pool((0..n).map(|seq| make(&Ctx { seq, key: None })).collect())
    }

    fn get(&self, ctx: &Ctx, make: impl Fn(&Ctx) -> Bytes) -> Bytes {
        match self {
            Bodies::Pool(pool) => pool[(ctx.seq % pool.len() as u64) as usize].clone(),
            Bodies::Render => make(ctx),
        }
    }
}

fn enqueue_body(payload: &PayloadGen, delay_s: f64, ctx: &Ctx) -> Bytes {
    json_bytes(&fabric_wire::EnqueueRequest {
        payload: fabric_wire::encode_payload(&payload.generate(ctx, 0)),
        delay_seconds: delay_s,
        headers: Default::default(),
    })
}

fn put_body(value: &PayloadGen, ttl_s: Option<f64>, ctx: &Ctx) -> Bytes {
    json_bytes(&fabric_wire::KvPutRequest {
        value: fabric_wire::encode_payload(&value.generate(ctx, 0)),
        ttl_seconds: ttl_s,
    })
}

enum KvVerb {
    Put {
        value: PayloadGen,
        bodies: Bodies,
        ttl_s: Option<f64>,
    },
    Get,
    Delete,
}

/// An operation ready to run: its action and its chained steps.
pub struct Prepared {
    head: Call,
    /// Each step with the index it is recorded under.
    steps: Vec<(usize, Call)>,
    seq: AtomicU64,
    /// Records checked operations in the history (`checks:` only).
    tap: Option<Arc<crate::history::Tap>>,
}

/// Why preparing an operation failed (a header the HTTP stack refuses).
#[derive(Debug, thiserror::Error)]
#[error("operation `{operation}`: {message}")]
pub struct PrepareError {
    pub operation: String,
    pub message: String,
}

/// The fabric resource an action touches, inherited along a chain.
fn resource_of<'a>(action: &'a Action, previous: Option<&'a str>) -> Option<&'a str> {
    action.resource().map(|(_, name)| name).or(previous)
}

/// Prepares an operation. `targets` gives each service's [`Target`] by
/// scenario name; `index` numbers the operation so its generators draw
/// their own bytes.
pub fn prepare(
    op: &PlannedOperation,
    targets: &dyn Fn(&str) -> Target,
    seed: u64,
    index: usize,
    shared: &Shared,
) -> Result<Prepared, PrepareError> {
    let error = |message: String| PrepareError {
        operation: op.name.clone(),
        message,
    };
    let stream_id = |step: usize| ((index as u64) << 8) | step as u64;
    let head = prepare_call(
        &op.action,
        &op.service,
        targets(&op.service),
        None,
        seed,
        stream_id(0),
        shared,
    )
    .map_err(error)?;
    let mut previous = resource_of(&op.action, None);
    let mut steps = Vec::new();
    for (i, step) in op.steps.iter().enumerate() {
        let call = prepare_call(
            &step.action,
            &step.service,
            targets(&step.service),
            previous,
            seed,
            stream_id(i + 1),
            shared,
        )
        .map_err(error)?;
        previous = resource_of(&step.action, previous);
        steps.push((step.record_as, call));
    }
    Ok(Prepared {
        head,
        steps,
        seq: AtomicU64::new(0),
        tap: None,
    })
}

fn secs(d: gauntlet_scenario::Duration) -> f64 {
    d.as_secs_f64()
}

fn prepare_call(
    action: &Action,
    service: &str,
    target: Target,
    previous: Option<&str>,
    seed: u64,
    stream: u64,
    shared: &Shared,
) -> Result<Call, String> {
    let inherited = |name: Option<&String>| -> String {
        name.map(String::as_str)
            .or(previous)
            .unwrap_or_default()
            .to_owned()
    };
    let payload = |p: &Payload, field: u64| {
        PayloadGen::new(p, seed, stream ^ (field << 48), &shared.counters)
    };
    let key = |k: &Option<KeySpec>| {
        k.as_ref()
            .map(|k| KeyGen::new(k, seed, stream ^ (7 << 48), &shared.counters))
    };
    Ok(match action {
        Action::StreamAppend(a) => {
            let gen_payload = payload(&a.payload, 1);
            let batch = a.batch;
            Call::StreamAppend {
                target,
                path: fabric_wire::stream_path(&a.stream, "events"),
                bodies: Bodies::new(&a.payload, u64::from(batch), |ctx| {
                    append_body(&gen_payload, batch, ctx)
                }),
                payload: gen_payload,
                batch,
                latest: shared.latest(service, &a.stream),
            }
        }
        Action::StreamRead(r) => Call::StreamRead {
            target,
            stream: r.stream.clone(),
            from: r.from,
            max: r.max,
            latest: shared.latest(service, &r.stream),
            cursor: AtomicU64::new(0),
        },
        Action::StreamCommit(c) => {
            let stream = inherited(c.stream.as_ref());
            Call::StreamCommit {
                target,
                path: fabric_wire::stream_path(
                    &stream,
                    &format!("consumer-groups/{}/offsets", c.group),
                ),
                latest: shared.latest(service, &stream),
                committed: shared.group(service, &stream, &c.group),
                stream,
            }
        }
        Action::QueueEnqueue(e) => {
            let gen_payload = payload(&e.payload, 1);
            let delay_s = secs(e.delay);
            Call::QueueEnqueue {
                target,
                path: format!("/api/v1/queues/{}/jobs", e.queue),
                bodies: Bodies::new(&e.payload, 1, |ctx| {
                    enqueue_body(&gen_payload, delay_s, ctx)
                }),
                payload: gen_payload,
                delay_s,
            }
        }
        Action::QueueReserve(r) => Call::QueueReserve {
            target,
            path: format!("/api/v1/queues/{}/reserve", r.queue),
            body: json_bytes(&fabric_wire::ReserveRequest {
                max_jobs: None,
                visibility_timeout_seconds: Some(secs(r.visibility)),
                long_poll_timeout_seconds: Some(secs(r.wait)),
            }),
            many: false,
        },
        Action::QueueReceive(r) => Call::QueueReserve {
            target,
            path: format!("/api/v1/queues/{}/receive", r.queue),
            body: json_bytes(&fabric_wire::ReserveRequest {
                max_jobs: Some(r.max),
                visibility_timeout_seconds: Some(secs(r.visibility)),
                long_poll_timeout_seconds: Some(secs(r.wait)),
            }),
            many: true,
        },
        Action::QueueAck(a) => Call::QueueSettle {
            target,
            jobs_path: format!("/api/v1/queues/{}/jobs/", inherited(a.queue.as_ref())),
            nack: false,
            delay_s: None,
        },
        Action::QueueNack(n) => Call::QueueSettle {
            target,
            jobs_path: format!("/api/v1/queues/{}/jobs/", inherited(n.queue.as_ref())),
            nack: true,
            delay_s: n.delay.map(secs),
        },
        Action::KvPut(p) => {
            let value = payload(&p.value, 1);
            let ttl_s = p.ttl.map(secs);
            Call::Kv {
                target,
                verb: KvVerb::Put {
                    bodies: Bodies::new(&p.value, 1, |ctx| put_body(&value, ttl_s, ctx)),
                    value,
                    ttl_s,
                },
                keys_path: format!("/api/v1/kv/{}/keys/", inherited(p.store.as_ref())),
                key: key(&p.key),
                missing: Missing::Error,
            }
        }
        Action::KvGet(g) => Call::Kv {
            target,
            verb: KvVerb::Get,
            keys_path: format!("/api/v1/kv/{}/keys/", inherited(g.store.as_ref())),
            key: key(&g.key),
            missing: g.missing,
        },
        Action::KvDelete(d) => Call::Kv {
            target,
            verb: KvVerb::Delete,
            keys_path: format!("/api/v1/kv/{}/keys/", inherited(d.store.as_ref())),
            key: key(&d.key),
            missing: d.missing,
        },
        Action::Http(h) => {
            let method = Method::from_bytes(h.method.as_bytes())
                .map_err(|_| format!("`{}` is not an HTTP method", h.method))?;
            let mut headers = Vec::new();
            for (name, value) in &h.headers {
                let n = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("`{name}` is not a header name"))?;
                let v = HeaderValue::from_str(value)
                    .map_err(|_| format!("header `{name}` has a value HTTP cannot carry"))?;
                headers.push((n, v));
            }
            let json = h.body.as_ref().is_some_and(|b| PayloadGen::is_json(&b.0));
            if json
                && !headers
                    .iter()
                    .any(|(n, _)| *n == hyper::header::CONTENT_TYPE)
            {
                headers.push((
                    hyper::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ));
            }
            let url = Template::text(&h.url, &shared.counters);
            Call::Http {
                target,
                method: method.as_str().to_owned(),
                fixed_url: url
                    .is_constant()
                    .then(|| url.render(&Ctx { seq: 0, key: None }, &mut Rng::new(0))),
                url,
                headers: http::header_lines(
                    headers
                        .iter()
                        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))),
                ),
                body: h.body.as_ref().map(|b| payload(&b.0, 1)),
                expect: h.expect.clone(),
                seed,
                stream,
            }
        }
    })
}

/// Creates the fabric resources an operation needs (streams, queues, KV
/// stores) before the run, so the first reads find an empty resource
/// rather than a missing one. Generic HTTP operations need nothing.
pub async fn setup(
    client: &http::Client,
    op: &PlannedOperation,
    targets: &dyn Fn(&str) -> Target,
) -> Result<(), String> {
    let mut previous = None;
    let actions = std::iter::once((&op.action, &op.service))
        .chain(op.steps.iter().map(|s| (&s.action, &s.service)));
    for (action, service) in actions {
        let kind = match action {
            Action::Http(_) => continue,
            Action::StreamAppend(_) | Action::StreamRead(_) | Action::StreamCommit(_) => "streams",
            Action::QueueEnqueue(_)
            | Action::QueueReserve(_)
            | Action::QueueReceive(_)
            | Action::QueueAck(_)
            | Action::QueueNack(_) => "queues",
            Action::KvPut(_) | Action::KvGet(_) | Action::KvDelete(_) => "kv",
        };
        let Some(name) = resource_of(action, previous) else {
            continue;
        };
        previous = Some(name);
        let target = targets(service);
        let path = format!("/api/v1/{kind}/{name}");
        match send(client, &target, "PUT", &path, b"").await {
            Ok(resp) if resp.is_success() => {}
            Ok(resp) => {
                return Err(format!(
                    "creating {kind} `{name}` for operation `{}` answered {}: {}",
                    op.name,
                    resp.status,
                    String::from_utf8_lossy(resp.body())
                ));
            }
            Err(kind_of_error) => {
                return Err(format!(
                    "creating {kind} `{name}` for operation `{}` failed ({kind_of_error})",
                    op.name
                ));
            }
        }
    }
    Ok(())
}

fn json_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// Header of requests with a JSON body.
const JSON_HEADER: &[u8] = b"Content-Type: application/json\r\n";

/// A fabric request on the engine's client: a non-empty body is JSON.
async fn send<'c>(
    client: &'c http::Client,
    target: &Target,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<http::Response<'c>, String> {
    let headers = if body.is_empty() {
        &b""[..]
    } else {
        JSON_HEADER
    };
    send_with(client, target, method, path, headers, body).await
}

/// A request to `path` at the target's current endpoint; `headers` are
/// header lines (see [`http::header_lines`]).
async fn send_with<'c>(
    client: &'c http::Client,
    target: &Target,
    method: &str,
    path: &str,
    headers: &[u8],
    body: &[u8],
) -> Result<http::Response<'c>, String> {
    let endpoint = target.endpoint()?;
    client
        .send(&endpoint, method, &target.path(path), headers, body)
        .await
        .map_err(|f| f.kind().to_owned())
}

/// An answer as the history sees it: status and body, or the error kind.
fn seen<'a>(answer: &'a Result<http::Response<'_>, String>) -> crate::history::Answer<'a> {
    answer
        .as_ref()
        .map(|r| (r.status, r.body()))
        .map_err(String::as_str)
}

fn http_status(status: u16) -> Outcome {
    Outcome::Error(format!("http_{status}"))
}

fn bad_response() -> Outcome {
    Outcome::Error("bad_response".to_owned())
}

/// Percent-encodes a KV key for one path segment (`/` included).
pub(crate) fn encode_segment(out: &mut String, key: &str) {
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The JSON of an append: `{"events":[{"payload":"<base64>"},…]}`.
fn append_body(payload: &PayloadGen, batch: u32, ctx: &Ctx) -> Bytes {
    let mut body = String::with_capacity(16 + batch as usize * 64);
    body.push_str("{\"events\":[");
    for i in 0..batch {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{\"payload\":\"");
        body.push_str(&fabric_wire::encode_payload(
            &payload.generate(ctx, u64::from(i)),
        ));
        body.push_str("\"}");
    }
    body.push_str("]}");
    Bytes::from(body)
}

impl Prepared {
    /// Runs the operation's action once; what it got is left in `chain`
    /// for [`Prepared::run_steps`].
    pub async fn execute(&self, client: &http::Client, chain: &mut Chain) -> Outcome {
        chain.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        chain.tap.clone_from(&self.tap);
        self.head.run(client, chain).await
    }

    /// Records this operation's checked requests in the history.
    pub fn record_history(&mut self, tap: Arc<crate::history::Tap>) {
        self.tap = Some(tap);
    }

    pub fn has_steps(&self) -> bool {
        !self.steps.is_empty()
    }

    /// Runs the chained steps after a successful action, one request at a
    /// time (an ack per job leased), each bounded by `timeout`.
    /// `record(index, outcome, started, done)` is called for every request.
    /// The chain stops at the first failure, or when a step has nothing to
    /// act on (a reserve that found the queue empty).
    pub async fn run_steps(
        &self,
        client: &http::Client,
        mut chain: Chain,
        timeout: Duration,
        mut record: impl FnMut(usize, Outcome, Instant, Instant),
    ) {
        for (record_as, call) in &self.steps {
            if let Call::QueueSettle { .. } = call {
                let jobs = std::mem::take(&mut chain.jobs);
                if jobs.is_empty() {
                    return;
                }
                let mut failed = false;
                for job in &jobs {
                    let start = Instant::now();
                    let outcome = tokio::time::timeout(
                        timeout,
                        call.settle(client, job, chain.tap.as_deref()),
                    )
                    .await
                    .unwrap_or_else(|_| Outcome::Error("timeout".to_owned()));
                    failed |= outcome != Outcome::Ok;
                    record(*record_as, outcome, start, Instant::now());
                }
                if failed {
                    return;
                }
                continue;
            }
            if call.needs_offset() && chain.offset.is_none() {
                return;
            }
            let start = Instant::now();
            let outcome = tokio::time::timeout(timeout, call.run(client, &mut chain))
                .await
                .unwrap_or_else(|_| Outcome::Error("timeout".to_owned()));
            let ok = outcome == Outcome::Ok;
            record(*record_as, outcome, start, Instant::now());
            if !ok {
                return;
            }
        }
    }
}

impl Call {
    /// A commit in a chain commits the offset the previous step reached.
    fn needs_offset(&self) -> bool {
        matches!(self, Call::StreamCommit { .. })
    }

    async fn settle(
        &self,
        client: &http::Client,
        job: &(String, Option<String>),
        tap: Option<&crate::history::Tap>,
    ) -> Outcome {
        let Call::QueueSettle {
            target,
            jobs_path,
            nack,
            delay_s,
        } = self
        else {
            return bad_response();
        };
        let mut path = String::with_capacity(jobs_path.len() + job.0.len() + 6);
        path.push_str(jobs_path);
        encode_segment(&mut path, &job.0);
        path.push_str(if *nack { "/nack" } else { "/ack" });
        let body = json_bytes(&fabric_wire::AckRequest {
            lease_id: job.1.clone(),
            delay_seconds: *delay_s,
        });
        let id = tap
            .filter(|_| !*nack)
            .map(|t| t.invoke_ack(jobs_path, &job.0));
        let answer = send(client, target, "POST", &path, &body).await;
        if let (Some(t), Some(id)) = (tap, id) {
            t.complete_plain(id, seen(&answer));
        }
        match answer {
            Ok(resp) if resp.is_success() => Outcome::Ok,
            Ok(resp) => http_status(resp.status),
            Err(kind) => Outcome::Error(kind),
        }
    }

    async fn run(&self, client: &http::Client, chain: &mut Chain) -> Outcome {
        let seq = chain.seq;
        match self {
            Call::StreamAppend {
                target,
                path,
                payload,
                bodies,
                batch,
                latest,
            } => {
                let body = bodies.get(&Ctx { seq, key: None }, |ctx| {
                    append_body(payload, *batch, ctx)
                });
                let tap = chain.tap.clone();
                let id = tap.as_ref().map(|t| t.invoke_append(path, &body));
                let answer = send(client, target, "POST", path, &body).await;
                if let (Some(t), Some(id)) = (&tap, id) {
                    t.complete_append(id, seen(&answer));
                }
                match answer {
                    Ok(resp) if resp.is_success() => {
                        match serde_json::from_slice::<AppendResponse>(resp.body()) {
                            Ok(resp) if resp.offsets.len() == *batch as usize => {
                                if let Some(&last) = resp.offsets.iter().max() {
                                    latest.fetch_max(last as i64, Ordering::Relaxed);
                                    chain.offset = Some(last);
                                }
                                Outcome::Ok
                            }
                            _ => bad_response(),
                        }
                    }
                    Ok(resp) => http_status(resp.status),
                    Err(kind) => Outcome::Error(kind),
                }
            }
            Call::StreamRead {
                target,
                stream,
                from,
                max,
                latest,
                cursor,
            } => {
                let offset = match from {
                    ReadFrom::Start => 0,
                    ReadFrom::Offset(o) => *o,
                    ReadFrom::Follow => cursor.load(Ordering::Relaxed),
                    ReadFrom::Latest(n) => match known_latest(client, target, stream, latest).await
                    {
                        Ok(known) => (known + 1).saturating_sub(*n as i64).max(0) as u64,
                        Err(outcome) => return outcome,
                    },
                };
                let path = format!(
                    "{}?offset={offset}&max_messages={max}",
                    fabric_wire::stream_path(stream, "messages")
                );
                match send(client, target, "GET", &path, b"").await {
                    Ok(resp) if resp.is_success() => {
                        match serde_json::from_slice::<ReadOffsets>(resp.body()) {
                            Ok(resp)
                                if resp.status == "success"
                                    && resp.messages.len() <= *max as usize
                                    && resp.messages.first().is_none_or(|m| m.offset >= offset) =>
                            {
                                chain.offset = resp.messages.last().map(|m| m.offset);
                                if let Some(last) = chain.offset {
                                    latest.fetch_max(last as i64, Ordering::Relaxed);
                                    if matches!(from, ReadFrom::Follow) {
                                        cursor.fetch_max(last + 1, Ordering::Relaxed);
                                    }
                                }
                                Outcome::Ok
                            }
                            _ => bad_response(),
                        }
                    }
                    Ok(resp) => http_status(resp.status),
                    Err(kind) => Outcome::Error(kind),
                }
            }
            Call::StreamCommit {
                target,
                stream,
                path,
                latest,
                committed,
            } => {
                let target_offset = match chain.offset {
                    Some(o) => o as i64,
                    None => match known_latest(client, target, stream, latest).await {
                        Ok(known) => known,
                        Err(outcome) => return outcome,
                    },
                };
                // One commit of the group at a time, never below the last.
                let mut committed = committed.lock().await;
                let offset = target_offset.max(*committed);
                if offset < 0 {
                    return Outcome::Error("empty_stream".to_owned());
                }
                let body = json_bytes(&fabric_wire::CommitOffsetRequest {
                    offset: offset as u64,
                });
                match send(client, target, "POST", path, &body).await {
                    Ok(resp) if resp.is_success() => {
                        *committed = offset;
                        Outcome::Ok
                    }
                    Ok(resp) => http_status(resp.status),
                    Err(kind) => Outcome::Error(kind),
                }
            }
            Call::QueueEnqueue {
                target,
                path,
                payload,
                bodies,
                delay_s,
            } => {
                let body = bodies.get(&Ctx { seq, key: None }, |ctx| {
                    enqueue_body(payload, *delay_s, ctx)
                });
                let id = chain.tap.as_ref().map(|t| t.invoke_enqueue(path, &body));
                let answer = send(client, target, "POST", path, &body).await;
                if let (Some(t), Some(id)) = (&chain.tap, id) {
                    t.complete_enqueue(id, seen(&answer));
                }
                match answer {
                    Ok(resp) if resp.is_success() => {
                        match serde_json::from_slice::<EnqueueResponse>(resp.body()) {
                            Ok(resp) if !resp.job_id.is_empty() => Outcome::Ok,
                            _ => bad_response(),
                        }
                    }
                    Ok(resp) => http_status(resp.status),
                    Err(kind) => Outcome::Error(kind),
                }
            }
            Call::QueueReserve {
                target,
                path,
                body,
                many,
            } => {
                let id = chain.tap.as_ref().map(|t| t.invoke_receive(path));
                let answer = send(client, target, "POST", path, body).await;
                if let (Some(t), Some(id)) = (&chain.tap, id) {
                    t.complete_receive(id, seen(&answer), *many);
                }
                match answer {
                    Ok(resp) if resp.is_success() => {
                        let jobs = if *many {
                            serde_json::from_slice::<JobsResponse>(resp.body()).map(|r| r.jobs)
                        } else {
                            serde_json::from_slice::<ReserveResponse>(resp.body())
                                .map(|r| r.job.into_iter().collect())
                        };
                        match jobs {
                            Ok(jobs) => {
                                chain.jobs = jobs.into_iter().map(|j| (j.id, j.lease_id)).collect();
                                Outcome::Ok
                            }
                            Err(_) => bad_response(),
                        }
                    }
                    Ok(resp) => http_status(resp.status),
                    Err(kind) => Outcome::Error(kind),
                }
            }
            Call::QueueSettle { .. } => match chain.jobs.first().cloned() {
                Some(job) => self.settle(client, &job, chain.tap.as_deref()).await,
                None => bad_response(),
            },
            Call::Kv {
                target,
                verb,
                keys_path,
                key,
                missing,
            } => {
                let key = match key {
                    Some(keys) => keys.key(seq),
                    None => match chain.key.take() {
                        Some(k) => k,
                        None => return bad_response(),
                    },
                };
                let mut path = String::with_capacity(keys_path.len() + key.len() + 8);
                path.push_str(keys_path);
                encode_segment(&mut path, &key);
                let outcome = match verb {
                    KvVerb::Put {
                        value,
                        bodies,
                        ttl_s,
                    } => {
                        let ctx = Ctx {
                            seq,
                            key: Some(&key),
                        };
                        let body = bodies.get(&ctx, |ctx| put_body(value, *ttl_s, ctx));
                        let id = chain
                            .tap
                            .as_ref()
                            .map(|t| t.invoke_put(keys_path, &key, &body));
                        let answer = send(client, target, "PUT", &path, &body).await;
                        if let (Some(t), Some(id)) = (&chain.tap, id) {
                            t.complete_plain(id, seen(&answer));
                        }
                        match answer {
                            Ok(resp) if resp.is_success() => Outcome::Ok,
                            Ok(resp) => http_status(resp.status),
                            Err(kind) => Outcome::Error(kind),
                        }
                    }
                    KvVerb::Get | KvVerb::Delete => {
                        let method = if matches!(verb, KvVerb::Get) {
                            "GET"
                        } else {
                            "DELETE"
                        };
                        let id = chain
                            .tap
                            .as_ref()
                            .filter(|_| matches!(verb, KvVerb::Delete))
                            .map(|t| t.invoke_delete(keys_path, &key));
                        let answer = send(client, target, method, &path, b"").await;
                        if let (Some(t), Some(id)) = (&chain.tap, id) {
                            t.complete_plain(id, seen(&answer));
                        }
                        match answer {
                            Ok(resp) if resp.is_success() => {
                                if matches!(verb, KvVerb::Get)
                                    && serde_json::from_slice::<fabric_wire::KvGetResponse>(
                                        resp.body(),
                                    )
                                    .is_err()
                                {
                                    bad_response()
                                } else {
                                    Outcome::Ok
                                }
                            }
                            Ok(resp) if resp.status == 404 && *missing == Missing::Ok => {
                                Outcome::Ok
                            }
                            Ok(resp) if resp.status == 404 => {
                                Outcome::Error("not_found".to_owned())
                            }
                            Ok(resp) => http_status(resp.status),
                            Err(kind) => Outcome::Error(kind),
                        }
                    }
                };
                chain.key = Some(key);
                outcome
            }
            Call::Http {
                target,
                method,
                url,
                fixed_url,
                headers,
                body,
                expect,
                seed,
                stream,
            } => {
                let ctx = Ctx { seq, key: None };
                let rendered;
                let path = match fixed_url {
                    Some(path) => path.as_str(),
                    None => {
                        rendered = url.render(&ctx, &mut Rng::for_request(*seed, *stream, seq));
                        rendered.as_str()
                    }
                };
                let bytes = body
                    .as_ref()
                    .map(|b| b.generate(&ctx, 0))
                    .unwrap_or_default();
                match send_with(client, target, method, path, headers, &bytes).await {
                    Ok(resp) if expect.accepts(resp.status) => Outcome::Ok,
                    Ok(resp) => http_status(resp.status),
                    Err(kind) => Outcome::Error(kind),
                }
            }
        }
    }
}

/// The stream's latest offset as this run knows it (`latest`), or, when
/// nothing was appended in this run yet, as the stream says (remembered).
async fn known_latest(
    client: &http::Client,
    target: &Target,
    stream: &str,
    latest: &AtomicI64,
) -> Result<i64, Outcome> {
    let known = latest.load(Ordering::Relaxed);
    if known >= 0 {
        return Ok(known);
    }
    let asked = latest_offset(client, target, stream).await?;
    latest.fetch_max(asked, Ordering::Relaxed);
    Ok(asked)
}

/// `GET …/offsets/latest`: the stream's latest offset (`-1` when empty).
async fn latest_offset(
    client: &http::Client,
    target: &Target,
    stream: &str,
) -> Result<i64, Outcome> {
    let path = fabric_wire::stream_path(stream, "offsets/latest");
    match send(client, target, "GET", &path, b"").await {
        Ok(resp) if resp.is_success() => {
            serde_json::from_slice::<LatestOffsetResponse>(resp.body())
                .map(|r| r.offset)
                .map_err(|_| bad_response())
        }
        Ok(resp) => Err(http_status(resp.status)),
        Err(kind) => Err(Outcome::Error(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_follows_its_endpoint() {
        let (tx, rx) = watch::channel(Endpoint {
            host: "127.0.0.1".into(),
            port: 1000,
        });
        let target = Target::new(rx, "/base/");
        assert_eq!(target.url("/x"), "http://127.0.0.1:1000/base/x");
        tx.send(Endpoint {
            host: "127.0.0.1".into(),
            port: 2000,
        })
        .unwrap();
        assert_eq!(target.url("/x"), "http://127.0.0.1:2000/base/x");
    }

    #[test]
    fn the_client_endpoint_is_kept_until_the_endpoint_moves() {
        let (tx, rx) = watch::channel(Endpoint {
            host: "127.0.0.1".into(),
            port: 1000,
        });
        let target = Target::new(rx, "/base");
        let first = target.endpoint().unwrap();
        assert_eq!(first.addr, "127.0.0.1:1000".parse().unwrap());
        assert_eq!(first.host, "127.0.0.1:1000");
        assert!(Arc::ptr_eq(&first, &target.endpoint().unwrap()));
        assert_eq!(target.path("/x"), "/base/x");
        tx.send(Endpoint {
            host: "localhost".into(),
            port: 2000,
        })
        .unwrap();
        let moved = target.endpoint().unwrap();
        assert_eq!(moved.addr.port(), 2000);
        assert!(moved.addr.ip().is_loopback());
        assert_eq!(moved.host, "localhost:2000");
        let plain = Target::new(
            watch::channel(Endpoint {
                host: "127.0.0.1".into(),
                port: 1,
            })
            .1,
            "",
        );
        assert!(matches!(plain.path("/x"), std::borrow::Cow::Borrowed("/x")));
    }

    #[test]
    fn random_bodies_are_pooled_templates_rendered() {
        let counters = Counters::default();
        let random = Payload::Random(gauntlet_scenario::SizeDist::Fixed(gauntlet_scenario::Size(
            64,
        )));
        let generator = PayloadGen::new(&random, 1, 0, &counters);
        let bodies = Bodies::new(&random, 10, |ctx| append_body(&generator, 10, ctx));
        let Bodies::Pool(pool) = &bodies else {
            panic!("random payloads are pooled")
        };
        assert_eq!(pool.len(), BODY_POOL);
        let at = |seq| bodies.get(&Ctx { seq, key: None }, |_| unreachable!());
        assert_eq!(at(3), at(3 + BODY_POOL as u64));
        assert_ne!(at(3), at(4));
        let doc: serde_json::Value = serde_json::from_slice(&at(0)).unwrap();
        assert_eq!(doc["events"].as_array().unwrap().len(), 10);
        // Big bodies: fewer of them.
        let big = Payload::Random(gauntlet_scenario::SizeDist::Fixed(gauntlet_scenario::Size(
            4 << 20,
        )));
        let n = match Bodies::new(&big, 1, |_| Bytes::new()) {
            Bodies::Pool(p) => p.len(),
            Bodies::Render => 0,
        };
        assert!((1..=6).contains(&n), "{n}");
        let json = Payload::Json(serde_json::json!({ "id": "{{seq}}" }));
        assert!(matches!(
            Bodies::new(&json, 1, |_| Bytes::new()),
            Bodies::Render
        ));
    }

    #[test]
    fn kv_keys_are_one_path_segment() {
        let mut s = String::new();
        encode_segment(&mut s, "a/b c%ü");
        assert_eq!(s, "a%2Fb%20c%25%C3%BC");
    }
}
