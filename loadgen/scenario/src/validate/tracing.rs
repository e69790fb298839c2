//! The rules of the tracing server's actions (`tracing.*`), of
//! `postgres.query` and `redis.command`, and of `setup.postgres`:
//! templates that parse, event generators that make valid events, limits
//! the server takes, what a chained step needs from the one before, and
//! services that exist with the right kind.

use super::{Report, k};
use crate::catalog::{
    EventSpec, EventType, MIN_EVENT_SIZE, PostgresQuery, RedisCommand, TracingAction,
    TracingConnection,
};
use crate::data::KeySpec;
use crate::model::{Scenario, ServiceKind};
use crate::setup::PostgresSetup;
use crate::tree::Seg;

/// Most events one chained `tracing.record_event` step may record.
pub const MAX_STEP_EVENTS: u32 = 100_000;
/// Largest event a generator makes (the server's frame limit is 16 MiB).
pub const MAX_EVENT_BYTES: u64 = 8 << 20;
/// Most traces one query may ask for.
pub const MAX_QUERY_LIMIT: u32 = 10_000;

fn template(problem: &mut Report, at: Vec<Seg>, what: &str, value: &str) {
    if let Err(e) = crate::data::parse_template(value) {
        problem(
            at,
            None,
            format!("{what} `{value}`: {e}"),
            Some("placeholders are `{{seq}}`, `{{random:uuid}}`, `{{timestamp}}`, …"),
        );
    }
}

fn key_spec(problem: &mut Report, at: Vec<Seg>, what: &str, spec: &KeySpec) {
    match spec {
        KeySpec::Template(t) if t.is_empty() => problem(
            at,
            None,
            format!("empty {what}"),
            Some("e.g. `{ prefix: actor-, count: 100 }` or a template `actor-{{seq}}`"),
        ),
        KeySpec::Template(t) => template(problem, at, what, t),
        KeySpec::Space { count: 0, .. } => problem(
            at,
            None,
            format!("a pool of 0 {what}s"),
            Some("give `count` of 1 or more"),
        ),
        KeySpec::Space { .. } => {}
    }
}

/// An event generator: pools, types and sizes that make valid events.
pub(super) fn check_event(problem: &mut Report, path: &[Seg], e: &EventSpec) {
    let at = |key: &str| [path.to_vec(), vec![k(key)]].concat();
    key_spec(problem, at("actors"), "actor id", &e.actors);
    key_spec(problem, at("ports"), "port name", &e.ports);
    for name in e.types.keys() {
        if EventType::from_name(name).is_none() {
            let names = EventType::ALL.map(EventType::name);
            let hint = crate::diag::did_you_mean(name, names)
                .map(|m| format!("did you mean `{m}`?"))
                .unwrap_or_else(|| format!("the protocol's types: {}", names.join(", ")));
            problem(
                at("types"),
                Some(name),
                format!("`{name}` is not an event type"),
                Some(&hint),
            );
        }
    }
    if e.types.values().all(|w| *w == 0) {
        problem(
            at("types"),
            None,
            "no event type has a weight above 0".to_owned(),
            Some("e.g. `types: { MessageSent: 3, DataFlow: 1 }`"),
        );
    }
    let size = |problem: &mut Report, at: Vec<Seg>, bytes: u64| {
        if bytes < MIN_EVENT_SIZE {
            problem(
                at,
                None,
                format!("an event of {bytes} bytes is smaller than its fields"),
                Some("events are at least 256B as JSON"),
            );
        } else if bytes > MAX_EVENT_BYTES {
            problem(
                at,
                None,
                format!("an event of {bytes} bytes is over 8MiB"),
                Some("the server refuses frames over 16 MiB; large events are e.g. `64KiB`"),
            );
        }
    };
    size(problem, at("size"), e.size.bytes());
    if let Some(large) = &e.large {
        let here = [at("large"), vec![k("share")]].concat();
        if !(large.share.0 > 0.0 && large.share.0 <= 100.0) {
            problem(
                here,
                None,
                format!("a share of {} of large events", large.share),
                Some("a share above 0% and at most 100%, e.g. `5%`"),
            );
        }
        size(
            problem,
            [at("large"), vec![k("size")]].concat(),
            large.size.bytes(),
        );
    }
}

fn check_connection(problem: &mut Report, path: &[Seg], c: &TracingConnection) {
    if let Some(token) = &c.token
        && (token.is_empty()
            || token
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control()))
    {
        problem(
            [path.to_vec(), vec![k("token")]].concat(),
            None,
            "`token` is not a JWT (empty, or with spaces)".to_owned(),
            Some("the token alone, without `Bearer`; e.g. `token: ${TRACING_TOKEN}`"),
        );
    }
}

