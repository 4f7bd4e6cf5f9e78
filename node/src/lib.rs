//! # baton-node
//!
//! The edge daemon around Baton's replication core: it owns the disk, the network and the
//! clock, and carries out what the core decides. This crate also holds the Rust client
//! library.

pub mod certs;
pub mod storage;
pub mod tls;
