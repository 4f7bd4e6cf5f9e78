//! Starting a node: lock the data directory, recover storage, load certificates, bind,
//! then run the driver, the peer links and the accept loop until told to stop.
//! Every refusal to start names the file or setting at fault and the fix.

use crate::certs::{Credentials, Identity};
use crate::config::Settings;
use crate::driver::Driver;
use crate::handoff::{Input, TransportCounters};
use crate::kv::Kv;
use crate::membership::Directory;
use crate::storage::hard_state::HardStateFile;
use crate::storage::lock::DirLock;
use crate::storage::snapshot::SnapshotDir;
use crate::storage::wal::Wal;
use crate::transport::{accept_loop, Links, Restarts};
use baton_common::{Config, LogTerms, Member, Position, Recovered, Replica};
use baton_host::members::{MemberRecord, MemberRecords};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Log segments roll over at a quarter of the log's bound (so compaction, which drops
/// whole segments, keeps it under the bound), within these sizes.
const SEGMENT_BYTES_MAX: u64 = 16 * 1024 * 1024;
const SEGMENT_BYTES_MIN: u64 = 16 * 1024;
/// A node does not start with less free space on its data disk than this: room for a few
/// zeroed chunks of log (1 MiB each) and a hard-state rewrite.
const FREE_BYTES_TO_START_MIN: u64 = 4 * 1024 * 1024;
/// Inputs queued for the driver.
const INPUT_QUEUE: usize = 8_192;

/// Why `run` ended without a clean shutdown.
#[derive(Debug)]
pub enum Stop {
    /// The node refused to start: the message names what and the fix.
    Refused(String),
    /// Storage failed while running: the node stopped to protect acknowledged data.
    Fatal(String),
}

impl From<String> for Stop {
    fn from(message: String) -> Stop {
        Stop::Refused(message)
    }
}

/// Exit code of a node stopped by a storage failure (EX_SOFTWARE); supervisors restart
/// it, and a restart recovers from what is durable.
pub const EXIT_FATAL: u8 = 70;
/// Exit code of a node that refused to start (bad settings or storage it will not trust).
pub const EXIT_REFUSED: u8 = 2;

