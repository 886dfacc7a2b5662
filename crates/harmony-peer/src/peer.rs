//! One remote node: outbound sequence, inbound sequence check, HELLO state, liveness.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harmony_wire::zre::{Hello, ZreBody, ZreMessage};
use uuid::Uuid;

use crate::PeerConfig;

/// Why a peer's session is broken; the node removes the peer (EXIT) and lets the next beacon
/// or HELLO recreate it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// A message arrived out of sequence (lost, duplicated or reordered): rfc/36 says the
    /// peer is then invalid.
    #[error("sequence error: expected {expected}, got {got}")]
    SequenceGap {
        /// The sequence number we wanted.
        expected: u16,
        /// The sequence number the message carried.
        got: u16,
    },
    /// A JOIN or LEAVE carried a group status that does not follow the one we track (Zyre
    /// asserts here and aborts; Harmony drops the peer).
    #[error("group status mismatch: expected {expected}, got {got}")]
    StatusMismatch {
        /// The status we computed (our copy + 1).
        expected: u8,
        /// The status the message carried.
        got: u8,
    },
}

/// What [`Peer::receive`] made of an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// In sequence from a ready peer (or its HELLO): process it.
    Accepted,
    /// The peer's HELLO has not arrived yet and this is not a HELLO: drop it silently
    /// (Zyre ignores commands from peers that are not ready).
    Ignored,
}

/// What the periodic liveness check says about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reap {
    /// Heard from recently enough.
    Alive,
    /// Quiet past the evasive timeout: send a PING. The flags say which events to emit now
    /// (each once per quiet spell; Zyre repeats them every reap, a known TODO there).
    Ping {
        /// Emit EVASIVE now.
        evasive: bool,
        /// Emit SILENT now (no answer one reap interval after becoming evasive).
        silent: bool,
    },
    /// Quiet past the expired timeout: remove the peer (EXIT).
    Expired,
}

/// The session with one remote node.
#[derive(Debug, Clone)]
pub struct Peer {
    uuid: Uuid,
    endpoint: String,
    /// Shared with every event that names the peer (no copy per message).
    name: Arc<str>,
    /// The group of its last SHOUT, shared with the events of its shouts to it.
    shout_group: Option<Arc<str>>,
    headers: Vec<(String, String)>,
    groups: BTreeSet<String>,
    status: u8,
    ready: bool,
    connected: bool,
    sent_sequence: u16,
    want_sequence: u16,
    created: Instant,
    replaced: bool,
    evasive_at: Instant,
    expired_at: Instant,
    reported_evasive: bool,
    reported_silent: bool,
    evasive_timeout: Duration,
    expired_timeout: Duration,
}

impl Peer {
    /// A peer we just learned about (beacon or HELLO) at `endpoint`; its timers start now.
    /// The node is expected to connect to `endpoint` and send [`Peer::stamp`]ed HELLO first.
    pub fn new(uuid: Uuid, endpoint: impl Into<String>, config: &PeerConfig, now: Instant) -> Self {
        let mut peer = Self {
            uuid,
            endpoint: endpoint.into(),
            name: Arc::from(""),
            shout_group: None,
            headers: Vec::new(),
            groups: BTreeSet::new(),
            status: 0,
            ready: false,
            connected: true,
            sent_sequence: 0,
            want_sequence: 0,
            created: now,
            replaced: false,
            evasive_at: now,
            expired_at: now,
            reported_evasive: false,
            reported_silent: false,
            evasive_timeout: config.evasive_timeout,
            expired_timeout: config.expired_timeout,
        };
        // Zyre names a peer by its UUID until its HELLO says otherwise.
        peer.name = Arc::from(&crate::uuid_string(&uuid)[..6]);
        peer.refresh(now);
        peer
    }

    /// The peer's UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The inbox endpoint we connect to, e.g. `tcp://10.0.0.1:49152`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The name from its HELLO (first 6 hex digits of the UUID before that).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared (what events carry).
    pub fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// `group` shared (what a SHOUT event carries): the same `Arc` as long as the peer shouts
    /// to the same group, so a stream of shouts costs no copy of its name.
    pub fn shared_group(&mut self, group: &str) -> Arc<str> {
        match &self.shout_group {
            Some(last) if **last == *group => Arc::clone(last),
            _ => Arc::clone(self.shout_group.insert(Arc::from(group))),
        }
    }

