//! Operator actions against a real 3-node cluster: switchover under load, refused
//! switchovers with reasons (stopped, lagging, one already under way), pause, and manual
//! failover. Each test bounds every wait.

mod support;

use baton_node::certs::Identity;
use baton_node::client::Client;
use baton_node::frame::{ErrorCode, ReadMode, Request, Response};
use std::time::{Duration, Instant};
use support::Cluster;

const ELECTION: Duration = Duration::from_secs(10);

async fn leader_of(cluster: &Cluster, client: &mut baton_node::client::Client) -> Option<String> {
    cluster.statuses(client).await.into_iter().find(|s| s.role == "leader").map(|s| s.id)
}

/// Goal: a switchover under a steady write load loses no acknowledged write and the
/// target leads afterwards. Prints the longest gap between acknowledged writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_load_loses_nothing() {
    let cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let target = cluster.nodes.iter().find(|n| n.id != leader).unwrap().id.clone();
    let writer = cluster.spawn_writer("s", Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let response = client.request(Request::Switchover { to: Some(target.clone()), dry_run: false }).await.unwrap();
    assert!(
        matches!(&response, Response::Switchover { started: true, reasons, .. } if reasons.is_empty()),
        "{response:?}"
    );
    let led = wait_until!(ELECTION, leader_of(&cluster, &mut client).await.filter(|l| *l == target));
    assert!(led.is_some(), "{target} did not take over\n{}", cluster.logs());
    let acknowledged = writer.await.unwrap();
    let gap = acknowledged.windows(2).map(|w| w[1].1 - w[0].1).max().unwrap_or_default();
    println!(
        "switchover {leader} -> {target}: longest gap between acknowledged writes {:.1} ms",
        gap.as_secs_f64() * 1000.0
    );
    for (i, _) in acknowledged {
        assert!(client.get(format!("s{i}").as_bytes(), ReadMode::Leader).await.unwrap().0.is_some(), "lost s{i}");
    }
}

/// Goal: a switchover to a stopped node, and to one far behind, is refused with the
/// reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_to_a_stopped_or_lagging_node_is_refused() {
    let cluster = Cluster::start(3, &["--max-lag-entries", "100"]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let target = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    target.signal("STOP");
    for i in 0..300 {
        client.put(format!("l{i}").as_bytes(), b"x").await.unwrap();
    }
    // Past an election timeout of silence, it is unreachable as well as behind.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let response = client.request(Request::Switchover { to: Some(target.id.clone()), dry_run: false }).await.unwrap();
    target.signal("CONT");
    let Response::Switchover { reasons, started: false, .. } = response else { panic!("not refused: {response:?}") };
    let text = reasons.join("; ");
    assert!(text.contains("unreachable") && text.contains("lagging by"), "{text}");
    println!("refused: {text}");
    assert_eq!(leader_of(&cluster, &mut client).await, Some(leader), "nothing moved");
}

/// Goal: while a switchover is under way, a second one is refused with the reason. The
/// first target is frozen right after it is chosen, so the handover stays open (up to an
/// election timeout) long enough to ask again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_refused_while_one_is_under_way() {
    let cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let mut followers = cluster.nodes.iter().filter(|n| n.id != leader);
    let (first, second) = (followers.next().unwrap(), followers.next().unwrap());
    // The leader must have heard from both in this term, or it refuses them as unreachable.
    let heard = wait_until!(ELECTION, {
        let statuses = cluster.statuses(&mut client).await;
        let followers = statuses.into_iter().find(|s| s.id == leader).map(|s| s.followers).unwrap_or_default();
        (followers.len() == 2 && followers.iter().all(|f| f.in_sync && f.last_ack_age_ms.is_some())).then_some(())
    });
    assert!(heard.is_some(), "the leader never heard from both followers\n{}", cluster.logs());
    first.signal("STOP");
    let response = client.request(Request::Switchover { to: Some(first.id.clone()), dry_run: false }).await;
    let again = client.request(Request::Switchover { to: Some(second.id.clone()), dry_run: false }).await;
    first.signal("CONT");
    assert!(matches!(&response, Ok(Response::Switchover { started: true, .. })), "first: {response:?}");
    let Ok(Response::Switchover { reasons, started: false, .. }) = again else { panic!("not refused: {again:?}") };
    let text = reasons.join("; ");
    assert!(text.contains(&format!("a switchover to {} is already in progress", first.id)), "{text}");
    println!("second switchover refused: {text}");
    // The first completes once its target runs again, or times out: either way one leader.
    let settled = wait_until!(ELECTION, leader_of(&cluster, &mut client).await);
    assert!(settled.is_some(), "no leader after the switchover\n{}", cluster.logs());
}

