//! The cluster as the operator sees it: every node's own status, joined with the leader's
//! view of each follower, plus what follows from it (health, the durability promise in
//! words). `baton status`, `status --watch` and the console all read it from here.
//!
//! Nodes are asked concurrently, each with its own client and timeout, so a dead or slow
//! node never delays the others' answers.

use baton_node::certs::Identity;
use baton_node::client::{Client, ClientError};
use baton_node::status::NodeStatus;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// A follower behind and not moving for longer than this is stalled.
pub const STALL_BOUND_MS: u64 = 3_000;

#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct ClusterStatus {
    pub leader: Option<String>,
    pub term: u64,
    pub mode: Option<String>,
    pub paused: bool,
    /// The write mode's promise, in words, as of now.
    pub durability: String,
    /// On the leader's word: whether acknowledged writes survive a failover right now.
    pub failover_safe: Option<bool>,
    pub failover_loss_entries: u64,
    pub nodes: Vec<NodeRow>,
    /// Why the cluster is not healthy, in words (empty when it is): no leader, a node
    /// unreachable or stalled, or a failover that would lose acknowledged writes now.
    /// `baton status` exits 3 when there is any.
    pub problems: Vec<String>,
}

#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct NodeRow {
    pub id: Option<String>,
    pub addr: String,
    pub reachable: bool,
    /// up, unreachable or stalled (connected, behind, and not progressing).
    pub health: String,
    pub role: Option<String>,
    pub term: Option<u64>,
    pub last_index: Option<u64>,
    pub last_term: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub durable_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub paused: Option<bool>,
    pub lag_entries: Option<u64>,
    pub lag_bytes: Option<u64>,
    pub lag_ms: Option<u64>,
    /// How long ago the leader last heard from it.
    pub last_ack_age_ms: Option<u64>,
    pub in_sync: Option<bool>,
    /// leader, replicate, probe or snapshot.
    pub state: Option<String>,
    /// While a snapshot is on its way to it: how much has been sent, in percent.
    pub snapshot_percent: Option<u8>,
    /// The member it receives the log through (a cascading learner), as the leader's
    /// membership says.
    pub upstream: Option<String>,
    pub entries_received: Option<u64>,
    pub discarded_entries: Option<u64>,
    /// Free space on its data disk, and how much its log and next snapshot may still need.
    pub disk_free_bytes: Option<u64>,
    pub disk_headroom_bytes: Option<u64>,
    /// Its build, as it reports it (empty from a node older than the field).
    pub version: Option<String>,
    /// What its process has cost so far: storage bytes written, fsyncs, CPU, memory.
    pub cost: Option<baton_node::cost::ProcessCost>,
    /// Keys in its key-value map, and their keys' and values' bytes.
    pub keys: Option<u64>,
    pub data_bytes: Option<u64>,
    /// Watches it serves now.
    pub watchers: Option<u64>,
    /// Writes it acknowledged as leader, and their latency histogram, since it started.
    pub writes_acknowledged: Option<u64>,
    pub write_ack_latency: Option<baton_node::status::LatencyHistogram>,
    /// Its certificate's end, peer certificates it accepted with its clock behind, and
    /// its clock when it answered.
    pub certificate_not_after_unix_s: Option<i64>,
    pub clock_behind_accepts: Option<u64>,
    pub clock_unix_ms: Option<u64>,
    pub error: Option<String>,
}

impl NodeRow {
    /// Its data disk has less free space than the node may still need.
    pub fn disk_low(&self) -> bool {
        matches!((self.disk_free_bytes, self.disk_headroom_bytes), (Some(free), Some(needed)) if free < needed)
    }
}

/// A node as the operator named it (`--cluster`), which its row shows, and the address
/// that name resolved to when the command started.
#[derive(Clone, Debug)]
pub struct Target {
    pub label: String,
    pub addr: SocketAddr,
}

impl Target {
    /// Targets named by their IP addresses.
    pub fn of(addrs: &[SocketAddr]) -> Vec<Target> {
        addrs.iter().map(|addr| Target { label: addr.to_string(), addr: *addr }).collect()
    }
}

