//! One TCP connection: greeting, security handshake, then a reader and a writer running
//! concurrently in one task. Reads parse every complete frame of a large buffer and deliver
//! whole batches; writes drain the peer queue in bulk and go out as one (vectored) write.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use harmony_security::{AuthReply, Cipher, Handshake, SecurityError};
use harmony_wire::zmtp::{
    Command, Frame, FrameCodec, Greeting, Metadata, FLAG_COMMAND, FLAG_LONG, FLAG_MORE,
    GREETING_LEN, SIGNATURE_LEN,
};
use harmony_wire::WireError;
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, Instrument};

use crate::core::Core;
use crate::error::ConnectionError;
use crate::message::{Frames, Message};
use crate::monitor::{EventKind, HandshakeFailure, SocketEvent};
use crate::pipe::{lock, Outgoing, Pipe};
use crate::socket_type::SocketType;

/// Size of each read buffer allocation.
const READ_BUF: usize = 64 << 10;
/// Read only when at least this much room is free (else grow first).
const READ_MIN: usize = 16 << 10;
/// Incomplete frames at least this large are read into a buffer of their own.
const LARGE_FRAME: usize = 32 << 10;
/// How much to read after a large frame (see `read_loop`).
const PEEK_AFTER_LARGE: usize = 4 << 10;
/// Frame bodies at least this large are written from the caller's buffer, not copied.
const ZERO_COPY_MIN: usize = 16 << 10;
/// CURVE boxes sealed into the write buffer are written out once this many bytes are ready.
const SEALED_FLUSH: usize = 256 << 10;
/// Largest frame accepted during the handshake.
const HANDSHAKE_MAX_FRAME: u64 = 64 << 10;
/// Queued protocol frames beyond which PINGs go unanswered (the peer is not reading).
const MAX_PENDING_REPLIES: usize = 1024;
/// Largest metadata accepted in commands after the handshake.
const COMMAND_LIMIT: usize = 64 << 10;

type SharedCipher = Mutex<Box<dyn Cipher>>;

/// Runs one connection to its end; returns whether the handshake completed. `parent` ends it
/// (with the listener or connected endpoint it belongs to); `endpoint` names it in monitor
/// events.
pub(crate) async fn run(
    core: Arc<Core>,
    stream: TcpStream,
    peer: SocketAddr,
    pipe: Option<Arc<Pipe>>,
    parent: &CancellationToken,
    endpoint: &str,
) -> bool {
    let span = tracing::debug_span!("zmtp", socket = %core.kind, %peer);
    async move {
        let conn = parent.child_token();
        let mut handshook = false;
        let result = tokio::select! {
            r = drive(&core, stream, peer, pipe, conn.clone(), endpoint, &mut handshook) => r,
            _ = conn.cancelled() => Ok(()),
        };
        match &result {
            Ok(()) | Err(ConnectionError::Eof) | Err(ConnectionError::SocketClosed) => {
                debug!("connection closed")
            }
            Err(e) if handshook => debug!(error = %e, "connection dropped"),
            Err(e) => tracing::warn!(error = %e, "connection refused"),
        }
        // Connections we end ourselves (unbind, disconnect, close, handover) are not reported,
        // as in libzmq.
        if !conn.is_cancelled() && !matches!(result, Err(ConnectionError::SocketClosed)) {
            let reason = match &result {
                Ok(()) => ConnectionError::Eof.to_string(),
                Err(e) => e.to_string(),
            };
            if let (false, Err(e)) = (handshook, &result) {
                if let Some(failure) = handshake_failure(e) {
                    let reason = reason.clone();
                    core.emit(|| {
                        SocketEvent::new(EventKind::HandshakeFailed { failure, reason }, endpoint)
                            .with_peer(peer)
                    });
                }
            }
            core.emit(|| {
                SocketEvent::new(EventKind::Disconnected { reason }, endpoint).with_peer(peer)
            });
        }
        handshook
    }
    .instrument(span)
    .await
}

