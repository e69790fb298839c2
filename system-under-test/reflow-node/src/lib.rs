//! `reflow-node` (seed 000, spec/reflow-node.md): a workflow graph on the
//! published `reflow_network` 0.2.1 runtime, behind an HTTP API, traced to
//! the tracing server with the published `reflow_tracing_protocol` client.
//!
//! - [`config`]: seed 000's hierarchical TOML and `REFLOW_X__Y` names.
//! - [`graph`]: the graph file and its checks.
//! - [`actors`]: source, map, filter, fanout, sink (`#[actor]`).
//! - [`state`]: what the node knows while the graph runs (counts, in flight, stalls).
//! - [`node`]: the runtime's `Network`, its event drain, the inport feeders.
//! - [`http`]: the API, `/health`, `/ready`, `/metrics`.

pub mod actors;
pub mod config;
pub mod graph;
pub mod http;
pub mod node;
pub mod state;
