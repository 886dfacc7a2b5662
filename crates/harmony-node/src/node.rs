//! The combined node: UDP discovery, a ZMTP inbox and one outbound connection per peer,
//! driven by the sans-IO ZRE state machine of `harmony-group`.
//!
//! ```no_run
//! # async fn chat() -> Result<(), harmony_node::NodeError> {
//! use harmony_node::{Event, Node};
//! let mut node = Node::builder().name("alice").header("X-ROLE", "demo").loopback().start().await?;
//! node.join("CHAT").await?;
//! node.shout("CHAT", "hello").await?;
//! while let Some(event) = node.next_event().await {
//!     if let Event::Shout { name, content, .. } = &event {
//!         println!("{name}: {}", String::from_utf8_lossy(&content[0]));
//!     }
//! #   break;
//! }
//! node.stop().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use harmony_beacon::{Beacon, BeaconConfig, InterfaceSelect, SelectedInterface, ZreBeacon};
use harmony_group::{Action, Event, NodeConfig, ZreNode};
use harmony_security::{public_key_from_z85, KeyPair, MechanismConfig};
use harmony_wire::zre::{ZreBody, ZreMessage};
use harmony_zmtp::{DealerSocket, Message, RouterSocket, SocketOptions, TrySendError};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::error::NodeError;

/// Largest first frame of a ZRE message accepted (HELLO with its headers and groups).
const MAX_ZRE_HEADER: usize = 1 << 20;
/// Most commands or inbox messages handled per wake-up before timers and events get a turn.
const BATCH: usize = 256;
/// The HELLO header that carries a node's CURVE public key (Z85), as in Zyre.
pub const PUBLIC_KEY_HEADER: &str = "X-PUBLICKEY";
/// Bytes reserved at a time for encoding outgoing ZRE first frames (many messages per block).
const ENCODE_BLOCK: usize = 8 << 10;
/// Largest whole message accepted on the inbox.
const MAX_MESSAGE: usize = 256 << 20;

/// Settings for a [`Node`]; start it with [`NodeBuilder::start`].
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    config: NodeConfig,
    beacon: BeaconConfig,
    send_hwm: usize,
    event_queue: usize,
    contests: Vec<String>,
    curve: Option<KeyPair>,
}

impl Default for NodeBuilder {
    fn default() -> Self {
        let config = NodeConfig::random();
        // Zyre: SNDHWM = expired timeout (ms) x 100 would be millions; pyre's 100 msg/s x 30 s is
        // the RFC's figure. Harmony keeps a bigger queue so bursts pass, and still bounds it.
        Self {
            config,
            beacon: BeaconConfig::default(),
            send_hwm: 100_000,
            event_queue: 4096,
            contests: Vec::new(),
            curve: None,
        }
    }
}

impl NodeBuilder {
    /// The node's name (default: the first 6 hex digits of its UUID, as in Zyre).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// A fixed UUID instead of a random one.
    pub fn uuid(mut self, uuid: Uuid) -> Self {
        let default_name = harmony_peer::uuid_string(&self.config.uuid)[..6].to_owned();
        if self.config.name == default_name {
            self.config.name = harmony_peer::uuid_string(&uuid)[..6].to_owned();
        }
        self.config.uuid = uuid;
        self
    }

