//! What a leader knows about one follower: how far it matches, what is in flight to it,
//! when it last answered, and whether it is in sync.

use crate::limits::INFLIGHT_BATCHES_MAX;
use crate::types::{LogIndex, Micros, NodeId};
use heapless::Deque;

/// How the leader is currently feeding a follower.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// Finding where the logs agree: one request in flight at a time.
    Probe,
    /// Streaming: batches pipelined within the in-flight window.
    Replicate,
    /// The follower needs entries older than the retained log; the host sends a snapshot.
    Snapshot,
}

/// One batch in flight: its last index and when it went out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Inflight {
    pub last_index: LogIndex,
    pub sent_at_us: Micros,
}

#[derive(Clone, Debug)]
pub struct Progress {
    pub id: NodeId,
    pub voter: bool,
    /// The highest index known to match the leader's log and be durable there.
    pub match_index: LogIndex,
    /// The next index to send.
    pub next_index: LogIndex,
    pub state: ReplicationState,
    pub inflight: Deque<Inflight, INFLIGHT_BATCHES_MAX>,
    /// In `Probe`: when the outstanding probe went out, if one is outstanding.
    pub probe_sent_at_us: Option<Micros>,
    /// In `Snapshot`: when the host was asked to send the snapshot.
    pub snapshot_sent_at_us: Option<Micros>,
    /// When the leader last heard from this follower in its term.
    pub last_ack_at_us: Option<Micros>,
    /// The latest send time (leader clock) of a request this follower answered: the
    /// follower will not vote for anyone else until well after it.
    pub lease_ack_sent_at_us: Option<Micros>,
    /// The follower's last log index as it last reported it.
    pub reported_last_index: LogIndex,
    pub in_sync: bool,
}

impl Progress {
    pub fn new(id: NodeId, voter: bool, next_index: LogIndex) -> Self {
        Progress {
            id,
            voter,
            match_index: 0,
            next_index,
            state: ReplicationState::Probe,
            inflight: Deque::new(),
            probe_sent_at_us: None,
            snapshot_sent_at_us: None,
            last_ack_at_us: None,
            lease_ack_sent_at_us: None,
            reported_last_index: 0,
            in_sync: false,
        }
    }

    /// Back to probing from `next_index`, forgetting what was in flight.
    pub fn become_probe(&mut self, next_index: LogIndex) {
        self.state = ReplicationState::Probe;
        self.next_index = next_index;
        self.inflight.clear();
        self.probe_sent_at_us = None;
        self.snapshot_sent_at_us = None;
    }

    pub fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index + 1;
        self.inflight.clear();
        self.probe_sent_at_us = None;
        self.snapshot_sent_at_us = None;
    }

    /// Records that the follower matches through `match_index`; returns whether that is
    /// news.
    pub fn advance_match(&mut self, match_index: LogIndex) -> bool {
        if match_index <= self.match_index {
            return false;
        }
        self.match_index = match_index;
        self.next_index = self.next_index.max(match_index + 1);
        while self.inflight.front().is_some_and(|batch| batch.last_index <= match_index) {
            self.inflight.pop_front();
        }
        true
    }

    /// How long since this follower answered, or `None` if it never did this term.
    pub fn last_ack_age_us(&self, now: Micros) -> Option<Micros> {
        self.last_ack_at_us.map(|at| now.saturating_sub(at))
    }

    /// Whether it answered within `window_us`.
    pub fn reachable(&self, now: Micros, window_us: Micros) -> bool {
        self.last_ack_age_us(now).is_some_and(|age| age <= window_us)
    }
}
