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

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use harmony_beacon::gossip::{Gossip, GossipConfig, GossipEvent, GossipHandle};
use harmony_beacon::{Beacon, BeaconConfig, InterfaceSelect, SelectedInterface, ZreBeacon};
use harmony_group::{Action, Event, GroupError, NodeConfig, ZreNode};
use harmony_security::{public_key_from_z85, KeyPair, MechanismConfig};
use harmony_wire::zre::{self, ZreBody, ZreMessage};
use harmony_zmtp::{DealerSocket, EventKind, Message, RouterSocket, SocketOptions, TrySendError};
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::error::NodeError;
use crate::link::{self, LinkEvent, Tagged, LINK_QUEUE};

/// Per-peer tables, looked up once per message sent: foldhash, not SipHash (16-byte keys).
type PeerMap<V> = foldhash::HashMap<Uuid, V>;

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

    /// Sends ELECT/LEADER to every peer, also those that do not advertise `X-HARMONY: elect`
    /// (see [`harmony_group::NodeConfig::every_peer_elects`]): for fleets of Harmony and Zyre
    /// nodes without pyre, so that non-contesting Zyre nodes relay the wave and see the LEADER.
    pub fn every_peer_elects(mut self, on: bool) -> Self {
        self.config.every_peer_elects = on;
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
        link::forward(inbox.monitor(), None, 0, link_tx.clone());
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
        let news = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(State {
            core,
            curve,
            peer_keys: PeerMap::default(),
            dealers: PeerMap::default(),
            conns: PeerMap::default(),
            next_conn: 0,
            links: link_tx,
            send_hwm,
            dealer_linger,
            requests: HashMap::new(),
            events: VecDeque::new(),
            event_cap: event_queue.max(1),
            reader: None,
            finished: false,
            news: news.clone(),
            encoded: BytesMut::new(),
            stamped: Vec::new(),
            exited: Vec::new(),
        }));
        let inbox = Arc::new(inbox);
        let wake = Arc::new(Notify::new());
        let gossip_handle = gossip.as_ref().map(Gossip::handle);
        let driver = Driver {
            state: state.clone(),
            wake: wake.clone(),
            inbox: inbox.clone(),
            beacons,
            gossip,
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
            inbox,
            inbox_waker: Arc::new(InboxWaker {
                ready: AtomicBool::new(true),
                task: Mutex::new(None),
            }),
            pending: VecDeque::new(),
            news,
            parked: None,
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
    /// Tells the driver that the event queue has room again (it stops reading when full).
    wake: Arc<Notify>,
    commands: mpsc::Sender<Command>,
    /// The inbox, also read here while the application waits for events (see `read_inbox`).
    inbox: Arc<RouterSocket>,
    /// What the inbox wakes when the application waits on it.
    inbox_waker: Arc<InboxWaker>,
    /// Events taken from the shared queue in bulk, handed out one by one.
    pending: VecDeque<Event>,
    /// Set (under the state lock) when events or the driver's end may be waiting; cleared
    /// when `poll_next_event` found nothing and registered `parked`.
    news: Arc<AtomicBool>,
    /// The waker registered (state's `reader` and the inbox's) when the last wait found
    /// nothing: polled again with it and no news, a node answers `Pending` without locking.
    parked: Option<Waker>,
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

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Query(_) => "Query",
            Self::Stop => "Stop",
        })
    }
}

/// Message content: one frame (`&str`, `String`, `Vec<u8>`, `Bytes`) or several. One frame
/// is held inline: sending it allocates nothing beyond the frame.
#[derive(Debug, Clone, Default)]
pub struct Content(SmallVec<[Bytes; 1]>);

impl Content {
    /// The frames.
    pub fn frames(&self) -> &[Bytes] {
        &self.0
    }

    /// The frames, owned.
    pub fn into_frames(self) -> Vec<Bytes> {
        self.0.into_vec()
    }
}

macro_rules! single_frame_content {
    ($($t:ty),*) => {$(
        impl From<$t> for Content {
            fn from(v: $t) -> Self {
                Self(smallvec::smallvec![Bytes::from(v)])
            }
        }
    )*};
}
single_frame_content!(&'static str, String, Vec<u8>, Bytes, &'static [u8]);

