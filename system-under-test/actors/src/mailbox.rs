//! Bounded mailboxes with whole-batch admission.
//!
//! The bound counts messages, not envelopes. A batch is admitted whole or
//! not at all: `try_admit` reserves its size with one compare-and-swap on
//! the depth, so a refused batch leaves nothing behind (the client's 429
//! `mailbox_full`). A pipeline stage handing a batch on uses `admit`, which
//! waits for room instead (backpressure travels upstream until the first
//! mailbox refuses). A batch larger than the whole mailbox is admitted into
//! an empty one, so a stage can never wait forever.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::message::{Batch, Message};

/// What a component's task receives.
pub enum Envelope {
    Batch(Batch),
    /// A request-response: handled like one message, answered with a reply
    /// (boxed: it is rare next to batches and would double every slot).
    Request(Box<Request>),
    /// Graceful stop: everything queued before it is handled first.
    Stop(tokio::sync::oneshot::Sender<()>),
}

pub struct Request {
    pub message: Message,
    pub reply: tokio::sync::oneshot::Sender<Result<bytes::Bytes, crate::error::ApiError>>,
}

/// A mailbox: a queue under a short lock (it grows with use: an idle
/// component costs a few bytes, not a channel block), a message count for
/// the bound, and two wake-ups — the component's (`ready`, with a stored
/// permit so a push before the wait is never lost) and the stages' waiting
/// for room.
pub struct Mailbox {
    queue: Mutex<Queue>,
    depth: AtomicUsize,
    capacity: usize,
    ready: Notify,
    room: Notify,
}

struct Queue {
    items: VecDeque<Envelope>,
    closed: bool,
}

/// Why a batch was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The batch does not fit now.
    Full,
    /// The component's task ended (stopped or failed).
    Closed,
}

impl Mailbox {
    pub fn new(capacity: usize) -> Mailbox {
        Mailbox {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                closed: false,
            }),
            depth: AtomicUsize::new(0),
            capacity,
            ready: Notify::new(),
            room: Notify::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages queued and not yet taken by the component.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    fn reserve(&self, n: usize, oversize_when_empty: bool) -> bool {
        let mut cur = self.depth.load(Ordering::Relaxed);
        loop {
            let fits = cur + n <= self.capacity || (oversize_when_empty && cur == 0);
            if !fits {
                return false;
            }
            match self.depth.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn push(&self, env: Envelope, n: usize) -> Result<(), (Refused, Envelope)> {
        {
            let mut q = self.queue.lock();
            if q.closed {
                drop(q);
                self.depth.fetch_sub(n, Ordering::AcqRel);
                return Err((Refused::Closed, env));
            }
            q.items.push_back(env);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Admits the whole batch now or refuses it untouched.
    pub fn try_admit(&self, batch: Batch) -> Result<(), (Refused, Batch)> {
        let n = batch.len();
        if !self.reserve(n, false) {
            return Err((Refused::Full, batch));
        }
        self.push(Envelope::Batch(batch), n).map_err(unwrap_batch)
    }

    /// Admits the whole batch, waiting for room (pipeline backpressure).
    pub async fn admit(&self, batch: Batch) -> Result<(), (Refused, Batch)> {
        let n = batch.len();
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.reserve(n, true) {
                break;
            }
            if self.is_closed() {
                return Err((Refused::Closed, batch));
            }
            notified.await;
        }
        self.push(Envelope::Batch(batch), n).map_err(unwrap_batch)
    }

    /// Sends a request or a stop (not counted against the bound).
    pub fn send_control(&self, env: Envelope) -> Result<(), Envelope> {
        self.push(env, 0).map_err(|(_, e)| e)
    }

    /// The next envelope, waiting for one; `None` once closed and empty.
    pub async fn recv(&self) -> Option<Envelope> {
        loop {
            if let Some(env) = self.try_recv() {
                return Some(env);
            }
            if self.queue.lock().closed {
                return None;
            }
            self.ready.notified().await;
        }
    }

    /// The next envelope if one is queued.
    pub fn try_recv(&self) -> Option<Envelope> {
        self.queue.lock().items.pop_front()
    }

    /// Refuses everything from now on (what is queued stays, for `try_recv`).
    pub fn close(&self) {
        self.queue.lock().closed = true;
        self.room.notify_waiters();
    }

    /// The component took `n` messages out of the mailbox.
    pub fn taken(&self, n: usize) {
        self.depth.fetch_sub(n, Ordering::AcqRel);
        self.room.notify_waiters();
    }

    /// Wakes every stage waiting for room (the component ended).
    pub fn wake_all(&self) {
        self.room.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.queue.lock().closed
    }
}

fn unwrap_batch((r, env): (Refused, Envelope)) -> (Refused, Batch) {
    match env {
        Envelope::Batch(b) => (r, b),
        _ => unreachable!("push of a batch returns the batch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    fn batch(n: usize) -> Batch {
        Batch {
            messages: (0..n)
                .map(|_| Message::new(&b"1"[..]))
                .collect::<Vec<_>>()
                .into(),
            done: None,
            enqueued: Instant::now(),
            hops: 0,
        }
    }

    #[test]
    fn a_batch_that_does_not_fit_is_refused_whole() {
        let mb = Mailbox::new(10);
        assert!(mb.try_admit(batch(6)).is_ok());
        let (why, b) = mb.try_admit(batch(5)).unwrap_err();
        assert_eq!(why, Refused::Full);
        assert_eq!(b.len(), 5);
        assert_eq!(mb.depth(), 6);
        assert!(mb.try_admit(batch(4)).is_ok());
        assert_eq!(mb.depth(), 10);
        let Some(Envelope::Batch(b)) = mb.try_recv() else {
            panic!("expected a batch")
        };
        mb.taken(b.len());
        assert_eq!(mb.depth(), 4);
        // Larger than the mailbox: refused for clients.
        assert_eq!(mb.try_admit(batch(11)).unwrap_err().0, Refused::Full);
    }

    #[tokio::test]
    async fn admit_waits_for_room_and_takes_oversize_when_empty() {
        let mb = Arc::new(Mailbox::new(4));
        mb.admit(batch(3)).await.map_err(|_| ()).unwrap();
        let mb2 = mb.clone();
        let waiter = tokio::spawn(async move { mb2.admit(batch(9)).await.is_ok() });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let Some(Envelope::Batch(b)) = mb.recv().await else {
            panic!()
        };
        mb.taken(b.len());
        assert!(waiter.await.unwrap());
        assert_eq!(mb.depth(), 9);
    }

    #[test]
    fn a_closed_mailbox_refuses_and_releases_the_reservation() {
        let mb = Mailbox::new(4);
        mb.close();
        assert_eq!(mb.try_admit(batch(2)).unwrap_err().0, Refused::Closed);
        assert_eq!(mb.depth(), 0);
    }
}
