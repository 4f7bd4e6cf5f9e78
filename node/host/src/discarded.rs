//! A discarded entry in words (async mode: entries a new leader's log did not hold, kept
//! in the node's journal of discarded writes before the truncation that removes them):
//! the operation, key and value it carried, for an operator to redo by hand.

use crate::kv::Command;

/// What a discarded entry carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscardedEntry {
    /// `put`, `delete`, `cas`, `revoke`, `members`, `noop` (a leader's first entry), or
    /// `undecodable`.
    pub op: &'static str,
    /// The key (a revocation's holder, a membership record's change).
    pub key: String,
    /// The value written, if the operation writes one.
    pub value: Option<String>,
}

/// The entry with `payload` in words. A session's write is described by the write it
/// carries.
pub fn describe(payload: &[u8]) -> DiscardedEntry {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let (op, key, value) = if payload.is_empty() {
        ("noop", String::new(), None)
    } else {
        match Command::decode(payload).as_ref().map(Command::write) {
            Some(Command::Put { key, value }) => ("put", text(key), Some(text(value))),
            Some(Command::Delete { key }) => ("delete", text(key), None),
            Some(Command::Cas { key, new, .. }) => ("cas", text(key), new.as_deref().map(text)),
            Some(Command::Revoke { holder, .. }) => ("revoke", holder.clone(), None),
            Some(Command::Members(record)) => ("members", format!("{:?}", record.change), None),
            Some(Command::Session { .. } | Command::SessionById { .. } | Command::SessionByNumber { .. }) | None => {
                ("undecodable", String::new(), None)
            }
        }
    };
    DiscardedEntry { op, key, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: each kind of entry is named with its key and value; a session's write by the
    /// write inside; bytes that are no command say so.
    #[test]
    fn names_what_each_entry_carried() {
        let put = Command::Put { key: b"k".to_vec(), value: b"v".to_vec() };
        assert_eq!(describe(&put.encode()), DiscardedEntry { op: "put", key: "k".into(), value: Some("v".into()) });
        let session = Command::SessionById {
            id: [1; 16],
            seq: 1,
            acked_seq: 0,
            at_ms: 0,
            write: Box::new(Command::Delete { key: b"d".to_vec() }),
        };
        assert_eq!(describe(&session.encode()), DiscardedEntry { op: "delete", key: "d".into(), value: None });
        assert_eq!(describe(&[]).op, "noop");
        assert_eq!(describe(&[0xff, 0xff, 0xff]).op, "undecodable");
    }
}
