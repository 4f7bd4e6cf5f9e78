//! `baton-node`: the daemon. See `baton-node --help`.

use clap::Parser;

/// jemalloc (as TiKV uses) instead of glibc's malloc: the node allocates per write
/// (requests, log entries, frames), and glibc's allocator was about 12 % of a leader's
/// CPU under `baton bench --clients 64` (perf). Measured A/B: leader CPU per write
/// 21.6 -> 18.2 µs, throughput +9 %, same p99 and memory per key. mimalloc cut the
/// CPU as much but doubled p999 (6.9 -> 14 ms), so it was not taken.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    baton_node::server::main(baton_node::config::Args::parse())
}
