//! Live membership on real `baton-node` processes: a node joins a running cluster as a
//! learner, catches up, is promoted by the leader, takes leadership; a member is removed
//! and its id refused from then on; a joined node restarts from its own data; every
//! refusal names its reason. Each test starts its own nodes in a temporary directory and
//! bounds every wait.

mod support;

use baton_node::client::Client;
use baton_node::frame::{Json, MemberChange, ReadMode, Request, Response};
use baton_node::status::{MembersVerdict, MembersView};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{free_port, Cluster, Node};

const ELECTION: Duration = Duration::from_secs(10);
const CATCH_UP: Duration = Duration::from_secs(20);

/// A node `name` that joins the cluster through `via`, with an empty data directory.
fn joiner(cluster: &Cluster, name: &str, via: SocketAddr) -> Node {
    baton_node::certs::generate_cluster(&cluster.certs, &[name.to_string()]).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let data_dir = cluster.dir.path().join(name);
    let args = [
        "--id",
        name,
        "--listen",
        &addr.to_string(),
        "--join",
        &via.to_string(),
        "--data-dir",
        &data_dir.display().to_string(),
        "--certs",
        &cluster.certs.display().to_string(),
    ];
    let log = cluster.dir.path().join(format!("{name}.log"));
    Node { id: name.into(), addr, data_dir, args: args.map(String::from).to_vec(), child: None, log }
}

/// Runs the `baton` binary against `cluster` with `args`: its exit code and stderr.
fn baton(cluster: &Cluster, args: &[&str]) -> (Option<i32>, String) {
    let addrs: Vec<String> = cluster.addrs().iter().map(ToString::to_string).collect();
    let output = Command::new(support::binaries().join("baton"))
        .args(["--cluster", &addrs.join(","), "--certs", &cluster.certs.display().to_string()])
        .args(args)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

/// A writer that puts `<prefix><i>` until stopped: acknowledged and failed counts.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Writer {
    fn start(cluster: &Cluster, prefix: &str) -> Writer {
        let (stop, acked, failed) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::default());
        let mut client = cluster.client();
        let (stop_in, acked_in, failed_in): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>) =
            (stop.clone(), Arc::clone(&acked), Arc::clone(&failed));
        let prefix = prefix.to_string();
        let task = tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut i = 0u64;
            while !stop_in.load(Ordering::Relaxed) {
                match client.put(format!("{prefix}{i}").as_bytes(), b"w").await {
                    Ok(_) => acked_in.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        errors.push(format!("{prefix}{i}: {error}"));
                        failed_in.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
            errors
        });
        Writer { stop, acked, failed, task }
    }

    /// Stops it: the writes that failed, each with its error.
    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.task.await.unwrap();
        assert_eq!(errors.len() as u64, self.failed.load(Ordering::Relaxed));
        (self.acked.load(Ordering::Relaxed), errors)
    }
}

async fn change(client: &mut Client, change: MemberChange, dry_run: bool) -> Response {
    client.request(Request::ChangeMembers { change, dry_run }).await.unwrap()
}

