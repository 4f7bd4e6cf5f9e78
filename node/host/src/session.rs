//! Client sessions in the replicated state machine: each client numbers its writes, and
//! the table here remembers, per session, the last write applied and what it did, so a
//! write that is resent (after a lost reply, a timeout, a failover) takes effect at most
//! once and is answered with its first outcome. This is the Raft dissertation's §6.3
//! design. Every decision is made from the log alone (the leader's clock travels in each
//! entry), so every replica holds the same table; it travels in snapshots.
//!
//! Rules, for a write numbered `seq` in session `id` whose client has had answers up to
//! `acked_seq`:
//! - the session's last write is `seq` and took effect: not applied again, answered with
//!   the index and term it took effect at;
//! - the session's last write is `seq` and was a compare-and-set that did not match: it
//!   never runs again. An attempt of it may reach the log after the client was already
//!   told "did not match" (its first attempt delayed in the network, resent, answered,
//!   and then arriving): run again, it could take effect after that answer. It is
//!   answered "did not match" with the value now if that still differs from the
//!   expected one, and otherwise refused as not applied, with where it did not match
//!   (the simulator found this: seed 3146 of 20,000 with delayed client requests);
//! - `seq` is above the last: applied, and remembered as the last;
//! - `seq` is below the last: the client has moved on; not applied;
//! - no such session and `acked_seq` is 0: a new session (its first answer is still to
//!   come); with `acked_seq` above 0 the session existed and expired: refused, never
//!   applied a second time.
//!
//! Numbers: a session write names its session by id (16 bytes) until its session has a
//! number, and by number (a varint, one to three bytes) after: every log entry of a
//! client write is about 14 bytes smaller. The first write named by id that a replica
//! applies turns numbering on (older builds never write that form, so every replica
//! turns it on at the same entry, with the same table); from then on each new session
//! gets the next number, and the sessions already there are numbered in id order. A
//! number is never given twice; a write naming a number whose session is gone is
//! refused as expired, as a write naming a gone id is.
//!
//! Bounds: [`SESSIONS_MAX`] sessions; a session unused for [`SESSION_IDLE_MAX_MS`] of log
//! time expires; a full table makes room by expiring its least recently used session
//! only if that one has been idle for [`SESSION_EVICT_IDLE_MIN_MS`], and otherwise refuses
//! the new session. The client stops resending a write after
//! `client::SESSION_RESEND_WINDOW`, well inside both.

use std::collections::{BTreeSet, HashMap};

/// A session's name: 128 random bits chosen by the client.
pub type SessionId = [u8; 16];

/// Sessions the table holds at most (about 100 bytes each).
pub const SESSIONS_MAX: usize = 4096;
/// A session unused for this long (by the clocks of the leaders that wrote the log)
/// expires.
pub const SESSION_IDLE_MAX_MS: u64 = 60 * 60 * 1000;
/// A full table expires its least recently used session early only if it has been idle
/// this long: far longer than any client keeps resending one write.
pub const SESSION_EVICT_IDLE_MIN_MS: u64 = 5 * 60 * 1000;

/// What a session's last write did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect at this position.
    Written { term: u64, index: u64 },
    /// A compare-and-set that did not match here: nothing changed, and a resend never
    /// runs again. (Position 0 for a snapshot written before positions were kept.)
    CasMismatch { term: u64, index: u64 },
}

/// One client's session.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub last_seq: u64,
    pub outcome: Outcome,
    /// Log time of its last write.
    pub last_used_ms: u64,
}

/// The decision for one sessioned write, before it runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Run the write, then [`Sessions::record`] its outcome.
    Run,
    /// Already applied: answer with this position.
    Duplicate { term: u64, index: u64 },
    /// A compare-and-set that did not match at this position: never run again.
    CasMismatched { term: u64, index: u64 },
    /// The client has moved past this write.
    Stale,
    /// The session expired (or was never known to a client that has had answers).
    Expired,
    /// No room for a new session.
    Full,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    by_id: HashMap<SessionId, Session>,
    /// (last used, id), oldest first: what expires next.
    by_use: BTreeSet<(u64, SessionId)>,
    /// The log's time: the highest leader clock seen in a sessioned write.
    clock_ms: u64,
    /// Session numbers (see the module's doc): on, the next to give, and both ways.
    numbering: bool,
    /// Numbers given so far: the next is one more.
    numbers_given: u64,
    number_by_id: HashMap<SessionId, u64>,
    id_by_number: HashMap<u64, SessionId>,
}

impl Sessions {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    pub fn get(&self, id: &SessionId) -> Option<&Session> {
        self.by_id.get(id)
    }

    /// Whether sessions are numbered (from the first write naming its session by id).
    pub fn numbering(&self) -> bool {
        self.numbering
    }

    /// The number the next new session gets (1 until one is given).
    pub fn next_number(&self) -> u64 {
        self.numbers_given + 1
    }

    /// The session's number, if it has one.
    pub fn number_of(&self, id: &SessionId) -> Option<u64> {
        self.number_by_id.get(id).copied()
    }

