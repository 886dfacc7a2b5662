//! Property tests of the FILEMQ codec: every message round-trips exactly, `encoded_len` is the
//! encoded size, and damaged encodings give errors, never panics or outsized allocations.

mod support;

use bytes::Bytes;
use harmony_wire::filemq::{Cheezburger, FileOperation, FilemqMessage};
use harmony_wire::{fuzzing, WireError};
use proptest::prelude::*;
use support::{apply, damage, damaged_is_an_error_or_re_encodes, pairs, peak_alloc, text};

const LIMIT: usize = 1 << 16;

fn message() -> impl Strategy<Value = FilemqMessage> {
    let cheezburger = (
        any::<u64>(),
        prop_oneof![Just(FileOperation::Create), Just(FileOperation::Delete)],
        text(300),
        any::<u64>(),
        any::<bool>(),
        pairs(),
        prop::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(
            |(sequence, operation, filename, offset, eof, headers, chunk)| {
                FilemqMessage::Cheezburger(Cheezburger {
                    sequence,
                    operation,
                    filename,
                    offset,
                    eof,
                    headers,
                    chunk: chunk.into(),
                })
            },
        );
    prop_oneof![
        Just(FilemqMessage::Ohai),
        Just(FilemqMessage::OhaiOk),
        (text(300), pairs(), pairs()).prop_map(|(path, options, cache)| {
            FilemqMessage::Icanhaz {
                path,
                options,
                cache,
            }
        }),
        Just(FilemqMessage::IcanhazOk),
        (any::<u64>(), any::<u64>())
            .prop_map(|(credit, sequence)| FilemqMessage::Nom { credit, sequence }),
        cheezburger,
        Just(FilemqMessage::Hugz),
        Just(FilemqMessage::HugzOk),
        Just(FilemqMessage::Kthxbai),
        text(100).prop_map(|reason| FilemqMessage::Srsly { reason }),
        text(100).prop_map(|reason| FilemqMessage::Rtfm { reason }),
    ]
}

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn message_round_trips(msg in message()) {
        let bytes = msg.to_bytes()?;
        prop_assert_eq!(bytes.len(), msg.encoded_len());
        prop_assert_eq!(&bytes[..2], &[0xAA, 0xA3]);
        prop_assert_eq!(bytes[2], msg.id());
        let back = FilemqMessage::decode(&bytes, LIMIT)?;
        if let FilemqMessage::Cheezburger(c) = &back {
            // The chunk is the frame's own memory.
            prop_assert!(c.chunk.is_empty() || bytes.as_ptr_range().contains(&c.chunk.as_ptr()));
        }
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn a_limit_below_the_size_is_refused(msg in message()) {
        let bytes = msg.to_bytes()?;
        let refused = matches!(
            FilemqMessage::decode(&bytes, bytes.len() - 1),
            Err(WireError::TooLong { .. })
        );
        prop_assert!(refused);
    }

    #[test]
    fn fuzz_check_holds_for_valid_and_damaged_messages(msg in message(), damage in damage()) {
        let bytes = msg.to_bytes()?;
        fuzzing::filemq_message(&bytes);
        fuzzing::filemq_message(&apply(&bytes, &damage));
    }

    #[test]
    fn damaged_message_is_an_error_or_re_encodes(msg in message(), damage in damage()) {
        let bytes = Bytes::from(apply(&msg.to_bytes()?, &damage));
        damaged_is_an_error_or_re_encodes(&bytes, |b| FilemqMessage::decode(b, LIMIT), FilemqMessage::to_bytes)?;
    }
}

/// An ICANHAZ announcing 2^31 options, and a CHEEZBURGER announcing a 2 GiB chunk, are refused
/// without allocating for them.
#[test]
fn huge_declared_sizes_allocate_nothing_big() {
    let mut icanhaz = b"\xaa\xa3\x05\x00\x00\x00\x01/\x7f\xff\xff\xff".to_vec();
    icanhaz.extend_from_slice(&[0; 32]);
    let bytes = Bytes::from(icanhaz);
    let (result, peak) = peak_alloc(|| FilemqMessage::decode(&bytes, LIMIT));
    assert!(
        matches!(result, Err(WireError::TooLong { .. })),
        "{result:?}"
    );
    assert!(peak < 1024, "allocated {peak} bytes");

    let mut burger = b"\xaa\xa3\x08".to_vec();
    burger.extend_from_slice(&[0; 8]);
    burger.extend_from_slice(b"\x01\x00\x00\x00\x01f");
    burger.extend_from_slice(&[0; 8]);
    burger.extend_from_slice(b"\x00\x00\x00\x00\x00\x7f\xff\xff\xffdata");
    let bytes = Bytes::from(burger);
    let (result, peak) = peak_alloc(|| FilemqMessage::decode(&bytes, LIMIT));
    assert_eq!(result, Err(WireError::Truncated("CHEEZBURGER chunk")));
    assert!(peak < 1024, "allocated {peak} bytes");
}
