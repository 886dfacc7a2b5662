//! The reliable pipeline protocol (Harmony PIPELINE/2, `crates/harmony-pipeline/SPEC.md`):
//! seven messages, each one ZMTP frame `AA A4 id version fields...`.
//!
//! Numbers are unsigned big-endian; `uuid` is 16 bytes; `longstr` is a 4-byte length and bytes.
//! Lists (TASK tasks, RESULT results, ACK tasks, STATUS ranges) carry a 4-byte count that is
//! checked against the bytes left before anything is allocated. TASK and RESULT carry at least
//! one entry: an empty one is malformed.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::error::{Result, WireError};
use crate::primitives::{self as p, Reader};

/// The two signature bytes of every pipeline message (`0xAAA0 | 4`).
pub const PIPELINE_SIGNATURE: [u8; 2] = [0xAA, 0xA4];
/// The protocol version every message carries.
pub const PIPELINE_VERSION: u8 = 2;

/// Signature, id and version.
const HEADER_LEN: usize = 2 + 1 + 1;

/// One pipeline message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PipelineMessage {
    /// id 1, worker -> client: how many of the client's tasks the worker takes at once.
    Credit(Credit),
    /// id 2, client -> worker: tasks of one batch to run.
    Task(Task),
    /// id 3, worker -> collector: the outcomes of tasks of one batch.
    Result(TaskResult),
    /// id 4, client -> collector: open a batch (idempotent); answered by STATUS.
    Start {
        /// The batch.
        batch: Uuid,
        /// Number of tasks, numbered `0..size`.
        size: u32,
    },
    /// id 5, client -> collector: every task was sent, what is missing? Answered by STATUS.
    End {
        /// The batch.
        batch: Uuid,
        /// Number of tasks.
        size: u32,
    },
    /// id 6, collector -> client: every task of the batch the collector's application has.
    Status {
        /// The batch.
        batch: Uuid,
        /// Number of tasks.
        size: u32,
        /// Half-open ranges `[first, end)` of tasks held, ascending, not overlapping.
        ranges: Vec<(u32, u32)>,
    },
    /// id 7, collector -> client: these results reached the collector's application.
    Ack {
        /// The batch.
        batch: Uuid,
        /// Task numbers.
        tasks: Vec<u32>,
    },
}

/// CREDIT: the worker's flow-control window for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    /// Tasks of this client the worker accepts at once (queued plus running).
    pub window: u32,
    /// One past the highest TASK `seq` received from this client (0: none yet).
    pub seen: u64,
    /// Tasks of this client queued or running at the worker now.
    pub held: u32,
}

/// TASK: tasks of one batch, sent by a client to a worker; entry `i` has the sequence number
/// `seq + i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Per client-worker sequence number of the first entry (TASK entries count from 0).
    pub seq: u64,
    /// The batch.
    pub batch: Uuid,
    /// The collector that takes the results.
    pub collector: Uuid,
    /// The tasks, at least one.
    pub tasks: Vec<TaskItem>,
}

/// One task of a TASK message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskItem {
    /// The task number in the batch.
    pub task: u32,
    /// The task's bytes, a slice of the received frame.
    pub payload: Bytes,
}

/// RESULT: the outcomes of tasks of one batch, sent by a worker to the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    /// The client that sent the tasks.
    pub client: Uuid,
    /// The batch.
    pub batch: Uuid,
    /// The outcomes, at least one.
    pub results: Vec<ResultItem>,
}

/// One task's outcome in a RESULT message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultItem {
    /// The task number in the batch.
    pub task: u32,
    /// Whether the task failed (after the worker's retries); `payload` is then the error text.
    pub failed: bool,
    /// The result's bytes, a slice of the received frame.
    pub payload: Bytes,
}

/// Bytes a TASK entry takes besides its payload (number, payload length).
const TASK_ITEM_LEN: usize = 4 + 4;
/// Bytes a RESULT entry takes besides its payload (number, status, payload length).
const RESULT_ITEM_LEN: usize = 4 + 1 + 4;

impl TaskItem {
    /// Size of the encoded entry.
    pub fn encoded_len(&self) -> usize {
        TASK_ITEM_LEN + self.payload.len()
    }
}

impl ResultItem {
    /// Size of the encoded entry.
    pub fn encoded_len(&self) -> usize {
        RESULT_ITEM_LEN + self.payload.len()
    }
}

