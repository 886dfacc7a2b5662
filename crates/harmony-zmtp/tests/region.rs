//! ROUTER frames that end in a file region: sent with sendfile(2) on a plain connection, read
//! and sealed with CURVE; a file truncated under a region closes that connection only.

mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use harmony_security::KeyPair;
use harmony_zmtp::{DealerSocket, FileRegion, Message, RouterSocket, SocketOptions};
use support::{curve_client, curve_server, opts, Watch};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

/// A temporary file of `len` bytes that all differ from their neighbours' pattern.
fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
    let content: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&content).unwrap();
    f.flush().unwrap();
    (f, content)
}

/// A router bound on loopback and a dealer with `identity` connected to it and known to it.
async fn pair(
    router_opts: SocketOptions,
    dealer_opts: SocketOptions,
    identity: &'static [u8],
) -> (RouterSocket, DealerSocket) {
    let router = RouterSocket::new(router_opts);
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    let dealer = add_dealer(&router, dealer_opts, &ep.to_string(), identity).await;
    (router, dealer)
}

async fn add_dealer(
    router: &RouterSocket,
    options: SocketOptions,
    endpoint: &str,
    identity: &'static [u8],
) -> DealerSocket {
    let dealer = DealerSocket::new(options.identity(Bytes::from_static(identity)));
    dealer.connect(endpoint).unwrap();
    dealer.send("hello").await.unwrap();
    let got = router.recv().await.unwrap();
    assert_eq!(got.frames()[0], identity);
    dealer
}

fn routed(identity: &'static [u8], frames: &[&'static [u8]]) -> Message {
    let mut msg = Message::from_frames(frames.iter().map(|f| Bytes::from_static(f)));
    msg.push_front(Bytes::from_static(identity));
    msg
}

/// Regions of several sizes (small, one large, several in a row, empty) arrive as the end of
/// the last frame, in order with ordinary messages around them.
async fn regions_arrive_intact(router: &RouterSocket, dealer: &DealerSocket) {
    let (f, content) = file_of(3 << 20);
    let file = Arc::new(f.reopen().unwrap());
    let cases = [
        (0usize, 10usize),
        (12_345, (2 << 20) + 7),
        (1 << 20, 1 << 20),
        (5, 0),
    ];
    for (offset, len) in cases {
        let region = FileRegion::new(file.clone(), offset as u64, len);
        router
            .try_send_region(routed(b"a", &[b"first", b"head:"]), region)
            .unwrap();
    }
    router.send(routed(b"a", &[b"after"])).await.unwrap();
    for (offset, len) in cases {
        let got = dealer.recv().await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], "first");
        let mut want = b"head:".to_vec();
        want.extend_from_slice(&content[offset..offset + len]);
        assert!(got[1] == want, "region {offset}+{len} differs");
    }
    assert_eq!(dealer.recv().await.unwrap(), Message::from("after"));
}

#[tokio::test]
async fn a_file_region_arrives_as_the_end_of_the_last_frame() {
    timeout(T, async {
        let (router, dealer) = pair(opts(), opts(), b"a").await;
        regions_arrive_intact(&router, &dealer).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn with_curve_the_region_is_read_and_sealed() {
    timeout(T, async {
        let server = KeyPair::generate();
        let client = KeyPair::generate();
        let (router, dealer) = pair(
            curve_server(opts(), &server, &[&client]),
            opts().mechanism(curve_client(&client, &server)),
            b"a",
        )
        .await;
        regions_arrive_intact(&router, &dealer).await;
    })
    .await
    .unwrap();
}

/// The file is cut short (before the region's start, and inside it) after the region was
/// queued: that dealer's connection closes without delivering a partial frame, the other
/// dealer's goes on, and the first one reconnects and gets what follows.
async fn truncation_closes_that_connection_only(
    router_opts: SocketOptions,
    dealer_opts: SocketOptions,
) {
    let router = RouterSocket::new(router_opts);
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let a = add_dealer(&router, dealer_opts.clone(), &ep, b"a").await;
    let b = add_dealer(&router, dealer_opts, &ep, b"b").await;
    for cut in [(4 << 20) + 100, 100] {
        let (f, content) = file_of(8 << 20);
        let file = Arc::new(f.reopen().unwrap());
        let mut watch = Watch::new(a.monitor());
        file.set_len(cut).unwrap();
        let region = FileRegion::new(file.clone(), 4 << 20, 4 << 20);
        router
            .try_send_region(routed(b"a", &[b"head:"]), region)
            .unwrap();
        watch.wait("DISCONNECTED").await;
        // The other connection is untouched: a region of a whole file still reaches it.
        let whole = FileRegion::new(file.clone(), 0, 100);
        router
            .try_send_region(routed(b"b", &[b"ok:"]), whole)
            .unwrap();
        let got = b.recv().await.unwrap();
        let mut want = b"ok:".to_vec();
        want.extend_from_slice(&content[..100]);
        assert!(got[0] == want);
        // `a` comes back (new connection) and receives what is sent next, nothing partial.
        a.send("again").await.unwrap();
        assert_eq!(router.recv().await.unwrap(), routed(b"a", &[b"again"]));
        router.send(routed(b"a", &[b"next"])).await.unwrap();
        assert_eq!(a.recv().await.unwrap(), Message::from("next"));
    }
}

#[tokio::test]
async fn a_file_truncated_under_a_region_closes_that_connection_only() {
    timeout(T, truncation_closes_that_connection_only(opts(), opts()))
        .await
        .unwrap();
}

#[tokio::test]
async fn with_curve_a_truncated_region_closes_that_connection_only() {
    let server = KeyPair::generate();
    let client = KeyPair::generate();
    timeout(
        T,
        truncation_closes_that_connection_only(
            curve_server(opts(), &server, &[&client]),
            opts().mechanism(curve_client(&client, &server)),
        ),
    )
    .await
    .unwrap();
}
