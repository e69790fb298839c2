//! Time to recover from a fault, per operation: computed in one place,
//! `gauntlet_recorder::recovery`, which the run also uses for
//! `results.json`; re-exported here for the report.

pub use gauntlet_recorder::recovery::*;
