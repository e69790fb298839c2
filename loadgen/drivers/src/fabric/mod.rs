//! The fabric's driver: streams (append, read, consumer-group commits),
//! queues (enqueue, reserve/receive, ack/nack) and KV (put, get, delete)
//! over the fabric's HTTP API (`spec/fabric.md`, wire types in
//! `fabric-wire`), its set-up (resources created before the load), its
//! history taps ([`taps`]) and its read-back for the checks ([`readback`]).
//!
//! What a step hands the next: the jobs a reserve or receive leased
//! ([`Chain::items`](crate::Chain)), the key a KV operation used
//! ([`Chain::key`](crate::Chain)), the offset an append or read reached
//! ([`Chain::position`](crate::Chain)). An ack or nack step makes one
//! request per leased job.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use fabric_wire::{
    AppendResponse, EnqueueResponse, JobsResponse, LatestOffsetResponse, ReserveResponse,
};
use gauntlet_engine::{Connections, http};
use gauntlet_recorder::Outcome;
use gauntlet_scenario::{FabricAction, KeySpec, Missing, Payload, ReadFrom};

use crate::data::{Ctx, KeyGen, PayloadGen};
use crate::request::{bad_response, http_status, json_bytes, seen, send};
use crate::{Call, Chain, Target};

pub mod readback;
pub mod taps;

/// The fabric's state shared by the operations of a run: the highest
/// offset known per stream, and each consumer group's last commit.
#[derive(Default)]
pub struct FabricState {
    offsets: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<AtomicI64>>>,
    groups: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<i64>>>>,
}

impl FabricState {
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

/// One prepared fabric request.
pub struct FabricCall(Req);

enum Req {
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

fn secs(d: gauntlet_scenario::Duration) -> f64 {
    d.as_secs_f64()
}

/// Prepares a fabric action; `previous` is the resource the step before it
/// named, which a step without one inherits.
pub fn prepare(action: &FabricAction, at: &crate::PrepareAt) -> Result<FabricCall, String> {
    prepare_req(action, at).map(FabricCall)
}

fn prepare_req(action: &FabricAction, at: &crate::PrepareAt) -> Result<Req, String> {
    let crate::PrepareAt {
        service,
        target,
        previous,
        seed,
        stream,
        shared,
        ..
    } = at;
    let (service, target, previous, seed, stream) =
        (*service, target.clone(), *previous, *seed, *stream);
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
        FabricAction::StreamAppend(a) => {
            let gen_payload = payload(&a.payload, 1);
            let batch = a.batch;
            Req::StreamAppend {
                target,
                path: fabric_wire::stream_path(&a.stream, "events"),
                bodies: Bodies::new(&a.payload, u64::from(batch), |ctx| {
                    append_body(&gen_payload, batch, ctx)
                }),
                payload: gen_payload,
                batch,
                latest: shared.fabric.latest(service, &a.stream),
            }
        }
        FabricAction::StreamRead(r) => Req::StreamRead {
            target,
            stream: r.stream.clone(),
            from: r.from,
            max: r.max,
            latest: shared.fabric.latest(service, &r.stream),
            cursor: AtomicU64::new(0),
        },
        FabricAction::StreamCommit(c) => {
            let stream = inherited(c.stream.as_ref());
            Req::StreamCommit {
                target,
                path: fabric_wire::stream_path(
                    &stream,
                    &format!("consumer-groups/{}/offsets", c.group),
                ),
                latest: shared.fabric.latest(service, &stream),
                committed: shared.fabric.group(service, &stream, &c.group),
                stream,
            }
        }
        FabricAction::QueueEnqueue(e) => {
            let gen_payload = payload(&e.payload, 1);
            let delay_s = secs(e.delay);
            Req::QueueEnqueue {
                target,
                path: format!("/api/v1/queues/{}/jobs", e.queue),
                bodies: Bodies::new(&e.payload, 1, |ctx| {
                    enqueue_body(&gen_payload, delay_s, ctx)
                }),
                payload: gen_payload,
                delay_s,
            }
        }
        FabricAction::QueueReserve(r) => Req::QueueReserve {
            target,
            path: format!("/api/v1/queues/{}/reserve", r.queue),
            body: json_bytes(&fabric_wire::ReserveRequest {
                max_jobs: None,
                visibility_timeout_seconds: Some(secs(r.visibility)),
                long_poll_timeout_seconds: Some(secs(r.wait)),
            }),
            many: false,
        },
        FabricAction::QueueReceive(r) => Req::QueueReserve {
            target,
            path: format!("/api/v1/queues/{}/receive", r.queue),
            body: json_bytes(&fabric_wire::ReserveRequest {
                max_jobs: Some(r.max),
                visibility_timeout_seconds: Some(secs(r.visibility)),
                long_poll_timeout_seconds: Some(secs(r.wait)),
            }),
            many: true,
        },
        FabricAction::QueueAck(a) => Req::QueueSettle {
            target,
            jobs_path: format!("/api/v1/queues/{}/jobs/", inherited(a.queue.as_ref())),
            nack: false,
            delay_s: None,
        },
        FabricAction::QueueNack(n) => Req::QueueSettle {
            target,
            jobs_path: format!("/api/v1/queues/{}/jobs/", inherited(n.queue.as_ref())),
            nack: true,
            delay_s: n.delay.map(secs),
        },
        FabricAction::KvPut(p) => {
            let value = payload(&p.value, 1);
            let ttl_s = p.ttl.map(secs);
            Req::Kv {
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
        FabricAction::KvGet(g) => Req::Kv {
            target,
            verb: KvVerb::Get,
            keys_path: format!("/api/v1/kv/{}/keys/", inherited(g.store.as_ref())),
            key: key(&g.key),
            missing: g.missing,
        },
        FabricAction::KvDelete(d) => Req::Kv {
            target,
            verb: KvVerb::Delete,
            keys_path: format!("/api/v1/kv/{}/keys/", inherited(d.store.as_ref())),
            key: key(&d.key),
            missing: d.missing,
        },
    })
}

/// Creates the fabric resource an action of operation `operation` works on
/// (`resource`, named or inherited along the chain) before the run, so the
/// first reads find an empty resource rather than a missing one.
pub async fn setup(
    client: &http::Client,
    action: &FabricAction,
    resource: Option<&str>,
    target: &Target,
    operation: &str,
) -> Result<(), String> {
    let Some(name) = resource else {
        return Ok(());
    };
    let kind = action.resource_kind();
    let path = format!("/api/v1/{kind}/{name}");
    match send(client, target, "PUT", &path, b"").await {
        Ok(resp) if resp.is_success() => Ok(()),
        Ok(resp) => Err(format!(
            "creating {kind} `{name}` for operation `{operation}` answered {}: {}",
            resp.status,
            String::from_utf8_lossy(resp.body())
        )),
        Err(kind_of_error) => Err(format!(
            "creating {kind} `{name}` for operation `{operation}` failed ({kind_of_error})"
        )),
    }
}

/// Percent-encodes a KV key for one path segment (`/` included).
pub fn encode_segment(out: &mut String, key: &str) {
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

impl Call for FabricCall {
    fn perform<'a>(
        &'a self,
        conns: &'a Connections,
        chain: &'a mut Chain,
    ) -> impl std::future::Future<Output = Outcome> + Send + 'a {
        self.0.run(&conns.http, chain)
    }

