//! Socket monitor events, as libzmq's `zmq_socket_monitor` reports them, delivered as a bounded
//! async stream ([`Monitor`]).
//!
//! The socket never waits for a monitor: when a monitor's queue is full the event is dropped
//! and counted ([`Monitor::dropped`]), so a slow reader cannot slow the socket down.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::pipe::lock;

/// Events queued per monitor by [`crate::DealerSocket::monitor`] before new ones are dropped.
pub const DEFAULT_MONITOR_CAPACITY: usize = 1024;

/// Why a handshake failed (libzmq's `HANDSHAKE_FAILED_*` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The peer broke the protocol: a bad greeting or command, a wrong socket type, a box that
    /// does not open (libzmq `HANDSHAKE_FAILED_PROTOCOL`).
    Protocol,
    /// Authentication failed: our authenticator refused the peer, or the peer refused us with
    /// an ERROR command (libzmq `HANDSHAKE_FAILED_AUTH`).
    Authentication,
    /// The handshake did not finish in time (libzmq `HANDSHAKE_FAILED_NO_DETAIL`).
    NoDetail,
}

/// What happened (libzmq's `ZMQ_EVENT_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A TCP connection to a connected endpoint is established (the handshake follows).
    Connected,
    /// A connection attempt has started and is in progress.
    ConnectDelayed,
    /// The next connection attempt starts after `interval`.
    ConnectRetried {
        /// The reconnect delay, growing with the backoff.
        interval: Duration,
    },
    /// A bind succeeded: the socket listens.
    Listening,
    /// A bind failed.
    BindFailed {
        /// The system's error.
        error: std::io::ErrorKind,
    },
    /// A listener accepted a connection (the handshake follows).
    Accepted,
    /// A listener could not accept a connection (e.g. out of file descriptors).
    AcceptFailed {
        /// The system's error.
        error: std::io::ErrorKind,
    },
    /// The ZMTP handshake (greeting, security, READY) completed: the peer is connected.
    HandshakeSucceeded,
    /// The handshake failed; the connection is closed.
    HandshakeFailed {
        /// The class of the failure.
        failure: HandshakeFailure,
        /// What went wrong, in words (an ERROR command's reason, a ZAP status...).
        reason: String,
    },
    /// A connection ended (the peer closed it, an error, a heartbeat timeout); connected
    /// endpoints reconnect.
    Disconnected {
        /// Why, in words.
        reason: String,
    },
    /// A listener was closed ([`unbind`](crate::RouterSocket::unbind)), or a failed
    /// connection attempt's socket was.
    Closed,
    /// The socket was closed: the last event of every monitor.
    MonitorStopped,
}

impl EventKind {
    /// libzmq's name for the event (`ZMQ_EVENT_` left out), e.g. `HANDSHAKE_FAILED_AUTH`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connected => "CONNECTED",
            Self::ConnectDelayed => "CONNECT_DELAYED",
            Self::ConnectRetried { .. } => "CONNECT_RETRIED",
            Self::Listening => "LISTENING",
            Self::BindFailed { .. } => "BIND_FAILED",
            Self::Accepted => "ACCEPTED",
            Self::AcceptFailed { .. } => "ACCEPT_FAILED",
            Self::HandshakeSucceeded => "HANDSHAKE_SUCCEEDED",
            Self::HandshakeFailed { failure, .. } => match failure {
                HandshakeFailure::Protocol => "HANDSHAKE_FAILED_PROTOCOL",
                HandshakeFailure::Authentication => "HANDSHAKE_FAILED_AUTH",
                HandshakeFailure::NoDetail => "HANDSHAKE_FAILED_NO_DETAIL",
            },
            Self::Disconnected { .. } => "DISCONNECTED",
            Self::Closed => "CLOSED",
            Self::MonitorStopped => "MONITOR_STOPPED",
        }
    }
}

/// One monitor event: what happened, on which endpoint, with which remote address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketEvent {
    /// What happened.
    pub kind: EventKind,
    /// The endpoint concerned: the string given to `connect`, or the endpoint a listener is
    /// bound to (accepted connections report their listener's); empty for `MonitorStopped`.
    pub endpoint: String,
    /// The remote address, when a connection is concerned.
    pub peer: Option<SocketAddr>,
}

impl SocketEvent {
    pub(crate) fn new(kind: EventKind, endpoint: impl Into<String>) -> Self {
        Self {
            kind,
            endpoint: endpoint.into(),
            peer: None,
        }
    }

    pub(crate) fn with_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }
}

