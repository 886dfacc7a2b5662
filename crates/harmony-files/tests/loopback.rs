//! Harmony FILEMQ server and clients on loopback: many files in nested directories, changes
//! and deletes, a late joiner, two clients at once, sixteen beside a stalled one, the server
//! killed and restarted mid-transfer, a client restarted, CURVE.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use harmony_files::{ext, ClientConfig, FileClient, FileServer, ServerEvent, SyncEvent};
use harmony_security::{KeyPair, MechanismConfig, StandardAuthenticator};
use harmony_wire::filemq::FilemqMessage;
use harmony_zmtp::{DealerSocket, SocketOptions};
use tokio::time::{timeout, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// relative name -> digest of every regular file under `dir` (partial files included, so a
/// left-over one makes the comparison fail), but the client's own records.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            // The client renames and deletes while we look: what vanished is not there.
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push((entry.path(), rel));
            } else if rel.ends_with(harmony_files::path::CACHE_SUFFIX) {
                // The client's own record (and the new one being written).
                continue;
            } else if let Ok(data) = fs::read(entry.path()) {
                out.insert(rel, ext::digest_of(&data));
            }
        }
    }
    out
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn content(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + seed * 13) % 251) as u8)
        .collect()
}

async fn server(src: &Path) -> FileServer {
    server_with(src, SocketOptions::default(), "tcp://127.0.0.1:0").await
}

async fn server_with(src: &Path, options: SocketOptions, bind: &str) -> FileServer {
    FileServer::builder()
        .publish(src, "/")
        .bind(bind)
        .socket_options(options)
        .scan_interval(Duration::from_millis(50))
        .stable_after(Duration::from_millis(100))
        .start()
        .await
        .expect("server starts")
}

fn fast() -> ClientConfig {
    ClientConfig {
        heartbeat: Duration::from_millis(100),
        ..ClientConfig::default()
    }
}

fn client(dest: &Path, endpoint: &str, config: ClientConfig) -> FileClient {
    FileClient::builder(dest, endpoint)
        .config(config)
        .quiet_period(Duration::from_millis(300))
        .retry_after(Duration::from_millis(100))
        .start()
        .expect("client starts")
}

/// Reads events until `dest` holds exactly what `src` does and the event that completed it
/// has been read; returns the events seen.
async fn mirrored(client: &mut FileClient, src: &Path, dest: &Path) -> Vec<SyncEvent> {
    let want = tree(src);
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        let settled = matches!(
            seen.last(),
            Some(SyncEvent::Synced | SyncEvent::Updated { .. } | SyncEvent::Deleted { .. })
        );
        if settled && tree(dest) == want {
            // Events trail the disk: take those already sent.
            while let Ok(Some(event)) = timeout(Duration::ZERO, client.next_event()).await {
                seen.push(event);
            }
            if matches!(
                seen.last(),
                Some(SyncEvent::Synced | SyncEvent::Updated { .. } | SyncEvent::Deleted { .. })
            ) {
                return seen;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, client.next_event()).await {
            Ok(Some(event)) => seen.push(event),
            Ok(None) => panic!("client stopped: {seen:?}"),
            Err(_) => panic!(
                "not mirrored in time: want {:?}, have {:?}",
                want.keys().collect::<Vec<_>>(),
                tree(dest).keys().collect::<Vec<_>>()
            ),
        }
    }
}

