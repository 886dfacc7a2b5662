//! Deterministic simulation: 50 nodes on an in-memory network (see `support`), random joins,
//! leaves, shouts, whispers, crashes, clean stops and restarts under fixed seeds, virtual
//! clock with Zyre's default timeouts. Restarts reuse the slot's endpoint and take a new UUID
//! or (half of the time) the same UUID again.
//!
//! Checked:
//! * per observer and peer UUID, ENTER and EXIT alternate (starting with ENTER); JOIN/LEAVE per
//!   group alternate inside a session; no event about a peer outside a session;
//! * after a crash, every node that had the crashed node entered and stays alive gets its EXIT
//!   within expired timeout + one reap interval + latency;
//! * no shout or whisper is delivered twice; every shout reaches every member that was alive
//!   and in the group for its whole duration (10 s before to 5 s after), and so does every
//!   whisper between such nodes;
//! * after a quiet period: peer tables and group membership converge (queries and the views
//!   rebuilt from events agree with the truth), and every member of the contested group agrees
//!   that the lowest contesting UUID is leader;
//! * ELECT/LEADER are only ever sent in the contested group (asserted by the network).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use harmony_group::Event;
use support::{NetConfig, Sim};
use uuid::Uuid;

const NODES: usize = 50;
const GROUPS: [&str; 4] = ["G0", "G1", "G2", "G3"];
const LEAD: &str = "LEAD";
const CHURN_END: u64 = 60_000;
const QUIET_END: u64 = 100_000;
const OP_EVERY: u64 = 50;

#[derive(Debug)]
struct Sent {
    t: u64,
    inc: u64,
    group: Option<String>,
    to: Option<Uuid>,
}

/// Numbers the next shout (to `group`) or whisper (to `to`) sent at `t` by incarnation `inc`,
/// records it in `sent`, and returns its payload: the number.
fn number(
    next_msg: &mut u64,
    sent: &mut BTreeMap<u64, Sent>,
    t: u64,
    inc: u64,
    group: Option<&str>,
    to: Option<Uuid>,
) -> Vec<Bytes> {
    *next_msg += 1;
    let group = group.map(str::to_owned);
    sent.insert(*next_msg, Sent { t, inc, group, to });
    vec![Bytes::from(next_msg.to_be_bytes().to_vec())]
}

fn run(seed: u64) {
    run_with(seed, NetConfig::default());
}

fn run_with(seed: u64, config: NetConfig) {
    let mut sim = Sim::new(seed, NODES, config);
    sim.election_groups.push(LEAD.to_owned());
    let mut sent: BTreeMap<u64, Sent> = BTreeMap::new();
    let mut next_msg: u64 = 0;
    let mut down: Vec<usize> = Vec::new();

    // Start everybody over the first two seconds; a third contests in LEAD, all join LEAD.
    let mut contest: Vec<bool> = Vec::new();
    for slot in 0..NODES {
        sim.run_until(slot as u64 * 40);
        let c = sim.rng.pct(30);
        contest.push(c);
        let uuid = sim.rng.uuid();
        sim.start(slot, uuid, if c { &[LEAD] } else { &[] });
        sim.join(slot, LEAD);
    }

    let mut t = 2_000;
    while t < QUIET_END - 10_000 {
        sim.run_until(t);
        let churn = t < CHURN_END;
        let live = sim.live_slots();
        let slot = live[sim.rng.below(live.len() as u64) as usize];
        let group = GROUPS[sim.rng.below(GROUPS.len() as u64) as usize];
        match sim.rng.below(100) {
            0..=19 if churn => {
                sim.join(slot, group);
            }
            20..=29 if churn => {
                sim.leave(slot, group);
            }
            30..=64 => {
                let inc = sim.live_inc(slot).expect("live");
                let payload = number(&mut next_msg, &mut sent, t, inc, Some(group), None);
                sim.with(slot, |n| n.shout(group, payload));
            }
            65..=89 => {
                let peers = sim.node(slot).expect("live").peers();
                if !peers.is_empty() {
                    let to = peers[sim.rng.below(peers.len() as u64) as usize];
                    let inc = sim.live_inc(slot).expect("live");
                    let payload = number(&mut next_msg, &mut sent, t, inc, None, Some(to));
                    sim.with(slot, |n| n.whisper(to, payload))
                        .expect("whisper to a known peer");
                }
            }
            90..=92 if churn && down.len() < 6 => {
                sim.crash(slot);
                down.push(slot);
            }
            93 if churn && down.len() < 6 => {
                sim.stop(slot);
                down.push(slot);
            }
            94..=97 if churn && !down.is_empty() => {
                let i = sim.rng.below(down.len() as u64) as usize;
                let s = down.swap_remove(i);
                let last = sim
                    .lives
                    .iter()
                    .rev()
                    .find(|l| l.slot == s)
                    .expect("had a life")
                    .clone();
                let uuid = if sim.rng.pct(50) {
                    last.uuid
                } else {
                    sim.rng.uuid()
                };
                sim.start(s, uuid, if contest[s] { &[LEAD] } else { &[] });
                sim.join(s, LEAD);
                for g in GROUPS {
                    if sim.rng.pct(40) {
                        sim.join(s, g);
                    }
                }
            }
            _ => {}
        }
        t += OP_EVERY;
    }
    // Bring back whoever is down, then let things settle past the expired timeout.
    for s in std::mem::take(&mut down) {
        let uuid = sim.rng.uuid();
        sim.start(s, uuid, if contest[s] { &[LEAD] } else { &[] });
        sim.join(s, LEAD);
    }
    sim.run_until(QUIET_END);

    let ends = |crash: bool| {
        sim.lives
            .iter()
            .filter(|l| l.end.is_some_and(|(_, c)| c == crash))
            .count()
    };
    eprintln!(
        "seed {seed}: {} incarnations, {} crashes, {} clean stops, {} messages delivered, {} events, {} shouts/whispers",
        sim.lives.len(),
        ends(true),
        ends(false),
        sim.delivered,
        sim.log.len(),
        sent.len()
    );
    check_sessions(&sim);
    check_exit_after_crash(&sim);
    if sim.config.report_links {
        check_exit_after_link_loss(&sim);
    }
    check_delivery(&sim, &sent);
    check_convergence(&sim);
    assert!(sim.delivered > 30_000, "traffic: {}", sim.delivered);
}

