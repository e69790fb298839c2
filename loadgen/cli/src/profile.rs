//! CPU profiles while the load runs (the scenario's `profile:`), and
//! `loadgen profile RUN_DIR`.
//!
//! A service's profiler is one per process (pprof-rs), and a phase's
//! window and a fault's window overlap, so the timeline is cut at every
//! boundary of a profiled phase or fault window (whole seconds from the
//! load's start) into *segments*; each service is asked for one profile
//! per segment, back to back (`GET /debug/pprof/profile?seconds=N&hz=F`,
//! the endpoint every bundled service serves), and `loadgen` profiles
//! itself the same way with pprof-rs in process. A window's profile is
//! the merge of its segments; a phase's leaves out the segments of the
//! fault windows profiled inside it (they have their own), unless nothing
//! else is left. A segment that fails (a service killed by a fault answers
//! nothing) is recorded as an error of its windows, never retried.
//!
//! Output (`gauntlet_recorder::profiles`): `profiles/<service>/<window>.pb.gz`
//! (gzipped profile.proto, merged), `<window>.folded` and
//! `profiles/index.json`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gauntlet_control::Stack;
use gauntlet_drivers::control::HttpClient;
use gauntlet_recorder::profiles::{self, Entry, Folded, Index, WindowKind};
use gauntlet_scenario::{FaultWindow, ProfileSpec, profiling::LOADGEN};
use http_body_util::{BodyExt, Full};
use pprof::protos::{self, Message};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::plan::Plan;

/// One profiled window on the load's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The phase's or fault window's name.
    pub name: String,
    pub kind: WindowKind,
    /// Whole seconds from the load's start.
    pub start: u64,
    pub end: u64,
}

/// A stretch of the timeline profiled by one request, and the windows it
/// counts in.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    pub windows: Vec<usize>,
}

/// A file stem for a window's name (`crash#2` → `crash-2`).
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The windows `spec` asks for, and the segments that cover them.
pub fn timeline(
    plan: &Plan,
    faults: &[FaultWindow],
    spec: &ProfileSpec,
) -> (Vec<Window>, Vec<Segment>) {
    let total = plan.total_duration().as_secs_f64().round() as u64;
    let mut windows = Vec::new();
    for p in &plan.phases {
        if spec.wants_phase(&p.name) {
            let start = p.start.as_secs_f64().round() as u64;
            let end = (p.start + p.duration).as_secs_f64().round() as u64;
            windows.push(Window {
                name: p.name.clone(),
                kind: WindowKind::Phase,
                start,
                end: end.min(total),
            });
        }
    }
    for f in faults {
        let base = f.name.split('#').next().unwrap_or(&f.name);
        if !spec.wants_fault(base, &f.name) {
            continue;
        }
        let start = f.start.as_secs_f64().round() as u64;
        let end = f
            .end
            .map_or(total, |e| e.as_secs_f64().round() as u64)
            .min(total);
        windows.push(Window {
            name: f.name.clone(),
            kind: WindowKind::Fault,
            start,
            end: end.max(start + 1).min(total),
        });
    }
    windows.retain(|w| w.end > w.start);
    let mut cuts: Vec<u64> = windows.iter().flat_map(|w| [w.start, w.end]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut segments = Vec::new();
    for pair in cuts.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        let inside = |w: &Window| w.start <= start && end <= w.end;
        let in_fault = windows
            .iter()
            .any(|w| w.kind == WindowKind::Fault && inside(w));
        let members: Vec<usize> = windows
            .iter()
            .enumerate()
            .filter(|(_, w)| inside(w))
            // A phase leaves out its fault windows (unless they fill it: below).
            .filter(|(_, w)| w.kind == WindowKind::Fault || !in_fault)
            .map(|(i, _)| i)
            .collect();
        if !members.is_empty() {
            segments.push(Segment {
                start,
                end,
                windows: members,
            });
        }
    }
    // A phase covered wholly by fault windows keeps them.
    for (i, w) in windows.iter().enumerate() {
        if w.kind == WindowKind::Phase && !segments.iter().any(|s| s.windows.contains(&i)) {
            for s in segments
                .iter_mut()
                .filter(|s| w.start <= s.start && s.end <= w.end)
            {
                s.windows.push(i);
            }
        }
    }
    (windows, segments)
}

/// Where a service's profiles come from.
#[derive(Clone)]
enum Source {
    /// A service of the stack, asked over HTTP.
    Service(String),
    /// loadgen itself, in process.
    Loadgen,
}