    /// An ack or nack makes one request per job the step before leased; a
    /// commit in a chain commits the offset the step before reached (none:
    /// the chain ends).
    fn step_requests(&self, chain: &Chain) -> usize {
        match self.0 {
            Req::QueueSettle { .. } => chain.items.len(),
            Req::StreamCommit { .. } => usize::from(chain.position.is_some()),
            _ => 1,
        }
    }
}

impl Req {
    async fn settle(
        &self,
        client: &http::Client,
        job: &(String, Option<String>),
        tap: Option<&crate::history::Tap>,
    ) -> Outcome {
        let Req::QueueSettle {
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
            Req::StreamAppend {
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
                                    chain.position = Some(last);
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
            Req::StreamRead {
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
                                chain.position = resp.messages.last().map(|m| m.offset);
                                if let Some(last) = chain.position {
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
            Req::StreamCommit {
                target,
                stream,
                path,
                latest,
                committed,
            } => {
                let target_offset = match chain.position {
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
            Req::QueueEnqueue {
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
            Req::QueueReserve {
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
                                chain.items =
                                    jobs.into_iter().map(|j| (j.id, j.lease_id)).collect();
                                Outcome::Ok
                            }
                            Err(_) => bad_response(),
                        }
                    }
                    Ok(resp) => http_status(resp.status),
                    Err(kind) => Outcome::Error(kind),
                }
            }
            Req::QueueSettle { .. } => match chain.items.pop_front() {
                Some(job) => self.settle(client, &job, chain.tap.as_deref()).await,
                None => bad_response(),
            },
            Req::Kv {
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
    use crate::data::Counters;

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
