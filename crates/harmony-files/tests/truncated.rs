//! The sans-IO server when a published file is cut short after its manifest was made: the
//! client whose chunk can no longer be filled has its state dropped and its connection
//! closed by the driver ([`Server::poll_close`]), the others go on, and the client, back with
//! its resume point, ends with the file as it now is once that version is published.

mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use harmony_files::{Client, ClientConfig, FileOp, Manifest, Server, ServerEvent};
use support::{data, server, FileSource, MemDest, MemSource, CHUNK};

fn client(path: &str, partial: Vec<harmony_files::ResumePoint>, now: Instant) -> Client {
    let config = ClientConfig {
        subscriptions: vec![path.into()],
        credit_window: 2_000,
        ..ClientConfig::default()
    };
    Client::new(config, vec![], partial, now)
}

/// One exchange: every client's messages to the server, then what the server sends (as much
/// as credit allows) to its clients. Returns whether anything moved.
fn round(
    server: &mut Server,
    source: &mut dyn harmony_files::Source,
    clients: &mut [(Bytes, Client, MemDest)],
    now: Instant,
) -> bool {
    let mut any = false;
    for (id, client, _) in clients.iter_mut() {
        while let Some(msg) = client.poll_transmit() {
            server.handle_message(id, &msg.to_bytes().unwrap(), now);
            any = true;
        }
    }
    while let Some((to, frame)) = server.poll_transmit_frame(source) {
        if let Some((_, client, dest)) = clients.iter_mut().find(|(id, ..)| *id == to) {
            client.handle_message(&frame, now);
            dest.apply(client);
        }
        any = true;
    }
    any
}

fn written(dest: &MemDest, name: &str) -> usize {
    match &dest.partial {
        Some((n, data)) if n == name => data.len(),
        _ => dest.files.get(name).map_or(0, Vec::len),
    }
}

