//! The driver's part in client requests: routing each to this node or the leader,
//! handing it to the host (`baton_host::node`: propose, read, switchover, campaign,
//! pause, membership), and turning the host's answers and refusals into wire responses.
//! The operator-only check is exhaustive over `Request`.

use super::{unix_ms, Driver, WriteReply};
use crate::frame::{ErrorCode, Json, ReadMode, Request, Response, KEY_BYTES_MAX, VALUE_BYTES_MAX};
use crate::kv::Command;
use baton_common::{NodeId, ProposeError, ReadError, Role};
use baton_host::node::{Proposed, ReadAt, ReadRefusal};
use baton_host::operator::SwitchoverVerdict;
use baton_host::route::Route;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a client write or a waiting read may wait before it is answered with a
/// timeout (`baton_host::node` decides what each is told).
const REQUEST_TIMEOUT: Duration = Duration::from_micros(baton_host::node::REQUEST_TIMEOUT_US);

impl Driver {
    /// Answers a client's request here, or forwards it to the leader when it asked for
    /// that (see `baton_host::route`).
    pub(super) fn route_request(
        &mut self,
        request: Request,
        operator: bool,
        forwarded: bool,
        reply: oneshot::Sender<Response>,
    ) {
        let (request, via_leader) = match request {
            Request::ViaLeader { request } if request.forwardable() => (*request, true),
            Request::ViaLeader { request } => (*request, false),
            request => (request, false),
        };
        let leading = self.host.replica.role() == Role::Leader;
        let link = |id: NodeId| self.link_states.get(&id).and_then(|state| state.connection());
        let leader = self.host.replica.leader().filter(|id| link(*id).is_some());
        match baton_host::route::route(via_leader, forwarded, leading, leader.map(|id| id.0)) {
            Route::Here => self.handle_request(request, operator, reply),
            Route::NoLeader => {
                let _ = reply.send(self.error(ErrorCode::NotLeader, "no leader to forward to: an election may be on"));
            }
            Route::Forward { leader } => {
                let leader = NodeId(leader);
                let Some(connection) = link(leader) else { unreachable!("filtered above") };
                self.requests_forwarded += 1;
                let name = self.membership.name_of(leader).to_string();
                tokio::spawn(crate::forward::forward(connection, name, request, reply));
            }
        }
    }

