//! Subscriptions answered while the server is still hashing what it found (a large tree's
//! first scan): files go out as their manifests are made, each client's cache is honoured for
//! files published after it subscribed (same digest skipped, partial file resumed, a name
//! still pending not deleted), and the synced marker comes after every file found before the
//! subscription.

mod support;

use std::fs;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_files::{
    ext, Client, ClientConfig, FileClient, FileOp, FileServer, Manifest, ResumePoint, Server,
    ServerConfig, SyncEvent,
};
use harmony_wire::filemq::FilemqMessage;
use support::{data, pump, pump_recording, MemDest, MemSource};

const CHUNK: usize = 1000;

fn server() -> Server {
    Server::new(ServerConfig {
        chunk_size: CHUNK,
        ..ServerConfig::default()
    })
}

/// A Harmony client (extensions on) with a credit window of a few chunks.
fn client(now: Instant, have: Vec<(String, String)>, partial: Vec<ResumePoint>) -> Client {
    let config = ClientConfig {
        credit_window: 2_700,
        ..ClientConfig::default()
    };
    Client::new(config, have, partial, now)
}

/// What the manifest thread does when it is done with `vpath`: publish it with its manifest.
fn publish(server: &mut Server, source: &MemSource, vpath: &str) {
    let content = &source.0[vpath];
    let manifest = Manifest::of(content, CHUNK);
    server.file_changed_with_manifest(vpath, content.len() as u64, 1, manifest);
}

/// Moves every message until nothing moves; what the server sent is added to `sent`.
fn settle(
    server: &mut Server,
    source: &MemSource,
    clients: &mut [(Bytes, Client, MemDest)],
    sent: &mut Vec<(Bytes, FilemqMessage)>,
) {
    let now = Instant::now();
    pump_recording(server, &mut source.clone(), clients, now, 10_000, sent);
    for (id, client, _) in clients.iter() {
        assert_eq!(client.error(), None, "{id:?}");
    }
}

fn names(dest: &MemDest) -> Vec<&str> {
    dest.files.keys().map(String::as_str).collect()
}

/// Ops of one kind naming `name`.
fn opened(dest: &MemDest, name: &str) -> Vec<u64> {
    dest.ops
        .iter()
        .filter_map(|op| match op {
            FileOp::Open {
                name: n, offset, ..
            } if n == name => Some(*offset),
            _ => None,
        })
        .collect()
}

