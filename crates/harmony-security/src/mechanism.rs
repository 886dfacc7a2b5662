//! The mechanism abstraction shared by NULL, PLAIN and CURVE.

use std::fmt;

use bytes::{Bytes, BytesMut};
use harmony_wire::zmtp::{self, Command, Frame, Greeting, Metadata, RawCommand};

use crate::curve::{KeyPair, KEY_LEN};
use crate::error::{Result, SecurityError};

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

    /// A "300" reply: temporary failure, the connection is closed without ERROR.
    pub fn temporary() -> Self {
        Self {
            status: "300".into(),
            ..Self::deny()
        }
    }

    /// A "500" reply: the authenticator itself failed.
    pub fn internal_error() -> Self {
        Self {
            status: "500".into(),
            ..Self::deny()
        }
    }

    /// Whether the peer is let in.
    pub fn is_allowed(&self) -> bool {
        self.status == "200"
    }

    /// What a server does with the authenticator's answer. Like libzmq, only 200/300/400/500
    /// are valid; anything else counts as an internal error. "200" hands the reply back, to go
    /// on with; "300" fails with [`SecurityError::RefusedTemporarily`] and queues nothing;
    /// "400" and "500" queue ERROR with that status and fail with [`SecurityError::Refused`].
    pub(crate) fn admit(self, out: &mut Vec<Frame>) -> Result<Self> {
        let status = match self.status.as_str() {
            "200" => return Ok(self),
            "300" => return Err(SecurityError::RefusedTemporarily),
            "400" => "400",
            _ => "500",
        };
        out.push(Command::Error(Bytes::from_static(status.as_bytes())).to_frame()?);
        Err(SecurityError::Refused(status.into()))
    }

    /// The peer's metadata with this reply's additions: its properties, then `User-Id` when
    /// not empty. A `User-Id` sent by the peer itself is dropped, so it cannot be spoofed.
    pub(crate) fn merge_into(&self, peer: Metadata) -> Metadata {
        let mut merged = Metadata::new();
        for (name, value) in peer.iter() {
            if !name.eq_ignore_ascii_case(USER_ID) {
                merged.insert(name, value.clone());
            }
        }
        for (name, value) in self.metadata.iter() {
            if !name.eq_ignore_ascii_case(USER_ID) {
                merged.insert(name, value.clone());
            }
        }
        if !self.user_id.is_empty() {
            merged.insert(USER_ID, self.user_id.clone());
        }
        merged
    }
}

/// The metadata property carrying the authenticator's user id (as libzmq names it).
pub const USER_ID: &str = "User-Id";

/// What libzmq 4.x's PLAIN server sends instead of `\x05ERROR`: its C literal `"\x05ERROR"`
/// parses as the escape `\x05E` (0x5E, '^') followed by "RROR" (`src/plain_common.hpp`).
const LIBZMQ_MANGLED_ERROR: &[u8] = b"^RROR";

/// Recognises libzmq's mangled PLAIN ERROR command (`^RROR` + reason-len + reason) and returns
/// its reason, so a refusal is reported as [`SecurityError::PeerError`] and not as garbage.
pub(crate) fn libzmq_mangled_error(body: &[u8]) -> Option<String> {
    let rest = body.strip_prefix(LIBZMQ_MANGLED_ERROR)?;
    let (&len, reason) = rest.split_first()?;
    (reason.len() == usize::from(len)).then(|| String::from_utf8_lossy(reason).into_owned())
}

/// Checks the peer's greeting: same mechanism. The as-server flag is *not* checked: libzmq
/// 4.3 always sends 0 there, whatever its role (`zmtp_engine.cpp` zeroes the filler), so a
/// libzmq CURVE or PLAIN server looks like a client. The roles come from the configuration.
pub(crate) fn check_peer(peer: &Greeting, ours: zmtp::Mechanism) -> Result<()> {
    if peer.mechanism != ours {
        return Err(SecurityError::Incompatible(format!(
            "peer wants {} but this socket uses {}",
            peer.mechanism.as_str(),
            ours.as_str()
        )));
    }
    Ok(())
}

/// The opening of every [`Mechanism::start`]: the peer's greeting must name `ours` (see
/// [`check_peer`]), and the state machine must be `idle` (`start` comes once, and first).
pub(crate) fn check_start(
    peer: &Greeting,
    ours: zmtp::Mechanism,
    name: &'static str,
    idle: bool,
) -> Result<()> {
    check_peer(peer, ours)?;
    if !idle {
        return Err(unexpected(name, "a second start"));
    }
    Ok(())
}

/// [`SecurityError::Unexpected`]: `got` does not fit where the `mechanism` handshake stands.
pub(crate) fn unexpected(mechanism: &'static str, got: impl Into<String>) -> SecurityError {
    SecurityError::Unexpected {
        mechanism,
        got: got.into(),
    }
}

/// [`unexpected`] for an authentication reply handed to a client: only servers ask.
pub(crate) fn reply_to_client(mechanism: &'static str) -> SecurityError {
    unexpected(mechanism, "an authentication reply on the client side")
}

/// Largest metadata block accepted in a handshake command (READY, INITIATE).
pub(crate) const MAX_METADATA: usize = 64 << 10;

