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

/// What we know about one group: who is in it, whether we contest its leadership, who else
/// does, and the leader we last announced.
#[derive(Debug, Default)]
struct Group {
    members: BTreeSet<Uuid>,
    contest: bool,
    candidates: BTreeSet<Uuid>,
    leader: Option<Uuid>,
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
    status: u8,
    own_groups: BTreeSet<String>,
    peers: BTreeMap<Uuid, Peer>,
    groups: BTreeMap<String, Group>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    next_reap: Instant,
    stopped: bool,
    link_grace: Duration,
    /// Peers whose connection dropped, and when they are removed unless it comes back.
    links_down: BTreeMap<Uuid, Instant>,
}

impl ZreNode {
    /// A node with no peers; its first reap is one reap interval after `now`.
    pub fn new(config: NodeConfig, now: Instant) -> Self {
        let reap_interval = config.peer.reap_interval();
        Self {
            uuid: config.uuid,
            uuid_str: uuid_string(&config.uuid),
            name: config.name.into(),
            endpoint: config.endpoint,
            headers: config.headers,
            peer_config: config.peer,
            reap_interval,
            goodbye_on_stop: config.goodbye_on_stop,
            status: 0,
            own_groups: BTreeSet::new(),
            peers: BTreeMap::new(),
            groups: BTreeMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_reap: now + reap_interval,
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
        (!self.stopped).then(|| first_lost.map_or(self.next_reap, |t| t.min(self.next_reap)))
    }

    // ----- driver input --------------------------------------------------------------------

    /// The reap timer fired: check every peer's liveness (PING + EVASIVE, SILENT, EXIT).
    /// Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.stopped {
            self.remove_lost_links(now);
        }
        if self.stopped || now < self.next_reap {
            return;
        }
        self.next_reap = now + self.reap_interval;
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
            self.announce_candidacy(group);
        }
        self.update_leader(group);
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
        self.update_leader(group);
        self.forget_if_unused(group);
        true
    }

    /// Takes part in the leader election of `group` (Zyre `set_contest_in_group`). Elections
    /// run while we are in the group; ELECT/LEADER (ids 8-9) are sent only to members of a
    /// group someone contests in. If we are already in the group an election starts now.
    pub fn contest_in_group(&mut self, group: &str) {
        let g = self.groups.entry(group.to_owned()).or_default();
        if g.contest {
            return;
        }
        g.contest = true;
        if self.own_groups.contains(group) {
            self.announce_candidacy(group);
            self.update_leader(group);
        }
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

    /// Sends `content` to every peer known to be in `group` (we need not be in it ourselves).
    /// Returns how many peers it was sent to.
    pub fn shout(&mut self, group: &str, content: Vec<Bytes>) -> usize {
        if self.stopped {
            return 0;
        }
        let members: Vec<Uuid> = match self.groups.get(group) {
            Some(g) => g.members.iter().copied().collect(),
            None => return 0,
        };
        for &m in &members {
            self.send_to(
                m,
                ZreBody::Shout {
                    group: group.to_owned(),
                    content: content.clone(),
                },
            );
        }
        members.len()
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
        self.groups.values_mut().for_each(|g| {
            g.members.clear();
            g.candidates.clear();
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

    /// Sends a copy of `body` to every peer (entered or not: our HELLO precedes it on each
    /// connection, so the peer can order it).
    fn send_to_all(&mut self, body: &ZreBody) {
        let uuids: Vec<Uuid> = self.peers.keys().copied().collect();
        for u in uuids {
            self.send_to(u, body.clone());
        }
    }

    /// Sends a copy of `body` to every member of `group`, except `except`.
    fn send_to_group(&mut self, group: &str, body: &ZreBody, except: Option<Uuid>) {
        let members: Vec<Uuid> = self
            .groups
            .get(group)
            .map(|g| g.members.iter().copied().collect())
            .unwrap_or_default();
        for m in members {
            if Some(m) != except {
                self.send_to(m, body.clone());
            }
        }
    }

    /// Processes an accepted message from a ready peer.
    fn dispatch(&mut self, from: Uuid, body: ZreBody) {
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        let name = peer.shared_name();
        match body {
            ZreBody::Hello(hello) => {
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
                    group,
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
                            group: group.clone(),
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
            } => self.on_candidate(from, &group, &challenger_id),
            ZreBody::Leader { group, leader_id } => self.on_candidate(from, &group, &leader_id),
            ZreBody::Goodbye => {
                debug!(peer = %from, "GOODBYE");
                self.remove_peer(from);
            }
            other => debug!(peer = %from, id = other.id(), "ignoring message"),
        }
    }

    /// A peer joined a group (HELLO or JOIN): record it, JOIN event; if we contest, tell the
    /// newcomer we are a candidate.
    fn peer_joined(&mut self, from: Uuid, name: &Arc<str>, group: &str) {
        self.groups
            .entry(group.to_owned())
            .or_default()
            .members
            .insert(from);
        self.events.push_back(Event::Join {
            peer: from,
            name: Arc::clone(name),
            group: group.to_owned(),
        });
        if self.contesting(group) {
            let body = ZreBody::Elect {
                group: group.to_owned(),
                challenger_id: self.uuid_str.clone(),
            };
            self.send_to(from, body);
        }
        self.update_leader(group);
    }

    /// A member left `group` or was removed: it is no candidate any more.
    fn member_gone(&mut self, group: &str, uuid: Uuid) {
        if let Some(g) = self.groups.get_mut(group) {
            g.candidates.remove(&uuid);
        }
        self.update_leader(group);
        self.forget_if_unused(group);
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

    /// Announces our candidacy to every member of `group`.
    fn announce_candidacy(&mut self, group: &str) {
        let body = ZreBody::Elect {
            group: group.to_owned(),
            challenger_id: self.uuid_str.clone(),
        };
        self.send_to_group(group, &body, None);
    }

    /// ELECT or LEADER from a peer naming itself: it contests in `group`. (A Zyre echo-wave
    /// message that names somebody else carries nothing we need and is ignored.)
    fn on_candidate(&mut self, from: Uuid, group: &str, id: &str) {
        if harmony_peer::parse_uuid_string(id) != Some(from) {
            debug!(peer = %from, group, id, "election message for another node, ignored");
            return;
        }
        // Its JOIN (or HELLO) came first on the same connection, so a real contester is a
        // member by now; anything else is ignored (and allocates nothing).
        let Some(g) = self
            .groups
            .get_mut(group)
            .filter(|g| g.members.contains(&from))
        else {
            debug!(peer = %from, group, "election message from a non-member, ignored");
            return;
        };
        if g.candidates.insert(from) {
            self.update_leader(group);
        }
    }

    /// Recomputes `group`'s leader: the lowest UUID (= lowest Zyre UUID string) among the
    /// contesting members, us included. Emits LEADER when it changes; when we become leader we
    /// also send LEADER to the members.
    fn update_leader(&mut self, group: &str) {
        let in_group = self.own_groups.contains(group);
        let me_contesting = self.contesting(group);
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let computed = if in_group {
            let peers_min = g.candidates.intersection(&g.members).next().copied();
            let me = me_contesting.then_some(self.uuid);
            match (peers_min, me) {
                (Some(p), Some(m)) => Some(p.min(m)),
                (p, m) => p.or(m),
            }
        } else {
            None
        };
        if computed == g.leader {
            return;
        }
        g.leader = computed;
        let Some(leader) = computed else {
            return;
        };
        let name = if leader == self.uuid {
            self.name.clone()
        } else {
            self.peers
                .get(&leader)
                .map(|p| p.shared_name())
                .unwrap_or_default()
        };
        self.events.push_back(Event::Leader {
            peer: leader,
            name,
            group: group.to_owned(),
        });
        if leader == self.uuid {
            let body = ZreBody::Leader {
                group: group.to_owned(),
                leader_id: self.uuid_str.clone(),
            };
            self.send_to_group(group, &body, None);
        }
    }
}
