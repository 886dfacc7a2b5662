//! `harmony files serve|sync`: publish a directory over FILEMQ, or mirror one.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use harmony::files::discovery::{self, FILEMQ_HEADER, KEY_HEADER, TREE_HEADER};
use harmony::files::{FileClient, FileServer, FilesError, ServerEvent, SyncEvent};
use harmony::security::{public_key_from_z85, Certificate, KeyPair, MechanismConfig};
use harmony::zmtp::SocketOptions;
use harmony::{Node, NodeError};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub(crate) struct FilesArgs {
    #[command(subcommand)]
    command: FilesCommand,
}

#[derive(Debug, Subcommand)]
enum FilesCommand {
    /// Publish a directory; discovery advertises it (ZRE header X-FILEMQ).
    Serve(ServeArgs),
    /// Mirror what a server publishes into a directory.
    Sync(SyncArgs),
}

/// Discovery settings.
#[derive(Debug, Args)]
struct Discovery {
    /// Beacon interface: `auto`, `loopback`/`lo`, a name such as `eth0`, or an address.
    #[arg(short, long, default_value = "auto")]
    interface: String,
    /// UDP discovery port.
    #[arg(long, default_value_t = harmony::beacon::DEFAULT_PORT)]
    port: u16,
    /// Beacon interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

impl Discovery {
    fn node(&self, name: &str) -> harmony::NodeBuilder {
        Node::builder()
            .name(name)
            .interface(self.interface.as_str())
            .port(self.port)
            .interval(Duration::from_millis(self.interval_ms.max(10)))
    }

