//! The libzmq-style socket API on loopback: unbind, disconnect, `*` binds on IPv6 and IPv4,
//! and the socket monitor's events.

mod support;

use std::net::Ipv6Addr;
use std::time::Duration;

use bytes::Bytes;
use harmony_security::{KeyPair, MechanismConfig};
use harmony_zmtp::{
    DealerSocket, Endpoint, EventKind, HandshakeFailure, Message, PushSocket, RouterSocket,
    SubSocket, TrySendError, ZmtpError,
};
use support::{curve_client, curve_server, opts, Raw, Watch};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// Whether this machine has IPv6 loopback (CI namespaces may lack it).
fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

async fn round_trip(router: &RouterSocket, dealer: &DealerSocket, text: &'static str) {
    dealer.send(text).await.unwrap();
    let m = timeout(WAIT, router.recv()).await.unwrap().unwrap();
    assert_eq!(m[1], text);
}

/// A monitored ROUTER on loopback and a monitored DEALER connected to it, one message through.
async fn connected_pair() -> (RouterSocket, Watch, Endpoint, DealerSocket, Watch) {
    let router = RouterSocket::new(opts());
    let rw = Watch::new(router.monitor());
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    let dealer = DealerSocket::new(opts());
    let dw = Watch::new(dealer.monitor());
    dealer.connect(&ep.to_string()).unwrap();
    round_trip(&router, &dealer, "hi").await;
    (router, rw, ep, dealer, dw)
}

#[tokio::test]
async fn monitors_see_connect_accept_handshake_disconnect_and_stop() {
    let (_router, mut rw, ep, dealer, mut dw) = connected_pair().await;
    assert_eq!(
        rw.first(3).await,
        ["LISTENING", "ACCEPTED", "HANDSHAKE_SUCCEEDED"]
    );
    assert_eq!(
        dw.first(3).await,
        ["CONNECT_DELAYED", "CONNECTED", "HANDSHAKE_SUCCEEDED"]
    );
    assert_eq!(rw.seen[0].endpoint, ep.to_string());
    assert_eq!(dw.seen[1].endpoint, ep.to_string());
    assert_eq!(dw.seen[1].peer, Some(ep.addr()));
    // The router sees the dealer's side of the connection.
    assert_eq!(rw.seen[1].peer, rw.seen[2].peer);

    // The dealer goes away: the router sees it at once.
    dealer.close().await;
    let gone = rw.wait("DISCONNECTED").await;
    assert_eq!(gone.peer, rw.seen[1].peer);
    assert_eq!(
        dw.wait("MONITOR_STOPPED").await.kind,
        EventKind::MonitorStopped
    );
    assert_eq!(
        dw.mon.recv().await,
        None,
        "the stream ends after MONITOR_STOPPED"
    );
    assert_eq!(dw.mon.dropped(), 0);
}

#[tokio::test]
async fn refused_connects_report_closed_and_retried_with_backoff() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dealer = DealerSocket::new(opts());
    let mut dw = Watch::new(dealer.monitor());
    dealer.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    assert_eq!(
        dw.first(6).await,
        [
            "CONNECT_DELAYED",
            "CLOSED",
            "CONNECT_RETRIED",
            "CONNECT_DELAYED",
            "CLOSED",
            "CONNECT_RETRIED"
        ]
    );
    let intervals: Vec<_> = dw
        .seen
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::ConnectRetried { interval } => Some(interval),
            _ => None,
        })
        .collect();
    // opts(): 20 ms, doubling up to 200 ms.
    assert_eq!(
        intervals[..2],
        [Duration::from_millis(20), Duration::from_millis(40)]
    );
}

#[tokio::test]
async fn unbind_closes_the_listener_and_the_connections_it_accepted() {
    let router = RouterSocket::new(opts());
    let mut rw = Watch::new(router.monitor());
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    let other = router.bind("tcp://127.0.0.1:0").await.unwrap();
    let (d1, d2) = (DealerSocket::new(opts()), DealerSocket::new(opts()));
    let mut w1 = Watch::new(d1.monitor());
    d1.connect(&ep.to_string()).unwrap();
    d2.connect(&other.to_string()).unwrap();
    round_trip(&router, &d1, "one").await;
    round_trip(&router, &d2, "two").await;

    router.unbind(&ep.to_string()).await.unwrap();
    assert_eq!(rw.wait("CLOSED").await.endpoint, ep.to_string());
    // The connection accepted through it is closed: the dealer sees it and retries in vain.
    w1.wait("DISCONNECTED").await;
    w1.wait("CONNECT_RETRIED").await;
    w1.wait("CLOSED").await;
    assert!(TcpStream::connect(ep.addr()).await.is_err(), "port closed");
    // The other listener and its connection go on.
    round_trip(&router, &d2, "still").await;
    assert!(matches!(
        router.unbind(&ep.to_string()).await,
        Err(ZmtpError::UnknownEndpoint(_))
    ));
    // The port is free again when unbind returns; the dealer comes back to the new listener.
    assert_eq!(router.bind(&ep.to_string()).await.unwrap(), ep);
    round_trip(&router, &d1, "back").await;
}

