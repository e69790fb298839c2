//! Gauntlet's harness: the plan, the process stack, the open-model engine,
//! the drivers, the run directory and the `loadgen` command line.
//!
//! It reads scenarios through `gauntlet-scenario`, records through
//! `gauntlet-recorder` and renders through `gauntlet-reports`; it talks to the
//! system under test only through processes and HTTP, never by linking it.

pub mod bins;
pub mod chaos;
pub mod closed;
pub mod collect;
pub mod containers_cmd;
pub mod data;
pub mod driver;
pub mod engine;
pub mod gate_cmd;
pub mod history;
pub mod http;
pub mod plan;
pub mod recording;
pub mod report_cmd;
pub mod run;
pub mod rundir;
pub mod stack;

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
