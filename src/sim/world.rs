//! The simulated world: nodes running the real core, their disks, a lossy network, a
//! client write load, faults and operators, all driven from one seed by one event queue.
//! Nothing here reads a clock or the OS's randomness, so a seed replays exactly.

use super::checker::{Checker, SimEntry};
use super::history::{self, Answer, History, WriteKind};
use super::membership::{is_membership_write, MembershipChecker, QuorumFacts, MEMBERSHIP_WRITE_ID_BASE};
use super::storage::{Op, Storage};
use super::watch::{Consumer, TurnSink};
use baton_common::limits::NODES_MAX;
use baton_common::rng::Rng;
use baton_common::{
    Change, Config, Event, Member, Membership, Message, NodeId, Position, Proposal, Recovered, Replica, Role, WriteMode,
};
use baton_host::apply::Answer as HostAnswer;
use baton_host::kv::{Command, Kv};
use baton_host::member_changes::{MemberDecision, MemberRequest};
use baton_host::members::{MemberEntry, MemberRecord, MemberRecords};
use baton_host::node::{Entries, Host, Proposed, ReadAt, ReadRefusal, Work, REQUEST_TIMEOUT_US};
use baton_host::snapshot_sends::{SendRequest, SnapshotSends};
use baton_host::watch::Watchers;
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

pub const HEARTBEAT_US: u64 = 100_000;
pub const ELECTION_TIMEOUT_US: u64 = 1_000_000;
/// Most events one seed may take; a healthy seed needs well under a tenth of this.
const EVENTS_MAX: u64 = 5_000_000;

/// The host compacts its log once it holds this many entries past the snapshot.
const COMPACT_ENTRIES: usize = 60;

/// Slots for nodes an operator adds during a seed with membership churn (each added
/// node takes the next id; a removed one never comes back).
const SPARE_SLOTS: usize = 3;
/// An operator's membership changes come this often, at least and at most.
const CHURN_GAP_MIN_US: u64 = 200_000;
const CHURN_GAP_MAX_US: u64 = 1_500_000;
/// An added node is started within this of its addition (before or after it).
const JOIN_DELAY_MAX_US: u64 = 1_500_000;

#[derive(Clone, Debug)]
enum Payload {
    Core { message: Message, entries: Vec<SimEntry> },
    Snapshot { term: u64, position: Position, entries: Vec<SimEntry> },
}

#[derive(Clone, Debug)]
struct Envelope {
    from: NodeId,
    to: NodeId,
    payload: Payload,
}

#[derive(Clone, Debug)]
enum Kind {
    Deliver(Envelope),
    Timer {
        node: usize,
        incarnation: u64,
    },
    Fsync {
        node: usize,
        incarnation: u64,
        seq: u64,
    },
    Client,
    /// A client's write reaches `node` (requests travel too, and may arrive late).
    WriteArrives {
        node: usize,
        sent: Sent,
    },
    /// Session client `client` resends its write if `attempt` is still its latest.
    Resend {
        client: usize,
        attempt: u64,
    },
    Read,
    Fault,
    Restart(usize),
    /// A crash aimed at a moment that matters (see `Weather::snap_crash_per_mille`).
    SnapCrash {
        node: usize,
        incarnation: u64,
    },
    Unfreeze(usize),
    Heal,
    Liveness,
    /// An operator changes the membership (see `World::operator_membership`).
    Membership,
    /// A node the operator added starts, empty, knowing only the first membership.
    Join(usize),
    /// A node whose removal committed is shut down for good (if it has by then).
    Decommission(usize),
}

struct Scheduled {
    at_us: u64,
    order: u64,
    kind: Kind,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.order) == (other.at_us, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_us, self.order).cmp(&(other.at_us, other.order))
    }
}

struct Node {
    id: NodeId,
    /// Whether the node's process exists: a spare slot not yet joined, or a node
    /// decommissioned after its removal, has none (and is never restarted).
    started: bool,
    config: Config,
    /// The node's host (`baton_host::node`, the node's own code) with its core, while
    /// the process runs: its state machine, the client writes it holds and waits to
    /// answer, the reads it waits to serve, and its persistence sequencing.
    host: Option<Host<Sent, WaitingRead>>,
    incarnation: u64,
    memory: Storage,
    durable: Storage,
    pending_ops: VecDeque<(u64, Op)>,
    applied: Vec<SimEntry>,
    timer_at: Option<u64>,
    frozen: bool,
    inbox: Vec<Envelope>,
    staged_snapshot: Option<(Position, Vec<SimEntry>)>,
    /// Which snapshot requests start a transfer (`baton_host::snapshot_sends`).
    snapshot_sends: SnapshotSends,
    /// Client requests sent to this node while it was frozen, handled when it resumes
    /// (as a stopped process finds them in its socket): writes by id, reads by key.
    queued_writes: Vec<Sent>,
    /// Set while held writes are proposed again, so a write held anew waits for the
    /// node's next input (as the node's loop does) instead of looping.
    releasing: bool,
    queued_reads: Vec<(u32, history::Stamp)>,
    /// The last term in which this node, as leader, committed: its first commit of a
    /// term is a moment for the targeted faults.
    first_commit_term: u64,
    /// The watches this node serves (`baton_host::watch`, the node's own code).
    watchers: Watchers,
    /// Until when this node's disk is full (`World::fill_disk`): every write fails, and
    /// the node refuses to start (as `baton-node` checks the room it needs first).
    disk_full_until_us: u64,
}

impl Node {
    fn replica(&self) -> Option<&Replica> {
        self.host.as_ref().map(|host| &host.replica)
    }

    fn replica_mut(&mut self) -> Option<&mut Replica> {
        self.host.as_mut().map(|host| &mut host.replica)
    }

    /// The node's host, while its process runs.
    fn live(&mut self) -> &mut Host<Sent, WaitingRead> {
        self.host.as_mut().expect("a live node")
    }
}

/// Knobs one seed draws for itself.
#[derive(Clone, Copy, Debug)]
struct Weather {
    drop_per_mille: u64,
    duplicate_per_mille: u64,
    delay_max_us: u64,
    spike_per_mille: u64,
    /// Odds that a crash finds some of the node's unsynced writes on the disk anyway
    /// (the kernel wrote them back before the crash): a prefix of them, as the log's
    /// torn-tail recovery leaves it.
    written_back_per_mille: u64,
    /// Odds that a node crashes right at a moment where durability and ordering
    /// matter: just after it becomes leader (its old-term entries half replicated, its
    /// no-op not yet: the Raft paper's figure 8), just after it grants a vote or starts
    /// a campaign (before that is durable). It restarts within `SNAP_RESTART_MAX_US`.
    snap_crash_per_mille: u64,
    /// Odds that a node is cut off from every other the moment it becomes leader (its
    /// no-op never leaves), the moment it first commits as leader (the rest of its
    /// catch-up never arrives), or the moment the target of its handoff campaigns (so
    /// it does not hear of its successor while its lease lasts).
    isolate_per_mille: u64,
    /// Odds that an fsync is slow (an SD card erasing): `SLOW_FSYNC_MIN_US` and up, so
    /// acknowledgements race the leader's own fsync.
    slow_fsync_per_mille: u64,
    /// Odds that an fsync fails (an I/O error): a prefix of the writes it covered
    /// reached the disk, the rest are gone for good, and the node's host decides what
    /// follows (it stops the node: `Host::sync_failed`).
    fsync_fail_per_mille: u64,
    /// Odds that a fault fills a node's disk for a while (`World::fill_disk`).
    disk_full_per_mille: u64,
}

impl Weather {
    const CALM: Weather = Weather {
        drop_per_mille: 0,
        duplicate_per_mille: 0,
        delay_max_us: 1_000,
        spike_per_mille: 0,
        written_back_per_mille: 0,
        snap_crash_per_mille: 0,
        isolate_per_mille: 0,
        slow_fsync_per_mille: 0,
        fsync_fail_per_mille: 0,
        disk_full_per_mille: 0,
    };
}

/// A read a node waits to serve (`baton_host::node`, the node's own rule decides when),
/// and how its answer is checked.
#[derive(Clone, Copy, Debug)]
enum WaitingRead {
    /// A `--read leader` read of `key`, invoked at `invoked`.
    Leader { key: u32, invoked: history::Stamp },
    /// A client's `--read after:INDEX` read of the key of its write `acked`,
    /// acknowledged at INDEX.
    After { index: u64, acked: SimEntry },
    /// A `--read any` read of `key`.
    Any { key: u32 },
}

/// Clients, each with its own idea of who leads.
const CLIENTS: usize = 8;
/// The first this many write in a session, one write at a time, and resend it until
/// it is answered, as `baton_node::client` does; the rest send plain writes and never
/// resend (many at once, each answered or left unknown).
const SESSION_CLIENTS: usize = 4;
/// A session client resends a write not answered within this (the real client's call
/// time-out).
const CALL_TIMEOUT_US: u64 = 400_000;
/// And after a refusal or "outcome unknown", within this (its retry pauses).
const RETRY_PAUSE_MAX_US: u64 = 20_000;

/// One sending of a write: its id, its client, and which attempt of that client's it
/// is (the client listens only to its latest attempt's answer, as the real one does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sent {
    write_id: u64,
    client: usize,
    attempt: u64,
}

/// A session client's state.
#[derive(Clone, Copy, Debug, Default)]
struct SessionClient {
    /// Its session: a refusal for an expired session starts the next one.
    epoch: u8,
    /// The last write of this session that was answered.
    acked_seq: u64,
    /// The write it waits on, and how many times it has sent it.
    outstanding: Option<(u64, u64)>,
}

/// How soon a snap crash strikes after its moment, at most: a new leader's first round
/// trips; a voter's or candidate's fsync.
const SNAP_CRASH_LEADER_MAX_US: u64 = 30_000;
const SNAP_CRASH_VOTE_MAX_US: u64 = 5_000;
/// A node crashed at such a moment is back within this.
const SNAP_RESTART_MAX_US: u64 = 400_000;
/// How soon a supervisor starts a node that stopped on a storage failure, at least (and
/// at most ten times that).
const SUPERVISOR_RESTART_MIN_US: u64 = 100_000;
/// A slow fsync takes from this to ten times this.
const SLOW_FSYNC_MIN_US: u64 = 15_000;

/// What one seed's run found.
#[derive(Debug, Default)]
pub struct SeedReport {
    pub seed: u64,
    pub nodes: u8,
    pub mode: String,
    pub violations: Vec<String>,
    pub acked_writes: usize,
    pub leader_terms: u64,
    pub isolated_ack_window_us: u64,
    /// Client operations in the linearizability check, and of them `--read leader` reads.
    pub client_operations: usize,
    pub leader_reads: usize,
    pub after_reads: usize,
    pub any_reads: usize,
    /// Client requests a node's host answered with a time-out (`Host::expire`).
    pub requests_expired: u64,
    /// Times a node's host stopped it on a storage failure (`Work::Stop`).
    pub storage_stops: u64,
    /// Changes the watch consumers got and the checker compared, and how many times a
    /// consumer opened its watch (again) on a node.
    pub watch_changes: usize,
    pub watch_opens: u64,
    /// Whether an operator changed the membership, and how many changes were applied.
    pub churn: bool,
    pub membership_changes: usize,
    pub trace: Vec<String>,
}

