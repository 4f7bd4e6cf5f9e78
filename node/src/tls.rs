//! TLS for QUIC: mutual authentication against the cluster CA, identities read from
//! certificates, ALPN carrying the protocol version.
//!
//! - Nodes dial each other by name (`n2.node.baton`): a certificate for another node id
//!   fails the handshake.
//! - Clients and operators dial any node: they accept any certificate the CA issued to a
//!   node, and learn which node from it.
//! - Servers require a client certificate from the CA and read the caller's identity and
//!   role from it. With QUIC, a client whose certificate is refused only learns so at its
//!   first read, so every caller opens with an application hello and waits for the answer.

use crate::certs::{identities_in, Credentials, Identity};
use crate::revocation::RevocationList;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Peer certificates accepted although this node's clock says they are not valid yet.
static CLOCK_BEHIND_ACCEPTS: AtomicU64 = AtomicU64::new(0);

/// How many peer certificates this process accepted with its clock behind their start
/// (see [`tolerate_clock_behind`]); shown in status so the operator learns of the clock.
pub fn clock_behind_accepts() -> u64 {
    CLOCK_BEHIND_ACCEPTS.load(Ordering::Relaxed)
}

/// When this node's own certificate, as last loaded, stops being valid (Unix seconds;
/// 0: not read).
static CERTIFICATE_NOT_AFTER_UNIX_S: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

pub fn record_certificate_not_after(unix_s: i64) {
    CERTIFICATE_NOT_AFTER_UNIX_S.store(unix_s, Ordering::Relaxed);
}

/// When this node's own certificate stops being valid, for status.
pub fn certificate_not_after_unix_s() -> Option<i64> {
    Some(CERTIFICATE_NOT_AFTER_UNIX_S.load(Ordering::Relaxed)).filter(|s| *s != 0)
}

/// A certificate refused only as "not valid yet" is checked again as of its own start
/// time: if it passes, this node's clock is behind the CA's (a Pi without a real-time
/// clock booted at an old date), and locking the node out of its own cluster would be
/// worse than accepting a certificate it cannot date. It is accepted, counted, and
/// logged. Expired certificates are refused as before.
fn tolerate_clock_behind<T>(
    first: Result<T, rustls::Error>,
    end_entity: &CertificateDer<'_>,
    again_at: impl FnOnce(UnixTime) -> Result<T, rustls::Error>,
) -> Result<T, rustls::Error> {
    let not_yet = matches!(
        first,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
        ))
    );
    let Some((not_before, _)) = not_yet.then(|| crate::certs::validity_of(end_entity)).flatten() else { return first };
    let start = UnixTime::since_unix_epoch(Duration::from_secs(not_before.max(0) as u64));
    let again = again_at(start);
    if again.is_ok() {
        CLOCK_BEHIND_ACCEPTS.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            certificate_start_unix_s = not_before,
            "a peer's certificate starts after this machine's clock: the clock is behind (no real-time clock, no \
             NTP yet?); accepted, but this node cannot tell expired certificates until its clock is set"
        );
    }
    again
}

/// The protocol on the wire, versioned through ALPN.
pub const ALPN: &[u8] = b"baton/2";

/// A handshake error in words that name the fix when the cause is a peer of another
/// wire protocol (no ALPN protocol in common: TLS alert 120), which rustls reports only
/// as "peer doesn't support any known protocol".
pub fn explain_handshake_error(error: &str) -> String {
    if error.contains("doesn't support any known protocol") || error.contains("NoApplicationProtocol") {
        format!(
            "{error} (the peer speaks another Baton wire protocol; this build speaks {}. Fix: upgrade every node and \
             client of the cluster to the same release)",
            String::from_utf8_lossy(ALPN)
        )
    } else {
        error.to_string()
    }
}

