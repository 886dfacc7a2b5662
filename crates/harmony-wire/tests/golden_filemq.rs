//! Golden vectors: every FILEMQ message the zeromq/filemq C server and client exchanged in
//! `shared/data/captures/filemq-c-session.jsonl`, cut out by `tests/capture/filemq_extract.py`
//! into `tests/data/filemq-c.txt`. Each must decode to what the scenario says and re-encode byte
//! for byte.

use harmony_wire::filemq::{Cheezburger, FileOperation, FilemqMessage};

#[path = "support/filemq_capture.rs"]
mod filemq_capture;

use filemq_capture::frames;

fn decoded(direction: &str) -> Vec<FilemqMessage> {
    frames()
        .into_iter()
        .filter(|(dir, _)| dir == direction)
        .map(|(_, frame)| {
            let msg = FilemqMessage::decode(&frame, 2 << 20).expect("captured frame decodes");
            assert_eq!(msg.to_bytes().expect("encodes"), frame, "{}", msg.name());
            assert_eq!(msg.encoded_len(), frame.len());
            msg
        })
        .collect()
}

fn chunk(msg: &FilemqMessage) -> &Cheezburger {
    match msg {
        FilemqMessage::Cheezburger(c) => c,
        other => panic!("expected CHEEZBURGER, got {}", other.name()),
    }
}

#[test]
fn client_messages_of_filemq_c() {
    let msgs = decoded("c2s");
    let names: Vec<&str> = msgs.iter().map(FilemqMessage::name).collect();
    assert_eq!(
        names,
        ["OHAI", "ICANHAZ", "NOM", "HUGZ", "NOM", "NOM", "HUGZ", "HUGZ", "HUGZ", "HUGZ"]
    );
    assert_eq!(
        msgs[1],
        FilemqMessage::Icanhaz {
            path: "/".into(),
            options: vec![],
            cache: vec![],
        }
    );
    // First credit 5 000 000, then 1 000 000 slices; the C client's NOM carries the sequence
    // of the last CHEEZBURGER it received (its message object is reused).
    assert_eq!(
        msgs[2],
        FilemqMessage::Nom {
            credit: 5_000_000,
            sequence: 0
        }
    );
    assert_eq!(
        msgs[4],
        FilemqMessage::Nom {
            credit: 1_000_000,
            sequence: 4
        }
    );
}

#[test]
fn server_messages_of_filemq_c() {
    let msgs = decoded("s2c");
    assert_eq!(msgs[0], FilemqMessage::OhaiOk);
    assert_eq!(msgs[1], FilemqMessage::IcanhazOk);
    let hello = chunk(&msgs[2]);
    assert_eq!(
        (
            hello.sequence,
            hello.filename.as_str(),
            hello.offset,
            hello.eof
        ),
        (0, "/hello.txt", 0, false)
    );
    assert_eq!(&hello.chunk[..], b"hello, world\n");
    // End of file: an empty chunk at offset = size, eof set.
    let eof = chunk(&msgs[3]);
    assert_eq!((eof.offset, eof.eof, eof.chunk.len()), (13, true, 0));
    // big.bin in 1 000 000-byte chunks, sequence counting every CHEEZBURGER.
    let big: Vec<(u64, u64, usize, bool)> = msgs[6..10]
        .iter()
        .map(|m| {
            let c = chunk(m);
            (c.sequence, c.offset, c.chunk.len(), c.eof)
        })
        .collect();
    assert_eq!(
        big,
        [
            (4, 0, 1_000_000, false),
            (5, 1_000_000, 1_000_000, false),
            (6, 2_000_000, 500_000, false),
            (7, 2_500_000, 0, true)
        ]
    );
    assert_eq!(msgs[10], FilemqMessage::HugzOk);
    // The delete carries a stale offset (the server reuses its message object), no chunk.
    let delete = chunk(&msgs[11]);
    assert_eq!(delete.operation, FileOperation::Delete);
    assert_eq!(
        (delete.filename.as_str(), delete.offset, delete.eof),
        ("/hello.txt", 2_500_000, false)
    );
    assert!(delete.chunk.is_empty() && delete.headers.is_empty());
    let late = chunk(&msgs[18]);
    assert_eq!(
        (late.filename.as_str(), &late.chunk[..]),
        ("/late.txt", &b"late file\n"[..])
    );
}
