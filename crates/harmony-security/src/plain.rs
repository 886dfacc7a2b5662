//! PLAIN (rfc/24): user name and password in clear, checked by the server's authenticator.
//!
//! ```text
//! client HELLO(username, password) -> server   [authenticate]
//! client <- WELCOME                             (or ERROR "400"/"500", or silent close on 300)
//! client INITIATE(metadata) -> server
//! client <- READY(metadata)
//! ```
//! Like libzmq, the server asks its authenticator at HELLO and not again at INITIATE.

use std::fmt;

use bytes::Bytes;
use harmony_wire::zmtp::{self, Command, Frame, Greeting, Metadata, PlainHello};

use crate::error::Result;
use crate::mechanism::{
    check_start, command_name, handshake_command, reply_to_client, unexpected, AuthReply,
    AuthRequest, Cipher, Credentials, Handshake, Mechanism,
};

const NAME: &str = "PLAIN";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Idle,
    ExpectWelcome,
    ExpectReady,
    Done,
    Failed,
}

/// One connection's PLAIN client state machine.
pub struct PlainClient {
    username: Bytes,
    password: Bytes,
    local: Metadata,
    state: ClientState,
}

impl PlainClient {
    /// A client presenting these credentials (each at most 255 bytes).
    pub fn new(username: Bytes, password: Bytes) -> Self {
        Self {
            username,
            password,
            local: Metadata::new(),
            state: ClientState::Idle,
        }
    }
}

impl fmt::Debug for PlainClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainClient")
            .field("username", &self.username)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Mechanism for PlainClient {
    fn kind(&self) -> zmtp::Mechanism {
        zmtp::Mechanism::Plain
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
        let idle = self.state == ClientState::Idle;
        check_start(peer, zmtp::Mechanism::Plain, NAME, idle)?;
        self.state = ClientState::Failed;
        self.local = local.clone();
        let hello = Command::Hello(PlainHello {
            username: self.username.clone(),
            password: self.password.clone(),
        });
        out.push(hello.to_frame()?);
        self.state = ClientState::ExpectWelcome;
        Ok(Handshake::Continue)
    }

    fn receive(&mut self, frame: Frame, out: &mut Vec<Frame>) -> Result<Handshake> {
        let state = std::mem::replace(&mut self.state, ClientState::Failed);
        match (state, handshake_command(NAME, &frame)?) {
            (ClientState::ExpectWelcome, Command::Welcome) => {
                out.push(Command::Initiate(self.local.clone()).to_frame()?);
                self.state = ClientState::ExpectReady;
                Ok(Handshake::Continue)
            }
            (ClientState::ExpectReady, Command::Ready(meta)) => {
                self.state = ClientState::Done;
                Ok(Handshake::Done(meta))
            }
            (_, other) => Err(unexpected(NAME, command_name(&other))),
        }
    }

    fn authenticated(&mut self, _reply: AuthReply, _out: &mut Vec<Frame>) -> Result<Handshake> {
        self.state = ClientState::Failed;
        Err(reply_to_client(NAME))
    }

    fn into_cipher(self: Box<Self>) -> Option<Box<dyn Cipher>> {
        None
    }
}

enum ServerState {
    Idle,
    ExpectHello,
    Authenticating,
    ExpectInitiate(AuthReply),
    Done,
    Failed,
}

/// One connection's PLAIN server state machine.
pub struct PlainServer {
    local: Metadata,
    state: ServerState,
}

impl PlainServer {
    /// A fresh server state machine.
    pub fn new() -> Self {
        Self {
            local: Metadata::new(),
            state: ServerState::Idle,
        }
    }
}

impl Default for PlainServer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PlainServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ServerState::Idle => "Idle",
            ServerState::ExpectHello => "ExpectHello",
            ServerState::Authenticating => "Authenticating",
            ServerState::ExpectInitiate(_) => "ExpectInitiate",
            ServerState::Done => "Done",
            ServerState::Failed => "Failed",
        };
        f.debug_struct("PlainServer")
            .field("state", &state)
            .finish()
    }
}

impl Mechanism for PlainServer {
    fn kind(&self) -> zmtp::Mechanism {
        zmtp::Mechanism::Plain
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
        let idle = matches!(self.state, ServerState::Idle);
        check_start(peer, zmtp::Mechanism::Plain, NAME, idle)?;
        self.local = local.clone();
        self.state = ServerState::ExpectHello;
        Ok(Handshake::Continue)
    }

    fn receive(&mut self, frame: Frame, out: &mut Vec<Frame>) -> Result<Handshake> {
        let state = std::mem::replace(&mut self.state, ServerState::Failed);
        match (state, handshake_command(NAME, &frame)?) {
            (ServerState::ExpectHello, Command::Hello(hello)) => {
                self.state = ServerState::Authenticating;
                Ok(Handshake::Authenticate(AuthRequest {
                    mechanism: zmtp::Mechanism::Plain,
                    credentials: Credentials::Plain {
                        username: hello.username,
                        password: hello.password,
                    },
                }))
            }
            (ServerState::ExpectInitiate(reply), Command::Initiate(meta)) => {
                out.push(Command::Ready(self.local.clone()).to_frame()?);
                self.state = ServerState::Done;
                Ok(Handshake::Done(reply.merge_into(meta)))
            }
            (_, other) => Err(unexpected(NAME, command_name(&other))),
        }
    }