pub async fn run(settings: Settings) -> Result<(), Stop> {
    // First of all: SIGHUP's default action ends the process, and an operator may send it
    // (to reload certificates) while the node is still recovering its storage.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    let _lock = DirLock::acquire(&settings.data_dir).map_err(|e| e.to_string())?;
    crate::storage::check_room_to_start(&settings.data_dir, FREE_BYTES_TO_START_MIN).map_err(|e| e.to_string())?;
    let mut hard_state = HardStateFile::new(&settings.data_dir);
    let recovered_hard_state = hard_state.load().map_err(|e| e.to_string())?;
    let segment_bytes = (settings.max_log_bytes / 4).clamp(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
    let (mut wal, recovery) = Wal::open(&settings.data_dir.join("wal"), segment_bytes).map_err(|e| e.to_string())?;
    if recovery.torn_bytes_truncated > 0 {
        tracing::info!(
            bytes = recovery.torn_bytes_truncated,
            "cut the bytes after the log's last whole record (a write torn by a crash, or a recycled segment's old records)"
        );
    }
    let snapshots = SnapshotDir::new(&settings.data_dir);
    // A snapshot half written or half received when the node stopped, or a backup no
    // one finished downloading.
    snapshots.remove_leftovers();
    let (snapshot, kv) = match snapshots.load().map_err(|e| e.to_string())? {
        Some(loaded) => (loaded.position, loaded.into_kv()),
        None => (Position::ZERO, Kv::default()),
    };
    let log = recover_log(&settings, &mut wal, snapshot)?;
    tracing::info!(
        entries = recovery.entries,
        segments = recovery.segments,
        term = recovered_hard_state.term,
        "recovered storage"
    );

    let identity = Identity::Node(settings.id.clone());
    // Revocations in the snapshot hold from the start; the driver replays the log's and
    // keeps the list current.
    let revocations = crate::revocation::RevocationList::default();
    revocations.replace(kv.revoked());
    let open_connections = Arc::new(crate::revocation::OpenConnections::default());
    let (server_config, client_config, join_config) = load_tls(&settings.certs, &identity, &revocations)?;
    let endpoint = quinn::Endpoint::server(server_config, settings.listen)
        .map_err(|e| format!("cannot listen on {}: {e}. Fix: pick a free --listen address", settings.listen))?;

    let holds_state = snapshot.index > 0 || wal.last_index().is_some() || recovered_hard_state.term > 0;
    let (base, me) = base_membership(&settings, &endpoint, &join_config, holds_state).await?;
    let mut records = MemberRecords::new(snapshot.index, kv.members().cloned().unwrap_or(base));
    for index in snapshot.index + 1..=wal.last_index().unwrap_or(0) {
        let entry = wal.read(index).map_err(|e| e.to_string())?;
        if let Some(record) = entry.and_then(|e| crate::kv::Command::member_record(&e.payload)) {
            records.push(index, record);
        }
    }
    let directory = Directory::new(&settings.id, me, records.current().clone());
    let (client_configs, client_config) = tokio::sync::watch::channel(client_config);
    let reload = (settings.certs.clone(), identity, revocations.clone());
    tokio::spawn(reload_on_hangup(hangups, endpoint.clone(), reload, client_configs));

    let mut members = records.current().membership.members.clone();
    if !members.iter().any(|m| m.id == me) {
        // Removed (or never added): it counts for nothing and never campaigns.
        let _ = members.push(Member::learner(me, 0));
    }
    let config = Config {
        id: me,
        members,
        mode: settings.mode,
        heartbeat_interval_us: settings.heartbeat_ms * 1000,
        election_timeout_us: settings.election_timeout_ms * 1000,
        max_lag_entries: settings.max_lag_entries,
        snapshot_timeout_us: 30_000_000,
        seed: std::process::id() as u64 ^ (u64::from(me.0) << 32) ^ Instant::now().elapsed().as_nanos() as u64,
    };
    config.validate().map_err(|e| format!("invalid cluster settings: {e:?}"))?;
    let started = Instant::now();
    let recovered = Recovered { hard_state: recovered_hard_state, log, memberships: Some(records.membership_log()) };
    let replica = Replica::new(config, recovered, 0);

    let (input_sender, inputs) = mpsc::channel(INPUT_QUEUE);
    if let Some(addr) = settings.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}. Fix: pick a free --metrics address"))?;
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
        tokio::spawn(crate::metrics::serve(listener, input_sender.clone()));
    }
    let restarts = Arc::new(Restarts::default());
    let links = Links {
        dialer: crate::transport::Dialer {
            endpoint: endpoint.clone(),
            client_config: client_config.clone(),
            open: open_connections.clone(),
            silence_max: std::time::Duration::from_millis(settings.election_timeout_ms),
        },
        directory: directory.clone(),
        restarts: restarts.clone(),
    };
    let counters = Arc::new(TransportCounters::default());
    let open = open_connections.clone();
    tokio::spawn(accept_loop(
        endpoint.clone(),
        directory.clone(),
        input_sender.clone(),
        counters.clone(),
        restarts,
        open,
    ));
    let driver = Driver::new(replica, wal, hard_state, directory, inputs, input_sender.clone(), started, counters)
        .with_discarded_dir(settings.data_dir.join("discarded"))
        .with_snapshots(snapshots, snapshot, kv, settings.max_log_bytes)
        .with_members(records, links)
        .started_as_witness(settings.witness)
        .with_revocations(revocations, open_connections);
    let driver = tokio::spawn(driver.run());
    tracing::info!(id = %settings.id, listen = %settings.listen, advertise = %settings.advertise, mode = %settings.mode, "baton-node started");

    // systemd (Type=notify) counts the node as started only now: storage recovered,
    // certificates loaded, the socket bound. Without NOTIFY_SOCKET this does nothing.
    if let Err(error) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(%error, "cannot tell systemd the node is ready");
    }
    let mut driver = driver;
    let stopped = tokio::select! {
        () = shutdown_signal() => None,
        stopped = &mut driver => Some(stopped),
    };
    let stopped = match stopped {
        Some(stopped) => stopped,
        None => {
            tracing::info!("shutting down");
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
            let _ = input_sender.send(Input::Shutdown).await;
            driver.await
        }
    };
    match stopped {
        Ok(Ok(())) => {}
        Ok(Err(fatal)) => return Err(Stop::Fatal(fatal)),
        Err(panicked) => return Err(Stop::Fatal(format!("the node loop failed: {panicked}"))),
    }
    endpoint.close(0u32.into(), b"shutting down");
    endpoint.wait_idle().await;
    Ok(())
}