/// The rules of one tracing action; `previous` is the step before it in a chain.
pub(super) fn check(
    s: &Scenario,
    action: &TracingAction,
    previous: Option<&TracingAction>,
    in_chain: bool,
    path: &[Seg],
    problem: &mut Report,
) {
    let at = |key: &str| [path.to_vec(), vec![k(key)]].concat();
    check_connection(problem, path, action.connection());
    // A trace is handed along by `start_trace` and by the steps after it.
    let has_trace = previous.is_some_and(|p| {
        matches!(
            p,
            TracingAction::StartTrace(_) | TracingAction::RecordEvent(_)
        ) || matches!(p, TracingAction::GetTrace(_))
    });
    match action {
        TracingAction::StartTrace(a) => {
            if let Some(flow) = &a.flow {
                template(problem, at("flow"), "flow id", flow);
            }
        }
        TracingAction::RecordEvent(a) => {
            match a.events {
                Some(n) if !in_chain && n != 1 => problem(
                    at("events"),
                    None,
                    format!("`events: {n}` on an operation: an operation makes one request"),
                    Some(
                        "chain it: `then: [{ tracing.record_event: { events: 10 } }]` after `tracing.start_trace`, or raise the rate",
                    ),
                ),
                Some(n) if n == 0 || n > MAX_STEP_EVENTS => problem(
                    at("events"),
                    None,
                    format!("`events` {n} is out of range"),
                    Some("1 to 100000 events per step"),
                ),
                _ => {}
            }
            check_event(problem, &at("event"), &a.event);
        }
        TracingAction::GetTrace(a) => match &a.trace {
            Some(t) => template(problem, at("trace"), "trace id", t),
            None if !has_trace => problem(
                path.to_vec(),
                None,
                "`tracing.get_trace` names no `trace`".to_owned(),
                Some(
                    "chain it after `tracing.start_trace` (and its events), or give `trace: \"{{random:uuid}}\"` with `must_exist: false`",
                ),
            ),
            None => {}
        },
        TracingAction::Query(q) => {
            if let Some(flow) = &q.flow {
                template(problem, at("flow"), "flow id", flow);
            }
            if let Some(actor) = &q.actor {
                template(problem, at("actor"), "actor id", actor);
            }
            if q.since.is_some_and(|d| d.0.is_zero()) {
                problem(
                    at("since"),
                    None,
                    "`since: 0s` is an empty time range".to_owned(),
                    Some("e.g. `since: 1m`"),
                );
            }
            if q.limit == 0 || q.limit > MAX_QUERY_LIMIT {
                problem(
                    at("limit"),
                    None,
                    format!("`limit` {} is out of range", q.limit),
                    Some("1 to 10000 traces per query"),
                );
            }
        }
        TracingAction::Subscribe(sub) => {
            if in_chain {
                problem(
                    path.to_vec(),
                    None,
                    "`tracing.subscribe` is an operation of its own, not a step".to_owned(),
                    Some("give it its own entry under `operations:`"),
                );
            }
            if let Some(via) = &sub.publish_via {
                match s.stack.services.get(via) {
                    Some(_)
                        if crate::wiring::serves_as(&s.stack, via)
                            .is_some_and(|k| k != ServiceKind::Tracing) =>
                    {
                        problem(
                            at("publish_via"),
                            None,
                            format!("service `{via}` is not a tracing service"),
                            Some(
                                "publish through a `tracing` replica or an `nginx` in front of them",
                            ),
                        )
                    }
                    Some(_) => {}
                    None if s.stack.external.contains_key(via) => {}
                    None => {
                        let names = s.stack.services.keys().map(String::as_str);
                        let hint = crate::diag::did_you_mean(via, names)
                            .map(|m| format!("did you mean `{m}`?"))
                            .unwrap_or_else(|| "name a tracing service of the stack".to_owned());
                        problem(
                            at("publish_via"),
                            None,
                            format!("no service `{via}` in the stack"),
                            Some(&hint),
                        );
                    }
                }
            }
            if sub.notify_within.0.is_zero() {
                problem(
                    at("notify_within"),
                    None,
                    "`notify_within: 0s` leaves no time for a notification".to_owned(),
                    Some("e.g. `notify_within: 2s`"),
                );
            }
            check_event(problem, &at("event"), &sub.event);
        }
    }
}