    pub(super) fn handle_request(&mut self, request: Request, operator: bool, reply: oneshot::Sender<Response>) {
        if operator_only(&request) && !operator {
            let _ = reply.send(self.error(ErrorCode::Forbidden, "operators only: use an operator certificate"));
            return;
        }
        let now = self.now();
        let command = match request {
            Request::History => {
                let _ = reply.send(Response::History(Json(self.history())));
                return;
            }
            Request::Discarded => {
                // The first page: older clients ask for the whole journal in one answer.
                let writes = self.discarded_page(0, 0, crate::discarded::PAGE_RECORDS_MAX).writes;
                let _ = reply.send(Response::Discarded(Json(writes)));
                return;
            }
            Request::DiscardedPage { since_index, after_record, limit } => {
                let page = self.discarded_page(since_index, after_record, limit as usize);
                let _ = reply.send(Response::DiscardedPage(Json(page)));
                return;
            }
            Request::Switchover { to, dry_run } => {
                let response = self.switchover(now, to, dry_run);
                let _ = reply.send(response);
                self.pump(None);
                return;
            }
            Request::Campaign { dry_run } => {
                let response = match self.host.campaign(now, dry_run) {
                    Ok(()) => Response::Campaign { accepted: true, reason: None },
                    Err(reason) => Response::Campaign { accepted: false, reason: Some(reason) },
                };
                let _ = reply.send(response);
                self.pump(None);
                return;
            }
            Request::SetPaused { paused } => {
                let response = match self.host.set_paused(now, paused) {
                    Ok(()) => Response::Done,
                    Err(message) => self.error(ErrorCode::NotLeader, message),
                };
                let _ = reply.send(response);
                self.pump(None);
                return;
            }
            Request::Status => {
                let _ = reply.send(Response::Status(Json(Box::new(self.status()))));
                return;
            }
            Request::ViaLeader { request } => return self.handle_request(*request, operator, reply),
            Request::Watch { .. } | Request::Scan { .. } => {
                let _ = reply.send(self.error(ErrorCode::Unsupported, "a watch or a scan takes a stream of its own"));
                return;
            }
            Request::Members => {
                let _ = reply.send(Response::Members(Json(self.members_view())));
                return;
            }
            Request::ChangeMembers { change, dry_run } => {
                self.change_members(now, change, dry_run, reply);
                self.pump(None);
                return;
            }
            Request::Backup => return self.backup(reply),
            Request::BackupChunk { index, offset } => return self.backup_chunk(index, offset, reply),
            Request::Get { key, read } => return self.read(key, read, reply),
            Request::Put { key, value } => Command::Put { key, value },
            Request::Delete { key } => Command::Delete { key },
            Request::Cas { key, expected, new } => Command::Cas { key, expected, new },
            Request::Revoke { fingerprint, holder } => Command::Revoke { fingerprint, holder },
            Request::Session { id, seq, acked_seq, write } => {
                let write = match *write {
                    Request::Put { key, value } => Command::Put { key, value },
                    Request::Delete { key } => Command::Delete { key },
                    Request::Cas { key, expected, new } => Command::Cas { key, expected, new },
                    other => {
                        let message = format!("only a put, delete or compare-and-set goes in a session, not {other:?}");
                        let _ = reply.send(self.error(ErrorCode::Unsupported, message));
                        return;
                    }
                };
                // The leader's clock goes into the log, so every replica expires
                // sessions at the same entry. Named by number, if it can be, when it is
                // appended (`propose`).
                Command::SessionById { id, seq, acked_seq, at_ms: unix_ms(), write: Box::new(write) }
            }
        };
        if let Some(problem) = oversized(&command) {
            let _ = reply.send(self.error(ErrorCode::TooLarge, problem));
            return;
        }
        self.propose(Instant::now(), command, reply);
    }

    /// Appends a client's write, holds it while leadership is moving, or refuses it
    /// (`baton_host::node` decides).
    pub(super) fn propose(&mut self, since: Instant, command: Command, reply: oneshot::Sender<Response>) {
        let now = self.now();
        let since_us = since.saturating_duration_since(self.started).as_micros() as u64;
        let proposed = self.host.propose(now, since_us, command, (since, reply));
        self.carry_out_proposal(proposed);
    }

    pub(super) fn carry_out_proposal(&mut self, proposed: Proposed<WriteReply>) {
        match proposed {
            Proposed::Appended { position, command, .. } => {
                // No pump here: the run loop pumps once per burst of inputs, so the
                // burst's writes leave in one append request per follower. A failed
                // append stops the node; its client hears the connection close.
                let _ = self.append(position.index, position.term, command.encode());
            }
            Proposed::Held => {}
            Proposed::Refused { error, reply: (_, reply) } => {
                let response = match error {
                    ProposeError::NotLeader { .. } => self.error(ErrorCode::NotLeader, "not the leader"),
                    ProposeError::TransferInProgress => {
                        self.error(ErrorCode::TransferInProgress, "a switchover is in progress; retry shortly")
                    }
                    ProposeError::NotEnoughInSync { have, need } => self.error(
                        ErrorCode::NotEnoughInSync,
                        format!("not enough in-sync replicas (have {have}, need {need})"),
                    ),
                    ProposeError::LogFull => self.error(ErrorCode::Internal, "the log's term table is full"),
                };
                let _ = reply.send(response);
            }
        }
    }

    /// Gives held writes another go once leadership has settled, or once the oldest has
    /// waited too long (`baton_host::held` decides).
    pub(super) fn release_held_writes(&mut self) {
        let now = self.now();
        for proposed in self.host.release_held(now) {
            self.carry_out_proposal(proposed);
        }
    }

    pub(super) fn switchover(&mut self, now: u64, to: Option<String>, dry_run: bool) -> Response {
        match self.host.switchover(now, to.as_deref(), dry_run) {
            SwitchoverVerdict::Accepted { target, started } => {
                Response::Switchover { target: Some(target), reasons: vec![], started }
            }
            SwitchoverVerdict::NotLeader => self.error(ErrorCode::NotLeader, "switchovers go through the leader"),
            SwitchoverVerdict::Refused { target, reasons } => Response::Switchover { target, reasons, started: false },
        }
    }

