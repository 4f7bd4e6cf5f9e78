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
    // The log's bound is the configured one, or twice the last snapshot for a map larger
    // than half of it (see node/host/src/compaction.rs). It is where compaction starts, not a
    // wall: writes that outrun a snapshot being written grow the log past it for a
    // moment. Once they stop, the next compaction brings it back under.
    let bound = |s: &baton_node::status::NodeStatus| {
        max_log_bytes.max(s.snapshot_bytes * baton_host::compaction::LOG_BYTES_PER_SNAPSHOT_BYTE)
    };
    let compacted = wait_until!(ELECTION, {
        status_of(&mut client, leader_addr)
            .await
            .filter(|s| s.snapshot_index > 0 && s.snapshots_taken > 0 && s.wal_bytes <= bound(s))
    })
    .unwrap_or_else(|| panic!("the leader never compacted its log under its bound\n{}", cluster.logs()));
    println!(
        "leader: snapshot at {} ({} bytes), log {} bytes, bound {max_log_bytes}, or twice the snapshot",
        compacted.snapshot_index, compacted.snapshot_bytes, compacted.wal_bytes
    );
    assert!(compacted.wal_bytes <= bound(&compacted), "the log outgrew its bound: {compacted:?}");

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

/// Goal: `baton backup` downloads the leader's map as one checked file; `baton restore`
/// (or `baton-node --restore`) installs it into empty data directories (refusing a used
/// one or a damaged file); a new
/// cluster started from them holds exactly the backed-up data, at the backed-up position,
/// and takes new writes. A client (not operator) certificate cannot take a backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_into_a_new_cluster() {
    let source = Cluster::start(3, &["--max-log-bytes", "262144"]);
    let mut client = source.client();
    let first_leader = source.wait_for_leader(&mut client, ELECTION).await;
    // Enough to compact the log at least once: the backup is not just the log.
    for i in 0..120 {
        client.put(format!("k{i}").as_bytes(), &value_of(i)).await.unwrap();
    }
    // A later term than a new cluster's first: the restored cluster must elect above it.
    let other = source.nodes.iter().find(|n| n.id != first_leader).unwrap().id.clone();
    let response = client.request(Request::Switchover { to: Some(other.clone()), dry_run: false }).await.unwrap();
    assert!(matches!(response, Response::Switchover { started: true, .. }), "{response:?}");
    let moved = wait_until!(ELECTION, {
        let statuses = source.statuses(&mut client).await;
        statuses.iter().any(|s| s.role == "leader" && s.id == other).then_some(())
    });
    assert!(moved.is_some(), "switchover to {other} did not happen");
    client.delete(b"k7").await.unwrap();
    client.put(b"k8", b"overwritten").await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("cluster.backup");
    let baton =
        |args: &[&str]| std::process::Command::new(support::binaries().join("baton")).args(args).output().unwrap();
    let cluster_arg = source.addrs().iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let certs = source.certs.display().to_string();
    let output = baton(&[
        "--cluster",
        &cluster_arg,
        "--certs",
        &certs,
        "backup",
        "--out",
        &file.display().to_string(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["keys"], 119, "{summary}");
    let backed_up_index = summary["index"].as_u64().unwrap();
    let backed_up_term = summary["term"].as_u64().unwrap();
    assert!(backed_up_term >= 2, "{summary}");
    client.put(b"after-the-backup", b"x").await.unwrap();

    let mut not_operator = baton_node::client::Client::new(
        source.addrs(),
        &source.certs,
        &baton_node::certs::Identity::Client("client".into()),
    )
    .unwrap();
    let refused = not_operator.backup(&scratch.path().join("refused")).await.unwrap_err().to_string();
    assert!(refused.contains("operators only"), "{refused}");

    // A damaged copy is refused by restore.
    let mut damaged = std::fs::read(&file).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    let damaged_file = scratch.path().join("damaged.backup");
    std::fs::write(&damaged_file, damaged).unwrap();
    let output = baton(&["restore", "--from", &damaged_file.display().to_string(), "--data-dir", "/nonexistent/x"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("damaged snapshot"), "{stderr}");

    // A new cluster, once running (its data directories hold state): stop it, see
    // restore refuse a used directory, empty them, restore, start.
    let mut target = Cluster::start(3, &[]);
    let mut restored = target.client();
    target.wait_for_leader(&mut restored, ELECTION).await;
    let file_arg = file.display().to_string();
    for (position, node) in target.nodes.iter_mut().enumerate() {
        node.kill();
        let data_dir = node.data_dir.display().to_string();
        // The first node through the daemon itself (on a device without `baton`).
        let restore = || match position {
            0 => std::process::Command::new(support::binaries().join("baton-node"))
                .args(["--restore", &file_arg, "--data-dir", &data_dir])
                .output()
                .unwrap(),
            _ => baton(&["restore", "--from", &file_arg, "--data-dir", &data_dir]),
        };
        let output = restore();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains("already holds a node's state"), "{stderr}");
        std::fs::remove_dir_all(&node.data_dir).unwrap();
        let output = restore();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("as of index {backed_up_index}")));
    }
    for node in &mut target.nodes {
        node.start();
    }
    target.wait_for_leader(&mut restored, ELECTION).await;
    for i in 0..120 {
        let (value, _) = restored.get(format!("k{i}").as_bytes(), ReadMode::Leader).await.unwrap();
        let expected = match i {
            7 => None,
            8 => Some(b"overwritten".to_vec()),
            _ => Some(value_of(i)),
        };
        assert_eq!(value, expected, "k{i}");
    }
    assert_eq!(restored.get(b"after-the-backup", ReadMode::Leader).await.unwrap().0, None);
    let (term, index) = restored.put(b"new", b"write").await.unwrap();
    assert!(index > backed_up_index, "new writes continue after the backup's position");
    assert!(term > backed_up_term, "the restored cluster leads in term {term}, above the backup's {backed_up_term}");
    for addr in target.addrs() {
        let applied = wait_until!(ELECTION, status_of(&mut restored, addr).await.filter(|s| s.applied_index >= index));
        assert!(applied.is_some(), "{addr} did not apply the new write");
    }
    // The restored cluster is a new one: a cluster id of its own, chosen by its leader.
    let cluster_id = |response: Response| match response {
        Response::Members(baton_node::frame::Json(view)) => view.record.cluster_id,
        other => panic!("{other:?}"),
    };
    let old_id = cluster_id(client.request(Request::Members).await.unwrap());
    let new_id = cluster_id(restored.request(Request::Members).await.unwrap());
    assert!(old_id != 0 && new_id != 0 && old_id != new_id, "cluster ids {old_id:x} and {new_id:x}");
}

