//! The cluster's certificates: a CA, one certificate per node naming its id, and
//! certificates for operators and clients. Roles come from the certificate's name:
//! `<id>.node.baton`, `<name>.operator.baton`, `<name>.client.baton`.
//!
//! Files in the certificate directory: `ca.pem` (and `ca.key`, which only `baton certs`
//! needs, to issue more), `<name>.pem` and `<name>.key` for each holder.
//!
//! Lifetimes: a certificate is valid for `--days` (default [`CERT_LIFETIME_DAYS_DEFAULT`],
//! five years) from an hour before it was issued; the CA for [`CA_LIFETIME_DAYS`].
//! `baton certs --renew` issues every holder's certificate again from the same CA, and a
//! node picks renewed files up on SIGHUP. Clocks: a node whose clock reads earlier than a
//! peer certificate's start (a Pi without a real-time clock, booted at an old date) still
//! accepts it, warns, and counts it (`tls::clock_behind_accepts`); it cannot tell expiry
//! then. A node with a correct clock refuses expired certificates.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// Days an issued certificate is valid by default: five years.
pub const CERT_LIFETIME_DAYS_DEFAULT: u32 = 5 * 365 + 1;
/// Days the CA is valid: longer than any certificate it issues.
pub const CA_LIFETIME_DAYS: u32 = 30 * 365 + 7;
/// Certificates start a little before they are issued: machines' clocks differ.
const NOT_BEFORE_SLACK: time::Duration = time::Duration::hours(1);

/// Who holds a certificate, read from its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    Node(String),
    Operator(String),
    Client(String),
}

impl Identity {
    pub fn dns_name(&self) -> String {
        match self {
            Identity::Node(id) => format!("{id}.node.baton"),
            Identity::Operator(name) => format!("{name}.operator.baton"),
            Identity::Client(name) => format!("{name}.client.baton"),
        }
    }

    pub fn from_dns_name(name: &str) -> Option<Identity> {
        let (holder, role) = name.split_once('.')?;
        if holder.is_empty() {
            return None;
        }
        match role {
            "node.baton" => Some(Identity::Node(holder.to_string())),
            "operator.baton" => Some(Identity::Operator(holder.to_string())),
            "client.baton" => Some(Identity::Client(holder.to_string())),
            _ => None,
        }
    }

    /// The file stem of this holder's certificate and key.
    pub fn file_stem(&self) -> String {
        match self {
            Identity::Node(id) => id.clone(),
            Identity::Operator(name) | Identity::Client(name) => name.clone(),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "node {id}"),
            Identity::Operator(name) => write!(f, "operator {name}"),
            Identity::Client(name) => write!(f, "client {name}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}. Fix: generate certificates with `baton certs --out DIR --nodes n1,n2,n3`")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path}: this certificate names {named}, not {wanted}. Fix: use the certificate made for {wanted} \
         ({hint}), or issue one with `baton certs`"
    )]
    WrongHolder { path: PathBuf, named: String, wanted: String, hint: &'static str },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{missing}: missing, while {present} is there. Fix: {fix}")]
    Incomplete { missing: PathBuf, present: PathBuf, fix: &'static str },
    #[error("a certificate's lifetime must be at least one day (--days)")]
    BadLifetime,
    #[error("{path}: no such file. Fix: {fix}")]
    Missing { path: PathBuf, fix: String },
    #[error("{0:?} is not a valid node id: use letters, digits and '-' (for example n1)")]
    BadName(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io { path: path.to_path_buf(), source }
}

/// Checks a node id or holder name: it becomes part of a DNS name.
pub fn check_name(name: &str) -> Result<(), CertError> {
    let valid = !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(CertError::BadName(name.to_string()))
    }
}

/// The cluster CA, able to issue certificates.
pub struct Authority {
    pub certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
    key_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub identity: Identity,
    pub certificate_pem: String,
    pub key_pem: String,
}

impl Authority {
    /// A new CA, valid for [`CA_LIFETIME_DAYS`].
    pub fn generate(cluster: &str) -> Result<Authority, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - NOT_BEFORE_SLACK;
        params.not_after = now + time::Duration::days(CA_LIFETIME_DAYS.into());
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("Baton cluster CA {cluster}"));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Authority { certificate_pem: certificate.pem(), issuer: Issuer::new(params, key), key_pem })
    }

    /// Loads the CA and its key from a certificate directory.
    pub fn load(dir: &Path) -> Result<Authority, CertError> {
        let certificate_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let certificate_pem = std::fs::read_to_string(&certificate_path).map_err(io(&certificate_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let invalid = |path: &Path, error: rcgen::Error| CertError::Invalid {
            path: path.to_path_buf(),
            reason: error.to_string(),
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(&key_path, e))?;
        let issuer = Issuer::from_ca_cert_pem(&certificate_pem, key).map_err(|e| invalid(&certificate_path, e))?;
        Ok(Authority { certificate_pem, issuer, key_pem })
    }

    /// Issues a certificate naming `identity` for `lifetime_days`, usable both to serve
    /// and to connect.
    pub fn issue(&self, identity: &Identity, lifetime_days: u32) -> Result<Issued, CertError> {
        let now = time::OffsetDateTime::now_utc();
        self.issue_valid(identity, now - NOT_BEFORE_SLACK, now + time::Duration::days(lifetime_days.into()))
    }

    /// Issues a certificate valid from `not_before` to `not_after` (tests make expired
    /// and not-yet-valid ones with it).
    pub fn issue_valid(
        &self,
        identity: &Identity,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Result<Issued, CertError> {
        check_name(&identity.file_stem())?;
        let mut params = CertificateParams::new(vec![identity.dns_name()])?;
        params.not_before = not_before;
        params.not_after = not_after;
        params.distinguished_name.push(DnType::CommonName, identity.dns_name());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { identity: identity.clone(), certificate_pem: certificate.pem(), key_pem: key.serialize_pem() })
    }

    /// Writes the CA (certificate and key) into `dir`; the key is readable by its owner only.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_file(&dir.join("ca.pem"), &self.certificate_pem, 0o644)?;
        write_file(&dir.join("ca.key"), &self.key_pem, 0o600)
    }
}

