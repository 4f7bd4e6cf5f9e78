//! What the node's tasks hand each other: the driver's inputs (from the transport, the
//! metrics server and blocking threads), the frames it sends out, a peer link's state,
//! the transport's counters and received snapshot pieces. In a module of its own, so the
//! driver, the transport and the snapshot transfer each import this and never each other.

use crate::frame::{Frame, Request, Response};
use crate::storage::snapshot::Snapshot;
use baton_common::{Message, NodeId, PersistSeq, Position};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Everything the driver's loop reacts to.
pub enum Input {
    Peer {
        from: NodeId,
        message: Message,
        entries: Vec<Vec<u8>>,
    },
    /// A client's request; `operator` when its certificate is an operator's;
    /// `forwarded` when a follower forwarded it here (it is never forwarded again).
    Client {
        request: Request,
        operator: bool,
        forwarded: bool,
        reply: oneshot::Sender<Response>,
    },
    /// The leader (`from`) asks this node to send learner `to` an append request with
    /// entries from this node's own log (see `crate::frame::Frame::Relay`).
    Relay {
        from: NodeId,
        to: NodeId,
        message: Message,
    },
    Synced {
        seq: PersistSeq,
        result: Result<(), String>,
        elapsed: Duration,
    },
    /// A piece of a snapshot from the leader.
    SnapshotChunk(SnapshotChunk),
    /// A whole received snapshot, fsynced and checked (or why it is unusable).
    SnapshotReceived {
        received: Received,
        result: Result<Box<Snapshot>, String>,
    },
    /// A local snapshot at `position` is written and fsynced to its temporary file.
    SnapshotWritten {
        position: Position,
        /// Its size once installed; `None` if a newer snapshot was installed meanwhile.
        result: Result<Option<u64>, String>,
    },
    /// A client's watch (see `baton_host::watch`): its batches go to `sink`.
    Watch {
        prefix: Vec<u8>,
        from_index: u64,
        sink: WatchSink,
    },
    /// A watch's stream sent everything queued for it: the driver fills the queue again
    /// (otherwise a watch catching up on an idle node would wait for the next input).
    WatchRoom,
    /// A client's scan: the map as of the applied index (a clone: O(1)), paged out by
    /// the transport off the driver's loop.
    Scan {
        reply: oneshot::Sender<ScanView>,
    },
    /// Stop: a leader first hands leadership to the best caught-up follower (controlled
    /// shutdown), then the log is made durable and the driver returns.
    Shutdown,
}

/// Batches of a watch queued for its stream at most; a consumer slower than that falls
/// behind and catches up from the log (see `baton_host::watch`).
pub const WATCH_QUEUE_BATCHES: usize = 4;

/// Where a watch's answers go: its batches, then at most one final answer (why it
/// ended, or why it was refused), which is sent even when the queue is full.
#[derive(Debug)]
pub struct WatchSink {
    pub batches: mpsc::Sender<Response>,
    pub end: oneshot::Sender<Response>,
}

/// The state machine's map as of `applied_index`, for a scan.
pub struct ScanView {
    pub map: baton_host::map::Map,
    pub applied_index: u64,
}

/// Where the driver sends frames to peers; the transport drains it.
pub type Outbound = std::collections::HashMap<NodeId, mpsc::Sender<Frame>>;

/// Counters of refused or odd input, shown in logs and status.
#[derive(Debug, Default)]
pub struct TransportCounters {
    pub handshakes_refused: AtomicU64,
    pub hellos_refused: AtomicU64,
    pub malformed_frames: AtomicU64,
}

/// Which connection an outgoing link is on, for work that spans many frames (a snapshot
/// send): frames queued or written on a connection that then failed are lost, so such
/// work must start again on the next one. Even: the link is down; odd: it is up. It
/// counts up at every change. While up, it also holds the connection, on which a
/// follower forwards its clients' requests to the leader (see `crate::forward`).
#[derive(Debug, Default)]
pub struct LinkState {
    generation: AtomicU64,
    connection: std::sync::Mutex<Option<quinn::Connection>>,
    /// The peer is in no membership from the committed one on: the link ends at its
    /// next failure instead of dialing again (see [`LinkState::retire`]).
    retired: std::sync::atomic::AtomicBool,
}

impl LinkState {
    /// The peer's removal has committed: the link serves while it is up (the removed
    /// node may still be hearing the entries that remove it), but once it goes down it
    /// ends rather than dial again. Dialing a removed node's address for ever cost
    /// thousands of failed TLS handshakes a minute where a replacement took the address
    /// (the fault suite's `member` nemesis), until the next snapshot dropped the record.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// The count of changes so far: equal counts mean the same connection.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn is_up(&self) -> bool {
        self.generation() % 2 == 1
    }

    /// The link's connection while it is up.
    pub fn connection(&self) -> Option<quinn::Connection> {
        self.connection.lock().expect("never poisoned").clone()
    }

    /// The transport marks its link up (on `connection`) or down.
    pub(crate) fn set_up(&self, connection: Option<&quinn::Connection>) {
        *self.connection.lock().expect("never poisoned") = connection.cloned();
        if self.is_up() != connection.is_some() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// One chunk as received from a peer.
#[derive(Debug)]
pub struct SnapshotChunk {
    pub from: NodeId,
    pub term: u64,
    pub snapshot: Position,
    pub offset: u64,
    pub total_bytes: u64,
    pub data: Vec<u8>,
}

/// A whole snapshot file has arrived (not yet fsynced or checked).
#[derive(Debug)]
pub struct Received {
    pub from: NodeId,
    pub term: u64,
    pub snapshot: Position,
    pub path: PathBuf,
}
