//! The NULL mechanism (rfc/23, rfc/37). Like libzmq, both sides send READY at once and wait for
//! the peer's READY, whatever their role.
//!
//! With authentication on (libzmq: a ZAP domain set), the authenticator is asked first, with
//! [`Credentials::Null`] (so only the address counts); READY follows a "200", ERROR a
//! "400"/"500", and a "300" closes silently.

use harmony_wire::zmtp::{self, Command, Frame, Greeting, Metadata};

use crate::error::Result;
use crate::mechanism::{
    check_start, command_name, handshake_command, unexpected, AuthReply, AuthRequest, Cipher,
    Credentials, Handshake, Mechanism,
};

const NAME: &str = "NULL";

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
        let idle = !self.started && self.held.is_none();
        check_start(peer, zmtp::Mechanism::Null, NAME, idle)?;
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
        match handshake_command(NAME, &frame)? {
            Command::Ready(meta) if self.started && !self.done => {
                self.done = true;
                Ok(Handshake::Done(match &self.reply {
                    Some(reply) => reply.merge_into(meta),
                    None => meta,
                }))
            }
            other => Err(unexpected(NAME, command_name(&other))),
        }
    }

    fn authenticated(&mut self, reply: AuthReply, out: &mut Vec<Frame>) -> Result<Handshake> {
        let Some(local) = self.held.take() else {
            return Err(unexpected(NAME, "an authentication reply"));
        };
        let reply = reply.admit(out)?;
        out.push(Command::Ready(local).to_frame()?);
        self.started = true;
        self.reply = Some(reply);
        Ok(Handshake::Continue)
    }

    fn into_cipher(self: Box<Self>) -> Option<Box<dyn Cipher>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecurityError;

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
        use crate::testing::{meta, run_dealer_router};
        let peer_ip = std::net::IpAddr::from([127, 0, 0, 9]);
        let deny = crate::StandardAuthenticator::new().deny(peer_ip);
        let mut client = NullMechanism::new();
        let mut server = NullMechanism::with_authentication();
        let r = run_dealer_router(&mut client, &mut server, &|req| deny.check(peer_ip, req));
        assert_eq!(r.server.unwrap(), Err(SecurityError::Refused("400".into())));
        assert_eq!(r.server_sent.len(), 1, "ERROR only, no READY");
        assert_eq!(
            r.client.unwrap(),
            Err(SecurityError::PeerError("400".into()))
        );
        assert_eq!(r.requests[0].credentials, Credentials::Null);

        let mut client = NullMechanism::new();
        let mut server = NullMechanism::with_authentication();
        let r = run_dealer_router(&mut client, &mut server, &|_| AuthReply::allow("guest"));
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
