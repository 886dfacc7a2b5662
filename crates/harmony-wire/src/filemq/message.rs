//! The FILEMQ v2 commands (ids 1, 4-11, 128, 129) and their single-frame codec.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Result, WireError};
use crate::primitives::{self as p, Reader};

/// The two signature bytes of every FILEMQ message (`0xAAA0 | 3`).
pub const FILEMQ_SIGNATURE: [u8; 2] = [0xAA, 0xA3];
/// The protocol name OHAI carries.
pub const FILEMQ_PROTOCOL: &str = "FILEMQ";
/// The protocol version OHAI carries.
pub const FILEMQ_VERSION: u16 = 2;

/// What a CHEEZBURGER does to its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileOperation {
    /// 1: the chunk is part of a new or changed file.
    Create,
    /// 2: the file was deleted (no content).
    Delete,
}

impl FileOperation {
    /// The operation byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Create => 1,
            Self::Delete => 2,
        }
    }

    /// The operation for a wire byte, if it is one.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Create),
            2 => Some(Self::Delete),
            _ => None,
        }
    }
}

/// A file chunk sent by the server (CHEEZBURGER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cheezburger {
    /// Per-connection chunk counter (rfc/35's "file offset" comment is a copy-paste error).
    pub sequence: u64,
    /// Create/update or delete.
    pub operation: FileOperation,
    /// The file's name, relative to the subscribed path.
    pub filename: String,
    /// Byte offset of `chunk` in the file.
    pub offset: u64,
    /// Whether this is the file's last chunk (zeromq/filemq sends an empty chunk with eof).
    pub eof: bool,
    /// File properties (reserved), in wire order.
    pub headers: Vec<(String, String)>,
    /// The data, a slice of the received frame.
    pub chunk: Bytes,
}

impl Cheezburger {
    /// Size of everything before the content in the encoded frame (the content is the frame's
    /// tail), for a sender that reads the content straight into place.
    pub fn head_len(&self) -> usize {
        HEADER_LEN
            + 8
            + 1
            + p::longstr_len(self.filename.as_bytes())
            + 8
            + 1
            + p::hash_len(&self.headers)
            + 4
    }

    /// Appends the frame up to its content, declaring `chunk_len` bytes of content that the
    /// caller appends next (`self.chunk` is ignored). Fails, leaving `dst` unchanged, where
    /// [`FilemqMessage::encode`] would.
    pub fn encode_head(&self, chunk_len: usize, dst: &mut BytesMut) -> Result<()> {
        p::check_u32(self.filename.len(), "CHEEZBURGER filename")?;
        p::check_hash(&self.headers, "CHEEZBURGER headers")?;
        p::check_u32(chunk_len, "CHEEZBURGER chunk")?;
        dst.reserve(self.head_len());
        dst.put_slice(&FILEMQ_SIGNATURE);
        dst.put_u8(8);
        self.put_head(chunk_len, dst);
        Ok(())
    }

    /// The fields after the id, up to the content (checked).
    fn put_head(&self, chunk_len: usize, dst: &mut BytesMut) {
        dst.put_u64(self.sequence);
        dst.put_u8(self.operation.to_u8());
        p::put_longstr(dst, self.filename.as_bytes());
        dst.put_u64(self.offset);
        dst.put_u8(u8::from(self.eof));
        p::put_hash(dst, &self.headers);
        dst.put_u32(chunk_len as u32);
    }
}

/// One FILEMQ message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilemqMessage {
    /// id 1, client -> server: open the peering (protocol "FILEMQ", version 2, both implied).
    Ohai,
    /// id 4, server -> client: access granted.
    OhaiOk,
    /// id 5, client -> server: subscribe to a path prefix.
    Icanhaz {
        /// The path or path prefix, starting with `/`.
        path: String,
        /// Subscription options (e.g. `RESYNC=1`), in wire order.
        options: Vec<(String, String)>,
        /// Files the client already has: name -> SHA-1 hex digest, in wire order.
        cache: Vec<(String, String)>,
    },
    /// id 6, server -> client: subscription confirmed.
    IcanhazOk,
    /// id 7, client -> server: more credit.
    Nom {
        /// Credit in bytes of file content.
        credit: u64,
        /// Chunk sequence (unused by zeromq/filemq).
        sequence: u64,
    },
    /// id 8, server -> client: a file chunk.
    Cheezburger(Cheezburger),
    /// id 9: heartbeat.
    Hugz,
    /// id 10: heartbeat answer.
    HugzOk,
    /// id 11, client -> server: close the peering.
    Kthxbai,
    /// id 128, server -> client: access refused.
    Srsly {
        /// Printable explanation, at most 255 bytes.
        reason: String,
    },
    /// id 129, server -> client: invalid command or unsupported version.
    Rtfm {
        /// Printable explanation, at most 255 bytes.
        reason: String,
    },
}

