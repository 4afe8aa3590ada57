//! The sync log: a file of fixed size in the data directory, zero-filled and synced once
//! when it is created, that makes acknowledged records durable with `sync always`.
//!
//! Each batch the writer hands the database is also written here as one record, at the
//! next free block; an acknowledgement then waits for one `fdatasync` of this file
//! instead of one of the database's journal. The journal is a sparse file that grows as
//! it is written, so each of its syncs also commits the file system's metadata (block
//! allocation, size); a sync of blocks written before costs only the data (on ext4 about
//! 60 % of the time). The database is synced at a checkpoint: when the log is full, when
//! the store has been idle a while, at shutdown. Then the log starts again at its
//! beginning under a new epoch.
//!
//! ```text
//! block 0        header: MAGIC, version u32, epoch u64, crc32c u32 (of what precedes)
//! block 1...     records, each at a block boundary, padded to whole blocks:
//!                len u32, epoch u64, number u64, crc32c u32 (of these 20 bytes and the
//!                payload), payload (the batch's ops, `len` bytes)
//! ```
//!
//! Integers are little-endian. Recovery reads records forward from block 1 and stops at
//! the first that is not of the header's epoch, not the next number, or fails its CRC: a
//! torn tail, or the records of an earlier epoch that the current one has not yet
//! overwritten, are never replayed. Records are padded to whole blocks so that a sync
//! writes only blocks of its own record and never needs to read a block first.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use switchboard_proto::crc;

use crate::storage::writer::Op;
use crate::storage::{LogKind, StorageError};

/// The log's file name in the data directory.
pub(super) const FILE_NAME: &str = "synclog";
/// The log's size. Large enough that a checkpoint (a sync of everything the database
/// wrote since the last one) is rare: 8 k single-message acknowledgements (records are
/// padded to a block), or about 32 MiB of larger batches, between two. Small enough to
/// write at creation without notice (a fraction of a second) and to weigh little against
/// the disk reserve. (Tests use a small one, so that their stores go through many
/// checkpoints.)
pub(super) const LOG_BYTES: u64 = if cfg!(test) {
    16 * BLOCK
} else {
    32 * 1024 * 1024
};
/// Records begin at block boundaries.
const BLOCK: u64 = 4096;
const MAGIC: &[u8; 8] = b"SWBSYNCL";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const RECORD_HEADER: usize = 24;

fn io_error(context: &str, path: &Path, error: std::io::Error) -> StorageError {
    StorageError(format!("{context} {}: {error}", path.display()))
}

/// What a log held when it was read back.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    pub epoch: u64,
    /// The records of that epoch, in order: each one's number and ops.
    pub records: Vec<(u64, Vec<Op>)>,
}

/// Whether the next record fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fit {
    Fits,
    /// Not in what is left of the log: a checkpoint first, then it fits.
    Full,
    /// Not even in an empty log.
    TooLarge,
}

/// The open log, positioned after its last record.
pub(super) struct SyncLog {
    file: File,
    path: PathBuf,
    size: u64,
    epoch: u64,
    /// The number of the next record.
    next: u64,
    /// Where the next record goes.
    end: u64,
    /// Records written since the last sync.
    unsynced: bool,
    /// The record being prepared, its header filled in when it is written.
    buf: Vec<u8>,
}

