//! The Rust client: connect to any node of a cluster, follow "not leader" hints, and
//! retry retryable errors with backoff until a deadline. Writes go in the client's
//! session (see `crate::session`), so they are resent after any failure and still take
//! effect once; "outcome unknown" is left for a deadline reached after a request may have
//! arrived.

use crate::addr::NodeAddr;
use crate::certs::{Credentials, Identity};
use crate::frame::{read_frame, write_frame, ErrorCode, Frame, Json, ReadMode, Request, Response, PROTOCOL_VERSION};
use crate::session::SessionId;
use crate::status::NodeStatus;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A live node answers within milliseconds; a killed one never does (QUIC hears no
/// reset), so each attempt is short and the next node gets its turn.
const CALL_TIMEOUT: Duration = Duration::from_millis(400);
/// A read that waits for this node to apply an index may legitimately take longer.
const WAITING_READ_TIMEOUT: Duration = Duration::from_secs(11);
/// Writing a large map to disk, or one chunk of it over a slow edge link (256 KiB at
/// 1 Mbit/s takes 2 s), takes longer than a request.
const BACKUP_STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node that failed to answer is skipped.
const FAILED_NODE_SKIP: Duration = Duration::from_secs(2);
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(2);
/// Refusals during an election are cheap and the election ends within a second: keep
/// asking often rather than backing off past it.
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(20);
/// Redirects to a named leader followed at once, without a pause, in one request: more
/// means the nodes disagree about who leads, and the client backs off.
const REDIRECTS_AT_ONCE_MAX: u32 = 3;
/// A client stops resending one write after this long, whatever its deadline: well inside
/// the time a session must be idle before a full cluster may expire it, so a resend never
/// meets an expired session that had applied it.
pub const SESSION_RESEND_WINDOW: Duration = Duration::from_secs(120);
const _: () = assert!(SESSION_RESEND_WINDOW.as_millis() * 2 <= crate::session::SESSION_EVICT_IDLE_MIN_MS as u128);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Setup(String),
    /// No connection could be made: the request never left the client.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    /// The request was sent, or may have been, and no answer came. `heard_from`: the
    /// node's QUIC stack sent packets during the call (it acknowledged the request), so
    /// the node runs and is only slow to answer, as a leader is while its followers'
    /// links lose packets; a killed or paused node sends nothing.
    #[error("no answer from {addr}: {reason}")]
    NoAnswer { addr: SocketAddr, reason: String, heard_from: bool },
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    #[error("gave up after {0:?}: {1}")]
    Deadline(Duration, String),
    #[error("unexpected answer: {0:?}")]
    Unexpected(Box<Response>),
}

/// What a downloaded backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// The log position the map is as of.
    pub index: u64,
    pub term: u64,
    pub keys: usize,
    pub bytes: u64,
}

/// A read's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub value: Option<Vec<u8>>,
    /// The index the answering node had applied.
    pub applied_index: u64,
    /// How far that is behind the commit index the node knows of.
    pub lag_entries: u64,
}

/// This client's session: its id, the number its next write gets, and the highest
/// number the cluster's state machine has answered.
#[derive(Clone, Debug)]
struct ClientSession {
    id: SessionId,
    next_seq: u64,
    acked_seq: u64,
}

impl ClientSession {
    fn new() -> ClientSession {
        let mut id = [0u8; 16];
        // The operating system's generator does not fail on Linux once booted; a
        // fixed id would make two clients share a session, so there is no fallback.
        getrandom::fill(&mut id).expect("the operating system provides random bytes");
        ClientSession { id, next_seq: 1, acked_seq: 0 }
    }
}

/// A QUIC stream that carries one client's requests to one node, one at a time: one
/// stream per client instead of one per request, so a request costs no stream set-up
/// and tear-down on either side.
struct RequestStream {
    /// The connection it belongs to: a replaced connection means a new stream.
    connection_id: usize,
    send: quinn::SendStream,
    receive: quinn::RecvStream,
}