/// Every node of the cluster: the ones the operator named, then the members those nodes
/// know of that were not named (asked once, at start: `--cluster` may name just one node).
/// A member whose address does not resolve is left out; the nodes named are always kept.
pub async fn discover(named: Vec<Target>, certs: &Path, identity: &Identity) -> Vec<Target> {
    let Ok(client) = Client::new(named.iter().map(|t| t.addr).collect(), certs, identity) else { return named };
    let mut asks = tokio::task::JoinSet::new();
    for target in &named {
        let (addr, mut client) = (target.addr, client.on_same_socket());
        asks.spawn(async move { tokio::time::timeout(DISCOVERY_TIMEOUT, client.status_of(addr)).await });
    }
    let mut members: Vec<baton_node::status::MemberAddr> = Vec::new();
    while let Some(answer) = asks.join_next().await {
        if let Ok(Ok(Ok(status))) = answer {
            members.extend(status.members);
        }
    }
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members.dedup_by(|a, b| a.id == b.id);
    let local = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut targets = named;
    // Each target's member id where known, to list them in id order as the nodes do.
    let mut ids: Vec<Option<String>> = vec![None; targets.len()];
    for member in members {
        let Ok(written) = member.addr.parse::<baton_node::addr::NodeAddr>() else { continue };
        let Ok(addr) = written.resolve(local).await else { continue };
        match targets.iter().position(|t| t.addr == addr || t.label == member.addr) {
            Some(known) => ids[known] = Some(member.id),
            None => {
                targets.push(Target { label: member.addr, addr });
                ids.push(Some(member.id));
            }
        }
    }
    let mut ordered: Vec<(Option<String>, Target)> = ids.into_iter().zip(targets).collect();
    // Named nodes no member list mentions (unreachable, or another cluster's) go last.
    ordered.sort_by(|a, b| (a.0.is_none(), &a.0).cmp(&(b.0.is_none(), &b.0)));
    ordered.into_iter().map(|(_, target)| target).collect()
}

/// How long discovery waits for a named node's status.
const DISCOVERY_TIMEOUT: Duration = Duration::from_millis(800);

/// Asks each node on its own client, concurrently.
pub struct Poller {
    nodes: Vec<(Target, Option<Client>, Option<String>)>,
}

impl Poller {
    pub fn new(targets: &[Target], certs: &Path, identity: &Identity) -> Result<Poller, ClientError> {
        let mut nodes = Vec::new();
        for target in targets {
            nodes.push((target.clone(), Some(Client::new(vec![target.addr], certs, identity)?), None));
        }
        Ok(Poller { nodes })
    }

    /// Every node's status, or why it did not answer within `timeout`.
    pub async fn gather(&mut self, timeout: Duration) -> ClusterStatus {
        let mut tasks = tokio::task::JoinSet::new();
        for (position, (target, client, _)) in self.nodes.iter_mut().enumerate() {
            let (addr, mut client) = (target.addr, client.take().expect("returned after each round"));
            tasks.spawn(async move {
                let answer = match tokio::time::timeout(timeout, client.status_of(addr)).await {
                    Ok(answer) => answer.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
                };
                (position, client, answer)
            });
        }
        let mut answers: Vec<Option<Result<NodeStatus, String>>> = vec![None; self.nodes.len()];
        while let Some(done) = tasks.join_next().await {
            let (position, client, answer) = done.expect("status tasks do not panic");
            self.nodes[position].1 = Some(client);
            if let Ok(status) = &answer {
                self.nodes[position].2 = Some(status.id.clone());
            }
            answers[position] = Some(answer);
        }
        let answers = self
            .nodes
            .iter()
            .zip(answers)
            .map(|((target, _, known_id), answer)| {
                (target.label.clone(), known_id.clone(), answer.expect("every task answered"))
            })
            .collect();
        assemble(answers)
    }
}

