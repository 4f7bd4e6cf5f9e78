//! `load`: a steady write load against a running cluster, for measuring (node memory
//! under load, throughput, latency). The real benchmark command, `baton bench`, comes
//! with the console.
//!
//! ```text
//! cargo run --release --example load -- --cluster 127.0.0.1:7101,... --certs DIR --clients 16 --seconds 10
//! ```

use baton_node::certs::Identity;
use baton_node::client::Client;
use clap::Parser;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<std::net::SocketAddr>,
    #[arg(long)]
    certs: std::path::PathBuf,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let duration = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.clients {
        let mut client =
            Client::new(args.cluster.clone(), &args.certs, &Identity::Client("client".into())).expect("client");
        let value = vec![b'v'; args.value_bytes];
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut i) = (Vec::new(), 0u64, 0u64);
            while started.elapsed() < duration {
                let at = Instant::now();
                match client.put(format!("load-{worker}-{i}").as_bytes(), &value).await {
                    Ok(_) => latencies.push(at.elapsed()),
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (mut l, e) = task.await.expect("worker");
        latencies.append(&mut l);
        errors += e;
    }
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{} writes in {elapsed:.1}s: {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, {errors} errors",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        at(0.50).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        at(0.999).as_secs_f64() * 1000.0
    );
}
