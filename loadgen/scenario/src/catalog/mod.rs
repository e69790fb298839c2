//! The operation catalog: what an operation does, in the user's words.
//!
//! An operation is a `name`, a `weight` and exactly one action key
//! (`fabric.stream.append`, `fabric.queue.reserve`, `http`, …), optionally
//! followed by `then:` steps that act on what the action got (the job a
//! reserve got, the key a put wrote, the offset a read reached).
//!
//! Each system has its actions in a module of its own ([`fabric`],
//! [`http`]), implementing [`Catalog`]; [`Action`] has one variant per
//! system, listed once in the `systems!` invocation below, from which the
//! keys, (de)serialisation and the schema are derived. Adding a system's
//! actions is a module and one line there (see ARCHITECTURE.md, "How to add
//! a system to Gauntlet").

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::ServiceKind;

pub mod actors;
pub mod fabric;
pub mod http;
pub mod postgres;
pub mod redis;
pub mod reflow;
pub mod tracing;

pub use actors::*;
pub use fabric::*;
pub use http::*;
pub use postgres::*;
pub use redis::*;
pub use reflow::*;
pub use tracing::*;

/// What a system's catalog module provides: its YAML keys, reading and
/// writing its actions, their schemas and the service they target.
pub trait Catalog: Sized {
    /// The system's action keys, in the order the schema lists them.
    const KEYS: &'static [&'static str];
    /// The service kind the actions need; `None`: any HTTP service.
    const NEEDS: Option<ServiceKind>;
    /// The key of this action.
    fn key(&self) -> &'static str;
    /// Reads the action under `key`; `None` when `key` is not one of [`Self::KEYS`].
    fn read<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Option<Self>, A::Error>;
    fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error>;
    /// Adds each key's schema to `out`.
    fn schemas(
        generator: &mut SchemaGenerator,
        out: &mut serde_json::Map<String, serde_json::Value>,
    );
    /// The service the action names, if any.
    fn service(&self) -> Option<&str>;
    /// The resource the action names (`kind`, `name`), if the system has
    /// such resources; a chained step without one inherits its previous step's.
    fn resource(&self) -> Option<(&'static str, &str)> {
        None
    }
}

/// One kind of operation in the mix, with its name and weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Name in results, reports and gates (unique in the scenario).
    pub name: String,
    /// Relative share of arrivals (default 1).
    pub weight: u32,
    /// What the operation does.
    pub action: Action,
    /// Steps run one after the other when the action succeeds, each acting
    /// on what the previous one got; recorded as `OPERATION.STEP`.
    pub then: Vec<Step>,
}

impl Operation {
    /// The name a step is recorded under.
    pub fn step_name(&self, step: &Step) -> String {
        format!("{}.{}", self.name, step.name)
    }
}

/// One step of a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Name of the step (default: the last word of its action key, e.g. `ack`).
    pub name: String,
    pub action: Action,
}

/// Declares [`Action`] with one variant per system and derives its keys,
/// (de)serialisation and schema from the systems' [`Catalog`]s.
macro_rules! systems {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// What an operation does: exactly one of the catalog's keys, of one system.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Action {
            $($variant($ty),)*
        }

        impl Action {
            /// The YAML keys of the catalog, in the order the schema lists them.
            pub fn keys() -> &'static [&'static str] {
                static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
                KEYS.get_or_init(|| {
                    let mut keys = Vec::new();
                    $(keys.extend_from_slice(<$ty as Catalog>::KEYS);)*
                    keys
                })
            }

            pub fn key(&self) -> &'static str {
                match self {
                    $(Action::$variant(a) => a.key(),)*
                }
            }

            /// The service the action targets, when the scenario names one.
            pub fn service(&self) -> Option<&str> {
                match self {
                    $(Action::$variant(a) => a.service(),)*
                }
            }

            /// The service kind the action needs; `None`: any HTTP service.
            pub fn needs(&self) -> Option<ServiceKind> {
                match self {
                    $(Action::$variant(_) => <$ty as Catalog>::NEEDS,)*
                }
            }

            /// The resource the action names (`kind`, `name`), if any.
            pub fn resource(&self) -> Option<(&'static str, &str)> {
                match self {
                    $(Action::$variant(a) => Catalog::resource(a),)*
                }
            }

            /// Reads the action under `key`; `None` when `key` is not an action.
            fn read<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Option<Action>, A::Error> {
                $(if let Some(a) = <$ty as Catalog>::read(key, map)? {
                    return Ok(Some(Action::$variant(a)));
                })*
                Ok(None)
            }

            fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
                match self {
                    $(Action::$variant(a) => a.write(map),)*
                }
            }

            fn schemas(generator: &mut SchemaGenerator) -> serde_json::Map<String, serde_json::Value> {
                let mut out = serde_json::Map::new();
                $(<$ty as Catalog>::schemas(generator, &mut out);)*
                out
            }
        }
    };
}

systems! {
    Fabric(FabricAction),
    Actors(ActorsAction),
    Tracing(TracingAction),
    Reflow(ReflowAction),
    Postgres(PostgresQuery),
    Redis(RedisCommand),
    Http(HttpRequest),
}

