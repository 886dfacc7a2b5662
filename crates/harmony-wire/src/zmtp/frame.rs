//! ZMTP frames: `flags(1) size(1 | 8, big-endian) body`, as a streaming `tokio_util` codec.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use nom::number::streaming::{be_u64, be_u8};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::WireError;

/// More frames of the same message follow.
pub const FLAG_MORE: u8 = 0x01;
/// The size field is 8 bytes.
pub const FLAG_LONG: u8 = 0x02;
/// The frame is a command.
pub const FLAG_COMMAND: u8 = 0x04;
const RESERVED: u8 = !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND);

/// One ZMTP frame. `body` is a slice of the read buffer (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// More frames of this message follow (never set on commands).
    pub more: bool,
    /// This frame is a command, not message data.
    pub command: bool,
    /// The frame body.
    pub body: Bytes,
}

impl Frame {
    /// A message frame.
    pub fn message(body: impl Into<Bytes>, more: bool) -> Self {
        Self {
            more,
            command: false,
            body: body.into(),
        }
    }

    /// A command frame (its body is `name-len name data`).
    pub fn command(body: impl Into<Bytes>) -> Self {
        Self {
            more: false,
            command: true,
            body: body.into(),
        }
    }

    /// Size of the encoded frame header for a body of `len` bytes.
    pub fn header_len(len: usize) -> usize {
        if len > 255 {
            9
        } else {
            2
        }
    }

    /// Appends the frame header for a body of `len` bytes: short size when it fits, as libzmq does.
    pub fn encode_header(more: bool, command: bool, len: usize, dst: &mut impl BufMut) {
        let mut flags = 0;
        if more {
            flags |= FLAG_MORE;
        }
        if command {
            flags |= FLAG_COMMAND;
        }
        if len > 255 {
            dst.put_u8(flags | FLAG_LONG);
            dst.put_u64(len as u64);
        } else {
            dst.put_u8(flags);
            dst.put_u8(len as u8);
        }
    }

    /// Appends header and body.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(Self::header_len(self.body.len()) + self.body.len());
        Self::encode_header(self.more, self.command, self.body.len(), dst);
        dst.put_slice(&self.body);
    }
}

/// Parses a frame header: `Ok(None)` if more bytes are needed, else (flags, header length, body length).
fn parse_header(input: &[u8]) -> Result<Option<(u8, usize, u64)>, WireError> {
    type E<'a> = nom::error::Error<&'a [u8]>;
    let Ok((rest, flags)) = be_u8::<_, E<'_>>(input) else {
        return Ok(None);
    };
    if flags & RESERVED != 0 || (flags & FLAG_COMMAND != 0 && flags & FLAG_MORE != 0) {
        return Err(WireError::BadFlags(flags));
    }
    let parsed = if flags & FLAG_LONG != 0 {
        be_u64::<_, E<'_>>(rest).map(|(_, n)| (9, n))
    } else {
        be_u8::<_, E<'_>>(rest).map(|(_, n)| (2, u64::from(n)))
    };
    Ok(parsed.ok().map(|(header, len)| (flags, header, len)))
}

/// Error of the streaming frame codec: bad bytes, or the I/O underneath failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer sent bytes that are not a valid frame.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Reading or writing the stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Cuts a byte stream into frames and writes frames back. Frames larger than the configured
/// maximum are refused as soon as their header is read, before any buffering.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame: u64,
}

impl FrameCodec {
    /// A codec that refuses frames with a body over `max_frame` bytes.
    pub fn new(max_frame: u64) -> Self {
        Self { max_frame }
    }

    /// The largest body accepted.
    pub fn max_frame(&self) -> u64 {
        self.max_frame
    }
}

impl Default for FrameCodec {
    /// 64 MiB, a generous but finite default.
    fn default() -> Self {
        Self::new(64 << 20)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        Ok(self.decode_frame(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode_frame(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(WireError::Truncated("frame").into()),
        }
    }
}

impl FrameCodec {
    /// Takes one whole frame off the front of `src`; `Ok(None)` if more bytes are needed.
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some((flags, header, len)) = parse_header(src)? else {
            return Ok(None);
        };
        if len > self.max_frame {
            return Err(WireError::TooLong {
                what: "frame",
                len,
                limit: self.max_frame,
            });
        }
        let len = len as usize; // bounded by max_frame, which the caller chose to fit in memory
        if src.len() < header + len {
            src.reserve(header + len - src.len());
            return Ok(None);
        }
        src.advance(header);
        let body = src.split_to(len).freeze();
        Ok(Some(Frame {
            more: flags & FLAG_MORE != 0,
            command: flags & FLAG_COMMAND != 0,
            body,
        }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode(&frame, dst)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        if frame.body.len() as u64 > self.max_frame {
            return Err(WireError::TooLong {
                what: "frame",
                len: frame.body.len() as u64,
                limit: self.max_frame,
            }
            .into());
        }
        frame.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut FrameCodec, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = codec.decode_eof(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn short_and_long_frames() {
        let mut codec = FrameCodec::default();
        let big = vec![7u8; 300];
        let mut buf = BytesMut::new();
        codec
            .encode(Frame::message(&b"ab"[..], true), &mut buf)
            .unwrap();
        codec
            .encode(Frame::message(big.clone(), false), &mut buf)
            .unwrap();
        assert_eq!(&buf[..4], &[0x01, 0x02, b'a', b'b']);
        assert_eq!(&buf[4..13], &[0x02, 0, 0, 0, 0, 0, 0, 0x01, 0x2C]);
        let frames = decode_all(&mut codec, &buf).unwrap();
        assert_eq!(
            frames,
            vec![Frame::message(&b"ab"[..], true), Frame::message(big, false)]
        );
    }

    #[test]
    fn long_form_accepted_for_small_sizes() {
        let mut codec = FrameCodec::default();
        let bytes = [0x06, 0, 0, 0, 0, 0, 0, 0, 3, 2, b'h', b'i'];
        let frames = decode_all(&mut codec, &bytes).unwrap();
        assert_eq!(frames, vec![Frame::command(&b"\x02hi"[..])]);
    }

    #[test]
    fn needs_more_bytes_at_every_cut() {
        let mut codec = FrameCodec::default();
        let mut whole = BytesMut::new();
        Frame::message(vec![1u8; 400], false).encode(&mut whole);
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(codec.decode_frame(&mut part).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn refuses_oversized_and_bad_flags() {
        let mut codec = FrameCodec::new(100);
        let mut huge =
            BytesMut::from(&[0x02u8, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        assert!(matches!(
            codec.decode_frame(&mut huge),
            Err(WireError::TooLong { .. })
        ));
        assert!(
            huge.capacity() < 1 << 20,
            "must not reserve the declared size"
        );
        for flags in [0x08u8, 0x80, 0x05, 0x07] {
            let mut b = BytesMut::from(&[flags, 0][..]);
            assert_eq!(codec.decode_frame(&mut b), Err(WireError::BadFlags(flags)));
        }
        let mut trunc = BytesMut::from(&[0x00u8, 5, 1][..]);
        assert!(matches!(
            codec.decode_eof(&mut trunc),
            Err(FrameError::Wire(WireError::Truncated(_)))
        ));
    }
}
