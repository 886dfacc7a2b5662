//! Replays every file of `fuzz/corpus/<target>/` through the check its fuzz target runs, so the
//! seeds and every crash the fuzzer ever found stay fixed on stable Rust without cargo-fuzz.
//!
//! `cargo xtask fuzz-seed` (the ignored test `write_seed_corpus`) regenerates the `seed-*` files.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use harmony_wire::filemq::{Cheezburger, FileOperation, FilemqMessage};
use harmony_wire::fuzzing;
use harmony_wire::pipeline::{Credit, PipelineMessage, ResultItem, Task, TaskItem, TaskResult};
use harmony_wire::timer::{NoteKind, Tick, TimerNote};
use harmony_wire::zgp::ZgpMessage;
use harmony_wire::zmtp::{Command, Frame, Greeting, Mechanism, Metadata, PlainHello, RawCommand};
use harmony_wire::zre::{Beacon, Hello, ZreBody, ZreMessage};
use harmony_wire::zrelog::{LogExtension, LogLevel, LogMessage};
use uuid::Uuid;

type Check = fn(&[u8]);

/// Every fuzz target and the check it runs; the names are the directories under `fuzz/corpus`.
const TARGETS: &[(&str, Check)] = &[
    ("zmtp_greeting", fuzzing::zmtp_greeting),
    ("zmtp_frames", fuzzing::zmtp_frames),
    ("zmtp_command", fuzzing::zmtp_command),
    ("zmtp_metadata", fuzzing::zmtp_metadata),
    ("zre_beacon", fuzzing::zre_beacon),
    ("zre_message", fuzzing::zre_message),
    ("filemq_message", fuzzing::filemq_message),
    ("pipeline_message", fuzzing::pipeline_message),
    ("zgp_message", fuzzing::zgp_message),
    ("zrelog_message", fuzzing::zrelog_message),
    ("timer_message", fuzzing::timer_message),
];

/// Fuzz targets of other crates, replayed by their own tests
/// (`crates/harmony-security/tests/fuzz_corpus.rs`, `crates/harmony-files/tests/fuzz_corpus.rs`).
const ELSEWHERE: &[&str] = &[
    "curve_server",
    "curve_client",
    "plain_server",
    "files_server",
    "files_client",
    "files_record",
];

/// Inputs longer than this are replayed whole only, not prefix by prefix.
const PREFIX_REPLAY_MAX: usize = 4096;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = corpus_root().join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_round_trips() {
    let mut replayed = 0;
    for (target, check) in TARGETS {
        let files = corpus_files(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target} has no inputs");
        for file in files {
            let data = fs::read(&file).expect("read corpus file");
            let outcome = std::panic::catch_unwind(|| {
                check(&data);
                // Every cut of a small input, too: truncation is the commonest malformation.
                if data.len() <= PREFIX_REPLAY_MAX {
                    for cut in 0..data.len() {
                        check(&data[..cut]);
                    }
                }
            });
            assert!(outcome.is_ok(), "{target}: {} fails", file.display());
            replayed += 1;
        }
    }
    assert!(replayed >= TARGETS.len());
}

#[test]
fn every_fuzz_target_has_a_check_and_a_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).expect("fuzz/fuzz_targets") {
        let path = entry.expect("fuzz target").path();
        let Some(name) = path.file_stem().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if ELSEWHERE.contains(&name.as_str()) {
            continue;
        }
        let source = fs::read_to_string(&path).expect("read fuzz target");
        assert!(
            source.contains(&format!("fuzzing::{name}(")),
            "fuzz/fuzz_targets/{name}.rs must call harmony_wire::fuzzing::{name}"
        );
        assert!(
            TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz target {name} is not replayed here: add it to TARGETS"
        );
        seen += 1;
    }
    assert_eq!(seen, TARGETS.len(), "every check has a fuzz target");
}

#[test]
fn every_corpus_directory_has_a_check() {
    for entry in fs::read_dir(corpus_root()).expect("fuzz/corpus") {
        let name = entry.expect("corpus entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.iter().any(|(t, _)| *t == name) || ELSEWHERE.contains(&&*name),
            "fuzz/corpus/{name} is not replayed by any check"
        );
    }
}