#[tokio::test]
async fn many_files_changes_deletes_late_joiner_and_two_clients() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..60 {
        let len = match i % 4 {
            0 => 0,
            1 => 100,
            2 => 70_000,
            _ => 1_500_000,
        };
        write(
            src.path(),
            &format!("d{}/sub{}/f{i}.bin", i % 3, i % 2),
            &content(i, len),
        );
    }
    let server = server(src.path()).await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut first = client(a.path(), server.endpoint(), fast());
    let mut second = client(b.path(), server.endpoint(), fast());
    let mut events = mirrored(&mut first, src.path(), a.path()).await;
    mirrored(&mut second, src.path(), b.path()).await;
    // Deletes, changes and new files while both are connected.
    for i in 0..5 {
        fs::remove_file(src.path().join(format!("d{}/sub{}/f{i}.bin", i % 3, i % 2))).unwrap();
    }
    write(src.path(), "d1/sub1/f7.bin", b"changed");
    write(src.path(), "new/deep/er/file.txt", b"new file\n");
    events.extend(mirrored(&mut first, src.path(), a.path()).await);
    assert!(
        events.contains(&SyncEvent::Deleted {
            name: "d0/sub0/f0.bin".into()
        }),
        "{events:?}"
    );
    mirrored(&mut second, src.path(), b.path()).await;
    // A late joiner gets everything that exists now.
    let c = tempfile::tempdir().unwrap();
    let mut late = client(c.path(), server.endpoint(), fast());
    mirrored(&mut late, src.path(), c.path()).await;
    for client in [first, second, late] {
        client.stop().expect("no error");
    }
}

/// Sixteen clients at once, while one more has subscribed, taken one chunk and never grants
/// more credit: every other client mirrors the whole tree (the stalled one's transfer under way
/// holds nobody up), and the stalled one is sent no more than its credit.
#[tokio::test]
async fn many_clients_at_once_and_a_stalled_one_holds_nobody_up() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..12 {
        let name = format!("d{}/f{i}.bin", i % 3);
        write(src.path(), &name, &content(i, 200_000 + i * 10_000));
    }
    let server = server(src.path()).await;
    let stalled = DealerSocket::new(SocketOptions::default());
    stalled.connect(server.endpoint()).unwrap();
    let icanhaz = FilemqMessage::Icanhaz {
        path: "/".into(),
        options: vec![(ext::OPT_HARMONY.into(), "1".into())],
        cache: vec![],
    };
    const CREDIT: u64 = 1000;
    let nom = FilemqMessage::Nom {
        credit: CREDIT,
        sequence: 0,
    };
    for msg in [FilemqMessage::Ohai, icanhaz, nom] {
        stalled.send(msg.to_bytes().unwrap()).await.unwrap();
    }
    // Its first chunk: from now on it holds a transfer under way, and no credit.
    let mut taken = 0;
    while taken == 0 {
        let msg = timeout(DEADLINE, stalled.recv()).await.unwrap().unwrap();
        let frame = msg.first().unwrap();
        if let FilemqMessage::Cheezburger(c) = FilemqMessage::decode(frame, 1 << 20).unwrap() {
            taken += c.chunk.len() as u64;
        }
    }

    let dests: Vec<_> = (0..16).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut clients: Vec<_> = dests
        .iter()
        .map(|d| client(d.path(), server.endpoint(), fast()))
        .collect();
    for (client, dest) in clients.iter_mut().zip(&dests) {
        mirrored(client, src.path(), dest.path()).await;
    }
    for client in clients {
        client.stop().expect("no error");
    }
    // Nothing more went to the stalled client than its credit.
    while let Ok(Some(msg)) = stalled.try_recv() {
        if let Ok(FilemqMessage::Cheezburger(c)) =
            FilemqMessage::decode(msg.first().unwrap(), 1 << 20)
        {
            taken += c.chunk.len() as u64;
        }
    }
    assert!(taken <= CREDIT, "{taken} bytes sent on {CREDIT} of credit");
}

#[tokio::test]
async fn server_killed_mid_transfer_then_restarted_the_client_resumes() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "big.bin", &content(1, 48 << 20));
    let server = server(src.path()).await;
    let endpoint = server.endpoint().to_string();
    let dest = tempfile::tempdir().unwrap();
    // A small window so that the file is still moving when the server dies.
    let config = ClientConfig {
        credit_window: 1 << 20,
        ..fast()
    };
    let mut client = client(dest.path(), &endpoint, config);
    loop {
        match timeout(DEADLINE, client.next_event())
            .await
            .expect("progress")
        {
            Some(SyncEvent::Progress { offset, .. }) if offset >= 8 << 20 => break,
            Some(SyncEvent::Updated { .. }) => panic!("finished before the kill"),
            Some(_) => {}
            None => panic!("client stopped"),
        }
    }
    server.stop();
    let _server = server_with(src.path(), SocketOptions::default(), &endpoint).await;
    let events = mirrored(&mut client, src.path(), dest.path()).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SyncEvent::Disconnected { .. })),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SyncEvent::Receiving { offset, .. } if *offset >= 8 << 20)),
        "resumed from the offset: {events:?}"
    );
    client.stop().expect("no error");
}

