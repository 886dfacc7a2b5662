//! Interop with a real pyre node (PyPI `zeromq-pyre`) across two network namespaces joined by
//! a veth pair (pyre ignores loopback). Harmony runs as `harmony chat --json --contest`; it
//! changes a header (`/set`) with pyre in the group, which pyre must not notice.

mod support;

use std::time::Duration;

use harmony_testkit::{python, NetnsPair};
use support::{is, JsonProc};

const WAIT: Duration = Duration::from_secs(20);

fn harmony_chat(pair: &NetnsPair, name: &str) -> JsonProc {
    JsonProc::spawn(
        name,
        NetnsPair::command(&pair.b, env!("CARGO_BIN_EXE_harmony")).args([
            "chat",
            "--json",
            "--name",
            name,
            "--group",
            "CHAT",
            "--interface",
            &pair.if_b,
            "--header",
            "X-IMPL=harmony",
            // Both Harmony nodes contest CHAT's leadership with pyre in the group: pyre must
            // never see ELECT/LEADER (it would drop the sender), so everything below still works.
            "--contest",
        ]),
    )
}

#[test]
fn netns_harmony_and_pyre_discover_chat_and_see_each_other_leave() {
    harmony_testkit::require_netns();
    let pair = NetnsPair::create("py");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/pyre_peer.py");
    let mut pyre = JsonProc::spawn(
        "pyre",
        NetnsPair::command(&pair.a, python()).args([
            "-u",
            script,
            "pyrenode",
            "CHAT",
            "X-IMPL=pyre",
        ]),
    );
    let mut h1 = harmony_chat(&pair, "harmony1");
    let mut h2 = harmony_chat(&pair, "harmony2");
    let pyre_uuid = pyre.expect("STARTED", WAIT, |v| is(v, "STARTED", &[]))["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let h1_uuid = h1.expect("STARTED", WAIT, |v| is(v, "STARTED", &[]))["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let h2_uuid = h2.expect("STARTED", WAIT, |v| is(v, "STARTED", &[]))["uuid"]
        .as_str()
        .unwrap()
        .to_owned();

    // Both sides see ENTER with the other's headers and endpoint, then JOIN.
    let enter = h1.expect("ENTER from pyre", WAIT, |v| {
        is(v, "ENTER", &[("uuid", &pyre_uuid)])
    });
    assert_eq!(enter["name"], "pyrenode");
    assert_eq!(enter["headers"]["X-IMPL"], "pyre");
    assert!(
        enter["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("tcp://10.77.0.1:"),
        "{enter}"
    );
    h1.expect("JOIN from pyre", WAIT, |v| {
        is(v, "JOIN", &[("uuid", &pyre_uuid), ("group", "CHAT")])
    });
    for (h_uuid, name) in [(&h1_uuid, "harmony1"), (&h2_uuid, "harmony2")] {
        let enter = pyre.expect("ENTER from harmony", WAIT, |v| {
            is(v, "ENTER", &[("uuid", h_uuid)])
        });
        assert_eq!(enter["name"], name);
        assert_eq!(enter["headers"]["X-IMPL"], "harmony");
        assert!(
            enter["endpoint"]
                .as_str()
                .unwrap()
                .starts_with("tcp://10.77.0.2:"),
            "{enter}"
        );
        pyre.expect("JOIN from harmony", WAIT, |v| {
            is(v, "JOIN", &[("uuid", h_uuid), ("group", "CHAT")])
        });
    }

    // The two Harmony nodes elect one leader between them; pyre is not asked.
    let leader = h1_uuid.clone().min(h2_uuid.clone());
    for h in [&mut h1, &mut h2] {
        h.expect("LEADER", WAIT, |v| {
            is(v, "LEADER", &[("uuid", &leader), ("group", "CHAT")])
        });
    }

    // harmony1 changes a header: harmony2 hears it; pyre is sent nothing (checked below).
    h1.send("/set X-IMPL changed");
    let headers = h2.expect("HEADERS from harmony1", WAIT, |v| {
        is(v, "HEADERS", &[("uuid", &h1_uuid)])
    });
    assert_eq!(headers["headers"]["X-IMPL"], "changed");

    // SHOUT both ways.
    pyre.send("shout CHAT hello-from-pyre");
    let shout = h1.expect("SHOUT from pyre", WAIT, |v| {
        is(v, "SHOUT", &[("uuid", &pyre_uuid)])
    });
    assert_eq!(
        (shout["group"].as_str(), shout["text"].as_str()),
        (Some("CHAT"), Some("hello-from-pyre"))
    );
    h1.send("hello-from-harmony");
    let shout = pyre.expect("SHOUT from harmony", WAIT, |v| {
        is(v, "SHOUT", &[("uuid", &h1_uuid)])
    });
    assert_eq!(shout["content"][0], "hello-from-harmony");

    // WHISPER both ways.
    h1.send("/w pyrenode psst-pyre");
    let whisper = pyre.expect("WHISPER from harmony", WAIT, |v| {
        is(v, "WHISPER", &[("uuid", &h1_uuid)])
    });
    assert_eq!(whisper["content"][0], "psst-pyre");
    pyre.send(&format!("whisper {h1_uuid} psst-harmony"));
    let whisper = h1.expect("WHISPER from pyre", WAIT, |v| {
        is(v, "WHISPER", &[("uuid", &pyre_uuid)])
    });
    assert_eq!(whisper["text"], "psst-harmony");

    // pyre saw nothing new from harmony1 after the header change: its session is intact
    // (the SHOUT and the one WHISPER above arrived in sequence), no EXIT, no extra WHISPER,
    // nothing but these kinds of events; and it keeps the header of the HELLO.
    pyre.send(&format!("header {h1_uuid} X-IMPL"));
    let header = pyre.expect("HEADER", WAIT, |v| is(v, "HEADER", &[]));
    assert_eq!(header["value"], "harmony");
    let from_h1: Vec<&str> = pyre
        .seen
        .iter()
        .filter(|v| v["uuid"] == h1_uuid.as_str() && v["event"] != "HEADER")
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        from_h1,
        ["ENTER", "JOIN", "SHOUT", "WHISPER"],
        "{:#?}",
        pyre.seen
    );

    // harmony1 stops: pyre sees it EXIT (port-0 beacon).
    h1.close_stdin();
    h1.expect("own STOP", WAIT, |v| is(v, "STOP", &[]));
    assert!(h1.wait_exit(WAIT).success());
    pyre.expect("EXIT of harmony1", WAIT, |v| {
        is(v, "EXIT", &[("uuid", &h1_uuid)])
    });

    // pyre stops: harmony2 sees it EXIT.
    pyre.send("stop");
    pyre.expect("pyre stopped", WAIT, |v| is(v, "STOPPED", &[]));
    h2.expect("EXIT of pyre", WAIT, |v| {
        is(v, "EXIT", &[("uuid", &pyre_uuid)])
    });
    h2.close_stdin();
    assert!(h2.wait_exit(WAIT).success());
}
