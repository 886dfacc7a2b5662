//! The pure-Rust backend: RustCrypto's `crypto_box::SalsaBox` (X25519, HSalsa20,
//! XSalsa20-Poly1305). Portable Salsa20, one 64-byte block at a time.

use std::sync::Arc;

use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::AeadInPlace;
use crypto_box::{PublicKey, SalsaBox};

use super::{BadTag, Nonce, TAG_LEN};
use crate::curve::keys::{KeyPair, KEY_LEN};

/// The precomputed box between one peer's public key and our secret key (shared by the two
/// directions' [`MessageKey`]s).
#[derive(Clone)]
pub(crate) struct BoxKey(Arc<SalsaBox>);

impl BoxKey {
    /// `crypto_box_beforenm`: X25519 then HSalsa20, done once. RustCrypto does not refuse
    /// small-order public keys (libsodium does); the handshake's boxes then simply do not open
    /// for the peer, which cannot know the resulting key either.
    pub(crate) fn new(their: &[u8; KEY_LEN], our: &KeyPair) -> Option<Self> {
        Some(Self(Arc::new(SalsaBox::new(
            &PublicKey::from_bytes(*their),
            &our.box_secret(),
        ))))
    }

    /// Seals `buf` in place; returns the tag that goes before it on the wire.
    pub(crate) fn seal(&self, nonce: &Nonce, buf: &mut [u8]) -> [u8; TAG_LEN] {
        // XSalsa20-Poly1305 fails only for messages over 2^38 bytes (its keystream limit),
        // which no frame limit lets through.
        match self
            .0
            .encrypt_in_place_detached(GenericArray::from_slice(nonce), b"", buf)
        {
            Ok(tag) => tag.into(),
            Err(_) => unreachable!("frames are far below the XSalsa20 keystream limit"),
        }
    }

    /// Opens `buf` in place if `tag` authenticates it; on failure `buf` is left untouched.
    pub(crate) fn open(
        &self,
        nonce: &Nonce,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), BadTag> {
        self.0
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                b"",
                buf,
                GenericArray::from_slice(tag),
            )
            .map_err(|_| BadTag)
    }
}

/// The boxes of one direction of CURVE traffic: nonce = a fixed 16-byte prefix + an 8-byte
/// big-endian counter. Here simply the box with the full nonce built for each message.
pub(crate) struct MessageKey {
    key: BoxKey,
    prefix: [u8; 16],
}

impl MessageKey {
    /// The MESSAGE boxes of `key` whose nonces start with `prefix`.
    pub(crate) fn new(key: &BoxKey, prefix: &[u8; 16]) -> Self {
        Self {
            key: key.clone(),
            prefix: *prefix,
        }
    }

    fn nonce(&self, counter: u64) -> Nonce {
        let mut nonce = [0u8; 24];
        nonce[..16].copy_from_slice(&self.prefix);
        nonce[16..].copy_from_slice(&counter.to_be_bytes());
        nonce
    }

    /// Seals `buf` in place with nonce `prefix ‖ counter`; returns the tag.
    pub(crate) fn seal(&self, counter: u64, buf: &mut [u8]) -> [u8; TAG_LEN] {
        self.key.seal(&self.nonce(counter), buf)
    }

    /// Opens `buf` in place if `tag` authenticates it; on failure `buf` is left untouched.
    pub(crate) fn open(
        &self,
        counter: u64,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), BadTag> {
        self.key.open(&self.nonce(counter), buf, tag)
    }
}