fn deleted(dest: &MemDest) -> Vec<&str> {
    dest.ops
        .iter()
        .filter_map(|op| match op {
            FileOp::Delete { name } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn files_go_out_as_they_are_published_and_synced_follows_the_last_one_found() {
    let now = Instant::now();
    let mut source = MemSource::default();
    for (i, vpath) in ["/a", "/b", "/c"].into_iter().enumerate() {
        source
            .0
            .insert(vpath.into(), data(2_500 + 1_000 * i, i as u8));
    }
    let mut server = server();
    // The scan found three files; only the first one's manifest is made yet.
    for vpath in ["/a", "/b", "/c"] {
        server.file_pending(vpath);
    }
    publish(&mut server, &source, "/a");
    let harmony = Bytes::from_static(b"H");
    let plain = Bytes::from_static(b"P");
    let legacy = ClientConfig {
        extensions: false,
        ..ClientConfig::default()
    };
    let mut clients = [
        (
            harmony.clone(),
            client(now, vec![], vec![]),
            MemDest::default(),
        ),
        (
            plain.clone(),
            Client::new(legacy, vec![], vec![], now),
            MemDest::default(),
        ),
    ];
    let mut sent = Vec::new();
    settle(&mut server, &source, &mut clients, &mut sent);
    // Answered at once, with what is published so far.
    for (_, c, dest) in &clients {
        assert_eq!(c.error(), None);
        assert!(c.is_subscribed());
        assert_eq!(names(dest), ["a"]);
    }
    assert!(!clients[0].1.is_synced());

    publish(&mut server, &source, "/b");
    settle(&mut server, &source, &mut clients, &mut sent);
    for (_, _, dest) in &clients {
        assert_eq!(names(dest), ["a", "b"]);
    }
    assert!(!clients[0].1.is_synced(), "synced before /c is published");

    publish(&mut server, &source, "/c");
    settle(&mut server, &source, &mut clients, &mut sent);
    for (_, c, dest) in &clients {
        assert_eq!(c.error(), None);
        assert_eq!(names(dest), ["a", "b", "c"]);
        for (name, content) in &dest.files {
            assert_eq!(content[..], source.0[&format!("/{name}")][..]);
        }
    }
    assert!(clients[0].1.is_synced());
    // One marker, after the last chunk of the last file; none to zeromq/filemq's client.
    let to_harmony: Vec<&FilemqMessage> = sent
        .iter()
        .filter(|(to, _)| *to == harmony)
        .map(|(_, m)| m)
        .collect();
    let markers: Vec<usize> = (0..to_harmony.len())
        .filter(|&i| *to_harmony[i] == FilemqMessage::Hugz)
        .collect();
    let last_chunk = to_harmony
        .iter()
        .rposition(|m| matches!(m, FilemqMessage::Cheezburger(ch) if ch.filename == "/c" && ch.eof))
        .expect("/c sent whole");
    assert_eq!(markers.len(), 1);
    assert!(markers[0] > last_chunk);
    assert!(!sent
        .iter()
        .any(|(to, m)| *to == plain && *m == FilemqMessage::Hugz));

    // Once nothing is pending, a late joiner gets everything and its marker at once.
    let mut late = [(
        Bytes::from_static(b"L"),
        client(now, vec![], vec![]),
        MemDest::default(),
    )];
    pump(&mut server, &mut source, &mut late, now, 10_000);
    assert!(late[0].1.is_synced());
    assert_eq!(names(&late[0].2), ["a", "b", "c"]);
}

#[test]
fn the_cache_is_honoured_for_files_published_after_the_subscription() {
    let now = Instant::now();
    let mut source = MemSource::default();
    for (i, name) in ["ready", "same", "stale", "part", "kept"]
        .into_iter()
        .enumerate()
    {
        source
            .0
            .insert(format!("/{name}"), data(3_000 + 500 * i, 10 + i as u8));
    }
    let mut server = server();
    publish(&mut server, &source, "/ready");
    publish(&mut server, &source, "/kept");
    // Pending: four names never published yet, and a new version of /kept being hashed.
    for vpath in ["/same", "/stale", "/part", "/skipped", "/removed", "/kept"] {
        server.file_pending(vpath);
    }
    // What the client has: whole files (some as the server has them, some not), and the
    // first 1 500 bytes of /part.
    let mut dest = MemDest::default();
    for (name, content) in [
        ("same", source.0["/same"].clone()),
        ("stale", Bytes::from_static(b"an older stale")),
        ("kept", source.0["/kept"].clone()),
        ("skipped", Bytes::from_static(b"skipped")),
        ("removed", Bytes::from_static(b"removed")),
        ("gone", Bytes::from_static(b"gone")),
    ] {
        dest.files.insert(name.into(), content.to_vec());
    }
    let have = dest
        .files
        .iter()
        .map(|(name, content)| (name.clone(), ext::digest_of(content)))
        .collect();
    let prefix = &source.0["/part"][..1_500];
    let mut hasher = ext::Hasher::new();
    hasher.update(prefix);
    let resume = ResumePoint {
        name: "part".into(),
        offset: 1_500,
        hasher,
    };
    let mut clients = [(
        Bytes::from_static(b"A"),
        client(now, have, vec![resume]),
        dest,
    )];
    let step = |server: &mut Server, clients: &mut [(Bytes, Client, MemDest)]| {
        settle(server, &source, clients, &mut Vec::new());
    };
    step(&mut server, &mut clients);
    // Only the name neither published nor pending is deleted; /kept is the same, /ready new.
    assert_eq!(deleted(&clients[0].2), ["gone"]);
    assert_eq!(opened(&clients[0].2, "ready"), [0]);
    assert!(opened(&clients[0].2, "kept").is_empty());
    assert!(!clients[0].1.is_synced());

    // The same digest: not sent again.
    publish(&mut server, &source, "/same");
    step(&mut server, &mut clients);
    assert!(opened(&clients[0].2, "same").is_empty());
    // Another digest: sent whole.
    publish(&mut server, &source, "/stale");
    step(&mut server, &mut clients);
    assert_eq!(opened(&clients[0].2, "stale"), [0]);
    // Partly there: resumed where it stopped. (The partial file on disk; `MemDest` keeps
    // only the one open.)
    clients[0].2.partial = Some(("part".into(), source.0["/part"][..1_500].to_vec()));
    publish(&mut server, &source, "/part");
    step(&mut server, &mut clients);
    assert_eq!(opened(&clients[0].2, "part"), [1_500]);
    // Given up (changed while read, unreadable) and never published: the copy goes, as for
    // any name not published.
    server.file_skipped("/skipped");
    step(&mut server, &mut clients);
    assert_eq!(deleted(&clients[0].2), ["gone", "skipped"]);
    // Given up, but an earlier version is published: it stays.
    server.file_skipped("/kept");
    step(&mut server, &mut clients);
    assert_eq!(deleted(&clients[0].2), ["gone", "skipped"]);
    assert!(!clients[0].1.is_synced(), "/removed is still pending");
    // Removed from disk before its manifest was made: deleted too, and that was the last.
    server.file_removed("/removed");
    step(&mut server, &mut clients);
    assert_eq!(deleted(&clients[0].2), ["gone", "skipped", "removed"]);
    assert!(clients[0].1.is_synced());
    let dest = &clients[0].2;
    assert_eq!(names(dest), ["kept", "part", "ready", "same", "stale"]);
    for (name, content) in &dest.files {
        assert_eq!(content[..], source.0[&format!("/{name}")][..], "{name}");
    }
}

#[test]
fn a_synced_marker_waits_only_for_files_pending_when_its_client_subscribed() {
    let now = Instant::now();
    let mut source = MemSource::default();
    source.0.insert("/a".into(), data(1_500, 1));
    source.0.insert("/z".into(), data(2_500, 2));
    source.0.insert("/done/f".into(), data(500, 3));
    let mut server = server();
    server.file_pending("/a");
    publish(&mut server, &source, "/done/f");
    server.file_pending("/done-not-under");
    // Nothing pending under its path: synced at once.
    let config = ClientConfig {
        subscriptions: vec!["/done".into()],
        ..ClientConfig::default()
    };
    let mut done = [(
        Bytes::from_static(b"D"),
        Client::new(config, vec![], vec![], now),
        MemDest::default(),
    )];
    pump(&mut server, &mut source, &mut done, now, 10_000);
    assert!(done[0].1.is_synced());
    assert_eq!(names(&done[0].2), ["f"]);
    server.file_skipped("/done-not-under");

    let mut clients = [
        (
            Bytes::from_static(b"X"),
            client(now, vec![], vec![]),
            MemDest::default(),
        ),
        (
            Bytes::from_static(b"Y"),
            client(now, vec![], vec![]),
            MemDest::default(),
        ),
    ];
    // X subscribes while /a is pending; then a later scan finds /z; then Y subscribes.
    pump(&mut server, &mut source, &mut clients[..1], now, 10_000);
    server.file_pending("/z");
    // Found again while pending (e.g. touched): still the one X waits for.
    server.file_pending("/a");
    pump(&mut server, &mut source, &mut clients, now, 10_000);
    assert!(clients
        .iter()
        .all(|(_, c, _)| c.is_subscribed() && !c.is_synced()));

    publish(&mut server, &source, "/a");
    pump(&mut server, &mut source, &mut clients, now, 10_000);
    assert!(clients[0].1.is_synced(), "X waited for /a only");
    assert!(!clients[1].1.is_synced(), "Y waits for /z too");

    publish(&mut server, &source, "/z");
    pump(&mut server, &mut source, &mut clients, now, 10_000);
    for (_, c, dest) in &clients {
        assert_eq!(c.error(), None);
        assert!(c.is_synced());
        assert_eq!(names(dest), ["a", "done/f", "z"]);
    }
}

#[test]
fn a_synced_marker_waits_for_no_pending_file_outside_its_path() {
    let now = Instant::now();
    let mut source = MemSource::default();
    source.0.insert("/big/a".into(), data(1_500, 1));
    source.0.insert("/docs/g".into(), data(700, 2));
    source.0.insert("/docs/h".into(), data(300, 3));
    source.0.insert("/docs-other".into(), data(300, 4));
    let mut server = server();
    // The large file found first, then one under the client's path, and a name that only
    // shares its first letters.
    server.file_pending("/big/a");
    server.file_pending("/docs/g");
    server.file_pending("/docs-other");
    publish(&mut server, &source, "/docs/h");
    let config = ClientConfig {
        subscriptions: vec!["/docs".into()],
        ..ClientConfig::default()
    };
    let mut clients = [(
        Bytes::from_static(b"W"),
        Client::new(config, vec![], vec![], now),
        MemDest::default(),
    )];
    pump(&mut server, &mut source, &mut clients, now, 10_000);
    assert!(clients[0].1.is_subscribed() && !clients[0].1.is_synced());
    assert_eq!(names(&clients[0].2), ["h"]);

    publish(&mut server, &source, "/docs/g");
    pump(&mut server, &mut source, &mut clients, now, 10_000);
    let (_, client, dest) = &clients[0];
    assert_eq!(client.error(), None);
    assert!(
        client.is_synced(),
        "/big/a and /docs-other are still pending, but not under /docs"
    );
    assert_eq!(names(dest), ["g", "h"]);
    assert_eq!(dest.files["g"][..], source.0["/docs/g"][..]);
}

const DEADLINE: Duration = Duration::from_secs(60);

/// Reads events until one matches `until`; returns all of them, that one last.
async fn events_until(
    client: &mut FileClient,
    until: impl Fn(&SyncEvent) -> bool,
) -> Vec<SyncEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(event)) => {
                let done = until(&event);
                seen.push(event);
                if done {
                    return seen;
                }
            }
            Ok(None) => panic!("client stopped: {seen:?}"),
            Err(_) => panic!("timed out: {seen:?}"),
        }
    }
}