/// The seed inputs: a few small valid encodings per target.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();

    for (name, mechanism, as_server, minor) in [
        ("null-31", Mechanism::Null, false, 1),
        ("plain-server-30", Mechanism::Plain, true, 0),
        ("curve-31", Mechanism::Curve, false, 1),
        ("other-gssapi", Mechanism::Other("GSSAPI".into()), false, 1),
    ] {
        let mut g = Greeting::new(mechanism, as_server);
        g.minor = minor;
        let mut bytes = g.encode().expect("greeting").to_vec();
        if name == "curve-31" {
            bytes[1..9].copy_from_slice(&1u64.to_be_bytes()); // libzmq's padding
        }
        out.push(("zmtp_greeting", name, bytes));
    }

    let ready = Command::Ready(
        Metadata::new()
            .with("Socket-Type", "DEALER")
            .with("Identity", ""),
    );
    let commands = [
        ("ready", ready.clone()),
        (
            "ping",
            Command::Ping {
                ttl: 300,
                context: Bytes::from_static(b"ctx"),
            },
        ),
        (
            "pong",
            Command::Pong {
                context: Bytes::from_static(b"ctx"),
            },
        ),
        ("error", Command::Error(Bytes::from_static(b"denied"))),
        (
            "hello",
            Command::Hello(PlainHello {
                username: Bytes::from_static(b"admin"),
                password: Bytes::from_static(b"secret"),
            }),
        ),
        ("welcome", Command::Welcome),
        (
            "subscribe",
            Command::Subscribe(Bytes::from_static(b"topic")),
        ),
        ("cancel", Command::Cancel(Bytes::from_static(b"topic"))),
        (
            "initiate",
            Command::Initiate(Metadata::new().with("Socket-Type", "PUSH")),
        ),
        (
            "unknown",
            Command::Unknown(RawCommand::new("JOIN", &b"grp"[..])),
        ),
    ];
    for (name, command) in &commands {
        let frame = command.to_frame().expect("command");
        out.push(("zmtp_command", name, frame.body.to_vec()));
    }

    let mut stream = BytesMut::new();
    ready.encode_frame(&mut stream).expect("ready");
    Frame::message(&b""[..], true).encode(&mut stream);
    Frame::message(&b"hello"[..], false).encode(&mut stream);
    out.push(("zmtp_frames", "handshake-and-message", stream.to_vec()));
    let mut stream = BytesMut::new();
    Frame::message(vec![0x5A; 300], true).encode(&mut stream);
    Frame::message(&b"tail"[..], false).encode(&mut stream);
    out.push(("zmtp_frames", "long-frame", stream.to_vec()));
    // A short body in the 8-byte size form, which peers may send.
    out.push((
        "zmtp_frames",
        "long-form-small",
        vec![0x06, 0, 0, 0, 0, 0, 0, 0, 3, 2, b'h', b'i'],
    ));

    for (name, meta) in [
        ("dealer", Metadata::new().with("Socket-Type", "DEALER")),
        (
            "router-identity",
            Metadata::new()
                .with("Socket-Type", "ROUTER")
                .with("Identity", "\x01node")
                .with("X-Custom.1", "value"),
        ),
    ] {
        let mut buf = BytesMut::new();
        meta.encode(&mut buf).expect("metadata");
        out.push(("zmtp_metadata", name, buf.to_vec()));
    }

    for (name, beacon) in [
        (
            "v1",
            Beacon {
                uuid: Uuid::from_bytes([0x11; 16]),
                port: 49152,
                public_key: None,
            },
        ),
        (
            "v1-leaving",
            Beacon {
                uuid: Uuid::from_bytes([0x22; 16]),
                port: 0,
                public_key: None,
            },
        ),
        (
            "v3",
            Beacon {
                uuid: Uuid::from_bytes([0x33; 16]),
                port: 5670,
                public_key: Some([0x44; 32]),
            },
        ),
    ] {
        let mut buf = BytesMut::new();
        beacon.encode(&mut buf);
        out.push(("zre_beacon", name, buf.to_vec()));
    }

    let content = vec![Bytes::from_static(b"hello"), Bytes::from(vec![0x42u8; 300])];
    let zre = [
        (
            "hello",
            ZreBody::Hello(Hello {
                endpoint: "tcp://127.0.0.1:49152".into(),
                groups: vec!["CHAT".into(), "GLOBAL".into()],
                status: 2,
                name: "node-1".into(),
                headers: vec![("X-HELLO".into(), "World".into())],
            }),
        ),
        (
            "whisper",
            ZreBody::Whisper {
                content: content.clone(),
            },
        ),
        (
            "shout",
            ZreBody::Shout {
                group: "CHAT".into(),
                content: vec![Bytes::from_static(b"hi all")],
            },
        ),
        (
            "join",
            ZreBody::Join {
                group: "CHAT".into(),
                status: 3,
            },
        ),
        (
            "leave",
            ZreBody::Leave {
                group: "CHAT".into(),
                status: 4,
            },
        ),
        ("ping", ZreBody::Ping),
        ("ping-ok", ZreBody::PingOk),
        (
            "elect",
            ZreBody::Elect {
                group: "CHAT".into(),
                challenger_id: "0123456789ABCDEF0123456789ABCDEF".into(),
            },
        ),
        (
            "leader",
            ZreBody::Leader {
                group: "CHAT".into(),
                leader_id: "0123456789ABCDEF0123456789ABCDEF".into(),
            },
        ),
        ("goodbye", ZreBody::Goodbye),
        (
            "props",
            ZreBody::Props {
                request: 0,
                headers: vec![
                    ("X-HARMONY".into(), "elect,props".into()),
                    ("X-STATUS".into(), "busy".into()),
                ],
            },
        ),
        ("props-request", ZreBody::PropsRequest { request: 1 }),
    ];
    for (seq, (name, body)) in zre.into_iter().enumerate() {
        let frames = ZreMessage::new(seq as u16 + 1, body)
            .to_frames()
            .expect("ZRE message");
        out.push(("zre_message", name, join_frames(&frames)));
    }

    let filemq = [
        ("ohai", FilemqMessage::Ohai),
        ("ohai-ok", FilemqMessage::OhaiOk),
        (
            "icanhaz",
            FilemqMessage::Icanhaz {
                path: "/photos".into(),
                options: vec![("RESYNC".into(), "1".into())],
                cache: vec![(
                    "a.jpg".into(),
                    "da39a3ee5e6b4b0d3255bfef95601890afd80709".into(),
                )],
            },
        ),
        ("icanhaz-ok", FilemqMessage::IcanhazOk),
        (
            "nom",
            FilemqMessage::Nom {
                credit: 1 << 20,
                sequence: 7,
            },
        ),
        (
            "cheezburger",
            FilemqMessage::Cheezburger(Cheezburger {
                sequence: 3,
                operation: FileOperation::Create,
                filename: "/photos/a.jpg".into(),
                offset: 65536,
                eof: false,
                headers: vec![],
                chunk: Bytes::from(vec![0xA5u8; 200]),
            }),
        ),
        (
            "cheezburger-delete",
            FilemqMessage::Cheezburger(Cheezburger {
                sequence: 4,
                operation: FileOperation::Delete,
                filename: "/photos/b.jpg".into(),
                offset: 0,
                eof: true,
                headers: vec![("Mode".into(), "644".into())],
                chunk: Bytes::new(),
            }),
        ),
        ("hugz", FilemqMessage::Hugz),
        ("hugz-ok", FilemqMessage::HugzOk),
        ("kthxbai", FilemqMessage::Kthxbai),
        (
            "srsly",
            FilemqMessage::Srsly {
                reason: "no access".into(),
            },
        ),
        (
            "rtfm",
            FilemqMessage::Rtfm {
                reason: "bad command".into(),
            },
        ),
    ];
    for (name, msg) in filemq {
        out.push((
            "filemq_message",
            name,
            msg.to_bytes().expect("FILEMQ message").to_vec(),
        ));
    }

    let batch = Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001);
    let peer = Uuid::from_u128(7);
    let pipeline = [
        (
            "credit",
            PipelineMessage::Credit(Credit {
                window: 16,
                seen: 40,
                held: 3,
            }),
        ),
        (
            "task",
            PipelineMessage::Task(Task {
                seq: 40,
                batch,
                collector: peer,
                tasks: vec![
                    TaskItem {
                        task: 9,
                        payload: Bytes::from_static(b"echo me"),
                    },
                    TaskItem {
                        task: 10,
                        payload: Bytes::from_static(b"and me"),
                    },
                ],
            }),
        ),
        (
            "result",
            PipelineMessage::Result(TaskResult {
                client: peer,
                batch,
                results: vec![
                    ResultItem {
                        task: 9,
                        failed: false,
                        payload: Bytes::from_static(b"echo me"),
                    },
                    ResultItem {
                        task: 10,
                        failed: true,
                        payload: Bytes::from_static(b"exit 1"),
                    },
                ],
            }),
        ),
        ("start", PipelineMessage::Start { batch, size: 1000 }),
        ("end", PipelineMessage::End { batch, size: 1000 }),
        (
            "status",
            PipelineMessage::Status {
                batch,
                size: 1000,
                ranges: vec![(0, 100), (250, 1000)],
            },
        ),
        (
            "ack",
            PipelineMessage::Ack {
                batch,
                tasks: vec![3, 4, 99],
            },
        ),
    ];
    for (name, msg) in pipeline {
        out.push((
            "pipeline_message",
            name,
            msg.to_bytes().expect("pipeline message").to_vec(),
        ));
    }

    let zgp = [
        ("hello", ZgpMessage::Hello),
        (
            "publish",
            ZgpMessage::Publish {
                key: "0123456789ABCDEF0123456789ABCDEF".into(),
                value: "tcp://127.0.0.1:49152".into(),
                ttl: 30_000,
            },
        ),
        (
            "publish-curve",
            ZgpMessage::Publish {
                key: "0123456789ABCDEF0123456789ABCDEF".into(),
                value: "tcp://127.0.0.1:49152|rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7".into(),
                ttl: 0,
            },
        ),
        ("ping", ZgpMessage::Ping),
        ("pong", ZgpMessage::Pong),
        ("invalid", ZgpMessage::Invalid),
    ];
    for (name, msg) in zgp {
        out.push((
            "zgp_message",
            name,
            msg.to_bytes().expect("ZGP message").to_vec(),
        ));
    }
    let ext = LogExtension {
        name: "alice".into(),
        target: "harmony::chat".into(),
        span: "session".into(),
        fields: vec![("peer".into(), "bob".into())],
        sequence: 7,
        dropped: 2,
        message: String::new(),
    };
    let zrelog = [
        (
            "rfc20",
            LogMessage::new(LogLevel::Warning, 0x1234, 1_700_000_000_000, "hello", None),
        ),
        (
            "extended",
            LogMessage::new(LogLevel::Info, 1, 2, "joined", Some(ext.clone())),
        ),
        (
            "long",
            LogMessage::new(LogLevel::Trace, 1, 2, &"x".repeat(300), Some(ext)),
        ),
    ];
    for (name, msg) in zrelog {
        out.push((
            "zrelog_message",
            name,
            msg.to_bytes().expect("ZRE/LOG message").to_vec(),
        ));
    }
    let tick = Tick {
        rate: 10,
        number: 7,
        stamp_us: 1_700_000_000_700_000,
        series: 1_700_000_000_100_000,
    };
    out.push((
        "timer_message",
        "tick",
        join_frames(&[Bytes::from_static(b"TIME/10"), Bytes::from(tick.text())]),
    ));
    for (name, kind) in [("prepare", NoteKind::Prepare), ("commit", NoteKind::Commit)] {
        let note = TimerNote {
            kind,
            base: "TIME".into(),
            tick,
        };
        out.push(("timer_message", name, join_frames(&note.to_frames())));
    }

    out
}

