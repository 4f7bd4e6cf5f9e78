//! `baton-node`: the daemon. See `baton-node --help`.

use baton_node::config::{Args, Settings};
use clap::Parser;

fn main() {
    let settings = match Settings::resolve(Args::parse()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("baton-node: {error}");
            std::process::exit(2);
        }
    };
    init_logging(settings.json_logs);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    if let Err(error) = runtime.block_on(baton_node::server::run(settings)) {
        tracing::error!(%error, "refusing to start");
        eprintln!("baton-node: {error}");
        std::process::exit(2);
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
