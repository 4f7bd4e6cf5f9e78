//! One node's host: the replication core with the client requests, the state machine
//! and the persistence sequencing around it. The tokio driver (`baton-node`) and the
//! simulator (`baton-suite`) each hold one [`Host`] per node and carry out what it
//! decides; neither decides for itself:
//! - a client write is appended (named by session number if it can be), held while
//!   leadership moves, or refused ([`Host::propose`], [`Host::release_held`]);
//! - a read is admitted at the index it must be served at, or refused, and served once
//!   that index is applied ([`Host::read`], [`Host::take_served_reads`]);
//! - committed entries are applied in order and the write waiting on each is answered
//!   ([`Host::apply_some`]); a step-down answers every waiting write "outcome unknown"
//!   ([`Host::on_stepped_down`]); requests that wait too long expire ([`Host::expire`]);
//! - which persistence request the next fsync covers, whether it runs inline, and what
//!   is durable ([`Persistence`]);
//! - what each of the core's outputs asks of the driver, with its consequences
//!   ([`Host::poll_work`], [`Work`]): a received membership record takes effect on
//!   append, a truncation below the applied index rebuilds the state machine, a
//!   step-down answers the waiting writes and stops snapshot sends, discarded writes are
//!   kept before the truncation that removes them.
//!
//! `W` carries a write's answer back and `R` a read's (channels in the node; write ids
//! and history stamps in the simulator).

use crate::apply::{apply_entry, Answer};
use crate::compaction::{LogSize, SnapshotReason};
use crate::held::{settled, HeldWrites};
use crate::kv::{Applied, Command, Kv};
use crate::leaders::{FollowerProgress, LeaderHistory};
use crate::members::MemberRecords;
use crate::reads::PendingReads;
use crate::recent::RecentEntries;
use crate::writes::PendingWrites;
use baton_common::{
    Event, HardState, Message, NodeId, Output, PersistSeq, Position, ProposeError, ReadError, Replica, Role,
};
use std::borrow::Cow;
use std::collections::VecDeque;

/// How long a client write or a waiting read may wait before it is answered with a
/// time-out (writes "outcome unknown": they may still commit), microseconds.
pub const REQUEST_TIMEOUT_US: u64 = 10_000_000;

/// A follower fsyncs inside its decision loop only while its recent fsyncs took less
/// than this (microseconds); slower, and the loop would stop answering heartbeats for
/// that long. A fifth of the default heartbeat interval: above a shared disk's
/// occasional 10-20 ms stalls, well under an SD card's slow erase.
pub const INLINE_FSYNC_RECENT_MAX_US: u64 = 20_000;

/// Where a read is served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAt {
    /// Linearizable: at the leader's read index, which needs a current lease.
    Leader,
    /// At or after this index (read-your-writes), on any node.
    After(u64),
    /// Whatever this node has applied.
    Any,
}

/// Why a read was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadRefusal {
    /// This node cannot serve it: a linearizable read on a node that does not lead or is
    /// not ready (see [`ReadError`]).
    Core(ReadError),
    /// This node is a witness: it holds no data to read.
    Witness,
}

/// What became of a proposed write.
pub enum Proposed<W> {
    /// Appended at `position`: the driver writes `command` to its log as persistence
    /// request `seq`. Its answer comes once the entry is applied (or leadership changes).
    Appended { seq: PersistSeq, position: Position, command: Command },
    /// Held until leadership settles (see [`crate::held`]).
    Held,
    /// Refused at once, for `error`.
    Refused { error: ProposeError, reply: W },
}

/// A read served: its key's value at `applied_index`, this node's applied index, with
/// how many committed entries this node knows it has not applied.
pub struct ServedRead<R> {
    pub reply: R,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub applied_index: u64,
    pub lag_entries: u64,
}

/// One committed entry applied, and the write answered by it, if one waited.
pub struct AppliedEntry<W> {
    pub index: u64,
    pub term: u64,
    pub applied: Applied,
    pub answered: Option<(W, Answer)>,
}

/// What one [`Host::apply_some`] applied; `missing`: the committed entry at that index
/// was not in the log (applying stops there until the next commit).
pub struct AppliedBatch<W> {
    pub entries: Vec<AppliedEntry<W>>,
    pub missing: Option<u64>,
}

/// Requests that waited too long: writes (answered "outcome unknown": they may still
/// commit) and reads (answered with a time-out), each with the index it waited on.
pub struct Expired<W, R> {
    pub writes: Vec<(u64, W)>,
    pub reads: Vec<(u64, R)>,
}

