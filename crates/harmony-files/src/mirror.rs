//! The client's destination: partial files beside their final names, renamed into place only
//! when complete and verified; no write ever goes through a symbolic link or outside the root.
//!
//! Every change is made relative to a handle on the file's directory, reached from the root one
//! component at a time, none of them followed if it is a symbolic link: a directory swapped for
//! a link after it was checked is never written through, and a file's path is not walked again
//! for each operation on it. The handle of the last directory used is kept (files mostly come
//! directory by directory).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FallocateFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use tracing::warn;

use crate::client::ResumePoint;
use crate::error::{FilesError, PathError};
use crate::ext;
use crate::ext::Hasher;
use crate::path::{self, PART_SUFFIX};
use crate::record::{self, Record, Stamp};

/// Files at least this large get their blocks reserved when opened.
const PREALLOCATE_MIN: u64 = 1 << 20;

/// A directory of the destination: its handle, and its path (for messages).
struct Dir {
    /// Relative to the root, `/`-separated (empty: the root).
    name: String,
    fd: OwnedFd,
}

impl Dir {
    fn path(&self, root: &Path) -> PathBuf {
        root.join(&self.name)
    }
}

struct Open {
    name: String,
    /// Its directory, the partial file's name there, and its final name there.
    dir: Arc<Dir>,
    temp: String,
    base: String,
    file: File,
}

/// The destination directory.
pub(crate) struct Mirror {
    root: PathBuf,
    open: Option<Open>,
    /// The directory used last. Forgotten after any error.
    last_dir: Option<Arc<Dir>>,
    /// Digests of the whole files, kept in the root for the next start.
    digests: Record,
}

/// What the destination holds besides its whole files (see [`Mirror::inventory`],
/// [`Mirror::have`]).
pub(crate) struct Inventory {
    /// Partial files to resume.
    pub(crate) partial: Vec<ResumePoint>,
    /// Files found, whole or partial.
    pub(crate) files: usize,
    /// Of those, how many were read (their digest not on record, or the file changed since).
    pub(crate) read: usize,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// [`io_err`] for a call that names `file` in `dir`.
fn errno_at<'a>(
    root: &'a Path,
    dir: &'a Dir,
    file: &'a str,
) -> impl FnOnce(Errno) -> FilesError + 'a {
    move |e| io_err(&dir.path(root).join(file))(e.into())
}

/// Opens directory `name` in `at` without following a link; `Ok(None)` when there is none.
fn open_dir(at: &OwnedFd, name: &str) -> Result<Option<OwnedFd>, Errno> {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY;
    match rustix::fs::openat(at, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The type of `name` in `dir`, not following a link; `None` when there is none.
fn type_at(dir: &OwnedFd, name: &str) -> Option<FileType> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| FileType::from_raw_mode(st.st_mode))
}

impl Mirror {
    pub(crate) fn new(root: PathBuf) -> Result<Self, FilesError> {
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        Ok(Self {
            digests: Record::digests(&root),
            root,
            open: None,
            last_dir: None,
        })
    }

    /// The directory `name` goes in and its base name there, the directories on the way
    /// created (when `create`): none may be a symbolic link or a non-directory. `None` when
    /// one does not exist and `create` is false.
    fn resolve(
        &mut self,
        name: &str,
        create: bool,
    ) -> Result<Option<(Arc<Dir>, String)>, FilesError> {
        let resolved = self.resolve_dir(name, create);
        if !matches!(resolved, Ok(Some(_))) {
            self.last_dir = None;
        }
        resolved
    }

