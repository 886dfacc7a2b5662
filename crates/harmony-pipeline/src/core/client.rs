//! The client (ventilator): holds its batches in memory, sends each task to a worker that has
//! credit, and resends what the collector does not acknowledge.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use harmony_wire::pipeline::{Credit, PipelineMessage, Task, TaskItem};
use tracing::{debug, warn};
use uuid::Uuid;

use super::{Role, Timing, Transmit, MAX_BATCH};
use crate::error::PipelineError;

/// What the client tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// More of a batch's results reached the collector's application.
    Progress {
        /// The batch.
        batch: Uuid,
        /// Results acknowledged so far.
        done: u32,
        /// Tasks in the batch.
        size: u32,
    },
    /// The collector's application has every result of the batch.
    Complete {
        /// The batch.
        batch: Uuid,
        /// Tasks sent more than once.
        resent: u64,
    },
}

/// Most tasks in one TASK message (the worker's credit usually bounds it first).
const MAX_TASKS_PER_MESSAGE: usize = 1024;
/// Payload bytes after which a TASK message takes no more tasks (it always takes one).
const MAX_TASK_BYTES: usize = 1 << 20;

/// One TASK message sent: its entries have the sequence numbers `seq..seq + tasks.len()`.
#[derive(Debug, Clone)]
struct Sent {
    seq: u64,
    batch: Uuid,
    worker: Uuid,
    tasks: Arc<[u32]>,
    /// When it was sent (in `unseen`), or when its tasks are due (in `leases`).
    at: Instant,
    /// Entries before this one are known to be no longer assigned under this message (leases).
    settled: usize,
}

impl Sent {
    /// The entries still assigned under this message.
    fn assigned<'a>(&'a self, b: &'a Batch) -> impl Iterator<Item = (u32, u64)> + 'a {
        (self.seq..)
            .zip(self.tasks.iter())
            .skip(self.settled)
            .filter(|&(seq, &task)| {
                b.state[task as usize]
                    == TaskState::Assigned {
                        worker: self.worker,
                        seq,
                    }
            })
            .map(|(seq, &task)| (task, seq))
    }
}

/// One worker, as the client sees it.
#[derive(Debug)]
struct Link {
    /// From the worker's last CREDIT.
    window: u32,
    held: u32,
    next_seq: u64,
    /// TASK messages sent that the worker has not reported seeing, in ascending `seq` order
    /// (TASKs are numbered as sent), and how many tasks they carry.
    unseen: VecDeque<Sent>,
    unseen_tasks: u32,
    last_heard: Instant,
}

impl Link {
    fn free(&self) -> u32 {
        self.window
            .saturating_sub(self.held)
            .saturating_sub(self.unseen_tasks)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Unsent,
    Pending,
    Assigned { worker: Uuid, seq: u64 },
    Done,
}

#[derive(Debug)]
struct Batch {
    tasks: Vec<Bytes>,
    state: Vec<TaskState>,
    /// Tasks below this number have been sent at least once.
    next_unsent: u32,
    /// Tasks to send again, in order; entries whose state moved on are skipped.
    queue: VecDeque<u32>,
    done: u32,
    collector: Option<Uuid>,
    /// The collector answered START with STATUS: tasks may flow.
    opened: bool,
    next_query: Instant,
    resent: u64,
}

impl Batch {
    fn size(&self) -> u32 {
        self.tasks.len() as u32
    }

    fn complete(&self) -> bool {
        self.done == self.size()
    }

    /// Puts an assigned task back in the queue.
    fn requeue(&mut self, task: u32) {
        self.state[task as usize] = TaskState::Pending;
        self.queue.push_back(task);
    }

    fn all_sent(&self) -> bool {
        self.next_unsent == self.size()
            && !self
                .queue
                .iter()
                .any(|&t| self.state[t as usize] == TaskState::Pending)
    }

    /// The next task to send: a task to send again first, then the next never sent.
    fn next_task(&mut self) -> Option<u32> {
        while let Some(task) = self.queue.pop_front() {
            if self.state[task as usize] == TaskState::Pending {
                return Some(task);
            }
        }
        while self.next_unsent < self.size() {
            let task = self.next_unsent;
            self.next_unsent += 1;
            // A STATUS may have reported it done before it was ever sent.
            if self.state[task as usize] == TaskState::Unsent {
                return Some(task);
            }
        }
        None
    }

