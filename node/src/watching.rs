//! Watches and scans as a consumer uses them (see `baton_host::watch` for what a node
//! serves): a [`Watch`] remembers the last index it reported complete and, when its node
//! goes away (killed, restarted, partitioned: a node sends a progress mark at least
//! every second, so silence means it is gone), opens the watch again on the next node
//! from the index after it. Changes therefore come in log order and each once, with no
//! gap, across failovers, switchovers and restarts, in every write mode that keeps
//! acknowledged writes (async mode may discard writes on failover, which a node then
//! reports as [`WatchEnd::Discarded`]). A gap is never papered over: a watch whose next
//! index is compacted on the node ends with [`WatchEnd::Compacted`], and [`Client::scan`]
//! then gives the keys as of an index to watch on from.

use crate::client::{Client, ClientError};
use crate::frame::{read_frame, write_frame, ErrorCode, Frame, Request, Response, WatchChange, WatchEnd};
use std::net::SocketAddr;
use std::time::Duration;

/// A node that sent nothing for this long (it sends a progress mark every second) is
/// taken for gone, and the watch moves to another node.
pub const WATCH_SILENCE_MAX: Duration = Duration::from_secs(3);
/// Opening a watch on one node takes at most this long.
const OPEN_TIMEOUT: Duration = Duration::from_millis(800);
/// A pause between rounds over every node when none serves the watch.
const ROUND_PAUSE: Duration = Duration::from_millis(200);
/// A scan page may take long on a slow link.
const SCAN_PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Changes complete through `through_index` (see `frame::Response::WatchBatch`), from
/// the node at `node`, whose applied index was `lag_entries` behind the commit it knew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchBatch {
    pub changes: Vec<WatchChange>,
    pub through_index: u64,
    pub lag_entries: u64,
    pub node: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The node ended the watch: resuming needs the consumer's decision (see [`WatchEnd`]).
    #[error("{0}")]
    Ended(WatchEnd),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("no node serves the watch: {0}")]
    NoNode(String),
}

/// Keys and values under a prefix as of `index` (a node's applied index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    pub index: u64,
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    pub node: SocketAddr,
}

struct Open {
    node: SocketAddr,
    receive: quinn::RecvStream,
    /// Kept open: dropping it would end the stream the node answers on.
    _send: quinn::SendStream,
}

/// A resumable watch of one prefix.
pub struct Watch {
    client: Client,
    prefix: Vec<u8>,
    /// The next index to ask for; 0 until the first batch says where "now" is.
    next_index: u64,
    open: Option<Open>,
    /// The node to try first.
    preferred: usize,
}

impl Watch {
    /// The index the next change reported will be at or after.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The next batch (possibly a progress mark with no changes). Moves to another node
    /// when its node goes away; ends with [`WatchError::Ended`] when a node cannot go on
    /// without a gap.
    pub async fn next(&mut self) -> Result<WatchBatch, WatchError> {
        loop {
            if self.open.is_none() {
                self.open = Some(self.reopen().await?);
            }
            let open = self.open.as_mut().expect("opened above");
            let node = open.node;
            let frame = tokio::time::timeout(WATCH_SILENCE_MAX, read_frame(&mut open.receive)).await;
            match frame {
                Ok(Ok(Some(Frame::Response {
                    response: Response::WatchBatch { changes, through_index, lag_entries },
                }))) => {
                    if through_index + 1 < self.next_index {
                        continue; // Cannot happen with a node that keeps the protocol; never go back.
                    }
                    let changes: Vec<WatchChange> =
                        changes.into_iter().filter(|c| c.index >= self.next_index).collect();
                    self.next_index = through_index + 1;
                    return Ok(WatchBatch { changes, through_index, lag_entries, node });
                }
                Ok(Ok(Some(Frame::Response { response: Response::WatchEnded { end } }))) => {
                    self.open = None;
                    return Err(WatchError::Ended(end));
                }
                Ok(Ok(Some(Frame::Response { response: Response::Error { code, message, .. } }))) => {
                    self.open = None;
                    if code != ErrorCode::TooManyWatchers {
                        return Err(ClientError::Refused { code, message }.into());
                    }
                    self.preferred += 1;
                }
                // Gone, silent, or speaking nonsense: go on through another node.
                _ => {
                    tracing::debug!(%node, "watch stream lost; resuming elsewhere");
                    self.open = None;
                    self.preferred += 1;
                }
            }
        }
    }