/// ENTER/EXIT alternate per (observer, peer); JOIN/LEAVE alternate per group inside a
/// session; nothing about a peer outside a session.
fn check_sessions(sim: &Sim) {
    let mut open: BTreeMap<(u64, Uuid), BTreeSet<String>> = BTreeMap::new();
    let mut enters = 0;
    for r in &sim.log {
        let key = (r.inc, r.event.peer());
        match &r.event {
            Event::Enter { .. } => {
                assert!(
                    open.insert(key, BTreeSet::new()).is_none(),
                    "double ENTER {r:?}"
                );
                enters += 1;
            }
            Event::Exit { .. } => {
                assert!(open.remove(&key).is_some(), "EXIT without ENTER {r:?}");
            }
            Event::Join { group, .. } => {
                let groups = open
                    .get_mut(&key)
                    .unwrap_or_else(|| panic!("JOIN outside session {r:?}"));
                assert!(groups.insert(group.to_string()), "double JOIN {r:?}");
            }
            Event::Leave { group, .. } => {
                let groups = open
                    .get_mut(&key)
                    .unwrap_or_else(|| panic!("LEAVE outside session {r:?}"));
                assert!(groups.remove(&**group), "LEAVE without JOIN {r:?}");
            }
            Event::Whisper { .. }
            | Event::Shout { .. }
            | Event::Evasive { .. }
            | Event::Silent { .. } => {
                assert!(open.contains_key(&key), "event outside session {r:?}");
            }
            Event::Stop { .. } => {
                assert_eq!(r.event.peer(), sim.lives[r.inc as usize].uuid);
                open.retain(|(inc, _), _| *inc != r.inc);
            }
            _ => {}
        }
    }
    assert!(enters > NODES * (NODES - 1), "only {enters} ENTER events");
}

/// Whether `peer` was entered for observer `inc` at `t` (`None`: it was not), and if so when
/// the observer's first EXIT of it after `t` came.
fn exit_after(sim: &Sim, inc: u64, peer: Uuid, t: u64) -> Option<Option<u64>> {
    let mut entered = false;
    let mut exit_at = None;
    for r in sim
        .log
        .iter()
        .filter(|r| r.inc == inc && r.event.peer() == peer)
    {
        match r.event {
            Event::Enter { .. } if r.t <= t => entered = true,
            Event::Exit { .. } if r.t <= t => entered = false,
            Event::Exit { .. } if exit_at.is_none() => exit_at = Some(r.t),
            _ => {}
        }
    }
    entered.then_some(exit_at)
}

