//! ZRE/LOG: the log events a node publishes to the mesh's log collectors (rfc/20, the Guide's
//! "Distributed Logging and Monitoring"), extended compatibly with `tracing`'s fields.
//!
//! One ZMTP frame per event:
//!
//! ```text
//! AA A2 | id 1 | level(1) | event(1) | node(2) | peer(2) | time(8, ms) | data(string)      rfc/20
//!       | name(string) | target(string) | span(string) | fields(hash)
//!       | sequence(4) | dropped(8) | message(longstr)                                  extension
//! ```
//!
//! The level comes first so that a publisher filters by subscription prefix
//! ([`LogMessage::topic`]): a collector that wants INFO subscribes to the prefixes of ERROR,
//! WARNING and INFO, and the publisher's PUB socket never sends it a DEBUG event. An rfc/20
//! decoder reads up to `data` and ignores the rest; a message without the extension decodes
//! here with [`LogMessage::ext`] `None`. rfc/20's `data` is a short `string`: a longer text is
//! cut there (at a character boundary) and carried whole in the extension's `message`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Result, WireError};
use crate::primitives::{self as p, Reader};

/// The two signature bytes of every ZRE/LOG message (`0xAAA0 | 2`).
pub const ZRELOG_SIGNATURE: [u8; 2] = [0xAA, 0xA2];
/// The id of the one ZRE/LOG message, LOG.
pub const ZRELOG_LOG_ID: u8 = 1;
/// The HELLO header by which a collector advertises its endpoint (`tcp://ip:port`).
pub const ZRELOG_HEADER: &str = "X-ZRELOG";
/// The HELLO header by which a collector advertises the most verbose level it wants (1-5).
pub const ZRELOG_LEVEL_HEADER: &str = "X-ZRELOG-LEVEL";

/// How serious an event is; rfc/20 defines 1-3, Harmony adds DEBUG and TRACE after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// 1: something failed.
    Error = 1,
    /// 2: something looks wrong.
    Warning = 2,
    /// 3: what happens, normally.
    Info = 3,
    /// 4: details for the developer (extension).
    Debug = 4,
    /// 5: every step (extension).
    Trace = 5,
}

impl LogLevel {
    /// Every level, most serious first.
    pub const ALL: [Self; 5] = [
        Self::Error,
        Self::Warning,
        Self::Info,
        Self::Debug,
        Self::Trace,
    ];

    /// The level byte on the wire.
    pub fn to_u8(self) -> u8 {
        self as u8
    }

    /// The level of a wire byte, if it is one.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.get(usize::from(value).checked_sub(1)?).copied()
    }

    /// `ERROR`, `WARNING`, `INFO`, `DEBUG` or `TRACE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Warning => "WARNING",
            Self::Info => "INFO",
            Self::Debug => "DEBUG",
            Self::Trace => "TRACE",
        }
    }

    /// Parses a level name, case-insensitive (`warn` is accepted for WARNING).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "ERROR" => Some(Self::Error),
            "WARN" | "WARNING" => Some(Self::Warning),
            "INFO" => Some(Self::Info),
            "DEBUG" => Some(Self::Debug),
            "TRACE" => Some(Self::Trace),
            _ => None,
        }
    }
}

/// The rfc/20 event codes (`event` field); other values pass through untouched.
pub mod event {
    /// No ZRE event: an application log line (Harmony).
    pub const NONE: u8 = 0;
    /// A peer joined a group.
    pub const JOIN: u8 = 1;
    /// A peer left a group.
    pub const LEAVE: u8 = 2;
    /// A peer appeared.
    pub const ENTER: u8 = 3;
    /// A peer went away.
    pub const EXIT: u8 = 4;
    /// A message was sent.
    pub const SEND: u8 = 5;
    /// A message was received.
    pub const RECV: u8 = 6;

    /// The code of an event name (`"JOIN"`, `"enter"`, ...); [`NONE`] for any other.
    pub fn from_name(name: &str) -> u8 {
        match name.to_ascii_uppercase().as_str() {
            "JOIN" => JOIN,
            "LEAVE" => LEAVE,
            "ENTER" => ENTER,
            "EXIT" => EXIT,
            "SEND" | "SHOUT_SENT" | "WHISPER_SENT" => SEND,
            "RECV" | "SHOUT" | "WHISPER" => RECV,
            _ => NONE,
        }
    }
}

