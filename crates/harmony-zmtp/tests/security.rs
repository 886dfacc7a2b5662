//! PLAIN and CURVE between Harmony sockets, with an authenticator deciding who gets in.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use harmony_security::{KeyPair, MechanismConfig, StandardAuthenticator};
use harmony_zmtp::{DealerSocket, Message, RouterSocket};
use support::{curve_client, curve_server, opts};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

async fn echo_once(router: &RouterSocket, dealer: &DealerSocket) {
    let m = Message::from_frames([
        Bytes::from_static(b"small"),
        Bytes::from(vec![7u8; 100 << 10]),
    ]);
    dealer.send(m.clone()).await.unwrap();
    let got = router.recv().await.unwrap();
    assert_eq!(&got.frames()[1..], m.frames());
    router.send(got).await.unwrap();
    assert_eq!(dealer.recv().await.unwrap(), m);
}

/// Nothing from `dealer` reaches `router` within a while (the handshake was refused).
async fn refused(router: &RouterSocket, dealer: &DealerSocket) {
    dealer.send("let me in").await.unwrap();
    assert!(timeout(Duration::from_millis(500), router.recv())
        .await
        .is_err());
    assert_eq!(router.peer_count(), 0);
}

fn curve_router(server: &KeyPair, allowed: &KeyPair) -> RouterSocket {
    RouterSocket::new(curve_server(opts(), server, &[allowed]))
}

fn curve_dealer(keys: KeyPair, server: &KeyPair) -> DealerSocket {
    DealerSocket::new(opts().mechanism(curve_client(&keys, server)))
}

#[tokio::test]
async fn curve_round_trip_and_refusal() {
    timeout(T, async {
        let server = KeyPair::generate();
        let client = KeyPair::generate();
        let router = curve_router(&server, &client);
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let dealer = curve_dealer(client, &server);
        dealer.connect(&ep.to_string()).unwrap();
        echo_once(&router, &dealer).await;

        let stranger = curve_dealer(KeyPair::generate(), &server);
        let other = curve_router(&server, &KeyPair::generate());
        let ep2 = other.bind("tcp://127.0.0.1:0").await.unwrap();
        stranger.connect(&ep2.to_string()).unwrap();
        refused(&other, &stranger).await;
        // Wrong server key: the client cannot finish the handshake.
        let confused = curve_dealer(KeyPair::generate(), &KeyPair::generate());
        confused.connect(&ep.to_string()).unwrap();
        assert!(timeout(Duration::from_millis(300), confused.recv())
            .await
            .is_err());
        assert_eq!(confused.peer_count(), 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn plain_round_trip_and_refusal() {
    timeout(T, async {
        let auth = StandardAuthenticator::new().password("admin", "secret");
        let router = RouterSocket::new(
            opts()
                .mechanism(MechanismConfig::PlainServer)
                .authenticator(Arc::new(auth)),
        );
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let good = DealerSocket::new(opts().mechanism(MechanismConfig::PlainClient {
            username: "admin".into(),
            password: "secret".into(),
        }));
        good.connect(&ep.to_string()).unwrap();
        echo_once(&router, &good).await;
        drop(good);

        let bad = DealerSocket::new(opts().mechanism(MechanismConfig::PlainClient {
            username: "admin".into(),
            password: "guess".into(),
        }));
        bad.connect(&ep.to_string()).unwrap();
        refused(&router, &bad).await;
    })
    .await
    .unwrap();
}
