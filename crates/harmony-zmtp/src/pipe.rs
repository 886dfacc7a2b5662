//! A per-peer outgoing queue, bounded by the send high-water mark and drained in bulk by the
//! connection's writer: producers take one uncontended lock per message, the writer one per batch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use harmony_wire::zmtp::Frame;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::message::Message;
use crate::region::FileRegion;
use crate::subscription::Subscriptions;

/// One item for the writer.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// An application message (counts against the high-water mark).
    Message(Message),
    /// A protocol frame of this connection (PONG, SUBSCRIBE...): bypasses the high-water mark
    /// and is dropped when the connection ends.
    Control(Frame),
    /// An application message whose last frame ends in a file region (counts as a message).
    Region(Message, FileRegion),
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    messages: usize,
    /// Protocol frames among `items`.
    controls: usize,
    writer_waiting: bool,
    /// The writer took a batch and has not finished writing it.
    writing: bool,
}

/// Outgoing queue and per-peer state of one peer (one connection, or one connected endpoint
/// across its reconnects).
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) id: u64,
    hwm: usize,
    queue: Mutex<Queue>,
    writer: Notify,
    idle: Notify,
    /// PUB: the peer's subscriptions.
    pub(crate) subs: Mutex<Subscriptions>,
    /// The current connection spoke ZMTP 3.1 (SUBSCRIBE/CANCEL as commands).
    pub(crate) v31: AtomicBool,
    /// Cancels the current connection (ROUTER handover).
    pub(crate) conn: Mutex<Option<CancellationToken>>,
    /// ROUTER: the routing identity of the current connection.
    pub(crate) identity: Mutex<Bytes>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks cannot leave the data inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pipe {
    pub(crate) fn new(id: u64, hwm: usize) -> Self {
        Self {
            id,
            hwm: hwm.max(1),
            queue: Mutex::new(Queue::default()),
            writer: Notify::new(),
            idle: Notify::new(),
            subs: Mutex::new(Subscriptions::default()),
            v31: AtomicBool::new(true),
            conn: Mutex::new(None),
            identity: Mutex::new(Bytes::new()),
        }
    }

    /// Queues a message unless the queue is at its high-water mark.
    pub(crate) fn try_push(&self, msg: Message) -> Result<(), Message> {
        self.try_push_with(msg, None)
    }

    /// As [`Pipe::try_push`], with the last frame ending in `region` if there is one.
    pub(crate) fn try_push_with(
        &self,
        msg: Message,
        region: Option<FileRegion>,
    ) -> Result<(), Message> {
        let mut q = lock(&self.queue);
        if q.messages >= self.hwm {
            return Err(msg);
        }
        q.messages += 1;
        q.items.push_back(match region {
            Some(region) => Outgoing::Region(msg, region),
            None => Outgoing::Message(msg),
        });
        self.wake(q);
        Ok(())
    }

    /// Queues a protocol frame of our own (never refused).
    pub(crate) fn push_control(&self, frame: Frame) {
        let mut q = lock(&self.queue);
        q.controls += 1;
        q.items.push_back(Outgoing::Control(frame));
        self.wake(q);
    }

    /// Queues a reply the peer asked for (a PONG), unless the queue already holds more than
    /// `limit` protocol frames: a peer that sends PINGs but never reads cannot grow it.
    pub(crate) fn push_reply(&self, frame: Frame, limit: usize) -> bool {
        let mut q = lock(&self.queue);
        if q.controls >= limit {
            return false;
        }
        q.controls += 1;
        q.items.push_back(Outgoing::Control(frame));
        self.wake(q);
        true
    }

    fn wake(&self, mut q: MutexGuard<'_, Queue>) {
        if q.writer_waiting {
            q.writer_waiting = false;
            drop(q);
            self.writer.notify_one();
        }
    }

    /// Moves everything queued into `into` (empty on entry), waiting until there is something.
    /// Returns whether the queue was at its high-water mark (senders may be waiting for space).
    pub(crate) async fn drain(&self, into: &mut VecDeque<Outgoing>) -> bool {
        loop {
            {
                let mut q = lock(&self.queue);
                if !q.items.is_empty() {
                    let was_full = q.messages >= self.hwm;
                    std::mem::swap(&mut q.items, into);
                    q.messages = 0;
                    q.controls = 0;
                    q.writing = true;
                    return was_full;
                }
                q.writer_waiting = true;
            }
            self.writer.notified().await;
        }
    }

    /// The writer finished writing its batch.
    pub(crate) fn written(&self) {
        let mut q = lock(&self.queue);
        q.writing = false;
        if q.items.is_empty() {
            drop(q);
            self.idle.notify_waiters();
        }
    }

    /// Drops protocol frames left over from a connection that ended.
    pub(crate) fn purge_control(&self) {
        let mut q = lock(&self.queue);
        q.items.retain(|i| !matches!(i, Outgoing::Control(_)));
        q.controls = 0;
        q.writing = false;
    }

    /// Drops everything queued (a peer that is gone for good).
    pub(crate) fn clear(&self) {
        let mut q = lock(&self.queue);
        q.items.clear();
        q.messages = 0;
        q.controls = 0;
        q.writing = false;
        drop(q);
        self.idle.notify_waiters();
    }

    /// Ends the pipe's connection at once, dropping what is queued for it (a ROUTER route
    /// taken over by another connection, or closed by the application).
    pub(crate) fn disconnect(&self) {
        if let Some(token) = lock(&self.conn).take() {
            token.cancel();
        }
        self.clear();
    }

    /// Waits until everything queued has been written.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let q = lock(&self.queue);
                if q.items.is_empty() && !q.writing {
                    return;
                }
            }
            notified.await;
        }
    }

    pub(crate) fn set_v31(&self, v31: bool) {
        self.v31.store(v31, Ordering::Relaxed);
    }

    pub(crate) fn is_v31(&self) -> bool {
        self.v31.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_and_drained_in_bulk() {
        let p = Pipe::new(1, 2);
        assert!(p.try_push(Message::from("a")).is_ok());
        assert!(p.try_push(Message::from("b")).is_ok());
        assert!(p.try_push(Message::from("c")).is_err());
        p.push_control(Frame::command(Bytes::from_static(b"\x04PONG")));
        let mut out = VecDeque::new();
        assert!(p.drain(&mut out).await);
        assert_eq!(out.len(), 3);
        out.clear();
        assert!(p.try_push(Message::from("d")).is_ok());
        p.written();
        assert!(!p.drain(&mut out).await);
        p.written();
        p.wait_idle().await;
    }
}
