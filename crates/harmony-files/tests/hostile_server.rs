//! A hostile FILEMQ server on loopback (a bare ROUTER speaking the protocol by hand) cannot
//! make a Harmony client write outside its destination; a destination that vanishes is a
//! clear error with nothing half written under a final name.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use harmony_files::{ClientConfig, FileClient, FilesError, SyncEvent};
use harmony_wire::filemq::{Cheezburger, FilemqMessage};
use harmony_zmtp::{Message, RouterSocket, SocketOptions};
use support::chunk;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(20);

/// Answers OHAI and ICANHAZ, waits for the first NOM, then sends `chunks`; returns the
/// client's routing id.
async fn serve(router: &RouterSocket, chunks: &[Cheezburger]) -> Bytes {
    let (id, _) = handshake(router).await;
    for c in chunks {
        let frame = FilemqMessage::Cheezburger(c.clone()).to_bytes().unwrap();
        router
            .send(Message::from_frames([id.clone(), frame]))
            .await
            .unwrap();
    }
    id
}

async fn disconnected(client: &mut FileClient) -> String {
    loop {
        match timeout(DEADLINE, client.next_event())
            .await
            .expect("an event")
        {
            Some(SyncEvent::Disconnected { reason }) => return reason,
            Some(SyncEvent::Updated { name, .. }) => panic!("{name} was written"),
            Some(_) => {}
            None => panic!("client stopped"),
        }
    }
}

fn config() -> ClientConfig {
    ClientConfig {
        heartbeat: Duration::from_millis(200),
        credit_window: 1 << 20,
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn hostile_names_and_symlinks_never_escape_the_destination() {
    let router = RouterSocket::new(SocketOptions::default());
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let root = tempfile::tempdir().unwrap();
    let (dest, outside) = (root.path().join("dest"), root.path().join("outside"));
    fs::create_dir_all(&dest).unwrap();
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("link")).unwrap();
    let mut client = FileClient::builder(&dest, &endpoint)
        .config(config())
        .retry_after(Duration::from_millis(50))
        .start()
        .unwrap();
    let cases: [(&str, &str); 6] = [
        ("/../outside/x", "component"),
        ("//etc/x", "absolute"),
        ("/a\0b", "NUL"),
        ("/link/x", "symbolic link"),
        ("/link/../../outside/y", "component"),
        ("/ok", "beyond"),
    ];
    for (name, why) in cases {
        let mut c = chunk(name, 0, b"evil", true);
        if why == "beyond" {
            c.headers = vec![("X-SIZE".into(), "2".into())];
        }
        serve(&router, &[c]).await;
        let reason = disconnected(&mut client).await;
        assert!(reason.contains(why), "{name:?}: {reason}");
    }
    // An offset that jumps, and a chunk beyond the credit.
    serve(
        &router,
        &[chunk("/f", 0, b"abc", false), chunk("/f", 9, b"d", true)],
    )
    .await;
    assert!(disconnected(&mut client).await.contains("expected 3"));
    let huge: &'static [u8] = Box::leak(vec![0u8; 2 << 20].into_boxed_slice());
    serve(&router, &[chunk("/g", 0, huge, true)]).await;
    assert!(disconnected(&mut client).await.contains("credit"));
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    let left: Vec<String> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "link")
        .filter(|n| !n.ends_with(".harmony-part"))
        .collect();
    assert!(left.is_empty(), "nothing under a final name: {left:?}");
    client.stop().expect("protocol errors are not fatal");
}

/// A bare ROUTER on loopback and a client mirroring it into `dest`.
async fn router_and_client(dest: &Path) -> (RouterSocket, FileClient) {
    let router = RouterSocket::new(SocketOptions::default());
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let client = FileClient::builder(dest, &endpoint)
        .config(config())
        .start()
        .unwrap();
    (router, client)
}