/// The role to show for `status`: its replica's role, except that a follower the
/// leader's membership holds as a learner is a "learner" (a witness a "witness"), and a node the leader's
/// membership no longer holds is "removed" (it takes no part; it should be stopped).
fn shown_role(leader: Option<&NodeStatus>, status: &NodeStatus) -> String {
    let Some(leader) = leader.filter(|l| l.members.iter().all(|m| !m.role.is_empty())) else {
        return status.role.clone(); // No leader, or one from before live membership.
    };
    match leader.members.iter().find(|m| m.id == status.id) {
        None => "removed".into(),
        Some(member) if member.role == "learner" && status.role == "follower" => "learner".into(),
        Some(member) if member.role == "witness" && status.role == "follower" => "witness".into(),
        Some(_) => status.role.clone(),
    }
}

/// Joins each node's answer with the leader's view of it. A follower's lag is shown only
/// once this leader has heard from it: before that, the leader only knows the follower
/// holds at least nothing, and "behind by the whole log" would be made up.
pub fn assemble(answers: Vec<(String, Option<String>, Result<NodeStatus, String>)>) -> ClusterStatus {
    let leader = answers
        .iter()
        .filter_map(|(_, _, a)| a.as_ref().ok())
        .filter(|s| s.role == "leader")
        .max_by_key(|s| s.term)
        .cloned();
    let answered_modes: Vec<String> =
        answers.iter().filter_map(|(_, _, a)| a.as_ref().ok()).map(|s| s.mode.clone()).collect();
    let nodes: Vec<NodeRow> = answers
        .into_iter()
        .map(|(addr, known_id, answer)| match answer {
            Ok(status) => {
                let view = leader.as_ref().and_then(|l| l.followers.iter().find(|f| f.id == status.id));
                let is_leader = leader.as_ref().is_some_and(|l| l.id == status.id);
                let stalled = view.is_some_and(|v| v.lag_entries > 0 && v.stuck_ms > STALL_BOUND_MS);
                let lag = view.filter(|v| v.last_ack_age_ms.is_some());
                let headroom = status.disk_headroom_bytes();
                NodeRow {
                    reachable: true,
                    health: if stalled { "stalled" } else { "up" }.into(),
                    lag_entries: if is_leader { Some(0) } else { lag.map(|v| v.lag_entries) },
                    lag_bytes: if is_leader { Some(0) } else { lag.map(|v| v.lag_bytes) },
                    lag_ms: if is_leader { Some(0) } else { lag.map(|v| v.lag_ms) },
                    last_ack_age_ms: view.and_then(|v| v.last_ack_age_ms),
                    in_sync: if is_leader { Some(true) } else { view.map(|v| v.in_sync) },
                    state: if is_leader { Some("leader".into()) } else { view.map(|v| v.state.clone()) },
                    snapshot_percent: view.and_then(|v| v.snapshot_percent).or(status.snapshot_receiving_percent),
                    role: Some(shown_role(leader.as_ref(), &status)),
                    upstream: leader
                        .as_ref()
                        .and_then(|l| l.members.iter().find(|m| m.id == status.id))
                        .map(|m| m.upstream.clone())
                        .filter(|upstream| !upstream.is_empty()),
                    id: Some(status.id),
                    addr,
                    term: Some(status.term),
                    last_index: Some(status.last_index),
                    last_term: Some(status.last_term),
                    commit_index: Some(status.commit_index),
                    applied_index: Some(status.applied_index),
                    durable_index: Some(status.durable_index),
                    snapshot_index: Some(status.snapshot_index),
                    paused: Some(status.paused),
                    entries_received: Some(status.entries_received),
                    discarded_entries: Some(status.discarded_entries),
                    disk_free_bytes: status.disk_free_bytes,
                    disk_headroom_bytes: Some(headroom),
                    version: Some(status.version).filter(|v| !v.is_empty()),
                    cost: Some(status.cost),
                    keys: Some(status.keys),
                    data_bytes: Some(status.data_bytes),
                    watchers: Some(status.watchers),
                    writes_acknowledged: Some(status.writes_acknowledged),
                    write_ack_latency: Some(status.write_ack_latency),
                    certificate_not_after_unix_s: status.certificate_not_after_unix_s,
                    clock_behind_accepts: Some(status.clock_behind_accepts),
                    clock_unix_ms: Some(status.clock_unix_ms).filter(|ms| *ms > 0),
                    error: None,
                }
            }
            Err(error) => {
                // Never reached by this tool: the leader may know which node listens there.
                let known_id = known_id.or_else(|| {
                    leader.as_ref().and_then(|l| l.followers.iter().find(|f| f.addr == addr)).map(|f| f.id.clone())
                });
                let view = leader.as_ref().and_then(|l| l.followers.iter().find(|f| Some(&f.id) == known_id.as_ref()));
                let lag = view.filter(|v| v.last_ack_age_ms.is_some());
                NodeRow {
                    id: known_id,
                    addr,
                    health: "unreachable".into(),
                    lag_entries: lag.map(|v| v.lag_entries),
                    lag_bytes: lag.map(|v| v.lag_bytes),
                    lag_ms: lag.map(|v| v.lag_ms),
                    last_ack_age_ms: view.and_then(|v| v.last_ack_age_ms),
                    in_sync: view.map(|v| v.in_sync),
                    state: view.map(|v| v.state.clone()),
                    error: Some(error),
                    ..NodeRow::default()
                }
            }
        })
        .collect();
    let voters = nodes.len() as u8;
    // With no leader, the mode any node reports (every node runs the cluster's mode).
    let mode = leader.as_ref().map(|l| l.mode.clone()).or_else(|| answered_modes.into_iter().next());
    let failover_loss_entries = leader.as_ref().map_or(0, |l| l.failover_loss_entries);
    let durability = match leader {
        Some(_) => durability_words(mode.as_deref(), voters, failover_loss_entries),
        None => NO_LEADER_WORDS.to_string(),
    };
    let mut status = ClusterStatus {
        leader: leader.as_ref().map(|l| l.id.clone()),
        term: leader.as_ref().map_or_else(|| nodes.iter().filter_map(|n| n.term).max().unwrap_or(0), |l| l.term),
        durability,
        mode,
        paused: leader.as_ref().map_or_else(|| nodes.iter().any(|n| n.paused == Some(true)), |l| l.paused),
        failover_safe: leader.as_ref().and_then(|l| l.failover_safe),
        failover_loss_entries,
        nodes,
        problems: Vec::new(),
    };
    status.problems = problems(&status);
    status
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A node's certificate this close to its end is a problem.
const CERT_EXPIRY_WARNING_DAYS: i64 = 30;
/// A node's clock this far from this machine's is a problem (certificates, expiry of
/// sessions and logs' times all read it).
const CLOCK_SKEW_WARNING_MS: u64 = 5 * 60 * 1000;

/// What is wrong with `status`, one line per problem.
fn problems(status: &ClusterStatus) -> Vec<String> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut problems = Vec::new();
    if status.leader.is_none() {
        problems.push(NO_LEADER_WORDS.to_string());
    }
    for node in &status.nodes {
        let name = node.id.as_deref().map_or_else(|| node.addr.clone(), |id| format!("{id} ({})", node.addr));
        match node.health.as_str() {
            "unreachable" => problems.push(format!("{name} is unreachable")),
            "stalled" => problems.push(format!(
                "{name} is stalled: connected, {} entries behind, and not progressing",
                node.lag_entries.map_or_else(|| "some".to_string(), |lag| lag.to_string())
            )),
            _ => {}
        }
        if let Some(not_after) = node.certificate_not_after_unix_s {
            let days_left = (not_after - (now_ms / 1000) as i64).div_euclid(86_400);
            let fix = "issue new ones with `baton certs --out DIR --nodes ID --renew`, copy them to the node and send it SIGHUP";
            if days_left < 0 {
                problems.push(format!("{name}: its certificate expired {} days ago: {fix}", -days_left));
            } else if days_left < CERT_EXPIRY_WARNING_DAYS {
                problems.push(format!("{name}: its certificate expires in {days_left} days: {fix}"));
            }
        }
        if let Some(accepted @ 1..) = node.clock_behind_accepts {
            problems.push(format!(
                "{name}: its clock is behind: it accepted {accepted} peer certificates that start after its clock; \
                 set its clock (NTP), until then it cannot tell expired certificates"
            ));
        }
        if let Some(clock_ms) = node.clock_unix_ms.filter(|ms| ms.abs_diff(now_ms) > CLOCK_SKEW_WARNING_MS) {
            let (by_s, way) = (clock_ms.abs_diff(now_ms) / 1000, if clock_ms < now_ms { "behind" } else { "ahead of" });
            problems.push(format!("{name}: its clock is {by_s} s {way} this machine's: set it (NTP)"));
        }
        if let (true, Some(free), Some(needed)) = (node.disk_low(), node.disk_free_bytes, node.disk_headroom_bytes) {
            problems.push(format!(
                "{name}: its data disk has {} free, but its log and its next snapshot may need {}: \
                 free space on that disk, or lower the node's --max-log-bytes",
                mib(free),
                mib(needed)
            ));
        }
    }
    if status.failover_safe == Some(false) && status.mode.as_deref() != Some("async") {
        problems.push("a failover now could lose acknowledged writes: no in-sync follower holds them all".into());
    }
    problems
}

