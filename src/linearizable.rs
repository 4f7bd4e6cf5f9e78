//! A linearizability checker for a history of operations on single-key registers (put,
//! compare-and-set, read): the Wing–Gong search with Lowe's memoization, as Porcupine
//! and Knossos do it, one key at a time (a history is linearizable iff each key's is).
//!
//! An operation has an invocation time and, if its outcome is known, a completion
//! time and an output. One whose outcome is unknown (a write that may or may not have
//! taken effect) has no completion: it may take effect at any point after its
//! invocation, or never (which is the same as taking effect after everything else, and
//! for a compare-and-set with no known output, either way). Operations known to have
//! failed without effect are left out of the history by the caller.
//!
//! The search is exponential in the worst case; it stops after `STEPS_MAX` steps per
//! key and says so (`Verdict::Unknown`), never passing a history it did not finish.

use std::collections::HashSet;

/// A value written: unique per write in the workloads that use this checker.
pub type Value = u64;

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        value: Value,
    },
    /// `applied`: whether it was written (`None`: not known).
    Cas {
        expected: Option<Value>,
        new: Value,
        applied: Option<bool>,
    },
    Read {
        value: Option<Value>,
    },
}

/// One operation of one client on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: u32,
    pub key: u32,
    pub op: Op,
    /// Nanoseconds from the start of the run.
    pub invoked_ns: u64,
    /// `None`: the outcome is unknown (it may complete at any time, or never).
    pub completed_ns: Option<u64>,
}

/// Operations completed before the failing one that a violation's window also shows.
const WINDOW_CONTEXT_OPS: usize = 3;

/// Search steps per key before the checker gives up on it.
pub const STEPS_MAX: u64 = 20_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// Not linearizable: the smallest prefix of the key's history (by completion) that
    /// is not, as the operations that overlap its last one, oldest first.
    Violation {
        key: u32,
        window: Vec<Operation>,
    },
    /// The search ran out of steps on this key.
    Unknown {
        key: u32,
    },
}

/// Checks every key's history; the first key that fails decides.
pub fn check(history: &[Operation]) -> Verdict {
    let mut keys: Vec<u32> = history.iter().map(|o| o.key).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let ops: Vec<Operation> = history.iter().filter(|o| o.key == key).cloned().collect();
        match check_key(&ops) {
            Some(true) => {}
            Some(false) => return Verdict::Violation { key, window: smallest_window(&ops) },
            None => return Verdict::Unknown { key },
        }
    }
    Verdict::Linearizable
}

