//! Helpers shared by the report tests.
pub mod synthetic;
