//! # baton-common: Baton's replication core
//!
//! A leader-follower log replication state machine that makes every decision and does
//! no I/O: no clock, no randomness, no sockets, no disk, no allocation. It builds with
//! `#![no_std]` (turn off the default `std` feature) and fits a microcontroller: every
//! capacity is a named constant in [`limits`].
//!
//! - [`Replica`] is one node's state machine; its docs give the call order.
//! - [`Message`] is what replicas say to each other, postcard-encoded.
//! - [`Output`] is what the core asks its host to do.
//! - [`WriteMode`] and its quorum arithmetic are in [`mode`].
//!
//! ## Guarantees per write mode
//!
//! | mode | a write is acknowledged when | on failover |
//! |---|---|---|
//! | `async` | durable on the leader | may be lost; every loss is reported as [`Event::Discarded`] |
//! | `sync:W` | durable on W voters | never lost: elections need `max(majority, N-W+1)` votes |
//! | `quorum` | durable on a majority | never lost |
//! | `all` | durable on every voter | never lost |
//!
//! In every mode a leader acknowledges only while it holds a lease: enough voters have
//! answered it recently that no other election can succeed. A leader cut off from them
//! steps down within the lease (less than one election timeout) and acknowledges nothing
//! after, so there are never two leaders acknowledging writes.

#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]
// A switchover verdict lists every reason it refuses (about 150 bytes). Without an
// allocator it cannot be boxed, and it is returned once per operator command.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod failover;
pub mod limits;
pub mod log;
pub mod membership;
pub mod message;
pub mod mode;
pub mod output;
pub mod progress;
pub mod replica;
pub mod rng;
pub mod types;

pub use config::{Config, ConfigError, Member};
pub use failover::{estimate_failover_loss, FailoverEstimate};
pub use log::LogTerms;
pub use membership::{Change, ChangeError, Membership, MembershipLog};
pub use message::{
    AppendOutcome, AppendRequest, AppendResponse, ElectionCause, Message, TimeoutNow, VoteRequest, VoteResponse,
    VoteVerdict, WireError,
};
pub use mode::WriteMode;
pub use output::{
    Counters, Event, Output, PersistSeq, Proposal, ProposeError, ReadError, Refusal, Refused, StepDownReason,
    TransferOutcome,
};
pub use progress::ReplicationState;
pub use replica::{MembershipProposal, PeerStatus, Recovered, Replica, Role, Status};
pub use types::{HardState, LogIndex, Micros, NodeId, Position, Term};
