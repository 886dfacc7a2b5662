//! The public socket types: thin, typed handles over the shared engine.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::core::Core;
use crate::endpoint::Endpoint;
use crate::error::{TrySendError, ZmtpError};
use crate::message::Message;
use crate::monitor::{Monitor, DEFAULT_MONITOR_CAPACITY};
use crate::options::SocketOptions;
use crate::region::FileRegion;
use crate::socket_type::SocketType;

macro_rules! socket_common {
    ($name:ident, $kind:expr) => {
        impl $name {
            /// A new socket; it does nothing until bound or connected.
            pub fn new(options: SocketOptions) -> Self {
                Self {
                    core: Core::new($kind, options),
                }
            }

            /// Listens on `tcp://host:port` (`*` for every interface, port `0` or `*` for any
            /// free port, `*[first-last]` for the first free one in a range); returns the
            /// endpoint actually bound.
            pub async fn bind(&self, endpoint: &str) -> Result<Endpoint, ZmtpError> {
                self.core.bind(endpoint).await
            }

            /// Stops listening on `endpoint` (the endpoint [`bind`](Self::bind) returned, or
            /// the string given to it when that named a fixed port) and closes the
            /// connections accepted through it. [`ZmtpError::UnknownEndpoint`] if not bound
            /// there. Returns once the port is free.
            pub async fn unbind(&self, endpoint: &str) -> Result<(), ZmtpError> {
                self.core.unbind(endpoint).await
            }

            /// Connects to `tcp://host:port` in the background, reconnecting with exponential
            /// backoff whenever the connection is lost. Never waits: the endpoint is checked
            /// and a task started; the connection's progress shows in [`monitor`](Self::monitor).
            pub fn connect(&self, endpoint: &str) -> Result<(), ZmtpError> {
                self.core.connect(endpoint)
            }

            /// Stops connecting to `endpoint` (as given to [`connect`](Self::connect)): no
            /// more reconnects, its connection is closed and messages queued for it are
            /// dropped. [`ZmtpError::UnknownEndpoint`] if not connected there.
            pub fn disconnect(&self, endpoint: &str) -> Result<(), ZmtpError> {
                self.core.disconnect(endpoint)
            }

            /// Watches the socket's connections, as libzmq's `zmq_socket_monitor`: a stream of
            /// [`SocketEvent`](crate::SocketEvent)s holding up to [`DEFAULT_MONITOR_CAPACITY`] unread events
            /// (more are dropped and counted, the socket never waits for its monitors).
            pub fn monitor(&self) -> Monitor {
                self.core.monitor(DEFAULT_MONITOR_CAPACITY)
            }

            /// [`monitor`](Self::monitor) with room for `capacity` unread events.
            pub fn monitor_with_capacity(&self, capacity: usize) -> Monitor {
                self.core.monitor(capacity)
            }

            /// Number of peers whose handshake has completed.
            pub fn peer_count(&self) -> usize {
                self.core.peer_count()
            }

            /// Waits until at least `n` peers are connected (returns early if the socket closes).
            pub async fn wait_for_peers(&self, n: usize) {
                self.core.wait_for_peers(n).await
            }

            /// The socket's options.
            pub fn options(&self) -> &SocketOptions {
                &self.core.opts
            }

            /// Closes the socket: no more sends, waits up to `linger` for queued messages to be
            /// written, then drops every connection. Dropping the socket closes it without linger.
            pub async fn close(&self) {
                self.core.close().await
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.core.shutdown();
            }
        }
    };
}

macro_rules! socket_send {
    ($name:ident) => {
        impl $name {
            /// Queues a message, waiting while the peer queues are full.
            pub fn send(
                &self,
                msg: impl Into<Message>,
            ) -> impl Future<Output = Result<(), ZmtpError>> + Send + '_ {
                let mut slot = Some(msg.into());
                std::future::poll_fn(move |cx| self.core.poll_send(cx, &mut slot))
            }

            /// Resolves once every message queued so far has been written to the operating
            /// system (from there it is delivered even if this process dies next) or dropped.
            /// A peer that is disconnected or does not read holds it back: bound it with a
            /// timeout. The future does not borrow the socket.
            pub fn flushed(&self) -> impl Future<Output = ()> + Send + 'static {
                self.core.flushed()
            }

            /// Queues a message without waiting; hands it back if it cannot be queued now.
            pub fn try_send(&self, msg: impl Into<Message>) -> Result<(), TrySendError> {
                self.core.try_send(msg.into())
            }
        }
    };
}

