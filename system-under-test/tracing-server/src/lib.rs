//! `tracing-server`: the tracing tier of Gauntlet's system under test —
//! seed 003's tracing server to the contract in `shared/spec/tracing.md`,
//! speaking the published `reflow_tracing_protocol` 0.2.1 over WebSocket.
//!
//! [`ws`] serves a connection (pipelined, answered in order); [`ingest`]
//! batches every connection's events into PostgreSQL transactions and
//! answers each only after its commit; [`db`] holds the schema, the
//! migrations and the queries; [`redis_link`] the `GetTrace` cache and the
//! cross-replica pub/sub; [`hub`] the live subscriptions; [`http`] the
//! upgrade, `/health`, `/ready` and `/metrics`; [`server`] runs it all
//! with graceful shutdown; [`backup`] wraps `pg_dump`/`pg_restore`.

pub mod app;
pub mod auth;
pub mod backup;
pub mod config;
pub mod db;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod metrics;
pub mod redis_link;
pub mod server;
pub mod ws;
