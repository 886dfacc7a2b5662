//! The checks harmony-files' fuzz targets run (`fuzz/fuzz_targets/files_*.rs`), replayed on the
//! committed corpus by `tests/fuzz_corpus.rs` so that they also run on stable Rust in CI.
//!
//! Each takes arbitrary bytes and panics only when something is wrong: a state machine that
//! panics on what a hostile peer sends, a client that would write outside its destination or
//! beyond what it was told, a server that sends more than a chunk or more than the credit, a
//! record on disk that cannot be read back without a panic.
//!
//! The session targets read their input as steps: a control byte, then (for a frame) a length
//! (2 bytes, big-endian) and that many bytes. See [`server_session`] and [`client_session`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harmony_wire::filemq::{FileOperation, FilemqMessage};

use crate::client::{Client, ClientConfig, FileOp, ResumePoint};
use crate::ext::{self, Hasher};
use crate::manifest::Manifest;
use crate::path;
use crate::record;
use crate::server::{MemSource, Server, ServerConfig};

/// Chunk size of the fuzzed server: small, so that files take several chunks.
const CHUNK: usize = 1000;
/// Largest frame the fuzzed peers accept.
const MAX_FRAME: usize = 1 << 16;
/// Most messages drained after each step (a bound, so that no input makes a loop run long).
const DRAIN: usize = 4096;

/// The next step of a session input: `(control, frame)`; the frame is empty for controls at or
/// above `0xc0`, which are actions rather than messages.
fn next_step(data: &mut &[u8]) -> Option<(u8, Bytes)> {
    let (&control, rest) = data.split_first()?;
    *data = rest;
    if control >= 0xc0 {
        return Some((control, Bytes::new()));
    }
    let len = match data {
        [a, b, rest @ ..] => {
            *data = rest;
            usize::from(u16::from_be_bytes([*a, *b]))
        }
        _ => {
            *data = &[];
            0
        }
    };
    let len = len.min(data.len());
    let (frame, rest) = data.split_at(len);
    *data = rest;
    Some((control, Bytes::copy_from_slice(frame)))
}

