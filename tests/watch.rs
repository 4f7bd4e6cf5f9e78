//! Watches against real nodes: every acknowledged write under a prefix seen once and in
//! order across a kill -9 of the watched leader, its restart and a switchover; a watch
//! from a compacted index told so, and recovered through a scan; a watcher that never
//! reads cut off once the log moves past it, while writes go on.

mod support;

use baton_node::certs::Identity;
use baton_node::client::Client;
use baton_node::frame::{Frame, Request, Response, WatchChange, WatchEnd};
use baton_node::watching::WatchError;
use std::collections::BTreeMap;
use std::time::Duration;
use support::Cluster;

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
const WATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A client that tries `first` before the other nodes (a watch opens there).
fn client_preferring(cluster: &Cluster, first: std::net::SocketAddr) -> Client {
    let mut addrs = vec![first];
    addrs.extend(cluster.addrs().into_iter().filter(|addr| *addr != first));
    Client::new(addrs, &cluster.certs, &Identity::Operator("operator".into())).unwrap()
}

/// Writes `w/<i>` for i in `range`, returning each acknowledged write's key and index.
async fn write_range(client: &mut Client, range: std::ops::Range<u64>) -> Vec<(Vec<u8>, u64)> {
    let mut acknowledged = Vec::new();
    for i in range {
        let key = format!("w/{i}").into_bytes();
        if let Ok((_, index)) = client.put(&key, format!("v{i}").as_bytes()).await {
            acknowledged.push((key, index));
        }
    }
    acknowledged
}

/// Goal: a consumer watching from index 1 sees every acknowledged write under its
/// prefix exactly once, in log order, with no change it should not see, although the
/// node it watches is the leader and is killed with -9, comes back, and leadership then
/// moves by switchover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_every_acknowledged_write_once_across_kill_restart_and_switchover() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, LEADER_TIMEOUT).await;
    client.put(b"outside/1", b"not watched").await.unwrap();
    let leader_addr = cluster.node(&leader).addr;
    let mut watch = client_preferring(&cluster, leader_addr).watch(b"w/", 1);
    let (stop_at, mut stop) = tokio::sync::watch::channel(u64::MAX);
    let watcher = tokio::spawn(async move {
        let (mut seen, mut nodes) = (Vec::<WatchChange>::new(), Vec::new());
        loop {
            let batch = watch.next().await.expect("the watch goes on through failover");
            if nodes.last() != Some(&batch.node) {
                nodes.push(batch.node);
            }
            seen.extend(batch.changes);
            if batch.through_index >= *stop.borrow_and_update() {
                return (seen, nodes);
            }
        }
    });

    let mut acknowledged = write_range(&mut client, 0..150).await;
    cluster.node(&leader).kill(); // kill -9 of the leader the watch is on.
    acknowledged.extend(write_range(&mut client, 150..300).await);
    cluster.node(&leader).start();
    acknowledged.extend(write_range(&mut client, 300..400).await);
    let response = client.request(Request::Switchover { to: None, dry_run: false }).await.unwrap();
    assert!(matches!(response, Response::Switchover { started: true, .. }), "{response:?}");
    acknowledged.extend(write_range(&mut client, 400..550).await);
    let last_index = acknowledged.iter().map(|(_, index)| *index).max().unwrap();
    stop_at.send(last_index).unwrap();
    let (seen, nodes) = tokio::time::timeout(WATCH_TIMEOUT, watcher)
        .await
        .unwrap_or_else(|_| panic!("the watch did not reach {last_index}; logs in {}", cluster.dir.path().display()))
        .unwrap();

    assert!(nodes.len() >= 2, "the watch moved off the killed node: {nodes:?}");
    assert!(seen.windows(2).all(|pair| pair[0].index < pair[1].index), "in log order, each index once");
    assert!(seen.iter().all(|change| change.key.starts_with(b"w/")), "only the prefix");
    let by_key: BTreeMap<&[u8], Vec<&WatchChange>> = seen.iter().fold(BTreeMap::new(), |mut keys, change| {
        keys.entry(change.key.as_slice()).or_default().push(change);
        keys
    });
    assert!(by_key.values().all(|changes| changes.len() == 1), "every key was written once: seen once");
    assert!(acknowledged.len() >= 500, "most writes acknowledged: {}", acknowledged.len());
    for (key, index) in &acknowledged {
        let change = by_key.get(key.as_slice()).unwrap_or_else(|| panic!("{} not seen", String::from_utf8_lossy(key)));
        assert_eq!(change[0].index, *index, "seen at the index it was acknowledged at");
        let number = String::from_utf8_lossy(&key[2..]).into_owned();
        assert_eq!(change[0].value.as_deref(), Some(format!("v{number}").as_bytes()));
    }
}

