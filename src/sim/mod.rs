//! The deterministic fault simulator: many seeded runs of a whole cluster of real cores
//! through a safety phase full of faults and a liveness phase where everything heals.

pub mod checker;
pub mod cli;
pub(crate) mod history;
pub mod membership;
mod storage;
mod watch;
mod world;

pub use world::{SeedReport, World, ELECTION_TIMEOUT_US, HEARTBEAT_US};

use baton_common::WriteMode;

/// The write modes the simulator cycles through for a cluster of `nodes`.
pub fn modes_for(nodes: u8) -> Vec<WriteMode> {
    let mut modes = vec![WriteMode::Async, WriteMode::Sync(2), WriteMode::Quorum, WriteMode::All];
    if nodes >= 5 {
        modes.push(WriteMode::Sync(3));
    }
    modes
}

/// One seed: the cluster shape and mode come from the seed unless fixed.
/// `churn`: whether an operator changes the membership (default: half the seeds).
pub fn run_seed(seed: u64, nodes: Option<u8>, mode: Option<WriteMode>, churn: Option<bool>, trace: bool) -> SeedReport {
    let nodes = nodes.unwrap_or(if seed.is_multiple_of(2) { 3 } else { 5 });
    let modes = modes_for(nodes);
    let mode = mode.unwrap_or(modes[(seed / 2 % modes.len() as u64) as usize]);
    let safety_us = 12_000_000;
    let liveness_us = 20_000_000;
    let run =
        std::panic::catch_unwind(|| World::new(seed, nodes, mode, churn, safety_us, liveness_us, trace).run(seed));
    run.unwrap_or_else(|_| {
        let text = LAST_PANIC.with(|last| last.borrow_mut().take()).unwrap_or_default();
        SeedReport {
            seed,
            nodes,
            mode: mode.to_string(),
            violations: vec![format!("panic: {text}")],
            ..SeedReport::default()
        }
    })
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Turns panics into quiet, per-seed violations: the hook records where and why, and
/// `run_seed` reports it with the seed that replays it.
pub fn capture_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(format!("{message} at {location}")));
    }));
}
