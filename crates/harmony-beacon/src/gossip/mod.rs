//! Gossip discovery for networks without broadcast: czmq's `zgossip` protocol (ZGP) over ZMTP
//! ROUTER/DEALER, as Zyre uses it (tuple key = node UUID string, value = inbox endpoint).
//!
//! - [`GossipCore`]: the sans-IO node: tuples, forwarding, pings, expiry.
//! - [`Gossip`]: the same on real sockets, in a tokio task.
//!
//! Better than czmq: a tuple published with a ttl (Harmony's default 30 s) is re-published
//! every third of it and forgotten where it is not refreshed, so a hub stops handing out the
//! endpoints of dead nodes. czmq's tuples (ttl 0) are kept as czmq keeps them.

mod core;
mod service;

pub use self::core::{GossipConfig, GossipCore, GossipEvent, Link, Transmit};
pub use self::service::{Gossip, GossipHandle};
