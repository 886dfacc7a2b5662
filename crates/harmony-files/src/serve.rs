//! [`FileServer`]: the tokio driver of [`Server`] over a harmony-zmtp ROUTER, publishing
//! directories. It runs on a thread of its own (file reads and digests block), with its own
//! runtime, so it never stalls the caller's. That runtime has one worker thread for the
//! socket's connection tasks: the driver reads and hashes the next chunk while the worker
//! writes the previous ones (a two-stage pipeline instead of one serialised loop).

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use harmony_zmtp::{EventKind, Message, Monitor, RouterSocket, SocketOptions, TrySendError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{debug, warn};

use crate::error::FilesError;
use crate::scan::{Change, Scanner};
use crate::server::{Server, ServerConfig, ServerEvent};

/// Messages sent in one go before the driver looks at its socket again.
const SEND_BATCH: usize = 64;

/// Builds a [`FileServer`].
#[derive(Debug)]
pub struct FileServerBuilder {
    mounts: Vec<(PathBuf, String)>,
    bind: String,
    options: SocketOptions,
    config: ServerConfig,
    scan_interval: Duration,
    stable_after: Duration,
}

impl Default for FileServerBuilder {
    fn default() -> Self {
        Self {
            mounts: Vec::new(),
            bind: "tcp://127.0.0.1:0".into(),
            options: SocketOptions::default(),
            config: ServerConfig::default(),
            scan_interval: Duration::from_secs(1),
            stable_after: Duration::from_secs(1),
        }
    }
}

impl FileServerBuilder {
    /// Publishes directory `dir` at virtual path `vpath` (starting with `/`).
    pub fn publish(mut self, dir: impl Into<PathBuf>, vpath: impl Into<String>) -> Self {
        self.mounts.push((dir.into(), vpath.into()));
        self
    }

    /// Where to listen (default `tcp://127.0.0.1:0`, an ephemeral port on loopback).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.bind = endpoint.into();
        self
    }

    /// Options of the ROUTER socket: security (e.g. a CURVE server and an authenticator),
    /// limits. `router_mandatory` is always set.
    pub fn socket_options(mut self, options: SocketOptions) -> Self {
        self.options = options;
        self
    }

    /// Protocol settings.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// How often the directories are scanned (default 1 s, as zeromq/filemq).
    pub fn scan_interval(mut self, interval: Duration) -> Self {
        self.scan_interval = interval;
        self
    }

    /// A file is published once unmodified for this long (default 1 s).
    pub fn stable_after(mut self, age: Duration) -> Self {
        self.stable_after = age;
        self
    }

    /// Binds and starts serving.
    pub async fn start(self) -> Result<FileServer, FilesError> {
        for (dir, vpath) in &self.mounts {
            if !vpath.starts_with('/') {
                return Err(FilesError::Invalid(format!(
                    "virtual path {vpath:?} must start with /"
                )));
            }
            if !dir.is_dir() {
                return Err(FilesError::Invalid(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (events_tx, events_rx) = mpsc::channel(1024);
        let thread = thread::Builder::new()
            .name("harmony-files-server".into())
            .spawn(move || {
                // The driver runs on this thread (`block_on`), the ROUTER's I/O on the worker.
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(FilesError::io("tokio runtime")(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut options = self.options.clone();
                    options.router_mandatory = true;
                    let router = RouterSocket::new(options);
                    let monitor = router.monitor();
                    let endpoint = match router.bind(&self.bind).await {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(endpoint.to_string()));
                    let mut scanner = Scanner::new(self.stable_after);
                    for (dir, vpath) in self.mounts {
                        scanner.publish(dir, vpath);
                    }
                    let driver = Driver {
                        router,
                        monitor,
                        scanner,
                        core: Server::new(self.config),
                        scan_interval: self.scan_interval,
                        events: events_tx,
                    };
                    driver.run(stop_rx).await;
                });
            })
            .map_err(FilesError::io("server thread"))?;
        let endpoint = ready_rx.await.map_err(|_| FilesError::Stopped)??;
        Ok(FileServer {
            endpoint,
            stop: Some(stop_tx),
            thread: Some(thread),
            events: events_rx,
        })
    }
}

/// A running FILEMQ server. Dropping it stops it.
#[derive(Debug)]
pub struct FileServer {
    endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    events: mpsc::Receiver<ServerEvent>,
}

impl FileServer {
    /// A builder.
    pub fn builder() -> FileServerBuilder {
        FileServerBuilder::default()
    }

    /// The endpoint bound, `tcp://host:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The next event (clients joining and leaving, files sent). Events not read are
    /// dropped beyond 1024.
    pub async fn next_event(&mut self) -> Option<ServerEvent> {
        self.events.recv().await
    }

    /// Stops serving: every connection is dropped at once, as if the process died.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Driver {
    router: RouterSocket,
    /// Handshake failures (refused keys) never reach the core: reported from here.
    monitor: Monitor,
    scanner: Scanner,
    core: Server,
    scan_interval: Duration,
    events: mpsc::Sender<ServerEvent>,
}

impl Driver {
    fn rescan(&mut self) {
        for change in self.scanner.scan() {
            match change {
                Change::Changed {
                    vpath,
                    size,
                    version,
                } => {
                    debug!(%vpath, size, "published");
                    self.core.file_changed(&vpath, size, version);
                }
                Change::Removed { vpath } => {
                    debug!(%vpath, "removed");
                    self.core.file_removed(&vpath);
                }
            }
        }
    }

    /// Sends what the core has, up to a batch; `false` when the socket is closed.
    fn flush(
        &mut self,
        pending: &mut Option<Message>,
        open: &mut Option<(String, std::fs::File)>,
    ) -> Result<bool, ()> {
        let mut sent = 0;
        loop {
            let msg = match pending.take() {
                Some(m) => m,
                None => {
                    if sent == SEND_BATCH {
                        return Ok(true);
                    }
                    let mut source = self.scanner.source(open);
                    let Some((id, frame)) = self.core.poll_transmit_frame(&mut source) else {
                        return Ok(false);
                    };
                    Message::from_frames([id, frame])
                }
            };
            match self.router.try_send(msg) {
                Ok(()) => sent += 1,
                Err(TrySendError::WouldBlock(m)) => {
                    *pending = Some(m);
                    return Ok(false);
                }
                Err(TrySendError::Unroutable(m)) => {
                    if let Some(id) = m.first() {
                        self.core.peer_gone(id);
                    }
                }
                Err(_) => return Err(()),
            }
        }
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut pending: Option<Message> = None;
        let mut open = None;
        let mut next_scan = Instant::now();
        let far = Duration::from_secs(3600);
        loop {
            if Instant::now() >= next_scan {
                self.rescan();
                open = None;
                next_scan = Instant::now() + self.scan_interval;
            }
            let Ok(more) = self.flush(&mut pending, &mut open) else {
                return;
            };
            while let Some(event) = self.core.poll_event() {
                let _ = self.events.try_send(event);
            }
            let timeout = self
                .core
                .poll_timeout()
                .map_or(Instant::now() + far, Instant::from_std);
            tokio::select! {
                biased;
                _ = &mut stop => return,
                msg = self.router.recv() => match msg {
                    Ok(msg) => {
                        let frames = msg.frames();
                        if let [id, frame] = frames {
                            self.core.handle_message(id, frame, std::time::Instant::now());
                        } else if let Some(id) = frames.first() {
                            let bad = Bytes::new();
                            self.core.handle_message(id, &bad, std::time::Instant::now());
                        }
                    }
                    Err(_) => return,
                },
                Some(event) = self.monitor.recv() => {
                    if let EventKind::HandshakeFailed { reason, .. } = event.kind {
                        let peer = event.peer.map(|p| p.to_string()).unwrap_or_default();
                        warn!(%peer, %reason, "FILEMQ client refused at the handshake");
                        let _ = self.events.try_send(ServerEvent::HandshakeFailed { peer, reason });
                    }
                }
                _ = sleep_until(next_scan) => {}
                _ = sleep_until(timeout) => self.core.handle_timeout(std::time::Instant::now()),
                _ = tokio::task::yield_now(), if more => {}
                _ = sleep(Duration::from_millis(1)), if pending.is_some() => {}
            }
        }
    }
}
