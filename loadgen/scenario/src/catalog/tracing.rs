//! The tracing server's actions (`tracing.*`): `tracing-server`'s
//! WebSocket protocol (`reflow_tracing_protocol` 0.2.1, `spec/tracing.md`)
//! in the user's words — start a trace, record events (generated: actor
//! ids from a pool, ports, event types, sizes with a share of large
//! events), read a trace back, query traces, and measure publish →
//! notification latency across replicas — and [`EventSpec`], how a
//! scenario describes the events it generates (shared with
//! `postgres.query`, which can insert the same rows).
//!
//! What a step hands the next: `tracing.start_trace` hands its trace id,
//! `tracing.record_event` records into it (`events: N` requests as a
//! step) and hands the number of events acknowledged, `tracing.get_trace`
//! reads the trace and checks it holds at least that many.

use schemars::{JsonSchema, SchemaGenerator};
use serde::de::MapAccess;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::Catalog;
use crate::data::{KeyDistribution, KeySpec};
use crate::gate::Percent;
use crate::model::ServiceKind;
use crate::units::{Duration, Size};

/// One of the tracing server's actions.
#[derive(Debug, Clone, PartialEq)]
pub enum TracingAction {
    StartTrace(TraceStart),
    RecordEvent(TraceRecord),
    GetTrace(TraceGet),
    Query(TraceQuery),
    Subscribe(TraceSubscribe),
}

/// Every tracing action with its key: `Variant, Type, "key"`.
macro_rules! tracing_actions {
    ($($variant:ident, $ty:ident, $key:literal);*) => {
        impl Catalog for TracingAction {
            const KEYS: &'static [&'static str] = &[$($key),*];
            const NEEDS: Option<ServiceKind> = Some(ServiceKind::Tracing);

            fn key(&self) -> &'static str {
                match self {
                    $(TracingAction::$variant(_) => $key,)*
                }
            }

            fn read<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Option<Self>, A::Error> {
                Ok(match key {
                    $($key => Some(TracingAction::$variant(map.next_value::<$ty>()?)),)*
                    _ => None,
                })
            }

            fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
                match self {
                    $(TracingAction::$variant(a) => map.serialize_entry($key, a),)*
                }
            }

            fn schemas(generator: &mut SchemaGenerator, out: &mut serde_json::Map<String, serde_json::Value>) {
                $(out.insert($key.to_owned(), generator.subschema_for::<$ty>().to_value());)*
            }

            fn service(&self) -> Option<&str> {
                self.connection().service.as_deref()
            }
        }
    };
}
tracing_actions! {
    StartTrace, TraceStart, "tracing.start_trace";
    RecordEvent, TraceRecord, "tracing.record_event";
    GetTrace, TraceGet, "tracing.get_trace";
    Query, TraceQuery, "tracing.query";
    Subscribe, TraceSubscribe, "tracing.subscribe"
}

impl TracingAction {
    /// How the action reaches its server.
    pub fn connection(&self) -> &TracingConnection {
        match self {
            TracingAction::StartTrace(a) => &a.connection,
            TracingAction::RecordEvent(a) => &a.connection,
            TracingAction::GetTrace(a) => &a.connection,
            TracingAction::Query(a) => &a.connection,
            TracingAction::Subscribe(a) => &a.connection,
        }
    }
}

/// How frames are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FrameEncoding {
    /// Text frames of JSON (the default).
    #[default]
    Json,
    /// Binary frames: the same JSON compressed with zstd (the answer comes
    /// back compressed too).
    Zstd,
}

impl FrameEncoding {
    fn is_default(&self) -> bool {
        *self == FrameEncoding::Json
    }
}

/// The fields every tracing action shares: the service, the frames and
/// the token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingConnection {
    /// A `tracing` service, or an `nginx` in front of replicas (default:
    /// the scenario's only tracing service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `json` (text frames, the default) or `zstd` (compressed binary frames).
    #[serde(default, skip_serializing_if = "FrameEncoding::is_default")]
    pub frames: FrameEncoding,
    /// A JWT sent as `Authorization: Bearer …` on the upgrade (for a
    /// server with `TRACING_REQUIRE_AUTH`); write `${TOKEN}` to take it
    /// from the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `tracing.start_trace`: starts a trace (`StartTrace`); the server
