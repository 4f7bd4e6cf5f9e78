//! # baton-node
//!
//! The edge daemon around Baton's replication core: it owns the disk, the network and the
//! clock, and carries out what the core decides. This crate also holds the Rust client
//! library.

pub mod addr;
pub mod backoff;
pub mod certs;
pub mod client;
pub mod config;
pub mod cost;
pub mod discarded;
pub mod driver;
pub mod frame;
pub mod kv;
pub mod map;
pub mod membership;
pub mod metrics;
pub mod revocation;
pub mod server;
pub mod session;
pub mod status;
pub mod storage;
pub mod tls;
pub mod transfer;
pub mod transport;
