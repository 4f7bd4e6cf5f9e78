//! The replicated state machine: a key-value map and the client sessions that make
//! resent writes take effect once (see [`crate::session`]). Log payloads are
//! postcard-encoded [`Command`]s; an empty payload is a leader's no-op. Applying is
//! deterministic, so every replica that applies the same log holds the same state.

use crate::changed::ChangedBits;
use crate::map::Map;
use crate::members::MemberRecord;
use crate::session::{Admission, Outcome, SessionId, Sessions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A certificate's name in the revocation list: the SHA-256 of its DER bytes (the node
/// computes it; `baton_node::revocation` enforces the list).
pub type Fingerprint = [u8; 32];

/// Revoked certificates the cluster holds at most.
pub const REVOKED_MAX: usize = 1_024;
/// A revoked holder's name kept in the list, at most (it is only for people to read).
pub const HOLDER_BYTES_MAX: usize = 256;

/// A log entry's command. It looks like the client's `frame::Request` writes but is a
/// contract of its own (the log on disk, not the wire), so each changes on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Command {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    } = 0,
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    } = 1,
    Cas {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        new: Option<Vec<u8>>,
    } = 2,
    /// A client's write numbered `seq` in its session, whose client had answers up to
    /// `acked_seq`, proposed when the leader's clock read `at_ms` (unix milliseconds).
    /// `write` is a put, delete or compare-and-set, never another session write.
    /// Written by builds before session numbers; still applied (it does not turn
    /// numbering on: see [`Command::SessionById`]).
    Session { id: SessionId, seq: u64, acked_seq: u64, at_ms: u64, write: Box<Command> } = 3,
    /// An operator revoked the certificate with this fingerprint (see
    /// `baton_node::revocation`): every node refuses it from this entry on.
    Revoke { fingerprint: Fingerprint, holder: String } = 4,
    /// The cluster's members from here on (see [`crate::members`]): in effect on every
    /// node as soon as it is in its log; applying it only keeps it for snapshots.
    Members(MemberRecord) = 5,
    /// [`Command::Session`], as this build writes it for a session without a number yet:
    /// applying one turns session numbering on (see [`crate::session`]).
    SessionById { id: SessionId, seq: u64, acked_seq: u64, at_ms: u64, write: Box<Command> } = 6,
    /// A session write naming its session by number (see [`crate::session`]), about 14
    /// bytes shorter than by id.
    SessionByNumber { number: u64, seq: u64, acked_seq: u64, at_ms: u64, write: Box<Command> } = 7,
}

/// Which session a write names.
#[derive(Clone, Copy)]
enum Named {
    /// By id, as builds before numbers wrote it (numbering stays as it is).
    Id(SessionId),
    /// By id, turning numbering on.
    IdNumbering(SessionId),
    Number(u64),
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("commands always serialize")
    }

    /// A log payload's command, if it decodes.
    pub fn decode(payload: &[u8]) -> Option<Command> {
        postcard::from_bytes(payload).ok()
    }

    /// The membership record a log entry's payload carries, if it is one. Cheap for
    /// every other entry: only the first byte (the command's tag) is looked at.
    pub fn member_record(payload: &[u8]) -> Option<MemberRecord> {
        const MEMBERS_TAG: u8 = 5;
        if payload.first() != Some(&MEMBERS_TAG) {
            return None;
        }
        match postcard::from_bytes::<Command>(payload) {
            Ok(Command::Members(record)) => Some(record),
            _ => None,
        }
    }

    /// The put, delete or compare-and-set itself, inside its session if it has one.
    pub fn write(&self) -> &Command {
        match self {
            Command::Session { write, .. }
            | Command::SessionById { write, .. }
            | Command::SessionByNumber { write, .. } => write,
            plain => plain,
        }
    }

    /// A write naming its session by id, named by `number` instead; anything else as it is.
    pub fn by_number(self, number: u64) -> Command {
        match self {
            Command::SessionById { seq, acked_seq, at_ms, write, .. } => {
                Command::SessionByNumber { number, seq, acked_seq, at_ms, write }
            }
            other => other,
        }
    }

    /// Whether this is a session write (in any form).
    pub fn in_session(&self) -> bool {
        matches!(self, Command::Session { .. } | Command::SessionById { .. } | Command::SessionByNumber { .. })
    }
}

