//! The hard state file: term, vote, pause flag and the newest membership change known
//! committed, updated in place in two slots.
//!
//! Layout: two 48-byte slots. Each slot (little endian): magic `BATONHS3`, sequence
//! u64, term u64, voted_for u8 (0 = none), paused u8, six zero bytes, the index of the
//! newest membership change known committed u64, CRC-32 of the 44 bytes before it, four
//! zero bytes. An all-zero slot is empty. Load takes the valid slot with the higher
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
//! Files in the earlier formats (`BATONHS1`, one record; `BATONHS2`, two 32-byte slots
//! without the membership index) are read, and rewritten in this one (replaced by
//! rename) on the first store.

use super::{sync_dir, StorageError};
use baton_common::{HardState, NodeId};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"BATONHS3";
const SLOT_BYTES: usize = 48;
/// The bytes a slot's CRC covers.
const SLOT_CHECKED_BYTES: usize = 44;
const SLOTS: usize = 2;
const FILE_BYTES: usize = SLOT_BYTES * SLOTS;
/// The earlier single-record format, read for upgrades.
const MAGIC_V1: &[u8; 8] = b"BATONHS1";
const FILE_BYTES_V1: usize = 8 + 8 + 1 + 1 + 4;
/// The earlier two-slot format (32-byte slots, no membership index), read for upgrades.
const MAGIC_V2: &[u8; 8] = b"BATONHS2";
const SLOT_BYTES_V2: usize = 32;
const FILE_BYTES_V2: usize = SLOT_BYTES_V2 * SLOTS;

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
    slot[32..40].copy_from_slice(&hard_state.membership_committed.to_le_bytes());
    let crc = crc32fast::hash(&slot[..SLOT_CHECKED_BYTES]);
    slot[SLOT_CHECKED_BYTES..SLOT_CHECKED_BYTES + 4].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// `Ok(None)` for an empty slot, `Err` for a damaged one; a slot of this format
/// (`SLOT_BYTES`) or of the earlier one (`SLOT_BYTES_V2`).
fn decode_slot(slot: &[u8]) -> Result<Option<(u64, HardState)>, &'static str> {
    if slot.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let (magic, checked) = if slot.len() == SLOT_BYTES_V2 { (MAGIC_V2, 28) } else { (MAGIC, SLOT_CHECKED_BYTES) };
    if &slot[..8] != magic {
        return Err("not a Baton hard-state file");
    }
    if crc32fast::hash(&slot[..checked]) != u32::from_le_bytes(slot[checked..checked + 4].try_into().expect("4 bytes"))
    {
        return Err("checksum mismatch");
    }
    let seq = u64::from_le_bytes(slot[8..16].try_into().expect("8 bytes"));
    let term = u64::from_le_bytes(slot[16..24].try_into().expect("8 bytes"));
    let voted_for = (slot[24] != 0).then_some(NodeId(slot[24]));
    let membership_committed = match slot.len() {
        SLOT_BYTES_V2 => 0,
        _ => u64::from_le_bytes(slot[32..40].try_into().expect("8 bytes")),
    };
    Ok(Some((seq, HardState { term, voted_for, paused: slot[25] != 0, membership_committed })))
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
            return Ok(HardState { term, voted_for, paused: bytes[17] != 0, membership_committed: 0 });
        }
        let slot_bytes = match bytes.len() {
            FILE_BYTES => SLOT_BYTES,
            FILE_BYTES_V2 => SLOT_BYTES_V2,
            _ => return Err(bad("not a Baton hard-state file (wrong size)")),
        };
        let slots: Vec<_> = bytes.chunks_exact(slot_bytes).map(decode_slot).collect();
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
        // A file in the earlier format is replaced whole at the first store.
        if slot_bytes == SLOT_BYTES {
            self.file = Some(OpenOptions::new().write(true).open(&path).map_err(StorageError::io(&path))?);
        }
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
            let state =
                HardState { term, voted_for: Some(NodeId(3)), paused: term % 2 == 0, membership_committed: term * 7 };
            file.store(&state).unwrap();
            assert_eq!(HardStateFile::new(dir.path()).load().unwrap(), state, "after store {term}");
        }
        let path = dir.path().join("hardstate");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_BYTES as u64);
        // Store 5 went to slot 1, store 4 (term 4) to slot 0.
        let bytes = std::fs::read(&path).unwrap();
        let mut torn = bytes.clone();
        torn[SLOT_BYTES + 36] ^= 0xff;
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
        assert_eq!(state, HardState { term: 9, voted_for: Some(NodeId(2)), paused: true, membership_committed: 0 });
        let next = HardState { term: 10, ..state };
        file.store(&next).unwrap();
        assert_eq!(HardStateFile::new(dir.path()).load().unwrap(), next);
        assert_eq!(std::fs::metadata(dir.path().join("hardstate")).unwrap().len(), FILE_BYTES as u64);

        // The two-slot format of 32-byte slots, newest in slot 1.
        let v2_slot = |seq: u64, term: u64| {
            let mut slot = [0u8; SLOT_BYTES_V2];
            slot[..8].copy_from_slice(MAGIC_V2);
            slot[8..16].copy_from_slice(&seq.to_le_bytes());
            slot[16..24].copy_from_slice(&term.to_le_bytes());
            slot[24] = 3;
            let crc = crc32fast::hash(&slot[..28]);
            slot[28..32].copy_from_slice(&crc.to_le_bytes());
            slot
        };
        let mut v2 = v2_slot(4, 6).to_vec();
        v2.extend_from_slice(&v2_slot(5, 7));
        std::fs::write(dir.path().join("hardstate"), &v2).unwrap();
        let mut file = HardStateFile::new(dir.path());
        let state = file.load().unwrap();
        assert_eq!(state, HardState { term: 7, voted_for: Some(NodeId(3)), paused: false, membership_committed: 0 });
        let next = HardState { membership_committed: 12, ..state };
        file.store(&next).unwrap();
        assert_eq!(HardStateFile::new(dir.path()).load().unwrap(), next);
        assert_eq!(std::fs::metadata(dir.path().join("hardstate")).unwrap().len(), FILE_BYTES as u64);
    }
}