/// What the host asks its driver to do, in this order (see [`Host::poll_work`]).
#[derive(Debug)]
pub enum Work<W> {
    /// Send `message` to `to`. An append request carries its range's entries from the
    /// log; to a witness (`witness`), every payload but a membership record's is
    /// withheld (it gets positions, not data: see [`withheld_from_witness`]).
    Send { to: NodeId, message: Message, witness: bool },
    /// Make everything written so far durable, then store `hard_state`; then tell the
    /// host ([`Persistence::made_durable`]): votes and terms rely on this order.
    StoreHardState { seq: PersistSeq, hard_state: HardState },
    /// Cut the log back to before `from_index` (persistence request `seq`).
    Truncate { seq: PersistSeq, from_index: u64 },
    /// The state machine had applied entries the truncation just removed (async mode):
    /// load it again from the snapshot into [`Host::kv`]; applying resumes from there
    /// with what is committed and still in the log. Watches past `from_index` end.
    RebuildStateMachine { from_index: u64 },
    /// Append an entry (persistence request `seq`): `received` from the leader, or
    /// this new leader's no-op (an empty payload).
    Append { seq: PersistSeq, index: u64, term: u64, payload: Vec<u8>, received: bool },
    /// Install the snapshot the driver reported received, at `snapshot` (persistence
    /// request `seq`); then [`Host::installed`].
    InstallSnapshot { seq: PersistSeq, snapshot: Position },
    /// Send this node's snapshot to `to` (a data-less one to a witness).
    SendSnapshot { to: NodeId, term: u64, witness: bool },
    /// The members changed (a record appended or truncated away): links follow them.
    MembersChanged,
    /// Committed through `commit_index`: apply (see [`Host::apply_some`]).
    Commit { commit_index: u64 },
    /// Answer a client's write (a step-down's "outcome unknown").
    Answer { reply: W, answer: Answer },
    /// Stop every snapshot send (this node no longer leads).
    StopSnapshotSends,
    /// Async mode: entries `from_index..=to_index` (of `term`) are about to be
    /// discarded; keep a record of them first (the journal of discarded writes).
    KeepDiscarded { term: u64, from_index: u64, to_index: u64 },
    /// A replication event, for the log, the history and the status.
    Event(Event),
    /// Stop the node now, for `why` (its storage failed in a way it cannot see past):
    /// nothing more may be acknowledged; the process exits (70) and a restart
    /// recovers from what is durable. The host plans nothing after it.
    Stop { why: String },
}

/// Whether an entry's payload is withheld from a witness: everything but membership
/// records (it votes on positions and follows the membership; it stores no data).
pub fn withheld_from_witness(payload: &[u8]) -> bool {
    Command::member_record(payload).is_none()
}

/// The log as the host reads it: the driver's entry cache and WAL, the simulator's
/// simulated disk.
pub trait Entries {
    /// The entry at `index`: its term and payload.
    fn entry(&self, index: u64) -> Option<(u64, Cow<'_, [u8]>)>;
}

/// An fsync to start: it covers persistence requests up to `seq`. `inline`: run it in
/// the decision loop (a follower on a fast disk) rather than on a thread of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPlan {
    pub seq: PersistSeq,
    pub inline: bool,
}

/// Persistence sequencing: which persistence requests are written and not yet covered
/// by an fsync, whether an fsync runs, and which were made durable inline (a hard-state
/// write syncs everything before it).
#[derive(Default)]
pub struct Persistence {
    unsynced: Option<PersistSeq>,
    sync_in_flight: bool,
    durable: Option<PersistSeq>,
    /// A moving average of recent fsync times, microseconds (see [`fsync_recent_after`]).
    fsync_recent_us: u64,
}

impl Persistence {
    /// Persistence request `seq` is written and waits for an fsync.
    pub fn wrote(&mut self, seq: PersistSeq) {
        self.unsynced = Some(seq);
    }

    /// Persistence request `seq` (and everything before it) was made durable inline.
    pub fn made_durable(&mut self, seq: PersistSeq) {
        self.durable = Some(seq);
    }

    /// The fsync to start now, if one is due and none runs. `leading`: a leader's fsync
    /// overlaps the round trip to its followers (and writes arriving meanwhile join the
    /// next one: group commit), so it never runs inline; a follower's acknowledgement
    /// waits for nothing but its fsync, so it runs inline while the disk is fast.
    pub fn start_sync(&mut self, leading: bool) -> Option<SyncPlan> {
        if self.sync_in_flight {
            return None;
        }
        let seq = self.unsynced.take()?;
        let inline = !leading && self.fsync_recent_us < INLINE_FSYNC_RECENT_MAX_US;
        self.sync_in_flight = !inline;
        Some(SyncPlan { seq, inline })
    }

