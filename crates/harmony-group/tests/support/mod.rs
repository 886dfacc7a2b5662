//! A deterministic in-memory network of `ZreNode`s: virtual clock, UDP-like beacons (with
//! loss), DEALER->ROUTER connections that deliver in order with random delays, crashes and
//! restarts. Messages go through the real ZRE codec (`to_frames` / `decode`).
//!
//! Model choices:
//! * each node lives in a *slot* with a fixed endpoint `tcp://10.0.<s/250>.<s%250+1>:49152`;
//!   a restart reuses the slot's endpoint (like a process that binds the same port), with a new
//!   or the same UUID;
//! * a connection is keyed by (source incarnation, peer UUID) and targets an endpoint; it
//!   delivers to whatever incarnation lives there (like a ZMQ DEALER that reconnects);
//! * `Disconnect` and crashes drop what is still in flight on the connection;
//! * each incarnation has a global number (`inc`) so logs distinguish restarts.

#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_group::{Action, Event, NodeConfig, PeerConfig, ZreNode};
use harmony_wire::zre::{ZreBody, ZreMessage};
use uuid::Uuid;

/// xorshift64* — tiny, deterministic, good enough for a simulation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// A random UUID.
    pub fn uuid(&mut self) -> Uuid {
        Uuid::from_u128(((self.next_u64() as u128) << 64) | self.next_u64() as u128)
    }
}

/// Network parameters.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Beacon period (ms).
    pub beacon_interval_ms: u64,
    /// Percentage of beacons lost.
    pub beacon_loss_pct: u64,
    /// Minimum one-way latency (ms).
    pub latency_min_ms: u64,
    /// Maximum one-way latency (ms).
    pub latency_max_ms: u64,
    /// Peer timeouts of every node.
    pub peer: PeerConfig,
    /// Messages a connection may have in flight before a send fails (the driver's queue).
    pub send_queue_limit: Option<usize>,
    /// The driver reports connections dropping and coming back (the socket monitor): a
    /// crash drops every connection to the node, a start at its endpoint brings them back.
    pub report_links: bool,
    /// Nodes say GOODBYE when they stop (as in gossip mode) and the stop lets it go out, like
    /// the node's DEALERs with a linger; otherwise a stop sends nothing but its beacon.
    pub goodbye_on_stop: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            beacon_interval_ms: 1000,
            beacon_loss_pct: 10,
            latency_min_ms: 1,
            latency_max_ms: 40,
            peer: PeerConfig::default(),
            send_queue_limit: None,
            report_links: false,
            goodbye_on_stop: false,
        }
    }
}

/// One recorded event: when, who observed it, what.
#[derive(Debug, Clone)]
pub struct Record {
    /// Virtual time (ms).
    pub t: u64,
    /// Observer incarnation.
    pub inc: u64,
    /// The event.
    pub event: Event,
}

/// Life of one incarnation, for the checks.
#[derive(Debug, Clone)]
pub struct Life {
    /// Its UUID.
    pub uuid: Uuid,
    /// Its slot.
    pub slot: usize,
    /// Start time (ms).
    pub start: u64,
    /// End time (ms) and whether it crashed (vs clean stop).
    pub end: Option<(u64, bool)>,
    /// Effective own joins/leaves: (time, group, joined).
    pub membership: Vec<(u64, String, bool)>,
    /// Groups it contests in.
    pub contest: Vec<String>,
}

impl Life {
    /// Alive over the whole interval [a, b].
    pub fn alive_over(&self, a: u64, b: u64) -> bool {
        self.start <= a && self.end.is_none_or(|(e, _)| e > b)
    }
    /// Member of `group` over the whole interval [a, b] (by its own joins/leaves).
    pub fn member_over(&self, group: &str, a: u64, b: u64) -> bool {
        let mut member = false;
        for (t, g, joined) in &self.membership {
            if g != group {
                continue;
            }
            if *t <= a {
                member = *joined;
            } else if *t <= b && !*joined {
                return false;
            }
        }
        member
    }
}

struct Live {
    inc: u64,
    core: ZreNode,
    timer_at: Option<u64>,
}

