//! Which peers a node keeps links to, and how a leader reaches a cascading learner: the
//! decisions the driver's link management carries out (it starts and stops QUIC links
//! and relays frames; it decides none of this).
//!
//! - A node links to every member of every membership record it keeps, and to the
//!   leader it follows ([`Host::links_wanted`]), but dials only one still served: in a
//!   record from the committed one on, or the leader ([`Host::may_dial`]); a link to a
//!   node whose removal committed ends at its next failure ([`Host::retired`]).
//! - While the newest record's removal is uncommitted, the node being removed may have
//!   to lead to commit it: its hellos are let in ([`Host::removal_pending`]).
//! - An append request with entries for a cascading learner goes through its upstream
//!   while that upstream is replicating and has every entry the request carries
//!   ([`Host::relay_via`]); the upstream passes on only its leader's request of the
//!   current term, with entries from its own log ([`Host::relay_entries`]).

use crate::node::{Entries, Host};
use baton_common::{Change, Message, NodeId, ReplicationState};

/// Why an upstream did not pass an append request on (the leader sends it again itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayRefusal {
    /// Not an append request.
    NotAppend,
    /// Not from the leader this node follows, or not in its term.
    NotMyLeader,
    /// An entry is gone from this node's log, or is of another term.
    EntryMissing,
}

impl<W, R> Host<W, R> {
    /// The peers node `me` keeps links to: every member of every record kept, and the
    /// leader it follows. (The leader too: a node that installed a snapshot older than
    /// the leader's own addition keeps hearing it, and answering it, until the entries
    /// after the snapshot arrive.)
    pub fn links_wanted(&self, me: NodeId) -> Vec<NodeId> {
        let mut wanted = self.records.linked_ids();
        wanted.extend(self.replica.leader().filter(|leader| !wanted.contains(leader)));
        wanted.retain(|id| *id != me);
        wanted
    }

    /// Whether a link to `peer` may be started: it is in a record from the committed one
    /// on, or leads (a joining node replays the records of every node ever removed; a
    /// link to one would only be dialed once and retired).
    pub fn may_dial(&self, peer: NodeId) -> bool {
        self.replica.leader() == Some(peer) || self.records.ids_from(self.replica.commit_index()).contains(&peer)
    }

    /// Of `linked`, the peers whose removal has committed (in no record from the
    /// committed one on, and not the leader): their links end at their next failure.
    pub fn retired(&self, linked: impl Iterator<Item = NodeId>) -> Vec<NodeId> {
        let served = self.records.ids_from(self.replica.commit_index());
        let leader = self.replica.leader();
        linked.filter(|peer| !served.contains(peer) && leader != Some(*peer)).collect()
    }

    /// The node the newest record removes, while that removal is uncommitted.
    pub fn removal_pending(&self) -> Option<NodeId> {
        match self.records.current().change {
            Some(Change::Remove { id }) if self.replica.membership_change_pending() => Some(id),
            _ => None,
        }
    }

    /// The upstream an append request for `to` (from leader `me`) goes through, if `to`
    /// is a cascading learner: only a request that carries entries (heartbeats and
    /// everything else go straight), and only while the upstream's link is up
    /// (`link_up`), it is replicating (heard within an election timeout) and this leader
    /// has sent it every entry the request carries. Otherwise the leader sends it
    /// itself: a learner whose upstream is gone or behind falls back to the leader.
    pub fn relay_via(
        &self,
        me: NodeId,
        to: NodeId,
        message: &Message,
        link_up: impl Fn(NodeId) -> bool,
    ) -> Option<NodeId> {
        let Message::AppendRequest(request) = message else { return None };
        if request.is_heartbeat() {
            return None;
        }
        let upstream = self.records.current().upstream_of(to, me)?;
        let window_us = self.replica.config().election_timeout_us;
        // The upstream has the entries, or they are on their way to it ahead of this
        // request on the same stream (the core made every batch before the host sends
        // any; the upstream appends its own before it passes this one on).
        let sent_them = self.replica.peer_statuses().any(|peer| {
            peer.id == upstream
                && peer.state == ReplicationState::Replicate
                && peer.next_index > request.last_index()
                && peer.last_ack_age_us.is_some_and(|age| age <= window_us)
        });
        (sent_them && link_up(upstream)).then_some(upstream)
    }

    /// As an upstream: the entries to pass on with leader `from`'s append request, from
    /// this node's log (its recent entries, or `disk`). Only for the leader this node
    /// follows, in its term, and only entries of the request's term (a batch never
    /// spans terms).
    pub fn relay_entries(
        &self,
        disk: &impl Entries,
        from: NodeId,
        message: &Message,
    ) -> Result<Vec<Vec<u8>>, RelayRefusal> {
        let Message::AppendRequest(request) = message else { return Err(RelayRefusal::NotAppend) };
        if self.replica.leader() != Some(from) || request.term != self.replica.term() {
            return Err(RelayRefusal::NotMyLeader);
        }
        let mut entries = Vec::with_capacity(usize::from(request.entry_count));
        for index in request.prev.index + 1..=request.last_index() {
            match self.entry(disk, index) {
                Some((term, payload)) if term == request.entries_term => entries.push(payload.into_owned()),
                _ => return Err(RelayRefusal::EntryMissing),
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::one_voter_host;
    use baton_common::{AppendRequest, Position};
    use std::borrow::Cow;

    struct Log;
    impl Entries for Log {
        fn entry(&self, index: u64) -> Option<(u64, Cow<'_, [u8]>)> {
            (index <= 3).then(|| (1, Cow::Owned(vec![index as u8])))
        }
    }

    fn append(term: u64, prev_index: u64, entry_count: u16) -> Message {
        Message::AppendRequest(AppendRequest {
            term,
            prev: Position::new(1, prev_index),
            entries_term: 1,
            entry_count,
            leader_commit: 0,
            sent_at_us: 0,
            paused: false,
            handoff_to: None,
        })
    }

    /// Rule: an upstream passes on only its own leader's request of the current term,
    /// with entries it holds; anything else is dropped for the leader to send again.
    #[test]
    fn an_upstream_relays_only_its_leaders_request_with_entries_it_holds() {
        let host = one_voter_host::<(), ()>();
        let stranger = NodeId(9);
        assert_eq!(host.relay_entries(&Log, stranger, &append(0, 0, 1)), Err(RelayRefusal::NotMyLeader));
        let vote = Message::TimeoutNow(baton_common::TimeoutNow { term: 0 });
        assert_eq!(host.relay_entries(&Log, stranger, &vote), Err(RelayRefusal::NotAppend));
    }

    /// Rule: a node alone links to nobody; a heartbeat never goes through an upstream.
    #[test]
    fn a_lone_node_links_to_nobody_and_heartbeats_go_straight() {
        let host = one_voter_host::<(), ()>();
        assert!(host.links_wanted(NodeId(1)).is_empty());
        assert!(host.removal_pending().is_none());
        assert_eq!(host.relay_via(NodeId(1), NodeId(2), &append(1, 0, 0), |_| true), None);
        assert!(host.retired([NodeId(7)].into_iter()).contains(&NodeId(7)), "in no record: retired");
    }
}
