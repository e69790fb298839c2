//! The event fabric (FlowMesh-compatible, `spec/fabric.md`): durable
//! streams, queues and KV stores over a checksummed segment log, served
//! over HTTP by `fabric-node`.
//!
//! Layers, bottom up:
//! - [`frame`] — the checksummed record frame (one per appended batch);
//! - [`segment_log`] — a generic append-only segment log with an in-memory
//!   offset index, fsync control and crash recovery;
//! - [`meta`] — crash-safe metadata files (temp, fsync, rename, fsync dir);
//! - [`durable`] — a segment log under an fsync policy (`always`, `batch`,
//!   `interval` with its offset high-water mark): the durability contract;
//! - [`actor`] — one task per resource: group commit, deferred replies
//!   (nothing observable before it is durable), timers;
//! - [`resource`] — resource keys, names, errors, metadata files;
//! - [`stream_store`] — streams and consumer-group offsets;
//! - [`queue`] — the pure queue state machine (event-sourced records);
//!   [`queue_store`] — queues on top of it: leases, long polls, DLQ;
//! - [`kv_store`] — KV stores (a log of puts/deletes, map in memory);
//! - [`stores`] — the three together; [`backup`] — snapshot and restore;
//! - [`http`] — the axum API, auth, `/health`, `/ready`, `/metrics`, JSON errors;
//! - [`metrics`] — Prometheus counters, gauges and histograms;
//! - [`config`] and [`server`] — command line/environment and lifecycle.

pub mod actor;
pub mod backup;
pub mod config;
pub mod durable;
pub mod frame;
pub mod http;
pub mod kv_store;
pub mod meta;
pub mod metrics;
pub mod queue;
pub mod queue_store;
pub mod resource;
pub mod segment_log;
pub mod server;
pub mod stores;
pub mod stream_store;
pub mod test_knob;
