//! Harmony: the facade crate. Re-exports the protocol crates and offers one combined node.

pub use harmony_security as security;
pub use harmony_wire as wire;
