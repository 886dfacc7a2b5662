//! The sans-IO FILEMQ server (zeromq/filemq's `fmq_server`): one state per client routing id,
//! byte credit, consecutive chunks per file, deletes, client-driven HUGZ, RTFM for anything
//! out of place.
//!
//! The driver tells it what is published ([`Server::file_changed`], [`Server::file_removed`])
//! and what is coming ([`Server::file_pending`]: found, its manifest being made), feeds it
//! frames ([`Server::handle_message`]) and time, and pulls messages with
//! [`Server::poll_transmit`], which reads file content through a [`Source`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_wire::filemq::{Cheezburger, FileOperation, FilemqMessage};
use harmony_zmtp::FileRegion;
use tracing::{debug, warn};

use crate::error::ProtocolError;
use crate::ext;
use crate::ext::Hasher;
use crate::manifest::Manifest;
use crate::path;
use crate::pool::BufferPool;
use crate::readahead;

/// Reads published content; the driver's is the file system, a simulation's is memory.
pub trait Source {
    /// Appends up to `len` bytes of `vpath` from `offset` to `dst` (fewer only at the end of
    /// the file) and returns how many. `dst` is the frame being built: the content goes
    /// straight into place.
    fn read_into(
        &mut self,
        vpath: &str,
        offset: u64,
        len: usize,
        dst: &mut Vec<u8>,
    ) -> io::Result<usize>;

    /// The open file behind `vpath`, when content may be sent straight from it (sendfile)
    /// rather than read into the frame: see [`Server::poll_transmit_region`]. `None` (the
    /// default): always read.
    fn file(&mut self, _vpath: &str) -> Option<Arc<File>> {
        None
    }
}

/// Published content in memory, by virtual path: a [`Source`] for simulations and tests of the
/// sans-IO [`Server`].
#[derive(Debug, Default, Clone)]
pub struct MemSource(pub BTreeMap<String, Bytes>);

impl Source for MemSource {
    fn read_into(
        &mut self,
        vpath: &str,
        offset: u64,
        len: usize,
        dst: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let data = self.0.get(vpath).ok_or(io::ErrorKind::NotFound)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(len).min(data.len());
        dst.extend_from_slice(&data[start..end]);
        Ok(end - start)
    }
}

/// Something to send: a message, a CHEEZBURGER already encoded around its content, or the
/// head of one whose content stays in its file.
#[derive(Debug)]
enum Outgoing {
    Message(FilemqMessage),
    Frame(Bytes),
    /// Head, content left in its file, and the file's virtual path.
    Region(Bytes, FileRegion, String),
}

/// A chunk's content: read into its frame (after the head's room), or left in its file.
enum Body {
    Read(Vec<u8>),
    Region(FileRegion),
}

/// ICANHAZ held at most while subscriptions are held (see [`Server::hold_subscriptions`]).
const MAX_HELD: usize = 1024;

/// A held ICANHAZ: client, path, options, cache.
type Held = (Bytes, String, Vec<(String, String)>, Vec<(String, String)>);

/// Chunk buffers kept for reuse: enough for what the socket typically holds in flight.
const FREE_BUFFERS: usize = 24;

/// Read-ahead requests kept for the driver; older ones are dropped (a caller that never asks
/// for them, e.g. one using [`Server::poll_transmit`], does not grow the queue).
const MAX_READAHEAD_QUEUED: usize = 64;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest chunk of content in one CHEEZBURGER (zeromq/filemq: 1 000 000).
    pub chunk_size: usize,
    /// Largest credit a client may hold; a NOM beyond it is refused (RTFM) and the client
    /// dropped.
    pub max_credit: u64,
    /// A client silent this long is dropped (zeromq/filemq: 60 s; its clients HUGZ every second).
    pub client_timeout: Duration,
    /// Largest frame accepted from a client.
    pub max_frame: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chunk_size: 1_000_000,
            max_credit: 1 << 32,
            client_timeout: Duration::from_secs(60),
            max_frame: 16 << 20,
        }
    }
}

/// What the server tells its driver besides messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A client sent OHAI.
    Joined(Bytes),
    /// A client's state was dropped: it said KTHXBAI (`None`), went silent or broke the
    /// protocol.
    Dropped(Bytes, Option<ProtocolError>),
    /// A file went out whole to a client.
    Sent(Bytes, String),
    /// `vpath` was shorter than published when its chunk at `offset` was due for this client
    /// (cut short after its manifest was made): the chunk cannot be what was announced. That
    /// client's state is dropped and the driver closes its connection (see
    /// [`Server::poll_close`]), as when a chunk sent straight from the file finds it short;
    /// the client reconnects and resumes, and gets the file as it now is once the next scan
    /// publishes it. Other clients are untouched.
    Truncated {
        /// The client.
        peer: Bytes,
        /// The file.
        vpath: String,
        /// The offset of the chunk it could not fill.
        offset: u64,
    },
    /// From the driver: the first scan's files are all published ([`crate::FileServer::ready`]):
    /// `files` had their manifest made or taken from the record, `read` of them were read
    /// (not on record, or changed since; see `FileServerBuilder::manifest_record`).
    Ready {
        /// Files given a manifest.
        files: usize,
        /// Files read for it.
        read: usize,
    },
    /// From the driver: a connection's handshake failed before any FILEMQ message, e.g. the
    /// authenticator refused the client's CURVE key.
    HandshakeFailed {
        /// The remote address, when known.
        peer: String,
        /// Why, in words.
        reason: String,
    },
}