impl Issued {
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        let stem = self.identity.file_stem();
        write_file(&dir.join(format!("{stem}.pem")), &self.certificate_pem, 0o644)?;
        write_file(&dir.join(format!("{stem}.key")), &self.key_pem, 0o600)
    }
}

/// Writes `path` whole or not at all (a temporary file renamed over it): a node reloading
/// its certificates on SIGHUP never reads half of a renewed one.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(mode).open(&tmp).map_err(io(&tmp))?;
    file.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Whether a file pair was made now or was already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Made {
    Issued,
    /// Already in the directory; left exactly as it was.
    Kept,
    /// Issued again from the same CA (`--renew`), replacing the one there.
    Renewed,
}

/// How `baton certs` issues: for how long, and whether existing certificates are issued
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IssueOptions {
    pub lifetime_days: u32,
    pub renew: bool,
}

impl Default for IssueOptions {
    fn default() -> IssueOptions {
        IssueOptions { lifetime_days: CERT_LIFETIME_DAYS_DEFAULT, renew: false }
    }
}

/// What [`generate_cluster`] did.
#[derive(Debug)]
pub struct ClusterCerts {
    pub ca: Made,
    pub holders: Vec<(Identity, Made)>,
}

/// What `baton certs --out DIR --nodes n1,n2,n3` makes: a CA, one certificate per node,
/// an operator certificate and a client certificate. A directory that already holds a
/// CA keeps it and gets only the certificates it lacks, signed by that CA: adding a
/// node is `--nodes n4` on the same directory, and running it twice replaces nothing
/// (a replaced CA would lock every running node out). To reissue one, delete its files.
pub fn generate_cluster(dir: &Path, nodes: &[String]) -> Result<ClusterCerts, CertError> {
    generate_cluster_with(dir, nodes, IssueOptions::default())
}

