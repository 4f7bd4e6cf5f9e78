//! Certificate revocation: the certificates the cluster refuses, named by the SHA-256 of
//! the certificate, replicated through the log (`kv::Command::Revoke`, so every node
//! holds the same list, in snapshots too), and enforced by this node's TLS verifiers for
//! new connections and by closing the open connections of a certificate the moment its
//! revocation applies.

use rustls::pki_types::CertificateDer;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// The list's names and bounds live with the state machine that holds the list.
pub use crate::kv::{Fingerprint, HOLDER_BYTES_MAX, REVOKED_MAX};

pub fn fingerprint_of(certificate: &CertificateDer<'_>) -> Fingerprint {
    let digest = ring::digest::digest(&ring::digest::SHA256, certificate.as_ref());
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

pub fn hex(fingerprint: &Fingerprint) -> String {
    fingerprint.iter().map(|b| format!("{b:02x}")).collect()
}

/// The list as this node's TLS verifiers see it: a copy of the state machine's, replaced
/// whenever that changes. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct RevocationList(Arc<RwLock<BTreeMap<Fingerprint, String>>>);

impl RevocationList {
    pub fn is_revoked(&self, certificate: &CertificateDer<'_>) -> bool {
        self.0.read().expect("no panics while holding the list").contains_key(&fingerprint_of(certificate))
    }

    pub fn replace(&self, revoked: &BTreeMap<Fingerprint, String>) {
        *self.0.write().expect("no panics while holding the list") = revoked.clone();
    }
}

/// The node's open connections by the certificate of the other side, so a revocation
/// can close them at once.
#[derive(Debug, Default)]
pub struct OpenConnections(Mutex<Vec<(Fingerprint, quinn::Connection)>>);

impl OpenConnections {
    /// Remembers `connection`, whose peer presented `certificate`.
    pub fn add(&self, certificate: &CertificateDer<'_>, connection: &quinn::Connection) {
        let mut open = self.0.lock().expect("no panics while holding the list");
        open.retain(|(_, c)| c.close_reason().is_none());
        open.push((fingerprint_of(certificate), connection.clone()));
    }

    /// Closes every open connection whose peer presented a certificate in `revoked`;
    /// returns how many.
    pub fn close_revoked(&self, revoked: &BTreeMap<Fingerprint, String>) -> usize {
        let mut open = self.0.lock().expect("no panics while holding the list");
        let mut closed = 0;
        open.retain(|(fingerprint, connection)| {
            if connection.close_reason().is_some() {
                return false;
            }
            if revoked.contains_key(fingerprint) {
                connection.close(quinn::VarInt::from_u32(3), b"certificate revoked");
                closed += 1;
                return false;
            }
            true
        });
        closed
    }
}