    pub(super) fn read(&mut self, key: Vec<u8>, mode: ReadMode, reply: oneshot::Sender<Response>) {
        let at = match mode {
            ReadMode::Any => ReadAt::Any,
            ReadMode::After(index) => ReadAt::After(index),
            ReadMode::Leader => ReadAt::Leader,
        };
        let now = self.now();
        if let Err((refusal, reply)) = self.host.read(now, key, at, reply) {
            let response = match refusal {
                ReadRefusal::Witness => self.error(
                    ErrorCode::Unsupported,
                    "this node is a witness: it votes but holds no data. Fix: read from a data node",
                ),
                ReadRefusal::Core(ReadError::NotLeader { .. }) => {
                    self.error(ErrorCode::NotLeader, "linearizable reads go to the leader")
                }
                ReadRefusal::Core(ReadError::NotReady) => {
                    self.error(ErrorCode::NotReady, "the leader is not ready to serve reads yet")
                }
            };
            let _ = reply.send(response);
            return;
        }
        self.serve_reads();
    }

    pub(super) fn expire_requests(&mut self) {
        let expired = self.host.expire(self.now(), REQUEST_TIMEOUT.as_micros() as u64);
        for (index, (_, reply)) in expired.writes {
            let _ = reply.send(self.error(
                ErrorCode::OutcomeUnknown,
                format!("write at index {index} not acknowledged within {REQUEST_TIMEOUT:?}; it may still apply"),
            ));
        }
        for (index, reply) in expired.reads {
            let message = format!("this node had not applied index {index} within {REQUEST_TIMEOUT:?}");
            let _ = reply.send(self.error(ErrorCode::Timeout, message));
        }
    }

    pub(super) fn leader_hint(&self) -> Option<String> {
        self.host.replica.leader().and_then(|id| self.membership.addr_of(id)).map(|addr| addr.to_string())
    }

    pub(super) fn error(&self, code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error { code, message: message.into(), leader_hint: self.leader_hint() }
    }
}

/// Whether only an operator's certificate may make `request`. Exhaustive, so a new
/// request is classified when it is added, never let through by default.
fn operator_only(request: &Request) -> bool {
    match request {
        Request::Switchover { .. }
        | Request::Campaign { .. }
        | Request::SetPaused { .. }
        | Request::Backup
        | Request::BackupChunk { .. }
        | Request::Revoke { .. }
        | Request::ChangeMembers { .. } => true,
        Request::Members => false,
        Request::Put { .. }
        | Request::Get { .. }
        | Request::Delete { .. }
        | Request::Cas { .. }
        | Request::Status
        | Request::History
        | Request::Discarded
        | Request::DiscardedPage { .. }
        | Request::Watch { .. }
        | Request::Scan { .. } => false,
        Request::ViaLeader { request } => operator_only(request),
        // Only writes go in a session (checked when it is proposed).
        Request::Session { write, .. } => operator_only(write),
    }
}

/// Why a command is too large to write, if it is.
fn oversized(command: &Command) -> Option<String> {
    let (key, value) = match command.write() {
        Command::Put { key, value } => (key, Some(value)),
        Command::Delete { key } => (key, None),
        Command::Cas { key, expected, new } => {
            let larger = [expected, new].into_iter().flatten().max_by_key(|v| v.len());
            (key, larger)
        }
        Command::Session { .. } | Command::SessionById { .. } | Command::SessionByNumber { .. } => {
            return Some("a session write inside another".into())
        }
        Command::Revoke { .. } | Command::Members(_) => return None,
    };
    if key.len() > KEY_BYTES_MAX {
        return Some(format!("key of {} bytes is over the {KEY_BYTES_MAX}-byte limit", key.len()));
    }
    match value {
        Some(value) if value.len() > VALUE_BYTES_MAX => {
            Some(format!("value of {} bytes is over the {VALUE_BYTES_MAX}-byte limit", value.len()))
        }
        _ => None,
    }
}
