//! Gauntlet's scenario format, v1: what a user writes, parsed strictly.
//!
//! This crate owns the serde types of a scenario ([`Scenario`]), the strict
//! units ([`Duration`], [`Rate`], [`Size`]), the JSON Schema generated from
//! those same types ([`json_schema`]) and the diagnostics that point at the
//! exact `file:line:col` of every mistake. It never boots anything, never
//! touches the network and never knows how a run is executed.
//!
//! Loading is three steps: the YAML becomes a tree that remembers positions
//! ([`tree`]), `${NAME}` replaced from the environment; `--set` overrides edit that tree; serde deserialises it, and
//! each error serde reports is mapped back to a position. To report *all*
//! mistakes rather than the first, the offending entry is set aside and
//! deserialisation is retried (bounded), then the semantic rules run
//! ([`validate`]).

pub mod catalog;
pub mod data;
pub mod diag;
pub mod faults;
pub mod gate;
pub mod model;
pub mod profiling;
pub mod setup;
pub mod tree;
pub mod units;
mod validate;
pub mod wiring;

pub use validate::{BaseUrl, is_component_name, parse_base_url, target_service};

use std::path::Path;

pub use catalog::*;
pub use data::{Body, KeyDistribution, KeySpec, Payload, SizeDist};
pub use diag::Diagnostic;
pub use faults::{CheckName, FaultAction, FaultSpec, FaultWindow, LinkAction, LinkStream, Target};
pub use gate::{GateSpec, MaxPercent, MinRate, Percent, Profile, Slo, Tolerance, Tolerances};
pub use model::*;
pub use profiling::ProfileSpec;
pub use units::{Duration, Rate, Size, UnitError};

use tree::{Node, Pos, Seg};

/// Most distinct structural errors collected from one file.
const MAX_ERRORS: usize = 50;

/// Parses, overrides and validates a scenario. `file` names the source in
/// diagnostics; `${NAME}` is taken from the process environment.
/// Relative paths in it (component files) are relative to the working directory.
pub fn load(file: &str, text: &str, overrides: &[String]) -> Result<Scenario, Vec<Diagnostic>> {
    load_with_env(file, text, overrides, &|name| std::env::var(name).ok())
}

/// [`load`] with the environment given as a lookup (`${NAME}`, `${NAME:-default}`).
pub fn load_with_env(
    file: &str,
    text: &str,
    overrides: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Scenario, Vec<Diagnostic>> {
    load_at(file, text, overrides, env, Path::new("."))
}

/// [`load_with_env`] with relative paths (component files) resolved
/// against `base`; they are made absolute in the scenario returned, so its
/// resolved copy loads from anywhere.
fn load_at(
    file: &str,
    text: &str,
    overrides: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    base: &Path,
) -> Result<Scenario, Vec<Diagnostic>> {
    let mut scenario = load_document(
        file,
        text,
        overrides,
        env,
        "a scenario is a mapping with `name`, `stack` and `workload`",
        &|s: &Scenario| validate::check(s, base),
    )?;
    resolve_files(&mut scenario, base);
    Ok(scenario)
}

/// Makes every component file path absolute (they were checked to exist).
fn resolve_files(s: &mut Scenario, base: &Path) {
    let absolute = |file: &mut Option<String>| {
        if let Some(f) = file {
            let full = base.join(&*f);
            *f = std::fs::canonicalize(&full)
                .unwrap_or(full)
                .display()
                .to_string();
        }
    };
    let actions = s.workload.operations.iter_mut().flat_map(|o| {
        std::iter::once(&mut o.action).chain(o.then.iter_mut().map(|t| &mut t.action))
    });
    for action in actions {
        if let Action::Actors(ActorsAction::Spawn(spawn)) = action {
            absolute(&mut spawn.component.file);
        }
    }
    if let Some(setup) = &mut s.setup.actors {
        for c in &mut setup.components {
            absolute(&mut c.file);
        }
        for p in &mut setup.pipelines {
            for stage in &mut p.stages {
                absolute(&mut stage.file);
            }
        }
    }
}

/// Parses and validates a gate profile (`slo:` and `gate:` sections).
pub fn load_profile(file: &str, text: &str) -> Result<Profile, Vec<Diagnostic>> {
    load_document(
        file,
        text,
        &[],
        &|name| std::env::var(name).ok(),
        "a gate profile is a mapping with `slo` and/or `gate`",
        &validate::check_profile,
    )
}

/// Reads and loads a gate profile file.
pub fn load_profile_file(path: &Path) -> Result<Profile, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![unreadable(&file, "profile", &e, "check the profile's path")])?;
    load_profile(&file, &text)
}

