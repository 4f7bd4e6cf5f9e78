//! The node's decision loop: one task that owns the replica, the log, the hard state and
//! the key-value map, feeds the replica every input with the time, and carries out its
//! outputs in order. Slow disk work runs on blocking threads: the leader's fsync (so one
//! fsync covers every write made while the previous one ran: group commit), snapshot
//! writes, and backups written and read for an operator.

mod members;

use crate::frame::{
    ErrorCode, Frame, Json, ReadMode, Request, Response, WatchChange, WatchEnd, KEY_BYTES_MAX, VALUE_BYTES_MAX,
};
use crate::handoff::{Input, LinkState, Outbound, ScanView, SnapshotChunk, TransportCounters, WatchSink};
use crate::kv::{Applied, Command, Kv};
use crate::membership::Directory;
use crate::status::{FollowerStatus, NodeStatus};
use crate::storage::hard_state::HardStateFile;
use crate::storage::snapshot::{Contents, Snapshot, SnapshotDir};
use crate::storage::wal::Wal;
use baton_common::{
    Event, Message, NodeId, PersistSeq, Position, ProposeError, ReadError, Replica, ReplicationState, Role,
};
use baton_host::apply::{Answer, NotApplied};
use baton_host::members::MemberRecords;
use baton_host::node::{withheld_from_witness, Entries, Host, Proposed, ReadAt, ReadRefusal, Work};
use baton_host::route::Route;
use baton_host::watch::{Batch, End, Refusal, Sink, WatchId, Watchers};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long a client write or a waiting read may wait before it is answered with a
/// timeout (`baton_host::node` decides what each is told).
const REQUEST_TIMEOUT: Duration = Duration::from_micros(baton_host::node::REQUEST_TIMEOUT_US);
/// Recent entries kept in memory so the leader ships fresh entries without reading disk.
const CACHE_ENTRIES_MAX: usize = 8_192;
/// How often pending requests are checked for time-outs.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);
/// Inputs handled back to back before the log is written, synced and sent on: bounds
/// how long one burst delays the first write in it.
const INPUT_BURST_MAX: usize = 256;

/// How a pending write is answered: when it arrived, and the channel to its client.
type WriteReply = (Instant, oneshot::Sender<Response>);

/// How a waiting read is answered: the channel to its client.
type ReadReply = oneshot::Sender<Response>;

struct CachedEntry {
    index: u64,
    term: u64,
    payload: Vec<u8>,
    appended_at: Instant,
}

