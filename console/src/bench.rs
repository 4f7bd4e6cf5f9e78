//! `baton bench`: a benchmark command, not a test. C clients write for S seconds and it
//! prints throughput, p50/p99/p999 acknowledgement latency and errors, beside the
//! machine's own floor (fsync of a small append, loopback UDP round trip, and the
//! speed of one core, so a slower host can be told from a slower Baton). With
//! `--scenario failover|switchover` it kills the leader (kill -9) or switches over a
//! third of the way in and prints the write unavailability window: the longest time
//! with no write acknowledged. With `--scenario bootstrap` it then fills the map until
//! the leader's snapshot holds `--data-mb`, empties a follower and times its bootstrap
//! from that snapshot. Every run prints what the writes cost the nodes (bytes written
//! to storage, fsyncs and CPU per acknowledged write, memory per key).
//!
//! Without `--cluster` it starts its own local 3-node cluster (so it can kill nodes).

use crate::local::LocalCluster;
use baton_node::certs::Identity;
use baton_node::client::Client;
use baton_node::frame::{Request, Response};
use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Options {
    pub clients: usize,
    /// QUIC connections the clients share (each client has its own when equal).
    pub connections: usize,
    pub duration: Duration,
    pub value_bytes: usize,
    pub scenario: Option<String>,
    pub mode: String,
    /// The local cluster's timers.
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub json: bool,
    /// `--scenario bootstrap`: how much data the snapshot a new node receives holds.
    pub data_mb: u64,
    /// `--profile`: the local nodes held to a small device's size.
    pub profile: Option<crate::confine::DeviceProfile>,
    /// `--via-follower`: every client sends to one follower, which forwards to the leader.
    pub via_follower: bool,
    /// `--stalled-watchers N`: watches of every key, opened at the leader and never read.
    pub stalled_watchers: usize,
    /// `--skip-floor`: no floor measurement (its figures are reported as unknown).
    pub skip_floor: bool,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub mode: String,
    /// With `--via-follower`: the follower every write went through (forwarded).
    pub via_follower: Option<String>,
    /// The local cluster's timers (None against a running cluster).
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_ms: Option<u64>,
    pub clients: usize,
    pub connections: usize,
    pub value_bytes: usize,
    pub seconds: f64,
    pub writes: u64,
    pub writes_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    pub scenario: Option<String>,
    /// Longest time with no acknowledged write, over the whole run.
    pub longest_gap_ms: f64,
    /// When the longest gap began, in seconds into the run.
    pub longest_gap_at_s: f64,
    /// With a scenario: from the old leader's last acknowledged write to the new
    /// leader's first (the write unavailability window).
    pub scenario_gap_ms: Option<f64>,
    /// With `--stalled-watchers`: how many were opened, and how many of them the leader
    /// ended (their next entry compacted) during the run.
    pub stalled_watchers: usize,
    pub stalled_watchers_ended: u64,
    pub floor_fsync_p50_ms: f64,
    pub floor_fsync_p99_ms: f64,
    /// The slowest fsync with three writers at once (see `fsync_floor_concurrent_max`).
    pub floor_fsync_concurrent_max_ms: f64,
    pub floor_loopback_rtt_p50_ms: f64,
    /// One core's speed: see `cpu_floor`.
    pub floor_cpu_sort_ms: f64,
    /// What the acknowledged writes cost the nodes, as their processes counted it.
    pub cost: Option<Cost>,
    /// `--scenario bootstrap`: a follower emptied and restarted, until it has installed
    /// the leader's snapshot and applied through it.
    pub bootstrap: Option<Bootstrap>,
    /// `--profile`: its name and the limits as applied.
    pub profile: Option<String>,
    pub confinement: Option<String>,
}

#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct Bootstrap {
    pub node: String,
    pub snapshot_bytes: u64,
    pub snapshot_keys: u64,
    /// From the emptied node's restart to its having applied the snapshot's last entry.
    pub seconds: f64,
    pub megabytes_per_second: f64,
    /// The leader once filled: its keys, their key and value bytes, its resident memory.
    pub leader_keys: u64,
    pub leader_data_bytes: u64,
    pub leader_rss_bytes: u64,
}

