//! The CURVE server: WELCOME with a cookie, check INITIATE and its vouch, authenticate, READY.

use std::fmt;

use super::nacl::BoxKey;
use bytes::{BufMut, Bytes, BytesMut};
use crypto_box::aead::Aead;
use harmony_wire::zmtp::{self, Frame, Greeting, Metadata};
use zeroize::Zeroizing;

use super::cipher::CurveCipher;
use super::keys::{random_bytes, KeyPair, KEY_LEN};
use super::{
    be_u64, cookie_box, long_nonce, open, prefix, salsa_box, same, seal, short_nonce, COOKIE_LEN,
    HELLO_LEN, INITIATE_MIN_LEN, MAC_LEN, VOUCH_LEN,
};
use crate::error::{Result, SecurityError};
use crate::mechanism::{
    check_start, handshake_raw, unexpected, unexpected_command, AuthReply, AuthRequest, Cipher,
    Credentials, Handshake, Mechanism, MAX_METADATA,
};

const NAME: &str = "CURVE";

/// Offsets inside INITIATE: name (9), cookie (96), short nonce (8), box.
const INITIATE_COOKIE: usize = 9;
const INITIATE_NONCE: usize = INITIATE_COOKIE + COOKIE_LEN;
const INITIATE_BOX: usize = INITIATE_NONCE + 8;

enum State {
    /// `start` not called yet.
    Idle,
    /// Waiting for HELLO.
    ExpectHello,
    /// WELCOME sent; what the cookie must contain.
    ExpectInitiate {
        client_transient: [u8; KEY_LEN],
        transient: KeyPair,
        cookie_key: Zeroizing<[u8; 32]>,
        hello_nonce: u64,
    },
    /// INITIATE accepted; waiting for the authenticator.
    Authenticating {
        key: BoxKey,
        last_recv: u64,
        peer: Metadata,
    },
    /// READY sent.
    Done { key: BoxKey, last_recv: u64 },
    /// A step failed; nothing more is accepted.
    Failed,
}

/// One connection's CURVE server state machine.
pub struct CurveServer {
    keys: KeyPair,
    local: Metadata,
    next_nonce: u64,
    state: State,
}

impl CurveServer {
    /// A server with long-term key pair `keys`.
    pub fn new(keys: KeyPair) -> Self {
        Self {
            keys,
            local: Metadata::new(),
            next_nonce: 1,
            state: State::Idle,
        }
    }

    fn hello(&mut self, body: &[u8], out: &mut Vec<Frame>) -> Result<()> {
        if body.len() != HELLO_LEN {
            return Err(SecurityError::Crypto("CURVE HELLO of the wrong size"));
        }
        if body[6..8] != [1, 0] {
            return Err(SecurityError::Crypto("CURVE HELLO of an unknown version"));
        }
        let mut client_transient = [0u8; KEY_LEN];
        client_transient.copy_from_slice(&body[80..112]);
        let hello_nonce = be_u64(&body[112..120]);
        let signature = open(
            &salsa_box(&client_transient, &self.keys)?,
            &short_nonce(prefix::HELLO, hello_nonce),
            &body[120..],
            "CURVE HELLO box does not open (wrong server key?)",
        )?;
        if signature.iter().any(|&b| b != 0) {
            return Err(SecurityError::Crypto("CURVE HELLO signature is not zeros"));
        }

        let transient = KeyPair::try_generate()?;
        let cookie_key = Zeroizing::new(random_bytes::<32>()?);
        // Cookie: Box[C' + s'](K), so INITIATE can prove it follows this WELCOME.
        let cookie_tail = random_bytes::<16>()?;
        let mut cookie_plain = Zeroizing::new([0u8; 2 * KEY_LEN]);
        cookie_plain[..KEY_LEN].copy_from_slice(&client_transient);
        cookie_plain[KEY_LEN..].copy_from_slice(transient.secret());
        let cookie_nonce = long_nonce(prefix::COOKIE, &cookie_tail);
        let cookie_sealed = cookie_box(&cookie_key)
            .encrypt((&cookie_nonce).into(), &cookie_plain[..])
            .map_err(|_| SecurityError::Crypto("cannot seal the cookie"))?;

        let mut plaintext = Zeroizing::new(Vec::with_capacity(KEY_LEN + COOKIE_LEN));
        plaintext.extend_from_slice(transient.public());
        plaintext.extend_from_slice(&cookie_tail);
        plaintext.extend_from_slice(&cookie_sealed);
        let welcome_tail = random_bytes::<16>()?;
        let boxed = seal(
            &salsa_box(&client_transient, &self.keys)?,
            &long_nonce(prefix::WELCOME, &welcome_tail),
            &plaintext,
        )?;
        let mut welcome = BytesMut::with_capacity(super::WELCOME_LEN);
        welcome.put_slice(b"\x07WELCOME");
        welcome.put_slice(&welcome_tail);
        welcome.put_slice(&boxed);
        debug_assert_eq!(welcome.len(), super::WELCOME_LEN);
        out.push(Frame::command(welcome.freeze()));
        self.state = State::ExpectInitiate {
            client_transient,
            transient,
            cookie_key,
            hello_nonce,
        };
        Ok(())
    }