#[tokio::test]
async fn a_restarted_client_resumes_from_what_it_has() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "big.bin", &content(2, 32 << 20));
    write(src.path(), "a-small.txt", b"small");
    // Both stable at the first scan, so they go out in name order: a-small.txt first.
    for name in ["big.bin", "a-small.txt"] {
        harmony_testkit::settled(&src.path().join(name));
    }
    let server = server(src.path()).await;
    let dest = tempfile::tempdir().unwrap();
    let config = ClientConfig {
        credit_window: 1 << 20,
        ..fast()
    };
    let mut first = client(dest.path(), server.endpoint(), config.clone());
    loop {
        match timeout(DEADLINE, first.next_event())
            .await
            .expect("progress")
        {
            Some(SyncEvent::Progress { name, offset })
                if name == "big.bin" && offset >= 4 << 20 =>
            {
                break
            }
            Some(SyncEvent::Updated { name, .. }) if name == "big.bin" => {
                panic!("finished too soon")
            }
            Some(_) => {}
            None => panic!("client stopped"),
        }
    }
    first.stop().expect("no error");
    assert!(dest.path().join(".big.bin.harmony-part").exists());
    assert!(
        !dest.path().join("big.bin").exists(),
        "nothing half written under the final name"
    );
    let mut second = client(dest.path(), server.endpoint(), config);
    let events = mirrored(&mut second, src.path(), dest.path()).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SyncEvent::Receiving { name, offset, .. } if name == "big.bin" && *offset >= 4 << 20)),
        "{events:?}"
    );
    // a-small.txt (sent first) was complete: the resync did not send it again.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SyncEvent::Receiving { name, .. } if name == "a-small.txt")),
        "{events:?}"
    );
    second.stop().expect("no error");
}

