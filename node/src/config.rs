//! The node's settings: command-line flags over an optional TOML file over defaults.

use crate::addr::NodeAddr;
use baton_common::WriteMode;
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug, Default)]
#[command(name = "baton-node", version, about = "Baton's edge daemon: leader-follower replication over QUIC")]
pub struct Args {
    /// This node's id, as its certificate names it (for example n1).
    #[arg(long)]
    pub id: Option<String>,
    /// Address to listen on, for example 127.0.0.1:7101 or 0.0.0.0:7101.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The address other nodes and clients reach this node at, as the other nodes'
    /// --peer lists it (an IP or a host name, for example pi1.local:7101). Needed when
    /// --listen is a wildcard such as 0.0.0.0; otherwise it defaults to --listen.
    #[arg(long)]
    pub advertise: Option<NodeAddr>,
    /// Another member, as ID=HOST:PORT (an IP address or a host name); repeat for each.
    /// Read only when the cluster is first formed: from then on the membership lives in
    /// the cluster (`baton member`) and in the data directory.
    #[arg(long = "peer", value_parser = parse_peer)]
    pub peers: Vec<(String, NodeAddr)>,
    /// Join a running cluster through these members (HOST:PORT, comma-separated): the
    /// node must have been added first (`baton member add ID HOST:PORT`) and its
    /// data directory must be empty. It waits until it has been added.
    #[arg(long = "join", value_name = "HOST:PORT", value_delimiter = ',')]
    pub join: Vec<NodeAddr>,
    /// Run as a witness (`baton member add ID ADDR --witness`): it votes and stores log
    /// positions but no data, and never leads. The node refuses to run should the
    /// cluster hold it as a data member.
    #[arg(long)]
    pub witness: bool,
    /// Where the log and state live (one node per directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Directory with ca.pem and this node's ID.pem and ID.key (see `baton certs`).
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// Write mode: async, quorum, all or sync:W.
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<WriteMode>,
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// A follower further behind than this leaves the in-sync set.
    #[arg(long)]
    pub max_lag_entries: Option<u64>,
    /// The log's size bound in bytes: a snapshot is taken (and the log before it
    /// dropped) when the log reaches half of it and twice the last snapshot; a map
    /// larger than half of it lets the log grow to twice the map while the disk has
    /// room. Default 64 MiB (a witness: 4 MiB); at least 64 KiB.
    #[arg(long)]
    pub max_log_bytes: Option<u64>,
    /// Serve Prometheus metrics (text format) over plain HTTP at this address, for
    /// example 127.0.0.1:9101. Off unless set.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// A TOML file with the same settings; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Install this backup (from `baton backup`) into --data-dir, which must be empty or
    /// new, and exit; then start the node as usual. Restore every node of the cluster
    /// from the same file before starting any of them.
    #[arg(long, value_name = "BACKUP_FILE")]
    pub restore: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
}

/// The same settings, as a TOML file holds them.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub id: Option<String>,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<NodeAddr>,
    #[serde(default)]
    pub peers: std::collections::BTreeMap<String, NodeAddr>,
    #[serde(default)]
    pub join: Vec<NodeAddr>,
    #[serde(default)]
    pub witness: bool,
    pub data_dir: Option<PathBuf>,
    pub certs: Option<PathBuf>,
    pub mode: Option<String>,
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_ms: Option<u64>,
    pub max_lag_entries: Option<u64>,
    pub max_log_bytes: Option<u64>,
    pub metrics: Option<SocketAddr>,
    pub log_format: Option<String>,
}

/// Everything resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub id: String,
    pub listen: SocketAddr,
    /// Where the others reach this node: in leader hints and status answers.
    pub advertise: NodeAddr,
    pub peers: Vec<(String, NodeAddr)>,
    /// Members to ask for the membership when this node joins (see `Args::join`).
    pub join: Vec<NodeAddr>,
    /// Started as a witness (see `Args::witness`).
    pub witness: bool,
    pub data_dir: PathBuf,
    pub certs: PathBuf,
    pub mode: WriteMode,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub max_lag_entries: u64,
    pub max_log_bytes: u64,
    pub metrics: Option<SocketAddr>,
    pub json_logs: bool,
}