const NO_LEADER_WORDS: &str = "no leader: writes wait for an election";

/// The write mode's promise in words, e.g. "acknowledged writes survive 1 node loss".
pub fn durability_words(mode: Option<&str>, voters: u8, async_loss_entries: u64) -> String {
    let Some(mode) = mode.and_then(baton_common::WriteMode::parse) else {
        return NO_LEADER_WORDS.into();
    };
    if mode == baton_common::WriteMode::Async {
        return format!("async: a failover now would lose up to {async_loss_entries} acknowledged entries");
    }
    let losses = mode.node_losses_survived(voters);
    let plural = if losses == 1 { "" } else { "es" };
    format!("{mode}: acknowledged writes survive {losses} node loss{plural}")
}

pub async fn run(poller: &mut Poller, json: bool, watch: Option<Duration>) -> ExitCode {
    loop {
        let status = poller.gather(Duration::from_millis(800)).await;
        if json {
            println!("{}", serde_json::to_string_pretty(&status).expect("status serializes"));
        } else {
            if watch.is_some() {
                // Clear the screen and home the cursor: a refreshing table, like watch(1).
                print!("\x1b[2J\x1b[H");
            }
            print_table(&status);
            if watch.is_some() {
                // Refreshing: the problems stay on screen (one-shot, they go to stderr).
                for problem in &status.problems {
                    println!("degraded: {problem}");
                }
            }
        }
        match watch {
            Some(every) => tokio::time::sleep(every).await,
            None if status.problems.is_empty() => return ExitCode::SUCCESS,
            None => {
                for problem in &status.problems {
                    eprintln!("baton: degraded: {problem}");
                }
                return ExitCode::from(crate::exit::DEGRADED);
            }
        }
    }
}

