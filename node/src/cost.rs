//! What this process costs its machine, as the kernel counts it: bytes sent to (or
//! dirtied for) the disk, fsyncs, CPU time and resident memory. A node reports these in
//! its status and metrics so an operator sees what it does to an SD card and a small
//! CPU, and `baton bench` divides them by the writes acknowledged.
//!
//! Linux only (`/proc/self`); elsewhere the kernel's figures are `None`. Reading them
//! never fails the caller.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every fsync and fdatasync this process's storage made (the log, the hard state,
/// snapshots, directories, the discarded journal).
static FSYNCS: AtomicU64 = AtomicU64::new(0);

/// Counts one fsync; storage calls it beside each `sync_data` and `sync_all`.
pub fn count_fsync() {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
}

/// What storage wrote, by what it was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Log records, as written in the file's unit (a partly filled unit is written
    /// again by the next append).
    LogRecords,
    /// Zeros written ahead of the log's records (see `storage::wal`).
    LogZeros,
    /// Snapshots taken, received and backed up.
    Snapshots,
    /// The hard state, segment headers, the discarded-writes journal.
    Other,
}

static WRITTEN: [AtomicU64; 4] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Counts `bytes` handed to the kernel for `kind`; storage calls it beside each write.
pub fn count_written(kind: Written, bytes: u64) {
    WRITTEN[kind as usize].fetch_add(bytes, Ordering::Relaxed);
}

/// Bytes this process's storage handed to the kernel, by what they were for: where an
/// SD card's writes go. Their sum is close to `write_bytes`, which the kernel counts
/// (cached writes count as the pages they dirtied).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WrittenBytes {
    pub log_records: u64,
    pub log_zeros: u64,
    pub snapshots: u64,
    pub other: u64,
}

impl WrittenBytes {
    fn now() -> WrittenBytes {
        let load = |kind: Written| WRITTEN[kind as usize].load(Ordering::Relaxed);
        WrittenBytes {
            log_records: load(Written::LogRecords),
            log_zeros: load(Written::LogZeros),
            snapshots: load(Written::Snapshots),
            other: load(Written::Other),
        }
    }
}

/// The process's costs so far (totals since it started, but `rss_bytes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessCost {
    /// Bytes this process caused to be written to storage (`/proc/self/io`
    /// `write_bytes`: direct writes as sent, cached writes as the pages they dirtied).
    pub write_bytes: Option<u64>,
    pub fsyncs: u64,
    /// User plus system CPU time, in microseconds.
    pub cpu_us: Option<u64>,
    /// Resident memory now.
    pub rss_bytes: Option<u64>,
    pub written: WrittenBytes,
}

impl ProcessCost {
    pub fn now() -> ProcessCost {
        ProcessCost {
            write_bytes: read_write_bytes(),
            fsyncs: FSYNCS.load(Ordering::Relaxed),
            cpu_us: read_cpu_us(),
            rss_bytes: read_rss_bytes(),
            written: WrittenBytes::now(),
        }
    }
}

fn read_write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|line| line.strip_prefix("write_bytes:")).and_then(|value| value.trim().parse().ok())
}

/// utime and stime, fields 14 and 15 of `/proc/self/stat`, counted after the command
/// name (which may hold spaces) closes.
fn read_cpu_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user_ticks: u64 = fields.next()?.parse().ok()?;
    let system_ticks: u64 = fields.next()?.parse().ok()?;
    let ticks_per_second = rustix::param::clock_ticks_per_second().max(1);
    Some((user_ticks + system_ticks) * 1_000_000 / ticks_per_second)
}

/// The second field of `/proc/self/statm`: resident pages.
fn read_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: on Linux every figure is read, and they move when the process works: CPU
    /// after a busy loop, bytes and fsyncs after a synced write to a real disk file.
    #[test]
    fn costs_are_read_and_move_with_work() {
        let before = ProcessCost::now();
        assert!(before.rss_bytes.unwrap() > 1 << 20, "{before:?}");
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(60) {
            spin = spin.wrapping_add(std::hint::black_box(1));
        }
        let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../target");
        std::fs::create_dir_all(target).unwrap();
        let dir = tempfile::tempdir_in(target).unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 64 * 1024]).unwrap();
        std::fs::File::open(&path).unwrap().sync_all().unwrap();
        count_fsync();
        let after = ProcessCost::now();
        assert!(after.cpu_us.unwrap() > before.cpu_us.unwrap(), "{before:?} {after:?} {spin}");
        assert!(after.write_bytes.unwrap() >= before.write_bytes.unwrap() + 64 * 1024, "{before:?} {after:?}");
        assert!(after.fsyncs > before.fsyncs);
    }
}
