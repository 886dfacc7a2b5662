//! Harmony: programs on a LAN find each other, know who is alive, and talk one-to-one
//! (whisper) and one-to-many (shout to a group), wire-compatible with Zyre and pyre.
//!
//! Start with [`Node::builder`]. The protocol crates are re-exported: [`wire`] (codecs),
//! [`security`] (NULL/PLAIN/CURVE), [`zmtp`] (ZeroMQ sockets), [`beacon`] (discovery),
//! [`peer`] and [`group`] (the ZRE state machines), [`node`] (the running node), [`pipeline`]
//! (batches of tasks that survive crashing workers and collectors), [`files`] (FILEMQ file
//! transfer: serve directories, mirror them, find servers by discovery); the services: [`log`]
//! (decentralised logging), [`timer`] (ticks), [`bridge`] (HTTP/WebSocket).

pub use harmony_beacon as beacon;
pub use harmony_files as files;
pub use harmony_group as group;
pub use harmony_group::Event;
pub use harmony_node as node;
pub use harmony_node::NodeError;
pub use harmony_node::{next_event_any, Content, InterfaceSelectArg, Node, NodeBuilder, PeerInfo};
pub use harmony_peer as peer;
pub use harmony_pipeline as pipeline;
pub use harmony_security as security;
pub use harmony_services as services;
pub use harmony_services::{bridge, log, timer};
pub use harmony_wire as wire;
pub use harmony_zmtp as zmtp;
pub use uuid::Uuid;
