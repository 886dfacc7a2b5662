//! A published file's integrity manifest: its BLAKE3 digest and the crc32 of each chunk, made
//! once per version of the file (when it is first found stable) and reused for every client,
//! every transfer and every resync comparison. The server's data path then only reads and
//! sends: no transfer hashes the same bytes again.
//!
//! A manifest is trusted only if the file did not change while it was read: the file's
//! identity (size, modification time, inode) is compared before and after. A file changed in
//! place after its manifest was made (without a new scan yet) cannot reach a client's final
//! name either: its chunks no longer match their crc32 or the digest, and the client refuses
//! them.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::ext::{self, Hasher};

/// Digest of a whole file and crc32 of each `chunk_size` piece of it (the last one shorter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// BLAKE3 of the whole file, hex (as `X-BLAKE3` carries it).
    pub digest: String,
    /// The chunk size the crc32s are for.
    pub chunk_size: usize,
    /// crc32 of bytes `[i * chunk_size, (i + 1) * chunk_size)`, the last piece shorter.
    pub crcs: Vec<u32>,
}

impl Manifest {
    /// The manifest of `data`.
    pub fn of(data: &[u8], chunk_size: usize) -> Self {
        let chunk_size = chunk_size.max(1);
        let mut hasher = Hasher::new();
        hasher.update(data);
        Self {
            digest: ext::digest_hex(&hasher),
            chunk_size,
            crcs: data.chunks(chunk_size).map(crc32fast::hash).collect(),
        }
    }

    /// As a server's record keeps it: `DIGEST CHUNK_SIZE CRCS` (8 hex digits per crc32).
    pub(crate) fn to_record(&self) -> String {
        let mut text = format!("{} {} ", self.digest, self.chunk_size);
        text.reserve(self.crcs.len() * 8);
        for crc in &self.crcs {
            text.push_str(&ext::crc_hex(*crc));
        }
        text
    }

    /// A manifest read back from [`Manifest::to_record`]'s text, if it is one for a file of
    /// `size` bytes in pieces of `chunk_size`.
    pub(crate) fn from_record(text: &str, size: u64, chunk_size: usize) -> Option<Self> {
        let mut f = text.split(' ');
        let digest = f.next().filter(|d| {
            d.len() == ext::DIGEST_HEX_LEN && d.bytes().all(|b| b.is_ascii_hexdigit())
        })?;
        if f.next()?.parse::<usize>().ok()? != chunk_size || chunk_size == 0 {
            return None;
        }
        let hex = f.next()?;
        let pieces = usize::try_from(size.div_ceil(chunk_size as u64)).ok()?;
        let digits = pieces.checked_mul(8)?;
        if f.next().is_some() || hex.len() != digits || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        let crcs = (0..pieces)
            .map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok())
            .collect::<Option<Vec<u32>>>()?;
        Some(Self {
            digest: digest.to_string(),
            chunk_size,
            crcs,
        })
    }

    /// The crc32 of `len` bytes at `offset` of a file of `size` bytes, when they are exactly
    /// one of the manifest's pieces.
    pub fn crc_of(&self, offset: u64, len: usize, size: u64) -> Option<u32> {
        let chunk = self.chunk_size as u64;
        if offset % chunk != 0 || len as u64 != chunk.min(size.saturating_sub(offset)) {
            return None;
        }
        self.crcs
            .get(usize::try_from(offset / chunk).ok()?)
            .copied()
    }
}

/// Which version of a file a manifest is for: it is recomputed whenever any of these changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileVersion {
    pub(crate) size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub(crate) mtime: u64,
    pub(crate) inode: u64,
}

impl FileVersion {
    pub(crate) fn of(meta: &Metadata) -> Self {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            size: meta.len(),
            mtime,
            inode,
        }
    }
}

/// Why no manifest was made.
#[derive(Debug)]
pub(crate) enum ManifestError {
    /// The file is not (or no longer) the version asked for, or changed while it was read.
    Changed,
    Io(io::Error),
}

impl From<io::Error> for ManifestError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Opens a file found by a scan for reading: a link put in its place is not followed (error),
/// and opening does not wait on what is not a regular file (a FIFO put there). The caller then
/// checks it is the file it found (its inode, its version).
pub(crate) fn open_found(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    File::options()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
}

