//! Decentralised logging over real sockets on loopback: a collector node advertises itself in
//! its HELLO, a publishing node's `tracing` events reach it, filtered at the publisher.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use harmony_node::{Node, Uuid};
use harmony_services::log::{
    publisher, CaptureConfig, CollectorConfig, LogCollector, LogEntry, LogLevel, LogPublisher,
};
use harmony_zmtp::{SocketOptions, SubSocket};
use tokio::sync::broadcast;
use tokio::time::timeout;
use tracing_subscriber::layer::SubscriberExt;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

async fn collector_node(collector: &LogCollector, port: u16) -> Node {
    let mut b = support::builder(port, "collector");
    for (k, v) in collector.headers() {
        b = b.header(k, v);
    }
    b.start().await.expect("collector node")
}

/// Runs the publishing node's events into the publisher until a collector's HELLO came.
async fn until_collector_known(node: &mut Node, publisher: &LogPublisher) {
    timeout(WAIT, async {
        loop {
            let event = node.next_event().await.expect("node running");
            publisher.handle_event(&event).await;
            if let harmony_node::Event::Enter { headers, .. } = &event {
                if headers.iter().any(|(k, _)| k == "X-ZRELOG") {
                    break;
                }
            }
        }
    })
    .await
    .expect("the collector's HELLO reaches the publisher");
}

/// Sends WARN probes until the collector hears one: the subscription has reached the publisher.
async fn until_flowing(rx: &mut broadcast::Receiver<Arc<LogEntry>>) {
    timeout(WAIT, async {
        loop {
            tracing::warn!("probe");
            match timeout(Duration::from_millis(50), rx.recv()).await {
                Ok(Ok(e)) if e.msg.text() == "probe" => break,
                _ => {}
            }
        }
    })
    .await
    .expect("log events flow");
    // Drain the other probes still in flight.
    while let Ok(Ok(_)) = timeout(Duration::from_millis(200), rx.recv()).await {}
}

fn emit_every_level(rounds: u32) {
    for i in 0..rounds {
        tracing::trace!(i, "trace");
        tracing::debug!(i, "debug");
        tracing::info!(i, "info");
        tracing::warn!(i, "warn");
        tracing::error!(i, "error");
    }
    tracing::error!("end");
}

async fn until_end(rx: &mut broadcast::Receiver<Arc<LogEntry>>) -> Vec<Arc<LogEntry>> {
    let mut got = Vec::new();
    timeout(WAIT, async {
        loop {
            let e = rx.recv().await.expect("no event lost by the listener");
            if e.msg.text() == "end" {
                break;
            }
            got.push(e);
        }
    })
    .await
    .expect("the end marker arrives");
    got
}

