//! Harmony <-> Harmony over loopback: every socket pair, identities, queues, reconnects.

mod support;

use std::time::Duration;

use bytes::Bytes;
use harmony_zmtp::{
    DealerSocket, Message, PubSocket, PullSocket, PushSocket, RouterSocket, SubSocket, TrySendError,
};
use support::opts;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn router_dealer_round_trip_with_identity() {
    timeout(T, async {
        let router = RouterSocket::new(opts());
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        assert_ne!(ep.port(), 0);
        let dealer = DealerSocket::new(opts().identity(&b"\x01peer-a"[..]));
        dealer.connect(&ep.to_string()).unwrap();
        // Queued before the connection is up.
        dealer
            .send(Message::from_frames([
                Bytes::from_static(b"hello"),
                Bytes::from_static(b"world"),
            ]))
            .await
            .unwrap();
        let msg = router.recv().await.unwrap();
        assert_eq!(msg.frames(), &[&b"\x01peer-a"[..], b"hello", b"world"]);
        router
            .send(Message::from_frames([
                msg[0].clone(),
                Bytes::from_static(b"back"),
            ]))
            .await
            .unwrap();
        let reply = dealer.recv().await.unwrap();
        assert_eq!(reply.frames(), &[&b"back"[..]]);
        assert_eq!(router.peer_count(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn router_generates_identities_and_drops_or_reports_unroutable() {
    timeout(T, async {
        let router = RouterSocket::new(opts());
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let d1 = DealerSocket::new(opts());
        let d2 = DealerSocket::new(opts());
        d1.connect(&ep.to_string()).unwrap();
        d2.connect(&ep.to_string()).unwrap();
        d1.send("one").await.unwrap();
        d2.send("two").await.unwrap();
        let a = router.recv().await.unwrap();
        let b = router.recv().await.unwrap();
        for m in [&a, &b] {
            assert_eq!(m[0].len(), 5);
            assert_eq!(m[0][0], 0);
        }
        assert_ne!(a[0], b[0]);
        // Reply to each by identity.
        for m in [&a, &b] {
            let mut reply = Message::new();
            reply.push_back(m[0].clone());
            reply.push_back(m[1].clone());
            router.send(reply).await.unwrap();
        }
        assert_eq!(d1.recv().await.unwrap()[0], "one");
        assert_eq!(d2.recv().await.unwrap()[0], "two");
        // Unknown identity: dropped silently by default.
        router
            .send(Message::from_frames([
                Bytes::from_static(b"nobody"),
                Bytes::from_static(b"x"),
            ]))
            .await
            .unwrap();
        let strict = RouterSocket::new(opts().router_mandatory(true));
        strict.bind("tcp://127.0.0.1:0").await.unwrap();
        let err = strict
            .try_send(Message::from_frames([
                Bytes::from_static(b"nobody"),
                Bytes::from_static(b"x"),
            ]))
            .unwrap_err();
        assert!(matches!(err, TrySendError::Unroutable(_)));
        assert!(strict
            .send(Message::from_frames([
                Bytes::from_static(b"nobody"),
                Bytes::from_static(b"x")
            ]))
            .await
            .is_err());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn router_handover_moves_identity_to_new_connection() {
    timeout(T, async {
        let router = RouterSocket::new(opts().router_handover(true));
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let old = DealerSocket::new(opts().identity(&b"same"[..]));
        old.connect(&ep.to_string()).unwrap();
        old.send("from-old").await.unwrap();
        assert_eq!(router.recv().await.unwrap()[1], "from-old");
        let new = DealerSocket::new(opts().identity(&b"same"[..]));
        new.connect(&ep.to_string()).unwrap();
        new.send("from-new").await.unwrap();
        assert_eq!(router.recv().await.unwrap()[1], "from-new");
        router
            .send(Message::from_frames([
                Bytes::from_static(b"same"),
                Bytes::from_static(b"to-new"),
            ]))
            .await
            .unwrap();
        assert_eq!(new.recv().await.unwrap()[0], "to-new");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn duplicate_identity_without_handover_keeps_the_first() {
    timeout(T, async {
        let router = RouterSocket::new(opts());
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let first = DealerSocket::new(opts().identity(&b"dup"[..]));
        first.connect(&ep.to_string()).unwrap();
        first.send("a").await.unwrap();
        assert_eq!(router.recv().await.unwrap()[1], "a");
        let second = DealerSocket::new(opts().identity(&b"dup"[..]));
        second.connect(&ep.to_string()).unwrap();
        router
            .send(Message::from_frames([
                Bytes::from_static(b"dup"),
                Bytes::from_static(b"b"),
            ]))
            .await
            .unwrap();
        assert_eq!(first.recv().await.unwrap()[0], "b");
        assert_eq!(router.peer_count(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dealer_try_send_reports_would_block_at_hwm() {
    timeout(T, async {
        // Nobody listens: the connected endpoint's queue fills to the mark.
        let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let dealer = DealerSocket::new(opts().send_hwm(5));
        dealer.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
        for i in 0..5u8 {
            dealer.try_send(vec![i]).unwrap();
        }
        match dealer.try_send(vec![9u8]) {
            Err(TrySendError::WouldBlock(m)) => assert_eq!(m[0], vec![9u8]),
            other => panic!("expected WouldBlock, got {other:?}"),
        }
        // No peer at all: WouldBlock too.
        let lonely = DealerSocket::new(opts());
        assert!(matches!(
            lonely.try_send("x"),
            Err(TrySendError::WouldBlock(_))
        ));
        dealer.close().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dealer_reconnects_after_router_restart() {
    timeout(T, async {
        let router = RouterSocket::new(opts());
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let dealer = DealerSocket::new(opts().identity(&b"re"[..]));
        dealer.connect(&ep.to_string()).unwrap();
        dealer.send("1").await.unwrap();
        assert_eq!(router.recv().await.unwrap()[1], "1");
        drop(router);
        let router = RouterSocket::new(opts());
        // Same port again (the listener is gone, SO_REUSEADDR is set).
        let ep2 = loop {
            match router.bind(&ep.to_string()).await {
                Ok(e) => break e,
                Err(_) => tokio::task::yield_now().await,
            }
        };
        assert_eq!(ep2, ep);
        // Messages sent while reconnecting are queued; keep sending until one arrives.
        let got = loop {
            dealer.send("2").await.unwrap();
            if let Ok(Ok(m)) = timeout(Duration::from_millis(200), router.recv()).await {
                break m;
            }
        };
        assert_eq!(got.frames(), &[&b"re"[..], b"2"]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn push_pull_in_order_and_round_robin() {
    timeout(T, async {
        let pull = PullSocket::new(opts());
        let ep = pull.bind("tcp://127.0.0.1:0").await.unwrap();
        let push = PushSocket::new(opts());
        push.connect(&ep.to_string()).unwrap();
        for i in 0..10_000u32 {
            push.send(i.to_be_bytes().to_vec()).await.unwrap();
        }
        for i in 0..10_000u32 {
            let m = pull.recv().await.unwrap();
            assert_eq!(&m[0][..], &i.to_be_bytes());
        }
        // Two pullers share the work.
        let p1 = PullSocket::new(opts());
        let p2 = PullSocket::new(opts());
        let e1 = p1.bind("tcp://127.0.0.1:0").await.unwrap();
        let e2 = p2.bind("tcp://[::1]:0").await.unwrap();
        let push = PushSocket::new(opts());
        push.connect(&e1.to_string()).unwrap();
        push.connect(&e2.to_string()).unwrap();
        push.wait_for_peers(2).await;
        for _ in 0..10 {
            push.send("w").await.unwrap();
        }
        for _ in 0..5 {
            p1.recv().await.unwrap();
            p2.recv().await.unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pub_sub_prefix_matching() {
    timeout(T, async {
        let publisher = PubSocket::new(opts());
        let ep = publisher.bind("tcp://127.0.0.1:0").await.unwrap();
        let sub = SubSocket::new(opts());
        sub.subscribe("news.").unwrap();
        sub.connect(&ep.to_string()).unwrap();
        // The subscription reaches the publisher asynchronously: publish until it arrives.
        loop {
            publisher.send("other").await.unwrap();
            publisher.send("news.first").await.unwrap();
            if let Ok(m) = timeout(Duration::from_millis(50), sub.recv()).await {
                assert_eq!(m.unwrap()[0], "news.first");
                break;
            }
        }
        while timeout(Duration::from_millis(50), sub.recv()).await.is_ok() {}
        publisher
            .send(Message::from_frames([
                Bytes::from_static(b"news.x"),
                Bytes::from_static(b"body"),
            ]))
            .await
            .unwrap();
        publisher.send("weather").await.unwrap();
        publisher.send("news.y").await.unwrap();
        assert_eq!(
            sub.recv().await.unwrap().frames(),
            &[&b"news.x"[..], b"body"]
        );
        assert_eq!(sub.recv().await.unwrap()[0], "news.y");
        sub.unsubscribe("news.").unwrap();
        sub.subscribe("w").unwrap();
        loop {
            publisher.send("news.z").await.unwrap();
            publisher.send("weather").await.unwrap();
            // news.z is filtered (at the publisher or locally); weather arrives once "w" is known.
            if let Ok(m) = timeout(Duration::from_millis(50), sub.recv()).await {
                assert_eq!(m.unwrap()[0], "weather");
                break;
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn incompatible_socket_types_do_not_connect() {
    timeout(T, async {
        let pull = PullSocket::new(opts());
        let ep = pull.bind("tcp://127.0.0.1:0").await.unwrap();
        let dealer = DealerSocket::new(opts());
        dealer.connect(&ep.to_string()).unwrap();
        let push = PushSocket::new(opts());
        push.connect(&ep.to_string()).unwrap();
        push.send("ok").await.unwrap();
        assert_eq!(pull.recv().await.unwrap()[0], "ok");
        assert_eq!(pull.peer_count(), 1);
        assert_eq!(dealer.peer_count(), 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn large_messages_and_heartbeats() {
    timeout(T, async {
        let hb = opts()
            .heartbeat_ivl(Duration::from_millis(20))
            .heartbeat_ttl(Duration::from_millis(500));
        let router = RouterSocket::new(hb.clone());
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let dealer = DealerSocket::new(hb);
        dealer.connect(&ep.to_string()).unwrap();
        let big = Bytes::from(vec![0xAB; 1 << 20]);
        dealer
            .send(Message::from_frames([
                Bytes::from_static(b"h"),
                big.clone(),
            ]))
            .await
            .unwrap();
        let m = router.recv().await.unwrap();
        assert_eq!(m[2], big);
        // Idle long enough for several PING/PONG rounds: the connection stays up.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(router.peer_count(), 1);
        router.send(m).await.unwrap();
        assert_eq!(dealer.recv().await.unwrap()[1].len(), 1 << 20);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn close_lingers_until_queued_messages_are_written() {
    timeout(T, async {
        let pull = PullSocket::new(opts());
        let ep = pull.bind("tcp://127.0.0.1:0").await.unwrap();
        let push = PushSocket::new(opts());
        push.connect(&ep.to_string()).unwrap();
        push.wait_for_peers(1).await;
        for i in 0..500u32 {
            push.send(i.to_be_bytes().to_vec()).await.unwrap();
        }
        push.close().await;
        assert!(push.send("late").await.is_err());
        for i in 0..500u32 {
            assert_eq!(&pull.recv().await.unwrap()[0][..], &i.to_be_bytes());
        }
    })
    .await
    .unwrap();
}
