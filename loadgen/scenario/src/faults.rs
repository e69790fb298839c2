//! The fault timeline (`faults:`) and the checks (`checks:`) of a scenario.
//!
//! Each fault names its kind by one key. A service fault's kind key holds
//! its target (`kill: fabric`); a link fault names the link with `link:`
//! and its kind key holds the main parameter (`latency: 50ms`):
//!
//! ```yaml
//! faults:
//!   - { at: 25s, kill: fabric, signal: KILL, restart_after: 2s }
//!   - { at: 40s, for: 5s, link: loadgen->fabric, latency: 50ms, jitter: 10ms }
//!   - { at: 10s, for: 2s, every: 20s, count: 3, pause: { any: [fabric-a, fabric-b] } }
//! checks: [fabric.no_acked_write_lost]
//! ```
//!
//! [`expand`] turns the timeline into concrete [`FaultWindow`]s: repeats
//! unrolled, random targets picked with the run's seed, sorted by start.
//! It is a pure function of the scenario; the scheduler (`gauntlet-faults`)
//! applies its output.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration as StdDuration;

use gauntlet_control::Signal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Scenario;
use crate::tree::Seg;
use crate::units::{Duration, Size};
use crate::validate::Problem;

/// A fault's target: one service or link, or a random pick from a set
/// (with the run's seed, anew for every repeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Target {
    One(String),
    Any {
        /// The candidates; one is picked at random for each window.
        any: Vec<String>,
    },
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        const SHAPE: &str =
            "a name (`fabric`, `loadgen->fabric`) or a random pick `{ any: [a, b] }`";
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Any {
            any: Vec<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Target;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(SHAPE)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Target, E> {
                Ok(Target::One(v.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Target, A::Error> {
                Err(de::Error::custom(
                    "a fault has one target, not a list (hint: for a random pick write `{ any: [...] }`; for several targets write several faults)",
                ))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Target, A::Error> {
                let any = Any::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map_err(|e| de::Error::custom(format!("{e} (hint: write {SHAPE})")))?;
                Ok(Target::Any { any: any.any })
            }
        }
        d.deserialize_any(V)
    }
}

impl Target {
    pub fn candidates(&self) -> &[String] {
        match self {
            Target::One(t) => std::slice::from_ref(t),
            Target::Any { any } => any,
        }
    }
}

/// Which directions of a link a link fault affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkStream {
    /// Requests, from the client to the service.
    Upstream,
    /// Responses, from the service back.
    Downstream,
    #[default]
    Both,
}

/// One entry of `faults:`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Name in `faults.json` and the report (default `<kind>-<n>`); repeats add `#2`, `#3`, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the (first) fault starts, from the run's start.
    pub at: Duration,
    /// How long it lasts before it is healed; without it the fault stays.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<Duration>,
    /// Repeat the fault this often (needs `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// How many times in all (with `every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,

    /// Send a signal to the service (default `KILL`); see `restart_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<Target>,
    /// Stop the service gracefully (SIGTERM, then SIGKILL after its `stop_timeout`); `for` starts it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Target>,
    /// Freeze the service (SIGSTOP / `docker pause`); `for` or a later `resume` unfreezes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Target>,
    /// Unfreeze a paused service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Target>,
    /// Stop the service gracefully and start it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Target>,
    /// Cut the service off: every link to it goes down (process mode) or it leaves the run's network (containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Target>,
    /// Burn `cores` CPU cores on the host for the window (needs `for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Target>,
    /// Fill the service's data directory until the disk is full or `max` is written, for the window (needs `for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_full: Option<Target>,
    /// An actor node's `component` panics in its handler after `panic_after`
    /// messages (test-only fault endpoint); `for` clears it, else it is instantaneous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_panic: Option<Target>,
    /// An actor node's `component` stalls in its handler for `stall`
    /// (default: the window's `for`); `for` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_stall: Option<Target>,
    /// A Reflow node's `actor` (a node of its graph) panics after
    /// `panic_after` more messages (the node's test-only fault endpoint).
    /// Instantaneous: the published runtime never restarts a panicked task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflow_actor_panic: Option<Target>,

    /// `kill`: the signal (`KILL`, `TERM`, `SIGINT`, `9`, …; default `KILL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub signal: Option<Signal>,
    /// `kill`: start the service again this long after the kill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_after: Option<Duration>,
    /// `cpu`: cores to burn (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// `disk_full`: most bytes to write (default `4GiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Size>,
    /// `actor_panic`, `actor_stall`: the component (by registry name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// `reflow_actor_panic`: the graph node whose actor panics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `actor_panic`, `reflow_actor_panic`: messages handled before the panic (default 0: the next one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_after: Option<u32>,
    /// `actor_panic`: panic again after every `panic_after` messages until
    /// cleared (default `false`: once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<bool>,
    /// `actor_stall`: how long the handler stalls (default: the window's `for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<Duration>,

    /// A link fault's link: `loadgen->SERVICE`, or `{ any: [...] }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Target>,
    /// Link fault: delay every chunk of data by this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Duration>,
    /// `latency`: ± this much, uniformly (order is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
    /// Link fault: at most this many bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Size>,
    /// Link fault: reset connections (RST) this long after the fault takes hold of them (`0s`: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<Duration>,
    /// Link fault (`blackhole: true`): data is accepted and never delivered or answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blackhole: Option<bool>,
    /// Link fault: cut data into slices of about this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slicer: Option<Size>,
    /// `slicer`: ± this much per slice (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_variation: Option<Size>,
    /// `slicer`: pause between slices (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_delay: Option<Duration>,
    /// Link fault: close each connection after this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Size>,
    /// Link fault (`down: true`): new connections refused, existing ones reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<bool>,
    /// Link fault: which directions (default `both`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<LinkStream>,
    /// Link fault: the probability, 0 to 1, that a connection is affected (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<f64>,
}

