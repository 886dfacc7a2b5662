//! The libsodium backend: the reference implementation of NaCl that libzmq itself uses, with
//! vectorised Salsa20 and Poly1305 picked for the CPU at start-up.
//!
//! This is the only place in Harmony that calls C. Every call below is audited against
//! libsodium's documented contract (libsodium 1.0.x, `crypto_box` "precalculation interface",
//! detached mode); each `unsafe` block says why its pointers and lengths are valid.

#![allow(unsafe_code)]

use std::sync::OnceLock;

use libsodium_sys as ffi;
use zeroize::Zeroizing;

use super::{BadTag, Nonce, TAG_LEN};
use crate::curve::keys::{KeyPair, KEY_LEN};

/// `crypto_box_BEFORENMBYTES`, checked against the library in [`init`].
const SHARED_LEN: usize = 32;

/// Runs `sodium_init` once per process; false when libsodium cannot start.
fn init() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        // SAFETY: sodium_init takes no arguments, is thread-safe and idempotent; it returns 0 on
        // first success, 1 when already initialised, -1 on failure. The size queries are pure.
        let (status, sizes_match) = unsafe {
            (
                ffi::sodium_init(),
                ffi::crypto_box_beforenmbytes() == SHARED_LEN
                    && ffi::crypto_box_macbytes() == TAG_LEN
                    && ffi::crypto_box_noncebytes() == size_of::<Nonce>()
                    && ffi::crypto_box_publickeybytes() == KEY_LEN
                    && ffi::crypto_box_secretkeybytes() == KEY_LEN,
            )
        };
        status >= 0 && sizes_match
    })
}

/// The precomputed box between one peer's public key and our secret key (wiped on drop).
pub(crate) struct BoxKey(Zeroizing<[u8; SHARED_LEN]>);

impl BoxKey {
    /// `crypto_box_beforenm`: X25519 then HSalsa20, done once. `None` when libsodium cannot
    /// start or refuses `their` key (a small-order point, whose shared secret is all zeros).
    pub(crate) fn new(their: &[u8; KEY_LEN], our: &KeyPair) -> Option<Self> {
        if !init() {
            return None;
        }
        let mut shared = Zeroizing::new([0u8; SHARED_LEN]);
        // SAFETY: `shared` is SHARED_LEN writable bytes (= crypto_box_BEFORENMBYTES, checked in
        // init); `their` and `our.secret()` are KEY_LEN readable bytes (= PUBLICKEYBYTES and
        // SECRETKEYBYTES). Nothing else is read or written.
        let status = unsafe {
            ffi::crypto_box_beforenm(shared.as_mut_ptr(), their.as_ptr(), our.secret().as_ptr())
        };
        (status == 0).then_some(Self(shared))
    }

    /// Seals `buf` in place; returns the tag that goes before it on the wire.
    pub(crate) fn seal(&self, nonce: &Nonce, buf: &mut [u8]) -> [u8; TAG_LEN] {
        let mut tag = [0u8; TAG_LEN];
        // SAFETY: ciphertext and message are the same `buf.len()` bytes: libsodium documents
        // in-place operation (c == m) for the detached box. `tag` is MACBYTES writable bytes,
        // `nonce` NONCEBYTES and the key BEFORENMBYTES readable bytes (all checked in init,
        // which `new` ran). The length fits: a slice is at most isize::MAX bytes, far below
        // crypto_box_MESSAGEBYTES_MAX. With valid arguments the call cannot fail (it returns
        // non-zero only for an over-long message).
        let text = buf.as_mut_ptr();
        let status = unsafe {
            ffi::crypto_box_detached_afternm(
                text,
                tag.as_mut_ptr(),
                text.cast_const(),
                buf.len() as u64,
                nonce.as_ptr(),
                self.0.as_ptr(),
            )
        };
        assert_eq!(status, 0, "crypto_box_detached_afternm refused a frame");
        tag
    }

    /// Opens `buf` in place if `tag` authenticates it; on failure `buf` is left untouched
    /// (libsodium checks the tag before it decrypts anything).
    pub(crate) fn open(
        &self,
        nonce: &Nonce,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), BadTag> {
        // SAFETY: as in `seal`: message and ciphertext are the same `buf.len()` bytes (in place
        // is documented), `tag` MACBYTES, `nonce` NONCEBYTES and the key BEFORENMBYTES readable
        // bytes. It returns -1, writing nothing, when the tag does not verify.
        let text = buf.as_mut_ptr();
        let status = unsafe {
            ffi::crypto_box_open_detached_afternm(
                text,
                text.cast_const(),
                tag.as_ptr(),
                buf.len() as u64,
                nonce.as_ptr(),
                self.0.as_ptr(),
            )
        };
        if status == 0 {
            Ok(())
        } else {
            Err(BadTag)
        }
    }
}

/// Bytes of Salsa20 keystream block 0 used to key Poly1305 (`crypto_secretbox`'s layout).
const POLY_KEY_LEN: usize = 32;
/// Size of one Salsa20 block.
const BLOCK_LEN: usize = 64;

