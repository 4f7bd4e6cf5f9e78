//! The hard state file: term, vote and pause flag, updated in place in two slots.
//!
//! Layout: two 32-byte slots. Each slot (little endian): magic `BATONHS2`, sequence
//! u64, term u64, voted_for u8 (0 = none), paused u8, two zero bytes, CRC-32 of the 28
//! bytes before it. An all-zero slot is empty. Load takes the valid slot with the higher
//! sequence.
//!
//! A store overwrites the older slot with `pwrite` and one `fdatasync`. The file never
//! changes size, so the sync flushes 32 bytes of data and no file-system metadata: an
//! election costs one small flush per node instead of a create, a rename and two
//! journal commits. The newest slot is only overwritten two stores later, after the one
//! between them was durable, so a store torn by power loss never damages the state it
//! replaces. A damaged slot next to a valid one is that torn store (its fsync never
//! returned, so nothing acted on it): the valid slot is used, with a warning, as the
//! log treats a torn tail. Two damaged slots refuse start-up with the file and the fix.
//!
//! A file in the earlier format (`BATONHS1`, replaced by rename) is read, and rewritten
//! in this one on the first store.

use super::{sync_dir, StorageError};
use baton_common::{HardState, NodeId};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"BATONHS2";
const SLOT_BYTES: usize = 32;
const SLOTS: usize = 2;
const FILE_BYTES: usize = SLOT_BYTES * SLOTS;
/// The earlier single-record format, read for upgrades.
const MAGIC_V1: &[u8; 8] = b"BATONHS1";
const FILE_BYTES_V1: usize = 8 + 8 + 1 + 1 + 4;

#[derive(Debug)]
pub struct HardStateFile {
    dir: PathBuf,
    /// The file in this format, open for in-place stores (None until it exists).
    file: Option<File>,
    /// Sequence of the newest slot on disk (0: none).
    newest_seq: u64,
}

fn encode_slot(seq: u64, hard_state: &HardState) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[..8].copy_from_slice(MAGIC);
    slot[8..16].copy_from_slice(&seq.to_le_bytes());
    slot[16..24].copy_from_slice(&hard_state.term.to_le_bytes());
    slot[24] = hard_state.voted_for.map_or(0, |id| id.0);
    slot[25] = u8::from(hard_state.paused);
    let crc = crc32fast::hash(&slot[..28]);
    slot[28..32].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// `Ok(None)` for an empty slot, `Err` for a damaged one.
fn decode_slot(slot: &[u8]) -> Result<Option<(u64, HardState)>, &'static str> {
    if slot.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    if &slot[..8] != MAGIC {
        return Err("not a Baton hard-state file");
    }
    if crc32fast::hash(&slot[..28]) != u32::from_le_bytes(slot[28..32].try_into().expect("4 bytes")) {
        return Err("checksum mismatch");
    }
    let seq = u64::from_le_bytes(slot[8..16].try_into().expect("8 bytes"));
    let term = u64::from_le_bytes(slot[16..24].try_into().expect("8 bytes"));
    let voted_for = (slot[24] != 0).then_some(NodeId(slot[24]));
    Ok(Some((seq, HardState { term, voted_for, paused: slot[25] != 0 })))
}

impl HardStateFile {
    pub fn new(dir: &Path) -> Self {
        HardStateFile { dir: dir.to_path_buf(), file: None, newest_seq: 0 }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("hardstate")
    }

    pub fn load(&mut self) -> Result<HardState, StorageError> {
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
        if bytes.len() == FILE_BYTES_V1 && &bytes[..8] == MAGIC_V1 {
            if crc32fast::hash(&bytes[..18]) != u32::from_le_bytes(bytes[18..22].try_into().expect("4 bytes")) {
                return Err(bad("checksum mismatch"));
            }
            let term = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
            let voted_for = (bytes[16] != 0).then_some(NodeId(bytes[16]));
            return Ok(HardState { term, voted_for, paused: bytes[17] != 0 });
        }
        if bytes.len() != FILE_BYTES {
            return Err(bad("not a Baton hard-state file (wrong size)"));
        }
        let slots: Vec<_> = bytes.chunks_exact(SLOT_BYTES).map(decode_slot).collect();
        let mut newest: Option<(u64, HardState)> = None;
        let mut damaged = None;
        for slot in &slots {
            match slot {
                Ok(Some((seq, state))) if newest.is_none_or(|(best, _)| *seq > best) => newest = Some((*seq, *state)),
                Ok(_) => {}
                Err(reason) => damaged = Some(*reason),
            }
        }
        match (damaged, newest) {
            (Some(reason), None) => return Err(bad(reason)),
            (Some(reason), Some((seq, _))) => {
                tracing::warn!(path = %path.display(), reason, seq, "one hard-state slot is damaged (a store torn by a power loss); using the other");
            }
            (None, _) => {}
        }
        self.file = Some(OpenOptions::new().write(true).open(&path).map_err(StorageError::io(&path))?);
        self.newest_seq = newest.map_or(0, |(seq, _)| seq);
        Ok(newest.map(|(_, state)| state).unwrap_or_default())
    }