impl From<Vec<Bytes>> for Content {
    fn from(frames: Vec<Bytes>) -> Self {
        Self(SmallVec::from_vec(frames))
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
        let reader = state.collect_events();
        drop(state);
        if let Some(reader) = reader {
            reader.wake();
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
        let content = content.into();
        self.direct_state(|state| state.whisper(peer, content))?
            .map_err(|_| NodeError::UnknownPeer(peer))
    }

    /// Sends a message to every peer in a group (we need not be in it).
    pub async fn shout(
        &self,
        group: impl Into<String>,
        content: impl Into<Content>,
    ) -> Result<(), NodeError> {
        let (group, content) = (group.into(), content.into());
        self.direct_state(|state| state.shout(&group, content))
    }

    /// Waits until what was queued so far for these peers (whispers, shouts...) has been
    /// written to the operating system: from there it is delivered even if this process is
    /// killed next. Peers without a connection are skipped. A peer that does not read holds
    /// it back: bound it with a timeout.
    pub async fn flushed(&self, peers: &[Uuid]) {
        self.flushed_where(|p| peers.contains(p)).await;
    }

    /// [`Node::flushed`] for every peer.
    pub async fn flushed_all(&self) {
        self.flushed_where(|_| true).await;
    }

    async fn flushed_where(&self, wanted: impl Fn(&Uuid) -> bool) {
        let waits: Vec<_> = lock(&self.state)
            .dealers
            .iter()
            .filter(|(peer, _)| wanted(peer))
            .map(|(_, dealer)| dealer.flushed())
            .collect();
        for wait in waits {
            wait.await;
        }
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
        self.start_request_properties(peer, timeout)?.await
    }

    /// Sends the request of [`Node::request_properties_within`] now and returns the wait for
    /// its answer, which does not borrow the node (for callers that must not hold the node
    /// while they wait, such as the Python binding).
    pub fn start_request_properties(
        &self,
        peer: Uuid,
        timeout: Duration,
    ) -> Result<
        impl Future<Output = Result<Vec<(String, String)>, NodeError>> + Send + 'static,
        NodeError,
    > {
        let (tx, rx) = oneshot::channel();
        let request = self.send_request(peer, tx)?;
        let state = Arc::clone(&self.state);
        Ok(async move {
            let out = tokio::time::timeout(timeout, rx).await;
            lock(&state).requests.remove(&request);
            match out {
                Ok(Ok(headers)) => Ok(headers),
                Ok(Err(_)) => Err(NodeError::Stopped),
                Err(_) => Err(NodeError::Timeout(peer)),
            }
        })
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
                GroupError::NoProps(p) => NodeError::NoProps(p),
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
    ///
    /// While the application waits here, it reads the inbox itself and runs the state machine
    /// on its own task: a WHISPER or SHOUT reaches it without passing through the driver task.
    pub fn poll_next_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if let Some(event) = self.pending.pop_front() {
            return Poll::Ready(Some(event));
        }
        // Nothing new since we last found nothing, and the same task waits: both wakers are
        // still in place (only `collect_events` and the driver's end take `reader`, and both
        // set `news`), so a quiet node costs no lock (`next_event_any` polls every node).
        if !self.news.load(Ordering::Acquire)
            && !self.inbox_waker.ready.load(Ordering::Acquire)
            && self
                .parked
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let mut state = lock(&self.state);
        // The inbox is looked at only when it woke us since we last found it empty: waiting
        // on many nodes (`next_event_any`) costs nothing for the quiet ones.
        self.inbox_waker.follow(cx.waker());
        let mut rounds = 0;
        while state.events.is_empty()
            && !state.finished
            && !state.core.is_stopped()
            && self.inbox_waker.ready.swap(false, Ordering::AcqRel)
        {
            if rounds == 4 {
                // Messages but no events for a while (PINGs, say): let other tasks run.
                self.inbox_waker.ready.store(true, Ordering::Release);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            rounds += 1;
            let waker = Waker::from(self.inbox_waker.clone());
            match read_inbox(&mut state, &self.inbox, &mut Context::from_waker(&waker)) {
                Poll::Ready(Ok(())) => {
                    // There may be more than one batch.
                    self.inbox_waker.ready.store(true, Ordering::Release);
                    state.run_actions();
                    state.collect_events();
                }
                // The driver sees the closed inbox too and stops the node.
                Poll::Ready(Err(_)) | Poll::Pending => break,
            }
        }
        if !state.events.is_empty() {
            let was_full = state.events.len() >= state.event_cap;
            std::mem::swap(&mut state.events, &mut self.pending);
            drop(state);
            if was_full {
                self.wake.notify_one();
            }
            return Poll::Ready(self.pending.pop_front());
        }
        if state.finished {
            return Poll::Ready(None);
        }
        // Waiting on many nodes polls each one per event: keep the waker already there.
        if !state
            .reader
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.reader = Some(cx.waker().clone());
        }
        // Under the lock: whoever queues an event or ends the driver sets it again after.
        state.news.store(false, Ordering::Release);
        drop(state);
        if !self
            .parked
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.parked = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<Event> {
        if self.pending.is_empty() {
            let mut state = lock(&self.state);
            let was_full = state.events.len() >= state.event_cap;
            std::mem::swap(&mut state.events, &mut self.pending);
            drop(state);
            if was_full {
                self.wake.notify_one();
            }
        }
        self.pending.pop_front()
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
        // Events already handed over to a node come first: looking at them touches nothing
        // the node's other tasks write, unlike asking a quiet node whether it has news.
        for (i, node) in nodes.iter_mut().enumerate() {
            if let Some(event) = node.pending.pop_front() {
                return Poll::Ready(Some((i, event)));
            }
        }
        let mut open = false;
        for (i, node) in nodes.iter_mut().enumerate() {
            match node.poll_next_event(cx) {
                Poll::Ready(Some(ev)) => return Poll::Ready(Some((i, ev))),
                Poll::Ready(None) => {}
                Poll::Pending => open = true,
            }
        }
        if open {
            Poll::Pending
        } else {
            Poll::Ready(None)
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
    peer_keys: PeerMap<[u8; 32]>,
    dealers: PeerMap<DealerSocket>,
    /// The number of each peer's current outbound connection (its dealer's link events).
    conns: PeerMap<u64>,
    /// The number of the last connection made.
    next_conn: u64,
    /// Where the dealers' monitor events go (to the driver).
    links: mpsc::Sender<Tagged>,
    send_hwm: usize,
    /// Linger of outbound connections (gossip mode: time for the GOODBYEs of a stop).
    dealer_linger: Duration,
    /// `request_properties` calls waiting for their answer, by request number.
    requests: HashMap<u32, oneshot::Sender<Vec<(String, String)>>>,
    /// Events for the application, in the order the state machine produced them (one queue
    /// whichever task ran it: the driver, a direct call, or the application's own wait).
    events: VecDeque<Event>,
    /// Events queued before the driver stops reading the inbox (the application is behind).
    event_cap: usize,
    /// The application's task waiting in `poll_next_event`.
    reader: Option<Waker>,
    /// The driver has ended: no event comes after those queued.
    finished: bool,
    /// The node's `news`: set whenever `events` grows or `finished` is set.
    news: Arc<AtomicBool>,
    /// Spare room where outgoing ZRE first frames are encoded.
    encoded: BytesMut,
    /// Spare room for the members of one SHOUT and their sequence numbers.
    stamped: Vec<(Uuid, u16)>,
    /// Peers that exited since the driver last looked (it forgets their gossip tuples).
    exited: Vec<Uuid>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while locked leaves the state as it was at the panic; carry on with it.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The background task: moves bytes and timers, the state machine decides.
struct Driver {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    inbox: Arc<RouterSocket>,
    beacons: Option<Beacon>,
    gossip: Option<Gossip>,
    commands: mpsc::Receiver<Command>,
    links: mpsc::Receiver<Tagged>,
    /// The application's copy of the link events (dropped when it does not read them).
    monitor: mpsc::Sender<LinkEvent>,
}

/// The waker the application's wait registers on the inbox: it notes that the inbox has
/// something, then wakes the application's task.
struct InboxWaker {
    ready: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl InboxWaker {
    /// Wakes `task` from now on.
    fn follow(&self, task: &Waker) {
        let mut current = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if !current.as_ref().is_some_and(|w| w.will_wake(task)) {
            *current = Some(task.clone());
        }
    }
}

impl std::task::Wake for InboxWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

/// Reads what waits on the inbox (at most `BATCH` messages) into the state machine. Only ever
/// called with the state locked, by the driver or by the application waiting for events, so a
/// peer's messages are handled in order whichever task takes them. Pending, with the task
/// registered for the next message, when there was none.
fn read_inbox(
    state: &mut State,
    inbox: &RouterSocket,
    cx: &mut Context<'_>,
) -> Poll<Result<(), harmony_zmtp::ZmtpError>> {
    // The clock is read once per batch, and not at all when there is nothing to read.
    let mut now = None;
    let mut read = 0;
    while read < BATCH {
        match std::pin::pin!(inbox.recv()).poll(cx) {
            Poll::Ready(Ok(msg)) => {
                let now = *now.get_or_insert_with(std::time::Instant::now);
                state.on_inbox(msg, now);
                read += 1;
            }
            Poll::Ready(Err(e)) if read == 0 => return Poll::Ready(Err(e)),
            Poll::Ready(Err(_)) | Poll::Pending => break,
        }
    }
    if read == 0 {
        Poll::Pending
    } else {
        Poll::Ready(Ok(()))
    }
}

impl Drop for Driver {
    /// However the driver ends (stopped, or its runtime gone), the application's next wait
    /// returns what is queued, then `None`.
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.finished = true;
        state.news.store(true, Ordering::Release);
        let reader = state.reader.take();
        drop(state);
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

impl Driver {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    async fn run(mut self) {
        loop {
            self.flush();
            self.forget_exited().await;
            let deadline = self.state().core.poll_timeout().map(Instant::from_std);
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Query(f)) => f(&self.state().core),
                    Some(Command::Stop) | None => {
                        self.state().core.stop();
                        self.flush();
                        break;
                    }
                },
                () = self.wake.notified() => {}
                Some(tagged) = self.links.recv() => self.on_link(tagged),
                read = std::future::poll_fn(|cx| {
                    let mut state = lock(&self.state);
                    if state.events.len() >= state.event_cap {
                        // The application is behind: wait for it (it notifies `wake`).
                        return Poll::Pending;
                    }
                    read_inbox(&mut state, &self.inbox, cx)
                }) => if let Err(e) = read {
                    warn!(error = %e, "inbox closed");
                    self.state().core.stop();
                    self.flush();
                    break;
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
    /// Only the peer's current connection counts: a connection closed with an earlier
    /// session of the peer (it expired, was replaced) may report its end after the new one
    /// is up, and taking that for the new one would remove a live peer (a false EXIT, as
    /// right after a partition heals).
    fn on_link(&mut self, Tagged { conn, link }: Tagged) {
        if let Some(peer) = link.peer {
            let now = std::time::Instant::now();
            let mut state = self.state();
            if state.conns.get(&peer) == Some(&conn) {
                match link.event.kind {
                    EventKind::Disconnected { .. } => state.core.handle_link_down(peer, now),
                    EventKind::HandshakeSucceeded => state.core.handle_link_up(peer, now),
                    _ => {}
                }
            } else {
                debug!(peer = %peer, conn, event = ?link.event.kind, "event of a closed connection");
            }
        }
        let _ = self.monitor.try_send(link);
    }

    /// As Zyre: forget a departed peer's gossip tuple here, so its next refresh (if it lives)
    /// is a new tuple and finds it again.
    async fn forget_exited(&self) {
        let exited = std::mem::take(&mut self.state().exited);
        if let Some(gossip) = &self.gossip {
            for peer in exited {
                let _ = gossip.unpublish(&harmony_peer::uuid_string(&peer)).await;
            }
        }
    }

    /// Carries out the state machine's actions and wakes the application for its events.
    fn flush(&self) {
        let reader = {
            let mut state = self.state();
            state.run_actions();
            state.collect_events()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
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

    /// Moves the state machine's events to the application's queue; if there were any, returns
    /// the waiting application's task to wake (after unlocking).
    fn collect_events(&mut self) -> Option<Waker> {
        let before = self.events.len();
        self.core.take_events(&mut self.events);
        for event in self.events.range(before..) {
            match event {
                Event::Headers {
                    request: Some(request),
                    headers,
                    ..
                } => {
                    if let Some(answer) = self.requests.remove(request) {
                        let _ = answer.send(headers.clone());
                    }
                }
                Event::Exit { peer, .. } => self.exited.push(*peer),
                _ => {}
            }
        }
        if self.events.len() > before {
            self.news.store(true, Ordering::Release);
            self.reader.take()
        } else {
            None
        }
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

    /// Makes room for `len` more bytes in the block first frames are encoded into.
    fn room(&mut self, len: usize) {
        if self.encoded.capacity() < len {
            self.encoded.reserve(ENCODE_BLOCK.max(len));
        }
    }

    /// Queues an encoded message on the peer's DEALER without waiting; a full queue means the
    /// peer cannot keep up, and the state machine drops it.
    fn queue(&mut self, peer: Uuid, frames: Message) {
        let Some(dealer) = self.dealers.get(&peer) else {
            debug!(peer = %peer, "send to a peer without connection");
            return;
        };
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

    /// Encodes `message` straight into the outgoing message (first frames are cut from one
    /// reused block instead of one allocation each) and queues it for `peer`.
    fn send(&mut self, peer: Uuid, message: ZreMessage) {
        self.room(message.encoded_len());
        let mut frames = Message::new();
        if let Err(e) = message.into_frames(&mut self.encoded, &mut frames) {
            warn!(peer = %peer, error = %e, "message cannot be encoded; dropped");
            return;
        }
        self.queue(peer, frames);
    }

    /// The frames of a WHISPER or SHOUT: `head` (its content left empty) encoded into the
    /// reused block, then the content frames as they are (no content: one empty frame, as
    /// Zyre sends it).
    fn frames_of(&mut self, head: &ZreMessage, content: Content) -> Option<Message> {
        self.room(head.encoded_len());
        if let Err(e) = head.encode_first_frame(&mut self.encoded) {
            warn!(error = %e, "message cannot be encoded; dropped");
            return None;
        }
        let mut frames = Message::new();
        frames.push_back(self.encoded.split().freeze());
        zre::extend_with_content(&mut frames, content.0);
        Some(frames)
    }

    /// A WHISPER without the action queue: what is queued goes first, so that the peer gets
    /// its sequence numbers in order.
    fn whisper(&mut self, peer: Uuid, content: Content) -> Result<(), GroupError> {
        self.run_actions();
        if let Some(sequence) = self.core.whisper_sequence(peer)? {
            let head = ZreMessage::new(
                sequence,
                ZreBody::Whisper {
                    content: Vec::new(),
                },
            );
            if let Some(frames) = self.frames_of(&head, content) {
                self.queue(peer, frames);
            }
        }
        Ok(())
    }

    /// A SHOUT encoded once: each member's copy is the same first frame with its own sequence
    /// number patched in, and the same content frames (shared, not copied).
    fn shout(&mut self, group: &str, content: Content) {
        // What is queued goes first, so that every peer gets its sequence numbers in order.
        self.run_actions();
        let mut stamped = std::mem::take(&mut self.stamped);
        self.core.shout_sequences(group, &mut stamped);
        if let Some(&(_, sequence)) = stamped.first() {
            let head = ZreMessage::new(
                sequence,
                ZreBody::Shout {
                    group: group.to_owned(),
                    content: Vec::new(),
                },
            );
            if let Some(frames) = self.frames_of(&head, content) {
                self.shout_copies(&stamped, &frames);
            }
        }
        stamped.clear();
        self.stamped = stamped;
    }

    /// Queues `frames` (encoded for the first of `stamped`) on every peer of `stamped`.
    fn shout_copies(&mut self, stamped: &[(Uuid, u16)], frames: &Message) {
        let Some((first, content)) = frames.frames().split_first() else {
            return;
        };
        for (i, &(peer, sequence)) in stamped.iter().enumerate() {
            let head = if i == 0 {
                first.clone()
            } else {
                self.room(first.len());
                self.encoded.extend_from_slice(first);
                // The frame was encoded from a valid header: it is long enough.
                let _ = ZreMessage::restamp(&mut self.encoded, sequence);
                self.encoded.split().freeze()
            };
            let mut copy = Message::new();
            copy.push_back(head);
            for frame in content {
                copy.push_back(frame.clone());
            }
            self.queue(peer, copy);
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
                self.next_conn += 1;
                self.conns.insert(peer, self.next_conn);
                link::forward(
                    dealer.monitor(),
                    Some(peer),
                    self.next_conn,
                    self.links.clone(),
                );
                if let Err(e) = dealer.connect(&endpoint) {
                    warn!(peer = %peer, endpoint = %endpoint, error = %e, "cannot connect to peer");
                }
                self.dealers.insert(peer, dealer);
            }
            Action::Send { peer, message } => self.send(peer, message),
            Action::Disconnect { peer } => {
                self.conns.remove(&peer);
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
