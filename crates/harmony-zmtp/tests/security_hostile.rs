//! Hostile CURVE clients against a Harmony CURVE ROUTER, on raw loopback TCP: each bad
//! connection is closed and delivers nothing, while a good DEALER on the same socket keeps
//! working. Plus a wire capture showing that CURVE traffic carries no plaintext (and, as a
//! control, that NULL traffic does).
//!
//! The raw client finishes real handshakes with harmony-security's sans-IO `CurveClient` and
//! crafts bad frames by hand; the INITIATE vouch cases use a hand-written CurveZMQ client
//! (crypto_box), whose good path is checked too so the refusals are for the right reason.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use crypto_box::aead::Aead;
use crypto_box::{Nonce, PublicKey, SalsaBox, SecretKey};
use harmony_security::{AuthReply, Cipher, Handshake, KeyPair, MechanismConfig, SecurityError};
use harmony_wire::zmtp::{Frame, Mechanism, Metadata};
use harmony_zmtp::{DealerSocket, Endpoint, Message, RouterSocket, SocketOptions};
use support::{curve_client, curve_server, Raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Bound of every test.
const T: Duration = Duration::from_secs(20);
/// How long "nothing is delivered" is watched once the bad connection is seen closed.
const QUIET: Duration = Duration::from_millis(300);

fn opts() -> SocketOptions {
    support::opts().handshake_timeout(Duration::from_secs(2))
}

/// A CURVE ROUTER letting in `good` (the DEALER) and `raw` (the hand-driven client), with a
/// connected, working DEALER.
struct Server {
    keys: KeyPair,
    raw: KeyPair,
    router: RouterSocket,
    ep: Endpoint,
    dealer: DealerSocket,
    round: u32,
}

impl Server {
    async fn start() -> Self {
        Self::start_with(opts()).await
    }

    /// With these options for the ROUTER (mechanism and authenticator are set here).
    async fn start_with(router_opts: SocketOptions) -> Self {
        let keys = KeyPair::generate();
        let good = KeyPair::generate();
        let raw = KeyPair::generate();
        let router = RouterSocket::new(curve_server(router_opts, &keys, &[&good, &raw]));
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let dealer = DealerSocket::new(
            opts()
                .identity(&b"good"[..])
                .mechanism(curve_client(&good, &keys)),
        );
        dealer.connect(&ep.to_string()).unwrap();
        let mut server = Self {
            keys,
            raw,
            router,
            ep,
            dealer,
            round: 0,
        };
        server.serves().await;
        server
    }

    /// The good DEALER still gets a two-frame message through and back; the first thing the
    /// ROUTER receives is that message (so nothing from a bad connection came before it).
    async fn serves(&mut self) {
        self.round += 1;
        let m = Message::from_frames([
            Bytes::from(format!("good {}", self.round)),
            Bytes::from(vec![b'g'; 3000]),
        ]);
        self.dealer.send(m.clone()).await.unwrap();
        let got = self.router.recv().await.unwrap();
        assert_eq!(got[0], "good", "a message from elsewhere: {got:?}");
        assert_eq!(&got.frames()[1..], m.frames());
        self.router.send(got).await.unwrap();
        assert_eq!(self.dealer.recv().await.unwrap(), m);
    }

    /// The bad connection `raw` is closed, delivers nothing, and the socket still serves.
    async fn drops(&mut self, raw: Raw) {
        raw.closed().await;
        self.delivers_nothing().await;
        self.serves().await;
    }

    /// Nothing reaches the application for a short while.
    async fn delivers_nothing(&self) {
        if let Ok(m) = timeout(QUIET, self.router.recv()).await {
            panic!("delivered from a bad connection: {m:?}");
        }
    }

    fn curve_client(&self) -> MechanismConfig {
        curve_client(&self.raw, &self.keys)
    }
}

fn dealer_meta() -> Metadata {
    Metadata::new()
        .with("Socket-Type", "DEALER")
        .with("Identity", "")
}

/// A sans-IO client of `config`'s mechanism, started as a DEALER on a raw connection to the
/// server that has exchanged greetings.
struct Client {
    raw: Raw,
    mech: Box<dyn harmony_security::Mechanism>,
    /// What `start` queued (HELLO for CURVE), not sent yet.
    out: Vec<Frame>,
    /// What `start` returned.
    step: Result<Handshake, SecurityError>,
}

impl Client {
    async fn start(server: &Server, config: &MechanismConfig) -> Self {
        let mut raw = Raw::connect(&server.ep).await;
        let peer = raw.greet(config.kind()).await;
        let mut mech = config.build();
        let mut out = Vec::new();
        let step = mech.start(&peer, &dealer_meta(), &mut out);
        Self {
            raw,
            mech,
            out,
            step,
        }
    }

    /// The raw client's CURVE client, started.
    async fn curve(server: &Server) -> Self {
        Self::start(server, &server.curve_client()).await
    }

    /// Sends what is queued and carries the handshake on to its end: the server's metadata,
    /// or the error the client ended with (`None`: the server closed without an ERROR).
    async fn finish(&mut self) -> Result<Metadata, Option<SecurityError>> {
        loop {
            self.raw.send(&std::mem::take(&mut self.out)).await;
            let step = std::mem::replace(&mut self.step, Ok(Handshake::Continue));
            match step {
                Ok(Handshake::Continue) => match self.raw.frame().await {
                    Some(frame) => self.step = self.mech.receive(frame, &mut self.out),
                    None => return Err(None),
                },
                Ok(Handshake::Authenticate(_)) => panic!("a client is not asked to authenticate"),
                Ok(Handshake::Done(meta)) => return Ok(meta),
                Err(e) => return Err(Some(e)),
            }
        }
    }
}

/// A real CURVE handshake with the sans-IO client; returns the connection and its cipher.
async fn handshaken(server: &Server) -> (Raw, Box<dyn Cipher>) {
    let mut client = Client::curve(server).await;
    let meta = client.finish().await.expect("the handshake failed");
    assert_eq!(meta.get("Socket-Type").unwrap(), "ROUTER");
    let cipher = client.mech.into_cipher().expect("CURVE has a cipher");
    (client.raw, cipher)
}

/// The wire bytes of one encrypted frame.
fn sealed(cipher: &mut dyn Cipher, body: &[u8], more: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    cipher
        .encrypt(
            &Frame::message(Bytes::copy_from_slice(body), more),
            &mut out,
        )
        .unwrap();
    out.to_vec()
}

/// A wire frame's header length (1 flags byte + 1 or 8 size bytes).
fn header_len(wire: &[u8]) -> usize {
    if wire[0] & 0x02 != 0 {
        9
    } else {
        2
    }
}

#[tokio::test]
async fn handshaken_raw_client_is_heard() {
    // Control for the cases below: the raw client's valid MESSAGEs are delivered.
    timeout(T, async {
        let mut server = Server::start().await;
        let (mut raw, mut cipher) = handshaken(&server).await;
        let mut wire = sealed(&mut *cipher, b"raw one", true);
        wire.extend(sealed(&mut *cipher, b"raw two", false));
        raw.write(&wire).await;
        let got = server.router.recv().await.unwrap();
        assert_eq!(&got.frames()[1..], [&b"raw one"[..], b"raw two"]);
        server.serves().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tampered_ciphertext_is_closed() {
    timeout(T, async {
        let mut server = Server::start().await;
        // One flipped bit in the nonce, the MAC, the first and the last ciphertext byte.
        for place in ["nonce", "mac", "flags", "last"] {
            let (mut raw, mut cipher) = handshaken(&server).await;
            let mut wire = sealed(&mut *cipher, b"tampered with", false);
            let body = header_len(&wire);
            let at = match place {
                "nonce" => body + 8 + 7,
                "mac" => body + 16 + 3,
                "flags" => body + 32,
                _ => wire.len() - 1,
            };
            wire[at] ^= 0x01;
            raw.write(&wire).await;
            server.drops(raw).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tampered_last_frame_drops_the_whole_message() {
    timeout(T, async {
        let mut server = Server::start().await;
        let (mut raw, mut cipher) = handshaken(&server).await;
        let mut wire = sealed(&mut *cipher, b"part one", true);
        wire.extend(sealed(&mut *cipher, b"part two", true));
        let mut last = sealed(&mut *cipher, b"part three", false);
        let end = last.len() - 1;
        last[end] ^= 0x01;
        wire.extend(last);
        raw.write(&wire).await;
        server.drops(raw).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn replay_inside_a_multipart_message_drops_it() {
    timeout(T, async {
        let mut server = Server::start().await;
        let (mut raw, mut cipher) = handshaken(&server).await;
        let first = sealed(&mut *cipher, b"head", true);
        let mut wire = first.clone();
        wire.extend(first);
        wire.extend(sealed(&mut *cipher, b"tail", false));
        raw.write(&wire).await;
        server.drops(raw).await;
    })
    .await
    .unwrap();
}

const MAX: usize = 64 << 10;

#[tokio::test]
async fn curve_message_of_exactly_max_msg_size_is_delivered() {
    timeout(T, async {
        let mut server = Server::start_with(opts().max_msg_size(MAX)).await;
        let (mut raw, mut cipher) = handshaken(&server).await;
        raw.write(&sealed(&mut *cipher, &vec![b'm'; MAX], false))
            .await;
        let got = timeout(Duration::from_secs(5), server.router.recv())
            .await
            .expect("a message of exactly max_msg_size was not delivered")
            .unwrap();
        assert_eq!(got[1].len(), MAX);
        server.serves().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn curve_message_over_max_msg_size_is_closed() {
    timeout(T, async {
        let mut server = Server::start_with(opts().max_msg_size(MAX)).await;
        // Below the limit by more than the CURVE overhead: delivered.
        let (mut raw, mut cipher) = handshaken(&server).await;
        raw.write(&sealed(&mut *cipher, &vec![b'm'; MAX - 33], false))
            .await;
        assert_eq!(server.router.recv().await.unwrap()[1].len(), MAX - 33);
        // One frame over the limit.
        raw.write(&sealed(&mut *cipher, &vec![b'o'; MAX + 1], false))
            .await;
        raw.closed().await;
        server.delivers_nothing().await;
        // Frames within the limit that add up to more than it.
        let (mut raw, mut cipher) = handshaken(&server).await;
        let mut wire = Vec::new();
        for _ in 0..3 {
            wire.extend(sealed(&mut *cipher, &vec![b'p'; MAX / 2], true));
        }
        wire.extend(sealed(&mut *cipher, &b"end"[..], false));
        raw.write(&wire).await;
        server.drops(raw).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn valid_message_before_a_bad_frame_in_the_same_read_is_delivered() {
    timeout(T, async {
        let mut server = Server::start().await;
        let (mut raw, mut cipher) = handshaken(&server).await;
        let good = sealed(&mut *cipher, b"sent before the replay", false);
        raw.write(&[good.clone(), good].concat()).await;
        raw.closed().await;
        let m = timeout(Duration::from_secs(5), server.router.recv())
            .await
            .expect("the valid message was dropped with the connection")
            .unwrap();
        assert_eq!(m[1], "sent before the replay");
        server.delivers_nothing().await;
        server.serves().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn replayed_message_is_closed() {
    timeout(T, async {
        let mut server = Server::start().await;
        let (mut raw, mut cipher) = handshaken(&server).await;
        let wire = sealed(&mut *cipher, b"only once", false);
        raw.write(&wire).await;
        assert_eq!(server.router.recv().await.unwrap()[1], "only once");
        raw.write(&wire).await;
        server.drops(raw).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn nonce_going_backwards_is_closed() {
    timeout(T, async {
        let mut server = Server::start().await;
        let (mut raw, mut cipher) = handshaken(&server).await;
        let first = sealed(&mut *cipher, b"first sealed", false);
        let second = sealed(&mut *cipher, b"second sealed", false);
        // A gap forward is fine; going back is not, even with an unused nonce.
        raw.write(&second).await;
        assert_eq!(server.router.recv().await.unwrap()[1], "second sealed");
        raw.write(&first).await;
        server.drops(raw).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn plaintext_after_curve_handshake_is_closed() {
    timeout(T, async {
        let mut server = Server::start().await;
        for command in [false, true] {
            let (mut raw, _cipher) = handshaken(&server).await;
            let frame = if command {
                Frame::command(&b"\x07MESSAGE too short"[..])
            } else {
                Frame::message(&b"in clear"[..], false)
            };
            raw.send(&[frame]).await;
            server.drops(raw).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn hello_of_the_wrong_size_is_closed() {
    timeout(T, async {
        let mut server = Server::start().await;
        for delta in [-1i32, 1, -100] {
            bad_hello(&server, |b| b.resize((b.len() as i32 + delta) as usize, 0)).await;
            server.delivers_nothing().await;
            server.serves().await;
        }
    })
    .await
    .unwrap();
}

/// The client's HELLO, changed by `tamper`, then the server must close.
async fn bad_hello(server: &Server, tamper: impl FnOnce(&mut Vec<u8>)) {
    let mut client = Client::curve(server).await;
    assert_eq!(client.step, Ok(Handshake::Continue));
    let mut body = client.out.pop().expect("HELLO").body.to_vec();
    assert!(body.starts_with(b"\x05HELLO"));
    tamper(&mut body);
    client.raw.send(&[Frame::command(body)]).await;
    client.raw.closed().await;
}

#[tokio::test]
async fn hello_with_a_bad_version_signature_or_name_is_closed() {
    timeout(T, async {
        let mut server = Server::start().await;
        // HELLO = "\x05HELLO" (6) | version (2) | padding (72) | C' (32) | nonce (8) | box (80)
        bad_hello(&server, |b| b[6] = 2).await;
        bad_hello(&server, |b| b[200 - 1] ^= 1).await;
        bad_hello(&server, |b| b[112 + 5] ^= 1).await; // the nonce the box was sealed with
        bad_hello(&server, |b| b[120 + 5] ^= 1).await; // the MAC
        bad_hello(&server, |b| b[90] ^= 1).await; // C': the box does not open with it
        bad_hello(&server, |b| b[1] = b'J').await; // "\x05JELLO"
        server.delivers_nothing().await;
        server.serves().await;
    })
    .await
    .unwrap();
}

/// The client's INITIATE, changed by `tamper`, then the server must close.
async fn bad_initiate(server: &Server, tamper: impl FnOnce(&mut Vec<u8>)) {
    let Client {
        mut raw,
        mut mech,
        mut out,
        step,
    } = Client::curve(server).await;
    assert_eq!(step, Ok(Handshake::Continue));
    raw.send(&std::mem::take(&mut out)).await;
    let welcome = raw.frame().await.expect("WELCOME");
    assert_eq!(
        mech.receive(welcome, &mut out).unwrap(),
        Handshake::Continue
    );
    let mut body = out.pop().expect("INITIATE").body.to_vec();
    assert!(body.starts_with(b"\x08INITIATE"));
    tamper(&mut body);
    raw.send(&[Frame::command(body)]).await;
    raw.closed().await;
}

#[tokio::test]
async fn initiate_with_a_bad_box_is_closed() {
    timeout(T, async {
        let mut server = Server::start().await;
        // INITIATE = name (9) | cookie (96) | nonce (8) | Box[C + vouch + metadata]
        bad_initiate(&server, |b| *b.last_mut().unwrap() ^= 1).await;
        bad_initiate(&server, |b| b[9 + 96 + 7] ^= 1).await;
        bad_initiate(&server, |b| b[9 + 96 + 8 + 3] ^= 1).await;
        bad_initiate(&server, |b| b.truncate(256)).await;
        server.delivers_nothing().await;
        server.serves().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn initiate_with_a_bad_cookie_is_closed() {
    timeout(T, async {
        let mut server = Server::start().await;
        // INITIATE = "\x08INITIATE" (9) | cookie: nonce tail (16), box (80) | ...
        for at in [9 + 3, 9 + 16 + 5, 9 + 95] {
            bad_initiate(&server, |b| b[at] ^= 0x80).await;
            server.delivers_nothing().await;
            server.serves().await;
        }
    })
    .await
    .unwrap();
}

/// Runs a client handshake the server must refuse; returns the error the client ends with
/// (`None`: the server closed without an ERROR command). The connection is then closed.
async fn refused_handshake(server: &Server, config: MechanismConfig) -> Option<SecurityError> {
    let mut client = Client::start(server, &config).await;
    let error = match client.finish().await {
        Ok(meta) => panic!("a refused client got through: {meta:?}"),
        Err(error) => error,
    };
    client.raw.closed().await;
    error
}

fn stranger(server: &Server) -> MechanismConfig {
    MechanismConfig::CurveClient {
        keys: KeyPair::generate(),
        server_key: *server.keys.public(),
    }
}

#[tokio::test]
async fn unknown_client_key_is_closed() {
    timeout(T, async {
        let mut server = Server::start().await;
        let error = refused_handshake(&server, stranger(&server)).await;
        assert!(
            matches!(error, None | Some(SecurityError::PeerError(_))),
            "{error:?}"
        );
        server.delivers_nothing().await;
        server.serves().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unknown_client_key_gets_error_400() {
    timeout(T, async {
        let mut server = Server::start().await;
        let error = refused_handshake(&server, stranger(&server)).await;
        assert_eq!(error, Some(SecurityError::PeerError("400".into())));
        server.serves().await;
    })
    .await
    .unwrap();
}

// --- A hostile CURVE server against a Harmony CURVE DEALER ---

/// A raw CURVE server (harmony-security's sans-IO `CurveServer`) and a Harmony DEALER, its
/// client, connected to it.
struct HostileServer {
    keys: KeyPair,
    listener: TcpListener,
    dealer: DealerSocket,
}

/// Where a raw server's handshake is tampered with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Spoil {
    Nothing,
    /// A flipped bit in WELCOME's box.
    Welcome,
    /// A flipped bit in READY's box.
    Ready,
}

impl HostileServer {
    async fn start() -> Self {
        let keys = KeyPair::generate();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ep = format!("tcp://{}", listener.local_addr().unwrap());
        let dealer = DealerSocket::new(opts().mechanism(MechanismConfig::CurveClient {
            keys: KeyPair::generate(),
            server_key: *keys.public(),
        }));
        dealer.connect(&ep).unwrap();
        Self {
            keys,
            listener,
            dealer,
        }
    }

    /// Accepts the DEALER's next connection and runs the server side of the handshake,
    /// spoiling it as asked; returns the cipher when the handshake was not spoiled.
    async fn accept(&self, spoil: Spoil) -> (Raw, Option<Box<dyn Cipher>>) {
        let (stream, _) = timeout(T, self.listener.accept())
            .await
            .expect("the DEALER did not (re)connect")
            .unwrap();
        let mut raw = Raw::from(stream);
        let peer = raw.greet_as(Mechanism::Curve, true).await;
        let config = MechanismConfig::CurveServer {
            keys: self.keys.clone(),
        };
        let mut mech = config.build();
        let meta = Metadata::new().with("Socket-Type", "ROUTER");
        let mut out = Vec::new();
        let mut step = mech.start(&peer, &meta, &mut out).unwrap();
        loop {
            if let Some(last) = out.last_mut() {
                let spoilt = (spoil == Spoil::Welcome && last.body.starts_with(b"\x07WELCOME"))
                    || (spoil == Spoil::Ready && last.body.starts_with(b"\x05READY"));
                if spoilt {
                    let mut body = last.body.to_vec();
                    *body.last_mut().unwrap() ^= 1;
                    *last = Frame::command(body);
                    raw.send(&std::mem::take(&mut out)).await;
                    return (raw, None);
                }
            }
            raw.send(&std::mem::take(&mut out)).await;
            step = match step {
                Handshake::Continue => {
                    let frame = raw.frame().await.expect("the DEALER closed the handshake");
                    mech.receive(frame, &mut out).unwrap()
                }
                Handshake::Authenticate(_) => {
                    mech.authenticated(AuthReply::allow(""), &mut out).unwrap()
                }
                Handshake::Done(_) => {
                    raw.send(&std::mem::take(&mut out)).await;
                    return (raw, mech.into_cipher());
                }
            };
        }
    }

    /// Nothing reaches the DEALER's application for a short while.
    async fn delivers_nothing(&self) {
        if let Ok(m) = timeout(QUIET, self.dealer.recv()).await {
            panic!("the DEALER took a message from a bad connection: {m:?}");
        }
    }

    /// The DEALER reconnects, and a good handshake and message get through.
    async fn recovers(&self) {
        let (mut raw, cipher) = self.accept(Spoil::Nothing).await;
        let mut cipher = cipher.expect("a cipher");
        let mut wire = sealed(&mut *cipher, b"honest", true);
        wire.extend(sealed(&mut *cipher, b"server", false));
        raw.write(&wire).await;
        let m = self.dealer.recv().await.unwrap();
        assert_eq!(m.frames(), [&b"honest"[..], b"server"]);
    }
}

#[tokio::test]
async fn client_drops_a_server_with_a_bad_welcome_or_ready() {
    timeout(T, async {
        let server = HostileServer::start().await;
        for spoil in [Spoil::Welcome, Spoil::Ready] {
            let (raw, _) = server.accept(spoil).await;
            raw.closed().await;
            server.delivers_nothing().await;
        }
        server.recovers().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn client_drops_tampered_replayed_and_backward_messages() {
    timeout(T, async {
        let server = HostileServer::start().await;
        for case in ["tampered", "replayed", "backwards", "clear"] {
            let (mut raw, cipher) = server.accept(Spoil::Nothing).await;
            let mut cipher = cipher.expect("a cipher");
            let first = sealed(&mut *cipher, b"first", false);
            let second = sealed(&mut *cipher, b"second", false);
            let wire = match case {
                "tampered" => {
                    let mut w = first;
                    let end = w.len() - 1;
                    w[end] ^= 1;
                    w
                }
                "replayed" => {
                    raw.write(&first).await;
                    assert_eq!(server.dealer.recv().await.unwrap()[0], "first");
                    first
                }
                "backwards" => {
                    raw.write(&second).await;
                    assert_eq!(server.dealer.recv().await.unwrap()[0], "second");
                    first
                }
                _ => {
                    let mut w = BytesMut::new();
                    Frame::message(&b"in clear"[..], false).encode(&mut w);
                    w.to_vec()
                }
            };
            raw.write(&wire).await;
            raw.closed().await;
            server.delivers_nothing().await;
        }
        server.recovers().await;
    })
    .await
    .unwrap();
}

// --- A CurveZMQ client written out by hand, for INITIATEs with a bad vouch ---

fn short_nonce(prefix: &[u8; 16], n: u64) -> Nonce {
    let mut nonce = [0u8; 24];
    nonce[..16].copy_from_slice(prefix);
    nonce[16..].copy_from_slice(&n.to_be_bytes());
    nonce.into()
}

fn long_nonce(prefix: &[u8; 8], tail: &[u8]) -> Nonce {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(prefix);
    nonce[8..].copy_from_slice(tail);
    nonce.into()
}

fn salsa(their_public: &[u8; 32], ours: &KeyPair) -> SalsaBox {
    SalsaBox::new(
        &PublicKey::from(*their_public),
        &SecretKey::from(*ours.secret()),
    )
}

/// How the vouch inside INITIATE is made.
#[derive(Debug, Clone, Copy)]
enum Vouch {
    /// Correctly: Box[C' + S](C -> S').
    Good,
    /// Sealed with another long-term key than the C that INITIATE names.
    WrongSigner,
    /// Naming another transient key than the connection's C'.
    OtherTransient,
    /// Naming another server than S.
    OtherServer,
    /// Random bytes.
    Garbage,
}

/// Runs the handshake by hand up to INITIATE; returns the server's answer to INITIATE
/// (`None`: it closed without one) and the connection.
async fn hand_made_initiate(server: &Server, vouch: Vouch) -> (Option<Frame>, Raw) {
    let c = &server.raw;
    let s = *server.keys.public();
    let c_t = KeyPair::generate();
    let mut raw = Raw::connect(&server.ep).await;
    raw.greet(Mechanism::Curve).await;

    let mut hello = BytesMut::new();
    hello.put_slice(b"\x05HELLO\x01\x00");
    hello.put_bytes(0, 72);
    hello.put_slice(c_t.public());
    hello.put_u64(1);
    let signature = salsa(&s, &c_t)
        .encrypt(&short_nonce(b"CurveZMQHELLO---", 1), &[0u8; 64][..])
        .unwrap();
    hello.put_slice(&signature);
    assert_eq!(hello.len(), 200);
    raw.send(&[Frame::command(hello.freeze())]).await;

    let welcome = raw.frame().await.expect("WELCOME");
    assert!(welcome.command && welcome.body.starts_with(b"\x07WELCOME"));
    assert_eq!(welcome.body.len(), 168);
    let opened = salsa(&s, &c_t)
        .decrypt(
            &long_nonce(b"WELCOME-", &welcome.body[8..24]),
            &welcome.body[24..],
        )
        .expect("WELCOME opens");
    let s_t: [u8; 32] = opened[..32].try_into().unwrap();
    let cookie = &opened[32..128];

    let signer = match vouch {
        Vouch::WrongSigner => KeyPair::generate(),
        _ => c.clone(),
    };
    let named_transient = match vouch {
        Vouch::OtherTransient => *KeyPair::generate().public(),
        _ => *c_t.public(),
    };
    let named_server = match vouch {
        Vouch::OtherServer => *KeyPair::generate().public(),
        _ => s,
    };
    let vouch_tail = [0x5Au8; 16];
    let vouch_box = match vouch {
        Vouch::Garbage => vec![0xA5u8; 80],
        _ => salsa(&s_t, &signer)
            .encrypt(
                &long_nonce(b"VOUCH---", &vouch_tail),
                &[named_transient, named_server].concat()[..],
            )
            .unwrap(),
    };
    assert_eq!(vouch_box.len(), 80);
    let mut plain = BytesMut::new();
    plain.put_slice(c.public());
    plain.put_slice(&vouch_tail);
    plain.put_slice(&vouch_box);
    dealer_meta().encode(&mut plain).unwrap();
    let initiate_box = salsa(&s_t, &c_t)
        .encrypt(&short_nonce(b"CurveZMQINITIATE", 2), &plain[..])
        .unwrap();
    let mut initiate = BytesMut::new();
    initiate.put_slice(b"\x08INITIATE");
    initiate.put_slice(cookie);
    initiate.put_u64(2);
    initiate.put_slice(&initiate_box);
    raw.send(&[Frame::command(initiate.freeze())]).await;
    (raw.frame().await, raw)
}

#[tokio::test]
async fn initiate_with_a_bad_vouch_is_closed() {
    timeout(T, async {
        let mut server = Server::start().await;
        // Control: the hand-made client is right, so the refusals below are about the vouch.
        let (answer, _raw) = hand_made_initiate(&server, Vouch::Good).await;
        let ready = answer.expect("READY for a good vouch");
        assert!(
            ready.command && ready.body.starts_with(b"\x05READY"),
            "{ready:?}"
        );
        for vouch in [
            Vouch::WrongSigner,
            Vouch::OtherTransient,
            Vouch::OtherServer,
            Vouch::Garbage,
        ] {
            let (answer, raw) = hand_made_initiate(&server, vouch).await;
            if let Some(f) = answer {
                assert!(
                    f.command && !f.body.starts_with(b"\x05READY"),
                    "{vouch:?}: answered {f:?}"
                );
            }
            server.drops(raw).await;
        }
    })
    .await
    .unwrap();
}

// --- What a wire capture shows ---

/// A TCP relay that forwards to `target` and records every byte, both directions.
async fn recording_relay(target: Endpoint) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let record = Arc::new(Mutex::new(Vec::new()));
    let rec = record.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(target.addr()).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pump(ri, wo, rec.clone()));
            tokio::spawn(pump(ro, wi, rec.clone()));
        }
    });
    (format!("tcp://{addr}"), record)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    record: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        record.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A distinctive, non-repeating multi-frame plaintext of several KiB.
fn secret_message() -> Message {
    let frame = |tag: &str, lines: u32| {
        let mut text = String::new();
        for i in 0..lines {
            text.push_str(&format!(
                "harmony-plaintext {tag} line {i:04}: attack at dawn, the key is under the mat.\n"
            ));
        }
        Bytes::from(text)
    };
    Message::from_frames([frame("alpha", 40), frame("beta", 30), frame("gamma", 20)])
}

/// How many 16-byte windows of `plain` occur anywhere in `capture`.
fn windows_seen(capture: &[u8], plain: &Message) -> usize {
    let seen: HashSet<&[u8]> = capture.windows(16).collect();
    plain
        .iter()
        .flat_map(|f| f.windows(16))
        .filter(|w| seen.contains(w))
        .count()
}

/// Sends the secret DEALER -> relay -> ROUTER and back; returns the capture.
async fn capture(server: MechanismConfig, client: MechanismConfig) -> Vec<u8> {
    let router = RouterSocket::new(opts().mechanism(server));
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    let (relay, record) = recording_relay(ep).await;
    let dealer = DealerSocket::new(opts().mechanism(client));
    dealer.connect(&relay).unwrap();
    let m = secret_message();
    dealer.send(m.clone()).await.unwrap();
    let got = router.recv().await.unwrap();
    assert_eq!(&got.frames()[1..], m.frames());
    router.send(got).await.unwrap();
    assert_eq!(dealer.recv().await.unwrap(), m);
    let bytes = record.lock().unwrap().clone();
    // Both directions went through the relay.
    assert!(
        bytes.len() > 2 * m.byte_len(),
        "captured {} bytes",
        bytes.len()
    );
    bytes
}

#[tokio::test]
async fn curve_capture_holds_no_plaintext_but_null_does() {
    timeout(T, async {
        let plain = secret_message();
        let server = KeyPair::generate();
        let bytes = capture(
            MechanismConfig::CurveServer {
                keys: server.clone(),
            },
            MechanismConfig::CurveClient {
                keys: KeyPair::generate(),
                server_key: *server.public(),
            },
        )
        .await;
        assert_eq!(windows_seen(&bytes, &plain), 0, "plaintext on the wire");
        for frame in plain.iter() {
            assert!(!bytes.windows(frame.len()).any(|w| w == &frame[..]));
        }
        // Control: the same relay sees everything with NULL (twice: there and back).
        let bytes = capture(MechanismConfig::Null, MechanismConfig::Null).await;
        let all: usize = plain.iter().map(|f| f.len() - 15).sum();
        assert_eq!(windows_seen(&bytes, &plain), all);
        for frame in plain.iter() {
            let copies = bytes
                .windows(frame.len())
                .filter(|w| w == &&frame[..])
                .count();
            assert_eq!(copies, 2);
        }
    })
    .await
    .unwrap();
}
