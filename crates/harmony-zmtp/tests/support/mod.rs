//! What the harmony-zmtp integration tests share: socket options, the pyzmq helper process
//! (tests/py), the traffic sequences both sides check, CURVE keys, and a raw ZMTP client.
//!
//! Each test file has `mod support;` and uses what it needs.

#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use harmony_security::{KeyPair, MechanismConfig, StandardAuthenticator};
use harmony_wire::zmtp::{
    Command as ZmtpCommand, Frame, FrameCodec, Greeting, Mechanism, Metadata, GREETING_LEN,
};
use harmony_zmtp::{
    DealerSocket, Endpoint, Message, Monitor, PubSocket, PullSocket, PushSocket, RouterSocket,
    SocketEvent, SocketOptions, SubSocket,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

// --- Socket options ---

/// Sends the tests' tracing to the test output (`RUST_LOG` filters it); once per process.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The default options with quick reconnects (20 ms, backing off to 200 ms).
pub fn opts() -> SocketOptions {
    init_tracing();
    SocketOptions::default().reconnect(Duration::from_millis(20), Duration::from_millis(200))
}

// --- Monitor events ---

/// How long a test waits for a monitor event.
pub const EVENT_WAIT: Duration = Duration::from_secs(10);

/// A socket monitor and the events it has shown so far.
pub struct Watch {
    pub mon: Monitor,
    pub seen: Vec<SocketEvent>,
    cursor: usize,
}

impl Watch {
    pub fn new(mon: Monitor) -> Self {
        Self {
            mon,
            seen: Vec::new(),
            cursor: 0,
        }
    }

    /// The names of the events seen so far.
    pub fn names(&self) -> Vec<&'static str> {
        self.seen.iter().map(|e| e.kind.name()).collect()
    }

    async fn more(&mut self) {
        let event = timeout(EVENT_WAIT, self.mon.recv())
            .await
            .unwrap_or_else(|_| panic!("no monitor event in time; seen {:?}", self.names()))
            .unwrap_or_else(|| panic!("the monitor ended; seen {:?}", self.names()));
        self.seen.push(event);
    }

    /// The next event named `name` after the last one waited for.
    pub async fn wait(&mut self, name: &str) -> SocketEvent {
        self.wait_for(|e| e.kind.name() == name).await
    }

    /// The next event `pick` chooses after the last one waited for.
    pub async fn wait_for(&mut self, pick: impl Fn(&SocketEvent) -> bool) -> SocketEvent {
        loop {
            while self.cursor < self.seen.len() {
                self.cursor += 1;
                if pick(&self.seen[self.cursor - 1]) {
                    return self.seen[self.cursor - 1].clone();
                }
            }
            self.more().await;
        }
    }

    /// The name of the next handshake failure (`HANDSHAKE_FAILED_*`).
    pub async fn handshake_failure(&mut self) -> &'static str {
        self.wait_for(|e| e.kind.name().starts_with("HANDSHAKE_FAILED"))
            .await
            .kind
            .name()
    }

    /// The names of the first `n` events.
    pub async fn first(&mut self, n: usize) -> Vec<&'static str> {
        while self.seen.len() < n {
            self.more().await;
        }
        self.names()[..n].to_vec()
    }
}

// --- The pyzmq helper process ---

/// How long a helper script may stay silent before a test gives up on it.
pub const PY_WAIT: Duration = Duration::from_secs(60);

/// A running pyzmq helper script from tests/py: one line of output per event.
pub struct Py {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stdin: ChildStdin,
}

impl Py {
    /// Starts tests/py/`script` with `args`.
    pub async fn start(script: &str, args: &[&str]) -> Self {
        let script = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(harmony_testkit::python())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the pyzmq helper");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stdin = child.stdin.take().unwrap();
        Self {
            child,
            lines,
            stdin,
        }
    }

    /// peer.py: plain libzmq sockets.
    pub async fn peer(args: &[&str]) -> Self {
        Self::start("peer.py", args).await
    }

    /// monitor_peer.py: a monitored libzmq ROUTER or DEALER driven line by line.
    pub async fn monitored(role: &str, endpoint: &str) -> Self {
        Self::start("monitor_peer.py", &[role, endpoint]).await
    }

    /// Sends a command to monitor_peer.py and checks it was carried out.
    pub async fn run(&mut self, command: &str) {
        self.say(command).await;
        self.expect("DONE").await;
    }