    fn resolve_dir(
        &mut self,
        name: &str,
        create: bool,
    ) -> Result<Option<(Arc<Dir>, String)>, FilesError> {
        let parts = path::relative(name)?;
        let (dirs, base) = parts.split_at(parts.len() - 1);
        let dir_name = dirs.join("/");
        if let Some(dir) = self.last_dir.as_ref().filter(|d| d.name == dir_name) {
            return Ok(Some((dir.clone(), base[0].to_string())));
        }
        let root_flags = OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::RDONLY;
        let mut fd = rustix::fs::open(&self.root, root_flags, Mode::empty())
            .map_err(|e| io_err(&self.root)(e.into()))?;
        let mut at = self.root.clone();
        for dir in dirs {
            at.push(dir);
            let next = match open_dir(&fd, dir) {
                Ok(Some(next)) => next,
                Ok(None) if !create => return Ok(None),
                Ok(None) => {
                    match rustix::fs::mkdirat(&fd, *dir, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_err(&at)(e.into())),
                    }
                    open_dir(&fd, dir)
                        .map_err(|e| io_err(&at)(e.into()))?
                        .ok_or_else(|| io_err(&at)(io::ErrorKind::NotFound.into()))?
                }
                // A link (not followed) or not a directory.
                Err(Errno::LOOP | Errno::NOTDIR) => return Err(PathError::Escapes(at).into()),
                Err(e) => return Err(io_err(&at)(e.into())),
            };
            fd = next;
        }
        let dir = Arc::new(Dir { name: dir_name, fd });
        self.last_dir = Some(dir.clone());
        Ok(Some((dir, base[0].to_string())))
    }

    fn temp_of(base: &str) -> String {
        format!(".{base}{PART_SUFFIX}")
    }

    /// Starts `name`'s partial file, keeping its first `offset` bytes.
    pub(crate) fn open(
        &mut self,
        name: &str,
        offset: u64,
        size: Option<u64>,
    ) -> Result<(), FilesError> {
        let opened = self.open_partial(name, offset, size);
        if opened.is_err() {
            self.last_dir = None;
        }
        opened
    }

    fn open_partial(
        &mut self,
        name: &str,
        offset: u64,
        size: Option<u64>,
    ) -> Result<(), FilesError> {
        self.open = None;
        let (dir, base) = self.resolve(name, true)?.expect("created");
        let temp = Self::temp_of(&base);
        let root = &self.root;
        let fail = || errno_at(root, &dir, &temp);
        let write = OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let mode = Mode::from_raw_mode(0o666);
        let create =
            || rustix::fs::openat(&dir.fd, &temp, write | OFlags::CREATE | OFlags::EXCL, mode);
        let fd = if offset == 0 {
            // `O_EXCL` never follows a link; what is in the way is looked at only then.
            match create() {
                Ok(fd) => fd,
                Err(Errno::EXIST) => {
                    if type_at(&dir.fd, &temp) == Some(FileType::Directory) {
                        return Err(PathError::Escapes(dir.path(root).join(&temp)).into());
                    }
                    rustix::fs::unlinkat(&dir.fd, &temp, AtFlags::empty()).map_err(fail())?;
                    create().map_err(fail())?
                }
                Err(e) => return Err(fail()(e)),
            }
        } else {
            let st =
                rustix::fs::statat(&dir.fd, &temp, AtFlags::SYMLINK_NOFOLLOW).map_err(fail())?;
            let regular = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
            if !regular || (st.st_size as u64) < offset {
                return Err(PathError::Escapes(dir.path(root).join(&temp)).into());
            }
            // `O_NOFOLLOW`: a link put there since is refused, not followed.
            let fd = rustix::fs::openat(&dir.fd, &temp, write, mode).map_err(fail())?;
            rustix::fs::ftruncate(&fd, offset).map_err(fail())?;
            rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(offset)).map_err(fail())?;
            fd
        };
        let file = File::from(fd);
        if let Some(size) = size.filter(|&s| s >= PREALLOCATE_MIN && s > offset) {
            // Blocks reserved at once instead of page by page as the chunks are written (less
            // file system work per chunk). The size stays what is written, which is what a
            // resume goes by; where it is not supported, the writes allocate as before.
            let _ = rustix::fs::fallocate(&file, FallocateFlags::KEEP_SIZE, offset, size - offset);
        }
        self.open = Some(Open {
            name: name.to_string(),
            dir,
            temp,
            base,
            file,
        });
        Ok(())
    }

    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), FilesError> {
        let open = self
            .open
            .as_mut()
            .ok_or(FilesError::Invalid("write without an open file".into()))?;
        let root = &self.root;
        open.file
            .write_all(data)
            .map_err(|e| io_err(&open.dir.path(root).join(&open.temp))(e))
    }

    /// Moves the finished partial file to its final name; its `digest`, when known, goes on
    /// record.
    pub(crate) fn commit(
        &mut self,
        name: &str,
        digest: Option<&str>,
    ) -> Result<PathBuf, FilesError> {
        let open = self
            .open
            .take()
            .filter(|o| o.name == name)
            .ok_or(FilesError::Invalid(format!("commit of {name} not open")))?;
        let target = open.dir.path(&self.root).join(&open.base);
        // Over a directory, rename fails (EISDIR): only then is it looked at.
        if let Err(e) = rustix::fs::renameat(&open.dir.fd, &open.temp, &open.dir.fd, &open.base) {
            self.last_dir = None;
            if type_at(&open.dir.fd, &open.base) == Some(FileType::Directory) {
                return Err(PathError::Escapes(target).into());
            }
            return Err(io_err(&target)(e.into()));
        }
        // The stamp from the file still open (after the rename, which sets its change time):
        // no second walk of the path.
        match (digest, open.file.metadata()) {
            (Some(digest), Ok(meta)) => self.digests.record(name, Stamp::of(&meta), digest),
            _ => self.digests.forget(name),
        }
        Ok(target)
    }

    pub(crate) fn discard(&mut self, name: &str) -> Result<(), FilesError> {
        if let Some(open) = self.open.take() {
            if open.name == name {
                drop(open.file);
                return remove_if_exists(&self.root, &open.dir, &open.temp);
            }
            self.open = Some(open);
        }
        Ok(())
    }

    pub(crate) fn delete(&mut self, name: &str) -> Result<(), FilesError> {
        self.digests.forget(name);
        if self.open.as_ref().is_some_and(|o| o.name == name) {
            self.discard(name)?;
        }
        let Some((dir, base)) = self.resolve(name, false)? else {
            return Ok(());
        };
        remove_if_exists(&self.root, &dir, &Self::temp_of(&base))?;
        match type_at(&dir.fd, &base) {
            Some(FileType::Directory) => {
                Err(PathError::Escapes(dir.path(&self.root).join(&base)).into())
            }
            Some(_) => rustix::fs::unlinkat(&dir.fd, &base, AtFlags::empty())
                .map_err(errno_at(&self.root, &dir, &base)),
            None => Ok(()),
        }
    }

    /// Drops the open file handle, keeping the partial file for a resume.
    pub(crate) fn suspend(&mut self) {
        self.open = None;
    }

    /// The whole files held and their digests (ICANHAZ's cache): those on record, kept by
    /// [`Mirror::inventory`], [`Mirror::commit`] and [`Mirror::delete`].
    pub(crate) fn have(&self) -> Vec<(String, String)> {
        self.digests
            .values()
            .map(|(name, digest)| (name.to_string(), digest.to_string()))
            .collect()
    }

    /// Writes the record of digests if it changed. A record that cannot be written (a full
    /// disk) is only a loss for the next start, which then reads the files again: said, not
    /// fatal.
    pub(crate) fn save_digests(&mut self) {
        if let Err(e) = self.digests.save() {
            warn!(root = %self.root.display(), %e, "record of digests not written");
        }
    }

    /// What the destination holds: whole files with their digest (on record, see
    /// [`Mirror::have`]), and partial files to resume. Without `with_digests` (no extensions:
    /// nothing to tell the server, nothing to resume) the files are only counted. A whole
    /// file's digest comes from the record when the file is the version it was made from, else
    /// from reading it.
    pub(crate) fn inventory(&mut self, with_digests: bool) -> Result<Inventory, FilesError> {
        let mut whole = HashSet::new();
        let mut found = Inventory {
            partial: Vec::new(),
            files: 0,
            read: 0,
        };
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            for entry in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let rel = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                if meta.is_dir() {
                    stack.push((entry.path(), rel));
                    continue;
                }
                if !meta.is_file() || record::is_own(&rel) {
                    continue;
                }
                found.files += 1;
                if !with_digests {
                    continue;
                }
                let partial_of = name
                    .strip_suffix(PART_SUFFIX)
                    .and_then(|n| n.strip_prefix('.'));
                if partial_of.is_none() && self.digests.get(&rel, &meta).is_some() {
                    whole.insert(rel);
                    continue;
                }
                let (hasher, len) = hash_file(&entry.path())?;
                found.read += 1;
                if let Some(base) = partial_of {
                    let final_name = if prefix.is_empty() {
                        base.to_string()
                    } else {
                        format!("{prefix}/{base}")
                    };
                    found.partial.push(ResumePoint {
                        name: final_name,
                        offset: len,
                        hasher,
                    });
                } else {
                    let digest = ext::digest_hex(&hasher);
                    // On record (and so told to the server) only if the file did not change
                    // while it was read: one that did is sent again.
                    self.digests
                        .record_unless_changed(&rel, &entry.path(), &meta, &digest);
                    whole.insert(rel);
                }
            }
        }
        if with_digests {
            // Files gone since the record was written.
            self.digests.retain(|name| whole.contains(name));
        }
        Ok(found)
    }
}