#[tokio::test]
async fn unbind_by_the_fixed_port_string_given_to_bind() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let router = RouterSocket::new(opts());
    let given = format!("tcp://*:{port}");
    router.bind(&given).await.unwrap();
    router.unbind(&given).await.unwrap();
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    // A wildcard port names no listener: the endpoint bind returned must be used.
    let ep = router.bind("tcp://127.0.0.1:*").await.unwrap();
    assert!(matches!(
        router.unbind("tcp://127.0.0.1:*").await,
        Err(ZmtpError::UnknownEndpoint(_))
    ));
    router.unbind(&ep.to_string()).await.unwrap();
}

#[tokio::test]
async fn disconnect_stops_reconnecting_closes_the_connection_and_drops_the_queue() {
    let (router, mut rw, ep, dealer, mut dw) = connected_pair().await;
    dw.wait("HANDSHAKE_SUCCEEDED").await;

    dealer.disconnect(&ep.to_string()).unwrap();
    rw.wait("DISCONNECTED").await;
    assert_eq!(router.peer_count(), 0);
    // Nothing left to send to: messages are not queued for the endpoint any more.
    assert!(dealer.try_send("lost").is_err());
    assert!(matches!(
        dealer.disconnect(&ep.to_string()),
        Err(ZmtpError::UnknownEndpoint(_))
    ));
    // Malformed endpoints are told apart from unknown ones (libzmq: EINVAL vs ENOENT).
    assert!(matches!(
        dealer.disconnect("tcp://nowhere"),
        Err(ZmtpError::InvalidEndpoint { .. })
    ));
    assert!(matches!(
        router.unbind("udp://127.0.0.1:1").await,
        Err(ZmtpError::InvalidEndpoint { .. })
    ));
    // No reconnect: ten reconnect intervals pass without a new connection.
    let quiet = timeout(Duration::from_millis(200), rw.wait("ACCEPTED")).await;
    assert!(quiet.is_err(), "the dealer reconnected after disconnect");
    assert_eq!(
        dw.names(),
        ["CONNECT_DELAYED", "CONNECTED", "HANDSHAKE_SUCCEEDED"],
        "our own disconnect is not reported, as in libzmq"
    );

    // Connecting again works; the same address written otherwise names the same endpoint.
    dealer.connect(&ep.to_string()).unwrap();
    round_trip(&router, &dealer, "again").await;
    let other_spelling = format!("tcp://127.0.0.1:{}", ep.port());
    dealer.disconnect(&other_spelling).unwrap();
}

