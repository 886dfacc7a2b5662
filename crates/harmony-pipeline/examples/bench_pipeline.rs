//! Pipeline benchmark (run by `cargo xtask bench pipeline`, release build), loopback only:
//! tasks per second through 4 in-process workers (64 B echo tasks) beside a bare PUSH/PULL
//! ventilator -> 4 workers -> sink over harmony-zmtp measured in the same run (no
//! reliability), and the recovery cost: a batch with one worker killed half-way against the
//! same batch without the kill.
//!
//! The two throughputs are measured in alternating rounds (baseline, pipeline, three times);
//! the table gives the medians, each round's ratio, and the CPU time of the whole process per
//! task (on a shared machine the wall-clock rates follow the CPU share the process gets, the
//! CPU time per task much less so).
//!
//! Usage: bench_pipeline [--tasks N] [--recovery-tasks N] [--rounds N] [--window N (per worker, default 256)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_node::Node;
use harmony_pipeline::{Client, Collector, Settings, Timing, Worker, WorkerOptions};
use harmony_testkit::{arg, cpu_time, median, Rate};
use harmony_zmtp::{Message, PullSocket, PushSocket, SocketOptions};

const PAYLOAD: usize = 64;
const WORKERS: usize = 4;

/// Bare PUSH/PULL: ventilator PUSH -> 4 workers (PULL in, PUSH out) -> sink PULL.
async fn push_pull(tasks: usize) -> Rate {
    let opts = || SocketOptions::default().send_hwm(100_000).recv_hwm(100_000);
    let vent = PushSocket::new(opts());
    let vent_ep = vent.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let sink = PullSocket::new(opts());
    let sink_ep = sink.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (input, output) = (PullSocket::new(opts()), PushSocket::new(opts()));
        input.connect(&vent_ep).unwrap();
        output.connect(&sink_ep).unwrap();
        workers.push(tokio::spawn(async move {
            while let Ok(msg) = input.recv().await {
                if output.send(msg).await.is_err() {
                    break;
                }
            }
        }));
    }
    vent.wait_for_peers(WORKERS).await;
    sink.wait_for_peers(WORKERS).await;
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let (start, cpu) = (Instant::now(), cpu_time());
    let sender = tokio::spawn(async move {
        for _ in 0..tasks {
            vent.send(Message::from(payload.clone())).await.unwrap();
        }
        vent
    });
    for _ in 0..tasks {
        sink.recv().await.unwrap();
    }
    let rate = Rate::of(tasks, start.elapsed(), cpu_time() - cpu);
    drop(sender.await);
    for w in workers {
        w.abort();
    }
    rate
}

fn settings(port: u16) -> Settings {
    Settings::new(
        Node::builder()
            .loopback()
            .port(port)
            .interval(Duration::from_millis(100)),
    )
    .pipeline("bench")
    .timing(Timing {
        heartbeat: Duration::from_millis(100),
        peer_timeout: Duration::from_millis(500),
        lost_after: Duration::from_millis(300),
        task_timeout: Duration::from_secs(10),
    })
}

struct Cluster {
    client: Client,
    workers: Vec<Worker>,
}

async fn cluster() -> Cluster {
    let port = harmony_testkit::free_udp_port();
    let options = WorkerOptions {
        jobs: 64,
        window: Some(arg::<u32>("--window", 256)),
        attempts: 1,
    };
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let echo = |task: Bytes| async move { Ok::<_, std::convert::Infallible>(task) };
        workers.push(Worker::start(settings(port), options, echo).await.unwrap());
    }
    let mut collector = Collector::start(settings(port)).await.unwrap();
    tokio::spawn(async move { while collector.recv().await.is_ok() {} });
    let client = Client::start(settings(port)).await.unwrap();
    // Warm-up: everyone found everyone, connections are up.
    let tasks = vec![Bytes::from(vec![7u8; PAYLOAD]); 1000];
    client.submit(tasks).await.unwrap().wait().await.unwrap();
    Cluster { client, workers }
}

