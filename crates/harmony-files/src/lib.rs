//! FILEMQ file transfer, byte-compatible with zeromq/filemq (FILEMQ v2, rfc/35 as that
//! implementation puts it on the wire), with resync, resume and integrity checks negotiated
//! on top (see [`ext`]).
//!
//! - [`server::Server`] and [`client::Client`]: sans-IO state machines;
//! - [`FileServer`] and [`FileClient`]: tokio drivers over harmony-zmtp ROUTER and DEALER,
//!   publishing directories and mirroring them;
//! - [`path`]: what a file name from the network may be;
//! - [`discovery`]: servers advertise `X-FILEMQ` (and `X-FILEMQ-KEY`, `X-FILEMQ-TREE`) in
//!   their ZRE headers.

pub mod client;
pub mod discovery;
pub mod error;
pub mod ext;
#[doc(hidden)]
pub mod fuzzing;
pub mod manifest;
mod mirror;
pub mod path;
mod pool;
mod readahead;
mod record;
mod scan;
pub mod serve;
pub mod server;
pub mod sync;

pub use client::{Client, ClientConfig, FileOp, ResumePoint};
pub use error::{FilesError, PathError, ProtocolError};
pub use manifest::Manifest;
pub use serve::{FileServer, FileServerBuilder};
pub use server::{Server, ServerConfig, ServerEvent, Source};
pub use sync::{FileClient, FileClientBuilder, SyncEvent};
