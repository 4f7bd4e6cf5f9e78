//! The snapshot file: the whole key-value map as of one applied log position, so the log
//! before it can be dropped and a new follower can start from it.
//!
//! Layout (little endian): magic `BATONSN1`, format version u32, index u64, term u64,
//! entry count u64, then per entry key length u32, value length u32, key, value; from
//! version 2 the client sessions (see `crate::session`): session count u64, the log's
//! clock u64, and per session its id (16 bytes), last sequence number u64, last used
//! u64, outcome u8 (0 a compare-and-set that did not match, 1 written) with term u64 and
//! index u64 (for 0, where it did not match; files before that hold 0, 0); from version 3
//! the revoked certificates (see `crate::revocation`): count u64, and per certificate its
//! fingerprint (32 bytes), holder length u32 and holder; from version 4 the membership
//! record (see `baton_host::members`): its length u32 (0: none, the membership is as the
//! cluster was formed) and its postcard bytes; from version 5 the session numbers (see
//! `crate::session`): numbering u8 (0 off, 1 on), the next number u64, and for each
//! session, in the order above, its number u64 (0: none); and at the end a CRC-32 of
//! everything before it. Versions 1 (no sessions), 2 (no revocations), 3 (no
//! membership) and 4 (no session numbers) still load. Written to `snapshot.tmp`, fsynced,
//! renamed over `snapshot`, and the directory fsynced: a crash leaves the old snapshot or
//! the new one, never a mix. A received snapshot is checked the same way before it is
//! installed.

use super::{sync_dir, StorageError};
use baton_common::Position;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 8] = b"BATONSN1";
const FORMAT_VERSION: u32 = 5;
/// The first version, without sessions: still read.
const FORMAT_VERSION_WITHOUT_SESSIONS: u32 = 1;
/// The second, with sessions but without revocations: still read.
const FORMAT_VERSION_WITHOUT_REVOCATIONS: u32 = 2;
/// The third, with revocations but without the membership record: still read.
const FORMAT_VERSION_WITHOUT_MEMBERS: u32 = 3;
/// The fourth, with the membership record but without session numbers: still read.
const FORMAT_VERSION_WITHOUT_SESSION_NUMBERS: u32 = 4;
/// A membership record longer than this means the file is damaged.
const MEMBERS_BYTES_MAX: u32 = 64 * 1024;
const HEADER_BYTES: usize = 8 + 4 + 8 + 8 + 8;
/// A key or value longer than this in a snapshot means the file is damaged.
const FIELD_BYTES_MAX: u32 = baton_common::limits::ENTRY_BYTES_MAX as u32;
/// Bytes buffered per read or write; snapshots stream, they are never held whole.
const IO_BUFFER_BYTES: usize = 256 * 1024;
/// A snapshot being written is flushed to the disk every this many bytes, and then pauses
/// for as long as the flush took: the log's own flushes (and so every write) wait for at
/// most one such flush, and get at least half of the disk's time however slow it is.
/// One flush of tens of megabytes at the end held up the log's flushes for as long as
/// it took; flushes of 4 MiB without pauses, from three nodes on one disk, stopped
/// acknowledgements for 2.4 s (`baton bench --clients 64 --duration 30`, 60 MB maps).
const SYNC_EVERY_BYTES: usize = 1024 * 1024;

pub use crate::kv::Contents;
pub use crate::map::Map;
use crate::revocation::{Fingerprint, HOLDER_BYTES_MAX, REVOKED_MAX};
use crate::session::{Outcome, Session, Sessions};
use baton_host::members::MemberRecord;
use std::collections::BTreeMap;

/// What a snapshot file holds: the state machine as of one log position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub position: Position,
    pub map: Map,
    pub sessions: Sessions,
    pub revoked: BTreeMap<Fingerprint, String>,
    pub members: Option<MemberRecord>,
}

impl Snapshot {
    /// The state machine this snapshot holds.
    pub fn into_kv(self) -> crate::kv::Kv {
        let Snapshot { position, map, sessions, revoked, members } = self;
        crate::kv::Kv::restore(position.index, Contents { map, sessions, revoked, members })
    }
}

