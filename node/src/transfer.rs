//! Snapshot transfer between nodes: the leader streams its snapshot file to a follower in
//! [`Frame::SnapshotChunk`]s on the replication link, and the follower assembles them in
//! `incoming.tmp`. Neither side decides anything: the core asks for a send
//! (`Output::SendSnapshot`) and decides whether to install what arrived.
//!
//! A send reads the file through its own open handle, so a compaction that replaces the
//! snapshot meanwhile does not disturb it. At most [`SEND_QUEUE_CHUNKS_MAX`] chunks wait
//! in a link's queue, so memory stays small whatever the snapshot's size.

use crate::frame::{Frame, SNAPSHOT_CHUNK_BYTES};
use crate::handoff::{LinkState, Received, SnapshotChunk};
use crate::storage::snapshot::SnapshotDir;
use baton_common::{NodeId, Position};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Chunks a send may have queued on a link at once.
const SEND_QUEUE_CHUNKS_MAX: usize = 8;
/// How long a send waits for its link's queue to drain before looking again.
const SEND_BACKOFF: Duration = Duration::from_millis(2);

struct Send {
    sent_bytes: Arc<AtomicU64>,
    total_bytes: u64,
    task: tokio::task::JoinHandle<()>,
}

/// The leader's snapshot sends in flight, one per follower at most.
#[derive(Default)]
pub struct Sends {
    sends: HashMap<NodeId, Send>,
    /// Which requests start a transfer (`baton_host::snapshot_sends`, the simulator's too).
    decisions: baton_host::snapshot_sends::SnapshotSends,
}

impl Sends {
    /// Starts streaming the installed snapshot (the driver knows it as `snapshot`; to a
    /// witness, its data-less copy: `witness`) to
    /// `to`, replacing any send already going there, unless the same snapshot went or is
    /// going there in the same term less than `resend_after` ago: the core asks again
    /// whenever a heartbeat answer shows the follower still without it, which is expected
    /// while it arrives and is installed. The chunks name the position the opened file's
    /// header holds, so a snapshot installed meanwhile is sent as what it is.
    ///
    /// `link` is the link's queue and its state where it has one: a send waits for a
    /// link that is up (chunks queued on a down link are dropped) and starts again,
    /// however recent, once the connection it went out on has failed. Returns whether a
    /// send started.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        to: NodeId,
        term: u64,
        snapshot: Position,
        snapshots: &SnapshotDir,
        link: (mpsc::Sender<Frame>, Option<&LinkState>),
        now_us: u64,
        resend_after: Duration,
        witness: bool,
    ) -> bool {
        let (link, link_state) = link;
        let request = baton_host::snapshot_sends::SendRequest {
            to,
            term,
            snapshot,
            link_up: link_state.is_none_or(LinkState::is_up),
            link_generation: link_state.map(LinkState::generation),
        };
        if !self.decisions.start(request, now_us, resend_after.as_micros() as u64) {
            return false;
        }
        if let Some(send) = self.sends.remove(&to) {
            send.task.abort();
        }
        let opened = if witness { snapshots.open_witness() } else { snapshots.open_installed() };
        let (file, position, total_bytes) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                tracing::warn!(%to, %error, "cannot open the snapshot to send; the leader retries after its timeout");
                self.decisions.forget(to);
                return false;
            }
        };
        let sent_bytes = Arc::new(AtomicU64::new(0));
        let progress = sent_bytes.clone();
        let path = if witness { snapshots.witness_path() } else { snapshots.path() };
        let task = tokio::spawn(async move {
            let file = tokio::fs::File::from_std(file);
            if let Err(error) = stream(file, &path, term, position, total_bytes, link, &progress).await {
                tracing::warn!(%to, %error, "snapshot send stopped; the leader retries after its timeout");
            }
        });
        self.sends.insert(to, Send { sent_bytes, total_bytes, task });
        true
    }

    pub fn stop(&mut self, to: NodeId) {
        if let Some(send) = self.sends.remove(&to) {
            send.task.abort();
        }
        self.decisions.forget(to);
    }

    pub fn stop_all(&mut self) {
        for (_, send) in self.sends.drain() {
            send.task.abort();
        }
        self.decisions.forget_all();
    }

    /// How far the send to `to` is, in percent of the file sent.
    pub fn progress_percent(&self, to: NodeId) -> Option<u8> {
        let send = self.sends.get(&to)?;
        let sent = send.sent_bytes.load(Ordering::Relaxed);
        Some(percent(sent, send.total_bytes))
    }
}

