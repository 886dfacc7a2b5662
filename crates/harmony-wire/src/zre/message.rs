//! ZRE messages (ids 1-10, and Harmony's 32-33) as Zyre puts them on the wire: `AA A1 id version=2 sequence[2]
//! fields...` in the first ZMTP frame, WHISPER/SHOUT content in the frames that follow.
//!
//! Field encodings: `string` = 1-byte length + bytes, `longstr` = 4-byte length + bytes,
//! `strings` = 4-byte count of longstr, `hash` = 4-byte count of (string key, longstr value).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Result, WireError};
use crate::primitives::{self as p, Reader};

/// The two signature bytes of every ZRE message (`0xAAA0 | 1`).
pub const ZRE_SIGNATURE: [u8; 2] = [0xAA, 0xA1];
/// The message version Zyre and pyre send and accept.
pub const ZRE_VERSION: u8 = 2;

/// One ZRE message: its per-connection sequence number and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZreMessage {
    /// 16-bit sequence, 1 for HELLO, +1 (wrapping) for every following message.
    pub sequence: u16,
    /// What the message says.
    pub body: ZreBody,
}

/// The HELLO a node sends first on every new connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// The sender's inbox endpoint, e.g. `tcp://10.0.0.1:49152`.
    pub endpoint: String,
    /// The groups the sender is in.
    pub groups: Vec<String>,
    /// The sender's group status counter (incremented on every join/leave).
    pub status: u8,
    /// The sender's name.
    pub name: String,
    /// The sender's headers, in wire order.
    pub headers: Vec<(String, String)>,
}

/// The body of a ZRE message, one variant per message id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ZreBody {
    /// id 1: greet a peer.
    Hello(Hello),
    /// id 2: a message to one peer; content = the following frames.
    Whisper {
        /// Content frames.
        content: Vec<Bytes>,
    },
    /// id 3: a message to a group; content = the following frames.
    Shout {
        /// Target group.
        group: String,
        /// Content frames.
        content: Vec<Bytes>,
    },
    /// id 4: the sender joined a group.
    Join {
        /// The group.
        group: String,
        /// The sender's group status after the change.
        status: u8,
    },
    /// id 5: the sender left a group.
    Leave {
        /// The group.
        group: String,
        /// The sender's group status after the change.
        status: u8,
    },
    /// id 6: are you alive?
    Ping,
    /// id 7: yes.
    PingOk,
    /// id 8: leader election wave (Zyre, not in rfc/36).
    Elect {
        /// The group.
        group: String,
        /// The challenger's UUID string.
        challenger_id: String,
    },
    /// id 9: leader announcement (Zyre, not in rfc/36).
    Leader {
        /// The group.
        group: String,
        /// The leader's UUID string.
        leader_id: String,
    },
    /// id 10: the sender is leaving (Zyre gossip mode).
    Goodbye,
    /// id 32 (Harmony only): the sender's current headers, all of them. Sent when they change
    /// (`request` 0) or in answer to [`ZreBody::PropsRequest`] (its `request`). Only sent to
    /// peers whose HELLO advertised `props` in `X-HARMONY`: Zyre and pyre never see it.
    Props {
        /// 0 for a change, else the request answered.
        request: u32,
        /// The sender's headers, in its order.
        headers: Vec<(String, String)>,
    },
    /// id 33 (Harmony only): asks for the receiver's current headers (answered by PROPS).
    PropsRequest {
        /// The requester's number for the request, never 0.
        request: u32,
    },
}

impl ZreBody {
    /// The message id on the wire.
    pub fn id(&self) -> u8 {
        match self {
            Self::Hello(_) => 1,
            Self::Whisper { .. } => 2,
            Self::Shout { .. } => 3,
            Self::Join { .. } => 4,
            Self::Leave { .. } => 5,
            Self::Ping => 6,
            Self::PingOk => 7,
            Self::Elect { .. } => 8,
            Self::Leader { .. } => 9,
            Self::Goodbye => 10,
            Self::Props { .. } => 32,
            Self::PropsRequest { .. } => 33,
        }
    }

    /// The message name as the specs spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello(_) => "HELLO",
            Self::Whisper { .. } => "WHISPER",
            Self::Shout { .. } => "SHOUT",
            Self::Join { .. } => "JOIN",
            Self::Leave { .. } => "LEAVE",
            Self::Ping => "PING",
            Self::PingOk => "PING-OK",
            Self::Elect { .. } => "ELECT",
            Self::Leader { .. } => "LEADER",
            Self::Goodbye => "GOODBYE",
            Self::Props { .. } => "PROPS",
            Self::PropsRequest { .. } => "PROPS-REQUEST",
        }
    }
}

