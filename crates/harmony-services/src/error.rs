//! The one error type of the services.

use harmony_node::NodeError;
use harmony_zmtp::ZmtpError;

/// Why a service could not start or carry out a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The node under the service failed.
    #[error("node: {0}")]
    Node(#[from] NodeError),
    /// A ZeroMQ socket could not be bound or used.
    #[error("socket: {0}")]
    Zmtp(#[from] ZmtpError),
    /// A file or a listening socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}
