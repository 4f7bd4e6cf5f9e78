//! How a driver is built from what the node recovered at start-up: the core, the log,
//! the hard state, the snapshot with the map as of it, the membership records and the
//! links to the members, the revocation list and the journal of discarded writes.

use super::{unix_ms, Driver};
use crate::handoff::{Input, Outbound, TransportCounters};
use crate::kv::Kv;
use crate::membership::Directory;
use crate::storage::hard_state::HardStateFile;
use crate::storage::snapshot::SnapshotDir;
use crate::storage::wal::Wal;
use baton_common::{Position, Replica};
use baton_host::members::MemberRecords;
use baton_host::node::Host;
use baton_host::watch::Watchers;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        replica: Replica,
        wal: Wal,
        hard_state: HardStateFile,
        membership: Directory,
        inputs: mpsc::Receiver<Input>,
        loopback: mpsc::Sender<Input>,
        started: Instant,
        counters: std::sync::Arc<TransportCounters>,
    ) -> Driver {
        Driver {
            host: Host::new(replica, Kv::default(), MemberRecords::new(0, membership.record())),
            wal,
            hard_state,
            membership,
            links: None,
            outbound: Outbound::new(),
            inputs,
            loopback,
            started,
            dropped_frames: 0,
            counters,
            started_unix_ms: unix_ms().saturating_sub(started.elapsed().as_millis() as u64),
            discarded_dir: std::path::PathBuf::new(),
            discarded: None,
            discarded_entries: 0,
            snapshots: None,
            snapshot: Position::ZERO,
            snapshot_bytes: 0,
            witness_snapshot_at: None,
            started_as_witness: false,
            witness_bytes_withheld: 0,
            max_log_bytes: u64::MAX,
            compacting: false,
            sends: crate::transfer::Sends::default(),
            link_states: std::collections::HashMap::new(),
            links_retired_through: 0,
            receiver: None,
            received: None,
            duplicate_writes: 0,
            revocations: crate::revocation::RevocationList::default(),
            open_connections: Arc::default(),
            snapshots_taken: 0,
            snapshots_installed: 0,
            fsync_latency: crate::status::LatencyHistogram::default(),
            writes_acknowledged: 0,
            write_ack_latency: crate::status::LatencyHistogram::default(),
            fatal: None,
            watchers: Watchers::new(),
            watch_sinks: HashMap::new(),
            watch_turn_due: false,
            requests_forwarded: 0,
            relays_sent: 0,
            frames_relayed: 0,
            relays_dropped: 0,
        }
    }

    /// The node was started with `--witness`: the membership must hold it as a witness.
    pub fn started_as_witness(mut self, witness: bool) -> Driver {
        self.started_as_witness = witness;
        self.members_changed();
        self
    }

    /// Where snapshots live, the recovered one (with the map as of it), and the log bound.
    pub fn with_snapshots(mut self, snapshots: SnapshotDir, snapshot: Position, kv: Kv, max_log_bytes: u64) -> Driver {
        assert_eq!(kv.applied_index(), snapshot.index, "the map starts at the snapshot");
        self.snapshot_bytes = std::fs::metadata(snapshots.path()).map_or(0, |m| m.len());
        self.receiver = Some(crate::transfer::Receiver::new(snapshots.incoming_path()));
        self.snapshots = Some(snapshots);
        self.snapshot = snapshot;
        self.host.kv = kv;
        self.max_log_bytes = max_log_bytes;
        self
    }

    /// Where discarded writes are kept (under the data directory).
    /// The list this node's TLS verifiers refuse, and its open connections: both follow
    /// the state machine's revocations.
    pub fn with_revocations(
        mut self,
        list: crate::revocation::RevocationList,
        open: Arc<crate::revocation::OpenConnections>,
    ) -> Driver {
        self.revocations = list;
        self.open_connections = open;
        self.enforce_revocations();
        self
    }

    /// Makes the verifiers refuse what the state machine revoked, and closes the open
    /// connections of those certificates: a revocation takes effect on every node as
    /// soon as it applies there.
    pub(super) fn enforce_revocations(&mut self) {
        let revoked = self.host.kv.revoked();
        self.revocations.replace(revoked);
        let closed = self.open_connections.close_revoked(revoked);
        if closed > 0 {
            tracing::warn!(closed, "closed connections of revoked certificates");
        }
    }

    pub fn with_discarded_dir(mut self, dir: std::path::PathBuf) -> Driver {
        self.discarded = Some(crate::discarded::Journal::open(&dir));
        self.discarded_dir = dir;
        self
    }
}