    /// Adds a header sent to every peer in HELLO.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.push((key.into(), value.into()));
        self
    }

    /// The beacon interface: `auto`, `loopback`, a name (`eth0`) or an address.
    pub fn interface(mut self, select: impl Into<InterfaceSelectArg>) -> Self {
        self.beacon.interface = select.into().0;
        self
    }

    /// One-machine mode: beacons to 127.255.255.255, inbox on 127.0.0.1.
    pub fn loopback(self) -> Self {
        self.interface(InterfaceSelect::Loopback)
    }

    /// The UDP discovery port (default 5670).
    pub fn port(mut self, port: u16) -> Self {
        self.beacon.port = port;
        self
    }

    /// Time between beacons (default 1 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.beacon.interval = interval;
        self
    }

    /// Quiet time before a peer is PINGed and reported EVASIVE (default 5 s).
    pub fn evasive_timeout(mut self, timeout: Duration) -> Self {
        self.config.peer.evasive_timeout = timeout;
        self
    }

    /// Quiet time before a peer is removed (EXIT) (default 30 s).
    pub fn expired_timeout(mut self, timeout: Duration) -> Self {
        self.config.peer.expired_timeout = timeout;
        self
    }

    /// Takes part in leader election for `group` (ELECT/LEADER, Zyre's draft extension).
    pub fn contest(mut self, group: impl Into<String>) -> Self {
        self.contests.push(group.into());
        self
    }

    /// Capacity of each peer's outbound queue; a peer whose queue overflows is disconnected.
    pub fn send_hwm(mut self, messages: usize) -> Self {
        self.send_hwm = messages.max(1);
        self
    }

    /// Encrypted mode, as Zyre's `zyre_set_zcert`: the inbox is a CURVE server with these keys,
    /// the `X-PUBLICKEY` header carries the public key in Z85, beacons are version 3 (with the
    /// key), and every outbound connection is a CURVE client of the peer's key. Plaintext nodes
    /// (v1 beacons, HELLOs without `X-PUBLICKEY`) are ignored: nobody is downgraded.
    pub fn curve(mut self, keys: KeyPair) -> Self {
        self.curve = Some(keys);
        self
    }

    /// Selects the interface, binds the inbox, starts beacons and the driver task.
    pub async fn start(self) -> Result<Node, NodeError> {
        let Self {
            mut config,
            beacon,
            send_hwm,
            event_queue,
            contests,
            curve,
        } = self;
        if config.name.len() > 255 {
            return Err(NodeError::Invalid(format!(
                "name is {} bytes, at most 255 fit",
                config.name.len()
            )));
        }
        for (k, _) in &config.headers {
            if k.len() > 255 {
                return Err(NodeError::Invalid(format!(
                    "header name {k:?} is over 255 bytes"
                )));
            }
        }
        if let Some(keys) = &curve {
            config.headers.retain(|(k, _)| k != PUBLIC_KEY_HEADER);
            config
                .headers
                .push((PUBLIC_KEY_HEADER.to_owned(), keys.public_z85()));
        }
        let interface = beacon.select_interface()?;
        let mut inbox_options = SocketOptions::default()
            .router_handover(true)
            .max_msg_size(MAX_MESSAGE)
            .recv_hwm(100_000);
        if let Some(keys) = &curve {
            inbox_options =
                inbox_options.mechanism(MechanismConfig::CurveServer { keys: keys.clone() });
        }
        let inbox = RouterSocket::new(inbox_options);
        let bound = inbox.bind(&inbox_bind_endpoint(&interface)).await?;
        config.endpoint = interface.tcp_endpoint(bound.port());
        let payload = ZreBeacon {
            uuid: config.uuid,
            port: bound.port(),
            public_key: curve.as_ref().map(|k| *k.public()),
        };
        let beacons = Beacon::start_on(interface.clone(), &beacon, payload)?;
        info!(uuid = %config.uuid, name = %config.name, endpoint = %config.endpoint,
              interface = %interface.name, "node started");

        let (uuid, name, endpoint) = (config.uuid, config.name.clone(), config.endpoint.clone());
        let mut core = ZreNode::new(config, std::time::Instant::now());
        for group in &contests {
            core.contest_in_group(group);
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (event_tx, event_rx) = mpsc::channel(event_queue.max(1));
        let state = Arc::new(Mutex::new(State {
            core,
            curve,
            peer_keys: HashMap::new(),
            dealers: HashMap::new(),
            send_hwm,
            events: Vec::new(),
            encoded: BytesMut::new(),
        }));
        let wake = Arc::new(Notify::new());
        let driver = Driver {
            state: state.clone(),
            wake: wake.clone(),
            inbox,
            beacons: Some(beacons),
            events: event_tx,
            outbox: Vec::new(),
            commands: cmd_rx,
        };
        let task = tokio::spawn(driver.run());
        Ok(Node {
            uuid,
            name,
            endpoint,
            interface,
            state,
            wake,
            commands: cmd_tx,
            events: event_rx,
            pending: std::collections::VecDeque::new(),
            scratch: Vec::new(),
            task: Some(task),
        })
    }
}

