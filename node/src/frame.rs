//! Frames on a QUIC stream: a 4-byte little-endian length, then a postcard-encoded
//! [`Frame`]. Lengths above [`FRAME_BYTES_MAX`] are refused before any allocation, and
//! decoding never panics: a malformed frame is an error that closes that connection.
//! Enum discriminants are explicit and append-only.

use baton_common::limits::{BATCH_ENTRIES_MAX, ENTRY_BYTES_MAX};
use baton_common::Message;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A value carried as JSON inside a frame, for answers that gain fields as Baton grows
/// (status, history, discarded writes). Postcard is not self-describing: a field added
/// to a postcard struct breaks every older reader. As JSON, with `#[serde(default)]` on
/// the types, an older `baton` reads a newer node and the other way round (unknown
/// fields are ignored, missing ones take their default), as a rolling upgrade needs.
/// Node-to-node frames stay postcard: they are the hot path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: Serialize> Serialize for Json<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = serde_json::to_vec(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Json<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        serde_json::from_slice(&bytes).map(Json).map_err(serde::de::Error::custom)
    }
}

/// `Vec<Vec<u8>>` as a sequence of byte strings (see `serde_bytes`): postcard decodes each
/// in one copy instead of byte by byte. The encoding is the same either way.
mod byte_strings {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(items: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(items.iter().map(|item| serde_bytes::Bytes::new(item)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let items = Vec::<serde_bytes::ByteBuf>::deserialize(deserializer)?;
        Ok(items.into_iter().map(serde_bytes::ByteBuf::into_vec).collect())
    }
}

/// The first byte of an encoded [`Frame::Request`] (its variant's index).
const FRAME_REQUEST_TAG: u8 = 3;

/// The protocol version, also carried in ALPN; the hello checks it again.
pub const PROTOCOL_VERSION: u16 = 2;

/// Largest frame: a full batch of the largest entries, with room for framing.
pub const FRAME_BYTES_MAX: usize = baton_common::limits::FRAME_BYTES_MAX + 64 * 1024;

/// A page of the discarded-writes journal always fits a frame, with room to spare.
const _: () = assert!(crate::discarded::PAGE_BYTES_MAX * 2 <= FRAME_BYTES_MAX);

/// Largest key and value a client may write. Together with the command's framing they
/// fit one log entry.
pub const KEY_BYTES_MAX: usize = 1024;
pub const VALUE_BYTES_MAX: usize = ENTRY_BYTES_MAX - KEY_BYTES_MAX - 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Frame {
    /// The first frame on a connection's first stream: who the caller says it is, and
    /// which run of that process (a new number each start), so a peer can tell a
    /// restart from a reconnect. A client names the cluster it expects (0: any; it
    /// learns the id from its first answer), and a node of another cluster refuses it.
    Hello {
        protocol: u16,
        name: String,
        incarnation: u64,
        cluster_id: u64,
    } = 0,
    /// The answer: accepted, or refused with the reason.
    /// It carries the answering process's incarnation, so a link knows which run of
    /// its peer it is attached to, and its cluster's id (0: not chosen yet).
    HelloReply {
        accepted: bool,
        reason: String,
        incarnation: u64,
        cluster_id: u64,
    } = 1,
    /// A replication message and, for an append, its entries' payloads in order.
    Replication {
        message: Message,
        #[serde(with = "byte_strings")]
        entries: Vec<Vec<u8>>,
    } = 2,
    Request {
        request: Request,
    } = 3,
    Response {
        response: Response,
    } = 4,
    /// Part of the leader's snapshot (see `storage::snapshot`) for a follower whose
    /// missing entries were compacted away: `data` is the file's bytes at `offset`, out
    /// of `total_bytes`. Sent in order on the replication stream.
    SnapshotChunk {
        term: u64,
        snapshot_index: u64,
        snapshot_term: u64,
        offset: u64,
        total_bytes: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    } = 5,
    /// A node's hello on a connection to a peer: its name (as its certificate has it),
    /// its id in the cluster (0: it holds no state yet and asks to join) and the
    /// cluster's id (0: not chosen yet). Checked against the receiver's membership
    /// (see `crate::membership::Directory::admit`).
    PeerHello {
        protocol: u16,
        name: String,
        incarnation: u64,
        node_id: u8,
        cluster_id: u64,
    } = 6,
    /// From the leader to a learner's upstream (a cascading learner, see
    /// `Driver::relay_via`): an append request for learner `to`, without its entries, which
    /// the upstream fills in from its own log and sends on as [`Frame::Relayed`].
    Relay {
        to: u8,
        message: Message,
    } = 7,
    /// From an upstream to its learner: the leader's (`from`) append request, with the
    /// entries from the upstream's own log. The learner answers the leader directly.
    Relayed {
        from: u8,
        message: Message,
        #[serde(with = "byte_strings")]
        entries: Vec<Vec<u8>>,
    } = 8,
}

/// Bytes of snapshot per [`Frame::SnapshotChunk`]: well under a frame's limit.
pub const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;
const _: () = assert!(SNAPSHOT_CHUNK_BYTES + 1024 <= FRAME_BYTES_MAX);

/// How fresh a read must be.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum ReadMode {
    /// Linearizable: served by the leader under its lease.
    Leader = 0,
    /// Whatever this node has applied, with its applied index and lag.
    Any = 1,
    /// Wait until this node applied at least this index (read-your-writes).
    After(u64) = 2,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Request {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    } = 0,
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        read: ReadMode,
    } = 1,
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    } = 2,
    /// Writes `new` (or deletes, if `None`) only if the current value is `expected`.
    Cas {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        new: Option<Vec<u8>>,
    } = 3,
    Status = 4,
    /// Operators only: hand leadership to `to` (or the best follower); with `dry_run`,
    /// only the verdict.
    Switchover {
        to: Option<String>,
        dry_run: bool,
    } = 5,
    /// Operators only, sent to the chosen node: campaign now (manual failover).
    Campaign {
        dry_run: bool,
    } = 6,
    /// Operators only: pause or resume automatic failover.
    SetPaused {
        paused: bool,
    } = 7,
    /// This node's record of leadership changes.
    History = 8,
    /// The writes this node discarded (async mode), from its `discarded/` file.
    Discarded = 9,
    /// Operators only, at the leader: write a backup of the key-value map as of the
    /// leader's applied index (a snapshot file), answered with its position and size.
    Backup = 10,
    /// Operators only: a piece of the backup at `index`, from `offset`.
    BackupChunk {
        index: u64,
        offset: u64,
    } = 11,
    /// A put, delete or compare-and-set numbered `seq` in the client's session `id`
    /// (see `crate::session`): resent after any failure, it still takes effect once.
    /// `acked_seq` is the highest of the session's writes the client has had an answer
    /// to (0 for none yet).
    Session {
        id: crate::session::SessionId,
        seq: u64,
        acked_seq: u64,
        write: Box<Request>,
    } = 12,
    /// Up to `limit` records of this node's discarded-writes journal numbered above
    /// `after_record` with a log index of at least `since_index` (see `crate::discarded`).
    DiscardedPage {
        since_index: u64,
        after_record: u64,
        limit: u32,
    } = 13,
    /// Operators only: revoke the certificate with this fingerprint (SHA-256 of its DER;
    /// see `crate::revocation`), named `holder` for people; every node refuses it once
    /// the revocation applies there. Answered `Written` once committed.
    Revoke {
        fingerprint: crate::revocation::Fingerprint,
        holder: String,
    } = 14,
    /// Every change under `prefix` from log index `from_index` on (0: from the next
    /// entry this node applies), then live: answered on this stream with
    /// [`Response::WatchBatch`]es until the caller closes it, or one
    /// [`Response::WatchEnded`] (or an error) ends it. Served by any node from what it
    /// has applied (see `baton_host::watch`).
    Watch {
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
        from_index: u64,
    } = 15,
    /// Every key under `prefix` and its value, as of one index this node applied:
    /// answered with [`Response::ScanPage`]s, the last with `done`.
    Scan {
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
    } = 16,
    /// Answer `request` (a write, or a `--read leader` get) at the leader: a follower
    /// forwards it there on its own link and relays the answer (see `crate::forward`),
    /// for a client that can reach only this node.
    ViaLeader {
        request: Box<Request>,
    } = 17,
    /// The cluster's members as this node knows them, with the record a joining node
    /// starts from.
    Members = 18,
    /// A membership change (operators only): refused with reasons, or (not on a dry
    /// run) answered `Written` once it has committed.
    ChangeMembers {
        change: MemberChange,
        dry_run: bool,
    } = 19,
}