    /// Whether a task is waiting to be sent (drops entries at the front that moved on).
    fn has_work(&mut self) -> bool {
        while let Some(&task) = self.queue.front() {
            if self.state[task as usize] == TaskState::Pending {
                return true;
            }
            self.queue.pop_front();
        }
        // A STATUS may have reported tasks done before they were ever sent.
        while self.next_unsent < self.size()
            && self.state[self.next_unsent as usize] != TaskState::Unsent
        {
            self.next_unsent += 1;
        }
        self.next_unsent < self.size()
    }
}

/// The client's state machine.
#[derive(Debug)]
pub struct ClientCore {
    timing: Timing,
    workers: BTreeMap<Uuid, Link>,
    /// Workers counted dead for their silence alone (their node is still up): a CREDIT from
    /// one brings it back.
    silent: BTreeSet<Uuid>,
    collectors: BTreeSet<Uuid>,
    batches: BTreeMap<Uuid, Batch>,
    /// Batches completed: late reports about them are ignored quietly.
    finished: BTreeSet<Uuid>,
    /// Task leases by TASK message, in the order given (the timeout is constant, so deadlines
    /// ascend); `at` is the deadline.
    leases: VecDeque<Sent>,
    /// Worker to try first next time, for round robin.
    next_worker: Option<Uuid>,
    /// Messages were handled since the last dispatch of tasks (when): the next
    /// [`poll_transmit`](Self::poll_transmit) sends what the credit allows.
    dispatch_due: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
}

impl ClientCore {
    /// A client with no peers and no batches.
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            workers: BTreeMap::new(),
            silent: BTreeSet::new(),
            collectors: BTreeSet::new(),
            batches: BTreeMap::new(),
            finished: BTreeSet::new(),
            leases: VecDeque::new(),
            next_worker: None,
            dispatch_due: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Adds a batch; its tasks are numbered in the order given.
    pub fn submit(
        &mut self,
        batch: Uuid,
        tasks: Vec<Bytes>,
        now: Instant,
    ) -> Result<(), PipelineError> {
        if tasks.len() > MAX_BATCH as usize {
            return Err(PipelineError::BatchTooLarge(tasks.len()));
        }
        if self.batches.contains_key(&batch) || self.finished.contains(&batch) {
            return Err(PipelineError::DuplicateBatch(batch));
        }
        let size = tasks.len() as u32;
        if size == 0 {
            self.finished.insert(batch);
            self.events
                .push_back(ClientEvent::Complete { batch, resent: 0 });
            return Ok(());
        }
        let b = Batch {
            state: vec![TaskState::Unsent; tasks.len()],
            next_unsent: 0,
            queue: VecDeque::new(),
            tasks,
            done: 0,
            collector: None,
            opened: false,
            next_query: now,
            resent: 0,
        };
        self.batches.insert(batch, b);
        self.bind_collectors(now);
        Ok(())
    }

    /// A peer of the pipeline appeared.
    pub fn peer_up(&mut self, peer: Uuid, role: Role, now: Instant) {
        match role {
            Role::Worker => self.add_worker(peer, now),
            Role::Collector => {
                self.collectors.insert(peer);
                self.bind_collectors(now);
            }
            Role::Client => {}
        }
    }

    fn add_worker(&mut self, peer: Uuid, now: Instant) {
        self.silent.remove(&peer);
        self.workers.entry(peer).or_insert_with(|| Link {
            window: 0,
            held: 0,
            next_seq: 0,
            unseen: VecDeque::new(),
            unseen_tasks: 0,
            last_heard: now,
        });
    }

