//! The socket's receive queue: connections push whole batches of messages, `recv` pops one at a
//! time. Bounded by the receive high-water mark: a full queue makes connections stop reading.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::message::Message;
use crate::pipe::lock;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Message>,
    closed: bool,
    pushers_waiting: bool,
}

/// The receive queue of one socket.
#[derive(Debug)]
pub(crate) struct Inbound {
    state: Mutex<State>,
    readable: Notify,
    space: Notify,
    cap: usize,
}

/// The queue was closed.
#[derive(Debug)]
pub(crate) struct InboundClosed;

impl Inbound {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            readable: Notify::new(),
            space: Notify::new(),
            cap: cap.max(1),
        }
    }

    /// Moves a batch in, waiting while the queue is at its mark. A batch may overshoot the mark
    /// (by at most one read buffer's worth per connection).
    pub(crate) async fn push_batch(&self, batch: &mut Vec<Message>) -> Result<(), InboundClosed> {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = lock(&self.state);
                if st.closed {
                    batch.clear();
                    return Err(InboundClosed);
                }
                if st.queue.len() < self.cap {
                    st.queue.extend(batch.drain(..));
                    drop(st);
                    // Wake every waiting receiver; the permit covers one that is about to wait.
                    self.readable.notify_waiters();
                    self.readable.notify_one();
                    return Ok(());
                }
                st.pushers_waiting = true;
            }
            notified.await;
        }
    }

    /// Takes one message if there is one.
    pub(crate) fn try_pop(&self) -> Result<Option<Message>, InboundClosed> {
        let mut st = lock(&self.state);
        let msg = st.queue.pop_front();
        if msg.is_none() && st.closed {
            return Err(InboundClosed);
        }
        let wake_pushers = st.pushers_waiting && st.queue.len() < self.cap;
        if wake_pushers {
            st.pushers_waiting = false;
        }
        drop(st);
        if wake_pushers {
            self.space.notify_waiters();
        }
        Ok(msg)
    }

    /// Waits for a message.
    pub(crate) async fn pop(&self) -> Result<Message, InboundClosed> {
        loop {
            if let Some(msg) = self.try_pop()? {
                return Ok(msg);
            }
            self.readable.notified().await;
        }
    }

    /// Closes the queue: pushers and waiting receivers fail.
    pub(crate) fn close(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        st.queue.clear();
        drop(st);
        self.readable.notify_waiters();
        self.readable.notify_one();
        self.space.notify_waiters();
    }
}