/// A membership change as an operator asks for it, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum MemberChange {
    /// A new node, as a learner; promoted to voter once caught up unless `learner_only`.
    Add {
        name: String,
        addr: String,
        priority: u8,
        learner_only: bool,
        /// The member it receives the log through (a cascading learner).
        upstream: Option<String>,
    } = 0,
    Promote {
        name: String,
    } = 1,
    Remove {
        name: String,
    } = 2,
    SetPriority {
        name: String,
        priority: u8,
    } = 3,
    /// Which member `name` receives the log through (none: the leader).
    SetUpstream {
        name: String,
        upstream: Option<String>,
    } = 4,
    /// A new witness, as a learner promoted once caught up: it votes, stores log
    /// positions and membership records but no data, and never leads.
    AddWitness {
        name: String,
        addr: String,
    } = 5,
}

impl Request {
    /// Whether a follower forwards it to the leader when asked to: writes and
    /// linearizable reads.
    pub fn forwardable(&self) -> bool {
        matches!(
            self,
            Request::Put { .. }
                | Request::Delete { .. }
                | Request::Cas { .. }
                | Request::Session { .. }
                | Request::Get { read: ReadMode::Leader, .. }
        )
    }
}

/// One change a watch reports: `key` set to `value` (`None`: deleted) at `index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchChange {
    pub index: u64,
    pub term: u64,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// Why a node ended a watch, and where to start again without a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum WatchEnd {
    /// The log from `next_index` on is compacted here (the oldest entry held is
    /// `oldest_index`): scan the prefix (it comes with the index M it is as of) and
    /// watch from M + 1.
    Compacted { next_index: u64, oldest_index: u64 } = 0,
    /// This node discarded the entries from `from_index` on (async mode), and the watch
    /// may have reported some of them: they never took effect. Watch again from there.
    Discarded { from_index: u64 } = 1,
}

