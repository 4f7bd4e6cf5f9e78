//! `baton-node`: the daemon. See `baton-node --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    baton_node::server::main(baton_node::config::Args::parse())
}
