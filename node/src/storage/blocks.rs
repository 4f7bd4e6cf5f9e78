//! How the log's bytes reach the disk without rewriting more than they must: a buffer
//! that is 4096-byte aligned in memory, the write unit a file takes, and writes in that
//! unit.
//!
//! Why: a record of 150 bytes followed by an fdatasync should cost the disk about one
//! sector. Through the page cache it can cost far more. On kernels with large folios
//! for ext4 (6.16 and later) one `pwrite` of 1 MiB makes one 1 MiB folio, and every later
//! small write into it dirties all of it again (`/proc/PID/io` counted 1 MiB per fsync).
//! And a page is the smallest unit the cache writes back, so a 512-byte sector device
//! still gets 4 KiB per fsync. With `O_DIRECT` there is no cache: each write goes to the
//! device as it is, in the file's direct-I/O unit (its `STATX_DIOALIGN` offset
//! alignment, 512 bytes on most disks and SD cards). Measured on this machine's ext4 (a
//! 150-byte append and an fdatasync, 300 times): 1,048,576 bytes per fsync counted with
//! the 1 MiB zero write, 4,233 with page-sized writes, 659 with 512-byte direct writes;
//! the device itself (`/sys/block/*/stat`) wrote 850 bytes per fsync with direct writes
//! against 4,400 through the cache.
//!
//! Where a file system refuses `O_DIRECT` (tmpfs, some FUSE), writes go through the
//! page cache in page-sized pieces, so no folio larger than a page is ever made by them.
//! Nothing here decides what to write or when: the log does.

use bytemuck::{Pod, Zeroable};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The memory alignment of every buffer (and the largest direct-I/O unit accepted).
pub const BLOCK_BYTES: usize = 4096;
/// The page size writes through the page cache are cut to.
const PAGE_BYTES: u64 = 4096;
/// The smallest direct-I/O unit used, whatever a file system reports.
const DIRECT_UNIT_MIN_BYTES: u64 = 512;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(4096))]
struct Block([u8; BLOCK_BYTES]);

/// Bytes whose start is 4096-byte aligned in memory; every byte past `len` in the last
/// block is zero, so a write padded to a unit writes zeros there.
#[derive(Clone, Default)]
pub struct AlignedBuf {
    blocks: Vec<Block>,
    len: usize,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AlignedBuf").field("len", &self.len).finish()
    }
}

impl AlignedBuf {
    /// `len` zero bytes (allocated zeroed: no page is touched until written).
    pub fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf { blocks: bytemuck::zeroed_vec(len.div_ceil(BLOCK_BYTES)), len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.blocks)[..self.len]
    }

    /// Bytes `from..to` of the buffer, where `to` may run past `len` up to the end of
    /// the last block (zeros there).
    pub fn padded(&self, from: usize, to: usize) -> &[u8] {
        assert!(from <= to && to <= self.blocks.len() * BLOCK_BYTES, "within the blocks");
        &bytemuck::cast_slice(&self.blocks)[from..to]
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end > self.blocks.len() * BLOCK_BYTES {
            self.blocks.resize(end.div_ceil(BLOCK_BYTES), Block::zeroed());
        }
        bytemuck::cast_slice_mut::<Block, u8>(&mut self.blocks)[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }

    /// Keeps the first `len` bytes; the rest become zeros again.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        self.blocks.truncate(len.div_ceil(BLOCK_BYTES));
        let capacity = self.blocks.len() * BLOCK_BYTES;
        bytemuck::cast_slice_mut::<Block, u8>(&mut self.blocks)[len..capacity].fill(0);
        self.len = len;
    }

    /// Drops the first `count` whole blocks.
    pub fn drop_front_blocks(&mut self, count: usize) {
        let count = count.min(self.len / BLOCK_BYTES);
        self.blocks.drain(..count);
        self.len -= count * BLOCK_BYTES;
    }
}

/// How a file takes writes: the unit every write's offset and length are a multiple of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteUnit {
    /// `O_DIRECT`, in units of this many bytes (a power of two, 512 to 4096).
    Direct { unit_bytes: u64 },
    /// Through the page cache, in page-sized pieces.
    Buffered,
}

impl WriteUnit {
    pub fn bytes(self) -> u64 {
        match self {
            WriteUnit::Direct { unit_bytes } => unit_bytes,
            WriteUnit::Buffered => PAGE_BYTES,
        }
    }

    /// Whether a write returns only once it is durable (`RWF_DSYNC`), so no fdatasync
    /// is needed after it: direct writes are.
    pub fn writes_durably(self) -> bool {
        matches!(self, WriteUnit::Direct { .. })
    }

