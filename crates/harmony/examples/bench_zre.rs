//! ZRE benchmark (run by `cargo xtask bench zre`, release build): whisper throughput and round
//! trip between two nodes, shout fan-out to 10 nodes, time until 50 nodes all see each other
//! by beacons and by gossip (two hubs, no beacons), each beside raw ZMTP DEALER -> ROUTER or
//! the beacon figure measured in the same run; the time to elect a leader among 20. Loopback
//! only. In every throughput figure the sender runs on its own task and the receivers are read
//! on the benchmark's task, as in the raw baseline.
//!
//! The throughputs are measured in alternating rounds (raw, whisper, fan-out, raw, ...; 5 by
//! default, after one uncounted warm-up round), on one runtime shape for all in a round:
//! tokio multi-thread with 2 workers (the receivers on the main thread). One run measures two
//! shapes, one after the other, each on a runtime of its own: every thread pinned to CPU 0 (a
//! comparison of CPU cost, steady: the rounds agree within a few percent) and unpinned on
//! every CPU (what users get; on the 2-core machine the raw baseline swings, 3.3-8.4 M/s
//! between runs with its CPU per message nearly constant, depending on whether its threads
//! get one core or two, so read the per-round ratios). Each shape's table gives the medians,
//! each round's ratio to the raw figure of the same round, and the CPU time of the whole
//! process per delivery. The figures measured once (round trip, discovery, election) run on
//! the first shape.
//!
//! Usage: bench_zre [--messages N (deliveries per figure)] [--rounds N] [--nodes N]
//! [--only raw,whisper,fanout (just those throughputs, e.g. under `perf stat`)]
//! [--runtime multi|current] [--workers N] [--cpus SHAPES (CPU lists or all, separated by /;
//! default 0/all)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony::zmtp::{DealerSocket, Message, RouterSocket, SocketOptions};
use harmony::{next_event_any, Event, Node};
use harmony_testkit::{arg, cpu_time, median, Rate};

const PAYLOAD: usize = 64;
/// How far a ZRE sender may run ahead of its sockets before it waits until they wrote what it
/// queued (`Node::flushed_all`), in deliveries: the raw DEALER's send high-water mark. A
/// whisper or shout never waits by itself (a queue that overflows disconnects the peer), so
/// without this the sender queued up to a whole run (about 3x the page faults of raw).
const IN_FLIGHT: usize = 100_000;
/// Receivers of the shout fan-out.
const FAN_OUT: usize = 10;

/// The runtime of one shape (`--runtime multi|current`, `--workers N`), its threads on the
/// CPUs of `cpus` (a list such as `0` or `0,1`; `all`: every CPU in `allowed`, the ones the
/// process was started with, wherever the scheduler puts the threads). Returns it with a
/// description of the shape.
fn runtime(cpus: &str, allowed: &[usize]) -> (tokio::runtime::Runtime, String) {
    let list: Vec<usize> = if cpus == "all" {
        allowed.to_vec()
    } else {
        cpus.split(',')
            .map(|c| {
                c.parse()
                    .expect("--cpus takes lists of CPU numbers, or all, separated by /")
            })
            .collect()
    };
    // Every thread of the runtime starts after this, and so inherits it.
    harmony_testkit::pin_to_cpus(&list).expect("pin to --cpus");
    let flavour: String = arg("--runtime", "multi".to_owned());
    let mut builder = match flavour.as_str() {
        "current" => tokio::runtime::Builder::new_current_thread(),
        "multi" => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(arg("--workers", 2));
            b
        }
        other => panic!("--runtime takes multi or current, not {other}"),
    };
    let workers = if flavour == "current" {
        String::new()
    } else {
        format!(", {} workers", arg("--workers", 2))
    };
    let place = if cpus == "all" {
        format!("unpinned (CPUs {allowed:?})")
    } else {
        format!("pinned to CPUs {cpus}")
    };
    let shape = format!("tokio {flavour}-thread{workers}, {place}");
    (builder.enable_all().build().expect("runtime"), shape)
}

