//! The worker: grants each client a window of tasks (CREDIT), queues what arrives, hands jobs
//! to its driver `jobs` at a time, and sends each outcome to the task's collector.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use harmony_wire::pipeline::{Credit, PipelineMessage, ResultItem, Task, TaskResult};
use tracing::{debug, warn};
use uuid::Uuid;

use super::{Role, Timing, Transmit};

/// One task to run, handed to the driver by [`WorkerCore::poll_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The client that sent it.
    pub client: Uuid,
    /// The batch.
    pub batch: Uuid,
    /// The task number.
    pub task: u32,
    /// Where the result goes.
    pub collector: Uuid,
    /// The task's bytes.
    pub payload: Bytes,
}

impl Job {
    fn key(&self) -> (Uuid, Uuid, u32, Uuid) {
        (self.client, self.batch, self.task, self.collector)
    }
}

/// Most outcomes in one RESULT message.
const MAX_RESULTS_PER_MESSAGE: usize = 1024;
/// Payload bytes after which a RESULT message takes no more outcomes (it always takes one).
const MAX_RESULT_BYTES: usize = 1 << 20;

/// Outcomes waiting to leave in one RESULT: for one collector, client and batch.
#[derive(Debug)]
struct Outgoing {
    collector: Uuid,
    client: Uuid,
    batch: Uuid,
    results: Vec<ResultItem>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct ClientLink {
    seen: u64,
    held: u32,
    /// A CREDIT is owed (held changed).
    dirty: bool,
}

/// The worker's state machine.
#[derive(Debug)]
pub struct WorkerCore {
    timing: Timing,
    window: u32,
    jobs: usize,
    clients: BTreeMap<Uuid, ClientLink>,
    collectors: BTreeSet<Uuid>,
    queue: VecDeque<Job>,
    /// Jobs whose collector is not known here yet (it may be starting), with when they came.
    parked: Vec<(Instant, Job)>,
    /// Jobs queued or running, by (client, batch, task, collector): a duplicate TASK is not run
    /// twice at once (the same task for another collector is another job). Never iterated;
    /// bounded by twice each client's window. Every task passes through it twice, hence a fast
    /// hasher.
    holding: foldhash::HashSet<(Uuid, Uuid, u32, Uuid)>,
    running: usize,
    next_heartbeat: Option<Instant>,
    /// Outcomes not sent yet, grouped into RESULT messages (full ones first).
    results: VecDeque<Outgoing>,
}

impl WorkerCore {
    /// A worker running `jobs` tasks at once and granting each client `window` tasks.
    pub fn new(timing: Timing, jobs: usize, window: u32) -> Self {
        Self {
            timing,
            window: window.max(1),
            jobs: jobs.max(1),
            clients: BTreeMap::new(),
            collectors: BTreeSet::new(),
            queue: VecDeque::new(),
            parked: Vec::new(),
            holding: foldhash::HashSet::default(),
            running: 0,
            next_heartbeat: None,
            results: VecDeque::new(),
        }
    }

    /// A peer of the pipeline appeared; a client gets its first CREDIT at once.
    pub fn peer_up(&mut self, peer: Uuid, role: Role, now: Instant) {
        if role == Role::Collector {
            self.collectors.insert(peer);
            let (ready, waiting) = std::mem::take(&mut self.parked)
                .into_iter()
                .partition(|(_, j)| j.collector == peer);
            self.parked = waiting;
            self.queue.extend(ready.into_iter().map(|(_, j)| j));
        }
        if role == Role::Client {
            self.clients.entry(peer).or_default().dirty = true;
            self.next_heartbeat
                .get_or_insert(now + self.timing.heartbeat);
        }
    }

    /// A peer left or died: a client's queued tasks are dropped (running ones finish unsent).
    pub fn peer_down(&mut self, peer: Uuid) {
        self.collectors.remove(&peer);
        if self.clients.remove(&peer).is_some() {
            let holding = &mut self.holding;
            self.parked.retain(|(_, j)| {
                let keep = j.client != peer;
                if !keep {
                    holding.remove(&j.key());
                }
                keep
            });
            self.queue.retain(|j| {
                let keep = j.client != peer;
                if !keep {
                    holding.remove(&j.key());
                }
                keep
            });
        }
    }

