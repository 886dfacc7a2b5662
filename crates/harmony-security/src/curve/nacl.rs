//! NaCl `crypto_box` with a key precomputed once per connection (`crypto_box_beforenm`), sealing
//! and opening in place with no allocation per message.
//!
//! The primitives are the RustCrypto crates' (`crypto_box::SalsaBox`: X25519, HSalsa20,
//! XSalsa20-Poly1305), the field's standard: Harmony writes no cipher or MAC code of its own.

use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::AeadInPlace;
use crypto_box::{Nonce, PublicKey, SalsaBox};

use super::keys::{KeyPair, KEY_LEN};

/// Length of the Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;

/// The precomputed box between one peer's public key and our secret key.
pub(crate) struct BoxKey(SalsaBox);

impl BoxKey {
    /// `crypto_box_beforenm`: X25519 then HSalsa20, done once.
    pub(crate) fn new(their: &[u8; KEY_LEN], our: &KeyPair) -> Self {
        Self(SalsaBox::new(
            &PublicKey::from_bytes(*their),
            &our.box_secret(),
        ))
    }

    /// Seals `buf` in place; returns the tag that goes before it on the wire.
    pub(crate) fn seal(&self, nonce: &Nonce, buf: &mut [u8]) -> [u8; TAG_LEN] {
        // XSalsa20-Poly1305 fails only for messages over 2^38 bytes (its keystream limit),
        // which no frame limit lets through.
        match self.0.encrypt_in_place_detached(nonce, b"", buf) {
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
            .decrypt_in_place_detached(nonce, b"", buf, GenericArray::from_slice(tag))
            .map_err(|_| BadTag)
    }
}

/// The box does not open: forged, truncated or keyed differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadTag;

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(n: u64) -> Nonce {
        let mut out = Nonce::default();
        out[..16].copy_from_slice(b"CurveZMQMESSAGEC");
        out[16..].copy_from_slice(&n.to_be_bytes());
        out
    }

    #[test]
    fn boxes_round_trip_at_many_lengths() {
        let (a, b) = (KeyPair::generate(), KeyPair::generate());
        let ours = BoxKey::new(b.public(), &a);
        let peer = BoxKey::new(a.public(), &b);
        for len in (0..300).chain([4095, 4096, 65536 + 33]) {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let n = nonce(len as u64);
            let mut boxed = plain.clone();
            let tag = ours.seal(&n, &mut boxed);
            assert!(len == 0 || boxed != plain, "sealed in place, len {len}");
            peer.open(&n, &mut boxed, &tag).unwrap();
            assert_eq!(boxed, plain, "round trip, len {len}");
        }
    }

    #[test]
    fn forged_boxes_do_not_open_and_stay_untouched() {
        let (a, b) = (KeyPair::generate(), KeyPair::generate());
        let key = BoxKey::new(b.public(), &a);
        let peer = BoxKey::new(a.public(), &b);
        let mut boxed = vec![9u8; 100];
        let tag = key.seal(&nonce(1), &mut boxed);
        let sealed = boxed.clone();
        let mut bad = tag;
        bad[15] ^= 1;
        assert_eq!(peer.open(&nonce(1), &mut boxed, &bad), Err(BadTag));
        assert_eq!(peer.open(&nonce(2), &mut boxed, &tag), Err(BadTag));
        boxed[50] ^= 0x80;
        assert_eq!(peer.open(&nonce(1), &mut boxed, &tag), Err(BadTag));
        boxed[50] ^= 0x80;
        assert_eq!(boxed, sealed);
        peer.open(&nonce(1), &mut boxed, &tag).unwrap();
        assert_eq!(boxed, vec![9u8; 100]);
    }
}
