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

use crate::error::{Result, SecurityError};
use crate::mechanism::{
    check_peer, AuthReply, AuthRequest, Cipher, Credentials, Handshake, Mechanism, Verdict,
};
use crate::null::{command_name, handshake_command};

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

fn unexpected(cmd: &Command) -> SecurityError {
    SecurityError::Unexpected {
        mechanism: NAME,
        got: command_name(cmd),
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
        check_peer(peer, zmtp::Mechanism::Plain, false)?;
        if self.state != ClientState::Idle {
            return Err(SecurityError::Unexpected {
                mechanism: NAME,
                got: "a second start".into(),
            });
        }
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
            (_, other) => Err(unexpected(&other)),
        }
    }

    fn authenticated(&mut self, _reply: AuthReply, _out: &mut Vec<Frame>) -> Result<Handshake> {
        self.state = ClientState::Failed;
        Err(SecurityError::Unexpected {
            mechanism: NAME,
            got: "an authentication reply on the client side".into(),
        })
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
        check_peer(peer, zmtp::Mechanism::Plain, true)?;
        if !matches!(self.state, ServerState::Idle) {
            return Err(SecurityError::Unexpected {
                mechanism: NAME,
                got: "a second start".into(),
            });
        }
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
            (_, other) => Err(unexpected(&other)),
        }
    }

    fn authenticated(&mut self, reply: AuthReply, out: &mut Vec<Frame>) -> Result<Handshake> {
        if !matches!(
            std::mem::replace(&mut self.state, ServerState::Failed),
            ServerState::Authenticating
        ) {
            return Err(SecurityError::Unexpected {
                mechanism: NAME,
                got: "an authentication reply nobody asked for".into(),
            });
        }
        match reply.verdict() {
            Verdict::Allow => {
                out.push(Command::Welcome.to_frame()?);
                self.state = ServerState::ExpectInitiate(reply);
                Ok(Handshake::Continue)
            }
            Verdict::Temporary => Err(SecurityError::RefusedTemporarily),
            Verdict::Refuse(status) => {
                out.push(Command::Error(Bytes::from(status.clone())).to_frame()?);
                Err(SecurityError::Refused(status))
            }
        }
    }

    fn into_cipher(self: Box<Self>) -> Option<Box<dyn Cipher>> {
        None
    }
}