/// Writes `data` at `dir/name`, last modified a minute ago (stable at the first scan).
fn write_old(dir: &Path, name: &str, data: &[u8]) {
    let path = dir.join(name);
    fs::write(&path, data).unwrap();
    harmony_testkit::settled(&path);
}

fn is_updated(event: &SyncEvent, file: &str) -> bool {
    matches!(event, SyncEvent::Updated { name, .. } if name == file)
}

#[tokio::test]
async fn a_client_is_served_while_the_first_scan_is_still_being_hashed() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let content = |seed: u8, len: usize| data(len, seed).to_vec();
    write_old(src.path(), "f1.bin", &content(1, 300_000));
    write_old(src.path(), "f2.bin", &content(2, 200_000));
    write_old(src.path(), "f3.bin", &content(3, 100_000));
    // The client already has f2 as it is, and a file the server does not publish.
    fs::write(dest.path().join("f2.bin"), content(2, 200_000)).unwrap();
    fs::write(dest.path().join("old.bin"), b"old").unwrap();

    // The manifest thread makes one manifest per permit.
    let (permits, gate) = std_mpsc::channel();
    let mut server = FileServer::builder()
        .publish(src.path(), "/")
        .scan_interval(Duration::from_millis(50))
        .stable_after(Duration::from_millis(100))
        .manifest_permits(gate)
        .start()
        .await
        .unwrap();
    let mut client = FileClient::builder(dest.path(), server.endpoint())
        .config(ClientConfig {
            heartbeat: Duration::from_millis(100),
            ..ClientConfig::default()
        })
        .retry_after(Duration::from_millis(100))
        .start()
        .unwrap();

    // Nothing hashed yet, and the client is answered: the name the server does not have
    // goes, the one being hashed stays.
    let mut seen = events_until(
        &mut client,
        |e| matches!(e, SyncEvent::Deleted { name } if name == "old.bin"),
    )
    .await;
    assert!(dest.path().join("f2.bin").exists());
    assert!(tokio::time::timeout(Duration::ZERO, server.ready())
        .await
        .is_err());

    // One manifest made: its file arrives while the others still wait for theirs.
    permits.send(()).unwrap();
    seen.extend(events_until(&mut client, |e| is_updated(e, "f1.bin")).await);
    assert!(!seen.contains(&SyncEvent::Synced), "{seen:?}");
    assert!(!dest.path().join("f3.bin").exists());

    permits.send(()).unwrap();
    permits.send(()).unwrap();
    seen.extend(events_until(&mut client, |e| *e == SyncEvent::Synced).await);
    // f3 came before the marker; f2 was neither sent again nor deleted.
    let f3 = seen.iter().position(|e| is_updated(e, "f3.bin"));
    assert!(f3.is_some_and(|i| i < seen.len() - 1), "{seen:?}");
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            SyncEvent::Receiving { name, .. } | SyncEvent::Deleted { name } if name == "f2.bin"
        )),
        "{seen:?}"
    );
    for name in ["f1.bin", "f2.bin", "f3.bin"] {
        assert_eq!(
            fs::read(dest.path().join(name)).unwrap(),
            fs::read(src.path().join(name)).unwrap()
        );
    }
    assert!(!dest.path().join("old.bin").exists());
    server.ready().await.unwrap();
    client.stop().unwrap();
}
