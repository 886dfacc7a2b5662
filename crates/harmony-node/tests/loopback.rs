//! Several real nodes on loopback (real UDP beacons, real ZMTP connections) in one process.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use harmony_node::{next_event_any, Event, Node, Uuid};
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(15);

async fn start_nodes(n: usize, port: u16) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 0..n {
        let node = Node::builder()
            .name(format!("node{i}"))
            .header("X-INDEX", i.to_string())
            .loopback()
            .port(port)
            .interval(Duration::from_millis(100))
            .start()
            .await
            .expect("node starts");
        nodes.push(node);
    }
    nodes
}

/// Reads events of all nodes until `done` says the collected set is complete.
async fn collect(
    nodes: &mut [Node],
    mut keep: impl FnMut(usize, &Event) -> bool,
    want: usize,
) -> Vec<(usize, Event)> {
    let mut got = Vec::new();
    timeout(STEP, async {
        while got.len() < want {
            let (i, ev) = next_event_any(nodes).await.expect("nodes still running");
            if keep(i, &ev) {
                got.push((i, ev));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out with {}/{want} events: {got:?}", got.len()));
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_discover_join_shout_whisper_leave_and_exit() {
    let n = 6;
    let mut nodes = start_nodes(n, harmony_testkit::free_udp_port()).await;
    let uuids: Vec<Uuid> = nodes.iter().map(Node::uuid).collect();

    // Every node sees every other exactly once, with its headers and endpoint.
    let enters = collect(
        &mut nodes,
        |_, e| matches!(e, Event::Enter { .. }),
        n * (n - 1),
    )
    .await;
    let mut pairs = HashSet::new();
    for (i, ev) in &enters {
        let Event::Enter {
            peer,
            name,
            headers,
            endpoint,
        } = ev
        else {
            unreachable!()
        };
        let j = uuids.iter().position(|u| u == peer).expect("known peer");
        assert_ne!(*i, j, "a node never sees itself");
        assert!(pairs.insert((*i, j)), "duplicate ENTER {i} -> {j}");
        assert_eq!(&**name, format!("node{j}"));
        assert_eq!(headers, &vec![("X-INDEX".to_owned(), j.to_string())]);
        assert_eq!(endpoint, nodes[j].endpoint());
    }
    for node in &nodes {
        let mut peers = node.peers().await.unwrap();
        peers.sort();
        let mut others: Vec<Uuid> = uuids
            .iter()
            .copied()
            .filter(|u| *u != node.uuid())
            .collect();
        others.sort();
        assert_eq!(peers, others);
        let j = uuids.iter().position(|u| *u == others[0]).unwrap();
        let value = node.peer_header_value(others[0], "X-INDEX").await.unwrap();
        assert_eq!(value, Some(j.to_string()));
    }

    // Everyone joins; each node sees n-1 JOINs.
    for node in &nodes {
        node.join("GROUP").await.unwrap();
    }
    let joins = collect(
        &mut nodes,
        |_, e| matches!(e, Event::Join { .. }),
        n * (n - 1),
    )
    .await;
    assert!(joins.iter().all(|(_, e)| e.group() == Some("GROUP")));
    assert_eq!(nodes[0].peers_by_group("GROUP").await.unwrap().len(), n - 1);
    assert_eq!(
        nodes[0].own_groups().await.unwrap(),
        vec!["GROUP".to_owned()]
    );

    // A two-frame shout reaches every other member once, frames intact.
    nodes[0]
        .shout("GROUP", vec![Bytes::from("part1"), Bytes::from("part2")])
        .await
        .unwrap();
    let shouts = collect(&mut nodes, |_, e| matches!(e, Event::Shout { .. }), n - 1).await;
    let receivers: HashSet<usize> = shouts.iter().map(|(i, _)| *i).collect();
    assert_eq!(receivers, (1..n).collect());
    for (_, ev) in &shouts {
        let Event::Shout { peer, content, .. } = ev else {
            unreachable!()
        };
        assert_eq!(*peer, uuids[0]);
        assert_eq!(content, &vec![Bytes::from("part1"), Bytes::from("part2")]);
    }

    // Whisper goes to exactly one node.
    nodes[3].whisper(uuids[1], "just you").await.unwrap();
    let whispers = collect(&mut nodes, |_, e| matches!(e, Event::Whisper { .. }), 1).await;
    assert_eq!(whispers[0].0, 1);
    assert!(
        nodes[3].whisper(Uuid::new_v4(), "nobody").await.is_err(),
        "unknown peer is an error"
    );

    // A leave is seen by all others; a shout then skips the leaver.
    nodes[2].leave("GROUP").await.unwrap();
    let leaves = collect(&mut nodes, |_, e| matches!(e, Event::Leave { .. }), n - 1).await;
    assert!(leaves.iter().all(|(i, e)| *i != 2 && e.peer() == uuids[2]));
    nodes[0].shout("GROUP", "after leave").await.unwrap();
    let shouts = collect(&mut nodes, |_, e| matches!(e, Event::Shout { .. }), n - 2).await;
    assert!(shouts.iter().all(|(i, _)| *i != 2 && *i != 0));

    // A node that stops is seen to EXIT by all others (port-0 beacon), and emits STOP itself.
    let mut last = nodes.pop().unwrap();
    last.stop().await.unwrap();
    let mut tail = Vec::new();
    while let Some(ev) = last.next_event().await {
        tail.push(ev);
    }
    assert!(
        matches!(tail.last(), Some(Event::Stop { .. })),
        "STOP is the last event: {tail:?}"
    );
    let exits = collect(&mut nodes, |_, e| matches!(e, Event::Exit { .. }), n - 1).await;
    let mut count: HashMap<usize, usize> = HashMap::new();
    for (i, ev) in &exits {
        assert_eq!(ev.peer(), uuids[n - 1]);
        *count.entry(*i).or_default() += 1;
    }
    assert!(count.values().all(|c| *c == 1));
    for node in &mut nodes {
        node.stop().await.unwrap();
    }
}

#[tokio::test]
async fn clear_errors_for_bad_settings() {
    let err = Node::builder()
        .interface("no-such-if0")
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-if0"), "{err}");
    let err = Node::builder()
        .name("x".repeat(300))
        .loopback()
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("255"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_nodes_chat_and_never_meet_plaintext_nodes() {
    use harmony_security::KeyPair;
    let port = harmony_testkit::free_udp_port();
    let mut secure = Vec::new();
    for name in ["sec0", "sec1"] {
        let node = Node::builder()
            .name(name)
            .curve(KeyPair::generate())
            .loopback()
            .port(port)
            .interval(Duration::from_millis(100))
            .start()
            .await
            .unwrap();
        secure.push(node);
    }
    let mut plain = start_nodes(1, port).await;

    let enters = collect(&mut secure, |_, e| matches!(e, Event::Enter { .. }), 2).await;
    for (i, ev) in &enters {
        let Event::Enter { peer, headers, .. } = ev else {
            unreachable!()
        };
        assert_eq!(*peer, secure[1 - i].uuid());
        let key = headers
            .iter()
            .find(|(k, _)| k == "X-PUBLICKEY")
            .expect("X-PUBLICKEY header");
        assert_eq!(key.1.len(), 40, "Z85 of 32 bytes");
    }
    let to = secure[1].uuid();
    secure[0].whisper(to, "over CURVE").await.unwrap();
    let got = collect(&mut secure, |_, e| matches!(e, Event::Whisper { .. }), 1).await;
    assert_eq!(got[0].0, 1);

    // Ten beacon intervals later the plaintext node has still seen nobody, and nobody saw it.
    let quiet = timeout(Duration::from_secs(1), next_event_any(&mut plain)).await;
    assert!(quiet.is_err(), "plaintext node got {quiet:?}");
    assert!(secure[0].peers().await.unwrap() == vec![to]);
    for node in secure.iter_mut().chain(plain.iter_mut()) {
        node.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_on_the_inbox_changes_nothing_for_the_others() {
    use harmony_wire::zre::{Hello, ZreBody, ZreMessage};
    use harmony_zmtp::{DealerSocket, Message, SocketOptions};

    let mut nodes = start_nodes(2, harmony_testkit::free_udp_port()).await;
    collect(&mut nodes, |_, e| matches!(e, Event::Enter { .. }), 2).await;
    let (a, b) = (nodes[0].uuid(), nodes[1].uuid());

    // A raw DEALER with a ZRE routing id talks garbage to node 0's inbox.
    let intruder = Uuid::new_v4();
    let id = Bytes::copy_from_slice(&harmony_peer::routing_id(&intruder));
    let dealer = DealerSocket::new(SocketOptions::default().identity(id));
    let endpoint = nodes[0].endpoint().to_owned();
    dealer.connect(&endpoint).unwrap();
    let hello = ZreMessage::new(
        1,
        ZreBody::Hello(Hello {
            endpoint: "tcp://127.0.0.1:9".into(),
            name: "intruder".into(),
            ..Hello::default()
        }),
    );
    let mut garbage: Vec<Vec<Bytes>> = vec![
        vec![Bytes::from_static(b"not zre at all")],
        vec![Bytes::from_static(b"\xaa\xa1\x63\x02\x00\x01")], // unknown id 99
        vec![Bytes::from_static(b"\xaa\xa1\x04\x02\x00\x02\x05GRO")], // truncated JOIN
        vec![Bytes::from_static(b"\xaa\xa1\x04\x07\x00\x02")], // wrong version
    ];
    garbage.push(hello.to_frames().unwrap());
    // After a valid HELLO: a JOIN whose status does not follow, then a sequence gap.
    let join = ZreMessage::new(
        2,
        ZreBody::Join {
            group: "G".into(),
            status: 200,
        },
    );
    garbage.push(join.to_frames().unwrap());
    garbage.push(ZreMessage::new(9, ZreBody::Ping).to_frames().unwrap());
    for frames in garbage {
        dealer.send(Message::from_frames(frames)).await.unwrap();
    }

    // Node 0 skips the garbage, takes the HELLO (ENTER), then drops the intruder at the JOIN
    // whose status does not follow (EXIT); nothing panics.
    let seen = collect(&mut nodes, |i, e| i == 0 && e.peer() == intruder, 2).await;
    assert!(
        matches!(&seen[0].1, Event::Enter { name, .. } if &**name == "intruder"),
        "{seen:?}"
    );
    assert!(matches!(seen[1].1, Event::Exit { .. }), "{seen:?}");

    // The two honest nodes keep talking, in both directions.
    nodes[0].whisper(b, "still here?").await.unwrap();
    nodes[1].whisper(a, "yes").await.unwrap();
    let got = collect(&mut nodes, |_, e| matches!(e, Event::Whisper { .. }), 2).await;
    let receivers: HashSet<usize> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(receivers, HashSet::from([0, 1]));
    let peers = nodes[0].peers().await.unwrap();
    assert!(peers.contains(&b), "node 0 still knows node 1: {peers:?}");
    assert!(
        !peers.contains(&intruder),
        "the intruder was removed after its protocol errors"
    );
    for node in &mut nodes {
        node.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_header_reaches_the_peer_and_request_properties_returns_the_set() {
    let mut nodes = start_nodes(2, harmony_testkit::free_udp_port()).await;
    let (a, b) = (nodes[0].uuid(), nodes[1].uuid());
    collect(&mut nodes, |_, e| matches!(e, Event::Enter { .. }), 2).await;

    nodes[0].set_header("X-STATUS", "busy").await.unwrap();
    nodes[0].set_header("X-INDEX", "first").await.unwrap();
    let got = collect(&mut nodes, |_, e| matches!(e, Event::Headers { .. }), 2).await;
    let want = vec![
        ("X-INDEX".to_owned(), "first".to_owned()),
        ("X-STATUS".to_owned(), "busy".to_owned()),
    ];
    assert!(got.iter().all(|(i, e)| *i == 1 && e.peer() == a), "{got:?}");
    let Event::Headers {
        headers, request, ..
    } = &got[1].1
    else {
        unreachable!()
    };
    assert_eq!((headers, *request), (&want, None));
    assert_eq!(
        nodes[1].peer_header_value(a, "X-STATUS").await.unwrap(),
        Some("busy".to_owned())
    );
    let infos = nodes[1].peer_infos().await.unwrap();
    assert!(infos[0]
        .headers
        .contains(&("X-INDEX".to_owned(), "first".to_owned())));

    // Asked for over the network: both ways.
    assert_eq!(nodes[1].request_properties(a).await.unwrap(), want);
    assert_eq!(
        nodes[0].request_properties(b).await.unwrap(),
        vec![("X-INDEX".to_owned(), "1".to_owned())]
    );
    assert!(matches!(
        nodes[0].request_properties(Uuid::from_u128(7)).await,
        Err(harmony_node::NodeError::UnknownPeer(_))
    ));
    assert!(matches!(
        nodes[0].set_header("X-HARMONY", "x").await,
        Err(harmony_node::NodeError::Invalid(_))
    ));
    for node in &mut nodes {
        node.stop().await.unwrap();
    }
}

/// An application that reads its events late loses none and sees them in order: while it is
/// behind, the driver stops reading the inbox at the event queue's bound and takes it up again
/// as the application catches up (WHISPERs are read on the application's own task meanwhile).
/// After `stop`, the stream ends with STOP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reader_gets_every_whisper_in_order_and_the_stream_ends_with_stop() {
    const COUNT: u32 = 20_000;
    let port = harmony_testkit::free_udp_port();
    let mut nodes = start_nodes(2, port).await;
    collect(&mut nodes, |_, e| matches!(e, Event::Enter { .. }), 2).await;
    let to = nodes[1].uuid();
    for i in 0..COUNT {
        nodes[0]
            .whisper(to, i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    // The scenario itself, not a synchronisation: the receiving application is busy for a
    // while, so far more than the queue's 4096 events wait for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sender, receiver) = nodes.split_at_mut(1);
    let mut next = 0u32;
    timeout(STEP, async {
        while next < COUNT {
            match receiver[0].next_event().await.expect("running") {
                Event::Whisper { content, name, .. } => {
                    assert_eq!(&*name, "node0");
                    assert_eq!(content[0].as_ref(), next.to_be_bytes(), "in order");
                    next += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out after {next}/{COUNT} whispers"));
    sender[0].whisper(to, "last").await.unwrap();
    let last = timeout(STEP, receiver[0].next_event()).await.unwrap();
    assert!(matches!(&last, Some(Event::Whisper { content, .. }) if content[0] == "last"));
    sender[0].stop().await.unwrap();
    receiver[0].stop().await.unwrap();
    // Whatever was not read yet (EXIT, if it came in time) is still handed out, STOP last.
    let mut tail = Vec::new();
    timeout(STEP, async {
        while let Some(ev) = receiver[0].next_event().await {
            tail.push(ev.kind());
        }
    })
    .await
    .expect("the event stream ends after STOP");
    assert_eq!(tail.last(), Some(&"STOP"), "{tail:?}");
}

/// `request_properties` of a peer that never answers: a raw ZRE peer that advertises
/// `X-HARMONY: props` in its HELLO and then stays mute. The node asks (the PROPS-REQUEST
/// reaches the peer's inbox) and gives up after the timeout with `NodeError::Timeout`; a late
/// answer afterwards is taken as a plain header change, and the node goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_properties_times_out_when_the_peer_never_answers() {
    use harmony_wire::zre::{Hello, ZreBody, ZreMessage};
    use harmony_zmtp::{DealerSocket, Message, RouterSocket, SocketOptions};

    let mut node = Node::builder()
        .name("asker")
        .loopback()
        .port(harmony_testkit::free_udp_port())
        .start()
        .await
        .expect("node starts");
    let mute = Uuid::from_u128(0x00de_adbe_ef00_4000_8000_0000_0000_0001);
    let inbox = RouterSocket::new(SocketOptions::default());
    let inbox_at = inbox.bind("tcp://127.0.0.1:0").await.expect("bind");
    let out = DealerSocket::new(
        SocketOptions::default()
            .identity(Bytes::copy_from_slice(&harmony_group::routing_id(&mute))),
    );
    out.connect(node.endpoint()).expect("connect");
    let send = |sequence: u16, body: ZreBody| {
        let frames = ZreMessage { sequence, body }.to_frames().expect("encodes");
        Message::from_frames(frames)
    };
    let hello = ZreBody::Hello(Hello {
        endpoint: format!("tcp://{}", inbox_at.addr()),
        groups: vec![],
        status: 0,
        name: "mute".into(),
        headers: vec![("X-HARMONY".into(), "props".into())],
    });
    out.send(send(1, hello)).await.expect("send HELLO");
    timeout(STEP, async {
        while !matches!(node.next_event().await, Some(Event::Enter { peer, .. }) if peer == mute) {}
    })
    .await
    .expect("the mute peer enters");

    let asked = std::time::Instant::now();
    let got = node
        .request_properties_within(mute, Duration::from_millis(300))
        .await;
    assert!(
        matches!(got, Err(harmony_node::NodeError::Timeout(p)) if p == mute),
        "{got:?}"
    );
    assert!(asked.elapsed() >= Duration::from_millis(300));
    // It was asked: HELLO, then PROPS-REQUEST on the node's connection to the peer's inbox.
    let request = timeout(STEP, async {
        loop {
            let msg = inbox.recv().await.expect("recv");
            let m = ZreMessage::decode(&msg.frames()[1..], 1 << 20).expect("ZRE");
            if let ZreBody::PropsRequest { request } = m.body {
                break request;
            }
        }
    })
    .await
    .expect("the PROPS-REQUEST reached the peer");
    // The answer comes too late: no waiting caller; it is a header change like any other.
    let late = ZreBody::Props {
        request,
        headers: vec![("X-LATE".into(), "yes".into())],
    };
    out.send(send(2, late)).await.expect("send PROPS");
    timeout(STEP, async {
        loop {
            if let Some(Event::Headers { peer, headers, .. }) = node.next_event().await {
                assert_eq!(peer, mute);
                assert_eq!(headers, [("X-LATE".to_owned(), "yes".to_owned())]);
                break;
            }
        }
    })
    .await
    .expect("the late answer is seen as the peer's headers");
    assert_eq!(
        node.peer_header_value(mute, "X-LATE").await.unwrap(),
        Some("yes".to_owned())
    );
    node.stop().await.expect("stop");
}

/// A SHOUT is encoded once and each member's copy gets its own sequence number patched in:
/// shouts with two content frames, interleaved with whispers to one member (the same sequence
/// numbers), all reach every member whole and in order, and nobody drops anybody for a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shouts_interleaved_with_whispers_reach_every_member_in_order() {
    const COUNT: u32 = 2_000;
    let port = harmony_testkit::free_udp_port();
    let mut nodes = start_nodes(4, port).await;
    collect(&mut nodes, |_, e| matches!(e, Event::Enter { .. }), 12).await;
    for node in &nodes[1..] {
        node.join("FAN").await.unwrap();
    }
    // Each of the three members' JOIN reaches the other three nodes.
    collect(&mut nodes, |_, e| matches!(e, Event::Join { .. }), 9).await;
    let first = nodes[1].uuid();
    for i in 0..COUNT {
        let n = i.to_be_bytes().to_vec();
        nodes[0]
            .shout(
                "FAN",
                vec![Bytes::from(n.clone()), Bytes::from_static(b"shout")],
            )
            .await
            .unwrap();
        nodes[0].whisper(first, n).await.unwrap();
    }
    let (sender, members) = nodes.split_at_mut(1);
    // Per member: the next shout expected, and (member 1) the next whisper.
    let mut shouts = [0u32; 3];
    let mut whispers = 0u32;
    timeout(STEP, async {
        while shouts.iter().any(|&s| s < COUNT) || whispers < COUNT {
            let (i, ev) = next_event_any(members).await.expect("running");
            match ev {
                Event::Shout { content, group, .. } => {
                    assert_eq!(&*group, "FAN");
                    assert_eq!(content.len(), 2, "both content frames");
                    assert_eq!(content[0].as_ref(), shouts[i].to_be_bytes(), "in order");
                    assert_eq!(content[1].as_ref(), b"shout");
                    if i == 0 {
                        assert_eq!(whispers, shouts[0], "shout i comes before whisper i");
                    }
                    shouts[i] += 1;
                }
                Event::Whisper { content, .. } => {
                    assert_eq!(i, 0, "only the first member is whispered to");
                    assert_eq!(content[0].as_ref(), whispers.to_be_bytes(), "in order");
                    whispers += 1;
                    assert_eq!(whispers, shouts[0], "whisper i comes after shout i");
                }
                Event::Exit { .. } | Event::Evasive { .. } => panic!("unexpected {ev:?}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: shouts {shouts:?}, whispers {whispers}"));
    sender[0].stop().await.unwrap();
    for node in members {
        node.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_found_nothing_still_sees_later_events_on_any_task_and_the_end() {
    let mut nodes = start_nodes(2, harmony_testkit::free_udp_port()).await;
    collect(&mut nodes, |_, e| matches!(e, Event::Enter { .. }), 2).await;
    let mut b = nodes.pop().unwrap();
    let mut a = nodes.pop().unwrap();
    let a_id = a.uuid();
    // Drain what is queued, then wait with nothing to come: `a` is parked on this task.
    while a.try_next_event().is_some() {}
    let quiet = timeout(Duration::from_millis(300), a.next_event()).await;
    assert!(
        !matches!(quiet, Ok(Some(Event::Whisper { .. }))),
        "{quiet:?}"
    );

    // A whisper after that wakes the same task.
    b.whisper(a_id, "one").await.unwrap();
    let first = timeout(STEP, async {
        loop {
            if let Some(Event::Whisper { content, .. }) = a.next_event().await {
                break content;
            }
        }
    })
    .await
    .expect("the first whisper");
    assert_eq!(first, vec![Bytes::from_static(b"one")]);

    // Waited on by another task (another waker), after a wait here found nothing.
    let quiet = timeout(Duration::from_millis(100), a.next_event()).await;
    assert!(
        !matches!(quiet, Ok(Some(Event::Whisper { .. }))),
        "{quiet:?}"
    );
    let waiter = tokio::spawn(async move {
        let got = timeout(STEP, async {
            loop {
                if let Some(Event::Whisper { content, .. }) = a.next_event().await {
                    break content;
                }
            }
        })
        .await;
        (a, got)
    });
    b.whisper(a_id, "two").await.unwrap();
    let (mut a, got) = waiter.await.unwrap();
    assert_eq!(
        got.expect("the second whisper"),
        vec![Bytes::from_static(b"two")]
    );

    // Once stopped, a wait returns what is left, then `None`.
    a.stop().await.unwrap();
    let end = timeout(STEP, async { while a.next_event().await.is_some() {} }).await;
    assert!(end.is_ok(), "a stopped node's wait must end");
    b.stop().await.unwrap();
}
