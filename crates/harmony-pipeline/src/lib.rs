//! The reliable pipeline (the Guide's unfinished "Xyz" pattern): a client submits batches of
//! numbered tasks, workers run them, a collector takes every result exactly once and reports to
//! the client, which resends whatever is missing. Workers and collectors may crash.
//!
//! The protocol is written down in `SPEC.md` next to this crate; its codec is
//! [`harmony_wire::pipeline`]. The state machines ([`core`]) do no I/O.

pub mod core;
pub mod error;

pub use error::PipelineError;
