//! When a node compacts its log into a snapshot: a pure rule over the log's size, the
//! last snapshot's size, the configured bound and the free disk space.
//!
//! A snapshot rewrites the whole map. Taken at a fixed log size, its cost per write
//! grows with the map without bound: a map of 500 MB rewritten every 64 MiB of log
//! writes eight times what the log wrote. So, like Redis's `auto-aof-rewrite-percentage`
//! at 100 %, a snapshot is due only once the log holds `LOG_BYTES_PER_SNAPSHOT_BYTE`
//! times the last snapshot: for a map that keeps its size (keys overwritten), snapshots
//! write half of what the log wrote, whatever the map's size (the rule before, the log
//! as large as the last snapshot, wrote as much again). A map that only grows (every
//! write a new key) costs about as much as before: each snapshot holds the keys the log
//! added since the last one, and more. The log grows past `max_log_bytes` for a map
//! larger than half of it, to at most twice the last snapshot, unless the disk has no
//! room for that: then the bound holds again, and the node compacts at `max_log_bytes`.

/// How many bytes of log a snapshot waits for, per byte of the last snapshot.
pub const LOG_BYTES_PER_SNAPSHOT_BYTE: u64 = 2;

/// A follower at least this far behind in the log (a new learner, a node back from a long
/// outage) gets a snapshot instead of the log, when the snapshot is small next to it
/// (`CATCH_UP_LOG_BYTES_PER_SNAPSHOT_BYTE`). Without this rule a node added to a cluster
/// with a small map replayed up to half of `--max-log-bytes` of log (32 MiB by default,
/// a second or more on a Pi) before it could count: the fault suite's `member` nemesis
/// saw replacements take 0.4–1.2 s, growing with the log.
pub const CATCH_UP_LOG_BYTES_MIN: u64 = 4 << 20;
/// How many bytes of log a lagging follower must be missing per byte of map before the
/// leader snapshots for it: the snapshot costs the leader's disk at most a quarter of
/// what replaying the log would send, and the follower writes less than the log.
pub const CATCH_UP_LOG_BYTES_PER_SNAPSHOT_BYTE: u64 = 4;

/// Whether a leader should snapshot now so that a follower `behind_log_bytes` of log
/// behind can be sent the snapshot (of about `map_bytes`) instead.
pub fn catch_up_snapshot_due(behind_log_bytes: u64, map_bytes: u64) -> bool {
    behind_log_bytes >= CATCH_UP_LOG_BYTES_MIN
        && behind_log_bytes >= map_bytes.saturating_mul(CATCH_UP_LOG_BYTES_PER_SNAPSHOT_BYTE)
}

/// Why a snapshot is due (see [`crate::node::Host::snapshot_due`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotReason {
    /// The log has grown enough ([`LogSize::snapshot_due`]).
    Routine,
    /// A data follower is this far behind in the log (entries, and bytes estimated from
    /// the recent entries): it gets the snapshot instead ([`catch_up_snapshot_due`]).
    CatchUp { behind_entries: u64, behind_bytes: u64 },
}

/// What the rule looks at.
#[derive(Clone, Copy, Debug)]
pub struct LogSize {
    pub wal_bytes: u64,
    pub max_log_bytes: u64,
    pub snapshot_bytes: u64,
}

impl LogSize {
    /// Whether a snapshot is due. `disk_free_bytes` is asked only when the log has
    /// reached `max_log_bytes` without having grown to its multiple of the snapshot (it
    /// costs a system call); `None` from it (unknown) counts as no room.
    pub fn snapshot_due(&self, disk_free_bytes: impl FnOnce() -> Option<u64>) -> bool {
        let LogSize { wal_bytes, max_log_bytes, snapshot_bytes } = *self;
        if wal_bytes < max_log_bytes / 2 {
            return false;
        }
        if wal_bytes >= snapshot_bytes.saturating_mul(LOG_BYTES_PER_SNAPSHOT_BYTE) {
            return true;
        }
        wal_bytes >= max_log_bytes && disk_free_bytes().is_none_or(|free| free < self.room_to_grow_bytes())
    }

    /// Disk space the log needs to reach its multiple of the snapshot, plus the next
    /// snapshot (about the last one's size) written beside the current one.
    pub fn room_to_grow_bytes(&self) -> u64 {
        let bound = self.snapshot_bytes.saturating_mul(LOG_BYTES_PER_SNAPSHOT_BYTE);
        bound.saturating_sub(self.wal_bytes).saturating_add(self.snapshot_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a follower far behind gets a snapshot when the map is small next to the log
    /// it misses, and not for a short lag or a map too large to be worth it.
    #[test]
    fn a_follower_far_behind_gets_a_small_snapshot_instead_of_the_log() {
        let mib = 1 << 20;
        assert!(catch_up_snapshot_due(32 * mib, 1_000), "a new learner, a small map");
        assert!(!catch_up_snapshot_due(3 * mib, 1_000), "a short lag replays the log");
        assert!(!catch_up_snapshot_due(32 * mib, 9 * mib), "the map is more than a quarter of the lag");
        assert!(catch_up_snapshot_due(32 * mib, 8 * mib));
    }

    const MIB: u64 = 1 << 20;

    fn due(wal_mib: u64, max_log_mib: u64, snapshot_mib: u64, free_mib: Option<u64>) -> bool {
        let size =
            LogSize { wal_bytes: wal_mib * MIB, max_log_bytes: max_log_mib * MIB, snapshot_bytes: snapshot_mib * MIB };
        size.snapshot_due(|| free_mib.map(|m| m * MIB))
    }

    /// Goal: a small map is snapshotted at half the bound, as before; a larger one only
    /// once the log holds twice the last snapshot, so snapshots write at most half of
    /// what the log wrote, even past the bound while the disk has room for it.
    #[test]
    fn a_snapshot_waits_for_twice_its_size_of_log() {
        assert!(!due(31, 64, 0, Some(1000)));
        assert!(due(32, 64, 10, Some(1000)));
        assert!(!due(32, 64, 20, Some(1000)), "the log has not written twice the snapshot");
        assert!(due(40, 64, 20, Some(1000)));
        assert!(!due(64, 64, 40, Some(1000)), "past the bound while the disk has room");
        assert!(!due(100, 64, 60, Some(1000)));
        assert!(due(120, 64, 60, Some(1000)));
    }

    /// Goal: at the bound, a disk without room for the log to grow to twice the snapshot
    /// and for the next snapshot gets a snapshot now; an unknown free space counts as none.
    #[test]
    fn a_disk_short_of_room_holds_the_log_to_its_bound() {
        // Grow from 64 to 80 MiB, then 40 MiB for the next snapshot: 56 MiB needed.
        assert!(!due(64, 64, 40, Some(56)));
        assert!(due(64, 64, 40, Some(55)));
        assert!(due(64, 64, 40, None));
        assert!(!due(63, 64, 40, None), "below the bound the disk is not asked");
    }
}
