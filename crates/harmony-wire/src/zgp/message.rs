//! The five ZGP messages (HELLO, PUBLISH, PING, PONG, INVALID) and their single-frame codec.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Result, WireError};
use crate::primitives::{self as p, Reader};

/// The two signature bytes of every ZGP message (`0xAAA0 | 0`).
pub const ZGP_SIGNATURE: [u8; 2] = [0xAA, 0xA0];
/// The only protocol version, carried by every message.
pub const ZGP_VERSION: u8 = 1;

/// One ZGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ZgpMessage {
    /// id 1, client -> server: open the session; the server answers with all its tuples.
    Hello,
    /// id 2, either way: a new or changed tuple.
    Publish {
        /// The tuple's key, globally unique (Zyre: the node's UUID string); at most 255 bytes.
        key: String,
        /// The tuple's value (Zyre: the inbox endpoint, `|` and a Z85 key with CURVE).
        value: String,
        /// Time to live in milliseconds; 0 = forever (what czmq sends).
        ttl: u32,
    },
    /// id 3, client -> server: liveness.
    Ping,
    /// id 4, server -> client: answer to PING.
    Pong,
    /// id 5, server -> client: the command was not valid in this state (say HELLO again).
    Invalid,
}

/// Signature, id and version.
const HEADER_LEN: usize = 2 + 1 + 1;

impl ZgpMessage {
    /// The message id on the wire.
    pub fn id(&self) -> u8 {
        match self {
            Self::Hello => 1,
            Self::Publish { .. } => 2,
            Self::Ping => 3,
            Self::Pong => 4,
            Self::Invalid => 5,
        }
    }

    /// The message name as the spec spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello => "HELLO",
            Self::Publish { .. } => "PUBLISH",
            Self::Ping => "PING",
            Self::Pong => "PONG",
            Self::Invalid => "INVALID",
        }
    }

    /// Decodes one frame of at most `limit` bytes.
    pub fn decode(frame: &Bytes, limit: usize) -> Result<Self> {
        let mut r = Reader::new(frame, limit, "ZGP message")?;
        if r.array::<2>("ZGP signature")? != ZGP_SIGNATURE {
            return Err(WireError::BadSignature("ZGP message"));
        }
        let id = r.u8("ZGP message id")?;
        if !(1..=5).contains(&id) {
            return Err(WireError::UnknownId { what: "ZGP", id });
        }
        let version = r.u8("ZGP version")?;
        if version != ZGP_VERSION {
            return Err(WireError::BadVersion {
                what: "ZGP",
                version: version.into(),
            });
        }
        let msg = match id {
            1 => Self::Hello,
            2 => Self::Publish {
                key: r.string("PUBLISH key")?,
                value: r.longstr("PUBLISH value")?,
                ttl: r.u32("PUBLISH ttl")?,
            },
            3 => Self::Ping,
            4 => Self::Pong,
            _ => Self::Invalid,
        };
        r.finish()?;
        Ok(msg)
    }

    /// Size of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Self::Publish { key, value, .. } => {
                    p::string_len(key) + p::longstr_len(value.as_bytes()) + 4
                }
                Self::Hello | Self::Ping | Self::Pong | Self::Invalid => 0,
            }
    }

    /// Appends the encoded frame. Fails, leaving `dst` unchanged, when a key is over 255 bytes
    /// or a value over 2^32 - 1.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<()> {
        if let Self::Publish { key, value, .. } = self {
            p::check_string(key, "PUBLISH key")?;
            p::check_u32(value.len(), "PUBLISH value")?;
        }
        dst.reserve(self.encoded_len());
        dst.put_slice(&ZGP_SIGNATURE);
        dst.put_u8(self.id());
        dst.put_u8(ZGP_VERSION);
        if let Self::Publish { key, value, ttl } = self {
            p::put_string(dst, key);
            p::put_longstr(dst, value.as_bytes());
            dst.put_u32(*ttl);
        }
        Ok(())
    }

    /// The encoded frame.
    pub fn to_bytes(&self) -> Result<Bytes> {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_layout() {
        let msg = ZgpMessage::Publish {
            key: "K".into(),
            value: "tcp://a:1".into(),
            ttl: 0x0102_0304,
        };
        let bytes = msg.to_bytes().expect("encodable");
        assert_eq!(
            &bytes[..],
            b"\xAA\xA0\x02\x01\x01K\x00\x00\x00\x09tcp://a:1\x01\x02\x03\x04"
        );
        assert_eq!(msg.encoded_len(), bytes.len());
        assert_eq!(ZgpMessage::decode(&bytes, 1024), Ok(msg));
    }

    #[test]
    fn refuses_bad_input() {
        let bad = |raw: &'static [u8]| ZgpMessage::decode(&Bytes::from_static(raw), 1024);
        assert_eq!(
            bad(b"\xAA\xA1\x01\x01"),
            Err(WireError::BadSignature("ZGP message"))
        );
        assert!(matches!(
            bad(b"\xAA\xA0\x06\x01"),
            Err(WireError::UnknownId { id: 6, .. })
        ));
        assert!(matches!(
            bad(b"\xAA\xA0\x01\x02"),
            Err(WireError::BadVersion { version: 2, .. })
        ));
        assert_eq!(bad(b"\xAA\xA0\x03\x01\x00"), Err(WireError::Trailing(1)));
        assert!(matches!(
            bad(b"\xAA\xA0\x02\x01\x01K\xFF\xFF\xFF\xFF"),
            Err(WireError::Truncated(_))
        ));
        let long_key = ZgpMessage::Publish {
            key: "k".repeat(256),
            value: String::new(),
            ttl: 0,
        };
        assert!(long_key.to_bytes().is_err());
    }
}
