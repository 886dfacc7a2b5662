//! The gossip node on real sockets: a ROUTER server (bound on demand), one DEALER per remote,
//! driven by [`GossipCore`] in a tokio task.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use harmony_security::{KeyPair, MechanismConfig};
use harmony_wire::zgp::ZgpMessage;
use harmony_zmtp::{DealerSocket, Endpoint, Message, RouterSocket, SocketOptions, ZmtpError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::core::{GossipConfig, GossipCore, GossipEvent, Link};

/// Largest ZGP frame accepted (a tuple's value is an endpoint and a key, not a file).
const MAX_ZGP: usize = 64 << 10;
/// Queue of each gossip connection; czmq's is unbounded, the tuple set bounds it in practice.
const GOSSIP_HWM: usize = 10_000;

enum Command {
    Bind(String, oneshot::Sender<Result<Endpoint, ZmtpError>>),
    Connect(
        String,
        Option<[u8; 32]>,
        oneshot::Sender<Result<(), ZmtpError>>,
    ),
    Publish(String, String),
    Unpublish(String),
    Count(oneshot::Sender<usize>),
    Get(String, oneshot::Sender<Option<String>>),
}

/// A running gossip node (czmq's `zgossip` actor, Harmony's expiring tuples): bind a server,
/// connect to remotes, publish tuples, receive what the network delivers.
#[derive(Debug)]
pub struct Gossip {
    handle: GossipHandle,
    events: mpsc::Receiver<GossipEvent>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bind(..) => "Bind",
            Self::Connect(..) => "Connect",
            Self::Publish(..) => "Publish",
            Self::Unpublish(_) => "Unpublish",
            Self::Count(_) => "Count",
            Self::Get(..) => "Get",
        })
    }
}

impl Gossip {
    /// Starts the gossip task. With `curve` keys the server is a CURVE server with them and
    /// remotes given a server key are CURVE clients with them.
    pub fn start(config: GossipConfig, curve: Option<KeyPair>) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (event_tx, event_rx) = mpsc::channel(1024);
        let (remote_tx, remote_rx) = mpsc::channel(1024);
        let driver = Driver {
            core: GossipCore::new(config, Instant::now()),
            curve,
            server: None,
            remotes: Vec::new(),
            readers: Vec::new(),
            remote_tx,
            remote_rx,
            commands: cmd_rx,
            events: event_tx,
        };
        Self {
            handle: GossipHandle { commands: cmd_tx },
            events: event_rx,
            task: Some(tokio::spawn(driver.run())),
        }
    }

    /// A handle for commands from elsewhere (it does not keep the task alive).
    pub fn handle(&self) -> GossipHandle {
        self.handle.clone()
    }

    /// Binds the gossip server (Zyre's `gossip_bind`); returns the endpoint bound.
    pub async fn bind(&self, endpoint: &str) -> Result<Endpoint, ZmtpError> {
        self.handle.bind(endpoint).await
    }

    /// Connects to a gossip server (Zyre's `gossip_connect`; with `server_key`,
    /// `gossip_connect_curve`). Reconnects by itself.
    pub async fn connect(
        &self,
        endpoint: &str,
        server_key: Option<[u8; 32]>,
    ) -> Result<(), ZmtpError> {
        self.handle.connect(endpoint, server_key).await
    }

    /// Publishes a tuple of ours, kept alive until [`Gossip::unpublish`].
    pub async fn publish(&self, key: &str, value: &str) -> Result<(), ZmtpError> {
        self.handle.publish(key, value).await
    }

    /// Forgets a tuple here (it comes back with its owner's next refresh).
    pub async fn unpublish(&self, key: &str) -> Result<(), ZmtpError> {
        self.handle.unpublish(key).await
    }

    /// The next delivery or expiry; `None` once stopped.
    pub async fn recv(&mut self) -> Option<GossipEvent> {
        self.events.recv().await
    }

    /// Stops the task and closes every socket.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Commands to a running [`Gossip`] from anywhere.
#[derive(Debug, Clone)]
pub struct GossipHandle {
    commands: mpsc::Sender<Command>,
}

impl GossipHandle {
    async fn command(&self, cmd: Command) -> Result<(), ZmtpError> {
        self.commands.send(cmd).await.map_err(|_| ZmtpError::Closed)
    }

