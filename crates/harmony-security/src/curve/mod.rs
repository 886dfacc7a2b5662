//! CURVE (rfc/25 + rfc/26 CurveZMQ), byte-compatible with libzmq.
//!
//! ```text
//! client                                   server
//! HELLO    200 B  C', Box[64 zeros](C'->S)       ->
//!                                          <-  WELCOME 168 B  Box[S' + cookie](S->C')
//! INITIATE >=257  cookie, Box[C + vouch + metadata](C'->S')  ->   [authenticate C]
//!                                          <-  READY >=30  Box[metadata](S'->C')  (or ERROR in clear)
//! MESSAGE  >=33   Box[flags + payload], both ways, short nonces strictly increasing
//! ```
//!
//! A box on the wire is NaCl `crypto_box` output without its leading zero bytes, i.e.
//! MAC(16) || ciphertext, sealed and opened by the `nacl` module: libsodium by default, or
//! RustCrypto's `crypto_box` without the `libsodium` feature (see [`BACKEND`]).

mod cipher;
mod client;
pub mod keys;
mod nacl;
mod server;

use crypto_box::aead::KeyInit;
use crypto_secretbox::XSalsa20Poly1305;
use zeroize::Zeroizing;

use crate::error::{Result, SecurityError};

pub use cipher::CurveCipher;
pub use client::CurveClient;
pub use keys::{public_key_from_z85, KeyPair, KEY_LEN};
pub use nacl::BACKEND;
use nacl::{BoxKey, Nonce};
pub use server::CurveServer;

/// Size of a client HELLO command body.
pub const HELLO_LEN: usize = 200;
/// Size of a server WELCOME command body.
pub const WELCOME_LEN: usize = 168;
/// Smallest client INITIATE command body (no metadata).
pub const INITIATE_MIN_LEN: usize = 257;
/// Smallest server READY command body (no metadata).
pub const READY_MIN_LEN: usize = 30;
/// Smallest MESSAGE command body (flags byte, empty payload).
pub const MESSAGE_MIN_LEN: usize = 33;

/// Bytes a box adds to its plaintext (the Poly1305 tag).
const MAC_LEN: usize = 16;
/// Size of the cookie the server hands out in WELCOME: nonce (16) + secretbox (80).
const COOKIE_LEN: usize = 96;
/// Size of the vouch inside INITIATE: nonce (16) + box (80).
const VOUCH_LEN: usize = 96;

/// Nonce prefixes (rfc/26, with the C/S MESSAGE errata as libzmq sends them).
mod prefix {
    pub(super) const HELLO: &[u8; 16] = b"CurveZMQHELLO---";
    pub(super) const WELCOME: &[u8; 8] = b"WELCOME-";
    pub(super) const COOKIE: &[u8; 8] = b"COOKIE--";
    pub(super) const INITIATE: &[u8; 16] = b"CurveZMQINITIATE";
    pub(super) const VOUCH: &[u8; 8] = b"VOUCH---";
    pub(super) const READY: &[u8; 16] = b"CurveZMQREADY---";
    pub(super) const MESSAGE_C: &[u8; 16] = b"CurveZMQMESSAGEC";
    pub(super) const MESSAGE_S: &[u8; 16] = b"CurveZMQMESSAGES";
}

/// A full nonce: 16-byte prefix + 8-byte big-endian counter.
fn short_nonce(prefix: &[u8; 16], counter: u64) -> Nonce {
    let mut nonce = [0u8; 24];
    nonce[..16].copy_from_slice(prefix);
    nonce[16..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

/// A full nonce: 8-byte prefix + 16 random bytes.
fn long_nonce(prefix: &[u8; 8], tail: &[u8]) -> Nonce {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(prefix);
    nonce[8..].copy_from_slice(tail);
    nonce
}

/// The precomputed box between `their` public key and `our` secret key; fails for a public key
/// that no honest peer sends (libsodium refuses small-order points, as libzmq does).
fn salsa_box(their: &[u8; KEY_LEN], our: &KeyPair) -> Result<BoxKey> {
    BoxKey::new(their, our).ok_or(SecurityError::Crypto("CURVE public key refused"))
}

/// `Box[plaintext]` as it goes on the wire (MAC || ciphertext).
fn seal(key: &BoxKey, nonce: &Nonce, plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut boxed = vec![0u8; MAC_LEN + plaintext.len()];
    boxed[MAC_LEN..].copy_from_slice(plaintext);
    let tag = key.seal(nonce, &mut boxed[MAC_LEN..]);
    boxed[..MAC_LEN].copy_from_slice(&tag);
    Ok(boxed)
}

/// Opens a wire box, failing on any forgery or truncation.
fn open(
    key: &BoxKey,
    nonce: &Nonce,
    boxed: &[u8],
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>> {
    let Some((tag, text)) = boxed.split_first_chunk::<MAC_LEN>() else {
        return Err(SecurityError::Crypto(what));
    };
    let mut plaintext = Zeroizing::new(text.to_vec());
    key.open(nonce, &mut plaintext, tag)
        .map_err(|_| SecurityError::Crypto(what))?;
    Ok(plaintext)
}

/// The secretbox used for cookies, keyed by the server's per-connection cookie key.
fn cookie_box(key: &[u8; 32]) -> XSalsa20Poly1305 {
    XSalsa20Poly1305::new(key.into())
}

/// Big-endian u64 from exactly 8 bytes.
fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(buf)
}

/// Compares secrets without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