    fn is_loopback(&self) -> bool {
        matches!(
            self.interface.as_str(),
            "loopback" | "lo" | "127.0.0.1" | "::1"
        )
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The directory to publish.
    dir: PathBuf,
    /// Where to listen (default: an ephemeral port, advertised by discovery).
    #[arg(long)]
    bind: Option<String>,
    /// The virtual path the directory is published at.
    #[arg(long, default_value = "/")]
    path: String,
    /// Encrypt with CURVE, with the key pair of this certificate (its `_secret` file is read).
    #[arg(long, value_name = "FILE")]
    curve_cert: Option<PathBuf>,
    /// Keep the files' manifests (digest, chunk crc32s) in FILE across restarts: a restarted
    /// server then reads only the files changed since.
    #[arg(long, value_name = "FILE")]
    manifest_record: Option<PathBuf>,
    #[command(flatten)]
    discovery: Discovery,
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// The destination directory.
    dest: PathBuf,
    /// The server's endpoint (default: the first one discovery finds, followed if it is
    /// restarted at another endpoint).
    #[arg(long)]
    from: Option<String>,
    /// The path to subscribe to.
    #[arg(long, default_value = "/")]
    path: String,
    /// Exit once everything the server had is on disk (a Harmony server says so; for
    /// another, after two quiet seconds).
    #[arg(long)]
    once: bool,
    /// The server's CURVE public key (Z85); found by discovery when the server advertises it.
    #[arg(long, value_name = "Z85")]
    curve_server_key: Option<String>,
    #[command(flatten)]
    discovery: Discovery,
}

fn invalid(e: impl std::fmt::Display) -> NodeError {
    NodeError::Invalid(e.to_string())
}

pub(crate) async fn run(args: FilesArgs) -> Result<(), NodeError> {
    match args.command {
        FilesCommand::Serve(args) => serve(args).await,
        FilesCommand::Sync(args) => sync(args).await,
    }
}

async fn serve(args: ServeArgs) -> Result<(), NodeError> {
    let mut options = SocketOptions::default();
    let mut public_key = None;
    if let Some(path) = &args.curve_cert {
        let cert =
            Certificate::load(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        let keys = cert
            .key_pair()
            .cloned()
            .ok_or_else(|| invalid(format!("{} has no secret key", path.display())))?;
        public_key = Some(keys.public_z85());
        options = options.mechanism(MechanismConfig::CurveServer { keys });
    }
    let bind = args.bind.clone().unwrap_or_else(|| {
        if args.discovery.is_loopback() {
            "tcp://127.0.0.1:0".into()
        } else {
            "tcp://0.0.0.0:0".into()
        }
    });
    let mut builder = FileServer::builder()
        .publish(&args.dir, &args.path)
        .bind(bind)
        .socket_options(options);
    if let Some(record) = &args.manifest_record {
        builder = builder.manifest_record(record);
    }
    let mut server = builder.start().await.map_err(invalid)?;
    let mut node = args
        .discovery
        .node("harmony-files")
        .header(FILEMQ_HEADER, discovery::advertise(server.endpoint()))
        .header(TREE_HEADER, discovery::tree_id(&args.dir, &args.path));
    if let Some(key) = &public_key {
        node = node.header(KEY_HEADER, key.clone());
    }
    let mut node = node.start().await?;
    eprintln!(
        "harmony: serving {} at {} on {}",
        args.dir.display(),
        args.path,
        server.endpoint()
    );
    if let Some(key) = &public_key {
        eprintln!("harmony: CURVE public key {key}");
    }
    // Discovery events are read so that the node's queue never fills.
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = node.next_event() => if event.is_none() { break },
            Some(event) = server.next_event() => say(&event),
        }
    }
    node.stop().await?;
    server.stop();
    Ok(())
}

/// What `files serve` tells a person: the tree published, clients coming and going (a refused
/// handshake is already logged as a warning). Not each file sent (one line per file per client
/// would drown the rest).
fn say(event: &ServerEvent) {
    let client = |id: &[u8]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match event {
        ServerEvent::Ready { files, read } if read < files => eprintln!(
            "harmony: {} published ({read} read, the others' manifests on record)",
            count(*files as u64, "file")
        ),
        ServerEvent::Ready { files, .. } => {
            eprintln!("harmony: {} published", count(*files as u64, "file"))
        }
        ServerEvent::Joined(id) => eprintln!("harmony: client {} connected", client(id)),
        ServerEvent::Dropped(id, None) => eprintln!("harmony: client {} left", client(id)),
        ServerEvent::Dropped(id, Some(e)) => {
            eprintln!("harmony: client {} dropped: {e}", client(id))
        }
        ServerEvent::Truncated { peer, vpath, .. } => eprintln!(
            "harmony: {vpath} was cut short under a chunk due to client {}: its connection \
             closed, it resumes once the file is published again",
            client(peer)
        ),
        _ => {}
    }
}

async fn sync(args: SyncArgs) -> Result<(), NodeError> {
    let user_key = args
        .curve_server_key
        .as_deref()
        .map(public_key_from_z85)
        .transpose()
        .map_err(|e| invalid(format!("server key: {e}")))?;
    // Found by discovery, the node stays up: a server restarted elsewhere (a new port) is
    // followed.
    let (mut node, mut server) = match &args.from {
        Some(endpoint) => (None, Server::at(endpoint)),
        None => {
            let mut node = args.discovery.node("harmony-files-sync").start().await?;
            eprintln!(
                "harmony: looking for a file server on {}",
                node.interface().name
            );
            match find(&mut node).await {
                Some(server) => (Some(node), server),
                None => {
                    node.stop().await?;
                    return Err(invalid("no file server found"));
                }
            }
        }
    };
    let mut client = start_client(&args, &server, user_key)?;
    // A server discovery found since, at another endpoint: taken if the one in use fails.
    let mut elsewhere: Option<Server> = None;
    let mut connected = false;
    let mut progress = Progress::new();
    let mut in_sync = false;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = client.next_event() => {
                let Some(event) = event else { break };
                if args.once && matches!(event, SyncEvent::Synced | SyncEvent::Idle) {
                    in_sync = true;
                    break;
                }
                match event {
                    SyncEvent::Connected => connected = true,
                    SyncEvent::Disconnected { .. } => connected = false,
                    _ => {}
                }
                progress.show(&event);
                if let Some(next) = elsewhere.take().filter(|_| !connected) {
                    client = switch(client, &args, &next, user_key)?;
                    server = next;
                }
            }
            Some(event) = next_event(&mut node) => match (Server::in_event(&event), event) {
                // Another server (another tree, another host): not ours to follow.
                (Some(found), _) if !found.same_tree(&server) => {}
                (Some(found), _) if found.endpoint == server.endpoint => {
                    // The same endpoint (a fixed --bind): the client reconnects by itself.
                    server = found;
                    elsewhere = None;
                }
                (Some(found), _) if connected => elsewhere = Some(found),
                (Some(found), _) => {
                    client = switch(client, &args, &found, user_key)?;
                    server = found;
                }
                (None, harmony::Event::Exit { peer, .. })
                    if elsewhere.as_ref().is_some_and(|s| s.peer == Some(peer)) =>
                {
                    elsewhere = None;
                }
                _ => {}
            },
        }
    }
    progress.finish(in_sync);
    if let Some(mut node) = node {
        node.stop().await?;
    }
    stop_client(client);
    Ok(())
}