/// Accepts `InterfaceSelect` or a string (`"loopback"`, `"eth0"`, `"10.0.0.1"`).
#[derive(Debug, Clone)]
pub struct InterfaceSelectArg(InterfaceSelect);

impl From<InterfaceSelect> for InterfaceSelectArg {
    fn from(select: InterfaceSelect) -> Self {
        Self(select)
    }
}

impl From<&str> for InterfaceSelectArg {
    fn from(s: &str) -> Self {
        // `lo` means loopback mode too: nobody wants a beacon that cannot leave anyway.
        Self(if s == "lo" {
            InterfaceSelect::Loopback
        } else {
            s.parse().unwrap_or_default()
        })
    }
}

fn inbox_bind_endpoint(interface: &SelectedInterface) -> String {
    match interface.address {
        IpAddr::V4(a) => format!("tcp://{a}:0"),
        IpAddr::V6(a) => format!("tcp://[{a}]:0"),
    }
}

type Query = Box<dyn FnOnce(&ZreNode) + Send>;

enum Command {
    Query(Query),
    Stop,
}

/// A running Harmony node. Commands never wait on the network: whisper, shout, join and leave
/// run the state machine on the caller's task and queue on the peers' connections; a background
/// task reads the inbox, beacons and timers.
pub struct Node {
    uuid: Uuid,
    name: String,
    endpoint: String,
    interface: SelectedInterface,
    state: Arc<Mutex<State>>,
    /// Tells the driver that direct calls left events (e.g. EXIT after a send failure) to hand out.
    wake: Arc<Notify>,
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    /// Events taken from the channel in bulk, handed out one by one.
    pending: std::collections::VecDeque<Event>,
    /// Reused buffer for `recv_many`.
    scratch: Vec<Event>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Most events moved from the channel in one go.
const EVENT_BATCH: usize = 256;

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Query(_) => "Query",
            Self::Stop => "Stop",
        })
    }
}

/// Message content: one frame (`&str`, `String`, `Vec<u8>`, `Bytes`) or several.
#[derive(Debug, Clone, Default)]
pub struct Content(pub Vec<Bytes>);

macro_rules! single_frame_content {
    ($($t:ty),*) => {$(
        impl From<$t> for Content {
            fn from(v: $t) -> Self {
                Self(vec![Bytes::from(v)])
            }
        }
    )*};
}
single_frame_content!(&'static str, String, Vec<u8>, Bytes, &'static [u8]);

impl From<Vec<Bytes>> for Content {
    fn from(frames: Vec<Bytes>) -> Self {
        Self(frames)
    }
}

impl Node {
    /// Settings for a new node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// This node's UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node's inbox endpoint as advertised to peers.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The interface discovery runs on.
    pub fn interface(&self) -> &SelectedInterface {
        &self.interface
    }

    async fn command(&self, cmd: Command) -> Result<(), NodeError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// Runs a command on the state machine here, then queues what it sends.
    fn direct<T>(&self, f: impl FnOnce(&mut ZreNode) -> T) -> Result<T, NodeError> {
        let mut state = lock(&self.state);
        if state.core.is_stopped() {
            return Err(NodeError::Stopped);
        }
        let out = f(&mut state.core);
        state.run_actions();
        let wake = state.collect_events();
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        Ok(out)
    }

    /// Joins a group (JOIN goes to every peer).
    pub async fn join(&self, group: impl Into<String>) -> Result<(), NodeError> {
        let group = group.into();
        self.direct(|core| {
            core.join(&group);
        })
    }

    /// Leaves a group.
    pub async fn leave(&self, group: impl Into<String>) -> Result<(), NodeError> {
        let group = group.into();
        self.direct(|core| {
            core.leave(&group);
        })
    }

    /// Sends a message to one peer; an error if no ready peer has this UUID. Does not wait for
    /// the network: the message is queued (a peer that left meanwhile drops it, as in Zyre).
    pub async fn whisper(&self, peer: Uuid, content: impl Into<Content>) -> Result<(), NodeError> {
        let content = content.into().0;
        self.direct(|core| core.whisper(peer, content))?
            .map_err(|_| NodeError::UnknownPeer(peer))
    }

