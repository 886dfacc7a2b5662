//! [`FileClient`]: the tokio driver of [`Client`] over a harmony-zmtp DEALER, mirroring what a
//! server publishes into a destination directory. Each connection is one [`Client`]; when it
//! fails (server gone, silent, hostile, corrupted chunk) the driver waits a moment and opens a
//! new one that resyncs from what is on disk and resumes the partial file.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use harmony_zmtp::{DealerSocket, EventKind, HandshakeFailure, Message, Monitor, SocketOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{debug, info};

use crate::client::{Client, ClientConfig, FileOp};
use crate::error::FilesError;
use crate::mirror::Mirror;

/// What the client did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// Subscribed on a new connection.
    Connected,
    /// A file started (or resumed at `offset`).
    Receiving {
        /// Relative name.
        name: String,
        /// Where it starts.
        offset: u64,
        /// Its size, if the server said.
        size: Option<u64>,
    },
    /// Content arrived (may be skipped when events are not read fast enough).
    Progress {
        /// Relative name.
        name: String,
        /// Bytes of it on disk.
        offset: u64,
    },
    /// A file is complete, verified and in place.
    Updated {
        /// Relative name.
        name: String,
        /// Its size.
        size: u64,
        /// Its BLAKE3 digest (hex), with the extensions (checked against the server's).
        digest: Option<String>,
    },
    /// A file was deleted.
    Deleted {
        /// Relative name.
        name: String,
    },
    /// At start: the destination was looked over. `files` were found (whole or partial);
    /// `read` of them had to be read for their digests (not on record from an earlier run, or
    /// changed since); the others' digests came from the record the client keeps in the
    /// destination (`.digests.harmony-cache`). Without the extensions nothing is read.
    Inventory {
        /// Files found.
        files: usize,
        /// Files read.
        read: usize,
    },
    /// A Harmony server said that everything it had at subscription time is on disk.
    Synced,
    /// Subscribed to a server that does not say when it is done (zeromq/filemq): it has
    /// answered since, nothing is in progress and no file arrived for the quiet period.
    Idle,
    /// The server does not answer yet (nothing accepts the connection); attempts go on. Said
    /// once per connection, before it is made.
    Waiting,
    /// The connection failed; a new one follows.
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// Builds a [`FileClient`].
#[derive(Debug)]
pub struct FileClientBuilder {
    dest: PathBuf,
    endpoint: String,
    config: ClientConfig,
    options: SocketOptions,
    quiet: Duration,
    retry: Duration,
}

impl FileClientBuilder {
    /// Paths to subscribe to (default `/`).
    pub fn subscribe(mut self, paths: Vec<String>) -> Self {
        self.config.subscriptions = paths;
        self
    }

    /// Protocol settings (subscriptions, credit window, heartbeat, extensions).
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Options of the DEALER socket: security (e.g. a CURVE client), limits.
    pub fn socket_options(mut self, options: SocketOptions) -> Self {
        self.options = options;
        self
    }