#[tokio::test]
async fn curve_secured_transfer() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "secret/plans.txt", &content(3, 300_000));
    let server_keys = KeyPair::generate();
    let options = SocketOptions::default().mechanism(MechanismConfig::CurveServer {
        keys: server_keys.clone(),
    });
    let server = server_with(src.path(), options, "tcp://127.0.0.1:0").await;
    let dest = tempfile::tempdir().unwrap();
    let mut good = FileClient::builder(dest.path(), server.endpoint())
        .config(fast())
        .socket_options(
            SocketOptions::default().mechanism(MechanismConfig::CurveClient {
                keys: KeyPair::generate(),
                server_key: *server_keys.public(),
            }),
        )
        .start()
        .unwrap();
    mirrored(&mut good, src.path(), dest.path()).await;
    good.stop().expect("no error");
    // A client that does not speak CURVE gets nothing.
    let other = tempfile::tempdir().unwrap();
    let mut plain = client(other.path(), server.endpoint(), fast());
    let quiet = timeout(Duration::from_millis(800), async {
        loop {
            if let Some(SyncEvent::Updated { .. }) | None = plain.next_event().await {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "a NULL client must not receive files");
    assert!(tree(other.path()).is_empty());
    let _ = plain.stop();
}

#[tokio::test]
async fn curve_client_keys_checked_by_the_authenticator() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "secret/plans.txt", &content(5, 200_000));
    let server_keys = KeyPair::generate();
    let allowed = KeyPair::generate();
    let auth = StandardAuthenticator::new().curve_allow_key(*allowed.public());
    let options = SocketOptions::default()
        .mechanism(MechanismConfig::CurveServer {
            keys: server_keys.clone(),
        })
        .authenticator(Arc::new(auth));
    let mut server = server_with(src.path(), options, "tcp://127.0.0.1:0").await;
    let curve_client = |keys: KeyPair| {
        SocketOptions::default().mechanism(MechanismConfig::CurveClient {
            keys,
            server_key: *server_keys.public(),
        })
    };
    // The allowed key syncs everything.
    let dest = tempfile::tempdir().unwrap();
    let mut good = FileClient::builder(dest.path(), server.endpoint())
        .config(fast())
        .socket_options(curve_client(allowed))
        .start()
        .unwrap();
    mirrored(&mut good, src.path(), dest.path()).await;
    good.stop().expect("no error");
    // An unknown key is refused: the client says why, the server reports the refusal, and
    // nothing reaches the client's destination.
    let other = tempfile::tempdir().unwrap();
    let mut stranger = FileClient::builder(other.path(), server.endpoint())
        .config(fast())
        .socket_options(curve_client(KeyPair::generate()))
        .retry_after(Duration::from_millis(100))
        .start()
        .unwrap();
    let reason = timeout(DEADLINE, async {
        loop {
            match stranger.next_event().await.expect("client running") {
                SyncEvent::Disconnected { reason } => return reason,
                SyncEvent::Updated { name, .. } => panic!("unknown key received {name}"),
                _ => {}
            }
        }
    })
    .await
    .expect("the refusal reaches the client");
    assert!(reason.starts_with("refused by the server"), "{reason}");
    let refused = timeout(DEADLINE, async {
        loop {
            if let ServerEvent::HandshakeFailed { reason, .. } =
                server.next_event().await.expect("server running")
            {
                return reason;
            }
        }
    })
    .await
    .expect("the server reports the refusal");
    assert!(!refused.is_empty());
    assert!(tree(other.path()).is_empty());
    stranger.stop().expect("a refusal is not a local error");
}

#[tokio::test]
async fn directories_published_at_virtual_paths_and_prefix_subscriptions() {
    let (photos, docs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, name) in [(&photos, "2024/cat.jpg"), (&docs, "notes.txt")] {
        write(dir.path(), name, name.as_bytes());
        harmony_testkit::settled(&dir.path().join(name));
    }
    let server = FileServer::builder()
        .publish(photos.path(), "/media/photos")
        .publish(docs.path(), "/docs")
        .scan_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    // Only /media: the photos arrive relative to the subscription, the docs do not.
    let dest = tempfile::tempdir().unwrap();
    let mut client = FileClient::builder(dest.path(), server.endpoint())
        .subscribe(vec!["/media".into()])
        .start()
        .unwrap();
    loop {
        match timeout(DEADLINE, client.next_event())
            .await
            .expect("an event")
        {
            Some(SyncEvent::Synced) => break,
            Some(SyncEvent::Disconnected { reason }) => panic!("{reason}"),
            Some(_) => {}
            None => panic!("client stopped"),
        }
    }
    let got: Vec<String> = tree(dest.path()).into_keys().collect();
    assert_eq!(got, ["photos/2024/cat.jpg"]);
    client.stop().unwrap();
}

#[tokio::test]
async fn without_extensions_as_zeromq_filemq_the_client_mirrors_then_goes_idle() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a/b.txt", b"plain FILEMQ");
    write(src.path(), "c.bin", &content(4, 2_500_000));
    let server = server(src.path()).await;
    let dest = tempfile::tempdir().unwrap();
    let config = ClientConfig {
        extensions: false,
        ..fast()
    };
    let mut client = client(dest.path(), server.endpoint(), config);
    // Nothing says "done" on the wire now: the quiet period does.
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        match timeout(deadline - Instant::now(), client.next_event()).await {
            Ok(Some(SyncEvent::Idle)) if tree(dest.path()) == tree(src.path()) => break,
            Ok(Some(SyncEvent::Synced)) => panic!("Synced without the extensions"),
            Ok(Some(event)) => seen.push(event),
            Ok(None) => panic!("client stopped: {seen:?}"),
            Err(_) => panic!("not idle and mirrored in time: {seen:?}"),
        }
    }
    // The server was not asked for sizes: none were declared; and no digest was computed,
    // since there is nothing to check it against.
    assert!(seen
        .iter()
        .all(|e| !matches!(e, SyncEvent::Receiving { size: Some(_), .. })));
    assert!(seen.iter().all(|e| !matches!(
        e,
        SyncEvent::Updated {
            digest: Some(_),
            ..
        }
    )));
    assert!(seen.iter().any(|e| matches!(e, SyncEvent::Updated { .. })));
    client.stop().unwrap();
}

