//! The collecting side: a SUB socket that receives ZRE/LOG messages from every publishing node.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use harmony_wire::zrelog::{LogLevel, LogMessage, ZRELOG_HEADER, ZRELOG_LEVEL_HEADER};
use harmony_zmtp::{SocketOptions, SubSocket};
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use super::capture::{Capture, CaptureConfig};
use super::now_ms;
use crate::error::ServiceError;

/// Largest ZRE/LOG frame accepted.
const MAX_LOG_FRAME: usize = 1 << 20;
/// Messages decoded per wake-up before the capture is flushed.
const BATCH: usize = 512;

/// What a collector keeps and where it writes.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// The most verbose level wanted; publishers send nothing beyond it.
    pub level: LogLevel,
    /// How many of the last events are kept in memory.
    pub tail: usize,
    /// Capture to files, if set.
    pub capture: Option<CaptureConfig>,
    /// Capacity of the listeners' channel; a listener that falls further behind loses the
    /// oldest events (it is told how many).
    pub listeners: usize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            tail: 1000,
            capture: None,
            listeners: 4096,
        }
    }
}

/// One received log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The publishing node's name (from the extension; else its rfc/20 node id in hex).
    pub node: String,
    /// When the collector received it, ms since the Unix epoch.
    pub received: u64,
    /// The message.
    pub msg: LogMessage,
}

impl LogEntry {
    fn new(msg: LogMessage) -> Self {
        let node = match &msg.ext {
            Some(e) if !e.name.is_empty() => e.name.clone(),
            _ => format!("{:04x}", msg.node),
        };
        Self {
            node,
            received: now_ms(),
            msg,
        }
    }

    /// `time LEVEL node target: text key=value ...`
    pub fn line(&self) -> String {
        let mut out = format!(
            "{} {:<7} {}",
            self.msg.time,
            self.msg.level.as_str(),
            self.node
        );
        if let Some(e) = &self.msg.ext {
            if !e.target.is_empty() {
                out.push(' ');
                out.push_str(&e.target);
                out.push(':');
            }
        }
        out.push(' ');
        out.push_str(self.msg.text());
        if let Some(e) = &self.msg.ext {
            for (k, v) in &e.fields {
                out.push_str(&format!(" {k}={v}"));
            }
        }
        out
    }

    /// Every field as one JSON object.
    pub fn json(&self) -> Value {
        let ext = self.msg.ext.clone().unwrap_or_default();
        json!({
            "kind": "LOG",
            "node": self.node,
            "node_id": self.msg.node,
            "peer_id": self.msg.peer,
            "level": self.msg.level.as_str(),
            "event": self.msg.event,
            "time": self.msg.time,
            "received": self.received,
            "text": self.msg.text(),
            "target": ext.target,
            "span": ext.span,
            "fields": Value::Object(ext.fields.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
            "sequence": ext.sequence,
        })
    }
}

/// What a collector has counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectorStats {
    /// Events received and decoded.
    pub received: u64,
    /// Frames that were not ZRE/LOG messages (skipped).
    pub malformed: u64,
    /// Events lost between publishers and here (gaps in their per-level numbering).
    pub lost: u64,
    /// Events the publishers dropped from their own queues (their latest counts, summed).
    pub dropped_at_publishers: u64,
    /// Capture write failures.
    pub capture_errors: u64,
}

#[derive(Debug, Default)]
struct State {
    tail: VecDeque<Arc<LogEntry>>,
    stats: CollectorStats,
    /// Per publisher, by name then rfc/20 node id.
    publishers: HashMap<String, HashMap<u16, Publisher>>,
}

/// What a collector tracks of one publisher.
#[derive(Debug, Default)]
struct Publisher {
    /// Next expected sequence per level.
    expected: [Option<u32>; 5],
    /// Its latest `dropped` count.
    dropped: u64,
}