impl SyncLog {
    /// Reads back the log in `dir`: `None` if there is none (or it was never finished:
    /// a log is renamed into place only once it is written and synced whole).
    pub fn recover(dir: &Path) -> Result<Option<Recovered>, StorageError> {
        let path = dir.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("cannot read the sync log", &path, e)),
        };
        let epoch = read_header(&bytes).ok_or_else(|| {
            StorageError(format!(
                "the sync log {} has a damaged header; `switchboard repair` salvages what it holds",
                path.display()
            ))
        })?;
        Ok(Some(Recovered {
            epoch,
            records: read_records(&bytes, epoch),
        }))
    }

    /// Opens the log in `dir` for a new epoch after `after_epoch` (its header written and
    /// synced), creating it first, zero-filled and synced, if there is none or its size
    /// is not `size`.
    pub fn start(dir: &Path, size: u64, after_epoch: u64) -> Result<SyncLog, StorageError> {
        let path = dir.join(FILE_NAME);
        let reuse = std::fs::metadata(&path).is_ok_and(|meta| meta.len() == size);
        if !reuse {
            create(dir, &path, size)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("cannot open the sync log", &path, e))?;
        let mut log = SyncLog {
            file,
            path,
            size,
            epoch: after_epoch,
            next: 1,
            end: BLOCK,
            unsynced: false,
            buf: Vec::new(),
        };
        log.restart()?;
        Ok(log)
    }

    /// Removes the log from `dir`, if there is one.
    pub fn remove(dir: &Path) -> Result<(), StorageError> {
        let path = dir.join(FILE_NAME);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("cannot remove the sync log", &path, e)),
        }
    }

    /// Starts a new epoch: the next record goes at the beginning again. Its header is
    /// synced before it returns, so no record of an earlier epoch is read back after it.
    pub fn restart(&mut self) -> Result<(), StorageError> {
        let epoch = self.epoch + 1;
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[12..20].copy_from_slice(&epoch.to_le_bytes());
        let crc = crc::crc32c(&header[..20]);
        header[20..24].copy_from_slice(&crc.to_le_bytes());
        write_at(&self.file, &header, 0)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error("cannot start the sync log", &self.path, e))?;
        self.epoch = epoch;
        self.next = 1;
        self.end = BLOCK;
        self.unsynced = false;
        Ok(())
    }

    /// Whether records were written in this epoch (a checkpoint would free them).
    pub fn has_records(&self) -> bool {
        self.next > 1
    }

    /// The epoch and number the next record will be written under.
    pub fn next_mark(&self) -> (u64, u64) {
        (self.epoch, self.next)
    }

    /// Encodes `ops` as the next record and says whether it fits.
    pub fn prepare(&mut self, ops: &[Op]) -> Fit {
        self.buf.clear();
        self.buf.resize(RECORD_HEADER, 0);
        encode_ops(ops, &mut self.buf);
        let blocks = padded(self.buf.len() as u64);
        if BLOCK + blocks > self.size {
            Fit::TooLarge
        } else if self.end + blocks > self.size {
            Fit::Full
        } else {
            Fit::Fits
        }
    }

    /// Writes the prepared record (which must fit) at the end; returns its number.
    pub fn write_prepared(&mut self) -> Result<u64, StorageError> {
        let payload = self.buf.len() - RECORD_HEADER;
        let len = u32::try_from(payload)
            .map_err(|_| StorageError("a sync log record over 4 GiB".into()))?;
        let number = self.next;
        self.buf[0..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..12].copy_from_slice(&self.epoch.to_le_bytes());
        self.buf[12..20].copy_from_slice(&number.to_le_bytes());
        let mut crc = crc::crc32c(&self.buf[..20]);
        crc = crc::crc32c_append(crc, &self.buf[RECORD_HEADER..]);
        self.buf[20..24].copy_from_slice(&crc.to_le_bytes());
        let blocks = padded(self.buf.len() as u64);
        // Whole blocks: the padding overwrites what an earlier epoch left there.
        self.buf.resize(blocks as usize, 0);
        // Marked before the write: a write that fails half-way still wants a sync to
        // tell whether the file is sound.
        self.unsynced = true;
        write_at(&self.file, &self.buf, self.end)
            .map_err(|e| io_error("cannot write to the sync log", &self.path, e))?;
        self.end += blocks;
        self.next += 1;
        Ok(number)
    }

    /// Makes every record written so far durable (nothing to do if none was written
    /// since the last sync).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if !self.unsynced {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| io_error("fdatasync of the sync log", &self.path, e))?;
        self.unsynced = false;
        Ok(())
    }
}

/// `len` rounded up to whole blocks.
fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|e| io_error("cannot sync the directory", dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), StorageError> {
    Ok(())
}

