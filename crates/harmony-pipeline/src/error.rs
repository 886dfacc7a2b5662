//! The pipeline's error type.

use uuid::Uuid;

/// Why a pipeline call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The ZRE node failed.
    #[error(transparent)]
    Node(#[from] harmony_node::NodeError),
    /// A ZMTP socket failed.
    #[error(transparent)]
    Zmtp(#[from] harmony_zmtp::ZmtpError),
    /// A batch of more tasks than the protocol allows.
    #[error("a batch of {0} tasks is over the limit of 2^24")]
    BatchTooLarge(usize),
    /// A batch id already in use.
    #[error("batch {0} was submitted already")]
    DuplicateBatch(Uuid),
    /// The role's driver has stopped.
    #[error("the pipeline {0} has stopped")]
    Stopped(&'static str),
}
