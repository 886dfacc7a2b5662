//! Settings shared by the three roles.

use std::time::Duration;

use harmony_node::NodeBuilder;

use crate::core::Timing;

/// Settings for a [`Client`], a [`Worker`](crate::Worker) or a [`Collector`](crate::Collector).
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) node: NodeBuilder,
    pub(crate) pipeline: String,
    pub(crate) timing: Timing,
}

impl Settings {
    /// Pipeline `default` on a node built by `node` (set its interface, e.g. `.loopback()`).
    pub fn new(node: NodeBuilder) -> Self {
        // A dead peer should be noticed in seconds, not ZRE's default 30.
        let node = node
            .evasive_timeout(Duration::from_millis(1000))
            .expired_timeout(Duration::from_millis(4000));
        Self {
            node,
            pipeline: "default".to_owned(),
            timing: Timing::default(),
        }
    }

    /// The pipeline's name (default `default`).
    pub fn pipeline(mut self, name: impl Into<String>) -> Self {
        self.pipeline = name.into();
        self
    }

    /// The protocol's timers.
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }
}

/// Sleeps until `deadline`, or forever without one.
pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
