//! The driver's part in snapshots: writing one when the host says it is due
//! (`baton_host::node::Host::snapshot_due`) and compacting the log after it, receiving
//! the leader's in chunks and installing it when the core decides to, the data-less one
//! a witness gets, and backups written and read for an operator. The files' work runs on
//! blocking threads and reports back through the loop's inputs.

use super::Driver;
use crate::frame::{ErrorCode, Response};
use crate::handoff::{Input, Received, SnapshotChunk};
use crate::kv::Kv;
use crate::storage::snapshot::{Contents, Snapshot, SnapshotDir};
use baton_common::{PersistSeq, Position, Role};
use baton_host::compaction::SnapshotReason;
use tokio::sync::oneshot;

impl Driver {
    /// A snapshot from the leader arrived whole and was checked (or not, `Err`): the
    /// core decides whether to install it.
    pub(super) fn on_snapshot_received(&mut self, received: Received, result: Result<Box<Snapshot>, String>) {
        let snapshot = match result {
            Ok(snapshot) => snapshot,
            Err(error) => return tracing::warn!(%error, "a received snapshot is unusable; the leader sends it again"),
        };
        // The snapshot's membership, or (a snapshot of a cluster whose membership never
        // changed) the one this node has at that point.
        let membership = match &snapshot.members {
            Some(record) => record.membership.clone(),
            None => self.host.records.at(received.snapshot.index).membership.clone(),
        };
        self.received = Some(snapshot);
        let now = self.now();
        self.host.replica.handle_snapshot_received(now, received.from, received.term, received.snapshot, membership);
        self.pump(None);
        if self.received.take().is_some() {
            // The core did not need it (this log already holds it).
            let _ = std::fs::remove_file(&received.path);
        }
    }

    pub(super) fn log_size(&self) -> baton_host::compaction::LogSize {
        baton_host::compaction::LogSize {
            wal_bytes: self.wal.bytes(),
            max_log_bytes: self.max_log_bytes,
            snapshot_bytes: self.snapshot_bytes,
        }
    }

    /// Takes a snapshot when the log has grown enough (see [`crate::compaction`]) and the core allows it:
    /// the map is cloned here (O(1)), then written, fsynced and installed (renamed) on a
    /// blocking thread; [`Driver::on_snapshot_written`] compacts the log after it.
    pub(super) fn maybe_compact(&mut self) {
        let Some(snapshots) = &self.snapshots else { return };
        if self.compacting {
            return;
        }
        let (size, wal) = (self.log_size(), &self.wal);
        let record_header_bytes = crate::storage::wal::RECORD_HEADER_BYTES;
        let disk_free_bytes = || crate::storage::free_bytes(wal.dir()).ok();
        let due = self.host.snapshot_due(wal, self.snapshot.index, size, record_header_bytes, disk_free_bytes);
        let Some((position, reason)) = due else { return };
        if let SnapshotReason::CatchUp { behind_entries, behind_bytes } = reason {
            // Logged once per snapshot taken, not at every check while one cannot start.
            tracing::info!(
                behind_entries,
                behind_bytes,
                "a follower is far behind: snapshotting so it gets the snapshot, not the log"
            );
        }
        let contents = self.host.kv.contents();
        let snapshots = snapshots.clone();
        let loopback = self.loopback.clone();
        self.compacting = true;
        tokio::task::spawn_blocking(move || {
            let result = snapshots
                .write_tmp(position, &contents)
                .and_then(|tmp| snapshots.install_if_newer(&tmp, position))
                .map_err(|e| e.to_string());
            let _ = loopback.blocking_send(Input::SnapshotWritten { position, result });
        });
    }

