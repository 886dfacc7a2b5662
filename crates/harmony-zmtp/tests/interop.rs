//! Interop with libzmq through pyzmq (tests/py/peer.py), both directions for every socket pair.

mod support;

use std::time::Duration;

use harmony_zmtp::DealerSocket;
use support::{opts, quit, scenario, Keys, Py};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn dealer_to_libzmq_router() {
    timeout(
        T,
        scenario::dealer_to_libzmq_router(opts(), b"rs-dealer", &[]),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn libzmq_dealer_to_router() {
    let py_args = ["--identity", "py-dealer", "--expect-identity"];
    timeout(T, scenario::libzmq_dealer_to_router(opts(), &py_args))
        .await
        .unwrap();
}

#[tokio::test]
async fn heartbeats_with_libzmq_router() {
    // libzmq PINGs every 50 ms and drops us after 150 ms without traffic; we PING too.
    let dealer = opts()
        .identity(&b"hb"[..])
        .heartbeat_ivl(Duration::from_millis(40))
        .heartbeat_timeout(Duration::from_millis(200));
    timeout(
        T,
        scenario::heartbeats_with_libzmq_router(dealer, &["--heartbeat", "50"]),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn heartbeats_from_libzmq_dealer() {
    let router = opts().heartbeat_ivl(Duration::from_millis(40));
    let py_args = ["--identity", "hb", "--heartbeat", "50"];
    timeout(T, scenario::libzmq_dealer_to_router(router, &py_args))
        .await
        .unwrap();
}

#[tokio::test]
async fn dealer_to_libzmq_dealer() {
    timeout(T, scenario::dealer_to_libzmq_dealer(opts(), &[]))
        .await
        .unwrap();
}

#[tokio::test]
async fn libzmq_dealer_to_dealer() {
    timeout(T, scenario::libzmq_dealer_to_dealer(opts(), &[]))
        .await
        .unwrap();
}

#[tokio::test]
async fn push_to_libzmq_pull() {
    timeout(T, scenario::push_to_libzmq_pull(opts(), &[]))
        .await
        .unwrap();
}

#[tokio::test]
async fn libzmq_push_to_pull() {
    timeout(
        T,
        scenario::libzmq_push_to_pull(opts(), "tcp://[::1]:0", &[]),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn pub_to_libzmq_sub() {
    timeout(
        T,
        scenario::pub_to_libzmq_sub(opts().send_hwm(100_000), &[]),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn libzmq_pub_to_sub() {
    timeout(T, scenario::libzmq_pub_to_sub(opts(), &[]))
        .await
        .unwrap();
}

#[tokio::test]
async fn dealer_reconnects_after_libzmq_restart() {
    timeout(T, async {
        let mut py = Py::peer(&["router-echo", "tcp://127.0.0.1:*", "--bind"]).await;
        let ep = py.ready().await;
        let dealer = DealerSocket::new(opts().identity(&b"phoenix"[..]));
        dealer.connect(&ep).unwrap();
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
    let keys = Keys::new();
    let dealer = opts().mechanism(keys.client_config());
    timeout(
        T,
        scenario::dealer_to_libzmq_router(dealer, b"curvy", &[&keys.py_server()]),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn curve_libzmq_dealer_to_router() {
    let keys = Keys::new();
    let py_client = keys.py_client();
    let py_args = ["--identity", "py-curve", "--expect-identity", &py_client];
    timeout(
        T,
        scenario::libzmq_dealer_to_router(keys.server_opts(), &py_args),
    )
    .await
    .unwrap();
}
