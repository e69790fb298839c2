//! The graph file (JSON or TOML, by extension): nodes with an actor and its
//! settings, connections `NODE.PORT -> NODE.PORT`, initial packets. Checked
//! whole before the runtime sees it — an unknown actor, port or node, a
//! cycle (the runtime's bounded channels deadlock on one), an inport nobody
//! feeds or an outport that goes nowhere — each a clear error (exit 2).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// Graphs shipped in the binary, for `graph.file = "builtin:NAME"`.
pub const BUILTINS: &[(&str, &str)] = &[
    ("pipeline", include_str!("../graphs/pipeline.toml")),
    ("fanout", include_str!("../graphs/fanout.toml")),
];

/// Every actor has one inport and (but a sink) one outport.
pub const INPORT: &str = "input";
pub const OUTPORT: &str = "output";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    Source,
    Map,
    Filter,
    Fanout,
    Sink,
}

impl ActorKind {
    pub fn name(self) -> &'static str {
        match self {
            ActorKind::Source => "source",
            ActorKind::Map => "map",
            ActorKind::Filter => "filter",
            ActorKind::Fanout => "fanout",
            ActorKind::Sink => "sink",
        }
    }
    const ALL: [&'static str; 5] = ["source", "map", "filter", "fanout", "sink"];
}

/// What a source's inport accepts (the JSON kind of each message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Accepts {
    #[default]
    Any,
    Object,
    Integer,
    Number,
    String,
    Boolean,
    Array,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub id: String,
    pub actor: String,
    #[serde(default)]
    pub config: NodeConfig,
}

