//! Errors returned by sockets, and the reasons a single connection is closed.

use harmony_security::SecurityError;
use harmony_wire::WireError;

use crate::message::Message;

/// Why a socket operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZmtpError {
    /// The endpoint string is not `tcp://host:port` (or a bind pattern such as `tcp://*:*`).
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The string given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Binding, resolving or another system call failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The socket was closed.
    #[error("the socket is closed")]
    Closed,
    /// The message cannot be sent on this socket (no frames; ROUTER: no identity frame).
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// ROUTER with `router_mandatory`: no connected peer has this identity.
    #[error("no peer with this routing identity")]
    Unroutable,
    /// `unbind` or `disconnect` of an endpoint the socket is not bound or connected to
    /// (libzmq's `ENOENT`).
    #[error("not bound or connected to {0:?}")]
    UnknownEndpoint(String),
}

/// Why [`try_send`](crate::DealerSocket::try_send) did not queue a message; the message is handed back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError {
    /// Every eligible peer queue is at its high-water mark (or there is no peer yet).
    #[error("the send queue is full")]
    WouldBlock(Message),
    /// ROUTER with `router_mandatory`: no connected peer has this identity.
    #[error("no peer with this routing identity")]
    Unroutable(Message),
    /// The socket was closed.
    #[error("the socket is closed")]
    Closed(Message),
    /// The message is not valid for this socket (e.g. no frames, or no identity frame on ROUTER).
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

impl TrySendError {
    /// The message that was not sent, if it is still there.
    pub fn into_message(self) -> Option<Message> {
        match self {
            Self::WouldBlock(m) | Self::Unroutable(m) | Self::Closed(m) => Some(m),
            Self::Invalid(_) => None,
        }
    }
}

/// Why one connection was closed. Reported through `tracing`; the socket carries on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ConnectionError {
    /// Reading or writing the TCP stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the stream.
    #[error("peer closed the connection")]
    Eof,
    /// The peer sent bytes that are not ZMTP.
    #[error("malformed input: {0}")]
    Wire(#[from] WireError),
    /// The security handshake failed.
    #[error("handshake: {0}")]
    Security(#[from] SecurityError),
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The peer's socket type cannot talk to ours.
    #[error("incompatible peer socket type {0:?}")]
    Incompatible(String),
    /// A message larger than `max_msg_size`.
    #[error("message of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Size so far.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// No traffic within the heartbeat timeout or the peer's TTL.
    #[error("peer went silent (heartbeat timeout)")]
    HeartbeatTimeout,
    /// The peer sent an ERROR command.
    #[error("peer sent ERROR {0:?}")]
    PeerError(String),
    /// A command that is not allowed after the handshake.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// Another connection took over this identity, or a duplicate identity was refused.
    #[error("routing identity in use")]
    DuplicateIdentity,
    /// The socket is closing.
    #[error("socket closed")]
    SocketClosed,
}
