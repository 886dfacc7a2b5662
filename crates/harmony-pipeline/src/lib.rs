//! The reliable pipeline (the Guide's unfinished "Xyz" pattern): a client submits batches of
//! numbered tasks, workers run them, a collector takes every result exactly once and reports to
//! the client, which resends whatever is missing. Workers and collectors may crash.
//!
//! Discovery and liveness come from a ZRE node ([`harmony_node`]): every member joins the group
//! `pipeline:<name>` and advertises its role and its own ZMTP endpoint in headers; the tasks and
//! results travel on harmony-zmtp sockets (a ROUTER inbox per member, a DEALER per peer).
//! The protocol is written down in `SPEC.md` next to this crate; its codec is
//! [`harmony_wire::pipeline`]; the state machines ([`core`]) do no I/O.
//!
//! ```no_run
//! use harmony_node::Node;
//! use harmony_pipeline::{Client, Collector, Settings, Worker, WorkerOptions};
//!
//! # async fn demo() -> Result<(), harmony_pipeline::PipelineError> {
//! let settings = || Settings::new(Node::builder().loopback()).pipeline("demo");
//! let _worker = Worker::start(settings(), WorkerOptions::default(), |task: bytes::Bytes| async move {
//!     Ok::<_, std::convert::Infallible>(task) // echo
//! })
//! .await?;
//! let mut collector = Collector::start(settings()).await?;
//! tokio::spawn(async move {
//!     while let Ok(event) = collector.recv().await {
//!         println!("{event:?}");
//!     }
//! });
//! let client = Client::start(settings()).await?;
//! let batch = client.submit(["a", "b", "c"]).await?;
//! let summary = batch.wait().await?;
//! println!("{} tasks, {} resent", summary.tasks, summary.resent);
//! # Ok(()) }
//! ```

pub mod client;
pub mod collector;
pub mod core;
pub mod error;
mod mesh;
pub mod settings;
pub mod worker;

pub use client::{Batch, BatchSummary, Client, Progress};
pub use collector::Collector;
pub use core::{CollectorEvent, Role, Timing};
pub use error::PipelineError;
pub use mesh::{group_name, ENDPOINT_HEADER, ROLE_HEADER};
pub use settings::Settings;
pub use worker::{Worker, WorkerOptions};
