//! The sans-IO FILEMQ client (zeromq/filemq's `fmq_client`): OHAI, one ICANHAZ per path, byte
//! credit kept topped up, chunks checked (path, credit, offsets, declared size, crc32, digest)
//! before they become [`FileOp`]s, client-driven HUGZ.
//!
//! The driver performs the [`FileOp`]s in order: they never name a path outside the
//! destination, and a file reaches its final name only through [`FileOp::Commit`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_wire::filemq::{Cheezburger, FileOperation, FilemqMessage};

use crate::error::ProtocolError;
use crate::ext::Hasher;
use crate::{ext, path};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Paths to subscribe to, each starting with `/` (`/` = everything).
    pub subscriptions: Vec<String>,
    /// Credit kept granted, in bytes: how much content may be in flight. Bounds memory.
    pub credit_window: u64,
    /// Ask for Harmony's extensions (sizes, crc32, digests, resume); harmless to a
    /// zeromq/filemq server.
    pub extensions: bool,
    /// Send HUGZ after this much silence.
    pub heartbeat: Duration,
    /// Give up after this many HUGZ in a row go unanswered (zeromq/filemq: 3).
    pub max_missed: u32,
    /// Largest frame accepted from the server.
    pub max_frame: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            subscriptions: vec!["/".into()],
            credit_window: 16 << 20,
            extensions: true,
            heartbeat: Duration::from_secs(1),
            max_missed: 3,
            max_frame: 16 << 20,
        }
    }
}

/// A partly received file the client can resume.
#[derive(Debug, Clone)]
pub struct ResumePoint {
    /// Name relative to the destination, `/`-separated.
    pub name: String,
    /// Bytes already on disk.
    pub offset: u64,
    /// digest state over those bytes.
    pub hasher: Hasher,
}

/// What the driver must do to the destination, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileOp {
    /// Start receiving `name` into its partial file, keeping its first `offset` bytes
    /// (0: start empty).
    Open {
        /// Relative name (checked).
        name: String,
        /// Bytes kept.
        offset: u64,
        /// Size the server declared, if it did.
        size: Option<u64>,
    },
    /// Append to the open partial file.
    Write {
        /// Where `data` starts (the partial file's length).
        offset: u64,
        /// Content, verified against its crc32 when the server sent one.
        data: Bytes,
    },
    /// The open file is complete and verified: move it to its final name.
    Commit {
        /// Relative name.
        name: String,
        /// Its size.
        size: u64,
        /// Its BLAKE3 digest (hex), with the extensions.
        digest: Option<String>,
    },
    /// Drop the open partial file.
    Discard {
        /// Relative name.
        name: String,
    },
    /// Delete a file.
    Delete {
        /// Relative name (checked).
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Subscribing,
    Subscribed,
    Failed,
}

#[derive(Debug)]
struct Incoming {
    name: String,
    offset: u64,
    size: Option<u64>,
    /// With the extensions only: without them there is nothing to check a digest against,
    /// and no cache or resume to use one for.
    hasher: Option<Hasher>,
}

/// The sans-IO FILEMQ client of one connection.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    cache: Vec<(String, String)>,
    resume: BTreeMap<String, ResumePoint>,
    credit: u64,
    pending_oks: usize,
    current: Option<Incoming>,
    outbox: VecDeque<FilemqMessage>,
    ops: VecDeque<FileOp>,
    error: Option<ProtocolError>,
    last_heard: Instant,
    missed: u32,
    /// Subscriptions whose initial listing a Harmony server said is out.
    synced: usize,
    /// The server showed Harmony's extensions (headers, synced markers).
    harmony_server: bool,
}