#[derive(Debug)]
struct Published {
    /// Publication order: late joiners get files in the order they appeared.
    order: u64,
    size: u64,
    version: u64,
    digest: Option<String>,
    /// Made once for this version by the driver: digest and chunk crc32s, never recomputed.
    manifest: Option<Arc<Manifest>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Patch {
    Create(String),
    Delete(String),
    /// Harmony clients only: the initial listing of a subscription is out (sent as a HUGZ,
    /// which rfc/35 lets a server send; the client answers HUGZ-OK).
    Synced,
}

impl Patch {
    fn vpath(&self) -> Option<&str> {
        match self {
            Self::Create(v) | Self::Delete(v) => Some(v),
            Self::Synced => None,
        }
    }

    /// Sent without credit.
    fn is_free(&self) -> bool {
        matches!(self, Self::Delete(_) | Self::Synced)
    }
}

#[derive(Debug)]
struct Transfer {
    vpath: String,
    offset: u64,
    size: u64,
    version: u64,
    from_zero: bool,
    /// Harmony clients, when the file has no manifest: the digest made while sending.
    hasher: Option<Hasher>,
    /// Harmony clients, when the file has one: crc32s and digest without hashing.
    manifest: Option<Arc<Manifest>>,
    /// Where the last read-ahead request for this transfer ended (see [`readahead::ahead`]).
    advised: u64,
}

#[derive(Debug)]
struct Peer {
    subs: Vec<String>,
    harmony: bool,
    credit: u64,
    /// The most credit it has held: about its window, how far ahead its file is read.
    window: u64,
    queue: Patches,
    /// From ICANHAZ caches: vpath -> digest the client has whole.
    has: BTreeMap<String, String>,
    /// vpath -> (digest of the prefix, its length) the client has partly.
    partial: BTreeMap<String, (String, u64)>,
    current: Option<Transfer>,
    sequence: u64,
    last_heard: Instant,
    /// Synced markers not queued yet, in the order of their subscriptions, each with the
    /// numbers of the files pending under its path (see [`Server::file_pending`]) when it
    /// came: it is queued once each of them is published or given up (and those before it).
    owed_synced: VecDeque<BTreeSet<u64>>,
}

impl Peer {
    fn wants(&self, vpath: &str) -> bool {
        self.subs.iter().any(|s| path::under(vpath, s))
    }

    /// Queues `patch`; it replaces a patch of the same file not sent yet, or being sent.
    fn queue(&mut self, patch: Patch) {
        if self
            .current
            .as_ref()
            .is_some_and(|t| Some(t.vpath.as_str()) == patch.vpath())
        {
            self.current = None;
        }
        self.queue.push_back(patch);
    }
}

/// A client's patches in order. A patch for a file supersedes the one queued before for it,
/// which stays in place, skipped, until it comes up: O(log n) however long the queue (a
/// tree's files published one by one to a client already subscribed).
#[derive(Debug, Default)]
struct Patches {
    queue: VecDeque<(u64, Patch)>,
    /// vpath -> the number of its patch in force.
    live: BTreeMap<String, u64>,
    /// Patches queued so far (numbers them).
    count: u64,
}

impl Patches {
    fn push_back(&mut self, patch: Patch) {
        self.count += 1;
        if let Some(vpath) = patch.vpath() {
            self.live.insert(vpath.to_string(), self.count);
        }
        self.queue.push_back((self.count, patch));
        self.skip_superseded();
    }

    fn pop_front(&mut self) -> Option<Patch> {
        let (_, patch) = self.queue.pop_front()?;
        if let Some(vpath) = patch.vpath() {
            self.live.remove(vpath);
        }
        self.skip_superseded();
        Some(patch)
    }

