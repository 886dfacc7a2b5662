//! ZRE benchmark (run by `cargo xtask bench zre`, release build): whisper throughput and round
//! trip between two nodes, shout fan-out to 10 nodes, time until 50 nodes all see each other
//! by beacons and by gossip (two hubs, no beacons), each beside raw ZMTP DEALER -> ROUTER or
//! the beacon figure measured in the same run; the time to elect a leader among 20. Loopback
//! only. In every throughput figure the sender runs on its own task and the receivers are read
//! on the benchmark's task, as in the raw baseline.
//!
//! Usage: bench_zre [--messages N] [--nodes N] [--only raw,whisper,fanout] (`--only` runs just
//! those throughput figures, e.g. under `perf stat`)

use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony::zmtp::{DealerSocket, Message, RouterSocket, SocketOptions};
use harmony::{next_event_any, Event, Node};
use harmony_testkit::arg;

const PAYLOAD: usize = 64;

async fn nodes(n: usize, port: u16, interval: Duration) -> Vec<Node> {
    let mut v = Vec::new();
    for i in 0..n {
        let node = Node::builder()
            .name(format!("b{i}"))
            .loopback()
            .port(port)
            .interval(interval)
            .send_hwm(1_000_000)
            .start()
            .await
            .expect("node");
        v.push(node);
    }
    v
}

