//! An operator's leadership requests, decided with the members' names: a switchover to
//! a named member (or the best one), a manual failover (this node campaigns), and
//! pausing or resuming automatic failover. Each is answered in words an operator can act
//! on (see [`crate::refusals`]).

use crate::node::Host;
use baton_common::Refusal;

/// What a switchover request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwitchoverVerdict {
    /// Leadership goes to `target` (`started`), or would (a dry run).
    Accepted { target: String, started: bool },
    /// Switchovers go through the leader, and this node does not lead.
    NotLeader,
    /// Refused, with the target it would have had and every reason, in words.
    Refused { target: Option<String>, reasons: Vec<String> },
}

impl<W, R> Host<W, R> {
    /// Hands leadership to the member named `to`, or to the best caught-up follower, at
    /// `now_us`; a dry run only judges it.
    pub fn switchover(&mut self, now_us: u64, to: Option<&str>, dry_run: bool) -> SwitchoverVerdict {
        let target = match to {
            Some(name) => match self.records.current().id_of(name) {
                Some(id) => Some(id),
                None => {
                    let reasons = vec![format!("{name} is not a member")];
                    return SwitchoverVerdict::Refused { target: Some(name.to_string()), reasons };
                }
            },
            None => None,
        };
        match self.replica.handle_switchover(now_us, target, dry_run) {
            Ok(id) => SwitchoverVerdict::Accepted { target: self.member_name(id), started: !dry_run },
            Err(refused) if matches!(refused.reasons.first(), Some(Refusal::NotLeader { .. })) => {
                SwitchoverVerdict::NotLeader
            }
            Err(refused) => SwitchoverVerdict::Refused {
                target: refused.target.map(|id| self.member_name(id)),
                reasons: refused.reasons.iter().map(|r| self.describe(r)).collect(),
            },
        }
    }

    /// A manual failover to this node: it campaigns now (a dry run only judges it).
    /// `Err`: why not, in words.
    pub fn campaign(&mut self, now_us: u64, dry_run: bool) -> Result<(), String> {
        self.replica.handle_campaign(now_us, dry_run).map_err(|refusal| self.describe(&refusal))
    }

    /// Pauses or resumes automatic failover through the leader. A resume with no live
    /// leader to replicate it resumes this node alone (so a cluster whose leader is gone
    /// can fail over again). `Err`: it must go through the leader, and why.
    pub fn set_paused(&mut self, now_us: u64, paused: bool) -> Result<(), String> {
        match self.replica.handle_set_paused(now_us, paused) {
            Ok(()) => Ok(()),
            Err(_) if !paused => self.replica.handle_local_resume(now_us).map_err(|refusal| {
                let age_ms = match refusal {
                    Refusal::LeaderReachable { last_contact_age_us } => last_contact_age_us / 1000,
                    _ => 0,
                };
                format!("the leader was heard from {age_ms} ms ago: resume goes through it")
            }),
            Err(_) => Err("pausing goes through the leader".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::one_voter_host;

    /// Goal: a switchover to a name that is no member is refused naming it; a lone
    /// leader has nobody to hand over to, and says why in words.
    #[test]
    fn a_switchover_names_what_is_wrong() {
        let mut host = one_voter_host::<(), ()>();
        match host.switchover(0, Some("nobody"), true) {
            SwitchoverVerdict::Refused { target, reasons } => {
                assert_eq!(target.as_deref(), Some("nobody"));
                assert_eq!(reasons, vec!["nobody is not a member".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(host.switchover(0, None, true), SwitchoverVerdict::NotLeader, "not leading yet");
        assert!(host.set_paused(0, true).is_err(), "pausing goes through the leader");
    }
}
