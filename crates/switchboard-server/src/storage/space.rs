//! The data directory's guard: the disk-space reserve under which new writes are refused,
//! and the directory's identity, so that a data directory deleted (or replaced) while the
//! server runs is noticed instead of acknowledging writes that vanish at restart.
//!
//! Checks are cheap: the free-space figure is cached and refreshed only when it is older
//! than [`REFRESH_EVERY`] or when more than [`REFRESH_BYTES`] were admitted since, so a
//! publish costs a few atomic operations and a clock read, not a system call nor a lock. The
//! directory's identity is checked with the same refresh, and on demand by the storage
//! writer after each sync: one `stat` of the identity file, which the guard holds open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::error;

use super::StorageError;
use crate::log;

/// How old the cached free-space figure may get.
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);
/// How many bytes may be admitted on one free-space figure.
pub const REFRESH_BYTES: u64 = 4 * 1024 * 1024;

/// The name of the identity file written in the data directory.
const IDENTITY_FILE: &str = "switchboard.id";

/// How much free space writes must leave on the data directory's volume.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum DiskReserve {
    /// A number of bytes.
    Bytes(u64),
    /// A percentage of the volume's size.
    Percent(f64),
    /// The default: 2 % of the volume, at most 1 GiB.
    #[default]
    Default,
}

impl DiskReserve {
    /// The reserve in bytes on a volume of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            DiskReserve::Bytes(bytes) => bytes,
            DiskReserve::Percent(percent) => (total as f64 * percent / 100.0) as u64,
            DiskReserve::Default => (total / 50).min(1 << 30),
        }
    }
}

/// `512MiB`, `1GiB`, `4096`, `5%`: a reserve as written on the command line.
impl std::str::FromStr for DiskReserve {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            let percent: f64 = percent
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a percentage"))?;
            if !(0.0..=100.0).contains(&percent) {
                return Err(format!("{text:?} is not between 0% and 100%"));
            }
            return Ok(DiskReserve::Percent(percent));
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size (e.g. 1GiB, 500MB, 5%)"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1 << 20,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1 << 30,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit (B, KB, KiB, MB, MiB, GB, GiB)"
                ));
            }
        };
        number
            .checked_mul(scale)
            .map(DiskReserve::Bytes)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

/// The free and total bytes of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
    pub total: u64,
}

/// How the guard learns the free space of a directory's volume (injected by tests).
pub type SpaceProbe = Arc<dyn Fn(&Path) -> std::io::Result<Space> + Send + Sync>;

/// The free space of the volume holding `dir` (statvfs). Where the platform offers no
/// call, the volume is reported as unlimited, so the reserve never refuses anything.
pub fn volume_space(dir: &Path) -> std::io::Result<Space> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(dir)?;
        Ok(Space {
            available: stat.f_bavail.saturating_mul(stat.f_frsize),
            total: stat.f_blocks.saturating_mul(stat.f_frsize),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(Space {
            available: u64::MAX,
            total: u64::MAX,
        })
    }
}

/// What identifies a data directory: its identity file, written with a random id when the
/// guard was made.
///
/// On Unix the file is kept open, so that its inode is not freed (and its number not
/// reused) while the guard lives: the file found at its path is this one exactly when
/// its device and inode are, which one `stat` tells. A directory deleted, or replaced by
/// another (even one holding a copy of the file), fails that. The storage writer checks
/// after every sync, so the check must cost no more than that one system call.
#[derive(Debug)]
struct Identity {
    path: PathBuf,
    #[cfg(unix)]
    _held: std::fs::File,
    #[cfg(unix)]
    dev_ino: (u64, u64),
    #[cfg(not(unix))]
    id: String,
}

impl Identity {
    fn open(dir: &Path) -> std::io::Result<Identity> {
        let path = dir.join(IDENTITY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let held = std::fs::File::open(&path)?;
            let meta = held.metadata()?;
            Ok(Identity {
                path,
                _held: held,
                dev_ino: (meta.dev(), meta.ino()),
            })
        }
        #[cfg(not(unix))]
        {
            let id = std::fs::read_to_string(&path)?;
            Ok(Identity { path, id })
        }
    }

    /// Whether the identity file at the directory's path is still this one.
    fn is_current(&self) -> std::io::Result<bool> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(&self.path)?;
            Ok((meta.dev(), meta.ino()) == self.dev_ino)
        }
        #[cfg(not(unix))]
        Ok(std::fs::read_to_string(&self.path)? == self.id)
    }
}