/// A server publishing a few files, fed frames from three clients. Control bytes below `0xc0`
/// are a frame from client `control % 3`; the others change the published files (a file
/// removed, rewritten, truncated under the server, found and pending, published late or given
/// up), let time pass or lose a client. After each step the server's output is drained and
/// checked: every frame decodes, no chunk is larger than the chunk size or goes beyond what
/// the client's credit allows, and every file sent to a client is under a path it asked for.
pub fn server_session(mut data: &[u8]) {
    let mut now = Instant::now();
    let mut server = Server::new(ServerConfig {
        chunk_size: CHUNK,
        max_frame: MAX_FRAME,
        ..ServerConfig::default()
    });
    let mut files = MemSource::default();
    let mut version = 1;
    let mut publish = |server: &mut Server, files: &mut MemSource, vpath: &str, len: usize| {
        let content: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        version += 1;
        server.file_changed_with_manifest(
            vpath,
            len as u64,
            version,
            Manifest::of(&content, CHUNK),
        );
        files.0.insert(vpath.to_string(), content.into());
    };
    publish(&mut server, &mut files, "/a", 2500);
    publish(&mut server, &mut files, "/d/b", 10);
    // Published without a manifest: digested while it is sent.
    files.0.insert("/d/e/c".into(), vec![3; 1500].into());
    server.file_changed("/d/e/c", 1500, 1);
    server.file_pending("/p");
    // Credit each client has granted, less what the server has sent it; paths it asked for.
    let mut credit: BTreeMap<Bytes, u64> = BTreeMap::new();
    let mut asked: BTreeMap<Bytes, Vec<String>> = BTreeMap::new();
    while let Some((control, frame)) = next_step(&mut data) {
        let peer = Bytes::from(vec![b'A' + control % 3]);
        match control {
            0xc0 => server.file_removed("/a"),
            0xc1 => publish(&mut server, &mut files, "/a", 1200),
            0xc2 => {
                // Cut short under the server, which still believes its manifest.
                if let Some(content) = files.0.get_mut("/a") {
                    content.truncate(content.len() / 2);
                }
            }
            0xc3 => server.file_pending("/p"),
            0xc4 => publish(&mut server, &mut files, "/p", 3100),
            0xc5 => server.file_skipped("/p"),
            0xc6 => {
                now += Duration::from_secs(31);
                server.handle_timeout(now);
            }
            0xc7 => {
                server.peer_gone(&peer);
                credit.remove(&peer);
            }
            0xc8.. => {}
            _ => {
                match FilemqMessage::decode(&frame, MAX_FRAME) {
                    Ok(FilemqMessage::Nom { credit: more, .. }) => {
                        let held = credit.entry(peer.clone()).or_default();
                        *held = held.saturating_add(more);
                    }
                    Ok(FilemqMessage::Icanhaz { path, .. }) => {
                        asked.entry(peer.clone()).or_default().push(path);
                    }
                    _ => {}
                }
                server.handle_message(&peer, &frame, now);
            }
        }
        let mut sent = 0;
        while let Some((to, frame)) = server.poll_transmit_frame(&mut files) {
            let msg = FilemqMessage::decode(&frame, usize::MAX)
                .unwrap_or_else(|e| panic!("the server sent a frame it cannot decode: {e}"));
            if let FilemqMessage::Cheezburger(c) = &msg {
                let subs = asked.get(&to).map(Vec::as_slice).unwrap_or_default();
                let wanted = subs.iter().any(|sub| path::under(&c.filename, sub));
                assert!(wanted, "{:?} sent on subscriptions {subs:?}", c.filename);
                assert!(c.chunk.len() <= CHUNK, "chunk of {} bytes", c.chunk.len());
                let held = credit.entry(to.clone()).or_default();
                let len = c.chunk.len() as u64;
                assert!(len <= *held, "{len} bytes sent on a credit of {held}");
                *held -= len;
            }
            sent += 1;
            if sent == DRAIN {
                break;
            }
        }
        while server.poll_event().is_some() {}
        while server.poll_close().is_some() {}
        while server.poll_readahead().is_some() {}
    }
}

/// The partial file the client has open, as far as the checks need.
struct OpenFile {
    name: String,
    /// Its length.
    len: u64,
    /// The size the server declared.
    size: Option<u64>,
    /// Its content, when it was opened empty.
    content: Option<Vec<u8>>,
}

/// What the client's operations have done to its destination.
#[derive(Default)]
struct Dest {
    open: Option<OpenFile>,
}

impl Dest {
    fn apply(&mut self, op: FileOp) {
        match op {
            FileOp::Open { name, offset, size } => {
                check_name(&name);
                self.open = Some(OpenFile {
                    name,
                    len: offset,
                    size,
                    content: (offset == 0).then(Vec::new),
                });
            }
            FileOp::Write { offset, data } => {
                let open = self.open.as_mut().expect("a write with no file open");
                let (name, len) = (&open.name, open.len);
                assert_eq!(offset, len, "{name}: a write that is not an append");
                open.len += data.len() as u64;
                if let Some(size) = open.size {
                    assert!(
                        open.len <= size,
                        "{name}: {} bytes written of {size}",
                        open.len
                    );
                }
                if let Some(content) = open.content.as_mut() {
                    content.extend_from_slice(&data);
                }
            }
            FileOp::Commit { name, size, digest } => {
                let open = self.open.take().expect("a commit with no file open");
                assert_eq!(name, open.name, "committed another file than the open one");
                assert_eq!(size, open.len, "{name}: committed size");
                if let Some(declared) = open.size {
                    assert_eq!(
                        size, declared,
                        "{name}: committed short of its declared size"
                    );
                }
                if let (Some(digest), Some(content)) = (digest, open.content) {
                    assert_eq!(digest, ext::digest_of(&content), "{name}: digest");
                }
            }
            FileOp::Discard { name } => {
                check_name(&name);
                self.open = None;
            }
            FileOp::Delete { name } => check_name(&name),
        }
    }
}