/// What the profilers did.
#[derive(Debug, Default)]
pub struct Profiled {
    pub entries: Vec<Entry>,
    /// Writing the files failed.
    pub write_error: Option<String>,
}

/// Collects every service's profiles over the load's timeline (from
/// `start`; windows and segments from [`timeline`]), then writes them under `run_dir/profiles`. Stops early when
/// `stop` fires, writing what it has.
pub async fn collect(
    (windows, segments): (Vec<Window>, Vec<Segment>),
    spec: ProfileSpec,
    stack: Arc<dyn Stack>,
    run_dir: PathBuf,
    start: Instant,
    stop: CancellationToken,
) -> Profiled {
    let client = gauntlet_drivers::control::http_client(4);
    let mut tasks = Vec::new();
    for name in &spec.services {
        let source = if name == LOADGEN {
            Source::Loadgen
        } else {
            Source::Service(name.clone())
        };
        let hz = spec.frequency;
        let service = name.clone();
        // One task per segment, each started at its segment's start: the
        // previous segment's symbolisation (after its profiler was
        // released) never delays the next.
        let got: Vec<_> = segments
            .iter()
            .cloned()
            .map(|seg| {
                let (source, stack, client, stop) =
                    (source.clone(), stack.clone(), client.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        r = one_segment(&source, &seg, hz, &*stack, &client, start) => Some(r),
                        _ = stop.cancelled() => None,
                    }
                })
            })
            .collect();
        tasks.push((service, got));
    }
    let mut per_service: BTreeMap<String, Vec<Result<protos::Profile, String>>> = BTreeMap::new();
    for (service, segs) in tasks {
        let mut got = Vec::new();
        for task in segs {
            match task.await {
                Ok(Some(r)) => got.push(r),
                // Stopped: this segment and the later ones are missing.
                Ok(None) => break,
                Err(e) => got.push(Err(format!("the segment's task failed: {e}"))),
            }
        }
        per_service.insert(service, got);
    }
    let mut out = Profiled::default();
    for (service, got) in per_service {
        for (wi, w) in windows.iter().enumerate() {
            let mut parts = Vec::new();
            let mut errors = Vec::new();
            for (seg, r) in segments.iter().zip(&got) {
                if !seg.windows.contains(&wi) {
                    continue;
                }
                match r {
                    Ok(p) => parts.push(p),
                    Err(e) => errors.push(format!("{}–{} s: {e}", seg.start, seg.end)),
                }
            }
            let missing = segments
                .iter()
                .skip(got.len())
                .filter(|s| s.windows.contains(&wi))
                .count();
            if missing > 0 {
                errors.push(format!(
                    "{missing} segment(s) not collected: the run stopped"
                ));
            }
            let merged = merge(&parts);
            let folded = fold(&merged);
            let entry = Entry {
                service: service.clone(),
                window: file_stem(&w.name),
                kind: w.kind,
                start_s: w.start as f64,
                end_s: w.end as f64,
                frequency: spec.frequency,
                samples: folded.total(),
                errors,
            };
            if let Err(e) = write_window(&run_dir, &entry, &merged, &folded) {
                out.write_error = Some(format!("writing {}: {e}", entry.proto_path().display()));
            }
            out.entries.push(entry);
        }
    }
    let index = Index {
        profiles: out.entries.clone(),
    };
    let dir = run_dir.join(profiles::DIR);
    if let Err(e) = std::fs::create_dir_all(&dir)
        .and_then(|_| gauntlet_recorder::files::write_json(&dir.join(profiles::INDEX), &index))
    {
        out.write_error = Some(format!("writing profiles/index.json: {e}"));
    }
    out
}

