//! The driver's part in the log on disk: appending entries, fsyncing them when the host
//! plans it (inline, or on a blocking thread so one fsync covers every write made while
//! the previous one ran: group commit), reading entries back, and stopping the node when
//! storage fails.

use super::Driver;
use crate::handoff::Input;
use baton_common::PersistSeq;
use std::time::{Duration, Instant};

impl Driver {
    pub(super) fn on_synced(&mut self, seq: PersistSeq, result: Result<(), String>, elapsed: Duration) {
        self.fsync_latency.record(elapsed);
        let now = self.now();
        match result {
            // The host decides what a failed fsync means (it stops the node).
            Err(error) => self.host.sync_failed(seq, &error),
            Ok(()) => self.host.synced(now, seq, elapsed.as_micros() as u64),
        }
        self.pump(None);
    }

    /// Makes the log durable up to the latest persistence request, as the host plans it
    /// (`baton_host::node::Persistence`): a leader fsyncs on a blocking thread, so the
    /// fsync overlaps the round trip to the followers and writes arriving meanwhile join
    /// the next fsync (group commit). A follower fsyncs right here while its disk is
    /// fast (handing the fsync to another thread and back costs two thread wake-ups,
    /// which on a small machine take longer than the fsync), and on a blocking thread
    /// while its recent fsyncs were slow (an SD card busy erasing), so it keeps answering
    /// heartbeats and never looks dead while its disk is merely slow.
    pub(super) fn maybe_start_sync(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        let Some(plan) = self.host.start_sync() else { return };
        let seq = plan.seq;
        if plan.inline {
            let started = Instant::now();
            let result = self.wal.sync().map_err(|e| e.to_string());
            self.on_synced(seq, result, started.elapsed());
            return;
        }
        let handle = match self.wal.sync_handle() {
            Ok(handle) => handle,
            Err(error) => return self.fatal_storage(error),
        };
        let loopback = self.loopback.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = handle.sync().map_err(|e| e.to_string());
            let elapsed = started.elapsed();
            let _ = loopback.blocking_send(Input::Synced { seq, result, elapsed });
        });
    }

    /// `false`: the log could not take the entry, and the node stops.
    #[must_use]
    pub(super) fn append(&mut self, index: u64, term: u64, payload: Vec<u8>) -> bool {
        if let Err(error) = self.wal.append(index, term, &payload) {
            self.fatal_storage(error);
            return false;
        }
        let now = self.now();
        self.host.appended(now, index, term, payload);
        true
    }

    /// An entry's term and payload, from memory or disk.
    pub(super) fn entry(&self, index: u64) -> Option<(u64, Vec<u8>)> {
        self.host.entry(&self.wal, index).map(|(term, payload)| (term, payload.into_owned()))
    }

    /// Storage failed: the node stops (see `fatal`). Callers return at once.
    pub(super) fn fatal_storage(&mut self, error: crate::storage::StorageError) {
        tracing::error!(%error, "storage failed: stopping the node");
        self.stop(error.to_string());
    }
}
