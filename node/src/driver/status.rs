//! A node's status and leadership history as `baton status` and `baton history` show
//! them: the core's and the host's state, with the members' names and the driver's own
//! counters.

use super::{unix_ms, Driver};
use crate::status::{FollowerStatus, NodeStatus};
use baton_common::{NodeId, ReplicationState, Role};

impl Driver {
    /// The leaders this node has seen, for `baton history`.
    pub(super) fn history(&self) -> Vec<crate::status::HistoryEntry> {
        let name = |id: NodeId| self.membership.name_of(id).to_string();
        let cause = |cause| match cause {
            baton_common::ElectionCause::Timeout => "timeout",
            baton_common::ElectionCause::Switchover => "switchover",
            baton_common::ElectionCause::Manual => "manual",
        };
        let changes = self.host.leaders.changes();
        changes
            .map(|change| crate::status::HistoryEntry {
                term: change.term,
                at_unix_ms: self.started_unix_ms + change.at_us / 1000,
                from: change.from.map(name),
                to: Some(name(change.to)),
                cause: change.cause.map(|c| cause(c).to_string()),
                discarded_entries: change.discarded_entries,
            })
            .collect()
    }

    pub(super) fn status(&self) -> NodeStatus {
        let now = self.now();
        let status = self.host.replica.status();
        let watch = self.watchers.counters();
        let name = |id: NodeId| self.membership.name_of(id).to_string();
        let followers = self
            .host
            .followers(now)
            .into_iter()
            .map(|follower| {
                let peer = follower.peer;
                FollowerStatus {
                    id: name(peer.id),
                    addr: self.membership.addr_of(peer.id).map(|a| a.to_string()).unwrap_or_default(),
                    match_index: peer.match_index,
                    lag_entries: peer.lag_entries,
                    lag_bytes: follower.lag_bytes,
                    stuck_ms: follower.stuck_us / 1000,
                    snapshot_percent: (peer.state == ReplicationState::Snapshot)
                        .then(|| self.sends.progress_percent(peer.id))
                        .flatten(),
                    lag_ms: follower.lag_us / 1000,
                    last_ack_age_ms: peer.last_ack_age_us.map(|us| us / 1000),
                    in_sync: peer.in_sync,
                    state: match peer.state {
                        ReplicationState::Probe => "probe",
                        ReplicationState::Replicate => "replicate",
                        ReplicationState::Snapshot => "snapshot",
                    }
                    .into(),
                }
            })
            .collect::<Vec<FollowerStatus>>();
        let failover = self.host.failover_loss();
        NodeStatus {
            snapshot_bytes: self.snapshot_bytes,
            snapshots_taken: self.snapshots_taken,
            snapshots_installed: self.snapshots_installed,
            sessions: self.host.kv.sessions().len() as u64,
            duplicate_writes: self.duplicate_writes,
            snapshot_receiving_percent: self.receiver.as_ref().and_then(crate::transfer::Receiver::progress_percent),
            max_log_bytes: self.max_log_bytes,
            failover_safe: failover.safe,
            failover_loss_entries: failover.entries,
            fsync_latency: self.fsync_latency.clone(),
            certificate_not_after_unix_s: crate::tls::certificate_not_after_unix_s(),
            clock_behind_accepts: crate::tls::clock_behind_accepts(),
            clock_unix_ms: unix_ms(),
            revoked_certificates: self
                .host
                .kv
                .revoked()
                .iter()
                .map(|(fingerprint, holder)| format!("{holder} {}", crate::revocation::hex(fingerprint)))
                .collect(),
            watchers: self.watchers.len() as u64,
            watches_opened: watch.opened,
            watches_refused: watch.refused,
            watches_ended: watch.ended_compacted + watch.ended_discarded,
            watch_changes_sent: watch.changes_delivered,
            requests_forwarded: self.requests_forwarded,
            relays_sent: self.relays_sent,
            frames_relayed: self.frames_relayed,
            relays_dropped: self.relays_dropped,
            writes_acknowledged: self.writes_acknowledged,
            write_ack_latency: self.write_ack_latency.clone(),
            id: self.membership.my_name().to_string(),
            membership_role: self.host.membership_role().as_str().into(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            addr: self.membership.addr_of(self.membership.me()).map(|a| a.to_string()).unwrap_or_default(),
            role: match status.role {
                Role::Follower => "follower",
                Role::PreCandidate => "pre-candidate",
                Role::Candidate => "candidate",
                Role::Leader => "leader",
            }
            .into(),
            term: status.term,
            leader: status.leader.map(name),
            mode: self.host.replica.config().mode.to_string(),
            last_index: status.last.index,
            last_term: status.last.term,
            commit_index: status.commit_index,
            applied_index: self.host.kv.applied_index(),
            durable_index: status.durable_index,
            snapshot_index: status.snapshot.index,
            paused: status.paused,
            followers,
            entries_received: self.host.entries_received,
            wal_bytes: self.wal.bytes(),
            handshakes_refused: self.counters.handshakes_refused.load(std::sync::atomic::Ordering::Relaxed),
            hellos_refused: self.counters.hellos_refused.load(std::sync::atomic::Ordering::Relaxed),
            malformed_frames: self.counters.malformed_frames.load(std::sync::atomic::Ordering::Relaxed),
            frames_dropped: self.dropped_frames,
            discarded_entries: self.discarded_entries,
            disk_free_bytes: crate::storage::free_bytes(self.wal.dir()).ok(),
            cost: crate::cost::ProcessCost::now(),
            keys: self.host.kv.len() as u64,
            data_bytes: self.host.kv.data_bytes(),
            members: {
                let record = self.host.records.current();
                record
                    .membership
                    .members
                    .iter()
                    .map(|member| crate::status::MemberAddr {
                        id: self.membership.name_of(member.id),
                        addr: record.addr_of(member.id).unwrap_or_default().to_string(),
                        role: match (member.witness, member.voter) {
                            (true, _) => "witness",
                            (false, true) => "voter",
                            (false, false) => "learner",
                        }
                        .into(),
                        node_id: member.id.0,
                        priority: member.priority,
                        upstream: record
                            .entry(member.id)
                            .and_then(|e| e.upstream)
                            .map_or_else(String::new, |up| self.membership.name_of(NodeId(up))),
                    })
                    .collect()
            },
        }
    }
}
