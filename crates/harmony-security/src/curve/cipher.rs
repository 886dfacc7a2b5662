//! CURVE traffic: every frame travels as a MESSAGE command holding `Box[flags + body]`.

use std::fmt;

use bytes::{Buf, BufMut, BytesMut};
use harmony_wire::zmtp::Frame;

use super::nacl::{BoxKey, MessageKey};
use super::{be_u64, prefix, MAC_LEN, MESSAGE_MIN_LEN};
use crate::error::{Result, SecurityError};
use crate::mechanism::Cipher;

/// `name-len name` of the MESSAGE command.
const MESSAGE: &[u8; 8] = b"\x07MESSAGE";
/// Flags byte inside the box: more frames follow.
const FLAG_MORE: u8 = 0x01;
/// Flags byte inside the box: the frame is a command (libzmq's extension of rfc/26).
const FLAG_COMMAND: u8 = 0x02;

/// Encrypts and decrypts traffic frames of one CURVE connection.
///
/// Outgoing MESSAGEs go in outer frames with flags 0, as libzmq sends them; incoming ones are
/// accepted with or without the outer COMMAND flag. Each side counts its short nonces from where
/// the handshake left them; a received nonce must be strictly greater than the last one accepted,
/// and only a box that opens moves it forward.
pub struct CurveCipher {
    keys: Option<Keys>,
    next_send: u64,
    last_recv: u64,
}

/// The boxes of each direction (their nonce prefixes differ).
struct Keys {
    send: MessageKey,
    recv: MessageKey,
}

impl CurveCipher {
    /// The cipher of a finished handshake.
    pub(crate) fn new(key: BoxKey, is_server: bool, next_send: u64, last_recv: u64) -> Self {
        let (send_prefix, recv_prefix) = if is_server {
            (prefix::MESSAGE_S, prefix::MESSAGE_C)
        } else {
            (prefix::MESSAGE_C, prefix::MESSAGE_S)
        };
        Self {
            keys: Some(Keys {
                send: MessageKey::new(&key, send_prefix),
                recv: MessageKey::new(&key, recv_prefix),
            }),
            next_send,
            last_recv,
        }
    }

    /// A cipher that refuses everything: what an unfinished handshake yields, so nothing ever
    /// passes in clear by mistake.
    pub(crate) fn broken() -> Self {
        Self {
            keys: None,
            next_send: u64::MAX,
            last_recv: u64::MAX,
        }
    }

    fn keys(&self) -> Result<&Keys> {
        self.keys
            .as_ref()
            .ok_or(SecurityError::Crypto("the CURVE handshake did not finish"))
    }
}

impl fmt::Debug for CurveCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurveCipher")
            .field("next_send", &self.next_send)
            .field("last_recv", &self.last_recv)
            .finish_non_exhaustive()
    }
}

/// Where the box starts in a MESSAGE command's body: after name, nonce and MAC.
const TEXT_AT: usize = MESSAGE.len() + 8 + MAC_LEN;

impl CurveCipher {
    /// Checks a MESSAGE command's name, length and nonce; returns the nonce and the MAC.
    fn check(&self, body: &[u8]) -> Result<(u64, [u8; MAC_LEN])> {
        self.keys()?;
        if !body.starts_with(MESSAGE) {
            return Err(SecurityError::Crypto("expected a CURVE MESSAGE"));
        }
        if body.len() < MESSAGE_MIN_LEN {
            return Err(SecurityError::Crypto("CURVE MESSAGE too short"));
        }
        let nonce = be_u64(&body[8..16]);
        if nonce <= self.last_recv {
            return Err(SecurityError::Crypto(
                "CURVE MESSAGE nonce replayed or reordered",
            ));
        }
        let mut tag = [0u8; MAC_LEN];
        tag.copy_from_slice(&body[16..TEXT_AT]);
        Ok((nonce, tag))
    }

    /// Opens the box `text` (flags + body) in place and yields the frame it carries.
    fn open(&mut self, nonce: u64, tag: &[u8; MAC_LEN], mut text: BytesMut) -> Result<Frame> {
        self.keys()?
            .recv
            .open(nonce, &mut text, tag)
            .map_err(|_| SecurityError::Crypto("CURVE MESSAGE box does not open"))?;
        let flags = text[0];
        let more = flags & FLAG_MORE != 0;
        let command = flags & FLAG_COMMAND != 0;
        if more && command {
            return Err(SecurityError::Crypto(
                "CURVE MESSAGE flags MORE and COMMAND together",
            ));
        }
        self.last_recv = nonce;
        text.advance(1);
        Ok(Frame {
            more,
            command,
            body: text.freeze(),
        })
    }
}

impl Cipher for CurveCipher {
    fn encrypt(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<()> {
        let nonce = self.next_send;
        if nonce == u64::MAX {
            return Err(SecurityError::Crypto("CURVE nonces exhausted"));
        }
        let key = &self.keys()?.send;
        let mut flags = 0;
        if frame.more {
            flags |= FLAG_MORE;
        }
        if frame.command {
            flags |= FLAG_COMMAND;
        }
        // Outer frame (flags 0, like libzmq) | "\x07MESSAGE" | nonce | MAC | Box[flags + body],
        // sealed in place in `dst`: no intermediate buffer.
        let len = MESSAGE.len() + 8 + MAC_LEN + 1 + frame.body.len();
        dst.reserve(Frame::header_len(len) + len);
        Frame::encode_header(false, false, len, dst);
        dst.put_slice(MESSAGE);
        dst.put_u64(nonce);
        let mac_at = dst.len();
        dst.put_bytes(0, MAC_LEN);
        let text_at = dst.len();
        dst.put_u8(flags);
        dst.put_slice(&frame.body);
        let tag = key.seal(nonce, &mut dst[text_at..]);
        dst[mac_at..text_at].copy_from_slice(&tag);
        self.next_send = nonce + 1;
        Ok(())
    }

    fn overhead(&self) -> usize {
        MESSAGE_MIN_LEN
    }

    fn decrypt(&mut self, frame: Frame) -> Result<Frame> {
        let (nonce, tag) = self.check(&frame.body)?;
        // Open in place when nobody else holds the frame's bytes; otherwise one copy.
        let text = match frame.body.try_into_mut() {
            Ok(mut whole) => {
                whole.advance(TEXT_AT);
                whole
            }
            Err(shared) => BytesMut::from(&shared[TEXT_AT..]),
        };
        self.open(nonce, &tag, text)
    }

    fn decrypt_owned(&mut self, _more: bool, _command: bool, mut body: BytesMut) -> Result<Frame> {
        let (nonce, tag) = self.check(&body)?;
        body.advance(TEXT_AT);
        self.open(nonce, &tag, body)
    }
}
