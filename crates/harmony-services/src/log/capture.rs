//! Capture to files: JSON lines into `DIR/harmony-log-NNNNNN.jsonl`, a new file once the current
//! one would pass the size limit, only the newest files kept.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

const PREFIX: &str = "harmony-log-";
const SUFFIX: &str = ".jsonl";

/// Where and how to capture.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// The directory (created if missing).
    pub dir: PathBuf,
    /// A file is closed and a new one started before it would pass this many bytes.
    pub rotate_size: u64,
    /// How many files are kept, the current one included; older ones are deleted.
    pub keep: usize,
}

/// An open capture.
#[derive(Debug)]
pub struct Capture {
    config: CaptureConfig,
    file: BufWriter<File>,
    index: u64,
    size: u64,
}

fn index_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

fn file_name(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{index:06}{SUFFIX}"))
}

/// The capture files in `dir`, oldest first.
pub(crate) fn capture_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| index_of(&p).map(|i| (i, p)))
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

impl Capture {
    /// Opens a new file after any already in the directory (a restarted collector never
    /// overwrites what an earlier run captured).
    pub fn open(config: CaptureConfig) -> io::Result<Self> {
        fs::create_dir_all(&config.dir)?;
        let index = capture_files(&config.dir)?
            .last()
            .and_then(|p| index_of(p))
            .map_or(1, |i| i + 1);
        let file = BufWriter::new(File::create(file_name(&config.dir, index))?);
        let mut capture = Self {
            config,
            file,
            index,
            size: 0,
        };
        capture.prune()?;
        Ok(capture)
    }

    /// Appends one line (a newline is added), rotating first if it would not fit.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.config.rotate_size {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    /// Writes buffered lines to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// The file being written.
    pub fn current(&self) -> PathBuf {
        file_name(&self.config.dir, self.index)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.index += 1;
        self.file = BufWriter::new(File::create(file_name(&self.config.dir, self.index))?);
        self.size = 0;
        self.prune()
    }

    fn prune(&mut self) -> io::Result<()> {
        let files = capture_files(&self.config.dir)?;
        let excess = files.len().saturating_sub(self.config.keep.max(1));
        for old in &files[..excess] {
            fs::remove_file(old)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("harmony-capture-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest() {
        let dir = temp_dir("rotate");
        let mut c = Capture::open(CaptureConfig {
            dir: dir.clone(),
            rotate_size: 100,
            keep: 3,
        })
        .unwrap();
        for i in 0..50 {
            c.write_line(&format!("{{\"n\":{i:04}}}")).unwrap(); // 12 bytes + newline
        }
        c.flush().unwrap();
        let files = capture_files(&dir).unwrap();
        assert_eq!(files.len(), 3);
        let mut lines = Vec::new();
        for f in &files {
            let text = fs::read_to_string(f).unwrap();
            assert!(
                text.len() <= 100,
                "{} has {} bytes",
                f.display(),
                text.len()
            );
            lines.extend(text.lines().map(str::to_owned));
        }
        // 7 lines per file: the last 3 files hold the newest lines, in order, none missing.
        assert_eq!(lines.last().unwrap(), "{\"n\":0049}");
        let first: usize = lines[0][5..9].parse().unwrap();
        let expected: Vec<String> = (first..50).map(|i| format!("{{\"n\":{i:04}}}")).collect();
        assert_eq!(lines, expected);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reopened_capture_starts_a_new_file() {
        let dir = temp_dir("reopen");
        let config = CaptureConfig {
            dir: dir.clone(),
            rotate_size: 1000,
            keep: 5,
        };
        let mut c = Capture::open(config.clone()).unwrap();
        c.write_line("first").unwrap();
        c.flush().unwrap();
        drop(c);
        let mut c = Capture::open(config).unwrap();
        c.write_line("second").unwrap();
        c.flush().unwrap();
        let files = capture_files(&dir).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(fs::read_to_string(&files[0]).unwrap(), "first\n");
        assert_eq!(fs::read_to_string(&files[1]).unwrap(), "second\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
