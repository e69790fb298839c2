//! Semantic rules a well-typed scenario must still satisfy (names unique,
//! references resolve, limits respected). Every rule reports a path into the
//! document so the diagnostic points at the offending value.

mod actors;
mod fabric;
mod http;
mod reflow;
mod tracing;

use std::collections::{BTreeMap, HashSet};

use crate::gate::{GateSpec, Profile, Slo};

use crate::catalog::Action;
use crate::data::Payload;
use crate::model::{EngineKind, RateSpec, Runtime, Scenario, ServiceKind};
use crate::tree::Seg;
use crate::units::Size;

pub struct Problem {
    pub path: Vec<Seg>,
    /// Point at this key of the mapping at `path` rather than at the mapping.
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

pub(super) fn k(s: &str) -> Seg {
    Seg::Key(s.to_owned())
}

pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A component's registry name as the actor node takes it: 1–255 bytes of
/// `[A-Za-z0-9._-]`, not starting with `.` (it names a file on the node).
pub fn is_component_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `tenant/namespace/name`, each segment as the fabric accepts it.
pub(super) fn is_stream_path(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 128
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

/// Most users a closed-model phase may ask for.
const MAX_USERS: u32 = 100_000;
/// Longest run a scenario may describe.
const MAX_RUN_SECS: f64 = 24.0 * 3600.0;
/// Largest append request body the fabric accepts, with room for base64.
pub(super) const MAX_APPEND_BYTES: u64 = 8 << 20;
/// The smallest `disk:` of a service (a data directory below that is not a disk).
const MIN_DISK: u64 = 8 << 20;

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

/// Shortest soak phase.
const MIN_SOAK_SECS: f64 = 60.0;
/// Most rate segments a phase may have (steps, spike periods).
const MAX_SEGMENTS: f64 = 200_000.0;

/// What a base URL of `stack.external` is made of.
pub struct BaseUrl {
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/` (empty for none).
    pub prefix: String,
}

/// Parses `http://host[:port][/prefix]`.
pub fn parse_base_url(url: &str) -> Result<BaseUrl, (String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(if url.starts_with("https://") {
            (
                format!("`{url}`: Gauntlet's HTTP client speaks plain HTTP only"),
                "use an `http://` URL (on loopback or the project's own containers)".to_owned(),
            )
        } else {
            (
                format!("`{url}` is not an http:// URL"),
                "write e.g. `http://127.0.0.1:8080`".to_owned(),
            )
        });
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.contains(['?', '#']) {
        return Err((
            format!("`{url}` has a query or fragment"),
            "a base URL is `http://host:port[/prefix]`; put queries in the operation's `url`"
                .to_owned(),
        ));
    }
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        match h.split_once(']') {
            Some((h, p)) => (format!("[{h}]"), p.strip_prefix(':')),
            None => (String::new(), None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    let port = match port {
        None => Some(80),
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0),
    };
    match (valid_host, port) {
        (true, Some(port)) => Ok(BaseUrl {
            host,
            port,
            prefix: path.trim_end_matches('/').to_owned(),
        }),
        _ => Err((
            format!("`{url}` has no valid host and port"),
            "write e.g. `http://127.0.0.1:8080`".to_owned(),
        )),
    }
}

/// The rules of a scenario whose relative paths (component files) are
/// relative to `base`, its file's directory.
pub fn check(s: &Scenario, base: &std::path::Path) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut ops: Vec<String> = Vec::new();
    for op in &s.workload.operations {
        ops.push(op.name.clone());
        for step in &op.then {
            ops.push(op.step_name(step));
        }
    }
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    let phases: Vec<&str> = s.workload.phases.iter().map(|p| p.name.as_str()).collect();
    check_criteria(&s.slo, s.gate.as_ref(), Some((&ops, &phases)), &mut out);
    crate::faults::check(s, &mut out);
    crate::wiring::check(&s.stack, &mut out);
    crate::profiling::check(s, &mut out);
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

    if s.stack.services.is_empty() && s.stack.external.is_empty() {
        problem(
            vec![k("stack")],
            None,
            "the stack has no services".to_owned(),
            Some(
                "add one under `services:`, e.g. `fabric: { kind: fabric }`, or a base URL under `external:`",
            ),
        );
    }
    for (name, url) in &s.stack.external {
        if !is_name(name) {
            problem(
                vec![k("stack"), k("external")],
                Some(name),
                format!("external service name `{name}` is not a plain name"),
                Some("use letters, digits, `-` and `_`"),
            );
        }
        if s.stack.services.contains_key(name) {
            problem(
                vec![k("stack"), k("external")],
                Some(name),
                format!("`{name}` is both a booted service and an external one"),
                Some("give the external service another name"),
            );
        }
        if let Err((message, hint)) = parse_base_url(url) {
            problem(
                vec![k("stack"), k("external"), k(name)],
                None,
                message,
                Some(&hint),
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
        match (&svc.kind, &svc.command, &svc.image) {
            (Some(_), _, Some(_)) => problem(
                here.clone(),
                Some("image"),
                format!("service `{name}` has both `kind` and `image`"),
                Some(
                    "`kind` services run from Gauntlet's own images; `image` is for services Gauntlet does not ship",
                ),
            ),
            (None, None, Some(_)) if s.stack.runtime == Runtime::Process => problem(
                here.clone(),
                Some("image"),
                format!("service `{name}` has only an `image`, which needs container mode"),
                Some(
                    "set `stack.runtime: containers` (or `--runtime containers`), or add a `command` for process mode",
                ),
            ),
            (Some(_), Some(_), _) => problem(
                here.clone(),
                Some("command"),
                format!("service `{name}` has both `kind` and `command`"),
                Some("keep `kind` to run the bundled service, or `command` to run your own"),
            ),
            (None, None, None) => problem(
                here.clone(),
                None,
                format!("service `{name}` has neither `kind` nor `command`"),
                Some("add `kind: fabric`, or `command: [program, args…]`"),
            ),
            (None, Some(cmd), _) if cmd.is_empty() || cmd[0].is_empty() => problem(
                here.clone(),
                Some("command"),
                format!("service `{name}` has an empty `command`"),
                Some("the first element is the program to run"),
            ),
            _ => {}
        }
        if let Some(path) = &svc.ready_path {
            if let Some(kind) = svc
                .kind
                .filter(|k| matches!(k, ServiceKind::Postgres | ServiceKind::Redis))
            {
                problem(
                    here.clone(),
                    Some("ready_path"),
                    format!(
                        "service `{name}` is `{}`, which does not serve HTTP",
                        kind.name()
                    ),
                    Some(
                        "remove `ready_path`: PostgreSQL is probed with `pg_isready`, Redis with `PING`",
                    ),
                );
            } else if !path.starts_with('/') {
                problem(
                    here.clone(),
                    Some("ready_path"),
                    format!("`ready_path` `{path}` must start with `/`"),
                    Some("e.g. `/ready`"),
                );
            }
        }
        if let Some(cpus) = svc.cpus
            && !(cpus > 0.0 && cpus <= 1024.0)
        {
            problem(
                [here.clone(), vec![k("cpus")]].concat(),
                None,
                format!("`cpus` {cpus} is not a CPU limit"),
                Some("a number of cores above 0, e.g. `0.5` or `2`"),
            );
        }
        if let Some(memory) = svc.memory
            && memory.bytes() < 6 * 1024 * 1024
        {
            problem(
                [here.clone(), vec![k("memory")]].concat(),
                None,
                format!(
                    "`memory` {} bytes is below Docker's minimum of 6MiB",
                    memory.bytes()
                ),
                Some("e.g. `512MiB`"),
            );
        }
        if let Some(disk) = svc.disk
            && disk.bytes() < MIN_DISK
        {
            problem(
                [here.clone(), vec![k("disk")]].concat(),
                None,
                format!(
                    "`disk` {} bytes is too small for a service's data directory (at least 8MiB)",
                    disk.bytes()
                ),
                Some("e.g. `disk: 64MiB`"),
            );
        }
        if svc.port == Some(0) {
            problem(
                [here.clone(), vec![k("port")]].concat(),
                None,
                "`port` 0 is not a port".to_owned(),
                Some("the port the service listens on inside its container, e.g. `8080`"),
            );
        }
        for (volume, path) in &svc.volumes {
            if !is_name(volume) || !path.starts_with('/') {
                problem(
                    [here.clone(), vec![k("volumes")]].concat(),
                    Some(volume),
                    format!("volume `{volume}: {path}` needs a plain name and an absolute path"),
                    Some("e.g. `volumes: { cache: /var/cache/app }`"),
                );
            }
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
    let op_names: Vec<&str> = w.operations.iter().map(|o| o.name.as_str()).collect();
    let mut phase_names = HashSet::new();
    let mut total = 0.0;
    for (i, phase) in w.phases.iter().enumerate() {
        let here = vec![k("workload"), k("phases"), Seg::Index(i)];
        let rate_path = [here.clone(), vec![k("rate")]].concat();
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
        let secs = phase.duration.as_secs_f64();
        if phase.duration.0.is_zero() {
            problem(
                [here.clone(), vec![k("duration")]].concat(),
                None,
                "a phase must last longer than 0s".to_owned(),
                Some("e.g. `10s`"),
            );
        }
        total += secs;
        match (closed, phase.rate, phase.users) {
            (false, Some(rate), None) => {
                let peak = match rate {
                    RateSpec::Constant(r) | RateSpec::Soak(r) => r.0,
                    RateSpec::Ramp { from, to } | RateSpec::Steps { from, to, .. } => {
                        from.0.max(to.0)
                    }
                    RateSpec::Spike { base, burst, .. } => base.0.max(burst.0),
                };
                if peak == 0.0 {
                    problem(
                        rate_path.clone(),
                        None,
                        format!("phase `{}` has a rate of 0/s", phase.name),
                        Some("an open-model phase needs arrivals; give it a rate above 0/s"),
                    );
                }
                match rate {
                    RateSpec::Steps { steps, every, .. } => {
                        if let Some(n) = steps
                            && n < 2
                        {
                            problem(
                                [rate_path.clone(), vec![k("steps")]].concat(),
                                None,
                                format!("`steps: {n}` is not a staircase"),
                                Some("use 2 or more steps, or a constant rate"),
                            );
                        }
                        if let Some(every) = every {
                            let e = every.as_secs_f64();
                            if e <= 0.0 || e >= secs {
                                problem(
                                    [rate_path.clone(), vec![k("every")]].concat(),
                                    None,
                                    format!(
                                        "`every: {every}` must be above 0s and shorter than the phase ({})",
                                        phase.duration
                                    ),
                                    Some("the phase needs at least two steps"),
                                );
                            } else if secs / e > MAX_SEGMENTS {
                                problem(
                                    [rate_path.clone(), vec![k("every")]].concat(),
                                    None,
                                    format!("`every: {every}` makes more than 200000 steps"),
                                    Some("use a longer `every`"),
                                );
                            }
                        }
                    }
                    RateSpec::Spike {
                        every, burst_for, ..
                    } => {
                        let (e, f) = (every.as_secs_f64(), burst_for.as_secs_f64());
                        if e <= 0.0 || e > secs {
                            problem(
                                [rate_path.clone(), vec![k("every")]].concat(),
                                None,
                                format!(
                                    "`every: {every}` must be above 0s and at most the phase's duration ({})",
                                    phase.duration
                                ),
                                Some(
                                    "a burst ends every period; the phase needs at least one period",
                                ),
                            );
                        } else if secs / e > MAX_SEGMENTS {
                            problem(
                                [rate_path.clone(), vec![k("every")]].concat(),
                                None,
                                format!("`every: {every}` makes more than 200000 bursts"),
                                Some("use a longer `every`"),
                            );
                        }
                        if f <= 0.0 || f >= e {
                            problem(
                                [rate_path.clone(), vec![k("for")]].concat(),
                                None,
                                format!(
                                    "a burst `for: {burst_for}` must be above 0s and shorter than `every: {every}`"
                                ),
                                Some("e.g. `every: 30s, for: 2s`"),
                            );
                        }
                    }
                    RateSpec::Soak(_) if secs < MIN_SOAK_SECS && !phase.duration.0.is_zero() => {
                        problem(
                            [here.clone(), vec![k("duration")]].concat(),
                            None,
                            format!("a soak phase lasts at least 1m, not {}", phase.duration),
                            Some(
                                "lengthen the phase, or write a constant rate (`rate: 500/s`) for a short one",
                            ),
                        );
                    }
                    _ => {}
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
                rate_path.clone(),
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
        if phase.mix.is_none()
            && !w.operations.is_empty()
            && w.operations.iter().all(|o| o.weight == 0)
        {
            problem(
                here.clone(),
                None,
                format!(
                    "phase `{}` has no operation to run: every weight is 0",
                    phase.name
                ),
                Some("give the phase a `mix:`, or an operation a weight above 0"),
            );
        }
        if closed && phase.mix.is_some() {
            problem(
                [here.clone(), vec![k("mix")]].concat(),
                None,
                format!(
                    "phase `{}` gives a `mix:`, which the closed model does not use",
                    phase.name
                ),
                Some(
                    "closed-model users pick operations by their `weight`; remove the `mix:`, or use `engine: open`",
                ),
            );
        }
        if let Some(mix) = &phase.mix {
            let mix_path = [here.clone(), vec![k("mix")]].concat();
            for name in mix.keys() {
                if !op_names.contains(&name.as_str()) {
                    let hint = crate::diag::did_you_mean(name, op_names.iter().copied())
                        .map(|m| format!("did you mean `{m}`?"))
                        .unwrap_or_else(|| format!("operations: {}", op_names.join(", ")));
                    problem(
                        mix_path.clone(),
                        Some(name),
                        format!("no operation `{name}` in the workload"),
                        Some(&hint),
                    );
                }
            }
            if mix.values().all(|w| *w == 0) {
                problem(
                    mix_path,
                    None,
                    format!("phase `{}` mixes no operation", phase.name),
                    Some("give at least one operation a weight above 0"),
                );
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
    let mut seen_ops = HashSet::new();
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
        } else if !seen_ops.insert(op.name.as_str()) {
            problem(
                [here.clone(), vec![k("name")]].concat(),
                None,
                format!("operation name `{}` is used twice", op.name),
                Some("operation names must be unique; results are reported per operation"),
            );
        }
        if op.weight == 0 && w.phases.iter().all(|p| p.mix.is_none()) {
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
        check_action(s, &op.action, None, base, &action_path, &mut problem);
        let mut step_names = HashSet::new();
        let mut previous = &op.action;
        for (j, step) in op.then.iter().enumerate() {
            let step_here = [here.clone(), vec![k("then"), Seg::Index(j)]].concat();
            let step_path = [step_here.clone(), vec![k(step.action.key())]].concat();
            if !is_name(&step.name) {
                problem(
                    [step_here.clone(), vec![k("name")]].concat(),
                    None,
                    format!("step name `{}` is not a plain name", step.name),
                    Some("use letters, digits, `-` and `_`"),
                );
            } else if !step_names.insert(step.name.as_str()) {
                problem(
                    step_here.clone(),
                    None,
                    format!(
                        "operation `{}` has two steps named `{}`",
                        op.name, step.name
                    ),
                    Some("name them apart with `name:`; each is recorded as `OPERATION.NAME`"),
                );
            }
            if step.action.service().is_none() && step.action.needs() != op.action.needs() {
                problem(
                    step_path.clone(),
                    None,
                    format!(
                        "step `{}` speaks another protocol than `{}` and names no service",
                        step.name,
                        op.action.key()
                    ),
                    Some(
                        "add `service: NAME` to the step; steps default to the operation's service",
                    ),
                );
            }
            if step.action.service().is_some() {
                check_target(
                    s,
                    step.action.needs(),
                    step.action.service(),
                    &step_path,
                    &mut problem,
                );
            }
            check_action(
                s,
                &step.action,
                Some(previous),
                base,
                &step_path,
                &mut problem,
            );
            previous = &step.action;
        }
    }
    if let Some(setup) = &s.setup.actors {
        actors::check_setup(s, setup, base, &mut problem);
    }
    if let Some(setup) = &s.setup.postgres {
        tracing::check_setup(s, setup, &mut problem);
    }
    out
}

/// How a rule reports: path, key to point at, message, hint.
pub(super) type Report<'a> = dyn FnMut(Vec<Seg>, Option<&str>, String, Option<&str>) + 'a;

/// The rules of one action, by system; `previous` is the step before it in a chain.
fn check_action(
    s: &Scenario,
    action: &Action,
    previous: Option<&Action>,
    base: &std::path::Path,
    path: &[Seg],
    problem: &mut impl FnMut(Vec<Seg>, Option<&str>, String, Option<&str>),
) {
    match action {
        Action::Tracing(a) => tracing::check(
            s,
            a,
            previous.and_then(Action::tracing),
            previous.is_some(),
            path,
            problem,
        ),
        Action::Postgres(q) => tracing::check_postgres(q, path, problem),
        Action::Redis(c) => tracing::check_redis(c, path, problem),
        Action::Fabric(a) => fabric::check(a, previous.and_then(Action::fabric), path, problem),
        Action::Actors(a) => {
            actors::check(a, previous.and_then(Action::actors), base, path, problem)
        }
        Action::Http(h) => http::check(h, path, problem),
        Action::Reflow(a) => reflow::check(a, path, problem),
    }
}

/// A payload of random bytes: at least 1 byte, and `times` of them within `limit`.
pub(super) fn check_payload(
    problem: &mut Report,
    at: Vec<Seg>,
    key: &str,
    p: &Payload,
    times: u64,
    limit: u64,
) {
    if let Payload::Random(dist) = p {
        if dist.min() == 0 {
            problem(
                at,
                None,
                format!("`{key}` must be at least 1B"),
                Some("the fabric refuses empty payloads"),
            );
        } else if dist.max().saturating_mul(times) > limit {
            problem(
                at,
                None,
                format!(
                    "{times} × {} exceeds the {} one request may carry",
                    Size(dist.max()),
                    Size(limit)
                ),
                Some("lower the size (or the batch)"),
            );
        }
    }
}

fn check_target(
    s: &Scenario,
    needs: Option<ServiceKind>,
    named: Option<&str>,
    action_path: &[Seg],
    problem: &mut impl FnMut(Vec<Seg>, Option<&str>, String, Option<&str>),
) {
    match named {
        Some(name) => match s.stack.services.get(name) {
            None if s.stack.external.contains_key(name) => {}
            None => {
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
            Some(_)
                if needs.is_some_and(|n| {
                    crate::wiring::serves_as(&s.stack, name).is_some_and(|k| k != n)
                }) =>
            {
                problem(
                    [action_path.to_vec(), vec![k("service")]].concat(),
                    None,
                    format!(
                        "service `{name}` is not a {} service",
                        needs.map(ServiceKind::name).unwrap_or_default()
                    ),
                    None,
                )
            }
            Some(_) => {}
        },
        None => {
            let candidates = candidates(s, needs);
            if candidates.len() != 1 {
                let what = needs.map(ServiceKind::name).unwrap_or("http");
                problem(
                    action_path.to_vec(),
                    None,
                    format!(
                        "cannot tell which service this {what} operation targets ({} candidates)",
                        candidates.len()
                    ),
                    Some("add `service: NAME` to the operation"),
                );
            }
        }
    }
}

/// Services an action may target when it names none: booted services of
/// the kind it needs (or any command), else the external ones; for `http`,
/// every service.
fn candidates(s: &Scenario, needs: Option<ServiceKind>) -> Vec<&str> {
    let booted: Vec<&str> = s
        .stack
        .services
        .iter()
        .filter(|(name, svc)| {
            needs.is_none()
                || svc.command.is_some()
                || crate::wiring::serves_as(&s.stack, name) == needs
        })
        .map(|(n, _)| n.as_str())
        .collect();
    if needs.is_some() && !booted.is_empty() {
        return booted;
    }
    booted
        .into_iter()
        .chain(s.stack.external.keys().map(String::as_str))
        .collect()
}

/// The service an action targets: the named one, or the only candidate.
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
    match candidates(s, action.needs()).as_slice() {
        [only] => Some(only),
        _ => None,
    }
}