    /// Sends a message to every peer in a group (we need not be in it).
    pub async fn shout(
        &self,
        group: impl Into<String>,
        content: impl Into<Content>,
    ) -> Result<(), NodeError> {
        let (group, content) = (group.into(), content.into().0);
        self.direct(|core| {
            core.shout(&group, content);
        })
    }

    /// The next event; `None` once the node has stopped and every event was read.
    pub async fn next_event(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_next_event(cx)).await
    }

    /// Polls for the next event (for combining several nodes or building a `Stream`).
    pub fn poll_next_event(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        if let Some(event) = self.pending.pop_front() {
            return std::task::Poll::Ready(Some(event));
        }
        match self
            .events
            .poll_recv_many(cx, &mut self.scratch, EVENT_BATCH)
        {
            std::task::Poll::Ready(0) => std::task::Poll::Ready(None),
            std::task::Poll::Ready(_) => {
                self.pending.extend(self.scratch.drain(..));
                std::task::Poll::Ready(self.pending.pop_front())
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<Event> {
        self.pending
            .pop_front()
            .or_else(|| self.events.try_recv().ok())
    }

    /// Runs `f` on the node's state and returns what it computes.
    async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ZreNode) -> T + Send + 'static,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Query(Box::new(move |core| {
            let _ = tx.send(f(core));
        })))
        .await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// UUIDs of the known (ready) peers.
    pub async fn peers(&self) -> Result<Vec<Uuid>, NodeError> {
        self.query(|c| c.peers()).await
    }

    /// UUIDs of the peers in a group.
    pub async fn peers_by_group(&self, group: impl Into<String>) -> Result<Vec<Uuid>, NodeError> {
        let group = group.into();
        self.query(move |c| c.peers_by_group(&group)).await
    }

    /// The groups this node is in.
    pub async fn own_groups(&self) -> Result<Vec<String>, NodeError> {
        self.query(|c| c.own_groups()).await
    }

    /// The groups known peers are in.
    pub async fn peer_groups(&self) -> Result<Vec<String>, NodeError> {
        self.query(|c| c.peer_groups()).await
    }

    /// A peer's name.
    pub async fn peer_name(&self, peer: Uuid) -> Result<Option<String>, NodeError> {
        self.query(move |c| c.peer_name(peer).map(str::to_owned))
            .await
    }

    /// A peer's inbox endpoint (`tcp://ip:port`).
    pub async fn peer_address(&self, peer: Uuid) -> Result<Option<String>, NodeError> {
        self.query(move |c| c.peer_endpoint(peer).map(str::to_owned))
            .await
    }

    /// One of a peer's headers.
    pub async fn peer_header_value(
        &self,
        peer: Uuid,
        key: impl Into<String>,
    ) -> Result<Option<String>, NodeError> {
        let key = key.into();
        self.query(move |c| c.peer_header_value(peer, &key).map(str::to_owned))
            .await
    }

    /// Everything known about the peers: uuid, name, endpoint, groups, headers.
    pub async fn peer_infos(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.query(|c| {
            c.peers()
                .into_iter()
                .filter_map(|uuid| {
                    let p = c.peer(uuid)?;
                    Some(PeerInfo {
                        uuid,
                        name: p.name().to_owned(),
                        endpoint: p.endpoint().to_owned(),
                        groups: p.groups().iter().cloned().collect(),
                        headers: p.headers().to_vec(),
                    })
                })
                .collect()
        })
        .await
    }

    /// Stops: a port-0 beacon tells peers we are leaving, a STOP event ends the stream.
    /// Events not read yet stay readable with [`Node::next_event`].
    pub async fn stop(&mut self) -> Result<(), NodeError> {
        let _ = self.commands.send(Command::Stop).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        Ok(())
    }
}

/// The next event of any of several nodes (e.g. many nodes in one process), with the index of
/// the node it came from; `None` once every node has stopped and been drained.
pub async fn next_event_any(nodes: &mut [Node]) -> Option<(usize, Event)> {
    std::future::poll_fn(|cx| {
        let mut open = false;
        for (i, node) in nodes.iter_mut().enumerate() {
            match node.poll_next_event(cx) {
                std::task::Poll::Ready(Some(ev)) => return std::task::Poll::Ready(Some((i, ev))),
                std::task::Poll::Ready(None) => {}
                std::task::Poll::Pending => open = true,
            }
        }
        if open {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(None)
        }
    })
    .await
}

