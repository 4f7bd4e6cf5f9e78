//! Which applied log entries changed the key-value map: one bit per entry, from the
//! first entry applied since the state was last restored. A watch (see [`crate::watch`])
//! replays the log from any index it still holds, and an entry alone does not say
//! whether it took effect: a compare-and-set may not have matched, a resent session
//! write may be a duplicate. This record says, for 1 bit per entry instead of a copy of
//! every change.

use std::collections::VecDeque;

const WORD_BITS: u64 = 64;

/// One bit per applied entry from `first_index` on: whether it changed the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedBits {
    /// The index of bit 0 of `words[0]`.
    first_index: u64,
    /// Bits recorded so far.
    len: u64,
    words: VecDeque<u64>,
}

impl ChangedBits {
    /// An empty record whose next entry is `next_index`.
    pub fn starting_at(next_index: u64) -> ChangedBits {
        ChangedBits { first_index: next_index, len: 0, words: VecDeque::new() }
    }

    /// The oldest index this record knows about (the next one to record if empty).
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// The index the next [`ChangedBits::record`] is for.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.len
    }

    /// Records whether the entry at `index` (the next one) changed the map.
    pub fn record(&mut self, index: u64, changed: bool) {
        assert_eq!(index, self.next_index(), "entries are recorded in order");
        let at = self.len % WORD_BITS;
        if at == 0 {
            self.words.push_back(0);
        }
        if changed {
            *self.words.back_mut().expect("pushed above") |= 1 << at;
        }
        self.len += 1;
    }

    /// Whether the entry at `index` changed the map; `None` if it is not recorded.
    pub fn changed(&self, index: u64) -> Option<bool> {
        if index < self.first_index || index >= self.next_index() {
            return None;
        }
        let offset = index - self.first_index;
        Some(self.words[(offset / WORD_BITS) as usize] & (1 << (offset % WORD_BITS)) != 0)
    }

    /// Drops what is known of entries below `index` (whole words only: at most 63 more
    /// bits are kept than asked).
    pub fn forget_before(&mut self, index: u64) {
        let droppable = index.saturating_sub(self.first_index).min(self.len) / WORD_BITS;
        self.words.drain(..droppable as usize);
        self.first_index += droppable * WORD_BITS;
        self.len -= droppable * WORD_BITS;
    }

    /// Bytes this record holds in memory (about).
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: every recorded bit reads back, out-of-range indexes are unknown, and
    /// forgetting drops only whole words below the index asked for.
    #[test]
    fn records_reads_back_and_forgets() {
        let mut bits = ChangedBits::starting_at(10);
        assert_eq!(bits.changed(10), None);
        for index in 10..300 {
            bits.record(index, index % 3 == 0);
        }
        assert_eq!(bits.next_index(), 300);
        for index in 10..300 {
            assert_eq!(bits.changed(index), Some(index % 3 == 0), "{index}");
        }
        assert_eq!(bits.changed(9), None);
        assert_eq!(bits.changed(300), None);
        bits.forget_before(150);
        assert_eq!(bits.first_index(), 138, "two whole words dropped");
        assert_eq!(bits.changed(137), None);
        for index in 138..300 {
            assert_eq!(bits.changed(index), Some(index % 3 == 0), "{index}");
        }
        bits.forget_before(10_000);
        assert_eq!(bits.next_index(), 300, "the next index is kept");
        bits.record(300, true);
        assert_eq!(bits.changed(300), Some(true));
    }
}