    /// The headers from its HELLO (or its latest change), in wire order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of one header from its HELLO.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Replaces its headers (a Harmony peer changed them after its HELLO).
    pub fn set_headers(&mut self, headers: Vec<(String, String)>) {
        self.headers = headers;
    }

    /// The groups the peer is in, as far as we know.
    pub fn groups(&self) -> &BTreeSet<String> {
        &self.groups
    }

    /// Whether the peer is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }

    /// Our copy of the peer's group status counter.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Whether its HELLO arrived (only then are its other messages processed).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether our outbound connection is considered usable (false after a send failure).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The sequence number the last message we sent carried (0 before HELLO).
    pub fn sent_sequence(&self) -> u16 {
        self.sent_sequence
    }

    /// When this session (and our outbound connection with its HELLO) started.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// Marks this session as the replacement of a ready one that the peer's new HELLO ended
    /// (our HELLO on it then reaches a peer that has us ready, and it answers with a HELLO).
    pub fn set_replaced(&mut self) {
        self.replaced = true;
    }

    /// Whether [`Peer::set_replaced`] was called.
    pub fn replaced(&self) -> bool {
        self.replaced
    }

    /// Forgets the inbound session (the peer started a new one with a new HELLO) while our
    /// outbound session goes on: not ready, no groups, status 0. Returns the groups it was in.
    pub fn reset_inbound(&mut self) -> BTreeSet<String> {
        self.ready = false;
        self.want_sequence = 0;
        self.status = 0;
        std::mem::take(&mut self.groups)
    }

    /// When the peer turns evasive if nothing arrives before.
    pub fn evasive_at(&self) -> Instant {
        self.evasive_at
    }

    /// When the peer expires if nothing arrives before.
    pub fn expired_at(&self) -> Instant {
        self.expired_at
    }

    /// Gives `body` the next outbound sequence number (HELLO = 1, wrapping 65535 -> 0 like
    /// Zyre's `uint16_t`). Returns `None` once the connection is marked broken, so nothing
    /// is sent (and no number consumed) on it.
    pub fn stamp(&mut self, body: ZreBody) -> Option<ZreMessage> {
        let sequence = self.next_sequence()?;
        Some(ZreMessage { sequence, body })
    }

    /// [`Peer::stamp`] without the message: takes the next outbound sequence number, for a
    /// driver that encodes one message once for many peers and patches in each one's number.
    pub fn next_sequence(&mut self) -> Option<u16> {
        if !self.connected {
            return None;
        }
        self.sent_sequence = self.sent_sequence.wrapping_add(1);
        Some(self.sent_sequence)
    }

    /// Marks the outbound connection broken (the driver could not queue a message): further
    /// [`Peer::stamp`] calls return `None`.
    pub fn disconnect(&mut self) {
        self.connected = false;
    }

    /// Checks an inbound message's place in the session: a HELLO must carry sequence 1 and
    /// makes the peer ready; any other message is ignored before HELLO and must carry the
    /// previous sequence + 1 (wrapping) after it. Accepted messages refresh the timers.
    pub fn receive(&mut self, message: &ZreMessage, now: Instant) -> Result<Received, PeerError> {
        if let ZreBody::Hello(_) = message.body {
            self.want_sequence = 1;
        } else if !self.ready {
            return Ok(Received::Ignored);
        } else {
            self.want_sequence = self.want_sequence.wrapping_add(1);
        }
        if message.sequence != self.want_sequence {
            return Err(PeerError::SequenceGap {
                expected: self.want_sequence,
                got: message.sequence,
            });
        }
        self.ready = true;
        self.refresh(now);
        Ok(Received::Accepted)
    }

