//! The sans-IO state machines of the three roles. Each is fed peer changes, decoded messages
//! and the time, and hands back messages to send ([`Transmit`]), events for its application,
//! and when it next wants [`handle_timeout`](ClientCore::handle_timeout) called.
//! No I/O, no clock of their own, ordered maps only: the same inputs give the same outputs.

mod client;
mod collector;
mod worker;

use std::time::Duration;

use harmony_wire::pipeline::PipelineMessage;
use uuid::Uuid;

pub use client::{ClientCore, ClientEvent};
pub use collector::{CollectorCore, CollectorEvent};
pub use worker::{Job, WorkerCore};

/// Most tasks in one batch; a START declaring more is refused.
pub const MAX_BATCH: u32 = 1 << 24;

/// A message for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer (its ZRE UUID).
    pub to: Uuid,
    /// The message.
    pub message: PipelineMessage,
}

/// What a peer of the pipeline does, from its ZRE headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Role {
    /// Submits batches (the Guide's ventilator).
    Client,
    /// Runs tasks.
    Worker,
    /// Takes results and reports to clients.
    Collector,
}

impl Role {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Worker => "worker",
            Self::Collector => "collector",
        }
    }

    /// The role a header value names.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "client" => Some(Self::Client),
            "worker" => Some(Self::Worker),
            "collector" => Some(Self::Collector),
            _ => None,
        }
    }
}

/// The protocol's timers (SPEC.md, "Timers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Workers repeat CREDIT, clients repeat START/END this often (default 1 s).
    pub heartbeat: Duration,
    /// A worker not heard from for this long is dead to the client (default 5 s).
    pub peer_timeout: Duration,
    /// A TASK the worker has not reported seeing after this long is lost (default 3 s).
    pub lost_after: Duration,
    /// A task sent whose result is not acknowledged after this long is sent again (default 60 s).
    pub task_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
            lost_after: Duration::from_secs(3),
            task_timeout: Duration::from_secs(60),
        }
    }
}

/// A set of task numbers `0..size`, one bit each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskSet {
    size: u32,
    words: Vec<u64>,
}

impl TaskSet {
    pub(crate) fn new(size: u32) -> Self {
        Self {
            size,
            words: vec![0; (size as usize).div_ceil(64)],
        }
    }

    pub(crate) fn contains(&self, task: u32) -> bool {
        task < self.size
            && self
                .words
                .get(task as usize / 64)
                .is_some_and(|w| w & (1 << (task % 64)) != 0)
    }

    /// Adds `task`; true when it was not there.
    pub(crate) fn insert(&mut self, task: u32) -> bool {
        if task >= self.size {
            return false;
        }
        let Some(word) = self.words.get_mut(task as usize / 64) else {
            return false;
        };
        let bit = 1 << (task % 64);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }

    pub(crate) fn remove(&mut self, task: u32) {
        if let Some(word) = self.words.get_mut(task as usize / 64) {
            *word &= !(1 << (task % 64));
        }
    }

    /// The set as ascending half-open ranges.
    pub(crate) fn ranges(&self) -> Vec<(u32, u32)> {
        let size = self.size;
        let mut out = Vec::new();
        let mut start = None;
        for task in 0..size {
            match (self.contains(task), start) {
                (true, None) => start = Some(task),
                (false, Some(s)) => {
                    out.push((s, task));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            out.push((s, size));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_set_ranges() {
        let mut set = TaskSet::new(130);
        for t in [0, 1, 2, 64, 65, 129] {
            assert!(set.insert(t));
        }
        assert!(!set.insert(1));
        assert!(!set.insert(130), "out of range");
        assert_eq!(set.ranges(), vec![(0, 3), (64, 66), (129, 130)]);
        set.remove(64);
        assert_eq!(set.ranges(), vec![(0, 3), (65, 66), (129, 130)]);
    }
}
