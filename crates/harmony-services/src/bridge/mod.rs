//! The HTTP/WebSocket bridge: a node with an HTTP face (axum), and the live page.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page: peers and groups live, a chat pane, the log tail, rate graphs |
//! | `GET /api/peers` | `[{uuid, name, endpoint, groups, headers}]` |
//! | `GET /api/groups` | `[{group, joined, members: [{uuid, name}]}]` |
//! | `POST /api/shout` | `{"group", "text"}` |
//! | `POST /api/whisper` | `{"peer": uuid-or-name, "text"}` |
//! | `GET /api/events` | server-sent events, one JSON object per node event (and log event) |
//! | `GET /ws` | a WebSocket: the same events in; `{"type": "shout" / "whisper" / "join" / "leave", ...}` out |
//! | `GET /api/logs` | the log collector's tail (404 without a collector) |
//! | `GET /api/stats` | events sent and dropped for slow clients |
//!
//! Errors are 4xx with `{"error": "..."}`. With a token, anything that sends needs
//! `Authorization: Bearer TOKEN` (or `?token=TOKEN` on `/ws`, which browsers cannot give
//! headers). Each client reads from a bounded queue; a client that falls behind loses the
//! oldest events, is told how many (`{"event": "DROPPED", "count": n}`), and the node never
//! waits for it.

mod api;
mod json;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use harmony_node::{Event, Node, Uuid};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::ServiceError;
use crate::log::{LogCollector, LogPublisher};

pub use json::{content_text, event_json, peer_json};

/// Bridge settings.
#[derive(Debug)]
pub struct BridgeConfig {
    /// Where to listen (default `127.0.0.1:8080`: this machine only).
    pub listen: SocketAddr,
    /// A bearer token required for anything that sends.
    pub token: Option<String>,
    /// Events a client may fall behind by before it loses the oldest.
    pub client_queue: usize,
    /// A log collector whose events join the streams and feed `/api/logs`.
    pub collector: Option<LogCollector>,
    /// Publishes this program's logs to the collectors the bridge's node finds.
    pub logs: Option<Arc<LogPublisher>>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            client_queue: 1024,
            collector: None,
            logs: None,
        }
    }
}

/// What an HTTP handler asks of the task that owns the node.
enum Request {
    Peers(oneshot::Sender<Value>),
    Groups(oneshot::Sender<Value>),
    Shout {
        group: String,
        text: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Whisper {
        peer: String,
        text: String,
        reply: oneshot::Sender<Result<Uuid, (u16, String)>>,
    },
    Join {
        group: String,
        leave: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Counters of the event streams.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Events put on the streams.
    pub(crate) published: AtomicU64,
    /// Events clients lost by falling behind (summed over clients).
    pub(crate) dropped: AtomicU64,
}

/// State shared by the handlers.
#[derive(Clone)]
pub(crate) struct Shared {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Arc<str>>,
    token: Option<Arc<str>>,
    counters: Arc<Counters>,
    logs: Option<Arc<dyn Fn() -> Vec<Value> + Send + Sync>>,
    uuid: Uuid,
    name: Arc<str>,
}

/// A running bridge.
pub struct Bridge {
    addr: SocketAddr,
    counters: Arc<Counters>,
    server: JoinHandle<()>,
    driver: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// Serves `node` (the bridge owns it and reads its events) over HTTP.
    pub async fn start(node: Node, config: BridgeConfig) -> Result<Self, ServiceError> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (req_tx, req_rx) = mpsc::channel(256);
        let (events, _) = broadcast::channel(config.client_queue.max(1));
        let counters = Arc::new(Counters::default());
        let collector = config.collector.map(Arc::new);
        let logs = collector.clone().map(|c| {
            Arc::new(move || c.tail().iter().map(|e| e.json()).collect())
                as Arc<dyn Fn() -> Vec<Value> + Send + Sync>
        });
        let shared = Shared {
            requests: req_tx,
            events: events.clone(),
            token: config.token.map(Arc::from),
            counters: counters.clone(),
            logs,
            uuid: node.uuid(),
            name: Arc::from(node.name()),
        };
        if let Some(logs) = &config.logs {
            logs.start(node.name(), node.endpoint()).await?;
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let (server_stop_tx, server_stop_rx) = oneshot::channel::<()>();
        let driver = tokio::spawn(drive(
            node,
            config.logs,
            req_rx,
            events,
            counters.clone(),
            collector,
            stop_rx,
            server_stop_tx,
        ));
        let app = api::router(shared);
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = server_stop_rx.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "bridge server stopped");
            }
        });
        Ok(Self {
            addr,
            counters,
            server,
            driver,
            stop: Some(stop_tx),
        })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Events that clients lost by falling behind.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Events put on the streams.
    pub fn published(&self) -> u64 {
        self.counters.published.load(Ordering::Relaxed)
    }

    /// Stops serving and stops the node.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.driver).await;
        self.server.abort();
        let _ = (&mut self.server).await;
    }
}

