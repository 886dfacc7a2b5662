//! NaCl `crypto_box` with a precomputed key (`crypto_box_beforenm` + `_afternm`), tuned for
//! MESSAGE traffic.
//!
//! The box is exactly XSalsa20-Poly1305 as `crypto_box::SalsaBox` (and libsodium) compute it;
//! only the speed differs. Salsa20 runs four blocks side by side in `wide::u32x4` lanes (SSE2
//! on x86-64, NEON or simd128 elsewhere, plain arrays otherwise), which the `salsa20` crate
//! does not (one block at a time in scalar code). Below 4 KiB, Poly1305 uses 64-bit limbs,
//! two blocks per step; there the `poly1305` crate's AVX2 set-up costs more than the message.
//! Per message: one HSalsa20 (the nonce's subkey), the keystream blocks, one Poly1305 pass,
//! no allocation. The tests check every output against `crypto_box` byte for byte.

use crypto_box::aead::generic_array::GenericArray;
use crypto_box::Nonce;
use curve25519_dalek::scalar::{clamp_integer, Scalar};
use curve25519_dalek::MontgomeryPoint;
use poly1305::universal_hash::KeyInit;
use poly1305::Poly1305;
use salsa20::cipher::consts::U10;
use wide::u32x4;
use zeroize::{Zeroize, Zeroizing};

use super::keys::{KeyPair, KEY_LEN};

/// Length of the Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;
/// From this many bytes on, the `poly1305` crate's (AVX2) code beats the 64-bit one.
const POLY_CRATE_FROM: usize = 4096;

/// The precomputed key between one peer's public key and our secret key.
pub(crate) struct BoxKey(Zeroizing<[u8; 32]>);

impl BoxKey {
    /// `crypto_box_beforenm`: HSalsa20 of the X25519 shared secret, computed exactly as
    /// `crypto_box::SalsaBox::new` does (clamped scalar reduced mod ℓ).
    pub(crate) fn new(their: &[u8; KEY_LEN], our: &KeyPair) -> Self {
        let mut scalar = Scalar::from_bytes_mod_order(clamp_integer(*our.secret()));
        let shared = Zeroizing::new((scalar * MontgomeryPoint(*their)).to_bytes());
        scalar.zeroize();
        let mut key = salsa20::hsalsa::<U10>(
            GenericArray::from_slice(&shared[..]),
            &GenericArray::default(),
        );
        let out = Zeroizing::new(key.into());
        key.zeroize();
        Self(out)
    }

    /// Seals `buf` in place; returns the tag that goes before it on the wire.
    pub(crate) fn seal(&self, nonce: &Nonce, buf: &mut [u8]) -> [u8; TAG_LEN] {
        let stream = Stream::new(&self.0, nonce);
        let mut blocks = stream.first_blocks();
        let mac_key = MacKey::take(&mut blocks);
        stream.xor(&mut blocks, buf);
        poly1305(&mac_key.0, buf)
    }

    /// Opens `buf` in place if `tag` authenticates it; on failure `buf` is left untouched.
    pub(crate) fn open(
        &self,
        nonce: &Nonce,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), BadTag> {
        let stream = Stream::new(&self.0, nonce);
        let mut blocks = stream.first_blocks();
        let mac_key = MacKey::take(&mut blocks);
        if !same_tag(&poly1305(&mac_key.0, buf), tag) {
            return Err(BadTag);
        }
        stream.xor(&mut blocks, buf);
        Ok(())
    }
}

/// The one-time Poly1305 key, wiped after use like libsodium does. The rest of the keystream
/// is not: it is worth no more than the plaintext it covered, which the caller keeps anyway.
struct MacKey(Zeroizing<[u8; 32]>);

impl MacKey {
    /// Moves the key out of the first keystream bytes, wiping them there.
    fn take(blocks: &mut [u8; 256]) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&blocks[..32]);
        blocks[..32].zeroize();
        Self(key)
    }
}

/// The box does not open: forged, truncated or keyed differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadTag;

/// Constant-time tag comparison.
fn same_tag(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Salsa20 keystream of one XSalsa20 nonce.
struct Stream {
    /// Salsa20 input block with the subkey and nonce tail; words 8 and 9 (counter) unused.
    state: [u32; 16],
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.state.zeroize();
    }
}