/// Goal: a watch from an index the node has compacted is ended with the explicit reason
/// (never started later in silence); a scan gives the keys as of an index M, and a watch
/// from M + 1 then sees exactly the writes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_index_is_told_so_and_recovers_through_a_scan() {
    let cluster = Cluster::start(3, &["--max-log-bytes", "262144"]);
    let mut client = cluster.client();
    cluster.wait_for_leader(&mut client, LEADER_TIMEOUT).await;
    let value = vec![b'v'; 1_000];
    let mut compacted_at = None;
    for i in 0..4_000 {
        let (_, index) = client.put(format!("c/{i}").as_bytes(), &value).await.unwrap();
        if i % 100 == 99 {
            let statuses = cluster.statuses(&mut client).await;
            if statuses.len() == 3 && statuses.iter().all(|s| s.snapshot_index > 500) {
                compacted_at = Some(index);
                break;
            }
        }
    }
    let last = compacted_at.unwrap_or_else(|| panic!("every node compacted; logs in {}", cluster.dir.path().display()));
    let applied = wait_until!(Duration::from_secs(10), {
        let statuses = cluster.statuses(&mut client).await;
        (statuses.len() == 3 && statuses.iter().all(|s| s.applied_index >= last)).then_some(())
    });
    assert!(applied.is_some(), "every node applied the writes");

    let mut watch = client.watch(b"c/", 1);
    match watch.next().await {
        Err(WatchError::Ended(WatchEnd::Compacted { next_index: 1, oldest_index })) => assert!(oldest_index > 1),
        other => panic!("not told it was compacted: {other:?}"),
    }
    let scan = client.scan(b"c/").await.unwrap();
    assert!(scan.pairs.len() > 100 && scan.pairs.iter().all(|(key, v)| key.starts_with(b"c/") && *v == value));
    let mut watch = client.watch(b"c/", scan.index + 1);
    let (_, later) = client.put(b"c/later", b"after the scan").await.unwrap();
    let mut seen = Vec::new();
    while seen.is_empty() {
        let batch = tokio::time::timeout(WATCH_TIMEOUT, watch.next()).await.unwrap().unwrap();
        seen.extend(batch.changes);
    }
    assert_eq!(seen.len(), 1, "nothing between the scan and the write after it: {seen:?}");
    assert_eq!((seen[0].index, seen[0].key.as_slice()), (later, &b"c/later"[..]));
}

/// Goal: a watcher that opens a watch and never reads does not hold the node back:
/// writes go on being acknowledged, and once the log it needs is compacted the node
/// ends the watch and frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_is_cut_off_and_writes_go_on() {
    let mut cluster = Cluster::start(3, &["--max-log-bytes", "262144"]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, LEADER_TIMEOUT).await;
    let leader_addr = cluster.node(&leader).addr;
    // A raw stream: the watch is asked for and nothing is ever read from it.
    let mut raw = client_preferring(&cluster, leader_addr);
    raw.connect_all().await;
    let (mut send, _receive) = raw.open_stream(leader_addr).await.unwrap();
    let request = Request::Watch { prefix: Vec::new(), from_index: 1 };
    baton_node::frame::write_frame(&mut send, &Frame::Request { request }).await.unwrap();
    let watching = wait_until!(Duration::from_secs(5), {
        let status = client.status_of(leader_addr).await.ok();
        status.filter(|s| s.watchers == 1)
    });
    assert!(watching.is_some(), "the leader serves the watch");

    let value = vec![b'v'; 4_000];
    let mut ended = false;
    for i in 0..3_000 {
        client.put(format!("s/{i}").as_bytes(), &value).await.expect("writes go on");
        if i % 50 == 49 {
            let status = client.status_of(leader_addr).await.unwrap();
            if status.watchers == 0 && status.watches_ended == 1 {
                ended = true;
                break;
            }
        }
    }
    assert!(ended, "the stalled watch was ended; logs in {}", cluster.dir.path().display());
}
