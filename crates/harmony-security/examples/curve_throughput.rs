//! Rough CURVE cost: handshakes per second and MESSAGE seal+open throughput, in memory.
//! Run with `cargo run --release -p harmony-security --example curve_throughput [SIZE...]`;
//! given sizes replace the default 64 B, 1 KiB and 64 KiB and skip the handshake figure.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use harmony_security::{Handshake, KeyPair, MechanismConfig};
use harmony_wire::zmtp::{Frame, FrameCodec, Greeting, Metadata};

/// Runs one full in-memory handshake and returns both ciphers.
fn handshake(
    client: &MechanismConfig,
    server: &MechanismConfig,
) -> (
    Box<dyn harmony_security::Cipher>,
    Box<dyn harmony_security::Cipher>,
) {
    let mut c = client.build();
    let mut s = server.build();
    let meta = Metadata::new().with("Socket-Type", "DEALER");
    let (mut to_s, mut to_c) = (Vec::new(), Vec::new());
    c.start(&Greeting::new(server.kind(), true), &meta, &mut to_s)
        .expect("client start");
    s.start(&Greeting::new(client.kind(), false), &meta, &mut to_c)
        .expect("server start");
    let (mut c_done, mut s_done) = (false, false);
    while !(c_done && s_done) {
        for f in std::mem::take(&mut to_s) {
            match s.receive(f, &mut to_c).expect("server step") {
                Handshake::Authenticate(_) => {
                    let step = s
                        .authenticated(harmony_security::AuthReply::allow(""), &mut to_c)
                        .expect("server auth");
                    s_done = matches!(step, Handshake::Done(_));
                }
                Handshake::Done(_) => s_done = true,
                Handshake::Continue => {}
            }
        }
        for f in std::mem::take(&mut to_c) {
            c_done |= matches!(
                c.receive(f, &mut to_s).expect("client step"),
                Handshake::Done(_)
            );
        }
    }
    (
        c.into_cipher().expect("cipher"),
        s.into_cipher().expect("cipher"),
    )
}

fn main() {
    let server_keys = KeyPair::generate();
    let client = MechanismConfig::CurveClient {
        keys: KeyPair::generate(),
        server_key: *server_keys.public(),
    };
    let server = MechanismConfig::CurveServer { keys: server_keys };

    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![64, 1024, 65536];
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_secs(1) {
            handshake(&client, &server);
            n += 1;
        }
        println!(
            "handshakes: {:.0}/s ({:.2} ms each)",
            f64::from(n) / start.elapsed().as_secs_f64(),
            start.elapsed().as_secs_f64() * 1e3 / f64::from(n)
        );
    }

    let (mut tx, mut rx) = handshake(&client, &server);
    let mut codec = FrameCodec::new(1 << 24);
    for size in sizes {
        let frame = Frame::message(vec![0x5A; size], false);
        let mut wire = BytesMut::new();
        let start = Instant::now();
        let mut count = 0u64;
        while start.elapsed() < Duration::from_millis(700) {
            for _ in 0..64 {
                tx.encrypt(&frame, &mut wire).expect("seal");
                let outer = codec
                    .decode_frame(&mut wire)
                    .expect("frame")
                    .expect("whole");
                let back = rx.decrypt(outer).expect("open");
                assert_eq!(back.body.len(), size);
                count += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{size:>6} B messages: {:>9.0} msg/s, {:>7.1} MB/s (seal + open, one core)",
            count as f64 / secs,
            count as f64 * size as f64 / secs / 1e6
        );
    }
}
