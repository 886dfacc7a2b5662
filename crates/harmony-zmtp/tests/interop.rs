//! Interop with libzmq through pyzmq (tests/py/peer.py), both directions for every socket pair.

mod support;

use std::time::Duration;

use harmony_zmtp::{DealerSocket, PubSocket, PullSocket, PushSocket, RouterSocket, SubSocket};
use support::{
    dealer_client, dealer_echo, expect_sequence, idle_on_heartbeats, opts, quit, recv_after_sync,
    router_echo, send_sequence, sync_libzmq_sub, Keys, Py,
};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn dealer_to_libzmq_router() {
    timeout(T, async {
        let mut py = Py::peer(&["router-echo", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts().identity(&b"rs-dealer"[..]));
        dealer.connect(&ep).await.unwrap();
        tokio::select! {
            _ = dealer_client(&dealer, Some(b"rs-dealer")) => {}
            l = py.line() => panic!("peer.py: {l}"),
        }
        quit(&dealer).await;
        py.finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn libzmq_dealer_to_router() {
    timeout(T, async {
        let router = RouterSocket::new(opts());
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let py = Py::peer(&[
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
        py.ok_and_finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn heartbeats_with_libzmq_router() {
    timeout(T, async {
        // libzmq PINGs every 50 ms and drops us after 150 ms without traffic; we PING too.
        let mut py = Py::peer(&[
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
        idle_on_heartbeats(&dealer).await;
        py.finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn heartbeats_from_libzmq_dealer() {
    timeout(T, async {
        let router = RouterSocket::new(opts().heartbeat_ivl(Duration::from_millis(40)));
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let mut py = Py::peer(&[
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
        py.ok_and_finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dealer_to_libzmq_dealer() {
    timeout(T, async {
        let mut py = Py::peer(&["dealer-echo", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts());
        dealer.connect(&ep).await.unwrap();
        dealer_client(&dealer, None).await;
        quit(&dealer).await;
        py.finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn libzmq_dealer_to_dealer() {
    timeout(T, async {
        let dealer = DealerSocket::new(opts());
        let ep = dealer.bind("tcp://127.0.0.1:0").await.unwrap();
        let mut py = Py::peer(&["dealer-client", &ep.to_string()]).await;
        py.ready().await;
        dealer_echo(&dealer).await;
        py.ok_and_finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn push_to_libzmq_pull() {
    timeout(T, async {
        let mut py = Py::peer(&["pull", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let push = PushSocket::new(opts());
        push.connect(&ep).await.unwrap();
        send_sequence(async |m| push.send(m).await.unwrap(), b"").await;
        py.ok_and_finish().await;
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
        let mut py = Py::peer(&["push", &ep.to_string()]).await;
        py.ready().await;
        expect_sequence(async || pull.recv().await.unwrap(), b"").await;
        py.ok_and_finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pub_to_libzmq_sub() {
    timeout(T, async {
        let publisher = PubSocket::new(opts().send_hwm(100_000));
        let ep = publisher.bind("tcp://127.0.0.1:0").await.unwrap();
        let mut py = Py::peer(&["sub", &ep.to_string()]).await;
        py.ready().await;
        sync_libzmq_sub(&publisher, &mut py).await;
        send_sequence(async |m| publisher.send(m).await.unwrap(), b"A").await;
        py.ok_and_finish().await;
        publisher.close().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn libzmq_pub_to_sub() {
    timeout(T, async {
        let mut py = Py::peer(&["pub", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let sub = SubSocket::new(opts());
        sub.subscribe("A").unwrap();
        sub.connect(&ep).await.unwrap();
        assert_eq!(sub.recv().await.unwrap()[0], "Async");
        py.say("go").await;
        expect_sequence(async || recv_after_sync(&sub).await, b"A").await;
        py.ok_and_finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dealer_reconnects_after_libzmq_restart() {
    timeout(T, async {
        let mut py = Py::peer(&["router-echo", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts().identity(&b"phoenix"[..]));
        dealer.connect(&ep).await.unwrap();
        dealer.send("first").await.unwrap();
        assert_eq!(dealer.recv().await.unwrap()[0], "first");
        quit(&dealer).await;
        py.finish().await;
        // A new libzmq process on the same port.
        let mut py = Py::peer(&["router-echo", &ep, "--bind"]).await;
        assert_eq!(py.ready().await, ep);
        dealer.send("again").await.unwrap();
        let m = dealer.recv().await.unwrap();
        assert_eq!(m[0], "again");
        quit(&dealer).await;
        py.finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn curve_dealer_to_libzmq_router() {
    timeout(T, async {
        let keys = Keys::new();
        let mut py = Py::peer(&[
            "router-echo",
            "tcp://127.0.0.1:*",
            "--bind",
            &keys.py_server(),
        ])
        .await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(
            opts()
                .identity(&b"curvy"[..])
                .mechanism(keys.client_config()),
        );
        dealer.connect(&ep).await.unwrap();
        dealer_client(&dealer, Some(b"curvy")).await;
        quit(&dealer).await;
        py.finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn curve_libzmq_dealer_to_router() {
    timeout(T, async {
        let keys = Keys::new();
        let router = RouterSocket::new(keys.server_opts());
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let mut py = Py::peer(&[
            "dealer-client",
            &ep.to_string(),
            "--identity",
            "py-curve",
            "--expect-identity",
            &keys.py_client(),
        ])
        .await;
        py.ready().await;
        router_echo(&router).await;
        py.ok_and_finish().await;
    })
    .await
    .unwrap();
}