    /// monitor_peer.py: the names of its first `n` monitor events.
    pub async fn events(&mut self, n: usize) -> Vec<String> {
        self.say(&format!("events {n}")).await;
        self.event_names().await
    }

    /// monitor_peer.py: closes its socket; every monitor event up to MONITOR_STOPPED.
    pub async fn close_socket(mut self) -> Vec<String> {
        self.say("close").await;
        let names = self.event_names().await;
        self.finish().await;
        names
    }

    async fn event_names(&mut self) -> Vec<String> {
        let line = self.line().await;
        let names = line
            .strip_prefix("EVENTS ")
            .unwrap_or_else(|| panic!("expected EVENTS, got {line}"));
        names.split(' ').map(str::to_owned).collect()
    }

    /// sec_peer.py: libzmq guarded by ZAP.
    pub async fn sec(args: &[&str]) -> Self {
        Self::start("sec_peer.py", args).await
    }

    /// The next line, which must not be a FAIL.
    pub async fn line(&mut self) -> String {
        let line = timeout(PY_WAIT, self.lines.next_line())
            .await
            .expect("the helper said nothing in time")
            .expect("read helper output");
        let line = line.expect("the helper ended without a result");
        assert!(!line.starts_with("FAIL"), "helper: {line}");
        line
    }