/// `RouterSocket::close_peer` closes one peer's connection: its route is gone at once, the
/// peer sees the connection end and reconnects, and another peer's connection is untouched.
#[tokio::test]
async fn close_peer_closes_that_connection_only_and_the_peer_comes_back() {
    timeout(WAIT, async {
        let router = RouterSocket::new(opts().router_mandatory(true));
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
        let dealer = |id: &'static [u8]| {
            let d = DealerSocket::new(opts().identity(Bytes::from_static(id)));
            d.connect(&ep).unwrap();
            d
        };
        let (a, b) = (dealer(b"a"), dealer(b"b"));
        let mut aw = Watch::new(a.monitor());
        round_trip(&router, &a, "hi a").await;
        round_trip(&router, &b, "hi b").await;
        let routed = |id: &'static [u8], text: &'static str| {
            Message::from_frames([Bytes::from_static(id), Bytes::from_static(text.as_bytes())])
        };

        assert!(router.close_peer(b"a"));
        assert!(!router.close_peer(b"a"), "already closed");
        assert!(!router.close_peer(b"nobody"));
        // Unroutable at once, without waiting for the connection's task to end.
        assert!(matches!(
            router.try_send(routed(b"a", "lost")),
            Err(TrySendError::Unroutable(_))
        ));
        aw.wait("DISCONNECTED").await;
        // `b` goes on as before, never disconnected.
        router.send(routed(b"b", "still here")).await.unwrap();
        assert_eq!(b.recv().await.unwrap(), Message::from("still here"));
        round_trip(&router, &b, "b again").await;
        // `a` reconnects by itself and is routable again.
        round_trip(&router, &a, "a again").await;
        router.send(routed(b"a", "welcome back")).await.unwrap();
        assert_eq!(a.recv().await.unwrap(), Message::from("welcome back"));
        assert_eq!(router.peer_count(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn disconnect_and_unbind_on_every_socket_type() {
    // PUSH -> PULL and PUB <- SUB exercise the other pipe kinds.
    let pull = harmony_zmtp::PullSocket::new(opts());
    let ep = pull.bind("tcp://127.0.0.1:0").await.unwrap();
    let push = PushSocket::new(opts());
    push.connect(&ep.to_string()).unwrap();
    push.send("x").await.unwrap();
    assert_eq!(timeout(WAIT, pull.recv()).await.unwrap().unwrap()[0], "x");
    push.disconnect(&ep.to_string()).unwrap();
    assert!(push.try_send("y").is_err());
    pull.unbind(&ep.to_string()).await.unwrap();

    let publisher = harmony_zmtp::PubSocket::new(opts());
    let ep = publisher.bind("tcp://127.0.0.1:0").await.unwrap();
    let sub = SubSocket::new(opts());
    let mut sw = Watch::new(sub.monitor());
    sub.subscribe("").unwrap();
    sub.connect(&ep.to_string()).unwrap();
    sw.wait("HANDSHAKE_SUCCEEDED").await;
    publisher.wait_for_peers(1).await;
    sub.disconnect(&ep.to_string()).unwrap();
    timeout(WAIT, async {
        while publisher.peer_count() != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the publisher sees the subscriber go");
    publisher.unbind(&ep.to_string()).await.unwrap();
    assert!(matches!(
        publisher.disconnect(&ep.to_string()),
        Err(ZmtpError::UnknownEndpoint(_))
    ));
}

#[tokio::test]
async fn star_binds_take_ipv6_and_ipv4() {
    let v6 = ipv6_loopback();
    for pattern in ["tcp://*:0", "tcp://[::]:0"] {
        if !v6 && pattern.contains("[::]") {
            eprintln!("no IPv6 loopback on this machine: {pattern} not tried");
            continue;
        }
        let router = RouterSocket::new(opts());
        let ep = router.bind(pattern).await.unwrap();
        assert!(ep.addr().ip().is_unspecified(), "{pattern} -> {ep}");
        if v6 {
            assert!(ep.addr().is_ipv6(), "{pattern} -> {ep}: IPv6 is there");
        } else if ep.addr().is_ipv4() {
            eprintln!("{pattern} fell back to {ep}: no IPv6 socket on this machine");
        }
        // IPv4 always reaches it (dual stack, or the IPv4 fallback); IPv6 where there is.
        let mut targets = vec![format!("tcp://127.0.0.1:{}", ep.port())];
        if v6 {
            targets.push(format!("tcp://[::1]:{}", ep.port()));
        }
        for target in targets {
            let dealer = DealerSocket::new(opts());
            dealer.connect(&target).unwrap();
            round_trip(&router, &dealer, "via").await;
        }
        router.unbind(&ep.to_string()).await.unwrap();
    }
}

#[tokio::test]
async fn bind_failed_is_reported() {
    let first = RouterSocket::new(opts());
    let ep = first.bind("tcp://127.0.0.1:0").await.unwrap();
    let second = RouterSocket::new(opts());
    let mut w = Watch::new(second.monitor());
    assert!(second.bind(&ep.to_string()).await.is_err());
    let failed = w.wait("BIND_FAILED").await;
    assert_eq!(
        failed.kind,
        EventKind::BindFailed {
            error: std::io::ErrorKind::AddrInUse
        }
    );
    assert_eq!(failed.endpoint, ep.to_string());
}

#[tokio::test]
async fn handshake_failures_say_protocol_or_authentication() {
    // Authentication: the server's authenticator knows only `allowed`.
    let (server, allowed, stranger) = (
        KeyPair::generate(),
        KeyPair::generate(),
        KeyPair::generate(),
    );
    let router = RouterSocket::new(curve_server(opts(), &server, &[&allowed]));
    let mut rw = Watch::new(router.monitor());
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    let dealer = DealerSocket::new(opts().mechanism(curve_client(&stranger, &server)));
    let mut dw = Watch::new(dealer.monitor());
    dealer.connect(&ep.to_string()).unwrap();
    for w in [&mut rw, &mut dw] {
        let failed = w.wait("HANDSHAKE_FAILED_AUTH").await;
        assert!(matches!(
            failed.kind,
            EventKind::HandshakeFailed {
                failure: HandshakeFailure::Authentication,
                ..
            }
        ));
        w.wait("DISCONNECTED").await;
    }

    // Protocol: a CURVE client at a NULL server.
    let plain = RouterSocket::new(opts());
    let mut pw = Watch::new(plain.monitor());
    let ep = plain.bind("tcp://127.0.0.1:0").await.unwrap();
    let confused = DealerSocket::new(opts().mechanism(MechanismConfig::CurveClient {
        keys: stranger.clone(),
        server_key: *server.public(),
    }));
    confused.connect(&ep.to_string()).unwrap();
    pw.wait("HANDSHAKE_FAILED_PROTOCOL").await;

    // Protocol: bytes that are not ZMTP.
    let mut raw = Raw::connect(&ep).await;
    raw.write(&[0xAA; 64]).await;
    pw.wait("HANDSHAKE_FAILED_PROTOCOL").await;
    raw.closed().await;
}

#[tokio::test]
async fn a_stalled_handshake_is_no_detail_and_a_silent_peer_is_disconnected() {
    let router = RouterSocket::new(
        opts()
            .handshake_timeout(Duration::from_millis(100))
            .heartbeat_ivl(Duration::from_millis(20))
            .heartbeat_timeout(Duration::from_millis(60)),
    );
    let mut rw = Watch::new(router.monitor());
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    // Connects and says nothing: the handshake times out.
    let mute = TcpStream::connect(ep.addr()).await.unwrap();
    assert_eq!(rw.handshake_failure().await, "HANDSHAKE_FAILED_NO_DETAIL");
    rw.wait("DISCONNECTED").await;
    drop(mute);
    // Handshakes, then never answers a PING: dropped by the heartbeat.
    let _silent = Raw::handshaken(&ep, "DEALER", 1).await;
    rw.wait("HANDSHAKE_SUCCEEDED").await;
    let gone = rw.wait("DISCONNECTED").await;
    assert!(
        matches!(&gone.kind, EventKind::Disconnected { reason } if reason.contains("heartbeat")),
        "{gone}"
    );
}

#[tokio::test]
async fn a_slow_monitor_reader_loses_events_not_speed() {
    let router = RouterSocket::new(opts());
    let tiny = router.monitor_with_capacity(2);
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    let peers = 20;
    let dealers: Vec<_> = (0..peers).map(|_| DealerSocket::new(opts())).collect();
    for d in &dealers {
        d.connect(&ep.to_string()).unwrap();
    }
    for d in &dealers {
        round_trip(&router, d, "hi").await;
    }
    // LISTENING + ACCEPTED and HANDSHAKE_SUCCEEDED per dealer; two fit.
    assert_eq!(tiny.dropped(), 1 + 2 * peers - 2);
    let mut tiny = Watch::new(tiny);
    assert_eq!(tiny.first(2).await, ["LISTENING", "ACCEPTED"]);
}

#[tokio::test]
async fn a_socket_closed_before_monitoring_ends_the_monitor() {
    let dealer = DealerSocket::new(opts());
    dealer.close().await;
    let mut w = Watch::new(dealer.monitor());
    assert_eq!(w.first(1).await, ["MONITOR_STOPPED"]);
    assert!(matches!(
        dealer.connect("tcp://127.0.0.1:9"),
        Err(ZmtpError::Closed)
    ));
    assert_eq!(w.seen[0].peer, None);
}

#[tokio::test]
async fn flushed_waits_until_the_queue_is_written_out() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = format!("tcp://127.0.0.1:{port}");
    let dealer = DealerSocket::new(opts());
    // Nothing is written while nobody listens: the message stays queued.
    dealer.connect(&ep).unwrap();
    dealer.send("queued").await.unwrap();
    let flushed = dealer.flushed();
    tokio::pin!(flushed);
    assert!(
        timeout(Duration::from_millis(200), flushed.as_mut())
            .await
            .is_err(),
        "flushed with no connection"
    );
    let router = RouterSocket::new(opts());
    router.bind(&ep).await.unwrap();
    timeout(WAIT, flushed)
        .await
        .expect("flushed once connected");
    let m = timeout(WAIT, router.recv()).await.unwrap().unwrap();
    assert_eq!(m[1], "queued");
    // An idle socket is flushed at once.
    timeout(WAIT, dealer.flushed()).await.unwrap();
}