impl std::fmt::Display for WatchEnd {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchEnd::Compacted { next_index, oldest_index } => write!(
                formatter,
                "the log from index {next_index} is compacted on this node (the oldest index it holds is \
                 {oldest_index}). Fix: read the keys with `baton scan` (they come with the index M they are as \
                 of) and watch from M + 1, or watch with --snapshot"
            ),
            WatchEnd::Discarded { from_index } => write!(
                formatter,
                "this node discarded the writes from index {from_index} on (async mode: they never took effect); \
                 changes reported from there are void. Fix: watch again from index {from_index}"
            ),
        }
    }
}

/// Why a request failed, in a form scripts can test.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum ErrorCode {
    NotLeader = 0,
    TransferInProgress = 1,
    NotEnoughInSync = 2,
    TooLarge = 3,
    Timeout = 4,
    /// Leadership changed before the write was acknowledged: it may or may not apply.
    OutcomeUnknown = 5,
    NotReady = 6,
    Forbidden = 7,
    Internal = 8,
    /// The node does not know the request: it runs an older build than the caller.
    Unsupported = 9,
    /// The client's session expired (unused for too long): the write was not applied
    /// by this request. A client starts a new session.
    SessionExpired = 10,
    /// The cluster holds as many client sessions as it may, all in recent use: the write
    /// was not applied. Retry later.
    SessionsFull = 11,
    /// A resent compare-and-set that did not match when it first reached the log: not
    /// applied, and not run again. Read the key for its value now.
    CasNotApplied = 12,
    /// The node serves as many watches as it may. Close one, or watch through another node.
    TooManyWatchers = 13,
}

