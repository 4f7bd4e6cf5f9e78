//! `baton member …`: the cluster's members, and live changes to them (add a learner,
//! promote, remove, set a priority). Every change is judged first (the dry run's
//! verdict and the quorums it leaves are printed), refused with every reason, or made
//! and confirmed once committed.

use crate::status::gather;
use baton_node::addr::NodeAddr;
use baton_node::client::{Client, ClientError};
use baton_node::frame::{Json, MemberChange, Request, Response};
use baton_node::status::{MembersVerdict, MembersView};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long `list` waits for one member's status.
const STATUS_WAIT: Duration = Duration::from_secs(2);
/// Where the client's UDP socket is bound: names resolve to IPv4.
const CLIENT_SOCKET: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

#[derive(clap::Subcommand, Debug)]
pub enum MemberAction {
    /// The members: id, role (voter, learner or witness), priority, address, and each one's
    /// state and lag as it reports them.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a node as a learner: it gets a snapshot and the log and counts toward nothing
    /// until it is promoted, which the leader does once it has caught up (unless
    /// --learner). Start the node with `baton-node --id ID --join MEMBER ...`, before or
    /// after this.
    Add {
        /// Its id, as its certificate names it (`baton certs --out DIR --nodes ID`).
        id: String,
        /// Where the other nodes reach it (HOST:PORT).
        addr: String,
        /// Keep it a learner (a read replica) until `baton member promote`.
        #[arg(long)]
        learner: bool,
        /// A witness: it votes and stores log positions but no data, and never leads,
        /// so that a pair of data nodes survives the loss of either (start it with
        /// `baton-node --witness`).
        #[arg(long, conflicts_with_all = ["learner", "upstream", "priority"])]
        witness: bool,
        /// 0: never leader; higher wins an election tie.
        #[arg(long, default_value_t = 1)]
        priority: u8,
        /// Receive the log through this member instead of the leader (a cascading
        /// learner, for a remote site with one slow uplink); it falls back to the leader
        /// when that member is down or behind.
        #[arg(long)]
        upstream: Option<String>,
        /// Only say whether it would be accepted, and the quorums it would leave.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make a caught-up learner a voter.
    Promote {
        id: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove a member for good (its id is never accepted again). Removing the leader
    /// hands leadership to a caught-up follower first.
    Remove {
        id: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Replace OLD by a new node NEW at ADDR: add NEW, wait until it is promoted (start
    /// it with --join meanwhile), then remove OLD.
    Replace { old: String, new: String, addr: String },
    /// Change a member's settings.
    Set {
        id: String,
        /// 0: never leader; higher wins an election tie.
        #[arg(long)]
        priority: Option<u8>,
        /// The member it receives the log through; `none`: the leader.
        #[arg(long)]
        upstream: Option<String>,
        #[arg(long)]
        dry_run: bool,
    },
}

/// How long `replace` waits for the new node to catch up and be promoted.
const PROMOTION_WAIT: Duration = Duration::from_secs(600);

pub async fn run(client: &mut Client, action: MemberAction) -> Result<ExitCode, ClientError> {
    let (change, dry_run) = match action {
        MemberAction::List { json } => return list(client, json).await,
        MemberAction::Replace { old, new, addr } => return replace(client, old, new, addr).await,
        MemberAction::Add { id, addr, witness: true, dry_run, .. } => {
            (MemberChange::AddWitness { name: id, addr }, dry_run)
        }
        MemberAction::Add { id, addr, priority, learner, upstream, dry_run, .. } => {
            (MemberChange::Add { name: id, addr, priority, learner_only: learner, upstream }, dry_run)
        }
        MemberAction::Promote { id, dry_run } => (MemberChange::Promote { name: id }, dry_run),
        MemberAction::Remove { id, dry_run } => (MemberChange::Remove { name: id }, dry_run),
        MemberAction::Set { id, priority, upstream, dry_run } => {
            let upstream = upstream.map(|name| (name != "none").then_some(name));
            let changes = [
                priority.map(|priority| MemberChange::SetPriority { name: id.clone(), priority }),
                upstream.map(|upstream| MemberChange::SetUpstream { name: id.clone(), upstream }),
            ];
            let changes: Vec<MemberChange> = changes.into_iter().flatten().collect();
            if changes.is_empty() {
                eprintln!("baton: member set needs --priority N or --upstream ID (or none)");
                return Ok(ExitCode::from(crate::exit::USAGE));
            }
            for change in changes {
                let code = change_member(client, change, dry_run).await?;
                if code != ExitCode::SUCCESS {
                    return Ok(code);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    change_member(client, change, dry_run).await
}

/// Judges `change` (printing the verdict), then, unless a dry run, makes it; a removal
/// of the leader moves leadership first.
async fn change_member(client: &mut Client, change: MemberChange, dry_run: bool) -> Result<ExitCode, ClientError> {
    let mut verdict = judge(client, &change).await?;
    if !verdict.accepted && verdict.removes_leader {
        if dry_run {
            eprintln!("{} leads: `baton member remove` without --dry-run hands leadership over first", verdict.name);
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("{} leads: handing leadership over first", verdict.name);
        if !hand_over(client, &verdict.name).await? {
            eprintln!("baton: leadership did not move away from {}; nothing was removed", verdict.name);
            return Ok(ExitCode::from(crate::exit::NOT_DONE));
        }
        verdict = judge(client, &change).await?;
    }
    if !verdict.accepted {
        return Ok(refused(&verdict));
    }
    print_verdict(&verdict);
    if dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    match client.request(Request::ChangeMembers { change: change.clone(), dry_run: false }).await? {
        Response::Written { index, .. } => {
            println!("done: committed at index {index}");
            if let MemberChange::Remove { name } = &change {
                // A node being removed may have come to lead before its removal committed
                // (Raft thesis 4.2.2); it hands over now. Shut down before the others
                // heard that the removal committed, it could leave them needing its
                // vote: so this returns once another node leads.
                if gather(client).await.leader.as_deref() == Some(name.as_str()) {
                    eprintln!("{name} leads: waiting for it to hand leadership over before it may be shut down");
                    if !wait_for_leader_other_than(client, name).await {
                        eprintln!("baton: {name} still leads; keep it running until another node leads");
                        return Ok(ExitCode::from(crate::exit::NOT_DONE));
                    }
                }
                println!("{name} may be shut down for good");
            }
            let added = match &change {
                MemberChange::Add { name, learner_only, .. } => Some((name, *learner_only, "")),
                MemberChange::AddWitness { name, .. } => Some((name, false, " --witness")),
                _ => None,
            };
            if let Some((name, learner_only, witness)) = added {
                let leader = gather(client).await.nodes.into_iter().find(|n| n.role.as_deref() == Some("leader"));
                let join = leader.map_or_else(|| "LEADER:PORT".to_string(), |n| n.addr);
                println!(
                    "start it with an empty data directory: baton-node --id {name} --join {join}{witness} --listen ... \
                     --data-dir ... --certs ..."
                );
                if !learner_only {
                    println!("the leader promotes it to voter once it has caught up");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Response::MembersVerdict(Json(verdict)) => Ok(refused(&verdict)),
        other => Err(ClientError::Unexpected(Box::new(other))),
    }
}

/// The leader's verdict on `change`, as a dry run.
async fn judge(client: &mut Client, change: &MemberChange) -> Result<MembersVerdict, ClientError> {
    match client.request(Request::ChangeMembers { change: change.clone(), dry_run: true }).await? {
        Response::MembersVerdict(Json(verdict)) => Ok(verdict),
        other => Err(ClientError::Unexpected(Box::new(other))),
    }
}

/// Moves leadership away from `leader` (a switchover to the best caught-up follower);
/// whether it moved.
async fn hand_over(client: &mut Client, leader: &str) -> Result<bool, ClientError> {
    match client.request(Request::Switchover { to: None, dry_run: false }).await? {
        Response::Switchover { reasons, .. } if !reasons.is_empty() => {
            for reason in reasons {
                eprintln!("  - {reason}");
            }
            return Ok(false);
        }
        Response::Switchover { .. } => {}
        other => return Err(ClientError::Unexpected(Box::new(other))),
    }
    Ok(wait_for_leader_other_than(client, leader).await)
}

/// Waits (up to [`HAND_OVER_WAIT`]) until a node other than `leader` leads; whether one
/// does.
async fn wait_for_leader_other_than(client: &mut Client, leader: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < HAND_OVER_WAIT {
        let leading = gather(client).await.leader;
        if leading.is_some_and(|now| now != leader) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// How long a removal of the leader waits for leadership to move.
const HAND_OVER_WAIT: Duration = Duration::from_secs(15);

/// `member replace OLD NEW ADDR`: add NEW, wait until it is a voter, remove OLD.
async fn replace(client: &mut Client, old: String, new: String, addr: String) -> Result<ExitCode, ClientError> {
    // Both checked before anything changes: a replace that could not finish is not begun.
    let removal = MemberChange::Remove { name: old.clone() };
    let view = members(client).await?;
    if view.record.id_of(&old).and_then(|id| view.record.membership.member(id)).is_none() {
        eprintln!("baton: {old} is not a member; nothing was changed");
        return Ok(ExitCode::from(crate::exit::REFUSED));
    }
    let add = MemberChange::Add { name: new.clone(), addr, priority: 1, learner_only: false, upstream: None };
    let code = change_member(client, add, false).await?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    eprintln!("waiting for {new} to catch up and be promoted (start it with --join if it is not running)");
    let started = Instant::now();
    loop {
        let view = members(client).await?;
        let id = view.record.id_of(&new);
        if id.is_some_and(|id| view.record.membership.is_voter(id)) && !view.change_pending {
            break;
        }
        if started.elapsed() > PROMOTION_WAIT {
            eprintln!(
                "baton: {new} was not promoted within {PROMOTION_WAIT:?}; {old} stays. Fix: see `baton member list`"
            );
            return Ok(ExitCode::from(crate::exit::NOT_DONE));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{new} is a voter; removing {old}");
    change_member(client, removal, false).await
}

async fn members(client: &mut Client) -> Result<MembersView, ClientError> {
    match client.request(Request::Members).await? {
        Response::Members(Json(view)) => Ok(view),
        other => Err(ClientError::Unexpected(Box::new(other))),
    }
}

fn refused(verdict: &MembersVerdict) -> ExitCode {
    eprintln!("baton: the change to {} is refused:", verdict.name);
    for reason in &verdict.reasons {
        eprintln!("  - {reason}");
    }
    ExitCode::from(crate::exit::REFUSED)
}

fn print_verdict(verdict: &MembersVerdict) {
    println!(
        "accepted{}: {} (id {}); voters after it: {} (writes need {}, elections {}); learners: {}",
        if verdict.dry_run { " (dry run)" } else { "" },
        verdict.name,
        verdict.node_id,
        verdict.voters.join(", "),
        verdict.write_quorum,
        verdict.election_quorum,
        if verdict.learners.is_empty() { "none".to_string() } else { verdict.learners.join(", ") },
    );
}

async fn list(client: &mut Client, json: bool) -> Result<ExitCode, ClientError> {
    let view = members(client).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view).expect("views serialize"));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "cluster {:016x}, mode {}: writes need {} voters, elections {}{}",
        view.record.cluster_id,
        view.mode,
        view.write_quorum,
        view.election_quorum,
        if view.change_pending {
            format!("; the change at index {} is not committed yet", view.change_index)
        } else {
            String::new()
        }
    );
    let leader_last_index =
        gather(client).await.nodes.iter().find(|n| n.role.as_deref() == Some("leader")).and_then(|n| n.last_index);
    println!(
        "{:<12} {:>3} {:<8} {:>8} {:<24} {:<10} {:>10} UPSTREAM",
        "NAME", "ID", "ROLE", "PRIORITY", "ADDRESS", "STATE", "LAG"
    );
    for member in &view.record.membership.members {
        let entry = view.record.entry(member.id);
        let name = entry.map_or("?", |e| e.name.as_str());
        // Each member's own status, from the address the membership gives it.
        let status = match entry.and_then(|e| e.addr.parse::<NodeAddr>().ok()) {
            Some(addr) => match addr.resolve(CLIENT_SOCKET).await {
                Ok(addr) => tokio::time::timeout(STATUS_WAIT, client.status_of(addr)).await.ok().and_then(Result::ok),
                Err(_) => None,
            },
            None => None,
        };
        let state = status.as_ref().map_or_else(|| "unreachable".to_string(), |s| s.role.clone());
        let lag = match (&status, leader_last_index) {
            (Some(status), Some(last)) => last.saturating_sub(status.last_index).to_string(),
            _ => "-".to_string(),
        };
        let role = match (member.voter, entry.is_some_and(|e| e.promote_when_caught_up)) {
            _ if member.witness && !member.voter => "witness+",
            _ if member.witness => "witness",
            (true, _) => "voter",
            (false, true) => "learner+",
            (false, false) => "learner",
        };
        let upstream = entry.and_then(|e| e.upstream).and_then(|up| view.record.name_of(baton_common::NodeId(up)));
        println!(
            "{name:<12} {:>3} {role:<8} {:>8} {:<24} {state:<10} {lag:>10} {}",
            member.id.0,
            member.priority,
            entry.map_or("?", |e| e.addr.as_str()),
            upstream.unwrap_or("leader"),
        );
    }
    println!("(learner+, witness+: promoted to voter once caught up)");
    Ok(ExitCode::SUCCESS)
}
