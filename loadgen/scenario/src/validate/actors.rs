//! The rules of the actor node's actions (`actors.*`) and of `setup.actors`:
//! component names as the node takes them, batch limits, component specs
//! (inline or a `Component.toml` next to the scenario), what a chained step
//! needs from the one before, and a topology whose names are unique and
//! whose references resolve.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Report, is_component_name, k};
use crate::catalog::{ActorsAction, Behavior, Catalog, ComponentSpec};
use crate::data::{KeySpec, Payload};
use crate::model::Scenario;
use crate::setup::ActorsSetup;
use crate::tree::Seg;

/// Most messages one request may carry (the node's `--max-batch` default).
pub const MAX_BATCH: u32 = 100_000;
/// Most components one batch spawn may create (the node's `--max-components` default).
pub const MAX_SPAWN: u32 = 1000;

const NAME_HINT: &str = "1 to 255 of `A-Z a-z 0-9 . _ -`, not starting with `.`";

/// A name or a name template (`worker-{{seq}}`): its literal parts must be
/// allowed in a component name.
fn is_name_template(s: &str) -> bool {
    match crate::data::parse_template(s) {
        Ok(parts) => {
            let literal: String = parts
                .iter()
                .map(|p| match p {
                    crate::data::Part::Lit(l) => l.as_str(),
                    crate::data::Part::Field(_) => "0",
                })
                .collect();
            is_component_name(&literal)
        }
        Err(_) => false,
    }
}

/// The rules of one actor action; `previous` is the step before it in a chain.
pub(super) fn check(
    action: &ActorsAction,
    previous: Option<&ActorsAction>,
    base: &Path,
    path: &[Seg],
    problem: &mut impl FnMut(Vec<Seg>, Option<&str>, String, Option<&str>),
) {
    let at = |key: &str| [path.to_vec(), vec![k(key)]].concat();
    let name = |problem: &mut Report, key: &str, value: &str| {
        if !is_name_template(value) {
            problem(
                at(key),
                None,
                format!("`{value}` is not a component name"),
                Some(NAME_HINT),
            );
        }
    };
    // A step without a component acts on the one the step before used or spawned.
    let handed_over = matches!(previous, Some(ActorsAction::Spawn(_)))
        || previous.is_some_and(|p| p.component().is_some())
        || previous.is_some_and(|p| matches!(p, ActorsAction::Stop(_) | ActorsAction::Send(_)));
    let needs_component = |problem: &mut Report, component: &Option<String>| match component {
        Some(c) => name(problem, "component", c),
        None if !handed_over => problem(
            path.to_vec(),
            None,
            format!("`{}` names no `component`", action.key()),
            Some("add `component: NAME`, or chain it after `actors.spawn`"),
        ),
        None => {}
    };
    let batch = |problem: &mut Report, n: u32| {
        if n == 0 || n > MAX_BATCH {
            problem(
                at("batch"),
                None,
                format!("`batch` {n} is out of range"),
                Some("the node takes 1 to 100000 messages per request"),
            );
        }
    };
    let message = |problem: &mut Report, payload: &Payload, key: Option<&KeySpec>| {
        if let Payload::Random(dist) = payload
            && dist.min() == 0
        {
            problem(
                at("payload"),
                None,
                "`payload` must be at least 1B".to_owned(),
                Some("e.g. `payload: 64B` or `payload: { json: { n: \"{{seq}}\" } }`"),
            );
        }
        if let Some(KeySpec::Template(t)) = key
            && t.is_empty()
        {
            problem(
                at("key"),
                None,
                "an empty message key".to_owned(),
                Some("e.g. `key: orders` or a key space `{ prefix: k-, count: 100 }`"),
            );
        }
    };
    match action {
        ActorsAction::Spawn(s) => {
            match (&s.name, s.count, &s.prefix) {
                (Some(n), None, None) => name(problem, "name", n),
                (None, Some(count), prefix) => {
                    if count == 0 || count > MAX_SPAWN {
                        problem(
                            at("count"),
                            None,
                            format!("`count` {count} is out of range"),
                            Some(
                                "spawn 1 to 1000 components per request (the node's `--max-components`)",
                            ),
                        );
                    }
                    match prefix {
                        Some(p) => name(problem, "prefix", p),
                        None => problem(
                            path.to_vec(),
                            Some("count"),
                            "a batch spawn needs a `prefix` for its components' names".to_owned(),
                            Some(
                                "e.g. `prefix: \"storm-{{seq}}-\"` names them storm-7-0, storm-7-1, …",
                            ),
                        ),
                    }
                    if s.component.name.is_some() {
                        problem(
                            at("component"),
                            Some("name"),
                            "`actors.spawn` names its components with `name` or `prefix`, not in `component`".to_owned(),
                            Some("move the name up: `actors.spawn: { name: …, component: { … } }`"),
                        );
                    }
                    if s.component.file.is_some() {
                        problem(
                            at("component"),
                            Some("file"),
                            "a batch spawn takes an inline component, not a `file`".to_owned(),
                            Some(
                                "describe it inline (`behavior:`, `mailbox:`, …), or spawn one `name` per request",
                            ),
                        );
                    }
                }
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => problem(
                    path.to_vec(),
                    Some("name"),
                    "give `name` (one component) or `count` and `prefix` (a batch), not both"
                        .to_owned(),
                    None,
                ),
                (None, None, _) => problem(
                    path.to_vec(),
                    None,
                    "`actors.spawn` names no component".to_owned(),
                    Some(
                        "add `name: \"worker-{{seq}}\"`, or `count: 100` with `prefix: \"w-{{seq}}-\"`",
                    ),
                ),
            }
            check_component(&s.component, base, &at("component"), false, problem);
        }
        ActorsAction::Stop(s) => needs_component(problem, &s.component),
        ActorsAction::Lookup(l) => needs_component(problem, &l.component),
        ActorsAction::Request(r) => {
            needs_component(problem, &r.component);
            message(problem, &r.payload, None);
        }
        ActorsAction::Send(s) => {
            needs_component(problem, &s.component);
            batch(problem, s.batch);
            message(problem, &s.payload, Some(&s.key));
        }
        ActorsAction::Publish(p) => {
            name(problem, "topic", &p.topic);
            batch(problem, p.batch);
            message(problem, &p.payload, Some(&p.key));
        }
    }
}