impl ErrorCode {
    /// Whether retrying (at the leader hint, after a pause) may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader | ErrorCode::TransferInProgress | ErrorCode::NotEnoughInSync | ErrorCode::NotReady
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Response {
    /// A write, acknowledged per the write mode, at this position.
    Written {
        term: u64,
        index: u64,
    } = 0,
    /// A read: the value, the index this node had applied, and how far that is behind
    /// the commit index it knows of.
    Value {
        #[serde(with = "serde_bytes")]
        value: Option<Vec<u8>>,
        applied_index: u64,
        lag_entries: u64,
    } = 1,
    /// The compare-and-set did not match; nothing was written. `current` is the value.
    CasMismatch {
        #[serde(with = "serde_bytes")]
        current: Option<Vec<u8>>,
        term: u64,
        index: u64,
    } = 2,
    Error {
        code: ErrorCode,
        message: String,
        leader_hint: Option<String>,
    } = 3,
    Status(Json<Box<crate::status::NodeStatus>>) = 4,
    /// A switchover's verdict: the target, and every reason it is refused (none: it
    /// started, or would start).
    Switchover {
        target: Option<String>,
        reasons: Vec<String>,
        started: bool,
    } = 5,
    /// A manual failover: whether the node campaigns, or why not.
    Campaign {
        accepted: bool,
        reason: Option<String>,
    } = 6,
    Done = 7,
    History(Json<Vec<crate::status::HistoryEntry>>) = 8,
    Discarded(Json<Vec<crate::status::DiscardedWrite>>) = 9,
    /// A backup is written and kept for download: its position and size in bytes.
    BackupReady {
        index: u64,
        term: u64,
        bytes: u64,
    } = 10,
    /// Up to [`SNAPSHOT_CHUNK_BYTES`] of a backup; empty past its end.
    BackupChunk {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    } = 11,
    DiscardedPage(Json<crate::discarded::DiscardedPage>) = 12,
    /// Changes for a watch, complete through `through_index`: every change under its
    /// prefix up to there is in this batch or an earlier one (none: a progress mark).
    /// `lag_entries`: how far this node's applied index is behind the commit it knows.
    WatchBatch {
        changes: Vec<WatchChange>,
        through_index: u64,
        lag_entries: u64,
    } = 13,
    WatchEnded {
        end: WatchEnd,
    } = 14,
    /// Keys and values of a scan, as of `index`; `done` on the last page.
    ScanPage {
        #[serde(with = "byte_pairs")]
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        index: u64,
        done: bool,
    } = 15,
    Members(Json<crate::status::MembersView>) = 16,
    /// A membership change's verdict: every reason it is refused (none: accepted, or
    /// on a dry run would be), and the quorums it leaves.
    MembersVerdict(Json<crate::status::MembersVerdict>) = 17,
}

/// Pairs of byte strings, each as a byte string (one copy to decode, as `byte_strings`).
mod byte_pairs {
    use serde::{Deserialize, Deserializer, Serializer};

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    pub fn serialize<S: Serializer>(pairs: &[(Vec<u8>, Vec<u8>)], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(pairs.iter().map(|(k, v)| (serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Pairs, D::Error> {
        let pairs = Vec::<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>::deserialize(deserializer)?;
        Ok(pairs.into_iter().map(|(k, v)| (k.into_vec(), v.into_vec())).collect())
    }
}

/// Key and value bytes in one [`Response::ScanPage`] (a page closes once it holds this).
pub const SCAN_PAGE_BYTES: usize = 256 * 1024;
/// A watch batch closes once it holds `BATCH_BYTES_MAX` of keys and values: with its
/// last change and every change's framing, it fits a frame.
const _: () = assert!(
    baton_host::watch::BATCH_BYTES_MAX
        + KEY_BYTES_MAX
        + VALUE_BYTES_MAX
        + baton_host::watch::BATCH_CHANGES_MAX * 64
        + 1024
        <= FRAME_BYTES_MAX
);
const _: () = assert!(SCAN_PAGE_BYTES + KEY_BYTES_MAX + VALUE_BYTES_MAX + 64 * 1024 <= FRAME_BYTES_MAX);

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the {FRAME_BYTES_MAX}-byte limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A whole request frame whose request this build does not know (from a newer
    /// `baton`, say): the stream's framing is intact, so it can be answered.
    #[error("unknown request: {0}")]
    UnknownRequest(String),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(self).expect("frames always serialize");
        let mut bytes = Vec::with_capacity(4 + body.len());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Decodes a frame body (without its length prefix) and checks its fields.
    pub fn decode(body: &[u8]) -> Result<Frame, FrameError> {
        let frame: Frame = postcard::from_bytes(body).map_err(|e| match body.first() {
            Some(&FRAME_REQUEST_TAG) => FrameError::UnknownRequest(e.to_string()),
            _ => FrameError::Malformed(e.to_string()),
        })?;
        if let Frame::Replication { message: Message::AppendRequest(request), entries }
        | Frame::Relayed { message: Message::AppendRequest(request), entries, .. } = &frame
        {
            if entries.len() != usize::from(request.entry_count) || entries.len() > BATCH_ENTRIES_MAX {
                return Err(FrameError::Malformed(format!(
                    "{} entries for an append of {}",
                    entries.len(),
                    request.entry_count
                )));
            }
            if entries.iter().any(|e| e.len() > ENTRY_BYTES_MAX) {
                return Err(FrameError::Malformed("an entry over the size limit".into()));
            }
        }
        Ok(frame)
    }
}

pub async fn write_frame(stream: &mut (impl AsyncWrite + Unpin), frame: &Frame) -> Result<(), FrameError> {
    stream.write_all(&frame.encode()).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> Result<Option<Frame>, FrameError> {
    let mut length = [0u8; 4];
    match stream.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let length = u32::from_le_bytes(length) as usize;
    if length > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(length));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Frame::decode(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a session write of the largest key and value fits one log entry.
    #[test]
    fn the_largest_session_write_fits_an_entry() {
        use crate::kv::Command;
        let write = Command::Put { key: vec![0xff; KEY_BYTES_MAX], value: vec![0xff; VALUE_BYTES_MAX] };
        let command = Command::Session {
            id: [0xff; 16],
            seq: u64::MAX,
            acked_seq: u64::MAX,
            at_ms: u64::MAX,
            write: Box::new(write),
        };
        assert!(command.encode().len() <= baton_common::limits::ENTRY_BYTES_MAX);
    }

    /// Goal: byte fields marked as byte strings encode exactly as the plain `Vec<u8>`
    /// fields of earlier builds did, both ways: older nodes, and logs they wrote, read
    /// unchanged.
    #[test]
    fn byte_strings_keep_the_earlier_encoding() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        enum Earlier {
            Hello,
            HelloReply,
            Replication { message: Message, entries: Vec<Vec<u8>> },
        }
        let entries = vec![vec![], vec![7u8; 300], b"key".to_vec()];
        let message = Message::TimeoutNow(baton_common::message::TimeoutNow { term: 3 });
        let now = Frame::Replication { message, entries: entries.clone() };
        let earlier = Earlier::Replication { message, entries };
        let now_bytes = now.encode();
        let earlier_bytes = postcard::to_allocvec(&earlier).unwrap();
        assert_eq!(now_bytes[4..], earlier_bytes[..]);
        assert_eq!(postcard::from_bytes::<Earlier>(&now_bytes[4..]).unwrap(), earlier);

        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        enum EarlierRequest {
            Put { key: Vec<u8>, value: Vec<u8> },
        }
        let put = Request::Put { key: b"k".to_vec(), value: vec![1u8; 200] };
        let earlier = EarlierRequest::Put { key: b"k".to_vec(), value: vec![1u8; 200] };
        let bytes = postcard::to_allocvec(&earlier).unwrap();
        assert_eq!(postcard::to_allocvec(&put).unwrap(), bytes);
        assert_eq!(postcard::from_bytes::<Request>(&bytes).unwrap(), put);
    }

    /// Goal: a request this build does not know is told apart from garbage, so a node
    /// can answer it.
    #[test]
    fn an_unknown_request_is_not_garbage() {
        let status = Frame::Request { request: Request::Status }.encode();
        assert_eq!(status[4], FRAME_REQUEST_TAG);
        assert!(matches!(Frame::decode(&[FRAME_REQUEST_TAG, 200]), Err(FrameError::UnknownRequest(_))));
        assert!(matches!(Frame::decode(&[0xff, 0xff]), Err(FrameError::Malformed(_))));
    }

    /// Goal: a status answer survives a version skew either way: fields the sender does
    /// not know take their defaults, fields the reader does not know are ignored.
    #[test]
    fn status_reads_across_versions() {
        use crate::status::NodeStatus;
        let status = NodeStatus { id: "n2".into(), term: 4, disk_free_bytes: Some(9), ..Default::default() };
        let response = Response::Status(Json(Box::new(status.clone())));
        let bytes = postcard::to_allocvec(&response).unwrap();
        assert_eq!(postcard::from_bytes::<Response>(&bytes).unwrap(), response);
        // An older node: no `disk_free_bytes`, no `version`. A newer one: a field unknown here.
        let mut older = serde_json::to_value(&status).unwrap();
        older.as_object_mut().unwrap().retain(|field, _| field != "disk_free_bytes" && field != "version");
        let mut newer = serde_json::to_value(&status).unwrap();
        newer.as_object_mut().unwrap().insert("cpu_temperature_c".into(), 61.into());
        for (sent, expected) in [(older, NodeStatus { disk_free_bytes: None, ..status.clone() }), (newer, status)] {
            let bytes = postcard::to_allocvec(&Json(sent)).unwrap();
            assert_eq!(postcard::from_bytes::<Json<NodeStatus>>(&bytes).unwrap().0, expected);
        }
    }

    /// Goal: frames round-trip through a byte stream, and the wire tags are the
    /// declared discriminants.
    #[tokio::test]
    async fn round_trip() {
        let frames = vec![
            Frame::Hello { protocol: PROTOCOL_VERSION, name: "n1".into(), incarnation: 7, cluster_id: 9 },
            Frame::Request { request: Request::Put { key: b"k".to_vec(), value: b"v".to_vec() } },
            Frame::Response { response: Response::Written { term: 2, index: 9 } },
            Frame::Request { request: Request::Watch { prefix: b"cfg/".to_vec(), from_index: 7 } },
            Frame::Request { request: Request::Scan { prefix: Vec::new() } },
            Frame::Response {
                response: Response::WatchBatch {
                    changes: vec![
                        WatchChange { index: 7, term: 2, key: b"cfg/a".to_vec(), value: Some(b"1".to_vec()) },
                        WatchChange { index: 9, term: 2, key: b"cfg/b".to_vec(), value: None },
                    ],
                    through_index: 12,
                    lag_entries: 1,
                },
            },
            Frame::Response {
                response: Response::WatchEnded { end: WatchEnd::Compacted { next_index: 1, oldest_index: 90 } },
            },
            Frame::Response {
                response: Response::ScanPage { pairs: vec![(b"k".to_vec(), b"v".to_vec())], index: 4, done: true },
            },
        ];
        let mut bytes = Vec::new();
        for frame in &frames {
            write_frame(&mut bytes, frame).await.unwrap();
        }
        let mut reader = bytes.as_slice();
        for frame in &frames {
            assert_eq!(read_frame(&mut reader).await.unwrap().as_ref(), Some(frame));
        }
        assert_eq!(read_frame(&mut reader).await.unwrap(), None);
        assert_eq!(Frame::Hello { protocol: 1, name: String::new(), incarnation: 0, cluster_id: 0 }.encode()[4], 0);
        assert_eq!(Frame::Request { request: Request::Status }.encode()[4..], [3, 4]);
    }

    /// Goal: oversized lengths and garbage are errors, never panics or huge allocations.
    #[tokio::test]
    async fn bad_frames_are_errors() {
        let mut huge = (u32::MAX).to_le_bytes().as_slice().to_vec();
        huge.extend_from_slice(&[0; 8]);
        assert!(matches!(read_frame(&mut huge.as_slice()).await, Err(FrameError::TooLarge(_))));
        let garbage = [5u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut garbage.as_slice()).await, Err(FrameError::Malformed(_))));
        for seed in 0..2_000u32 {
            let body: Vec<u8> =
                (0..(seed % 64)).map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 97) >> 7) as u8).collect();
            let _ = Frame::decode(&body);
        }
    }
}
