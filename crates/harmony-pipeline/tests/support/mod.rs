//! Shared helpers of the pipeline tests.
#![allow(dead_code, unreachable_pub)]

pub mod sim;

use std::time::Duration;

use harmony_node::{Node, NodeBuilder};
use harmony_pipeline::{Settings, Timing};
use harmony_security::KeyPair;

/// Settings for a member of pipeline `name` on loopback, beacons on `port`, with short timers.
pub fn settings(port: u16, name: &str) -> Settings {
    settings_of(node(port), name)
}

/// The same in encrypted mode: a new CURVE key pair for the node and the pipeline sockets.
pub fn curve_settings(port: u16, name: &str) -> Settings {
    settings_of(node(port).curve(KeyPair::generate()), name)
}

fn node(port: u16) -> NodeBuilder {
    Node::builder()
        .loopback()
        .port(port)
        .interval(Duration::from_millis(100))
}

fn settings_of(node: NodeBuilder, name: &str) -> Settings {
    Settings::new(node).pipeline(name).timing(Timing {
        heartbeat: Duration::from_millis(200),
        peer_timeout: Duration::from_millis(1500),
        lost_after: Duration::from_millis(1000),
        task_timeout: Duration::from_secs(10),
    })
}