/// Splits a frame received during the `mechanism` handshake into a raw command, refusing
/// message frames; the peer's ERROR (libzmq's mangled PLAIN one too) becomes
/// [`SecurityError::PeerError`].
pub(crate) fn handshake_raw(mechanism: &'static str, frame: &Frame) -> Result<RawCommand> {
    if !frame.command {
        return Err(unexpected(mechanism, "a message frame"));
    }
    if let Some(reason) = libzmq_mangled_error(&frame.body) {
        return Err(SecurityError::PeerError(reason));
    }
    let raw = RawCommand::decode(&frame.body)?;
    if raw.is("ERROR") {
        return match Command::from_raw(raw, 0)? {
            Command::Error(reason) => Err(SecurityError::PeerError(
                String::from_utf8_lossy(&reason).into_owned(),
            )),
            _ => Err(SecurityError::Crypto("malformed ERROR")),
        };
    }
    Ok(raw)
}

/// [`handshake_raw`], then the command decoded (metadata up to [`MAX_METADATA`]).
pub(crate) fn handshake_command(mechanism: &'static str, frame: &Frame) -> Result<Command> {
    Ok(Command::from_raw(
        handshake_raw(mechanism, frame)?,
        MAX_METADATA,
    )?)
}

/// [`unexpected`] naming the command that arrived.
pub(crate) fn unexpected_command(mechanism: &'static str, raw: &RawCommand) -> SecurityError {
    unexpected(mechanism, String::from_utf8_lossy(&raw.name))
}

/// A short name for a command, for error messages.
pub(crate) fn command_name(cmd: &Command) -> String {
    match cmd.to_raw() {
        Ok(raw) => String::from_utf8_lossy(&raw.name).into_owned(),
        Err(_) => "an unencodable command".into(),
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
///
/// Driver contract: after every call, send the frames pushed to `out` in order, *even when the
/// call returned an error* (a refused peer gets its ERROR command that way), then close the
/// connection on error. [`SecurityError::RefusedTemporarily`] never queues anything.
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

    /// [`Cipher::decrypt`] for a wire frame (flags `more`, `command`) whose `body` the caller
    /// owns outright, so a cipher can open it in place instead of copying it first.
    fn decrypt_owned(&mut self, more: bool, command: bool, body: BytesMut) -> Result<Frame> {
        self.decrypt(Frame {
            more,
            command,
            body: body.freeze(),
        })
    }

    /// How many bytes a wire frame body is longer than the frame it carries (CURVE: 33), so a
    /// driver can allow `max message size + overhead` on the wire.
    fn overhead(&self) -> usize {
        0
    }
}

/// How a socket secures its connections; builds one [`Mechanism`] per connection.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum MechanismConfig {
    /// No security (the default).
    #[default]
    Null,
    /// NULL, but the authenticator is asked about each peer (by address) before READY, as
    /// libzmq does when a ZAP domain is set.
    NullAuthenticated,
    /// PLAIN client: sends a user name and password in clear.
    PlainClient {
        /// User name (0-255 bytes).
        username: Bytes,
        /// Password (0-255 bytes).
        password: Bytes,
    },
    /// PLAIN server: asks the authenticator about every client's user name and password.
    PlainServer,
    /// CURVE client: encrypts and authenticates with its long-term key pair.
    CurveClient {
        /// This client's long-term key pair (C).
        keys: KeyPair,
        /// The server's long-term public key (S).
        server_key: [u8; KEY_LEN],
    },
    /// CURVE server: encrypts; asks the authenticator about every client's public key.
    CurveServer {
        /// This server's long-term key pair (S).
        keys: KeyPair,
    },
}

impl MechanismConfig {
    /// The mechanism name for the greeting.
    pub fn kind(&self) -> zmtp::Mechanism {
        match self {
            Self::Null | Self::NullAuthenticated => zmtp::Mechanism::Null,
            Self::PlainClient { .. } | Self::PlainServer => zmtp::Mechanism::Plain,
            Self::CurveClient { .. } | Self::CurveServer { .. } => zmtp::Mechanism::Curve,
        }
    }

    /// Whether this side is the mechanism's server (the greeting's as-server flag).
    pub fn as_server(&self) -> bool {
        matches!(self, Self::PlainServer | Self::CurveServer { .. })
    }

    /// A fresh state machine for one connection.
    pub fn build(&self) -> Box<dyn Mechanism> {
        match self {
            Self::Null => Box::new(crate::null::NullMechanism::new()),
            Self::NullAuthenticated => Box::new(crate::null::NullMechanism::with_authentication()),
            Self::PlainClient { username, password } => Box::new(crate::plain::PlainClient::new(
                username.clone(),
                password.clone(),
            )),
            Self::PlainServer => Box::new(crate::plain::PlainServer::new()),
            Self::CurveClient { keys, server_key } => {
                Box::new(crate::curve::CurveClient::new(keys.clone(), *server_key))
            }
            Self::CurveServer { keys } => Box::new(crate::curve::CurveServer::new(keys.clone())),
        }
    }
}

impl fmt::Debug for MechanismConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("Null"),
            Self::NullAuthenticated => f.write_str("NullAuthenticated"),
            Self::PlainClient { username, .. } => f
                .debug_struct("PlainClient")
                .field("username", username)
                .finish_non_exhaustive(),
            Self::PlainServer => f.write_str("PlainServer"),
            Self::CurveClient { keys, server_key } => f
                .debug_struct("CurveClient")
                .field("keys", keys)
                .field("server_key", &crate::z85::encode_key(server_key))
                .finish(),
            Self::CurveServer { keys } => {
                f.debug_struct("CurveServer").field("keys", keys).finish()
            }
        }
    }
}
