//! Property tests of the ZMTP codecs: greeting, frames (through `FrameCodec`, with the stream cut
//! at random points), commands and metadata round-trip; `encoded_len` is the encoded size;
//! damaged encodings give errors, never panics or outsized allocations.

mod support;

use bytes::{Bytes, BytesMut};
use harmony_wire::zmtp::{
    Command, Frame, FrameCodec, Greeting, Mechanism, Metadata, PlainHello, RawCommand, GREETING_LEN,
};
use harmony_wire::WireError;
use proptest::prelude::*;
use support::{alloc_budget, apply, damage, peak_alloc};
use tokio_util::codec::{Decoder, Encoder};

const LIMIT: usize = 1 << 16;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn mechanism() -> impl Strategy<Value = Mechanism> {
    prop_oneof![
        Just(Mechanism::Null),
        Just(Mechanism::Plain),
        Just(Mechanism::Curve),
        "[A-Z0-9._+-]{1,20}"
            .prop_filter("a known name decodes as its own variant", |n| {
                !matches!(n.as_str(), "NULL" | "PLAIN" | "CURVE")
            })
            .prop_map(Mechanism::Other),
    ]
}

fn greeting() -> impl Strategy<Value = Greeting> {
    (3u8.., any::<u8>(), mechanism(), any::<bool>()).prop_map(
        |(major, minor, mechanism, as_server)| Greeting {
            major,
            minor,
            mechanism,
            as_server,
        },
    )
}

fn frame() -> impl Strategy<Value = Frame> {
    // Bodies past 255 bytes take the long (8-byte size) form.
    (bytes(600), any::<bool>(), any::<bool>()).prop_map(|(body, more, command)| Frame {
        more: more && !command,
        command,
        body,
    })
}

fn metadata() -> impl Strategy<Value = Metadata> {
    prop::collection::vec(("[A-Za-z0-9._+-]{1,24}", bytes(40)), 0..6).prop_map(|props| {
        // insert() replaces a name already present (case-insensitively) while decode keeps
        // duplicates: keep distinct names so the list round-trips.
        let mut m = Metadata::new();
        for (name, value) in props {
            if m.get(&name).is_none() {
                m.insert(name, value);
            }
        }
        m
    })
}

fn command() -> impl Strategy<Value = Command> {
    let known = [
        "READY",
        "INITIATE",
        "WELCOME",
        "ERROR",
        "PING",
        "PONG",
        "SUBSCRIBE",
        "CANCEL",
        "HELLO",
    ];
    prop_oneof![
        metadata().prop_map(Command::Ready),
        metadata().prop_map(Command::Initiate),
        Just(Command::Welcome),
        bytes(255).prop_map(Command::Error),
        (any::<u16>(), bytes(16)).prop_map(|(ttl, context)| Command::Ping { ttl, context }),
        bytes(16).prop_map(|context| Command::Pong { context }),
        bytes(64).prop_map(Command::Subscribe),
        bytes(64).prop_map(Command::Cancel),
        (bytes(255), bytes(255))
            .prop_map(|(username, password)| Command::Hello(PlainHello { username, password })),
        ("[A-Za-z]{1,16}", bytes(64))
            .prop_filter("an unknown name", move |(name, _)| !known
                .contains(&name.as_str()))
            .prop_map(|(name, data)| Command::Unknown(RawCommand {
                name: Bytes::from(name),
                data
            })),
    ]
}

