//! Durable storage for SD cards: the write-ahead log, the hard state and the lock that
//! keeps two processes off one data directory.
//!
//! Every record carries a CRC; every segment starts with a header; files that must
//! change atomically are written to a temporary file, fsynced and renamed, and the
//! directory is fsynced. Nothing here decides anything: it stores what the core asks.

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
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { path, source }
    }
}

/// Fsyncs a directory, so a rename or a new file in it is durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<(), StorageError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(StorageError::io(dir))
}
