//! Operation histories and the checkers that prove nothing acknowledged
//! was lost.
//!
//! [`history`] defines `history.jsonl` (an `invoke` record per checked
//! operation, then `ok` with the response's identifiers, `fail` or
//! `unknown`), its writer (appends and flushes as the run goes) and reader
//! (a torn last line is tolerated), and `readback.json`, what the final
//! read-back phase found. [`checks`] holds the checkers, each a pure
//! function of the history, the read-back and the fault windows
//! (`faults.json`), giving a [`checks::CheckVerdict`] that names its
//! evidence: the first missing offsets or job ids, with their times
//! relative to the faults.
//!
//! This crate never talks to the system under test: the driver writes the
//! history and the read-back; the checkers only read them.

pub mod checks;
pub mod history;
pub mod reflow;

pub use checks::{Check, CheckVerdict, EvidenceItem, relative_to_faults};
pub use history::{
    Acknowledged, ComponentStatus, DeliveredJob, Digest, History, HistoryError, HistoryWriter,
    Invocation, Operation, Outcome, ReadBack, StreamMessage, TracingReadBack,
};
