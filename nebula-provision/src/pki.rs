//! The operator's PKI state: the CA (created once, key optionally passphrase-encrypted) and each
//! host's issued certificate and key under `<pki.dir>/hosts/`, and the keep/issue decision for each.
//!
//! A host certificate is kept while it still says what the inventory wants (name, network, groups,
//! version, curve, issuing CA) and is not within the renewal window; otherwise it is re-issued with a
//! fresh key. Times are passed in (unix seconds) so the decisions are testable.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nebula_cert::cert::{Certificate, TbsCertificate};
use nebula_cert::encrypted::{
    decrypt_and_unmarshal_ca_private_key, encrypt_and_marshal_ca_private_key,
};
use nebula_cert::keys::{
    ca_public_key_bytes, generate_ca_key, keygen, marshal_ca_private_key, marshal_private_key,
    unmarshal_ca_private_key, unmarshal_private_key, KeyError,
};
use nebula_cert::signing::CaSigningKey;
use nebula_cert::{Curve, Version};
use zeroize::Zeroizing;

use crate::error::PkiError;
use crate::model::{Host, Mesh, PkiSettings};

/// Seconds per day.
pub const DAY: i64 = 86_400;
/// Certificates start this long before "now", for hosts whose clock runs a little behind.
pub const CLOCK_SKEW: i64 = 300;

/// The CA as found in (or just written to) the PKI directory.
pub struct Ca {
    /// `ca.crt`.
    pub cert: Certificate,
    /// `ca.crt` as PEM text (what bundles carry).
    pub cert_pem: String,
    /// `ca.key` path.
    pub key_path: PathBuf,
    /// `ca.key` as read or written (wiped when dropped).
    key_pem: Zeroizing<Vec<u8>>,
    key: Option<CaSigningKey>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("name", &self.cert.name())
            .field("fingerprint", &self.cert.fingerprint_hex())
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Whether the key on disk is passphrase-encrypted.
    pub fn key_encrypted(&self) -> bool {
        matches!(
            unmarshal_ca_private_key(&self.key_pem),
            Err(KeyError::Encrypted)
        )
    }

    /// The signing key, decrypting it with `passphrase` the first time if it is encrypted.
    pub fn signing_key(
        &mut self,
        settings: &PkiSettings,
        passphrase: Option<&[u8]>,
    ) -> Result<&CaSigningKey, PkiError> {
        if self.key.is_none() {
            let key = match unmarshal_ca_private_key(&self.key_pem) {
                Ok((k, _)) => k,
                Err(KeyError::Encrypted) => {
                    let pass = passphrase.ok_or_else(|| PkiError::PassphraseMissing {
                        env: settings.passphrase_env.clone(),
                    })?;
                    match decrypt_and_unmarshal_ca_private_key(pass, &self.key_pem) {
                        Ok((k, _)) => k,
                        Err(KeyError::WrongPassphrase) => {
                            return Err(PkiError::WrongPassphrase {
                                path: self.key_path.clone(),
                            })
                        }
                        Err(e) => return Err(bad(&self.key_path, e)),
                    }
                }
                Err(e) => return Err(bad(&self.key_path, e)),
            };
            if ca_public_key_bytes(&key) != self.cert.public_key() {
                return Err(PkiError::BadFile {
                    path: self.key_path.clone(),
                    reason: "this key does not belong to ca.crt".into(),
                });
            }
            self.key = Some(key);
        }
        self.key.as_ref().ok_or_else(|| PkiError::BadFile {
            path: self.key_path.clone(),
            reason: "CA key unavailable".into(),
        })
    }
}

fn bad(path: &Path, e: impl fmt::Display) -> PkiError {
    PkiError::BadFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, PkiError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `data` to `path` with `mode`, through a temporary file and a rename.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), std::io::Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    // The mode given to open() is masked by the umask; set it exactly.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path)
}

fn ensure_private_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// `<dir>/ca.crt`.
pub fn ca_cert_path(s: &PkiSettings) -> PathBuf {
    s.dir.join("ca.crt")
}

/// `<dir>/ca.key`.
pub fn ca_key_path(s: &PkiSettings) -> PathBuf {
    s.dir.join("ca.key")
}

