//! The ZRE node: peer table, groups, events, leader election.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_peer::{uuid_string, Peer, PeerConfig, Reap, Received};
use harmony_wire::zre::{Hello, ZreBody, ZreMessage};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::{Action, Event, GroupError, NodeConfig};

/// The HELLO header by which a Harmony node tells its peers which ZRE extensions it speaks
/// (`elect`: ELECT/LEADER; `props`: property updates). Peers without it (pyre) are never sent
/// them; Zyre peers are counted in elections once they send ELECT or LEADER themselves.
pub const EXTENSIONS_HEADER: &str = "X-HARMONY";
/// The extensions this node speaks, the value of [`EXTENSIONS_HEADER`].
const EXTENSIONS: &str = "elect,props";
/// A contester whose election has not finished after this long starts it again: waves that
/// crossed a membership change can stall in Zyre's algorithm (it has no wave number).
const ELECTION_RETRY: Duration = Duration::from_secs(3);
/// Joins, leaves and exits within this long start one election, not one each: in a big group
/// every wave costs a message per pair of members.
const ELECTION_DELAY: Duration = Duration::from_millis(300);

/// What we know about one group: who is in it, whether we contest its leadership, the
/// election under way and the leader last elected.
#[derive(Debug, Default)]
struct Group {
    members: BTreeSet<Uuid>,
    contest: bool,
    election: Option<Election>,
    leader: Option<Uuid>,
    /// Members seen starting waves of their own (ELECT naming themselves).
    contesters: BTreeSet<Uuid>,
    /// Members whose ELECT for the leader in office came while no election was under way:
    /// stragglers of the finished wave, or relays of the leader's new wave that overtook its
    /// own ELECT. Such a neighbour sends nothing more in that wave, so if the leader's ELECT
    /// follows, they count as already heard (else our echo, and the wave, would stall).
    early: BTreeSet<Uuid>,
}

/// One echo wave of Zyre's election (`zyre_election.c`): the current active wave (the lowest
/// challenger seen), the neighbour it came from, and the ELECT echoes and LEADER messages
/// counted so far.
#[derive(Debug, Default)]
struct Election {
    /// When we started or adopted the current wave (for the retry of a stalled election).
    started: Option<Instant>,
    caw: Option<String>,
    father: Option<Uuid>,
    /// The neighbours whose ELECT for the current wave we have (Zyre counts them; a set
    /// does not count one twice when a wave is restarted).
    echoes: BTreeSet<Uuid>,
    lrec: usize,
    leader: Option<String>,
    /// Whether our echo (or our LEADER) for this wave went out.
    answered: bool,
}

/// The sans-IO ZRE node (Zyre's `zyre_node`): feed it beacons, inbound messages, send
/// failures, commands and timeouts; drain [`Action`]s for the driver and [`Event`]s for the
/// application; wake it at [`ZreNode::poll_timeout`].
///
/// Deterministic: peers and groups live in ordered maps, so the same inputs give the same
/// outputs in the same order.
#[derive(Debug)]
pub struct ZreNode {
    uuid: Uuid,
    uuid_str: String,
    name: Arc<str>,
    endpoint: String,
    headers: Vec<(String, String)>,
    peer_config: PeerConfig,
    reap_interval: Duration,
    goodbye_on_stop: bool,
    /// [`NodeConfig::every_peer_elects`].
    every_peer_elects: bool,
    status: u8,
    own_groups: BTreeSet<String>,
    peers: BTreeMap<Uuid, Peer>,
    /// Peers known to speak ELECT/LEADER: Harmony peers (their HELLO header) and peers that
    /// sent us one (Zyre).
    electors: BTreeSet<Uuid>,
    /// Harmony peers that speak PROPS/PROPS-REQUEST (`props` in their HELLO's `X-HARMONY`).
    props_peers: BTreeSet<Uuid>,
    /// The number of our last PROPS-REQUEST.
    last_request: u32,
    groups: BTreeMap<String, Group>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    next_reap: Instant,
    /// The latest time we were given (stamps elections).
    now: Instant,
    /// Groups whose election we start at `election_due`.
    elections_pending: BTreeSet<String>,
    election_due: Option<Instant>,
    stopped: bool,
    link_grace: Duration,
    /// Peers whose connection dropped, and when they are removed unless it comes back.
    links_down: BTreeMap<Uuid, Instant>,
}

impl ZreNode {
    /// A node with no peers; its first reap is one reap interval after `now`.
    pub fn new(config: NodeConfig, now: Instant) -> Self {
        let reap_interval = config.peer.reap_interval();
        let mut headers = config.headers;
        headers.retain(|(k, _)| k != EXTENSIONS_HEADER);
        headers.push((EXTENSIONS_HEADER.to_owned(), EXTENSIONS.to_owned()));
        Self {
            uuid: config.uuid,
            uuid_str: uuid_string(&config.uuid),
            name: config.name.into(),
            endpoint: config.endpoint,
            headers,
            peer_config: config.peer,
            reap_interval,
            goodbye_on_stop: config.goodbye_on_stop,
            every_peer_elects: config.every_peer_elects,
            status: 0,
            own_groups: BTreeSet::new(),
            peers: BTreeMap::new(),
            electors: BTreeSet::new(),
            props_peers: BTreeSet::new(),
            last_request: 0,
            groups: BTreeMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_reap: now + reap_interval,
            now,
            elections_pending: BTreeSet::new(),
            election_due: None,
            stopped: false,
            link_grace: config.link_grace,
            links_down: BTreeMap::new(),
        }
    }

    // ----- identity ------------------------------------------------------------------------

    /// Our UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Our name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Our inbox endpoint as advertised in HELLO.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sets the endpoint advertised in HELLOs sent from now on (e.g. once the inbox is bound
    /// and the beacon interface address is known).
    pub fn set_endpoint(&mut self, endpoint: impl Into<String>) {
        self.endpoint = endpoint.into();
    }

    /// Our group status counter (+1 wrapping on every effective join or leave).
    pub fn status(&self) -> u8 {
        self.status
    }

