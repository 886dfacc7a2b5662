//! Errors of the security handshakes.

use harmony_wire::WireError;

/// Why a handshake or a protected frame failed. Every variant closes that one connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The peer's bytes could not be decoded.
    #[error("malformed handshake: {0}")]
    Wire(#[from] WireError),
    /// The peer sent a command that is not valid at this point of the handshake.
    #[error("unexpected {got} during the {mechanism} handshake")]
    Unexpected {
        /// The mechanism in use.
        mechanism: &'static str,
        /// What arrived.
        got: String,
    },
    /// The peer sent ERROR with this reason.
    #[error("peer refused the handshake: {0}")]
    PeerError(String),
    /// Our authenticator refused the peer (status "400" or "500"); an ERROR command with that
    /// status is queued in the output and must be sent before closing.
    #[error("authentication refused with status {0}")]
    Refused(String),
    /// Our authenticator answered "300" (temporary failure): close without sending ERROR.
    #[error("authentication temporarily unavailable (status 300)")]
    RefusedTemporarily,
    /// A box failed to open, a nonce went backwards, or a size was wrong.
    #[error("cryptographic check failed: {0}")]
    Crypto(&'static str),
    /// The peer's greeting asks for another mechanism or the same role.
    #[error("incompatible peer: {0}")]
    Incompatible(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, SecurityError>;