/// QUIC keeps connections alive with a ping every second; the idle timeout only
/// reclaims connections to processes that died (leadership is decided by the core's
/// own timers, never by this).
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Streams a peer may hold open on one connection at once. Each client keeps one request
/// stream per connection, so this bounds how many clients may share one connection
/// (quinn's default is 100).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS configuration: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("QUIC configuration: {0}")]
    Quic(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(credentials: &Credentials) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(credentials.ca.clone())?;
    Ok(Arc::new(roots))
}

fn transport() -> Arc<quinn::TransportConfig> {
    Arc::new(transport_with(IDLE_TIMEOUT, KEEP_ALIVE))
}

fn transport_with(idle_timeout: Duration, keep_alive: Duration) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    let idle_timeout = idle_timeout.try_into().unwrap_or(quinn::VarInt::MAX.into());
    transport.max_idle_timeout(Some(idle_timeout));
    transport.keep_alive_interval(Some(keep_alive));
    transport.max_concurrent_bidi_streams(STREAMS_PER_CONNECTION_MAX.into());
    transport
}

/// Keep-alives on a replication link per idle timeout: enough that a live link always
/// hears back well within it.
const PEER_KEEP_ALIVES_PER_IDLE_TIMEOUT: u32 = 4;

/// The round-trip time a replication link's first dial assumes before it has measured
/// one (quinn's default is 333 ms, so a handshake packet lost in a partition was sent
/// again only after about 1 s, and then 2 s). Later dials start from the link's last
/// measured round trip.
pub const PEER_INITIAL_RTT: Duration = Duration::from_millis(50);
/// Bounds on the round trip a dial starts from: QUIC's timer granularity below, quinn's
/// default above.
const PEER_INITIAL_RTT_MIN: Duration = Duration::from_millis(1);
const PEER_INITIAL_RTT_MAX: Duration = Duration::from_millis(333);

/// The transport of a replication link this node dials: an idle timeout of
/// `silence_max` (the election timeout; the two sides agree on the smaller of their
/// timeouts, so the peer's 5 s does not count), with keep-alives several times within
/// it. A link whose packets were lost in a partition otherwise waited out QUIC's
/// backed-off retransmissions and the 5 s idle timeout after the partition healed, and
/// the node stayed out of the replication stream for about 5 s (the fault suite's
/// `isolate-leader`: 4.7–5.7 s). Now it is dialed again within the election timeout.
/// `initial_rtt` is the round trip its handshake assumes (the last one measured on the
/// link, or [`PEER_INITIAL_RTT`]), and its congestion window has a floor (see
/// [`crate::congestion`]).
pub fn peer_link_transport(silence_max: Duration, initial_rtt: Duration) -> Arc<quinn::TransportConfig> {
    let mut transport = transport_with(silence_max, silence_max / PEER_KEEP_ALIVES_PER_IDLE_TIMEOUT);
    transport.initial_rtt(initial_rtt.clamp(PEER_INITIAL_RTT_MIN, PEER_INITIAL_RTT_MAX));
    transport.congestion_controller_factory(Arc::new(crate::congestion::FlooredCubicFactory::default()));
    Arc::new(transport)
}

/// The server side of a node: requires a CA-issued client certificate not in `revoked`.
pub fn server_config(credentials: &Credentials, revoked: &RevocationList) -> Result<quinn::ServerConfig, TlsError> {
    let inner = WebPkiClientVerifier::builder_with_provider(roots(credentials)?, provider()).build()?;
    let verifier = Arc::new(ClockTolerantClientVerifier { inner, revoked: revoked.clone() });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(credentials.chain.clone(), credentials.key.clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// Dialing a peer node: the server must present the certificate of the node dialed, not
/// in `revoked`.
pub fn node_client_config(
    credentials: &Credentials,
    revoked: &RevocationList,
) -> Result<quinn::ClientConfig, TlsError> {
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots(credentials)?, provider()).build()?;
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NodeVerifier { inner, any_node: false, revoked: revoked.clone() }))
        .with_client_auth_cert(credentials.chain.clone(), credentials.key.clone_key())?;
    quic_client(tls)
}

