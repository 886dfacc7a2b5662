//! ZMTP 3.x (rfc/23, rfc/37): greeting, framing, commands and metadata.
//!
//! Layering: [`FrameCodec`] cuts a byte stream into [`Frame`]s; a command frame's body is a
//! [`RawCommand`] (name + data); [`Command`] gives the NULL/PLAIN handshake commands and the
//! traffic commands (PING, PONG, SUBSCRIBE, CANCEL, ERROR) their typed form. CURVE handshake
//! bodies are boxes and are parsed by the security crate from the [`RawCommand`].

pub mod command;
pub mod frame;
pub mod greeting;
pub mod metadata;

pub use command::{Command, PlainHello, RawCommand};
pub use frame::{Frame, FrameCodec, FrameError, FLAG_COMMAND, FLAG_LONG, FLAG_MORE};
pub use greeting::{Greeting, Mechanism, GREETING_LEN, SIGNATURE_LEN};
pub use metadata::Metadata;
