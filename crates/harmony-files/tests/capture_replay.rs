//! The sans-IO server and client replay the zeromq/filemq C conversation of
//! `shared/data/captures/filemq-c-session.jsonl`: each, put in the place of its C counterpart,
//! answers the C peer's captured messages as the C implementation did, byte for byte where
//! the C side is deterministic.

mod support;

use std::time::Instant;

use bytes::Bytes;
use harmony_files::{Client, ClientConfig, FileOp, Server, ServerConfig};
use harmony_wire::filemq::FilemqMessage;
use support::{big_bin, capture, decode, MemDest, MemSource};

fn encoded(msg: &FilemqMessage) -> Bytes {
    msg.to_bytes().expect("encodes")
}

#[test]
fn harmony_client_against_the_c_servers_messages() {
    let now = Instant::now();
    let c2s = capture("c2s");
    let s2c = capture("s2c");
    // Without extensions and with the C client's first credit, our first messages are the
    // C client's, byte for byte.
    let config = ClientConfig {
        extensions: false,
        credit_window: 5_000_000,
        ..ClientConfig::default()
    };
    let mut client = Client::new(config, vec![], vec![], now);
    let mut dest = MemDest::default();
    assert_eq!(encoded(&client.poll_transmit().expect("OHAI")), c2s[0]);
    client.handle_message(&s2c[0], now);
    assert_eq!(encoded(&client.poll_transmit().expect("ICANHAZ")), c2s[1]);
    client.handle_message(&s2c[1], now);
    assert_eq!(encoded(&client.poll_transmit().expect("NOM")), c2s[2]);
    let mut granted = 5_000_000u64;
    let mut received = 0u64;
    for frame in &s2c[2..] {
        if let FilemqMessage::Cheezburger(c) = decode(frame) {
            received += c.chunk.len() as u64;
            assert!(received <= granted, "the capture never exceeds credit");
        }
        client.handle_message(frame, now);
        assert_eq!(client.error(), None);
        dest.apply(&mut client);
        while let Some(msg) = client.poll_transmit() {
            match msg {
                FilemqMessage::Nom { credit, .. } => granted += credit,
                FilemqMessage::HugzOk => {}
                other => panic!("unexpected {}", other.name()),
            }
        }
    }
    let names: Vec<&str> = dest.files.keys().map(String::as_str).collect();
    assert_eq!(names, ["big.bin", "docs/readme.txt", "late.txt"]);
    assert_eq!(dest.files["big.bin"], big_bin());
    assert_eq!(dest.files["docs/readme.txt"], b"FILEMQ capture\n");
    assert_eq!(dest.files["late.txt"], b"late file\n");
    assert!(dest.ops.contains(&FileOp::Delete {
        name: "hello.txt".into()
    }));
    // hello.txt had been written whole before it was deleted.
    assert!(dest
        .ops
        .iter()
        .any(|op| matches!(op, FileOp::Commit { name, size: 13, .. } if name == "hello.txt")));
}

#[test]
fn harmony_server_answers_the_c_clients_messages() {
    let now = Instant::now();
    let c2s = capture("c2s");
    let s2c = capture("s2c");
    let mut source = MemSource::default();
    let mut server = Server::new(ServerConfig::default());
    let files: [(&str, Bytes); 3] = [
        ("/hello.txt", Bytes::from_static(b"hello, world\n")),
        ("/docs/readme.txt", Bytes::from_static(b"FILEMQ capture\n")),
        ("/big.bin", Bytes::from(big_bin())),
    ];
    for (vpath, data) in files {
        server.file_changed(vpath, data.len() as u64, 1);
        source.0.insert(vpath.to_string(), data);
    }
    let peer = Bytes::from_static(b"\x00\x00\x00\x00\x01");
    // The frames exactly as the driver puts them on the wire (chunks read into place).
    let sent = |server: &mut Server, source: &mut MemSource| -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some((to, frame)) = server.poll_transmit_frame(source) {
            assert_eq!(to, peer);
            out.push(frame);
        }
        out
    };
    server.handle_message(&peer, &c2s[0], now);
    assert_eq!(sent(&mut server, &mut source), [s2c[0].clone()]);
    server.handle_message(&peer, &c2s[1], now);
    assert_eq!(sent(&mut server, &mut source), [s2c[1].clone()]);
    // Credit 5 000 000: the three files, as the C server sent them.
    server.handle_message(&peer, &c2s[2], now);
    assert_eq!(sent(&mut server, &mut source), s2c[2..10].to_vec());
    server.handle_message(&peer, &c2s[3], now);
    assert_eq!(sent(&mut server, &mut source), [s2c[10].clone()]);
    server.handle_message(&peer, &c2s[4], now);
    server.handle_message(&peer, &c2s[5], now);
    assert!(sent(&mut server, &mut source).is_empty());
    // hello.txt deleted: the C server's delete carries a stale offset, ours 0.
    server.file_removed("/hello.txt");
    source.0.remove("/hello.txt");
    let out = sent(&mut server, &mut source);
    let (FilemqMessage::Cheezburger(ours), FilemqMessage::Cheezburger(mut theirs)) =
        (decode(&out[0]), decode(&s2c[11]))
    else {
        panic!("deletes expected");
    };
    theirs.offset = 0;
    assert_eq!(ours, theirs);
    // late.txt appears (the C server also re-sent docs/readme.txt, sequences 9 and 10).
    server.file_changed("/late.txt", 10, 1);
    source
        .0
        .insert("/late.txt".into(), Bytes::from_static(b"late file\n"));
    let out = sent(&mut server, &mut source);
    assert_eq!(out.len(), 2);
    for (ours, theirs) in out.iter().zip(&s2c[18..20]) {
        let (FilemqMessage::Cheezburger(ours), FilemqMessage::Cheezburger(mut theirs)) =
            (decode(ours), decode(theirs))
        else {
            panic!("chunks expected");
        };
        theirs.sequence -= 2;
        assert_eq!(ours, theirs);
    }
    for hugz in &c2s[6..10] {
        server.handle_message(&peer, hugz, now);
        assert_eq!(sent(&mut server, &mut source), [s2c[14].clone()]);
    }
    assert_eq!(server.poll_event().map(|_| ()), Some(()));
}
