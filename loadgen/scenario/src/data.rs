//! What operations send: payloads (random bytes of a size or a size
//! distribution, JSON and text templates) and keys (a template, or a key
//! space drawn uniformly, sequentially or by Zipf). Only the description
//! lives here, with the template syntax; the generators are in the harness
//! (`loadgen::data`), deterministic for a seed.
//!
//! Template placeholders, in strings of `json:` and `text:` payloads, keys,
//! and `http` URLs:
//!
//! | placeholder | value |
//! |---|---|
//! | `{{seq}}` | this operation's request number: 0, 1, 2, … |
//! | `{{counter:NAME}}` | a run-wide counter shared by every template naming it |
//! | `{{timestamp}}`, `{{timestamp_ms}}`, `{{timestamp_us}}` | the send time: RFC 3339, Unix ms, Unix µs |
//! | `{{key}}` | the request's key (KV operations) |
//! | `{{random:int:MIN:MAX}}` | an integer in `[MIN, MAX]` |
//! | `{{random:hex:N}}`, `{{random:string:N}}` | N hex digits, N letters and digits |
//! | `{{random:uuid}}` | a version-4 UUID |
//! | `{{random:choice:a\|b\|c}}` | one of the listed words |
//!
//! In a JSON template, a string that is exactly one numeric placeholder
//! (`"{{seq}}"`) becomes a JSON number.

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::units::Size;

/// Largest payload a generator produces.
pub const MAX_PAYLOAD_BYTES: u64 = 8 << 20;

/// A payload: random bytes (a fixed size or a size distribution) or a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Random(SizeDist),
    /// A JSON document whose strings may hold placeholders.
    Json(serde_json::Value),
    /// Text with placeholders.
    Text(String),
}

impl Default for Payload {
    fn default() -> Self {
        Payload::Random(SizeDist::Fixed(Size(256)))
    }
}

/// The size of random payloads.
#[derive(Debug, Clone, PartialEq)]
pub enum SizeDist {
    Fixed(Size),
    /// Uniform in `[min, max]`.
    Uniform {
        min: Size,
        max: Size,
    },
    /// One of `sizes`, chosen by `weights` (default: equally).
    OneOf {
        sizes: Vec<Size>,
        weights: Vec<u32>,
    },
}

impl SizeDist {
    /// The largest size the distribution yields.
    pub fn max(&self) -> u64 {
        match self {
            SizeDist::Fixed(s) => s.0,
            SizeDist::Uniform { max, .. } => max.0,
            SizeDist::OneOf { sizes, .. } => sizes.iter().map(|s| s.0).max().unwrap_or(0),
        }
    }

    /// The smallest size the distribution yields.
    pub fn min(&self) -> u64 {
        match self {
            SizeDist::Fixed(s) => s.0,
            SizeDist::Uniform { min, .. } => min.0,
            SizeDist::OneOf { sizes, .. } => sizes.iter().map(|s| s.0).min().unwrap_or(0),
        }
    }
}

/// An HTTP request body: like [`Payload`], except that a plain string is
/// a text template rather than a size.
#[derive(Debug, Clone, PartialEq)]
pub struct Body(pub Payload);

/// Which key a KV operation uses.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySpec {
    /// One key, or a template (`order-{{seq}}`).
    Template(String),
    /// `count` keys `PREFIX0` … `PREFIX{count-1}`, drawn by `distribution`.
    Space {
        prefix: String,
        count: u64,
        distribution: KeyDistribution,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum KeyDistribution {
    #[default]
    Uniform,
    /// Key `seq % count`: every key in turn.
    Sequential,
    /// Key of rank k drawn with probability ∝ 1/(k+1)^s; rank 0 the hottest.
    Zipf(f64),
}

// ------------------------------------------------------------- templates

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Lit(String),
    Field(Field),
}

/// A placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Seq,
    Counter(String),
    Timestamp,
    TimestampMs,
    TimestampUs,
    Key,
    RandomInt { min: i64, max: i64 },
    RandomHex(usize),
    RandomString(usize),
    Uuid,
    Choice(Vec<String>),
}