#[tokio::test]
async fn events_reach_the_collector_filtered_at_the_publisher() {
    let port = harmony_testkit::free_udp_port();
    let dir = std::env::temp_dir().join(format!("harmony-log-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut collector = LogCollector::start(
        LOOPBACK,
        CollectorConfig {
            level: LogLevel::Info,
            capture: Some(CaptureConfig {
                dir: dir.clone(),
                rotate_size: 4096,
                keep: 100,
            }),
            ..CollectorConfig::default()
        },
    )
    .await
    .unwrap();
    let mut cnode = collector_node(&collector, port).await;
    let mut rx = collector.subscribe();

    // A raw SUB that subscribes to everything, made known to the publisher as an INFO
    // collector: it sees exactly what the publisher puts on the wire.
    let wire = SubSocket::new(SocketOptions::default());
    wire.subscribe(bytes::Bytes::new()).unwrap();
    let wire_endpoint = wire.bind("tcp://127.0.0.1:0").await.unwrap().to_string();

    let (layer, publisher) = publisher(4096, LogLevel::Trace);
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let mut node = support::builder(port, "publisher").start().await.unwrap();
    publisher.start(node.name(), node.endpoint()).await.unwrap();
    publisher
        .add_collector(Uuid::new_v4(), wire_endpoint, LogLevel::Info)
        .await;
    until_collector_known(&mut node, &publisher).await;
    assert_eq!(publisher.level(), Some(LogLevel::Info));
    until_flowing(&mut rx).await;

    tracing::info!(event = "ENTER", peer = "bob", "a peer entered");
    let e = rx.recv().await.unwrap();
    assert_eq!(
        e.msg.event,
        harmony_wire::zrelog::event::ENTER,
        "the rfc/20 event code"
    );
    emit_every_level(50);
    let got = until_end(&mut rx).await;
    let texts: Vec<(&str, String)> = got
        .iter()
        .map(|e| {
            (
                e.msg.text(),
                e.msg.ext.as_ref().unwrap().fields[0].1.clone(),
            )
        })
        .collect();
    let expected: Vec<(&str, String)> = (0..50)
        .flat_map(|i| [("info", i), ("warn", i), ("error", i)])
        .map(|(t, i)| (t, i.to_string()))
        .collect();
    assert_eq!(texts, expected, "INFO and above, each once, in order");
    let e = &got[0];
    assert_eq!(e.node, "publisher");
    assert_eq!(e.msg.ext.as_ref().unwrap().target, "log");
    assert_eq!(
        e.msg.node,
        harmony_wire::zrelog::endpoint_hash(node.endpoint())
    );

    // The wire: nothing below INFO was ever sent.
    let mut on_wire = 0;
    while let Ok(Ok(m)) = timeout(Duration::from_millis(300), wire.recv()).await {
        let msg = harmony_wire::zrelog::LogMessage::decode(&m.frames()[0], 1 << 20).unwrap();
        assert!(msg.level <= LogLevel::Info, "{:?} on the wire", msg.level);
        on_wire += 1;
    }
    assert!(on_wire >= 151, "the wire saw {on_wire} events");

    let stats = collector.stats();
    assert_eq!(
        (stats.lost, stats.malformed, stats.dropped_at_publishers),
        (0, 0, 0)
    );
    assert_eq!(publisher.dropped(), 0);

    // Captured: the same events as JSON lines.
    collector.stop().await;
    let mut captured = Vec::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            captured.push(v["text"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        captured.iter().filter(|t| *t == "info").count() == 50
            && captured.iter().any(|t| t == "end"),
        "{captured:?}"
    );
    publisher.stop().await;
    node.stop().await.unwrap();
    cnode.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn two_collectors_each_get_their_levels_and_a_restarted_collector_is_found_again() {
    let port = harmony_testkit::free_udp_port();
    let (layer, publisher) = publisher(4096, LogLevel::Trace);
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let mut node = support::builder(port, "publisher")
        .evasive_timeout(Duration::from_millis(300))
        .expired_timeout(Duration::from_millis(800))
        .start()
        .await
        .unwrap();
    publisher.start(node.name(), node.endpoint()).await.unwrap();

    let warn_only = CollectorConfig {
        level: LogLevel::Warning,
        ..CollectorConfig::default()
    };
    let mut first = LogCollector::start(LOOPBACK, warn_only.clone())
        .await
        .unwrap();
    let mut first_node = collector_node(&first, port).await;
    let mut first_rx = first.subscribe();
    until_collector_known(&mut node, &publisher).await;
    assert_eq!(publisher.level(), Some(LogLevel::Warning));
    until_flowing(&mut first_rx).await;

    let mut verbose = LogCollector::start(
        LOOPBACK,
        CollectorConfig {
            level: LogLevel::Debug,
            ..CollectorConfig::default()
        },
    )
    .await
    .unwrap();
    let mut verbose_node = collector_node(&verbose, port).await;
    let mut verbose_rx = verbose.subscribe();
    timeout(WAIT, async {
        while publisher.level() != Some(LogLevel::Debug) {
            let event = node.next_event().await.unwrap();
            publisher.handle_event(&event).await;
        }
    })
    .await
    .unwrap();
    until_flowing(&mut verbose_rx).await;
    while let Ok(Ok(_)) = timeout(Duration::from_millis(100), first_rx.recv()).await {}

    emit_every_level(10);
    let levels = |got: &[Arc<LogEntry>]| got.iter().map(|e| e.msg.level).collect::<Vec<_>>();
    let got = until_end(&mut first_rx).await;
    assert_eq!(got.len(), 20);
    assert!(levels(&got).iter().all(|l| *l <= LogLevel::Warning));
    let got = until_end(&mut verbose_rx).await;
    assert_eq!(got.len(), 40);
    assert!(levels(&got).contains(&LogLevel::Debug));
    assert!(!levels(&got).contains(&LogLevel::Trace));

    // The first collector goes away (its node leaves): the level falls back to DEBUG only
    // while the verbose one stays; then it comes back with a new endpoint and is used again.
    first_node.stop().await.unwrap();
    first.stop().await;
    verbose_node.stop().await.unwrap();
    verbose.stop().await;
    timeout(WAIT, async {
        while publisher.level().is_some() {
            let event = node.next_event().await.unwrap();
            publisher.handle_event(&event).await;
        }
    })
    .await
    .expect("both collectors' EXIT seen");
    tracing::error!("nobody listens");

    let again = LogCollector::start(LOOPBACK, warn_only).await.unwrap();
    let mut again_node = collector_node(&again, port).await;
    let mut again_rx = again.subscribe();
    until_collector_known(&mut node, &publisher).await;
    until_flowing(&mut again_rx).await;
    emit_every_level(5);
    assert_eq!(until_end(&mut again_rx).await.len(), 10);
    again_node.stop().await.unwrap();
    publisher.stop().await;
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_drops_counts_and_reports_without_blocking() {
    let port = harmony_testkit::free_udp_port();
    let (layer, publisher) = publisher(8, LogLevel::Trace);
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let collector = LogCollector::start(LOOPBACK, CollectorConfig::default())
        .await
        .unwrap();
    let mut rx = collector.subscribe();
    // Known before the publisher runs: nothing drains the queue of 8.
    publisher
        .add_collector(
            Uuid::new_v4(),
            collector.endpoint().to_owned(),
            LogLevel::Info,
        )
        .await;
    for i in 0..20 {
        tracing::info!(i, "burst");
    }
    assert_eq!(publisher.dropped(), 12);
    let node = Node::builder().loopback().port(port).start().await.unwrap();
    publisher.start("burst", node.endpoint()).await.unwrap();
    let mut got = Vec::new();
    timeout(WAIT, async {
        while got.len() < 8 {
            got.push(rx.recv().await.unwrap());
        }
    })
    .await
    .expect("the queued 8 arrive");
    // The node's own start-up events met the full queue too.
    let reported = got[7].msg.ext.as_ref().unwrap().dropped;
    assert!(reported >= 12, "{reported}");
    assert_eq!(collector.stats().dropped_at_publishers, reported);
    assert_eq!(collector.stats().lost, 0);
    publisher.stop().await;
    let _ = port;
}

#[tokio::test]
async fn malformed_frames_are_counted_and_skipped_the_rest_arrives() {
    let collector = LogCollector::start(LOOPBACK, CollectorConfig::default())
        .await
        .unwrap();
    let mut rx = collector.subscribe();
    let raw = harmony_zmtp::PubSocket::new(SocketOptions::default());
    raw.connect(collector.endpoint()).unwrap();
    raw.wait_for_peers(1).await;
    let good = |text: &str| {
        harmony_wire::zrelog::LogMessage::new(LogLevel::Info, 7, 1, text, None)
            .to_bytes()
            .unwrap()
    };
    // The prefix alone, bad UTF-8, cut short, and two frames: all match the INFO topic.
    let mut prefix_only = good("x").to_vec();
    prefix_only.truncate(4);
    let mut bad_utf8 = good("xy").to_vec();
    let n = bad_utf8.len();
    bad_utf8[n - 1] = 0xff;
    let truncated = good("truncated")[..12].to_vec();
    timeout(WAIT, async {
        loop {
            let _ = raw.try_send(harmony_zmtp::Message::from(good("probe")));
            if let Ok(Ok(_)) = timeout(Duration::from_millis(50), rx.recv()).await {
                break;
            }
        }
    })
    .await
    .expect("the subscription reaches the PUB");
    while let Ok(Ok(_)) = timeout(Duration::from_millis(200), rx.recv()).await {}
    let received = collector.stats().received;
    for frames in [
        vec![bytes::Bytes::from(prefix_only)],
        vec![bytes::Bytes::from(bad_utf8)],
        vec![bytes::Bytes::from(truncated)],
        vec![good("two"), good("frames")],
        vec![good("after")],
    ] {
        raw.try_send(harmony_zmtp::Message::from(frames)).unwrap();
    }
    let e = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(e.msg.text(), "after", "the good message after the bad ones");
    let stats = collector.stats();
    assert_eq!(stats.malformed, 4);
    assert_eq!(stats.received, received + 1);
}
