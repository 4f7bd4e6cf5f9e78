//! Snapshots and log compaction against a real 3-node cluster: the log stays under
//! `--max-log-bytes`, a node with an empty data directory bootstraps from the leader's
//! snapshot and then the log, and a compacted node restarts from its own snapshot.
//!
//! `BATON_SNAPSHOT_MB` scales the data written (default 2 MB); the bootstrap time is
//! printed, so `BATON_SNAPSHOT_MB=100 cargo test --release --test snapshots -- --nocapture`
//! measures a 100 MB bootstrap.

mod support;

use baton_node::frame::{ReadMode, Request, Response};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::Cluster;

const ELECTION: Duration = Duration::from_secs(10);
const VALUE_BYTES: usize = 8 * 1024;
const WRITERS: usize = 8;

fn value_of(i: usize) -> Vec<u8> {
    let mut value = format!("value-{i}-").into_bytes();
    value.resize(VALUE_BYTES, b'a' + (i % 26) as u8);
    value
}

async fn status_of(
    client: &mut baton_node::client::Client,
    addr: SocketAddr,
) -> Option<baton_node::status::NodeStatus> {
    client.status_of(addr).await.ok()
}

/// Goal: after compaction, a new node with an empty directory receives the snapshot in
/// chunks, then the log after it, ends equal to the leader, and restarts from its own
/// snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_node_bootstraps_from_snapshot_then_log() {
    let megabytes: usize = std::env::var("BATON_SNAPSHOT_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let max_log_bytes = (megabytes as u64 * 1024 * 1024 / 4).max(256 * 1024);
    let max_log = max_log_bytes.to_string();
    let mut cluster = Cluster::start(3, &["--max-log-bytes", &max_log]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let newcomer = cluster.nodes.iter().find(|n| n.id != leader).unwrap().id.clone();
    let (newcomer_addr, leader_addr) = (cluster.node(&newcomer).addr, cluster.node(&leader).addr);
    cluster.node(&newcomer).kill();
    std::fs::remove_dir_all(&cluster.node(&newcomer).data_dir).unwrap();

    let keys = megabytes * 1024 * 1024 / VALUE_BYTES;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut client = cluster.client();
        writers.push(tokio::spawn(async move {
            for i in (w..keys).step_by(WRITERS) {
                client.put(format!("k{i}").as_bytes(), &value_of(i)).await.expect("write");
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let compacted = wait_until!(ELECTION, {
        status_of(&mut client, leader_addr).await.filter(|s| s.snapshot_index > 0 && s.snapshots_taken > 0)
    })
    .unwrap_or_else(|| panic!("the leader never compacted\n{}", cluster.logs()));
    println!(
        "leader: snapshot at {} ({} bytes), log {} bytes, bound {max_log_bytes}",
        compacted.snapshot_index, compacted.snapshot_bytes, compacted.wal_bytes
    );
    assert!(compacted.wal_bytes <= max_log_bytes, "the log outgrew its bound: {compacted:?}");

    let started = Instant::now();
    cluster.node(&newcomer).start();
    let mut saw_snapshot_state = false;
    let caught_up = wait_until!(Duration::from_secs(120), {
        if let Some(leader_status) = status_of(&mut client, leader_addr).await {
            saw_snapshot_state |= leader_status.followers.iter().any(|f| f.id == newcomer && f.state == "snapshot");
        }
        status_of(&mut client, newcomer_addr)
            .await
            .filter(|s| s.snapshots_installed > 0 && s.applied_index >= compacted.commit_index)
    })
    .unwrap_or_else(|| panic!("{newcomer} never caught up\n{}", cluster.logs()));
    let elapsed = started.elapsed();
    println!(
        "{newcomer} bootstrapped {megabytes} MB ({keys} keys) in {:.2} s: snapshot at {}, then {} entries from the log; \
         the leader showed it in the snapshot state: {saw_snapshot_state}",
        elapsed.as_secs_f64(),
        caught_up.snapshot_index,
        caught_up.entries_received
    );
    assert!(caught_up.snapshot_index > 0);
    assert!(
        caught_up.entries_received < keys as u64,
        "it replayed the whole log instead of the snapshot: {caught_up:?}"
    );

    // The log after the snapshot keeps flowing to it.
    client.put(b"after-snapshot", b"yes").await.unwrap();
    let index = status_of(&mut client, leader_addr).await.unwrap().commit_index;
    let read = |key: Vec<u8>| Request::Get { key, read: ReadMode::After(index) };
    for i in (0..keys).step_by((keys / 50).max(1)).chain([keys - 1]) {
        let response = client.call(newcomer_addr, &read(format!("k{i}").into_bytes())).await.unwrap();
        assert!(matches!(&response, Response::Value { value: Some(v), .. } if *v == value_of(i)), "k{i}: {response:?}");
    }
    let response = client.call(newcomer_addr, &read(b"after-snapshot".to_vec())).await.unwrap();
    assert!(matches!(&response, Response::Value { value: Some(v), .. } if v == b"yes"), "{response:?}");

    // Killed, it restarts from its own snapshot and log, with nothing missing.
    cluster.node(&newcomer).kill();
    cluster.node(&newcomer).start();
    let recovered =
        wait_until!(ELECTION, { status_of(&mut client, newcomer_addr).await.filter(|s| s.applied_index >= index) });
    assert!(recovered.is_some(), "{newcomer} did not recover\n{}", cluster.logs());
    let response = client.call(newcomer_addr, &read(format!("k{}", keys / 2).into_bytes())).await.unwrap();
    assert!(matches!(&response, Response::Value { value: Some(v), .. } if *v == value_of(keys / 2)), "{response:?}");
}