fn refusal(response: Response) -> Vec<String> {
    match response {
        Response::MembersVerdict(Json(MembersVerdict { accepted: false, reasons, .. })) => reasons,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn members_at(client: &mut Client, addr: SocketAddr) -> Option<MembersView> {
    match client.call(addr, &Request::Members).await {
        Ok(Response::Members(Json(view))) => Some(view),
        _ => None,
    }
}

fn role_of(view: &MembersView, name: &str) -> Option<&'static str> {
    let id = view.record.id_of(name)?;
    let member = view.record.membership.member(id)?;
    Some(if member.voter { "voter" } else { "learner" })
}

/// Goal: the whole life of a member, live. A node started with `--join` before it is
/// added waits, saying why; once added it receives the log, is promoted to voter by the
/// leader once caught up, and can lead. A removed follower's id is refused at its next
/// hello, writes go on, and every node agrees on one cluster id. A joined node restarts
/// from its own data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_catches_up_is_promoted_leads_and_a_member_is_removed() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    for i in 0..300 {
        client.put(format!("before-{i}").as_bytes(), b"x").await.unwrap();
    }
    let via = cluster.node("n2").addr;
    let mut n4 = joiner(&cluster, "n4", via);
    n4.start();
    let waiting = wait_until!(ELECTION, {
        let log = std::fs::read_to_string(&n4.log).unwrap_or_default();
        log.contains("baton member add n4").then_some(())
    });
    assert!(waiting.is_some(), "a node not yet added says how to add it\n{}", cluster.logs());

    // Under a steady write load from here on: no write may fail.
    let writer = Writer::start(&cluster, "load-");
    let add = MemberChange::Add {
        name: "n4".into(),
        addr: n4.addr.to_string(),
        priority: 1,
        learner_only: false,
        upstream: None,
    };
    match change(&mut client, add.clone(), false).await {
        Response::Written { .. } => {}
        other => panic!("add refused: {other:?}"),
    }
    let n4_addr = n4.addr;
    let promoted = wait_until!(CATCH_UP, {
        let view = members_at(&mut client, cluster.node(&leader).addr).await;
        view.filter(|v| role_of(v, "n4") == Some("voter") && !v.change_pending)
    });
    let view = promoted.unwrap_or_else(|| panic!("n4 was not promoted\n{}", cluster.logs()));
    assert_eq!(view.record.membership.voters(), 4);
    let cluster_id = view.record.cluster_id;
    assert_ne!(cluster_id, 0, "the first leader chose the cluster's id");
    match client.call(n4_addr, &Request::Get { key: b"before-0".to_vec(), read: ReadMode::After(300) }).await {
        Ok(Response::Value { value: Some(value), .. }) => assert_eq!(value, b"x"),
        other => panic!("n4 should serve what was written before it joined: {other:?}"),
    }
    assert!(matches!(change(&mut client, add, true).await, Response::MembersVerdict(_)), "added once only");
    let (acked, failed) = writer.stop().await;
    assert!(acked > 0 && failed.is_empty(), "{acked} writes acknowledged, failed: {failed:?}");
    let status = client.status_of(n4_addr).await.unwrap();
    assert_eq!(status.membership_role, "voter");
    match client
        .call(n4_addr, &Request::Get { key: format!("load-{}", acked - 1).into_bytes(), read: ReadMode::After(0) })
        .await
    {
        Ok(Response::Value { .. }) => {}
        other => panic!("n4 answers reads: {other:?}"),
    }
    let leader_status = client.status_of(cluster.node(&leader).addr).await.unwrap();
    let caught_up = wait_until!(CATCH_UP, {
        let status = client.status_of(n4_addr).await.ok();
        status.filter(|s| s.applied_index >= leader_status.commit_index && s.keys >= leader_status.keys)
    });
    let n4_status = caught_up.unwrap_or_else(|| panic!("n4 did not catch up\n{}", cluster.logs()));
    assert!(n4_status.keys >= 300 + acked, "n4 holds every key written ({} of {})", n4_status.keys, 300 + acked);

    // Remove a follower other than n4, then let it try to come back.
    let removed = ["n1", "n2", "n3"].into_iter().find(|n| *n != leader).unwrap().to_string();
    match change(&mut client, MemberChange::Remove { name: removed.clone() }, false).await {
        Response::Written { .. } => {}
        other => panic!("remove refused: {other:?}"),
    }
    client.put(b"after-removal", b"y").await.unwrap();
    cluster.node(&removed).kill();
    cluster.node(&removed).start();
    let removed_log = cluster.node(&removed).log.clone();
    let refused = wait_until!(ELECTION, {
        let log = std::fs::read_to_string(&removed_log).unwrap_or_default();
        log.contains("was removed from this cluster and is never accepted again").then_some(())
    });
    assert!(refused.is_some(), "the removed id is refused with the reason\n{}", cluster.logs());
    for name in ["n1", "n2", "n3"].into_iter().filter(|n| *n != removed) {
        let view = members_at(&mut client, cluster.node(name).addr).await.unwrap();
        assert_eq!(role_of(&view, &removed), None, "{name} still counts {removed}");
        assert_eq!(view.record.cluster_id, cluster_id, "{name} has another cluster id");
    }

    // The new member can lead.
    match client.request(Request::Switchover { to: Some("n4".into()), dry_run: false }).await.unwrap() {
        Response::Switchover { started: true, .. } => {}
        other => panic!("switchover to n4 refused: {other:?}"),
    }
    let n4_leads =
        wait_until!(ELECTION, { client.status_of(n4_addr).await.ok().filter(|s| s.role == "leader").map(|_| ()) });
    assert!(n4_leads.is_some(), "n4 did not take over\n{}", cluster.logs());
    let mut through_n4 =
        Client::new(vec![n4_addr], &cluster.certs, &baton_node::certs::Identity::Operator("operator".into())).unwrap();
    through_n4.put(b"led-by-n4", b"z").await.unwrap();

    // A joined node restarts from its own data (its --join is not read again).
    n4.kill();
    n4.start();
    let back = wait_until!(ELECTION, {
        match through_n4.put(b"after-restart", b"w").await {
            Ok(_) => Some(()),
            Err(_) => None,
        }
    });
    assert!(back.is_some(), "the cluster did not take writes after n4 restarted\n{}", cluster.logs());
    let view = members_at(&mut through_n4, n4_addr).await.unwrap();
    assert_eq!(role_of(&view, "n4"), Some("voter"));
    drop(n4);
}

