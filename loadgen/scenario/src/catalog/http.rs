//! `http`: any HTTP request to a service of the stack or an external base
//! URL — the generic action, for systems Gauntlet has no driver for.

use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Catalog;
use crate::data::Body;
use crate::model::ServiceKind;

impl Catalog for HttpRequest {
    const KEYS: &'static [&'static str] = &["http"];
    const NEEDS: Option<ServiceKind> = None;

    fn key(&self) -> &'static str {
        "http"
    }

    fn read<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Option<Self>, A::Error> {
        Ok(match key {
            "http" => Some(map.next_value::<HttpRequest>()?),
            _ => None,
        })
    }

    fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("http", self)
    }

    fn schemas(
        generator: &mut SchemaGenerator,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        out.insert(
            "http".to_owned(),
            generator.subschema_for::<HttpRequest>().to_value(),
        );
    }

    fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }
}

/// `http`: any HTTP request to a booted service or an external base URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// A service of the stack or a name of `stack.external` (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `GET` (default), `POST`, `PUT`, `DELETE`, `HEAD`, `PATCH` or `OPTIONS`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Path (and query) relative to the service's base URL; may hold
    /// placeholders such as `{{seq}}`.
    pub url: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The body: a text template, `{ json: … }`, or random bytes `{ size: … }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// Expected status: a code or a list of codes (default: any 2xx).
    #[serde(default, skip_serializing_if = "Expect::is_any_2xx")]
    pub expect: Expect,
}

fn default_method() -> String {
    "GET".to_owned()
}

/// Status codes an HTTP operation counts as success.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Expect {
    #[default]
    Any2xx,
    Codes(Vec<u16>),
}

impl Expect {
    fn is_any_2xx(&self) -> bool {
        *self == Expect::Any2xx
    }

    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Expect::Any2xx => (200..300).contains(&status),
            Expect::Codes(codes) => codes.contains(&status),
        }
    }
}

impl Serialize for Expect {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expect::Any2xx => s.serialize_str("2xx"),
            Expect::Codes(c) if c.len() == 1 => s.serialize_u16(c[0]),
            Expect::Codes(c) => c.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn code<E: de::Error>(v: u64) -> Result<u16, E> {
            if (100..=599).contains(&v) {
                Ok(v as u16)
            } else {
                Err(E::custom(format!(
                    "`{v}` is not an HTTP status (hint: use 100 to 599, e.g. `200`)"
                )))
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Expect;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code such as `200`, a list of codes, or `2xx`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Expect, E> {
                Ok(Expect::Codes(vec![code(v)?]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Expect, E> {
                Ok(Expect::Codes(vec![code(v.max(0) as u64)?]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expect, E> {
                if v == "2xx" {
                    return Ok(Expect::Any2xx);
                }
                Err(E::custom(format!(
                    "`{v}` is not an expected status (hint: write a code such as `200`, a list `[200, 404]`, or `2xx`)"
                )))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Expect, A::Error> {
                let mut codes = Vec::new();
                while let Some(v) = seq.next_element::<u64>()? {
                    codes.push(code(v)?);
                }
                if codes.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list accepts no status (hint: list at least one code, or leave `expect` out for any 2xx)",
                    ));
                }
                Ok(Expect::Codes(codes))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Expect {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Expect".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Expected status: a code, a list of codes, or `2xx` (the default).",
            "oneOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "array", "items": { "type": "integer", "minimum": 100, "maximum": 599 }, "minItems": 1 },
                { "const": "2xx" }
            ]
        })
    }
}
