//! Command-line parsing and the subcommands.

mod bridge;
mod chat;
mod demo;
mod files;
mod keygen;
mod log;
mod logs;
mod output;
mod peers;
mod pipeline;
mod timer;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use harmony::security::{Certificate, KeyPair};
use harmony::{NodeBuilder, NodeError};

/// Harmony: find peers on the LAN, see who is alive, chat in groups (Zyre/pyre compatible).
#[derive(Debug, Parser)]
#[command(name = "harmony", version)]
pub(crate) struct Cli {
    /// Log what the node does (or set RUST_LOG); `chat` and `peers` also print every
    /// connection event (socket monitor: connected, handshake, disconnected...).
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Several nodes on this machine find each other, join a group, chat and leave.
    Demo(demo::DemoArgs),
    /// Join a group; lines on stdin are shouted (`/w NAME text` whispers, `/set KEY VALUE` changes a header); events are printed.
    Chat(chat::ChatArgs),
    /// Lists the nodes out there: name, uuid, endpoint, groups, headers.
    Peers(peers::PeersArgs),
    /// Publishes a directory over FILEMQ (`serve`) or mirrors one (`sync`).
    Files(files::FilesArgs),
    /// Batches of tasks that survive crashing workers and collectors: worker, collect, submit, demo.
    Pipeline(pipeline::PipelineArgs),
    /// Writes a CURVE certificate pair NAME and NAME_secret (czmq zcert / pyzmq zmq.auth format).
    Keygen(keygen::KeygenArgs),
    /// Collects the log events of every node that publishes (`--publish-logs`): prints them,
    /// captures them to rotated files.
    Log(log::LogArgs),
    /// Ticks at fixed rates to GROUP/<rate>; several timers elect one that ticks.
    Timer(timer::TimerArgs),
    /// A node with an HTTP/WebSocket face and a live page (peers, groups, chat, logs, rates).
    Bridge(bridge::BridgeArgs),
}

impl Cli {
    /// The level given to `--publish-logs`, if the subcommand has it.
    pub(crate) fn publish_logs(&self) -> Option<harmony::log::LogLevel> {
        match &self.command {
            Command::Chat(a) => a.publish.publish_logs,
            Command::Timer(a) => a.publish.publish_logs,
            Command::Bridge(a) => a.publish.publish_logs,
            _ => None,
        }
    }
}

/// The subscriber: text on stderr filtered by `RUST_LOG`/`--verbose`, and with
/// `--publish-logs LEVEL` the events up to LEVEL to the mesh's collectors.
pub(crate) fn init_tracing(cli: &Cli) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if cli.verbose { "info" } else { "warn" })
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let publish = cli.publish_logs().map(|level| {
        let ceiling = match level {
            harmony::log::LogLevel::Error => tracing::Level::ERROR,
            harmony::log::LogLevel::Warning => tracing::Level::WARN,
            harmony::log::LogLevel::Info => tracing::Level::INFO,
            harmony::log::LogLevel::Debug => tracing::Level::DEBUG,
            harmony::log::LogLevel::Trace => tracing::Level::TRACE,
        };
        logs::layer(level).with_filter(tracing_subscriber::filter::LevelFilter::from_level(ceiling))
    });
    tracing_subscriber::registry()
        .with(fmt)
        .with(publish)
        .init();
}

/// The node's interface, discovery port, beacon interval and keys: what every networked
/// subcommand takes (`harmony pipeline` takes these alone, the others with [`NetArgs`]).
#[derive(Debug, Clone, Args)]
struct NodeArgs {
    /// Beacon interface: `auto` (first broadcast-capable one, as Zyre), `loopback`/`lo`
    /// (this machine only), a name such as `eth0`, or an address.
    #[arg(short, long, default_value = "auto")]
    interface: String,
    /// UDP discovery port.
    #[arg(long, default_value_t = harmony::beacon::DEFAULT_PORT)]
    port: u16,
    /// Beacon interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Encrypted mode with a key pair generated for this run (CURVE; only encrypted nodes meet).
    #[arg(long)]
    curve: bool,
    /// Encrypted mode with the key pair of this certificate file (its `_secret` file is read).
    #[arg(long, value_name = "FILE")]
    curve_cert: Option<std::path::PathBuf>,
}

impl NodeArgs {
    /// `builder` on this interface, port and beacon interval, with these keys.
    fn apply(&self, builder: NodeBuilder) -> Result<NodeBuilder, NodeError> {
        let mut builder = builder
            .interface(self.interface.as_str())
            .port(self.port)
            .interval(Duration::from_millis(self.interval_ms.max(10)));
        if let Some(keys) = curve_keys(self.curve, self.curve_cert.as_deref())? {
            builder = builder.curve(keys);
        }
        Ok(builder)
    }
}

