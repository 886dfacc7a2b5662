//! A node notices at once when its connection to a peer drops: the peer is removed (EXIT)
//! when the connection stays down for the link grace, long before the evasive timeout, and
//! kept when it comes back in time. The peer here is hand-made (a ROUTER inbox and a DEALER
//! that sends HELLO), so the test decides when its inbox goes away.

use std::time::Duration;

use bytes::Bytes;
use harmony_node::{Event, LinkEvent, Node, Uuid};
use harmony_wire::zre::{Hello, ZreBody, ZreMessage};
use harmony_zmtp::{DealerSocket, EventKind, Message, RouterSocket, SocketOptions};
use tokio::sync::mpsc;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(15);
/// The link grace when the connection stays down (short: the test waits it out).
const GRACE: Duration = Duration::from_millis(300);
/// The link grace when the connection comes back (long enough for a loaded machine to
/// reconnect within it).
const GRACE_BACK: Duration = Duration::from_secs(1);

/// A ZRE peer made by hand: its inbox and its connection to the node's inbox.
struct FakePeer {
    uuid: Uuid,
    inbox: RouterSocket,
    endpoint: String,
    _outbound: DealerSocket,
}

impl FakePeer {
    async fn enter(node: &Node) -> Self {
        let uuid = Uuid::new_v4();
        let inbox = RouterSocket::new(SocketOptions::default().router_handover(true));
        let endpoint = inbox.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
        let id = Bytes::copy_from_slice(&harmony_peer::routing_id(&uuid));
        let outbound = DealerSocket::new(SocketOptions::default().identity(id));
        outbound.connect(node.endpoint()).unwrap();
        let hello = ZreMessage::new(
            1,
            ZreBody::Hello(Hello {
                endpoint: endpoint.clone(),
                name: "fake".into(),
                ..Hello::default()
            }),
        );
        outbound
            .send(Message::from_frames(hello.to_frames().unwrap()))
            .await
            .unwrap();
        Self {
            uuid,
            inbox,
            endpoint,
            _outbound: outbound,
        }
    }

    /// The next ZRE message from the node on our inbox.
    async fn recv(&self) -> ZreMessage {
        let m = timeout(STEP, self.inbox.recv()).await.unwrap().unwrap();
        ZreMessage::decode(&m.frames()[1..], 1 << 20).unwrap()
    }
}

async fn node(grace: Duration) -> Node {
    Node::builder()
        .name("watcher")
        .loopback()
        .port(harmony_testkit::free_udp_port())
        // Only the link can make the peer leave within this test.
        .evasive_timeout(Duration::from_secs(60))
        .expired_timeout(Duration::from_secs(120))
        .link_grace(grace)
        .start()
        .await
        .unwrap()
}

async fn next_event(node: &mut Node) -> Event {
    timeout(STEP, node.next_event()).await.unwrap().unwrap()
}

async fn link_event(links: &mut mpsc::Receiver<LinkEvent>, peer: Uuid, name: &str) -> LinkEvent {
    timeout(STEP, async {
        loop {
            let link = links.recv().await.unwrap();
            if link.peer == Some(peer) && link.event.kind.name() == name {
                return link;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} for the peer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_connection_drops_and_stays_down_exits_after_the_grace() {
    let mut node = node(GRACE).await;
    let mut links = node.link_events().unwrap();
    let peer = FakePeer::enter(&node).await;
    assert!(matches!(next_event(&mut node).await, Event::Enter { peer: p, .. } if p == peer.uuid));
    assert!(matches!(peer.recv().await.body, ZreBody::Hello(_)));
    link_event(&mut links, peer.uuid, "HANDSHAKE_SUCCEEDED").await;

    // The peer's inbox goes away (a crash: no beacon, no goodbye).
    let since = tokio::time::Instant::now();
    peer.inbox.unbind(&peer.endpoint).await.unwrap();
    let dropped = link_event(&mut links, peer.uuid, "DISCONNECTED").await;
    assert!(matches!(dropped.event.kind, EventKind::Disconnected { .. }));
    match next_event(&mut node).await {
        Event::Exit { peer: p, .. } => assert_eq!(p, peer.uuid),
        other => panic!("expected EXIT, got {other:?}"),
    }
    let took = since.elapsed();
    assert!(took >= GRACE, "EXIT after the grace, took {took:?}");
    assert!(node.peers().await.unwrap().is_empty());
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_connection_comes_back_in_time_stays() {
    let mut node = node(GRACE_BACK).await;
    let mut links = node.link_events().unwrap();
    let peer = FakePeer::enter(&node).await;
    assert!(matches!(next_event(&mut node).await, Event::Enter { .. }));
    assert!(matches!(peer.recv().await.body, ZreBody::Hello(_)));
    link_event(&mut links, peer.uuid, "HANDSHAKE_SUCCEEDED").await;

    // The inbox goes away and is back on the same port at once: the node reconnects.
    peer.inbox.unbind(&peer.endpoint).await.unwrap();
    link_event(&mut links, peer.uuid, "DISCONNECTED").await;
    peer.inbox.bind(&peer.endpoint).await.unwrap();
    link_event(&mut links, peer.uuid, "HANDSHAKE_SUCCEEDED").await;

    // Past the grace the peer is still there, and whispers reach its new connection.
    let quiet = timeout(GRACE_BACK * 3 / 2, node.next_event()).await;
    assert!(quiet.is_err(), "unexpected {quiet:?}");
    node.whisper(peer.uuid, "still there").await.unwrap();
    match peer.recv().await.body {
        ZreBody::Whisper { content } => assert_eq!(content[0], "still there"),
        other => panic!("expected WHISPER, got {other:?}"),
    }
    node.stop().await.unwrap();
}
