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

use bytes::Bytes;
use harmony_beacon::gossip::{Gossip, GossipConfig, GossipEvent, GossipHandle};
use harmony_beacon::{Beacon, BeaconConfig, InterfaceSelect, SelectedInterface, ZreBeacon};
use harmony_group::{Action, Event, NodeConfig, ZreNode};
use harmony_security::{public_key_from_z85, KeyPair, MechanismConfig};
use harmony_wire::zre::{ZreBody, ZreMessage};
use harmony_zmtp::{DealerSocket, EventKind, Message, RouterSocket, SocketOptions, TrySendError};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::error::NodeError;
use crate::link::{self, LinkEvent, LINK_QUEUE};

/// Largest first frame of a ZRE message accepted (HELLO with its headers and groups).
const MAX_ZRE_HEADER: usize = 1 << 20;
/// Most commands or inbox messages handled per wake-up before timers and events get a turn.
const BATCH: usize = 256;
/// The HELLO header that carries a node's CURVE public key (Z85), as in Zyre.
pub const PUBLIC_KEY_HEADER: &str = "X-PUBLICKEY";
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
    gossip: GossipSettings,
}

/// Gossip discovery settings (Zyre's `gossip_bind`, `gossip_connect`, `set_endpoint`); any of
/// them turns beacons off.
#[derive(Debug, Clone, Default)]
struct GossipSettings {
    binds: Vec<String>,
    connects: Vec<(String, Option<[u8; 32]>)>,
    endpoint: Option<String>,
    ttl: Option<Option<Duration>>,
}

impl GossipSettings {
    fn enabled(&self) -> bool {
        !self.binds.is_empty() || !self.connects.is_empty() || self.endpoint.is_some()
    }
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
            gossip: GossipSettings::default(),
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

    /// How long a peer's dropped connection may take to come back before the peer is
    /// removed (EXIT) (default 1 s; Zyre waits for the evasive and expired timeouts).
    pub fn link_grace(mut self, grace: Duration) -> Self {
        self.config.link_grace = grace;
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

    /// Gossip discovery: binds a gossip hub here that other nodes (Harmony or Zyre) connect to
    /// (Zyre's `gossip_bind`). Turns UDP beacons off.
    pub fn gossip_bind(mut self, endpoint: impl Into<String>) -> Self {
        self.gossip.binds.push(endpoint.into());
        self
    }

    /// Gossip discovery: connects to a gossip hub (Zyre's `gossip_connect`); repeatable. Turns
    /// UDP beacons off.
    pub fn gossip_connect(mut self, endpoint: impl Into<String>) -> Self {
        self.gossip.connects.push((endpoint.into(), None));
        self
    }

    /// Gossip discovery over CURVE: connects to a hub whose CURVE public key is `server_key`
    /// (Zyre's `gossip_connect_curve`); needs [`NodeBuilder::curve`].
    pub fn gossip_connect_curve(
        mut self,
        server_key: [u8; 32],
        endpoint: impl Into<String>,
    ) -> Self {
        self.gossip
            .connects
            .push((endpoint.into(), Some(server_key)));
        self
    }

    /// The inbox endpoint to bind and advertise (Zyre's `set_endpoint`), e.g.
    /// `tcp://10.0.0.5:7101`; a `*` host or port 0 is replaced by what was bound. Turns UDP
    /// beacons off: peers learn the endpoint by gossip.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.gossip.endpoint = Some(endpoint.into());
        self
    }

