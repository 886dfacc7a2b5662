//! Native ZeroMQ sockets (ZMTP 3.0/3.1 over TCP) on tokio, no C library.
//!
//! Socket types: [`RouterSocket`], [`DealerSocket`], [`PushSocket`], [`PullSocket`],
//! [`PubSocket`], [`SubSocket`]; they interoperate with libzmq peers.
//!
//! ```no_run
//! use harmony_zmtp::{DealerSocket, Message, RouterSocket, SocketOptions};
//!
//! # async fn demo() -> Result<(), harmony_zmtp::ZmtpError> {
//! let router = RouterSocket::new(SocketOptions::default().router_handover(true));
//! let endpoint = router.bind("tcp://127.0.0.1:0").await?; // the port actually bound
//!
//! let dealer = DealerSocket::new(SocketOptions::default().identity(&b"\x01peer"[..]));
//! dealer.connect(&endpoint.to_string())?; // never waits; reconnects by itself
//! dealer.send(Message::from("hello")).await?; // queued until connected
//!
//! let msg = router.recv().await?; // [identity, "hello"]
//! router.send(Message::from_frames([msg[0].clone(), "world".into()])).await?;
//! assert_eq!(dealer.recv().await?[0], "world");
//!
//! // Non-blocking send: `WouldBlock` hands the message back when the peer queue is full.
//! if let Err(e) = dealer.try_send(Message::from("more")) {
//!     let _retry = e.into_message();
//! }
//! dealer.close().await; // waits up to `linger` for queued messages
//! # Ok(()) }
//! ```
//!
//! Each connection is one tokio task: it sends the 64-byte greeting, runs the security
//! mechanism from `harmony-security`, checks the peer's socket type, then reads into a large
//! buffer and writes queued messages in batches. Peers get a bounded queue each
//! ([`SocketOptions::send_hwm`]); received messages share one bounded queue
//! ([`SocketOptions::recv_hwm`]). A connection that misbehaves is closed and reported through
//! `tracing`; the socket and its other connections go on.
//!
//! As in libzmq: `bind` takes `tcp://*:port` on every IPv6 and IPv4 address (a dual-stack
//! `[::]` socket, or `0.0.0.0` without IPv6); `unbind` and `disconnect` undo a `bind` or a
//! `connect`; `monitor()` streams [`SocketEvent`]s with libzmq's names and order (bounded: a
//! slow reader loses events, counted, and never slows the socket).
//!
//! Security: set [`SocketOptions::mechanism`] (NULL, PLAIN, CURVE from `harmony-security`) and,
//! on the server side, [`SocketOptions::authenticator`].
//!
//! Performance tools with libzmq's arguments and output, to run against libzmq's own:
//! `cargo run --release -p harmony-zmtp --example local_thr -- tcp://127.0.0.1:5555 64 1000000`
//! (likewise `remote_thr`, `local_lat`, `remote_lat`); `cargo xtask bench zmtp` compares
//! Harmony, libzmq and raw TCP in one run.

mod connection;
mod core;
pub mod endpoint;
pub mod error;
mod inbound;
pub mod message;
pub mod monitor;
pub mod options;
mod pipe;
pub mod region;
pub mod socket;
pub mod socket_type;
mod subscription;
mod wakers;

pub use endpoint::Endpoint;
pub use error::{TrySendError, ZmtpError};
pub use harmony_security::{Authenticator, MechanismConfig};
pub use message::Message;
pub use monitor::{EventKind, HandshakeFailure, Monitor, SocketEvent};
pub use options::SocketOptions;
pub use region::FileRegion;
pub use socket::{DealerSocket, PubSocket, PullSocket, PushSocket, RouterSocket, SubSocket};
pub use socket_type::SocketType;