/// Goal: changes that would hurt are refused, each with its reason, and change nothing:
/// removing the leader, removing a voter when the rest could not take writes, adding a
/// member twice, promoting or removing a node that is not a member, a bad name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmful_changes_are_refused_with_their_reasons() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    client.put(b"k", b"v").await.unwrap();
    let reasons = refusal(change(&mut client, MemberChange::Remove { name: leader.clone() }, true).await);
    assert!(reasons[0].contains("cannot remove itself"), "{reasons:?}");
    let again = MemberChange::Add {
        name: "n2".into(),
        addr: "127.0.0.1:9".into(),
        priority: 1,
        learner_only: false,
        upstream: None,
    };
    assert!(refusal(change(&mut client, again, false).await)[0].contains("already a member"));
    assert!(refusal(change(&mut client, MemberChange::Promote { name: "n9".into() }, false).await)[0]
        .contains("not a member"));
    let bad = MemberChange::Add {
        name: "bad name!".into(),
        addr: "127.0.0.1:9".into(),
        priority: 1,
        learner_only: false,
        upstream: None,
    };
    assert!(!refusal(change(&mut client, bad, false).await).is_empty());

    // With one follower down, removing the other would leave the leader alone.
    let followers: Vec<String> = ["n1", "n2", "n3"].into_iter().filter(|n| *n != leader).map(String::from).collect();
    cluster.node(&followers[0]).kill();
    // (Until an election timeout passes, the leader still counts the killed one live.)
    let reasons = wait_until!(ELECTION, {
        match change(&mut client, MemberChange::Remove { name: followers[1].clone() }, true).await {
            Response::MembersVerdict(Json(MembersVerdict { accepted: false, reasons, .. })) => {
                reasons.iter().any(|r| r.contains("writes would stop")).then_some(reasons)
            }
            _ => None,
        }
    });
    assert!(reasons.is_some(), "removing the last live follower must be refused\n{}", cluster.logs());
    let view = members_at(&mut client, cluster.node(&leader).addr).await.unwrap();
    assert_eq!(view.record.membership.voters(), 3, "nothing changed");
    client.put(b"still", b"writable").await.unwrap();
}