/// The snapshot files of one data directory (`<data dir>/snapshot/`). Clones share
/// which snapshot they last installed, so a snapshot written on a blocking thread is
/// never renamed over a newer one installed meanwhile.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
    installed: Arc<Mutex<Option<Position>>>,
}

/// A hasher that counts what it writes, so the CRC trails the data without a second pass.
struct CrcWriter<W: Write> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct CrcReader<R: Read> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}

impl SnapshotDir {
    pub fn new(data_dir: &Path) -> SnapshotDir {
        SnapshotDir { dir: data_dir.join("snapshot"), installed: Arc::default() }
    }

    /// The installed snapshot.
    pub fn path(&self) -> PathBuf {
        self.dir.join("snapshot")
    }

    /// Where a snapshot being written locally goes before its rename.
    pub fn tmp_path(&self) -> PathBuf {
        self.dir.join("snapshot.tmp")
    }

    /// The snapshot a witness gets: the installed one's position and membership, no data.
    pub fn witness_path(&self) -> PathBuf {
        self.dir.join("witness-snapshot")
    }

    /// Writes the witness's snapshot (small: no data) atomically. Returns its size.
    pub fn write_witness(&self, position: Position, contents: &Contents) -> Result<u64, StorageError> {
        self.create()?;
        let tmp = self.dir.join("witness-snapshot.tmp");
        write_file(&tmp, position, contents)?;
        let path = self.witness_path();
        std::fs::rename(&tmp, &path).map_err(StorageError::io(&path))?;
        Ok(std::fs::metadata(&path).map_err(StorageError::io(&path))?.len())
    }

    /// Where a snapshot being received from the leader goes, chunk by chunk.
    pub fn incoming_path(&self) -> PathBuf {
        self.dir.join("incoming.tmp")
    }

    pub fn create(&self) -> Result<(), StorageError> {
        std::fs::create_dir_all(&self.dir).map_err(StorageError::io(&self.dir))
    }

    /// Writes `contents` as the snapshot at `position`, atomically and durably. Returns
    /// its size in bytes.
    pub fn write(&self, position: Position, contents: &Contents) -> Result<u64, StorageError> {
        let tmp = self.write_tmp(position, contents)?;
        self.install(&tmp, position)
    }

    /// Writes and fsyncs `contents` to `snapshot.tmp` (slow: run it off the decision
    /// loop), ready for [`SnapshotDir::install`].
    pub fn write_tmp(&self, position: Position, contents: &Contents) -> Result<PathBuf, StorageError> {
        self.create()?;
        let tmp = self.tmp_path();
        write_file(&tmp, position, contents)?;
        Ok(tmp)
    }

