//! The cluster's members as a node's host knows them: the core's [`Membership`] (ids,
//! voters, priorities) together with what only the host needs (each id's name, its
//! address, whether a learner is promoted once caught up, the cluster's id), as one
//! [`MemberRecord`] carried by a log entry, a snapshot, or the node's own record of how
//! it first joined. [`MemberRecords`] keeps the record at the snapshot point and every
//! later one in the log, so that a truncation takes an uncommitted one back exactly as
//! the core's `MembershipLog` does. Nothing here does I/O.

use baton_common::{Change, Member, Membership, NodeId};
use serde::{Deserialize, Serialize};

/// Most names a record keeps: ids are `u8` and never reused, so every id ever handed
/// out fits, removed ones included (their names stay readable in history).
pub const DIRECTORY_ENTRIES_MAX: usize = u8::MAX as usize;
/// A member's name, at most (it is a certificate's name).
pub const NAME_BYTES_MAX: usize = 64;
/// A member's address (`HOST:PORT`), at most.
pub const ADDR_BYTES_MAX: usize = 255;

/// One id the cluster handed out: who it is and where it is reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    pub id: u8,
    /// As its certificate names it.
    pub name: String,
    /// `HOST:PORT`, as the other nodes dial it.
    pub addr: String,
    /// A learner the leader promotes to voter once it has caught up; false: it stays a
    /// learner until an operator promotes it.
    pub promote_when_caught_up: bool,
    /// A cascading learner's upstream: the member that sends it the log the leader
    /// would (the leader still decides what; see `baton_node::driver`). None: the leader.
    #[serde(default)]
    pub upstream: Option<u8>,
}

/// The members at one point of the log, with everything the host needs about them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The cluster's id: chosen by its first leader and carried in every record after
    /// (0: not chosen yet). Nodes of another cluster are refused by it.
    pub cluster_id: u64,
    /// What the core counts.
    pub membership: Membership,
    /// Every id handed out so far, removed ones included.
    pub directory: Vec<MemberEntry>,
    /// The change this record made (none: the record only states the membership, as
    /// the first leader's record that sets the cluster id does).
    pub change: Option<Change>,
}

/// Why a record from outside (a file, a peer) cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A member of the membership has no name.
    Unnamed(u8),
    DuplicateName(String),
    DuplicateId(u8),
    TooLong(String),
    TooMany(usize),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Unnamed(id) => write!(formatter, "member id {id} has no name"),
            RecordError::DuplicateName(name) => write!(formatter, "the name {name} is given to two ids"),
            RecordError::DuplicateId(id) => write!(formatter, "id {id} is listed twice"),
            RecordError::TooLong(what) => write!(formatter, "{what} is too long"),
            RecordError::TooMany(count) => write!(formatter, "{count} names, over {DIRECTORY_ENTRIES_MAX}"),
        }
    }
}

impl MemberRecord {
    /// The record of a cluster formed from `names_and_addrs`: ids 1.. in the names'
    /// sorted order (every node sorts the same names the same way, so ids agree), all
    /// voters with priority 1.
    pub fn formed(names_and_addrs: &[(String, String)]) -> MemberRecord {
        let mut sorted = names_and_addrs.to_vec();
        sorted.sort();
        let mut members = heapless::Vec::new();
        let mut directory = Vec::new();
        for (position, (name, addr)) in sorted.into_iter().enumerate() {
            let id = position as u8 + 1;
            let _ = members.push(Member::voter(NodeId(id), 1));
            directory.push(MemberEntry { id, name, addr, promote_when_caught_up: true, upstream: None });
        }
        MemberRecord { cluster_id: 0, membership: Membership::new(members), directory, change: None }
    }

