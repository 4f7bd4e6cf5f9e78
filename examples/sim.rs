//! `sim`: runs the deterministic fault simulator over many seeds (the command line is
//! `baton_suite::sim::cli`; `cargo run --release --example sim -- --help`).

fn main() {
    baton_suite::sim::cli::main();
}