#[test]
fn a_file_cut_short_closes_that_clients_connection_and_it_resumes_to_the_new_version() {
    let now = Instant::now();
    let (f, g) = (data(10_500, 1), data(9_000, 2));
    let mut source = MemSource::default();
    source.0.insert("/a/f".into(), f.clone());
    source.0.insert("/b/g".into(), g.clone());
    let mut server = server();
    server.file_changed_with_manifest("/a/f", 10_500, 1, Manifest::of(&f, CHUNK));
    server.file_changed_with_manifest("/b/g", 9_000, 1, Manifest::of(&g, CHUNK));
    let (a, b) = (Bytes::from_static(b"A"), Bytes::from_static(b"B"));
    let mut clients = [
        (a.clone(), client("/a", vec![], now), MemDest::default()),
        (b.clone(), client("/b", vec![], now), MemDest::default()),
    ];
    let cut = 4_500;
    let mut closed = Vec::new();
    for _ in 0..100 {
        if written(&clients[0].2, "f") >= 2_000 && source.0["/a/f"].len() > cut {
            // Both transfers are under way; `/f` shrinks in place, its manifest unchanged.
            assert!(written(&clients[1].2, "g") < g.len());
            let short = source.0["/a/f"].slice(..cut);
            source.0.insert("/a/f".into(), short);
        }
        let moved = round(&mut server, &mut source, &mut clients, now);
        closed.extend(std::iter::from_fn(|| server.poll_close()));
        if !moved {
            break;
        }
    }
    assert_eq!(
        closed,
        std::slice::from_ref(&a),
        "only A's connection is closed"
    );
    let events: Vec<ServerEvent> = std::iter::from_fn(|| server.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e,
            ServerEvent::Truncated { peer, vpath, offset } if *peer == a && vpath == "/a/f" && *offset == 4_000)),
        "{events:?}"
    );
    assert_eq!(server.client_count(), 1, "A's state is dropped");
    // B was never disturbed and has its file; A has the part it could be sent, uncommitted.
    let (_, b_client, b_dest) = &clients[1];
    assert_eq!(b_client.error(), None);
    assert_eq!(b_dest.files["g"], g[..]);
    assert!(clients[0].2.files.is_empty());
    assert_eq!(written(&clients[0].2, "f"), 4_000);

    // A reconnects (a new routing id, as after any lost connection) with its resume point.
    // Until the new version is published its chunk still cannot be filled: closed again.
    let mut resume = clients[0].1.take_resume_points();
    assert_eq!(resume.iter().map(|r| r.offset).collect::<Vec<_>>(), [4_000]);
    let partial = clients[0].2.partial.take();
    let again = Bytes::from_static(b"A2");
    let mut back = [(
        again.clone(),
        client("/a", resume.clone(), now),
        MemDest {
            partial: partial.clone(),
            ..MemDest::default()
        },
    )];
    for _ in 0..100 {
        if !round(&mut server, &mut source, &mut back, now) {
            break;
        }
    }
    assert_eq!(server.poll_close(), Some(again));
    assert!(back[0].2.files.is_empty());
    resume = back[0].1.take_resume_points();

    // The next scan publishes the file as it now is: A comes back, resumes, and ends with it.
    let now_f = source.0["/a/f"].clone();
    server.file_changed_with_manifest("/a/f", cut as u64, 2, Manifest::of(&now_f, CHUNK));
    let mut last = [(
        Bytes::from_static(b"A3"),
        client("/a", resume, now),
        MemDest {
            partial: back[0].2.partial.take(),
            ..MemDest::default()
        },
    )];
    for _ in 0..100 {
        if !round(&mut server, &mut source, &mut last, now) {
            break;
        }
    }
    assert_eq!(server.poll_close(), None);
    let (_, c, dest) = &last[0];
    assert_eq!(c.error(), None);
    assert_eq!(dest.files["f"], f[..cut]);
    assert!(
        dest.ops
            .iter()
            .any(|op| matches!(op, FileOp::Open { offset: 4_000, .. })),
        "resumed from what it had: {:?}",
        dest.ops
    );
}

/// The same when the chunks are left in their file (the driver sends those with sendfile;
/// here they are read back into their frames): the region that can no longer be filled
/// closes that client's connection, and nothing of it is delivered.
#[test]
fn a_file_cut_short_under_a_region_closes_that_clients_connection() {
    let now = Instant::now();
    let content = data(10_500, 3);
    let mut tmp = tempfile::NamedTempFile::new().unwrap();
    tmp.write_all(&content).unwrap();
    let mut source = FileSource {
        mem: MemSource::default(),
        file: Some(Arc::new(tmp.reopen().unwrap())),
    };
    source.mem.0.insert("/a/f".into(), content.clone());
    let mut server = server();
    server.file_changed_with_manifest("/a/f", 10_500, 1, Manifest::of(&content, CHUNK));
    let a = Bytes::from_static(b"A");
    let mut clients = [(a.clone(), client("/a", vec![], now), MemDest::default())];
    let mut cut = false;
    for _ in 0..100 {
        if !cut && written(&clients[0].2, "f") >= 2_000 {
            tmp.as_file().set_len(4_500).unwrap();
            cut = true;
        }
        if !round(&mut server, &mut source, &mut clients, now) {
            break;
        }
    }
    assert!(cut);
    assert_eq!(server.poll_close(), Some(a.clone()));
    assert_eq!(server.poll_close(), None);
    let events: Vec<ServerEvent> = std::iter::from_fn(|| server.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e,
            ServerEvent::Truncated { peer, vpath, offset } if *peer == a && vpath == "/a/f" && *offset == 4_000)),
        "{events:?}"
    );
    assert_eq!(server.client_count(), 0);
    let (_, c, dest) = &clients[0];
    assert_eq!(c.error(), None);
    assert!(dest.files.is_empty());
    assert_eq!(written(dest, "f"), 4_000);
}
