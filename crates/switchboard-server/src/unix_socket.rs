//! The Unix socket file a server listens on: what may be cleared away before binding (only
//! a stale socket, one nobody answers on), and removing it at shutdown only while it is
//! still the one this server bound.

use std::io;
use std::path::{Path, PathBuf};

/// A socket file this server bound, identified by device and inode so that shutdown never
/// removes a file that replaced it meanwhile (another server's socket, anything else).
#[derive(Debug)]
pub(crate) struct BoundSocket {
    path: PathBuf,
    identity: (u64, u64),
}

impl BoundSocket {
    /// Records the identity of the socket file just bound at `path`.
    #[cfg(unix)]
    pub(crate) fn identify(path: &Path) -> io::Result<BoundSocket> {
        Ok(BoundSocket {
            path: path.to_path_buf(),
            identity: identity(&std::fs::symlink_metadata(path)?),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still ours; anything else at the path stays.
    pub(crate) fn remove_if_ours(&self) {
        #[cfg(unix)]
        if let Ok(metadata) = std::fs::symlink_metadata(&self.path)
            && identity(&metadata) == self.identity
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(unix)]
fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

/// Makes room for binding at `path`: nothing there is fine; a stale socket (one that
/// refuses connections, left by a server that died) is removed. Anything else is an
/// error that names it: a live socket (another server), a regular file, a directory, a
/// symbolic link (even to a socket: the link is not ours to replace).
#[cfg(unix)]
pub(crate) fn clear_stale(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if let Some(kind) = not_a_socket(&metadata.file_type()) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{kind} is in the way, not a socket; remove it or choose another path"),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another server is listening on this socket",
        )),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io::Error::new(
            error.kind(),
            format!("cannot tell whether the socket there is in use: {error}"),
        )),
    }
}

/// What a file that is not a socket is, in words; `None` for a socket.
#[cfg(unix)]
fn not_a_socket(kind: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_socket() {
        None
    } else if kind.is_file() {
        Some("a regular file")
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_symlink() {
        Some("a symbolic link")
    } else {
        Some("a special file")
    }
}
