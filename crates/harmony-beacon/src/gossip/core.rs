//! The gossip state machine without I/O: tuples, who to forward them to, expiry, pings.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_wire::zgp::ZgpMessage;
use tracing::{debug, warn};

/// Settings of a [`GossipCore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipConfig {
    /// Time to live of the tuples this node publishes (sent in PUBLISH's `ttl`); `None` sends
    /// 0, "forever", as czmq does. Harmony re-publishes its tuples every third of it, and
    /// forgets a tuple whose ttl passes without a refresh.
    pub ttl: Option<Duration>,
    /// How often each remote (a server we connected to) gets a PING; czmq servers forget a
    /// silent client after 1 s.
    pub ping_interval: Duration,
    /// A client (a node connected to our server) silent this long is forgotten: no more
    /// forwarded tuples until it talks again.
    pub client_timeout: Duration,
    /// Most tuples held; new keys beyond it are dropped (a hostile peer cannot grow the table).
    pub max_tuples: usize,
    /// Most clients remembered.
    pub max_clients: usize,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            ttl: Some(Duration::from_secs(30)),
            ping_interval: Duration::from_millis(500),
            client_timeout: Duration::from_secs(60),
            max_tuples: 100_000,
            max_clients: 10_000,
        }
    }
}

/// One side of a gossip link: a client of our server (by its ROUTER routing id) or one of
/// the remote servers we connected to (by the number [`GossipCore::add_remote`] gave).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Link {
    /// A node connected to our bound server.
    Client(Bytes),
    /// A server we connected to.
    Remote(usize),
}

/// What the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: Link,
    /// What.
    pub message: ZgpMessage,
}

/// What the gossip network told us.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GossipEvent {
    /// A new or changed tuple, or a refresh of a known one (Zyre's DELIVER).
    Deliver {
        /// The key (Zyre: a node's UUID string).
        key: String,
        /// The value (Zyre: its inbox endpoint, `|` and a Z85 key with CURVE).
        value: String,
    },
    /// A tuple's ttl passed without a refresh; it was forgotten.
    Expired {
        /// The key.
        key: String,
    },
}

#[derive(Debug)]
struct Tuple {
    value: String,
    ttl: u32,
    /// When it was stored or last refreshed.
    refreshed: Instant,
}

impl Tuple {
    fn expires(&self) -> Option<Instant> {
        (self.ttl > 0).then(|| self.refreshed + Duration::from_millis(self.ttl.into()))
    }
}

/// The gossip node of czmq's `zgossip` without I/O: a server for clients that connect to us
/// and a client of each remote we connect to. New tuples are stored, delivered and forwarded
/// to every link; duplicates are dropped. Unlike czmq, tuples with a ttl expire unless
/// refreshed, and refreshes travel through the graph (once per quarter ttl per tuple, so a
/// cycle does not echo them).
#[derive(Debug)]
pub struct GossipCore {
    config: GossipConfig,
    tuples: BTreeMap<String, Tuple>,
    /// Tuples we publish ourselves, re-published to keep them alive.
    own: BTreeMap<String, String>,
    clients: BTreeMap<Bytes, Instant>,
    remotes: usize,
    transmits: VecDeque<Transmit>,
    events: VecDeque<GossipEvent>,
    next_ping: Instant,
    next_refresh: Option<Instant>,
}

impl GossipCore {
    /// A gossip node with no tuples, clients or remotes.
    pub fn new(config: GossipConfig, now: Instant) -> Self {
        let next_refresh = config.ttl.map(|ttl| now + ttl / 3);
        Self {
            next_ping: now + config.ping_interval,
            config,
            tuples: BTreeMap::new(),
            own: BTreeMap::new(),
            clients: BTreeMap::new(),
            remotes: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_refresh,
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<GossipEvent> {
        self.events.pop_front()
    }

    /// When to call [`GossipCore::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Instant {
        let expiry = self.tuples.values().filter_map(Tuple::expires).min();
        [Some(self.next_ping), self.next_refresh, expiry]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next_ping)
    }

    /// The number of tuples held.
    pub fn len(&self) -> usize {
        self.tuples.len()
    }

    /// Whether no tuple is held.
    pub fn is_empty(&self) -> bool {
        self.tuples.is_empty()
    }

