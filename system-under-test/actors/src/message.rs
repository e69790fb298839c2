//! Messages, batches and completions.
//!
//! A client's batch travels as one unit: an `Arc<[Message]>` moves from
//! mailbox to mailbox along a pipeline and is shared (not copied) by every
//! subscriber of a topic, while each message is still handled one by one by
//! each component's behaviour. The batch carries a [`Completion`]: the count
//! of deliveries still owed to the end of their paths (a sink, a counter,
//! an echo, every subscriber of a topic). The client's answer is sent when
//! that count reaches zero, so a 200 means *handled*, never merely queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::ApiError;

/// One message: an optional key and an opaque payload (a JSON value's text
/// for JSON batches, raw bytes for octet-stream batches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub key: Option<Bytes>,
    pub payload: Bytes,
}

impl Message {
    pub fn new(payload: impl Into<Bytes>) -> Message {
        Message {
            key: None,
            payload: payload.into(),
        }
    }
    pub fn keyed(key: impl Into<Bytes>, payload: impl Into<Bytes>) -> Message {
        Message {
            key: Some(key.into()),
            payload: payload.into(),
        }
    }
}

/// A batch in a mailbox.
pub struct Batch {
    pub messages: Arc<[Message]>,
    /// Who waits for the batch to be handled (absent for `wait=queued`).
    pub done: Option<Arc<Completion>>,
    /// When the batch entered the first mailbox (for `message_latency_seconds`).
    pub enqueued: Instant,
    /// Components the batch passed through (a backstop against loops).
    pub hops: u8,
}

/// The most components one batch may pass through.
pub const MAX_HOPS: u8 = 64;

impl Batch {
    pub fn len(&self) -> usize {
        self.messages.len()
    }
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// What a completed batch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Deliveries handled at the end of their path.
    pub delivered: u64,
    /// Deliveries that failed (a panic, a refused effect, an unknown stage).
    pub failed: u64,
    /// The first failure, when any.
    pub error: Option<ApiError>,
}

/// The deliveries a batch still owes; answers its waiter at zero.
pub struct Completion {
    pending: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    error: Mutex<Option<ApiError>>,
    /// Set when nothing is owed any more; `notify` wakes the one waiter
    /// (its stored permit covers a completion before the wait).
    done: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl Completion {
    /// A completion owing `deliveries` (one allocation: no channel).
    pub fn new(deliveries: u64) -> Arc<Completion> {
        let c = Arc::new(Completion {
            pending: AtomicU64::new(deliveries),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            error: Mutex::new(None),
            done: std::sync::atomic::AtomicBool::new(false),
            notify: Notify::new(),
        });
        if deliveries == 0 {
            c.fire();
        }
        c
    }

    /// Whether every delivery settled.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Waits until every delivery settled (one waiter).
    pub async fn wait(&self) {
        while !self.is_done() {
            self.notify.notified().await;
        }
    }

    /// More deliveries are owed (a topic fans a batch out to k subscribers:
    /// `n × (k − 1)` more). Called before the deliveries can complete.
    pub fn owe(&self, more: u64) {
        self.pending.fetch_add(more, Ordering::AcqRel);
    }

    /// `n` deliveries were handled at the end of their path.
    pub fn delivered(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.delivered.fetch_add(n, Ordering::Relaxed);
        self.settle(n);
    }

    /// `n` deliveries failed with `error`.
    pub fn failed(&self, n: u64, error: &ApiError) {
        if n == 0 {
            return;
        }
        self.failed.fetch_add(n, Ordering::Relaxed);
        {
            let mut e = self.error.lock();
            if e.is_none() {
                *e = Some(error.clone());
            }
        }
        self.settle(n);
    }

    /// `n` deliveries owed to a topic without subscribers: settled,
    /// delivered nowhere.
    pub fn absorbed(&self, n: u64) {
        if n > 0 {
            self.settle(n);
        }
    }

    fn settle(&self, n: u64) {
        if self.pending.fetch_sub(n, Ordering::AcqRel) == n {
            self.fire();
        }
    }

    fn fire(&self) {
        self.done.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// The outcome (meaningful once the receiver fired).
    pub fn outcome(&self) -> Outcome {
        Outcome {
            delivered: self.delivered.load(Ordering::Acquire),
            failed: self.failed.load(Ordering::Acquire),
            error: self.error.lock().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_fires_once_every_delivery_settled() {
        let c = Completion::new(3);
        c.delivered(1);
        assert!(!c.is_done());
        c.owe(2);
        c.delivered(2);
        assert!(!c.is_done());
        c.failed(2, &ApiError::invalid("x"));
        assert!(c.is_done());
        let o = c.outcome();
        assert_eq!((o.delivered, o.failed), (3, 2));
        assert!(o.error.is_some());
    }

    #[test]
    fn empty_completion_fires_at_once() {
        let c = Completion::new(0);
        assert!(c.is_done());
    }
}
