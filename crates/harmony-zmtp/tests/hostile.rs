//! Hostile and odd peers on raw TCP: each bad connection is closed, the socket keeps serving.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use harmony_wire::zmtp::{Command, Frame, FrameCodec, Greeting, Mechanism, Metadata};
use harmony_zmtp::{DealerSocket, Endpoint, PubSocket, RouterSocket, SocketOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

fn opts() -> SocketOptions {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SocketOptions::default()
        .handshake_timeout(Duration::from_millis(300))
        .max_msg_size(64 << 10)
}

/// Reads until the server closes the connection (EOF or reset); panics if it stays open.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    let closed = timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept a bad connection open");
}

/// The router still routes for a well-behaved dealer.
async fn assert_serves(router: &RouterSocket, ep: &Endpoint) {
    let dealer = DealerSocket::new(SocketOptions::default());
    dealer.connect(&ep.to_string()).await.unwrap();
    dealer.send("still here").await.unwrap();
    let m = router.recv().await.unwrap();
    assert_eq!(m[1], "still here");
    router.send(m).await.unwrap();
    assert_eq!(dealer.recv().await.unwrap()[0], "still here");
}

/// A raw client that has done a NULL handshake as `socket_type`, greeting with `minor`.
async fn handshaken(ep: &Endpoint, socket_type: &str, minor: u8) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(ep.addr()).await.unwrap();
    let mut g = Greeting::new(Mechanism::Null, false);
    g.minor = minor;
    s.write_all(&g.encode().unwrap()).await.unwrap();
    let mut out = BytesMut::new();
    Command::Ready(Metadata::new().with("Socket-Type", socket_type.to_owned()))
        .encode_frame(&mut out)
        .unwrap();
    s.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    while buf.len() < 64 {
        assert_ne!(s.read_buf(&mut buf).await.unwrap(), 0);
    }
    Greeting::decode(&buf.split_to(64)).unwrap();
    let ready = next_frame(&mut s, &mut buf).await;
    assert!(matches!(
        Command::decode(&ready.body, 1 << 16).unwrap(),
        Command::Ready(_)
    ));
    (s, buf)
}

async fn next_frame(s: &mut TcpStream, buf: &mut BytesMut) -> Frame {
    let mut codec = FrameCodec::default();
    timeout(T, async {
        loop {
            if let Some(f) = codec.decode_frame(buf).unwrap() {
                return f;
            }
            assert_ne!(s.read_buf(buf).await.unwrap(), 0, "closed");
        }
    })
    .await
    .expect("no frame in time")
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
        let mut s = TcpStream::connect(ep.addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_closed(&mut s).await;
        // A ZMTP 2.0 greeting is refused too.
        let mut s = TcpStream::connect(ep.addr()).await.unwrap();
        let mut g = Greeting::new(Mechanism::Null, false).encode().unwrap();
        g[10] = 2;
        s.write_all(&g).await.unwrap();
        assert_closed(&mut s).await;
        assert_serves(&router, &ep).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn garbage_after_handshake_is_closed() {
    let (router, ep) = router().await;
    timeout(T, async {
        let (mut s, _) = handshaken(&ep, "DEALER", 1).await;
        s.write_all(&[0xF8, 0x00, 0xFF, 0xFF]).await.unwrap(); // reserved flag bits
        assert_closed(&mut s).await;
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
        let (mut s, _) = handshaken(&ep, "DEALER", 1).await;
        s.write_all(&[0x02, 0x40, 0, 0, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        assert_closed(&mut s).await;
        // Many small frames that add up to more than max_msg_size.
        let (mut s, _) = handshaken(&ep, "DEALER", 1).await;
        let mut out = BytesMut::new();
        let chunk = Bytes::from(vec![0u8; 200]);
        for _ in 0..400 {
            Frame::message(chunk.clone(), true).encode(&mut out);
        }
        let _ = s.write_all(&out).await;
        assert_closed(&mut s).await;
        assert_serves(&router, &ep).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stalled_handshakes_time_out() {
    let (router, ep) = router().await;
    timeout(T, async {
        let mut silent = TcpStream::connect(ep.addr()).await.unwrap();
        let mut half = TcpStream::connect(ep.addr()).await.unwrap();
        half.write_all(&[0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3])
            .await
            .unwrap();
        // Meanwhile the socket serves others.
        assert_serves(&router, &ep).await;
        assert_closed(&mut silent).await;
        assert_closed(&mut half).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn protocol_violations_close_but_unknown_commands_are_ignored() {
    let (router, ep) = router().await;
    timeout(T, async {
        // Unknown command: ignored, the connection carries on.
        let (mut s, _) = handshaken(&ep, "DEALER", 1).await;
        let mut out = BytesMut::new();
        Command::Unknown(harmony_wire::zmtp::RawCommand::new("FOOBAR", &b"x"[..]))
            .encode_frame(&mut out)
            .unwrap();
        Frame::message(&b"after unknown"[..], false).encode(&mut out);
        s.write_all(&out).await.unwrap();
        assert_eq!(router.recv().await.unwrap()[1], "after unknown");
        // READY again after the handshake: closed.
        let mut out = BytesMut::new();
        Command::Ready(Metadata::new())
            .encode_frame(&mut out)
            .unwrap();
        s.write_all(&out).await.unwrap();
        assert_closed(&mut s).await;
        // Wrong socket type: closed.
        let mut s = TcpStream::connect(ep.addr()).await.unwrap();
        s.write_all(&Greeting::new(Mechanism::Null, false).encode().unwrap())
            .await
            .unwrap();
        let mut out = BytesMut::new();
        Command::Ready(Metadata::new().with("Socket-Type", "PUB"))
            .encode_frame(&mut out)
            .unwrap();
        s.write_all(&out).await.unwrap();
        assert_closed(&mut s).await;
        // Another mechanism: closed.
        let mut s = TcpStream::connect(ep.addr()).await.unwrap();
        s.write_all(&Greeting::new(Mechanism::Curve, false).encode().unwrap())
            .await
            .unwrap();
        assert_closed(&mut s).await;
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
        let (mut s, mut buf) = handshaken(&ep, "SUB", 0).await;
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
        s.write_all(&out).await.unwrap();
        let pong = next_frame(&mut s, &mut buf).await;
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
            if let Ok(f) = timeout(Duration::from_millis(50), next_frame(&mut s, &mut buf)).await {
                break f;
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
        let (mut s, _) = handshaken(&ep, "DEALER", 1).await;
        let mut out = BytesMut::new();
        let ping = Command::Ping {
            ttl: 0,
            context: Bytes::from_static(b"0123456789abcdef"),
        };
        for _ in 0..20_000 {
            ping.encode_frame(&mut out).unwrap();
        }
        Frame::message(&b"after the flood"[..], false).encode(&mut out);
        s.write_all(&out).await.unwrap();
        // The flood is answered only up to a bound (the client reads nothing), and the
        // connection still delivers what follows.
        assert_eq!(router.recv().await.unwrap()[1], "after the flood");
        assert_serves(&router, &ep).await;
    })
    .await
    .unwrap();
}
