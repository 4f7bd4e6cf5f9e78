//! baton-host: the node's decisions around the replication core, with no I/O and no
//! clock of its own (times come in as microseconds), so the tokio driver
//! (`baton-node`) and the simulator (`baton-suite`) run the same code.
//!
//! It grows one owner at a time out of `node/src/driver/` (issue 18); so far:
//! - [`writes`]: client writes waiting for their commit, and what each is answered;
//! - [`held`]: client writes held while leadership moves, instead of refused;
//! - [`reads`]: reads waiting for the index they must be served at;
//! - [`snapshot_sends`]: which of the core's snapshot requests start a transfer;
//! - [`apply`]: applying a committed entry and what its client is told;
//! - [`kv`]: the replicated state machine (a key-value [`map`] and client
//!   [`session`]s), applied from the log;
//! - [`members`]: the members' names, addresses and records, beside the core's ids;
//! - [`member_changes`]: operators' membership changes and the leader's promotions;
//! - [`operator`]: an operator's switchovers, manual failovers and pauses;
//! - [`refusals`]: the core's refusals in words, with the members' names;
//! - [`discarded`]: a discarded entry in words, for the journal of discarded writes;
//! - [`recent`]: the most recent log entries, in memory;
//! - [`compaction`]: when a node compacts its log into a snapshot;
//! - [`leaders`]: the leaders a node has seen, and how its followers move;
//! - [`links`]: which peers a node keeps links to, and relays to cascading learners;
//! - [`status`]: what a node's status says that the host decides (followers' lag, what
//!   a failover would lose, this node's part in the membership);
//! - [`node`]: one node's [`node::Host`], holding the core with the client requests, the
//!   state machine and the persistence sequencing around it, built from the above.

pub mod apply;
pub mod changed;
pub mod compaction;
pub mod discarded;
pub mod held;
pub mod kv;
pub mod leaders;
pub mod links;
pub mod map;
pub mod member_changes;
pub mod members;
pub mod node;
pub mod operator;
pub mod reads;
pub mod recent;
pub mod refusals;
pub mod route;
pub mod session;
pub mod snapshot_sends;
pub mod status;
pub mod watch;
pub mod writes;