/// `<dir>/hosts/<name>.crt` and `.key`.
pub fn host_paths(s: &PkiSettings, name: &str) -> (PathBuf, PathBuf) {
    let d = s.dir.join("hosts");
    (d.join(format!("{name}.crt")), d.join(format!("{name}.key")))
}

/// Reads the CA, if the PKI directory has one. Half a CA (only one of the two files) is an error.
pub fn load_ca(s: &PkiSettings) -> Result<Option<Ca>, PkiError> {
    let cert_path = ca_cert_path(s);
    let key_path = ca_key_path(s);
    let cert_pem = read_opt(&cert_path)?;
    let key_pem = read_opt(&key_path)?;
    match (cert_pem, key_pem) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(PkiError::BadFile {
            path: key_path,
            reason: "ca.crt exists but its key is missing".into(),
        }),
        (None, Some(_)) => Err(PkiError::BadFile {
            path: cert_path,
            reason: "ca.key exists but ca.crt is missing".into(),
        }),
        (Some(c), Some(key_pem)) => {
            let (cert, _) = Certificate::from_pem(&c).map_err(|e| bad(&cert_path, e))?;
            if !cert.is_ca() {
                return Err(bad(&cert_path, "not a CA certificate"));
            }
            Ok(Some(Ca {
                cert_pem: cert.marshal_pem(),
                cert,
                key_path,
                key_pem: Zeroizing::new(key_pem),
                key: None,
            }))
        }
    }
}

/// Makes a new CA for the mesh and writes `ca.crt` (0644) and `ca.key` (0600, encrypted when the
/// inventory asks for it).
pub fn create_ca(mesh: &Mesh, passphrase: Option<&[u8]>, now: i64) -> Result<Ca, PkiError> {
    let s = &mesh.pki;
    let key = generate_ca_key(mesh.curve);
    let tbs = TbsCertificate {
        version: mesh.cert_version,
        name: mesh.name.clone(),
        networks: Vec::new(),
        unsafe_networks: Vec::new(),
        groups: Vec::new(),
        is_ca: true,
        not_before: now - CLOCK_SKEW,
        not_after: now + i64::from(s.ca_days) * DAY,
        public_key: ca_public_key_bytes(&key),
        curve: mesh.curve,
    };
    let cert = tbs.sign(None, &key).map_err(|e| PkiError::Sign {
        name: mesh.name.clone(),
        reason: e.to_string(),
    })?;
    let mut key_pem = if s.encrypt_ca_key {
        let pass = passphrase.ok_or_else(|| PkiError::PassphraseMissing {
            env: s.passphrase_env.clone(),
        })?;
        Zeroizing::new(
            encrypt_and_marshal_ca_private_key(&key, pass, &s.argon2)
                .map_err(|e| bad(&ca_key_path(s), e))?,
        )
    } else {
        marshal_ca_private_key(&key)
    };
    ensure_private_dir(&s.dir)?;
    let key_path = ca_key_path(s);
    write_file(&key_path, key_pem.as_bytes(), 0o600).map_err(|source| PkiError::Io {
        path: key_path.clone(),
        source,
    })?;
    let cert_pem = cert.marshal_pem();
    let cert_path = ca_cert_path(s);
    write_file(&cert_path, cert_pem.as_bytes(), 0o644).map_err(|source| PkiError::Io {
        path: cert_path,
        source,
    })?;
    Ok(Ca {
        cert,
        cert_pem,
        key_path,
        key_pem: Zeroizing::new(std::mem::take(&mut *key_pem).into_bytes()),
        key: Some(key),
    })
}

/// What the inventory wants a host's certificate to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredCert {
    /// Certificate name (the host name).
    pub name: String,
    /// Overlay network(s).
    pub networks: Vec<IpNet>,
    /// Groups, sorted.
    pub groups: Vec<String>,
    /// Format.
    pub version: Version,
    /// Curve.
    pub curve: Curve,
}