/// [`generate_cluster`] with a lifetime, and with `renew`: every holder whose
/// certificate is in `dir` (and every node in `nodes`) gets a new certificate and key
/// from the same CA, so expiring certificates are replaced without touching the CA.
pub fn generate_cluster_with(dir: &Path, nodes: &[String], options: IssueOptions) -> Result<ClusterCerts, CertError> {
    if options.lifetime_days == 0 {
        return Err(CertError::BadLifetime);
    }
    for node in nodes {
        check_name(node)?;
    }
    let (authority, ca) = match existing_pair(dir, "ca")? {
        true => (Authority::load(dir)?, Made::Kept),
        false => {
            let authority = Authority::generate(&nodes.join(","))?;
            authority.write(dir)?;
            (authority, Made::Issued)
        }
    };
    let mut identities: Vec<Identity> = nodes.iter().map(|n| Identity::Node(n.clone())).collect();
    identities.push(Identity::Operator("operator".into()));
    identities.push(Identity::Client("client".into()));
    if options.renew {
        for held in holders_in(dir) {
            if !identities.contains(&held) {
                identities.push(held);
            }
        }
    }
    let mut holders = Vec::new();
    for identity in identities {
        let made = match (existing_pair(dir, &identity.file_stem())?, options.renew) {
            (true, false) => Made::Kept,
            (exists, _) => {
                authority.issue(&identity, options.lifetime_days)?.write(dir)?;
                if exists {
                    Made::Renewed
                } else {
                    Made::Issued
                }
            }
        };
        holders.push((identity, made));
    }
    Ok(ClusterCerts { ca, holders })
}

/// Every holder with a certificate in `dir` (by the name inside it, not the file's).
fn holders_in(dir: &Path) -> Vec<Identity> {
    let mut holders = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let is_holder = path.extension().is_some_and(|e| e == "pem") && path.file_stem().is_some_and(|s| s != "ca");
        let Some(first) = is_holder.then(|| read_certificates(&path).ok()).flatten().and_then(|c| c.into_iter().next())
        else {
            continue;
        };
        holders.extend(identities_in(&first).into_iter().filter(|held| held.file_stem() == file_stem_of(&path)));
    }
    holders.sort_by_key(Identity::dns_name);
    holders
}

fn file_stem_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The validity of a certificate, in Unix seconds: (not before, not after).
pub fn validity_of(certificate: &CertificateDer<'_>) -> Option<(i64, i64)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let validity = parsed.validity();
    Some((validity.not_before.timestamp(), validity.not_after.timestamp()))
}

/// Whether `<stem>.pem` and `<stem>.key` are both in `dir`; an error names the missing
/// one when only one is.
fn existing_pair(dir: &Path, stem: &str) -> Result<bool, CertError> {
    let certificate = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    match (certificate.exists(), key.exists()) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (has_certificate, _) => {
            let (missing, present) = if has_certificate { (key, certificate) } else { (certificate, key) };
            let fix = if stem == "ca" {
                "restore it from your backup (a new CA would need new certificates on every node and client)"
            } else {
                "restore it, or delete the other file of the pair to issue both anew"
            };
            Err(CertError::Incomplete { missing, present, fix })
        }
    }
}

/// A holder's certificate chain and key, plus the CA to check peers against.
#[derive(Debug)]
pub struct Credentials {
    pub identity: Identity,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub ca: CertificateDer<'static>,
}

impl Credentials {
    /// Loads `<stem>.pem`, `<stem>.key` and `ca.pem` from `dir`, checking that the
    /// certificate names `identity`.
    pub fn load(dir: &Path, identity: &Identity) -> Result<Credentials, CertError> {
        let stem = identity.file_stem();
        // A missing file is the commonest set-up mistake: name the command that makes it.
        let missing = |path: PathBuf| {
            let nodes = match identity {
                Identity::Node(id) => id.clone(),
                _ => "n1,n2,n3".into(),
            };
            let fix = format!(
                "`baton certs --out {} --nodes {nodes}` creates ca.pem and {stem}.pem/.key there                  (or copy them from the directory where the cluster's certificates were made)",
                dir.display()
            );
            CertError::Missing { path, fix }
        };
        let exists = |path: PathBuf| if path.exists() { Ok(path) } else { Err(missing(path)) };
        let ca = read_certificates(&exists(dir.join("ca.pem"))?)?
            .into_iter()
            .next()
            .expect("read_certificates returns at least one");
        let certificate_path = exists(dir.join(format!("{stem}.pem")))?;
        let chain = read_certificates(&certificate_path)?;
        let key_path = exists(dir.join(format!("{stem}.key")))?;
        let key_pem = std::fs::read(&key_path).map_err(io(&key_path))?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .ok()
            .flatten()
            .ok_or_else(|| CertError::Invalid { path: key_path.clone(), reason: "no private key in PEM".into() })?;
        let named = identities_in(&chain[0]);
        if !named.contains(identity) {
            let named = if named.is_empty() {
                "no Baton holder".to_string()
            } else {
                named.iter().map(Identity::dns_name).collect::<Vec<_>>().join(", ")
            };
            let hint = match identity {
                Identity::Node(_) => "a node needs the one `baton certs` made for its --id",
                Identity::Operator(_) => "admin commands need an operator's: `--as-operator NAME` picks NAME.pem",
                Identity::Client(_) => "an application needs a client certificate, such as client.pem",
            };
            return Err(CertError::WrongHolder { path: certificate_path, named, wanted: identity.dns_name(), hint });
        }
        Ok(Credentials { identity: identity.clone(), chain, key, ca })
    }
}