    /// A peer left, died, or went silent: its work is given to others.
    pub fn peer_down(&mut self, peer: Uuid, now: Instant) {
        self.silent.remove(&peer);
        if self.workers.remove(&peer).is_some() {
            debug!(%peer, "worker gone, its tasks go back to the queue");
            for b in self.batches.values_mut() {
                for task in 0..b.size() {
                    if matches!(b.state[task as usize], TaskState::Assigned { worker, .. } if worker == peer)
                    {
                        b.requeue(task);
                    }
                }
            }
        }
        if self.collectors.remove(&peer) {
            for b in self.batches.values_mut() {
                if b.collector == Some(peer) && !b.complete() {
                    debug!(%peer, "collector gone, its batch moves on");
                    b.collector = None;
                    b.opened = false;
                    // Results of tasks in progress would go to the dead collector.
                    for task in 0..b.size() {
                        if matches!(b.state[task as usize], TaskState::Assigned { .. }) {
                            b.requeue(task);
                        }
                    }
                }
            }
            self.bind_collectors(now);
        }
    }

    /// Gives every batch without a collector the first one known, and asks it to open them.
    fn bind_collectors(&mut self, now: Instant) {
        let Some(&collector) = self.collectors.iter().next() else {
            return;
        };
        for (&id, b) in &mut self.batches {
            if b.collector.is_none() && !b.complete() {
                b.collector = Some(collector);
                b.opened = false;
                b.next_query = now + self.timing.heartbeat;
                self.transmits.push_back(Transmit {
                    to: collector,
                    message: PipelineMessage::Start {
                        batch: id,
                        size: b.size(),
                    },
                });
            }
        }
    }

    /// Handles one message from `from`.
    pub fn handle(&mut self, from: Uuid, message: PipelineMessage, now: Instant) {
        match message {
            PipelineMessage::Credit(credit) => self.on_credit(from, credit, now),
            PipelineMessage::Status {
                batch,
                size,
                ranges,
            } => self.on_status(from, batch, size, &ranges),
            PipelineMessage::Ack { batch, tasks } => self.on_ack(from, batch, &tasks),
            other => warn!(%from, message = other.name(), "refused: not a message for a client"),
        }
        // Tasks go out once the whole burst is handled (at the next poll).
        self.dispatch_due.get_or_insert(now);
    }

    fn on_credit(&mut self, from: Uuid, credit: Credit, now: Instant) {
        if self.silent.contains(&from) {
            // Counted dead for a silence (a loaded machine), yet alive: it works again. What it
            // had was sent to others; a result of both reaches the collector's application once.
            debug!(%from, "a worker counted dead for its silence speaks again");
            self.add_worker(from, now);
        }
        let Some(link) = self.workers.get_mut(&from) else {
            // Also the last words of a worker just counted dead.
            debug!(%from, "refused CREDIT: not a worker of this pipeline");
            return;
        };
        link.last_heard = now;
        // The latest CREDIT wins even when it reports less than an earlier one: over one ZMTP
        // connection that means the worker started counting again (it saw us leave and come
        // back). A reordered one (the simulation) only skews flow control until the next.
        if credit.seen > link.next_seq {
            // The worker counts TASKs of an earlier session with us (it never saw us leave):
            // number ours from there.
            warn!(%from, seen = credit.seen, sent = link.next_seq, "CREDIT reports TASKs never sent in this session; resynchronised");
            link.next_seq = credit.seen;
        }
        link.window = credit.window;
        link.held = credit.held;
        // A worker takes or refuses a TASK message whole: any entry seen means all were.
        while let Some(sent) = link.unseen.front() {
            if sent.seq >= credit.seen {
                break;
            }
            link.unseen_tasks -= sent.tasks.len() as u32;
            link.unseen.pop_front();
        }
    }

    /// The batch `from` may report on, if it is its collector's.
    fn batch_of(&mut self, from: Uuid, batch: Uuid, what: &str) -> Option<&mut Batch> {
        match self.batches.get_mut(&batch) {
            None if self.finished.contains(&batch) => None,
            None => {
                warn!(%from, %batch, "refused {what}: unknown batch");
                None
            }
            Some(b) if b.collector != Some(from) => {
                warn!(%from, %batch, "refused {what}: not this batch's collector");
                None
            }
            Some(b) => Some(b),
        }
    }

    fn on_status(&mut self, from: Uuid, batch: Uuid, size: u32, ranges: &[(u32, u32)]) {
        let Some(b) = self.batch_of(from, batch, "STATUS") else {
            return;
        };
        if size != b.size() {
            warn!(%from, %batch, size, "refused STATUS: wrong batch size");
            return;
        }
        if ranges
            .iter()
            .any(|&(first, end)| first >= end || end > size)
        {
            warn!(%from, %batch, "refused STATUS: a range outside the batch");
            return;
        }
        b.opened = true;
        let before = b.done;
        for &(first, end) in ranges {
            for task in first..end {
                mark_done(b, task);
            }
        }
        if b.done != before {
            self.progress(batch);
        }
    }

