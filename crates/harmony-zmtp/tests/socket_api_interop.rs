//! The libzmq-style socket API against libzmq (pyzmq): the same scenario (connect, accept,
//! handshake, disconnect, reconnect, unbind) run by libzmq alone, by Harmony alone and by
//! each mixed pair gives the same monitor events on both sides; `*` binds reach and are
//! reached over IPv6 and IPv4.

mod support;

use harmony_zmtp::{DealerSocket, RouterSocket};
use support::{opts, Py, Watch};

/// Router events compared: LISTENING, ACCEPTED, HANDSHAKE_SUCCEEDED, DISCONNECTED (the dealer
/// disconnected), ACCEPTED, HANDSHAKE_SUCCEEDED (it came back), CLOSED (unbind).
const ROUTER_EVENTS: usize = 7;
/// Dealer events compared: two connections, the drop caused by unbind, and the first refused
/// retry (the retries go on after that).
const DEALER_EVENTS: usize = 11;

/// Either side: a socket with a monitor.
trait Monitored {
    /// The next `event` after the last one waited for.
    async fn wait(&mut self, event: &str);
    /// The names of the first `n` events.
    async fn events(&mut self, n: usize) -> Vec<String>;
}

/// One side of the scenario: a monitored ROUTER.
trait RouterSide: Monitored {
    fn endpoint(&self) -> String;
    async fn recv(&mut self) -> String;
    async fn unbind(&mut self);
    /// Closes the socket; every event up to MONITOR_STOPPED.
    async fn close(self) -> Vec<String>;
}

/// The other side: a monitored DEALER of one endpoint.
trait DealerSide: Monitored {
    async fn connect(&mut self);
    async fn disconnect(&mut self);
    async fn send(&mut self, text: &str);
    /// Closes the socket; every event up to MONITOR_STOPPED.
    async fn close(self) -> Vec<String>;
}

/// A Harmony socket, its monitor, and the endpoint it is bound or connects to.
struct Harmony<S> {
    socket: S,
    watch: Watch,
    endpoint: String,
}

impl Harmony<RouterSocket> {
    async fn router(at: &str) -> Self {
        let socket = RouterSocket::new(opts());
        let watch = Watch::new(socket.monitor());
        let endpoint = socket.bind(at).await.unwrap().to_string();
        Self {
            socket,
            watch,
            endpoint,
        }
    }
}

impl Harmony<DealerSocket> {
    fn dealer(endpoint: &str) -> Self {
        let socket = DealerSocket::new(opts());
        let watch = Watch::new(socket.monitor());
        Self {
            socket,
            watch,
            endpoint: endpoint.to_owned(),
        }
    }
}

impl<S> Harmony<S> {
    /// Every event up to MONITOR_STOPPED, once the socket is closing.
    async fn all_events(mut self) -> Vec<String> {
        self.watch.wait("MONITOR_STOPPED").await;
        self.watch.names().into_iter().map(String::from).collect()
    }
}

impl<S> Monitored for Harmony<S> {
    async fn wait(&mut self, event: &str) {
        self.watch.wait(event).await;
    }
    async fn events(&mut self, n: usize) -> Vec<String> {
        let names = self.watch.first(n).await;
        names.into_iter().map(String::from).collect()
    }
}

impl RouterSide for Harmony<RouterSocket> {
    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }
    async fn recv(&mut self) -> String {
        let m = tokio::time::timeout(support::EVENT_WAIT, self.socket.recv())
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&m[1]).into_owned()
    }
    async fn unbind(&mut self) {
        self.socket.unbind(&self.endpoint).await.unwrap();
    }
    async fn close(self) -> Vec<String> {
        self.socket.close().await;
        self.all_events().await
    }
}

impl DealerSide for Harmony<DealerSocket> {
    async fn connect(&mut self) {
        self.socket.connect(&self.endpoint).unwrap();
    }
    async fn disconnect(&mut self) {
        self.socket.disconnect(&self.endpoint).unwrap();
    }
    async fn send(&mut self, text: &str) {
        self.socket.send(text.to_owned()).await.unwrap();
    }
    async fn close(self) -> Vec<String> {
        self.socket.close().await;
        self.all_events().await
    }
}

