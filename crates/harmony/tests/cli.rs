//! The `harmony` program as a user runs it: chat (text and JSON), peers, demo, clear errors.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{is, JsonProc};

const WAIT: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_harmony");

fn chat(name: &str, port: &str, json: bool) -> JsonProc {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "chat",
        "--name",
        name,
        "--group",
        "ROOM",
        "--interface",
        "loopback",
        "--port",
        port,
    ]);
    cmd.args(["--interval-ms", "100", "--header", "X-TEST=yes"]);
    if json {
        cmd.arg("--json");
    }
    JsonProc::spawn(name, &mut cmd)
}

#[test]
fn two_chat_programs_talk_in_text_and_json() {
    let port = harmony_testkit::free_udp_port().to_string();
    let mut json = chat("jay", &port, true);
    let mut text = chat("tex", &port, false);
    let jay = json.expect("STARTED", WAIT, |v| is(v, "STARTED", &[]))["uuid"]
        .as_str()
        .unwrap()
        .to_owned();

    // Text lines: `ENTER <uuid> <name> <endpoint>`, `JOIN <uuid> <name> <group>`.
    let enter = text.expect("ENTER line", WAIT, |v| {
        v.as_str().is_some_and(|l| l.starts_with("ENTER "))
    });
    let parts: Vec<&str> = enter.as_str().unwrap().split(' ').collect();
    assert_eq!(parts.len(), 4, "{parts:?}");
    assert_eq!((parts[1], parts[2]), (jay.as_str(), "jay"));
    assert!(parts[3].starts_with("tcp://127.0.0.1:"));
    text.expect("JOIN line", WAIT, |v| {
        v.as_str() == Some(&format!("JOIN {jay} jay ROOM"))
    });

    // JSON objects carry every field, headers included.
    let enter = json.expect("ENTER", WAIT, |v| is(v, "ENTER", &[("name", "tex")]));
    assert_eq!(enter["headers"]["X-TEST"], "yes");
    let tex = enter["uuid"].as_str().unwrap().to_owned();
    json.expect("JOIN", WAIT, |v| {
        is(v, "JOIN", &[("uuid", &tex), ("group", "ROOM")])
    });

    text.send("hello there");
    let shout = json.expect("SHOUT", WAIT, |v| is(v, "SHOUT", &[("uuid", &tex)]));
    assert_eq!(
        (shout["group"].as_str(), shout["text"].as_str()),
        (Some("ROOM"), Some("hello there"))
    );
    json.send("/w tex a secret");
    text.expect("WHISPER line", WAIT, |v| {
        v.as_str() == Some(&format!("WHISPER {jay} jay a secret"))
    });

    // EOF on stdin stops the program; the other side sees EXIT.
    json.close_stdin();
    assert!(json.wait_exit(WAIT).success());
    text.expect("EXIT line", WAIT, |v| {
        v.as_str() == Some(&format!("EXIT {jay} jay"))
    });
}

