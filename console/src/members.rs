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
use std::time::Duration;

/// How long `list` waits for one member's status.
const STATUS_WAIT: Duration = Duration::from_secs(2);
/// Where the client's UDP socket is bound: names resolve to IPv4.
const CLIENT_SOCKET: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

#[derive(clap::Subcommand, Debug)]
pub enum MemberAction {
    /// The members: id, role (voter or learner), priority, address, and how far each is
    /// behind the leader.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a node as a learner: it gets a snapshot and the log and counts toward nothing
    /// until it is promoted, which the leader does once it has caught up (unless
    /// --learner). Then start the node with `baton-node --id NAME --join LEADER ...`.
    Add {
        /// Its name, as its certificate has it (see `baton certs`).
        name: String,
        /// Where the other nodes reach it (HOST:PORT).
        #[arg(long)]
        addr: String,
        /// 0: never leader; higher wins an election tie.
        #[arg(long, default_value_t = 1)]
        priority: u8,
        /// Keep it a learner (a read replica) until `baton member promote`.
        #[arg(long)]
        learner: bool,
        /// Only say whether it would be accepted, and the quorums it would leave.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make a caught-up learner a voter.
    Promote {
        name: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove a member for good: its id is never accepted again.
    Remove {
        name: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Change a member's priority (0: never leader).
    SetPriority {
        name: String,
        priority: u8,
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(client: &mut Client, action: MemberAction) -> Result<ExitCode, ClientError> {
    let (change, dry_run) = match action {
        MemberAction::List { json } => return list(client, json).await,
        MemberAction::Add { name, addr, priority, learner, dry_run } => {
            (MemberChange::Add { name, addr, priority, learner_only: learner }, dry_run)
        }
        MemberAction::Promote { name, dry_run } => (MemberChange::Promote { name }, dry_run),
        MemberAction::Remove { name, dry_run } => (MemberChange::Remove { name }, dry_run),
        MemberAction::SetPriority { name, priority, dry_run } => {
            (MemberChange::SetPriority { name, priority }, dry_run)
        }
    };
    // The verdict first: refused with its reasons, or what it would leave.
    let verdict = match client.request(Request::ChangeMembers { change: change.clone(), dry_run: true }).await? {
        Response::MembersVerdict(Json(verdict)) => verdict,
        other => return Err(ClientError::Unexpected(Box::new(other))),
    };
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
            if let MemberChange::Add { name, learner_only, .. } = &change {
                let leader = gather(client).await.nodes.into_iter().find(|n| n.role.as_deref() == Some("leader"));
                let join = leader.map_or_else(|| "LEADER:PORT".to_string(), |n| n.addr);
                println!(
                    "start it with an empty data directory: baton-node --id {name} --join {join} --listen ... \
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
    let view: MembersView = match client.request(Request::Members).await? {
        Response::Members(Json(view)) => view,
        other => return Err(ClientError::Unexpected(Box::new(other))),
    };
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
        "{:<12} {:>3} {:<8} {:>8} {:<24} {:<10} {:>10}",
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
            (true, _) => "voter",
            (false, true) => "learner+",
            (false, false) => "learner",
        };
        println!(
            "{name:<12} {:>3} {role:<8} {:>8} {:<24} {state:<10} {lag:>10}",
            member.id.0,
            member.priority,
            entry.map_or("?", |e| e.addr.as_str()),
        );
    }
    println!("(learner+: promoted to voter once caught up)");
    Ok(ExitCode::SUCCESS)
}
