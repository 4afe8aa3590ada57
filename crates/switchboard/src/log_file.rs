//! The log file of `serve --log-file`, capped in size: once a write would take it past
//! its cap, it is renamed with `.1` appended (replacing the previous one) and a new file
//! is started, so the log takes at most about twice the cap on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A log file that rotates at a size cap, keeping one rotated file.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    len: u64,
    /// Bytes a file may reach; 0 for no cap.
    max_bytes: u64,
}

impl RotatingFile {
    /// Opens (appending to) the log file at `path`.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<RotatingFile> {
        let file = open_append(path)?;
        let len = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            file,
            len,
            max_bytes,
        })
    }

    /// The path of the rotated file: the log file's name with `.1` appended.
    pub fn rotated_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        std::fs::rename(&self.path, Self::rotated_path(&self.path))?;
        self.file = open_append(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let over = self.len.saturating_add(buf.len() as u64) > self.max_bytes;
        // A file holding nothing yet takes the write whatever its size: a line longer
        // than the cap is not split, nor rotated forever.
        if self.max_bytes > 0 && over && self.len > 0 {
            self.rotate()?;
        }
        let written = self.file.write(buf)?;
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_at_its_cap_keeping_one_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        std::fs::write(&path, "earlier line\n").unwrap();
        let mut log = RotatingFile::open(&path, 100).unwrap();
        // One write per line, as the logger makes them.
        let mut line = [b'a'; 40];
        line[39] = b'\n';
        let mut lines = 0;
        for _ in 0..10 {
            log.write_all(&line).unwrap();
            lines += 1;
        }
        log.flush().unwrap();
        let current = std::fs::metadata(&path).unwrap().len();
        let rotated = RotatingFile::rotated_path(&path);
        assert_eq!(rotated, dir.path().join("server.log.1"));
        let kept = std::fs::metadata(&rotated).unwrap().len();
        assert!(current <= 100 && kept <= 100, "{current} and {kept} bytes");
        // Whole lines in both; only the oldest are gone.
        assert!(current > 0 && current.is_multiple_of(40), "{current}");
        assert!(kept.is_multiple_of(40), "{kept}");
        assert!(current + kept >= 80, "{current} + {kept}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert!(lines * 40 > current + kept, "something was rotated away");
    }

    #[test]
    fn a_cap_of_zero_never_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let mut log = RotatingFile::open(&path, 0).unwrap();
        for _ in 0..100 {
            log.write_all(b"line\n").unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 500);
        assert!(!RotatingFile::rotated_path(&path).exists());
    }
}
