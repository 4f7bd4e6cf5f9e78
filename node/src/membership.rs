//! The cluster's members as this node sees them right now: each id's name and address
//! from the newest membership record in its log (see `baton_host::members`), shared by
//! the driver (which replaces it as records are appended or truncated) and the transport
//! (which checks every peer's hello against it and dials the addresses). It also keeps
//! the node's own record of how it was formed or joined (`<data dir>/membership.json`),
//! the membership in effect before any record in its log.

use crate::addr::NodeAddr;
use baton_common::NodeId;
use baton_host::members::MemberRecord;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

/// The shared view. Clones share it.
#[derive(Clone, Debug)]
pub struct Directory {
    me: NodeId,
    my_name: Arc<str>,
    record: Arc<RwLock<MemberRecord>>,
    /// The id whose removal the newest record makes but which is not committed yet (0:
    /// none): until it commits, that node may still have to lead to commit it (Raft
    /// thesis 4.2.2), so its hello is still let in.
    removal_pending: Arc<AtomicU8>,
}

/// Why a peer's hello is refused, in words that name the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloRefused(pub String);

impl Directory {
    /// `me` is this node's id in `record`, fixed for the life of its data directory.
    pub fn new(my_name: &str, me: NodeId, record: MemberRecord) -> Directory {
        Directory {
            me,
            my_name: my_name.into(),
            record: Arc::new(RwLock::new(record)),
            removal_pending: Arc::default(),
        }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn my_name(&self) -> &str {
        &self.my_name
    }

    /// The newest record, as the driver last set it.
    pub fn record(&self) -> MemberRecord {
        self.record.read().expect("never poisoned").clone()
    }

    /// The driver's new view, after a record was appended, truncated or installed.
    /// Names and addresses of ids the new record does not list are kept: ids are never
    /// reused, so what this node learned of one stays true, and a record older than one
    /// seen before (a snapshot the leader took before later changes, installed by a node
    /// that joined since) must not make it forget how to reach the nodes added since,
    /// its leader among them.
    pub fn replace(&self, mut record: MemberRecord) {
        let mut current = self.record.write().expect("never poisoned");
        for entry in &current.directory {
            if record.directory.iter().all(|e| e.id != entry.id) {
                record.directory.push(entry.clone());
            }
        }
        *current = record;
    }

    /// The driver's word on whether the newest record's removal (if it makes one) has
    /// committed: `Some(id)` while it has not.
    pub fn set_removal_pending(&self, id: Option<NodeId>) {
        self.removal_pending.store(id.map_or(0, |id| id.0), Ordering::Relaxed);
    }

    pub fn cluster_id(&self) -> u64 {
        self.record.read().expect("never poisoned").cluster_id
    }

    pub fn id_of(&self, name: &str) -> Option<NodeId> {
        self.record.read().expect("never poisoned").id_of(name)
    }

    /// The name of `id`, or `id N` for an id this node has not heard of yet.
    pub fn name_of(&self, id: NodeId) -> String {
        if id == self.me {
            return self.my_name.to_string();
        }
        let record = self.record.read().expect("never poisoned");
        record.name_of(id).map_or_else(|| format!("id {}", id.0), str::to_string)
    }

    /// Where `id` is reached, if this node knows (and can parse) its address.
    pub fn addr_of(&self, id: NodeId) -> Option<NodeAddr> {
        self.record.read().expect("never poisoned").addr_of(id).and_then(|a| a.parse().ok())
    }

    /// Checks the hello of a node whose certificate names `name`, which says it is id
    /// `claimed` (0: it has no state yet and asks to join) of cluster `cluster_id` (0:
    /// not chosen yet). Returns the id its messages count as.
    ///
    /// A node this one has not heard added yet is let in (its log may be ahead: the
    /// core decides what its messages are worth); a removed id, a name that belongs to
    /// another id, or a node of another cluster is refused.
    pub fn admit(&self, name: &str, claimed: u8, cluster_id: u64) -> Result<NodeId, HelloRefused> {
        let record = self.record.read().expect("never poisoned");
        let refuse = |reason: String| Err(HelloRefused(reason));
        if cluster_id != 0 && record.cluster_id != 0 && cluster_id != record.cluster_id {
            return refuse(format!(
                "node {name} belongs to cluster {cluster_id:016x}, this node to cluster {:016x}. Fix: point it at \
                 its own cluster, or empty its data directory and `baton member add` it here",
                record.cluster_id
            ));
        }
        let named = record.id_of(name).filter(|id| record.membership.member(*id).is_some());
        if claimed == 0 {
            return match named {
                Some(id) if !record.membership.is_voter(id) => Ok(id),
                Some(_) => refuse(format!(
                    "node {name} is a voter here, and only a learner just added joins. Fix: if its machine was \
                     replaced, `baton member replace {name} NEWID HOST:PORT` (ids are never reused)"
                )),
                None => refuse(format!(
                    "node {name} is not a member of this cluster. Fix: on the operator's machine run \
                     `baton member add {name} HOST:PORT`, then start it with --join"
                )),
            };
        }
        let id = NodeId(claimed);
        if id == self.me {
            return refuse(format!("node {name} says it is id {claimed}, which is this node's own"));
        }
        if record.membership.is_removed(id) && self.removal_pending.load(Ordering::Relaxed) != claimed {
            return refuse(format!(
                "node {name} holds id {claimed}, which was removed from this cluster and is never accepted again. \
                 Fix: stop it; to bring its machine back, empty its data directory and `baton member add` it"
            ));
        }
        if let Some(known) = named.filter(|known| *known != id) {
            return refuse(format!(
                "node {name} says it is id {claimed}, but {name} is id {} here (a replaced machine's old data?). \
                 Fix: stop the process holding the old data",
                known.0
            ));
        }
        if let Some(other) = record.name_of(id).filter(|other| *other != name) {
            return refuse(format!("node {name} says it is id {claimed}, which is {other}'s"));
        }
        Ok(id)
    }
}

/// `<data dir>/membership.json`: how this node was formed or joined.
pub fn base_path(data_dir: &Path) -> PathBuf {
    data_dir.join("membership.json")
}

/// This node's record of how it was formed or joined, if it has one.
pub fn load_base(data_dir: &Path) -> Result<Option<MemberRecord>, String> {
    let path = base_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let damaged = |reason: String| {
        format!(
            "{}: {reason}. Fix: restore the file from a copy, or move the data directory aside and let the node \
             join again (`baton member remove` it, `baton member add` it, start it with --join)",
            path.display()
        )
    };
    let record: MemberRecord = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    record.validate().map_err(|e| damaged(e.to_string()))?;
    Ok(Some(record))
}

/// Writes this node's base record: temporary file, fsync, rename, directory fsync.
pub fn store_base(data_dir: &Path, record: &MemberRecord) -> Result<(), String> {
    let path = base_path(data_dir);
    let tmp = data_dir.join("membership.json.tmp");
    let bytes = serde_json::to_vec_pretty(record).expect("records always serialize");
    let written = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(data_dir)?;
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, &bytes)?;
        crate::storage::sync_all(&file)?;
        std::fs::rename(&tmp, &path)
    })();
    written.map_err(|e| format!("{}: {e}", path.display()))?;
    crate::storage::sync_dir(data_dir).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_common::{Change, WriteMode};
    use baton_host::members::MemberEntry;

    fn three() -> MemberRecord {
        let peers = [("n1", "127.0.0.1:1"), ("n2", "127.0.0.1:2"), ("n3", "127.0.0.1:3")];
        let mut record = MemberRecord::formed(&peers.map(|(n, a)| (n.to_string(), a.to_string())));
        record.cluster_id = 7;
        record
    }

    /// Goal: every kind of hello gets the verdict the rules give, with a reason.
    #[test]
    fn hellos_are_admitted_or_refused_by_id_name_and_cluster() {
        let directory = Directory::new("n1", NodeId(1), three());
        assert_eq!(directory.admit("n2", 2, 7), Ok(NodeId(2)));
        assert_eq!(directory.admit("n2", 2, 0), Ok(NodeId(2)), "cluster not chosen yet on its side");
        assert!(directory.admit("n2", 2, 8).unwrap_err().0.contains("cluster"));
        assert!(directory.admit("n2", 3, 7).unwrap_err().0.contains("is id 2 here"));
        assert!(directory.admit("n9", 3, 7).unwrap_err().0.contains("n3's"));
        assert_eq!(directory.admit("n9", 9, 7), Ok(NodeId(9)), "added since, for all this node knows");
        assert!(directory.admit("n2", 0, 7).unwrap_err().0.contains("voter"));
        assert!(directory.admit("n9", 0, 7).unwrap_err().0.contains("baton member add n9"));

        let record = three();
        let change = Change::AddLearner { id: NodeId(4), priority: 1 };
        let membership = record.membership.apply(change, WriteMode::Quorum).unwrap();
        let (name, addr) = ("n4".to_string(), "127.0.0.1:4".to_string());
        let entry = MemberEntry { id: 4, name, addr, promote_when_caught_up: true, upstream: None };
        let record = record.changed(change, membership, Some(entry));
        let removal = Change::Remove { id: NodeId(2) };
        let membership = record.membership.apply(removal, WriteMode::Quorum).unwrap();
        directory.replace(record.changed(removal, membership, None));
        assert_eq!(directory.admit("n4", 0, 0), Ok(NodeId(4)), "a learner just added joins");
        assert_eq!(directory.addr_of(NodeId(4)), Some("127.0.0.1:4".parse().unwrap()));
        // Until the removal commits, n2 may have to lead to commit it: let in.
        directory.set_removal_pending(Some(NodeId(2)));
        assert_eq!(directory.admit("n2", 2, 7), Ok(NodeId(2)));
        directory.set_removal_pending(None);
        assert!(directory.admit("n2", 2, 7).unwrap_err().0.contains("removed"));
        assert_eq!(directory.name_of(NodeId(2)), "n2", "a removed id keeps its name");
        assert_eq!(directory.name_of(NodeId(42)), "id 42");
    }

    #[test]
    fn the_base_record_is_stored_and_damage_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_base(dir.path()).unwrap(), None);
        store_base(dir.path(), &three()).unwrap();
        assert_eq!(load_base(dir.path()).unwrap(), Some(three()));
        std::fs::write(base_path(dir.path()), b"{ not json").unwrap();
        let error = load_base(dir.path()).unwrap_err();
        assert!(error.contains("membership.json") && error.contains("Fix"), "{error}");
    }
}
