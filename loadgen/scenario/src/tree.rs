//! A YAML document as a tree whose every node remembers where it was written.
//!
//! yaml-rust2's marked event parser feeds this tree; the tree then becomes a
//! `serde_json::Value` for serde, and any error serde reports (as a path) is
//! mapped back to a `line:col` through [`Node::find`]. `--set` overrides edit
//! the tree before deserialisation, so their errors point at the override.

use std::collections::HashMap;

use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node starts: 1-based line and column, or an override's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pos {
    At {
        line: usize,
        col: usize,
    },
    /// A value given on the command line with `--set PATH=VALUE`.
    Override(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are nodes so errors can point at them.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// One step of a path into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A YAML syntax error, or a construct the scenario format does not accept.
#[derive(Debug, Clone)]
pub struct TreeError {
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
}

impl Node {
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".to_owned(),
            Value::Seq(_) | Value::Map(_) => "<complex key>".to_owned(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The node at `path`, and the deepest node reached when the path leaves the tree.
    pub fn find(&self, path: &[Seg]) -> (&Node, bool) {
        let mut node = self;
        for seg in path {
            match (seg, &node.value) {
                (Seg::Key(k), Value::Map(entries)) => {
                    match entries.iter().find(|(key, _)| key.key_text() == *k) {
                        Some((_, v)) => node = v,
                        None => return (node, false),
                    }
                }
                (Seg::Index(i), Value::Seq(items)) => match items.get(*i) {
                    Some(v) => node = v,
                    None => return (node, false),
                },
                _ => return (node, false),
            }
        }
        (node, true)
    }

    /// The key node of the entry `key` in the mapping at `path`.
    pub fn find_key(&self, path: &[Seg], key: &str) -> Option<&Node> {
        match &self.find(path) {
            (
                Node {
                    value: Value::Map(entries),
                    ..
                },
                true,
            ) => entries
                .iter()
                .find(|(k, _)| k.key_text() == key)
                .map(|(k, _)| k),
            _ => None,
        }
    }

    pub fn find_mut(&mut self, path: &[Seg]) -> Option<&mut Node> {
        let mut node = self;
        for seg in path {
            node = match (seg, &mut node.value) {
                (Seg::Key(k), Value::Map(entries)) => {
                    &mut entries.iter_mut().find(|(key, _)| key.key_text() == *k)?.1
                }
                (Seg::Index(i), Value::Seq(items)) => items.get_mut(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Removes the entry or element at `path`; false when there was none.
    pub fn remove(&mut self, path: &[Seg]) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        let Some(parent) = self.find_mut(parent) else {
            return false;
        };
        match (last, &mut parent.value) {
            (Seg::Key(k), Value::Map(entries)) => {
                let before = entries.len();
                entries.retain(|(key, _)| key.key_text() != *k);
                entries.len() != before
            }
            (Seg::Index(i), Value::Seq(items)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            _ => false,
        }
    }

    /// Applies `--set PATH=VALUE`. Segments are separated by dots; a segment
    /// may match a key containing dots (`fabric.stream.append`), an index
    /// (`phases.2`; the list's length appends) or the element of a list
    /// whose `name` it equals (`phases.steady`). Missing keys are created
    /// (intermediate ones as mappings). The value is YAML, so any value can
    /// be set: `--set 'workload.phases.0.rate={ from: 1/s, to: 9/s }'`.
    pub fn set(&mut self, assignment: &str) -> Result<(), TreeError> {
        let origin = Pos::Override(assignment.to_owned());
        let err = |message: String, hint: &str| TreeError {
            pos: origin.clone(),
            message,
            hint: Some(hint.to_owned()),
        };
        let Some((path, raw)) = assignment.split_once('=') else {
            return Err(err(
                format!("`--set {assignment}` has no `=`"),
                "write `--set path.to.key=value`, e.g. `--set workload.phases.steady.rate=800/s`",
            ));
        };
        if path.is_empty() {
            return Err(err(
                "`--set` needs a path before `=`".to_owned(),
                "e.g. `--set seed=7`",
            ));
        }
        let mut value = parse(raw).map_err(|mut e| {
            e.pos = origin.clone();
            e
        })?;
        relocate(&mut value, &origin);
        let parts: Vec<&str> = path.split('.').collect();
        let mut node = self;
        let mut i = 0;
        while i < parts.len() {
            let rest = &parts[i..];
            match &mut node.value {
                Value::Map(entries) => {
                    // Longest run of segments that names an existing key.
                    let found = (1..=rest.len()).rev().find_map(|n| {
                        let key = rest[..n].join(".");
                        entries
                            .iter()
                            .position(|(k, _)| k.key_text() == key)
                            .map(|idx| (idx, n))
                    });
                    match found {
                        Some((idx, n)) => {
                            if i + n == parts.len() {
                                entries[idx].1 = value;
                                return Ok(());
                            }
                            i += n;
                            node = &mut entries[idx].1;
                        }
                        None if rest.len() == 1 => {
                            let key = Node {
                                value: Value::Str(rest[0].to_owned()),
                                pos: origin.clone(),
                            };
                            entries.push((key, value));
                            return Ok(());
                        }
                        None => {
                            // A missing intermediate key: a new mapping.
                            let key = Node {
                                value: Value::Str(rest[0].to_owned()),
                                pos: origin.clone(),
                            };
                            let map = Node {
                                value: Value::Map(Vec::new()),
                                pos: origin.clone(),
                            };
                            entries.push((key, map));
                            let last = entries.len() - 1;
                            i += 1;
                            node = &mut entries[last].1;
                        }
                    }
                }
                Value::Seq(items) => {
                    let seg = rest[0];
                    if seg.parse::<usize>() == Ok(items.len()) && i + 1 == parts.len() {
                        // One past the end appends.
                        items.push(value);
                        return Ok(());
                    }
                    let idx = match seg.parse::<usize>() {
                        Ok(idx) if idx < items.len() => idx,
                        _ => items
                            .iter()
                            .position(|item| {
                                item.find(&[Seg::Key("name".to_owned())])
                                    .1
                                    .then(|| item.find(&[Seg::Key("name".to_owned())]).0.key_text())
                                    .is_some_and(|name| name == seg)
                            })
                            .ok_or_else(|| {
                                err(
                                    format!(
                                        "`--set`: no element `{seg}` in the list at `{}`",
                                        parts[..i].join(".")
                                    ),
                                    "use an index from 0 (the list's length appends) or the `name` of an element",
                                )
                            })?,
                    };
                    if i + 1 == parts.len() {
                        items[idx] = value;
                        return Ok(());
                    }
                    i += 1;
                    node = &mut items[idx];
                }
                _ => {
                    return Err(err(
                        format!(
                            "`--set`: `{}` is not a mapping or list",
                            parts[..i].join(".")
                        ),
                        "a scalar value cannot have children",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn relocate(node: &mut Node, pos: &Pos) {
    node.pos = pos.clone();
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| relocate(n, pos)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            relocate(k, pos);
            relocate(v, pos);
        }),
        _ => {}
    }
}

fn pos_of(mark: Marker) -> Pos {
    Pos::At {
        line: mark.line(),
        col: mark.col() + 1,
    }
}

enum Frame {
    Seq(Node),
    Map(Node, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    done: Option<Node>,
    anchors: HashMap<usize, Node>,
    pending_anchor: Vec<usize>,
    error: Option<TreeError>,
    documents: usize,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.done = Some(node),
            Some(Frame::Seq(seq)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Frame::Map(map, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Value::Map(entries) = &mut map.value {
                        let text = k.key_text();
                        if self.error.is_none()
                            && let Some((first, _)) = entries
                                .iter()
                                .find(|(existing, _)| existing.key_text() == text)
                        {
                            let first_at = match &first.pos {
                                Pos::At { line, col } => format!(" (first at {line}:{col})"),
                                Pos::Override(_) => String::new(),
                            };
                            self.error = Some(TreeError {
                                pos: k.pos.clone(),
                                message: format!("duplicate key `{text}`{first_at}"),
                                hint: Some("each key may appear once in a mapping".to_owned()),
                            });
                        }
                        entries.push((k, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = pos_of(mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 && self.error.is_none() {
                    self.error = Some(TreeError {
                        pos,
                        message: "a scenario file holds one YAML document".to_owned(),
                        hint: Some("remove the second `---` or split the file".to_owned()),
                    });
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain {
                    match Yaml::from_str(&text) {
                        Yaml::Integer(i) => Value::Int(i),
                        Yaml::Real(r) => r.parse().map_or(Value::Str(text.clone()), Value::Float),
                        Yaml::Boolean(b) => Value::Bool(b),
                        Yaml::Null => Value::Null,
                        _ => Value::Str(text),
                    }
                } else {
                    Value::Str(text)
                };
                let node = Node { value, pos };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    value: Value::Null,
                    pos,
                });
                self.push_value(node);
            }
            Event::SequenceStart(anchor, _) => {
                self.pending_anchor.push(anchor);
                self.stack.push(Frame::Seq(Node {
                    value: Value::Seq(Vec::new()),
                    pos,
                }));
            }
            Event::MappingStart(anchor, _) => {
                self.pending_anchor.push(anchor);
                self.stack.push(Frame::Map(
                    Node {
                        value: Value::Map(Vec::new()),
                        pos,
                    },
                    None,
                ));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq(n)) | Some(Frame::Map(n, _)) => n,
                    None => return,
                };
                if let Some(anchor) = self.pending_anchor.pop()
                    && anchor > 0
                {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            _ => {}
        }
    }
}

/// A `${…}` replaced on one line: columns (1-based, end exclusive) in the
/// expanded text and in the original.
#[derive(Debug, Clone, Copy)]
struct Span {
    new_start: usize,
    new_end: usize,
    old_start: usize,
    old_end: usize,
}

/// Per line (0-based), the replacements made on it, in order.
type Shifts = Vec<Vec<Span>>;

fn env_error(line: usize, col: usize, message: String, hint: String) -> TreeError {
    TreeError {
        pos: Pos::At { line, col },
        message,
        hint: Some(hint),
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` in the text (comments aside)
/// with the environment's value; `$${` is a literal `${`. Done on the text,
/// before YAML parsing, so a placeholder works anywhere a value does (flow
/// mappings included) and a number stays a number; positions are mapped
/// back to the original through the returned shifts.
fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Shifts), TreeError> {
    let mut out = String::with_capacity(text.len());
    let mut shifts: Shifts = Vec::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let mut spans = Vec::new();
        let chars: Vec<char> = line.chars().collect();
        let (mut i, mut new_col) = (0usize, 1usize);
        let (mut single, mut double) = (false, false);
        while i < chars.len() {
            let c = chars[i];
            let at = |s: &str| chars[i..].iter().take(s.len()).copied().eq(s.chars());
            if !single && !double && c == '#' && (i == 0 || chars[i - 1].is_whitespace()) {
                // A comment: the rest of the line as it is.
                out.extend(&chars[i..]);
                break;
            }
            match c {
                '"' if !single && (i == 0 || chars[i - 1] != '\\') => double = !double,
                '\'' if !double => single = !single,
                _ => {}
            }
            if at("$${") {
                out.push_str("${");
                spans.push(Span {
                    new_start: new_col,
                    new_end: new_col + 2,
                    old_start: i + 1,
                    old_end: i + 4,
                });
                i += 3;
                new_col += 2;
                continue;
            }
            if !at("${") {
                out.push(c);
                i += 1;
                new_col += 1;
                continue;
            }
            let Some(len) = chars[i + 2..].iter().position(|&c| c == '}') else {
                return Err(env_error(
                    n + 1,
                    i + 1,
                    "`${` without a closing `}`".to_owned(),
                    "write `${NAME}` or `${NAME:-default}`; `$${` is a literal `${`".to_owned(),
                ));
            };
            let inner: String = chars[i + 2..i + 2 + len].iter().collect();
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner.as_str(), None),
            };
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(env_error(
                    n + 1,
                    i + 1,
                    format!("`${{{inner}}}` does not name an environment variable"),
                    "names are letters, digits and `_`: `${RATE}`, `${RATE:-500/s}`".to_owned(),
                ));
            }
            let value = match (env(name), default) {
                (Some(v), _) => v,
                (None, Some(d)) => d.to_owned(),
                (None, None) => {
                    return Err(env_error(
                        n + 1,
                        i + 1,
                        format!("environment variable `{name}` is not set"),
                        format!(
                            "set it (`{name}=… loadgen run …`), give a default (`${{{name}:-value}}`), or write `$${{` for a literal `${{`"
                        ),
                    ));
                }
            };
            if value.contains(['\n', '\r']) {
                return Err(env_error(
                    n + 1,
                    i + 1,
                    format!("environment variable `{name}` holds a line break"),
                    "a value from the environment is one line".to_owned(),
                ));
            }
            let width = value.chars().count();
            out.push_str(&value);
            spans.push(Span {
                new_start: new_col,
                new_end: new_col + width,
                old_start: i + 1,
                old_end: i + 3 + len + 1,
            });
            i += 3 + len;
            new_col += width;
        }
        shifts.push(spans);
    }
    Ok((out, shifts))
}

/// The original position of a position in the expanded text.
fn unshift(pos: &mut Pos, shifts: &Shifts) {
    if let Pos::At { line, col } = pos
        && let Some(spans) = shifts.get(line.saturating_sub(1))
    {
        let mut delta = 0isize;
        for sp in spans {
            if *col < sp.new_start {
                break;
            }
            if *col < sp.new_end {
                *col = sp.old_start;
                return;
            }
            delta = sp.old_end as isize - sp.new_end as isize;
        }
        *col = (*col as isize + delta).max(1) as usize;
    }
}

fn unshift_tree(node: &mut Node, shifts: &Shifts) {
    unshift(&mut node.pos, shifts);
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| unshift_tree(n, shifts)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            unshift_tree(k, shifts);
            unshift_tree(v, shifts);
        }),
        _ => {}
    }
}

/// Parses one YAML document into a tree, `${NAME}` taken from the process
/// environment. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, TreeError> {
    parse_with_env(text, &|name| std::env::var(name).ok())
}

/// [`parse`] with the environment given as a lookup.
pub fn parse_with_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Node, TreeError> {
    if !text.contains("${") {
        return parse_yaml(text);
    }
    let (expanded, shifts) = interpolate(text, env)?;
    match parse_yaml(&expanded) {
        Ok(mut node) => {
            unshift_tree(&mut node, &shifts);
            Ok(node)
        }
        Err(mut e) => {
            unshift(&mut e.pos, &shifts);
            Err(e)
        }
    }
}

fn parse_yaml(text: &str) -> Result<Node, TreeError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| TreeError {
        pos: pos_of(*e.marker()),
        message: e.info().to_owned(),
        hint: Some("this is a YAML syntax error; check indentation and quoting".to_owned()),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.done.unwrap_or(Node {
        value: Value::Null,
        pos: Pos::At { line: 1, col: 1 },
    }))
}

/// Converts a JSON value to YAML text (used to write the resolved scenario).
pub fn json_to_yaml(value: &serde_json::Value) -> String {
    fn convert(v: &serde_json::Value) -> Yaml {
        match v {
            serde_json::Value::Null => Yaml::Null,
            serde_json::Value::Bool(b) => Yaml::Boolean(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Yaml::Integer(i),
                None => Yaml::Real(n.to_string()),
            },
            serde_json::Value::String(s) => Yaml::String(s.clone()),
            serde_json::Value::Array(a) => Yaml::Array(a.iter().map(convert).collect()),
            serde_json::Value::Object(o) => Yaml::Hash(
                o.iter()
                    .map(|(k, v)| (Yaml::String(k.clone()), convert(v)))
                    .collect(),
            ),
        }
    }
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    // Emitting into a String cannot fail.
    let _ = emitter.dump(&convert(value));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let tree = parse("a: 1\nb:\n  - x\n  - { c: 2 }\n").unwrap();
        let (b1, found) = tree.find(&[Seg::Key("b".into()), Seg::Index(1), Seg::Key("c".into())]);
        assert!(found);
        assert_eq!(b1.pos, Pos::At { line: 4, col: 10 });
        let key = tree.find_key(&[], "b").unwrap();
        assert_eq!(key.pos, Pos::At { line: 2, col: 1 });
    }

    #[test]
    fn scalars_are_typed_like_yaml_core() {
        let tree = parse("a: 1\nb: '1'\nc: 1.5\nd: true\ne: ~\nf: 5s\n").unwrap();
        assert_eq!(
            tree.to_json(),
            serde_json::json!({"a":1,"b":"1","c":1.5,"d":true,"e":null,"f":"5s"})
        );
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_have_positions() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Pos::At { line: 3, col: 1 });
        assert!(err.message.contains("duplicate key `a`"));
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(matches!(err.pos, Pos::At { .. }));
    }

    #[test]
    fn set_reaches_dotted_keys_names_and_indexes() {
        let mut tree = parse(
            "phases:\n  - { name: warmup, rate: 1/s }\n  - { name: steady, rate: 2/s }\nops:\n  - fabric.stream.append: { payload: 1B }\n",
        )
        .unwrap();
        tree.set("phases.steady.rate=9/s").unwrap();
        tree.set("phases.0.rate=8/s").unwrap();
        tree.set("ops.0.fabric.stream.append.payload=4KiB").unwrap();
        tree.set("seed=7").unwrap();
        let json = tree.to_json();
        assert_eq!(json["phases"][1]["rate"], "9/s");
        assert_eq!(json["phases"][0]["rate"], "8/s");
        assert_eq!(json["ops"][0]["fabric.stream.append"]["payload"], "4KiB");
        assert_eq!(json["seed"], 7);
        assert!(tree.set("phases.nope.rate=1/s").is_err());
        // Any value: mappings, new nested keys, appended list elements.
        tree.set("phases.0.rate={ from: 1/s, to: 5/s }").unwrap();
        tree.set("stack.external.web=http://127.0.0.1:9").unwrap();
        tree.set("phases.2={ name: cool, rate: 1/s }").unwrap();
        let json = tree.to_json();
        assert_eq!(json["phases"][0]["rate"]["to"], "5/s");
        assert_eq!(json["stack"]["external"]["web"], "http://127.0.0.1:9");
        assert_eq!(json["phases"][2]["name"], "cool");
        assert!(tree.set("phases.9.rate=1/s").is_err());
        assert!(tree.set("no-equals").is_err());
    }

    #[test]
    fn env_variables_are_interpolated_and_typed() {
        let env = |n: &str| match n {
            "RATE" => Some("750/s".to_owned()),
            "SEED" => Some("42".to_owned()),
            _ => None,
        };
        let tree = parse_with_env(
            "rate: ${RATE}\nseed: ${SEED}\nq: '${SEED}'\nd: ${NOPE:-5s}\nlit: a$${X}b\nmix: x-${SEED}-y\nflow: { r: ${RATE}, s: ${SEED} }  # ${IGNORED}\nafter: [${SEED}, oops\n",
            &env,
        )
        .unwrap_err();
        // Positions after a replacement point at the original text.
        assert_eq!(err_pos(&tree), Pos::At { line: 9, col: 1 });
        let tree = parse_with_env(
            "rate: ${RATE}\nseed: ${SEED}\nq: '${SEED}'\nd: ${NOPE:-5s}\nlit: a$${X}b\nmix: x-${SEED}-y\nflow: { r: ${RATE}, s: ${SEED}, t: 1 }  # ${IGNORED}\n",
            &env,
        )
        .unwrap();
        let t = tree
            .find(&[Seg::Key("flow".into()), Seg::Key("t".into())])
            .0;
        assert_eq!(
            t.pos,
            Pos::At { line: 7, col: 36 },
            "columns after a replacement are the original's"
        );
        let r = tree
            .find(&[Seg::Key("flow".into()), Seg::Key("r".into())])
            .0;
        assert_eq!(r.pos, Pos::At { line: 7, col: 12 });
        let json = tree.to_json();
        assert_eq!(json["rate"], "750/s");
        assert_eq!(
            json["seed"], 42,
            "a plain scalar is typed after interpolation"
        );
        assert_eq!(json["q"], "42", "a quoted scalar stays a string");
        assert_eq!(json["d"], "5s");
        assert_eq!(json["lit"], "a${X}b");
        assert_eq!(json["mix"], "x-42-y");
        assert_eq!(json["flow"]["r"], "750/s");
        assert_eq!(json["flow"]["s"], 42);
    }

    proptest::proptest! {
        /// Whatever the values, every node after a replacement keeps the
        /// position it has in the text as written.
        #[test]
        fn positions_survive_any_replacement(a in "[a-z0-9/]{0,40}", b in "[A-Za-z0-9][A-Za-z0-9._-]{0,39}") {
            let env = |n: &str| match n {
                "A" => Some(a.clone()),
                "B" => Some(b.clone()),
                _ => None,
            };
            let text = "x: { p: \"${A}\", q: ${B}, r: 1 }\ny: [${B}, \"${A:-d}\", 2]\n";
            let tree = parse_with_env(text, &env).unwrap();
            let at = |path: &[Seg]| tree.find(path).0.pos.clone();
            let key = |k: &str| Seg::Key(k.to_owned());
            proptest::prop_assert_eq!(at(&[key("x"), key("r")]), Pos::At { line: 1, col: 29 });
            proptest::prop_assert_eq!(at(&[key("x"), key("q")]), Pos::At { line: 1, col: 20 });
            proptest::prop_assert_eq!(at(&[key("y"), Seg::Index(2)]), Pos::At { line: 2, col: 22 });
            let json = tree.to_json();
            proptest::prop_assert_eq!(json["x"]["p"].as_str(), Some(a.as_str()));
        }
    }

    fn err_pos(e: &TreeError) -> Pos {
        e.pos.clone()
    }

    #[test]
    fn a_missing_env_variable_is_located_and_named() {
        let env = |_: &str| None;
        let err = parse_with_env("a: 1\nrate: x${MISSING_RATE}\n", &env).unwrap_err();
        assert_eq!(err.pos, Pos::At { line: 2, col: 8 });
        assert!(
            err.message.contains("`MISSING_RATE` is not set"),
            "{}",
            err.message
        );
        let hint = err.hint.unwrap();
        assert!(hint.contains("${MISSING_RATE:-value}"), "{hint}");
        let err = parse_with_env("a: \"${BAD NAME}\"\n", &env).unwrap_err();
        assert!(err.message.contains("does not name"), "{}", err.message);
        assert_eq!(err.pos, Pos::At { line: 1, col: 5 });
        let err = parse_with_env("a: ${OPEN\n", &env).unwrap_err();
        assert!(err.message.contains("without a closing"), "{}", err.message);
    }

    #[test]
    fn anchors_and_aliases_resolve() {
        let tree = parse("base: &b { x: 1 }\ncopy: *b\n").unwrap();
        assert_eq!(tree.to_json()["copy"], serde_json::json!({"x": 1}));
    }
}
