//! The event fabric (FlowMesh-compatible, `spec/fabric.md`): durable streams
//! over a checksummed segment log, served over HTTP by `fabric-node`.
//!
//! Layers, bottom up:
//! - [`frame`] — the checksummed record frame (one per appended batch);
//! - [`segment_log`] — a generic append-only segment log with an in-memory
//!   offset index, fsync control and crash recovery;
//! - [`meta`] — crash-safe metadata files (temp, fsync, rename, fsync dir);
//! - [`stream_store`] — streams: one writer task per stream doing group
//!   commit per the fsync policy, reads through the index;
//! - [`http`] — the axum API, `/health`, `/ready`, `/metrics`, JSON errors;
//! - [`metrics`] — Prometheus counters and histograms;
//! - [`config`] and [`server`] — command line/environment and lifecycle.

pub mod config;
pub mod frame;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod segment_log;
pub mod server;
pub mod stream_store;