/// A component spec: `file` (existing, relative to `base`) or inline keys;
/// a `forward` has a `to` unless `wired` (a pipeline stage).
fn check_component(
    c: &ComponentSpec,
    base: &Path,
    path: &[Seg],
    wired: bool,
    problem: &mut impl FnMut(Vec<Seg>, Option<&str>, String, Option<&str>),
) {
    let at = |key: &str| [path.to_vec(), vec![k(key)]].concat();
    if let Some(file) = &c.file {
        let inline = [
            ("behavior", c.behavior.is_some()),
            ("to", c.to.is_some()),
            ("mailbox", c.mailbox.is_some()),
            ("restart", c.restart.is_some()),
            ("max_restarts", c.max_restarts.is_some()),
            ("within", c.within.is_some()),
        ];
        if let Some((key, _)) = inline.iter().find(|(_, set)| *set) {
            problem(
                path.to_vec(),
                Some(key),
                format!("`{key}` next to `file`: the file describes the component"),
                Some(
                    "put it in the Component.toml, or drop `file` and describe the component inline",
                ),
            );
        }
        let full = base.join(file);
        if !full.is_file() {
            problem(
                at("file"),
                None,
                format!(
                    "component file `{file}` not found (looked for {})",
                    full.display()
                ),
                Some("the path is relative to the scenario's file"),
            );
        }
        return;
    }
    match c.behavior {
        None => problem(
            path.to_vec(),
            None,
            "the component has no `behavior`".to_owned(),
            Some(
                "add `behavior: echo | counter | sink | forward | topic`, or `file: Component.toml`",
            ),
        ),
        Some(Behavior::Forward) if c.to.is_none() && !wired => problem(
            path.to_vec(),
            Some("behavior"),
            "a `forward` component needs `to:` (where its messages go)".to_owned(),
            Some("e.g. `to: orders-counter`, or declare the stages as a pipeline"),
        ),
        Some(b) if b != Behavior::Forward && c.to.is_some() => problem(
            path.to_vec(),
            Some("to"),
            format!("`to` is for `forward` components, not `{}`", b.name()),
            Some("remove `to`"),
        ),
        _ => {}
    }
    if let Some(to) = &c.to {
        let local = to.rsplit('/').next().unwrap_or(to);
        if !is_component_name(local) {
            problem(
                at("to"),
                None,
                format!("`{to}` is not a component name"),
                Some(NAME_HINT),
            );
        }
    }
    if c.mailbox == Some(0) {
        problem(
            at("mailbox"),
            None,
            "`mailbox: 0` holds no message".to_owned(),
            Some("e.g. `mailbox: 10000`"),
        );
    }
    if c.within.is_some_and(|w| w.0.is_zero()) {
        problem(
            at("within"),
            None,
            "`within: 0s` is no restart window".to_owned(),
            Some("e.g. `within: 60s`"),
        );
    }
}

