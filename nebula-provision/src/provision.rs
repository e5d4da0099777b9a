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
use crate::model::{BinarySource, DebSource, Mesh};
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
        // A cloud-init host embeds a local .deb in its user data.
        let deb = match (&h.binary.source, &h.cloud_init) {
            (BinarySource::Deb(DebSource::Local(p)), Some(_)) => {
                Some(fs::read(p).map_err(out_io(p))?)
            }
            _ => None,
        };
        files.extend(render::bundle(
            mesh,
            h,
            Pem {
                ca: ca_pem.as_deref(),
                cert: cert.as_ref().map(|c| c.cert_pem.as_str()),
                key: cert.as_ref().map(|c| c.key_pem.as_str()),
                deb: deb.as_deref(),
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
    // Hosts outside the mesh too: one that left the mesh loses its bundle (and key).
    let all_hosts: Vec<&str> = mesh
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .chain(mesh.non_members.iter().map(|h| h.name.as_str()))
        .collect();
    for h in &all_hosts {
        for n in names::ALL {
            let rel = PathBuf::from(h).join(n);
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
        let known: BTreeSet<&str> = all_hosts.iter().copied().collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::IssueReason;
    use crate::testutil::{mesh_in, INV};
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    const NOW: i64 = 1_800_000_000;

    fn opts(now: i64) -> Options<'static> {
        Options {
            now,
            ..Options::default()
        }
    }

    /// Every file under `dir` with its bytes and mode.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o7777;
                    out.insert(
                        p.strip_prefix(dir).expect("prefix").to_path_buf(),
                        (fs::read(&p).expect("read"), mode),
                    );
                }
            }
        }
        out
    }

    fn action<'a>(o: &'a Outcome, host: &str) -> &'a CertAction {
        &o.hosts
            .iter()
            .find(|h| h.name == host)
            .expect("host in outcome")
            .action
    }

    #[test]
    fn first_run_writes_bundles_and_a_second_run_changes_nothing() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let out = t.path().join("out");
        let first = run(&mesh, &out, &opts(NOW)).expect("render");
        assert!(matches!(first.ca, CaOutcome::Created { .. }));
        assert!(first
            .hosts
            .iter()
            .all(|h| h.action == CertAction::Issue(IssueReason::New)));
        for f in [
            "lh/config.yml",
            "lh/ca.crt",
            "lh/host.crt",
            "lh/host.key",
            "lh/nebula.service",
            "lh/nebula-edge.nft",
            "lh/nebula-edge.service",
            "web1/user-data",
            "web2/config.yml",
            "ansible/site.yml",
            "terraform/lh/main.tf",
        ] {
            assert!(out.join(f).is_file(), "{f} missing");
        }
        assert!(!out.join("web2/user-data").exists());
        assert!(!out.join("web1/nebula-edge.nft").exists());
        let mode = |p: &str| {
            fs::metadata(out.join(p))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("lh/host.key"), 0o600);
        assert_eq!(mode("web1/user-data"), 0o600);
        assert_eq!(mode("lh/config.yml"), 0o644);
        assert_eq!(mode("lh"), 0o700);
        assert_eq!(
            fs::metadata(mesh.pki.dir.join("ca.key"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );

        let before = snapshot(t.path());
        let second = run(&mesh, &out, &opts(NOW + 3600)).expect("re-render");
        assert!(!second.changed(), "second run changed things:\n{second}");
        assert!(second
            .hosts
            .iter()
            .all(|h| matches!(h.action, CertAction::Keep { .. })));
        assert_eq!(before, snapshot(t.path()), "files changed on a no-op run");
        assert!(second.to_string().contains("files: no changes"));
    }

    #[test]
    fn changing_one_host_reissues_only_its_certificate_and_says_so_first() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let out = t.path().join("out");
        run(&mesh, &out, &opts(NOW)).expect("render");
        let before = snapshot(&out);

        let changed = mesh_in(
            t.path(),
            &INV.replacen(
                "groups: [web]\n    cloud_init",
                "groups: [web, canary]\n    cloud_init",
                1,
            ),
        );
        let mut dry = opts(NOW + 60);
        dry.dry_run = true;
        let plan = run(&changed, &out, &dry).expect("plan");
        assert_eq!(before, snapshot(&out), "a plan wrote files");
        match action(&plan, "web1") {
            CertAction::Issue(IssueReason::Changed(c)) => {
                assert_eq!(c, &vec!["groups: [web] -> [canary, web]".to_string()])
            }
            other => panic!("web1: {other:?}"),
        }
        assert!(matches!(action(&plan, "lh"), CertAction::Keep { .. }));
        assert!(matches!(action(&plan, "web2"), CertAction::Keep { .. }));
        let text = plan.to_string();
        assert!(
            text.contains("cert web1: would be issued (changed: groups"),
            "{text}"
        );
        assert!(
            text.contains("file web1/host.crt: would be update"),
            "{text}"
        );

        let done = run(&changed, &out, &opts(NOW + 60)).expect("render");
        let after = snapshot(&out);
        for f in [
            "lh/host.crt",
            "lh/host.key",
            "web2/host.crt",
            "web2/host.key",
            "lh/ca.crt",
        ] {
            assert_eq!(
                before.get(Path::new(f)),
                after.get(Path::new(f)),
                "{f} changed"
            );
        }
        for f in ["web1/host.crt", "web1/host.key", "web1/user-data"] {
            assert_ne!(
                before.get(Path::new(f)),
                after.get(Path::new(f)),
                "{f} unchanged"
            );
        }
        let changed_certs: Vec<&str> = done
            .hosts
            .iter()
            .filter(|h| matches!(h.action, CertAction::Issue(_)))
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(changed_certs, vec!["web1"]);
        let (cert, _) = nebula_cert::cert::Certificate::from_pem(
            &fs::read(out.join("web1/host.crt")).expect("read"),
        )
        .expect("pem");
        assert_eq!(cert.groups(), &["canary".to_string(), "web".to_string()]);

        // And then it is stable again.
        assert!(!run(&changed, &out, &opts(NOW + 120))
            .expect("again")
            .changed());
    }

    #[test]
    fn certificates_are_renewed_inside_the_window_only() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let out = t.path().join("out");
        run(&mesh, &out, &opts(NOW)).expect("render");
        // cert_days 365, renew_before_days 30 (defaults).
        let early = run(&mesh, &out, &opts(NOW + 334 * DAY)).expect("day 334");
        assert!(!early.changed(), "{early}");
        let late = run(&mesh, &out, &opts(NOW + 336 * DAY)).expect("day 336");
        for h in &late.hosts {
            assert!(
                matches!(
                    h.action,
                    CertAction::Issue(IssueReason::Renew { days_left: 29 })
                ),
                "{}: {:?}",
                h.name,
                h.action
            );
            assert_eq!(h.not_after, Some(NOW + 336 * DAY + 365 * DAY));
        }
        assert!(late.to_string().contains("expires in 29 day(s), renewing"));
        assert!(!run(&mesh, &out, &opts(NOW + 337 * DAY))
            .expect("after")
            .changed());
    }

    #[test]
    fn forced_renewal_and_a_replaced_ca() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let out = t.path().join("out");
        run(&mesh, &out, &opts(NOW)).expect("render");
        let mut o = opts(NOW);
        o.force_renew.insert("web2".into());
        let forced = run(&mesh, &out, &o).expect("forced");
        assert_eq!(
            action(&forced, "web2"),
            &CertAction::Issue(IssueReason::Forced)
        );
        assert!(matches!(action(&forced, "web1"), CertAction::Keep { .. }));

        fs::remove_file(mesh.pki.dir.join("ca.crt")).expect("rm");
        fs::remove_file(mesh.pki.dir.join("ca.key")).expect("rm");
        let fresh = run(&mesh, &out, &opts(NOW)).expect("new CA");
        assert!(matches!(fresh.ca, CaOutcome::Created { .. }));
        assert!(fresh
            .hosts
            .iter()
            .all(|h| h.action == CertAction::Issue(IssueReason::CaChanged)));
        // Half a CA is refused rather than silently replaced.
        fs::remove_file(mesh.pki.dir.join("ca.key")).expect("rm");
        assert!(matches!(
            run(&mesh, &out, &opts(NOW)),
            Err(ProvisionError::Pki(PkiError::BadFile { .. }))
        ));
    }

    #[test]
    fn encrypted_ca_key_needs_the_passphrase_only_to_sign() {
        let t = tempfile::tempdir().expect("tempdir");
        let inv = INV.replacen("dir: pki", "dir: pki\n  encrypt_ca_key: true", 1);
        let mesh = mesh_in(t.path(), &inv);
        let out = t.path().join("out");
        assert!(matches!(
            run(&mesh, &out, &opts(NOW)),
            Err(ProvisionError::Pki(PkiError::PassphraseMissing { .. }))
        ));
        let mut o = opts(NOW);
        o.passphrase = Some(b"correct horse");
        let first = run(&mesh, &out, &o).expect("with passphrase");
        assert!(matches!(first.ca, CaOutcome::Created { .. }));
        let key = fs::read_to_string(mesh.pki.dir.join("ca.key")).expect("key");
        assert!(key.contains("ENCRYPTED PRIVATE KEY"), "{key}");

        // Nothing to sign: no passphrase needed.
        let again = run(&mesh, &out, &opts(NOW)).expect("no-op without passphrase");
        assert!(matches!(
            again.ca,
            CaOutcome::Reused {
                encrypted: true,
                ..
            }
        ));
        assert!(!again.changed());

        // A new host must be signed.
        let more = mesh_in(
            t.path(),
            &format!("{inv}\n").replacen(
                "firewall:",
                "  web3:\n    overlay_ip: 10.10.0.13\n    groups: [web]\nfirewall:",
                1,
            ),
        );
        assert!(matches!(
            run(&more, &out, &opts(NOW)),
            Err(ProvisionError::Pki(PkiError::PassphraseMissing { .. }))
        ));
        let mut wrong = opts(NOW);
        wrong.passphrase = Some(b"wrong");
        assert!(matches!(
            run(&more, &out, &wrong),
            Err(ProvisionError::Pki(PkiError::WrongPassphrase { .. }))
        ));
        let added = run(&more, &out, &o).expect("sign web3");
        assert_eq!(action(&added, "web3"), &CertAction::Issue(IssueReason::New));
        assert!(matches!(action(&added, "web1"), CertAction::Keep { .. }));
    }

    #[test]
    fn a_plan_on_nothing_writes_nothing() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let out = t.path().join("out");
        let mut o = opts(NOW);
        o.dry_run = true;
        let plan = run(&mesh, &out, &o).expect("plan");
        assert_eq!(plan.ca, CaOutcome::WouldCreate);
        assert!(plan.files.iter().all(|(_, c)| *c == Change::Create));
        assert!(!out.exists());
        assert!(!mesh.pki.dir.exists());
        assert!(plan.changed());
    }

    #[test]
    fn modes_are_repaired_and_stale_files_removed() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let out = t.path().join("out");
        run(&mesh, &out, &opts(NOW)).expect("render");
        fs::set_permissions(out.join("web1/host.key"), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let o = run(&mesh, &out, &opts(NOW)).expect("repair");
        assert!(o
            .files
            .contains(&(PathBuf::from("web1/host.key"), Change::Mode)));
        assert_eq!(
            fs::metadata(out.join("web1/host.key"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let no_ci = mesh_in(t.path(), &INV.replacen("    cloud_init: {}\n", "", 1));
        let o = run(&no_ci, &out, &opts(NOW)).expect("no cloud-init");
        assert!(o
            .files
            .contains(&(PathBuf::from("web1/user-data"), Change::Remove)));
        assert!(!out.join("web1/user-data").exists());
        // A host taken out of the inventory keeps its folder, with a warning.
        let fewer = mesh_in(
            t.path(),
            &INV.replacen(
                "  web2:\n    overlay_ip: 10.10.0.12\n    groups: [web]\n",
                "",
                1,
            ),
        );
        let o = run(&fewer, &out, &opts(NOW)).expect("fewer");
        assert!(out.join("web2/config.yml").exists());
        assert!(
            o.warnings.iter().any(|w| w.contains("`web2`")),
            "{:?}",
            o.warnings
        );
    }

    #[test]
    fn a_host_leaving_the_mesh_loses_its_bundle_and_keeps_its_user_data() {
        let t = tempfile::tempdir().expect("tempdir");
        let text = crate::testutil::with_proxmox();
        let mesh = mesh_in(t.path(), &text);
        let out = t.path().join("out");
        let first = run(&mesh, &out, &opts(NOW)).expect("render");
        // Non-members: no certificate, only user-data (and Terraform).
        assert!(first.hosts.iter().all(|h| !h.name.starts_with("k3s")));
        assert!(out.join("k3s-cp/user-data").is_file());
        assert!(!out.join("k3s-cp/config.yml").exists());
        assert!(out.join("terraform/proxmox/main.tf").is_file());
        assert!(out.join("web2/host.key").is_file());
        // web2 leaves the mesh.
        let left = text.replacen(
            "  web2:\n    overlay_ip: 10.10.0.12\n    groups: [web]\n",
            "  web2:\n    mesh: false\n    proxmox: {vm_id: 230, role: worker}\n",
            1,
        );
        let left = mesh_in(
            t.path(),
            &left.replacen("to: {group: web}}", "to: {host: web1}}", 1),
        );
        let o = run(&left, &out, &opts(NOW)).expect("render");
        for f in [
            "config.yml",
            "host.key",
            "host.crt",
            "ca.crt",
            "nebula.service",
        ] {
            assert!(!out.join("web2").join(f).exists(), "web2/{f} kept");
            assert!(o
                .files
                .contains(&(PathBuf::from("web2").join(f), Change::Remove)));
        }
        assert!(out.join("web2/user-data").is_file());
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
        assert!(!run(&left, &out, &opts(NOW)).expect("again").changed());
    }

    #[test]
    fn issued_certificates_say_what_the_inventory_says() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let out = t.path().join("out");
        run(&mesh, &out, &opts(NOW)).expect("render");
        let read = |p: &str| fs::read(out.join(p)).expect("read");
        let (ca, _) = nebula_cert::cert::Certificate::from_pem(&read("lh/ca.crt")).expect("ca");
        assert!(ca.is_ca());
        assert_eq!(ca.name(), "test-ca");
        assert_eq!(ca.version(), nebula_cert::Version::V1);
        for h in &mesh.hosts {
            let (c, _) =
                nebula_cert::cert::Certificate::from_pem(&read(&format!("{}/host.crt", h.name)))
                    .expect("cert");
            assert_eq!(c.name(), h.name);
            assert_eq!(c.networks(), &[h.network]);
            assert_eq!(c.groups(), h.groups.as_slice());
            assert_eq!(c.version(), nebula_cert::Version::V1);
            assert!(c.check_signature(ca.public_key()));
            assert_eq!(c.issuer_hex(), ca.fingerprint_hex());
            assert_eq!(c.not_after(), NOW + 365 * DAY);
            let key = read(&format!("{}/host.key", h.name));
            let (raw, curve, _) = nebula_cert::keys::unmarshal_private_key(&key).expect("key");
            assert!(c.verify_private_key(curve, &raw).is_ok());
            assert_eq!(read(&format!("{}/ca.crt", h.name)), read("lh/ca.crt"));
        }
    }
}
