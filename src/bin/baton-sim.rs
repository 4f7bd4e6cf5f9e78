//! `baton-sim`: the deterministic fault simulator's command line as a binary, the same as
//! `cargo run --example sim` (see `baton_suite::sim::cli`).

fn main() {
    baton_suite::sim::cli::main();
}