pub struct World {
    now_us: u64,
    order: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    rng: Rng,
    nodes: Vec<Node>,
    mode: WriteMode,
    /// blocked[from][to]: messages from `from` to `to` are lost.
    blocked: Vec<Vec<bool>>,
    /// link_generation[a][b]: how many times the link between a and b came up (a new
    /// connection, as the node's transport sees it), and whether it is up now.
    link_generation: Vec<Vec<(u64, bool)>>,
    /// The last snapshot each leader sent each follower: (term, position, connection
    /// generation, when), by (leader, follower). A snapshot can be hundreds of
    /// megabytes on an edge link: the same one again on the same connection within the
    /// resend time is a waste the checker reports.
    snapshot_sent: HashMap<(usize, usize), (u64, Position, u64, u64)>,
    /// link_up_at_us[a][b]: when a and b could last talk both ways.
    link_up_at_us: Vec<Vec<u64>>,
    weather: Weather,
    next_write_id: u64,
    /// Each write's log payload (a `baton_host::kv::Command`), by write id.
    payloads: HashMap<u64, Vec<u8>>,
    checker: Checker,
    history: History,
    /// The node each client takes for the leader: it learns only from the answers it
    /// gets (a write taken, a "not leader" hint, a refusal, a refused connection), as
    /// the real client does, so a deposed leader that still answers keeps getting the
    /// requests of the clients that have not heard otherwise.
    client_leaders: [Option<usize>; CLIENTS],
    session_clients: [SessionClient; SESSION_CLIENTS],
    /// The session client of each session write, by write id.
    write_clients: HashMap<u64, usize>,
    /// The latest acknowledged write: (index, write id).
    last_ack: Option<(u64, SimEntry)>,
    /// The leader that last sent a handoff (TimeoutNow).
    handoff_from: Option<usize>,
    /// The client making the current request.
    client: usize,
    safety_end_us: u64,
    liveness_deadline_us: u64,
    /// The liveness phase's probe write: (node, index, entry, proposed at).
    barrier: Option<(usize, u64, SimEntry, u64)>,
    barrier_acked: bool,
    converged: bool,
    leader_terms: u64,
    requests_expired: u64,
    storage_stops: u64,
    /// Manual failovers the operator made in the liveness phase (each to the next
    /// candidate in order).
    manual_failovers: usize,
    trace: Option<Vec<String>>,
    /// With a trace, also every delivered message (`BATON_SIM_MESSAGES=1`).
    trace_messages: bool,
    /// Consumers of watches (every key, and one key), moving between nodes as the
    /// client library does (see `super::watch`).
    consumers: Vec<Consumer>,
    /// Whether an operator changes the membership during this seed.
    churn: bool,
    /// The membership the cluster was formed with (every node starts knowing it).
    initial_membership: Membership,
    /// Each membership entry's record, by write id (the node stores it in the entry).
    memberships: HashMap<u64, MemberRecord>,
    next_membership_write_id: u64,
    membership_checker: MembershipChecker,
}

impl World {
    pub fn new(
        seed: u64,
        nodes: u8,
        mode: WriteMode,
        churn: Option<bool>,
        safety_us: u64,
        liveness_us: u64,
        trace: bool,
    ) -> World {
        let mut rng = Rng::new(seed ^ 0x5EED_BA70);
        let ids: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
        let mut members = heapless::Vec::new();
        for id in &ids {
            let priority = 1 + rng.below(3) as u8;
            let _ = members.push(Member::voter(*id, priority));
        }
        let mut world_nodes = Vec::new();
        let initial_membership = Membership::new(members.clone());
        for id in &ids {
            world_nodes.push(new_node(*id, &members, mode, seed, &mut rng));
        }
        let weather = Weather {
            drop_per_mille: rng.below(150),
            duplicate_per_mille: rng.below(50),
            delay_max_us: 500 + rng.below(20_000),
            spike_per_mille: rng.below(30),
            // A third of the seeds keep to random faults alone.
            snap_crash_per_mille: if rng.below(3) == 0 { 0 } else { 50 + rng.below(300) },
            isolate_per_mille: if rng.below(3) == 0 { 0 } else { 100 + rng.below(600) },
            slow_fsync_per_mille: rng.below(100),
            written_back_per_mille: rng.below(700),
            // A third of the seeds have disks that fail.
            fsync_fail_per_mille: if rng.below(3) == 0 { 1 + rng.below(10) } else { 0 },
            disk_full_per_mille: if rng.below(3) == 0 { 50 + rng.below(200) } else { 0 },
        };
        // Half the seeds change the membership as they go; they have spare slots for
        // the nodes the operator adds.
        let churn = churn.unwrap_or(rng.below(2) == 0);
        let spares = if churn { SPARE_SLOTS.min(NODES_MAX - ids.len()) } else { 0 };
        for spare in 1..=spares as u8 {
            let id = NodeId(nodes + spare);
            // A node started to join knows the cluster's first membership and itself
            // as a learner to be (the core takes the membership from its storage).
            let mut known = members.clone();
            let _ = known.push(Member::learner(id, 0));
            let mut node = new_node(id, &known, mode, seed, &mut rng);
            node.started = false;
            node.host = None;
            world_nodes.push(node);
        }
        let slots = world_nodes.len();
        let mut world = World {
            now_us: 0,
            order: 0,
            queue: BinaryHeap::new(),
            rng,
            nodes: world_nodes,
            mode,
            blocked: vec![vec![false; slots]; slots],
            link_up_at_us: vec![vec![0; slots]; slots],
            link_generation: vec![vec![(0, true); slots]; slots],
            snapshot_sent: HashMap::new(),
            weather,
            next_write_id: 1,
            payloads: HashMap::new(),
            checker: Checker::new(mode == WriteMode::Async, ELECTION_TIMEOUT_US),
            history: History::default(),
            client_leaders: [None; CLIENTS],
            session_clients: [SessionClient::default(); SESSION_CLIENTS],
            write_clients: HashMap::new(),
            handoff_from: None,
            last_ack: None,
            client: 0,
            safety_end_us: safety_us,
            liveness_deadline_us: safety_us + liveness_us,
            barrier: None,
            barrier_acked: false,
            converged: false,
            leader_terms: 0,
            requests_expired: 0,
            storage_stops: 0,
            manual_failovers: 0,
            trace: trace.then(Vec::new),
            trace_messages: trace && std::env::var_os("BATON_SIM_MESSAGES").is_some(),
            consumers: vec![Consumer::new(b""), Consumer::new(&history::key_bytes(1))],
            churn,
            membership_checker: MembershipChecker::new(mode == WriteMode::Async, ids.iter().map(|id| id.0).collect()),
            initial_membership,
            memberships: HashMap::new(),
            next_membership_write_id: MEMBERSHIP_WRITE_ID_BASE,
        };
        for node in 0..world.nodes.len() {
            world.after_input(node);
        }
        world.schedule(1_000, Kind::Client);
        world.schedule(1_500, Kind::Read);
        world.schedule(300_000, Kind::Fault);
        world.schedule(safety_us, Kind::Heal);
        if churn {
            world.schedule(CHURN_GAP_MIN_US, Kind::Membership);
        }
        world
    }

