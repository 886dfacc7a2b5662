//! Connection metadata: `name-len(1) name value-len(4, big-endian) value`, repeated.
//! Names are emitted exactly as given and looked up case-insensitively.

use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{be_u32, be_u8};
use nom::IResult;

use crate::error::{Result, WireError};

/// Largest value length the encoding allows (2^31 - 1).
pub const MAX_VALUE_LEN: usize = i32::MAX as usize;

/// An ordered list of metadata properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    props: Vec<(String, Bytes)>,
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(b))
}

fn property(input: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (input, name_len) = be_u8(input)?;
    let (input, name) = take(name_len)(input)?;
    let (input, value_len) = be_u32(input)?;
    let (input, value) = take(value_len)(input)?;
    Ok((input, (name, value)))
}

impl Metadata {
    /// An empty property list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a property (or replaces one of the same name, compared case-insensitively),
    /// keeping the given spelling for the wire.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Bytes>) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        match self
            .props
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some(slot) => *slot = (name, value),
            None => self.props.push((name, value)),
        }
        self
    }

    /// Builder form of [`Metadata::insert`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.insert(name, value);
        self
    }

    /// The value of a property, name compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.props
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The properties in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.props.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.props.len()
    }

    /// Whether there are no properties.
    pub fn is_empty(&self) -> bool {
        self.props.is_empty()
    }

    /// Decodes a property list that fills all of `data` (at most `limit` bytes). Values are
    /// slices of `data`.
    pub fn decode(data: &Bytes, limit: usize) -> Result<Self> {
        if data.len() > limit {
            return Err(WireError::TooLong {
                what: "metadata",
                len: data.len() as u64,
                limit: limit as u64,
            });
        }
        let mut input: &[u8] = data;
        let mut props = Vec::new();
        while !input.is_empty() {
            let (rest, (name, value)) =
                property(input).map_err(|_| WireError::Truncated("metadata property"))?;
            if !valid_name(name) {
                return Err(WireError::Invalid("metadata property name"));
            }
            // valid_name checked ASCII.
            let name = String::from_utf8_lossy(name).into_owned();
            props.push((name, data.slice_ref(value)));
            input = rest;
        }
        Ok(Self { props })
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.props
            .iter()
            .map(|(n, v)| 1 + n.len() + 4 + v.len())
            .sum()
    }

    /// Appends the encoded properties. Fails for an invalid name or a value over 2^31 - 1 bytes.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<()> {
        for (name, value) in &self.props {
            if !valid_name(name.as_bytes()) {
                return Err(WireError::Invalid("metadata property name"));
            }
            if value.len() > MAX_VALUE_LEN {
                return Err(WireError::Unencodable("metadata value"));
            }
        }
        dst.reserve(self.encoded_len());
        for (name, value) in &self.props {
            dst.put_u8(name.len() as u8);
            dst.put_slice(name.as_bytes());
            dst.put_u32(value.len() as u32);
            dst.put_slice(value);
        }
        Ok(())
    }
}

impl<N: Into<String>, V: Into<Bytes>> FromIterator<(N, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut m = Self::new();
        for (n, v) in iter {
            m.insert(n, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_lookup_exact_case_emit() {
        let m = Metadata::new()
            .with("Socket-Type", "DEALER")
            .with("X-Thing", "1");
        assert_eq!(
            m.get("socket-type").unwrap(),
            &Bytes::from_static(b"DEALER")
        );
        let mut buf = BytesMut::new();
        m.encode(&mut buf).unwrap();
        assert_eq!(&buf[..12], b"\x0bSocket-Type");
        let back = Metadata::decode(&buf.freeze(), 1024).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn refuses_bad_input() {
        let over = Bytes::from_static(b"\x01A\x00\x00\x00\x09abc");
        assert!(Metadata::decode(&over, 100).is_err());
        let bad_name = Bytes::from_static(b"\x02A \x00\x00\x00\x00");
        assert_eq!(
            Metadata::decode(&bad_name, 100),
            Err(WireError::Invalid("metadata property name"))
        );
        let empty_name = Bytes::from_static(b"\x00\x00\x00\x00\x00");
        assert!(Metadata::decode(&empty_name, 100).is_err());
        let ok = Bytes::from_static(b"\x01A\x00\x00\x00\x00");
        assert!(matches!(
            Metadata::decode(&ok, 3),
            Err(WireError::TooLong { .. })
        ));
    }
}