    /// Binds the gossip server (Zyre's `gossip_bind`); returns the endpoint bound.
    pub async fn bind(&self, endpoint: &str) -> Result<Endpoint, ZmtpError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Bind(endpoint.to_owned(), tx)).await?;
        rx.await.map_err(|_| ZmtpError::Closed)?
    }

    /// Connects to a gossip server (Zyre's `gossip_connect`; with `server_key`,
    /// `gossip_connect_curve`). Reconnects by itself.
    pub async fn connect(
        &self,
        endpoint: &str,
        server_key: Option<[u8; 32]>,
    ) -> Result<(), ZmtpError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Connect(endpoint.to_owned(), server_key, tx))
            .await?;
        rx.await.map_err(|_| ZmtpError::Closed)?
    }

    /// Publishes a tuple of ours, kept alive until [`Gossip::unpublish`].
    pub async fn publish(&self, key: &str, value: &str) -> Result<(), ZmtpError> {
        self.command(Command::Publish(key.to_owned(), value.to_owned()))
            .await
    }

    /// Forgets a tuple here (it comes back with its owner's next refresh).
    pub async fn unpublish(&self, key: &str) -> Result<(), ZmtpError> {
        self.command(Command::Unpublish(key.to_owned())).await
    }

    /// The number of tuples held.
    pub async fn tuple_count(&self) -> Result<usize, ZmtpError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Count(tx)).await?;
        rx.await.map_err(|_| ZmtpError::Closed)
    }

    /// A tuple's value, if held.
    pub async fn get(&self, key: &str) -> Result<Option<String>, ZmtpError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Get(key.to_owned(), tx)).await?;
        rx.await.map_err(|_| ZmtpError::Closed)
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Driver {
    core: GossipCore,
    curve: Option<KeyPair>,
    server: Option<RouterSocket>,
    remotes: Vec<Arc<DealerSocket>>,
    /// One task per remote moving what it receives into `remote_rx`.
    readers: Vec<JoinHandle<()>>,
    remote_tx: mpsc::Sender<(usize, Message)>,
    remote_rx: mpsc::Receiver<(usize, Message)>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<GossipEvent>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

impl Driver {
    async fn run(mut self) {
        loop {
            self.flush();
            while let Some(event) = self.core.poll_event() {
                if self.events.send(event).await.is_err() {
                    return;
                }
            }
            let deadline = tokio::time::Instant::from_std(self.core.poll_timeout());
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => return,
                },
                msg = recv_server(&self.server) => match msg {
                    Ok(msg) => self.on_server(msg),
                    Err(e) => {
                        warn!(error = %e, "gossip server closed");
                        self.server = None;
                    }
                },
                Some((remote, msg)) = self.remote_rx.recv() => {
                    match msg.frames() {
                        [frame] => match ZgpMessage::decode(frame, MAX_ZGP) {
                            Ok(m) => self.core.handle_remote(remote, m, Instant::now()),
                            Err(e) => debug!(remote, error = %e, "malformed ZGP from a server"),
                        },
                        _ => debug!(remote, "ZGP message of several frames ignored"),
                    }
                }
                () = tokio::time::sleep_until(deadline) => self.core.handle_timeout(Instant::now()),
            }
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Bind(endpoint, reply) => {
                let server = self.server.get_or_insert_with(|| {
                    let mut options = SocketOptions::default()
                        .max_msg_size(MAX_ZGP)
                        .send_hwm(GOSSIP_HWM)
                        .linger(std::time::Duration::ZERO);
                    if let Some(keys) = &self.curve {
                        options =
                            options.mechanism(MechanismConfig::CurveServer { keys: keys.clone() });
                    }
                    RouterSocket::new(options)
                });
                let _ = reply.send(server.bind(&endpoint).await);
            }
            Command::Connect(endpoint, server_key, reply) => {
                let mut options = SocketOptions::default()
                    .max_msg_size(MAX_ZGP)
                    .send_hwm(GOSSIP_HWM)
                    .linger(std::time::Duration::ZERO);
                if let Some(server_key) = server_key {
                    let Some(keys) = &self.curve else {
                        let _ = reply.send(Err(ZmtpError::Closed));
                        return;
                    };
                    options = options.mechanism(MechanismConfig::CurveClient {
                        keys: keys.clone(),
                        server_key,
                    });
                }
                let dealer = Arc::new(DealerSocket::new(options));
                if let Err(e) = dealer.connect(&endpoint) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let remote = self.core.add_remote(Instant::now());
                debug_assert_eq!(remote, self.remotes.len());
                let (reader, tx) = (dealer.clone(), self.remote_tx.clone());
                self.readers.push(tokio::spawn(async move {
                    while let Ok(msg) = reader.recv().await {
                        if tx.send((remote, msg)).await.is_err() {
                            break;
                        }
                    }
                }));
                self.remotes.push(dealer);
                let _ = reply.send(Ok(()));
            }
            Command::Publish(key, value) => self.core.publish(&key, &value, Instant::now()),
            Command::Unpublish(key) => self.core.unpublish(&key),
            Command::Count(reply) => {
                let _ = reply.send(self.core.len());
            }
            Command::Get(key, reply) => {
                let _ = reply.send(self.core.get(&key).map(str::to_owned));
            }
        }
    }

    fn on_server(&mut self, msg: Message) {
        let [id, frame] = msg.frames() else {
            debug!("ZGP message of several frames ignored");
            return;
        };
        let id: Bytes = id.clone();
        match ZgpMessage::decode(frame, MAX_ZGP) {
            Ok(m) => self.core.handle_client(id, m, Instant::now()),
            Err(e) => {
                debug!(error = %e, "malformed ZGP from a client");
                self.core.handle_client_malformed(id);
            }
        }
    }

    /// Sends what the core wants sent; a full queue drops the message (the next refresh or
    /// HELLO repairs it).
    fn flush(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            let Ok(body) = t.message.to_bytes() else {
                warn!("unencodable ZGP message dropped");
                continue;
            };
            let sent = match t.to {
                Link::Client(id) => match &self.server {
                    Some(server) => server
                        .try_send(Message::from_frames([id, body]))
                        .map_err(drop),
                    None => Ok(()),
                },
                Link::Remote(n) => match self.remotes.get(n) {
                    Some(dealer) => dealer.try_send(Message::from_frames([body])).map_err(drop),
                    None => Ok(()),
                },
            };
            if sent.is_err() {
                debug!("gossip message not queued");
            }
        }
    }
}

async fn recv_server(server: &Option<RouterSocket>) -> Result<Message, ZmtpError> {
    match server {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