    /// A tuple's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.tuples.get(key).map(|t| t.value.as_str())
    }

    /// The ttl we send with our tuples, in milliseconds (0 = forever).
    fn own_ttl(&self) -> u32 {
        self.config.ttl.map_or(0, |t| {
            u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1)
        })
    }

    /// Publishes a tuple of ours (Zyre publishes `uuid -> endpoint`); it is kept alive until
    /// [`GossipCore::unpublish`].
    pub fn publish(&mut self, key: &str, value: &str, now: Instant) {
        self.own.insert(key.to_owned(), value.to_owned());
        let ttl = self.own_ttl();
        self.accept(key, value, ttl, None, now, true);
    }

    /// Forgets a tuple here only (czmq's UNPUBLISH): ours stops being refreshed; someone
    /// else's comes back with its next refresh.
    pub fn unpublish(&mut self, key: &str) {
        self.own.remove(key);
        self.tuples.remove(key);
    }

    /// We connected to a remote server: say HELLO and send it every tuple. Returns its number.
    pub fn add_remote(&mut self, _now: Instant) -> usize {
        let remote = self.remotes;
        self.remotes += 1;
        self.greet(remote);
        remote
    }

    fn greet(&mut self, remote: usize) {
        self.send(Link::Remote(remote), ZgpMessage::Hello);
        let all: Vec<ZgpMessage> = self
            .tuples
            .iter()
            .map(|(key, t)| publish_of(key, t))
            .collect();
        for message in all {
            self.send(Link::Remote(remote), message);
        }
    }

    /// A message from a remote server.
    pub fn handle_remote(&mut self, remote: usize, message: ZgpMessage, now: Instant) {
        match message {
            ZgpMessage::Publish { key, value, ttl } => {
                self.accept(&key, &value, ttl, Some(Link::Remote(remote)), now, false);
            }
            // The server forgot us (restart, or czmq's client timeout): start over.
            ZgpMessage::Invalid => self.greet(remote),
            ZgpMessage::Pong => {}
            other => debug!(
                remote,
                message = other.name(),
                "unexpected ZGP message from a server"
            ),
        }
    }

    /// A message from a client of our server (`id` is its ROUTER routing id).
    pub fn handle_client(&mut self, id: Bytes, message: ZgpMessage, now: Instant) {
        match message {
            ZgpMessage::Hello => {
                if !self.touch_client(&id, now) {
                    return;
                }
                let all: Vec<ZgpMessage> = self
                    .tuples
                    .iter()
                    .map(|(key, t)| publish_of(key, t))
                    .collect();
                for message in all {
                    self.send(Link::Client(id.clone()), message);
                }
            }
            ZgpMessage::Publish { key, value, ttl } => {
                if self.touch_client(&id, now) {
                    self.accept(&key, &value, ttl, Some(Link::Client(id)), now, false);
                }
            }
            ZgpMessage::Ping => {
                if self.touch_client(&id, now) {
                    self.send(Link::Client(id), ZgpMessage::Pong);
                }
            }
            other => {
                debug!(message = other.name(), "invalid ZGP message from a client");
                self.handle_client_malformed(id);
            }
        }
    }

    /// A client sent something that is not ZGP: INVALID, and it is forgotten.
    pub fn handle_client_malformed(&mut self, id: Bytes) {
        self.clients.remove(&id);
        self.send(Link::Client(id), ZgpMessage::Invalid);
    }

    /// Timers: ping remotes, refresh our tuples, expire stale ones, forget silent clients.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_ping {
            self.next_ping = now + self.config.ping_interval;
            for remote in 0..self.remotes {
                self.send(Link::Remote(remote), ZgpMessage::Ping);
            }
            let timeout = self.config.client_timeout;
            self.clients.retain(|_, seen| now < *seen + timeout);
        }
        if let (Some(at), Some(ttl)) = (self.next_refresh, self.config.ttl) {
            if now >= at {
                self.next_refresh = Some(now + ttl / 3);
                let own: Vec<(String, String)> = self
                    .own
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let ttl = self.own_ttl();
                for (key, value) in own {
                    self.accept(&key, &value, ttl, None, now, true);
                }
            }
        }
        let expired: Vec<String> = self
            .tuples
            .iter()
            .filter(|(_, t)| t.expires().is_some_and(|e| now >= e))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            debug!(key, "gossip tuple expired");
            self.tuples.remove(&key);
            self.events.push_back(GossipEvent::Expired { key });
        }
    }

    /// Records client activity; false if the client table is full.
    fn touch_client(&mut self, id: &Bytes, now: Instant) -> bool {
        if !self.clients.contains_key(id) && self.clients.len() >= self.config.max_clients {
            warn!("too many gossip clients; one ignored");
            return false;
        }
        self.clients.insert(id.clone(), now);
        true
    }

    /// czmq's `server_accept`, with refreshes: a new or changed tuple is stored, delivered
    /// and forwarded to every link but the one it came from; the same tuple again refreshes
    /// it (and is forwarded) if a quarter of its ttl has passed since the last refresh, or
    /// if `force` (our own refresh).
    fn accept(
        &mut self,
        key: &str,
        value: &str,
        ttl: u32,
        from: Option<Link>,
        now: Instant,
        force: bool,
    ) {
        match self.tuples.get_mut(key) {
            Some(t) if t.value == value => {
                let quarter = Duration::from_millis(u64::from(ttl) / 4);
                if !force && (ttl == 0 || now < t.refreshed + quarter) {
                    return; // a duplicate, or an echo of a refresh
                }
                t.refreshed = now;
                t.ttl = ttl;
            }
            Some(t) => {
                t.value = value.to_owned();
                t.ttl = ttl;
                t.refreshed = now;
            }
            None => {
                if self.tuples.len() >= self.config.max_tuples {
                    warn!(key, "gossip tuple table full; tuple dropped");
                    return;
                }
                self.tuples.insert(
                    key.to_owned(),
                    Tuple {
                        value: value.to_owned(),
                        ttl,
                        refreshed: now,
                    },
                );
            }
        }
        self.events.push_back(GossipEvent::Deliver {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        let message = ZgpMessage::Publish {
            key: key.to_owned(),
            value: value.to_owned(),
            ttl,
        };
        let links: Vec<Link> = self
            .clients
            .keys()
            .cloned()
            .map(Link::Client)
            .chain((0..self.remotes).map(Link::Remote))
            .filter(|l| Some(l) != from.as_ref())
            .collect();
        for link in links {
            self.send(link, message.clone());
        }
    }

    fn send(&mut self, to: Link, message: ZgpMessage) {
        self.transmits.push_back(Transmit { to, message });
    }
}

fn publish_of(key: &str, t: &Tuple) -> ZgpMessage {
    ZgpMessage::Publish {
        key: key.to_owned(),
        value: t.value.clone(),
        ttl: t.ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gossip cores wired by links, delivering every transmit at once (the order is kept).
    struct Net {
        nodes: Vec<GossipCore>,
        /// (client node, server node, the remote number at the client)
        links: Vec<(usize, usize, usize)>,
        delivered: Vec<Vec<GossipEvent>>,
    }

    impl Net {
        fn new(n: usize, config: &GossipConfig, now: Instant) -> Self {
            Self {
                nodes: (0..n)
                    .map(|_| GossipCore::new(config.clone(), now))
                    .collect(),
                links: Vec::new(),
                delivered: vec![Vec::new(); n],
            }
        }

        fn connect(&mut self, client: usize, server: usize, now: Instant) {
            let remote = self.nodes[client].add_remote(now);
            self.links.push((client, server, remote));
        }

        fn client_id(client: usize) -> Bytes {
            Bytes::from(vec![client as u8])
        }

        /// Runs until nothing moves; returns the number of messages carried.
        fn settle(&mut self, now: Instant) -> usize {
            let mut carried = 0;
            loop {
                let mut moved = false;
                for i in 0..self.nodes.len() {
                    while let Some(t) = self.nodes[i].poll_transmit() {
                        moved = true;
                        carried += 1;
                        match t.to {
                            Link::Remote(r) => {
                                let &(_, server, _) = self
                                    .links
                                    .iter()
                                    .find(|(c, _, rr)| *c == i && *rr == r)
                                    .expect("link");
                                self.nodes[server].handle_client(
                                    Self::client_id(i),
                                    t.message,
                                    now,
                                );
                            }
                            Link::Client(id) => {
                                let client = usize::from(id[0]);
                                let &(_, _, r) = self
                                    .links
                                    .iter()
                                    .find(|(c, s, _)| *c == client && *s == i)
                                    .expect("link");
                                self.nodes[client].handle_remote(r, t.message, now);
                            }
                        }
                    }
                    while let Some(e) = self.nodes[i].poll_event() {
                        self.delivered[i].push(e);
                    }
                }
                if !moved {
                    return carried;
                }
            }
        }
    }

    fn config(ttl_ms: u64) -> GossipConfig {
        GossipConfig {
            ttl: Some(Duration::from_millis(ttl_ms)),
            ping_interval: Duration::from_millis(100),
            client_timeout: Duration::from_secs(60),
            ..GossipConfig::default()
        }
    }

    #[test]
    fn tuples_reach_every_node_through_two_hubs_and_a_cycle() {
        let t0 = Instant::now();
        let mut net = Net::new(8, &config(3000), t0);
        // Hubs 0 and 1 connected both ways (a cycle); 2-4 on hub 0, 5-7 on hub 1.
        net.connect(0, 1, t0);
        net.connect(1, 0, t0);
        for c in 2..5 {
            net.connect(c, 0, t0);
        }
        for c in 5..8 {
            net.connect(c, 1, t0);
        }
        net.settle(t0);
        for n in 0..8 {
            net.nodes[n].publish(&format!("K{n}"), &format!("tcp://n{n}"), t0);
        }
        net.settle(t0);
        for n in 0..8 {
            assert_eq!(net.nodes[n].len(), 8, "node {n} holds every tuple");
            assert_eq!(net.nodes[n].get("K7"), Some("tcp://n7"));
        }
        // A refresh of one tuple travels once around, not forever.
        let t1 = t0 + Duration::from_millis(1000);
        net.nodes[3].handle_timeout(t1);
        let carried = net.settle(t1);
        assert!(
            carried < 200,
            "a refresh must not storm: {carried} messages"
        );
    }

    #[test]
    fn unrefreshed_tuples_expire_and_refreshed_ones_stay() {
        let t0 = Instant::now();
        let mut net = Net::new(3, &config(900), t0);
        net.connect(1, 0, t0);
        net.connect(2, 0, t0);
        net.nodes[1].publish("alive", "tcp://a", t0);
        net.nodes[2].publish("dead", "tcp://d", t0);
        net.settle(t0);
        assert_eq!(net.nodes[0].len(), 2);
        // Node 2 dies: only nodes 0 and 1 keep running their timers.
        let mut now = t0;
        for _ in 0..20 {
            now += Duration::from_millis(100);
            net.nodes[0].handle_timeout(now);
            net.nodes[1].handle_timeout(now);
            net.settle(now);
        }
        assert_eq!(net.nodes[0].get("alive"), Some("tcp://a"));
        assert_eq!(
            net.nodes[0].get("dead"),
            None,
            "the dead node's tuple expired"
        );
        assert!(net.delivered[0].contains(&GossipEvent::Expired { key: "dead".into() }));
    }

    #[test]
    fn czmq_tuples_never_expire_and_invalid_restarts_the_session() {
        let t0 = Instant::now();
        let mut hub = GossipCore::new(config(900), t0);
        let czmq = Bytes::from_static(b"c");
        hub.handle_client(czmq.clone(), ZgpMessage::Hello, t0);
        hub.handle_client(
            czmq.clone(),
            ZgpMessage::Publish {
                key: "Z".into(),
                value: "tcp://z".into(),
                ttl: 0,
            },
            t0,
        );
        hub.handle_timeout(t0 + Duration::from_secs(3600));
        assert_eq!(hub.get("Z"), Some("tcp://z"));
        // A client sending a server-only message gets INVALID.
        while hub.poll_transmit().is_some() {}
        hub.handle_client(czmq.clone(), ZgpMessage::Pong, t0);
        assert_eq!(
            hub.poll_transmit(),
            Some(Transmit {
                to: Link::Client(czmq),
                message: ZgpMessage::Invalid
            })
        );
        // A remote answering INVALID gets HELLO and every tuple again.
        let r = hub.add_remote(t0);
        while hub.poll_transmit().is_some() {}
        hub.handle_remote(r, ZgpMessage::Invalid, t0);
        let sent: Vec<ZgpMessage> = std::iter::from_fn(|| hub.poll_transmit())
            .map(|t| t.message)
            .collect();
        assert_eq!(sent[0], ZgpMessage::Hello);
        assert!(sent
            .iter()
            .any(|m| matches!(m, ZgpMessage::Publish { key, .. } if key == "Z")));
    }
}
