//! CURVE handshakes and traffic in memory, including hostile peers.

use bytes::{Bytes, BytesMut};
use harmony_wire::zmtp::{self, Command, Frame, FrameCodec, Greeting, Metadata};

use super::*;
use crate::mechanism::{AuthReply, AuthRequest, Cipher, Credentials, Handshake, Mechanism};
use crate::testing::{meta, run, run_dealer_router};
use crate::SecurityError;

fn allow_all(_: &AuthRequest) -> AuthReply {
    AuthReply::allow("someone")
}

fn server_greeting() -> Greeting {
    Greeting::new(zmtp::Mechanism::Curve, true)
}

fn client_greeting() -> Greeting {
    Greeting::new(zmtp::Mechanism::Curve, false)
}

struct Keys {
    client: KeyPair,
    server: KeyPair,
}

fn keys() -> Keys {
    Keys {
        client: KeyPair::generate(),
        server: KeyPair::generate(),
    }
}

/// A finished handshake's two ciphers (client, server).
fn connected(k: &Keys) -> (Box<dyn Cipher>, Box<dyn Cipher>) {
    let mut client = Box::new(CurveClient::new(k.client.clone(), *k.server.public()));
    let mut server = Box::new(CurveServer::new(k.server.clone()));
    let r = run_dealer_router(&mut *client, &mut *server, &allow_all);
    assert!(matches!(r.client, Some(Ok(_))));
    assert!(matches!(r.server, Some(Ok(_))));
    (
        client.into_cipher().expect("CURVE has a cipher"),
        server.into_cipher().expect("CURVE has a cipher"),
    )
}

/// Encrypts one frame and cuts the wire bytes back into the outer frame.
fn wire(cipher: &mut dyn Cipher, frame: &Frame) -> (Bytes, Frame) {
    let mut buf = BytesMut::new();
    cipher.encrypt(frame, &mut buf).unwrap();
    let bytes = buf.clone().freeze();
    let outer = FrameCodec::new(1 << 20)
        .decode_frame(&mut buf)
        .unwrap()
        .expect("a whole frame");
    assert!(buf.is_empty());
    (bytes, outer)
}

/// Client and server up to the point where the server has sent WELCOME.
struct Welcomed {
    client: CurveClient,
    server: CurveServer,
    hello: Frame,
    welcome: Frame,
}

fn welcomed(k: &Keys) -> Welcomed {
    let mut client = CurveClient::new(k.client.clone(), *k.server.public());
    let mut server = CurveServer::new(k.server.clone());
    let mut out = Vec::new();
    client
        .start(&server_greeting(), &meta("DEALER"), &mut out)
        .unwrap();
    server
        .start(&client_greeting(), &meta("ROUTER"), &mut Vec::new())
        .unwrap();
    let hello = out.pop().unwrap();
    assert_eq!(
        server.receive(hello.clone(), &mut out).unwrap(),
        Handshake::Continue
    );
    let welcome = out.pop().unwrap();
    Welcomed {
        client,
        server,
        hello,
        welcome,
    }
}

#[test]
fn full_handshake_with_libzmq_sizes_and_metadata() {
    let k = keys();
    let mut client = CurveClient::new(k.client.clone(), *k.server.public());
    let mut server = CurveServer::new(k.server.clone());
    let client_meta = meta("DEALER").with("Identity", "");
    let r = run(
        &mut client,
        &mut server,
        &client_meta,
        &meta("ROUTER"),
        &allow_all,
    );

    let server_view = r.server.unwrap().unwrap();
    assert_eq!(server_view.get("Socket-Type").unwrap(), "DEALER");
    assert_eq!(server_view.get("Identity").unwrap(), "");
    assert_eq!(server_view.get(crate::USER_ID).unwrap(), "someone");
    let client_view = r.client.unwrap().unwrap();
    assert_eq!(client_view, meta("ROUTER"));

    assert_eq!(
        r.requests,
        vec![AuthRequest {
            mechanism: zmtp::Mechanism::Curve,
            credentials: Credentials::Curve {
                public_key: *k.client.public()
            },
        }]
    );

    let [hello, initiate] = &r.client_sent[..] else {
        panic!("client sent {} frames", r.client_sent.len())
    };
    let [welcome, ready] = &r.server_sent[..] else {
        panic!("server sent {} frames", r.server_sent.len())
    };
    for f in [hello, initiate, welcome, ready] {
        assert!(f.command && !f.more);
    }
    assert_eq!(hello.body.len(), HELLO_LEN);
    assert_eq!(&hello.body[..8], b"\x05HELLO\x01\x00");
    assert!(hello.body[8..80].iter().all(|&b| b == 0), "72 zero bytes");
    assert_eq!(&hello.body[112..120], &1u64.to_be_bytes(), "HELLO nonce 1");
    assert_eq!(welcome.body.len(), WELCOME_LEN);
    assert_eq!(&welcome.body[..8], b"\x07WELCOME");
    // C + vouch + "Socket-Type"/"DEALER" + "Identity"/"" in the box.
    let meta_len = client_meta.encoded_len();
    assert_eq!(initiate.body.len(), INITIATE_MIN_LEN + meta_len);
    assert_eq!(&initiate.body[..9], b"\x08INITIATE");
    assert_eq!(
        &initiate.body[105..113],
        &2u64.to_be_bytes(),
        "INITIATE nonce 2"
    );
    assert_eq!(
        ready.body.len(),
        READY_MIN_LEN + meta("ROUTER").encoded_len()
    );
    assert_eq!(&ready.body[..14], b"\x05READY\0\0\0\0\0\0\0\x01");

    // INITIATE is longer than 255 bytes: on the wire it takes a long command frame.
    let mut buf = BytesMut::new();
    initiate.encode(&mut buf);
    assert_eq!(buf[0], 0x06);
}

