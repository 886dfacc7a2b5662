//! ZRE messages (ids 1-10) as Zyre puts them on the wire: `AA A1 id version=2 sequence[2]
//! fields...` in the first ZMTP frame, WHISPER/SHOUT content in the frames that follow.
//!
//! Field encodings: `string` = 1-byte length + bytes, `longstr` = 4-byte length + bytes,
//! `strings` = 4-byte count of longstr, `hash` = 4-byte count of (string key, longstr value).

use bytes::Bytes;

/// The two signature bytes of every ZRE message (`0xAAA0 | 1`).
pub const ZRE_SIGNATURE: [u8; 2] = [0xAA, 0xA1];
/// The message version Zyre and pyre send and accept.
pub const ZRE_VERSION: u8 = 2;

/// One ZRE message: its per-connection sequence number and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZreMessage {
    /// 16-bit sequence, 1 for HELLO, +1 (wrapping) for every following message.
    pub sequence: u16,
    /// What the message says.
    pub body: ZreBody,
}

/// The HELLO a node sends first on every new connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// The sender's inbox endpoint, e.g. `tcp://10.0.0.1:49152`.
    pub endpoint: String,
    /// The groups the sender is in.
    pub groups: Vec<String>,
    /// The sender's group status counter (incremented on every join/leave).
    pub status: u8,
    /// The sender's name.
    pub name: String,
    /// The sender's headers, in wire order.
    pub headers: Vec<(String, String)>,
}

/// The body of a ZRE message, one variant per message id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ZreBody {
    /// id 1: greet a peer.
    Hello(Hello),
    /// id 2: a message to one peer; content = the following frames.
    Whisper {
        /// Content frames.
        content: Vec<Bytes>,
    },
    /// id 3: a message to a group; content = the following frames.
    Shout {
        /// Target group.
        group: String,
        /// Content frames.
        content: Vec<Bytes>,
    },
    /// id 4: the sender joined a group.
    Join {
        /// The group.
        group: String,
        /// The sender's group status after the change.
        status: u8,
    },
    /// id 5: the sender left a group.
    Leave {
        /// The group.
        group: String,
        /// The sender's group status after the change.
        status: u8,
    },
    /// id 6: are you alive?
    Ping,
    /// id 7: yes.
    PingOk,
    /// id 8: leader election wave (Zyre, not in rfc/36).
    Elect {
        /// The group.
        group: String,
        /// The challenger's UUID string.
        challenger_id: String,
    },
    /// id 9: leader announcement (Zyre, not in rfc/36).
    Leader {
        /// The group.
        group: String,
        /// The leader's UUID string.
        leader_id: String,
    },
    /// id 10: the sender is leaving (Zyre gossip mode).
    Goodbye,
}

impl ZreBody {
    /// The message id on the wire.
    pub fn id(&self) -> u8 {
        match self {
            Self::Hello(_) => 1,
            Self::Whisper { .. } => 2,
            Self::Shout { .. } => 3,
            Self::Join { .. } => 4,
            Self::Leave { .. } => 5,
            Self::Ping => 6,
            Self::PingOk => 7,
            Self::Elect { .. } => 8,
            Self::Leader { .. } => 9,
            Self::Goodbye => 10,
        }
    }

    /// The message name as the specs spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello(_) => "HELLO",
            Self::Whisper { .. } => "WHISPER",
            Self::Shout { .. } => "SHOUT",
            Self::Join { .. } => "JOIN",
            Self::Leave { .. } => "LEAVE",
            Self::Ping => "PING",
            Self::PingOk => "PING-OK",
            Self::Elect { .. } => "ELECT",
            Self::Leader { .. } => "LEADER",
            Self::Goodbye => "GOODBYE",
        }
    }
}

// The codec (ZreMessage::decode / encode) follows below.
