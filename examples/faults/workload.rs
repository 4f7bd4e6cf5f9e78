//! The clients: each, in its own session, puts unique values, compares-and-sets from
//! the value it last read, and reads with `--read leader`, on a few keys, one operation
//! at a time. Half the reads go where the client library sends them (the leader it
//! knows); the other half go to one node picked at random and stay there, as a local
//! application's would: a node that wrongly believes it still leads is asked too; every operation is recorded with its invocation and completion times and
//! outcome for the linearizability checker. A write whose outcome is unknown (no answer,
//! "outcome unknown", a timeout) is recorded without a completion; one refused without
//! effect is counted and left out; a failed read has no effect and is left out too.

use baton_node::client::{Client, ClientError};
use baton_node::frame::{ErrorCode, ReadMode, Request, Response};
use baton_suite::after_reads::{AfterRead, IndexedWrite};
use baton_suite::linearizable::{Op, Operation, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one operation may take before it counts as unknown (a write) or failed (a read).
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(3);

#[derive(Default, Debug, Clone, Copy, serde::Serialize)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
}

#[derive(Default, Debug)]
pub struct ClientResult {
    pub history: Vec<Operation>,
    pub writes: Counts,
    pub reads: Counts,
    /// When each acknowledged write completed, ns from the start.
    pub acked_ns: Vec<u64>,
    /// Every acknowledged write with the index it took effect at.
    pub indexed: Vec<IndexedWrite>,
    /// `after:INDEX` reads (the read-your-writes client's) and how they went.
    pub after_reads: Vec<AfterRead>,
    pub after_read_counts: Counts,
}

/// How long the read-your-writes client's `after:INDEX` read may wait: a node cut off
/// from the leader answers only after the heal, and the read then counts as failed.
pub const AFTER_READ_DEADLINE: Duration = Duration::from_secs(1);

/// Values travel as 16 hexadecimal digits: text, so the discarded-writes journal (which
/// keeps values as text) names them exactly.
fn value_bytes(value: Value) -> Vec<u8> {
    format!("{value:016x}").into_bytes()
}

/// A value read back (or named in a journal); bytes that no client wrote decode to one
/// nobody wrote.
pub fn decode(bytes: Option<&[u8]>) -> Option<Value> {
    bytes.map(|b| {
        std::str::from_utf8(b)
            .ok()
            .filter(|s| s.len() == 16)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .unwrap_or(u64::MAX)
    })
}

enum Outcome<T> {
    Ok(T),
    Failed,
    Unknown,
}

fn classify<T>(result: Result<Result<T, ClientError>, tokio::time::error::Elapsed>) -> Outcome<T> {
    match result {
        Ok(Ok(value)) => Outcome::Ok(value),
        Err(_) => Outcome::Unknown,
        Ok(Err(error)) => match error {
            ClientError::Refused { code: ErrorCode::OutcomeUnknown | ErrorCode::Timeout, .. }
            | ClientError::NoAnswer { .. }
            | ClientError::Unexpected(_) => Outcome::Unknown,
            ClientError::Refused { .. }
            | ClientError::Unreachable { .. }
            | ClientError::Deadline(..)
            | ClientError::Setup(_) => Outcome::Failed,
        },
    }
}

/// What every client of a run is given.
pub struct ClientSetup {
    pub id: u32,
    pub client: Client,
    /// Keys `k0` .. `k{keys - 1}`.
    pub keys: u32,
    /// Picks its operations.
    pub seed: u64,
    pub started: Instant,
    pub stop: Arc<AtomicBool>,
}

