//! The events of one node on their way to Python: a bounded queue filled by a pump task on the
//! tokio runtime, emptied by `recv` (which waits on a condition variable, GIL released).
//!
//! Readiness is mirrored on a Unix socketpair: its read end holds one byte exactly while the
//! queue is not empty (both changes happen under the queue's lock), so `select`/`poll`-style
//! waiters (`asyncio`'s `add_reader`, `zmq.Poller`) see a level-triggered "events waiting".

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use harmony_node::{Event, Node};
use tokio::sync::Notify;

/// Most events waiting in an inbox; past it the pump stops taking events from the node (whose
/// own bounded queue then holds the rest), so a Python program that does not read is not
/// buried in memory.
pub const CAPACITY: usize = 16 * 1024;
/// Most events moved from the node to the inbox in one go.
const BATCH: usize = 256;

/// What the application is waiting on: events, or the end.
#[derive(Debug)]
pub struct Inbox {
    state: Mutex<State>,
    ready: Condvar,
    /// Signalled when the inbox has room again after being full.
    space: Notify,
    signal_r: UnixStream,
    signal_w: UnixStream,
}

#[derive(Debug, Default)]
struct State {
    events: VecDeque<Event>,
    /// The node has stopped and handed out its last event.
    closed: bool,
    /// Calls waiting on the node's driver (queries, stop): while any is, the pump takes events
    /// past [`CAPACITY`], because a driver with a full event queue answers nothing.
    waiting: usize,
}

/// The outcome of waiting for an event.
#[derive(Debug)]
pub enum Wait {
    /// The next event.
    Event(Event),
    /// Nothing arrived in time.
    Timeout,
    /// The node has stopped and every event was read.
    Closed,
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> std::io::Result<Self> {
        let (signal_r, signal_w) = UnixStream::pair()?;
        signal_r.set_nonblocking(true)?;
        signal_w.set_nonblocking(true)?;
        Ok(Self {
            state: Mutex::default(),
            ready: Condvar::new(),
            space: Notify::new(),
            signal_r,
            signal_w,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The descriptor that is readable while events wait.
    pub fn fileno(&self) -> RawFd {
        self.signal_r.as_raw_fd()
    }

    /// How many events wait.
    pub fn pending(&self) -> usize {
        self.lock().events.len()
    }

    /// Whether an event waits.
    pub fn has_events(&self) -> bool {
        !self.lock().events.is_empty()
    }

    /// Whether the node has stopped and every event was read.
    pub fn finished(&self) -> bool {
        let state = self.lock();
        state.closed && state.events.is_empty()
    }

    fn push(&self, events: &mut Vec<Event>) {
        let mut state = self.lock();
        let was_empty = state.events.is_empty();
        state.events.extend(events.drain(..));
        if was_empty && !state.events.is_empty() {
            // One byte in a fresh socketpair buffer cannot block.
            let _ = (&self.signal_w).write(&[1]);
        }
        drop(state);
        self.ready.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Whether the pump should wait for the application to read.
    fn full(&self) -> bool {
        let state = self.lock();
        state.events.len() >= CAPACITY && state.waiting == 0
    }

    /// Lifts the bound while the returned guard lives (see `State::waiting`).
    pub fn unbounded(&self) -> Unbounded<'_> {
        self.lock().waiting += 1;
        self.space.notify_one();
        Unbounded(self)
    }

    /// Waits up to `timeout` for the node to stop and hand out its last event; true if it has.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .ready
            .wait_timeout_while(state, timeout, |s| !s.closed)
            .unwrap_or_else(PoisonError::into_inner);
        state.closed
    }

    fn take(&self, state: &mut State) -> Option<Event> {
        let event = state.events.pop_front()?;
        if state.events.is_empty() {
            let mut sink = [0u8; 16];
            while matches!((&self.signal_r).read(&mut sink), Ok(n) if n > 0) {}
        }
        if state.events.len() + 1 == CAPACITY {
            self.space.notify_one();
        }
        Some(event)
    }

    /// The next event if one waits (never blocks).
    pub fn try_pop(&self) -> Option<Event> {
        let mut state = self.lock();
        self.take(&mut state)
    }

    /// Waits up to `timeout` for the next event. Call it without the GIL.
    pub fn wait(&self, timeout: Duration) -> Wait {
        let state = self.lock();
        let (mut state, _) = self
            .ready
            .wait_timeout_while(state, timeout, |s| s.events.is_empty() && !s.closed)
            .unwrap_or_else(PoisonError::into_inner);
        match self.take(&mut state) {
            Some(event) => Wait::Event(event),
            None if state.closed => Wait::Closed,
            None => Wait::Timeout,
        }
    }
}

/// Keeps an inbox unbounded while alive (see [`Inbox::unbounded`]).
#[derive(Debug)]
pub struct Unbounded<'a>(&'a Inbox);

impl Drop for Unbounded<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

/// The node itself, shared by the Python object (commands, queries) and the pump (events).
#[derive(Debug)]
pub struct NodeCell {
    node: Mutex<Option<Node>>,
    /// Signalled whenever the application lets go of the node, for a pump that found it busy.
    released: Notify,
}

/// The node, locked by the application; lets the pump know when dropped.
pub struct Held<'a> {
    guard: Option<MutexGuard<'a, Option<Node>>>,
    cell: &'a NodeCell,
}