/// What a node knows of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's UUID.
    pub uuid: Uuid,
    /// Its name.
    pub name: String,
    /// Its inbox endpoint.
    pub endpoint: String,
    /// The groups it is in.
    pub groups: Vec<String>,
    /// Its headers.
    pub headers: Vec<(String, String)>,
}

/// The state machine and the outbound connections, shared by the driver task and the
/// application's direct calls. Never locked across an `.await`.
struct State {
    core: ZreNode,
    /// Our keys in encrypted mode.
    curve: Option<KeyPair>,
    /// Peers' CURVE public keys, from their v3 beacons or their HELLO's `X-PUBLICKEY`.
    peer_keys: HashMap<Uuid, [u8; 32]>,
    dealers: HashMap<Uuid, DealerSocket>,
    send_hwm: usize,
    /// Events taken from the state machine, waiting for the driver to hand them out.
    events: Vec<Event>,
    /// Spare room where outgoing ZRE first frames are encoded.
    encoded: BytesMut,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while locked leaves the state as it was at the panic; carry on with it.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The background task: moves bytes and timers, the state machine decides.
struct Driver {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    inbox: RouterSocket,
    beacons: Option<Beacon>,
    events: mpsc::Sender<Event>,
    /// Events on their way from the state to the channel.
    outbox: Vec<Event>,
    commands: mpsc::Receiver<Command>,
}

impl Driver {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    async fn run(mut self) {
        loop {
            if !self.flush().await {
                break;
            }
            let deadline = self.state().core.poll_timeout().map(Instant::from_std);
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Query(f)) => f(&self.state().core),
                    Some(Command::Stop) | None => {
                        self.state().core.stop();
                        self.flush().await;
                        break;
                    }
                },
                () = self.wake.notified() => {}
                msg = self.inbox.recv() => match msg {
                    Ok(msg) => {
                        let now = std::time::Instant::now();
                        let mut state = lock(&self.state);
                        state.on_inbox(msg, now);
                        // Take what else has arrived in one go: one wake-up, many messages.
                        for _ in 0..BATCH {
                            match self.inbox.try_recv() {
                                Ok(Some(msg)) => state.on_inbox(msg, now),
                                _ => break,
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "inbox closed");
                        self.state().core.stop();
                        self.flush().await;
                        break;
                    }
                },
                heard = recv_beacon(&mut self.beacons) => {
                    if let Some((beacon, from)) = heard {
                        let mut state = self.state();
                        if let Some(key) = beacon.public_key {
                            state.peer_keys.insert(beacon.uuid, key);
                        }
                        state.core.handle_beacon(beacon.uuid, from.ip(), beacon.port, std::time::Instant::now());
                    } else {
                        self.beacons = None;
                    }
                }
                () = sleep_until(deadline) => self.state().core.handle_timeout(std::time::Instant::now()),
            }
        }
        self.shutdown().await;
    }

    /// Carries out the state machine's actions and hands its events to the application.
    /// Returns false when the application dropped the node.
    async fn flush(&mut self) -> bool {
        {
            let mut state = lock(&self.state);
            state.run_actions();
            state.collect_events();
            // Swapped, not taken: both buffers keep their room from one batch to the next.
            std::mem::swap(&mut state.events, &mut self.outbox);
        }
        for event in self.outbox.drain(..) {
            // Straight into the channel while it has room; wait only when it is full.
            let event = match self.events.try_send(event) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(event)) => event,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            };
            if self.events.send(event).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn shutdown(mut self) {
        if let Some(beacons) = self.beacons.take() {
            if let Err(e) = beacons.stop().await {
                debug!(error = %e, "beacon stop");
            }
        }
        let dealers: Vec<DealerSocket> = self.state().dealers.drain().map(|(_, d)| d).collect();
        for dealer in dealers {
            dealer.close().await;
        }
        self.inbox.close().await;
    }
}