#[test]
fn traffic_both_ways_with_more_and_command_flags() {
    let (mut client, mut server) = connected(&keys());
    let frames = [
        Frame::message(&b"first"[..], true),
        Frame::message(Bytes::new(), true),
        Frame::message(vec![0xAB; 1000], false),
        Command::Ping {
            ttl: 10,
            context: Bytes::from_static(b"ctx"),
        }
        .to_frame()
        .unwrap(),
    ];
    for (n, frame) in frames.iter().enumerate() {
        let (bytes, outer) = wire(&mut *client, frame);
        assert!(!outer.command && !outer.more, "outer flags 0 like libzmq");
        assert!(bytes[0] == 0x00 || bytes[0] == 0x02);
        assert!(outer.body.len() >= MESSAGE_MIN_LEN);
        assert_eq!(outer.body.len(), client.overhead() + frame.body.len());
        assert_eq!(client.overhead(), MESSAGE_MIN_LEN);
        assert_eq!(&outer.body[..8], b"\x07MESSAGE");
        assert_eq!(
            &outer.body[8..16],
            &(3 + n as u64).to_be_bytes(),
            "client MESSAGE nonces from 3"
        );
        assert_eq!(&server.decrypt(outer).unwrap(), frame);

        let (_, outer) = wire(&mut *server, frame);
        assert_eq!(
            &outer.body[8..16],
            &(2 + n as u64).to_be_bytes(),
            "server MESSAGE nonces from 2"
        );
        // A MESSAGE inside a COMMAND-flagged outer frame is accepted too.
        let outer = Frame::command(outer.body);
        assert_eq!(&client.decrypt(outer).unwrap(), frame);
    }
}

/// A MESSAGE body that nobody else holds opens in place; a shared one is copied first and the
/// other holder's bytes stay as they were.
#[test]
fn shared_and_unshared_message_bodies_open_alike() {
    let (mut client, mut server) = connected(&keys());
    for size in [0, 1, 223, 224, 225, 5000] {
        let frame = Frame::message(vec![0x3C; size], size % 2 == 0);
        let (_, alone) = wire(&mut *client, &frame);
        assert!(alone.body.is_unique());
        assert_eq!(server.decrypt(alone).unwrap(), frame);

        let (_, shared) = wire(&mut *client, &frame);
        let held = shared.clone();
        let before = held.body.to_vec();
        assert_eq!(server.decrypt(shared).unwrap(), frame);
        assert_eq!(
            held.body.to_vec(),
            before,
            "the other holder's bytes changed"
        );
    }
}