/// The monitor class of an error that ended a handshake (`None`: the connection just broke).
fn handshake_failure(e: &ConnectionError) -> Option<HandshakeFailure> {
    match e {
        ConnectionError::Security(
            SecurityError::Refused(_)
            | SecurityError::RefusedTemporarily
            | SecurityError::PeerError(_),
        )
        | ConnectionError::PeerError(_) => Some(HandshakeFailure::Authentication),
        ConnectionError::Security(_)
        | ConnectionError::Wire(_)
        | ConnectionError::Incompatible(_)
        | ConnectionError::DuplicateIdentity
        | ConnectionError::Protocol(_)
        | ConnectionError::TooLarge { .. } => Some(HandshakeFailure::Protocol),
        ConnectionError::HandshakeTimeout => Some(HandshakeFailure::NoDetail),
        ConnectionError::Io(_)
        | ConnectionError::Eof
        | ConnectionError::HeartbeatTimeout
        | ConnectionError::SocketClosed => None,
    }
}

async fn drive(
    core: &Arc<Core>,
    stream: TcpStream,
    peer: SocketAddr,
    pipe: Option<Arc<Pipe>>,
    conn: CancellationToken,
    endpoint: &str,
    handshook: &mut bool,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let (greeting, meta, cipher) = tokio::time::timeout(
        core.opts.handshake_timeout,
        handshake(core, &mut rd, &mut wr, &mut buf, peer),
    )
    .await
    .map_err(|_| ConnectionError::HandshakeTimeout)??;
    let peer_type = meta.get("Socket-Type").cloned().unwrap_or_default();
    if !core.kind.accepts(&peer_type) {
        return Err(ConnectionError::Incompatible(
            String::from_utf8_lossy(&peer_type).into_owned(),
        ));
    }
    let attached = core.attach(pipe, &meta, greeting.is_v31(), conn)?;
    *handshook = true;
    debug!(peer_type = %String::from_utf8_lossy(&peer_type), v31 = greeting.is_v31(), "connected");
    core.emit(|| SocketEvent::new(EventKind::HandshakeSucceeded, endpoint).with_peer(peer));
    let cipher = cipher.map(Mutex::new);
    let live = Liveness::new(Instant::now());
    let reader = read_loop(
        core,
        &attached.pipe,
        rd,
        buf,
        cipher.as_ref(),
        &attached.identity,
        &live,
    );
    let writer = write_loop(core, &attached.pipe, wr, cipher.as_ref(), &live);
    tokio::select! {
        // The writer first, so queued PONGs go out before the reader takes up more work.
        biased;
        w = writer => w,
        r = reader => r,
    }
}

/// Reads until `buf` holds at least `n` bytes.
async fn fill(rd: &mut OwnedReadHalf, buf: &mut BytesMut, n: usize) -> Result<(), ConnectionError> {
    while buf.len() < n {
        if rd.read_buf(buf).await? == 0 {
            return Err(ConnectionError::Eof);
        }
    }
    Ok(())
}

async fn write_frames(
    wr: &mut OwnedWriteHalf,
    frames: &mut Vec<Frame>,
) -> Result<(), ConnectionError> {
    if frames.is_empty() {
        return Ok(());
    }
    let mut out = BytesMut::new();
    for f in frames.drain(..) {
        f.encode(&mut out);
    }
    wr.write_all(&out).await?;
    Ok(())
}

