//! The ZRE session with one remote node, as a sans-IO state machine.
//!
//! A [`Peer`] is what a Harmony node knows about one other node: the outbound side (the DEALER
//! the driver connects to the peer's inbox, with our 16-bit sequence counter: HELLO = 1, then
//! +1 wrapping per message) and the inbound side (the sequence we expect next on our ROUTER,
//! whether the peer's HELLO arrived, its name, headers, group status) plus liveness timers.
//!
//! Nothing here does I/O or reads a clock: every method that needs the time takes
//! `now: Instant`. The node state machine in `harmony-group` owns a table of peers and turns
//! what they report into actions and events.
//!
//! Liveness follows Zyre (`zyre_node_ping_peer`): a peer is refreshed by every accepted message;
//! once `evasive_timeout` passed without one the node PINGs it each reap interval and reports
//! it EVASIVE, one reap interval later SILENT, and after `expired_timeout` it is removed.
//! Whether a beacon refreshes a peer is [`PeerConfig::beacons_refresh`] (Zyre C: no, the
//! default; pyre, gyre and NetMQ: yes).

mod config;
mod peer;

pub use config::PeerConfig;
pub use peer::{Peer, PeerError, Reap, Received};

use uuid::Uuid;

/// The 17-byte ZMTP routing id a node uses on its DEALER to a peer: `0x01` followed by the
/// node's 16-byte UUID (Zyre: a UUID may start with a zero byte, which ZMTP reserves).
pub fn routing_id(uuid: &Uuid) -> [u8; 17] {
    let mut id = [0u8; 17];
    id[0] = 1;
    id[1..].copy_from_slice(uuid.as_bytes());
    id
}

/// The UUID carried by a routing id received on the ROUTER inbox, if it has Zyre's shape
/// (exactly 17 bytes, first byte `0x01`); anything else is dropped by the caller.
pub fn uuid_from_routing_id(id: &[u8]) -> Option<Uuid> {
    match id {
        [1, rest @ ..] if rest.len() == 16 => Uuid::from_slice(rest).ok(),
        _ => None,
    }
}

/// Zyre's string form of a UUID: 32 uppercase hex digits, no dashes (used in events and in
/// leader election messages).
pub fn uuid_string(uuid: &Uuid) -> String {
    uuid.simple()
        .encode_upper(&mut Uuid::encode_buffer())
        .to_owned()
}

/// Parses Zyre's 32-hex-digit UUID string (any case; dashed forms are accepted too).
pub fn parse_uuid_string(s: &str) -> Option<Uuid> {
    Uuid::try_parse(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_id_round_trip() {
        let u = Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
        let id = routing_id(&u);
        assert_eq!(id[0], 1);
        assert_eq!(uuid_from_routing_id(&id), Some(u));
        assert_eq!(uuid_from_routing_id(&id[..16]), None);
        let mut bad = id;
        bad[0] = 0;
        assert_eq!(uuid_from_routing_id(&bad), None);
    }

    #[test]
    fn uuid_string_is_zyre_form() {
        let u = Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
        assert_eq!(uuid_string(&u), "00112233445566778899AABBCCDDEEFF");
        assert_eq!(
            parse_uuid_string("00112233445566778899aabbccddeeff"),
            Some(u)
        );
        assert_eq!(parse_uuid_string("nonsense"), None);
    }
}