impl Field {
    /// Renders as a number (unquoted in JSON).
    pub fn is_number(&self) -> bool {
        matches!(
            self,
            Field::Seq
                | Field::Counter(_)
                | Field::TimestampMs
                | Field::TimestampUs
                | Field::RandomInt { .. }
        )
    }
}

const PLACEHOLDERS: &str = "seq, counter:NAME, timestamp, timestamp_ms, timestamp_us, key, random:int:MIN:MAX, random:hex:N, random:string:N, random:uuid, random:choice:a|b";

/// Longest `random:hex` / `random:string`.
const MAX_RANDOM_LEN: usize = 4096;

fn field(spec: &str) -> Result<Field, String> {
    let bad = |why: String| Err(format!("{why} (hint: placeholders are {PLACEHOLDERS})"));
    let parts: Vec<&str> = spec.split(':').collect();
    let len = |n: &str| -> Result<usize, String> {
        match n.parse::<usize>() {
            Ok(n) if (1..=MAX_RANDOM_LEN).contains(&n) => Ok(n),
            _ => Err(format!(
                "`{{{{{spec}}}}}` needs a length from 1 to {MAX_RANDOM_LEN} (hint: e.g. `{{{{random:hex:16}}}}`)"
            )),
        }
    };
    match parts.as_slice() {
        ["seq"] => Ok(Field::Seq),
        ["counter", name] if !name.is_empty() => Ok(Field::Counter((*name).to_owned())),
        ["timestamp"] => Ok(Field::Timestamp),
        ["timestamp_ms"] => Ok(Field::TimestampMs),
        ["timestamp_us"] => Ok(Field::TimestampUs),
        ["key"] => Ok(Field::Key),
        ["random", "uuid"] => Ok(Field::Uuid),
        ["random", "hex", n] => len(n).map(Field::RandomHex),
        ["random", "string", n] => len(n).map(Field::RandomString),
        ["random", "int", min, max] => {
            let parse = |s: &str| s.parse::<i64>().ok();
            match (parse(min), parse(max)) {
                (Some(min), Some(max)) if min <= max => Ok(Field::RandomInt { min, max }),
                _ => Err(format!(
                    "`{{{{{spec}}}}}` needs two integers MIN ≤ MAX (hint: e.g. `{{{{random:int:1:100}}}}`)"
                )),
            }
        }
        ["random", "choice", list] => {
            let words: Vec<String> = list.split('|').map(str::to_owned).collect();
            if words.iter().any(String::is_empty) {
                return Err(format!(
                    "`{{{{{spec}}}}}` has an empty choice (hint: e.g. `{{{{random:choice:red|green|blue}}}}`)"
                ));
            }
            Ok(Field::Choice(words))
        }
        _ => bad(format!("unknown placeholder `{{{{{spec}}}}}`")),
    }
}

/// Splits a template into literal text and placeholders.
pub fn parse_template(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            return Err(format!(
                "`{{{{` without a closing `}}}}` in `{text}` (hint: placeholders are written `{{{{seq}}}}`)"
            ));
        };
        if start > 0 {
            parts.push(Part::Lit(rest[..start].to_owned()));
        }
        parts.push(Part::Field(field(rest[start + 2..start + 2 + len].trim())?));
        rest = &rest[start + 2 + len + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_owned()));
    }
    Ok(parts)
}

/// Checks every string of a JSON template.
pub fn check_json_template(value: &serde_json::Value) -> Result<(), String> {
    match value {
        serde_json::Value::String(s) => parse_template(s).map(drop),
        serde_json::Value::Array(items) => items.iter().try_for_each(check_json_template),
        serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            parse_template(k)?;
            check_json_template(v)
        }),
        _ => Ok(()),
    }
}

// --------------------------------------------------------- serde & schema

fn size_of<E: serde::de::Error>(v: &serde_json::Value, what: &str) -> Result<Size, E> {
    Size::deserialize(v).map_err(|e| E::custom(format!("{what}: {e}")))
}

