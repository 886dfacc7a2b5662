//! ZMTP security mechanisms as sans-IO state machines: frames in, frames out, no sockets.
//!
//! A connection driver (harmony-zmtp) exchanges greetings, then builds a [`Mechanism`] from a
//! [`MechanismConfig`] and feeds it every frame until it reports [`Handshake::Done`]. When the
//! server side must decide whether to let a peer in, the mechanism returns
//! [`Handshake::Authenticate`]; the driver asks its authenticator (possibly asynchronously) and
//! hands the answer back with [`Mechanism::authenticated`]. After the handshake,
//! [`Mechanism::into_cipher`] yields the per-frame transform for traffic (none for NULL/PLAIN).

pub mod error;
pub mod mechanism;
pub mod null;

pub use error::SecurityError;
pub use mechanism::{
    AuthReply, AuthRequest, Cipher, Credentials, Handshake, Mechanism, MechanismConfig,
};
