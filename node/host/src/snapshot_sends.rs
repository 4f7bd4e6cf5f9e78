//! Which of the core's snapshot requests (`Output::SendSnapshot`) start a transfer. The
//! core asks again whenever a follower's answer shows it still without the snapshot,
//! which is expected while the snapshot travels and is installed (every heartbeat
//! answer, ten a second); a transfer starts only if none of the same snapshot went to
//! that follower in the same term, on the same connection, within the resend time: a
//! snapshot can be hundreds of megabytes on an edge link. A link that is down starts
//! nothing (the request comes again once it is up), and a connection that failed
//! since a transfer started (its generation moved on) starts it over at once.
//!
//! Without this rule the simulator's leader and a follower installing the snapshot
//! flooded each other: each answer sent the snapshot again, whose receipt was answered
//! the same way until the install's fsync landed (seed 99793 of 100,000, once the
//! simulator stopped sending every request it was given).

use baton_common::{NodeId, Position};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Started {
    term: u64,
    snapshot: Position,
    link_generation: Option<u64>,
    at_us: u64,
}

/// The transfers started, one per follower at most.
#[derive(Debug, Default)]
pub struct SnapshotSends {
    started: BTreeMap<NodeId, Started>,
}

/// A request to send `snapshot` to a follower in `term`, over a link that is `link_up`
/// in its connection `link_generation` (`None`: the link has no generations).
#[derive(Clone, Copy, Debug)]
pub struct SendRequest {
    pub to: NodeId,
    pub term: u64,
    pub snapshot: Position,
    pub link_up: bool,
    pub link_generation: Option<u64>,
}

impl SnapshotSends {
    /// Whether to start the transfer `request` asks for at `now_us` (replacing any going
    /// to that follower); if so it counts as started now.
    pub fn start(&mut self, request: SendRequest, now_us: u64, resend_after_us: u64) -> bool {
        let SendRequest { to, term, snapshot, link_up, link_generation } = request;
        if !link_up {
            return false;
        }
        if let Some(started) = self.started.get(&to) {
            let same =
                started.term == term && started.snapshot == snapshot && started.link_generation == link_generation;
            if same && now_us.saturating_sub(started.at_us) < resend_after_us {
                return false;
            }
        }
        self.started.insert(to, Started { term, snapshot, link_generation, at_us: now_us });
        true
    }

    /// The transfer to `to` ended or was stopped: the next request starts one.
    pub fn forget(&mut self, to: NodeId) {
        self.started.remove(&to);
    }

    pub fn forget_all(&mut self) {
        self.started.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: repeated requests for the same snapshot start one transfer per resend time;
    /// a new term, a new snapshot or a new connection starts one at once; a down link
    /// none.
    #[test]
    fn one_transfer_per_snapshot_term_and_connection() {
        let mut sends = SnapshotSends::default();
        let request = SendRequest {
            to: NodeId(2),
            term: 3,
            snapshot: Position::new(3, 40),
            link_up: true,
            link_generation: Some(1),
        };
        assert!(!sends.start(SendRequest { link_up: false, ..request }, 0, 1_000));
        assert!(sends.start(request, 0, 1_000));
        assert!(!sends.start(request, 500, 1_000), "a heartbeat answer while it travels");
        assert!(sends.start(request, 1_000, 1_000), "resent after the resend time");
        assert!(sends.start(SendRequest { link_generation: Some(2), ..request }, 1_100, 1_000));
        assert!(sends.start(SendRequest { term: 4, link_generation: Some(2), ..request }, 1_200, 1_000));
        let newer = SendRequest { term: 4, snapshot: Position::new(4, 90), link_generation: Some(2), ..request };
        assert!(sends.start(newer, 1_300, 1_000));
        assert!(!sends.start(newer, 1_400, 1_000));
        assert!(sends.start(SendRequest { to: NodeId(3), ..newer }, 1_400, 1_000), "another follower");
        sends.forget(NodeId(2));
        assert!(sends.start(newer, 1_500, 1_000), "after the transfer ended");
    }
}
