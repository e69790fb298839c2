//! `actors`: the actor tier of Gauntlet's system under test — seed 001's
//! ComponentActor runtime, to the contract in `shared/spec/actors.md`.
//!
//! A [`node::Node`] hosts components ([`component`]): a [`spec`] (seed
//! 001's `Component.toml` plus a behaviour), a bounded [`mailbox`] with
//! whole-batch admission, a task running the behaviour under supervision,
//! and a name in the registry. Batches ([`message`]) travel whole along
//! pipelines and are shared by a topic's subscribers; a client's answer
//! waits until every message was handled at the end of its path. The
//! [`store`] keeps the registry and `counter` totals crash-safe; [`audit`]
//! writes lifecycle and capability events; [`metrics`] has seed 001's
//! names; [`http`] and [`server`] serve it all as `actor-node`.
//!
//! The node is usable in process (`Node::new(NodeOptions::default())` on a
//! tokio runtime): the benchmarks measure it that way.

pub mod audit;
pub mod cluster;
pub mod component;
pub mod config;
pub mod error;
pub mod http;
pub mod mailbox;
pub mod message;
pub mod metrics;
pub mod node;
pub mod resource;
pub mod server;
pub mod spec;
pub mod store;

pub use component::{Fault, State, Status};
pub use error::{ApiError, Code};
pub use message::Message;
pub use node::{Node, NodeOptions, Sent, Wait};
pub use spec::{Behavior, ComponentSpec, Restart};
