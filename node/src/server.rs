//! Starting a node: lock the data directory, recover storage, load certificates, bind,
//! then run the driver, the peer links and the accept loop until told to stop.
//! Every refusal to start names the file or setting at fault and the fix.

use crate::certs::{Credentials, Identity};
use crate::config::Settings;
use crate::driver::{Driver, Input, Outbound};
use crate::membership::Membership;
use crate::storage::hard_state::HardStateFile;
use crate::storage::lock::DirLock;
use crate::storage::wal::Wal;
use crate::transport::{accept_loop, run_link, Restarts, TransportCounters, LINK_QUEUE_FRAMES};
use baton_common::{Config, LogTerms, Member, Position, Recovered, Replica};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Log segments roll over at this size: small enough to delete promptly after a
/// snapshot, large enough that rollovers are rare.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Inputs queued for the driver.
const INPUT_QUEUE: usize = 8_192;

pub async fn run(settings: Settings) -> Result<(), String> {
    let _lock = DirLock::acquire(&settings.data_dir).map_err(|e| e.to_string())?;
    let hard_state = HardStateFile::new(&settings.data_dir);
    let recovered_hard_state = hard_state.load().map_err(|e| e.to_string())?;
    let (wal, recovery) = Wal::open(&settings.data_dir.join("wal"), SEGMENT_BYTES).map_err(|e| e.to_string())?;
    if recovery.torn_bytes_truncated > 0 {
        tracing::warn!(bytes = recovery.torn_bytes_truncated, "cut a torn write at the end of the log");
    }
    let mut log = LogTerms::new(Position::ZERO);
    if let Some(first) = wal.first_index() {
        if first != 1 {
            return Err(format!(
                "{}: the log starts at entry {first} but there is no snapshot to cover the entries before it. \
                 Fix: move the data directory aside and let the node rejoin empty",
                settings.data_dir.display()
            ));
        }
    }
    for (_, term) in wal.terms() {
        log.append(term, 1).map_err(|_| {
            format!(
                "{}: the log spans more than {} terms, more than the core tracks without a snapshot. \
                 Fix: move the data directory aside and let the node rejoin empty",
                settings.data_dir.display(),
                baton_common::limits::TERM_RUNS_MAX
            )
        })?;
    }
    tracing::info!(
        entries = recovery.entries,
        segments = recovery.segments,
        term = recovered_hard_state.term,
        "recovered storage"
    );

    let membership = Membership::new(&settings.id, settings.listen, &settings.peers).map_err(|e| e.to_string())?;
    let credentials =
        Credentials::load(&settings.certs, &Identity::Node(settings.id.clone())).map_err(|e| e.to_string())?;
    let server_config = crate::tls::server_config(&credentials).map_err(|e| e.to_string())?;
    let client_config = crate::tls::node_client_config(&credentials).map_err(|e| e.to_string())?;
    let endpoint = quinn::Endpoint::server(server_config, settings.listen)
        .map_err(|e| format!("cannot listen on {}: {e}. Fix: pick a free --listen address", settings.listen))?;

    let me = membership.me();
    let mut members = heapless::Vec::new();
    for id in membership.ids() {
        let _ = members.push(Member::voter(id, 1));
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
    let replica = Replica::new(config, Recovered { hard_state: recovered_hard_state, log }, 0);

    let (input_sender, inputs) = mpsc::channel(INPUT_QUEUE);
    let mut outbound = Outbound::new();
    let restarts = Arc::new(Restarts::new(membership.peers()));
    for peer in membership.peers() {
        let (sender, frames) = mpsc::channel(LINK_QUEUE_FRAMES);
        outbound.insert(peer, sender);
        let link =
            run_link(endpoint.clone(), client_config.clone(), membership.clone(), peer, frames, restarts.clone());
        tokio::spawn(link);
    }
    let counters = Arc::new(TransportCounters::default());
    tokio::spawn(accept_loop(endpoint.clone(), membership.clone(), input_sender.clone(), counters.clone(), restarts));
    let driver =
        Driver::new(replica, wal, hard_state, membership, outbound, inputs, input_sender.clone(), started, counters)
            .with_discarded_dir(settings.data_dir.join("discarded"));
    let driver = tokio::spawn(driver.run());
    tracing::info!(id = %settings.id, listen = %settings.listen, mode = %settings.mode, "baton-node started");

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = input_sender.send(Input::Shutdown).await;
    let _ = driver.await;
    endpoint.close(0u32.into(), b"shutting down");
    endpoint.wait_idle().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