/// The membership this node started from, and its own id in it: as recorded in its data
/// directory; else, with `--join`, as a member of the running cluster tells it (the
/// node must have been added, and hold no state); else formed from `--id`,
/// `--advertise` and the `--peer` list, ids in the names' sorted order. The record is
/// stored on first start, so later starts never depend on the flags again.
async fn base_membership(
    settings: &Settings,
    endpoint: &quinn::Endpoint,
    join_config: &quinn::ClientConfig,
    holds_state: bool,
) -> Result<(MemberRecord, baton_common::NodeId), String> {
    let data_dir = &settings.data_dir;
    let base = match crate::membership::load_base(data_dir)? {
        Some(base) => {
            if !settings.join.is_empty() {
                tracing::info!("this node already belongs to a cluster; --join is only read on the first start");
            }
            base
        }
        None if !settings.join.is_empty() => {
            if holds_state {
                return Err(format!(
                    "{}: --join needs an empty data directory, and this one holds a node's log or snapshot. Fix: \
                     move it aside, or start without --join",
                    data_dir.display()
                ));
            }
            let joins: Vec<String> = settings.join.iter().map(ToString::to_string).collect();
            tracing::info!(via = %joins.join(","), "joining the cluster");
            let view = crate::transport::join(endpoint, join_config, &settings.id, &settings.join).await;
            tracing::info!(from = %view.from, "joined: the cluster added this node as a learner");
            crate::membership::store_base(data_dir, &view.record)?;
            view.record
        }
        None => {
            let mut named: Vec<(String, String)> =
                settings.peers.iter().map(|(name, addr)| (name.clone(), addr.to_string())).collect();
            named.push((settings.id.clone(), settings.advertise.to_string()));
            let mut names: Vec<&String> = named.iter().map(|(name, _)| name).collect();
            names.sort();
            if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
                return Err(format!("node {:?} is listed twice", pair[0]));
            }
            if named.len() > baton_common::limits::NODES_MAX {
                return Err(format!("at most {} nodes, got {}", baton_common::limits::NODES_MAX, named.len()));
            }
            let base = MemberRecord::formed(&named);
            crate::membership::store_base(data_dir, &base)?;
            base
        }
    };
    // The id as the node was formed or joined: fixed for the life of its data.
    let me = base.id_of(&settings.id).ok_or_else(|| {
        format!(
            "{}: the membership recorded there does not name {}. Fix: start with the --id this data directory \
             belongs to",
            crate::membership::base_path(data_dir).display(),
            settings.id
        )
    })?;
    Ok((base, me))
}

/// The core's view of the log: the snapshot point, then the term of every entry the log
/// holds after it. A log left over from before an installed snapshot that does not
/// match it (the node stopped mid-install) is dropped: the snapshot replaces it.
fn recover_log(settings: &Settings, wal: &mut Wal, snapshot: Position) -> Result<LogTerms, String> {
    let mut log = LogTerms::new(snapshot);
    let continues = match (wal.first_index(), wal.last_index()) {
        (None, _) => true,
        (Some(first), _) if first == snapshot.index + 1 => true,
        (Some(first), _) if first > snapshot.index + 1 => {
            return Err(format!(
                "{}: the log starts at entry {first} but the snapshot covers only up to {}: entries in between \
                 are missing. Fix: move the data directory aside and let the node rejoin empty",
                settings.data_dir.display(),
                snapshot.index
            ));
        }
        (Some(_), last) => last >= Some(snapshot.index) && wal.term_at(snapshot.index) == Some(snapshot.term),
    };
    if !continues {
        tracing::warn!(index = snapshot.index, "the log does not continue the snapshot; dropping it");
        wal.reset().map_err(|e| e.to_string())?;
    }
    for (_, term) in wal.terms().filter(|(index, _)| *index > snapshot.index) {
        log.append(term, 1).map_err(|_| {
            format!(
                "{}: the log after the snapshot spans more than {} terms, more than the core tracks. \
                 Fix: move the data directory aside and let the node rejoin empty",
                settings.data_dir.display(),
                baton_common::limits::TERM_RUNS_MAX
            )
        })?;
    }
    Ok(log)
}

