//! Semantic rules a well-typed scenario must still satisfy (names unique,
//! references resolve, limits respected). Every rule reports a path into the
//! document so the diagnostic points at the offending value.

use std::collections::{BTreeMap, HashSet};

use crate::gate::{GateSpec, Profile, Slo};

use crate::model::{Action, EngineKind, RateSpec, ReadFrom, Runtime, Scenario, ServiceKind};
use crate::tree::Seg;

pub struct Problem {
    pub path: Vec<Seg>,
    /// Point at this key of the mapping at `path` rather than at the mapping.
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_owned())
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `tenant/namespace/name`, each segment as the fabric accepts it.
fn is_stream_path(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 128
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

/// Longest run a scenario may describe.
const MAX_RUN_SECS: f64 = 24.0 * 3600.0;
/// Most users a closed-model phase may ask for.
const MAX_USERS: u32 = 100_000;
/// Largest append request body the fabric accepts, with room for base64.
const MAX_APPEND_BYTES: u64 = 8 << 20;

/// Rules of a gate profile on its own (names are checked against a run when applied).
pub fn check_profile(p: &Profile) -> Vec<Problem> {
    let mut out = Vec::new();
    check_criteria(&p.slo, p.gate.as_ref(), None, &mut out);
    out
}

/// Rules shared by a scenario's and a profile's `slo:` and `gate:`. With
/// `names` (operations, phases), every name must exist.
pub fn check_criteria(
    slo: &BTreeMap<String, Slo>,
    gate: Option<&GateSpec>,
    names: Option<(&[&str], &[&str])>,
    out: &mut Vec<Problem>,
) {
    let unknown = |kind: &str, name: &str, known: &[&str]| {
        let hint = crate::diag::did_you_mean(name, known.iter().copied())
            .map(|m| format!("did you mean `{m}`?"))
            .unwrap_or_else(|| format!("{kind}s: {}", known.join(", ")));
        (format!("no {kind} `{name}` in the workload"), Some(hint))
    };
    if let Some((ops, _)) = names {
        for name in slo.keys() {
            if !ops.contains(&name.as_str()) {
                let (message, hint) = unknown("operation", name, ops);
                out.push(Problem {
                    path: vec![k("slo")],
                    key: Some(name.clone()),
                    message,
                    hint,
                });
            }
        }
    }
    let Some(gate) = gate else { return };
    if !(50.0..=99.9).contains(&gate.confidence.0) {
        out.push(Problem {
            path: vec![k("gate"), k("confidence")],
            key: None,
            message: format!("confidence {} is out of range", gate.confidence),
            hint: Some("use 50% to 99.9%; 95% is usual".to_owned()),
        });
    }
    if let Some((ops, phases)) = names {
        for name in gate.operations.keys() {
            if !ops.contains(&name.as_str()) {
                let (message, hint) = unknown("operation", name, ops);
                out.push(Problem {
                    path: vec![k("gate"), k("operations")],
                    key: Some(name.clone()),
                    message,
                    hint,
                });
            }
        }
        for (i, name) in gate.phases.iter().enumerate() {
            if !phases.contains(&name.as_str()) {
                let (message, hint) = unknown("phase", name, phases);
                out.push(Problem {
                    path: vec![k("gate"), k("phases"), Seg::Index(i)],
                    key: None,
                    message,
                    hint,
                });
            }
        }
    }
}

pub fn check(s: &Scenario) -> Vec<Problem> {
    let mut out = Vec::new();
    let ops: Vec<&str> = s
        .workload
        .operations
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    let phases: Vec<&str> = s.workload.phases.iter().map(|p| p.name.as_str()).collect();
    check_criteria(&s.slo, s.gate.as_ref(), Some((&ops, &phases)), &mut out);
    let mut problem = |path: Vec<Seg>, key: Option<&str>, message: String, hint: Option<&str>| {
        out.push(Problem {
            path,
            key: key.map(str::to_owned),
            message,
            hint: hint.map(str::to_owned),
        })
    };

    if !is_name(&s.name) {
        problem(
            vec![k("name")],
            None,
            format!("scenario name `{}` is not a plain name", s.name),
            Some("use letters, digits, `-` and `_` (it names the run directory)"),
        );
    }

    if s.stack.runtime == Runtime::Containers {
        problem(
            vec![k("stack"), k("runtime")],
            None,
            "`runtime: containers` is not available in this version of Gauntlet".to_owned(),
            Some("use `runtime: process` (the default): each service runs as a local process"),
        );
    }
    if s.stack.services.is_empty() && s.stack.external.is_empty() {
        problem(
            vec![k("stack"), k("services")],
            None,
            "the stack has no services".to_owned(),
            Some("add one, e.g. `fabric: { kind: fabric }`"),
        );
    }
    for (name, url) in &s.stack.external {
        if !is_name(name) {
            problem(
                vec![k("stack"), k("external")],
                Some(name),
                format!("service name `{name}` is not a plain name"),
                Some("use letters, digits, `-` and `_`"),
            );
        }
        if s.stack.services.contains_key(name) {
            problem(
                vec![k("stack"), k("external"), k(name)],
                None,
                format!("`{name}` is both a booted and an external service"),
                Some("rename one of them; operations refer to services by name"),
            );
        }
        let host = url
            .strip_prefix("http://")
            .map(|h| h.trim_end_matches('/'))
            .unwrap_or_default();
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            problem(
                vec![k("stack"), k("external"), k(name)],
                None,
                format!("`{url}` is not a base URL"),
                Some("write `http://host:port`, without a path, e.g. `http://127.0.0.1:8080`"),
            );
        }
    }
    for (name, svc) in &s.stack.services {
        let here = vec![k("stack"), k("services"), k(name)];
        if !is_name(name) {
            problem(
                vec![k("stack"), k("services")],
                Some(name),
                format!("service name `{name}` is not a plain name"),
                Some("use letters, digits, `-` and `_`"),
            );
        }
        match (&svc.kind, &svc.command) {
            (Some(_), Some(_)) => problem(
                here.clone(),
                Some("command"),
                format!("service `{name}` has both `kind` and `command`"),
                Some("keep `kind` to run the bundled service, or `command` to run your own"),
            ),
            (None, None) => problem(
                here.clone(),
                None,
                format!("service `{name}` has neither `kind` nor `command`"),
                Some("add `kind: fabric`, or `command: [program, args…]`"),
            ),
            (None, Some(cmd)) if cmd.is_empty() || cmd[0].is_empty() => problem(
                here.clone(),
                Some("command"),
                format!("service `{name}` has an empty `command`"),
                Some("the first element is the program to run"),
            ),
            _ => {}
        }
        if !svc.ready_path.starts_with('/') {
            problem(
                here.clone(),
                Some("ready_path"),
                format!("`ready_path` `{}` must start with `/`", svc.ready_path),
                Some("e.g. `/ready`"),
            );
        }
        if svc.ready_timeout.0.is_zero() {
            problem(
                [here.clone(), vec![k("ready_timeout")]].concat(),
                None,
                "`ready_timeout` must be longer than 0s".to_owned(),
                Some("e.g. `30s`"),
            );
        }
    }

    let w = &s.workload;
    let closed = w.engine == EngineKind::Closed;
    if !closed && w.think_time.is_some() {
        problem(
            vec![k("workload"), k("think_time")],
            None,
            "`think_time` applies to the closed model only".to_owned(),
            Some(
                "add `engine: closed`, or remove `think_time` (open-model arrivals follow `rate:`)",
            ),
        );
    }
    if w.max_in_flight == 0 || w.max_in_flight > 100_000 {
        problem(
            vec![k("workload"), k("max_in_flight")],
            None,
            format!("`max_in_flight` {} is out of range", w.max_in_flight),
            Some("use 1 to 100000"),
        );
    }
    if w.timeout.0.is_zero() {
        problem(
            vec![k("workload"), k("timeout")],
            None,
            "`timeout` must be longer than 0s".to_owned(),
            Some("e.g. `10s`"),
        );
    }

    if w.phases.is_empty() {
        problem(
            vec![k("workload"), k("phases")],
            None,
            "the workload has no phases".to_owned(),
            Some("add one, e.g. `- { name: steady, duration: 10s, rate: 100/s }`"),
        );
    }
    let mut phase_names = HashSet::new();
    let mut total = 0.0;
    for (i, phase) in w.phases.iter().enumerate() {
        let here = vec![k("workload"), k("phases"), Seg::Index(i)];
        if !is_name(&phase.name) {
            problem(
                [here.clone(), vec![k("name")]].concat(),
                None,
                format!("phase name `{}` is not a plain name", phase.name),
                Some("use letters, digits, `-` and `_`"),
            );
        } else if !phase_names.insert(phase.name.as_str()) {
            problem(
                [here.clone(), vec![k("name")]].concat(),
                None,
                format!("phase name `{}` is used twice", phase.name),
                Some("phase names must be unique; results are reported per phase"),
            );
        }
        if phase.duration.0.is_zero() {
            problem(
                [here.clone(), vec![k("duration")]].concat(),
                None,
                "a phase must last longer than 0s".to_owned(),
                Some("e.g. `10s`"),
            );
        }
        total += phase.duration.as_secs_f64();
        match (closed, phase.rate, phase.users) {
            (false, Some(rate), None) => {
                let peak = match rate {
                    RateSpec::Constant(r) => r.0,
                    RateSpec::Ramp { from, to } => from.0.max(to.0),
                };
                if peak == 0.0 {
                    problem(
                        [here.clone(), vec![k("rate")]].concat(),
                        None,
                        format!("phase `{}` has a rate of 0/s", phase.name),
                        Some("an open-model phase needs arrivals; give it a rate above 0/s"),
                    );
                }
            }
            (false, _, Some(_)) => problem(
                [here.clone(), vec![k("users")]].concat(),
                None,
                format!(
                    "phase `{}` gives `users:`, which the open model does not use",
                    phase.name
                ),
                Some(
                    "give the phase a `rate:` (e.g. `500/s`), or set `workload.engine: closed` to run users",
                ),
            ),
            (false, None, None) => problem(
                here.clone(),
                Some("rate"),
                format!("phase `{}` has no `rate:`", phase.name),
                Some("an open-model phase needs an arrival rate, e.g. `rate: 500/s`"),
            ),
            (true, Some(_), _) => problem(
                [here.clone(), vec![k("rate")]].concat(),
                None,
                format!(
                    "phase `{}` gives `rate:`, but the closed model runs users, not a rate",
                    phase.name
                ),
                Some(
                    "write `users: 50` (or `users: { from: 0, to: 50 }`), or use `engine: open` for a rate",
                ),
            ),
            (true, None, None) => problem(
                here.clone(),
                Some("users"),
                format!("phase `{}` has no `users:`", phase.name),
                Some("a closed-model phase needs users, e.g. `users: 50`"),
            ),
            (true, None, Some(users)) => {
                let (from, to) = users.bounds();
                if phase.duration.0.subsec_nanos() != 0 {
                    problem(
                        [here.clone(), vec![k("duration")]].concat(),
                        None,
                        format!(
                            "closed-model phase `{}` lasts {}, not a whole number of seconds",
                            phase.name, phase.duration
                        ),
                        Some("goose ramps users in whole seconds; round the duration, e.g. `10s`"),
                    );
                }
                if from.max(to) > MAX_USERS {
                    problem(
                        [here.clone(), vec![k("users")]].concat(),
                        None,
                        format!(
                            "phase `{}` asks for {} users, more than {MAX_USERS}",
                            phase.name,
                            from.max(to)
                        ),
                        Some("use fewer users, or the open model for high load"),
                    );
                } else if from.max(to) == 0 {
                    problem(
                        [here.clone(), vec![k("users")]].concat(),
                        None,
                        format!("phase `{}` has no users", phase.name),
                        Some("give it at least 1 user"),
                    );
                }
            }
        }
    }
    if total > MAX_RUN_SECS {
        problem(
            vec![k("workload"), k("phases")],
            None,
            format!("the phases last {total:.0}s, more than the 24h limit"),
            Some("shorten the phases"),
        );
    }

    if w.operations.is_empty() {
        problem(
            vec![k("workload"), k("operations")],
            None,
            "the workload has no operations".to_owned(),
            Some(
                "add one, e.g. `- { name: append, fabric.stream.append: { stream: acme/orders/events } }`",
            ),
        );
    }
    let mut op_names = HashSet::new();
    for (i, op) in w.operations.iter().enumerate() {
        let here = vec![k("workload"), k("operations"), Seg::Index(i)];
        let action_path = [here.clone(), vec![k(op.action.key())]].concat();
        if !is_name(&op.name) {
            problem(
                [here.clone(), vec![k("name")]].concat(),
                None,
                format!("operation name `{}` is not a plain name", op.name),
                Some("use letters, digits, `-` and `_`"),
            );
        } else if !op_names.insert(op.name.as_str()) {
            problem(
                [here.clone(), vec![k("name")]].concat(),
                None,
                format!("operation name `{}` is used twice", op.name),
                Some("operation names must be unique; results are reported per operation"),
            );
        }
        if op.weight == 0 {
            problem(
                [here.clone(), vec![k("weight")]].concat(),
                None,
                "`weight` must be at least 1".to_owned(),
                Some("remove the operation to leave it out of the mix"),
            );
        }
        check_target(
            s,
            op.action.needs(),
            op.action.service(),
            &action_path,
            &mut problem,
        );
        match &op.action {
            Action::Http(h) => {
                const METHODS: [&str; 7] =
                    ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"];
                if !METHODS.contains(&h.method.as_str()) {
                    problem(
                        [action_path.clone(), vec![k("method")]].concat(),
                        None,
                        format!("`{}` is not an HTTP method Gauntlet sends", h.method),
                        Some("use GET, POST, PUT, DELETE, HEAD, PATCH or OPTIONS (upper case)"),
                    );
                }
                if !h.url.starts_with('/') || h.url.contains(char::is_whitespace) {
                    problem(
                        [action_path.clone(), vec![k("url")]].concat(),
                        None,
                        format!("`{}` is not a path relative to the service", h.url),
                        Some("write a path and query starting with `/`, e.g. `/api/items?id=1`"),
                    );
                }
                for (name, value) in &h.headers {
                    let bad = |t: &str| t.contains(['\r', '\n']);
                    if name.is_empty() || name.contains([':', ' ']) || bad(name) || bad(value) {
                        problem(
                            [action_path.clone(), vec![k("headers")]].concat(),
                            Some(name),
                            format!("header `{name}` is not a valid header line"),
                            Some("names have no `:`, spaces or line breaks; values no line breaks"),
                        );
                    }
                }
                if !(100..=599).contains(&h.expect) {
                    problem(
                        [action_path.clone(), vec![k("expect")]].concat(),
                        None,
                        format!("`expect` {} is not an HTTP status", h.expect),
                        Some("use a status from 100 to 599, e.g. `200`"),
                    );
                }
            }
            Action::StreamAppend(a) => {
                if !is_stream_path(&a.stream) {
                    problem(
                        [action_path.clone(), vec![k("stream")]].concat(),
                        None,
                        format!("`{}` is not a stream path", a.stream),
                        Some("write `tenant/namespace/name`, e.g. `acme/orders/events`"),
                    );
                }
                if a.batch == 0 || a.batch > 1000 {
                    problem(
                        [action_path.clone(), vec![k("batch")]].concat(),
                        None,
                        format!("`batch` {} is out of range", a.batch),
                        Some("the fabric takes 1 to 1000 events per append"),
                    );
                }
                if a.payload.0 == 0 {
                    problem(
                        [action_path.clone(), vec![k("payload")]].concat(),
                        None,
                        "`payload` must be at least 1B".to_owned(),
                        Some("the fabric refuses empty payloads"),
                    );
                } else if a.payload.0.saturating_mul(a.batch as u64) > MAX_APPEND_BYTES {
                    problem(
                        [action_path.clone(), vec![k("payload")]].concat(),
                        None,
                        format!(
                            "a batch of {} × {} exceeds the 8MiB an append may carry",
                            a.batch, a.payload
                        ),
                        Some("lower `payload` or `batch`"),
                    );
                }
            }
            Action::StreamRead(r) => {
                if !is_stream_path(&r.stream) {
                    problem(
                        [action_path.clone(), vec![k("stream")]].concat(),
                        None,
                        format!("`{}` is not a stream path", r.stream),
                        Some("write `tenant/namespace/name`, e.g. `acme/orders/events`"),
                    );
                }
                if r.max == 0 || r.max > 1000 {
                    problem(
                        [action_path.clone(), vec![k("max")]].concat(),
                        None,
                        format!("`max` {} is out of range", r.max),
                        Some("the fabric returns 1 to 1000 messages per read"),
                    );
                }
                if let ReadFrom::Latest(n) = r.from
                    && n > 1000
                {
                    problem(
                        [action_path.clone(), vec![k("from")]].concat(),
                        None,
                        format!("`latest-{n}` reaches further back than one read returns"),
                        Some("use at most `latest-1000`"),
                    );
                }
            }
        }
    }
    out
}