    /// Silence after which [`SyncEvent::Idle`] is reported (default 1 s).
    pub fn quiet_period(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    /// Wait before a new connection after one failed (default 500 ms).
    pub fn retry_after(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// Starts mirroring (on a thread of its own, with its own runtime).
    pub fn start(self) -> Result<FileClient, FilesError> {
        for path in &self.config.subscriptions {
            if !path.starts_with('/') {
                return Err(FilesError::Invalid(format!(
                    "path {path:?} must start with /"
                )));
            }
        }
        let mirror = Mirror::new(self.dest.clone())?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let (events_tx, events_rx) = mpsc::channel(EVENT_BATCHES);
        let thread = thread::Builder::new()
            .name("harmony-files-client".into())
            .spawn(move || {
                // The driver (checks, digests, writes) runs on this thread (`block_on`), the
                // DEALER's I/O on the worker: reading the socket overlaps the disk, and a NOM
                // goes out at once instead of after the backlog of received chunks.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("files-cli-io")
                    .enable_all()
                    .build()
                    .map_err(FilesError::io("tokio runtime"))?;
                runtime.block_on(run(self, mirror, events_tx, stop_rx))
            })
            .map_err(FilesError::io("client thread"))?;
        Ok(FileClient {
            events: events_rx,
            batch: VecDeque::new(),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// Batches of events waiting to be read before the mirror waits for the reader.
const EVENT_BATCHES: usize = 16;

/// A running FILEMQ client. Read its events: the mirror waits when many are unread.
#[derive(Debug)]
pub struct FileClient {
    /// Events come in batches, what the driver had to say at once: the reader is woken once
    /// per batch, not once per file.
    events: mpsc::Receiver<Vec<SyncEvent>>,
    batch: VecDeque<SyncEvent>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<Result<(), FilesError>>>,
}

impl FileClient {
    /// A builder mirroring `endpoint` into directory `dest`.
    pub fn builder(dest: impl Into<PathBuf>, endpoint: impl Into<String>) -> FileClientBuilder {
        FileClientBuilder {
            dest: dest.into(),
            endpoint: endpoint.into(),
            config: ClientConfig::default(),
            options: SocketOptions::default(),
            quiet: Duration::from_secs(1),
            retry: Duration::from_millis(500),
        }
    }

    /// The next event; `None` once the client has stopped (see [`FileClient::stop`] for why).
    pub async fn next_event(&mut self) -> Option<SyncEvent> {
        loop {
            if let Some(event) = self.batch.pop_front() {
                return Some(event);
            }
            self.batch.extend(self.events.recv().await?);
        }
    }

    /// Stops (saying KTHXBAI) and returns the error that stopped it, if one did. A partial
    /// file stays on disk for the next client to resume.
    pub fn stop(mut self) -> Result<(), FilesError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), FilesError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.events.close();
        while self.events.try_recv().is_ok() {}
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or(Err(FilesError::Stopped)),
            None => Ok(()),
        }
    }
}

impl Drop for FileClient {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// How one connection ended.
enum End {
    Stop,
    Failed(String),
}

async fn run(
    b: FileClientBuilder,
    mut mirror: Mirror,
    events: mpsc::Sender<Vec<SyncEvent>>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), FilesError> {
    let found = mirror.inventory(b.config.extensions)?;
    let _ = events
        .send(vec![SyncEvent::Inventory {
            files: found.files,
            read: found.read,
        }])
        .await;
    mirror.save_digests();
    let mut partial = found.partial;
    // Chunk buffers recycled up to the credit window (what may be in flight at once): a
    // stream of large chunks then reads into memory already mapped, instead of faulting in
    // fresh pages for a good part of them.
    let mut options = b.options.clone();
    options.large_frame_pool = options
        .large_frame_pool
        .max(usize::try_from(b.config.credit_window).unwrap_or(usize::MAX));
    loop {
        let dealer = DealerSocket::new(options.clone());
        // Watched for handshake failures: a server that refuses our key never sends a
        // FILEMQ message, so its refusal only shows here.
        let mut monitor = dealer.monitor();
        dealer.connect(&b.endpoint)?;
        let cache = mirror.have();
        let core = Client::new(
            b.config.clone(),
            cache,
            std::mem::take(&mut partial),
            std::time::Instant::now(),
        );
        let mut conn = Connection {
            dealer: &dealer,
            monitor: &mut monitor,
            core,
            mirror: &mut mirror,
            events: &events,
            told: Vec::new(),
            quiet: b.quiet,
        };
        let end = conn.run(&mut stop).await;
        conn.flush_events().await;
        let end = end?;
        partial.extend(conn.core.take_resume_points());
        mirror.suspend();
        mirror.save_digests();
        match end {
            End::Stop => {
                dealer.close().await;
                return Ok(());
            }
            End::Failed(reason) => {
                info!(%reason, "FILEMQ connection failed, reconnecting");
                let _ = events.send(vec![SyncEvent::Disconnected { reason }]).await;
            }
        }
        drop(dealer);
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = sleep(b.retry) => {}
        }
    }
}

struct Connection<'a> {
    dealer: &'a DealerSocket,
    monitor: &'a mut Monitor,
    core: Client,
    mirror: &'a mut Mirror,
    events: &'a mpsc::Sender<Vec<SyncEvent>>,
    /// Events not sent yet: sent together before the driver waits, so that the reader is
    /// woken once per batch of files, not once per event.
    told: Vec<SyncEvent>,
    quiet: Duration,
}

/// Messages, and bytes of them, handled in a row before the files they carry are written.
const DRAIN_MESSAGES: usize = 64;
const DRAIN_BYTES: usize = 1 << 20;

impl Connection<'_> {
    async fn flush_events(&mut self) {
        if self.told.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.told);
        if let Err(mpsc::error::TrySendError::Full(mut batch)) = self.events.try_send(batch) {
            // Progress may be skipped when the reader is behind.
            batch.retain(|e| !matches!(e, SyncEvent::Progress { .. }));
            if !batch.is_empty() {
                let _ = self.events.send(batch).await;
            }
        }
    }