/// `n` nodes on loopback; each peer's queue holds `queue` messages (a whisper or shout never
/// waits: a queue that overflows disconnects the peer, so it must hold a whole run).
async fn nodes(n: usize, port: u16, interval: Duration, queue: usize) -> Vec<Node> {
    let mut v = Vec::new();
    for i in 0..n {
        let node = Node::builder()
            .name(format!("b{i}"))
            .loopback()
            .port(port)
            .interval(interval)
            .send_hwm(queue.max(1_000))
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
    // The other events of the wait, shown if it times out.
    let mut others = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while seen < want {
            let (i, ev) = next_event_any(nodes).await.expect("running");
            if pred(&ev) {
                seen += 1;
            } else if others.len() < 20 {
                others.push((i, ev));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: {seen}/{want}; other events: {others:?}"));
    Instant::now()
}

/// The wall clock and the process's CPU time at the start of a measurement.
struct Measure {
    wall: Instant,
    cpu: Duration,
}

impl Measure {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_time(),
        }
    }

    /// The rate of `deliveries` done since the start (CPU: the whole process, every thread).
    fn end(self, deliveries: usize) -> Rate {
        Rate::of(deliveries, self.wall.elapsed(), cpu_time() - self.cpu)
    }
}

async fn raw_zmtp(messages: usize) -> Rate {
    let router = RouterSocket::new(SocketOptions::default().recv_hwm(100_000));
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    let dealer = DealerSocket::new(
        SocketOptions::default()
            .send_hwm(100_000)
            .identity(&b"\x01bench"[..]),
    );
    dealer.connect(&ep.to_string()).unwrap();
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let measure = Measure::start();
    let sender = tokio::spawn(async move {
        for _ in 0..messages {
            dealer.send(Message::from(payload.clone())).await.unwrap();
        }
        dealer
    });
    for _ in 0..messages {
        router.recv().await.unwrap();
    }
    let rate = measure.end(messages);
    drop(sender.await);
    rate
}

/// Two nodes that see each other, for the whisper rounds.
async fn whisper_pair(messages: usize) -> Vec<Node> {
    let mut pair = nodes(
        2,
        harmony_testkit::free_udp_port(),
        Duration::from_millis(100),
        messages,
    )
    .await;
    wait_for(&mut pair, 2, |e| matches!(e, Event::Enter { .. })).await;
    pair
}

/// Whispers from the first node of `pair` to the second.
async fn whisper_rate(pair: &mut Vec<Node>, messages: usize) -> Rate {
    let to = pair[1].uuid();
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let a = pair.remove(0);
    let measure = Measure::start();
    // The sender on its own task, as the raw baseline's DEALER, and like it never more than
    // about `IN_FLIGHT` messages ahead of its socket.
    let sender = tokio::spawn(async move {
        for i in 1..=messages {
            a.whisper(to, payload.clone()).await.unwrap();
            if i % IN_FLIGHT == 0 {
                a.flushed_all().await;
            }
        }
        a
    });
    wait_for(pair, messages, |e| matches!(e, Event::Whisper { .. })).await;
    let rate = measure.end(messages);
    pair.insert(0, sender.await.expect("sender"));
    rate
}

async fn whisper_round_trip(rounds: usize) -> (Duration, Duration) {
    let mut pair = nodes(
        2,
        harmony_testkit::free_udp_port(),
        Duration::from_millis(100),
        1_000,
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

/// A sender and `receivers` nodes in group FAN, all seeing each other, for the fan-out rounds.
async fn fan_group(receivers: usize, messages: usize) -> Vec<Node> {
    let mut all = nodes(
        receivers + 1,
        harmony_testkit::free_udp_port(),
        Duration::from_millis(100),
        messages,
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
    all
}

/// Shouts from the first node of `all` to the group of the others; the rate counts deliveries.
async fn shout_fanout(all: &mut Vec<Node>, messages: usize) -> Rate {
    let receivers = all.len() - 1;
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let a = all.remove(0);
    let measure = Measure::start();
    // The sender on its own task, as the raw baseline's DEALER; the receivers share this one.
    let sender = tokio::spawn(async move {
        for i in 1..=messages {
            a.shout("FAN", payload.clone()).await.unwrap();
            if i % (IN_FLIGHT / FAN_OUT) == 0 {
                a.flushed_all().await;
            }
        }
        a
    });
    wait_for(all, messages * receivers, |e| {
        matches!(e, Event::Shout { .. })
    })
    .await;
    let rate = measure.end(messages * receivers);
    all.insert(0, sender.await.expect("sender"));
    rate
}

async fn discovery(n: usize, interval: Duration) -> Duration {
    let port = harmony_testkit::free_udp_port();
    let start = Instant::now();
    let mut all = nodes(n, port, interval, 1_000).await;
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

/// The throughput figures of every round, in the order run.
#[derive(Default)]
struct Rounds {
    raw: Vec<Rate>,
    whisper: Vec<Rate>,
    fanout: Vec<Rate>,
}

/// Runs `rounds` alternating rounds of the throughput figures named in `parts` (raw, whisper,
/// fanout), one after the other in each round, printing each figure as it comes.
async fn throughput(parts: &[String], rounds: usize, messages: usize) -> Rounds {
    let mut pair = None;
    let mut fan = None;
    let mut out = Rounds::default();
    // Round 0 warms up (connections, queues and allocator at their working size) and is not
    // counted.
    for round in 0..=rounds {
        for part in parts {
            let rate = match part.as_str() {
                "raw" => raw_zmtp(messages).await,
                "whisper" => {
                    if pair.is_none() {
                        pair = Some(whisper_pair(messages).await);
                    }
                    whisper_rate(pair.as_mut().expect("set"), messages).await
                }
                "fanout" => {
                    if fan.is_none() {
                        fan = Some(fan_group(FAN_OUT, messages / FAN_OUT).await);
                    }
                    shout_fanout(fan.as_mut().expect("set"), messages / FAN_OUT).await
                }
                other => panic!("--only takes raw, whisper, fanout; not {other}"),
            };
            let label = if round == 0 {
                "warm-up".to_owned()
            } else {
                format!("round {round}")
            };
            eprintln!(
                "  {label:<8} {part:<8} {:>8.0} k/s {:>7.3} us CPU per delivery (load {})",
                rate.per_second / 1e3,
                rate.cpu_us,
                harmony_testkit::load_average()
            );
            match part.as_str() {
                _ if round == 0 => {}
                "raw" => out.raw.push(rate),
                "whisper" => out.whisper.push(rate),
                _ => out.fanout.push(rate),
            }
        }
    }
    for mut nodes in [pair, fan].into_iter().flatten() {
        for node in &mut nodes {
            node.stop().await.unwrap();
        }
    }
    out
}

/// Prints the throughput table: medians over the rounds, each round's ratio to the raw figure
/// of the same round, CPU per delivery.
fn print_throughput(r: &Rounds, rounds: usize, messages: usize, shape: &str) {
    let rate = |v: &[Rate]| median(v.iter().map(|r| r.per_second).collect());
    let cpu = |v: &[Rate]| median(v.iter().map(|r| r.cpu_us).collect());
    println!(
        "ZRE benchmark, loopback, {PAYLOAD} B messages, {messages} deliveries per figure, \
         median of {rounds} alternating rounds (load {})",
        harmony_testkit::load_average()
    );
    println!("every figure on one runtime shape: {shape}");
    println!("{:<44} {:>14} {:>10}", "measurement", "figure", "ratio");
    let raw = rate(&r.raw);
    println!(
        "{:<44} {:>10.0} k/s {:>10}",
        "raw ZMTP DEALER->ROUTER (baseline)",
        raw / 1e3,
        "1.00"
    );
    let figures = [
        ("whisper, node -> node", &r.whisper),
        ("shout fan-out to 10 nodes (deliveries)", &r.fanout),
    ];
    for (name, list) in figures {
        if list.is_empty() {
            continue;
        }
        println!(
            "{:<44} {:>10.0} k/s {:>9.2}x",
            name,
            rate(list) / 1e3,
            rate(list) / raw
        );
        let each: Vec<String> = list
            .iter()
            .zip(&r.raw)
            .map(|(x, b)| format!("{:.2}", x.per_second / b.per_second))
            .collect();
        println!("{:<44} {}", "  ratio in each round", each.join(" "));
    }
    let raw_cpu = cpu(&r.raw);
    println!(
        "{:<44} {:>11.3} us {:>10}",
        "CPU per delivery, raw ZMTP", raw_cpu, "1.00"
    );
    for (name, list) in [
        ("CPU per delivery, whisper", &r.whisper),
        ("CPU per delivery, shout fan-out", &r.fanout),
    ] {
        if !list.is_empty() {
            println!(
                "{:<44} {:>11.3} us {:>9.2}x",
                name,
                cpu(list),
                cpu(list) / raw_cpu
            );
        }
    }
}

fn main() {
    let messages: usize = arg("--messages", 1_000_000);
    let rounds: usize = arg("--rounds", 5).max(1);
    let n: usize = arg("--nodes", 50);
    let only: String = arg("--only", String::new());
    let shapes: String = arg("--cpus", "0/all".to_owned());
    let allowed = harmony_testkit::allowed_cpus().expect("the CPUs this process may use");
    let parts: Vec<String> = if only.is_empty() {
        vec!["raw".into(), "whisper".into(), "fanout".into()]
    } else {
        only.split(',').map(str::to_owned).collect()
    };
    for (i, cpus) in shapes.split('/').enumerate() {
        // Each shape on a runtime of its own, its threads placed before they start.
        let (runtime, shape) = runtime(cpus, &allowed);
        eprintln!("shape: {shape}");
        runtime.block_on(async {
            let r = throughput(&parts, rounds, messages).await;
            if !r.raw.is_empty() {
                print_throughput(&r, rounds, messages, &shape);
            }
            // The figures measured once, on the first shape.
            if i == 0 && only.is_empty() {
                others(n).await;
            }
        });
    }
}

/// The figures measured once: whisper round trip, discovery, gossip, election.
async fn others(n: usize) {
    let (median, p99) = whisper_round_trip(2_000).await;
    let interval = Duration::from_secs(1);
    let disco = discovery(n, interval).await;
    let gossip = gossip_discovery(n).await;
    let elect = election(20).await;
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