    /// Writes a backup of the map as of the applied index, on a blocking thread, and
    /// answers from there once it is on disk. Only the leader backs up, so a backup is as
    /// recent as the cluster's acknowledged writes allow.
    pub(super) fn backup(&mut self, reply: oneshot::Sender<Response>) {
        if self.host.replica.role() != Role::Leader {
            let _ = reply.send(self.error(ErrorCode::NotLeader, "backups are taken at the leader"));
            return;
        }
        let Some(snapshots) = self.snapshots.clone() else {
            let _ = reply.send(self.error(ErrorCode::Internal, "this node keeps no snapshots"));
            return;
        };
        let applied = self.host.kv.applied_index();
        let term = match applied {
            index if index == self.snapshot.index => Some(self.snapshot.term),
            index => self.entry(index).map(|(term, _)| term),
        };
        let Some(term) = term else {
            let _ = reply.send(self.error(ErrorCode::Internal, format!("entry {applied} is unreadable")));
            return;
        };
        let position = Position { index: applied, term };
        let contents = self.host.kv.contents();
        tokio::task::spawn_blocking(move || {
            let response = match snapshots.write_backup(position, &contents) {
                Ok(bytes) => Response::BackupReady { index: position.index, term: position.term, bytes },
                Err(error) => {
                    tracing::error!(%error, "cannot write a backup");
                    let message = format!("cannot write the backup: {error}");
                    Response::Error { code: ErrorCode::Internal, message, leader_hint: None }
                }
            };
            let _ = reply.send(response);
        });
    }

    pub(super) fn backup_chunk(&mut self, index: u64, offset: u64, reply: oneshot::Sender<Response>) {
        let Some(snapshots) = self.snapshots.clone() else {
            let _ = reply.send(self.error(ErrorCode::Internal, "this node keeps no snapshots"));
            return;
        };
        tokio::task::spawn_blocking(move || {
            let response = match snapshots.read_backup_chunk(index, offset, crate::frame::SNAPSHOT_CHUNK_BYTES) {
                Ok(Some(data)) => Response::BackupChunk { data },
                Ok(None) => Response::Error {
                    code: ErrorCode::Internal,
                    message: format!("the backup at index {index} was replaced by a newer one: start over"),
                    leader_hint: None,
                },
                Err(error) => Response::Error {
                    code: ErrorCode::Internal,
                    message: format!("cannot read the backup: {error}"),
                    leader_hint: None,
                },
            };
            let _ = reply.send(response);
        });
    }

