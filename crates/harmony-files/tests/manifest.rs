//! The server's manifests (digest and chunk crc32s made once per file version): chunks and
//! digests come from them, chunks end on the manifest's pieces whatever the credit, resync
//! compares against them, and content that no longer matches its manifest never reaches a
//! client's final name.

mod support;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use harmony_files::{ext, Client, ClientConfig, FileOp, Manifest, ProtocolError, Server};
use harmony_wire::filemq::FilemqMessage;
use support::{data, pump, server, FileSource, MemDest, MemSource, CHUNK};

/// A client with a credit window that is no multiple of the chunk size: NOMs arrive mid-piece.
fn client(now: Instant, cache: Vec<(String, String)>) -> Client {
    let config = ClientConfig {
        credit_window: 2_700,
        ..ClientConfig::default()
    };
    Client::new(config, cache, vec![], now)
}

/// `client` (routing id `id`) syncs from `server` until nothing moves; what it ended with.
fn sync(
    server: &mut Server,
    source: &mut MemSource,
    id: &'static [u8],
    client: Client,
) -> (Client, MemDest) {
    let mut clients = [(Bytes::from_static(id), client, MemDest::default())];
    pump(server, source, &mut clients, Instant::now(), 10_000);
    let [(_, client, dest)] = clients;
    (client, dest)
}

/// Nothing reached a final name.
fn nothing_committed(dest: &MemDest) {
    assert!(dest.files.is_empty());
    assert!(!dest
        .ops
        .iter()
        .any(|op| matches!(op, FileOp::Commit { .. })));
}

#[test]
fn chunks_carry_the_manifests_crc32s_and_digest_and_end_on_its_pieces() {
    let now = Instant::now();
    let content = data(10_500, 1);
    let mut source = MemSource::default();
    source.0.insert("/f".into(), content.clone());
    let mut server = server();
    let manifest = Manifest::of(&content, CHUNK);
    server.file_changed_with_manifest("/f", content.len() as u64, 1, manifest.clone());
    let id = Bytes::from_static(b"A");
    let mut c = client(now, vec![]);
    let mut dest = MemDest::default();
    let mut chunks = Vec::new();
    for _ in 0..1000 {
        while let Some(m) = c.poll_transmit() {
            server.handle_message(&id, &m.to_bytes().unwrap(), now);
        }
        // Whatever the credit allows goes out before the client's NOM comes back.
        let mut sent = Vec::new();
        while let Some((_, msg)) = server.poll_transmit(&mut source) {
            sent.push(msg);
        }
        if sent.is_empty() {
            break;
        }
        for msg in sent {
            if let FilemqMessage::Cheezburger(ch) = &msg {
                chunks.push(ch.clone());
            }
            c.handle_message(&msg.to_bytes().unwrap(), now);
            dest.apply(&mut c);
        }
    }
    assert_eq!(c.error(), None);
    assert_eq!(dest.files["f"], content[..]);
    // The credit split some pieces.
    assert!(chunks.iter().any(|ch| ch.chunk.len() < CHUNK && !ch.eof));
    assert!(chunks.iter().any(|ch| ch.offset % CHUNK as u64 != 0));
    for ch in &chunks {
        // Never across a piece's end: after a split, the next chunk completes the piece.
        if !ch.chunk.is_empty() {
            let end = ch.offset + ch.chunk.len() as u64;
            assert_eq!(
                ch.offset / CHUNK as u64,
                (end - 1) / CHUNK as u64,
                "{}",
                ch.offset
            );
        }
        let crc = ext::header(&ch.headers, ext::HDR_CRC32).unwrap();
        assert_eq!(crc, ext::crc32_hex(&ch.chunk));
        if let Some(piece) = manifest.crc_of(ch.offset, ch.chunk.len(), content.len() as u64) {
            assert_eq!(crc, ext::crc_hex(piece));
        }
    }
    let last = chunks.last().unwrap();
    assert!(last.eof);
    assert_eq!(
        ext::header(&last.headers, ext::HDR_DIGEST),
        Some(&*manifest.digest)
    );
}

