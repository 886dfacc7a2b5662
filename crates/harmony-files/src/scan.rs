//! The server's view of its published directories: a periodic scan that reports a file once
//! it is stable (not modified for a while), again when it changes, and its removal.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::debug;

use crate::manifest::{self, FileVersion};
use crate::path::{self, CACHE_SUFFIX, PART_SUFFIX};
use crate::server::Source;

/// A change found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Changed {
        vpath: String,
        path: PathBuf,
        /// What was found.
        found: FileVersion,
        /// For the core: a new number whenever `found` changes.
        version: u64,
    },
    Removed {
        vpath: String,
    },
}

#[derive(Debug)]
struct Mount {
    dir: PathBuf,
    vpath: String,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    found: FileVersion,
    version: u64,
}

/// Published directories and the files reported from them.
#[derive(Debug)]
pub(crate) struct Scanner {
    mounts: Vec<Mount>,
    stable_after: Duration,
    reported: BTreeMap<String, (PathBuf, Seen)>,
    /// Versions handed out so far.
    versions: u64,
}

impl Scanner {
    pub(crate) fn new(stable_after: Duration) -> Self {
        Self {
            mounts: Vec::new(),
            stable_after,
            reported: BTreeMap::new(),
            versions: 0,
        }
    }

    pub(crate) fn publish(&mut self, dir: PathBuf, vpath: String) {
        self.mounts.push(Mount { dir, vpath });
    }

    /// Walks every mount; returns what changed since the last scan.
    pub(crate) fn scan(&mut self) -> Vec<Change> {
        let now = SystemTime::now();
        let mut found = BTreeMap::new();
        let mut unstable = Vec::new();
        for mount in &self.mounts {
            walk(&mount.dir, &mount.vpath, &mut |vpath, path, meta| {
                let modified = meta.modified().unwrap_or(UNIX_EPOCH);
                let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
                if age < self.stable_after {
                    unstable.push(vpath);
                    return;
                }
                found.insert(vpath, (path, FileVersion::of(&meta)));
            });
        }
        let mut changes = Vec::new();
        let gone: Vec<String> = self
            .reported
            .keys()
            .filter(|v| !found.contains_key(*v) && !unstable.contains(v))
            .cloned()
            .collect();
        for vpath in gone {
            self.reported.remove(&vpath);
            changes.push(Change::Removed { vpath });
        }
        for (vpath, (path, found)) in found {
            if self.reported.get(&vpath).map(|(_, s)| s.found) != Some(found) {
                self.versions += 1;
                let version = self.versions;
                changes.push(Change::Changed {
                    vpath: vpath.clone(),
                    path: path.clone(),
                    found,
                    version,
                });
                self.reported.insert(vpath, (path, Seen { found, version }));
            }
        }
        changes
    }

    /// Forgets `vpath`: the next scan reports it again (as changed) if it is there.
    pub(crate) fn forget(&mut self, vpath: &str) {
        self.reported.remove(vpath);
    }

    /// Whether `vpath` is still reported at `version`.
    pub(crate) fn is_current(&self, vpath: &str, version: u64) -> bool {
        self.reported
            .get(vpath)
            .is_some_and(|(_, s)| s.version == version)
    }

    /// Reads published files for the core.
    /// With `regions`, content may be sent straight from the files (see [`Source::file`]).
    pub(crate) fn source<'a>(
        &'a self,
        open: &'a mut Option<(String, Arc<File>)>,
        regions: bool,
    ) -> FsSource<'a> {
        FsSource {
            reported: &self.reported,
            open,
            regions,
        }
    }
}

/// Regular files under `dir` as `(vpath, path, metadata)`; symbolic links are not followed
/// (a published tree cannot leak what lies outside it); a client's partial files and records
/// are skipped (a mirror can be published in turn).
fn walk(dir: &Path, vpath: &str, f: &mut dyn FnMut(String, PathBuf, fs::Metadata)) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            debug!(dir = %dir.display(), %e, "cannot scan");
            return;
        }
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let child = path::join(vpath, &name);
        if meta.is_dir() {
            walk(&entry.path(), &child, f);
        } else if meta.is_file() && !name.ends_with(PART_SUFFIX) && !name.ends_with(CACHE_SUFFIX) {
            f(child, entry.path(), meta);
        }
    }
}