/// monitor_peer.py playing either side.
struct Libzmq {
    py: Py,
    endpoint: String,
}

impl Libzmq {
    async fn router(at: &str) -> Self {
        let mut py = Py::monitored("router", at).await;
        let endpoint = py.ready().await;
        Self { py, endpoint }
    }

    async fn dealer(endpoint: &str) -> Self {
        let mut py = Py::monitored("dealer", endpoint).await;
        let endpoint = py.ready().await;
        Self { py, endpoint }
    }

    async fn quit(mut self) {
        self.py.say("quit").await;
        self.py.ok_and_finish().await;
    }
}

impl Monitored for Libzmq {
    async fn wait(&mut self, event: &str) {
        self.py.run(&format!("wait {event}")).await;
    }
    async fn events(&mut self, n: usize) -> Vec<String> {
        self.py.events(n).await
    }
}

impl RouterSide for Libzmq {
    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }
    async fn recv(&mut self) -> String {
        self.py.say("recv").await;
        let line = self.py.line().await;
        line.strip_prefix("GOT ").unwrap_or(&line).to_owned()
    }
    async fn unbind(&mut self) {
        self.py.run("unbind").await;
    }
    async fn close(self) -> Vec<String> {
        self.py.close_socket().await
    }
}

impl DealerSide for Libzmq {
    async fn connect(&mut self) {
        self.py.run("connect").await;
    }
    async fn disconnect(&mut self) {
        self.py.run("disconnect").await;
    }
    async fn send(&mut self, text: &str) {
        self.py.run(&format!("send {text}")).await;
    }
    async fn close(self) -> Vec<String> {
        self.py.close_socket().await
    }
}

/// Connect, talk, disconnect, reconnect, talk, unbind; returns the router's and the dealer's
/// events.
async fn lifecycle(
    router: &mut impl RouterSide,
    dealer: &mut impl DealerSide,
) -> (Vec<String>, Vec<String>) {
    dealer.connect().await;
    dealer.send("hi").await;
    assert_eq!(router.recv().await, "hi");
    dealer.wait("HANDSHAKE_SUCCEEDED").await;
    dealer.disconnect().await;
    router.wait("DISCONNECTED").await;
    dealer.connect().await;
    dealer.send("again").await;
    assert_eq!(router.recv().await, "again");
    dealer.wait("HANDSHAKE_SUCCEEDED").await;
    router.unbind().await;
    dealer.wait("DISCONNECTED").await;
    (
        router.events(ROUTER_EVENTS).await,
        dealer.events(DEALER_EVENTS).await,
    )
}

/// Connect, talk, the dealer closes, then the router (still bound) closes; returns every event
/// of the router and of the dealer.
async fn closing(
    mut router: impl RouterSide,
    mut dealer: impl DealerSide,
) -> (Vec<String>, Vec<String>) {
    dealer.connect().await;
    dealer.send("hi").await;
    assert_eq!(router.recv().await, "hi");
    dealer.wait("HANDSHAKE_SUCCEEDED").await;
    let dealer_events = dealer.close().await;
    router.wait("DISCONNECTED").await;
    (router.close().await, dealer_events)
}

#[tokio::test]
async fn closing_sockets_report_what_libzmq_reports() {
    let lr = Libzmq::router("tcp://127.0.0.1:0").await;
    let ld = Libzmq::dealer(&lr.endpoint()).await;
    let want = closing(lr, ld).await;
    assert_eq!(want.0.last().map(String::as_str), Some("MONITOR_STOPPED"));
    assert!(want.0.contains(&"CLOSED".to_owned()), "{want:?}");

    let hr = Harmony::router("tcp://127.0.0.1:0").await;
    let hd = Harmony::dealer(&hr.endpoint());
    assert_eq!(closing(hr, hd).await, want, "Harmony on both sides");

    let hr = Harmony::router("tcp://127.0.0.1:0").await;
    let ld = Libzmq::dealer(&hr.endpoint()).await;
    assert_eq!(closing(hr, ld).await, want, "Harmony router, libzmq dealer");

    let lr = Libzmq::router("tcp://127.0.0.1:0").await;
    let hd = Harmony::dealer(&lr.endpoint());
    assert_eq!(closing(lr, hd).await, want, "libzmq router, Harmony dealer");
}