/// Goal: removing the leader with `baton member remove` hands leadership over first,
/// and nothing acknowledged is lost; a removed id is never taken back; a second change
/// while one is in flight is refused with the index of the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_leader_moves_leadership_first_and_ids_are_never_reused() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let writer = Writer::start(&cluster, "w-");
    let (code, output) = baton(&cluster, &["member", "remove", &leader, "--dry-run"]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("hands leadership over first"), "{output}");
    let (code, output) = baton(&cluster, &["member", "remove", &leader]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("handing leadership over first") && output.contains("committed at index"), "{output}");
    let (acked, failed) = writer.stop().await;
    assert!(failed.is_empty(), "writes failed across the removal of the leader: {failed:?}");
    let others: Vec<String> = ["n1", "n2", "n3"].into_iter().filter(|n| *n != leader).map(String::from).collect();
    let mut survivors = Client::new(
        others.iter().map(|n| cluster.node(n).addr).collect(),
        &cluster.certs,
        &baton_node::certs::Identity::Operator("operator".into()),
    )
    .unwrap();
    for i in [0, acked / 2, acked - 1] {
        let (value, _) = survivors.get(format!("w-{i}").as_bytes(), ReadMode::Leader).await.unwrap();
        assert_eq!(value.as_deref(), Some(&b"w"[..]), "acknowledged write w-{i} is there");
    }
    let old = client.status_of(cluster.node(&leader).addr).await.unwrap();
    assert_eq!(old.membership_role, "removed");

    // The removed id (by its name) is never taken back.
    let addr = cluster.node(&leader).addr.to_string();
    let (code, output) = baton(&cluster, &["member", "add", &leader, &addr]);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("ids are never reused"), "{output}");

    // A second change while one is in flight: with both followers stopped, an added
    // learner cannot commit; a second change is refused with the first one's index.
    let (first, second) = (others[0].clone(), others[1].clone());
    let new_leader = cluster.wait_for_leader(&mut survivors, ELECTION).await;
    let follower = if new_leader == first { second } else { first };
    cluster.node(&follower).signal("STOP");
    let mut adder = Client::new(
        vec![cluster.node(&new_leader).addr],
        &cluster.certs,
        &baton_node::certs::Identity::Operator("operator".into()),
    )
    .unwrap();
    let pending = tokio::spawn(async move {
        let add = MemberChange::Add {
            name: "n7".into(),
            addr: "127.0.0.1:9".into(),
            priority: 1,
            learner_only: true,
            upstream: None,
        };
        adder.request(Request::ChangeMembers { change: add, dry_run: false }).await
    });
    // (The leader steps down an election timeout after losing its only follower: the
    // probe asks briefly and often.)
    survivors.deadline = Duration::from_millis(500);
    let in_flight = wait_until!(Duration::from_secs(5), {
        let priority = MemberChange::SetPriority { name: new_leader.clone(), priority: 2 };
        match survivors.request(Request::ChangeMembers { change: priority, dry_run: true }).await {
            Ok(Response::MembersVerdict(Json(MembersVerdict { accepted: false, reasons, .. })))
                if reasons.iter().any(|r| r.contains("one change at a time")) =>
            {
                Some(reasons)
            }
            _ => None,
        }
    });
    cluster.node(&follower).signal("CONT");
    assert!(in_flight.is_some(), "a second change in flight must be refused\n{}", cluster.logs());
    let _ = pending.await;
}

/// Goal: `baton member replace OLD NEW ADDR` replaces a node killed for good by a new
/// machine with a new id and an empty disk: NEW is added, catches up, is promoted, and
/// OLD is removed; writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_replaced_by_a_new_one() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    for i in 0..100 {
        client.put(format!("k{i}").as_bytes(), b"v").await.unwrap();
    }
    let dead = ["n1", "n2", "n3"].into_iter().find(|n| *n != leader).unwrap().to_string();
    cluster.node(&dead).kill();
    let via = cluster.node(&leader).addr;
    let mut n4 = joiner(&cluster, "n4", via);
    n4.start();
    let (code, output) = baton(&cluster, &["member", "replace", &dead, "n4", &n4.addr.to_string()]);
    assert_eq!(code, Some(0), "{output}\n{}", cluster.logs());
    let view = members_at(&mut client, via).await.unwrap();
    assert_eq!(role_of(&view, "n4"), Some("voter"));
    assert_eq!(role_of(&view, &dead), None);
    assert_eq!(view.record.membership.voters(), 3);
    client.put(b"after-replace", b"v").await.unwrap();
    let status = client.status_of(n4.addr).await.unwrap();
    assert!(status.keys >= 100, "n4 holds the data: {} keys", status.keys);
}