/// The rules of `setup.actors`: its service, names unique and valid,
/// specs valid, pipelines of two stages or more, topics' subscribers known.
pub(super) fn check_setup(
    s: &Scenario,
    setup: &ActorsSetup,
    base: &Path,
    problem: &mut impl FnMut(Vec<Seg>, Option<&str>, String, Option<&str>),
) {
    let here = vec![k("setup"), k("actors")];
    let at = |more: &[Seg]| [here.clone(), more.to_vec()].concat();
    let services: Vec<&str> = s
        .stack
        .services
        .iter()
        .filter(|(_, svc)| svc.kind == Some(crate::model::ServiceKind::Actors))
        .map(|(n, _)| n.as_str())
        .collect();
    match &setup.service {
        Some(name) if !services.contains(&name.as_str()) => {
            let hint = crate::diag::did_you_mean(name, services.iter().copied())
                .map(|m| format!("did you mean `{m}`?"))
                .unwrap_or_else(|| format!("actor services: {}", services.join(", ")));
            problem(
                at(&[k("service")]),
                None,
                format!("no actors service `{name}` in the stack"),
                Some(&hint),
            );
        }
        None if services.len() != 1 => problem(
            here.clone(),
            None,
            format!(
                "cannot tell which service the actor set-up is for ({} actor services)",
                services.len()
            ),
            Some("add a service of `kind: actors`, or `service: NAME` here"),
        ),
        _ => {}
    }
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut declare = |problem: &mut Report, path: Vec<Seg>, name: &str| {
        if !is_component_name(name) {
            problem(
                path,
                None,
                format!("`{name}` is not a component name"),
                Some(NAME_HINT),
            );
        } else if !names.insert(name.to_owned()) {
            problem(
                path,
                None,
                format!("component `{name}` is declared twice"),
                Some("names are unique on a node"),
            );
        }
    };
    for (i, c) in setup.components.iter().enumerate() {
        let p = at(&[k("components"), Seg::Index(i)]);
        match &c.name {
            Some(name) => declare(problem, [p.clone(), vec![k("name")]].concat(), name),
            None => problem(
                p.clone(),
                None,
                "the component has no `name`".to_owned(),
                Some("add `name: orders`; it is the component's registry name"),
            ),
        }
        check_component(c, base, &p, false, problem);
    }
    for (i, pipe) in setup.pipelines.iter().enumerate() {
        let p = at(&[k("pipelines"), Seg::Index(i)]);
        if pipe.stages.len() < 2 {
            problem(
                [p.clone(), vec![k("stages")]].concat(),
                None,
                format!(
                    "pipeline `{}` has {} stage(s)",
                    pipe.name,
                    pipe.stages.len()
                ),
                Some(
                    "a pipeline has two stages or more; a single component goes under `components`",
                ),
            );
        }
        declare(problem, [p.clone(), vec![k("name")]].concat(), &pipe.name);
        for (j, stage) in pipe.stages.iter().enumerate() {
            let sp = [p.clone(), vec![k("stages"), Seg::Index(j)]].concat();
            declare(problem, sp.clone(), &pipe.stage_name(j));
            if stage.name.is_some() {
                problem(
                    sp.clone(),
                    Some("name"),
                    format!(
                        "a pipeline's stages are named `{}-1`, `{}-2`, …",
                        pipe.name, pipe.name
                    ),
                    Some("remove `name`; name the pipeline instead"),
                );
            }
            let last = j + 1 == pipe.stages.len();
            if last && stage.behavior == Some(Behavior::Forward) && stage.to.is_none() {
                problem(
                    sp.clone(),
                    Some("behavior"),
                    format!(
                        "the last stage of pipeline `{}` forwards nowhere",
                        pipe.name
                    ),
                    Some("end the pipeline with a `counter` or a `sink`"),
                );
            }
            check_component(stage, base, &sp, !last, problem);
        }
    }
    for (i, t) in setup.topics.iter().enumerate() {
        let p = at(&[k("topics"), Seg::Index(i)]);
        declare(problem, [p.clone(), vec![k("name")]].concat(), &t.name);
        if t.subscribers.is_none() && t.subscribe.is_empty() {
            problem(
                p.clone(),
                None,
                format!("topic `{}` has no subscribers", t.name),
                Some("add `subscribers: { count: 100 }` or `subscribe: [component, …]`"),
            );
        }
        if let Some(b) = &t.subscribers {
            if b.count == 0 || b.count > MAX_SPAWN {
                problem(
                    [p.clone(), vec![k("subscribers"), k("count")]].concat(),
                    None,
                    format!("`count` {} is out of range", b.count),
                    Some("1 to 1000 subscribers (the node's `--max-components`)"),
                );
            } else {
                for n in t.subscriber_names() {
                    declare(problem, [p.clone(), vec![k("subscribers")]].concat(), &n);
                }
            }
            if matches!(b.behavior, Some(Behavior::Forward | Behavior::Topic)) {
                problem(
                    [p.clone(), vec![k("subscribers"), k("behavior")]].concat(),
                    None,
                    "subscribers spawned in a batch cannot be `forward` or `topic`".to_owned(),
                    Some("use `counter` (the default), `sink` or `echo`"),
                );
            }
        }
    }
    for (i, t) in setup.topics.iter().enumerate() {
        for (j, c) in t.subscribe.iter().enumerate() {
            if !setup.components.iter().any(|d| d.name.as_ref() == Some(c)) {
                let known = setup.components.iter().filter_map(|d| d.name.as_deref());
                let hint = crate::diag::did_you_mean(c, known)
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| "declare it under `components`".to_owned());
                problem(
                    at(&[k("topics"), Seg::Index(i), k("subscribe"), Seg::Index(j)]),
                    None,
                    format!("no component `{c}` in the set-up"),
                    Some(&hint),
                );
            }
        }
    }
}