/// A file server: its endpoint, its CURVE key if it advertises one, what it publishes
/// (`X-FILEMQ-TREE`) and the peer that advertised it (neither when given with `--from`).
struct Server {
    endpoint: String,
    key: Option<[u8; 32]>,
    tree: Option<String>,
    peer: Option<harmony::Uuid>,
}

impl Server {
    fn at(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            key: None,
            tree: None,
            peer: None,
        }
    }

    /// Whether `self` is `other` restarted: the same host, publishing the same tree.
    fn same_tree(&self, other: &Self) -> bool {
        let host = |e: &str| e.rsplit_once(':').map(|(host, _)| host.to_string());
        self.tree.is_some()
            && self.tree == other.tree
            && host(&self.endpoint) == host(&other.endpoint)
    }

    /// The file server a discovery event announces, if it does.
    fn in_event(event: &harmony::Event) -> Option<Self> {
        let endpoint = discovery::server_in(event)?;
        let harmony::Event::Enter { peer, headers, .. } = event else {
            return None;
        };
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        Some(Self {
            endpoint,
            key: header(KEY_HEADER).and_then(|z85| public_key_from_z85(z85).ok()),
            tree: header(TREE_HEADER).cloned(),
            peer: Some(*peer),
        })
    }
}

/// The first file server discovery finds (waiting up to 30 s).
async fn find(node: &mut Node) -> Option<Server> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, node.next_event())
            .await
            .ok()??;
        if let Some(server) = Server::in_event(&event) {
            return Some(server);
        }
    }
}

/// The node's next event; never, without a node.
async fn next_event(node: &mut Option<Node>) -> Option<harmony::Event> {
    match node {
        Some(node) => node.next_event().await,
        None => std::future::pending().await,
    }
}

/// Starts mirroring `server` (with the key given on the command line, else the one it
/// advertises).
fn start_client(
    args: &SyncArgs,
    server: &Server,
    user_key: Option<[u8; 32]>,
) -> Result<FileClient, NodeError> {
    let mut options = SocketOptions::default();
    if let Some(server_key) = user_key.or(server.key) {
        options = options.mechanism(MechanismConfig::CurveClient {
            keys: KeyPair::generate(),
            server_key,
        });
    }
    eprintln!(
        "harmony: mirroring {} {} into {}",
        server.endpoint,
        args.path,
        args.dest.display()
    );
    FileClient::builder(&args.dest, server.endpoint.clone())
        .subscribe(vec![args.path.clone()])
        .quiet_period(Duration::from_secs(2))
        .socket_options(options)
        .start()
        .map_err(invalid)
}

/// Stops `client` and mirrors `server` instead, from what is on disk (partial files resume).
fn switch(
    client: FileClient,
    args: &SyncArgs,
    server: &Server,
    user_key: Option<[u8; 32]>,
) -> Result<FileClient, NodeError> {
    stop_client(client);
    eprintln!("harmony: the file server is now at {}", server.endpoint);
    start_client(args, server, user_key)
}

/// Stops `client`. A disk that is full, a directory that may not be written or vanished: said
/// as it is (NodeError has no words for it), exit status 1.
fn stop_client(client: FileClient) {
    if let Err(e) = client.stop() {
        let e: FilesError = e;
        eprintln!("harmony: files sync: {e}");
        std::process::exit(1);
    }
}

/// Progress on stderr: bars per file and overall on a terminal, one line per file otherwise;
/// either way a closing line saying what was done.
struct Progress {
    bars: Option<(MultiProgress, ProgressBar)>,
    file: Option<ProgressBar>,
    updated: u64,
    deleted: u64,
    /// Content bytes of the files updated.
    bytes: u64,
    started: std::time::Instant,
    /// Said of the server being away, until a connection comes (when stderr is not a
    /// terminal): why the connection was lost, or empty when the server has not answered yet.
    down: Option<String>,
    /// A connection was made once.
    connected: bool,
}

