//! Frame bodies that end in a region of a file ([`FileRegion`]): on a connection without
//! encryption the region goes from the file to the socket with sendfile(2), never read into
//! user space; with CURVE it is read into memory and sealed like any other frame.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tracing::warn;

use crate::message::Message;

/// `len` bytes of a file from `offset`, sent as the end of a message's last frame (see
/// [`RouterSocket::try_send_region`](crate::RouterSocket::try_send_region)). The file is read
/// when the frame is written: if it is shorter by then, the frame's header has already
/// promised bytes that do not exist, so that connection is closed with an error (nothing is
/// padded or invented). Cheap to clone.
#[derive(Debug, Clone)]
pub struct FileRegion {
    file: Arc<File>,
    offset: u64,
    len: usize,
}

impl FileRegion {
    /// The region `[offset, offset + len)` of `file`.
    pub fn new(file: Arc<File>, offset: u64, len: usize) -> Self {
        Self { file, offset, len }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Where it starts in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// `e`, logged when it is the file being shorter than the region: the connection that was
    /// sending it closes.
    fn closes(&self, e: io::Error) -> io::Error {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            warn!(
                offset = self.offset,
                len = self.len,
                error = %e,
                "file truncated under a region being sent: connection closed"
            );
        }
        e
    }

    /// The error for a region `left` bytes short.
    fn short(&self, left: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "file truncated under a frame being sent ({left} of {} bytes from offset {} missing)",
                self.len, self.offset
            ),
        )
    }

    /// `head` followed by the region's bytes, read into memory: the whole frame, for
    /// whoever needs its content. A file shorter than the region is an `UnexpectedEof` error
    /// that says how many bytes are missing.
    pub fn read_after(&self, head: &[u8]) -> io::Result<Bytes> {
        let mut body = BytesMut::with_capacity(head.len() + self.len);
        body.extend_from_slice(head);
        body.resize(head.len() + self.len, 0);
        let mut done = 0;
        while done < self.len {
            match self
                .file
                .read_at(&mut body[head.len() + done..], self.offset + done as u64)
            {
                Ok(0) => return Err(self.short(self.len - done)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(body.freeze())
    }

    /// `msg` with the region's bytes appended to its last frame, read into memory (the path
    /// for encrypted connections).
    pub(crate) fn append_to(&self, mut msg: Message) -> io::Result<Message> {
        let head = msg.pop_back().unwrap_or_default();
        msg.push_back(self.read_after(&head).map_err(|e| self.closes(e))?);
        Ok(msg)
    }

    /// Writes the region to the connection with sendfile(2), from the page cache to the
    /// socket.
    pub(crate) async fn send(&self, wr: &OwnedWriteHalf) -> io::Result<()> {
        let stream: &TcpStream = wr.as_ref();
        let mut offset = self.offset;
        let mut left = self.len;
        while left > 0 {
            stream.writable().await?;
            let sent = stream.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(stream, &*self.file, Some(&mut offset), left)
                    .map_err(io::Error::from)
            });
            match sent {
                Ok(0) => return Err(self.closes(self.short(left))),
                Ok(n) => left -= n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
