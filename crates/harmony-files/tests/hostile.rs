//! Hostile peers against the sans-IO cores: every case is refused with its own error, that
//! connection ends, nothing of it is written, and other transfers go on.

mod support;

use std::time::Instant;

use bytes::Bytes;
use harmony_files::{
    ext, Client, ClientConfig, FileOp, PathError, ProtocolError, Server, ServerConfig, ServerEvent,
};
use harmony_wire::filemq::{Cheezburger, FileOperation, FilemqMessage};
use support::{chunk, pump, MemDest, MemSource};

/// A client subscribed to `/docs` with 1 MiB of credit, its handshake done.
fn subscribed(now: Instant) -> Client {
    let config = ClientConfig {
        subscriptions: vec!["/docs".into()],
        credit_window: 1 << 20,
        ..ClientConfig::default()
    };
    let mut client = Client::new(config, vec![], vec![], now);
    for msg in [FilemqMessage::OhaiOk, FilemqMessage::IcanhazOk] {
        client.handle_message(&msg.to_bytes().unwrap(), now);
    }
    while client.poll_transmit().is_some() {}
    assert!(client.is_subscribed());
    client
}

/// Feeds `chunks`; returns the client's error and the ops it produced.
fn feed(chunks: Vec<Cheezburger>) -> (Option<ProtocolError>, Vec<FileOp>) {
    let now = Instant::now();
    let mut client = subscribed(now);
    for c in chunks {
        client.handle_message(&FilemqMessage::Cheezburger(c).to_bytes().unwrap(), now);
    }
    let mut ops = Vec::new();
    while let Some(op) = client.poll_op() {
        ops.push(op);
    }
    (client.error().cloned(), ops)
}

fn path_error(name: &str) -> PathError {
    match feed(vec![chunk(name, 0, b"x", false)]) {
        (Some(ProtocolError::Path { error, .. }), ops) => {
            assert!(ops.is_empty(), "{name:?}: nothing may be written: {ops:?}");
            error
        }
        other => panic!("{name:?} accepted: {other:?}"),
    }
}

#[test]
fn names_that_would_leave_the_destination_are_refused() {
    assert_eq!(path_error("/docs//etc/passwd"), PathError::Absolute);
    assert!(matches!(path_error("/docs/../etc/passwd"), PathError::BadComponent(c) if c == ".."));
    assert!(matches!(
        path_error("/docs/a/../../x"),
        PathError::BadComponent(_)
    ));
    assert_eq!(path_error("/docs/a\0b"), PathError::Nul);
    assert!(matches!(
        path_error(&format!("/docs/{}", "n".repeat(300))),
        PathError::TooLong { .. }
    ));
    assert!(matches!(
        path_error("/etc/passwd"),
        PathError::NotSubscribed(_)
    ));
    assert!(matches!(
        path_error("/docsx/y"),
        PathError::NotSubscribed(_)
    ));
    assert!(matches!(path_error("docs/x"), PathError::NotSubscribed(_)));
    assert_eq!(path_error("/docs/.x.harmony-part"), PathError::Reserved);
    // A delete is checked the same way.
    let mut delete = chunk("/docs/../x", 0, b"", false);
    delete.operation = FileOperation::Delete;
    let (error, ops) = feed(vec![delete]);
    assert!(matches!(error, Some(ProtocolError::Path { .. })));
    assert!(ops.is_empty());
}