/// Reads `path`, expected at version `want`, into its manifest; `buf` is reused from one
/// file to the next.
pub(crate) fn compute(
    path: &Path,
    want: FileVersion,
    chunk_size: usize,
    buf: &mut Vec<u8>,
) -> Result<Manifest, ManifestError> {
    let chunk_size = chunk_size.max(1);
    let file = open_found(path)?;
    if FileVersion::of(&file.metadata()?) != want {
        return Err(ManifestError::Changed);
    }
    let mut hasher = Hasher::new();
    let mut crcs =
        Vec::with_capacity(usize::try_from(want.size / chunk_size as u64 + 1).unwrap_or(0));
    let mut read = 0u64;
    let reader = &file;
    loop {
        buf.clear();
        // One piece at a time, crc32 and digest while it is in cache.
        let n = reader.take(chunk_size as u64).read_to_end(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf);
        crcs.push(crc32fast::hash(buf));
        read += n as u64;
        if read > want.size {
            return Err(ManifestError::Changed);
        }
    }
    if read != want.size || FileVersion::of(&file.metadata()?) != want {
        return Err(ManifestError::Changed);
    }
    Ok(Manifest {
        digest: ext::digest_hex(&hasher),
        chunk_size,
        crcs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_in_a_record_and_read_back_only_for_the_same_size_and_chunks() {
        let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let manifest = Manifest::of(&data, 1000);
        let text = manifest.to_record();
        assert_eq!(
            Manifest::from_record(&text, 2500, 1000),
            Some(manifest.clone())
        );
        assert_eq!(Manifest::from_record(&text, 3500, 1000), None);
        assert_eq!(Manifest::from_record(&text, 2500, 500), None);
        assert_eq!(Manifest::from_record(&text[1..], 2500, 1000), None);
        assert_eq!(
            Manifest::from_record(&format!("{text} x"), 2500, 1000),
            None
        );
        assert_eq!(
            Manifest::from_record(&text.replace('a', "g"), 2500, 1000),
            None
        );
        let empty = Manifest::of(b"", 1000);
        assert_eq!(
            Manifest::from_record(&empty.to_record(), 0, 1000),
            Some(empty)
        );
        // A crc written with a sign; a size whose count of digits does not fit (found by
        // fuzzing: it overflowed).
        let (head, crcs) = text.rsplit_once(' ').unwrap();
        let signed = format!("{head} +{}", &crcs[1..]);
        assert_eq!(Manifest::from_record(&signed, 2500, 1000), None);
        assert_eq!(Manifest::from_record(&text, u64::MAX, 1), None);
    }

    #[test]
    fn pieces_and_their_crcs() {
        let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let m = Manifest::of(&data, 1000);
        assert_eq!(m.digest, ext::digest_of(&data));
        assert_eq!(m.crcs.len(), 3);
        let size = data.len() as u64;
        assert_eq!(
            m.crc_of(1000, 1000, size),
            Some(crc32fast::hash(&data[1000..2000]))
        );
        assert_eq!(
            m.crc_of(2000, 500, size),
            Some(crc32fast::hash(&data[2000..]))
        );
        // Not exactly one piece: computed by the caller.
        assert_eq!(m.crc_of(500, 1000, size), None);
        assert_eq!(m.crc_of(0, 999, size), None);
        assert_eq!(m.crc_of(3000, 0, size), None);
        assert!(Manifest::of(b"", 1000).crcs.is_empty());
    }

    #[test]
    fn computed_from_a_file_only_at_the_version_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let version = FileVersion::of(&std::fs::metadata(&path).unwrap());
        let mut buf = Vec::new();
        let m = compute(&path, version, 1024, &mut buf).unwrap();
        assert_eq!(m, Manifest::of(&data, 1024));
        // Another size, modification time or inode than the scan found: not this version.
        for stale in [
            FileVersion {
                size: version.size + 1,
                ..version
            },
            FileVersion {
                mtime: version.mtime + 1,
                ..version
            },
            FileVersion {
                inode: version.inode + 1,
                ..version
            },
        ] {
            assert!(matches!(
                compute(&path, stale, 1024, &mut buf),
                Err(ManifestError::Changed)
            ));
        }
        assert!(matches!(
            compute(&dir.path().join("gone"), version, 1024, &mut buf),
            Err(ManifestError::Io(_))
        ));
    }
}
