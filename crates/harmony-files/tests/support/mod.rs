//! Shared by the harmony-files tests: the zeromq/filemq capture, an in-memory source and
//! destination for the sans-IO cores.
#![allow(dead_code)] // each test binary uses a subset

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use harmony_files::{Client, FileOp, Server, ServerConfig, Source};
use harmony_wire::filemq::{Cheezburger, FileOperation, FilemqMessage};

#[path = "../../../harmony-wire/tests/support/filemq_capture.rs"]
mod filemq_capture;

/// The captured frames sent in `direction` (`c2s`, `s2c`), in order.
pub(crate) fn capture(direction: &str) -> Vec<Bytes> {
    filemq_capture::frames()
        .into_iter()
        .filter(|(dir, _)| dir == direction)
        .map(|(_, frame)| frame)
        .collect()
}

/// A create CHEEZBURGER without headers.
pub(crate) fn chunk(name: &str, offset: u64, data: &'static [u8], eof: bool) -> Cheezburger {
    Cheezburger {
        sequence: 0,
        operation: FileOperation::Create,
        filename: name.into(),
        offset,
        eof,
        headers: vec![],
        chunk: Bytes::from_static(data),
    }
}

/// big.bin of the capture: byte i is i mod 251.
pub(crate) fn big_bin() -> Vec<u8> {
    (0..2_500_000u64).map(|i| (i % 251) as u8).collect()
}

/// The chunk size of the cores' tests: small, so that a few KB make many chunks.
pub(crate) const CHUNK: usize = 1000;

/// `len` bytes that differ from their neighbours, varied by `seed`.
pub(crate) fn data(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

/// A sans-IO server sending chunks of [`CHUNK`] bytes.
pub(crate) fn server() -> Server {
    Server::new(ServerConfig {
        chunk_size: CHUNK,
        ..ServerConfig::default()
    })
}

pub(crate) use harmony_files::server::MemSource;

/// Content in memory, and also in a real file that [`Source::file`] hands out when `file` is
/// set (as the driver's source does when chunks may be sent with sendfile).
pub(crate) struct FileSource {
    pub(crate) mem: MemSource,
    pub(crate) file: Option<Arc<std::fs::File>>,
}

impl Source for FileSource {
    fn read_into(
        &mut self,
        vpath: &str,
        offset: u64,
        len: usize,
        dst: &mut Vec<u8>,
    ) -> io::Result<usize> {
        self.mem.read_into(vpath, offset, len, dst)
    }

    fn file(&mut self, _vpath: &str) -> Option<Arc<std::fs::File>> {
        self.file.clone()
    }
}

/// A destination in memory: final files, the open partial file, every op seen.
#[derive(Debug, Default)]
pub(crate) struct MemDest {
    pub(crate) files: BTreeMap<String, Vec<u8>>,
    pub(crate) partial: Option<(String, Vec<u8>)>,
    pub(crate) ops: Vec<FileOp>,
}

impl MemDest {
    /// Applies every op the client has.
    pub(crate) fn apply(&mut self, client: &mut Client) {
        while let Some(op) = client.poll_op() {
            match &op {
                FileOp::Open { name, offset, .. } => {
                    let mut kept = match self.partial.take() {
                        Some((n, data)) if &n == name => data,
                        _ => Vec::new(),
                    };
                    assert!(kept.len() as u64 >= *offset, "resume beyond partial data");
                    kept.truncate(*offset as usize);
                    self.partial = Some((name.clone(), kept));
                }
                FileOp::Write { offset, data } => {
                    let (_, buf) = self.partial.as_mut().expect("write without open");
                    assert_eq!(buf.len() as u64, *offset);
                    buf.extend_from_slice(data);
                }
                FileOp::Commit { name, size, .. } => {
                    let (n, buf) = self.partial.take().expect("commit without open");
                    assert_eq!(&n, name);
                    assert_eq!(buf.len() as u64, *size);
                    self.files.insert(n, buf);
                }
                FileOp::Discard { .. } => self.partial = None,
                FileOp::Delete { name } => {
                    self.files.remove(name);
                }
                _ => unreachable!("unknown op"),
            }
            self.ops.push(op);
        }
    }
}

/// Moves every message between a server and its clients until nothing moves (at most
/// `limit` messages).
pub(crate) fn pump(
    server: &mut Server,
    source: &mut MemSource,
    clients: &mut [(Bytes, Client, MemDest)],
    now: Instant,
    limit: usize,
) -> usize {
    pump_recording(server, source, clients, now, limit, &mut Vec::new())
}

/// As [`pump`], recording what the server sent, in order, as `(routing id, message)`.
pub(crate) fn pump_recording(
    server: &mut Server,
    source: &mut MemSource,
    clients: &mut [(Bytes, Client, MemDest)],
    now: Instant,
    limit: usize,
    sent: &mut Vec<(Bytes, FilemqMessage)>,
) -> usize {
    let mut moved = 0;
    loop {
        let mut any = false;
        for (id, client, dest) in clients.iter_mut() {
            while let Some(msg) = client.poll_transmit() {
                server.handle_message(id, &msg.to_bytes().expect("encodes"), now);
                any = true;
                moved += 1;
            }
            dest.apply(client);
        }
        while let Some((to, msg)) = server.poll_transmit(source) {
            let frame = msg.to_bytes().expect("encodes");
            if let Some((_, client, dest)) = clients.iter_mut().find(|(id, ..)| *id == to) {
                client.handle_message(&frame, now);
                dest.apply(client);
            }
            sent.push((to, msg));
            any = true;
            moved += 1;
            assert!(moved < limit, "conversation does not settle");
        }
        if !any {
            return moved;
        }
    }
}

/// Decodes a frame (tests only).
pub(crate) fn decode(frame: &Bytes) -> FilemqMessage {
    FilemqMessage::decode(frame, 4 << 20).expect("decodes")
}
