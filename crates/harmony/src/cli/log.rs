//! `harmony log`: a log collector for the whole mesh.

use std::path::PathBuf;

use clap::Args;
use harmony::beacon::InterfaceSelect;
use harmony::log::{CaptureConfig, CollectorConfig, LogCollector, LogLevel};
use harmony::{Node, NodeError};
use tokio::sync::broadcast::error::RecvError;

use super::logs::parse_level;
use super::NetArgs;

#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// This node's name.
    #[arg(short, long, default_value = "harmony-log")]
    name: String,
    /// The most verbose level collected (error, warn, info, debug, trace); nodes send nothing
    /// beyond it.
    #[arg(long, default_value = "info", value_parser = parse_level)]
    level: LogLevel,
    /// Capture every event as JSON lines into files in DIR.
    #[arg(long, value_name = "DIR")]
    capture: Option<PathBuf>,
    /// Start a new capture file before one passes this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 10 << 20)]
    rotate_size: u64,
    /// How many capture files to keep (older ones are deleted).
    #[arg(long, value_name = "N", default_value_t = 10)]
    keep: usize,
    /// Print one JSON object per event instead of a line of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
}

/// The address the collector binds: the discovery interface's.
pub(crate) fn interface_address(select: &str) -> Result<std::net::IpAddr, NodeError> {
    let select = if select == "lo" {
        InterfaceSelect::Loopback
    } else {
        select.parse().unwrap_or_default()
    };
    Ok(harmony::beacon::select_interface(&select)?.address)
}

pub(crate) async fn run(args: LogArgs) -> Result<(), NodeError> {
    let address = interface_address(&args.net.node.interface)?;
    let capture = args.capture.clone().map(|dir| CaptureConfig {
        dir,
        rotate_size: args.rotate_size.max(1),
        keep: args.keep.max(1),
    });
    let mut collector = LogCollector::start(
        address,
        CollectorConfig {
            level: args.level,
            capture,
            ..CollectorConfig::default()
        },
    )
    .await
    .map_err(|e| NodeError::Invalid(format!("log collector: {e}")))?;
    let mut builder = args.net.apply(Node::builder().name(&args.name))?;
    for (k, v) in collector.headers() {
        builder = builder.header(k, v);
    }
    let mut node = builder.start().await?;
    let mut events = collector.subscribe();
    eprintln!(
        "harmony log: {} ({}) collects {} and above at {}{}",
        node.name(),
        harmony::peer::uuid_string(&node.uuid()),
        args.level.as_str(),
        collector.endpoint(),
        collector
            .capture_file()
            .map(|p| format!(", capturing to {}", p.display()))
            .unwrap_or_default()
    );
    let mut check = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut reported = (0, 0);
    loop {
        tokio::select! {
            _ = check.tick() => {
                // Losses are reported as they happen, not only at the end.
                let s = collector.stats();
                if (s.lost, s.dropped_at_publishers) != reported {
                    reported = (s.lost, s.dropped_at_publishers);
                    eprintln!(
                        "harmony log: so far {} events lost on the way, {} dropped at publishers",
                        s.lost, s.dropped_at_publishers
                    );
                }
            }
            entry = events.recv() => match entry {
                Ok(entry) => {
                    if args.json {
                        println!("{}", entry.json());
                    } else {
                        println!("{}", entry.line());
                    }
                }
                Err(RecvError::Lagged(n)) => eprintln!("harmony log: {n} events not printed (the terminal is slow)"),
                Err(RecvError::Closed) => break,
            },
            event = node.next_event() => if event.is_none() { break },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    node.stop().await?;
    collector.stop().await;
    let s = collector.stats();
    eprintln!(
        "harmony log: {} received, {} lost on the way, {} dropped at publishers, {} malformed",
        s.received, s.lost, s.dropped_at_publishers, s.malformed
    );
    Ok(())
}
