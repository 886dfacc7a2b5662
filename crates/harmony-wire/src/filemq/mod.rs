//! FILEMQ v2 (draft rfc/35) messages, encoded as the zeromq/filemq reference implementation does.
//!
//! Every message is one ZMTP frame: `AA A3 id fields...`. Unlike rfc/35, `path` and `filename`
//! are `longstr` (4-byte length), which is what zeromq/filemq sends.

pub mod message;

pub use message::{
    Cheezburger, FileOperation, FilemqMessage, FILEMQ_PROTOCOL, FILEMQ_SIGNATURE, FILEMQ_VERSION,
};
