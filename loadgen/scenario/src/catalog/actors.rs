//! The actor node's actions (`actors.*`): `actor-node`'s HTTP API
//! (`system-under-test/actors/README.md`) in the user's words — spawn and
//! stop components, send batches of messages to a component or the head of
//! a pipeline, publish to a topic, request-response, registry lookups —
//! and [`ComponentSpec`], how a scenario describes a component (inline, or
//! a seed 001 `Component.toml` file), shared with the `setup:` section.

use schemars::{JsonSchema, SchemaGenerator};
use serde::de::MapAccess;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::Catalog;
use crate::data::{KeySpec, Payload};
use crate::model::ServiceKind;
use crate::units::Duration;

/// One of the actor node's actions.
#[derive(Debug, Clone, PartialEq)]
pub enum ActorsAction {
    Spawn(ActorSpawn),
    Stop(ActorStop),
    Send(ActorSend),
    Request(ActorRequest),
    Publish(ActorPublish),
    Lookup(ActorLookup),
}

/// Every actor action with its key: `Variant, Type, "key"`.
macro_rules! actors_actions {
    ($($variant:ident, $ty:ident, $key:literal);*) => {
        impl Catalog for ActorsAction {
            const KEYS: &'static [&'static str] = &[$($key),*];
            const NEEDS: Option<ServiceKind> = Some(ServiceKind::Actors);

            fn key(&self) -> &'static str {
                match self {
                    $(ActorsAction::$variant(_) => $key,)*
                }
            }

            fn read<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Option<Self>, A::Error> {
                Ok(match key {
                    $($key => Some(ActorsAction::$variant(map.next_value::<$ty>()?)),)*
                    _ => None,
                })
            }

            fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
                match self {
                    $(ActorsAction::$variant(a) => map.serialize_entry($key, a),)*
                }
            }

            fn schemas(generator: &mut SchemaGenerator, out: &mut serde_json::Map<String, serde_json::Value>) {
                $(out.insert($key.to_owned(), generator.subschema_for::<$ty>().to_value());)*
            }

            fn service(&self) -> Option<&str> {
                match self {
                    $(ActorsAction::$variant(a) => a.service.as_deref(),)*
                }
            }

            fn resource(&self) -> Option<(&'static str, &str)> {
                ActorsAction::component(self).map(|c| ("components", c))
            }
        }
    };
}
actors_actions! {
    Spawn, ActorSpawn, "actors.spawn";
    Stop, ActorStop, "actors.stop";
    Send, ActorSend, "actors.send";
    Request, ActorRequest, "actors.request";
    Publish, ActorPublish, "actors.publish";
    Lookup, ActorLookup, "actors.lookup"
}

impl ActorsAction {
    /// The component (or topic) the action names, when it names one; a
    /// chained step naming none acts on the one the step before used.
    pub fn component(&self) -> Option<&str> {
        match self {
            ActorsAction::Spawn(_) => None,
            ActorsAction::Stop(a) => a.component.as_deref(),
            ActorsAction::Send(a) => a.component.as_deref(),
            ActorsAction::Request(a) => a.component.as_deref(),
            ActorsAction::Publish(a) => Some(&a.topic),
            ActorsAction::Lookup(a) => a.component.as_deref(),
        }
    }
}

/// A component's behaviour (native, no WASM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Behavior {
    /// Replies with the payload (request-response).
    Echo,
    /// Counts messages and sums per key; its counts survive restarts of the node.
    Counter,
    /// Counts messages: the end of a pipeline.
    Sink,
    /// A pipeline stage: passes every message on to `to`.
    Forward,
    /// Pub-sub: fans every message out to each subscriber.
    Topic,
}

impl Behavior {
    pub fn name(self) -> &'static str {
        match self {
            Behavior::Echo => "echo",
            Behavior::Counter => "counter",
            Behavior::Sink => "sink",
            Behavior::Forward => "forward",
            Behavior::Topic => "topic",
        }
    }
}

/// What the supervisor does when a handler panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Always restarted (within the restart intensity).
    Permanent,
    /// Restarted only after a failure.
    Transient,
    /// Never restarted.
    Temporary,
}

impl RestartPolicy {
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::Permanent => "permanent",
            RestartPolicy::Transient => "transient",
            RestartPolicy::Temporary => "temporary",
        }
    }
}

/// A component as a scenario describes it: inline (`behavior`, `to`,
/// `mailbox`, supervision) or a seed 001 `Component.toml` (`file`, a path
/// relative to the scenario; its `[component] name`, if any, must be the
/// name the component is given). The same type serves `actors.spawn`'s
/// `component`, `setup.actors.components` (with a `name`) and a
/// pipeline's stages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// `setup.actors.components` only: the registry name, 1–255 of
    /// `A-Z a-z 0-9 . _ -`, not starting with `.` (a spawn names its
    /// components itself; a pipeline's stages are `NAME-1`, `NAME-2`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A `Component.toml` (with its `[behavior]` table), relative to the
    /// scenario's file; instead of the inline keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `echo`, `counter`, `sink`, `forward` (with `to`) or `topic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<Behavior>,
    /// `forward`: the component every message goes on to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The bounded mailbox, in messages (the node's default: 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<u32>,
    /// `permanent` (the node's default), `transient` or `temporary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    /// At most this many restarts within `within`, then the component
    /// stops for good (`failed`); also its budget for
    /// `actors.restarts_bounded` (the node's default: 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// The restart intensity's window (the node's default: `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
}

