//! A node's status as it reports it: the core's view plus what the host knows (applied
//! index, address), and, on the leader, its view of every follower.

use serde::{Deserialize, Serialize};

/// Every answer type here reads with `#[serde(default)]`: a field a newer or older node
/// does not send takes its default (see `frame::Json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    pub id: String,
    /// The node's build (`baton-node --version`), for rolling upgrades.
    pub version: String,
    pub addr: String,
    /// follower, pre-candidate, candidate or leader.
    pub role: String,
    pub term: u64,
    pub leader: Option<String>,
    pub mode: String,
    pub last_index: u64,
    pub last_term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub durable_index: u64,
    pub snapshot_index: u64,
    /// The installed snapshot's size on disk.
    pub snapshot_bytes: u64,
    /// Snapshots this node wrote itself (log compaction) and received from a leader,
    /// since it started.
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    /// While a snapshot arrives from the leader: how much of it has, in percent.
    pub snapshot_receiving_percent: Option<u8>,
    /// The log's bound: a snapshot is taken when the log reaches half of it.
    pub max_log_bytes: u64,
    pub paused: bool,
    /// On the leader: whether every acknowledged write would survive the leader's loss
    /// now, and if not, how many acknowledged entries the best follower lacks (async).
    pub failover_safe: Option<bool>,
    pub failover_loss_entries: u64,
    /// How long the log's group-commit fsyncs took.
    pub fsync_latency: LatencyHistogram,
    /// The leader's view of each follower (empty elsewhere).
    pub followers: Vec<FollowerStatus>,
    /// Entries this node has caught up through replication since it started.
    pub entries_received: u64,
    pub wal_bytes: u64,
    /// Connections refused at the TLS handshake (another CA, no certificate, ...).
    pub handshakes_refused: u64,
    /// Connections refused at the hello (wrong id, unknown node, wrong protocol).
    pub hellos_refused: u64,
    /// Connections closed for a malformed frame.
    pub malformed_frames: u64,
    /// Frames to peers dropped because a link was down or saturated.
    pub frames_dropped: u64,
    /// Writes this node discarded since it started (async mode; see `baton discarded`).
    pub discarded_entries: u64,
    /// Free space on the disk holding the data directory (None if it could not be read).
    pub disk_free_bytes: Option<u64>,
    /// Every member of the cluster as this node knows it (itself included): a tool
    /// given one address finds the others.
    pub members: Vec<MemberAddr>,
    /// This node in its own membership: voter, learner, removed, or "not yet a member"
    /// (empty from nodes before live membership).
    pub membership_role: String,
    /// Cascading learners: append requests this node (as leader) sent through an
    /// upstream, those it passed on as an upstream, and those it could not.
    pub relays_sent: u64,
    pub frames_relayed: u64,
    pub relays_dropped: u64,
    /// What the node's process has cost its machine so far: bytes written to storage,
    /// fsyncs, CPU time, and resident memory now.
    pub cost: crate::cost::ProcessCost,
    /// Keys in the key-value map, and their keys' and values' bytes summed.
    pub keys: u64,
    pub data_bytes: u64,
    /// Client sessions the state machine holds (see `baton_node::session`).
    pub sessions: u64,
    /// Resent writes this node answered with their first outcome instead of applying
    /// them again, since it started.
    pub duplicate_writes: u64,
    /// Client writes this node acknowledged as leader since it started, and how long each
    /// took from arrival to acknowledgement: two samples give the write rate and latency.
    pub writes_acknowledged: u64,
    pub write_ack_latency: LatencyHistogram,
    /// When this node's certificate stops being valid (Unix seconds), as last loaded.
    pub certificate_not_after_unix_s: Option<i64>,
    /// Peer certificates accepted although this node's clock read earlier than their
    /// start: the clock is behind (see `baton_node::tls`).
    pub clock_behind_accepts: u64,
    /// This node's wall clock when it answered (Unix milliseconds): a tool compares it
    /// with its own.
    pub clock_unix_ms: u64,
    /// Certificates the cluster revoked, as this node has applied them: "holder sha256".
    pub revoked_certificates: Vec<String>,
    /// Watches this node serves now (see `baton_host::watch`), and since it started: how
    /// many were opened, refused (the limit), ended because their next entry was
    /// compacted or discarded, and how many changes they were sent.
    pub watchers: u64,
    pub watches_opened: u64,
    pub watches_refused: u64,
    pub watches_ended: u64,
    pub watch_changes_sent: u64,
    /// Client requests this node forwarded to the leader (see `baton_node::forward`).
    pub requests_forwarded: u64,
}

/// A cluster member's id and the address the node reaching it uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberAddr {
    pub id: String,
    pub addr: String,
    /// "voter", "learner" or "witness" (empty from nodes before live membership).
    pub role: String,
    /// The numeric id the cluster gave it (never reused).
    pub node_id: u8,
    /// 0: never leader; higher wins an election tie.
    pub priority: u8,
    /// The member it receives the log through (empty: the leader).
    pub upstream: String,
}