async fn handshake(
    core: &Core,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    peer: SocketAddr,
) -> Result<(Greeting, Metadata, Option<Box<dyn Cipher>>), ConnectionError> {
    let mut mechanism = core.opts.mechanism.build();
    let ours = Greeting::new(mechanism.kind(), mechanism.as_server());
    // All 64 bytes at once; libzmq's staged greeting copes with that.
    wr.write_all(&ours.encode()?).await?;
    fill(rd, buf, SIGNATURE_LEN).await?;
    Greeting::check_signature(&buf[..SIGNATURE_LEN])?;
    fill(rd, buf, GREETING_LEN).await?;
    let theirs = Greeting::decode(&buf[..GREETING_LEN])?;
    buf.advance(GREETING_LEN);
    trace!(version = %format!("{}.{}", theirs.major, theirs.minor), mechanism = theirs.mechanism.as_str(), "greeting");

    let mut out = Vec::new();
    let mut codec = FrameCodec::new(HANDSHAKE_MAX_FRAME);
    let started = mechanism.start(&theirs, &core.local_meta, &mut out);
    let mut step = settle(wr, &mut out, started).await?;
    let meta = loop {
        write_frames(wr, &mut out).await?;
        step = match step {
            Handshake::Done(meta) => break meta,
            Handshake::Authenticate(request) => {
                let reply = match &core.opts.authenticator {
                    Some(auth) => auth.authenticate(peer.ip(), &request).await,
                    None => AuthReply::allow(""),
                };
                let answered = mechanism.authenticated(reply, &mut out);
                settle(wr, &mut out, answered).await?
            }
            Handshake::Continue => {
                let frame = loop {
                    if let Some(f) = codec.decode_frame(buf)? {
                        break f;
                    }
                    if rd.read_buf(buf).await? == 0 {
                        return Err(ConnectionError::Eof);
                    }
                };
                let received = mechanism.receive(frame, &mut out);
                settle(wr, &mut out, received).await?
            }
        };
    };
    write_frames(wr, &mut out).await?;
    Ok((theirs, meta, mechanism.into_cipher()))
}

/// Passes a mechanism step on; when it failed, first sends what the mechanism queued (an ERROR
/// telling the peer why), best effort.
async fn settle<T>(
    wr: &mut OwnedWriteHalf,
    out: &mut Vec<Frame>,
    step: Result<T, SecurityError>,
) -> Result<T, ConnectionError> {
    if step.is_err() {
        let _ = write_frames(wr, out).await;
    }
    Ok(step?)
}

/// What the writer's heartbeat check concludes about a PING it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    /// Traffic arrived after the PING: the peer is alive.
    Answered,
    /// No verdict yet: the timeout has not run out, or the reader is busy (the answer may be
    /// waiting in the socket's buffer).
    Pending,
    /// The reader has waited on the socket for the whole timeout since the PING, in vain.
    Silent,
}

/// When the peer was last heard from, and since when the reader has been waiting for it, in
/// microseconds since the connection started.
///
/// Only time the reader spends waiting on the socket counts as the peer's silence: time spent
/// processing what arrived (opening large CURVE boxes, a long batch, delivering to a slow
/// application) does not, since the peer's answer may be sitting unread in the socket buffer.
struct Liveness {
    start: Instant,
    last_rx: AtomicU64,
    /// When the reader began its current wait on the socket; [`Liveness::BUSY`] while it is
    /// processing instead.
    waiting_since: AtomicU64,
}

impl Liveness {
    /// `waiting_since` while the reader is not waiting on the socket.
    const BUSY: u64 = u64::MAX;

    fn new(start: Instant) -> Self {
        Self {
            start,
            last_rx: AtomicU64::new(0),
            waiting_since: AtomicU64::new(Self::BUSY),
        }
    }

    /// Microseconds since `start`, rounded up: traffic is never dated before a PING sent
    /// just before it, and a wait never starts before the PING it follows.
    fn stamp(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_micros() as u64 + 1
    }

    fn at(&self, us: u64) -> Instant {
        self.start + Duration::from_micros(us)
    }

    /// Bytes arrived at `now`; the reader goes on to process them.
    fn received(&self, now: Instant) {
        self.last_rx.store(self.stamp(now), Ordering::Relaxed);
        self.waiting_since.store(Self::BUSY, Ordering::Relaxed);
    }