#[tokio::test]
async fn monitor_events_match_libzmq_for_the_same_scenario() {
    // The reference: libzmq on both sides.
    let mut lr = Libzmq::router("tcp://127.0.0.1:0").await;
    let mut ld = Libzmq::dealer(&lr.endpoint()).await;
    let (want_router, want_dealer) = lifecycle(&mut lr, &mut ld).await;
    lr.quit().await;
    ld.quit().await;
    // What libzmq 4.3 reports, so that a change of helper or library shows here first.
    assert_eq!(want_router.iter().filter(|e| *e == "ACCEPTED").count(), 2);
    assert_eq!(want_router.last().map(String::as_str), Some("CLOSED"));
    assert!(want_dealer.contains(&"DISCONNECTED".to_owned()));

    // Harmony on both sides.
    let mut hr = Harmony::router("tcp://127.0.0.1:0").await;
    let mut hd = Harmony::dealer(&hr.endpoint());
    let (router, dealer) = lifecycle(&mut hr, &mut hd).await;
    assert_eq!(router, want_router, "Harmony router vs libzmq router");
    assert_eq!(dealer, want_dealer, "Harmony dealer vs libzmq dealer");

    // Harmony ROUTER (unbind) with a libzmq DEALER (disconnect).
    let mut hr = Harmony::router("tcp://127.0.0.1:0").await;
    let mut ld = Libzmq::dealer(&hr.endpoint()).await;
    let (router, dealer) = lifecycle(&mut hr, &mut ld).await;
    ld.quit().await;
    assert_eq!(router, want_router, "Harmony router with a libzmq dealer");
    assert_eq!(dealer, want_dealer, "libzmq dealer with a Harmony router");

    // libzmq ROUTER (unbind) with a Harmony DEALER (disconnect).
    let mut lr = Libzmq::router("tcp://127.0.0.1:0").await;
    let mut hd = Harmony::dealer(&lr.endpoint());
    let (router, dealer) = lifecycle(&mut lr, &mut hd).await;
    lr.quit().await;
    assert_eq!(router, want_router, "libzmq router with a Harmony dealer");
    assert_eq!(dealer, want_dealer, "Harmony dealer with a libzmq router");
}

fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok()
}

#[tokio::test]
async fn star_binds_meet_libzmq_over_ipv6_and_ipv4() {
    let v6 = ipv6_loopback();
    if !v6 {
        eprintln!("no IPv6 loopback here: only the IPv4 half runs");
    }
    // libzmq dealers reach a Harmony `*` bind by both families.
    let mut hr = Harmony::router("tcp://*:0").await;
    let port = hr.endpoint().rsplit_once(':').unwrap().1.to_owned();
    let mut targets = vec![format!("tcp://127.0.0.1:{port}")];
    if v6 {
        assert!(
            hr.endpoint().starts_with("tcp://[::]:"),
            "{}",
            hr.endpoint()
        );
        targets.push(format!("tcp://[::1]:{port}"));
    }
    for target in &targets {
        let mut ld = Libzmq::dealer(target).await;
        ld.connect().await;
        ld.send("from libzmq").await;
        assert_eq!(hr.recv().await, "from libzmq");
        ld.quit().await;
    }
    // A Harmony dealer reaches a libzmq `*` bind (IPv6 on: dual stack) by both families.
    let mut lr = Libzmq::router("tcp://*:0").await;
    let port = lr.endpoint().rsplit_once(':').unwrap().1.to_owned();
    let mut targets = vec![format!("tcp://127.0.0.1:{port}")];
    if v6 {
        targets.push(format!("tcp://[::1]:{port}"));
    }
    for target in &targets {
        let mut hd = Harmony::dealer(target);
        hd.connect().await;
        hd.send("from harmony").await;
        assert_eq!(lr.recv().await, "from harmony");
    }
    lr.quit().await;
}