fn percent(done: u64, total: u64) -> u8 {
    (done.min(total) * 100).checked_div(total).map_or(100, |p| p as u8)
}

async fn stream(
    mut file: tokio::fs::File,
    path: &Path,
    term: u64,
    snapshot: Position,
    total_bytes: u64,
    link: mpsc::Sender<Frame>,
    sent_bytes: &AtomicU64,
) -> Result<(), String> {
    let mut offset = 0u64;
    tracing::info!(bytes = total_bytes, index = snapshot.index, "sending a snapshot");
    while offset < total_bytes {
        let mut data = vec![0u8; SNAPSHOT_CHUNK_BYTES.min((total_bytes - offset) as usize)];
        file.read_exact(&mut data).await.map_err(|e| format!("{}: {e}", path.display()))?;
        while link.max_capacity() - link.capacity() > SEND_QUEUE_CHUNKS_MAX {
            tokio::time::sleep(SEND_BACKOFF).await;
        }
        let length = data.len() as u64;
        let frame = Frame::SnapshotChunk {
            term,
            snapshot_index: snapshot.index,
            snapshot_term: snapshot.term,
            offset,
            total_bytes,
            data,
        };
        link.send(frame).await.map_err(|_| "the link closed".to_string())?;
        offset += length;
        sent_bytes.store(offset, Ordering::Relaxed);
    }
    Ok(())
}

/// A snapshot being received.
struct Incoming {
    from: NodeId,
    term: u64,
    snapshot: Position,
    total_bytes: u64,
    received_bytes: u64,
    file: std::fs::File,
}

/// The follower's side: at most one snapshot arriving at a time.
pub struct Receiver {
    path: PathBuf,
    incoming: Option<Incoming>,
}

impl Receiver {
    pub fn new(path: PathBuf) -> Receiver {
        Receiver { path, incoming: None }
    }

    /// Takes one chunk. A chunk at offset 0 starts over; any other must continue the
    /// current transfer exactly, or it is refused (the leader starts again later).
    pub fn accept(&mut self, chunk: SnapshotChunk) -> Result<Option<Received>, String> {
        if chunk.offset == 0 {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let file = std::fs::File::create(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
            tracing::info!(bytes = chunk.total_bytes, index = chunk.snapshot.index, "receiving a snapshot");
            self.incoming = Some(Incoming {
                from: chunk.from,
                term: chunk.term,
                snapshot: chunk.snapshot,
                total_bytes: chunk.total_bytes,
                received_bytes: 0,
                file,
            });
        }
        let Some(incoming) = self.incoming.as_mut() else {
            return Err(format!("a chunk at offset {} with no transfer under way", chunk.offset));
        };
        let continues = incoming.from == chunk.from
            && incoming.term == chunk.term
            && incoming.snapshot == chunk.snapshot
            && incoming.total_bytes == chunk.total_bytes
            && incoming.received_bytes == chunk.offset
            && chunk.offset + chunk.data.len() as u64 <= chunk.total_bytes;
        if !continues {
            self.incoming = None;
            return Err(format!("a chunk at offset {} does not continue the transfer; dropped it", chunk.offset));
        }
        incoming.file.write_all(&chunk.data).map_err(|e| format!("{}: {e}", self.path.display()))?;
        crate::cost::count_written(crate::cost::Written::Snapshots, chunk.data.len() as u64);
        incoming.received_bytes += chunk.data.len() as u64;
        if incoming.received_bytes < incoming.total_bytes {
            return Ok(None);
        }
        let done = self.incoming.take().expect("checked");
        Ok(Some(Received { from: done.from, term: done.term, snapshot: done.snapshot, path: self.path.clone() }))
    }

    /// How far the snapshot arriving now is, in percent.
    pub fn progress_percent(&self) -> Option<u8> {
        self.incoming.as_ref().map(|i| percent(i.received_bytes, i.total_bytes))
    }
}