/// The node's default restart budget (`[supervision] max_restarts`).
pub const DEFAULT_MAX_RESTARTS: u32 = 10;

impl ComponentSpec {
    /// The component as the node's JSON spec, named `name` or its own
    /// (`None` for a `file`, which is sent as TOML).
    pub fn to_json(&self, name: Option<&str>) -> Option<serde_json::Value> {
        if self.file.is_some() {
            return None;
        }
        let mut doc = serde_json::Map::new();
        let mut component = serde_json::Map::new();
        if let Some(name) = name.or(self.name.as_deref()) {
            component.insert("name".into(), name.into());
        }
        component.insert("version".into(), "1.0.0".into());
        doc.insert("component".into(), component.into());
        if let Some(n) = self.mailbox {
            doc.insert(
                "runtime".into(),
                serde_json::json!({ "message_queue_size": n }),
            );
        }
        let mut supervision = serde_json::Map::new();
        if let Some(r) = self.restart {
            supervision.insert("restart".into(), r.name().into());
        }
        if let Some(n) = self.max_restarts {
            supervision.insert("max_restarts".into(), n.into());
        }
        if let Some(w) = self.within {
            supervision.insert(
                "within_seconds".into(),
                (w.as_secs_f64().ceil() as u64).into(),
            );
        }
        if !supervision.is_empty() {
            doc.insert("supervision".into(), supervision.into());
        }
        let mut behavior = serde_json::Map::new();
        behavior.insert(
            "kind".into(),
            self.behavior.unwrap_or(Behavior::Sink).name().into(),
        );
        if let Some(to) = &self.to {
            behavior.insert("to".into(), to.clone().into());
        }
        doc.insert("behavior".into(), behavior.into());
        Some(doc.into())
    }
}

/// `actors.spawn`: spawns one component (`name`, a template such as
/// `worker-{{seq}}`), or a batch of `count` named `PREFIX0`…`PREFIX{count-1}`
/// from one template in one request. In a chain, the next step acts on the
/// component spawned (a batch: the first; a `actors.stop` step stops each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorSpawn {
    /// The actors service (default: the scenario's only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// One component's name (a template, e.g. `worker-{{seq}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A batch: this many components from one template (with `prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// A batch's name prefix (a template, e.g. `storm-{{seq}}-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// What the component is.
    pub component: ComponentSpec,
}

/// `actors.stop`: stops a component gracefully (pre_stop, drain, post_stop).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorStop {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The component (a template); in a chain, default: what the step before spawned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

/// When a send counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SendWait {
    /// Every message handled at the end of its path (the default).
    #[default]
    Handled,
    /// Every message in the first mailbox.
    Queued,
}

impl SendWait {
    fn is_default(&self) -> bool {
        *self == SendWait::Handled
    }
}

/// `actors.send`: a batch of `batch` messages to a component or the head
/// of a pipeline, done when every message was handled at the end of its
/// path; throughput is counted in messages as well as requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorSend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The component or pipeline head (a template); in a chain, default:
    /// the component the step before used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Messages per request, 1..=100000 (default 1).
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Each message's payload: a JSON template (`{ json: … }`), text, or
    /// random bytes of a size (sent base64 in a JSON string; default `64B`).
    #[serde(default = "default_message")]
    pub payload: Payload,
    /// Each message's key (a counter counts per key; default `gauntlet`).
    #[serde(default = "default_key")]
    pub key: KeySpec,
    /// `handled` (default) or `queued`.
    #[serde(default, skip_serializing_if = "SendWait::is_default")]
    pub wait: SendWait,
}

fn default_batch() -> u32 {
    1
}
fn default_message() -> Payload {
    Payload::Random(crate::data::SizeDist::Fixed(crate::units::Size(64)))
}
fn default_key() -> KeySpec {
    KeySpec::Template("gauntlet".to_owned())
}

/// `actors.publish`: a batch of messages to a topic, done when every
/// subscriber handled every message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorPublish {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The topic (a component of behaviour `topic`).
    pub topic: String,
    /// Messages per request, 1..=100000 (default 1).
    #[serde(default = "default_batch")]
    pub batch: u32,
    #[serde(default = "default_message")]
    pub payload: Payload,
    #[serde(default = "default_key")]
    pub key: KeySpec,
}

/// `actors.request`: request-response, done when the reply is received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The component (an `echo` replies with the payload); a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The request's payload (default `64B`).
    #[serde(default = "default_message")]
    pub payload: Payload,
}

/// `actors.lookup`: a registry lookup by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorLookup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The name (a template); in a chain, default: the component the step before used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}