struct Slot {
    ip: Ipv4Addr,
    port: u16,
    live: Option<Live>,
}

struct Conn {
    id: u64,
    endpoint: String,
    last_ms: u64,
    in_flight: usize,
    /// Messages that arrived while nothing lived at the endpoint: held like a ZMQ DEALER
    /// holds them while reconnecting, delivered when a node binds there.
    held: Vec<(Uuid, Vec<Bytes>)>,
}

enum Item {
    Deliver {
        conn: u64,
        key: (u64, Uuid),
        from: Uuid,
        frames: Vec<Bytes>,
    },
    BeaconTick {
        slot: usize,
        inc: u64,
    },
    BeaconRecv {
        slot: usize,
        inc: u64,
        uuid: Uuid,
        ip: Ipv4Addr,
        port: u16,
    },
    Timer {
        slot: usize,
        inc: u64,
        at: u64,
    },
    Link {
        slot: usize,
        inc: u64,
        peer: Uuid,
        up: bool,
    },
}

/// The simulated network.
pub struct Sim {
    /// The simulation's random source (shared by network and workload).
    pub rng: Rng,
    /// Network parameters.
    pub config: NetConfig,
    base: Instant,
    now: u64,
    slots: Vec<Slot>,
    by_endpoint: HashMap<String, usize>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    items: HashMap<u64, Item>,
    seq: u64,
    conns: BTreeMap<(u64, Uuid), Conn>,
    next_inc: u64,
    /// Every event every node emitted.
    pub log: Vec<Record>,
    /// Every incarnation, indexed by `inc`.
    pub lives: Vec<Life>,
    /// Messages delivered to a node.
    pub delivered: u64,
    /// Sends refused because a connection's queue was full: (time, sender inc, peer).
    pub send_failures: Vec<(u64, u64, Uuid)>,
    /// Groups in which ELECT/LEADER may be sent (anything else panics).
    pub election_groups: Vec<String>,
    /// Print the traffic between these two UUIDs (debugging aid).
    pub trace: Option<(Uuid, Uuid)>,
    /// A stop with linger is under way: its disconnects keep what is in flight.
    lingering: bool,
}

