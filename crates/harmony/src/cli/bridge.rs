//! `harmony bridge`: a node with an HTTP face and a live page.

use std::net::SocketAddr;

use clap::Args;
use harmony::bridge::{Bridge, BridgeConfig};
use harmony::log::{CollectorConfig, LogCollector, LogLevel};
use harmony::{Node, NodeError};

use super::logs::{parse_level, publisher, PublishArgs};
use super::NetArgs;

#[derive(Debug, Args)]
pub(crate) struct BridgeArgs {
    /// Where to serve HTTP (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// This node's name.
    #[arg(short, long, default_value = "harmony-bridge")]
    name: String,
    /// A group to join (repeatable).
    #[arg(short, long = "group")]
    groups: Vec<String>,
    /// A bearer token required for anything that sends (`Authorization: Bearer TOKEN`, or
    /// `?token=TOKEN` in the page's address).
    #[arg(long)]
    token: Option<String>,
    /// Run a log collector for the mesh up to LEVEL: its events go to the page and `/api/logs`.
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    collect_logs: Option<LogLevel>,
    #[command(flatten)]
    pub(crate) publish: PublishArgs,
    #[command(flatten)]
    net: NetArgs,
}

pub(crate) async fn run(args: BridgeArgs) -> Result<(), NodeError> {
    let mut builder = args.net.apply(Node::builder().name(&args.name))?;
    let collector = match args.collect_logs {
        Some(level) => {
            let address = super::log::interface_address(&args.net.node.interface)?;
            let c = LogCollector::start(
                address,
                CollectorConfig {
                    level,
                    ..CollectorConfig::default()
                },
            )
            .await
            .map_err(|e| NodeError::Invalid(format!("log collector: {e}")))?;
            for (k, v) in c.headers() {
                builder = builder.header(k, v);
            }
            Some(c)
        }
        None => None,
    };
    let node = builder.start().await?;
    for g in &args.groups {
        node.join(g).await?;
    }
    let (name, uuid) = (node.name().to_owned(), node.uuid());
    let bridge = Bridge::start(
        node,
        BridgeConfig {
            listen: args.listen,
            token: args.token.clone(),
            collector,
            logs: publisher(),
            ..BridgeConfig::default()
        },
    )
    .await
    .map_err(|e| NodeError::Invalid(format!("bridge: {e}")))?;
    let token = args
        .token
        .as_ref()
        .map(|t| format!("?token={t}"))
        .unwrap_or_default();
    println!(
        "bridge {name} {} serving http://{}/{token}",
        harmony::peer::uuid_string(&uuid),
        bridge.local_addr()
    );
    let _ = tokio::signal::ctrl_c().await;
    bridge.stop().await;
    Ok(())
}
