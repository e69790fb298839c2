//! Component specs: seed 001's `Component.toml` (or the same tables as JSON)
//! plus one `[behavior]` table, parsed and validated before anything runs.
//!
//! Validation refuses what must never reach the node: names that are not
//! plain file names (a name is a file name in the data directory), unknown
//! behaviours, mailboxes of size 0, and capabilities that are too broad
//! (`file:read:/`, `network:outbound:*:*`) or not normalised (`..`).

use std::path::{Component as PathPart, Path};

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The longest component name, in bytes.
pub const MAX_NAME: usize = 255;
/// Mailbox size when the spec gives none (seed 001's example).
pub const DEFAULT_QUEUE: usize = 10_000;
/// The largest mailbox a spec may ask for.
pub const MAX_QUEUE: usize = 10_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    #[serde(default)]
    pub component: ComponentSection,
    #[serde(default)]
    pub runtime: RuntimeSection,
    #[serde(default)]
    pub security: SecuritySection,
    #[serde(default)]
    pub supervision: Supervision,
    #[serde(default)]
    pub monitoring: Option<toml::Table>,
    pub behavior: Behavior,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    #[serde(default = "default_queue")]
    pub message_queue_size: usize,
    #[serde(default = "default_health_interval")]
    pub health_check_interval_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_cores: Option<u64>,
}

fn default_queue() -> usize {
    DEFAULT_QUEUE
}
fn default_health_interval() -> u64 {
    5000
}

impl Default for RuntimeSection {
    fn default() -> Self {
        RuntimeSection {
            message_queue_size: DEFAULT_QUEUE,
            health_check_interval_ms: 5000,
            max_memory_mb: None,
            max_cpu_cores: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// When a component whose handler panicked is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// Always restarted (within the restart intensity).
    Permanent,
    /// Restarted after an abnormal end (a panic); a graceful stop is final.
    Transient,
    /// Never restarted: the first panic ends it (`failed`).
    Temporary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supervision {
    #[serde(default = "default_restart")]
    pub restart: Restart,
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    #[serde(default = "default_within")]
    pub within_seconds: u64,
}

fn default_restart() -> Restart {
    Restart::Permanent
}
fn default_max_restarts() -> u32 {
    10
}
fn default_within() -> u64 {
    60
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            restart: Restart::Permanent,
            max_restarts: 10,
            within_seconds: 60,
        }
    }
}

/// What a component does with each message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Behavior {
    /// Replies with the payload; a message ends its path here.
    Echo,
    /// Counts messages and sums numeric payloads per key; state survives
    /// restarts of the component and of the node.
    Counter,
    /// Counts; the end of a pipeline.
    Sink,
    /// A pipeline stage: hands every message on to `to` (`name` or `node/name`).
    Forward { to: String },
    /// Fans every message out to each subscriber.
    Topic,
    /// Appends each payload (and a newline) to `path`; needs `file:write`.
    FileWriter { path: String },
    /// Sends each payload (and a newline) over TCP to `address`; needs
    /// `network:outbound:host:port`.
    Caller { address: String },
}

impl Behavior {
    pub fn kind(&self) -> &'static str {
        match self {
            Behavior::Echo => "echo",
            Behavior::Counter => "counter",
            Behavior::Sink => "sink",
            Behavior::Forward { .. } => "forward",
            Behavior::Topic => "topic",
            Behavior::FileWriter { .. } => "file_writer",
            Behavior::Caller { .. } => "caller",
        }
    }
}

/// A capability granted to a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    FileRead(String),
    FileWrite(String),
    NetworkOutbound { host: String, port: u16 },
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Capability::FileRead(p) => write!(f, "file:read:{p}"),
            Capability::FileWrite(p) => write!(f, "file:write:{p}"),
            Capability::NetworkOutbound { host, port } => {
                write!(f, "network:outbound:{host}:{port}")
            }
        }
    }
}