    fn on_ack(&mut self, from: Uuid, batch: Uuid, tasks: &[u32]) {
        let Some(b) = self.batch_of(from, batch, "ACK") else {
            return;
        };
        if let Some(&bad) = tasks
            .iter()
            .find(|&&t| t >= b.size() || b.state[t as usize] == TaskState::Unsent)
        {
            warn!(%from, %batch, task = bad, "refused ACK: a task never sent");
            return;
        }
        let before = b.done;
        for &task in tasks {
            mark_done(b, task);
        }
        if b.done != before {
            self.progress(batch);
        }
    }

    fn progress(&mut self, batch: Uuid) {
        let Some(b) = self.batches.get(&batch) else {
            return;
        };
        self.events.push_back(ClientEvent::Progress {
            batch,
            done: b.done,
            size: b.size(),
        });
        if b.complete() {
            self.events.push_back(ClientEvent::Complete {
                batch,
                resent: b.resent,
            });
            // The batch's memory goes; a late report about it is refused as unknown.
            self.batches.remove(&batch);
            self.finished.insert(batch);
        }
    }

    /// Sends queued tasks to workers with free credit, round robin: each worker gets what its
    /// credit allows in one TASK message (one per batch).
    fn dispatch(&mut self, now: Instant) {
        self.settle_leases();
        if self.workers.is_empty() || self.batches.is_empty() {
            return;
        }
        let order: Vec<Uuid> = match self.next_worker {
            Some(first) => self
                .workers
                .range(first..)
                .chain(self.workers.range(..first))
                .map(|(id, _)| *id)
                .collect(),
            None => self.workers.keys().copied().collect(),
        };
        let mut progress = true;
        while progress {
            progress = false;
            for &worker in &order {
                let free = self.workers.get(&worker).map_or(0, Link::free);
                if free == 0 {
                    continue;
                }
                if !self.send_tasks(worker, free as usize, now) {
                    return;
                }
                self.next_worker = self.workers.range(worker..).nth(1).map(|(id, _)| *id);
                progress = true;
            }
        }
    }

    /// Sends `worker` up to `free` tasks of the first open batch with work in one TASK
    /// message; false when no batch has any.
    fn send_tasks(&mut self, worker: Uuid, free: usize, now: Instant) -> bool {
        let Some((batch, b)) = self.batches.iter_mut().find_map(|(&id, b)| {
            (b.opened && b.collector.is_some() && b.has_work()).then_some((id, b))
        }) else {
            return false;
        };
        let (Some(link), Some(collector)) = (self.workers.get_mut(&worker), b.collector) else {
            return false;
        };
        let seq = link.next_seq;
        let limit = free.min(MAX_TASKS_PER_MESSAGE);
        let mut items = Vec::with_capacity(limit);
        let mut numbers = Vec::with_capacity(limit);
        let mut bytes = 0;
        while items.len() < limit && bytes < MAX_TASK_BYTES {
            let Some(task) = b.next_task() else { break };
            let state = &mut b.state[task as usize];
            if *state == TaskState::Pending {
                b.resent += 1;
            }
            *state = TaskState::Assigned {
                worker,
                seq: seq + items.len() as u64,
            };
            let payload = b.tasks[task as usize].clone();
            bytes += payload.len();
            items.push(TaskItem { task, payload });
            numbers.push(task);
        }
        if items.is_empty() {
            return false;
        }
        let count = items.len() as u32;
        link.next_seq += u64::from(count);
        link.unseen_tasks += count;
        let sent = Sent {
            seq,
            batch,
            worker,
            tasks: numbers.into(),
            at: now,
            settled: 0,
        };
        self.leases.push_back(Sent {
            at: now + self.timing.task_timeout,
            ..sent.clone()
        });
        link.unseen.push_back(sent);
        self.transmits.push_back(Transmit {
            to: worker,
            message: PipelineMessage::Task(Task {
                seq,
                batch,
                collector,
                tasks: items,
            }),
        });
        true
    }

