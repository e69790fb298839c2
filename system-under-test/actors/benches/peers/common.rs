//! Shared constants, runtime and completion signal used by every peer.
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

/// Row 3 (batched): messages per iteration; report time / ROUTING_BATCH.
pub const ROUTING_BATCH: u64 = 1000;
/// Row 5: subscribers per publish.
pub const FANOUT: usize = 100;
/// Row 6: messages per iteration through the 3-stage pipeline.
pub const PIPELINE_N: u64 = 100_000;
/// Row 6 (batched variant): messages per batch (one actor message = Vec of this many).
pub const PIPELINE_BATCH: usize = 1000;
/// Row 7: number of named live actors in the registry during the lookups.
pub const REGISTRY_SIZE: usize = 1000;

/// Completion signal: handlers call `add`, the measuring task `wait`s until the
/// count reaches the target it announced with `expect` *before* sending work.
pub struct Progress {
    count: AtomicU64,
    target: AtomicU64,
    notify: Notify,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            count: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            notify: Notify::new(),
        })
    }

    /// Announce that we will wait for `more` additional handled units. Returns the new target.
    pub fn expect(&self, more: u64) -> u64 {
        let t = self.count.load(SeqCst) + more;
        self.target.store(t, SeqCst);
        t
    }

    /// Called by a handler once it has handled `k` units.
    #[inline]
    pub fn add(&self, k: u64) {
        let c = self.count.fetch_add(k, SeqCst) + k;
        if c >= self.target.load(SeqCst) {
            self.notify.notify_one();
        }
    }

    /// Wait until `target` units have been handled.
    pub async fn wait(&self, target: u64) {
        loop {
            if self.count.load(SeqCst) >= target {
                return;
            }
            self.notify.notified().await;
        }
    }
}

/// The tokio runtime used by the ractor and kameo peers: multi-thread, 2 workers.
pub fn tokio_rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Run a measuring future as a task *on* the 2-worker runtime (so the sender is
/// a runtime task like any actor, not a third thread) and return its result.
pub fn run_tokio<F>(f: F) -> Duration
where
    F: Future<Output = Duration> + Send + 'static,
{
    let rt = tokio_rt();
    rt.block_on(rt.spawn(f)).expect("measuring task panicked")
}

/// Panic on a failed send without requiring `Debug` on the error/message type.
#[inline]
pub fn ok<T, E>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(_) => panic!("actor send/ask failed"),
    }
}