/// Dialing any node by address (clients and operators): the server must present a
/// CA-issued node certificate, whichever node it is.
pub fn any_node_client_config(credentials: &Credentials) -> Result<quinn::ClientConfig, TlsError> {
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots(credentials)?, provider()).build()?;
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NodeVerifier {
            inner,
            any_node: true,
            // Clients and operators do not hold the list; the nodes refuse revoked
            // certificates for them.
            revoked: RevocationList::default(),
        }))
        .with_client_auth_cert(credentials.chain.clone(), credentials.key.clone_key())?;
    quic_client(tls)
}

fn quic_client(mut tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// The name to dial a node by.
pub fn node_server_name(node: &str) -> String {
    Identity::Node(node.to_string()).dns_name()
}

/// The identity the peer's certificate names, if it presented one from our CA (the
/// handshake already checked the chain).
pub fn peer_identity(connection: &quinn::Connection) -> Option<Identity> {
    let mut identities = identities_in(&peer_certificate(connection)?);
    (identities.len() == 1).then(|| identities.remove(0))
}

/// The certificate the peer presented.
pub fn peer_certificate(connection: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let chain = connection.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().cloned()
}

/// A revoked certificate is refused before anything else is checked.
fn refuse_revoked(revoked: &RevocationList, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    match revoked.is_revoked(end_entity) {
        true => Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)),
        false => Ok(()),
    }
}

/// The handshake-signature checks of a verifier wrapper: its `inner` verifier's.
macro_rules! signatures_checked_by_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            certificate: &CertificateDer<'_>,
            signature: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, certificate, signature)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            certificate: &CertificateDer<'_>,
            signature: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, certificate, signature)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// Checks a node's certificate chain with WebPKI, with [`tolerate_clock_behind`]: under
/// the name dialed (a node dialing a peer), or with `any_node` under the node name the
/// certificate itself carries, so any node's certificate passes and nothing else does
/// (clients and operators dialing an address).
#[derive(Debug)]
struct NodeVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    any_node: bool,
    revoked: RevocationList,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        refuse_revoked(&self.revoked, end_entity)?;
        let name = match self.any_node {
            false => server_name.to_owned(),
            true => {
                let node = identities_in(end_entity)
                    .into_iter()
                    .find(|identity| matches!(identity, Identity::Node(_)))
                    .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))?;
                ServerName::try_from(node.dns_name())
                    .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))?
            }
        };
        let verify = |now| self.inner.verify_server_cert(end_entity, intermediates, &name, ocsp_response, now);
        tolerate_clock_behind(verify(now), end_entity, verify)
    }

    signatures_checked_by_inner!();
}

/// The server's client-certificate verifier, with [`tolerate_clock_behind`].
#[derive(Debug)]
struct ClockTolerantClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevocationList,
}

