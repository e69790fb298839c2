//! The run's operation history and read-back, for the scenario's `checks:`.
//!
//! With `checks:` the driver is handed a [`Tap`]: each append, enqueue,
//! reserve/receive, ack and KV put/delete is recorded in `history.jsonl`
//! (`invoke`, then `ok` with the answer's identifiers, `fail` for a 4xx,
//! `unknown` for a 5xx, a transport error or an unreadable answer; a
//! request the engine's timeout cancels has no completion, which the
//! reader takes as `unknown`). Without `checks:` there is no tap and the
//! driver does nothing more than before.
//!
//! After the load and after every fault healed, [`read_back`] waits for the
//! services to be ready, reads every checked stream whole, drains every
//! checked queue (receive + ack until empty and nothing in flight, waiting
//! at most `readback.drain_within` for leased jobs to come back), lists
//! each checked queue's dead-letter queue and reads every key the history
//! wrote, into `readback.json`; [`check`] runs
//! the checkers and gives the verdicts `verdict.json` lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gauntlet_checkers::history::{DeliveredJob, HistoryWriter, READBACK_FILE, StreamMessage};
use gauntlet_checkers::{Acknowledged, Check, CheckVerdict, Digest, History, Invocation, Outcome};
use gauntlet_recorder::faults::Fault;
use hyper::{Method, StatusCode};
use tokio::time::Instant;

use crate::driver::{HttpClient, Target};

/// The history recorder the driver's operations write through.
pub struct Tap {
    writer: HistoryWriter,
    run_start: std::sync::OnceLock<Instant>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("path", &self.writer.path())
            .finish()
    }
}

/// What a request's answer was, as the driver saw it: the status and the
/// body, or the error kind (`connect`, `io`, …).
pub type Answer<'a> = Result<(u16, &'a [u8]), &'a str>;

impl Tap {
    pub fn create(run_dir: &Path) -> std::io::Result<Arc<Tap>> {
        Ok(Arc::new(Tap {
            writer: HistoryWriter::create(&run_dir.join(gauntlet_checkers::history::HISTORY_FILE))?,
            run_start: std::sync::OnceLock::new(),
        }))
    }

    /// Sets the clock `t_s` counts from (the run's start).
    pub fn start(&self, run_start: Instant) {
        let _ = self.run_start.set(run_start);
    }

    fn now(&self) -> f64 {
        self.run_start
            .get()
            .map_or(0.0, |s| s.elapsed().as_secs_f64())
    }

    pub fn flush(&self) {
        let _ = self.writer.flush();
    }

    fn invoke(&self, invocation: Invocation) -> Option<u64> {
        self.writer.invoke(self.now(), invocation).ok()
    }

    /// Records how operation `id` ended: `ack` reads the identifiers from
    /// a 2xx body (`None`: unreadable, so unknown).
    fn complete(
        &self,
        id: Option<u64>,
        answer: Answer,
        ack: impl FnOnce(&[u8]) -> Option<Acknowledged>,
    ) {
        let Some(id) = id else { return };
        let outcome = match answer {
            Ok((status, body)) if (200..300).contains(&status) => match ack(body) {
                Some(a) => Outcome::Ok(a),
                None => Outcome::Unknown("unreadable answer".to_owned()),
            },
            Ok((status, _)) if (400..500).contains(&status) => {
                Outcome::Fail(format!("http_{status}"))
            }
            Ok((status, _)) => Outcome::Unknown(format!("http_{status}")),
            Err(kind) => Outcome::Unknown(kind.to_owned()),
        };
        let _ = self.writer.complete(id, self.now(), outcome);
    }

    /// An append is about to be sent with `body` to `path`.
    pub fn invoke_append(&self, path: &str, body: &[u8]) -> Option<u64> {
        let req: fabric_wire::AppendRequest = serde_json::from_slice(body).ok()?;
        self.invoke(Invocation::StreamAppend {
            stream: resource(path),
            payloads: req.events.iter().map(|e| digest_b64(&e.payload)).collect(),
        })
    }

    pub fn complete_append(&self, id: Option<u64>, answer: Answer) {
        self.complete(id, answer, |b| {
            let r: fabric_wire::AppendResponse = serde_json::from_slice(b).ok()?;
            Some(Acknowledged {
                offsets: r.offsets,
                ..Default::default()
            })
        });
    }

