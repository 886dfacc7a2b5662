//! Beacon settings.

use std::net::Ipv6Addr;
use std::time::Duration;

use crate::error::Result;
use crate::interface::{select_interface, select_interface_v6, InterfaceSelect, SelectedInterface};

/// The ZRE discovery port (IANA "ZRE-DISC").
pub const DEFAULT_PORT: u16 = 5670;
/// Zyre's beacon interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// czmq's default IPv6 beacon group: all nodes on the link.
pub const DEFAULT_IPV6_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// How many received beacons wait for the application before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 256;

/// How a beacon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeaconConfig {
    /// UDP port beacons are sent to and received on.
    pub port: u16,
    /// Time between two beacons.
    pub interval: Duration,
    /// Which interface to use.
    pub interface: InterfaceSelect,
    /// `Some(group)`: IPv6 multicast to this group instead of IPv4 directed broadcast.
    pub ipv6_multicast: Option<Ipv6Addr>,
    /// Capacity of the queue of received beacons (at least 1); when full, new ones are dropped.
    pub queue: usize,
}

impl Default for BeaconConfig {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT,
            interval: DEFAULT_INTERVAL,
            interface: InterfaceSelect::Auto,
            ipv6_multicast: None,
            queue: DEFAULT_QUEUE,
        }
    }
}

impl BeaconConfig {
    /// Loopback mode on `port`: only nodes on this machine hear each other.
    pub fn loopback(port: u16) -> Self {
        Self {
            port,
            interface: InterfaceSelect::Loopback,
            ..Self::default()
        }
    }

    /// Selects the interface these settings name (without sending anything).
    pub fn select_interface(&self) -> Result<SelectedInterface> {
        match self.ipv6_multicast {
            Some(group) => select_interface_v6(&self.interface, group),
            None => select_interface(&self.interface),
        }
    }
}
