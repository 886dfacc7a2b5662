//! Shared helpers of the pipeline tests.
#![allow(dead_code, unreachable_pub)]

pub mod sim;

use std::time::Duration;

use harmony_node::Node;
use harmony_pipeline::{Settings, Timing};

/// Settings for a member of pipeline `name` on loopback, beacons on `port`, with short timers.
pub fn settings(port: u16, name: &str) -> Settings {
    Settings::new(
        Node::builder()
            .loopback()
            .port(port)
            .interval(Duration::from_millis(100)),
    )
    .pipeline(name)
    .timing(Timing {
        heartbeat: Duration::from_millis(200),
        peer_timeout: Duration::from_millis(1500),
        lost_after: Duration::from_millis(1000),
        task_timeout: Duration::from_secs(10),
    })
}