#[test]
fn forged_replayed_reordered_truncated_messages_are_refused() {
    let (mut client, mut server) = connected(&keys());
    let (_, m1) = wire(&mut *client, &Frame::message(&b"one"[..], false));
    let (_, m2) = wire(&mut *client, &Frame::message(&b"two"[..], false));

    // Tampered ciphertext, tampered MAC, tampered nonce: refused, and the nonce not consumed.
    for at in [m1.body.len() - 1, 16, 15] {
        let mut bad = m1.body.to_vec();
        bad[at] ^= 0x01;
        assert!(matches!(
            server.decrypt(Frame::message(bad, false)),
            Err(SecurityError::Crypto(_))
        ));
    }
    // Truncated: one byte short, and shorter than the smallest MESSAGE.
    let short = m1.body.slice(..m1.body.len() - 1);
    assert!(server.decrypt(Frame::message(short, false)).is_err());
    let tiny = m1.body.slice(..MESSAGE_MIN_LEN - 1);
    assert!(server.decrypt(Frame::message(tiny, false)).is_err());

    assert_eq!(server.decrypt(m1.clone()).unwrap().body, "one");
    // Replayed.
    assert!(server.decrypt(m1.clone()).is_err());
    // Reordered: m3 then m2.
    let (_, m3) = wire(&mut *client, &Frame::message(&b"three"[..], false));
    assert_eq!(server.decrypt(m3).unwrap().body, "three");
    assert!(server.decrypt(m2).is_err());

    // A client MESSAGE reflected back to the client: wrong nonce prefix, refused.
    let (_, m4) = wire(&mut *client, &Frame::message(&b"four"[..], false));
    assert!(client.decrypt(m4.clone()).is_err());
    assert_eq!(server.decrypt(m4).unwrap().body, "four");
}

#[test]
fn plaintext_and_garbage_after_the_handshake_are_refused() {
    let (mut client, mut server) = connected(&keys());
    let ping = Command::Ping {
        ttl: 0,
        context: Bytes::new(),
    }
    .to_frame()
    .unwrap();
    let mut garbage = b"\x07MESSAGE".to_vec();
    garbage.extend_from_slice(&[0xEE; 40]);
    for frame in [
        Frame::message(&b"hello in clear"[..], false),
        Frame::message(Bytes::new(), false),
        ping,
        Frame::message(garbage, false),
    ] {
        assert!(server.decrypt(frame.clone()).is_err());
        assert!(client.decrypt(frame).is_err());
    }
    // Still working afterwards.
    let (_, m) = wire(&mut *client, &Frame::message(&b"ok"[..], false));
    assert_eq!(server.decrypt(m).unwrap().body, "ok");
}

#[test]
fn hello_of_the_wrong_size_or_version_is_refused() {
    let k = keys();
    let w = welcomed(&k);
    let mut variants = Vec::new();
    let mut long = w.hello.body.to_vec();
    long.push(0);
    variants.push(long);
    variants.push(w.hello.body[..HELLO_LEN - 1].to_vec());
    let mut version = w.hello.body.to_vec();
    version[6] = 2;
    variants.push(version);
    let mut forged = w.hello.body.to_vec();
    forged[150] ^= 0x80;
    variants.push(forged);
    for body in variants {
        let mut server = CurveServer::new(k.server.clone());
        server
            .start(&client_greeting(), &Metadata::new(), &mut Vec::new())
            .unwrap();
        let mut out = Vec::new();
        assert!(server.receive(Frame::command(body), &mut out).is_err());
        assert!(out.is_empty(), "nothing answered to a bad HELLO");
    }
}

#[test]
fn wrong_server_key_fails_at_hello() {
    let k = keys();
    let impostor = KeyPair::generate();
    let mut client = CurveClient::new(k.client.clone(), *impostor.public());
    let mut server = CurveServer::new(k.server.clone());
    let r = run_dealer_router(&mut client, &mut server, &allow_all);
    assert!(matches!(r.server, Some(Err(SecurityError::Crypto(_)))));
    assert!(
        r.client.is_none(),
        "client still waiting: the server just closes"
    );
    assert!(r.server_sent.is_empty());
    assert!(r.requests.is_empty());
}

#[test]
fn initiate_with_a_bad_cookie_is_refused() {
    let k = keys();
    // Flipped bit in the cookie nonce, in the cookie box.
    for at in [9 + 3, 9 + 40] {
        let mut w = welcomed(&k);
        let mut out = Vec::new();
        w.client.receive(w.welcome.clone(), &mut out).unwrap();
        let mut initiate = out.pop().unwrap().body.to_vec();
        initiate[at] ^= 0x01;
        assert!(matches!(
            w.server.receive(Frame::command(initiate), &mut out),
            Err(SecurityError::Crypto(_))
        ));
    }
    // A cookie from another connection of the same server.
    let mut a = welcomed(&k);
    let b = welcomed(&k);
    let mut out = Vec::new();
    let mut b_client = b.client;
    b_client.receive(b.welcome, &mut out).unwrap();
    let initiate_b = out.pop().unwrap();
    assert!(a.server.receive(initiate_b, &mut out).is_err());
    // INITIATE that is too short.
    let mut c = welcomed(&k);
    let body = Bytes::from(vec![0u8; INITIATE_MIN_LEN - 1]);
    let mut short = b"\x08INITIATE".to_vec();
    short.extend_from_slice(&body[9..]);
    assert!(c.server.receive(Frame::command(short), &mut out).is_err());
}