/// A file truncated in place after its manifest was made, before it is sent: the chunk
/// announced over the cut cannot be filled, so that client's connection is closed (it
/// reconnects and resumes), while another client's transfer under way is untouched; once
/// the scanner has seen the new size the first client ends with the truncated file.
/// `curve`: `(server, client)` options with CURVE, where the driver reads and seals chunks
/// (and its core reports the truncation); without, chunks go out with sendfile.
async fn truncation_closes_that_connection_only(curve: Option<(SocketOptions, SocketOptions)>) {
    let (server_options, client_options) = curve.clone().unwrap_or_default();
    let (big, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = content(3, 8 << 20);
    write(big.path(), "big.bin", &data);
    write(other.path(), "other.bin", &content(4, 24 << 20));
    for path in [big.path().join("big.bin"), other.path().join("other.bin")] {
        harmony_testkit::settled(&path);
    }
    // The first scan's two manifests are made at once; the truncated file's new one only once
    // the short chunk has closed a connection on which some of the file came (until then the
    // old manifest is served, and each new connection fails on the short chunk again).
    let (permit, permits) = std::sync::mpsc::channel();
    for _ in 0..2 {
        permit.send(()).unwrap();
    }
    let mut permit = Some(permit);
    let mut server = FileServer::builder()
        .publish(big.path(), "/big")
        .publish(other.path(), "/other")
        .socket_options(server_options)
        .scan_interval(Duration::from_millis(200))
        .stable_after(Duration::from_millis(100))
        .manifest_permits(permits)
        .start()
        .await
        .unwrap();
    server.ready().await.unwrap();
    let (dest_b, dest_a) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dest: &Path, path: &str, credit_window: u64| {
        FileClient::builder(dest, server.endpoint())
            .config(ClientConfig {
                credit_window,
                ..fast()
            })
            .socket_options(client_options.clone())
            .subscribe(vec![path.into()])
            .retry_after(Duration::from_millis(100))
            .start()
            .unwrap()
    };
    // One chunk in flight at a time: `b`'s transfer is under way while `a`'s runs.
    let mut b = start(dest_b.path(), "/other", 1 << 20);
    loop {
        match timeout(DEADLINE, b.next_event()).await {
            Ok(Some(SyncEvent::Receiving { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("b never started receiving: {other:?}"),
        }
    }
    // In place (same inode, the manifest kept until the next scan), inside the fourth chunk.
    let cut = (3 << 20) + (1 << 19);
    fs::File::options()
        .write(true)
        .open(big.path().join("big.bin"))
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    let mut a = start(dest_a.path(), "/big", ClientConfig::default().credit_window);
    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !seen
        .iter()
        .any(|e| matches!(e, SyncEvent::Updated { size, .. } if *size == cut as u64))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, a.next_event()).await {
            Ok(Some(event)) => {
                let some_came = || {
                    seen.iter()
                        .any(|e| matches!(e, SyncEvent::Progress { offset, .. } if *offset > 0))
                };
                if matches!(event, SyncEvent::Disconnected { .. }) && some_came() {
                    // The manifest thread runs freely from now on.
                    drop(permit.take());
                }
                seen.push(event);
            }
            _ => panic!("the truncated file never arrived: {seen:?}"),
        }
    }
    let failed = seen
        .iter()
        .rposition(|e| matches!(e, SyncEvent::Disconnected { .. }))
        .unwrap_or_else(|| panic!("the short chunk closed the connection: {seen:?}"));
    assert!(
        seen[failed..]
            .iter()
            .any(|e| matches!(e, SyncEvent::Receiving { offset, .. } if *offset > 0)),
        "resumed from what it had: {seen:?}"
    );
    assert!(fs::read(dest_a.path().join("big.bin")).unwrap() == data[..cut]);
    assert_eq!(tree(dest_a.path()).len(), 1, "nothing partial left");
    // The other client was never disconnected and has its file.
    let events_b = mirrored(&mut b, other.path(), dest_b.path()).await;
    assert!(
        !events_b
            .iter()
            .any(|e| matches!(e, SyncEvent::Disconnected { .. })),
        "{events_b:?}"
    );
    if curve.is_some() {
        // The driver's core saw the cut: it closed `a`'s connection while `b`'s transfer was
        // still going out, and `b` was never dropped.
        let mut events = Vec::new();
        while let Ok(Some(event)) = timeout(Duration::ZERO, server.next_event()).await {
            events.push(event);
        }
        let cut_at = events
            .iter()
            .position(
                |e| matches!(e, ServerEvent::Truncated { vpath, .. } if vpath == "/big/big.bin"),
            )
            .unwrap_or_else(|| panic!("no truncation reported: {events:?}"));
        let ServerEvent::Truncated { peer: cut_peer, .. } = &events[cut_at] else {
            unreachable!()
        };
        let b_done = events
            .iter()
            .position(|e| matches!(e, ServerEvent::Sent(_, v) if v == "/other/other.bin"))
            .unwrap_or_else(|| panic!("b's file not sent: {events:?}"));
        assert!(cut_at < b_done, "b's transfer was under way: {events:?}");
        let ServerEvent::Sent(b_peer, _) = &events[b_done] else {
            unreachable!()
        };
        assert_ne!(cut_peer, b_peer);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, ServerEvent::Dropped(p, _) | ServerEvent::Truncated { peer: p, .. } if p == b_peer)),
            "{events:?}"
        );
    }
    a.stop().expect("no error");
    b.stop().expect("no error");
}

