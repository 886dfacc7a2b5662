//! The engine shared by every socket type: peers, routing, queues, bind and connect loops.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use harmony_wire::zmtp::{Command, Frame, Metadata};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::connection;
use crate::endpoint::{BindSpec, ConnectSpec, Endpoint};
use crate::error::{ConnectionError, TrySendError, ZmtpError};
use crate::inbound::Inbound;
use crate::message::Message;
use crate::monitor::{EventKind, Monitor, Monitors, SocketEvent};
use crate::options::SocketOptions;
use crate::pipe::{lock, Pipe};
use crate::region::FileRegion;
use crate::socket_type::SocketType;
use crate::subscription::Subscriptions;
use crate::wakers::Wakers;

/// Mutable routing state, behind one short lock.
#[derive(Debug, Default)]
struct State {
    /// Round-robin targets (DEALER, PUSH: including connected endpoints not yet up),
    /// fan-out targets (PUB), subscription targets (SUB), live peers (PULL).
    pipes: Vec<Arc<Pipe>>,
    rr: usize,
    /// ROUTER: identity -> peer.
    routes: HashMap<Bytes, Arc<Pipe>>,
    next_auto_id: u32,
    /// SUB: our own subscriptions.
    subscriptions: Subscriptions,
    live: usize,
}

/// The endpoints a socket was bound and connected to, for `unbind` and `disconnect`.
#[derive(Debug, Default)]
struct Endpoints {
    binds: Vec<Bound>,
    connects: Vec<Connecting>,
}

/// A listener: cancelling its token closes it and every connection accepted through it.
#[derive(Debug)]
struct Bound {
    /// The string given to `bind`, when it names one fixed port.
    given: Option<String>,
    bound: Endpoint,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// A connected endpoint: cancelling its token ends its reconnect loop and its connection.
#[derive(Debug)]
struct Connecting {
    given: String,
    cancel: CancellationToken,
    pipe: Arc<Pipe>,
}

/// One socket's engine.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) kind: SocketType,
    pub(crate) opts: SocketOptions,
    state: Mutex<State>,
    pub(crate) inbound: Inbound,
    /// Senders waiting until some peer queue goes below its mark, or a peer appears.
    pub(crate) space: Wakers,
    pub(crate) cancel: CancellationToken,
    closed: AtomicBool,
    next_pipe: AtomicU64,
    peers: watch::Sender<usize>,
    pub(crate) local_meta: Metadata,
    endpoints: Mutex<Endpoints>,
    pub(crate) monitors: Monitors,
}

/// A peer connection attached to the socket; detaches on drop (also when the task is cancelled).
pub(crate) struct Attachment {
    core: Arc<Core>,
    pub(crate) pipe: Arc<Pipe>,
    pub(crate) identity: Bytes,
    connect_side: bool,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.core.detach(&self.pipe, self.connect_side);
    }
}

impl Core {
    pub(crate) fn new(kind: SocketType, opts: SocketOptions) -> Arc<Self> {
        let mut local_meta = Metadata::new().with("Socket-Type", kind.as_str());
        if kind.sends_identity() {
            local_meta.insert("Identity", opts.identity.clone().unwrap_or_default());
        }
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32;
        Arc::new(Self {
            kind,
            inbound: Inbound::new(opts.recv_hwm),
            state: Mutex::new(State {
                next_auto_id: seed,
                ..State::default()
            }),
            opts,
            space: Wakers::default(),
            cancel: CancellationToken::new(),
            closed: AtomicBool::new(false),
            next_pipe: AtomicU64::new(1),
            peers: watch::channel(0).0,
            local_meta,
            endpoints: Mutex::new(Endpoints::default()),
            monitors: Monitors::default(),
        })
    }

