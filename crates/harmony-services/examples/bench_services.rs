//! `cargo xtask bench services`: the services' figures beside a baseline from the same run.
//!
//! - log events/s from 10 publishers (each a `tracing` dispatcher on its own thread) into one
//!   collector, beside 10 raw ZMTP PUB sockets sending the same encoded frames to one SUB;
//! - tick jitter (p50/p99) of the timer at 100 Hz, alone and as the leader of three timers
//!   (each tick prepared with the two standbys first), beside a `tokio::time::interval` at
//!   100 Hz;
//! - events/s that a WebSocket client gets through the bridge, beside the events/s a plain node
//!   gets from the same shouter.
//!
//! Loopback only; every phase is bounded in count and time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use harmony_node::{Event, Node};
use harmony_services::bridge::{Bridge, BridgeConfig};
use harmony_services::log::{publisher, CollectorConfig, LogCollector, LogLevel};
use harmony_services::timer::{Timer, TimerConfig, TimerEvent};
use harmony_testkit::arg;
use harmony_wire::zrelog::{LogExtension, LogMessage};
use harmony_zmtp::{Message, PubSocket, SocketOptions, SubSocket};
use tracing_subscriber::layer::SubscriberExt;

const PUBLISHERS: usize = 10;
const PHASE_LIMIT: Duration = Duration::from_secs(30);

