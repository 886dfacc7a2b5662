//! ZGP, czmq's gossip protocol (`zgossip_msg`), encoded as czmq sends it.
//!
//! Every message is one ZMTP frame: `AA A0 id version(=1) fields...`. PUBLISH carries a tuple
//! (`key` string, `value` longstr, `ttl` number-4 in milliseconds; czmq always sends 0 and
//! ignores it, Harmony uses it to expire tuples).

pub mod message;

pub use message::{ZgpMessage, ZGP_SIGNATURE, ZGP_VERSION};
