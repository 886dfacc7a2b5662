//! The publishing side: a `tracing` layer feeding a bounded queue, and the task that numbers,
//! encodes and publishes each event to the collectors found by discovery.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use harmony_node::{Event, Uuid};
use harmony_wire::zrelog::{
    endpoint_hash, LogExtension, LogLevel, LogMessage, ZRELOG_HEADER, ZRELOG_LEVEL_HEADER,
};
use harmony_zmtp::{Message, PubSocket, SocketOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::now_ms;
use crate::error::ServiceError;

/// The level a collector gets when its HELLO names none.
const DEFAULT_COLLECTOR_LEVEL: LogLevel = LogLevel::Info;
/// Messages the PUB socket queues per collector before it drops (a collector that stalls).
const PUB_HWM: usize = 10_000;
/// Longest wait for a new collector's connection before publishing anyway.
const CONNECT_WAIT: Duration = Duration::from_secs(1);
/// A collector subscribes in its first message after the handshake; PUB drops what matches no
/// subscription, so queued events wait this long more after a new connection.
const SUBSCRIBE_GRACE: Duration = Duration::from_millis(20);

/// One event as the layer saw it, before numbering and encoding.
#[derive(Debug)]
struct Record {
    level: LogLevel,
    time: u64,
    target: String,
    span: String,
    text: String,
    fields: Vec<(String, String)>,
    /// The rfc/20 event code, from a field named `event` (`event = "ENTER"`).
    event: u8,
}

/// State shared by the layer (any thread) and the publisher.
#[derive(Debug)]
struct Shared {
    /// The most verbose level any known collector wants; 0 while there is none.
    max_level: AtomicU8,
    /// Events dropped because the queue was full.
    dropped: AtomicU64,
    /// Events published.
    sent: AtomicU64,
    /// Distinct endpoints of the collectors known now.
    expected: AtomicUsize,
    queue: mpsc::Sender<Record>,
}

/// The `tracing` layer: add it to a subscriber (`registry().with(layer)`); it publishes the
/// events that a collector wants, once [`LogPublisher::start`] has run.
#[derive(Debug, Clone)]
pub struct LogLayer {
    shared: Arc<Shared>,
}

/// Finds collectors in node events and publishes the layer's events to them.
#[derive(Debug)]
pub struct LogPublisher {
    shared: Arc<Shared>,
    /// Most verbose level this node publishes at all (`--publish-logs LEVEL`).
    ceiling: LogLevel,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    pending: Option<mpsc::Receiver<Record>>,
    socket: Option<Arc<PubSocket>>,
    /// Collectors by the peer that advertised them: endpoint and level.
    collectors: HashMap<Uuid, (String, LogLevel)>,
    connected: HashSet<String>,
    task: Option<(JoinHandle<()>, oneshot::Sender<()>)>,
}

/// A layer and its publisher, with a queue of `capacity` events between them; nothing above
/// `ceiling` is ever published.
pub fn publisher(capacity: usize, ceiling: LogLevel) -> (LogLayer, LogPublisher) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let shared = Arc::new(Shared {
        max_level: AtomicU8::new(0),
        dropped: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        expected: AtomicUsize::new(0),
        queue: tx,
    });
    let publisher = LogPublisher {
        shared: shared.clone(),
        ceiling,
        inner: Mutex::new(Inner {
            pending: Some(rx),
            socket: None,
            collectors: HashMap::new(),
            connected: HashSet::new(),
            task: None,
        }),
    };
    (LogLayer { shared }, publisher)
}

