//! `baton`: the operator's tool. With no command (or `console`) the live console;
//! otherwise scriptable commands that exit non-zero on refusal or failure, say why on
//! stderr, and print JSON on request; `demo` and `bench` run a local cluster.

mod admin;
mod bench;
mod confine;
mod exit;
mod local;
mod members;
mod status;
mod tui;
mod watch;

use baton_node::addr::NodeAddr;
use baton_node::certs::Identity;
use baton_node::client::{Client, ClientError};
use baton_node::frame::ReadMode;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where a client's UDP socket is bound (see `Client::new`): names resolve to IPv4.
const CLIENT_SOCKET: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

#[derive(Parser, Debug)]
#[command(name = "baton", version, about = "Operate a Baton cluster", after_help = exit::HELP)]
struct Args {
    /// The cluster's node addresses, comma-separated (IP addresses or host names, as
    /// HOST:PORT).
    #[arg(long, env = "BATON_CLUSTER", value_delimiter = ',', global = true)]
    cluster: Vec<NodeAddr>,
    /// Directory with ca.pem and your certificate (operator.pem / operator.key).
    #[arg(long, env = "BATON_CERTS", global = true)]
    certs: Option<PathBuf>,
    /// Which certificate to use from the certificate directory.
    #[arg(long, default_value = "operator", global = true)]
    as_operator: String,
    /// Seconds a command may keep trying (reaching a leader, resending a write) before
    /// it gives up: exit 5 if nothing was applied, 4 if a write may still take effect.
    #[arg(long, global = true, default_value_t = 15.0, value_parser = parse_timeout)]
    timeout: f64,
    /// Send every request to this node (HOST:PORT, usually the local one), which
    /// forwards writes and leader reads to the leader: for a machine that can reach
    /// only its own node.
    #[arg(long, global = true)]
    via: Option<NodeAddr>,
    /// The cluster's id (16 hex digits, as `baton member list` shows it): nodes of any
    /// other cluster refuse the command. Without it, the first node that answers names
    /// the cluster, and a node of another one in --cluster is refused all the same.
    #[arg(long, env = "BATON_CLUSTER_ID", global = true, value_parser = parse_cluster_id)]
    cluster_id: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a cluster CA, node certificates, and operator and client certificates.
    Certs {
        /// Directory to write ca.pem/ca.key, one certificate and key per node, and the
        /// operator and client ones (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Node ids, comma-separated (for example n1,n2,n3).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        /// Days the certificates issued now are valid (default: five years).
        #[arg(long, default_value_t = baton_node::certs::CERT_LIFETIME_DAYS_DEFAULT)]
        days: u32,
        /// Issue every holder's certificate in the directory again from the same CA (new
        /// keys, a new lifetime); then copy them to the nodes and send each SIGHUP.
        #[arg(long)]
        renew: bool,
    },
    /// Write a value; exits 0 once acknowledged per the write mode, printing the index.
    Put { key: String, value: String },
    /// Read a value; exits 1 if the key is absent.
    Get {
        key: String,
        /// leader (linearizable), any (local), or after:INDEX (read-your-writes).
        #[arg(long, default_value = "leader", value_parser = parse_read)]
        read: ReadMode,
    },
    /// Delete a key.
    Delete { key: String },
    /// Compare-and-set: write NEW only if the current value is EXPECTED.
    Cas {
        key: String,
        /// The expected current value; omit for "absent".
        #[arg(long)]
        expected: Option<String>,
        /// The new value; omit to delete.
        #[arg(long)]
        new: Option<String>,
    },
    /// Every change under PREFIX as it applies, one line each ("INDEX put KEY VALUE",
    /// "INDEX delete KEY"), in log order and each once, across failovers and restarts.
    Watch {
        /// The key prefix ("" for every key).
        prefix: String,
        /// Start at this log index (default: the next change).
        #[arg(long, conflicts_with = "snapshot")]
        from: Option<u64>,
        /// First print every key under PREFIX as of one index ("INDEX snapshot KEY VALUE"),
        /// then the changes after it: the whole state, then every change, with no gap.
        #[arg(long)]
        snapshot: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Exit after this many changes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Every key under PREFIX and its value, as of one node's applied index (printed on
    /// stderr, to watch on from).
    Scan {
        prefix: String,
        #[arg(long)]
        json: bool,
    },
    /// Every node's role, term, log position and lag.
    Status {
        #[arg(long)]
        json: bool,
        /// Refresh every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// The live console (the default with no command).
    Console,
    /// Start a local 3-node cluster with a light write load and open the console on it;
    /// `k` kills and restarts the selected node. Quitting removes everything.
    Demo {
        /// Write mode for the demo cluster: async, quorum, all or sync:W.
        #[arg(long, default_value = "quorum")]
        mode: String,
    },
    /// Benchmark: throughput and acknowledgement latency (on a local 3-node cluster
    /// unless --cluster is given), with the machine's fsync and loopback floor.
    Bench {
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// QUIC connections the clients share, as etcd's benchmark --conns (default: one
        /// per client; raised so no connection carries more than 1,024 clients).
        #[arg(long)]
        connections: Option<usize>,
        /// Seconds of load.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 100)]
        value_bytes: usize,
        /// failover (kill -9 the leader) or switchover, a third of the way in; or
        /// bootstrap: after the load, fill the map to --data-mb, empty a follower and
        /// time its bootstrap from the leader's snapshot.
        #[arg(long)]
        scenario: Option<String>,
        /// With --scenario bootstrap: MiB of data in the snapshot the follower receives.
        #[arg(long, default_value_t = 100)]
        data_mb: u64,
        /// Hold the local nodes to a small device's size: "pi" pins each node to one
        /// core, and as root also limits it to 256 MiB and half that core (cgroups).
        #[arg(long)]
        profile: Option<String>,
        /// Write mode of the local cluster.
        #[arg(long, default_value = "quorum")]
        mode: String,
        /// Every client sends its writes to one follower, which forwards them to the
        /// leader (node-side routing): measures what the extra hop costs.
        #[arg(long)]
        via_follower: bool,
        /// Open this many watches of every key at the leader that are never read: writes
        /// must not slow down for them.
        #[arg(long, default_value_t = 0)]
        stalled_watchers: usize,
        /// Heartbeat interval of the local cluster's nodes.
        #[arg(long, default_value_t = 100)]
        heartbeat_ms: u64,
        /// Election timeout of the local cluster's nodes.
        #[arg(long, default_value_t = 1000)]
        election_timeout_ms: u64,
        /// Skip measuring the machine's floor (its fsync test writes about 190 MB, which a
        /// harness counting the device's bytes around the run would charge to the load).
        #[arg(long)]
        skip_floor: bool,
        #[arg(long)]
        json: bool,
    },
    /// The cluster's members, and live changes to them: add (as a learner), promote,
    /// remove, replace, set. Each is checked first; refusals say why.
    Member {
        #[command(subcommand)]
        action: members::MemberAction,
    },
    /// Hand leadership to a caught-up follower (or the best one); exits 0 once it leads.
    Switchover {
        #[arg(long)]
        to: Option<String>,
        /// Only say whether it would work, and why not.
        #[arg(long)]
        dry_run: bool,
        /// Wait until the target leads (the default also confirms before exiting 0).
        #[arg(long)]
        wait: bool,
    },
    /// Manual failover: tell a node to campaign now; shows what it would lose first.
    Failover {
        #[arg(long)]
        to: String,
        /// Skip the confirmation prompt.
        #[arg(long)]
        yes: bool,
    },
    /// Download a backup of the cluster's data (the key-value map as of the leader's
    /// applied index) into a file, checked before it is kept.
    Backup {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Install a backup into an empty data directory for a node to start from. Restore
    /// every node of a cluster from the same file before starting any of them.
    Restore {
        /// The backup file (from `baton backup`).
        #[arg(long)]
        from: PathBuf,
        /// The node's (empty or new) data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Pause automatic failover (maintenance mode).
    Pause,
    /// Resume automatic failover.
    Resume,
    /// Leadership changes: term, time, cause, from, to, discarded entries.
    History {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a certificate: every node refuses it (new connections and open ones) as soon
    /// as the revocation is replicated to it. Give the holder's .pem file.
    Revoke {
        #[arg(long)]
        cert: PathBuf,
    },
    /// For packagers: write man pages (baton.1, baton-node.1) and shell completions
    /// (bash, zsh, fish) for both programs into a directory.
    #[command(hide = true)]
    PackageFiles {
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes that nodes discarded in async mode (they may have been acknowledged), from
    /// each node's journal, oldest first.
    Discarded {
        /// One JSON object per line (with the node's id and the record's number).
        #[arg(long)]
        json: bool,
        /// Only writes at this log index or above.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// At most this many writes per node.
        #[arg(long)]
        limit: Option<u64>,
    },
}

fn parse_read(text: &str) -> Result<ReadMode, String> {
    match text {
        "leader" => Ok(ReadMode::Leader),
        "any" => Ok(ReadMode::Any),
        _ => text
            .strip_prefix("after:")
            .and_then(|index| index.parse().ok())
            .map(ReadMode::After)
            .ok_or_else(|| format!("{text:?}: use leader, any or after:INDEX")),
    }
}

/// jemalloc (as TiKV uses) instead of glibc's malloc: the node allocates per write
/// (requests, log entries, frames), and glibc's allocator was about 12 % of a leader's
/// CPU under `baton bench --clients 64` (perf). Measured A/B: leader CPU per write
/// 21.6 -> 18.2 µs, throughput +9 %, same p99 and memory per key. mimalloc cut the
/// CPU as much but doubled p999 (6.9 -> 14 ms), so it was not taken.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // `baton node …` runs a node in this process: how `demo` and `bench` start theirs.
    if std::env::args().nth(1).as_deref() == Some("node") {
        let node_args = std::iter::once("baton-node".to_string()).chain(std::env::args().skip(2));
        return baton_node::server::main(baton_node::config::Args::parse_from(node_args));
    }
    let args = Args::parse();
    if let Some(Command::Certs { out, nodes, days, renew }) = &args.command {
        let options = baton_node::certs::IssueOptions { lifetime_days: *days, renew: *renew };
        return match baton_node::certs::generate_cluster_with(out, nodes, options) {
            Ok(made) => {
                use baton_node::certs::Made;
                let how = |made: Made| match made {
                    Made::Issued => format!("new, valid {days} days"),
                    Made::Renewed => format!("renewed from the same CA, valid {days} days"),
                    Made::Kept => "kept: already there; --renew issues it again".into(),
                };
                let ca = match made.ca {
                    Made::Issued => "new",
                    Made::Kept | Made::Renewed => "kept: the CA already there signs the new certificates",
                };
                println!("CA: {}/ca.pem ({ca})", out.display());
                for (identity, made) in made.holders {
                    println!("{identity}: {}/{}.pem ({})", out.display(), identity.file_stem(), how(made));
                }
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error.to_string()),
        };
    }
    if let Some(Command::PackageFiles { out }) = &args.command {
        return match package_files(out) {
            Ok(written) => {
                for path in written {
                    println!("{}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => fail(&format!("{}: {error}", out.display())),
        };
    }
    if let Some(Command::Restore { from, data_dir }) = &args.command {
        return match baton_node::storage::snapshot::restore(from, data_dir) {
            Ok(restored) => {
                println!("{restored}");
                eprintln!(
                    "start the node with --data-dir {}; restore every node of the cluster from this same file \
                     before starting any of them",
                    data_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        };
    }
    // The benchmark's load generator runs on one thread: its clients wait on the network
    // almost all the time, and handing wake-ups between threads would take CPU from the
    // nodes it measures on a small machine.
    let mut builder = match args.command {
        Some(Command::Bench { .. }) => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    };
    let runtime = builder.enable_all().build().expect("tokio runtime");
    runtime.block_on(run(args))
}

/// Each node as the operator wrote it, with the address it resolved to.
fn targets(written: &[NodeAddr], resolved: &[SocketAddr]) -> Vec<status::Target> {
    let targets = written.iter().zip(resolved);
    targets.map(|(written, addr)| status::Target { label: written.to_string(), addr: *addr }).collect()
}

/// Man pages and completions of `baton` and `baton-node` into `out` (`man/`,
/// `completions/`); returns the files written.
fn package_files(out: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let mut written = Vec::new();
    for dir in ["man", "completions"] {
        std::fs::create_dir_all(out.join(dir))?;
    }
    for command in [Args::command(), baton_node::config::Args::command()] {
        let name = command.get_name().to_string();
        let path = out.join("man").join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone()).render(&mut page)?;
        std::fs::write(&path, page)?;
        written.push(path);
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut command = command.clone();
            written.push(clap_complete::generate_to(shell, &mut command, &name, out.join("completions"))?);
        }
    }
    Ok(written)
}

/// A command that cannot run as given (nothing was sent).
fn fail(message: &str) -> ExitCode {
    exit::fail_with(exit::USAGE, message)
}

fn parse_cluster_id(text: &str) -> Result<u64, String> {
    match u64::from_str_radix(text, 16) {
        Ok(id) if id != 0 => Ok(id),
        _ => Err(format!("{text:?}: the cluster's id, up to 16 hex digits and not 0 (`baton member list` shows it)")),
    }
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(seconds),
        _ => Err(format!("{text:?}: seconds, above 0 and at most 86400 (for example 2.5)")),
    }
}

async fn run(args: Args) -> ExitCode {
    let identity = Identity::Operator(args.as_operator.clone());
    let cluster: Vec<SocketAddr> = match baton_node::addr::resolve_all(&args.cluster, CLIENT_SOCKET).await {
        Ok(cluster) => cluster,
        Err(error) => return fail(&format!("--cluster: {error}")),
    };
    match &args.command {
        Some(Command::Demo { mode }) => return demo(mode).await,
        Some(Command::Bench {
            clients,
            connections,
            duration,
            value_bytes,
            scenario,
            mode,
            heartbeat_ms,
            election_timeout_ms,
            json,
            data_mb,
            profile,
            via_follower,
            stalled_watchers,
            skip_floor,
        }) => {
            let profile = match profile.as_deref().map(confine::profile_named).transpose() {
                Ok(profile) => profile,
                Err(error) => return fail(&format!("--profile: {error}")),
            };
            let options = bench::Options {
                clients: *clients,
                connections: connections.unwrap_or(*clients),
                duration: std::time::Duration::from_secs(*duration),
                value_bytes: *value_bytes,
                scenario: scenario.clone(),
                mode: mode.clone(),
                heartbeat_ms: *heartbeat_ms,
                election_timeout_ms: *election_timeout_ms,
                json: *json,
                data_mb: *data_mb,
                profile,
                via_follower: *via_follower,
                stalled_watchers: *stalled_watchers,
                skip_floor: *skip_floor,
            };
            // Ctrl-C or SIGTERM drops the run, and with it the local cluster: its nodes
            // are killed and its directory deleted (an interrupted bench left both).
            let run = bench::run(options, cluster.clone(), args.certs.clone(), identity);
            let interrupted = async {
                let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    Some(()) = async { terminate.as_mut()?.recv().await } => {}
                }
            };
            return tokio::select! {
                result = run => match result {
                    Ok(report) => {
                        bench::print(&report, *json);
                        ExitCode::SUCCESS
                    }
                    Err(error) => exit::fail_with(exit::NOT_DONE, &error),
                },
                () = interrupted => exit::fail_with(exit::NOT_DONE, "interrupted: the local cluster's nodes were stopped and its directory deleted"),
            };
        }
        _ => {}
    }
    let Some(certs) = args.certs.clone() else {
        return fail("missing --certs (or BATON_CERTS): the directory with ca.pem and your certificate");
    };
    if cluster.is_empty() {
        return fail("missing --cluster (or BATON_CLUSTER): the nodes' addresses, comma-separated");
    }
    match &args.command {
        None | Some(Command::Console) => {
            let targets = status::discover(targets(&args.cluster, &cluster), &certs, &identity).await;
            let options = tui::Options { targets, certs, identity };
            return tui::run(options, None).await;
        }
        Some(Command::Status { json, watch }) => {
            let targets = status::discover(targets(&args.cluster, &cluster), &certs, &identity).await;
            let mut poller = match status::Poller::new(&targets, &certs, &identity) {
                Ok(poller) => poller,
                Err(error) => return fail(&error.to_string()),
            };
            let every = watch.then_some(std::time::Duration::from_secs(1));
            return status::run(&mut poller, *json, every).await;
        }
        _ => {}
    }
    let mut client = match Client::new(cluster.clone(), &certs, &identity) {
        Ok(client) => client,
        Err(error) => return fail(&error.to_string()),
    };
    client.deadline = std::time::Duration::from_secs_f64(args.timeout);
    if let Some(cluster_id) = args.cluster_id {
        client = client.expect_cluster(cluster_id);
    }
    if let Some(via) = &args.via {
        match via.resolve(CLIENT_SOCKET).await {
            Ok(via) => client = client.forwarding_through(via),
            Err(error) => return fail(&format!("--via {via}: {error}")),
        }
    }
    let outcome: Result<ExitCode, ClientError> = async {
        let Some(command) = args.command else { unreachable!("the console is handled above") };
        match command {
            Command::Certs { .. }
            | Command::PackageFiles { .. }
            | Command::Restore { .. }
            | Command::Console
            | Command::Demo { .. }
            | Command::Bench { .. }
            | Command::Status { .. } => unreachable!("handled above"),
            Command::Put { key, value } => {
                let (term, index) = client.put(key.as_bytes(), value.as_bytes()).await?;
                println!("{index}");
                eprintln!("acknowledged at index {index} (term {term})");
                Ok(ExitCode::SUCCESS)
            }
            Command::Delete { key } => {
                let (_, index) = client.delete(key.as_bytes()).await?;
                println!("{index}");
                Ok(ExitCode::SUCCESS)
            }
            Command::Get { key, read } => match client.get(key.as_bytes(), read).await? {
                (Some(value), _) => {
                    println!("{}", String::from_utf8_lossy(&value));
                    Ok(ExitCode::SUCCESS)
                }
                (None, applied) => {
                    eprintln!("baton: {key:?} is absent (applied index {applied})");
                    Ok(ExitCode::from(exit::REFUSED))
                }
            },
            Command::Cas { key, expected, new } => {
                match client
                    .cas(key.as_bytes(), expected.as_deref().map(str::as_bytes), new.as_deref().map(str::as_bytes))
                    .await?
                {
                    Ok((_, index)) => {
                        println!("{index}");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(current) => {
                        let current = current.map(|v| String::from_utf8_lossy(&v).into_owned());
                        eprintln!("baton: compare-and-set refused: current value is {current:?}");
                        Ok(ExitCode::from(exit::REFUSED))
                    }
                }
            }
            Command::Switchover { to, dry_run, wait } => admin::switchover(&mut client, to, dry_run, wait).await,
            Command::Member { action } => members::run(&mut client, action).await,
            Command::Failover { to, yes } => admin::failover(&mut client, &to, yes).await,
            Command::Backup { out, json } => {
                let backup = client.backup(&out).await?;
                if json {
                    let summary = serde_json::json!({
                        "file": out.display().to_string(),
                        "index": backup.index,
                        "term": backup.term,
                        "keys": backup.keys,
                        "bytes": backup.bytes,
                    });
                    println!("{summary}");
                } else {
                    println!(
                        "backup of {} keys as of index {} (term {}): {} ({} bytes)",
                        backup.keys,
                        backup.index,
                        backup.term,
                        out.display(),
                        backup.bytes
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Revoke { cert } => admin::revoke(&mut client, &cert).await,
            Command::Pause => admin::set_paused(&mut client, true).await,
            Command::Resume => admin::set_paused(&mut client, false).await,
            Command::History { json } => admin::history(&mut client, json).await,
            Command::Discarded { json, since, limit } => admin::discarded(&mut client, json, since, limit).await,
            Command::Watch { prefix, from, snapshot, json, count } => {
                Ok(watch::watch(&mut client, &prefix, from, snapshot, json, count).await)
            }
            Command::Scan { prefix, json } => Ok(watch::scan(&mut client, &prefix, json).await),
        }
    }
    .await;
    outcome.unwrap_or_else(|error| exit::fail_with(exit::code_of(&error), &error.to_string()))
}

/// `baton demo`: a local cluster, a light write load, and the console with `k`.
async fn demo(mode: &str) -> ExitCode {
    eprintln!("starting a local 3-node cluster ({mode})…");
    let cluster = match local::LocalCluster::start(3, &["--mode".to_string(), mode.to_string()]) {
        Ok(cluster) => cluster,
        Err(error) => return exit::fail_with(exit::NOT_DONE, &error),
    };
    let identity = Identity::Operator("operator".into());
    let mut writer = match Client::new(cluster.addrs.clone(), &cluster.certs, &identity) {
        Ok(client) => client,
        Err(error) => return fail(&error.to_string()),
    };
    let load = tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            let _ = writer.put(format!("demo-{}", i % 1000).as_bytes(), format!("value {i}").as_bytes()).await;
            i += 1;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let options = tui::Options { targets: status::Target::of(&cluster.addrs), certs: cluster.certs.clone(), identity };
    let code = tui::run(options, Some(std::sync::Arc::new(local::DemoHandle(cluster.clone())))).await;
    load.abort();
    let _ = load.await;
    cluster.shutdown(); // Kills the nodes and removes the directory.
    code
}