/// One batch of `tasks` echo tasks; with `kill`, one worker dies when half are in. The time
/// it took, the tasks resent, and the process's CPU time meanwhile.
async fn batch(c: &mut Cluster, tasks: usize, kill: bool) -> (Duration, u64, Duration) {
    let payload = vec![Bytes::from(vec![7u8; PAYLOAD]); tasks];
    let (start, cpu) = (Instant::now(), cpu_time());
    let mut b = c.client.submit(payload).await.unwrap();
    if kill {
        while let Some(p) = b.next_progress().await {
            if p.done as usize >= tasks / 2 {
                break;
            }
        }
        c.workers.remove(0).kill();
    }
    let summary = b.wait().await.unwrap();
    (start.elapsed(), summary.resent, cpu_time() - cpu)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let tasks: usize = arg("--tasks", 200_000);
    let recovery_tasks: usize = arg("--recovery-tasks", 10_000);
    let rounds: usize = arg("--rounds", 3).max(1);

    let mut c = cluster().await;
    let (mut raw, mut reliable) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(push_pull(tasks).await);
        let (elapsed, resent, cpu) = batch(&mut c, tasks, false).await;
        assert_eq!(resent, 0);
        reliable.push(Rate::of(tasks, elapsed, cpu));
    }

    let (clean, ..) = batch(&mut c, recovery_tasks, false).await;
    let (killed, resent, _) = batch(&mut c, recovery_tasks, true).await;

    let rate = |r: &[Rate]| median(r.iter().map(|r| r.per_second).collect());
    let cpu = |r: &[Rate]| median(r.iter().map(|r| r.cpu_us).collect());
    let (raw_rate, rate) = (rate(&raw), rate(&reliable));
    let each: Vec<String> = raw
        .iter()
        .zip(&reliable)
        .map(|(b, p)| format!("{:.2}", p.per_second / b.per_second))
        .collect();
    println!("pipeline benchmark, loopback, {PAYLOAD} B echo tasks, {WORKERS} in-process workers");
    println!(
        "throughput: median of {rounds} alternating rounds of {tasks} tasks; CPU = whole process"
    );
    println!("{:<52} {:>14} {:>10}", "measurement", "figure", "ratio");
    println!(
        "{:<52} {:>10.0} k/s {:>10}",
        "bare PUSH/PULL ventilator-workers-sink (baseline)",
        raw_rate / 1e3,
        "1.00"
    );
    println!(
        "{:<52} {:>10.0} k/s {:>9.2}x",
        format!("reliable pipeline, batches of {tasks}"),
        rate / 1e3,
        rate / raw_rate
    );
    println!(
        "{:<52} {:>14} {:>10}",
        "  ratio in each round",
        each.join(" "),
        ""
    );
    println!(
        "{:<52} {:>10.2} us {:>10}",
        "CPU per task, bare PUSH/PULL",
        cpu(&raw),
        "1.00"
    );
    println!(
        "{:<52} {:>10.2} us {:>9.2}x",
        "CPU per task, reliable pipeline",
        cpu(&reliable),
        cpu(&reliable) / cpu(&raw)
    );
    println!(
        "{:<52} {:>11.0} ms {:>10}",
        format!("batch of {recovery_tasks}, no failure"),
        clean.as_secs_f64() * 1e3,
        ""
    );
    println!(
        "{:<52} {:>11.0} ms {:>9.2}x",
        format!("same, one worker killed half-way ({resent} resent)"),
        killed.as_secs_f64() * 1e3,
        killed.as_secs_f64() / clean.as_secs_f64()
    );
    println!(
        "{:<52} {:>11.0} ms {:>10}",
        "recovery cost (killed - no failure; target < 1000)",
        (killed.as_secs_f64() - clean.as_secs_f64()) * 1e3,
        ""
    );
}
