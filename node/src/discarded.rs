//! The discarded-writes journal (`<data dir>/discarded/`): every write an async-mode
//! failover made this node drop, one JSON line each, fsynced before the entries are
//! truncated. Bounded on disk and read in pages that always fit a frame:
//! - records are numbered from 1 for the life of the data directory (`record`), so a
//!   reader pages with "after record N" whatever the log indices (the same index can be
//!   discarded in two terms);
//! - `discarded.jsonl` rotates to `discarded.1.jsonl` when it would pass
//!   [`JOURNAL_BYTES_MAX`]; the rotated file it replaces is counted in `rotated.json`
//!   (records and the last record number), never dropped silently;
//! - a page holds at most [`PAGE_RECORDS_MAX`] records and [`PAGE_BYTES_MAX`] bytes; a
//!   record alone larger than that (a value near the 1 MiB limit) is sent with its value
//!   cut and `value_truncated` set (the file keeps it whole).

use crate::status::DiscardedWrite;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The current file rotates when a write would take it past this.
pub const JOURNAL_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Records per page at most.
pub const PAGE_RECORDS_MAX: usize = 1_000;
/// Bytes of records per page at most: well under a frame's limit.
pub const PAGE_BYTES_MAX: usize = 512 * 1024;

const CURRENT: &str = "discarded.jsonl";
const ROTATED: &str = "discarded.1.jsonl";
const ROTATED_AWAY: &str = "rotated.json";

/// What rotation has removed for good.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RotatedAway {
    pub records: u64,
    /// The highest record number removed (0: none).
    pub through_record: u64,
}

/// One page of the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscardedPage {
    pub writes: Vec<DiscardedWrite>,
    /// Ask again after this record for more; `None` at the end.
    pub next_after_record: Option<u64>,
    /// Records rotation removed (they are not in any page).
    pub rotated_away: RotatedAway,
    /// Where the journal is on the node's disk.
    pub dir: String,
}

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// The number the next record gets.
    next_record: u64,
    current_bytes: u64,
}