impl State {
    /// Carries out every pending action of the state machine.
    fn run_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            self.execute(action);
        }
    }

    /// Moves the state machine's events to the hand-out buffer; true if there were any.
    fn collect_events(&mut self) -> bool {
        let before = self.events.len();
        while let Some(event) = self.core.poll_event() {
            self.events.push(event);
        }
        self.events.len() > before
    }

    fn on_inbox(&mut self, msg: Message, now: std::time::Instant) {
        let frames = msg.frames();
        let Some(from) = frames
            .first()
            .and_then(|id| harmony_peer::uuid_from_routing_id(id))
        else {
            debug!("dropped a message whose routing id is not 0x01 + UUID");
            return;
        };
        match ZreMessage::decode(&frames[1..], MAX_ZRE_HEADER) {
            Ok(message) => {
                if self.curve.is_some() {
                    if let ZreBody::Hello(hello) = &message.body {
                        let key = hello
                            .headers
                            .iter()
                            .find(|(k, _)| k == PUBLIC_KEY_HEADER)
                            .and_then(|(_, v)| public_key_from_z85(v).ok());
                        match key {
                            Some(key) => {
                                self.peer_keys.insert(from, key);
                            }
                            None => {
                                debug!(peer = %from, "HELLO without a valid X-PUBLICKEY ignored (encrypted mode)");
                                return;
                            }
                        }
                    }
                }
                self.core.handle_message(from, message, now)
            }
            Err(e) => {
                debug!(peer = %from, error = %e, "malformed ZRE message");
                self.core.handle_malformed(from, now);
            }
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Connect { peer, endpoint } => {
                let mut options = SocketOptions::default()
                    .identity(Bytes::copy_from_slice(&harmony_peer::routing_id(
                        &self.core.uuid(),
                    )))
                    .send_hwm(self.send_hwm)
                    .linger(Duration::ZERO);
                if let Some(keys) = &self.curve {
                    let Some(server_key) = self.peer_keys.get(&peer) else {
                        warn!(peer = %peer, "no CURVE key known for this peer; not connecting");
                        self.core
                            .handle_send_failed(peer, std::time::Instant::now());
                        return;
                    };
                    options = options.mechanism(MechanismConfig::CurveClient {
                        keys: keys.clone(),
                        server_key: *server_key,
                    });
                }
                let dealer = DealerSocket::new(options);
                if let Err(e) = connect_now(&dealer, &endpoint) {
                    warn!(peer = %peer, endpoint = %endpoint, error = %e, "cannot connect to peer");
                }
                self.dealers.insert(peer, dealer);
            }
            Action::Send { peer, message } => {
                let Some(dealer) = self.dealers.get(&peer) else {
                    debug!(peer = %peer, "send to a peer without connection");
                    return;
                };
                // Encoded straight into the outgoing message; first frames are cut from one
                // reused block instead of one allocation each.
                if self.encoded.capacity() < message.encoded_len() {
                    self.encoded
                        .reserve(ENCODE_BLOCK.max(message.encoded_len()));
                }
                let mut frames = Message::new();
                if let Err(e) = message.encode_frames(&mut self.encoded, &mut frames) {
                    warn!(peer = %peer, error = %e, "message cannot be encoded; dropped");
                    return;
                }
                match dealer.try_send(frames) {
                    Ok(()) => {}
                    Err(TrySendError::WouldBlock(_)) => {
                        warn!(peer = %peer, "peer cannot keep up; disconnecting it");
                        self.core
                            .handle_send_failed(peer, std::time::Instant::now());
                    }
                    Err(e) => debug!(peer = %peer, error = %e, "send failed"),
                }
            }
            Action::Disconnect { peer } => {
                self.dealers.remove(&peer);
            }
        }
    }
}

/// `DealerSocket::connect` only starts a background task; call it without awaiting the network.
fn connect_now(dealer: &DealerSocket, endpoint: &str) -> Result<(), harmony_zmtp::ZmtpError> {
    let fut = dealer.connect(endpoint);
    futures_now(fut)
}

/// Polls a future that completes without waiting (connect only validates and spawns).
fn futures_now<T>(fut: impl std::future::Future<Output = Result<(), T>>) -> Result<(), T> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => Ok(()),
    }
}

async fn recv_beacon(beacons: &mut Option<Beacon>) -> Option<harmony_beacon::Heard> {
    match beacons {
        Some(b) => b.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
