//! Forwarding against real nodes: a client that talks only to one follower writes
//! through it while the leader is killed with -9 and while leadership moves by
//! switchover; no acknowledged write is lost and none is applied twice (checked in the
//! change stream of a watch from index 1, which shows every applied change).

mod support;

use baton_node::certs::Identity;
use baton_node::client::Client;
use baton_node::frame::{ReadMode, Request, Response};
use std::collections::BTreeMap;
use std::time::Duration;
use support::Cluster;

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// Writes `f/<i>` for i in `range` through `client`, returning each acknowledged key.
async fn write_range(client: &mut Client, range: std::ops::Range<u64>) -> Vec<(String, u64)> {
    let mut acknowledged = Vec::new();
    for i in range {
        let key = format!("f/{i}");
        if let Ok((_, index)) = client.put(key.as_bytes(), b"through a follower").await {
            acknowledged.push((key, index));
        }
    }
    acknowledged
}

/// How many client requests the node at `addr` forwarded to the leader.
async fn forwarded_by(client: &mut Client, addr: std::net::SocketAddr) -> u64 {
    client.status_of(addr).await.map(|status| status.requests_forwarded).unwrap_or(0)
}

/// Goal: every write a follower-only client had acknowledged survives a kill -9 of the
/// leader and a switchover, each applied exactly once, and the follower did forward
/// (its count moved), including a `--read leader` read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_follower_survive_a_leader_kill_and_a_switchover_applied_once() {
    let mut cluster = Cluster::start(3, &[]);
    let mut control = cluster.client();
    let leader = cluster.wait_for_leader(&mut control, LEADER_TIMEOUT).await;
    let follower = cluster.nodes.iter().find(|node| node.id != leader).unwrap().id.clone();
    let follower_addr = cluster.node(&follower).addr;
    // The application's client knows only its local node.
    let mut local = Client::new(vec![follower_addr], &cluster.certs, &Identity::Client("client".into()))
        .unwrap()
        .forwarding_through(follower_addr);

    let mut acknowledged = write_range(&mut local, 0..200).await;
    assert!(forwarded_by(&mut control, follower_addr).await >= 200, "the follower forwarded the writes");
    let (value, _) = local.get(b"f/7", ReadMode::Leader).await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"through a follower"[..]), "a leader read through the follower");

    cluster.node(&leader).kill();
    acknowledged.extend(write_range(&mut local, 200..400).await);
    cluster.node(&leader).start();
    let now_leader = cluster.wait_for_leader(&mut control, LEADER_TIMEOUT).await;
    // Leadership moves again, to a node other than the follower if it leads now.
    let target = cluster.nodes.iter().find(|node| node.id != now_leader && node.id != follower).unwrap().id.clone();
    let writes = tokio::spawn(async move {
        let acknowledged = write_range(&mut local, 400..700).await;
        (local, acknowledged)
    });
    // The restarted node takes leadership once it is caught up.
    let started = wait_until!(Duration::from_secs(15), {
        let request = Request::Switchover { to: Some(target.clone()), dry_run: false };
        let response = control.request(request).await.ok();
        response.filter(|response| matches!(response, Response::Switchover { started: true, .. }))
    });
    assert!(started.is_some(), "switchover to {target}; logs in {}", cluster.dir.path().display());
    let (_, later) = writes.await.unwrap();
    acknowledged.extend(later);
    assert!(acknowledged.len() >= 650, "writes went on through the follower: {} acknowledged", acknowledged.len());

    // Every applied change, from the start: each acknowledged key once, where acknowledged.
    let last_index = acknowledged.iter().map(|(_, index)| *index).max().unwrap();
    let mut watch = control.watch(b"f/", 1);
    let mut applied: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(30), watch.next()).await.unwrap().unwrap();
        for change in batch.changes {
            applied.entry(change.key).or_default().push(change.index);
        }
        if batch.through_index >= last_index {
            break;
        }
    }
    assert!(applied.values().all(|indexes| indexes.len() == 1), "no write applied twice");
    for (key, index) in &acknowledged {
        assert_eq!(applied.get(key.as_bytes()), Some(&vec![*index]), "{key} applied once, at {index}");
    }
}
