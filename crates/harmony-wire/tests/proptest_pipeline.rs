//! Property tests of the pipeline codec: every message round-trips exactly, `encoded_len` is the
//! encoded size, and damaged encodings give errors, never panics or outsized allocations.

mod support;

use bytes::Bytes;
use harmony_wire::pipeline::{Credit, PipelineMessage, ResultItem, Task, TaskItem, TaskResult};
use harmony_wire::{fuzzing, WireError};
use proptest::prelude::*;
use support::{apply, damage, damaged_is_an_error_or_re_encodes, peak_alloc};
use uuid::Uuid;

const LIMIT: usize = 1 << 16;

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn task_item() -> impl Strategy<Value = TaskItem> {
    (any::<u32>(), payload()).prop_map(|(task, payload)| TaskItem { task, payload })
}

fn result_item() -> impl Strategy<Value = ResultItem> {
    (any::<u32>(), any::<bool>(), payload()).prop_map(|(task, failed, payload)| ResultItem {
        task,
        failed,
        payload,
    })
}

fn message() -> impl Strategy<Value = PipelineMessage> {
    prop_oneof![
        (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(window, seen, held)| {
            PipelineMessage::Credit(Credit { window, seen, held })
        }),
        (
            any::<u64>(),
            uuid(),
            uuid(),
            prop::collection::vec(task_item(), 1..12)
        )
            .prop_map(
                |(seq, batch, collector, tasks)| PipelineMessage::Task(Task {
                    seq,
                    batch,
                    collector,
                    tasks
                })
            ),
        (uuid(), uuid(), prop::collection::vec(result_item(), 1..12)).prop_map(
            |(client, batch, results)| PipelineMessage::Result(TaskResult {
                client,
                batch,
                results
            })
        ),
        (uuid(), any::<u32>()).prop_map(|(batch, size)| PipelineMessage::Start { batch, size }),
        (uuid(), any::<u32>()).prop_map(|(batch, size)| PipelineMessage::End { batch, size }),
        (
            uuid(),
            any::<u32>(),
            prop::collection::vec((any::<u32>(), any::<u32>()), 0..40)
        )
            .prop_map(|(batch, size, ranges)| PipelineMessage::Status {
                batch,
                size,
                ranges
            }),
        (uuid(), prop::collection::vec(any::<u32>(), 0..100))
            .prop_map(|(batch, tasks)| PipelineMessage::Ack { batch, tasks }),
    ]
}

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn message_round_trips(msg in message()) {
        let bytes = msg.to_bytes()?;
        prop_assert_eq!(bytes.len(), msg.encoded_len());
        prop_assert_eq!(&bytes[..2], &[0xAA, 0xA4]);
        prop_assert_eq!(bytes[2], msg.id());
        prop_assert_eq!(bytes[3], 2);
        let back = PipelineMessage::decode(&bytes, LIMIT)?;
        if let PipelineMessage::Task(t) = &back {
            // The payloads are the frame's own memory.
            for item in &t.tasks {
                prop_assert!(
                    item.payload.is_empty() || bytes.as_ptr_range().contains(&item.payload.as_ptr())
                );
            }
        }
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn a_limit_below_the_size_is_refused(msg in message()) {
        let bytes = msg.to_bytes()?;
        let refused = matches!(
            PipelineMessage::decode(&bytes, bytes.len() - 1),
            Err(WireError::TooLong { .. })
        );
        prop_assert!(refused);
    }

    #[test]
    fn every_truncation_is_an_error(msg in message()) {
        let bytes = msg.to_bytes()?;
        for cut in 0..bytes.len() {
            prop_assert!(PipelineMessage::decode(&bytes.slice(..cut), LIMIT).is_err());
        }
    }

    #[test]
    fn fuzz_check_holds_for_valid_and_damaged_messages(msg in message(), damage in damage()) {
        let bytes = msg.to_bytes()?;
        fuzzing::pipeline_message(&bytes);
        fuzzing::pipeline_message(&apply(&bytes, &damage));
    }

    #[test]
    fn damaged_message_is_an_error_or_re_encodes(msg in message(), damage in damage()) {
        let bytes = Bytes::from(apply(&msg.to_bytes()?, &damage));
        damaged_is_an_error_or_re_encodes(&bytes, |b| PipelineMessage::decode(b, LIMIT), PipelineMessage::to_bytes)?;
    }
}

/// A TASK declaring a 2 GiB payload, a TASK and a RESULT declaring 2^32 - 1 entries and an ACK
/// declaring 2^32 - 1 tasks are refused without allocating for them.
#[test]
fn huge_declared_sizes_allocate_nothing_big() {
    let mut task = vec![0xAA, 0xA4, 2, 2];
    task.extend_from_slice(&[0; 8 + 16 + 16]);
    task.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    task.extend_from_slice(&[0x7F, 0xFF, 0xFF, 0xFF]);
    task.extend_from_slice(b"data");
    let bytes = Bytes::from(task);
    let (result, peak) = peak_alloc(|| PipelineMessage::decode(&bytes, LIMIT));
    assert_eq!(result, Err(WireError::Truncated("TASK payload")));
    assert!(peak < 1024, "allocated {peak} bytes");

    // TASK, RESULT, ACK: the fields before the count, then 2^32 - 1 declared.
    for (id, head) in [(2u8, 8 + 16 + 16), (3, 16 + 16), (7, 16)] {
        let mut list = vec![0xAA, 0xA4, id, 2];
        list.extend_from_slice(&vec![0; head]);
        list.extend_from_slice(&[0xFF; 4]);
        list.extend_from_slice(&[0; 64]);
        let bytes = Bytes::from(list);
        let (result, peak) = peak_alloc(|| PipelineMessage::decode(&bytes, LIMIT));
        assert!(
            matches!(result, Err(WireError::TooLong { .. })),
            "{result:?}"
        );
        assert!(peak < 1024, "allocated {peak} bytes");
    }
}
