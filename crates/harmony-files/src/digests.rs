//! The client's record of the digests of the files it holds, kept in the destination
//! ([`DIGESTS_FILE`]) so that a restarted client does not read every file again to tell the
//! server what it has (ICANHAZ's cache, see [`crate::ext`]).
//!
//! A file whose size, modification and change times, device and inode are what was recorded
//! is taken to hold the recorded digest; any other is read again, as is a file that changed
//! while it was read. The server checks digests against its own files anyway: a wrong record
//! could only make it send a file again or, for a file changed behind the stamp's back (which
//! the change time rules out short of resetting the clock), skip one. The record is written
//! when the client is caught up and when it stops; a record lost in a crash only costs reads.

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::path::{CACHE_SUFFIX, DIGESTS_FILE};
/// Where a new record is written before it replaces the old one.
const DIGESTS_NEW: &str = ".digests-new.harmony-cache";
/// First line of the record; another one (an older or newer format) is not read.
const HEADER: &str = "harmony-files digests 1\n";

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    dev: u64,
    ino: u64,
}

impl Stamp {
    pub(crate) fn of(meta: &Metadata) -> Self {
        Self {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The digests of whole files under the destination, by name relative to it.
#[derive(Debug)]
pub(crate) struct Digests {
    root: PathBuf,
    entries: BTreeMap<String, (Stamp, String)>,
    /// Changed since loaded or last saved.
    dirty: bool,
}

impl Digests {
    /// The record kept in `root`; empty when there is none or it cannot be read. Entries that
    /// do not parse are left out.
    pub(crate) fn load(root: &Path) -> Self {
        let entries = fs::read(root.join(DIGESTS_FILE))
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.strip_prefix(HEADER).map(parse))
            .unwrap_or_default();
        Self {
            root: root.to_path_buf(),
            entries,
            dirty: false,
        }
    }

    /// The digest recorded for `name` if the file is still the version it was made from.
    pub(crate) fn get(&self, name: &str, now: &Metadata) -> Option<&str> {
        self.entries
            .get(name)
            .filter(|(stamp, _)| *stamp == Stamp::of(now))
            .map(|(_, digest)| digest.as_str())
    }

    pub(crate) fn record(&mut self, name: &str, stamp: Stamp, digest: &str) {
        self.entries
            .insert(name.to_string(), (stamp, digest.to_string()));
        self.dirty = true;
    }

    pub(crate) fn forget(&mut self, name: &str) {
        self.dirty |= self.entries.remove(name).is_some();
    }

    /// Keeps only the names `keep` says yes to (the files found on disk).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.entries.len();
        self.entries.retain(|name, _| keep(name));
        self.dirty |= self.entries.len() != before;
    }

    /// Writes the record if it changed: a new file, then renamed over the old one.
    pub(crate) fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut text = String::from(HEADER);
        for (name, (s, digest)) in &self.entries {
            // Names hold no NUL (refused by `path::relative`): it ends each entry.
            text.push_str(&format!(
                "{digest} {} {}.{} {}.{} {} {} {name}\0",
                s.len, s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1, s.dev, s.ino
            ));
        }
        let new = self.root.join(DIGESTS_NEW);
        let written =
            fs::write(&new, text).and_then(|()| fs::rename(&new, self.root.join(DIGESTS_FILE)));
        if written.is_err() {
            let _ = fs::remove_file(&new);
        }
        self.dirty = written.is_err();
        written
    }
}

/// Whether `name` (relative to the destination) is one of the record's own files.
pub(crate) fn is_own(name: &str) -> bool {
    name.ends_with(CACHE_SUFFIX)
}

fn parse(text: &str) -> BTreeMap<String, (Stamp, String)> {
    let pair = |s: &str| -> Option<(i64, i64)> {
        let (a, b) = s.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    text.split('\0')
        .filter_map(|entry| {
            let mut f = entry.splitn(7, ' ');
            let digest = f.next()?;
            let stamp = Stamp {
                len: f.next()?.parse().ok()?,
                mtime: pair(f.next()?)?,
                ctime: pair(f.next()?)?,
                dev: f.next()?.parse().ok()?,
                ino: f.next()?.parse().ok()?,
            };
            let name = f.next().filter(|n| !n.is_empty())?;
            Some((name.to_string(), (stamp, digest.to_string())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_then_loaded_and_checked_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a b.txt");
        fs::write(&file, b"one").unwrap();
        let mut digests = Digests::load(dir.path());
        assert!(digests.entries.is_empty());
        let meta = fs::metadata(&file).unwrap();
        digests.record("a b.txt", Stamp::of(&meta), "d1");
        digests.record("x/y\nz", Stamp::of(&meta), "d2");
        digests.save().unwrap();
        assert!(!dir.path().join(DIGESTS_NEW).exists());

        let loaded = Digests::load(dir.path());
        assert_eq!(loaded.entries, digests.entries);
        assert_eq!(loaded.get("a b.txt", &meta), Some("d1"));
        assert_eq!(loaded.get("missing", &meta), None);
        // Written again: another version (new change time, here also another length).
        fs::write(&file, b"two!").unwrap();
        assert_eq!(loaded.get("a b.txt", &fs::metadata(&file).unwrap()), None);
    }

    #[test]
    fn a_damaged_record_costs_only_its_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        let good = "d 3 1.2 3.4 5 6 good\0";
        fs::write(
            dir.path().join(DIGESTS_FILE),
            format!("{HEADER}{good}d x 1.2 3.4 5 6 bad\0d 3 1.2\0d 3 1.2 3.4 5 6 \0\u{1}"),
        )
        .unwrap();
        let loaded = Digests::load(dir.path());
        assert_eq!(loaded.entries.keys().collect::<Vec<_>>(), ["good"]);
        // Another format: nothing is read.
        fs::write(dir.path().join(DIGESTS_FILE), format!("other 2\n{good}")).unwrap();
        assert!(Digests::load(dir.path()).entries.is_empty());
        fs::write(dir.path().join(DIGESTS_FILE), [0xff, 0xfe]).unwrap();
        assert!(Digests::load(dir.path()).entries.is_empty());
    }

    #[test]
    fn unchanged_records_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut digests = Digests::load(dir.path());
        digests.save().unwrap();
        assert!(!dir.path().join(DIGESTS_FILE).exists());
        digests.forget("nothing");
        digests.save().unwrap();
        assert!(!dir.path().join(DIGESTS_FILE).exists());
        assert!(is_own(DIGESTS_FILE) && is_own(DIGESTS_NEW) && !is_own("a.txt"));
    }
}