/// Largest Zyre message id (GOODBYE).
const MAX_ID: u8 = 10;
/// Harmony's own message ids (PROPS, PROPS-REQUEST), sent only to Harmony peers.
const HARMONY_IDS: std::ops::RangeInclusive<u8> = 32..=33;
/// Signature, id, version and sequence.
const HEADER_LEN: usize = 2 + 1 + 1 + 2;

impl ZreBody {
    /// The content frames of a WHISPER or SHOUT, `None` for the other messages.
    pub fn content(&self) -> Option<&[Bytes]> {
        match self {
            Self::Whisper { content } | Self::Shout { content, .. } => Some(content),
            _ => None,
        }
    }

    fn decode(id: u8, r: &mut Reader<'_>, content: &[Bytes]) -> Result<Self> {
        Ok(match id {
            1 => Self::Hello(Hello {
                endpoint: r.string("HELLO endpoint")?,
                groups: r.strings("HELLO groups")?,
                status: r.u8("HELLO status")?,
                name: r.string("HELLO name")?,
                headers: r.hash("HELLO headers")?,
            }),
            2 => Self::Whisper {
                content: content.to_vec(),
            },
            3 => Self::Shout {
                group: r.string("SHOUT group")?,
                content: content.to_vec(),
            },
            4 => Self::Join {
                group: r.string("JOIN group")?,
                status: r.u8("JOIN status")?,
            },
            5 => Self::Leave {
                group: r.string("LEAVE group")?,
                status: r.u8("LEAVE status")?,
            },
            6 => Self::Ping,
            7 => Self::PingOk,
            8 => Self::Elect {
                group: r.string("ELECT group")?,
                challenger_id: r.string("ELECT challenger_id")?,
            },
            9 => Self::Leader {
                group: r.string("LEADER group")?,
                leader_id: r.string("LEADER leader_id")?,
            },
            10 => Self::Goodbye,
            32 => Self::Props {
                request: r.u32("PROPS request")?,
                headers: r.hash("PROPS headers")?,
            },
            33 => Self::PropsRequest {
                request: r.u32("PROPS-REQUEST request")?,
            },
            id => return Err(WireError::UnknownId { what: "ZRE", id }),
        })
    }

    /// Size of the fields after the sequence number.
    fn fields_len(&self) -> usize {
        match self {
            Self::Hello(h) => {
                p::string_len(&h.endpoint)
                    + p::strings_len(&h.groups)
                    + 1
                    + p::string_len(&h.name)
                    + p::hash_len(&h.headers)
            }
            Self::Shout { group, .. } => p::string_len(group),
            Self::Join { group, .. } | Self::Leave { group, .. } => p::string_len(group) + 1,
            Self::Elect {
                group,
                challenger_id: other,
            }
            | Self::Leader {
                group,
                leader_id: other,
            } => p::string_len(group) + p::string_len(other),
            Self::Props { headers, .. } => 4 + p::hash_len(headers),
            Self::PropsRequest { .. } => 4,
            Self::Whisper { .. } | Self::Ping | Self::PingOk | Self::Goodbye => 0,
        }
    }

    /// Checks that every field fits its wire encoding.
    fn check(&self) -> Result<()> {
        match self {
            Self::Hello(h) => {
                p::check_string(&h.endpoint, "HELLO endpoint")?;
                p::check_strings(&h.groups, "HELLO groups")?;
                p::check_string(&h.name, "HELLO name")?;
                p::check_hash(&h.headers, "HELLO headers")
            }
            Self::Shout { group, .. } => p::check_string(group, "SHOUT group"),
            Self::Join { group, .. } => p::check_string(group, "JOIN group"),
            Self::Leave { group, .. } => p::check_string(group, "LEAVE group"),
            Self::Elect {
                group,
                challenger_id,
            } => {
                p::check_string(group, "ELECT group")?;
                p::check_string(challenger_id, "ELECT challenger_id")
            }
            Self::Leader { group, leader_id } => {
                p::check_string(group, "LEADER group")?;
                p::check_string(leader_id, "LEADER leader_id")
            }
            Self::Props { headers, .. } => p::check_hash(headers, "PROPS headers"),
            Self::Whisper { .. }
            | Self::Ping
            | Self::PingOk
            | Self::Goodbye
            | Self::PropsRequest { .. } => Ok(()),
        }
    }

