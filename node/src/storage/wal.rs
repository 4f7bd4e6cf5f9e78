//! The segmented write-ahead log.
//!
//! Files: `wal/<base index, 20 digits>.wal`. A segment starts with a 24-byte header:
//! magic `BATONWL1`, format version (u32), base index (u64), CRC-32 of those 20 bytes.
//! Each record is: payload length (u32), CRC-32 of the rest (u32), term (u64),
//! index (u64), payload. Little endian throughout.
//!
//! Recovery reads every segment. A bad record at the very end of the last segment is a
//! torn write (power lost mid-append): the tail is cut there and appends resume at that
//! offset. A bad record with any valid record after it, or anywhere in an older segment,
//! is corruption in the middle of the log: recovery refuses with the file and offset,
//! because those entries may have been acknowledged. Reads check the CRC again, so
//! corrupted data is never served.
//!
//! Pre-zeroed space: the last segment's file is extended with zeros a chunk at a time
//! (`ZEROED_CHUNK_BYTES`), and records overwrite those zeros. An fdatasync then flushes
//! data only; an append that grew the file would also commit the file's new size to the
//! filesystem journal on every fsync, which costs more than the data (measured on this
//! machine's ext4: 0.17 ms -> 0.12 ms per fsync), and on an SD card it is extra writes
//! on every fsync instead of one chunk of zeros per MiB. Zeros are never a valid record
//! (the CRC of a zero header does not match), so recovery treats an all-zero tail as
//! unused space, not as a torn write. A segment that is closed is cut to its records.
//!
//! Recycled segments: segments freed by compaction are renamed `<last index>.spare` (up
//! to `SPARES_MAX`) and renamed back into place as new segments, so their space needs no
//! zeros written first. What follows the new records in such a file is old records,
//! whose indexes are all below the new segment's base (a spare is reused only then), so
//! none passes the index check; recovery cuts them as it cuts a torn tail.
//!
//! Writes in units (see [`super::blocks`]): the last segment is written with direct I/O
//! in its file's unit (a 512-byte sector on most disks), or through the page cache a
//! page at a time where direct I/O is refused. Each write covers the unit that holds the
//! end of what is already written (rewritten with the same bytes, from the copy kept
//! in memory) up to the unit that holds the new end, zeros after it: a small record and
//! its fsync cost one sector, not a page, and never a large page-cache folio.
//!
//! Durability: `append` only buffers the record in memory; `flush` writes every buffered
//! record at once, and `sync` flushes and makes every append so far durable (group
//! commit): a direct write is durable as it returns (`RWF_DSYNC`: one request to the
//! device instead of a write and an fdatasync), a cached one gets one `fdatasync`, and
//! so does a file changed otherwise (a truncation, recovery). So a burst of appends costs
//! one write and at most one fsync, and the leader can send entries to followers before
//! its own disk write. `sync_handle`
//! hands both the write and the fsync to another thread; the log keeps the written
//! bytes in memory (reads are served from there) and carries out a write still waiting
//! itself before anything changes the file, so the two never race. A new segment's
//! directory entry is synced before any record in it is reported durable.

use super::blocks::{align_down, align_up, open_for_writes, AlignedBuf, IoChoice, WriteUnit, BLOCK_BYTES};
use super::{sync_dir, StorageError};
use baton_common::limits::ENTRY_BYTES_MAX;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 8] = b"BATONWL1";
const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: u64 = 24;
/// A record's bytes besides its payload.
pub const RECORD_HEADER_BYTES: u64 = 24;
/// Appended bytes buffered in memory before they are written out without waiting for a
/// flush: bounds the buffer when a burst is large.
const UNWRITTEN_BYTES_MAX: u64 = 1024 * 1024;
/// How much zeroed space the last segment's file is extended by at a time.
const ZEROED_CHUNK_BYTES: u64 = 1024 * 1024;

/// One log entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct Segment {
    base_index: u64,
    path: PathBuf,
    /// Byte offset of each record; entry `base_index + i` is at `offsets[i]`.
    offsets: Vec<u64>,
    terms: Vec<u64>,
    end_offset: u64,
}

impl Segment {
    fn last_index(&self) -> u64 {
        self.base_index + self.offsets.len() as u64 - 1
    }

    fn contains(&self, index: u64) -> bool {
        index >= self.base_index && index < self.base_index + self.offsets.len() as u64
    }
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub entries: u64,
    pub segments: usize,
    /// Bytes cut after the last whole record: a write torn by a crash, or the old
    /// records after the new ones in a recycled segment (0 if the log ended in zeros).
    pub torn_bytes_truncated: u64,
}

/// The last segment's file, open for writes in its unit.
#[derive(Debug, Clone)]
struct ActiveFile {
    file: Arc<File>,
    unit: WriteUnit,
    path: PathBuf,
}

/// One write of the last segment: bytes in the file's unit at `offset`, then, if the
/// records reached past the zeroed space, zeros for the next chunk.
#[derive(Debug)]
struct WriteJob {
    active: ActiveFile,
    offset: u64,
    bytes: AlignedBuf,
    zeros: Option<(u64, u64)>,
}

/// Why a write carried out on another thread failed, kept for the log to report.
#[derive(Debug)]
struct WriteFailure {
    path: PathBuf,
    kind: std::io::ErrorKind,
    message: String,
}

impl WriteJob {
    fn run(&self) -> Result<(), StorageError> {
        let ActiveFile { file, unit, path } = &self.active;
        let records = self.bytes.padded(0, self.bytes.len());
        unit.write_at(file, records, self.offset).map_err(StorageError::io(path))?;
        crate::cost::count_written(crate::cost::Written::LogRecords, records.len() as u64);
        if let Some((from, to)) = self.zeros {
            let zeros = AlignedBuf::zeroed((to - from) as usize);
            unit.write_at(file, zeros.as_bytes(), from).map_err(StorageError::io(path))?;
            crate::cost::count_written(crate::cost::Written::LogZeros, to - from);
        }
        Ok(())
    }
}

/// The write handed to a sync handle, until one side carries it out.
#[derive(Debug, Default)]
struct WriteSlot {
    job: Option<WriteJob>,
    failure: Option<WriteFailure>,
}

