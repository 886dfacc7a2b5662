//! Interop with libzmq through pyzmq (tests/py/peer.py), both directions for every socket pair.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use harmony_security::{KeyPair, MechanismConfig, StandardAuthenticator};
use harmony_zmtp::{
    DealerSocket, Message, PubSocket, PullSocket, PushSocket, RouterSocket, SocketOptions,
    SubSocket,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(60);
const COUNT: u32 = 10_000;
const BIG: usize = 1 << 20;

/// A running `peer.py`.
struct Py {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stdin: ChildStdin,
}

impl Py {
    async fn start(args: &[&str]) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/peer.py");
        let mut child = Command::new(harmony_testkit::python())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start peer.py");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stdin = child.stdin.take().unwrap();
        Self {
            child,
            lines,
            stdin,
        }
    }

    async fn line(&mut self) -> String {
        let line = timeout(T, self.lines.next_line())
            .await
            .expect("peer.py said nothing in time")
            .expect("read peer.py output");
        let line = line.expect("peer.py ended without a result");
        assert!(!line.starts_with("FAIL"), "peer.py: {line}");
        line
    }

    /// The endpoint from the `READY <endpoint>` line.
    async fn ready(&mut self) -> String {
        let line = self.line().await;
        line.strip_prefix("READY ")
            .unwrap_or_else(|| panic!("expected READY, got {line}"))
            .to_owned()
    }

    async fn expect(&mut self, what: &str) {
        let line = self.line().await;
        assert_eq!(line, what);
    }

    async fn expect_ok_and_exit(mut self) {
        self.expect("OK").await;
        let status = timeout(T, self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "peer.py exited with {status}");
    }

    async fn exit(mut self) {
        let status = timeout(T, self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "peer.py exited with {status}");
    }

    async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }
}

fn opts() -> SocketOptions {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SocketOptions::default().reconnect(Duration::from_millis(20), Duration::from_millis(200))
}

