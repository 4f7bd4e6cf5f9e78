//! The driver's part in the journal of discarded writes (async mode; see
//! `crate::discarded`): recording the entries the core is about to discard before the
//! truncation that removes them, and reading the journal back for `baton discarded`.

use super::{unix_ms, Driver};

impl Driver {
    /// Records the entries `from_index..=to_index` in the discarded-writes journal before
    /// they are truncated. If they cannot be recorded the node stops, loudly, before the
    /// truncation: a discarded write never disappears silently.
    pub(super) fn keep_discarded(&mut self, from_index: u64, to_index: u64) {
        let mut writes = Vec::new();
        for index in from_index..=to_index {
            let Some((term, payload)) = self.entry(index) else { continue };
            writes.push(describe_discarded(index, term, &payload));
        }
        let recorded = writes.len() as u64;
        let Some(journal) = self.discarded.as_mut() else { return };
        if let Err(source) = journal.append(writes) {
            let path = self.discarded_dir.clone();
            // The truncation that follows this event is never carried out.
            return self.fatal_storage(crate::storage::StorageError::Io { path, source });
        }
        self.discarded_entries += recorded;
    }

    pub(super) fn discarded_page(
        &self,
        since_index: u64,
        after_record: u64,
        limit: usize,
    ) -> crate::discarded::DiscardedPage {
        match &self.discarded {
            Some(journal) => journal.page(since_index, after_record, limit),
            None => crate::discarded::DiscardedPage::default(),
        }
    }
}

/// A discarded entry as the journal records it (see `baton_host::discarded`).
fn describe_discarded(index: u64, term: u64, payload: &[u8]) -> crate::status::DiscardedWrite {
    let entry = baton_host::discarded::describe(payload);
    crate::status::DiscardedWrite {
        at_unix_ms: unix_ms(),
        term,
        index,
        op: entry.op.into(),
        key: entry.key,
        value: entry.value,
        ..Default::default()
    }
}