impl Capability {
    /// Parses and vets one capability string: too broad or malformed is an
    /// `invalid_request` naming it.
    pub fn parse(text: &str) -> Result<Capability, ApiError> {
        let bad = |why: &str| {
            ApiError::invalid(format!(
                "capability `{text}`: {why} (forms: file:read:/abs/path, file:write:/abs/path, network:outbound:host:port)"
            ))
        };
        let mut parts = text.splitn(3, ':');
        let (Some(class), Some(op), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected three parts"));
        };
        match (class, op) {
            ("file", "read" | "write") => {
                let path = Path::new(rest);
                if !path.is_absolute() {
                    return Err(bad("the path must be absolute"));
                }
                if path
                    .components()
                    .any(|c| !matches!(c, PathPart::Normal(_) | PathPart::RootDir))
                {
                    return Err(bad("the path must be normalised (no `.` or `..`)"));
                }
                if path.components().count() < 2 || rest.contains('*') {
                    return Err(bad(
                        "too broad: grant a specific directory, not `/` or a wildcard",
                    ));
                }
                let p = rest.trim_end_matches('/').to_string();
                Ok(if op == "read" {
                    Capability::FileRead(p)
                } else {
                    Capability::FileWrite(p)
                })
            }
            ("network", "outbound") => {
                let Some((host, port)) = rest.rsplit_once(':') else {
                    return Err(bad("expected host:port"));
                };
                if host.is_empty() || host.contains('*') || port == "*" {
                    return Err(bad(
                        "too broad: grant one host and one port, not a wildcard",
                    ));
                }
                let port: u16 = port.parse().map_err(|_| bad("the port must be 1-65535"))?;
                if port == 0 {
                    return Err(bad("the port must be 1-65535"));
                }
                Ok(Capability::NetworkOutbound {
                    host: host.to_string(),
                    port,
                })
            }
            _ => Err(bad("unknown capability class")),
        }
    }

    /// Whether this capability allows writing `path` (whole path components).
    pub fn allows_write(&self, path: &str) -> bool {
        matches!(self, Capability::FileWrite(p) if under(path, p))
    }

    /// Whether this capability allows connecting to `host:port`.
    pub fn allows_connect(&self, address: &str) -> bool {
        matches!(self, Capability::NetworkOutbound { host, port } if address == format!("{host}:{port}"))
    }
}

