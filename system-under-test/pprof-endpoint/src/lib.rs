//! `GET /debug/pprof/profile?seconds=N` for the bundled services.
//!
//! A CPU profile taken by pprof-rs while the request waits, answered as a
//! gzipped `profile.proto` (what `go tool pprof`, Pyroscope and Parca read)
//! or, with `&format=flamegraph`, as an SVG flamegraph. `&hz=N` overrides
//! the sampling frequency for one request; `seconds=0` asks whether the
//! profiler is set up and free (204, else 409).
//!
//! A service adds it with the dependency and two lines:
//! `pprof_endpoint::check_env_or_exit("PROGRAM")` in `main` (exit 2 on a
//! bad value) and `.merge(pprof_endpoint::router_from_env())` on its
//! router. The route is always present; while
//! profiling is off (the default) it answers 404 with a hint, so a
//! profiler is never armed unless the operator asked for one.
//!
//! Configuration, from the environment:
//! - `PPROF_ENABLED` — `1`/`true`/`on` to serve profiles (Gauntlet sets it
//!   on every bundled service it starts);
//! - `PPROF_FREQUENCY` — the default sampling frequency in Hz (99; at most
//!   1000).
//!
//! # Unwinding and signal safety
//!
//! pprof-rs samples on `SIGPROF` (`setitimer(ITIMER_PROF)`, so samples are
//! spread over CPU time, not wall time) and unwinds the interrupted thread
//! inside the signal handler. The unwinder is the default one, backtrace-rs
//! over libgcc's `_Unwind_Backtrace` reading `.eh_frame`: it works on the
//! release binaries as built (no frame pointers needed; the workspace's
//! release profile keeps `debug = "line-tables-only"` so frames
//! symbolise). It is not async-signal-safe in general: unwinding a thread
//! interrupted *inside* libgcc's unwinder or the dynamic loader can
//! deadlock on their locks, and a thread interrupted in the vDSO or in
//! libc's assembly has no usable unwind tables. The handler therefore
//! skips any sample whose interrupted instruction lies in `libc`,
//! `libgcc`, `pthread` or `vdso` (`blocklist`, pprof-rs's own advice); the
//! time spent there is not attributed, which under-counts syscalls-heavy
//! code a little but cannot hang a service. The frame-pointer unwinder
//! (pprof-rs's `frame-pointer` feature) is not used: it would need
//! `-C force-frame-pointers=yes` for the whole build *and* a std built
//! with frame pointers, or it walks garbage. Symbolisation (reading
//! DWARF) happens after the profiling window, on a blocking thread, never
//! in the handler; the profiler is released before it, so a profile asked
//! for right after another starts at once (and may show the previous
//! one's symbolisation, `backtrace`/`gimli` frames, when the two overlap).
//!
//! Only one profile is collected at a time (pprof-rs's profiler is one per
//! process): a second request meanwhile answers 409.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
use pprof::protos::Message;
use serde::Deserialize;

/// The route this crate serves.
pub const PATH: &str = "/debug/pprof/profile";
/// The default sampling frequency: 99 Hz, off the beat of 100 Hz timers.
pub const DEFAULT_FREQUENCY: u32 = 99;
/// The highest frequency accepted (`setitimer` resolution bounds it anyway).
pub const MAX_FREQUENCY: u32 = 1000;
/// The longest profile one request may ask for.
pub const MAX_SECONDS: u64 = 600;
/// Libraries whose code a sample is never unwound from (see the crate doc).
pub const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// Whether profiles are served and at what default frequency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub enabled: bool,
    pub frequency: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            frequency: DEFAULT_FREQUENCY,
        }
    }
}

impl Config {
    /// Profiling on, at `frequency` Hz.
    pub fn enabled(frequency: u32) -> Self {
        Config {
            enabled: true,
            frequency,
        }
    }

    /// From `PPROF_ENABLED` and `PPROF_FREQUENCY`. A value that does not
    /// parse is an error naming the variable, for the service to refuse at
    /// start (exit 2) rather than run without the profiler it was asked for.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(
            std::env::var("PPROF_ENABLED").ok().as_deref(),
            std::env::var("PPROF_FREQUENCY").ok().as_deref(),
        )
    }

    /// `from_env` over given values (tests).
    pub fn from_vars(enabled: Option<&str>, frequency: Option<&str>) -> Result<Self, String> {
        let enabled = match enabled.map(str::trim) {
            None | Some("") => false,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "on" | "yes" => true,
                "0" | "false" | "off" | "no" => false,
                _ => {
                    return Err(format!(
                        "PPROF_ENABLED={v:?} is not a boolean (use 1/true/on or 0/false/off)"
                    ));
                }
            },
        };
        let frequency = match frequency.map(str::trim) {
            None | Some("") => DEFAULT_FREQUENCY,
            Some(v) => parse_frequency(v).map_err(|e| format!("PPROF_FREQUENCY={v:?}: {e}"))?,
        };
        Ok(Config { enabled, frequency })
    }
}

fn parse_frequency(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(hz) if (1..=MAX_FREQUENCY).contains(&hz) => Ok(hz),
        _ => Err(format!(
            "the sampling frequency must be an integer from 1 to {MAX_FREQUENCY} Hz"
        )),
    }
}

/// Checks `PPROF_ENABLED` and `PPROF_FREQUENCY` at a service's start:
/// a bad value prints `PROGRAM: invalid configuration: …` and exits 2,
/// as every configuration error of the bundled services does.
pub fn check_env_or_exit(program: &str) {
    if let Err(e) = Config::from_env() {
        eprintln!("{program}: invalid configuration: {e}");
        std::process::exit(2);
    }
}