#[tokio::test]
async fn a_file_truncated_under_a_chunk_closes_that_connection_and_the_client_resumes() {
    truncation_closes_that_connection_only(None).await;
}

#[tokio::test]
async fn with_curve_a_file_truncated_under_a_chunk_closes_that_connection_and_the_client_resumes() {
    let keys = KeyPair::generate();
    let server =
        SocketOptions::default().mechanism(MechanismConfig::CurveServer { keys: keys.clone() });
    let client = SocketOptions::default().mechanism(MechanismConfig::CurveClient {
        keys: KeyPair::generate(),
        server_key: *keys.public(),
    });
    truncation_closes_that_connection_only(Some((server, client))).await;
}

/// Events up to and including `Synced`.
async fn until_synced(client: &mut FileClient) -> Vec<SyncEvent> {
    let mut seen = Vec::new();
    loop {
        match timeout(DEADLINE, client.next_event()).await {
            Ok(Some(SyncEvent::Synced)) => {
                seen.push(SyncEvent::Synced);
                return seen;
            }
            Ok(Some(SyncEvent::Disconnected { reason })) => panic!("{reason}: {seen:?}"),
            Ok(Some(event)) => seen.push(event),
            Ok(None) => panic!("client stopped: {seen:?}"),
            Err(_) => panic!("not synced in time: {seen:?}"),
        }
    }
}

