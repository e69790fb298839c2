//! A test-only knob that makes the fabric slower on purpose, so the release
//! gate's power can be measured (`ci/gate-power.sh`): with
//! `FABRIC_TEST_DELAY_US=N` in the environment, every `/api/*` request is
//! held N µs before it is handled. Delays under 2 ms are CPU work (a spin on
//! the request's worker thread, exact to a few µs — the async timer's
//! millisecond granularity would turn 150 µs into a full millisecond);
//! longer ones sleep. Unset or `0` (the default): no effect and no cost
//! beyond one load of a cached value. Never set it in production; the node
//! logs a warning the first time the delay applies.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Delays shorter than this are spun rather than slept.
const SPIN_BELOW: Duration = Duration::from_millis(2);

/// The environment variable the knob reads once, at the first request.
pub const DELAY_ENV: &str = "FABRIC_TEST_DELAY_US";

fn delay() -> Option<Duration> {
    static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
    *DELAY.get_or_init(|| {
        let us: u64 = std::env::var(DELAY_ENV).ok()?.trim().parse().ok()?;
        (us > 0).then(|| {
            tracing::warn!(
                "{DELAY_ENV}={us}: every /api request is delayed by {us} µs (test-only knob)"
            );
            Duration::from_micros(us)
        })
    })
}

/// Axum middleware applying the delay to `/api/*` requests.
pub async fn apply(req: Request, next: Next) -> Response {
    if let Some(d) = delay()
        && req.uri().path().starts_with("/api/")
    {
        if d < SPIN_BELOW {
            let until = std::time::Instant::now() + d;
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        } else {
            tokio::time::sleep(d).await;
        }
    }
    next.run(req).await
}

/// A second test-only knob, for the chaos checkers' negative tests
/// (`loadgen/cli/tests/chaos.rs`): with `FABRIC_TEST_FAKE_ACKS=KINDS` (a
/// comma-separated subset of `append`, `enqueue`, `kv_put`), every
/// [`FAKE_ACK_EVERY`]th request of each kind named is answered as success
/// **without being applied** — the broken durability a checker must catch:
/// - `append`: the answer carries the next offsets, but nothing is written,
///   so the next append is given the same offsets (a lost acknowledged
///   write, and an offset acknowledged twice);
/// - `enqueue`: the answer carries a job id no job has (never delivered);
/// - `kv_put`: the value is not stored (a stale read after the run).
///
/// Unset (the default): no effect. Never set it outside tests; the node
/// logs a warning when it is read.
pub const FAKE_ACKS_ENV: &str = "FABRIC_TEST_FAKE_ACKS";

/// One request in this many of each kind named is faked.
pub const FAKE_ACK_EVERY: u64 = 5;

/// A kind of write [`FAKE_ACKS_ENV`] can fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeAck {
    Append = 0,
    Enqueue = 1,
    KvPut = 2,
}

impl FakeAck {
    fn name(self) -> &'static str {
        match self {
            FakeAck::Append => "append",
            FakeAck::Enqueue => "enqueue",
            FakeAck::KvPut => "kv_put",
        }
    }
}

struct FakeAcks {
    enabled: [bool; 3],
    seen: [std::sync::atomic::AtomicU64; 3],
}

fn fake_acks() -> Option<&'static FakeAcks> {
    static FAKE: OnceLock<Option<FakeAcks>> = OnceLock::new();
    FAKE.get_or_init(|| {
        let kinds = std::env::var(FAKE_ACKS_ENV).ok()?;
        let mut enabled = [false; 3];
        for kind in [FakeAck::Append, FakeAck::Enqueue, FakeAck::KvPut] {
            enabled[kind as usize] = kinds.split(',').any(|k| k.trim() == kind.name());
        }
        enabled.iter().any(|e| *e).then(|| {
            tracing::warn!(
                "{FAKE_ACKS_ENV}={kinds}: one write in {FAKE_ACK_EVERY} of these kinds is acknowledged but NOT applied (test-only knob)"
            );
            FakeAcks {
                enabled,
                seen: Default::default(),
            }
        })
    })
    .as_ref()
}

/// Whether this request of `kind` is to be acknowledged without being
/// applied (always `false` unless [`FAKE_ACKS_ENV`] names the kind).
pub fn fake_ack(kind: FakeAck) -> bool {
    let Some(fake) = fake_acks() else {
        return false;
    };
    fake.enabled[kind as usize]
        && fake.seen[kind as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % FAKE_ACK_EVERY
            == FAKE_ACK_EVERY - 1
}

/// A job id for a faked enqueue: unique, and never a real job's.
pub fn fake_job_id() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "fake-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// A third test-only knob, for the crash-durability negative tests
/// (`loadgen/cli/tests/chaos.rs`): with `FABRIC_TEST_ACK_BEFORE_WRITE=KINDS`
/// (a comma-separated subset of `append`, `enqueue`, `kv_put`), the logs of
/// every stream (`append`), queue (`enqueue`: all of a queue's records) or
/// KV store (`kv_put`: puts and deletes) acknowledge writes while their
/// records are still in a user-space buffer, written to the file only by
/// the first write at least [`crate::segment_log::HOLD_FOR`] (200 ms) after
/// the oldest buffered record — that write's own records stay buffered — or
/// at a graceful shutdown. While the node lives everything is correct
/// (offsets dense, every acknowledged record readable); a SIGKILL loses
/// the buffered tail, whatever the fsync policy: a realistic durability
/// bug a process kill exposes. Consumer-group offsets are never buffered.
///
/// Unset (the default): no effect and no cost. Never set it outside tests;
/// the node logs a warning when it is read and for each log it affects.
pub const ACK_BEFORE_WRITE_ENV: &str = "FABRIC_TEST_ACK_BEFORE_WRITE";

/// Whether [`ACK_BEFORE_WRITE_ENV`] names `kind` (read once).
pub fn ack_before_write(kind: FakeAck) -> bool {
    static KINDS: OnceLock<[bool; 3]> = OnceLock::new();
    KINDS.get_or_init(|| {
        let mut enabled = [false; 3];
        let Ok(kinds) = std::env::var(ACK_BEFORE_WRITE_ENV) else {
            return enabled;
        };
        for kind in [FakeAck::Append, FakeAck::Enqueue, FakeAck::KvPut] {
            enabled[kind as usize] = kinds.split(',').any(|k| k.trim() == kind.name());
        }
        for unknown in kinds
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty() && !["append", "enqueue", "kv_put"].contains(k))
        {
            tracing::warn!("{ACK_BEFORE_WRITE_ENV}: ignoring unknown kind `{unknown}` (expected append, enqueue, kv_put)");
        }
        if enabled.iter().any(|e| *e) {
            tracing::warn!(
                "{ACK_BEFORE_WRITE_ENV}={kinds}: writes of these kinds are acknowledged before they are written; a kill loses them (test-only knob)"
            );
        }
        enabled
    })[kind as usize]
}