/// Waits until `want` events matching `pred` arrived; returns when the last one came.
async fn wait_for(nodes: &mut [Node], want: usize, pred: impl Fn(&Event) -> bool) -> Instant {
    let mut seen = 0;
    tokio::time::timeout(Duration::from_secs(120), async {
        while seen < want {
            let (_, ev) = next_event_any(nodes).await.expect("running");
            if pred(&ev) {
                seen += 1;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: {seen}/{want}"));
    Instant::now()
}

async fn raw_zmtp(messages: usize) -> f64 {
    let router = RouterSocket::new(SocketOptions::default().recv_hwm(100_000));
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    let dealer = DealerSocket::new(
        SocketOptions::default()
            .send_hwm(100_000)
            .identity(&b"\x01bench"[..]),
    );
    dealer.connect(&ep.to_string()).unwrap();
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..messages {
            dealer.send(Message::from(payload.clone())).await.unwrap();
        }
        dealer
    });
    for _ in 0..messages {
        router.recv().await.unwrap();
    }
    let rate = messages as f64 / start.elapsed().as_secs_f64();
    drop(sender.await);
    rate
}

async fn whisper_rate(messages: usize) -> f64 {
    let mut pair = nodes(
        2,
        harmony_testkit::free_udp_port(),
        Duration::from_millis(100),
    )
    .await;
    wait_for(&mut pair, 2, |e| matches!(e, Event::Enter { .. })).await;
    let to = pair[1].uuid();
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let a = pair.remove(0);
    let start = Instant::now();
    // The sender on its own task, as the raw baseline's DEALER.
    let sender = tokio::spawn(async move {
        for _ in 0..messages {
            a.whisper(to, payload.clone()).await.unwrap();
        }
        a
    });
    let done = wait_for(&mut pair, messages, |e| matches!(e, Event::Whisper { .. })).await;
    let rate = messages as f64 / (done - start).as_secs_f64();
    pair.push(sender.await.expect("sender"));
    for n in &mut pair {
        n.stop().await.unwrap();
    }
    rate
}

async fn whisper_round_trip(rounds: usize) -> (Duration, Duration) {
    let mut pair = nodes(
        2,
        harmony_testkit::free_udp_port(),
        Duration::from_millis(100),
    )
    .await;
    wait_for(&mut pair, 2, |e| matches!(e, Event::Enter { .. })).await;
    let (a_id, b_id) = (pair[0].uuid(), pair[1].uuid());
    let mut b = pair.pop().unwrap();
    let mut a = pair.pop().unwrap();
    let echo = tokio::spawn(async move {
        let mut n = 0;
        while n < rounds {
            if let Some(Event::Whisper { content, .. }) = b.next_event().await {
                b.whisper(a_id, content).await.unwrap();
                n += 1;
            }
        }
        b
    });
    let mut samples = Vec::with_capacity(rounds);
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    for _ in 0..rounds {
        let t = Instant::now();
        a.whisper(b_id, payload.clone()).await.unwrap();
        loop {
            if let Some(Event::Whisper { .. }) = a.next_event().await {
                break;
            }
        }
        samples.push(t.elapsed());
    }
    let mut b = echo.await.unwrap();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

async fn shout_fanout(receivers: usize, messages: usize) -> f64 {
    let mut all = nodes(
        receivers + 1,
        harmony_testkit::free_udp_port(),
        Duration::from_millis(100),
    )
    .await;
    let n = all.len();
    wait_for(&mut all, n * (n - 1), |e| matches!(e, Event::Enter { .. })).await;
    for node in &all[1..] {
        node.join("FAN").await.unwrap();
    }
    wait_for(&mut all, receivers * (n - 1), |e| {
        matches!(e, Event::Join { .. })
    })
    .await;
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let a = all.remove(0);
    let start = Instant::now();
    // The sender on its own task, as the raw baseline's DEALER; the receivers share this one.
    let sender = tokio::spawn(async move {
        for _ in 0..messages {
            a.shout("FAN", payload.clone()).await.unwrap();
        }
        a
    });
    let done = wait_for(&mut all, messages * receivers, |e| {
        matches!(e, Event::Shout { .. })
    })
    .await;
    let rate = (messages * receivers) as f64 / (done - start).as_secs_f64();
    all.push(sender.await.expect("sender"));
    for node in &mut all {
        node.stop().await.unwrap();
    }
    rate
}

async fn discovery(n: usize, interval: Duration) -> Duration {
    let port = harmony_testkit::free_udp_port();
    let start = Instant::now();
    let mut all = nodes(n, port, interval).await;
    let started = Instant::now();
    let done = wait_for(&mut all, n * (n - 1), |e| matches!(e, Event::Enter { .. })).await;
    eprintln!(
        "  ({n} nodes started in {:.0} ms)",
        (started - start).as_secs_f64() * 1e3
    );
    for node in &mut all {
        node.stop().await.unwrap();
    }
    done - start
}

/// Time until `n` gossip-only nodes (no beacons) all see each other: two hubs, the second
/// connected to the first, the other nodes spread over both.
async fn gossip_discovery(n: usize) -> Duration {
    let port = harmony_testkit::free_udp_port();
    let start = Instant::now();
    let hub = |name: String| {
        Node::builder()
            .name(name)
            .loopback()
            .port(port)
            .gossip_bind("tcp://127.0.0.1:0")
    };
    let a = hub("hub-a".into()).start().await.expect("hub a");
    let at_a = a.gossip_endpoints()[0].clone();
    let b = hub("hub-b".into())
        .gossip_connect(&at_a)
        .start()
        .await
        .expect("hub b");
    let at_b = b.gossip_endpoints()[0].clone();
    let mut all = vec![a, b];
    for i in 2..n {
        let node = Node::builder()
            .name(format!("g{i}"))
            .loopback()
            .port(port)
            .gossip_connect(if i % 2 == 0 { &at_a } else { &at_b })
            .start()
            .await
            .expect("node");
        all.push(node);
    }
    let done = wait_for(&mut all, n * (n - 1), |e| matches!(e, Event::Enter { .. })).await;
    for node in &mut all {
        node.stop().await.unwrap();
    }
    done - start
}

/// Time to elect a leader in a group of `n` gossip nodes that all contest it (Zyre's echo
/// wave), from the last JOIN sent until every member reported the same LEADER.
async fn election(n: usize) -> Duration {
    let port = harmony_testkit::free_udp_port();
    let hub = Node::builder()
        .name("e0")
        .loopback()
        .port(port)
        .contest("E")
        .gossip_bind("tcp://127.0.0.1:0")
        .start()
        .await
        .expect("hub");
    let at = hub.gossip_endpoints()[0].clone();
    let mut all = vec![hub];
    for i in 1..n {
        let node = Node::builder()
            .name(format!("e{i}"))
            .loopback()
            .port(port)
            .contest("E")
            .gossip_connect(&at)
            .start()
            .await
            .expect("node");
        all.push(node);
    }
    wait_for(&mut all, n * (n - 1), |e| matches!(e, Event::Enter { .. })).await;
    let leader = all
        .iter()
        .map(Node::uuid)
        .min_by_key(|u| u.simple().to_string().to_uppercase())
        .expect("nodes");
    let start = Instant::now();
    for node in &all {
        node.join("E").await.expect("join");
    }
    let mut agreed = std::collections::HashSet::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while agreed.len() < n {
            let (i, ev) = next_event_any(&mut all).await.expect("running");
            if let Event::Leader { peer, .. } = ev {
                if peer == leader {
                    agreed.insert(i);
                } else {
                    agreed.remove(&i);
                }
            }
        }
    })
    .await
    .expect("an election");
    let took = start.elapsed();
    for node in &mut all {
        node.stop().await.unwrap();
    }
    took
}

fn only() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--only")?;
    args.get(at + 1).cloned()
}