    fn schedule(&mut self, delay_us: u64, kind: Kind) {
        self.order += 1;
        let at_us = self.now_us + delay_us;
        self.queue.push(Reverse(Scheduled { at_us, order: self.order, kind }));
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>9.3}ms {}", self.now_us as f64 / 1000.0, text()));
        }
    }

    /// Runs to the end of the liveness phase, or until it converged.
    pub fn run(mut self, seed: u64) -> SeedReport {
        let mut events: u64 = 0;
        while let Some(Reverse(event)) = self.queue.pop() {
            if event.at_us > self.liveness_deadline_us || self.converged {
                break;
            }
            events += 1;
            if events > EVENTS_MAX {
                // A core that spins (say, a timer re-armed in the past) must fail the
                // seed, not hang the run.
                self.checker.violations.push(format!("livelock: over {EVENTS_MAX} events by t={}us", event.at_us));
                self.converged = true;
                break;
            }
            self.now_us = event.at_us;
            self.dispatch(event.kind);
        }
        if !self.converged {
            let state: Vec<String> = self
                .nodes
                .iter()
                .map(|n| match n.replica() {
                    Some(r) => format!(
                        "{}:{:?}/t{}/last{}/commit{}/paused{}/voters{:?}",
                        n.id,
                        r.role(),
                        r.term(),
                        r.log().last_index(),
                        r.commit_index(),
                        r.hard_state().paused,
                        r.config().members.iter().filter(|m| m.voter).map(|m| m.id.0).collect::<Vec<_>>()
                    ),
                    None => format!("{}:down", n.id),
                })
                .collect();
            self.checker
                .violations
                .push(format!("liveness: the healed cluster did not converge in time ({})", state.join(" ")));
        }
        let leader = self.leader().unwrap_or(0);
        let final_log = self.nodes[leader].memory.clone();
        let logs: Vec<(u8, Vec<Option<SimEntry>>)> = self.nodes.iter().map(|n| (n.id.0, n.memory.full_log())).collect();
        let final_members = self.nodes[leader].replica().map(|r| r.config().members.clone()).unwrap_or_default();
        let departed: Vec<u8> =
            self.nodes.iter().map(|n| n.id.0).filter(|id| !final_members.iter().any(|m| m.id.0 == *id)).collect();
        self.checker.finish(&|index| final_log.entry(index), &logs, &departed);
        let took_effect: Vec<u64> = self.nodes[leader].applied.iter().map(|e| e.write_id).collect();
        if let Some(violation) = self.history.check(&took_effect, self.mode == WriteMode::Async) {
            self.checker.violations.push(violation);
        }
        let final_applied: Vec<u64> = self.nodes[leader].applied.iter().map(|e| e.write_id).collect();
        let final_entries = &self.nodes[leader].applied;
        if let Some(violation) = self.history.check_after_reads(final_entries, self.mode == WriteMode::Async) {
            self.checker.violations.push(violation);
        }
        if let Some(violation) = self.history.check_any_reads(&final_applied, self.mode == WriteMode::Async) {
            self.checker.violations.push(violation);
        }
        for node in 0..self.nodes.len() {
            self.check_state_machine(node);
        }
        // Async mode may lose acknowledged writes at failover: a watch then saw writes
        // the final log lacks (they are in the discarded journal), as documented.
        if self.mode != WriteMode::Async {
            let expected = self.history.model_changes(&took_effect);
            if let Some(violation) = super::watch::check(&self.consumers, &expected) {
                self.checker.violations.push(violation);
            }
        }
        self.checker.violations.append(&mut self.membership_checker.violations);
        SeedReport {
            seed,
            nodes: self.initial_membership.members.len() as u8,
            churn: self.churn,
            membership_changes: self.membership_checker.changes_applied,
            mode: self.mode.to_string(),
            violations: self.checker.violations.clone(),
            acked_writes: self.checker.acked().len(),
            leader_terms: self.leader_terms,
            isolated_ack_window_us: self.checker.isolated_ack_window_us,
            client_operations: self.history.operations(),
            leader_reads: self.history.reads(),
            after_reads: self.history.after_and_any_reads().0,
            any_reads: self.history.after_and_any_reads().1,
            requests_expired: self.requests_expired,
            storage_stops: self.storage_stops,
            watch_changes: match self.mode {
                WriteMode::Async => 0,
                _ => self.consumers.iter().flat_map(|c| &c.segments).map(|s| s.changes.len()).sum(),
            },
            watch_opens: self.consumers.iter().map(|c| c.opens).sum(),
            trace: self.trace.take().unwrap_or_default(),
        }
    }

    fn dispatch(&mut self, kind: Kind) {
        match kind {
            Kind::Deliver(envelope) => self.deliver(envelope),
            Kind::Timer { node, incarnation } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation || n.frozen || n.timer_at.is_none_or(|at| at > self.now_us) {
                    return;
                }
                n.timer_at = None;
                let now = self.now_us;
                if let Some(replica) = n.replica_mut() {
                    replica.handle_timeout(now);
                    self.after_input(node);
                }
            }
            Kind::Fsync { node, incarnation, seq } => self.fsync_done(node, incarnation, seq),
            Kind::Resend { client, attempt } => self.resend(client, attempt),
            Kind::WriteArrives { node, sent } => {
                if self.nodes[node].frozen {
                    self.nodes[node].queued_writes.push(sent);
                } else {
                    self.propose(node, sent, self.now_us);
                }
            }
            Kind::Client => {
                self.client_write();
                let gap = 2_000 + self.rng.below(15_000);
                self.schedule(gap, Kind::Client);
            }
            Kind::Read => {
                self.client_read();
                let gap = 2_000 + self.rng.below(15_000);
                self.schedule(gap, Kind::Read);
            }
            Kind::Fault => {
                if self.now_us < self.safety_end_us {
                    self.inject_fault();
                    let gap = 150_000 + self.rng.below(1_200_000);
                    self.schedule(gap, Kind::Fault);
                }
            }
            Kind::SnapCrash { node, incarnation } => {
                let n = &self.nodes[node];
                if self.now_us < self.safety_end_us && n.incarnation == incarnation && n.host.is_some() {
                    self.crash(node);
                    let downtime = 1_000 + self.rng.below(SNAP_RESTART_MAX_US);
                    self.schedule(downtime, Kind::Restart(node));
                }
            }
            Kind::Restart(node) => {
                if self.now_us < self.safety_end_us {
                    self.restart(node);
                    self.update_connectivity();
                }
            }
            Kind::Unfreeze(node) => {
                if self.now_us < self.safety_end_us {
                    self.unfreeze(node);
                }
            }
            Kind::Heal => self.heal(),
            Kind::Liveness => self.liveness_step(),
            Kind::Membership => {
                if self.now_us < self.safety_end_us {
                    self.operator_membership();
                    let gap = CHURN_GAP_MIN_US + self.rng.below(CHURN_GAP_MAX_US - CHURN_GAP_MIN_US);
                    self.schedule(gap, Kind::Membership);
                }
            }
            Kind::Join(node) => {
                if !self.nodes[node].started {
                    self.note(|| format!("OPERATOR starts n{} to join", node + 1));
                    self.nodes[node].started = true;
                    self.restart(node);
                    self.update_connectivity();
                }
            }
            Kind::Decommission(node) => self.decommission(node),
        }
    }

    // ----- the network -----

    fn send(&mut self, envelope: Envelope) {
        let (from, to) = (usize::from(envelope.from.0 - 1), usize::from(envelope.to.0 - 1));
        let dropped = self.weather.drop_per_mille != u64::MAX && self.rng.below(1000) < self.weather.drop_per_mille;
        if self.blocked[from][to] || dropped {
            return;
        }
        let copies = if self.rng.below(1000) < self.weather.duplicate_per_mille { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay = 50 + self.rng.below(self.weather.delay_max_us);
            if self.rng.below(1000) < self.weather.spike_per_mille {
                delay += self.rng.below(300_000);
            }
            self.schedule(delay, Kind::Deliver(envelope.clone()));
        }
    }

    fn deliver(&mut self, envelope: Envelope) {
        let node = usize::from(envelope.to.0 - 1);
        if self.nodes[node].host.is_none() {
            return;
        }
        // A link cut while a message was on it loses the message.
        if self.blocked[usize::from(envelope.from.0 - 1)][node] {
            return;
        }
        if self.nodes[node].frozen {
            self.nodes[node].inbox.push(envelope);
            return;
        }
        let now = self.now_us;
        let from = envelope.from;
        if self.trace_messages {
            let to = envelope.to;
            let text = match &envelope.payload {
                Payload::Core { message, .. } => format!("{message:?}"),
                Payload::Snapshot { term, position, .. } => {
                    format!("Snapshot term {term} at {position:?}")
                }
            };
            self.note(|| format!("{from} -> {to}: {text}"));
        }
        match envelope.payload {
            Payload::Core { message, entries } => {
                let incoming = match message {
                    Message::AppendRequest(request) => Some((request.prev.index, entries)),
                    _ => None,
                };
                self.nodes[node].replica_mut().expect("alive").handle_message(now, from, message);
                self.after_input_with(node, incoming.as_ref().map(|(prev, e)| (*prev, e.as_slice())));
            }
            Payload::Snapshot { term, position, entries } => {
                // The snapshot carries the membership in effect at its point.
                let membership = self.membership_at_end(&entries);
                self.nodes[node].staged_snapshot = Some((position, entries));
                let replica = self.nodes[node].replica_mut().expect("alive");
                replica.handle_snapshot_received(now, from, term, position, membership);
                self.after_input(node);
            }
        }
    }

    // ----- the host side of one node -----

    fn after_input(&mut self, node: usize) {
        self.after_input_with(node, None);
    }

    /// Carries out what the node's host plans from its core's outputs (as the node's
    /// driver does), then arms its timer and its fsync.
    fn after_input_with(&mut self, node: usize, incoming: Option<(u64, &[SimEntry])>) {
        // The payloads of the entries received, as the node's host sees them.
        let payloads: Option<(u64, Vec<Vec<u8>>)> =
            incoming.map(|(prev, entries)| (prev, entries.iter().map(|e| payload_of(&self.payloads, *e)).collect()));
        loop {
            let now = self.now_us;
            let Some(host) = self.nodes[node].host.as_mut() else {
                return;
            };
            let Some(work) = host.poll_work(now, payloads.as_ref().map(|(prev, p)| (*prev, p.as_slice()))) else {
                break;
            };
            self.carry_out(node, work, incoming);
        }
        self.maybe_compact(node);
        self.expire_requests(node);
        self.serve_reads(node);
        self.release_held_writes(node);
        self.pump_watches(node);
        let now = self.now_us;
        let n = &mut self.nodes[node];
        let Some(replica) = n.replica() else {
            return;
        };
        // The host's membership records move with the core's memberships.
        let host = n.host.as_ref().expect("a live node").records.membership_log();
        if host.current() != replica.memberships().current() {
            let violation = format!(
                "t={now}us: n{}'s host records say {:?}, its core {:?}",
                n.id.0,
                host.current(),
                replica.memberships().current()
            );
            self.checker.violations.push(violation);
        }
        if replica.role() == Role::Leader {
            self.membership_checker.on_leading(now, n.id.0, ELECTION_TIMEOUT_US);
        }
        let timeout = replica.poll_timeout();
        if timeout != n.timer_at {
            n.timer_at = timeout;
            if let Some(at) = timeout {
                let incarnation = n.incarnation;
                self.schedule(at.saturating_sub(now), Kind::Timer { node, incarnation });
            }
        }
        let n = &mut self.nodes[node];
        // The node's host decides which persistence request the fsync covers; the
        // simulated disk always answers later (an inline fsync blocks the node's loop
        // for as long: the same to every other node).
        if let Some(seq) = n.live().persistence.start_sync_deferred() {
            let incarnation = n.incarnation;
            let latency = if self.rng.below(1000) < self.weather.slow_fsync_per_mille {
                SLOW_FSYNC_MIN_US + self.rng.below(9 * SLOW_FSYNC_MIN_US)
            } else {
                100 + self.rng.below(3_000)
            };
            self.schedule(latency, Kind::Fsync { node, incarnation, seq });
        }
        self.tend_members(node);
    }

    /// Carries out one thing the node's host asked for, on the simulated disk and network.
    fn carry_out(&mut self, node: usize, work: Work<Sent>, incoming: Option<(u64, &[SimEntry])>) {
        let id = self.nodes[node].id;
        match work {
            Work::Send { to, message, witness: _ } => {
                if let Message::TimeoutNow(_) = message {
                    let target = usize::from(to.0 - 1);
                    let replica = self.nodes[node].replica().expect("a live node sends");
                    let last = replica.log().last_position();
                    let commit = replica.commit_index();
                    let target_has_last =
                        self.nodes[target].durable.entry(last.index).is_some_and(|e| e.term == last.term);
                    self.checker.on_handoff(self.now_us, id.0, to.0, last.index, commit, target_has_last);
                    self.handoff_from = Some(node);
                }
                if let Message::VoteResponse(response) = message {
                    if !response.pre_vote && response.verdict == baton_common::VoteVerdict::Granted {
                        self.maybe_snap_crash(node, SNAP_CRASH_VOTE_MAX_US);
                    }
                }
                let mut entries = Vec::new();
                if let Message::AppendRequest(request) = message {
                    for index in request.prev.index + 1..=request.last_index() {
                        let entry =
                            self.nodes[node].memory.entry(index).expect("the core only sends what the host holds");
                        assert_eq!(entry.term, request.entries_term);
                        entries.push(entry);
                    }
                }
                self.send(Envelope { from: id, to, payload: Payload::Core { message, entries } });
            }
            // Made durable by the next fsync (the node's driver syncs it at once: the
            // simulated disk is the slower, harsher one).
            Work::StoreHardState { seq, hard_state } => self.write(node, seq, Op::Hard(hard_state)),
            Work::Truncate { seq, from_index } => {
                let last = self.nodes[node].memory.last_index();
                self.note(|| format!("n{} truncates {from_index}..={last}", id.0));
                self.write(node, seq, Op::Truncate(from_index));
            }
            Work::RebuildStateMachine { from_index } => {
                let n = &mut self.nodes[node];
                n.applied.truncate(from_index as usize - 1);
                n.live().kv = replayed(&self.payloads, &n.applied);
                self.checker.on_unapply(id.0, from_index);
                let room = HashSet::new();
                let mut sink = TurnSink { room: &room, delivered: Vec::new(), ended: Vec::new() };
                self.nodes[node].watchers.on_discarded(from_index, &mut sink);
                let incarnation = self.nodes[node].incarnation;
                self.route_watch_output(node, incarnation, Vec::new(), sink.ended, 0);
            }
            // The payload is the one the host was handed for this entry (see
            // `after_input_with`): the simulated disk keeps the entry it stands for.
            Work::Append { seq, index, term, payload, received } => {
                let entry = match incoming {
                    Some((prev, entries)) if received => entries[(index - prev - 1) as usize],
                    _ => SimEntry::new(term, 0),
                };
                assert_eq!(entry.term, term);
                assert_eq!(payload, payload_of(&self.payloads, entry), "the host's payload is the entry's");
                self.write(node, seq, Op::Append(index, entry));
            }
            Work::InstallSnapshot { seq, snapshot } => {
                let (position, entries) = self.nodes[node].staged_snapshot.take().expect("staged before install");
                assert_eq!(position, snapshot);
                self.note(|| format!("n{} installs snapshot {snapshot:?}", id.0));
                self.checker.on_state_reset(id.0, &entries);
                let kv = replayed(&self.payloads, &entries);
                self.nodes[node].applied = entries.clone();
                let memory = &self.nodes[node].memory;
                let keeps_tail = memory.last_index() >= snapshot.index
                    && memory.entry(snapshot.index).map(|e| e.term) == Some(snapshot.term);
                let at_snapshot = self.record_at_end(&entries);
                self.nodes[node].live().installed(snapshot, kv, Some(at_snapshot), keeps_tail);
                // Durable with the next fsync (the node's driver syncs it at once).
                self.write(node, seq, Op::Install(snapshot, entries));
            }
            Work::Commit { commit_index } => {
                self.apply_committed(node, commit_index);
                // A new leader's first commit: whatever it sends next (its no-op to a
                // follower still catching up, the commit index) may never arrive.
                let replica = self.nodes[node].replica().expect("a live node commits");
                let (is_leader, term) = (replica.role() == Role::Leader, replica.term());
                if is_leader && self.nodes[node].first_commit_term != term {
                    self.nodes[node].first_commit_term = term;
                    self.maybe_isolate(node);
                    self.maybe_snap_crash(node, SNAP_CRASH_VOTE_MAX_US);
                }
            }
            Work::SendSnapshot { to, term, witness: _ } => {
                self.update_connectivity();
                let peer = usize::from(to.0 - 1);
                let (link_generation, link_up) = self.link_generation[node][peer];
                let snapshot = self.nodes[node].memory.snapshot;
                let request = SendRequest { to, term, snapshot, link_up, link_generation: Some(link_generation) };
                let resend_after_us = self.nodes[node].config.snapshot_timeout_us;
                if !self.nodes[node].snapshot_sends.start(request, self.now_us, resend_after_us) {
                    return;
                }
                let sent = (term, snapshot, link_generation, self.now_us);
                if let Some((t, p, g, at)) = self.snapshot_sent.insert((node, peer), sent) {
                    if (t, p, g) == (term, snapshot, link_generation) && self.now_us - at < resend_after_us {
                        self.checker.violations.push(format!(
                            "t={}us: n{} sent snapshot {snapshot:?} to n{} again {}us after the last time, on the \
                             same connection (resend time {resend_after_us}us)",
                            self.now_us,
                            node + 1,
                            peer + 1,
                            self.now_us - at
                        ));
                    }
                }
                let memory = &self.nodes[node].memory;
                let payload =
                    Payload::Snapshot { term, position: memory.snapshot, entries: memory.snapshot_entries.clone() };
                self.send(Envelope { from: id, to, payload });
            }
            Work::MembersChanged => {} // No links to start or stop.
            Work::Answer { reply, answer } => {
                assert_eq!(answer, HostAnswer::OutcomeUnknown, "the host answers a write only at a step-down");
                self.retry_soon(reply);
            }
            Work::StopSnapshotSends => self.nodes[node].snapshot_sends.forget_all(),
            Work::KeepDiscarded { term, from_index, to_index } => {
                self.checker.on_discarded(id.0, term, from_index, to_index);
            }
            Work::Event(event) => self.on_event(node, event),
            Work::Stop { why } => self.stop_node(node, &why),
        }
    }

    fn write(&mut self, node: usize, seq: u64, op: Op) {
        let n = &mut self.nodes[node];
        let needs_room = !matches!(op, Op::Truncate(_));
        if needs_room && self.now_us < n.disk_full_until_us {
            let why = format!("n{}'s data directory: the disk is full (simulated)", node + 1);
            n.live().storage_failed(why);
            return;
        }
        n.live().persistence.wrote(seq);
        n.memory.apply(&op);
        if let Op::Append(index, entry) = op {
            // The host's recent entries serve what it applies and sends, as the node's.
            n.live().appended(self.now_us, index, entry.term, payload_of(&self.payloads, entry));
        }
        n.pending_ops.push_back((seq, op));
    }

    fn fsync_done(&mut self, node: usize, incarnation: u64, seq: u64) {
        let n = &mut self.nodes[node];
        if n.incarnation != incarnation || n.host.is_none() {
            return;
        }
        if n.frozen {
            // A stopped process cannot hear back from its disk; try again later.
            self.schedule(1_000, Kind::Fsync { node, incarnation, seq });
            return;
        }
        if self.now_us < self.safety_end_us && self.rng.below(1000) < self.weather.fsync_fail_per_mille {
            return self.fail_fsync(node, seq);
        }
        let n = &mut self.nodes[node];
        while n.pending_ops.front().is_some_and(|(s, _)| *s <= seq) {
            let (_, op) = n.pending_ops.pop_front().expect("checked");
            n.durable.apply(&op);
        }
        let now = self.now_us;
        n.live().synced(now, seq, 0);
        self.after_input(node);
    }

    /// The fsync covering requests up to `seq` fails: the disk took a prefix of those
    /// writes, and the rest are gone (the kernel may mark their pages clean, so no
    /// later fsync writes them: PostgreSQL's "fsyncgate"). The log's recovery stops at
    /// the gap, so nothing appended after it counts either (`Storage::gap`). The host
    /// decides what follows.
    fn fail_fsync(&mut self, node: usize, seq: u64) {
        let covered = self.nodes[node].pending_ops.iter().take_while(|(s, _)| *s <= seq).count();
        let kept = self.rng.below(covered as u64 + 1) as usize;
        let n = &mut self.nodes[node];
        for (index, (_, op)) in n.pending_ops.drain(..covered).enumerate() {
            if index < kept {
                n.durable.apply(&op);
            }
        }
        n.durable.gap |= kept < covered;
        self.note(|| format!("FAULT n{}'s fsync failed: {kept} of its {covered} writes reached the disk", node + 1));
        self.nodes[node].live().sync_failed(seq, "input/output error (simulated)");
        self.after_input(node);
    }

    /// The host asked its node to stop (`Work::Stop`): the process exits (70), and its
    /// supervisor starts it again a little later (systemd's `Restart=on-failure`).
    fn stop_node(&mut self, node: usize, why: &str) {
        self.note(|| format!("n{} stops: {why}", node + 1));
        self.storage_stops += 1;
        self.crash(node);
        let downtime = SUPERVISOR_RESTART_MIN_US + self.rng.below(SUPERVISOR_RESTART_MIN_US * 10);
        self.schedule(downtime, Kind::Restart(node));
    }

    /// A fault: `node`'s disk is full for a while. Its next write fails (the host stops
    /// it), and it does not start again until there is room.
    fn fill_disk(&mut self, node: usize) {
        let duration = 200_000 + self.rng.below(2_000_000);
        self.nodes[node].disk_full_until_us = self.now_us + duration;
        self.note(|| format!("FAULT n{}'s disk is full for {}ms", node + 1, duration / 1000));
    }

    fn apply_committed(&mut self, node: usize, commit_index: u64) {
        let term = self.nodes[node].replica().map_or(0, |r| r.term());
        let id = self.nodes[node].id.0;
        // The node's own step (`baton_host::node`): apply, and answer the write pending
        // at each index.
        let batch = {
            let Node { host, memory, .. } = &mut self.nodes[node];
            let host = host.as_mut().expect("a live node commits");
            host.commit_through(commit_index);
            host.apply_some(&SimLog { memory, payloads: &self.payloads }, u64::MAX)
        };
        // The host applies only what the core holds committed, and finds all of it in
        // the log.
        let host = self.nodes[node].host.as_ref().expect("a live node commits");
        let (applied_index, commit) = (host.kv.applied_index(), host.replica.commit_index());
        if applied_index > commit || batch.missing.is_some() {
            let missing = batch.missing;
            let violation = format!(
                "t={}us: n{id} applied through {applied_index} with its commit index at {commit} \
                 (committed entry missing from its log: {missing:?})",
                self.now_us
            );
            self.checker.violations.push(violation);
        }
        for applied in batch.entries {
            let index = applied.index;
            let entry = self.nodes[node].memory.entry(index).expect("committed entries are in the log");
            assert_eq!(self.nodes[node].applied.len() as u64 + 1, index, "applied in order");
            self.nodes[node].applied.push(entry);
            self.checker.on_apply(id, index, entry);
            if is_membership_write(entry.write_id) {
                let record = &self.memberships[&entry.write_id];
                let members = record.membership.members.iter().map(|m| m.id.0).collect();
                let change = record.change.is_some();
                let leading = self.nodes[node].replica().is_some_and(|r| r.role() == Role::Leader);
                self.membership_checker.on_applied(self.now_us, id, index, members, leading, change);
            } else if entry.write_id != 0 {
                self.history.on_applied(self.now_us, entry.write_id);
            }
            let answered = applied.answered;
            let Some((sent, answer)) = answered else { continue };
            let write_id = sent.write_id;
            // A session client hears only its latest attempt (an earlier attempt's
            // stream was given up); a plain client hears its one attempt.
            let heard = sent.client >= SESSION_CLIENTS || self.is_latest_attempt(sent);
            let (answer, (acked_term, acked_index)) = match answer {
                HostAnswer::OutcomeUnknown => {
                    self.retry_soon(sent);
                    continue;
                }
                HostAnswer::Written { term, index } => (Answer::Written, (term, index)),
                HostAnswer::CasMismatch { current, term, index } => {
                    (Answer::CasFailed { current: current.as_deref().map(history::value_of) }, (term, index))
                }
                HostAnswer::NotApplied(why) => {
                    self.note(|| format!("n{id} answers write {write_id} at {index}: not applied, {why:?}"));
                    if heard && sent.client < SESSION_CLIENTS {
                        // As the real client does: later writes go in a new session.
                        let session = &mut self.session_clients[sent.client];
                        *session = SessionClient { epoch: session.epoch.wrapping_add(1), ..Default::default() };
                        self.history.complete_write(self.now_us, write_id, Answer::Refused);
                    }
                    continue;
                }
            };
            // What the client was told: its write, at that position. Should the host
            // answer the wrong write or position, the checkers see that write lost.
            // (The session number is the one its log entry carries, if that entry is
            // this write: it says how the leader named the session, not which write.)
            let logged = self.nodes[node].memory.entry(acked_index).filter(|e| e.write_id == write_id);
            let session_number = logged.map_or(0, |e| e.session_number);
            let acked = SimEntry { term: acked_term, write_id, session_number };
            let lost_at = self.quorum_lost_at(node);
            self.checker.on_ack(self.now_us, id, term, acked_index, acked, lost_at);
            let quorums = self.ack_quorum_facts(node, acked_index, acked);
            self.membership_checker.on_ack(self.now_us, id, acked_index, &quorums);
            if !heard {
                continue;
            }
            if sent.client < SESSION_CLIENTS {
                let session = &mut self.session_clients[sent.client];
                session.outstanding = None;
                session.acked_seq = write_id;
            }
            self.history.complete_write(self.now_us, write_id, answer);
            self.last_ack = Some((acked_index, acked));
            self.note(|| format!("n{id} acked write {write_id} at {acked_index}"));
            if self.barrier.is_some_and(|(_, i, e, _)| i == acked_index && e == acked) {
                self.barrier_acked = true;
            }
        }
    }

    fn maybe_compact(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let Some(host) = n.host.as_mut() else {
            return;
        };
        let applied = host.snapshot_index();
        if n.memory.log.len() < COMPACT_ENTRIES || applied <= n.memory.snapshot.index {
            return;
        }
        let term = n.memory.entry(applied).expect("applied entries are in the log").term;
        let snapshot = Position::new(term, applied);
        let entries = n.applied[..applied as usize].to_vec();
        // A snapshot is written to a temporary file, fsynced and renamed: durable at once.
        n.memory.install(snapshot, entries.clone());
        n.durable.install(snapshot, entries);
        let id = n.id.0;
        host.compacted(self.now_us, snapshot, snapshot.index + 1);
        self.note(|| format!("n{id} compacts through {snapshot:?}"));
    }

    fn on_event(&mut self, node: usize, event: Event) {
        let id = self.nodes[node].id.0;
        self.note(|| format!("n{id} {event:?}"));
        match event {
            Event::ElectionStarted { pre_vote: false, cause, .. } => {
                // The target of a handoff campaigns: its old leader may not hear of it.
                if let (baton_common::ElectionCause::Switchover, Some(from)) = (cause, self.handoff_from.take()) {
                    self.maybe_isolate(from);
                }
                self.maybe_snap_crash(node, SNAP_CRASH_VOTE_MAX_US);
            }
            Event::BecameLeader { term, .. } => {
                self.maybe_snap_crash(node, SNAP_CRASH_LEADER_MAX_US);
                self.maybe_isolate(node);
                self.leader_terms += 1;
                let memory = self.nodes[node].memory.clone();
                self.checker.on_leader(self.now_us, id, term, &|index| memory.entry(index));
                let applied_index = self.nodes[node].applied.len() as u64;
                self.membership_checker.on_leader(self.now_us, id, term, applied_index);
                if self.is_witness(node, node) {
                    self.membership_checker.on_witness_leader(self.now_us, id, term);
                }
                self.update_connectivity();
            }
            // Its host answers the writes waiting on it "outcome unknown" and stops its
            // snapshot sends (`Work::Answer`, `Work::StopSnapshotSends`).
            Event::SteppedDown { .. } => self.membership_checker.on_stepped_down(id),
            _ => {}
        }
    }

    // ----- clients -----

    fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.frozen && n.replica().is_some_and(|r| r.role() == Role::Leader))
            .max_by_key(|(_, n)| n.replica().map(|r| r.term()))
            .map(|(index, _)| index)
    }

    /// What the leader's status says a failover now would lose (`Host::failover_loss`,
    /// the console's "what a failover would lose") must never be less than what it
    /// would: the committed entries beyond the longest matching log among the data
    /// voters that could take over (what each holds now, or on its disk if it is down).
    fn check_failover_estimate(&mut self) {
        let Some(leader) = self.leader() else { return };
        let host = self.nodes[leader].host.as_ref().expect("a leader is alive");
        let claimed = host.failover_loss();
        let (config, commit) = (host.replica.config(), host.replica.commit_index());
        let leader_log = &self.nodes[leader].memory;
        let mut truth: Option<u64> = None;
        let mut held = Vec::new();
        for member in config.members.iter().filter(|m| m.voter && !m.witness && m.id != host.replica.id()) {
            let Some(node) = self.nodes.get(usize::from(member.id.0 - 1)) else { continue };
            let log = if node.host.is_some() { &node.memory } else { &node.durable };
            // Logs that hold the same entry at an index hold the same ones before it.
            let mut index = commit.min(log.last_index());
            while index > 0 && log.entry(index) != leader_log.entry(index) {
                index -= 1;
            }
            let lost = commit - index;
            held.push(format!("n{} holds through {index}", member.id.0));
            truth = Some(truth.map_or(lost, |best| best.min(lost)));
        }
        let truth = truth.unwrap_or(0);
        if claimed.entries < truth || claimed.safe != Some(claimed.entries == 0) {
            let id = self.nodes[leader].id.0;
            self.checker.violation_at(
                self.now_us,
                format!("leader n{id} says a failover would lose {claimed:?}, but it would lose {truth} entries (commit {commit}; {})", held.join(", ")),
            );
        }
    }

    /// A client's target: the node it takes for the leader, mostly; any node otherwise
    /// (a local application talks to its own node).
    fn client_target(&mut self) -> usize {
        self.client = self.rng.below(CLIENTS as u64) as usize;
        match self.client_leaders[self.client] {
            Some(leader) if self.rng.below(10) < 9 => leader,
            _ => self.rng.below(self.nodes.len() as u64) as usize,
        }
    }

    /// What a refusal by `from` taught the current client about who leads.
    fn learn_leader(&mut self, from: usize, hint: Option<NodeId>) {
        let believed = &mut self.client_leaders[self.client];
        if *believed == Some(from) || believed.is_none() {
            *believed = hint.map(|id| usize::from(id.0 - 1));
        }
    }

    fn client_write(&mut self) {
        let target = self.client_target();
        if self.client < SESSION_CLIENTS && self.session_clients[self.client].outstanding.is_some() {
            return; // It waits for the answer to its write.
        }
        let Some(host) = self.nodes[target].host.as_ref() else {
            self.learn_leader(target, None);
            return;
        };
        let write_id = self.next_write_id;
        self.next_write_id += 1;
        let kind = match self.rng.below(10) {
            0 => WriteKind::Delete,
            // A client that read the key from this node and sets it if unchanged.
            1 | 2 => WriteKind::Cas {
                expected: host.kv.get(&history::key_bytes(history::key_of(write_id))).map(history::value_of),
            },
            _ => WriteKind::Put,
        };
        self.invoke_write(write_id, kind);
        if self.client < SESSION_CLIENTS {
            self.session_clients[self.client].outstanding = Some((write_id, 0));
            self.schedule(CALL_TIMEOUT_US, Kind::Resend { client: self.client, attempt: 0 });
        }
        self.send_write(target, Sent { write_id, client: self.client, attempt: 0 });
    }

    /// Sends a write to `target`: it arrives within 2 ms, or at the seed's odds for
    /// spikes, after 0.4 to 0.9 s (after its client gave up on it and resent it).
    fn send_write(&mut self, target: usize, sent: Sent) {
        let delay = if self.rng.below(1000) < self.weather.spike_per_mille {
            CALL_TIMEOUT_US + self.rng.below(500_000)
        } else {
            50 + self.rng.below(2_000)
        };
        self.schedule(delay, Kind::WriteArrives { node: target, sent });
    }

    /// A session client sends its write again (same session and number: it takes
    /// effect once), if `attempt` is still its latest.
    fn resend(&mut self, client: usize, attempt: u64) {
        let Some((write_id, latest)) = self.session_clients[client].outstanding else { return };
        if latest != attempt {
            return;
        }
        let attempt = attempt + 1;
        self.session_clients[client].outstanding = Some((write_id, attempt));
        self.schedule(CALL_TIMEOUT_US, Kind::Resend { client, attempt });
        self.client = client;
        let target = match self.client_leaders[client] {
            Some(leader) => leader,
            None => self.rng.below(self.nodes.len() as u64) as usize,
        };
        let sent = Sent { write_id, client, attempt };
        if self.nodes[target].host.is_none() {
            self.learn_leader(target, None);
            return self.retry_soon(sent);
        }
        self.note(|| format!("client {client} resends write {write_id} to n{} (attempt {attempt})", target + 1));
        self.send_write(target, sent);
    }

    /// Attempt `sent` was refused or left unknown: its session client, if it still
    /// waits on that attempt, tries again shortly.
    fn retry_soon(&mut self, sent: Sent) {
        if !self.is_latest_attempt(sent) {
            return;
        }
        let pause = 2_000 + self.rng.below(RETRY_PAUSE_MAX_US - 2_000);
        self.schedule(pause, Kind::Resend { client: sent.client, attempt: sent.attempt });
    }

    /// Whether `sent` is the attempt its session client waits on.
    fn is_latest_attempt(&self, sent: Sent) -> bool {
        sent.client < SESSION_CLIENTS
            && self.session_clients[sent.client].outstanding == Some((sent.write_id, sent.attempt))
    }

    /// A client invokes write `write_id`: its payload is what the log will carry (for a
    /// session client, in its session, numbered by the write id: numbers only rise).
    /// The session is named by id here, as the node's request handler does; the leader
    /// that appends it may name it by number (see `propose`).
    fn invoke_write(&mut self, write_id: u64, kind: WriteKind) {
        let session = (self.client < SESSION_CLIENTS).then(|| {
            let client = &self.session_clients[self.client];
            let session = (self.client as u32) << 8 | u32::from(client.epoch);
            history::SessionWrite { session, acked_seq: client.acked_seq }
        });
        self.history.invoke_write(self.now_us, write_id, kind, session);
        let command = match session {
            Some(history::SessionWrite { session, acked_seq }) => {
                self.write_clients.insert(write_id, self.client);
                let mut id = [0; 16];
                id[..4].copy_from_slice(&(session + 1).to_le_bytes());
                Command::SessionById {
                    id,
                    seq: write_id,
                    acked_seq,
                    at_ms: self.now_us / 1_000,
                    write: Box::new(kind.command(write_id)),
                }
            }
            None => kind.command(write_id),
        };
        self.payloads.insert(write_id, command.encode());
    }

    /// Offers write `write_id` (which reached the node at `since_us`) to `node`; if it
    /// leads and takes it, it is stored; while leadership moves, the node holds it.
    fn propose(&mut self, node: usize, sent: Sent, since_us: u64) {
        let now = self.now_us;
        let Some(host) = self.nodes[node].host.as_mut() else {
            return;
        };
        let command = Command::decode(&self.payloads[&sent.write_id]).expect("the simulator's payloads decode");
        let proposed = host.propose(now, since_us, command, sent);
        self.carry_out_proposal(node, sent, proposed);
        self.after_input(node);
    }

    /// What the node's host made of a write: appended (written to the log, as the host
    /// named it), held, or refused (its client learns what it can and retries).
    fn carry_out_proposal(&mut self, node: usize, sent: Sent, proposed: Proposed<Sent>) {
        self.client = sent.client;
        match proposed {
            Proposed::Appended { seq, position, command } => {
                self.client_leaders[self.client] = Some(node);
                let session_number = match command {
                    Command::SessionByNumber { number, .. } => number,
                    _ => 0,
                };
                let entry = SimEntry { term: position.term, write_id: sent.write_id, session_number };
                self.write(node, seq, Op::Append(position.index, entry));
            }
            Proposed::Held => {} // Proposed again once leadership settles.
            Proposed::Refused { error, reply } => {
                let hint = match error {
                    baton_common::ProposeError::NotLeader { leader_hint } => leader_hint,
                    _ => None,
                };
                self.learn_leader(node, hint);
                self.retry_soon(reply);
            }
        }
    }

    /// Proposes the writes `node` holds again once leadership settled or the oldest has
    /// waited too long, as the node's loop does after each input.
    fn release_held_writes(&mut self, node: usize) {
        let now = self.now_us;
        let n = &mut self.nodes[node];
        let (Some(host), false, false) = (n.host.as_mut(), n.frozen, n.releasing) else { return };
        if host.held_len() == 0 {
            return;
        }
        let released = host.release_held(now);
        n.releasing = true;
        for proposed in released {
            let sent = match &proposed {
                Proposed::Appended { position, .. } => {
                    self.nodes[node].live().write_waiting_at(position.index).copied().expect("just appended")
                }
                Proposed::Held => continue,
                Proposed::Refused { reply, .. } => *reply,
            };
            self.carry_out_proposal(node, sent, proposed);
        }
        self.after_input(node);
        self.nodes[node].releasing = false;
    }

    /// Cuts `node` off from every other node for a while, at the seed's odds.
    fn maybe_isolate(&mut self, node: usize) {
        if self.now_us >= self.safety_end_us || self.rng.below(1000) >= self.weather.isolate_per_mille {
            return;
        }
        self.isolate(node, "at its moment");
    }

    /// Cuts `node` off from every other node until a heal, 0.3 to 3.3 s from now.
    fn isolate(&mut self, node: usize, why: &str) {
        self.update_connectivity();
        for other in 0..self.nodes.len() {
            self.blocked[node][other] = other != node;
            self.blocked[other][node] = other != node;
        }
        self.note(|| format!("FAULT isolate n{} {why}", node + 1));
        let duration = 300_000 + self.rng.below(3_000_000);
        self.schedule(duration, Kind::Heal);
        self.update_connectivity();
    }

    /// The crash of `node` within `within_us`, at the seed's odds.
    fn maybe_snap_crash(&mut self, node: usize, within_us: u64) {
        if self.now_us >= self.safety_end_us || self.rng.below(1000) >= self.weather.snap_crash_per_mille {
            return;
        }
        let incarnation = self.nodes[node].incarnation;
        let delay = self.rng.below(within_us);
        self.note(|| format!("FAULT snap crash of n{} in {delay}us", node + 1));
        self.schedule(delay, Kind::SnapCrash { node, incarnation });
    }

    /// A `--read leader` read of a random key, mostly sent to the leader: admitted if
    /// the core gives a read index, served once the node has applied it.
    fn client_read(&mut self) {
        // A fifth are `--read any` reads at a random node: served at once from what it
        // has applied, with its applied index.
        if self.rng.below(5) == 0 {
            let node = self.rng.below(self.nodes.len() as u64) as usize;
            let key = self.rng.below(history::KEYS) as u32;
            self.read_at(node, key, ReadAt::Any, WaitingRead::Any { key });
            return;
        }
        // A third of the rest are a client's read of its own latest acknowledged write,
        // `--read after:INDEX`, at any node (a local application's own, mostly a follower).
        if self.rng.below(3) == 0 {
            let node = self.rng.below(self.nodes.len() as u64) as usize;
            if let Some((index, acked)) = self.last_ack {
                let key = history::key_of(acked.write_id);
                self.read_at(node, key, ReadAt::After(index), WaitingRead::After { index, acked });
            }
            return;
        }
        let target = self.client_target();
        let key = self.rng.below(history::KEYS) as u32;
        let invoked = self.history.stamp(self.now_us);
        if self.nodes[target].frozen {
            self.nodes[target].queued_reads.push((key, invoked));
        } else {
            self.read_on(target, key, invoked);
        }
    }

    fn read_on(&mut self, target: usize, key: u32, invoked: history::Stamp) {
        if self.nodes[target].host.is_none() {
            return self.learn_leader(target, None);
        }
        self.read_at(target, key, ReadAt::Leader, WaitingRead::Leader { key, invoked });
    }

    /// A read of `key` at `node` through the node's host: admitted and served once the
    /// node has applied the index it must be served at, or refused.
    fn read_at(&mut self, node: usize, key: u32, at: ReadAt, read: WaitingRead) {
        let now = self.now_us;
        let n = &mut self.nodes[node];
        let (Some(host), false) = (n.host.as_mut(), n.frozen) else { return };
        match host.read(now, history::key_bytes(key), at, read) {
            Ok(()) => self.after_input(node),
            Err((ReadRefusal::Core(baton_common::ReadError::NotLeader { leader_hint }), _)) => {
                self.learn_leader(node, leader_hint)
            }
            Err(_) => {}
        }
    }

    /// Requests `node` has kept waiting too long, answered as the node's driver does:
    /// a write "outcome unknown" (its client retries), a read with a time-out (its
    /// client hears no value; nothing enters the history).
    fn expire_requests(&mut self, node: usize) {
        let now = self.now_us;
        let n = &mut self.nodes[node];
        let (Some(host), false) = (n.host.as_mut(), n.frozen) else { return };
        let expired = host.expire(now, REQUEST_TIMEOUT_US);
        self.requests_expired += (expired.writes.len() + expired.reads.len()) as u64;
        for (_, sent) in expired.writes {
            self.retry_soon(sent);
        }
    }

    fn serve_reads(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let (Some(host), false) = (n.host.as_mut(), n.frozen) else { return };
        for served in host.take_served_reads() {
            let value = served.value.as_deref().map(history::value_of);
            match served.reply {
                WaitingRead::Leader { key, invoked } => self.history.read(key, value, invoked, self.now_us),
                WaitingRead::After { index, acked } => {
                    // Async mode keeps no promise on a node whose log went another way
                    // (its entry at INDEX is not the write, to be discarded later).
                    let diverged = self.nodes[node].applied.get(index as usize - 1) != Some(&acked);
                    if !(self.mode == WriteMode::Async && diverged) {
                        self.history.after_read(index, acked, value);
                    }
                }
                WaitingRead::Any { key } => {
                    let (id, incarnation) = (self.nodes[node].id.0, self.nodes[node].incarnation);
                    self.history.any_read(id, incarnation, key, value, served.applied_index, self.now_us);
                }
            }
        }
    }

    // ----- faults -----

    fn inject_fault(&mut self) {
        self.check_failover_estimate();
        self.update_connectivity();
        let count = self.nodes.len() as u64;
        let started: Vec<usize> = (0..self.nodes.len()).filter(|&n| self.nodes[n].started).collect();
        let victim = started[self.rng.below(started.len() as u64) as usize];
        if self.weather.disk_full_per_mille > 0 && self.rng.below(1000) < self.weather.disk_full_per_mille {
            return self.fill_disk(victim);
        }
        match self.rng.below(10) {
            0 | 1 => {
                if self.nodes[victim].host.is_some() {
                    self.crash(victim);
                    let downtime = 100_000 + self.rng.below(3_000_000);
                    self.schedule(downtime, Kind::Restart(victim));
                }
            }
            2 => {
                let victim = self.leader().unwrap_or(victim);
                if !self.nodes[victim].frozen && self.nodes[victim].host.is_some() {
                    self.note(|| format!("FAULT freeze n{}", victim + 1));
                    self.update_connectivity();
                    self.nodes[victim].frozen = true;
                    self.detach_watches(victim);
                    let pause = 300_000 + self.rng.below(4_000_000);
                    self.schedule(pause, Kind::Unfreeze(victim));
                }
            }
            3 | 4 => {
                // A symmetric split into two random sides.
                let mask = self.rng.next_u64();
                let side = |i: usize| (mask >> i) & 1;
                for a in 0..self.nodes.len() {
                    for b in 0..self.nodes.len() {
                        self.blocked[a][b] = side(a) != side(b);
                    }
                }
                self.note(|| format!("FAULT partition mask {:b}", mask & 0x1f));
                let duration = 300_000 + self.rng.below(3_000_000);
                self.schedule(duration, Kind::Heal);
            }
            5 => {
                // Asymmetric: a few one-way links fail.
                for _ in 0..1 + self.rng.below(3) {
                    let a = self.rng.below(count) as usize;
                    let b = self.rng.below(count) as usize;
                    self.blocked[a][b] = a != b;
                }
                self.note(|| "FAULT one-way links".to_string());
                let duration = 300_000 + self.rng.below(3_000_000);
                self.schedule(duration, Kind::Heal);
            }
            6 => {
                if let Some(leader) = self.leader() {
                    self.isolate(leader, "(the leader)");
                }
            }
            7 => self.operator_switchover(),
            8 => {
                let now = self.now_us;
                let n = &mut self.nodes[victim];
                if let (Some(host), false) = (n.host.as_mut(), n.frozen) {
                    let result = host.campaign(now, false);
                    self.note(|| format!("OPERATOR failover to n{}: {result:?}", victim + 1));
                    self.after_input(victim);
                }
            }
            _ => {
                if let Some(leader) = self.leader() {
                    let now = self.now_us;
                    let host = self.nodes[leader].live();
                    let paused = !host.replica.hard_state().paused;
                    let _ = host.set_paused(now, paused);
                    self.note(|| format!("OPERATOR paused={paused}"));
                    self.after_input(leader);
                }
            }
        }
        self.update_connectivity();
    }

    /// An operator's membership change at the leader, during faults as they come: add
    /// the next node as a learner (started before or after), promote a learner, remove
    /// a member (and, once that committed, maybe shut it down), change a priority, or
    /// try to add a removed id back (which must be refused). Some are dry runs.
    fn operator_membership(&mut self) {
        let Some(leader) = self.leader() else { return };
        let replica = self.nodes[leader].replica().expect("leader is alive");
        let current = replica.memberships().current().clone();
        let leader_id = replica.config().id;
        let pick = |rng: &mut Rng, ids: &[NodeId]| (!ids.is_empty()).then(|| ids[rng.below(ids.len() as u64) as usize]);
        let learners: Vec<NodeId> = current.members.iter().filter(|m| !m.voter).map(|m| m.id).collect();
        let others: Vec<NodeId> = current.members.iter().filter(|m| m.id != leader_id).map(|m| m.id).collect();
        let removed: Vec<NodeId> = (1..current.next_id).map(NodeId).filter(|id| current.is_removed(*id)).collect();
        let next_slot = usize::from(current.next_id) - 1;
        let name = |id: NodeId| sim_entry(id).name;
        let request = match self.rng.below(10) {
            0..=2 if next_slot < self.nodes.len() => {
                if !self.nodes[next_slot].started {
                    // The order of `member add` and the node's start must not matter.
                    let delay = if self.rng.below(2) == 0 { 0 } else { self.rng.below(JOIN_DELAY_MAX_US) };
                    self.schedule(delay, Kind::Join(next_slot));
                }
                let MemberEntry { name, addr, .. } = sim_entry(NodeId(current.next_id));
                let (witness, priority) = (self.rng.below(3) == 0, self.rng.below(3) as u8);
                // Half the learners are promoted by the leader once caught up (the
                // node's own rule, `Host::promote_caught_up`), half only by hand.
                let learner_only = witness || self.rng.below(2) == 0;
                MemberRequest::Add { name, addr, priority, learner_only, upstream: None, witness }
            }
            0..=5 => match pick(&mut self.rng, &learners) {
                Some(id) => MemberRequest::Promote { name: name(id) },
                None => return,
            },
            6 | 7 => match pick(&mut self.rng, &others) {
                Some(id) => MemberRequest::Remove { name: name(id) },
                None => return,
            },
            8 => match pick(&mut self.rng, &others) {
                Some(id) => MemberRequest::SetPriority { name: name(id), priority: self.rng.below(4) as u8 },
                None => return,
            },
            _ => match pick(&mut self.rng, &removed) {
                // The host refuses a removed name before the core sees it; the core must
                // refuse the removed id on its own as well (a host whose records lag).
                Some(id) => return self.propose_removed_id_again(leader, id),
                None => return,
            },
        };
        let dry_run = self.rng.below(8) == 0;
        let now = self.now_us;
        let decision = self.nodes[leader].live().decide_members(now, request.clone(), dry_run);
        self.note(|| format!("OPERATOR membership {request:?} (dry run {dry_run}): {decision:?}"));
        if let (
            MemberRequest::Add { name, .. },
            MemberDecision::Judged { node_id, .. } | MemberDecision::Proposed { node_id, .. },
        ) = (&request, &decision)
        {
            if removed.iter().any(|id| sim_entry(*id).name == *name) {
                self.checker
                    .violations
                    .push(format!("t={now}us: n{} took back removed {name} as id {node_id}", leader + 1));
            }
        }
        let MemberDecision::Proposed { proposal, record, .. } = decision else { return };
        let change = record.change.expect("a change's record names it");
        self.append_member_record(leader, proposal, record);
        // A change in flight is a moment that matters: the leader may crash or be cut
        // off before it commits, so the next election runs with two memberships (a
        // node being removed that holds the longest log must not stop it; a vote counts
        // only where its node is a voter). Not when it removes itself: that change's
        // moment is when it commits, and the leader must then hand over.
        if change != (Change::Remove { id: self.nodes[leader].id }) {
            self.maybe_snap_crash(leader, SNAP_CRASH_LEADER_MAX_US);
            self.maybe_isolate(leader);
        }
        // A removal's moment is once the entry reached the others and before the leader
        // heard their acknowledgements: if the leader crashes then, the node being
        // removed may win the next election with the removal in its log (it may lead
        // until the removal commits, Raft thesis 4.2.2) and must hand over once it commits
        // it. Half the removals in seeds with aimed crashes.
        if matches!(change, Change::Remove { .. }) && self.weather.snap_crash_per_mille > 0 && self.rng.below(2) == 0 {
            let incarnation = self.nodes[leader].incarnation;
            let delay = self.rng.below(self.weather.delay_max_us.max(1_000));
            self.note(|| format!("FAULT snap crash of n{} in {delay}us (a removal in flight)", leader + 1));
            self.schedule(delay, Kind::SnapCrash { node: leader, incarnation });
        }
        if let (Change::Remove { id }, true) = (change, self.rng.below(2) == 0) {
            let delay = 300_000 + self.rng.below(2_000_000);
            self.schedule(delay, Kind::Decommission(usize::from(id.0) - 1));
        }
        self.after_input(leader);
    }

    /// Appends the leader's membership record at `proposal` (already in its host's
    /// records), as the driver's `append_own_record` does.
    fn append_member_record(&mut self, leader: usize, proposal: Proposal, record: MemberRecord) {
        let write_id = self.next_membership_write_id;
        self.next_membership_write_id += 1;
        self.payloads.insert(write_id, Command::Members(record.clone()).encode());
        self.memberships.insert(write_id, record);
        let entry = SimEntry::new(proposal.position.term, write_id);
        self.write(leader, proposal.seq, Op::Append(proposal.position.index, entry));
    }

    /// An operator asks the leader's core to add back the removed `id` directly: the
    /// core must refuse it on its own.
    fn propose_removed_id_again(&mut self, leader: usize, id: NodeId) {
        let now = self.now_us;
        let change = Change::AddLearner { id, priority: 1 };
        let replica = self.nodes[leader].replica_mut().expect("leader is alive");
        let result = replica.handle_propose_membership(now, change, true);
        self.note(|| format!("OPERATOR membership {change:?} (dry run true): {result:?}"));
        if result.is_ok() {
            self.checker.violations.push(format!("t={now}us: n{} took back removed n{}", leader + 1, id.0));
        }
    }

    /// The leader's own housekeeping for the membership, as the node runs it on its
    /// tick (`Host::choose_cluster_id`, `Host::promote_caught_up`): a cluster whose id
    /// is not chosen yet gets one, and a learner marked to be promoted once caught up is.
    fn tend_members(&mut self, node: usize) {
        let now = self.now_us;
        let Some(host) = self.nodes[node].host.as_mut() else { return };
        if host.replica.role() != Role::Leader {
            return;
        }
        let rng = &mut self.rng;
        let chosen = host.choose_cluster_id(now, || Some(rng.next_u64()));
        let (proposal, record) = match chosen {
            Some(chosen) => chosen,
            None => match host.promote_caught_up(now) {
                Some(promotion) => promotion,
                None => return,
            },
        };
        self.note(|| {
            format!("n{} appends its own record: {:?} (cluster {:016x})", node + 1, record.change, record.cluster_id)
        });
        self.append_member_record(node, proposal, record);
        self.after_input(node);
    }

    /// Shuts `node` down for good, as an operator does with hardware removed from the
    /// cluster, once the leader's committed membership no longer holds it; else later.
    fn decommission(&mut self, node: usize) {
        let id = self.nodes[node].id;
        // As `baton member remove` has an operator wait: the removal committed, and
        // another node leads (a node being removed that came to lead hands over once its
        // removal commits; shut down before, it may leave the others needing its vote).
        let gone = self
            .leader()
            .filter(|&l| l != node)
            .and_then(|l| self.nodes[l].replica())
            .is_some_and(|r| !r.membership_change_pending() && r.memberships().current().is_removed(id));
        if !gone {
            if self.now_us < self.liveness_deadline_us {
                self.schedule(500_000, Kind::Decommission(node));
            }
            return;
        }
        if self.nodes[node].host.is_some() {
            self.crash(node);
        }
        self.note(|| format!("OPERATOR decommissions n{}", node + 1));
        self.nodes[node].started = false;
    }

    fn operator_switchover(&mut self) {
        let Some(leader) = self.leader() else { return };
        let target = match self.rng.below(2) {
            0 => None,
            _ => Some(NodeId(1 + self.rng.below(self.nodes.len() as u64) as u8)),
        };
        let now = self.now_us;
        // By name, as `baton switchover NAME` asks the node's host.
        let name = target.map(|id| format!("n{}", id.0));
        let result = self.nodes[leader].live().switchover(now, name.as_deref(), false);
        self.note(|| format!("OPERATOR switchover {target:?}: {result:?}"));
        self.after_input(leader);
    }

    fn crash(&mut self, node: usize) {
        self.check_state_machine(node);
        self.update_connectivity();
        self.note(|| format!("FAULT crash n{}", node + 1));
        if self.rng.below(1000) < self.weather.written_back_per_mille {
            let n = &mut self.nodes[node];
            let written = self.rng.below(n.pending_ops.len() as u64 + 1) as usize;
            for (_, op) in n.pending_ops.drain(..written) {
                n.durable.apply(&op);
            }
            let count = written;
            self.note(|| format!("n{}'s disk kept {count} unsynced writes", node + 1));
        }
        let id = self.nodes[node].id.0;
        self.membership_checker.on_stepped_down(id);
        let n = &mut self.nodes[node];
        n.durable.gap = false; // Recovery reads the log up to the gap, and goes on from there.
        n.host = None; // With it its state machine, writes it waited to answer or held, reads.
        n.incarnation += 1;
        n.pending_ops.clear();
        n.frozen = false;
        n.inbox.clear();
        n.timer_at = None;
        n.staged_snapshot = None;
        n.snapshot_sends = SnapshotSends::default();
        n.queued_writes.clear();
        n.queued_reads.clear();
        n.memory = n.durable.clone();
        n.watchers = Watchers::new();
        self.detach_watches(node);
    }

    /// Consumers watching `node` (crashed or frozen) give it up, as a client whose node
    /// went silent does, and will watch again elsewhere from where they were.
    fn detach_watches(&mut self, node: usize) {
        for consumer in &mut self.consumers {
            if let Some((at, _, id)) = consumer.at.filter(|(at, ..)| *at == node) {
                self.nodes[at].watchers.close(id);
                consumer.at = None;
            }
        }
    }

    /// The node's turn for its watches (the driver does this at the end of every
    /// turn): consumers that watch nowhere may open their watch here; the node's
    /// watchers move on through its applied log into the consumers that have room.
    fn pump_watches(&mut self, node: usize) {
        if self.nodes[node].host.is_none() || self.nodes[node].frozen {
            return;
        }
        let incarnation = self.nodes[node].incarnation;
        let applied = self.nodes[node].live().kv.applied_index();
        for c in 0..self.consumers.len() {
            if self.consumers[c].at.is_none() && self.rng.below(4) == 0 {
                let (prefix, from) = (self.consumers[c].prefix.clone(), self.consumers[c].next_index());
                if let Ok(id) = self.nodes[node].watchers.open(prefix, from, applied) {
                    self.consumers[c].at = Some((node, incarnation, id));
                    self.consumers[c].opens += 1;
                }
            }
        }
        let here: Vec<u64> =
            self.consumers.iter().filter_map(|c| c.at.filter(|(at, ..)| *at == node).map(|(_, _, id)| id)).collect();
        let room: HashSet<u64> = here.into_iter().filter(|_| self.rng.below(4) != 0).collect();
        let mut sink = TurnSink { room: &room, delivered: Vec::new(), ended: Vec::new() };
        let Node { watchers, memory, host, .. } = &mut self.nodes[node];
        let kv = &host.as_ref().expect("a live node").kv;
        let payloads = &self.payloads;
        let log = |index: u64| {
            let entry = memory.entry(index)?;
            Some((entry.term, payload_of(payloads, entry)))
        };
        watchers.pump(self.now_us, applied, 1, kv.changed(), &log, &mut sink);
        self.route_watch_output(node, incarnation, sink.delivered, sink.ended, applied);
    }

    /// Hands what a node's watchers produced to the consumers watching there.
    fn route_watch_output(
        &mut self,
        node: usize,
        incarnation: u64,
        delivered: Vec<(u64, baton_host::watch::Batch)>,
        ended: Vec<(u64, baton_host::watch::End)>,
        applied: u64,
    ) {
        let consumer_of = |consumers: &mut Vec<Consumer>, id: u64| {
            consumers.iter_mut().position(|c| c.at == Some((node, incarnation, id)))
        };
        for (id, batch) in delivered {
            if let Some(c) = consumer_of(&mut self.consumers, id) {
                self.consumers[c].take(batch);
            }
        }
        for (id, end) in ended {
            if let Some(c) = consumer_of(&mut self.consumers, id) {
                self.note(|| format!("n{} ends watch {id}: {end:?}", node + 1));
                self.consumers[c].ended(end, applied + 1);
            }
        }
    }

    /// The node's state machine holds what the model makes of the entries it applied.
    fn check_state_machine(&mut self, node: usize) {
        let n = &self.nodes[node];
        let Some(Host { kv, .. }) = n.host.as_ref() else {
            return;
        };
        let applied: Vec<u64> = n.applied.iter().map(|e| e.write_id).collect();
        let expected = self.history.model_values(&applied);
        let held: Vec<Option<u64>> =
            (0..history::KEYS as u32).map(|key| kv.get(&history::key_bytes(key)).map(history::value_of)).collect();
        let keys = expected.iter().filter(|v| v.is_some()).count();
        if held != expected || kv.len() != keys || kv.applied_index() != applied.len() as u64 {
            let violation = format!(
                "n{}'s state machine at applied index {} holds {held:?} ({} keys), but its {} applied entries make {expected:?}",
                n.id.0,
                kv.applied_index(),
                kv.len(),
                applied.len()
            );
            self.checker.violations.push(violation);
        }
    }

    fn restart(&mut self, node: usize) {
        if self.nodes[node].host.is_some() || !self.nodes[node].started {
            return;
        }
        let full_until = self.nodes[node].disk_full_until_us;
        if self.now_us < full_until {
            // `baton-node` refuses to start without room; its supervisor tries again.
            self.note(|| format!("RESTART n{} refused: its disk is full", node + 1));
            self.schedule(full_until - self.now_us + SUPERVISOR_RESTART_MIN_US, Kind::Restart(node));
            return;
        }
        self.note(|| format!("RESTART n{}", node + 1));
        let now = self.now_us;
        let records = self.records_of(&self.nodes[node].durable);
        let memberships = records.membership_log();
        let n = &mut self.nodes[node];

        let recovered =
            Recovered { hard_state: n.durable.hard, log: n.durable.log_terms(), memberships: Some(memberships) };
        let replica = Replica::new(n.config.clone(), recovered, now);
        n.memory = n.durable.clone();
        n.applied = n.durable.snapshot_entries.clone();
        n.host = Some(Host::new(replica, replayed(&self.payloads, &n.applied), records));
        let (id, applied) = (n.id.0, n.applied.clone());
        self.checker.on_state_reset(id, &applied);
        self.after_input(node);
    }

    fn unfreeze(&mut self, node: usize) {
        if !self.nodes[node].frozen {
            return;
        }
        self.note(|| format!("UNFREEZE n{}", node + 1));
        self.nodes[node].frozen = false;
        // A resumed process finds its timers overdue and its sockets full; which it
        // notices first is up to the scheduler, so both orders happen.
        let timers_first = self.rng.below(2) == 0;
        if timers_first {
            self.fire_overdue_timer(node);
        }
        for sent in std::mem::take(&mut self.nodes[node].queued_writes) {
            self.propose(node, sent, self.now_us);
        }
        for (key, invoked) in std::mem::take(&mut self.nodes[node].queued_reads) {
            self.read_on(node, key, invoked);
        }
        let inbox = std::mem::take(&mut self.nodes[node].inbox);
        for envelope in inbox {
            self.deliver(envelope);
        }
        if !timers_first {
            self.fire_overdue_timer(node);
        }
        self.update_connectivity();
    }

    fn fire_overdue_timer(&mut self, node: usize) {
        let now = self.now_us;
        if let Some(replica) = self.nodes[node].replica_mut() {
            replica.handle_timeout(now);
            self.after_input(node);
        }
    }

    fn link_up(&self, a: usize, b: usize) -> bool {
        // A frozen process is a slow one: what reaches it waits in its inbox and is
        // answered when it resumes. Crashes and partitions are what cut a link.
        let alive = |n: usize| self.nodes[n].host.is_some();
        a == b || (!self.blocked[a][b] && !self.blocked[b][a] && alive(a) && alive(b))
    }

    /// Records which links are up right now. Called before and after every change to
    /// the network or to a node, so each link's last-up time is exact.
    fn update_connectivity(&mut self) {
        let count = self.nodes.len();
        for a in 0..count {
            for b in 0..count {
                let up = self.link_up(a, b);
                if up {
                    self.link_up_at_us[a][b] = self.now_us;
                }
                let (generation, was_up) = self.link_generation[a][b];
                self.link_generation[a][b] = (generation + u64::from(up && !was_up), up);
            }
        }
    }

    /// When `node` last had its lease quorum of voters each reachable, if not now: in
    /// every voter set its quorums must hold in (both while a change is in flight).
    fn quorum_lost_at(&self, node: usize) -> Option<u64> {
        let mut lost_at: Option<u64> = None;
        for voters in self.voter_sets(node) {
            let needed = self.mode.lease_quorum(voters.len() as u8) as usize;
            let mut last_up: Vec<u64> = voters
                .iter()
                .map(|&other| if self.link_up(node, other) { self.now_us } else { self.link_up_at_us[node][other] })
                .collect();
            last_up.sort_unstable_by(|a, b| b.cmp(a));
            let whole_until = last_up[needed - 1];
            if whole_until < self.now_us {
                lost_at = Some(lost_at.map_or(whole_until, |at| at.min(whole_until)));
            }
        }
        lost_at
    }

    /// The voter sets (as slots) whose quorums `node`'s acknowledgements need: its
    /// current membership's voters and, while a change is uncommitted, the previous ones.
    fn voter_sets(&self, node: usize) -> Vec<Vec<usize>> {
        let Some(replica) = self.nodes[node].replica() else { return Vec::new() };
        let memberships = replica.memberships();
        let mut sets = vec![memberships.current()];
        if replica.membership_change_pending() {
            sets.extend(memberships.previous());
        }
        sets.iter().map(|m| m.members.iter().filter(|m| m.voter).map(|m| usize::from(m.id.0 - 1)).collect()).collect()
    }

    /// For the membership checker: which voters of each of `node`'s voter sets durably
    /// hold `entry` at `index`, and how many must.
    /// (The current set needs the mode's write quorum; the previous one, while a
    /// change is in flight, enough copies that no election there misses the write.)
    /// Whether `node`'s membership in effect holds `other` as a witness.
    fn is_witness(&self, node: usize, other: usize) -> bool {
        let Some(replica) = self.nodes[node].replica() else { return false };
        let id = NodeId(other as u8 + 1);
        replica.memberships().iter().any(|(_, m)| m.member(id).is_some_and(|m| m.witness))
    }

    fn ack_quorum_facts(&self, node: usize, index: u64, entry: SimEntry) -> Vec<QuorumFacts> {
        self.voter_sets(node)
            .into_iter()
            .enumerate()
            .map(|(set, voters)| QuorumFacts {
                witnesses: voters.iter().filter(|&&v| self.is_witness(node, v)).map(|&v| v as u8 + 1).collect(),
                need: match set {
                    0 => self.mode.write_quorum(voters.len() as u8),
                    _ => self.mode.election_overlap(voters.len() as u8),
                },
                holders: voters
                    .iter()
                    .filter(|&&v| self.nodes[v].durable.entry(index) == Some(entry))
                    .map(|&v| v as u8 + 1)
                    .collect(),
                voters: voters.iter().map(|&v| v as u8 + 1).collect(),
            })
            .collect()
    }

    /// The membership in effect after `entries` (a log from index 1).
    fn membership_at_end(&self, entries: &[SimEntry]) -> Membership {
        self.record_at_end(entries).membership
    }

    /// The membership record in effect after `entries`: the last membership entry's,
    /// or the one the cluster was formed with.
    fn record_at_end(&self, entries: &[SimEntry]) -> MemberRecord {
        entries
            .iter()
            .rev()
            .find(|e| is_membership_write(e.write_id))
            .map_or_else(|| sim_record(self.initial_membership.clone()), |e| self.memberships[&e.write_id].clone())
    }

    /// What a restarting node's host reads back from its disk: the record at its
    /// snapshot, then every membership entry's in its log (as `baton_node::server` does).
    fn records_of(&self, storage: &Storage) -> MemberRecords {
        let snapshot = storage.snapshot.index;
        let mut records = MemberRecords::new(snapshot, self.record_at_end(&storage.snapshot_entries));
        for (offset, entry) in storage.log.iter().enumerate() {
            if is_membership_write(entry.write_id) {
                records.push(snapshot + 1 + offset as u64, self.memberships[&entry.write_id].clone());
            }
        }
        records
    }

    /// Ends a fault; at the end of the safety phase, ends every fault for good.
    fn heal(&mut self) {
        self.update_connectivity();
        for row in &mut self.blocked {
            row.iter_mut().for_each(|b| *b = false);
        }
        self.note(|| "HEAL".to_string());
        if self.now_us >= self.safety_end_us && self.weather.drop_per_mille != u64::MAX {
            // Marks the final heal, so later ones do not start a second liveness loop.
            self.weather = Weather { drop_per_mille: u64::MAX, ..Weather::CALM };
            for node in 0..self.nodes.len() {
                self.nodes[node].disk_full_until_us = 0; // The operator made room.
                self.unfreeze(node);
                self.restart(node);
            }
            self.schedule(100_000, Kind::Liveness);
        }
        self.update_connectivity();
    }

    /// Liveness phase: an operator resumes a paused cluster (with a manual failover if
    /// nobody leads), and the run ends once a write made after healing is acknowledged
    /// and applied everywhere.
    fn liveness_step(&mut self) {
        let now = self.now_us;
        let any_paused = self.nodes.iter().any(|n| n.replica().is_some_and(|r| r.hard_state().paused));
        match self.leader() {
            Some(leader) => {
                let replica = self.nodes[leader].replica_mut().expect("alive");
                if replica.hard_state().paused {
                    let _ = replica.handle_set_paused(now, false);
                    self.after_input(leader);
                }
                // Probe with a fresh write whenever the last probe is stranded.
                let stale = self.barrier.is_none_or(|(node, _, _, at)| {
                    !self.barrier_acked && (node != leader || now > at + 2 * ELECTION_TIMEOUT_US)
                });
                if stale {
                    self.propose_barrier(leader);
                }
            }
            None if any_paused && now > self.safety_end_us + 2 * ELECTION_TIMEOUT_US => {
                // The operator fails over by hand to the most up-to-date node that may
                // campaign (as `baton failover --dry-run` says: a node whose removal is
                // not committed yet may, and may be the only one that can win); if that
                // did not elect it, to the next one (its removal may have committed
                // where it does not know: the others then ignore it; seed 59688).
                let mut candidates: Vec<usize> = (0..self.nodes.len())
                    .filter(|&n| self.nodes[n].replica_mut().is_some_and(|r| r.handle_campaign(now, true).is_ok()))
                    .collect();
                // (Among equal logs, a member rather than a node being removed.)
                candidates.sort_by_key(|&n| {
                    let replica = self.nodes[n].replica();
                    Reverse(replica.map(|r| (r.log().last_position(), r.config().me().eligible())))
                });
                let best = (!candidates.is_empty()).then(|| candidates[self.manual_failovers % candidates.len()]);
                self.manual_failovers += 1;
                if let Some(best) = best {
                    let _ = self.nodes[best].replica_mut().expect("all alive when healed").handle_campaign(now, false);
                    self.after_input(best);
                }
            }
            None => {}
        }
        if let (true, Some((_, index, entry, _))) = (self.barrier_acked, self.barrier) {
            // Every node applied the probe write itself at its index (not merely as many
            // entries: a node whose log went another way has as many, and must first be
            // brought onto the leader's log).
            // (Of the members: a node removed and still running hears nothing more.)
            let members = self.leader().and_then(|l| self.nodes[l].replica()).map(|r| r.config().members.clone());
            self.converged = members.is_some_and(|members| {
                self.nodes
                    .iter()
                    .filter(|n| members.iter().any(|m| m.id == n.id))
                    .all(|n| n.applied.get(index as usize - 1) == Some(&entry))
            });
        }
        if !self.converged {
            self.schedule(100_000, Kind::Liveness);
        }
    }

    fn propose_barrier(&mut self, leader: usize) {
        let now = self.now_us;
        let host = self.nodes[leader].live();
        let Ok(proposal) = host.replica.handle_propose(now) else { return };
        let entry = SimEntry::new(proposal.position.term, self.next_write_id);
        self.next_write_id += 1;
        let position = proposal.position;
        let sent = Sent { write_id: entry.write_id, client: CLIENTS - 1, attempt: 0 };
        self.nodes[leader].live().appended_own(position, proposal.seq, now, sent);
        self.client = CLIENTS - 1; // A plain write, outside every session.
        self.invoke_write(entry.write_id, WriteKind::Put); // Its payload, before it is written.
        self.write(leader, proposal.seq, Op::Append(proposal.position.index, entry));
        self.barrier = Some((leader, proposal.position.index, entry, now));
        self.barrier_acked = false;
        self.after_input(leader);
    }
}