/// Writers filling the map before a bootstrap (with `--value-bytes` values: many small
/// keys cost a snapshot's receiver more than a few large ones).
const BOOTSTRAP_WRITERS: usize = 64;
/// How long filling the map and the bootstrap itself may each take.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(180);

/// Fills the map until the leader's snapshot holds `data_mb` MiB, then empties a
/// follower's data directory and restarts it: it receives the snapshot from the leader,
/// installs it and applies through it. Returns what that took.
async fn bootstrap(
    local: &LocalCluster,
    control: &mut Client,
    addrs: &[SocketAddr],
    leader: SocketAddr,
    data_mb: u64,
    value_bytes: usize,
    json: bool,
) -> Result<Bootstrap, String> {
    let target_bytes = data_mb << 20;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..BOOTSTRAP_WRITERS {
        let (mut client, stop) = (control.on_same_socket(), stop.clone());
        writers.push(tokio::spawn(async move {
            let value = vec![b'b'; value_bytes];
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.put(format!("fill-{writer}-{i}").as_bytes(), &value).await;
                i += 1;
            }
        }));
    }
    if !json {
        eprintln!("filling the map until the leader's snapshot holds {data_mb} MiB…");
    }
    let started = Instant::now();
    let mut reported = Instant::now();
    let snapshot = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(status) = control.status_of(leader).await {
            if status.snapshot_bytes >= target_bytes {
                break status;
            }
            if !json && reported.elapsed() > Duration::from_secs(5) {
                reported = Instant::now();
                eprintln!(
                    "  {} keys, {:.1} MiB of data, snapshot {:.1} MiB, log {:.1} MiB",
                    status.keys,
                    status.data_bytes as f64 / (1024.0 * 1024.0),
                    status.snapshot_bytes as f64 / (1024.0 * 1024.0),
                    status.wal_bytes as f64 / (1024.0 * 1024.0)
                );
            }
        }
        if started.elapsed() > BOOTSTRAP_TIMEOUT {
            return Err(format!("the leader's snapshot did not reach {data_mb} MiB within {BOOTSTRAP_TIMEOUT:?}"));
        }
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        let _ = writer.await;
    }
    let follower = *addrs.iter().find(|addr| **addr != leader).ok_or("no follower")?;
    let id = local.id_at(follower).ok_or("the follower is not a local node")?;
    let filled = control.status_of(leader).await.unwrap_or_else(|_| snapshot.clone());
    let keys = filled.keys;
    local.kill(&id)?;
    local.wipe(&id)?;
    if !json {
        eprintln!(
            "{id} emptied and restarted: it receives a snapshot of {:.1} MiB ({keys} keys) at index {}…",
            snapshot.snapshot_bytes as f64 / (1024.0 * 1024.0),
            snapshot.snapshot_index
        );
    }
    let restarted = Instant::now();
    local.restart(&id)?;
    loop {
        if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(1), control.status_of(follower)).await {
            if status.snapshots_installed >= 1 && status.applied_index >= snapshot.snapshot_index {
                break;
            }
        }
        if restarted.elapsed() > BOOTSTRAP_TIMEOUT {
            return Err(format!("{id} did not bootstrap within {BOOTSTRAP_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = restarted.elapsed().as_secs_f64();
    Ok(Bootstrap {
        node: id,
        snapshot_bytes: snapshot.snapshot_bytes,
        snapshot_keys: keys,
        seconds,
        megabytes_per_second: snapshot.snapshot_bytes as f64 / 1e6 / seconds,
        leader_keys: filled.keys,
        leader_data_bytes: filled.data_bytes,
        leader_rss_bytes: filled.cost.rss_bytes.unwrap_or(0),
    })
}

/// The nodes' costs over the run, per acknowledged write, summed over the nodes, with
/// each node's share. From the counters each node reports in its status (storage bytes
/// written, fsyncs, CPU time) before the clock starts and after the last write; a node
/// that was not reached both times (killed, restarted) is left out of the sums.
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct Cost {
    pub write_bytes_per_write: f64,
    pub fsyncs_per_write: f64,
    pub cpu_us_per_write: f64,
    /// Largest resident memory of a node after the run.
    pub rss_bytes_max: u64,
    /// Resident memory a node gained over the run per key it gained (the largest of the
    /// nodes'); `None` when no node gained keys.
    pub rss_growth_bytes_per_key: Option<f64>,
    /// Bytes of key and value per key in the map (what the memory holds).
    pub data_bytes_per_key: Option<f64>,
    pub nodes: Vec<NodeCost>,
}

#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct NodeCost {
    pub id: String,
    pub write_bytes_per_write: f64,
    pub fsyncs_per_write: f64,
    pub cpu_us_per_write: f64,
    /// What the bytes written were for, per write (as the node's storage counts them).
    pub written_per_write: WrittenPerWrite,
    pub rss_bytes: u64,
    pub keys: u64,
    pub data_bytes: u64,
    pub rss_growth_bytes_per_key: Option<f64>,
}

/// A node's storage writes per acknowledged write, by what they were for.
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct WrittenPerWrite {
    pub log_records: f64,
    pub log_zeros: f64,
    pub snapshots: f64,
    pub other: f64,
}

/// Each node's status, by address, that answered.
async fn node_statuses(
    control: &mut Client,
    addrs: &[SocketAddr],
) -> Vec<(SocketAddr, baton_node::status::NodeStatus)> {
    let mut statuses = Vec::new();
    for addr in addrs {
        if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(2), control.status_of(*addr)).await {
            statuses.push((*addr, status));
        }
    }
    statuses
}

