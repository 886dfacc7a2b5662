//! The worker's tokio driver: [`Worker`] runs an async function for each task.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use harmony_node::Uuid;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinSet};
use tracing::debug;

use crate::core::{Job, Role, WorkerCore};
use crate::error::PipelineError;
use crate::mesh::{Input, Mesh, PeerChange};
use crate::settings::{sleep_until, Settings};

type TaskFn = dyn Fn(Bytes) -> std::pin::Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>
    + Send
    + Sync;

/// How a worker runs tasks.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Tasks run at once (default 1).
    pub jobs: usize,
    /// Tasks each client may queue here (default 2 x jobs + 2, at least 1).
    pub window: Option<u32>,
    /// Runs of a failing task before its error is reported as its result (default 3).
    pub attempts: u32,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            jobs: 1,
            window: None,
            attempts: 3,
        }
    }
}

/// A pipeline worker: runs until stopped (or dropped).
#[derive(Debug)]
pub struct Worker {
    uuid: Uuid,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Joins the pipeline as a worker running `f` on each task; an `Err` is retried up to
    /// `options.attempts` times, then reported to the collector as the task's (failed) result.
    pub async fn start<F, Fut, E>(
        settings: Settings,
        options: WorkerOptions,
        f: F,
    ) -> Result<Self, PipelineError>
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Display,
    {
        let mesh = Mesh::start(
            settings.node,
            &settings.pipeline,
            Role::Worker,
            &[Role::Client, Role::Collector],
        )
        .await?;
        let uuid = mesh.uuid();
        let jobs = options.jobs.max(1);
        let window = options.window.unwrap_or(2 * jobs as u32 + 2);
        let f: Arc<TaskFn> = Arc::new(move |task| {
            let fut = f(task);
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let driver = Driver {
            mesh,
            core: WorkerCore::new(settings.timing, jobs, window),
            f,
            attempts: options.attempts.max(1),
            running: JoinSet::new(),
            jobs: HashMap::new(),
        };
        let task = tokio::spawn(driver.run(stop_rx));
        Ok(Self {
            uuid,
            stop: Some(stop_tx),
            task,
        })
    }

    /// The worker's node UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Leaves the pipeline; tasks in progress are abandoned (their clients resend them).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stops at once, dropping its work in progress and any result not yet sent, as a crash
    /// would; its ZRE node still says goodbye, so peers notice at once (a `kill -9` of a worker
    /// process, noticed by deadline, is what the process tests use).
    pub fn kill(self) {
        self.task.abort();
    }
}

struct Driver {
    mesh: Mesh,
    core: WorkerCore,
    f: Arc<TaskFn>,
    attempts: u32,
    running: JoinSet<Result<Bytes, Bytes>>,
    /// The job each running task works on, by task id (a task that panics still gives its id).
    jobs: HashMap<tokio::task::Id, Job>,
}

impl Driver {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            while let Some(job) = self.core.poll_job() {
                let f = self.f.clone();
                let attempts = self.attempts;
                let (payload, batch, task) = (job.payload.clone(), job.batch, job.task);
                let handle = self.running.spawn(async move {
                    let mut error = String::new();
                    for attempt in 1..=attempts {
                        match f(payload.clone()).await {
                            Ok(result) => return Ok(result),
                            Err(e) => {
                                debug!(%batch, task, attempt, error = %e, "task failed");
                                error = e;
                            }
                        }
                    }
                    Err(Bytes::from(error))
                });
                self.jobs.insert(handle.id(), job);
            }
            let core = &mut self.core;
            self.mesh
                .send_all(std::iter::from_fn(|| core.poll_transmit()));
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = &mut stop => break,
                input = self.mesh.next_input() => {
                    let now = Instant::now();
                    match input {
                        Input::Peer(PeerChange::Up(peer, role)) => self.core.peer_up(peer, role, now),
                        Input::Peer(PeerChange::Down(peer)) => self.core.peer_down(peer),
                        Input::Messages(burst) => {
                            for (from, m) in burst {
                                self.core.handle(from, m, now);
                            }
                        }
                        Input::Closed => break,
                    }
                }
                Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.finished(done);
                    while let Some(done) = self.running.try_join_next_with_id() {
                        self.finished(done);
                    }
                }
                () = sleep_until(deadline) => self.core.handle_timeout(Instant::now()),
            }
        }
        self.running.abort_all();
        self.mesh.stop().await;
    }

    fn finished(&mut self, done: Result<(tokio::task::Id, Result<Bytes, Bytes>), JoinError>) {
        let (id, outcome) = match done {
            Ok(done) => done,
            Err(e) => (e.id(), Err(Bytes::from(format!("the task panicked: {e}")))),
        };
        if let Some(job) = self.jobs.remove(&id) {
            self.core.finished(job, outcome);
        }
    }
}