fn print_table(status: &ClusterStatus) {
    println!(
        "leader {}  term {}  mode {}{}\n{}",
        status.leader.as_deref().unwrap_or("none"),
        status.term,
        status.mode.as_deref().unwrap_or("?"),
        if status.paused { "  PAUSED (automatic failover off)" } else { "" },
        status.durability
    );
    println!(
        "{:<6} {:<21} {:<13} {:>5} {:>8} {:>8} {:>8} {:>6} {:>8} {:>7} {:<11} {:<11}",
        "id", "addr", "role", "term", "last", "commit", "applied", "lag", "lag-ms", "in-sync", "state", "health"
    );
    for node in &status.nodes {
        let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let state = match (node.state.as_deref(), node.snapshot_percent) {
            (Some("snapshot"), Some(percent)) => format!("snapshot {percent}%"),
            (state, _) => state.unwrap_or("-").to_string(),
        };
        println!(
            "{:<6} {:<21} {:<13} {:>5} {:>8} {:>8} {:>8} {:>6} {:>8} {:>7} {:<11} {:<11}",
            node.id.as_deref().unwrap_or("?"),
            node.addr,
            node.role.as_deref().unwrap_or("-"),
            show(node.term),
            show(node.last_index),
            show(node.commit_index),
            show(node.applied_index),
            show(node.lag_entries),
            show(node.lag_ms),
            node.in_sync.map_or("-", |s| if s { "yes" } else { "no" }),
            state,
            node.health,
        );
    }
}

