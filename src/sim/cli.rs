//! The simulator's command line, shared by `cargo run --example sim` and the `baton-sim`
//! binary (which the mutation kit builds: a binary needs none of the workspace's
//! dev-dependencies, so a mutant rebuilds in seconds).
//!
//! ```text
//! cargo run --release --example sim -- --seeds 2000
//! cargo run --release --example sim -- --seeds 100000 --nodes 5 --mode sync:2
//! cargo run --release --example sim -- --seed 1234          # replay one seed with a trace
//! cargo run --release --example sim -- --seeds 4000 --stop-at-first
//! ```
//! The last line is always `seeds=N violations=V`; the exit code is 1 when V > 0.

use super::{run_seed, SeedReport};
use baton_common::WriteMode;
use clap::Parser;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Parser, Debug)]
#[command(about = "Baton's deterministic fault simulator")]
struct Args {
    /// How many seeds to run (from --first-seed on).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of the range.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Cluster size, 3 or 5 (default: alternate by seed).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["3", "5"]))]
    nodes: Option<String>,
    /// Write mode: async, sync:W, quorum or all (default: cycle by seed).
    #[arg(long, value_parser = parse_mode)]
    mode: Option<WriteMode>,
    /// Membership churn: `on` in every seed, `off` in none (default: half the seeds).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["on", "off"]))]
    churn: Option<String>,
    /// Replay exactly this seed and print its trace.
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Stop at the first failing seed (in seed order) and print `first_failing_seed=S`:
    /// how the mutation kit counts the seeds a mutant took to be caught.
    #[arg(long)]
    stop_at_first: bool,
}

/// What every seed run so far adds up to.
#[derive(Default)]
struct Totals {
    violations: u64,
    acked_writes: usize,
    client_operations: usize,
    leader_reads: usize,
    after_reads: usize,
    any_reads: usize,
    requests_expired: u64,
    storage_stops: u64,
    watch_changes: usize,
    watch_opens: u64,
    churn_seeds: u64,
    membership_changes: usize,
    leader_terms: u64,
    isolated_ack_window_us: u64,
}

impl Totals {
    fn add(&mut self, report: &SeedReport) {
        self.violations += report.violations.len() as u64;
        self.acked_writes += report.acked_writes;
        self.client_operations += report.client_operations;
        self.leader_reads += report.leader_reads;
        self.after_reads += report.after_reads;
        self.any_reads += report.any_reads;
        self.requests_expired += report.requests_expired;
        self.storage_stops += report.storage_stops;
        self.watch_changes += report.watch_changes;
        self.watch_opens += report.watch_opens;
        self.churn_seeds += u64::from(report.churn);
        self.membership_changes += report.membership_changes;
        self.leader_terms += report.leader_terms;
        self.isolated_ack_window_us = self.isolated_ack_window_us.max(report.isolated_ack_window_us);
    }
}

fn parse_mode(text: &str) -> Result<WriteMode, String> {
    WriteMode::parse(text).ok_or_else(|| format!("unknown mode {text:?}: use async, sync:W, quorum or all"))
}

fn print_failure(report: &SeedReport) {
    println!("seed {} ({} nodes, {}) FAILED:", report.seed, report.nodes, report.mode);
    for violation in &report.violations {
        println!("  - {violation}");
    }
    println!(
        "  replay: cargo run --release --example sim -- --seed {} --nodes {} --mode {}",
        report.seed, report.nodes, report.mode
    );
}

/// Parses the process's arguments and runs; exits 1 on any violation.
pub fn main() {
    let args = Args::parse();
    let nodes = args.nodes.as_deref().map(|n| n.parse::<u8>().expect("3 or 5"));
    let churn = args.churn.as_deref().map(|c| c == "on");
    if let Some(seed) = args.seed {
        let report = run_seed(seed, nodes, args.mode, churn, true);
        for line in &report.trace {
            println!("{line}");
        }
        println!(
            "seed {seed}: {} nodes, {}, {} membership changes, {} leader terms, {} acknowledged writes, isolated-leader ack window {:.1} ms",
            report.nodes,
            report.mode,
            report.membership_changes,
            report.leader_terms,
            report.acked_writes,
            report.isolated_ack_window_us as f64 / 1000.0
        );
        if !report.violations.is_empty() {
            print_failure(&report);
        }
        println!("seeds=1 violations={}", report.violations.len());
        std::process::exit(i32::from(!report.violations.is_empty()));
    }

    super::capture_panics();
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let next = AtomicU64::new(args.first_seed);
    // With --stop-at-first, lowered to one past the lowest failing seed found so far:
    // seeds below it still run, so the first failure reported is the first in order.
    let end = AtomicU64::new(args.first_seed + args.seeds);
    let failures: Mutex<Vec<SeedReport>> = Mutex::new(Vec::new());
    let totals = Mutex::new(Totals::default());
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end.load(Ordering::Relaxed) {
                    break;
                }
                let report = run_seed(seed, nodes, args.mode, churn, false);
                totals.lock().expect("no worker panics while holding it").add(&report);
                if !report.violations.is_empty() {
                    if args.stop_at_first {
                        end.fetch_min(seed + 1, Ordering::Relaxed);
                    }
                    failures.lock().expect("no worker panics while holding it").push(report);
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("workers done");
    failures.sort_by_key(|r| r.seed);
    let totals = totals.into_inner().expect("workers done");
    let seeds = if args.stop_at_first {
        failures.truncate(1);
        end.load(Ordering::Relaxed) - args.first_seed
    } else {
        args.seeds
    };
    for report in &failures {
        print_failure(report);
    }
    println!(
        "{seeds} seeds in {:.1}s: {} failing seeds, {} acknowledged writes and {} client operations ({} leader, {} after:INDEX and {} any reads; {} requests timed out by the host) checked, {} nodes stopped by their host on a failed fsync or a full disk, {} watched changes checked over {} watch opens, {} membership changes in {} seeds with churn, {} leader terms, longest isolated-leader ack window {:.1} ms (bound {} ms)",
        started.elapsed().as_secs_f64(),
        failures.len(),
        totals.acked_writes,
        totals.client_operations,
        totals.leader_reads,
        totals.after_reads,
        totals.any_reads,
        totals.requests_expired,
        totals.storage_stops,
        totals.watch_changes,
        totals.watch_opens,
        totals.membership_changes,
        totals.churn_seeds,
        totals.leader_terms,
        totals.isolated_ack_window_us as f64 / 1000.0,
        super::ELECTION_TIMEOUT_US / 1000
    );
    if let Some(first) = failures.first().filter(|_| args.stop_at_first) {
        println!("first_failing_seed={}", first.seed);
    }
    let violations =
        if args.stop_at_first { failures.iter().map(|r| r.violations.len() as u64).sum() } else { totals.violations };
    println!("seeds={seeds} violations={violations}");
    std::process::exit(i32::from(violations > 0));
}