#[test]
fn content_changed_after_its_manifest_is_refused_and_never_committed() {
    let now = Instant::now();
    // The manifest is of the old content; the file now holds the same length, changed in its
    // third piece (as if rewritten in place before the next scan).
    let old = data(5_000, 2);
    let mut new = old.to_vec();
    new[2_500] ^= 0xff;
    let mut source = MemSource::default();
    source.0.insert("/f".into(), Bytes::from(new.clone()));
    let mut server = server();
    server.file_changed_with_manifest("/f", old.len() as u64, 1, Manifest::of(&old, CHUNK));
    // Whole pieces: the third one fails its crc32 and is never written.
    let whole = Client::new(ClientConfig::default(), vec![], vec![], now);
    let (c, dest) = sync(&mut server, &mut source, b"A", whole);
    assert!(
        matches!(
            c.error(),
            Some(ProtocolError::CorruptChunk { offset: 2_000, .. })
        ),
        "{:?}",
        c.error()
    );
    nothing_committed(&dest);
    let written: usize = dest
        .ops
        .iter()
        .map(|op| match op {
            FileOp::Write { data, .. } => data.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(written, 2_000);
    // A piece split by the credit has its crc32 made from what is sent: the whole-file
    // digest (the manifest's) still refuses the file.
    let (c, dest) = sync(&mut server, &mut source, b"B", client(now, vec![]));
    assert!(
        matches!(
            c.error(),
            Some(ProtocolError::CorruptChunk { .. } | ProtocolError::DigestMismatch { .. })
        ),
        "{:?}",
        c.error()
    );
    nothing_committed(&dest);

    // The next scan finds the new version: its own manifest, and the file goes out whole.
    server.file_changed_with_manifest("/f", new.len() as u64, 2, Manifest::of(&new, CHUNK));
    let (c, dest) = sync(&mut server, &mut source, b"C", client(now, vec![]));
    assert_eq!(c.error(), None);
    assert_eq!(dest.files["f"], new);
}

#[test]
fn resync_compares_the_cache_with_the_manifest_without_reading_the_file() {
    let now = Instant::now();
    let content = data(4_321, 3);
    let mut server = server();
    server.file_changed_with_manifest("/same", 4_321, 1, Manifest::of(&content, CHUNK));
    server.file_changed_with_manifest("/other", 4_321, 1, Manifest::of(&content, CHUNK));
    // Nothing to read: a transfer would find nothing, a digest made by reading would fail.
    let mut empty = MemSource::default();
    let digest = ext::digest_of(&content);
    let cache = vec![
        ("same".to_string(), digest.clone()),
        ("other".to_string(), ext::digest_of(b"stale")),
    ];
    let (c, dest) = sync(&mut server, &mut empty, b"A", client(now, cache));
    assert_eq!(c.error(), None);
    assert!(c.is_synced());
    // The file the client has was skipped; the stale one was tried (and is not readable here).
    assert!(!dest
        .ops
        .iter()
        .any(|op| matches!(op, FileOp::Open { name, .. } if name == "same")));
    assert!(dest.files.is_empty());
}

#[test]
fn subscriptions_wait_for_the_listing_and_heartbeats_keep_the_client_meanwhile() {
    let start = Instant::now();
    let mut server = server();
    // A driver may hold subscriptions until it has published what it found (`FileServer`
    // answers at once instead: see first_hashing.rs).
    server.hold_subscriptions();
    let mut source = MemSource::default();
    let content = data(3_000, 4);
    source.0.insert("/f".into(), content.clone());
    let heartbeat = ClientConfig::default().heartbeat;
    let mut clients = [(
        Bytes::from_static(b"A"),
        client(start, vec![]),
        MemDest::default(),
    )];
    // Longer than the client's patience (max_missed heartbeats) without an answer to ICANHAZ.
    for beat in 0..6u32 {
        let now = start + heartbeat * beat;
        clients[0].1.handle_timeout(now);
        pump(&mut server, &mut source, &mut clients, now, 10_000);
        let (_, c, _) = &clients[0];
        assert_eq!(c.error(), None, "beat {beat}");
        assert!(!c.is_subscribed());
    }
    server.file_changed_with_manifest("/f", 3_000, 1, Manifest::of(&content, CHUNK));
    server.release_subscriptions();
    pump(
        &mut server,
        &mut source,
        &mut clients,
        start + heartbeat * 6,
        10_000,
    );
    let (_, c, dest) = &clients[0];
    assert_eq!(c.error(), None);
    // The initial listing, and the synced marker after it, include the file.
    assert!(c.is_synced());
    assert_eq!(dest.files["f"], content[..]);
}

/// What a client is sent for `/f` through [`Server::poll_transmit_region`].
#[derive(Default)]
struct Sent {
    /// Every frame (a region read back behind its head).
    frames: Vec<Bytes>,
    /// How many of them were regions.
    regions: usize,
    /// The read-ahead requests, in order.
    asked: Vec<std::ops::Range<u64>>,
    /// Each region's `(offset, len)`, and how many requests were made when it was returned.
    queued: Vec<(u64, u64, usize)>,
}

fn frames_sent(content: &Bytes, with_manifest: bool, file: bool, extensions: bool) -> Sent {
    let now = Instant::now();
    let mut tmp = tempfile::NamedTempFile::new().unwrap();
    tmp.write_all(content).unwrap();
    let mut source = FileSource {
        mem: MemSource::default(),
        file: file.then(|| Arc::new(tmp.reopen().unwrap())),
    };
    source.mem.0.insert("/f".into(), content.clone());
    let mut server = server();
    if with_manifest {
        let manifest = Manifest::of(content, CHUNK);
        server.file_changed_with_manifest("/f", content.len() as u64, 1, manifest);
    } else {
        server.file_changed("/f", content.len() as u64, 1);
    }
    let id = Bytes::from_static(b"A");
    let config = ClientConfig {
        credit_window: 2_700,
        extensions,
        ..ClientConfig::default()
    };
    let mut c = Client::new(config, vec![], vec![], now);
    let mut dest = MemDest::default();
    let mut out = Sent::default();
    for _ in 0..1000 {
        while let Some(m) = c.poll_transmit() {
            server.handle_message(&id, &m.to_bytes().unwrap(), now);
        }
        let mut sent = Vec::new();
        while let Some((_, head, region)) = server.poll_transmit_region(&mut source) {
            while let Some(r) = server.poll_readahead() {
                let start = r.offset();
                out.asked.push(start..start + r.len() as u64);
            }
            let frame = match region {
                Some(region) => {
                    out.regions += 1;
                    out.queued
                        .push((region.offset(), region.len() as u64, out.asked.len()));
                    let mut frame = head.to_vec();
                    let mut body = vec![0; region.len()];
                    region
                        .file()
                        .read_exact_at(&mut body, region.offset())
                        .unwrap();
                    frame.extend_from_slice(&body);
                    Bytes::from(frame)
                }
                None => head,
            };
            sent.push(frame);
        }
        if sent.is_empty() {
            break;
        }
        for frame in sent {
            c.handle_message(&frame, now);
            dest.apply(&mut c);
            out.frames.push(frame);
        }
    }
    assert_eq!(c.error(), None);
    assert_eq!(dest.files["f"], content[..]);
    out
}

#[test]
fn chunks_left_in_their_file_are_the_same_frames_and_only_when_nothing_needs_the_content() {
    let content = data(10_500, 3);
    for extensions in [true, false] {
        let read = frames_sent(&content, true, false, extensions);
        assert_eq!(read.regions, 0, "a source without files: every chunk read");
        let read = read.frames;
        let sent = frames_sent(&content, true, true, extensions);
        let regions = sent.regions;
        assert_eq!(sent.frames, read, "the same bytes on the wire");
        // Every chunk with content: the credit splits some pieces, and a split piece's crc32
        // is not in the manifest, so those are read.
        let with_content = read
            .iter()
            .filter(|f| matches!(support::decode(f), FilemqMessage::Cheezburger(ch) if !ch.chunk.is_empty()))
            .count();
        assert!(
            regions > 0 && regions <= with_content,
            "{regions} of {with_content}"
        );
        if !extensions {
            // No crc32 to send: every chunk of content stays in the file.
            assert_eq!(regions, with_content);
        }
    }
    // Without a manifest a Harmony client's chunks are hashed as they go: always read.
    let sent = frames_sent(&content, false, true, true);
    assert_eq!(sent.regions, 0);
    assert!(
        sent.asked.is_empty(),
        "nothing read ahead for chunks that are read"
    );
}

/// Chunks sent from their file have the kernel read it ahead of them: each region was asked
/// for when (or before) it was queued, ahead by no more than the client's credit, in
/// disjoint requests (at most one per chunk) that never pass the end of the file. The
/// transfer is byte-identical (checked in `frames_sent`).
#[test]
fn chunks_sent_from_their_file_have_it_read_ahead_by_about_the_credit() {
    let content = data(10_500, 5);
    for extensions in [true, false] {
        let sent = frames_sent(&content, true, true, extensions);
        assert!(sent.regions > 0);
        let size = content.len() as u64;
        assert!(!sent.asked.is_empty());
        assert!(sent.asked.windows(2).all(|w| w[0].end <= w[1].start));
        assert!(sent.asked.iter().all(|r| r.start < r.end && r.end <= size));
        assert!(sent.asked.len() <= sent.regions);
        for &(offset, len, asked_then) in &sent.queued {
            // Every byte of it is in some request made by then.
            let mut at = offset;
            while let Some(r) = sent.asked[..asked_then].iter().find(|r| r.contains(&at)) {
                at = r.end;
            }
            assert!(
                at >= offset + len,
                "region {offset}+{len} not asked for in {:?}",
                sent.asked
            );
        }
        // Ahead of each region by at most the client's credit window (2 700 bytes).
        let mut previous = 0;
        for &(offset, len, asked_then) in &sent.queued {
            for r in &sent.asked[previous..asked_then] {
                assert!(r.end <= offset + len + 2_700, "{r:?} for {offset}+{len}");
            }
            previous = asked_then;
        }
    }
}
