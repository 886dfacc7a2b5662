//! Property tests of the ZRE codecs: beacons and messages round-trip exactly, `encoded_len`
//! is the encoded size, and damaged encodings give errors, never panics or outsized allocations.

mod support;

use bytes::{Bytes, BytesMut};
use harmony_wire::zre::{Beacon, Hello, ZreBody, ZreMessage};
use harmony_wire::{fuzzing, WireError};
use proptest::prelude::*;
use support::{alloc_budget, apply, damage, pairs, peak_alloc, text};
use uuid::Uuid;

const LIMIT: usize = 1 << 16;

fn beacon() -> impl Strategy<Value = Beacon> {
    (
        any::<[u8; 16]>(),
        any::<u16>(),
        prop::option::of(any::<[u8; 32]>()),
    )
        .prop_map(|(uuid, port, public_key)| Beacon {
            uuid: Uuid::from_bytes(uuid),
            port,
            public_key,
        })
}

fn content() -> impl Strategy<Value = Vec<Bytes>> {
    // At least one frame: an empty content is sent as one empty frame (see below).
    prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        1..4,
    )
}

fn body() -> impl Strategy<Value = ZreBody> {
    prop_oneof![
        (
            text(60),
            prop::collection::vec(text(20), 0..5),
            any::<u8>(),
            text(30),
            pairs()
        )
            .prop_map(|(endpoint, groups, status, name, headers)| {
                ZreBody::Hello(Hello {
                    endpoint,
                    groups,
                    status,
                    name,
                    headers,
                })
            }),
        content().prop_map(|content| ZreBody::Whisper { content }),
        (text(40), content()).prop_map(|(group, content)| ZreBody::Shout { group, content }),
        (text(40), any::<u8>()).prop_map(|(group, status)| ZreBody::Join { group, status }),
        (text(40), any::<u8>()).prop_map(|(group, status)| ZreBody::Leave { group, status }),
        Just(ZreBody::Ping),
        Just(ZreBody::PingOk),
        (text(40), text(32)).prop_map(|(group, challenger_id)| ZreBody::Elect {
            group,
            challenger_id
        }),
        (text(40), text(32)).prop_map(|(group, leader_id)| ZreBody::Leader { group, leader_id }),
        Just(ZreBody::Goodbye),
        (any::<u32>(), pairs()).prop_map(|(request, headers)| ZreBody::Props { request, headers }),
        any::<u32>().prop_map(|request| ZreBody::PropsRequest { request }),
    ]
}

