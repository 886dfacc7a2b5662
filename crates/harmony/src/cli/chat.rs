//! `harmony chat`: a Zyre chat client on stdin/stdout.

use clap::Args;
use harmony::{Node, NodeError};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::logs::{publisher, PublishArgs};
use super::{output, parse_header, NetArgs, PresenceArgs};

#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// This node's name.
    #[arg(short, long)]
    name: String,
    /// The group to join and shout to.
    #[arg(short, long)]
    group: String,
    /// A header sent to every peer, `KEY=VALUE` (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Print one JSON object per event (and a first STARTED object) instead of text.
    #[arg(long)]
    json: bool,
    /// Take part in the leader election of the group (prints `LEADER <uuid> <name> <group>`).
    #[arg(long)]
    contest: bool,
    /// Send ELECT/LEADER to every peer, not only to Harmony peers that say they elect: for
    /// groups of Harmony and Zyre nodes without pyre (pyre drops peers that send ELECT), so
    /// that Zyre nodes that do not contest relay the wave and print the LEADER too.
    #[arg(long)]
    zyre_elections: bool,
    #[command(flatten)]
    pub(crate) publish: PublishArgs,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    presence: PresenceArgs,
}

pub(crate) async fn run(args: ChatArgs, verbose: bool) -> Result<(), NodeError> {
    let mut builder = args
        .presence
        .apply(args.net.apply(Node::builder().name(&args.name))?);
    for (k, v) in &args.headers {
        builder = builder.header(k, v);
    }
    if args.contest {
        builder = builder.contest(&args.group);
    }
    builder = builder.every_peer_elects(args.zyre_elections);
    let mut node = builder.start().await?;
    let logs = publisher();
    if let Some(logs) = &logs {
        logs.start(node.name(), node.endpoint())
            .await
            .map_err(|e| NodeError::Invalid(format!("log publisher: {e}")))?;
    }
    let iface = node.interface().clone();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "event": "STARTED", "uuid": harmony::peer::uuid_string(&node.uuid()), "name": node.name(),
                "endpoint": node.endpoint(), "interface": iface.name, "broadcast": iface.broadcast.to_string(),
            })
        );
    } else {
        eprintln!(
            "harmony: {} ({}) on {} {}, {}; type to shout to {}, `/w NAME text` to whisper, `/set KEY VALUE` to change a header",
            node.name(),
            harmony::peer::uuid_string(&node.uuid()),
            iface.name,
            node.endpoint(),
            args.net.discovery(iface.broadcast),
            args.group
        );
    }
    let mut links = if verbose { node.link_events() } else { None };
    node.join(&args.group).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => handle_line(&node, &args.group, &line).await?,
                _ => stdin_open = false,
            },
            event = node.next_event() => match event {
                Some(event) => {
                    if let Some(logs) = &logs {
                        logs.handle_event(&event).await;
                    }
                    tracing::debug!(event = event.kind(), peer = event.name(), "node event");
                    print_event(&event, args.json);
                }
                None => break,
            },
            Some(link) = output::next_link(&mut links) => eprintln!("harmony: {}", output::link_line(&link)),
            _ = tokio::signal::ctrl_c() => break,
        }
        if !stdin_open {
            break;
        }
    }
    if let Some(logs) = &logs {
        logs.stop().await;
    }
    node.stop().await?;
    while let Some(event) = node.next_event().await {
        print_event(&event, args.json);
    }
    Ok(())
}

fn print_event(event: &harmony::Event, json: bool) {
    if json {
        println!("{}", output::json(event));
    } else {
        println!("{}", output::line(event));
    }
}

async fn handle_line(node: &Node, group: &str, line: &str) -> Result<(), NodeError> {
    if let Some(rest) = line.strip_prefix("/set ") {
        let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
        if let Err(e) = node.set_header(key, value).await {
            eprintln!("harmony: /set {key}: {e}");
        }
        Ok(())
    } else if let Some(rest) = line.strip_prefix("/w ") {
        let (who, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut sent = false;
        for p in node.peer_infos().await? {
            if p.name == who || harmony::peer::uuid_string(&p.uuid).eq_ignore_ascii_case(who) {
                node.whisper(p.uuid, text.to_owned()).await?;
                sent = true;
            }
        }
        if !sent {
            eprintln!("harmony: no peer named {who:?}");
            tracing::warn!(peer = who, "whisper to an unknown peer");
        }
        Ok(())
    } else if !line.is_empty() {
        tracing::info!(group, bytes = line.len(), "shout");
        node.shout(group, line.to_owned()).await
    } else {
        Ok(())
    }
}