/// Goal: a node of another cluster (same CA, another cluster id) is refused with both
/// ids named, and the cluster goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    cluster.wait_for_leader(&mut client, ELECTION).await;
    client.put(b"k", b"v").await.unwrap();
    // A one-node cluster of its own, from the same CA: it elects itself and chooses
    // its own cluster id.
    baton_node::certs::generate_cluster(&cluster.certs, &["n9".to_string()]).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let data_dir = cluster.dir.path().join("n9");
    let args = ["--id", "n9", "--listen", &addr.to_string(), "--data-dir", &data_dir.display().to_string()];
    let mut args: Vec<String> = args.map(String::from).to_vec();
    args.extend(["--certs".into(), cluster.certs.display().to_string()]);
    let log = cluster.dir.path().join("n9.log");
    let mut other = Node { id: "n9".into(), addr, data_dir, args, child: None, log: log.clone() };
    other.start();
    let mut other_client =
        Client::new(vec![addr], &cluster.certs, &baton_node::certs::Identity::Operator("operator".into())).unwrap();
    let chose =
        wait_until!(ELECTION, { members_at(&mut other_client, addr).await.filter(|v| v.record.cluster_id != 0) });
    let theirs = chose.expect("the other cluster chose its id").record.cluster_id;
    // This cluster is told n9 is a new member at that address: its leader dials it and
    // is refused, with both cluster ids named.
    let add = MemberChange::Add {
        name: "n9".into(),
        addr: addr.to_string(),
        priority: 1,
        learner_only: true,
        upstream: None,
    };
    assert!(matches!(change(&mut client, add, false).await, Response::Written { .. }));
    let refused = wait_until!(ELECTION, {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().find(|l| l.contains("belongs to cluster")).map(str::to_string)
    });
    let line = refused
        .unwrap_or_else(|| panic!("no refusal in n9's log\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    assert!(line.contains("this node to cluster"), "{line}");
    client.put(b"still", b"fine").await.unwrap();

    // A client given addresses of both clusters: the first node that answers names the
    // cluster, and the other cluster's node refuses it, naming both ids.
    let n1 = cluster.node("n1").addr;
    let operator = baton_node::certs::Identity::Operator("operator".into());
    let mut mixed = Client::new(vec![n1, addr], &cluster.certs, &operator).unwrap();
    mixed.status_of(n1).await.unwrap();
    let ours = mixed.cluster_id();
    assert!(ours != 0 && ours != theirs, "{ours:016x} {theirs:016x}");
    match mixed.status_of(addr).await {
        Err(error) => {
            let text = error.to_string();
            assert!(text.contains(&format!("{ours:016x}")) && text.contains(&format!("{theirs:016x}")), "{text}");
        }
        Ok(status) => panic!("a node of another cluster answered: {status:?}"),
    }
    // `baton --cluster-id` with the other cluster's id: this cluster's nodes refuse it.
    let (code, output) = baton(&cluster, &["--timeout", "2", "--cluster-id", &format!("{theirs:016x}"), "get", "k"]);
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains(&format!("expects cluster {theirs:016x}")), "{output}");
    let (code, output) = baton(&cluster, &["--cluster-id", &format!("{ours:016x}"), "get", "k"]);
    assert_eq!(code, Some(0), "{output}");
}

/// Goal: a cascading learner (`--upstream`) receives the log through its upstream: the
/// leader sends it only the requests, the upstream fills in the entries from its own
/// log; when the upstream is killed, the learner falls back to the leader and keeps up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascading_learner_gets_the_log_through_its_upstream_and_falls_back_to_the_leader() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let upstream = ["n1", "n2", "n3"].into_iter().find(|n| *n != leader).unwrap().to_string();
    let via = cluster.node(&leader).addr;
    let mut n4 = joiner(&cluster, "n4", via);
    n4.start();
    let add = MemberChange::Add {
        name: "n4".into(),
        addr: n4.addr.to_string(),
        priority: 1,
        learner_only: true,
        upstream: Some(upstream.clone()),
    };
    assert!(matches!(change(&mut client, add, false).await, Response::Written { .. }));
    for i in 0..300 {
        client.put(format!("a{i}").as_bytes(), b"v").await.unwrap();
    }
    let n4_addr = n4.addr;
    let leader_addr = cluster.node(&leader).addr;
    let learner = wait_until!(CATCH_UP, {
        let leader_status = client.status_of(leader_addr).await.ok();
        let learner = client.status_of(n4_addr).await.ok();
        match (leader_status, learner) {
            (Some(l), Some(n)) if n.applied_index >= l.commit_index && n.keys >= 300 => Some(n),
            _ => None,
        }
    });
    let learner = learner.unwrap_or_else(|| panic!("n4 did not catch up\n{}", cluster.logs()));
    assert_eq!(learner.membership_role, "learner");
    let upstream_status = client.status_of(cluster.node(&upstream).addr).await.unwrap();
    let leader_status = client.status_of(leader_addr).await.unwrap();
    // In steady state too (every write goes to both at once), not only while n4
    // catches up: most of the 300 writes reach n4 through its upstream.
    assert!(upstream_status.frames_relayed >= 200, "{upstream} passed on only {}", upstream_status.frames_relayed);
    assert!(leader_status.relays_sent > 0, "the leader sent nothing through {upstream}");
    let members = members_at(&mut client, leader_addr).await.unwrap();
    let n4_entry = members.record.entry(members.record.id_of("n4").unwrap()).unwrap();
    assert_eq!(n4_entry.upstream, members.record.id_of(&upstream).map(|id| id.0));

    // The upstream dies: the leader sends to n4 itself.
    cluster.node(&upstream).kill();
    for i in 0..100 {
        client.put(format!("b{i}").as_bytes(), b"v").await.unwrap();
    }
    let fell_back = wait_until!(CATCH_UP, {
        let leader_status = client.status_of(leader_addr).await.ok();
        let learner = client.status_of(n4_addr).await.ok();
        match (leader_status, learner) {
            (Some(l), Some(n)) if n.applied_index >= l.commit_index && n.keys >= 400 => Some(()),
            _ => None,
        }
    });
    assert!(fell_back.is_some(), "n4 did not keep up once its upstream was gone\n{}", cluster.logs());
}