fn frames(parts: &[&'static [u8]]) -> Message {
    Message::from_frames(parts.iter().map(|p| Bytes::from_static(p)))
}

fn numbered(prefix: &[u8], i: u32) -> Bytes {
    [prefix, &i.to_be_bytes()].concat().into()
}

fn big(prefix: &[u8]) -> Bytes {
    let mut v = prefix.to_vec();
    v.resize(prefix.len() + BIG, b'x');
    v.into()
}

/// Harmony DEALER against a libzmq echo server (ROUTER or DEALER).
async fn dealer_client(dealer: &DealerSocket, identity: Option<&[u8]>) {
    let m = frames(&[b"a", b"", b"c"]);
    dealer.send(m.clone()).await.unwrap();
    assert_eq!(dealer.recv().await.unwrap(), m);
    let m = Message::from(big(b""));
    dealer.send(m.clone()).await.unwrap();
    assert_eq!(dealer.recv().await.unwrap(), m);
    for start in (0..COUNT).step_by(500) {
        for i in start..start + 500 {
            dealer.send(numbered(b"", i)).await.unwrap();
        }
        for i in start..start + 500 {
            assert_eq!(dealer.recv().await.unwrap()[0], numbered(b"", i));
        }
    }
    if let Some(id) = identity {
        dealer.send("whoami").await.unwrap();
        let m = dealer.recv().await.unwrap();
        assert_eq!(
            m.frames(),
            &[Bytes::from_static(b"whoami"), Bytes::copy_from_slice(id)]
        );
    }
}

async fn quit(dealer: &DealerSocket) {
    dealer.send("quit").await.unwrap();
    assert_eq!(dealer.recv().await.unwrap()[0], "bye");
}

/// Harmony ROUTER echo server for a libzmq DEALER client; ends on "quit".
async fn router_echo(router: &RouterSocket) {
    loop {
        let m = router.recv().await.unwrap();
        let id = m[0].clone();
        match &m.frames()[1..] {
            [w] if w == "whoami" => {
                router
                    .send(Message::from_frames([id.clone(), w.clone(), id]))
                    .await
                    .unwrap();
            }
            [q] if q == "quit" => {
                router
                    .send(Message::from_frames([id, Bytes::from_static(b"bye")]))
                    .await
                    .unwrap();
                return;
            }
            _ => router.send(m).await.unwrap(),
        }
    }
}

/// Harmony DEALER echo server; ends on "quit".
async fn dealer_echo(dealer: &DealerSocket) {
    loop {
        let m = dealer.recv().await.unwrap();
        if m.len() == 1 && m[0] == "quit" {
            dealer.send("bye").await.unwrap();
            return;
        }
        dealer.send(m).await.unwrap();
    }
}

async fn send_sequence(send: impl AsyncFn(Message), prefix: &'static [u8]) {
    let mut first = Message::new();
    first.push_back(Bytes::from([prefix, b"a"].concat()));
    first.push_back(Bytes::new());
    first.push_back(Bytes::from_static(b"c"));
    send(first).await;
    send(big(prefix).into()).await;
    for i in 0..COUNT {
        send(numbered(prefix, i).into()).await;
    }
    send(Bytes::from([prefix, b"end"].concat()).into()).await;
}

async fn expect_sequence(recv: impl AsyncFn() -> Message, prefix: &'static [u8]) {
    let m = recv().await;
    assert_eq!(
        m.frames(),
        &[
            Bytes::from([prefix, b"a"].concat()),
            Bytes::new(),
            Bytes::from_static(b"c")
        ]
    );
    assert_eq!(recv().await[0], big(prefix));
    for i in 0..COUNT {
        assert_eq!(recv().await[0], numbered(prefix, i), "message {i}");
    }
    assert_eq!(recv().await[0], Bytes::from([prefix, b"end"].concat()));
}

#[tokio::test]
async fn dealer_to_libzmq_router() {
    timeout(T, async {
        let mut py = Py::start(&["router-echo", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts().identity(&b"rs-dealer"[..]));
        dealer.connect(&ep).await.unwrap();
        tokio::select! {
            _ = dealer_client(&dealer, Some(b"rs-dealer")) => {}
            l = py.line() => panic!("peer.py: {l}"),
        }
        quit(&dealer).await;
        py.exit().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn libzmq_dealer_to_router() {
    timeout(T, async {
        let router = RouterSocket::new(opts());
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let py = Py::start(&[
            "dealer-client",
            &ep.to_string(),
            "--identity",
            "py-dealer",
            "--expect-identity",
        ])
        .await;
        router_echo(&router).await;
        let mut py = py;
        py.ready().await;
        py.expect_ok_and_exit().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn heartbeats_with_libzmq_router() {
    timeout(T, async {
        // libzmq PINGs every 50 ms and drops us after 150 ms without traffic; we PING too.
        let mut py = Py::start(&[
            "router-echo",
            "tcp://127.0.0.1:*",
            "--bind",
            "--heartbeat",
            "50",
        ])
        .await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(
            opts()
                .identity(&b"hb"[..])
                .heartbeat_ivl(Duration::from_millis(40))
                .heartbeat_timeout(Duration::from_millis(200)),
        );
        dealer.connect(&ep).await.unwrap();
        dealer.send("hello").await.unwrap();
        assert_eq!(dealer.recv().await.unwrap()[0], "hello");
        tokio::time::sleep(Duration::from_secs(1)).await; // idle: only heartbeats
        assert_eq!(dealer.peer_count(), 1);
        dealer.send("disconnects").await.unwrap();
        let m = dealer.recv().await.unwrap();
        assert_eq!(m.frames(), &[&b"disconnects"[..], b"0"]);
        quit(&dealer).await;
        py.exit().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn heartbeats_from_libzmq_dealer() {
    timeout(T, async {
        let router = RouterSocket::new(opts().heartbeat_ivl(Duration::from_millis(40)));
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let mut py = Py::start(&[
            "dealer-client",
            &ep.to_string(),
            "--identity",
            "hb",
            "--heartbeat",
            "50",
        ])
        .await;
        py.ready().await;
        router_echo(&router).await;
        py.expect_ok_and_exit().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dealer_to_libzmq_dealer() {
    timeout(T, async {
        let mut py = Py::start(&["dealer-echo", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts());
        dealer.connect(&ep).await.unwrap();
        dealer_client(&dealer, None).await;
        quit(&dealer).await;
        py.exit().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn libzmq_dealer_to_dealer() {
    timeout(T, async {
        let dealer = DealerSocket::new(opts());
        let ep = dealer.bind("tcp://127.0.0.1:0").await.unwrap();
        let mut py = Py::start(&["dealer-client", &ep.to_string()]).await;
        py.ready().await;
        dealer_echo(&dealer).await;
        py.expect_ok_and_exit().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn push_to_libzmq_pull() {
    timeout(T, async {
        let mut py = Py::start(&["pull", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let push = PushSocket::new(opts());
        push.connect(&ep).await.unwrap();
        send_sequence(async |m| push.send(m).await.unwrap(), b"").await;
        py.expect_ok_and_exit().await;
        push.close().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn libzmq_push_to_pull() {
    timeout(T, async {
        let pull = PullSocket::new(opts());
        let ep = pull.bind("tcp://[::1]:0").await.unwrap();
        let mut py = Py::start(&["push", &ep.to_string()]).await;
        py.ready().await;
        expect_sequence(async || pull.recv().await.unwrap(), b"").await;
        py.expect_ok_and_exit().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pub_to_libzmq_sub() {
    timeout(T, async {
        let publisher = PubSocket::new(opts().send_hwm(100_000));
        let ep = publisher.bind("tcp://127.0.0.1:0").await.unwrap();
        let mut py = Py::start(&["sub", &ep.to_string()]).await;
        py.ready().await;
        // Publish until the libzmq SUB's subscription has arrived and it saw a message.
        {
            let synced = py.expect("SYNCED");
            tokio::pin!(synced);
            loop {
                publisher.send("Async").await.unwrap();
                publisher.send("B-not-subscribed").await.unwrap();
                if timeout(Duration::from_millis(10), &mut synced)
                    .await
                    .is_ok()
                {
                    break;
                }
            }
        }
        send_sequence(async |m| publisher.send(m).await.unwrap(), b"A").await;
        py.expect_ok_and_exit().await;
        publisher.close().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn libzmq_pub_to_sub() {
    timeout(T, async {
        let mut py = Py::start(&["pub", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let sub = SubSocket::new(opts());
        sub.subscribe("A").unwrap();
        sub.connect(&ep).await.unwrap();
        assert_eq!(sub.recv().await.unwrap()[0], "Async");
        py.say("go").await;
        let recv = async || loop {
            let m = sub.recv().await.unwrap();
            assert_ne!(m[0], "B-not-subscribed");
            if m[0] != "Async" {
                return m;
            }
        };
        expect_sequence(recv, b"A").await;
        py.expect_ok_and_exit().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dealer_reconnects_after_libzmq_restart() {
    timeout(T, async {
        let mut py = Py::start(&["router-echo", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts().identity(&b"phoenix"[..]));
        dealer.connect(&ep).await.unwrap();
        dealer.send("first").await.unwrap();
        assert_eq!(dealer.recv().await.unwrap()[0], "first");
        quit(&dealer).await;
        py.exit().await;
        // A new libzmq process on the same port.
        let mut py = Py::start(&["router-echo", &ep, "--bind"]).await;
        assert_eq!(py.ready().await, ep);
        dealer.send("again").await.unwrap();
        let m = dealer.recv().await.unwrap();
        assert_eq!(m[0], "again");
        quit(&dealer).await;
        py.exit().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn curve_dealer_to_libzmq_router() {
    timeout(T, async {
        let server = KeyPair::generate();
        let client = KeyPair::generate();
        let mut py = Py::start(&[
            "router-echo",
            "tcp://127.0.0.1:*",
            "--bind",
            &format!("--curve-server={}", &*server.secret_z85()),
        ])
        .await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts().identity(&b"curvy"[..]).mechanism(
            MechanismConfig::CurveClient {
                keys: client,
                server_key: *server.public(),
            },
        ));
        dealer.connect(&ep).await.unwrap();
        dealer_client(&dealer, Some(b"curvy")).await;
        quit(&dealer).await;
        py.exit().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn curve_libzmq_dealer_to_router() {
    timeout(T, async {
        let server = KeyPair::generate();
        let client = KeyPair::generate();
        let auth = StandardAuthenticator::new().curve_allow_key(*client.public());
        let router = RouterSocket::new(
            opts()
                .mechanism(MechanismConfig::CurveServer {
                    keys: server.clone(),
                })
                .authenticator(std::sync::Arc::new(auth)),
        );
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let keys = format!("{},{}", &*client.secret_z85(), server.public_z85());
        let mut py = Py::start(&[
            "dealer-client",
            &ep.to_string(),
            "--identity",
            "py-curve",
            "--expect-identity",
            &format!("--curve-client={keys}"),
        ])
        .await;
        py.ready().await;
        router_echo(&router).await;
        py.expect_ok_and_exit().await;
    })
    .await
    .unwrap();
}
