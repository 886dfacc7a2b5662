//! Errors: what a hostile or broken peer did (sans-IO cores), and what went wrong around it
//! (drivers: sockets, disk).

use std::io;
use std::path::PathBuf;

/// Why a file name from the network was refused; nothing is written for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The name is empty (or only the subscription prefix).
    #[error("empty file name")]
    Empty,
    /// The name contains a NUL byte.
    #[error("file name contains NUL")]
    Nul,
    /// The name, or one of its components, is longer than allowed.
    #[error("file name too long ({len} bytes, at most {max})")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name is absolute once the subscription prefix is removed.
    #[error("absolute file name")]
    Absolute,
    /// A component is `.`, `..` or empty.
    #[error("file name component {0:?} not allowed")]
    BadComponent(String),
    /// The name ends with a suffix the client keeps for its own files (partial files, its
    /// records).
    #[error(
        "file name uses a reserved suffix ({} or {})",
        crate::path::PART_SUFFIX,
        crate::path::CACHE_SUFFIX
    )]
    Reserved,
    /// The name is outside every subscribed path.
    #[error("file {0:?} is not under a subscribed path")]
    NotSubscribed(String),
    /// An existing component of the destination is a symbolic link or not a directory.
    #[error("{0} is a symbolic link or not a directory: refusing to write through it")]
    Escapes(PathBuf),
}

/// A peer broke the protocol; its connection is closed, nothing of the offending message is
/// written, other transfers go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame does not decode.
    #[error("malformed message: {0}")]
    Malformed(#[from] harmony_wire::WireError),
    /// A valid message at the wrong time.
    #[error("unexpected {0}")]
    Unexpected(&'static str),
    /// A file name that must not be written.
    #[error("bad file name {name:?}: {error}")]
    Path {
        /// The name as received (lossy).
        name: String,
        /// Why.
        error: PathError,
    },
    /// The server sent more content than the client gave credit for.
    #[error("server exceeded its credit ({chunk} bytes, {credit} left)")]
    CreditExceeded {
        /// The chunk's size.
        chunk: u64,
        /// Credit that was left.
        credit: u64,
    },
    /// A client's total credit went beyond the server's limit.
    #[error("credit {0} beyond the limit")]
    CreditTooLarge(u128),
    /// A chunk does not start where the previous one ended.
    #[error("{name}: chunk at offset {offset}, expected {expected}")]
    OffsetJump {
        /// The file.
        name: String,
        /// Offset received.
        offset: u64,
        /// Offset expected.
        expected: u64,
    },
    /// A chunk ends past the size the server declared.
    #[error("{name}: chunk ends at {end}, beyond the declared size {size}")]
    BeyondSize {
        /// The file.
        name: String,
        /// Where the chunk ends.
        end: u64,
        /// The declared size.
        size: u64,
    },
    /// A chunk of a file under way declares another size than the file's first chunk did.
    #[error("{name}: size {declared:?} declared, then {now}")]
    SizeChanged {
        /// The file.
        name: String,
        /// The size its first chunk declared, if any.
        declared: Option<u64>,
        /// The size this chunk declares.
        now: u64,
    },
    /// A chunk's crc32 does not match its content (it is fetched again, never written).
    #[error("{name}: corrupted chunk at offset {offset}")]
    CorruptChunk {
        /// The file.
        name: String,
        /// The chunk's offset.
        offset: u64,
    },
    /// The whole-file digest does not match (the file is not renamed into place).
    #[error("{name}: digest mismatch")]
    DigestMismatch {
        /// The file.
        name: String,
    },
    /// A header value the extension defines is not parseable.
    #[error("bad header {0}")]
    BadHeader(&'static str),
    /// The server refused us (SRSLY) or our messages (RTFM).
    #[error("refused by the server: {0}")]
    Refused(String),
    /// The peer fell silent.
    #[error("peer silent for too long")]
    Timeout,
}

/// Errors of the tokio drivers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// The peer broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A socket error.
    #[error("socket: {0}")]
    Zmtp(#[from] harmony_zmtp::ZmtpError),
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// What was being read or written.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A local file name that cannot be published or written.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The driver has stopped.
    #[error("stopped")]
    Stopped,
}

impl FilesError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
