//! Connections of a system that speaks its own protocol (PostgreSQL,
//! Redis), one request in flight per connection: each engine runtime gets
//! a pool of its own (connections belong to the runtime that opened them),
//! at most `max` connections each; more requests wait for a permit.

use std::sync::{Arc, Mutex};

use gauntlet_engine::Connections;

/// One runtime's connections of one operation.
pub struct Pool<C> {
    /// Idle connections, most recently used last (taken LIFO).
    pub idle: Mutex<Vec<C>>,
    /// One per connection in use or idle: at most `max` in all.
    pub permits: tokio::sync::Semaphore,
}

impl<C> Pool<C> {
    /// An idle connection, if one is left.
    pub fn take(&self) -> Option<C> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Puts a connection that still works back.
    pub fn put(&self, conn: C) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }
}

/// The pools of one operation, one per engine runtime.
pub struct Pools<C> {
    max: usize,
    by_runtime: Mutex<Vec<(usize, Arc<Pool<C>>)>>,
}

impl<C> Pools<C> {
    pub fn new(max: usize) -> Self {
        Pools {
            max,
            by_runtime: Mutex::new(Vec::new()),
        }
    }

    /// The pool of the runtime whose connections `conns` are.
    pub fn of(&self, conns: &Connections) -> Arc<Pool<C>> {
        let key = conns as *const Connections as usize;
        let mut pools = self.by_runtime.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, p)) = pools.iter().find(|(k, _)| *k == key) {
            return p.clone();
        }
        let pool = Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(self.max),
        });
        pools.push((key, pool.clone()));
        pool
    }
}
