//! Live subscriptions: committed events (this replica's from the batcher,
//! the others' from Redis) matched against each subscriber's filters and
//! queued to its connection. A subscriber whose queue is full loses the
//! notification, counted in `tracing_notifications_dropped_total`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use reflow_tracing_protocol::{ExecutionStatus, SubscriptionFilters, TraceEvent};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::db::Db;
use crate::metrics::Metrics;

/// One committed event: the typed value for the filters, the JSON for the frame.
#[derive(Clone)]
pub struct Notice {
    pub trace_id: Uuid,
    pub event: Arc<TraceEvent>,
    pub json: Arc<str>,
}

impl Notice {
    /// The `EventNotification` frame's JSON.
    pub fn frame(&self) -> String {
        format!(
            "{{\"EventNotification\":{{\"trace_id\":\"{}\",\"event\":{}}}}}",
            self.trace_id, self.json
        )
    }
}

/// The message published on Redis for one committed batch.
pub fn envelope(origin: &Uuid, notices: &[Notice]) -> String {
    let mut out =
        String::with_capacity(64 + notices.iter().map(|n| n.json.len() + 64).sum::<usize>());
    out.push_str("{\"origin\":\"");
    out.push_str(&origin.to_string());
    out.push_str("\",\"events\":[");
    for (i, n) in notices.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"trace_id\":\"");
        out.push_str(&n.trace_id.to_string());
        out.push_str("\",\"event\":");
        out.push_str(&n.json);
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[derive(Deserialize)]
struct Envelope<'a> {
    origin: Uuid,
    #[serde(borrow)]
    events: Vec<Published<'a>>,
}

#[derive(Deserialize)]
struct Published<'a> {
    trace_id: Uuid,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// Parses another replica's message; `None` for this replica's own or a bad one.
pub fn parse_envelope(me: &Uuid, bytes: &[u8]) -> Option<Vec<Notice>> {
    let env: Envelope = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed message on the redis channel");
            return None;
        }
    };
    if env.origin == *me {
        return None;
    }
    let mut out = Vec::with_capacity(env.events.len());
    for p in env.events {
        let event: TraceEvent = serde_json::from_str(p.event.get()).ok()?;
        out.push(Notice {
            trace_id: p.trace_id,
            event: Arc::new(event),
            json: Arc::from(p.event.get()),
        });
    }
    Some(out)
}

pub type Outbox = mpsc::Sender<Notice>;

struct Subscriber {
    filters: SubscriptionFilters,
    tx: Outbox,
}

type Head = (Option<String>, Option<ExecutionStatus>);

pub struct Hub {
    subs: RwLock<HashMap<u64, Subscriber>>,
    next: AtomicU64,
    /// Flow id and status per trace (they never change once stored).
    heads: Mutex<HashMap<Uuid, Head>>,
    metrics: Arc<Metrics>,
}

const HEADS_CAP: usize = 100_000;

fn event_type_matches(filters: &SubscriptionFilters, event: &TraceEvent) -> bool {
    match &filters.event_types {
        None => true,
        Some(types) => types
            .iter()
            .any(|t| std::mem::discriminant(t) == std::mem::discriminant(&event.event_type)),
    }
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Hub {
        Hub {
            subs: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
            heads: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    pub fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Sets (or replaces) a connection's subscription.
    pub fn subscribe(&self, id: u64, filters: SubscriptionFilters, tx: Outbox) {
        let mut subs = self.subs.write().expect("not poisoned");
        subs.insert(id, Subscriber { filters, tx });
        self.metrics
            .subscribers_active
            .store(subs.len() as i64, Ordering::Relaxed);
    }

    pub fn unsubscribe(&self, id: u64) {
        let mut subs = self.subs.write().expect("not poisoned");
        subs.remove(&id);
        self.metrics
            .subscribers_active
            .store(subs.len() as i64, Ordering::Relaxed);
    }

    /// Delivers batches in order until the input closes.
    pub async fn run(self: Arc<Self>, db: Db, mut input: mpsc::Receiver<Vec<Notice>>) {
        while let Some(batch) = input.recv().await {
            self.deliver(&db, &batch).await;
        }
    }

    async fn deliver(&self, db: &Db, batch: &[Notice]) {
        let needs_heads = {
            let subs = self.subs.read().expect("not poisoned");
            if subs.is_empty() {
                return;
            }
            subs.values()
                .any(|s| s.filters.flow_ids.is_some() || s.filters.status_filter.is_some())
        };
        let mut heads: HashMap<Uuid, Head> = HashMap::new();
        if needs_heads {
            let mut missing = Vec::new();
            {
                let cache = self.heads.lock().expect("not poisoned");
                for n in batch {
                    match cache.get(&n.trace_id) {
                        Some(h) => {
                            heads.insert(n.trace_id, h.clone());
                        }
                        None => missing.push(n.trace_id),
                    }
                }
            }
            missing.sort();
            missing.dedup();
            if !missing.is_empty() {
                match db.trace_heads(&missing).await {
                    Ok(found) => {
                        let mut cache = self.heads.lock().expect("not poisoned");
                        if cache.len() + found.len() > HEADS_CAP {
                            cache.clear();
                        }
                        for (id, h) in found {
                            cache.insert(id, h.clone());
                            heads.insert(id, h);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read trace flows for subscription filters: events with flow or status filters not delivered");
                    }
                }
            }
        }
        let subs = self.subs.read().expect("not poisoned");
        for sub in subs.values() {
            let f = &sub.filters;
            for n in batch {
                if let Some(actors) = &f.actor_ids
                    && !actors.contains(&n.event.actor_id)
                {
                    continue;
                }
                if !event_type_matches(f, &n.event) {
                    continue;
                }
                if f.flow_ids.is_some() || f.status_filter.is_some() {
                    let Some((flow, status)) = heads.get(&n.trace_id) else {
                        continue;
                    };
                    if let Some(flows) = &f.flow_ids
                        && !flows.iter().any(|x| Some(&x.0) == flow.as_ref())
                    {
                        continue;
                    }
                    if let Some(statuses) = &f.status_filter
                        && !statuses.iter().any(|x| Some(x) == status.as_ref())
                    {
                        continue;
                    }
                }
                match sub.tx.try_send(n.clone()) {
                    Ok(()) => {
                        self.metrics
                            .notifications_sent
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        self.metrics
                            .notifications_dropped
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_skip_their_origin() {
        let event = TraceEvent::actor_created("a\"ctor".into());
        let json: Arc<str> = Arc::from(serde_json::to_string(&event).unwrap());
        let n = Notice {
            trace_id: Uuid::new_v4(),
            event: Arc::new(event),
            json,
        };
        let me = Uuid::new_v4();
        let text = envelope(&me, std::slice::from_ref(&n));
        assert!(parse_envelope(&me, text.as_bytes()).is_none());
        let other = parse_envelope(&Uuid::new_v4(), text.as_bytes()).unwrap();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].trace_id, n.trace_id);
        assert_eq!(other[0].event.actor_id, "a\"ctor");
        let frame: reflow_tracing_protocol::TracingResponse =
            serde_json::from_str(&other[0].frame()).unwrap();
        assert!(matches!(
            frame,
            reflow_tracing_protocol::TracingResponse::EventNotification { .. }
        ));
    }
}