impl fmt::Display for SocketEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())?;
        if !self.endpoint.is_empty() {
            write!(f, " {}", self.endpoint)?;
        }
        if let Some(peer) = self.peer {
            write!(f, " peer {peer}")?;
        }
        match &self.kind {
            EventKind::ConnectRetried { interval } => write!(f, " in {interval:?}"),
            EventKind::BindFailed { error } | EventKind::AcceptFailed { error } => {
                write!(f, " ({error})")
            }
            EventKind::HandshakeFailed { reason, .. } | EventKind::Disconnected { reason } => {
                write!(f, " ({reason})")
            }
            _ => Ok(()),
        }
    }
}

/// The receiving end of a socket monitor: events in order, until `MonitorStopped` (the socket
/// closed), then `None`.
#[derive(Debug)]
pub struct Monitor {
    rx: mpsc::Receiver<SocketEvent>,
    dropped: Arc<AtomicU64>,
}

impl Monitor {
    /// The next event; `None` after the socket closed and every event was read.
    pub async fn recv(&mut self) -> Option<SocketEvent> {
        self.rx.recv().await
    }

    /// Polls for the next event (for building a `Stream`).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<SocketEvent>> {
        self.rx.poll_recv(cx)
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<SocketEvent> {
        self.rx.try_recv().ok()
    }

    /// Events dropped so far because this monitor's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Sink {
    tx: mpsc::Sender<SocketEvent>,
    dropped: Arc<AtomicU64>,
}

/// The monitors of one socket.
#[derive(Debug, Default)]
pub(crate) struct Monitors {
    /// Whether any monitor is attached: emitting costs one load when none is.
    any: AtomicBool,
    sinks: Mutex<Vec<Sink>>,
    stopped: AtomicBool,
}

impl Monitors {
    /// A new monitor with room for `capacity` events.
    pub(crate) fn subscribe(&self, capacity: usize) -> Monitor {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut sinks = lock(&self.sinks);
        if self.stopped.load(Ordering::SeqCst) {
            let _ = tx.try_send(SocketEvent::new(EventKind::MonitorStopped, ""));
        } else {
            sinks.push(Sink {
                tx,
                dropped: Arc::clone(&dropped),
            });
            self.any.store(true, Ordering::SeqCst);
        }
        Monitor { rx, dropped }
    }

    /// Hands an event to every monitor; `event` is only built when someone listens.
    pub(crate) fn emit(&self, event: impl FnOnce() -> SocketEvent) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        let event = event();
        tracing::trace!(%event, "monitor event");
        let mut sinks = lock(&self.sinks);
        sinks.retain(|sink| match sink.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                sink.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if sinks.is_empty() {
            self.any.store(false, Ordering::Relaxed);
        }
    }

    /// The socket closed: `MonitorStopped` to every monitor, then their streams end.
    pub(crate) fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.emit(|| SocketEvent::new(EventKind::MonitorStopped, ""));
        lock(&self.sinks).clear();
        self.any.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_monitor_drops_and_counts_and_the_rest_still_arrives() {
        let monitors = Monitors::default();
        let mut slow = monitors.subscribe(2);
        let mut fast = monitors.subscribe(16);
        for _ in 0..5 {
            monitors.emit(|| SocketEvent::new(EventKind::Accepted, "tcp://127.0.0.1:1"));
        }
        monitors.stop();
        let mut got = Vec::new();
        while let Some(ev) = fast.recv().await {
            got.push(ev.kind.name());
        }
        assert_eq!(
            got,
            ["ACCEPTED"; 5]
                .iter()
                .chain(&["MONITOR_STOPPED"])
                .copied()
                .collect::<Vec<_>>()
        );
        assert_eq!(slow.recv().await.unwrap().kind, EventKind::Accepted);
        assert_eq!(slow.recv().await.unwrap().kind, EventKind::Accepted);
        assert_eq!(slow.recv().await, None);
        assert_eq!(slow.dropped(), 4, "three accepts and the stop");
        assert_eq!(fast.dropped(), 0);
    }

    #[tokio::test]
    async fn monitoring_a_closed_socket_ends_at_once() {
        let monitors = Monitors::default();
        monitors.stop();
        let mut late = monitors.subscribe(4);
        assert_eq!(late.recv().await.unwrap().kind, EventKind::MonitorStopped);
        assert_eq!(late.recv().await, None);
    }

    #[test]
    fn nothing_is_built_without_a_monitor() {
        let monitors = Monitors::default();
        monitors.emit(|| panic!("built without a listener"));
        let dropped_monitor = monitors.subscribe(1);
        drop(dropped_monitor);
        monitors.emit(|| SocketEvent::new(EventKind::Closed, ""));
        monitors.emit(|| panic!("built after the only monitor went away"));
    }
}