    /// The reader, done with everything it had, starts waiting on the socket at `now`.
    fn waiting(&self, now: Instant) {
        self.waiting_since.store(self.stamp(now), Ordering::Relaxed);
    }

    /// The state at `now` of a PING sent at `sent`, given the heartbeat `timeout`.
    fn heard(&self, sent: Instant, now: Instant, timeout: Option<Duration>) -> Heard {
        if self.at(self.last_rx.load(Ordering::Relaxed)) >= sent {
            return Heard::Answered;
        }
        let waiting = self.waiting_since.load(Ordering::Relaxed);
        match timeout {
            Some(t) if waiting != Self::BUSY && now >= self.at(waiting).max(sent) + t => {
                Heard::Silent
            }
            _ => Heard::Pending,
        }
    }
}

/// Incoming frames turned into messages, batched for delivery.
struct Assembler<'a> {
    core: &'a Core,
    pipe: &'a Pipe,
    cipher: Option<&'a SharedCipher>,
    identity: &'a Bytes,
    max: usize,
    partial: Frames,
    partial_len: usize,
    batch: Vec<Message>,
    /// The TTL of the peer's last PING: silence longer than this closes the connection.
    ttl: Option<Duration>,
    /// A PING was answered: the reader should let the writer send the PONG before going on.
    replied: bool,
}

impl Assembler<'_> {
    /// Takes one wire frame; its `body` is the frame's own (CURVE opens it in place).
    fn frame(&mut self, more: bool, command: bool, body: BytesMut) -> Result<(), ConnectionError> {
        let frame = match self.cipher {
            Some(c) => lock(c).decrypt_owned(more, command, body)?,
            None => Frame {
                more,
                command,
                body: body.freeze(),
            },
        };
        if frame.command {
            return handle_command(
                self.core,
                self.pipe,
                &frame,
                &mut self.ttl,
                &mut self.replied,
            );
        }
        if !frame.more && self.partial.is_empty() && self.core.kind != SocketType::Router {
            // The common single-frame message, built in place.
            if frame.body.len() > self.max {
                return Err(ConnectionError::TooLarge {
                    len: frame.body.len(),
                    limit: self.max,
                });
            }
            self.batch.push(Message::from(frame.body));
            return Ok(());
        }
        if self.partial.is_empty() && self.core.kind == SocketType::Router {
            self.partial.push(self.identity.clone());
        }
        self.partial_len += frame.body.len();
        if self.partial_len > self.max {
            return Err(ConnectionError::TooLarge {
                len: self.partial_len,
                limit: self.max,
            });
        }
        self.partial.push(frame.body);
        if !frame.more {
            self.batch
                .push(Message::from_smallvec(std::mem::take(&mut self.partial)));
            self.partial_len = 0;
        }
        Ok(())
    }
}

/// Hands over the messages that arrived before a bad frame (as libzmq does), then yields the
/// error that closes the connection.
async fn deliver_then(
    core: &Core,
    pipe: &Pipe,
    batch: &mut Vec<Message>,
    error: ConnectionError,
) -> ConnectionError {
    if !batch.is_empty() {
        if let Err(e) = core.deliver(pipe, batch).await {
            return e;
        }
    }
    error
}

/// Buffers of large frames, kept (as empty handles) after the frame went to the application
/// and reused once it has dropped it: a stream of large messages then reads into memory that
/// is already mapped and cached instead of fresh pages.
struct BodyPool {
    spare: VecDeque<(BytesMut, usize)>,
    bytes: usize,
    /// Bytes of buffers kept (`SocketOptions::large_frame_pool`).
    limit: usize,
}