impl Client {
    /// A client that says OHAI. `have` lists files the destination holds whole
    /// (`name`, digest hex, see [`ext`]), `partial` the ones it can resume.
    pub fn new(
        config: ClientConfig,
        have: Vec<(String, String)>,
        partial: Vec<ResumePoint>,
        now: Instant,
    ) -> Self {
        // Digests mean something only to a Harmony server (see [`ext`]); zeromq/filemq's
        // client sends no cache either.
        let mut cache = if config.extensions { have } else { Vec::new() };
        if config.extensions {
            for p in &partial {
                let digest = ext::digest_hex(&p.hasher);
                cache.push((p.name.clone(), ext::resume_value(&digest, p.offset)));
            }
        }
        let mut outbox = VecDeque::new();
        outbox.push_back(FilemqMessage::Ohai);
        Self {
            resume: partial.into_iter().map(|p| (p.name.clone(), p)).collect(),
            config,
            state: State::Connecting,
            cache,
            credit: 0,
            pending_oks: 0,
            current: None,
            outbox,
            ops: VecDeque::new(),
            error: None,
            last_heard: now,
            missed: 0,
            synced: 0,
            harmony_server: false,
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<FilemqMessage> {
        self.outbox.pop_front()
    }

    /// The next operation on the destination.
    pub fn poll_op(&mut self) -> Option<FileOp> {
        self.ops.pop_front()
    }

    /// Why the connection must close, once it must; its partial file (if any) stays open for
    /// resume unless a [`FileOp::Discard`] said otherwise.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.error.as_ref()
    }

    /// Whether the subscriptions are confirmed.
    pub fn is_subscribed(&self) -> bool {
        self.state == State::Subscribed
    }

    /// Whether a Harmony server said that everything it had at subscription time is out
    /// (and nothing is being received).
    pub fn is_synced(&self) -> bool {
        self.synced >= self.config.subscriptions.len() && self.current.is_none()
    }

    /// Whether the server speaks Harmony's extensions (then [`Client::is_synced`] will come;
    /// a zeromq/filemq server never says).
    pub fn is_harmony_server(&self) -> bool {
        self.harmony_server
    }

    /// Whether a file is being received.
    pub fn is_receiving(&self) -> bool {
        self.current.is_some()
    }

    /// The partly received file, to resume on the next connection (with the extensions).
    pub fn take_partial(&mut self) -> Option<ResumePoint> {
        let t = self.current.take()?;
        Some(ResumePoint {
            name: t.name,
            offset: t.offset,
            hasher: t.hasher?,
        })
    }

    /// Every file the next connection can resume: the partly received one, and those this
    /// connection was given to resume but never reached (a connection that fails before the
    /// server resumes them must not lose them).
    pub fn take_resume_points(&mut self) -> Vec<ResumePoint> {
        let current = self.take_partial();
        let mut points: Vec<ResumePoint> = std::mem::take(&mut self.resume)
            .into_values()
            .filter(|p| current.as_ref().is_none_or(|c| c.name != p.name))
            .collect();
        points.extend(current);
        points
    }

    fn fail(&mut self, error: ProtocolError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        self.state = State::Failed;
        self.outbox.clear();
    }

    /// A frame from the server.
    pub fn handle_message(&mut self, frame: &Bytes, now: Instant) {
        if self.state == State::Failed {
            return;
        }
        self.last_heard = now;
        self.missed = 0;
        let msg = match FilemqMessage::decode(frame, self.config.max_frame) {
            Ok(msg) => msg,
            Err(e) => return self.fail(e.into()),
        };
        match (self.state, msg) {
            (_, FilemqMessage::Srsly { reason } | FilemqMessage::Rtfm { reason }) => {
                self.fail(ProtocolError::Refused(reason))
            }
            (state, FilemqMessage::Hugz) => {
                self.outbox.push_back(FilemqMessage::HugzOk);
                // From a Harmony server, after ICANHAZ-OK: one subscription's listing is out.
                if self.config.extensions && state != State::Connecting {
                    self.harmony_server = true;
                    self.synced += 1;
                }
            }
            (_, FilemqMessage::HugzOk) => {}
            (State::Connecting, FilemqMessage::OhaiOk) => {
                // Without extensions, exactly what zeromq/filemq's client sends.
                let mut options = Vec::new();
                if self.config.extensions {
                    options.push((ext::OPT_RESYNC.to_string(), "1".to_string()));
                    options.push((ext::OPT_HARMONY.to_string(), "1".to_string()));
                }
                for path in &self.config.subscriptions {
                    self.outbox.push_back(FilemqMessage::Icanhaz {
                        path: path.clone(),
                        options: options.clone(),
                        cache: self.cache.clone(),
                    });
                }
                self.pending_oks = self.config.subscriptions.len();
                self.state = State::Subscribing;
            }
            (State::Subscribing, FilemqMessage::IcanhazOk) => {
                self.pending_oks = self.pending_oks.saturating_sub(1);
                if self.credit == 0 {
                    self.top_up(0);
                }
                if self.pending_oks == 0 {
                    self.state = State::Subscribed;
                }
            }
            (State::Subscribing | State::Subscribed, FilemqMessage::Cheezburger(c)) => {
                let sequence = c.sequence;
                if let Err(e) = self.chunk(c) {
                    return self.fail(e);
                }
                self.top_up(sequence);
            }
            (_, other) => self.fail(ProtocolError::Unexpected(other.name())),
        }
    }

    /// Keeps the granted credit at the window: a NOM whenever half of it is used. Like
    /// zeromq/filemq's client, NOM carries the last CHEEZBURGER's sequence.
    fn top_up(&mut self, sequence: u64) {
        let window = self.config.credit_window;
        if self.credit <= window / 2 {
            self.outbox.push_back(FilemqMessage::Nom {
                credit: window - self.credit,
                sequence,
            });
            self.credit = window;
        }
    }

    fn chunk(&mut self, c: Cheezburger) -> Result<(), ProtocolError> {
        let name = path::strip_subscription(&c.filename, &self.config.subscriptions)
            .map_err(|error| ProtocolError::Path {
                name: c.filename.clone(),
                error,
            })?
            .to_string();
        if c.operation == FileOperation::Delete {
            if self.current.as_ref().is_some_and(|t| t.name == name) {
                self.current = None;
                self.ops.push_back(FileOp::Discard { name: name.clone() });
            }
            self.ops.push_back(FileOp::Delete { name });
            return Ok(());
        }
        let len = c.chunk.len() as u64;
        if len > self.credit {
            return Err(ProtocolError::CreditExceeded {
                chunk: len,
                credit: self.credit,
            });
        }
        self.credit -= len;
        self.harmony_server |= !c.headers.is_empty();
        let size = match ext::header(&c.headers, ext::HDR_SIZE) {
            Some(v) => Some(
                v.parse()
                    .map_err(|_| ProtocolError::BadHeader(ext::HDR_SIZE))?,
            ),
            None => None,
        };
        let continues = self
            .current
            .as_ref()
            .filter(|t| t.name == name && t.offset == c.offset);
        if let (Some(t), Some(now)) = (continues, size) {
            // The size a file's first chunk declared binds the rest of it: a new version
            // starts again from offset 0.
            if t.size != Some(now) {
                return Err(ProtocolError::SizeChanged {
                    declared: t.size,
                    now,
                    name,
                });
            }
        }
        if continues.is_none() {
            let resumed = self
                .resume
                .remove(&name)
                .filter(|r| r.offset == c.offset && c.offset > 0);
            if c.offset != 0 && resumed.is_none() {
                let expected = match &self.current {
                    Some(t) if t.name == name => t.offset,
                    _ => 0,
                };
                return Err(ProtocolError::OffsetJump {
                    name,
                    offset: c.offset,
                    expected,
                });
            }
            // The server moved on (or restarted this file): what we had is dropped.
            if let Some(old) = self.current.take() {
                self.ops.push_back(FileOp::Discard { name: old.name });
            }
            let (offset, hasher) = match resumed {
                Some(r) => (r.offset, Some(r.hasher)),
                None => (0, self.config.extensions.then(Hasher::new)),
            };
            self.ops.push_back(FileOp::Open {
                name: name.clone(),
                offset,
                size,
            });
            self.current = Some(Incoming {
                name: name.clone(),
                offset,
                size,
                hasher,
            });
        }
        let end = c.offset + len;
        if let Some(size) = self.current.as_ref().and_then(|t| t.size) {
            if end > size {
                return Err(ProtocolError::BeyondSize { name, end, size });
            }
        }
        if let Some(crc) = ext::header(&c.headers, ext::HDR_CRC32) {
            if crc != ext::crc32_hex(&c.chunk) {
                return Err(ProtocolError::CorruptChunk {
                    name,
                    offset: c.offset,
                });
            }
        }
        let Some(t) = self.current.as_mut() else {
            return Ok(());
        };
        if len > 0 {
            if let Some(h) = t.hasher.as_mut() {
                h.update(&c.chunk);
            }
            t.offset = end;
            self.ops.push_back(FileOp::Write {
                offset: c.offset,
                data: c.chunk,
            });
        }
        if c.eof {
            let t = self.current.take().expect("current transfer");
            let digest = t.hasher.as_ref().map(ext::digest_hex);
            let short = t.size.is_some_and(|s| s != t.offset);
            let mismatch = match (ext::header(&c.headers, ext::HDR_DIGEST), &digest) {
                (Some(theirs), Some(ours)) => theirs != ours,
                _ => false,
            };
            if short || mismatch {
                self.ops.push_back(FileOp::Discard { name: name.clone() });
                return Err(ProtocolError::DigestMismatch { name });
            }
            self.ops.push_back(FileOp::Commit {
                name,
                size: t.offset,
                digest,
            });
        }
        Ok(())
    }

    /// Sends HUGZ after a heartbeat of silence; fails after too many in a row.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Failed || now < self.last_heard + self.config.heartbeat {
            return;
        }
        if self.missed >= self.config.max_missed {
            return self.fail(ProtocolError::Timeout);
        }
        self.missed += 1;
        self.last_heard = now;
        self.outbox.push_back(FilemqMessage::Hugz);
    }

    /// When [`Client::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state != State::Failed).then(|| self.last_heard + self.config.heartbeat)
    }

    /// Says KTHXBAI.
    pub fn close(&mut self) {
        if self.state != State::Failed {
            self.outbox.push_back(FilemqMessage::Kthxbai);
        }
    }
}
