//! A deterministic world for the pipeline's sans-IO cores: a virtual clock, one event queue,
//! a network that loses, duplicates and reorders (every message goes through the codec),
//! workers that crash and are replaced, a collector that restarts from its durable record.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_pipeline::core::{
    ClientCore, ClientEvent, CollectorCore, CollectorEvent, Job, Role, Timing, WorkerCore,
};
use harmony_wire::pipeline::PipelineMessage;
use uuid::Uuid;

/// xorshift64*: small, seeded, good enough for schedules.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
    pub fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
}

/// How hostile the network and the schedule are.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Per mille of messages lost.
    pub loss: u64,
    /// Per mille of messages delivered twice.
    pub dup: u64,
    /// Latency range in ms; a wide range reorders.
    pub latency: (u64, u64),
    /// Times (ms) at which a random worker crashes (a new one starts 200-1000 ms later).
    pub worker_crashes: Vec<u64>,
    /// Times (ms) at which the collector crashes (a new one starts 100-800 ms later).
    pub collector_restarts: Vec<u64>,
}

/// The task's expected result: the payload reversed; tasks whose number is 5 mod 97 fail.
pub fn expected(task: u32, payload: &[u8]) -> (bool, Bytes) {
    if task % 97 == 5 {
        (true, Bytes::from(format!("task {task} failed")))
    } else {
        let mut out = payload.to_vec();
        out.reverse();
        (false, Bytes::from(out))
    }
}

enum Node {
    Client(ClientCore),
    Worker(WorkerCore),
    Collector(CollectorCore),
}

impl Node {
    fn role(&self) -> Role {
        match self {
            Self::Client(_) => Role::Client,
            Self::Worker(_) => Role::Worker,
            Self::Collector(_) => Role::Collector,
        }
    }
}

enum Ev {
    Deliver {
        from: Uuid,
        to: Uuid,
        bytes: Bytes,
    },
    Up {
        at: Uuid,
        peer: Uuid,
        role: Role,
    },
    Down {
        at: Uuid,
        peer: Uuid,
    },
    JobDone {
        worker: Uuid,
        job: Job,
    },
    CrashWorker,
    StartWorker,
    CrashCollector,
    StartCollector,
    Submit {
        client: Uuid,
        batch: Uuid,
        tasks: Vec<Bytes>,
    },
}

/// One submitted batch and what became of it.
#[derive(Debug)]
pub struct BatchRecord {
    pub client: Uuid,
    pub tasks: Vec<Bytes>,
    pub completed_at: Option<u64>,
    pub resent: u64,
}

pub struct World {
    pub rng: Rng,
    pub faults: Faults,
    pub timing: Timing,
    base: Instant,
    pub now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    nodes: BTreeMap<Uuid, Node>,
    pub batches: BTreeMap<Uuid, BatchRecord>,
    /// The collector application's durable record: (batch, task) -> (failed, payload, times).
    pub record: BTreeMap<(Uuid, u32), (bool, Bytes, u32)>,
    /// Results the collector's application took and has not made durable yet: a crash loses them.
    pending: Vec<(Uuid, u32, bool, Bytes)>,
    /// The application makes its results durable (and commits) every 50 ms.
    next_sync: u64,
    pub completions: BTreeMap<Uuid, u32>,
    pub crashes: u32,
    pub restarts: u32,
    pub messages: u64,
}

