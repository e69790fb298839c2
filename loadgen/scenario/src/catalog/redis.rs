//! `redis.command`: one command on a Redis service — for side load and
//! for looking at what a system keeps there.

use schemars::{JsonSchema, SchemaGenerator};
use serde::de::MapAccess;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::Catalog;
use crate::model::ServiceKind;

impl Catalog for RedisCommand {
    const KEYS: &'static [&'static str] = &["redis.command"];
    const NEEDS: Option<ServiceKind> = Some(ServiceKind::Redis);

    fn key(&self) -> &'static str {
        "redis.command"
    }

    fn read<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Option<Self>, A::Error> {
        Ok(match key {
            "redis.command" => Some(map.next_value::<RedisCommand>()?),
            _ => None,
        })
    }

    fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("redis.command", self)
    }

    fn schemas(
        generator: &mut SchemaGenerator,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        out.insert(
            "redis.command".to_owned(),
            generator.subschema_for::<RedisCommand>().to_value(),
        );
    }

    fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }
}

/// `redis.command`: one command and its arguments (each a template, e.g.
/// `[SET, "k-{{seq}}", "{{random:string:32}}"]`), done when Redis answered;
/// an error reply (`-ERR …`) fails it as `redis_error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisCommand {
    /// A `redis` service (default: the scenario's only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
}
