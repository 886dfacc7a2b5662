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
