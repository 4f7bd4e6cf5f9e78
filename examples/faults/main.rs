//! The fault suite: real `baton-node` processes in a private network namespace, a seeded
//! schedule of faults (partitions, one-way links, a bridge, packet loss, kill -9,
//! SIGSTOP, wall-clock jumps), concurrent clients whose every operation is recorded, and
//! then the verdict: the history linearizable key by key, every `after:INDEX` read
//! showing the state at its index, every node holding the same
//! data after the last heal, and how long writes and replication took to come back
//! after each heal. Prints one JSON summary; exit 0 on pass, 1 on fail (the node logs
//! are kept then), 2 when it cannot run.
//!
//! cargo build --release -p baton-node -p baton-console
//! cargo run --release --example faults -- --nemesis mix --seconds 300 --seed 7
//!
//! Needs root (a network namespace, iptables) and `unshare`, `ip`, `iptables`; with
//! libfaketime installed the clock nemesis runs too.

mod cluster;
mod net;
mod workload;

use baton_node::frame::ReadMode;
use baton_suite::linearizable::{self, Op, Operation, Verdict};
use clap::Parser;
use cluster::Cluster;
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::Counts;

#[derive(Parser, Debug)]
struct Args {
    /// partition, isolate-leader, one-way, bridge, loss, kill, pause, clock, member, mix,
    /// or none
    #[arg(long, default_value = "mix")]
    nemesis: String,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value = "quorum")]
    mode: String,
    #[arg(long, default_value_t = 5)]
    clients: u32,
    #[arg(long, default_value_t = 3)]
    keys: u32,
    /// Seconds each fault lasts.
    #[arg(long, default_value_t = 4)]
    fault_seconds: u64,
    /// Seconds of calm between faults.
    #[arg(long, default_value_t = 3)]
    calm_seconds: u64,
    /// Where `baton-node` and `baton` are (default: this workspace's target/release).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep the data and logs even when the run passes.
    #[arg(long)]
    keep: bool,
}

/// The election timeout the nodes run with (their default), which the recovery targets use.
const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long recovery after a heal is watched before it counts as not done.
const RECOVERY_WATCH_MAX: Duration = Duration::from_secs(20);
/// A heal after which writes or the replication stream took longer than this fails the
/// run: the regression guard for links that waited out QUIC's idle timeout (about 5 s).
/// The target, one election timeout, is reported (`heals_over_target`), not enforced:
/// on a loaded machine a restarted node may take longer to start.
const RECOVERY_FAIL_AFTER: Duration = Duration::from_secs(3);
/// Wrong `after:INDEX` reads listed in the summary (all are counted).
const VIOLATIONS_SHOWN_MAX: usize = 10;
/// How long the cluster may take to agree once the last fault is healed.
const CONVERGENCE_MAX: Duration = Duration::from_secs(60);
const NEMESES: [&str; 9] =
    ["partition", "isolate-leader", "one-way", "bridge", "loss", "kill", "pause", "clock", "member"];

#[derive(Serialize, Debug)]
struct FaultRecord {
    nemesis: String,
    detail: String,
    at_s: f64,
    healed_at_s: f64,
    /// From the heal to the first write acknowledged after it.
    first_write_after_heal_ms: Option<u64>,
    /// The longest stretch without an acknowledged write from the fault's start to
    /// `RECOVERY_FAIL_AFTER` after its heal (a majority keeps writing through most
    /// faults; a leader's kill or pause stops writes until a new leader).
    longest_write_gap_ms: u64,
    /// From the heal until a leader had every node in the stream (in sync, acking).
    all_in_stream_after_heal_ms: Option<u64>,
    leader_term_before: Option<u64>,
    leader_term_after: Option<u64>,
}

#[derive(Serialize, Debug)]
struct Summary {
    verdict: &'static str,
    problems: Vec<String>,
    nemesis: String,
    seed: u64,
    seconds: u64,
    nodes: usize,
    mode: String,
    clients: u32,
    keys: u32,
    writes: Counts,
    reads: Counts,
    /// The read-your-writes client's `after:INDEX` reads (ok: answered and checked).
    after_reads: Counts,
    after_read_problems: Vec<String>,
    linearizable: String,
    violation_window: Vec<String>,
    converged: bool,
    /// Async mode: values the nodes' discarded-writes journals name, and how many of
    /// them had been acknowledged.
    discarded_records: usize,
    discarded_acknowledged: u64,
    faults: Vec<FaultRecord>,
    /// Longest of the faults' figures, and how many heals missed the targets (one
    /// election timeout each).
    longest_first_write_after_heal_ms: Option<u64>,
    longest_all_in_stream_after_heal_ms: Option<u64>,
    longest_write_gap_ms: Option<u64>,
    heals_over_target: usize,
    leader_changes: u64,
    logs: Option<String>,
}