/// Opens the file the scan found at `path`, only if it is still that file: not a link put in its
/// place (not followed), nor another file reached through a directory swapped for a link since
/// (another inode). Anything else would send what was never published.
fn open_scanned(path: &Path, found: FileVersion) -> io::Result<File> {
    use std::os::unix::fs::MetadataExt;
    let file = manifest::open_found(path)?;
    if file.metadata()?.ino() != found.inode {
        return Err(io::Error::other(format!(
            "{} was replaced since it was scanned",
            path.display()
        )));
    }
    Ok(file)
}

/// [`Source`] over the scanned files, keeping the last file open.
pub(crate) struct FsSource<'a> {
    reported: &'a BTreeMap<String, (PathBuf, Seen)>,
    open: &'a mut Option<(String, Arc<File>)>,
    regions: bool,
}

impl FsSource<'_> {
    fn open(&mut self, vpath: &str) -> io::Result<&Arc<File>> {
        if self.open.as_ref().is_none_or(|(v, _)| v != vpath) {
            let (path, seen) = self
                .reported
                .get(vpath)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            *self.open = Some((vpath.to_string(), Arc::new(open_scanned(path, seen.found)?)));
        }
        Ok(&self.open.as_ref().expect("opened above").1)
    }
}

impl Source for FsSource<'_> {
    fn file(&mut self, vpath: &str) -> Option<Arc<File>> {
        if !self.regions {
            return None;
        }
        self.open(vpath).ok().cloned()
    }

    fn read_into(
        &mut self,
        vpath: &str,
        offset: u64,
        len: usize,
        dst: &mut Vec<u8>,
    ) -> io::Result<usize> {
        // Straight into the frame's spare capacity: no zeroing, no copy.
        let mut reader: &File = self.open(vpath)?;
        reader.seek(SeekFrom::Start(offset))?;
        reader.take(len as u64).read_to_end(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server would send of `vpath` from its first byte, read through a fresh source.
    fn read(scanner: &Scanner, vpath: &str) -> io::Result<Vec<u8>> {
        let mut open = None;
        let mut out = Vec::new();
        scanner
            .source(&mut open, false)
            .read_into(vpath, 0, 100, &mut out)?;
        Ok(out)
    }

    #[test]
    fn a_scanned_file_replaced_by_a_link_or_reached_through_one_is_not_read() {
        let (dir, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir(dir.path().join("d")).unwrap();
        for (name, data) in [("a", "published a"), ("d/b", "published b")] {
            fs::write(dir.path().join(name), data).unwrap();
        }
        fs::write(outside.path().join("secret"), "not published").unwrap();
        fs::write(outside.path().join("b"), "not published either").unwrap();
        let mut scanner = Scanner::new(Duration::ZERO);
        scanner.publish(dir.path().to_path_buf(), "/".into());
        assert_eq!(scanner.scan().len(), 2);
        assert_eq!(read(&scanner, "/a").unwrap(), b"published a");
        assert_eq!(read(&scanner, "/d/b").unwrap(), b"published b");

        // Swapped after the scan, before the next one: a FIFO (which would block an open for
        // reading), then a link; a directory for a link.
        let a = dir.path().join("a");
        fs::remove_file(&a).unwrap();
        let fifo = rustix::fs::FileType::Fifo;
        rustix::fs::mknodat(rustix::fs::CWD, &a, fifo, rustix::fs::Mode::RUSR, 0).unwrap();
        assert!(read(&scanner, "/a").is_err());
        fs::remove_file(&a).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), &a).unwrap();
        assert!(read(&scanner, "/a").is_err());
        fs::rename(dir.path().join("d"), dir.path().join("d-old")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("d")).unwrap();
        assert!(read(&scanner, "/d/b").is_err());
        // The next scan skips links: both are gone from what is published.
        let changes = scanner.scan();
        assert!(changes.contains(&Change::Removed { vpath: "/a".into() }));
        assert!(changes.contains(&Change::Removed {
            vpath: "/d/b".into()
        }));
    }
}
