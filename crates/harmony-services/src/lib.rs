//! Seeing the mesh: the services of the Guide's chapter 8 on top of a running
//! [`harmony_node::Node`].
//!
//! - [`log`]: decentralised logging, a `tracing` layer that publishes to the collectors found
//!   by discovery (ZRE/LOG, `X-ZRELOG`), and the collector.
//! - [`timer`]: ticks at fixed rates shouted to `GROUP/<rate>` by one elected leader.
//! - [`bridge`]: an HTTP/WebSocket face for a node, with a live page.

pub mod bridge;
pub mod error;
pub mod log;
pub mod timer;

pub use error::ServiceError;
