//! The client's destination: partial files beside their final names, renamed into place only
//! when complete and verified; no write ever goes through a symbolic link or outside the root.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::FallocateFlags;
use tracing::warn;

use crate::client::ResumePoint;
use crate::error::{FilesError, PathError};
use crate::ext;
use crate::ext::Hasher;
use crate::path::{self, PART_SUFFIX};
use crate::record::{self, Record, Stamp};

/// Files at least this large get their blocks reserved when opened.
const PREALLOCATE_MIN: u64 = 1 << 20;

struct Open {
    name: String,
    temp: PathBuf,
    file: File,
}

/// The destination directory.
pub(crate) struct Mirror {
    root: PathBuf,
    open: Option<Open>,
    /// Directories under the root found (or made) real directories, not links: checked once,
    /// not once per file. Forgotten after any error.
    checked: HashSet<PathBuf>,
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

impl Mirror {
    pub(crate) fn new(root: PathBuf) -> Result<Self, FilesError> {
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        Ok(Self {
            digests: Record::digests(&root),
            root,
            open: None,
            checked: HashSet::new(),
        })
    }

    /// The final path of `name`, its parent directories created (when `create`) and checked:
    /// none may be a symbolic link or a non-directory. `None` when a parent does not exist
    /// and `create` is false.
    fn resolve(&mut self, name: &str, create: bool) -> Result<Option<PathBuf>, FilesError> {
        let parts = path::relative(name)?;
        let mut at = self.root.clone();
        for dir in &parts[..parts.len() - 1] {
            at.push(dir);
            if self.checked.contains(&at) {
                continue;
            }
            match at.symlink_metadata() {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(PathError::Escapes(at).into()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    fs::create_dir(&at).map_err(io_err(&at))?;
                }
                Err(e) => return Err(io_err(&at)(e)),
            }
            self.checked.insert(at.clone());
        }
        at.push(parts[parts.len() - 1]);
        Ok(Some(at))
    }

    fn temp_of(target: &Path) -> PathBuf {
        let base = target
            .file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy());
        target.with_file_name(format!(".{base}{PART_SUFFIX}"))
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
            self.checked.clear();
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
        let target = self.resolve(name, true)?.expect("created");
        let temp = Self::temp_of(&target);
        let create = || OpenOptions::new().write(true).create_new(true).open(&temp);
        let file = if offset == 0 {
            // `create_new` never follows a link; what is in the way is looked at only then.
            match create() {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if temp.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                        return Err(PathError::Escapes(temp).into());
                    }
                    fs::remove_file(&temp).map_err(io_err(&temp))?;
                    create().map_err(io_err(&temp))?
                }
                Err(e) => return Err(io_err(&temp)(e)),
            }
        } else {
            let meta = temp.symlink_metadata().map_err(io_err(&temp))?;
            if !meta.is_file() || meta.len() < offset {
                return Err(PathError::Escapes(temp).into());
            }
            let mut file = OpenOptions::new()
                .write(true)
                .open(&temp)
                .map_err(io_err(&temp))?;
            file.set_len(offset).map_err(io_err(&temp))?;
            file.seek(SeekFrom::Start(offset)).map_err(io_err(&temp))?;
            file
        };
        if let Some(size) = size.filter(|&s| s >= PREALLOCATE_MIN && s > offset) {
            // Blocks reserved at once instead of page by page as the chunks are written (less
            // file system work per chunk). The size stays what is written, which is what a
            // resume goes by; where it is not supported, the writes allocate as before.
            let _ = rustix::fs::fallocate(&file, FallocateFlags::KEEP_SIZE, offset, size - offset);
        }
        self.open = Some(Open {
            name: name.to_string(),
            temp,
            file,
        });
        Ok(())
    }

    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), FilesError> {
        let open = self
            .open
            .as_mut()
            .ok_or(FilesError::Invalid("write without an open file".into()))?;
        open.file.write_all(data).map_err(io_err(&open.temp))
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
        let target = match self.resolve(name, true) {
            Ok(target) => target.expect("created"),
            Err(e) => {
                self.checked.clear();
                return Err(e);
            }
        };
        // Over a directory, rename fails (EISDIR): only then is it looked at.
        if let Err(e) = fs::rename(&open.temp, &target) {
            self.checked.clear();
            if target.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                return Err(PathError::Escapes(target).into());
            }
            return Err(io_err(&target)(e));
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
                return remove_if_exists(&open.temp);
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
        let Some(target) = self.resolve(name, false)? else {
            return Ok(());
        };
        remove_if_exists(&Self::temp_of(&target))?;
        match target.symlink_metadata() {
            Ok(meta) if meta.is_dir() => Err(PathError::Escapes(target).into()),
            Ok(_) => fs::remove_file(&target).map_err(io_err(&target)),
            Err(_) => Ok(()),
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

fn remove_if_exists(path: &Path) -> Result<(), FilesError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// digest state over a whole file, and its length.
fn hash_file(path: &Path) -> Result<(Hasher, u64), FilesError> {
    let mut file = File::open(path).map_err(io_err(path))?;
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
