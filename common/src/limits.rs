//! Every capacity the replication core has, named in one place.
//!
//! The core allocates nothing: each queue, table and window below is a fixed-size
//! `heapless` container sized by one of these constants. Input from outside that would
//! overflow one of them is refused with a returned error and counted; it never panics.
//! The `const` assertions at the bottom tie the limits together so that a change to one
//! that breaks another fails the build.

/// Most nodes in one cluster, the local node included.
pub const NODES_MAX: usize = 7;

/// Most entries in one append request. A batch never spans two terms.
pub const BATCH_ENTRIES_MAX: usize = 64;

/// Largest payload of one log entry, in bytes. Hosts refuse larger writes before they
/// reach the core; the wire decoder refuses larger payloads too.
pub const ENTRY_BYTES_MAX: usize = 16 * 1024;

/// Most append requests in flight (sent, not yet acknowledged) to one peer.
pub const INFLIGHT_BATCHES_MAX: usize = 8;

/// Most distinct term runs the core remembers for the retained log. A run is a stretch
/// of consecutive entries that share a term; runs at or below the snapshot are dropped.
pub const TERM_RUNS_MAX: usize = 64;

/// Most persistence requests (appends, truncations, hard-state writes) the core tracks
/// while it waits for the host to report them durable. Beyond this the core merges the
/// newest ones, which only delays the report.
pub const PERSIST_PENDING_MAX: usize = 32;

/// Most outputs queued between two drains. The host drains `poll_output` after every
/// `handle_*` call, so one call's outputs must fit.
pub const OUTPUTS_MAX: usize = NODES_MAX * (INFLIGHT_BATCHES_MAX + 4) + 32;

/// Most reasons a switchover dry run gives for refusing one target.
pub const REFUSALS_MAX: usize = 8;

/// Largest encoded core message, in bytes (the headers only: payloads travel beside it).
pub const MESSAGE_BYTES_MAX: usize = 128;

/// Largest encoded append frame on the wire, in bytes: the header plus a full batch of
/// the largest entries, each with its own small framing.
pub const FRAME_BYTES_MAX: usize = MESSAGE_BYTES_MAX + BATCH_ENTRIES_MAX * (ENTRY_BYTES_MAX + 16);

/// Most memberships a replica remembers: the one at its snapshot or commit point and the
/// uncommitted ones after it in its log. One change is in flight at a time, so a log
/// rarely holds more than two past its commit point.
pub const MEMBERSHIPS_KEPT_MAX: usize = 8;

/// The highest priority a node can have. Priority 0 means "never leader".
pub const PRIORITY_MAX: u8 = 100;

/// The clock-drift bound the leader lease assumes, as a fraction: the lease is shortened
/// by `1 / LEASE_DRIFT_DIVISOR` of the minimum election timeout (5 %).
pub const LEASE_DRIFT_DIVISOR: u64 = 20;

/// The randomised election timeout spans `[T - T / ELECTION_WINDOW_DIVISOR, T)`, where T
/// is the configured election timeout.
pub const ELECTION_WINDOW_DIVISOR: u64 = 8;

const _: () = assert!(NODES_MAX >= 7, "the issue asks for clusters of at least 7 nodes");
const _: () = assert!(NODES_MAX <= u8::MAX as usize);
const _: () = assert!(BATCH_ENTRIES_MAX >= 1 && BATCH_ENTRIES_MAX <= u16::MAX as usize);
const _: () = assert!(INFLIGHT_BATCHES_MAX >= 1);
const _: () = assert!(TERM_RUNS_MAX >= 4);
const _: () = assert!(PERSIST_PENDING_MAX >= 2);
const _: () = assert!(OUTPUTS_MAX >= NODES_MAX * (INFLIGHT_BATCHES_MAX + 2));
const _: () = assert!(FRAME_BYTES_MAX <= 2 * 1024 * 1024, "frames must stay small for edge links");
const _: () = assert!(LEASE_DRIFT_DIVISOR >= 2);
const _: () = assert!(MEMBERSHIPS_KEPT_MAX >= 4);
const _: () = assert!(ELECTION_WINDOW_DIVISOR >= 2);
