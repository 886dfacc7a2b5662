//! Golden vectors: bytes that real pyre and pyzmq/libzmq peers put on the wire (captured with
//! `tests/capture/capture.sh`, see the first line of each file in `tests/data/`). Harmony must
//! decode them to the expected values and re-encode them byte for byte.

use bytes::{Bytes, BytesMut};
use harmony_wire::zmtp::{Command, Frame, FrameCodec, Greeting, Mechanism, Metadata, GREETING_LEN};
use harmony_wire::zre::{Beacon, Hello, ZreBody, ZreMessage, BEACON_V1_LEN};

const PYRE_ZRE: &str = include_str!("data/pyre-zre.txt");
const PYZMQ_ZMTP: &str = include_str!("data/pyzmq-zmtp.txt");

/// The record called `name` in a data file (`name hex` lines, `#` comments).
fn record(file: &str, name: &str) -> Vec<u8> {
    let hex = file
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no record {name}"));
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Cuts raw wire bytes into ZMTP frames; all of them must be used.
fn frames(raw: &[u8]) -> Vec<Frame> {
    let mut codec = FrameCodec::new(1 << 20);
    let mut buf = BytesMut::from(raw);
    let mut out = Vec::new();
    while let Some(frame) = codec.decode_frame(&mut buf).expect("valid frames") {
        out.push(frame);
    }
    assert!(buf.is_empty(), "{} bytes left after the frames", buf.len());
    out
}

/// Decodes a captured greeting and checks that Harmony's encoding matches it. rfc/23 calls
/// bytes 1-8 padding; libzmq puts its identity length + 1 in byte 8 there (a ZMTP 1.0 leftover)
/// and Harmony zeros, so only those bytes may differ.
fn check_greeting(raw: &[u8], identity_len: usize) -> Greeting {
    assert_eq!(raw.len(), GREETING_LEN);
    let greeting = Greeting::decode(raw).expect("greeting");
    assert_eq!((greeting.major, greeting.minor), (3, 1));
    assert_eq!(greeting.mechanism, Mechanism::Null);
    assert!(!greeting.as_server);
    let ours = greeting.encode().expect("encodable");
    assert_eq!(raw[..8], ours[..8]);
    assert_eq!(
        usize::from(raw[8]),
        identity_len + 1,
        "libzmq's padding byte"
    );
    assert_eq!(raw[9..], ours[9..]);
    greeting
}

/// Decodes a captured READY command frame, checks it re-encodes byte for byte, returns its
/// metadata.
fn check_ready(raw: &[u8]) -> Metadata {
    let [frame] = &frames(raw)[..] else {
        panic!("READY is one frame");
    };
    assert!(frame.command);
    let command = Command::decode(&frame.body, 1 << 16).expect("READY");
    let mut again = BytesMut::new();
    command.encode_frame(&mut again).expect("encodable");
    assert_eq!(&again[..], raw, "READY re-encodes byte for byte");
    match command {
        Command::Ready(meta) => meta,
        other => panic!("expected READY, got {other:?}"),
    }
}

/// Decodes a captured ZRE message (raw ZMTP frames) and checks it re-encodes byte for byte.
fn check_zre(raw: &[u8]) -> ZreMessage {
    let frames = frames(raw);
    let last = frames.len() - 1;
    for (i, frame) in frames.iter().enumerate() {
        assert!(!frame.command);
        assert_eq!(frame.more, i < last, "MORE on all frames but the last");
    }
    let bodies: Vec<Bytes> = frames.into_iter().map(|f| f.body).collect();
    let msg = ZreMessage::decode(&bodies, 1 << 16).expect("ZRE message");
    let out = msg.to_frames().expect("encodable");
    assert_eq!(out, bodies);
    assert_eq!(msg.encoded_len(), out[0].len());
    let mut wire = BytesMut::new();
    for (i, body) in out.iter().enumerate() {
        Frame::message(body.clone(), i < out.len() - 1).encode(&mut wire);
    }
    assert_eq!(&wire[..], raw, "ZRE message re-encodes byte for byte");
    msg
}

#[test]
fn pyre_beacon_handshake_and_messages() {
    let raw = record(PYRE_ZRE, "beacon");
    assert_eq!(raw.len(), BEACON_V1_LEN);
    let beacon = Beacon::decode(&raw).expect("beacon");
    assert_eq!(beacon.version(), 1);
    assert!(beacon.public_key.is_none());
    assert_ne!(beacon.port, 0);
    let (again, len) = beacon.to_bytes();
    assert_eq!(&again[..len], &raw[..]);

    // pyre's DEALER identity is 0x01 + its UUID (17 bytes), in READY's Identity property.
    check_greeting(&record(PYRE_ZRE, "greeting"), 17);
    let meta = check_ready(&record(PYRE_ZRE, "ready"));
    assert_eq!(
        &meta.get("Socket-Type").expect("Socket-Type")[..],
        b"DEALER"
    );
    let identity = meta.get("identity").expect("Identity");
    assert_eq!(identity[0], 0x01);
    assert_eq!(&identity[1..], beacon.uuid.as_bytes());

    let hello = check_zre(&record(PYRE_ZRE, "hello"));
    assert_eq!(
        hello,
        ZreMessage::new(
            1,
            ZreBody::Hello(Hello {
                endpoint: format!("tcp://10.77.0.1:{}", beacon.port),
                groups: vec!["GOLDEN".into()],
                status: 1,
                name: "pyreA".into(),
                headers: vec![
                    ("X-HELLO".into(), "world".into()),
                    ("X-Golden".into(), "1".into())
                ],
            })
        )
    );

    let join = check_zre(&record(PYRE_ZRE, "join"));
    assert_eq!(
        join,
        ZreMessage::new(
            2,
            ZreBody::Join {
                group: "LATER".into(),
                status: 2
            }
        )
    );

    let shout = check_zre(&record(PYRE_ZRE, "shout"));
    assert_eq!(
        shout,
        ZreMessage::new(
            3,
            ZreBody::Shout {
                group: "GOLDEN".into(),
                content: vec![Bytes::from_static(b"golden"), Bytes::from_static(b"shout")],
            }
        )
    );

    let whisper = check_zre(&record(PYRE_ZRE, "whisper"));
    assert_eq!(
        whisper,
        ZreMessage::new(
            4,
            ZreBody::Whisper {
                content: vec![Bytes::from_static(b"golden whisper")],
            }
        )
    );
}

#[test]
fn pyzmq_dealer_and_router_handshakes() {
    for (prefix, socket_type) in [("dealer", "DEALER"), ("router", "ROUTER")] {
        // No routing id set: an empty Identity, so libzmq's padding byte 8 is 1.
        check_greeting(&record(PYZMQ_ZMTP, &format!("{prefix}-greeting")), 0);
        let meta = check_ready(&record(PYZMQ_ZMTP, &format!("{prefix}-ready")));
        let props: Vec<(&str, &[u8])> = meta.iter().map(|(n, v)| (n, &v[..])).collect();
        assert_eq!(
            props,
            vec![
                ("Socket-Type", socket_type.as_bytes()),
                ("Identity", &b""[..])
            ]
        );
    }
}