fn size_dist<E: serde::de::Error>(v: &serde_json::Value) -> Result<SizeDist, E> {
    use serde_json::Value as J;
    match v {
        J::String(_) | J::Number(_) => size_of(v, "size").map(SizeDist::Fixed),
        J::Object(map) => {
            let has = |k: &str| map.contains_key(k);
            if has("min") || has("max") {
                if let Some(k) = map.keys().find(|k| !["min", "max"].contains(&k.as_str())) {
                    return Err(E::custom(format!(
                        "unknown key `{k}` in a size range (hint: a range is `{{ min: 64B, max: 4KiB }}`)"
                    )));
                }
                let (Some(min), Some(max)) = (map.get("min"), map.get("max")) else {
                    return Err(E::custom(
                        "a size range needs `min` and `max` (hint: e.g. `{ min: 64B, max: 4KiB }`)",
                    ));
                };
                let (min, max) = (size_of(min, "min")?, size_of(max, "max")?);
                if min.0 > max.0 {
                    return Err(E::custom(format!(
                        "size range `min` {min} is above `max` {max} (hint: swap them)"
                    )));
                }
                return Ok(SizeDist::Uniform { min, max });
            }
            if let Some(J::Array(items)) = map.get("one_of") {
                if let Some(k) = map
                    .keys()
                    .find(|k| !["one_of", "weights"].contains(&k.as_str()))
                {
                    return Err(E::custom(format!(
                        "unknown key `{k}` in a size choice (hint: `{{ one_of: [64B, 4KiB], weights: [9, 1] }}`)"
                    )));
                }
                let sizes = items
                    .iter()
                    .map(|s| size_of(s, "one_of"))
                    .collect::<Result<Vec<_>, E>>()?;
                if sizes.is_empty() {
                    return Err(E::custom(
                        "`one_of` lists no size (hint: e.g. `one_of: [64B, 4KiB]`)",
                    ));
                }
                let weights = match map.get("weights") {
                    None => vec![1; sizes.len()],
                    Some(w) => Vec::<u32>::deserialize(w).map_err(|e| {
                        E::custom(format!("weights: {e} (hint: e.g. `weights: [9, 1]`)"))
                    })?,
                };
                if weights.len() != sizes.len() || weights.iter().all(|w| *w == 0) {
                    return Err(E::custom(format!(
                        "`weights` must give one weight per size ({} sizes) and not all 0",
                        sizes.len()
                    )));
                }
                return Ok(SizeDist::OneOf { sizes, weights });
            }
            Err(E::custom(
                "a size is `256B`, a range `{ min: 64B, max: 4KiB }` or a choice `{ one_of: [64B, 4KiB], weights: [9, 1] }`",
            ))
        }
        _ => Err(E::custom(
            "a size is `256B`, a range `{ min: 64B, max: 4KiB }` or a choice `{ one_of: [64B, 4KiB] }`",
        )),
    }
}

fn payload_from<E: serde::de::Error>(
    v: serde_json::Value,
    string_is_text: bool,
) -> Result<Payload, E> {
    use serde_json::Value as J;
    match v {
        J::String(s) if string_is_text => {
            parse_template(&s).map_err(E::custom)?;
            Ok(Payload::Text(s))
        }
        J::String(_) | J::Number(_) => Ok(Payload::Random(SizeDist::Fixed(size_of(
            &v,
            "payload size",
        )?))),
        J::Object(mut map) if map.len() == 1 => {
            let (key, value) = map.pop_front_entry();
            match key.as_str() {
                "size" => Ok(Payload::Random(size_dist(&value)?)),
                "json" => {
                    check_json_template(&value).map_err(E::custom)?;
                    Ok(Payload::Json(value))
                }
                "text" => match value {
                    J::String(s) => {
                        parse_template(&s).map_err(E::custom)?;
                        Ok(Payload::Text(s))
                    }
                    _ => Err(E::custom(
                        "`text` is a string (hint: `text: \"order {{seq}}\"`)",
                    )),
                },
                other => Err(E::custom(format!(
                    "unknown payload kind `{other}` (hint: a payload is a size `256B`, `{{ size: … }}`, `{{ json: … }}` or `{{ text: … }}`)"
                ))),
            }
        }
        _ => Err(E::custom(
            "a payload is a size `256B`, `{ size: { min: 64B, max: 4KiB } }`, `{ json: … }` or `{ text: … }` (exactly one key)",
        )),
    }
}

