//! Frame buffers recycled from one chunk to the next. A chunk's frame lives until the socket
//! has written it; a fresh megabyte for every chunk costs the kernel page faults and zeroed
//! pages each time, a recycled one costs nothing.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;

type Free = Mutex<Vec<Vec<u8>>>;

/// Buffers waiting to be used again, at most `max` of them (memory stays bounded).
#[derive(Debug)]
pub(crate) struct BufferPool {
    free: Arc<Free>,
    max: usize,
}

impl BufferPool {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            free: Arc::new(Mutex::new(Vec::new())),
            max,
        }
    }

    /// An empty buffer of at least `capacity` bytes.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        let recycled = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match recycled {
            Some(mut buf) => {
                buf.clear();
                buf.reserve(capacity);
                buf
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// `buf` as `Bytes` that give the buffer back when the last of them is dropped.
    pub(crate) fn freeze(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            free: Arc::downgrade(&self.free),
            max: self.max,
        })
    }
}

struct Pooled {
    buf: Vec<u8>,
    free: Weak<Free>,
    max: usize,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(free) = self.free.upgrade() {
            let mut free = free.lock().unwrap_or_else(PoisonError::into_inner);
            if free.len() < self.max {
                free.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_once_their_bytes_are_dropped() {
        let pool = BufferPool::new(1);
        let mut buf = pool.take(1000);
        buf.extend_from_slice(b"frame");
        let ptr = buf.as_ptr();
        let bytes = pool.freeze(buf);
        let copy = bytes.clone();
        drop(bytes);
        assert_eq!(&copy[..], b"frame");
        // Still in use: a new buffer.
        let fresh = pool.take(10);
        assert_ne!(fresh.as_ptr(), ptr);
        drop(copy);
        let again = pool.take(10);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty() && again.capacity() >= 1000);
        // At most `max` wait: the second one returned is freed.
        let (a, b) = (pool.freeze(again), pool.freeze(pool.take(10)));
        drop((a, b));
        assert_eq!(pool.free.lock().unwrap().len(), 1);
    }
}
