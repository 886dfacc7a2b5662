//! Unit tests of one `ZreNode` fed by hand: handshake, sequence and status errors, liveness
//! timing, send failures, stop, and leader election between a few nodes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_group::{Action, Event, GroupError, NodeConfig, ZreNode};
use harmony_wire::zre::{Hello, ZreBody, ZreMessage};
use uuid::Uuid;

const ME: u128 = 0xA000;
const BOB: u128 = 0xB000;

fn node(now: Instant) -> ZreNode {
    let mut c = NodeConfig::new(Uuid::from_u128(ME));
    c.name = "me".into();
    c.endpoint = "tcp://10.0.0.1:5000".into();
    c.headers = vec![("X-ROLE".into(), "test".into())];
    ZreNode::new(c, now)
}

fn bob() -> Uuid {
    Uuid::from_u128(BOB)
}

fn hello(groups: &[&str], status: u8) -> ZreMessage {
    ZreMessage {
        sequence: 1,
        body: ZreBody::Hello(Hello {
            endpoint: "tcp://10.0.0.2:6000".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            status,
            name: "bob".into(),
            headers: vec![("X-K".into(), "v".into())],
        }),
    }
}

fn msg(sequence: u16, body: ZreBody) -> ZreMessage {
    ZreMessage { sequence, body }
}

fn actions(n: &mut ZreNode) -> Vec<Action> {
    n.drain_actions().collect()
}

fn events(n: &mut ZreNode) -> Vec<Event> {
    n.drain_events().collect()
}

fn kinds(ev: &[Event]) -> Vec<&'static str> {
    ev.iter().map(Event::kind).collect()
}

/// The only action is a PING-OK with our `sequence`.
fn assert_only_ping_ok(a: &[Action], sequence: u16) {
    assert!(
        matches!(
            a,
            [Action::Send {
                message: ZreMessage {
                    sequence: s,
                    body: ZreBody::PingOk
                },
                ..
            }] if *s == sequence
        ),
        "{a:?}"
    );
}

/// `node` with bob entered through HELLO (groups `A`), actions and events drained.
fn with_bob(now: Instant) -> ZreNode {
    let mut n = node(now);
    n.handle_message(bob(), hello(&["A"], 1), now);
    actions(&mut n);
    events(&mut n);
    n
}