impl DesiredCert {
    /// For `host` in `mesh`.
    pub fn for_host(mesh: &Mesh, host: &Host) -> DesiredCert {
        DesiredCert {
            name: host.name.clone(),
            networks: vec![host.network],
            groups: host.groups.clone(),
            version: mesh.cert_version,
            curve: mesh.curve,
        }
    }
}

/// A host's issued certificate and private key (PEM), as stored in the PKI directory.
#[derive(Clone)]
pub struct HostCert {
    /// The certificate.
    pub cert: Certificate,
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM (wiped when dropped).
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for HostCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostCert")
            .field("name", &self.cert.name())
            .field("not_after", &self.cert.not_after())
            .finish_non_exhaustive()
    }
}

/// What is stored for a host: nothing, something unusable (with the reason), or a cert and key.
#[derive(Debug)]
pub enum Stored {
    /// No files.
    Missing,
    /// Files exist but cannot be used.
    Unusable(String),
    /// A parsed certificate and key.
    Found(HostCert),
}

/// Reads a host's stored certificate and key.
pub fn load_host(s: &PkiSettings, name: &str) -> Result<Stored, PkiError> {
    let (crt, key) = host_paths(s, name);
    let c = read_opt(&crt)?;
    let k = read_opt(&key)?;
    let (c, k) = match (c, k) {
        (None, None) => return Ok(Stored::Missing),
        (Some(c), Some(k)) => (c, k),
        _ => return Ok(Stored::Unusable("certificate or key file missing".into())),
    };
    let cert = match Certificate::from_pem(&c) {
        Ok((cert, _)) => cert,
        Err(e) => return Ok(Stored::Unusable(format!("certificate unreadable: {e}"))),
    };
    let key_pem = match String::from_utf8(k) {
        Ok(s) => Zeroizing::new(s),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            return Ok(Stored::Unusable("key file is not PEM text".into()));
        }
    };
    match unmarshal_private_key(key_pem.as_bytes()) {
        Ok((raw, curve, _)) => {
            if cert.verify_private_key(curve, &raw).is_err() {
                return Ok(Stored::Unusable(
                    "key does not match the certificate".into(),
                ));
            }
        }
        Err(e) => return Ok(Stored::Unusable(format!("key unreadable: {e}"))),
    }
    Ok(Stored::Found(HostCert {
        cert_pem: cert.marshal_pem(),
        cert,
        key_pem,
    }))
}

/// Why a certificate is (re-)issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueReason {
    /// The host has none yet.
    New,
    /// Fields differ from the inventory (each entry: `field: old -> new`).
    Changed(Vec<String>),
    /// Signed by another CA (the CA was replaced).
    CaChanged,
    /// Expires within the renewal window.
    Renew {
        /// Whole days left (may be negative when already expired).
        days_left: i64,
    },
    /// Asked for on the command line.
    Forced,
    /// The stored files cannot be used.
    Unusable(String),
}

impl fmt::Display for IssueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssueReason::New => write!(f, "new host"),
            IssueReason::Changed(c) => write!(f, "changed: {}", c.join("; ")),
            IssueReason::CaChanged => write!(f, "issued by another CA"),
            IssueReason::Renew { days_left } if *days_left < 0 => write!(f, "expired"),
            IssueReason::Renew { days_left } => {
                write!(f, "expires in {days_left} day(s), renewing")
            }
            IssueReason::Forced => write!(f, "renewal requested"),
            IssueReason::Unusable(r) => write!(f, "stored files unusable: {r}"),
        }
    }
}

/// The decision for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertAction {
    /// Keep the stored certificate.
    Keep {
        /// Its expiry (unix seconds).
        not_after: i64,
    },
    /// Issue a new certificate and key.
    Issue(IssueReason),
}