    /// Time to live of this node's gossip tuple (default 30 s; refreshed every third of it);
    /// `None` publishes it forever, as czmq does.
    pub fn gossip_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.gossip.ttl = Some(ttl);
        self
    }

    /// The CURVE key pair of encrypted mode ([`curve`](Self::curve)), if set: protocols beside
    /// ZRE (the pipeline) secure their own sockets with it, the key already advertised in
    /// `X-PUBLICKEY`.
    pub fn curve_keys(&self) -> Option<&KeyPair> {
        self.curve.as_ref()
    }

    /// The interface [`start`](Self::start) will use, chosen now: protocols beside ZRE (the
    /// pipeline) bind their own sockets on its address and advertise them in headers.
    pub fn selected_interface(&self) -> Result<SelectedInterface, NodeError> {
        Ok(self.beacon.select_interface()?)
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
            gossip,
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
        let (link_tx, link_rx) = mpsc::channel(LINK_QUEUE);
        let (monitor_tx, monitor_rx) = mpsc::channel(LINK_QUEUE);
        link::forward(inbox.monitor(), None, link_tx.clone());
        let bind_at = gossip
            .endpoint
            .clone()
            .unwrap_or_else(|| inbox_bind_endpoint(&interface));
        let bound = inbox.bind(&bind_at).await?;
        config.endpoint = match &gossip.endpoint {
            Some(asked) => advertised_endpoint(asked, &interface, bound.port()),
            None => interface.tcp_endpoint(bound.port()),
        };
        let mut gossip_bound = Vec::new();
        let (beacons, gossip) = if gossip.enabled() {
            // As Zyre: no beacons; a stopping node says GOODBYE itself.
            config.goodbye_on_stop = true;
            let (gossip, bound) = start_gossip(&gossip, &config, curve.as_ref()).await?;
            gossip_bound = bound;
            (None, Some(gossip))
        } else {
            let payload = ZreBeacon {
                uuid: config.uuid,
                port: bound.port(),
                public_key: curve.as_ref().map(|k| *k.public()),
            };
            (
                Some(Beacon::start_on(interface.clone(), &beacon, payload)?),
                None,
            )
        };
        let dealer_linger = if gossip.is_some() {
            GOODBYE_LINGER
        } else {
            Duration::ZERO
        };
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
            links: link_tx,
            send_hwm,
            dealer_linger,
            events: Vec::new(),
            requests: HashMap::new(),
        }));
        let wake = Arc::new(Notify::new());
        let gossip_handle = gossip.as_ref().map(Gossip::handle);
        let driver = Driver {
            state: state.clone(),
            wake: wake.clone(),
            inbox,
            beacons,
            gossip,
            events: event_tx,
            commands: cmd_rx,
            links: link_rx,
            monitor: monitor_tx,
        };
        let task = tokio::spawn(driver.run());
        Ok(Node {
            uuid,
            name,
            endpoint,
            interface,
            gossip: gossip_handle,
            gossip_bound,
            state,
            wake,
            commands: cmd_tx,
            events: event_rx,
            pending: std::collections::VecDeque::new(),
            scratch: Vec::new(),
            links: Some(monitor_rx),
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

/// How long a stopping gossip node's connections may take to deliver its GOODBYEs.
const GOODBYE_LINGER: Duration = Duration::from_millis(500);

/// The endpoint a node that bound `asked` advertises: a wildcard host becomes the interface
/// address, port 0 or `*` the port bound.
fn advertised_endpoint(asked: &str, interface: &SelectedInterface, port: u16) -> String {
    let rest = asked.strip_prefix("tcp://").unwrap_or(asked);
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    if host.is_empty() || host == "*" || host == "0.0.0.0" || host == "[::]" {
        interface.tcp_endpoint(port)
    } else {
        format!("tcp://{host}:{port}")
    }
}

/// Starts gossip discovery: binds and connects as asked, publishes `uuid -> endpoint` (with
/// `|<Z85 key>` in encrypted mode), as Zyre does.
async fn start_gossip(
    settings: &GossipSettings,
    config: &NodeConfig,
    curve: Option<&KeyPair>,
) -> Result<(Gossip, Vec<String>), NodeError> {
    let mut gossip_config = GossipConfig::default();
    if let Some(ttl) = settings.ttl {
        gossip_config.ttl = ttl;
    }
    let gossip = Gossip::start(gossip_config, curve.cloned());
    let mut bound = Vec::new();
    for endpoint in &settings.binds {
        let at = gossip.bind(endpoint).await?;
        info!(endpoint = %at, "gossip hub bound");
        bound.push(at.to_string());
    }
    for (endpoint, server_key) in &settings.connects {
        if server_key.is_some() && curve.is_none() {
            return Err(NodeError::Invalid(
                "gossip_connect_curve needs the node's CURVE keys (NodeBuilder::curve)".into(),
            ));
        }
        gossip.connect(endpoint, *server_key).await?;
    }
    let value = match curve {
        Some(keys) => format!("{}|{}", config.endpoint, keys.public_z85()),
        None => config.endpoint.clone(),
    };
    gossip
        .publish(&harmony_peer::uuid_string(&config.uuid), &value)
        .await?;
    Ok((gossip, bound))
}

fn inbox_bind_endpoint(interface: &SelectedInterface) -> String {
    match interface.address {
        IpAddr::V4(a) => format!("tcp://{a}:0"),
        IpAddr::V6(a) => format!("tcp://[{a}]:0"),
    }
}

/// How long [`Node::request_properties`] waits for the answer.
pub const PROPS_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Commands to gossip discovery, in gossip mode.
    gossip: Option<GossipHandle>,
    /// The gossip hub endpoints bound (ports resolved).
    gossip_bound: Vec<String>,
    state: Arc<Mutex<State>>,
    /// Tells the driver that direct calls left events (e.g. EXIT after a send failure) to hand out.
    wake: Arc<Notify>,
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    /// Events taken from the channel in bulk, handed out one by one.
    pending: std::collections::VecDeque<Event>,
    /// Reused buffer for `recv_many`.
    scratch: Vec<Event>,
    /// The connections' monitor events, until the application takes them.
    links: Option<mpsc::Receiver<LinkEvent>>,
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

    /// The gossip hub endpoints this node bound ([`NodeBuilder::gossip_bind`]), with the
    /// ports actually bound.
    pub fn gossip_endpoints(&self) -> &[String] {
        &self.gossip_bound
    }

    /// The value of a gossip tuple this node holds (key: a node's UUID string; value: its
    /// endpoint), `None` if not held or not in gossip mode.
    pub async fn gossip_tuple(&self, key: &str) -> Result<Option<String>, NodeError> {
        match &self.gossip {
            Some(g) => g.get(key).await.map_err(|_| NodeError::Stopped),
            None => Ok(None),
        }
    }

    async fn command(&self, cmd: Command) -> Result<(), NodeError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// Runs a command on the state machine here, then queues what it sends.
    fn direct<T>(&self, f: impl FnOnce(&mut ZreNode) -> T) -> Result<T, NodeError> {
        self.direct_state(|state| f(&mut state.core))
    }

    /// [`Node::direct`] with the whole shared state (e.g. to register a pending request).
    fn direct_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, NodeError> {
        let mut state = lock(&self.state);
        if state.core.is_stopped() {
            return Err(NodeError::Stopped);
        }
        let out = f(&mut state);
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

    /// Sets one of our headers while running. Harmony peers get our whole set at once and
    /// report it as [`Event::Headers`] (their queries return the new value); Zyre and pyre
    /// peers are sent nothing and keep the headers of our HELLO. Peers met later get the new
    /// set in our HELLO. `X-HARMONY` is reserved.
    pub async fn set_header(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), NodeError> {
        let (key, value) = (key.into(), value.into());
        if key.len() > 255 || u32::try_from(value.len()).is_err() {
            return Err(NodeError::Invalid(format!("header {key:.40}: too long")));
        }
        self.direct(|core| core.set_header(&key, &value))?
            .map_err(|e| NodeError::Invalid(e.to_string()))
    }

    /// A Harmony peer's current headers (without `X-HARMONY`), asked for over the network;
    /// [`NodeError::Timeout`] if no answer within [`PROPS_TIMEOUT`].
    pub async fn request_properties(&self, peer: Uuid) -> Result<Vec<(String, String)>, NodeError> {
        self.request_properties_within(peer, PROPS_TIMEOUT).await
    }

    /// [`Node::request_properties`] with its own timeout.
    pub async fn request_properties_within(
        &self,
        peer: Uuid,
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, NodeError> {
        let (tx, rx) = oneshot::channel();
        let request = self.send_request(peer, tx)?;
        let out = tokio::time::timeout(timeout, rx).await;
        lock(&self.state).requests.remove(&request);
        match out {
            Ok(Ok(headers)) => Ok(headers),
            Ok(Err(_)) => Err(NodeError::Stopped),
            Err(_) => Err(NodeError::Timeout(peer)),
        }
    }

    /// Sends a PROPS-REQUEST and registers where its answer goes, under the same lock: the
    /// answer, handled by the driver under this lock, always finds it.
    fn send_request(
        &self,
        peer: Uuid,
        answer: oneshot::Sender<Vec<(String, String)>>,
    ) -> Result<u32, NodeError> {
        self.direct_state(|state| {
            let request = state.core.request_properties(peer).map_err(|e| match e {
                harmony_group::GroupError::NoProps(p) => NodeError::NoProps(p),
                _ => NodeError::UnknownPeer(peer),
            })?;
            state.requests.insert(request, answer);
            Ok(request)
        })?
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

    /// The socket monitor events of the node's connections (inbox and one outbound
    /// connection per peer): connected, handshakes, disconnects... Once only; the node never
    /// waits for this stream (events beyond its queue are dropped).
    pub fn link_events(&mut self) -> Option<mpsc::Receiver<LinkEvent>> {
        self.links.take()
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

    /// Stops: a port-0 beacon (gossip mode: a GOODBYE to each peer) tells peers we are
    /// leaving, a STOP event ends the stream.
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
    /// Where the dealers' monitor events go (to the driver).
    links: mpsc::Sender<LinkEvent>,
    send_hwm: usize,
    /// Linger of outbound connections (gossip mode: time for the GOODBYEs of a stop).
    dealer_linger: Duration,
    /// Events taken from the state machine, waiting for the driver to hand them out.
    events: Vec<Event>,
    /// `request_properties` calls waiting for their answer, by request number.
    requests: HashMap<u32, oneshot::Sender<Vec<(String, String)>>>,
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
    gossip: Option<Gossip>,
    events: mpsc::Sender<Event>,
    commands: mpsc::Receiver<Command>,
    links: mpsc::Receiver<LinkEvent>,
    /// The application's copy of the link events (dropped when it does not read them).
    monitor: mpsc::Sender<LinkEvent>,
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
                Some(link) = self.links.recv() => self.on_link(link),
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
                heard = recv_gossip(&mut self.gossip) => match heard {
                    Some(GossipEvent::Deliver { key, value }) => {
                        self.state().on_gossip(&key, &value, std::time::Instant::now());
                    }
                    Some(_) => {}
                    None => self.gossip = None,
                },
                () = sleep_until(deadline) => self.state().core.handle_timeout(std::time::Instant::now()),
            }
        }
        self.shutdown().await;
    }

    /// A peer's connection dropped or came back: the state machine decides what it means.
    fn on_link(&mut self, link: LinkEvent) {
        if let Some(peer) = link.peer {
            let now = std::time::Instant::now();
            match link.event.kind {
                EventKind::Disconnected { .. } => self.state().core.handle_link_down(peer, now),
                EventKind::HandshakeSucceeded => self.state().core.handle_link_up(peer, now),
                _ => {}
            }
        }
        let _ = self.monitor.try_send(link);
    }

    /// Carries out the state machine's actions and hands its events to the application.
    /// Returns false when the application dropped the node.
    async fn flush(&mut self) -> bool {
        let events = {
            let mut state = self.state();
            state.run_actions();
            state.collect_events();
            std::mem::take(&mut state.events)
        };
        for event in events {
            if let (Event::Exit { peer, .. }, Some(gossip)) = (&event, &self.gossip) {
                // As Zyre: forget a departed peer's tuple here, so its next refresh (if it
                // lives) is a new tuple and finds it again.
                let _ = gossip.unpublish(&harmony_peer::uuid_string(peer)).await;
            }
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
        if let Some(mut gossip) = self.gossip.take() {
            gossip.stop().await;
        }
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
            if let Event::Headers {
                request: Some(request),
                headers,
                ..
            } = &event
            {
                if let Some(answer) = self.requests.remove(request) {
                    let _ = answer.send(headers.clone());
                }
            }
            self.events.push(event);
        }
        self.events.len() > before
    }

    /// A gossip tuple: `uuid -> endpoint[|Z85 public key]` (Zyre's `zyre_node_recv_gossip`).
    fn on_gossip(&mut self, key: &str, value: &str, now: std::time::Instant) {
        let Some(uuid) = harmony_peer::parse_uuid_string(key) else {
            debug!(key, "gossip tuple whose key is not a UUID ignored");
            return;
        };
        let (endpoint, public_key) = match value.split_once('|') {
            Some((endpoint, key)) => (endpoint, Some(key)),
            None => (value, None),
        };
        match public_key.map(public_key_from_z85) {
            Some(Ok(key)) => {
                self.peer_keys.insert(uuid, key);
            }
            Some(Err(_)) => {
                debug!(peer = %uuid, "gossip tuple with a bad public key ignored");
                return;
            }
            None if self.curve.is_some() => {
                debug!(peer = %uuid, "plaintext gossip tuple ignored (encrypted mode)");
                return;
            }
            None => {}
        }
        self.core.handle_discovered(uuid, endpoint, now);
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
                    .linger(self.dealer_linger);
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
                link::forward(dealer.monitor(), Some(peer), self.links.clone());
                if let Err(e) = dealer.connect(&endpoint) {
                    warn!(peer = %peer, endpoint = %endpoint, error = %e, "cannot connect to peer");
                }
                self.dealers.insert(peer, dealer);
            }
            Action::Send { peer, message } => {
                let Some(dealer) = self.dealers.get(&peer) else {
                    debug!(peer = %peer, "send to a peer without connection");
                    return;
                };
                let frames = match message.to_frames() {
                    Ok(frames) => frames,
                    Err(e) => {
                        warn!(peer = %peer, error = %e, "message cannot be encoded; dropped");
                        return;
                    }
                };
                match dealer.try_send(Message::from_frames(frames)) {
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
                let dealer = self.dealers.remove(&peer);
                if let Some(dealer) = dealer.filter(|_| !self.dealer_linger.is_zero()) {
                    // Let what is queued (a stop's GOODBYE) go out; dropping would discard it.
                    tokio::spawn(async move { dealer.close().await });
                }
            }
        }
    }
}

async fn recv_beacon(beacons: &mut Option<Beacon>) -> Option<harmony_beacon::Heard> {
    match beacons {
        Some(b) => b.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_gossip(gossip: &mut Option<Gossip>) -> Option<GossipEvent> {
    match gossip {
        Some(g) => g.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
