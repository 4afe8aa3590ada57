//! Bodies too large for one frame: received in chunks into a spool file, kept as a blob
//! file beside the store, and sent to receivers in chunks read back from that file, so
//! that memory per transfer stays bounded whatever the size.
//!
//! Layout under the blob directory:
//!
//! ```text
//! spool/<n>           an upload in progress (removed if it does not complete)
//! <message id>        a stored body
//! <message id>.sha256 its SHA-256, 32 raw bytes
//! ```
//!
//! An upload becomes visible only by a rename after its length and digest were checked,
//! so a broken transfer never leaves a half-stored body behind.
//!
//! Space: an upload is refused when it opens, knowing its announced length, if it would
//! leave less than the disk reserve free (the data directory's [`DiskGuard`]), or if the
//! bodies on disk and those being received would pass the server's budget for bodies
//! (`max_blob_bytes`: new uploads are refused, nothing stored is removed for them).
//! Bodies count against that budget from the moment their upload opens until their file
//! is deleted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};
use uuid::Uuid;

use crate::cluster::bodies::RemoteBody;
use crate::log;
use crate::scratch_dir::ScratchDir;
use crate::storage::{DiskGuard, human_bytes};

/// Length of a body digest.
pub const DIGEST_LEN: usize = 32;
/// How a memory-only server's blob directory is named in the temporary directory,
/// before `<pid>-<instance>`.
const TEMPORARY_PREFIX: &str = "switchboard-blobs-";

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("writing the body failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the body is longer than the announced {expected} bytes")]
    TooLong { expected: u64 },
    #[error("the body has {got} bytes; {expected} were announced")]
    WrongLength { expected: u64, got: u64 },
    #[error("the SHA-256 of the body does not match the digest sent")]
    DigestMismatch,
    /// The data volume or the budget for bodies has no room for it.
    #[error("cannot store the body: {0}")]
    Full(String),
    /// The data directory is gone.
    #[error("cannot store the body: {0}")]
    Unavailable(String),
}

/// Bytes of bodies on disk or being received, shared with every upload and blob so that
/// each gives its bytes back when its file goes.
#[derive(Debug, Default)]
struct Budget {
    used: AtomicU64,
}

impl Budget {
    fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// Where blobs live, and whether they outlive the server.
#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
    spool: PathBuf,
    /// Blobs of a memory-only server are deleted with their message; a durable server
    /// deletes them only when their message is trimmed.
    durable: bool,
    next_upload: AtomicU64,
    guard: Option<Arc<DiskGuard>>,
    /// Most bytes of bodies on disk and being received (`None`: no budget).
    max_bytes: Option<u64>,
    budget: Arc<Budget>,
    /// A memory-only server's directory, removed with the store.
    scratch: Option<ScratchDir>,
}

impl BlobStore {
    /// Opens the blob directory, creating it, and removes uploads a crash left behind.
    pub fn open(dir: PathBuf, durable: bool) -> Result<BlobStore, BlobError> {
        let spool = dir.join("spool");
        let dir_error = |path: &Path| {
            let path = path.display().to_string();
            move |source| BlobError::Dir { path, source }
        };
        std::fs::create_dir_all(&spool).map_err(dir_error(&spool))?;
        let mut leftovers = 0;
        for entry in std::fs::read_dir(&spool).map_err(dir_error(&spool))? {
            let entry = entry.map_err(dir_error(&spool))?;
            if std::fs::remove_file(entry.path()).is_ok() {
                leftovers += 1;
            }
        }
        if leftovers > 0 {
            info!(target: log::GENERAL, leftovers, "removed incomplete uploads");
        }
        let mut stored = 0;
        for entry in std::fs::read_dir(&dir).map_err(dir_error(&dir))? {
            let Ok(entry) = entry else { continue };
            let digest = entry.file_name().to_string_lossy().ends_with(".sha256");
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
                && !digest
            {
                stored += meta.len();
            }
        }
        Ok(BlobStore {
            dir,
            spool,
            durable,
            next_upload: AtomicU64::new(1),
            guard: None,
            max_bytes: None,
            budget: Arc::new(Budget {
                used: AtomicU64::new(stored),
            }),
            scratch: None,
        })
    }

    /// Admits uploads against the data directory's disk reserve.
    pub fn with_guard(mut self, guard: Option<Arc<DiskGuard>>) -> BlobStore {
        self.guard = guard;
        self
    }

    /// Refuses uploads that would bring the bodies kept over `max_bytes`.
    pub fn with_max_bytes(mut self, max_bytes: Option<u64>) -> BlobStore {
        self.max_bytes = max_bytes;
        self
    }

    /// Bytes of bodies on disk and being received.
    pub fn bytes_used(&self) -> u64 {
        self.budget.used.load(Ordering::Acquire)
    }

