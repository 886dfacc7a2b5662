//! Runs one beacon in loopback mode (127.255.255.255, this machine only) for a few seconds and
//! prints the beacons it hears. Start it in two terminals to see them find each other:
//!
//! ```text
//! cargo run -p harmony-beacon --example loopback_beacon -- [udp-port] [seconds]
//! ```

use std::time::Duration;

use harmony_beacon::{Beacon, BeaconConfig, ZreBeacon};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), harmony_beacon::BeaconError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "harmony_beacon=info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let port = args.next().and_then(|a| a.parse().ok()).unwrap_or(5670);
    let seconds = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let payload = ZreBeacon {
        uuid: uuid::Uuid::new_v4(),
        // A made-up mailbox port: this example has no TCP side.
        port: 49152,
        public_key: None,
    };
    let mut beacon = Beacon::start(&BeaconConfig::loopback(port), payload)?;
    println!(
        "I am {} on {}, endpoint {}",
        payload.uuid,
        beacon.interface(),
        beacon.interface().tcp_endpoint(payload.port)
    );
    let deadline = tokio::time::sleep(Duration::from_secs(seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            heard = beacon.recv() => match heard {
                Some((b, from)) if b.port == 0 => println!("{} at {} left", b.uuid, from.ip()),
                Some((b, from)) => println!("heard {} at tcp://{}:{}", b.uuid, from.ip(), b.port),
                None => break,
            },
        }
    }
    beacon.stop().await
}