/// [`router`] with [`Config::from_env`] (off if the environment is bad;
/// [`check_env_or_exit`] refuses that at the start).
pub fn router_from_env<S: Clone + Send + Sync + 'static>() -> Router<S> {
    router(Config::from_env().unwrap_or_default())
}

/// The router serving [`PATH`], to merge into a service's router. With
/// profiling on, pprof-rs's one-time set-up (it resolves a backtrace,
/// loading the binary's debug information: seconds for a debug build) is
/// done at once on a thread of its own, so the first profile asked for
/// starts on time (a request meanwhile answers 409).
pub fn router<S: Clone + Send + Sync + 'static>(config: Config) -> Router<S> {
    if config.enabled
        && let Some(busy) = Busy::take()
    {
        let spawned = std::thread::Builder::new()
            .name("pprof-warm-up".to_owned())
            .spawn(move || {
                let _busy = busy;
                // Started and stopped at once: only the set-up is wanted.
                drop(
                    pprof::ProfilerGuardBuilder::default()
                        .frequency(DEFAULT_FREQUENCY as i32)
                        .blocklist(&BLOCKLIST)
                        .build(),
                );
            });
        // Without the thread the first profile pays the set-up itself.
        drop(spawned);
    }
    Router::new().route(PATH, get(move |q: Query<Params>| profile(config, q.0)))
}

/// The query of one profile request.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    seconds: Option<String>,
    hz: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Proto,
    Flamegraph,
}

static BUSY: AtomicBool = AtomicBool::new(false);

/// Releases [`BUSY`] however the profile ends (also on a panic).
struct Busy;

impl Busy {
    fn take() -> Option<Busy> {
        BUSY.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Busy)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.store(false, Ordering::Release);
    }
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

async fn profile(config: Config, params: Params) -> Response {
    if !config.enabled {
        return (
            StatusCode::NOT_FOUND,
            "profiling is off: start the service with PPROF_ENABLED=1\n",
        )
            .into_response();
    }
    let seconds = match params.seconds.as_deref().map(str::trim) {
        None | Some("") => 30,
        Some(v) => match v.parse::<u64>() {
            Ok(s) if s <= MAX_SECONDS => s,
            _ => {
                return bad_request(format!(
                    "seconds={v:?}: give a whole number of seconds from 1 to {MAX_SECONDS} (0 asks whether the profiler is free)"
                ));
            }
        },
    };
    let hz = match params.hz.as_deref().map(str::trim) {
        None | Some("") => config.frequency,
        Some(v) => match parse_frequency(v) {
            Ok(hz) => hz,
            Err(e) => return bad_request(format!("hz={v:?}: {e}")),
        },
    };
    let format = match params.format.as_deref() {
        None | Some("") | Some("proto") | Some("pprof") => Format::Proto,
        Some("flamegraph") | Some("svg") => Format::Flamegraph,
        Some(other) => {
            return bad_request(format!(
                "format={other:?}: use `proto` (gzipped profile.proto, the default) or `flamegraph`"
            ));
        }
    };
    let Some(busy) = Busy::take() else {
        return (
            StatusCode::CONFLICT,
            "a profile is already being collected (or the profiler is being set up); retry when it ends\n",
        )
            .into_response();
    };
    if seconds == 0 {
        // A probe: the profiler is set up and free.
        drop(busy);
        return StatusCode::NO_CONTENT.into_response();
    }
    let guard = match pprof::ProfilerGuardBuilder::default()
        .frequency(hz as i32)
        .blocklist(&BLOCKLIST)
        .build()
    {
        Ok(g) => g,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start the profiler: {e}\n"),
            )
                .into_response();
        }
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    // The samples are taken unresolved (a copy of the addresses) and the
    // profiler released at once, so a profile asked for right after this
    // one loses no time; symbolising every frame is CPU work, done after,
    // off the runtime.
    let unresolved = guard.report().build_unresolved();
    drop(guard);
    drop(busy);
    let done = tokio::task::spawn_blocking(move || encode(resolve(unresolved?), format)).await;
    match done {
        Ok(Ok((content_type, body))) => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot build the profile: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the profile's task failed: {e}\n"),
        )
            .into_response(),
    }
}

fn resolve(unresolved: pprof::UnresolvedReport) -> pprof::Report {
    let mut data = std::collections::HashMap::with_capacity(unresolved.data.len());
    for (frames, count) in unresolved.data {
        *data.entry(pprof::Frames::from(frames)).or_insert(0) += count;
    }
    pprof::Report {
        data,
        timing: unresolved.timing,
    }
}

fn encode(report: pprof::Report, format: Format) -> pprof::Result<(&'static str, Vec<u8>)> {
    match format {
        Format::Flamegraph => {
            let mut svg = Vec::new();
            report.flamegraph(&mut svg)?;
            Ok(("image/svg+xml", svg))
        }
        Format::Proto => {
            let proto = report.pprof()?.encode_to_vec();
            let mut gz = GzEncoder::new(Vec::with_capacity(proto.len() / 3), Compression::fast());
            gz.write_all(&proto)?;
            Ok(("application/octet-stream", gz.finish()?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_from_the_environment() {
        assert_eq!(Config::from_vars(None, None), Ok(Config::default()));
        assert_eq!(
            Config::from_vars(Some("on"), Some("999")),
            Ok(Config::enabled(999))
        );
        assert_eq!(
            Config::from_vars(Some("0"), Some(" ")),
            Ok(Config::default())
        );
        let e = Config::from_vars(Some("maybe"), None).unwrap_err();
        assert!(e.contains("PPROF_ENABLED"), "{e}");
        let e = Config::from_vars(Some("1"), Some("5000")).unwrap_err();
        assert!(e.contains("PPROF_FREQUENCY") && e.contains("1000"), "{e}");
        assert!(Config::from_vars(Some("1"), Some("0")).is_err());
    }
}
