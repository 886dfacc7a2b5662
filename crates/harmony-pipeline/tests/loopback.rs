//! The tokio drivers on real loopback sockets: discovery through ZRE, tasks on ZMTP.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use harmony_node::{Event, Node, Uuid, PUBLIC_KEY_HEADER};
use harmony_pipeline::{
    Client, Collector, CollectorEvent, Settings, Worker, WorkerOptions, ENDPOINT_HEADER,
    ROLE_HEADER,
};
use harmony_security::KeyPair;
use harmony_zmtp::{DealerSocket, MechanismConfig, SocketOptions};
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

/// One worker running `work` with `opts`, a collector (its events) and a client.
async fn one_of_each<F, Fut>(
    port: u16,
    opts: WorkerOptions,
    work: F,
) -> (Worker, mpsc::UnboundedReceiver<CollectorEvent>, Client)
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Bytes, String>> + Send + 'static,
{
    let worker = Worker::start(settings(port), opts, work).await.unwrap();
    let rx = collect(Collector::start(settings(port)).await.unwrap());
    let client = Client::start(settings(port)).await.unwrap();
    (worker, rx, client)
}

/// Submits `tasks`, waits until the client has every result acknowledged, and returns the
/// collector's results (see [`results_of`]).
async fn run_batch(
    client: &Client,
    tasks: &[String],
    rx: &mut mpsc::UnboundedReceiver<CollectorEvent>,
) -> BTreeMap<u32, (bool, Bytes)> {
    let batch = client.submit(tasks.to_vec()).await.unwrap();
    let id = batch.id();
    timeout(LIMIT, batch.wait())
        .await
        .expect("in time")
        .unwrap();
    results_of(rx, id).await
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

/// The worker polls its tasks itself: a task that waits (a timer) still completes beside quick
/// ones, and a task that panics is reported as failed with the panic's text, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_and_panicking_tasks_are_reported_beside_quick_ones() {
    let port = harmony_testkit::free_udp_port();
    let work = |task: Bytes| async move {
        if task.starts_with(b"panic") {
            panic!("boom {}", String::from_utf8_lossy(&task));
        }
        if task.starts_with(b"wait") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, String>(Bytes::from(task.to_ascii_uppercase()))
    };
    let opts = WorkerOptions {
        jobs: 4,
        attempts: 2,
        ..WorkerOptions::default()
    };
    let (worker, mut rx, client) = one_of_each(port, opts, work).await;
    let tasks: Vec<String> = (0..60)
        .map(|i| match i % 10 {
            3 => format!("panic {i}"),
            5 | 6 => format!("wait {i}"),
            _ => format!("task {i}"),
        })
        .collect();
    let got = run_batch(&client, &tasks, &mut rx).await;
    for (i, task) in tasks.iter().enumerate() {
        let (failed, result) = &got[&(i as u32)];
        if task.starts_with("panic") {
            assert!(failed, "task {i} panicked: a failure");
            assert_eq!(
                result,
                &Bytes::from(format!("the task panicked: boom {task}"))
            );
        } else {
            assert!(!failed, "task {i}");
            assert_eq!(result, &Bytes::from(task.to_uppercase()));
        }
    }
    client.stop().await;
    worker.stop().await;
}

/// Retries: a task failing at its first attempt, at once or after waiting, succeeds at its
/// second; a task failing every time is reported failed after `attempts` runs, with its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_retried_and_the_last_error_reported() {
    let port = harmony_testkit::free_udp_port();
    let runs: Arc<Mutex<BTreeMap<Bytes, u32>>> = Arc::default();
    let counted = runs.clone();
    let work = move |task: Bytes| {
        let run = {
            let mut runs = counted.lock().expect("runs");
            let n = runs.entry(task.clone()).or_default();
            *n += 1;
            *n
        };
        async move {
            if task.starts_with(b"slow") {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if task.starts_with(b"never") || run == 1 {
                return Err(format!("run {run} of {}", String::from_utf8_lossy(&task)));
            }
            Ok(Bytes::from(task.to_ascii_uppercase()))
        }
    };
    let opts = WorkerOptions {
        jobs: 4,
        attempts: 3,
        ..WorkerOptions::default()
    };
    let (worker, mut rx, client) = one_of_each(port, opts, work).await;
    let tasks: Vec<String> = (0..30)
        .map(|i| match i % 3 {
            0 => format!("quick {i}"),
            1 => format!("slow {i}"),
            _ => format!("never {i}"),
        })
        .collect();
    let got = run_batch(&client, &tasks, &mut rx).await;
    for (i, task) in tasks.iter().enumerate() {
        let (failed, result) = &got[&(i as u32)];
        if task.starts_with("never") {
            assert!(failed, "task {i}");
            assert_eq!(result, &Bytes::from(format!("run 3 of {task}")));
        } else {
            assert!(!failed, "task {i}");
            assert_eq!(result, &Bytes::from(task.to_uppercase()));
            assert_eq!(
                runs.lock().unwrap()[task.as_bytes()],
                2,
                "task {i} ran twice"
            );
        }
    }
    client.stop().await;
    worker.stop().await;
}