    /// Handles one message from `from`.
    pub fn handle(&mut self, from: Uuid, message: PipelineMessage, now: Instant) {
        let PipelineMessage::Task(task) = message else {
            warn!(%from, message = message.name(), "refused: not a message for a worker");
            return;
        };
        self.on_task(from, task, now);
    }

    fn on_task(&mut self, from: Uuid, task: Task, now: Instant) {
        let window = self.window;
        let Some(link) = self.clients.get_mut(&from) else {
            warn!(%from, "refused TASK: not a client of this pipeline");
            return;
        };
        let count = task.tasks.len() as u32;
        if link.held.saturating_add(count) > window.saturating_mul(2) {
            warn!(%from, held = link.held, tasks = count, window, "refused TASK: over the credit granted");
            return;
        }
        link.seen = link.seen.max(task.seq.saturating_add(u64::from(count)));
        link.dirty = true;
        let known = self.collectors.contains(&task.collector);
        if !known {
            // The collector may have just started; its ENTER is on the way.
            debug!(%from, collector = %task.collector, tasks = count, "TASK waits for its collector to be known");
        }
        for item in task.tasks {
            if !self
                .holding
                .insert((from, task.batch, item.task, task.collector))
            {
                debug!(%from, batch = %task.batch, task = item.task, "duplicate TASK ignored");
                continue;
            }
            link.held += 1;
            let job = Job {
                client: from,
                batch: task.batch,
                task: item.task,
                collector: task.collector,
                payload: item.payload,
            };
            if known {
                self.queue.push_back(job);
            } else {
                self.parked.push((now, job));
            }
        }
    }

    /// Forgets a job that will not run: it no longer counts against its client's window.
    fn drop_job(&mut self, job: &Job) {
        self.holding.remove(&job.key());
        if let Some(link) = self.clients.get_mut(&job.client) {
            link.held = link.held.saturating_sub(1);
            link.dirty = true;
        }
    }

    /// The next job to run, if fewer than `jobs` run now.
    pub fn poll_job(&mut self) -> Option<Job> {
        if self.running >= self.jobs {
            return None;
        }
        let job = self.queue.pop_front()?;
        self.running += 1;
        Some(job)
    }

    /// A job from [`poll_job`](Self::poll_job) ended: `Ok(result)` or `Err(error text)` after
    /// the driver's retries. The result goes to the job's collector.
    pub fn finished(&mut self, job: Job, outcome: Result<Bytes, Bytes>) {
        self.running = self.running.saturating_sub(1);
        self.holding.remove(&job.key());
        let Some(link) = self.clients.get_mut(&job.client) else {
            debug!(client = %job.client, "result dropped: its client is gone");
            return;
        };
        link.held = link.held.saturating_sub(1);
        link.dirty = true;
        let (failed, payload) = match outcome {
            Ok(result) => (false, result),
            Err(error) => (true, error),
        };
        let same = |o: &Outgoing| {
            o.collector == job.collector && o.client == job.client && o.batch == job.batch
        };
        // Usually the newest group (one batch at a time); full groups are never added to.
        let open =
            self.results.iter_mut().rev().find(|o| same(o)).filter(|o| {
                o.results.len() < MAX_RESULTS_PER_MESSAGE && o.bytes < MAX_RESULT_BYTES
            });
        let out = match open {
            Some(out) => out,
            None => {
                self.results.push_back(Outgoing {
                    collector: job.collector,
                    client: job.client,
                    batch: job.batch,
                    results: Vec::new(),
                    bytes: 0,
                });
                self.results.back_mut().expect("just pushed")
            }
        };
        out.bytes += payload.len();
        out.results.push(ResultItem {
            task: job.task,
            failed,
            payload,
        });
    }