/// Discovery settings shared by `chat` and `peers`.
#[derive(Debug, Clone, Args)]
struct NetArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Gossip discovery instead of beacons: bind a gossip hub here (as Zyre's zpinger
    /// `--gossip-bind`), e.g. `tcp://10.0.0.5:7100`.
    #[arg(long, value_name = "ENDPOINT")]
    gossip_bind: Option<String>,
    /// Gossip discovery instead of beacons: connect to this gossip hub (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    gossip_connect: Vec<String>,
    /// The inbox endpoint to bind and advertise in gossip mode, e.g. `tcp://10.0.0.6:7101`
    /// (default: the interface address, any port).
    #[arg(long, value_name = "ENDPOINT")]
    endpoint: Option<String>,
}

/// Liveness timeouts and identity of `chat` and `peers` (`timer` has its own timeout).
#[derive(Debug, Clone, Args)]
struct PresenceArgs {
    /// A peer silent this long is reported EVASIVE and pinged (milliseconds; Zyre: 5000).
    #[arg(long, value_name = "MS")]
    evasive_ms: Option<u64>,
    /// A peer silent this long is reported gone, EXIT (milliseconds; Zyre: 30000).
    #[arg(long, value_name = "MS")]
    expired_ms: Option<u64>,
    /// Run with this UUID instead of a new one (a node restarting as itself).
    #[arg(long, value_parser = parse_uuid)]
    uuid: Option<uuid::Uuid>,
}

impl PresenceArgs {
    fn apply(&self, mut builder: NodeBuilder) -> NodeBuilder {
        if let Some(ms) = self.evasive_ms {
            builder = builder.evasive_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = self.expired_ms {
            builder = builder.expired_timeout(Duration::from_millis(ms));
        }
        if let Some(uuid) = self.uuid {
            builder = builder.uuid(uuid);
        }
        builder
    }
}

impl NetArgs {
    /// Whether discovery is by gossip (no beacons).
    fn gossip(&self) -> bool {
        self.gossip_bind.is_some() || !self.gossip_connect.is_empty() || self.endpoint.is_some()
    }

    /// How peers are found, for the start-up line.
    fn discovery(&self, broadcast: impl std::fmt::Display) -> String {
        if self.gossip() {
            let mut hubs: Vec<&str> = self.gossip_bind.iter().map(String::as_str).collect();
            hubs.extend(self.gossip_connect.iter().map(String::as_str));
            format!("gossip via {}", hubs.join(", "))
        } else {
            format!("beacons to {broadcast}:{}", self.node.port)
        }
    }

    fn apply(&self, builder: NodeBuilder) -> Result<NodeBuilder, NodeError> {
        let mut builder = self.node.apply(builder)?;
        if let Some(endpoint) = &self.gossip_bind {
            builder = builder.gossip_bind(endpoint);
        }
        for endpoint in &self.gossip_connect {
            builder = builder.gossip_connect(endpoint);
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint(endpoint);
        }
        Ok(builder)
    }
}

/// The key pair of `--curve-cert FILE` (its `_secret` file is read), or a new one for
/// `--curve`, or none.
fn curve_keys(curve: bool, cert: Option<&std::path::Path>) -> Result<Option<KeyPair>, NodeError> {
    if let Some(path) = cert {
        let cert = Certificate::load(path)
            .map_err(|e| NodeError::Invalid(format!("certificate {}: {e}", path.display())))?;
        let keys = cert.key_pair().cloned().ok_or_else(|| {
            NodeError::Invalid(format!(
                "certificate {} has no secret key (need its _secret file)",
                path.display()
            ))
        })?;
        return Ok(Some(keys));
    }
    Ok(curve.then(KeyPair::generate))
}

/// Parses a UUID, with or without dashes (ZRE writes it as 32 hex digits).
fn parse_uuid(s: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::try_parse(s).map_err(|e| format!("not a UUID ({e}): {s:?}"))
}

/// Parses `KEY=VALUE`.
fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

pub(crate) async fn run(cli: Cli) -> Result<(), NodeError> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Chat(args) => chat::run(args, cli.verbose).await,
        Command::Peers(args) => peers::run(args, cli.verbose).await,
        Command::Pipeline(args) => pipeline::run(args).await,
        Command::Keygen(args) => keygen::run(args),
        Command::Files(args) => files::run(args).await,
        Command::Log(args) => log::run(args).await,
        Command::Timer(args) => timer::run(args).await,
        Command::Bridge(args) => bridge::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    /// Every subcommand's arguments are well formed (clap checks this only when a
    /// subcommand runs: two flattened argument groups with the same flag name pass the build).
    #[test]
    fn every_subcommand_parses() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