/// Bytes of disk the files under `dir` take (allocated blocks), recursively.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// The numbers of the writes a stopped `Writer` had acknowledged: every number below
/// `total` but the failed ones (each error starts with `<prefix><i>:`).
fn acknowledged(prefix: &str, acked: u64, failed: &[String]) -> Vec<u64> {
    let failed: std::collections::HashSet<u64> =
        failed.iter().filter_map(|e| e.strip_prefix(prefix)?.split(':').next()?.parse().ok()).collect();
    (0..acked + failed.len() as u64).filter(|i| !failed.contains(i)).collect()
}

/// Every acknowledged write of `prefix` is readable at the leader.
async fn assert_all_readable(client: &mut Client, prefix: &str, numbers: &[u64], cluster: &Cluster) {
    for i in numbers {
        let key = format!("{prefix}{i}").into_bytes();
        match client.request(Request::Get { key, read: ReadMode::Leader }).await {
            Ok(Response::Value { value: Some(_), .. }) => {}
            other => panic!("acknowledged write {prefix}{i} is gone: {other:?}\n{}", cluster.logs()),
        }
    }
}

/// Goal: a pair of data nodes plus a witness (`member add --witness`, `baton-node
/// --witness`) survives the loss of either data node under a write load with no
/// acknowledged write lost; the witness votes but holds no data (it gets a data-less
/// snapshot, serves no reads) and never leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_and_a_witness_survive_the_loss_of_either_data_node() {
    // A small log bound, so the witness joins from a snapshot.
    let mut cluster = Cluster::start(2, &["--max-log-bytes", "65536"]);
    let mut client = cluster.client();
    let first_leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let value = vec![b'v'; 200];
    for i in 0..500 {
        client.put(format!("before-{i}").as_bytes(), &value).await.unwrap();
    }
    let via = cluster.node(&first_leader).addr;
    let mut witness = joiner(&cluster, "w1", via);
    witness.args.extend(["--witness", "--max-log-bytes", "65536"].map(String::from));
    witness.start();
    let (code, output) = baton(&cluster, &["member", "add", "w1", &witness.addr.to_string(), "--witness"]);
    assert_eq!(code, Some(0), "{output}\n{}", cluster.logs());
    assert!(output.contains("--witness"), "the start command it prints says --witness: {output}");
    let voted_in = wait_until!(CATCH_UP, {
        let view = members_at(&mut client, via).await;
        view.filter(|v| role_of(v, "w1") == Some("voter") && !v.change_pending)
    });
    let view = voted_in.unwrap_or_else(|| panic!("the witness was not promoted\n{}", cluster.logs()));
    let w1 = view.record.id_of("w1").and_then(|id| view.record.membership.member(id).copied()).unwrap();
    assert!(w1.witness && w1.priority == 0, "{w1:?}");
    let status = client.status_of(witness.addr).await.unwrap();
    assert_eq!(status.membership_role, "witness");
    assert_eq!(status.keys, 0, "a witness holds no data");
    match client.call(witness.addr, &Request::Get { key: b"before-1".to_vec(), read: ReadMode::Any }).await {
        Ok(Response::Error { message, .. }) => assert!(message.contains("witness"), "{message}"),
        other => panic!("a witness serves no reads: {other:?}"),
    }
    let (code, output) = baton(&cluster, &["member", "list"]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.lines().any(|l| l.starts_with("w1") && l.contains("witness")), "{output}");

    // Kill -9 the leader under load: the other data node leads, with the witness's vote.
    let writer = Writer::start(&cluster, "a-");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = std::time::Instant::now();
    cluster.node(&first_leader).kill();
    let other = if first_leader == "n1" { "n2" } else { "n1" }.to_string();
    let other_addr = cluster.node(&other).addr;
    let led = wait_until!(ELECTION, {
        client.status_of(other_addr).await.ok().filter(|s| s.role == "leader").map(|_| killed_at.elapsed())
    });
    let failover = led.unwrap_or_else(|| panic!("{other} did not take over\n{}", cluster.logs()));
    let writes_before = writer.acked.load(Ordering::Relaxed);
    let written_after =
        wait_until!(ELECTION, { (writer.acked.load(Ordering::Relaxed) > writes_before + 20).then_some(()) });
    assert!(written_after.is_some(), "no writes after the failover\n{}", cluster.logs());
    let (acked, failed) = writer.stop().await;
    eprintln!(
        "leader {first_leader} killed: {other} led after {failover:?}; {acked} writes acked, {} failed",
        failed.len()
    );
    let numbers = acknowledged("a-", acked, &failed);
    assert_all_readable(&mut client, "a-", &numbers, &cluster).await;

    // The killed node comes back and catches up; then kill -9 it again, now a follower:
    // the leader goes on with the witness alone.
    cluster.node(&first_leader).start();
    let back = cluster.node(&first_leader).addr;
    let leader_status = client.status_of(other_addr).await.unwrap();
    let caught_up = wait_until!(CATCH_UP, {
        let status = client.status_of(back).await.ok();
        status.filter(|s| s.applied_index >= leader_status.commit_index).map(|_| ())
    });
    assert!(caught_up.is_some(), "{first_leader} did not catch up\n{}", cluster.logs());
    let writer = Writer::start(&cluster, "b-");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.node(&first_leader).kill();
    let writes_before = writer.acked.load(Ordering::Relaxed);
    let written_after =
        wait_until!(ELECTION, { (writer.acked.load(Ordering::Relaxed) > writes_before + 20).then_some(()) });
    assert!(written_after.is_some(), "no writes with the follower gone\n{}", cluster.logs());
    let (acked, failed) = writer.stop().await;
    eprintln!("follower {first_leader} killed: {acked} writes acked, {} failed", failed.len());
    assert_all_readable(&mut client, "b-", &acknowledged("b-", acked, &failed), &cluster).await;
    assert_all_readable(&mut client, "a-", &numbers, &cluster).await;
    let status = client.status_of(other_addr).await.unwrap();
    assert_eq!(status.role, "leader", "{other} still leads");

    // What the witness costs: it never led, holds no keys, and a fraction of the disk.
    let witness_status = client.status_of(witness.addr).await.unwrap();
    assert_eq!(witness_status.keys, 0);
    assert_ne!(witness_status.role, "leader");
    let (witness_disk, data_disk) = (dir_bytes(&witness.data_dir), dir_bytes(&cluster.node(&other).data_dir));
    eprintln!(
        "witness: RSS {:?} bytes, data directory {witness_disk} bytes; data node {other}: RSS {:?}, {data_disk} bytes",
        witness_status.cost.rss_bytes,
        client.status_of(other_addr).await.unwrap().cost.rss_bytes
    );
    assert!(witness_disk < data_disk, "the witness stores less than a data node: {witness_disk} vs {data_disk}");
    let leader_log = std::fs::read_to_string(&cluster.node(&other).log).unwrap_or_default()
        + &std::fs::read_to_string(&cluster.node(&first_leader).log).unwrap_or_default();
    assert!(leader_log.contains("sending the snapshot"), "the witness joined from a snapshot\n{}", cluster.logs());

    // A node started with --witness that the cluster adds as a data member refuses to run.
    let mut mistaken = joiner(&cluster, "w2", other_addr);
    mistaken.args.push("--witness".into());
    mistaken.start();
    let (code, output) = baton(&cluster, &["member", "add", "w2", &mistaken.addr.to_string(), "--learner"]);
    assert_eq!(code, Some(0), "{output}\n{}", cluster.logs());
    let exited = wait_until!(CATCH_UP, { mistaken.child.as_mut().and_then(|c| c.try_wait().unwrap()) });
    let status = exited.unwrap_or_else(|| panic!("w2 kept running as a data member\n{}", cluster.logs()));
    let log = std::fs::read_to_string(&mistaken.log).unwrap_or_default();
    assert!(!status.success() && log.contains("started with --witness"), "{status}: {log}");
    drop(witness);
}

