//! Plan and render: decides what happens to the CA, each host's certificate and each output file,
//! and (unless it is a dry run) does it. `plan` is the same run with nothing written.
//!
//! Re-running with an unchanged inventory changes nothing: certificates are kept until they near
//! expiry, and files are only written when their bytes or mode differ.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{OutputError, PkiError};
use crate::model::Mesh;
use crate::pki::{self, CertAction, DesiredCert, HostCert, Stored, DAY};
use crate::render::{self, names, OutFile, Pem};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The CA or a certificate could not be read, made or stored.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// An output file could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// "Now", unix seconds.
    pub now: i64,
    /// Hosts whose certificate is re-issued regardless.
    pub force_renew: BTreeSet<String>,
    /// CA passphrase, when the key is (or is to be) encrypted.
    pub passphrase: Option<&'a [u8]>,
    /// Decide and report only; write nothing.
    pub dry_run: bool,
}

/// What happened (or would happen) to the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaOutcome {
    /// Made now.
    Created {
        /// Its fingerprint.
        fingerprint: String,
        /// Expiry.
        not_after: i64,
    },
    /// Would be made (dry run).
    WouldCreate,
    /// The existing CA is used.
    Reused {
        /// Its fingerprint.
        fingerprint: String,
        /// Expiry.
        not_after: i64,
        /// Key is passphrase-encrypted.
        encrypted: bool,
    },
}

/// What happens to one output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// New file.
    Create,
    /// Contents differ.
    Update,
    /// Only the mode differs.
    Mode,
    /// Nothing to do.
    Unchanged,
    /// A bundle file this inventory no longer produces.
    Remove,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Update => "update",
            Change::Mode => "chmod",
            Change::Unchanged => "unchanged",
            Change::Remove => "remove",
        }
    }
}

/// The outcome for one host's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOutcome {
    /// Host.
    pub name: String,
    /// Keep or issue (and why).
    pub action: CertAction,
    /// The expiry of the certificate in the bundle after the run (unknown in a dry run that
    /// would issue).
    pub not_after: Option<i64>,
}

/// Everything a run decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The CA.
    pub ca: CaOutcome,
    /// Each host's certificate, in host order.
    pub hosts: Vec<HostOutcome>,
    /// Each output file (relative path) and its change.
    pub files: Vec<(PathBuf, Change)>,
    /// Things the operator should know (CA nearing expiry, stray folders).
    pub warnings: Vec<String>,
    /// The rendered files (contents `None` where a dry run would issue a certificate first).
    pub rendered: Vec<OutFile>,
}

impl Outcome {
    /// Whether anything changed (or would).
    pub fn changed(&self) -> bool {
        !matches!(self.ca, CaOutcome::Reused { .. })
            || self
                .hosts
                .iter()
                .any(|h| matches!(h.action, CertAction::Issue(_)))
            || self.files.iter().any(|(_, c)| *c != Change::Unchanged)
    }

    /// Files that change (or would).
    pub fn changed_files(&self) -> impl Iterator<Item = &(PathBuf, Change)> {
        self.files.iter().filter(|(_, c)| *c != Change::Unchanged)
    }
}

/// `YYYY-MM-DD` of a unix time.
pub fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| unix.to_string())
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let would = if self.dry_run { "would be " } else { "" };
        match &self.ca {
            CaOutcome::Created {
                fingerprint,
                not_after,
            } => writeln!(
                f,
                "CA: created (fingerprint {fingerprint}, expires {})",
                date(*not_after)
            )?,
            CaOutcome::WouldCreate => writeln!(f, "CA: would be created")?,
            CaOutcome::Reused {
                fingerprint,
                not_after,
                encrypted,
            } => writeln!(
                f,
                "CA: reused (fingerprint {fingerprint}, expires {}{})",
                date(*not_after),
                if *encrypted { ", key encrypted" } else { "" }
            )?,
        }
        for h in &self.hosts {
            match &h.action {
                CertAction::Keep { not_after } => {
                    writeln!(f, "cert {}: keep (expires {})", h.name, date(*not_after))?
                }
                CertAction::Issue(r) => writeln!(f, "cert {}: {would}issued ({r})", h.name)?,
            }
        }
        let mut any = false;
        for (p, c) in self.changed_files() {
            any = true;
            writeln!(f, "file {}: {}{}", p.display(), would, c.word())?;
        }
        let unchanged = self
            .files
            .iter()
            .filter(|(_, c)| *c == Change::Unchanged)
            .count();
        if !any {
            writeln!(f, "files: no changes ({unchanged} up to date)")?;
        } else if unchanged > 0 {
            writeln!(f, "files: {unchanged} others up to date")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

fn out_io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn file_change(path: &Path, f: &OutFile) -> Result<Change, OutputError> {
    use std::os::unix::fs::PermissionsExt;
    let existing = match fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(out_io(path)(e)),
    };
    Ok(match (existing, &f.contents) {
        (None, _) => Change::Create,
        (Some(_), None) => Change::Update,
        (Some(e), Some(c)) if &e != c => Change::Update,
        (Some(_), Some(_)) => {
            let mode = fs::metadata(path)
                .map_err(out_io(path))?
                .permissions()
                .mode()
                & 0o7777;
            if mode != f.mode {
                Change::Mode
            } else {
                Change::Unchanged
            }
        }
    })
}

fn ensure_dir(dir: &Path, mode: u32) -> Result<(), OutputError> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(out_io(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(out_io(dir))?;
    }
    Ok(())
}