    /// Checks a record that came from outside: every member named once, names unique,
    /// lengths bounded.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.directory.len() > DIRECTORY_ENTRIES_MAX {
            return Err(RecordError::TooMany(self.directory.len()));
        }
        for (position, entry) in self.directory.iter().enumerate() {
            if entry.name.is_empty() || entry.name.len() > NAME_BYTES_MAX {
                return Err(RecordError::TooLong(format!("the name of id {}", entry.id)));
            }
            if entry.addr.len() > ADDR_BYTES_MAX {
                return Err(RecordError::TooLong(format!("the address of {}", entry.name)));
            }
            let earlier = &self.directory[..position];
            if earlier.iter().any(|e| e.id == entry.id) {
                return Err(RecordError::DuplicateId(entry.id));
            }
            // A removed member's name may be handed out again (new hardware under
            // the old name gets a new id); two live members never share one.
            let live = |e: &MemberEntry| self.membership.member(NodeId(e.id)).is_some();
            if live(entry) && earlier.iter().any(|e| e.name == entry.name && live(e)) {
                return Err(RecordError::DuplicateName(entry.name.clone()));
            }
        }
        for member in &self.membership.members {
            if self.entry(member.id).is_none() {
                return Err(RecordError::Unnamed(member.id.0));
            }
        }
        Ok(())
    }

    pub fn entry(&self, id: NodeId) -> Option<&MemberEntry> {
        self.directory.iter().find(|e| e.id == id.0)
    }

    /// The id `name` has now: the member of that name, else the newest id ever handed
    /// to it (a removed one).
    pub fn id_of(&self, name: &str) -> Option<NodeId> {
        let named = || self.directory.iter().filter(|e| e.name == name);
        let live = named().find(|e| self.membership.member(NodeId(e.id)).is_some());
        live.or_else(|| named().max_by_key(|e| e.id)).map(|e| NodeId(e.id))
    }

    pub fn name_of(&self, id: NodeId) -> Option<&str> {
        self.entry(id).map(|e| e.name.as_str())
    }

    pub fn addr_of(&self, id: NodeId) -> Option<&str> {
        self.entry(id).map(|e| e.addr.as_str())
    }

    /// The record after `change`, whose membership the core already computed: a new
    /// learner gets `name` and `addr`; everything else keeps its entry.
    pub fn changed(&self, change: Change, membership: Membership, added: Option<MemberEntry>) -> MemberRecord {
        let mut next = MemberRecord { membership, change: Some(change), ..self.clone() };
        if let Some(entry) = added {
            next.directory.retain(|e| e.id != entry.id);
            next.directory.push(entry);
        }
        next
    }

    /// The member `id` receives the log through, if not the leader: its upstream while
    /// that is a member other than `leader` (else the leader sends it directly).
    pub fn upstream_of(&self, id: NodeId, leader: NodeId) -> Option<NodeId> {
        let upstream = NodeId(self.entry(id)?.upstream?);
        (upstream != leader && upstream != id && self.membership.member(upstream).is_some()).then_some(upstream)
    }

    /// The learners the leader should promote now that they may be: those marked to be
    /// promoted once caught up (the core decides whether one has).
    pub fn learners_to_promote(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.membership
            .members
            .iter()
            .filter(|m| !m.voter)
            .filter(|m| self.entry(m.id).is_some_and(|e| e.promote_when_caught_up))
            .map(|m| m.id)
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("records always serialize")
    }
}

/// The records a node knows, oldest first: the one in effect at its snapshot (or as it
/// was formed or joined), then every later one in its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecords {
    entries: Vec<(u64, MemberRecord)>,
}

impl MemberRecords {
    /// Records whose first, at `index` (a snapshot point, or 0), is `record`.
    pub fn new(index: u64, record: MemberRecord) -> MemberRecords {
        MemberRecords { entries: vec![(index, record)] }
    }

    /// The record at the end of the log: the one in effect.
    pub fn current(&self) -> &MemberRecord {
        &self.entries.last().expect("never empty").1
    }

    /// The record in effect at `index`.
    pub fn at(&self, index: u64) -> &MemberRecord {
        let found = self.entries.iter().rev().find(|(at, _)| *at <= index);
        &found.unwrap_or(&self.entries[0]).1
    }

    pub fn iter(&self) -> impl Iterator<Item = &(u64, MemberRecord)> {
        self.entries.iter()
    }

    /// Records the record from the entry at `index`, the newest in the log. An entry at
    /// or below the newest known one is a repeat (ignored; false).
    pub fn push(&mut self, index: u64, record: MemberRecord) -> bool {
        if index <= self.entries.last().expect("never empty").0 {
            return false;
        }
        self.entries.push((index, record));
        true
    }

    /// Forgets the records from entries at or after `from_index`. Returns whether the
    /// current one changed.
    pub fn truncate_from(&mut self, from_index: u64) -> bool {
        let before = self.entries.len();
        while self.entries.len() > 1 && self.entries.last().is_some_and(|(index, _)| *index >= from_index) {
            self.entries.pop();
        }
        self.entries.len() != before
    }