#[test]
fn offsets_sizes_credit_and_integrity_are_checked() {
    // A first chunk that does not start at 0.
    let (error, ops) = feed(vec![chunk("/docs/a", 100, b"x", false)]);
    assert!(matches!(
        error,
        Some(ProtocolError::OffsetJump {
            offset: 100,
            expected: 0,
            ..
        })
    ));
    assert!(ops.is_empty());
    // A jump in the middle: the first chunk was written, the jump was not.
    let (error, ops) = feed(vec![
        chunk("/docs/a", 0, b"abc", false),
        chunk("/docs/a", 10, b"def", false),
    ]);
    assert!(matches!(
        error,
        Some(ProtocolError::OffsetJump {
            offset: 10,
            expected: 3,
            ..
        })
    ));
    assert!(!ops
        .iter()
        .any(|op| matches!(op, FileOp::Write { offset: 10, .. })));
    // Beyond the declared size.
    let mut big = chunk("/docs/a", 0, b"0123456789", false);
    big.headers = vec![(ext::HDR_SIZE.into(), "4".into())];
    let (error, ops) = feed(vec![big]);
    assert!(matches!(
        error,
        Some(ProtocolError::BeyondSize {
            end: 10,
            size: 4,
            ..
        })
    ));
    assert!(!ops.iter().any(|op| matches!(op, FileOp::Write { .. })));
    // A declared size changed under way, to let more through (found by fuzzing): refused,
    // the first chunk alone written.
    let sized = |offset: u64, data: &'static [u8], size: &str| {
        let mut c = chunk("/docs/a", offset, data, false);
        c.headers = vec![(ext::HDR_SIZE.into(), size.into())];
        c
    };
    let (error, ops) = feed(vec![sized(0, b"0123", "6"), sized(4, b"456789", "10")]);
    assert_eq!(
        error,
        Some(ProtocolError::SizeChanged {
            name: "a".into(),
            declared: Some(6),
            now: 10
        })
    );
    let written: Vec<u64> = ops
        .iter()
        .filter_map(|op| match op {
            FileOp::Write { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect();
    assert_eq!(written, [0]);
    // A new version of the file starts again from 0, with its own size.
    let (error, _) = feed(vec![sized(0, b"0123", "6"), sized(0, b"0123456789", "10")]);
    assert_eq!(error, None);
    // More than the credit (1 MiB).
    let huge: &'static [u8] = Box::leak(vec![7u8; (1 << 20) + 1].into_boxed_slice());
    let (error, ops) = feed(vec![chunk("/docs/a", 0, huge, false)]);
    assert!(matches!(error, Some(ProtocolError::CreditExceeded { .. })));
    assert!(ops.is_empty());
    // A chunk whose crc32 does not match is not written.
    let mut corrupt = chunk("/docs/a", 0, b"hello", false);
    corrupt.headers = vec![(ext::HDR_CRC32.into(), ext::crc32_hex(b"hellp"))];
    let (error, ops) = feed(vec![corrupt]);
    assert!(matches!(
        error,
        Some(ProtocolError::CorruptChunk { offset: 0, .. })
    ));
    assert!(!ops.iter().any(|op| matches!(op, FileOp::Write { .. })));
    // A whole-file digest that does not match: discarded, never committed.
    let mut eof = chunk("/docs/a", 5, b"", true);
    eof.headers = vec![(ext::HDR_DIGEST.into(), ext::digest_of(b"other"))];
    let (error, ops) = feed(vec![chunk("/docs/a", 0, b"hello", false), eof]);
    assert!(matches!(error, Some(ProtocolError::DigestMismatch { .. })));
    assert!(ops.contains(&FileOp::Discard { name: "a".into() }));
    assert!(!ops.iter().any(|op| matches!(op, FileOp::Commit { .. })));
    // The same file with the right digest is committed.
    let mut eof = chunk("/docs/a", 5, b"", true);
    eof.headers = vec![(ext::HDR_DIGEST.into(), ext::digest_of(b"hello"))];
    let (error, ops) = feed(vec![chunk("/docs/a", 0, b"hello", false), eof]);
    assert_eq!(error, None);
    assert!(ops.contains(&FileOp::Commit {
        name: "a".into(),
        size: 5,
        digest: Some(ext::digest_of(b"hello"))
    }));
}

#[test]
fn hostile_clients_are_dropped_and_the_others_go_on() {
    let now = Instant::now();
    let mut source = MemSource::default();
    let data = Bytes::from(vec![5u8; 3_000_000]);
    source.0.insert("/f".into(), data.clone());
    let mut server = Server::new(ServerConfig::default());
    server.file_changed("/f", data.len() as u64, 1);
    let good = Bytes::from_static(b"good");
    let mut clients = [(
        good.clone(),
        Client::new(ClientConfig::default(), vec![], vec![], now),
        MemDest::default(),
    )];
    let frame = |m: FilemqMessage| m.to_bytes().unwrap();
    let rtfm_to = |server: &mut Server, source: &mut MemSource, who: &Bytes| {
        let mut last = None;
        while let Some((to, msg)) = server.poll_transmit(source) {
            if to == *who {
                last = Some(msg);
            }
        }
        matches!(last, Some(FilemqMessage::Rtfm { .. }))
    };
    // Credit of 2^64 - 1, on top of some credit already given.
    let bad = Bytes::from_static(b"bad1");
    for msg in [
        FilemqMessage::Ohai,
        FilemqMessage::Icanhaz {
            path: "/".into(),
            options: vec![],
            cache: vec![],
        },
        FilemqMessage::Nom {
            credit: 10,
            sequence: 0,
        },
        FilemqMessage::Nom {
            credit: u64::MAX,
            sequence: 0,
        },
    ] {
        server.handle_message(&bad, &frame(msg), now);
    }
    // The good client is part way through its file when the others misbehave.
    let moved = pump(&mut server, &mut source, &mut clients[..], now, 10_000);
    assert!(moved > 0);
    // Garbage, a server's message, and anything before OHAI.
    let garbage = Bytes::from_static(b"bad2");
    server.handle_message(&garbage, &Bytes::from_static(b"\xaa\xa3\x08\x00"), now);
    assert!(rtfm_to(&mut server, &mut source, &garbage));
    let impostor = Bytes::from_static(b"bad3");
    server.handle_message(&impostor, &frame(FilemqMessage::Ohai), now);
    server.handle_message(&impostor, &frame(FilemqMessage::OhaiOk), now);
    assert!(rtfm_to(&mut server, &mut source, &impostor));
    let early = Bytes::from_static(b"bad4");
    server.handle_message(
        &early,
        &frame(FilemqMessage::Nom {
            credit: 1,
            sequence: 0,
        }),
        now,
    );
    assert!(rtfm_to(&mut server, &mut source, &early));
    let mut dropped = Vec::new();
    while let Some(event) = server.poll_event() {
        if let ServerEvent::Dropped(id, Some(error)) = event {
            dropped.push((id, error));
        }
    }
    assert!(matches!(&dropped[0], (id, ProtocolError::CreditTooLarge(_)) if *id == bad));
    assert_eq!(dropped.len(), 4);
    assert_eq!(server.client_count(), 1);
    pump(&mut server, &mut source, &mut clients[..], now, 10_000);
    assert_eq!(clients[0].2.files["f"], data.to_vec());
}
