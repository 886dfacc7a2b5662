//! ZRE (ZeroMQ Realtime Exchange, rfc/36 and draft rfc/43): discovery beacons and the messages
//! peers exchange over ZMTP.

pub mod beacon;
pub mod message;

pub use beacon::{Beacon, BEACON_V1_LEN, BEACON_V3_LEN};
pub use message::{extend_with_content, Hello, ZreBody, ZreMessage, ZRE_SIGNATURE, ZRE_VERSION};
