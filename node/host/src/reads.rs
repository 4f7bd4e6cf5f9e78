//! Reads waiting for the state machine: a read is served at an index (the leader's read
//! index for a linearizable read, the client's index for `after:INDEX`, 0 for `any`)
//! once this node has applied that index, never before; one that waits too long is
//! answered with a time-out.
//!
//! `R` carries the read and its answer back (the key and a channel in the node, the key
//! and a history stamp in the simulator).

struct Waiting<R> {
    index: u64,
    since_us: u64,
    read: R,
}

/// Reads waiting for an applied index, in arrival order.
pub struct PendingReads<R> {
    waiting: Vec<Waiting<R>>,
}

impl<R> Default for PendingReads<R> {
    fn default() -> Self {
        PendingReads { waiting: Vec::new() }
    }
}

impl<R> PendingReads<R> {
    /// A read to serve once `index` is applied, received at `since_us`.
    pub fn insert(&mut self, index: u64, since_us: u64, read: R) {
        self.waiting.push(Waiting { index, since_us, read });
    }

    /// The reads this node may serve now that it has applied through `applied_index`,
    /// removed, in arrival order.
    pub fn take_ready(&mut self, applied_index: u64) -> Vec<R> {
        self.take(|w| w.index <= applied_index).into_iter().map(|w| w.read).collect()
    }

    /// Reads waiting longer than `timeout_us` at `now_us`, removed, with the index each
    /// waited for.
    pub fn take_expired(&mut self, now_us: u64, timeout_us: u64) -> Vec<(u64, R)> {
        self.take(|w| now_us.saturating_sub(w.since_us) > timeout_us).into_iter().map(|w| (w.index, w.read)).collect()
    }

    fn take(&mut self, taken: impl Fn(&Waiting<R>) -> bool) -> Vec<Waiting<R>> {
        let (out, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting).into_iter().partition(|w| taken(w));
        self.waiting = kept;
        out
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a read is served only once its index is applied, in arrival order.
    #[test]
    fn served_only_once_applied() {
        let mut reads = PendingReads::default();
        reads.insert(7, 0, "a");
        reads.insert(5, 0, "b");
        reads.insert(9, 0, "c");
        assert_eq!(reads.take_ready(6), vec!["b"]);
        assert_eq!(reads.take_ready(8), vec!["a"]);
        assert_eq!(reads.take_ready(9), vec!["c"]);
        assert!(reads.is_empty());
    }

    /// Goal: only reads older than the time-out expire.
    #[test]
    fn only_old_reads_expire() {
        let mut reads = PendingReads::default();
        reads.insert(7, 100, "old");
        reads.insert(8, 900, "new");
        assert_eq!(reads.take_expired(1_200, 1_000), vec![(7, "old")]);
        assert_eq!(reads.len(), 1);
    }
}
