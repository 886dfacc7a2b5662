//! Beacons between two network namespaces joined by a veth (10.77.0.0/24), created by each test:
//! automatic interface selection, directed broadcast, IPv6 multicast, and interop with pyre.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use harmony_beacon::{
    select_interface, Beacon, BeaconConfig, InterfaceSelect, ZreBeacon, DEFAULT_IPV6_GROUP,
};
use harmony_testkit::{python, require_netns, run, run_in_netns, NetnsPair};
use tokio::sync::Barrier;
use tokio::time::timeout;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Runs `fut` on a fresh single-thread runtime on a thread inside namespace `ns`.
fn block_on_in<F, Fut, T>(ns: &str, make: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    run_in_netns(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(make())
    })
}

fn payload(port: u16) -> ZreBeacon {
    ZreBeacon {
        uuid: Uuid::new_v4(),
        port,
        public_key: None,
    }
}

fn fast(interface: InterfaceSelect) -> BeaconConfig {
    BeaconConfig {
        interval: Duration::from_millis(100),
        interface,
        ..BeaconConfig::default()
    }
}

/// Receives until a beacon from `uuid` with a port matching `want_port` arrives.
async fn hear(
    beacon: &mut Beacon,
    uuid: Uuid,
    want_port: impl Fn(u16) -> bool,
) -> (ZreBeacon, SocketAddr) {
    timeout(WAIT, async {
        loop {
            let (b, from) = beacon.recv().await.expect("beacon running");
            if b.uuid == uuid && want_port(b.port) {
                return (b, from);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no beacon from {uuid}"))
}

#[test]
fn netns_auto_selects_the_veth_and_its_directed_broadcast() {
    require_netns();
    let pair = NetnsPair::create("bs");
    let selected = run_in_netns(&pair.a, || select_interface(&InterfaceSelect::Auto));
    let selected = selected.unwrap();
    assert_eq!(selected.name, pair.if_a);
    assert_eq!(selected.address.to_string(), NetnsPair::ADDR_A);
    assert_eq!(selected.broadcast.to_string(), NetnsPair::BROADCAST);
    assert!(!selected.loopback);
    assert_eq!(selected.tcp_endpoint(49152), "tcp://10.77.0.1:49152");
}

#[test]
fn netns_broadcast_reaches_the_other_namespace_both_ways() {
    require_netns();
    init_log();
    let pair = NetnsPair::create("bb");
    let (pa, pb) = (payload(1111), payload(2222));
    let barrier = Arc::new(Barrier::new(2));
    let if_b = pair.if_b.clone();
    let (ns_a, ns_b) = (pair.a.clone(), pair.b.clone());

    // A selects automatically; B names its interface.
    let bar = barrier.clone();
    let a = std::thread::spawn(move || {
        block_on_in(&ns_a, move || async move {
            let mut beacon = Beacon::start(&fast(InterfaceSelect::Auto), pa).unwrap();
            assert_eq!(
                beacon.interface().broadcast.to_string(),
                NetnsPair::BROADCAST
            );
            let (heard, from) = hear(&mut beacon, pb.uuid, |p| p != 0).await;
            bar.wait().await;
            beacon.stop().await.unwrap();
            (heard, from)
        })
    });
    let b = std::thread::spawn(move || {
        block_on_in(&ns_b, move || async move {
            let mut beacon = Beacon::start(&fast(InterfaceSelect::Name(if_b)), pb).unwrap();
            assert_eq!(beacon.interface().address.to_string(), NetnsPair::ADDR_B);
            let (heard, from) = hear(&mut beacon, pa.uuid, |p| p != 0).await;
            barrier.wait().await;
            // A stops after the barrier: its goodbye crosses too.
            let (goodbye, _) = hear(&mut beacon, pa.uuid, |p| p == 0).await;
            beacon.stop().await.unwrap();
            (heard, from, goodbye)
        })
    });
    let (a_heard, a_from) = a.join().unwrap();
    let (b_heard, b_from, goodbye) = b.join().unwrap();
    assert_eq!(a_heard, pb);
    assert_eq!(a_from.ip().to_string(), NetnsPair::ADDR_B);
    assert_eq!(b_heard, pa);
    assert_eq!(b_from.ip().to_string(), NetnsPair::ADDR_A);
    assert_eq!(goodbye.port, 0);
}

#[test]
fn netns_ipv6_multicast_reaches_the_other_namespace() {
    require_netns();
    init_log();
    let pair = NetnsPair::create("b6");
    // Unique local addresses without duplicate address detection, so they are usable at once.
    for (ns, ifname, addr) in [
        (&pair.a, &pair.if_a, "fd77::1/64"),
        (&pair.b, &pair.if_b, "fd77::2/64"),
    ] {
        run(Command::new("ip").args(["-n", ns, "-6", "addr", "add", addr, "dev", ifname, "nodad"]));
    }
    let config = BeaconConfig {
        ipv6_multicast: Some(DEFAULT_IPV6_GROUP),
        ..fast(InterfaceSelect::Auto)
    };
    let (pa, pb) = (payload(1111), payload(2222));
    let barrier = Arc::new(Barrier::new(2));
    let (ns_a, ns_b) = (pair.a.clone(), pair.b.clone());
    let (config_a, bar) = (config.clone(), barrier.clone());
    let a = std::thread::spawn(move || {
        block_on_in(&ns_a, move || async move {
            let mut beacon = Beacon::start(&config_a, pa).unwrap();
            let iface = beacon.interface().clone();
            let heard = hear(&mut beacon, pb.uuid, |p| p != 0).await;
            bar.wait().await;
            beacon.stop().await.unwrap();
            (iface, heard)
        })
    });
    let b = std::thread::spawn(move || {
        block_on_in(&ns_b, move || async move {
            let mut beacon = Beacon::start(&config, pb).unwrap();
            let heard = hear(&mut beacon, pa.uuid, |p| p != 0).await;
            barrier.wait().await;
            beacon.stop().await.unwrap();
            heard
        })
    });
    let (iface, (a_heard, a_from)) = a.join().unwrap();
    let (b_heard, b_from) = b.join().unwrap();
    assert_eq!(iface.address, "fd77::1".parse::<IpAddr>().unwrap());
    assert_eq!(iface.broadcast, IpAddr::V6(DEFAULT_IPV6_GROUP));
    assert_eq!(iface.tcp_endpoint(5), "tcp://[fd77::1]:5");
    assert_eq!((a_heard, b_heard), (pb, pa));
    assert_eq!(a_from.ip(), "fd77::2".parse::<IpAddr>().unwrap());
    assert_eq!(b_from.ip(), "fd77::1".parse::<IpAddr>().unwrap());
}

/// A real pyre node in namespace A; our beacon in namespace B on UDP 5670.
#[test]
fn netns_pyre_and_harmony_hear_each_other() {
    require_netns();
    init_log();
    let pair = NetnsPair::create("bp");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pyre_node.py");
    let mut child = NetnsPair::command(&pair.a, python())
        .arg(script)
        .arg("60")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start pyre");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let uuid_line = lines
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("pyre did not start")
        });
    let pyre_uuid = Uuid::parse_str(uuid_line.trim()).expect("pyre printed its uuid");

    let result = block_on_in(&pair.b, move || async move {
        let addr_b: Ipv4Addr = NetnsPair::ADDR_B.parse().unwrap();
        let inbox = tokio::net::TcpListener::bind((addr_b, 0)).await.unwrap();
        let ours = payload(inbox.local_addr().unwrap().port());
        let mut beacon = Beacon::start(&BeaconConfig::default(), ours).unwrap();
        assert_eq!(beacon.interface().address, IpAddr::V4(addr_b));

        // pyre's beacon: v1 (22 bytes), its uuid, a port where its inbox really listens.
        let (heard, from) = hear(&mut beacon, pyre_uuid, |p| p != 0).await;
        assert_eq!(heard.public_key, None);
        assert_eq!(heard.version(), 1);
        assert_eq!(from.ip().to_string(), NetnsPair::ADDR_A);
        let to_pyre = timeout(
            WAIT,
            tokio::net::TcpStream::connect((from.ip(), heard.port)),
        )
        .await
        .expect("connect to pyre's inbox in time");
        to_pyre.expect("pyre's inbox accepts on the advertised port");

        // pyre heard our beacon: it connects to the port we advertised.
        let (_stream, peer) = timeout(WAIT, inbox.accept())
            .await
            .expect("pyre connects to our advertised port")
            .unwrap();
        assert_eq!(peer.ip().to_string(), NetnsPair::ADDR_A);

        // pyre stops when its stdin closes and says goodbye with port 0.
        drop(stdin);
        let (goodbye, _) = hear(&mut beacon, pyre_uuid, |p| p == 0).await;
        beacon.stop().await.unwrap();
        (heard, goodbye)
    });
    let stopped = lines.recv_timeout(WAIT);
    let _ = child.kill();
    let _ = child.wait();
    let (heard, goodbye) = result;
    assert_ne!(heard.port, 0);
    assert_eq!(goodbye.port, 0);
    assert_eq!(stopped.as_deref(), Ok("stopped"));
}
