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
//! | `X-SHA1` | SHA-1 of the whole file, 40 hex digits | the eof chunk |
//!
//! ICANHAZ's cache (rfc/35: `name=SHA-1 hex` of files the client has) also carries partly
//! received files as `name=SHA1-OF-PREFIX@OFFSET`: the server checks the prefix against its
//! file and sends from `OFFSET` on (from 0 when it differs). A zeromq/filemq server compares
//! the value with whole-file digests, finds no match, and sends the whole file. With
//! `X-HARMONY=1` the cache also makes the client a mirror: a cached name the server does not
//! publish is answered with a delete.

use sha1::{Digest, Sha1};

/// ICANHAZ option asking for the extensions.
pub const OPT_HARMONY: &str = "X-HARMONY";
/// ICANHAZ option asking for resync against the cache (rfc/35).
pub const OPT_RESYNC: &str = "RESYNC";
/// CHEEZBURGER header: file size.
pub const HDR_SIZE: &str = "X-SIZE";
/// CHEEZBURGER header: crc32 of the chunk.
pub const HDR_CRC32: &str = "X-CRC32";
/// CHEEZBURGER header: SHA-1 of the whole file.
pub const HDR_SHA1: &str = "X-SHA1";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// SHA-1 hex of a finished hasher.
pub fn sha1_hex(hasher: Sha1) -> String {
    hex(&hasher.finalize())
}

/// SHA-1 hex of `data`.
pub fn sha1_of(data: &[u8]) -> String {
    sha1_hex(Sha1::new_with_prefix(data))
}

/// crc32 of `data` as `X-CRC32` carries it.
pub fn crc32_hex(data: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(data))
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
        assert_eq!(sha1_of(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(crc32_hex(b"123456789"), "cbf43926");
        assert_eq!(parse_cache_value("ab@12"), Some(("ab", Some(12))));
        assert_eq!(parse_cache_value("ab"), Some(("ab", None)));
        assert_eq!(parse_cache_value("ab@x"), None);
        assert_eq!(resume_value("ab", 3), "ab@3");
    }
}