/// A name the client acts on must be a safe name relative to its destination.
fn check_name(name: &str) {
    if let Err(e) = path::relative(name) {
        panic!("the client acts on {name:?}: {e}");
    }
}

/// Credit window of the fuzzed client.
const WINDOW: u64 = 5000;

/// The fuzzed client: a Harmony client subscribed to `/` and `/s`, holding `whole` and the
/// first 3 bytes of `d/partial`.
fn fuzzed_client(now: Instant) -> Client {
    let config = ClientConfig {
        subscriptions: vec!["/".into(), "/s".into()],
        credit_window: WINDOW,
        heartbeat: Duration::from_secs(1),
        max_frame: MAX_FRAME,
        ..ClientConfig::default()
    };
    let have = vec![("whole".to_string(), ext::digest_of(b"whole"))];
    let mut hasher = Hasher::new();
    hasher.update(b"par");
    let partial = vec![ResumePoint {
        name: "d/partial".into(),
        offset: 3,
        hasher,
    }];
    Client::new(config, have, partial, now)
}

/// A Harmony client (subscribed to `/` and `/s`, holding one file whole and one partly) fed
/// frames as from a server. Control bytes below `0xc0` are a frame; `0xc0` and above let time
/// pass (a heartbeat, eventually a dead server). The operations the client asks of its
/// destination are checked: only safe names; writes only to the open file, appended, never
/// beyond the size the server declared; a commit only of the open file, at its declared size
/// and with the digest of what was written. The credit it has granted and not yet received
/// never exceeds its window (what bounds its memory).
pub fn client_session(mut data: &[u8]) {
    let mut now = Instant::now();
    let mut client = fuzzed_client(now);
    let mut dest = Dest::default();
    // Credit granted (NOM) less content received.
    let mut granted: u64 = 0;
    while let Some((control, frame)) = next_step(&mut data) {
        let failed = client.error().is_some();
        if control >= 0xc0 {
            now += Duration::from_millis(700);
            client.handle_timeout(now);
        } else {
            client.handle_message(&frame, now);
            // Content is taken from create chunks (a delete's is ignored).
            if let (None, Ok(FilemqMessage::Cheezburger(c))) =
                (client.error(), FilemqMessage::decode(&frame, MAX_FRAME))
            {
                let create = c.operation == FileOperation::Create;
                let len = if create { c.chunk.len() as u64 } else { 0 };
                granted = granted
                    .checked_sub(len)
                    .unwrap_or_else(|| panic!("{len} bytes taken on a credit of {granted}"));
            }
        }
        if failed {
            // A failed connection is over: nothing more goes out or to the disk.
            assert!(client.poll_transmit().is_none() && client.poll_op().is_none());
        }
        for _ in 0..DRAIN {
            let Some(msg) = client.poll_transmit() else {
                break;
            };
            let mut out = bytes::BytesMut::new();
            msg.encode(&mut out)
                .unwrap_or_else(|e| panic!("the client cannot encode {msg:?}: {e}"));
            if let FilemqMessage::Nom { credit, .. } = msg {
                granted += credit;
                assert!(granted <= WINDOW, "{granted} bytes of credit granted");
            }
        }
        while let Some(op) = client.poll_op() {
            dest.apply(op);
        }
    }
}