/// After a crash, every node that had it entered and stays alive sees EXIT in time.
fn check_exit_after_crash(sim: &Sim) {
    let cfg = &sim.config;
    let bound = cfg.peer.expired_timeout.as_millis() as u64
        + cfg.peer.reap_interval().as_millis() as u64
        + cfg.latency_max_ms
        + 1;
    let mut crashes = 0;
    for life in &sim.lives {
        let Some((tc, true)) = life.end else {
            continue;
        };
        crashes += 1;
        // With beacons refreshing peers, a quick restart under the same UUID keeps the old
        // session alive until the new HELLO replaces it (documented caveat): no bound then.
        let same_uuid_back = sim
            .lives
            .iter()
            .any(|l| l.uuid == life.uuid && l.start > tc && l.start <= tc + bound);
        if cfg.peer.beacons_refresh && same_uuid_back {
            continue;
        }
        for (inc, obs) in sim.lives.iter().enumerate() {
            if !obs.alive_over(tc, tc + bound) {
                continue;
            }
            if let Some(exit_at) = exit_after(sim, inc as u64, life.uuid, tc) {
                let at = exit_at.unwrap_or_else(|| {
                    panic!(
                        "observer {inc} never saw EXIT of {} crashed at {tc}",
                        life.uuid
                    )
                });
                assert!(
                    at <= tc + bound,
                    "EXIT of {} after {} ms (crash at {tc})",
                    life.uuid,
                    at - tc
                );
            }
        }
    }
    assert!(crashes >= 3, "only {crashes} crashes");
}