/// Guards one data directory: its free space against the reserve, and its identity.
///
/// The admission path takes no lock: the figure, its age and what was admitted on it are
/// atomics, and one caller at a time refreshes them.
pub struct DiskGuard {
    dir: PathBuf,
    reserve: DiskReserve,
    probe: SpaceProbe,
    /// When the guard was made: figure ages are counted from here, in milliseconds.
    epoch: Instant,
    available: AtomicU64,
    total: AtomicU64,
    taken_ms: AtomicU64,
    /// Bytes admitted since the figure was taken.
    admitted: AtomicU64,
    /// Bytes announced by uploads in progress and not yet received: they will land
    /// whatever the next figure says, so they count until they do.
    pending: AtomicU64,
    refreshing: AtomicBool,
    identity: Option<Identity>,
    /// Set once the directory was found gone or replaced (for good: its contents are lost).
    is_gone: AtomicBool,
    gone: Mutex<Option<String>>,
    refused: AtomicU64,
}

impl std::fmt::Debug for DiskGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskGuard")
            .field("dir", &self.dir)
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

impl DiskGuard {
    /// Guards `dir` (which must exist) with the system's free-space call, and writes its
    /// identity file. An identity file that cannot be written (a full disk) leaves the
    /// guard without identity checks rather than failing: it is written again by the
    /// next server started with room.
    pub fn new(dir: &Path, reserve: DiskReserve) -> DiskGuard {
        DiskGuard::with_probe(dir, reserve, Arc::new(volume_space))
    }

    /// As [`DiskGuard::new`], with the free space taken from `probe`.
    pub fn with_probe(dir: &Path, reserve: DiskReserve, probe: SpaceProbe) -> DiskGuard {
        let identity = write_identity(dir).and_then(|()| Identity::open(dir));
        let identity = match identity {
            Ok(identity) => Some(identity),
            Err(e) => {
                error!(target: log::ERROR, dir = %dir.display(), error = %e, "cannot write the data directory's identity file; a deleted data directory will not be detected");
                None
            }
        };
        let space = probe(dir).unwrap_or(Space {
            available: u64::MAX,
            total: u64::MAX,
        });
        DiskGuard {
            dir: dir.to_owned(),
            reserve,
            probe,
            epoch: Instant::now(),
            available: AtomicU64::new(space.available),
            total: AtomicU64::new(space.total),
            taken_ms: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            identity,
            is_gone: AtomicBool::new(false),
            gone: Mutex::new(None),
            refused: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The reserve in bytes on this volume.
    pub fn reserve_bytes(&self) -> u64 {
        self.reserve.bytes(self.total.load(Ordering::Relaxed))
    }

    /// Writes of `incoming` bytes refused by the reserve so far.
    pub fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn gone_error(&self) -> StorageError {
        let reason = self.gone.lock().clone().unwrap_or_default();
        StorageError::unavailable(reason)
    }

    /// Admits a write of `incoming` bytes, or refuses it when it would leave less than
    /// the reserve free (or the directory is gone).
    pub fn admit(&self, incoming: u64) -> Result<(), StorageError> {
        self.admit_into(incoming, &self.admitted)
    }

    /// Admits an upload announcing `len` bytes: they count against the free space until
    /// they arrive ([`DiskGuard::received`]) or the upload ends ([`DiskGuard::abandoned`]).
    pub fn admit_upload(&self, len: u64) -> Result<(), StorageError> {
        self.admit_into(len, &self.pending)
    }

    /// `bytes` of an admitted upload were written.
    pub fn received(&self, bytes: u64) {
        saturating_sub(&self.pending, bytes);
        self.admitted.fetch_add(bytes, Ordering::AcqRel);
    }

    /// An admitted upload ended with `bytes` of it never received.
    pub fn abandoned(&self, bytes: u64) {
        saturating_sub(&self.pending, bytes);
    }

    fn admit_into(&self, incoming: u64, counter: &AtomicU64) -> Result<(), StorageError> {
        if self.is_gone.load(Ordering::Acquire) {
            return Err(self.gone_error());
        }
        let stale = self
            .now_ms()
            .saturating_sub(self.taken_ms.load(Ordering::Relaxed))
            >= REFRESH_EVERY.as_millis() as u64
            || self.admitted.load(Ordering::Relaxed) >= REFRESH_BYTES;
        // One caller refreshes; the others go on with the figure they have.
        if stale
            && self
                .refreshing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let refreshed = self.refresh();
            self.refreshing.store(false, Ordering::Release);
            refreshed?;
        }
        let reserve = self.reserve.bytes(self.total.load(Ordering::Relaxed));
        counter.fetch_add(incoming, Ordering::AcqRel);
        let used = self
            .admitted
            .load(Ordering::Acquire)
            .saturating_add(self.pending.load(Ordering::Acquire));
        let left = self.available.load(Ordering::Relaxed).saturating_sub(used);
        if left < reserve {
            saturating_sub(counter, incoming);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::disk_full(format!(
                "the data volume has {} free, under the reserve of {}",
                human_bytes(left.saturating_add(incoming)),
                human_bytes(reserve)
            )));
        }
        Ok(())
    }

