//! The mechanism abstraction shared by NULL, PLAIN and CURVE.

use bytes::{Bytes, BytesMut};
use harmony_wire::zmtp::{self, Frame, Greeting, Metadata};

use crate::error::Result;

/// What the peer presented, for an authenticator to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// NULL: nothing but the address.
    Null,
    /// PLAIN: user name and password.
    Plain {
        /// User name.
        username: Bytes,
        /// Password.
        password: Bytes,
    },
    /// CURVE: the client's long-term public key.
    Curve {
        /// Raw 32-byte public key.
        public_key: [u8; 32],
    },
}

/// A question for the authenticator (the ZAP request, in process). The driver adds the peer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The mechanism name.
    pub mechanism: zmtp::Mechanism,
    /// What the peer presented.
    pub credentials: Credentials,
}

/// The authenticator's answer (the ZAP reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthReply {
    /// "200" allowed, "300" temporary failure (close silently), "400" refused, "500" internal error.
    pub status: String,
    /// The user id given to the connection (the `User-Id` property).
    pub user_id: String,
    /// Extra properties merged into the connection metadata.
    pub metadata: Metadata,
}

impl AuthReply {
    /// An allowing reply.
    pub fn allow(user_id: impl Into<String>) -> Self {
        Self {
            status: "200".into(),
            user_id: user_id.into(),
            metadata: Metadata::new(),
        }
    }

    /// A refusing reply with status "400".
    pub fn deny() -> Self {
        Self {
            status: "400".into(),
            user_id: String::new(),
            metadata: Metadata::new(),
        }
    }

    /// Whether the peer is let in.
    pub fn is_allowed(&self) -> bool {
        self.status == "200"
    }
}

/// Where a handshake stands after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Waiting for the peer's next command.
    Continue,
    /// The driver must authenticate the peer and call [`Mechanism::authenticated`].
    Authenticate(AuthRequest),
    /// The handshake is over; the peer's metadata (with any authenticator additions).
    Done(Metadata),
}

/// One side of one connection's security handshake, as a state machine.
pub trait Mechanism: Send {
    /// The mechanism name for the greeting.
    fn kind(&self) -> zmtp::Mechanism;

    /// Whether this side is the mechanism's server (the greeting's as-server flag).
    fn as_server(&self) -> bool;

    /// Starts after both greetings are known: checks the peer's greeting and pushes the frames
    /// to send first. `local` is this socket's metadata (Socket-Type, Identity, ...).
    fn start(
        &mut self,
        peer: &Greeting,
        local: &Metadata,
        out: &mut Vec<Frame>,
    ) -> Result<Handshake>;

    /// Feeds one frame received during the handshake; pushes frames to send.
    fn receive(&mut self, frame: Frame, out: &mut Vec<Frame>) -> Result<Handshake>;

    /// Hands back the authenticator's answer to an [`Handshake::Authenticate`] request.
    fn authenticated(&mut self, reply: AuthReply, out: &mut Vec<Frame>) -> Result<Handshake>;

    /// After [`Handshake::Done`]: the transform for traffic frames, `None` when frames pass in clear.
    fn into_cipher(self: Box<Self>) -> Option<Box<dyn Cipher>>;
}

/// Protects traffic frames after the handshake (CURVE's MESSAGE boxes).
pub trait Cipher: Send {
    /// Encrypts one frame (message or command) and appends the resulting wire frame to `dst`.
    fn encrypt(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<()>;

    /// Decrypts one received wire frame into the frame it carries.
    fn decrypt(&mut self, frame: Frame) -> Result<Frame>;
}

/// How a socket secures its connections; builds one [`Mechanism`] per connection.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum MechanismConfig {
    /// No security (the default).
    #[default]
    Null,
}

impl MechanismConfig {
    /// The mechanism name for the greeting.
    pub fn kind(&self) -> zmtp::Mechanism {
        match self {
            Self::Null => zmtp::Mechanism::Null,
        }
    }

    /// A fresh state machine for one connection.
    pub fn build(&self) -> Box<dyn Mechanism> {
        match self {
            Self::Null => Box::new(crate::null::NullMechanism::new()),
        }
    }
}