/// A simulated node's log as its host reads it: each entry's payload is its write's.
struct SimLog<'a> {
    memory: &'a Storage,
    payloads: &'a HashMap<u64, Vec<u8>>,
}

impl Entries for SimLog<'_> {
    fn entry(&self, index: u64) -> Option<(u64, Cow<'_, [u8]>)> {
        let entry = self.memory.entry(index)?;
        Some((entry.term, Cow::Owned(payload_of(self.payloads, entry))))
    }
}

/// A state machine that applied `entries` (the first ones of a log) from nothing, as a
/// node's is after it loads a snapshot or rebuilds without discarded writes.
fn replayed(payloads: &HashMap<u64, Vec<u8>>, entries: &[SimEntry]) -> Kv {
    let mut kv = Kv::default();
    for (position, entry) in entries.iter().enumerate() {
        kv.apply(position as u64 + 1, entry.term, &payload_of(payloads, *entry));
    }
    kv
}

/// The bytes entry `entry` carries: its write as the client made it, with the session
/// named by number if the leader named it so when it appended the entry.
fn payload_of(payloads: &HashMap<u64, Vec<u8>>, entry: SimEntry) -> Vec<u8> {
    let Some(payload) = payloads.get(&entry.write_id) else { return Vec::new() };
    if entry.session_number == 0 {
        return payload.clone();
    }
    let command = Command::decode(payload).expect("the simulator's payloads decode");
    command.by_number(entry.session_number).encode()
}