/// The highest `$N` a statement names.
fn highest_parameter(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut max = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits: String = sql[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse::<usize>() {
                max = max.max(n);
            }
            i += 1 + digits.len();
        } else {
            i += 1;
        }
    }
    max
}

/// The rules of `postgres.query`.
pub(super) fn check_postgres(q: &PostgresQuery, path: &[Seg], problem: &mut Report) {
    let at = |key: &str| [path.to_vec(), vec![k(key)]].concat();
    if q.sql.trim().is_empty() {
        problem(
            at("sql"),
            None,
            "an empty statement".to_owned(),
            Some("e.g. `sql: \"SELECT count(*) FROM tracing.events\"`"),
        );
    }
    let given = q.params.len() + if q.event.is_some() { 6 } else { 0 };
    let named = highest_parameter(&q.sql);
    if named > given {
        problem(
            at("sql"),
            None,
            format!("the statement names ${named}, but {given} parameter(s) are given"),
            Some("add them under `params:` (`event:` gives $1 to $6)"),
        );
    }
    for (i, p) in q.params.iter().enumerate() {
        template(
            problem,
            [at("params"), vec![Seg::Index(i)]].concat(),
            "parameter",
            p,
        );
    }
    if let Some(e) = &q.event {
        check_event(problem, &at("event"), e);
    }
    for (key, value) in [("database", &q.database), ("user", &q.user)] {
        if value.is_empty() || value.contains(['\0', ' ', '\'']) {
            problem(
                at(key),
                None,
                format!("`{value}` is not a PostgreSQL {key} name"),
                Some("e.g. `postgres`"),
            );
        }
    }
}

/// The rules of `redis.command`.
pub(super) fn check_redis(c: &RedisCommand, path: &[Seg], problem: &mut Report) {
    let at = |key: &str| [path.to_vec(), vec![k(key)]].concat();
    match c.command.first() {
        None => problem(
            at("command"),
            None,
            "an empty command".to_owned(),
            Some("e.g. `command: [SET, \"k-{{seq}}\", v]`"),
        ),
        Some(name) if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic()) => problem(
            [at("command"), vec![Seg::Index(0)]].concat(),
            None,
            format!("`{name}` is not a Redis command"),
            Some("the first element is the command's name, e.g. `GET`"),
        ),
        Some(_) => {}
    }
    for (i, arg) in c.command.iter().enumerate().skip(1) {
        template(
            problem,
            [at("command"), vec![Seg::Index(i)]].concat(),
            "argument",
            arg,
        );
    }
}

/// The rules of `setup.postgres`: its service, its statements.
pub(super) fn check_setup(s: &Scenario, setup: &PostgresSetup, problem: &mut Report) {
    let here = vec![k("setup"), k("postgres")];
    let services: Vec<&str> = s
        .stack
        .services
        .iter()
        .filter(|(_, svc)| svc.kind == Some(ServiceKind::Postgres))
        .map(|(n, _)| n.as_str())
        .collect();
    match &setup.service {
        Some(name) if !services.contains(&name.as_str()) => {
            let hint = crate::diag::did_you_mean(name, services.iter().copied())
                .map(|m| format!("did you mean `{m}`?"))
                .unwrap_or_else(|| format!("postgres services: {}", services.join(", ")));
            problem(
                [here.clone(), vec![k("service")]].concat(),
                None,
                format!("no postgres service `{name}` in the stack"),
                Some(&hint),
            );
        }
        None if services.len() != 1 => problem(
            here.clone(),
            None,
            format!(
                "cannot tell which service the PostgreSQL set-up is for ({} postgres services)",
                services.len()
            ),
            Some("add a service of `kind: postgres`, or `service: NAME` here"),
        ),
        _ => {}
    }
    if setup.sql.is_empty() {
        problem(
            [here.clone(), vec![k("sql")]].concat(),
            None,
            "no statement to run".to_owned(),
            Some("e.g. `sql: [\"CREATE TABLE IF NOT EXISTS scratch (id uuid primary key)\"]`"),
        );
    }
    for (i, sql) in setup.sql.iter().enumerate() {
        if sql.trim().is_empty() {
            problem(
                [here.clone(), vec![k("sql"), Seg::Index(i)]].concat(),
                None,
                "an empty statement".to_owned(),
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::highest_parameter;

    #[test]
    fn parameters_are_counted_by_their_highest_number() {
        assert_eq!(highest_parameter("SELECT 1"), 0);
        assert_eq!(highest_parameter("SELECT $1, $12::int, $3"), 12);
        assert_eq!(highest_parameter("SELECT '$' || $2"), 2);
    }
}