/// answers its new id, which the next step records into.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceStart {
    #[serde(flatten)]
    pub connection: TracingConnection,
    /// The flow id (a template; default `gauntlet-flow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
}

/// `tracing.record_event`: one generated event (`RecordEvent`), done when
/// the server answered `EventRecorded { success: true }` — which it may
/// only do once the event is committed in PostgreSQL. In a chain after
/// `tracing.start_trace` it records into the trace started; otherwise
/// each event gets a new random trace id, as the published client does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceRecord {
    #[serde(flatten)]
    pub connection: TracingConnection,
    /// As a chained step: this many events, one request each (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u32>,
    /// The events generated.
    #[serde(default, skip_serializing_if = "EventSpec::is_default")]
    pub event: EventSpec,
}

/// `tracing.get_trace`: reads a trace whole (`GetTrace`). In a chain it
/// reads the trace started, and fails (`missing_events`) when it holds
/// fewer events than the chain had acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceGet {
    #[serde(flatten)]
    pub connection: TracingConnection,
    /// The trace id (a template, e.g. `{{random:uuid}}` for one that does
    /// not exist); in a chain, default: the trace started before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// `true` (default): a trace the server does not know is an error
    /// (`not_found`); `false`: an expected answer (probing unknown ids).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub must_exist: bool,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

/// A trace's status, as the query filters on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TraceStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

/// `tracing.query`: queries traces (`QueryTraces`) by flow id, time range,
/// status, actor, with a limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    #[serde(flatten)]
    pub connection: TracingConnection,
    /// Traces of this flow (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Traces started within this long before the request (the time range
    /// `now - since .. now`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Duration>,
    /// Traces with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TraceStatus>,
    /// Traces with an event of this actor (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// At most this many traces (1..=10000; default 100).
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    100
}

/// `tracing.subscribe`: publish → notification latency across replicas,
/// as an operation of its own. A subscriber held on `service` (one per
/// engine thread, subscribed once and again after its connection is lost)
/// waits for each event this operation records through `publish_via`
/// (another replica, or the same); the operation is done when the
/// notification arrives, so its latency runs from the intended publish to
/// the notification (and no earlier than the publish's acknowledgement).
/// A notification not there within `notify_within` of the
/// acknowledgement fails the operation as `missed_notification`, and the
/// event is named by `tracing.subscribers_see_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceSubscribe {
    /// The subscriber's service.
    #[serde(flatten)]
    pub connection: TracingConnection,
    /// Where the events are recorded (default: the subscriber's service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_via: Option<String>,
    /// How long after the publish was acknowledged its notification may
    /// take (default `2s`).
    #[serde(default = "default_notify_within")]
    pub notify_within: Duration,
    /// What the operation's latency measures: `publish` (the default:
    /// from the intended publish to the notification, so it includes the
    /// publish's commit) or `commit` (from the publish's acknowledgement —
    /// its commit — to the notification: the fan-out alone).
    #[serde(default, skip_serializing_if = "FanoutFrom::is_default")]
    pub from: FanoutFrom,
    /// The events published.
    #[serde(default, skip_serializing_if = "EventSpec::is_default")]
    pub event: EventSpec,
}

/// Where `tracing.subscribe`'s latency starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FanoutFrom {
    /// The intended publish (open model: the publish's queueing and commit
    /// are part of it).
    #[default]
    Publish,
    /// The publish's acknowledgement, i.e. its commit: the fan-out through
    /// Redis to the subscriber alone (0 when the notification came first).
    Commit,
}

impl FanoutFrom {
    fn is_default(&self) -> bool {
        *self == FanoutFrom::Publish
    }
}

fn default_notify_within() -> Duration {
    Duration::from_secs(2)
}