impl ClientCertVerifier for ClockTolerantClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        refuse_revoked(&self.revoked, end_entity)?;
        let verify = |now| self.inner.verify_client_cert(end_entity, intermediates, now);
        tolerate_clock_behind(verify(now), end_entity, verify)
    }

    signatures_checked_by_inner!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::generate_cluster;
    use std::net::SocketAddr;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Rule: the ALPN name carries the hello's protocol version: nodes of different
    /// protocols fail at the handshake, before a frame of one is read as the other.
    #[test]
    fn alpn_names_the_protocol_version() {
        assert_eq!(ALPN, format!("baton/{}", crate::frame::PROTOCOL_VERSION).as_bytes());
        let rustls = "the cryptographic handshake failed: error 120: peer doesn't support any known protocol";
        assert!(explain_handshake_error(rustls).contains("upgrade every node and client"));
        assert_eq!(explain_handshake_error("timed out"), "timed out");
    }

    struct Cluster {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    }

    fn cluster() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        generate_cluster(dir.path(), &["n1".into(), "n2".into()]).unwrap();
        let path = dir.path().to_path_buf();
        Cluster { _dir: dir, path }
    }

    fn credentials(dir: &std::path::Path, identity: Identity) -> Credentials {
        Credentials::load(dir, &identity).unwrap()
    }

    /// A server for node n1 that answers one byte on the first stream and reports the
    /// caller's identity.
    fn serve(dir: &std::path::Path) -> (quinn::Endpoint, SocketAddr, tokio::task::JoinHandle<Option<Identity>>) {
        let server = quinn::Endpoint::server(
            server_config(&credentials(dir, Identity::Node("n1".into())), &RevocationList::default()).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let address = server.local_addr().unwrap();
        let accepting = server.clone();
        let task = tokio::spawn(async move {
            let connection = accepting.accept().await?.await.ok()?;
            let identity = peer_identity(&connection);
            let (mut send, mut receive) = connection.accept_bi().await.ok()?;
            let mut byte = [0u8; 1];
            receive.read_exact(&mut byte).await.ok()?;
            send.write_all(&byte).await.ok()?;
            send.finish().ok()?;
            let _ = connection.closed().await;
            identity
        });
        (server, address, task)
    }

    async fn exchange(config: quinn::ClientConfig, address: SocketAddr, name: &str) -> Result<(), String> {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let attempt = async {
            let connection = endpoint
                .connect_with(config, address, name)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let (mut send, mut receive) = connection.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(&[7]).await.map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            receive.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            connection.close(0u32.into(), b"done");
            Ok(())
        };
        tokio::time::timeout(TIMEOUT, attempt).await.map_err(|_| "timed out".to_string())?
    }

    /// Goal: a node dialing a node by name, and a client dialing any node, both get
    /// through, and the server reads each caller's identity from its certificate.
    #[tokio::test]
    async fn mutual_tls_identifies_both_sides() {
        let cluster = cluster();
        let (_server, address, task) = serve(&cluster.path);
        let n2 =
            node_client_config(&credentials(&cluster.path, Identity::Node("n2".into())), &RevocationList::default())
                .unwrap();
        exchange(n2, address, &node_server_name("n1")).await.unwrap();
        assert_eq!(task.await.unwrap(), Some(Identity::Node("n2".into())));

        let (_server, address, task) = serve(&cluster.path);
        let operator =
            any_node_client_config(&credentials(&cluster.path, Identity::Operator("operator".into()))).unwrap();
        exchange(operator, address, "whichever").await.unwrap();
        assert_eq!(task.await.unwrap(), Some(Identity::Operator("operator".into())));
    }

    /// Goal: a caller with a certificate from another CA is rejected (it learns so at
    /// its first read), and a server holding another node's certificate is rejected.
    #[tokio::test]
    async fn wrong_ca_and_wrong_node_are_rejected() {
        let cluster = cluster();
        let stranger = self::cluster();
        let (_server, address, _task) = serve(&cluster.path);
        let foreign =
            node_client_config(&credentials(&stranger.path, Identity::Node("n2".into())), &RevocationList::default())
                .unwrap();
        let error = exchange(foreign, address, &node_server_name("n1")).await.unwrap_err();
        assert!(!error.contains("timed out"), "refused, not hung: {error}");
        eprintln!("foreign CA: {error}");

        // Dialing n2 at n1's address: n1's certificate does not name n2.
        let (_server, address, _task) = serve(&cluster.path);
        let n2 =
            node_client_config(&credentials(&cluster.path, Identity::Node("n2".into())), &RevocationList::default())
                .unwrap();
        let error = exchange(n2, address, &node_server_name("n2")).await.unwrap_err();
        assert!(error.contains("certificate") || error.contains("name"), "{error}");
        eprintln!("wrong node: {error}");
    }
}
