//! `postgres.query`: one SQL statement on a PostgreSQL service, with
//! parameters — for reading back what a system stored, for side load, and
//! as the per-row `INSERT` reference next to a system's own ingest.

use schemars::{JsonSchema, SchemaGenerator};
use serde::de::MapAccess;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::{Catalog, EventSpec};
use crate::model::ServiceKind;

impl Catalog for PostgresQuery {
    const KEYS: &'static [&'static str] = &["postgres.query"];
    const NEEDS: Option<ServiceKind> = Some(ServiceKind::Postgres);

    fn key(&self) -> &'static str {
        "postgres.query"
    }

    fn read<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Option<Self>, A::Error> {
        Ok(match key {
            "postgres.query" => Some(map.next_value::<PostgresQuery>()?),
            _ => None,
        })
    }

    fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("postgres.query", self)
    }

    fn schemas(
        generator: &mut SchemaGenerator,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        out.insert(
            "postgres.query".to_owned(),
            generator.subschema_for::<PostgresQuery>().to_value(),
        );
    }

    fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }
}

/// `postgres.query`: one statement (a prepared statement, run with its
/// parameters — never text pasted into SQL), done when PostgreSQL answered
/// it; with `rows`, the number of rows returned or affected must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresQuery {
    /// A `postgres` service (default: the scenario's only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The statement, with `$1`, `$2`, … for its parameters; every
    /// parameter is sent as text, so cast where a column wants another type
    /// (`$1::int`, `$2::jsonb`).
    pub sql: String,
    /// The parameters, each a template (`{{seq}}`, `{{random:uuid}}`, …),
    /// after the generated event's when `event` is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// A generated trace event as the first six parameters: `$1` event id,
    /// `$2` trace id, `$3` timestamp, `$4` event type, `$5` actor id, `$6`
    /// the event as JSON — the rows `tracing.record_event` makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventSpec>,
    /// Rows the statement must return or affect (default: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// The database (default `postgres`).
    #[serde(default = "default_database")]
    pub database: String,
    /// The user (default `postgres`, trusted from loopback in Gauntlet's stacks).
    #[serde(default = "default_user")]
    pub user: String,
}

fn default_database() -> String {
    "postgres".to_owned()
}
fn default_user() -> String {
    "postgres".to_owned()
}
