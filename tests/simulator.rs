//! The simulator as a test: a few hundred seeds across every write mode and both cluster
//! sizes must show no violation, and a seed must replay exactly. The CI script runs
//! thousands more through the `sim` example; this keeps `cargo test` honest on its own.

use baton_common::WriteMode;
use baton_suite::sim::{modes_for, run_seed};

/// Goal: every write mode, 3 and 5 nodes, 40 seeds each, zero violations.
#[test]
fn seeds_across_modes_have_no_violations() {
    for nodes in [3u8, 5] {
        for mode in modes_for(nodes) {
            for seed in 0..40 {
                let report = run_seed(seed, Some(nodes), Some(mode), None, false);
                assert!(
                    report.violations.is_empty(),
                    "seed {seed}, {nodes} nodes, {mode}: {:?}\nreplay: cargo run --release --example sim -- --seed {seed} --nodes {nodes} --mode {mode}",
                    report.violations
                );
                assert!(report.acked_writes > 0, "seed {seed} {mode}: the load acknowledged nothing");
            }
        }
    }
}

/// Goal: a seed replays exactly: same trace, line for line.
#[test]
fn a_seed_replays_exactly() {
    let first = run_seed(77, Some(5), Some(WriteMode::Quorum), None, true);
    let second = run_seed(77, Some(5), Some(WriteMode::Quorum), None, true);
    assert!(first.trace.len() > 100, "the trace should say what happened");
    assert_eq!(first.trace, second.trace);
    let other = run_seed(78, Some(5), Some(WriteMode::Quorum), None, true);
    assert_ne!(first.trace, other.trace, "different seeds, different histories");
}

/// Goal: membership churn (adds, promotions, removals, shut-downs) during faults, in
/// every mode, shows no violation, and the changes really happen.
#[test]
fn seeds_with_membership_churn_have_no_violations() {
    let mut changes = 0;
    for nodes in [3u8, 5] {
        for mode in modes_for(nodes) {
            for seed in 0..20 {
                let report = run_seed(seed, Some(nodes), Some(mode), Some(true), false);
                assert!(
                    report.violations.is_empty(),
                    "seed {seed}, {nodes} nodes, {mode}: {:?}\nreplay: cargo run --release --example sim -- --seed {seed} --nodes {nodes} --mode {mode} --churn on",
                    report.violations
                );
                changes += report.membership_changes;
            }
        }
    }
    assert!(changes > 100, "only {changes} membership changes applied");
}