    /// The interval at which [`ZreNode::handle_timeout`] checks peers.
    pub fn reap_interval(&self) -> Duration {
        self.reap_interval
    }

    /// Whether [`ZreNode::stop`] was called; a stopped node ignores all input.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    // ----- driver output -------------------------------------------------------------------

    /// The next thing the driver must do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the application, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Moves every pending event, in order, to the end of `into` (when `into` is empty the
    /// two queues are swapped: nothing is moved one by one).
    pub fn take_events(&mut self, into: &mut VecDeque<Event>) {
        if into.is_empty() {
            std::mem::swap(&mut self.events, into);
        } else {
            into.extend(self.events.drain(..));
        }
    }

    /// All pending actions, in order.
    pub fn drain_actions(&mut self) -> impl Iterator<Item = Action> + '_ {
        self.actions.drain(..)
    }

    /// All pending events, in order.
    pub fn drain_events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.events.drain(..)
    }

    /// When to call [`ZreNode::handle_timeout`] next (`None` once stopped).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let first_lost = self.links_down.values().min().copied();
        let mut next = first_lost.map_or(self.next_reap, |t| t.min(self.next_reap));
        if let Some(due) = self.election_due {
            next = next.min(due);
        }
        (!self.stopped).then_some(next)
    }

    // ----- driver input --------------------------------------------------------------------

    /// The reap timer fired: check every peer's liveness (PING + EVASIVE, SILENT, EXIT).
    /// Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        self.now = now;
        self.remove_lost_links(now);
        if self.election_due.is_some_and(|due| now >= due) {
            self.election_due = None;
            for group in std::mem::take(&mut self.elections_pending) {
                self.start_election_now(&group, false);
            }
        }
        if now < self.next_reap {
            return;
        }
        self.next_reap = now + self.reap_interval;
        // Elections that stalled, and contested groups left without a leader or an election
        // (a wave that went wrong), start again.
        let stalled: Vec<String> = self
            .groups
            .iter()
            .filter(|(name, g)| match &g.election {
                Some(e) => e.started.is_some_and(|t| now >= t + ELECTION_RETRY),
                None => {
                    g.contest
                        && g.leader.is_none()
                        && self.own_groups.contains(*name)
                        && !self.elections_pending.contains(*name)
                }
            })
            .map(|(name, _)| name.clone())
            .collect();
        for group in stalled {
            if self.contesting(&group) {
                debug!(group, "election stalled, starting again");
                self.start_election_now(&group, true);
            } else if let Some(g) = self.groups.get_mut(&group) {
                g.election = None;
            }
        }
        let uuids: Vec<Uuid> = self.peers.keys().copied().collect();
        for uuid in uuids {
            let Some(peer) = self.peers.get_mut(&uuid) else {
                continue;
            };
            match peer.reap(now, self.reap_interval) {
                Reap::Alive => {}
                Reap::Expired => {
                    debug!(peer = %uuid, "peer expired");
                    self.remove_peer(uuid);
                }
                Reap::Ping { evasive, silent } => {
                    let name = peer.shared_name();
                    self.send_to(uuid, ZreBody::Ping);
                    // Only peers that entered are reported; a peer that never sent HELLO
                    // simply expires.
                    let entered = self.peers.get(&uuid).is_some_and(Peer::is_ready);
                    if evasive && entered {
                        self.events.push_back(Event::Evasive {
                            peer: uuid,
                            name: name.clone(),
                        });
                    }
                    if silent && entered {
                        self.events.push_back(Event::Silent { peer: uuid, name });
                    }
                }
            }
        }
    }

    /// A UDP beacon: `port` is the peer's inbox TCP port, `addr` the beacon's source address.
    /// Port 0 means the peer is leaving (EXIT if known). Our own beacons are ignored.
    pub fn handle_beacon(&mut self, uuid: Uuid, addr: IpAddr, port: u16, now: Instant) {
        if port == 0 {
            self.handle_departed(uuid, now);
        } else {
            let endpoint = match addr {
                IpAddr::V4(a) => format!("tcp://{a}:{port}"),
                IpAddr::V6(a) => format!("tcp://[{a}]:{port}"),
            };
            self.handle_discovered(uuid, &endpoint, now);
        }
    }

    /// A peer was discovered at `endpoint` (beacon, gossip, or explicit `require_peer`):
    /// if unknown, connect and send HELLO. A beacon from a known peer refreshes it only if
    /// `PeerConfig::beacons_refresh`.
    pub fn handle_discovered(&mut self, uuid: Uuid, endpoint: &str, now: Instant) {
        if self.stopped || uuid == self.uuid {
            return;
        }
        self.now = now;
        if let Some(peer) = self.peers.get_mut(&uuid) {
            if self.peer_config.beacons_refresh {
                peer.refresh(now);
            }
            return;
        }
        if endpoint == self.endpoint && !self.endpoint.is_empty() {
            return;
        }
        self.require_peer(uuid, endpoint, now);
    }

    /// A peer said it is leaving (port-0 beacon, gossip unpublish): remove it (EXIT).
    pub fn handle_departed(&mut self, uuid: Uuid, _now: Instant) {
        if self.stopped {
            return;
        }
        if self.peers.contains_key(&uuid) {
            debug!(peer = %uuid, "peer departed");
            self.remove_peer(uuid);
        }
    }

    /// A decoded message from our ROUTER inbox; `from` comes from the 17-byte routing id
    /// (`harmony_peer::uuid_from_routing_id`). Protocol errors (sequence gap, status
    /// mismatch) remove the peer; it comes back with its next beacon or HELLO.
    pub fn handle_message(&mut self, from: Uuid, message: ZreMessage, now: Instant) {
        if self.stopped || from == self.uuid {
            return;
        }
        self.now = now;
        if let ZreBody::Hello(hello) = &message.body {
            let mut replaced = false;
            if let Some(peer) = self.peers.get(&from) {
                if peer.is_ready() {
                    if peer.replaced()
                        && now < peer.created() + self.reap_interval
                        && hello.endpoint == peer.endpoint()
                    {
                        // We replaced this session moments ago because of the peer's new
                        // HELLO, and sent ours to a peer that had us ready: this HELLO is most
                        // likely its answer (it replaced us in turn). Only its inbound session
                        // restarts; replacing again (Zyre) lets two nodes whose new HELLOs
                        // cross replace each other forever (a HELLO storm).
                        debug!(peer = %from, "HELLO answering ours: new inbound session");
                        self.restart_inbound(from);
                    } else {
                        // The peer restarted (same UUID) or dropped us: Zyre removes the
                        // obsolete peer and starts afresh.
                        debug!(peer = %from, "HELLO from a ready peer: recreating it");
                        self.remove_peer(from);
                        replaced = true;
                    }
                } else if !self.endpoint.is_empty() && peer.endpoint() == self.endpoint {
                    return;
                } else if now >= peer.created() + self.reap_interval {
                    // Not ready long after our HELLO went out: a live peer that got it would
                    // have answered at once, so this HELLO comes from its own discovery of us
                    // and ours was lost (e.g. it reached an earlier incarnation that crashed).
                    // Start our session again so it gets a HELLO; without this it would
                    // ignore us until it expires us.
                    debug!(peer = %from, "late HELLO from a peer that is not ready: resending ours");
                    let endpoint = peer.endpoint().to_owned();
                    self.remove_peer(from);
                    self.require_peer(from, &endpoint, now);
                }
            }
            if !self.peers.contains_key(&from) {
                if !self.endpoint.is_empty() && hello.endpoint == self.endpoint {
                    return;
                }
                let endpoint = hello.endpoint.clone();
                self.require_peer(from, &endpoint, now);
                if replaced {
                    if let Some(p) = self.peers.get_mut(&from) {
                        p.set_replaced();
                    }
                }
            }
        }
        let Some(peer) = self.peers.get_mut(&from) else {
            // Not HELLO from an unknown peer: ignore (Zyre does the same).
            return;
        };
        if !peer.is_ready()
            && !matches!(message.body, ZreBody::Hello(_))
            && now >= peer.created() + self.reap_interval
        {
            // It talks to us on a session we never saw the HELLO of, long after we sent ours:
            // it has us ready but we lost its HELLO, or (restarted with the same UUID) we
            // have it ready while it never got our HELLO. A new HELLO of ours makes it start
            // a fresh session with us (Zyre ignores such messages until one side expires).
            debug!(peer = %from, "message on an unknown session: sending a new HELLO");
            let endpoint = peer.endpoint().to_owned();
            self.remove_peer(from);
            self.require_peer(from, &endpoint, now);
            return;
        }
        match peer.receive(&message, now) {
            Ok(Received::Accepted) => {}
            Ok(Received::Ignored) => return,
            Err(e) => {
                warn!(peer = %from, error = %e, "protocol error, removing peer");
                self.remove_peer(from);
                return;
            }
        }
        self.dispatch(from, message.body);
    }

    /// One message from the ROUTER inbox as frames: the routing id (17 bytes, `0x01` + UUID)
    /// and the message frames. Decodes and calls [`ZreNode::handle_message`], or
    /// [`ZreNode::handle_malformed`] if it does not decode. The error is informational: the
    /// node already did what it should (drop, or remove the peer).
    pub fn handle_frames(
        &mut self,
        routing_id: &[u8],
        frames: &[Bytes],
        now: Instant,
    ) -> Result<(), GroupError> {
        let from = harmony_peer::uuid_from_routing_id(routing_id)
            .ok_or(GroupError::BadRoutingId(routing_id.len()))?;
        match ZreMessage::decode(frames, crate::MAX_FIRST_FRAME) {
            Ok(message) => {
                self.handle_message(from, message, now);
                Ok(())
            }
            Err(error) => {
                self.handle_malformed(from, now);
                Err(GroupError::Malformed { peer: from, error })
            }
        }
    }

    /// The driver could not decode a message from `from` (bad signature, version, field):
    /// the sender consumed a sequence number we will never see, so its session is broken.
    /// Remove the peer now (EXIT) instead of waiting for the next message to show the gap.
    pub fn handle_malformed(&mut self, from: Uuid, _now: Instant) {
        if self.stopped {
            return;
        }
        if self.peers.get(&from).is_some_and(Peer::is_ready) {
            warn!(peer = %from, "malformed message, removing peer");
            self.remove_peer(from);
        }
    }

    /// The driver could not queue a message for `peer` (its send queue is full: the peer
    /// cannot keep up). Like Zyre, the connection is dropped; unlike Zyre (which keeps the
    /// silent peer until it expires), the peer is removed at once (EXIT), so the application
    /// learns that messages were lost; its next beacon or HELLO brings it back.
    pub fn handle_send_failed(&mut self, peer: Uuid, _now: Instant) {
        if self.stopped {
            return;
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            warn!(peer = %peer, "send queue full, disconnecting peer");
            p.disconnect();
            self.remove_peer(peer);
        }
    }

    /// The driver saw our connection to `peer` drop (its socket monitor's DISCONNECTED). The
    /// connection retries by itself; if it is not back within [`NodeConfig::link_grace`]
    /// ([`ZreNode::handle_link_up`]), the peer is removed (EXIT) then, instead of after the
    /// evasive and expired timeouts as in Zyre: a peer whose inbox refuses us is gone, and
    /// one that restarts comes back through its beacon.
    pub fn handle_link_down(&mut self, peer: Uuid, now: Instant) {
        if self.stopped || !self.peers.contains_key(&peer) {
            return;
        }
        debug!(peer = %peer, grace = ?self.link_grace, "connection to peer lost");
        self.links_down.entry(peer).or_insert(now + self.link_grace);
    }

    /// Our connection to `peer` is up again (its handshake succeeded): the peer stays.
    pub fn handle_link_up(&mut self, peer: Uuid, _now: Instant) {
        if self.links_down.remove(&peer).is_some() {
            debug!(peer = %peer, "connection to peer back");
        }
    }

    fn remove_lost_links(&mut self, now: Instant) {
        let lost: Vec<Uuid> = self
            .links_down
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(uuid, _)| *uuid)
            .collect();
        for uuid in lost {
            debug!(peer = %uuid, "connection to peer did not come back, removing it");
            self.remove_peer(uuid);
        }
    }

    // ----- commands ------------------------------------------------------------------------

    /// Joins `group`: if not already in it, our status goes up by one and JOIN is sent to
    /// every peer. Returns whether anything changed.
    pub fn join(&mut self, group: &str) -> bool {
        if self.stopped || !self.own_groups.insert(group.to_owned()) {
            return false;
        }
        self.status = self.status.wrapping_add(1);
        let body = ZreBody::Join {
            group: group.to_owned(),
            status: self.status,
        };
        self.send_to_all(&body);
        if self.contesting(group) {
            self.start_election(group);
        }
        true
    }

    /// Leaves `group`: if in it, our status goes up by one and LEAVE is sent to every peer.
    /// Returns whether anything changed.
    pub fn leave(&mut self, group: &str) -> bool {
        if self.stopped || !self.own_groups.remove(group) {
            return false;
        }
        self.status = self.status.wrapping_add(1);
        let body = ZreBody::Leave {
            group: group.to_owned(),
            status: self.status,
        };
        self.send_to_all(&body);
        if let Some(g) = self.groups.get_mut(group) {
            g.election = None;
            g.leader = None;
        }
        self.elections_pending.remove(group);
        self.forget_if_unused(group);
        true
    }

    /// Takes part in the leader election of `group` (Zyre `set_contest_in_group`): Zyre's echo
    /// wave, the lowest UUID string wins. Elections start when we join the group (or now, if
    /// we are in it), when a member joins, and when the leader goes. ELECT/LEADER (ids 8-9)
    /// go only to members that speak them (never to pyre).
    pub fn contest_in_group(&mut self, group: &str) {
        let g = self.groups.entry(group.to_owned()).or_default();
        if g.contest {
            return;
        }
        g.contest = true;
        if self.own_groups.contains(group) {
            self.start_election(group);
        }
    }

    /// Sets one of our headers while running (adds it, or replaces its value). Peers that
    /// connect from now on get it in our HELLO; Harmony peers (`props` in `X-HARMONY`) get
    /// our whole set at once in a PROPS (id 32) and report [`Event::Headers`]. Zyre and pyre
    /// peers are sent nothing: they keep the headers of our HELLO.
    pub fn set_header(&mut self, key: &str, value: &str) -> Result<(), GroupError> {
        if self.stopped {
            return Err(GroupError::Stopped);
        }
        if key == EXTENSIONS_HEADER {
            return Err(GroupError::ReservedHeader(key.to_owned()));
        }
        match self.headers.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => value.clone_into(v),
            None => self.headers.push((key.to_owned(), value.to_owned())),
        }
        let targets: Vec<Uuid> = self.props_peers.iter().copied().collect();
        for peer in targets {
            self.send_props(peer, 0);
        }
        Ok(())
    }

    /// Our headers (with `X-HARMONY`), as our HELLO and PROPS carry them.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Asks a Harmony peer for its current headers (PROPS-REQUEST, id 33). Its answer comes
    /// as [`Event::Headers`] with `request` the number returned here; a peer that goes first
    /// never answers (the caller times out).
    pub fn request_properties(&mut self, peer: Uuid) -> Result<u32, GroupError> {
        if self.stopped {
            return Err(GroupError::Stopped);
        }
        if !self.peers.get(&peer).is_some_and(Peer::is_ready) {
            return Err(GroupError::UnknownPeer(peer));
        }
        if !self.props_peers.contains(&peer) {
            return Err(GroupError::NoProps(peer));
        }
        self.last_request = self.last_request.checked_add(1).unwrap_or(1);
        let request = self.last_request;
        self.send_to(peer, ZreBody::PropsRequest { request });
        Ok(request)
    }

    /// Sends `content` to one peer. Errors if the peer is unknown (Zyre drops silently).
    pub fn whisper(&mut self, peer: Uuid, content: Vec<Bytes>) -> Result<(), GroupError> {
        if self.stopped {
            return Err(GroupError::Stopped);
        }
        if !self.peers.contains_key(&peer) {
            return Err(GroupError::UnknownPeer(peer));
        }
        self.send_to(peer, ZreBody::Whisper { content });
        Ok(())
    }

    /// [`ZreNode::whisper`] for a driver that encodes and queues the WHISPER itself: checks
    /// as `whisper` does, then takes the peer's next sequence number (`None`: no connection to
    /// send on, as `whisper` would queue nothing) and queues no action. The driver must run
    /// the actions already queued first (sequence numbers leave in order), and call
    /// [`ZreNode::handle_send_failed`] where the peer's queue is full.
    pub fn whisper_sequence(&mut self, peer: Uuid) -> Result<Option<u16>, GroupError> {
        if self.stopped {
            return Err(GroupError::Stopped);
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return Err(GroupError::UnknownPeer(peer));
        };
        Ok(p.next_sequence())
    }

    /// Sends `content` to every peer known to be in `group` (we need not be in it ourselves).
    /// Returns how many peers it was sent to.
    pub fn shout(&mut self, group: &str, content: Vec<Bytes>) -> usize {
        let mut stamped = Vec::new();
        let members = self.shout_sequences(group, &mut stamped);
        for (peer, sequence) in stamped {
            let body = ZreBody::Shout {
                group: group.to_owned(),
                content: content.clone(),
            };
            self.actions.push_back(Action::Send {
                peer,
                message: ZreMessage::new(sequence, body),
            });
        }
        members
    }

    /// [`ZreNode::shout`] for a driver that encodes the SHOUT once and patches each copy's
    /// sequence number in (`ZreMessage::restamp`): appends every member of `group` that can be
    /// sent to, with the sequence number of its copy, and queues no action. The driver must
    /// run the actions already queued first (sequence numbers leave in order), then queue one
    /// copy per entry, calling [`ZreNode::handle_send_failed`] where a queue is full. Returns
    /// how many members the group has (as `shout` does).
    pub fn shout_sequences(&mut self, group: &str, stamped: &mut Vec<(Uuid, u16)>) -> usize {
        if self.stopped {
            return 0;
        }
        let Some(g) = self.groups.get(group) else {
            return 0;
        };
        for m in &g.members {
            if let Some(sequence) = self.peers.get_mut(m).and_then(Peer::next_sequence) {
                stamped.push((*m, sequence));
            }
        }
        g.members.len()
    }

    /// Stops the node: GOODBYE to every peer if configured, every connection closed, STOP
    /// emitted (no EXIT events). The driver then sends its port-0 beacon.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        if self.goodbye_on_stop {
            self.send_to_all(&ZreBody::Goodbye);
        }
        for (uuid, _) in std::mem::take(&mut self.peers) {
            self.actions.push_back(Action::Disconnect { peer: uuid });
        }
        self.electors.clear();
        self.props_peers.clear();
        self.groups.values_mut().for_each(|g| {
            g.members.clear();
            g.election = None;
            g.leader = None;
        });
        self.stopped = true;
        self.events.push_back(Event::Stop {
            peer: self.uuid,
            name: self.name.clone(),
        });
    }

    // ----- queries -------------------------------------------------------------------------

    /// The peers that have entered (sent their HELLO), in UUID order.
    pub fn peers(&self) -> Vec<Uuid> {
        self.peers
            .values()
            .filter(|p| p.is_ready())
            .map(Peer::uuid)
            .collect()
    }

    /// One peer's session, if known (entered or not).
    pub fn peer(&self, uuid: Uuid) -> Option<&Peer> {
        self.peers.get(&uuid)
    }

    /// The peers known to be in `group`, in UUID order.
    pub fn peers_by_group(&self, group: &str) -> Vec<Uuid> {
        self.groups
            .get(group)
            .map(|g| g.members.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The groups we are in, sorted.
    pub fn own_groups(&self) -> Vec<String> {
        self.own_groups.iter().cloned().collect()
    }

    /// The groups at least one peer is in, sorted.
    pub fn peer_groups(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, g)| !g.members.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// A peer's name.
    pub fn peer_name(&self, uuid: Uuid) -> Option<&str> {
        self.peers.get(&uuid).map(Peer::name)
    }

    /// A peer's inbox endpoint (Zyre `peer_address`).
    pub fn peer_endpoint(&self, uuid: Uuid) -> Option<&str> {
        self.peers.get(&uuid).map(Peer::endpoint)
    }

    /// Zyre's name for [`ZreNode::peer_endpoint`].
    pub fn peer_address(&self, uuid: Uuid) -> Option<&str> {
        self.peer_endpoint(uuid)
    }

    /// A header value from a peer's HELLO.
    pub fn peer_header_value(&self, uuid: Uuid, key: &str) -> Option<&str> {
        self.peers.get(&uuid).and_then(|p| p.header(key))
    }

    /// The last leader elected in `group` (`None` while unknown or electing).
    pub fn leader(&self, group: &str) -> Option<Uuid> {
        self.groups.get(group).and_then(|g| g.leader)
    }

    // ----- internals -----------------------------------------------------------------------

    /// Creates the peer if unknown: purge any other peer at the same endpoint, connect, send
    /// HELLO (Zyre `zyre_node_require_peer`).
    fn require_peer(&mut self, uuid: Uuid, endpoint: &str, now: Instant) {
        if self.peers.contains_key(&uuid) {
            return;
        }
        // A different UUID at the same endpoint is a node that restarted there: it is gone.
        // (Zyre only disconnects it and lets it expire; removing gives EXIT at once.)
        let stale: Vec<Uuid> = self
            .peers
            .values()
            .filter(|p| p.endpoint() == endpoint)
            .map(Peer::uuid)
            .collect();
        for s in stale {
            debug!(peer = %s, endpoint, "purging peer at a reused endpoint");
            self.remove_peer(s);
        }
        debug!(peer = %uuid, endpoint, "new peer, connecting");
        self.peers
            .insert(uuid, Peer::new(uuid, endpoint, &self.peer_config, now));
        self.actions.push_back(Action::Connect {
            peer: uuid,
            endpoint: endpoint.to_owned(),
        });
        let hello = ZreBody::Hello(Hello {
            endpoint: self.endpoint.clone(),
            groups: self.own_groups.iter().cloned().collect(),
            status: self.status,
            name: self.name.to_string(),
            headers: self.headers.clone(),
        });
        self.send_to(uuid, hello);
    }

    /// Removes a peer: disconnect, EXIT (if it had entered), drop it from every group and
    /// recompute the leaders of those groups.
    fn remove_peer(&mut self, uuid: Uuid) {
        self.links_down.remove(&uuid);
        let Some(peer) = self.peers.remove(&uuid) else {
            return;
        };
        self.electors.remove(&uuid);
        self.props_peers.remove(&uuid);
        self.actions.push_back(Action::Disconnect { peer: uuid });
        if peer.is_ready() {
            self.events.push_back(Event::Exit {
                peer: uuid,
                name: peer.shared_name(),
            });
        }
        let affected: Vec<String> = self
            .groups
            .iter_mut()
            .filter_map(|(name, g)| g.members.remove(&uuid).then(|| name.clone()))
            .collect();
        for group in affected {
            self.member_gone(&group, uuid);
        }
    }

    /// The peer started a new inbound session while ours to it goes on: EXIT now, ENTER with
    /// its HELLO.
    fn restart_inbound(&mut self, uuid: Uuid) {
        let Some(peer) = self.peers.get_mut(&uuid) else {
            return;
        };
        let name = peer.shared_name();
        let groups = peer.reset_inbound();
        self.events.push_back(Event::Exit { peer: uuid, name });
        for group in groups {
            if let Some(g) = self.groups.get_mut(&group) {
                g.members.remove(&uuid);
            }
            self.member_gone(&group, uuid);
        }
    }

    /// Stamps and queues one message for a peer (dropped if its connection is broken).
    fn send_to(&mut self, uuid: Uuid, body: ZreBody) {
        if let Some(message) = self.peers.get_mut(&uuid).and_then(|p| p.stamp(body)) {
            self.actions.push_back(Action::Send {
                peer: uuid,
                message,
            });
        }
    }

    /// Sends our whole header set to a Harmony peer (`request` 0: a change).
    fn send_props(&mut self, peer: Uuid, request: u32) {
        let headers = self.headers.clone();
        self.send_to(peer, ZreBody::Props { request, headers });
    }

    /// Sends a copy of `body` to every peer (entered or not: our HELLO precedes it on each
    /// connection, so the peer can order it).
    fn send_to_all(&mut self, body: &ZreBody) {
        let uuids: Vec<Uuid> = self.peers.keys().copied().collect();
        for u in uuids {
            self.send_to(u, body.clone());
        }
    }

    /// Processes an accepted message from a ready peer.
    fn dispatch(&mut self, from: Uuid, body: ZreBody) {
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        let name = peer.shared_name();
        match body {
            ZreBody::Hello(mut hello) => {
                // Harmony's extensions header is protocol, not the application's: it is kept
                // out of the peer's headers (queries) as out of the ENTER event.
                if let Some(at) = hello
                    .headers
                    .iter()
                    .position(|(k, _)| k == EXTENSIONS_HEADER)
                {
                    let (_, value) = hello.headers.remove(at);
                    if value.split(',').any(|x| x == "elect") {
                        self.electors.insert(from);
                    }
                    if value.split(',').any(|x| x == "props") {
                        self.props_peers.insert(from);
                    }
                }
                if self.every_peer_elects {
                    self.electors.insert(from);
                }
                let new_groups = peer.apply_hello(&hello);
                peer.set_status(hello.status);
                let name = peer.shared_name();
                self.events.push_back(Event::Enter {
                    peer: from,
                    name: name.clone(),
                    headers: hello.headers,
                    endpoint: hello.endpoint,
                });
                for group in new_groups {
                    self.peer_joined(from, &name, &group);
                }
            }
            ZreBody::Whisper { content } => {
                self.events.push_back(Event::Whisper {
                    peer: from,
                    name,
                    content,
                });
            }
            ZreBody::Shout { group, content } => {
                self.events.push_back(Event::Shout {
                    peer: from,
                    name,
                    group: peer.shared_group(&group),
                    content,
                });
            }
            ZreBody::Ping => self.send_to(from, ZreBody::PingOk),
            ZreBody::PingOk => {}
            ZreBody::Join { group, status } => {
                match peer.apply_group_change(&group, true, status) {
                    Ok(true) => self.peer_joined(from, &name, &group),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(peer = %from, error = %e, "protocol error, removing peer");
                        self.remove_peer(from);
                    }
                }
            }
            ZreBody::Leave { group, status } => {
                match peer.apply_group_change(&group, false, status) {
                    Ok(true) => {
                        if let Some(g) = self.groups.get_mut(&group) {
                            g.members.remove(&from);
                        }
                        self.events.push_back(Event::Leave {
                            peer: from,
                            name,
                            group: group.as_str().into(),
                        });
                        self.member_gone(&group, from);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        warn!(peer = %from, error = %e, "protocol error, removing peer");
                        self.remove_peer(from);
                    }
                }
            }
            ZreBody::Elect {
                group,
                challenger_id,
            } => self.on_elect(from, &group, challenger_id),
            ZreBody::Leader { group, leader_id } => self.on_leader(from, &group, leader_id),
            ZreBody::Goodbye => {
                debug!(peer = %from, "GOODBYE");
                self.remove_peer(from);
            }
            ZreBody::Props {
                request,
                mut headers,
            } => {
                // As for HELLO: the extensions header stays out of the peer's queried headers.
                headers.retain(|(k, _)| k != EXTENSIONS_HEADER);
                peer.set_headers(headers.clone());
                self.events.push_back(Event::Headers {
                    peer: from,
                    name,
                    headers,
                    request: (request != 0).then_some(request),
                });
            }
            ZreBody::PropsRequest { request } if self.props_peers.contains(&from) => {
                self.send_props(from, request);
            }
            other => debug!(peer = %from, id = other.id(), "ignoring message"),
        }
    }

    /// A peer joined a group (HELLO or JOIN): record it, JOIN event; if we contest and it
    /// speaks ELECT, a new election (Zyre restarts on every join).
    fn peer_joined(&mut self, from: Uuid, name: &Arc<str>, group: &str) {
        self.groups
            .entry(group.to_owned())
            .or_default()
            .members
            .insert(from);
        self.events.push_back(Event::Join {
            peer: from,
            name: Arc::clone(name),
            group: group.into(),
        });
        if self.contesting(group) && self.electors.contains(&from) {
            self.start_election(group);
        } else if let Some(g) = self.groups.get_mut(group) {
            // The electorate changed: a wave we were relaying is void (its counts are off).
            g.election = None;
        }
    }

    /// A member left `group` or was removed (Zyre `zyre_node_remove_peer`): if it was the
    /// leader, or an election was under way (its count just changed), elect again. A node
    /// that does not contest drops the wave it was relaying, so the new one is not ignored.
    fn member_gone(&mut self, group: &str, uuid: Uuid) {
        let contesting = self.contesting(group);
        if let Some(g) = self.groups.get_mut(group) {
            g.contesters.remove(&uuid);
            g.early.remove(&uuid);
            let leader_left = g.leader == Some(uuid);
            let electing = g.election.is_some();
            if leader_left {
                g.leader = None;
            }
            if contesting && (leader_left || electing) {
                self.start_election(group);
            } else if electing {
                // A relay keeps its wave: the member that went counts no more, which may
                // complete it.
                self.recheck_election(group);
            }
        }
        self.forget_if_unused(group);
    }

    /// Completes the wave we relay in `group` if the (smaller) electorate has all answered:
    /// echo to the father, or, after LEADER messages, the LEADER event.
    fn recheck_election(&mut self, group: &str) {
        let electorate = self.electorate(group);
        let Some(e) = self.groups.get_mut(group).and_then(|g| g.election.as_mut()) else {
            return;
        };
        let Some(caw) = e.caw.clone() else {
            return;
        };
        if e.lrec > 0 {
            if e.lrec >= electorate.len() {
                let leader = e.leader.clone().unwrap_or(caw);
                if let Some(g) = self.groups.get_mut(group) {
                    g.election = None;
                }
                if let Some(uuid) = harmony_peer::parse_uuid_string(&leader)
                    .filter(|u| *u == self.uuid || self.peers.contains_key(u))
                {
                    self.elected(group, uuid);
                }
            }
        } else if !e.answered && heard_all(&e.echoes, &electorate) && caw != self.uuid_str {
            if let Some(father) = e.father.filter(|f| electorate.contains(f)) {
                e.answered = true;
                let body = ZreBody::Elect {
                    group: group.to_owned(),
                    challenger_id: caw,
                };
                self.send_to(father, body);
            }
        }
    }

    /// Drops the record of a group nobody (us included) is in or contests in, so group names
    /// peers come and go with do not pile up.
    fn forget_if_unused(&mut self, group: &str) {
        let unused = self
            .groups
            .get(group)
            .is_some_and(|g| g.members.is_empty() && !g.contest && g.leader.is_none());
        if unused && !self.own_groups.contains(group) {
            self.groups.remove(group);
        }
    }

    /// Whether we take part in `group`'s election now.
    fn contesting(&self, group: &str) -> bool {
        self.own_groups.contains(group) && self.groups.get(group).is_some_and(|g| g.contest)
    }

    /// The members of `group` that take part in its elections (Zyre's `zyre_group_peers`,
    /// less the peers that do not speak ELECT).
    fn electorate(&self, group: &str) -> Vec<Uuid> {
        self.groups
            .get(group)
            .map(|g| {
                g.members
                    .iter()
                    .filter(|m| self.electors.contains(m))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Starts (or restarts) an election with us as challenger after [`ELECTION_DELAY`], so
    /// that a burst of joins starts one; alone, we are leader at once.
    fn start_election(&mut self, group: &str) {
        if self.electorate(group).is_empty() {
            self.start_election_now(group, false);
            return;
        }
        self.elections_pending.insert(group.to_owned());
        self.election_due.get_or_insert(self.now + ELECTION_DELAY);
    }

    /// Starts an election now with us as challenger: ELECT to the electorate (Zyre), unless a
    /// lower contester is a member (its wave would win ours over anyway, and it starts one
    /// on the same changes). Alone, we are leader at once (Zyre does so when the others have
    /// gone).
    fn start_election_now(&mut self, group: &str, force: bool) {
        if !self.contesting(group) {
            return;
        }
        let electorate = self.electorate(group);
        let uuid_str = self.uuid_str.clone();
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let lower = g
            .contesters
            .iter()
            .any(|c| g.members.contains(c) && uuid_string(c) < uuid_str);
        // A lower contester starts its own wave on the same membership changes, and that wave
        // beats ours everywhere: we wait for it, and leave alone what we know (the wave of a
        // lower challenger we may already relay, the leader it may already have crowned).
        // Dropping them would leave us without a leader and, alone with no leader, we would
        // later start a wave of our own that everybody follows (a second, higher leader).
        let lower_wave = g
            .election
            .as_ref()
            .and_then(|e| e.caw.as_ref())
            .is_some_and(|caw| *caw < uuid_str);
        if (lower || lower_wave) && !force {
            debug!(group, "a lower contester leads this election");
            return;
        }
        g.leader = None;
        if electorate.is_empty() {
            g.election = None;
            self.elected(group, self.uuid);
            return;
        }
        g.election = Some(Election {
            started: Some(self.now),
            caw: Some(self.uuid_str.clone()),
            ..Election::default()
        });
        debug!(group, "election started");
        let body = ZreBody::Elect {
            group: group.to_owned(),
            challenger_id: self.uuid_str.clone(),
        };
        for m in electorate {
            self.send_to(m, body.clone());
        }
    }

    /// An election message from `from` about `group`: checked, and `from` counted as an
    /// elector (a Zyre peer shows it speaks ELECT by sending one; if we contest, that is a
    /// join to the election and it starts again). Returns false to ignore the message.
    fn election_message(&mut self, from: Uuid, group: &str) -> bool {
        // A member's JOIN (or HELLO) comes before its election messages on the same
        // connection; anything else is ignored and allocates nothing.
        let member = self
            .groups
            .get(group)
            .is_some_and(|g| g.members.contains(&from));
        if !member || !self.own_groups.contains(group) {
            debug!(peer = %from, group, "election message from a non-member, ignored");
            return false;
        }
        if self.electors.insert(from) && self.contesting(group) {
            self.start_election(group);
        }
        true
    }

    /// ELECT (Zyre `zyre_node_recv_peer`, ZRE_MSG_ELECT): adopt a lower challenger's wave and
    /// pass it on to everyone but its sender (our father in it); count echoes of the wave we
    /// support; when all neighbours have answered, echo to the father, or, if the wave is
    /// ours, announce LEADER.
    fn on_elect(&mut self, from: Uuid, group: &str, challenger: String) {
        if !self.election_message(from, group) {
            return;
        }
        let electorate = self.electorate(group);
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let own_word = harmony_peer::parse_uuid_string(&challenger) == Some(from);
        if own_word {
            g.contesters.insert(from);
        }
        // Once a leader is in office, a straggler of a wave that has finished (or lost) must
        // not start a wave over: only a challenger itself, or one lower than the leader, does.
        let finished =
            g.election.is_none() && g.leader.is_some_and(|l| challenger >= uuid_string(&l));
        // Our own wave is only ever started by us: a straggler of it after it ended is void.
        let ours_ended = challenger == self.uuid_str
            && g.election.as_ref().and_then(|e| e.caw.as_ref()) != Some(&challenger);
        if ours_ended || (finished && !own_word) {
            debug!(peer = %from, group, "ELECT of a finished wave, ignored");
            if finished && g.leader.is_some_and(|l| uuid_string(&l) == challenger) {
                g.early.insert(from);
            }
            return;
        }
        // A contester never supports a challenger above itself (in Zyre every contester
        // starts its own wave on the same changes, so that never happens there). A higher
        // contester's lone wave (its retry after it lost track of an election, or a straggler
        // of an old one) would otherwise be followed by everybody, the leader in office
        // included, and crown it over the lowest. We start our own wave instead (or leave it
        // to a lower contester): it beats the higher one everywhere.
        let lower_wave = g
            .election
            .as_ref()
            .and_then(|e| e.caw.as_ref())
            .is_some_and(|caw| *caw <= self.uuid_str);
        if self.own_groups.contains(group) && g.contest && challenger > self.uuid_str {
            if !lower_wave {
                debug!(peer = %from, group, "ELECT of a higher challenger: challenging it");
                self.start_election_now(group, false);
            }
            return;
        }
        let now = self.now;
        // Relays of the leader's new wave that came before its own ELECT (see `early`).
        let early = if g.leader.is_some_and(|l| uuid_string(&l) == challenger) {
            std::mem::take(&mut g.early)
        } else {
            BTreeSet::new()
        };
        let e = g.election.get_or_insert_with(Election::default);
        // Zyre: a lower challenger wins us over. Harmony also takes the challenger's own
        // ELECT for its wave as a new wave (it restarted); the neighbours already heard in
        // the old one keep counting (their relay of the new wave may have overtaken the
        // challenger's ELECT, and they send only one).
        let restarted = e.caw.as_ref() == Some(&challenger)
            && harmony_peer::parse_uuid_string(&challenger) == Some(from);
        if restarted || e.caw.as_ref().is_none_or(|caw| challenger < *caw) {
            let mut echoes = if restarted {
                std::mem::take(&mut e.echoes)
            } else {
                early
            };
            echoes.retain(|m| electorate.contains(m));
            *e = Election {
                started: Some(now),
                caw: Some(challenger.clone()),
                father: Some(from),
                echoes,
                ..Election::default()
            };
            let body = ZreBody::Elect {
                group: group.to_owned(),
                challenger_id: challenger.clone(),
            };
            for m in electorate.iter().filter(|m| **m != from) {
                self.send_to(*m, body.clone());
            }
        }
        let Some(e) = self.groups.get_mut(group).and_then(|g| g.election.as_mut()) else {
            return;
        };
        if e.caw.as_ref() != Some(&challenger) {
            return; // an unworthy challenger: ignored
        }
        e.echoes.insert(from);
        // Zyre waits for one ELECT from every neighbour, and so do we; we answer once.
        if !heard_all(&e.echoes, &electorate) || e.answered {
            return;
        }
        e.answered = true;
        if challenger == self.uuid_str {
            let body = ZreBody::Leader {
                group: group.to_owned(),
                leader_id: challenger,
            };
            for m in electorate {
                self.send_to(m, body.clone());
            }
        } else if let Some(father) = e.father {
            let body = ZreBody::Elect {
                group: group.to_owned(),
                challenger_id: challenger,
            };
            self.send_to(father, body);
        }
    }

    /// LEADER (Zyre ZRE_MSG_LEADER): pass the news on once, count it; when every neighbour
    /// has told us, the election is over: LEADER event.
    fn on_leader(&mut self, from: Uuid, group: &str, leader: String) {
        if !self.election_message(from, group) {
            return;
        }
        let electorate = self.electorate(group);
        let own_word = harmony_peer::parse_uuid_string(&leader) == Some(from);
        let Some(e) = self.groups.get_mut(group).and_then(|g| g.election.as_mut()) else {
            // Harmony: the leader's own word is enough for a node that lost track of the wave
            // (Zyre ignores it); nothing is passed on.
            if own_word
                && self
                    .groups
                    .get(group)
                    .is_some_and(|g| g.leader != Some(from))
            {
                self.elected(group, from);
            } else {
                debug!(peer = %from, group, "LEADER without an election under way, ignored");
            }
            return;
        };
        if e.caw.is_none() {
            debug!(peer = %from, group, "LEADER without an active wave, ignored");
            return;
        }
        // Harmony: a LEADER of another wave than ours (a straggler of one that lost or ended)
        // is not counted; in an undisturbed Zyre wave they are always the same.
        if e.caw.as_ref() != Some(&leader) {
            debug!(peer = %from, group, "LEADER of another wave, ignored");
            return;
        }
        let forward = leader != self.uuid_str && e.lrec == 0;
        e.lrec += 1;
        e.leader = Some(leader.clone());
        let complete = e.lrec >= electorate.len();
        if forward {
            // Zyre passes on its own active wave's id, which is the leader's in a wave that
            // ran undisturbed; Harmony passes on the leader it was told, so a wave cut short
            // by a restart cannot crown anyone else.
            let body = ZreBody::Leader {
                group: group.to_owned(),
                leader_id: leader.clone(),
            };
            for m in &electorate {
                self.send_to(*m, body.clone());
            }
        }
        if !complete {
            return;
        }
        if let Some(g) = self.groups.get_mut(group) {
            g.election = None;
        }
        if leader == self.uuid_str {
            self.elected(group, self.uuid);
        } else if let Some(uuid) =
            harmony_peer::parse_uuid_string(&leader).filter(|u| self.peers.contains_key(u))
        {
            self.elected(group, uuid);
        }
    }

    /// Records `leader` as `group`'s leader and tells the application (LEADER event).
    fn elected(&mut self, group: &str, leader: Uuid) {
        let name = if leader == self.uuid {
            self.name.clone()
        } else {
            self.peers
                .get(&leader)
                .map(|p| p.shared_name())
                .unwrap_or_default()
        };
        if let Some(g) = self.groups.get_mut(group) {
            g.leader = Some(leader);
            g.early.clear();
        }
        debug!(group, leader = %leader, "election finished");
        self.events.push_back(Event::Leader {
            peer: leader,
            name,
            group: group.into(),
        });
    }
}

/// Whether every member of `electorate` is in `heard`.
fn heard_all(heard: &BTreeSet<Uuid>, electorate: &[Uuid]) -> bool {
    electorate.iter().all(|m| heard.contains(m))
}
