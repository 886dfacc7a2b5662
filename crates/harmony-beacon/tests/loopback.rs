//! Beacons on the loopback interface (127.255.255.255), each test on its own random UDP port.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use harmony_beacon::{Beacon, BeaconConfig, BeaconError, InterfaceSelect, ZreBeacon};
use tokio::time::timeout;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(5);

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config(port: u16, interval_ms: u64) -> BeaconConfig {
    BeaconConfig {
        interval: Duration::from_millis(interval_ms),
        ..BeaconConfig::loopback(port)
    }
}

fn payload(port: u16) -> ZreBeacon {
    ZreBeacon {
        uuid: Uuid::new_v4(),
        port,
        public_key: None,
    }
}

/// Receives until every uuid in `want` has been heard; returns every uuid heard meanwhile.
async fn hear_all(beacon: &mut Beacon, want: &HashSet<Uuid>) -> HashSet<Uuid> {
    let mut heard = HashSet::new();
    timeout(WAIT, async {
        while !want.is_subset(&heard) {
            let (b, from) = beacon.recv().await.expect("beacon running");
            assert_eq!(from.ip(), IpAddr::from(Ipv4Addr::LOCALHOST));
            heard.insert(b.uuid);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("heard only {heard:?}, wanted {want:?}"));
    heard
}

#[tokio::test]
async fn three_beacons_on_one_port_hear_each_other_not_themselves() {
    init_log();
    let port = harmony_testkit::free_udp_port();
    let mut beacons: Vec<Beacon> = (0..3)
        .map(|i| Beacon::start(&config(port, 50), payload(40000 + i)).unwrap())
        .collect();
    let all: HashSet<Uuid> = beacons.iter().map(|b| b.payload().uuid).collect();
    for b in &mut beacons {
        let me = b.payload().uuid;
        let others: HashSet<Uuid> = all.iter().copied().filter(|u| *u != me).collect();
        let heard = hear_all(b, &others).await;
        assert!(!heard.contains(&me), "a beacon heard itself");
    }
    // The advertised mailbox ports come through unchanged.
    let (b, _) = timeout(WAIT, beacons[0].recv()).await.unwrap().unwrap();
    assert!((40000..40003).contains(&b.port));
    for b in beacons {
        b.stop().await.unwrap();
    }
}

#[tokio::test]
async fn the_first_beacon_goes_out_at_once() {
    // With a one-minute interval, only the immediate first beacon can be heard in time.
    let port = harmony_testkit::free_udp_port();
    let mut a = Beacon::start(&config(port, 60_000), payload(1)).unwrap();
    let mut b = Beacon::start(&config(port, 60_000), payload(2)).unwrap();
    let (heard, _) = timeout(WAIT, a.recv()).await.unwrap().unwrap();
    assert_eq!(heard, *b.payload());
    // `b` may or may not have been listening when `a` sent its first beacon; then comes the
    // goodbye, and nothing else (the next interval is a minute away).
    let a_uuid = a.payload().uuid;
    a.stop().await.unwrap();
    let mut ports = Vec::new();
    while ports.last() != Some(&0) {
        let (heard, _) = timeout(WAIT, b.recv()).await.unwrap().unwrap();
        assert_eq!(heard.uuid, a_uuid);
        ports.push(heard.port);
    }
    assert!(ports == [0] || ports == [1, 0], "{ports:?}");
    b.stop().await.unwrap();
}

#[tokio::test]
async fn stop_and_drop_send_a_port_zero_beacon() {
    let port = harmony_testkit::free_udp_port();
    let mut watcher = Beacon::start(&config(port, 50), payload(1)).unwrap();
    for how in ["stop", "drop"] {
        let leaving = Beacon::start(&config(port, 50), payload(7777)).unwrap();
        let uuid = leaving.payload().uuid;
        hear_all(&mut watcher, &HashSet::from([uuid])).await;
        if how == "stop" {
            leaving.stop().await.unwrap();
        } else {
            drop(leaving);
        }
        let goodbye = timeout(WAIT, async {
            loop {
                let (b, _) = watcher.recv().await.unwrap();
                if b.uuid == uuid && b.port == 0 {
                    return b;
                }
                assert_eq!((b.uuid, b.port), (uuid, 7777), "{how}");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no goodbye after {how}"));
        assert_eq!(goodbye.public_key, None);
    }
    watcher.stop().await.unwrap();
}

#[tokio::test]
async fn junk_is_ignored_and_the_loop_goes_on() {
    init_log();
    let port = harmony_testkit::free_udp_port();
    let mut beacon = Beacon::start(&config(port, 60_000), payload(1)).unwrap();
    let me = *beacon.payload();
    let raw = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    raw.set_broadcast(true).unwrap();
    let send = |bytes: &[u8]| {
        raw.send_to(bytes, (Ipv4Addr::new(127, 255, 255, 255), port))
            .unwrap();
    };
    let valid = payload(4242);
    let (good, len) = valid.to_bytes();
    let good = &good[..len];
    let mut wrong_version = good.to_vec();
    wrong_version[3] = 2;
    let mut wrong_signature = good.to_vec();
    wrong_signature[0] = b'X';
    let (v3, v3_len) = ZreBeacon {
        public_key: Some([9; 32]),
        ..payload(5)
    }
    .to_bytes();
    let (own, own_len) = me.to_bytes();
    for junk in [
        &b""[..],
        b"hello",
        &good[..21],
        &[good, b"!"].concat(),
        &[0u8; 1500],
        &wrong_version,
        &wrong_signature,
        &v3[..v3_len],
        &own[..own_len],
    ] {
        send(junk);
    }
    send(good);
    let (heard, from) = timeout(WAIT, beacon.recv()).await.unwrap().unwrap();
    assert_eq!(heard, valid, "junk got through");
    assert_eq!(from, raw.local_addr().unwrap());
    // Still listening afterwards.
    send(&wrong_version);
    let again = payload(4343);
    let (bytes, len) = again.to_bytes();
    send(&bytes[..len]);
    let (heard, _) = timeout(WAIT, beacon.recv()).await.unwrap().unwrap();
    assert_eq!(heard, again);
    assert!(beacon.try_recv().is_none());
    beacon.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_new_beacons_and_keeps_going() {
    let port = harmony_testkit::free_udp_port();
    let config = BeaconConfig {
        queue: 2,
        ..config(port, 60_000)
    };
    let mut beacon = Beacon::start(&config, payload(1)).unwrap();
    let raw = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    raw.set_broadcast(true).unwrap();
    let send = |b: &ZreBeacon| {
        let (bytes, len) = b.to_bytes();
        raw.send_to(&bytes[..len], (Ipv4Addr::new(127, 255, 255, 255), port))
            .unwrap();
    };
    // The beacon task does not run before we await, so all 20 wait in the socket together.
    let flood: Vec<ZreBeacon> = (0..20).map(|i| payload(100 + i)).collect();
    flood.iter().for_each(send);
    for expected in &flood[..2] {
        let (heard, _) = timeout(WAIT, beacon.recv()).await.unwrap().unwrap();
        assert_eq!(heard, *expected);
    }
    let later = payload(999);
    send(&later);
    let (heard, _) = timeout(WAIT, beacon.recv()).await.unwrap().unwrap();
    assert_eq!(heard, later, "the 18 beacons beyond the queue were dropped");
    beacon.stop().await.unwrap();
}

#[tokio::test]
async fn the_interface_is_visible() {
    let port = harmony_testkit::free_udp_port();
    let beacon = Beacon::start(&config(port, 1000), payload(1)).unwrap();
    let iface = beacon.interface();
    assert!(iface.loopback);
    assert_eq!(iface.address, IpAddr::from(Ipv4Addr::LOCALHOST));
    assert_eq!(iface.broadcast, IpAddr::from([127, 255, 255, 255]));
    assert_eq!(iface.tcp_endpoint(49152), "tcp://127.0.0.1:49152");
    assert_eq!(beacon.port(), port);
    beacon.stop().await.unwrap();
}

#[tokio::test]
async fn clear_errors_for_a_taken_port_and_a_missing_interface() {
    // A socket that does not share the port (no SO_REUSEADDR/SO_REUSEPORT) holds it.
    let holder = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = holder.local_addr().unwrap().port();
    let err = Beacon::start(&config(port, 1000), payload(1)).unwrap_err();
    assert!(
        matches!(err, BeaconError::PortInUse { port: p, .. } if p == port),
        "{err}"
    );
    assert!(err.to_string().contains(&port.to_string()));

    let missing = BeaconConfig {
        interface: InterfaceSelect::Name("harmony-nope0".into()),
        ..config(harmony_testkit::free_udp_port(), 1000)
    };
    let err = Beacon::start(&missing, payload(1)).unwrap_err();
    assert!(
        matches!(err, BeaconError::InterfaceNotFound(ref n) if n == "harmony-nope0"),
        "{err}"
    );
    let err = Beacon::start(
        &BeaconConfig {
            interface: InterfaceSelect::Addr("192.0.2.254".parse().unwrap()),
            ..missing
        },
        payload(1),
    )
    .unwrap_err();
    assert!(matches!(err, BeaconError::InterfaceNotFound(_)), "{err}");
}

#[tokio::test]
async fn ipv6_loopback_mode_is_refused_clearly() {
    let config = BeaconConfig {
        ipv6_multicast: Some(harmony_beacon::DEFAULT_IPV6_GROUP),
        ..config(harmony_testkit::free_udp_port(), 1000)
    };
    let err = Beacon::start(&config, payload(1)).unwrap_err();
    assert!(
        matches!(err, BeaconError::InterfaceUnusable { .. }),
        "{err}"
    );
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let err =
        Beacon::start(&config(harmony_testkit::free_udp_port(), 1000), payload(1)).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