fn publish(events: &broadcast::Sender<Arc<str>>, counters: &Counters, value: &Value) {
    counters.published.fetch_add(1, Ordering::Relaxed);
    // No receiver is not an error: nobody is watching.
    let _ = events.send(Arc::from(value.to_string()));
}

#[allow(clippy::too_many_arguments)] // the task's whole world, passed once
async fn drive(
    mut node: Node,
    publisher: Option<Arc<LogPublisher>>,
    mut requests: mpsc::Receiver<Request>,
    events: broadcast::Sender<Arc<str>>,
    counters: Arc<Counters>,
    collector: Option<Arc<LogCollector>>,
    mut stop: oneshot::Receiver<()>,
    server_stop: oneshot::Sender<()>,
) {
    let mut logs = collector.as_ref().map(|c| c.subscribe());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            event = node.next_event() => match event {
                Some(event) => {
                    if let Some(p) = &publisher {
                        p.handle_event(&event).await;
                    }
                    let stop = matches!(event, Event::Stop { .. });
                    publish(&events, &counters, &event_json(&event));
                    if stop { break; }
                }
                None => break,
            },
            Some(req) = requests.recv() => handle(&node, req).await,
            entry = async {
                match logs.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match entry {
                Ok(entry) => {
                    let mut v = entry.json();
                    v["event"] = "LOG".into();
                    publish(&events, &counters, &v);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    counters.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => logs = None,
            },
        }
    }
    let _ = server_stop.send(());
    let _ = node.stop().await;
    if let Some(c) = collector {
        if let Ok(mut c) = Arc::try_unwrap(c) {
            c.stop().await;
        }
    }
}

async fn handle(node: &Node, req: Request) {
    match req {
        Request::Peers(reply) => {
            let peers = node.peer_infos().await.unwrap_or_default();
            let _ = reply.send(Value::Array(peers.iter().map(peer_json).collect()));
        }
        Request::Groups(reply) => {
            let peers = node.peer_infos().await.unwrap_or_default();
            let own = node.own_groups().await.unwrap_or_default();
            let _ = reply.send(json::groups_json(&peers, &own));
        }
        Request::Shout { group, text, reply } => {
            let _ = reply.send(node.shout(group, text).await.map_err(|e| e.to_string()));
        }
        Request::Whisper { peer, text, reply } => {
            let peers = node.peer_infos().await.unwrap_or_default();
            let target = peers.iter().find(|p| {
                harmony_peer::uuid_string(&p.uuid).eq_ignore_ascii_case(&peer)
                    || p.uuid.to_string() == peer.to_ascii_lowercase()
                    || p.name == peer
            });
            let result = match target {
                None => Err((404, format!("no peer {peer:?}"))),
                Some(p) => node
                    .whisper(p.uuid, text)
                    .await
                    .map(|()| p.uuid)
                    .map_err(|e| (409, e.to_string())),
            };
            let _ = reply.send(result);
        }
        Request::Join {
            group,
            leave,
            reply,
        } => {
            let result = if leave {
                node.leave(group).await
            } else {
                node.join(group).await
            };
            let _ = reply.send(result.map_err(|e| e.to_string()));
        }
    }
}
