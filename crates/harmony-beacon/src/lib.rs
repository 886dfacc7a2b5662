//! ZRE discovery beacons (rfc/36) over UDP, as Zyre sends them.
//!
//! - [`select_interface`]: the interface, its address and directed broadcast (Zyre's rules), or
//!   [`InterfaceSelect::Loopback`] for one machine, or IPv6 multicast.
//! - [`Beacon::start`]: publishes a [`ZreBeacon`] every interval (the first at once), delivers
//!   foreign beacons with their source address, sends a port-0 goodbye on [`Beacon::stop`].
//!   Own beacons and anything that is not a beacon of our version are dropped quietly.
//! - [`BeaconCore`]: the schedule and filter without I/O, for tests and simulations.
//! - [`gossip`]: discovery without broadcast, czmq's ZGP over ZMTP (Zyre's `gossip_bind` /
//!   `gossip_connect`), with tuples that expire.
//!
//! ```no_run
//! # async fn demo() -> Result<(), harmony_beacon::BeaconError> {
//! use harmony_beacon::{Beacon, BeaconConfig, ZreBeacon};
//! let payload = ZreBeacon { uuid: uuid::Uuid::new_v4(), port: 49152, public_key: None };
//! let mut beacon = Beacon::start(&BeaconConfig::loopback(5670), payload)?;
//! println!("endpoint {}", beacon.interface().tcp_endpoint(49152));
//! while let Some((heard, from)) = beacon.recv().await {
//!     println!("{} at {}:{}", heard.uuid, from.ip(), heard.port);
//! }
//! beacon.stop().await
//! # }
//! ```

mod config;
mod core;
mod error;
pub mod gossip;
mod interface;
mod service;
mod socket;

pub use crate::config::{
    BeaconConfig, DEFAULT_INTERVAL, DEFAULT_IPV6_GROUP, DEFAULT_PORT, DEFAULT_QUEUE,
};
pub use crate::core::{BeaconCore, Ignored};
pub use crate::error::{BeaconError, Result};
pub use crate::interface::{
    choose, list_interfaces, select_interface, select_interface_v6, InterfaceAddr, InterfaceSelect,
    SelectedInterface, LOOPBACK_BROADCAST,
};
pub use crate::service::{Beacon, BeaconHandle, Heard};
/// The beacon datagram itself (from `harmony-wire`).
pub use harmony_wire::zre::Beacon as ZreBeacon;
