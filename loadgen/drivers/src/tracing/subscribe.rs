//! `tracing.subscribe`: publish → notification latency across replicas.
//!
//! Each engine runtime holds one subscriber per operation: a connection of
//! its own (the WebSocket client's mode 2, a dedicated pipeline whose
//! matcher keys the answer to `Subscribe` and leaves notifications as
//! pushed frames), subscribed to every event (no filter), and a reader
//! task that hands each notification to the operation waiting for it and
//! records what arrived in the history (`tracing.notified`). A subscriber
//! whose connection is lost is recorded as ended (with the reason), and
//! the next operation subscribes again (a new subscriber); the reader
//! task's end — the load's end, when the engine's runtime stops — is
//! recorded the same way.
//!
//! An operation registers for its event, records it through `publish_via`
//! (a request of its own on the client's mode 1), and is done when the
//! notification arrives: its latency runs from the intended publish to the
//! notification (or the acknowledgement, if that comes later). No
//! notification within `notify_within` after the acknowledgement fails it
//! as `missed_notification`; a subscription lost meanwhile as
//! `subscription_lost`. With `from: commit` the latency runs instead from
//! the acknowledgement (the commit, after which the server publishes) to
//! the notification's arrival: the fan-out alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gauntlet_engine::Connections;
use gauntlet_engine::ws::{Frame, Pipeline, Subscription};
use gauntlet_recorder::Outcome;
use gauntlet_scenario::{FanoutFrom, TraceSubscribe};
use reflow_tracing_protocol::{SubscriptionFilters, TracingRequest, TracingResponse};
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Wire, decode, events, record, unexpected};
use crate::Chain;
use crate::data::Rng;
use crate::history::Tap;

/// The key of the one request a subscriber's pipeline sends.
const SUBSCRIBE_KEY: u64 = 1;

/// A prepared `tracing.subscribe`.
pub struct SubscribeCall {
    service: String,
    via: String,
    subscriber: Wire,
    publish: Wire,
    notify_within: Duration,
    from: FanoutFrom,
    generator: events::EventGen,
    next: AtomicU64,
    ids: (u64, u64),
    /// Subscribers by engine runtime (its connections' address).
    hubs: Mutex<Vec<(usize, Arc<Hub>)>>,
    /// Numbers the subscribers of this operation.
    subscribers: Arc<AtomicU64>,
}

/// One runtime's subscriber.
struct Hub {
    /// Serialises (re)subscribing.
    subscribing: tokio::sync::Mutex<()>,
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    /// The subscriber's name while its subscription is up.
    live: Option<String>,
    /// Its connection, kept open.
    pipeline: Option<Pipeline>,
    /// Operations waiting for their event's notification.
    waiting: HashMap<Uuid, oneshot::Sender<Instant>>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a frame is a notification (pushed), not an answer: the key of
/// the externally tagged JSON object.
fn is_notification(frame: &Frame) -> bool {
    match frame {
        Frame::Text(t) => {
            let t = t.trim_start();
            t.starts_with('{') && t[1..].trim_start().starts_with("\"EventNotification\"")
        }
        Frame::Binary(_) => matches!(
            decode(frame),
            Some(TracingResponse::EventNotification { .. })
        ),
    }
}

impl SubscribeCall {
    pub fn new(s: &TraceSubscribe, at: &crate::PrepareAt, publish: Wire, via: &str) -> Self {
        let mut connection = s.connection.clone();
        // The subscriber reads text frames; the publisher uses the frames asked for.
        connection.frames = gauntlet_scenario::FrameEncoding::Json;
        SubscribeCall {
            service: at.service.to_owned(),
            via: via.to_owned(),
            subscriber: Wire::new(at.target.clone(), &connection),
            publish,
            notify_within: s.notify_within.as_std(),
            from: s.from,
            generator: events::EventGen::new(
                &s.event,
                at.seed,
                at.stream,
                at.shared.tracing.nonce,
                &at.shared.counters,
            ),
            next: AtomicU64::new(0),
            ids: (at.seed ^ at.shared.tracing.nonce, at.stream ^ (9 << 40)),
            hubs: Mutex::new(Vec::new()),
            subscribers: Arc::new(AtomicU64::new(1)),
        }
    }