    /// A snapshot of `index` was installed, carrying `at_snapshot` (or, from a cluster
    /// whose records it does not hold, the one this node has at that point). The log
    /// after it stays only if `keeps_tail` (it held the snapshot's last entry), and with
    /// it the records after the snapshot.
    pub fn install(&mut self, index: u64, at_snapshot: Option<MemberRecord>, keeps_tail: bool) {
        let at_snapshot = at_snapshot.unwrap_or_else(|| self.at(index).clone());
        let tail: Vec<(u64, MemberRecord)> = match keeps_tail {
            true => self.entries.iter().filter(|(at, _)| *at > index).cloned().collect(),
            false => Vec::new(),
        };
        self.entries = vec![(index, at_snapshot)];
        self.entries.extend(tail);
    }

    /// Drops records superseded at or before `index` (a snapshot point).
    pub fn compact_to(&mut self, index: u64) {
        while self.entries.len() > 1 && self.entries[1].0 <= index {
            self.entries.remove(0);
        }
    }

    /// Every id a member in some record still kept: the nodes to keep links to (a
    /// removed node still gets the entry that removes it until that commits).
    pub fn linked_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> =
            self.entries.iter().flat_map(|(_, r)| r.membership.members.iter().map(|m| m.id)).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Every id a member in the record in effect at `index` or in a later one: once
    /// `index` is committed, the nodes still (or again) to be served. An id only in older
    /// records was removed, and that removal committed.
    pub fn ids_from(&self, index: u64) -> Vec<NodeId> {
        let from = self.entries.iter().rposition(|(at, _)| *at <= index).unwrap_or(0);
        let mut ids: Vec<NodeId> =
            self.entries[from..].iter().flat_map(|(_, r)| r.membership.members.iter().map(|m| m.id)).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The core's view: the memberships of the records that made a change, at their
    /// indexes, as a live node reports them to its core (a record that only sets the
    /// cluster's id changes nothing the core counts).
    pub fn membership_log(&self) -> baton_common::MembershipLog {
        let (base_index, base) = &self.entries[0];
        let mut log = baton_common::MembershipLog::new(*base_index, base.membership.clone());
        for (index, record) in self.entries[1..].iter().filter(|(_, record)| record.change.is_some()) {
            let _ = log.push(*index, record.membership.clone(), *base_index);
        }
        log
    }

    /// The cluster id the newest record carries (0: none yet).
    pub fn cluster_id(&self) -> u64 {
        self.current().cluster_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_common::WriteMode;

    fn three() -> MemberRecord {
        let peers = [("n3", "h3:1"), ("n1", "h1:1"), ("n2", "h2:1")];
        MemberRecord::formed(&peers.map(|(n, a)| (n.to_string(), a.to_string())))
    }

    #[test]
    fn a_formed_cluster_numbers_its_members_by_sorted_name() {
        let record = three();
        record.validate().unwrap();
        assert_eq!(record.id_of("n1"), Some(NodeId(1)));
        assert_eq!(record.id_of("n3"), Some(NodeId(3)));
        assert_eq!(record.addr_of(NodeId(2)), Some("h2:1"));
        assert_eq!(record.membership.next_id, 4);
        assert_eq!(record.learners_to_promote().count(), 0);
    }

    #[test]
    fn a_name_given_again_after_removal_gets_a_new_id() {
        let record = three();
        let removed = record.membership.apply(Change::Remove { id: NodeId(2) }, WriteMode::Quorum).unwrap();
        let record = record.changed(Change::Remove { id: NodeId(2) }, removed, None);
        assert_eq!(record.id_of("n2"), Some(NodeId(2)), "a removed name still resolves, for history");
        let change = Change::AddLearner { id: NodeId(4), priority: 1 };
        let added = record.membership.apply(change, WriteMode::Quorum).unwrap();
        let entry = MemberEntry {
            id: 4,
            name: "n2".into(),
            addr: "h2b:1".into(),
            promote_when_caught_up: true,
            upstream: Some(3),
        };
        let record = record.changed(change, added, Some(entry));
        record.validate().unwrap();
        assert_eq!(record.id_of("n2"), Some(NodeId(4)), "the member of that name wins");
        assert_eq!(record.learners_to_promote().collect::<Vec<_>>(), vec![NodeId(4)]);
        assert_eq!(record.upstream_of(NodeId(4), NodeId(1)), Some(NodeId(3)));
        assert_eq!(record.upstream_of(NodeId(4), NodeId(3)), None, "the leader sends it directly");
        assert_eq!(record.upstream_of(NodeId(1), NodeId(3)), None);
    }

    #[test]
    fn bad_records_are_refused_with_the_reason() {
        let mut record = three();
        record.directory.retain(|e| e.id != 2);
        assert_eq!(record.validate(), Err(RecordError::Unnamed(2)));
        let mut record = three();
        record.directory[1].name = "n1".into();
        assert_eq!(record.validate(), Err(RecordError::DuplicateName("n1".into())));
        let mut record = three();
        record.directory[2].name = "x".repeat(NAME_BYTES_MAX + 1);
        assert!(matches!(record.validate(), Err(RecordError::TooLong(_))));
    }

    /// Goal: the ids served once an index is committed are those of the record in
    /// effect there and of every later one; a node whose removal committed is not among
    /// them, one whose removal is not yet committed is.
    #[test]
    fn a_node_removed_before_the_committed_index_is_no_longer_served() {
        let base = three();
        let mut records = MemberRecords::new(0, base.clone());
        let removed = base.membership.apply(Change::Remove { id: NodeId(2) }, WriteMode::Quorum).unwrap();
        let without_n2 = base.changed(Change::Remove { id: NodeId(2) }, removed, None);
        assert!(records.push(10, without_n2));
        let all = vec![NodeId(1), NodeId(2), NodeId(3)];
        assert_eq!(records.ids_from(9), all, "the removal at 10 is not committed at 9");
        assert_eq!(records.ids_from(10), vec![NodeId(1), NodeId(3)]);
        assert_eq!(records.ids_from(50), vec![NodeId(1), NodeId(3)]);
        assert_eq!(records.linked_ids(), all, "kept until the record is compacted away");
    }

    #[test]
    fn truncation_takes_back_uncommitted_records_as_the_core_does() {
        let base = three();
        let mut records = MemberRecords::new(0, base.clone());
        let change = Change::AddLearner { id: NodeId(4), priority: 1 };
        let added = base.membership.apply(change, WriteMode::Quorum).unwrap();
        let entry =
            MemberEntry { id: 4, name: "n4".into(), addr: "h4:1".into(), promote_when_caught_up: true, upstream: None };
        let next = base.changed(change, added, Some(entry));
        assert!(records.push(10, next.clone()));
        assert!(!records.push(10, next.clone()), "a repeat is ignored");
        let named = MemberRecord { cluster_id: 9, change: None, ..next.clone() };
        assert!(records.push(11, named.clone()));
        assert_eq!(records.membership_log().current_index(), 10, "a record that changes nothing is not the core's");
        assert_eq!(records.cluster_id(), 9);
        assert!(records.truncate_from(11));
        assert_eq!(records.linked_ids(), vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)]);
        assert_eq!(records.at(9), &base);
        assert_eq!(records.membership_log().current(), &next.membership);
        assert!(!records.truncate_from(11));
        assert!(records.truncate_from(10));
        assert_eq!(records.current(), &base);
        assert_eq!(records.membership_log().current(), &base.membership);
        records.push(12, next.clone());
        records.compact_to(12);
        assert_eq!(records.iter().count(), 1);
        assert_eq!(records.current(), &next);
        // A snapshot at 20 whose log tail stays keeps the records after it.
        records.push(25, named.clone());
        records.install(20, None, true);
        assert_eq!(records.iter().map(|(at, _)| *at).collect::<Vec<_>>(), vec![20, 25]);
        assert_eq!(records.at(20), &next, "without a record in the snapshot, the one this node had there");
        records.install(30, Some(base.clone()), false);
        assert_eq!(records.iter().map(|(at, _)| *at).collect::<Vec<_>>(), vec![30]);
        assert_eq!(records.current(), &base);
    }

    #[test]
    fn a_record_round_trips_through_its_encoding() {
        let record = three();
        let decoded: MemberRecord = postcard::from_bytes(&record.encode()).unwrap();
        assert_eq!(decoded, record);
    }
}