/// Encrypted mode: the pipeline sockets are CURVE (server keys from `X-PUBLICKEY`); a batch
/// runs through encrypted members, and a plaintext worker of the same pipeline is never given
/// a task (nobody is downgraded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curve_members_run_a_batch_and_a_plaintext_worker_gets_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let port = harmony_testkit::free_udp_port();
    let curve = |port| support::curve_settings(port, "secret");
    let plain_runs = Arc::new(AtomicUsize::new(0));
    let runs = plain_runs.clone();
    let plain = move |task: Bytes| {
        runs.fetch_add(1, Ordering::SeqCst);
        work(task)
    };
    let opts = WorkerOptions {
        jobs: 2,
        ..WorkerOptions::default()
    };
    let plain_worker = Worker::start(support::settings(port, "secret"), opts, plain)
        .await
        .unwrap();
    let worker = Worker::start(curve(port), opts, work).await.unwrap();
    let mut rx = collect(Collector::start(curve(port)).await.unwrap());
    let client = Client::start(curve(port)).await.unwrap();
    let tasks: Vec<String> = (0..200).map(|i| format!("task {i}")).collect();
    let got = run_batch(&client, &tasks, &mut rx).await;
    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(got[&(i as u32)], (false, Bytes::from(task.to_uppercase())));
    }
    assert_eq!(
        plain_runs.load(Ordering::SeqCst),
        0,
        "the plaintext worker ran a task"
    );

    // The collector's pipeline socket itself is a CURVE server of the key it advertises: a
    // CURVE client of that key completes the handshake, a plaintext one does not.
    let (endpoint, key) = advertised(port, "collector").await;
    let dealer = |mechanism| {
        DealerSocket::new(
            SocketOptions::default()
                .identity(Bytes::from_static(b"\x01probe"))
                .mechanism(mechanism),
        )
    };
    let server_key = harmony_security::public_key_from_z85(&key).expect("a Z85 key");
    let secure = dealer(MechanismConfig::CurveClient {
        keys: KeyPair::generate(),
        server_key,
    });
    secure.connect(&endpoint).unwrap();
    timeout(LIMIT, secure.wait_for_peers(1))
        .await
        .expect("a CURVE client of the advertised key is accepted");
    let plaintext = dealer(MechanismConfig::Null);
    plaintext.connect(&endpoint).unwrap();
    let refused = timeout(Duration::from_millis(500), plaintext.wait_for_peers(1)).await;
    assert!(refused.is_err(), "a plaintext DEALER was accepted");
    client.stop().await;
    worker.stop().await;
    plain_worker.stop().await;
}

/// The pipeline endpoint and Z85 CURVE key advertised by the member with `role`, seen by an
/// encrypted node of our own.
async fn advertised(port: u16, role: &str) -> (String, String) {
    let mut node = Node::builder()
        .loopback()
        .port(port)
        .interval(Duration::from_millis(100))
        .curve(KeyPair::generate())
        .start()
        .await
        .expect("node");
    let found = timeout(LIMIT, async {
        loop {
            let event = node.next_event().await.expect("the node runs");
            let Event::Enter { headers, .. } = event else {
                continue;
            };
            let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if header(ROLE_HEADER).as_deref() == Some(role) {
                if let (Some(e), Some(k)) = (header(ENDPOINT_HEADER), header(PUBLIC_KEY_HEADER)) {
                    return (e, k);
                }
            }
        }
    })
    .await
    .expect("the member is seen");
    let _ = node.stop().await;
    found
}
