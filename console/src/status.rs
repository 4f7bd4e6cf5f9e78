//! `baton status`: asks every node for its status (each with its own timeout, so a dead
//! node never stalls the answer) and joins them with the leader's view of each follower.

use baton_node::client::Client;
use baton_node::status::NodeStatus;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Serialize, Debug)]
pub struct ClusterStatus {
    pub leader: Option<String>,
    pub term: u64,
    pub mode: Option<String>,
    pub paused: bool,
    pub nodes: Vec<NodeRow>,
}

#[derive(Serialize, Debug)]
pub struct NodeRow {
    pub id: Option<String>,
    pub addr: String,
    pub reachable: bool,
    pub role: Option<String>,
    pub term: Option<u64>,
    pub last_index: Option<u64>,
    pub last_term: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub durable_index: Option<u64>,
    pub lag_entries: Option<u64>,
    pub lag_ms: Option<u64>,
    pub in_sync: Option<bool>,
    pub state: Option<String>,
    pub entries_received: Option<u64>,
    pub error: Option<String>,
}

pub async fn gather(client: &mut Client) -> ClusterStatus {
    let mut answers: Vec<(String, Result<NodeStatus, String>)> = Vec::new();
    for addr in client.addrs().to_vec() {
        answers.push((addr.to_string(), client.status_of(addr).await.map_err(|e| e.to_string())));
    }
    let leader = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok())
        .filter(|s| s.role == "leader")
        .max_by_key(|s| s.term)
        .cloned();
    let nodes = answers
        .into_iter()
        .map(|(addr, answer)| match answer {
            Ok(status) => {
                let view = leader.as_ref().and_then(|l| l.followers.iter().find(|f| f.id == status.id));
                let is_leader = leader.as_ref().is_some_and(|l| l.id == status.id);
                NodeRow {
                    reachable: true,
                    lag_entries: if is_leader { Some(0) } else { view.map(|v| v.lag_entries) },
                    lag_ms: if is_leader { Some(0) } else { view.map(|v| v.lag_ms) },
                    in_sync: if is_leader { Some(true) } else { view.map(|v| v.in_sync) },
                    state: view.map(|v| v.state.clone()),
                    id: Some(status.id),
                    addr,
                    role: Some(status.role),
                    term: Some(status.term),
                    last_index: Some(status.last_index),
                    last_term: Some(status.last_term),
                    commit_index: Some(status.commit_index),
                    applied_index: Some(status.applied_index),
                    durable_index: Some(status.durable_index),
                    entries_received: Some(status.entries_received),
                    error: None,
                }
            }
            Err(error) => NodeRow {
                id: None,
                addr,
                reachable: false,
                role: None,
                term: None,
                last_index: None,
                last_term: None,
                commit_index: None,
                applied_index: None,
                durable_index: None,
                lag_entries: None,
                lag_ms: None,
                in_sync: None,
                state: None,
                entries_received: None,
                error: Some(error),
            },
        })
        .collect::<Vec<_>>();
    ClusterStatus {
        leader: leader.as_ref().map(|l| l.id.clone()),
        term: leader.as_ref().map_or_else(|| nodes.iter().filter_map(|n| n.term).max().unwrap_or(0), |l| l.term),
        mode: leader.as_ref().map(|l| l.mode.clone()),
        paused: leader.as_ref().is_some_and(|l| l.paused),
        nodes,
    }
}

pub async fn run(client: &mut Client, json: bool) -> ExitCode {
    let status = gather(client).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&status).expect("status serializes"));
    } else {
        println!(
            "leader {}  term {}  mode {}{}",
            status.leader.as_deref().unwrap_or("none"),
            status.term,
            status.mode.as_deref().unwrap_or("?"),
            if status.paused { "  PAUSED" } else { "" }
        );
        println!(
            "{:<6} {:<21} {:<10} {:>6} {:>8} {:>8} {:>8} {:>6} {:>7}",
            "id", "addr", "role", "term", "last", "commit", "applied", "lag", "in-sync"
        );
        for node in &status.nodes {
            let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            println!(
                "{:<6} {:<21} {:<10} {:>6} {:>8} {:>8} {:>8} {:>6} {:>7}",
                node.id.as_deref().unwrap_or("?"),
                node.addr,
                node.role.as_deref().unwrap_or("DOWN"),
                show(node.term),
                show(node.last_index),
                show(node.commit_index),
                show(node.applied_index),
                show(node.lag_entries),
                node.in_sync.map_or("-", |s| if s { "yes" } else { "no" }),
            );
        }
    }
    if status.nodes.iter().all(|n| n.reachable) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}