impl Journal {
    /// The journal in `dir` (created on the first record).
    pub fn open(dir: &Path) -> Journal {
        let mut journal = Journal { dir: dir.to_path_buf(), next_record: 1, current_bytes: 0 };
        journal.current_bytes = std::fs::metadata(journal.path(CURRENT)).map(|m| m.len()).unwrap_or(0);
        let last = [ROTATED, CURRENT]
            .iter()
            .filter_map(|name| last_record(&journal.path(name)))
            .max()
            .unwrap_or(0)
            .max(journal.rotated_away().through_record);
        journal.next_record = last + 1;
        journal
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn rotated_away(&self) -> RotatedAway {
        std::fs::read(self.path(ROTATED_AWAY)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Appends `writes` (numbering them) and fsyncs, rotating first if they would take
    /// the file past its bound. An error means they are not on disk: the caller must not
    /// let them go.
    pub fn append(&mut self, writes: Vec<DiscardedWrite>) -> std::io::Result<()> {
        let mut lines = String::new();
        let mut record = self.next_record;
        for mut write in writes {
            write.record = record;
            record += 1;
            lines.push_str(&serde_json::to_string(&write).expect("records serialize"));
            lines.push('\n');
        }
        std::fs::create_dir_all(&self.dir)?;
        if self.current_bytes > 0 && self.current_bytes + lines.len() as u64 > JOURNAL_BYTES_MAX {
            self.rotate()?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(self.path(CURRENT))?;
        file.write_all(lines.as_bytes())?;
        crate::storage::sync_data(&file)?;
        crate::cost::count_written(crate::cost::Written::Other, lines.len() as u64);
        self.current_bytes += lines.len() as u64;
        self.next_record = record;
        Ok(())
    }

    /// `discarded.jsonl` becomes `discarded.1.jsonl`; the rotated file it replaces is
    /// counted first (a crash in between counts it twice at worst, never drops a count).
    fn rotate(&mut self) -> std::io::Result<()> {
        let (rotated, current) = (self.path(ROTATED), self.path(CURRENT));
        if let Some((records, through_record)) = count_records(&rotated) {
            let mut away = self.rotated_away();
            away.records += records;
            away.through_record = away.through_record.max(through_record);
            let tmp = self.path("rotated.json.tmp");
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&serde_json::to_vec(&away).expect("serializes"))?;
            crate::storage::sync_all(&file)?;
            std::fs::rename(&tmp, self.path(ROTATED_AWAY))?;
        }
        std::fs::rename(&current, &rotated)?;
        crate::storage::sync_dir(&self.dir).map_err(std::io::Error::other)?;
        self.current_bytes = 0;
        Ok(())
    }

    /// Records numbered above `after_record` whose log index is at least `since_index`,
    /// at most `limit` (and [`PAGE_RECORDS_MAX`]) of them, oldest first.
    pub fn page(&self, since_index: u64, after_record: u64, limit: usize) -> DiscardedPage {
        let limit = limit.clamp(1, PAGE_RECORDS_MAX);
        let mut page = DiscardedPage {
            rotated_away: self.rotated_away(),
            dir: self.dir.display().to_string(),
            ..Default::default()
        };
        let mut bytes = 0usize;
        for name in [ROTATED, CURRENT] {
            let Ok(file) = std::fs::File::open(self.path(name)) else { continue };
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                let Ok(mut write) = serde_json::from_str::<DiscardedWrite>(&line) else { continue };
                if write.record <= after_record || write.index < since_index {
                    continue;
                }
                if page.writes.len() == limit || (!page.writes.is_empty() && bytes + line.len() > PAGE_BYTES_MAX) {
                    page.next_after_record = page.writes.last().map(|w| w.record);
                    return page;
                }
                if line.len() > PAGE_BYTES_MAX {
                    cut_value(&mut write, PAGE_BYTES_MAX / 2);
                }
                bytes += line.len().min(PAGE_BYTES_MAX);
                page.writes.push(write);
            }
        }
        page
    }
}

/// Cuts a record's value to at most `bytes` (on a character boundary) and marks it.
fn cut_value(write: &mut DiscardedWrite, bytes: usize) {
    if let Some(value) = &mut write.value {
        let mut end = bytes.min(value.len());
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
        write.value_truncated = true;
    }
}

/// How many records a journal file holds, and the highest number among them.
fn count_records(path: &Path) -> Option<(u64, u64)> {
    let file = std::fs::File::open(path).ok()?;
    let mut count = 0;
    let mut highest = 0;
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        if let Ok(write) = serde_json::from_str::<DiscardedWrite>(&line) {
            count += 1;
            highest = highest.max(write.record);
        }
    }
    Some((count, highest))
}

fn last_record(path: &Path) -> Option<u64> {
    count_records(path).map(|(_, highest)| highest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(index: u64, value_bytes: usize) -> DiscardedWrite {
        DiscardedWrite {
            at_unix_ms: 1,
            term: 2,
            index,
            op: "put".into(),
            key: format!("key-{index}"),
            value: Some("v".repeat(value_bytes)),
            ..Default::default()
        }
    }

    /// Goal: thousands of records page through whole and in order, each page within its
    /// bounds, across a rotation; what rotation removes is counted; numbering survives a
    /// reopen.
    #[test]
    fn thousands_of_records_page_through_and_rotation_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path());
        // About 3 KiB a record: 3 files' worth over 8,000 records.
        let total = 8_000u64;
        for batch in 0..(total / 100) {
            journal.append((0..100).map(|i| write(batch * 100 + i + 1, 3_000)).collect()).unwrap();
        }
        let away = journal.rotated_away();
        assert!(away.records > 0, "more than two files' worth rotates some away");
        assert_eq!(away.through_record, away.records, "the oldest go first");
        let mut journal = Journal::open(dir.path());
        assert_eq!(journal.next_record, total + 1, "numbering survives a reopen");
        journal.append(vec![write(7, 10)]).unwrap();

        let (mut after, mut seen, mut pages) = (0, Vec::new(), 0);
        loop {
            let page = journal.page(0, after, 10_000);
            let page_bytes: usize = page.writes.iter().map(|w| serde_json::to_string(w).unwrap().len()).sum();
            assert!(page.writes.len() <= PAGE_RECORDS_MAX && page_bytes <= PAGE_BYTES_MAX);
            // Twice the page bound fits a frame (asserted in `crate::frame`).
            assert!(serde_json::to_vec(&page).unwrap().len() < 2 * PAGE_BYTES_MAX);
            seen.extend(page.writes.iter().map(|w| w.record));
            pages += 1;
            match page.next_after_record {
                Some(next) => after = next,
                None => break,
            }
        }
        let expected: Vec<u64> = (away.records + 1..=total + 1).collect();
        assert_eq!(seen, expected, "every record kept, once, in order ({pages} pages)");
        let since = journal.page(7_990, 0, 5);
        assert_eq!(since.writes.iter().map(|w| w.index).collect::<Vec<_>>(), [7_990, 7_991, 7_992, 7_993, 7_994]);
    }

    /// Goal: a record larger than a page is sent with its value cut and marked, and the
    /// file keeps it whole.
    #[test]
    fn a_record_larger_than_a_page_is_cut_in_the_page_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path());
        journal.append(vec![write(1, 1_000_000), write(2, 5)]).unwrap();
        let page = journal.page(0, 0, 10);
        assert_eq!(page.writes.len(), 1);
        assert!(page.writes[0].value_truncated && page.writes[0].value.as_ref().unwrap().len() <= PAGE_BYTES_MAX);
        assert_eq!(page.next_after_record, Some(1));
        let rest = journal.page(0, 1, 10);
        assert_eq!(rest.writes[0].index, 2);
        let whole = std::fs::read_to_string(dir.path().join(CURRENT)).unwrap();
        assert!(whole.len() > 1_000_000, "the file keeps the whole value");
    }
}