impl World {
    pub fn new(seed: u64, faults: Faults, workers: usize) -> Self {
        let mut w = Self {
            rng: Rng::new(seed),
            faults: faults.clone(),
            timing: Timing {
                heartbeat: Duration::from_millis(200),
                peer_timeout: Duration::from_millis(1500),
                lost_after: Duration::from_millis(800),
                task_timeout: Duration::from_secs(5),
            },
            base: Instant::now(),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: BTreeMap::new(),
            batches: BTreeMap::new(),
            record: BTreeMap::new(),
            pending: Vec::new(),
            next_sync: 0,
            completions: BTreeMap::new(),
            crashes: 0,
            restarts: 0,
            messages: 0,
        };
        for &t in &faults.worker_crashes {
            w.at(t, Ev::CrashWorker);
        }
        for &t in &faults.collector_restarts {
            w.at(t, Ev::CrashCollector);
        }
        w.start(Node::Collector(CollectorCore::new()));
        for _ in 0..workers {
            w.start_worker();
        }
        w
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_millis(self.now)
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn start_worker(&mut self) {
        let window = self.rng.range(1, 8) as u32;
        let jobs = self.rng.range(1, 3) as usize;
        self.start(Node::Worker(WorkerCore::new(self.timing, jobs, window)));
    }

    /// Starts a node: it and every live node hear of each other after 10-100 ms.
    fn start(&mut self, node: Node) -> Uuid {
        let id = self.rng.uuid();
        let role = node.role();
        let others: Vec<(Uuid, Role)> = self.nodes.iter().map(|(u, n)| (*u, n.role())).collect();
        self.nodes.insert(id, node);
        for (peer, peer_role) in others {
            let d = self.rng.range(10, 100);
            self.at(
                self.now + d,
                Ev::Up {
                    at: peer,
                    peer: id,
                    role,
                },
            );
            let d = self.rng.range(10, 100);
            self.at(
                self.now + d,
                Ev::Up {
                    at: id,
                    peer,
                    role: peer_role,
                },
            );
        }
        id
    }

    pub fn start_client(&mut self) -> Uuid {
        let timing = self.timing;
        self.start(Node::Client(ClientCore::new(timing)))
    }

    /// Schedules a batch of `size` tasks from `client` at `t`.
    pub fn submit(&mut self, t: u64, client: Uuid, size: usize) -> Uuid {
        let batch = self.rng.uuid();
        let tasks: Vec<Bytes> = (0..size)
            .map(|i| Bytes::from(format!("{batch}:{i}:{}", self.rng.next() % 1000)))
            .collect();
        self.batches.insert(
            batch,
            BatchRecord {
                client,
                tasks: tasks.clone(),
                completed_at: None,
                resent: 0,
            },
        );
        self.at(
            t,
            Ev::Submit {
                client,
                batch,
                tasks,
            },
        );
        batch
    }

    /// Crashes `id`: it stops at once; the others hear of it after 100-1500 ms (a worker's
    /// death, one time in five, never: the clients find out by deadline).
    fn crash(&mut self, id: Uuid) {
        let was_worker = matches!(self.nodes.remove(&id), Some(Node::Worker(_)));
        let live: Vec<Uuid> = self.nodes.keys().copied().collect();
        for at in live {
            if was_worker && self.rng.chance(200) {
                continue;
            }
            let d = self.rng.range(100, 1500);
            self.at(self.now + d, Ev::Down { at, peer: id });
        }
    }

    pub fn all_complete(&self) -> bool {
        self.batches.values().all(|b| b.completed_at.is_some())
    }

    /// Runs until every batch completes or `limit_ms` passes.
    pub fn run(&mut self, limit_ms: u64) {
        while !self.all_complete() || self.queue.keys().any(|k| k.0 <= self.now) {
            let timer = self
                .nodes
                .values()
                .filter_map(|n| match n {
                    Node::Client(c) => c.poll_timeout(),
                    Node::Worker(w) => w.poll_timeout(),
                    Node::Collector(_) => None,
                })
                .min()
                .map(|t| t.duration_since(self.base).as_millis() as u64);
            let next = [timer, self.queue.keys().next().map(|k| k.0)]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { break };
            if next > limit_ms {
                break;
            }
            self.now = self.now.max(next);
            self.step();
        }
    }

    fn step(&mut self) {
        let now = self.instant();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let ev = entry.remove();
            self.apply(ev, now);
        }
        for node in self.nodes.values_mut() {
            match node {
                Node::Client(c) if c.poll_timeout().is_some_and(|t| t <= now) => {
                    c.handle_timeout(now)
                }
                Node::Worker(w) if w.poll_timeout().is_some_and(|t| t <= now) => {
                    w.handle_timeout(now)
                }
                _ => {}
            }
        }
        self.flush();
    }

    fn apply(&mut self, ev: Ev, now: Instant) {
        match ev {
            Ev::Deliver { from, to, bytes } => {
                let msg = PipelineMessage::decode(&bytes, 1 << 20).expect("own encoding decodes");
                match self.nodes.get_mut(&to) {
                    Some(Node::Client(c)) => c.handle(from, msg, now),
                    Some(Node::Worker(w)) => w.handle(from, msg, now),
                    Some(Node::Collector(c)) => c.handle(from, msg),
                    None => {}
                }
            }
            Ev::Up { at, peer, role } => {
                // Only if the peer is still alive: a dead peer's ENTER is never reported.
                if !self.nodes.contains_key(&peer) {
                    return;
                }
                match self.nodes.get_mut(&at) {
                    Some(Node::Client(c)) => c.peer_up(peer, role, now),
                    Some(Node::Worker(w)) => w.peer_up(peer, role, now),
                    Some(Node::Collector(c)) => c.peer_up(peer, role),
                    None => {}
                }
            }
            Ev::Down { at, peer } => match self.nodes.get_mut(&at) {
                Some(Node::Client(c)) => c.peer_down(peer, now),
                Some(Node::Worker(w)) => w.peer_down(peer),
                Some(Node::Collector(c)) => c.peer_down(peer),
                None => {}
            },
            Ev::JobDone { worker, job } => {
                if let Some(Node::Worker(w)) = self.nodes.get_mut(&worker) {
                    let outcome = match expected(job.task, &job.payload) {
                        (false, result) => Ok(result),
                        (true, error) => Err(error),
                    };
                    w.finished(job, outcome);
                }
            }
            Ev::CrashWorker => {
                let workers: Vec<Uuid> = self
                    .nodes
                    .iter()
                    .filter(|(_, n)| matches!(n, Node::Worker(_)))
                    .map(|(u, _)| *u)
                    .collect();
                if !workers.is_empty() {
                    let victim = workers[self.rng.range(0, workers.len() as u64 - 1) as usize];
                    self.crash(victim);
                    self.crashes += 1;
                }
                let d = self.rng.range(200, 1000);
                self.at(self.now + d, Ev::StartWorker);
            }
            Ev::StartWorker => self.start_worker(),
            Ev::CrashCollector => {
                let collector = self
                    .nodes
                    .iter()
                    .find(|(_, n)| matches!(n, Node::Collector(_)))
                    .map(|(u, _)| *u);
                if let Some(c) = collector {
                    self.pending.clear();
                    self.crash(c);
                    self.restarts += 1;
                    let d = self.rng.range(100, 800);
                    self.at(self.now + d, Ev::StartCollector);
                }
            }
            Ev::StartCollector => {
                let mut core = CollectorCore::new();
                for &(batch, task) in self.record.keys() {
                    core.restore(batch, task);
                }
                self.start(Node::Collector(core));
            }
            Ev::Submit {
                client,
                batch,
                tasks,
            } => {
                if let Some(Node::Client(c)) = self.nodes.get_mut(&client) {
                    c.submit(batch, tasks, now).expect("submit");
                }
            }
        }
    }