/// Decodes a stream delivered in pieces cut at `cuts` (offsets, any order, may repeat).
fn decode_in_pieces(stream: &[u8], cuts: &[usize]) -> Result<Vec<Frame>, WireError> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.push(stream.len());
    cuts.sort_unstable();
    let mut codec = FrameCodec::new(LIMIT as u64);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    for cut in cuts {
        buf.extend_from_slice(&stream[pos..cut]);
        pos = cut;
        while let Some(frame) = codec.decode(&mut buf).map_err(|e| match e {
            harmony_wire::zmtp::FrameError::Wire(w) => w,
            other => panic!("no I/O here: {other}"),
        })? {
            frames.push(frame);
        }
    }
    assert!(buf.is_empty(), "whole frames leave nothing behind");
    Ok(frames)
}

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn greeting_round_trips(greeting in greeting()) {
        let bytes = greeting.encode()?;
        prop_assert_eq!(bytes.len(), GREETING_LEN);
        Greeting::check_signature(&bytes)?;
        prop_assert_eq!(Greeting::decode(&bytes)?, greeting);
    }

    #[test]
    fn damaged_greeting_never_panics(greeting in greeting(), damage in damage()) {
        let bytes = apply(&greeting.encode()?, &damage);
        if let Ok(back) = Greeting::decode(&bytes) {
            prop_assert_eq!(Greeting::decode(&back.encode()?)?, back);
        }
    }

    #[test]
    fn frames_round_trip_through_any_cuts(
        frames in prop::collection::vec(frame(), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut codec = FrameCodec::new(LIMIT as u64);
        let mut stream = BytesMut::new();
        for frame in &frames {
            let before = stream.len();
            codec.encode(frame, &mut stream).expect("frame under the limit");
            prop_assert_eq!(
                stream.len() - before,
                Frame::header_len(frame.body.len()) + frame.body.len()
            );
            let mut direct = BytesMut::new();
            frame.encode(&mut direct);
            prop_assert_eq!(&stream[before..], &direct[..]);
        }
        prop_assert_eq!(decode_in_pieces(&stream, &cuts)?, frames);
    }

    #[test]
    fn damaged_frame_stream_never_panics(
        frames in prop::collection::vec(frame(), 1..4),
        damage in damage(),
    ) {
        let mut stream = BytesMut::new();
        for frame in &frames {
            frame.encode(&mut stream);
        }
        let damaged = apply(&stream, &damage);
        // A small maximum: a damaged size field must be refused, not buffered for.
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&damaged[..]);
        let (_, peak) = peak_alloc(|| {
            for _ in 0..=damaged.len() {
                match codec.decode_frame(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        });
        prop_assert!(peak <= 2048 + damaged.len(), "allocated {} bytes", peak);
    }

    #[test]
    fn metadata_round_trips(meta in metadata()) {
        let mut buf = BytesMut::new();
        meta.encode(&mut buf)?;
        prop_assert_eq!(buf.len(), meta.encoded_len());
        let bytes = buf.freeze();
        prop_assert_eq!(Metadata::decode(&bytes, LIMIT)?, meta);
        if !bytes.is_empty() {
            let refused = matches!(
                Metadata::decode(&bytes, bytes.len() - 1),
                Err(WireError::TooLong { .. })
            );
            prop_assert!(refused);
        }
    }

    #[test]
    fn command_round_trips(cmd in command()) {
        let raw = cmd.to_raw()?;
        let frame = cmd.to_frame()?;
        prop_assert!(frame.command && !frame.more);
        prop_assert_eq!(frame.body.len(), raw.encoded_len());
        prop_assert_eq!(&RawCommand::decode(&frame.body)?, &raw);
        prop_assert_eq!(Command::decode(&frame.body, LIMIT)?, cmd.clone());
        let mut whole = BytesMut::new();
        cmd.encode_frame(&mut whole)?;
        let mut expected = BytesMut::new();
        frame.encode(&mut expected);
        prop_assert_eq!(whole, expected);
    }

    #[test]
    fn damaged_command_is_an_error_or_re_encodes(cmd in command(), damage in damage()) {
        let body = Bytes::from(apply(&cmd.to_frame()?.body, &damage));
        let (result, peak) = peak_alloc(|| Command::decode(&body, LIMIT));
        prop_assert!(
            peak <= alloc_budget(body.len()),
            "decoding {} bytes allocated {} bytes", body.len(), peak
        );
        if let Ok(back) = result {
            prop_assert_eq!(Command::decode(&back.to_frame()?.body, LIMIT)?, back);
        }
    }
}