    /// The next patch in force.
    fn front(&self) -> Option<&Patch> {
        self.queue.front().map(|(_, patch)| patch)
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether a patch of `vpath` is queued.
    fn has(&self, vpath: &str) -> bool {
        self.live.contains_key(vpath)
    }

    /// Keeps the front in force: [`Patches::front`] and [`Patches::is_empty`] need not look
    /// further.
    fn skip_superseded(&mut self) {
        while let Some((number, patch)) = self.queue.front() {
            match patch.vpath() {
                Some(vpath) if self.live.get(vpath) != Some(number) => {
                    self.queue.pop_front();
                }
                _ => break,
            }
        }
    }
}

/// The sans-IO FILEMQ server. Deterministic: clients and files live in ordered maps.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    files: BTreeMap<String, Published>,
    peers: BTreeMap<Bytes, Peer>,
    outbox: VecDeque<(Bytes, FilemqMessage)>,
    events: VecDeque<ServerEvent>,
    /// Round-robin position: the client served last.
    cursor: Option<Bytes>,
    /// Files published so far (orders them).
    published: u64,
    /// Chunk frames, recycled once written.
    buffers: BufferPool,
    /// ICANHAZ waiting for the listing (`None`: answered at once).
    held: Option<VecDeque<Held>>,
    /// Files found but not published yet (see [`Server::file_pending`]): vpath -> its number.
    pending: BTreeMap<String, u64>,
    /// Pending files numbered so far.
    pending_count: u64,
    /// Clients whose connection the driver must close (see [`ServerEvent::Truncated`]).
    closing: VecDeque<Bytes>,
    /// Parts of files to read ahead of the chunks queued from them (see
    /// [`Server::poll_readahead`]).
    readahead: VecDeque<FileRegion>,
}

impl Server {
    /// A server publishing nothing yet.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            files: BTreeMap::new(),
            peers: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            cursor: None,
            published: 0,
            buffers: BufferPool::new(FREE_BUFFERS),
            held: None,
            pending: BTreeMap::new(),
            pending_count: 0,
            closing: VecDeque::new(),
            readahead: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Number of clients with state.
    pub fn client_count(&self) -> usize {
        self.peers.len()
    }

    /// Virtual paths published now.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// A file at `vpath` is new or changed (and stable): it goes to every subscriber.
    /// `version` changes whenever the content may have (e.g. the mtime).
    /// Without a manifest, a Harmony client's transfer hashes what it sends.
    pub fn file_changed(&mut self, vpath: &str, size: u64, version: u64) {
        self.publish(vpath, size, version, None);
    }

    /// As [`Server::file_changed`], with the file's manifest made for this version: no
    /// transfer of it hashes anything (crc32s and digest come from the manifest), and resync
    /// compares against its digest.
    pub fn file_changed_with_manifest(
        &mut self,
        vpath: &str,
        size: u64,
        version: u64,
        manifest: Manifest,
    ) {
        self.publish(vpath, size, version, Some(Arc::new(manifest)));
    }

    fn publish(&mut self, vpath: &str, size: u64, version: u64, manifest: Option<Arc<Manifest>>) {
        if let Some(old) = self.files.get_mut(vpath) {
            if old.size == size && old.version == version {
                if let Some(m) = manifest {
                    old.digest = Some(m.digest.clone());
                    old.manifest = Some(m);
                }
                self.resolve_pending(vpath);
                return;
            }
        }
        self.published += 1;
        let entry = Published {
            order: self.published,
            size,
            version,
            digest: manifest.as_ref().map(|m| m.digest.clone()),
            manifest,
        };
        self.files.insert(vpath.to_string(), entry);
        for peer in self.peers.values_mut().filter(|p| p.wants(vpath)) {
            peer.queue(Patch::Create(vpath.to_string()));
        }
        self.resolve_pending(vpath);
    }

    /// The file at `vpath` is gone: subscribers delete it.
    pub fn file_removed(&mut self, vpath: &str) {
        if self.files.remove(vpath).is_none() {
            // Never published: only a cached copy kept while it was pending goes.
            return self.file_skipped(vpath);
        }
        for peer in self.peers.values_mut().filter(|p| p.wants(vpath)) {
            peer.queue(Patch::Delete(vpath.to_string()));
            peer.has.remove(vpath);
            peer.partial.remove(vpath);
        }
        self.resolve_pending(vpath);
    }

    /// A file was found at `vpath` and will be published once its manifest is made (by
    /// [`Server::file_changed_with_manifest`]; or given up by [`Server::file_skipped`] or
    /// [`Server::file_removed`]). Meanwhile subscriptions are answered with what is published,
    /// and the file follows when it is; but a client's cached copy of it is not deleted as
    /// unpublished, and the synced marker of a subscription made now under whose path it lies
    /// waits until it is published (queued ahead of the marker) or given up. Files pending
    /// elsewhere do not hold that marker.
    pub fn file_pending(&mut self, vpath: &str) {
        if self.pending.contains_key(vpath) {
            // Still the one found first: whoever waits for it keeps waiting.
            return;
        }
        self.pending_count += 1;
        self.pending.insert(vpath.to_string(), self.pending_count);
    }

    /// The numbers of the files pending under subscription `sub`.
    fn pending_under(&self, sub: &str) -> BTreeSet<u64> {
        let dir = if sub.ends_with('/') {
            sub.to_string()
        } else {
            format!("{sub}/")
        };
        let exact = self.pending.get(sub).copied();
        let under = self
            .pending
            .range::<str, _>((Bound::Included(dir.as_str()), Bound::Unbounded))
            .take_while(|(v, _)| v.starts_with(&dir))
            .map(|(_, &number)| number);
        exact.into_iter().chain(under).collect()
    }

    /// The file pending at `vpath` (see [`Server::file_pending`]) is not published after all
    /// (it changed while its manifest was made, or could not be read): what is published at
    /// `vpath`, if anything, stays; if nothing is, a cached copy kept for it is deleted (the
    /// client mirrors what is published) and synced markers stop waiting for it.
    pub fn file_skipped(&mut self, vpath: &str) {
        if !self.files.contains_key(vpath) {
            for peer in self.peers.values_mut().filter(|p| p.harmony) {
                let cached = peer.has.remove(vpath).is_some();
                if (peer.partial.remove(vpath).is_some() || cached) && peer.wants(vpath) {
                    peer.queue(Patch::Delete(vpath.to_string()));
                }
            }
        }
        self.resolve_pending(vpath);
    }