#[test]
fn peers_lists_what_is_out_there() {
    let port = harmony_testkit::free_udp_port().to_string();
    let mut node = chat("lister-target", &port, true);
    let target = node.expect("STARTED", WAIT, |v| is(v, "STARTED", &[]))["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = Command::new(BIN)
        .args([
            "peers",
            "--verbose",
            "--json",
            "--wait",
            "1",
            "--interface",
            "loopback",
            "--port",
            &port,
            "--interval-ms",
            "100",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peers = list.as_array().unwrap();
    assert_eq!(peers.len(), 1, "{list}");
    assert_eq!(peers[0]["name"], "lister-target");
    assert_eq!(peers[0]["groups"][0], "ROOM");
    assert_eq!(peers[0]["headers"]["X-TEST"], "yes");
    // --verbose: the connections' monitor events, the inbox's and the one to the peer.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("link inbox: LISTENING tcp://127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("link inbox: HANDSHAKE_SUCCEEDED"), "{log}");
    let to_target = format!("link {target}: HANDSHAKE_SUCCEEDED");
    assert!(log.contains(&to_target), "{log}");
}

#[test]
fn demo_runs_to_the_end() {
    let out = Command::new(BIN)
        .args(["demo", "--nodes", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all 3 nodes see each other"), "{stdout}");
    assert!(stdout.contains("got a WHISPER from brook"), "{stdout}");
    assert!(stdout.contains("sees cyd exit"), "{stdout}");
}

#[test]
fn clear_errors() {
    let out = Command::new(BIN)
        .args([
            "chat",
            "--name",
            "x",
            "--group",
            "g",
            "--interface",
            "nosuch0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch0"), "{err}");
    let long = "n".repeat(300);
    let out = Command::new(BIN)
        .args(["chat", "--name", &long, "--group", "g", "--interface", "lo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("255"));
}

#[test]
fn keygen_certificates_load_in_pyzmq_and_drive_encrypted_chat() {
    let dir = std::env::temp_dir().join(format!("harmony-keygen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut keys = Vec::new();
    for name in ["alice", "bob"] {
        let path = dir.join(format!("{name}.cert"));
        let out = Command::new(BIN).arg("keygen").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        let public = printed
            .lines()
            .next()
            .unwrap()
            .strip_prefix("public key ")
            .unwrap()
            .to_owned();
        // pyzmq reads both files and finds the same public key (and a secret key in _secret).
        let check = "import sys, zmq.auth as a\n\
                     p, s = a.load_certificate(sys.argv[1])\n\
                     p2, s2 = a.load_certificate(sys.argv[1] + '_secret')\n\
                     assert s is None and s2 is not None and p == p2\n\
                     print(p.decode())";
        let out = Command::new(harmony_testkit::python())
            .args(["-c", check])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), public);
        keys.push((path, public));
    }
    let port = harmony_testkit::free_udp_port().to_string();
    let spawn = |name: &str, cert: &std::path::Path| {
        JsonProc::spawn(
            name,
            Command::new(BIN)
                .args([
                    "chat",
                    "--json",
                    "--name",
                    name,
                    "--group",
                    "SECRET",
                    "--interface",
                    "loopback",
                ])
                .args(["--port", &port, "--interval-ms", "100", "--curve-cert"])
                .arg(cert),
        )
    };
    let mut alice = spawn("alice", &keys[0].0);
    let mut bob = spawn("bob", &keys[1].0);
    let enter = alice.expect("ENTER bob", WAIT, |v| is(v, "ENTER", &[("name", "bob")]));
    assert_eq!(enter["headers"]["X-PUBLICKEY"], keys[1].1.as_str());
    bob.expect("JOIN alice", WAIT, |v| is(v, "JOIN", &[("name", "alice")]));
    alice.expect("JOIN bob", WAIT, |v| is(v, "JOIN", &[("name", "bob")]));
    alice.send("encrypted hello");
    let shout = bob.expect("SHOUT", WAIT, |v| is(v, "SHOUT", &[("name", "alice")]));
    assert_eq!(shout["text"], "encrypted hello");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_chat_programs_meet_by_gossip_and_elect_a_leader() {
    let port = harmony_testkit::free_udp_port().to_string();
    let hub_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port();
    let hub = format!("tcp://127.0.0.1:{hub_port}");
    let gossip_chat = |name: &str, flags: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "chat",
            "--name",
            name,
            "--group",
            "ROOM",
            "--json",
            "--contest",
        ]);
        cmd.args(["--interface", "loopback", "--port", &port]);
        cmd.args(flags);
        JsonProc::spawn(name, &mut cmd)
    };
    let mut a = gossip_chat(
        "hub",
        &["--gossip-bind", &hub, "--endpoint", "tcp://127.0.0.1:0"],
    );
    let hub_uuid = a.expect("STARTED", WAIT, |v| is(v, "STARTED", &[]))["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut b = gossip_chat("spoke", &["--gossip-connect", &hub]);
    let spoke = b.expect("STARTED", WAIT, |v| is(v, "STARTED", &[]))["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    b.expect("ENTER", WAIT, |v| is(v, "ENTER", &[("name", "hub")]));
    a.expect("JOIN", WAIT, |v| {
        is(v, "JOIN", &[("uuid", &spoke), ("group", "ROOM")])
    });
    // Both contest ROOM's leadership and agree on the leader.
    let leader = hub_uuid.clone().min(spoke.clone());
    for p in [&mut a, &mut b] {
        p.expect("LEADER", WAIT, |v| {
            is(v, "LEADER", &[("uuid", &leader), ("group", "ROOM")])
        });
    }
    b.send("via gossip");
    let shout = a.expect("SHOUT", WAIT, |v| is(v, "SHOUT", &[("uuid", &spoke)]));
    assert_eq!(shout["text"].as_str(), Some("via gossip"));
    // The spoke leaves with a GOODBYE: the hub sees EXIT long before any expiry.
    b.close_stdin();
    assert!(b.wait_exit(WAIT).success());
    a.expect("EXIT", Duration::from_secs(3), |v| {
        is(v, "EXIT", &[("uuid", &spoke)])
    });
}

/// `harmony chat` in two terminals, typed into as a person would (tmux panes): a line typed in
/// one is shouted to the other, `/w` whispers, Ctrl-D leaves and the other sees it.
#[test]
fn two_chats_on_terminals_talk_as_typed() {
    let port = harmony_testkit::free_udp_port().to_string();
    let chat = |name: &str| {
        harmony_testkit::Tmux::start(
            &format!(
                "{BIN} chat --name {name} --group ROOM --interface loopback --port {port} \
                 --interval-ms 100; echo EXIT=$?; sleep 60"
            ),
            120,
            20,
        )
    };
    let ann = chat("ann");
    let bob = chat("bob");
    // Each has seen the other join the room before anything is typed.
    ann.watch(WAIT, |s| {
        s.lines()
            .any(|l| l.starts_with("JOIN ") && l.ends_with(" bob ROOM"))
    });
    bob.watch(WAIT, |s| {
        s.lines()
            .any(|l| l.starts_with("JOIN ") && l.ends_with(" ann ROOM"))
    });

    ann.send_keys(&["hello there", "Enter"]);
    bob.watch(WAIT, |s| {
        s.lines()
            .any(|l| l.starts_with("SHOUT ") && l.ends_with(" ann ROOM hello there"))
    });
    bob.send_keys(&["/w ann just you", "Enter"]);
    ann.watch(WAIT, |s| {
        s.lines()
            .any(|l| l.starts_with("WHISPER ") && l.ends_with(" bob just you"))
    });

    // Ctrl-D ends ann's input: ann's program exits 0 and bob sees ann leave.
    ann.send_keys(&["C-d"]);
    ann.watch(WAIT, |s| s.contains("EXIT=0"));
    bob.watch(WAIT, |s| {
        s.lines()
            .any(|l| l.starts_with("EXIT ") && l.ends_with(" ann"))
    });
}
