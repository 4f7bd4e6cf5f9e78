//! The network side of a node: QUIC endpoints, one long-lived outgoing stream per peer
//! for replication (reconnecting with backoff), and the accept loop for peers, clients
//! and operators.
//!
//! Every connection opens with a hello on its first stream: the caller names itself, and
//! the name must match its certificate; only then is anything it sends trusted. A
//! malformed frame closes that connection with a logged reason; the node goes on.

use crate::certs::Identity;
use crate::frame::{read_frame, write_frame, ErrorCode, Frame, FrameError, Response, PROTOCOL_VERSION};
use crate::handoff::{Input, LinkState, SnapshotChunk, TransportCounters};
use crate::membership::Directory;
use crate::tls::{node_server_name, peer_identity};
use baton_common::NodeId;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Short: once a partition heals, a link is back within one dial of this pause.
const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// The first pause between a joining node's questions, and the longest.
const JOIN_PAUSE_MIN: Duration = Duration::from_millis(50);
const JOIN_PAUSE_MAX: Duration = Duration::from_secs(1);
/// Frames queued for one peer while its link is busy or down.
pub const LINK_QUEUE_FRAMES: usize = 4_096;

/// This process's incarnation: a new number on every start.
pub fn incarnation() -> u64 {
    static INCARNATION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INCARNATION.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 40)
    })
}

/// Restarts outgoing links when their peer restarted. A killed peer sends no QUIC
/// reset, so without this a link would write into a dead connection until the idle
/// timeout; the restarted peer's own hello, with a new incarnation, is the signal.
/// Which runs of a peer this node knows of.
#[derive(Debug, Default, Clone, Copy)]
struct PeerRuns {
    /// The incarnation in its last hello to us.
    last_hello: Option<u64>,
    /// The incarnation our outgoing link is attached to (from its hello reply).
    attached: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Restarts {
    seen: Mutex<HashMap<NodeId, PeerRuns>>,
    /// Each outgoing link's wake-up, by peer (links come and go with the membership).
    links: Mutex<HashMap<NodeId, Arc<tokio::sync::Notify>>>,
}

impl Restarts {
    fn link(&self, peer: NodeId) -> Arc<tokio::sync::Notify> {
        self.links.lock().expect("never poisoned").entry(peer).or_default().clone()
    }

    /// The link to `peer` is gone (the peer left the membership).
    fn forget(&self, peer: NodeId) {
        self.links.lock().expect("never poisoned").remove(&peer);
        self.seen.lock().expect("never poisoned").remove(&peer);
    }

    /// Our link to `peer` is attached to this run of it.
    fn attached(&self, peer: NodeId, incarnation: u64) {
        self.seen.lock().expect("never poisoned").entry(peer).or_default().attached = Some(incarnation);
    }