/// Goal: a node that joins from a snapshot the leader took before the leader itself was
/// added keeps its link to the leader (the snapshot's membership does not name it) and
/// is promoted at once, not after the leader's 30 s snapshot timeout. Found by the fault
/// suite's `mix` (a replacement that joined took over 3 s to be in the stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_from_a_snapshot_older_than_its_leader_follows_that_leader() {
    let mut cluster = Cluster::start(3, &["--max-log-bytes", "65536"]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let value = vec![b'v'; 200];
    for i in 0..1000 {
        client.put(format!("k{i}").as_bytes(), &value).await.unwrap();
    }
    // n4 joins from the leader's snapshot, which predates n4; it then leads.
    let via = cluster.node(&leader).addr;
    let mut n4 = joiner(&cluster, "n4", via);
    n4.args.extend(["--max-log-bytes", "65536"].map(String::from));
    n4.start();
    let (code, output) = baton(&cluster, &["member", "add", "n4", &n4.addr.to_string()]);
    assert_eq!(code, Some(0), "{output}\n{}", cluster.logs());
    let promoted = wait_until!(CATCH_UP, {
        let view = members_at(&mut client, cluster.node(&leader).addr).await;
        view.filter(|v| role_of(v, "n4") == Some("voter") && !v.change_pending)
    });
    assert!(promoted.is_some(), "n4 was not promoted\n{}", cluster.logs());
    match client.request(Request::Switchover { to: Some("n4".into()), dry_run: false }).await.unwrap() {
        Response::Switchover { started: true, .. } => {}
        other => panic!("switchover to n4 refused: {other:?}"),
    }
    let n4_addr = n4.addr;
    let n4_leads =
        wait_until!(ELECTION, { client.status_of(n4_addr).await.ok().filter(|s| s.role == "leader").map(|_| ()) });
    assert!(n4_leads.is_some(), "n4 did not take over\n{}", cluster.logs());

    // n5 joins through n4, from n4's snapshot (whose membership does not name n4).
    let mut n5 = joiner(&cluster, "n5", n4_addr);
    n5.start();
    let (code, output) = baton(&cluster, &["member", "add", "n5", &n5.addr.to_string()]);
    assert_eq!(code, Some(0), "{output}\n{}", cluster.logs());
    let started = std::time::Instant::now();
    let promoted = wait_until!(CATCH_UP, {
        let view = members_at(&mut client, n4_addr).await;
        view.filter(|v| role_of(v, "n5") == Some("voter") && !v.change_pending).map(|_| started.elapsed())
    });
    let n5_log = std::fs::read_to_string(&n5.log).unwrap_or_default();
    let took = promoted.unwrap_or_else(|| panic!("n5 was not promoted\n{n5_log}\n{}", cluster.logs()));
    assert!(n5_log.contains("installed the leader's snapshot"), "n5 joined from a snapshot\n{n5_log}");
    eprintln!("n5 promoted {took:?} after it was added");
    drop((n4, n5));
}

