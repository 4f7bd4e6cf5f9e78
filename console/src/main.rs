//! `baton`: the operator's tool. Scriptable commands that exit non-zero on refusal or
//! failure, say why on stderr, and print JSON on request.

mod admin;
mod status;

use baton_node::certs::Identity;
use baton_node::client::{Client, ClientError};
use baton_node::frame::ReadMode;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "baton", version, about = "Operate a Baton cluster")]
struct Args {
    /// The cluster's node addresses, comma-separated.
    #[arg(long, env = "BATON_CLUSTER", value_delimiter = ',', global = true)]
    cluster: Vec<SocketAddr>,
    /// Directory with ca.pem and your certificate (operator.pem / operator.key).
    #[arg(long, env = "BATON_CERTS", global = true)]
    certs: Option<PathBuf>,
    /// Which certificate to use from the certificate directory.
    #[arg(long, default_value = "operator", global = true)]
    as_operator: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a cluster CA, node certificates, and operator and client certificates.
    Certs {
        #[arg(long)]
        out: PathBuf,
        /// Node ids, comma-separated (for example n1,n2,n3).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
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
    /// Every node's role, term, log position and lag.
    Status {
        #[arg(long)]
        json: bool,
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
    /// Pause automatic failover (maintenance mode).
    Pause,
    /// Resume automatic failover.
    Resume,
    /// Leadership changes: term, time, cause, from, to, discarded entries.
    History {
        #[arg(long)]
        json: bool,
    },
    /// Writes that nodes discarded in async mode (they may have been acknowledged).
    Discarded {
        #[arg(long)]
        json: bool,
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

fn main() -> ExitCode {
    let args = Args::parse();
    if let Command::Certs { out, nodes } = &args.command {
        return match baton_node::certs::generate_cluster(out, nodes) {
            Ok(identities) => {
                for identity in identities {
                    println!("{}: {}/{}.pem", identity, out.display(), identity.file_stem());
                }
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error.to_string()),
        };
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    runtime.block_on(run(args))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("baton: {message}");
    ExitCode::from(2)
}

async fn run(args: Args) -> ExitCode {
    let Some(certs) = args.certs.clone() else {
        return fail("missing --certs (or BATON_CERTS): the directory with ca.pem and your certificate");
    };
    let identity = Identity::Operator(args.as_operator.clone());
    let mut client = match Client::new(args.cluster.clone(), &certs, &identity) {
        Ok(client) => client,
        Err(error) => return fail(&error.to_string()),
    };
    let outcome: Result<ExitCode, ClientError> = async {
        match args.command {
            Command::Certs { .. } => unreachable!("handled before connecting"),
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
                    Ok(ExitCode::from(1))
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
                        Ok(ExitCode::from(1))
                    }
                }
            }
            Command::Status { json } => Ok(status::run(&mut client, json).await),
            Command::Switchover { to, dry_run, wait } => admin::switchover(&mut client, to, dry_run, wait).await,
            Command::Failover { to, yes } => admin::failover(&mut client, &to, yes).await,
            Command::Pause => admin::set_paused(&mut client, true).await,
            Command::Resume => admin::set_paused(&mut client, false).await,
            Command::History { json } => admin::history(&mut client, json).await,
            Command::Discarded { json } => admin::discarded(&mut client, json).await,
        }
    }
    .await;
    outcome.unwrap_or_else(|error| fail(&error.to_string()))
}