/// Goal (issue 17): a session write resent long after it took effect is answered with its
/// first position and changes nothing: at a new leader after `kill -9` of the old one;
/// at a node that received the sessions in a snapshot (the old leader, restarted after the
/// log it missed was compacted, then made leader); and after every node restarted from
/// its snapshot and log. Meanwhile another client's later write of the key must stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_write_is_answered_once_after_failover_snapshot_install_and_restart() {
    let max_log_bytes: u64 = 256 * 1024;
    let mut cluster = Cluster::start(3, &["--max-log-bytes", &max_log_bytes.to_string()]);
    let mut client = cluster.client();
    let first_leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let resend = Request::Session {
        id: [42; 16],
        seq: 1,
        acked_seq: 0,
        write: Box::new(Request::Put { key: b"k".to_vec(), value: b"A".to_vec() }),
    };
    let first = client.request(resend.clone()).await.unwrap();
    assert!(matches!(first, Response::Written { .. }), "{first:?}");
    client.put(b"k", b"B").await.unwrap();
    let check = |client: &mut baton_node::client::Client, stage: &'static str| {
        let (resend, first) = (resend.clone(), first.clone());
        let mut client = client.sharing_connections();
        async move {
            let answer = client.request(resend).await.unwrap();
            assert_eq!(answer, first, "{stage}: the resend was not answered with its first position");
            let (value, _) = client.get(b"k", ReadMode::Leader).await.unwrap();
            assert_eq!(value.as_deref(), Some(&b"B"[..]), "{stage}: the resend undid a later write");
        }
    };

    cluster.node(&first_leader).kill();
    let second_leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    assert_ne!(second_leader, first_leader);
    check(&mut client, "after a failover").await;

    // Enough log that the leader compacts past everything the killed node holds.
    for i in 0..(2 * max_log_bytes as usize / VALUE_BYTES) {
        client.put(format!("fill-{i}").as_bytes(), &value_of(i)).await.unwrap();
    }
    let leader_addr = cluster.node(&second_leader).addr;
    let compacted = wait_until!(ELECTION, {
        status_of(&mut client, leader_addr).await.filter(|s| s.snapshots_taken > 0 && s.snapshot_index > 10)
    });
    assert!(compacted.is_some(), "the leader never compacted\n{}", cluster.logs());
    cluster.node(&first_leader).start();
    let first_addr = cluster.node(&first_leader).addr;
    let installed = wait_until!(Duration::from_secs(30), {
        status_of(&mut client, first_addr).await.filter(|s| s.snapshots_installed > 0)
    });
    assert!(installed.is_some(), "{first_leader} did not receive a snapshot\n{}", cluster.logs());
    let handed_over = wait_until!(Duration::from_secs(30), {
        let _ = client.request(Request::Switchover { to: Some(first_leader.clone()), dry_run: false }).await;
        status_of(&mut client, first_addr).await.filter(|s| s.role == "leader")
    });
    assert!(handed_over.is_some(), "{first_leader} did not take over\n{}", cluster.logs());
    check(&mut client, "at a leader that got the sessions in a snapshot").await;
    let status = status_of(&mut client, first_addr).await.unwrap();
    assert!(status.duplicate_writes >= 1 && status.sessions >= 2, "{status:?}");

    for node in &mut cluster.nodes {
        node.kill();
    }
    for node in &mut cluster.nodes {
        node.start();
    }
    let mut client = cluster.client();
    cluster.wait_for_leader(&mut client, ELECTION).await;
    check(&mut client, "after every node restarted").await;
}