    /// Takes `len` bytes of the budget for a new upload, or refuses it.
    fn reserve(&self, len: u64) -> Result<(), BlobError> {
        if let Some(guard) = &self.guard
            && let Err(error) = guard.admit_upload(len)
        {
            return Err(if error.is_disk_full() {
                BlobError::Full(error.0)
            } else {
                BlobError::Unavailable(error.0)
            });
        }
        let max = self.max_bytes.unwrap_or(u64::MAX);
        let over_budget = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(len).filter(|&total| total <= max)
            })
            .map(drop)
            .map_err(|used| {
                BlobError::Full(format!(
                    "the stored bodies ({}) and this one ({}) would pass the server's budget for bodies of {}",
                    human_bytes(used),
                    human_bytes(len),
                    human_bytes(max)
                ))
            });
        if over_budget.is_err()
            && let Some(guard) = &self.guard
        {
            guard.abandoned(len);
        }
        over_budget
    }

    /// A blob directory of its own in the system's temporary directory, for a server
    /// without a data directory; it is removed when the store is dropped, or by the next
    /// server to start if this one is killed.
    pub fn temporary() -> Result<BlobStore, BlobError> {
        static INSTANCE: AtomicU64 = AtomicU64::new(0);
        let instance = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let scratch =
            ScratchDir::create(TEMPORARY_PREFIX, instance).map_err(|source| BlobError::Dir {
                path: std::env::temp_dir()
                    .join(format!(
                        "{TEMPORARY_PREFIX}{}-{instance}",
                        std::process::id()
                    ))
                    .display()
                    .to_string(),
                source,
            })?;
        let mut store = BlobStore::open(scratch.path().to_path_buf(), false)?;
        store.scratch = Some(scratch);
        Ok(store)
    }

    fn body_path(&self, id: &Uuid) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn digest_path(&self, id: &Uuid) -> PathBuf {
        self.dir.join(format!("{id}.sha256"))
    }

    /// Starts receiving a body of `expected` bytes.
    pub async fn begin(&self, expected: u64) -> Result<Upload, BlobError> {
        self.reserve(expected)?;
        let held = Held {
            budget: self.budget.clone(),
            bytes: expected,
        };
        let n = self.next_upload.fetch_add(1, Ordering::Relaxed);
        let path = self.spool.join(n.to_string());
        let file = tokio::fs::File::create(&path).await?;
        Ok(Upload {
            file: Some(file),
            path,
            hasher: Sha256::new(),
            written: 0,
            expected,
            held,
            guard: self.guard.clone(),
        })
    }

    /// Checks an upload's length and digest and finishes writing it; with `sync` (or on
    /// a durable store) the body is on disk when this returns. The checked upload becomes
    /// a message's body with [`BlobStore::store`], once the message has its id.
    pub async fn verify(
        &self,
        mut upload: Upload,
        digest: &[u8; DIGEST_LEN],
        sync: bool,
    ) -> Result<Verified, BlobError> {
        if upload.written != upload.expected {
            return Err(BlobError::WrongLength {
                expected: upload.expected,
                got: upload.written,
            });
        }
        let actual: [u8; DIGEST_LEN] = upload.hasher.clone().finalize().into();
        if &actual != digest {
            return Err(BlobError::DigestMismatch);
        }
        let Some(mut file) = upload.file.take() else {
            return Err(BlobError::Io(std::io::Error::other(
                "upload already closed",
            )));
        };
        file.flush().await?;
        if sync || self.durable {
            // Durable bodies are synced before the record that points at them exists.
            file.sync_data().await?;
        }
        drop(file);
        let mut verified = Verified {
            // Taken from the upload, which then has nothing to remove when dropped.
            body_path: std::mem::take(&mut upload.path),
            digest_path: None,
            len: upload.expected,
            digest: *digest,
            held: upload.held.take(),
        };
        let digest_path = verified
            .digest_path
            .insert(verified.body_path.with_extension("sha256"));
        tokio::fs::write(digest_path, digest).await?;
        Ok(verified)
    }

    /// Makes a checked upload the body of message `id`: two renames within the blob
    /// directory, so that it can be done where the id is assigned, under the history's
    /// lock (deleting a trimmed body happens there too).
    pub fn store(&self, mut verified: Verified, id: &Uuid) -> Result<Blob, BlobError> {
        let body = self.body_path(id);
        let digest_path = self.digest_path(id);
        if let Some(spooled) = &verified.digest_path {
            std::fs::rename(spooled, &digest_path)?;
            verified.digest_path = None;
        }
        if let Err(error) = std::fs::rename(&verified.body_path, &body) {
            let _ = std::fs::remove_file(&digest_path);
            return Err(error.into());
        }
        // Renamed: nothing is left in the spool for the drop to remove.
        verified.body_path = PathBuf::new();
        Ok(Blob {
            path: body,
            digest_path,
            len: verified.len,
            digest: verified.digest,
            delete_on_drop: AtomicBool::new(!self.durable),
            held: verified.held.take(),
            remote: None,
        })
    }

    /// The stored body of message `id`, if it is there whole.
    pub fn existing(&self, id: &Uuid, len: u64) -> Option<Blob> {
        let path = self.body_path(id);
        let digest_path = self.digest_path(id);
        let actual_len = std::fs::metadata(&path).ok()?.len();
        let digest: [u8; DIGEST_LEN] = std::fs::read(&digest_path).ok()?.try_into().ok()?;
        if actual_len != len {
            warn!(target: log::ERROR, %id, actual_len, len, "stored body has the wrong length; skipped");
            return None;
        }
        Some(Blob {
            path,
            digest_path,
            len,
            digest,
            delete_on_drop: AtomicBool::new(!self.durable),
            // Counted when the store opened, by the size of its file.
            held: Held {
                budget: self.budget.clone(),
                bytes: actual_len,
            },
            remote: None,
        })
    }

    /// Removes the directory of a temporary store.
    pub fn close(&self) {
        if !self.durable {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A body being received. Dropping it before it is committed deletes what was received.
#[derive(Debug)]
pub struct Upload {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
    expected: u64,
    held: Held,
    /// Told of the announced bytes as they arrive, and of those that never will.
    guard: Option<Arc<DiskGuard>>,
}

/// Bytes of the budget held by an upload or a blob, given back when it is dropped (for a
/// blob: only when its file is deleted).
#[derive(Debug)]
struct Held {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Held {
    /// Moves the bytes to a new owner; this one then gives nothing back.
    fn take(&mut self) -> Held {
        Held {
            budget: self.budget.clone(),
            bytes: std::mem::take(&mut self.bytes),
        }
    }

    fn give_back(&mut self) {
        self.budget.release(std::mem::take(&mut self.bytes));
    }
}

impl Upload {
    /// Appends a piece of the body.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        let written = self.written + data.len() as u64;
        if written > self.expected {
            return Err(BlobError::TooLong {
                expected: self.expected,
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(BlobError::Io(std::io::Error::other(
                "upload already closed",
            )));
        };
        file.write_all(data).await?;
        if let Some(guard) = &self.guard {
            guard.received(data.len() as u64);
        }
        self.hasher.update(data);
        self.written = written;
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        remove_spooled(&self.path);
        self.held.give_back();
        if let Some(guard) = &self.guard {
            guard.abandoned(self.expected.saturating_sub(self.written));
        }
    }
}

/// An upload whose length and digest were checked, still in the spool. Dropping it
/// deletes it.
#[derive(Debug)]
pub struct Verified {
    /// The body in the spool, until it is stored (then empty).
    body_path: PathBuf,
    /// The digest beside it in the spool, until it is stored.
    digest_path: Option<PathBuf>,
    len: u64,
    digest: [u8; DIGEST_LEN],
    held: Held,
}

impl Verified {
    pub fn len(&self) -> u64 {
        self.len
    }
}

impl Drop for Verified {
    fn drop(&mut self) {
        remove_spooled(&self.body_path);
        if let Some(path) = &self.digest_path {
            remove_spooled(path);
        }
        self.held.give_back();
    }
}

/// Removes a spool file, if there still is one.
fn remove_spooled(path: &Path) {
    if !path.as_os_str().is_empty() {
        let _ = std::fs::remove_file(path);
    }
}

/// A stored body.
#[derive(Debug)]
pub struct Blob {
    path: PathBuf,
    digest_path: PathBuf,
    len: u64,
    digest: [u8; DIGEST_LEN],
    delete_on_drop: AtomicBool,
    held: Held,
    /// Set when the body is on another node of a cluster (or kept by this node for the
    /// cluster): it is read through the node link, not from `path`.
    remote: Option<RemoteBody>,
}

impl Blob {
    /// A body of `len` bytes kept by a node of the cluster, read when it is sent.
    pub fn remote(len: u64, body: RemoteBody) -> Blob {
        Blob {
            path: PathBuf::new(),
            digest_path: PathBuf::new(),
            len,
            digest: [0; DIGEST_LEN],
            delete_on_drop: AtomicBool::new(false),
            held: Held {
                budget: Arc::default(),
                bytes: 0,
            },
            remote: Some(body),
        }
    }

    /// Where the body is when it is not in this node's file.
    pub fn remote_body(&self) -> Option<&RemoteBody> {
        self.remote.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.digest
    }

    /// The message left its history: delete the body once nobody is sending it.
    pub fn retire(&self) {
        self.delete_on_drop.store(true, Ordering::Release);
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        if self.delete_on_drop.load(Ordering::Acquire) && self.remote.is_none() {
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_file(&self.digest_path);
            self.held.give_back();
        }
    }
}
