//! The collector: opens batches on START, hands each new result to its application once, and
//! acknowledges to the client only what the application has taken (committed).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use harmony_wire::pipeline::{PipelineMessage, TaskResult};
use tracing::{debug, warn};
use uuid::Uuid;

use super::{Role, TaskSet, Transmit, MAX_BATCH};

/// Most task numbers in one ACK.
const ACK_MAX: usize = 4096;
/// Default bound on the tasks of all batches remembered at once (one bit each).
const DEFAULT_TASK_BUDGET: u64 = 1 << 28;

/// What the collector hands its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CollectorEvent {
    /// A task's result, the first time it arrives.
    Result {
        /// The client that submitted the batch.
        client: Uuid,
        /// The batch.
        batch: Uuid,
        /// The task number.
        task: u32,
        /// Whether the task failed; `payload` is then the error text.
        failed: bool,
        /// The result's bytes.
        payload: Bytes,
    },
    /// Every result of the batch has been handed out.
    BatchComplete {
        /// The client that submitted the batch.
        client: Uuid,
        /// The batch.
        batch: Uuid,
        /// Its number of tasks.
        size: u32,
    },
}

#[derive(Debug)]
struct Batch {
    client: Uuid,
    size: u32,
    /// Results handed to the application (committed or not).
    got: TaskSet,
    count: u32,
}

/// The collector's state machine.
#[derive(Debug)]
pub struct CollectorCore {
    peers: BTreeMap<Uuid, Role>,
    batches: BTreeMap<Uuid, Batch>,
    /// Batches in the order opened, for eviction of complete ones.
    opened: VecDeque<Uuid>,
    tasks_held: u64,
    task_budget: u64,
    /// Results the application had before a restart: batch -> tasks.
    restored: BTreeMap<Uuid, BTreeSet<u32>>,
    /// Results handed to the application by `poll_event` and not yet committed: (batch, task).
    uncommitted: Vec<(Uuid, u32)>,
    /// Committed results not yet acknowledged: (client, batch) -> tasks.
    acks: BTreeMap<(Uuid, Uuid), Vec<u32>>,
    events: VecDeque<CollectorEvent>,
    transmits: VecDeque<Transmit>,
}

impl Default for CollectorCore {
    fn default() -> Self {
        Self::new()
    }
}

impl CollectorCore {
    /// A collector with no batches.
    pub fn new() -> Self {
        Self {
            peers: BTreeMap::new(),
            batches: BTreeMap::new(),
            opened: VecDeque::new(),
            tasks_held: 0,
            task_budget: DEFAULT_TASK_BUDGET,
            restored: BTreeMap::new(),
            uncommitted: Vec::new(),
            acks: BTreeMap::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
        }
    }

    /// Bounds the tasks of all batches remembered at once (default 2^28).
    pub fn with_task_budget(mut self, tasks: u64) -> Self {
        self.task_budget = tasks;
        self
    }

    /// Records a result the application already has (from before a restart): it is never
    /// handed out again, and STATUS reports it.
    pub fn restore(&mut self, batch: Uuid, task: u32) {
        if let Some(b) = self.batches.get_mut(&batch) {
            if b.got.insert(task) {
                b.count += 1;
            }
        } else {
            self.restored.entry(batch).or_default().insert(task);
        }
    }

    /// A peer of the pipeline appeared.
    pub fn peer_up(&mut self, peer: Uuid, role: Role) {
        self.peers.insert(peer, role);
    }

    /// A peer left or died.
    pub fn peer_down(&mut self, peer: Uuid) {
        self.peers.remove(&peer);
    }

    /// Handles one message from `from`.
    pub fn handle(&mut self, from: Uuid, message: PipelineMessage) {
        let role = self.peers.get(&from).copied();
        match (message, role) {
            (PipelineMessage::Start { batch, size }, Some(Role::Client))
            | (PipelineMessage::End { batch, size }, Some(Role::Client)) => {
                self.on_start(from, batch, size);
            }
            (PipelineMessage::Result(result), Some(Role::Worker)) => self.on_result(from, result),
            (message, None) => {
                warn!(%from, message = message.name(), "refused: not a peer of this pipeline");
            }
            (message, Some(role)) => warn!(
                %from, message = message.name(), role = role.as_str(),
                "refused: not a message this peer may send a collector"
            ),
        }
    }

    fn on_start(&mut self, client: Uuid, batch: Uuid, size: u32) {
        match self.batches.get(&batch) {
            Some(b) if b.client != client || b.size != size => {
                warn!(%client, %batch, size, "refused START: the batch is another client's or another size");
                return;
            }
            Some(_) => {}
            None => {
                if size > MAX_BATCH {
                    warn!(%client, %batch, size, max = MAX_BATCH, "refused START: batch too large");
                    return;
                }
                if !self.make_room(u64::from(size)) {
                    warn!(%client, %batch, size, "refused START: too many tasks remembered already");
                    return;
                }
                let mut b = Batch {
                    client,
                    size,
                    got: TaskSet::new(size),
                    count: 0,
                };
                for task in self.restored.remove(&batch).unwrap_or_default() {
                    if b.got.insert(task) {
                        b.count += 1;
                    }
                }
                debug!(%client, %batch, size, restored = b.count, "batch opened");
                self.tasks_held += u64::from(size);
                self.opened.push_back(batch);
                self.batches.insert(batch, b);
            }
        }
        self.status(batch);
    }