    /// Makes `hard_state` durable before returning.
    pub fn store(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        let seq = self.newest_seq + 1;
        let slot = encode_slot(seq, hard_state);
        let path = self.path();
        match &self.file {
            Some(file) => {
                let offset = (seq as usize % SLOTS * SLOT_BYTES) as u64;
                file.write_all_at(&slot, offset)
                    .and_then(|()| crate::storage::sync_data(file))
                    .map_err(StorageError::io(&path))?;
                crate::cost::count_written(crate::cost::Written::Other, slot.len() as u64);
            }
            None => {
                // First store (or an upgrade): a whole new file, replaced atomically.
                let mut bytes = [0u8; FILE_BYTES];
                let offset = seq as usize % SLOTS * SLOT_BYTES;
                bytes[offset..offset + SLOT_BYTES].copy_from_slice(&slot);
                let temporary = self.dir.join("hardstate.tmp");
                let mut file = File::create(&temporary).map_err(StorageError::io(&temporary))?;
                file.write_all(&bytes)
                    .and_then(|()| crate::storage::sync_data(&file))
                    .map_err(StorageError::io(&temporary))?;
                crate::cost::count_written(crate::cost::Written::Other, bytes.len() as u64);
                std::fs::rename(&temporary, &path).map_err(StorageError::io(&path))?;
                sync_dir(&self.dir)?;
                self.file = Some(OpenOptions::new().write(true).open(&path).map_err(StorageError::io(&path))?);
            }
        }
        self.newest_seq = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: round trip over many stores (both slots), a fresh default; a torn newest
    /// slot falls back to the state before it, and two damaged slots are refused clearly.
    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = HardStateFile::new(dir.path());
        assert_eq!(file.load().unwrap(), HardState::default());
        for term in 1..=5 {
            let state = HardState { term, voted_for: Some(NodeId(3)), paused: term % 2 == 0 };
            file.store(&state).unwrap();
            assert_eq!(HardStateFile::new(dir.path()).load().unwrap(), state, "after store {term}");
        }
        let path = dir.path().join("hardstate");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_BYTES as u64);
        // Store 5 went to slot 1, store 4 (term 4) to slot 0.
        let bytes = std::fs::read(&path).unwrap();
        let mut torn = bytes.clone();
        torn[SLOT_BYTES + 20] ^= 0xff;
        let copy = tempfile::tempdir().unwrap();
        std::fs::write(copy.path().join("hardstate"), &torn).unwrap();
        assert_eq!(HardStateFile::new(copy.path()).load().unwrap().term, 4);
        let mut both = torn;
        both[9] ^= 0xff;
        std::fs::write(copy.path().join("hardstate"), &both).unwrap();
        let error = HardStateFile::new(copy.path()).load().unwrap_err().to_string();
        assert!(error.contains("hardstate") && error.contains("checksum mismatch"), "{error}");
        std::fs::write(copy.path().join("hardstate"), &bytes[..40]).unwrap();
        let error = HardStateFile::new(copy.path()).load().unwrap_err().to_string();
        assert!(error.contains("wrong size"), "{error}");
    }

    /// Goal: a file in the earlier format is read, and the next store rewrites it in
    /// the current one.
    #[test]
    fn upgrades_the_earlier_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC_V1);
        v1.extend_from_slice(&9u64.to_le_bytes());
        v1.extend_from_slice(&[2, 1]);
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.path().join("hardstate"), &v1).unwrap();
        let mut file = HardStateFile::new(dir.path());
        let state = file.load().unwrap();
        assert_eq!(state, HardState { term: 9, voted_for: Some(NodeId(2)), paused: true });
        let next = HardState { term: 10, ..state };
        file.store(&next).unwrap();
        assert_eq!(HardStateFile::new(dir.path()).load().unwrap(), next);
        assert_eq!(std::fs::metadata(dir.path().join("hardstate")).unwrap().len(), FILE_BYTES as u64);
    }
}
