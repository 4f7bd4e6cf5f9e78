//! The hard state file: term, vote and pause flag, replaced atomically.
//!
//! Layout (little endian): magic `BATONHS1`, term u64, voted_for u8 (0 = none),
//! paused u8, CRC-32 of everything before it. Written to `hardstate.tmp`, fsynced,
//! renamed over `hardstate`, and the directory fsynced.

use super::{sync_dir, StorageError};
use baton_common::{HardState, NodeId};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"BATONHS1";
const FILE_BYTES: usize = 8 + 8 + 1 + 1 + 4;

#[derive(Debug)]
pub struct HardStateFile {
    dir: PathBuf,
}

impl HardStateFile {
    pub fn new(dir: &Path) -> Self {
        HardStateFile { dir: dir.to_path_buf() }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("hardstate")
    }

    /// Reads the hard state; a missing file is a fresh node.
    pub fn load(&self) -> Result<HardState, StorageError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(HardState::default()),
            Err(source) => return Err(StorageError::Io { path, source }),
        };
        let bad = |reason: &str| StorageError::BadHardState {
            path: path.clone(),
            reason: format!(
                "{reason}. The node cannot know its term and vote, so it refuses to start. \
                 Fix: move the data directory aside and let the node rejoin empty"
            ),
        };
        if bytes.len() != FILE_BYTES || &bytes[..8] != MAGIC {
            return Err(bad("not a Baton hard-state file"));
        }
        let crc = u32::from_le_bytes(bytes[18..22].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..18]) != crc {
            return Err(bad("checksum mismatch"));
        }
        let term = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let voted_for = (bytes[16] != 0).then_some(NodeId(bytes[16]));
        Ok(HardState { term, voted_for, paused: bytes[17] != 0 })
    }

    /// Replaces the hard state durably.
    pub fn store(&self, hard_state: &HardState) -> Result<(), StorageError> {
        let mut bytes = Vec::with_capacity(FILE_BYTES);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&hard_state.term.to_le_bytes());
        bytes.push(hard_state.voted_for.map_or(0, |id| id.0));
        bytes.push(u8::from(hard_state.paused));
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let temporary = self.dir.join("hardstate.tmp");
        let mut file = std::fs::File::create(&temporary).map_err(StorageError::io(&temporary))?;
        file.write_all(&bytes).and_then(|()| file.sync_data()).map_err(StorageError::io(&temporary))?;
        std::fs::rename(&temporary, self.path()).map_err(StorageError::io(self.path()))?;
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: round trip, fresh default, and a clear refusal of a damaged file.
    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let file = HardStateFile::new(dir.path());
        assert_eq!(file.load().unwrap(), HardState::default());
        let state = HardState { term: 7, voted_for: Some(NodeId(3)), paused: true };
        file.store(&state).unwrap();
        assert_eq!(file.load().unwrap(), state);
        let path = dir.path().join("hardstate");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let error = file.load().unwrap_err().to_string();
        assert!(error.contains("hardstate") && error.contains("checksum mismatch"), "{error}");
    }
}