fn fmt_list<T: fmt::Display>(v: &[T]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The validity a certificate issued now would get: (not_before, not_after), inside the CA's.
pub fn validity(ca: &Certificate, settings: &PkiSettings, now: i64) -> (i64, i64) {
    let not_before = (now - CLOCK_SKEW).max(ca.not_before());
    let not_after = (now + i64::from(settings.cert_days) * DAY).min(ca.not_after());
    (not_before, not_after)
}

/// Keep or issue: compares the stored certificate with what the inventory wants.
pub fn decide(
    stored: &Stored,
    want: &DesiredCert,
    ca: &Certificate,
    settings: &PkiSettings,
    now: i64,
    forced: bool,
) -> CertAction {
    let hc = match stored {
        Stored::Missing => return CertAction::Issue(IssueReason::New),
        Stored::Unusable(r) => return CertAction::Issue(IssueReason::Unusable(r.clone())),
        Stored::Found(hc) => hc,
    };
    let c = &hc.cert;
    if forced {
        return CertAction::Issue(IssueReason::Forced);
    }
    if c.issuer_hex() != ca.fingerprint_hex() || !c.check_signature(ca.public_key()) {
        return CertAction::Issue(IssueReason::CaChanged);
    }
    let mut changes = Vec::new();
    if c.name() != want.name {
        changes.push(format!("name: {} -> {}", c.name(), want.name));
    }
    let mut have_nets = c.networks().to_vec();
    have_nets.sort();
    let mut want_nets = want.networks.clone();
    want_nets.sort();
    if have_nets != want_nets {
        changes.push(format!(
            "networks: {} -> {}",
            fmt_list(&have_nets),
            fmt_list(&want_nets)
        ));
    }
    let mut have_groups = c.groups().to_vec();
    have_groups.sort();
    have_groups.dedup();
    if have_groups != want.groups {
        changes.push(format!(
            "groups: {} -> {}",
            fmt_list(&have_groups),
            fmt_list(&want.groups)
        ));
    }
    if !c.unsafe_networks().is_empty() {
        changes.push(format!(
            "unsafe_networks: {} -> []",
            fmt_list(c.unsafe_networks())
        ));
    }
    if c.version() != want.version {
        changes.push(format!("version: {:?} -> {:?}", c.version(), want.version));
    }
    if c.curve() != want.curve {
        changes.push(format!(
            "curve: {} -> {}",
            c.curve().name(),
            want.curve.name()
        ));
    }
    if !changes.is_empty() {
        return CertAction::Issue(IssueReason::Changed(changes));
    }
    let left = c.not_after() - now;
    if left <= i64::from(settings.renew_before_days) * DAY {
        // Renew only if a new certificate would actually last longer (the CA caps it); otherwise
        // every run would re-issue while the CA itself nears its end.
        let (_, new_after) = validity(ca, settings, now);
        if new_after > c.not_after() {
            return CertAction::Issue(IssueReason::Renew {
                days_left: left.div_euclid(DAY),
            });
        }
    }
    CertAction::Keep {
        not_after: c.not_after(),
    }
}

/// Issues a certificate and fresh key for `want`, and stores them (`.crt` 0644, `.key` 0600).
pub fn issue(
    ca: &mut Ca,
    settings: &PkiSettings,
    want: &DesiredCert,
    passphrase: Option<&[u8]>,
    now: i64,
) -> Result<HostCert, PkiError> {
    let (not_before, not_after) = validity(&ca.cert, settings, now);
    if not_after <= now {
        return Err(PkiError::Sign {
            name: want.name.clone(),
            reason: format!(
                "the CA `{}` has expired; make a new CA (move {} away) and re-render every host",
                ca.cert.name(),
                settings.dir.display()
            ),
        });
    }
    let (private, public) = keygen(want.curve);
    let tbs = TbsCertificate {
        version: want.version,
        name: want.name.clone(),
        networks: want.networks.clone(),
        unsafe_networks: Vec::new(),
        groups: want.groups.clone(),
        is_ca: false,
        not_before,
        not_after,
        public_key: public,
        curve: want.curve,
    };
    let ca_cert = ca.cert.clone();
    let key = ca.signing_key(settings, passphrase)?;
    let cert = tbs.sign(Some(&ca_cert), key).map_err(|e| PkiError::Sign {
        name: want.name.clone(),
        reason: e.to_string(),
    })?;
    let hc = HostCert {
        cert_pem: cert.marshal_pem(),
        key_pem: marshal_private_key(want.curve, &private),
        cert,
    };
    let (crt_path, key_path) = host_paths(settings, &want.name);
    ensure_private_dir(&settings.dir)?;
    if let Some(d) = crt_path.parent() {
        ensure_private_dir(d)?;
    }
    write_file(&key_path, hc.key_pem.as_bytes(), 0o600).map_err(|source| PkiError::Io {
        path: key_path.clone(),
        source,
    })?;
    write_file(&crt_path, hc.cert_pem.as_bytes(), 0o644).map_err(|source| PkiError::Io {
        path: crt_path.clone(),
        source,
    })?;
    Ok(hc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mesh_in, INV};

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_ca_capped_certificate_is_not_reissued_every_run() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(
            t.path(),
            &INV.replacen("dir: pki", "dir: pki\n  ca_days: 100", 1),
        );
        let mut ca = create_ca(&mesh, None, NOW).expect("ca");
        let host = mesh.host("web1").expect("web1");
        let want = DesiredCert::for_host(&mesh, host);
        let hc = issue(&mut ca, &mesh.pki, &want, None, NOW).expect("issue");
        assert_eq!(hc.cert.not_after(), ca.cert.not_after(), "capped by the CA");
        let stored = load_host(&mesh.pki, "web1").expect("load");
        let late = ca.cert.not_after() - 10 * DAY;
        assert!(matches!(
            decide(&stored, &want, &ca.cert, &mesh.pki, late, false),
            CertAction::Keep { .. }
        ));
    }

    #[test]
    fn unusable_or_mismatched_files_are_reissued() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let mut ca = create_ca(&mesh, None, NOW).expect("ca");
        let web1 = DesiredCert::for_host(&mesh, mesh.host("web1").expect("web1"));
        let web2 = DesiredCert::for_host(&mesh, mesh.host("web2").expect("web2"));
        issue(&mut ca, &mesh.pki, &web1, None, NOW).expect("issue");
        issue(&mut ca, &mesh.pki, &web2, None, NOW).expect("issue");
        let (crt1, key1) = host_paths(&mesh.pki, "web1");
        let (_, key2) = host_paths(&mesh.pki, "web2");
        // web1's certificate with web2's key.
        std::fs::copy(&key2, &key1).expect("copy");
        let stored = load_host(&mesh.pki, "web1").expect("load");
        assert!(matches!(
            decide(&stored, &web1, &ca.cert, &mesh.pki, NOW, false),
            CertAction::Issue(IssueReason::Unusable(ref r)) if r.contains("does not match")
        ));
        std::fs::write(&crt1, "garbage").expect("write");
        assert!(matches!(
            decide(
                &load_host(&mesh.pki, "web1").expect("load"),
                &web1,
                &ca.cert,
                &mesh.pki,
                NOW,
                false
            ),
            CertAction::Issue(IssueReason::Unusable(_))
        ));
        std::fs::remove_file(&crt1).expect("rm");
        assert!(matches!(
            load_host(&mesh.pki, "web1").expect("load"),
            Stored::Unusable(_)
        ));
    }

    #[test]
    fn a_p256_mesh_gets_p256_certificates() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(
            t.path(),
            &INV.replacen(
                "network: 10.10.0.0/24",
                "network: 10.10.0.0/24\n  curve: P256\n  cert_version: 2",
                1,
            ),
        );
        let mut ca = create_ca(&mesh, None, NOW).expect("ca");
        assert_eq!(ca.cert.curve(), Curve::P256);
        let want = DesiredCert::for_host(&mesh, mesh.host("lh").expect("lh"));
        let hc = issue(&mut ca, &mesh.pki, &want, None, NOW).expect("issue");
        assert_eq!(hc.cert.curve(), Curve::P256);
        assert_eq!(hc.cert.version(), Version::V2);
        let stored = load_host(&mesh.pki, "lh").expect("load");
        assert!(matches!(
            decide(&stored, &want, &ca.cert, &mesh.pki, NOW, false),
            CertAction::Keep { .. }
        ));
        let mut v1 = want.clone();
        v1.version = Version::V1;
        assert!(matches!(
            decide(&stored, &v1, &ca.cert, &mesh.pki, NOW, false),
            CertAction::Issue(IssueReason::Changed(_))
        ));
    }
}