/// `pop_front_entry` for the one-entry maps above.
trait PopFront {
    fn pop_front_entry(&mut self) -> (String, serde_json::Value);
}
impl PopFront for serde_json::Map<String, serde_json::Value> {
    fn pop_front_entry(&mut self) -> (String, serde_json::Value) {
        let key = self.keys().next().cloned().unwrap_or_default();
        let value = self.remove(&key).unwrap_or_default();
        (key, value)
    }
}

impl Serialize for SizeDist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_json::json;
        let v = match self {
            SizeDist::Fixed(size) => json!(size.to_string()),
            SizeDist::Uniform { min, max } => {
                json!({ "min": min.to_string(), "max": max.to_string() })
            }
            SizeDist::OneOf { sizes, weights } => json!({
                "one_of": sizes.iter().map(Size::to_string).collect::<Vec<_>>(),
                "weights": weights,
            }),
        };
        v.serialize(s)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_json::json;
        match self {
            Payload::Random(SizeDist::Fixed(size)) => s.collect_str(size),
            Payload::Random(dist) => json!({ "size": dist }).serialize(s),
            Payload::Json(v) => json!({ "json": v }).serialize(s),
            Payload::Text(t) => json!({ "text": t }).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        payload_from(serde_json::Value::deserialize(d)?, false)
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Payload::Text(t) => s.serialize_str(t),
            other => other.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        payload_from(serde_json::Value::deserialize(d)?, true).map(Body)
    }
}

impl Serialize for KeySpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_json::json;
        match self {
            KeySpec::Template(t) => s.serialize_str(t),
            KeySpec::Space {
                prefix,
                count,
                distribution,
            } => {
                let dist = match distribution {
                    KeyDistribution::Uniform => json!("uniform"),
                    KeyDistribution::Sequential => json!("sequential"),
                    KeyDistribution::Zipf(z) => json!({ "zipf": z }),
                };
                json!({ "prefix": prefix, "count": count, "distribution": dist }).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for KeySpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as E;
        use serde_json::Value as J;
        let hint = "a key is a string (`user-42`, `order-{{seq}}`) or a key space `{ prefix: user-, count: 10000, distribution: uniform | sequential | { zipf: 1.1 } }`";
        match J::deserialize(d)? {
            J::String(s) => {
                parse_template(&s).map_err(D::Error::custom)?;
                Ok(KeySpec::Template(s))
            }
            J::Number(n) => Ok(KeySpec::Template(n.to_string())),
            J::Object(map) => {
                if let Some(k) = map
                    .keys()
                    .find(|k| !["prefix", "count", "distribution"].contains(&k.as_str()))
                {
                    let known = ["prefix", "count", "distribution"];
                    let hint = crate::diag::did_you_mean(k, known)
                        .map(|m| format!("did you mean `{m}`?"))
                        .unwrap_or_else(|| hint.to_owned());
                    return Err(D::Error::custom(format!(
                        "unknown key `{k}` in a key space (hint: {hint})"
                    )));
                }
                let prefix = match map.get("prefix") {
                    None => String::new(),
                    Some(J::String(s)) => s.clone(),
                    Some(J::Number(n)) => n.to_string(),
                    Some(_) => return Err(D::Error::custom("`prefix` is a string")),
                };
                let count = match map.get("count").and_then(J::as_u64) {
                    Some(c) if c >= 1 => c,
                    _ => {
                        return Err(D::Error::custom(
                            "a key space needs `count`, a whole number of keys ≥ 1 (hint: e.g. `count: 10000`)",
                        ));
                    }
                };
                let distribution = match map.get("distribution") {
                    None => KeyDistribution::Uniform,
                    Some(J::String(s)) if s == "uniform" => KeyDistribution::Uniform,
                    Some(J::String(s)) if s == "sequential" => KeyDistribution::Sequential,
                    Some(J::Object(z)) if z.len() == 1 && z.contains_key("zipf") => {
                        match z["zipf"].as_f64() {
                            Some(s) if s > 0.0 && s <= 10.0 => KeyDistribution::Zipf(s),
                            _ => {
                                return Err(D::Error::custom(
                                    "the Zipf exponent is a number in (0, 10] (hint: `{ zipf: 1.1 }`; larger is more skewed)",
                                ));
                            }
                        }
                    }
                    Some(other) => {
                        return Err(D::Error::custom(format!(
                            "`{other}` is not a key distribution (hint: `uniform`, `sequential` or `{{ zipf: 1.1 }}`)"
                        )));
                    }
                };
                Ok(KeySpec::Space {
                    prefix,
                    count,
                    distribution,
                })
            }
            _ => Err(D::Error::custom(hint)),
        }
    }
}