    /// Removes what a stopped node may have left half done: a snapshot being written or
    /// received, and backups (downloaded or not).
    pub fn remove_leftovers(&self) {
        let _ = std::fs::remove_file(self.tmp_path());
        let _ = std::fs::remove_file(self.incoming_path());
        let _ = std::fs::remove_file(self.backup_path());
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("backup-") && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Where the latest backup an operator asked for is kept while it is downloaded.
    pub fn backup_path(&self) -> PathBuf {
        self.dir.join("backup")
    }

    /// Writes `map` as a backup at `position` (slow: off the decision loop): a snapshot
    /// file of its own, beside the installed snapshot, that later compactions leave
    /// alone. Returns its size. Two backups at once each write their own temporary file;
    /// the later rename wins, and a download of the other is told to start over.
    pub fn write_backup(&self, position: Position, contents: &Contents) -> Result<u64, StorageError> {
        self.create()?;
        let tmp = self.dir.join(format!("backup-{}.tmp", position.index));
        if let Err(error) = write_file(&tmp, position, contents) {
            // A failed backup (a full disk, say) must not keep the space it took.
            let _ = std::fs::remove_file(&tmp);
            return Err(error);
        }
        let path = self.backup_path();
        std::fs::rename(&tmp, &path).map_err(StorageError::io(&path))?;
        sync_dir(&self.dir)?;
        Ok(std::fs::metadata(&path).map_err(StorageError::io(&path))?.len())
    }

    /// Up to `max_bytes` of the backup at `index`, from `offset`, or None if the backup
    /// kept now is another one. Asking at or past its end answers nothing and deletes it.
    pub fn read_backup_chunk(
        &self,
        index: u64,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        use std::os::unix::fs::FileExt;
        let path = self.backup_path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StorageError::Io { path, source }),
        };
        let mut header = [0u8; HEADER_BYTES];
        file.read_exact_at(&mut header, 0).map_err(StorageError::io(&path))?;
        if parse_header(&path, &header)?.0.index != index {
            return Ok(None);
        }
        let length = file.metadata().map_err(StorageError::io(&path))?.len();
        if offset >= length {
            // Asked past the end: the download is complete, and the copy is not kept.
            let _ = std::fs::remove_file(&path);
            return Ok(Some(Vec::new()));
        }
        let wanted = length.saturating_sub(offset).min(max_bytes as u64) as usize;
        let mut chunk = vec![0u8; wanted];
        file.read_exact_at(&mut chunk, offset).map_err(StorageError::io(&path))?;
        Ok(Some(chunk))
    }

    /// Renames a whole, fsynced snapshot file of `position` over the installed one and
    /// makes the rename durable. Returns its size.
    pub fn install(&self, from: &Path, position: Position) -> Result<u64, StorageError> {
        let mut installed = self.installed.lock().expect("no panics while installing");
        self.install_locked(from, position, &mut installed)
    }

    /// Like [`SnapshotDir::install`], for a snapshot this node took itself (on a blocking
    /// thread): unless one at least as recent was installed meanwhile, which wins, and
    /// `from` is removed. Returns the size, or `None` when it was not installed.
    pub fn install_if_newer(&self, from: &Path, position: Position) -> Result<Option<u64>, StorageError> {
        let mut installed = self.installed.lock().expect("no panics while installing");
        if installed.is_some_and(|newer| newer.index >= position.index) {
            let _ = std::fs::remove_file(from);
            return Ok(None);
        }
        self.install_locked(from, position, &mut installed).map(Some)
    }

    fn install_locked(
        &self,
        from: &Path,
        position: Position,
        installed: &mut Option<Position>,
    ) -> Result<u64, StorageError> {
        let path = self.path();
        std::fs::rename(from, &path).map_err(StorageError::io(&path))?;
        *installed = Some(position);
        sync_dir(&self.dir)?;
        Ok(std::fs::metadata(&path).map_err(StorageError::io(&path))?.len())
    }

    /// The snapshot last installed through this directory (or a clone of it) since the
    /// node started.
    pub fn installed(&self) -> Option<Position> {
        *self.installed.lock().expect("no panics while installing")
    }

    /// Opens the installed snapshot to send it: the open file, the position its header
    /// names (which a rename after this call does not change), and its size.
    pub fn open_installed(&self) -> Result<(File, Position, u64), StorageError> {
        self.open_to_send(self.path())
    }

    /// Opens the witness's snapshot to send it, as [`SnapshotDir::open_installed`].
    pub fn open_witness(&self) -> Result<(File, Position, u64), StorageError> {
        self.open_to_send(self.witness_path())
    }

    fn open_to_send(&self, path: PathBuf) -> Result<(File, Position, u64), StorageError> {
        let file = File::open(&path).map_err(StorageError::io(&path))?;
        let mut header = [0u8; HEADER_BYTES];
        // At an offset: the file's own position stays at its start, for the sender.
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, 0).map_err(StorageError::io(&path))?;
        let (position, _, _) = parse_header(&path, &header)?;
        let bytes = file.metadata().map_err(StorageError::io(&path))?.len();
        Ok((file, position, bytes))
    }

    /// The installed snapshot's position, if there is one (checks only the header).
    pub fn position(&self) -> Result<Option<Position>, StorageError> {
        let path = self.path();
        let mut header = [0u8; HEADER_BYTES];
        match File::open(&path) {
            Ok(mut file) => {
                file.read_exact(&mut header).map_err(StorageError::io(&path))?;
                parse_header(&path, &header).map(|(position, _, _)| Some(position))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StorageError::Io { path, source }),
        }
    }

    /// Loads the installed snapshot, if there is one.
    pub fn load(&self) -> Result<Option<Snapshot>, StorageError> {
        match self.position()? {
            None => Ok(None),
            Some(_) => read(&self.path()).map(Some),
        }
    }
}

