//! The node's loop: one task that owns the host (`baton_host::node::Host`: the core,
//! the client requests, the state machine and every decision around them), the log, the
//! hard state and the links; feeds the host every input with the time; and carries out
//! what it plans (`Work`), in order. It decides nothing itself. The files beside this one
//! carry out one kind of work each: `log` (appends and fsyncs), `requests` (client
//! requests to the host and its answers to the wire), `snapshots` (snapshot files,
//! transfers and backups), `discarded` (the journal of discarded writes), `members`
//! (membership records, links and relays), `watches`, `status`, and `setup`. Slow disk
//! work runs on blocking threads: the leader's fsync, snapshot writes, and backups.

mod discarded;
mod log;
mod members;
mod requests;
mod setup;
mod snapshots;
mod status;
mod watches;

use crate::answers::response_to;
use crate::frame::{ErrorCode, Frame, Response};
use crate::handoff::{Input, LinkState, Outbound, ScanView, TransportCounters, WatchSink};
use crate::kv::Applied;
use crate::membership::Directory;
use crate::storage::hard_state::HardStateFile;
use crate::storage::snapshot::{Snapshot, SnapshotDir};
use crate::storage::wal::Wal;
use baton_common::{Event, Message, NodeId, Position};
use baton_host::node::{HandoverEnd, Host, Work};
use baton_host::watch::{WatchId, Watchers};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How often pending requests are checked for time-outs.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);
/// Inputs handled back to back before the log is written, synced and sent on: bounds
/// how long one burst delays the first write in it.
const INPUT_BURST_MAX: usize = 256;

/// How a pending write is answered: when it arrived, and the channel to its client.
type WriteReply = (Instant, oneshot::Sender<Response>);

/// How a waiting read is answered: the channel to its client.
type ReadReply = oneshot::Sender<Response>;

pub struct Driver {
    /// The core with the client requests, the state machine and the persistence
    /// sequencing around it (`baton_host::node`): the decisions this loop carries out.
    host: Host<WriteReply, ReadReply>,
    wal: Wal,
    hard_state: HardStateFile,
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
    /// The wall clock when `started` was taken, Unix milliseconds (history times).
    started_unix_ms: u64,
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

/// Committed entries applied per turn of the loop at most: a node that restarts with a
/// long log (hundreds of thousands of entries after its snapshot) applies it over many
/// turns, answering its leader between them, instead of being silent for the second or
/// two the whole log takes (a restarted node was out of the replication stream for as
/// long).
const APPLY_ENTRIES_PER_TURN_MAX: u64 = 2_048;

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Driver {
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
                    let now = self.now();
                    self.host.track_followers(now);
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
            match self.host.handover_over(self.now()) {
                Some(HandoverEnd::HandedOver) => {
                    let leader = self.host.replica.leader().map(|id| self.membership.name_of(id));
                    tracing::info!(?leader, "handed leadership over; stopping");
                    break;
                }
                Some(HandoverEnd::TimedOut) => {
                    tracing::warn!("no follower took over in time; stopping as leader");
                    break;
                }
                None => {}
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
        match self.host.begin_handover(self.now()) {
            Ok(target) => {
                let target = self.membership.name_of(target);
                tracing::info!(target, "shutting down: handing leadership over first");
                self.pump(None);
                true
            }
            Err(None) => false,
            Err(Some(reasons)) => {
                tracing::warn!(?reasons, "shutting down as leader: no follower can take over");
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
            Input::SnapshotReceived { received, result } => self.on_snapshot_received(received, result),
            Input::SnapshotWritten { position, result } => self.on_snapshot_written(position, result),
            Input::Synced { seq, result, elapsed } => self.on_synced(seq, result, elapsed),
        }
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
                // None: compacted or damaged; the core sends again.
                let Some((entries, withheld_bytes)) = self.host.entries_for(&self.wal, &message, witness) else {
                    return;
                };
                self.witness_bytes_withheld += withheld_bytes;
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
                    self.fatal_storage(error);
                }
            }
            Work::RebuildStateMachine { from_index } => {
                self.end_watches_from(from_index);
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
        let batch = self.host.apply_some(&self.wal, APPLY_ENTRIES_PER_TURN_MAX);
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

    fn on_event(&mut self, event: Event) {
        tracing::info!(?event, "replication event");
        if let Event::BecameFollower { leader: Some(leader), .. } = event {
            if !self.outbound.contains_key(&leader) && leader != self.membership.me() {
                self.members_changed(); // A leader this node has no link to yet.
            }
        }
    }
}