    /// The session that has this number, if it still exists.
    pub fn id_of_number(&self, number: u64) -> Option<SessionId> {
        self.id_by_number.get(&number).copied()
    }

    /// Turns numbering on (applying a write that names its session by id): the sessions
    /// already there are numbered in id order. Does nothing if it is on.
    pub fn start_numbering(&mut self) {
        if self.numbering {
            return;
        }
        self.numbering = true;
        let mut ids: Vec<SessionId> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.give_number(id);
        }
    }

    fn give_number(&mut self, id: SessionId) {
        self.numbers_given += 1;
        let number = self.numbers_given;
        self.number_by_id.insert(id, number);
        self.id_by_number.insert(number, id);
    }

    fn forget(&mut self, id: &SessionId) {
        self.by_id.remove(id);
        if let Some(number) = self.number_by_id.remove(id) {
            self.id_by_number.remove(&number);
        }
    }

    /// Puts back numbering as a snapshot held it: on or off, the next number, and each
    /// session's number (sessions restored first; a number for an id not restored is
    /// ignored).
    pub fn restore_numbering(
        &mut self,
        numbering: bool,
        next_number: u64,
        numbers: impl IntoIterator<Item = (SessionId, u64)>,
    ) {
        self.numbering = numbering;
        self.numbers_given = next_number.saturating_sub(1);
        for (id, number) in numbers {
            if number == 0 || !self.by_id.contains_key(&id) {
                continue;
            }
            self.number_by_id.insert(id, number);
            self.id_by_number.insert(number, id);
        }
    }

    /// Every session, least recently used first (the order snapshots hold them in).
    pub fn iter(&self) -> impl Iterator<Item = (&SessionId, &Session)> {
        self.by_use.iter().map(|(_, id)| (id, &self.by_id[id]))
    }

    /// Decides what to do with write `seq` of session `id`, stamped `at_ms` by the
    /// leader that proposed it. Advances the log's clock and expires idle sessions first.
    pub fn admit(&mut self, id: &SessionId, seq: u64, acked_seq: u64, at_ms: u64) -> Admission {
        self.clock_ms = self.clock_ms.max(at_ms);
        self.expire_idle();
        self.admit_now(id, seq, acked_seq)
    }

    /// [`Sessions::admit`] for a write that names its session by number: the session it
    /// is, if it still exists, and the decision. A number nobody has (now) is refused
    /// as expired: the leader names a session by number only once its client has had
    /// answers in it.
    pub fn admit_numbered(
        &mut self,
        number: u64,
        seq: u64,
        acked_seq: u64,
        at_ms: u64,
    ) -> (Option<SessionId>, Admission) {
        self.clock_ms = self.clock_ms.max(at_ms);
        self.expire_idle();
        match self.id_by_number.get(&number).copied() {
            Some(id) if self.numbering => (Some(id), self.admit_now(&id, seq, acked_seq)),
            _ => (None, Admission::Expired),
        }
    }

    fn admit_now(&mut self, id: &SessionId, seq: u64, acked_seq: u64) -> Admission {
        match self.by_id.get(id) {
            Some(session) if seq < session.last_seq => Admission::Stale,
            Some(session) if seq == session.last_seq => match session.outcome {
                Outcome::Written { term, index } => {
                    self.touch(id);
                    Admission::Duplicate { term, index }
                }
                Outcome::CasMismatch { term, index } => {
                    self.touch(id);
                    Admission::CasMismatched { term, index }
                }
            },
            Some(_) => Admission::Run,
            None if acked_seq > 0 => Admission::Expired,
            None => {
                if self.by_id.len() >= SESSIONS_MAX && !self.evict_least_recently_used() {
                    return Admission::Full;
                }
                Admission::Run
            }
        }
    }

    /// Records what write `seq` of session `id` did (after [`Admission::Run`]).
    pub fn record(&mut self, id: &SessionId, seq: u64, outcome: Outcome) {
        let last_used_ms = self.clock_ms;
        match self.by_id.insert(*id, Session { last_seq: seq, outcome, last_used_ms }) {
            Some(previous) => {
                assert!(previous.last_seq <= seq, "a session's writes are recorded in order");
                self.by_use.remove(&(previous.last_used_ms, *id));
            }
            None if self.numbering => self.give_number(*id),
            None => {}
        }
        self.by_use.insert((last_used_ms, *id));
        assert!(self.by_id.len() <= SESSIONS_MAX, "the session table stays bounded");
        assert_eq!(self.by_id.len(), self.by_use.len());
        assert!(self.number_by_id.len() <= self.by_id.len(), "numbers only for sessions that exist");
    }

    /// Puts back a session read from a snapshot (in any order).
    pub fn restore(&mut self, id: SessionId, session: Session) {
        self.clock_ms = self.clock_ms.max(session.last_used_ms);
        if let Some(previous) = self.by_id.insert(id, session) {
            self.by_use.remove(&(previous.last_used_ms, id));
        }
        self.by_use.insert((session.last_used_ms, id));
    }

    /// Sets the log's clock (from a snapshot).
    pub fn restore_clock(&mut self, clock_ms: u64) {
        self.clock_ms = self.clock_ms.max(clock_ms);
    }

    fn touch(&mut self, id: &SessionId) {
        let session = self.by_id.get_mut(id).expect("touched sessions exist");
        self.by_use.remove(&(session.last_used_ms, *id));
        session.last_used_ms = self.clock_ms;
        self.by_use.insert((self.clock_ms, *id));
    }

    fn expire_idle(&mut self) {
        while let Some(&(last_used_ms, id)) = self.by_use.first() {
            if self.clock_ms.saturating_sub(last_used_ms) < SESSION_IDLE_MAX_MS {
                break;
            }
            self.by_use.pop_first();
            self.forget(&id);
        }
    }

    /// Expires the least recently used session if it has been idle long enough.
    fn evict_least_recently_used(&mut self) -> bool {
        match self.by_use.first() {
            Some(&(last_used_ms, id)) if self.clock_ms.saturating_sub(last_used_ms) >= SESSION_EVICT_IDLE_MIN_MS => {
                self.by_use.pop_first();
                self.forget(&id);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> SessionId {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_le_bytes());
        id
    }

    /// Goal: a resent write is answered with its first position; a later one runs; an
    /// earlier one does not; a compare-and-set that did not match never runs again.
    #[test]
    fn a_write_runs_once_per_sequence_number() {
        let mut sessions = Sessions::default();
        assert_eq!(sessions.admit(&id(1), 1, 0, 1000), Admission::Run);
        sessions.record(&id(1), 1, Outcome::Written { term: 2, index: 10 });
        assert_eq!(sessions.admit(&id(1), 1, 0, 1001), Admission::Duplicate { term: 2, index: 10 });
        assert_eq!(sessions.admit(&id(1), 2, 1, 1002), Admission::Run);
        sessions.record(&id(1), 2, Outcome::CasMismatch { term: 2, index: 12 });
        assert_eq!(sessions.admit(&id(1), 1, 0, 1003), Admission::Stale);
        assert_eq!(sessions.admit(&id(1), 2, 1, 1004), Admission::CasMismatched { term: 2, index: 12 });
        assert_eq!(sessions.admit(&id(1), 3, 2, 1005), Admission::Run);
        sessions.record(&id(1), 3, Outcome::Written { term: 2, index: 14 });
        assert_eq!(sessions.admit(&id(1), 3, 2, 1006), Admission::Duplicate { term: 2, index: 14 });
        assert_eq!(sessions.len(), 1);
    }

    /// Goal: an idle session expires by log time, and a client that has had answers in it
    /// is then refused, never applied again; a new client's first write still runs.
    #[test]
    fn an_idle_session_expires_and_is_refused() {
        let mut sessions = Sessions::default();
        assert_eq!(sessions.admit(&id(1), 1, 0, 0), Admission::Run);
        sessions.record(&id(1), 1, Outcome::Written { term: 1, index: 1 });
        assert_eq!(sessions.admit(&id(2), 1, 0, SESSION_IDLE_MAX_MS - 1), Admission::Run);
        sessions.record(&id(2), 1, Outcome::Written { term: 1, index: 2 });
        assert!(sessions.get(&id(1)).is_some(), "not yet idle for the limit");
        assert_eq!(sessions.admit(&id(2), 2, 1, SESSION_IDLE_MAX_MS), Admission::Run);
        sessions.record(&id(2), 2, Outcome::Written { term: 1, index: 3 });
        assert!(sessions.get(&id(1)).is_none());
        assert_eq!(sessions.admit(&id(1), 2, 1, SESSION_IDLE_MAX_MS), Admission::Expired);
        assert_eq!(sessions.admit(&id(1), 1, 1, SESSION_IDLE_MAX_MS), Admission::Expired);
        // A leader whose clock runs behind never moves the log's time back.
        assert_eq!(sessions.admit(&id(2), 3, 2, 5), Admission::Run);
        assert_eq!(sessions.clock_ms(), SESSION_IDLE_MAX_MS);
    }

    /// Goal: a full table refuses a new session while every session is in recent use,
    /// and makes room from the least recently used one once it has been idle long enough.
    #[test]
    fn a_full_table_refuses_or_expires_the_least_recently_used() {
        let mut sessions = Sessions::default();
        for n in 0..SESSIONS_MAX as u32 {
            assert_eq!(sessions.admit(&id(n), 1, 0, u64::from(n)), Admission::Run);
            sessions.record(&id(n), 1, Outcome::Written { term: 1, index: u64::from(n) + 1 });
        }
        let later = SESSION_EVICT_IDLE_MIN_MS - 1;
        assert_eq!(sessions.admit(&id(u32::MAX), 1, 0, later), Admission::Full);
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert_eq!(sessions.admit(&id(u32::MAX), 1, 0, SESSION_EVICT_IDLE_MIN_MS), Admission::Run);
        sessions.record(&id(u32::MAX), 1, Outcome::Written { term: 1, index: 99_999 });
        assert!(sessions.get(&id(0)).is_none(), "the least recently used made room");
        assert!(sessions.get(&id(1)).is_some());
        assert_eq!(sessions.len(), SESSIONS_MAX);
    }
}