/// What applying one entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Noop,
    Done,
    CasMismatch {
        current: Option<Vec<u8>>,
    },
    /// The payload did not decode: it is skipped on every replica alike.
    Undecodable,
    /// A resent session write that had already taken effect at this position: not
    /// applied again.
    Duplicate {
        term: u64,
        index: u64,
    },
    /// A resent compare-and-set that did not match at this position, whose expected
    /// value the key holds now: not run again (see [`crate::session`]), not applied.
    /// (Had the key held another value, the resend is answered [`Applied::CasMismatch`].)
    CasMismatchEarlier {
        term: u64,
        index: u64,
    },
    /// A session write its client has moved past: not applied.
    Stale,
    /// The write's session expired: not applied.
    SessionExpired,
    /// No room for the write's new session: not applied.
    SessionsFull,
    /// A certificate was revoked (or already was).
    Revoked,
    /// The revocation list is full: not applied.
    RevokedFull,
    /// A membership record (see [`Command::Members`]).
    Members,
}

/// The state machine's parts a snapshot is written from and restored to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    pub map: Map,
    pub sessions: Sessions,
    /// Revoked certificates by fingerprint, with their holders' names.
    pub revoked: BTreeMap<Fingerprint, String>,
    /// The newest membership record applied (none: the cluster's membership never
    /// changed, and it is as the node was formed).
    pub members: Option<MemberRecord>,
}

#[derive(Debug)]
pub struct Kv {
    map: Map,
    sessions: Sessions,
    /// Revoked certificates by fingerprint, with their holders' names.
    revoked: BTreeMap<Fingerprint, String>,
    /// The newest membership record applied.
    members: Option<MemberRecord>,
    applied_index: u64,
    /// Which entries applied since the last restore changed the map (for watches).
    changed: ChangedBits,
}

impl Default for Kv {
    fn default() -> Kv {
        Kv::restore(0, Contents::default())
    }
}