    /// `vpath` is no longer pending: synced markers waiting for no other file go out.
    fn resolve_pending(&mut self, vpath: &str) {
        let Some(number) = self.pending.remove(vpath) else {
            return;
        };
        for peer in self.peers.values_mut() {
            for waits in &mut peer.owed_synced {
                waits.remove(&number);
            }
            while peer.owed_synced.front().is_some_and(BTreeSet::is_empty) {
                peer.owed_synced.pop_front();
                peer.queue(Patch::Synced);
            }
        }
    }

    /// The driver could not reach this client any more (e.g. unroutable): forget it.
    pub fn peer_gone(&mut self, peer: &Bytes) {
        if self.peers.remove(peer).is_some() {
            self.events
                .push_back(ServerEvent::Dropped(peer.clone(), None));
        }
    }

    /// `vpath` ran out at `offset` under a chunk due for `peer`: its connection is closed.
    fn truncated(&mut self, peer: &Bytes, vpath: String, offset: u64) {
        warn!(peer = ?peer, %vpath, offset, "file shorter than published: closing that client's connection");
        self.peers.remove(peer);
        self.outbox.retain(|(to, _)| to != peer);
        self.closing.push_back(peer.clone());
        self.events.push_back(ServerEvent::Truncated {
            peer: peer.clone(),
            vpath,
            offset,
        });
    }

    /// The next client whose connection the driver must close at once, dropping whatever is
    /// queued for it (a ROUTER: [`harmony_zmtp::RouterSocket::close_peer`]). Its state is
    /// already gone; it reconnects as after any failure. See [`ServerEvent::Truncated`].
    pub fn poll_close(&mut self) -> Option<Bytes> {
        self.closing.pop_front()
    }

    /// The next part of a file for the driver to have the kernel read ahead
    /// (`posix_fadvise(POSIX_FADV_WILLNEED)`): chunks that [`Server::poll_transmit_region`]
    /// returned as regions, or will soon, are sent from there. Asked for when a chunk is
    /// queued, about the client's credit ahead of it (at most one request per chunk), so
    /// that sendfile finds the pages in the cache instead of waiting for the disk.
    pub fn poll_readahead(&mut self) -> Option<FileRegion> {
        self.readahead.pop_front()
    }

    fn drop_peer(&mut self, peer: &Bytes, error: ProtocolError) {
        debug!(peer = ?peer, %error, "dropping FILEMQ client");
        self.peers.remove(peer);
        let reason = error.to_string().chars().take(255).collect();
        self.outbox
            .push_back((peer.clone(), FilemqMessage::Rtfm { reason }));
        self.events
            .push_back(ServerEvent::Dropped(peer.clone(), Some(error)));
    }

    /// A frame from client `peer` (its ROUTER routing id).
    pub fn handle_message(&mut self, peer: &Bytes, frame: &Bytes, now: Instant) {
        let msg = match FilemqMessage::decode(frame, self.config.max_frame) {
            Ok(msg) => msg,
            Err(e) => return self.drop_peer(peer, e.into()),
        };
        let Some(state) = self.peers.get_mut(peer) else {
            if msg == FilemqMessage::Ohai {
                self.peers.insert(
                    peer.clone(),
                    Peer {
                        subs: Vec::new(),
                        harmony: false,
                        credit: 0,
                        window: 0,
                        queue: Patches::default(),
                        has: BTreeMap::new(),
                        partial: BTreeMap::new(),
                        current: None,
                        sequence: 0,
                        last_heard: now,
                        owed_synced: VecDeque::new(),
                    },
                );
                self.outbox.push_back((peer.clone(), FilemqMessage::OhaiOk));
                self.events.push_back(ServerEvent::Joined(peer.clone()));
            } else {
                self.drop_peer(peer, ProtocolError::Unexpected(msg.name()));
            }
            return;
        };
        state.last_heard = now;
        match msg {
            FilemqMessage::Ohai => self.outbox.push_back((peer.clone(), FilemqMessage::OhaiOk)),
            FilemqMessage::Icanhaz {
                path,
                options,
                cache,
            } => match self.held.as_mut() {
                Some(held) if held.len() < MAX_HELD => {
                    held.push_back((peer.clone(), path, options, cache));
                }
                Some(_) => self.drop_peer(
                    peer,
                    ProtocolError::Unexpected("ICANHAZ while too many wait for the listing"),
                ),
                None => self.subscribe(peer, path, &options, cache),
            },
            FilemqMessage::Nom { credit, .. } => {
                let total = u128::from(state.credit) + u128::from(credit);
                if total > u128::from(self.config.max_credit) {
                    return self.drop_peer(peer, ProtocolError::CreditTooLarge(total));
                }
                state.credit = total as u64;
                state.window = state.window.max(state.credit);
            }
            FilemqMessage::Hugz => self.outbox.push_back((peer.clone(), FilemqMessage::HugzOk)),
            FilemqMessage::HugzOk => {}
            FilemqMessage::Kthxbai => {
                self.peers.remove(peer);
                self.events
                    .push_back(ServerEvent::Dropped(peer.clone(), None));
            }
            other => self.drop_peer(peer, ProtocolError::Unexpected(other.name())),
        }
    }