impl BodyPool {
    fn new(limit: usize) -> Self {
        Self {
            spare: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// An empty buffer with room for `len` bytes, and the size of its allocation.
    fn take(&mut self, len: usize) -> (BytesMut, usize) {
        for i in 0..self.spare.len() {
            let (buf, size) = &mut self.spare[i];
            if *size >= len && buf.try_reclaim(*size) {
                let size = *size;
                self.bytes -= size;
                if let Some(found) = self.spare.remove(i) {
                    return found;
                }
            }
        }
        (BytesMut::with_capacity(len), len)
    }

    /// Keeps the (empty) rest of a buffer whose allocation is `size` bytes.
    fn retire(&mut self, rest: BytesMut, size: usize) {
        while self.bytes + size > self.limit {
            match self.spare.pop_front() {
                Some((_, s)) => self.bytes -= s,
                None => return,
            }
        }
        self.bytes += size;
        self.spare.push_back((rest, size));
    }
}

/// Flags, header length and body length of the frame at the start of `buf`, once its header
/// is complete.
fn peek_header(buf: &[u8]) -> Result<Option<(u8, usize, u64)>, ConnectionError> {
    let Some(&flags) = buf.first() else {
        return Ok(None);
    };
    if flags & !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND) != 0
        || (flags & FLAG_COMMAND != 0 && flags & FLAG_MORE != 0)
    {
        return Err(WireError::BadFlags(flags).into());
    }
    Ok(if flags & FLAG_LONG != 0 {
        buf.get(1..9).map(|b| {
            let mut n = [0u8; 8];
            n.copy_from_slice(b);
            (flags, 9, u64::from_be_bytes(n))
        })
    } else {
        buf.get(1).map(|&n| (flags, 2, u64::from(n)))
    })
}

/// Reads at most `limit` bytes into `buf`, failing after `ttl` of silence.
async fn read_some(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    limit: usize,
    ttl: Option<Duration>,
) -> Result<(), ConnectionError> {
    let mut limited = (&mut *buf).limit(limit);
    let read = rd.read_buf(&mut limited);
    let n = match ttl {
        Some(t) => tokio::time::timeout(t, read)
            .await
            .map_err(|_| ConnectionError::HeartbeatTimeout)??,
        None => read.await?,
    };
    if n == 0 {
        return Err(ConnectionError::Eof);
    }
    Ok(())
}

async fn read_loop(
    core: &Core,
    pipe: &Pipe,
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    cipher: Option<&SharedCipher>,
    identity: &Bytes,
    live: &Liveness,
) -> Result<(), ConnectionError> {
    let max = core.opts.max_msg_size;
    // A CURVE box is longer than the frame it carries; the limit is on the frame.
    let wire_max = max.saturating_add(cipher.map_or(0, |c| lock(c).overhead()));
    let mut bodies = BodyPool::new(core.opts.large_frame_pool);
    let mut asm = Assembler {
        core,
        pipe,
        cipher,
        identity,
        max,
        partial: SmallVec::new(),
        partial_len: 0,
        batch: Vec::with_capacity(64),
        ttl: None,
        replied: false,
    };
    // After a large frame, read just a little: the next header, and not much of the next
    // large body, which then goes straight into its own buffer instead of being copied.
    let mut after_large = false;
    loop {
        // Set when a PING was just answered: the rest of the buffer waits until the writer
        // has had its turn, so a PONG never queues behind a long batch.
        let mut pong_first = false;
        loop {
            let (flags, header, len) = match peek_header(&buf) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(deliver_then(core, pipe, &mut asm.batch, e).await),
            };
            if len > wire_max as u64 {
                let e = ConnectionError::TooLarge {
                    len: len as usize,
                    limit: max,
                };
                return Err(deliver_then(core, pipe, &mut asm.batch, e).await);
            }
            let len = len as usize;
            if buf.len() >= header + len {
                // The header is already parsed (and its flags checked): cut the body off.
                buf.advance(header);
                let body = buf.split_to(len);
                let framed = asm.frame(flags & FLAG_MORE != 0, flags & FLAG_COMMAND != 0, body);
                if let Err(e) = framed {
                    return Err(deliver_then(core, pipe, &mut asm.batch, e).await);
                }
                if std::mem::take(&mut asm.replied) {
                    pong_first = true;
                    break;
                }
                continue;
            }
            if len < LARGE_FRAME {
                break;
            }
            buf.advance(header);
            let (mut body, size) = bodies.take(len);
            body.extend_from_slice(&buf);
            buf.clear();
            while body.len() < len {
                let want = len - body.len();
                live.waiting(Instant::now());
                read_some(&mut rd, &mut body, want, asm.ttl).await?;
                live.received(Instant::now());
            }
            let frame = body.split_to(len);
            bodies.retire(body, size);
            let framed = asm.frame(flags & FLAG_MORE != 0, flags & FLAG_COMMAND != 0, frame);
            if let Err(e) = framed {
                return Err(deliver_then(core, pipe, &mut asm.batch, e).await);
            }
            after_large = true;
            if std::mem::take(&mut asm.replied) {
                pong_first = true;
                break;
            }
        }
        if !asm.batch.is_empty() {
            core.deliver(pipe, &mut asm.batch).await?;
        }
        if pong_first {
            // `drive` polls the writer first: it sends the PONG before this task goes on.
            tokio::task::yield_now().await;
            // The buffer may still hold whole frames: parse them before reading again.
            continue;
        }
        if buf.capacity() - buf.len() < READ_MIN {
            buf.reserve(READ_BUF);
        }
        let limit = if std::mem::take(&mut after_large) {
            PEEK_AFTER_LARGE
        } else {
            usize::MAX
        };
        live.waiting(Instant::now());
        read_some(&mut rd, &mut buf, limit, asm.ttl).await?;
        live.received(Instant::now());
    }
}

