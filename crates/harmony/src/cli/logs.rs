//! `--publish-logs LEVEL`: this program's `tracing` events go to the mesh's log collectors.

use std::sync::{Arc, OnceLock};

use clap::Args;
use harmony::log::{LogLevel, LogPublisher};

/// Events queued for the collectors before new ones are dropped (and counted).
const QUEUE: usize = 4096;

static PUBLISHER: OnceLock<Arc<LogPublisher>> = OnceLock::new();

/// The option, for the subcommands that run a node.
#[derive(Debug, Clone, Args)]
pub(crate) struct PublishArgs {
    /// Publish this program's log events up to LEVEL (error, warn, info, debug, trace) to the
    /// log collectors found on the network (`harmony log`).
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    pub(crate) publish_logs: Option<LogLevel>,
}

pub(crate) fn parse_level(s: &str) -> Result<LogLevel, String> {
    LogLevel::parse(s)
        .ok_or_else(|| format!("unknown level {s:?} (error, warn, info, debug, trace)"))
}

/// A `tracing` layer publishing up to `level`; its publisher is kept for [`publisher`].
pub(crate) fn layer(level: LogLevel) -> harmony::log::LogLayer {
    let (layer, publisher) = harmony::log::publisher(QUEUE, level);
    let _ = PUBLISHER.set(Arc::new(publisher));
    layer
}

/// The publisher, when `--publish-logs` was given.
pub(crate) fn publisher() -> Option<Arc<LogPublisher>> {
    PUBLISHER.get().cloned()
}