/// A node `id` that knows `members`, as formed (or started to join), with an empty disk.
fn new_node(id: NodeId, members: &heapless::Vec<Member, NODES_MAX>, mode: WriteMode, seed: u64, rng: &mut Rng) -> Node {
    let config = Config {
        id,
        members: members.clone(),
        mode,
        heartbeat_interval_us: HEARTBEAT_US,
        election_timeout_us: ELECTION_TIMEOUT_US,
        max_lag_entries: 50 + rng.below(200),
        snapshot_timeout_us: 3 * ELECTION_TIMEOUT_US,
        seed: seed.wrapping_mul(31).wrapping_add(u64::from(id.0)),
    };
    config.validate().expect("simulator configs are valid");
    let replica = Replica::new(config.clone(), Recovered::empty(), 0);
    // Its host's membership records (`baton_host::members`, the node's own code): after
    // every input they must agree with the core's.
    let records = MemberRecords::new(0, sim_record(Membership::new(members.clone())));
    Node {
        id,
        started: true,
        config,
        host: Some(Host::new(replica, Kv::default(), records)),
        incarnation: 0,
        memory: Storage::default(),
        durable: Storage::default(),
        pending_ops: VecDeque::new(),
        disk_full_until_us: 0,
        applied: Vec::new(),
        timer_at: None,
        frozen: false,
        inbox: Vec::new(),
        staged_snapshot: None,
        snapshot_sends: SnapshotSends::default(),
        queued_writes: Vec::new(),
        releasing: false,
        queued_reads: Vec::new(),
        first_commit_term: 0,
        watchers: Watchers::new(),
    }
}

/// A membership record as the node's host stores it, with made-up names and addresses.
fn sim_record(membership: Membership) -> MemberRecord {
    let directory = membership.members.iter().map(|m| sim_entry(m.id)).collect();
    MemberRecord { cluster_id: 0, membership, directory, change: None }
}

fn sim_entry(id: NodeId) -> MemberEntry {
    let (name, addr) = (format!("n{}", id.0), format!("sim:{}", id.0));
    MemberEntry { id: id.0, name, addr, promote_when_caught_up: false, upstream: None }
}
