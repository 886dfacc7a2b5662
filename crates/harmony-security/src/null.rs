//! The NULL mechanism (rfc/23, rfc/37). Like libzmq, both sides send READY at once and wait for
//! the peer's READY, whatever their role.
//!
//! With authentication on (libzmq: a ZAP domain set), the authenticator is asked first, with
//! [`Credentials::Null`] (so only the address counts); READY follows a "200", ERROR a
//! "400"/"500", and a "300" closes silently.

use harmony_wire::zmtp::{self, Command, Frame, Greeting, Metadata};

use crate::error::{Result, SecurityError};
use crate::mechanism::{
    AuthReply, AuthRequest, Cipher, Credentials, Handshake, Mechanism, Verdict,
};

/// Largest metadata block accepted in READY.
const MAX_METADATA: usize = 64 << 10;

/// The NULL mechanism state machine.
#[derive(Debug, Default)]
pub struct NullMechanism {
    started: bool,
    done: bool,
    /// Ask the authenticator before sending READY.
    authenticate: bool,
    /// Our READY, held back while the authenticator decides.
    held: Option<Metadata>,
    /// The authenticator's answer, merged into the peer's metadata.
    reply: Option<AuthReply>,
}

impl NullMechanism {
    /// A fresh state machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// A state machine that asks the authenticator about the peer (its address) first.
    pub fn with_authentication() -> Self {
        Self {
            authenticate: true,
            ..Self::default()
        }
    }
}

/// Turns a received handshake frame into a command, refusing message frames.
pub(crate) fn handshake_command(mechanism: &'static str, frame: &Frame) -> Result<Command> {
    if !frame.command {
        return Err(SecurityError::Unexpected {
            mechanism,
            got: "a message frame".into(),
        });
    }
    if let Some(reason) = crate::mechanism::libzmq_mangled_error(&frame.body) {
        return Err(SecurityError::PeerError(reason));
    }
    match Command::decode(&frame.body, MAX_METADATA)? {
        Command::Error(reason) => Err(SecurityError::PeerError(
            String::from_utf8_lossy(&reason).into_owned(),
        )),
        cmd => Ok(cmd),
    }
}

/// A short name for a command, for error messages.
pub(crate) fn command_name(cmd: &Command) -> String {
    match cmd.to_raw() {
        Ok(raw) => String::from_utf8_lossy(&raw.name).into_owned(),
        Err(_) => "an unencodable command".into(),
    }
}

impl Mechanism for NullMechanism {
    fn kind(&self) -> zmtp::Mechanism {
        zmtp::Mechanism::Null
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
        if peer.mechanism != zmtp::Mechanism::Null {
            return Err(SecurityError::Incompatible(format!(
                "peer wants {} but this socket uses NULL",
                peer.mechanism.as_str()
            )));
        }
        if self.started || self.held.is_some() {
            return Err(SecurityError::Unexpected {
                mechanism: "NULL",
                got: "a second start".into(),
            });
        }
        if self.authenticate {
            self.held = Some(local.clone());
            return Ok(Handshake::Authenticate(AuthRequest {
                mechanism: zmtp::Mechanism::Null,
                credentials: Credentials::Null,
            }));
        }
        out.push(Command::Ready(local.clone()).to_frame()?);
        self.started = true;
        Ok(Handshake::Continue)
    }

    fn receive(&mut self, frame: Frame, _out: &mut Vec<Frame>) -> Result<Handshake> {
        match handshake_command("NULL", &frame)? {
            Command::Ready(meta) if self.started && !self.done => {
                self.done = true;
                Ok(Handshake::Done(match &self.reply {
                    Some(reply) => reply.merge_into(meta),
                    None => meta,
                }))
            }
            other => Err(SecurityError::Unexpected {
                mechanism: "NULL",
                got: command_name(&other),
            }),
        }
    }

    fn authenticated(&mut self, reply: AuthReply, out: &mut Vec<Frame>) -> Result<Handshake> {
        let Some(local) = self.held.take() else {
            return Err(SecurityError::Unexpected {
                mechanism: "NULL",
                got: "an authentication reply".into(),
            });
        };
        match reply.verdict() {
            Verdict::Allow => {
                out.push(Command::Ready(local).to_frame()?);
                self.started = true;
                self.reply = Some(reply);
                Ok(Handshake::Continue)
            }
            Verdict::Temporary => Err(SecurityError::RefusedTemporarily),
            Verdict::Refuse(status) => {
                out.push(Command::Error(status.clone().into()).to_frame()?);
                Err(SecurityError::Refused(status))
            }
        }
    }