    /// Records `peer`'s incarnation from its hello. One that differs from the last hello,
    /// or from the run our link is attached to, means it restarted: the link restarts
    /// (a link dialing or waiting to dial again dials at once). So does a first hello
    /// while our link has never been up. The same one again (a reconnect) changes
    /// nothing, so links never ping-pong.
    fn observe(&self, peer: NodeId, incarnation: u64) {
        let mut seen = self.seen.lock().expect("never poisoned");
        let runs = seen.entry(peer).or_default();
        let restarted = [runs.last_hello, runs.attached].into_iter().flatten().any(|known| known != incarnation);
        // Never attached: our link is still dialing (its first packets may have gone
        // out before the peer listened, and QUIC retransmits them only after a second or
        // more), and the peer's hello says it listens now.
        let never_attached = runs.attached.is_none();
        runs.last_hello = Some(incarnation);
        drop(seen);
        if restarted {
            tracing::info!(%peer, "peer restarted: reconnecting to it");
        }
        if restarted || never_attached {
            if let Some(link) = self.links.lock().expect("never poisoned").get(&peer) {
                link.notify_one();
            }
        }
    }
}

/// How this node dials its peers: its endpoint, the latest certificates (replaced on
/// SIGHUP: each attempt dials with them), and where it records the connections it opens
/// (so a revocation closes them).
#[derive(Clone)]
pub struct Dialer {
    pub endpoint: quinn::Endpoint,
    pub client_config: tokio::sync::watch::Receiver<quinn::ClientConfig>,
    pub open: Arc<crate::revocation::OpenConnections>,
    /// A link that receives nothing (not even QUIC's acknowledgements of its own
    /// keep-alives) for this long is closed and dialed again: the election timeout.
    pub silence_max: Duration,
}

/// Starts and stops the outgoing links: one per peer in the membership, started when
/// the peer joins it and stopped when it leaves.
#[derive(Clone)]
pub struct Links {
    pub dialer: Dialer,
    pub directory: Directory,
    pub restarts: Arc<Restarts>,
}

impl Links {
    /// Starts the link to `peer`: frames sent into the returned queue go out on it, and
    /// it runs until the queue's sender is dropped.
    pub fn start(&self, peer: NodeId) -> (mpsc::Sender<Frame>, Arc<LinkState>) {
        let (sender, frames) = mpsc::channel(LINK_QUEUE_FRAMES);
        let state = Arc::new(LinkState::default());
        let (dialer, directory, restarts) = (self.dialer.clone(), self.directory.clone(), self.restarts.clone());
        tokio::spawn(run_link(dialer, directory, peer, frames, restarts, state.clone()));
        (sender, state)
    }

    /// The link to `peer` was stopped (its queue's sender dropped): wake it so it ends
    /// now, not at its next dial.
    pub fn stopped(&self, peer: NodeId) {
        self.restarts.link(peer).notify_one();
        self.restarts.forget(peer);
    }
}

/// Keeps one outgoing replication stream to `peer` alive and feeds it frames, until
/// the driver drops the sender of `frames`.
pub async fn run_link(
    dialer: Dialer,
    directory: Directory,
    peer: NodeId,
    mut frames: mpsc::Receiver<Frame>,
    restarts: Arc<Restarts>,
    state: Arc<LinkState>,
) {
    let Dialer { endpoint, client_config, open, silence_max } = dialer;
    // The round trip this link last measured: its next dial's handshake starts from it.
    let mut last_rtt = crate::tls::PEER_INITIAL_RTT;
    let restarted = restarts.link(peer);
    let mut backoff = crate::backoff::Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut last_refusal = None;
    loop {
        if frames.is_closed() {
            return; // The peer left the membership.
        }
        // Looked up at each attempt: the membership may give the peer a new address,
        // and a peer known by a host name may have moved.
        let name = directory.name_of(peer);
        let Some(addr) = directory.addr_of(peer) else {
            tracing::debug!(peer = %name, "no address known for the peer yet");
            tokio::select! {
                () = tokio::time::sleep(BACKOFF_MAX) => {}
                () = restarted.notified() => {}
            }
            continue;
        };
        let local = endpoint.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let dial = async {
            let resolved = addr.resolve(local).await?;
            let mut config = client_config.borrow().clone();
            config.transport_config(crate::tls::peer_link_transport(silence_max, last_rtt));
            let hello = peer_hello(&directory);
            connect(&endpoint, &config, resolved, &name, hello).await
        };
        // A dial to a dead peer waits out QUIC's handshake retransmissions (seconds):
        // once the peer's own hello says it runs again, dial it afresh at once.
        let attempt = tokio::select! {
            attempt = dial => attempt,
            () = restarted.notified() => {
                backoff.reset();
                continue;
            }
        };
        match attempt {
            Ok((connection, mut send, peer_incarnation)) => {
                tracing::info!(peer = %name, %addr, "replication link up");
                if let Some(certificate) = crate::tls::peer_certificate(&connection) {
                    open.add(&certificate, &connection);
                }
                restarts.attached(peer, peer_incarnation);
                state.set_up(Some(&connection));
                backoff.reset();
                loop {
                    tokio::select! {
                        frame = frames.recv() => {
                            let Some(frame) = frame else { break };
                            if let Err(error) = write_frame(&mut send, &frame).await {
                                tracing::info!(peer = %name, %error, "replication link lost");
                                break;
                            }
                        }
                        () = restarted.notified() => break,
                        error = connection.closed() => {
                            tracing::info!(peer = %name, %error, "replication link lost");
                            break;
                        }
                    }
                }
                state.set_up(None);
                last_rtt = connection.rtt();
                connection.close(0u32.into(), b"link closed");
                if frames.is_closed() || state.is_retired() {
                    return;
                }
            }
            // A refusal is the peer's verdict on this node (removed, another cluster):
            // said once, loudly; an unreachable peer is routine.
            Err(error) if error.starts_with("hello refused") && last_refusal.as_ref() != Some(&error) => {
                tracing::warn!(peer = %name, %addr, %error, "the peer refuses this node");
                last_refusal = Some(error);
            }
            Err(error) => tracing::debug!(peer = %name, %addr, %error, "cannot reach peer"),
        }
        // Frames queued while down are stale; the core resends what matters.
        while frames.try_recv().is_ok() {}
        if frames.is_closed() || state.is_retired() {
            return; // Left the membership, or removed and down: no more dials.
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_pause()) => {}
            () = restarted.notified() => backoff.reset(), // It runs again: dial now.
        }
    }
}

