//! Gauntlet's stacks: what a service *is* and how the system under test is
//! booted as local processes.
//!
//! - [`kinds`] — the service kinds in one table (program, arguments, port,
//!   readiness probe, default environment, data directory), read by both
//!   runtimes: this crate's process stack and `gauntlet-containers`.
//! - [`service`] — what every service of either runtime has (name, probe,
//!   log, endpoint, state, pid) and the `Stack` accessors over them.
//! - [`process`] — the process stack: each service a child process on a
//!   free loopback port, implementing [`gauntlet_control::Stack`].
//! - [`bins`] — finding (and building) the bundled services' binaries.
//! - [`probe`] — readiness probes (HTTP status, Redis `PING`).
//!
//! A stack never generates load or judges results; nothing here depends on
//! the engine or the drivers.

pub mod bins;
pub mod kinds;
pub mod probe;
pub mod process;
pub mod service;

pub use gauntlet_control;
pub use process::{Direct, ProcessStack, Routes, StackError, log_tail};