impl Stream {
    fn new(key: &[u8; 32], nonce: &Nonce) -> Self {
        let mut subkey = salsa20::hsalsa::<U10>(
            GenericArray::from_slice(key),
            GenericArray::from_slice(&nonce[..16]),
        );
        let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let mut state = [0u32; 16];
        state[0] = 0x6170_7865;
        state[5] = 0x3320_646e;
        state[10] = 0x7962_2d32;
        state[15] = 0x6b20_6574;
        for i in 0..4 {
            state[1 + i] = word(&subkey[4 * i..]);
            state[11 + i] = word(&subkey[16 + 4 * i..]);
        }
        state[6] = word(&nonce[16..]);
        state[7] = word(&nonce[20..]);
        subkey.zeroize();
        Self { state }
    }

    /// Keystream blocks 0 to 3: the Poly1305 key (32 bytes), then what `xor` starts with.
    fn first_blocks(&self) -> [u8; 256] {
        let mut blocks = [0u8; 256];
        self.blocks4(0, &mut blocks);
        blocks
    }

    /// XORs the keystream from byte 32 on into `buf`, given `first_blocks` (then reused as
    /// scratch space).
    fn xor(&self, blocks: &mut [u8; 256], buf: &mut [u8]) {
        let first = buf.len().min(256 - 32);
        let (head, rest) = buf.split_at_mut(first);
        xor(head, &blocks[32..32 + first]);
        let mut counter = 4;
        for chunk in rest.chunks_mut(256) {
            self.blocks4(counter, blocks);
            xor(chunk, &blocks[..chunk.len()]);
            counter += 4;
        }
    }

