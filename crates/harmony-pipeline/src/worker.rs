//! The worker's tokio driver: [`Worker`] runs an async function for each task.

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use harmony_node::Uuid;
use tokio::sync::oneshot;
use tracing::debug;

use crate::core::{Job, Role, WorkerCore};
use crate::error::PipelineError;
use crate::mesh::{Input, Mesh, PeerChange};
use crate::settings::{sleep_until, Settings};

/// A running job: its future gives the job back with its outcome.
type Running = Pin<Box<dyn Future<Output = (Job, Result<Bytes, Bytes>)> + Send>>;

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
    ///
    /// The futures `f` returns are polled on the worker's own task, up to `jobs` at once (no
    /// task is spawned per job, so a burst of quick tasks costs one wake-up and its results
    /// leave together): a task that computes for long should hand that work to
    /// `tokio::task::spawn_blocking` or `tokio::spawn` and await it. A panic in a task is
    /// caught and reported as the task's failure.
    pub async fn start<F, Fut, E>(
        settings: Settings,
        options: WorkerOptions,
        f: F,
    ) -> Result<Self, PipelineError>
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Display + 'static,
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
        let (stop_tx, stop_rx) = oneshot::channel();
        let driver = Driver {
            mesh,
            core: WorkerCore::new(settings.timing, jobs, window),
            f: Arc::new(f),
            attempts: options.attempts.max(1),
            running: FuturesUnordered::new(),
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

struct Driver<F> {
    mesh: Mesh,
    core: WorkerCore,
    f: Arc<F>,
    attempts: u32,
    running: FuturesUnordered<Running>,
}

impl<F, Fut, E> Driver<F>
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
    E: Display + 'static,
{
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            self.launch_jobs();
            // Everything already done (a burst of quick tasks) is reported in this round.
            while let Some(Some((job, outcome))) = self.running.next().now_or_never() {
                self.core.finished(job, outcome);
                self.launch_jobs();
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
                Some((job, outcome)) = self.running.next(), if !self.running.is_empty() => {
                    self.core.finished(job, outcome);
                }
                () = sleep_until(deadline) => self.core.handle_timeout(Instant::now()),
            }
        }
        self.running.clear();
        self.mesh.stop().await;
    }

    /// Starts the jobs the core hands out. Each job's first attempt is polled once at once: a
    /// task done at its first poll (a quick computation) is reported with no allocation beyond
    /// its own future, and never enters the running set.
    fn launch_jobs(&mut self) {
        while let Some(job) = self.core.poll_job() {
            let mut first = Box::pin((self.f)(job.payload.clone()));
            // A future not done yet is polled again in the running set, which registers its
            // own waker then: this first poll needs none.
            let mut cx = Context::from_waker(Waker::noop());
            match std::panic::catch_unwind(AssertUnwindSafe(|| first.as_mut().poll(&mut cx))) {
                Ok(Poll::Ready(Ok(result))) => self.core.finished(job, Ok(result)),
                Ok(Poll::Ready(Err(e))) => {
                    let e = e.to_string();
                    debug!(batch = %job.batch, task = job.task, attempt = 1, error = %e, "task failed");
                    if self.attempts > 1 {
                        let again = Box::pin((self.f)(job.payload.clone()));
                        self.running.push(self.later(job, again, 2));
                    } else {
                        self.core.finished(job, Err(Bytes::from(e)));
                    }
                }
                Ok(Poll::Pending) => self.running.push(self.later(job, first, 1)),
                Err(panic) => self.core.finished(job, Err(panicked(panic.as_ref()))),
            }
        }
    }

    /// The rest of a job: `current` (attempt number `attempt`) to its end, then the retries
    /// left; a panic is the job's failure.
    fn later(&self, job: Job, current: Pin<Box<Fut>>, attempt: u32) -> Running {
        let f = self.f.clone();
        let attempts = self.attempts;
        Box::pin(async move {
            let (payload, batch, task) = (job.payload.clone(), job.batch, job.task);
            let run = async move {
                let (mut current, mut attempt) = (current, attempt);
                loop {
                    let e = match current.await {
                        Ok(result) => return Ok(result),
                        Err(e) => e.to_string(),
                    };
                    debug!(%batch, task, attempt, error = %e, "task failed");
                    if attempt >= attempts {
                        return Err(Bytes::from(e));
                    }
                    attempt += 1;
                    current = Box::pin(f(payload.clone()));
                }
            };
            let outcome = AssertUnwindSafe(run).catch_unwind().await;
            let outcome = outcome.unwrap_or_else(|panic| Err(panicked(panic.as_ref())));
            (job, outcome)
        })
    }
}

/// A task's panic as its error text.
fn panicked(panic: &(dyn std::any::Any + Send)) -> Bytes {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    Bytes::from(format!("the task panicked: {what}"))
}