fn level_of(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warning,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

/// Events the publishing path itself causes (socket chatter, our own module): publishing them
/// would feed back into itself.
fn is_feedback(target: &str, level: LogLevel) -> bool {
    level >= LogLevel::Debug
        && (target.starts_with("harmony_zmtp") || target.starts_with("harmony_services::log"))
}

#[derive(Default)]
struct Fields {
    text: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.push_str(value);
        } else {
            self.fields
                .push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            self.fields
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let level = level_of(event.metadata().level());
        if level.to_u8() > self.shared.max_level.load(Ordering::Relaxed) {
            return;
        }
        let target = event.metadata().target();
        if is_feedback(target, level) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = ctx
            .event_span(event)
            .map(|s| s.name().to_owned())
            .unwrap_or_default();
        let record = Record {
            level,
            time: now_ms(),
            target: target.to_owned(),
            span,
            event: fields
                .fields
                .iter()
                .find(|(k, _)| k == "event")
                .map_or(harmony_wire::zrelog::event::NONE, |(_, v)| {
                    harmony_wire::zrelog::event::from_name(v)
                }),
            text: fields.text,
            fields: fields.fields,
        };
        if self.shared.queue.try_send(record).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `text` cut to at most 255 bytes on a character boundary (a ZRE/LOG `string`).
fn short(mut text: String) -> String {
    if text.len() > 255 {
        let mut end = 255;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl LogPublisher {
    /// Starts publishing as the node `name` whose inbox is `endpoint` (the rfc/20 node id is
    /// its hash). Call once; collectors already known are connected now.
    pub async fn start(&self, name: &str, endpoint: &str) -> Result<(), ServiceError> {
        let (socket, known) = self.spawn(name, endpoint)?;
        for endpoint in known {
            socket.connect(&endpoint)?;
        }
        Ok(())
    }

    fn spawn(
        &self,
        name: &str,
        endpoint: &str,
    ) -> Result<(Arc<PubSocket>, Vec<String>), ServiceError> {
        let mut inner = lock(&self.inner);
        let Some(mut rx) = inner.pending.take() else {
            return Err(ServiceError::Invalid(
                "the log publisher already started".into(),
            ));
        };
        let socket = Arc::new(PubSocket::new(SocketOptions::default().send_hwm(PUB_HWM)));
        inner.socket = Some(socket.clone());
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let shared = self.shared.clone();
        let node = endpoint_hash(endpoint);
        let name = short(name.to_owned());
        let task_socket = socket.clone();
        let task = tokio::spawn(async move {
            let socket = task_socket;
            let mut sequence = [0u32; 5];
            let mut buf = BytesMut::new();
            let mut batch = Vec::with_capacity(256);
            loop {
                let n = tokio::select! {
                    n = rx.recv_many(&mut batch, 256) => n,
                    _ = &mut stop_rx => {
                        // Publish what is queued, then stop.
                        rx.close();
                        while let Ok(r) = rx.try_recv() { batch.push(r); }
                        usize::MAX
                    }
                };
                let expected = shared.expected.load(Ordering::Relaxed);
                if n != usize::MAX && socket.peer_count() < expected {
                    // A collector is being connected: hold the queue (bounded) until it can
                    // hear us, rather than publish into no subscription.
                    let _ =
                        tokio::time::timeout(CONNECT_WAIT, socket.wait_for_peers(expected)).await;
                    tokio::time::sleep(SUBSCRIBE_GRACE).await;
                }
                for r in batch.drain(..) {
                    let seq = &mut sequence[usize::from(r.level.to_u8() - 1)];
                    *seq = seq.wrapping_add(1);
                    let ext = LogExtension {
                        name: name.clone(),
                        target: short(r.target),
                        span: short(r.span),
                        fields: r.fields.into_iter().map(|(k, v)| (short(k), v)).collect(),
                        sequence: *seq,
                        dropped: shared.dropped.load(Ordering::Relaxed),
                        message: String::new(),
                    };
                    let mut msg = LogMessage::new(r.level, node, r.time, &r.text, Some(ext));
                    msg.event = r.event;
                    buf.clear();
                    if msg.encode(&mut buf).is_ok() {
                        let _ = socket.try_send(Message::from(buf.split().freeze()));
                        shared.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if n == 0 || n == usize::MAX {
                    break;
                }
                // PUB drops past its high-water mark without telling: let the connections
                // write this batch before encoding the next.
                tokio::task::yield_now().await;
            }
            socket.close().await;
        });
        inner.task = Some((task, stop_tx));
        let known: Vec<String> = inner.collectors.values().map(|(e, _)| e.clone()).collect();
        let socket = inner.socket.clone().expect("set above");
        for e in &known {
            inner.connected.insert(e.clone());
        }
        Ok((socket, known))
    }

    /// Looks at a node event: a peer whose HELLO has `X-ZRELOG` is a collector (connect to it);
    /// when it leaves, its level no longer counts.
    pub async fn handle_event(&self, event: &Event) {
        match event {
            Event::Enter { peer, headers, .. } => {
                let header = |key: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone())
                };
                let Some(endpoint) = header(ZRELOG_HEADER) else {
                    return;
                };
                let level = header(ZRELOG_LEVEL_HEADER)
                    .and_then(|v| v.parse::<u8>().ok())
                    .and_then(LogLevel::from_u8)
                    .unwrap_or(DEFAULT_COLLECTOR_LEVEL);
                self.add_collector(*peer, endpoint, level).await;
            }
            Event::Exit { peer, .. } => {
                let mut inner = lock(&self.inner);
                if inner.collectors.remove(peer).is_some() {
                    self.update_level(&inner);
                }
            }
            _ => {}
        }
    }

    /// Publishes to a collector at `endpoint` that wants events up to `level`.
    pub async fn add_collector(&self, peer: Uuid, endpoint: String, level: LogLevel) {
        let socket = {
            let mut inner = lock(&self.inner);
            inner.collectors.insert(peer, (endpoint.clone(), level));
            self.update_level(&inner);
            // Before start, the socket does not exist yet: start connects.
            let Some(socket) = inner.socket.clone() else {
                return;
            };
            if !inner.connected.insert(endpoint.clone()) {
                return;
            }
            socket
        };
        if let Err(e) = socket.connect(&endpoint) {
            tracing::warn!(%endpoint, error = %e, "cannot connect to the log collector");
        }
    }

    fn update_level(&self, inner: &Inner) {
        let max = inner
            .collectors
            .values()
            .map(|(_, l)| (*l).min(self.ceiling).to_u8())
            .max()
            .unwrap_or(0);
        let endpoints: HashSet<&String> = inner.collectors.values().map(|(e, _)| e).collect();
        self.shared
            .expected
            .store(endpoints.len(), Ordering::Relaxed);
        self.shared.max_level.store(max, Ordering::Relaxed);
    }

    /// The most verbose level published now (`None`: no collector known).
    pub fn level(&self) -> Option<LogLevel> {
        LogLevel::from_u8(self.shared.max_level.load(Ordering::Relaxed))
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events published.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Number of collectors connected now.
    pub fn collectors_connected(&self) -> usize {
        lock(&self.inner)
            .socket
            .as_ref()
            .map_or(0, |s| s.peer_count())
    }

    /// Publishes what is queued and stops (later events are not published).
    pub async fn stop(&self) {
        self.shared.max_level.store(0, Ordering::Relaxed);
        let task = lock(&self.inner).task.take();
        if let Some((task, stop)) = task {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}