    /// Skips lines up to the first one starting with `prefix`, and returns it.
    pub async fn until(&mut self, prefix: &str) -> String {
        loop {
            let line = self.line().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// The endpoint from the `READY <endpoint>` line.
    pub async fn ready(&mut self) -> String {
        let line = self.line().await;
        line.strip_prefix("READY ")
            .unwrap_or_else(|| panic!("expected READY, got {line}"))
            .to_owned()
    }

    /// The next line is `what`.
    pub async fn expect(&mut self, what: &str) {
        assert_eq!(self.line().await, what);
    }

    /// Reads the remaining output (none may be FAIL) and checks the exit status.
    pub async fn finish(mut self) {
        while let Some(line) = timeout(PY_WAIT, self.lines.next_line())
            .await
            .unwrap()
            .unwrap()
        {
            assert!(!line.starts_with("FAIL"), "helper: {line}");
        }
        let status = timeout(PY_WAIT, self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "the helper exited with {status}");
    }

    /// The next line is `OK`, then [`Py::finish`].
    pub async fn ok_and_finish(mut self) {
        self.expect("OK").await;
        self.finish().await;
    }

    /// Writes `line` to the helper's stdin.
    pub async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }
}

// --- Traffic: the same sequences as peer.py ---

/// Messages in a sequence.
pub const COUNT: u32 = 10_000;
/// Size of the big message (plus its prefix).
pub const BIG: usize = 1 << 20;

/// `prefix` + `i` (4 bytes big-endian).
pub fn numbered(prefix: &[u8], i: u32) -> Bytes {
    [prefix, &i.to_be_bytes()].concat().into()
}

/// `prefix` + [`BIG`] bytes of `x`.
pub fn big(prefix: &[u8]) -> Bytes {
    let mut v = prefix.to_vec();
    v.resize(prefix.len() + BIG, b'x');
    v.into()
}

/// Sends the sequence: [`prefix`a, "", c], big, [`COUNT`] numbered, `prefix`end.
pub async fn send_sequence(send: impl AsyncFn(Message), prefix: &'static [u8]) {
    send(Message::from_frames([
        Bytes::from([prefix, b"a"].concat()),
        Bytes::new(),
        Bytes::from_static(b"c"),
    ]))
    .await;
    send(big(prefix).into()).await;
    for i in 0..COUNT {
        send(numbered(prefix, i).into()).await;
    }
    send(Bytes::from([prefix, b"end"].concat()).into()).await;
}

/// Receives and checks the sequence of [`send_sequence`].
pub async fn expect_sequence(recv: impl AsyncFn() -> Message, prefix: &'static [u8]) {
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

/// A Harmony DEALER against a libzmq echo server (ROUTER or DEALER): multipart, 1 MiB,
/// [`COUNT`] in order, and with `identity` the ROUTER's "whoami" answer.
pub async fn dealer_client(dealer: &DealerSocket, identity: Option<&[u8]>) {
    let m = Message::from_frames([&b"a"[..], b"", b"c"].map(Bytes::from_static));
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

/// Ends a libzmq echo server: "quit" is answered with "bye".
pub async fn quit(dealer: &DealerSocket) {
    dealer.send("quit").await.unwrap();
    assert_eq!(dealer.recv().await.unwrap()[0], "bye");
}

/// A Harmony ROUTER echo server for a libzmq DEALER ("whoami" gets the identity back);
/// ends on "quit".
pub async fn router_echo(router: &RouterSocket) {
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

/// A Harmony DEALER echo server; ends on "quit".
pub async fn dealer_echo(dealer: &DealerSocket) {
    loop {
        let m = dealer.recv().await.unwrap();
        if m.len() == 1 && m[0] == "quit" {
            dealer.send("bye").await.unwrap();
            return;
        }
        dealer.send(m).await.unwrap();
    }
}

/// Publishes "Async" (and "B-not-subscribed") until peer.py's SUB has its subscription in
/// place and says SYNCED.
pub async fn sync_libzmq_sub(publisher: &PubSocket, py: &mut Py) {
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

/// The next message from peer.py's PUB that is not its "Async" warm-up (subscribed to "A",
/// so "B-not-subscribed" must never arrive).
pub async fn recv_after_sync(sub: &SubSocket) -> Message {
    loop {
        let m = sub.recv().await.unwrap();
        assert_ne!(m[0], "B-not-subscribed");
        if m[0] != "Async" {
            return m;
        }
    }
}

/// Against peer.py's echo ROUTER with heartbeats: a round trip, a second of idling (only
/// heartbeats on the wire), then the connection is still the first one (libzmq saw no
/// disconnection), then quit.
pub async fn idle_on_heartbeats(dealer: &DealerSocket) {
    dealer.send("hello").await.unwrap();
    assert_eq!(dealer.recv().await.unwrap()[0], "hello");
    // The condition under test is an idle connection: only heartbeats for a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(dealer.peer_count(), 1);
    dealer.send("disconnects").await.unwrap();
    let m = dealer.recv().await.unwrap();
    assert_eq!(m.frames(), &[&b"disconnects"[..], b"0"]);
    quit(dealer).await;
}

// --- Scenarios against peer.py, for any mechanism ---
//
// Each takes the Harmony socket's options and what to add to peer.py's arguments (its CURVE
// keys, heartbeats, identity...), runs the traffic both sides check, and ends the helper.
pub mod scenario {
    use super::*;

    /// `first` then `extra`, as one argument list.
    fn args<'a>(first: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [first, extra].concat()
    }

    /// A Harmony DEALER named `identity` connects to peer.py's echo ROUTER; any helper output
    /// before the traffic is done is a failure.
    pub async fn dealer_to_libzmq_router(
        opts: SocketOptions,
        identity: &'static [u8],
        py_args: &[&str],
    ) {
        let mut py = Py::peer(&args(
            &["router-echo", "tcp://127.0.0.1:*", "--bind"],
            py_args,
        ))
        .await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts.identity(identity));
        dealer.connect(&ep).unwrap();
        tokio::select! {
            _ = dealer_client(&dealer, Some(identity)) => {}
            l = py.line() => panic!("peer.py: {l}"),
        }
        quit(&dealer).await;
        py.finish().await;
    }

    /// peer.py's DEALER connects to a Harmony echo ROUTER.
    pub async fn libzmq_dealer_to_router(opts: SocketOptions, py_args: &[&str]) {
        let router = RouterSocket::new(opts);
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
        let mut py = Py::peer(&args(&["dealer-client", &ep], py_args)).await;
        py.ready().await;
        router_echo(&router).await;
        py.ok_and_finish().await;
    }

    /// A Harmony DEALER connects to peer.py's echo ROUTER (heartbeats set in both `opts` and
    /// `py_args`) and idles on heartbeats (see [`idle_on_heartbeats`]).
    pub async fn heartbeats_with_libzmq_router(opts: SocketOptions, py_args: &[&str]) {
        let mut py = Py::peer(&args(
            &["router-echo", "tcp://127.0.0.1:*", "--bind"],
            py_args,
        ))
        .await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts);
        dealer.connect(&ep).unwrap();
        idle_on_heartbeats(&dealer).await;
        py.finish().await;
    }

    /// A Harmony DEALER connects to peer.py's echo DEALER.
    pub async fn dealer_to_libzmq_dealer(opts: SocketOptions, py_args: &[&str]) {
        let mut py = Py::peer(&args(
            &["dealer-echo", "tcp://127.0.0.1:*", "--bind"],
            py_args,
        ))
        .await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts);
        dealer.connect(&ep).unwrap();
        dealer_client(&dealer, None).await;
        quit(&dealer).await;
        py.finish().await;
    }

    /// peer.py's DEALER connects to a Harmony echo DEALER.
    pub async fn libzmq_dealer_to_dealer(opts: SocketOptions, py_args: &[&str]) {
        let dealer = DealerSocket::new(opts);
        let ep = dealer.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
        let mut py = Py::peer(&args(&["dealer-client", &ep], py_args)).await;
        py.ready().await;
        dealer_echo(&dealer).await;
        py.ok_and_finish().await;
    }

    /// A Harmony PUSH sends the sequence to peer.py's PULL.
    pub async fn push_to_libzmq_pull(opts: SocketOptions, py_args: &[&str]) {
        let mut py = Py::peer(&args(&["pull", "tcp://127.0.0.1:*", "--bind"], py_args)).await;
        let ep = py.ready().await;
        let push = PushSocket::new(opts);
        push.connect(&ep).unwrap();
        send_sequence(async |m| push.send(m).await.unwrap(), b"").await;
        py.ok_and_finish().await;
        push.close().await;
    }

    /// peer.py's PUSH sends the sequence to a Harmony PULL bound to `bind`.
    pub async fn libzmq_push_to_pull(opts: SocketOptions, bind: &str, py_args: &[&str]) {
        let pull = PullSocket::new(opts);
        let ep = pull.bind(bind).await.unwrap().to_string();
        let mut py = Py::peer(&args(&["push", &ep], py_args)).await;
        py.ready().await;
        expect_sequence(async || pull.recv().await.unwrap(), b"").await;
        py.ok_and_finish().await;
    }

    /// A Harmony PUB sends the sequence under "A" to peer.py's SUB, once it is subscribed.
    pub async fn pub_to_libzmq_sub(opts: SocketOptions, py_args: &[&str]) {
        let publisher = PubSocket::new(opts);
        let ep = publisher
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .to_string();
        let mut py = Py::peer(&args(&["sub", &ep], py_args)).await;
        py.ready().await;
        sync_libzmq_sub(&publisher, &mut py).await;
        send_sequence(async |m| publisher.send(m).await.unwrap(), b"A").await;
        py.ok_and_finish().await;
        publisher.close().await;
    }

    /// peer.py's PUB sends the sequence under "A" to a Harmony SUB, once it is subscribed.
    pub async fn libzmq_pub_to_sub(opts: SocketOptions, py_args: &[&str]) {
        let mut py = Py::peer(&args(&["pub", "tcp://127.0.0.1:*", "--bind"], py_args)).await;
        let ep = py.ready().await;
        let sub = SubSocket::new(opts);
        sub.subscribe("A").unwrap();
        sub.connect(&ep).unwrap();
        assert_eq!(sub.recv().await.unwrap()[0], "Async");
        py.say("go").await;
        expect_sequence(async || recv_after_sync(&sub).await, b"A").await;
        py.ok_and_finish().await;
    }
}

// --- CURVE keys ---

/// `base` as a CURVE server with `keys`, letting in only the clients with the `allowed` keys.
pub fn curve_server(base: SocketOptions, keys: &KeyPair, allowed: &[&KeyPair]) -> SocketOptions {
    let auth = allowed
        .iter()
        .fold(StandardAuthenticator::new(), |auth, k| {
            auth.curve_allow_key(*k.public())
        });
    base.mechanism(MechanismConfig::CurveServer { keys: keys.clone() })
        .authenticator(Arc::new(auth))
}

/// A CURVE client with `keys`, for the server with `server`'s public key.
pub fn curve_client(keys: &KeyPair, server: &KeyPair) -> MechanismConfig {
    MechanismConfig::CurveClient {
        keys: keys.clone(),
        server_key: *server.public(),
    }
}

/// Keys of one test: the server's, a client's, and the peer.py/sec_peer.py arguments for them.
pub struct Keys {
    pub server: KeyPair,
    pub client: KeyPair,
}

impl Keys {
    /// Two fresh key pairs.
    pub fn new() -> Self {
        Self {
            server: KeyPair::generate(),
            client: KeyPair::generate(),
        }
    }

