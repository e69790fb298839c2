//! A Reflow node's actions (`reflow.*`): `reflow-node`'s HTTP API
//! (`system-under-test/reflow-node/README.md`) in the user's words — send a
//! batch of messages into a source's inport (done when accepted, or with
//! `wait: sink` when every message reached its sinks: end to end), and read
//! a sink's count.
//!
//! A message is `{"key": KEY, "offset": N, "payload": …}`: `offset` is the
//! message's number in the run (unique per operation), so maps and filters
//! that read `offset` have it and a sink keeps the last one per key.

use schemars::{JsonSchema, SchemaGenerator};
use serde::de::MapAccess;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::Catalog;
use crate::data::{KeySpec, Payload};
use crate::model::ServiceKind;

/// One of a Reflow node's actions.
#[derive(Debug, Clone, PartialEq)]
pub enum ReflowAction {
    Send(ReflowSend),
    Sink(ReflowSink),
}

impl Catalog for ReflowAction {
    const KEYS: &'static [&'static str] = &["reflow.send", "reflow.sink"];
    const NEEDS: Option<ServiceKind> = Some(ServiceKind::Reflow);

    fn key(&self) -> &'static str {
        match self {
            ReflowAction::Send(_) => "reflow.send",
            ReflowAction::Sink(_) => "reflow.sink",
        }
    }

    fn read<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Option<Self>, A::Error> {
        Ok(match key {
            "reflow.send" => Some(ReflowAction::Send(map.next_value()?)),
            "reflow.sink" => Some(ReflowAction::Sink(map.next_value()?)),
            _ => None,
        })
    }

    fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        match self {
            ReflowAction::Send(a) => map.serialize_entry("reflow.send", a),
            ReflowAction::Sink(a) => map.serialize_entry("reflow.sink", a),
        }
    }

    fn schemas(
        generator: &mut SchemaGenerator,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        out.insert(
            "reflow.send".to_owned(),
            generator.subschema_for::<ReflowSend>().to_value(),
        );
        out.insert(
            "reflow.sink".to_owned(),
            generator.subschema_for::<ReflowSink>().to_value(),
        );
    }

    fn service(&self) -> Option<&str> {
        match self {
            ReflowAction::Send(a) => a.service.as_deref(),
            ReflowAction::Sink(a) => a.service.as_deref(),
        }
    }
}

/// When a `reflow.send` is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReflowWait {
    /// Every message entered the graph (the default).
    #[default]
    Accepted,
    /// Every message reached every sink it goes to (or a filter dropped
    /// it): end to end through the graph.
    Sink,
}

impl ReflowWait {
    fn is_default(&self) -> bool {
        *self == ReflowWait::Accepted
    }
}

/// `reflow.send`: one request of `batch` messages into a source's inport
/// (`POST /api/v1/inports/{node}/{port}`), counted in messages as well as
/// requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReflowSend {
    /// A `reflow` service (default: the scenario's only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The source node (default `src`, the built-in graphs' source).
    #[serde(default = "default_node")]
    pub node: String,
    /// Its inport (default `input`).
    #[serde(default = "default_port")]
    pub port: String,
    /// Messages per request, 1..=100000 (default 1).
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Each message's key (a sink keeps the last offset per key; default `gauntlet`).
    #[serde(default = "default_key")]
    pub key: KeySpec,
    /// Each message's `payload` field: a JSON template (`{ json: … }`),
    /// text, or random bytes of a size (sent base64); default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// `accepted` (default) or `sink` (end to end).
    #[serde(default, skip_serializing_if = "ReflowWait::is_default")]
    pub wait: ReflowWait,
}

/// `reflow.sink`: reads a sink's count (`GET /api/v1/sinks/{node}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReflowSink {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The sink node (default `out`, the built-in pipeline's sink).
    #[serde(default = "default_sink")]
    pub node: String,
}

fn default_node() -> String {
    "src".to_owned()
}
fn default_port() -> String {
    "input".to_owned()
}
fn default_sink() -> String {
    "out".to_owned()
}
fn default_batch() -> u32 {
    1
}
fn default_key() -> KeySpec {
    KeySpec::Template("gauntlet".to_owned())
}
