//! The event generator of `tracing.record_event`, `tracing.subscribe` and
//! `postgres.query`'s `event:`: what a Reflow network records — actors
//! from a pool sending and receiving messages on ports, data flows, state
//! changes, lifecycle events — as the protocol's typed `TraceEvent`,
//! padded to a size, with a share of large events; and the digest the
//! checkers compare ([`digest`]).
//!
//! Event `n` of a generator is the same in every run of a seed (actor,
//! port, type, size, padding), except its ids (a run's own: the same
//! scenario run twice against one database records new events) and its
//! timestamp (the send time).

use std::collections::HashMap;

use chrono::Utc;
use gauntlet_checkers::Digest;
use gauntlet_scenario::{EventSpec, EventType};
use reflow_tracing_protocol::{
    CausalityInfo, EventId, MessageSnapshot, PerformanceMetrics, StateDiff, StateDiffType,
    TraceEvent, TraceEventData, TraceEventType,
};
use uuid::Uuid;

use crate::data::{Counters, KeyGen, Rng};

/// Generates events.
pub struct EventGen {
    actors: KeyGen,
    ports: KeyGen,
    /// Types with their cumulative weights.
    types: Vec<(EventType, u64)>,
    size: usize,
    /// The share of large events and their size.
    large: Option<(f64, usize)>,
    seed: u64,
    stream: u64,
    /// Makes the ids of this run its own.
    nonce: u64,
}

/// One generated event.
pub struct Generated {
    pub event: TraceEvent,
    pub event_id: Uuid,
    pub actor_id: String,
    pub type_name: &'static str,
}

/// A run's own value, mixed into every id a generator makes.
pub fn run_nonce() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
}

