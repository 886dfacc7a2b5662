//! Gossip discovery on real sockets (loopback): no UDP beacons at all, nodes meet through
//! gossip hubs (Zyre's `gossip_bind` / `gossip_connect`), tuples of dead nodes expire.

use std::collections::HashSet;
use std::time::Duration;

use harmony_node::{next_event_any, Event, Node, NodeBuilder, Uuid};
use harmony_security::KeyPair;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(30);

fn gossip_node(name: &str, beacon_port: u16) -> NodeBuilder {
    Node::builder()
        .name(name)
        .loopback()
        .port(beacon_port)
        .evasive_timeout(Duration::from_secs(5))
}

/// Waits until node `i` has seen ENTER from every other node, for every `i`.
async fn all_enter(nodes: &mut [Node]) {
    let uuids: Vec<Uuid> = nodes.iter().map(Node::uuid).collect();
    let n = nodes.len();
    let mut pairs = HashSet::new();
    timeout(STEP, async {
        while pairs.len() < n * (n - 1) {
            let (i, ev) = next_event_any(nodes).await.expect("nodes still running");
            if let Event::Enter { peer, endpoint, .. } = ev {
                let j = uuids.iter().position(|u| *u == peer).expect("a known peer");
                assert_ne!(i, j, "a node never sees itself");
                assert!(pairs.insert((i, j)), "duplicate ENTER {i} -> {j}");
                assert!(endpoint.starts_with("tcp://127.0.0.1:"), "{endpoint}");
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out with {}/{} ENTERs", pairs.len(), n * (n - 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_meet_through_two_hubs_without_beacons() {
    let beacon_port = harmony_testkit::free_udp_port();
    let hub_a = gossip_node("hub-a", beacon_port)
        .gossip_bind("tcp://127.0.0.1:0")
        .start()
        .await
        .expect("hub a starts");
    let a = hub_a.gossip_endpoints()[0].clone();
    // Hub b binds its own hub and joins hub a's: the two hubs form one network.
    let hub_b = gossip_node("hub-b", beacon_port)
        .gossip_bind("tcp://127.0.0.1:0")
        .gossip_connect(&a)
        .start()
        .await
        .expect("hub b starts");
    let b = hub_b.gossip_endpoints()[0].clone();
    let mut nodes = vec![hub_a, hub_b];
    for i in 2..10 {
        let hub = if i % 2 == 0 { &a } else { &b };
        let node = gossip_node(&format!("node{i}"), beacon_port)
            .endpoint("tcp://127.0.0.1:0")
            .gossip_connect(hub)
            .start()
            .await
            .expect("node starts");
        nodes.push(node);
    }
    all_enter(&mut nodes).await;
    // Nobody opened the beacon port: it can be bound without sharing.
    std::net::UdpSocket::bind(("0.0.0.0", beacon_port))
        .expect("the beacon port is unused in gossip mode");
    // Talk flows as with beacons.
    nodes[3].join("G").await.expect("join");
    nodes[8].join("G").await.expect("join");
    let from = nodes[3].uuid();
    nodes[3]
        .whisper(nodes[8].uuid(), "over gossip")
        .await
        .expect("whisper");
    timeout(STEP, async {
        loop {
            let (i, ev) = next_event_any(&mut nodes).await.expect("running");
            if let Event::Whisper { peer, content, .. } = ev {
                assert_eq!((i, peer), (8, from));
                assert_eq!(&content[0][..], b"over gossip");
                break;
            }
        }
    })
    .await
    .expect("whisper arrives");
    // A stopping node says GOODBYE: its peers see EXIT at once, not after the 30 s expiry.
    let mut gone = nodes.pop().expect("node 9");
    let gone_uuid = gone.uuid();
    gone.stop().await.expect("stop");
    let mut exits = HashSet::new();
    timeout(Duration::from_secs(3), async {
        while exits.len() < nodes.len() {
            let (i, ev) = next_event_any(&mut nodes).await.expect("running");
            if let Event::Exit { peer, .. } = ev {
                assert_eq!(peer, gone_uuid);
                exits.insert(i);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("GOODBYE reached {} of {} nodes", exits.len(), nodes.len()));
    for mut node in nodes {
        node.stop().await.expect("stop");
    }
}

/// Starts a node on a runtime of its own, in a thread, so that the test can kill it (drop
/// the runtime: no GOODBYE, no more refreshes) as `kill -9` would.
fn start_killable(
    builder: NodeBuilder,
) -> (
    Uuid,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (uuid_tx, uuid_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let node = rt.block_on(builder.start()).expect("node starts");
        uuid_tx.send(node.uuid()).expect("test waits");
        let _ = kill_rx.recv();
        std::mem::forget(node);
        rt.shutdown_background();
    });
    (uuid_rx.recv().expect("node started"), kill_tx, thread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_tuple_expires_at_the_hub() {
    let beacon_port = harmony_testkit::free_udp_port();
    let ttl = Some(Duration::from_millis(900));
    let mut hub = gossip_node("hub", beacon_port)
        .gossip_bind("tcp://127.0.0.1:0")
        .gossip_ttl(ttl)
        .start()
        .await
        .expect("hub starts");
    let at = hub.gossip_endpoints()[0].clone();
    let mut alive = gossip_node("alive", beacon_port)
        .gossip_connect(&at)
        .gossip_ttl(ttl)
        .start()
        .await
        .expect("node starts");
    let (victim, kill, thread) = start_killable(
        gossip_node("victim", beacon_port)
            .gossip_connect(&at)
            .gossip_ttl(ttl),
    );
    let victim_key = victim.simple().to_string().to_uppercase();
    let alive_key = alive.uuid().simple().to_string().to_uppercase();
    // The hub learns both tuples and the victim enters.
    timeout(STEP, async {
        loop {
            if let Some(Event::Enter { peer, .. }) = hub.next_event().await {
                if peer == victim {
                    break;
                }
            }
        }
    })
    .await
    .expect("victim enters");
    assert!(hub.gossip_tuple(&victim_key).await.unwrap().is_some());
    kill.send(()).expect("victim thread waits");
    thread.join().expect("victim thread");
    // Without refreshes the victim's tuple goes within its ttl (plus a refresh period); the
    // living node's stays, refreshed every 300 ms.
    timeout(Duration::from_secs(10), async {
        while hub.gossip_tuple(&victim_key).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the killed node's tuple expires");
    assert!(hub.gossip_tuple(&alive_key).await.unwrap().is_some());
    assert!(alive.gossip_tuple(&alive_key).await.unwrap().is_some());
    // A node joining now is never told about the dead one.
    let mut late = gossip_node("late", beacon_port)
        .gossip_connect(&at)
        .start()
        .await
        .expect("late node starts");
    timeout(STEP, async {
        loop {
            if let Some(Event::Enter { peer, .. }) = late.next_event().await {
                if peer == alive.uuid() {
                    break;
                }
            }
        }
    })
    .await
    .expect("the late node meets the living one");
    assert_eq!(late.gossip_tuple(&victim_key).await.unwrap(), None);
    for node in [&mut hub, &mut alive, &mut late] {
        node.stop().await.expect("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curve_nodes_meet_through_a_curve_hub() {
    let beacon_port = harmony_testkit::free_udp_port();
    let hub_keys = KeyPair::generate();
    let hub_public = *hub_keys.public();
    let hub = gossip_node("hub", beacon_port)
        .curve(hub_keys)
        .gossip_bind("tcp://127.0.0.1:0")
        .start()
        .await
        .expect("hub starts");
    let at = hub.gossip_endpoints()[0].clone();
    let mut nodes = vec![hub];
    for i in 0..2 {
        let node = gossip_node(&format!("n{i}"), beacon_port)
            .curve(KeyPair::generate())
            .gossip_connect_curve(hub_public, &at)
            .start()
            .await
            .expect("node starts");
        nodes.push(node);
    }
    all_enter(&mut nodes).await;
    for mut node in nodes {
        node.stop().await.expect("stop");
    }
}

/// A czmq/Zyre node as it shows on the wire (the frames of
/// `harmony-wire/tests/data/zyre-c-gossip-election.jsonl`): its gossip client says HELLO and
/// PUBLISHes its UUID and inbox with ttl 0. The Harmony hub answers with its own tuple, keeps
/// the czmq tuple (no expiry for ttl 0), and its node dials the advertised inbox with a ZRE
/// HELLO, as a Zyre node would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_czmq_shaped_gossip_client_is_served_and_dialled() {
    use bytes::Bytes;
    use harmony_wire::zgp::ZgpMessage;
    use harmony_wire::zre::{ZreBody, ZreMessage};
    use harmony_zmtp::{DealerSocket, Message, RouterSocket, SocketOptions};

    let beacon_port = harmony_testkit::free_udp_port();
    let hub = gossip_node("hub", beacon_port)
        .gossip_bind("tcp://127.0.0.1:0")
        .gossip_ttl(Some(Duration::from_millis(600)))
        .start()
        .await
        .expect("hub starts");
    // The "Zyre" inbox, and its gossip client.
    let inbox = RouterSocket::new(SocketOptions::default());
    let inbox_at = inbox.bind("tcp://127.0.0.1:0").await.expect("bind");
    let zyre_uuid = "52C03EFD88764A2DB68A518890CC7939";
    let client = DealerSocket::new(SocketOptions::default());
    client.connect(&hub.gossip_endpoints()[0]).expect("connect");
    // czmq's exact bytes: HELLO, then PUBLISH key value ttl=0.
    client
        .send(Message::from(Bytes::from_static(b"\xAA\xA0\x01\x01")))
        .await
        .expect("send");
    let publish = ZgpMessage::Publish {
        key: zyre_uuid.into(),
        value: format!("tcp://{}", inbox_at.addr()),
        ttl: 0,
    };
    client
        .send(Message::from(publish.to_bytes().expect("encodes")))
        .await
        .expect("send");
    // The hub answers HELLO with its tuple: our key and endpoint, Harmony's ttl.
    let hub_key = hub.uuid().simple().to_string().to_uppercase();
    timeout(STEP, async {
        loop {
            let msg = client.recv().await.expect("recv");
            let ZgpMessage::Publish { key, value, ttl } =
                ZgpMessage::decode(&msg[0], 1 << 16).expect("ZGP")
            else {
                continue;
            };
            if key == hub_key {
                assert_eq!(value, hub.endpoint());
                assert_eq!(ttl, 600);
                break;
            }
        }
    })
    .await
    .expect("the hub publishes its own tuple to the client");
    // The hub's node dials the czmq node's inbox and says HELLO first (sequence 1).
    let first = timeout(STEP, inbox.recv())
        .await
        .expect("dialled")
        .expect("recv");
    let hello = ZreMessage::decode(&first.frames()[1..], 1 << 20).expect("ZRE");
    assert_eq!(hello.sequence, 1);
    let ZreBody::Hello(hello) = hello.body else {
        panic!("HELLO first, got {hello:?}");
    };
    assert_eq!(hello.endpoint, hub.endpoint());
    // ttl 0 = czmq's "forever": still held after many of Harmony's ttls.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        hub.gossip_tuple(zyre_uuid).await.unwrap().as_deref(),
        Some(format!("tcp://{}", inbox_at.addr()).as_str())
    );
}

/// Waits until the last LEADER event of every node (all in group `G`) names `leader`.
async fn all_agree_on(nodes: &mut [Node], leader: Uuid, what: &str) {
    let n = nodes.len();
    let mut agreed = HashSet::new();
    timeout(STEP, async {
        while agreed.len() < n {
            let (i, ev) = next_event_any(nodes).await.expect("running");
            if let Event::Leader { peer, group, .. } = ev {
                assert_eq!(&*group, "G");
                if peer == leader {
                    agreed.insert(i);
                } else {
                    agreed.remove(&i);
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {n} members {what}", agreed.len()));
}

/// Zyre's election on real sockets: ten nodes in a group, four contest; every member reports
/// the same LEADER (the lowest contesting UUID); the leader stops and the others elect the
/// next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_elect_one_leader_and_reelect_when_it_stops() {
    let beacon_port = harmony_testkit::free_udp_port();
    let hub = gossip_node("hub", beacon_port)
        .gossip_bind("tcp://127.0.0.1:0")
        .start()
        .await
        .expect("hub starts");
    let at = hub.gossip_endpoints()[0].clone();
    let mut nodes = vec![hub];
    for i in 1..10 {
        let mut b = gossip_node(&format!("n{i}"), beacon_port).gossip_connect(&at);
        if i % 3 == 0 || i == 1 {
            b = b.contest("G");
        }
        nodes.push(b.start().await.expect("node starts"));
    }
    all_enter(&mut nodes).await;
    for node in &nodes {
        node.join("G").await.expect("join");
    }
    let contesters: Vec<Uuid> = [1, 3, 6, 9].iter().map(|&i| nodes[i].uuid()).collect();
    let lowest = |c: &[Uuid]| {
        *c.iter()
            .min_by_key(|u| u.simple().to_string().to_uppercase())
            .expect("a contester")
    };
    let leader = lowest(&contesters);
    // Every member's last LEADER names the lowest contester.
    all_agree_on(&mut nodes, leader, "agreed on the leader").await;
    // The leader stops (GOODBYE): the rest elect the next lowest contester.
    let at_leader = nodes
        .iter()
        .position(|x| x.uuid() == leader)
        .expect("leader");
    let mut gone = nodes.remove(at_leader);
    gone.stop().await.expect("stop");
    let rest: Vec<Uuid> = contesters.into_iter().filter(|u| *u != leader).collect();
    let next = lowest(&rest);
    all_agree_on(&mut nodes, next, "re-elected").await;
    let n = nodes.len();
    for node in &nodes {
        assert_eq!(node.peers_by_group("G").await.unwrap().len(), n - 1);
    }
    for mut node in nodes {
        node.stop().await.expect("stop");
    }
}
