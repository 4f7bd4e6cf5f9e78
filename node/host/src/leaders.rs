//! What a node remembers of leadership for its operators: the leaders it has seen, term
//! by term, with what made each one lead and what this node discarded in that term
//! ([`LeaderHistory`]); and, on a leader, when each follower's match index last moved, so
//! a status tells a stalled follower (connected, behind, not moving) from a slow one
//! ([`FollowerProgress`]). Times are microseconds on the host's clock.

use baton_common::{ElectionCause, Event, NodeId, PeerStatus};
use std::collections::{HashMap, VecDeque};

/// Leadership changes kept per node.
pub const HISTORY_ENTRIES_MAX: usize = 1_000;

/// One term's leader as this node saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderChange {
    pub term: u64,
    /// When this node first heard of it.
    pub at_us: u64,
    /// The leader before, if another.
    pub from: Option<NodeId>,
    pub to: NodeId,
    /// What made it lead: known to the node that won.
    pub cause: Option<ElectionCause>,
    /// Entries this node discarded in that term (async mode).
    pub discarded_entries: u64,
}

/// The leaders this node has seen, oldest first, at most [`HISTORY_ENTRIES_MAX`].
#[derive(Debug, Default)]
pub struct LeaderHistory {
    changes: VecDeque<LeaderChange>,
    last_leader: Option<NodeId>,
}

impl LeaderHistory {
    /// Records what `event` (from the core of node `me`, at `now_us`) says of leadership.
    pub fn on_event(&mut self, now_us: u64, me: NodeId, event: &Event) {
        match *event {
            Event::BecameLeader { term, cause } => self.record(now_us, term, me, Some(cause)),
            Event::BecameFollower { term, leader: Some(leader) } => self.record(now_us, term, leader, None),
            Event::Discarded { from_index, to_index, .. } => {
                if let Some(change) = self.changes.back_mut() {
                    change.discarded_entries += to_index - from_index + 1;
                }
            }
            _ => {}
        }
    }

    fn record(&mut self, now_us: u64, term: u64, leader: NodeId, cause: Option<ElectionCause>) {
        if let Some(change) = self.changes.iter_mut().find(|c| c.term == term) {
            if cause.is_some() {
                change.cause = cause;
            }
            return;
        }
        let from = self.last_leader.filter(|previous| *previous != leader);
        self.changes.push_back(LeaderChange { term, at_us: now_us, from, to: leader, cause, discarded_entries: 0 });
        while self.changes.len() > HISTORY_ENTRIES_MAX {
            self.changes.pop_front();
        }
        self.last_leader = Some(leader);
    }

    /// The changes, oldest first.
    pub fn changes(&self) -> impl Iterator<Item = &LeaderChange> {
        self.changes.iter()
    }
}

/// On a leader: each follower's match index and when it last moved (or was caught up).
#[derive(Debug, Default)]
pub struct FollowerProgress {
    moved_at_us: HashMap<NodeId, (u64, u64)>,
}

impl FollowerProgress {
    /// Looks at the followers again at `now_us`; `peers` is `None` on a node that does
    /// not lead (it forgets them).
    pub fn track(&mut self, now_us: u64, peers: Option<impl Iterator<Item = PeerStatus>>) {
        let Some(peers) = peers else {
            self.moved_at_us.clear();
            return;
        };
        for peer in peers {
            let entry = self.moved_at_us.entry(peer.id).or_insert((peer.match_index, now_us));
            if entry.0 != peer.match_index || peer.lag_entries == 0 {
                *entry = (peer.match_index, now_us);
            }
        }
    }

    /// How long `id`'s match index has not moved while it was behind, at `now_us`.
    pub fn stuck_us(&self, id: NodeId, now_us: u64) -> u64 {
        self.moved_at_us.get(&id).map_or(0, |(_, at_us)| now_us.saturating_sub(*at_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: each term's leader is recorded once, with the leader before it, the cause
    /// once the winner knows it, and the entries discarded in its term.
    #[test]
    fn records_each_terms_leader_once() {
        let (me, other) = (NodeId(1), NodeId(2));
        let mut history = LeaderHistory::default();
        history.on_event(10, me, &Event::BecameFollower { term: 1, leader: Some(other) });
        history.on_event(20, me, &Event::BecameFollower { term: 1, leader: Some(other) });
        history.on_event(30, me, &Event::BecameLeader { term: 2, cause: ElectionCause::Switchover });
        history.on_event(40, me, &Event::Discarded { term: 1, from_index: 5, to_index: 7 });
        let changes: Vec<_> = history.changes().cloned().collect();
        assert_eq!(changes.len(), 2);
        assert_eq!((changes[0].to, changes[0].from, changes[0].at_us), (other, None, 10));
        assert_eq!((changes[1].to, changes[1].from), (me, Some(other)));
        assert_eq!(changes[1].cause, Some(ElectionCause::Switchover));
        assert_eq!(changes[1].discarded_entries, 3);
    }

    /// Goal: a follower behind whose match index does not move is stuck for as long; one
    /// that moves or is caught up is not; a node that stops leading forgets them.
    #[test]
    fn a_follower_that_does_not_move_is_stuck() {
        let peer = |match_index, lag_entries| {
            Some(std::iter::once(PeerStatus {
                id: NodeId(2),
                voter: true,
                match_index,
                next_index: match_index + 1,
                reported_last_index: match_index,
                lag_entries,
                last_ack_age_us: None,
                in_sync: false,
                state: baton_common::ReplicationState::Replicate,
            }))
        };
        let mut progress = FollowerProgress::default();
        progress.track(0, peer(5, 3));
        progress.track(100, peer(5, 3));
        assert_eq!(progress.stuck_us(NodeId(2), 150), 150);
        progress.track(200, peer(6, 2));
        assert_eq!(progress.stuck_us(NodeId(2), 250), 50);
        progress.track(300, None::<std::iter::Empty<PeerStatus>>);
        assert_eq!(progress.stuck_us(NodeId(2), 400), 0);
    }
}
