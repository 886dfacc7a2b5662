//! A list of parked tasks, woken all at once. Cheaper than `Notify` on the hot path: a waker is
//! only registered when an operation would block, and waking checks one atomic first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::Waker;

use crate::pipe::lock;

/// Tasks waiting for some condition.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    any: AtomicBool,
    list: Mutex<Vec<Waker>>,
}

impl Wakers {
    /// Parks `waker` until the next [`wake_all`](Self::wake_all). The caller must re-check its
    /// condition after registering, so a wake between check and registration is not lost.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut list = lock(&self.list);
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
        self.any.store(true, Ordering::SeqCst);
    }

    /// Wakes every parked task.
    pub(crate) fn wake_all(&self) {
        if !self.any.load(Ordering::SeqCst) {
            return;
        }
        let woken: Vec<Waker> = {
            let mut list = lock(&self.list);
            self.any.store(false, Ordering::SeqCst);
            std::mem::take(&mut *list)
        };
        for w in woken {
            w.wake();
        }
    }
}