#[test]
fn beacon_from_unknown_connects_and_sends_hello_first() {
    let t = Instant::now();
    let mut n = node(t);
    n.join("G1");
    assert!(actions(&mut n).is_empty(), "no peers yet, nothing to send");
    n.handle_beacon(bob(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 6000, t);
    let a = actions(&mut n);
    assert_eq!(
        a[0],
        Action::Connect {
            peer: bob(),
            endpoint: "tcp://10.0.0.2:6000".into()
        }
    );
    let Action::Send { peer, message } = &a[1] else {
        panic!("expected HELLO, got {a:?}")
    };
    assert_eq!(*peer, bob());
    assert_eq!(message.sequence, 1);
    assert_eq!(
        message.body,
        ZreBody::Hello(Hello {
            endpoint: "tcp://10.0.0.1:5000".into(),
            groups: vec!["G1".into()],
            status: 1,
            name: "me".into(),
            // Harmony tells its peers it speaks ELECT/LEADER (pyre never gets them).
            headers: vec![
                ("X-ROLE".into(), "test".into()),
                (
                    harmony_group::EXTENSIONS_HEADER.into(),
                    "elect,props".into()
                ),
            ],
        })
    );
    assert_eq!(a.len(), 2);
    // Not entered before its HELLO: no events, not in peers(); a second beacon does nothing.
    assert!(events(&mut n).is_empty());
    assert!(n.peers().is_empty());
    n.handle_beacon(bob(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 6000, t);
    assert!(actions(&mut n).is_empty());
    // Messages before HELLO are ignored.
    n.handle_message(bob(), msg(2, ZreBody::Whisper { content: vec![] }), t);
    assert!(events(&mut n).is_empty());
    // Its HELLO: ENTER, JOIN per group, status taken.
    n.handle_message(bob(), hello(&["A", "B"], 9), t);
    assert!(
        actions(&mut n).is_empty(),
        "already connected, no second HELLO"
    );
    let e = events(&mut n);
    assert_eq!(
        e[0],
        Event::Enter {
            peer: bob(),
            name: "bob".into(),
            headers: vec![("X-K".into(), "v".into())],
            endpoint: "tcp://10.0.0.2:6000".into()
        }
    );
    assert_eq!(kinds(&e), ["ENTER", "JOIN", "JOIN"]);
    assert_eq!(n.peers(), vec![bob()]);
    assert_eq!(n.peers_by_group("B"), vec![bob()]);
    assert_eq!(n.peer_groups(), vec!["A".to_owned(), "B".to_owned()]);
    assert_eq!(n.own_groups(), vec!["G1".to_owned()]);
    assert_eq!(n.peer_name(bob()), Some("bob"));
    assert_eq!(n.peer_endpoint(bob()), Some("tcp://10.0.0.2:6000"));
    assert_eq!(n.peer_header_value(bob(), "X-K"), Some("v"));
    assert_eq!(n.peer_header_value(bob(), "nope"), None);
    assert_eq!(n.peer(bob()).map(|p| p.status()), Some(9));
}

#[test]
fn hello_from_unknown_is_discovery() {
    let t = Instant::now();
    let mut n = node(t);
    n.handle_message(bob(), hello(&["A"], 1), t);
    let a = actions(&mut n);
    assert!(
        matches!(&a[0], Action::Connect { peer, endpoint } if *peer == bob() && endpoint == "tcp://10.0.0.2:6000")
    );
    assert!(
        matches!(&a[1], Action::Send { message, .. } if message.sequence == 1 && matches!(message.body, ZreBody::Hello(_)))
    );
    assert_eq!(kinds(&events(&mut n)), ["ENTER", "JOIN"]);
    // Non-HELLO from an unknown peer is ignored.
    let carol = Uuid::from_u128(0xC000);
    n.handle_message(carol, msg(1, ZreBody::Ping), t);
    assert!(actions(&mut n).is_empty() && events(&mut n).is_empty());
    // Own UUID is ignored.
    n.handle_message(Uuid::from_u128(ME), hello(&[], 0), t);
    n.handle_beacon(Uuid::from_u128(ME), IpAddr::V4(Ipv4Addr::LOCALHOST), 1, t);
    assert!(actions(&mut n).is_empty() && events(&mut n).is_empty());
}

#[test]
fn second_hello_recreates_peer() {
    let t = Instant::now();
    let later = t + Duration::from_secs(2);
    let mut n = with_bob(t);
    n.handle_message(bob(), msg(2, ZreBody::Ping), t);
    actions(&mut n);
    n.handle_message(bob(), hello(&["C"], 4), later);
    let a = actions(&mut n);
    assert_eq!(a[0], Action::Disconnect { peer: bob() });
    assert!(matches!(&a[1], Action::Connect { .. }));
    assert!(matches!(&a[2], Action::Send { message, .. } if message.sequence == 1));
    assert_eq!(kinds(&events(&mut n)), ["EXIT", "ENTER", "JOIN"]);
    assert_eq!(n.peers_by_group("A"), Vec::<Uuid>::new());
    assert_eq!(n.peers_by_group("C"), vec![bob()]);
}

#[test]
fn hello_answering_our_replacement_hello_restarts_inbound_only() {
    // bob's new HELLO made us replace its session and send a new HELLO of ours; bob had us
    // ready, so it replaces us too and answers with a HELLO. That answer must not make us
    // replace the session again (both sides would do it forever: a HELLO storm).
    let t = Instant::now();
    let ms = Duration::from_millis;
    let mut n = with_bob(t);
    n.handle_message(bob(), hello(&["A"], 1), t + ms(2000));
    assert_eq!(actions(&mut n).len(), 3, "Disconnect, Connect, HELLO");
    assert_eq!(kinds(&events(&mut n)), ["EXIT", "ENTER", "JOIN"]);
    n.handle_message(bob(), hello(&["C"], 4), t + ms(2300));
    assert!(actions(&mut n).is_empty());
    assert_eq!(kinds(&events(&mut n)), ["EXIT", "ENTER", "JOIN"]);
    assert_eq!(n.peers_by_group("C"), vec![bob()]);
    assert!(n.peers_by_group("A").is_empty());
    // The inbound sequence restarted at 1; ours goes on (HELLO was 1, now 2).
    n.handle_message(bob(), msg(2, ZreBody::Ping), t + ms(2400));
    assert_only_ping_ok(&actions(&mut n), 2);
    // A HELLO from a peer first met through its HELLO (discovery) is a restart: replace.
    let mut n = with_bob(t);
    n.handle_message(bob(), hello(&[], 0), t + ms(300));
    assert_eq!(actions(&mut n).len(), 3);
}

#[test]
fn late_hello_from_unready_peer_resends_ours() {
    // We met bob by beacon and sent HELLO; its HELLO comes only 3 s later: ours was lost
    // (e.g. it reached a crashed earlier incarnation), so we send a new one.
    let t = Instant::now();
    let mut n = node(t);
    n.handle_beacon(bob(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 6000, t);
    assert_eq!(actions(&mut n).len(), 2);
    n.handle_message(bob(), hello(&[], 0), t + Duration::from_secs(3));
    let a = actions(&mut n);
    assert_eq!(a[0], Action::Disconnect { peer: bob() });
    assert!(matches!(&a[1], Action::Connect { .. }));
    assert!(matches!(&a[2], Action::Send { message, .. } if message.sequence == 1));
    assert_eq!(kinds(&events(&mut n)), ["ENTER"]);
    // A prompt answer does not.
    let mut n = node(t);
    n.handle_beacon(bob(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 6000, t);
    actions(&mut n);
    n.handle_message(bob(), hello(&[], 0), t + Duration::from_millis(50));
    assert!(actions(&mut n).is_empty());
    assert_eq!(kinds(&events(&mut n)), ["ENTER"]);
}

#[test]
fn sequence_gap_removes_peer_and_beacon_recreates_it() {
    let t = Instant::now();
    let mut n = with_bob(t);
    n.handle_message(bob(), msg(2, ZreBody::Ping), t);
    // PING is answered with PING-OK, sequence 2 on our side (HELLO was 1).
    assert_only_ping_ok(&actions(&mut n), 2);
    n.handle_message(bob(), msg(4, ZreBody::Ping), t);
    assert_eq!(actions(&mut n), vec![Action::Disconnect { peer: bob() }]);
    assert_eq!(
        events(&mut n),
        vec![Event::Exit {
            peer: bob(),
            name: "bob".into()
        }]
    );
    assert!(n.peers().is_empty());
    assert!(n.peers_by_group("A").is_empty());
    // Anything but HELLO from it is now ignored; its next beacon reconnects.
    n.handle_message(bob(), msg(5, ZreBody::Ping), t);
    assert!(actions(&mut n).is_empty());
    n.handle_beacon(bob(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 6000, t);
    assert_eq!(actions(&mut n).len(), 2);
}

#[test]
fn out_of_order_and_bad_hello_sequence() {
    let t = Instant::now();
    let mut n = with_bob(t);
    n.handle_message(bob(), msg(1, ZreBody::Ping), t);
    assert_eq!(kinds(&events(&mut n)), ["EXIT"]);
    // A HELLO whose sequence is not 1 is a protocol error: no ENTER, no EXIT.
    let mut bad = hello(&[], 0);
    bad.sequence = 3;
    n.handle_message(bob(), bad, t);
    assert!(events(&mut n).is_empty());
    assert!(n.peers().is_empty());
    assert!(n.peer(bob()).is_none());
}

#[test]
fn status_mismatch_removes_peer_without_crashing() {
    let t = Instant::now();
    let mut n = with_bob(t);
    n.handle_message(
        bob(),
        msg(
            2,
            ZreBody::Join {
                group: "B".into(),
                status: 2,
            },
        ),
        t,
    );
    assert_eq!(kinds(&events(&mut n)), ["JOIN"]);
    n.handle_message(
        bob(),
        msg(
            3,
            ZreBody::Leave {
                group: "A".into(),
                status: 3,
            },
        ),
        t,
    );
    assert_eq!(kinds(&events(&mut n)), ["LEAVE"]);
    assert_eq!(n.peers_by_group("A"), Vec::<Uuid>::new());
    // Status jumps from 3 to 7: the peer is dropped, the node carries on.
    n.handle_message(
        bob(),
        msg(
            4,
            ZreBody::Join {
                group: "C".into(),
                status: 7,
            },
        ),
        t,
    );
    assert_eq!(kinds(&events(&mut n)), ["EXIT"]);
    assert_eq!(actions(&mut n), vec![Action::Disconnect { peer: bob() }]);
    assert!(n.peer_groups().is_empty());
}

#[test]
fn join_leave_status_and_fanout() {
    let t = Instant::now();
    let mut n = with_bob(t);
    let carol = Uuid::from_u128(0xC000);
    n.handle_discovered(carol, "tcp://10.0.0.3:7000", t);
    actions(&mut n);
    assert!(n.join("G"));
    assert!(!n.join("G"), "already in G");
    assert_eq!(n.status(), 1);
    let a = actions(&mut n);
    // JOIN goes to every peer, entered (bob) or not (carol).
    assert_eq!(a.len(), 2);
    for act in &a {
        assert!(matches!(
            act,
            Action::Send {
                message: ZreMessage {
                    body: ZreBody::Join { status: 1, .. },
                    ..
                },
                ..
            }
        ));
    }
    assert!(!n.leave("H"));
    assert!(n.leave("G"));
    assert_eq!(n.status(), 2);
    assert_eq!(actions(&mut n).len(), 2);
    // Shout goes to members only; whisper to a known peer; unknown peer is an error.
    assert_eq!(n.shout("A", vec![Bytes::from_static(b"hi")]), 1);
    assert_eq!(n.shout("nobody", vec![]), 0);
    let a = actions(&mut n);
    assert!(
        matches!(&a[..], [Action::Send { peer, message: ZreMessage { body: ZreBody::Shout { .. }, .. } }] if *peer == bob())
    );
    n.whisper(bob(), vec![Bytes::from_static(b"psst")]).unwrap();
    assert!(n.whisper(Uuid::from_u128(0xDEAD), vec![]).is_err());
    // bob's sequence: HELLO 1, JOIN 2, LEAVE 3, SHOUT 4, WHISPER 5.
    let a = actions(&mut n);
    assert!(matches!(
        &a[..],
        [Action::Send {
            message: ZreMessage { sequence: 5, .. },
            ..
        }]
    ));
}

#[test]
fn whisper_sequence_numbers_as_whisper_does_and_queues_nothing() {
    let t = Instant::now();
    let mut n = with_bob(t);
    n.whisper(bob(), vec![]).unwrap();
    assert!(matches!(
        &actions(&mut n)[..],
        [Action::Send {
            message: ZreMessage { sequence: 2, .. },
            ..
        }]
    ));
    // The next number, no action; the one after continues from it.
    assert_eq!(n.whisper_sequence(bob()).unwrap(), Some(3));
    assert!(actions(&mut n).is_empty());
    n.whisper(bob(), vec![]).unwrap();
    assert!(matches!(
        &actions(&mut n)[..],
        [Action::Send {
            message: ZreMessage { sequence: 4, .. },
            ..
        }]
    ));
    assert!(matches!(
        n.whisper_sequence(Uuid::from_u128(0xDEAD)),
        Err(GroupError::UnknownPeer(_))
    ));
    // A peer whose queue overflowed is removed: unknown to both, as to `whisper`.
    n.handle_send_failed(bob(), t);
    actions(&mut n);
    assert!(n.whisper(bob(), vec![]).is_err());
    assert!(matches!(
        n.whisper_sequence(bob()),
        Err(GroupError::UnknownPeer(_))
    ));
    n.stop();
    assert!(matches!(
        n.whisper_sequence(bob()),
        Err(GroupError::Stopped)
    ));
}

#[test]
fn whisper_and_shout_events_carry_content() {
    let t = Instant::now();
    let mut n = with_bob(t);
    let content = vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")];
    n.handle_message(
        bob(),
        msg(
            2,
            ZreBody::Whisper {
                content: content.clone(),
            },
        ),
        t,
    );
    n.handle_message(
        bob(),
        msg(
            3,
            ZreBody::Shout {
                group: "A".into(),
                content: content.clone(),
            },
        ),
        t,
    );
    assert_eq!(
        events(&mut n),
        vec![
            Event::Whisper {
                peer: bob(),
                name: "bob".into(),
                content: content.clone()
            },
            Event::Shout {
                peer: bob(),
                name: "bob".into(),
                group: "A".into(),
                content
            }
        ]
    );
}

#[test]
fn evasive_silent_expired_timing() {
    let t0 = Instant::now();
    let mut n = with_bob(t0);
    let ms = Duration::from_millis;
    let tick = |n: &mut ZreNode, at: Duration| {
        n.handle_timeout(t0 + at);
        (actions(n), events(n))
    };
    assert_eq!(n.reap_interval(), ms(1000));
    assert_eq!(n.poll_timeout(), Some(t0 + ms(1000)));
    for s in 1..5 {
        let (a, e) = tick(&mut n, ms(s * 1000));
        assert!(a.is_empty() && e.is_empty(), "alive at {s}s");
    }
    // 5 s quiet: PING + EVASIVE.
    let (a, e) = tick(&mut n, ms(5000));
    assert!(matches!(
        &a[..],
        [Action::Send {
            message: ZreMessage {
                body: ZreBody::Ping,
                ..
            },
            ..
        }]
    ));
    assert_eq!(kinds(&e), ["EVASIVE"]);
    // one reap later: PING again + SILENT.
    let (a, e) = tick(&mut n, ms(6000));
    assert_eq!(a.len(), 1);
    assert_eq!(kinds(&e), ["SILENT"]);
    // PING keeps going each reap, events are not repeated.
    let (a, e) = tick(&mut n, ms(7000));
    assert_eq!(a.len(), 1);
    assert!(e.is_empty());
    // An answer refreshes.
    n.handle_message(bob(), msg(2, ZreBody::PingOk), t0 + ms(7500));
    for s in 8..12 {
        let (a, e) = tick(&mut n, ms(s * 1000 + 500));
        assert!(a.is_empty() && e.is_empty(), "refreshed at {s}.5s");
    }
    let (_, e) = tick(&mut n, ms(12500));
    assert_eq!(kinds(&e), ["EVASIVE"]);
    // Expired 30 s after the last message (7.5 s): EXIT at the first reap >= 37.5 s.
    for s in 13..37 {
        let (_, e) = tick(&mut n, ms(s * 1000 + 500));
        assert!(!kinds(&e).contains(&"EXIT"), "not expired at {s}.5s");
    }
    let (a, e) = tick(&mut n, ms(37500));
    assert_eq!(kinds(&e), ["EXIT"]);
    assert_eq!(a, vec![Action::Disconnect { peer: bob() }]);
}

#[test]
fn custom_timeouts_and_beacon_refresh_option() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mk = |refresh: bool| {
        let mut c = NodeConfig::new(Uuid::from_u128(ME));
        c.peer.evasive_timeout = ms(200);
        c.peer.expired_timeout = ms(600);
        c.peer.beacons_refresh = refresh;
        let mut n = ZreNode::new(c, t0);
        n.handle_message(bob(), hello(&[], 0), t0);
        actions(&mut n);
        events(&mut n);
        n
    };
    for refresh in [false, true] {
        let mut n = mk(refresh);
        assert_eq!(n.reap_interval(), ms(200));
        let mut exit_at = None;
        for step in 1..=10u64 {
            let now = t0 + ms(step * 100);
            n.handle_beacon(bob(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 6000, now);
            n.handle_timeout(now);
            actions(&mut n);
            if events(&mut n).iter().any(|e| e.kind() == "EXIT") {
                exit_at = Some(step * 100);
            }
        }
        if refresh {
            assert_eq!(exit_at, None, "beacons keep it alive");
        } else {
            assert_eq!(exit_at, Some(600));
        }
    }
}

#[test]
fn port_zero_beacon_and_goodbye_remove() {
    let t = Instant::now();
    let mut n = with_bob(t);
    n.handle_beacon(bob(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 0, t);
    assert_eq!(kinds(&events(&mut n)), ["EXIT"]);
    assert_eq!(actions(&mut n), vec![Action::Disconnect { peer: bob() }]);
    // unknown peer's port 0: nothing
    n.handle_beacon(bob(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 0, t);
    assert!(events(&mut n).is_empty());
    let mut n = with_bob(t);
    n.handle_message(bob(), msg(2, ZreBody::Goodbye), t);
    assert_eq!(kinds(&events(&mut n)), ["EXIT"]);
}

#[test]
fn send_failure_and_malformed_remove_peer() {
    let t = Instant::now();
    let mut n = with_bob(t);
    n.handle_send_failed(bob(), t);
    assert_eq!(kinds(&events(&mut n)), ["EXIT"]);
    assert_eq!(actions(&mut n), vec![Action::Disconnect { peer: bob() }]);
    n.handle_send_failed(bob(), t);
    assert!(events(&mut n).is_empty());
    let mut n = with_bob(t);
    n.handle_malformed(bob(), t);
    assert_eq!(kinds(&events(&mut n)), ["EXIT"]);
}

#[test]
fn new_uuid_at_known_endpoint_purges_old_peer() {
    let t = Instant::now();
    let mut n = with_bob(t);
    let bob2 = Uuid::from_u128(0xB002);
    n.handle_beacon(bob2, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 6000, t);
    assert_eq!(
        events(&mut n),
        vec![Event::Exit {
            peer: bob(),
            name: "bob".into()
        }]
    );
    let a = actions(&mut n);
    assert_eq!(a[0], Action::Disconnect { peer: bob() });
    assert!(matches!(&a[1], Action::Connect { peer, .. } if *peer == bob2));
}

#[test]
fn stop_disconnects_all_and_emits_stop() {
    let t = Instant::now();
    let mut n = with_bob(t);
    n.stop();
    assert_eq!(
        events(&mut n),
        vec![Event::Stop {
            peer: Uuid::from_u128(ME),
            name: "me".into()
        }]
    );
    assert_eq!(actions(&mut n), vec![Action::Disconnect { peer: bob() }]);
    assert_eq!(n.poll_timeout(), None);
    n.handle_message(bob(), hello(&[], 0), t);
    assert!(!n.join("X"));
    assert!(actions(&mut n).is_empty() && events(&mut n).is_empty());
}

// ----- leader election between a few nodes, wired by hand -----------------------------

/// Delivers every pending action between fully connected nodes until quiet; returns the
/// ids of all messages sent.
fn settle(nodes: &mut [ZreNode], t: Instant) -> Vec<u8> {
    let mut sent = Vec::new();
    for _ in 0..1000 {
        let mut moved = false;
        for i in 0..nodes.len() {
            let from = nodes[i].uuid();
            let acts: Vec<Action> = nodes[i].drain_actions().collect();
            for a in acts {
                if let Action::Send { peer, message } = a {
                    sent.push(message.body.id());
                    if let Some(j) = nodes.iter().position(|n| n.uuid() == peer) {
                        nodes[j].handle_message(from, message, t);
                        moved = true;
                    }
                }
            }
        }
        if !moved {
            return sent;
        }
    }
    panic!("did not settle");
}

fn mesh(ids: &[u128], t: Instant) -> Vec<ZreNode> {
    let mut nodes: Vec<ZreNode> = ids
        .iter()
        .map(|&id| {
            let mut c = NodeConfig::new(Uuid::from_u128(id));
            c.endpoint = format!("tcp://10.0.0.{}:5000", id & 0xff);
            ZreNode::new(c, t)
        })
        .collect();
    for i in 0..nodes.len() {
        for j in 0..nodes.len() {
            if i != j {
                let (u, e) = (nodes[j].uuid(), nodes[j].endpoint().to_owned());
                nodes[i].handle_discovered(u, &e, t);
            }
        }
    }
    settle(&mut nodes, t);
    nodes
}

fn last_leader(n: &mut ZreNode, group: &str) -> Option<Uuid> {
    n.drain_events()
        .filter(|e| e.kind() == "LEADER" && e.group() == Some(group))
        .map(|e| e.peer())
        .last()
}

#[test]
fn no_election_messages_without_contest() {
    let t = Instant::now();
    let mut nodes = mesh(&[0x11, 0x12, 0x13], t);
    for n in &mut nodes {
        n.join("G");
    }
    let sent = settle(&mut nodes, t);
    assert!(sent.iter().all(|&id| id < 8), "ids sent: {sent:?}");
    for n in &mut nodes {
        assert_eq!(last_leader(n, "G"), None);
        assert_eq!(n.peers_by_group("G").len(), 2);
    }
}

#[test]
fn election_lowest_uuid_wins_and_reelects() {
    let t = Instant::now();
    let ids = [0x31, 0x21, 0x41, 0x51];
    let mut nodes = mesh(&ids, t);
    // 0x51 only joins, does not contest; the others contest.
    for n in &mut nodes {
        if n.uuid() != Uuid::from_u128(0x51) {
            n.contest_in_group("G");
        }
        n.join("G");
    }
    let mut sent = settle(&mut nodes, t);
    // Joins within a moment start one election (Zyre's echo wave), after a short delay.
    let t = t + Duration::from_millis(400);
    for n in &mut nodes {
        n.handle_timeout(t);
    }
    sent.extend(settle(&mut nodes, t));
    assert!(
        sent.contains(&8) && sent.contains(&9),
        "ELECT and LEADER: {sent:?}"
    );
    for n in &mut nodes {
        assert_eq!(n.leader("G"), Some(Uuid::from_u128(0x21)), "{}", n.uuid());
        assert_eq!(last_leader(n, "G"), Some(Uuid::from_u128(0x21)));
    }
    // Leader leaves: the next lowest contester wins everywhere.
    let leader_idx = nodes
        .iter()
        .position(|n| n.uuid() == Uuid::from_u128(0x21))
        .unwrap();
    nodes[leader_idx].leave("G");
    settle(&mut nodes, t);
    let t = t + Duration::from_millis(400);
    for n in &mut nodes {
        n.handle_timeout(t);
    }
    settle(&mut nodes, t);
    for (i, n) in nodes.iter_mut().enumerate() {
        if i != leader_idx {
            assert_eq!(n.leader("G"), Some(Uuid::from_u128(0x31)));
            assert_eq!(last_leader(n, "G"), Some(Uuid::from_u128(0x31)));
        } else {
            assert_eq!(n.leader("G"), None);
        }
    }
    // Alone in a group: leader at once.
    nodes[0].contest_in_group("SOLO");
    nodes[0].join("SOLO");
    assert_eq!(last_leader(&mut nodes[0], "SOLO"), Some(nodes[0].uuid()));
}

#[test]
fn messages_on_an_unknown_session_trigger_a_new_hello() {
    // We know bob (beacon, HELLO sent) but it keeps talking mid-session without ever having
    // sent us a HELLO: after a reap interval we start a new session so it gets ours.
    let t = Instant::now();
    let ms = Duration::from_millis;
    let mut n = node(t);
    n.handle_beacon(bob(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 6000, t);
    actions(&mut n);
    n.handle_message(bob(), msg(7, ZreBody::PingOk), t + ms(500));
    assert!(actions(&mut n).is_empty(), "too early: ignored");
    n.handle_message(bob(), msg(8, ZreBody::PingOk), t + ms(1500));
    let a = actions(&mut n);
    assert_eq!(a[0], Action::Disconnect { peer: bob() });
    assert!(matches!(&a[1], Action::Connect { .. }));
    assert!(matches!(&a[2], Action::Send { message, .. } if message.sequence == 1));
    assert!(events(&mut n).is_empty());
    // and not again right away
    n.handle_message(bob(), msg(9, ZreBody::PingOk), t + ms(1600));
    assert!(actions(&mut n).is_empty());
}

#[test]
fn election_messages_from_non_members_are_ignored() {
    let t = Instant::now();
    let mut n = with_bob(t);
    n.contest_in_group("Z");
    n.join("Z");
    assert_eq!(last_leader(&mut n, "Z"), Some(Uuid::from_u128(ME)));
    actions(&mut n);
    // bob is not in Z: its claim does not count, nor does a claim naming someone else.
    n.handle_message(
        bob(),
        msg(
            2,
            ZreBody::Elect {
                group: "Z".into(),
                challenger_id: harmony_group::uuid_string(&bob()),
            },
        ),
        t,
    );
    n.handle_message(
        bob(),
        msg(
            3,
            ZreBody::Leader {
                group: "NOPE".into(),
                leader_id: "garbage".into(),
            },
        ),
        t,
    );
    assert!(events(&mut n).is_empty());
    assert_eq!(n.leader("Z"), Some(Uuid::from_u128(ME)));
    assert!(n.peer_groups().iter().all(|g| g != "NOPE"));
    // Once bob joins Z its claim counts, but 0xB000 > 0xA000: we stay leader.
    n.handle_message(
        bob(),
        msg(
            4,
            ZreBody::Join {
                group: "Z".into(),
                status: 2,
            },
        ),
        t,
    );
    n.handle_message(
        bob(),
        msg(
            5,
            ZreBody::Elect {
                group: "Z".into(),
                challenger_id: harmony_group::uuid_string(&bob()),
            },
        ),
        t,
    );
    assert_eq!(kinds(&events(&mut n)), ["JOIN"]);
    // A contester never follows a higher challenger: we answer with a wave of our own.
    let me = harmony_group::uuid_string(&Uuid::from_u128(ME));
    let sent: Vec<ZreBody> = actions(&mut n)
        .into_iter()
        .filter_map(|a| match a {
            Action::Send { message, .. } => Some(message.body),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        [ZreBody::Elect {
            group: "Z".into(),
            challenger_id: me.clone()
        }]
    );
    // bob joins our wave (its echo) and passes on our LEADER: we stay leader.
    for (seq, body) in [
        (
            6,
            ZreBody::Elect {
                group: "Z".into(),
                challenger_id: me.clone(),
            },
        ),
        (
            7,
            ZreBody::Leader {
                group: "Z".into(),
                leader_id: me,
            },
        ),
    ] {
        n.handle_message(bob(), msg(seq, body), t);
    }
    assert_eq!(last_leader(&mut n, "Z"), Some(Uuid::from_u128(ME)));
    assert_eq!(n.leader("Z"), Some(Uuid::from_u128(ME)));
}

/// A Zyre node that does not contest (its HELLO has no `X-HARMONY`, like pyre's) is sent
/// nothing by default. With `every_peer_elects` it gets the ELECT, answers with its echo as a
/// Zyre non-contester with one neighbour does, is sent the LEADER and floods it back, and we
/// report it.
#[test]
fn every_peer_elects_brings_a_non_contesting_zyre_peer_into_the_wave() {
    let me = harmony_group::uuid_string(&Uuid::from_u128(ME));
    for every in [false, true] {
        let t = Instant::now();
        let mut c = NodeConfig::new(Uuid::from_u128(ME));
        c.endpoint = "tcp://10.0.0.1:5000".into();
        c.every_peer_elects = every;
        let mut n = ZreNode::new(c, t);
        n.handle_message(bob(), hello(&["Z"], 1), t);
        actions(&mut n);
        events(&mut n);
        n.contest_in_group("Z");
        n.join("Z");
        let t = t + Duration::from_millis(400);
        n.handle_timeout(t);
        let sent: Vec<ZreBody> = actions(&mut n)
            .into_iter()
            .filter_map(|a| match a {
                Action::Send { peer, message } if peer == bob() => Some(message.body),
                _ => None,
            })
            .filter(|b| matches!(b, ZreBody::Elect { .. } | ZreBody::Leader { .. }))
            .collect();
        if !every {
            assert!(sent.is_empty(), "pyre-shaped peer sent {sent:?}");
            assert_eq!(last_leader(&mut n, "Z"), Some(Uuid::from_u128(ME)));
            continue;
        }
        let elect = ZreBody::Elect {
            group: "Z".into(),
            challenger_id: me.clone(),
        };
        assert_eq!(
            sent,
            std::slice::from_ref(&elect),
            "the wave reaches the Zyre peer"
        );
        assert_eq!(n.leader("Z"), None, "no leader before the echo");
        // Its echo (an ELECT naming our wave back to its father) completes the wave.
        n.handle_message(bob(), msg(2, elect), t);
        let leader: Vec<ZreBody> = actions(&mut n)
            .into_iter()
            .filter_map(|a| match a {
                Action::Send { peer, message } if peer == bob() => Some(message.body),
                _ => None,
            })
            .collect();
        assert_eq!(
            leader,
            [ZreBody::Leader {
                group: "Z".into(),
                leader_id: me.clone()
            }]
        );
        // Zyre floods the LEADER on to its peers, so it comes back: now we report it.
        n.handle_message(
            bob(),
            msg(
                3,
                ZreBody::Leader {
                    group: "Z".into(),
                    leader_id: me.clone(),
                },
            ),
            t,
        );
        assert_eq!(last_leader(&mut n, "Z"), Some(Uuid::from_u128(ME)));
        assert_eq!(n.leader("Z"), Some(Uuid::from_u128(ME)));
    }
}

#[test]
fn handle_frames_decodes_and_drops_bad_input() {
    let t = Instant::now();
    let mut n = node(t);
    let id = harmony_peer::routing_id(&bob());
    let frames = hello(&["A"], 1).to_frames().expect("encodes");
    n.handle_frames(&id, &frames, t).expect("valid");
    assert_eq!(kinds(&events(&mut n)), ["ENTER", "JOIN"]);
    assert!(matches!(
        n.handle_frames(&id[..16], &frames, t),
        Err(GroupError::BadRoutingId(16))
    ));
    let junk = vec![Bytes::from_static(b"\xAA\xA1\x63\x02\x00\x02")];
    assert!(matches!(
        n.handle_frames(&id, &junk, t),
        Err(GroupError::Malformed { .. })
    ));
    assert_eq!(kinds(&events(&mut n)), ["EXIT"]);
}

/// Random garbage from random peers, interleaved with commands and timeouts: never panics,
/// and the tables stay consistent.
#[test]
fn random_input_never_breaks_the_node() {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let t0 = Instant::now();
    let mut n = node(t0);
    n.contest_in_group("G1");
    let groups = ["G1", "G2", "G3"];
    for step in 0..20_000u64 {
        let now = t0 + Duration::from_millis(step * 7);
        let from = Uuid::from_u128(0xB000 + u128::from(rnd(6)));
        let group = groups[rnd(3) as usize].to_owned();
        let body = match rnd(12) {
            0 => ZreBody::Hello(Hello {
                endpoint: format!("tcp://10.0.0.{}:6000", rnd(4)),
                groups: vec![group.clone()],
                status: rnd(256) as u8,
                name: "x".into(),
                headers: vec![],
            }),
            1 => ZreBody::Whisper {
                content: vec![Bytes::from_static(b"w")],
            },
            2 => ZreBody::Shout {
                group,
                content: vec![],
            },
            3 => ZreBody::Join {
                group,
                status: rnd(256) as u8,
            },
            4 => ZreBody::Leave {
                group,
                status: rnd(256) as u8,
            },
            5 => ZreBody::Ping,
            6 => ZreBody::PingOk,
            7 => ZreBody::Elect {
                group,
                challenger_id: harmony_group::uuid_string(&from),
            },
            8 => ZreBody::Leader {
                group,
                leader_id: "nonsense".into(),
            },
            9 => ZreBody::Goodbye,
            _ => ZreBody::Ping,
        };
        // Mostly plausible sequence numbers, sometimes not.
        let sequence = if rnd(4) == 0 {
            rnd(65536) as u16
        } else {
            1 + rnd(3) as u16
        };
        n.handle_message(from, msg(sequence, body), now);
        match rnd(40) {
            0 => {
                n.join(groups[rnd(3) as usize]);
            }
            1 => {
                n.leave(groups[rnd(3) as usize]);
            }
            2 => n.handle_timeout(now),
            3 => n.handle_send_failed(from, now),
            4 => n.handle_malformed(from, now),
            5 => n.handle_beacon(
                from,
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
                rnd(2) as u16,
                now,
            ),
            6 => {
                n.shout("G2", vec![Bytes::from_static(b"s")]);
            }
            _ => {}
        }
        actions(&mut n);
        events(&mut n);
        let peers = n.peers();
        for g in n.peer_groups() {
            for m in n.peers_by_group(&g) {
                assert!(
                    peers.contains(&m),
                    "member {m} of {g} is not an entered peer"
                );
            }
        }
        if let Some(l) = n.leader("G1") {
            assert!(l == n.uuid() || n.peers_by_group("G1").contains(&l));
        }
    }
}

#[test]
fn a_lost_connection_that_comes_back_within_the_grace_keeps_the_peer() {
    let t0 = Instant::now();
    let mut n = with_bob(t0);
    let grace = harmony_group::DEFAULT_LINK_GRACE;
    n.handle_link_down(bob(), t0);
    assert_eq!(
        n.poll_timeout(),
        Some(t0 + grace),
        "woken when the grace ends"
    );
    n.handle_timeout(t0 + grace / 2);
    assert!(events(&mut n).is_empty());
    n.handle_link_up(bob(), t0 + grace / 2);
    n.handle_timeout(t0 + grace * 2);
    assert!(!kinds(&events(&mut n)).contains(&"EXIT"));
    assert!(n.peers().contains(&bob()));
    assert!(!actions(&mut n)
        .iter()
        .any(|a| matches!(a, Action::Disconnect { .. })));
}

#[test]
fn a_lost_connection_that_stays_down_is_exit_after_the_grace() {
    let t0 = Instant::now();
    let mut n = with_bob(t0);
    let grace = harmony_group::DEFAULT_LINK_GRACE;
    n.handle_link_down(bob(), t0);
    // A second report does not push the deadline back.
    n.handle_link_down(bob(), t0 + grace / 2);
    n.handle_timeout(t0 + grace - Duration::from_millis(1));
    assert!(events(&mut n).is_empty());
    n.handle_timeout(t0 + grace);
    let ev = events(&mut n);
    assert_eq!(kinds(&ev), ["EXIT"]);
    assert!(n.peers().is_empty());
    assert!(actions(&mut n)
        .iter()
        .any(|a| matches!(a, Action::Disconnect { peer } if *peer == bob())));
    // Long before Zyre's evasive timeout (5 s).
    assert!(grace < NodeConfig::new(bob()).peer.evasive_timeout);
    // Its beacon brings it back: a new connection and HELLO.
    n.handle_beacon(
        bob(),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        6000,
        t0 + grace,
    );
    assert!(matches!(actions(&mut n)[0], Action::Connect { .. }));
    assert!(
        n.poll_timeout().unwrap() > t0 + grace,
        "no lost link left to wake for"
    );
}

#[test]
fn link_reports_for_unknown_or_after_stop_are_ignored() {
    let t0 = Instant::now();
    let mut n = with_bob(t0);
    n.handle_link_down(Uuid::from_u128(0xC000), t0);
    assert!(n.poll_timeout().unwrap() > t0 + harmony_group::DEFAULT_LINK_GRACE / 2);
    n.stop();
    n.handle_link_down(bob(), t0);
    assert_eq!(n.poll_timeout(), None);
}

// ----- properties that change (Harmony peers only) -------------------------------------

/// The messages `n` sends, as (peer, body).
fn sends(n: &mut ZreNode) -> Vec<(Uuid, ZreBody)> {
    n.drain_actions()
        .filter_map(|a| match a {
            Action::Send { peer, message } => Some((peer, message.body)),
            _ => None,
        })
        .collect()
}

#[test]
fn header_changes_go_only_to_harmony_peers() {
    let t = Instant::now();
    // bob's HELLO has no X-HARMONY (pyre); carol's says she speaks props.
    let mut n = with_bob(t);
    let carol = Uuid::from_u128(0xC000);
    let mut carol_hello = hello(&["A"], 1);
    if let ZreBody::Hello(h) = &mut carol_hello.body {
        h.endpoint = "tcp://10.0.0.3:7000".into();
        h.headers = vec![
            (
                harmony_group::EXTENSIONS_HEADER.into(),
                "elect,props".into(),
            ),
            ("X-K".into(), "c".into()),
        ];
    }
    n.handle_message(carol, carol_hello, t);
    actions(&mut n);
    events(&mut n);

    n.set_header("X-STATUS", "busy").unwrap();
    n.set_header("X-ROLE", "lead").unwrap();
    let all = vec![
        ("X-ROLE".to_owned(), "lead".to_owned()),
        (
            harmony_group::EXTENSIONS_HEADER.to_owned(),
            "elect,props".to_owned(),
        ),
        ("X-STATUS".to_owned(), "busy".to_owned()),
    ];
    let s = sends(&mut n);
    assert_eq!(s.len(), 2, "two PROPS to carol, nothing to bob: {s:?}");
    assert!(s.iter().all(|(p, _)| *p == carol));
    assert_eq!(
        s[1].1,
        ZreBody::Props {
            request: 0,
            headers: all.clone()
        }
    );
    assert_eq!(n.headers(), &all[..]);
    assert_eq!(
        n.set_header(harmony_group::EXTENSIONS_HEADER, "x"),
        Err(GroupError::ReservedHeader("X-HARMONY".into()))
    );
    // A peer that joins later gets the new set in our HELLO.
    let mut dave_hello = hello(&[], 0);
    if let ZreBody::Hello(h) = &mut dave_hello.body {
        h.endpoint = "tcp://10.0.0.4:8000".into();
    }
    n.handle_message(Uuid::from_u128(0xD000), dave_hello, t);
    events(&mut n);
    let s = sends(&mut n);
    assert!(
        matches!(&s[0].1, ZreBody::Hello(h) if h.headers == all),
        "{s:?}"
    );

    // Requests: only to Harmony peers, answered with our set.
    assert_eq!(n.request_properties(bob()), Err(GroupError::NoProps(bob())));
    let r1 = n.request_properties(carol).unwrap();
    let r2 = n.request_properties(carol).unwrap();
    assert_ne!(r1, r2);
    assert_eq!(
        sends(&mut n),
        [
            (carol, ZreBody::PropsRequest { request: r1 }),
            (carol, ZreBody::PropsRequest { request: r2 })
        ]
    );
    n.handle_message(carol, msg(2, ZreBody::PropsRequest { request: 9 }), t);
    assert_eq!(
        sends(&mut n),
        [(
            carol,
            ZreBody::Props {
                request: 9,
                headers: all
            }
        )]
    );
    // A PROPS-REQUEST from a peer that did not advertise props is not answered.
    n.handle_message(bob(), msg(2, ZreBody::PropsRequest { request: 1 }), t);
    assert!(sends(&mut n).is_empty());

    // carol's change and her answer: events, and the queries see the new values.
    let changed = vec![
        (
            harmony_group::EXTENSIONS_HEADER.to_owned(),
            "elect,props".to_owned(),
        ),
        ("X-K".to_owned(), "new".to_owned()),
    ];
    n.handle_message(
        carol,
        msg(
            3,
            ZreBody::Props {
                request: 0,
                headers: changed.clone(),
            },
        ),
        t,
    );
    n.handle_message(
        carol,
        msg(
            4,
            ZreBody::Props {
                request: r2,
                headers: changed,
            },
        ),
        t,
    );
    let e = events(&mut n);
    let shown = vec![("X-K".to_owned(), "new".to_owned())];
    assert_eq!(
        e,
        [
            Event::Headers {
                peer: carol,
                name: "bob".into(),
                headers: shown.clone(),
                request: None
            },
            Event::Headers {
                peer: carol,
                name: "bob".into(),
                headers: shown,
                request: Some(r2)
            }
        ]
    );
    assert_eq!(n.peer_header_value(carol, "X-K"), Some("new"));
    assert_eq!(n.peer_header_value(bob(), "X-K"), Some("v"));
}

#[test]
fn properties_between_harmony_nodes_in_a_mesh() {
    let t = Instant::now();
    let mut nodes = mesh(&[0x11, 0x12, 0x13], t);
    for n in &mut nodes {
        events(n);
    }
    nodes[0].set_header("X-LOAD", "3").unwrap();
    let sent = settle(&mut nodes, t);
    assert_eq!(sent, [32, 32], "one PROPS to each peer");
    let me = nodes[0].uuid();
    for n in &mut nodes[1..] {
        assert_eq!(n.peer_header_value(me, "X-LOAD"), Some("3"));
        assert!(matches!(
            &events(n)[..],
            [Event::Headers { peer, headers, request: None, .. }]
                if *peer == me && headers == &[("X-LOAD".to_owned(), "3".to_owned())]
        ));
    }
    let r = nodes[1].request_properties(me).unwrap();
    assert_eq!(settle(&mut nodes, t), [33, 32]);
    assert!(matches!(
        &events(&mut nodes[1])[..],
        [Event::Headers { request: Some(got), .. }] if *got == r
    ));
}

#[test]
fn take_events_moves_every_event_in_order_to_an_empty_or_a_filled_queue() {
    let now = Instant::now();
    let mut n = with_bob(now);
    let whisper = |text: &'static str| ZreBody::Whisper {
        content: vec![Bytes::from_static(text.as_bytes())],
    };
    n.handle_message(bob(), msg(2, whisper("a")), now);
    n.handle_message(bob(), msg(3, whisper("b")), now);
    let mut queue = std::collections::VecDeque::new();
    n.take_events(&mut queue);
    n.handle_message(bob(), msg(4, whisper("c")), now);
    n.take_events(&mut queue);
    n.take_events(&mut queue);
    let texts: Vec<&[u8]> = queue
        .iter()
        .map(|e| match e {
            Event::Whisper { content, .. } => &content[0][..],
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, [&b"a"[..], b"b", b"c"]);
    assert!(events(&mut n).is_empty(), "nothing left behind");
}