/// Harmony's extension of the rfc/20 LOG message: what `tracing` knows about the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogExtension {
    /// The publishing node's name.
    pub name: String,
    /// The `tracing` target (module path).
    pub target: String,
    /// The current span's name (empty outside a span).
    pub span: String,
    /// The event's key-values, in the order recorded.
    pub fields: Vec<(String, String)>,
    /// Counts messages of this level from this publisher: a gap means messages were lost.
    pub sequence: u32,
    /// Events the publisher dropped so far because its queue was full.
    pub dropped: u64,
    /// The whole text when it did not fit `data`; empty otherwise.
    pub message: String,
}

/// One ZRE/LOG LOG message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage {
    /// How serious.
    pub level: LogLevel,
    /// The rfc/20 event code ([`event`]).
    pub event: u8,
    /// The publisher: [`endpoint_hash`] of its inbox endpoint.
    pub node: u16,
    /// The peer the event is about ([`endpoint_hash`]), or 0.
    pub peer: u16,
    /// When, in milliseconds since the Unix epoch.
    pub time: u64,
    /// The text, at most 255 bytes (rfc/20 `string`).
    pub data: String,
    /// Harmony's fields; `None` for a plain rfc/20 message.
    pub ext: Option<LogExtension>,
}

/// rfc/20's node and peer ids: a 16-bit "modified Bernstein" hash of the endpoint
/// (`hash = 33 * hash ^ byte`, from 0).
pub fn endpoint_hash(endpoint: &str) -> u16 {
    endpoint
        .bytes()
        .fold(0u16, |h, c| h.wrapping_mul(33) ^ u16::from(c))
}