    fn authenticated(&mut self, reply: AuthReply, out: &mut Vec<Frame>) -> Result<Handshake> {
        if !matches!(
            std::mem::replace(&mut self.state, ServerState::Failed),
            ServerState::Authenticating
        ) {
            return Err(unexpected(NAME, "an authentication reply nobody asked for"));
        }
        let reply = reply.admit(out)?;
        out.push(Command::Welcome.to_frame()?);
        self.state = ServerState::ExpectInitiate(reply);
        Ok(Handshake::Continue)
    }

    fn into_cipher(self: Box<Self>) -> Option<Box<dyn Cipher>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{meta, run, run_dealer_router};
    use crate::{SecurityError, StandardAuthenticator, USER_ID};
    use std::net::IpAddr;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn client(user: &'static str, pass: &'static str) -> PlainClient {
        PlainClient::new(user.into(), pass.into())
    }

    fn auth() -> StandardAuthenticator {
        StandardAuthenticator::new().password("admin", "secret")
    }

    #[test]
    fn full_handshake() {
        let auth = auth();
        let mut c = client("admin", "secret");
        let mut s = PlainServer::new();
        let r = run(
            &mut c,
            &mut s,
            &meta("DEALER").with("Identity", ""),
            &meta("ROUTER"),
            &|req| auth.check(PEER, req),
        );
        let server_view = r.server.unwrap().unwrap();
        assert_eq!(server_view.get("Socket-Type").unwrap(), "DEALER");
        assert_eq!(server_view.get(USER_ID).unwrap(), "admin");
        assert_eq!(r.client.unwrap().unwrap(), meta("ROUTER"));
        let names: Vec<_> = r
            .client_sent
            .iter()
            .chain(&r.server_sent)
            .map(|f| Command::decode(&f.body, 1 << 16).unwrap())
            .map(|c| command_name(&c))
            .collect();
        assert_eq!(names, ["HELLO", "INITIATE", "WELCOME", "READY"]);
        assert_eq!(&r.client_sent[0].body[..], b"\x05HELLO\x05admin\x06secret");
        assert_eq!(
            r.requests[0].credentials,
            Credentials::Plain {
                username: "admin".into(),
                password: "secret".into()
            }
        );
        assert!(Box::new(c).into_cipher().is_none());
        assert!(Box::new(s).into_cipher().is_none());
    }

    #[test]
    fn wrong_password_is_refused_with_error_400() {
        let auth = auth();
        for (user, pass) in [("admin", "wrong"), ("nobody", "secret"), ("", "")] {
            let mut c = client(user, pass);
            let mut s = PlainServer::new();
            let r = run_dealer_router(&mut c, &mut s, &|req| auth.check(PEER, req));
            assert_eq!(r.server.unwrap(), Err(SecurityError::Refused("400".into())));
            assert_eq!(
                r.client.unwrap(),
                Err(SecurityError::PeerError("400".into()))
            );
            assert_eq!(r.server_sent.len(), 1);
            assert_eq!(&r.server_sent[0].body[..], b"\x05ERROR\x03400");
            assert_eq!(r.client_sent.len(), 1, "no INITIATE after a refusal");
        }
    }

    /// libzmq 4.3's PLAIN server sends ERROR as `^RROR` (a C hex-escape slip); it still means
    /// "refused", not garbage.
    #[test]
    fn libzmq_mangled_error_is_a_refusal() {
        let mut c = client("admin", "guess");
        let mut out = Vec::new();
        c.start(
            &Greeting::new(zmtp::Mechanism::Plain, false),
            &Metadata::new(),
            &mut out,
        )
        .unwrap();
        let mangled = Frame::command(&b"^RROR\x03400"[..]);
        assert_eq!(
            c.receive(mangled, &mut out),
            Err(SecurityError::PeerError("400".into()))
        );
        let mut c = client("admin", "guess");
        c.start(
            &Greeting::new(zmtp::Mechanism::Plain, false),
            &Metadata::new(),
            &mut out,
        )
        .unwrap();
        assert!(matches!(
            c.receive(Frame::command(&b"^RROR\x05400"[..]), &mut out),
            Err(SecurityError::Wire(_))
        ));
    }

