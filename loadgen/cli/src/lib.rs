//! Gauntlet's command line and run orchestration: the plan, the stages of
//! one run (each resource it acquires released by one guard), and the
//! `loadgen` commands.
//!
//! The work is done by the crates it orchestrates: `gauntlet-scenario`
//! (the format), `gauntlet-engine` (load), `gauntlet-drivers` (what an
//! operation does to each system), `gauntlet-stack` and
//! `gauntlet-containers` (booting the system under test), the `chaos/`
//! crates (faults, checks), `gauntlet-recorder`, `gauntlet-gate` and
//! `gauntlet-reports`. It talks to the system under test only through them,
//! never by linking it.

pub mod boot;
pub mod chaos;
pub mod collect;
pub mod containers_cmd;
pub mod gate_cmd;
pub mod plan;
pub mod profile;
pub mod progress;
pub mod report_cmd;
pub mod run;
pub mod rundir;

/// The stack crate's modules, under the names the harness used before the
/// split (`loadgen::bins`, `loadgen::stack`).
pub use gauntlet_stack::bins;
pub use gauntlet_stack::process as stack;

/// Exit codes, the same for every command.
pub mod exit {
    /// Ran and passed.
    pub const OK: i32 = 0;
    /// Ran, and a check or gate failed.
    pub const FAILED: i32 = 1;
    /// Bad usage or an invalid scenario.
    pub const USAGE: i32 = 2;
    /// The stack or the harness failed (including an interrupted run).
    pub const HARNESS: i32 = 3;
}