/// The client stops on its own with a "not found" error under the vanished `dest`, having
/// renamed nothing into place and made nothing again.
async fn stops_on_the_vanished(mut client: FileClient, dest: &Path) {
    timeout(DEADLINE, async {
        while let Some(event) = client.next_event().await {
            assert!(!matches!(event, SyncEvent::Updated { .. }), "{event:?}");
        }
    })
    .await
    .expect("the client stops");
    match client.stop() {
        Err(FilesError::Io { path, source }) => {
            assert!(path.starts_with(dest), "{}", path.display());
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{source}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(!dest.exists());
}

#[tokio::test]
async fn a_vanished_destination_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("dest");
    let (router, client) = router_and_client(&dest).await;
    let id = serve(&router, &[]).await;
    fs::remove_dir_all(&dest).unwrap();
    let frame = FilemqMessage::Cheezburger(chunk("/sub/f", 0, b"data", true));
    router
        .send(Message::from_frames([id, frame.to_bytes().unwrap()]))
        .await
        .unwrap();
    stops_on_the_vanished(client, &dest).await;
}

#[tokio::test]
async fn a_destination_that_vanishes_mid_transfer_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("dest");
    let (router, mut client) = router_and_client(&dest).await;
    // Half of a file arrives and is on disk (in its partial file)...
    let id = serve(&router, &[chunk("/sub/deep/f", 0, b"first half ", false)]).await;
    let progress = timeout(DEADLINE, async {
        loop {
            match client.next_event().await.expect("client running") {
                SyncEvent::Progress { name, offset } => return (name, offset),
                SyncEvent::Updated { name, .. } => panic!("{name} complete too early"),
                _ => {}
            }
        }
    })
    .await
    .expect("the first chunk is written");
    assert_eq!(progress, ("sub/deep/f".to_string(), 11));
    // ...then the destination goes away, and the rest comes.
    fs::remove_dir_all(&dest).unwrap();
    let frame = FilemqMessage::Cheezburger(chunk("/sub/deep/f", 11, b"second half", true));
    router
        .send(Message::from_frames([id, frame.to_bytes().unwrap()]))
        .await
        .unwrap();
    stops_on_the_vanished(client, &dest).await;
}

/// Answers OHAI and ICANHAZ like `serve`, and returns the client's routing id with the cache
/// its ICANHAZ carried.
async fn handshake(router: &RouterSocket) -> (Bytes, Vec<(String, String)>) {
    let mut cache = Vec::new();
    loop {
        let msg = timeout(DEADLINE, router.recv())
            .await
            .expect("client talks")
            .unwrap();
        let id = msg[0].clone();
        let reply = match FilemqMessage::decode(&msg[1], 1 << 20).unwrap() {
            FilemqMessage::Ohai => FilemqMessage::OhaiOk,
            FilemqMessage::Icanhaz { cache: c, .. } => {
                cache = c;
                FilemqMessage::IcanhazOk
            }
            FilemqMessage::Nom { .. } => return (id, cache),
            _ => continue,
        };
        router
            .send(Message::from_frames([id, reply.to_bytes().unwrap()]))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_corrupted_chunk_is_fetched_again_and_never_written() {
    use harmony_files::ext;
    let router = RouterSocket::new(SocketOptions::default());
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let dest = tempfile::tempdir().unwrap();
    let mut client = FileClient::builder(dest.path(), &endpoint)
        .config(config())
        .retry_after(Duration::from_millis(50))
        .start()
        .unwrap();
    let size = vec![(ext::HDR_SIZE.to_string(), "11".to_string())];
    let with = |mut c: Cheezburger, extra: Vec<(String, String)>| {
        c.headers = size.clone();
        c.headers.extend(extra);
        FilemqMessage::Cheezburger(c).to_bytes().unwrap()
    };
    let crc = |data: &[u8]| vec![(ext::HDR_CRC32.to_string(), ext::crc32_hex(data))];
    let (id, _) = handshake(&router).await;
    for frame in [
        with(chunk("/f", 0, b"hello ", false), crc(b"hello ")),
        // "world" with the crc of something else: corrupted on the way.
        with(chunk("/f", 6, b"world", false), crc(b"w0rld")),
    ] {
        router
            .send(Message::from_frames([id.clone(), frame]))
            .await
            .unwrap();
    }
    assert!(disconnected(&mut client).await.contains("corrupted"));
    // The new connection asks to resume after the good bytes, which are all that is on disk.
    let (id, cache) = handshake(&router).await;
    let resume = ext::resume_value(&ext::digest_of(b"hello "), 6);
    assert_eq!(cache, [("f".to_string(), resume)]);
    assert_eq!(
        fs::read(dest.path().join(".f.harmony-part")).unwrap(),
        b"hello "
    );
    let digest = vec![(ext::HDR_DIGEST.to_string(), ext::digest_of(b"hello world"))];
    for frame in [
        with(chunk("/f", 6, b"world", false), crc(b"world")),
        with(chunk("/f", 11, b"", true), digest),
    ] {
        router
            .send(Message::from_frames([id.clone(), frame]))
            .await
            .unwrap();
    }
    loop {
        match timeout(DEADLINE, client.next_event())
            .await
            .expect("an event")
        {
            Some(SyncEvent::Updated { name, size, .. }) => {
                assert_eq!((name.as_str(), size), ("f", 11));
                break;
            }
            Some(SyncEvent::Disconnected { reason }) => panic!("{reason}"),
            Some(_) => {}
            None => panic!("client stopped"),
        }
    }
    assert_eq!(fs::read(dest.path().join("f")).unwrap(), b"hello world");
    client.stop().unwrap();
}
