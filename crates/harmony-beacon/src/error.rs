//! The crate's error type.

use std::io;

/// What can go wrong when selecting an interface or running a beacon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BeaconError {
    /// No interface has this name or address.
    #[error("no network interface named or with address `{0}`")]
    InterfaceNotFound(String),
    /// The interface exists but cannot carry beacons (down, no suitable address, not broadcast-capable).
    #[error("network interface `{name}` cannot carry beacons: {reason}")]
    InterfaceUnusable {
        /// The interface's name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Automatic selection found no suitable interface.
    #[error("no up, non-loopback, {0} interface found (use InterfaceSelect::Loopback on a single machine)")]
    NoInterface(&'static str),
    /// The UDP port is held by a socket that does not share it (no SO_REUSEADDR/SO_REUSEPORT).
    #[error("UDP port {port} is already in use by a socket that does not share it")]
    PortInUse {
        /// The beacon port.
        port: u16,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The beacon task is no longer running.
    #[error("the beacon task has stopped")]
    Stopped,
}

impl BeaconError {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { context, source }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = BeaconError> = std::result::Result<T, E>;