    /// Takes name, headers and the advertised groups from the peer's HELLO. The status is
    /// taken separately with [`Peer::set_status`] after the groups were joined (Zyre order).
    /// Returns the groups that are new for this peer.
    pub fn apply_hello(&mut self, hello: &Hello) -> Vec<String> {
        if *self.name != *hello.name {
            self.name = Arc::from(hello.name.as_str());
        }
        self.headers.clone_from(&hello.headers);
        let mut new = Vec::new();
        for g in &hello.groups {
            if self.groups.insert(g.clone()) {
                new.push(g.clone());
            }
        }
        new
    }

    /// Sets our copy of the peer's group status (from its HELLO).
    pub fn set_status(&mut self, status: u8) {
        self.status = status;
    }

    /// Records a JOIN or LEAVE: our copy of its status goes up by one and must equal the
    /// status the message carried. On success returns whether membership changed.
    pub fn apply_group_change(
        &mut self,
        group: &str,
        joined: bool,
        status: u8,
    ) -> Result<bool, PeerError> {
        let expected = self.status.wrapping_add(1);
        if status != expected {
            return Err(PeerError::StatusMismatch {
                expected,
                got: status,
            });
        }
        self.status = expected;
        Ok(if joined {
            self.groups.insert(group.to_owned())
        } else {
            self.groups.remove(group)
        })
    }

    /// Restarts the evasive and expired timers (any accepted message; a beacon if so
    /// configured).
    pub fn refresh(&mut self, now: Instant) {
        self.evasive_at = now + self.evasive_timeout;
        self.expired_at = now + self.expired_timeout;
        self.reported_evasive = false;
        self.reported_silent = false;
    }