/// An event type of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    ActorCreated,
    ActorStarted,
    ActorCompleted,
    ActorFailed,
    MessageSent,
    MessageReceived,
    StateChanged,
    PortConnected,
    PortDisconnected,
    /// A message from one actor's port to another's (`to_actor`,
    /// `to_port` drawn from the same pools).
    DataFlow,
    NetworkEvent,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        EventType::ActorCreated,
        EventType::ActorStarted,
        EventType::ActorCompleted,
        EventType::ActorFailed,
        EventType::MessageSent,
        EventType::MessageReceived,
        EventType::StateChanged,
        EventType::PortConnected,
        EventType::PortDisconnected,
        EventType::DataFlow,
        EventType::NetworkEvent,
    ];

    /// The type named `name` (`MessageSent`, …).
    pub fn from_name(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The protocol's name of the type (`MessageSent`, …).
    pub fn name(self) -> &'static str {
        match self {
            EventType::ActorCreated => "ActorCreated",
            EventType::ActorStarted => "ActorStarted",
            EventType::ActorCompleted => "ActorCompleted",
            EventType::ActorFailed => "ActorFailed",
            EventType::MessageSent => "MessageSent",
            EventType::MessageReceived => "MessageReceived",
            EventType::StateChanged => "StateChanged",
            EventType::PortConnected => "PortConnected",
            EventType::PortDisconnected => "PortDisconnected",
            EventType::DataFlow => "DataFlow",
            EventType::NetworkEvent => "NetworkEvent",
        }
    }
}

/// A share of large events: `{ share: 5%, size: 64KiB }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LargeEvents {
    /// The share of events that are large (e.g. `5%`).
    #[schemars(with = "String")]
    pub share: Percent,
    /// Their size.
    pub size: Size,
}

/// How events are generated: what a Reflow network records — actors from a
/// pool doing message sends and receives, data flows between ports, state
/// changes, lifecycle events — at a size (the event's JSON, padded with a
/// custom attribute), with a share of large ones. Deterministic for the
/// scenario's seed, except the ids (a run's own) and the timestamps (the
/// send time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Actor ids: a template, or a pool `{ prefix: actor-, count: 100 }`
    /// (default: 100 actors, uniformly).
    #[serde(default = "default_actors")]
    pub actors: KeySpec,
    /// Port names, as `actors` (default: 4 ports `out0`…`out3`).
    #[serde(default = "default_ports")]
    pub ports: KeySpec,
    /// The event types drawn, each with a weight, by the protocol's names
    /// (`MessageSent: 3`, `DataFlow: 1`, …; default: a Reflow network's
    /// mix — mostly messages and data flows).
    #[serde(default = "default_types")]
    pub types: std::collections::BTreeMap<String, u32>,
    /// Each event's size as JSON: padded up to it (default `1KiB`; an
    /// event's own fields take 600 to 800 bytes, so a smaller size leaves
    /// events unpadded).
    #[serde(default = "default_size")]
    pub size: Size,
    /// A share of large events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large: Option<LargeEvents>,
}

fn default_actors() -> KeySpec {
    KeySpec::Space {
        prefix: "actor-".to_owned(),
        count: 100,
        distribution: KeyDistribution::Uniform,
    }
}
fn default_ports() -> KeySpec {
    KeySpec::Space {
        prefix: "out".to_owned(),
        count: 4,
        distribution: KeyDistribution::Uniform,
    }
}
fn default_types() -> std::collections::BTreeMap<String, u32> {
    [
        (EventType::MessageSent, 30),
        (EventType::MessageReceived, 30),
        (EventType::DataFlow, 20),
        (EventType::StateChanged, 10),
        (EventType::ActorStarted, 4),
        (EventType::ActorCompleted, 4),
        (EventType::ActorFailed, 2),
    ]
    .into_iter()
    .map(|(t, w)| (t.name().to_owned(), w))
    .collect()
}
fn default_size() -> Size {
    Size(1024)
}

/// The smallest event size: what an event's fields take as JSON.
pub const MIN_EVENT_SIZE: u64 = 256;

impl Default for EventSpec {
    fn default() -> Self {
        EventSpec {
            actors: default_actors(),
            ports: default_ports(),
            types: default_types(),
            size: default_size(),
            large: None,
        }
    }
}

impl EventSpec {
    fn is_default(&self) -> bool {
        *self == EventSpec::default()
    }
}