/// Writes and fsyncs `contents` as a snapshot at `position` to `path`.
fn write_file(tmp: &Path, position: Position, contents: &Contents) -> Result<(), StorageError> {
    let Contents { map, sessions, revoked, members } = contents;
    let file = File::create(tmp).map_err(StorageError::io(tmp))?;
    let mut writer = CrcWriter { inner: BufWriter::with_capacity(IO_BUFFER_BYTES, file), hasher: Default::default() };
    let written = (|| -> std::io::Result<()> {
        writer.write_all(MAGIC)?;
        writer.write_all(&FORMAT_VERSION.to_le_bytes())?;
        writer.write_all(&position.index.to_le_bytes())?;
        writer.write_all(&position.term.to_le_bytes())?;
        writer.write_all(&(map.len() as u64).to_le_bytes())?;
        let mut unsynced_bytes = 0;
        for (key, value) in map.iter() {
            writer.write_all(&(key.len() as u32).to_le_bytes())?;
            writer.write_all(&(value.len() as u32).to_le_bytes())?;
            writer.write_all(key)?;
            writer.write_all(value)?;
            unsynced_bytes += 8 + key.len() + value.len();
            if unsynced_bytes >= SYNC_EVERY_BYTES {
                let started = std::time::Instant::now();
                writer.inner.flush()?;
                crate::storage::sync_data(writer.inner.get_ref())?;
                std::thread::sleep(started.elapsed());
                unsynced_bytes = 0;
            }
        }
        writer.write_all(&(sessions.len() as u64).to_le_bytes())?;
        writer.write_all(&sessions.clock_ms().to_le_bytes())?;
        for (id, session) in sessions.iter() {
            let (tag, term, index) = match session.outcome {
                Outcome::CasMismatch { term, index } => (0u8, term, index),
                Outcome::Written { term, index } => (1u8, term, index),
            };
            writer.write_all(id)?;
            writer.write_all(&session.last_seq.to_le_bytes())?;
            writer.write_all(&session.last_used_ms.to_le_bytes())?;
            writer.write_all(&[tag])?;
            writer.write_all(&term.to_le_bytes())?;
            writer.write_all(&index.to_le_bytes())?;
        }
        writer.write_all(&(revoked.len() as u64).to_le_bytes())?;
        for (fingerprint, holder) in revoked {
            writer.write_all(fingerprint)?;
            writer.write_all(&(holder.len() as u32).to_le_bytes())?;
            writer.write_all(holder.as_bytes())?;
        }
        let members = members.as_ref().map(MemberRecord::encode).unwrap_or_default();
        writer.write_all(&(members.len() as u32).to_le_bytes())?;
        writer.write_all(&members)?;
        writer.write_all(&[u8::from(sessions.numbering())])?;
        writer.write_all(&sessions.next_number().to_le_bytes())?;
        for (id, _) in sessions.iter() {
            writer.write_all(&sessions.number_of(id).unwrap_or(0).to_le_bytes())?;
        }
        let crc = writer.hasher.clone().finalize();
        writer.inner.write_all(&crc.to_le_bytes())?;
        let file = writer.inner.into_inner().map_err(|e| e.into_error())?;
        crate::storage::sync_all(&file)?;
        crate::cost::count_written(crate::cost::Written::Snapshots, file.metadata()?.len());
        Ok(())
    })();
    written.map_err(StorageError::io(tmp))?;
    Ok(())
}

/// Restores a backup into `data_dir` for a node to start from: checks the whole file
/// (CRC, lengths), refuses a data directory that already holds a node's state, and
/// installs the file as the directory's snapshot (temporary file, fsync, rename,
/// directory fsync), without the old cluster's membership record: the restored cluster
/// is formed anew and gets a cluster id of its own. Returns the backup's position and how many keys it holds.
pub fn restore(from: &Path, data_dir: &Path) -> Result<Restored, String> {
    let snapshot = read(from).map_err(|e| e.to_string())?;
    let Snapshot { position, map, sessions, revoked, members: _ } = &snapshot;
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        let held: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        if !held.is_empty() {
            return Err(format!(
                "{} already holds a node's state ({}). Fix: stop that node and move the directory aside, \
                 then restore into an empty or new directory",
                data_dir.display(),
                held.join(", ")
            ));
        }
    }
    let snapshots = SnapshotDir::new(data_dir);
    // The backup's membership record stays behind: a restored cluster is formed anew
    // from its nodes' flags (their addresses may be new), and its first leader chooses a
    // new cluster id, so nodes of the old cluster are refused by the restored ones.
    let contents = Contents { map: map.clone(), sessions: sessions.clone(), revoked: revoked.clone(), members: None };
    let tmp = snapshots.write_tmp(*position, &contents).map_err(|e| e.to_string())?;
    snapshots.install(&tmp, *position).map_err(|e| e.to_string())?;
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(|e| e.to_string())?;
    }
    Ok(Restored { position: *position, keys: map.len(), data_dir: data_dir.to_path_buf() })
}