fn main() {
    let args = Args::parse();
    match net::enter_private_namespace() {
        Ok(Some(code)) => std::process::exit(code),
        Ok(None) => {}
        Err(error) => {
            eprintln!("faults: {error}");
            std::process::exit(2);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let code = match runtime.block_on(run(args)) {
        Ok(summary) => {
            println!("{}", serde_json::to_string_pretty(&summary).expect("serializes"));
            i32::from(summary.verdict != "pass")
        }
        Err(error) => {
            eprintln!("faults: cannot run: {error}");
            2
        }
    };
    std::process::exit(code);
}

/// What a fault changed, for its heal to undo.
enum Undo {
    Network,
    /// The new machine in this slot must be a member (its add may have failed or
    /// timed out during the fault).
    Join(usize),
    /// The removal of this slot's member had no answer: once it settles, a removed
    /// member is replaced (and then must be a member).
    SettleRemoval(usize),
    Restart(usize),
    Resume(usize),
    Clock(usize),
}

async fn run(args: Args) -> Result<Summary, String> {
    if !NEMESES.contains(&args.nemesis.as_str()) && args.nemesis != "mix" && args.nemesis != "none" {
        return Err(format!("unknown nemesis {:?}: one of {}, mix, none", args.nemesis, NEMESES.join(", ")));
    }
    if !(3..=5).contains(&args.nodes) {
        return Err("--nodes: 3 to 5".into());
    }
    net::set_up()?;
    let bin_dir =
        args.bin_dir.clone().unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release"));
    let dir = tempfile::Builder::new().prefix("baton-faults-").tempdir().map_err(|e| e.to_string())?;
    let mut cluster = Cluster::start(dir.path(), &bin_dir, args.nodes, &args.mode)?;
    let mut control = cluster.client(Duration::from_secs(2))?;
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let waited = Instant::now();
    while cluster.leader(&mut control).await.is_none() {
        if waited.elapsed() > Duration::from_secs(20) {
            return Err(format!("no leader within 20 s; logs in {}", dir.keep().display()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for id in 0..=args.clients {
        let client = cluster.client(workload::OPERATION_DEADLINE - Duration::from_millis(500))?;
        let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(id));
        let setup = workload::ClientSetup { id, client, keys: args.keys, seed, started, stop: stop.clone() };
        // The read-your-writes client comes after the others.
        clients.push(match id == args.clients {
            false => tokio::spawn(workload::run_client(setup)),
            true => tokio::spawn(workload::run_after_reader(setup)),
        });
    }
    let mut faults = Vec::new();
    let mut problems = Vec::new();
    let mut replacements = 0u32;
    let end = started + Duration::from_secs(args.seconds);
    // The last heal leaves time for writes after it, which its figures need.
    let per_fault = Duration::from_secs(args.calm_seconds + args.fault_seconds) + RECOVERY_FAIL_AFTER;
    while args.nemesis != "none" && Instant::now() + per_fault < end {
        tokio::time::sleep(Duration::from_secs(args.calm_seconds)).await;
        let nemesis = match args.nemesis.as_str() {
            "mix" => NEMESES[rng.usize(..NEMESES.len())].to_string(),
            one => one.to_string(),
        };
        if nemesis == "clock" && !cluster.faketime {
            problems.push("the clock nemesis needs libfaketime (apt-get install faketime): skipped".into());
            continue;
        }
        let (leader, term_before) = cluster.leader(&mut control).await.unzip();
        let at = started.elapsed();
        let (detail, undo) = match nemesis.as_str() {
            "member" => replace_member(&mut cluster, &mut control, &mut rng, leader, &mut replacements).await?,
            _ => apply(&nemesis, &mut cluster, &mut rng, leader)?,
        };
        eprintln!("[{:7.2} s] {nemesis}: {detail}", at.as_secs_f64());
        tokio::time::sleep(Duration::from_secs(args.fault_seconds)).await;
        for undo in undo {
            match undo {
                Undo::Network => net::heal()?,
                Undo::Restart(i) => cluster.start_node(i)?,
                Undo::Resume(i) => cluster.pause_node(i, false),
                Undo::Clock(i) => cluster.set_clock(i, "+0")?,
                Undo::Join(i) => {
                    let (name, addr) = (cluster.nodes[i].id.clone(), cluster.nodes[i].addr);
                    let added = add_member(&mut control, &name, addr, RECOVERY_WATCH_MAX).await;
                    eprintln!("[{:7.2} s] {name}: {added}", started.elapsed().as_secs_f64());
                }
                Undo::SettleRemoval(i) => {
                    let old = cluster.nodes[i].id.clone();
                    let outcome = match removed(&mut control, &old, RECOVERY_WATCH_MAX).await {
                        Some(true) => {
                            let replaced = replace_slot(&mut cluster, &mut control, i, &mut replacements).await?;
                            let (name, addr) = (cluster.nodes[i].id.clone(), cluster.nodes[i].addr);
                            format!(
                                "removed; {replaced}; {}",
                                add_member(&mut control, &name, addr, RECOVERY_WATCH_MAX).await
                            )
                        }
                        Some(false) => "still a member".into(),
                        None => "the membership did not settle".into(),
                    };
                    eprintln!("[{:7.2} s] {old}: {outcome}", started.elapsed().as_secs_f64());
                }
            }
        }
        let healed = started.elapsed();
        let in_stream = all_in_stream(&cluster, &mut control, RECOVERY_WATCH_MAX).await;
        eprintln!(
            "[{:7.2} s] healed; every node in the stream after {}",
            healed.as_secs_f64(),
            in_stream.map_or("(not within the watch)".into(), |d| format!("{} ms", d.as_millis()))
        );
        faults.push(FaultRecord {
            nemesis,
            detail,
            at_s: at.as_secs_f64(),
            healed_at_s: healed.as_secs_f64(),
            first_write_after_heal_ms: None,
            longest_write_gap_ms: 0,
            all_in_stream_after_heal_ms: in_stream.map(|d| d.as_millis() as u64),
            leader_term_before: term_before,
            leader_term_after: cluster.leader(&mut control).await.map(|(_, term)| term),
        });
    }
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut history, mut writes, mut reads, mut acked_ns) =
        (Vec::new(), Counts::default(), Counts::default(), Vec::new());
    let (mut indexed, mut after_reads, mut after_read_counts) = (Vec::new(), Vec::new(), Counts::default());
    for client in clients {
        let result = client.await.map_err(|e| e.to_string())?;
        history.extend(result.history);
        acked_ns.extend(result.acked_ns);
        indexed.extend(result.indexed);
        after_reads.extend(result.after_reads);
        for (sum, part) in [
            (&mut writes, result.writes),
            (&mut reads, result.reads),
            (&mut after_read_counts, result.after_read_counts),
        ] {
            sum.ok += part.ok;
            sum.failed += part.failed;
            sum.unknown += part.unknown;
        }
    }
    acked_ns.sort_unstable();
    for fault in &mut faults {
        let healed_ns = (fault.healed_at_s * 1e9) as u64;
        fault.first_write_after_heal_ms =
            acked_ns.iter().find(|&&at| at >= healed_ns).map(|at| (at - healed_ns) / 1_000_000);
        let (from, to) = ((fault.at_s * 1e9) as u64, healed_ns + RECOVERY_FAIL_AFTER.as_nanos() as u64);
        let mut marks: Vec<u64> = vec![from];
        marks.extend(acked_ns.iter().copied().filter(|&at| at > from && at < to));
        marks.push(to);
        fault.longest_write_gap_ms = marks.windows(2).map(|w| (w[1] - w[0]) / 1_000_000).max().unwrap_or(0);
    }
    // Everything healed, every node running: the nodes must agree.
    net::heal()?;
    for i in 0..cluster.nodes.len() {
        cluster.pause_node(i, false);
        cluster.set_clock(i, "+0")?;
        cluster.start_node(i)?;
    }
    let converged = converge(&cluster, &mut control, args.keys, started, &mut history, &mut problems).await;
    // Async mode may discard acknowledged writes at a failover, and must record each in
    // a node's journal. The writes the journals name, and reads that saw them, are left
    // out; the rest must still be linearizable, so an acknowledged write lost without a
    // record shows as a later read that misses it.
    let discarded = match args.mode.as_str() {
        "async" => discarded_values(&cluster, &mut control, &mut problems).await,
        _ => HashSet::new(),
    };
    let names_discarded = |o: &Operation| match o.op {
        Op::Put { value } | Op::Cas { new: value, .. } => discarded.contains(&value),
        Op::Read { value } => value.is_some_and(|v| discarded.contains(&v)),
    };
    let discarded_acknowledged = history
        .iter()
        .filter(|o| o.completed_ns.is_some() && !matches!(o.op, Op::Read { .. }) && names_discarded(o))
        .count() as u64;
    history.retain(|o| !names_discarded(o));
    // Each `after:INDEX` read returns the state at the index it reports.
    indexed.retain(|w| !discarded.contains(&w.value));
    after_reads.retain(|r| !r.value.is_some_and(|v| discarded.contains(&v)));
    let unknown_values: HashSet<linearizable::Value> = history
        .iter()
        .filter_map(|o| match o.op {
            Op::Put { value } if o.completed_ns.is_none() => Some(value),
            Op::Cas { new, applied: None, .. } => Some(new),
            _ => None,
        })
        .collect();
    let after_read_problems = baton_suite::after_reads::check(&indexed, &unknown_values, &after_reads);
    if let Some(first) = after_read_problems.first() {
        problems.push(format!("{} after:INDEX reads wrong; the first: {first}", after_read_problems.len()));
    }
    if writes.ok == 0 {
        problems.push("no write was acknowledged in the whole run".into());
    }
    let verdict = linearizable::check(&history);
    let (linearizable, violation_window) = match &verdict {
        Verdict::Linearizable => ("yes".to_string(), Vec::new()),
        Verdict::Violation { key, window } => {
            problems.push(format!("key k{key}: not linearizable"));
            ("no".to_string(), window.iter().map(describe).collect())
        }
        Verdict::Unknown { key } => {
            problems.push(format!("key k{key}: the search ran out of steps"));
            ("unknown".to_string(), Vec::new())
        }
    };
    let longest = |f: fn(&FaultRecord) -> Option<u64>| faults.iter().filter_map(f).max();
    let target_ms = ELECTION_TIMEOUT.as_millis() as u64;
    let heals_over_target = faults
        .iter()
        .filter(|f| {
            f.all_in_stream_after_heal_ms.is_none_or(|ms| ms > target_ms)
                || f.first_write_after_heal_ms.is_none_or(|ms| ms > target_ms)
        })
        .count();
    let leader_changes = faults
        .iter()
        .filter(|f| matches!((f.leader_term_before, f.leader_term_after), (Some(a), Some(b)) if b > a))
        .count() as u64;
    let fail_ms = RECOVERY_FAIL_AFTER.as_millis() as u64;
    for fault in &faults {
        for (what, ms) in [
            ("the first write", fault.first_write_after_heal_ms),
            ("every node in the stream", fault.all_in_stream_after_heal_ms),
        ] {
            if ms.is_none_or(|ms| ms > fail_ms) {
                problems.push(format!(
                    "after the heal of {} at {:.2} s, {what} took {} (over {RECOVERY_FAIL_AFTER:?})",
                    fault.nemesis,
                    fault.healed_at_s,
                    ms.map_or("longer than the watch".into(), |ms| format!("{ms} ms"))
                ));
            }
        }
    }
    let pass = problems.iter().all(|p| p.ends_with(": skipped")) && converged;
    let logs = (!pass || args.keep).then(|| dir.keep().display().to_string());
    Ok(Summary {
        verdict: if pass { "pass" } else { "fail" },
        problems,
        nemesis: args.nemesis,
        seed: args.seed,
        seconds: args.seconds,
        nodes: args.nodes,
        mode: args.mode,
        clients: args.clients,
        keys: args.keys,
        writes,
        reads,
        after_reads: after_read_counts,
        after_read_problems: after_read_problems.into_iter().take(VIOLATIONS_SHOWN_MAX).collect(),
        linearizable,
        violation_window,
        converged,
        discarded_records: discarded.len(),
        discarded_acknowledged,
        longest_first_write_after_heal_ms: longest(|f| f.first_write_after_heal_ms),
        longest_all_in_stream_after_heal_ms: longest(|f| f.all_in_stream_after_heal_ms),
        longest_write_gap_ms: longest(|f| Some(f.longest_write_gap_ms)),
        heals_over_target,
        leader_changes,
        faults,
        logs,
    })
}

fn describe(op: &Operation) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    let done = op.completed_ns.map_or("unknown outcome".to_string(), |ns| format!("{:.3} ms", ms(ns)));
    let what = match &op.op {
        Op::Put { value } => format!("put {value:#x}"),
        Op::Cas { expected, new, applied } => {
            format!(
                "cas {expected:x?} -> {new:#x}: {}",
                applied.map_or("?", |a| if a { "written" } else { "mismatch" })
            )
        }
        Op::Read { value } => format!("read {value:x?}"),
    };
    format!("client {} k{}: {what}, invoked {:.3} ms, completed {done}", op.client, op.key, ms(op.invoked_ns))
}

/// Applies one fault; returns what it did and how to undo it.
fn apply(
    nemesis: &str,
    cluster: &mut Cluster,
    rng: &mut fastrand::Rng,
    leader: Option<usize>,
) -> Result<(String, Vec<Undo>), String> {
    let count = cluster.nodes.len();
    let ips: Vec<_> = (0..count).map(net::node_ip).collect();
    let names: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
    let name = |i: usize| names[i].clone();
    let leader_or_any = leader.unwrap_or_else(|| rng.usize(..count));
    let cut = |side: &[usize]| -> Result<(), String> {
        for &a in side {
            for b in (0..count).filter(|b| !side.contains(b)) {
                net::block(ips[a], ips[b])?;
                net::block(ips[b], ips[a])?;
            }
        }
        Ok(())
    };
    Ok(match nemesis {
        "partition" => {
            let mut order: Vec<usize> = (0..count).collect();
            rng.shuffle(&mut order);
            let minority = &order[..rng.usize(1..=(count - 1) / 2)];
            cut(minority)?;
            (
                format!("{:?} cut from the rest", minority.iter().map(|&i| name(i)).collect::<Vec<_>>()),
                vec![Undo::Network],
            )
        }
        "isolate-leader" => {
            cut(&[leader_or_any])?;
            (format!("the leader {} cut from the rest", name(leader_or_any)), vec![Undo::Network])
        }
        "one-way" => {
            // The leader still sends (heartbeats arrive) but hears nothing back.
            for b in (0..count).filter(|&b| b != leader_or_any) {
                net::block(ips[b], ips[leader_or_any])?;
            }
            (format!("the leader {} hears no one, still heard", name(leader_or_any)), vec![Undo::Network])
        }
        "bridge" => {
            let mut order: Vec<usize> = (0..count).collect();
            rng.shuffle(&mut order);
            let bridge = order[0];
            let half = (count - 1) / 2;
            let (left, right) = (&order[1..1 + half], &order[1 + half..]);
            for &a in left {
                for &b in right {
                    net::block(ips[a], ips[b])?;
                    net::block(ips[b], ips[a])?;
                }
            }
            (
                format!(
                    "{} bridges {:?} and {:?}",
                    name(bridge),
                    left.iter().map(|&i| name(i)).collect::<Vec<_>>(),
                    right.iter().map(|&i| name(i)).collect::<Vec<_>>()
                ),
                vec![Undo::Network],
            )
        }
        "loss" => {
            net::lose(&ips, 30)?;
            ("30 % of packets between nodes dropped".into(), vec![Undo::Network])
        }
        "kill" => {
            let victim = if rng.bool() { leader_or_any } else { rng.usize(..count) };
            cluster.kill_node(victim);
            (format!("kill -9 {}", name(victim)), vec![Undo::Restart(victim)])
        }
        "pause" => {
            cluster.pause_node(leader_or_any, true);
            (format!("SIGSTOP the leader {}", name(leader_or_any)), vec![Undo::Resume(leader_or_any)])
        }
        "clock" => {
            let victim = rng.usize(..count);
            let offset = if rng.bool() { "+2h" } else { "-2h" };
            cluster.set_clock(victim, offset)?;
            (format!("{}'s wall clock {offset}", name(victim)), vec![Undo::Clock(victim)])
        }
        other => return Err(format!("unknown nemesis {other}")),
    })
}

/// The membership nemesis: a follower's machine is replaced while the network may be
/// cut. Half the time a random node other than the leader and the victim is cut from
/// the rest first (with three nodes, that makes the removal unsafe, and it must be
/// refused). The victim is removed through the leader; once that committed, its process
/// is killed, a new machine under a new name is added in its slot and started with
/// `--join` at once, during the fault: it must catch up and be promoted by itself.
/// Whatever was decided is in the detail; the heal undoes the cut.
async fn replace_member(
    cluster: &mut Cluster,
    control: &mut baton_node::client::Client,
    rng: &mut fastrand::Rng,
    leader: Option<usize>,
    replacements: &mut u32,
) -> Result<(String, Vec<Undo>), String> {
    use baton_node::frame::{Json, MemberChange, Request, Response};
    let count = cluster.nodes.len();
    let Some(leader) = leader else { return Ok(("no leader: no membership change".into(), vec![])) };
    let followers: Vec<usize> = (0..count).filter(|&i| i != leader).collect();
    let victim = followers[rng.usize(..followers.len())];
    let mut undo = Vec::new();
    let mut detail = String::new();
    let bystanders: Vec<usize> = followers.iter().copied().filter(|&i| i != victim).collect();
    if rng.bool() && !bystanders.is_empty() {
        let cut = bystanders[rng.usize(..bystanders.len())];
        let ips: Vec<_> = (0..count).map(net::node_ip).collect();
        for other in (0..count).filter(|&o| o != cut) {
            net::block(ips[cut], ips[other])?;
            net::block(ips[other], ips[cut])?;
        }
        undo.push(Undo::Network);
        detail.push_str(&format!("{} cut from the rest; ", cluster.nodes[cut].id));
    }
    let old = cluster.nodes[victim].id.clone();
    let remove = Request::ChangeMembers { change: MemberChange::Remove { name: old.clone() }, dry_run: false };
    match control.request(remove).await {
        Ok(Response::Written { index, .. }) => {
            detail.push_str(&format!("{old} removed at index {index}; "));
            detail.push_str(&replace_slot(cluster, control, victim, replacements).await?);
            undo.push(Undo::Join(victim));
        }
        Ok(Response::MembersVerdict(Json(verdict))) => {
            detail.push_str(&format!("removing {old} refused: {}", verdict.reasons.join("; ")));
        }
        other => {
            // It may commit once the cut heals: the heal settles it.
            detail.push_str(&format!("removing {old}: {other:?}; settled at the heal"));
            undo.push(Undo::SettleRemoval(victim));
        }
    }
    Ok((detail, undo))
}

/// Whether `name` is out of the leader's membership for good (its removal committed),
/// once the membership settles within `within`; `None` if it did not settle.
async fn removed(control: &mut baton_node::client::Client, name: &str, within: Duration) -> Option<bool> {
    use baton_node::frame::{Json, Request, Response};
    let started = Instant::now();
    while started.elapsed() < within {
        if let Ok(Response::Members(Json(view))) = control.request(Request::Members).await {
            let member = view.record.id_of(name).and_then(|id| view.record.membership.member(id));
            if !view.change_pending && view.leader.as_deref() == Some(view.from.as_str()) {
                return Some(member.is_none());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A new machine in slot `victim` (whose member was removed), under a new name, started
/// with `--join` before it is added, as an operator's would be; says how it went.
async fn replace_slot(
    cluster: &mut Cluster,
    control: &mut baton_node::client::Client,
    victim: usize,
    replacements: &mut u32,
) -> Result<String, String> {
    *replacements += 1;
    let old = cluster.nodes[victim].id.clone();
    let base = old.split('-').next().unwrap_or(&old).to_string();
    let new = format!("{base}-r{replacements}");
    cluster.replace_node(victim, &new)?;
    cluster.start_node(victim)?;
    let added = add_member(control, &new, cluster.nodes[victim].addr, Duration::from_secs(2)).await;
    Ok(format!("{new} in its slot, {added}"))
}

/// Adds `name` at `addr` through the leader, trying for `within` (a change still in
/// flight, a leader busy or cut off); says how it went.
async fn add_member(
    control: &mut baton_node::client::Client,
    name: &str,
    addr: std::net::SocketAddr,
    within: Duration,
) -> String {
    use baton_node::frame::{Json, MemberChange, Request, Response};
    let add = MemberChange::Add {
        name: name.into(),
        addr: addr.to_string(),
        priority: 1,
        learner_only: false,
        upstream: None,
    };
    let started = Instant::now();
    loop {
        let answer = control.request(Request::ChangeMembers { change: add.clone(), dry_run: false }).await;
        let outcome = match answer {
            Ok(Response::Written { index, .. }) => return format!("added at index {index}"),
            Ok(Response::MembersVerdict(Json(verdict))) if verdict.reasons.iter().any(|r| r.contains("already")) => {
                return "added (already a member)".into()
            }
            other => format!("{other:?}"),
        };
        if started.elapsed() > within {
            return format!("not added yet: {outcome}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long until a leader reports every other node in sync and acking, within `max`.
async fn all_in_stream(cluster: &Cluster, control: &mut baton_node::client::Client, max: Duration) -> Option<Duration> {
    let started = Instant::now();
    let heartbeat_ms = 100;
    while started.elapsed() < max {
        let statuses = cluster.statuses(control).await;
        if let Some((_, leader)) = cluster::leading(&statuses) {
            let all = leader.followers.len() + 1 == cluster.nodes.len()
                && leader
                    .followers
                    .iter()
                    .all(|f| f.in_sync && f.last_ack_age_ms.is_some_and(|ms| ms < 3 * heartbeat_ms));
            if all {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// After the last heal: every node applies the leader's commit index, and a read of
/// each key at that index on every node gives the leader's value. The leader's reads
/// join the history (so a lost acknowledged write fails the check).
async fn converge(
    cluster: &Cluster,
    control: &mut baton_node::client::Client,
    keys: u32,
    started: Instant,
    history: &mut Vec<Operation>,
    problems: &mut Vec<String>,
) -> bool {
    let deadline = Instant::now() + CONVERGENCE_MAX;
    let commit = loop {
        let statuses = cluster.statuses(control).await;
        if let Some((_, leader)) = cluster::leading(&statuses) {
            let applied: Vec<u64> = statuses.iter().flatten().map(|s| s.applied_index).collect();
            if applied.len() == cluster.nodes.len() && applied.iter().all(|&a| a >= leader.commit_index) {
                break leader.commit_index;
            }
        }
        if Instant::now() > deadline {
            problems.push(format!("the nodes did not all apply the leader's commit index within {CONVERGENCE_MAX:?}"));
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut agreed = true;
    for key in 0..keys {
        let key_bytes = format!("k{key}").into_bytes();
        let invoked_ns = started.elapsed().as_nanos() as u64;
        let leader_value = match control.get(&key_bytes, ReadMode::Leader).await {
            Ok((value, _)) => value,
            Err(error) => {
                problems.push(format!("the final read of k{key} failed: {error}"));
                return false;
            }
        };
        let decoded = workload::decode(leader_value.as_deref());
        history.push(Operation {
            client: u32::MAX,
            key,
            op: Op::Read { value: decoded },
            invoked_ns,
            completed_ns: Some(started.elapsed().as_nanos() as u64),
        });
        for node in &cluster.nodes {
            match control
                .call(
                    node.addr,
                    &baton_node::frame::Request::Get { key: key_bytes.clone(), read: ReadMode::After(commit) },
                )
                .await
            {
                Ok(baton_node::frame::Response::Value { value, .. }) if value == leader_value => {}
                other => {
                    problems.push(format!("{} holds something else for k{key} at index {commit}: {other:?}", node.id));
                    agreed = false;
                }
            }
        }
    }
    agreed
}

/// Every value the nodes' discarded-writes journals name (all pages of each).
async fn discarded_values(
    cluster: &Cluster,
    control: &mut baton_node::client::Client,
    problems: &mut Vec<String>,
) -> HashSet<linearizable::Value> {
    use baton_node::frame::{Request, Response};
    let mut values = HashSet::new();
    for node in &cluster.nodes {
        let mut after_record = 0;
        loop {
            let request = Request::DiscardedPage { since_index: 0, after_record, limit: 1000 };
            match control.call(node.addr, &request).await {
                Ok(Response::DiscardedPage(baton_node::frame::Json(page))) => {
                    values.extend(
                        page.writes.iter().filter_map(|w| workload::decode(w.value.as_deref().map(str::as_bytes))),
                    );
                    match page.next_after_record {
                        Some(next) => after_record = next,
                        None => break,
                    }
                }
                other => {
                    problems.push(format!("cannot read {}'s discarded journal: {other:?}", node.id));
                    break;
                }
            }
        }
    }
    values
}