/// Writes a zero-filled log of `size` bytes under a temporary name, syncs it and renames
/// it into place, so that a log found at `path` is always whole: every later sync of it
/// overwrites blocks that were written before.
fn create(dir: &Path, path: &Path, size: u64) -> Result<(), StorageError> {
    let temporary = dir.join(format!("{FILE_NAME}.new"));
    let written = (|| {
        let mut file = File::create(&temporary)?;
        let zeros = vec![0u8; 1024 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(io_error("cannot create the sync log", path, e));
    }
    sync_dir(dir)
}

/// The epoch in a log's header, if the header is intact. A header of zeros (a log
/// whose first epoch was never started) is epoch 0, with no records.
fn read_header(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..HEADER_LEN)?;
    if header.iter().all(|&b| b == 0) {
        return Some(0);
    }
    let crc = u32::from_le_bytes(header[20..24].try_into().ok()?);
    if header[..8] != MAGIC[..] || crc::crc32c(&header[..20]) != crc {
        return None;
    }
    if u32::from_le_bytes(header[8..12].try_into().ok()?) != VERSION {
        return None;
    }
    Some(u64::from_le_bytes(header[12..20].try_into().ok()?))
}

/// The records of `epoch`, in order, up to the first that is not the next one of that
/// epoch, fails its CRC or does not decode.
fn read_records(bytes: &Bytes, epoch: u64) -> Vec<(u64, Vec<Op>)> {
    let mut records = Vec::new();
    if epoch == 0 {
        return records;
    }
    let mut at = BLOCK as usize;
    let mut expected = 1u64;
    while let Some(header) = bytes.get(at..at + RECORD_HEADER) {
        let le_u64 = |range: std::ops::Range<usize>| {
            u64::from_le_bytes(header[range].try_into().unwrap_or_default())
        };
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default()) as usize;
        if le_u64(4..12) != epoch || le_u64(12..20) != expected {
            break;
        }
        let crc = u32::from_le_bytes(header[20..24].try_into().unwrap_or_default());
        let start = at + RECORD_HEADER;
        let Some(payload) = bytes.get(start..start + len) else {
            break;
        };
        if crc::crc32c_append(crc::crc32c(&header[..20]), payload) != crc {
            break;
        }
        let Some(ops) = decode_ops(&bytes.slice(start..start + len)) else {
            break;
        };
        records.push((expected, ops));
        expected += 1;
        at += padded((RECORD_HEADER + len) as u64) as usize;
    }
    records
}

const PUT: u8 = 0;
const REMOVE: u8 = 1;
const APPEND: u8 = 2;
const TRIM: u8 = 3;
const DELETE_LOG: u8 = 4;

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn put_kind(buf: &mut Vec<u8>, kind: LogKind) {
    buf.push(match kind {
        LogKind::Channel => 0,
        LogKind::Group => 1,
    });
}

/// Appends the encoding of `ops` to `buf`.
fn encode_ops(ops: &[Op], buf: &mut Vec<u8>) {
    for op in ops {
        match op {
            Op::Put { key, value } => {
                buf.push(PUT);
                put_bytes(buf, key);
                put_bytes(buf, value);
            }
            Op::Remove { key } => {
                buf.push(REMOVE);
                put_bytes(buf, key);
            }
            Op::Append {
                kind,
                log,
                seq,
                frame,
            } => {
                buf.push(APPEND);
                put_kind(buf, *kind);
                put_bytes(buf, log.as_bytes());
                buf.extend_from_slice(&seq.to_le_bytes());
                put_bytes(buf, frame);
            }
            Op::Trim { kind, log, through } => {
                buf.push(TRIM);
                put_kind(buf, *kind);
                put_bytes(buf, log.as_bytes());
                buf.extend_from_slice(&through.to_le_bytes());
            }
            Op::DeleteLog { kind, log } => {
                buf.push(DELETE_LOG);
                put_kind(buf, *kind);
                put_bytes(buf, log.as_bytes());
            }
        }
    }
}

/// Reads encoded ops; the byte strings they hold share `bytes`.
struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<Bytes> {
        let end = self.at.checked_add(n)?;
        if end > self.bytes.len() {
            return None;
        }
        let taken = self.bytes.slice(self.at..end);
        self.at = end;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.as_ref().try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<Bytes> {
        let len = u32::from_le_bytes(self.take(4)?.as_ref().try_into().ok()?);
        self.take(len as usize)
    }

    fn kind(&mut self) -> Option<LogKind> {
        match self.u8()? {
            0 => Some(LogKind::Channel),
            1 => Some(LogKind::Group),
            _ => None,
        }
    }

    fn name(&mut self) -> Option<Arc<str>> {
        let bytes = self.bytes()?;
        std::str::from_utf8(&bytes).ok().map(Arc::from)
    }
}