    fn subscribe(
        &mut self,
        peer: &Bytes,
        sub: String,
        options: &[(String, String)],
        cache: Vec<(String, String)>,
    ) {
        if !sub.starts_with('/') || sub.contains('\0') {
            return self.drop_peer(peer, ProtocolError::Unexpected("ICANHAZ path not absolute"));
        }
        let pending_under = self.pending_under(&sub);
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        state.harmony |= ext::header(options, ext::OPT_HARMONY) == Some("1");
        for (name, value) in cache {
            let vpath = if name.starts_with('/') {
                name
            } else {
                path::join(&sub, &name)
            };
            if !path::under(&vpath, &sub) {
                continue;
            }
            match ext::parse_cache_value(&value) {
                Some((digest, None)) => {
                    state.has.insert(vpath, digest.to_string());
                }
                Some((digest, Some(offset))) => {
                    state.partial.insert(vpath, (digest.to_string(), offset));
                }
                None => {}
            }
        }
        if state.harmony {
            // A mirror: what the client has and we no longer publish goes away.
            // A name still pending is not gone: it is compared when it is published.
            let gone: Vec<String> = state
                .has
                .keys()
                .chain(state.partial.keys())
                .filter(|v| !self.files.contains_key(*v) && !self.pending.contains_key(*v))
                .cloned()
                .collect();
            for vpath in gone {
                state.has.remove(&vpath);
                state.partial.remove(&vpath);
                state.queue(Patch::Delete(vpath));
            }
        }
        if !state.subs.iter().any(|s| path::under(&sub, s)) {
            state.subs.retain(|s| !path::under(s, &sub));
            state.subs.push(sub.clone());
            // Late joiners get everything that exists (less what their cache says they have).
            let current = state.current.as_ref().map(|t| t.vpath.as_str());
            let busy = |v: &str| state.queue.has(v) || current == Some(v);
            let mut fresh: Vec<(u64, &String)> = self
                .files
                .iter()
                .filter(|(v, _)| path::under(v, &sub) && !busy(v))
                .map(|(v, f)| (f.order, v))
                .collect();
            fresh.sort_unstable();
            for (_, vpath) in fresh {
                state.queue.push_back(Patch::Create(vpath.clone()));
            }
        }
        if state.harmony {
            if pending_under.is_empty() && state.owed_synced.is_empty() {
                state.queue.push_back(Patch::Synced);
            } else {
                // After the files pending under `sub` now, which come as they are published
                // (and after the markers owed before it).
                state.owed_synced.push_back(pending_under);
            }
        }
        self.outbox
            .push_back((peer.clone(), FilemqMessage::IcanhazOk));
    }

    /// Holds subscriptions until [`Server::release_subscriptions`]: ICANHAZ waits (the client
    /// is otherwise answered: OHAI, NOM, HUGZ), so that what a new subscriber gets, and is told
    /// it has in sync, includes files the driver is still publishing. [`FileServer`] does not
    /// hold: it tells which files are coming ([`Server::file_pending`]) and answers at once.
    ///
    /// [`FileServer`]: crate::FileServer
    pub fn hold_subscriptions(&mut self) {
        self.held.get_or_insert_with(VecDeque::new);
    }

    /// Answers the held ICANHAZ, in order, and every later one at once.
    pub fn release_subscriptions(&mut self) {
        for (peer, path, options, cache) in self.held.take().into_iter().flatten() {
            if self.peers.contains_key(&peer) {
                self.subscribe(&peer, path, &options, cache);
            }
        }
    }

