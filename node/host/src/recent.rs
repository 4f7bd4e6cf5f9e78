//! The entry cache: the most recent log entries kept in memory, so a leader ships fresh
//! entries, applies them and serves watches without reading its disk, and a status can
//! tell how many bytes and how much time a follower is behind.
//!
//! The host keeps it in step with the log: entries go in as the driver appends them
//! ([`crate::node::Host::appended`]), a truncation drops the entries it removes and an
//! installed snapshot those it replaces. Reads fall through to the log on disk for
//! anything older ([`crate::node::Host::entry`]).

use std::borrow::Cow;
use std::collections::VecDeque;

/// Recent entries kept in memory at most (a node's default).
pub const RECENT_ENTRIES_MAX: usize = 8_192;

/// One cached entry, with the time it was appended (microseconds on the host's clock).
#[derive(Debug)]
struct Recent {
    index: u64,
    term: u64,
    payload: Vec<u8>,
    appended_at_us: u64,
}

/// The most recent entries, consecutive by index, at most `entries_max` of them.
#[derive(Debug)]
pub struct RecentEntries {
    entries: VecDeque<Recent>,
    entries_max: usize,
}

impl Default for RecentEntries {
    fn default() -> RecentEntries {
        RecentEntries::new(RECENT_ENTRIES_MAX)
    }
}

/// How far a follower is behind, as the cache can tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Behind {
    /// Payload bytes of the entries after its match index that are cached.
    pub bytes: u64,
    /// Microseconds since the oldest entry it lacks was appended (or, if that one is
    /// older than the cache, the cache's oldest: a lower bound).
    pub age_us: u64,
}

impl RecentEntries {
    pub fn new(entries_max: usize) -> RecentEntries {
        assert!(entries_max > 0, "a cache holds at least one entry");
        RecentEntries { entries: VecDeque::new(), entries_max }
    }

    /// The entry at `index` was appended at `now_us`. It follows the cached ones: the
    /// host drops what a truncation removes and what an installed snapshot replaces
    /// before the log takes an entry at another place.
    pub fn push(&mut self, now_us: u64, index: u64, term: u64, payload: Vec<u8>) {
        if let Some(last) = self.entries.back() {
            assert_eq!(last.index + 1, index, "the recent entries follow the log");
        }
        self.entries.push_back(Recent { index, term, payload, appended_at_us: now_us });
        while self.entries.len() > self.entries_max {
            self.entries.pop_front();
        }
    }

    /// The log was cut back to before `from_index`.
    pub fn truncate_from(&mut self, from_index: u64) {
        while self.entries.back().is_some_and(|last| last.index >= from_index) {
            self.entries.pop_back();
        }
    }

    /// A snapshot through `index` was installed: `keeps_tail`, the log keeps what follows
    /// it; otherwise the log starts over after it.
    pub fn installed(&mut self, index: u64, keeps_tail: bool) {
        if keeps_tail {
            while self.entries.front().is_some_and(|first| first.index <= index) {
                self.entries.pop_front();
            }
        } else {
            self.entries.clear();
        }
    }

    /// The entry at `index`, if cached: its term and payload.
    pub fn get(&self, index: u64) -> Option<(u64, Cow<'_, [u8]>)> {
        let first = self.entries.front()?.index;
        let cached = self.entries.get(usize::try_from(index.checked_sub(first)?).ok()?)?;
        debug_assert_eq!(cached.index, index, "the cache holds consecutive entries");
        Some((cached.term, Cow::Borrowed(cached.payload.as_slice())))
    }

    /// How far behind a follower whose log matches through `match_index` is, at `now_us`.
    pub fn behind(&self, match_index: u64, now_us: u64) -> Behind {
        let Some(newest) = self.entries.back() else { return Behind::default() };
        if match_index >= newest.index {
            return Behind::default();
        }
        let bytes =
            self.entries.iter().rev().take_while(|e| e.index > match_index).map(|e| e.payload.len() as u64).sum();
        let oldest_missing = self.entries.iter().find(|e| e.index == match_index + 1).or(self.entries.front());
        let age_us = oldest_missing.map_or(0, |e| now_us.saturating_sub(e.appended_at_us));
        Behind { bytes, age_us }
    }

    /// How many entries are cached and their payload bytes plus `record_header_bytes`
    /// each: a measure of the log's bytes per entry.
    pub fn sizes(&self, record_header_bytes: u64) -> (u64, u64) {
        let bytes = self.entries.iter().map(|e| record_header_bytes + e.payload.len() as u64).sum();
        (self.entries.len() as u64, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(indexes: std::ops::RangeInclusive<u64>) -> RecentEntries {
        let mut cache = RecentEntries::new(4);
        for index in indexes {
            cache.push(index * 10, index, 1, vec![0; index as usize]);
        }
        cache
    }

    /// Goal: the cache holds the newest `entries_max` consecutive entries and finds each
    /// by index; older ones and ones not yet appended are not there.
    #[test]
    fn holds_the_newest_entries_by_index() {
        let cache = cache(1..=6);
        assert!(cache.get(2).is_none(), "evicted");
        assert_eq!(cache.get(3).map(|(_, p)| p.len()), Some(3));
        assert_eq!(cache.get(6).map(|(_, p)| p.len()), Some(6));
        assert!(cache.get(7).is_none());
        assert!(cache.get(0).is_none());
    }

    /// Goal: a truncation drops what it removes; an installed snapshot drops what it
    /// covers, or everything when the log starts over.
    #[test]
    fn follows_truncations_snapshots_and_restarts() {
        let mut cache = cache(1..=6);
        cache.truncate_from(5);
        assert!(cache.get(5).is_none() && cache.get(4).is_some());
        cache.installed(3, true);
        assert!(cache.get(3).is_none() && cache.get(4).is_some());
        cache.installed(9, false);
        assert!(cache.get(4).is_none());
        cache.push(100, 10, 2, vec![1]);
        assert!(cache.get(10).is_some());
    }

    /// Rule: an entry that does not follow the cached ones means the host lost track of
    /// the log (a truncation or an install it did not follow): it stops there.
    #[test]
    #[should_panic(expected = "the recent entries follow the log")]
    fn an_entry_out_of_place_is_a_bug() {
        let mut cache = cache(1..=6);
        cache.push(100, 5, 2, vec![1]);
    }

    /// Goal: how far behind a follower is counts the bytes it lacks and the age of the
    /// oldest entry it lacks (the cache's oldest when it lacks more than the cache).
    #[test]
    fn tells_how_far_behind_a_follower_is() {
        let cache = cache(3..=6);
        assert_eq!(cache.behind(6, 100), Behind::default());
        assert_eq!(cache.behind(4, 100), Behind { bytes: 11, age_us: 50 });
        assert_eq!(cache.behind(0, 100), Behind { bytes: 18, age_us: 70 }, "older than the cache");
        assert_eq!(cache.sizes(2), (4, 26));
    }
}