fn unreadable(file: &str, what: &str, e: &std::io::Error, hint: &str) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        pos: Pos::At { line: 1, col: 1 },
        message: format!("cannot read the {what}: {e}"),
        hint: Some(hint.to_owned()),
        source_line: None,
    }
}

/// The shared loading pipeline: YAML tree, overrides, serde with every
/// structural error collected, then the semantic `check`.
fn load_document<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    overrides: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    shape: &str,
    check: &dyn Fn(&T) -> Vec<validate::Problem>,
) -> Result<T, Vec<Diagnostic>> {
    let lines: Vec<&str> = text.lines().collect();
    let diagnostic = |pos: Pos, message: String, hint: Option<String>| {
        let source_line = match &pos {
            Pos::At { line, .. } => lines.get(line.saturating_sub(1)).map(|l| (*l).to_owned()),
            Pos::Override(_) => None,
        };
        Diagnostic {
            file: file.to_owned(),
            pos,
            message,
            hint,
            source_line,
        }
    };

    let mut root =
        tree::parse_with_env(text, env).map_err(|e| vec![diagnostic(e.pos, e.message, e.hint)])?;
    if !matches!(root.value, tree::Value::Map(_)) {
        return Err(vec![diagnostic(
            root.pos.clone(),
            shape.to_owned(),
            Some("start from `loadgen schema` or scenarios/smoke.yaml".to_owned()),
        )]);
    }
    for assignment in overrides {
        root.set(assignment)
            .map_err(|e| vec![diagnostic(e.pos, e.message, e.hint)])?;
    }

    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut removed: Vec<Vec<Seg>> = Vec::new();
    for _ in 0..MAX_ERRORS {
        let json = root.to_json();
        match serde_path_to_error::deserialize::<_, T>(&json) {
            Ok(document) if errors.is_empty() => {
                let problems = check(&document);
                if problems.is_empty() {
                    return Ok(document);
                }
                return Err(problems
                    .into_iter()
                    .map(|p| {
                        let pos = locate(&root, &p.path, p.key.as_deref());
                        diagnostic(pos, p.message, p.hint)
                    })
                    .collect());
            }
            Ok(_) => break,
            Err(err) => {
                let path = convert_path(err.path());
                let raw = err.inner().to_string();
                if let Some(field) = raw
                    .strip_prefix("missing field `")
                    .and_then(|r| r.split('`').next())
                {
                    let mut full = path.clone();
                    full.push(Seg::Key(field.to_owned()));
                    if removed.contains(&full) {
                        // A follow-on of an entry set aside for an earlier error.
                        break;
                    }
                }
                match explain(&root, &path, &raw) {
                    Some((pos, message, hint, remove)) => {
                        errors.push(diagnostic(pos, message, hint));
                        removed.push(remove.clone());
                        if !set_aside(&mut root, &remove) {
                            break;
                        }
                    }
                    None => break,
                }
            }
        }
    }
    Err(errors)
}

/// Reads and loads a scenario file.
pub fn load_file(path: &Path, overrides: &[String]) -> Result<Scenario, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![unreadable(
            &file,
            "scenario",
            &e,
            "check the path; `loadgen run` with no file runs scenarios/smoke.yaml",
        )]
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    load_at(
        &file,
        &text,
        overrides,
        &|name| std::env::var(name).ok(),
        base,
    )
}

/// The scenario as a resolved YAML document (every default written out).
pub fn to_yaml(scenario: &Scenario) -> String {
    let json = serde_json::to_value(scenario).unwrap_or_default();
    tree::json_to_yaml(&json)
}

/// The JSON Schema of the format, generated from the serde types.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Scenario);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

