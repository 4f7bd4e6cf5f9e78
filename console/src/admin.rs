//! Operator commands: switchover, manual failover, pause and resume, history. Each exits
//! non-zero on refusal or failure and says why on stderr.

use crate::status::gather;
use baton_common::{estimate_failover_loss, NodeId, Position};
use baton_node::client::{Client, ClientError};
use baton_node::frame::{Json, Request, Response};
use baton_node::status::HistoryEntry;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long `--wait` and failovers wait for the new leader.
const LEADER_WAIT: Duration = Duration::from_secs(15);

async fn wait_for_leader(client: &mut Client, target: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < LEADER_WAIT {
        if gather(client).await.leader.as_deref() == Some(target) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub async fn switchover(
    client: &mut Client,
    to: Option<String>,
    dry_run: bool,
    wait: bool,
) -> Result<ExitCode, ClientError> {
    match client.request(Request::Switchover { to, dry_run }).await? {
        Response::Switchover { target, reasons, started } => {
            let target = target.unwrap_or_else(|| "any follower".into());
            if !reasons.is_empty() {
                eprintln!("baton: switchover to {target} refused:");
                for reason in reasons {
                    eprintln!("  - {reason}");
                }
                return Ok(ExitCode::from(crate::exit::REFUSED));
            }
            if !started {
                println!("{target} is eligible: a switchover would hand leadership to it");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("switchover to {target} started");
            // Exiting 0 only once the target leads is the contract with or without
            // `--wait`; the flag is accepted for scripts that spell it out.
            let _ = wait;
            if !wait_for_leader(client, &target).await {
                eprintln!("baton: {target} did not take over within {LEADER_WAIT:?}; the old leader resumed");
                return Ok(ExitCode::from(crate::exit::NOT_DONE));
            }
            println!("{target}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(ClientError::Unexpected(Box::new(other))),
    }
}

pub async fn failover(client: &mut Client, to: &str, yes: bool) -> Result<ExitCode, ClientError> {
    let status = gather(client).await;
    let Some(target) = status.nodes.iter().find(|n| n.id.as_deref() == Some(to)) else {
        eprintln!("baton: {to} did not answer (or is not in --cluster); a failover needs the node itself");
        return Ok(ExitCode::from(crate::exit::NOT_DONE));
    };
    let position = |n: &crate::status::NodeRow| Position::new(n.last_term.unwrap_or(0), n.last_index.unwrap_or(0));
    let others: Vec<(NodeId, Position)> = status
        .nodes
        .iter()
        .filter(|n| n.reachable && n.id.as_deref() != Some(to))
        .enumerate()
        .map(|(i, n)| (NodeId(i as u8 + 1), position(n)))
        .collect();
    let estimate = estimate_failover_loss(position(target), &others);
    let addr: std::net::SocketAddr = target.addr.parse().expect("addresses come from --cluster");
    let verdict = client.call(addr, &Request::Campaign { dry_run: true }).await?;
    if let Response::Campaign { accepted: false, reason } = verdict {
        eprintln!("baton: failover to {to} refused: {}", reason.unwrap_or_default());
        return Ok(ExitCode::from(crate::exit::REFUSED));
    }
    let bound = if estimate.exact { "" } else { "at least " };
    eprintln!(
        "failover to {to}: it would lose {bound}{} entries behind the most advanced reachable replica",
        estimate.lost_entries
    );
    if !yes {
        eprint!("Type 'yes' to fail over to {to}: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            eprintln!("baton: not confirmed; nothing done");
            return Ok(ExitCode::from(crate::exit::REFUSED));
        }
    }
    // A voter that heard the old leader a few milliseconds later than the candidate may
    // still refuse; campaign again until the candidate leads or the deadline passes.
    let started = Instant::now();
    let mut last_refusal = None;
    while started.elapsed() < LEADER_WAIT {
        match client.call(addr, &Request::Campaign { dry_run: false }).await? {
            Response::Campaign { accepted: true, .. } => {
                let round = Instant::now();
                while round.elapsed() < Duration::from_millis(1_500) {
                    if gather(client).await.leader.as_deref() == Some(to) {
                        println!("{to}");
                        return Ok(ExitCode::SUCCESS);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Response::Campaign { reason, .. } => last_refusal = reason,
            other => return Err(ClientError::Unexpected(Box::new(other))),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = last_refusal.unwrap_or_else(|| "it campaigned but did not win".into());
    eprintln!("baton: failover to {to} did not complete within {LEADER_WAIT:?}: {reason} (see `baton status`)");
    Ok(ExitCode::from(crate::exit::NOT_DONE))
}

/// `baton pause` and `baton resume`.
pub async fn set_paused(client: &mut Client, paused: bool) -> Result<ExitCode, ClientError> {
    pause_or_resume(client, paused).await?;
    println!("automatic failover {}", if paused { "paused" } else { "resumed" });
    Ok(ExitCode::SUCCESS)
}

/// Pause goes through the leader. Resume too when there is one; otherwise every node is
/// resumed on its own, since a paused cluster whose leader died has nobody to replicate
/// the resume (and one node resumed alone wins no election: the paused ones refuse it).
pub async fn pause_or_resume(client: &mut Client, paused: bool) -> Result<(), ClientError> {
    let status = gather(client).await;
    if status.leader.is_some() || paused {
        match client.request(Request::SetPaused { paused }).await? {
            Response::Done => {}
            other => return Err(ClientError::Unexpected(Box::new(other))),
        }
    } else {
        for node in status.nodes.iter().filter(|n| n.reachable) {
            let addr = node.addr.parse().expect("addresses come from --cluster");
            match client.call(addr, &Request::SetPaused { paused: false }).await? {
                Response::Done => {}
                Response::Error { code, message, .. } => {
                    // A node that still honours its dead leader's lease (for an election
                    // timeout): nothing changed there yet.
                    let name = node.id.as_deref().unwrap_or(&node.addr);
                    return Err(ClientError::Refused { code, message: format!("{name}: {message}; try again") });
                }
                other => return Err(ClientError::Unexpected(Box::new(other))),
            }
        }
    }
    Ok(())
}

/// Every node's record, merged by term.
pub async fn history(client: &mut Client, json: bool) -> Result<ExitCode, ClientError> {
    let mut merged: std::collections::BTreeMap<u64, HistoryEntry> = std::collections::BTreeMap::new();
    for addr in client.addrs().to_vec() {
        if let Ok(Response::History(Json(entries))) = client.call(addr, &Request::History).await {
            for entry in entries {
                let slot = merged.entry(entry.term).or_insert_with(|| entry.clone());
                if slot.cause.is_none() {
                    slot.cause = entry.cause.clone();
                }
                slot.from = slot.from.clone().or(entry.from.clone());
                slot.at_unix_ms = slot.at_unix_ms.min(entry.at_unix_ms);
                slot.discarded_entries = slot.discarded_entries.max(entry.discarded_entries);
            }
        }
    }
    let entries: Vec<HistoryEntry> = merged.into_values().collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&entries).expect("history serializes"));
    } else {
        println!("{:>6} {:<24} {:<6} {:<6} {:<11} {:>9}", "term", "time (UTC)", "from", "to", "cause", "discarded");
        for e in &entries {
            println!(
                "{:>6} {:<24} {:<6} {:<6} {:<11} {:>9}",
                e.term,
                utc_time(e.at_unix_ms),
                e.from.as_deref().unwrap_or("-"),
                e.to.as_deref().unwrap_or("-"),
                e.cause.as_deref().unwrap_or("?"),
                e.discarded_entries
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every node's discarded writes.
/// `baton revoke --cert FILE`: replicates the revocation of that certificate; exits 0
/// once it is committed (each node refuses it as soon as it applies it).
pub async fn revoke(client: &mut Client, cert: &std::path::Path) -> Result<ExitCode, ClientError> {
    let pem = std::fs::read(cert).map_err(|e| ClientError::Setup(format!("{}: {e}", cert.display())))?;
    let certificate = baton_node::certs::certificates_in_pem(&pem)
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Setup(format!("{}: no certificate in PEM", cert.display())))?;
    let fingerprint = baton_node::revocation::fingerprint_of(&certificate);
    let holder = baton_node::certs::identities_in(&certificate)
        .first()
        .map_or_else(|| "an unknown holder".to_string(), baton_node::certs::Identity::dns_name);
    match client.request(Request::Revoke { fingerprint, holder: holder.clone() }).await? {
        Response::Written { index, .. } => {
            println!("revoked {holder} (sha256 {}) at index {index}", baton_node::revocation::hex(&fingerprint));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(ClientError::Unexpected(Box::new(other))),
    }
}

/// `baton discarded`: every node's journal, page by page (each page fits a frame).
pub async fn discarded(
    client: &mut Client,
    json: bool,
    since_index: u64,
    limit: Option<u64>,
) -> Result<ExitCode, ClientError> {
    #[derive(serde::Serialize)]
    struct Row {
        node: String,
        #[serde(flatten)]
        write: baton_node::status::DiscardedWrite,
    }
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for addr in client.addrs().to_vec() {
        let node = client.status_of(addr).await.map(|s| s.id).unwrap_or_else(|_| addr.to_string());
        let (mut after_record, mut taken) = (0, 0u64);
        loop {
            let wanted = limit.map_or(u64::MAX, |limit| limit - taken).min(u64::from(u32::MAX)) as u32;
            if wanted == 0 {
                break;
            }
            let request = Request::DiscardedPage { since_index, after_record, limit: wanted };
            let page = match client.call(addr, &request).await {
                Ok(Response::DiscardedPage(Json(page))) => page,
                // A node older than paging: its whole journal in one answer.
                Ok(Response::Error { code: baton_node::frame::ErrorCode::Unsupported, .. }) => {
                    if let Ok(Response::Discarded(Json(writes))) = client.call(addr, &Request::Discarded).await {
                        let writes = writes.into_iter().filter(|w| w.index >= since_index);
                        rows.extend(writes.map(|write| Row { node: node.clone(), write }));
                    }
                    break;
                }
                _ => {
                    notes.push(format!("{node}: no answer; its discarded writes are not listed"));
                    break;
                }
            };
            if after_record == 0 && page.rotated_away.records > 0 {
                notes.push(format!(
                    "{node}: {} older records (through record {}) were rotated out of its journal",
                    page.rotated_away.records, page.rotated_away.through_record
                ));
            }
            taken += page.writes.len() as u64;
            rows.extend(page.writes.into_iter().map(|write| Row { node: node.clone(), write }));
            match page.next_after_record {
                Some(next) => after_record = next,
                None => break,
            }
        }
    }
    if json {
        for row in &rows {
            println!("{}", serde_json::to_string(row).expect("rows serialize"));
        }
    } else if rows.is_empty() {
        println!("no discarded writes");
    } else {
        println!("{:<6} {:>6} {:>8} {:<6} {:<24} value", "node", "term", "index", "op", "key");
        for row in &rows {
            let w = &row.write;
            let cut = if w.value_truncated { " (cut: the node's journal file holds it whole)" } else { "" };
            println!(
                "{:<6} {:>6} {:>8} {:<6} {:<24} {}{cut}",
                row.node,
                w.term,
                w.index,
                w.op,
                w.key,
                w.value.as_deref().unwrap_or("-")
            );
        }
    }
    for note in notes {
        eprintln!("baton: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `YYYY-MM-DD HH:MM:SS.mmmZ` (UTC) of a Unix time in milliseconds.
fn utc_time(unix_ms: u64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    let format = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]Z",
    )
    .expect("a valid format description");
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| format!("unix ms {unix_ms}"))
}

#[cfg(test)]
mod tests {
    /// Goal: history times read as UTC dates, to the millisecond.
    #[test]
    fn history_times_are_utc_dates() {
        assert_eq!(super::utc_time(1_796_094_669_770), "2026-12-01 03:11:09.770Z");
        assert_eq!(super::utc_time(0), "1970-01-01 00:00:00.000Z");
    }
}