/// A check a scenario asks for, run on the history after the read-back.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum CheckName {
    /// Every acknowledged append is readable at its offset with the same payload.
    #[serde(rename = "fabric.no_acked_write_lost")]
    NoAckedWriteLost,
    /// No offset is returned for two different appends.
    #[serde(rename = "fabric.offsets_unique")]
    OffsetsUnique,
    /// Acknowledged enqueues minus acknowledged acks are all delivered by the drain.
    #[serde(rename = "fabric.queue.at_least_once")]
    QueueAtLeastOnce,
    /// Each key holds its last acknowledged value (or a later unknown one).
    #[serde(rename = "fabric.kv.read_your_writes")]
    KvReadYourWrites,
    /// Every acknowledged message is counted at its sink (`counter`), per key.
    #[serde(rename = "actors.no_acked_message_lost")]
    ActorsNoAckedMessageLost,
    /// After the faults heal, acknowledged work resumes within
    /// `readback.stall_within`, and no component sits on queued messages
    /// without handling them.
    #[serde(rename = "actors.no_silent_stall")]
    ActorsNoSilentStall,
    /// No component restarted more than its budget (`max_restarts`).
    #[serde(rename = "actors.restarts_bounded")]
    ActorsRestartsBounded,
    /// Every acknowledged event is in PostgreSQL, by event id and digest.
    #[serde(rename = "tracing.no_acked_event_lost")]
    TracingNoAckedEventLost,
    /// Every event committed while a subscription was up reached it.
    #[serde(rename = "tracing.subscribers_see_events")]
    TracingSubscribersSeeEvents,
    /// No success answered for a request wholly inside a window where
    /// PostgreSQL was down (killed, paused or stopped).
    #[serde(rename = "tracing.no_false_ack")]
    TracingNoFalseAck,
    /// Every message a Reflow node accepted reached its sinks, or the
    /// stall is reported with the actor's name and the count stuck.
    #[serde(rename = "reflow.accepted_reach_sink")]
    ReflowAcceptedReachSink,
    /// For every message a Reflow node processed, the tracing server stored
    /// the event the client was handed; how many were lost, and in which
    /// fault window.
    #[serde(rename = "reflow.trace_events_complete")]
    ReflowTraceEventsComplete,
}

impl CheckName {
    pub fn name(self) -> &'static str {
        match self {
            CheckName::NoAckedWriteLost => "fabric.no_acked_write_lost",
            CheckName::OffsetsUnique => "fabric.offsets_unique",
            CheckName::QueueAtLeastOnce => "fabric.queue.at_least_once",
            CheckName::KvReadYourWrites => "fabric.kv.read_your_writes",
            CheckName::ActorsNoAckedMessageLost => "actors.no_acked_message_lost",
            CheckName::ActorsNoSilentStall => "actors.no_silent_stall",
            CheckName::ActorsRestartsBounded => "actors.restarts_bounded",
            CheckName::TracingNoAckedEventLost => "tracing.no_acked_event_lost",
            CheckName::TracingSubscribersSeeEvents => "tracing.subscribers_see_events",
            CheckName::TracingNoFalseAck => "tracing.no_false_ack",
            CheckName::ReflowAcceptedReachSink => "reflow.accepted_reach_sink",
            CheckName::ReflowTraceEventsComplete => "reflow.trace_events_complete",
        }
    }

    /// The checks of Reflow nodes (read back from the nodes, and from the
    /// tracing servers' PostgreSQL for the trace events).
    pub fn is_reflow(self) -> bool {
        matches!(
            self,
            CheckName::ReflowAcceptedReachSink | CheckName::ReflowTraceEventsComplete
        )
    }

    /// The checks of the tracing server (read back from its PostgreSQL).
    pub fn is_tracing(self) -> bool {
        matches!(
            self,
            CheckName::TracingNoAckedEventLost
                | CheckName::TracingSubscribersSeeEvents
                | CheckName::TracingNoFalseAck
        )
    }

    /// The checks of the actor node (the others are the fabric's).
    pub fn is_actors(self) -> bool {
        matches!(
            self,
            CheckName::ActorsNoAckedMessageLost
                | CheckName::ActorsNoSilentStall
                | CheckName::ActorsRestartsBounded
        )
    }
}

/// How the read-back after the load runs (`readback:`, only with `checks:`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadBackSpec {
    /// How long the drain of each checked queue may wait, once the queue
    /// looks empty, for jobs leased during the run (until their visibility
    /// timeout) or delayed to come back (default `90s`); past it the run
    /// fails with exit code 3, naming the queue and what is still leased.
    #[serde(default = "default_drain_within")]
    pub drain_within: Duration,
    /// `actors.no_silent_stall`: how soon after a fault heals acknowledged
    /// messages must flow again, and how long a component may sit on
    /// queued messages without handling one (default `5s`).
    #[serde(default = "default_stall_within")]
    pub stall_within: Duration,
}

/// `actors.no_silent_stall`'s bound when the scenario gives none.
pub const DEFAULT_STALL_WITHIN: StdDuration = StdDuration::from_secs(5);

fn default_stall_within() -> Duration {
    Duration(DEFAULT_STALL_WITHIN)
}

/// The drain's bound when the scenario gives none.
pub const DEFAULT_DRAIN_WITHIN: StdDuration = StdDuration::from_secs(90);

fn default_drain_within() -> Duration {
    Duration(DEFAULT_DRAIN_WITHIN)
}

impl Scenario {
    /// The read-back's drain bound: `readback.drain_within` or 90 s.
    pub fn drain_within(&self) -> StdDuration {
        self.readback
            .map_or(DEFAULT_DRAIN_WITHIN, |r| r.drain_within.0)
    }

    /// `actors.no_silent_stall`'s bound: `readback.stall_within` or 5 s.
    pub fn stall_within(&self) -> StdDuration {
        self.readback
            .map_or(DEFAULT_STALL_WITHIN, |r| r.stall_within.0)
    }
}

/// The service fault kinds, by their key.
pub const SERVICE_KINDS: [&str; 11] = [
    "kill",
    "stop",
    "pause",
    "resume",
    "restart",
    "partition",
    "cpu",
    "disk_full",
    "actor_panic",
    "actor_stall",
    "reflow_actor_panic",
];
/// The fault kinds of the actor node, through its test-only fault endpoint.
pub const ACTOR_KINDS: [&str; 2] = ["actor_panic", "actor_stall"];
/// The link fault kinds, by their key.
pub const LINK_KINDS: [&str; 7] = [
    "latency",
    "bandwidth",
    "reset",
    "blackhole",
    "slicer",
    "limit",
    "down",
];

