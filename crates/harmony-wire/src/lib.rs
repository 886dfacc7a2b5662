//! Byte layouts of every protocol Harmony speaks, as pure codecs with no I/O.
//!
//! - [`zmtp`]: ZMTP 3.x greeting, frames (a streaming `tokio_util` codec), commands and metadata.
//! - [`zre`]: ZRE beacons (v1 22 bytes, v3 54 bytes) and ZRE messages (ids 1-10).
//! - [`filemq`]: FILEMQ v2 messages.
//! - [`pipeline`]: the reliable pipeline's messages (CREDIT, TASK, RESULT, START, END, STATUS, ACK).
//! - [`zgp`]: ZGP, czmq's gossip protocol (HELLO, PUBLISH, PING, PONG, INVALID).
//! - [`zrelog`]: ZRE/LOG log events (rfc/20, extended with `tracing` fields).
//! - [`timer`]: the timer service's ticks and the leader's notes to standby timers.
//!
//! Decoders take a size limit and reject any declared length that exceeds it or the input,
//! before allocating. Decoded payloads are [`bytes::Bytes`] slices of the input.

pub mod error;
pub mod filemq;
pub mod pipeline;
mod primitives;
pub mod timer;
pub mod zgp;
pub mod zmtp;
pub mod zre;
pub mod zrelog;

#[doc(hidden)]
pub mod fuzzing;

pub use error::WireError;