    /// Harmony as CURVE client with `self.client`.
    pub fn client_config(&self) -> MechanismConfig {
        curve_client(&self.client, &self.server)
    }

    /// Harmony as CURVE server, letting in only `self.client`.
    pub fn server_opts(&self) -> SocketOptions {
        curve_server(opts(), &self.server, &[&self.client])
    }

    /// libzmq as CURVE server.
    pub fn py_server(&self) -> String {
        format!("--curve-server={}", &*self.server.secret_z85())
    }

    /// libzmq as CURVE client with `self.client`.
    pub fn py_client(&self) -> String {
        py_curve_client(&self.client, &self.server)
    }
}

/// The helper scripts' argument for a CURVE client with `keys` and `server`'s public key.
pub fn py_curve_client(keys: &KeyPair, server: &KeyPair) -> String {
    format!(
        "--curve-client={},{}",
        &*keys.secret_z85(),
        server.public_z85()
    )
}

// --- A raw ZMTP client on TCP ---

/// How long a raw connection waits for the peer's greeting or next frame.
pub const RAW_WAIT: Duration = Duration::from_secs(10);

/// One raw TCP connection speaking ZMTP frames by hand.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: BytesMut,
    codec: FrameCodec,
}

impl Raw {
    /// Connects to `ep`.
    pub async fn connect(ep: &Endpoint) -> Self {
        Self::from(TcpStream::connect(ep.addr()).await.unwrap())
    }