/// Most windows one scenario may expand to.
pub const MAX_WINDOWS: u64 = 10_000;
/// `disk_full`'s default bound.
pub const DEFAULT_DISK_FULL_MAX: u64 = 4 << 30;

/// What a link fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkAction {
    Latency {
        latency: StdDuration,
        jitter: StdDuration,
    },
    Bandwidth {
        bytes_per_s: u64,
    },
    Reset {
        after: StdDuration,
    },
    Blackhole,
    Slicer {
        average_size: u64,
        size_variation: u64,
        delay: StdDuration,
    },
    Limit {
        bytes: u64,
    },
    Down,
}

/// What a fault does, with every parameter resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    Kill {
        signal: Signal,
        restart_after: Option<StdDuration>,
    },
    Stop,
    Pause,
    Resume,
    Restart,
    Partition,
    Cpu {
        cores: u32,
    },
    DiskFull {
        max_bytes: u64,
    },
    /// `POST /api/v1/components/{component}/faults {"panic_after", "repeat"}`.
    ActorPanic {
        component: String,
        panic_after: u32,
        repeat: bool,
    },
    /// `POST /api/v1/components/{component}/faults {"stall_ms"}`.
    ActorStall {
        component: String,
        stall: StdDuration,
    },
    /// A Reflow node: `POST /api/v1/test/fault {"actor","mode":"panic","after"}`.
    ReflowActorPanic {
        actor: String,
        panic_after: u32,
    },
    Link {
        action: LinkAction,
        stream: LinkStream,
        toxicity: f64,
    },
}

impl FaultAction {
    /// The kind's key in the scenario (`kill`, `latency`, …).
    pub fn key(&self) -> &'static str {
        match self {
            FaultAction::Kill { .. } => "kill",
            FaultAction::Stop => "stop",
            FaultAction::Pause => "pause",
            FaultAction::Resume => "resume",
            FaultAction::Restart => "restart",
            FaultAction::Partition => "partition",
            FaultAction::Cpu { .. } => "cpu",
            FaultAction::DiskFull { .. } => "disk_full",
            FaultAction::ActorPanic { .. } => "actor_panic",
            FaultAction::ActorStall { .. } => "actor_stall",
            FaultAction::ReflowActorPanic { .. } => "reflow_actor_panic",
            FaultAction::Link { action, .. } => match action {
                LinkAction::Latency { .. } => "latency",
                LinkAction::Bandwidth { .. } => "bandwidth",
                LinkAction::Reset { .. } => "reset",
                LinkAction::Blackhole => "blackhole",
                LinkAction::Slicer { .. } => "slicer",
                LinkAction::Limit { .. } => "limit",
                LinkAction::Down => "down",
            },
        }
    }

    pub fn is_link(&self) -> bool {
        matches!(self, FaultAction::Link { .. })
    }
}

/// One concrete fault: what, to which target, from when to when.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultWindow {
    /// Unique in the run: the fault's name, `#k` for its k-th repeat (k ≥ 2).
    pub name: String,
    /// Index of the fault in `faults:`.
    pub fault: usize,
    /// 0 for the first occurrence.
    pub repeat: u32,
    pub target: String,
    pub action: FaultAction,
    /// From the run's start.
    pub start: StdDuration,
    /// When it is healed (`for`, or `restart_after` for a kill); `None`: it stays.
    pub end: Option<StdDuration>,
    /// The parameters as written (for `faults.json`).
    pub params: BTreeMap<String, serde_json::Value>,
}