    pub fn invoke_enqueue(&self, path: &str, body: &[u8]) -> Option<u64> {
        let req: fabric_wire::EnqueueRequest = serde_json::from_slice(body).ok()?;
        self.invoke(Invocation::QueueEnqueue {
            queue: resource(path),
            payload: digest_b64(&req.payload),
        })
    }

    pub fn complete_enqueue(&self, id: Option<u64>, answer: Answer) {
        self.complete(id, answer, |b| {
            let r: fabric_wire::EnqueueResponse = serde_json::from_slice(b).ok()?;
            Some(Acknowledged {
                job_id: Some(r.job_id),
                ..Default::default()
            })
        });
    }

    pub fn invoke_receive(&self, path: &str) -> Option<u64> {
        self.invoke(Invocation::QueueReceive {
            queue: resource(path),
        })
    }

    /// `many`: a receive (a list of jobs), else a reserve (one or none).
    pub fn complete_receive(&self, id: Option<u64>, answer: Answer, many: bool) {
        self.complete(id, answer, |b| {
            let jobs = if many {
                serde_json::from_slice::<fabric_wire::JobsResponse>(b)
                    .ok()?
                    .jobs
            } else {
                serde_json::from_slice::<fabric_wire::ReserveResponse>(b)
                    .ok()?
                    .job
                    .into_iter()
                    .collect()
            };
            Some(Acknowledged {
                jobs: jobs.iter().map(delivered).collect(),
                ..Default::default()
            })
        });
    }

    pub fn invoke_ack(&self, jobs_path: &str, job_id: &str) -> Option<u64> {
        self.invoke(Invocation::QueueAck {
            queue: resource(jobs_path),
            job_id: job_id.to_owned(),
        })
    }

    pub fn complete_plain(&self, id: Option<u64>, answer: Answer) {
        self.complete(id, answer, |_| Some(Acknowledged::default()));
    }

    pub fn invoke_put(&self, keys_path: &str, key: &str, body: &[u8]) -> Option<u64> {
        let req: fabric_wire::KvPutRequest = serde_json::from_slice(body).ok()?;
        self.invoke(Invocation::KvPut {
            store: resource(keys_path),
            key: key.to_owned(),
            value: digest_b64(&req.value),
        })
    }

    pub fn invoke_delete(&self, keys_path: &str, key: &str) -> Option<u64> {
        self.invoke(Invocation::KvDelete {
            store: resource(keys_path),
            key: key.to_owned(),
        })
    }
}

/// The resource (`tenant/namespace/name`) of an API path
/// (`/api/v1/KIND/t/ns/name/…`).
fn resource(path: &str) -> String {
    let rest = path.strip_prefix("/api/v1/").unwrap_or(path);
    rest.split('/')
        .skip(1)
        .take(3)
        .collect::<Vec<_>>()
        .join("/")
}

/// The digest of a base64 payload's bytes (of the text itself when it is
/// not base64, which the fabric would refuse anyway).
fn digest_b64(b64: &str) -> Digest {
    match fabric_wire::decode_payload(b64) {
        Some(bytes) => Digest::of(&bytes),
        None => Digest::of(b64.as_bytes()),
    }
}

fn delivered(job: &fabric_wire::Job) -> DeliveredJob {
    DeliveredJob {
        job_id: job.id.clone(),
        payload: digest_b64(&job.payload),
    }
}

/// What the read-back reads: per kind, each resource with the service it is on.
#[derive(Debug, Default, Clone)]
pub struct Checked {
    pub streams: BTreeMap<String, String>,
    pub queues: BTreeMap<String, String>,
    pub kv: BTreeMap<String, String>,
}

/// Bounds of the read-back.
const READY_WITHIN: Duration = Duration::from_secs(60);
const READ_PAGE: u64 = 1000;
const MAX_MESSAGES: usize = 5_000_000;
const MAX_DRAINED: usize = 1_000_000;
/// Jobs per page of a DLQ listing (the fabric's maximum).
const DLQ_PAGE: u64 = 1000;
/// One read-back request on the control path's client (the engine's
/// client belongs to the engine's runtimes); a non-empty body is JSON.
async fn request(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let mut builder = hyper::Request::builder().method(method).uri(url);
    if !body.is_empty() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(http_body_util::Full::new(body))
        .map_err(|_| "bad_request".to_owned())?;
    let response = client.request(request).await.map_err(|e| {
        if e.is_connect() {
            "connect".to_owned()
        } else {
            "io".to_owned()
        }
    })?;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|_| "io".to_owned())?
        .to_bytes();
    Ok((status, body))
}

