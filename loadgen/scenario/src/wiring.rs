//! How services name each other: references in a service's `env` values
//! and `command` arguments, nginx's `upstreams`, the boot order they imply,
//! and the service-to-service links a link fault may name.
//!
//! ```yaml
//! stack:
//!   services:
//!     db:    { kind: postgres }
//!     cache: { kind: redis }
//!     ts1:
//!       kind: tracing
//!       env:
//!         TRACING_DATABASE_URL: "postgresql://postgres@{addr:db}/postgres"
//!         TRACING_REDIS_URL: "redis://{addr:cache}"
//!     lb: { kind: nginx, upstreams: [ts1] }
//! ```
//!
//! `{addr:NAME}` is `host:port` of service `NAME` as the referring service
//! reaches it, `{host:NAME}` and `{port:NAME}` its parts: in process mode
//! `127.0.0.1` and the service's port (or a fault proxy's, when a link
//! fault names the link `FROM->NAME`); in containers the service's name
//! on the run's network and its container port. A service boots after
//! every service it references (and nginx after its upstreams).

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Service, ServiceKind, Stack};
use crate::tree::Seg;
use crate::validate::Problem;

/// Which part of the referenced service's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `{addr:NAME}`: `host:port`.
    Addr,
    /// `{host:NAME}`.
    Host,
    /// `{port:NAME}`.
    Port,
}

const PARTS: [(&str, Part); 3] = [
    ("addr", Part::Addr),
    ("host", Part::Host),
    ("port", Part::Port),
];

/// One `{word:name}` found in a text: the part (`None`: an unknown word),
/// the word and the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub part: Option<Part>,
    pub word: String,
    pub name: String,
    /// Byte range of the whole `{…}` in the text.
    pub range: std::ops::Range<usize>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Every `{word:name}` in `text` (`word` and `name` of letters, digits,
/// `-` and `_`); other braces are left alone.
pub fn find(text: &str) -> Vec<Found> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find('{').map(|i| i + from) {
        let rest = &text[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let inner = &rest[..close];
        if let Some((word, name)) = inner.split_once(':')
            && !word.is_empty()
            && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && name.chars().all(is_name_char)
        {
            out.push(Found {
                part: PARTS.iter().find(|(w, _)| *w == word).map(|(_, p)| *p),
                word: word.to_owned(),
                name: name.to_owned(),
                range: open..open + close + 2,
            });
            from = open + close + 2;
        } else {
            from = open + 1;
        }
    }
    out
}

/// `text` with each reference replaced by `peer(name)`'s host and port;
/// a name `peer` does not know is left as written (validation refuses it
/// before anything boots).
pub fn resolve(text: &str, peer: &dyn Fn(&str) -> Option<(String, u16)>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for f in find(text) {
        let Some(part) = f.part else { continue };
        let Some((host, port)) = peer(&f.name) else {
            continue;
        };
        out.push_str(&text[last..f.range.start]);
        match part {
            Part::Addr => out.push_str(&format!("{host}:{port}")),
            Part::Host => out.push_str(&host),
            Part::Port => out.push_str(&port.to_string()),
        }
        last = f.range.end;
    }
    out.push_str(&text[last..]);
    out
}

/// Where a reference of a service was written: the path of the mapping or
/// sequence holding it, and the key in that mapping.
struct At {
    path: Vec<Seg>,
    key: Option<String>,
}

/// The references of `svc` with where each is written (relative to the
/// service), in order: `command`, `env`, `upstreams`.
fn references(svc: &Service) -> Vec<(Found, At)> {
    let k = |s: &str| Seg::Key(s.to_owned());
    let mut out = Vec::new();
    for (i, arg) in svc.command.iter().flatten().enumerate() {
        for f in find(arg) {
            let at = At {
                path: vec![k("command"), Seg::Index(i)],
                key: None,
            };
            out.push((f, at));
        }
    }
    for (var, value) in &svc.env {
        for f in find(value) {
            let at = At {
                path: vec![k("env")],
                key: Some(var.clone()),
            };
            out.push((f, at));
        }
    }
    for (i, name) in svc.upstreams.iter().enumerate() {
        let f = Found {
            part: Some(Part::Addr),
            word: "upstream".to_owned(),
            name: name.clone(),
            range: 0..0,
        };
        let at = At {
            path: vec![k("upstreams"), Seg::Index(i)],
            key: None,
        };
        out.push((f, at));
    }
    out
}

/// The services `svc` references (known or not), sorted.
pub fn dependencies(svc: &Service) -> BTreeSet<String> {
    references(svc)
        .into_iter()
        .filter(|(f, _)| f.part.is_some())
        .map(|(f, _)| f.name)
        .collect()
}

/// The services in boot order: each after every service it references,
/// otherwise by name. Services caught in a cycle (which validation
/// refuses) come last, by name.
pub fn boot_order(stack: &Stack) -> Vec<String> {
    let deps: BTreeMap<&str, BTreeSet<String>> = stack
        .services
        .iter()
        .map(|(name, svc)| {
            let known = dependencies(svc)
                .into_iter()
                .filter(|d| stack.services.contains_key(d) && d != name)
                .collect();
            (name.as_str(), known)
        })
        .collect();
    let mut order: Vec<String> = Vec::new();
    let mut left: Vec<&str> = deps.keys().copied().collect();
    while !left.is_empty() {
        let ready = left
            .iter()
            .position(|name| deps[name].iter().all(|d| order.contains(d)));
        match ready {
            Some(i) => order.push(left.remove(i).to_owned()),
            None => {
                order.extend(left.drain(..).map(str::to_owned));
            }
        }
    }
    order
}

/// The links between two services a link fault may name: `FROM->TO` for
/// every service `TO` that service `FROM` references.
pub fn service_links(stack: &Stack) -> Vec<String> {
    stack
        .services
        .iter()
        .flat_map(|(from, svc)| {
            dependencies(svc)
                .into_iter()
                .filter(move |to| stack.services.contains_key(to) && to != from)
                .map(move |to| format!("{from}->{to}"))
        })
        .collect()
}

/// A cycle among the references, as the names along it (first repeated
/// last), if there is one.
fn find_cycle(stack: &Stack) -> Option<Vec<String>> {
    let deps: BTreeMap<&str, Vec<String>> = stack
        .services
        .iter()
        .map(|(n, s)| {
            // A reference to itself is refused on its own.
            let d = dependencies(s)
                .into_iter()
                .filter(|d| stack.services.contains_key(d) && d != n)
                .collect();
            (n.as_str(), d)
        })
        .collect();
    // Iterative DFS with colours: 0 new, 1 on the path, 2 done.
    let mut colour: BTreeMap<&str, u8> = deps.keys().map(|k| (*k, 0)).collect();
    for start in deps.keys() {
        if colour[start] != 0 {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        colour.insert(start, 1);
        while let Some((node, next)) = path.last().copied() {
            let children = &deps[node];
            if next == children.len() {
                colour.insert(node, 2);
                path.pop();
                continue;
            }
            path.last_mut().expect("non-empty").1 += 1;
            let child = children[next].as_str();
            match colour[child] {
                0 => {
                    colour.insert(child, 1);
                    path.push((child, 0));
                }
                1 => {
                    let from = path.iter().position(|(n, _)| *n == child).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|(n, _)| (*n).to_owned()).collect();
                    cycle.push(child.to_owned());
                    return Some(cycle);
                }
                _ => {}
            }
        }
    }
    None
}

/// The kind of service `name` answers as: its own kind, or for nginx the
/// kind of its upstreams when they are all of one kind (an operation for
/// `tracing` may target the nginx in front of tracing servers).
pub fn serves_as(stack: &Stack, name: &str) -> Option<ServiceKind> {
    let svc = stack.services.get(name)?;
    if !is_balancer(svc) {
        return svc.kind;
    }
    let kinds: BTreeSet<Option<&str>> = svc
        .upstreams
        .iter()
        .filter(|u| u.as_str() != name)
        .map(|u| {
            stack
                .services
                .get(u)
                .and_then(|s| s.kind)
                .map(ServiceKind::name)
        })
        .collect();
    match kinds.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(kind)] => ServiceKind::ALL.into_iter().find(|k| k.name() == *kind),
        _ => svc.kind,
    }
}