/// Signature and id.
const HEADER_LEN: usize = 2 + 1;

impl FilemqMessage {
    /// The message id on the wire.
    pub fn id(&self) -> u8 {
        match self {
            Self::Ohai => 1,
            Self::OhaiOk => 4,
            Self::Icanhaz { .. } => 5,
            Self::IcanhazOk => 6,
            Self::Nom { .. } => 7,
            Self::Cheezburger(_) => 8,
            Self::Hugz => 9,
            Self::HugzOk => 10,
            Self::Kthxbai => 11,
            Self::Srsly { .. } => 128,
            Self::Rtfm { .. } => 129,
        }
    }

    /// The message name as the spec spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ohai => "OHAI",
            Self::OhaiOk => "OHAI-OK",
            Self::Icanhaz { .. } => "ICANHAZ",
            Self::IcanhazOk => "ICANHAZ-OK",
            Self::Nom { .. } => "NOM",
            Self::Cheezburger(_) => "CHEEZBURGER",
            Self::Hugz => "HUGZ",
            Self::HugzOk => "HUGZ-OK",
            Self::Kthxbai => "KTHXBAI",
            Self::Srsly { .. } => "SRSLY",
            Self::Rtfm { .. } => "RTFM",
        }
    }

    /// Decodes one frame of at most `limit` bytes. CHEEZBURGER's chunk is a slice of `frame`.
    pub fn decode(frame: &Bytes, limit: usize) -> Result<Self> {
        let mut r = Reader::new(frame, limit, "FILEMQ message")?;
        if r.array::<2>("FILEMQ signature")? != FILEMQ_SIGNATURE {
            return Err(WireError::BadSignature("FILEMQ message"));
        }
        let msg = match r.u8("FILEMQ message id")? {
            1 => {
                if r.string("OHAI protocol")? != FILEMQ_PROTOCOL {
                    return Err(WireError::Invalid("OHAI protocol"));
                }
                let version = r.u16("OHAI version")?;
                if version != FILEMQ_VERSION {
                    return Err(WireError::BadVersion {
                        what: "FILEMQ",
                        version,
                    });
                }
                Self::Ohai
            }
            4 => Self::OhaiOk,
            5 => Self::Icanhaz {
                path: r.longstr("ICANHAZ path")?,
                options: r.hash("ICANHAZ options")?,
                cache: r.hash("ICANHAZ cache")?,
            },
            6 => Self::IcanhazOk,
            7 => Self::Nom {
                credit: r.u64("NOM credit")?,
                sequence: r.u64("NOM sequence")?,
            },
            8 => {
                let sequence = r.u64("CHEEZBURGER sequence")?;
                let operation = FileOperation::from_u8(r.u8("CHEEZBURGER operation")?)
                    .ok_or(WireError::Invalid("CHEEZBURGER operation"))?;
                let filename = r.longstr("CHEEZBURGER filename")?;
                let offset = r.u64("CHEEZBURGER offset")?;
                let eof = match r.u8("CHEEZBURGER eof")? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Invalid("CHEEZBURGER eof")),
                };
                let headers = r.hash("CHEEZBURGER headers")?;
                let chunk = r.long_bytes("CHEEZBURGER chunk")?;
                Self::Cheezburger(Cheezburger {
                    sequence,
                    operation,
                    filename,
                    offset,
                    eof,
                    headers,
                    chunk,
                })
            }
            9 => Self::Hugz,
            10 => Self::HugzOk,
            11 => Self::Kthxbai,
            128 => Self::Srsly {
                reason: r.string("SRSLY reason")?,
            },
            129 => Self::Rtfm {
                reason: r.string("RTFM reason")?,
            },
            id => return Err(WireError::UnknownId { what: "FILEMQ", id }),
        };
        r.finish()?;
        Ok(msg)
    }

    /// Size of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Self::Ohai => p::string_len(FILEMQ_PROTOCOL) + 2,
                Self::Icanhaz {
                    path,
                    options,
                    cache,
                } => p::longstr_len(path.as_bytes()) + p::hash_len(options) + p::hash_len(cache),
                Self::Nom { .. } => 16,
                Self::Cheezburger(c) => {
                    8 + 1
                        + p::longstr_len(c.filename.as_bytes())
                        + 8
                        + 1
                        + p::hash_len(&c.headers)
                        + p::longstr_len(&c.chunk)
                }
                Self::Srsly { reason } | Self::Rtfm { reason } => p::string_len(reason),
                Self::OhaiOk | Self::IcanhazOk | Self::Hugz | Self::HugzOk | Self::Kthxbai => 0,
            }
    }

    fn check(&self) -> Result<()> {
        match self {
            Self::Icanhaz {
                path,
                options,
                cache,
            } => {
                p::check_u32(path.len(), "ICANHAZ path")?;
                p::check_hash(options, "ICANHAZ options")?;
                p::check_hash(cache, "ICANHAZ cache")
            }
            Self::Cheezburger(c) => {
                p::check_u32(c.filename.len(), "CHEEZBURGER filename")?;
                p::check_hash(&c.headers, "CHEEZBURGER headers")?;
                p::check_u32(c.chunk.len(), "CHEEZBURGER chunk")
            }
            Self::Srsly { reason } => p::check_string(reason, "SRSLY reason"),
            Self::Rtfm { reason } => p::check_string(reason, "RTFM reason"),
            _ => Ok(()),
        }
    }

    /// Appends the encoded frame. Fails, leaving `dst` unchanged, when a `string` field is
    /// over 255 bytes or a count, `longstr` or chunk over 2^32 - 1.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<()> {
        self.check()?;
        dst.reserve(self.encoded_len());
        dst.put_slice(&FILEMQ_SIGNATURE);
        dst.put_u8(self.id());
        match self {
            Self::Ohai => {
                p::put_string(dst, FILEMQ_PROTOCOL);
                dst.put_u16(FILEMQ_VERSION);
            }
            Self::Icanhaz {
                path,
                options,
                cache,
            } => {
                p::put_longstr(dst, path.as_bytes());
                p::put_hash(dst, options);
                p::put_hash(dst, cache);
            }
            Self::Nom { credit, sequence } => {
                dst.put_u64(*credit);
                dst.put_u64(*sequence);
            }
            Self::Cheezburger(c) => {
                c.put_head(c.chunk.len(), dst);
                dst.put_slice(&c.chunk);
            }
            Self::Srsly { reason } | Self::Rtfm { reason } => p::put_string(dst, reason),
            Self::OhaiOk | Self::IcanhazOk | Self::Hugz | Self::HugzOk | Self::Kthxbai => {}
        }
        Ok(())
    }

    /// The encoded frame.
    pub fn to_bytes(&self) -> Result<Bytes> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_messages() -> Vec<FilemqMessage> {
        vec![
            FilemqMessage::Ohai,
            FilemqMessage::OhaiOk,
            FilemqMessage::Icanhaz {
                path: "/photos".into(),
                options: vec![("RESYNC".into(), "1".into())],
                cache: vec![("a.jpg".into(), "da39a3ee".into())],
            },
            FilemqMessage::IcanhazOk,
            FilemqMessage::Nom {
                credit: 5_000_000,
                sequence: 0,
            },
            FilemqMessage::Cheezburger(Cheezburger {
                sequence: 3,
                operation: FileOperation::Create,
                filename: "a.jpg".into(),
                offset: 1_000_000,
                eof: false,
                headers: vec![],
                chunk: Bytes::from_static(b"\x00\x01\x02"),
            }),
            FilemqMessage::Hugz,
            FilemqMessage::HugzOk,
            FilemqMessage::Kthxbai,
            FilemqMessage::Srsly {
                reason: "no".into(),
            },
            FilemqMessage::Rtfm {
                reason: "bad".into(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for msg in all_messages() {
            let bytes = msg.to_bytes().unwrap();
            assert_eq!(bytes.len(), msg.encoded_len(), "{}", msg.name());
            assert_eq!(&bytes[..2], &FILEMQ_SIGNATURE);
            assert_eq!(bytes[2], msg.id());
            assert_eq!(FilemqMessage::decode(&bytes, 1024).unwrap(), msg);
        }
    }

    /// Layouts as zeromq/filemq's fmq_msg.c writes them.
    #[test]
    fn reference_layouts() {
        assert_eq!(
            &FilemqMessage::Ohai.to_bytes().unwrap()[..],
            b"\xaa\xa3\x01\x06FILEMQ\x00\x02"
        );
        let eof = FilemqMessage::Cheezburger(Cheezburger {
            sequence: 1,
            operation: FileOperation::Create,
            filename: "f".into(),
            offset: 2,
            eof: true,
            headers: vec![],
            chunk: Bytes::new(),
        });
        let mut expected = b"\xaa\xa3\x08".to_vec();
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(b"\x01\x00\x00\x00\x01f");
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(b"\x01\x00\x00\x00\x00\x00\x00\x00\x00");
        assert_eq!(&eof.to_bytes().unwrap()[..], &expected[..]);
        let icanhaz = FilemqMessage::Icanhaz {
            path: "/".into(),
            options: vec![],
            cache: vec![("k".into(), "v".into())],
        };
        assert_eq!(
            &icanhaz.to_bytes().unwrap()[..],
            b"\xaa\xa3\x05\x00\x00\x00\x01/\x00\x00\x00\x00\x00\x00\x00\x01\x01k\x00\x00\x00\x01v"
        );
    }

    #[test]
    fn head_then_content_is_the_frame() {
        let c = Cheezburger {
            sequence: 9,
            operation: FileOperation::Create,
            filename: "/a/b".into(),
            offset: 1 << 40,
            eof: true,
            headers: vec![("X-CRC32".into(), "0badcafe".into())],
            chunk: Bytes::from_static(b"content"),
        };
        let mut frame = BytesMut::new();
        c.encode_head(c.chunk.len(), &mut frame).unwrap();
        assert_eq!(frame.len(), c.head_len());
        frame.put_slice(&c.chunk);
        let whole = FilemqMessage::Cheezburger(c).to_bytes().unwrap();
        assert_eq!(frame.freeze(), whole);
    }

    #[test]
    fn chunk_is_a_slice_of_the_frame() {
        let msg = &all_messages()[5];
        let bytes = msg.to_bytes().unwrap();
        let FilemqMessage::Cheezburger(c) = FilemqMessage::decode(&bytes, 1024).unwrap() else {
            panic!("not a CHEEZBURGER");
        };
        let range = bytes.as_ptr_range();
        assert!(range.contains(&c.chunk.as_ptr()));
    }

    #[test]
    fn refuses_malformed_messages() {
        let check = |bytes: &[u8]| FilemqMessage::decode(&Bytes::copy_from_slice(bytes), 1024);
        assert_eq!(
            check(b"\xaa\xa1\x09"),
            Err(WireError::BadSignature("FILEMQ message"))
        );
        assert_eq!(
            check(b"\xaa\xa3\x02"),
            Err(WireError::UnknownId {
                what: "FILEMQ",
                id: 2
            })
        );
        assert_eq!(check(b"\xaa\xa3\x09\x00"), Err(WireError::Trailing(1)));
        assert_eq!(
            check(b"\xaa\xa3\x01\x06FILEMX\x00\x02"),
            Err(WireError::Invalid("OHAI protocol"))
        );
        assert!(matches!(
            check(b"\xaa\xa3\x01\x06FILEMQ\x00\x01"),
            Err(WireError::BadVersion { version: 1, .. })
        ));
        assert_eq!(
            check(b"\xaa\xa3\x07\x00"),
            Err(WireError::Truncated("NOM credit"))
        );
        // ICANHAZ with a path longer than the frame, then a huge options count.
        assert_eq!(
            check(b"\xaa\xa3\x05\xff\xff\xff\xff/"),
            Err(WireError::Truncated("ICANHAZ path"))
        );
        assert!(matches!(
            check(b"\xaa\xa3\x05\x00\x00\x00\x00\x10\x00\x00\x00\x00"),
            Err(WireError::TooLong { .. })
        ));
        let mut bad_op = all_messages()[5].to_bytes().unwrap().to_vec();
        bad_op[11] = 3;
        assert_eq!(
            check(&bad_op),
            Err(WireError::Invalid("CHEEZBURGER operation"))
        );
        let bytes = all_messages()[5].to_bytes().unwrap();
        assert!(matches!(
            FilemqMessage::decode(&bytes, 10),
            Err(WireError::TooLong { .. })
        ));
    }

    #[test]
    fn refuses_unencodable_reason() {
        let msg = FilemqMessage::Rtfm {
            reason: "x".repeat(256),
        };
        let mut buf = BytesMut::new();
        assert_eq!(
            msg.encode(&mut buf),
            Err(WireError::Unencodable("RTFM reason"))
        );
        assert!(buf.is_empty());
    }
}