/// Waits until `count()` reaches `target` or stops growing for a second; returns the count and
/// the time from `start` to the last growth.
async fn settle(start: Instant, target: u64, count: impl Fn() -> u64) -> (u64, Duration) {
    let (mut last, mut last_at) = (0, start.elapsed());
    let mut idle_since = Instant::now();
    while start.elapsed() < PHASE_LIMIT {
        let n = count();
        if n != last {
            last = n;
            last_at = start.elapsed();
            idle_since = Instant::now();
        }
        if n >= target || idle_since.elapsed() > Duration::from_secs(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (last, last_at)
}

async fn log_events(per_publisher: u64) -> (f64, f64, u64) {
    // Harmony: 10 tracing publishers -> one collector.
    let mut collector = LogCollector::start(
        [127, 0, 0, 1].into(),
        CollectorConfig {
            level: LogLevel::Info,
            tail: 0,
            ..CollectorConfig::default()
        },
    )
    .await
    .unwrap();
    let mut pubs = Vec::new();
    let mut dispatchers = Vec::new();
    for i in 0..PUBLISHERS {
        let (layer, p) = publisher(1 << 16, LogLevel::Info);
        p.start(
            &format!("pub{i}"),
            &format!("tcp://127.0.0.1:{}", 10000 + i),
        )
        .await
        .unwrap();
        p.add_collector(
            harmony_node::Uuid::new_v4(),
            collector.endpoint().to_owned(),
            LogLevel::Info,
        )
        .await;
        dispatchers.push(tracing::Dispatch::new(
            tracing_subscriber::registry().with(layer),
        ));
        pubs.push(p);
    }
    // Connected and subscribed: one probe from each arrives.
    let mut rx = collector.subscribe();
    for d in &dispatchers {
        let mut got = false;
        while !got {
            tracing::dispatcher::with_default(d, || tracing::warn!("probe"));
            got = tokio::time::timeout(Duration::from_millis(50), rx.recv())
                .await
                .is_ok();
        }
    }
    while tokio::time::timeout(Duration::from_millis(200), rx.recv())
        .await
        .is_ok()
    {}
    drop(rx);
    let base = collector.stats().received;
    let start = Instant::now();
    let threads: Vec<_> = dispatchers
        .into_iter()
        .map(|d| {
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&d, || {
                    for i in 0..per_publisher {
                        tracing::info!(i, peer = "bench", "a log event of a typical size");
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    eprintln!(
        "log: 10 threads emitted {} events in {:.2} s, {} received by then",
        per_publisher * PUBLISHERS as u64,
        start.elapsed().as_secs_f64(),
        collector.stats().received - base
    );
    let total = per_publisher * PUBLISHERS as u64;
    let (got, took) = settle(start, total, || collector.stats().received - base).await;
    let dropped: u64 = pubs.iter().map(|p| p.dropped()).sum();
    eprintln!(
        "log: {got} of {total} received in {:.2} s; {} lost on the way, {dropped} dropped at the publishers",
        took.as_secs_f64(),
        collector.stats().lost
    );
    let harmony = got as f64 / took.as_secs_f64();
    for p in &pubs {
        p.stop().await;
    }
    collector.stop().await;

    // Baseline: raw PUB -> SUB with the same encoded frame.
    let frame = LogMessage::new(
        LogLevel::Info,
        1,
        1,
        "a log event of a typical size",
        Some(LogExtension {
            name: "pub0".into(),
            target: "bench_services".into(),
            fields: vec![
                ("i".into(), "12345".into()),
                ("peer".into(), "bench".into()),
            ],
            ..LogExtension::default()
        }),
    )
    .to_bytes()
    .unwrap();
    let sub = SubSocket::new(SocketOptions::default());
    sub.subscribe(bytes::Bytes::new()).unwrap();
    let endpoint = sub.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let received = Arc::new(AtomicU64::new(0));
    let reader = {
        let received = received.clone();
        tokio::spawn(async move {
            while sub.recv().await.is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut socks = Vec::new();
    for _ in 0..PUBLISHERS {
        let s = PubSocket::new(SocketOptions::default().send_hwm(10_000));
        s.connect(&endpoint).unwrap();
        s.wait_for_peers(1).await;
        socks.push(Arc::new(s));
    }
    // Subscriptions reach the PUBs: send probes until each one's arrives.
    for s in &socks {
        let before = received.load(Ordering::Relaxed);
        while received.load(Ordering::Relaxed) == before {
            let _ = s.try_send(Message::from(frame.clone()));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = received.load(Ordering::Relaxed);
    let start = Instant::now();
    let senders: Vec<_> = socks
        .iter()
        .map(|s| {
            let (s, frame) = (s.clone(), frame.clone());
            tokio::spawn(async move {
                for i in 0..per_publisher {
                    // Yield now and then like a program that also does work, and so the
                    // connection tasks get to write (PUB drops beyond its HWM).
                    if s.try_send(Message::from(frame.clone())).is_err() || i % 256 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let (got, took) = settle(start, total, || received.load(Ordering::Relaxed) - base).await;
    eprintln!(
        "raw: {got} of {total} received in {:.2} s",
        took.as_secs_f64()
    );
    let raw = got as f64 / took.as_secs_f64();
    reader.abort();
    (harmony, raw, dropped)
}

fn percentiles(mut v: Vec<u64>) -> (u64, u64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Lateness of the leader's ticks at 100 Hz, with `timers - 1` standby timers to prepare each
/// tick with first.
async fn timer_lateness(ticks: usize, port: u16, timers: usize) -> (u64, u64) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let mut running = Vec::new();
    for _ in 0..timers {
        let mut timer = Timer::start(
            Node::builder()
                .loopback()
                .port(port)
                .interval(Duration::from_millis(50)),
            TimerConfig {
                rates: vec![100],
                settle: Duration::from_millis(200 * timers as u64),
                ..TimerConfig::default()
            },
        )
        .await
        .unwrap();
        let tx = tx.clone();
        // Dropping a timer (when the task is aborted) stops it.
        running.push(tokio::spawn(async move {
            while let Some(ev) = timer.next_event().await {
                if let TimerEvent::Sent { late_us, .. } = ev {
                    if tx.send(late_us).await.is_err() {
                        break;
                    }
                }
            }
        }));
    }
    let mut late = Vec::new();
    let deadline = Instant::now() + PHASE_LIMIT;
    while late.len() < ticks && Instant::now() < deadline {
        if let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            late.push(l);
        }
    }
    for task in running {
        task.abort();
    }
    percentiles(late)
}

async fn tick_jitter(ticks: usize, port: u16) -> ((u64, u64), (u64, u64), (u64, u64)) {
    let harmony = timer_lateness(ticks, port, 1).await;
    let standbys = timer_lateness(ticks, free_port(), 3).await;

    // The baseline: tokio's interval (skipping missed ticks, so never bunched either); its
    // lateness is measured like the timer's, from the latest 10 ms slot since its start.
    let origin = tokio::time::Instant::now() + Duration::from_millis(10);
    let mut interval = tokio::time::interval_at(origin, Duration::from_millis(10));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut late = Vec::new();
    for _ in 0..ticks {
        interval.tick().await;
        late.push(origin.elapsed().as_micros() as u64 % 10_000);
    }
    (harmony, standbys, percentiles(late))
}

async fn bridge_events(messages: u64, port: u16) -> (f64, f64, u64) {
    let b = |name: &str| {
        Node::builder()
            .name(name)
            .loopback()
            .port(port)
            .interval(Duration::from_millis(100))
    };
    let bridge_node = b("bridge").start().await.unwrap();
    bridge_node.join("BRIDGE").await.unwrap();
    let bridge = Bridge::start(
        bridge_node,
        BridgeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_queue: 1 << 16,
            ..BridgeConfig::default()
        },
    )
    .await
    .unwrap();
    let mut plain = b("plain").start().await.unwrap();
    plain.join("BASE").await.unwrap();
    let mut shouter = b("shouter").start().await.unwrap();
    // Both receivers are known to the shouter with their groups.
    let mut seen = 0;
    while seen < 2 {
        if let Some(Event::Join { group, .. }) = shouter.next_event().await {
            if &*group == "BASE" || &*group == "BRIDGE" {
                seen += 1;
            }
        }
    }

    // Baseline: a plain node's events.
    let start = Instant::now();
    for i in 0..messages {
        shouter.shout("BASE", format!("message {i}")).await.unwrap();
        if i % 1024 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut got = 0;
    let deadline = Instant::now() + PHASE_LIMIT;
    while got < messages && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), plain.next_event()).await {
            Ok(Some(Event::Shout { .. })) => got += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let base = got as f64 / start.elapsed().as_secs_f64();

    // The bridge: the same to a WebSocket client.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", bridge.local_addr()))
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap(); // HELLO
    let start = Instant::now();
    let shouting = tokio::spawn(async move {
        for i in 0..messages {
            shouter
                .shout("BRIDGE", format!("message {i}"))
                .await
                .unwrap();
            if i % 1024 == 0 {
                tokio::task::yield_now().await;
            }
        }
        shouter
    });
    let mut got = 0;
    let deadline = Instant::now() + PHASE_LIMIT;
    while got < messages && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            Ok(Some(Ok(m))) => {
                if m.to_text().is_ok_and(|t| t.contains("\"SHOUT\"")) {
                    got += 1;
                }
            }
            _ => break,
        }
    }
    let through_bridge = got as f64 / start.elapsed().as_secs_f64();
    let mut shouter = shouting.await.unwrap();
    let dropped = bridge.dropped();
    shouter.stop().await.unwrap();
    plain.stop().await.unwrap();
    bridge.stop().await;
    (through_bridge, base, dropped)
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(5670)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let per_publisher = arg("--log-events", 50_000u64);
    let ticks = arg("--ticks", 500usize);
    let messages = arg("--messages", 50_000u64);

    let (log, log_raw, log_dropped) = log_events(per_publisher).await;
    let (jitter, jitter_standbys, jitter_base) = tick_jitter(ticks, free_port()).await;
    let (bridge, bridge_base, bridge_dropped) = bridge_events(messages, free_port()).await;

    println!("\nservices (loopback, one run; ratio = Harmony / baseline)");
    println!(
        "  {:<44} {:>14} {:>14} {:>7}",
        "figure", "Harmony", "baseline", "ratio"
    );
    println!(
        "  {:<44} {:>14.0} {:>14.0} {:>7.2}",
        format!("log events/s, {PUBLISHERS} publishers -> 1 collector"),
        log,
        log_raw,
        log / log_raw
    );
    println!(
        "  {:<44} {:>14} {:>14} {:>7.2}",
        "tick lateness p50 at 100 Hz (us)",
        jitter.0,
        jitter_base.0,
        jitter.0 as f64 / jitter_base.0.max(1) as f64
    );
    println!(
        "  {:<44} {:>14} {:>14} {:>7.2}",
        "tick lateness p99 at 100 Hz (us)",
        jitter.1,
        jitter_base.1,
        jitter.1 as f64 / jitter_base.1.max(1) as f64
    );
    for (q, leader, base) in [
        ("p50", jitter_standbys.0, jitter_base.0),
        ("p99", jitter_standbys.1, jitter_base.1),
    ] {
        println!(
            "  {:<44} {:>14} {:>14} {:>7.2}",
            format!("tick lateness {q}, leader + 2 standbys (us)"),
            leader,
            base,
            leader as f64 / base.max(1) as f64
        );
    }
    println!(
        "  {:<44} {:>14.0} {:>14.0} {:>7.2}",
        "bridge events/s to a WebSocket client",
        bridge,
        bridge_base,
        bridge / bridge_base
    );
    println!(
        "  baselines: raw ZMTP PUB->SUB of the same frames; tokio interval at 100 Hz; a plain node's \
         events from the same shouter"
    );
    println!(
        "  dropped: {log_dropped} log events at the publishers' queues (of {}), {bridge_dropped} bridge events",
        per_publisher * PUBLISHERS as u64
    );
}