/// A version-4 UUID from the generator.
pub fn uuid_from(rng: &mut Rng) -> Uuid {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl EventGen {
    pub fn new(spec: &EventSpec, seed: u64, stream: u64, nonce: u64, counters: &Counters) -> Self {
        let mut total = 0;
        let types = spec
            .types
            .iter()
            .filter_map(|(name, w)| EventType::from_name(name).map(|t| (t, *w)))
            .filter(|(_, w)| *w > 0)
            .map(|(t, w)| {
                total += u64::from(w);
                (t, total)
            })
            .collect();
        EventGen {
            actors: KeyGen::new(&spec.actors, seed, stream ^ (11 << 48), counters),
            ports: KeyGen::new(&spec.ports, seed, stream ^ (13 << 48), counters),
            types,
            size: spec.size.bytes() as usize,
            large: spec
                .large
                .as_ref()
                .map(|l| (l.share.fraction(), l.size.bytes() as usize)),
            seed,
            stream,
            nonce,
        }
    }

    fn pick_type(&self, rng: &mut Rng) -> EventType {
        let total = self.types.last().map_or(0, |(_, c)| *c);
        let at = rng.below(total);
        self.types
            .iter()
            .find(|(_, c)| at < *c)
            .map_or(EventType::MessageSent, |(t, _)| *t)
    }

    /// Event `seq` (its timestamp: now).
    pub fn generate(&self, seq: u64) -> Generated {
        let mut rng = Rng::for_request(self.seed, self.stream, seq);
        let mut ids = Rng::for_request(self.seed ^ self.nonce, self.stream, seq);
        let event_id = uuid_from(&mut ids);
        let root = uuid_from(&mut ids);
        let span = uuid_from(&mut ids);
        let actor_id = self.actors.key(seq);
        let port = self.ports.key(seq);
        let kind = self.pick_type(&mut rng);
        let size = match self.large {
            Some((share, large)) if rng.unit() < share => large,
            _ => self.size,
        };
        let message = |rng: &mut Rng, what: &str| MessageSnapshot {
            message_type: what.to_owned(),
            size_bytes: size,
            checksum: format!("{:016x}", rng.next_u64()),
            serialized_data: Vec::new(),
        };
        let (event_type, message, state_diff, error) = match kind {
            EventType::MessageSent => (
                TraceEventType::MessageSent,
                Some(message(&mut rng, "Message::Object")),
                None,
                None,
            ),
            EventType::MessageReceived => (
                TraceEventType::MessageReceived,
                Some(message(&mut rng, "Message::Object")),
                None,
                None,
            ),
            EventType::DataFlow => (
                TraceEventType::DataFlow {
                    to_actor: self.actors.key(seq.wrapping_add(1)),
                    to_port: self.ports.key(seq.wrapping_add(1)),
                },
                Some(message(&mut rng, "Message::Stream")),
                None,
                None,
            ),
            EventType::StateChanged => (
                TraceEventType::StateChanged,
                None,
                Some(StateDiff {
                    before: Some(rng.next_u64().to_le_bytes().to_vec()),
                    after: rng.next_u64().to_le_bytes().to_vec(),
                    diff_type: StateDiffType::Incremental,
                }),
                None,
            ),
            EventType::ActorFailed => (
                TraceEventType::ActorFailed,
                None,
                None,
                Some(format!("handler error {}", rng.below(1000))),
            ),
            EventType::ActorCreated => (TraceEventType::ActorCreated, None, None, None),
            EventType::ActorStarted => (TraceEventType::ActorStarted, None, None, None),
            EventType::ActorCompleted => (TraceEventType::ActorCompleted, None, None, None),
            EventType::PortConnected => (TraceEventType::PortConnected, None, None, None),
            EventType::PortDisconnected => (TraceEventType::PortDisconnected, None, None, None),
            EventType::NetworkEvent => (TraceEventType::NetworkEvent, None, None, None),
        };
        let mut custom_attributes = HashMap::new();
        custom_attributes.insert("gauntlet_seq".to_owned(), serde_json::Value::from(seq));
        custom_attributes.insert(
            "gauntlet_pad".to_owned(),
            serde_json::Value::String(String::new()),
        );
        let mut event = TraceEvent {
            event_id: EventId(event_id),
            timestamp: Utc::now(),
            event_type,
            actor_id: actor_id.clone(),
            data: TraceEventData {
                port: Some(port),
                message,
                state_diff,
                error,
                performance_metrics: PerformanceMetrics {
                    execution_time_ns: 1_000 + rng.below(5_000_000),
                    memory_usage_bytes: 4096 + rng.below(1 << 20) as usize,
                    // Quarters: exact in f32, and so in every round trip.
                    cpu_usage_percent: rng.below(400) as f32 / 4.0,
                    queue_depth: rng.below(64) as usize,
                    throughput_msgs_per_sec: rng.below(100_000) as f64 / 8.0,
                },
                custom_attributes,
            },
            causality: CausalityInfo {
                parent_event_id: None,
                root_cause_event_id: EventId(root),
                dependency_chain: Vec::new(),
                span_id: span.simple().to_string(),
            },
        };
        // Pad to the size: the event as JSON, less what is there.
        let bare = serde_json::to_vec(&event).map_or(0, |v| v.len());
        if size > bare {
            let mut bytes = vec![0u8; size - bare];
            rng.fill(&mut bytes);
            let pad: String = bytes
                .iter()
                .map(|b| ALNUM[usize::from(*b) % ALNUM.len()] as char)
                .collect();
            event
                .data
                .custom_attributes
                .insert("gauntlet_pad".to_owned(), serde_json::Value::String(pad));
        }
        Generated {
            event,
            event_id,
            actor_id,
            type_name: kind.name(),
        }
    }
}

/// The digest the checkers compare: the typed event serialised with every
/// object's keys sorted, as [`Digest::of`]. Computed on the event sent and
/// on the payload read back from `tracing.events` (parsed as a
/// `TraceEvent` first), so a server that stores the same event in another
/// JSON form (key order, number spelling) matches, and one that changed
/// any field does not.
pub fn digest(event: &TraceEvent) -> Digest {
    let value = serde_json::to_value(event).unwrap_or_default();
    let mut out = Vec::with_capacity(1024);
    canonical(&value, &mut out);
    Digest::of(&out)
}

/// The digest of a stored payload: parsed as a `TraceEvent`, else the
/// digest of the text itself (which matches no event sent).
pub fn digest_of_stored(payload: &str) -> Digest {
    match serde_json::from_str::<TraceEvent>(payload) {
        Ok(event) => digest(&event),
        Err(_) => Digest(format!("unparseable:{}", Digest::of(payload.as_bytes()).0)),
    }
}

fn canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                canonical(&map[k], out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(v, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_scenario::{LargeEvents, Size};

    fn spec() -> EventSpec {
        EventSpec::default()
    }

    #[test]
    fn events_have_their_size_and_the_same_shape_in_every_run() {
        let counters = Counters::default();
        let a = EventGen::new(&spec(), 7, 1, 100, &counters);
        let b = EventGen::new(&spec(), 7, 1, 200, &counters);
        for seq in 0..50 {
            let (x, y) = (a.generate(seq), b.generate(seq));
            assert_eq!(x.actor_id, y.actor_id);
            assert_eq!(x.type_name, y.type_name);
            assert_ne!(x.event_id, y.event_id, "ids are the run's own");
            let len = serde_json::to_vec(&x.event).unwrap().len();
            assert!((1024..=1032).contains(&len), "{len}");
            assert!(x.actor_id.starts_with("actor-"));
        }
    }

    #[test]
    fn a_share_of_events_is_large() {
        let mut s = spec();
        s.large = Some(LargeEvents {
            share: "10%".parse().unwrap(),
            size: Size(64 << 10),
        });
        let g = EventGen::new(&s, 3, 2, 0, &Counters::default());
        let large = (0..1000)
            .filter(|seq| serde_json::to_vec(&g.generate(*seq).event).unwrap().len() >= 64 << 10)
            .count();
        assert!((50..=150).contains(&large), "{large} of 1000");
    }

    #[test]
    fn the_digest_survives_a_round_trip_through_json_and_sees_changes() {
        let g = EventGen::new(&spec(), 1, 1, 1, &Counters::default());
        for seq in 0..20 {
            let e = g.generate(seq).event;
            let sent = digest(&e);
            // Stored with keys in another order (as jsonb does) and read back.
            let mut v = serde_json::to_value(&e).unwrap();
            let text = {
                let obj = v.as_object_mut().unwrap();
                let mut pairs: Vec<(String, serde_json::Value)> =
                    obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                pairs.reverse();
                let body: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
                    .collect();
                format!("{{{}}}", body.join(","))
            };
            assert_eq!(digest_of_stored(&text), sent);
            let mut changed = e.clone();
            changed.actor_id.push('x');
            assert_ne!(digest(&changed), sent);
        }
        assert!(digest_of_stored("{}").0.starts_with("unparseable:"));
    }
}