/// The boxes of one direction of CURVE traffic, with XSalsa20's first step done once.
///
/// A MESSAGE nonce is a fixed 16-byte prefix ("CurveZMQMESSAGEC"/"...S") and an 8-byte
/// counter. XSalsa20 hashes the first 16 nonce bytes with the key (HSalsa20) into a Salsa20
/// key, and runs Salsa20 with the last 8 as its nonce: with a fixed prefix that subkey is the
/// same for every message of the direction, so it is computed here once instead of in every
/// `crypto_box_*_afternm` call (a fifth of the CPU of a 64-byte message). Each box is then
/// exactly libsodium's `crypto_secretbox_detached` from that point on: keystream block 0 gives
/// the Poly1305 key (its first 32 bytes) and encrypts the first 32 message bytes (its last 32),
/// blocks 1.. encrypt the rest, Poly1305 authenticates the ciphertext. Only libsodium's
/// primitives compute; the tests check every length against `crypto_box_detached_afternm`.
pub(crate) struct MessageKey {
    subkey: Zeroizing<[u8; SHARED_LEN]>,
}

impl MessageKey {
    /// The MESSAGE boxes of `key` whose nonces start with `prefix`.
    pub(crate) fn new(key: &BoxKey, prefix: &[u8; 16]) -> Self {
        let mut subkey = Zeroizing::new([0u8; SHARED_LEN]);
        // SAFETY: `subkey` is crypto_core_hsalsa20_OUTPUTBYTES (32) writable bytes, `prefix`
        // INPUTBYTES (16) and the key KEYBYTES (32) readable bytes; a null constant selects
        // the standard "expand 32-byte k", as crypto_secretbox does. It always returns 0.
        unsafe {
            ffi::crypto_core_hsalsa20(
                subkey.as_mut_ptr(),
                prefix.as_ptr(),
                key.0.as_ptr(),
                std::ptr::null(),
            );
        }
        Self { subkey }
    }

    /// Keystream block 0 for this counter: the Poly1305 key, then the pad of bytes 0..32.
    fn block0(&self, counter: &[u8; 8]) -> Zeroizing<[u8; BLOCK_LEN]> {
        let mut block = Zeroizing::new([0u8; BLOCK_LEN]);
        // SAFETY: `block` is BLOCK_LEN writable bytes, `counter` crypto_stream_salsa20_NONCEBYTES
        // (8) and the subkey KEYBYTES (32) readable bytes. It returns 0 for any length.
        unsafe {
            ffi::crypto_stream_salsa20(
                block.as_mut_ptr(),
                BLOCK_LEN as u64,
                counter.as_ptr(),
                self.subkey.as_ptr(),
            );
        }
        block
    }

    /// XORs `buf` with the keystream: bytes 0..32 with `block0`'s tail, the rest from block 1.
    fn xor(&self, counter: &[u8; 8], block0: &[u8; BLOCK_LEN], buf: &mut [u8]) {
        let head = buf.len().min(BLOCK_LEN - POLY_KEY_LEN);
        let (first, rest) = buf.split_at_mut(head);
        for (b, k) in first.iter_mut().zip(&block0[POLY_KEY_LEN..]) {
            *b ^= k;
        }
        if !rest.is_empty() {
            let text = rest.as_mut_ptr();
            // SAFETY: in place (c == m) over the `rest.len()` bytes of `rest`, as
            // crypto_secretbox itself calls it; `counter` NONCEBYTES and the subkey KEYBYTES
            // readable bytes. Block counter 1: block 0 went to the Poly1305 key and `first`.
            unsafe {
                ffi::crypto_stream_salsa20_xor_ic(
                    text,
                    text.cast_const(),
                    rest.len() as u64,
                    counter.as_ptr(),
                    1,
                    self.subkey.as_ptr(),
                );
            }
        }
    }

    /// Seals `buf` in place with nonce `prefix ‖ counter`; returns the tag.
    pub(crate) fn seal(&self, counter: u64, buf: &mut [u8]) -> [u8; TAG_LEN] {
        let counter = counter.to_be_bytes();
        let block0 = self.block0(&counter);
        self.xor(&counter, &block0, buf);
        let mut tag = [0u8; TAG_LEN];
        // SAFETY: `tag` is crypto_onetimeauth_poly1305_BYTES (16) writable bytes; `buf` its
        // length readable bytes; the key is the first KEYBYTES (32) of `block0`.
        unsafe {
            ffi::crypto_onetimeauth_poly1305(
                tag.as_mut_ptr(),
                buf.as_ptr(),
                buf.len() as u64,
                block0.as_ptr(),
            );
        }
        tag
    }

    /// Opens `buf` in place if `tag` authenticates it; on failure `buf` is left untouched
    /// (the tag is checked, in constant time, before anything is decrypted).
    pub(crate) fn open(
        &self,
        counter: u64,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), BadTag> {
        let counter = counter.to_be_bytes();
        let block0 = self.block0(&counter);
        // SAFETY: `tag` is BYTES (16) and `buf` its length readable bytes; the key is the first
        // KEYBYTES (32) of `block0`. Returns 0 only when the tag verifies.
        let status = unsafe {
            ffi::crypto_onetimeauth_poly1305_verify(
                tag.as_ptr(),
                buf.as_ptr(),
                buf.len() as u64,
                block0.as_ptr(),
            )
        };
        if status != 0 {
            return Err(BadTag);
        }
        self.xor(&counter, &block0, buf);
        Ok(())
    }
}