/// The longest prefix of `text` that fits in `max` bytes and ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl LogMessage {
    /// A message with `text` placed as the wire wants: in `data` when it fits, else cut there
    /// and whole in the extension (which is created if needed).
    pub fn new(
        level: LogLevel,
        node: u16,
        time: u64,
        text: &str,
        ext: Option<LogExtension>,
    ) -> Self {
        let data = cut(text, usize::from(u8::MAX)).to_owned();
        let ext = if data.len() < text.len() {
            let mut ext = ext.unwrap_or_default();
            ext.message = text.to_owned();
            Some(ext)
        } else {
            ext.map(|mut e| {
                e.message.clear();
                e
            })
        };
        Self {
            level,
            event: event::NONE,
            node,
            peer: 0,
            time,
            data,
            ext,
        }
    }

    /// The whole text: the extension's `message` when set, else `data`.
    pub fn text(&self) -> &str {
        match &self.ext {
            Some(ext) if !ext.message.is_empty() => &ext.message,
            _ => &self.data,
        }
    }

    /// The subscription prefix of messages of `level`: signature, id and level byte.
    pub fn topic(level: LogLevel) -> [u8; 4] {
        [
            ZRELOG_SIGNATURE[0],
            ZRELOG_SIGNATURE[1],
            ZRELOG_LOG_ID,
            level.to_u8(),
        ]
    }

    /// Decodes one frame of at most `limit` bytes.
    pub fn decode(frame: &Bytes, limit: usize) -> Result<Self> {
        let mut r = Reader::new(frame, limit, "ZRE/LOG message")?;
        if r.array::<2>("ZRE/LOG signature")? != ZRELOG_SIGNATURE {
            return Err(WireError::BadSignature("ZRE/LOG message"));
        }
        let id = r.u8("ZRE/LOG message id")?;
        if id != ZRELOG_LOG_ID {
            return Err(WireError::UnknownId {
                what: "ZRE/LOG",
                id,
            });
        }
        let level = LogLevel::from_u8(r.u8("LOG level")?).ok_or(WireError::Invalid("LOG level"))?;
        let event = r.u8("LOG event")?;
        let node = r.u16("LOG node")?;
        let peer = r.u16("LOG peer")?;
        let time = r.u64("LOG time")?;
        let data = r.string("LOG data")?;
        let ext = if r.remaining() == 0 {
            None
        } else {
            Some(LogExtension {
                name: r.string("LOG name")?,
                target: r.string("LOG target")?,
                span: r.string("LOG span")?,
                fields: r.hash("LOG fields")?,
                sequence: r.u32("LOG sequence")?,
                dropped: r.u64("LOG dropped")?,
                message: r.longstr("LOG message")?,
            })
        };
        r.finish()?;
        Ok(Self {
            level,
            event,
            node,
            peer,
            time,
            data,
            ext,
        })
    }

    /// Size of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        let base = 2 + 1 + 1 + 1 + 2 + 2 + 8 + p::string_len(&self.data);
        base + self.ext.as_ref().map_or(0, |e| {
            p::string_len(&e.name)
                + p::string_len(&e.target)
                + p::string_len(&e.span)
                + p::hash_len(&e.fields)
                + 4
                + 8
                + p::longstr_len(e.message.as_bytes())
        })
    }

    /// Appends the encoded frame; an error if a field is too long for the wire.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<()> {
        p::check_string(&self.data, "LOG data")?;
        if let Some(e) = &self.ext {
            p::check_string(&e.name, "LOG name")?;
            p::check_string(&e.target, "LOG target")?;
            p::check_string(&e.span, "LOG span")?;
            p::check_hash(&e.fields, "LOG fields")?;
            p::check_u32(e.message.len(), "LOG message")?;
        }
        dst.reserve(self.encoded_len());
        dst.put_slice(&ZRELOG_SIGNATURE);
        dst.put_u8(ZRELOG_LOG_ID);
        dst.put_u8(self.level.to_u8());
        dst.put_u8(self.event);
        dst.put_u16(self.node);
        dst.put_u16(self.peer);
        dst.put_u64(self.time);
        p::put_string(dst, &self.data);
        if let Some(e) = &self.ext {
            p::put_string(dst, &e.name);
            p::put_string(dst, &e.target);
            p::put_string(dst, &e.span);
            p::put_hash(dst, &e.fields);
            dst.put_u32(e.sequence);
            dst.put_u64(e.dropped);
            p::put_longstr(dst, e.message.as_bytes());
        }
        Ok(())
    }

    /// The encoded frame.
    pub fn to_bytes(&self) -> Result<Bytes> {
        let mut dst = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut dst)?;
        Ok(dst.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rfc20_message_without_extension_decodes() {
        let mut frame = vec![0xAA, 0xA2, 1, 2, event::ENTER, 0x12, 0x34, 0, 7];
        frame.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        frame.extend_from_slice(b"\x05hello");
        let msg = LogMessage::decode(&Bytes::from(frame.clone()), 1024).unwrap();
        assert_eq!(msg.level, LogLevel::Warning);
        assert_eq!(msg.event, event::ENTER);
        assert_eq!((msg.node, msg.peer), (0x1234, 7));
        assert_eq!(msg.time, 1_700_000_000_000);
        assert_eq!(msg.text(), "hello");
        assert_eq!(msg.ext, None);
        assert_eq!(msg.to_bytes().unwrap(), frame);
    }

    #[test]
    fn level_byte_is_the_fourth_and_the_topic_prefix() {
        let msg = LogMessage::new(LogLevel::Debug, 1, 2, "x", None);
        let bytes = msg.to_bytes().unwrap();
        assert_eq!(bytes[..4], LogMessage::topic(LogLevel::Debug));
        assert_eq!(bytes[3], 4);
    }

    #[test]
    fn long_text_is_cut_in_data_and_whole_in_the_extension() {
        let text = "é".repeat(200); // 400 bytes; 255 is inside a character
        let msg = LogMessage::new(LogLevel::Info, 1, 2, &text, None);
        assert_eq!(msg.data.len(), 254);
        assert_eq!(msg.text(), text);
        let back = LogMessage::decode(&msg.to_bytes().unwrap(), 4096).unwrap();
        assert_eq!(back, msg);
        assert_eq!(back.text(), text);
    }

    #[test]
    fn bad_level_signature_and_trailing_bytes_are_errors() {
        let good = LogMessage::new(LogLevel::Info, 1, 2, "x", Some(LogExtension::default()))
            .to_bytes()
            .unwrap();
        let mut bad = good.to_vec();
        bad[3] = 9;
        assert_eq!(
            LogMessage::decode(&Bytes::from(bad), 1024),
            Err(WireError::Invalid("LOG level"))
        );
        let mut bad = good.to_vec();
        bad[1] = 0xA1;
        assert!(matches!(
            LogMessage::decode(&Bytes::from(bad), 1024),
            Err(WireError::BadSignature(_))
        ));
        let mut bad = good.to_vec();
        bad.push(0);
        assert_eq!(
            LogMessage::decode(&Bytes::from(bad), 1024),
            Err(WireError::Trailing(1))
        );
    }

    #[test]
    fn endpoint_hash_is_bernstein_xor() {
        assert_eq!(endpoint_hash(""), 0);
        assert_eq!(endpoint_hash("a"), 97);
        assert_eq!(endpoint_hash("ab"), (97u16 * 33) ^ 98);
    }
}