/// `baton member list`: the members as one node knows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    /// The node that answered, and whether it leads.
    pub from: String,
    pub leader: Option<String>,
    /// The record in effect at the end of its log (a joining node starts from it).
    pub record: baton_host::members::MemberRecord,
    /// The index of the newest membership change, and whether it has committed.
    pub change_index: u64,
    pub change_pending: bool,
    /// The quorums of the current voters in the write mode.
    pub mode: String,
    pub write_quorum: u8,
    pub election_quorum: u8,
}

/// A membership change's verdict (see `frame::Request::ChangeMembers`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MembersVerdict {
    pub accepted: bool,
    pub dry_run: bool,
    /// The node the change is about, and its id (a new node's id is handed out here).
    pub name: String,
    pub node_id: u8,
    /// Why it is refused, each in words an operator can act on.
    pub reasons: Vec<String>,
    /// Refused only because it would remove the leader: after a switchover it may pass.
    pub removes_leader: bool,
    /// Voters and learners after the change, and the quorums they give.
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    pub write_quorum: u8,
    pub election_quorum: u8,
}

impl NodeStatus {
    /// Space the node may still need on its data disk: the log growing to its bound, and
    /// one more snapshot written beside the current one before it is replaced.
    pub fn disk_headroom_bytes(&self) -> u64 {
        self.max_log_bytes.saturating_sub(self.wal_bytes).saturating_add(self.snapshot_bytes)
    }
}

/// A write this node discarded (async mode): it may have been acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscardedWrite {
    pub at_unix_ms: u64,
    pub term: u64,
    pub index: u64,
    /// put, delete, cas, noop or undecodable.
    pub op: String,
    pub key: String,
    pub value: Option<String>,
    /// Its number in the node's journal (from 1; see `baton_node::discarded`).
    pub record: u64,
    /// The value was cut to fit an answer (the node's journal file holds it whole).
    pub value_truncated: bool,
}

/// One leadership change as a node saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryEntry {
    pub term: u64,
    /// Wall-clock time the node saw it, in Unix milliseconds.
    pub at_unix_ms: u64,
    pub from: Option<String>,
    pub to: Option<String>,
    /// timeout, switchover or manual; known to the node that won.
    pub cause: Option<String>,
    /// Entries this node discarded in that term (async mode).
    pub discarded_entries: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FollowerStatus {
    pub id: String,
    /// The address this node reaches it at (lets a tool name a node it cannot reach).
    pub addr: String,
    pub match_index: u64,
    pub lag_entries: u64,
    /// The size of the entries it lacks (a lower bound when they are older than the
    /// leader's in-memory cache).
    pub lag_bytes: u64,
    /// How old the oldest entry the follower lacks is, in milliseconds (0 if none; a
    /// lower bound when that entry is older than the leader's in-memory cache).
    pub lag_ms: u64,
    pub last_ack_age_ms: Option<u64>,
    /// How long it has been behind without its match index moving (0 when caught up or
    /// moving): connected yet stuck for long means stalled.
    pub stuck_ms: u64,
    pub in_sync: bool,
    /// probe, replicate or snapshot.
    pub state: String,
    /// In the snapshot state: how much of the snapshot was sent, in percent.
    pub snapshot_percent: Option<u8>,
}

/// Upper bounds of the latency buckets, in microseconds (Prometheus-style, cumulative).
pub const LATENCY_BUCKETS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

/// A latency histogram with fixed buckets: `buckets[i]` counts samples at or under
/// `LATENCY_BUCKETS_US[i]`; larger ones count only in `count`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyHistogram {
    pub count: u64,
    pub sum_us: u64,
    pub buckets: [u64; LATENCY_BUCKETS_US.len()],
}

impl LatencyHistogram {
    /// The upper bound (µs) of the bucket holding quantile `q` (0..=1) of the samples
    /// recorded between `earlier` and `self`; `None` without samples, `u64::MAX` when it
    /// is above the largest bucket.
    pub fn quantile_since(&self, earlier: &LatencyHistogram, q: f64) -> Option<u64> {
        let count = self.count.checked_sub(earlier.count).filter(|c| *c > 0)?;
        let wanted = (count as f64 * q).ceil().max(1.0) as u64;
        for ((now, then), bound) in self.buckets.iter().zip(&earlier.buckets).zip(LATENCY_BUCKETS_US) {
            if now.saturating_sub(*then) >= wanted {
                return Some(bound);
            }
        }
        Some(u64::MAX)
    }

    pub fn record(&mut self, elapsed: std::time::Duration) {
        let us = elapsed.as_micros() as u64;
        self.count += 1;
        self.sum_us += us;
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS_US) {
            if us <= bound {
                *bucket += 1;
            }
        }
    }
}