/// The cost per write of `writes` acknowledged writes between two sets of statuses.
pub fn cost_between(
    before: &[(SocketAddr, baton_node::status::NodeStatus)],
    after: &[(SocketAddr, baton_node::status::NodeStatus)],
    writes: u64,
) -> Option<Cost> {
    let per_write = |value: u64| value as f64 / writes.max(1) as f64;
    let nodes: Vec<NodeCost> = after
        .iter()
        .filter_map(|(addr, later)| {
            let (_, earlier) = before.iter().find(|(a, earlier)| a == addr && earlier.id == later.id)?;
            let (early, late) = (&earlier.cost, &later.cost);
            let write_bytes = late.write_bytes?.checked_sub(early.write_bytes?)?;
            let cpu_us = late.cpu_us?.checked_sub(early.cpu_us?)?;
            let fsyncs = late.fsyncs.checked_sub(early.fsyncs)?;
            let keys_gained = later.keys.saturating_sub(earlier.keys);
            let rss = late.rss_bytes.unwrap_or(0);
            let (w0, w1) = (early.written, late.written);
            let written_per_write = WrittenPerWrite {
                log_records: per_write(w1.log_records.saturating_sub(w0.log_records)),
                log_zeros: per_write(w1.log_zeros.saturating_sub(w0.log_zeros)),
                snapshots: per_write(w1.snapshots.saturating_sub(w0.snapshots)),
                other: per_write(w1.other.saturating_sub(w0.other)),
            };
            Some(NodeCost {
                id: later.id.clone(),
                write_bytes_per_write: per_write(write_bytes),
                fsyncs_per_write: per_write(fsyncs),
                cpu_us_per_write: per_write(cpu_us),
                written_per_write,
                rss_bytes: rss,
                keys: later.keys,
                data_bytes: later.data_bytes,
                rss_growth_bytes_per_key: (keys_gained > 0)
                    .then(|| rss.saturating_sub(early.rss_bytes.unwrap_or(0)) as f64 / keys_gained as f64),
            })
        })
        .collect();
    if nodes.is_empty() {
        return None;
    }
    let largest = |values: Vec<f64>| values.into_iter().reduce(f64::max);
    Some(Cost {
        write_bytes_per_write: nodes.iter().map(|n| n.write_bytes_per_write).sum(),
        fsyncs_per_write: nodes.iter().map(|n| n.fsyncs_per_write).sum(),
        cpu_us_per_write: nodes.iter().map(|n| n.cpu_us_per_write).sum(),
        rss_bytes_max: nodes.iter().map(|n| n.rss_bytes).max().unwrap_or(0),
        rss_growth_bytes_per_key: largest(nodes.iter().filter_map(|n| n.rss_growth_bytes_per_key).collect()),
        data_bytes_per_key: largest(
            nodes.iter().filter(|n| n.keys > 0).map(|n| n.data_bytes as f64 / n.keys as f64).collect(),
        ),
        nodes,
    })
}

