//! Shared by the bridge tests and the browser test: nodes on loopback, a small HTTP/1.1 client
//! on a raw TCP stream, a WebSocket client.
#![allow(dead_code)] // each test binary uses a subset

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use harmony_node::{Event, Node, NodeBuilder};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

pub(crate) const WAIT: Duration = Duration::from_secs(15);

pub(crate) fn builder(port: u16, name: &str) -> NodeBuilder {
    Node::builder()
        .name(name)
        .loopback()
        .port(port)
        .interval(Duration::from_millis(100))
}

/// A bridge named "bridge" on an ephemeral loopback port, with a log collector.
pub(crate) async fn bridge_with_collector(port: u16) -> harmony_services::bridge::Bridge {
    use harmony_services::bridge::{Bridge, BridgeConfig};
    use harmony_services::log::{CollectorConfig, LogCollector};

    let collector = LogCollector::start([127, 0, 0, 1].into(), CollectorConfig::default())
        .await
        .expect("collector");
    let mut b = builder(port, "bridge");
    for (k, v) in collector.headers() {
        b = b.header(k, v);
    }
    Bridge::start(
        b.start().await.expect("bridge node"),
        BridgeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            collector: Some(collector),
            ..BridgeConfig::default()
        },
    )
    .await
    .expect("bridge")
}

/// One request; the status and the body parsed as JSON (`Null` if it is not JSON).
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, body) = http_raw(addr, method, path, headers, body).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// One request; the status and the body as text.
pub(crate) async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A WebSocket client on `/ws` (with `?token=` when given).
pub(crate) async fn ws(addr: SocketAddr, token: Option<&str>) -> Ws {
    let url = match token {
        Some(t) => format!("ws://{addr}/ws?token={t}"),
        None => format!("ws://{addr}/ws"),
    };
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    ws
}

/// The next JSON object on the WebSocket.
pub(crate) async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let msg = timeout(WAIT, ws.next())
            .await
            .expect("a WebSocket message in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

/// Reads until an object matching `pred` arrives.
pub(crate) async fn ws_until(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = ws_next(ws).await;
        if pred(&v) {
            return v;
        }
    }
}

pub(crate) async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("ws send");
}

/// The node's next event matching `pred`.
pub(crate) async fn until_event(node: &mut Node, pred: impl Fn(&Event) -> bool) -> Event {
    timeout(WAIT, async {
        loop {
            let e = node.next_event().await.expect("node running");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
    .expect("the event in time")
}
