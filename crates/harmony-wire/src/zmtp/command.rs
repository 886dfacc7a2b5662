//! ZMTP commands: `name-len(1) name data` in a command frame.

use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u8};
use nom::IResult;

use super::frame::Frame;
use super::metadata::Metadata;
use crate::error::{Result, WireError};

/// A command split into its name and data, nothing interpreted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCommand {
    /// The command name, e.g. `READY`.
    pub name: Bytes,
    /// Everything after the name.
    pub data: Bytes,
}

fn short_bytes(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (input, len) = be_u8(input)?;
    take(len)(input)
}

impl RawCommand {
    /// A command from its name and data.
    pub fn new(name: &'static str, data: impl Into<Bytes>) -> Self {
        Self {
            name: Bytes::from_static(name.as_bytes()),
            data: data.into(),
        }
    }

    /// Splits a command frame body. The name must be 1-255 ASCII letters.
    pub fn decode(body: &Bytes) -> Result<Self> {
        let (_, name) = short_bytes(body).map_err(|_| WireError::Truncated("command name"))?;
        if name.is_empty() || !name.iter().all(u8::is_ascii_alphabetic) {
            return Err(WireError::Invalid("command name"));
        }
        let data = body.slice(1 + name.len()..);
        Ok(Self {
            name: body.slice_ref(name),
            data,
        })
    }

    /// Whether the command has this name.
    pub fn is(&self, name: &str) -> bool {
        self.name == name.as_bytes()
    }

    /// Size of the encoded body.
    pub fn encoded_len(&self) -> usize {
        1 + self.name.len() + self.data.len()
    }

    /// Appends the command body (not the frame header).
    pub fn encode_body(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_u8(self.name.len() as u8);
        dst.put_slice(&self.name);
        dst.put_slice(&self.data);
    }

    /// Appends the whole command frame.
    pub fn encode_frame(&self, dst: &mut BytesMut) {
        let len = self.encoded_len();
        dst.reserve(Frame::header_len(len) + len);
        Frame::encode_header(false, true, len, dst);
        self.encode_body(dst);
    }
}

/// The PLAIN HELLO: user name and password, each 0-255 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainHello {
    /// User name.
    pub username: Bytes,
    /// Password.
    pub password: Bytes,
}

/// A typed command: the NULL and PLAIN handshakes and the traffic commands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// READY with metadata (NULL, PLAIN).
    Ready(Metadata),
    /// ERROR with a reason of 0-255 bytes.
    Error(Bytes),
    /// PING with a TTL in deciseconds and up to 16 bytes of context (ZMTP 3.1).
    Ping {
        /// Time to live in tenths of a second, 0 for none.
        ttl: u16,
        /// Context the peer echoes back in its PONG.
        context: Bytes,
    },
    /// PONG echoing a PING's context.
    Pong {
        /// The echoed context.
        context: Bytes,
    },
    /// SUBSCRIBE to a topic prefix (ZMTP 3.1).
    Subscribe(Bytes),
    /// CANCEL a subscription (ZMTP 3.1).
    Cancel(Bytes),
    /// PLAIN HELLO.
    Hello(PlainHello),
    /// PLAIN WELCOME.
    Welcome,
    /// PLAIN INITIATE with metadata.
    Initiate(Metadata),
    /// Any other command, passed through by name.
    Unknown(RawCommand),
}

/// Largest PING context, per rfc/37.
pub const MAX_PING_CONTEXT: usize = 16;

impl Command {
    /// Decodes a command frame body. `limit` bounds the metadata size.
    pub fn decode(body: &Bytes, limit: usize) -> Result<Self> {
        Self::from_raw(RawCommand::decode(body)?, limit)
    }

    /// Interprets a raw command by its name.
    pub fn from_raw(raw: RawCommand, limit: usize) -> Result<Self> {
        let data = &raw.data;
        Ok(match &raw.name[..] {
            b"READY" => Self::Ready(Metadata::decode(data, limit)?),
            b"INITIATE" => Self::Initiate(Metadata::decode(data, limit)?),
            b"WELCOME" => {
                expect_empty(data)?;
                Self::Welcome
            }
            b"ERROR" => {
                let (rest, reason) =
                    short_bytes(data).map_err(|_| WireError::Truncated("ERROR reason"))?;
                expect_empty(rest)?;
                Self::Error(data.slice_ref(reason))
            }
            b"PING" => {
                let (context, ttl) = be_u16::<_, nom::error::Error<_>>(&data[..])
                    .map_err(|_| WireError::Truncated("PING ttl"))?;
                if context.len() > MAX_PING_CONTEXT {
                    return Err(WireError::TooLong {
                        what: "PING context",
                        len: context.len() as u64,
                        limit: MAX_PING_CONTEXT as u64,
                    });
                }
                Self::Ping {
                    ttl,
                    context: data.slice_ref(context),
                }
            }
            b"PONG" => {
                if data.len() > MAX_PING_CONTEXT {
                    return Err(WireError::TooLong {
                        what: "PONG context",
                        len: data.len() as u64,
                        limit: MAX_PING_CONTEXT as u64,
                    });
                }
                Self::Pong {
                    context: data.clone(),
                }
            }
            b"SUBSCRIBE" => Self::Subscribe(data.clone()),
            b"CANCEL" => Self::Cancel(data.clone()),
            b"HELLO" => {
                let parsed: IResult<&[u8], (&[u8], &[u8])> = (|i| {
                    let (i, user) = short_bytes(i)?;
                    let (i, pass) = short_bytes(i)?;
                    Ok((i, (user, pass)))
                })(&data[..]);
                let (rest, (user, pass)) =
                    parsed.map_err(|_| WireError::Truncated("PLAIN HELLO"))?;
                expect_empty(rest)?;
                Self::Hello(PlainHello {
                    username: data.slice_ref(user),
                    password: data.slice_ref(pass),
                })
            }
            _ => Self::Unknown(raw),
        })
    }