fn convert_path(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|seg| match seg {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

fn locate(root: &Node, path: &[Seg], key: Option<&str>) -> Pos {
    if let Some(key) = key
        && let Some(k) = root.find_key(path, key)
    {
        return k.pos.clone();
    }
    root.find(path).0.pos.clone()
}

/// "did you mean `x`?" when a candidate is close, else the list of candidates.
fn suggest(suggestion: Option<&str>, candidates: &[String]) -> Option<String> {
    match suggestion {
        Some(s) => Some(format!("did you mean `{s}`?")),
        None if !candidates.is_empty() => Some(format!(
            "expected one of {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => None,
    }
}

/// Turns a serde error at `path` into (position, message, hint, what to set aside).
fn explain(
    root: &Node,
    path: &[Seg],
    raw: &str,
) -> Option<(Pos, String, Option<String>, Vec<Seg>)> {
    let (raw, hint) = diag::split_hint(raw);
    let (message, candidates) = diag::split_expected(&raw);
    let quoted = |s: &str| s.split('`').nth(1).map(str::to_owned);

    if let Some(rest) = message.strip_prefix("unknown field ") {
        // serde reports an unknown key with the path of its mapping (or of the key).
        let field = quoted(rest).unwrap_or_default();
        let (map_path, key_node) = match root.find_key(path, &field) {
            Some(k) => (path.to_vec(), k),
            None => {
                let parent = &path[..path.len().saturating_sub(1)];
                (parent.to_vec(), root.find_key(parent, &field)?)
            }
        };
        let suggestion = diag::did_you_mean(&field, candidates.iter().map(String::as_str));
        let hint = suggest(suggestion, &candidates).or(hint);
        let mut remove = map_path.clone();
        remove.push(Seg::Key(field.clone()));
        // A likely typo: go on as if the suggested key had been written, so
        // its value is still checked and no "missing key" follows.
        if let Some(s) = suggestion
            && root.find_key(&map_path, s).is_none()
        {
            remove.push(Seg::Key(format!("{RENAME}{s}")));
        }
        return Some((
            key_node.pos.clone(),
            format!("unknown key `{field}`"),
            hint,
            remove,
        ));
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let variant = quoted(rest).unwrap_or_default();
        let suggestion = diag::did_you_mean(&variant, candidates.iter().map(String::as_str));
        let hint = suggest(suggestion, &candidates);
        return Some((
            root.find(path).0.pos.clone(),
            format!("unknown value `{variant}`"),
            hint,
            set_aside_target(root, path),
        ));
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let field = quoted(rest).unwrap_or_default();
        let node = root.find(path).0;
        return Some((
            node.pos.clone(),
            format!("missing key `{field}`"),
            Some(hint.unwrap_or_else(|| format!("add `{field}:` here"))),
            set_aside_target(root, path),
        ));
    }
    let (node, _) = root.find(path);
    let message = message
        .replace("invalid type: ", "wrong type: ")
        .replace("string \"", "`")
        .replace("\", expected", "`, expected");
    Some((
        node.pos.clone(),
        message,
        hint,
        set_aside_target(root, path),
    ))
}

/// What to remove so deserialisation can go on past an error at `path`:
/// the innermost list element holding it, else the entry itself.
fn set_aside_target(root: &Node, path: &[Seg]) -> Vec<Seg> {
    let _ = root;
    match path.iter().rposition(|s| matches!(s, Seg::Index(_))) {
        Some(i) => path[..=i].to_vec(),
        None => path.to_vec(),
    }
}

/// Marks, as the last segment of a set-aside path, a rename instead of a removal.
const RENAME: &str = "\u{0}rename:";

fn set_aside(root: &mut Node, path: &[Seg]) -> bool {
    if let [parent @ .., Seg::Key(old), Seg::Key(new)] = path
        && let Some(new) = new.strip_prefix(RENAME)
    {
        if let Some(Node {
            value: tree::Value::Map(entries),
            ..
        }) = root.find_mut(parent)
            && let Some((key, _)) = entries.iter_mut().find(|(k, _)| k.key_text() == *old)
        {
            key.value = tree::Value::Str(new.to_owned());
            return true;
        }
        return false;
    }
    // Removing a required top-level entry would only produce a follow-on
    // "missing key" error; stop there instead.
    if let [Seg::Key(key)] = path
        && ["name", "stack", "workload"].contains(&key.as_str())
    {
        return false;
    }
    if path.is_empty() {
        return false;
    }
    root.remove(path)
}

#[cfg(test)]
mod tests;