/// Whether a service balances over `upstreams` (nginx, HAProxy).
pub fn is_balancer(svc: &Service) -> bool {
    matches!(
        svc.kind,
        Some(ServiceKind::Nginx) | Some(ServiceKind::Haproxy)
    )
}

/// Whether a service of this kind answers HTTP (what nginx can proxy to).
fn serves_http(svc: &Service) -> bool {
    !matches!(
        svc.kind,
        Some(ServiceKind::Postgres) | Some(ServiceKind::Redis)
    )
}

/// The rules of references and `upstreams`.
pub(crate) fn check(stack: &Stack, out: &mut Vec<Problem>) {
    let k = |s: &str| Seg::Key(s.to_owned());
    let names: Vec<&str> = stack.services.keys().map(String::as_str).collect();
    for (name, svc) in &stack.services {
        let here = vec![k("stack"), k("services"), k(name)];
        for (f, at) in references(svc) {
            let path = [here.clone(), at.path.clone()].concat();
            let mut problem = |message: String, hint: String| {
                out.push(Problem {
                    path: path.clone(),
                    key: at.key.clone(),
                    message,
                    hint: Some(hint),
                })
            };
            let upstream = f.word == "upstream";
            let Some(_) = f.part else {
                let words: Vec<&str> = PARTS.iter().map(|(w, _)| *w).collect();
                let hint = crate::diag::did_you_mean(&f.word, words.iter().copied())
                    .map(|m| format!("did you mean `{{{m}:{}}}`?", f.name))
                    .unwrap_or_else(|| {
                        "a reference to another service is `{addr:NAME}`, `{host:NAME}` or `{port:NAME}`"
                            .to_owned()
                    });
                problem(
                    format!("`{{{}:{}}}` is not a reference", f.word, f.name),
                    hint,
                );
                continue;
            };
            let what = if upstream {
                format!("upstream `{}`", f.name)
            } else {
                format!("`{{{}:{}}}`", f.word, f.name)
            };
            if f.name == *name {
                problem(
                    format!("{what} names the service itself"),
                    if upstream {
                        "list the HTTP services nginx forwards to".to_owned()
                    } else {
                        "its own address is `{addr}` (also `{host}`, `{port}`)".to_owned()
                    },
                );
                continue;
            }
            match stack.services.get(&f.name) {
                None => {
                    let hint = if stack.external.contains_key(&f.name) {
                        format!(
                            "`{}` is an external service; write its address itself",
                            f.name
                        )
                    } else {
                        crate::diag::did_you_mean(&f.name, names.iter().copied())
                            .map(|m| format!("did you mean `{m}`?"))
                            .unwrap_or_else(|| {
                                format!("services in the stack: {}", names.join(", "))
                            })
                    };
                    problem(
                        format!("{what}: no service `{}` in the stack", f.name),
                        hint,
                    );
                }
                Some(target) if upstream && !serves_http(target) => problem(
                    format!(
                        "upstream `{}` is `{}`, which does not serve HTTP",
                        f.name,
                        target.kind.map_or("", ServiceKind::name)
                    ),
                    "nginx forwards HTTP and WebSocket to HTTP services (e.g. `kind: tracing`)"
                        .to_owned(),
                ),
                Some(_) => {}
            }
        }
        let is_nginx = is_balancer(svc);
        if !svc.upstreams.is_empty() && !is_nginx {
            out.push(Problem {
                path: here.clone(),
                key: Some("upstreams".to_owned()),
                message: format!("`upstreams` is for `kind: nginx` and `kind: haproxy`; service `{name}` is neither"),
                hint: Some(
                    "remove `upstreams`, or reference other services in `env` with `{addr:NAME}`"
                        .to_owned(),
                ),
            });
        }
        if is_nginx && svc.upstreams.is_empty() {
            out.push(Problem {
                path: here.clone(),
                key: Some("kind".to_owned()),
                message: format!(
                    "{} service `{name}` has no `upstreams`",
                    svc.kind.map_or("nginx", ServiceKind::name)
                ),
                hint: Some(
                    "e.g. `upstreams: [ts1, ts2]` (the HTTP services it balances over)".to_owned(),
                ),
            });
        }
        let mut seen = BTreeSet::new();
        for (i, u) in svc.upstreams.iter().enumerate() {
            if !seen.insert(u) {
                out.push(Problem {
                    path: [here.clone(), vec![k("upstreams"), Seg::Index(i)]].concat(),
                    key: None,
                    message: format!("upstream `{u}` is listed twice"),
                    hint: Some("list each service once".to_owned()),
                });
            }
        }
    }
    if let Some(cycle) = find_cycle(stack) {
        out.push(Problem {
            path: vec![k("stack"), k("services")],
            key: Some(cycle[0].clone()),
            message: format!(
                "services reference each other in a cycle: {}",
                cycle
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
            hint: Some(
                "a service boots after the services it references; one of them must not reference the other".to_owned(),
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_and_resolved() {
        let text = "postgresql://postgres@{addr:db}/x?h={host:db}&p={port:db}&{port}&{bad:x}";
        let found = find(text);
        assert_eq!(found.len(), 4);
        assert_eq!(found[3].part, None);
        let out = resolve(text, &|n| (n == "db").then(|| ("h".to_owned(), 5)));
        assert_eq!(out, "postgresql://postgres@h:5/x?h=h&p=5&{port}&{bad:x}");
        assert_eq!(resolve("{addr:zz} {", &|_| None), "{addr:zz} {");
    }

    fn stack(yaml: serde_json::Value) -> Stack {
        serde_json::from_value(serde_json::json!({ "services": yaml })).unwrap()
    }

    #[test]
    fn boot_order_follows_references() {
        let s = stack(serde_json::json!({
            "a": { "kind": "nginx", "upstreams": ["t"] },
            "t": { "kind": "tracing", "env": { "DB": "{addr:z}" } },
            "z": { "kind": "postgres" },
            "b": { "kind": "redis" },
        }));
        assert_eq!(boot_order(&s), ["b", "z", "t", "a"]);
        assert_eq!(serves_as(&s, "a"), Some(ServiceKind::Tracing));
        assert_eq!(serves_as(&s, "z"), Some(ServiceKind::Postgres));
        assert_eq!(service_links(&s), ["a->t", "t->z"]);
        assert!(find_cycle(&s).is_none());
        let c = stack(serde_json::json!({
            "a": { "command": ["x", "{addr:b}"] },
            "b": { "command": ["x"], "env": { "A": "{port:a}" } },
        }));
        assert_eq!(find_cycle(&c).unwrap(), ["a", "b", "a"]);
        assert_eq!(boot_order(&c), ["a", "b"]);
    }
}