    /// Drops clients silent for longer than the timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.config.client_timeout;
        let silent: Vec<Bytes> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_heard) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for peer in silent {
            self.peers.remove(&peer);
            self.events
                .push_back(ServerEvent::Dropped(peer, Some(ProtocolError::Timeout)));
        }
    }

    /// When [`Server::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .map(|p| p.last_heard + self.config.client_timeout)
            .min()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The next message to send, as `(routing id, message)`: replies first, then one chunk per
    /// client in turn, so that one client's credit never stalls another. A chunk's content is
    /// a slice of its encoded frame (see [`Server::poll_transmit_frame`]).
    pub fn poll_transmit(&mut self, source: &mut dyn Source) -> Option<(Bytes, FilemqMessage)> {
        loop {
            let (id, out) = self.poll_outgoing(source)?;
            let frame = match out {
                Outgoing::Message(msg) => return Some((id, msg)),
                Outgoing::Frame(frame) => frame,
                Outgoing::Region(head, region, vpath) => {
                    match self.whole_frame(&id, &head, &region, vpath) {
                        Some(frame) => frame,
                        None => continue,
                    }
                }
            };
            let msg =
                FilemqMessage::decode(&frame, usize::MAX).expect("the server's own frames decode");
            return Some((id, msg));
        }
    }

    /// As [`Server::poll_transmit`], encoded: `(routing id, frame)`. A chunk is read from the
    /// [`Source`] straight into its frame, never copied.
    pub fn poll_transmit_frame(&mut self, source: &mut dyn Source) -> Option<(Bytes, Bytes)> {
        loop {
            let (id, out) = self.poll_outgoing(source)?;
            match out {
                Outgoing::Frame(frame) => return Some((id, frame)),
                Outgoing::Region(head, region, vpath) => {
                    if let Some(frame) = self.whole_frame(&id, &head, &region, vpath) {
                        return Some((id, frame));
                    }
                }
                Outgoing::Message(msg) => match msg.to_bytes() {
                    Ok(frame) => return Some((id, frame)),
                    Err(e) => debug!(%e, "unencodable FILEMQ message dropped"),
                },
            }
        }
    }

    /// As [`Server::poll_transmit_frame`], except that a chunk whose content the server need
    /// not see comes back as `(routing id, head, Some(region))`, the frame being the head
    /// followed by the region's bytes: its crc32 and digest come from the manifest, its
    /// content stays in the file that [`Source::file`] gives (the driver sends it with
    /// sendfile).
    pub fn poll_transmit_region(
        &mut self,
        source: &mut dyn Source,
    ) -> Option<(Bytes, Bytes, Option<FileRegion>)> {
        loop {
            let (id, out) = self.poll_outgoing(source)?;
            match out {
                Outgoing::Frame(frame) => return Some((id, frame, None)),
                Outgoing::Region(head, region, _) => return Some((id, head, Some(region))),
                Outgoing::Message(msg) => match msg.to_bytes() {
                    Ok(frame) => return Some((id, frame, None)),
                    Err(e) => debug!(%e, "unencodable FILEMQ message dropped"),
                },
            }
        }
    }

    fn poll_outgoing(&mut self, source: &mut dyn Source) -> Option<(Bytes, Outgoing)> {
        if let Some((id, msg)) = self.outbox.pop_front() {
            return Some((id, Outgoing::Message(msg)));
        }
        let order: Vec<Bytes> = match &self.cursor {
            Some(c) => self
                .peers
                .range::<Bytes, _>((Bound::Excluded(c), Bound::Unbounded))
                .chain(self.peers.range::<Bytes, _>(..=c))
                .map(|(k, _)| k.clone())
                .collect(),
            None => self.peers.keys().cloned().collect(),
        };
        for id in order {
            if let Some(out) = self.next_for(&id, source) {
                self.cursor = Some(id.clone());
                return Some((id, out));
            }
        }
        None
    }

    /// Whether some client has something to send and the credit for it.
    pub fn wants_to_send(&self) -> bool {
        !self.outbox.is_empty()
            || self.peers.values().any(|p| {
                (p.credit > 0 && (p.current.is_some() || !p.queue.is_empty()))
                    || p.queue.front().is_some_and(Patch::is_free)
            })
    }

    fn digest_of(&mut self, vpath: &str, source: &mut dyn Source) -> Option<String> {
        let chunk = self.config.chunk_size;
        let file = self.files.get_mut(vpath)?;
        if file.digest.is_none() {
            let (hasher, read) = hash_prefix(source, vpath, file.size, chunk).ok()?;
            if read == file.size {
                file.digest = Some(ext::digest_hex(&hasher));
            }
        }
        file.digest.clone()
    }

    /// Starts the next transfer of `id`; `Some(message)` for a delete or the synced marker.
    fn next_patch(&mut self, id: &Bytes, source: &mut dyn Source) -> Option<FilemqMessage> {
        loop {
            let peer = self.peers.get_mut(id)?;
            let patch = peer.queue.pop_front()?;
            let vpath = match patch {
                Patch::Delete(vpath) => {
                    let sequence = peer.sequence;
                    peer.sequence += 1;
                    return Some(FilemqMessage::Cheezburger(Cheezburger {
                        sequence,
                        operation: FileOperation::Delete,
                        filename: vpath,
                        offset: 0,
                        eof: false,
                        headers: Vec::new(),
                        chunk: Bytes::new(),
                    }));
                }
                Patch::Synced => return Some(FilemqMessage::Hugz),
                Patch::Create(vpath) => vpath,
            };
            let had = peer.has.remove(&vpath);
            let partial = peer.partial.remove(&vpath);
            let harmony = peer.harmony;
            let Some(file) = self.files.get(&vpath) else {
                continue;
            };
            let (size, version) = (file.size, file.version);
            let manifest = file.manifest.clone().filter(|_| harmony);
            if let Some(digest) = had {
                if self.digest_of(&vpath, source).as_deref() == Some(digest.as_str()) {
                    continue;
                }
            }
            let mut transfer = Transfer {
                vpath,
                offset: 0,
                size,
                version,
                from_zero: true,
                hasher: (harmony && manifest.is_none()).then(Hasher::new),
                manifest,
                advised: 0,
            };
            if let Some((digest, offset)) = partial.filter(|(_, o)| *o > 0 && *o <= size) {
                if let Ok((hasher, read)) =
                    hash_prefix(source, &transfer.vpath, offset, self.config.chunk_size)
                {
                    if read == offset && ext::digest_hex(&hasher) == digest {
                        debug!(vpath = %transfer.vpath, offset, "resuming");
                        transfer.offset = offset;
                        transfer.from_zero = false;
                        if transfer.hasher.is_some() {
                            transfer.hasher = Some(hasher);
                        }
                    }
                }
            }
            self.peers.get_mut(id)?.current = Some(transfer);
            return None;
        }
    }

    fn next_for(&mut self, id: &Bytes, source: &mut dyn Source) -> Option<Outgoing> {
        loop {
            let peer = self.peers.get(id)?;
            if peer.current.is_none() {
                let delete_next = peer.queue.front().is_some_and(Patch::is_free);
                if peer.credit == 0 && !delete_next {
                    return None;
                }
                if let Some(delete) = self.next_patch(id, source) {
                    return Some(Outgoing::Message(delete));
                }
                self.peers.get(id)?.current.as_ref()?;
            }
            let chunk_size = self.config.chunk_size as u64;
            let peer = self.peers.get_mut(id)?;
            if peer.credit == 0 {
                return None;
            }
            let harmony = peer.harmony;
            let transfer = peer.current.as_ref()?;
            if transfer.offset >= transfer.size {
                // What zeromq/filemq sends: a zero-length chunk with eof (also how an empty
                // file ends for Harmony clients).
                let mut eof = Cheezburger {
                    sequence: peer.sequence,
                    operation: FileOperation::Create,
                    filename: transfer.vpath.clone(),
                    offset: transfer.offset,
                    eof: true,
                    headers: Vec::new(),
                    chunk: Bytes::new(),
                };
                peer.sequence += 1;
                if harmony {
                    eof.headers
                        .push((ext::HDR_SIZE.to_string(), transfer.size.to_string()));
                }
                if let Some(digest) = self.finish(id) {
                    eof.headers.push((ext::HDR_DIGEST.to_string(), digest));
                }
                return Some(Outgoing::Message(FilemqMessage::Cheezburger(eof)));
            }
            let mut want = chunk_size
                .min(peer.credit)
                .min(transfer.size - transfer.offset);
            if harmony {
                // Chunks end on multiples of the chunk size (a short one after a credit-limited
                // one realigns), so that they are the manifest's pieces.
                want = want.min(chunk_size - transfer.offset % chunk_size);
            }
            // A Harmony client gets the eof flag and the digest on the last chunk of content
            // (one message less per file); zeromq/filemq's client, a separate eof chunk.
            let last = harmony && transfer.offset + want == transfer.size;
            let mut head = Cheezburger {
                sequence: peer.sequence,
                operation: FileOperation::Create,
                filename: transfer.vpath.clone(),
                offset: transfer.offset,
                eof: last,
                headers: Vec::new(),
                chunk: Bytes::new(),
            };
            if harmony {
                // Placeholders of the values' fixed lengths: the head's size is known before
                // the content is read behind it.
                head.headers.extend([
                    (ext::HDR_SIZE.to_string(), transfer.size.to_string()),
                    (ext::HDR_CRC32.to_string(), "0".repeat(8)),
                ]);
                if last {
                    head.headers
                        .push((ext::HDR_DIGEST.to_string(), "0".repeat(ext::DIGEST_HEX_LEN)));
                }
            }
            let head_len = head.head_len();
            let known_crc = transfer
                .manifest
                .as_ref()
                .and_then(|m| m.crc_of(transfer.offset, want as usize, transfer.size));
            // Nothing to compute from the content: it stays in its file (sendfile).
            let file = if transfer.hasher.is_none() && (!harmony || known_crc.is_some()) {
                source.file(&transfer.vpath)
            } else {
                None
            };
            let mut advised = None;
            let (body, crc) = match file {
                Some(file) => {
                    let ahead = readahead::ahead(
                        transfer.offset,
                        want,
                        transfer.size,
                        transfer.advised,
                        peer.window,
                    );
                    if let Some(range) = ahead {
                        if self.readahead.len() == MAX_READAHEAD_QUEUED {
                            self.readahead.pop_front();
                        }
                        let len = (range.end - range.start) as usize;
                        self.readahead
                            .push_back(FileRegion::new(file.clone(), range.start, len));
                        advised = Some(range.end);
                    }
                    let region = FileRegion::new(file, transfer.offset, want as usize);
                    (Body::Region(region), known_crc)
                }
                None => {
                    let mut frame = self.buffers.take(head_len + want as usize);
                    frame.resize(head_len, 0);
                    let read = source.read_into(
                        &transfer.vpath,
                        transfer.offset,
                        want as usize,
                        &mut frame,
                    );
                    match read {
                        Ok(n) if n as u64 == want => {}
                        // Shorter than published: what was announced cannot be sent.
                        Ok(_) => {
                            let (vpath, offset) = (transfer.vpath.clone(), transfer.offset);
                            self.truncated(id, vpath, offset);
                            return None;
                        }
                        Err(e) => {
                            // Gone or unreadable since the scan: the scanner reports what it
                            // is now.
                            debug!(vpath = %transfer.vpath, %e, "file no longer readable, skipped");
                            peer.current = None;
                            continue;
                        }
                    }
                    let content = &frame[head_len..];
                    let transfer = peer.current.as_mut()?;
                    if let Some(h) = transfer.hasher.as_mut() {
                        h.update(content);
                    }
                    let crc =
                        harmony.then(|| known_crc.unwrap_or_else(|| crc32fast::hash(content)));
                    (Body::Read(frame), crc)
                }
            };
            if let Some(crc) = crc.filter(|_| harmony) {
                head.headers[1].1 = ext::crc_hex(crc);
            }
            let transfer = peer.current.as_mut()?;
            transfer.offset += want;
            if let Some(end) = advised {
                transfer.advised = end;
            }
            peer.credit -= want;
            peer.sequence += 1;
            if last {
                if let Some(digest) = self.finish(id) {
                    head.headers[2].1 = digest;
                }
            }
            let mut encoded = bytes::BytesMut::with_capacity(head_len);
            if let Err(e) = head.encode_head(want as usize, &mut encoded) {
                // Not for a name the scanner found; the file is dropped, not half sent.
                debug!(%e, "unencodable chunk, file skipped");
                if let Some(peer) = self.peers.get_mut(id) {
                    peer.current = None;
                }
                continue;
            }
            return Some(match body {
                Body::Region(region) => Outgoing::Region(encoded.freeze(), region, head.filename),
                Body::Read(mut frame) => {
                    // Same length: the placeholders had the values' lengths.
                    frame[..head_len].copy_from_slice(&encoded);
                    Outgoing::Frame(self.buffers.freeze(frame))
                }
            });
        }
    }

    /// A chunk's whole frame for `id`, its content read from the region. `None` when the file
    /// cannot fill it: shorter than announced, `id`'s connection is closed (see
    /// [`ServerEvent::Truncated`]); unreadable, the chunk is dropped.
    fn whole_frame(
        &mut self,
        id: &Bytes,
        head: &[u8],
        region: &FileRegion,
        vpath: String,
    ) -> Option<Bytes> {
        match region.read_after(head) {
            Ok(frame) => Some(frame),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.truncated(id, vpath, region.offset());
                None
            }
            Err(e) => {
                debug!(%e, "file unreadable, chunk dropped");
                None
            }
        }
    }

    /// `id`'s transfer is complete: reported, its digest (Harmony clients) returned and kept
    /// for the file when the whole file went out.
    fn finish(&mut self, id: &Bytes) -> Option<String> {
        let done = self.peers.get_mut(id)?.current.take()?;
        let digest = match (&done.manifest, &done.hasher) {
            (Some(m), _) => Some(m.digest.clone()),
            (None, h) => h.as_ref().map(ext::digest_hex),
        };
        if let (Some(d), true) = (&digest, done.from_zero) {
            if let Some(file) = self.files.get_mut(&done.vpath) {
                if file.version == done.version && file.size == done.size {
                    file.digest = Some(d.clone());
                }
            }
        }
        self.events
            .push_back(ServerEvent::Sent(id.clone(), done.vpath));
        digest
    }
}