/// Builds the INITIATE a client would send after `welcome`, with a chosen vouch.
fn initiate_with_vouch(
    w: &mut Welcomed,
    k: &Keys,
    vouch_signer: &KeyPair,
    vouched_server: &[u8; 32],
    nonce: Option<u64>,
) -> Frame {
    let client::State::ExpectWelcome { transient } =
        std::mem::replace(&mut w.client.state, client::State::Failed)
    else {
        panic!("client not waiting for WELCOME");
    };
    let body = &w.welcome.body;
    let plaintext = open(
        &salsa_box(k.server.public(), &transient).unwrap(),
        &long_nonce(prefix::WELCOME, &body[8..24]),
        &body[24..],
        "welcome",
    )
    .unwrap();
    let mut s_transient = [0u8; 32];
    s_transient.copy_from_slice(&plaintext[..32]);
    let key = salsa_box(&s_transient, &transient).unwrap();
    let tail = [9u8; 16];
    let mut vouched = transient.public().to_vec();
    vouched.extend_from_slice(vouched_server);
    let vouch_box = seal(
        &salsa_box(&s_transient, vouch_signer).unwrap(),
        &long_nonce(prefix::VOUCH, &tail),
        &vouched,
    )
    .unwrap();
    if let Some(n) = nonce {
        w.client.next_nonce = n;
    }
    w.client
        .initiate(&key, &plaintext[32..128], &tail, &vouch_box)
        .unwrap()
}

#[test]
fn initiate_with_a_bad_vouch_is_refused() {
    let k = keys();
    // Sanity: the hand-built INITIATE with a proper vouch passes.
    let mut w = welcomed(&k);
    let good = initiate_with_vouch(&mut w, &k, &k.client, k.server.public(), None);
    assert!(matches!(
        w.server.receive(good, &mut Vec::new()),
        Ok(Handshake::Authenticate(_))
    ));
    // Vouch signed by a key other than the C it claims.
    let mut w = welcomed(&k);
    let thief = KeyPair::generate();
    let forged = initiate_with_vouch(&mut w, &k, &thief, k.server.public(), None);
    assert!(matches!(
        w.server.receive(forged, &mut Vec::new()),
        Err(SecurityError::Crypto(_))
    ));
    // Vouch naming another server.
    let mut w = welcomed(&k);
    let other = KeyPair::generate();
    let misdirected = initiate_with_vouch(&mut w, &k, &k.client, other.public(), None);
    assert!(w.server.receive(misdirected, &mut Vec::new()).is_err());
    // INITIATE whose nonce does not follow HELLO's.
    let mut w = welcomed(&k);
    let stale = initiate_with_vouch(&mut w, &k, &k.client, k.server.public(), Some(1));
    assert!(w.server.receive(stale, &mut Vec::new()).is_err());
}

#[test]
fn unknown_client_key_gets_error_400() {
    let k = keys();
    let mut client = CurveClient::new(k.client.clone(), *k.server.public());
    let mut server = CurveServer::new(k.server.clone());
    let auth = crate::StandardAuthenticator::new().curve_allow_key([1; 32]);
    let peer = std::net::IpAddr::from([127, 0, 0, 1]);
    let r = run_dealer_router(&mut client, &mut server, &|req| auth.check(peer, req));
    assert_eq!(r.server.unwrap(), Err(SecurityError::Refused("400".into())));
    assert_eq!(
        r.client.unwrap(),
        Err(SecurityError::PeerError("400".into()))
    );
    let error = r.server_sent.last().unwrap();
    assert_eq!(&error.body[..], b"\x05ERROR\x03400", "ERROR in clear");
}

#[test]
fn statuses_300_and_500() {
    let k = keys();
    let mut client = CurveClient::new(k.client.clone(), *k.server.public());
    let mut server = CurveServer::new(k.server.clone());
    let r = run_dealer_router(&mut client, &mut server, &|_| AuthReply::temporary());
    assert_eq!(r.server.unwrap(), Err(SecurityError::RefusedTemporarily));
    assert_eq!(r.server_sent.len(), 1, "only WELCOME, no ERROR");
    assert!(r.client.is_none());

    for status in ["500", "999"] {
        let mut client = CurveClient::new(k.client.clone(), *k.server.public());
        let mut server = CurveServer::new(k.server.clone());
        let r = run_dealer_router(&mut client, &mut server, &|_| AuthReply {
            status: status.into(),
            ..AuthReply::deny()
        });
        assert_eq!(r.server.unwrap(), Err(SecurityError::Refused("500".into())));
        assert_eq!(
            r.client.unwrap(),
            Err(SecurityError::PeerError("500".into()))
        );
    }
}