fn check_target(
    s: &Scenario,
    needs: Option<ServiceKind>,
    named: Option<&str>,
    action_path: &[Seg],
    problem: &mut impl FnMut(Vec<Seg>, Option<&str>, String, Option<&str>),
) {
    let needs = match (needs, named) {
        (Some(kind), _) => kind,
        // Any HTTP service, booted or external.
        (None, Some(name)) => {
            if !s.stack.services.contains_key(name) && !s.stack.external.contains_key(name) {
                let names: Vec<&str> = s
                    .stack
                    .services
                    .keys()
                    .chain(s.stack.external.keys())
                    .map(String::as_str)
                    .collect();
                let hint = crate::diag::did_you_mean(name, names.iter().copied())
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| format!("services in the stack: {}", names.join(", ")));
                problem(
                    [action_path.to_vec(), vec![k("service")]].concat(),
                    None,
                    format!("no service `{name}` in the stack"),
                    Some(&hint),
                );
            }
            return;
        }
        (None, None) => return,
    };
    match named {
        Some(name) => match s.stack.services.get(name) {
            None if s.stack.external.contains_key(name) => {}
            None => {
                let names: Vec<&str> = s.stack.services.keys().map(String::as_str).collect();
                let hint = crate::diag::did_you_mean(name, names.iter().copied())
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| format!("services in the stack: {}", names.join(", ")));
                problem(
                    [action_path.to_vec(), vec![k("service")]].concat(),
                    None,
                    format!("no service `{name}` in the stack"),
                    Some(&hint),
                );
            }
            Some(svc) if svc.kind.is_some_and(|k| k != needs) => problem(
                [action_path.to_vec(), vec![k("service")]].concat(),
                None,
                format!("service `{name}` is not a {} service", needs.name()),
                None,
            ),
            Some(_) => {}
        },
        None => {
            let candidates: Vec<&String> = s
                .stack
                .services
                .iter()
                .filter(|(_, svc)| svc.kind == Some(needs) || svc.command.is_some())
                .map(|(n, _)| n)
                .collect();
            if candidates.len() != 1 {
                problem(
                    action_path.to_vec(),
                    None,
                    format!(
                        "cannot tell which service this {} operation targets ({} candidates)",
                        needs.name(),
                        candidates.len()
                    ),
                    Some("add `service: NAME` to the operation"),
                );
            }
        }
    }
}

/// The service an action targets: the named one (booted or external), or
/// the only candidate.
pub fn target_service<'a>(s: &'a Scenario, action: &Action) -> Option<&'a str> {
    if let Some(name) = action.service() {
        return s
            .stack
            .services
            .get_key_value(name)
            .map(|(k, _)| k.as_str())
            .or_else(|| {
                s.stack
                    .external
                    .get_key_value(name)
                    .map(|(k, _)| k.as_str())
            });
    }
    let needs = action.needs()?;
    let mut candidates = s
        .stack
        .services
        .iter()
        .filter(|(_, svc)| svc.kind == Some(needs) || svc.command.is_some());
    match (candidates.next(), candidates.next()) {
        (Some((name, _)), None) => Some(name.as_str()),
        _ => None,
    }
}
