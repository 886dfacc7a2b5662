//! The CURVE client: HELLO, then INITIATE once WELCOME opens, then wait for READY.

use std::fmt;

use super::nacl::BoxKey;
use bytes::{BufMut, BytesMut};
use harmony_wire::zmtp::{self, Frame, Greeting, Metadata};

use super::cipher::CurveCipher;
use super::keys::{random_bytes, KeyPair, KEY_LEN};
use super::{
    be_u64, long_nonce, open, prefix, salsa_box, seal, short_nonce, COOKIE_LEN, HELLO_LEN,
    READY_MIN_LEN, WELCOME_LEN,
};
use crate::error::{Result, SecurityError};
use crate::mechanism::{
    check_start, handshake_raw, reply_to_client, unexpected_command, AuthReply, Cipher, Handshake,
    Mechanism, MAX_METADATA,
};

const NAME: &str = "CURVE";

pub(super) enum State {
    /// `start` not called yet.
    Idle,
    /// HELLO sent with this transient key pair (C').
    ExpectWelcome { transient: KeyPair },
    /// INITIATE sent; the box key between S' and C'.
    ExpectReady { key: BoxKey },
    /// READY received.
    Done { key: BoxKey, last_recv: u64 },
    /// A step failed; nothing more is accepted.
    Failed,
}

/// One connection's CURVE client state machine.
pub struct CurveClient {
    keys: KeyPair,
    server_key: [u8; KEY_LEN],
    local: Metadata,
    pub(super) next_nonce: u64,
    pub(super) state: State,
}

impl CurveClient {
    /// A client with long-term key pair `keys`, expecting the server's long-term public key.
    pub fn new(keys: KeyPair, server_key: [u8; KEY_LEN]) -> Self {
        Self {
            keys,
            server_key,
            local: Metadata::new(),
            next_nonce: 1,
            state: State::Idle,
        }
    }

    fn take_nonce(&mut self) -> u64 {
        let n = self.next_nonce;
        self.next_nonce += 1;
        n
    }

    fn hello(&mut self, out: &mut Vec<Frame>) -> Result<()> {
        let transient = KeyPair::try_generate()?;
        let nonce = self.take_nonce();
        let signature = seal(
            &salsa_box(&self.server_key, &transient)?,
            &short_nonce(prefix::HELLO, nonce),
            &[0u8; 64],
        )?;
        let mut body = BytesMut::with_capacity(HELLO_LEN);
        body.put_slice(b"\x05HELLO");
        body.put_slice(&[1, 0]);
        body.put_bytes(0, 72);
        body.put_slice(transient.public());
        body.put_u64(nonce);
        body.put_slice(&signature);
        debug_assert_eq!(body.len(), HELLO_LEN);
        out.push(Frame::command(body.freeze()));
        self.state = State::ExpectWelcome { transient };
        Ok(())
    }

    fn welcome(&mut self, transient: &KeyPair, body: &[u8], out: &mut Vec<Frame>) -> Result<()> {
        if body.len() != WELCOME_LEN {
            return Err(SecurityError::Crypto("CURVE WELCOME of the wrong size"));
        }
        let plaintext = open(
            &salsa_box(&self.server_key, transient)?,
            &long_nonce(prefix::WELCOME, &body[8..24]),
            &body[24..],
            "CURVE WELCOME box does not open",
        )?;
        let mut server_transient = [0u8; KEY_LEN];
        server_transient.copy_from_slice(&plaintext[..KEY_LEN]);
        let cookie = &plaintext[KEY_LEN..KEY_LEN + COOKIE_LEN];
        let key = salsa_box(&server_transient, transient)?;

        // Vouch: Box[C' + S](C->S'), proving we hold C's secret and talk to this S.
        let vouch_tail = random_bytes::<16>()?;
        let mut vouched = [0u8; 2 * KEY_LEN];
        vouched[..KEY_LEN].copy_from_slice(transient.public());
        vouched[KEY_LEN..].copy_from_slice(&self.server_key);
        let vouch_box = seal(
            &salsa_box(&server_transient, &self.keys)?,
            &long_nonce(prefix::VOUCH, &vouch_tail),
            &vouched,
        )?;
        let initiate = self.initiate(&key, cookie, &vouch_tail, &vouch_box)?;
        out.push(initiate);
        self.state = State::ExpectReady { key };
        Ok(())
    }