impl PipelineMessage {
    /// The message id on the wire.
    pub fn id(&self) -> u8 {
        match self {
            Self::Credit(_) => 1,
            Self::Task(_) => 2,
            Self::Result(_) => 3,
            Self::Start { .. } => 4,
            Self::End { .. } => 5,
            Self::Status { .. } => 6,
            Self::Ack { .. } => 7,
        }
    }

    /// The message name as the spec spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Credit(_) => "CREDIT",
            Self::Task(_) => "TASK",
            Self::Result(_) => "RESULT",
            Self::Start { .. } => "START",
            Self::End { .. } => "END",
            Self::Status { .. } => "STATUS",
            Self::Ack { .. } => "ACK",
        }
    }

    /// Decodes one frame of at most `limit` bytes. Payloads are slices of `frame`.
    pub fn decode(frame: &Bytes, limit: usize) -> Result<Self> {
        let mut r = Reader::new(frame, limit, "pipeline message")?;
        if r.array::<2>("pipeline signature")? != PIPELINE_SIGNATURE {
            return Err(WireError::BadSignature("pipeline message"));
        }
        let id = r.u8("pipeline message id")?;
        let version = r.u8("pipeline version")?;
        if version != PIPELINE_VERSION {
            return Err(WireError::BadVersion {
                what: "pipeline",
                version: u16::from(version),
            });
        }
        let msg = match id {
            1 => Self::Credit(Credit {
                window: r.u32("CREDIT window")?,
                seen: r.u64("CREDIT seen")?,
                held: r.u32("CREDIT held")?,
            }),
            2 => {
                let (seq, batch, collector) = (
                    r.u64("TASK seq")?,
                    uuid(&mut r, "TASK batch")?,
                    uuid(&mut r, "TASK collector")?,
                );
                let count = nonempty(r.count("TASK tasks", TASK_ITEM_LEN)?, "TASK tasks")?;
                let mut tasks = Vec::with_capacity(count);
                for _ in 0..count {
                    tasks.push(TaskItem {
                        task: r.u32("TASK task")?,
                        payload: r.long_bytes("TASK payload")?,
                    });
                }
                Self::Task(Task {
                    seq,
                    batch,
                    collector,
                    tasks,
                })
            }
            3 => {
                let (client, batch) = (
                    uuid(&mut r, "RESULT client")?,
                    uuid(&mut r, "RESULT batch")?,
                );
                let count = nonempty(
                    r.count("RESULT results", RESULT_ITEM_LEN)?,
                    "RESULT results",
                )?;
                let mut results = Vec::with_capacity(count);
                for _ in 0..count {
                    results.push(ResultItem {
                        task: r.u32("RESULT task")?,
                        failed: match r.u8("RESULT status")? {
                            0 => false,
                            1 => true,
                            _ => return Err(WireError::Invalid("RESULT status")),
                        },
                        payload: r.long_bytes("RESULT payload")?,
                    });
                }
                Self::Result(TaskResult {
                    client,
                    batch,
                    results,
                })
            }
            4 => Self::Start {
                batch: uuid(&mut r, "START batch")?,
                size: r.u32("START size")?,
            },
            5 => Self::End {
                batch: uuid(&mut r, "END batch")?,
                size: r.u32("END size")?,
            },
            6 => {
                let batch = uuid(&mut r, "STATUS batch")?;
                let size = r.u32("STATUS size")?;
                let count = r.count("STATUS ranges", 8)?;
                let mut ranges = Vec::with_capacity(count);
                for _ in 0..count {
                    ranges.push((r.u32("STATUS range")?, r.u32("STATUS range")?));
                }
                Self::Status {
                    batch,
                    size,
                    ranges,
                }
            }
            7 => {
                let batch = uuid(&mut r, "ACK batch")?;
                let count = r.count("ACK tasks", 4)?;
                let mut tasks = Vec::with_capacity(count);
                for _ in 0..count {
                    tasks.push(r.u32("ACK task")?);
                }
                Self::Ack { batch, tasks }
            }
            id => {
                return Err(WireError::UnknownId {
                    what: "pipeline",
                    id,
                })
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// Size of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Self::Credit(_) => 4 + 8 + 4,
                Self::Task(t) => {
                    8 + 16 + 16 + 4 + t.tasks.iter().map(TaskItem::encoded_len).sum::<usize>()
                }
                Self::Result(r) => {
                    16 + 16 + 4 + r.results.iter().map(ResultItem::encoded_len).sum::<usize>()
                }
                Self::Start { .. } | Self::End { .. } => 16 + 4,
                Self::Status { ranges, .. } => 16 + 4 + 4 + 8 * ranges.len(),
                Self::Ack { tasks, .. } => 16 + 4 + 4 * tasks.len(),
            }
    }

    fn check(&self) -> Result<()> {
        match self {
            Self::Task(t) => check_entries(
                t.tasks.iter().map(|i| &i.payload),
                "TASK tasks",
                "TASK payload",
            ),
            Self::Result(r) => check_entries(
                r.results.iter().map(|i| &i.payload),
                "RESULT results",
                "RESULT payload",
            ),
            Self::Status { ranges, .. } => p::check_u32(ranges.len(), "STATUS ranges"),
            Self::Ack { tasks, .. } => p::check_u32(tasks.len(), "ACK tasks"),
            _ => Ok(()),
        }
    }

    /// Appends the encoded frame. Fails, leaving `dst` unchanged, when a payload or list is
    /// over 2^32 - 1 long, or a TASK or RESULT has no entry.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<()> {
        self.check()?;
        dst.reserve(self.encoded_len());
        dst.put_slice(&PIPELINE_SIGNATURE);
        dst.put_u8(self.id());
        dst.put_u8(PIPELINE_VERSION);
        match self {
            Self::Credit(c) => {
                dst.put_u32(c.window);
                dst.put_u64(c.seen);
                dst.put_u32(c.held);
            }
            Self::Task(t) => {
                dst.put_u64(t.seq);
                dst.put_slice(t.batch.as_bytes());
                dst.put_slice(t.collector.as_bytes());
                dst.put_u32(t.tasks.len() as u32);
                for item in &t.tasks {
                    dst.put_u32(item.task);
                    p::put_longstr(dst, &item.payload);
                }
            }
            Self::Result(r) => {
                dst.put_slice(r.client.as_bytes());
                dst.put_slice(r.batch.as_bytes());
                dst.put_u32(r.results.len() as u32);
                for item in &r.results {
                    dst.put_u32(item.task);
                    dst.put_u8(u8::from(item.failed));
                    p::put_longstr(dst, &item.payload);
                }
            }
            Self::Start { batch, size } | Self::End { batch, size } => {
                dst.put_slice(batch.as_bytes());
                dst.put_u32(*size);
            }
            Self::Status {
                batch,
                size,
                ranges,
            } => {
                dst.put_slice(batch.as_bytes());
                dst.put_u32(*size);
                dst.put_u32(ranges.len() as u32);
                for (first, end) in ranges {
                    dst.put_u32(*first);
                    dst.put_u32(*end);
                }
            }
            Self::Ack { batch, tasks } => {
                dst.put_slice(batch.as_bytes());
                dst.put_u32(tasks.len() as u32);
                for task in tasks {
                    dst.put_u32(*task);
                }
            }
        }
        Ok(())
    }

    /// The encoded frame.
    pub fn to_bytes(&self) -> Result<Bytes> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