/// The same, asking one node after another through one client (for one-shot commands).
pub async fn gather(client: &mut Client) -> ClusterStatus {
    let mut answers = Vec::new();
    for addr in client.addrs().to_vec() {
        let answer = client.status_of(addr).await.map_err(|e| e.to_string());
        answers.push((addr.to_string(), answer.as_ref().ok().map(|s| s.id.clone()), answer));
    }
    assemble(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_node::status::FollowerStatus;

    /// Goal: a node this tool never reached is still named (from the leader's list of
    /// followers and their addresses), with the leader's view of its lag.
    #[test]
    fn an_unreachable_node_is_named_by_the_leaders_view() {
        let follower = |id: &str, addr: &str, lag_entries| FollowerStatus {
            id: id.into(),
            addr: addr.into(),
            lag_entries,
            last_ack_age_ms: Some(1_500),
            ..Default::default()
        };
        let leader = NodeStatus {
            id: "n1".into(),
            role: "leader".into(),
            term: 4,
            mode: "quorum".into(),
            followers: vec![follower("n2", "127.0.0.1:7202", 0), follower("n3", "127.0.0.1:7203", 37)],
            ..Default::default()
        };
        let n2 = NodeStatus { id: "n2".into(), role: "follower".into(), term: 4, ..Default::default() };
        let status = assemble(vec![
            ("127.0.0.1:7201".into(), None, Ok(leader)),
            ("127.0.0.1:7202".into(), None, Ok(n2)),
            ("127.0.0.1:7203".into(), None, Err("timed out".into())),
        ]);
        let n3 = &status.nodes[2];
        assert_eq!((n3.id.as_deref(), n3.health.as_str(), n3.lag_entries), (Some("n3"), "unreachable", Some(37)));
        let unknown = assemble(vec![("127.0.0.1:7209".into(), None, Err("timed out".into()))]);
        assert_eq!(unknown.nodes[0].id, None, "no leader to ask: no name is made up");
        assert_eq!(unknown.mode, None);
        let follower =
            NodeStatus { id: "n2".into(), role: "follower".into(), mode: "all".into(), ..Default::default() };
        let leaderless = assemble(vec![("127.0.0.1:7202".into(), None, Ok(follower))]);
        assert_eq!(leaderless.mode.as_deref(), Some("all"), "the mode is known without a leader");
        assert_eq!(leaderless.durability, "no leader: writes wait for an election");
    }

    /// Goal: a follower the leader's membership holds as a learner shows as "learner",
    /// one it no longer holds as "removed"; a leader from before live membership (no
    /// roles in its list) changes nothing.
    #[test]
    fn learners_and_removed_nodes_are_shown_by_the_leaders_membership() {
        use baton_node::status::MemberAddr;
        let member = |id: &str, role: &str| MemberAddr { id: id.into(), role: role.into(), ..Default::default() };
        let leader = NodeStatus {
            id: "n1".into(),
            role: "leader".into(),
            members: vec![member("n1", "voter"), member("n4", "learner")],
            ..Default::default()
        };
        let follower = |id: &str| NodeStatus { id: id.into(), role: "follower".into(), ..Default::default() };
        let status = assemble(vec![
            ("a:1".into(), None, Ok(leader.clone())),
            ("a:4".into(), None, Ok(follower("n4"))),
            ("a:2".into(), None, Ok(follower("n2"))),
        ]);
        let roles: Vec<_> = status.nodes.iter().map(|n| n.role.clone().unwrap()).collect();
        assert_eq!(roles, ["leader", "learner", "removed"]);
        let older = NodeStatus { members: vec![member("n1", "")], ..leader };
        let status = assemble(vec![("a:1".into(), None, Ok(older)), ("a:2".into(), None, Ok(follower("n2")))]);
        assert_eq!(status.nodes[1].role.as_deref(), Some("follower"));
    }

    /// Goal: `status` names every problem (and exits 3 on any): no leader, an unreachable
    /// node, a stalled one; a healthy cluster has none.
    #[test]
    fn problems_are_named() {
        let follower_view = |id: &str, lag_entries, stuck_ms| FollowerStatus {
            id: id.into(),
            lag_entries,
            stuck_ms,
            last_ack_age_ms: Some(100),
            in_sync: true,
            ..Default::default()
        };
        let leader = |followers| NodeStatus {
            id: "n1".into(),
            role: "leader".into(),
            term: 2,
            mode: "quorum".into(),
            failover_safe: Some(true),
            followers,
            ..Default::default()
        };
        let follower = |id: &str| NodeStatus { id: id.into(), role: "follower".into(), term: 2, ..Default::default() };
        let healthy = assemble(vec![
            ("a:1".into(), None, Ok(leader(vec![follower_view("n2", 0, 0), follower_view("n3", 0, 0)]))),
            ("a:2".into(), None, Ok(follower("n2"))),
            ("a:3".into(), None, Ok(follower("n3"))),
        ]);
        assert_eq!(healthy.problems, Vec::<String>::new());
        let degraded = assemble(vec![
            ("a:1".into(), None, Ok(leader(vec![follower_view("n2", 40, 5_000), follower_view("n3", 0, 0)]))),
            ("a:2".into(), None, Ok(follower("n2"))),
            ("a:3".into(), Some("n3".into()), Err("timed out".into())),
        ]);
        assert_eq!(
            degraded.problems,
            vec![
                "n2 (a:2) is stalled: connected, 40 entries behind, and not progressing".to_string(),
                "n3 (a:3) is unreachable".to_string(),
            ]
        );
        let cramped = NodeStatus { max_log_bytes: 64 << 20, disk_free_bytes: Some(3 << 20), ..follower("n2") };
        let cramped = assemble(vec![
            ("a:1".into(), None, Ok(leader(vec![follower_view("n2", 0, 0)]))),
            ("a:2".into(), None, Ok(cramped)),
        ]);
        assert_eq!(
            cramped.problems,
            vec!["n2 (a:2): its data disk has 3.0 MiB free, but its log and its next snapshot may need 64.0 MiB: \
                  free space on that disk, or lower the node's --max-log-bytes"
                .to_string()]
        );
        let leaderless = assemble(vec![("a:2".into(), None, Ok(follower("n2")))]);
        assert_eq!(leaderless.problems, vec!["no leader: writes wait for an election".to_string()]);
        // Certificates and clocks (issue 21).
        let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let expiring = NodeStatus { certificate_not_after_unix_s: Some(now_s + 10 * 86_400 + 60), ..follower("n2") };
        let behind = NodeStatus {
            clock_behind_accepts: 3,
            clock_unix_ms: (now_s as u64 - 3_600) * 1000,
            certificate_not_after_unix_s: Some(now_s + 400 * 86_400),
            ..follower("n3")
        };
        let timed = assemble(vec![
            ("a:1".into(), None, Ok(leader(vec![follower_view("n2", 0, 0), follower_view("n3", 0, 0)]))),
            ("a:2".into(), None, Ok(expiring)),
            ("a:3".into(), None, Ok(behind)),
        ]);
        assert_eq!(timed.problems.len(), 3, "{:?}", timed.problems);
        assert!(timed.problems[0].starts_with("n2 (a:2): its certificate expires in 10 days"), "{:?}", timed.problems);
        assert!(timed.problems[1].contains("accepted 3 peer certificates"), "{:?}", timed.problems);
        assert!(timed.problems[2].contains("its clock is 36"), "{:?}", timed.problems);
    }

    /// Goal: a follower the leader has not heard from this term shows no lag (unknown),
    /// not the leader's placeholder of the whole log.
    #[test]
    fn lag_is_unknown_until_the_leader_hears_from_the_follower() {
        let leader = NodeStatus {
            id: "n2".into(),
            role: "leader".into(),
            term: 2,
            mode: "quorum".into(),
            followers: vec![FollowerStatus { id: "n1".into(), lag_entries: 180, lag_ms: 12_000, ..Default::default() }],
            ..Default::default()
        };
        let n1 = NodeStatus { id: "n1".into(), role: "follower".into(), term: 2, ..Default::default() };
        let status =
            assemble(vec![("127.0.0.1:7201".into(), None, Ok(n1)), ("127.0.0.1:7202".into(), None, Ok(leader))]);
        assert_eq!((status.nodes[0].lag_entries, status.nodes[0].lag_ms), (None, None));
    }
}