    /// Builds INITIATE from its parts (split out so tests can forge a vouch).
    pub(super) fn initiate(
        &mut self,
        key: &BoxKey,
        cookie: &[u8],
        vouch_tail: &[u8],
        vouch_box: &[u8],
    ) -> Result<Frame> {
        let mut plaintext = BytesMut::new();
        plaintext.put_slice(self.keys.public());
        plaintext.put_slice(vouch_tail);
        plaintext.put_slice(vouch_box);
        self.local.encode(&mut plaintext)?;
        let nonce = self.take_nonce();
        let boxed = seal(key, &short_nonce(prefix::INITIATE, nonce), &plaintext)?;
        let mut body = BytesMut::with_capacity(9 + COOKIE_LEN + 8 + boxed.len());
        body.put_slice(b"\x08INITIATE");
        body.put_slice(cookie);
        body.put_u64(nonce);
        body.put_slice(&boxed);
        Ok(Frame::command(body.freeze()))
    }

    fn ready(key: &BoxKey, body: &[u8]) -> Result<(Metadata, u64)> {
        if body.len() < READY_MIN_LEN {
            return Err(SecurityError::Crypto("CURVE READY too short"));
        }
        if body.len() > READY_MIN_LEN + MAX_METADATA {
            return Err(SecurityError::Crypto("CURVE READY too long"));
        }
        let nonce = be_u64(&body[6..14]);
        let plaintext = open(
            key,
            &short_nonce(prefix::READY, nonce),
            &body[14..],
            "CURVE READY box does not open",
        )?;
        let meta = Metadata::decode(&bytes::Bytes::copy_from_slice(&plaintext), MAX_METADATA)?;
        Ok((meta, nonce))
    }
}

impl fmt::Debug for CurveClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurveClient")
            .field("keys", &self.keys)
            .field("next_nonce", &self.next_nonce)
            .finish_non_exhaustive()
    }
}

impl Mechanism for CurveClient {
    fn kind(&self) -> zmtp::Mechanism {
        zmtp::Mechanism::Curve
    }

    fn as_server(&self) -> bool {
        false
    }

    fn start(
        &mut self,
        peer: &Greeting,
        local: &Metadata,
        out: &mut Vec<Frame>,
    ) -> Result<Handshake> {
        let idle = matches!(self.state, State::Idle);
        check_start(peer, zmtp::Mechanism::Curve, NAME, idle)?;
        self.local = local.clone();
        self.state = State::Failed;
        self.hello(out)?;
        Ok(Handshake::Continue)
    }

    fn receive(&mut self, frame: Frame, out: &mut Vec<Frame>) -> Result<Handshake> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let raw = handshake_raw(NAME, &frame)?;
        match state {
            State::ExpectWelcome { transient } if raw.is("WELCOME") => {
                self.welcome(&transient, &frame.body, out)?;
                Ok(Handshake::Continue)
            }
            State::ExpectReady { key } if raw.is("READY") => {
                let (meta, nonce) = Self::ready(&key, &frame.body)?;
                self.state = State::Done {
                    key,
                    last_recv: nonce,
                };
                Ok(Handshake::Done(meta))
            }
            _ => Err(unexpected_command(NAME, &raw)),
        }
    }

    fn authenticated(&mut self, _reply: AuthReply, _out: &mut Vec<Frame>) -> Result<Handshake> {
        self.state = State::Failed;
        Err(reply_to_client(NAME))
    }

    fn into_cipher(self: Box<Self>) -> Option<Box<dyn Cipher>> {
        let me = *self;
        Some(Box::new(match me.state {
            State::Done { key, last_recv } => {
                CurveCipher::new(key, false, me.next_nonce, last_recv)
            }
            _ => CurveCipher::broken(),
        }))
    }
}
