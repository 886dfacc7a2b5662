//! [`FileServer`]: the tokio driver of [`Server`] over a harmony-zmtp ROUTER, publishing
//! directories. It runs on a thread of its own (file reads and digests block), with its own
//! runtime, so it never stalls the caller's. That runtime has one worker thread for the
//! socket's connection tasks. A chunk whose crc32 and digest are in the file's manifest is
//! not read at all: its head goes into the socket's queue with the file region behind it, and
//! the worker writes the region with sendfile(2) (a file cut short under it closes that
//! connection; the client resumes). With CURVE, or when the content must be hashed, the
//! driver reads the next chunk while the worker seals and writes the previous ones; a file
//! found shorter than published there closes that client's connection the same way
//! ([`Server::poll_close`], [`RouterSocket::close_peer`]).
//!
//! A file found stable is read once more, on a third thread, into its [`Manifest`] (digest
//! and chunk crc32s) before it is published: transfers then only read and send.
//! Subscriptions are answered at once, however large the tree still being hashed: a client
//! gets each file as soon as it is published, and a Harmony client's synced marker follows the
//! last file that was found before it subscribed (see [`Server::file_pending`]).

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use harmony_zmtp::{
    EventKind, FileRegion, MechanismConfig, Message, Monitor, RouterSocket, SocketOptions,
    TrySendError,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{debug, warn};

use crate::error::FilesError;
use crate::manifest::{self, FileVersion, Manifest, ManifestError};
use crate::record::Record;
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
    manifest_permits: Option<std_mpsc::Receiver<()>>,
    manifest_record: Option<PathBuf>,
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
            manifest_permits: None,
            manifest_record: None,
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

    /// For tests: the manifest thread takes one permit from `permits` before each file it
    /// reads (and runs freely once the sender is dropped), so that hashing can be observed
    /// half done.
    #[doc(hidden)]
    pub fn manifest_permits(mut self, permits: std_mpsc::Receiver<()>) -> Self {
        self.manifest_permits = Some(permits);
        self
    }

    /// Keeps the files' manifests in `file` across restarts (default: none, every start reads
    /// every file). A restarted server then reads only the files changed since: the others'
    /// manifests are on record, each checked against the file's size, times, device and
    /// inode. Written when the manifests made are all published and when the server stops;
    /// a record that cannot be read or written only costs reads.
    pub fn manifest_record(mut self, file: impl Into<PathBuf>) -> Self {
        self.manifest_record = Some(file.into());
        self
    }

    /// Binds and starts serving.
    pub async fn start(mut self) -> Result<FileServer, FilesError> {
        for (dir, vpath) in &mut self.mounts {
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
            // Where it really is: the record of manifests is keyed by the files' paths, which
            // then do not depend on how the directory was named or from where.
            *dir = dir
                .canonicalize()
                .map_err(FilesError::io("published directory"))?;
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (events_tx, events_rx) = mpsc::channel(1024);
        let (ready_tx_w, ready_rx_w) = watch::channel(false);
        let thread = thread::Builder::new()
            .name("harmony-files-server".into())
            .spawn(move || {
                // The driver runs on this thread (`block_on`), the ROUTER's I/O on the worker.
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("files-srv-io")
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
                    let permits = self.manifest_permits;
                    let record = self.manifest_record.map(|path| {
                        let mut new = path.clone().into_os_string();
                        new.push(".new");
                        Record::load(path, new.into(), MANIFESTS_HEADER)
                    });
                    let (jobs, made) =
                        match spawn_manifest_maker(self.config.chunk_size, permits, record) {
                            Ok(pair) => pair,
                            Err(e) => {
                                warn!(%e, "no manifest thread: nothing can be published");
                                return;
                            }
                        };
                    let regions = sends_from_files(&self.options);
                    let core = Server::new(self.config);
                    let driver = Driver {
                        router,
                        monitor,
                        scanner,
                        core,
                        scan_interval: self.scan_interval,
                        events: events_tx,
                        jobs,
                        made,
                        pending: 0,
                        ready: Some(ready_tx_w),
                        first_scan: (0, 0),
                        regions,
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
            ready: ready_rx_w,
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
    ready: watch::Receiver<bool>,
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

    /// Waits until the files found by the first scan are published (their manifests made);
    /// returns at once after that. Clients need not wait for it: they are answered at once
    /// and get each file as it is published.
    pub async fn ready(&mut self) -> Result<(), FilesError> {
        self.ready
            .wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| FilesError::Stopped)
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
    /// Files found stable, to the manifest thread.
    jobs: std_mpsc::Sender<Job>,
    /// Their manifests, back.
    made: mpsc::Receiver<Made>,
    /// Jobs not back yet.
    pending: usize,
    /// Told once the first scan's files are published.
    ready: Option<watch::Sender<bool>>,
    /// Files of the first scan given a manifest so far, and how many of them were read.
    first_scan: (usize, usize),
    /// Chunks may be sent from their files (no CURVE).
    regions: bool,
}

/// Whether chunk content goes from the file to the socket (sendfile): not when CURVE has to
/// seal it, where the driver reads it while the socket's worker writes earlier chunks.
fn sends_from_files(options: &SocketOptions) -> bool {
    !matches!(options.mechanism, MechanismConfig::CurveServer { .. })
}

/// Asks the kernel to start reading `region` into the page cache, without waiting for it: run
/// here, on the driver's thread, so that sendfile on the I/O worker finds the pages there.
/// Best effort (an error only costs the read-ahead).
fn read_ahead(region: &FileRegion) {
    let Some(len) = std::num::NonZeroU64::new(region.len() as u64) else {
        return;
    };
    let advice = rustix::fs::Advice::WillNeed;
    if let Err(e) = rustix::fs::fadvise(&**region.file(), region.offset(), Some(len), advice) {
        debug!(%e, "read-ahead not started");
    }
}

/// A file version to read into its manifest.
struct Job {
    vpath: String,
    path: PathBuf,
    found: FileVersion,
    version: u64,
}

/// A job done.
struct Made {
    vpath: String,
    found: FileVersion,
    version: u64,
    manifest: Result<Manifest, ManifestError>,
    /// Read for it (not taken from the record).
    read: bool,
}

/// The thread that reads published files into their manifests, in the order they were found
/// (each after a permit from `permits`, while it has a sender). It ends when the driver drops
/// its side.
fn spawn_manifest_maker(
    chunk_size: usize,
    mut permits: Option<std_mpsc::Receiver<()>>,
    mut record: Option<Record>,
) -> std::io::Result<(std_mpsc::Sender<Job>, mpsc::Receiver<Made>)> {
    let (jobs_tx, jobs_rx) = std_mpsc::channel::<Job>();
    let (made_tx, made_rx) = mpsc::channel(256);
    thread::Builder::new()
        .name("harmony-files-manifest".into())
        .spawn(move || {
            let mut buf = Vec::new();
            // Files gone since the record was written are forgotten (one look at each, here on
            // the manifest thread).
            if let Some(record) = record.as_mut() {
                record.retain(|path| std::path::Path::new(path).is_file());
            }
            loop {
                let job = match jobs_rx.try_recv() {
                    Ok(job) => job,
                    Err(std_mpsc::TryRecvError::Empty) => {
                        // Caught up: what was made goes on record.
                        save(&mut record);
                        match jobs_rx.recv() {
                            Ok(job) => job,
                            Err(_) => break,
                        }
                    }
                    Err(std_mpsc::TryRecvError::Disconnected) => break,
                };
                if permits.as_ref().is_some_and(|p| p.recv().is_err()) {
                    permits = None;
                }
                let (manifest, read) =
                    made_or_recorded(&job, chunk_size, &mut buf, record.as_mut());
                let made = Made {
                    vpath: job.vpath,
                    found: job.found,
                    version: job.version,
                    manifest,
                    read,
                };
                if made_tx.blocking_send(made).is_err() {
                    break;
                }
            }
            save(&mut record);
        })?;
    Ok((jobs_tx, made_rx))
}

/// First line of a server's record of manifests.
const MANIFESTS_HEADER: &str = "harmony-files manifests 1\n";

/// `job`'s manifest: from the record when the file is the version it was made from, else
/// read (and then put on record if the file did not change while it was read); whether the
/// file was read.
fn made_or_recorded(
    job: &Job,
    chunk_size: usize,
    buf: &mut Vec<u8>,
    record: Option<&mut Record>,
) -> (Result<Manifest, ManifestError>, bool) {
    let Some(record) = record else {
        return (
            manifest::compute(&job.path, job.found, chunk_size, buf),
            true,
        );
    };
    // Paths that are not UTF-8 are not kept.
    let key = job.path.to_str();
    let before = job.path.symlink_metadata().ok();
    if let (Some(key), Some(meta)) = (key, &before) {
        if FileVersion::of(meta) == job.found {
            if let Some(m) = record
                .get(key, meta)
                .and_then(|text| Manifest::from_record(text, job.found.size, chunk_size))
            {
                return (Ok(m), false);
            }
        }
    }
    let manifest = match manifest::compute(&job.path, job.found, chunk_size, buf) {
        Ok(m) => m,
        Err(e) => return (Err(e), true),
    };
    if let (Some(key), Some(before)) = (key, before) {
        record.record_unless_changed(key, &job.path, &before, &manifest.to_record());
    }
    (Ok(manifest), true)
}

/// Writes the record if there is one and it changed; a failure is said, not fatal.
fn save(record: &mut Option<Record>) {
    if let Some(record) = record {
        if let Err(e) = record.save() {
            warn!(%e, "record of manifests not written");
        }
    }
}

impl Driver {
    fn rescan(&mut self) {
        for change in self.scanner.scan() {
            match change {
                Change::Changed {
                    vpath,
                    path,
                    found,
                    version,
                } => {
                    debug!(%vpath, size = found.size, "found stable");
                    self.core.file_pending(&vpath);
                    let job = Job {
                        vpath,
                        path,
                        found,
                        version,
                    };
                    match self.jobs.send(job) {
                        Ok(()) => self.pending += 1,
                        Err(std_mpsc::SendError(job)) => self.core.file_skipped(&job.vpath),
                    }
                }
                Change::Removed { vpath } => {
                    debug!(%vpath, "removed");
                    self.core.file_removed(&vpath);
                }
            }
        }
    }

    /// The first scan's files are all published: [`FileServer::ready`] returns.
    fn check_ready(&mut self) {
        if self.pending == 0 {
            if let Some(ready) = self.ready.take() {
                let (files, read) = self.first_scan;
                let _ = self.events.try_send(ServerEvent::Ready { files, read });
                let _ = ready.send(true);
            }
        }
    }

    /// A manifest is made: the file is published, if it is still the version found.
    fn manifest_made(&mut self, made: Made) {
        self.pending = self.pending.saturating_sub(1);
        if self.ready.is_some() {
            self.first_scan.0 += 1;
            self.first_scan.1 += usize::from(made.read);
        }
        if self.scanner.is_current(&made.vpath, made.version) {
            match made.manifest {
                Ok(manifest) => {
                    debug!(vpath = %made.vpath, size = made.found.size, "published");
                    self.core.file_changed_with_manifest(
                        &made.vpath,
                        made.found.size,
                        made.version,
                        manifest,
                    );
                }
                // Changed while it was read, or unreadable: found again by the next scan.
                Err(ManifestError::Changed) => {
                    debug!(vpath = %made.vpath, "changed while read, not published yet");
                    self.scanner.forget(&made.vpath);
                    self.core.file_skipped(&made.vpath);
                }
                Err(ManifestError::Io(e)) => {
                    debug!(vpath = %made.vpath, %e, "unreadable, not published");
                    self.scanner.forget(&made.vpath);
                    self.core.file_skipped(&made.vpath);
                }
            }
        }
        self.check_ready();
    }

    /// Sends what the core has, up to a batch; `false` when the socket is closed.
    fn flush(
        &mut self,
        pending: &mut Option<(Message, Option<FileRegion>)>,
        open: &mut Option<(String, Arc<std::fs::File>)>,
    ) -> Result<bool, ()> {
        let mut sent = 0;
        loop {
            let (msg, region) = match pending.take() {
                Some(m) => m,
                None => {
                    if sent == SEND_BATCH {
                        return Ok(true);
                    }
                    let mut source = self.scanner.source(open, self.regions);
                    let Some((id, frame, region)) = self.core.poll_transmit_region(&mut source)
                    else {
                        return Ok(false);
                    };
                    // Before the region is queued: the kernel reads while earlier chunks go out.
                    while let Some(ahead) = self.core.poll_readahead() {
                        read_ahead(&ahead);
                    }
                    (Message::from_frames([id, frame]), region)
                }
            };
            let result = match &region {
                Some(r) => self.router.try_send_region(msg, r.clone()),
                None => self.router.try_send(msg),
            };
            match result {
                Ok(()) => sent += 1,
                Err(TrySendError::WouldBlock(m)) => {
                    *pending = Some((m, region));
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
        let mut pending = None;
        let mut open = None;
        let mut next_scan = Instant::now();
        let far = Duration::from_secs(3600);
        loop {
            if Instant::now() >= next_scan {
                self.rescan();
                self.check_ready();
                open = None;
                next_scan = Instant::now() + self.scan_interval;
            }
            let Ok(more) = self.flush(&mut pending, &mut open) else {
                return;
            };
            // Before anything else can be queued for them.
            while let Some(id) = self.core.poll_close() {
                self.router.close_peer(&id);
            }
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
                Some(made) = self.made.recv() => {
                    self.manifest_made(made);
                    // What else is made is taken too: many small files, one wake-up.
                    while let Ok(made) = self.made.try_recv() {
                        self.manifest_made(made);
                    }
                }
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

#[cfg(test)]
mod tests {
    use harmony_security::KeyPair;

    use super::*;

    #[test]
    fn chunks_are_sent_from_files_except_with_curve() {
        assert!(sends_from_files(&SocketOptions::default()));
        let plain = SocketOptions::default().mechanism(MechanismConfig::PlainServer);
        assert!(sends_from_files(&plain));
        let curve = SocketOptions::default().mechanism(MechanismConfig::CurveServer {
            keys: KeyPair::generate(),
        });
        assert!(!sends_from_files(&curve));
    }
}
