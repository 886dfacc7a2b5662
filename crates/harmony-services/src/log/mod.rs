//! Decentralised logging, the Guide's design: a collector advertises `X-ZRELOG=<endpoint>` (and
//! the level it wants, `X-ZRELOG-LEVEL`) in its HELLO; every publishing node's PUB socket
//! connects to it (the publisher connects, so no join is lost) and sends ZRE/LOG messages
//! ([`harmony_wire::zrelog`]).
//!
//! - [`publisher`] gives a `tracing` layer ([`LogLayer`]) and its [`LogPublisher`]: events at a
//!   level no collector wants cost one atomic load; the others go through a bounded queue
//!   (full = dropped and counted, never blocking the program) to the PUB socket, whose
//!   subscription filter sends each collector only the levels it subscribed to.
//! - [`LogCollector`] binds the SUB socket, decodes, counts what was lost (per-level sequence
//!   gaps) or dropped at the publishers, keeps the last events in memory, hands them to
//!   listeners, and optionally captures them to size-rotated files ([`CaptureConfig`]).

mod capture;
mod collector;
mod publisher;

pub use capture::{Capture, CaptureConfig};
pub use collector::{CollectorConfig, CollectorStats, LogCollector, LogEntry};
pub use harmony_wire::zrelog::LogLevel;
pub use publisher::{publisher, LogLayer, LogPublisher};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