    /// Writes `bytes` at `offset`, both in this unit. A direct write is durable when it
    /// returns (one request to the device, written through its cache, where a write and
    /// then an fdatasync cost two and two waits); a cached one is not until an fdatasync.
    pub fn write_at(self, file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        debug_assert!(offset.is_multiple_of(self.bytes()) && (bytes.len() as u64).is_multiple_of(self.bytes()));
        match self {
            WriteUnit::Direct { .. } => {
                let flags = rustix::io::ReadWriteFlags::DSYNC;
                crate::cost::count_fsync(); // A durable write is the fsync it replaces.
                let written = rustix::io::pwritev2(file, &[std::io::IoSlice::new(bytes)], offset, flags)?;
                if written != bytes.len() {
                    // A direct write cannot go on from an unaligned point: say so.
                    return Err(std::io::Error::other(format!(
                        "a direct write of {} bytes at {offset} wrote {written}",
                        bytes.len()
                    )));
                }
                Ok(())
            }
            WriteUnit::Buffered => {
                // One page per write: the page cache makes no folio larger than a page.
                for (at, piece) in bytes.chunks(PAGE_BYTES as usize).enumerate() {
                    file.write_all_at(piece, offset + at as u64 * PAGE_BYTES)?;
                }
                Ok(())
            }
        }
    }
}

/// Which write path a log file may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoChoice {
    /// Direct I/O where the file system takes it, else the page cache.
    Auto,
    /// Always the page cache (for tests of that path).
    Buffered,
}

/// Opens `path` for writing (creating and emptying it if `create`), with direct I/O where
/// the file system supports it and reports a unit this buffer's alignment satisfies.
pub fn open_for_writes(path: &Path, create: bool, choice: IoChoice) -> std::io::Result<(File, WriteUnit)> {
    let open = |flags: i32| {
        let mut options = OpenOptions::new();
        options.write(true).custom_flags(flags);
        if create {
            options.create(true).truncate(true);
        }
        options.open(path)
    };
    if choice == IoChoice::Auto {
        if let Ok(file) = open(rustix::fs::OFlags::DIRECT.bits() as i32) {
            if let Some(unit_bytes) = direct_unit_bytes(&file) {
                return Ok((file, WriteUnit::Direct { unit_bytes }));
            }
        }
    }
    // Through the page cache (a file the direct attempt created is simply opened again).
    Ok((open(0)?, WriteUnit::Buffered))
}

/// The direct-I/O unit a file reports, if direct I/O works there in a unit of 512 to
/// 4096 bytes with memory aligned to at most 4096.
fn direct_unit_bytes(file: &File) -> Option<u64> {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    let stat = statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN).ok()?;
    if stat.stx_mask & StatxFlags::DIOALIGN.bits() == 0 {
        return None; // A kernel before 6.1, or a file system that does not say.
    }
    let offset_align = u64::from(stat.stx_dio_offset_align);
    let memory_align = u64::from(stat.stx_dio_mem_align);
    let usable = offset_align.is_power_of_two()
        && offset_align <= BLOCK_BYTES as u64
        && memory_align.is_power_of_two()
        && memory_align <= BLOCK_BYTES as u64;
    usable.then(|| offset_align.max(DIRECT_UNIT_MIN_BYTES))
}

pub fn align_down(value: u64, unit: u64) -> u64 {
    value / unit * unit
}

pub fn align_up(value: u64, unit: u64) -> u64 {
    value.div_ceil(unit) * unit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the buffer keeps its bytes aligned in memory, zeros after its end (also
    /// after a truncate), and drops whole blocks from its front.
    #[test]
    fn aligned_buffer_keeps_zeros_past_its_end() {
        let mut buffer = AlignedBuf::default();
        buffer.extend_from_slice(&[7; 5000]);
        assert_eq!(buffer.as_bytes().as_ptr() as usize % BLOCK_BYTES, 0);
        assert_eq!(buffer.padded(4990, 2 * BLOCK_BYTES)[..10], [7; 10]);
        assert!(buffer.padded(5000, 2 * BLOCK_BYTES).iter().all(|&b| b == 0));
        buffer.truncate(4100);
        assert!(buffer.padded(4100, 2 * BLOCK_BYTES).iter().all(|&b| b == 0));
        buffer.drop_front_blocks(1);
        assert_eq!(buffer.as_bytes(), &[7; 4]);
        assert!(AlignedBuf::zeroed(10_000).as_bytes().iter().all(|&b| b == 0));
    }

    /// Goal: a file on a disk gets direct I/O in a sector-sized unit where the file system
    /// offers it, and either way a write in the unit lands where it was asked to.
    #[test]
    fn a_file_takes_writes_in_its_unit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for choice in [IoChoice::Auto, IoChoice::Buffered] {
            let (file, unit) = open_for_writes(&path, true, choice).unwrap();
            if choice == IoChoice::Buffered {
                assert_eq!(unit, WriteUnit::Buffered);
            }
            let mut buffer = AlignedBuf::default();
            buffer.extend_from_slice(b"hello");
            let length = align_up(5, unit.bytes()) as usize;
            unit.write_at(&file, buffer.padded(0, length), unit.bytes()).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes.len() as u64, unit.bytes() * 2);
            assert_eq!(&bytes[unit.bytes() as usize..][..5], b"hello");
        }
    }
}
