//! `harmony peers`: who is out there.

use std::time::Duration;

use clap::Args;
use harmony::{Node, NodeError};

use super::{output, NetArgs, PresenceArgs};

#[derive(Debug, Args)]
pub(crate) struct PeersArgs {
    /// How long to listen before printing, in seconds.
    #[arg(short, long, default_value_t = 3.0)]
    wait: f64,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    presence: PresenceArgs,
}

pub(crate) async fn run(args: PeersArgs, verbose: bool) -> Result<(), NodeError> {
    let wait = Duration::try_from_secs_f64(args.wait.max(0.0)).unwrap_or(Duration::from_secs(3));
    let mut node = args
        .presence
        .apply(args.net.apply(Node::builder().name("harmony-peers"))?)
        .start()
        .await?;
    let iface = node.interface().clone();
    if !args.json {
        eprintln!(
            "harmony: listening on {} ({}, {}) for {:.1} s",
            iface.name,
            iface.address,
            args.net.discovery(iface.broadcast),
            wait.as_secs_f64()
        );
    }
    // Read events while waiting so the queue never fills; peers come from the node's table.
    let mut links = if verbose { node.link_events() } else { None };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            event = node.next_event() => if event.is_none() { break },
            Some(link) = output::next_link(&mut links) => eprintln!("harmony: {}", output::link_line(&link)),
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    let peers = node.peer_infos().await?;
    node.stop().await?;
    if args.json {
        let list: Vec<_> = peers.iter().map(output::peer_json).collect();
        println!("{}", serde_json::Value::from(list));
    } else if peers.is_empty() {
        println!(
            "no peers seen on {} (is another node using port {} on this network?)",
            iface.name, args.net.node.port
        );
    } else {
        for p in &peers {
            let headers: Vec<String> = p.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "{:<16} {} {:<24} groups=[{}] headers=[{}]",
                p.name,
                harmony::peer::uuid_string(&p.uuid),
                p.endpoint,
                p.groups.join(","),
                headers.join(",")
            );
        }
    }
    Ok(())
}