/// A record file as found on disk (the client's digests or the server's manifests), damaged in
/// any way: what is read of it is written back as it was read, and each value is then taken as
/// a manifest, for files of a few sizes, and as an ICANHAZ cache value.
pub fn records(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let entries = record::parse(&text);
    assert_eq!(record::parse(&record::format(&entries)), entries);
    for (name, (stamp, value)) in entries {
        assert!(!name.is_empty());
        for size in [0, 1, CHUNK as u64, stamp.len, u64::MAX] {
            for chunk in [1, CHUNK, 1 << 20] {
                if let Some(m) = Manifest::from_record(&value, size, chunk) {
                    assert_eq!(m.chunk_size, chunk);
                    assert_eq!(m.crcs.len() as u64, size.div_ceil(chunk as u64));
                    assert_eq!(m.digest.len(), ext::DIGEST_HEX_LEN);
                }
            }
        }
        if let Some((digest, offset)) = ext::parse_cache_value(&value) {
            let again = offset.map_or(digest.to_string(), |o| ext::resume_value(digest, o));
            assert_eq!(ext::parse_cache_value(&again), Some((digest, offset)));
        }
    }
}

/// One step of a session input: `control`, then `frame` with its length.
fn push_step(input: &mut Vec<u8>, control: u8, frame: &[u8]) {
    input.push(control);
    if control < 0xc0 {
        input.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        input.extend_from_slice(frame);
    }
}

/// Seed inputs for the targets, `(target, seed name, input)`, from real sessions: a Harmony
/// client (with a cache and a partial file) and a server as [`server_session`] sets it up,
/// each one's frames recorded as the other received them, and records as they are written.
/// Written to `fuzz/corpus/` by the ignored test `write_seed_corpus`.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let now = Instant::now();
    let mut server = Server::new(ServerConfig {
        chunk_size: CHUNK,
        max_frame: MAX_FRAME,
        ..ServerConfig::default()
    });
    let mut files = MemSource::default();
    for (vpath, len) in [
        ("/a", 2500usize),
        ("/d/b", 10),
        ("/s/whole", 5),
        ("/d/partial", 7),
    ] {
        let content: Vec<u8> = match vpath {
            "/s/whole" => b"whole".to_vec(),
            "/d/partial" => b"partial".to_vec(),
            _ => (0..len).map(|i| (i * 7 + len) as u8).collect(),
        };
        server.file_changed_with_manifest(vpath, len as u64, 1, Manifest::of(&content, CHUNK));
        files.0.insert(vpath.to_string(), content.into());
    }
    let mut client = fuzzed_client(now);
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let peer = Bytes::from_static(b"A");
    for round in 0..64 {
        let mut moved = false;
        while let Some(msg) = client.poll_transmit() {
            let mut frame = bytes::BytesMut::new();
            msg.encode(&mut frame)
                .expect("the client's messages encode");
            push_step(&mut to_server, 0, &frame);
            server.handle_message(&peer, &frame.freeze(), now);
            moved = true;
        }
        while let Some((_, frame)) = server.poll_transmit_frame(&mut files) {
            push_step(&mut to_client, 0, &frame);
            client.handle_message(&frame, now);
            moved = true;
        }
        while client.poll_op().is_some() {}
        if round == 3 {
            // The server's files change under the session: removed, rewritten, cut short.
            to_server.extend_from_slice(&[0xc0, 0xc1, 0xc2, 0xc3, 0xc4]);
        }
        if !moved {
            break;
        }
    }
    push_step(&mut to_client, 0xc0, &[]);
    let stamp = record::Stamp {
        len: 2500,
        mtime: (1_700_000_000, 5),
        ctime: (1_700_000_001, 999_999_999),
        dev: 64768,
        ino: 131_075,
    };
    let manifest = Manifest::of(&files.0["/a"], CHUNK).to_record();
    let manifests: record::Entries = [("/srv/a".to_string(), (stamp, manifest))].into();
    let digests: record::Entries = [
        ("a".to_string(), (stamp, ext::digest_of(b"a"))),
        (
            "d/x y".to_string(),
            (stamp, ext::resume_value(&ext::digest_of(b"x"), 1)),
        ),
    ]
    .into();
    vec![
        ("files_server", "seed-session", to_server),
        ("files_client", "seed-session", to_client),
        (
            "files_record",
            "seed-manifests",
            record::format(&manifests).into_bytes(),
        ),
        (
            "files_record",
            "seed-digests",
            record::format(&digests).into_bytes(),
        ),
    ]
}