    pub(super) fn on_snapshot_written(&mut self, position: Position, result: Result<Option<u64>, String>) {
        self.compacting = false;
        let bytes = match result {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%error, "cannot write a snapshot; the log keeps growing until one succeeds");
                return;
            }
        };
        let snapshots = self.snapshots.as_ref().expect("only written with a snapshot directory");
        // Installed from the leader since: that one is the node's snapshot.
        if position.index <= self.snapshot.index || snapshots.installed() != Some(position) {
            return;
        }
        self.snapshot_bytes = bytes;
        self.snapshot = position;
        self.snapshots_taken += 1;
        // The compactable index never falls (the core truncates only above its safe
        // index) and a committed entry stays: what was compactable when the snapshot
        // was taken still is, unless the leader's snapshot replaced the log (above).
        assert!(position.index <= self.host.replica.compactable_index(), "compactable when taken, compactable now");
        assert_eq!(self.wal.term_at(position.index), Some(position.term), "a committed entry stays");
        let detached = self.wal.detach_through(position.index);
        let now = self.now();
        self.host.compacted(now, position, self.wal.first_index().unwrap_or(position.index + 1));
        tracing::info!(
            index = position.index,
            bytes,
            removed = detached.entries,
            "took a snapshot and compacted the log"
        );
        // Deleting segments takes milliseconds on a busy disk; writes go on meanwhile.
        tokio::task::spawn_blocking(move || {
            if let Err(error) = detached.remove() {
                tracing::warn!(%error, "cannot delete compacted log segments; the first compaction after a restart does");
            }
        });
        self.pump(None);
    }

    pub(super) fn on_snapshot_chunk(&mut self, chunk: SnapshotChunk) {
        let Some(receiver) = self.receiver.as_mut() else { return };
        match receiver.accept(chunk) {
            Ok(None) => {}
            Ok(Some(received)) => {
                let loopback = self.loopback.clone();
                tokio::task::spawn_blocking(move || {
                    let result = std::fs::File::open(&received.path)
                        .and_then(|file| crate::storage::sync_all(&file))
                        .map_err(|e| format!("{}: {e}", received.path.display()))
                        .and_then(|()| crate::storage::snapshot::read(&received.path).map_err(|e| e.to_string()))
                        .and_then(|snapshot| {
                            if snapshot.position == received.snapshot {
                                Ok(Box::new(snapshot))
                            } else {
                                Err(format!("the file holds {:?}, not {:?}", snapshot.position, received.snapshot))
                            }
                        });
                    let _ = loopback.blocking_send(Input::SnapshotReceived { received, result });
                });
            }
            Err(error) => tracing::debug!(%error, "snapshot chunk refused"),
        }
    }

    /// The core decided to install the received snapshot: make it the node's state.
    pub(super) fn install_snapshot(&mut self, seq: PersistSeq, snapshot: Position) {
        let Some(received) = self.received.take() else {
            panic!("the core installs only a snapshot the host reported whole");
        };
        assert_eq!(received.position, snapshot, "the core installs what it was given");
        let snapshots = self.snapshots.as_ref().expect("snapshots arrive only with a snapshot directory");
        match snapshots.install(&snapshots.incoming_path(), snapshot) {
            Ok(bytes) => self.snapshot_bytes = bytes,
            Err(error) => return self.fatal_storage(error),
        }
        // Mirror the core: a log that holds the snapshot's last entry keeps what follows.
        let keeps_tail = self.wal.term_at(snapshot.index) == Some(snapshot.term);
        let stored = if keeps_tail { self.wal.compact_through(snapshot.index).map(|_| ()) } else { self.wal.reset() };
        if let Err(error) = stored.and_then(|()| self.wal.sync()) {
            return self.fatal_storage(error);
        }
        self.snapshot = snapshot;
        self.snapshots_installed += 1;
        let members = received.members.clone();
        self.host.installed(snapshot, received.into_kv(), members, keeps_tail);
        self.host.persistence.made_durable(seq); // Synced above, with the log.
        self.enforce_revocations();
        tracing::info!(
            index = snapshot.index,
            bytes = self.snapshot_bytes,
            keeps_tail,
            "installed the leader's snapshot"
        );
        self.serve_reads();
    }

    /// Rebuilds the map from the snapshot alone (the log is applied again on top).
    /// `false`: the snapshot could not be read, and the node stops.
    pub(super) fn rebuild_kv(&mut self) -> bool {
        self.host.kv = match self.snapshots.as_ref().map(SnapshotDir::load) {
            Some(Ok(Some(loaded))) => loaded.into_kv(),
            Some(Err(error)) => {
                self.fatal_storage(error);
                return false;
            }
            _ => Kv::default(),
        };
        self.enforce_revocations();
        true
    }

    /// Writes the snapshot a witness gets, unless written already for the installed
    /// snapshot's position: the same position and membership record, no data. Returns
    /// whether it is there to send.
    pub(super) fn write_witness_snapshot(&mut self) -> bool {
        let Some(snapshots) = &self.snapshots else { return false };
        if self.witness_snapshot_at == Some(self.snapshot) {
            return true;
        }
        let contents = Contents {
            map: Default::default(),
            sessions: Default::default(),
            revoked: Default::default(),
            members: Some(self.host.records.at(self.snapshot.index).clone()),
        };
        match snapshots.write_witness(self.snapshot, &contents) {
            Ok(_) => {
                self.witness_snapshot_at = Some(self.snapshot);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot write the witness's snapshot; the leader retries after its timeout");
                false
            }
        }
    }
}