impl FaultSpec {
    /// The kind keys set on this fault, service kinds first.
    pub fn kind_keys(&self) -> Vec<&'static str> {
        let service = [
            self.kill.is_some(),
            self.stop.is_some(),
            self.pause.is_some(),
            self.resume.is_some(),
            self.restart.is_some(),
            self.partition.is_some(),
            self.cpu.is_some(),
            self.disk_full.is_some(),
            self.actor_panic.is_some(),
            self.actor_stall.is_some(),
            self.reflow_actor_panic.is_some(),
        ];
        let link = [
            self.latency.is_some(),
            self.bandwidth.is_some(),
            self.reset.is_some(),
            self.blackhole == Some(true),
            self.slicer.is_some(),
            self.limit.is_some(),
            self.down == Some(true),
        ];
        SERVICE_KINDS
            .iter()
            .zip(service)
            .chain(LINK_KINDS.iter().zip(link))
            .filter(|(_, set)| *set)
            .map(|(k, _)| *k)
            .collect()
    }

    /// The target as written (the service kind's value, or `link`).
    pub fn target(&self) -> Option<&Target> {
        [
            &self.kill,
            &self.stop,
            &self.pause,
            &self.resume,
            &self.restart,
            &self.partition,
            &self.cpu,
            &self.disk_full,
            &self.actor_panic,
            &self.actor_stall,
            &self.reflow_actor_panic,
        ]
        .into_iter()
        .find_map(Option::as_ref)
        .or(self.link.as_ref())
    }

    /// The action, assuming the spec is valid (one kind).
    pub fn action(&self) -> Option<FaultAction> {
        let stream = self.stream.unwrap_or_default();
        let toxicity = self.toxicity.unwrap_or(1.0);
        let link = |action| FaultAction::Link {
            action,
            stream,
            toxicity,
        };
        Some(match *self.kind_keys().first()? {
            "kill" => FaultAction::Kill {
                signal: self.signal.unwrap_or(Signal::Kill),
                restart_after: self.restart_after.map(Duration::as_std),
            },
            "stop" => FaultAction::Stop,
            "pause" => FaultAction::Pause,
            "resume" => FaultAction::Resume,
            "restart" => FaultAction::Restart,
            "partition" => FaultAction::Partition,
            "cpu" => FaultAction::Cpu {
                cores: self.cores.unwrap_or(1),
            },
            "disk_full" => FaultAction::DiskFull {
                max_bytes: self.max.map_or(DEFAULT_DISK_FULL_MAX, |s| s.0),
            },
            "actor_panic" => FaultAction::ActorPanic {
                component: self.component.clone()?,
                panic_after: self.panic_after.unwrap_or(0),
                repeat: self.repeat.unwrap_or(false),
            },
            "actor_stall" => FaultAction::ActorStall {
                component: self.component.clone()?,
                stall: self.stall.or(self.for_)?.as_std(),
            },
            "reflow_actor_panic" => FaultAction::ReflowActorPanic {
                actor: self.actor.clone()?,
                panic_after: self.panic_after.unwrap_or(0),
            },
            "latency" => link(LinkAction::Latency {
                latency: self.latency?.as_std(),
                jitter: self.jitter.map_or(StdDuration::ZERO, Duration::as_std),
            }),
            "bandwidth" => link(LinkAction::Bandwidth {
                bytes_per_s: self.bandwidth?.0,
            }),
            "reset" => link(LinkAction::Reset {
                after: self.reset?.as_std(),
            }),
            "blackhole" => link(LinkAction::Blackhole),
            "slicer" => link(LinkAction::Slicer {
                average_size: self.slicer?.0,
                size_variation: self.size_variation.map_or(0, |s| s.0),
                delay: self.slice_delay.map_or(StdDuration::ZERO, Duration::as_std),
            }),
            "limit" => link(LinkAction::Limit {
                bytes: self.limit?.0,
            }),
            "down" => link(LinkAction::Down),
            _ => return None,
        })
    }

    /// The window's planned length: `for`, or `restart_after` for a kill.
    fn heals_after(&self) -> Option<StdDuration> {
        self.for_
            .map(Duration::as_std)
            .or(self.restart_after.map(Duration::as_std))
    }

    /// Parameters for `faults.json`: every key set besides timing and target.
    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        let mut out = BTreeMap::new();
        if let Some(map) = v.as_object_mut() {
            for key in [
                "name",
                "at",
                "every",
                "count",
                "link",
                "kill",
                "stop",
                "pause",
                "resume",
                "restart",
                "partition",
                "cpu",
                "disk_full",
                "actor_panic",
                "actor_stall",
                "reflow_actor_panic",
            ] {
                map.remove(key);
            }
            for (k, v) in map.iter() {
                out.insert(k.clone(), v.clone());
            }
        }
        if let Some(FaultAction::Kill { signal, .. }) = self.action() {
            out.insert("signal".into(), signal.name().into());
        }
        out
    }
}

/// The run's length: the sum of its phases.
pub fn run_length(s: &Scenario) -> StdDuration {
    s.workload.phases.iter().map(|p| p.duration.as_std()).sum()
}

/// The links a scenario may name: `loadgen->SERVICE` for each service,
/// and `FROM->TO` for each service `TO` that service `FROM` references
/// (`{addr:TO}` in its `env` or `command`, or an nginx upstream; see
/// [`crate::wiring`]).
pub fn links(s: &Scenario) -> Vec<String> {
    s.stack
        .services
        .keys()
        .map(|name| format!("loadgen->{name}"))
        .chain(crate::wiring::service_links(&s.stack))
        .collect()
}

/// Whether a link is between two services (`FROM->TO`, `FROM` not `loadgen`).
pub fn is_service_link(link: &str) -> bool {
    link.split_once("->")
        .is_some_and(|(from, _)| from != "loadgen")
}

/// splitmix64, for seeded target picks.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The timeline as concrete windows, sorted by start (then by position in
/// `faults:`, then repeat). Pure: the same scenario and seed give the same
/// windows. Assumes a validated scenario; invalid entries are skipped.
pub fn expand(faults: &[FaultSpec], seed: u64) -> Vec<FaultWindow> {
    let mut out = Vec::new();
    for (i, spec) in faults.iter().enumerate() {
        let (Some(action), Some(target)) = (spec.action(), spec.target()) else {
            continue;
        };
        let candidates = target.candidates();
        if candidates.is_empty() {
            continue;
        }
        let base = spec
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", action.key(), i + 1));
        let count = match spec.every {
            Some(_) => spec.count.unwrap_or(1),
            None => 1,
        };
        let params = spec.params();
        for k in 0..count {
            let start = spec.at.as_std() + spec.every.map_or(StdDuration::ZERO, |e| e.as_std() * k);
            let pick = mix(seed ^ mix((i as u64) << 32 | u64::from(k))) as usize % candidates.len();
            out.push(FaultWindow {
                name: if k == 0 {
                    base.clone()
                } else {
                    format!("{base}#{}", k + 1)
                },
                fault: i,
                repeat: k,
                target: candidates[pick].clone(),
                action: action.clone(),
                start,
                end: spec.heals_after().map(|d| start + d),
                params: params.clone(),
            });
        }
    }
    out.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(a.fault.cmp(&b.fault))
            .then(a.repeat.cmp(&b.repeat))
    });
    out
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_owned())
}

/// The rules of `actor_panic` and `actor_stall`: an actors service, a component name.
fn check_actor_fault(
    s: &Scenario,
    f: &FaultSpec,
    kind: &str,
    problem: &mut impl FnMut(Option<&str>, String, Option<String>),
) {
    if let Some(target) = f.target() {
        for c in target.candidates() {
            if let Some(svc) = s.stack.services.get(c)
                && svc
                    .kind
                    .is_some_and(|k| k != crate::model::ServiceKind::Actors)
            {
                problem(
                    Some(kind),
                    format!("service `{c}` is not an actor node; `{kind}` needs one"),
                    Some("target a service of `kind: actors`".to_owned()),
                );
            }
        }
    }
    match &f.component {
        None => problem(
            Some(kind),
            format!("an `{kind}` fault needs `component:` (the component to break)"),
            Some(format!(
                "e.g. `{{ at: 5s, {kind}: actors, component: ingest-2 }}`"
            )),
        ),
        Some(c) if !crate::validate::is_component_name(c) => problem(
            Some("component"),
            format!("`{c}` is not a component name"),
            Some("1 to 255 of `A-Z a-z 0-9 . _ -`, not starting with `.`".to_owned()),
        ),
        Some(_) => {}
    }
    if f.stall.is_some_and(|d| d.0.is_zero()) {
        problem(
            Some("stall"),
            "`stall: 0s` stalls nothing".to_owned(),
            Some("e.g. `stall: 2s`".to_owned()),
        );
    }
}