    fn encode_fields(&self, dst: &mut BytesMut) {
        match self {
            Self::Hello(h) => {
                p::put_string(dst, &h.endpoint);
                p::put_strings(dst, &h.groups);
                dst.put_u8(h.status);
                p::put_string(dst, &h.name);
                p::put_hash(dst, &h.headers);
            }
            Self::Shout { group, .. } => p::put_string(dst, group),
            Self::Join { group, status } | Self::Leave { group, status } => {
                p::put_string(dst, group);
                dst.put_u8(*status);
            }
            Self::Elect {
                group,
                challenger_id: other,
            }
            | Self::Leader {
                group,
                leader_id: other,
            } => {
                p::put_string(dst, group);
                p::put_string(dst, other);
            }
            Self::Props { request, headers } => {
                dst.put_u32(*request);
                p::put_hash(dst, headers);
            }
            Self::PropsRequest { request } => dst.put_u32(*request),
            Self::Whisper { .. } | Self::Ping | Self::PingOk | Self::Goodbye => {}
        }
    }
}

impl ZreMessage {
    /// A message with this sequence number and body.
    pub fn new(sequence: u16, body: ZreBody) -> Self {
        Self { sequence, body }
    }

    /// Decodes one ZMTP message (the ROUTER's identity frame already removed). The first frame
    /// may be at most `limit` bytes; WHISPER/SHOUT content is the remaining frames, shared, not
    /// copied (no frames gives an empty content). Other messages must be a single frame.
    pub fn decode(frames: &[Bytes], limit: usize) -> Result<Self> {
        let (first, rest) = frames
            .split_first()
            .ok_or(WireError::Truncated("ZRE message"))?;
        let mut r = Reader::new(first, limit, "ZRE message")?;
        if r.array::<2>("ZRE signature")? != ZRE_SIGNATURE {
            return Err(WireError::BadSignature("ZRE message"));
        }
        // Zyre checks the id before the version.
        let id = r.u8("ZRE message id")?;
        if !(1..=MAX_ID).contains(&id) && !HARMONY_IDS.contains(&id) {
            return Err(WireError::UnknownId { what: "ZRE", id });
        }
        let version = r.u8("ZRE version")?;
        if version != ZRE_VERSION {
            return Err(WireError::BadVersion {
                what: "ZRE message",
                version: u16::from(version),
            });
        }
        let sequence = r.u16("ZRE sequence")?;
        let body = ZreBody::decode(id, &mut r, rest)?;
        r.finish()?;
        if body.content().is_none() && !rest.is_empty() {
            return Err(WireError::Invalid(
                "frames after a single-frame ZRE message",
            ));
        }
        Ok(Self { sequence, body })
    }

    /// Size of the encoded first frame (the content frames come on top).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.fields_len()
    }

    /// Appends the first frame. Fails, leaving `dst` unchanged, when a `string` field is over
    /// 255 bytes or a count or `longstr` over 2^32 - 1.
    pub fn encode_first_frame(&self, dst: &mut BytesMut) -> Result<()> {
        self.body.check()?;
        dst.reserve(self.encoded_len());
        dst.put_slice(&ZRE_SIGNATURE);
        dst.put_u8(self.body.id());
        dst.put_u8(ZRE_VERSION);
        dst.put_u16(self.sequence);
        self.body.encode_fields(dst);
        Ok(())
    }

    /// Rewrites the sequence number of an encoded first frame (the same message going to
    /// several peers, each with its own number, is encoded once). Fails, leaving `first`
    /// unchanged, when it is shorter than a ZRE header.
    pub fn restamp(first: &mut [u8], sequence: u16) -> Result<()> {
        let at = first
            .get_mut(HEADER_LEN - 2..HEADER_LEN)
            .ok_or(WireError::Truncated("ZRE message"))?;
        at.copy_from_slice(&sequence.to_be_bytes());
        Ok(())
    }

    /// All frames of the message. WHISPER/SHOUT with no content get one empty content frame, as
    /// Zyre sends them.
    pub fn to_frames(&self) -> Result<Vec<Bytes>> {
        let mut frames = Vec::with_capacity(1 + self.body.content().map_or(0, |c| c.len().max(1)));
        self.encode_frames(&mut BytesMut::new(), &mut frames)?;
        Ok(frames)
    }

    /// Appends all frames to `frames`: the first is encoded into `buf` (empty; a sender reuses
    /// its spare capacity for many messages) and split off it, the content frames are shared.
    /// Fails, leaving both unchanged, as [`ZreMessage::encode_first_frame`] does.
    pub fn encode_frames(&self, buf: &mut BytesMut, frames: &mut impl Extend<Bytes>) -> Result<()> {
        self.encode_first_frame(buf)?;
        frames.extend([buf.split().freeze()]);
        if let Some(content) = self.body.content() {
            extend_with_content(frames, content.iter().cloned());
        }
        Ok(())
    }

    /// [`ZreMessage::encode_frames`] that moves the content frames out instead of cloning
    /// them (a sender done with the message). On error nothing is appended.
    pub fn into_frames(self, buf: &mut BytesMut, frames: &mut impl Extend<Bytes>) -> Result<()> {
        self.encode_first_frame(buf)?;
        frames.extend([buf.split().freeze()]);
        if let ZreBody::Whisper { content } | ZreBody::Shout { content, .. } = self.body {
            extend_with_content(frames, content);
        }
        Ok(())
    }
}