/// This node's hello to a peer: its name, its id, and the cluster it belongs to.
fn peer_hello(directory: &Directory) -> Frame {
    Frame::PeerHello {
        protocol: PROTOCOL_VERSION,
        name: directory.my_name().to_string(),
        incarnation: incarnation(),
        node_id: directory.me().0,
        cluster_id: directory.cluster_id(),
    }
}

async fn connect(
    endpoint: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    addr: std::net::SocketAddr,
    peer: &str,
    hello: Frame,
) -> Result<(quinn::Connection, quinn::SendStream, u64), String> {
    let attempt = async {
        let connecting =
            endpoint.connect_with(config.clone(), addr, &node_server_name(peer)).map_err(|e| e.to_string())?;
        let connection = connecting.await.map_err(|e| crate::tls::explain_handshake_error(&e.to_string()))?;
        let (mut send, mut receive) = connection.open_bi().await.map_err(|e| e.to_string())?;
        write_frame(&mut send, &hello).await.map_err(|e| e.to_string())?;
        match read_frame(&mut receive).await.map_err(|e| e.to_string())? {
            Some(Frame::HelloReply { accepted: true, incarnation, .. }) => Ok((connection, send, incarnation)),
            Some(Frame::HelloReply { reason, .. }) => Err(format!("hello refused: {reason}")),
            other => Err(format!("unexpected answer to hello: {other:?}")),
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt).await.map_err(|_| "timed out".to_string())?
}

/// Asks the members at `addrs` (in turn, until one answers) for the membership record
/// a node named as this one's certificate is starts from: the node was added as a
/// learner (`baton member add`) and holds no state yet. Waits, asking again after
/// pauses that grow from [`JOIN_PAUSE_MIN`] to [`JOIN_PAUSE_MAX`], until it has been
/// added; each new refusal is logged with its reason. (A pause of a whole second every
/// time made a replacement started just before its `member add` wait up to a second
/// after the add: the fault suite's `member` nemesis, 1.0–1.25 s until every node was in
/// the stream.)
pub async fn join(
    endpoint: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    my_name: &str,
    addrs: &[crate::addr::NodeAddr],
) -> crate::status::MembersView {
    let hello = Frame::PeerHello {
        protocol: PROTOCOL_VERSION,
        name: my_name.to_string(),
        incarnation: incarnation(),
        node_id: 0,
        cluster_id: 0,
    };
    let mut last_reason = String::new();
    let mut pauses = crate::backoff::Backoff::new(JOIN_PAUSE_MIN, JOIN_PAUSE_MAX);
    loop {
        for addr in addrs {
            let local = endpoint.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
            let attempt = async {
                let resolved = addr.resolve(local).await?;
                // The member's certificate is checked against the CA, not against a
                // name: a joining node does not know the members' names yet.
                let (connection, _, _) = connect(endpoint, config, resolved, "any", hello.clone()).await?;
                let (mut send, mut receive) = connection.open_bi().await.map_err(|e| e.to_string())?;
                write_frame(&mut send, &Frame::Request { request: crate::frame::Request::Members })
                    .await
                    .map_err(|e| e.to_string())?;
                let answer = read_frame(&mut receive).await.map_err(|e| e.to_string())?;
                connection.close(0u32.into(), b"joined");
                match answer {
                    Some(Frame::Response { response: Response::Members(view) }) => Ok(view.0),
                    other => Err(format!("unexpected answer: {other:?}")),
                }
            };
            match tokio::time::timeout(CONNECT_TIMEOUT * 2, attempt).await {
                Ok(Ok(view)) => match view.record.id_of(my_name) {
                    Some(id) if view.record.membership.member(id).is_some() => return view,
                    _ => last_reason = format!("{addr} answered with a membership without {my_name}"),
                },
                Ok(Err(reason)) if reason != last_reason => {
                    tracing::warn!(%addr, %reason, "cannot join yet; trying again");
                    last_reason = reason;
                }
                Ok(Err(_)) => {}
                Err(_) => tracing::debug!(%addr, "no answer to the join in time"),
            }
        }
        tokio::time::sleep(pauses.next_pause()).await;
    }
}

/// Accepts connections until the endpoint closes.
pub async fn accept_loop(
    endpoint: quinn::Endpoint,
    membership: Directory,
    inputs: mpsc::Sender<Input>,
    counters: Arc<TransportCounters>,
    restarts: Arc<Restarts>,
    open: Arc<crate::revocation::OpenConnections>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (membership, inputs, counters) = (membership.clone(), inputs.clone(), counters.clone());
        let (restarts, open) = (restarts.clone(), open.clone());
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(error) => {
                    counters.handshakes_refused.fetch_add(1, Ordering::Relaxed);
                    let error = crate::tls::explain_handshake_error(&error.to_string());
                    tracing::warn!(%remote, %error, "refused a connection: TLS handshake failed");
                    return;
                }
            };
            // Known by its certificate, so a revocation closes it at once.
            if let Some(certificate) = crate::tls::peer_certificate(&connection) {
                open.add(&certificate, &connection);
            }
            if let Err(reason) = serve_connection(&connection, &membership, &inputs, &counters, &restarts).await {
                tracing::warn!(%remote, %reason, "closed a connection");
                connection.close(1u32.into(), reason.as_bytes());
            }
        });
    }
}

