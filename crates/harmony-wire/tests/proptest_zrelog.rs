//! Property tests of the ZRE/LOG codec: every message round-trips exactly, `encoded_len` is the
//! encoded size, the level is the topic prefix, and damaged encodings give errors, never panics
//! or outsized allocations.

mod support;

use bytes::Bytes;
use harmony_wire::zrelog::{LogExtension, LogLevel, LogMessage};
use harmony_wire::{fuzzing, WireError};
use proptest::prelude::*;
use support::{apply, damage, damaged_is_an_error_or_re_encodes, pairs, peak_alloc, text};

const LIMIT: usize = 1 << 16;

fn message() -> impl Strategy<Value = LogMessage> {
    let ext = (
        text(60),
        text(60),
        text(60),
        pairs(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(name, target, span, fields, sequence, dropped)| LogExtension {
                name,
                target,
                span,
                fields,
                sequence,
                dropped,
                message: String::new(),
            },
        );
    (
        prop::sample::select(LogLevel::ALL.to_vec()),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u64>(),
        text(600),
        prop::option::of(ext),
    )
        .prop_map(|(level, event, node, peer, time, body, ext)| {
            let mut msg = LogMessage::new(level, node, time, &body, ext);
            msg.event = event;
            msg.peer = peer;
            msg
        })
}

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn message_round_trips(msg in message()) {
        let bytes = msg.to_bytes()?;
        prop_assert_eq!(bytes.len(), msg.encoded_len());
        prop_assert_eq!(&bytes[..4], &LogMessage::topic(msg.level));
        let back = LogMessage::decode(&bytes, LIMIT)?;
        prop_assert_eq!(back.text(), msg.text());
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn a_limit_below_the_size_is_refused(msg in message()) {
        let bytes = msg.to_bytes()?;
        let refused = matches!(
            LogMessage::decode(&bytes, bytes.len() - 1),
            Err(WireError::TooLong { .. })
        );
        prop_assert!(refused);
    }

    #[test]
    fn fuzz_check_holds_for_valid_and_damaged_messages(msg in message(), damage in damage()) {
        let bytes = msg.to_bytes()?;
        fuzzing::zrelog_message(&bytes);
        fuzzing::zrelog_message(&apply(&bytes, &damage));
    }

    #[test]
    fn damaged_message_is_an_error_or_re_encodes(msg in message(), damage in damage()) {
        let bytes = Bytes::from(apply(&msg.to_bytes()?, &damage));
        damaged_is_an_error_or_re_encodes(&bytes, |b| LogMessage::decode(b, LIMIT), LogMessage::to_bytes)?;
    }
}

/// A LOG announcing 2^31 fields and one announcing a 2 GiB message are refused without
/// allocating for them.
#[test]
fn huge_declared_sizes_allocate_nothing_big() {
    let head = LogMessage::new(LogLevel::Info, 1, 2, "x", None)
        .to_bytes()
        .unwrap();
    let mut fields = head.to_vec();
    fields.extend_from_slice(b"\x00\x00\x00\x7f\xff\xff\xff");
    fields.extend_from_slice(&[0; 32]);
    let bytes = Bytes::from(fields);
    let (result, peak) = peak_alloc(|| LogMessage::decode(&bytes, LIMIT));
    assert!(
        matches!(result, Err(WireError::TooLong { .. })),
        "{result:?}"
    );
    assert!(peak < 1024, "allocated {peak} bytes");

    let mut message = head.to_vec();
    message.extend_from_slice(b"\x00\x00\x00\x00\x00\x00\x00");
    message.extend_from_slice(&[0; 12]);
    message.extend_from_slice(b"\x7f\xff\xff\xffdata");
    let bytes = Bytes::from(message);
    let (result, peak) = peak_alloc(|| LogMessage::decode(&bytes, LIMIT));
    assert_eq!(result, Err(WireError::Truncated("LOG message")));
    assert!(peak < 1024, "allocated {peak} bytes");
}