    /// Keystream blocks `counter .. counter + 4` into `out`.
    #[inline]
    fn blocks4(&self, counter: u64, out: &mut [u8; 256]) {
        let mut input = [u32x4::ZERO; 16];
        for (word, lanes) in self.state.iter().zip(input.iter_mut()) {
            *lanes = u32x4::splat(*word);
        }
        let count = |lane: u64| counter.wrapping_add(lane);
        input[8] = u32x4::new([0, 1, 2, 3].map(|l| count(l) as u32));
        input[9] = u32x4::new([0, 1, 2, 3].map(|l| (count(l) >> 32) as u32));
        let mut x = input;
        for _ in 0..10 {
            quarter(&mut x, 0, 4, 8, 12);
            quarter(&mut x, 5, 9, 13, 1);
            quarter(&mut x, 10, 14, 2, 6);
            quarter(&mut x, 15, 3, 7, 11);
            quarter(&mut x, 0, 1, 2, 3);
            quarter(&mut x, 5, 6, 7, 4);
            quarter(&mut x, 10, 11, 8, 9);
            quarter(&mut x, 15, 12, 13, 14);
        }
        for group in 0..4 {
            let words = core::array::from_fn(|i| x[4 * group + i] + input[4 * group + i]);
            // Lane `l` of the transpose: words 4g..4g+3 of block `l`, i.e. 16 output bytes.
            for (lane, row) in u32x4::transpose(words).iter().enumerate() {
                let at = lane * 64 + group * 16;
                for (k, v) in row.to_array().iter().enumerate() {
                    out[at + 4 * k..at + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
}

/// One Salsa20 quarter round on four blocks at once.
#[inline(always)]
fn quarter(x: &mut [u32x4; 16], a: usize, b: usize, c: usize, d: usize) {
    x[b] ^= rotl(x[a] + x[d], 7);
    x[c] ^= rotl(x[b] + x[a], 9);
    x[d] ^= rotl(x[c] + x[b], 13);
    x[a] ^= rotl(x[d] + x[c], 18);
}

/// Rotates every lane left by `n` bits (0 < n < 32).
#[inline(always)]
fn rotl(v: u32x4, n: u32) -> u32x4 {
    (v << n) | (v >> (32 - n))
}

/// `buf ^= stream` (same lengths).
#[inline]
fn xor(buf: &mut [u8], stream: &[u8]) {
    for (b, s) in buf.iter_mut().zip(stream) {
        *b ^= s;
    }
}

/// Poly1305 of `data` under a one-time key.
fn poly1305(key: &[u8; 32], data: &[u8]) -> [u8; TAG_LEN] {
    if data.len() >= POLY_CRATE_FROM {
        let tag = Poly1305::new(GenericArray::from_slice(key)).compute_unpadded(data);
        return tag.into();
    }
    poly1305_64(key, data)
}

const M44: u64 = (1 << 44) - 1;
const M42: u64 = (1 << 42) - 1;

/// `h·r` modulo 2^130 - 5 before carrying, in 44/44/42-bit limbs (2^130 wraps to 5, so the
/// limb products that reach 2^132 come back multiplied by 20).
#[inline(always)]
fn products(h: [u64; 3], r: [u64; 3]) -> [u128; 3] {
    let mul = |a: u64, b: u64| u128::from(a) * u128::from(b);
    let (s1, s2) = (r[1] * 20, r[2] * 20);
    [
        mul(h[0], r[0]) + mul(h[1], s2) + mul(h[2], s1),
        mul(h[0], r[1]) + mul(h[1], r[0]) + mul(h[2], s2),
        mul(h[0], r[2]) + mul(h[1], r[1]) + mul(h[2], r[0]),
    ]
}

/// Carries products back into limbs (the middle one may exceed 44 bits by a little).
#[inline(always)]
fn carry(d: [u128; 3]) -> [u64; 3] {
    let mut c = (d[0] >> 44) as u64;
    let mut h0 = d[0] as u64 & M44;
    let d1 = d[1] + u128::from(c);
    c = (d1 >> 44) as u64;
    let h1 = d1 as u64 & M44;
    let d2 = d[2] + u128::from(c);
    c = (d2 >> 42) as u64;
    let h2 = d2 as u64 & M42;
    h0 += c * 5;
    c = h0 >> 44;
    h0 &= M44;
    [h0, h1 + c, h2]
}

/// Poly1305 with three 44/44/42-bit limbs and 128-bit products (the "donna-64" layout).
fn poly1305_64(key: &[u8; 32], data: &[u8]) -> [u8; TAG_LEN] {
    let le = |b: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[..8]);
        u64::from_le_bytes(word)
    };

    let t0 = le(&key[0..]);
    let t1 = le(&key[8..]);
    let r = [
        t0 & 0xffc_0fff_ffff,
        ((t0 >> 44) | (t1 << 20)) & 0xfff_ffc0_ffff,
        (t1 >> 24) & 0x00f_ffff_fc0f,
    ];
    // r², for two blocks per step: h = (h + m1)·r² + m2·r, two independent products.
    let rr = carry(products(r, r));

    // A 16-byte block as limbs, with 2^128 added (`hibit`) unless it is the padded tail.
    let limbs = |m: &[u8], hibit: u64| {
        let t0 = le(&m[0..]);
        let t1 = le(&m[8..]);
        [
            t0 & M44,
            ((t0 >> 44) | (t1 << 20)) & M44,
            ((t1 >> 24) & M42) | hibit,
        ]
    };
    let add = |h: [u64; 3], m: [u64; 3]| [h[0] + m[0], h[1] + m[1], h[2] + m[2]];

    let mut h = [0u64; 3];
    let mut pairs = data.chunks_exact(32);
    for m in &mut pairs {
        let d1 = products(add(h, limbs(&m[..16], 1 << 40)), rr);
        let d2 = products(limbs(&m[16..], 1 << 40), r);
        h = carry([d1[0] + d2[0], d1[1] + d2[1], d1[2] + d2[2]]);
    }
    let rest = pairs.remainder();
    let mut blocks = rest.chunks_exact(16);
    for m in &mut blocks {
        h = carry(products(add(h, limbs(m, 1 << 40)), r));
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut b = [0u8; 16];
        b[..tail.len()].copy_from_slice(tail);
        b[tail.len()] = 1;
        h = carry(products(add(h, limbs(&b, 0)), r));
    }
    let [mut h0, mut h1, mut h2] = h;

    // Fully carry h.
    let mut c = h1 >> 44;
    h1 &= M44;
    h2 += c;
    c = h2 >> 42;
    h2 &= M42;
    h0 += c * 5;
    c = h0 >> 44;
    h0 &= M44;
    h1 += c;
    c = h1 >> 44;
    h1 &= M44;
    h2 += c;
    c = h2 >> 42;
    h2 &= M42;
    h0 += c * 5;
    c = h0 >> 44;
    h0 &= M44;
    h1 += c;

    // g = h + 5 - 2^130; keep h when that borrows (h < p), else g.
    let mut g0 = h0 + 5;
    c = g0 >> 44;
    g0 &= M44;
    let mut g1 = h1 + c;
    c = g1 >> 44;
    g1 &= M44;
    let mut g2 = (h2 + c).wrapping_sub(1 << 42);
    let keep_g = (g2 >> 63).wrapping_sub(1);
    g0 &= keep_g;
    g1 &= keep_g;
    g2 &= keep_g;
    h0 = (h0 & !keep_g) | g0;
    h1 = (h1 & !keep_g) | g1;
    h2 = (h2 & !keep_g) | g2;

    // h + s mod 2^128.
    let t0 = le(&key[16..]);
    let t1 = le(&key[24..]);
    h0 += t0 & M44;
    c = h0 >> 44;
    h0 &= M44;
    h1 += (((t0 >> 44) | (t1 << 20)) & M44) + c;
    c = h1 >> 44;
    h1 &= M44;
    h2 += ((t1 >> 24) & M42) + c;
    h2 &= M42;

    let lo = h0 | (h1 << 44);
    let hi = (h1 >> 20) | (h2 << 24);
    let mut tag = [0u8; TAG_LEN];
    tag[..8].copy_from_slice(&lo.to_le_bytes());
    tag[8..].copy_from_slice(&hi.to_le_bytes());
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_box::aead::AeadInPlace;
    use crypto_box::{PublicKey, SalsaBox};
    use proptest::prelude::*;

    fn reference(their: &KeyPair, our: &KeyPair) -> SalsaBox {
        SalsaBox::new(&PublicKey::from_bytes(*their.public()), &our.box_secret())
    }

    fn nonce(n: u64) -> Nonce {
        let mut out = Nonce::default();
        out[..16].copy_from_slice(b"CurveZMQMESSAGEC");
        out[16..].copy_from_slice(&n.to_be_bytes());
        out
    }

    #[test]
    fn boxes_match_crypto_box_at_every_length_up_to_1100() {
        let (a, b) = (KeyPair::generate(), KeyPair::generate());
        let ours = BoxKey::new(b.public(), &a);
        let theirs = reference(&b, &a);
        let peer = BoxKey::new(a.public(), &b);
        for len in (0..1100).chain([4095, 4096, 4097, 65536, 65536 + 33]) {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let n = nonce(len as u64);
            let mut mine = plain.clone();
            let tag = ours.seal(&n, &mut mine);
            let mut reference = plain.clone();
            let ref_tag = theirs
                .encrypt_in_place_detached(&n, b"", &mut reference)
                .unwrap();
            assert_eq!(mine, reference, "ciphertext, len {len}");
            assert_eq!(tag[..], ref_tag[..], "tag, len {len}");
            peer.open(&n, &mut mine, &tag).unwrap();
            assert_eq!(mine, plain, "round trip, len {len}");
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

    /// Keys and data that push the limbs to their extremes (h close to p, all-ones blocks).
    #[test]
    fn poly1305_matches_the_crate_at_the_edges() {
        for key in [[0xffu8; 32], [0u8; 32], {
            let mut k = [0xffu8; 32];
            k[16..].fill(0);
            k
        }] {
            for fill in [0xffu8, 0x00, 0x80] {
                for len in [0, 1, 15, 16, 17, 31, 32, 33, 64, 255, 256, 1000] {
                    let data = vec![fill; len];
                    let want: [u8; 16] = Poly1305::new(GenericArray::from_slice(&key))
                        .compute_unpadded(&data)
                        .into();
                    assert_eq!(poly1305_64(&key, &data), want, "{key:?} {fill} {len}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn poly1305_matches_the_crate(key in any::<[u8; 32]>(), data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let want: [u8; 16] = Poly1305::new(GenericArray::from_slice(&key))
                .compute_unpadded(&data)
                .into();
            prop_assert_eq!(poly1305_64(&key, &data), want);
        }

        #[test]
        fn seal_matches_crypto_box(secret in any::<[u8; 32]>(), their in any::<[u8; 32]>(), n in any::<[u8; 24]>(), data in proptest::collection::vec(any::<u8>(), 0..700)) {
            let ours = KeyPair::from_secret(secret);
            let reference = SalsaBox::new(&PublicKey::from_bytes(their), &ours.box_secret());
            let key = BoxKey::new(&their, &ours);
            let mut mine = data.clone();
            let n = Nonce::from(n);
            let tag = key.seal(&n, &mut mine);
            let mut theirs = data.clone();
            let ref_tag = reference.encrypt_in_place_detached(&n, b"", &mut theirs).unwrap();
            prop_assert_eq!(&mine, &theirs);
            prop_assert_eq!(&tag[..], &ref_tag[..]);
        }
    }
}