    fn new_pipe(&self) -> Arc<Pipe> {
        Arc::new(Pipe::new(
            self.next_pipe.fetch_add(1, Ordering::Relaxed),
            self.opts.send_hwm,
        ))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Binds and starts accepting; returns the address actually bound.
    pub(crate) async fn bind(self: &Arc<Self>, endpoint: &str) -> Result<Endpoint, ZmtpError> {
        if self.is_closed() {
            return Err(ZmtpError::Closed);
        }
        let spec = BindSpec::parse(endpoint)?;
        let listener = match listen(&spec, endpoint).await {
            Ok(l) => l,
            Err(e) => {
                if let ZmtpError::Io(io) = &e {
                    let error = io.kind();
                    self.emit(|| SocketEvent::new(EventKind::BindFailed { error }, endpoint));
                }
                return Err(e);
            }
        };
        let local = Endpoint::new(listener.local_addr()?);
        debug!(socket = %self.kind, endpoint = %local, "bound");
        self.emit(|| SocketEvent::new(EventKind::Listening, local.to_string()));
        let cancel = self.cancel.child_token();
        let core = Arc::clone(self);
        let task = tokio::spawn(core.accept_loop(listener, local, cancel.clone()));
        let fixed_port = spec.ports.0 != 0 && spec.ports.0 == spec.ports.1;
        lock(&self.endpoints).binds.push(Bound {
            given: fixed_port.then(|| endpoint.to_owned()),
            bound: local,
            cancel,
            task,
        });
        Ok(local)
    }

    /// Closes the listener bound to `endpoint` (the endpoint `bind` returned, or the string
    /// given to `bind` when it named a fixed port) and every connection accepted through it.
    pub(crate) async fn unbind(&self, endpoint: &str) -> Result<(), ZmtpError> {
        if self.is_closed() {
            return Err(ZmtpError::Closed);
        }
        BindSpec::parse(endpoint)?;
        let wanted = endpoint.parse::<Endpoint>().ok();
        let removed = take_matching(&mut lock(&self.endpoints).binds, |b| {
            Some(b.bound) == wanted || b.given.as_deref() == Some(endpoint)
        });
        if removed.is_empty() {
            return Err(ZmtpError::UnknownEndpoint(endpoint.to_owned()));
        }
        for b in removed {
            b.cancel.cancel();
            // The port is free once the accept task has dropped the listener.
            let _ = b.task.await;
            debug!(socket = %self.kind, endpoint = %b.bound, "unbound");
            self.emit(|| SocketEvent::new(EventKind::Closed, b.bound.to_string()));
        }
        Ok(())
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        local: Endpoint,
        cancel: CancellationToken,
    ) {
        let endpoint = local.to_string();
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    self.emit(|| SocketEvent::new(EventKind::Accepted, &endpoint).with_peer(peer));
                    let core = Arc::clone(&self);
                    let (cancel, endpoint) = (cancel.clone(), endpoint.clone());
                    tokio::spawn(async move {
                        connection::run(core, stream, peer, None, &cancel, &endpoint).await
                    });
                }
                Err(e) => {
                    // Out of descriptors or similar: pause rather than spin.
                    warn!(socket = %self.kind, error = %e, "accept failed");
                    let error = e.kind();
                    self.emit(|| SocketEvent::new(EventKind::AcceptFailed { error }, &endpoint));
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                    }
                }
            }
        }
    }

    /// Starts connecting (in the background, with reconnects). Messages for this peer may be
    /// queued at once (DEALER, PUSH), as libzmq does.
    pub(crate) fn connect(self: &Arc<Self>, endpoint: &str) -> Result<(), ZmtpError> {
        if self.is_closed() {
            return Err(ZmtpError::Closed);
        }
        let spec = ConnectSpec::parse(endpoint)?;
        let pipe = self.new_pipe();
        if matches!(self.kind, SocketType::Dealer | SocketType::Push) {
            lock(&self.state).pipes.push(Arc::clone(&pipe));
            self.space.wake_all();
        }
        let cancel = self.cancel.child_token();
        lock(&self.endpoints).connects.push(Connecting {
            given: endpoint.to_owned(),
            cancel: cancel.clone(),
            pipe: Arc::clone(&pipe),
        });
        let core = Arc::clone(self);
        tokio::spawn(core.connect_loop(spec, pipe, cancel));
        Ok(())
    }

    /// Stops connecting to `endpoint` (as given to `connect`, or the same address written
    /// otherwise): ends its reconnect loop, closes its connection and drops what is queued
    /// for it.
    pub(crate) fn disconnect(&self, endpoint: &str) -> Result<(), ZmtpError> {
        if self.is_closed() {
            return Err(ZmtpError::Closed);
        }
        ConnectSpec::parse(endpoint)?;
        let wanted = endpoint.parse::<Endpoint>().ok();
        let removed = take_matching(&mut lock(&self.endpoints).connects, |c| {
            c.given == endpoint || (wanted.is_some() && c.given.parse::<Endpoint>().ok() == wanted)
        });
        if removed.is_empty() {
            return Err(ZmtpError::UnknownEndpoint(endpoint.to_owned()));
        }
        for c in removed {
            c.cancel.cancel();
            if matches!(self.kind, SocketType::Dealer | SocketType::Push) {
                lock(&self.state).pipes.retain(|p| !Arc::ptr_eq(p, &c.pipe));
                c.pipe.clear();
            }
            debug!(socket = %self.kind, endpoint = %c.given, "disconnected");
        }
        Ok(())
    }

    async fn connect_loop(
        self: Arc<Self>,
        spec: ConnectSpec,
        pipe: Arc<Pipe>,
        cancel: CancellationToken,
    ) {
        let endpoint = spec.text.as_str();
        let mut delay = self.opts.reconnect_ivl;
        loop {
            self.emit(|| SocketEvent::new(EventKind::ConnectDelayed, endpoint));
            let attempt = async {
                let addrs = spec.resolve().await?;
                let mut last = std::io::Error::other("no address");
                for addr in addrs {
                    match TcpStream::connect(addr).await {
                        Ok(s) => return Ok((s, addr)),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            };
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return,
                r = tokio::time::timeout(self.opts.handshake_timeout, attempt) => r,
            };
            match attempt {
                Ok(Ok((stream, addr))) => {
                    self.emit(|| SocketEvent::new(EventKind::Connected, endpoint).with_peer(addr));
                    let handshook = connection::run(
                        Arc::clone(&self),
                        stream,
                        addr,
                        Some(Arc::clone(&pipe)),
                        &cancel,
                        endpoint,
                    )
                    .await;
                    if handshook {
                        delay = self.opts.reconnect_ivl;
                    }
                }
                Ok(Err(e)) => {
                    trace!(endpoint, error = %e, "connect failed");
                    self.emit(|| SocketEvent::new(EventKind::Closed, endpoint));
                }
                Err(_) => {
                    trace!(endpoint, "connect timed out");
                    self.emit(|| SocketEvent::new(EventKind::Closed, endpoint));
                }
            }
            if cancel.is_cancelled() {
                return;
            }
            trace!(endpoint, ?delay, "reconnecting");
            let interval = delay;
            self.emit(|| SocketEvent::new(EventKind::ConnectRetried { interval }, endpoint));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(self.opts.reconnect_ivl_max.max(self.opts.reconnect_ivl));
        }
    }

    /// Hands a monitor event to the socket's monitors (built only if there are any).
    pub(crate) fn emit(&self, event: impl FnOnce() -> SocketEvent) {
        self.monitors.emit(event);
    }

    /// A new monitor of this socket's events.
    pub(crate) fn monitor(&self, capacity: usize) -> Monitor {
        self.monitors.subscribe(capacity)
    }

    /// Makes a handshaken connection routable. `pipe` is the connected endpoint's queue, or
    /// `None` for an accepted connection.
    pub(crate) fn attach(
        self: &Arc<Self>,
        pipe: Option<Arc<Pipe>>,
        peer_meta: &Metadata,
        v31: bool,
        conn: CancellationToken,
    ) -> Result<Attachment, ConnectionError> {
        let connect_side = pipe.is_some();
        let pipe = pipe.unwrap_or_else(|| self.new_pipe());
        pipe.set_v31(v31);
        *lock(&pipe.conn) = Some(conn);
        let mut st = lock(&self.state);
        let mut identity = Bytes::new();
        match self.kind {
            SocketType::Router => {
                identity = match peer_meta.get("Identity") {
                    Some(id) if !id.is_empty() => id.clone(),
                    _ => self.auto_identity(&mut st),
                };
                if let Some(old) = st.routes.get(&identity) {
                    if !self.opts.router_handover {
                        debug!(identity = ?identity, "duplicate identity refused");
                        return Err(ConnectionError::DuplicateIdentity);
                    }
                    debug!(identity = ?identity, "identity handed over to a new connection");
                    old.disconnect();
                }
                *lock(&pipe.identity) = identity.clone();
                st.routes.insert(identity.clone(), Arc::clone(&pipe));
            }
            SocketType::Dealer | SocketType::Push => {
                if !connect_side {
                    st.pipes.push(Arc::clone(&pipe));
                }
            }
            SocketType::Sub => {
                for topic in st.subscriptions.topics() {
                    pipe.push_control(subscription_frame(true, topic, v31));
                }
                st.pipes.push(Arc::clone(&pipe));
            }
            SocketType::Pub | SocketType::Pull => {
                lock(&pipe.subs).clear();
                st.pipes.push(Arc::clone(&pipe));
            }
        }
        st.live += 1;
        let live = st.live;
        drop(st);
        self.peers.send_replace(live);
        self.space.wake_all();
        Ok(Attachment {
            core: Arc::clone(self),
            pipe,
            identity,
            connect_side,
        })
    }

    fn auto_identity(&self, st: &mut State) -> Bytes {
        loop {
            st.next_auto_id = st.next_auto_id.wrapping_add(1);
            let mut id = BytesMut::with_capacity(5);
            id.put_u8(0);
            id.put_u32(st.next_auto_id);
            let id = id.freeze();
            if !st.routes.contains_key(&id) {
                return id;
            }
        }
    }

    fn detach(&self, pipe: &Arc<Pipe>, connect_side: bool) {
        let mut st = lock(&self.state);
        match self.kind {
            SocketType::Router => {
                let id = lock(&pipe.identity).clone();
                if st.routes.get(&id).is_some_and(|p| Arc::ptr_eq(p, pipe)) {
                    st.routes.remove(&id);
                }
            }
            SocketType::Dealer | SocketType::Push if connect_side => {}
            _ => st.pipes.retain(|p| !Arc::ptr_eq(p, pipe)),
        }
        st.live = st.live.saturating_sub(1);
        let live = st.live;
        drop(st);
        *lock(&pipe.conn) = None;
        lock(&pipe.subs).clear();
        if connect_side && matches!(self.kind, SocketType::Dealer | SocketType::Push) {
            pipe.purge_control();
        } else {
            pipe.clear();
        }
        self.peers.send_replace(live);
        trace!(pipe = pipe.id, "detached");
    }

    /// ROUTER: closes the connection of the peer routed as `identity` and drops what is
    /// queued for it; from now on messages to `identity` are unroutable (until a peer with
    /// that identity connects again). Returns whether there was such a peer.
    pub(crate) fn close_peer(&self, identity: &[u8]) -> bool {
        if self.kind != SocketType::Router {
            return false;
        }
        let Some(pipe) = lock(&self.state).routes.remove(identity) else {
            return false;
        };
        pipe.disconnect();
        debug!(identity = ?identity, "peer connection closed by the application");
        true
    }

    /// Number of peers whose handshake is complete.
    pub(crate) fn peer_count(&self) -> usize {
        *self.peers.borrow()
    }

    /// Waits until at least `n` peers are connected.
    pub(crate) async fn wait_for_peers(&self, n: usize) {
        let mut rx = self.peers.subscribe();
        tokio::select! {
            _ = rx.wait_for(|c| *c >= n) => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    /// Queues a message without waiting.
    pub(crate) fn try_send(&self, msg: Message) -> Result<(), TrySendError> {
        if msg.is_empty() {
            return Err(TrySendError::Invalid("a message needs at least one frame"));
        }
        if self.is_closed() {
            return Err(TrySendError::Closed(msg));
        }
        match self.kind {
            SocketType::Dealer | SocketType::Push => self.send_round_robin(msg),
            SocketType::Router => self.send_routed(msg, None),
            SocketType::Pub => {
                self.send_fan_out(msg);
                Ok(())
            }
            SocketType::Pull | SocketType::Sub => {
                Err(TrySendError::Invalid("this socket type cannot send"))
            }
        }
    }

    fn send_round_robin(&self, mut msg: Message) -> Result<(), TrySendError> {
        let mut st = lock(&self.state);
        let n = st.pipes.len();
        for i in 0..n {
            let idx = (st.rr + i) % n;
            match st.pipes[idx].try_push(msg) {
                Ok(()) => {
                    st.rr = (idx + 1) % n;
                    return Ok(());
                }
                Err(m) => msg = m,
            }
        }
        Err(TrySendError::WouldBlock(msg))
    }

    /// ROUTER: queues `msg` whose last frame ends in `region`, without waiting.
    pub(crate) fn try_send_region(
        &self,
        msg: Message,
        region: FileRegion,
    ) -> Result<(), TrySendError> {
        if msg.len() < 2 {
            return Err(TrySendError::Invalid(
                "ROUTER needs an identity and a frame for the region",
            ));
        }
        if self.is_closed() {
            return Err(TrySendError::Closed(msg));
        }
        match self.kind {
            SocketType::Router => self.send_routed(msg, Some(region)),
            _ => Err(TrySendError::Invalid("only ROUTER sends file regions")),
        }
    }

    fn send_routed(
        &self,
        mut msg: Message,
        region: Option<FileRegion>,
    ) -> Result<(), TrySendError> {
        let Some(id) = msg.pop_front() else {
            return Err(TrySendError::Invalid("ROUTER needs an identity frame"));
        };
        if msg.is_empty() {
            return Err(TrySendError::Invalid(
                "ROUTER needs frames after the identity",
            ));
        }
        let st = lock(&self.state);
        let Some(pipe) = st.routes.get(&id) else {
            drop(st);
            if self.opts.router_mandatory {
                msg.push_front(id);
                return Err(TrySendError::Unroutable(msg));
            }
            trace!(identity = ?id, "dropping unroutable message");
            return Ok(());
        };
        match pipe.try_push_with(msg, region) {
            Ok(()) => Ok(()),
            Err(mut m) if self.opts.router_mandatory => {
                m.push_front(id);
                Err(TrySendError::WouldBlock(m))
            }
            Err(_) => {
                trace!(identity = ?id, "peer queue full, message dropped");
                Ok(())
            }
        }
    }

    fn send_fan_out(&self, msg: Message) {
        let st = lock(&self.state);
        let topic = msg.first().map(|b| &b[..]).unwrap_or_default();
        let mut targets = st.pipes.iter().filter(|p| lock(&p.subs).matches(topic));
        let Some(mut current) = targets.next() else {
            return;
        };
        // Clone for all but the last target.
        for next in targets {
            if current.try_push(msg.clone()).is_err() {
                trace!("subscriber queue full, message dropped");
            }
            current = next;
        }
        if current.try_push(msg).is_err() {
            trace!("subscriber queue full, message dropped");
        }
    }

    /// Queues the message in `slot`, or parks the task while every eligible peer queue is full.
    /// Synchronous until it would block, so the common case costs no future state.
    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        slot: &mut Option<Message>,
    ) -> Poll<Result<(), ZmtpError>> {
        let Some(msg) = slot.take() else {
            return Poll::Ready(Ok(()));
        };
        let msg = match self.try_send(msg) {
            Ok(()) => return Poll::Ready(Ok(())),
            Err(e) => match self.retryable(e) {
                Ok(m) => m,
                Err(e) => return Poll::Ready(Err(e)),
            },
        };
        self.space.register(cx.waker());
        // Space may have appeared between the attempt and the registration.
        match self.try_send(msg) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => match self.retryable(e) {
                Ok(m) => {
                    *slot = Some(m);
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn retryable(&self, e: TrySendError) -> Result<Message, ZmtpError> {
        match e {
            TrySendError::WouldBlock(m) => Ok(m),
            TrySendError::Unroutable(_) => Err(ZmtpError::Unroutable),
            TrySendError::Closed(_) => Err(ZmtpError::Closed),
            TrySendError::Invalid(why) => Err(ZmtpError::InvalidMessage(why)),
        }
    }

    /// Hands a batch of received messages to the socket.
    pub(crate) async fn deliver(
        &self,
        pipe: &Pipe,
        batch: &mut Vec<Message>,
    ) -> Result<(), ConnectionError> {
        match self.kind {
            SocketType::Pull | SocketType::Dealer | SocketType::Router => {}
            SocketType::Sub => {
                let st = lock(&self.state);
                batch.retain(|m| {
                    st.subscriptions
                        .matches(m.first().map(|b| &b[..]).unwrap_or_default())
                });
            }
            SocketType::Pub => {
                // ZMTP 3.0 subscriptions: a message whose first byte is 1 (subscribe) or 0 (cancel).
                let mut subs = lock(&pipe.subs);
                for m in batch.drain(..) {
                    let Some(body) = m.first() else { continue };
                    match body.first() {
                        Some(1) => {
                            subs.add(body.slice(1..));
                        }
                        Some(0) => {
                            subs.remove(&body[1..]);
                        }
                        _ => trace!("PUB ignores a message from a subscriber"),
                    }
                }
                return Ok(());
            }
            SocketType::Push => {
                trace!(count = batch.len(), "PUSH drops messages from its peer");
                batch.clear();
                return Ok(());
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.inbound
            .push_batch(batch)
            .await
            .map_err(|_| ConnectionError::SocketClosed)
    }

    /// A SUBSCRIBE or CANCEL from the peer (PUB only; others ignore it).
    pub(crate) fn peer_subscription(&self, pipe: &Pipe, subscribe: bool, topic: Bytes) {
        if self.kind != SocketType::Pub {
            trace!("ignoring a subscription sent to a non-PUB socket");
            return;
        }
        trace!(subscribe, topic = ?topic, "peer subscription");
        let mut subs = lock(&pipe.subs);
        if subscribe {
            subs.add(topic);
        } else {
            subs.remove(&topic);
        }
    }

    /// SUB: adds (or removes) one of our subscriptions and tells every connected publisher.
    pub(crate) fn subscribe(&self, topic: Bytes, subscribe: bool) -> Result<(), ZmtpError> {
        if self.is_closed() {
            return Err(ZmtpError::Closed);
        }
        let mut st = lock(&self.state);
        let changed = if subscribe {
            st.subscriptions.add(topic.clone())
        } else {
            st.subscriptions.remove(&topic)
        };
        if changed {
            for pipe in &st.pipes {
                pipe.push_control(subscription_frame(subscribe, &topic, pipe.is_v31()));
            }
        }
        Ok(())
    }

    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Message, ZmtpError>> {
        self.inbound.poll_pop(cx).map_err(|_| ZmtpError::Closed)
    }

    pub(crate) fn try_recv(&self) -> Result<Option<Message>, ZmtpError> {
        self.inbound.try_pop().map_err(|_| ZmtpError::Closed)
    }

    /// Resolves once every peer queue has been written out (to the operating system) or
    /// dropped. Holds the queues, not the socket.
    pub(crate) fn flushed(&self) -> impl Future<Output = ()> + Send + 'static {
        let pipes: Vec<Arc<Pipe>> = {
            let st = lock(&self.state);
            st.pipes.iter().chain(st.routes.values()).cloned().collect()
        };
        async move {
            for p in &pipes {
                p.wait_idle().await;
            }
        }
    }

    /// Stops sending, waits up to the linger time for queues to drain, then shuts down.
    pub(crate) async fn close(&self) {
        if self.closed.swap(true, Ordering::Relaxed) {
            self.shutdown();
            return;
        }
        if tokio::time::timeout(self.opts.linger, self.flushed())
            .await
            .is_err()
        {
            debug!(socket = %self.kind, "linger expired with messages queued");
        }
        self.shutdown();
    }

    /// Ends every task of the socket at once.
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.cancel.cancel();
        self.inbound.close();
        self.space.wake_all();
        // As libzmq: each listener still open is reported CLOSED, then the monitors stop.
        let binds = std::mem::take(&mut lock(&self.endpoints).binds);
        for b in binds {
            self.emit(|| SocketEvent::new(EventKind::Closed, b.bound.to_string()));
        }
        self.monitors.stop();
    }
}

/// Removes and returns the items of `list` that `pick` chooses.
fn take_matching<T>(list: &mut Vec<T>, pick: impl Fn(&T) -> bool) -> Vec<T> {
    let (taken, kept) = std::mem::take(list).into_iter().partition(pick);
    *list = kept;
    taken
}

/// Opens a listener for a bind pattern: `*` is every IPv6 and IPv4 address (one dual-stack
/// socket on `[::]`, or `0.0.0.0` where the system has no IPv6); the ports are tried in order.
async fn listen(spec: &BindSpec, endpoint: &str) -> Result<TcpListener, ZmtpError> {
    let hosts: Vec<IpAddr> = if spec.host == "*" {
        vec![Ipv6Addr::UNSPECIFIED.into(), Ipv4Addr::UNSPECIFIED.into()]
    } else {
        tokio::net::lookup_host((spec.host.as_str(), 0))
            .await?
            .map(|a| a.ip())
            .take(1)
            .collect()
    };
    if hosts.is_empty() {
        return Err(ZmtpError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "host does not resolve",
        });
    }
    let (first, last) = spec.ports;
    let mut last_err = None;
    'hosts: for ip in hosts {
        for port in first..=last {
            match listen_on(SocketAddr::new(ip, port)) {
                Ok(l) => return Ok(l),
                Err(e) => {
                    let in_use = e.kind() == std::io::ErrorKind::AddrInUse;
                    last_err = Some(e);
                    if !in_use {
                        // This address family is unusable here; try the next host.
                        continue 'hosts;
                    }
                }
            }
        }
        // Every port is taken: the other family shares the ports of a dual-stack socket.
        break;
    }
    Err(last_err
        .unwrap_or_else(|| std::io::Error::other("no address to bind"))
        .into())
}

/// A listening socket on `addr`; on the IPv6 unspecified address it also takes IPv4
/// connections where the system allows it (`IPV6_V6ONLY` off), as libzmq does.
fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let IpAddr::V6(ip) = addr.ip() {
        if ip.is_unspecified() {
            if let Err(e) = socket.set_only_v6(false) {
                debug!(error = %e, "IPv6-only cannot be turned off; IPv6 connections only");
            }
        }
    }
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A subscription as a SUBSCRIBE/CANCEL command (ZMTP 3.1) or as a 0x01/0x00 message (3.0).
pub(crate) fn subscription_frame(subscribe: bool, topic: &Bytes, v31: bool) -> Frame {
    if v31 {
        let cmd = if subscribe {
            Command::Subscribe(topic.clone())
        } else {
            Command::Cancel(topic.clone())
        };
        match cmd.to_frame() {
            Ok(f) => return f,
            Err(e) => warn!(error = %e, "cannot encode subscription"),
        }
    }
    let mut body = BytesMut::with_capacity(1 + topic.len());
    body.put_u8(u8::from(subscribe));
    body.put_slice(topic);
    Frame::message(body.freeze(), false)
}