    #[test]
    fn status_300_closes_silently_and_500_sends_error() {
        let mut c = client("a", "b");
        let mut s = PlainServer::new();
        let r = run_dealer_router(&mut c, &mut s, &|_| AuthReply::temporary());
        assert_eq!(r.server.unwrap(), Err(SecurityError::RefusedTemporarily));
        assert!(r.server_sent.is_empty());
        assert!(r.client.is_none());

        let mut c = client("a", "b");
        let mut s = PlainServer::new();
        let r = run_dealer_router(&mut c, &mut s, &|_| AuthReply::internal_error());
        assert_eq!(r.server.unwrap(), Err(SecurityError::Refused("500".into())));
        assert_eq!(
            r.client.unwrap(),
            Err(SecurityError::PeerError("500".into()))
        );
    }

    #[test]
    fn the_peer_cannot_spoof_its_user_id() {
        let auth = auth();
        let mut c = client("admin", "secret");
        let mut s = PlainServer::new();
        let spoof = meta("DEALER").with("user-id", "root");
        let r = run(&mut c, &mut s, &spoof, &meta("ROUTER"), &|req| {
            auth.check(PEER, req)
        });
        assert_eq!(r.server.unwrap().unwrap().get(USER_ID).unwrap(), "admin");
        // With no user id from the authenticator, the peer's claim is still dropped.
        let mut c = client("admin", "secret");
        let mut s = PlainServer::new();
        let r = run(&mut c, &mut s, &spoof, &meta("ROUTER"), &|_| {
            AuthReply::allow("")
        });
        assert_eq!(r.server.unwrap().unwrap().get(USER_ID), None);
    }

    #[test]
    fn out_of_order_and_foreign_commands_are_refused() {
        let g_server = Greeting::new(zmtp::Mechanism::Plain, true);
        let g_client = Greeting::new(zmtp::Mechanism::Plain, false);
        let mut out = Vec::new();
        // Server: INITIATE before HELLO, a message frame, a CURVE-sized HELLO.
        let mut s = PlainServer::new();
        s.start(&g_client, &Metadata::new(), &mut out).unwrap();
        let initiate = Command::Initiate(Metadata::new()).to_frame().unwrap();
        assert!(s.receive(initiate, &mut out).is_err());
        let mut s = PlainServer::new();
        s.start(&g_client, &Metadata::new(), &mut out).unwrap();
        assert!(s
            .receive(Frame::message(&b"\x05HELLO\x00\x00"[..], false), &mut out)
            .is_err());
        let mut s = PlainServer::new();
        s.start(&g_client, &Metadata::new(), &mut out).unwrap();
        let mut curve_hello = b"\x05HELLO\x01\x00".to_vec();
        curve_hello.resize(200, 0);
        assert!(s.receive(Frame::command(curve_hello), &mut out).is_err());
        // Server: authenticated() with nothing pending.
        let mut s = PlainServer::new();
        assert!(s.authenticated(AuthReply::allow("x"), &mut out).is_err());
        // Client: READY before WELCOME; wrong mechanism or role in the greeting.
        let mut c = client("a", "b");
        c.start(&g_server, &Metadata::new(), &mut out).unwrap();
        let ready = Command::Ready(Metadata::new()).to_frame().unwrap();
        assert!(c.receive(ready, &mut out).is_err());
        let mut c = client("a", "b");
        assert!(matches!(
            c.start(
                &Greeting::new(zmtp::Mechanism::Curve, true),
                &Metadata::new(),
                &mut out
            ),
            Err(SecurityError::Incompatible(_))
        ));
        // libzmq servers send as-server 0: accepted.
        let mut c = client("a", "b");
        assert!(c.start(&g_client, &Metadata::new(), &mut out).is_ok());
        let mut s = PlainServer::new();
        assert!(matches!(
            s.start(
                &Greeting::new(zmtp::Mechanism::Null, false),
                &Metadata::new(),
                &mut out
            ),
            Err(SecurityError::Incompatible(_))
        ));
        // Credentials longer than 255 bytes cannot be sent.
        let mut c = PlainClient::new(vec![b'u'; 256].into(), Bytes::new());
        assert!(c.start(&g_server, &Metadata::new(), &mut out).is_err());
    }

    #[test]
    fn config_builds_the_right_sides() {
        use crate::MechanismConfig;
        let client = MechanismConfig::PlainClient {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(client.kind(), zmtp::Mechanism::Plain);
        assert!(!client.as_server() && !client.build().as_server());
        assert!(
            !format!("{client:?}").contains("\"p\""),
            "password not in Debug"
        );
        let server = MechanismConfig::PlainServer;
        assert!(server.as_server() && server.build().as_server());
        let keys = crate::KeyPair::generate();
        let cs = MechanismConfig::CurveServer { keys: keys.clone() };
        assert_eq!(cs.kind(), zmtp::Mechanism::Curve);
        assert!(cs.as_server() && cs.build().as_server());
        let cc = MechanismConfig::CurveClient {
            keys: keys.clone(),
            server_key: *keys.public(),
        };
        assert!(!cc.as_server() && !cc.build().as_server());
        assert!(!format!("{cc:?}").contains(keys.secret_z85().as_str()));
        assert!(!MechanismConfig::Null.as_server());
    }
}