/// Carries out the slot's write, if it is still there, under the slot's lock: whoever
/// comes first does it, and the other waits until it is on the file.
fn run_slot(slot: &Mutex<WriteSlot>) -> Result<(), StorageError> {
    let mut slot = slot.lock().expect("a write never panics while holding the slot");
    let Some(job) = slot.job.take() else { return Ok(()) };
    job.run().inspect_err(|error| {
        let (kind, message) = match error {
            StorageError::Io { source, .. } | StorageError::DiskFull { source, .. } => {
                (source.kind(), source.to_string())
            }
            other => (std::io::ErrorKind::Other, other.to_string()),
        };
        slot.failure = Some(WriteFailure { path: job.active.path.clone(), kind, message });
    })
}

/// See [`Wal::sync_handle`].
#[derive(Debug)]
pub struct SyncHandle {
    slot: Arc<Mutex<WriteSlot>>,
    /// The file to fdatasync, where its writes are not durable by themselves (or the
    /// file changed otherwise since its last fdatasync).
    file: Option<ActiveFile>,
    dir: Option<PathBuf>,
}

impl SyncHandle {
    pub fn sync(self) -> Result<(), StorageError> {
        run_slot(&self.slot)?;
        if let Some(active) = self.file {
            crate::storage::sync_data(&active.file).map_err(StorageError::io(&active.path))?;
        }
        if let Some(dir) = self.dir {
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_bytes_max: u64,
    segments: Vec<Segment>,
    io_choice: IoChoice,
    /// The last segment, open for appending.
    active: Option<ActiveFile>,
    /// A segment was created since the last sync: its directory entry must be synced.
    dir_dirty: bool,
    /// The last segment's bytes from `tail_offset` (block aligned) to its end: what is
    /// written of the unit being filled, and every record not yet on the file.
    tail: AlignedBuf,
    tail_offset: u64,
    /// The last segment's file holds every byte before this offset.
    written_end: u64,
    /// A write of the bytes up to here is waiting in `slot` or running.
    submitted_end: u64,
    slot: Arc<Mutex<WriteSlot>>,
    /// The last segment file's length once the writes submitted are done: zeros (or, in
    /// a recycled file, old records) between its records' end and this.
    file_bytes: u64,
    /// Compacted segment files kept for reuse, with the highest index each holds.
    spares: Vec<(PathBuf, u64)>,
    /// The last segment changed since its last fdatasync other than by durable writes
    /// (a truncation, or what recovery found): the next sync must fdatasync.
    needs_fdatasync: bool,
    /// Something was written since the last `sync` returned (a `sync_handle` does not
    /// clear it: its fsync may still be running).
    dirty: bool,
}
fn segment_path(dir: &Path, base_index: u64) -> PathBuf {
    dir.join(format!("{base_index:020}.wal"))
}

fn header_bytes(base_index: u64) -> [u8; HEADER_BYTES as usize] {
    let mut header = [0u8; HEADER_BYTES as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&base_index.to_le_bytes());
    let crc = crc32fast::hash(&header[..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

fn record_crc(term: u64, index: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&term.to_le_bytes());
    hasher.update(&index.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// A record parsed from `bytes` at `offset`, if it is whole and its CRC matches.
fn parse_record(bytes: &[u8], offset: usize) -> Option<(u64, u64, usize)> {
    parse_record_from(bytes, offset, 0)
}

/// [`parse_record`] of a record whose index is at least `index_min`, checked before the
/// CRC: scanning megabytes of a recycled segment's old records for a later valid one
/// costs a comparison per byte, not a checksum.
fn parse_record_from(bytes: &[u8], offset: usize, index_min: u64) -> Option<(u64, u64, usize)> {
    let header = bytes.get(offset..offset + RECORD_HEADER_BYTES as usize)?;
    let length = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    if length > ENTRY_BYTES_MAX {
        return None;
    }
    let index = u64::from_le_bytes(header[16..24].try_into().ok()?);
    if index < index_min {
        return None;
    }
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let term = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let payload_start = offset + RECORD_HEADER_BYTES as usize;
    let payload = bytes.get(payload_start..payload_start + length)?;
    (record_crc(term, index, payload) == crc).then_some((term, index, RECORD_HEADER_BYTES as usize + length))
}

/// Segments the log let go of (see [`Wal::detach_through`]), still on disk.
#[derive(Debug)]
pub struct Detached {
    dir: PathBuf,
    paths: Vec<PathBuf>,
    /// Those kept as spares instead (each one's path now, and as a spare).
    recycled: Vec<(PathBuf, PathBuf)>,
    /// How many entries they hold.
    pub entries: u64,
}

impl Detached {
    /// Deletes the segments (renames the one kept as a spare) and makes that durable
    /// (slow on an SD card: off the decision loop where it can be).
    pub fn remove(&self) -> Result<(), StorageError> {
        for path in &self.paths {
            std::fs::remove_file(path).map_err(StorageError::io(path))?;
        }
        for (from, to) in &self.recycled {
            std::fs::rename(from, to).map_err(StorageError::io(from))?;
        }
        if !self.paths.is_empty() || !self.recycled.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Spare segment files kept for reuse at most: enough for the segments one compaction
/// frees (a snapshot at half the log bound frees about two), so the segments that
/// follow need no zeros written ahead either.
const SPARES_MAX: usize = 4;

/// A spare's name: the highest index its old records hold, so it is reused only for a
/// segment whose entries all come after every record left in it.
fn spare_path(dir: &Path, last_index: u64) -> PathBuf {
    dir.join(format!("{last_index:020}.spare"))
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` and recovers it.
    pub fn open(dir: &Path, segment_bytes_max: u64) -> Result<(Wal, Recovery), StorageError> {
        Wal::open_with(dir, segment_bytes_max, IoChoice::Auto)
    }

    /// [`Wal::open`], choosing the write path (tests use the page cache's on purpose).
    pub fn open_with(dir: &Path, segment_bytes_max: u64, io_choice: IoChoice) -> Result<(Wal, Recovery), StorageError> {
        std::fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(StorageError::io(dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "wal"))
            .collect();
        paths.sort();
        let mut spares: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
            .map_err(StorageError::io(dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "spare"))
            .filter_map(|path| {
                let last_index = path.file_stem()?.to_str()?.parse().ok()?;
                Some((path, last_index))
            })
            .collect();
        spares.sort_by_key(|(_, last_index)| *last_index);
        for (extra, _) in spares.drain(..spares.len().saturating_sub(SPARES_MAX)) {
            std::fs::remove_file(&extra).map_err(StorageError::io(&extra))?;
        }
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segment_bytes_max,
            segments: Vec::new(),
            io_choice,
            active: None,
            dir_dirty: false,
            tail: AlignedBuf::default(),
            tail_offset: 0,
            written_end: 0,
            submitted_end: 0,
            slot: Arc::default(),
            file_bytes: 0,
            spares: Vec::new(),
            needs_fdatasync: true,
            // What recovery found may sit in the page cache of a process that crashed:
            // the first sync covers it.
            dirty: true,
        };
        let mut recovery = Recovery::default();
        let count = paths.len();
        for (position, path) in paths.into_iter().enumerate() {
            let last = position + 1 == count;
            if let Some(segment) = wal.recover_segment(&path, last, &mut recovery)? {
                if let Some(previous) = wal.segments.last() {
                    if segment.base_index != previous.last_index() + 1 {
                        return Err(StorageError::BadSegment {
                            path,
                            reason: format!(
                                "starts at entry {} but the previous segment ends at {}",
                                segment.base_index,
                                previous.last_index()
                            ),
                        });
                    }
                }
                recovery.entries += segment.offsets.len() as u64;
                wal.segments.push(segment);
            }
        }
        recovery.segments = wal.segments.len();
        wal.spares = spares;
        wal.reopen_last()?;
        Ok((wal, recovery))
    }

    /// Opens the last segment for appends after its end, with the unit being filled
    /// read back into memory (recovery, or a truncation back into an older segment).
    fn reopen_last(&mut self) -> Result<(), StorageError> {
        self.active = None;
        self.tail = AlignedBuf::default();
        let Some(segment) = self.segments.last() else { return Ok(()) };
        let path = segment.path.clone();
        let (file, unit) = open_for_writes(&path, false, self.io_choice).map_err(StorageError::io(&path))?;
        self.file_bytes = file.metadata().map_err(StorageError::io(&path))?.len();
        self.tail_offset = align_down(segment.end_offset, BLOCK_BYTES as u64);
        let mut partial = vec![0u8; (segment.end_offset - self.tail_offset) as usize];
        File::open(&path)
            .and_then(|reader| {
                reader.read_exact_at(&mut partial, self.tail_offset)?;
                // Drop what reading put in the page cache: a large folio there would be
                // dirtied whole by every small write through the cache.
                rustix::fs::fadvise(&reader, 0, None, rustix::fs::Advice::DontNeed)?;
                Ok(())
            })
            .map_err(StorageError::io(&path))?;
        self.tail.extend_from_slice(&partial);
        self.written_end = segment.end_offset;
        self.submitted_end = segment.end_offset;
        self.active = Some(ActiveFile { file: Arc::new(file), unit, path });
        Ok(())
    }

    fn recover_segment(
        &self,
        path: &Path,
        last: bool,
        recovery: &mut Recovery,
    ) -> Result<Option<Segment>, StorageError> {
        let bytes = std::fs::read(path).map_err(StorageError::io(path))?;
        let bad = |reason: String| StorageError::BadSegment { path: path.to_path_buf(), reason };
        if bytes.len() < HEADER_BYTES as usize {
            if last {
                // Torn while being created: nothing in it was ever acknowledged.
                std::fs::remove_file(path).map_err(StorageError::io(path))?;
                recovery.torn_bytes_truncated += bytes.len() as u64;
                return Ok(None);
            }
            return Err(bad("shorter than a segment header".into()));
        }
        let header = &bytes[..HEADER_BYTES as usize];
        if &header[..8] != MAGIC {
            return Err(bad("not a Baton log segment (bad magic)".into()));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(bad(format!("format version {version}, this build reads {FORMAT_VERSION}")));
        }
        if crc32fast::hash(&header[..20]) != u32::from_le_bytes(header[20..24].try_into().expect("4 bytes")) {
            return Err(bad("segment header checksum mismatch".into()));
        }
        let base_index = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        let mut segment = Segment {
            base_index,
            path: path.to_path_buf(),
            offsets: Vec::new(),
            terms: Vec::new(),
            end_offset: HEADER_BYTES,
        };
        let mut offset = HEADER_BYTES as usize;
        while offset < bytes.len() {
            let expected_index = base_index + segment.offsets.len() as u64;
            match parse_record(&bytes, offset) {
                Some((term, index, length)) if index == expected_index => {
                    segment.offsets.push(offset as u64);
                    segment.terms.push(term);
                    offset += length;
                }
                _ if bytes[offset..].iter().all(|&b| b == 0) => break, // Pre-zeroed space.
                _ => {
                    // Spare zeros at the end hold no record: scan up to the last non-zero byte.
                    let scan_end = bytes.iter().rposition(|&b| b != 0).map_or(offset, |at| at + 1);
                    let valid_later =
                        (offset + 1..scan_end).any(|at| parse_record_from(&bytes, at, expected_index).is_some());
                    if !last || valid_later {
                        return Err(StorageError::CorruptMidLog {
                            path: path.to_path_buf(),
                            offset: offset as u64,
                            index: expected_index,
                        });
                    }
                    // A torn tail: cut it, durably, and append from here.
                    let file = OpenOptions::new().write(true).open(path).map_err(StorageError::io(path))?;
                    file.set_len(offset as u64)
                        .and_then(|()| crate::storage::sync_data(&file))
                        .map_err(StorageError::io(path))?;
                    recovery.torn_bytes_truncated += (bytes.len() - offset) as u64;
                    break;
                }
            }
        }
        segment.end_offset = offset.min(bytes.len()) as u64;
        if !last && segment.end_offset < bytes.len() as u64 {
            // Zeros left when the process died between closing this segment and cutting
            // it: harmless, but cut them so only the last segment has spare space.
            let file = OpenOptions::new().write(true).open(path).map_err(StorageError::io(path))?;
            file.set_len(segment.end_offset)
                .and_then(|()| crate::storage::sync_data(&file))
                .map_err(StorageError::io(path))?;
        }
        if segment.offsets.is_empty() && !last {
            return Err(bad("holds no entries but is not the last segment".into()));
        }
        if segment.offsets.is_empty() {
            // An empty last segment holds nothing: drop it, the next append starts anew.
            std::fs::remove_file(path).map_err(StorageError::io(path))?;
            return Ok(None);
        }
        Ok(Some(segment))
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How the last segment is written (`None` before the first append).
    pub fn write_unit(&self) -> Option<WriteUnit> {
        self.active.as_ref().map(|active| active.unit)
    }

    pub fn first_index(&self) -> Option<u64> {
        self.segments.first().map(|s| s.base_index)
    }

    pub fn last_index(&self) -> Option<u64> {
        self.segments.last().map(Segment::last_index)
    }

    pub fn term_at(&self, index: u64) -> Option<u64> {
        let segment = self.segments.iter().rev().find(|s| s.contains(index))?;
        segment.terms.get((index - segment.base_index) as usize).copied()
    }

    /// `(index, term)` of every entry, oldest first: what the core needs at start-up.
    pub fn terms(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.segments.iter().flat_map(|s| s.terms.iter().enumerate().map(move |(i, t)| (s.base_index + i as u64, *t)))
    }

    /// Bytes on disk, headers included.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.end_offset).sum()
    }

    /// Appends one entry after the last (or, in an empty log, anywhere). Buffered in
    /// memory until `flush` or `sync`; not durable until `sync`.
    pub fn append(&mut self, index: u64, term: u64, payload: &[u8]) -> Result<(), StorageError> {
        if payload.len() > ENTRY_BYTES_MAX {
            return Err(StorageError::EntryTooLarge { index, bytes: payload.len(), max: ENTRY_BYTES_MAX });
        }
        if let Some(last) = self.last_index() {
            assert_eq!(index, last + 1, "appends are contiguous");
        }
        let record_bytes = RECORD_HEADER_BYTES + payload.len() as u64;
        let full = self.segments.last().is_none_or(|s| s.end_offset + record_bytes > self.segment_bytes_max);
        if full {
            self.start_segment(index)?;
        }
        let segment = self.segments.last_mut().expect("a segment exists");
        assert_eq!(self.tail_offset + self.tail.len() as u64, segment.end_offset, "the tail ends at the end");
        self.tail.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.tail.extend_from_slice(&record_crc(term, index, payload).to_le_bytes());
        self.tail.extend_from_slice(&term.to_le_bytes());
        self.tail.extend_from_slice(&index.to_le_bytes());
        self.tail.extend_from_slice(payload);
        segment.offsets.push(segment.end_offset);
        segment.terms.push(term);
        segment.end_offset += record_bytes;
        self.dirty = true;
        if segment.end_offset - self.submitted_end >= UNWRITTEN_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    /// Waits for (or carries out) the write handed to a sync handle, so the file holds
    /// everything submitted, and lets go of the tail's written whole blocks.
    fn settle(&mut self) -> Result<(), StorageError> {
        run_slot(&self.slot)?;
        if let Some(failure) = self.slot.lock().expect("not poisoned").failure.take() {
            return Err(StorageError::io(failure.path)(std::io::Error::new(failure.kind, failure.message)));
        }
        self.written_end = self.submitted_end;
        let unit = self.write_unit().map_or(BLOCK_BYTES as u64, WriteUnit::bytes);
        let keep_from = align_down(align_down(self.written_end, unit), BLOCK_BYTES as u64);
        if keep_from > self.tail_offset {
            self.tail.drop_front_blocks(((keep_from - self.tail_offset) / BLOCK_BYTES as u64) as usize);
            self.tail_offset = keep_from;
        }
        Ok(())
    }

    /// The write that puts every record not yet submitted on the file, if there is one.
    /// Call after `settle`.
    fn next_write(&mut self) -> Option<WriteJob> {
        let active = self.active.clone()?;
        let end = self.segments.last().expect("active implies a segment").end_offset;
        if end == self.written_end {
            return None;
        }
        let unit = active.unit.bytes();
        let (from, to) = (align_down(self.written_end, unit), align_up(end, unit));
        let mut bytes = AlignedBuf::default();
        bytes.extend_from_slice(self.tail.padded((from - self.tail_offset) as usize, (to - self.tail_offset) as usize));
        let mut zeros = None;
        if end > self.file_bytes {
            // Never past the segment's bound (small segments get no more than they hold).
            let zeroed_end = align_up(end, ZEROED_CHUNK_BYTES).min(self.segment_bytes_max.max(to));
            let zeroed_end = align_up(zeroed_end, unit);
            if zeroed_end > to {
                zeros = Some((to, zeroed_end));
            }
        }
        self.file_bytes = self.file_bytes.max(to).max(zeros.map_or(0, |(_, end)| end));
        self.submitted_end = end;
        Some(WriteJob { active, offset: from, bytes, zeros })
    }

    /// Writes every buffered record to the last segment's file. Not durable until `sync`.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.settle()?;
        if let Some(job) = self.next_write() {
            job.run()?;
            self.settle()?;
        }
        Ok(())
    }

    fn start_segment(&mut self, base_index: u64) -> Result<(), StorageError> {
        self.flush()?;
        if let Some(active) = self.active.take() {
            // The old segment must be whole on disk, without its spare zeros, before
            // records follow elsewhere.
            let segment = self.segments.last().expect("active implies a segment");
            active
                .file
                .set_len(segment.end_offset)
                .and_then(|()| crate::storage::sync_data(&active.file))
                .map_err(StorageError::io(&segment.path))?;
        }
        let path = segment_path(&self.dir, base_index);
        // A spare whose old records all come before this segment's entries is renamed
        // into place: its space is already allocated and written, so no zeros are
        // written ahead (they cost the disk as much again as the records), and what
        // follows the records is old records no index check accepts (their indexes are
        // below this segment's base). It is cut to its records when it closes.
        let reused = match self.spares.iter().position(|(_, last_index)| *last_index < base_index) {
            Some(at) => {
                let renamed = std::fs::rename(&self.spares[at].0, &path).is_ok();
                if renamed {
                    self.spares.remove(at);
                } // Else it is not renamed into a spare yet (that runs off the loop): later.
                renamed
            }
            None => false,
        };
        let (file, unit) = open_for_writes(&path, !reused, self.io_choice).map_err(StorageError::io(&path))?;
        let file_bytes = if reused { file.metadata().map_err(StorageError::io(&path))?.len() } else { 0 };
        // The header is written with the first records, in the same unit.
        self.tail = AlignedBuf::default();
        self.tail.extend_from_slice(&header_bytes(base_index));
        self.tail_offset = 0;
        self.written_end = 0;
        self.submitted_end = 0;
        self.file_bytes = file_bytes;
        self.dirty = true;
        self.segments.push(Segment {
            base_index,
            path: path.clone(),
            offsets: Vec::new(),
            terms: Vec::new(),
            end_offset: HEADER_BYTES,
        });
        self.active = Some(ActiveFile { file: Arc::new(file), unit, path });
        self.dir_dirty = true;
        Ok(())
    }

    /// Makes every append and truncation so far durable: one fdatasync (and a directory
    /// sync if a segment was created).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if !self.dirty && !self.dir_dirty {
            return Ok(()); // Nothing written since the last sync returned.
        }
        self.flush()?;
        if let Some(active) = self.active.as_ref().filter(|a| self.needs_fdatasync || !a.unit.writes_durably()) {
            crate::storage::sync_data(&active.file).map_err(StorageError::io(&active.path))?;
        }
        self.needs_fdatasync = false;
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        self.dirty = false;
        Ok(())
    }

    /// What a background thread needs to make every append so far durable, so the
    /// caller can keep appending meanwhile (group commit): the write of what is not yet
    /// on the file, then an fdatasync. Writes issued after this call may or may not be
    /// covered; the caller reports only what it had appended before. Anything here that
    /// changes the file first carries out (or waits for) a write still pending.
    pub fn sync_handle(&mut self) -> Result<SyncHandle, StorageError> {
        self.settle()?;
        let job = self.next_write();
        self.slot.lock().expect("not poisoned").job = job;
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone());
        let needs_fdatasync = std::mem::take(&mut self.needs_fdatasync);
        let file = self.active.clone().filter(|active| needs_fdatasync || !active.unit.writes_durably());
        Ok(SyncHandle { slot: self.slot.clone(), file, dir })
    }

    /// Drops every entry at or after `from_index` (durable on the next `sync`).
    pub fn truncate_from(&mut self, from_index: u64) -> Result<(), StorageError> {
        self.flush()?;
        self.dirty = true;
        self.needs_fdatasync = true; // The cut is metadata: only an fdatasync keeps it.
        let mut reopen = false;
        while self.segments.last().is_some_and(|s| s.base_index >= from_index) {
            let segment = self.segments.pop().expect("checked");
            self.active = None;
            std::fs::remove_file(&segment.path).map_err(StorageError::io(&segment.path))?;
            self.dir_dirty = true;
            reopen = true;
        }
        let Some(segment) = self.segments.last_mut() else { return Ok(()) };
        if segment.contains(from_index) {
            let keep = (from_index - segment.base_index) as usize;
            segment.end_offset = segment.offsets[keep];
            segment.offsets.truncate(keep);
            segment.terms.truncate(keep);
        }
        let end_offset = segment.end_offset;
        let path = segment.path.clone();
        if reopen || end_offset < self.tail_offset {
            // Cut the file first: what is read back is then exactly what stays.
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_len(end_offset))
                .map_err(StorageError::io(&path))?;
            self.reopen_last()?;
        } else {
            let active = self.active.as_ref().expect("the last segment is open");
            active.file.set_len(end_offset).map_err(StorageError::io(&path))?;
            self.tail.truncate((end_offset - self.tail_offset) as usize);
            self.file_bytes = end_offset;
            self.written_end = end_offset;
            self.submitted_end = end_offset;
        }
        Ok(())
    }

    /// Deletes whole segments that end at or before `index` (a snapshot covers them),
    /// always keeping the last one. Returns how many entries went.
    pub fn compact_through(&mut self, index: u64) -> Result<u64, StorageError> {
        let detached = self.detach_through(index);
        detached.remove()?;
        Ok(detached.entries)
    }

    /// Forgets whole segments that end at or before `index` (a snapshot covers them),
    /// always keeping the last one, and returns them for [`Detached::remove`], which may
    /// run on another thread: the log no longer reads them, and a crash before they are
    /// gone leaves segments that the next start keeps and the next compaction removes.
    pub fn detach_through(&mut self, index: u64) -> Detached {
        let mut detached = Detached { dir: self.dir.clone(), paths: Vec::new(), recycled: Vec::new(), entries: 0 };
        let mut freed = Vec::new();
        while self.segments.len() > 1 && self.segments[0].last_index() <= index {
            let segment = self.segments.remove(0);
            detached.entries += segment.offsets.len() as u64;
            freed.push((segment.path.clone(), segment.last_index()));
        }
        // Keep the newest as spares (the last written, full-sized), delete the rest.
        while let Some((from, last_index)) = freed.pop() {
            if self.spares.len() < SPARES_MAX {
                let to = spare_path(&self.dir, last_index);
                self.spares.push((to.clone(), last_index));
                detached.recycled.push((from, to));
            } else {
                detached.paths.push(from);
            }
        }
        detached
    }

    /// Deletes every segment: an installed snapshot replaces a log that does not match
    /// it. The next append starts a new segment anywhere. Durable on return.
    pub fn reset(&mut self) -> Result<(), StorageError> {
        self.settle()?;
        self.tail = AlignedBuf::default();
        self.active = None;
        for segment in self.segments.drain(..) {
            std::fs::remove_file(&segment.path).map_err(StorageError::io(&segment.path))?;
        }
        self.dir_dirty = false;
        sync_dir(&self.dir)
    }

    /// Reads one entry, checking its CRC again: corrupted data is an error, never served.
    pub fn read(&self, index: u64) -> Result<Option<Entry>, StorageError> {
        let Some(segment) = self.segments.iter().rev().find(|s| s.contains(index)) else { return Ok(None) };
        let position = (index - segment.base_index) as usize;
        let start = segment.offsets[position];
        let end = segment.offsets.get(position + 1).copied().unwrap_or(segment.end_offset);
        let in_tail = std::ptr::eq(segment, self.segments.last().expect("found one")) && start >= self.tail_offset;
        let bytes = if in_tail {
            // The copy in memory: what may not be on the file yet, or is being written.
            self.tail.as_bytes()[(start - self.tail_offset) as usize..(end - self.tail_offset) as usize].to_vec()
        } else {
            let mut bytes = vec![0u8; (end - start) as usize];
            let file = File::open(&segment.path).map_err(StorageError::io(&segment.path))?;
            file.read_exact_at(&mut bytes, start).map_err(StorageError::io(&segment.path))?;
            bytes
        };
        match parse_record(&bytes, 0) {
            Some((term, read_index, _)) if read_index == index => {
                Ok(Some(Entry { index, term, payload: bytes[RECORD_HEADER_BYTES as usize..].to_vec() }))
            }
            _ => Err(StorageError::CorruptMidLog { path: segment.path.clone(), offset: start, index }),
        }
    }
}

/// The log on disk as the host reads it (behind its recent entries in memory): an
/// unreadable entry is logged and read as missing (the core sends or asks again).
impl baton_host::node::Entries for Wal {
    fn entry(&self, index: u64) -> Option<(u64, std::borrow::Cow<'_, [u8]>)> {
        match self.read(index) {
            Ok(entry) => entry.map(|e| (e.term, std::borrow::Cow::Owned(e.payload))),
            Err(error) => {
                tracing::error!(%error, "unreadable log entry");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(index: u64) -> Vec<u8> {
        format!("value-{index}").into_bytes()
    }

    fn filled(dir: &Path, count: u64, segment_bytes: u64) -> Wal {
        let (mut wal, _) = Wal::open(dir, segment_bytes).unwrap();
        for index in 1..=count {
            wal.append(index, 1 + index / 10, &payload(index)).unwrap();
        }
        wal.sync().unwrap();
        wal
    }

    /// Goal: entries survive a reopen across several segments, with their terms.
    #[test]
    fn reopen_reads_everything_back() {
        let dir = tempfile::tempdir().unwrap();
        drop(filled(dir.path(), 100, 512));
        let (wal, recovery) = Wal::open(dir.path(), 512).unwrap();
        assert_eq!(recovery.entries, 100);
        assert!(recovery.segments > 3, "small segments roll over");
        assert_eq!(recovery.torn_bytes_truncated, 0);
        assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(100)));
        for index in [1, 37, 100] {
            assert_eq!(
                wal.read(index).unwrap().unwrap(),
                Entry { index, term: 1 + index / 10, payload: payload(index) }
            );
        }
        assert_eq!(wal.terms().count(), 100);
    }

    /// Goal: buffered appends are readable before they reach the file, one flush writes
    /// them all, and appends never written (a crash before the flush) are simply absent
    /// on reopen, with the log before them intact. On both write paths.
    #[test]
    fn buffered_appends_are_read_back_and_flushed_in_one_write() {
        for choice in [IoChoice::Auto, IoChoice::Buffered] {
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, _) = Wal::open_with(dir.path(), 1 << 20, choice).unwrap();
            for index in 1..=10 {
                wal.append(index, 1 + index / 10, &payload(index)).unwrap();
            }
            wal.sync().unwrap();
            let on_file = |from: u64, to: u64| {
                std::fs::read(segment_path(dir.path(), 1)).unwrap()[from as usize..to as usize].to_vec()
            };
            let synced_bytes = wal.bytes();
            assert!(!wal.dirty, "a sync leaves nothing for the next one to do");
            for index in 11..=20 {
                wal.append(index, 3, &payload(index)).unwrap();
            }
            assert!(on_file(synced_bytes, wal.bytes()).iter().all(|&b| b == 0), "appends wait in memory");
            assert_eq!(wal.read(15).unwrap().unwrap(), Entry { index: 15, term: 3, payload: payload(15) });
            assert_eq!(wal.read(5).unwrap().unwrap().payload, payload(5), "older entries are read back");
            assert!(wal.dirty, "an append needs a sync");
            let in_memory = wal.tail.as_bytes()[(synced_bytes - wal.tail_offset) as usize..].to_vec();
            wal.flush().unwrap();
            assert_eq!(on_file(synced_bytes, wal.bytes()), in_memory, "one flush wrote every buffered record");
            assert_eq!(wal.read(20).unwrap().unwrap().payload, payload(20));
            wal.append(21, 3, &payload(21)).unwrap();
            drop(wal); // Lost before any write, as in a crash.
            let (wal, recovery) = Wal::open_with(dir.path(), 1 << 20, choice).unwrap();
            assert_eq!((recovery.entries, recovery.torn_bytes_truncated), (20, 0));
            assert_eq!(wal.last_index(), Some(20));
        }
    }

    /// Goal: a write handed to a sync handle is on the file once the handle ran, reads
    /// meanwhile come from memory, and a truncation on the loop while the handle has not
    /// run yet carries the write out first, so the late handle never overwrites the new
    /// entries with old ones.
    #[test]
    fn a_pending_handle_never_races_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = filled(dir.path(), 10, 1 << 20);
        for index in 11..=20 {
            wal.append(index, 3, &payload(index)).unwrap();
        }
        let handle = wal.sync_handle().unwrap();
        assert_eq!(wal.read(18).unwrap().unwrap().payload, payload(18), "served from memory meanwhile");
        wal.truncate_from(15).unwrap();
        wal.append(15, 4, b"new fifteen").unwrap();
        wal.sync().unwrap();
        handle.sync().unwrap(); // Late: its write was already carried out by the truncation.
        drop(wal);
        let (wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(wal.last_index(), Some(15));
        assert_eq!(wal.read(15).unwrap().unwrap(), Entry { index: 15, term: 4, payload: b"new fifteen".to_vec() });
        assert_eq!(wal.read(14).unwrap().unwrap().payload, payload(14));
    }

    /// `write_bytes` of this thread so far (bytes it sent, or dirtied, for the disk).
    fn thread_write_bytes() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        let line = io.lines().find(|line| line.starts_with("write_bytes:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Goal: each append and its fsync cost the disk the record and at most about a page
    /// more (the regression guard for the 1 MiB per fsync that one large write of zeros
    /// caused through large page-cache folios), on both write paths, counted by the kernel
    /// in `/proc/thread-self/io` (this thread only, so other tests do not count). The
    /// appends cross into a second chunk of zeros, whose one large write would have made
    /// one large folio. The log is kept on the disk that holds the build, not a tmpfs,
    /// which counts no writes.
    #[test]
    fn an_append_and_its_fsync_write_about_one_page_more_than_the_record() {
        const APPENDS: u64 = 300;
        const PAYLOAD_BYTES: usize = 4_000;
        const RECORD_BYTES: u64 = PAYLOAD_BYTES as u64 + RECORD_HEADER_BYTES;
        const { assert!(APPENDS * RECORD_BYTES > ZEROED_CHUNK_BYTES, "the appends reach the second chunk") };
        let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../target");
        std::fs::create_dir_all(target).unwrap();
        for choice in [IoChoice::Auto, IoChoice::Buffered] {
            let dir = tempfile::tempdir_in(target).unwrap();
            let (mut wal, _) = Wal::open_with(dir.path(), 64 << 20, choice).unwrap();
            let before = thread_write_bytes();
            let counted_before = crate::cost::ProcessCost::now().written;
            for index in 1..=APPENDS {
                wal.append(index, 1, &[index as u8; PAYLOAD_BYTES]).unwrap();
                wal.sync().unwrap();
            }
            // The node's own count by kind (process-wide: other tests may add to it).
            let counted = crate::cost::ProcessCost::now().written;
            assert!(counted.log_records - counted_before.log_records >= APPENDS * RECORD_BYTES, "{counted:?}");
            if matches!(wal.write_unit(), Some(WriteUnit::Direct { .. })) {
                assert!(counted.log_zeros - counted_before.log_zeros >= ZEROED_CHUNK_BYTES, "{counted:?}");
            }
            // The two chunks of zeros ahead are written once each: not per fsync.
            let zeros = 2 * ZEROED_CHUNK_BYTES;
            let written = thread_write_bytes() - before;
            let per_fsync = written.saturating_sub(zeros) / APPENDS;
            let unit = wal.write_unit().unwrap();
            eprintln!("{unit:?}: {per_fsync} bytes written per {RECORD_BYTES}-byte record and fsync");
            assert!(written >= APPENDS * RECORD_BYTES, "{unit:?}: {written} bytes: the kernel counts the writes");
            assert!(per_fsync <= RECORD_BYTES + 2 * 4096, "{unit:?}: {per_fsync} bytes per {RECORD_BYTES}-byte record");
            if let WriteUnit::Direct { unit_bytes } = unit {
                assert!(per_fsync <= RECORD_BYTES + 2 * unit_bytes, "{unit:?}: {per_fsync}: at most two more units");
            }
        }
    }

    /// Goal: a clean log's pre-zeroed tail is spare space, not a torn write: nothing is
    /// cut, and appends resume right after the last record.
    #[test]
    fn zeroed_tail_is_spare_space() {
        let dir = tempfile::tempdir().unwrap();
        let wal = filled(dir.path(), 20, 1 << 20);
        let (records, path) = (wal.bytes(), wal.segments[0].path.clone());
        drop(wal);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), ZEROED_CHUNK_BYTES, "one chunk of zeros ahead");
        let (mut wal, recovery) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((recovery.entries, recovery.torn_bytes_truncated), (20, 0));
        assert_eq!(wal.bytes(), records);
        wal.append(21, 9, b"next").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(wal.read(21).unwrap().unwrap().payload, b"next");
    }

    /// Goal: a torn tail (half a record, followed by the spare zeros or by the end of the
    /// file) is cut, and appends resume at that offset.
    #[test]
    fn torn_tail_is_truncated_and_appends_resume() {
        for zeros_after in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let wal = filled(dir.path(), 20, 1 << 20);
            let (records, path) = (wal.bytes(), wal.segments[0].path.clone());
            drop(wal);
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            if zeros_after {
                file.write_all_at(&[0; 5], records - 5).unwrap();
            } else {
                file.set_len(records - 5).unwrap();
            }
            torn_tail_recovers(dir.path());
        }
    }

    fn torn_tail_recovers(dir: &Path) {
        let (mut wal, recovery) = Wal::open(dir, 1 << 20).unwrap();
        assert_eq!(wal.last_index(), Some(19));
        assert!(recovery.torn_bytes_truncated > 0);
        wal.append(20, 9, b"again").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (wal, _) = Wal::open(dir, 1 << 20).unwrap();
        assert_eq!(wal.read(20).unwrap().unwrap().payload, b"again");
    }

    /// Goal: a corrupted record in the middle is refused at start-up with the file and
    /// offset, and refused on read: never served, never silently dropped.
    #[test]
    fn mid_log_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Enough entries that entry 10 is older than the unit being filled, whose copy
        // in memory serves reads.
        let wal = filled(dir.path(), 400, 1 << 20);
        let path = wal.segments[0].path.clone();
        let offset = wal.segments[0].offsets[9];
        assert!(offset < wal.tail_offset);
        // Corrupt entry 10 under a live log: reads refuse it.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xAB], offset + RECORD_HEADER_BYTES + 2).unwrap();
        let error = wal.read(10).unwrap_err().to_string();
        assert!(error.contains("entry 10"), "{error}");
        drop(wal);
        let error = Wal::open(dir.path(), 1 << 20).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()) && error.contains(&format!("byte {offset}")), "{error}");
        // Even a damaged length field, which hides where the next record starts, is not
        // mistaken for a torn tail.
        file.write_all_at(&[0xFF, 0xFF], offset).unwrap();
        assert!(matches!(Wal::open(dir.path(), 1 << 20), Err(StorageError::CorruptMidLog { index: 10, .. })));
    }

    /// Goal: truncation across segments, then appends in a new term, survive a reopen.
    #[test]
    fn truncate_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = filled(dir.path(), 60, 512);
        wal.truncate_from(25).unwrap();
        wal.append(25, 50, b"new").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (wal, _) = Wal::open(dir.path(), 512).unwrap();
        assert_eq!(wal.last_index(), Some(25));
        assert_eq!(wal.term_at(25), Some(50));
        assert_eq!(wal.read(24).unwrap().unwrap().payload, payload(24));
    }

    /// Goal: compaction removes whole covered segments only, and the rest reopens.
    #[test]
    fn compaction_drops_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = filled(dir.path(), 60, 512);
        let removed = wal.compact_through(30).unwrap();
        assert!(removed > 0 && removed <= 30);
        let first = wal.first_index().unwrap();
        drop(wal);
        let (wal, _) = Wal::open(dir.path(), 512).unwrap();
        assert_eq!(wal.first_index(), Some(first));
        assert_eq!(wal.last_index(), Some(60));
    }

    /// Goal: detached segments are gone from the log at once; until they are deleted
    /// (a crash in between) the log reopens with them and still reads every entry.
    #[test]
    fn detached_segments_survive_a_crash_before_removal() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = filled(dir.path(), 60, 512);
        let detached = wal.detach_through(30);
        assert!(detached.entries > 0 && detached.entries <= 30);
        let first = wal.first_index().unwrap();
        assert_eq!(first, detached.entries + 1);
        assert_eq!(wal.read(first - 1).unwrap(), None);
        wal.append(61, 1, &payload(61)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (wal, _) = Wal::open(dir.path(), 512).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(61)));
        assert_eq!(wal.read(1).unwrap().unwrap().payload, payload(1));
        drop(wal);
        detached.remove().unwrap();
        let (wal, _) = Wal::open(dir.path(), 512).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (Some(first), Some(61)));
    }

    /// Goal: a compacted segment is kept as a spare and reused for the next segment (no
    /// zeros written ahead: the file does not grow), its old records are never taken
    /// for new ones (on reads, on a reopen mid-segment, after the segment closes), and
    /// with several spares on disk only one is kept.
    #[test]
    fn a_compacted_segment_is_reused_and_its_old_records_never_come_back() {
        for choice in [IoChoice::Auto, IoChoice::Buffered] {
            let dir = tempfile::tempdir().unwrap();
            let segment_bytes = 16 * 1024;
            for last_index in 1..=SPARES_MAX as u64 + 2 {
                std::fs::write(dir.path().join(format!("{last_index:020}.spare")), b"an old spare").unwrap();
            }
            let (mut wal, _) = Wal::open_with(dir.path(), segment_bytes, choice).unwrap();
            let spares = |dir: &Path| {
                std::fs::read_dir(dir)
                    .unwrap()
                    .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "spare"))
                    .count()
            };
            assert_eq!(spares(dir.path()), SPARES_MAX, "at most SPARES_MAX spares kept at start");
            for (spare, _) in wal.spares.drain(..) {
                std::fs::remove_file(spare).unwrap();
            }
            for index in 1..=1500 {
                wal.append(index, 1, &payload(index)).unwrap();
            }
            wal.sync().unwrap();
            let detached = wal.detach_through(1000);
            let (_, spare_last) = wal.spares[0].clone();
            let kept = wal.spares.len();
            assert_eq!(kept, 2, "both freed segments kept, under SPARES_MAX");
            detached.remove().unwrap();
            assert_eq!(spares(dir.path()), kept);
            let spare_bytes = std::fs::metadata(&wal.spares[0].0).unwrap().len();
            // Fill the last segment until a new one starts: it is the spare, renamed.
            let first_new = (1501..)
                .find(|&index| {
                    wal.append(index, 2, b"new").unwrap();
                    wal.segments.last().unwrap().base_index == index
                })
                .unwrap();
            assert!(spare_last < first_new);
            wal.sync().unwrap();
            assert_eq!(spares(dir.path()), kept - 1, "a spare became the new segment");
            let path = wal.segments.last().unwrap().path.clone();
            let length = std::fs::metadata(&path).unwrap().len();
            assert!(length <= align_up(spare_bytes, 4096), "no zeros written ahead: {length} from {spare_bytes}");
            assert_eq!(wal.read(first_new).unwrap().unwrap().payload, b"new");
            // A reopen now (as after a crash) cuts the old records after the new ones.
            drop(wal);
            let (mut wal, recovery) = Wal::open_with(dir.path(), segment_bytes, choice).unwrap();
            assert_eq!(wal.last_index(), Some(first_new));
            assert!(recovery.torn_bytes_truncated > 0);
            for index in first_new + 1..first_new + 400 {
                wal.append(index, 3, &payload(index)).unwrap();
            }
            wal.sync().unwrap();
            drop(wal);
            let (wal, _) = Wal::open_with(dir.path(), segment_bytes, choice).unwrap();
            assert_eq!(wal.last_index(), Some(first_new + 399));
            assert_eq!(wal.read(first_new).unwrap().unwrap().payload, b"new");
            assert_eq!(wal.read(first_new + 7).unwrap().unwrap().payload, payload(first_new + 7));
            assert_eq!(wal.terms().filter(|(index, _)| *index > 1500).count() as u64, first_new + 399 - 1500);
        }
    }

    /// Goal: a spare whose old records reach this segment's entries is never reused for
    /// it (an old record could otherwise pass for the entry at its index).
    #[test]
    fn a_spare_is_reused_only_below_the_new_segments_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
        let spare = spare_path(dir.path(), 50);
        std::fs::write(&spare, vec![7u8; 4096]).unwrap();
        wal.spares.push((spare.clone(), 50));
        wal.append(40, 1, b"first").unwrap();
        wal.sync().unwrap();
        assert!(spare.exists(), "entries from 40 on: a spare holding up to 50 is not theirs");
        assert_eq!(wal.read(40).unwrap().unwrap().payload, b"first");
    }

    /// Goal: an oversized entry is a clear error and writes nothing.
    #[test]
    fn oversized_entry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
        let error = wal.append(1, 1, &vec![0; ENTRY_BYTES_MAX + 1]).unwrap_err();
        assert!(matches!(error, StorageError::EntryTooLarge { index: 1, .. }));
        assert_eq!(wal.last_index(), None);
    }
}