/// The ops of one record's payload, or `None` if it does not decode whole.
fn decode_ops(bytes: &Bytes) -> Option<Vec<Op>> {
    let mut reader = Reader { bytes, at: 0 };
    let mut ops = Vec::new();
    while reader.at < bytes.len() {
        let op = match reader.u8()? {
            PUT => Op::Put {
                key: reader.bytes()?.to_vec(),
                value: reader.bytes()?,
            },
            REMOVE => Op::Remove {
                key: reader.bytes()?.to_vec(),
            },
            APPEND => Op::Append {
                kind: reader.kind()?,
                log: reader.name()?,
                seq: reader.u64()?,
                frame: reader.bytes()?.into(),
            },
            TRIM => Op::Trim {
                kind: reader.kind()?,
                log: reader.name()?,
                through: reader.u64()?,
            },
            DELETE_LOG => Op::DeleteLog {
                kind: reader.kind()?,
                log: reader.name()?,
            },
            _ => return None,
        };
        ops.push(op);
    }
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small log: four records of one block fit in it.
    const SMALL: u64 = 5 * BLOCK;

    fn append(seq: u64, body: &str) -> Op {
        Op::Append {
            kind: LogKind::Channel,
            log: "news".into(),
            seq,
            frame: Bytes::from(body.to_owned()).into(),
        }
    }

    fn every_kind_of_op() -> Vec<Op> {
        vec![
            Op::Put {
                key: b"c/news".to_vec(),
                value: Bytes::from_static(b"options"),
            },
            Op::Remove {
                key: b"m/team\0ann".to_vec(),
            },
            append(7, "hello"),
            Op::Trim {
                kind: LogKind::Group,
                log: "team".into(),
                through: 3,
            },
            Op::DeleteLog {
                kind: LogKind::Channel,
                log: "old".into(),
            },
            append(8, ""),
        ]
    }

    fn write(log: &mut SyncLog, ops: &[Op]) -> u64 {
        assert_eq!(log.prepare(ops), Fit::Fits);
        log.write_prepared().unwrap()
    }

    fn numbers(recovered: &Recovered) -> Vec<u64> {
        recovered.records.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn every_kind_of_op_reads_back_as_written() {
        let ops = every_kind_of_op();
        let mut buf = Vec::new();
        encode_ops(&ops, &mut buf);
        assert_eq!(decode_ops(&Bytes::from(buf.clone())), Some(ops));
        // Cut anywhere inside, it does not decode.
        for cut in 1..buf.len() {
            let short = Bytes::from(buf[..cut].to_vec());
            let decoded = decode_ops(&short);
            // A cut that falls between two ops decodes as the ops before it.
            if let Some(decoded) = decoded {
                let mut again = Vec::new();
                encode_ops(&decoded, &mut again);
                assert_eq!(again, buf[..cut], "cut at {cut}");
            }
        }
    }

    #[test]
    fn records_read_back_in_order_and_a_new_epoch_hides_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SyncLog::recover(dir.path()).unwrap().is_none());
        let mut log = SyncLog::start(dir.path(), SMALL, 0).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(),
            SMALL
        );
        let ops = every_kind_of_op();
        for _ in 0..3 {
            write(&mut log, &ops);
        }
        log.sync().unwrap();
        let recovered = SyncLog::recover(dir.path()).unwrap().unwrap();
        assert_eq!(recovered.epoch, 1);
        assert_eq!(numbers(&recovered), [1, 2, 3]);
        assert!(recovered.records.iter().all(|(_, read)| *read == ops));

        // A new epoch: the three records are still in the file, but stale.
        log.restart().unwrap();
        assert!(!log.has_records());
        let recovered = SyncLog::recover(dir.path()).unwrap().unwrap();
        assert_eq!((recovered.epoch, numbers(&recovered)), (2, vec![]));
        // One record of the new epoch; the old second and third follow it in the file.
        write(&mut log, &[append(9, "new")]);
        let recovered = SyncLog::recover(dir.path()).unwrap().unwrap();
        assert_eq!(numbers(&recovered), [1]);
        assert_eq!(recovered.records[0].1, [append(9, "new")]);

        // Reopened for the next epoch after what was read: the file is reused.
        drop(log);
        let log = SyncLog::start(dir.path(), SMALL, recovered.epoch).unwrap();
        assert_eq!(log.next_mark(), (3, 1));
        assert_eq!(SyncLog::recover(dir.path()).unwrap().unwrap().epoch, 3);
    }

    #[test]
    fn a_full_log_says_so_and_takes_records_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SyncLog::start(dir.path(), SMALL, 0).unwrap();
        for seq in 1..=4 {
            write(&mut log, &[append(seq, "x")]);
        }
        assert_eq!(log.prepare(&[append(5, "x")]), Fit::Full);
        let big = "x".repeat(SMALL as usize);
        assert_eq!(log.prepare(&[append(5, &big)]), Fit::TooLarge);
        // Three blocks: fits an empty log only.
        let three = "x".repeat(2 * BLOCK as usize + 100);
        assert_eq!(log.prepare(&[append(5, &three)]), Fit::Full);
        log.restart().unwrap();
        write(&mut log, &[append(5, &three)]);
        write(&mut log, &[append(6, "y")]);
        assert_eq!(log.prepare(&[append(7, "z")]), Fit::Full);
        log.sync().unwrap();
        let recovered = SyncLog::recover(dir.path()).unwrap().unwrap();
        assert_eq!(
            recovered.records,
            [(1, vec![append(5, &three)]), (2, vec![append(6, "y")])]
        );
    }

    /// Overwrites `bytes` at `offset` of the log in `dir`.
    fn damage(dir: &Path, offset: u64, bytes: &[u8]) {
        let file = OpenOptions::new()
            .write(true)
            .open(dir.join(FILE_NAME))
            .unwrap();
        write_at(&file, bytes, offset).unwrap();
    }

    #[test]
    fn recovery_stops_at_a_torn_or_damaged_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SyncLog::start(dir.path(), SMALL, 0).unwrap();
        for seq in 1..=3 {
            write(&mut log, &[append(seq, "body")]);
        }
        // A flipped byte in the second record's payload: only the first is read.
        damage(dir.path(), 2 * BLOCK + RECORD_HEADER as u64 + 20, b"\xff");
        let recovered = SyncLog::recover(dir.path()).unwrap().unwrap();
        assert_eq!(numbers(&recovered), [1]);
        // A torn first record (its header written, its payload not): nothing.
        damage(dir.path(), BLOCK + RECORD_HEADER as u64, &[0; 32]);
        let recovered = SyncLog::recover(dir.path()).unwrap().unwrap();
        assert!(recovered.records.is_empty());
    }

    #[test]
    fn a_record_out_of_order_ends_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SyncLog::start(dir.path(), SMALL, 0).unwrap();
        write(&mut log, &[append(1, "a")]);
        // As if the second record's block held one numbered 3: not read.
        log.next = 3;
        write(&mut log, &[append(2, "b")]);
        let recovered = SyncLog::recover(dir.path()).unwrap().unwrap();
        assert_eq!(numbers(&recovered), [1]);
    }

    #[test]
    fn a_damaged_header_is_refused_and_an_unstarted_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SyncLog::start(dir.path(), SMALL, 0).unwrap();
        write(&mut log, &[append(1, "a")]);
        damage(dir.path(), 12, b"\x07");
        let error = SyncLog::recover(dir.path()).unwrap_err();
        assert!(error.0.contains("damaged header"), "{error}");
        damage(dir.path(), 0, &[0; HEADER_LEN]);
        let recovered = SyncLog::recover(dir.path()).unwrap().unwrap();
        assert_eq!((recovered.epoch, recovered.records.len()), (0, 0));
    }

    #[test]
    fn a_log_of_another_size_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = SyncLog::start(dir.path(), SMALL, 0).unwrap();
        drop(log);
        let log = SyncLog::start(dir.path(), 2 * SMALL, 1).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(),
            2 * SMALL
        );
        assert_eq!(log.next_mark(), (2, 1));
        SyncLog::remove(dir.path()).unwrap();
        assert!(SyncLog::recover(dir.path()).unwrap().is_none());
    }
}
