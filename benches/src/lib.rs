//! Shared inputs of Harmony's criterion benchmarks (`benches/*.rs`); run them with
//! `cargo xtask bench <family>`, which prints a summary table.
//!
//! Throughput convention: elements are messages, bytes are message *content* bytes (not
//! headers), so figures compare directly with libzmq's messages/s and bytes/s.

use bytes::{Bytes, BytesMut};
use harmony_wire::zmtp::{Frame, FrameCodec};

/// The content sizes every codec benchmark uses: a small message and a bulk one.
pub const SIZES: [(&str, usize); 2] = [("64B", 64), ("64KiB", 64 << 10)];

/// Messages per benchmark iteration for a content size (about 4 MiB of content, at most 1024).
pub fn batch(size: usize) -> usize {
    ((4 << 20) / size.max(1)).clamp(16, 1024)
}

/// Content of `size` bytes that is not all one value.
pub fn content(size: usize) -> Bytes {
    (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Encodes message frames (the last of each message without MORE) as one ZMTP byte stream.
pub fn encode_stream<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> BytesMut {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out
}

/// Size of one simulated socket read.
pub const READ_SIZE: usize = 64 << 10;

/// Feeds `stream` into a read buffer in [`READ_SIZE`] pieces, as a socket reader does (so the
/// copy into the buffer is counted), and hands every decoded frame to `on_frame`.
pub fn read_frames(codec: &mut FrameCodec, stream: &[u8], mut on_frame: impl FnMut(Frame)) {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    for piece in stream.chunks(READ_SIZE) {
        buf.extend_from_slice(piece);
        while let Some(frame) = codec
            .decode_frame(&mut buf)
            .expect("benchmark stream decodes")
        {
            on_frame(frame);
        }
    }
    assert!(buf.is_empty(), "benchmark stream ends on a frame boundary");
}

/// A frame codec that accepts every benchmark frame.
pub fn codec() -> FrameCodec {
    FrameCodec::new(1 << 20)
}