/// Runs plan (dry run) or render for every host of `mesh` into `out_dir`.
pub fn run(mesh: &Mesh, out_dir: &Path, opts: &Options<'_>) -> Result<Outcome, ProvisionError> {
    let settings = &mesh.pki;
    let mut warnings = Vec::new();

    // 1. The CA.
    let mut ca = pki::load_ca(settings)?;
    let ca_outcome = match &ca {
        Some(c) => {
            if c.cert.curve() != mesh.curve {
                return Err(PkiError::CurveMismatch {
                    path: pki::ca_cert_path(settings),
                    found: c.cert.curve().name(),
                    wanted: mesh.curve.name(),
                }
                .into());
            }
            CaOutcome::Reused {
                fingerprint: c.cert.fingerprint_hex(),
                not_after: c.cert.not_after(),
                encrypted: c.key_encrypted(),
            }
        }
        None if opts.dry_run => CaOutcome::WouldCreate,
        None => {
            let c = pki::create_ca(mesh, opts.passphrase, opts.now)?;
            let out = CaOutcome::Created {
                fingerprint: c.cert.fingerprint_hex(),
                not_after: c.cert.not_after(),
            };
            ca = Some(c);
            out
        }
    };
    if let Some(c) = &ca {
        let left = c.cert.not_after() - opts.now;
        if left <= i64::from(settings.renew_before_days) * DAY {
            warnings.push(format!(
                "the CA expires on {} ({} day(s)); host certificates cannot outlive it: plan a new CA",
                date(c.cert.not_after()),
                left.div_euclid(DAY)
            ));
        }
    }

    // 2. Host certificates.
    let mut hosts = Vec::new();
    let mut certs: Vec<Option<HostCert>> = Vec::new();
    for h in &mesh.hosts {
        let want = DesiredCert::for_host(mesh, h);
        let stored = pki::load_host(settings, &h.name)?;
        let action = match &ca {
            Some(c) => pki::decide(
                &stored,
                &want,
                &c.cert,
                settings,
                opts.now,
                opts.force_renew.contains(&h.name),
            ),
            None => CertAction::Issue(pki::IssueReason::New),
        };
        let cert = match (&action, stored) {
            (CertAction::Keep { .. }, Stored::Found(hc)) => Some(hc),
            (CertAction::Issue(_), _) if !opts.dry_run => match ca.as_mut() {
                Some(c) => Some(pki::issue(c, settings, &want, opts.passphrase, opts.now)?),
                None => None,
            },
            _ => None,
        };
        hosts.push(HostOutcome {
            name: h.name.clone(),
            not_after: cert.as_ref().map(|c| c.cert.not_after()),
            action,
        });
        certs.push(cert);
    }

    // 3. Files.
    let ca_pem = ca.as_ref().map(|c| c.cert_pem.clone());
    let mut files: Vec<OutFile> = Vec::new();
    for (h, cert) in mesh.hosts.iter().zip(&certs) {
        files.extend(render::bundle(
            mesh,
            h,
            Pem {
                ca: ca_pem.as_deref(),
                cert: cert.as_ref().map(|c| c.cert_pem.as_str()),
                key: cert.as_ref().map(|c| c.key_pem.as_str()),
            },
        ));
    }
    files.extend(render::shared_files(mesh));

    let mut changes = Vec::new();
    for f in &files {
        let path = out_dir.join(&f.rel);
        let change = file_change(&path, f)?;
        if !opts.dry_run && change != Change::Unchanged {
            if let Some(parent) = path.parent() {
                // Bundle folders hold private keys.
                let bundle_dir = f.rel.components().count() == 2
                    && !f.rel.starts_with("ansible")
                    && !f.rel.starts_with("terraform");
                ensure_dir(out_dir, 0o755)?;
                ensure_dir(parent, if bundle_dir { 0o700 } else { 0o755 })?;
            }
            match (&f.contents, change) {
                (Some(c), Change::Create | Change::Update) => {
                    pki::write_file(&path, c, f.mode).map_err(out_io(&path))?
                }
                (_, Change::Mode) => {
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&path, fs::Permissions::from_mode(f.mode))
                        .map_err(out_io(&path))?
                }
                _ => {}
            }
        }
        changes.push((f.rel.clone(), change));
    }

    // Bundle files this inventory no longer produces (e.g. cloud-init turned off).
    let wanted: BTreeSet<&Path> = files.iter().map(|f| f.rel.as_path()).collect();
    for h in &mesh.hosts {
        for n in names::ALL {
            let rel = PathBuf::from(&h.name).join(n);
            let path = out_dir.join(&rel);
            if !wanted.contains(rel.as_path()) && path.is_file() {
                if !opts.dry_run {
                    fs::remove_file(&path).map_err(out_io(&path))?;
                }
                changes.push((rel, Change::Remove));
            }
        }
    }
    // Bundles of hosts no longer in the inventory are left alone, but mentioned.
    if let Ok(rd) = fs::read_dir(out_dir) {
        let known: BTreeSet<&str> = mesh.hosts.iter().map(|h| h.name.as_str()).collect();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !known.contains(name.as_str())
                && e.path().join(names::CONFIG).is_file()
                && e.path().join(names::SERVICE).is_file()
            {
                warnings.push(format!(
                    "{} holds the bundle of `{name}`, which is not in the inventory (left alone)",
                    e.path().display()
                ));
            }
        }
    }

    Ok(Outcome {
        dry_run: opts.dry_run,
        ca: ca_outcome,
        hosts,
        files: changes,
        warnings,
        rendered: files,
    })
}