/// How long the profilers may take to be set up before the load starts.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// Waits until every profiled service's profiler is set up and free
/// (`seconds=0` answers 204; pprof-rs's one-time set-up loads the binary's
/// debug information) and sets up loadgen's own, so the first segment
/// starts on time. Called before the load starts, only with `profile:`.
pub async fn wait_ready(spec: &ProfileSpec, stack: &dyn Stack) -> Result<(), String> {
    let client = gauntlet_drivers::control::http_client(1);
    let deadline = Instant::now() + READY_WITHIN;
    for name in &spec.services {
        if name == LOADGEN {
            tokio::task::spawn_blocking(|| {
                // Started and stopped: only pprof-rs's set-up is wanted.
                drop(
                    pprof::ProfilerGuardBuilder::default()
                        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
                        .build(),
                )
            })
            .await
            .map_err(|e| format!("setting up loadgen's profiler: {e}"))?;
            continue;
        }
        loop {
            let url = profile_url(stack, name, "seconds=0")
                .map_err(|e| format!("profiling {name}: {e}"))?;
            match fetch(&client, &url, Duration::from_secs(10)).await {
                Ok(_) => break,
                Err(Refused::Busy) if Instant::now() < deadline => {
                    tokio::time::sleep(BUSY_RETRY).await
                }
                Err(Refused::Busy) => {
                    return Err(format!(
                        "profiling {name}: its profiler was still busy after {} s",
                        READY_WITHIN.as_secs()
                    ));
                }
                Err(Refused::Failed(e)) => {
                    return Err(format!(
                        "profiling {name}: {url}: {e} (a bundled service serves it with PPROF_ENABLED=1)"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `/debug/pprof/profile?QUERY` of service `name` where it is now.
fn profile_url(stack: &dyn Stack, name: &str, query: &str) -> Result<String, String> {
    let ep = stack
        .endpoint(name)
        .map_err(|e| format!("no endpoint: {e}"))?;
    Ok(format!(
        "{}/debug/pprof/profile?{query}",
        ep.base_url().trim_end_matches('/')
    ))
}

/// Why a segment's profile was not taken.
enum Refused {
    /// The profiler is still busy with the previous segment: retry.
    Busy,
    Failed(String),
}

/// How often a busy profiler is asked again.
const BUSY_RETRY: Duration = Duration::from_millis(50);

/// One segment's profile: waits for its start, then profiles to its end
/// (its whole seconds left, at least one), asking again while the
/// previous segment's profiler is still running.
async fn one_segment(
    source: &Source,
    seg: &Segment,
    hz: u32,
    stack: &dyn Stack,
    client: &HttpClient,
    start: Instant,
) -> Result<protos::Profile, String> {
    tokio::time::sleep_until(start + Duration::from_secs(seg.start)).await;
    let end = start + Duration::from_secs(seg.end);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(
                "skipped: the previous segment's profile ran past this one's end".to_owned(),
            );
        }
        // Never past the segment's end (the next one starts there); a
        // quarter second short still counts as the whole second.
        let seconds = (left.as_secs_f64() + 0.25).floor() as u64;
        if seconds == 0 {
            return Err(
                "skipped: less than a second was left after the previous segment's profile"
                    .to_owned(),
            );
        }
        let r = match source {
            Source::Loadgen => profile_self(seconds, hz).await,
            Source::Service(name) => {
                let url = profile_url(stack, name, &format!("seconds={seconds}&hz={hz}"))?;
                match fetch(client, &url, Duration::from_secs(seconds + 30)).await {
                    Ok(gz) => decode_gz(&gz).map_err(Refused::Failed),
                    Err(e) => Err(e),
                }
            }
        };
        match r {
            Ok(p) => return Ok(p),
            Err(Refused::Busy) => tokio::time::sleep(BUSY_RETRY).await,
            Err(Refused::Failed(e)) => return Err(e),
        }
    }
}

async fn fetch(client: &HttpClient, url: &str, within: Duration) -> Result<Bytes, Refused> {
    let request = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| Refused::Failed(format!("bad request {url}: {e}")))?;
    let answer = async {
        let response = client.request(request).await.map_err(|e| {
            Refused::Failed(if e.is_connect() {
                "cannot connect (the service is down?)".to_owned()
            } else {
                format!("request failed: {e}")
            })
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Refused::Failed(format!("reading the answer: {e}")))?
            .to_bytes();
        if status == hyper::StatusCode::CONFLICT {
            return Err(Refused::Busy);
        }
        if !status.is_success() {
            return Err(Refused::Failed(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
            )));
        }
        Ok(body)
    };
    tokio::time::timeout(within, answer)
        .await
        .unwrap_or_else(|_| {
            Err(Refused::Failed(format!(
                "no answer within {} s",
                within.as_secs()
            )))
        })
}

/// loadgen's own profile over `seconds`: the samples copied unresolved and
/// the profiler released at once, then symbolised on a blocking thread.
async fn profile_self(seconds: u64, hz: u32) -> Result<protos::Profile, Refused> {
    let guard = match pprof::ProfilerGuardBuilder::default()
        .frequency(hz as i32)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
    {
        Ok(g) => g,
        // pprof-rs's one profiler is still running the previous segment.
        Err(pprof::Error::Running) | Err(pprof::Error::CreatingError) => {
            return Err(Refused::Busy);
        }
        Err(e) => {
            return Err(Refused::Failed(format!(
                "cannot start loadgen's profiler: {e}"
            )));
        }
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let unresolved = guard.report().build_unresolved();
    drop(guard);
    let unresolved = unresolved.map_err(|e| Refused::Failed(format!("loadgen's profile: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let mut data = std::collections::HashMap::with_capacity(unresolved.data.len());
        for (frames, count) in unresolved.data {
            *data.entry(pprof::Frames::from(frames)).or_insert(0) += count;
        }
        pprof::Report {
            data,
            timing: unresolved.timing,
        }
        .pprof()
        .map_err(|e| Refused::Failed(format!("loadgen's profile: {e}")))
    })
    .await
    .map_err(|e| Refused::Failed(format!("loadgen's profile task: {e}")))?
}

/// A gzipped profile.proto.
pub fn decode_gz(gz: &[u8]) -> Result<protos::Profile, String> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not gzip: {e}"))?;
    protos::Profile::decode(&raw[..]).map_err(|e| format!("not a profile.proto: {e}"))
}

fn string(p: &protos::Profile, i: i64) -> &str {
    p.string_table
        .get(i as usize)
        .map(String::as_str)
        .unwrap_or("?")
}

/// A profile's stacks, root first, with their sample counts (the first
/// value of each sample). A location with inlined functions contributes
/// each, caller first.
pub fn fold(p: &protos::Profile) -> Folded {
    let functions: BTreeMap<u64, &str> = p
        .function
        .iter()
        .map(|f| (f.id, string(p, f.name)))
        .collect();
    let locations: BTreeMap<u64, Vec<&str>> = p
        .location
        .iter()
        .map(|l| {
            let names = l
                .line
                .iter()
                .rev()
                .map(|line| functions.get(&line.function_id).copied().unwrap_or("?"))
                .collect();
            (l.id, names)
        })
        .collect();
    let mut folded = Folded::default();
    for s in &p.sample {
        let count = s.value.first().copied().unwrap_or(0).max(0) as u64;
        let mut stack = Vec::new();
        for id in s.location_id.iter().rev() {
            match locations.get(id) {
                Some(names) => stack.extend(names.iter().map(|n| (*n).to_owned())),
                None => stack.push(format!("0x{id:x}")),
            }
        }
        if !stack.is_empty() {
            folded.add(stack, count);
        }
    }
    folded
}

/// Several profiles as one: samples of the same stack added, functions
/// and locations re-interned, the period and sample types of the first.
pub fn merge(parts: &[&protos::Profile]) -> protos::Profile {
    let mut out = protos::Profile {
        string_table: vec![String::new()],
        ..Default::default()
    };
    let mut strings: BTreeMap<String, i64> = BTreeMap::new();
    strings.insert(String::new(), 0);
    let mut intern = |out: &mut protos::Profile, s: &str| -> i64 {
        if let Some(i) = strings.get(s) {
            return *i;
        }
        let i = out.string_table.len() as i64;
        out.string_table.push(s.to_owned());
        strings.insert(s.to_owned(), i);
        i
    };
    let Some(first) = parts.first() else {
        return out;
    };
    for vt in &first.sample_type {
        let ty = intern(&mut out, string(first, vt.ty));
        let unit = intern(&mut out, string(first, vt.unit));
        out.sample_type.push(protos::ValueType { ty, unit });
    }
    if let Some(pt) = &first.period_type {
        let ty = intern(&mut out, string(first, pt.ty));
        let unit = intern(&mut out, string(first, pt.unit));
        out.period_type = Some(protos::ValueType { ty, unit });
    }
    out.period = first.period;
    out.time_nanos = parts.iter().map(|p| p.time_nanos).min().unwrap_or(0);
    out.duration_nanos = parts.iter().map(|p| p.duration_nanos).sum();
    // One function and one location per (name, file); samples by stack.
    let mut funcs: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    let mut samples: BTreeMap<Vec<u64>, Vec<i64>> = BTreeMap::new();
    for p in parts {
        let fmap: BTreeMap<u64, &protos::Function> = p.function.iter().map(|f| (f.id, f)).collect();
        let lmap: BTreeMap<u64, &protos::Location> = p.location.iter().map(|l| (l.id, l)).collect();
        for s in &p.sample {
            let mut ids = Vec::new();
            for lid in &s.location_id {
                let Some(loc) = lmap.get(lid) else { continue };
                // Inlined lines become frames of their own, innermost first.
                for line in &loc.line {
                    let Some(f) = fmap.get(&line.function_id) else {
                        continue;
                    };
                    let name = intern(&mut out, string(p, f.name));
                    let file = intern(&mut out, string(p, f.filename));
                    let next = funcs.len() as u64 + 1;
                    let id = *funcs.entry((name, file)).or_insert_with(|| {
                        let system_name = name;
                        out.function.push(protos::Function {
                            id: next,
                            name,
                            system_name,
                            filename: file,
                            ..Default::default()
                        });
                        out.location.push(protos::Location {
                            id: next,
                            line: vec![protos::Line {
                                function_id: next,
                                line: 0,
                            }],
                            ..Default::default()
                        });
                        next
                    });
                    ids.push(id);
                }
            }
            let sum = samples.entry(ids).or_insert_with(|| vec![0; s.value.len()]);
            for (a, v) in sum.iter_mut().zip(&s.value) {
                *a += v;
            }
        }
    }
    for (location_id, value) in samples {
        out.sample.push(protos::Sample {
            location_id,
            value,
            ..Default::default()
        });
    }
    out
}

fn write_window(
    run_dir: &Path,
    entry: &Entry,
    merged: &protos::Profile,
    folded: &Folded,
) -> std::io::Result<()> {
    let proto = run_dir.join(entry.proto_path());
    if let Some(dir) = proto.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&merged.encode_to_vec())?;
    gauntlet_recorder::files::write_atomic(&proto, &gz.finish()?)?;
    gauntlet_recorder::files::write_atomic(
        &run_dir.join(entry.folded_path()),
        folded.to_text().as_bytes(),
    )
}

/// `loadgen profile RUN_DIR [--export DIR] [--top N]`: lists the run's
/// profiles (and each one's top functions with `--top`), and copies them
/// to DIR with `--export` (`<service>-<window>.pb.gz` and `.folded`).
pub fn command(run_dir: &Path, export: Option<&Path>, top: usize) -> Result<(), String> {
    let index = profiles::read_index(run_dir)
        .map_err(|e| format!("reading the profiles of {}: {e}", run_dir.display()))?
        .ok_or_else(|| {
            format!(
                "{} has no profiles/index.json: the scenario had no `profile:` section (add one, e.g. `profile: {{ services: [fabric] }}`)",
                run_dir.display()
            )
        })?;
    println!(
        "{:<16} {:<24} {:<6} {:>13} {:>8}  file",
        "service", "window", "kind", "seconds", "samples"
    );
    for e in &index.profiles {
        let kind = match e.kind {
            WindowKind::Phase => "phase",
            WindowKind::Fault => "fault",
        };
        println!(
            "{:<16} {:<24} {:<6} {:>13} {:>8}  {}",
            e.service,
            e.window,
            kind,
            format!("{:.0}–{:.0}", e.start_s, e.end_s),
            e.samples,
            e.proto_path().display()
        );
        for err in &e.errors {
            println!("    ! {err}");
        }
        if top > 0 {
            let text = std::fs::read_to_string(run_dir.join(e.folded_path()))
                .map_err(|err| format!("{}: {err}", e.folded_path().display()))?;
            let folded = Folded::parse(&text)
                .map_err(|err| format!("{}: {err}", e.folded_path().display()))?;
            let total = folded.total().max(1) as f64;
            for f in folded.top_self(top) {
                println!(
                    "    {:>5.1}% self {:>5.1}% total  {}",
                    100.0 * f.self_samples as f64 / total,
                    100.0 * f.total_samples as f64 / total,
                    f.name
                );
            }
        }
    }
    if let Some(dir) = export {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut n = 0;
        for e in &index.profiles {
            for (from, ext) in [(e.proto_path(), "pb.gz"), (e.folded_path(), "folded")] {
                let to = dir.join(format!("{}-{}.{ext}", e.service, e.window));
                std::fs::copy(run_dir.join(&from), &to).map_err(|err| {
                    format!("copying {} to {}: {err}", from.display(), to.display())
                })?;
                n += 1;
            }
        }
        println!("exported {n} files to {}", dir.display());
    }
    Ok(())
}
