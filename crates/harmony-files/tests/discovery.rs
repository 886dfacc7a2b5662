//! A node serving files advertises X-FILEMQ; another node finds the server by discovery
//! (beacons on loopback) and mirrors it.

use std::time::Duration;

use harmony_files::discovery::{advertise, find_server, FILEMQ_HEADER};
use harmony_files::{FileClient, FileServer, SyncEvent};
use harmony_node::Node;

#[tokio::test]
async fn clients_find_servers_through_zre_headers() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("found.txt"), b"found by discovery\n").unwrap();
    harmony_testkit::settled(&src.path().join("found.txt"));
    let server = FileServer::builder()
        .publish(src.path(), "/")
        .scan_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let port = harmony_testkit::free_udp_port();
    let _serving = Node::builder()
        .name("serving")
        .loopback()
        .port(port)
        .interval(Duration::from_millis(50))
        .header(FILEMQ_HEADER, advertise(server.endpoint()))
        .start()
        .await
        .unwrap();
    let mut looking = Node::builder()
        .name("looking")
        .loopback()
        .port(port)
        .interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let endpoint = find_server(&mut looking, Duration::from_secs(20))
        .await
        .expect("a server is found");
    assert_eq!(endpoint, server.endpoint());
    let dest = tempfile::tempdir().unwrap();
    let mut client = FileClient::builder(dest.path(), endpoint).start().unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), client.next_event())
            .await
            .expect("an event")
        {
            Some(SyncEvent::Updated { name, .. }) => {
                assert_eq!(name, "found.txt");
                break;
            }
            Some(_) => {}
            None => panic!("client stopped"),
        }
    }
    assert_eq!(
        std::fs::read(dest.path().join("found.txt")).unwrap(),
        b"found by discovery\n"
    );
    client.stop().unwrap();
}
