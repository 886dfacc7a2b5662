//! Presence with real `harmony chat` processes on two hosts (issue 10, section 3): two network
//! namespaces joined by a veth pair. A partition that heals, and a peer killed with SIGKILL
//! and started again (with a new UUID, then with its old one). Short evasive/expired timeouts
//! (`--evasive-ms`, `--expired-ms`) keep each case to a few seconds.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use harmony_testkit::{require_netns, run, NetnsPair};
use serde_json::Value;
use support::{is, JsonProc};

const BIN: &str = env!("CARGO_BIN_EXE_harmony");
const STEP: Duration = Duration::from_secs(15);

/// `harmony chat --json` named `name` in namespace `ns` on interface `ifname`.
fn chat(ns: &str, ifname: &str, name: &str, extra: &[&str]) -> JsonProc {
    let mut cmd = NetnsPair::command(ns, BIN);
    cmd.args(["chat", "--json", "--name", name, "--group", "ROOM"]);
    cmd.args(["--interface", ifname, "--interval-ms", "100"]);
    cmd.args(extra);
    JsonProc::spawn(name, &mut cmd)
}

fn link(pair: &NetnsPair, state: &str) {
    run(Command::new("ip").args(["-n", &pair.a, "link", "set", &pair.if_a, state]));
}

/// The UUID of the chat's first STARTED line.
fn started_uuid(p: &mut JsonProc) -> String {
    let v = p.expect("STARTED", STEP, |v| v["event"] == "STARTED");
    v["uuid"].as_str().expect("uuid").to_owned()
}

/// Index in `p.seen` of the first object at or after `from` matching `pred`.
fn position_from(p: &JsonProc, from: usize, pred: impl Fn(&Value) -> bool) -> Option<usize> {
    p.seen.iter().skip(from).position(pred).map(|i| i + from)
}

/// The texts of the SHOUTs from `name` in `p.seen[from..]`.
fn shouts_from(p: &JsonProc, from: usize, name: &str) -> Vec<String> {
    p.seen[from..]
        .iter()
        .filter(|v| is(v, "SHOUT", &[("name", name)]))
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect()
}