    /// Sends what the core has to say; `false` when the socket cannot take it.
    fn transmit(&mut self) -> Result<bool, FilesError> {
        while let Some(msg) = self.core.poll_transmit() {
            let frame = msg
                .to_bytes()
                .map_err(|e| FilesError::Invalid(e.to_string()))?;
            if self.dealer.try_send(Message::from(frame)).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn run(&mut self, stop: &mut oneshot::Receiver<()>) -> Result<End, FilesError> {
        let mut last_chunk = Instant::now();
        let mut idle_told = false;
        let mut connected_told = false;
        let mut waiting_told = false;
        let mut synced_told = false;
        let mut heard = false;
        let mut receiving: Option<(String, Option<u64>)> = None;
        loop {
            if !self.transmit()? {
                return Ok(End::Failed("send queue full or closed".into()));
            }
            while let Some(op) = self.core.poll_op() {
                last_chunk = Instant::now();
                idle_told = false;
                match self.apply(op, &mut receiving) {
                    Ok(()) => {}
                    // A name that would go through a link or a non-directory: this server's
                    // connection ends, the destination is untouched.
                    Err(FilesError::Path(e)) => return Ok(End::Failed(e.to_string())),
                    Err(e) => return Err(e),
                }
            }
            if let Some(error) = self.core.error() {
                return Ok(End::Failed(error.to_string()));
            }
            if self.core.is_subscribed() && !connected_told {
                connected_told = true;
                // The quiet period counts from the subscription, not from the connect.
                last_chunk = Instant::now();
                self.told.push(SyncEvent::Connected);
            }
            if self.core.is_synced() && !synced_told {
                synced_told = true;
                self.told.push(SyncEvent::Synced);
                // Caught up: the digests go on record now (once Synced is told), not only
                // when the client stops.
                self.flush_events().await;
                self.mirror.save_digests();
            }
            let idle_at = last_chunk + self.quiet;
            // A server that has not said anything since the subscription may be busy sending a
            // large first chunk: only silence after something was heard counts.
            let can_idle = !idle_told
                && heard
                && self.core.is_subscribed()
                && !self.core.is_harmony_server()
                && !self.core.is_receiving();
            let timeout = self.core.poll_timeout().map_or(
                Instant::now() + Duration::from_secs(3600),
                Instant::from_std,
            );
            self.flush_events().await;
            tokio::select! {
                biased;
                _ = &mut *stop => {
                    self.core.close();
                    if let Some(msg) = self.core.poll_transmit() {
                        if let Ok(frame) = msg.to_bytes() {
                            let _ = self.dealer.try_send(Message::from(frame));
                        }
                    }
                    return Ok(End::Stop);
                }
                msg = self.dealer.recv() => {
                    // What else has arrived is handled too (many small files at once), up to
                    // a bound; a NOM or HUGZ-OK it calls for goes out at once.
                    let mut msg = msg?;
                    let (mut count, mut bytes) = (0, 0);
                    loop {
                        heard |= connected_told;
                        match msg.frames() {
                            [frame] => {
                                bytes += frame.len();
                                self.core.handle_message(frame, std::time::Instant::now());
                            }
                            _ => return Ok(End::Failed("multi-frame message".into())),
                        }
                        if !self.transmit()? {
                            return Ok(End::Failed("send queue full or closed".into()));
                        }
                        count += 1;
                        if count == DRAIN_MESSAGES
                            || bytes >= DRAIN_BYTES
                            || self.core.error().is_some()
                        {
                            break;
                        }
                        match self.dealer.try_recv() {
                            Ok(Some(next)) => msg = next,
                            _ => break,
                        }
                    }
                }
                Some(event) = self.monitor.recv() => match event.kind {
                    EventKind::HandshakeFailed { failure, reason } => {
                        let what = match failure {
                            HandshakeFailure::Authentication => "refused by the server",
                            _ => "handshake failed",
                        };
                        return Ok(End::Failed(format!("{what}: {reason}")));
                    }
                    // The session was this connection's (what the server received arrives
                    // first: the receive branch comes before this one): a new one starts
                    // with OHAI, rather than going on over the socket's own reconnection to a
                    // server that does not know it (a restarted one answers RTFM).
                    EventKind::Disconnected { reason } => {
                        return Ok(End::Failed(format!("connection lost: {reason}")));
                    }
                    // A connection attempt failed: nobody there yet.
                    EventKind::Closed if !connected_told && !waiting_told => {
                        waiting_told = true;
                        self.told.push(SyncEvent::Waiting);
                    }
                    _ => {}
                },
                _ = sleep_until(timeout) => self.core.handle_timeout(std::time::Instant::now()),
                _ = sleep_until(idle_at), if can_idle => {
                    idle_told = true;
                    self.told.push(SyncEvent::Idle);
                    self.flush_events().await;
                    self.mirror.save_digests();
                }
            }
        }
    }

    fn apply(
        &mut self,
        op: FileOp,
        receiving: &mut Option<(String, Option<u64>)>,
    ) -> Result<(), FilesError> {
        match op {
            FileOp::Open { name, offset, size } => {
                debug!(%name, offset, "receiving");
                self.mirror.open(&name, offset, size)?;
                *receiving = Some((name.clone(), size));
                self.told.push(SyncEvent::Receiving { name, offset, size });
            }
            FileOp::Write { offset, data } => {
                self.mirror.write(&data)?;
                let end = offset + data.len() as u64;
                // A write that completes the file is told by the `Updated` that follows.
                if let Some((name, _)) = receiving.as_ref().filter(|(_, s)| *s != Some(end)) {
                    self.told.push(SyncEvent::Progress {
                        name: name.clone(),
                        offset: end,
                    });
                }
            }
            FileOp::Commit { name, size, digest } => {
                self.mirror.commit(&name, digest.as_deref())?;
                *receiving = None;
                self.told.push(SyncEvent::Updated { name, size, digest });
            }
            FileOp::Discard { name } => {
                self.mirror.discard(&name)?;
                *receiving = None;
            }
            FileOp::Delete { name } => {
                self.mirror.delete(&name)?;
                self.told.push(SyncEvent::Deleted { name });
            }
        }
        Ok(())
    }
}
