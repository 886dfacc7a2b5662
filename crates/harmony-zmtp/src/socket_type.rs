//! Socket types and which peer types each may talk to (rfc/23 table, as libzmq enforces it).

use std::fmt;

/// The socket types Harmony implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SocketType {
    /// Routes by peer identity; receives `[identity, frames...]`.
    Router,
    /// Round-robin out, fair-queue in.
    Dealer,
    /// Round-robin out, no input.
    Push,
    /// Fair-queue in, no output.
    Pull,
    /// Fan-out to matching subscribers, no input.
    Pub,
    /// Receives messages matching its subscriptions.
    Sub,
}

impl SocketType {
    /// The name carried in the `Socket-Type` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Router => "ROUTER",
            Self::Dealer => "DEALER",
            Self::Push => "PUSH",
            Self::Pull => "PULL",
            Self::Pub => "PUB",
            Self::Sub => "SUB",
        }
    }

    /// Whether a peer announcing `peer` as its `Socket-Type` may connect to this type.
    pub fn accepts(self, peer: &[u8]) -> bool {
        let ok: &[&[u8]] = match self {
            Self::Router => &[b"REQ", b"DEALER", b"ROUTER"],
            Self::Dealer => &[b"REP", b"DEALER", b"ROUTER"],
            Self::Push => &[b"PULL"],
            Self::Pull => &[b"PUSH"],
            Self::Pub => &[b"SUB", b"XSUB"],
            Self::Sub => &[b"PUB", b"XPUB"],
        };
        ok.contains(&peer)
    }

    /// Whether READY carries an `Identity` property (libzmq: REQ, DEALER, ROUTER).
    pub(crate) fn sends_identity(self) -> bool {
        matches!(self, Self::Router | Self::Dealer)
    }
}

impl fmt::Display for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_table() {
        assert!(SocketType::Router.accepts(b"DEALER"));
        assert!(SocketType::Router.accepts(b"REQ"));
        assert!(!SocketType::Router.accepts(b"PUSH"));
        assert!(SocketType::Dealer.accepts(b"REP"));
        assert!(SocketType::Sub.accepts(b"XPUB"));
        assert!(!SocketType::Pub.accepts(b"PUB"));
        assert!(!SocketType::Pull.accepts(b"push"));
    }
}