fn finite(v: &toml::Value) -> bool {
    match v {
        toml::Value::Float(f) => f.is_finite(),
        toml::Value::Array(a) => a.iter().all(finite),
        toml::Value::Table(t) => t.values().all(finite),
        _ => true,
    }
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Checks a component name: 1–255 bytes of `[A-Za-z0-9._-]`, not starting
/// with `.` (so it is a safe file name: no traversal, no hidden files).
pub fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid("component name is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(ApiError::invalid(format!(
            "component name is {} bytes; the limit is {MAX_NAME}",
            name.len()
        )));
    }
    if name.starts_with('.') {
        return Err(ApiError::invalid(format!(
            "component name `{name}` starts with `.`"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ApiError::invalid(format!(
            "component name `{}` contains {c:?}; use letters, digits, `.`, `_` and `-`",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Where a `forward` sends: a local name, or (`node/name`) a name on a node.
pub fn split_target(to: &str) -> (Option<&str>, &str) {
    match to.split_once('/') {
        Some((node, name)) => (Some(node), name),
        None => (None, to),
    }
}

impl ComponentSpec {
    /// Parses a body as TOML (`toml == true`) or JSON, then validates it for `name`.
    pub fn parse(body: &[u8], toml: bool, name: &str) -> Result<ComponentSpec, ApiError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::invalid("the component spec is not UTF-8"))?;
        let spec: ComponentSpec = if toml {
            toml::from_str(text).map_err(|e| {
                ApiError::invalid(format!("Component.toml: {}", e.to_string().trim()))
            })?
        } else {
            serde_json::from_str(text)
                .map_err(|e| ApiError::invalid(format!("component spec JSON: {e}")))?
        };
        spec.validate(name)?;
        Ok(spec)
    }

    /// A spec with defaults and the given behaviour (for code and benches).
    pub fn new(behavior: Behavior) -> ComponentSpec {
        ComponentSpec {
            component: ComponentSection::default(),
            runtime: RuntimeSection::default(),
            security: SecuritySection::default(),
            supervision: Supervision::default(),
            monitoring: None,
            behavior,
        }
    }

    pub fn with_queue(mut self, size: usize) -> ComponentSpec {
        self.runtime.message_queue_size = size;
        self
    }

    /// Validates the spec for the name it is spawned under.
    pub fn validate(&self, name: &str) -> Result<(), ApiError> {
        check_name(name)?;
        if let Some(n) = &self.component.name
            && n != name
        {
            return Err(ApiError::invalid(format!(
                "[component].name is `{n}` but the path names `{name}`; leave it out or make them equal"
            )));
        }
        let q = self.runtime.message_queue_size;
        if q == 0 || q > MAX_QUEUE {
            return Err(ApiError::invalid(format!(
                "[runtime].message_queue_size is {q}; it must be 1..={MAX_QUEUE}"
            )));
        }
        if self.supervision.within_seconds == 0 {
            return Err(ApiError::invalid(
                "[supervision].within_seconds must be at least 1",
            ));
        }
        self.capabilities()?;
        if let Some(m) = &self.monitoring
            && !finite(&toml::Value::Table(m.clone()))
        {
            return Err(ApiError::invalid(
                "[monitoring] holds nan or inf, which the registry cannot store",
            ));
        }
        match &self.behavior {
            Behavior::Forward { to } => {
                let (node, target) = split_target(to);
                if let Some(node) = node {
                    check_name(node).map_err(|e| {
                        ApiError::invalid(format!("[behavior].to node: {}", e.message))
                    })?;
                }
                check_name(target)
                    .map_err(|e| ApiError::invalid(format!("[behavior].to: {}", e.message)))?;
                if node.is_none() && target == name {
                    return Err(ApiError::invalid(format!(
                        "[behavior].to is the component itself (`{name}`): a forward loop"
                    )));
                }
            }
            Behavior::FileWriter { path } => {
                let p = Path::new(path);
                if !p.is_absolute()
                    || p.components()
                        .any(|c| !matches!(c, PathPart::Normal(_) | PathPart::RootDir))
                {
                    return Err(ApiError::invalid(format!(
                        "[behavior].path `{path}` must be absolute and normalised"
                    )));
                }
            }
            Behavior::Caller { address } => {
                let ok = address
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                if !ok {
                    return Err(ApiError::invalid(format!(
                        "[behavior].address `{address}` must be host:port"
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The parsed capabilities (validated).
    pub fn capabilities(&self) -> Result<Vec<Capability>, ApiError> {
        self.security
            .capabilities
            .iter()
            .map(|c| Capability::parse(c))
            .collect()
    }

    /// The local name this component forwards to, if it is a `forward`.
    pub fn forwards_to(&self) -> Option<&str> {
        match &self.behavior {
            Behavior::Forward { to } => Some(split_target(to).1),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_toml_parses() {
        let text = r#"
[component]
name = "orders-counter"
version = "1.0.0"
[runtime]
message_queue_size = 10000
health_check_interval_ms = 5000
[security]
capabilities = ["file:write:/data/out", "network:outbound:127.0.0.1:9000"]
[supervision]
restart = "transient"
max_restarts = 3
within_seconds = 60
[behavior]
kind = "counter"
"#;
        let spec = ComponentSpec::parse(text.as_bytes(), true, "orders-counter").unwrap();
        assert_eq!(spec.behavior, Behavior::Counter);
        assert_eq!(spec.supervision.restart, Restart::Transient);
        assert_eq!(spec.capabilities().unwrap().len(), 2);
    }

    #[test]
    fn json_forward_parses() {
        let spec = ComponentSpec::parse(
            br#"{"behavior":{"kind":"forward","to":"b"},"runtime":{"message_queue_size":5}}"#,
            false,
            "a",
        )
        .unwrap();
        assert_eq!(spec.forwards_to(), Some("b"));
        assert_eq!(spec.runtime.message_queue_size, 5);
    }

    #[test]
    fn bad_specs_are_invalid_requests() {
        let cases: &[(&str, bool, &str)] = &[
            ("[behavior]\nkind = \"wasm\"", true, "a"),
            ("[behavior\nkind=", true, "a"),
            ("{\"behavior\":{\"kind\":\"echo\"},\"extra\":1}", false, "a"),
            ("[behavior]\nkind = \"echo\"", true, "../etc"),
            ("[behavior]\nkind = \"echo\"", true, ".hidden"),
            ("[behavior]\nkind = \"forward\"\nto = \"a\"", true, "a"),
            (
                "[runtime]\nmessage_queue_size = 0\n[behavior]\nkind = \"echo\"",
                true,
                "a",
            ),
            (
                "[security]\ncapabilities = [\"file:read:/\"]\n[behavior]\nkind = \"echo\"",
                true,
                "a",
            ),
            (
                "[security]\ncapabilities = [\"file:write:/data/../etc\"]\n[behavior]\nkind = \"echo\"",
                true,
                "a",
            ),
            (
                "[security]\ncapabilities = [\"network:outbound:*:*\"]\n[behavior]\nkind = \"echo\"",
                true,
                "a",
            ),
            (
                "[component]\nname = \"b\"\n[behavior]\nkind = \"echo\"",
                true,
                "a",
            ),
            (
                "[monitoring]\nx = nan\n[behavior]\nkind = \"echo\"",
                true,
                "a",
            ),
        ];
        for (body, toml, name) in cases {
            let err = ComponentSpec::parse(body.as_bytes(), *toml, name).unwrap_err();
            assert_eq!(err.code, crate::error::Code::InvalidRequest, "{body}");
        }
        let long = "x".repeat(256);
        assert!(check_name(&long).is_err());
        assert!(check_name(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn capabilities_match_whole_components() {
        let c = Capability::parse("file:write:/data/out").unwrap();
        assert!(c.allows_write("/data/out/x.log"));
        assert!(!c.allows_write("/data/outside/x.log"));
        assert!(!c.allows_write("/data"));
        let n = Capability::parse("network:outbound:127.0.0.1:9000").unwrap();
        assert!(n.allows_connect("127.0.0.1:9000"));
        assert!(!n.allows_connect("127.0.0.1:9001"));
    }
}
