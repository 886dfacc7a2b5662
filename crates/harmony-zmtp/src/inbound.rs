//! The socket's receive queue: connections push whole batches of messages, `recv` pops one at a
//! time. Bounded by the receive high-water mark (messages) and by a byte budget: a full queue
//! makes connections stop reading, so large messages do not pile up by the gigabyte.

use std::collections::VecDeque;
use std::sync::Mutex;

use std::task::{Context, Poll};

use tokio::sync::Notify;

use crate::message::Message;
use crate::pipe::lock;
use crate::wakers::Wakers;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Message>,
    /// Bytes of the queued messages.
    bytes: usize,
    closed: bool,
    pushers_waiting: bool,
}

/// The receive queue of one socket.
#[derive(Debug)]
pub(crate) struct Inbound {
    state: Mutex<State>,
    /// The receivers' side: messages already taken over from `state`.
    local: Mutex<VecDeque<Message>>,
    readable: Wakers,
    space: Notify,
    cap: usize,
}

/// Bytes queued before connections stop reading (one batch may overshoot it).
const BYTE_BUDGET: usize = 4 << 20;

/// The queue was closed.
#[derive(Debug)]
pub(crate) struct InboundClosed;

impl Inbound {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            local: Mutex::new(VecDeque::new()),
            readable: Wakers::default(),
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
                if st.queue.len() < self.cap && st.bytes < BYTE_BUDGET {
                    st.bytes += batch.iter().map(Message::byte_len).sum::<usize>();
                    st.queue.extend(batch.drain(..));
                    drop(st);
                    self.readable.wake_all();
                    return Ok(());
                }
                st.pushers_waiting = true;
            }
            notified.await;
        }
    }

    /// Takes one message if there is one. Receivers pop from their own side of the queue and
    /// take the shared side over in one swap when theirs is empty: one shared lock per batch.
    pub(crate) fn try_pop(&self) -> Result<Option<Message>, InboundClosed> {
        let mut local = lock(&self.local);
        if let Some(msg) = local.pop_front() {
            return Ok(Some(msg));
        }
        let mut st = lock(&self.state);
        if st.queue.is_empty() {
            return if st.closed {
                Err(InboundClosed)
            } else {
                Ok(None)
            };
        }
        std::mem::swap(&mut *local, &mut st.queue);
        st.bytes = 0;
        let wake_pushers = std::mem::take(&mut st.pushers_waiting);
        drop(st);
        if wake_pushers {
            self.space.notify_waiters();
        }
        Ok(local.pop_front())
    }

    /// Takes one message, or parks the task until there is one.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Result<Message, InboundClosed>> {
        if let Some(msg) = self.try_pop()? {
            return Poll::Ready(Ok(msg));
        }
        self.readable.register(cx.waker());
        match self.try_pop()? {
            Some(msg) => Poll::Ready(Ok(msg)),
            None => Poll::Pending,
        }
    }

    /// Closes the queue: pushers and waiting receivers fail.
    pub(crate) fn close(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        st.queue.clear();
        st.bytes = 0;
        drop(st);
        lock(&self.local).clear();
        self.readable.wake_all();
        self.space.notify_waiters();
    }
}