/// Goal: with automatic failover paused, killing the leader elects no one; after resume
/// a leader is elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_prevents_failover_until_resume() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    assert_eq!(client.request(Request::SetPaused { paused: true }).await.unwrap(), Response::Done);
    let everyone_paused = wait_until!(Duration::from_secs(5), {
        let statuses = cluster.statuses(&mut client).await;
        (statuses.len() == 3 && statuses.iter().all(|s| s.paused)).then_some(())
    });
    assert!(everyone_paused.is_some(), "the pause did not reach every node");
    cluster.node(&leader).kill();
    // Three election timeouts of watching: nobody may take over.
    let observed = Instant::now();
    while observed.elapsed() < Duration::from_secs(3) {
        assert_eq!(leader_of(&cluster, &mut client).await, None, "a node took over while paused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let survivors: Vec<_> = cluster.nodes.iter().filter(|n| n.id != leader).map(|n| n.addr).collect();
    for addr in &survivors {
        assert_eq!(client.call(*addr, &Request::SetPaused { paused: false }).await.unwrap(), Response::Done);
    }
    let resumed = wait_until!(ELECTION, leader_of(&cluster, &mut client).await);
    assert!(resumed.is_some(), "no leader after resume\n{}", cluster.logs());
}

/// Goal: a resume sent to a follower while a leader is up is sent on to the leader
/// (a follower that resumed alone was paused again by the leader's next heartbeat, so
/// `baton resume` said "resumed" and nothing changed); through the leader it reaches all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_at_a_follower_goes_to_the_leader() {
    let cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    assert_eq!(client.request(Request::SetPaused { paused: true }).await.unwrap(), Response::Done);
    let all_paused = |paused: bool| {
        let cluster = &cluster;
        async move {
            let mut client = cluster.client();
            wait_until!(Duration::from_secs(5), {
                let statuses = cluster.statuses(&mut client).await;
                (statuses.len() == 3 && statuses.iter().all(|s| s.paused == paused)).then_some(())
            })
        }
    };
    assert!(all_paused(true).await.is_some(), "the pause did not reach every node");
    let leader_addr = cluster.nodes.iter().find(|n| n.id == leader).unwrap().addr;
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap().addr;
    match client.call(follower, &Request::SetPaused { paused: false }).await.unwrap() {
        Response::Error { code: ErrorCode::NotLeader, leader_hint, .. } => {
            assert_eq!(leader_hint, Some(leader_addr.to_string()))
        }
        other => panic!("a follower with a leader took the resume itself: {other:?}"),
    }
    let mut at_the_follower =
        Client::new(vec![follower], &cluster.certs, &Identity::Operator("operator".into())).unwrap();
    assert_eq!(at_the_follower.request(Request::SetPaused { paused: false }).await.unwrap(), Response::Done);
    assert!(all_paused(false).await.is_some(), "the resume did not reach every node\n{}", cluster.logs());
}