    /// Takes a fresh free-space figure and checks the directory's identity.
    pub fn refresh(&self) -> Result<(), StorageError> {
        self.check_identity()?;
        match (self.probe)(&self.dir) {
            Ok(space) => {
                self.available.store(space.available, Ordering::Relaxed);
                self.total.store(space.total, Ordering::Relaxed);
                self.admitted.store(0, Ordering::Release);
                self.taken_ms.store(self.now_ms(), Ordering::Release);
            }
            Err(e) => {
                // The figure stays as it was; the identity check above catches a vanished
                // directory.
                error!(target: log::ERROR, dir = %self.dir.display(), error = %e, "cannot read the free space of the data volume");
            }
        }
        Ok(())
    }

    /// Whether a fresh figure leaves at least the reserve free and the directory is the
    /// one opened: the store may take writes again.
    pub fn has_room(&self) -> Result<(), StorageError> {
        self.has_room_for(0)
    }

    /// As [`DiskGuard::has_room`], with `bytes` more written first (a file made ahead of
    /// time, whose size is taken from the volume at once).
    pub fn has_room_for(&self, bytes: u64) -> Result<(), StorageError> {
        self.refresh()?;
        let available = self
            .available
            .load(Ordering::Relaxed)
            .saturating_sub(self.pending.load(Ordering::Acquire))
            .saturating_sub(bytes);
        let reserve = self.reserve_bytes();
        if available < reserve {
            return Err(StorageError::disk_full(format!(
                "the data volume has {} free, under the reserve of {}",
                human_bytes(available),
                human_bytes(reserve)
            )));
        }
        Ok(())
    }

    /// Checks that the data directory is still the one opened; once it is not, every
    /// later check fails too.
    pub fn check_identity(&self) -> Result<(), StorageError> {
        if self.is_gone.load(Ordering::Acquire) {
            return Err(self.gone_error());
        }
        let Some(expected) = &self.identity else {
            return Ok(());
        };
        let problem = match expected.is_current() {
            Ok(true) => return Ok(()),
            Ok(_) => "was replaced by another directory",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was deleted",
            Err(_) => "cannot be read",
        };
        let reason = format!(
            "the data directory {} {problem} while the server ran; durable writes are refused until the server is restarted",
            self.dir.display()
        );
        error!(target: log::ERROR, dir = %self.dir.display(), "{reason}");
        *self.gone.lock() = Some(reason.clone());
        self.is_gone.store(true, Ordering::Release);
        Err(StorageError::unavailable(reason))
    }

    /// Why the directory cannot be used any more, once it was found gone or replaced.
    pub fn gone(&self) -> Option<String> {
        self.gone.lock().clone()
    }
}

fn saturating_sub(counter: &AtomicU64, bytes: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |value| {
        Some(value.saturating_sub(bytes))
    });
}

/// Writes a fresh random id in the directory's identity file.
fn write_identity(dir: &Path) -> std::io::Result<()> {
    let id = uuid::Uuid::now_v7().to_string();
    let path = dir.join(IDENTITY_FILE);
    let temporary = dir.join(format!("{IDENTITY_FILE}.new"));
    std::fs::write(&temporary, id.as_bytes())?;
    std::fs::rename(&temporary, &path)
}