    /// Forgets complete batches, oldest first, until `size` more tasks fit in the budget.
    fn make_room(&mut self, size: u64) -> bool {
        let mut i = 0;
        while self.tasks_held + size > self.task_budget && i < self.opened.len() {
            let id = self.opened[i];
            match self.batches.get(&id) {
                Some(b) if b.count == b.size && !self.uncommitted.iter().any(|u| u.0 == id) => {
                    self.tasks_held -= u64::from(b.size);
                    self.batches.remove(&id);
                    self.opened.remove(i);
                }
                _ => i += 1,
            }
        }
        self.tasks_held + size <= self.task_budget
    }

    /// Queues a STATUS: what the application has committed.
    fn status(&mut self, batch: Uuid) {
        let Some(b) = self.batches.get(&batch) else {
            return;
        };
        let mut have = b.got.clone();
        for (id, task) in self.not_committed() {
            if id == batch {
                have.remove(task);
            }
        }
        self.transmits.push_back(Transmit {
            to: b.client,
            message: PipelineMessage::Status {
                batch,
                size: b.size,
                ranges: have.ranges(),
            },
        });
    }

    fn on_result(&mut self, worker: Uuid, r: TaskResult) {
        let Some(b) = self.batches.get_mut(&r.batch) else {
            warn!(%worker, batch = %r.batch, tasks = r.results.len(), "refused RESULT: unknown batch");
            return;
        };
        if b.client != r.client {
            warn!(%worker, batch = %r.batch, "refused RESULT: names another client than the batch's");
            return;
        }
        // A message naming a task outside the batch comes from a broken or hostile worker:
        // none of it is taken.
        if let Some(bad) = r.results.iter().find(|i| i.task >= b.size) {
            warn!(%worker, batch = %r.batch, task = bad.task, size = b.size, "refused RESULT: task out of range");
            return;
        }
        let (client, size) = (b.client, b.size);
        let mut again = Vec::new();
        for item in r.results {
            if !b.got.insert(item.task) {
                // A duplicate (also within this message): acknowledged again once committed,
                // since the first ACK may be lost.
                again.push(item.task);
                continue;
            }
            b.count += 1;
            self.events.push_back(CollectorEvent::Result {
                client,
                batch: r.batch,
                task: item.task,
                failed: item.failed,
                payload: item.payload,
            });
            if b.count == b.size {
                self.events.push_back(CollectorEvent::BatchComplete {
                    client,
                    batch: r.batch,
                    size,
                });
            }
        }
        if !again.is_empty() {
            let pending: BTreeSet<(Uuid, u32)> = self.not_committed().collect();
            again.retain(|&task| !pending.contains(&(r.batch, task)));
        }
        if !again.is_empty() {
            self.acks
                .entry((client, r.batch))
                .or_default()
                .extend(again);
        }
    }

