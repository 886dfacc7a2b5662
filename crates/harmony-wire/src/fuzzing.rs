//! Decode -> encode -> decode checks shared by the fuzz targets and the corpus replay tests.
//! Each function panics only when a round trip disagrees with itself: a bug.

use bytes::{Bytes, BytesMut};

use crate::error::WireError;
use crate::zmtp::{Command, Frame, FrameCodec, Greeting, Metadata, RawCommand};
use crate::zre::Beacon;

/// Size limit the checks give to every decoder that takes one (frames, metadata).
pub const FUZZ_LIMIT: usize = 1 << 16;

/// ZMTP greeting: a decoded greeting encodes, and decodes back to itself.
pub fn zmtp_greeting(data: &[u8]) {
    let Ok(greeting) = Greeting::decode(data) else {
        return;
    };
    Greeting::check_signature(data).expect("decoded greeting has a valid signature");
    let bytes = greeting
        .encode()
        .expect("a decoded greeting must be encodable");
    let again = Greeting::decode(&bytes).expect("an encoded greeting must decode");
    assert_eq!(greeting, again, "greeting round trip");
}

/// How a run of the frame decoder over some bytes ended.
#[derive(Debug, PartialEq, Eq)]
enum FramesEnd {
    /// The decoder wanted more bytes; this many were left unconsumed.
    NeedMore(usize),
    /// The decoder refused the bytes.
    Error(WireError),
}

/// Decodes all of `data` at once.
fn decode_whole(data: &[u8]) -> (Vec<Frame>, FramesEnd) {
    let mut codec = FrameCodec::new(FUZZ_LIMIT as u64);
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    loop {
        match codec.decode_frame(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, FramesEnd::NeedMore(buf.len())),
            Err(e) => return (frames, FramesEnd::Error(e)),
        }
    }
}

/// Decodes `data` fed in chunks whose sizes (1-64 bytes) are derived from the data itself, the
/// way a socket delivers a stream in arbitrary reads.
fn decode_chunked(data: &[u8]) -> (Vec<Frame>, FramesEnd) {
    let mut codec = FrameCodec::new(FUZZ_LIMIT as u64);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut step = 0usize;
    while pos < data.len() {
        let seed = data[step % data.len()] as usize;
        let size = (seed ^ step.wrapping_mul(31)) % 64 + 1;
        step += 1;
        let end = (pos + size).min(data.len());
        buf.extend_from_slice(&data[pos..end]);
        pos = end;
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, FramesEnd::Error(e)),
            }
        }
    }
    (frames, FramesEnd::NeedMore(buf.len()))
}

/// ZMTP frames: the stream decoder gives the same frames whether the bytes come at once or in
/// pieces, and the decoded frames re-encode to a stream that decodes to the same frames.
pub fn zmtp_frames(data: &[u8]) {
    let (frames, end) = decode_whole(data);
    let (chunked, chunked_end) = decode_chunked(data);
    assert_eq!(frames, chunked, "frames depend on how the stream was cut");
    assert_eq!(end, chunked_end, "stream end depends on how it was cut");

    let mut codec = FrameCodec::new(FUZZ_LIMIT as u64);
    let mut encoded = BytesMut::new();
    for frame in &frames {
        tokio_util::codec::Encoder::encode(&mut codec, frame, &mut encoded)
            .expect("a decoded frame must be encodable");
    }
    let (again, again_end) = decode_whole(&encoded);
    assert_eq!(frames, again, "frame round trip");
    assert_eq!(
        again_end,
        FramesEnd::NeedMore(0),
        "re-encoded frames decode fully"
    );
}