/// The certificates in PEM text (none if it holds none or does not parse).
pub fn certificates_in_pem(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut &pem[..]).filter_map(Result::ok).collect()
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = std::fs::read(path).map_err(io(path))?;
    let certificates: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<_, _>>().map_err(io(path))?;
    if certificates.is_empty() {
        return Err(CertError::Invalid { path: path.to_path_buf(), reason: "no certificate in PEM".into() });
    }
    Ok(certificates)
}

/// Every Baton identity a certificate's subject alternative names carry.
pub fn identities_in(certificate: &CertificateDer<'_>) -> Vec<Identity> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else { return Vec::new() };
    let Ok(Some(names)) = parsed.subject_alternative_name() else { return Vec::new() };
    names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Identity::from_dns_name(dns),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a generated cluster loads back, each certificate naming its holder, and a
    /// certificate loaded under the wrong name is refused.
    #[test]
    fn generate_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = vec!["n1".to_string(), "n2".to_string()];
        let made = generate_cluster(dir.path(), &nodes).unwrap();
        assert_eq!(made.ca, Made::Issued);
        let identities: Vec<Identity> = made.holders.iter().map(|(identity, _)| identity.clone()).collect();
        assert_eq!(identities.len(), 4);
        for identity in &identities {
            let credentials = Credentials::load(dir.path(), identity).unwrap();
            assert_eq!(identities_in(&credentials.chain[0]), vec![identity.clone()]);
        }
        std::fs::copy(dir.path().join("n1.pem"), dir.path().join("n2.pem")).unwrap();
        let error = Credentials::load(dir.path(), &Identity::Node("n2".into())).unwrap_err().to_string();
        assert!(error.contains("n2.pem") && error.contains("not n2.node.baton"), "{error}");
        let authority = Authority::load(dir.path()).unwrap();
        let more = authority.issue(&Identity::Node("n3".into()), CERT_LIFETIME_DAYS_DEFAULT).unwrap();
        assert!(more.certificate_pem.contains("BEGIN CERTIFICATE"));
        assert!(matches!(generate_cluster(dir.path(), &["bad name".into()]), Err(CertError::BadName(_))));
    }

    /// Goal: running `baton certs` again on the same directory replaces nothing; it adds
    /// a new node's certificate signed by the CA already there, and a half-present pair is
    /// an error that names the missing file.
    #[test]
    fn a_second_run_keeps_the_ca_and_adds_only_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        generate_cluster(dir.path(), &["n1".into(), "n2".into()]).unwrap();
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        let (ca_before, n1_before) = (read("ca.pem"), read("n1.pem"));
        let made = generate_cluster(dir.path(), &["n1".into(), "n3".into()]).unwrap();
        assert_eq!(made.ca, Made::Kept);
        assert_eq!(made.holders[0], (Identity::Node("n1".into()), Made::Kept));
        assert_eq!(made.holders[1], (Identity::Node("n3".into()), Made::Issued));
        assert!(made.holders[2..].iter().all(|(_, made)| *made == Made::Kept), "operator and client kept");
        assert_eq!((read("ca.pem"), read("n1.pem")), (ca_before, n1_before));
        let n3 = Credentials::load(dir.path(), &Identity::Node("n3".into())).unwrap();
        let n1 = Credentials::load(dir.path(), &Identity::Node("n1".into())).unwrap();
        assert_eq!(n3.ca, n1.ca, "n3 is signed by the same CA");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new({
                let mut roots = rustls::RootCertStore::empty();
                roots.add(n1.ca.clone()).unwrap();
                roots
            }),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier.verify_client_cert(&n3.chain[0], &n3.chain[1..], now).expect("the kept CA signed n3");

        std::fs::remove_file(dir.path().join("n3.key")).unwrap();
        let error = generate_cluster(dir.path(), &["n3".into()]).unwrap_err().to_string();
        assert!(error.contains("n3.key: missing") && error.contains("n3.pem"), "{error}");
    }
}