    /// Results the application has not committed: still queued, or handed out since the last
    /// [`commit`](Self::commit).
    fn not_committed(&self) -> impl Iterator<Item = (Uuid, u32)> + '_ {
        let queued = self.events.iter().filter_map(|e| match e {
            CollectorEvent::Result { batch, task, .. } => Some((*batch, *task)),
            CollectorEvent::BatchComplete { .. } => None,
        });
        self.uncommitted.iter().copied().chain(queued)
    }

    /// The application has durably taken every result handed out so far: acknowledge them.
    pub fn commit(&mut self) {
        let Self {
            uncommitted,
            batches,
            acks,
            ..
        } = self;
        for (batch, task) in uncommitted.drain(..) {
            if let Some(b) = batches.get(&batch) {
                acks.entry((b.client, batch)).or_default().push(task);
            }
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<CollectorEvent> {
        let event = self.events.pop_front()?;
        if let CollectorEvent::Result { batch, task, .. } = &event {
            self.uncommitted.push((*batch, *task));
        }
        Some(event)
    }

    /// The next message to send: STATUS replies, then ACKs (one per batch, up to 4096 tasks).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        let mut entry = self.acks.first_entry()?;
        let (client, batch) = *entry.key();
        let tasks = if entry.get().len() > ACK_MAX {
            entry.get_mut().drain(..ACK_MAX).collect()
        } else {
            entry.remove()
        };
        Some(Transmit {
            to: client,
            message: PipelineMessage::Ack { batch, tasks },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harmony_wire::pipeline::ResultItem;

    const CLIENT: Uuid = Uuid::from_u128(1);
    const WORKER: Uuid = Uuid::from_u128(2);
    const BATCH: Uuid = Uuid::from_u128(3);

    fn collector() -> CollectorCore {
        let mut c = CollectorCore::new();
        c.peer_up(CLIENT, Role::Client);
        c.peer_up(WORKER, Role::Worker);
        c
    }

    fn results(tasks: &[u32]) -> PipelineMessage {
        PipelineMessage::Result(TaskResult {
            client: CLIENT,
            batch: BATCH,
            results: tasks
                .iter()
                .map(|&task| ResultItem {
                    task,
                    failed: false,
                    payload: Bytes::from_static(b"r"),
                })
                .collect(),
        })
    }

    /// The client opens BATCH with `size` tasks.
    fn open(c: &mut CollectorCore, size: u32) {
        c.handle(CLIENT, PipelineMessage::Start { batch: BATCH, size });
    }

    fn result(task: u32) -> PipelineMessage {
        results(&[task])
    }

    fn sent(c: &mut CollectorCore) -> Vec<PipelineMessage> {
        std::iter::from_fn(|| c.poll_transmit())
            .map(|t| t.message)
            .collect()
    }

    #[test]
    fn results_are_acknowledged_only_once_committed_and_handed_out_once() {
        let mut c = collector();
        c.handle(
            CLIENT,
            PipelineMessage::Start {
                batch: BATCH,
                size: 2,
            },
        );
        sent(&mut c);
        c.handle(WORKER, result(1));
        c.handle(WORKER, result(1));
        assert!(matches!(
            c.poll_event(),
            Some(CollectorEvent::Result { task: 1, .. })
        ));
        assert_eq!(c.poll_event(), None, "the duplicate is not handed out");
        assert!(
            sent(&mut c).is_empty(),
            "nothing acknowledged before the commit"
        );
        c.handle(
            CLIENT,
            PipelineMessage::End {
                batch: BATCH,
                size: 2,
            },
        );
        let status = PipelineMessage::Status {
            batch: BATCH,
            size: 2,
            ranges: vec![],
        };
        assert_eq!(
            sent(&mut c),
            vec![status],
            "STATUS counts committed results only"
        );
        c.commit();
        let ack = PipelineMessage::Ack {
            batch: BATCH,
            tasks: vec![1],
        };
        assert_eq!(sent(&mut c), vec![ack]);
    }

    #[test]
    fn a_restored_result_is_reported_and_never_handed_out_again() {
        let mut c = collector();
        c.restore(BATCH, 0);
        c.handle(
            CLIENT,
            PipelineMessage::Start {
                batch: BATCH,
                size: 2,
            },
        );
        let status = PipelineMessage::Status {
            batch: BATCH,
            size: 2,
            ranges: vec![(0, 1)],
        };
        assert_eq!(sent(&mut c), vec![status]);
        c.handle(WORKER, result(0));
        assert_eq!(c.poll_event(), None);
        c.handle(WORKER, result(1));
        assert!(matches!(
            c.poll_event(),
            Some(CollectorEvent::Result { task: 1, .. })
        ));
        assert!(matches!(
            c.poll_event(),
            Some(CollectorEvent::BatchComplete { size: 2, .. })
        ));
    }

    #[test]
    fn a_result_naming_a_task_out_of_range_is_refused_whole() {
        let mut c = collector();
        open(&mut c, 3);
        c.handle(WORKER, results(&[0, 3, 1]));
        assert_eq!(c.poll_event(), None, "nothing of it was taken");
        c.handle(WORKER, results(&[0, 1]));
        assert!(matches!(
            c.poll_event(),
            Some(CollectorEvent::Result { task: 0, .. })
        ));
    }

    #[test]
    fn a_task_twice_in_one_result_is_handed_out_once_and_acknowledged() {
        let mut c = collector();
        open(&mut c, 2);
        sent(&mut c);
        c.handle(WORKER, results(&[1, 1, 1]));
        assert!(matches!(
            c.poll_event(),
            Some(CollectorEvent::Result { task: 1, .. })
        ));
        assert_eq!(c.poll_event(), None, "the repeats are not handed out");
        c.commit();
        let ack = PipelineMessage::Ack {
            batch: BATCH,
            tasks: vec![1],
        };
        assert_eq!(
            sent(&mut c),
            vec![ack],
            "acknowledged once, after the commit"
        );
    }

    #[test]
    fn over_the_budget_complete_batches_are_forgotten_and_open_ones_kept() {
        let mut c = collector().with_task_budget(3);
        c.handle(
            CLIENT,
            PipelineMessage::Start {
                batch: BATCH,
                size: 2,
            },
        );
        c.handle(WORKER, result(0));
        c.handle(WORKER, result(1));
        while c.poll_event().is_some() {}
        c.commit();
        let other = Uuid::from_u128(4);
        c.handle(
            CLIENT,
            PipelineMessage::Start {
                batch: other,
                size: 3,
            },
        );
        assert_eq!(c.batches.len(), 1, "the complete batch made room");
        let third = Uuid::from_u128(5);
        c.handle(
            CLIENT,
            PipelineMessage::Start {
                batch: third,
                size: 1,
            },
        );
        assert!(
            !c.batches.contains_key(&third),
            "an open batch is never evicted"
        );
    }
}
