//! Replays `fuzz/corpus/{curve_server,curve_client,plain_server}` through the checks their fuzz
//! targets run; the ignored test `write_seed_corpus` writes the seeds (real handshakes).

use std::fs;
use std::path::{Path, PathBuf};

use harmony_security::fuzzing;
use harmony_security::{Handshake, KeyPair, MechanismConfig};
use harmony_wire::zmtp::{Frame, Greeting, Mechanism as Name, Metadata};

type Check = fn(&[u8]);

/// The security fuzz targets (the wire ones are replayed by harmony-wire's own test).
const TARGETS: &[(&str, Check)] = &[
    ("curve_server", fuzzing::curve_server),
    ("curve_client", fuzzing::curve_client),
    ("plain_server", fuzzing::plain_server),
];

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_file_is_handled_without_panic() {
    for (target, check) in TARGETS {
        let dir = corpus(target);
        let files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        for file in files {
            let data = fs::read(&file).unwrap();
            check(&data);
            for cut in (0..data.len()).step_by(31) {
                check(&data[..cut]);
            }
        }
        let source = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../../fuzz/fuzz_targets/{target}.rs")),
        )
        .unwrap_or_else(|e| panic!("fuzz target {target}: {e}"));
        assert!(source.contains(&format!("harmony_security::fuzzing::{target}(")));
    }
}

/// The frames each side of a real handshake sends, in `split_frames` layout.
fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut out = vec![(frames.len().max(1) - 1) as u8];
    for f in frames {
        out.extend_from_slice(&(f.body.len() as u16).to_be_bytes());
        out.extend_from_slice(&f.body);
    }
    out
}

/// Runs a handshake in memory and returns (client -> server frames, server -> client frames).
fn handshake(
    client: MechanismConfig,
    server: MechanismConfig,
    mech: Name,
) -> (Vec<Frame>, Vec<Frame>) {
    let (mut c, mut s) = (client.build(), server.build());
    let meta = Metadata::new().with("Socket-Type", "DEALER");
    let (mut to_s, mut to_c) = (Vec::new(), Vec::new());
    let (mut all_to_s, mut all_to_c) = (Vec::new(), Vec::new());
    c.start(&Greeting::new(mech.clone(), true), &meta, &mut to_s)
        .unwrap();
    s.start(&Greeting::new(mech, false), &meta, &mut to_c)
        .unwrap();
    for _ in 0..10 {
        for f in std::mem::take(&mut to_s) {
            all_to_s.push(f.clone());
            if let Handshake::Authenticate(_) = s.receive(f, &mut to_c).unwrap() {
                s.authenticated(harmony_security::AuthReply::allow("seed"), &mut to_c)
                    .unwrap();
            }
        }
        for f in std::mem::take(&mut to_c) {
            all_to_c.push(f.clone());
            c.receive(f, &mut to_s).unwrap();
        }
    }
    (all_to_s, all_to_c)
}

#[test]
#[ignore = "writes fuzz/corpus seeds; run with --ignored after changing the handshakes"]
fn write_seed_corpus() {
    let (server, client) = (KeyPair::from_secret([1; 32]), KeyPair::from_secret([2; 32]));
    let (to_s, to_c) = handshake(
        MechanismConfig::CurveClient {
            keys: client,
            server_key: *server.public(),
        },
        MechanismConfig::CurveServer { keys: server },
        Name::Curve,
    );
    let (plain_to_s, _) = handshake(
        MechanismConfig::PlainClient {
            username: "admin".into(),
            password: "secret".into(),
        },
        MechanismConfig::PlainServer,
        Name::Plain,
    );
    for (target, frames) in [
        ("curve_server", &to_s),
        ("curve_client", &to_c),
        ("plain_server", &plain_to_s),
    ] {
        let dir = corpus(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("seed-handshake"), encode(frames)).unwrap();
        fs::write(dir.join("seed-first"), encode(&frames[..1])).unwrap();
    }
}
