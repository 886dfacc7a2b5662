//! Field encodings shared by the zproto-generated protocols (ZRE, FILEMQ): numbers are unsigned
//! big-endian; `string` = 1-byte length + bytes; `longstr` = 4-byte length + bytes;
//! `strings` = 4-byte count of `longstr`; `hash` = 4-byte count of (`string` key, `longstr` value).
//!
//! Decoding goes through [`Reader`], which turns the nom parsers' failures into typed
//! [`WireError`]s naming the field, and checks every declared count against the bytes left
//! before allocating anything.

use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32, be_u64, be_u8};
use nom::IResult;

use crate::error::{Result, WireError};

/// Smallest encoded `longstr` (an empty one): its length field.
const MIN_LONGSTR: usize = 4;
/// Smallest encoded hash entry: an empty key and an empty value.
const MIN_HASH_ENTRY: usize = 1 + 4;

/// nom: a `string` (1-byte length) as raw bytes.
pub(crate) fn short_bytes(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (input, len) = be_u8(input)?;
    take(len)(input)
}

/// nom: a `longstr` (4-byte length) as raw bytes.
pub(crate) fn long_bytes(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (input, len) = be_u32(input)?;
    take(len)(input)
}

/// A cursor over one encoded message. Every method consumes one field or fails with an error
/// naming it.
pub(crate) struct Reader<'a> {
    /// The whole input, for zero-copy slices.
    whole: &'a Bytes,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over all of `input`, which must be at most `limit` bytes.
    pub(crate) fn new(input: &'a Bytes, limit: usize, what: &'static str) -> Result<Self> {
        if input.len() > limit {
            return Err(WireError::TooLong {
                what,
                len: input.len() as u64,
                limit: limit as u64,
            });
        }
        Ok(Self {
            whole: input,
            rest: input,
        })
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    fn step<T>(
        &mut self,
        what: &'static str,
        parser: impl FnOnce(&'a [u8]) -> IResult<&'a [u8], T>,
    ) -> Result<T> {
        let (rest, value) = parser(self.rest).map_err(|_| WireError::Truncated(what))?;
        self.rest = rest;
        Ok(value)
    }

    /// Exactly `N` bytes.
    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let bytes = self.step(what, |i| take(N)(i))?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// A `number-1`.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8> {
        self.step(what, be_u8)
    }

    /// A `number-2`.
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16> {
        self.step(what, be_u16)
    }

    /// A `number-4`.
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32> {
        self.step(what, be_u32)
    }

    /// A `number-8`.
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64> {
        self.step(what, be_u64)
    }

    /// A `string`, which must be UTF-8.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<String> {
        let raw = self.step(what, short_bytes)?;
        utf8(raw, what)
    }

    /// A `longstr`'s raw bytes, as a slice of the input. A length beyond the input is
    /// reported before anything is read.
    pub(crate) fn long_bytes(&mut self, what: &'static str) -> Result<Bytes> {
        let raw = self.step(what, long_bytes)?;
        Ok(self.whole.slice_ref(raw))
    }

    /// A `longstr`, which must be UTF-8.
    pub(crate) fn longstr(&mut self, what: &'static str) -> Result<String> {
        let raw = self.step(what, long_bytes)?;
        utf8(raw, what)
    }

    /// A 4-byte count of entries of at least `min_entry` bytes each, refused when that many
    /// entries cannot fit in what is left: callers may then allocate `count` slots safely.
    pub(crate) fn count(&mut self, what: &'static str, min_entry: usize) -> Result<usize> {
        let count = self.u32(what)?;
        let fits = self.remaining() / min_entry;
        if count as usize > fits {
            return Err(WireError::TooLong {
                what,
                len: u64::from(count),
                limit: fits as u64,
            });
        }
        Ok(count as usize)
    }

    /// A `strings` list.
    pub(crate) fn strings(&mut self, what: &'static str) -> Result<Vec<String>> {
        let count = self.count(what, MIN_LONGSTR)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(self.longstr(what)?);
        }
        Ok(out)
    }

    /// A `hash`, in wire order.
    pub(crate) fn hash(&mut self, what: &'static str) -> Result<Vec<(String, String)>> {
        let count = self.count(what, MIN_HASH_ENTRY)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let key = self.string(what)?;
            let value = self.longstr(what)?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Ends decoding: nothing may be left over.
    pub(crate) fn finish(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.rest.len()))
        }
    }
}

fn utf8(raw: &[u8], what: &'static str) -> Result<String> {
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|_| WireError::Invalid(what))
}

/// Encoded size of a `string`.
pub(crate) fn string_len(value: &str) -> usize {
    1 + value.len()
}

/// Encoded size of a `longstr`.
pub(crate) fn longstr_len(value: &[u8]) -> usize {
    4 + value.len()
}

/// Encoded size of a `strings` list.
pub(crate) fn strings_len(values: &[String]) -> usize {
    4 + values
        .iter()
        .map(|v| longstr_len(v.as_bytes()))
        .sum::<usize>()
}