/// Goal: after the leader is killed (automatic failover paused, so nothing else
/// interferes), a manual failover makes the chosen node leader, and the estimated loss
/// matches what was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_after_leader_kill() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    for i in 0..50 {
        client.put(format!("m{i}").as_bytes(), b"x").await.unwrap();
    }
    assert_eq!(client.request(Request::SetPaused { paused: true }).await.unwrap(), Response::Done);
    wait_until!(Duration::from_secs(5), {
        let statuses = cluster.statuses(&mut client).await;
        (statuses.iter().filter(|s| s.paused && s.applied_index >= 50).count() == 3).then_some(())
    })
    .expect("paused and caught up everywhere");
    cluster.node(&leader).kill();
    let chosen = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let (chosen_id, chosen_addr) = (chosen.id.clone(), chosen.addr);
    let statuses = cluster.statuses(&mut client).await;
    let position = |s: &baton_node::status::NodeStatus| baton_common::Position::new(s.last_term, s.last_index);
    let me = statuses.iter().find(|s| s.id == chosen_id).unwrap();
    let others: Vec<_> =
        statuses.iter().filter(|s| s.id != chosen_id).map(|s| (baton_common::NodeId(0), position(s))).collect();
    let estimate = baton_common::estimate_failover_loss(position(me), &others);
    // Manual failover waits out the dead leader's lease, then campaigns; like `baton
    // failover`, it campaigns again if a voter still honoured the old lease.
    let led = wait_until!(ELECTION, {
        let _ = client.call(chosen_addr, &Request::Campaign { dry_run: false }).await.unwrap();
        let round = Instant::now();
        let mut won = None;
        while won.is_none() && round.elapsed() < Duration::from_millis(1_500) {
            won = leader_of(&cluster, &mut client).await.filter(|l| *l == chosen_id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        won
    });
    assert!(led.is_some(), "{chosen_id} did not take over\n{}", cluster.logs());
    let mut lost = 0;
    for i in 0..50 {
        if client.get(format!("m{i}").as_bytes(), ReadMode::Leader).await.unwrap().0.is_none() {
            lost += 1;
        }
    }
    println!("manual failover to {chosen_id}: estimated loss {} entries, lost {lost} writes", estimate.lost_entries);
    assert_eq!((estimate.lost_entries, lost), (0, 0));
}

/// Goal: async mode: with the followers frozen the leader acknowledges writes alone and
/// is killed; after failover and its restart, those writes are in its `discarded/` file
/// and counted in status, and its map no longer serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_writes_lost_in_failover_are_reported() {
    let mut cluster = Cluster::start(3, &["--mode", "async"]);
    let mut client = cluster.client();
    let old = cluster.wait_for_leader(&mut client, ELECTION).await;
    for i in 0..10 {
        client.put(format!("kept-{i}").as_bytes(), b"x").await.unwrap();
    }
    let followers: Vec<String> = cluster.nodes.iter().filter(|n| n.id != old).map(|n| n.id.clone()).collect();
    wait_until!(Duration::from_secs(5), {
        let statuses = cluster.statuses(&mut client).await;
        (statuses.iter().filter(|s| s.applied_index >= 11).count() == 3).then_some(())
    })
    .expect("everyone has the first writes");
    for id in &followers {
        cluster.node(id).signal("STOP");
    }
    // Acknowledged by the leader alone, within its lease.
    let old_addr = cluster.node(&old).addr;
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        let put = Request::Put { key: format!("lost-{i}").into_bytes(), value: b"y".to_vec() };
        if let Ok(Response::Written { .. }) = client.call(old_addr, &put).await {
            acknowledged.push(format!("lost-{i}"));
        }
    }
    assert!(!acknowledged.is_empty(), "the async leader acknowledged on its own copy");
    cluster.node(&old).kill();
    for id in &followers {
        cluster.node(id).signal("CONT");
    }
    let new_leader = wait_until!(ELECTION, leader_of(&cluster, &mut client).await.filter(|l| *l != old));
    assert!(new_leader.is_some(), "a follower took over");
    client.put(b"after", b"failover").await.unwrap();
    cluster.node(&old).start();
    let reported = wait_until!(Duration::from_secs(15), {
        match client.call(old_addr, &Request::Discarded).await {
            Ok(Response::Discarded(baton_node::frame::Json(writes))) if !writes.is_empty() => Some(writes),
            _ => None,
        }
    })
    .unwrap_or_else(|| panic!("nothing in discarded/\n{}", cluster.logs()));
    // Writes that reached a follower's socket before it froze survive; every other
    // acknowledged write must be reported. None may vanish silently.
    let keys: Vec<&str> = reported.iter().map(|w| w.key.as_str()).collect();
    let mut survived = 0;
    for key in &acknowledged {
        let readable = client.get(key.as_bytes(), ReadMode::Leader).await.unwrap().0.is_some();
        survived += usize::from(readable);
        assert!(readable || keys.contains(&key.as_str()), "{key} was lost silently: discarded/ has {keys:?}");
    }
    let status = client.status_of(old_addr).await.unwrap();
    assert!(status.discarded_entries >= (acknowledged.len() - survived) as u64);
    let lost = acknowledged.iter().find(|key| keys.contains(&key.as_str())).expect("at least one write was discarded");
    let read = client.call(old_addr, &Request::Get { key: lost.clone().into_bytes(), read: ReadMode::Any }).await;
    assert!(
        matches!(read, Ok(Response::Value { value: None, .. })),
        "the old leader still serves a discarded write: {read:?}"
    );
    // `baton discarded --json` pages through the same journal: one JSON line per write,
    // numbered, with the node's id; `--limit` bounds it.
    let cluster_list: Vec<String> = cluster.addrs().iter().map(ToString::to_string).collect();
    let discarded = |extra: &[&str]| {
        let output = std::process::Command::new(support::binaries().join("baton"))
            .args(["--cluster", &cluster_list.join(","), "--certs", &cluster.certs.display().to_string()])
            .args(["discarded", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let lines = String::from_utf8(output.stdout).unwrap();
        lines.lines().map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()).collect::<Vec<_>>()
    };
    let listed = discarded(&[]);
    let from_old: Vec<&serde_json::Value> = listed.iter().filter(|row| row["node"] == old.as_str()).collect();
    assert_eq!(from_old.len(), reported.len(), "{listed:?}");
    assert!(from_old.iter().any(|row| row["key"] == lost.as_str() && row["record"].as_u64() > Some(0)));
    let limited = discarded(&["--limit", "1"]);
    assert_eq!(limited.iter().filter(|row| row["node"] == old.as_str()).count(), 1);
    println!(
        "async failover: {} writes acknowledged by {old} alone; {survived} survived, {} reported in discarded/",
        acknowledged.len(),
        acknowledged.len() - survived
    );
}