    /// A raw client that has done a NULL handshake as `socket_type`, greeting with `minor`.
    pub async fn handshaken(ep: &Endpoint, socket_type: &str, minor: u8) -> Self {
        let mut raw = Self::connect(ep).await;
        let mut g = Greeting::new(Mechanism::Null, false);
        g.minor = minor;
        raw.greet_with(&g).await;
        let mut out = BytesMut::new();
        ZmtpCommand::Ready(Metadata::new().with("Socket-Type", socket_type.to_owned()))
            .encode_frame(&mut out)
            .unwrap();
        raw.write_ok(&out).await;
        let ready = raw.frame().await.expect("closed");
        assert!(matches!(
            ZmtpCommand::decode(&ready.body, 1 << 16).unwrap(),
            ZmtpCommand::Ready(_)
        ));
        raw
    }

    /// Wraps an accepted or connected stream.
    pub fn from(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            codec: FrameCodec::new(1 << 20),
        }
    }

    /// Sends our greeting (as `mechanism`'s client) and reads the peer's.
    pub async fn greet(&mut self, mechanism: Mechanism) -> Greeting {
        self.greet_as(mechanism, false).await
    }

    /// Sends our greeting (as the mechanism's server or not) and reads the peer's.
    pub async fn greet_as(&mut self, mechanism: Mechanism, as_server: bool) -> Greeting {
        self.greet_with(&Greeting::new(mechanism, as_server)).await
    }

    /// Sends `ours` and reads the peer's greeting.
    pub async fn greet_with(&mut self, ours: &Greeting) -> Greeting {
        self.write(&ours.encode().unwrap()).await;
        while self.buf.len() < GREETING_LEN {
            let n = timeout(RAW_WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("no greeting in time")
                .unwrap();
            assert_ne!(n, 0, "closed before the greeting");
        }
        Greeting::decode(&self.buf.split_to(GREETING_LEN)).unwrap()
    }

    /// The next frame, `None` when the peer closed.
    pub async fn frame(&mut self) -> Option<Frame> {
        timeout(RAW_WAIT, async {
            loop {
                if let Some(f) = self.codec.decode_frame(&mut self.buf).unwrap() {
                    return Some(f);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("no frame in time")
    }

    /// Writes `bytes`, ignoring a peer that already closed (what some tests are after).
    pub async fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Writes `bytes`, which must go out.
    pub async fn write_ok(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Encodes and writes `frames` (see [`Raw::write`]).
    pub async fn send(&mut self, frames: &[Frame]) {
        let mut out = BytesMut::new();
        for f in frames {
            f.encode(&mut out);
        }
        self.write(&out).await;
    }

    /// Reads until the peer closes the connection (EOF or reset); panics if it stays open.
    /// Whatever the peer sends meanwhile (an ERROR command at most) is ignored.
    pub async fn closed(mut self) {
        let mut scratch = vec![0u8; 64 << 10];
        let closed = timeout(Duration::from_secs(5), async {
            loop {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the server kept a bad connection open");
    }
}
