//! The client's tokio driver: [`Client`] submits batches, [`Batch`] follows one to the end.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_node::Uuid;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use crate::core::{ClientCore, ClientEvent, Role};
use crate::error::PipelineError;
use crate::mesh::{Input, Mesh, PeerChange};
use crate::settings::{sleep_until, Settings};

/// Where a batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Results the collector's application has.
    pub done: u32,
    /// Tasks in the batch.
    pub size: u32,
    /// Tasks sent more than once so far (set when complete).
    pub resent: u64,
    /// Every result is at the collector.
    pub complete: bool,
}

/// What a finished batch cost.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BatchSummary {
    /// The batch.
    pub batch: Uuid,
    /// Tasks in the batch.
    pub tasks: u32,
    /// Tasks sent more than once.
    pub resent: u64,
    /// From submit to the last acknowledgement.
    pub elapsed: Duration,
}

/// A submitted batch: watch its progress, wait for its end.
#[derive(Debug)]
pub struct Batch {
    id: Uuid,
    started: Instant,
    progress: watch::Receiver<Progress>,
}

impl Batch {
    /// The batch's id (the collector reports it with each result).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Where the batch stands now.
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Waits for the next change of progress; `None` once complete (or the client stopped).
    pub async fn next_progress(&mut self) -> Option<Progress> {
        if self.progress().complete {
            return None;
        }
        self.progress.changed().await.ok()?;
        Some(self.progress())
    }

    /// Waits until the collector has every result.
    pub async fn wait(mut self) -> Result<BatchSummary, PipelineError> {
        let p = *self
            .progress
            .wait_for(|p| p.complete)
            .await
            .map_err(|_| PipelineError::Stopped("client"))?;
        Ok(BatchSummary {
            batch: self.id,
            tasks: p.size,
            resent: p.resent,
            elapsed: self.started.elapsed(),
        })
    }
}

enum Command {
    Submit {
        batch: Uuid,
        tasks: Vec<Bytes>,
        progress: watch::Sender<Progress>,
        reply: oneshot::Sender<Result<(), PipelineError>>,
    },
    Stop(oneshot::Sender<()>),
}

/// A pipeline client: submits batches of tasks.
#[derive(Debug)]
pub struct Client {
    uuid: Uuid,
    commands: mpsc::Sender<Command>,
}

impl Client {
    /// Joins the pipeline as a client.
    pub async fn start(settings: Settings) -> Result<Self, PipelineError> {
        let mesh = Mesh::start(
            settings.node,
            &settings.pipeline,
            Role::Client,
            &[Role::Worker, Role::Collector],
        )
        .await?;
        let uuid = mesh.uuid();
        let (tx, rx) = mpsc::channel(16);
        let driver = Driver {
            mesh,
            core: ClientCore::new(settings.timing),
            batches: HashMap::new(),
            commands: rx,
        };
        tokio::spawn(driver.run());
        Ok(Self { uuid, commands: tx })
    }

    /// The client's node UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Submits a batch; task `i` is `tasks[i]`. Sending starts once a collector and workers
    /// are found.
    pub async fn submit<I, T>(&self, tasks: I) -> Result<Batch, PipelineError>
    where
        I: IntoIterator<Item = T>,
        T: Into<Bytes>,
    {
        let tasks: Vec<Bytes> = tasks.into_iter().map(Into::into).collect();
        let id = Uuid::new_v4();
        let size = tasks.len() as u32;
        let (progress, rx) = watch::channel(Progress {
            done: 0,
            size,
            resent: 0,
            complete: false,
        });
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Submit {
                batch: id,
                tasks,
                progress,
                reply,
            })
            .await
            .map_err(|_| PipelineError::Stopped("client"))?;
        answer
            .await
            .map_err(|_| PipelineError::Stopped("client"))??;
        Ok(Batch {
            id,
            started: Instant::now(),
            progress: rx,
        })
    }

    /// Leaves the pipeline; batches not complete are abandoned.
    pub async fn stop(self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Driver {
    mesh: Mesh,
    core: ClientCore,
    batches: HashMap<Uuid, watch::Sender<Progress>>,
    commands: mpsc::Receiver<Command>,
}

impl Driver {
    async fn run(mut self) {
        loop {
            self.flush();
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Submit { batch, tasks, progress, reply }) => {
                        let result = self.core.submit(batch, tasks, Instant::now());
                        if result.is_ok() {
                            self.batches.insert(batch, progress);
                        }
                        let _ = reply.send(result);
                    }
                    Some(Command::Stop(done)) => {
                        self.mesh.stop().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.mesh.stop().await;
                        return;
                    }
                },
                input = self.mesh.next_input() => {
                    let now = Instant::now();
                    match input {
                        Input::Peer(PeerChange::Up(peer, role)) => self.core.peer_up(peer, role, now),
                        Input::Peer(PeerChange::Down(peer)) => self.core.peer_down(peer, now),
                        Input::Messages(burst) => {
                            for (from, m) in burst {
                                self.core.handle(from, m, now);
                            }
                        }
                        Input::Closed => return,
                    }
                }
                () = sleep_until(deadline) => self.core.handle_timeout(Instant::now()),
            }
        }
    }

    fn flush(&mut self) {
        let core = &mut self.core;
        self.mesh
            .send_all(std::iter::from_fn(|| core.poll_transmit()));
        while let Some(event) = self.core.poll_event() {
            match event {
                ClientEvent::Progress { batch, done, size } => {
                    if let Some(tx) = self.batches.get(&batch) {
                        tx.send_modify(|p| {
                            p.done = done;
                            p.size = size;
                        });
                    }
                }
                ClientEvent::Complete { batch, resent } => {
                    debug!(%batch, resent, "batch complete");
                    if let Some(tx) = self.batches.remove(&batch) {
                        tx.send_modify(|p| {
                            p.done = p.size;
                            p.resent = resent;
                            p.complete = true;
                        });
                    }
                }
            }
        }
    }
}
