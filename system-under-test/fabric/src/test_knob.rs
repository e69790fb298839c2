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