/// The rules of `reflow_actor_panic`: a reflow service, an actor (graph node) name.
fn check_reflow_fault(
    s: &Scenario,
    f: &FaultSpec,
    problem: &mut impl FnMut(Option<&str>, String, Option<String>),
) {
    let kind = "reflow_actor_panic";
    if let Some(target) = f.target() {
        for c in target.candidates() {
            if let Some(svc) = s.stack.services.get(c)
                && svc
                    .kind
                    .is_some_and(|k| k != crate::model::ServiceKind::Reflow)
            {
                problem(
                    Some(kind),
                    format!("service `{c}` is not a Reflow node; `{kind}` needs one"),
                    Some("target a service of `kind: reflow`".to_owned()),
                );
            }
        }
    }
    match &f.actor {
        None => problem(
            Some(kind),
            format!("a `{kind}` fault needs `actor:` (the graph node whose actor panics)"),
            Some(format!("e.g. `{{ at: 5s, {kind}: reflow, actor: map }}`")),
        ),
        Some(a) if a.is_empty() || a.contains(['.', '/', ' ']) => problem(
            Some("actor"),
            format!("`{a}` is not a graph node id"),
            Some("a node of the graph, e.g. `map`".to_owned()),
        ),
        Some(_) => {}
    }
}

/// The semantic rules of `faults:` and `checks:`.
pub(crate) fn check(s: &Scenario, out: &mut Vec<Problem>) {
    let services: Vec<&str> = s.stack.services.keys().map(String::as_str).collect();
    let links = links(s);
    let run = run_length(s);
    let mut names = BTreeSet::new();
    let mut windows: u64 = 0;
    for (i, f) in s.faults.iter().enumerate() {
        let here = vec![k("faults"), Seg::Index(i)];
        let mut problem = |key: Option<&str>, message: String, hint: Option<String>| {
            out.push(Problem {
                path: here.clone(),
                key: key.map(str::to_owned),
                message,
                hint,
            })
        };
        let kinds = f.kind_keys();
        let kind = match kinds.as_slice() {
            [] => {
                problem(
                    None,
                    "this fault has no kind".to_owned(),
                    Some(format!(
                        "add one of {} (with the service as its value), or `link:` with one of {}",
                        SERVICE_KINDS.map(|k| format!("`{k}`")).join(", "),
                        LINK_KINDS.map(|k| format!("`{k}`")).join(", ")
                    )),
                );
                continue;
            }
            [one] => *one,
            [first, second, ..] => {
                problem(
                    Some(second),
                    format!("one fault has one kind, found `{first}` and `{second}`"),
                    Some("split them into two faults (they may share `at`)".to_owned()),
                );
                continue;
            }
        };
        let is_link = LINK_KINDS.contains(&kind);
        let target_key = if is_link { "link" } else { kind };

        // The target.
        if is_link {
            if f.link.is_none() {
                problem(
                    Some(kind),
                    format!("a `{kind}` fault needs a `link:`"),
                    Some(format!(
                        "e.g. `link: {}`",
                        links.first().map_or("loadgen->fabric", String::as_str)
                    )),
                );
            }
        } else if f.link.is_some() {
            problem(
                Some("link"),
                format!("`link:` is for link faults; `{kind}` targets a service"),
                Some(format!("remove `link:`; the service is `{kind}:`'s value")),
            );
        }
        let known: Vec<&str> = if is_link {
            links.iter().map(String::as_str).collect()
        } else {
            services.clone()
        };
        if let Some(target) = f.target() {
            if target.candidates().is_empty() {
                problem(
                    Some(target_key),
                    "`any:` lists no candidates".to_owned(),
                    Some("list at least one".to_owned()),
                );
            }
            for c in target.candidates() {
                if is_link
                    && is_service_link(c)
                    && s.stack.runtime == crate::model::Runtime::Containers
                {
                    problem(
                        Some(target_key),
                        format!("link `{c}` between two services needs process mode"),
                        Some("in containers services reach each other on the run's Docker network, where the harness's fault proxy is not; run with `stack.runtime: process`, or fault `loadgen->SERVICE` or the service itself (`partition`, `pause`)".to_owned()),
                    );
                    continue;
                }
                if !known.contains(&c.as_str()) {
                    let what = if is_link { "link" } else { "service" };
                    let hint = crate::diag::did_you_mean(c, known.iter().copied())
                        .map(|m| format!("did you mean `{m}`?"))
                        .unwrap_or_else(|| format!("{what}s: {}", known.join(", ")));
                    problem(
                        Some(target_key),
                        format!("no {what} `{c}` in this scenario"),
                        Some(hint),
                    );
                }
            }
        }

        // Parameters that belong to other kinds.
        let owned: [(&str, bool, &[&str]); 16] = [
            ("component", f.component.is_some(), &ACTOR_KINDS),
            ("actor", f.actor.is_some(), &["reflow_actor_panic"]),
            (
                "panic_after",
                f.panic_after.is_some(),
                &["actor_panic", "reflow_actor_panic"],
            ),
            ("repeat", f.repeat.is_some(), &["actor_panic"]),
            ("stall", f.stall.is_some(), &["actor_stall"]),
            ("signal", f.signal.is_some(), &["kill"]),
            ("restart_after", f.restart_after.is_some(), &["kill"]),
            ("cores", f.cores.is_some(), &["cpu"]),
            ("max", f.max.is_some(), &["disk_full"]),
            ("jitter", f.jitter.is_some(), &["latency"]),
            ("size_variation", f.size_variation.is_some(), &["slicer"]),
            ("slice_delay", f.slice_delay.is_some(), &["slicer"]),
            ("stream", f.stream.is_some(), &LINK_KINDS),
            ("toxicity", f.toxicity.is_some(), &LINK_KINDS),
            ("blackhole", f.blackhole == Some(false), &[]),
            ("down", f.down == Some(false), &[]),
        ];
        for (key, set, kinds) in owned {
            if !set || kinds.contains(&kind) {
                continue;
            }
            if kinds.is_empty() {
                problem(
                    Some(key),
                    format!("`{key}: false` does nothing"),
                    Some(format!("remove it, or write `{key}: true`")),
                );
            } else {
                problem(
                    Some(key),
                    format!("`{key}` does not apply to a `{kind}` fault"),
                    Some(format!(
                        "`{key}` is for {} faults",
                        kinds
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
            }
        }

        // Healing.
        match (kind, f.for_.is_some()) {
            ("kill", true) => problem(
                Some("for"),
                "a kill cannot be healed with `for`".to_owned(),
                Some(
                    "use `restart_after:` to start the service again, or `stop:` with `for:`"
                        .to_owned(),
                ),
            ),
            ("restart", true) | ("resume", true) | ("reflow_actor_panic", true) => problem(
                Some("for"),
                format!("a `{kind}` is instantaneous; `for` has nothing to heal"),
                Some("remove `for:`".to_owned()),
            ),
            ("cpu" | "disk_full", false) => problem(
                Some(kind),
                format!("a `{kind}` fault needs `for:` (it must end)"),
                Some("e.g. `for: 10s`".to_owned()),
            ),
            ("actor_stall", false) if f.stall.is_none() => problem(
                Some(kind),
                "an `actor_stall` needs `for:` (when it is cleared) or `stall:` (how long the handler stalls)".to_owned(),
                Some("e.g. `for: 3s`".to_owned()),
            ),
            _ => {}
        }
        if ACTOR_KINDS.contains(&kind) {
            check_actor_fault(s, f, kind, &mut problem);
        }
        if kind == "reflow_actor_panic" {
            check_reflow_fault(s, f, &mut problem);
        }
        if f.for_.is_some_and(|d| d.0.is_zero()) {
            problem(
                Some("for"),
                "`for: 0s` heals at once".to_owned(),
                Some("give the fault a length, or remove `for:`".to_owned()),
            );
        }
        if f.cores == Some(0) || f.cores.is_some_and(|c| c > 256) {
            problem(
                Some("cores"),
                format!("`cores: {}` is out of range", f.cores.unwrap_or(0)),
                Some("burn 1 to 256 cores".to_owned()),
            );
        }
        if f.max.is_some_and(|m| m.0 == 0) {
            problem(
                Some("max"),
                "`max: 0B` writes nothing".to_owned(),
                Some("e.g. `max: 1GiB`".to_owned()),
            );
        }
        if f.bandwidth.is_some_and(|b| b.0 == 0) {
            problem(
                Some("bandwidth"),
                "`bandwidth: 0B` is a blackhole".to_owned(),
                Some("use `blackhole: true`".to_owned()),
            );
        }
        if let Some(avg) = f.slicer
            && (avg.0 == 0 || f.size_variation.is_some_and(|v| v.0 >= avg.0))
        {
            problem(
                Some("slicer"),
                format!(
                    "slices of {avg} ± {} are not possible",
                    f.size_variation.unwrap_or_default()
                ),
                Some("the size must be above 0 and above `size_variation`".to_owned()),
            );
        }
        if let Some(t) = f.toxicity
            && !(0.0..=1.0).contains(&t)
        {
            problem(
                Some("toxicity"),
                format!("toxicity {t} is not a probability"),
                Some("use 0 to 1 (1: every connection)".to_owned()),
            );
        }

        // Repeats and the run's length.
        let count = match (f.every, f.count) {
            (Some(_), None) => {
                problem(
                    Some("every"),
                    "`every` needs `count`".to_owned(),
                    Some("add e.g. `count: 3`".to_owned()),
                );
                1
            }
            (None, Some(n)) if n != 1 => {
                problem(
                    Some("count"),
                    "`count` needs `every`".to_owned(),
                    Some("add e.g. `every: 20s`".to_owned()),
                );
                1
            }
            (Some(every), Some(n)) => {
                if n == 0 {
                    problem(
                        Some("count"),
                        "`count: 0` injects nothing".to_owned(),
                        Some("remove the fault instead".to_owned()),
                    );
                }
                let len = f.heals_after().unwrap_or(StdDuration::MAX);
                if n > 1 && every.as_std() <= len {
                    problem(
                        Some("every"),
                        format!(
                            "repeats every {every} overlap: each lasts {}",
                            f.heals_after()
                                .map_or("until the run ends".to_owned(), |d| Duration(d)
                                    .to_string())
                        ),
                        Some("make `every` longer than `for` (or `restart_after`)".to_owned()),
                    );
                }
                n
            }
            _ => 1,
        };
        windows += u64::from(count);
        let last_start = f.at.as_std()
            + f.every
                .map_or(StdDuration::ZERO, |e| e.as_std() * count.saturating_sub(1));
        if last_start >= run {
            problem(
                Some(if count > 1 { "count" } else { "at" }),
                format!(
                    "the fault starts at {} but the run ends at {}",
                    Duration(last_start),
                    Duration(run)
                ),
                Some("faults happen while the phases run; move it earlier".to_owned()),
            );
        }
        let name = f
            .name
            .clone()
            .unwrap_or_else(|| format!("{kind}-{}", i + 1));
        if f.name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.contains('#'))
        {
            problem(
                Some("name"),
                format!("fault name `{name}` is not usable"),
                Some("use a non-empty name without `#`".to_owned()),
            );
        } else if !names.insert(name.clone()) {
            problem(
                Some("name"),
                format!("fault name `{name}` is used twice"),
                Some("fault names must be unique".to_owned()),
            );
        }
    }
    if windows > MAX_WINDOWS {
        out.push(Problem {
            path: vec![k("faults")],
            key: None,
            message: format!("the faults expand to {windows} windows, more than {MAX_WINDOWS}"),
            hint: Some("lower `count`".to_owned()),
        });
    }
    if s.readback.is_some() && s.checks.is_empty() {
        out.push(Problem {
            path: vec![k("readback")],
            key: None,
            message: "`readback` is given but there are no `checks:`, so nothing is read back"
                .to_owned(),
            hint: Some("add `checks:`, or remove `readback`".to_owned()),
        });
    }
    let mut seen = BTreeSet::new();
    for (i, c) in s.checks.iter().enumerate() {
        if !seen.insert(*c) {
            out.push(Problem {
                path: vec![k("checks"), Seg::Index(i)],
                key: None,
                message: format!("check `{}` is listed twice", c.name()),
                hint: Some("list each check once".to_owned()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: &str = "name: t\nstack:\n  services:\n    fabric: { kind: fabric }\n    other: { command: [x, '{port}'] }\nworkload:\n  phases: [{ name: p, duration: 60s, rate: 10/s }]\n  operations: [{ name: a, fabric.stream.append: { service: fabric, stream: t/n/s } }]\n";

    fn load(faults: &str) -> Result<Scenario, Vec<String>> {
        let text = format!("{BASE}{faults}");
        crate::load("s.yaml", &text, &[]).map_err(|d| d.iter().map(|d| d.to_string()).collect())
    }

    fn errors(faults: &str) -> String {
        load(faults).expect_err("invalid").join("\n")
    }

    #[test]
    fn the_drain_bound_defaults_to_90_s_and_can_be_set() {
        let s = load("checks: [fabric.queue.at_least_once]\n").unwrap();
        assert_eq!(s.drain_within(), StdDuration::from_secs(90));
        let s = load("checks: [fabric.queue.at_least_once]\nreadback: { drain_within: 1500ms }\n")
            .unwrap();
        assert_eq!(s.drain_within(), StdDuration::from_millis(1500));
        let s = load("checks: [fabric.queue.at_least_once]\nreadback: {}\n").unwrap();
        assert_eq!(s.drain_within(), StdDuration::from_secs(90));
    }

    #[test]
    fn a_full_timeline_parses_and_expands() {
        let s = load(
            "faults:\n  - { at: 25s, kill: fabric, signal: TERM, restart_after: 2s }\n  - { name: slow, at: 10s, for: 5s, link: loadgen->fabric, latency: 50ms, jitter: 10ms, stream: downstream, toxicity: 0.5 }\n  - { at: 5s, for: 1s, every: 10s, count: 3, pause: { any: [fabric, other] } }\n  - { at: 40s, for: 5s, cpu: fabric, cores: 2 }\n  - { at: 50s, for: 2s, disk_full: fabric, max: 1GiB }\n  - { at: 55s, link: loadgen->other, down: true, for: 1s }\nchecks: [fabric.no_acked_write_lost, fabric.offsets_unique]\n",
        )
        .unwrap();
        assert_eq!(
            s.checks,
            vec![CheckName::NoAckedWriteLost, CheckName::OffsetsUnique]
        );
        let w = expand(&s.faults, s.seed);
        let names: Vec<&str> = w.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pause-3",
                "slow",
                "pause-3#2",
                "kill-1",
                "pause-3#3",
                "cpu-4",
                "disk_full-5",
                "down-6"
            ]
        );
        let kill = &w[3];
        assert_eq!(
            kill.action,
            FaultAction::Kill {
                signal: Signal::Term,
                restart_after: Some(StdDuration::from_secs(2))
            }
        );
        assert_eq!(kill.end, Some(StdDuration::from_secs(27)));
        assert_eq!(kill.params["signal"], "TERM");
        let slow = &w[1];
        assert_eq!(
            slow.action,
            FaultAction::Link {
                action: LinkAction::Latency {
                    latency: StdDuration::from_millis(50),
                    jitter: StdDuration::from_millis(10)
                },
                stream: LinkStream::Downstream,
                toxicity: 0.5,
            }
        );
        assert_eq!(slow.params["latency"], "50ms");
        assert_eq!(slow.target, "loadgen->fabric");
        assert_eq!(w[7].end, Some(StdDuration::from_secs(56)));
        // The resolved copy round-trips.
        let again = crate::load("s.yaml", &crate::to_yaml(&s), &[]).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn mistakes_are_precise() {
        let e = errors("faults:\n  - { at: 5s, kill: fabrc }\n");
        assert!(
            e.contains("s.yaml:10:")
                && e.contains("no service `fabrc`")
                && e.contains("did you mean `fabric`"),
            "{e}"
        );
        let e = errors("faults:\n  - { at: 5s, link: loadgen->fabic, latency: 5ms }\n");
        assert!(
            e.contains("no link `loadgen->fabic`") && e.contains("loadgen->fabric"),
            "{e}"
        );
        let e = errors("faults:\n  - { at: 5s, for: 2s, kill: fabric }\n");
        assert!(
            e.contains("a kill cannot be healed with `for`") && e.contains("restart_after"),
            "{e}"
        );
        let e = errors("faults:\n  - { at: 5s, for: 2s, restart: fabric }\n");
        assert!(e.contains("`for` has nothing to heal"), "{e}");
        let e = errors("faults:\n  - { at: 5s, cpu: fabric }\n");
        assert!(e.contains("needs `for:`"), "{e}");
        let e = errors("faults:\n  - { at: 5s, pause: fabric, kill: fabric }\n");
        assert!(e.contains("one fault has one kind"), "{e}");
        let e = errors("faults:\n  - { at: 5s, for: 1s }\n");
        assert!(e.contains("no kind"), "{e}");
        let e = errors("faults:\n  - { at: 5s, latency: 5ms }\n");
        assert!(e.contains("needs a `link:`"), "{e}");
        let e = errors("faults:\n  - { at: 5s, pause: fabric, jitter: 5ms, for: 1s }\n");
        assert!(
            e.contains("`jitter` does not apply to a `pause` fault"),
            "{e}"
        );
        let e = errors("faults:\n  - { at: 5s, for: 10s, every: 5s, count: 3, pause: fabric }\n");
        assert!(e.contains("overlap"), "{e}");
        let e = errors("faults:\n  - { at: 5s, every: 5s, pause: fabric, for: 1s }\n");
        assert!(e.contains("`every` needs `count`"), "{e}");
        let e = errors("faults:\n  - { at: 50s, every: 5s, count: 3, pause: fabric, for: 1s }\n");
        assert!(
            e.contains("starts at 1m") || e.contains("starts at 60s"),
            "{e}"
        );
        let e = errors("faults:\n  - { at: 5s, pause: { any: [] }, for: 1s }\n");
        assert!(e.contains("lists no candidates"), "{e}");
        let e = errors("faults:\n  - { at: 5s, kill: fabric, signal: FOO }\n");
        assert!(e.contains("not a signal"), "{e}");
        let e =
            errors("faults:\n  - { at: 5s, link: loadgen->fabric, latency: 5ms, toxicity: 2 }\n");
        assert!(e.contains("not a probability"), "{e}");
        let e = errors(
            "faults:\n  - { at: 5s, pause: fabric, for: 1s, name: x }\n  - { at: 9s, pause: fabric, for: 1s, name: x }\n",
        );
        assert!(e.contains("`x` is used twice"), "{e}");
        let e = errors("faults:\n  - { at: 5s, paus: fabric, for: 1s }\n");
        assert!(
            e.contains("unknown key `paus`") && e.contains("did you mean `pause`"),
            "{e}"
        );
        let e = errors("faults:\n  - { at: 5s, kill: [fabric] }\n");
        assert!(e.contains("one target, not a list"), "{e}");
        let e = errors("faults:\n  - { at: 5s, kill: { any: fabric } }\n");
        assert!(e.contains("random pick"), "{e}");
        let e = errors("checks: [fabric.no_acked_writes_lost]\n");
        assert!(
            e.contains("did you mean `fabric.no_acked_write_lost`"),
            "{e}"
        );
        let e = errors("readback: { drain_within: 5s }\n");
        assert!(e.contains("there are no `checks:`"), "{e}");
        let e = errors("checks: [fabric.queue.at_least_once]\nreadback: { drain_withn: 5s }\n");
        assert!(e.contains("did you mean `drain_within`"), "{e}");
        let e = errors("checks: [fabric.queue.at_least_once]\nreadback: { drain_within: 5 }\n");
        assert!(
            e.contains("readback.drain_within") || e.contains("drain_within"),
            "{e}"
        );
        let e = errors("faults:\n  - { at: 5s, link: loadgen->fabric, bandwidth: 0B }\n");
        assert!(e.contains("blackhole"), "{e}");
    }

    fn spec() -> impl Strategy<Value = FaultSpec> {
        (
            0u64..50,
            proptest::option::of(1u64..5),
            proptest::option::of((6u64..20, 1u32..5)),
            0usize..4,
            proptest::collection::vec(0usize..3, 1..4),
        )
            .prop_map(|(at, for_, rep, kind, any)| {
                let svc = ["a", "b", "c"];
                let target = if any.len() == 1 {
                    Target::One(svc[any[0]].to_owned())
                } else {
                    Target::Any {
                        any: any.iter().map(|i| svc[*i].to_owned()).collect(),
                    }
                };
                let mut f = FaultSpec {
                    at: Duration::from_secs(at),
                    for_: for_.map(Duration::from_secs),
                    every: rep.map(|r| Duration::from_secs(r.0)),
                    count: rep.map(|r| r.1),
                    ..FaultSpec::default()
                };
                match kind {
                    0 => f.pause = Some(target),
                    1 => f.cpu = Some(target),
                    2 => {
                        f.for_ = None;
                        f.restart_after = for_.map(Duration::from_secs);
                        f.kill = Some(target)
                    }
                    _ => {
                        f.link = Some(match target {
                            Target::One(t) => Target::One(format!("loadgen->{t}")),
                            Target::Any { any } => Target::Any {
                                any: any.into_iter().map(|t| format!("loadgen->{t}")).collect(),
                            },
                        });
                        f.latency = Some(Duration::from_millis(10));
                    }
                }
                f
            })
    }

    proptest! {
        #[test]
        fn expansion_is_sorted_seeded_and_complete(specs in proptest::collection::vec(spec(), 0..8), seed in any::<u64>()) {
            let w = expand(&specs, seed);
            let expected: u32 = specs.iter().map(|s| if s.every.is_some() { s.count.unwrap() } else { 1 }).sum();
            prop_assert_eq!(w.len() as u32, expected);
            prop_assert!(w.windows(2).all(|p| p[0].start <= p[1].start), "sorted by start");
            prop_assert_eq!(&w, &expand(&specs, seed), "same seed, same windows");
            for x in &w {
                let s = &specs[x.fault];
                prop_assert!(s.target().unwrap().candidates().contains(&x.target), "picked from its set");
                let every = s.every.map_or(StdDuration::ZERO, |e| e.as_std());
                prop_assert_eq!(x.start, s.at.as_std() + every * x.repeat);
                let heal = s.for_.or(s.restart_after).map(|d| x.start + d.as_std());
                prop_assert_eq!(x.end, heal);
                prop_assert_eq!(x.action.key(), s.kind_keys()[0]);
            }
            let names: BTreeSet<&str> = w.iter().map(|x| x.name.as_str()).collect();
            prop_assert_eq!(names.len(), w.len(), "names unique");
        }
    }

    #[test]
    fn random_picks_depend_on_the_seed_and_cover_the_set() {
        let f = FaultSpec {
            at: Duration::from_secs(1),
            for_: Some(Duration::from_secs(1)),
            every: Some(Duration::from_secs(2)),
            count: Some(60),
            pause: Some(Target::Any {
                any: vec!["a".into(), "b".into(), "c".into()],
            }),
            ..FaultSpec::default()
        };
        let picks = |seed| {
            expand(std::slice::from_ref(&f), seed)
                .into_iter()
                .map(|w| w.target)
                .collect::<Vec<_>>()
        };
        let one = picks(1);
        assert_eq!(
            one.iter().collect::<BTreeSet<_>>().len(),
            3,
            "all candidates picked over 60 repeats"
        );
        assert_ne!(one, picks(2), "another seed, other picks");
    }
}
