//! ZMTP security mechanisms as sans-IO state machines: frames in, frames out, no sockets.
//!
//! A connection driver (harmony-zmtp) exchanges greetings, then builds a [`Mechanism`] from a
//! [`MechanismConfig`] and feeds it every frame until it reports [`Handshake::Done`]. When the
//! server side must decide whether to let a peer in, the mechanism returns
//! [`Handshake::Authenticate`]; the driver asks its [`Authenticator`] (possibly asynchronously)
//! and hands the answer back with [`Mechanism::authenticated`]. After the handshake,
//! [`Mechanism::into_cipher`] yields the per-frame transform for traffic (CURVE only; none for
//! NULL/PLAIN).
//!
//! Mechanisms: [`null`] (rfc/23), [`plain`] (rfc/24), [`curve`] (rfc/25, rfc/26 CurveZMQ).
//! Keys: [`KeyPair`], [`z85`] text (rfc/32), [`Certificate`] files (czmq zcert / pyzmq).

pub mod auth;
pub mod cert;
pub mod curve;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod mechanism;
pub mod null;
pub mod plain;
#[cfg(test)]
mod testing;
pub mod z85;

pub use auth::{AuthFuture, Authenticator, StandardAuthenticator};
pub use cert::{CertError, Certificate};
pub use curve::{public_key_from_z85, CurveCipher, CurveClient, CurveServer, KeyPair};
pub use error::SecurityError;
pub use mechanism::{
    AuthReply, AuthRequest, Cipher, Credentials, Handshake, Mechanism, MechanismConfig, USER_ID,
};
pub use plain::{PlainClient, PlainServer};
pub use z85::Z85Error;