    fn hub(&self, conns: &Connections) -> Arc<Hub> {
        let key = conns as *const Connections as usize;
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, h)) = hubs.iter().find(|(k, _)| *k == key) {
            return h.clone();
        }
        let hub = Arc::new(Hub {
            subscribing: tokio::sync::Mutex::new(()),
            state: Mutex::new(HubState::default()),
        });
        hubs.push((key, hub.clone()));
        hub
    }

    /// The runtime's subscriber, subscribed (again) if it is not.
    async fn ensure(
        &self,
        conns: &Connections,
        tap: Option<&Arc<Tap>>,
    ) -> Result<Arc<Hub>, String> {
        let hub = self.hub(conns);
        if hub.lock().live.is_some() {
            return Ok(hub);
        }
        let guard = hub.clone();
        let _one = guard.subscribing.lock().await;
        if hub.lock().live.is_some() {
            return Ok(hub);
        }
        let target = self
            .subscriber
            .ws_target()?
            .with_matcher(|f| (!is_notification(f)).then_some(SUBSCRIBE_KEY));
        let pipeline = conns.ws.dedicated(&target);
        let name = format!(
            "{}<-{}#{}",
            self.service,
            self.via,
            self.subscribers.fetch_add(1, Ordering::Relaxed)
        );
        let id = tap.and_then(|t| t.invoke_subscribe(&name, &self.service));
        let subscription = match pipeline.subscribe().await {
            Ok(s) => s,
            Err(f) => {
                if let Some(t) = tap {
                    t.complete_subscribe(id, &Err(f.kind().to_owned()));
                }
                return Err(f.kind().to_owned());
            }
        };
        let request = TracingRequest::Subscribe {
            filters: SubscriptionFilters {
                flow_ids: None,
                actor_ids: None,
                event_types: None,
                status_filter: None,
            },
        };
        let answer = pipeline
            .call(SUBSCRIBE_KEY, self.subscriber.encode(&request))
            .await
            .map_err(|f| f.kind().to_owned())
            .and_then(|f| decode(&f).ok_or_else(|| "bad_response".to_owned()));
        if let Some(t) = tap {
            t.complete_subscribe(id, &answer);
        }
        match answer {
            Ok(TracingResponse::Pong) => {}
            other => {
                return Err(match unexpected(other) {
                    Outcome::Error(kind) => kind,
                    Outcome::Ok => "bad_response".to_owned(),
                });
            }
        }
        {
            let mut st = hub.lock();
            st.live = Some(name.clone());
            st.pipeline = Some(pipeline);
        }
        tokio::spawn(read_notifications(
            hub.clone(),
            subscription,
            name,
            tap.cloned(),
        ));
        Ok(hub)
    }

    pub async fn run(&self, conns: &Connections, chain: &mut Chain) -> Outcome {
        let tap = chain.tap.clone();
        let hub = match self.ensure(conns, tap.as_ref()).await {
            Ok(h) => h,
            Err(kind) => return Outcome::Error(kind),
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let g = self.generator.generate(n);
        let (tx, rx) = oneshot::channel();
        hub.lock().waiting.insert(g.event_id, tx);
        let trace_id = events::uuid_from(&mut Rng::for_request(self.ids.0, self.ids.1, n));
        let published = record(
            &self.publish,
            conns,
            tap.as_deref(),
            &self.via,
            trace_id,
            &g,
        )
        .await;
        if published != Outcome::Ok {
            hub.lock().waiting.remove(&g.event_id);
            return published;
        }
        let acked = Instant::now();
        match tokio::time::timeout(self.notify_within, rx).await {
            Ok(Ok(arrived)) => {
                if self.from == FanoutFrom::Commit {
                    // A notification that beat the acknowledgement took no
                    // time after the commit as far as the client can tell.
                    chain.measured = Some((acked.min(arrived), arrived));
                }
                Outcome::Ok
            }
            Ok(Err(_)) => Outcome::Error("subscription_lost".to_owned()),
            Err(_) => {
                hub.lock().waiting.remove(&g.event_id);
                Outcome::Error("missed_notification".to_owned())
            }
        }
    }
}

/// Marks the subscription ended and records why, however the reader stops.
struct Ended {
    hub: Arc<Hub>,
    name: String,
    tap: Option<Arc<Tap>>,
    reason: String,
}

impl Drop for Ended {
    fn drop(&mut self) {
        {
            let mut st = self.hub.lock();
            if st.live.as_deref() == Some(&self.name) {
                st.live = None;
                st.pipeline = None;
            }
            // Waiters of this subscription learn it is gone.
            st.waiting.clear();
        }
        if let Some(t) = &self.tap {
            t.subscription_ended(&self.name, &self.reason);
        }
    }
}

/// Most notifications recorded per history line.
const BATCH: usize = 512;

/// Hands each notification to its waiter and records the batch.
async fn read_notifications(
    hub: Arc<Hub>,
    subscription: Subscription,
    name: String,
    tap: Option<Arc<Tap>>,
) {
    let mut ended = Ended {
        hub: hub.clone(),
        name: name.clone(),
        tap: tap.clone(),
        reason: "load ended".to_owned(),
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(first) = subscription.recv().await else {
            ended.reason = subscription
                .ended()
                .map_or_else(|| "ws_dropped".to_owned(), |f| f.kind().to_owned());
            return;
        };
        batch.clear();
        batch.push(first);
        while batch.len() < BATCH {
            match subscription.try_recv() {
                Some(p) => batch.push(p),
                None => break,
            }
        }
        let mut ids = Vec::with_capacity(batch.len());
        {
            let mut st = hub.lock();
            for pushed in &batch {
                if let Some(TracingResponse::EventNotification { event, .. }) =
                    decode(&pushed.frame)
                {
                    let id = event.event_id.0;
                    if let Some(tx) = st.waiting.remove(&id) {
                        let _ = tx.send(pushed.at);
                    }
                    ids.push(id.to_string());
                }
            }
        }
        if let Some(t) = &tap
            && !ids.is_empty()
        {
            t.notified(&name, ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_told_from_answers() {
        let n = r#"{"EventNotification":{"trace_id":"x","event":{}}}"#;
        assert!(is_notification(&Frame::text(n)));
        assert!(!is_notification(&Frame::text(r#""Pong""#)));
        assert!(!is_notification(&Frame::text(
            r#"{"Error":{"message":"EventNotification","code":"InvalidRequest"}}"#
        )));
    }
}