/// What [`restore`] installed; displays as the line to show the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub position: Position,
    pub keys: usize,
    pub data_dir: PathBuf,
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "restored {} keys as of index {} (term {}) into {}",
            self.keys,
            self.position.index,
            self.position.term,
            self.data_dir.display()
        )
    }
}

/// The header's position, entry count and format version.
fn parse_header(path: &Path, header: &[u8; HEADER_BYTES]) -> Result<(Position, u64, u32), StorageError> {
    let bad = |reason: String| StorageError::BadSnapshot { path: path.to_path_buf(), reason };
    if &header[..8] != MAGIC {
        return Err(bad("not a Baton snapshot (bad magic)".into()));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if !(FORMAT_VERSION_WITHOUT_SESSIONS..=FORMAT_VERSION).contains(&version) {
        return Err(bad(format!(
            "format version {version}, this build reads {FORMAT_VERSION_WITHOUT_SESSIONS} to {FORMAT_VERSION}"
        )));
    }
    let index = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    let term = u64::from_le_bytes(header[20..28].try_into().expect("8 bytes"));
    let count = u64::from_le_bytes(header[28..36].try_into().expect("8 bytes"));
    Ok((Position { index, term }, count, version))
}

/// Reads and checks a whole snapshot file: every length bounded, the CRC matching, and
/// nothing after it.
pub fn read(path: &Path) -> Result<Snapshot, StorageError> {
    let file = File::open(path).map_err(StorageError::io(path))?;
    let mut reader = CrcReader { inner: BufReader::with_capacity(IO_BUFFER_BYTES, file), hasher: Default::default() };
    let bad = |reason: String| StorageError::BadSnapshot { path: path.to_path_buf(), reason };
    let truncated = |_| bad("truncated".into());
    let mut header = [0u8; HEADER_BYTES];
    reader.read_exact(&mut header).map_err(truncated)?;
    let (position, count, version) = parse_header(path, &header)?;
    let mut map = Map::new();
    let mut lengths = [0u8; 8];
    for _ in 0..count {
        reader.read_exact(&mut lengths).map_err(truncated)?;
        let key_bytes = u32::from_le_bytes(lengths[..4].try_into().expect("4 bytes"));
        let value_bytes = u32::from_le_bytes(lengths[4..].try_into().expect("4 bytes"));
        if key_bytes > FIELD_BYTES_MAX || value_bytes > FIELD_BYTES_MAX {
            return Err(bad(format!("a record claims {key_bytes} + {value_bytes} bytes, over the limit")));
        }
        let mut key = vec![0u8; key_bytes as usize];
        let mut value = vec![0u8; value_bytes as usize];
        reader.read_exact(&mut key).map_err(truncated)?;
        reader.read_exact(&mut value).map_err(truncated)?;
        map.insert(&key, &value);
    }
    let mut sessions = Sessions::default();
    // The sessions' ids in the file's order, for their numbers (version 5).
    let mut session_ids = Vec::new();
    let mut revoked = BTreeMap::new();
    if version >= FORMAT_VERSION_WITHOUT_REVOCATIONS {
        let mut word = [0u8; 8];
        let mut read_u64 = |reader: &mut CrcReader<_>| -> Result<u64, StorageError> {
            reader.read_exact(&mut word).map_err(truncated)?;
            Ok(u64::from_le_bytes(word))
        };
        let count = read_u64(&mut reader)?;
        if count > crate::session::SESSIONS_MAX as u64 {
            return Err(bad(format!("{count} sessions, over the {}-session limit", crate::session::SESSIONS_MAX)));
        }
        sessions.restore_clock(read_u64(&mut reader)?);
        for _ in 0..count {
            let mut id = [0u8; 16];
            reader.read_exact(&mut id).map_err(truncated)?;
            let last_seq = read_u64(&mut reader)?;
            let last_used_ms = read_u64(&mut reader)?;
            let mut tag = [0u8; 1];
            reader.read_exact(&mut tag).map_err(truncated)?;
            let (term, index) = (read_u64(&mut reader)?, read_u64(&mut reader)?);
            let outcome = match tag[0] {
                // Files from before positions were kept hold 0, 0 here.
                0 => Outcome::CasMismatch { term, index },
                1 => Outcome::Written { term, index },
                other => return Err(bad(format!("a session's outcome is {other}, not 0 or 1"))),
            };
            sessions.restore(id, Session { last_seq, outcome, last_used_ms });
            session_ids.push(id);
        }
    }
    if version > FORMAT_VERSION_WITHOUT_REVOCATIONS {
        let mut word = [0u8; 8];
        reader.read_exact(&mut word).map_err(truncated)?;
        let count = u64::from_le_bytes(word);
        if count > REVOKED_MAX as u64 {
            return Err(bad(format!("{count} revoked certificates, over the limit of {REVOKED_MAX}")));
        }
        for _ in 0..count {
            let mut fingerprint = [0u8; 32];
            let mut length = [0u8; 4];
            reader.read_exact(&mut fingerprint).map_err(truncated)?;
            reader.read_exact(&mut length).map_err(truncated)?;
            let length = u32::from_le_bytes(length) as usize;
            if length > HOLDER_BYTES_MAX {
                return Err(bad(format!("a revoked holder's name of {length} bytes, over the limit")));
            }
            let mut holder = vec![0u8; length];
            reader.read_exact(&mut holder).map_err(truncated)?;
            revoked.insert(fingerprint, String::from_utf8_lossy(&holder).into_owned());
        }
    }
    let mut members = None;
    if version > FORMAT_VERSION_WITHOUT_MEMBERS {
        let mut length = [0u8; 4];
        reader.read_exact(&mut length).map_err(truncated)?;
        let length = u32::from_le_bytes(length);
        if length > MEMBERS_BYTES_MAX {
            return Err(bad(format!("a membership record of {length} bytes, over the limit")));
        }
        if length > 0 {
            let mut bytes = vec![0u8; length as usize];
            reader.read_exact(&mut bytes).map_err(truncated)?;
            let record: MemberRecord =
                postcard::from_bytes(&bytes).map_err(|e| bad(format!("the membership record does not decode: {e}")))?;
            record.validate().map_err(|e| bad(format!("the membership record: {e}")))?;
            members = Some(record);
        }
    }
    if version > FORMAT_VERSION_WITHOUT_SESSION_NUMBERS {
        let mut flag = [0u8; 1];
        reader.read_exact(&mut flag).map_err(truncated)?;
        let numbering = match flag[0] {
            0 => false,
            1 => true,
            other => return Err(bad(format!("session numbering is {other}, not 0 or 1"))),
        };
        let mut word = [0u8; 8];
        reader.read_exact(&mut word).map_err(truncated)?;
        let next_number = u64::from_le_bytes(word);
        let mut numbers = Vec::with_capacity(session_ids.len());
        for id in &session_ids {
            reader.read_exact(&mut word).map_err(truncated)?;
            let number = u64::from_le_bytes(word);
            if number >= next_number.max(1) {
                return Err(bad(format!("a session's number {number} is not below the next number {next_number}")));
            }
            numbers.push((*id, number));
        }
        sessions.restore_numbering(numbering, next_number, numbers);
    }
    let expected = reader.hasher.clone().finalize();
    let mut trailer = [0u8; 4];
    reader.inner.read_exact(&mut trailer).map_err(truncated)?;
    if u32::from_le_bytes(trailer) != expected {
        return Err(bad("checksum mismatch".into()));
    }
    if reader.inner.read(&mut [0u8; 1]).map_err(StorageError::io(path))? != 0 {
        return Err(bad("bytes after the checksum".into()));
    }
    Ok(Snapshot { position, map, sessions, revoked, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_revoked() -> BTreeMap<Fingerprint, String> {
        (0..3u8).map(|n| ([n; 32], format!("gw{n}.client.baton"))).collect()
    }

    fn sample_sessions() -> Sessions {
        let mut sessions = Sessions::default();
        for n in 0..10u8 {
            let outcome = if n % 3 == 0 {
                Outcome::CasMismatch { term: 2, index: 90 + u64::from(n) }
            } else {
                Outcome::Written { term: 2, index: 100 + u64::from(n) }
            };
            sessions
                .restore([n; 16], Session { last_seq: u64::from(n) * 7, outcome, last_used_ms: 5_000 + u64::from(n) });
        }
        sessions
    }

    /// The sample sessions numbered (1 to 10 in id order), and one more without a number.
    fn sample_numbered_sessions() -> Sessions {
        let mut sessions = sample_sessions();
        sessions.start_numbering();
        let outcome = Outcome::Written { term: 3, index: 200 };
        sessions.restore([200; 16], Session { last_seq: 1, outcome, last_used_ms: 6_000 });
        assert_eq!((sessions.number_of(&[9; 16]), sessions.number_of(&[200; 16])), (Some(10), None));
        sessions
    }

    /// Goal: session numbers travel in snapshots (on, the next number, each session's
    /// or none), and a file of the format before numbers (4) still loads, numbering off.
    #[test]
    fn session_numbers_travel_and_a_file_without_them_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::new(dir.path());
        let position = Position { index: 300, term: 3 };
        let sessions = sample_numbered_sessions();
        snapshots
            .write(position, &Contents { map: sample(), sessions: sessions.clone(), ..Default::default() })
            .unwrap();
        let loaded = snapshots.load().unwrap().unwrap();
        assert_eq!(loaded.sessions, sessions);
        assert_eq!(loaded.sessions.id_of_number(10), Some([9; 16]));
        assert_eq!(loaded.sessions.next_number(), 11);

        // The same file as the format before numbers wrote it: no numbering section.
        let written = snapshots.load().unwrap().unwrap();
        let unnumbered = sample_sessions();
        let contents = Contents { map: written.map.clone(), sessions: unnumbered.clone(), ..Default::default() };
        snapshots.write(position, &contents).unwrap();
        let mut bytes = std::fs::read(snapshots.path()).unwrap();
        let numbering_bytes = 1 + 8 + 8 * unnumbered.len();
        bytes.truncate(bytes.len() - 4 - numbering_bytes);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION_WITHOUT_SESSION_NUMBERS.to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let old = dir.path().join("old");
        std::fs::write(&old, &bytes).unwrap();
        let read_back = read(&old).unwrap();
        assert_eq!(read_back.sessions, unnumbered);
        assert!(!read_back.sessions.numbering());
        assert_eq!(read_back.map, written.map);
    }

    /// Goal: a snapshot of the first format (no sessions), as earlier builds wrote it,
    /// still loads: a node upgraded in place keeps its data.
    #[test]
    fn a_snapshot_without_sessions_still_loads() {
        let map = sample();
        let position = Position { index: 77, term: 3 };
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION_WITHOUT_SESSIONS.to_le_bytes());
        bytes.extend_from_slice(&position.index.to_le_bytes());
        bytes.extend_from_slice(&position.term.to_le_bytes());
        bytes.extend_from_slice(&(map.len() as u64).to_le_bytes());
        for (key, value) in map.iter() {
            bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
            bytes.extend_from_slice(key);
            bytes.extend_from_slice(value);
        }
        bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            read(&path).unwrap(),
            Snapshot { position, map, sessions: Sessions::default(), revoked: BTreeMap::new(), members: None }
        );
    }

    fn sample() -> Map {
        (0..1000u32).map(|i| (format!("key-{i}").into_bytes(), vec![i as u8; (i % 300) as usize])).collect()
    }

    /// Goal: a written snapshot reads back equal, and replaces the previous one.
    /// Goal: the state machine read back from a snapshot file still takes a resent
    /// session write once (sessions travel in snapshots).
    #[test]
    fn a_resent_write_takes_effect_once_across_a_snapshot_file() {
        use crate::kv::{Applied, Command, Kv};
        let put = |value: &str| Command::Session {
            id: [1; 16],
            seq: 1,
            acked_seq: 0,
            at_ms: 10,
            write: Box::new(Command::Put { key: b"k".to_vec(), value: value.as_bytes().to_vec() }),
        };
        let mut kv = Kv::default();
        assert_eq!(kv.apply(1, 3, &put("A").encode()), Applied::Done);
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::new(dir.path());
        snapshots.write(Position { index: 1, term: 3 }, &kv.contents()).unwrap();
        let mut restored = snapshots.load().unwrap().unwrap().into_kv();
        assert_eq!(restored.applied_index(), 1);
        assert_eq!(restored.apply(2, 4, &put("A").encode()), Applied::Duplicate { term: 3, index: 1 });
        assert_eq!(restored.get(b"k"), Some(&b"A"[..]));
    }

    #[test]
    fn write_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::new(dir.path());
        assert_eq!(snapshots.load().unwrap(), None);
        snapshots.write(Position { index: 5, term: 1 }, &Contents::default()).unwrap();
        let (map, sessions, revoked) = (sample(), sample_numbered_sessions(), sample_revoked());
        let members = Some(MemberRecord::formed(&[("n1".into(), "h1:1".into()), ("n2".into(), "h2:1".into())]));
        let contents = Contents {
            map: map.clone(),
            sessions: sessions.clone(),
            revoked: revoked.clone(),
            members: members.clone(),
        };
        snapshots.write(Position { index: 1234, term: 7 }, &contents).unwrap();
        assert_eq!(snapshots.position().unwrap(), Some(Position { index: 1234, term: 7 }));
        let position = Position { index: 1234, term: 7 };
        assert_eq!(snapshots.load().unwrap(), Some(Snapshot { position, map, sessions, revoked, members }));
        assert!(!snapshots.tmp_path().exists());
    }

    /// Goal: a snapshot taken locally is not installed over a newer one installed
    /// meanwhile (its file is removed), and a sender reads the position the installed
    /// file holds.
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::new(dir.path());
        let taker = snapshots.clone();
        let older = Position { index: 100, term: 2 };
        let tmp = taker.write_tmp(older, &Contents { map: sample(), ..Default::default() }).unwrap();
        let newer = Position { index: 200, term: 3 };
        snapshots.write(newer, &Contents::default()).unwrap();
        assert_eq!(taker.install_if_newer(&tmp, older).unwrap(), None);
        assert!(!tmp.exists());
        assert_eq!(snapshots.installed(), Some(newer));
        let (_, position, bytes) = snapshots.open_installed().unwrap();
        assert_eq!((position, bytes), (newer, std::fs::metadata(snapshots.path()).unwrap().len()));
        let newest = Position { index: 300, term: 3 };
        let contents = Contents { map: sample(), sessions: sample_sessions(), ..Default::default() };
        let tmp = taker.write_tmp(newest, &contents).unwrap();
        assert!(taker.install_if_newer(&tmp, newest).unwrap().is_some());
        let (map, sessions) = (sample(), sample_sessions());
        let loaded = Snapshot { position: newest, map, sessions, revoked: BTreeMap::new(), members: None };
        assert_eq!(snapshots.load().unwrap(), Some(loaded));
    }

    /// Goal: any flipped byte or cut tail is refused with the file's name, never loaded.
    #[test]
    fn damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::new(dir.path());
        let members = Some(MemberRecord::formed(&[("n1".into(), "h1:1".into())]));
        let contents = Contents { map: sample(), sessions: sample_sessions(), revoked: sample_revoked(), members };
        snapshots.write(Position { index: 9, term: 2 }, &contents).unwrap();
        let good = std::fs::read(snapshots.path()).unwrap();
        // The sessions sit just before the CRC: flip bytes there too.
        for at in [3, 13, 40, 41, 500, good.len() / 2, good.len() - 60, good.len() - 1] {
            let mut bytes = good.clone();
            bytes[at] ^= 0x40;
            std::fs::write(snapshots.path(), &bytes).unwrap();
            let error = snapshots.load().unwrap_err().to_string();
            assert!(error.contains("snapshot"), "byte {at}: {error}");
        }
        std::fs::write(snapshots.path(), &good[..good.len() - 10]).unwrap();
        assert!(snapshots.load().unwrap_err().to_string().contains("truncated"));
    }
}