/// A running collector. Add [`LogCollector::headers`] to the node that advertises it.
#[derive(Debug)]
pub struct LogCollector {
    endpoint: String,
    level: LogLevel,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Arc<LogEntry>>,
    task: Option<(JoinHandle<()>, oneshot::Sender<()>)>,
    capture_file: Option<std::path::PathBuf>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    fn accept(&mut self, entry: &Arc<LogEntry>, tail: usize) {
        self.stats.received += 1;
        if let Some(ext) = &entry.msg.ext {
            let by_node = match self.publishers.get_mut(ext.name.as_str()) {
                Some(m) => m,
                None => self.publishers.entry(ext.name.clone()).or_default(),
            };
            let p = by_node.entry(entry.msg.node).or_default();
            let slot = &mut p.expected[usize::from(entry.msg.level.to_u8() - 1)];
            // Ahead of what we expected: the difference was lost. Behind: the publisher
            // restarted its numbering.
            if let Some(expected) = slot.replace(ext.sequence.wrapping_add(1)) {
                if ext.sequence > expected {
                    self.stats.lost += u64::from(ext.sequence - expected);
                }
            }
            let old = std::mem::replace(&mut p.dropped, ext.dropped);
            self.stats.dropped_at_publishers =
                (self.stats.dropped_at_publishers + ext.dropped).saturating_sub(old);
        }
        if tail > 0 {
            if self.tail.len() == tail {
                self.tail.pop_front();
            }
            self.tail.push_back(entry.clone());
        }
    }
}

impl LogCollector {
    /// Binds the SUB socket on `address` (the node's interface address), subscribed to every
    /// level up to `config.level`, and starts receiving.
    pub async fn start(address: IpAddr, config: CollectorConfig) -> Result<Self, ServiceError> {
        let host = match address {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let sub = SubSocket::new(SocketOptions::default().max_msg_size(MAX_LOG_FRAME));
        for level in LogLevel::ALL.into_iter().filter(|l| *l <= config.level) {
            sub.subscribe(Bytes::copy_from_slice(&LogMessage::topic(level)))?;
        }
        let endpoint = sub.bind(&format!("tcp://{host}:0")).await?.to_string();
        let mut capture = config.capture.clone().map(Capture::open).transpose()?;
        let capture_file = capture.as_ref().map(Capture::current);
        let state = Arc::new(Mutex::new(State::default()));
        let (events, _) = broadcast::channel(config.listeners.max(1));
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let task = {
            let state = state.clone();
            let events = events.clone();
            let tail = config.tail;
            tokio::spawn(async move {
                loop {
                    let first = tokio::select! {
                        m = sub.recv() => m,
                        _ = &mut stop_rx => break,
                    };
                    let Ok(first) = first else { break };
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match sub.try_recv() {
                            Ok(Some(m)) => batch.push(m),
                            _ => break,
                        }
                    }
                    for m in batch {
                        let decoded = match m.frames() {
                            [frame] => LogMessage::decode(frame, MAX_LOG_FRAME),
                            _ => Err(harmony_wire::WireError::Invalid("ZRE/LOG frame count")),
                        };
                        let msg = match decoded {
                            Ok(msg) => msg,
                            Err(e) => {
                                tracing::debug!(error = %e, "not a ZRE/LOG message, skipped");
                                lock(&state).stats.malformed += 1;
                                continue;
                            }
                        };
                        let entry = Arc::new(LogEntry::new(msg));
                        lock(&state).accept(&entry, tail);
                        if let Some(c) = capture.as_mut() {
                            if c.write_line(&entry.json().to_string()).is_err() {
                                lock(&state).stats.capture_errors += 1;
                            }
                        }
                        if events.receiver_count() > 0 {
                            let _ = events.send(entry);
                        }
                    }
                    if let Some(c) = capture.as_mut() {
                        if c.flush().is_err() {
                            lock(&state).stats.capture_errors += 1;
                        }
                    }
                }
                if let Some(c) = capture.as_mut() {
                    let _ = c.flush();
                }
                sub.close().await;
            })
        };
        Ok(Self {
            endpoint,
            level: config.level,
            state,
            events,
            task: Some((task, stop_tx)),
            capture_file,
        })
    }

    /// The endpoint publishers connect to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The HELLO headers that advertise this collector: `X-ZRELOG` and `X-ZRELOG-LEVEL`.
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            (ZRELOG_HEADER.to_owned(), self.endpoint.clone()),
            (
                ZRELOG_LEVEL_HEADER.to_owned(),
                self.level.to_u8().to_string(),
            ),
        ]
    }

    /// Every event from now on (a listener that falls behind is told how many it missed).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogEntry>> {
        self.events.subscribe()
    }

    /// The last events kept in memory, oldest first.
    pub fn tail(&self) -> Vec<Arc<LogEntry>> {
        lock(&self.state).tail.iter().cloned().collect()
    }

    /// What was counted so far.
    pub fn stats(&self) -> CollectorStats {
        lock(&self.state).stats.clone()
    }

    /// The capture file opened at start, if capturing.
    pub fn capture_file(&self) -> Option<&std::path::Path> {
        self.capture_file.as_deref()
    }

    /// Stops receiving and flushes the capture.
    pub async fn stop(&mut self) {
        if let Some((task, stop)) = self.task.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}