/// `12.0 MiB`: a byte count for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A probe reporting `available` bytes of a 10 GB volume, counting its calls.
    fn probe(available: Arc<AtomicU64>, calls: Arc<AtomicUsize>) -> SpaceProbe {
        Arc::new(move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Space {
                available: available.load(Ordering::SeqCst),
                total: 10_000_000_000,
            })
        })
    }

    #[test]
    fn reserves_read_as_written() {
        assert_eq!("4096".parse(), Ok(DiskReserve::Bytes(4096)));
        assert_eq!("512MiB".parse(), Ok(DiskReserve::Bytes(512 << 20)));
        assert_eq!("1 GB".parse(), Ok(DiskReserve::Bytes(1_000_000_000)));
        assert_eq!("5%".parse(), Ok(DiskReserve::Percent(5.0)));
        assert!("150%".parse::<DiskReserve>().is_err());
        assert!("lots".parse::<DiskReserve>().is_err());
        assert!("3 parsecs".parse::<DiskReserve>().is_err());
        // 2 % of a small volume; 1 GiB of a large one.
        assert_eq!(DiskReserve::Default.bytes(20 << 20), (20 << 20) / 50);
        assert_eq!(DiskReserve::Default.bytes(1 << 40), 1 << 30);
        assert_eq!(DiskReserve::Percent(10.0).bytes(1000), 100);
    }

    #[test]
    fn writes_that_would_eat_into_the_reserve_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let available = Arc::new(AtomicU64::new(3_000_000));
        let calls = Arc::new(AtomicUsize::new(0));
        let guard = DiskGuard::with_probe(
            dir.path(),
            DiskReserve::Bytes(1_000_000),
            probe(available.clone(), calls.clone()),
        );
        guard.admit(1_500_000).unwrap();
        // 1.5 MB left on the cached figure: another 1 MB would leave 0.5 MB.
        let error = guard.admit(1_000_000).unwrap_err();
        assert!(error.is_disk_full(), "{error}");
        assert!(error.to_string().contains("reserve"), "{error}");
        assert_eq!(guard.refusals(), 1);
        guard.admit(400_000).unwrap();
        // Space freed: a fresh figure admits again.
        available.store(9_000_000, Ordering::SeqCst);
        guard.has_room().unwrap();
        guard.admit(5_000_000).unwrap();
        available.store(500_000, Ordering::SeqCst);
        assert!(guard.has_room().unwrap_err().is_disk_full());
    }

    #[test]
    fn announced_upload_bytes_count_until_they_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let available = Arc::new(AtomicU64::new(10_000_000));
        let calls = Arc::new(AtomicUsize::new(0));
        let guard = DiskGuard::with_probe(
            dir.path(),
            DiskReserve::Bytes(1_000_000),
            probe(available.clone(), calls.clone()),
        );
        guard.admit_upload(6_000_000).unwrap();
        // A fresh figure does not see the upload's bytes yet; they still count.
        guard.refresh().unwrap();
        assert!(guard.admit_upload(4_000_000).unwrap_err().is_disk_full());
        assert!(guard.admit(4_000_000).unwrap_err().is_disk_full());
        // Half arrived (and the volume says so); the rest was abandoned.
        guard.received(3_000_000);
        available.store(7_000_000, Ordering::SeqCst);
        guard.abandoned(3_000_000);
        guard.refresh().unwrap();
        guard.admit_upload(5_000_000).unwrap();
        assert!(guard.admit(2_000_000).unwrap_err().is_disk_full());
    }

    #[test]
    fn the_figure_is_cached_between_refreshes() {
        let dir = tempfile::tempdir().unwrap();
        let available = Arc::new(AtomicU64::new(u64::MAX / 2));
        let calls = Arc::new(AtomicUsize::new(0));
        let guard = DiskGuard::with_probe(
            dir.path(),
            DiskReserve::Bytes(0),
            probe(available.clone(), calls.clone()),
        );
        let at_start = calls.load(Ordering::SeqCst);
        for _ in 0..10_000 {
            guard.admit(100).unwrap();
        }
        // 1 MB admitted in well under the refresh period: at most a refresh or two.
        assert!(calls.load(Ordering::SeqCst) - at_start <= 2);
        // Bytes admitted count too: 4 MiB forces a fresh figure.
        for _ in 0..5 {
            guard.admit(REFRESH_BYTES).unwrap();
        }
        assert!(calls.load(Ordering::SeqCst) - at_start >= 4);
    }

    #[test]
    fn a_deleted_or_replaced_directory_is_refused_for_good() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let guard = DiskGuard::new(&dir, DiskReserve::Bytes(0));
        guard.check_identity().unwrap();
        guard.admit(10).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let error = guard.check_identity().unwrap_err();
        assert!(error.to_string().contains("was deleted"), "{error}");
        assert!(error.is_unavailable());
        // Recreated: still refused, since what was in it is gone.
        std::fs::create_dir(&dir).unwrap();
        assert!(guard.admit(10).is_err());
        assert!(guard.has_room().is_err());
        assert!(guard.gone().is_some());

        let other = parent.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let guard = DiskGuard::new(&other, DiskReserve::Bytes(0));
        std::fs::rename(&other, parent.path().join("moved")).unwrap();
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join(IDENTITY_FILE), b"forged").unwrap();
        let error = guard.check_identity().unwrap_err();
        assert!(error.to_string().contains("replaced"), "{error}");
    }
}
