//! Presence across a partition (issue 10, section 3): two nodes in two network namespaces
//! joined by a veth pair; the link goes down past the expired timeout and comes back. Both see
//! EXIT, then ENTER again; afterwards liveness must be as before: no false EVASIVE or EXIT
//! while both talk, and every shout arrives once. Short timeouts keep it to a few seconds; the
//! report's own timings (35 s cut, Zyre's timeouts) are an ignored test of a minute.
//!
//! Both pass on this branch: with both nodes talking, the reported EVASIVE-every-5-s symptom
//! did not appear. Still to cover: one quiet side (EVASIVE rate before vs after the heal),
//! `harmony chat` processes, cuts around the evasive timeout, kill -9, restart with the same
//! UUID.

use std::time::{Duration, Instant};

use harmony_node::{Event, Node};
use harmony_testkit::{require_netns, run, run_in_netns, NetnsPair};

const EVASIVE: Duration = Duration::from_millis(500);
const EXPIRED: Duration = Duration::from_secs(2);

/// One node's life inside namespace `ns`: joins `P`, shouts every 100 ms until `until`, and
/// returns what it saw: (when, kind, peer name, text).
fn side(
    ns: String,
    ifname: String,
    name: &'static str,
    until: Instant,
    (evasive, expired): (Duration, Duration),
) -> Vec<(Instant, String, String, String)> {
    run_in_netns(&ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut node = Node::builder()
                .name(name)
                .interface(ifname.as_str())
                .interval(Duration::from_millis(100))
                .evasive_timeout(evasive)
                .expired_timeout(expired)
                .start()
                .await
                .expect("node starts");
            node.join("P").await.expect("join");
            let mut log = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if Instant::now() >= until {
                            break;
                        }
                        n += 1;
                        let _ = node.shout("P", format!("{n}")).await;
                    }
                    ev = node.next_event() => match ev {
                        Some(ev) => {
                            let text = match &ev {
                                Event::Shout { content, .. } => {
                                    String::from_utf8_lossy(&content[0]).into_owned()
                                }
                                _ => String::new(),
                            };
                            let who = match &ev {
                                Event::Enter { name, .. } | Event::Exit { name, .. }
                                | Event::Evasive { name, .. } | Event::Silent { name, .. }
                                | Event::Shout { name, .. } | Event::Join { name, .. } => {
                                    name.to_string()
                                }
                                _ => String::new(),
                            };
                            log.push((Instant::now(), ev.kind().to_owned(), who, text));
                        }
                        None => break,
                    }
                }
            }
            node.stop().await.expect("stop");
            log
        })
    })
}

#[test]
fn partition_past_expiry_heals_without_false_evasive_netns() {
    partition(
        (EVASIVE, EXPIRED),
        EXPIRED + Duration::from_millis(1500),
        Duration::from_secs(6),
    );
}

/// The report's own case: Zyre's timeouts (5 s, 30 s), the link down for 35 s.
#[test]
#[ignore = "takes a minute: Zyre's default timeouts and a 35 s partition"]
fn partition_of_35_s_with_default_timeouts_netns() {
    partition(
        (Duration::from_secs(5), Duration::from_secs(30)),
        Duration::from_secs(35),
        Duration::from_secs(20),
    );
}

/// Two nodes meet, the link goes down for `cut`, comes back, and they talk for `after`.
fn partition(timeouts: (Duration, Duration), cut: Duration, after: Duration) {
    require_netns();
    let (evasive, _) = timeouts;
    let pair = NetnsPair::create("pt");
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(2) + cut + after;
    let (a, b) = (pair.a.clone(), pair.b.clone());
    let (ia, ib) = (pair.if_a.clone(), pair.if_b.clone());
    let ha = std::thread::spawn(move || side(a, ia, "ann", until, timeouts));
    let hb = std::thread::spawn(move || side(b, ib, "bob", until, timeouts));
    // Meet, then cut the link for longer than the expired timeout, then heal it.
    std::thread::sleep(Duration::from_secs(2));
    let down = Instant::now();
    run(std::process::Command::new("ip").args(["-n", &pair.a, "link", "set", &pair.if_a, "down"]));
    std::thread::sleep(cut);
    run(std::process::Command::new("ip").args(["-n", &pair.a, "link", "set", &pair.if_a, "up"]));
    let up = Instant::now();
    let logs = [
        ("ann", ha.join().expect("ann")),
        ("bob", hb.join().expect("bob")),
    ];
    for (me, log) in &logs {
        let other = if *me == "ann" { "bob" } else { "ann" };
        let first_enter = log
            .iter()
            .find(|(t, k, w, _)| k == "ENTER" && w == other && *t < down)
            .unwrap_or_else(|| panic!("{me} met {other} before the partition: {log:?}"));
        let _ = first_enter;
        assert!(
            log.iter()
                .any(|(t, k, w, _)| k == "EXIT" && w == other && *t > down && *t < up + evasive),
            "{me} saw {other} EXIT during the partition: {log:?}"
        );
        let back = log
            .iter()
            .find(|(t, k, w, _)| k == "ENTER" && w == other && *t > up)
            .unwrap_or_else(|| panic!("{me} saw {other} ENTER again after the heal: {log:?}"))
            .0;
        // From a second after it came back to the end: liveness exactly as before the cut.
        let settled = back + Duration::from_secs(1);
        let false_alarms: Vec<_> = log
            .iter()
            .filter(|(t, k, _, _)| {
                *t > settled && ["EVASIVE", "SILENT", "EXIT"].contains(&k.as_str())
            })
            .collect();
        assert!(
            false_alarms.is_empty(),
            "{me} reports {other} gone while it talks: {false_alarms:?}"
        );
        // Shouts flow and none is delivered twice.
        let heard: Vec<&String> = log
            .iter()
            .filter(|(t, k, w, _)| k == "SHOUT" && w == other && *t > settled)
            .map(|(_, _, _, text)| text)
            .collect();
        assert!(
            heard.len() >= 20,
            "{me} heard {} shouts after the heal",
            heard.len()
        );
        let mut unique = heard.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), heard.len(), "{me} heard a shout twice");
    }
}