    /// Runs the timers due at `now`: every client gets a CREDIT each heartbeat.
    pub fn handle_timeout(&mut self, now: Instant) {
        let deadline = self.timing.peer_timeout;
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(since, _)| now >= *since + deadline);
        self.parked = waiting;
        for (_, job) in expired {
            warn!(client = %job.client, collector = %job.collector, "refused TASK: its collector never appeared");
            self.drop_job(&job);
        }
        if self.next_heartbeat.is_some_and(|t| now >= t) {
            for link in self.clients.values_mut() {
                link.dirty = true;
            }
            self.next_heartbeat = Some(now + self.timing.heartbeat);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_heartbeat
    }

    /// The next message to send: results first (one RESULT per collector, client and batch),
    /// then the CREDITs owed, one per client.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(out) = self.results.pop_front() {
            return Some(Transmit {
                to: out.collector,
                message: PipelineMessage::Result(TaskResult {
                    client: out.client,
                    batch: out.batch,
                    results: out.results,
                }),
            });
        }
        let (&client, link) = self.clients.iter_mut().find(|(_, l)| l.dirty)?;
        link.dirty = false;
        Some(Transmit {
            to: client,
            message: PipelineMessage::Credit(Credit {
                window: self.window,
                seen: link.seen,
                held: link.held,
            }),
        })
    }

    /// Jobs queued, not yet handed out.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harmony_wire::pipeline::TaskItem;

    const CLIENT: Uuid = Uuid::from_u128(1);
    const COLLECTOR: Uuid = Uuid::from_u128(2);
    const BATCH: Uuid = Uuid::from_u128(3);

    /// A worker of window 2 that knows the client and the collector.
    fn worker(now: Instant) -> WorkerCore {
        let mut w = WorkerCore::new(Timing::default(), 4, 2);
        w.peer_up(CLIENT, Role::Client, now);
        w.peer_up(COLLECTOR, Role::Collector, now);
        w
    }

    fn tasks(seq: u64, numbers: &[u32]) -> PipelineMessage {
        PipelineMessage::Task(Task {
            seq,
            batch: BATCH,
            collector: COLLECTOR,
            tasks: numbers
                .iter()
                .map(|&task| TaskItem {
                    task,
                    payload: Bytes::from_static(b"t"),
                })
                .collect(),
        })
    }

    fn credits(w: &mut WorkerCore) -> Vec<Credit> {
        std::iter::from_fn(|| w.poll_transmit())
            .filter_map(|t| match t.message {
                PipelineMessage::Credit(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_task_message_over_twice_the_window_is_refused_whole() {
        let now = Instant::now();
        let mut w = worker(now);
        credits(&mut w);
        w.handle(CLIENT, tasks(0, &[0, 1, 2, 3, 4]), now);
        assert_eq!(w.poll_job(), None, "none of it is queued");
        assert_eq!(credits(&mut w), vec![], "nothing seen, nothing held");
    }

    #[test]
    fn a_task_twice_in_one_message_runs_once_and_every_entry_counts_as_seen() {
        let now = Instant::now();
        let mut w = worker(now);
        credits(&mut w);
        w.handle(CLIENT, tasks(10, &[7, 7, 8]), now);
        let jobs: Vec<u32> = std::iter::from_fn(|| w.poll_job())
            .map(|j| j.task)
            .collect();
        assert_eq!(jobs, vec![7, 8]);
        let credit = Credit {
            window: 2,
            seen: 13,
            held: 2,
        };
        assert_eq!(credits(&mut w), vec![credit]);
    }

    #[test]
    fn outcomes_for_one_batch_leave_in_one_result() {
        let now = Instant::now();
        let mut w = worker(now);
        w.handle(CLIENT, tasks(0, &[0, 1]), now);
        let jobs: Vec<Job> = std::iter::from_fn(|| w.poll_job()).collect();
        for job in jobs {
            let task = job.task;
            w.finished(job, Ok(Bytes::from(vec![task as u8])));
        }
        let results: Vec<TaskResult> = std::iter::from_fn(|| w.poll_transmit())
            .filter_map(|t| match t.message {
                PipelineMessage::Result(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(results.len(), 1);
        let tasks: Vec<u32> = results[0].results.iter().map(|r| r.task).collect();
        assert_eq!(tasks, vec![0, 1]);
    }
}