    /// Opens the watch on the first node that takes it, from `next_index`.
    async fn reopen(&mut self) -> Result<Open, WatchError> {
        let addrs = self.client.addrs().to_vec();
        let mut problems = Vec::new();
        for round in 0.. {
            for offset in 0..addrs.len() {
                let node = addrs[(self.preferred + offset) % addrs.len()];
                match self.open_on(node).await {
                    Ok(open) => {
                        self.preferred = (self.preferred + offset) % addrs.len();
                        return Ok(open);
                    }
                    Err(problem) => problems.push(format!("{node}: {problem}")),
                }
            }
            if round * ROUND_PAUSE.as_millis() as u64 >= self.client.deadline.as_millis() as u64 {
                break;
            }
            problems.clear();
            tokio::time::sleep(ROUND_PAUSE).await;
        }
        Err(WatchError::NoNode(problems.join("; ")))
    }

    async fn open_on(&mut self, node: SocketAddr) -> Result<Open, String> {
        let request = Request::Watch { prefix: self.prefix.clone(), from_index: self.next_index };
        let attempt = async {
            let (mut send, receive) = self.client.open_stream(node).await.map_err(|e| e.to_string())?;
            write_frame(&mut send, &Frame::Request { request }).await.map_err(|e| e.to_string())?;
            Ok(Open { node, receive, _send: send })
        };
        tokio::time::timeout(OPEN_TIMEOUT, attempt).await.map_err(|_| "timed out".to_string())?
    }
}

impl Client {
    /// A watch of every change under `prefix` from `from_index` on (0: from the next
    /// change on the node it opens on). See [`Watch`].
    pub fn watch(&self, prefix: &[u8], from_index: u64) -> Watch {
        Watch {
            client: self.sharing_connections(),
            prefix: prefix.to_vec(),
            next_index: from_index,
            open: None,
            preferred: 0,
        }
    }

    /// Every key under `prefix` and its value, as of one node's applied index (the first
    /// node that answers). Watch from `index + 1` to follow on without a gap.
    pub async fn scan(&mut self, prefix: &[u8]) -> Result<Scan, ClientError> {
        let mut last = None;
        for node in self.addrs().to_vec() {
            match self.scan_on(node, prefix).await {
                Ok(scan) => return Ok(scan),
                Err(error) => last = Some(error),
            }
        }
        Err(last.expect("at least one address"))
    }

    async fn scan_on(&mut self, node: SocketAddr, prefix: &[u8]) -> Result<Scan, ClientError> {
        let no_answer = |reason: String| ClientError::NoAnswer { addr: node, reason, heard_from: false };
        let (mut send, mut receive) = self.open_stream(node).await?;
        let request = Request::Scan { prefix: prefix.to_vec() };
        write_frame(&mut send, &Frame::Request { request }).await.map_err(|e| no_answer(e.to_string()))?;
        let mut pairs = Vec::new();
        loop {
            let frame = tokio::time::timeout(SCAN_PAGE_TIMEOUT, read_frame(&mut receive))
                .await
                .map_err(|_| no_answer("timed out".into()))?
                .map_err(|e| no_answer(e.to_string()))?;
            match frame {
                Some(Frame::Response { response: Response::ScanPage { pairs: page, index, done } }) => {
                    pairs.extend(page);
                    if done {
                        let _ = send.finish();
                        return Ok(Scan { index, pairs, node });
                    }
                }
                Some(Frame::Response { response: Response::Error { code, message, .. } }) => {
                    return Err(ClientError::Refused { code, message })
                }
                other => return Err(no_answer(format!("unexpected answer: {other:?}"))),
            }
        }
    }
}