/// Encoded size of a `hash`.
pub(crate) fn hash_len(entries: &[(String, String)]) -> usize {
    4 + entries
        .iter()
        .map(|(k, v)| string_len(k) + longstr_len(v.as_bytes()))
        .sum::<usize>()
}

/// Checks that a value fits a `string` (at most 255 bytes).
pub(crate) fn check_string(value: &str, what: &'static str) -> Result<()> {
    if value.len() > usize::from(u8::MAX) {
        return Err(WireError::Unencodable(what));
    }
    Ok(())
}

/// Checks that a value fits a `longstr` or a count (at most 2^32 - 1).
pub(crate) fn check_u32(len: usize, what: &'static str) -> Result<()> {
    if u32::try_from(len).is_err() {
        return Err(WireError::Unencodable(what));
    }
    Ok(())
}

/// Checks every entry of a `strings` list.
pub(crate) fn check_strings(values: &[String], what: &'static str) -> Result<()> {
    check_u32(values.len(), what)?;
    values.iter().try_for_each(|v| check_u32(v.len(), what))
}

/// Checks every entry of a `hash`.
pub(crate) fn check_hash(entries: &[(String, String)], what: &'static str) -> Result<()> {
    check_u32(entries.len(), what)?;
    entries.iter().try_for_each(|(k, v)| {
        check_string(k, what)?;
        check_u32(v.len(), what)
    })
}

// The writers below assume the value was checked with the matching `check_*` function.

/// Appends a checked `string`.
pub(crate) fn put_string(dst: &mut BytesMut, value: &str) {
    dst.put_u8(value.len() as u8);
    dst.put_slice(value.as_bytes());
}

/// Appends a checked `longstr`.
pub(crate) fn put_longstr(dst: &mut BytesMut, value: &[u8]) {
    dst.put_u32(value.len() as u32);
    dst.put_slice(value);
}

/// Appends a checked `strings` list.
pub(crate) fn put_strings(dst: &mut BytesMut, values: &[String]) {
    dst.put_u32(values.len() as u32);
    for v in values {
        put_longstr(dst, v.as_bytes());
    }
}

/// Appends a checked `hash`.
pub(crate) fn put_hash(dst: &mut BytesMut, entries: &[(String, String)]) {
    dst.put_u32(entries.len() as u32);
    for (k, v) in entries {
        put_string(dst, k);
        put_longstr(dst, v.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_beyond_the_input_are_refused_before_allocating() {
        // 2^32-1 groups announced, 4 bytes present.
        let input = Bytes::from_static(b"\xff\xff\xff\xff\x00\x00\x00\x00");
        let mut r = Reader::new(&input, 1 << 20, "test").unwrap();
        assert!(matches!(
            r.strings("groups"),
            Err(WireError::TooLong {
                what: "groups",
                len: 0xffff_ffff,
                limit: 1
            })
        ));
        let input = Bytes::from_static(b"\x00\x00\x00\x02\x00\x00\x00\x00\x00");
        let mut r = Reader::new(&input, 1 << 20, "test").unwrap();
        assert!(matches!(r.hash("headers"), Err(WireError::TooLong { .. })));
    }

    #[test]
    fn fields_round_trip() {
        let mut buf = BytesMut::new();
        put_string(&mut buf, "name");
        put_longstr(&mut buf, b"long");
        put_strings(&mut buf, &["a".into(), String::new()]);
        put_hash(&mut buf, &[("k".into(), "v".into())]);
        let expected_len = string_len("name")
            + longstr_len(b"long")
            + strings_len(&["a".into(), String::new()])
            + hash_len(&[("k".into(), "v".into())]);
        assert_eq!(buf.len(), expected_len);
        let input = buf.freeze();
        let mut r = Reader::new(&input, 1024, "test").unwrap();
        assert_eq!(r.string("s").unwrap(), "name");
        assert_eq!(&r.long_bytes("l").unwrap()[..], b"long");
        assert_eq!(
            r.strings("ss").unwrap(),
            vec!["a".to_owned(), String::new()]
        );
        assert_eq!(r.hash("h").unwrap(), vec![("k".to_owned(), "v".to_owned())]);
        r.finish().unwrap();
    }

    #[test]
    fn truncation_and_utf8_are_typed() {
        let input = Bytes::from_static(b"\x05abc");
        let mut r = Reader::new(&input, 1024, "test").unwrap();
        assert_eq!(r.string("name"), Err(WireError::Truncated("name")));
        let input = Bytes::from_static(b"\x02\xff\xfe");
        let mut r = Reader::new(&input, 1024, "test").unwrap();
        assert_eq!(r.string("name"), Err(WireError::Invalid("name")));
        let input = Bytes::from_static(b"\x00x");
        let mut r = Reader::new(&input, 1024, "test").unwrap();
        assert_eq!(r.string("name").unwrap(), "");
        assert_eq!(r.finish(), Err(WireError::Trailing(1)));
        assert!(matches!(
            Reader::new(&input, 1, "test"),
            Err(WireError::TooLong { .. })
        ));
    }
}