/// A TASK or RESULT list to encode: not empty, its count and every payload's length within
/// 32 bits.
fn check_entries<'a>(
    payloads: impl ExactSizeIterator<Item = &'a Bytes>,
    list: &'static str,
    payload: &'static str,
) -> Result<()> {
    nonempty(payloads.len(), list)?;
    p::check_u32(payloads.len(), list)?;
    payloads
        .into_iter()
        .try_for_each(|b| p::check_u32(b.len(), payload))
}

/// A TASK or RESULT list must name at least one task.
fn nonempty(count: usize, what: &'static str) -> Result<usize> {
    if count == 0 {
        return Err(WireError::Invalid(what));
    }
    Ok(count)
}

fn uuid(r: &mut Reader<'_>, what: &'static str) -> Result<Uuid> {
    Ok(Uuid::from_bytes(r.array::<16>(what)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One message of each kind, for the unit tests and the fuzz seeds.
    fn all_messages() -> Vec<PipelineMessage> {
        let batch = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let peer = Uuid::from_u128(42);
        vec![
            PipelineMessage::Credit(Credit {
                window: 8,
                seen: 3,
                held: 2,
            }),
            PipelineMessage::Task(Task {
                seq: 7,
                batch,
                collector: peer,
                tasks: vec![
                    TaskItem {
                        task: 12,
                        payload: Bytes::from_static(b"task"),
                    },
                    TaskItem {
                        task: 3,
                        payload: Bytes::new(),
                    },
                ],
            }),
            PipelineMessage::Result(TaskResult {
                client: peer,
                batch,
                results: vec![
                    ResultItem {
                        task: 12,
                        failed: true,
                        payload: Bytes::from_static(b"exit 1"),
                    },
                    ResultItem {
                        task: 3,
                        failed: false,
                        payload: Bytes::from_static(b"ok"),
                    },
                ],
            }),
            PipelineMessage::Start { batch, size: 100 },
            PipelineMessage::End { batch, size: 100 },
            PipelineMessage::Status {
                batch,
                size: 100,
                ranges: vec![(0, 10), (20, 30)],
            },
            PipelineMessage::Ack {
                batch,
                tasks: vec![1, 2, 5],
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for msg in all_messages() {
            let bytes = msg.to_bytes().unwrap();
            assert_eq!(bytes.len(), msg.encoded_len(), "{}", msg.name());
            assert_eq!(PipelineMessage::decode(&bytes, 1 << 16).unwrap(), msg);
        }
    }

    #[test]
    fn start_has_the_spec_layout() {
        let batch = Uuid::from_u128(1);
        let bytes = PipelineMessage::Start { batch, size: 5 }
            .to_bytes()
            .unwrap();
        let mut expected = vec![0xAA, 0xA4, 4, 2];
        expected.extend_from_slice(batch.as_bytes());
        expected.extend_from_slice(&[0, 0, 0, 5]);
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn wrong_signature_version_and_id_are_refused() {
        let good = PipelineMessage::Start {
            batch: Uuid::nil(),
            size: 1,
        }
        .to_bytes()
        .unwrap();
        let mut bad = good.to_vec();
        bad[1] = 0xA3;
        assert_eq!(
            PipelineMessage::decode(&bad.into(), 64),
            Err(WireError::BadSignature("pipeline message"))
        );
        let mut bad = good.to_vec();
        bad[3] = 1;
        assert!(matches!(
            PipelineMessage::decode(&bad.into(), 64),
            Err(WireError::BadVersion { version: 1, .. })
        ));
        let mut bad = good.to_vec();
        bad[2] = 99;
        assert!(matches!(
            PipelineMessage::decode(&bad.into(), 64),
            Err(WireError::UnknownId { id: 99, .. })
        ));
    }

    /// A RESULT of two entries whose declared count is rewritten to `count`.
    fn result_declaring(count: u32) -> Bytes {
        let msg = PipelineMessage::Result(TaskResult {
            client: Uuid::nil(),
            batch: Uuid::nil(),
            results: vec![
                ResultItem {
                    task: 0,
                    failed: false,
                    payload: Bytes::from_static(b"a"),
                },
                ResultItem {
                    task: 1,
                    failed: false,
                    payload: Bytes::from_static(b"b"),
                },
            ],
        });
        let mut bytes = msg.to_bytes().unwrap().to_vec();
        bytes[36..40].copy_from_slice(&count.to_be_bytes());
        bytes.into()
    }

    #[test]
    fn a_declared_count_that_does_not_match_the_entries_is_refused() {
        assert!(PipelineMessage::decode(&result_declaring(2), 1 << 10).is_ok());
        assert_eq!(
            PipelineMessage::decode(&result_declaring(1), 1 << 10),
            Err(WireError::Trailing(10)),
            "fewer declared than sent"
        );
        assert!(
            PipelineMessage::decode(&result_declaring(3), 1 << 10).is_err(),
            "more declared than sent"
        );
        assert_eq!(
            PipelineMessage::decode(&result_declaring(0), 1 << 10),
            Err(WireError::Invalid("RESULT results")),
            "an empty RESULT"
        );
    }

    #[test]
    fn an_empty_task_or_result_is_not_encodable() {
        let task = PipelineMessage::Task(Task {
            seq: 0,
            batch: Uuid::nil(),
            collector: Uuid::nil(),
            tasks: vec![],
        });
        assert_eq!(task.to_bytes(), Err(WireError::Invalid("TASK tasks")));
        let result = PipelineMessage::Result(TaskResult {
            client: Uuid::nil(),
            batch: Uuid::nil(),
            results: vec![],
        });
        assert_eq!(result.to_bytes(), Err(WireError::Invalid("RESULT results")));
    }

    #[test]
    fn a_huge_declared_list_is_refused_before_allocating() {
        let mut bytes = vec![0xAA, 0xA4, 7, 2];
        bytes.extend_from_slice(&[0; 16]);
        bytes.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            PipelineMessage::decode(&bytes.into(), 64),
            Err(WireError::TooLong { .. })
        ));
    }
}