    /// The fsync to start now, if one is due and none runs, on a disk that always
    /// answers later (the simulator's): never inline.
    pub fn start_sync_deferred(&mut self) -> Option<PersistSeq> {
        self.start_sync(true).map(|plan| plan.seq)
    }

    /// The fsync started by [`Persistence::start_sync`] ended, after `elapsed_us`.
    pub fn sync_ended(&mut self, elapsed_us: u64) {
        self.sync_in_flight = false;
        self.fsync_recent_us = fsync_recent_after(self.fsync_recent_us, elapsed_us);
    }

    /// Whether an fsync runs on a thread of its own.
    pub fn sync_in_flight(&self) -> bool {
        self.sync_in_flight
    }

    fn take_durable(&mut self) -> Option<PersistSeq> {
        self.durable.take()
    }
}

/// The recent fsync time after one more fsync took `elapsed_us`: a moving average over
/// about the last 8 fsyncs, except that one slow fsync counts in full at once, so the
/// fsyncs after it leave the decision loop until the disk is fast again.
pub fn fsync_recent_after(recent_us: u64, elapsed_us: u64) -> u64 {
    elapsed_us.max((recent_us * 7 + elapsed_us) / 8)
}

/// One node's host (see the module's documentation).
pub struct Host<W, R> {
    /// The replication core: the driver feeds it messages and timeouts directly and
    /// carries out its outputs through this host.
    pub replica: Replica,
    /// The replicated state machine, applied from the log.
    pub kv: Kv,
    pub persistence: Persistence,
    writes: PendingWrites<W>,
    held: HeldWrites<(Command, W)>,
    reads: PendingReads<(Vec<u8>, R)>,
    /// The index the state machine is to be applied through.
    apply_target: u64,
    /// The membership records at the snapshot and in the log (see [`crate::members`]).
    pub records: MemberRecords,
    /// Work planned from the core's outputs, not yet handed to the driver.
    work: VecDeque<Work<W>>,
    /// Entries received from leaders, since the start.
    pub entries_received: u64,
    /// The node must stop: its storage failed ([`Host::sync_failed`]).
    stopped: bool,
    /// The most recent entries, in memory (see [`crate::recent`]).
    pub recent: RecentEntries,
    /// The leaders this node has seen, and on a leader how its followers move.
    pub leaders: LeaderHistory,
    pub progress: FollowerProgress,
    /// A shutting-down leader hands over until then (see [`Host::begin_handover`]).
    handover_until_us: Option<u64>,
}

/// How a shutting-down leader's handover ended (see [`Host::handover_over`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoverEnd {
    /// Another node leads now (or none yet, but not this one).
    HandedOver,
    /// No follower took over within an election timeout: stop as leader.
    TimedOut,
}

impl<W, R> Host<W, R> {
    pub fn new(replica: Replica, kv: Kv, records: MemberRecords) -> Host<W, R> {
        Host {
            replica,
            kv,
            records,
            work: VecDeque::new(),
            entries_received: 0,
            persistence: Persistence::default(),
            writes: PendingWrites::default(),
            held: HeldWrites::default(),
            reads: PendingReads::default(),
            apply_target: 0,
            stopped: false,
            recent: RecentEntries::default(),
            leaders: LeaderHistory::default(),
            progress: FollowerProgress::default(),
            handover_until_us: None,
        }
    }