/// Both sides shout `count` numbered lines, one every 100 ms, and each must hear all of the
/// other's once and in order; between the first of them heard and the end, neither may
/// report the other EVASIVE, SILENT or EXIT (it is talking all along).
fn talk(a: &mut JsonProc, b: &mut JsonProc, tag: &str, count: usize) {
    let (from_a, from_b) = (a.seen.len(), b.seen.len());
    for i in 1..=count {
        a.send(&format!("{tag} ann {i}"));
        b.send(&format!("{tag} bob {i}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    for (me, other, from) in [(&mut *a, "bob", from_a), (&mut *b, "ann", from_b)] {
        let last = format!("{tag} {other} {count}");
        me.expect(&format!("SHOUT {last:?}"), STEP, |v| {
            is(v, "SHOUT", &[("name", other), ("text", &last)])
        });
        let want: Vec<String> = (1..=count).map(|i| format!("{tag} {other} {i}")).collect();
        let heard: Vec<String> = shouts_from(me, from, other)
            .into_iter()
            .filter(|t| t.starts_with(&format!("{tag} ")))
            .collect();
        assert_eq!(
            heard, want,
            "{} heard {other}'s shouts once each, in order",
            me.label
        );
        let first =
            position_from(me, from, |v| is(v, "SHOUT", &[("name", other)])).expect("a shout");
        let alarms: Vec<&Value> = me.seen[first..]
            .iter()
            .filter(|v| {
                ["EVASIVE", "SILENT", "EXIT"]
                    .iter()
                    .any(|k| is(v, k, &[("name", other)]))
            })
            .collect();
        assert!(
            alarms.is_empty(),
            "{} reports {other} gone while it talks: {alarms:?}",
            me.label
        );
    }
}

/// The user story: two chats, the link down past the expired timeout, then up. Both
/// see EXIT, then ENTER again; shouts flow both ways, each once; no EVASIVE line afterwards.
#[test]
fn chat_partition_past_expiry_heals_netns() {
    require_netns();
    let pair = NetnsPair::create("cp");
    let timeouts = ["--evasive-ms", "500", "--expired-ms", "2000"];
    let mut ann = chat(&pair.a, &pair.if_a, "ann", &timeouts);
    let mut bob = chat(&pair.b, &pair.if_b, "bob", &timeouts);
    ann.expect("ENTER bob", STEP, |v| is(v, "ENTER", &[("name", "bob")]));
    bob.expect("ENTER ann", STEP, |v| is(v, "ENTER", &[("name", "ann")]));
    talk(&mut ann, &mut bob, "before", 10);
    link(&pair, "down");
    ann.expect("EXIT bob", STEP, |v| is(v, "EXIT", &[("name", "bob")]));
    bob.expect("EXIT ann", STEP, |v| is(v, "EXIT", &[("name", "ann")]));
    std::thread::sleep(Duration::from_millis(500));
    link(&pair, "up");
    let (ma, mb) = (ann.seen.len(), bob.seen.len());
    for (p, other, from) in [(&mut ann, "bob", ma), (&mut bob, "ann", mb)] {
        let deadline = Instant::now() + STEP;
        while position_from(p, from, |v| is(v, "ENTER", &[("name", other)])).is_none() {
            assert!(Instant::now() < deadline, "{} saw {other} again", p.label);
            p.within(Duration::from_millis(200), |_| false);
        }
    }
    talk(&mut ann, &mut bob, "after", 30);
    // And well after the heal: no EVASIVE for a peer that talks.
    talk(&mut ann, &mut bob, "later", 10);
}

/// A peer killed with SIGKILL on the other host: its EXIT comes once (its connection drops);
/// started again it ENTERs again; killed and started with the same UUID it is a new session
/// (EXIT of the old one, ENTER of the new, no ghost, no duplicate), and messages flow.
#[test]
fn chat_killed_and_restarted_across_hosts_netns() {
    require_netns();
    let pair = NetnsPair::create("ck");
    let timeouts = ["--evasive-ms", "1000", "--expired-ms", "5000"];
    let mut ann = chat(&pair.a, &pair.if_a, "ann", &timeouts);
    let mut bob = chat(&pair.b, &pair.if_b, "bob", &timeouts);
    let bob1 = started_uuid(&mut bob);
    ann.expect("ENTER bob", STEP, |v| is(v, "ENTER", &[("uuid", &bob1)]));
    bob.expect("ENTER ann", STEP, |v| is(v, "ENTER", &[("name", "ann")]));
    // kill -9: no GOODBYE, no port-0 beacon.
    bob.kill();
    ann.expect("EXIT of the killed bob", STEP, |v| {
        is(v, "EXIT", &[("uuid", &bob1)])
    });
    // Started again (a new UUID): a new peer.
    let mut bob = chat(&pair.b, &pair.if_b, "bob", &timeouts);
    let bob2 = started_uuid(&mut bob);
    assert_ne!(bob1, bob2);
    ann.expect("ENTER of the new bob", STEP, |v| {
        is(v, "ENTER", &[("uuid", &bob2)])
    });
    bob.expect("ENTER ann", STEP, |v| is(v, "ENTER", &[("name", "ann")]));
    talk(&mut ann, &mut bob, "second", 10);
    // Killed and started at once with the same UUID, before ann could notice.
    bob.kill();
    let mut extra = timeouts.to_vec();
    extra.extend(["--uuid", bob2.as_str()]);
    let mut bob = chat(&pair.b, &pair.if_b, "bob", &extra);
    assert_eq!(started_uuid(&mut bob), bob2);
    bob.expect("ENTER ann", STEP, |v| is(v, "ENTER", &[("name", "ann")]));
    talk(&mut ann, &mut bob, "third", 10);
    // Wait out the link grace and more: nothing further about bob may come.
    talk(&mut ann, &mut bob, "fourth", 20);
    // ann's story of each bob: ENTER and EXIT alternate; the first bob left once; the same
    // UUID's two sessions are EXIT once, ENTER twice; it is there at the end.
    let story = |uuid: &str| -> Vec<String> {
        ann.seen
            .iter()
            .filter(|v| v["uuid"] == uuid && (v["event"] == "ENTER" || v["event"] == "EXIT"))
            .map(|v| v["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        story(&bob1),
        ["ENTER", "EXIT"],
        "ann's story of the first bob"
    );
    assert_eq!(
        story(&bob2),
        ["ENTER", "EXIT", "ENTER"],
        "ann's story of the bob that came back with the same UUID"
    );
}
