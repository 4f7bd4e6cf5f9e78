//! Applying one committed entry, and what the client waiting on it is told: the state
//! machine ([`crate::kv`]) applies the entry, the pending write at its index
//! ([`crate::writes`]) gets its verdict, and the answer follows from both. The node
//! turns an [`Answer`] into its wire response; the simulator checks it against its model.

use crate::kv::{Applied, Kv};
use crate::writes::{PendingWrites, Verdict};

/// Why a write that reached the log did not take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotApplied {
    /// The client's session expired (unused for too long).
    SessionExpired,
    /// The cluster holds as many client sessions as it may, all in recent use.
    SessionsFull,
    /// The revocation list is full.
    RevokedFull,
    /// A later write of the same session was applied first.
    Stale,
    /// A resent compare-and-set that did not match at this position, and is not run
    /// again (the key holds its expected value now, so "did not match" with the value
    /// now would not be true).
    CasMismatchEarlier { term: u64, index: u64 },
}

/// What a client whose write was pending at an applied entry is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The write took effect at this position (for a resent session write: where it
    /// first took effect).
    Written { term: u64, index: u64 },
    /// A compare-and-set that did not match: it changed nothing, and the key held this.
    CasMismatch { current: Option<Vec<u8>>, term: u64, index: u64 },
    /// Leadership changed before the acknowledgement: it may or may not take effect.
    OutcomeUnknown,
    /// It reached the log and did not take effect.
    NotApplied(NotApplied),
}

impl Answer {
    /// Whether the client learns its write's outcome (counted as acknowledged).
    pub fn is_acknowledged(&self) -> bool {
        matches!(self, Answer::Written { .. } | Answer::CasMismatch { .. })
    }
}

/// What the state machine's result for the entry at `index` (of `term`) tells the
/// client of a write with `verdict`.
pub fn answer(verdict: Verdict, applied: &Applied, index: u64, term: u64) -> Answer {
    if verdict == Verdict::OutcomeUnknown {
        return Answer::OutcomeUnknown;
    }
    match applied {
        Applied::CasMismatch { current } => Answer::CasMismatch { current: current.clone(), term, index },
        Applied::Duplicate { term, index } => Answer::Written { term: *term, index: *index },
        Applied::SessionExpired => Answer::NotApplied(NotApplied::SessionExpired),
        Applied::SessionsFull => Answer::NotApplied(NotApplied::SessionsFull),
        Applied::RevokedFull => Answer::NotApplied(NotApplied::RevokedFull),
        Applied::Stale => Answer::NotApplied(NotApplied::Stale),
        Applied::CasMismatchEarlier { term, index } => {
            Answer::NotApplied(NotApplied::CasMismatchEarlier { term: *term, index: *index })
        }
        Applied::Noop | Applied::Done | Applied::Undecodable | Applied::Revoked | Applied::Members => {
            Answer::Written { term, index }
        }
    }
}

/// Applies the entry at `index` (the next one) to `kv`; `leading`: this node leads
/// now. Returns what applying did, and the pending write at that index, if any, with
/// its answer.
pub fn apply_entry<R>(
    kv: &mut Kv,
    pending: &mut PendingWrites<R>,
    index: u64,
    term: u64,
    payload: &[u8],
    leading: bool,
) -> (Applied, Option<(R, Answer)>) {
    let applied = kv.apply(index, term, payload);
    let answered = pending.on_applied(index, term, leading).map(|(reply, verdict)| {
        let answer = answer(verdict, &applied, index, term);
        (reply, answer)
    });
    (applied, answered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Command;

    /// Goal: a write is answered with its own entry's result, a resend with its first
    /// position, and "outcome unknown" whenever the verdict says so, whatever applied.
    #[test]
    fn each_write_is_answered_with_what_its_entry_did() {
        let mut kv = Kv::default();
        let mut pending = PendingWrites::default();
        let put = Command::Put { key: b"k".to_vec(), value: b"1".to_vec() }.encode();
        let cas = Command::Cas { key: b"k".to_vec(), expected: None, new: Some(b"2".to_vec()) }.encode();
        pending.insert(1, 3, 0, "put");
        pending.insert(2, 3, 0, "cas");
        pending.insert(3, 3, 0, "other term");
        assert_eq!(
            apply_entry(&mut kv, &mut pending, 1, 3, &put, true),
            (Applied::Done, Some(("put", Answer::Written { term: 3, index: 1 })))
        );
        let mismatch = Answer::CasMismatch { current: Some(b"1".to_vec()), term: 3, index: 2 };
        assert_eq!(apply_entry(&mut kv, &mut pending, 2, 3, &cas, true).1, Some(("cas", mismatch)));
        assert_eq!(
            apply_entry(&mut kv, &mut pending, 3, 4, &put, true).1,
            Some(("other term", Answer::OutcomeUnknown))
        );
        assert_eq!(apply_entry(&mut kv, &mut pending, 4, 4, &put, true).1, None);
        let duplicate = Applied::Duplicate { term: 2, index: 7 };
        assert_eq!(answer(Verdict::Acknowledge, &duplicate, 9, 4), Answer::Written { term: 2, index: 7 });
        assert_eq!(answer(Verdict::OutcomeUnknown, &Applied::Done, 9, 4), Answer::OutcomeUnknown);
        assert_eq!(answer(Verdict::Acknowledge, &Applied::Stale, 9, 4), Answer::NotApplied(NotApplied::Stale));
    }
}