macro_rules! socket_recv {
    ($name:ident) => {
        impl $name {
            /// Waits for the next message.
            pub fn recv(&self) -> impl Future<Output = Result<Message, ZmtpError>> + Send + '_ {
                std::future::poll_fn(move |cx| self.core.poll_recv(cx))
            }

            /// The next message if one is waiting.
            pub fn try_recv(&self) -> Result<Option<Message>, ZmtpError> {
                self.core.try_recv()
            }
        }
    };
}

/// ROUTER: receives `[identity, frames...]` from any peer; sends to the peer named by the first
/// frame. Peers are identified by their `Identity` property, else by a generated 5-byte id
/// (`0x00` + counter). Unroutable messages are dropped, or reported with `router_mandatory`.
#[derive(Debug)]
pub struct RouterSocket {
    core: Arc<Core>,
}
socket_common!(RouterSocket, SocketType::Router);
socket_send!(RouterSocket);
socket_recv!(RouterSocket);

impl RouterSocket {
    /// Queues `[identity, frames...]` whose last frame ends in `region`, without waiting (as
    /// [`RouterSocket::try_send`]). Without encryption the region is written with sendfile(2)
    /// straight from the file; with CURVE it is read and sealed. If the file is shorter than
    /// the region when it is written, that connection is closed (see [`FileRegion`]).
    pub fn try_send_region(
        &self,
        msg: impl Into<Message>,
        region: FileRegion,
    ) -> Result<(), TrySendError> {
        self.core.try_send_region(msg.into(), region)
    }

    /// Closes the connection of the peer routed as `identity` at once (what is queued for it
    /// is dropped, not written) and forgets its route: messages to `identity` are unroutable
    /// from now on, until a peer with that identity connects again. The peer sees its
    /// connection end and, if it connected to us, reconnects as it would after any failure.
    /// Returns whether such a peer was connected. Other peers are untouched.
    pub fn close_peer(&self, identity: &[u8]) -> bool {
        self.core.close_peer(identity)
    }
}

/// DEALER: sends round-robin to its peers, receives fair-queued from them.
#[derive(Debug)]
pub struct DealerSocket {
    core: Arc<Core>,
}
socket_common!(DealerSocket, SocketType::Dealer);
socket_send!(DealerSocket);
socket_recv!(DealerSocket);

/// PUSH: sends round-robin to its PULL peers.
#[derive(Debug)]
pub struct PushSocket {
    core: Arc<Core>,
}
socket_common!(PushSocket, SocketType::Push);
socket_send!(PushSocket);

/// PULL: receives from its PUSH peers.
#[derive(Debug)]
pub struct PullSocket {
    core: Arc<Core>,
}
socket_common!(PullSocket, SocketType::Pull);
socket_recv!(PullSocket);

/// PUB: sends each message to every subscriber whose subscription is a prefix of its first
/// frame. Never waits: a subscriber whose queue is full misses the message.
#[derive(Debug)]
pub struct PubSocket {
    core: Arc<Core>,
}
socket_common!(PubSocket, SocketType::Pub);
socket_send!(PubSocket);

/// SUB: receives the messages matching its subscriptions (prefixes of the first frame).
#[derive(Debug)]
pub struct SubSocket {
    core: Arc<Core>,
}
socket_common!(SubSocket, SocketType::Sub);
socket_recv!(SubSocket);

impl SubSocket {
    /// Subscribes to messages starting with `topic` (empty: everything).
    pub fn subscribe(&self, topic: impl Into<Bytes>) -> Result<(), ZmtpError> {
        self.core.subscribe(topic.into(), true)
    }

    /// Cancels one earlier subscription to `topic`.
    pub fn unsubscribe(&self, topic: impl Into<Bytes>) -> Result<(), ZmtpError> {
        self.core.subscribe(topic.into(), false)
    }
}