    /// The entry at `index`: from the recent entries in memory, or else from `disk`.
    pub fn entry<'a>(&'a self, disk: &'a impl Entries, index: u64) -> Option<(u64, Cow<'a, [u8]>)> {
        self.recent.get(index).or_else(|| disk.entry(index))
    }

    /// The driver appended the entry at `index` to the log, at `now_us`: it joins the
    /// recent entries.
    pub fn appended(&mut self, now_us: u64, index: u64, term: u64, payload: Vec<u8>) {
        self.recent.push(now_us, index, term, payload);
    }

    /// The entries an append request to `to` carries, read from the recent entries or
    /// `disk`: to a witness, every payload but a membership record's is withheld (empty),
    /// and the bytes withheld are counted. `None`: an entry is gone (compacted, or
    /// unreadable); the core sends again.
    pub fn entries_for(&self, disk: &impl Entries, message: &Message, witness: bool) -> Option<(Vec<Vec<u8>>, u64)> {
        let Message::AppendRequest(request) = message else { return Some((Vec::new(), 0)) };
        let mut withheld_bytes = 0;
        let mut entries = Vec::with_capacity(request.entry_count as usize);
        for index in request.prev.index + 1..=request.last_index() {
            let (_, payload) = self.entry(disk, index)?;
            if witness && withheld_from_witness(&payload) {
                withheld_bytes += payload.len() as u64;
                entries.push(Vec::new());
            } else {
                entries.push(payload.into_owned());
            }
        }
        Some((entries, withheld_bytes))
    }

    /// Looks at how the followers move, at `now_us` (a leader's status tells a stalled
    /// follower from a slow one: [`FollowerProgress`]).
    pub fn track_followers(&mut self, now_us: u64) {
        let peers = self.is_leader().then(|| self.replica.peer_statuses());
        self.progress.track(now_us, peers);
    }

    /// Whether a snapshot is due now (see [`crate::compaction`]), and why: the applied
    /// state may be compacted past `snapshot_index` (the installed snapshot's), and the
    /// log has grown enough (`size`, with `disk_free_bytes` asked only when it must), or
    /// a data follower is so far behind that the snapshot is cheaper to send than the log.
    /// `record_header_bytes`: the log's bytes per entry beside the payload. Returns the
    /// position to snapshot at, read from the recent entries or `disk`.
    pub fn snapshot_due(
        &self,
        disk: &impl Entries,
        snapshot_index: u64,
        size: LogSize,
        record_header_bytes: u64,
        disk_free_bytes: impl FnOnce() -> Option<u64>,
    ) -> Option<(Position, SnapshotReason)> {
        let applied = self.kv.applied_index();
        if applied <= snapshot_index || applied > self.replica.compactable_index() {
            return None;
        }
        let reason = if size.snapshot_due(disk_free_bytes) {
            SnapshotReason::Routine
        } else {
            self.catch_up_snapshot_due(snapshot_index, record_header_bytes)?
        };
        let (term, _) = self.entry(disk, applied)?;
        Some((Position::new(term, applied), reason))
    }

    /// Whether this leader has a data follower so far behind in the log (and still
    /// served from it) that a snapshot is cheaper to send: the snapshot compacts the log,
    /// so the core sends that follower the snapshot, then the log after it.
    fn catch_up_snapshot_due(&self, snapshot_index: u64, record_header_bytes: u64) -> Option<SnapshotReason> {
        if !self.is_leader() {
            return None;
        }
        let behind_entries = self
            .replica
            .peer_statuses()
            .filter(|peer| peer.match_index >= snapshot_index && !self.is_witness(peer.id))
            .map(|peer| peer.lag_entries)
            .max()
            .unwrap_or(0);
        // Bytes of log per entry, from the recent entries (the log's size is no measure
        // right after a compaction: its oldest segment still holds compacted ones).
        let (cached_entries, cached_bytes) = self.recent.sizes(record_header_bytes);
        if behind_entries == 0 || cached_entries == 0 {
            return None;
        }
        let behind_bytes = (u128::from(cached_bytes) * u128::from(behind_entries) / u128::from(cached_entries)) as u64;
        crate::compaction::catch_up_snapshot_due(behind_bytes, self.kv.data_bytes())
            .then_some(SnapshotReason::CatchUp { behind_entries, behind_bytes })
    }

    /// A leader shutting down at `now_us` hands leadership to its best caught-up
    /// follower first, within an election timeout. `Ok`: the follower it hands over to
    /// (run until [`Host::handover_over`]); `Err`: it does not lead, or none can take
    /// over (why, in words), and stops at once.
    pub fn begin_handover(&mut self, now_us: u64) -> Result<NodeId, Option<Vec<String>>> {
        if !self.is_leader() {
            return Err(None);
        }
        let target = self
            .replica
            .handle_switchover(now_us, None, false)
            .map_err(|refused| Some(refused.reasons.iter().map(|reason| self.describe(reason)).collect()))?;
        self.handover_until_us = Some(now_us + self.replica.config().election_timeout_us);
        Ok(target)
    }

    /// Whether the handover begun by [`Host::begin_handover`] is over at `now_us`.
    pub fn handover_over(&self, now_us: u64) -> Option<HandoverEnd> {
        let until_us = self.handover_until_us?;
        if !self.is_leader() {
            Some(HandoverEnd::HandedOver)
        } else if now_us >= until_us {
            Some(HandoverEnd::TimedOut)
        } else {
            None
        }
    }

    fn is_leader(&self) -> bool {
        self.replica.role() == Role::Leader
    }

    /// Offers a client's write (arrived at `since_us`) to the core at `now_us`.
    pub fn propose(&mut self, now_us: u64, since_us: u64, command: Command, reply: W) -> Proposed<W> {
        match self.replica.handle_propose(now_us) {
            Ok(proposal) => {
                let position = proposal.position;
                // A session is named by number from the state this leader has applied,
                // which its log (and so every log holding this entry) starts with.
                let command = self.kv.name_session(command);
                self.writes.insert(position.index, position.term, since_us, reply);
                self.persistence.wrote(proposal.seq);
                Proposed::Appended { seq: proposal.seq, position, command }
            }
            Err(error) => match self.held.hold_or_refuse(&error, since_us, now_us, (command, reply)) {
                None => Proposed::Held,
                Some((_, reply)) => Proposed::Refused { error, reply },
            },
        }
    }

    /// The node appended an entry of its own at `position` (persistence request `seq`),
    /// outside [`Host::propose`] (a membership record); `reply` hears once it applies.
    pub fn appended_own(&mut self, position: Position, seq: PersistSeq, since_us: u64, reply: W) {
        self.writes.insert(position.index, position.term, since_us, reply);
        self.persistence.wrote(seq);
    }

    /// Proposes the held writes again once leadership has settled, or once the oldest
    /// has waited too long (see [`crate::held`]). A write held anew waits for the next
    /// call.
    pub fn release_held(&mut self, now_us: u64) -> Vec<Proposed<W>> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let released = self.held.take_released(settled(&self.replica), now_us);
        released
            .into_iter()
            .map(|(since_us, (command, reply))| self.propose(now_us, since_us, command, reply))
            .collect()
    }

    /// Every held write, to be refused: the node stops.
    pub fn take_held(&mut self) -> Vec<W> {
        self.held.take_all().into_iter().map(|(_, reply)| reply).collect()
    }

    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Admits a read of `key` at `now_us`, to be served once this node has applied the
    /// index it must be served at (see [`Host::take_served_reads`]), or refuses it.
    pub fn read(&mut self, now_us: u64, key: Vec<u8>, at: ReadAt, reply: R) -> Result<(), (ReadRefusal, R)> {
        let witness = self.replica.config().member(self.replica.id()).is_some_and(|m| m.witness);
        if witness && at != ReadAt::Leader {
            return Err((ReadRefusal::Witness, reply));
        }
        let index = match at {
            ReadAt::Any => 0,
            ReadAt::After(index) => index,
            ReadAt::Leader => match self.replica.read_index(now_us) {
                Ok(index) => index,
                Err(error) => return Err((ReadRefusal::Core(error), reply)),
            },
        };
        self.reads.insert(index, now_us, (key, reply));
        Ok(())
    }

    /// The reads this node may serve now, with their values.
    pub fn take_served_reads(&mut self) -> Vec<ServedRead<R>> {
        if self.reads.is_empty() {
            return Vec::new();
        }
        let applied_index = self.kv.applied_index();
        let lag_entries = self.replica.known_commit_index().saturating_sub(applied_index);
        let ready = self.reads.take_ready(applied_index);
        ready
            .into_iter()
            .map(|(key, reply)| {
                let value = self.kv.get(&key).map(<[u8]>::to_vec);
                ServedRead { reply, key, value, applied_index, lag_entries }
            })
            .collect()
    }

    /// The write waiting on the entry at `index`, if any.
    pub fn write_waiting_at(&self, index: u64) -> Option<&W> {
        self.writes.get(index)
    }

    /// The core committed through `commit_index`: apply that far.
    pub fn commit_through(&mut self, commit_index: u64) {
        self.apply_target = self.apply_target.max(commit_index);
    }

    /// The log was cut back to before `from_index` and the state machine rebuilt from
    /// the snapshot: apply again only what is committed and still in the log.
    pub fn rebuilt_before(&mut self, from_index: u64) {
        self.apply_target = self.replica.commit_index().min(from_index - 1);
    }

    /// Whether committed entries wait to be applied.
    pub fn apply_due(&self) -> bool {
        self.kv.applied_index() < self.apply_target
    }

    /// Applies up to `entries_max` committed entries from `log`, answering the write
    /// waiting on each (acknowledged only by a node still leading, in the entry's term).
    pub fn apply_some(&mut self, disk: &impl Entries, entries_max: u64) -> AppliedBatch<W> {
        let leading = self.is_leader();
        let recent = &self.recent;
        let entry = |index: u64| recent.get(index).or_else(|| disk.entry(index));
        let end = self.apply_target.min(self.kv.applied_index().saturating_add(entries_max));
        let mut batch = AppliedBatch { entries: Vec::new(), missing: None };
        while self.kv.applied_index() < end {
            let index = self.kv.applied_index() + 1;
            let Some((term, payload)) = entry(index) else {
                self.apply_target = self.kv.applied_index(); // Until the next commit.
                batch.missing = Some(index);
                break;
            };
            let (applied, answered) = apply_entry(&mut self.kv, &mut self.writes, index, term, &payload, leading);
            assert_eq!(self.kv.applied_index(), index, "the state machine follows the applied log");
            batch.entries.push(AppliedEntry { index, term, applied, answered });
        }
        batch
    }

    /// This node stepped down: every write still waiting may or may not commit under the
    /// next leader, and is answered "outcome unknown" now rather than at its time-out.
    pub fn on_stepped_down(&mut self) -> Vec<W> {
        self.writes.on_stepped_down()
    }

    /// Requests waiting longer than `timeout_us` at `now_us`.
    pub fn expire(&mut self, now_us: u64, timeout_us: u64) -> Expired<W, R> {
        let writes = self.writes.take_expired(now_us, timeout_us);
        let reads = self.reads.take_expired(now_us, timeout_us).into_iter().map(|(i, (_, r))| (i, r)).collect();
        Expired { writes, reads }
    }

    /// Tells the core what was made durable inline since the last call. Returns whether
    /// it told it anything (the core may then have more outputs).
    pub fn report_durable(&mut self, now_us: u64) -> bool {
        match self.persistence.take_durable() {
            Some(seq) => {
                self.replica.handle_persisted(now_us, seq);
                true
            }
            None => false,
        }
    }

    /// An fsync covering persistence requests up to `seq` ended after `elapsed_us`:
    /// tells the core.
    pub fn synced(&mut self, now_us: u64, seq: PersistSeq, elapsed_us: u64) {
        self.persistence.sync_ended(elapsed_us);
        self.replica.handle_persisted(now_us, seq);
    }

    /// The fsync covering persistence requests up to `seq` failed with `error`. The
    /// node stops ([`Work::Stop`]) rather than fsync again: the kernel may have dropped
    /// dirty pages it cannot name and marked them clean, so a second fsync could succeed
    /// without them (PostgreSQL's "fsyncgate", 2018) and the core would acknowledge
    /// entries and votes that are gone. A restart recovers from what is durable.
    pub fn sync_failed(&mut self, seq: PersistSeq, error: &str) {
        self.persistence.sync_ended(0);
        self.storage_failed(format!("making the log durable failed (requests through {seq}): {error}"));
    }

    /// A write to storage failed (a full disk, an I/O error): the node stops before it
    /// acknowledges anything more, whatever it had planned ([`Work::Stop`]).
    pub fn storage_failed(&mut self, why: String) {
        self.stopped = true;
        self.work.clear();
        self.work.push_back(Work::Stop { why });
    }

    /// Whether the host has asked its node to stop ([`Work::Stop`]).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The fsync to start now, if any (see [`Persistence::start_sync`]).
    pub fn start_sync(&mut self) -> Option<SyncPlan> {
        let leading = self.is_leader();
        self.persistence.start_sync(leading)
    }

    /// The index a snapshot taken now may cover: what is applied and the core allows to
    /// compact (never past what is committed everywhere it must be).
    pub fn snapshot_index(&self) -> u64 {
        self.kv.applied_index().min(self.replica.compactable_index())
    }

    /// A snapshot at `snapshot` is durable and the log before it gone; the log now
    /// starts at `first_index`: the core, the membership records and the state
    /// machine's record of which entries changed it forget what is before.
    pub fn compacted(&mut self, now_us: u64, snapshot: Position, first_index: u64) {
        self.records.compact_to(snapshot.index);
        self.kv.forget_changes_before(first_index);
        self.replica.handle_compacted(now_us, snapshot);
    }

    /// Whether `id` is a witness in the membership in effect.
    pub fn is_witness(&self, id: NodeId) -> bool {
        self.replica.config().member(id).is_some_and(|m| m.witness)
    }

    /// The next thing for the driver to do, planned from the core's outputs at
    /// `now_us`. `incoming`: the entries of the append request just handed to the core
    /// (the index before the first, and each one's payload), if one was.
    pub fn poll_work(&mut self, now_us: u64, incoming: Option<(u64, &[Vec<u8>])>) -> Option<Work<W>> {
        loop {
            if let Some(work) = self.work.pop_front() {
                return Some(work);
            }
            if self.stopped {
                return None;
            }
            let output = self.replica.poll_output()?;
            self.plan(now_us, output, incoming);
        }
    }

    fn plan(&mut self, now_us: u64, output: Output, incoming: Option<(u64, &[Vec<u8>])>) {
        match output {
            Output::Send { to, message } => {
                let witness = self.is_witness(to);
                self.work.push_back(Work::Send { to, message, witness });
            }
            Output::PersistHardState { seq, hard_state } => {
                self.work.push_back(Work::StoreHardState { seq, hard_state });
            }
            Output::TruncateLog { seq, from_index } => {
                self.persistence.wrote(seq);
                self.work.push_back(Work::Truncate { seq, from_index });
                self.recent.truncate_from(from_index);
                if self.records.truncate_from(from_index) {
                    self.work.push_back(Work::MembersChanged);
                }
                if self.kv.has_applied(from_index) {
                    // Async mode: this node had applied writes now discarded. The map is
                    // rebuilt from the snapshot so it never serves them again.
                    self.rebuilt_before(from_index);
                    self.work.push_back(Work::RebuildStateMachine { from_index });
                }
            }
            Output::AppendReceived { seq, first_index, last_index, term } => {
                let (prev, payloads) = incoming.expect("AppendReceived follows an append request");
                let mut members_changed = false;
                for index in first_index..=last_index {
                    let payload = payloads[(index - prev - 1) as usize].clone();
                    // A membership record is in effect as soon as it is in the log.
                    if let Some(record) = Command::member_record(&payload) {
                        if record.change.is_some() {
                            self.replica.handle_membership_appended(now_us, index, record.membership.clone());
                        }
                        self.records.push(index, record);
                        members_changed = true;
                    }
                    self.work.push_back(Work::Append { seq, index, term, payload, received: true });
                }
                if members_changed {
                    self.work.push_back(Work::MembersChanged);
                }
                self.entries_received += last_index - first_index + 1;
                self.persistence.wrote(seq);
            }
            Output::AppendNoop { seq, position } => {
                let (index, term) = (position.index, position.term);
                self.work.push_back(Work::Append { seq, index, term, payload: Vec::new(), received: false });
                self.persistence.wrote(seq);
            }
            Output::InstallSnapshot { seq, snapshot } => self.work.push_back(Work::InstallSnapshot { seq, snapshot }),
            Output::SendSnapshot { to, term } => {
                let witness = self.is_witness(to);
                self.work.push_back(Work::SendSnapshot { to, term, witness });
            }
            Output::Commit { commit_index } => {
                self.commit_through(commit_index);
                self.work.push_back(Work::Commit { commit_index });
            }
            Output::Event(event) => {
                self.leaders.on_event(now_us, self.replica.id(), &event);
                if let Event::Discarded { term, from_index, to_index } = event {
                    // The event comes before the truncation: the entries are still there.
                    self.work.push_back(Work::KeepDiscarded { term, from_index, to_index });
                }
                self.work.push_back(Work::Event(event));
                if let Event::SteppedDown { .. } = event {
                    self.work.push_back(Work::StopSnapshotSends);
                    for reply in self.writes.on_stepped_down() {
                        self.work.push_back(Work::Answer { reply, answer: Answer::OutcomeUnknown });
                    }
                }
            }
        }
    }

    /// The driver installed the snapshot at `snapshot` ([`Work::InstallSnapshot`]), whose
    /// state machine is `kv` and whose membership record, if it carries one, is `members`;
    /// `keeps_tail`: the log held the snapshot's last entry and keeps what follows. (The
    /// driver reports it durable when it is: [`Persistence::made_durable`].)
    pub fn installed(
        &mut self,
        snapshot: Position,
        kv: Kv,
        members: Option<crate::members::MemberRecord>,
        keeps_tail: bool,
    ) {
        self.kv = kv;
        // Apply from the snapshot on, only what the core holds committed: a node whose
        // log went another way (async mode) may have been told of a higher commit index
        // in the history the snapshot replaced.
        self.apply_target = self.replica.commit_index().max(snapshot.index);
        self.records.install(snapshot.index, members, keeps_tail);
        self.recent.installed(snapshot.index, keeps_tail);
        self.work.push_back(Work::MembersChanged);
    }
}