/// Removes `file` from `dir` if it is there (a link is removed, not followed).
fn remove_if_exists(root: &Path, dir: &Dir, file: &str) -> Result<(), FilesError> {
    match rustix::fs::unlinkat(&dir.fd, file, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(errno_at(root, dir, file)(e)),
    }
}

/// digest state over a whole file, and its length.
fn hash_file(path: &Path) -> Result<(Hasher, u64), FilesError> {
    let mut file = crate::manifest::open_found(path).map_err(io_err(path))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0;
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok((hasher, len));
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(mirror: &mut Mirror, name: &str, data: &[u8]) -> Result<PathBuf, FilesError> {
        mirror.open(name, 0, None)?;
        mirror.write(data)?;
        mirror.commit(name, None)
    }

    #[test]
    fn a_directory_swapped_for_a_link_is_never_written_through() {
        let (dest, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root = dest.path().join("root");
        let mut mirror = Mirror::new(root.clone()).unwrap();
        assert_eq!(put(&mut mirror, "d/a", b"one").unwrap(), root.join("d/a"));
        // Checked and in use, then moved away and replaced by a link out of the root.
        fs::rename(root.join("d"), dest.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("d")).unwrap();
        // The directory already open is written to, wherever it went; never the link.
        put(&mut mirror, "d/b", b"two").unwrap();
        assert_eq!(fs::read(dest.path().join("moved/b")).unwrap(), b"two");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        // Reached again from the root (after another directory), the link is refused.
        put(&mut mirror, "e/c", b"three").unwrap();
        let refused = put(&mut mirror, "d/b", b"two");
        assert!(
            matches!(refused, Err(FilesError::Path(PathError::Escapes(ref p))) if *p == root.join("d")),
            "{refused:?}"
        );
        assert!(mirror.delete("d/b").is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn what_is_in_the_way_of_a_partial_or_final_name() {
        let dest = tempfile::tempdir().unwrap();
        let root = dest.path().to_path_buf();
        let mut mirror = Mirror::new(root.clone()).unwrap();
        // A stale partial file is replaced; a link there is removed, not followed.
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("t");
        fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, root.join(".a.harmony-part")).unwrap();
        put(&mut mirror, "a", b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert_eq!(fs::read(root.join("a")).unwrap(), b"new");
        // A directory under the final name is refused, and so is one under the partial name.
        fs::create_dir(root.join("b")).unwrap();
        assert!(matches!(
            put(&mut mirror, "b", b"x"),
            Err(FilesError::Path(PathError::Escapes(_)))
        ));
        fs::create_dir(root.join(".c.harmony-part")).unwrap();
        assert!(matches!(
            put(&mut mirror, "c", b"x"),
            Err(FilesError::Path(PathError::Escapes(_)))
        ));
        // A resume goes on from what is there, cut to the offset.
        fs::write(root.join(".r.harmony-part"), b"abcdef").unwrap();
        mirror.open("r", 3, Some(5)).unwrap();
        mirror.write(b"DE").unwrap();
        mirror.commit("r", None).unwrap();
        assert_eq!(fs::read(root.join("r")).unwrap(), b"abcDE");
        // Deleted: the file and any partial file of it.
        fs::write(root.join(".a.harmony-part"), b"old").unwrap();
        mirror.delete("a").unwrap();
        assert!(!root.join("a").exists() && !root.join(".a.harmony-part").exists());
        mirror.delete("never/was").unwrap();
    }
}