/// Digest of the first `len` bytes of `vpath`, and how many bytes there were.
fn hash_prefix(
    source: &mut dyn Source,
    vpath: &str,
    len: u64,
    chunk: usize,
) -> io::Result<(Hasher, u64)> {
    let mut hasher = Hasher::new();
    let mut offset = 0;
    let mut buf = Vec::with_capacity(chunk.min(len as usize));
    while offset < len {
        let want = (len - offset).min(chunk as u64) as usize;
        buf.clear();
        let n = source.read_into(vpath, offset, want, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf);
        offset += n as u64;
    }
    Ok((hasher, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(v: &str) -> Patch {
        Patch::Create(v.into())
    }

    #[test]
    fn a_later_patch_of_a_file_supersedes_the_queued_one() {
        let mut q = Patches::default();
        for v in ["/a", "/b", "/c"] {
            q.push_back(create(v));
        }
        q.push_back(Patch::Synced);
        // /a changed (its patch moves back), then /b deleted, /a changed again.
        q.push_back(create("/a"));
        q.push_back(Patch::Delete("/b".into()));
        q.push_back(create("/a"));
        // The superseded patches of /a and /b at the front are skipped at once.
        assert_eq!(q.front(), Some(&create("/c")));
        assert!(q.has("/a") && q.has("/b") && !q.has("/x"));
        let mut out = Vec::new();
        while let Some(p) = q.pop_front() {
            out.push(p);
        }
        assert_eq!(
            out,
            [
                create("/c"),
                Patch::Synced,
                Patch::Delete("/b".into()),
                create("/a")
            ]
        );
        assert!(q.is_empty() && q.front().is_none() && q.live.is_empty());
        // Queued again after it went out: a patch of its own.
        q.push_back(create("/a"));
        assert_eq!(q.pop_front(), Some(create("/a")));
        assert!(q.is_empty());
    }
}
