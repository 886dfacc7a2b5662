//! Hostile input on real sockets: malformed frames, results for unknown batches, task numbers
//! out of range, results naming another client, a huge declared batch, messages from strangers.
//! Each is refused with a clear log line, and a batch running meanwhile completes with every
//! result exactly once.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use harmony_node::{Event, Node, Uuid};
use harmony_pipeline::{
    group_name, Client, Collector, CollectorEvent, Settings, Worker, WorkerOptions,
    ENDPOINT_HEADER, ROLE_HEADER,
};
use harmony_wire::pipeline::{PipelineMessage, ResultItem, TaskResult};
use harmony_zmtp::{DealerSocket, Message, SocketOptions};
use tokio::time::{timeout, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// Everything logged in this test process.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn install() -> Self {
        let log = Self::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter("harmony_pipeline=warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        log
    }

    fn contains(&self, text: &str) -> bool {
        String::from_utf8_lossy(&self.0.lock().expect("log")).contains(text)
    }
}

fn settings(port: u16) -> Settings {
    support::settings(port, "hostile")
}

/// A raw member of the pipeline with `role` in its headers, and a DEALER to the collector.
async fn intruder(port: u16, role: &str) -> (Node, DealerSocket, String) {
    let mut node = Node::builder()
        .loopback()
        .port(port)
        .interval(Duration::from_millis(100))
        .header(ROLE_HEADER, role)
        .header(ENDPOINT_HEADER, "tcp://127.0.0.1:9")
        .start()
        .await
        .expect("node");
    node.join(group_name("hostile")).await.expect("join");
    let endpoint = timeout(LIMIT, async {
        loop {
            if let Some(Event::Enter { headers, .. }) = node.next_event().await {
                let role = headers.iter().find(|(k, _)| k == ROLE_HEADER);
                let endpoint = headers.iter().find(|(k, _)| k == ENDPOINT_HEADER);
                if let (Some((_, r)), Some((_, e))) = (role, endpoint) {
                    if r == "collector" {
                        return e.clone();
                    }
                }
            }
        }
    })
    .await
    .expect("the collector is found");
    let mut id = vec![1u8];
    id.extend_from_slice(node.uuid().as_bytes());
    let dealer = DealerSocket::new(SocketOptions::default().identity(id));
    dealer.connect(&endpoint).expect("connect");
    (node, dealer, endpoint)
}

/// Sends `frame` every 100 ms until `line` is logged (the collector may not know the sender
/// yet the first times).
async fn refused(log: &Log, dealer: &DealerSocket, frame: Bytes, line: &str) {
    let deadline = Instant::now() + LIMIT;
    while !log.contains(line) {
        assert!(Instant::now() < deadline, "never logged: {line}");
        dealer
            .send(Message::from(frame.clone()))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn result(client: Uuid, batch: Uuid, task: u32) -> Bytes {
    results(client, batch, &[task])
}

/// One RESULT message carrying a forged outcome for each of `tasks`.
fn results(client: Uuid, batch: Uuid, tasks: &[u32]) -> Bytes {
    PipelineMessage::Result(TaskResult {
        client,
        batch,
        results: tasks
            .iter()
            .map(|&task| ResultItem {
                task,
                failed: false,
                payload: Bytes::from_static(b"forged"),
            })
            .collect(),
    })
    .to_bytes()
    .expect("encodable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_refused_and_a_running_batch_is_untouched() {
    let log = Log::install();
    let port = harmony_testkit::free_udp_port();
    let slow = |task: Bytes| async move {
        tokio::time::sleep(Duration::from_millis(3)).await;
        Ok::<_, String>(task)
    };
    let worker = Worker::start(settings(port), WorkerOptions::default(), slow)
        .await
        .unwrap();
    let mut collector = Collector::start(settings(port)).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = collector.recv().await {
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    let client = Client::start(settings(port)).await.unwrap();
    let batch = client
        .submit((0..300).map(|i| format!("{i}")))
        .await
        .unwrap();
    let id = batch.id();

    let (_fake_worker, dealer, endpoint) = intruder(port, "worker").await;
    refused(
        &log,
        &dealer,
        Bytes::from_static(b"\xAA\xA4\x03\x01garbage"),
        "refused malformed pipeline message",
    )
    .await;
    refused(
        &log,
        &dealer,
        result(client.uuid(), Uuid::from_u128(1), 0),
        "refused RESULT: unknown batch",
    )
    .await;
    refused(
        &log,
        &dealer,
        result(client.uuid(), id, 300),
        "refused RESULT: task out of range",
    )
    .await;
    refused(
        &log,
        &dealer,
        result(Uuid::from_u128(2), id, 0),
        "refused RESULT: names another client",
    )
    .await;
    // Batched messages: one entry out of range refuses the whole RESULT (that none of it is
    // taken is the collector core's unit test); a declared count that does not match the
    // entries is malformed.
    refused(
        &log,
        &dealer,
        results(client.uuid(), id, &[1, 2, 301, 3]),
        "task=301 size=300",
    )
    .await;
    let mut miscounted = results(client.uuid(), id, &[4, 5]).to_vec();
    miscounted[4 + 32..4 + 36].copy_from_slice(&3u32.to_be_bytes());
    refused(
        &log,
        &dealer,
        Bytes::from(miscounted),
        "error=truncated RESULT task",
    )
    .await;
    let start = PipelineMessage::Start {
        batch: Uuid::from_u128(3),
        size: u32::MAX,
    }
    .to_bytes()
    .unwrap();
    refused(
        &log,
        &dealer,
        start.clone(),
        "refused: not a message this peer may send a collector",
    )
    .await;
    let (_fake_client, dealer, _) = intruder(port, "client").await;
    refused(&log, &dealer, start, "refused START: batch too large").await;

    // Strangers, not in the pipeline's group at all: one with a well-formed identity, one not.
    let mut identity = vec![1u8];
    identity.extend_from_slice(Uuid::from_u128(4).as_bytes());
    let stranger = DealerSocket::new(SocketOptions::default().identity(identity));
    stranger.connect(&endpoint).unwrap();
    let frame = result(client.uuid(), id, 0);
    refused(
        &log,
        &stranger,
        frame.clone(),
        "refused: not a peer of this pipeline",
    )
    .await;
    let odd = DealerSocket::new(SocketOptions::default().identity(&b"mallory"[..]));
    odd.connect(&endpoint).unwrap();
    refused(
        &log,
        &odd,
        frame,
        "the sender's identity is not 0x01 + UUID",
    )
    .await;

    let summary = timeout(LIMIT, batch.wait())
        .await
        .expect("in time")
        .unwrap();
    assert_eq!(summary.tasks, 300);
    let mut got: BTreeMap<u32, Bytes> = BTreeMap::new();
    timeout(LIMIT, async {
        while let Some(ev) = rx.recv().await {
            match ev {
                CollectorEvent::Result {
                    batch,
                    task,
                    payload,
                    ..
                } if batch == id => {
                    assert!(got.insert(task, payload).is_none(), "task {task} twice");
                }
                CollectorEvent::BatchComplete { batch, .. } if batch == id => return,
                _ => {}
            }
        }
    })
    .await
    .expect("the batch completes at the collector");
    assert_eq!(got.len(), 300);
    for (task, payload) in got {
        assert_eq!(
            payload,
            Bytes::from(task.to_string()),
            "no forged result got in"
        );
    }
    client.stop().await;
    worker.stop().await;
}
