//! The core's refusals in words an operator can act on (`baton switchover`, `failover`,
//! `member ...`), with the members' names from the host's records: what is wrong, and
//! where it helps, who is not heard from and what to do instead.

use crate::node::Host;
use baton_common::{NodeId, Refusal};

impl<W, R> Host<W, R> {
    /// The name member `id` has in the records (as its certificate says), or `id N`.
    pub fn member_name(&self, id: NodeId) -> String {
        self.records.current().name_of(id).map_or_else(|| format!("id {}", id.0), str::to_string)
    }

    /// `refusal` in words, naming members as their certificates do.
    pub fn describe(&self, refusal: &Refusal) -> String {
        let config = self.replica.config();
        let name_of = |id: NodeId| self.member_name(id);
        match refusal {
            Refusal::NotLeader { .. } => "this node is not the leader".into(),
            Refusal::TransferInProgress { target } => {
                format!("a switchover to {} is already in progress", name_of(*target))
            }
            Refusal::UnknownNode => "not a member of the cluster".into(),
            Refusal::TargetIsLeader => "it is already the leader".into(),
            Refusal::NotAVoter => "it is not a voter".into(),
            Refusal::PriorityZero => "its priority is 0 (never leader)".into(),
            Refusal::Unreachable { last_contact_age_us: Some(age) } => {
                format!("unreachable: last heard {:.1} s ago", *age as f64 / 1e6)
            }
            Refusal::Unreachable { last_contact_age_us: None } => "unreachable: never heard from in this term".into(),
            Refusal::Lagging { behind_entries } => {
                format!("lagging by {behind_entries} entries (the bound is {})", config.max_lag_entries)
            }
            Refusal::NoEligibleTarget => "no follower is eligible".into(),
            Refusal::LeaderReachable { last_contact_age_us } => format!(
                "the leader was heard from {:.0} ms ago; use a switchover to move a live leader",
                *last_contact_age_us as f64 / 1000.0
            ),
            Refusal::TermNotCommitted => "the leader has not yet committed an entry of its term; retry shortly".into(),
            Refusal::ChangeInFlight { index } => {
                format!("the membership change at index {index} is not committed yet; one change at a time")
            }
            Refusal::Change(error) => format!("the change does not fit the membership: {error:?}"),
            Refusal::RemovesLeader => "the leader cannot remove itself; move leadership first".into(),
            Refusal::NoLiveQuorum { live, need } => {
                // Name who is not heard from: that is what the operator fixes first.
                let window_us = config.election_timeout_us;
                let silent: Vec<String> = self
                    .replica
                    .peer_statuses()
                    .filter(|p| p.voter && p.last_ack_age_us.is_none_or(|age| age > window_us))
                    .map(|p| name_of(p.id))
                    .collect();
                let silent = match silent.as_slice() {
                    [] => String::new(),
                    names => format!(" ({} not heard from within an election timeout)", names.join(", ")),
                };
                format!("only {live} voters would be reachable{silent} and writes need {need}, so writes would stop")
            }
            Refusal::LogFull => "the log's term table is full until it is compacted".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use baton_common::{NodeId, Refusal};

    /// Goal: refusals name members by name, and a quorum refusal says who is silent.
    #[test]
    fn refusals_name_members_and_the_silent_voters() {
        let host = crate::node::one_voter_host::<(), ()>();
        let text = host.describe(&Refusal::TransferInProgress { target: NodeId(1) });
        assert_eq!(text, "a switchover to n1 is already in progress");
        assert!(host.describe(&Refusal::TransferInProgress { target: NodeId(7) }).contains("id 7"));
        let text = host.describe(&Refusal::NoLiveQuorum { live: 1, need: 2 });
        assert!(
            text.starts_with("only 1 voters would be reachable") && text.ends_with("so writes would stop"),
            "{text}"
        );
        assert!(host.describe(&Refusal::Lagging { behind_entries: 300 }).contains("the bound is 100"));
    }
}