/// Appends the content frames of a WHISPER or SHOUT after its first frame, as the wire
/// carries them: no content is one empty frame (as Zyre sends it). For senders that encode
/// the first frame of a message built without its content (see
/// [`ZreMessage::encode_first_frame`]) and keep the content apart.
pub fn extend_with_content(
    frames: &mut impl Extend<Bytes>,
    content: impl IntoIterator<Item = Bytes>,
) {
    let mut content = content.into_iter().peekable();
    if content.peek().is_none() {
        frames.extend([Bytes::new()]);
    } else {
        frames.extend(content);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The HELLO pyre sent in the reference capture (zre-and-zyre.md section 1.3).
    #[test]
    fn pyre_hello_bytes() {
        let mut wire = hex("aaa1 01 02 0001 15");
        wire.extend_from_slice(b"tcp://10.78.0.1:42655");
        wire.extend_from_slice(&hex("00000001 00000001"));
        wire.extend_from_slice(b"G");
        wire.extend_from_slice(&hex("01 05"));
        wire.extend_from_slice(b"pyreA");
        wire.extend_from_slice(&hex("00000000"));
        let msg = ZreMessage::decode(&[Bytes::from(wire.clone())], 1024).unwrap();
        assert_eq!(
            msg,
            ZreMessage::new(
                1,
                ZreBody::Hello(Hello {
                    endpoint: "tcp://10.78.0.1:42655".into(),
                    groups: vec!["G".into()],
                    status: 1,
                    name: "pyreA".into(),
                    headers: vec![],
                })
            )
        );
        assert_eq!(msg.encoded_len(), wire.len());
        assert_eq!(msg.to_frames().unwrap(), vec![Bytes::from(wire)]);
    }

    /// A first frame encoded once and restamped is byte for byte the one encoded with that
    /// sequence number; a frame too short for a header is refused untouched.
    #[test]
    fn restamped_first_frame_equals_a_fresh_encoding() {
        let body = ZreBody::Shout {
            group: "FAN".into(),
            content: vec![Bytes::from_static(b"hi")],
        };
        let mut once = BytesMut::new();
        ZreMessage::new(1, body.clone())
            .encode_first_frame(&mut once)
            .unwrap();
        for sequence in [0, 2, 0x1234, u16::MAX] {
            let mut fresh = BytesMut::new();
            ZreMessage::new(sequence, body.clone())
                .encode_first_frame(&mut fresh)
                .unwrap();
            ZreMessage::restamp(&mut once, sequence).unwrap();
            assert_eq!(once, fresh, "sequence {sequence}");
        }
        let mut short = [0xAA, 0xA1, 3, 2, 0];
        assert!(ZreMessage::restamp(&mut short, 9).is_err());
        assert_eq!(short, [0xAA, 0xA1, 3, 2, 0]);
    }

    #[test]
    fn every_message_round_trips() {
        let bodies = [
            ZreBody::Hello(Hello {
                endpoint: "tcp://127.0.0.1:49152".into(),
                groups: vec!["A".into(), "Bé".into()],
                status: 7,
                name: "node".into(),
                headers: vec![("X-K".into(), "v".into()), ("Y".into(), String::new())],
            }),
            ZreBody::Whisper {
                content: vec![Bytes::from_static(b"hi"), Bytes::new()],
            },
            ZreBody::Shout {
                group: "G".into(),
                content: vec![Bytes::from_static(b"x")],
            },
            ZreBody::Join {
                group: "G".into(),
                status: 255,
            },
            ZreBody::Leave {
                group: String::new(),
                status: 0,
            },
            ZreBody::Ping,
            ZreBody::PingOk,
            ZreBody::Elect {
                group: "G".into(),
                challenger_id: "AB".into(),
            },
            ZreBody::Leader {
                group: "G".into(),
                leader_id: "CD".into(),
            },
            ZreBody::Goodbye,
            ZreBody::Props {
                request: 7,
                headers: vec![("X-HARMONY".into(), "elect,props".into())],
            },
            ZreBody::PropsRequest { request: u32::MAX },
        ];
        // One buffer for all first frames, as a sender encodes them.
        let mut shared = BytesMut::with_capacity(4096);
        for (i, body) in bodies.into_iter().enumerate() {
            let msg = ZreMessage::new(i as u16 * 1000, body);
            let frames = msg.to_frames().unwrap();
            assert_eq!(frames[0].len(), msg.encoded_len());
            assert_eq!(frames[0][2], msg.body.id());
            assert_eq!(ZreMessage::decode(&frames, 4096).unwrap(), msg);
            let mut cut = Vec::new();
            msg.encode_frames(&mut shared, &mut cut).unwrap();
            assert_eq!(cut, frames, "encoded into a shared buffer, message {i}");
            assert!(shared.is_empty());
            let mut moved = Vec::new();
            msg.into_frames(&mut shared, &mut moved).unwrap();
            assert_eq!(moved, frames, "content moved out, message {i}");
            assert!(shared.is_empty());
        }
    }

    #[test]
    fn empty_content_is_one_empty_frame() {
        let msg = ZreMessage::new(3, ZreBody::Whisper { content: vec![] });
        let frames = msg.to_frames().unwrap();
        assert_eq!(frames.len(), 2);
        assert!(frames[1].is_empty());
        // A WHISPER with no content frame at all decodes to empty content.
        let back = ZreMessage::decode(&frames[..1], 64).unwrap();
        assert_eq!(back, msg);
        let mut moved = Vec::new();
        back.into_frames(&mut BytesMut::new(), &mut moved).unwrap();
        assert_eq!(moved, frames);
    }

    #[test]
    fn refuses_malformed_messages() {
        let ping = ZreMessage::new(2, ZreBody::Ping).to_frames().unwrap();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = ping[0].to_vec();
            f(&mut v);
            ZreMessage::decode(&[Bytes::from(v)], 64)
        };
        assert_eq!(
            with(&|v| v[1] = 0xA3),
            Err(WireError::BadSignature("ZRE message"))
        );
        assert_eq!(
            with(&|v| v[2] = 11),
            Err(WireError::UnknownId {
                what: "ZRE",
                id: 11
            })
        );
        assert!(matches!(
            with(&|v| v[3] = 3),
            Err(WireError::BadVersion { version: 3, .. })
        ));
        assert_eq!(with(&|v| v.push(0)), Err(WireError::Trailing(1)));
        assert_eq!(
            with(&|v| v.truncate(5)),
            Err(WireError::Truncated("ZRE sequence"))
        );
        assert!(ZreMessage::decode(&[], 64).is_err());
        assert!(ZreMessage::decode(&[ping[0].clone(), Bytes::new()], 64).is_err());
        assert!(matches!(
            ZreMessage::decode(&ping, 3),
            Err(WireError::TooLong { .. })
        ));
        // A JOIN whose group is not UTF-8.
        let join = Bytes::from_static(b"\xaa\xa1\x04\x02\x00\x01\x01\xff\x01");
        assert_eq!(
            ZreMessage::decode(&[join], 64),
            Err(WireError::Invalid("JOIN group"))
        );
        // A HELLO announcing 2^32-1 groups in 20 bytes.
        let hello = Bytes::from_static(b"\xaa\xa1\x01\x02\x00\x01\x00\xff\xff\xff\xff\x00\x00");
        assert!(matches!(
            ZreMessage::decode(&[hello], 64),
            Err(WireError::TooLong { .. })
        ));
    }

    #[test]
    fn refuses_unencodable_fields() {
        let msg = ZreMessage::new(
            1,
            ZreBody::Join {
                group: "g".repeat(256),
                status: 1,
            },
        );
        let mut buf = BytesMut::new();
        assert_eq!(
            msg.encode_first_frame(&mut buf),
            Err(WireError::Unencodable("JOIN group"))
        );
        assert!(buf.is_empty());
        assert!(msg.to_frames().is_err());
    }
}