#[test]
fn unfinished_handshakes_yield_a_cipher_that_refuses_everything() {
    let k = keys();
    let w = welcomed(&k);
    for mech in [
        Box::new(w.client) as Box<dyn Mechanism>,
        Box::new(w.server) as Box<dyn Mechanism>,
    ] {
        let mut cipher = mech
            .into_cipher()
            .expect("CURVE never passes frames in clear");
        assert!(cipher
            .encrypt(&Frame::message(&b"x"[..], false), &mut BytesMut::new())
            .is_err());
        assert!(cipher.decrypt(Frame::message(&b"x"[..], false)).is_err());
    }
}

#[test]
fn wrong_greetings_and_out_of_order_commands_are_refused() {
    let k = keys();
    let mut client = CurveClient::new(k.client.clone(), *k.server.public());
    assert!(matches!(
        client.start(
            &Greeting::new(zmtp::Mechanism::Null, false),
            &Metadata::new(),
            &mut Vec::new()
        ),
        Err(SecurityError::Incompatible(_))
    ));
    // libzmq servers send as-server 0: the flag is not held against them.
    let mut client = CurveClient::new(k.client.clone(), *k.server.public());
    assert!(client
        .start(&client_greeting(), &Metadata::new(), &mut Vec::new())
        .is_ok());
    let mut server = CurveServer::new(k.server.clone());
    assert!(matches!(
        server.start(
            &Greeting::new(zmtp::Mechanism::Plain, false),
            &Metadata::new(),
            &mut Vec::new()
        ),
        Err(SecurityError::Incompatible(_))
    ));
    // A server that gets INITIATE, or a message frame, before HELLO.
    let w = welcomed(&k);
    let mut server = CurveServer::new(k.server.clone());
    server
        .start(&client_greeting(), &Metadata::new(), &mut Vec::new())
        .unwrap();
    assert!(server.receive(w.welcome.clone(), &mut Vec::new()).is_err());
    let mut server = CurveServer::new(k.server.clone());
    server
        .start(&client_greeting(), &Metadata::new(), &mut Vec::new())
        .unwrap();
    assert!(server
        .receive(Frame::message(w.hello.body.clone(), false), &mut Vec::new())
        .is_err());
    // A client that gets a WELCOME not meant for it.
    let mut other = welcomed(&k).client;
    assert!(matches!(
        other.receive(w.welcome, &mut Vec::new()),
        Err(SecurityError::Crypto(_))
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Any frame survives the round trip; any single bit flip or truncation of the MESSAGE
        /// is refused without consuming the nonce.
        #[test]
        fn messages_round_trip_and_resist_tampering(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            kind in 0u8..3,
            flip in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let (mut client, mut server) = connected(&keys());
            let frame = match kind {
                0 => Frame::message(body, false),
                1 => Frame::message(body, true),
                _ => Frame::command(body),
            };
            let (_, wire_frame) = wire(&mut *client, &frame);
            let mut flipped = wire_frame.body.to_vec();
            let at = flip.index(flipped.len());
            flipped[at] ^= 1 << (at % 8);
            prop_assert!(server.decrypt(Frame::message(flipped, false)).is_err());
            let short = wire_frame.body.slice(..cut.index(wire_frame.body.len()));
            prop_assert!(server.decrypt(Frame::message(short, false)).is_err());
            prop_assert_eq!(server.decrypt(wire_frame).unwrap(), frame);
        }

        /// Garbage at any handshake step is an error, never a panic.
        #[test]
        fn garbage_during_the_handshake_is_refused(
            body in proptest::collection::vec(any::<u8>(), 0..400),
            name in prop::sample::select(vec!["HELLO", "WELCOME", "INITIATE", "READY", "ERROR"]),
        ) {
            let mut cmd = vec![name.len() as u8];
            cmd.extend_from_slice(name.as_bytes());
            cmd.extend_from_slice(&body);
            let k = keys();
            let mut w = welcomed(&k);
            prop_assert!(w.client.receive(Frame::command(cmd.clone()), &mut Vec::new()).is_err());
            prop_assert!(w.server.receive(Frame::command(cmd.clone()), &mut Vec::new()).is_err());
            let mut server = CurveServer::new(k.server.clone());
            server.start(&client_greeting(), &Metadata::new(), &mut Vec::new()).unwrap();
            prop_assert!(server.receive(Frame::command(cmd), &mut Vec::new()).is_err());
        }
    }
}