async fn serve_connection(
    connection: &quinn::Connection,
    membership: &Directory,
    inputs: &mpsc::Sender<Input>,
    counters: &Arc<TransportCounters>,
    restarts: &Restarts,
) -> Result<(), String> {
    let identity = peer_identity(connection).ok_or("the certificate names no Baton identity")?;
    let (mut send, mut receive) = tokio::time::timeout(HELLO_TIMEOUT, connection.accept_bi())
        .await
        .map_err(|_| "no hello in time".to_string())?
        .map_err(|e| e.to_string())?;
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut receive))
        .await
        .map_err(|_| "no hello in time".to_string())?
        .map_err(|e| e.to_string())?;
    // A node's hello says which id it holds (see `Directory::admit`).
    let mut peer = None;
    let refusal = match (&hello, &identity) {
        (Some(Frame::Hello { protocol, .. } | Frame::PeerHello { protocol, .. }), _)
            if *protocol != PROTOCOL_VERSION =>
        {
            Some(format!("protocol {protocol}; this node speaks {PROTOCOL_VERSION}"))
        }
        (Some(Frame::Hello { name, .. } | Frame::PeerHello { name, .. }), Identity::Node(certified))
            if name != certified =>
        {
            Some(format!("hello names {name} but the certificate names {certified}"))
        }
        (Some(Frame::Hello { .. }), Identity::Node(certified)) => {
            Some(format!("node {certified} runs an older baton-node, whose hello does not say its id. Fix: upgrade it"))
        }
        (Some(Frame::PeerHello { node_id, cluster_id, .. }), Identity::Node(certified)) => {
            match membership.admit(certified, *node_id, *cluster_id) {
                Ok(id) => {
                    peer = Some((id, *node_id == 0));
                    None
                }
                Err(refused) => Some(refused.0),
            }
        }
        (Some(Frame::Hello { cluster_id, .. }), _)
            if *cluster_id != 0 && ![0, *cluster_id].contains(&membership.cluster_id()) =>
        {
            Some(format!(
                "this node is in cluster {:016x}, the client expects cluster {cluster_id:016x}. Fix: give the client \
                 only its own cluster's addresses (--cluster), or the right --cluster-id",
                membership.cluster_id()
            ))
        }
        (Some(Frame::Hello { .. }), _) => None,
        (other, _) => Some(format!("expected a hello, got {other:?}")),
    };
    if let Some(reason) = refusal {
        counters.hellos_refused.fetch_add(1, Ordering::Relaxed);
        let _ = write_frame(
            &mut send,
            &Frame::HelloReply {
                accepted: false,
                reason: reason.clone(),
                incarnation: incarnation(),
                cluster_id: membership.cluster_id(),
            },
        )
        .await;
        let _ = send.finish();
        // Let the refusal reach the caller before the connection closes.
        let _ = tokio::time::timeout(HELLO_TIMEOUT, send.stopped()).await;
        return Err(format!("refused {identity}: {reason}"));
    }
    let cluster_id = membership.cluster_id();
    write_frame(
        &mut send,
        &Frame::HelloReply { accepted: true, reason: String::new(), incarnation: incarnation(), cluster_id },
    )
    .await
    .map_err(|e| e.to_string())?;
    match identity {
        Identity::Node(_) if peer.is_some_and(|(_, joining)| joining) => {
            // A node joining asks for the membership record and goes; nothing it sends
            // counts for replication.
            let Ok((send, receive)) = connection.accept_bi().await else { return Ok(()) };
            serve_requests(send, receive, inputs.clone(), counters.clone(), Origin::Joining).await;
            Ok(())
        }
        Identity::Node(name) => {
            let (from, _) = peer.expect("admitted above");
            if let Some(Frame::PeerHello { incarnation, .. }) = hello {
                restarts.observe(from, incarnation);
            }
            // Further streams on a peer's connection carry its clients' requests, which
            // it forwards while this node leads (see `crate::forward`).
            let forwarded = connection.clone();
            let (forward_inputs, forward_counters) = (inputs.clone(), counters.clone());
            tokio::spawn(async move {
                while let Ok((send, receive)) = forwarded.accept_bi().await {
                    let origin = Origin::Forwarded;
                    tokio::spawn(serve_requests(
                        send,
                        receive,
                        forward_inputs.clone(),
                        forward_counters.clone(),
                        origin,
                    ));
                }
            });
            loop {
                match read_frame(&mut receive).await {
                    Ok(Some(Frame::Replication { message, entries })) => {
                        if inputs.send(Input::Peer { from, message, entries }).await.is_err() {
                            return Ok(()); // Shutting down.
                        }
                    }
                    Ok(Some(Frame::Relay { to, message })) => {
                        if inputs.send(Input::Relay { from, to: NodeId(to), message }).await.is_err() {
                            return Ok(());
                        }
                    }
                    // An upstream passing on its leader's append request: it counts as
                    // the leader's (this node answers the leader directly).
                    Ok(Some(Frame::Relayed { from: leader, message, entries })) => {
                        let from = NodeId(leader);
                        if inputs.send(Input::Peer { from, message, entries }).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(Some(Frame::SnapshotChunk {
                        term,
                        snapshot_index,
                        snapshot_term,
                        offset,
                        total_bytes,
                        data,
                    })) => {
                        let snapshot = baton_common::Position { index: snapshot_index, term: snapshot_term };
                        let chunk = SnapshotChunk { from, term, snapshot, offset, total_bytes, data };
                        if inputs.send(Input::SnapshotChunk(chunk)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(Some(other)) => {
                        counters.malformed_frames.fetch_add(1, Ordering::Relaxed);
                        return Err(format!("node {name} sent {other:?} on its replication stream"));
                    }
                    Ok(None) => return Ok(()),
                    Err(error) => {
                        counters.malformed_frames.fetch_add(1, Ordering::Relaxed);
                        return Err(format!("node {name}: {error}"));
                    }
                }
            }
        }
        Identity::Operator(_) | Identity::Client(_) => {
            let origin = if matches!(identity, Identity::Operator(_)) { Origin::Operator } else { Origin::Client };
            loop {
                let (send, receive) = match connection.accept_bi().await {
                    Ok(streams) => streams,
                    Err(_) => return Ok(()), // The client went away.
                };
                tokio::spawn(serve_requests(send, receive, inputs.clone(), counters.clone(), origin));
            }
        }
    }
}

/// Who sent the requests on a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Client,
    Operator,
    /// A follower forwarding its clients' requests to this node.
    Forwarded,
    /// A node asking to join, which may only ask for the membership.
    Joining,
}

/// Answers the requests on one stream in turn: a client keeps one stream for its
/// requests, one at a time, each answered in turn; a stream that ends after one request
/// (an older client) is answered the same way. A request this build does not know is
/// answered with an error; anything else unreadable ends the stream. A watch keeps the
/// stream to its end.
async fn serve_requests(
    mut send: quinn::SendStream,
    mut receive: quinn::RecvStream,
    inputs: mpsc::Sender<Input>,
    counters: Arc<TransportCounters>,
    origin: Origin,
) {
    loop {
        let request = match read_frame(&mut receive).await {
            Ok(Some(Frame::Request { request })) => request,
            Err(FrameError::UnknownRequest(reason)) => {
                counters.malformed_frames.fetch_add(1, Ordering::Relaxed);
                let message = format!(
                    "this node (baton-node {}) does not know that request ({reason}). Fix: upgrade \
                     the node, or use the `baton` of its version",
                    env!("CARGO_PKG_VERSION")
                );
                let response = Response::Error { code: ErrorCode::Unsupported, message, leader_hint: None };
                if write_frame(&mut send, &Frame::Response { response }).await.is_err() {
                    return;
                }
                continue;
            }
            _ => break,
        };
        let request = match request {
            crate::frame::Request::Members => request,
            _ if origin == Origin::Joining => break,
            crate::frame::Request::Watch { prefix, from_index } if origin != Origin::Forwarded => {
                crate::watch_stream::serve_watch(&mut send, &inputs, prefix, from_index).await;
                return;
            }
            crate::frame::Request::Scan { prefix } if origin != Origin::Forwarded => {
                if !crate::watch_stream::serve_scan(&mut send, &inputs, prefix).await {
                    return;
                }
                continue;
            }
            request => request,
        };
        let (reply, answer) = oneshot::channel();
        let (operator, forwarded) = (origin == Origin::Operator, origin == Origin::Forwarded);
        if inputs.send(Input::Client { request, operator, forwarded, reply }).await.is_err() {
            return;
        }
        let Ok(response) = answer.await else { return };
        if write_frame(&mut send, &Frame::Response { response }).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}