/// `1 file`, `2 files`.
fn count(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

impl Progress {
    fn new() -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            let total = multi.add(ProgressBar::new_spinner());
            total.set_style(
                ProgressStyle::with_template(
                    "{spinner} {binary_bytes} received ({binary_bytes_per_sec}) {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            total.enable_steady_tick(Duration::from_millis(100));
            (multi, total)
        });
        Self {
            bars,
            file: None,
            updated: 0,
            deleted: 0,
            bytes: 0,
            started: std::time::Instant::now(),
            down: None,
            connected: false,
        }
    }

    fn show(&mut self, event: &SyncEvent) {
        match event {
            SyncEvent::Updated { size, .. } => {
                self.updated += 1;
                self.bytes += size;
            }
            SyncEvent::Deleted { .. } => self.deleted += 1,
            _ => {}
        }
        let Some((multi, total)) = &self.bars else {
            match event {
                SyncEvent::Receiving { name, offset, .. } if *offset > 0 => {
                    eprintln!("resuming {name} at {offset} bytes")
                }
                SyncEvent::Updated { name, size, .. } => eprintln!("updated {name} ({size} bytes)"),
                SyncEvent::Deleted { name } => eprintln!("deleted {name}"),
                // Said once while the server stays away (a retry every half second would
                // say it again and again), and once when it is back.
                SyncEvent::Disconnected { reason } if self.down.as_ref() != Some(reason) => {
                    eprintln!("disconnected: {reason} (retrying)");
                    self.down = Some(reason.clone());
                }
                SyncEvent::Waiting if self.down.is_none() => {
                    eprintln!("the server does not answer yet (retrying)");
                    self.down = Some(String::new());
                }
                SyncEvent::Connected => {
                    let back = self.down.take().is_some();
                    if back {
                        let again = if self.connected {
                            "reconnected"
                        } else {
                            "connected"
                        };
                        eprintln!("{again}");
                    }
                    self.connected = true;
                }
                _ => {}
            }
            return;
        };
        match event {
            SyncEvent::Receiving { name, offset, size } => {
                let bar = multi.add(ProgressBar::new(size.unwrap_or(0)));
                bar.set_style(
                    ProgressStyle::with_template(
                        "  {msg:30!} {bar:30} {binary_bytes}/{binary_total_bytes}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_message(name.clone());
                bar.set_position(*offset);
                if let Some(old) = self.file.replace(bar) {
                    old.finish_and_clear();
                }
            }
            SyncEvent::Progress { offset, .. } => {
                if let Some(bar) = &self.file {
                    total.inc(offset.saturating_sub(bar.position()));
                    bar.set_position(*offset);
                }
            }
            SyncEvent::Updated { name, size, .. } => {
                if let Some(bar) = self.file.take() {
                    // The write that completes a file has no Progress event of its own.
                    total.inc(size.saturating_sub(bar.position()));
                    bar.finish_and_clear();
                }
                total.set_message(format!(
                    "{} updated, last {name}",
                    count(self.updated, "file")
                ));
            }
            SyncEvent::Deleted { name } => total.set_message(format!("deleted {name}")),
            SyncEvent::Disconnected { reason } => {
                total.set_message(format!("reconnecting: {reason}"))
            }
            SyncEvent::Waiting => total.set_message("the server does not answer yet"),
            SyncEvent::Connected => total.set_message(""),
            _ => {}
        }
    }

    /// Clears the bars and says what was done, `in_sync` when the server's content is all
    /// on disk.
    fn finish(self, in_sync: bool) {
        if let Some((multi, total)) = &self.bars {
            if let Some(bar) = &self.file {
                bar.finish_and_clear();
            }
            total.finish_and_clear();
            let _ = multi.clear();
        }
        eprintln!(
            "harmony: {}: {} updated ({}), {} deleted in {:.1} s",
            if in_sync { "in sync" } else { "stopped" },
            count(self.updated, "file"),
            indicatif::BinaryBytes(self.bytes),
            count(self.deleted, "file"),
            self.started.elapsed().as_secs_f64()
        );
    }
}