/// A one-voter cluster's host, as formed (for the host's unit tests).
#[cfg(test)]
pub(crate) fn one_voter_host<W, R>() -> Host<W, R> {
    use baton_common::{Config, Recovered, WriteMode};
    let record = crate::members::MemberRecord::formed(&[("n1".into(), "a:1".into())]);
    let config = Config {
        id: baton_common::NodeId(1),
        members: record.membership.members.clone(),
        mode: WriteMode::Quorum,
        heartbeat_interval_us: 100_000,
        election_timeout_us: 1_000_000,
        max_lag_entries: 100,
        snapshot_timeout_us: 3_000_000,
        seed: 1,
    };
    let replica = Replica::new(config, Recovered::empty(), 0);
    Host::new(replica, Kv::default(), MemberRecords::new(0, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slow_fsync_moves_fsyncs_off_the_loop_until_the_disk_is_fast_again() {
        let fast_us = 150;
        let mut recent_us = 0;
        for _ in 0..8 {
            recent_us = fsync_recent_after(recent_us, fast_us);
        }
        assert!(recent_us < INLINE_FSYNC_RECENT_MAX_US);
        // An SD card erasing: one fsync takes 300 ms.
        recent_us = fsync_recent_after(recent_us, 300_000);
        assert!(recent_us >= INLINE_FSYNC_RECENT_MAX_US);
        // The next few fast fsyncs still run on a thread of their own...
        let mut fast_fsyncs_until_inline = 0;
        while recent_us >= INLINE_FSYNC_RECENT_MAX_US {
            recent_us = fsync_recent_after(recent_us, fast_us);
            fast_fsyncs_until_inline += 1;
        }
        // ...about log(300/20)/log(8/7) of them, then the loop fsyncs inline again.
        assert!((15..=25).contains(&fast_fsyncs_until_inline), "{fast_fsyncs_until_inline}");
    }

    fn host() -> Host<&'static str, &'static str> {
        one_voter_host()
    }

    /// Goal: a node that installs a snapshot applies from it only what its core holds
    /// committed, not up to a commit index it heard in the history the snapshot replaced
    /// (the bug the simulator found; mutant 41).
    #[test]
    fn an_installed_snapshot_resets_what_is_to_be_applied() {
        let mut host = host();
        host.commit_through(100); // Heard in a history the snapshot replaces.
        assert!(host.apply_due());
        let snapshot = Position::new(3, 10);
        host.installed(snapshot, Kv::restore(10, Default::default()), None, false);
        assert!(!host.apply_due(), "nothing past the snapshot is known committed here");
        let batch = host.apply_some(&NoEntries, u64::MAX);
        assert!(batch.entries.is_empty() && batch.missing.is_none());
    }

    /// Goal: a truncation below the applied index asks for the state machine to be
    /// rebuilt, and applying resumes only from what is committed and still in the log.
    #[test]
    fn a_truncation_below_the_applied_index_rebuilds_and_holds_applying_back() {
        let mut host = host();
        let put = Command::Put { key: b"k".to_vec(), value: b"v".to_vec() }.encode();
        let log = OneEntry(put);
        host.commit_through(1);
        assert_eq!(host.apply_some(&log, u64::MAX).entries.len(), 1);
        host.plan(0, Output::TruncateLog { seq: 1, from_index: 1 }, None);
        let work: Vec<Work<&str>> = std::iter::from_fn(|| host.work.pop_front()).collect();
        assert!(matches!(work[0], Work::Truncate { seq: 1, from_index: 1 }));
        assert!(work.iter().any(|w| matches!(w, Work::RebuildStateMachine { from_index: 1 })));
        assert!(!host.apply_due(), "applying waits for the state machine's rebuild and a new commit");
    }

    struct NoEntries;
    impl Entries for NoEntries {
        fn entry(&self, _: u64) -> Option<(u64, Cow<'_, [u8]>)> {
            None
        }
    }

    struct OneEntry(Vec<u8>);
    impl Entries for OneEntry {
        fn entry(&self, index: u64) -> Option<(u64, Cow<'_, [u8]>)> {
            (index == 1).then_some((1, Cow::Borrowed(self.0.as_slice())))
        }
    }

    /// Rule: a failed fsync stops the node: the host plans `Work::Stop` and nothing
    /// after it (no fsync again, no acknowledgement), whatever it had planned before.
    #[test]
    fn a_failed_fsync_stops_the_node_and_plans_nothing_more() {
        let mut host = host();
        host.persistence.wrote(1);
        let plan = host.start_sync().expect("an fsync is due");
        host.persistence.wrote(2);
        host.sync_failed(plan.seq, "EIO");
        assert!(host.stopped());
        match host.poll_work(0, None) {
            Some(Work::Stop { why }) => assert!(why.contains("EIO"), "{why}"),
            other => panic!("expected a stop, got {other:?}"),
        }
        assert!(host.poll_work(0, None).is_none(), "nothing after the stop");
        host.replica.handle_timeout(10_000_000);
        assert!(host.poll_work(10_000_000, None).is_none(), "not even what the core says next");
    }

    #[test]
    fn one_fsync_runs_at_a_time_and_covers_the_latest_request() {
        let mut persistence = Persistence::default();
        assert_eq!(persistence.start_sync(true), None);
        persistence.wrote(1);
        persistence.wrote(2);
        assert_eq!(persistence.start_sync(true), Some(SyncPlan { seq: 2, inline: false }));
        persistence.wrote(3);
        assert_eq!(persistence.start_sync(true), None, "one fsync at a time");
        persistence.sync_ended(100);
        assert_eq!(persistence.start_sync(false), Some(SyncPlan { seq: 3, inline: true }));
        assert!(!persistence.sync_in_flight(), "an inline fsync ends before the loop goes on");
    }
}
