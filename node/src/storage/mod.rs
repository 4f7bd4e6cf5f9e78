//! Durable storage for SD cards: the write-ahead log, the hard state, snapshots and
//! backups, the lock that keeps two processes off one data directory, and the data
//! disk's free space (a full disk is named as such).
//!
//! Every record carries a CRC; every segment starts with a header; files that must
//! change atomically are written to a temporary file, fsynced and renamed, and the
//! directory is fsynced. Nothing here decides anything: it stores what the core asks.

pub mod blocks;
pub mod hard_state;
pub mod lock;
pub mod snapshot;
pub mod wal;

use std::path::PathBuf;

/// What went wrong with storage. Every variant names the file, and where it helps the
/// offset, so an operator can find it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: the disk is full ({source}). The node stops rather than acknowledge anything \
         it has not stored; everything it acknowledged is on disk. Fix: free space on the disk \
         that holds the data directory (a smaller --max-log-bytes keeps the log smaller), then \
         start the node again: it catches up from its own log."
    )]
    DiskFull { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: corrupt record at byte {offset} (entry {index}), with valid records after it. \
         The log is damaged in the middle, not torn at the end, so the node refuses to start \
         rather than serve or lose acknowledged data. Fix: move this data directory aside and \
         let the node rejoin empty (it will catch up from the leader)."
    )]
    CorruptMidLog { path: PathBuf, offset: u64, index: u64 },
    #[error("{path}: {reason}. Fix: move this data directory aside and let the node rejoin empty.")]
    BadSegment { path: PathBuf, reason: String },
    #[error(
        "{path}: damaged snapshot: {reason}. Fix: move this data directory aside and let the node \
         rejoin empty (it receives a fresh snapshot from the leader)."
    )]
    BadSnapshot { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadHardState { path: PathBuf, reason: String },
    #[error(
        "{path} is locked by another process (is another baton-node using this data directory?). \
         Fix: stop the other process, or give this one its own --data-dir."
    )]
    Locked { path: PathBuf },
    #[error("entry {index} is too large: {bytes} bytes (at most {max})")]
    EntryTooLarge { index: u64, bytes: usize, max: usize },
    #[error(
        "{path}: only {free_bytes} bytes free on the disk that holds the data directory, below \
         the {needed_bytes} a node needs to start. Fix: free space on that disk, or give \
         --data-dir a larger one."
    )]
    NoRoomToStart { path: PathBuf, free_bytes: u64, needed_bytes: u64 },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| {
            // ENOSPC and EDQUOT: the disk (or the user's quota) is full.
            if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) {
                StorageError::DiskFull { path, source }
            } else {
                StorageError::Io { path, source }
            }
        }
    }
}

/// Free space, in bytes, that an unprivileged process may use on the disk holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> Result<u64, StorageError> {
    let stats = rustix::fs::statvfs(dir).map_err(|errno| StorageError::io(dir)(errno.into()))?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Refuses to start on a disk with less free space than `needed_bytes`: a node that
/// starts only to stop at its first write helps nobody, and says less about why.
pub fn check_room_to_start(dir: &std::path::Path, needed_bytes: u64) -> Result<(), StorageError> {
    let free_bytes = free_bytes(dir)?;
    if free_bytes < needed_bytes {
        return Err(StorageError::NoRoomToStart { path: dir.to_path_buf(), free_bytes, needed_bytes });
    }
    Ok(())
}

/// `fdatasync`, counted in the process's costs (see [`crate::cost`]).
pub(crate) fn sync_data(file: &std::fs::File) -> std::io::Result<()> {
    crate::cost::count_fsync();
    file.sync_data()
}

/// `fsync`, counted in the process's costs.
pub(crate) fn sync_all(file: &std::fs::File) -> std::io::Result<()> {
    crate::cost::count_fsync();
    file.sync_all()
}

/// Fsyncs a directory, so a rename or a new file in it is durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<(), StorageError> {
    std::fs::File::open(dir).and_then(|d| sync_all(&d)).map_err(StorageError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a full disk (or quota) is named as such, with what the node did and the fix;
    /// any other I/O error stays a plain one.
    #[test]
    fn a_full_disk_is_named_with_the_fix() {
        let full = StorageError::io("/data/wal/1.wal")(std::io::Error::from_raw_os_error(28));
        let message = full.to_string();
        assert!(matches!(full, StorageError::DiskFull { .. }), "{full:?}");
        assert!(
            message.contains("/data/wal/1.wal: the disk is full") && message.contains("Fix: free space"),
            "{message}"
        );
        let quota = StorageError::io("/data/hardstate")(std::io::Error::from_raw_os_error(122));
        assert!(matches!(quota, StorageError::DiskFull { .. }), "{quota:?}");
        let other = StorageError::io("/data/hardstate")(std::io::Error::from_raw_os_error(5));
        assert!(matches!(other, StorageError::Io { .. }), "{other:?}");
    }

    /// Goal: free space is measured, and a start needing more than there is is refused
    /// with the directory, both figures and the fix.
    #[test]
    fn a_start_without_room_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        check_room_to_start(dir.path(), 1).unwrap();
        let error = check_room_to_start(dir.path(), u64::MAX).unwrap_err().to_string();
        assert!(error.contains(&dir.path().display().to_string()) && error.contains("Fix: free space"), "{error}");
    }
}