/// The default log bound: small next to an SD card, large next to a day of edge writes.
pub const MAX_LOG_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// A witness's default log bound. Its records hold positions only (about 25 bytes each
/// on disk, plus 16 bytes of index in memory per retained entry), its snapshot is a
/// position and a membership record, and nothing reads its log but itself, so it
/// compacts often at no cost. With the data nodes' default it would keep about 1.4
/// million entries, and 20–40 MiB of index, before its first snapshot.
pub const WITNESS_MAX_LOG_BYTES_DEFAULT: u64 = 4 * 1024 * 1024;
/// Below this, snapshots would be taken almost continuously.
pub const MAX_LOG_BYTES_MIN: u64 = 64 * 1024;

fn parse_peer(text: &str) -> Result<(String, NodeAddr), String> {
    let (id, addr) =
        text.split_once('=').ok_or_else(|| format!("{text:?}: expected ID=HOST:PORT, like n2=127.0.0.1:7102"))?;
    Ok((id.to_string(), addr.parse()?))
}

fn parse_mode(text: &str) -> Result<WriteMode, String> {
    WriteMode::parse(text).ok_or_else(|| format!("unknown mode {text:?}: use async, quorum, all or sync:W"))
}

impl Settings {
    pub fn resolve(args: Args) -> Result<Settings, String> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let missing = |what: &str| format!("missing --{what} (or `{}` in the config file)", what.replace('-', "_"));
        let mode = match (args.mode, &file.mode) {
            (Some(mode), _) => mode,
            (None, Some(text)) => parse_mode(text)?,
            (None, None) => WriteMode::Quorum,
        };
        let peers = if args.peers.is_empty() { file.peers.into_iter().collect() } else { args.peers };
        let log_format = args.log_format.or(file.log_format).unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            return Err(format!("unknown log format {log_format:?}: use text or json"));
        }
        let listen = args.listen.or(file.listen).ok_or_else(|| missing("listen"))?;
        let advertise = match args.advertise.or(file.advertise) {
            Some(advertise) => advertise,
            None if listen.ip().is_unspecified() => {
                return Err(format!(
                    "listen address {listen} is a wildcard, which the other nodes and clients cannot \
                     reach: set --advertise (or `advertise` in the config file) to the address they \
                     use for this node, for example 192.168.1.11:{port} or pi1.local:{port}",
                    port = listen.port()
                ))
            }
            None => NodeAddr::Ip(listen),
        };
        if advertise.ip().is_some_and(|addr| addr.ip().is_unspecified()) {
            return Err(format!(
                "advertise address {advertise} is a wildcard: give the address others reach this node at"
            ));
        }
        let settings = Settings {
            id: args.id.or(file.id).ok_or_else(|| missing("id"))?,
            listen,
            advertise,
            peers,
            join: if args.join.is_empty() { file.join } else { args.join },
            witness: args.witness || file.witness,
            data_dir: args.data_dir.or(file.data_dir).ok_or_else(|| missing("data-dir"))?,
            certs: args.certs.or(file.certs).ok_or_else(|| missing("certs"))?,
            mode,
            heartbeat_ms: args.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(100),
            election_timeout_ms: args.election_timeout_ms.or(file.election_timeout_ms).unwrap_or(1000),
            max_lag_entries: args.max_lag_entries.or(file.max_lag_entries).unwrap_or(1000),
            max_log_bytes: args.max_log_bytes.or(file.max_log_bytes).unwrap_or(if args.witness || file.witness {
                WITNESS_MAX_LOG_BYTES_DEFAULT
            } else {
                MAX_LOG_BYTES_DEFAULT
            }),
            metrics: args.metrics.or(file.metrics),
            json_logs: log_format == "json",
        };
        if settings.max_log_bytes < MAX_LOG_BYTES_MIN {
            return Err(format!(
                "max_log_bytes {} is below the minimum of {MAX_LOG_BYTES_MIN} bytes",
                settings.max_log_bytes
            ));
        }
        crate::certs::check_name(&settings.id).map_err(|e| e.to_string())?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: flags override the file, the file fills in the rest, and mistakes are named.
    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "id = \"n1\"\nlisten = \"127.0.0.1:7101\"\ndata_dir = \"/tmp/d\"\ncerts = \"/tmp/c\"\nmode = \"all\"\n[peers]\nn2 = \"127.0.0.1:7102\"\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "baton-node",
            "--config",
            path.to_str().unwrap(),
            "--mode",
            "sync:2",
            "--heartbeat-ms",
            "50",
        ]);
        let settings = Settings::resolve(args).unwrap();
        assert_eq!(settings.id, "n1");
        assert_eq!(settings.mode, WriteMode::Sync(2));
        assert_eq!(settings.heartbeat_ms, 50);
        assert_eq!(settings.peers, vec![("n2".to_string(), "127.0.0.1:7102".parse().unwrap())]);
        std::fs::write(&path, "id = \"n1\"\nbogus = 1\n").unwrap();
        let error =
            Settings::resolve(Args::parse_from(["baton-node", "--config", path.to_str().unwrap()])).unwrap_err();
        assert!(error.contains("node.toml") && error.contains("bogus"), "{error}");
        let error = Settings::resolve(Args::parse_from(["baton-node", "--id", "n1"])).unwrap_err();
        assert!(error.contains("--listen"), "{error}");
    }

    /// Goal: a node listening on a wildcard must say where it is reached (its leader
    /// hints and status would otherwise send clients to 0.0.0.0); peers may be host names.
    #[test]
    fn a_wildcard_listen_needs_an_advertised_address() {
        let base =
            ["baton-node", "--id", "n1", "--data-dir", "/tmp/d", "--certs", "/tmp/c", "--listen", "0.0.0.0:7101"];
        let error = Settings::resolve(Args::parse_from(base)).unwrap_err();
        assert!(error.contains("0.0.0.0:7101") && error.contains("--advertise"), "{error}");
        let error =
            Settings::resolve(Args::parse_from(base.iter().chain(&["--advertise", "0.0.0.0:7101"]))).unwrap_err();
        assert!(error.contains("wildcard"), "{error}");
        let args = base.iter().chain(&["--advertise", "gw-1.plant.example:7101", "--peer", "n2=pi2.local:7101"]);
        let settings = Settings::resolve(Args::parse_from(args)).unwrap();
        assert_eq!(settings.advertise.to_string(), "gw-1.plant.example:7101");
        assert_eq!(settings.peers, vec![("n2".to_string(), "pi2.local:7101".parse().unwrap())]);
        let listen =
            ["baton-node", "--id", "n1", "--data-dir", "/tmp/d", "--certs", "/tmp/c", "--listen", "127.0.0.1:7101"];
        assert_eq!(Settings::resolve(Args::parse_from(listen)).unwrap().advertise.to_string(), "127.0.0.1:7101");
        let error = Args::try_parse_from(listen.iter().chain(&["--peer", "n2=pi 2:7101"])).unwrap_err().to_string();
        assert!(error.contains("neither an IP address nor a host name"), "{error}");
    }

    /// Rule: a witness's log bound defaults to `WITNESS_MAX_LOG_BYTES_DEFAULT` (it
    /// compacts often at no cost), a data node's to `MAX_LOG_BYTES_DEFAULT`; a flag
    /// overrides either.
    #[test]
    fn a_witness_keeps_a_short_log_by_default() {
        let base = ["baton-node", "--id", "w1", "--listen", "127.0.0.1:7101", "--data-dir", "d", "--certs", "c"];
        let resolve = |extra: &[&str]| Settings::resolve(Args::parse_from(base.iter().chain(extra))).unwrap();
        assert_eq!(resolve(&[]).max_log_bytes, MAX_LOG_BYTES_DEFAULT);
        assert_eq!(resolve(&["--witness"]).max_log_bytes, WITNESS_MAX_LOG_BYTES_DEFAULT);
        assert_eq!(resolve(&["--witness", "--max-log-bytes", "65536"]).max_log_bytes, 65536);
    }

    /// Goal: the Raspberry Pi example config in examples/ is valid as shipped.
    #[test]
    fn raspberry_pi_example_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton-node.toml");
        std::fs::write(&path, include_str!("../../examples/raspberry-pi/baton-node.toml")).unwrap();
        let settings = Settings::resolve(Args::parse_from(["baton-node", "--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(settings.id, "pi1");
        assert_eq!(settings.peers.len(), 2);
        assert_eq!(settings.advertise.to_string(), "192.168.1.11:7101");
        assert_eq!(settings.max_log_bytes, 32 * 1024 * 1024);
        assert_eq!(settings.metrics, Some("127.0.0.1:9101".parse().unwrap()));
        let error = Settings::resolve(Args::parse_from([
            "baton-node",
            "--config",
            path.to_str().unwrap(),
            "--max-log-bytes",
            "1000",
        ]))
        .unwrap_err();
        assert!(error.contains("max_log_bytes"), "{error}");
    }
}
