//! Fetching for the console, off the UI loop: one task per node asks for its status
//! every refresh period, each with its own client and timeout, and a publisher joins
//! the latest answers at the same rate. A dead or slow node makes only its own row stale
//! (then unreachable); it never delays the others or the screen.

use crate::status::{assemble, ClusterStatus, Target};
use baton_node::certs::Identity;
use baton_node::client::Client;
use baton_node::frame::{Json, Request, Response};
use baton_node::status::{HistoryEntry, NodeStatus};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long one status request may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(1_000);
/// A node with no answer for this long is shown unreachable even while its request is
/// still pending.
const STALE_AFTER: Duration = Duration::from_millis(1_500);
/// The leadership history is fetched this often.
const HISTORY_EVERY: Duration = Duration::from_secs(1);

/// The latest answer from one node.
#[derive(Default)]
struct Slot {
    id: Option<String>,
    answer: Option<Result<NodeStatus, String>>,
    answered_at: Option<Instant>,
}

/// One published view: the joined status and the leader's history.
pub struct Update {
    pub status: ClusterStatus,
    pub history: Vec<HistoryEntry>,
}

pub fn spawn(targets: Vec<Target>, certs: PathBuf, identity: Identity, every: Duration) -> mpsc::Receiver<Update> {
    let (updates, receiver) = mpsc::channel(4);
    let slots: Arc<Vec<Mutex<Slot>>> = Arc::new(targets.iter().map(|_| Mutex::new(Slot::default())).collect());
    let addrs: Vec<SocketAddr> = targets.iter().map(|target| target.addr).collect();
    for (position, addr) in addrs.iter().copied().enumerate() {
        let (slots, certs, identity) = (slots.clone(), certs.clone(), identity.clone());
        tokio::spawn(async move {
            let mut client = match Client::new(vec![addr], &certs, &identity) {
                Ok(client) => client,
                Err(error) => {
                    slots[position].lock().expect("never poisoned").answer = Some(Err(error.to_string()));
                    return;
                }
            };
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let answer = match tokio::time::timeout(STATUS_TIMEOUT, client.status_of(addr)).await {
                    Ok(answer) => answer.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {} ms", STATUS_TIMEOUT.as_millis())),
                };
                let mut slot = slots[position].lock().expect("never poisoned");
                if let Ok(status) = &answer {
                    slot.id = Some(status.id.clone());
                }
                slot.answer = Some(answer);
                slot.answered_at = Some(Instant::now());
            }
        });
    }
    tokio::spawn(async move {
        let mut history = Vec::new();
        let mut history_fetched: Option<Instant> = None;
        let mut history_client = Client::new(addrs.clone(), &certs, &identity).ok();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let answers = targets
                .iter()
                .zip(slots.iter())
                .map(|(target, slot)| {
                    let slot = slot.lock().expect("never poisoned");
                    let stale = slot.answered_at.is_none_or(|at| at.elapsed() > STALE_AFTER);
                    let answer = match &slot.answer {
                        Some(answer) if !stale => answer.clone(),
                        Some(Err(error)) => Err(error.clone()),
                        _ => Err(match slot.answered_at {
                            Some(at) => format!("no answer for {:.1} s", at.elapsed().as_secs_f64()),
                            None => "no answer yet".into(),
                        }),
                    };
                    (target.label.clone(), slot.id.clone(), answer)
                })
                .collect();
            let status = assemble(answers);
            if history_fetched.is_none_or(|at| at.elapsed() >= HISTORY_EVERY) {
                history_fetched = Some(Instant::now());
                // Rows come in the targets' order.
                let leader_addr = status
                    .nodes
                    .iter()
                    .position(|n| n.role.as_deref() == Some("leader"))
                    .and_then(|position| addrs.get(position).copied());
                if let (Some(client), Some(addr)) = (history_client.as_mut(), leader_addr) {
                    let call = tokio::time::timeout(STATUS_TIMEOUT, client.call(addr, &Request::History));
                    if let Ok(Ok(Response::History(Json(entries)))) = call.await {
                        history = entries;
                    }
                }
            }
            if updates.send(Update { status, history: history.clone() }).await.is_err() {
                return; // The console quit.
            }
        }
    });
    receiver
}