/// Goal (issue 21): under systemd's Type=notify the node says READY=1 on NOTIFY_SOCKET
/// once it serves (storage recovered, socket bound), and STOPPING=1 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let mut cluster = Cluster::start(1, &[]);
    let node = cluster.node("n1");
    node.kill();
    let socket_path = cluster.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let log = std::fs::File::create(cluster.dir.path().join("notified-node.log")).unwrap();
    let mut child = std::process::Command::new(support::binaries().join("baton-node"))
        .args(&cluster.nodes[0].args)
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(log)
        .spawn()
        .unwrap();
    let mut message = [0u8; 256];
    let read = socket.recv(&mut message);
    let ready = read.as_ref().map(|bytes| String::from_utf8_lossy(&message[..*bytes]).into_owned());
    let mut client = cluster.client();
    let status = client.status_of(cluster.nodes[0].addr).await;
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let stopping = socket.recv(&mut message).map(|bytes| String::from_utf8_lossy(&message[..bytes]).into_owned());
    let exited = child.wait().unwrap();
    assert_eq!(ready.ok().as_deref().map(str::trim), Some("READY=1"), "no readiness on NOTIFY_SOCKET");
    assert!(status.is_ok(), "ready, but not serving: {status:?}");
    assert_eq!(stopping.ok().as_deref().map(str::trim), Some("STOPPING=1"));
    assert!(exited.success(), "{exited:?}");
}
