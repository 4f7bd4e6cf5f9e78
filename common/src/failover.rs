//! What a manual failover to a given node would lose, computed from the log positions
//! of the replicas the operator can reach. Pure arithmetic: the console gathers the
//! positions, this says how many entries the candidate lacks.

use crate::types::{NodeId, Position};

/// The estimate for one candidate.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FailoverEstimate {
    /// Entries the most advanced reachable replica holds beyond the candidate's log. When
    /// that replica's last term is newer, the candidate's own tail may differ too, so
    /// this is a lower bound.
    pub lost_entries: u64,
    /// The replica the loss is measured against, if any is ahead of the candidate.
    pub most_advanced: Option<NodeId>,
    /// Whether the estimate is exact (same last term) or a lower bound.
    pub exact: bool,
}

/// Estimates what electing `candidate` (whose log ends at `candidate_last`) loses,
/// given the last positions of every other reachable replica.
pub fn estimate_failover_loss(candidate_last: Position, others: &[(NodeId, Position)]) -> FailoverEstimate {
    let ahead = others.iter().filter(|(_, last)| *last > candidate_last).max_by_key(|(_, last)| *last);
    match ahead {
        None => FailoverEstimate { lost_entries: 0, most_advanced: None, exact: true },
        Some((id, last)) => FailoverEstimate {
            lost_entries: last.index.saturating_sub(candidate_last.index).max(1),
            most_advanced: Some(*id),
            exact: last.term == candidate_last.term,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a candidate as advanced as everyone loses nothing; one behind loses the gap.
    #[test]
    fn estimates() {
        let a = (NodeId(1), Position::new(3, 100));
        let b = (NodeId(2), Position::new(3, 90));
        assert_eq!(estimate_failover_loss(Position::new(3, 100), &[b]).lost_entries, 0);
        let behind = estimate_failover_loss(Position::new(3, 90), &[a, b]);
        assert_eq!(behind, FailoverEstimate { lost_entries: 10, most_advanced: Some(NodeId(1)), exact: true });
        // A newer term elsewhere: at least one entry is lost, and it is only a bound.
        let diverged = estimate_failover_loss(Position::new(2, 120), &[a]);
        assert_eq!(diverged, FailoverEstimate { lost_entries: 1, most_advanced: Some(NodeId(1)), exact: false });
    }
}