    /// The periodic liveness check, called every reap interval (see
    /// [`PeerConfig::reap_interval`]).
    pub fn reap(&mut self, now: Instant, reap_interval: Duration) -> Reap {
        if now >= self.expired_at {
            return Reap::Expired;
        }
        if now < self.evasive_at {
            return Reap::Alive;
        }
        let evasive = !self.reported_evasive;
        self.reported_evasive = true;
        let silent = now >= self.evasive_at + reap_interval && !self.reported_silent;
        if silent {
            self.reported_silent = true;
        }
        Reap::Ping { evasive, silent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> ZreBody {
        ZreBody::Hello(Hello {
            endpoint: "tcp://127.0.0.1:5000".into(),
            groups: vec!["A".into(), "B".into()],
            status: 7,
            name: "bob".into(),
            headers: vec![("X-K".into(), "v".into())],
        })
    }

    fn msg(sequence: u16, body: ZreBody) -> ZreMessage {
        ZreMessage { sequence, body }
    }

    fn peer(now: Instant) -> Peer {
        Peer::new(
            Uuid::from_u128(7),
            "tcp://127.0.0.1:5000",
            &PeerConfig::default(),
            now,
        )
    }

    #[test]
    fn shouts_to_one_group_share_its_name() {
        let mut p = peer(Instant::now());
        let a = p.shared_group("CHAT");
        let b = p.shared_group("CHAT");
        assert_eq!(&*a, "CHAT");
        assert!(Arc::ptr_eq(&a, &b), "the same group is shared, not copied");
        let c = p.shared_group("OTHER");
        assert_eq!(&*c, "OTHER");
        let d = p.shared_group("CHAT");
        assert_eq!(&*d, "CHAT", "another group after a change");
        assert!(!Arc::ptr_eq(&a, &d));
    }

    #[test]
    fn outbound_sequence_starts_at_one_and_wraps() {
        let now = Instant::now();
        let mut p = peer(now);
        assert_eq!(p.stamp(hello()).map(|m| m.sequence), Some(1));
        assert_eq!(p.stamp(ZreBody::Ping).map(|m| m.sequence), Some(2));
        for _ in 2..65535u32 {
            p.stamp(ZreBody::Ping);
        }
        assert_eq!(p.sent_sequence(), 65535);
        assert_eq!(p.stamp(ZreBody::Ping).map(|m| m.sequence), Some(0));
        assert_eq!(p.stamp(ZreBody::Ping).map(|m| m.sequence), Some(1));
        p.disconnect();
        assert_eq!(p.stamp(ZreBody::Ping), None);
        assert_eq!(p.sent_sequence(), 1);
    }

    #[test]
    fn messages_before_hello_are_ignored() {
        let now = Instant::now();
        let mut p = peer(now);
        assert_eq!(
            p.receive(&msg(5, ZreBody::Ping), now),
            Ok(Received::Ignored)
        );
        assert!(!p.is_ready());
        assert_eq!(p.receive(&msg(1, hello()), now), Ok(Received::Accepted));
        assert!(p.is_ready());
        assert_eq!(
            p.receive(&msg(2, ZreBody::Ping), now),
            Ok(Received::Accepted)
        );
    }

    #[test]
    fn hello_must_be_sequence_one() {
        let now = Instant::now();
        let mut p = peer(now);
        assert_eq!(
            p.receive(&msg(2, hello()), now),
            Err(PeerError::SequenceGap {
                expected: 1,
                got: 2
            })
        );
        assert!(!p.is_ready());
    }

    #[test]
    fn gap_and_reorder_are_errors() {
        let now = Instant::now();
        let mut p = peer(now);
        p.receive(&msg(1, hello()), now).unwrap();
        p.receive(&msg(2, ZreBody::Ping), now).unwrap();
        assert_eq!(
            p.receive(&msg(4, ZreBody::Ping), now),
            Err(PeerError::SequenceGap {
                expected: 3,
                got: 4
            })
        );
        let mut p = peer(now);
        p.receive(&msg(1, hello()), now).unwrap();
        p.receive(&msg(2, ZreBody::Ping), now).unwrap();
        assert!(p.receive(&msg(2, ZreBody::Ping), now).is_err());
    }

    #[test]
    fn inbound_sequence_wraps() {
        let now = Instant::now();
        let mut p = peer(now);
        p.receive(&msg(1, hello()), now).unwrap();
        for s in 2..=65535u16 {
            p.receive(&msg(s, ZreBody::PingOk), now).unwrap();
        }
        assert_eq!(
            p.receive(&msg(0, ZreBody::PingOk), now),
            Ok(Received::Accepted)
        );
        assert_eq!(
            p.receive(&msg(1, ZreBody::PingOk), now),
            Ok(Received::Accepted)
        );
    }

    #[test]
    fn status_must_follow() {
        let now = Instant::now();
        let mut p = peer(now);
        let ZreBody::Hello(h) = hello() else {
            unreachable!()
        };
        assert_eq!(p.apply_hello(&h), vec!["A".to_owned(), "B".to_owned()]);
        p.set_status(h.status);
        assert_eq!(p.apply_group_change("C", true, 8), Ok(true));
        assert_eq!(p.apply_group_change("C", false, 9), Ok(true));
        assert_eq!(p.apply_group_change("C", false, 10), Ok(false));
        assert_eq!(
            p.apply_group_change("D", true, 12),
            Err(PeerError::StatusMismatch {
                expected: 11,
                got: 12
            })
        );
        p.set_status(255);
        assert_eq!(p.apply_group_change("D", true, 0), Ok(true));
    }

    #[test]
    fn liveness_evasive_silent_expired() {
        let t0 = Instant::now();
        let cfg = PeerConfig::default();
        let reap = cfg.reap_interval();
        let mut p = Peer::new(Uuid::from_u128(1), "tcp://x:1", &cfg, t0);
        let s = Duration::from_secs;
        assert_eq!(p.reap(t0 + s(4), reap), Reap::Alive);
        assert_eq!(
            p.reap(t0 + s(5), reap),
            Reap::Ping {
                evasive: true,
                silent: false
            }
        );
        assert_eq!(
            p.reap(t0 + s(6), reap),
            Reap::Ping {
                evasive: false,
                silent: true
            }
        );
        assert_eq!(
            p.reap(t0 + s(7), reap),
            Reap::Ping {
                evasive: false,
                silent: false
            }
        );
        assert_eq!(p.reap(t0 + s(30), reap), Reap::Expired);
        // any accepted message refreshes and re-arms the events
        p.receive(&msg(1, hello()), t0 + s(29)).unwrap();
        assert_eq!(p.reap(t0 + s(33), reap), Reap::Alive);
        assert_eq!(
            p.reap(t0 + s(34), reap),
            Reap::Ping {
                evasive: true,
                silent: false
            }
        );
    }
}