/// The register's next state after `op` from `state`, if `op` may take effect there
/// with the output it had.
fn step(state: Option<Value>, op: &Op) -> Option<Option<Value>> {
    match *op {
        Op::Put { value } => Some(Some(value)),
        Op::Cas { expected, new, applied } => match (state == expected, applied) {
            (true, Some(true) | None) => Some(Some(new)),
            (false, Some(false) | None) => Some(state),
            _ => None,
        },
        Op::Read { value } => (value == state).then_some(state),
    }
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// `Some(true)` if `ops` (one key) is linearizable from an absent value, `Some(false)`
/// if not, `None` if the search ran out of steps.
fn check_key(ops: &[Operation]) -> Option<bool> {
    // Events in time order; a return at the same instant as a call comes first (the
    // operations did not overlap), except an operation's own return: one that took no
    // time (invoked and completed in the same instant) is called, then returns, between
    // the others' returns and calls at that instant. Unknown outcomes have no return.
    let mut events: Vec<(u64, u8, Event)> = Vec::with_capacity(ops.len() * 2);
    for (i, o) in ops.iter().enumerate() {
        let instant = o.completed_ns == Some(o.invoked_ns);
        events.push((o.invoked_ns, if instant { 1 } else { 3 }, Event { op: i, is_call: true }));
        if let Some(done) = o.completed_ns {
            assert!(done >= o.invoked_ns, "an operation completes after it is invoked: {o:?}");
            events.push((done, if instant { 2 } else { 0 }, Event { op: i, is_call: false }));
        }
    }
    events.sort_by_key(|&(at, order, _)| (at, order));
    let events: Vec<Event> = events.into_iter().map(|(_, _, e)| e).collect();
    // A doubly linked list over the events, with a head sentinel at index `n`.
    let n = events.len();
    // Event i links to i + 1 and i - 1; the last and the first to the sentinel, which
    // links to them (or to itself when there are no events).
    let mut next: Vec<usize> = (1..=n).chain([0]).collect();
    let mut prev: Vec<usize> = (0..=n).map(|i| if i == 0 { n } else { i - 1 }).collect();
    let return_of: Vec<Option<usize>> = {
        let mut r = vec![None; ops.len()];
        for (at, e) in events.iter().enumerate() {
            if !e.is_call {
                r[e.op] = Some(at);
            }
        }
        r
    };
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, at: usize| {
        let (p, q) = (prev[at], next[at]);
        next[p] = q;
        prev[q] = p;
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, at: usize| {
        let (p, q) = (prev[at], next[at]);
        next[p] = at;
        prev[q] = at;
    };
    // The set of linearized operations, remembered by a Zobrist hash (a random 128-bit
    // word per operation, XORed in and out): 32 bytes per memo entry where a bitset
    // took an eighth of the history's length (gigabytes for a 5-minute run). A collision
    // (odds about n² / 2¹²⁸) could only prune a branch, so report a violation that is
    // not one, never pass a history that fails.
    let zobrist: Vec<u128> = (0..ops.len() as u64).map(zobrist_word).collect();
    let mut linearized_hash = 0u128;
    let mut seen: HashSet<(u128, Option<Value>)> = HashSet::new();
    // Each frame: the call event lifted, and the state before it.
    let mut stack: Vec<(usize, Option<Value>)> = Vec::new();
    let mut state: Option<Value> = None;
    let mut at = next[n];
    let mut steps = 0u64;
    let mut known_left = ops.iter().filter(|o| o.completed_ns.is_some()).count();
    loop {
        steps += 1;
        if steps > STEPS_MAX {
            return None;
        }
        // Done once only calls without returns (unknown outcomes) are left: they take
        // effect after everything else, or never.
        if known_left == 0 {
            return Some(true);
        }
        // A call is tried at this point of the order; the end of the list (every
        // remaining call tried) or a return whose call is not linearized yet means this
        // order fails: undo the last linearized call and try the call after it.
        if at != n && events[at].is_call {
            let op = events[at].op;
            if let Some(after) = step(state, &ops[op].op) {
                if seen.insert((linearized_hash ^ zobrist[op], after)) {
                    linearized_hash ^= zobrist[op];
                    stack.push((at, state));
                    state = after;
                    unlink(&mut next, &mut prev, at);
                    if let Some(r) = return_of[op] {
                        unlink(&mut next, &mut prev, r);
                        known_left -= 1;
                    }
                    at = next[n];
                    continue;
                }
            }
            at = next[at];
            continue;
        }
        let Some((call, before)) = stack.pop() else { return Some(false) };
        let op = events[call].op;
        linearized_hash ^= zobrist[op];
        state = before;
        if let Some(r) = return_of[op] {
            relink(&mut next, &mut prev, r);
            known_left += 1;
        }
        relink(&mut next, &mut prev, call);
        at = next[call];
    }
}

/// Operation `i`'s word for the Zobrist hash: splitmix64, twice.
fn zobrist_word(i: u64) -> u128 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (u128::from(mix(2 * i)) << 64) | u128::from(mix(2 * i + 1))
}

/// The operations overlapping the last one of the shortest failing prefix (ordered by
/// completion; unknown outcomes are kept in every prefix they were invoked in).
fn smallest_window(ops: &[Operation]) -> Vec<Operation> {
    let mut by_completion: Vec<&Operation> = ops.iter().filter(|o| o.completed_ns.is_some()).collect();
    by_completion.sort_by_key(|o| o.completed_ns);
    let prefix = |len: usize| -> Vec<Operation> {
        let cut = by_completion[len - 1].completed_ns.expect("completed");
        ops.iter()
            .filter(|o| match o.completed_ns {
                Some(done) => done <= cut,
                None => o.invoked_ns <= cut,
            })
            .cloned()
            .collect()
    };
    // Failing is monotone in the prefix: binary search for the shortest.
    let (mut lo, mut hi) = (1, by_completion.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if check_key(&prefix(mid)) == Some(false) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let failing = prefix(hi.max(1));
    let last = by_completion[hi.max(1) - 1];
    let (mut window, mut before): (Vec<Operation>, Vec<Operation>) =
        failing.into_iter().partition(|o| o.completed_ns.is_none_or(|done| done >= last.invoked_ns));
    // And what completed just before it: the writes a stale read missed, say.
    before.sort_by_key(|o| o.completed_ns);
    window.extend(before.into_iter().rev().take(WINDOW_CONTEXT_OPS));
    window.sort_by_key(|o| o.invoked_ns);
    window
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, op: Op, invoked_ns: u64, completed_ns: Option<u64>) -> Operation {
        Operation { client, key: 0, op, invoked_ns, completed_ns }
    }

    /// Goal: histories that are linearizable pass: sequential ones, overlapping writes
    /// read in either order, a cas that saw the other write, unknown outcomes that took
    /// effect or did not.
    #[test]
    fn linearizable_histories_pass() {
        let histories = [
            vec![],
            vec![op(1, Op::Put { value: 1 }, 0, Some(10)), op(2, Op::Read { value: Some(1) }, 20, Some(30))],
            vec![op(1, Op::Read { value: None }, 0, Some(5))],
            // Two overlapping puts; reads after both see the one that went last.
            vec![
                op(1, Op::Put { value: 1 }, 0, Some(10)),
                op(2, Op::Put { value: 2 }, 0, Some(10)),
                op(3, Op::Read { value: Some(1) }, 20, Some(30)),
                op(3, Op::Read { value: Some(1) }, 40, Some(50)),
            ],
            vec![
                op(1, Op::Put { value: 1 }, 0, Some(10)),
                op(2, Op::Cas { expected: Some(1), new: 2, applied: Some(true) }, 20, Some(30)),
                op(3, Op::Cas { expected: Some(1), new: 3, applied: Some(false) }, 25, Some(35)),
                op(3, Op::Read { value: Some(2) }, 40, Some(50)),
            ],
            // An unknown put that took effect, and one that did not.
            vec![op(1, Op::Put { value: 1 }, 0, None), op(2, Op::Read { value: Some(1) }, 100, Some(110))],
            vec![op(1, Op::Put { value: 1 }, 0, None), op(2, Op::Read { value: None }, 100, Some(110))],
            // Operations that took no time (a read served the instant it arrived), alone,
            // right after a write returned at that instant, and two at once.
            vec![op(1, Op::Read { value: None }, 7, Some(7))],
            vec![op(1, Op::Put { value: 1 }, 0, Some(7)), op(2, Op::Read { value: Some(1) }, 7, Some(7))],
            vec![op(1, Op::Read { value: None }, 7, Some(7)), op(2, Op::Read { value: None }, 7, Some(7))],
        ];
        for history in histories {
            assert_eq!(check(&history), Verdict::Linearizable, "{history:?}");
        }
    }

    /// Goal: the anomalies the fault suite hunts fail: a stale read after a newer write
    /// was acknowledged, a lost acknowledged write, a read of a value never written, a
    /// cas that succeeded on a value that was not there, two cas that both won, and a
    /// value that comes back after it was overwritten.
    #[test]
    fn anomalies_are_caught() {
        let histories = [
            // Stale read: put 2 was acknowledged before the read began.
            vec![
                op(1, Op::Put { value: 1 }, 0, Some(10)),
                op(1, Op::Put { value: 2 }, 20, Some(30)),
                op(2, Op::Read { value: Some(1) }, 40, Some(50)),
            ],
            // Lost write.
            vec![op(1, Op::Put { value: 1 }, 0, Some(10)), op(2, Op::Read { value: None }, 20, Some(30))],
            // A value nobody wrote.
            vec![op(1, Op::Read { value: Some(9) }, 0, Some(10))],
            // Both compare-and-sets from the same value won.
            vec![
                op(1, Op::Put { value: 1 }, 0, Some(10)),
                op(2, Op::Cas { expected: Some(1), new: 2, applied: Some(true) }, 20, Some(30)),
                op(3, Op::Cas { expected: Some(1), new: 3, applied: Some(true) }, 20, Some(30)),
            ],
            // Flip-flop: 2 then 1 again, with no write of 1 after 2.
            vec![
                op(1, Op::Put { value: 1 }, 0, Some(10)),
                op(1, Op::Put { value: 2 }, 20, None),
                op(2, Op::Read { value: Some(2) }, 30, Some(40)),
                op(2, Op::Read { value: Some(1) }, 50, Some(60)),
            ],
            // An instant read after a put returned at that same instant, seeing nothing.
            vec![op(1, Op::Put { value: 1 }, 0, Some(7)), op(2, Op::Read { value: None }, 7, Some(7))],
        ];
        for history in histories {
            assert!(matches!(check(&history), Verdict::Violation { .. }), "{history:?}");
        }
    }

    /// Goal: the window printed for a violation is the short stretch that shows it,
    /// not the whole history.
    #[test]
    fn the_window_is_the_stretch_that_fails() {
        let mut history = Vec::new();
        for i in 0..200u64 {
            history.push(op(1, Op::Put { value: i + 1 }, i * 100, Some(i * 100 + 10)));
            history.push(op(2, Op::Read { value: Some(i + 1) }, i * 100 + 20, Some(i * 100 + 30)));
        }
        // A stale read at the end.
        history.push(op(2, Op::Read { value: Some(150) }, 20_000, Some(20_010)));
        let Verdict::Violation { window, .. } = check(&history) else { panic!("not caught") };
        assert!(window.len() <= 1 + WINDOW_CONTEXT_OPS, "{window:?}");
        assert!(window.contains(&op(1, Op::Put { value: 200 }, 19_900, Some(19_910))), "{window:?}");
        assert_eq!(window.last().unwrap().op, Op::Read { value: Some(150) });
    }

    /// Goal: a long history (a 5-minute run holds hundreds of thousands of operations per
    /// key) is checked in bounded memory: the memo holds a hash per entry, not a bitset.
    #[test]
    fn a_long_history_is_checked_in_little_memory() {
        let mut history = Vec::new();
        for i in 0..100_000u64 {
            history.push(op(1, Op::Put { value: i + 1 }, i * 100, Some(i * 100 + 10)));
            history.push(op(2, Op::Read { value: Some(i + 1) }, i * 100 + 20, Some(i * 100 + 30)));
        }
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    /// Goal: many concurrent clients with unknown outcomes stay within the step budget
    /// (the memoization works), and the result is right.
    #[test]
    fn a_busy_history_is_checked_quickly() {
        let mut history = Vec::new();
        let mut value = 0;
        for round in 0..300u64 {
            let at = round * 1000;
            for client in 0..8u32 {
                value += 1;
                let completed = (client % 3 != 0).then_some(at + 900);
                history.push(op(client, Op::Put { value }, at + u64::from(client), completed));
            }
            history.push(op(9, Op::Read { value: Some(value) }, at + 950, Some(at + 990)));
        }
        assert_eq!(check(&history), Verdict::Linearizable);
    }
}