fn percentile(sorted: &[u64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

/// Small appends whose fsync is timed for the floor.
const FLOOR_FSYNC_SAMPLES: usize = 1_000;

/// fsync p50 and p99 of a small append, in ms, on a file in the temporary directory.
fn fsync_floor() -> (f64, f64) {
    let unknown = (f64::NAN, f64::NAN);
    let Ok(dir) = tempfile::tempdir() else { return unknown };
    let Ok(mut file) = std::fs::File::create(dir.path().join("floor")) else { return unknown };
    let mut samples = Vec::new();
    for _ in 0..FLOOR_FSYNC_SAMPLES {
        let started = Instant::now();
        if file.write_all(&[7u8; 100]).and_then(|()| file.sync_data()).is_err() {
            return unknown;
        }
        samples.push(started.elapsed().as_micros() as u64);
    }
    samples.sort_unstable();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// Writers in the concurrent fsync floor: one per node of the local cluster.
const FLOOR_CONCURRENT_WRITERS: usize = 3;
/// How long the concurrent fsync floor runs.
const FLOOR_CONCURRENT_DURATION: Duration = Duration::from_secs(2);

/// The slowest fsync, in ms, when three writers append and fsync at once on the same
/// disk, as the three nodes of a local cluster do: a disk that stalls every flush now
/// and then stalls every write acknowledgement with it, whatever the replication does.
fn fsync_floor_concurrent_max() -> f64 {
    let Ok(dir) = tempfile::tempdir() else { return f64::NAN };
    let writers: Vec<_> = (0..FLOOR_CONCURRENT_WRITERS)
        .map(|writer| {
            let path = dir.path().join(format!("floor-{writer}"));
            std::thread::spawn(move || -> Option<u64> {
                let mut file = std::fs::File::create(path).ok()?;
                let (started, mut slowest_us) = (Instant::now(), 0);
                while started.elapsed() < FLOOR_CONCURRENT_DURATION {
                    let write_started = Instant::now();
                    file.write_all(&[7u8; 100]).and_then(|()| file.sync_data()).ok()?;
                    slowest_us = slowest_us.max(write_started.elapsed().as_micros() as u64);
                }
                Some(slowest_us)
            })
        })
        .collect();
    let slowest = writers.into_iter().map(|w| w.join().ok().flatten()).collect::<Option<Vec<u64>>>();
    slowest.and_then(|s| s.into_iter().max()).map_or(f64::NAN, |us| us as f64 / 1000.0)
}

/// Loopback UDP round trip p50, in ms.
fn loopback_floor() -> f64 {
    let (Ok(a), Ok(b)) = (std::net::UdpSocket::bind("127.0.0.1:0"), std::net::UdpSocket::bind("127.0.0.1:0")) else {
        return f64::NAN;
    };
    let Ok(b_addr) = b.local_addr() else { return f64::NAN };
    let echo = std::thread::spawn(move || {
        let mut buffer = [0u8; 64];
        for _ in 0..2000 {
            let Ok((n, from)) = b.recv_from(&mut buffer) else { return };
            let _ = b.send_to(&buffer[..n], from);
        }
    });
    let mut samples = Vec::new();
    let mut buffer = [0u8; 64];
    let _ = a.set_read_timeout(Some(Duration::from_secs(1)));
    for _ in 0..2000 {
        let started = Instant::now();
        if a.send_to(&[1u8; 32], b_addr).is_err() || a.recv_from(&mut buffer).is_err() {
            break;
        }
        samples.push(started.elapsed().as_micros() as u64);
    }
    let _ = echo.join();
    samples.sort_unstable();
    percentile(&samples, 0.5)
}

/// Keys sorted by the CPU floor.
const FLOOR_CPU_KEYS: usize = 1_000_000;
/// The CPU floor is the fastest of this many sorts (the least disturbed by other work).
const FLOOR_CPU_RUNS: usize = 3;

/// Milliseconds for one core to sort a million pseudo-random integers: a fixed amount
/// of plain CPU work, printed so a figure can be read against the host it came from:
/// hosts of the same kind differ in CPU speed (the leader's CPU per write was 31 µs on
/// one and 81 µs on another), which the fsync and loopback floors do not show.
fn cpu_floor() -> f64 {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let keys: Vec<u64> = (0..FLOOR_CPU_KEYS)
        .map(|_| {
            // xorshift64: deterministic, so every run sorts the same keys.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
        .collect();
    let fastest = (0..FLOOR_CPU_RUNS)
        .map(|_| {
            let mut run = keys.clone();
            let started = Instant::now();
            run.sort_unstable();
            let elapsed = started.elapsed();
            assert!(run.windows(2).all(|pair| pair[0] <= pair[1]));
            elapsed
        })
        .min()
        .expect("at least one run");
    fastest.as_secs_f64() * 1000.0
}

async fn leader_addr(client: &mut Client) -> Option<SocketAddr> {
    let status = crate::status::gather(client).await;
    status.nodes.iter().find(|n| n.role.as_deref() == Some("leader"))?.addr.parse().ok()
}

pub async fn run(
    options: Options,
    cluster: Vec<SocketAddr>,
    certs: Option<PathBuf>,
    identity: Identity,
) -> Result<Report, String> {
    let local = if cluster.is_empty() {
        let node_args = [
            "--mode".to_string(),
            options.mode.clone(),
            "--heartbeat-ms".to_string(),
            options.heartbeat_ms.to_string(),
            "--election-timeout-ms".to_string(),
            options.election_timeout_ms.to_string(),
        ];
        Some(LocalCluster::start_confined(3, &node_args, options.profile.map(crate::confine::Confinement::new))?)
    } else if options.profile.is_some() {
        return Err("--profile confines the local cluster's nodes: run it without --cluster".into());
    } else if matches!(options.scenario.as_deref(), Some("failover" | "bootstrap")) {
        return Err(
            "--scenario failover and bootstrap stop a node: run them without --cluster (on a local cluster)".into()
        );
    } else {
        None
    };
    let (addrs, certs) = match &local {
        Some(local) => (local.addrs.clone(), local.certs.clone()),
        None => (cluster, certs.ok_or("missing --certs (or BATON_CERTS)")?),
    };
    let mut control = Client::new(addrs.clone(), &certs, &identity).map_err(|e| e.to_string())?;
    let started_wait = Instant::now();
    let mut leader = None;
    while leader.is_none() && started_wait.elapsed() < Duration::from_secs(30) {
        leader = leader_addr(&mut control).await;
        if leader.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let leader = leader.ok_or("no leader within 30 s")?;
    let mode = crate::status::gather(&mut control).await.mode.unwrap_or_else(|| options.mode.clone());
    let (mut floor_fsync_p50_ms, mut floor_fsync_p99_ms) = (f64::NAN, f64::NAN);
    let (mut floor_fsync_concurrent_max_ms, mut floor_loopback_rtt_p50_ms, mut floor_cpu_sort_ms) =
        (f64::NAN, f64::NAN, f64::NAN);
    if !options.skip_floor {
        if !options.json {
            eprintln!("measuring the floor (fsync of a small append, loopback round trip, one core)…");
        }
        (floor_fsync_p50_ms, floor_fsync_p99_ms) =
            tokio::task::spawn_blocking(fsync_floor).await.unwrap_or((f64::NAN, f64::NAN));
        floor_fsync_concurrent_max_ms =
            tokio::task::spawn_blocking(fsync_floor_concurrent_max).await.unwrap_or(f64::NAN);
        floor_loopback_rtt_p50_ms = tokio::task::spawn_blocking(loopback_floor).await.unwrap_or(f64::NAN);
        floor_cpu_sort_ms = tokio::task::spawn_blocking(cpu_floor).await.unwrap_or(f64::NAN);
    }
    if !options.json {
        eprintln!(
            "{} clients writing {}-byte values for {:?} ({mode})…",
            options.clients, options.value_bytes, options.duration
        );
    }
    let value = vec![b'v'; options.value_bytes];
    // Every client is connected before the clock starts: the handshakes are not load.
    // All share one UDP socket; client i uses connection set i mod `connections`.
    // Each client holds a stream on its connection, so no connection may carry more
    // clients than a node lets one connection hold streams (the hello's stream is one).
    let via_follower = match options.via_follower {
        true => Some(*addrs.iter().find(|addr| **addr != leader).ok_or("--via-follower needs a follower")?),
        false => None,
    };
    let per_connection_max = baton_node::tls::STREAMS_PER_CONNECTION_MAX as usize - 1;
    let connections =
        options.connections.max(options.clients.div_ceil(per_connection_max)).clamp(1, options.clients.max(1));
    let mut clients: Vec<Client> = Vec::with_capacity(options.clients);
    for worker in 0..options.clients {
        let client = if worker < connections {
            let mut client = control.on_same_socket();
            client.connect_all().await;
            match via_follower {
                Some(follower) => client.forwarding_through(follower),
                None => client,
            }
        } else {
            clients[worker % connections].sharing_connections()
        };
        clients.push(client);
    }
    // Watches of everything that are never read: the leader must not slow down for them.
    let mut stalled = Vec::new();
    for _ in 0..options.stalled_watchers {
        let (mut send, receive) = control.open_stream(leader).await.map_err(|e| e.to_string())?;
        let request = baton_node::frame::Request::Watch { prefix: Vec::new(), from_index: 1 };
        let frame = baton_node::frame::Frame::Request { request };
        baton_node::frame::write_frame(&mut send, &frame).await.map_err(|e| e.to_string())?;
        stalled.push((send, receive));
    }
    let costs_before = node_statuses(&mut control, &addrs).await;
    let started = Instant::now();
    let mut workers = Vec::new();
    for (worker, mut client) in clients.into_iter().enumerate() {
        let (value, duration) = (value.clone(), options.duration);
        workers.push(tokio::spawn(async move {
            let (mut latencies_us, mut acked_at, mut errors) = (Vec::new(), Vec::new(), 0u64);
            let mut i = 0u64;
            while started.elapsed() < duration {
                let sent = Instant::now();
                match client.put(format!("bench-{worker}-{i}").as_bytes(), &value).await {
                    Ok((term, _)) => {
                        latencies_us.push(sent.elapsed().as_micros() as u64);
                        acked_at.push((sent.elapsed() + sent.duration_since(started), term));
                    }
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (latencies_us, acked_at, errors)
        }));
    }
    let mut event_at = None;
    let scenario_in_load = options.scenario.as_deref().filter(|s| *s != "bootstrap");
    if let Some(scenario) = scenario_in_load {
        tokio::time::sleep(options.duration / 3).await;
        event_at = Some(started.elapsed());
        match scenario {
            "failover" => {
                let local: &Arc<LocalCluster> = local.as_ref().expect("checked above");
                let id = local.id_at(leader).ok_or("the leader is not a local node")?;
                local.kill(&id)?;
                if !options.json {
                    eprintln!("killed the leader {id} (kill -9) at {:.2} s", started.elapsed().as_secs_f64());
                }
            }
            "switchover" => {
                let response = control.request(Request::Switchover { to: None, dry_run: false }).await;
                if !matches!(&response, Ok(Response::Switchover { started: true, .. })) {
                    return Err(format!("switchover refused: {response:?}"));
                }
                if !options.json {
                    eprintln!("switchover started at {:.2} s", started.elapsed().as_secs_f64());
                }
            }
            other => return Err(format!("unknown scenario {other:?}: use failover, switchover or bootstrap")),
        }
    }
    let (mut latencies, mut acked, mut errors) = (Vec::new(), Vec::new(), 0);
    for worker in workers {
        let (l, a, e) = worker.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        acked.extend(a);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let costs_after = node_statuses(&mut control, &addrs).await;
    let watches_ended = |statuses: &[(SocketAddr, baton_node::status::NodeStatus)]| {
        statuses.iter().find(|(addr, _)| *addr == leader).map_or(0, |(_, status)| status.watches_ended)
    };
    let stalled_watchers_ended = watches_ended(&costs_after).saturating_sub(watches_ended(&costs_before));
    drop(stalled);
    let cost = cost_between(&costs_before, &costs_after, latencies.len() as u64);
    let bootstrap = match (options.scenario.as_deref(), &local) {
        (Some("bootstrap"), Some(local)) => Some(
            bootstrap(local, &mut control, &addrs, leader, options.data_mb, options.value_bytes, options.json).await?,
        ),
        _ => None,
    };
    latencies.sort_unstable();
    acked.sort_unstable();
    let (longest_gap, longest_gap_at) = acked.windows(2).map(|w| (w[1].0 - w[0].0, w[0].0)).max().unwrap_or_default();
    // The scenario's window: from the old leader's last acknowledgement to the new
    // leader's first, told apart by the term each acknowledgement names.
    let scenario_gap = event_at.and_then(|at| {
        let old_term = acked.iter().rev().find(|(when, _)| *when <= at)?.1;
        let last_old = acked.iter().filter(|(_, term)| *term == old_term).map(|(when, _)| *when).max()?;
        let first_new = acked.iter().filter(|(_, term)| *term > old_term).map(|(when, _)| *when).min()?;
        Some(first_new.saturating_sub(last_old))
    });
    Ok(Report {
        mode,
        via_follower: via_follower.map(|addr| addr.to_string()),
        heartbeat_ms: local.is_some().then_some(options.heartbeat_ms),
        election_timeout_ms: local.is_some().then_some(options.election_timeout_ms),
        clients: options.clients,
        connections,
        value_bytes: options.value_bytes,
        seconds,
        writes: latencies.len() as u64,
        writes_per_second: latencies.len() as f64 / seconds,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        p999_ms: percentile(&latencies, 0.999),
        errors,
        scenario: options.scenario.clone(),
        longest_gap_ms: longest_gap.as_secs_f64() * 1000.0,
        longest_gap_at_s: longest_gap_at.as_secs_f64(),
        scenario_gap_ms: scenario_gap.map(|gap| gap.as_secs_f64() * 1000.0),
        stalled_watchers: options.stalled_watchers,
        stalled_watchers_ended,
        floor_fsync_p50_ms,
        floor_fsync_p99_ms,
        floor_fsync_concurrent_max_ms,
        floor_loopback_rtt_p50_ms,
        floor_cpu_sort_ms,
        cost,
        bootstrap,
        profile: options.profile.map(|profile| profile.name.to_string()),
        confinement: local.as_ref().and_then(|local| local.confinement.as_ref()).map(|c| c.applied.clone()),
    })
}

pub fn print(report: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).expect("reports serialize"));
        return;
    }
    let timers = match (report.heartbeat_ms, report.election_timeout_ms) {
        (Some(heartbeat), Some(election)) => format!("  heartbeat {heartbeat} ms  election timeout {election} ms"),
        _ => String::new(),
    };
    let shared = if report.connections < report.clients {
        format!(" over {} connections", report.connections)
    } else {
        String::new()
    };
    let via = report.via_follower.as_ref().map_or_else(String::new, |via| format!("  via follower {via}"));
    println!(
        "mode {}  clients {}{shared}  value {} B  {:.1} s{timers}{via}",
        report.mode, report.clients, report.value_bytes, report.seconds
    );
    if report.stalled_watchers > 0 {
        println!(
            "watchers    {} stalled at the leader (never read), {} ended by it during the run",
            report.stalled_watchers, report.stalled_watchers_ended
        );
    }
    if let (Some(profile), Some(confinement)) = (&report.profile, &report.confinement) {
        println!("profile     {profile}: {confinement}");
    }
    println!(
        "throughput  {:.0} writes/s ({} writes, {} errors)",
        report.writes_per_second, report.writes, report.errors
    );
    println!("latency     p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms", report.p50_ms, report.p99_ms, report.p999_ms);
    if let Some(bootstrap) = &report.bootstrap {
        println!(
            "bootstrap: {} received, installed and applied a snapshot of {:.1} MiB ({} keys) in {:.2} s ({:.1} MB/s)",
            bootstrap.node,
            bootstrap.snapshot_bytes as f64 / (1024.0 * 1024.0),
            bootstrap.snapshot_keys,
            bootstrap.seconds,
            bootstrap.megabytes_per_second
        );
        let keys = bootstrap.leader_keys.max(1) as f64;
        println!(
            "memory     the leader holds {} keys ({:.1} MiB of keys and values) in {:.1} MiB: {:.0} bytes of rss per key for {:.0} of data",
            bootstrap.leader_keys,
            bootstrap.leader_data_bytes as f64 / (1024.0 * 1024.0),
            bootstrap.leader_rss_bytes as f64 / (1024.0 * 1024.0),
            bootstrap.leader_rss_bytes as f64 / keys,
            bootstrap.leader_data_bytes as f64 / keys
        );
    }
    if let (Some(scenario), Some(gap)) = (&report.scenario, report.scenario_gap_ms) {
        println!("{scenario}: write unavailability window {gap:.1} ms");
    }
    println!(
        "longest gap between acknowledgements over the run {:.1} ms, from {:.2} s in",
        report.longest_gap_ms, report.longest_gap_at_s
    );
    if report.floor_cpu_sort_ms.is_nan() {
        println!("floor       not measured (--skip-floor)");
    } else {
        println!(
            "floor       fsync p50 {:.3} ms  p99 {:.3} ms  slowest of 3 writers at once {:.1} ms  loopback round trip p50 {:.3} ms",
            report.floor_fsync_p50_ms,
            report.floor_fsync_p99_ms,
            report.floor_fsync_concurrent_max_ms,
            report.floor_loopback_rtt_p50_ms
        );
        println!("            one core sorts 1M integers in {:.1} ms", report.floor_cpu_sort_ms);
    }
    if let Some(cost) = &report.cost {
        println!(
            "cost        per acknowledged write, all nodes: {:.0} bytes written to storage, {:.3} fsyncs, {:.1} µs CPU",
            cost.write_bytes_per_write, cost.fsyncs_per_write, cost.cpu_us_per_write
        );
        for node in &cost.nodes {
            println!(
                "            {:<6} {:>8.0} B  {:.3} fsyncs  {:>6.1} µs  rss {:.1} MiB  {} keys{}",
                node.id,
                node.write_bytes_per_write,
                node.fsyncs_per_write,
                node.cpu_us_per_write,
                node.rss_bytes as f64 / (1024.0 * 1024.0),
                node.keys,
                node.rss_growth_bytes_per_key.map_or_else(String::new, |b| format!(" (+{b:.0} B of rss per key)")),
            );
            let written = &node.written_per_write;
            println!(
                "                   of which log records {:.0} B, zeros ahead of the log {:.0} B, snapshots {:.0} B, other {:.0} B",
                written.log_records, written.log_zeros, written.snapshots, written.other
            );
        }
        if let (Some(growth), Some(data)) = (cost.rss_growth_bytes_per_key, cost.data_bytes_per_key) {
            println!("memory      {growth:.0} bytes of rss per key gained, for {data:.0} bytes of key and value");
        }
    }
}
