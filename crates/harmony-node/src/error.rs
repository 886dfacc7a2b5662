//! Errors of the combined node.

use harmony_beacon::BeaconError;
use harmony_zmtp::ZmtpError;

/// Why a node could not start or a command could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Discovery could not start (no such interface, port unusable, ...).
    #[error("discovery: {0}")]
    Beacon(#[from] BeaconError),
    /// The inbox could not be bound.
    #[error("inbox: {0}")]
    Zmtp(#[from] ZmtpError),
    /// A setting is out of range (e.g. a name over 255 bytes).
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// No known peer has this UUID.
    #[error("unknown peer {0}")]
    UnknownPeer(uuid::Uuid),
    /// The peer is not a Harmony peer that answers property requests (Zyre, pyre).
    #[error("peer {0} does not speak property requests")]
    NoProps(uuid::Uuid),
    /// The peer did not answer in time (it may have left).
    #[error("no answer from peer {0} in time")]
    Timeout(uuid::Uuid),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}