fn message() -> impl Strategy<Value = ZreMessage> {
    (any::<u16>(), body()).prop_map(|(sequence, body)| ZreMessage::new(sequence, body))
}

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn beacon_round_trips(beacon in beacon()) {
        let mut buf = BytesMut::new();
        beacon.encode(&mut buf);
        prop_assert_eq!(buf.len(), beacon.encoded_len());
        prop_assert_eq!(Beacon::decode(&buf)?, beacon);
        let (fixed, len) = beacon.to_bytes();
        prop_assert_eq!(&fixed[..len], &buf[..]);
    }

    #[test]
    fn damaged_beacon_never_panics(beacon in beacon(), damage in damage()) {
        let (fixed, len) = beacon.to_bytes();
        let bytes = apply(&fixed[..len], &damage);
        if let Ok(back) = Beacon::decode(&bytes) {
            // Only a flip inside the uuid, port or key can survive; the result re-encodes.
            let (again, again_len) = back.to_bytes();
            prop_assert_eq!(&again[..again_len], &bytes[..]);
        }
    }

    #[test]
    fn message_round_trips(msg in message()) {
        let frames = msg.to_frames()?;
        prop_assert_eq!(frames[0].len(), msg.encoded_len());
        prop_assert_eq!(&frames[0][..2], &[0xAA, 0xA1]);
        prop_assert_eq!(frames[0][2], msg.body.id());
        let content = msg.body.content().unwrap_or(&[]);
        prop_assert_eq!(&frames[1..], content);
        let mut first = BytesMut::new();
        msg.encode_first_frame(&mut first)?;
        prop_assert_eq!(&first[..], &frames[0][..]);
        prop_assert_eq!(ZreMessage::decode(&frames, LIMIT)?, msg);
    }

    #[test]
    fn content_frames_are_shared_not_copied(msg in message()) {
        let frames = msg.to_frames()?;
        let back = ZreMessage::decode(&frames, LIMIT)?;
        for (given, decoded) in frames[1..].iter().zip(back.body.content().unwrap_or(&[])) {
            prop_assert_eq!(given.as_ptr(), decoded.as_ptr());
        }
    }

    #[test]
    fn a_limit_below_the_size_is_refused(msg in message()) {
        let frames = msg.to_frames()?;
        let limit = frames[0].len() - 1;
        let refused = matches!(
            ZreMessage::decode(&frames, limit),
            Err(WireError::TooLong { .. })
        );
        prop_assert!(refused);
    }

    #[test]
    fn fuzz_check_holds_for_valid_and_damaged_messages(msg in message(), damage in damage()) {
        // The fuzz target's input format: frame count, then u16-length-prefixed frames.
        let frames = msg.to_frames()?;
        let encode = |frames: &[Bytes]| {
            let mut data = vec![(frames.len() - 1) as u8];
            for f in frames {
                data.extend_from_slice(&(f.len() as u16).to_be_bytes());
                data.extend_from_slice(f);
            }
            data
        };
        let data = encode(&frames);
        prop_assert_eq!(fuzzing::split_frames(&data), frames.clone());
        fuzzing::zre_message(&data);
        fuzzing::zre_message(&apply(&data, &damage));
        let mut damaged = frames;
        damaged[0] = Bytes::from(apply(&damaged[0], &damage));
        fuzzing::zre_message(&encode(&damaged));
    }

    #[test]
    fn damaged_first_frame_is_an_error_or_re_encodes(msg in message(), damage in damage()) {
        let mut frames = msg.to_frames()?;
        let damaged = Bytes::from(apply(&frames[0], &damage));
        frames[0] = damaged.clone();
        let (result, peak) = peak_alloc(|| ZreMessage::decode(&frames, LIMIT));
        prop_assert!(
            peak <= alloc_budget(damaged.len()),
            "decoding {} bytes allocated {} bytes", damaged.len(), peak
        );
        if let Ok(back) = result {
            let again = back.to_frames()?;
            prop_assert_eq!(&again[0], &damaged);
        }
    }
}

/// A HELLO that announces 2^31 groups and 2^31 headers in a few bytes is refused without
/// allocating for them.
#[test]
fn huge_counts_allocate_nothing_big() {
    let mut first = b"\xaa\xa1\x01\x02\x00\x01\x00\x7f\xff\xff\xff".to_vec();
    first.extend_from_slice(&[0; 64]);
    let frames = [Bytes::from(first)];
    let (result, peak) = peak_alloc(|| ZreMessage::decode(&frames, LIMIT));
    assert!(
        matches!(result, Err(WireError::TooLong { .. })),
        "{result:?}"
    );
    assert!(peak < 1024, "allocated {peak} bytes");

    let mut hello = b"\xaa\xa1\x01\x02\x00\x01\x00\x00\x00\x00\x00\x00\x00".to_vec();
    hello.extend_from_slice(b"\x7f\xff\xff\xff");
    hello.extend_from_slice(&[0; 64]);
    let frames = [Bytes::from(hello)];
    let (result, peak) = peak_alloc(|| ZreMessage::decode(&frames, LIMIT));
    assert!(
        matches!(result, Err(WireError::TooLong { .. })),
        "{result:?}"
    );
    assert!(peak < 1024, "allocated {peak} bytes");
}

/// A WHISPER/SHOUT with no content is sent with one empty frame, as Zyre does.
#[test]
fn empty_content_is_sent_as_one_empty_frame() {
    for body in [
        ZreBody::Whisper { content: vec![] },
        ZreBody::Shout {
            group: "G".into(),
            content: vec![],
        },
    ] {
        let frames = ZreMessage::new(9, body).to_frames().unwrap();
        assert_eq!(frames.len(), 2);
        assert!(frames[1].is_empty());
    }
}

/// The allocation meter the damage tests rely on does see allocations.
#[test]
fn meter_sees_allocations() {
    let (v, peak) = peak_alloc(|| vec![0u8; 10_000]);
    assert_eq!(v.len(), 10_000);
    assert!(peak >= 10_000, "peak {peak}");
}