impl Action {
    /// The default step name: the last word of the key (`ack`, `get`, `http`).
    pub fn short_name(&self) -> &'static str {
        self.key().rsplit('.').next().unwrap_or("step")
    }

    /// The fabric action, if this is one.
    pub fn fabric(&self) -> Option<&FabricAction> {
        match self {
            Action::Fabric(a) => Some(a),
            _ => None,
        }
    }

    /// The tracing server's action, if this is one.
    pub fn tracing(&self) -> Option<&TracingAction> {
        match self {
            Action::Tracing(a) => Some(a),
            _ => None,
        }
    }

    /// A Reflow node's action, if this is one.
    pub fn reflow(&self) -> Option<&ReflowAction> {
        match self {
            Action::Reflow(a) => Some(a),
            _ => None,
        }
    }

    /// The actor node's action, if this is one.
    pub fn actors(&self) -> Option<&ActorsAction> {
        match self {
            Action::Actors(a) => Some(a),
            _ => None,
        }
    }
}

// ------------------------------------------------------------ operations

/// Field names an operation accepts besides the action keys.
pub const OPERATION_FIELDS: [&str; 3] = ["name", "weight", "then"];

fn operation_fields() -> Vec<&'static str> {
    OPERATION_FIELDS
        .iter()
        .copied()
        .chain(Action::keys().iter().copied())
        .collect()
}

fn set_action<E: de::Error>(action: &mut Option<Action>, new: Action) -> Result<(), E> {
    if let Some(old) = action {
        return Err(E::custom(format!(
            "an operation has one action, found `{}` and `{}` (hint: split them into two operations, or chain the second with `then:`)",
            old.key(),
            new.key()
        )));
    }
    *action = Some(new);
    Ok(())
}

fn no_action<E: de::Error>(what: &str) -> E {
    E::custom(format!(
        "{what} has no action (hint: add one of {})",
        Action::keys()
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("weight", &self.weight)?;
        self.action.write(&mut map)?;
        if !self.then.is_empty() {
            map.serialize_entry("then", &self.then)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Operation;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an operation: `name`, `weight` and one action such as `fabric.stream.append`",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Operation, A::Error> {
                let mut name = None;
                let mut weight = None;
                let mut then = Vec::new();
                let mut action: Option<Action> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<String>()?),
                        "weight" => weight = Some(map.next_value::<u32>()?),
                        "then" => then = map.next_value::<Vec<Step>>()?,
                        other => match Action::read(other, &mut map)? {
                            Some(a) => set_action(&mut action, a)?,
                            None => {
                                return Err(de::Error::unknown_field(other, op_fields()));
                            }
                        },
                    }
                }
                let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
                let action =
                    action.ok_or_else(|| no_action::<A::Error>(&format!("operation `{name}`")))?;
                Ok(Operation {
                    name,
                    weight: weight.unwrap_or(1),
                    action,
                    then,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// serde's `unknown_field` wants `&'static [&'static str]`; the catalog is
/// fixed, so each list is built once.
fn op_fields() -> &'static [&'static str] {
    static FIELDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(operation_fields)
}

fn step_fields_static() -> &'static [&'static str] {
    static FIELDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(step_fields)
}

fn step_fields() -> Vec<&'static str> {
    std::iter::once("name")
        .chain(Action::keys().iter().copied())
        .collect()
}

impl Serialize for Step {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("name", &self.name)?;
        self.action.write(&mut map)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Step;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a step: one action such as `fabric.queue.ack: {}`, and an optional `name`",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
                let mut name = None;
                let mut action: Option<Action> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<String>()?),
                        "weight" | "then" => {
                            return Err(de::Error::custom(format!(
                                "a step has no `{key}` (hint: steps run in order after the operation's action; only operations have weights and chains)"
                            )));
                        }
                        other => match Action::read(other, &mut map)? {
                            Some(a) => set_action(&mut action, a)?,
                            None => {
                                return Err(de::Error::unknown_field(other, step_fields_static()));
                            }
                        },
                    }
                }
                let action = action.ok_or_else(|| no_action::<A::Error>("a step"))?;
                Ok(Step {
                    name: name.unwrap_or_else(|| action.short_name().to_owned()),
                    action,
                })
            }
        }
        d.deserialize_map(V)
    }
}

fn action_properties(
    generator: &mut SchemaGenerator,
) -> serde_json::Map<String, serde_json::Value> {
    Action::schemas(generator)
}

fn one_action() -> serde_json::Value {
    serde_json::Value::Array(
        Action::keys()
            .iter()
            .map(|k| serde_json::json!({ "required": [k] }))
            .collect(),
    )
}

impl JsonSchema for Step {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Step".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut props = action_properties(generator);
        props.insert(
            "name".into(),
            serde_json::json!({ "type": "string", "description": "Recorded as `OPERATION.NAME` (default: the action's last word)." }),
        );
        json_schema!({
            "description": "A chained step: acts on what the previous step got.",
            "type": "object",
            "properties": props,
            "additionalProperties": false,
            "oneOf": one_action()
        })
    }
}

impl JsonSchema for Operation {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Operation".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut props = action_properties(generator);
        let step = generator.subschema_for::<Step>().to_value();
        props.insert(
            "name".into(),
            serde_json::json!({ "type": "string", "description": "Name in results, reports and gates." }),
        );
        props.insert(
            "weight".into(),
            serde_json::json!({ "type": "integer", "minimum": 0, "default": 1, "description": "Relative share of arrivals; 0 only runs it in phases whose `mix` names it." }),
        );
        props.insert(
            "then".into(),
            serde_json::json!({ "type": "array", "items": step, "description": "Steps run after the action succeeds, each on what the previous one got." }),
        );
        json_schema!({
            "description": "One kind of operation in the mix: a name, a weight and exactly one action.",
            "type": "object",
            "properties": props,
            "required": ["name"],
            "additionalProperties": false,
            "oneOf": one_action()
        })
    }
}