impl Sim {
    /// `slots` empty slots.
    pub fn new(seed: u64, slots: usize, config: NetConfig) -> Self {
        let slots: Vec<Slot> = (0..slots)
            .map(|s| Slot {
                ip: Ipv4Addr::new(10, 0, (s / 250) as u8, (s % 250 + 1) as u8),
                port: 49152,
                live: None,
            })
            .collect();
        let by_endpoint = slots
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("tcp://{}:{}", s.ip, s.port), i))
            .collect();
        Self {
            rng: Rng::new(seed),
            config,
            base: Instant::now(),
            now: 0,
            slots,
            by_endpoint,
            queue: BinaryHeap::new(),
            items: HashMap::new(),
            seq: 0,
            conns: BTreeMap::new(),
            next_inc: 0,
            log: Vec::new(),
            lives: Vec::new(),
            delivered: 0,
            send_failures: Vec::new(),
            election_groups: Vec::new(),
            trace: std::env::var("SIM_TRACE").ok().and_then(|v| {
                let (a, b) = v.split_once(',')?;
                Some((Uuid::parse_str(a).ok()?, Uuid::parse_str(b).ok()?))
            }),
            lingering: false,
        }
    }

    /// Current virtual time (ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    fn instant(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    fn schedule(&mut self, at: u64, item: Item) {
        self.seq += 1;
        self.items.insert(self.seq, item);
        self.queue.push(Reverse((at, self.seq)));
    }

    fn latency(&mut self) -> u64 {
        let span = self.config.latency_max_ms - self.config.latency_min_ms + 1;
        self.config.latency_min_ms + self.rng.below(span)
    }

    /// The endpoint of a slot.
    pub fn endpoint(&self, slot: usize) -> String {
        format!("tcp://{}:{}", self.slots[slot].ip, self.slots[slot].port)
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The live incarnation in a slot.
    pub fn live_inc(&self, slot: usize) -> Option<u64> {
        self.slots[slot].live.as_ref().map(|l| l.inc)
    }

    /// The live node in a slot.
    pub fn node(&self, slot: usize) -> Option<&ZreNode> {
        self.slots[slot].live.as_ref().map(|l| &l.core)
    }

    /// Slots with a live node.
    pub fn live_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&s| self.slots[s].live.is_some())
            .collect()
    }

    /// Starts a node with `uuid` in an empty slot; it contests in `contest`.
    pub fn start(&mut self, slot: usize, uuid: Uuid, contest: &[&str]) -> u64 {
        assert!(self.slots[slot].live.is_none(), "slot {slot} busy");
        let mut c = NodeConfig::new(uuid);
        c.endpoint = self.endpoint(slot);
        c.peer = self.config.peer.clone();
        c.name = format!("n{slot}");
        c.headers = vec![("X-SLOT".into(), slot.to_string())];
        c.goodbye_on_stop = self.config.goodbye_on_stop;
        let mut core = ZreNode::new(c, self.instant(self.now));
        for g in contest {
            core.contest_in_group(g);
        }
        let inc = self.next_inc;
        self.next_inc += 1;
        if self.trace.is_some() {
            eprintln!("{:>6} start slot {slot} inc {inc} {uuid}", self.now);
        }
        self.lives.push(Life {
            uuid,
            slot,
            start: self.now,
            end: None,
            membership: Vec::new(),
            contest: contest.iter().map(|g| (*g).to_owned()).collect(),
        });
        self.slots[slot].live = Some(Live {
            inc,
            core,
            timer_at: None,
        });
        let first = self.now + self.rng.below(self.config.beacon_interval_ms);
        self.schedule(first, Item::BeaconTick { slot, inc });
        self.flush(slot);
        self.report_links(slot, true);
        self.release_held(slot);
        inc
    }

    /// The node in `slot` vanishes silently.
    pub fn crash(&mut self, slot: usize) {
        let live = self.slots[slot]
            .live
            .take()
            .expect("crash of an empty slot");
        if self.trace.is_some() {
            eprintln!("{:>6} crash slot {slot} {}", self.now, live.core.uuid());
        }
        self.lives[live.inc as usize].end = Some((self.now, true));
        self.conns.retain(|(inc, _), _| *inc != live.inc);
        self.report_links(slot, false);
    }

    /// Tells every node connected to `slot`'s endpoint that its connection went down or up.
    fn report_links(&mut self, slot: usize, up: bool) {
        if !self.config.report_links {
            return;
        }
        let endpoint = self.endpoint(slot);
        let reports: Vec<(u64, Uuid)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.endpoint == endpoint)
            .map(|(key, _)| *key)
            .collect();
        for (inc, peer) in reports {
            let slot = self.lives[inc as usize].slot;
            let at = self.now + self.latency();
            self.schedule(
                at,
                Item::Link {
                    slot,
                    inc,
                    peer,
                    up,
                },
            );
        }
    }

    /// The node in `slot` stops cleanly: STOP, disconnects, a port-0 beacon.
    pub fn stop(&mut self, slot: usize) {
        self.lingering = self.config.goodbye_on_stop;
        self.with(slot, ZreNode::stop);
        self.lingering = false;
        let live = self.slots[slot].live.take().expect("stop of an empty slot");
        self.lives[live.inc as usize].end = Some((self.now, false));
        if !self.config.goodbye_on_stop {
            self.conns.retain(|(inc, _), _| *inc != live.inc);
        }
        let (ip, uuid) = (self.slots[slot].ip, live.core.uuid());
        self.broadcast_beacon(slot, uuid, ip, 0);
    }

    /// Runs a command on the node in `slot`, then handles its output.
    pub fn with<R>(&mut self, slot: usize, f: impl FnOnce(&mut ZreNode) -> R) -> R {
        let live = self.slots[slot].live.as_mut().expect("no node in slot");
        let r = f(&mut live.core);
        self.flush(slot);
        r
    }

    /// `join` on the node in `slot`, recorded for the checks.
    pub fn join(&mut self, slot: usize, group: &str) -> bool {
        let done = self.with(slot, |n| n.join(group));
        if done {
            let inc = self.live_inc(slot).expect("live");
            self.lives[inc as usize]
                .membership
                .push((self.now, group.to_owned(), true));
        }
        done
    }

    /// `leave` on the node in `slot`, recorded for the checks.
    pub fn leave(&mut self, slot: usize, group: &str) -> bool {
        let done = self.with(slot, |n| n.leave(group));
        if done {
            let inc = self.live_inc(slot).expect("live");
            self.lives[inc as usize]
                .membership
                .push((self.now, group.to_owned(), false));
        }
        done
    }

    /// Moves a node's actions onto the network, its events into the log, and its timer into
    /// the queue.
    fn flush(&mut self, slot: usize) {
        let now = self.now;
        let Some(live) = self.slots[slot].live.as_mut() else {
            return;
        };
        let inc = live.inc;
        let from = live.core.uuid();
        let actions: Vec<Action> = live.core.drain_actions().collect();
        let events: Vec<Event> = live.core.drain_events().collect();
        let timeout = live.core.poll_timeout();
        for event in events {
            self.log.push(Record { t: now, inc, event });
        }
        let mut failed: Vec<Uuid> = Vec::new();
        for action in actions {
            if let Some((a, b)) = self.trace {
                let peer = match &action {
                    Action::Connect { peer, .. }
                    | Action::Send { peer, .. }
                    | Action::Disconnect { peer } => *peer,
                };
                if (from == a && peer == b) || (from == b && peer == a) {
                    eprintln!("{now:>6} inc {inc} {from} -> {action:?}");
                }
            }
            match action {
                Action::Connect { peer, endpoint } => {
                    self.seq += 1;
                    let id = self.seq;
                    let old = self.conns.insert(
                        (inc, peer),
                        Conn {
                            id,
                            endpoint,
                            last_ms: now,
                            in_flight: 0,
                            held: Vec::new(),
                        },
                    );
                    assert!(old.is_none(), "Connect to {peer} without Disconnect");
                }
                Action::Disconnect { peer } => {
                    if !self.lingering {
                        self.conns.remove(&(inc, peer));
                    }
                }
                Action::Send { peer, message } => {
                    if failed.contains(&peer) {
                        continue;
                    }
                    let full = self.conns.get(&(inc, peer)).is_some_and(|c| {
                        self.config
                            .send_queue_limit
                            .is_some_and(|l| c.in_flight >= l)
                    });
                    if full {
                        failed.push(peer);
                        self.send_failures.push((now, inc, peer));
                        continue;
                    }
                    if let ZreBody::Elect { group, .. } | ZreBody::Leader { group, .. } =
                        &message.body
                    {
                        assert!(
                            self.election_groups.contains(group),
                            "election message in group {group} nobody contests"
                        );
                    }
                    let frames = message.to_frames().expect("encodable message");
                    let lat = self.latency();
                    let conn = self
                        .conns
                        .get_mut(&(inc, peer))
                        .expect("Send before Connect");
                    let at = (now + lat).max(conn.last_ms);
                    conn.last_ms = at;
                    conn.in_flight += 1;
                    let id = conn.id;
                    self.schedule(
                        at,
                        Item::Deliver {
                            conn: id,
                            key: (inc, peer),
                            from,
                            frames,
                        },
                    );
                }
            }
        }
        if let Some(t) = timeout {
            let at = t.saturating_duration_since(self.base).as_millis() as u64;
            let Some(live) = self.slots[slot].live.as_mut() else {
                return;
            };
            if live.timer_at != Some(at) {
                live.timer_at = Some(at);
                self.schedule(at, Item::Timer { slot, inc, at });
            }
        }
        let now_i = self.instant(now);
        for peer in failed {
            self.with(slot, |n| n.handle_send_failed(peer, now_i));
        }
    }

    fn broadcast_beacon(&mut self, from_slot: usize, uuid: Uuid, ip: Ipv4Addr, port: u16) {
        for s in 0..self.slots.len() {
            if s == from_slot {
                continue;
            }
            let Some(inc) = self.live_inc(s) else {
                continue;
            };
            if self.rng.pct(self.config.beacon_loss_pct) {
                continue;
            }
            let at = self.now + self.latency();
            self.schedule(
                at,
                Item::BeaconRecv {
                    slot: s,
                    inc,
                    uuid,
                    ip,
                    port,
                },
            );
        }
    }

    fn live_is(&self, slot: usize, inc: u64) -> bool {
        self.live_inc(slot) == Some(inc)
    }

    fn deliver(&mut self, slot: usize, from: Uuid, frames: &[Bytes]) {
        let now = self.instant(self.now);
        let message = ZreMessage::decode(frames, 1 << 20).expect("decodable message");
        if let Some((a, b)) = self.trace {
            let to = self.node(slot).map(ZreNode::uuid);
            if (from == a && to == Some(b)) || (from == b && to == Some(a)) {
                eprintln!(
                    "{:>6} deliver {from} => slot {slot}: {} {}",
                    self.now,
                    message.sequence,
                    message.body.name()
                );
            }
        }
        self.delivered += 1;
        self.with(slot, |n| n.handle_message(from, message, now));
    }

    /// Delivers what connections held for the endpoint of `slot` (a node just bound it).
    fn release_held(&mut self, slot: usize) {
        let endpoint = self.endpoint(slot);
        let keys: Vec<(u64, Uuid)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.endpoint == endpoint && !c.held.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let held = match self.conns.get_mut(&key) {
                Some(c) => std::mem::take(&mut c.held),
                None => continue,
            };
            if let Some(c) = self.conns.get_mut(&key) {
                c.in_flight -= held.len();
            }
            for (from, frames) in held {
                if self.slots[slot].live.is_none() {
                    return;
                }
                self.deliver(slot, from, &frames);
            }
        }
    }

    /// Processes everything scheduled up to `until` (ms), then sets the clock to `until`.
    pub fn run_until(&mut self, until: u64) {
        while let Some(&Reverse((at, id))) = self.queue.peek() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let item = self.items.remove(&id).expect("scheduled item");
            self.process(item);
        }
        self.now = until;
    }

    fn process(&mut self, item: Item) {
        let now = self.instant(self.now);
        match item {
            Item::BeaconTick { slot, inc } => {
                if !self.live_is(slot, inc) {
                    return;
                }
                let (ip, port) = (self.slots[slot].ip, self.slots[slot].port);
                let uuid = self.node(slot).expect("live").uuid();
                self.broadcast_beacon(slot, uuid, ip, port);
                let next = self.now + self.config.beacon_interval_ms;
                self.schedule(next, Item::BeaconTick { slot, inc });
            }
            Item::BeaconRecv {
                slot,
                inc,
                uuid,
                ip,
                port,
            } => {
                if self.live_is(slot, inc) {
                    self.with(slot, |n| n.handle_beacon(uuid, IpAddr::V4(ip), port, now));
                }
            }
            Item::Timer { slot, inc, at } => {
                if self.live_is(slot, inc)
                    && self.slots[slot].live.as_ref().and_then(|l| l.timer_at) == Some(at)
                {
                    self.with(slot, |n| n.handle_timeout(now));
                }
            }
            Item::Link {
                slot,
                inc,
                peer,
                up,
            } => {
                if self.live_is(slot, inc) {
                    self.with(slot, |n| {
                        if up {
                            n.handle_link_up(peer, now);
                        } else {
                            n.handle_link_down(peer, now);
                        }
                    });
                }
            }
            Item::Deliver {
                conn,
                key,
                from,
                frames,
            } => {
                let Some(c) = self.conns.get_mut(&key) else {
                    return;
                };
                if c.id != conn {
                    return;
                }
                let Some(&slot) = self.by_endpoint.get(&c.endpoint) else {
                    return;
                };
                if self.slots[slot].live.is_none() || !c.held.is_empty() {
                    if self.trace.is_some_and(|(a, b)| from == a || from == b) {
                        eprintln!("{:>6} held from {from} at {}", self.now, c.endpoint);
                    }
                    c.held.push((from, frames));
                    return;
                }
                c.in_flight -= 1;
                self.deliver(slot, from, &frames);
            }
        }
    }
}