pub struct Client {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    name: String,
    addrs: Vec<SocketAddr>,
    connections: HashMap<SocketAddr, quinn::Connection>,
    /// This client's open request stream per node (never shared between clients).
    streams: HashMap<SocketAddr, RequestStream>,
    /// Where the leader was last seen.
    leader: Option<SocketAddr>,
    /// Nodes that just failed to answer: a follower's stale hint must not send the
    /// client straight back to a dead leader.
    failed_at: HashMap<SocketAddr, Instant>,
    session: ClientSession,
    /// How long a call may keep retrying (a write at most `SESSION_RESEND_WINDOW`).
    pub deadline: Duration,
    /// Every request goes to this node, which forwards writes and leader reads to the
    /// leader (see `crate::forward`): for an application that can reach only it.
    via: Option<SocketAddr>,
    /// The cluster this client talks to (0: not known yet): given (`expect_cluster`) or
    /// learned from the first node that answers, shared with the clients made from this
    /// one. A node of another cluster refuses the hello, naming both ids.
    cluster_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addrs", &self.addrs).field("leader", &self.leader).finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the cluster at `addrs`, authenticating as `identity` with the
    /// certificates in `certs`.
    pub fn new(addrs: Vec<SocketAddr>, certs: &Path, identity: &Identity) -> Result<Client, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::Setup("no cluster addresses (use --cluster or BATON_CLUSTER)".into()));
        }
        let credentials = Credentials::load(certs, identity).map_err(|e| ClientError::Setup(e.to_string()))?;
        let config = crate::tls::any_node_client_config(&credentials).map_err(|e| ClientError::Setup(e.to_string()))?;
        // An IPv4 socket cannot reach an IPv6 node: a cluster given only by IPv6 addresses
        // gets an IPv6 socket.
        let any = if addrs.iter().all(SocketAddr::is_ipv6) { "[::]:0" } else { "0.0.0.0:0" };
        let endpoint = quinn::Endpoint::client(any.parse().expect("valid"))
            .map_err(|e| ClientError::Setup(format!("cannot open a UDP socket: {e}")))?;
        Ok(Client {
            endpoint,
            config,
            name: identity.file_stem(),
            addrs,
            connections: HashMap::new(),
            streams: HashMap::new(),
            leader: None,
            failed_at: HashMap::new(),
            session: ClientSession::new(),
            deadline: Duration::from_secs(15),
            via: None,
            cluster_id: Arc::default(),
        })
    }

    /// Another client (with a session of its own) for the same cluster and identity on
    /// this client's UDP socket, with connections of its own: many clients in one process
    /// (a load generator, a server with many callers) then wait on one socket instead of
    /// one each.
    pub fn on_same_socket(&self) -> Client {
        Client {
            endpoint: self.endpoint.clone(),
            config: self.config.clone(),
            name: self.name.clone(),
            addrs: self.addrs.clone(),
            connections: HashMap::new(),
            streams: HashMap::new(),
            leader: self.leader,
            failed_at: HashMap::new(),
            session: ClientSession::new(),
            deadline: self.deadline,
            via: self.via,
            cluster_id: self.cluster_id.clone(),
        }
    }

    /// Talk only to nodes of cluster `cluster_id` (as `baton member list` shows it): a
    /// node of another one refuses this client, naming both ids.
    pub fn expect_cluster(self, cluster_id: u64) -> Client {
        self.cluster_id.store(cluster_id, Ordering::Relaxed);
        self
    }

    /// The cluster's id as given or learned (0: no node has answered yet, or the
    /// cluster has not chosen one).
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Relaxed)
    }

    /// This client, sending every request to `node` (one of its addresses, or another
    /// address of a node): the node answers it, or forwards it to the leader and relays
    /// the answer, with the same meaning (an acknowledgement is one; a lost answer is
    /// "outcome unknown", and a session write is resent through `node`).
    pub fn forwarding_through(mut self, node: SocketAddr) -> Client {
        self.via = Some(node);
        self
    }

    /// Another client that also shares this client's connections (each client has its
    /// own QUIC stream on them, so requests of several clients on one connection go out
    /// in the same packets). A connection that breaks is replaced by each client on its own.
    /// A node lets one connection hold `tls::STREAMS_PER_CONNECTION_MAX` streams, the
    /// hello's included: a client beyond that times out once and then connects on its own.
    pub fn sharing_connections(&self) -> Client {
        Client { connections: self.connections.clone(), ..self.on_same_socket() }
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// A stream of its own to the node at `addr` (on this client's connection), for a
    /// request answered with many frames: a watch, a scan.
    pub async fn open_stream(
        &mut self,
        addr: SocketAddr,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        let connection = self.connection(addr).await?;
        connection.open_bi().await.map_err(|e| {
            self.connections.remove(&addr);
            ClientError::Unreachable { addr, reason: e.to_string() }
        })
    }

    async fn connection(&mut self, addr: SocketAddr) -> Result<quinn::Connection, ClientError> {
        if let Some(connection) = self.connections.get(&addr).filter(|c| c.close_reason().is_none()) {
            return Ok(connection.clone());
        }
        let unreachable = |reason: String| ClientError::Unreachable { addr, reason };
        let attempt = async {
            let connection =
                self.endpoint.connect_with(self.config.clone(), addr, "node.baton").map_err(|e| e.to_string())?;
            let connection = connection.await.map_err(|e| crate::tls::explain_handshake_error(&e.to_string()))?;
            let (mut send, mut receive) = connection.open_bi().await.map_err(|e| e.to_string())?;
            let expected = self.cluster_id.load(Ordering::Relaxed);
            let hello = Frame::Hello {
                protocol: PROTOCOL_VERSION,
                name: self.name.clone(),
                incarnation: 0,
                cluster_id: expected,
            };
            write_frame(&mut send, &hello).await.map_err(|e| e.to_string())?;
            match read_frame(&mut receive).await.map_err(|e| e.to_string())? {
                Some(Frame::HelloReply { accepted: true, cluster_id, .. }) => {
                    // The first node with an id names the cluster; the others must agree
                    // (a node that does not check, of an older build, is checked here).
                    match self.cluster_id.compare_exchange(0, cluster_id, Ordering::Relaxed, Ordering::Relaxed) {
                        Err(known) if cluster_id != 0 && known != cluster_id => Err(format!(
                            "refused: the node is in cluster {cluster_id:016x}, the client's other nodes in cluster \
                             {known:016x}. Fix: give it only one cluster's addresses (--cluster)"
                        )),
                        _ => Ok(connection),
                    }
                }
                Some(Frame::HelloReply { reason, .. }) => Err(format!("refused: {reason}")),
                other => Err(format!("unexpected answer to hello: {other:?}")),
            }
        };
        let connection = tokio::time::timeout(CALL_TIMEOUT, attempt)
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(unreachable)?;
        self.connections.insert(addr, connection.clone());
        Ok(connection)
    }

    /// One request to one node, no retries.
    /// Connects to every node now, so a later failover or switchover does not wait for
    /// TLS handshakes (a connection pool's warm-up). Unreachable nodes are skipped;
    /// returns how many are connected.
    pub async fn connect_all(&mut self) -> usize {
        let mut connected = 0;
        for addr in self.addrs.clone() {
            if self.connection(addr).await.is_ok() {
                connected += 1;
            }
        }
        connected
    }

    pub async fn call(&mut self, addr: SocketAddr, request: &Request) -> Result<Response, ClientError> {
        let connection = self.connection(addr).await?;
        // This client's request stream on that connection: kept between calls, and
        // taken out while a call runs, so a call that fails or is cancelled midway never
        // leaves a half-read answer for the next one.
        let stream = self.streams.remove(&addr).filter(|s| s.connection_id == connection.stable_id());
        // Whether any of the request may have left this client.
        let mut sent = false;
        let datagrams_before = connection.stats().udp_rx.datagrams;
        let attempt = async {
            let mut stream = match stream {
                Some(stream) => stream,
                None => {
                    let (send, receive) = connection.open_bi().await.map_err(|e| e.to_string())?;
                    RequestStream { connection_id: connection.stable_id(), send, receive }
                }
            };
            sent = true;
            write_frame(&mut stream.send, &Frame::Request { request: request.clone() })
                .await
                .map_err(|e| e.to_string())?;
            match read_frame(&mut stream.receive).await.map_err(|e| e.to_string())? {
                Some(Frame::Response { response }) => Ok((response, stream)),
                other => Err(format!("unexpected frame: {other:?}")),
            }
        };
        let timeout = match request {
            Request::Get { read: ReadMode::After(_), .. } => WAITING_READ_TIMEOUT,
            Request::Backup | Request::BackupChunk { .. } => BACKUP_STEP_TIMEOUT,
            _ => CALL_TIMEOUT,
        };
        let result = tokio::time::timeout(timeout, attempt).await.map_err(|_| "timed out".to_string()).and_then(|r| r);
        match result {
            Ok((response, stream)) => {
                self.streams.insert(addr, stream);
                Ok(response)
            }
            Err(reason) => {
                let heard_from = connection.stats().udp_rx.datagrams > datagrams_before;
                if !heard_from {
                    self.connections.remove(&addr);
                }
                match sent {
                    true => Err(ClientError::NoAnswer { addr, reason, heard_from }),
                    false => Err(ClientError::Unreachable { addr, reason }),
                }
            }
        }
    }

    /// A request to the cluster: to the leader if known, following hints, retrying what
    /// is retryable until the deadline. A session write is resent after any failure; a
    /// write outside a session is never resent once it may have arrived.
    pub async fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let started = Instant::now();
        let in_session = matches!(request, Request::Session { .. });
        // A membership change is never resent either once it may have arrived: a second
        // one would be refused (already a member, a change in flight), hiding the first.
        let write = in_session
            || matches!(
                request,
                Request::Put { .. }
                    | Request::Delete { .. }
                    | Request::Cas { .. }
                    | Request::ChangeMembers { dry_run: false, .. }
            );
        let deadline = if in_session { self.deadline.min(SESSION_RESEND_WINDOW) } else { self.deadline };
        let request = match self.via {
            Some(_) if request.forwardable() => Request::ViaLeader { request: Box::new(request) },
            _ => request,
        };
        let mut pause = crate::backoff::Backoff::new(RETRY_PAUSE_MIN, RETRY_PAUSE_MAX);
        let mut next = 0usize;
        let mut last_problem = String::from("no attempt");
        let mut redirects = 0;
        // Whether the write may have reached a node: then giving up leaves its outcome
        // unknown, and otherwise it provably was not applied.
        let mut maybe_delivered = false;
        let unknown = |problem: String| ClientError::Refused {
            code: ErrorCode::OutcomeUnknown,
            message: format!("{problem}; the write may or may not have applied"),
        };
        while started.elapsed() < deadline {
            let recently_failed = |addr: &SocketAddr, failed_at: &HashMap<SocketAddr, Instant>| {
                failed_at.get(addr).is_some_and(|at| at.elapsed() < FAILED_NODE_SKIP)
            };
            let addr = match self.via.or(self.leader.filter(|leader| !recently_failed(leader, &self.failed_at))) {
                Some(addr) => addr,
                None => {
                    // Round-robin, preferring nodes that have not just failed.
                    let count = self.addrs.len();
                    let pick = (0..count)
                        .map(|offset| self.addrs[(next + offset) % count])
                        .find(|addr| !recently_failed(addr, &self.failed_at))
                        .unwrap_or(self.addrs[next % count]);
                    next += 1;
                    pick
                }
            };
            match self.call(addr, &request).await {
                Ok(Response::Error { code, message, leader_hint }) if code.retryable() => {
                    self.leader = match leader_hint.and_then(|hint| hint.parse::<NodeAddr>().ok()) {
                        Some(hint) => {
                            let local = self.endpoint.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
                            hint.resolve(local).await.ok().filter(|hint| *hint != addr)
                        }
                        None => None,
                    };
                    last_problem = format!("{addr}: {message}");
                    if self.leader.is_some() && self.via.is_none() && redirects < REDIRECTS_AT_ONCE_MAX {
                        redirects += 1;
                        continue; // Named the leader: go there at once.
                    }
                }
                // Leadership moved before it was acknowledged: the session makes a resend
                // safe, and the next leader answers with what became of it.
                Ok(Response::Error { code: ErrorCode::OutcomeUnknown, message, .. }) if in_session => {
                    maybe_delivered = true;
                    self.leader = None;
                    last_problem = format!("{addr}: {message}");
                }
                Ok(Response::Error { code: ErrorCode::SessionExpired, message, .. }) => {
                    // Later writes go in a new session.
                    self.session = ClientSession::new();
                    return Err(match maybe_delivered {
                        true => unknown(format!("{addr}: {message}, but an earlier attempt may have been")),
                        false => ClientError::Refused { code: ErrorCode::SessionExpired, message },
                    });
                }
                Ok(Response::Error { code, message, .. }) => return Err(ClientError::Refused { code, message }),
                Ok(response) => {
                    self.leader = Some(addr);
                    self.failed_at.remove(&addr);
                    return Ok(response);
                }
                Err(error @ ClientError::NoAnswer { .. }) if write && !in_session => {
                    return Err(unknown(error.to_string()));
                }
                // The node runs but has not answered yet (a commit waiting on lossy
                // links): ask it again (a session write is resent safely) rather than
                // skip it for `FAILED_NODE_SKIP`, while the others would only name it
                // as the leader. Skipping it kept writes away for 2.4 s after each
                // such call in the fault suite's `loss` nemesis.
                Err(error @ ClientError::NoAnswer { heard_from: true, .. }) => {
                    maybe_delivered = true;
                    last_problem = error.to_string();
                }
                Err(error) => {
                    maybe_delivered |= matches!(error, ClientError::NoAnswer { .. });
                    self.leader = None;
                    self.failed_at.insert(addr, Instant::now());
                    last_problem = error.to_string();
                    continue; // Next node at once: this one is down or unreachable.
                }
            }
            tokio::time::sleep(pause.next_pause()).await;
        }
        match write && maybe_delivered {
            true => Err(unknown(format!("gave up after {deadline:?}: {last_problem}"))),
            false => Err(ClientError::Deadline(deadline, last_problem)),
        }
    }

    /// A put, delete or compare-and-set in this client's session, numbered after the
    /// last one that may have been sent: resent as often as needed, it takes effect once.
    async fn write(&mut self, write: Request) -> Result<Response, ClientError> {
        let (id, seq) = (self.session.id, self.session.next_seq);
        // Taken before the request goes out: a call dropped while it waits (a timeout
        // around it) may have put this number in the log, and the next write must not
        // reuse it (the cluster would answer that write with this one's outcome).
        self.session.next_seq = seq + 1;
        let request = Request::Session { id, seq, acked_seq: self.session.acked_seq, write: Box::new(write) };
        let result = self.request(request).await;
        if self.session.id != id {
            return result; // The session expired: the next write starts a new one.
        }
        match &result {
            Ok(Response::Written { .. } | Response::CasMismatch { .. }) => self.session.acked_seq = seq,
            // Provably never sent: the number is free for the next write.
            Err(ClientError::Deadline(..) | ClientError::Unreachable { .. } | ClientError::Setup(_)) => {
                self.session.next_seq = seq;
            }
            // The number may be in the log: never reuse it.
            _ => {}
        }
        result
    }

    /// Writes `value` at `key`; returns the (term, index) it was acknowledged at (for a
    /// resent write, where it first took effect).
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(u64, u64), ClientError> {
        match self.write(Request::Put { key: key.to_vec(), value: value.to_vec() }).await? {
            Response::Written { term, index } => Ok((term, index)),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub async fn delete(&mut self, key: &[u8]) -> Result<(u64, u64), ClientError> {
        match self.write(Request::Delete { key: key.to_vec() }).await? {
            Response::Written { term, index } => Ok((term, index)),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Reads `key` at the given consistency: the value (if any) and the applied index.
    pub async fn get(&mut self, key: &[u8], read: ReadMode) -> Result<(Option<Vec<u8>>, u64), ClientError> {
        self.read(key, read).await.map(|read| (read.value, read.applied_index))
    }

    /// Reads `key`, with the applied index and the lag of the node that answered.
    pub async fn read(&mut self, key: &[u8], read: ReadMode) -> Result<Read, ClientError> {
        let request = Request::Get { key: key.to_vec(), read };
        let response = match read {
            // Local reads go to whichever node answers, not necessarily the leader.
            ReadMode::Any | ReadMode::After(_) => self.any_node(&request).await?,
            ReadMode::Leader => self.request(request).await?,
        };
        match response {
            Response::Value { value, applied_index, lag_entries } => Ok(Read { value, applied_index, lag_entries }),
            Response::Error { code, message, .. } => Err(ClientError::Refused { code, message }),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    async fn any_node(&mut self, request: &Request) -> Result<Response, ClientError> {
        if let Some(via) = self.via {
            return self.call(via, request).await;
        }
        let mut last = None;
        for addr in self.addrs.clone() {
            match self.call(addr, request).await {
                Ok(response) => return Ok(response),
                Err(error) => last = Some(error),
            }
        }
        Err(last.expect("at least one address"))
    }

    /// Compare-and-set: `Ok(Ok(position))` when written, `Ok(Err(current))` on mismatch.
    pub async fn cas(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(u64, u64), Option<Vec<u8>>>, ClientError> {
        let request =
            Request::Cas { key: key.to_vec(), expected: expected.map(<[u8]>::to_vec), new: new.map(<[u8]>::to_vec) };
        match self.write(request).await? {
            Response::Written { term, index } => Ok(Ok((term, index))),
            Response::CasMismatch { current, .. } => Ok(Err(current)),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Downloads a backup of the cluster's data, as of the leader's applied index, into
    /// `out`: a snapshot file (`baton restore` installs it). It is written to a temporary
    /// file beside `out`, fsynced, read back whole (CRC, lengths, position), and only then
    /// renamed to `out`. Returns its position, how many keys it holds, and its size.
    pub async fn backup(&mut self, out: &Path) -> Result<BackupSummary, ClientError> {
        let (index, term, bytes) = match self.request(Request::Backup).await? {
            Response::BackupReady { index, term, bytes } => (index, term, bytes),
            other => return Err(ClientError::Unexpected(Box::new(other))),
        };
        let leader =
            self.leader.ok_or_else(|| ClientError::Setup("the leader that wrote the backup is gone".into()))?;
        let mut tmp = out.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = std::path::PathBuf::from(tmp);
        let downloaded = self.download_backup(leader, (index, term), bytes, &tmp).await;
        let keys = match downloaded {
            Ok(keys) => keys,
            Err(error) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(error);
            }
        };
        let local = |e: std::io::Error, path: &Path| ClientError::Setup(format!("{}: {e}", path.display()));
        std::fs::rename(&tmp, out).map_err(|e| local(e, out))?;
        let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| local(e, dir))?;
        Ok(BackupSummary { index, term, keys, bytes })
    }

    /// Fetches the backup at `(index, term)` from `node` into `tmp`, fsyncs it and checks
    /// it whole against the announced size and position; returns how many keys it holds.
    async fn download_backup(
        &mut self,
        node: SocketAddr,
        (index, term): (u64, u64),
        bytes: u64,
        tmp: &Path,
    ) -> Result<usize, ClientError> {
        use std::io::Write;
        let local = |e: std::io::Error| ClientError::Setup(format!("{}: {e}", tmp.display()));
        let mut file = std::fs::File::create(tmp).map_err(local)?;
        let mut offset = 0u64;
        loop {
            let data = match self.call(node, &Request::BackupChunk { index, offset }).await? {
                Response::BackupChunk { data } => data,
                Response::Error { message, code, .. } => return Err(ClientError::Refused { code, message }),
                other => return Err(ClientError::Unexpected(Box::new(other))),
            };
            if data.is_empty() {
                break;
            }
            offset += data.len() as u64;
            if offset > bytes {
                return Err(ClientError::Setup(format!("the backup grew past its announced {bytes} bytes")));
            }
            file.write_all(&data).map_err(local)?;
        }
        file.sync_all().map_err(local)?;
        drop(file);
        let crate::storage::snapshot::Snapshot { position, map, .. } =
            crate::storage::snapshot::read(tmp).map_err(|e| ClientError::Setup(e.to_string()))?;
        if offset != bytes || (position.index, position.term) != (index, term) {
            return Err(ClientError::Setup(format!(
                "the backup arrived incomplete: {offset} of {bytes} bytes, position {position:?}"
            )));
        }
        Ok(map.len())
    }

    /// One node's status.
    pub async fn status_of(&mut self, addr: SocketAddr) -> Result<NodeStatus, ClientError> {
        match self.call(addr, &Request::Status).await? {
            Response::Status(Json(status)) => Ok(*status),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }
}
