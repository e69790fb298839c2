//! The circuit breaker of one peer (seed 004's pattern): closed → open
//! after `failures` consecutive failures; while open, sends fail fast;
//! after `open_for`, half-open: one probe (a connection and a ping) either
//! closes it or opens it again.
//!
//! Failures are the link's: a connection refused or timed out, a probe or
//! heartbeat unanswered within the heartbeat timeout, a connection lost.
//! Any answered probe, heartbeat or delivery is a success.

use std::time::{Duration, Instant};

/// A breaker's state (`cluster_breaker_state`: 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half_open",
            State::Open => "open",
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: State,
    consecutive: u32,
    opened_at: Option<Instant>,
    pub opened: u64,
    pub closed: u64,
}

/// What a recorded outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    Opened,
    Closed,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            state: State::Closed,
            consecutive: 0,
            opened_at: None,
            opened: 0,
            closed: 0,
        }
    }

    /// The state now (an open breaker whose time is up is half-open).
    pub fn state(&mut self, now: Instant) -> State {
        if self.state == State::Open
            && self
                .opened_at
                .is_some_and(|t| now.duration_since(t) >= self.open_for)
        {
            self.state = State::HalfOpen;
        }
        self.state
    }

    /// How long until an open breaker lets a probe through.
    pub fn wait(&self, now: Instant) -> Duration {
        match (self.state, self.opened_at) {
            (State::Open, Some(t)) => self.open_for.saturating_sub(now.duration_since(t)),
            _ => Duration::ZERO,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    pub fn failure(&mut self, now: Instant) -> Change {
        self.consecutive = self.consecutive.saturating_add(1);
        match self.state(now) {
            State::Closed if self.consecutive >= self.threshold => self.open(now),
            // The probe failed: open again for another `open_for`.
            State::HalfOpen => self.open(now),
            _ => Change::None,
        }
    }

    pub fn success(&mut self, now: Instant) -> Change {
        self.consecutive = 0;
        match self.state(now) {
            State::HalfOpen | State::Open => {
                self.state = State::Closed;
                self.opened_at = None;
                self.closed += 1;
                Change::Closed
            }
            State::Closed => Change::None,
        }
    }

    fn open(&mut self, now: Instant) -> Change {
        self.state = State::Open;
        self.opened_at = Some(now);
        self.opened += 1;
        Change::Opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_the_threshold_probes_after_the_wait_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(5));
        assert_eq!(b.failure(t0), Change::None);
        assert_eq!(b.failure(t0), Change::None);
        assert_eq!(b.state(t0), State::Closed);
        assert_eq!(b.failure(t0), Change::Opened);
        assert_eq!(b.state(t0 + Duration::from_secs(4)), State::Open);
        assert_eq!(b.wait(t0 + Duration::from_secs(4)), Duration::from_secs(1));
        assert_eq!(b.state(t0 + Duration::from_secs(5)), State::HalfOpen);
        // A failed probe opens it again for a whole `open_for`.
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(b.failure(t1), Change::Opened);
        assert_eq!(b.state(t1 + Duration::from_secs(4)), State::Open);
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(b.state(t2), State::HalfOpen);
        assert_eq!(b.success(t2), Change::Closed);
        assert_eq!(b.state(t2), State::Closed);
        assert_eq!((b.opened, b.closed), (2, 1));
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        b.failure(t0);
        b.success(t0);
        assert_eq!(b.failure(t0), Change::None);
        assert_eq!(b.consecutive_failures(), 1);
    }
}