    fn into_cipher(self: Box<Self>) -> Option<Box<dyn Cipher>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(mechanism: zmtp::Mechanism) -> Greeting {
        Greeting::new(mechanism, false)
    }

    #[test]
    fn both_sides_exchange_ready() {
        let mut a = NullMechanism::new();
        let mut b = NullMechanism::new();
        let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
        let meta_a = Metadata::new().with("Socket-Type", "DEALER");
        let meta_b = Metadata::new().with("Socket-Type", "ROUTER");
        assert_eq!(
            a.start(&peer(zmtp::Mechanism::Null), &meta_a, &mut to_b)
                .unwrap(),
            Handshake::Continue
        );
        assert_eq!(
            b.start(&peer(zmtp::Mechanism::Null), &meta_b, &mut to_a)
                .unwrap(),
            Handshake::Continue
        );
        let frame = to_b.pop().unwrap();
        assert_eq!(
            b.receive(frame, &mut to_a).unwrap(),
            Handshake::Done(meta_a)
        );
        let frame = to_a.pop().unwrap();
        assert_eq!(
            a.receive(frame, &mut to_b).unwrap(),
            Handshake::Done(meta_b)
        );
    }

    #[test]
    fn refuses_other_mechanisms_messages_and_errors() {
        let mut m = NullMechanism::new();
        assert!(matches!(
            m.start(
                &peer(zmtp::Mechanism::Curve),
                &Metadata::new(),
                &mut Vec::new()
            ),
            Err(SecurityError::Incompatible(_))
        ));
        let mut m = NullMechanism::new();
        m.start(
            &peer(zmtp::Mechanism::Null),
            &Metadata::new(),
            &mut Vec::new(),
        )
        .unwrap();
        assert!(m
            .receive(Frame::message(&b"hi"[..], false), &mut Vec::new())
            .is_err());
        let err = Command::Error("500".into()).to_frame().unwrap();
        assert_eq!(
            m.receive(err, &mut Vec::new()),
            Err(SecurityError::PeerError("500".into()))
        );
        let ping = Command::Ping {
            ttl: 0,
            context: Default::default(),
        }
        .to_frame()
        .unwrap();
        assert!(matches!(
            m.receive(ping, &mut Vec::new()),
            Err(SecurityError::Unexpected { .. })
        ));
    }

    #[test]
    fn authenticated_null_asks_first_then_sends_ready() {
        use crate::testing::{meta, run};
        let peer_ip = std::net::IpAddr::from([127, 0, 0, 9]);
        let deny = crate::StandardAuthenticator::new().deny(peer_ip);
        let mut client = NullMechanism::new();
        let mut server = NullMechanism::with_authentication();
        let r = run(
            &mut client,
            &mut server,
            &meta("DEALER"),
            &meta("ROUTER"),
            &|req| deny.check(peer_ip, req),
        );
        assert_eq!(r.server.unwrap(), Err(SecurityError::Refused("400".into())));
        assert_eq!(r.server_sent.len(), 1, "ERROR only, no READY");
        assert_eq!(
            r.client.unwrap(),
            Err(SecurityError::PeerError("400".into()))
        );
        assert_eq!(r.requests[0].credentials, Credentials::Null);

        let mut client = NullMechanism::new();
        let mut server = NullMechanism::with_authentication();
        let r = run(
            &mut client,
            &mut server,
            &meta("DEALER"),
            &meta("ROUTER"),
            &|_| AuthReply::allow("guest"),
        );
        assert_eq!(
            r.server.unwrap().unwrap().get(crate::USER_ID).unwrap(),
            "guest"
        );
        assert_eq!(r.client.unwrap().unwrap(), meta("ROUTER"));

        let mut server = NullMechanism::with_authentication();
        let mut out = Vec::new();
        server
            .start(&peer(zmtp::Mechanism::Null), &Metadata::new(), &mut out)
            .unwrap();
        assert_eq!(
            server.authenticated(AuthReply::temporary(), &mut out),
            Err(SecurityError::RefusedTemporarily)
        );
        assert!(out.is_empty());
    }
}