fn handle_command(
    core: &Core,
    pipe: &Pipe,
    frame: &Frame,
    ttl: &mut Option<Duration>,
    replied: &mut bool,
) -> Result<(), ConnectionError> {
    match Command::decode(&frame.body, COMMAND_LIMIT)? {
        Command::Ping { ttl: t, context } => {
            if t > 0 {
                *ttl = Some(Duration::from_millis(u64::from(t) * 100));
            }
            if pipe.push_reply(Command::Pong { context }.to_frame()?, MAX_PENDING_REPLIES) {
                *replied = true;
            } else {
                trace!("peer is not reading: PONG dropped");
            }
        }
        Command::Pong { .. } => {}
        Command::Subscribe(topic) => core.peer_subscription(pipe, true, topic),
        Command::Cancel(topic) => core.peer_subscription(pipe, false, topic),
        Command::Error(reason) => {
            return Err(ConnectionError::PeerError(
                String::from_utf8_lossy(&reason).into_owned(),
            ))
        }
        Command::Unknown(raw) => {
            trace!(name = %String::from_utf8_lossy(&raw.name), "ignoring unknown command");
        }
        _ => {
            return Err(ConnectionError::Protocol(
                "handshake command after the handshake",
            ))
        }
    }
    Ok(())
}

/// Frames encoded for one write: small ones copied into `buf`, large bodies referenced.
struct WriteBatch {
    buf: BytesMut,
    chunks: Vec<Bytes>,
}

