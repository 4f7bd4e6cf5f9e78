//! `sim`: runs the deterministic fault simulator over many seeds.
//!
//! ```text
//! cargo run --release --example sim -- --seeds 2000
//! cargo run --release --example sim -- --seeds 100000 --nodes 5 --mode sync:2
//! cargo run --release --example sim -- --seed 1234          # replay one seed with a trace
//! ```
//! The last line is always `seeds=N violations=V`; the exit code is 1 when V > 0.

use baton_common::WriteMode;
use baton_suite::sim::{run_seed, SeedReport};
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
    /// Replay exactly this seed and print its trace.
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
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

fn main() {
    let args = Args::parse();
    let nodes = args.nodes.as_deref().map(|n| n.parse::<u8>().expect("3 or 5"));
    if let Some(seed) = args.seed {
        let report = run_seed(seed, nodes, args.mode, true);
        for line in &report.trace {
            println!("{line}");
        }
        println!(
            "seed {seed}: {} nodes, {}, {} leader terms, {} acknowledged writes, isolated-leader ack window {:.1} ms",
            report.nodes,
            report.mode,
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

    baton_suite::sim::capture_panics();
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let next = AtomicU64::new(args.first_seed);
    let end = args.first_seed + args.seeds;
    let failures: Mutex<Vec<SeedReport>> = Mutex::new(Vec::new());
    let totals = Mutex::new((0u64, 0usize, 0u64, 0u64)); // violations, acked, terms, window
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let report = run_seed(seed, nodes, args.mode, false);
                let mut totals = totals.lock().expect("no worker panics while holding it");
                totals.0 += report.violations.len() as u64;
                totals.1 += report.acked_writes;
                totals.2 += report.leader_terms;
                totals.3 = totals.3.max(report.isolated_ack_window_us);
                drop(totals);
                if !report.violations.is_empty() {
                    failures.lock().expect("no worker panics while holding it").push(report);
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("workers done");
    failures.sort_by_key(|r| r.seed);
    for report in &failures {
        print_failure(report);
    }
    let (violations, acked, terms, window) = totals.into_inner().expect("workers done");
    println!(
        "{} seeds in {:.1}s: {} failing seeds, {acked} acknowledged writes checked, {terms} leader terms, longest isolated-leader ack window {:.1} ms (bound {} ms)",
        args.seeds,
        started.elapsed().as_secs_f64(),
        failures.len(),
        window as f64 / 1000.0,
        baton_suite::sim::ELECTION_TIMEOUT_US / 1000
    );
    println!("seeds={} violations={violations}", args.seeds);
    std::process::exit(i32::from(violations > 0));
}
