//! NaCl `crypto_box` with a key precomputed once per connection (`crypto_box_beforenm`), sealing
//! and opening in place with no allocation per message.
//!
//! Two backends compute the same bytes: libsodium (the default, feature `libsodium`: the
//! reference implementation libzmq uses, vectorised) and RustCrypto's `crypto_box` (pure Rust,
//! without the feature). Harmony writes no cipher or MAC code of its own.

#[cfg(any(not(feature = "libsodium"), test))]
mod rustcrypto;
#[cfg(feature = "libsodium")]
mod sodium;

#[cfg(not(feature = "libsodium"))]
pub(crate) use rustcrypto::{BoxKey, MessageKey};
#[cfg(feature = "libsodium")]
pub(crate) use sodium::{BoxKey, MessageKey};

/// Length of the Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;

/// An XSalsa20 nonce.
pub(crate) type Nonce = [u8; 24];

/// Which implementation seals and opens CURVE boxes in this build.
pub const BACKEND: &str = if cfg!(feature = "libsodium") {
    "libsodium"
} else {
    "RustCrypto (pure Rust)"
};

/// The box does not open: forged, truncated or keyed differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadTag;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curve::keys::KeyPair;

    fn nonce(n: u64) -> Nonce {
        let mut out = [0u8; 24];
        out[..16].copy_from_slice(b"CurveZMQMESSAGEC");
        out[16..].copy_from_slice(&n.to_be_bytes());
        out
    }

    #[test]
    fn boxes_round_trip_at_many_lengths() {
        let (a, b) = (KeyPair::generate(), KeyPair::generate());
        let ours = BoxKey::new(b.public(), &a).unwrap();
        let peer = BoxKey::new(a.public(), &b).unwrap();
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
        let key = BoxKey::new(b.public(), &a).unwrap();
        let peer = BoxKey::new(a.public(), &b).unwrap();
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

    /// libsodium and RustCrypto seal to the same bytes and open each other's boxes.
    #[cfg(feature = "libsodium")]
    #[test]
    fn libsodium_and_rustcrypto_agree_byte_for_byte() {
        let (a, b) = (KeyPair::generate(), KeyPair::generate());
        let sodium = BoxKey::new(b.public(), &a).unwrap();
        let rust = rustcrypto::BoxKey::new(a.public(), &b).unwrap();
        for len in (0..200).chain([1023, 1024, 65536, 65536 + 7]) {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            let n = nonce(len as u64 + 1);
            let (mut by_sodium, mut by_rust) = (plain.clone(), plain.clone());
            let tag = sodium.seal(&n, &mut by_sodium);
            assert_eq!(rust.seal(&n, &mut by_rust), tag, "tag, len {len}");
            assert_eq!(by_sodium, by_rust, "ciphertext, len {len}");
            rust.open(&n, &mut by_sodium, &tag).unwrap();
            sodium.open(&n, &mut by_rust, &tag).unwrap();
            assert_eq!(by_sodium, plain);
            assert_eq!(by_rust, plain);
            // The MESSAGE boxes too (the sodium one skips HSalsa20 per message).
            let prefix = b"CurveZMQMESSAGES";
            let counter = len as u64 * 0x0101_0101 + 1;
            let (mut by_sodium, mut by_rust) = (plain.clone(), plain.clone());
            let tag = MessageKey::new(&sodium, prefix).seal(counter, &mut by_sodium);
            let rust_key = rustcrypto::MessageKey::new(&rust, prefix);
            assert_eq!(
                rust_key.seal(counter, &mut by_rust),
                tag,
                "message tag, len {len}"
            );
            assert_eq!(by_sodium, by_rust, "message ciphertext, len {len}");
            rust_key.open(counter, &mut by_sodium, &tag).unwrap();
            assert_eq!(by_sodium, plain);
        }
    }

    /// MESSAGE boxes (fixed prefix + counter) seal to exactly the bytes of the full box with
    /// that nonce, and open only with the right counter and an intact tag and text.
    #[test]
    fn message_keys_equal_the_full_box() {
        let (a, b) = (KeyPair::generate(), KeyPair::generate());
        let ours = BoxKey::new(b.public(), &a).unwrap();
        let peer = BoxKey::new(a.public(), &b).unwrap();
        let prefix = b"CurveZMQMESSAGEC";
        let (send, recv) = (
            MessageKey::new(&ours, prefix),
            MessageKey::new(&peer, prefix),
        );
        let lengths = (0..200).chain([223, 224, 225, 255, 256, 1023, 1024, 4097, 65536 + 33]);
        for (i, len) in lengths.enumerate() {
            let counter = [1, 2, 0x0102_0304_0506_0708, u64::MAX - 2][i % 4] ^ (i as u64 & 0xF0);
            let plain: Vec<u8> = (0..len).map(|j| (j * 13 + len) as u8).collect();
            let (mut fast, mut full) = (plain.clone(), plain.clone());
            let tag = send.seal(counter, &mut fast);
            let want = ours.seal(&nonce(counter), &mut full);
            assert_eq!(tag, want, "tag, len {len}");
            assert_eq!(fast, full, "ciphertext, len {len}");
            assert_eq!(recv.open(counter + 1, &mut fast, &tag), Err(BadTag));
            let mut bad = tag;
            bad[i % TAG_LEN] ^= 1;
            assert_eq!(recv.open(counter, &mut fast, &bad), Err(BadTag));
            if len > 0 {
                fast[len / 2] ^= 0x40;
                assert_eq!(recv.open(counter, &mut fast, &tag), Err(BadTag));
                fast[len / 2] ^= 0x40;
            }
            assert_eq!(fast, full, "untouched after failures, len {len}");
            recv.open(counter, &mut fast, &tag).unwrap();
            assert_eq!(fast, plain, "round trip, len {len}");
        }
    }

    /// A small-order public key (here zero) gives an all-zero shared secret: libsodium refuses
    /// it, as libzmq built on libsodium does.
    #[cfg(feature = "libsodium")]
    #[test]
    fn libsodium_refuses_a_small_order_public_key() {
        assert!(BoxKey::new(&[0u8; crate::curve::KEY_LEN], &KeyPair::generate()).is_none());
    }
}