/// ZMTP command body: a decoded command encodes, and decodes back to itself; the raw
/// name + data split gives back the very bytes it came from.
pub fn zmtp_command(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    if let Ok(raw) = RawCommand::decode(&body) {
        let mut out = BytesMut::new();
        raw.encode_body(&mut out);
        assert_eq!(&out[..], data, "raw command round trip");
        assert_eq!(raw.encoded_len(), data.len(), "raw command encoded_len");
    }
    let Ok(command) = Command::decode(&body, FUZZ_LIMIT) else {
        return;
    };
    let frame = command
        .to_frame()
        .expect("a decoded command must be encodable");
    assert!(
        frame.command && !frame.more,
        "commands encode as command frames"
    );
    let again = Command::decode(&frame.body, FUZZ_LIMIT).expect("an encoded command must decode");
    assert_eq!(command, again, "command round trip");

    let mut whole = BytesMut::new();
    command
        .encode_frame(&mut whole)
        .expect("a decoded command must be encodable");
    let mut expected = BytesMut::new();
    frame.encode(&mut expected);
    assert_eq!(whole, expected, "encode_frame and to_frame agree");
}

/// ZMTP metadata: a decoded property list encodes to the same bytes and decodes to itself.
pub fn zmtp_metadata(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let Ok(meta) = Metadata::decode(&bytes, FUZZ_LIMIT) else {
        return;
    };
    let mut out = BytesMut::new();
    meta.encode(&mut out)
        .expect("decoded metadata must be encodable");
    assert_eq!(meta.encoded_len(), out.len(), "metadata encoded_len");
    let again = Metadata::decode(&out.freeze(), FUZZ_LIMIT).expect("encoded metadata must decode");
    assert_eq!(meta, again, "metadata round trip");
    for (name, _) in meta.iter() {
        assert!(
            meta.get(name).is_some(),
            "property {name:?} found by its own name"
        );
    }
}

/// ZRE beacon: a decoded beacon encodes to exactly the datagram it came from.
pub fn zre_beacon(data: &[u8]) {
    let Ok(beacon) = Beacon::decode(data) else {
        return;
    };
    let mut out = BytesMut::new();
    beacon.encode(&mut out);
    assert_eq!(&out[..], data, "beacon bytes round trip");
    assert_eq!(beacon.encoded_len(), data.len(), "beacon encoded_len");
    let (fixed, len) = beacon.to_bytes();
    assert_eq!(&fixed[..len], data, "beacon to_bytes");
    assert_eq!(
        Beacon::decode(&out).expect("encoded beacon must decode"),
        beacon
    );
}