/// Runs one client until `stop`.
pub async fn run_client(setup: ClientSetup) -> ClientResult {
    let ClientSetup { id, mut client, keys, seed, started, stop } = setup;
    let nodes: Vec<SocketAddr> = client.addrs().to_vec();
    let (mut rng, mut result, mut counter) = (fastrand::Rng::with_seed(seed), ClientResult::default(), 0u64);
    let mut last_read: Vec<Option<Value>> = vec![None; keys as usize];
    let now_ns = || started.elapsed().as_nanos() as u64;
    while !stop.load(Ordering::Relaxed) {
        let key = rng.u32(..keys);
        let key_bytes = format!("k{key}").into_bytes();
        let choice = rng.u32(..10);
        let invoked_ns = now_ns();
        let record = |op: Op, completed_ns: Option<u64>| Operation { client: id, key, op, invoked_ns, completed_ns };
        if choice < 4 {
            counter += 1;
            let value = (u64::from(id) << 40) | counter;
            put_recorded(&mut client, id, key, value, started, &mut result).await;
        } else if choice < 6 {
            counter += 1;
            let new = (u64::from(id) << 40) | counter;
            let expected = last_read[key as usize];
            let expected_bytes = expected.map(value_bytes);
            let new_bytes = value_bytes(new);
            let call = client.cas(&key_bytes, expected_bytes.as_deref(), Some(&new_bytes));
            match classify(tokio::time::timeout(OPERATION_DEADLINE, call).await) {
                Outcome::Ok(answer) => {
                    let done = now_ns();
                    result.writes.ok += 1;
                    let applied = answer.is_ok();
                    if let Ok((_, index)) = answer {
                        result.acked_ns.push(done);
                        result.indexed.push(IndexedWrite { key, value: new, index });
                    }
                    result.history.push(record(Op::Cas { expected, new, applied: Some(applied) }, Some(done)));
                }
                Outcome::Unknown => {
                    result.writes.unknown += 1;
                    result.history.push(record(Op::Cas { expected, new, applied: None }, None));
                }
                Outcome::Failed => result.writes.failed += 1,
            }
        } else {
            let pinned = rng.bool().then(|| nodes[rng.usize(..nodes.len())]);
            let call = async {
                match pinned {
                    None => client.get(&key_bytes, ReadMode::Leader).await,
                    Some(addr) => {
                        let request = Request::Get { key: key_bytes.clone(), read: ReadMode::Leader };
                        match client.call(addr, &request).await? {
                            Response::Value { value, applied_index, .. } => Ok((value, applied_index)),
                            Response::Error { code, message, .. } => Err(ClientError::Refused { code, message }),
                            other => Err(ClientError::Unexpected(Box::new(other))),
                        }
                    }
                }
            };
            match classify(tokio::time::timeout(OPERATION_DEADLINE, call).await) {
                Outcome::Ok((value, _)) => {
                    let done = now_ns();
                    let value = decode(value.as_deref());
                    last_read[key as usize] = value;
                    result.reads.ok += 1;
                    result.history.push(record(Op::Read { value }, Some(done)));
                }
                Outcome::Unknown | Outcome::Failed => result.reads.failed += 1,
            }
        }
    }
    result
}

/// Puts `value` at key `key` for client `id` and records it in `result`; returns the
/// index it was acknowledged at, if it was.
async fn put_recorded(
    client: &mut Client,
    id: u32,
    key: u32,
    value: Value,
    started: Instant,
    result: &mut ClientResult,
) -> Option<u64> {
    let invoked_ns = started.elapsed().as_nanos() as u64;
    let key_bytes = format!("k{key}").into_bytes();
    let value_bytes = value_bytes(value);
    let put = client.put(&key_bytes, &value_bytes);
    let record = |completed_ns| Operation { client: id, key, op: Op::Put { value }, invoked_ns, completed_ns };
    match classify(tokio::time::timeout(OPERATION_DEADLINE, put).await) {
        Outcome::Ok((_, index)) => {
            let done = started.elapsed().as_nanos() as u64;
            result.writes.ok += 1;
            result.acked_ns.push(done);
            result.history.push(record(Some(done)));
            result.indexed.push(IndexedWrite { key, value, index });
            Some(index)
        }
        Outcome::Unknown => {
            result.writes.unknown += 1;
            result.history.push(record(None));
            None
        }
        Outcome::Failed => {
            result.writes.failed += 1;
            None
        }
    }
}

/// The read-your-writes client: puts a unique value, and once it is acknowledged at
/// index I asks one node picked at random for the key `after:I`; every such read is
/// checked by `baton_suite::after_reads`. It runs beside the other clients, so a read
/// waiting on a node cut off from the leader holds up none of their writes.
pub async fn run_after_reader(setup: ClientSetup) -> ClientResult {
    let ClientSetup { id, mut client, keys, seed, started, stop } = setup;
    let nodes: Vec<SocketAddr> = client.addrs().to_vec();
    let (mut rng, mut result, mut counter) = (fastrand::Rng::with_seed(seed), ClientResult::default(), 0u64);
    while !stop.load(Ordering::Relaxed) {
        let key = rng.u32(..keys);
        let key_bytes = format!("k{key}").into_bytes();
        counter += 1;
        let value = (u64::from(id) << 40) | counter;
        let Some(index) = put_recorded(&mut client, id, key, value, started, &mut result).await else { continue };
        let node = nodes[rng.usize(..nodes.len())];
        let request = Request::Get { key: key_bytes.clone(), read: ReadMode::After(index) };
        match tokio::time::timeout(AFTER_READ_DEADLINE, client.call(node, &request)).await {
            Ok(Ok(Response::Value { value, applied_index, .. })) => {
                result.after_read_counts.ok += 1;
                let value = decode(value.as_deref());
                let node = node.to_string();
                result.after_reads.push(AfterRead { client: id, key, at_index: index, applied_index, value, node });
            }
            _ => result.after_read_counts.failed += 1,
        }
    }
    result
}
