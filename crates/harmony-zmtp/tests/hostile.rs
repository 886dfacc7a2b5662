//! Hostile and odd peers on raw TCP: each bad connection is closed, the socket keeps serving.

mod support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use harmony_wire::zmtp::{Command, Frame, Greeting, Mechanism, Metadata};
use harmony_zmtp::{DealerSocket, Endpoint, PubSocket, RouterSocket, SocketOptions};
use support::{init_tracing, Raw};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

fn opts() -> SocketOptions {
    init_tracing();
    SocketOptions::default()
        .handshake_timeout(Duration::from_millis(300))
        .max_msg_size(64 << 10)
}

/// The router still routes for a well-behaved dealer.
async fn assert_serves(router: &RouterSocket, ep: &Endpoint) {
    let dealer = DealerSocket::new(SocketOptions::default());
    dealer.connect(&ep.to_string()).unwrap();
    dealer.send("still here").await.unwrap();
    let m = router.recv().await.unwrap();
    assert_eq!(m[1], "still here");
    router.send(m).await.unwrap();
    assert_eq!(dealer.recv().await.unwrap()[0], "still here");
}

async fn router() -> (RouterSocket, Endpoint) {
    let router = RouterSocket::new(opts());
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    (router, ep)
}

#[tokio::test]
async fn bad_greeting_is_closed() {
    let (router, ep) = router().await;
    timeout(T, async {
        let mut s = Raw::connect(&ep).await;
        s.write_ok(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        s.closed().await;
        // A ZMTP 2.0 greeting is refused too.
        let mut s = Raw::connect(&ep).await;
        let mut g = Greeting::new(Mechanism::Null, false).encode().unwrap();
        g[10] = 2;
        s.write_ok(&g).await;
        s.closed().await;
        assert_serves(&router, &ep).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn garbage_after_handshake_is_closed() {
    let (router, ep) = router().await;
    timeout(T, async {
        let mut s = Raw::handshaken(&ep, "DEALER", 1).await;
        s.write_ok(&[0xF8, 0x00, 0xFF, 0xFF]).await; // reserved flag bits
        s.closed().await;
        assert_serves(&router, &ep).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn oversized_frames_and_messages_are_closed() {
    let (router, ep) = router().await;
    timeout(T, async {
        // A frame claiming 2^62 bytes: refused on its header, nothing allocated for it.
        let mut s = Raw::handshaken(&ep, "DEALER", 1).await;
        s.write_ok(&[0x02, 0x40, 0, 0, 0, 0, 0, 0, 0]).await;
        s.closed().await;
        // Many small frames that add up to more than max_msg_size.
        let mut s = Raw::handshaken(&ep, "DEALER", 1).await;
        let mut out = BytesMut::new();
        let chunk = Bytes::from(vec![0u8; 200]);
        for _ in 0..400 {
            Frame::message(chunk.clone(), true).encode(&mut out);
        }
        s.write(&out).await;
        s.closed().await;
        assert_serves(&router, &ep).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stalled_handshakes_time_out() {
    let (router, ep) = router().await;
    timeout(T, async {
        let silent = Raw::connect(&ep).await;
        let mut half = Raw::connect(&ep).await;
        half.write_ok(&[0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3])
            .await;
        // Meanwhile the socket serves others.
        assert_serves(&router, &ep).await;
        silent.closed().await;
        half.closed().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn protocol_violations_close_but_unknown_commands_are_ignored() {
    let (router, ep) = router().await;
    timeout(T, async {
        // Unknown command: ignored, the connection carries on.
        let mut s = Raw::handshaken(&ep, "DEALER", 1).await;
        let mut out = BytesMut::new();
        Command::Unknown(harmony_wire::zmtp::RawCommand::new("FOOBAR", &b"x"[..]))
            .encode_frame(&mut out)
            .unwrap();
        Frame::message(&b"after unknown"[..], false).encode(&mut out);
        s.write_ok(&out).await;
        assert_eq!(router.recv().await.unwrap()[1], "after unknown");
        // READY again after the handshake: closed.
        let mut out = BytesMut::new();
        Command::Ready(Metadata::new())
            .encode_frame(&mut out)
            .unwrap();
        s.write_ok(&out).await;
        s.closed().await;
        // Wrong socket type: closed.
        let mut s = Raw::connect(&ep).await;
        s.write_ok(&Greeting::new(Mechanism::Null, false).encode().unwrap())
            .await;
        let mut out = BytesMut::new();
        Command::Ready(Metadata::new().with("Socket-Type", "PUB"))
            .encode_frame(&mut out)
            .unwrap();
        s.write_ok(&out).await;
        s.closed().await;
        // Another mechanism: closed.
        let mut s = Raw::connect(&ep).await;
        s.write_ok(&Greeting::new(Mechanism::Curve, false).encode().unwrap())
            .await;
        s.closed().await;
        assert_serves(&router, &ep).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn zmtp30_peer_gets_pong_and_message_form_subscriptions_work() {
    let publisher = PubSocket::new(opts());
    let ep = publisher.bind("tcp://127.0.0.1:0").await.unwrap();
    timeout(T, async {
        let mut s = Raw::handshaken(&ep, "SUB", 0).await;
        // PING on a 3.0 connection (libzmq does this): answered with PONG echoing the context.
        let mut out = BytesMut::new();
        Command::Ping {
            ttl: 0,
            context: Bytes::from_static(b"ctx"),
        }
        .encode_frame(&mut out)
        .unwrap();
        // ZMTP 3.0 subscription: a message 0x01 + topic.
        Frame::message(&b"\x01top"[..], false).encode(&mut out);
        s.write_ok(&out).await;
        let pong = s.frame().await.expect("closed");
        assert_eq!(
            Command::decode(&pong.body, 1024).unwrap(),
            Command::Pong {
                context: Bytes::from_static(b"ctx")
            }
        );
        // Publish until the subscription is in effect.
        let got = loop {
            publisher.send("nope").await.unwrap();
            publisher.send("topic!").await.unwrap();
            if let Ok(f) = timeout(Duration::from_millis(50), s.frame()).await {
                break f.expect("closed");
            }
        };
        assert_eq!(got.body, "topic!");
        assert!(!got.command);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn ping_flood_from_a_peer_that_never_reads_is_bounded() {
    let (router, ep) = router().await;
    timeout(T, async {
        let mut s = Raw::handshaken(&ep, "DEALER", 1).await;
        let mut out = BytesMut::new();
        let ping = Command::Ping {
            ttl: 0,
            context: Bytes::from_static(b"0123456789abcdef"),
        };
        for _ in 0..20_000 {
            ping.encode_frame(&mut out).unwrap();
        }
        Frame::message(&b"after the flood"[..], false).encode(&mut out);
        s.write_ok(&out).await;
        // The flood is answered only up to a bound (the client reads nothing), and the
        // connection still delivers what follows.
        assert_eq!(router.recv().await.unwrap()[1], "after the flood");
        assert_serves(&router, &ep).await;
    })
    .await
    .unwrap();
}