/// The inverse of [`fuzzing::split_frames`]: a frame count byte, then each frame as a 2-byte
/// length and its bytes.
fn join_frames(frames: &[Bytes]) -> Vec<u8> {
    assert!((1..=8).contains(&frames.len()), "1-8 frames");
    let mut out = vec![frames.len() as u8 - 1];
    for frame in frames {
        let len = u16::try_from(frame.len()).expect("frame under 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(frame);
    }
    out
}

#[test]
fn join_frames_inverts_split_frames() {
    for (target, name, bytes) in seeds() {
        if target == "zre_message" {
            let frames = fuzzing::split_frames(&bytes);
            assert_eq!(join_frames(&frames), bytes, "{name}");
        }
    }
}

#[test]
fn seeds_are_committed() {
    for (target, name, _) in seeds() {
        let path = corpus_root().join(target).join(format!("seed-{name}"));
        assert!(
            path.is_file(),
            "{} is missing; run `cargo xtask fuzz-seed` and commit fuzz/corpus",
            path.display()
        );
    }
}

/// Writes the seed files; run by `cargo xtask fuzz-seed`.
#[test]
#[ignore = "writes fuzz/corpus; run by `cargo xtask fuzz-seed`"]
fn write_seed_corpus() {
    for (target, name, bytes) in seeds() {
        let dir = corpus_root().join(target);
        fs::create_dir_all(&dir).expect("create corpus directory");
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}