    /// The command as name + data.
    pub fn to_raw(&self) -> Result<RawCommand> {
        let mut data = BytesMut::new();
        let name = match self {
            Self::Ready(meta) => {
                meta.encode(&mut data)?;
                "READY"
            }
            Self::Initiate(meta) => {
                meta.encode(&mut data)?;
                "INITIATE"
            }
            Self::Welcome => "WELCOME",
            Self::Error(reason) => {
                put_short(&mut data, reason, "ERROR reason")?;
                "ERROR"
            }
            Self::Ping { ttl, context } => {
                if context.len() > MAX_PING_CONTEXT {
                    return Err(WireError::Unencodable("PING context"));
                }
                data.put_u16(*ttl);
                data.put_slice(context);
                "PING"
            }
            Self::Pong { context } => {
                if context.len() > MAX_PING_CONTEXT {
                    return Err(WireError::Unencodable("PONG context"));
                }
                data.put_slice(context);
                "PONG"
            }
            Self::Subscribe(topic) => {
                data.put_slice(topic);
                "SUBSCRIBE"
            }
            Self::Cancel(topic) => {
                data.put_slice(topic);
                "CANCEL"
            }
            Self::Hello(hello) => {
                put_short(&mut data, &hello.username, "PLAIN user name")?;
                put_short(&mut data, &hello.password, "PLAIN password")?;
                "HELLO"
            }
            Self::Unknown(raw) => return Ok(raw.clone()),
        };
        Ok(RawCommand::new(name, data.freeze()))
    }

    /// Appends the whole command frame.
    pub fn encode_frame(&self, dst: &mut BytesMut) -> Result<()> {
        self.to_raw()?.encode_frame(dst);
        Ok(())
    }

    /// The command as a frame.
    pub fn to_frame(&self) -> Result<Frame> {
        let raw = self.to_raw()?;
        let mut body = BytesMut::with_capacity(raw.encoded_len());
        raw.encode_body(&mut body);
        Ok(Frame::command(body.freeze()))
    }
}

fn expect_empty(rest: &[u8]) -> Result<()> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(WireError::Trailing(rest.len()))
    }
}

fn put_short(dst: &mut BytesMut, value: &[u8], what: &'static str) -> Result<()> {
    let len = u8::try_from(value.len()).map_err(|_| WireError::Unencodable(what))?;
    dst.put_u8(len);
    dst.put_slice(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rfc/23 "Worked Example": the DEALER's and the ROUTER's READY, byte for byte.
    #[test]
    fn worked_example_ready_bytes() {
        let dealer = Command::Ready(
            Metadata::new()
                .with("Socket-Type", "DEALER")
                .with("Identity", ""),
        );
        let mut buf = BytesMut::new();
        dealer.encode_frame(&mut buf).unwrap();
        let mut expected = vec![0x04, 0x29, 0x05];
        expected.extend_from_slice(b"READY");
        expected.extend_from_slice(b"\x0bSocket-Type\x00\x00\x00\x06DEALER");
        expected.extend_from_slice(b"\x08Identity\x00\x00\x00\x00");
        assert_eq!(&buf[..], &expected[..]);

        let router = Command::Ready(Metadata::new().with("Socket-Type", "ROUTER"));
        let mut buf = BytesMut::new();
        router.encode_frame(&mut buf).unwrap();
        let mut expected = vec![0x04, 0x1C, 0x05];
        expected.extend_from_slice(b"READY\x0bSocket-Type\x00\x00\x00\x06ROUTER");
        assert_eq!(&buf[..], &expected[..]);
        let body = buf.freeze().slice(2..);
        assert_eq!(Command::decode(&body, 1 << 16).unwrap(), router);
    }

    #[test]
    fn round_trips_every_command() {
        let cmds = [
            Command::Error(Bytes::from_static(b"400")),
            Command::Ping {
                ttl: 300,
                context: Bytes::from_static(b"ctx"),
            },
            Command::Pong {
                context: Bytes::from_static(b"ctx"),
            },
            Command::Subscribe(Bytes::from_static(b"topic")),
            Command::Cancel(Bytes::new()),
            Command::Hello(PlainHello {
                username: "admin".into(),
                password: "secret".into(),
            }),
            Command::Welcome,
            Command::Initiate(Metadata::new().with("Socket-Type", "PUSH")),
            Command::Unknown(RawCommand::new("JOIN", &b"grp"[..])),
        ];
        for cmd in cmds {
            let frame = cmd.to_frame().unwrap();
            assert!(frame.command);
            assert_eq!(Command::decode(&frame.body, 1024).unwrap(), cmd);
        }
    }

    #[test]
    fn refuses_malformed_commands() {
        for body in [
            &b""[..],
            b"\x05REA",
            b"\x00",
            b"\x04PI1G",
            b"\x04PING\x00",
            b"\x05ERROR\x05ab",
            b"\x05HELLO\x01a",
            b"\x05HELLO\x01a\x01bX",
            b"\x07WELCOMEx",
        ] {
            assert!(
                Command::decode(&Bytes::copy_from_slice(body), 1024).is_err(),
                "{body:?}"
            );
        }
        let long_ctx = [&b"\x04PING\x00\x01"[..], &[0u8; 17]].concat();
        assert!(Command::decode(&Bytes::from(long_ctx), 1024).is_err());
    }
}