impl WriteBatch {
    fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(64 << 10),
            chunks: Vec::new(),
        }
    }

    fn frame(&mut self, more: bool, command: bool, body: &Bytes) {
        Frame::encode_header(more, command, body.len(), &mut self.buf);
        if body.len() >= ZERO_COPY_MIN {
            self.chunks.push(self.buf.split().freeze());
            self.chunks.push(body.clone());
        } else {
            self.buf.extend_from_slice(body);
        }
    }

    fn message(&mut self, msg: &Message) {
        let last = msg.len().saturating_sub(1);
        for (i, body) in msg.iter().enumerate() {
            self.frame(i < last, false, body);
        }
    }

    /// The frames of `msg`, the last one announced `extra` bytes longer: a file region
    /// written after it.
    fn region_head(&mut self, msg: &Message, extra: usize) {
        let last = msg.len().saturating_sub(1);
        for (i, body) in msg.iter().enumerate() {
            if i < last {
                self.frame(true, false, body);
            } else {
                Frame::encode_header(false, false, body.len() + extra, &mut self.buf);
                self.buf.extend_from_slice(body);
            }
        }
    }

    fn sealed(&mut self, cipher: &SharedCipher, msg: Message) -> Result<(), ConnectionError> {
        let last = msg.len().saturating_sub(1);
        for (i, body) in msg.into_iter().enumerate() {
            self.encrypted(cipher, &Frame::message(body, i < last))?;
        }
        Ok(())
    }

    fn encrypted(&mut self, cipher: &SharedCipher, frame: &Frame) -> Result<(), ConnectionError> {
        lock(cipher).encrypt(frame, &mut self.buf)?;
        Ok(())
    }

    async fn write_to(&mut self, wr: &mut OwnedWriteHalf) -> std::io::Result<()> {
        if self.chunks.is_empty() {
            wr.write_all(&self.buf).await?;
            self.buf.clear();
            return Ok(());
        }
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.split().freeze());
        }
        let (mut idx, mut off) = (0usize, 0usize);
        while idx < self.chunks.len() {
            let mut slices: SmallVec<[IoSlice<'_>; 64]> = SmallVec::new();
            for (k, chunk) in self.chunks[idx..].iter().take(64).enumerate() {
                let start = if k == 0 { off } else { 0 };
                slices.push(IoSlice::new(&chunk[start..]));
            }
            let mut n = wr.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while n > 0 {
                let rest = self.chunks[idx].len() - off;
                if n >= rest {
                    n -= rest;
                    idx += 1;
                    off = 0;
                } else {
                    off += n;
                    n = 0;
                }
            }
            while idx < self.chunks.len() && self.chunks[idx].len() == off {
                idx += 1;
                off = 0;
            }
        }
        self.chunks.clear();
        Ok(())
    }
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn write_loop(
    core: &Core,
    pipe: &Pipe,
    mut wr: OwnedWriteHalf,
    cipher: Option<&SharedCipher>,
    live: &Liveness,
) -> Result<(), ConnectionError> {
    let mut items: VecDeque<Outgoing> = VecDeque::new();
    let mut batch = WriteBatch::new();
    let mut pinger = core.opts.heartbeat_ivl.map(|ivl| {
        let mut t = tokio::time::interval_at(Instant::now() + ivl, ivl);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let timeout = core.opts.heartbeat_timeout.or(core.opts.heartbeat_ivl);
    let ping_ttl = core.opts.heartbeat_ttl.map_or(0, |t| {
        (t.as_millis() / 100).min(u128::from(u16::MAX)) as u16
    });
    // The oldest PING not followed by any traffic from the peer.
    let mut unanswered: Option<Instant> = None;
    loop {
        tokio::select! {
            was_full = pipe.drain(&mut items) => {
                if was_full {
                    core.space.wake_all();
                }
                for item in items.drain(..) {
                    match (item, cipher) {
                        (Outgoing::Message(m), None) => batch.message(&m),
                        (Outgoing::Control(f), None) => batch.frame(f.more, f.command, &f.body),
                        (Outgoing::Message(m), Some(c)) => batch.sealed(c, m)?,
                        (Outgoing::Control(f), Some(c)) => batch.encrypted(c, &f)?,
                        // CURVE: the region is read and sealed like any other frame.
                        (Outgoing::Region(m, r), Some(c)) => batch.sealed(c, r.append_to(m)?)?,
                        (Outgoing::Region(m, r), None) => {
                            // What is batched, then the region from the file.
                            batch.region_head(&m, r.len());
                            let written = match batch.write_to(&mut wr).await {
                                Ok(()) => r.send(&wr).await,
                                Err(e) => Err(e),
                            };
                            if written.is_err() {
                                pipe.written();
                            }
                            written?;
                        }
                    }
                    if batch.buf.len() >= SEALED_FLUSH {
                        // Boxes leave while the next ones are sealed: the peer opens them
                        // meanwhile instead of waiting for the whole queue.
                        let written = batch.write_to(&mut wr).await;
                        if written.is_err() {
                            pipe.written();
                        }
                        written?;
                    }
                }
                let written = batch.write_to(&mut wr).await;
                pipe.written();
                written?;
            }
            _ = tick(&mut pinger) => {
                let now = Instant::now();
                if let Some(sent) = unanswered {
                    match live.heard(sent, now, timeout) {
                        Heard::Answered => unanswered = None,
                        Heard::Pending => {}
                        Heard::Silent => return Err(ConnectionError::HeartbeatTimeout),
                    }
                }
                if unanswered.is_none() {
                    unanswered = Some(now);
                }
                let ping = Command::Ping { ttl: ping_ttl, context: Bytes::new() };
                pipe.push_control(ping.to_frame()?);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_busy_reader_never_makes_the_peer_silent() {
        let t0 = Instant::now();
        let live = Liveness::new(t0);
        let timeout = Some(ms(30));
        // Bytes arrive at 1 ms; the reader then opens big boxes for 500 ms.
        live.received(t0 + ms(1));
        let ping = t0 + ms(10);
        for at in [ms(39), ms(41), ms(100), ms(499)] {
            assert_eq!(
                live.heard(ping, t0 + at, timeout),
                Heard::Pending,
                "at {at:?}"
            );
        }
        // Done at 500 ms, it waits, and the PONG (already buffered) arrives at once.
        live.waiting(t0 + ms(500));
        assert_eq!(live.heard(ping, t0 + ms(500), timeout), Heard::Pending);
        live.received(t0 + ms(500));
        assert_eq!(live.heard(ping, t0 + ms(501), timeout), Heard::Answered);
    }

    #[test]
    fn silence_counts_only_while_the_reader_waits() {
        let t0 = Instant::now();
        let live = Liveness::new(t0);
        let timeout = Some(ms(30));
        live.received(t0 + ms(1));
        let ping = t0 + ms(10);
        // Busy until 100 ms, then waiting in vain: silent 30 ms later, not before.
        live.waiting(t0 + ms(100));
        assert_eq!(live.heard(ping, t0 + ms(129), timeout), Heard::Pending);
        assert_eq!(live.heard(ping, t0 + ms(131), timeout), Heard::Silent);
    }

    #[test]
    fn a_dead_peer_times_out_from_the_ping() {
        let t0 = Instant::now();
        let live = Liveness::new(t0);
        let timeout = Some(ms(30));
        live.received(t0 + ms(1));
        live.waiting(t0 + ms(2));
        let ping = t0 + ms(10);
        assert_eq!(live.heard(ping, t0 + ms(39), timeout), Heard::Pending);
        assert_eq!(live.heard(ping, t0 + ms(41), timeout), Heard::Silent);
        // Without a timeout there is never a verdict of silence.
        assert_eq!(live.heard(ping, t0 + ms(10_000), None), Heard::Pending);
    }

    #[test]
    fn traffic_before_the_ping_does_not_answer_it() {
        let t0 = Instant::now();
        let live = Liveness::new(t0);
        let ping = t0 + ms(10);
        live.received(ping - Duration::from_micros(2));
        live.waiting(ping - Duration::from_micros(1));
        assert_eq!(live.heard(ping, ping, Some(ms(30))), Heard::Pending);
        live.received(ping);
        assert_eq!(live.heard(ping, ping, Some(ms(30))), Heard::Answered);
    }
}