pub struct Driver {
    /// The core with the client requests, the state machine and the persistence
    /// sequencing around it (`baton_host::node`): the decisions this loop carries out.
    host: Host<WriteReply, ReadReply>,
    wal: Wal,
    hard_state: HardStateFile,
    cache: VecDeque<CachedEntry>,
    /// The members as this node sees them, shared with the transport.
    membership: Directory,
    /// Starts and stops peer links as members come and go (none in unit setups).
    links: Option<crate::transport::Links>,
    outbound: Outbound,
    inputs: mpsc::Receiver<Input>,
    loopback: mpsc::Sender<Input>,
    started: Instant,
    dropped_frames: u64,
    counters: std::sync::Arc<TransportCounters>,
    history: VecDeque<crate::status::HistoryEntry>,
    last_leader: Option<NodeId>,
    /// Set while a shutting-down leader hands over.
    handover_deadline: Option<Instant>,
    /// `<data dir>/discarded/`: every discarded write (see `crate::discarded`).
    discarded_dir: std::path::PathBuf,
    discarded: Option<crate::discarded::Journal>,
    discarded_entries: u64,
    snapshots: Option<SnapshotDir>,
    /// The installed snapshot's position and size.
    snapshot: Position,
    snapshot_bytes: u64,
    /// Started with `--witness`: it must not run as a data member.
    started_as_witness: bool,
    /// The position of the data-less snapshot last written for witnesses.
    witness_snapshot_at: Option<Position>,
    /// Payload bytes kept from witnesses (they get positions, not data).
    witness_bytes_withheld: u64,
    /// A snapshot is taken once the log holds half of this, so it stays under it.
    max_log_bytes: u64,
    /// A local snapshot is being written.
    compacting: bool,
    sends: crate::transfer::Sends,
    link_states: std::collections::HashMap<NodeId, Arc<LinkState>>,
    /// The commit index links were last retired at (`retire_removed_links`); 0 makes
    /// the next pump look again.
    links_retired_through: u64,
    receiver: Option<crate::transfer::Receiver>,
    /// A received, checked snapshot waiting for the core's decision.
    received: Option<Box<Snapshot>>,
    snapshots_taken: u64,
    snapshots_installed: u64,
    /// Resent session writes answered with their first outcome instead of applied again.
    duplicate_writes: u64,
    revocations: crate::revocation::RevocationList,
    open_connections: Arc<crate::revocation::OpenConnections>,
    fsync_latency: crate::status::LatencyHistogram,
    /// Client writes acknowledged (as leader), and each one's time from arrival.
    writes_acknowledged: u64,
    write_ack_latency: crate::status::LatencyHistogram,
    /// On the leader: each follower's match index and when it last moved, so a status
    /// can tell a stalled follower (connected, behind, not moving) from a slow one.
    follower_progress: std::collections::HashMap<NodeId, (u64, Instant)>,
    /// Why the node must stop, once storage failed: from then on the driver carries out
    /// nothing (no reply, no send, no durability reported to the core) and `run` returns
    /// this to `main`, which exits.
    fatal: Option<String>,
    /// Watches served by this node (see `baton_host::watch`), and where each one's
    /// batches go.
    watchers: Watchers,
    watch_sinks: HashMap<WatchId, WatchSink>,
    /// A watcher has applied entries left and room for them: turn again at once.
    watch_turn_due: bool,
    /// Client requests this node forwarded to the leader, since it started.
    requests_forwarded: u64,
    /// Cascading learners (see `relay_via`): append requests this leader sent through
    /// an upstream, and those this node passed on as an upstream or could not.
    relays_sent: u64,
    frames_relayed: u64,
    relays_dropped: u64,
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

/// Committed entries applied per turn of the loop at most: a node that restarts with a
/// long log (hundreds of thousands of entries after its snapshot) applies it over many
/// turns, answering its leader between them, instead of being silent for the second or
/// two the whole log takes (a restarted node was out of the replication stream for as
/// long).
const APPLY_ENTRIES_PER_TURN_MAX: u64 = 2_048;

/// Leadership changes kept per node.
const HISTORY_ENTRIES_MAX: usize = 1_000;

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        replica: Replica,
        wal: Wal,
        hard_state: HardStateFile,
        membership: Directory,
        inputs: mpsc::Receiver<Input>,
        loopback: mpsc::Sender<Input>,
        started: Instant,
        counters: std::sync::Arc<TransportCounters>,
    ) -> Driver {
        Driver {
            host: Host::new(replica, Kv::default(), MemberRecords::new(0, membership.record())),
            wal,
            hard_state,
            cache: VecDeque::new(),
            membership,
            links: None,
            outbound: Outbound::new(),
            inputs,
            loopback,
            started,
            dropped_frames: 0,
            counters,
            history: VecDeque::new(),
            last_leader: None,
            handover_deadline: None,
            discarded_dir: std::path::PathBuf::new(),
            discarded: None,
            discarded_entries: 0,
            snapshots: None,
            snapshot: Position::ZERO,
            snapshot_bytes: 0,
            witness_snapshot_at: None,
            started_as_witness: false,
            witness_bytes_withheld: 0,
            max_log_bytes: u64::MAX,
            compacting: false,
            sends: crate::transfer::Sends::default(),
            link_states: std::collections::HashMap::new(),
            links_retired_through: 0,
            receiver: None,
            received: None,
            duplicate_writes: 0,
            revocations: crate::revocation::RevocationList::default(),
            open_connections: Arc::default(),
            snapshots_taken: 0,
            snapshots_installed: 0,
            fsync_latency: crate::status::LatencyHistogram::default(),
            writes_acknowledged: 0,
            write_ack_latency: crate::status::LatencyHistogram::default(),
            follower_progress: std::collections::HashMap::new(),
            fatal: None,
            watchers: Watchers::new(),
            watch_sinks: HashMap::new(),
            watch_turn_due: false,
            requests_forwarded: 0,
            relays_sent: 0,
            frames_relayed: 0,
            relays_dropped: 0,
        }
    }

    /// The node was started with `--witness`: the membership must hold it as a witness.
    pub fn started_as_witness(mut self, witness: bool) -> Driver {
        self.started_as_witness = witness;
        self.members_changed();
        self
    }

    /// Where snapshots live, the recovered one (with the map as of it), and the log bound.
    pub fn with_snapshots(mut self, snapshots: SnapshotDir, snapshot: Position, kv: Kv, max_log_bytes: u64) -> Driver {
        assert_eq!(kv.applied_index(), snapshot.index, "the map starts at the snapshot");
        self.snapshot_bytes = std::fs::metadata(snapshots.path()).map_or(0, |m| m.len());
        self.receiver = Some(crate::transfer::Receiver::new(snapshots.incoming_path()));
        self.snapshots = Some(snapshots);
        self.snapshot = snapshot;
        self.host.kv = kv;
        self.max_log_bytes = max_log_bytes;
        self
    }

    /// Where discarded writes are kept (under the data directory).
    /// The list this node's TLS verifiers refuse, and its open connections: both follow
    /// the state machine's revocations.
    pub fn with_revocations(
        mut self,
        list: crate::revocation::RevocationList,
        open: Arc<crate::revocation::OpenConnections>,
    ) -> Driver {
        self.revocations = list;
        self.open_connections = open;
        self.enforce_revocations();
        self
    }

    /// Makes the verifiers refuse what the state machine revoked, and closes the open
    /// connections of those certificates: a revocation takes effect on every node as
    /// soon as it applies there.
    fn enforce_revocations(&mut self) {
        let revoked = self.host.kv.revoked();
        self.revocations.replace(revoked);
        let closed = self.open_connections.close_revoked(revoked);
        if closed > 0 {
            tracing::warn!(closed, "closed connections of revoked certificates");
        }
    }

    pub fn with_discarded_dir(mut self, dir: std::path::PathBuf) -> Driver {
        self.discarded = Some(crate::discarded::Journal::open(&dir));
        self.discarded_dir = dir;
        self
    }

    /// Records the entries `from_index..=to_index` in the discarded-writes journal before
    /// they are truncated. If they cannot be recorded the node stops, loudly, before the
    /// truncation: a discarded write never disappears silently.
    fn keep_discarded(&mut self, from_index: u64, to_index: u64) {
        let mut writes = Vec::new();
        for index in from_index..=to_index {
            let Some((term, payload)) = self.entry(index) else { continue };
            writes.push(describe_discarded(index, term, &payload));
        }
        let recorded = writes.len() as u64;
        let Some(journal) = self.discarded.as_mut() else { return };
        if let Err(source) = journal.append(writes) {
            let path = self.discarded_dir.clone();
            // The truncation that follows this event is never carried out.
            return self.fatal_storage(crate::storage::StorageError::Io { path, source });
        }
        self.discarded_entries += recorded;
    }

    fn discarded_page(&self, since_index: u64, after_record: u64, limit: usize) -> crate::discarded::DiscardedPage {
        match &self.discarded {
            Some(journal) => journal.page(since_index, after_record, limit),
            None => crate::discarded::DiscardedPage::default(),
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Runs until every input sender is gone (shutdown), then makes everything durable.
    /// `Err`: storage failed and the node must stop (the message says what failed); the
    /// caller exits, nothing else is carried out.
    pub async fn run(mut self) -> Result<(), String> {
        self.pump(None);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        loop {
            let deadline = self.host.replica.poll_timeout().map(|at| self.started + Duration::from_micros(at));
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = self.inputs.recv() => {
                    let Some(input) = input else { break };
                    if !self.take_burst(input) {
                        break;
                    }
                }
                () = sleep => {
                    // Messages that queued up meanwhile go first (a heartbeat among them
                    // pushes an election deadline back), so a node that was busy never
                    // times out on a leader whose word is already waiting.
                    if let Ok(input) = self.inputs.try_recv() {
                        if !self.take_burst(input) {
                            break;
                        }
                    }
                    let now = self.now();
                    self.host.replica.handle_timeout(now);
                    self.pump(None);
                }
                // More to do (entries to apply, watches to move on): turn again, after
                // letting the transport's tasks run (on this one thread, a loop that never
                // waits would starve them: a node that replays a long log went silent).
                () = tokio::task::yield_now(), if self.watch_turn_due || self.apply_due() => {}
                _ = housekeeping.tick() => {
                    self.tend_members();
                    self.expire_requests();
                    self.maybe_compact();
                    self.track_follower_progress();
                }
            }
            if let Some(fatal) = self.fatal.take() {
                return Err(fatal);
            }
            self.release_held_writes();
            self.pump(None);
            self.maybe_start_sync();
            self.apply_some();
            self.pump_watchers();
            if let Some(deadline) = self.handover_deadline {
                if self.host.replica.role() != Role::Leader {
                    tracing::info!(leader = ?self.host.replica.leader().map(|id| self.membership.name_of(id)), "handed leadership over; stopping");
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!("no follower took over in time; stopping as leader");
                    break;
                }
            }
        }
        for (_, reply) in self.host.take_held() {
            let _ = reply.send(self.error(ErrorCode::NotLeader, "this node is stopping"));
        }
        if let Err(error) = self.wal.sync() {
            tracing::error!(%error, "final fsync failed");
        }
        if let Some(fatal) = self.fatal.take() {
            return Err(fatal);
        }
        tracing::info!("driver stopped; the log is durable");
        Ok(())
    }

    /// Handles `first` and every input already waiting behind it (up to
    /// `INPUT_BURST_MAX`), so a burst of writes goes to the followers as one append
    /// request and to the disk as one write and one fsync. Returns whether to keep running.
    fn take_burst(&mut self, first: Input) -> bool {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(input) = next.take() {
            taken += 1;
            if self.fatal.is_some() {
                return false;
            }
            match input {
                Input::Shutdown => {
                    if !self.begin_handover() {
                        return false;
                    }
                }
                input => self.handle(input),
            }
            if taken < INPUT_BURST_MAX {
                next = self.inputs.try_recv().ok();
            }
        }
        true
    }

    /// On shutdown: a leader starts a switchover to the best caught-up follower and keeps
    /// running until it is done (or an election timeout passes). Returns whether to keep
    /// running.
    fn begin_handover(&mut self) -> bool {
        if self.host.replica.role() != Role::Leader {
            return false;
        }
        let now = self.now();
        match self.host.replica.handle_switchover(now, None, false) {
            Ok(target) => {
                tracing::info!(
                    target = self.membership.name_of(target),
                    "shutting down: handing leadership over first"
                );
                let timeout = Duration::from_micros(self.host.replica.config().election_timeout_us);
                self.handover_deadline = Some(Instant::now() + timeout);
                self.pump(None);
                true
            }
            Err(refused) => {
                tracing::warn!(?refused, "shutting down as leader: no follower can take over");
                false
            }
        }
    }

    fn handle(&mut self, input: Input) {
        if self.fatal.is_some() {
            return;
        }
        let now = self.now();
        match input {
            Input::Peer { from, message, entries } => {
                let incoming = match message {
                    Message::AppendRequest(request) => Some(request.prev.index),
                    _ => None,
                };
                self.host.replica.handle_message(now, from, message);
                self.pump(incoming.map(|prev| (prev, entries.as_slice())));
            }
            Input::Client { request, operator, forwarded, reply } => {
                self.route_request(request, operator, forwarded, reply)
            }
            Input::Watch { prefix, from_index, sink } => self.open_watch(prefix, from_index, sink),
            Input::WatchRoom => {} // Every turn ends by moving the watches on.
            Input::Scan { reply } => {
                let _ = reply
                    .send(ScanView { map: self.host.kv.map().clone(), applied_index: self.host.kv.applied_index() });
            }
            Input::Shutdown => {}
            Input::SnapshotChunk(chunk) => self.on_snapshot_chunk(chunk),
            Input::Relay { from, to, message } => self.relay(from, to, message),
            Input::SnapshotReceived { received, result } => match result {
                Ok(snapshot) => {
                    // The snapshot's membership, or (a snapshot of a cluster whose
                    // membership never changed) the one this node has at that point.
                    let membership = match &snapshot.members {
                        Some(record) => record.membership.clone(),
                        None => self.host.records.at(received.snapshot.index).membership.clone(),
                    };
                    self.received = Some(snapshot);
                    self.host.replica.handle_snapshot_received(
                        now,
                        received.from,
                        received.term,
                        received.snapshot,
                        membership,
                    );
                    self.pump(None);
                    if self.received.take().is_some() {
                        // The core did not need it (this log already holds it).
                        let _ = std::fs::remove_file(&received.path);
                    }
                }
                Err(error) => tracing::warn!(%error, "a received snapshot is unusable; the leader sends it again"),
            },
            Input::SnapshotWritten { position, result } => self.on_snapshot_written(position, result),
            Input::Synced { seq, result, elapsed } => self.on_synced(seq, result, elapsed),
        }
    }

    fn on_synced(&mut self, seq: PersistSeq, result: Result<(), String>, elapsed: Duration) {
        self.fsync_latency.record(elapsed);
        let now = self.now();
        match result {
            // The host decides what a failed fsync means (it stops the node).
            Err(error) => self.host.sync_failed(seq, &error),
            Ok(()) => self.host.synced(now, seq, elapsed.as_micros() as u64),
        }
        self.pump(None);
    }

    /// Drains the replica's outputs, feeding back inline durability, until quiet.
    fn pump(&mut self, incoming: Option<(u64, &[Vec<u8>])>) {
        loop {
            let now = self.now();
            while let Some(work) = self.host.poll_work(now, incoming) {
                self.carry_out(work);
            }
            self.sync_removal_pending();
            self.retire_removed_links();
            let now = self.now();
            if self.fatal.is_some() || !self.host.report_durable(now) {
                break;
            }
        }
    }

    /// Storage failed: the node stops (see `fatal`). Callers return at once.
    fn fatal_storage(&mut self, error: crate::storage::StorageError) {
        tracing::error!(%error, "storage failed: stopping the node");
        self.stop(error.to_string());
    }

    /// The first reason to stop wins; the rest follow from it.
    fn stop(&mut self, why: String) {
        self.fatal.get_or_insert(why);
    }

    /// Carries out what the host planned (`baton_host::node::Work`); decides nothing.
    fn carry_out(&mut self, work: Work<WriteReply>) {
        if self.fatal.is_some() {
            return;
        }
        match work {
            Work::Send { to, message, witness } => {
                if let Some(upstream) = self.relay_via(to, &message) {
                    self.relays_sent += 1;
                    return self.send(upstream, Frame::Relay { to: to.0, message });
                }
                let mut entries = Vec::new();
                if let Message::AppendRequest(request) = message {
                    for index in request.prev.index + 1..=request.last_index() {
                        match self.entry(index) {
                            Some((_, payload)) if witness && withheld_from_witness(&payload) => {
                                self.witness_bytes_withheld += payload.len() as u64;
                                entries.push(Vec::new());
                            }
                            Some((_, payload)) => entries.push(payload),
                            None => return, // Compacted or damaged: the core will retry.
                        }
                    }
                }
                self.send(to, Frame::Replication { message, entries });
            }
            Work::StoreHardState { seq, hard_state } => {
                if let Err(error) = self.wal.sync().and_then(|()| self.hard_state.store(&hard_state)) {
                    return self.fatal_storage(error);
                }
                self.host.persistence.made_durable(seq);
            }
            Work::Truncate { from_index, .. } => {
                if let Err(error) = self.wal.truncate_from(from_index) {
                    return self.fatal_storage(error);
                }
                self.cache.retain(|e| e.index < from_index);
            }
            Work::RebuildStateMachine { from_index } => {
                let mut queues = WatchQueues { sinks: &mut self.watch_sinks, lag_entries: 0 };
                self.watchers.on_discarded(from_index, &mut queues);
                tracing::warn!(from_index, "rebuilding the key-value map without discarded writes");
                if self.rebuild_kv() {
                    self.apply_some();
                }
            }
            Work::Append { index, term, payload, .. } => {
                let _ = self.append(index, term, payload); // A failed append stops the node.
            }
            Work::InstallSnapshot { seq, snapshot } => self.install_snapshot(seq, snapshot),
            Work::SendSnapshot { to, term, witness } => {
                if witness && !self.write_witness_snapshot() {
                    return;
                }
                let (Some(snapshots), Some(link)) = (&self.snapshots, self.outbound.get(&to)) else { return };
                let resend_after = Duration::from_micros(self.host.replica.config().snapshot_timeout_us);
                let link_state = self.link_states.get(&to).map(|state| &**state);
                let now = self.now();
                let link = (link.clone(), link_state);
                if self.sends.start(to, term, self.snapshot, snapshots, link, now, resend_after, witness) {
                    tracing::info!(
                        to = self.membership.name_of(to),
                        index = self.snapshot.index,
                        "sending the snapshot"
                    );
                }
            }
            Work::MembersChanged => self.members_changed(),
            Work::Commit { .. } => self.apply_some(),
            Work::Answer { reply: (_, reply), answer } => {
                let _ = reply.send(response_to(answer));
            }
            Work::StopSnapshotSends => self.sends.stop_all(),
            Work::KeepDiscarded { term, from_index, to_index } => {
                tracing::warn!(
                    term,
                    from_index,
                    to_index,
                    "async mode: discarded entries that may have been acknowledged"
                );
                self.keep_discarded(from_index, to_index);
            }
            Work::Event(event) => self.on_event(event),
            Work::Stop { why } => {
                tracing::error!(%why, "stopping the node to protect acknowledged data");
                self.stop(why);
            }
        }
    }

    fn log_size(&self) -> crate::compaction::LogSize {
        crate::compaction::LogSize {
            wal_bytes: self.wal.bytes(),
            max_log_bytes: self.max_log_bytes,
            snapshot_bytes: self.snapshot_bytes,
        }
    }

    /// Takes a snapshot when the log has grown enough (see [`crate::compaction`]) and the core allows it:
    /// the map is cloned here (O(1)), then written, fsynced and installed (renamed) on a
    /// blocking thread; [`Driver::on_snapshot_written`] compacts the log after it.
    fn maybe_compact(&mut self) {
        let Some(snapshots) = &self.snapshots else { return };
        let applied = self.host.kv.applied_index();
        if self.compacting || applied <= self.snapshot.index || applied > self.host.replica.compactable_index() {
            return;
        }
        let routine = self.log_size().snapshot_due(|| crate::storage::free_bytes(self.wal.dir()).ok());
        let catch_up = if routine { None } else { self.catch_up_snapshot_due() };
        if !routine && catch_up.is_none() {
            return;
        }
        let Some((term, _)) = self.entry(applied) else { return };
        if let Some((behind_entries, behind_bytes)) = catch_up {
            // Logged once per snapshot taken, not at every check while one cannot start.
            tracing::info!(
                behind_entries,
                behind_bytes,
                "a follower is far behind: snapshotting so it gets the snapshot, not the log"
            );
        }
        let position = Position { index: applied, term };
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

    /// Whether this leader has a data follower so far behind in the log (and still
    /// served from it) that a snapshot is cheaper to send (see
    /// [`crate::compaction::catch_up_snapshot_due`]): how far behind, in entries and
    /// estimated bytes, if so. The snapshot compacts the log, so the core sends that
    /// follower the snapshot, then the log after it.
    fn catch_up_snapshot_due(&self) -> Option<(u64, u64)> {
        if self.host.replica.role() != Role::Leader {
            return None;
        }
        let behind_entries = self
            .host
            .replica
            .peer_statuses()
            .filter(|peer| peer.match_index >= self.snapshot.index && !self.host.is_witness(peer.id))
            .map(|peer| peer.lag_entries)
            .max()
            .unwrap_or(0);
        // Bytes of log per entry, from the recent entries in memory (the WAL's size is no
        // measure right after a compaction: its oldest segment still holds compacted ones).
        let record_bytes = crate::storage::wal::RECORD_HEADER_BYTES;
        let (cached_entries, cached_bytes) = self
            .cache
            .iter()
            .fold((0u64, 0u64), |(count, bytes), e| (count + 1, bytes + record_bytes + e.payload.len() as u64));
        if behind_entries == 0 || cached_entries == 0 {
            return None;
        }
        let behind_bytes = (u128::from(cached_bytes) * u128::from(behind_entries) / u128::from(cached_entries)) as u64;
        crate::compaction::catch_up_snapshot_due(behind_bytes, self.host.kv.data_bytes())
            .then_some((behind_entries, behind_bytes))
    }

    /// Writes a backup of the map as of the applied index, on a blocking thread, and
    /// answers from there once it is on disk. Only the leader backs up, so a backup is as
    /// recent as the cluster's acknowledged writes allow.
    fn backup(&mut self, reply: oneshot::Sender<Response>) {
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

    fn backup_chunk(&mut self, index: u64, offset: u64, reply: oneshot::Sender<Response>) {
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

    fn track_follower_progress(&mut self) {
        if self.host.replica.role() != Role::Leader {
            self.follower_progress.clear();
            return;
        }
        let now = Instant::now();
        for peer in self.host.replica.peer_statuses() {
            let entry = self.follower_progress.entry(peer.id).or_insert((peer.match_index, now));
            if entry.0 != peer.match_index || peer.lag_entries == 0 {
                *entry = (peer.match_index, now);
            }
        }
    }

    fn on_snapshot_written(&mut self, position: Position, result: Result<Option<u64>, String>) {
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

    fn on_snapshot_chunk(&mut self, chunk: SnapshotChunk) {
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
    fn install_snapshot(&mut self, seq: PersistSeq, snapshot: Position) {
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
        let stored = if keeps_tail {
            self.wal.compact_through(snapshot.index).map(|_| ())
        } else {
            self.cache.clear();
            self.wal.reset()
        };
        if let Err(error) = stored.and_then(|()| self.wal.sync()) {
            return self.fatal_storage(error);
        }
        self.cache.retain(|e| e.index > snapshot.index);
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
    fn rebuild_kv(&mut self) -> bool {
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

    /// `false`: the log could not take the entry, and the node stops.
    #[must_use]
    fn append(&mut self, index: u64, term: u64, payload: Vec<u8>) -> bool {
        if let Err(error) = self.wal.append(index, term, &payload) {
            self.fatal_storage(error);
            return false;
        }
        self.cache.push_back(CachedEntry { index, term, payload, appended_at: Instant::now() });
        while self.cache.len() > CACHE_ENTRIES_MAX {
            self.cache.pop_front();
        }
        true
    }

    /// Writes the snapshot a witness gets, unless written already for the installed
    /// snapshot's position: the same position and membership record, no data. Returns
    /// whether it is there to send.
    fn write_witness_snapshot(&mut self) -> bool {
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

    /// An entry's term and payload, from memory or disk.
    fn entry(&self, index: u64) -> Option<(u64, Vec<u8>)> {
        entry_in(&self.cache, &self.wal, index)
    }

    /// Answers a client's request here, or forwards it to the leader when it asked for
    /// that (see `baton_host::route`).
    fn route_request(&mut self, request: Request, operator: bool, forwarded: bool, reply: oneshot::Sender<Response>) {
        let (request, via_leader) = match request {
            Request::ViaLeader { request } if request.forwardable() => (*request, true),
            Request::ViaLeader { request } => (*request, false),
            request => (request, false),
        };
        let leading = self.host.replica.role() == Role::Leader;
        let link = |id: NodeId| self.link_states.get(&id).and_then(|state| state.connection());
        let leader = self.host.replica.leader().filter(|id| link(*id).is_some());
        match baton_host::route::route(via_leader, forwarded, leading, leader.map(|id| id.0)) {
            Route::Here => self.handle_request(request, operator, reply),
            Route::NoLeader => {
                let _ = reply.send(self.error(ErrorCode::NotLeader, "no leader to forward to: an election may be on"));
            }
            Route::Forward { leader } => {
                let leader = NodeId(leader);
                let Some(connection) = link(leader) else { unreachable!("filtered above") };
                self.requests_forwarded += 1;
                let name = self.membership.name_of(leader).to_string();
                tokio::spawn(crate::forward::forward(connection, name, request, reply));
            }
        }
    }

    /// A client's watch: opened, or refused with the reason.
    fn open_watch(&mut self, prefix: Vec<u8>, from_index: u64, sink: WatchSink) {
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
    fn pump_watchers(&mut self) {
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
        let (cache, wal) = (&self.cache, &self.wal);
        let log = |index: u64| entry_in(cache, wal, index);
        let mut queues = WatchQueues { sinks: &mut self.watch_sinks, lag_entries };
        self.watchers.pump(now, applied, oldest, self.host.kv.changed(), &log, &mut queues);
        let has_room = |id: &WatchId| queues.has_room(*id);
        self.watch_turn_due = self.watchers.behind(applied).any(|id| has_room(&id));
    }

    fn send(&mut self, to: NodeId, frame: Frame) {
        if let Some(link) = self.outbound.get(&to) {
            if link.try_send(frame).is_err() {
                // The link is down or saturated; the core retransmits what matters.
                self.dropped_frames += 1;
            }
        }
    }

    /// Whether committed entries wait to be applied (the loop turns again at once).
    fn apply_due(&self) -> bool {
        self.host.apply_due() && self.fatal.is_none()
    }

    fn apply_some(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        let log = DriverEntries { cache: &self.cache, wal: &self.wal };
        let batch = self.host.apply_some(&log, APPLY_ENTRIES_PER_TURN_MAX);
        if let Some(index) = batch.missing {
            tracing::error!(index, "a committed entry is missing from the log");
        }
        for entry in batch.entries {
            match entry.applied {
                Applied::Duplicate { .. } => self.duplicate_writes += 1,
                Applied::Revoked => self.enforce_revocations(),
                _ => {}
            }
            if let Some(((since, reply), answer)) = entry.answered {
                if answer.is_acknowledged() {
                    self.writes_acknowledged += 1;
                    self.write_ack_latency.record(since.elapsed());
                }
                let _ = reply.send(response_to(answer));
            }
        }
        self.serve_reads();
    }

    fn serve_reads(&mut self) {
        for read in self.host.take_served_reads() {
            let (value, applied_index, lag_entries) = (read.value, read.applied_index, read.lag_entries);
            let _ = read.reply.send(Response::Value { value, applied_index, lag_entries });
        }
    }

    fn record_leader(&mut self, term: u64, leader: NodeId, cause: Option<&str>) {
        let name = |id: NodeId| self.membership.name_of(id).to_string();
        if let Some(entry) = self.history.iter_mut().find(|e| e.term == term) {
            if cause.is_some() {
                entry.cause = cause.map(str::to_string);
            }
            return;
        }
        let entry = crate::status::HistoryEntry {
            term,
            at_unix_ms: unix_ms(),
            from: self.last_leader.filter(|previous| *previous != leader).map(name),
            to: Some(name(leader)),
            cause: cause.map(str::to_string),
            discarded_entries: 0,
        };
        self.history.push_back(entry);
        while self.history.len() > HISTORY_ENTRIES_MAX {
            self.history.pop_front();
        }
        self.last_leader = Some(leader);
    }

    fn on_event(&mut self, event: Event) {
        tracing::info!(?event, "replication event");
        match event {
            Event::BecameLeader { term, cause } => {
                let cause = match cause {
                    baton_common::ElectionCause::Timeout => "timeout",
                    baton_common::ElectionCause::Switchover => "switchover",
                    baton_common::ElectionCause::Manual => "manual",
                };
                let me = self.membership.me();
                self.record_leader(term, me, Some(cause));
            }
            Event::BecameFollower { term, leader: Some(leader) } => {
                self.record_leader(term, leader, None);
                if !self.outbound.contains_key(&leader) && leader != self.membership.me() {
                    self.members_changed(); // A leader this node has no link to yet.
                }
            }
            Event::Discarded { from_index, to_index, .. } => {
                if let Some(entry) = self.history.back_mut() {
                    entry.discarded_entries += to_index - from_index + 1;
                }
            }
            _ => {}
        }
    }

    fn leader_hint(&self) -> Option<String> {
        self.host.replica.leader().and_then(|id| self.membership.addr_of(id)).map(|addr| addr.to_string())
    }

    fn error(&self, code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error { code, message: message.into(), leader_hint: self.leader_hint() }
    }

    fn handle_request(&mut self, request: Request, operator: bool, reply: oneshot::Sender<Response>) {
        if operator_only(&request) && !operator {
            let _ = reply.send(self.error(ErrorCode::Forbidden, "operators only: use an operator certificate"));
            return;
        }
        let now = self.now();
        let command = match request {
            Request::History => {
                let _ = reply.send(Response::History(Json(self.history.iter().cloned().collect())));
                return;
            }
            Request::Discarded => {
                // The first page: older clients ask for the whole journal in one answer.
                let writes = self.discarded_page(0, 0, crate::discarded::PAGE_RECORDS_MAX).writes;
                let _ = reply.send(Response::Discarded(Json(writes)));
                return;
            }
            Request::DiscardedPage { since_index, after_record, limit } => {
                let page = self.discarded_page(since_index, after_record, limit as usize);
                let _ = reply.send(Response::DiscardedPage(Json(page)));
                return;
            }
            Request::Switchover { to, dry_run } => {
                let response = self.switchover(now, to, dry_run);
                let _ = reply.send(response);
                self.pump(None);
                return;
            }
            Request::Campaign { dry_run } => {
                let response = match self.host.replica.handle_campaign(now, dry_run) {
                    Ok(()) => Response::Campaign { accepted: true, reason: None },
                    Err(refusal) => Response::Campaign { accepted: false, reason: Some(self.host.describe(&refusal)) },
                };
                let _ = reply.send(response);
                self.pump(None);
                return;
            }
            Request::SetPaused { paused } => {
                let response = match self.host.replica.handle_set_paused(now, paused) {
                    Ok(()) => Response::Done,
                    // No live leader to replicate a resume: resume this node alone.
                    Err(_) if !paused => match self.host.replica.handle_local_resume(now) {
                        Ok(()) => Response::Done,
                        Err(refusal) => {
                            let age_ms = match refusal {
                                baton_common::Refusal::LeaderReachable { last_contact_age_us } => {
                                    last_contact_age_us / 1000
                                }
                                _ => 0,
                            };
                            let message = format!("the leader was heard from {age_ms} ms ago: resume goes through it");
                            self.error(ErrorCode::NotLeader, message)
                        }
                    },
                    Err(_) => self.error(ErrorCode::NotLeader, "pausing goes through the leader"),
                };
                let _ = reply.send(response);
                self.pump(None);
                return;
            }
            Request::Status => {
                let _ = reply.send(Response::Status(Json(Box::new(self.status()))));
                return;
            }
            Request::ViaLeader { request } => return self.handle_request(*request, operator, reply),
            Request::Watch { .. } | Request::Scan { .. } => {
                let _ = reply.send(self.error(ErrorCode::Unsupported, "a watch or a scan takes a stream of its own"));
                return;
            }
            Request::Members => {
                let _ = reply.send(Response::Members(Json(self.members_view())));
                return;
            }
            Request::ChangeMembers { change, dry_run } => {
                self.change_members(now, change, dry_run, reply);
                self.pump(None);
                return;
            }
            Request::Backup => return self.backup(reply),
            Request::BackupChunk { index, offset } => return self.backup_chunk(index, offset, reply),
            Request::Get { key, read } => return self.read(key, read, reply),
            Request::Put { key, value } => Command::Put { key, value },
            Request::Delete { key } => Command::Delete { key },
            Request::Cas { key, expected, new } => Command::Cas { key, expected, new },
            Request::Revoke { fingerprint, holder } => Command::Revoke { fingerprint, holder },
            Request::Session { id, seq, acked_seq, write } => {
                let write = match *write {
                    Request::Put { key, value } => Command::Put { key, value },
                    Request::Delete { key } => Command::Delete { key },
                    Request::Cas { key, expected, new } => Command::Cas { key, expected, new },
                    other => {
                        let message = format!("only a put, delete or compare-and-set goes in a session, not {other:?}");
                        let _ = reply.send(self.error(ErrorCode::Unsupported, message));
                        return;
                    }
                };
                // The leader's clock goes into the log, so every replica expires
                // sessions at the same entry. Named by number, if it can be, when it is
                // appended (`propose`).
                Command::SessionById { id, seq, acked_seq, at_ms: unix_ms(), write: Box::new(write) }
            }
        };
        if let Some(problem) = oversized(&command) {
            let _ = reply.send(self.error(ErrorCode::TooLarge, problem));
            return;
        }
        self.propose(Instant::now(), command, reply);
    }

    /// Appends a client's write, holds it while leadership is moving, or refuses it
    /// (`baton_host::node` decides).
    fn propose(&mut self, since: Instant, command: Command, reply: oneshot::Sender<Response>) {
        let now = self.now();
        let since_us = since.saturating_duration_since(self.started).as_micros() as u64;
        let proposed = self.host.propose(now, since_us, command, (since, reply));
        self.carry_out_proposal(proposed);
    }

    fn carry_out_proposal(&mut self, proposed: Proposed<WriteReply>) {
        match proposed {
            Proposed::Appended { position, command, .. } => {
                // No pump here: the run loop pumps once per burst of inputs, so the
                // burst's writes leave in one append request per follower. A failed
                // append stops the node; its client hears the connection close.
                let _ = self.append(position.index, position.term, command.encode());
            }
            Proposed::Held => {}
            Proposed::Refused { error, reply: (_, reply) } => {
                let response = match error {
                    ProposeError::NotLeader { .. } => self.error(ErrorCode::NotLeader, "not the leader"),
                    ProposeError::TransferInProgress => {
                        self.error(ErrorCode::TransferInProgress, "a switchover is in progress; retry shortly")
                    }
                    ProposeError::NotEnoughInSync { have, need } => self.error(
                        ErrorCode::NotEnoughInSync,
                        format!("not enough in-sync replicas (have {have}, need {need})"),
                    ),
                    ProposeError::LogFull => self.error(ErrorCode::Internal, "the log's term table is full"),
                };
                let _ = reply.send(response);
            }
        }
    }

    /// Gives held writes another go once leadership has settled, or once the oldest has
    /// waited too long (`baton_host::held` decides).
    fn release_held_writes(&mut self) {
        let now = self.now();
        for proposed in self.host.release_held(now) {
            self.carry_out_proposal(proposed);
        }
    }

    fn switchover(&mut self, now: u64, to: Option<String>, dry_run: bool) -> Response {
        let target = match to.as_deref().map(|name| self.membership.id_of(name)) {
            Some(None) => {
                let name = to.unwrap_or_default();
                return Response::Switchover {
                    target: Some(name.clone()),
                    reasons: vec![format!("{name} is not a member")],
                    started: false,
                };
            }
            Some(Some(id)) => Some(id),
            None => None,
        };
        match self.host.replica.handle_switchover(now, target, dry_run) {
            Ok(id) => {
                Response::Switchover { target: Some(self.membership.name_of(id)), reasons: vec![], started: !dry_run }
            }
            Err(refused) if matches!(refused.reasons.first(), Some(baton_common::Refusal::NotLeader { .. })) => {
                self.error(ErrorCode::NotLeader, "switchovers go through the leader")
            }
            Err(refused) => Response::Switchover {
                target: refused.target.map(|id| self.membership.name_of(id)),
                reasons: refused.reasons.iter().map(|r| self.host.describe(r)).collect(),
                started: false,
            },
        }
    }

    fn read(&mut self, key: Vec<u8>, mode: ReadMode, reply: oneshot::Sender<Response>) {
        let at = match mode {
            ReadMode::Any => ReadAt::Any,
            ReadMode::After(index) => ReadAt::After(index),
            ReadMode::Leader => ReadAt::Leader,
        };
        let now = self.now();
        if let Err((refusal, reply)) = self.host.read(now, key, at, reply) {
            let response = match refusal {
                ReadRefusal::Witness => self.error(
                    ErrorCode::Unsupported,
                    "this node is a witness: it votes but holds no data. Fix: read from a data node",
                ),
                ReadRefusal::Core(ReadError::NotLeader { .. }) => {
                    self.error(ErrorCode::NotLeader, "linearizable reads go to the leader")
                }
                ReadRefusal::Core(ReadError::NotReady) => {
                    self.error(ErrorCode::NotReady, "the leader is not ready to serve reads yet")
                }
            };
            let _ = reply.send(response);
            return;
        }
        self.serve_reads();
    }

    fn expire_requests(&mut self) {
        let expired = self.host.expire(self.now(), REQUEST_TIMEOUT.as_micros() as u64);
        for (index, (_, reply)) in expired.writes {
            let _ = reply.send(self.error(
                ErrorCode::OutcomeUnknown,
                format!("write at index {index} not acknowledged within {REQUEST_TIMEOUT:?}; it may still apply"),
            ));
        }
        for (index, reply) in expired.reads {
            let message = format!("this node had not applied index {index} within {REQUEST_TIMEOUT:?}");
            let _ = reply.send(self.error(ErrorCode::Timeout, message));
        }
    }

    /// Makes the log durable up to the latest persistence request, as the host plans it
    /// (`baton_host::node::Persistence`): a leader fsyncs on a blocking thread, so the
    /// fsync overlaps the round trip to the followers and writes arriving meanwhile join
    /// the next fsync (group commit). A follower fsyncs right here while its disk is
    /// fast (handing the fsync to another thread and back costs two thread wake-ups,
    /// which on a small machine take longer than the fsync), and on a blocking thread
    /// while its recent fsyncs were slow (an SD card busy erasing), so it keeps answering
    /// heartbeats and never looks dead while its disk is merely slow.
    fn maybe_start_sync(&mut self) {
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

    fn status(&self) -> NodeStatus {
        let status = self.host.replica.status();
        let watch = self.watchers.counters();
        let name = |id: NodeId| self.membership.name_of(id).to_string();
        let followers = self
            .host
            .replica
            .peer_statuses()
            .map(|peer| {
                // The entry it lacks longest, or, if that is older than the cache, the
                // cache's oldest (a lower bound).
                let oldest_missing = self.cache.iter().find(|e| e.index == peer.match_index + 1).or(self.cache.front());
                let lag_bytes = if peer.lag_entries == 0 {
                    0
                } else {
                    self.cache
                        .iter()
                        .rev()
                        .take_while(|e| e.index > peer.match_index)
                        .map(|e| e.payload.len() as u64)
                        .sum()
                };
                FollowerStatus {
                    id: name(peer.id),
                    addr: self.membership.addr_of(peer.id).map(|a| a.to_string()).unwrap_or_default(),
                    match_index: peer.match_index,
                    lag_entries: peer.lag_entries,
                    lag_bytes,
                    stuck_ms: self.follower_progress.get(&peer.id).map_or(0, |(_, at)| at.elapsed().as_millis() as u64),
                    snapshot_percent: (peer.state == ReplicationState::Snapshot)
                        .then(|| self.sends.progress_percent(peer.id))
                        .flatten(),
                    lag_ms: if peer.lag_entries == 0 {
                        0
                    } else {
                        oldest_missing.map_or(0, |e| e.appended_at.elapsed().as_millis() as u64)
                    },
                    last_ack_age_ms: peer.last_ack_age_us.map(|us| us / 1000),
                    in_sync: peer.in_sync,
                    state: match peer.state {
                        ReplicationState::Probe => "probe",
                        ReplicationState::Replicate => "replicate",
                        ReplicationState::Snapshot => "snapshot",
                    }
                    .into(),
                }
            })
            .collect::<Vec<FollowerStatus>>();
        let is_leader = status.role == Role::Leader;
        let best_follower_match = followers.iter().map(|f| f.match_index).max().unwrap_or(status.last.index);
        let failover_loss_entries = if is_leader && self.host.replica.config().mode == baton_common::WriteMode::Async {
            status.commit_index.saturating_sub(best_follower_match)
        } else {
            0
        };
        NodeStatus {
            snapshot_bytes: self.snapshot_bytes,
            snapshots_taken: self.snapshots_taken,
            snapshots_installed: self.snapshots_installed,
            sessions: self.host.kv.sessions().len() as u64,
            duplicate_writes: self.duplicate_writes,
            snapshot_receiving_percent: self.receiver.as_ref().and_then(crate::transfer::Receiver::progress_percent),
            max_log_bytes: self.max_log_bytes,
            failover_safe: is_leader.then_some(failover_loss_entries == 0),
            failover_loss_entries,
            fsync_latency: self.fsync_latency.clone(),
            certificate_not_after_unix_s: crate::tls::certificate_not_after_unix_s(),
            clock_behind_accepts: crate::tls::clock_behind_accepts(),
            clock_unix_ms: unix_ms(),
            revoked_certificates: self
                .host
                .kv
                .revoked()
                .iter()
                .map(|(fingerprint, holder)| format!("{holder} {}", crate::revocation::hex(fingerprint)))
                .collect(),
            watchers: self.watchers.len() as u64,
            watches_opened: watch.opened,
            watches_refused: watch.refused,
            watches_ended: watch.ended_compacted + watch.ended_discarded,
            watch_changes_sent: watch.changes_delivered,
            requests_forwarded: self.requests_forwarded,
            relays_sent: self.relays_sent,
            frames_relayed: self.frames_relayed,
            relays_dropped: self.relays_dropped,
            writes_acknowledged: self.writes_acknowledged,
            write_ack_latency: self.write_ack_latency.clone(),
            id: self.membership.my_name().to_string(),
            membership_role: {
                let me = self.membership.me();
                let membership = &self.host.records.current().membership;
                match membership.member(me) {
                    Some(member) if member.witness => "witness",
                    Some(member) if member.voter => "voter",
                    Some(_) => "learner",
                    None if membership.is_removed(me) => "removed",
                    None => "not yet a member",
                }
                .into()
            },
            version: env!("CARGO_PKG_VERSION").to_string(),
            addr: self.membership.addr_of(self.membership.me()).map(|a| a.to_string()).unwrap_or_default(),
            role: match status.role {
                Role::Follower => "follower",
                Role::PreCandidate => "pre-candidate",
                Role::Candidate => "candidate",
                Role::Leader => "leader",
            }
            .into(),
            term: status.term,
            leader: status.leader.map(name),
            mode: self.host.replica.config().mode.to_string(),
            last_index: status.last.index,
            last_term: status.last.term,
            commit_index: status.commit_index,
            applied_index: self.host.kv.applied_index(),
            durable_index: status.durable_index,
            snapshot_index: status.snapshot.index,
            paused: status.paused,
            followers,
            entries_received: self.host.entries_received,
            wal_bytes: self.wal.bytes(),
            handshakes_refused: self.counters.handshakes_refused.load(std::sync::atomic::Ordering::Relaxed),
            hellos_refused: self.counters.hellos_refused.load(std::sync::atomic::Ordering::Relaxed),
            malformed_frames: self.counters.malformed_frames.load(std::sync::atomic::Ordering::Relaxed),
            frames_dropped: self.dropped_frames,
            discarded_entries: self.discarded_entries,
            disk_free_bytes: crate::storage::free_bytes(self.wal.dir()).ok(),
            cost: crate::cost::ProcessCost::now(),
            keys: self.host.kv.len() as u64,
            data_bytes: self.host.kv.data_bytes(),
            members: {
                let record = self.host.records.current();
                record
                    .membership
                    .members
                    .iter()
                    .map(|member| crate::status::MemberAddr {
                        id: self.membership.name_of(member.id),
                        addr: record.addr_of(member.id).unwrap_or_default().to_string(),
                        role: match (member.witness, member.voter) {
                            (true, _) => "witness",
                            (false, true) => "voter",
                            (false, false) => "learner",
                        }
                        .into(),
                        node_id: member.id.0,
                        priority: member.priority,
                        upstream: record
                            .entry(member.id)
                            .and_then(|e| e.upstream)
                            .map_or_else(String::new, |up| self.membership.name_of(NodeId(up))),
                    })
                    .collect()
            },
        }
    }
}

/// The log as the host reads it: the cache of recent entries, then the log on disk.
struct DriverEntries<'a> {
    cache: &'a VecDeque<CachedEntry>,
    wal: &'a Wal,
}

impl Entries for DriverEntries<'_> {
    fn entry(&self, index: u64) -> Option<(u64, Cow<'_, [u8]>)> {
        if let Some(first) = self.cache.front() {
            if index >= first.index {
                let cached = self.cache.get((index - first.index) as usize)?;
                debug_assert_eq!(cached.index, index);
                return Some((cached.term, Cow::Borrowed(&cached.payload)));
            }
        }
        entry_in(self.cache, self.wal, index).map(|(term, payload)| (term, Cow::Owned(payload)))
    }
}

/// An entry's term and payload, from the cache of recent entries or the log on disk.
fn entry_in(cache: &VecDeque<CachedEntry>, wal: &Wal, index: u64) -> Option<(u64, Vec<u8>)> {
    if let Some(first) = cache.front() {
        if index >= first.index {
            let cached = cache.get((index - first.index) as usize)?;
            debug_assert_eq!(cached.index, index);
            return Some((cached.term, cached.payload.clone()));
        }
    }
    match wal.read(index) {
        Ok(entry) => entry.map(|e| (e.term, e.payload)),
        Err(error) => {
            tracing::error!(%error, "unreadable log entry");
            None
        }
    }
}

/// The wire response for what `baton_host::apply` decided a client is told.
fn response_to(answer: Answer) -> Response {
    let refused = |code, message: &str| Response::Error { code, message: message.into(), leader_hint: None };
    match answer {
        Answer::Written { term, index } => Response::Written { term, index },
        Answer::CasMismatch { current, term, index } => Response::CasMismatch { current, term, index },
        Answer::OutcomeUnknown => refused(
            ErrorCode::OutcomeUnknown,
            "leadership changed before the write was acknowledged; it may still apply",
        ),
        Answer::NotApplied(NotApplied::SessionExpired) => refused(
            ErrorCode::SessionExpired,
            "the client's session expired (unused for too long); this request was not applied",
        ),
        Answer::NotApplied(NotApplied::SessionsFull) => refused(
            ErrorCode::SessionsFull,
            "the cluster holds as many client sessions as it may, all in recent use; \
             this request was not applied: retry later",
        ),
        Answer::NotApplied(NotApplied::RevokedFull) => {
            refused(ErrorCode::TooLarge, "the cluster's revocation list is full; the certificate was not revoked")
        }
        Answer::NotApplied(NotApplied::Stale) => {
            refused(ErrorCode::Internal, "a later write of this session was applied first; this one was not applied")
        }
        Answer::NotApplied(NotApplied::CasMismatchEarlier { term, index }) => refused(
            ErrorCode::CasNotApplied,
            &format!(
                "this compare-and-set did not match at index {index} (term {term}) and was not applied; \
                 the key holds the expected value now: read it and retry"
            ),
        ),
    }
}

/// Whether only an operator's certificate may make `request`. Exhaustive, so a new
/// request is classified when it is added, never let through by default.
fn operator_only(request: &Request) -> bool {
    match request {
        Request::Switchover { .. }
        | Request::Campaign { .. }
        | Request::SetPaused { .. }
        | Request::Backup
        | Request::BackupChunk { .. }
        | Request::Revoke { .. }
        | Request::ChangeMembers { .. } => true,
        Request::Members => false,
        Request::Put { .. }
        | Request::Get { .. }
        | Request::Delete { .. }
        | Request::Cas { .. }
        | Request::Status
        | Request::History
        | Request::Discarded
        | Request::DiscardedPage { .. }
        | Request::Watch { .. }
        | Request::Scan { .. } => false,
        Request::ViaLeader { request } => operator_only(request),
        // Only writes go in a session (checked when it is proposed).
        Request::Session { write, .. } => operator_only(write),
    }
}

/// Why a command is too large to write, if it is.
fn oversized(command: &Command) -> Option<String> {
    let (key, value) = match command.write() {
        Command::Put { key, value } => (key, Some(value)),
        Command::Delete { key } => (key, None),
        Command::Cas { key, expected, new } => {
            let larger = [expected, new].into_iter().flatten().max_by_key(|v| v.len());
            (key, larger)
        }
        Command::Session { .. } | Command::SessionById { .. } | Command::SessionByNumber { .. } => {
            return Some("a session write inside another".into())
        }
        Command::Revoke { .. } | Command::Members(_) => return None,
    };
    if key.len() > KEY_BYTES_MAX {
        return Some(format!("key of {} bytes is over the {KEY_BYTES_MAX}-byte limit", key.len()));
    }
    match value {
        Some(value) if value.len() > VALUE_BYTES_MAX => {
            Some(format!("value of {} bytes is over the {VALUE_BYTES_MAX}-byte limit", value.len()))
        }
        _ => None,
    }
}

/// A discarded entry in words: the operation, key and value it carried.
fn describe_discarded(index: u64, term: u64, payload: &[u8]) -> crate::status::DiscardedWrite {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let (op, key, value) = if payload.is_empty() {
        ("noop", String::new(), None)
    } else {
        match postcard::from_bytes::<Command>(payload).as_ref().map(Command::write) {
            Ok(Command::Put { key, value }) => ("put", text(key), Some(text(value))),
            Ok(Command::Delete { key }) => ("delete", text(key), None),
            Ok(Command::Cas { key, new, .. }) => ("cas", text(key), new.as_deref().map(text)),
            Ok(Command::Revoke { holder, .. }) => ("revoke", holder.clone(), None),
            Ok(Command::Members(record)) => ("members", format!("{:?}", record.change), None),
            Ok(Command::Session { .. } | Command::SessionById { .. } | Command::SessionByNumber { .. }) | Err(_) => {
                ("undecodable", String::new(), None)
            }
        }
    };
    crate::status::DiscardedWrite {
        at_unix_ms: unix_ms(),
        term,
        index,
        op: op.into(),
        key,
        value,
        ..Default::default()
    }
}
