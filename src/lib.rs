//! baton-suite: the deterministic fault simulator for Baton's replication core, and the
//! library the workspace-level tests share.

pub mod after_reads;
pub mod linearizable;
pub mod sim;