/// Cuts fuzz input into ZMTP frames: the first byte gives the number of frames (1-8), then each
/// frame is a 2-byte big-endian length and that many bytes (fewer if the input ends).
pub fn split_frames(data: &[u8]) -> Vec<Bytes> {
    let Some((&count, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let mut frames = Vec::new();
    for _ in 0..count % 8 + 1 {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let take = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        frames.push(Bytes::copy_from_slice(&tail[..take]));
        rest = &tail[take..];
    }
    frames
}

/// ZRE message: a decoded message re-encodes to the same first frame and content frames (an
/// absent WHISPER/SHOUT content becomes one empty frame, as Zyre sends it), and decodes back.
pub fn zre_message(data: &[u8]) {
    use crate::zre::ZreMessage;

    let frames = split_frames(data);
    let Ok(msg) = ZreMessage::decode(&frames, FUZZ_LIMIT) else {
        return;
    };
    let out = msg
        .to_frames()
        .expect("a decoded ZRE message must be encodable");
    assert_eq!(out[0], frames[0], "ZRE first frame round trip");
    assert_eq!(msg.encoded_len(), out[0].len(), "ZRE encoded_len");
    match msg.body.content() {
        Some([]) => assert_eq!(&out[1..], &[Bytes::new()], "empty content frame"),
        _ => assert_eq!(&out[1..], &frames[1..], "ZRE content frames"),
    }
    let again = ZreMessage::decode(&out, FUZZ_LIMIT).expect("an encoded ZRE message must decode");
    assert_eq!(again.to_frames().ok(), Some(out), "ZRE second round trip");
    if msg.body.content() != Some(&[]) {
        assert_eq!(again, msg, "ZRE message round trip");
    }
}

/// FILEMQ message: a decoded message re-encodes to exactly the frame it came from.
pub fn filemq_message(data: &[u8]) {
    use crate::filemq::FilemqMessage;

    let frame = Bytes::copy_from_slice(data);
    let Ok(msg) = FilemqMessage::decode(&frame, FUZZ_LIMIT) else {
        return;
    };
    let out = msg
        .to_bytes()
        .expect("a decoded FILEMQ message must be encodable");
    assert_eq!(out, frame, "FILEMQ bytes round trip");
    assert_eq!(msg.encoded_len(), out.len(), "FILEMQ encoded_len");
    let again =
        FilemqMessage::decode(&out, FUZZ_LIMIT).expect("an encoded FILEMQ message must decode");
    assert_eq!(again, msg, "FILEMQ message round trip");
}

/// Pipeline message: a decoded message re-encodes to exactly the frame it came from.
pub fn pipeline_message(data: &[u8]) {
    use crate::pipeline::PipelineMessage;

    let frame = Bytes::copy_from_slice(data);
    let Ok(msg) = PipelineMessage::decode(&frame, FUZZ_LIMIT) else {
        return;
    };
    let out = msg
        .to_bytes()
        .expect("a decoded pipeline message must be encodable");
    assert_eq!(out, frame, "pipeline bytes round trip");
    assert_eq!(msg.encoded_len(), out.len(), "pipeline encoded_len");
    let again =
        PipelineMessage::decode(&out, FUZZ_LIMIT).expect("an encoded pipeline message must decode");
    assert_eq!(again, msg, "pipeline message round trip");
}

/// ZGP message: a decoded message re-encodes to exactly the frame it came from.
pub fn zgp_message(data: &[u8]) {
    use crate::zgp::ZgpMessage;

    let frame = Bytes::copy_from_slice(data);
    let Ok(msg) = ZgpMessage::decode(&frame, FUZZ_LIMIT) else {
        return;
    };
    let out = msg
        .to_bytes()
        .expect("a decoded ZGP message must be encodable");
    assert_eq!(out, frame, "ZGP bytes round trip");
    assert_eq!(msg.encoded_len(), out.len(), "ZGP encoded_len");
    let again = ZgpMessage::decode(&out, FUZZ_LIMIT).expect("an encoded ZGP message must decode");
    assert_eq!(again, msg, "ZGP message round trip");
}

/// ZRE/LOG message: a decoded message re-encodes to exactly the frame it came from.
pub fn zrelog_message(data: &[u8]) {
    use crate::zrelog::LogMessage;

    let frame = Bytes::copy_from_slice(data);
    let Ok(msg) = LogMessage::decode(&frame, FUZZ_LIMIT) else {
        return;
    };
    let out = msg
        .to_bytes()
        .expect("a decoded ZRE/LOG message must be encodable");
    assert_eq!(out, frame, "ZRE/LOG bytes round trip");
    assert_eq!(msg.encoded_len(), out.len(), "ZRE/LOG encoded_len");
    let again =
        LogMessage::decode(&out, FUZZ_LIMIT).expect("an encoded ZRE/LOG message must decode");
    assert_eq!(again, msg, "ZRE/LOG message round trip");
}

/// Timer messages: the first frame of the input is a rate group and the second a tick's text;
/// the frames together a leader's note. Whatever decodes encodes and decodes back to itself.
pub fn timer_message(data: &[u8]) {
    use crate::timer::{Tick, TimerNote};

    let frames = split_frames(data);
    if let [group, text, ..] = &frames[..] {
        if let Ok(group) = std::str::from_utf8(group) {
            if let Ok(tick) = Tick::decode(group, text) {
                let again = Tick::decode(group, tick.text().as_bytes())
                    .expect("an encoded tick must decode");
                assert_eq!(again, tick, "tick round trip");
            }
        }
    }
    let Ok(note) = TimerNote::decode(&frames) else {
        return;
    };
    let out = note.to_frames();
    let again = TimerNote::decode(&out).expect("an encoded timer note must decode");
    assert_eq!(again, note, "timer note round trip");
}
