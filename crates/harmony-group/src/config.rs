//! Who this node is and how patient it is with its peers.

use std::time::Duration;

use harmony_peer::PeerConfig;

/// Default [`NodeConfig::link_grace`]: time for a few reconnect attempts (ZMTP's 100 ms,
/// doubling), well under Zyre's 5 s evasive timeout.
pub const DEFAULT_LINK_GRACE: Duration = Duration::from_secs(1);
use uuid::Uuid;

/// Settings of a [`crate::ZreNode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Our UUID (also our routing id `0x01 ‖ uuid` on every DEALER).
    pub uuid: Uuid,
    /// Our name, sent in HELLO (Zyre default: the first 6 hex digits of the UUID).
    pub name: String,
    /// Our inbox endpoint advertised in HELLO, e.g. `tcp://10.0.0.1:49152` (the driver knows
    /// it once the inbox is bound; see also `ZreNode::set_endpoint`).
    pub endpoint: String,
    /// Our headers, sent in HELLO only (Zyre has no header update after start).
    pub headers: Vec<(String, String)>,
    /// Peer timeouts.
    pub peer: PeerConfig,
    /// Send GOODBYE to every peer on stop (Zyre does this in gossip mode only; in beacon mode
    /// the driver's port-0 beacon says the same). Off by default: pyre drops peers that send
    /// ids it does not know (8-10).
    pub goodbye_on_stop: bool,
    /// How long a peer's lost connection may take to come back before the peer is removed
    /// (EXIT), when the driver reports connection drops (`ZreNode::handle_link_down`).
    pub link_grace: Duration,
    /// Treat every peer as a Zyre elector, also one whose HELLO does not say `X-HARMONY: elect`:
    /// ELECT and LEADER go to every member of a contested group, as Zyre sends them, so that a
    /// non-contesting Zyre node relays the wave and reports the LEADER too. Off by default:
    /// pyre drops a peer that sends it an id it does not know, and a Zyre HELLO cannot be told
    /// from a pyre one. Turn it on in fleets of Harmony and Zyre nodes without pyre.
    pub every_peer_elects: bool,
}

impl NodeConfig {
    /// Defaults for a node with this UUID: name = first 6 hex digits, no endpoint yet, no
    /// headers, Zyre's timeouts.
    pub fn new(uuid: Uuid) -> Self {
        Self {
            uuid,
            name: harmony_peer::uuid_string(&uuid)[..6].to_owned(),
            endpoint: String::new(),
            headers: Vec::new(),
            peer: PeerConfig::default(),
            goodbye_on_stop: false,
            link_grace: DEFAULT_LINK_GRACE,
            every_peer_elects: false,
        }
    }

    /// A random (v4) UUID with the defaults of [`NodeConfig::new`].
    pub fn random() -> Self {
        Self::new(Uuid::new_v4())
    }
}
