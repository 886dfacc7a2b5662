//! Records kept on disk across restarts, so that a restarted client or server does not read
//! every file again: what was computed from a file (its digest, its manifest) by a name, with
//! the stamp of the version it was computed from.
//!
//! - The client keeps the digests of the files it holds in the destination
//!   ([`DIGESTS_FILE`]), for ICANHAZ's cache (see [`crate::ext`]).
//! - A server given a record file keeps its files' manifests there (see
//!   `FileServerBuilder::manifest_record`).
//!
//! A file whose size, modification and change times, device and inode are what was recorded
//! is taken to be the version the record was made from; any other is read again, as is a file
//! that changed while it was read. The peers check what matters anyway (the server a
//! client's digests against its own files, the client every chunk's crc32 and the whole
//! file's digest): a wrong record could only make a file go again, or be refused. The change
//! time rules out a file rewritten behind the stamp's back, short of resetting the clock. A
//! record is written when its owner is caught up and when it stops; one lost in a crash only
//! costs reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::path::{CACHE_SUFFIX, DIGESTS_FILE};

/// Where the client writes a new record of digests before it replaces the old one.
const DIGESTS_NEW: &str = ".digests-new.harmony-cache";
/// First line of the client's record of digests.
pub(crate) const DIGESTS_HEADER: &str = "harmony-files digests 1\n";

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) len: u64,
    pub(crate) mtime: (i64, i64),
    pub(crate) ctime: (i64, i64),
    pub(crate) dev: u64,
    pub(crate) ino: u64,
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

/// Name -> the stamp of the version of the file a value was made from, and the value.
pub(crate) type Entries = BTreeMap<String, (Stamp, String)>;

/// Values made from files, by name, each with the stamp of the version it was made from.
#[derive(Debug)]
pub(crate) struct Record {
    /// The record's file.
    path: PathBuf,
    /// Where a new record is written before it replaces the old one.
    new: PathBuf,
    /// First line of the file; another one (an older or newer format) is not read.
    header: &'static str,
    entries: Entries,
    /// Changed since loaded or last saved.
    dirty: bool,
}

impl Record {
    /// The client's record of digests in destination `root`.
    pub(crate) fn digests(root: &Path) -> Self {
        Self::load(
            root.join(DIGESTS_FILE),
            root.join(DIGESTS_NEW),
            DIGESTS_HEADER,
        )
    }

    /// The record kept in `path` (a new one is written to `new` first); empty when there is
    /// none or it cannot be read. Entries that do not parse are left out.
    pub(crate) fn load(path: PathBuf, new: PathBuf, header: &'static str) -> Self {
        let entries = fs::read(&path)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.strip_prefix(header).map(parse))
            .unwrap_or_default();
        Self {
            path,
            new,
            header,
            entries,
            dirty: false,
        }
    }

    /// The value recorded for `name` if the file is still the version it was made from.
    pub(crate) fn get(&self, name: &str, now: &Metadata) -> Option<&str> {
        self.entries
            .get(name)
            .filter(|(stamp, _)| *stamp == Stamp::of(now))
            .map(|(_, value)| value.as_str())
    }

    /// Every name on record with its value.
    pub(crate) fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(name, (_, value))| (name.as_str(), value.as_str()))
    }

    pub(crate) fn record(&mut self, name: &str, stamp: Stamp, value: &str) {
        self.entries
            .insert(name.to_string(), (stamp, value.to_string()));
        self.dirty = true;
    }

    /// Records `value` made from the file at `path` if it is still the version `before`
    /// described (it did not change while it was read); else forgets `name`.
    pub(crate) fn record_unless_changed(
        &mut self,
        name: &str,
        path: &Path,
        before: &Metadata,
        value: &str,
    ) {
        let stamp = Stamp::of(before);
        match path.symlink_metadata() {
            Ok(after) if Stamp::of(&after) == stamp => self.record(name, stamp, value),
            _ => self.forget(name),
        }
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
        let mut text = String::from(self.header);
        text.push_str(&format(&self.entries));
        let written = fs::write(&self.new, text).and_then(|()| fs::rename(&self.new, &self.path));
        if written.is_err() {
            let _ = fs::remove_file(&self.new);
        }
        self.dirty = written.is_err();
        written
    }
}

