//! Socket options: identity, high-water marks, limits, timers, security.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use harmony_security::{Authenticator, MechanismConfig};

/// Options of a socket. Build with `SocketOptions::default()` and the setter methods, or with
/// struct update syntax (`SocketOptions { send_hwm: 10, ..Default::default() }`).
#[derive(Clone)]
pub struct SocketOptions {
    /// The identity sent in READY (`Identity` property), used by a peer ROUTER to route to us.
    /// 1-255 bytes, first byte not 0. `None` sends an empty identity.
    pub identity: Option<Bytes>,
    /// Messages queued per peer before sends wait (or `try_send` reports `WouldBlock`).
    pub send_hwm: usize,
    /// Messages queued for `recv` before connections stop reading (backpressure to the peers);
    /// queued bytes are bounded too (4 MiB), and a batch already taken over by `recv` is not
    /// counted.
    pub recv_hwm: usize,
    /// Largest message (sum of frame sizes) accepted from a peer; a larger one closes that connection.
    pub max_msg_size: usize,
    /// Bytes of large frames' buffers each connection keeps, once the application has dropped
    /// the frames, to read the next ones into (memory already mapped, no page faults). Raise
    /// it to about what a peer may have in flight for streams of large messages.
    pub large_frame_pool: usize,
    /// Time allowed from TCP connect to the end of the security handshake.
    pub handshake_timeout: Duration,
    /// Send a PING this often (`None`: never; PINGs from peers are always answered).
    pub heartbeat_ivl: Option<Duration>,
    /// Close a connection when nothing arrives this long after our PING (default: the interval).
    pub heartbeat_timeout: Option<Duration>,
    /// TTL carried in our PINGs: the peer may close if it hears nothing from us for this long.
    pub heartbeat_ttl: Option<Duration>,
    /// First delay before reconnecting a connected endpoint.
    pub reconnect_ivl: Duration,
    /// Longest delay between reconnect attempts (the delay doubles up to this).
    pub reconnect_ivl_max: Duration,
    /// How long `close()` waits for queued messages to be written.
    pub linger: Duration,
    /// ROUTER: a new connection with an identity in use takes it over (else it is refused).
    pub router_handover: bool,
    /// ROUTER: report unroutable messages instead of dropping them, and wait/`WouldBlock`
    /// when the peer's queue is full instead of dropping.
    pub router_mandatory: bool,
    /// Security mechanism of every connection.
    pub mechanism: MechanismConfig,
    /// Judges peers during PLAIN/CURVE handshakes (server side); without one every peer is let
    /// in, as libzmq does without a ZAP handler.
    pub authenticator: Option<Arc<dyn Authenticator>>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            identity: None,
            send_hwm: 1000,
            recv_hwm: 1000,
            max_msg_size: 64 << 20,
            large_frame_pool: 2 << 20,
            handshake_timeout: Duration::from_secs(30),
            heartbeat_ivl: None,
            heartbeat_timeout: None,
            heartbeat_ttl: None,
            reconnect_ivl: Duration::from_millis(100),
            reconnect_ivl_max: Duration::from_secs(5),
            linger: Duration::from_secs(1),
            router_handover: false,
            router_mandatory: false,
            mechanism: MechanismConfig::default(),
            authenticator: None,
        }
    }
}

impl fmt::Debug for SocketOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketOptions")
            .field("identity", &self.identity)
            .field("send_hwm", &self.send_hwm)
            .field("recv_hwm", &self.recv_hwm)
            .field("max_msg_size", &self.max_msg_size)
            .field("large_frame_pool", &self.large_frame_pool)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("heartbeat_ivl", &self.heartbeat_ivl)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("heartbeat_ttl", &self.heartbeat_ttl)
            .field("reconnect_ivl", &self.reconnect_ivl)
            .field("reconnect_ivl_max", &self.reconnect_ivl_max)
            .field("linger", &self.linger)
            .field("router_handover", &self.router_handover)
            .field("router_mandatory", &self.router_mandatory)
            .field("mechanism", &self.mechanism)
            .field("authenticator", &self.authenticator.is_some())
            .finish()
    }
}

impl SocketOptions {
    /// Sets the identity sent to peers.
    pub fn identity(mut self, identity: impl Into<Bytes>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Sets the per-peer send high-water mark.
    pub fn send_hwm(mut self, hwm: usize) -> Self {
        self.send_hwm = hwm;
        self
    }

    /// Sets the receive high-water mark.
    pub fn recv_hwm(mut self, hwm: usize) -> Self {
        self.recv_hwm = hwm;
        self
    }

    /// Sets the largest message accepted.
    pub fn max_msg_size(mut self, bytes: usize) -> Self {
        self.max_msg_size = bytes;
        self
    }

    /// Sets the bytes of large frame buffers kept per connection for reuse.
    pub fn large_frame_pool(mut self, bytes: usize) -> Self {
        self.large_frame_pool = bytes;
        self
    }

    /// Sets the handshake timeout.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Turns on our own PINGs every `ivl`.
    pub fn heartbeat_ivl(mut self, ivl: Duration) -> Self {
        self.heartbeat_ivl = Some(ivl);
        self
    }

    /// Sets how long to wait for traffic after a PING.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = Some(timeout);
        self
    }

    /// Sets the TTL carried in our PINGs.
    pub fn heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.heartbeat_ttl = Some(ttl);
        self
    }

    /// Sets the first and the longest reconnect delay.
    pub fn reconnect(mut self, ivl: Duration, max: Duration) -> Self {
        self.reconnect_ivl = ivl;
        self.reconnect_ivl_max = max.max(ivl);
        self
    }

    /// Sets how long `close()` waits for queued messages.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// ROUTER: lets a new connection take over an identity in use.
    pub fn router_handover(mut self, on: bool) -> Self {
        self.router_handover = on;
        self
    }

    /// ROUTER: report unroutable messages and full queues instead of dropping.
    pub fn router_mandatory(mut self, on: bool) -> Self {
        self.router_mandatory = on;
        self
    }

    /// Sets the security mechanism.
    pub fn mechanism(mut self, mechanism: MechanismConfig) -> Self {
        self.mechanism = mechanism;
        self
    }

    /// Sets the authenticator for server-side handshakes.
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }
}
