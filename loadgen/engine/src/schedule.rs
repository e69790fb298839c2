//! The arrival schedule of the open model: a phase's rate as
//! piecewise-linear segments with their cumulative integrals, so arrival
//! `k` of a phase is where the integral of its rate reaches `k` (a binary
//! search over segments, then the closed-form root in one). The count of
//! intended starts in a phase equals the integral of its rate (rounded up),
//! whatever the system under test does.

use std::time::Duration;

/// A stretch of a phase whose rate goes linearly from `from` to `to`
/// (equal for a constant stretch), in seconds from the phase's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub duration: f64,
    pub from: f64,
    pub to: f64,
}

impl Segment {
    pub fn integral(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.duration
    }

    /// Time into the segment at which its rate integral reaches `k` (< its integral).
    fn time_of(&self, k: f64) -> f64 {
        if k <= 0.0 {
            return 0.0;
        }
        let d = self.duration;
        let b = self.from;
        let a = (self.to - self.from) / (2.0 * d);
        // t = 2k / (b + sqrt(b² + 4ak)): the stable root, valid for a ≥ 0 and a < 0.
        let disc = (b * b + 4.0 * a * k).max(0.0);
        let denom = b + disc.sqrt();
        let t = if denom > 0.0 { 2.0 * k / denom } else { d };
        t.min(d)
    }
}

/// A phase placed on the run's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    /// Offset of the phase's start from the run's start.
    pub start: Duration,
    pub duration: Duration,
    /// The rate over the phase, piece by piece.
    pub segments: Vec<Segment>,
    /// Rate integral at the start of each segment (one more entry: the total).
    cumulative: Vec<f64>,
    /// Operation weights in this phase (the phase's `mix`, else the operations' weights).
    pub weights: Vec<u32>,
    /// Closed model: users at the phase's start and end (`None` in the open model).
    pub users: Option<(u32, u32)>,
}

impl Phase {
    pub fn new(name: String, start: Duration, duration: Duration, segments: Vec<Segment>) -> Self {
        let mut cumulative = Vec::with_capacity(segments.len() + 1);
        let mut sum = 0.0;
        cumulative.push(0.0);
        for s in &segments {
            sum += s.integral();
            cumulative.push(sum);
        }
        Self {
            name,
            start,
            duration,
            segments,
            cumulative,
            weights: Vec::new(),
            users: None,
        }
    }

    /// Integral of the rate over the whole phase: the operations it asks for.
    pub fn expected_arrivals(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }

    /// Number of arrivals the schedule produces: those with an offset inside
    /// the phase, which is ⌈integral⌉ up to floating-point rounding (arrival 0
    /// is at t = 0 when the phase starts with a rate above 0).
    pub fn arrival_count(&self) -> u64 {
        let expected = self.expected_arrivals();
        if expected <= 0.0 {
            return 0;
        }
        let mut n = expected.ceil() as u64;
        while n > 0 && self.arrival_offset(n - 1) >= self.duration {
            n -= 1;
        }
        while self.arrival_offset(n) < self.duration {
            n += 1;
        }
        n
    }

    /// Offset, from the phase's start, of arrival `k`: the time at which the
    /// rate's integral equals `k` (the phase's duration when it never does).
    pub fn arrival_offset(&self, k: u64) -> Duration {
        let k = k as f64;
        // The segment whose integral range [cum[j], cum[j+1]) holds k.
        let j = self.cumulative[1..].partition_point(|&c| c <= k);
        let Some(seg) = self.segments.get(j) else {
            return self.duration;
        };
        let t = seg.start + seg.time_of(k - self.cumulative[j]);
        Duration::from_secs_f64(t.max(0.0)).min(self.duration)
    }

    pub fn mean_rate(&self) -> f64 {
        let d = self.duration.as_secs_f64();
        if d > 0.0 {
            self.expected_arrivals() / d
        } else {
            0.0
        }
    }
}