/// Loads this node's certificates: the server and the peer-dialing TLS configurations.
/// Refuses an expired certificate (peers with a correct clock would refuse it anyway)
/// with the fix; warns when it expires within [`CERT_EXPIRY_WARNING_DAYS`] or when this
/// machine's clock is behind its start.
/// The server's TLS configuration, the one for dialing peers by name, and the one for
/// dialing any member by address (to join).
fn load_tls(
    certs: &std::path::Path,
    identity: &Identity,
    revocations: &crate::revocation::RevocationList,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig, quinn::ClientConfig), String> {
    let credentials = Credentials::load(certs, identity).map_err(|e| e.to_string())?;
    let path = certs.join(format!("{}.pem", identity.file_stem()));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if let Some((not_before, not_after)) = crate::certs::validity_of(&credentials.chain[0]) {
        let fix = "issue new certificates from the same CA with `baton certs --out DIR --nodes ID --renew`, \
                   copy them here and send the node SIGHUP (or restart it)";
        if now > not_after && now >= not_before {
            return Err(format!(
                "{}: this certificate expired {} days ago. Fix: {fix}",
                path.display(),
                (now - not_after) / 86_400
            ));
        }
        if now < not_before {
            tracing::warn!(path = %path.display(), clock_unix_s = now, certificate_start_unix_s = not_before,
                "this machine's clock reads earlier than its certificate's start: set the clock (NTP); until then \
                 peers' certificates are accepted without telling their expiry");
        } else if not_after - now < CERT_EXPIRY_WARNING_DAYS * 86_400 {
            tracing::warn!(path = %path.display(), days_left = (not_after - now) / 86_400, "this node's certificate expires soon. Fix: {fix}");
        }
        crate::tls::record_certificate_not_after(not_after);
    }
    let server_config = crate::tls::server_config(&credentials, revocations).map_err(|e| e.to_string())?;
    let client_config = crate::tls::node_client_config(&credentials, revocations).map_err(|e| e.to_string())?;
    let join_config = crate::tls::any_node_client_config(&credentials).map_err(|e| e.to_string())?;
    Ok((server_config, client_config, join_config))
}

/// A node's certificate this close to its end is warned about at start and on reload.
const CERT_EXPIRY_WARNING_DAYS: i64 = 30;

/// SIGHUP: load the certificate directory again; new connections, both accepted and
/// dialed, use the new certificates, and open ones carry on (no outage). Files that do
/// not load are reported and the old certificates stay.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    endpoint: quinn::Endpoint,
    (certs, identity, revocations): (std::path::PathBuf, Identity, crate::revocation::RevocationList),
    client_configs: tokio::sync::watch::Sender<quinn::ClientConfig>,
) {
    while hangups.recv().await.is_some() {
        match load_tls(&certs, &identity, &revocations) {
            Ok((server_config, client_config, _)) => {
                endpoint.set_server_config(Some(server_config));
                client_configs.send_replace(client_config);
                tracing::info!(
                    certs = %certs.display(),
                    not_after_unix_s = crate::tls::certificate_not_after_unix_s(),
                    "reloaded certificates (SIGHUP); new connections use them"
                );
            }
            Err(error) => tracing::error!(%error, "SIGHUP: cannot reload certificates; the ones loaded before stay"),
        }
    }
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The daemon's whole life from parsed flags: settings, logging, run. `baton-node` is
/// this; `baton demo` starts its nodes through it too.
pub fn main(args: crate::config::Args) -> std::process::ExitCode {
    if let Some(backup) = &args.restore {
        return restore(backup, args.data_dir.as_deref());
    }
    let settings = match Settings::resolve(args) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("baton-node: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(settings.json_logs);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(Stop::Refused(error)) => {
            tracing::error!(%error, "refusing to start");
            eprintln!("baton-node: {error}");
            std::process::ExitCode::from(EXIT_REFUSED)
        }
        Err(Stop::Fatal(error)) => {
            tracing::error!(%error, "stopped: storage failed");
            eprintln!("baton-node: fatal: {error}. A restart recovers from what is durable; check the disk first");
            std::process::ExitCode::from(EXIT_FATAL)
        }
    }
}

/// `baton-node --restore FILE --data-dir DIR`: a backup installed where the node will
/// find it (on the device itself, where `baton` may not be installed).
fn restore(backup: &std::path::Path, data_dir: Option<&std::path::Path>) -> std::process::ExitCode {
    let Some(data_dir) = data_dir else {
        eprintln!("baton-node: --restore needs --data-dir: the node's empty or new data directory");
        return std::process::ExitCode::from(2);
    };
    match crate::storage::snapshot::restore(backup, data_dir) {
        Ok(restored) => {
            println!("{restored}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("baton-node: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG").unwrap_or_else(|_| "info".into());
    // Colour only on a terminal, and never with NO_COLOR (https://no-color.org): under
    // systemd, journald and log shippers get plain lines.
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