    /// Moves every node's output: messages onto the network, jobs onto the clock, events into
    /// the applications' records.
    fn flush(&mut self) {
        let ids: Vec<Uuid> = self.nodes.keys().copied().collect();
        let mut out = Vec::new();
        for id in ids {
            let mut jobs = Vec::new();
            match self.nodes.get_mut(&id) {
                Some(Node::Client(c)) => {
                    while let Some(t) = c.poll_transmit() {
                        out.push((id, t));
                    }
                    while let Some(ev) = c.poll_event() {
                        if let ClientEvent::Complete { batch, resent } = ev {
                            let b = self.batches.get_mut(&batch).expect("known batch");
                            assert_eq!(b.client, id, "completion at the batch's client");
                            assert!(b.completed_at.is_none(), "batch {batch} completed twice");
                            // Complete only when the collector's application has every result.
                            for task in 0..b.tasks.len() as u32 {
                                assert!(
                                    self.record.contains_key(&(batch, task)),
                                    "batch {batch} complete at the client, task {task} missing at the collector"
                                );
                            }
                            b.completed_at = Some(self.now);
                            b.resent = resent;
                        }
                    }
                }
                Some(Node::Worker(w)) => {
                    while let Some(job) = w.poll_job() {
                        jobs.push(job);
                    }
                    while let Some(t) = w.poll_transmit() {
                        out.push((id, t));
                    }
                }
                Some(Node::Collector(c)) => {
                    // Every 50 ms what the application took is durable, and committed.
                    if self.now >= self.next_sync {
                        self.next_sync = self.now + 50;
                        for (batch, task, failed, payload) in self.pending.drain(..) {
                            let entry = self
                                .record
                                .entry((batch, task))
                                .or_insert((failed, payload, 0));
                            entry.2 += 1;
                            assert_eq!(
                                entry.2, 1,
                                "result of batch {batch} task {task} delivered twice"
                            );
                        }
                        c.commit();
                    }
                    while let Some(ev) = c.poll_event() {
                        match ev {
                            CollectorEvent::Result {
                                batch,
                                task,
                                failed,
                                payload,
                                ..
                            } => self.pending.push((batch, task, failed, payload)),
                            CollectorEvent::BatchComplete { batch, .. } => {
                                *self.completions.entry(batch).or_default() += 1;
                            }
                            _ => {}
                        }
                    }
                    while let Some(t) = c.poll_transmit() {
                        out.push((id, t));
                    }
                }
                None => {}
            }
            for job in jobs {
                let d = self.rng.range(1, 10);
                self.at(self.now + d, Ev::JobDone { worker: id, job });
            }
        }
        for (from, t) in out {
            self.messages += 1;
            let bytes = t.message.to_bytes().expect("encodable");
            if self.rng.chance(self.faults.loss) {
                continue;
            }
            let copies = if self.rng.chance(self.faults.dup) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let d = self.rng.range(self.faults.latency.0, self.faults.latency.1);
                self.at(
                    self.now + d,
                    Ev::Deliver {
                        from,
                        to: t.to,
                        bytes: bytes.clone(),
                    },
                );
            }
        }
    }

    /// Checks the guarantees: every batch complete, every result in the collector's record
    /// exactly once and correct, nothing recorded that was never submitted.
    pub fn check(&self) {
        for (id, b) in &self.batches {
            assert!(
                b.completed_at.is_some(),
                "batch {id} ({} tasks) did not complete by {} ms",
                b.tasks.len(),
                self.now
            );
            for (task, payload) in b.tasks.iter().enumerate() {
                let (failed, result, times) = self
                    .record
                    .get(&(*id, task as u32))
                    .unwrap_or_else(|| panic!("batch {id} task {task} has no result"));
                assert_eq!(*times, 1);
                assert_eq!((*failed, result.clone()), expected(task as u32, payload));
            }
        }
        let submitted: usize = self.batches.values().map(|b| b.tasks.len()).sum();
        assert_eq!(
            self.record.len(),
            submitted,
            "results for tasks never submitted"
        );
    }
}
