//! The bridge over real sockets: every endpoint, bad requests, the token, the event streams.

mod support;

use std::net::SocketAddr;

use harmony_node::Event;
use harmony_services::bridge::{Bridge, BridgeConfig};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::timeout;

fn config() -> BridgeConfig {
    BridgeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..BridgeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_works_and_bad_requests_get_json_errors() {
    let port = harmony_testkit::free_udp_port();
    let bridge = bridge_with_collector(port).await;
    let addr = bridge.local_addr();
    let mut ws = ws(addr, None).await;
    let hello = ws_next(&mut ws).await;
    assert_eq!(
        (hello["event"].as_str(), hello["logs"].as_bool()),
        (Some("HELLO"), Some(true))
    );
    ws_send(&mut ws, json!({"type": "join", "group": "CHAT"})).await;
    ws_until(&mut ws, |v| v["event"] == "OK").await;

    let mut bob = builder(port, "bob")
        .header("X-ROLE", "test")
        .start()
        .await
        .unwrap();
    bob.join("CHAT").await.unwrap();
    ws_until(&mut ws, |v| v["event"] == "JOIN" && v["name"] == "bob").await;
    until_event(
        &mut bob,
        |e| matches!(e, Event::Join { name, .. } if &**name == "bridge"),
    )
    .await;

    let (status, peers) = http(addr, "GET", "/api/peers", &[], "").await;
    assert_eq!(status, 200);
    let bob_json = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bob")
        .expect("bob listed")
        .clone();
    assert_eq!(bob_json["groups"], json!(["CHAT"]));
    assert_eq!(bob_json["headers"]["X-ROLE"], "test");
    assert_eq!(bob_json["endpoint"], bob.endpoint());

    let (status, groups) = http(addr, "GET", "/api/groups", &[], "").await;
    assert_eq!(status, 200);
    let chat = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "CHAT")
        .expect("CHAT listed");
    assert_eq!(chat["joined"], true);
    assert_eq!(chat["members"][0]["name"], "bob");

    // Out: a shout and a whisper reach bob.
    let body = json!({"group": "CHAT", "text": "hello bob"}).to_string();
    assert_eq!(http(addr, "POST", "/api/shout", &[], &body).await.0, 200);
    let e = until_event(&mut bob, |e| matches!(e, Event::Shout { .. })).await;
    assert!(
        matches!(&e, Event::Shout { content, name, .. } if content[0] == "hello bob" && &**name == "bridge")
    );
    let body = json!({"peer": "bob", "text": "psst"}).to_string();
    let (status, reply) = http(addr, "POST", "/api/whisper", &[], &body).await;
    assert_eq!(status, 200, "{reply}");
    let e = until_event(&mut bob, |e| matches!(e, Event::Whisper { .. })).await;
    assert!(matches!(&e, Event::Whisper { content, .. } if content[0] == "psst"));
    // By UUID too, and from the WebSocket.
    let uuid = harmony_peer::uuid_string(&bob.uuid());
    ws_send(
        &mut ws,
        json!({"type": "whisper", "peer": uuid, "text": "by uuid"}),
    )
    .await;
    let e = until_event(&mut bob, |e| matches!(e, Event::Whisper { .. })).await;
    assert!(matches!(&e, Event::Whisper { content, .. } if content[0] == "by uuid"));

    // In: bob's shout on the WebSocket and on the SSE stream.
    let mut sse = tokio::net::TcpStream::connect(addr).await.unwrap();
    sse.write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sse = BufReader::new(sse).lines();
    sse_next(&mut sse, |v| v["event"] == "HELLO").await;
    bob.shout("CHAT", "hello browser").await.unwrap();
    let v = ws_until(&mut ws, |v| v["event"] == "SHOUT").await;
    assert_eq!(
        (v["name"].as_str(), v["group"].as_str(), v["text"].as_str()),
        (Some("bob"), Some("CHAT"), Some("hello browser"))
    );
    let v = sse_next(&mut sse, |v| v["event"] == "SHOUT").await;
    assert_eq!(v["text"], "hello browser");

    // Bad requests: 4xx with a JSON error, and the bridge carries on.
    for (method, path, body, expected) in [
        ("POST", "/api/shout", "{not json", 400),
        ("POST", "/api/shout", "[1, 2]", 400),
        ("POST", "/api/shout", r#"{"group": "CHAT"}"#, 422),
        ("POST", "/api/shout", r#"{"group": 5, "text": "x"}"#, 422),
        ("POST", "/api/shout", r#"{"group": "", "text": "x"}"#, 422),
        (
            "POST",
            "/api/whisper",
            r#"{"peer": "nobody", "text": "x"}"#,
            404,
        ),
        ("GET", "/api/nothing", "", 404),
        ("GET", "/api/shout", "", 405),
    ] {
        let (status, body) = http_raw(addr, method, path, &[], body).await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        if expected != 405 {
            let v: Value = serde_json::from_str(&body).expect("a JSON error body");
            assert!(v["error"].is_string(), "{body}");
        }
    }
    ws_send(&mut ws, json!({"type": "fly"})).await;
    let v = ws_until(&mut ws, |v| v["event"] == "ERROR").await;
    assert_eq!(v["status"], 422);
    ws_send(
        &mut ws,
        json!({"type": "whisper", "peer": "nobody", "text": "x"}),
    )
    .await;
    assert_eq!(
        ws_until(&mut ws, |v| v["event"] == "ERROR").await["status"],
        404
    );

    let (status, logs) = http(addr, "GET", "/api/logs", &[], "").await;
    assert_eq!(status, 200);
    assert!(logs.is_array());
    let (status, page) = http_raw(addr, "GET", "/", &[], "").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<title>Harmony mesh</title>")
            && !page.contains("http://")
            && !page.contains("https://"),
        "one self-contained page"
    );
    let (status, stats) = http(addr, "GET", "/api/stats", &[], "").await;
    assert_eq!(status, 200);
    assert!(stats["published"].as_u64().unwrap() > 0);

    bob.stop().await.unwrap();
    bridge.stop().await;
}

#[tokio::test]
async fn a_token_guards_whatever_sends() {
    let port = harmony_testkit::free_udp_port();
    let bridge = Bridge::start(
        builder(port, "guarded").start().await.unwrap(),
        BridgeConfig {
            token: Some("s3cret".into()),
            ..config()
        },
    )
    .await
    .unwrap();
    let addr = bridge.local_addr();
    let body = json!({"group": "CHAT", "text": "x"}).to_string();
    let (status, v) = http(addr, "POST", "/api/shout", &[], &body).await;
    assert_eq!(status, 401);
    assert!(v["error"].is_string());
    let (status, _) = http(
        addr,
        "POST",
        "/api/shout",
        &[("Authorization", "Bearer wrong")],
        &body,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = http(
        addr,
        "POST",
        "/api/shout",
        &[("Authorization", "Bearer s3cret")],
        &body,
    )
    .await;
    assert_eq!(status, 200);
    // Reading needs no token.
    assert_eq!(http(addr, "GET", "/api/peers", &[], "").await.0, 200);
    assert_eq!(http(addr, "GET", "/api/logs", &[], "").await.0, 404);

    let mut reader = ws(addr, None).await;
    ws_next(&mut reader).await;
    ws_send(
        &mut reader,
        json!({"type": "shout", "group": "CHAT", "text": "x"}),
    )
    .await;
    assert_eq!(
        ws_until(&mut reader, |v| v["event"] != "HELLO").await["event"],
        "ERROR"
    );
    let mut writer = ws(addr, Some("s3cret")).await;
    ws_next(&mut writer).await;
    ws_send(
        &mut writer,
        json!({"type": "shout", "group": "CHAT", "text": "x"}),
    )
    .await;
    assert_eq!(
        ws_until(&mut writer, |v| v["event"] != "HELLO").await["event"],
        "OK"
    );
    bridge.stop().await;
}

type Lines = tokio::io::Lines<BufReader<tokio::net::TcpStream>>;

/// The next server-sent event matching `pred`.
async fn sse_next(lines: &mut Lines, pred: fn(&Value) -> bool) -> Value {
    timeout(WAIT, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("stream open");
            if let Some(data) = line.strip_prefix("data: ") {
                let v: Value = serde_json::from_str(data).unwrap();
                if pred(&v) {
                    return v;
                }
            }
        }
    })
    .await
    .expect("SSE event in time")
}

/// A client that never reads: it loses the oldest events (counted); the node and the other
/// clients go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_loses_events_and_slows_nobody() {
    const FLOOD: u64 = 30_000;
    let port = harmony_testkit::free_udp_port();
    let node = builder(port, "bridge").start().await.unwrap();
    node.join("FLOOD").await.unwrap();
    let bridge = Bridge::start(
        node,
        BridgeConfig {
            client_queue: 64,
            ..config()
        },
    )
    .await
    .unwrap();
    let addr = bridge.local_addr();

    // The slow client: a tiny receive window, and it never reads after the handshake.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (_slow, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .unwrap();

    let mut shouter = builder(port, "shouter").start().await.unwrap();
    until_event(
        &mut shouter,
        |e| matches!(e, Event::Join { group, .. } if &**group == "FLOOD"),
    )
    .await;
    let text = "x".repeat(300);
    for i in 0..FLOOD {
        shouter.shout("FLOOD", format!("{i} {text}")).await.unwrap();
        if i % 512 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Every shout became an event on the streams, whatever the slow client does.
    timeout(WAIT, async {
        loop {
            let (_, stats) = http(addr, "GET", "/api/stats", &[], "").await;
            if stats["published"].as_u64().unwrap() >= FLOOD {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the bridge keeps up with the node");
    assert!(bridge.dropped() > 0, "the slow client lost events");

    // A new client still gets new events promptly.
    let mut fresh = ws(addr, None).await;
    ws_next(&mut fresh).await;
    shouter.shout("FLOOD", "after the flood").await.unwrap();
    let v = ws_until(&mut fresh, |v| {
        v["event"] == "SHOUT" || v["event"] == "DROPPED"
    })
    .await;
    assert_eq!(v["text"], "after the flood");
    shouter.stop().await.unwrap();
    bridge.stop().await;
}
