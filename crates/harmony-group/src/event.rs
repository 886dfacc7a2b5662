//! What the node state machine hands out: actions for the driver, events for the application.

use std::sync::Arc;

use bytes::Bytes;
use harmony_wire::zre::ZreMessage;
use uuid::Uuid;

/// Something the driver must do on the network, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a DEALER (routing id `0x01 ‖ our uuid`, see `harmony_peer::routing_id`) to the
    /// peer's inbox at `endpoint`. A `Send` for this peer follows at once (its HELLO); the
    /// driver queues sends while the connection comes up. If a connection for `peer` already
    /// exists (only after a `Disconnect`), replace it.
    Connect {
        /// The remote node.
        peer: Uuid,
        /// Its inbox endpoint, e.g. `tcp://10.0.0.1:49152`.
        endpoint: String,
    },
    /// Encode `message` (sequence already assigned) and queue it on the peer's DEALER, without
    /// blocking. If the queue is full, call `ZreNode::handle_send_failed`.
    Send {
        /// The remote node.
        peer: Uuid,
        /// The message, with its final sequence number.
        message: ZreMessage,
    },
    /// Close the DEALER to the peer and drop what is still queued on it.
    Disconnect {
        /// The remote node.
        peer: Uuid,
    },
}

/// What happened, for the application (Zyre's `zyre_recv` events). UUIDs print in Zyre's
/// string form with `harmony_peer::uuid_string`. Names and groups are shared (`Arc<str>`): an
/// event costs no copy of the peer's name, and a SHOUT none of its group's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer's HELLO arrived: it is now known and ready.
    Enter {
        /// The peer.
        peer: Uuid,
        /// Its name.
        name: Arc<str>,
        /// Its headers, in wire order.
        headers: Vec<(String, String)>,
        /// The inbox endpoint it advertised in its HELLO.
        endpoint: String,
    },
    /// A peer is gone (expired, left, broke the protocol, or could not keep up).
    Exit {
        /// The peer.
        peer: Uuid,
        /// Its name.
        name: Arc<str>,
    },
    /// A peer joined a group.
    Join {
        /// The peer.
        peer: Uuid,
        /// Its name.
        name: Arc<str>,
        /// The group (shared, like the name).
        group: Arc<str>,
    },
    /// A peer left a group.
    Leave {
        /// The peer.
        peer: Uuid,
        /// Its name.
        name: Arc<str>,
        /// The group (shared, like the name).
        group: Arc<str>,
    },
    /// A message for us alone.
    Whisper {
        /// The sender.
        peer: Uuid,
        /// Its name.
        name: Arc<str>,
        /// The content frames.
        content: Vec<Bytes>,
    },
    /// A message to a group.
    Shout {
        /// The sender.
        peer: Uuid,
        /// Its name.
        name: Arc<str>,
        /// The group (shared, like the name).
        group: Arc<str>,
        /// The content frames.
        content: Vec<Bytes>,
    },
    /// A peer has been quiet past the evasive timeout; it was PINGed.
    Evasive {
        /// The peer.
        peer: Uuid,
        /// Its name.
        name: Arc<str>,
    },
    /// A peer did not answer the PING within one more reap interval.
    Silent {
        /// The peer.
        peer: Uuid,
        /// Its name.
        name: Arc<str>,
    },
    /// This node stopped (the last event).
    Stop {
        /// Our own UUID.
        peer: Uuid,
        /// Our own name.
        name: Arc<str>,
    },
    /// A leader was elected in a group we contest in (may be us).
    Leader {
        /// The leader.
        peer: Uuid,
        /// Its name.
        name: Arc<str>,
        /// The group (shared, like the name).
        group: Arc<str>,
    },
    /// A Harmony peer's headers, all of them: it changed them (`request` `None`), or they
    /// answer our `request_properties` (`request` the number it returned). Never from Zyre
    /// or pyre peers, whose headers stay those of their HELLO.
    Headers {
        /// The peer.
        peer: Uuid,
        /// Its name.
        name: Arc<str>,
        /// Its headers now, in its order (without `X-HARMONY`).
        headers: Vec<(String, String)>,
        /// The request answered, if any.
        request: Option<u32>,
    },
}

impl Event {
    /// The event type as Zyre spells it (`"ENTER"`, `"EXIT"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Enter { .. } => "ENTER",
            Self::Exit { .. } => "EXIT",
            Self::Join { .. } => "JOIN",
            Self::Leave { .. } => "LEAVE",
            Self::Whisper { .. } => "WHISPER",
            Self::Shout { .. } => "SHOUT",
            Self::Evasive { .. } => "EVASIVE",
            Self::Silent { .. } => "SILENT",
            Self::Stop { .. } => "STOP",
            Self::Leader { .. } => "LEADER",
            Self::Headers { .. } => "HEADERS",
        }
    }

    /// The peer the event is about (our own UUID for STOP).
    pub fn peer(&self) -> Uuid {
        match self {
            Self::Enter { peer, .. }
            | Self::Exit { peer, .. }
            | Self::Join { peer, .. }
            | Self::Leave { peer, .. }
            | Self::Whisper { peer, .. }
            | Self::Shout { peer, .. }
            | Self::Evasive { peer, .. }
            | Self::Silent { peer, .. }
            | Self::Stop { peer, .. }
            | Self::Leader { peer, .. }
            | Self::Headers { peer, .. } => *peer,
        }
    }

    /// The peer's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Enter { name, .. }
            | Self::Exit { name, .. }
            | Self::Join { name, .. }
            | Self::Leave { name, .. }
            | Self::Whisper { name, .. }
            | Self::Shout { name, .. }
            | Self::Evasive { name, .. }
            | Self::Silent { name, .. }
            | Self::Stop { name, .. }
            | Self::Leader { name, .. }
            | Self::Headers { name, .. } => name,
        }
    }

    /// The group, for JOIN, LEAVE, SHOUT and LEADER.
    pub fn group(&self) -> Option<&str> {
        match self {
            Self::Join { group, .. }
            | Self::Leave { group, .. }
            | Self::Shout { group, .. }
            | Self::Leader { group, .. } => Some(group),
            _ => None,
        }
    }
}