const READ_TIMEOUT: Duration = Duration::from_secs(10);

async fn get(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    match tokio::time::timeout(READ_TIMEOUT, request(client, method, url, body)).await {
        Ok(r) => r,
        Err(_) => Err("timeout".to_owned()),
    }
}

/// Waits until `GET /ready` of each service answers 2xx.
async fn wait_ready(
    client: &HttpClient,
    services: &BTreeSet<&String>,
    target: &dyn Fn(&str) -> Target,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    for service in services {
        loop {
            match get(
                client,
                Method::GET,
                &target(service).url("/ready"),
                Bytes::new(),
            )
            .await
            {
                Ok((s, _)) if s.is_success() => break,
                other if Instant::now() >= deadline => {
                    return Err(format!(
                        "service `{service}` was not ready for the read-back within {} s ({})",
                        READY_WITHIN.as_secs(),
                        match other {
                            Ok((s, _)) => s.to_string(),
                            Err(e) => e,
                        }
                    ));
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

fn unexpected(what: &str, answer: Result<(StatusCode, Bytes), String>) -> String {
    match answer {
        Ok((s, b)) => format!("{what}: answered {s}: {}", String::from_utf8_lossy(&b)),
        Err(e) => format!("{what}: {e}"),
    }
}

/// The JSON body of a successful answer to `what`; any other answer, or a
/// body that does not parse, is an error naming `what`.
fn json_answer<T: serde::de::DeserializeOwned>(
    what: &str,
    answer: Result<(StatusCode, Bytes), String>,
) -> Result<T, String> {
    match &answer {
        Ok((s, b)) if s.is_success() => {
            serde_json::from_slice(b).map_err(|e| format!("{what}: {e}"))
        }
        _ => Err(unexpected(what, answer)),
    }
}

async fn read_stream(
    client: &HttpClient,
    target: &Target,
    stream: &str,
) -> Result<Vec<StreamMessage>, String> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        let path = format!(
            "{}?offset={offset}&max_messages={READ_PAGE}",
            fabric_wire::stream_path(stream, "messages")
        );
        let what = format!("reading stream {stream} from offset {offset}");
        let answer = get(client, Method::GET, &target.url(&path), Bytes::new()).await;
        let page: fabric_wire::ReadResponse = json_answer(&what, answer)?;
        let Some(last) = page.messages.last().map(|m| m.offset) else {
            return Ok(out);
        };
        out.extend(page.messages.iter().map(|m| StreamMessage {
            offset: m.offset,
            payload: digest_b64(&m.payload),
        }));
        if out.len() > MAX_MESSAGES {
            return Err(format!(
                "stream {stream} holds more than {MAX_MESSAGES} messages: not read back"
            ));
        }
        offset = last + 1;
    }
}

/// Receives and acks every job of `queue` until it is empty and nothing is
/// leased or pending; waits at most `drain_within` (the scenario's
/// `readback.drain_within`) with no job coming for leased or delayed jobs
/// to come back.
async fn drain_queue(
    client: &HttpClient,
    target: &Target,
    queue: &str,
    drain_within: Duration,
) -> Result<Vec<DeliveredJob>, String> {
    let mut out = Vec::new();
    // Waiting ends `drain_within` after the last job came (each job
    // received is progress; MAX_DRAINED bounds those).
    let mut deadline = Instant::now() + drain_within;
    let receive = target.url(&format!("/api/v1/queues/{queue}/receive"));
    let body = Bytes::from(
        serde_json::to_vec(&fabric_wire::ReserveRequest {
            max_jobs: Some(100),
            visibility_timeout_seconds: Some(300.0),
            long_poll_timeout_seconds: Some(0.0),
        })
        .unwrap_or_default(),
    );
    loop {
        let what = format!("draining queue {queue}");
        let answer = get(client, Method::POST, &receive, body.clone()).await;
        let jobs = json_answer::<fabric_wire::JobsResponse>(&what, answer)?.jobs;
        if jobs.is_empty() {
            // Empty for now; jobs leased during the run come back when
            // their lease ends, delayed ones when due.
            let stats = target.url(&format!("/api/v1/queues/{queue}/stats"));
            let answer = get(client, Method::GET, &stats, Bytes::new()).await;
            let st: fabric_wire::QueueStatsResponse = json_answer(&what, answer)?;
            if st.in_flight == 0 && st.pending == 0 {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{what}: {} job(s) still leased and {} pending after {:?}, so its acknowledged jobs cannot be verified (hint: jobs leased during the run come back only when their visibility timeout ends, delayed ones when due; set `readback: {{ drain_within: … }}` above the longest of them)",
                    st.in_flight, st.pending, drain_within
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        deadline = Instant::now() + drain_within;
        for job in &jobs {
            out.push(delivered(job));
            let ack = target.url(&format!("/api/v1/queues/{queue}/jobs/{}/ack", job.id));
            let body = Bytes::from(
                serde_json::to_vec(&fabric_wire::AckRequest {
                    lease_id: job.lease_id.clone(),
                    delay_seconds: None,
                })
                .unwrap_or_default(),
            );
            let answer = get(client, Method::POST, &ack, body).await;
            if !matches!(&answer, Ok((s, _)) if s.is_success()) {
                return Err(unexpected(
                    &format!("{what}: acking job {}", job.id),
                    answer,
                ));
            }
        }
        if out.len() > MAX_DRAINED {
            return Err(format!("{what}: more than {MAX_DRAINED} jobs"));
        }
    }
}

/// Lists the dead-letter queue of `queue` whole (pages of [`DLQ_PAGE`] by
/// job `seq`): jobs that exhausted their attempts were delivered there,
/// not lost.
async fn list_dlq(
    client: &HttpClient,
    target: &Target,
    queue: &str,
) -> Result<Vec<DeliveredJob>, String> {
    let mut out = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let mut path = format!("/api/v1/queues/{queue}/dlq/jobs?limit={DLQ_PAGE}");
        if let Some(seq) = after {
            path.push_str(&format!("&after={seq}"));
        }
        let what = format!("listing the dead-letter queue of {queue}");
        let answer = get(client, Method::GET, &target.url(&path), Bytes::new()).await;
        let jobs = json_answer::<fabric_wire::JobsResponse>(&what, answer)?.jobs;
        out.extend(jobs.iter().map(delivered));
        if out.len() > MAX_DRAINED {
            return Err(format!("{what}: more than {MAX_DRAINED} jobs"));
        }
        match jobs.last() {
            Some(last) if jobs.len() as u64 == DLQ_PAGE => after = Some(last.seq),
            _ => return Ok(out),
        }
    }
}

/// The read-back phase: see the module's documentation. Writes
/// `readback.json` and returns it.
pub async fn read_back(
    client: &HttpClient,
    checked: &Checked,
    history: &History,
    target: &dyn Fn(&str) -> Target,
    drain_within: Duration,
    run_start: Instant,
    run_dir: &Path,
) -> Result<gauntlet_checkers::ReadBack, String> {
    let services: BTreeSet<&String> = checked
        .streams
        .values()
        .chain(checked.queues.values())
        .chain(checked.kv.values())
        .collect();
    wait_ready(client, &services, target).await?;
    let mut rb = gauntlet_checkers::ReadBack {
        t_s: run_start.elapsed().as_secs_f64(),
        ..Default::default()
    };
    for (stream, service) in &checked.streams {
        let msgs = read_stream(client, &target(service), stream).await?;
        rb.streams.insert(stream.clone(), msgs);
    }
    for (queue, service) in &checked.queues {
        let jobs = drain_queue(client, &target(service), queue, drain_within).await?;
        rb.queues.insert(queue.clone(), jobs);
        let dead = list_dlq(client, &target(service), queue).await?;
        rb.dlq.insert(queue.clone(), dead);
    }
    let mut keys: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for op in &history.operations {
        match &op.invocation {
            Invocation::KvPut { store, key, .. } | Invocation::KvDelete { store, key } => {
                keys.entry(store).or_default().insert(key);
            }
            _ => {}
        }
    }
    for (store, service) in &checked.kv {
        let t = target(service);
        let mut values = BTreeMap::new();
        for key in keys.get(store.as_str()).into_iter().flatten() {
            let mut path = format!("/api/v1/kv/{store}/keys/");
            crate::driver::encode_segment(&mut path, key);
            let what = format!("reading key {key} of {store}");
            let answer = get(client, Method::GET, &t.url(&path), Bytes::new()).await;
            let value = match &answer {
                Ok((s, b)) if s.is_success() => {
                    let r: fabric_wire::KvGetResponse =
                        serde_json::from_slice(b).map_err(|e| format!("{what}: {e}"))?;
                    Some(digest_b64(&r.value))
                }
                Ok((StatusCode::NOT_FOUND, _)) => None,
                _ => return Err(unexpected(&what, answer)),
            };
            values.insert((*key).to_owned(), value);
        }
        rb.kv.insert(store.clone(), values);
    }
    crate::rundir::write_json(&run_dir.join(READBACK_FILE), &rb)
        .map_err(|e| format!("writing {READBACK_FILE}: {e}"))?;
    Ok(rb)
}

/// Runs each check named in the scenario.
pub fn check(
    names: &[String],
    history: &History,
    readback: &gauntlet_checkers::ReadBack,
    faults: &[Fault],
) -> Vec<CheckVerdict> {
    names
        .iter()
        .filter_map(|n| Check::from_name(n))
        .map(|c| c.run(history, readback, faults))
        .collect()
}

/// Adds the check verdicts to `verdict.json` (written by the SLO gate, or
/// new): `checks` lists them and `passed` is false when one failed.
pub fn write_verdict(
    run_dir: &Path,
    scenario: &str,
    checks: &[CheckVerdict],
) -> Result<(), String> {
    let path = run_dir.join("verdict.json");
    let mut doc: serde_json::Value = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Err(_) => serde_json::json!({ "scenario": scenario, "passed": true }),
    };
    let all = checks.iter().all(|c| c.passed);
    let passed = doc.get("passed").and_then(|p| p.as_bool()).unwrap_or(true) && all;
    doc["checks"] = serde_json::to_value(checks).map_err(|e| e.to_string())?;
    doc["passed"] = serde_json::Value::Bool(passed);
    crate::rundir::write_json(&path, &doc).map_err(|e| format!("{}: {e}", path.display()))
}

/// The resources the checks read back: the streams appended to (for the
/// stream checks), the queues enqueued to (queue check), the KV stores
/// written (KV check), each with its service.
pub fn checked(
    operations: &[crate::plan::PlannedOperation],
    checks: &[gauntlet_scenario::faults::CheckName],
) -> Checked {
    use gauntlet_scenario::Action;
    use gauntlet_scenario::faults::CheckName;
    let wants = |c: CheckName| checks.contains(&c);
    let streams = wants(CheckName::NoAckedWriteLost) || wants(CheckName::OffsetsUnique);
    let mut out = Checked::default();
    for op in operations {
        let mut previous: Option<&str> = None;
        let actions = std::iter::once((&op.action, &op.service))
            .chain(op.steps.iter().map(|s| (&s.action, &s.service)));
        for (action, service) in actions {
            let Some(name) = action.resource().map(|(_, n)| n).or(previous) else {
                continue;
            };
            previous = Some(name);
            let into = match action {
                Action::StreamAppend(_) if streams => &mut out.streams,
                Action::QueueEnqueue(_) if wants(CheckName::QueueAtLeastOnce) => &mut out.queues,
                Action::KvPut(_) | Action::KvDelete(_) if wants(CheckName::KvReadYourWrites) => {
                    &mut out.kv
                }
                _ => continue,
            };
            into.insert(name.to_owned(), service.clone());
        }
    }
    out
}

/// The read-back and the checks after the load and the faults: reads the
/// history, reads back what it wrote, runs each check.
pub async fn run_checks(
    plan: &crate::plan::Plan,
    endpoints: &BTreeMap<String, tokio::sync::watch::Receiver<gauntlet_control::Endpoint>>,
    prefixes: &BTreeMap<String, String>,
    faults: &[Fault],
    run_start: Instant,
    run_dir: &Path,
) -> Result<Vec<CheckVerdict>, String> {
    let path = run_dir.join(gauntlet_checkers::history::HISTORY_FILE);
    let history = History::read(&path).map_err(|e| e.to_string())?;
    let checked = checked(&plan.operations, &plan.scenario.checks);
    let target = |service: &str| -> Target {
        match endpoints.get(service) {
            Some(rx) => Target::new(rx.clone(), prefixes.get(service).map_or("", String::as_str)),
            None => Target::new(
                tokio::sync::watch::channel(gauntlet_control::Endpoint {
                    host: "127.0.0.1".to_owned(),
                    port: 0,
                })
                .1,
                "",
            ),
        }
    };
    let client = crate::driver::http_client(4);
    let readback = read_back(
        &client,
        &checked,
        &history,
        &target,
        plan.scenario.drain_within(),
        run_start,
        run_dir,
    )
    .await?;
    let names: Vec<String> = plan
        .scenario
        .checks
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    Ok(check(&names, &history, &readback, faults))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_read_from_api_paths() {
        assert_eq!(resource("/api/v1/streams/t/ns/s/events"), "t/ns/s");
        assert_eq!(resource("/api/v1/queues/t/ns/q/jobs/"), "t/ns/q");
        assert_eq!(resource("/api/v1/kv/t/ns/k/keys/"), "t/ns/k");
    }

    #[test]
    fn payloads_are_digested_decoded() {
        let b64 = fabric_wire::encode_payload(b"hello");
        assert_eq!(digest_b64(&b64), Digest::of(b"hello"));
    }

    #[test]
    fn answers_are_classified_ok_fail_or_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let tap = Tap::create(dir.path()).unwrap();
        tap.start(Instant::now());
        let body = Bytes::from(
            serde_json::to_vec(&fabric_wire::AppendRequest {
                events: vec![fabric_wire::EventIn {
                    payload: fabric_wire::encode_payload(b"e1"),
                    headers: Default::default(),
                }],
            })
            .unwrap(),
        );
        let path = "/api/v1/streams/t/ns/s/events";
        let answers: [Answer; 5] = [
            Ok((200, br#"{"status":"success","offsets":[7]}"#.as_slice())),
            Ok((400, b"".as_slice())),
            Ok((503, b"".as_slice())),
            Err("io"),
            Ok((200, b"not json".as_slice())),
        ];
        for answer in answers {
            let id = tap.invoke_append(path, &body);
            tap.complete_append(id, answer);
        }
        // Sent, never answered (the engine's timeout dropped it).
        let _ = tap.invoke_append(path, &body);
        tap.flush();
        let h = History::read(&dir.path().join("history.jsonl")).unwrap();
        let outcomes: Vec<&Outcome> = h.operations.iter().map(|o| &o.outcome).collect();
        assert_eq!(h.operations.len(), 6);
        assert!(matches!(outcomes[0], Outcome::Ok(a) if a.offsets == [7]));
        assert!(matches!(outcomes[1], Outcome::Fail(e) if e == "http_400"));
        assert!(matches!(outcomes[2], Outcome::Unknown(e) if e == "http_503"));
        assert!(matches!(outcomes[3], Outcome::Unknown(e) if e == "io"));
        assert!(outcomes[4].is_unknown());
        assert!(outcomes[5].is_unknown());
        assert_eq!(
            h.operations[0].invocation,
            Invocation::StreamAppend {
                stream: "t/ns/s".to_owned(),
                payloads: vec![Digest::of(b"e1")],
            }
        );
    }

    #[test]
    fn check_verdicts_merge_into_the_gate_verdict() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("verdict.json"),
            r#"{"scenario":"s","passed":true,"slo":[]}"#,
        )
        .unwrap();
        let v = gauntlet_checkers::checks::offsets_unique(
            &History::default(),
            &gauntlet_checkers::ReadBack::default(),
            &[],
        );
        let mut failed = v.clone();
        failed.passed = false;
        write_verdict(dir.path(), "s", &[v, failed]).unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("verdict.json")).unwrap())
                .unwrap();
        assert_eq!(doc["passed"], false);
        assert_eq!(doc["checks"].as_array().unwrap().len(), 2);
        assert!(doc["slo"].is_array());
    }
}
