//! The fabric's read-back for the checks, after the load and after every
//! fault healed: waits for the services to be ready, reads every checked
//! stream whole, drains every checked queue (receive + ack until empty and
//! nothing in flight, waiting at most `readback.drain_within` for leased
//! jobs to come back), lists each checked queue's dead-letter queue and
//! reads every key the history wrote (the caller writes `readback.json`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use gauntlet_checkers::history::{DeliveredJob, StreamMessage};
use gauntlet_checkers::{History, Invocation};
use hyper::{Method, StatusCode};
use tokio::time::Instant;

use super::taps::{delivered, digest_b64};
use crate::Target;
use crate::control::{HttpClient, get, json_answer, unexpected, wait_ready};

/// What the read-back reads: per kind, each resource with the service it is on.
#[derive(Debug, Default, Clone)]
pub struct Checked {
    pub streams: BTreeMap<String, String>,
    pub queues: BTreeMap<String, String>,
    pub kv: BTreeMap<String, String>,
}

/// Bounds of the read-back.
const READ_PAGE: u64 = 1000;
const MAX_MESSAGES: usize = 5_000_000;
const MAX_DRAINED: usize = 1_000_000;
/// Jobs per page of a DLQ listing (the fabric's maximum).
const DLQ_PAGE: u64 = 1000;

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

/// The read-back phase: see the module's documentation.
pub async fn read_back(
    client: &HttpClient,
    checked: &Checked,
    history: &History,
    target: &dyn Fn(&str) -> Target,
    drain_within: Duration,
    run_start: Instant,
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
            super::encode_segment(&mut path, key);
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
    Ok(rb)
}

/// The resources the checks read back: the streams appended to (for the
/// stream checks), the queues enqueued to (queue check), the KV stores
/// written (KV check), each with its service.
pub fn checked(
    operations: &[crate::PlannedOperation],
    checks: &[gauntlet_scenario::faults::CheckName],
) -> Checked {
    use gauntlet_scenario::faults::CheckName;
    use gauntlet_scenario::{Action, FabricAction};
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
                Action::Fabric(FabricAction::StreamAppend(_)) if streams => &mut out.streams,
                Action::Fabric(FabricAction::QueueEnqueue(_))
                    if wants(CheckName::QueueAtLeastOnce) =>
                {
                    &mut out.queues
                }
                Action::Fabric(FabricAction::KvPut(_) | FabricAction::KvDelete(_))
                    if wants(CheckName::KvReadYourWrites) =>
                {
                    &mut out.kv
                }
                _ => continue,
            };
            into.insert(name.to_owned(), service.clone());
        }
    }
    out
}