/// Whether `name` (relative to the destination) is one of the record's own files.
pub(crate) fn is_own(name: &str) -> bool {
    name.ends_with(CACHE_SUFFIX)
}

/// Entries: `LEN MTIME CTIME DEV INO VALUE` NUL `NAME` NUL (what [`parse`] reads).
pub(crate) fn format(entries: &Entries) -> String {
    let mut text = String::new();
    for (name, (s, value)) in entries {
        // Names hold no NUL (refused by `path::relative`; none in a path either): it ends
        // each entry. Values hold no NUL.
        let _ = write!(
            text,
            "{} {}.{} {}.{} {} {} {value}\0{name}\0",
            s.len, s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1, s.dev, s.ino
        );
    }
    text
}

/// The entries of [`format`]'s text (after the header); those that do not parse are left out.
pub(crate) fn parse(text: &str) -> Entries {
    let pair = |s: &str| -> Option<(i64, i64)> {
        let (a, b) = s.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let fields: Vec<&str> = text.split('\0').collect();
    fields
        .chunks_exact(2)
        .filter_map(|entry| {
            let [head, name] = entry else { return None };
            let mut f = head.splitn(6, ' ');
            let stamp = Stamp {
                len: f.next()?.parse().ok()?,
                mtime: pair(f.next()?)?,
                ctime: pair(f.next()?)?,
                dev: f.next()?.parse().ok()?,
                ino: f.next()?.parse().ok()?,
            };
            let value = f.next()?;
            (!name.is_empty()).then(|| (name.to_string(), (stamp, value.to_string())))
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
        let mut digests = Record::digests(dir.path());
        assert!(digests.entries.is_empty());
        let meta = fs::metadata(&file).unwrap();
        digests.record("a b.txt", Stamp::of(&meta), "d1");
        digests.record("x/y\nz", Stamp::of(&meta), "d2 with spaces");
        digests.save().unwrap();
        assert!(!dir.path().join(DIGESTS_NEW).exists());

        let loaded = Record::digests(dir.path());
        assert_eq!(loaded.entries, digests.entries);
        assert_eq!(loaded.get("a b.txt", &meta), Some("d1"));
        assert_eq!(loaded.get("x/y\nz", &meta), Some("d2 with spaces"));
        assert_eq!(loaded.get("missing", &meta), None);
        // Written again: another version (new change time, here also another length).
        fs::write(&file, b"two!").unwrap();
        assert_eq!(loaded.get("a b.txt", &fs::metadata(&file).unwrap()), None);
    }

    #[test]
    fn a_damaged_record_costs_only_its_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        let good = "3 1.2 3.4 5 6 d\0good\0";
        fs::write(
            dir.path().join(DIGESTS_FILE),
            format!("{DIGESTS_HEADER}{good}x 1.2 3.4 5 6 d\0bad\03 1.2\0short\03 1.2 3.4 5 6 d\0\0\u{1}"),
        )
        .unwrap();
        let loaded = Record::digests(dir.path());
        assert_eq!(loaded.entries.keys().collect::<Vec<_>>(), ["good"]);
        // Another format: nothing is read.
        fs::write(dir.path().join(DIGESTS_FILE), format!("other 2\n{good}")).unwrap();
        assert!(Record::digests(dir.path()).entries.is_empty());
        fs::write(dir.path().join(DIGESTS_FILE), [0xff, 0xfe]).unwrap();
        assert!(Record::digests(dir.path()).entries.is_empty());
    }

    #[test]
    fn unchanged_records_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut digests = Record::digests(dir.path());
        digests.save().unwrap();
        assert!(!dir.path().join(DIGESTS_FILE).exists());
        digests.forget("nothing");
        digests.save().unwrap();
        assert!(!dir.path().join(DIGESTS_FILE).exists());
        assert!(is_own(DIGESTS_FILE) && is_own(DIGESTS_NEW) && !is_own("a.txt"));
    }
}