    /// Checks INITIATE; returns the box key, the client's long-term key, its nonce and metadata.
    fn initiate(
        &self,
        body: &[u8],
        client_transient: &[u8; KEY_LEN],
        transient: &KeyPair,
        cookie_key: &[u8; 32],
        hello_nonce: u64,
    ) -> Result<(BoxKey, [u8; KEY_LEN], u64, Metadata)> {
        if body.len() < INITIATE_MIN_LEN {
            return Err(SecurityError::Crypto("CURVE INITIATE too short"));
        }
        if body.len() > INITIATE_MIN_LEN + MAX_METADATA {
            return Err(SecurityError::Crypto("CURVE INITIATE too long"));
        }
        let cookie = &body[INITIATE_COOKIE..INITIATE_NONCE];
        let cookie_nonce = long_nonce(prefix::COOKIE, &cookie[..16]);
        let cookie_plain = Zeroizing::new(
            cookie_box(cookie_key)
                .decrypt((&cookie_nonce).into(), &cookie[16..])
                .map_err(|_| SecurityError::Crypto("CURVE INITIATE cookie does not open"))?,
        );
        if !same(&cookie_plain[..KEY_LEN], client_transient)
            || !same(&cookie_plain[KEY_LEN..], transient.secret())
        {
            return Err(SecurityError::Crypto("CURVE INITIATE cookie is not ours"));
        }

        let nonce = be_u64(&body[INITIATE_NONCE..INITIATE_BOX]);
        if nonce <= hello_nonce {
            return Err(SecurityError::Crypto(
                "CURVE INITIATE nonce did not increase",
            ));
        }
        let key = salsa_box(client_transient, transient)?;
        let plaintext = open(
            &key,
            &short_nonce(prefix::INITIATE, nonce),
            &body[INITIATE_BOX..],
            "CURVE INITIATE box does not open",
        )?;
        debug_assert!(plaintext.len() >= KEY_LEN + VOUCH_LEN);
        let mut client_key = [0u8; KEY_LEN];
        client_key.copy_from_slice(&plaintext[..KEY_LEN]);
        let vouch = &plaintext[KEY_LEN..KEY_LEN + VOUCH_LEN];
        let vouched = open(
            &salsa_box(&client_key, transient)?,
            &long_nonce(prefix::VOUCH, &vouch[..16]),
            &vouch[16..],
            "CURVE INITIATE vouch does not open",
        )?;
        if !same(&vouched[..KEY_LEN], client_transient) {
            return Err(SecurityError::Crypto(
                "CURVE vouch names another transient key",
            ));
        }
        if !same(&vouched[KEY_LEN..], self.keys.public()) {
            return Err(SecurityError::Crypto("CURVE vouch names another server"));
        }
        let meta = Metadata::decode(
            &Bytes::copy_from_slice(&plaintext[KEY_LEN + VOUCH_LEN..]),
            MAX_METADATA,
        )?;
        Ok((key, client_key, nonce, meta))
    }

    fn ready(&mut self, key: &BoxKey) -> Result<Frame> {
        let mut meta = BytesMut::new();
        self.local.encode(&mut meta)?;
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        let boxed = seal(key, &short_nonce(prefix::READY, nonce), &meta)?;
        let mut body = BytesMut::with_capacity(14 + boxed.len());
        body.put_slice(b"\x05READY");
        body.put_u64(nonce);
        body.put_slice(&boxed);
        debug_assert!(body.len() >= 14 + MAC_LEN);
        Ok(Frame::command(body.freeze()))
    }
}

impl fmt::Debug for CurveServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurveServer")
            .field("keys", &self.keys)
            .field("next_nonce", &self.next_nonce)
            .finish_non_exhaustive()
    }
}

impl Mechanism for CurveServer {
    fn kind(&self) -> zmtp::Mechanism {
        zmtp::Mechanism::Curve
    }

    fn as_server(&self) -> bool {
        true
    }

    fn start(
        &mut self,
        peer: &Greeting,
        local: &Metadata,
        _out: &mut Vec<Frame>,
    ) -> Result<Handshake> {
        let idle = matches!(self.state, State::Idle);
        check_start(peer, zmtp::Mechanism::Curve, NAME, idle)?;
        self.local = local.clone();
        self.state = State::ExpectHello;
        Ok(Handshake::Continue)
    }

    fn receive(&mut self, frame: Frame, out: &mut Vec<Frame>) -> Result<Handshake> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let raw = handshake_raw(NAME, &frame)?;
        match state {
            State::ExpectHello if raw.is("HELLO") => {
                self.hello(&frame.body, out)?;
                Ok(Handshake::Continue)
            }
            State::ExpectInitiate {
                client_transient,
                transient,
                cookie_key,
                hello_nonce,
            } if raw.is("INITIATE") => {
                let (key, client_key, nonce, peer) = self.initiate(
                    &frame.body,
                    &client_transient,
                    &transient,
                    &cookie_key,
                    hello_nonce,
                )?;
                // The cookie key and s' are dropped (and wiped) here.
                self.state = State::Authenticating {
                    key,
                    last_recv: nonce,
                    peer,
                };
                Ok(Handshake::Authenticate(AuthRequest {
                    mechanism: zmtp::Mechanism::Curve,
                    credentials: Credentials::Curve {
                        public_key: client_key,
                    },
                }))
            }
            _ => Err(unexpected_command(NAME, &raw)),
        }
    }

    fn authenticated(&mut self, reply: AuthReply, out: &mut Vec<Frame>) -> Result<Handshake> {
        let State::Authenticating {
            key,
            last_recv,
            peer,
        } = std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(unexpected(NAME, "an authentication reply nobody asked for"));
        };
        let reply = reply.admit(out)?;
        out.push(self.ready(&key)?);
        let meta = reply.merge_into(peer);
        self.state = State::Done { key, last_recv };
        Ok(Handshake::Done(meta))
    }

    fn into_cipher(self: Box<Self>) -> Option<Box<dyn Cipher>> {
        let me = *self;
        Some(Box::new(match me.state {
            State::Done { key, last_recv } => CurveCipher::new(key, true, me.next_nonce, last_recv),
            _ => CurveCipher::broken(),
        }))
    }
}