impl Kv {
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Whether the entry at `index` is applied: a truncation of the log from `index`
    /// must then rebuild this state without it (async mode discards applied writes).
    pub fn has_applied(&self, index: u64) -> bool {
        self.applied_index >= index
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key)
    }

    /// Key and value bytes held (see [`Map::data_bytes`]).
    pub fn data_bytes(&self) -> u64 {
        self.map.data_bytes()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The newest membership record applied, if the membership ever changed.
    pub fn members(&self) -> Option<&MemberRecord> {
        self.members.as_ref()
    }

    pub fn revoked(&self) -> &BTreeMap<Fingerprint, String> {
        &self.revoked
    }

    /// Which applied entries changed the map, from the last restore on.
    pub fn changed(&self) -> &ChangedBits {
        &self.changed
    }

    /// Forgets which entries below `index` changed the map (their log is compacted).
    pub fn forget_changes_before(&mut self, index: u64) {
        self.changed.forget_before(index);
    }

    /// Applies the entry at `index` (of `term`), which must be the next one.
    pub fn apply(&mut self, index: u64, term: u64, payload: &[u8]) -> Applied {
        assert_eq!(index, self.applied_index + 1, "entries apply in order");
        let (applied, changed) = self.apply_command(index, term, payload);
        self.changed.record(index, changed);
        applied
    }

    /// Applies a payload: what it did, and whether it changed the map.
    fn apply_command(&mut self, index: u64, term: u64, payload: &[u8]) -> (Applied, bool) {
        self.applied_index = index;
        if payload.is_empty() {
            return (Applied::Noop, false);
        }
        let Ok(command) = postcard::from_bytes::<Command>(payload) else { return (Applied::Undecodable, false) };
        let (named, seq, acked_seq, at_ms, write) = match command {
            Command::Session { id, seq, acked_seq, at_ms, write } => (Named::Id(id), seq, acked_seq, at_ms, write),
            Command::SessionById { id, seq, acked_seq, at_ms, write } => {
                (Named::IdNumbering(id), seq, acked_seq, at_ms, write)
            }
            Command::SessionByNumber { number, seq, acked_seq, at_ms, write } => {
                (Named::Number(number), seq, acked_seq, at_ms, write)
            }
            plain => return self.run(plain),
        };
        if write.in_session() || matches!(*write, Command::Revoke { .. } | Command::Members(_)) {
            return (Applied::Undecodable, false);
        }
        let (id, admission) = match named {
            Named::Id(id) => (Some(id), self.sessions.admit(&id, seq, acked_seq, at_ms)),
            Named::IdNumbering(id) => {
                self.sessions.start_numbering();
                (Some(id), self.sessions.admit(&id, seq, acked_seq, at_ms))
            }
            Named::Number(number) => self.sessions.admit_numbered(number, seq, acked_seq, at_ms),
        };
        let refused = match admission {
            Admission::Run => None,
            Admission::Duplicate { term, index } => Some(Applied::Duplicate { term, index }),
            Admission::CasMismatched { term, index } => {
                let current = match &*write {
                    Command::Cas { key, expected, .. } => {
                        Some(self.map.get(key).map(<[u8]>::to_vec)).filter(|current| current != expected)
                    }
                    _ => None,
                };
                Some(match current {
                    Some(current) => Applied::CasMismatch { current },
                    None => Applied::CasMismatchEarlier { term, index },
                })
            }
            Admission::Stale => Some(Applied::Stale),
            Admission::Expired => Some(Applied::SessionExpired),
            Admission::Full => Some(Applied::SessionsFull),
        };
        if let Some(refused) = refused {
            return (refused, false);
        }
        let (applied, changed) = self.run(*write);
        let outcome = match applied {
            Applied::Done => Outcome::Written { term, index },
            _ => Outcome::CasMismatch { term, index },
        };
        let id = id.expect("a write admitted to run names a session that exists or is new");
        self.sessions.record(&id, seq, outcome);
        (applied, changed)
    }

    /// Runs a put, delete or compare-and-set: what it did, and whether it changed the
    /// map (a put always does; a delete of a missing key does not).
    fn run(&mut self, command: Command) -> (Applied, bool) {
        match command {
            Command::Put { key, value } => {
                self.map.insert(&key, &value);
                (Applied::Done, true)
            }
            Command::Delete { key } => {
                let removed = self.map.remove(&key);
                (Applied::Done, removed)
            }
            Command::Cas { key, expected, new } => {
                let current = self.map.get(&key).map(<[u8]>::to_vec);
                if current != expected {
                    return (Applied::CasMismatch { current }, false);
                }
                let changed = match new {
                    Some(value) => {
                        self.map.insert(&key, &value);
                        true
                    }
                    None => self.map.remove(&key),
                };
                (Applied::Done, changed)
            }
            Command::Revoke { fingerprint, mut holder } => {
                if self.revoked.len() >= REVOKED_MAX && !self.revoked.contains_key(&fingerprint) {
                    return (Applied::RevokedFull, false);
                }
                let mut end = holder.len().min(HOLDER_BYTES_MAX);
                while !holder.is_char_boundary(end) {
                    end -= 1;
                }
                holder.truncate(end);
                self.revoked.insert(fingerprint, holder);
                (Applied::Revoked, false)
            }
            Command::Members(record) => {
                self.members = Some(record);
                (Applied::Members, false)
            }
            Command::Session { .. } | Command::SessionById { .. } | Command::SessionByNumber { .. } => {
                (Applied::Undecodable, false)
            }
        }
    }

    /// The session number a leader names write `command` by when it appends it now, if
    /// any (see [`crate::session`]): for a write naming its session by id, once that
    /// session has a number and its client has had an answer in it (so the session
    /// exists wherever the entry applies, unless it has expired there, which the id
    /// would not change). Decide it when appending, from this (the leader's applied)
    /// state: that is a prefix of the log the entry joins, so every replica that applies
    /// the entry resolves the number to the same session. A number chosen earlier (when
    /// the request arrived, before a write was held through a change of leader) could
    /// name another session in another history.
    pub fn session_number_for(&self, command: &Command) -> Option<u64> {
        match command {
            Command::SessionById { id, acked_seq, .. } if *acked_seq > 0 => self.sessions.number_of(id),
            _ => None,
        }
    }

    /// `command` as a leader appends it now: named by number if
    /// [`Kv::session_number_for`] gives one.
    pub fn name_session(&self, command: Command) -> Command {
        match self.session_number_for(&command) {
            Some(number) => command.by_number(number),
            None => command,
        }
    }

    /// The state a snapshot of `applied_index` holds.
    pub fn restore(applied_index: u64, contents: Contents) -> Kv {
        let Contents { map, sessions, revoked, members } = contents;
        Kv { map, sessions, revoked, members, applied_index, changed: ChangedBits::starting_at(applied_index + 1) }
    }

    /// What a snapshot of this state holds (cheap: the map is shared, see [`Map`]);
    /// write it off the node loop.
    pub fn contents(&self) -> Contents {
        Contents {
            map: self.map.clone(),
            sessions: self.sessions.clone(),
            revoked: self.revoked.clone(),
            members: self.members.clone(),
        }
    }

    /// The whole map, for writing a snapshot: clone it (O(1), see [`Map`]) and write
    /// the clone off the node loop.
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// Starts over from nothing (before replaying the log from the start).
    pub fn reset(&mut self) {
        *self = Kv::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a membership record is found by its tag and nothing else is taken for one.
    #[test]
    fn member_records_are_told_from_other_entries() {
        let record = crate::members::MemberRecord::formed(&[("n1".into(), "h:1".into())]);
        let payload = Command::Members(record.clone()).encode();
        assert_eq!(Command::member_record(&payload), Some(record.clone()));
        assert_eq!(Command::member_record(&put("k", "v").encode()), None);
        assert_eq!(Command::member_record(&[]), None);
        assert_eq!(Command::member_record(&[5, 0xff]), None, "a damaged record is no record");
        let mut kv = Kv::default();
        assert_eq!(kv.apply(1, 1, &payload), Applied::Members);
        assert_eq!(kv.members(), Some(&record));
        assert_eq!(Kv::restore(1, kv.contents()).members(), Some(&record));
    }

    /// Goal: put, delete and compare-and-set behave, in log order.
    #[test]
    fn commands_apply_in_order() {
        let mut kv = Kv::default();
        assert_eq!(kv.apply(1, 1, &[]), Applied::Noop);
        assert_eq!(kv.apply(2, 1, &Command::Put { key: b"a".to_vec(), value: b"1".to_vec() }.encode()), Applied::Done);
        let cas = Command::Cas { key: b"a".to_vec(), expected: Some(b"0".to_vec()), new: Some(b"2".to_vec()) };
        assert_eq!(kv.apply(3, 1, &cas.encode()), Applied::CasMismatch { current: Some(b"1".to_vec()) });
        let cas = Command::Cas { key: b"a".to_vec(), expected: Some(b"1".to_vec()), new: Some(b"2".to_vec()) };
        assert_eq!(kv.apply(4, 1, &cas.encode()), Applied::Done);
        assert_eq!(kv.get(b"a"), Some(&b"2"[..]));
        assert_eq!(kv.apply(5, 1, &Command::Delete { key: b"a".to_vec() }.encode()), Applied::Done);
        assert_eq!(kv.get(b"a"), None);
        assert_eq!(kv.apply(6, 1, &[0xff, 0xff]), Applied::Undecodable);
        assert_eq!(kv.applied_index(), 6);
    }

    fn in_session(id: SessionId, seq: u64, acked_seq: u64, at_ms: u64, write: Command) -> Vec<u8> {
        Command::Session { id, seq, acked_seq, at_ms, write: Box::new(write) }.encode()
    }

    fn by_id(id: SessionId, seq: u64, acked_seq: u64, at_ms: u64, write: Command) -> Command {
        Command::SessionById { id, seq, acked_seq, at_ms, write: Box::new(write) }
    }

    fn put(key: &str, value: &str) -> Command {
        Command::Put { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() }
    }

    /// Goal: the lost-update history of a resent put (put A, another client's put B,
    /// put A resent) ends with B: the resend is answered with A's first position and
    /// changes nothing. Also for deletes, and across a restore from a snapshot's contents
    /// (sessions travel in snapshots; node/src/storage/snapshot.rs tests the file).
    #[test]
    fn a_resent_write_takes_effect_once_even_after_a_snapshot() {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let mut kv = Kv::default();
        assert_eq!(kv.apply(1, 3, &in_session(a, 1, 0, 10, put("k", "A"))), Applied::Done);
        assert_eq!(kv.apply(2, 3, &in_session(b, 1, 0, 11, put("k", "B"))), Applied::Done);
        assert_eq!(kv.apply(3, 4, &in_session(a, 1, 0, 12, put("k", "A"))), Applied::Duplicate { term: 3, index: 1 });
        assert_eq!(kv.get(b"k"), Some(&b"B"[..]));

        let mut restored = Kv::restore(kv.applied_index(), kv.contents());
        let delete = Command::Delete { key: b"k".to_vec() };
        assert_eq!(restored.apply(4, 4, &in_session(b, 2, 1, 13, delete.clone())), Applied::Done);
        assert_eq!(
            restored.apply(5, 4, &in_session(a, 1, 0, 14, put("k", "A"))),
            Applied::Duplicate { term: 3, index: 1 }
        );
        assert_eq!(restored.apply(6, 4, &in_session(b, 2, 1, 15, delete)), Applied::Duplicate { term: 4, index: 4 });
        assert_eq!(restored.get(b"k"), None);
    }

    /// Goal: sessions get numbers at the first write that names its session by id (the
    /// old form does not turn numbering on), the leader then names a session by number
    /// (at least 14 bytes shorter), a write by number behaves as by id (runs, resend
    /// answered with its first position, refused once the session is gone), and a
    /// replica restored from a snapshot's contents resolves numbers as one that applied
    /// the log.
    #[test]
    fn sessions_are_named_by_number_once_numbered() {
        let (old, a, b) = ([9u8; 16], [1u8; 16], [2u8; 16]);
        let mut kv = Kv::default();
        assert_eq!(kv.apply(1, 1, &in_session(old, 1, 0, 10, put("o", "1"))), Applied::Done);
        assert!(!kv.sessions().numbering(), "the old form leaves numbering off");
        assert_eq!(kv.name_session(by_id(old, 2, 1, 11, put("o", "2"))).encode()[0], 6, "by id while off");

        let first = kv.name_session(by_id(a, 1, 0, 12, put("k", "A")));
        assert!(matches!(first, Command::SessionById { .. }));
        assert_eq!(kv.apply(2, 1, &first.encode()), Applied::Done);
        assert!(kv.sessions().numbering());
        // The session already there numbered first (id order), then the new one.
        assert_eq!((kv.sessions().number_of(&old), kv.sessions().number_of(&a)), (Some(1), Some(2)));

        let named_by_id = kv.name_session(by_id(a, 2, 0, 13, put("k", "B"))).encode();
        let second = kv.name_session(by_id(a, 2, 1, 13, put("k", "B")));
        assert!(matches!(second, Command::SessionByNumber { number: 2, .. }));
        assert!(second.encode().len() + 14 <= named_by_id.len(), "{} vs {}", second.encode().len(), named_by_id.len());
        assert_eq!(kv.apply(3, 1, &second.encode()), Applied::Done);
        assert_eq!(kv.apply(4, 2, &second.encode()), Applied::Duplicate { term: 1, index: 3 }, "a resend");
        assert_eq!(kv.get(b"k"), Some(&b"B"[..]));

        // A replica restored from the contents resolves the same numbers.
        let mut restored = Kv::restore(kv.applied_index(), kv.contents());
        let third = kv.name_session(by_id(a, 3, 2, 14, put("k", "C"))).encode();
        assert_eq!(kv.apply(5, 2, &third), Applied::Done);
        assert_eq!(restored.apply(5, 2, &third), Applied::Done);
        assert_eq!(restored.contents(), kv.contents());

        // A new session gets the next number; a number nobody has is refused as expired.
        assert_eq!(kv.apply(6, 2, &kv.name_session(by_id(b, 1, 0, 15, put("x", "1"))).encode()), Applied::Done);
        assert_eq!(kv.sessions().number_of(&b), Some(3));
        let unknown =
            Command::SessionByNumber { number: 99, seq: 5, acked_seq: 4, at_ms: 16, write: Box::new(put("x", "2")) };
        assert_eq!(kv.apply(7, 2, &unknown.encode()), Applied::SessionExpired);
        // Once a's session expires, its number is refused, and never given again.
        let later = crate::session::SESSION_IDLE_MAX_MS + 14; // a idle for the limit, b not yet.
        assert_eq!(kv.apply(8, 2, &kv.name_session(by_id(b, 2, 1, later, put("x", "3"))).encode()), Applied::Done);
        assert_eq!(kv.sessions().number_of(&a), None);
        let stale =
            Command::SessionByNumber { number: 2, seq: 4, acked_seq: 3, at_ms: later, write: Box::new(put("k", "D")) };
        assert_eq!(kv.apply(9, 2, &stale.encode()), Applied::SessionExpired);
        assert_eq!(kv.apply(10, 2, &kv.name_session(by_id(a, 1, 0, later, put("k", "E"))).encode()), Applied::Done);
        assert_eq!(kv.sessions().number_of(&a), Some(4), "a new session of the same id, a new number");
    }

    /// Goal: a resent compare-and-set that matched is not run again (it would now fail,
    /// or apply twice), and one that did not match is not either: it is answered with
    /// the value now if that still differs, and refused once the key holds the expected
    /// value (the client may have been told "did not match" already).
    #[test]
    fn a_resent_compare_and_set_keeps_its_first_outcome_once_it_took_effect() {
        let id = [7u8; 16];
        let cas = |expected: &str, new: &str| Command::Cas {
            key: b"c".to_vec(),
            expected: Some(expected.as_bytes().to_vec()),
            new: Some(new.as_bytes().to_vec()),
        };
        let mut kv = Kv::default();
        kv.apply(1, 1, &put("c", "0").encode());
        assert_eq!(kv.apply(2, 1, &in_session(id, 1, 0, 1, cas("0", "1"))), Applied::Done);
        assert_eq!(kv.apply(3, 1, &in_session(id, 1, 0, 2, cas("0", "1"))), Applied::Duplicate { term: 1, index: 2 });
        assert_eq!(
            kv.apply(4, 1, &in_session(id, 2, 1, 3, cas("5", "6"))),
            Applied::CasMismatch { current: Some(b"1".to_vec()) }
        );
        kv.apply(5, 1, &put("c", "4").encode());
        assert_eq!(
            kv.apply(6, 1, &in_session(id, 2, 1, 4, cas("5", "6"))),
            Applied::CasMismatch { current: Some(b"4".to_vec()) }
        );
        kv.apply(7, 1, &put("c", "5").encode());
        assert_eq!(
            kv.apply(8, 1, &in_session(id, 2, 1, 5, cas("5", "6"))),
            Applied::CasMismatchEarlier { term: 1, index: 4 }
        );
        assert_eq!(kv.get(b"c"), Some(&b"5"[..]));
        assert_eq!(kv.apply(9, 1, &in_session(id, 3, 2, 6, cas("5", "6"))), Applied::Done);
        assert_eq!(kv.get(b"c"), Some(&b"6"[..]));
    }

    /// Goal: after its session expired, a client's resend is refused and changes
    /// nothing; a session write nested in another is refused alike on every replica.
    #[test]
    fn an_expired_session_is_refused_and_nothing_applies() {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let mut kv = Kv::default();
        assert_eq!(kv.apply(1, 1, &in_session(a, 1, 0, 0, put("k", "A"))), Applied::Done);
        let later = crate::session::SESSION_IDLE_MAX_MS;
        assert_eq!(kv.apply(2, 1, &in_session(b, 1, 0, later, put("k", "B"))), Applied::Done);
        assert_eq!(kv.apply(3, 1, &in_session(a, 2, 1, later, put("k", "A2"))), Applied::SessionExpired);
        assert_eq!(kv.get(b"k"), Some(&b"B"[..]));
        let nested = in_session(
            a,
            1,
            0,
            later,
            Command::Session { id: a, seq: 1, acked_seq: 0, at_ms: later, write: Box::new(put("k", "N")) },
        );
        assert_eq!(kv.apply(4, 1, &nested), Applied::Undecodable);
        assert_eq!(kv.get(b"k"), Some(&b"B"[..]));
    }

    /// Goal: a revocation applies once per certificate, keeps a bounded holder name, is
    /// refused inside a session write, and the list stays within its bound.
    #[test]
    fn revocations_are_bounded_and_never_ride_in_a_session() {
        let mut kv = Kv::default();
        let revoke = |n: u16, holder: &str| Command::Revoke {
            fingerprint: {
                let mut fingerprint = [0u8; 32];
                fingerprint[..2].copy_from_slice(&n.to_le_bytes());
                fingerprint
            },
            holder: holder.into(),
        };
        let long = "é".repeat(HOLDER_BYTES_MAX);
        let mut index = 0;
        let mut apply = |kv: &mut Kv, command: &Command| {
            index += 1;
            kv.apply(index, 1, &command.encode())
        };
        assert_eq!(apply(&mut kv, &revoke(0, &long)), Applied::Revoked);
        assert_eq!(apply(&mut kv, &revoke(0, "again")), Applied::Revoked);
        assert_eq!(kv.revoked().len(), 1);
        assert!(kv.revoked()[&[0u8; 32]].len() <= HOLDER_BYTES_MAX);
        let nested = Command::Session { id: [1; 16], seq: 1, acked_seq: 0, at_ms: 0, write: Box::new(revoke(1, "x")) };
        assert_eq!(apply(&mut kv, &nested), Applied::Undecodable);
        for n in 1..REVOKED_MAX as u16 {
            assert_eq!(apply(&mut kv, &revoke(n, "gw")), Applied::Revoked);
        }
        assert_eq!(apply(&mut kv, &revoke(u16::MAX, "one too many")), Applied::RevokedFull);
        assert_eq!(kv.revoked().len(), REVOKED_MAX);
    }
}
