//! The running ZRE node: UDP discovery ([`harmony_beacon`]), a ZMTP inbox and one outbound
//! connection per peer ([`harmony_zmtp`]), driven by the sans-IO state machine of
//! [`harmony_group`]. The pipeline, file transfer and the services build on this crate; the
//! `harmony` facade re-exports it.
//!
//! Start with [`Node::builder`].

pub mod error;
mod link;
pub mod node;

pub use error::NodeError;
pub use harmony_beacon::SelectedInterface;
pub use harmony_group::Event;
pub use link::LinkEvent;
pub use node::{
    next_event_any, Content, InterfaceSelectArg, Node, NodeBuilder, PeerInfo, PROPS_TIMEOUT,
    PUBLIC_KEY_HEADER,
};
pub use uuid::Uuid;
