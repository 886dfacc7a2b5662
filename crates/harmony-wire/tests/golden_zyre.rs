//! Golden vectors from real Zyre 2.0 (czmq zgossip + ZRE, DRAFT API): three nodes meeting
//! through a gossip hub, contesting `GLOBAL`'s leadership, then leaving
//! (`tests/data/zyre-c-gossip-election.jsonl`, a copy of the capture described in
//! `/work/shared/data/captures/README.md`). Every ZGP and ZRE message in it must decode and
//! re-encode byte for byte.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use harmony_wire::zgp::ZgpMessage;
use harmony_wire::zmtp::{FrameCodec, GREETING_LEN};
use harmony_wire::zre::{ZreBody, ZreMessage};

const CAPTURE: &str = include_str!("data/zyre-c-gossip-election.jsonl");
/// The hub's gossip port: connections to or from it carry ZGP, the others ZRE.
const GOSSIP_PORT: &str = ":7100";

/// The string value of `"field": "..."` in one JSON line of the capture.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line
        .find(&format!("\"{name}\": \""))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 5;
    let len = line[start..].find('"').expect("closing quote");
    &line[start..start + len]
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Each direction of each TCP connection, its bytes in capture order.
fn streams() -> BTreeMap<(String, String), Vec<u8>> {
    let mut out: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    for line in CAPTURE.lines().filter(|l| !l.trim().is_empty()) {
        let key = (field(line, "src").to_owned(), field(line, "dst").to_owned());
        out.entry(key)
            .or_default()
            .extend(unhex(field(line, "hex")));
    }
    out
}

/// The messages of one stream after its greeting (command frames such as READY skipped):
/// each a list of frames.
fn messages(stream: &[u8]) -> Vec<Vec<Bytes>> {
    assert!(
        stream.len() >= GREETING_LEN,
        "stream shorter than a greeting"
    );
    let mut codec = FrameCodec::new(1 << 20);
    let mut buf = BytesMut::from(&stream[GREETING_LEN..]);
    let (mut out, mut current) = (Vec::new(), Vec::new());
    while let Some(frame) = codec.decode_frame(&mut buf).expect("valid frames") {
        if frame.command {
            continue;
        }
        current.push(frame.body);
        if !frame.more {
            out.push(std::mem::take(&mut current));
        }
    }
    assert!(buf.is_empty(), "{} bytes left after the frames", buf.len());
    assert!(current.is_empty(), "a message cut off");
    out
}

#[test]
fn zyre_gossip_and_election_round_trip_byte_for_byte() {
    let mut zgp_seen = BTreeMap::<&str, usize>::new();
    let mut zre_seen = BTreeMap::<&str, usize>::new();
    let mut tuples = Vec::new();
    for ((src, dst), stream) in streams() {
        let gossip = src.ends_with(GOSSIP_PORT) || dst.ends_with(GOSSIP_PORT);
        for frames in messages(&stream) {
            if gossip {
                let [frame] = &frames[..] else {
                    panic!("ZGP messages are one frame: {frames:?}");
                };
                let msg = ZgpMessage::decode(frame, 1 << 16).expect("ZGP message decodes");
                assert_eq!(&msg.to_bytes().expect("encodable"), frame, "{msg:?}");
                *zgp_seen.entry(msg.name()).or_default() += 1;
                if let ZgpMessage::Publish { key, value, ttl } = msg {
                    assert_eq!(ttl, 0, "czmq sends ttl 0");
                    tuples.push((key, value));
                }
            } else {
                let msg = ZreMessage::decode(&frames, 1 << 20).expect("ZRE message decodes");
                let again = msg.to_frames().expect("encodable");
                assert_eq!(again[0], frames[0], "{msg:?} first frame");
                assert_eq!(again.len(), frames.len(), "{msg:?} frame count");
                if let ZreBody::Elect {
                    challenger_id: id, ..
                }
                | ZreBody::Leader { leader_id: id, .. } = &msg.body
                {
                    assert_eq!(id.len(), 32, "UUID strings are 32 hex digits");
                }
                *zre_seen.entry(msg.body.name()).or_default() += 1;
            }
        }
    }
    for name in ["HELLO", "PUBLISH"] {
        assert!(zgp_seen.contains_key(name), "no ZGP {name} in {zgp_seen:?}");
    }
    for name in ["HELLO", "ELECT", "LEADER", "GOODBYE", "WHISPER", "SHOUT"] {
        assert!(zre_seen.contains_key(name), "no ZRE {name} in {zre_seen:?}");
    }
    // The tuples are Zyre's: key = UUID string, value = inbox endpoint.
    assert!(tuples
        .iter()
        .any(|(k, v)| k.len() == 32 && v == "tcp://10.251.122.1:7101"));
}