/// Goal: a node added to a cluster whose log is long and whose map is small gets a
/// snapshot, not the whole log: the leader, seeing it far behind, snapshots at once
/// (`compaction::catch_up_snapshot_due`), and the new node installs that snapshot and is
/// promoted. Before, it replayed every entry from index 1 (up to half of
/// `--max-log-bytes`): the fault suite's replacements took up to 1.2 s to be in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_behind_a_long_log_gets_a_snapshot() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    // About 5.4 MB of log (over the 4 MiB that makes a follower "far behind") and a
    // 33 KiB map: 1,300 writes of 4 KiB over 8 keys.
    let value = vec![b'v'; 4096];
    for i in 0..1300 {
        client.put(format!("k{}", i % 8).as_bytes(), &value).await.unwrap();
    }
    let via = cluster.node(&leader).addr;
    let mut n4 = joiner(&cluster, "n4", via);
    n4.start();
    let (code, output) = baton(&cluster, &["member", "add", "n4", &n4.addr.to_string()]);
    assert_eq!(code, Some(0), "{output}\n{}", cluster.logs());
    let promoted = wait_until!(CATCH_UP, {
        let view = members_at(&mut client, via).await;
        view.filter(|v| role_of(v, "n4") == Some("voter") && !v.change_pending)
    });
    let n4_log = std::fs::read_to_string(&n4.log).unwrap_or_default();
    assert!(promoted.is_some(), "n4 was not promoted\n{n4_log}\n{}", cluster.logs());
    let leader_log = std::fs::read_to_string(&cluster.node(&leader).log).unwrap_or_default();
    assert!(leader_log.contains("a follower is far behind"), "the leader snapshotted for n4\n{leader_log}");
    assert!(n4_log.contains("installed the leader's snapshot"), "n4 joined from a snapshot\n{n4_log}");
    let status = client.status_of(n4.addr).await.unwrap();
    assert_eq!(status.keys, 8, "n4 holds the map");
}