impl Held<'_> {
    /// The node; `None` once it was taken away to be dropped.
    pub fn node(&mut self) -> Option<&mut Node> {
        self.guard.as_mut().and_then(|g| g.as_mut())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Unlock first, then wake the pump, so it finds the node free.
        drop(self.guard.take());
        self.cell.released.notify_one();
    }
}

impl NodeCell {
    /// Wraps a started node.
    pub fn new(node: Node) -> Self {
        Self {
            node: Mutex::new(Some(node)),
            released: Notify::new(),
        }
    }

    /// Locks the node, waiting if another thread holds it.
    pub fn lock(&self) -> Held<'_> {
        Held {
            guard: Some(self.node.lock().unwrap_or_else(PoisonError::into_inner)),
            cell: self,
        }
    }

    /// Locks the node if nobody holds it.
    pub fn try_lock(&self) -> Option<Held<'_>> {
        let guard = match self.node.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(Held {
            guard: Some(guard),
            cell: self,
        })
    }

    /// Takes the node out (to stop it when the Python object goes away).
    pub fn take(&self) -> Option<Node> {
        self.lock().guard.as_mut().and_then(|g| g.take())
    }
}

enum Step {
    Events,
    Busy,
    Closed,
}

/// Moves events from the node to the inbox until the node has stopped, in batches, keeping the
/// inbox bounded. Never waits on the node's lock: when the application holds it, the pump
/// waits for [`NodeCell`]'s release signal instead.
pub async fn pump(cell: Arc<NodeCell>, inbox: Arc<Inbox>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        loop {
            let space = inbox.space.notified();
            if !inbox.full() {
                break;
            }
            space.await;
        }
        let released = cell.released.notified();
        let step = std::future::poll_fn(|cx| {
            let guard = match cell.node.try_lock() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Poll::Ready(Step::Busy),
            };
            let mut guard = guard;
            let Some(node) = guard.as_mut() else {
                return Poll::Ready(Step::Closed);
            };
            match node.poll_next_event(cx) {
                Poll::Ready(Some(event)) => {
                    batch.push(event);
                    while batch.len() < BATCH {
                        match node.try_next_event() {
                            Some(event) => batch.push(event),
                            None => break,
                        }
                    }
                    Poll::Ready(Step::Events)
                }
                Poll::Ready(None) => Poll::Ready(Step::Closed),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match step {
            Step::Events => inbox.push(&mut batch),
            Step::Busy => released.await,
            Step::Closed => {
                inbox.close();
                return;
            }
        }
    }
}