    /// Forgets leases at the front whose tasks are all acknowledged or sent again since, so
    /// that a long batch keeps only the leases of tasks in flight.
    fn settle_leases(&mut self) {
        while let Some(lease) = self.leases.front_mut() {
            if let Some(b) = self.batches.get(&lease.batch) {
                let pending = (lease.seq..)
                    .zip(lease.tasks.iter())
                    .skip(lease.settled)
                    .position(|(seq, &task)| {
                        b.state[task as usize]
                            == TaskState::Assigned {
                                worker: lease.worker,
                                seq,
                            }
                    });
                if let Some(i) = pending {
                    lease.settled += i;
                    return;
                }
            }
            self.leases.pop_front();
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let silent: Vec<Uuid> = self
            .workers
            .iter()
            .filter(|(_, l)| now >= l.last_heard + self.timing.peer_timeout)
            .map(|(id, _)| *id)
            .collect();
        for worker in silent {
            warn!(%worker, "worker silent past the deadline, counted dead");
            self.peer_down(worker, now);
            self.silent.insert(worker);
        }
        // TASKs the worker never reported seeing.
        for (&worker, link) in &mut self.workers {
            while let Some(sent) = link.unseen.front() {
                if now < sent.at + self.timing.lost_after {
                    break;
                }
                debug!(%worker, batch = %sent.batch, seq = sent.seq, tasks = sent.tasks.len(), "TASK not seen by the worker in time, sent again");
                requeue(&mut self.batches, sent);
                link.unseen_tasks -= sent.tasks.len() as u32;
                link.unseen.pop_front();
            }
        }
        while let Some(lease) = self.leases.front() {
            if now < lease.at {
                break;
            }
            let n = requeue(&mut self.batches, lease);
            if n > 0 {
                debug!(worker = %lease.worker, batch = %lease.batch, tasks = n, "no result in time, tasks sent again");
            }
            self.leases.pop_front();
        }
        for (&id, b) in &mut self.batches {
            let Some(collector) = b.collector else {
                continue;
            };
            if now < b.next_query {
                continue;
            }
            b.next_query = now + self.timing.heartbeat;
            let size = b.size();
            let message = if !b.opened {
                PipelineMessage::Start { batch: id, size }
            } else if b.all_sent() {
                PipelineMessage::End { batch: id, size }
            } else {
                continue;
            };
            self.transmits.push_back(Transmit {
                to: collector,
                message,
            });
        }
        self.dispatch_due = None;
        self.dispatch(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let workers = self.workers.values().flat_map(|l| {
            let lost = l.unseen.front().map(|u| u.at + self.timing.lost_after);
            [Some(l.last_heard + self.timing.peer_timeout), lost]
        });
        let batches = self
            .batches
            .values()
            .filter(|b| b.collector.is_some())
            .map(|b| Some(b.next_query));
        let lease = self.leases.front().map(|l| l.at);
        // A dispatch not done yet is due at once.
        let due = self.dispatch_due;
        workers.chain(batches).chain([lease, due]).flatten().min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(now) = self.dispatch_due.take() {
            self.dispatch(now);
        }
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Batches not complete yet.
    pub fn open_batches(&self) -> usize {
        self.batches.len()
    }
}

fn mark_done(b: &mut Batch, task: u32) {
    let state = &mut b.state[task as usize];
    if *state != TaskState::Done {
        *state = TaskState::Done;
        b.done += 1;
    }
}

/// Requeues the tasks of `sent` still assigned under it; how many.
fn requeue(batches: &mut BTreeMap<Uuid, Batch>, sent: &Sent) -> usize {
    let Some(b) = batches.get_mut(&sent.batch) else {
        return 0;
    };
    let tasks: Vec<u32> = sent.assigned(b).map(|(task, _)| task).collect();
    for &task in &tasks {
        b.requeue(task);
    }
    tasks.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client with one worker (window 1) and one collector that opened a 4-task batch.
    fn client() -> (ClientCore, Uuid, Uuid, Uuid, Instant) {
        let now = Instant::now();
        let (worker, collector, batch) =
            (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut c = ClientCore::new(Timing::default());
        c.peer_up(worker, Role::Worker, now);
        c.peer_up(collector, Role::Collector, now);
        c.submit(batch, (0..4).map(|i| Bytes::from(vec![i])).collect(), now)
            .unwrap();
        let status = PipelineMessage::Status {
            batch,
            size: 4,
            ranges: vec![],
        };
        c.handle(collector, status, now);
        let credit = Credit {
            window: 1,
            seen: 0,
            held: 0,
        };
        c.handle(worker, PipelineMessage::Credit(credit), now);
        (c, worker, collector, batch, now)
    }

    fn sent_tasks(c: &mut ClientCore) -> Vec<u32> {
        std::iter::from_fn(|| c.poll_transmit())
            .filter_map(|t| match t.message {
                PipelineMessage::Task(t) => Some(t.tasks),
                _ => None,
            })
            .flatten()
            .map(|i| i.task)
            .collect()
    }

    #[test]
    fn a_worker_gets_no_more_than_its_credit() {
        let (mut c, ..) = client();
        assert_eq!(sent_tasks(&mut c), vec![0]);
    }

    #[test]
    fn an_ack_for_a_task_never_sent_is_refused() {
        let (mut c, _, collector, batch, now) = client();
        assert_eq!(sent_tasks(&mut c), vec![0], "tasks leave when polled");
        let ack = PipelineMessage::Ack {
            batch,
            tasks: vec![0, 3],
        };
        c.handle(collector, ack, now);
        assert_eq!(
            c.poll_event(),
            None,
            "task 3 was never sent: the whole ACK is refused"
        );
        let ack = PipelineMessage::Ack {
            batch,
            tasks: vec![0],
        };
        c.handle(collector, ack, now);
        let progress = ClientEvent::Progress {
            batch,
            done: 1,
            size: 4,
        };
        assert_eq!(c.poll_event(), Some(progress));
    }

    #[test]
    fn reports_from_the_wrong_peer_or_outside_the_batch_are_refused() {
        let (mut c, worker, collector, batch, now) = client();
        let out_of_range = PipelineMessage::Status {
            batch,
            size: 4,
            ranges: vec![(0, 9)],
        };
        c.handle(collector, out_of_range.clone(), now);
        let from_worker = PipelineMessage::Status {
            batch,
            size: 4,
            ranges: vec![(0, 4)],
        };
        c.handle(worker, from_worker, now);
        let unknown = PipelineMessage::Ack {
            batch: Uuid::from_u128(9),
            tasks: vec![0],
        };
        c.handle(collector, unknown, now);
        assert_eq!(c.poll_event(), None);
        assert_eq!(c.open_batches(), 1);
    }

    #[test]
    fn a_worker_counted_dead_for_its_silence_works_again_after_its_next_credit() {
        let (mut c, worker, _, _, now) = client();
        assert_eq!(sent_tasks(&mut c), vec![0]);
        let later = now + Timing::default().peer_timeout;
        c.handle_timeout(later);
        assert_eq!(sent_tasks(&mut c), vec![], "no worker left");
        let credit = Credit {
            window: 1,
            seen: 1,
            held: 0,
        };
        c.handle(worker, PipelineMessage::Credit(credit), later);
        assert_eq!(
            sent_tasks(&mut c),
            vec![0],
            "its task went back to the queue, and to it"
        );
        c.peer_down(worker, later);
        c.handle(worker, PipelineMessage::Credit(credit), later);
        assert_eq!(
            sent_tasks(&mut c),
            vec![],
            "gone from its node: a CREDIT does not revive it"
        );
    }

    #[test]
    fn a_credit_from_an_earlier_session_resynchronises_the_numbering() {
        let (mut c, worker, _, _, now) = client();
        sent_tasks(&mut c);
        let earlier = Credit {
            window: 2,
            seen: 50,
            held: 0,
        };
        c.handle(worker, PipelineMessage::Credit(earlier), now);
        let seqs: Vec<(u64, usize)> = std::iter::from_fn(|| c.poll_transmit())
            .filter_map(|t| match t.message {
                PipelineMessage::Task(t) => Some((t.seq, t.tasks.len())),
                _ => None,
            })
            .collect();
        assert_eq!(
            seqs,
            vec![(50, 2)],
            "numbered after what the worker has seen, window 2, in one message"
        );
    }
}
