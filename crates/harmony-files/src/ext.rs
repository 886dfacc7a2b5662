//! Harmony's extensions to FILEMQ v2, negotiated so that a zeromq/filemq peer still works.
//!
//! A Harmony client puts `X-HARMONY=1` and `RESYNC=1` in ICANHAZ's options; a zeromq/filemq
//! server ignores both. A Harmony server that sees `X-HARMONY=1` adds headers to each
//! CHEEZBURGER that creates content (a zeromq/filemq client ignores headers):
//!
//! | header | value | on |
//! |---|---|---|
//! | `X-SIZE` | file size, decimal | every create chunk |
//! | `X-CRC32` | crc32 of the chunk, 8 hex digits | every chunk with content |
//! | `X-BLAKE3` | BLAKE3 of the whole file, 64 hex digits | the eof chunk |
//!
//! To a Harmony client, chunks never cross a multiple of the server's chunk size (a chunk cut
//! short by the credit is followed by the rest of its piece): each chunk is then a piece of the
//! server's [`crate::Manifest`], whose crc32 and digest were made once for the file's version.
//! The wire format is unchanged; a client checks whatever chunks it gets.
//!
//! The whole-file digest is BLAKE3, not rfc/35's SHA-1: it is several times faster (SIMD on
//! every x86-64 and ARM CPU) and it is only ever computed and checked by two Harmony peers.
//!
//! With `X-HARMONY=1`, ICANHAZ's cache (rfc/35: `name=digest` of files the client has) carries
//! BLAKE3 digests, and partly received files as `name=DIGEST-OF-PREFIX@OFFSET`: the server
//! checks the prefix against its file and sends from `OFFSET` on (from 0 when it differs). The
//! cache also makes the client a mirror: a cached name the server does not publish is
//! answered with a delete. Without the extensions the client sends no cache, as zeromq/filemq's
//! client does (whose server ignores the cache anyway: its RESYNC code is commented out).

/// The whole-file digest's hasher.
pub type Hasher = blake3::Hasher;

/// ICANHAZ option asking for the extensions.
pub const OPT_HARMONY: &str = "X-HARMONY";
/// ICANHAZ option asking for resync against the cache (rfc/35).
pub const OPT_RESYNC: &str = "RESYNC";
/// CHEEZBURGER header: file size.
pub const HDR_SIZE: &str = "X-SIZE";
/// CHEEZBURGER header: crc32 of the chunk.
pub const HDR_CRC32: &str = "X-CRC32";
/// CHEEZBURGER header: BLAKE3 of the whole file.
pub const HDR_DIGEST: &str = "X-BLAKE3";

/// Length of a digest in hex.
pub const DIGEST_HEX_LEN: usize = 2 * blake3::OUT_LEN;

/// Digest hex of a finished hasher.
pub fn digest_hex(hasher: &Hasher) -> String {
    hasher.finalize().to_hex().to_string()
}

/// Digest hex of `data`.
pub fn digest_of(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// crc32 of `data` as `X-CRC32` carries it.
pub fn crc32_hex(data: &[u8]) -> String {
    crc_hex(crc32fast::hash(data))
}

/// A crc32 as `X-CRC32` carries it.
pub fn crc_hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// A cache value for a partly received file.
pub fn resume_value(prefix_digest: &str, offset: u64) -> String {
    format!("{prefix_digest}@{offset}")
}

/// Splits a cache value into `(digest, Some(offset))` for a partial file, `(digest, None)`
/// for a whole one; `None` when the offset is not a number.
pub fn parse_cache_value(value: &str) -> Option<(&str, Option<u64>)> {
    match value.split_once('@') {
        Some((digest, offset)) => Some((digest, Some(offset.parse().ok()?))),
        None => Some((value, None)),
    }
}

/// The value of header `name`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_values() {
        // BLAKE3's empty-input vector.
        assert_eq!(
            digest_of(b""),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let mut hasher = Hasher::new();
        hasher.update(b"abc");
        assert_eq!(digest_hex(&hasher), digest_of(b"abc"));
        assert_eq!(crc32_hex(b"123456789"), "cbf43926");
        assert_eq!(parse_cache_value("ab@12"), Some(("ab", Some(12))));
        assert_eq!(parse_cache_value("ab"), Some(("ab", None)));
        assert_eq!(parse_cache_value("ab@x"), None);
        assert_eq!(resume_value("ab", 3), "ab@3");
    }
}
