//! The one error type of the wire codecs.

/// Why some bytes could not be decoded (or a value could not be encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended before the structure did.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A declared length exceeds the configured limit or the bytes available.
    #[error("{what} of {len} bytes exceeds the limit of {limit}")]
    TooLong {
        /// What was being decoded.
        what: &'static str,
        /// The declared length.
        len: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A protocol signature did not match.
    #[error("bad signature for {0}")]
    BadSignature(&'static str),
    /// A protocol version this codec does not speak.
    #[error("unsupported {what} version {version}")]
    BadVersion {
        /// What was being decoded.
        what: &'static str,
        /// The version found on the wire.
        version: u16,
    },
    /// An unknown message or command id.
    #[error("unknown {what} id {id}")]
    UnknownId {
        /// What was being decoded.
        what: &'static str,
        /// The id found.
        id: u8,
    },
    /// Reserved or contradictory flag bits.
    #[error("invalid frame flags {0:#04x}")]
    BadFlags(u8),
    /// A text field that is not valid UTF-8 or not in the allowed alphabet.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// Bytes left over after a complete structure.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A value too large for its field on encode.
    #[error("{0} too long to encode")]
    Unencodable(&'static str),
}

/// Result alias for the codecs.
pub type Result<T> = std::result::Result<T, WireError>;
