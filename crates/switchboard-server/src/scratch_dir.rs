//! A directory of one server's own in the system's temporary directory (a memory-only
//! server keeps its large bodies there): removed when the server drops it, and removed by
//! the next server to start if its owner died without removing it.
//!
//! Whether the owner is alive is known from a lock, not from the process id in the name:
//! the owner holds an exclusive lock on a file inside the directory for as long as it
//! runs, and the system releases that lock when the process ends, however it ends. A
//! sweeper that can take the lock knows nobody uses the directory any more.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::log;

/// The file whose lock says the directory's owner is alive.
const OWNER_LOCK: &str = "owner.lock";
/// The lock file's name until it is locked.
const MAKING_LOCK: &str = "owner.lock.new";

/// A directory removed, with everything in it, when this is dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    /// Held locked for the directory's life; `None` only while it is being dropped.
    lock: Option<File>,
}

impl ScratchDir {
    /// Creates `<temp>/<prefix><pid>-<instance>`, first removing any directory of the same
    /// prefix whose owner is gone.
    pub fn create(prefix: &str, instance: u64) -> io::Result<ScratchDir> {
        let parent = std::env::temp_dir();
        sweep(&parent, prefix);
        let path = parent.join(format!("{prefix}{}-{instance}", std::process::id()));
        // A directory of this very name was left by an earlier process that had this id:
        // it is dead (the id is this process's now), so its files go.
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        // The lock file gets its name only once it is locked, so that a sweeper never
        // finds it with a lock nobody holds yet.
        let making = path.join(MAKING_LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&making)?;
        lock.try_lock().map_err(|error| match error {
            TryLockError::Error(error) => error,
            TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by another process", path.display()),
            ),
        })?;
        std::fs::rename(&making, path.join(OWNER_LOCK))?;
        Ok(ScratchDir {
            path,
            lock: Some(lock),
        })
    }

    /// Where the directory is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Closed first: some systems do not remove a directory holding an open file.
        drop(self.lock.take());
        if let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != io::ErrorKind::NotFound
        {
            warn!(target: log::ERROR, dir = %self.path.display(), %error, "cannot remove a temporary directory");
        }
    }
}

/// Removes the directories in `parent` named `<prefix>…` whose owner no longer runs.
fn sweep(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let mut removed = 0u32;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|name| name.strip_prefix(prefix)) else {
            continue;
        };
        if owner_is_gone(&entry.path(), rest)
            && entry.file_type().is_ok_and(|kind| kind.is_dir())
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    if removed > 0 {
        info!(target: log::GENERAL, removed, dir = %parent.display(), "removed temporary directories left by servers that are gone");
    }
}

/// Whether the directory's owner has ended. `rest` is its name after the prefix:
/// `<pid>-<instance>`.
fn owner_is_gone(path: &Path, rest: &str) -> bool {
    match File::open(path.join(OWNER_LOCK)) {
        // The lock is released by the system when its holder ends; a directory gets its
        // name only once its lock is held.
        Ok(file) => file.try_lock().is_ok(),
        // No lock file: being made this moment, or left by a version that did not lock.
        // Only a process id that is known not to run says it is not in use.
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            process_of(rest).is_some_and(process_is_gone)
        }
        Err(_) => false,
    }
}

/// The process id in a name's `<pid>-<instance>`.
fn process_of(rest: &str) -> Option<u32> {
    rest.split('-').next().and_then(|pid| pid.parse().ok())
}

/// Whether no process of this id runs (known only where the system lists its processes
/// as files; elsewhere the answer is "not known to be gone").
fn process_is_gone(pid: u32) -> bool {
    let proc = Path::new("/proc");
    cfg!(target_os = "linux") && proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique_prefix(test: &str) -> String {
        format!("switchboard-scratch-test-{test}-{}-", std::process::id())
    }

    #[test]
    fn dropped_directory_is_removed_with_its_files() {
        let prefix = unique_prefix("drop");
        let dir = ScratchDir::create(&prefix, 0).unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("body"), b"bytes").unwrap();
        assert!(path.join("body").exists());
        drop(dir);
        assert!(!path.exists(), "{} is still there", path.display());
    }

    #[test]
    fn a_dead_owners_directory_is_swept_and_a_live_ones_is_kept() {
        let prefix = unique_prefix("sweep");
        let live = ScratchDir::create(&prefix, 1).unwrap();
        // A directory whose owner ended: its lock file exists and nobody holds it.
        let dead = std::env::temp_dir().join(format!("{prefix}999999-0"));
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(dead.join(OWNER_LOCK), b"").unwrap();
        std::fs::write(dead.join("body"), b"left behind").unwrap();

        let next = ScratchDir::create(&prefix, 2).unwrap();
        assert!(!dead.exists(), "the dead owner's directory was not swept");
        assert!(live.path().exists(), "a live owner's directory was swept");
        drop(live);
        drop(next);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_without_a_lock_is_swept_only_when_its_process_is_gone() {
        let prefix = unique_prefix("legacy");
        // Process ids are below 2^22 on Linux: this one runs nowhere.
        let gone = std::env::temp_dir().join(format!("{prefix}4194999-0"));
        let ours = std::env::temp_dir().join(format!("{prefix}{}-7", std::process::id()));
        for dir in [&gone, &ours] {
            std::fs::create_dir_all(dir).unwrap();
        }

        let dir = ScratchDir::create(&prefix, 0).unwrap();
        assert!(
            !gone.exists(),
            "a directory of a process that is gone was kept"
        );
        assert!(ours.exists(), "a directory of a running process was swept");
        drop(dir);
        std::fs::remove_dir_all(&ours).unwrap();
    }
}