/// Settings of a node; which apply depends on its actor.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// source: the kind of message its inport accepts.
    pub accepts: Option<Accepts>,
    /// map: `identity` (default) or `add` (`field` += `by`).
    pub op: Option<String>,
    /// map `add`, filter: the object field it reads.
    pub field: Option<String>,
    /// map `add`: the increment (default 1).
    pub by: Option<i64>,
    /// map: CPU work per message, microseconds (busy loop).
    pub work_us: Option<u64>,
    /// filter: keep when `field` equals this.
    pub equals: Option<Value>,
    /// filter: keep when `field` (an integer) modulo this equals `remainder`.
    pub modulo: Option<i64>,
    pub remainder: Option<i64>,
    /// sink: the key and offset fields it keeps the last offset of (`key`, `offset`).
    pub key_field: Option<String>,
    pub offset_field: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionFile {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialFile {
    pub to: String,
    pub message: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphFile {
    #[serde(default)]
    pub name: Option<String>,
    pub nodes: Vec<NodeFile>,
    #[serde(default)]
    pub connections: Vec<ConnectionFile>,
    #[serde(default)]
    pub initials: Vec<InitialFile>,
}

/// What a map or filter needs of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum MapOp {
    Identity,
    Add { field: String, by: i64 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Keep {
    Equals {
        field: String,
        value: Value,
    },
    Modulo {
        field: String,
        modulo: i64,
        remainder: i64,
    },
}

/// A checked node.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub kind: ActorKind,
    pub accepts: Accepts,
    pub op: MapOp,
    pub work_us: u64,
    pub keep: Option<Keep>,
    pub key_field: String,
    pub offset_field: String,
    /// Nodes its outport feeds (one copy each: the runtime fans out).
    pub downstream: Vec<String>,
    pub upstream: Vec<String>,
    /// For a source: the fields (and whether each must be an integer) that
    /// actors reachable from it read — a message without them does not fit.
    pub requires: BTreeMap<String, Requirement>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    pub integer: bool,
    /// The node that needs it, for the error message.
    pub by: String,
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub name: String,
    /// In file order.
    pub nodes: Vec<Node>,
    pub initials: Vec<(String, Value)>,
}

impl Graph {
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The graph a configuration names: `inline` (JSON text) when set,
    /// else `file` — a path, or `builtin:NAME` for a graph shipped in the
    /// binary ([`BUILTINS`]).
    pub fn from_config(file: &str, inline: Option<&str>) -> Result<Graph, String> {
        if let Some(text) = inline {
            let g: GraphFile = serde_json::from_str(text)
                .map_err(|e| format!("graph.inline: {e} (the graph as JSON)"))?;
            return Graph::check(g).map_err(|e| format!("graph.inline: {e}"));
        }
        if let Some(name) = file.strip_prefix("builtin:") {
            let Some((_, text)) = BUILTINS.iter().find(|(n, _)| *n == name) else {
                return Err(format!(
                    "graph `{file}`: no built-in graph `{name}`; built-in: {}",
                    BUILTINS
                        .iter()
                        .map(|(n, _)| format!("builtin:{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            let g: GraphFile = toml::from_str(text).map_err(|e| format!("graph {file}: {e}"))?;
            return Graph::check(g).map_err(|e| format!("graph {file}: {e}"));
        }
        Graph::load(Path::new(file))
    }

    pub fn load(path: &Path) -> Result<Graph, String> {
        let at = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("graph {at}: cannot read it: {e}"))?;
        let file: GraphFile = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => serde_json::from_str(&text).map_err(|e| format!("graph {at}: {e}"))?,
            Some("toml") => toml::from_str(&text).map_err(|e| format!("graph {at}: {e}"))?,
            _ => {
                return Err(format!(
                    "graph {at}: unknown format (name it .json or .toml)"
                ));
            }
        };
        Graph::check(file).map_err(|e| format!("graph {at}: {e}"))
    }

    pub fn check(file: GraphFile) -> Result<Graph, String> {
        if file.nodes.is_empty() {
            return Err("no nodes".into());
        }
        let mut nodes: Vec<Node> = Vec::new();
        for n in &file.nodes {
            if n.id.is_empty() || n.id.contains(['.', '/', ' ']) {
                return Err(format!(
                    "node id `{}`: must be non-empty, without `.`, `/` or spaces",
                    n.id
                ));
            }
            if nodes.iter().any(|m| m.id == n.id) {
                return Err(format!("node `{}` is declared twice", n.id));
            }
            nodes.push(check_node(n)?);
        }
        let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        for c in &file.connections {
            let (from, fport) = endpoint(&c.from, &ids, "from")?;
            let (to, tport) = endpoint(&c.to, &ids, "to")?;
            let fk = nodes.iter().find(|n| n.id == from).unwrap().kind;
            let tk = nodes.iter().find(|n| n.id == to).unwrap().kind;
            if fport != OUTPORT || fk == ActorKind::Sink {
                return Err(format!(
                    "connection from `{}`: {} `{from}` has {}",
                    c.from,
                    fk.name(),
                    if fk == ActorKind::Sink {
                        "no outport".to_owned()
                    } else {
                        format!("one outport, `{from}.{OUTPORT}`")
                    }
                ));
            }
            if tport != INPORT {
                return Err(format!(
                    "connection to `{}`: {} `{to}` has one inport, `{to}.{INPORT}`",
                    c.to,
                    tk.name()
                ));
            }
            if tk == ActorKind::Source {
                return Err(format!(
                    "connection to `{}`: `{to}` is a source, fed only through HTTP (POST /api/v1/inports/{to}/{INPORT})",
                    c.to
                ));
            }
            let f = nodes.iter_mut().find(|n| n.id == from).unwrap();
            if f.downstream.contains(&to) {
                return Err(format!(
                    "connection {} -> {} is declared twice",
                    c.from, c.to
                ));
            }
            f.downstream.push(to.clone());
            nodes
                .iter_mut()
                .find(|n| n.id == to)
                .unwrap()
                .upstream
                .push(from);
        }
        for n in &nodes {
            if n.kind != ActorKind::Sink && n.downstream.is_empty() {
                return Err(format!(
                    "{} `{}`: its outport goes nowhere (connect `{}.{OUTPORT}` to a node, or make it a sink)",
                    n.kind.name(),
                    n.id,
                    n.id
                ));
            }
            if n.kind != ActorKind::Source && n.upstream.is_empty() {
                return Err(format!(
                    "{} `{}`: nothing feeds its inport (connect a node to `{}.{INPORT}`)",
                    n.kind.name(),
                    n.id,
                    n.id
                ));
            }
        }
        if let Some(cycle) = find_cycle(&nodes) {
            return Err(format!(
                "a cycle {} — the runtime's bounded channels deadlock on a cycle; make the graph acyclic",
                cycle.join(" -> ")
            ));
        }
        // What each source's messages must carry for the actors they reach.
        let reach_requirements: Vec<BTreeMap<String, Requirement>> = nodes
            .iter()
            .map(|n| {
                let mut req = BTreeMap::new();
                if n.kind == ActorKind::Source {
                    let mut seen = BTreeSet::new();
                    collect_requirements(&nodes, &n.id, &mut seen, &mut req);
                }
                req
            })
            .collect();
        for (n, r) in nodes.iter_mut().zip(reach_requirements) {
            n.requires = r;
        }
        let mut initials = Vec::new();
        for i in &file.initials {
            let (to, port) = endpoint(&i.to, &ids, "initial to")?;
            let n = nodes.iter().find(|n| n.id == to).unwrap();
            if n.kind != ActorKind::Source || port != INPORT {
                return Err(format!(
                    "initial packet to `{}`: initial packets go into a source's inport (`SOURCE.{INPORT}`)",
                    i.to
                ));
            }
            fits(n, &i.message).map_err(|e| format!("initial packet to `{}`: {e}", i.to))?;
            initials.push((to, i.message.clone()));
        }
        Ok(Graph {
            name: file.name.unwrap_or_else(|| "reflow-graph".into()),
            nodes,
            initials,
        })
    }
}

fn check_node(n: &NodeFile) -> Result<Node, String> {
    let kind = match n.actor.as_str() {
        "source" => ActorKind::Source,
        "map" => ActorKind::Map,
        "filter" => ActorKind::Filter,
        "fanout" => ActorKind::Fanout,
        "sink" => ActorKind::Sink,
        other => {
            let hint = ActorKind::ALL
                .iter()
                .find(|k| strsim(k, other))
                .map(|k| format!("did you mean `{k}`? "))
                .unwrap_or_default();
            return Err(format!(
                "node `{}`: no actor `{other}`; {hint}actors: {}",
                n.id,
                ActorKind::ALL.join(", ")
            ));
        }
    };
    let c = &n.config;
    let wrong = |key: &str| -> Result<Node, String> {
        Err(format!(
            "node `{}`: `{key}` does not apply to a {} actor",
            n.id,
            kind.name()
        ))
    };
    if kind != ActorKind::Source && c.accepts.is_some() {
        return wrong("accepts");
    }
    if kind != ActorKind::Map && (c.op.is_some() || c.by.is_some() || c.work_us.is_some()) {
        return wrong("op/by/work_us");
    }
    if kind != ActorKind::Filter
        && (c.equals.is_some() || c.modulo.is_some() || c.remainder.is_some())
    {
        return wrong("equals/modulo/remainder");
    }
    if kind != ActorKind::Sink && (c.key_field.is_some() || c.offset_field.is_some()) {
        return wrong("key_field/offset_field");
    }
    if !matches!(kind, ActorKind::Map | ActorKind::Filter) && c.field.is_some() {
        return wrong("field");
    }
    let op = match (kind, c.op.as_deref()) {
        (ActorKind::Map, None | Some("identity")) => MapOp::Identity,
        (ActorKind::Map, Some("add")) => MapOp::Add {
            field: c
                .field
                .clone()
                .ok_or_else(|| format!("node `{}`: op `add` needs `field`", n.id))?,
            by: c.by.unwrap_or(1),
        },
        (ActorKind::Map, Some(other)) => {
            return Err(format!(
                "node `{}`: no map op `{other}`; ops: identity, add",
                n.id
            ));
        }
        _ => MapOp::Identity,
    };
    let keep = if kind == ActorKind::Filter {
        let field = c
            .field
            .clone()
            .ok_or_else(|| format!("node `{}`: a filter needs `field`", n.id))?;
        match (&c.equals, c.modulo, c.remainder) {
            (Some(v), None, None) => Some(Keep::Equals {
                field,
                value: v.clone(),
            }),
            (None, Some(m), r) if m > 0 => Some(Keep::Modulo {
                field,
                modulo: m,
                remainder: r.unwrap_or(0),
            }),
            _ => {
                return Err(format!(
                    "node `{}`: a filter keeps when `field` `equals` a value, or `modulo` (> 0) gives `remainder` — give one",
                    n.id
                ));
            }
        }
    } else {
        None
    };
    Ok(Node {
        id: n.id.clone(),
        kind,
        accepts: c.accepts.unwrap_or_default(),
        op,
        work_us: c.work_us.unwrap_or(0),
        keep,
        key_field: c.key_field.clone().unwrap_or_else(|| "key".into()),
        offset_field: c.offset_field.clone().unwrap_or_else(|| "offset".into()),
        downstream: Vec::new(),
        upstream: Vec::new(),
        requires: BTreeMap::new(),
    })
}

fn strsim(a: &str, b: &str) -> bool {
    // One edit or a shared 3-letter prefix is close enough for a hint.
    a.len().abs_diff(b.len()) <= 1 && a.chars().zip(b.chars()).filter(|(x, y)| x != y).count() <= 1
        || (a.len() >= 3 && b.starts_with(&a[..3]))
}

fn endpoint(s: &str, ids: &[String], what: &str) -> Result<(String, String), String> {
    let Some((node, port)) = s.split_once('.') else {
        return Err(format!(
            "{what} `{s}`: expected NODE.PORT (e.g. `src.{OUTPORT}`)"
        ));
    };
    if !ids.iter().any(|i| i == node) {
        return Err(format!(
            "{what} `{s}`: no node `{node}`; nodes: {}",
            ids.join(", ")
        ));
    }
    Ok((node.to_owned(), port.to_owned()))
}

fn find_cycle(nodes: &[Node]) -> Option<Vec<String>> {
    // 0 unvisited, 1 on the stack, 2 done
    fn visit(
        nodes: &[Node],
        i: usize,
        state: &mut [u8],
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state[i] = 1;
        stack.push(nodes[i].id.clone());
        for d in &nodes[i].downstream {
            let j = nodes.iter().position(|n| &n.id == d).unwrap();
            if state[j] == 1 {
                let start = stack.iter().position(|s| s == d).unwrap();
                let mut cycle = stack[start..].to_vec();
                cycle.push(d.clone());
                return Some(cycle);
            }
            if state[j] == 0
                && let Some(c) = visit(nodes, j, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; nodes.len()];
    for i in 0..nodes.len() {
        if state[i] == 0
            && let Some(c) = visit(nodes, i, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn collect_requirements(
    nodes: &[Node],
    id: &str,
    seen: &mut BTreeSet<String>,
    req: &mut BTreeMap<String, Requirement>,
) {
    if !seen.insert(id.to_owned()) {
        return;
    }
    let n = nodes.iter().find(|n| n.id == id).unwrap();
    let need = match (&n.op, &n.keep) {
        (MapOp::Add { field, .. }, _) => Some((field.clone(), true)),
        (_, Some(Keep::Modulo { field, .. })) => Some((field.clone(), true)),
        (_, Some(Keep::Equals { field, .. })) => Some((field.clone(), false)),
        _ => None,
    };
    if let Some((field, integer)) = need {
        let e = req.entry(field).or_insert(Requirement {
            integer,
            by: n.id.clone(),
        });
        if integer && !e.integer {
            *e = Requirement {
                integer,
                by: n.id.clone(),
            };
        }
    }
    for d in &n.downstream {
        collect_requirements(nodes, d, seen, req);
    }
}

/// Whether a message fits a source's inport: its kind, and the fields the
/// actors downstream read. The error says what is wrong and who needs it.
pub fn fits(source: &Node, m: &Value) -> Result<(), String> {
    let ok = match source.accepts {
        Accepts::Any => true,
        Accepts::Object => m.is_object(),
        Accepts::Integer => m.is_i64(),
        Accepts::Number => m.is_number(),
        Accepts::String => m.is_string(),
        Accepts::Boolean => m.is_boolean(),
        Accepts::Array => m.is_array(),
    };
    if !ok {
        return Err(format!(
            "`{}.{INPORT}` accepts {:?} messages, got {}",
            source.id,
            source.accepts,
            kind_of(m)
        )
        .to_lowercase());
    }
    for (field, r) in &source.requires {
        let v = m.as_object().and_then(|o| o.get(field));
        let fine = match v {
            None => false,
            Some(v) => !r.integer || v.is_i64(),
        };
        if !fine {
            return Err(format!(
                "needs {} field `{field}` (read by `{}`), got {}",
                if r.integer { "an integer" } else { "a" },
                r.by,
                match v {
                    None if m.is_object() => "an object without it".to_owned(),
                    None => kind_of(m).to_owned(),
                    Some(v) => format!("`{field}`: {}", kind_of(v)),
                }
            ));
        }
    }
    Ok(())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml_graph(t: &str) -> Result<Graph, String> {
        Graph::check(toml::from_str(t).map_err(|e| e.to_string())?)
    }

    const LINE: &str = r#"
nodes = [
  { id = "src", actor = "source", config = { accepts = "object" } },
  { id = "inc", actor = "map", config = { op = "add", field = "offset" } },
  { id = "even", actor = "filter", config = { field = "offset", modulo = 2 } },
  { id = "out", actor = "sink" },
]
connections = [
  { from = "src.output", to = "inc.input" },
  { from = "inc.output", to = "even.input" },
  { from = "even.output", to = "out.input" },
]
"#;

    #[test]
    fn a_line_checks_and_knows_what_messages_need() {
        let g = toml_graph(LINE).unwrap();
        let src = g.node("src").unwrap();
        assert_eq!(src.downstream, vec!["inc"]);
        assert!(fits(src, &serde_json::json!({"key":"a","offset":1})).is_ok());
        let e = fits(src, &serde_json::json!({"key":"a"})).unwrap_err();
        assert!(e.contains("offset") && e.contains("inc"), "{e}");
        let e = fits(src, &serde_json::json!(5)).unwrap_err();
        assert!(e.contains("object"), "{e}");
    }

    #[test]
    fn bad_graphs_are_named() {
        let e = toml_graph(&LINE.replace("\"sink\"", "\"sinc\"")).unwrap_err();
        assert!(
            e.contains("no actor `sinc`") && e.contains("did you mean `sink`"),
            "{e}"
        );
        let e = toml_graph(&LINE.replace("even.output", "even.out")).unwrap_err();
        assert!(e.contains("even.output"), "{e}");
        let e = toml_graph(&LINE.replace("to = \"out.input\"", "to = \"nope.input\"")).unwrap_err();
        assert!(e.contains("no node `nope`"), "{e}");
        let cyc = LINE.replace(
            "{ from = \"even.output\", to = \"out.input\" },",
            "{ from = \"even.output\", to = \"out.input\" },\n  { from = \"even.output\", to = \"inc.input\" },",
        );
        let e = toml_graph(&cyc).unwrap_err();
        assert!(e.contains("cycle inc -> even -> inc"), "{e}");
    }
}
