//! The data directory's lock file: one process per data directory.

use super::StorageError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

/// Held for the life of the process; the OS releases it when the process exits, even on
/// a crash, so a stale lock never blocks a restart.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(data_dir: &Path) -> Result<DirLock, StorageError> {
        std::fs::create_dir_all(data_dir).map_err(StorageError::io(data_dir))?;
        let path = data_dir.join("LOCK");
        let mut file =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(StorageError::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StorageError::Locked { path }),
            Err(TryLockError::Error(source)) => return Err(StorageError::Io { path, source }),
        }
        file.set_len(0).map_err(StorageError::io(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(StorageError::io(&path))?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a second holder is refused with a message naming the file.
    #[test]
    fn second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let error = DirLock::acquire(dir.path()).unwrap_err();
        assert!(error.to_string().contains("LOCK is locked by another process"), "{error}");
        drop(first);
        DirLock::acquire(dir.path()).expect("free again once released");
    }
}