#[tokio::main]
async fn main() {
    let messages: usize = arg("--messages", 200_000);
    let n: usize = arg("--nodes", 50);
    if let Some(only) = only() {
        for part in only.split(',') {
            let rate = match part {
                "raw" => raw_zmtp(messages).await,
                "whisper" => whisper_rate(messages).await,
                "fanout" => shout_fanout(10, messages / 10).await,
                other => panic!("--only takes raw, whisper, fanout; not {other}"),
            };
            println!("{part}: {:.0} k/s", rate / 1e3);
        }
        return;
    }
    let raw = raw_zmtp(messages).await;
    let whisper = whisper_rate(messages).await;
    let (median, p99) = whisper_round_trip(2_000).await;
    let fan = shout_fanout(10, messages / 10).await;
    let interval = Duration::from_secs(1);
    let disco = discovery(n, interval).await;
    let gossip = gossip_discovery(n).await;
    let elect = election(20).await;
    println!("ZRE benchmark, loopback, {PAYLOAD} B messages, {messages} messages per run");
    println!("{:<44} {:>14} {:>10}", "measurement", "figure", "ratio");
    println!(
        "{:<44} {:>10.0} k/s {:>10}",
        "raw ZMTP DEALER->ROUTER (baseline)",
        raw / 1e3,
        "1.00"
    );
    println!(
        "{:<44} {:>10.0} k/s {:>9.2}x",
        "whisper, node -> node",
        whisper / 1e3,
        whisper / raw
    );
    println!(
        "{:<44} {:>10.0} k/s {:>9.2}x",
        "shout fan-out to 10 nodes (deliveries)",
        fan / 1e3,
        fan / raw
    );
    println!(
        "{:<44} {:>11.0} us {:>10}",
        "whisper round trip, median",
        median.as_secs_f64() * 1e6,
        ""
    );
    println!(
        "{:<44} {:>11.0} us {:>10}",
        "whisper round trip, p99",
        p99.as_secs_f64() * 1e6,
        ""
    );
    println!(
        "{:<44} {:>11.0} ms {:>8.2} iv",
        format!("{n} nodes all see each other (interval 1 s)"),
        disco.as_secs_f64() * 1e3,
        disco.as_secs_f64() / interval.as_secs_f64()
    );
    println!(
        "{:<44} {:>11.0} ms {:>9.2}x",
        format!("{n} gossip-only nodes, 2 hubs (vs beacons)"),
        gossip.as_secs_f64() * 1e3,
        gossip.as_secs_f64() / disco.as_secs_f64()
    );
    // The joins of a moment start one wave after 300 ms (ELECTION_DELAY); the rest is the wave.
    println!(
        "{:<44} {:>11.0} ms {:>10}",
        "leader elected in a group of 20 (all contest)",
        elect.as_secs_f64() * 1e3,
        ""
    );
}