fn size_dist_schema(generator: &mut SchemaGenerator) -> serde_json::Value {
    let size = generator.subschema_for::<Size>().to_value();
    serde_json::json!({
        "oneOf": [
            size,
            { "type": "object", "properties": { "min": size, "max": size }, "required": ["min", "max"], "additionalProperties": false },
            { "type": "object", "properties": { "one_of": { "type": "array", "items": size, "minItems": 1 }, "weights": { "type": "array", "items": { "type": "integer", "minimum": 0 } } }, "required": ["one_of"], "additionalProperties": false }
        ]
    })
}

fn payload_forms(generator: &mut SchemaGenerator, first: serde_json::Value) -> Schema {
    let dist = size_dist_schema(generator);
    json_schema!({
        "oneOf": [
            first,
            { "type": "object", "properties": { "size": dist }, "required": ["size"], "additionalProperties": false },
            { "type": "object", "properties": { "json": {} }, "required": ["json"], "additionalProperties": false },
            { "type": "object", "properties": { "text": { "type": "string" } }, "required": ["text"], "additionalProperties": false }
        ]
    })
}

impl JsonSchema for Payload {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Payload".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let size = generator.subschema_for::<Size>().to_value();
        let mut s = payload_forms(generator, size);
        s.insert(
            "description".into(),
            "Random bytes of a size (`256B`), of a size distribution (`{ size: { min: 64B, max: 4KiB } }`), or a template (`{ json: … }`, `{ text: … }`).".into(),
        );
        s
    }
}

impl JsonSchema for Body {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Body".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut s = payload_forms(generator, serde_json::json!({ "type": "string" }));
        s.insert(
            "description".into(),
            "A text template, `{ json: … }`, `{ text: … }` or random bytes `{ size: … }`.".into(),
        );
        s
    }
}

impl JsonSchema for KeySpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "KeySpec".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A key or key template (`order-{{seq}}`), or a key space drawn uniformly, sequentially or by Zipf.",
            "oneOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": {
                        "prefix": { "type": "string" },
                        "count": { "type": "integer", "minimum": 1 },
                        "distribution": {
                            "oneOf": [
                                { "enum": ["uniform", "sequential"] },
                                { "type": "object", "properties": { "zipf": { "type": "number", "exclusiveMinimum": 0, "maximum": 10 } }, "required": ["zipf"], "additionalProperties": false }
                            ]
                        }
                    },
                    "required": ["count"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::Template(t) => f.write_str(t),
            KeySpec::Space { prefix, count, .. } => write!(f, "{prefix}0…{prefix}{}", count - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_into_literals_and_fields() {
        let parts = parse_template("order-{{seq}}/{{random:int:1:6}}!").unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Lit("order-".into()),
                Part::Field(Field::Seq),
                Part::Lit("/".into()),
                Part::Field(Field::RandomInt { min: 1, max: 6 }),
                Part::Lit("!".into()),
            ]
        );
        assert_eq!(
            parse_template("{{random:choice:a|b}}").unwrap(),
            vec![Part::Field(Field::Choice(vec!["a".into(), "b".into()]))]
        );
        assert!(parse_template("plain").unwrap() == vec![Part::Lit("plain".into())]);
    }

    #[test]
    fn bad_placeholders_say_what_and_how() {
        let e = parse_template("x{{sequence}}").unwrap_err();
        assert!(e.contains("unknown placeholder `{{sequence}}`"), "{e}");
        assert!(e.contains("seq, counter:NAME"), "{e}");
        let e = parse_template("x{{seq").unwrap_err();
        assert!(e.contains("without a closing"), "{e}");
        let e = parse_template("{{random:int:9:1}}").unwrap_err();
        assert!(e.contains("MIN ≤ MAX"), "{e}");
        let e = parse_template("{{random:hex:0}}").unwrap_err();
        assert!(e.contains("length"), "{e}");
    }
}
