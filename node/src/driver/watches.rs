//! The driver's part in watches (see `baton_host::watch`, which decides what each
//! watcher gets): opening one for a client's stream, and delivering the host's batches
//! to each stream's queue.

use super::Driver;
use crate::frame::{ErrorCode, Response, WatchChange, WatchEnd, KEY_BYTES_MAX};
use crate::handoff::WatchSink;
use baton_host::watch::{Batch, End, Refusal, Sink, WatchId};
use std::collections::HashMap;

impl Driver {
    /// Entries from `from_index` on were discarded: the watches past them end.
    pub(super) fn end_watches_from(&mut self, from_index: u64) {
        let mut queues = WatchQueues { sinks: &mut self.watch_sinks, lag_entries: 0 };
        self.watchers.on_discarded(from_index, &mut queues);
    }

    /// A client's watch: opened, or refused with the reason.
    pub(super) fn open_watch(&mut self, prefix: Vec<u8>, from_index: u64, sink: WatchSink) {
        if self.host.is_witness(self.host.replica.id()) {
            let message = "this node is a witness: it holds no data to watch. Fix: watch a data node";
            let _ = sink.end.send(self.error(ErrorCode::Unsupported, message));
            return;
        }
        if prefix.len() > KEY_BYTES_MAX {
            let message = format!("a prefix of {} bytes is over the {KEY_BYTES_MAX}-byte key limit", prefix.len());
            let _ = sink.end.send(self.error(ErrorCode::TooLarge, message));
            return;
        }
        match self.watchers.open(prefix, from_index, self.host.kv.applied_index()) {
            Ok(id) => {
                self.watch_sinks.insert(id, sink);
                self.watch_turn_due = true;
            }
            Err(Refusal::TooMany { max }) => {
                let message =
                    format!("this node serves {max} watches, its limit. Fix: close one, or watch another node");
                let _ = sink.end.send(self.error(ErrorCode::TooManyWatchers, message));
            }
        }
    }

    /// Moves every watch on through the applied log (see `baton_host::watch`).
    pub(super) fn pump_watchers(&mut self) {
        if self.watchers.is_empty() || self.fatal.is_some() {
            self.watch_turn_due = false;
            return;
        }
        for (id, _) in self.watch_sinks.extract_if(|_, sink| sink.batches.is_closed()) {
            self.watchers.close(id); // The consumer went away.
        }
        let applied = self.host.kv.applied_index();
        let oldest = self.wal.first_index().unwrap_or(applied + 1);
        let lag_entries = self.host.replica.known_commit_index().saturating_sub(applied);
        let now = self.now();
        let (host, wal) = (&self.host, &self.wal);
        let log = |index: u64| host.entry(wal, index).map(|(term, payload)| (term, payload.into_owned()));
        let mut queues = WatchQueues { sinks: &mut self.watch_sinks, lag_entries };
        self.watchers.pump(now, applied, oldest, self.host.kv.changed(), &log, &mut queues);
        let has_room = |id: &WatchId| queues.has_room(*id);
        self.watch_turn_due = self.watchers.behind(applied).any(|id| has_room(&id));
    }
}

/// Where the watchers' batches go: each watch's queue to its stream.
struct WatchQueues<'a> {
    sinks: &'a mut HashMap<WatchId, WatchSink>,
    lag_entries: u64,
}

impl Sink for WatchQueues<'_> {
    fn has_room(&self, id: WatchId) -> bool {
        self.sinks.get(&id).is_some_and(|sink| sink.batches.capacity() > 0)
    }

    fn deliver(&mut self, id: WatchId, batch: Batch) -> bool {
        let Some(sink) = self.sinks.get(&id) else { return false };
        let changes = batch
            .changes
            .into_iter()
            .map(|change| WatchChange { index: change.index, term: change.term, key: change.key, value: change.value })
            .collect();
        let response =
            Response::WatchBatch { changes, through_index: batch.through_index, lag_entries: self.lag_entries };
        if sink.batches.try_send(response).is_ok() {
            return true;
        }
        self.sinks.remove(&id);
        false
    }

    fn end(&mut self, id: WatchId, end: End) {
        let Some(sink) = self.sinks.remove(&id) else { return };
        let end = match end {
            End::Compacted { next_index, oldest_index } => WatchEnd::Compacted { next_index, oldest_index },
            End::Discarded { from_index } => WatchEnd::Discarded { from_index },
        };
        tracing::info!(watch = id, %end, "ended a watch");
        let _ = sink.end.send(Response::WatchEnded { end });
    }
}
