//! The tokio drivers on real loopback sockets: discovery through ZRE, tasks on ZMTP.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use harmony_node::Uuid;
use harmony_pipeline::{Client, Collector, CollectorEvent, Settings, Worker, WorkerOptions};
use tokio::sync::mpsc;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

fn settings(port: u16) -> Settings {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    support::settings(port, "test")
}

/// Upper-cases the task; tasks starting with `fail` fail every time.
async fn work(task: Bytes) -> Result<Bytes, String> {
    if task.starts_with(b"fail") {
        return Err(format!("cannot do {}", String::from_utf8_lossy(&task)));
    }
    Ok(Bytes::from(task.to_ascii_uppercase()))
}

/// Runs a collector, forwarding its events.
fn collect(mut collector: Collector) -> mpsc::UnboundedReceiver<CollectorEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = collector.recv().await {
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads results until batch `batch` completes; returns task -> (failed, result) and checks
/// that none came twice.
async fn results_of(
    rx: &mut mpsc::UnboundedReceiver<CollectorEvent>,
    batch: Uuid,
) -> BTreeMap<u32, (bool, Bytes)> {
    let mut got = BTreeMap::new();
    timeout(LIMIT, async {
        while let Some(ev) = rx.recv().await {
            match ev {
                CollectorEvent::Result {
                    batch: b,
                    task,
                    failed,
                    payload,
                    ..
                } if b == batch => {
                    assert!(
                        got.insert(task, (failed, payload)).is_none(),
                        "task {task} delivered twice"
                    );
                }
                CollectorEvent::BatchComplete { batch: b, size, .. } if b == batch => {
                    assert_eq!(got.len(), size as usize);
                    return;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("batch completes at the collector");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_on_two_workers_and_every_result_arrives_once() {
    let port = harmony_testkit::free_udp_port();
    let opts = WorkerOptions {
        jobs: 2,
        ..WorkerOptions::default()
    };
    let w1 = Worker::start(settings(port), opts, work).await.unwrap();
    let w2 = Worker::start(settings(port), opts, work).await.unwrap();
    let mut rx = collect(Collector::start(settings(port)).await.unwrap());
    let client = Client::start(settings(port)).await.unwrap();

    let tasks: Vec<String> = (0..300)
        .map(|i| {
            if i % 50 == 7 {
                format!("fail {i}")
            } else {
                format!("task {i}")
            }
        })
        .collect();
    let batch = client.submit(tasks.clone()).await.unwrap();
    let id = batch.id();
    let summary = timeout(LIMIT, batch.wait())
        .await
        .expect("in time")
        .unwrap();
    assert_eq!(summary.tasks, 300);
    let got = results_of(&mut rx, id).await;
    for (i, task) in tasks.iter().enumerate() {
        let (failed, result) = &got[&(i as u32)];
        if task.starts_with("fail") {
            assert!(failed, "task {i} should fail");
            assert_eq!(result, &Bytes::from(format!("cannot do {task}")));
        } else {
            assert!(!failed);
            assert_eq!(result, &Bytes::from(task.to_uppercase()));
        }
    }
    client.stop().await;
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing() {
    let port = harmony_testkit::free_udp_port();
    let slow = |task: Bytes| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok::<_, String>(task)
    };
    let opts = WorkerOptions::default();
    let victim = Worker::start(settings(port), opts, slow).await.unwrap();
    let other = Worker::start(settings(port), opts, slow).await.unwrap();
    let mut rx = collect(Collector::start(settings(port)).await.unwrap());
    let client = Client::start(settings(port)).await.unwrap();

    let mut batch = client
        .submit((0..400).map(|i| format!("{i}")))
        .await
        .unwrap();
    let id = batch.id();
    // Kill the victim once a quarter of the batch is in.
    timeout(LIMIT, async {
        while let Some(p) = batch.next_progress().await {
            if p.done >= 100 {
                break;
            }
        }
    })
    .await
    .expect("progress");
    victim.kill();
    let summary = timeout(LIMIT, batch.wait())
        .await
        .expect("in time")
        .unwrap();
    let got = results_of(&mut rx, id).await;
    assert_eq!(got.len(), 400);
    for (task, (failed, result)) in got {
        assert!(!failed);
        assert_eq!(result, Bytes::from(format!("{task}")));
    }
    assert_eq!(summary.tasks, 400);
    client.stop().await;
    other.stop().await;
}