/// With connection drops reported: after a crash, every node that had the crashed node
/// entered and stays alive sees its EXIT within the link grace + latency (instead of the
/// expired timeout), unless a node started at the same endpoint meanwhile (its connection
/// is back then, and the new node's beacon purges the old one).
fn check_exit_after_link_loss(sim: &Sim) {
    let bound =
        harmony_group::DEFAULT_LINK_GRACE.as_millis() as u64 + 2 * sim.config.latency_max_ms + 1;
    let mut checked = 0;
    for life in &sim.lives {
        let Some((tc, true)) = life.end else {
            continue;
        };
        let back = sim
            .lives
            .iter()
            .any(|l| l.slot == life.slot && l.start >= tc && l.start <= tc + bound);
        if back {
            continue;
        }
        for (inc, obs) in sim.lives.iter().enumerate() {
            if !obs.alive_over(tc, tc + bound) {
                continue;
            }
            if let Some(exit_at) = exit_after(sim, inc as u64, life.uuid, tc) {
                let at = exit_at.expect("EXIT after the crash");
                assert!(
                    at <= tc + bound,
                    "EXIT of {} {} ms after its crash (link grace: {} ms)",
                    life.uuid,
                    at - tc,
                    harmony_group::DEFAULT_LINK_GRACE.as_millis()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} observers of crashes checked");
}

/// No duplicate delivery; delivery to every eligible member.
fn check_delivery(sim: &Sim, sent: &BTreeMap<u64, Sent>) {
    let mut got: HashMap<(u64, u64), u32> = HashMap::new();
    for r in &sim.log {
        let (Event::Shout { content, .. } | Event::Whisper { content, .. }) = &r.event else {
            continue;
        };
        let id = u64::from_be_bytes(content[0][..8].try_into().expect("8-byte id"));
        let s = &sent[&id];
        assert_eq!(
            sim.lives[s.inc as usize].uuid,
            r.event.peer(),
            "sender of {id}"
        );
        if let Event::Shout { group, .. } = &r.event {
            assert_eq!(Some(&**group), s.group.as_deref());
        }
        *got.entry((r.inc, id)).or_default() += 1;
    }
    assert!(
        got.values().all(|&n| n == 1),
        "a message was delivered twice"
    );
    let (before, after) = (10_000, 5_000);
    let mut checked = 0;
    for (id, s) in sent {
        let sender = &sim.lives[s.inc as usize];
        if !sender.alive_over(s.t.saturating_sub(before), s.t + after) || s.t < before {
            continue;
        }
        for (inc, r) in sim.lives.iter().enumerate() {
            if inc as u64 == s.inc || !r.alive_over(s.t - before, s.t + after) {
                continue;
            }
            let eligible = match (&s.group, s.to) {
                (Some(g), _) => r.member_over(g, s.t - before, s.t + after),
                (None, Some(to)) => to == r.uuid,
                _ => false,
            };
            if eligible {
                checked += 1;
                if got.get(&(inc as u64, *id)) != Some(&1) {
                    dump(sim, s.inc, inc as u64);
                }
                assert_eq!(
                    got.get(&(inc as u64, *id)),
                    Some(&1),
                    "message {id} ({s:?}) not delivered to incarnation {inc}"
                );
            }
        }
    }
    assert!(checked > 1000, "only {checked} deliveries checked");
}

/// Prints what two incarnations saw of each other (for failures).
fn dump(sim: &Sim, a: u64, b: u64) {
    let (ua, ub) = (sim.lives[a as usize].uuid, sim.lives[b as usize].uuid);
    eprintln!(
        "life {a}: {:?}\nlife {b}: {:?}",
        sim.lives[a as usize], sim.lives[b as usize]
    );
    for r in &sim.log {
        if (r.inc == a && r.event.peer() == ub) || (r.inc == b && r.event.peer() == ua) {
            eprintln!(
                "{:>6} inc {} {} {:?}",
                r.t,
                r.inc,
                r.event.kind(),
                r.event.group()
            );
        }
    }
}

/// Peer tables, groups and leaders agree with the truth after the quiet period.
fn check_convergence(sim: &Sim) {
    let live: Vec<usize> = sim.live_slots();
    assert_eq!(live.len(), NODES);
    let truth: BTreeMap<Uuid, (u64, BTreeSet<String>)> = live
        .iter()
        .map(|&s| {
            let n = sim.node(s).expect("live");
            (
                n.uuid(),
                (
                    sim.live_inc(s).expect("live"),
                    n.own_groups().into_iter().collect(),
                ),
            )
        })
        .collect();
    let contesters: BTreeSet<Uuid> = truth
        .iter()
        .filter(|(_, (inc, groups))| {
            groups.contains(LEAD) && sim.lives[*inc as usize].contest.iter().any(|g| g == LEAD)
        })
        .map(|(u, _)| *u)
        .collect();
    let expected_leader = contesters.iter().next().copied();
    for &s in &live {
        let n = sim.node(s).expect("live");
        let inc = sim.live_inc(s).expect("live");
        let others: Vec<Uuid> = truth.keys().copied().filter(|u| *u != n.uuid()).collect();
        assert_eq!(n.peers(), others, "peer table of slot {s}");
        // The view rebuilt from this incarnation's events.
        let mut view: BTreeMap<Uuid, BTreeSet<String>> = BTreeMap::new();
        let mut last_leader = None;
        for r in sim.log.iter().filter(|r| r.inc == inc) {
            let p = r.event.peer();
            match &r.event {
                Event::Enter { .. } => {
                    view.insert(p, BTreeSet::new());
                }
                Event::Exit { .. } => {
                    view.remove(&p);
                }
                Event::Join { group, .. } => {
                    view.get_mut(&p).expect("session").insert(group.to_string());
                }
                Event::Leave { group, .. } => {
                    view.get_mut(&p).expect("session").remove(&**group);
                }
                Event::Leader { group, .. } if &**group == LEAD => last_leader = Some(p),
                _ => {}
            }
        }
        assert_eq!(
            view.keys().copied().collect::<Vec<_>>(),
            others,
            "event view of slot {s}"
        );
        for (u, (_, groups)) in truth.iter().filter(|(u, _)| **u != n.uuid()) {
            assert_eq!(&view[u], groups, "slot {s}'s view of {u}'s groups");
        }
        for g in GROUPS.iter().chain([&LEAD]) {
            let members: Vec<Uuid> = truth
                .iter()
                .filter(|(u, (_, gs))| **u != n.uuid() && gs.contains(*g))
                .map(|(u, _)| *u)
                .collect();
            assert_eq!(n.peers_by_group(g), members, "slot {s}, group {g}");
        }
        assert_eq!(n.leader(LEAD), expected_leader, "leader seen by slot {s}");
        assert_eq!(
            last_leader, expected_leader,
            "last LEADER event at slot {s}"
        );
    }
}

#[test]
fn fifty_nodes_seed_1() {
    run(1);
}

#[test]
fn fifty_nodes_seed_2() {
    run(0x5eed_0002);
}

#[test]
fn fifty_nodes_seed_3() {
    run(0xdead_beef);
}

/// pyre-like liveness: beacons refresh peers, short timeouts (evasive 1 s, expired 4 s), more
/// beacon loss and latency.
#[test]
fn fifty_nodes_beacons_refresh_short_timeouts() {
    run_with(0xb1ea, short_config());
}

/// The driver reports connection drops (socket monitor): crashed peers leave within the link
/// grace; everything else holds as with timeouts alone.
#[test]
fn fifty_nodes_links_reported() {
    run_with(
        0x11_4c,
        NetConfig {
            report_links: true,
            ..NetConfig::default()
        },
    );
}

fn short_config() -> NetConfig {
    NetConfig {
        beacon_loss_pct: 30,
        latency_max_ms: 150,
        peer: harmony_group::PeerConfig {
            evasive_timeout: std::time::Duration::from_secs(1),
            expired_timeout: std::time::Duration::from_secs(4),
            beacons_refresh: true,
        },
        ..NetConfig::default()
    }
}

/// More seeds on demand: `SIM_SEEDS=1-40 [SIM_MODE=short] cargo test -p harmony-group --test simulation -- --ignored`.
#[test]
#[ignore = "long: a sweep over SIM_SEEDS (default 100-119)"]
fn fifty_nodes_seed_sweep() {
    let spec = std::env::var("SIM_SEEDS").unwrap_or_else(|_| "100-119".into());
    let (a, b) = spec.split_once('-').unwrap_or((&spec, &spec));
    let (a, b): (u64, u64) = (a.parse().expect("seed"), b.parse().expect("seed"));
    for seed in a..=b {
        eprintln!("seed {seed}");
        if std::env::var("SIM_MODE").is_ok_and(|m| m == "short") {
            run_with(seed, short_config());
        } else {
            run(seed);
        }
    }
}

/// A peer that cannot keep up: its connection's queue fills, the sender drops it (EXIT), and
/// the next beacon brings it back; what it received is an in-order prefix, never duplicated.
#[test]
fn slow_consumer_is_dropped_and_comes_back() {
    let config = NetConfig {
        send_queue_limit: Some(50),
        beacon_loss_pct: 0,
        ..NetConfig::default()
    };
    let mut sim = Sim::new(7, 3, config);
    for slot in 0..3 {
        let uuid = sim.rng.uuid();
        sim.start(slot, uuid, &[]);
    }
    sim.run_until(3_000);
    let (a, b) = (0, 1);
    let ub = sim.node(b).expect("live").uuid();
    let ua = sim.node(a).expect("live").uuid();
    assert_eq!(sim.node(a).expect("live").peers().len(), 2);
    // 200 whispers at once: the queue holds 50.
    for i in 0u64..200 {
        let payload = vec![Bytes::from(i.to_be_bytes().to_vec())];
        let _ = sim.with(a, |n| n.whisper(ub, payload));
    }
    assert_eq!(sim.send_failures.len(), 1, "{:?}", sim.send_failures);
    let inc_a = sim.live_inc(a).expect("live");
    let inc_b = sim.live_inc(b).expect("live");
    assert!(sim.log.iter().any(|r| r.inc == inc_a
        && r.event
            == Event::Exit {
                peer: ub,
                name: "n1".into()
            }));
    sim.run_until(6_000);
    // Back: both know each other again, and a new whisper gets through.
    assert!(sim.node(a).expect("live").peers().contains(&ub));
    assert!(sim.node(b).expect("live").peers().contains(&ua));
    sim.with(a, |n| {
        n.whisper(ub, vec![Bytes::from(999u64.to_be_bytes().to_vec())])
    })
    .expect("known peer");
    sim.run_until(7_000);
    let got: Vec<u64> = sim
        .log
        .iter()
        .filter(|r| r.inc == inc_b)
        .filter_map(|r| match &r.event {
            Event::Whisper { content, .. } => {
                Some(u64::from_be_bytes(content[0][..8].try_into().expect("id")))
            }
            _ => None,
        })
        .collect();
    // The disconnect dropped what was still queued (Zyre destroys the socket); whatever got
    // through before is an in-order prefix.
    let (last, prefix) = got.split_last().expect("the last whisper arrived");
    assert_eq!(*last, 999);
    assert!(prefix.iter().copied().eq(0..prefix.len() as u64), "{got:?}");
}