fn received(events: &[SyncEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Receiving { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_restarted_client_reads_only_what_changed_since_its_record() {
    let src = tempfile::tempdir().unwrap();
    for (i, name) in ["a.txt", "b.txt", "d/c.bin", "d/e.txt", "f.txt"]
        .into_iter()
        .enumerate()
    {
        write(src.path(), name, &content(i, 1000 + i * 20_000));
        // Stable at the server's first scan: all of them are there at Synced.
        harmony_testkit::settled(&src.path().join(name));
    }
    let server = server(src.path()).await;
    let dest = tempfile::tempdir().unwrap();
    let start = |dest: &Path| client(dest, server.endpoint(), fast());
    let record = dest.path().join(harmony_files::path::DIGESTS_FILE);

    // First run: nothing there, everything sent; the digests go on record.
    let mut first = start(dest.path());
    let events = until_synced(&mut first).await;
    assert_eq!(
        events.first(),
        Some(&SyncEvent::Inventory { files: 0, read: 0 })
    );
    assert_eq!(received(&events).len(), 5, "{events:?}");
    first.stop().unwrap();
    assert!(record.exists());
    assert_eq!(tree(dest.path()), tree(src.path()));

    // Restarted: no file is read, none is sent again.
    let mut second = start(dest.path());
    let events = until_synced(&mut second).await;
    assert_eq!(
        events.first(),
        Some(&SyncEvent::Inventory { files: 5, read: 0 })
    );
    assert!(received(&events).is_empty(), "{events:?}");
    second.stop().unwrap();

    // A file changed behind the client's back (same length): that one is read, found to
    // differ from the server's, and sent again.
    let b = dest.path().join("b.txt");
    let mut data = fs::read(&b).unwrap();
    data[0] ^= 0xff;
    fs::write(&b, &data).unwrap();
    let mut third = start(dest.path());
    let events = until_synced(&mut third).await;
    assert_eq!(
        events.first(),
        Some(&SyncEvent::Inventory { files: 5, read: 1 })
    );
    assert_eq!(received(&events), ["b.txt"], "{events:?}");
    third.stop().unwrap();
    assert_eq!(tree(dest.path()), tree(src.path()));

    // A damaged record costs reads, nothing else.
    fs::write(&record, b"harmony-files digests 1\ngarbage\0\xff\xfe").unwrap();
    let mut fourth = start(dest.path());
    let events = until_synced(&mut fourth).await;
    assert_eq!(
        events.first(),
        Some(&SyncEvent::Inventory { files: 5, read: 5 })
    );
    assert!(received(&events).is_empty(), "{events:?}");
    fourth.stop().unwrap();
    assert_eq!(tree(dest.path()), tree(src.path()));
}

/// The next `Ready` the server reports.
async fn ready(server: &mut FileServer) -> ServerEvent {
    loop {
        match timeout(DEADLINE, server.next_event()).await {
            Ok(Some(event @ ServerEvent::Ready { .. })) => return event,
            Ok(Some(_)) => {}
            Ok(None) => panic!("server stopped"),
            Err(_) => panic!("no Ready in time"),
        }
    }
}

#[tokio::test]
async fn a_restarted_server_reads_only_what_changed_since_its_record() {
    let src = tempfile::tempdir().unwrap();
    let stable = |name: &str| harmony_testkit::settled(&src.path().join(name));
    let names = ["a.txt", "b.bin", "d/c.bin", "d/e.txt"];
    for (i, name) in names.into_iter().enumerate() {
        write(src.path(), name, &content(i, 500 + i * 700_000));
        stable(name);
    }
    let keep = tempfile::tempdir().unwrap();
    let record = keep.path().join("manifests");
    // The directory as given: the record is keyed by where it really is.
    let start_at = |dir: PathBuf| {
        let record = record.clone();
        async move {
            FileServer::builder()
                .publish(dir, "/")
                .bind("tcp://127.0.0.1:0")
                .scan_interval(Duration::from_millis(50))
                .stable_after(Duration::from_millis(100))
                .manifest_record(record)
                .start()
                .await
                .expect("server starts")
        }
    };
    let start = || start_at(src.path().to_path_buf());
    // Mirrors the server into a fresh destination: what it serves is right.
    let mirror_of = |server: &FileServer| {
        let endpoint = server.endpoint().to_string();
        let src = src.path().to_path_buf();
        async move {
            let dest = tempfile::tempdir().unwrap();
            let mut client = client(dest.path(), &endpoint, fast());
            mirrored(&mut client, &src, dest.path()).await;
            client.stop().unwrap();
        }
    };
    // The record is written by the manifest thread once it is caught up.
    let recorded = || async {
        let deadline = Instant::now() + DEADLINE;
        while !record.exists() {
            assert!(Instant::now() < deadline, "no record written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };

    let mut first = start().await;
    assert_eq!(
        ready(&mut first).await,
        ServerEvent::Ready { files: 4, read: 4 }
    );
    mirror_of(&first).await;
    recorded().await;
    first.stop();

    // Restarted, the directory named another way: every manifest from the record, and they
    // are right.
    let mut second = start_at(src.path().join("d").join("..")).await;
    assert_eq!(
        ready(&mut second).await,
        ServerEvent::Ready { files: 4, read: 0 }
    );
    mirror_of(&second).await;
    second.stop();

    // One file rewritten (same size, modification time set back as before): only that one is
    // read.
    let modified = record.metadata().unwrap().modified().unwrap();
    write(src.path(), "d/c.bin", &content(9, 500 + 2 * 700_000));
    stable("d/c.bin");
    let mut third = start().await;
    assert_eq!(
        ready(&mut third).await,
        ServerEvent::Ready { files: 4, read: 1 }
    );
    mirror_of(&third).await;
    let deadline = Instant::now() + DEADLINE;
    while record.metadata().unwrap().modified().unwrap() == modified {
        assert!(Instant::now() < deadline, "record not written again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    third.stop();

    // A file deleted from the tree leaves the record at the next start.
    let on_record = |name: &str| {
        String::from_utf8_lossy(&fs::read(&record).unwrap()).contains(&format!("/{name}\0"))
    };
    assert!(on_record("d/e.txt"));
    fs::remove_file(src.path().join("d/e.txt")).unwrap();
    let mut pruned = start().await;
    assert_eq!(
        ready(&mut pruned).await,
        ServerEvent::Ready { files: 3, read: 0 }
    );
    let deadline = Instant::now() + DEADLINE;
    while on_record("d/e.txt") {
        assert!(Instant::now() < deadline, "e.txt still on record");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pruned.stop();
    write(src.path(), "d/e.txt", &content(3, 500 + 3 * 700_000));
    harmony_testkit::settled(&src.path().join("d/e.txt"));

    // A damaged record: everything is read again, and served right.
    fs::write(
        &record,
        b"harmony-files manifests 1\n1 2.3 4.5 6 7 x\0a.txt\0",
    )
    .unwrap();
    let mut fourth = start().await;
    assert_eq!(
        ready(&mut fourth).await,
        ServerEvent::Ready { files: 4, read: 4 }
    );
    mirror_of(&fourth).await;
    fourth.stop();
}

#[tokio::test]
async fn a_mirror_published_in_turn_passes_on_the_files_not_the_clients_own() {
    let src = tempfile::tempdir().unwrap();
    for (i, name) in ["a.txt", "d/b.bin"].into_iter().enumerate() {
        write(src.path(), name, &content(i, 3000 + i * 50_000));
        harmony_testkit::settled(&src.path().join(name));
    }
    let first = server(src.path()).await;
    let middle = tempfile::tempdir().unwrap();
    let mut a = client(middle.path(), first.endpoint(), fast());
    until_synced(&mut a).await;
    a.stop().unwrap();
    // The middle holds the client's record besides the files, and a partial file.
    assert!(middle
        .path()
        .join(harmony_files::path::DIGESTS_FILE)
        .exists());
    write(middle.path(), ".c.txt.harmony-part", b"half of c");
    for name in [
        "a.txt",
        "d/b.bin",
        ".c.txt.harmony-part",
        harmony_files::path::DIGESTS_FILE,
    ] {
        harmony_testkit::settled(&middle.path().join(name));
    }

    let second = server(middle.path()).await;
    let end = tempfile::tempdir().unwrap();
    let mut b = client(end.path(), second.endpoint(), fast());
    let events = until_synced(&mut b).await;
    b.stop().unwrap();
    let mut got = received(&events);
    got.sort_unstable();
    assert_eq!(got, ["a.txt", "d/b.bin"], "{events:?}");
    assert_eq!(tree(end.path()), tree(src.path()));
}
