//! The node's connections as its sockets' monitors see them: the driver learns at once that
//! a peer's connection dropped, and the application may watch every event (`--verbose`).

use harmony_zmtp::{Monitor, SocketEvent};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Link events waiting for the driver, and for the application, before more are dropped.
pub(crate) const LINK_QUEUE: usize = 1024;

/// A socket monitor event of one of the node's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    /// The peer whose outbound connection this is; `None` for the node's inbox.
    pub peer: Option<Uuid>,
    /// What happened.
    pub event: SocketEvent,
}

/// A link event as the driver gets it: with the number of the connection (socket) it came
/// from, so that the late events of a peer's closed connection are not taken for its new one.
#[derive(Debug)]
pub(crate) struct Tagged {
    /// The connection's number (0: the inbox).
    pub(crate) conn: u64,
    /// The event.
    pub(crate) link: LinkEvent,
}

/// Moves a socket's monitor events to the driver, tagged with the peer and the connection's
/// number, until the socket closes. The monitor drops events rather than slow the socket;
/// this task only waits for the driver, which reads them in its loop.
pub(crate) fn forward(
    mut monitor: Monitor,
    peer: Option<Uuid>,
    conn: u64,
    to: mpsc::Sender<Tagged>,
) {
    tokio::spawn(async move {
        while let Some(event) = monitor.recv().await {
            let link = LinkEvent { peer, event };
            if to.send(Tagged { conn, link }).await.is_err() {
                return;
            }
        }
        if monitor.dropped() > 0 {
            tracing::debug!(peer = ?peer, dropped = monitor.dropped(), "link events dropped");
        }
    });
}
