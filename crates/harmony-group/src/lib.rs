//! The ZRE node (Zyre's `zyre_node`) as a sans-IO state machine.
//!
//! [`ZreNode`] keeps the peer table (one [`harmony_peer::Peer`] per remote UUID), the groups,
//! and produces:
//! * [`Action`]s for the driver (connect a DEALER, send a stamped message, disconnect), taken
//!   with [`ZreNode::poll_action`] / [`ZreNode::drain_actions`];
//! * [`Event`]s for the application (ENTER, EXIT, JOIN, LEAVE, WHISPER, SHOUT, EVASIVE,
//!   SILENT, STOP, LEADER), taken with [`ZreNode::poll_event`] / [`ZreNode::drain_events`];
//! * a wake-up time, [`ZreNode::poll_timeout`], for [`ZreNode::handle_timeout`].
//!
//! Inputs: [`ZreNode::handle_beacon`] (or [`ZreNode::handle_discovered`] /
//! [`ZreNode::handle_departed`] for other discovery), [`ZreNode::handle_message`] (decoded
//! message + sender UUID from the ROUTER routing id), [`ZreNode::handle_malformed`],
//! [`ZreNode::handle_send_failed`], and the commands [`ZreNode::join`], [`ZreNode::leave`],
//! [`ZreNode::whisper`], [`ZreNode::shout`], [`ZreNode::contest_in_group`], [`ZreNode::stop`].
//! Sequence numbers are assigned here; the driver only encodes.
//!
//! Behaviour follows Zyre (see `docs/reference/zre-and-zyre.md`), with these deliberate
//! differences, all on error paths:
//! * protocol errors (sequence gap, status mismatch, malformed message) remove the peer
//!   (EXIT) instead of asserting; it is recreated by its next beacon or HELLO;
//! * EXIT is emitted only for peers that entered (so ENTER/EXIT strictly alternate per peer);
//! * a send failure (queue full) removes the peer at once instead of keeping it silent;
//! * a new UUID at the endpoint of a known peer removes that peer at once (Zyre disconnects it
//!   and lets it expire);
//! * sessions that got out of step heal without waiting for an expiry, and never in an
//!   endless exchange of HELLOs (a Zyre "HELLO storm"):
//!   - a HELLO from a ready peer replaces its session (EXIT, new connection, our HELLO, ENTER)
//!     as in Zyre, except when we replaced that session less than a reap interval ago for the
//!     same reason: then it is the peer's answer to our new HELLO and only its inbound
//!     session restarts (EXIT, ENTER; no new connection);
//!   - a HELLO from a peer that is not ready, arriving a reap interval or more after ours
//!     went out, means ours was lost (it reached an earlier incarnation): we send a new one;
//!   - non-HELLO messages from a peer that is not ready, a reap interval or more after our
//!     HELLO, mean it has a session we never saw the start of: we send a new HELLO;
//! * EVASIVE and SILENT are emitted once per quiet spell (Zyre repeats them every reap);
//!   the PING is repeated every reap interval as in Zyre;
//! * leader election: Zyre's echo wave (ELECT/LEADER, `zyre_election.c`), sent only to peers
//!   that speak it (`X-HARMONY: elect`, or a peer that sent ELECT/LEADER itself), with rules
//!   that keep one leader when waves and membership changes cross: joins, leaves and exits
//!   within 300 ms start one election; a contester leaves the election to a lower contester
//!   it knows (and keeps the lower wave it already relays); a contester never follows a
//!   higher challenger's wave but answers it with its own; echoes are counted per neighbour,
//!   including relays of the leader's new wave that overtook its ELECT; a wave that stalls
//!   for 3 s starts again.
//!
//! Harmony extension, properties that change: [`ZreNode::set_header`] changes one of our
//! headers while running and [`ZreNode::request_properties`] asks a peer for its current set.
//! The rule that keeps Zyre and pyre undisturbed: our HELLO carries `X-HARMONY: elect,props`
//! (one header, the extensions we speak); the two messages of the extension, PROPS (id 32,
//! the sender's whole header set; request 0 for a change, else the request answered) and
//! PROPS-REQUEST (id 33), are new ZRE ids sent only to peers whose HELLO advertised `props`.
//! A peer without it never sees either, nor any extra WHISPER; it keeps the headers of the
//! HELLO it got (a later HELLO, on a new session, carries the current set). A PROPS replaces
//! the peer's headers (queries return the new values) and gives [`Event::Headers`].

mod config;
mod event;
mod node;

pub use config::{NodeConfig, DEFAULT_LINK_GRACE};
pub use event::{Action, Event};
pub use harmony_peer::{
    parse_uuid_string, routing_id, uuid_from_routing_id, uuid_string, Peer, PeerConfig,
};
pub use node::{ZreNode, EXTENSIONS_HEADER};

use uuid::Uuid;

/// Errors of node commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// No such peer (never seen, or already gone).
    #[error("unknown peer {0}")]
    UnknownPeer(Uuid),
    /// The peer is not a Harmony peer that speaks property requests (`X-HARMONY: props`).
    #[error("peer {0} does not speak property requests")]
    NoProps(Uuid),
    /// `X-HARMONY` is the node's own header, not the application's.
    #[error("header {0} is reserved")]
    ReservedHeader(String),
    /// The node was stopped.
    #[error("node stopped")]
    Stopped,
    /// An inbox message whose routing id is not `0x01` + 16 bytes (dropped, as Zyre does).
    #[error("bad routing id ({0} bytes)")]
    BadRoutingId(usize),
    /// An inbox message that does not decode (the sending peer is removed).
    #[error("malformed message from {peer}: {error}")]
    Malformed {
        /// The sender.
        peer: Uuid,
        /// What the decoder said.
        error: harmony_wire::WireError,
    },
}

/// Largest first frame [`ZreNode::handle_frames`] decodes (a HELLO with many groups and
/// headers fits easily; a peer sending more is dropped as malformed).
pub const MAX_FIRST_FRAME: usize = 1 << 20;
