//! Client writes a node holds instead of refusing them while leadership moves (a
//! switchover in progress, an election with no leader known yet, a new leader whose
//! followers have not answered it yet): each is proposed again as soon as leadership
//! settles, or refused as before once it has waited [`HOLD_MAX_US`], so the client
//! neither sleeps and guesses nor takes the node for dead.
//!
//! `W` is the held write with whatever carries its answer (a channel in the node, a
//! write id in the simulator).

use baton_common::{ProposeError, Replica, Role};

/// How long a write may be held before it is refused as before. Kept well under the
/// client's call timeout (400 ms), so a held write never makes a client take this node
/// for dead.
pub const HOLD_MAX_US: u64 = 200_000;
/// Writes held at once; more are refused at once.
pub const HELD_WRITES_MAX: usize = 4_096;

/// Held writes, oldest first, each with when it arrived (microseconds).
pub struct HeldWrites<W> {
    held: Vec<(u64, W)>,
}

impl<W> Default for HeldWrites<W> {
    fn default() -> Self {
        HeldWrites { held: Vec::new() }
    }
}

/// Whether a proposal refused with `error` was refused only because leadership is
/// moving, so that it may succeed shortly.
pub fn leadership_moving(error: &ProposeError) -> bool {
    match error {
        // A new leader counts no follower in sync until each has answered it, which
        // takes a round trip: a write that arrives first waits for that too.
        ProposeError::TransferInProgress | ProposeError::NotEnoughInSync { .. } => true,
        ProposeError::NotLeader { leader_hint } => leader_hint.is_none(),
        ProposeError::LogFull => false,
    }
}

/// Whether leadership has settled for held writes: this node takes writes, or knows
/// who leads (they are then refused with its address).
pub fn settled(replica: &Replica) -> bool {
    match replica.role() {
        Role::Leader => replica.accepts_writes(),
        _ => replica.leader().is_some(),
    }
}

impl<W> HeldWrites<W> {
    /// The proposal of `write` (arrived at `since_us`) was refused with `error` at
    /// `now_us`: held if leadership is moving, the write has not waited too long and
    /// there is room; otherwise given back, to be refused with `error`.
    pub fn hold_or_refuse(&mut self, error: &ProposeError, since_us: u64, now_us: u64, write: W) -> Option<W> {
        let young = now_us.saturating_sub(since_us) < HOLD_MAX_US;
        if leadership_moving(error) && young && self.held.len() < HELD_WRITES_MAX {
            self.held.push((since_us, write));
            return None;
        }
        Some(write)
    }

    /// The writes to propose again now, oldest first, with when each arrived: all of
    /// them once leadership `settled` or the oldest has waited too long.
    pub fn take_released(&mut self, settled: bool, now_us: u64) -> Vec<(u64, W)> {
        let Some(&(oldest_us, _)) = self.held.first() else { return Vec::new() };
        if settled || now_us.saturating_sub(oldest_us) >= HOLD_MAX_US {
            return std::mem::take(&mut self.held);
        }
        Vec::new()
    }

    /// Every held write, for a node that stops (each is refused).
    pub fn take_all(&mut self) -> Vec<W> {
        std::mem::take(&mut self.held).into_iter().map(|(_, w)| w).collect()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: only writes refused because leadership moves are held, within the time and
    /// count bounds; the rest are given back to be refused.
    #[test]
    fn held_only_while_leadership_moves_and_within_bounds() {
        let mut held = HeldWrites::default();
        assert_eq!(held.hold_or_refuse(&ProposeError::TransferInProgress, 0, 10, "a"), None);
        assert_eq!(held.hold_or_refuse(&ProposeError::NotLeader { leader_hint: None }, 0, 10, "b"), None);
        let known = ProposeError::NotLeader { leader_hint: Some(baton_common::NodeId(2)) };
        assert_eq!(held.hold_or_refuse(&known, 0, 10, "c"), Some("c"));
        assert_eq!(held.hold_or_refuse(&ProposeError::LogFull, 0, 10, "d"), Some("d"));
        assert_eq!(held.hold_or_refuse(&ProposeError::TransferInProgress, 0, HOLD_MAX_US, "e"), Some("e"));
        assert_eq!(held.len(), 2);
        for n in 2..HELD_WRITES_MAX {
            assert_eq!(held.hold_or_refuse(&ProposeError::TransferInProgress, 0, 10, "f"), None, "{n}");
        }
        assert_eq!(held.hold_or_refuse(&ProposeError::TransferInProgress, 0, 10, "full"), Some("full"));
    }

    /// Goal: held writes are released together once leadership settles or the oldest
    /// has waited too long, and not before.
    #[test]
    fn released_when_settled_or_too_old() {
        let mut held = HeldWrites::default();
        held.hold_or_refuse(&ProposeError::TransferInProgress, 100, 100, "a");
        held.hold_or_refuse(&ProposeError::TransferInProgress, 150, 150, "b");
        assert!(held.take_released(false, 200).is_empty());
        assert_eq!(held.take_released(true, 200), vec![(100, "a"), (150, "b")]);
        held.hold_or_refuse(&ProposeError::TransferInProgress, 300, 300, "c");
        assert!(held.take_released(false, 300 + HOLD_MAX_US - 1).is_empty());
        assert_eq!(held.take_released(false, 300 + HOLD_MAX_US), vec![(300, "c")]);
        assert!(held.is_empty());
    }
}
