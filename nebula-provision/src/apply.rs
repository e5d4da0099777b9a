//! `apply`: pushes a host's rendered bundle over SSH with the system `ssh`/`scp`, installs it under
//! the host's root, enables/restarts/reloads nebula through systemctl and checks it came up.
//!
//! One probe (hashes and modes of the installed files, unit states) decides what changes, so a
//! re-run with nothing new transfers nothing and restarts nothing; `--dry-run` stops after the probe.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::ApplyError;
use crate::model::{BinarySource, DebSource, Host, Mesh, Ssh};
use crate::render::{names, OutFile, ETC_DIR, UNIT_DIR};
use crate::shell::{self, quote};

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Probe and report only.
    pub dry_run: bool,
    /// Install root on the hosts (overrides `ssh.remote_root`).
    pub root: Option<String>,
    /// systemctl command on the hosts (overrides `ssh.systemctl`).
    pub systemctl: Option<String>,
    /// The ssh program.
    pub ssh_program: String,
    /// The scp program.
    pub scp_program: String,
    /// Seconds to wait for `is-active` after starting.
    pub check_seconds: u32,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            dry_run: false,
            root: None,
            systemctl: None,
            ssh_program: "ssh".into(),
            scp_program: "scp".into(),
            check_seconds: 20,
        }
    }
}

/// What a pushed file is, which decides restart or reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pki,
    Config,
    Unit,
    EdgeRules,
    EdgeUnit,
    Binary,
    /// Our `.deb`, kept in the host's package cache and installed from there.
    Deb,
}

/// One file to install on the host.
#[derive(Debug, Clone)]
struct Install {
    /// Name in the staging directory.
    stage_name: String,
    /// Local source file.
    local: PathBuf,
    /// Desired contents (`None`: unknown yet, a certificate a dry run would issue).
    contents: Option<Vec<u8>>,
    /// Path on the host (including the root).
    remote: String,
    mode: u32,
    kind: Kind,
}

/// The result of applying to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    /// Host.
    pub host: String,
    /// Remote paths and what happens to them (`create`, `update`, `chmod`, `unchanged`).
    pub files: Vec<(String, &'static str)>,
    /// Remote commands run (or that would be).
    pub actions: Vec<String>,
    /// `is-active` result after the run (`None` in a dry run).
    pub state: Option<String>,
}

impl std::fmt::Display for HostReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dry = self.state.is_none();
        writeln!(f, "host {}:", self.host)?;
        for (p, c) in &self.files {
            if *c != "unchanged" {
                writeln!(f, "  {}{c} {p}", if dry { "would " } else { "" })?;
            }
        }
        let same = self.files.iter().filter(|(_, c)| *c == "unchanged").count();
        if same > 0 {
            writeln!(f, "  {same} file(s) already up to date")?;
        }
        for a in &self.actions {
            writeln!(f, "  {}run: {a}", if dry { "would " } else { "" })?;
        }
        if let Some(s) = &self.state {
            writeln!(f, "  nebula.service: {s}")?;
        }
        Ok(())
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn root_of(ssh: &Ssh, opts: &ApplyOptions) -> String {
    let r = opts
        .root
        .clone()
        .or_else(|| ssh.remote_root.clone())
        .unwrap_or_default();
    r.trim_end_matches('/').to_string()
}

fn installs(host: &Host, bundle_dir: &Path, files: &[OutFile], root: &str) -> Vec<Install> {
    let mut out = Vec::new();
    for f in files {
        let Some(name) = f.rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let (dir, kind) = match name.as_str() {
            names::CONFIG => (ETC_DIR, Kind::Config),
            names::CA_CRT | names::HOST_CRT | names::HOST_KEY => (ETC_DIR, Kind::Pki),
            names::SERVICE => (UNIT_DIR, Kind::Unit),
            names::EDGE_NFT => (ETC_DIR, Kind::EdgeRules),
            names::EDGE_SERVICE => (UNIT_DIR, Kind::EdgeUnit),
            _ => continue, // user-data is for cloud-init, not installed here
        };
        out.push(Install {
            local: bundle_dir.join(&name),
            remote: format!("{root}{dir}/{name}"),
            stage_name: name,
            contents: f.contents.clone(),
            mode: f.mode,
            kind,
        });
    }
    if let BinarySource::Local(p) = &host.binary.source {
        out.push(Install {
            stage_name: "nebula-binary".into(),
            local: p.clone(),
            contents: None,
            remote: format!("{root}{}", host.binary.path),
            mode: 0o755,
            kind: Kind::Binary,
        });
    }
    if let BinarySource::Deb(DebSource::Local(p)) = &host.binary.source {
        out.push(Install {
            stage_name: "nebula-rs.deb".into(),
            local: p.clone(),
            contents: None,
            remote: format!("{root}{}", shell::DEB_CACHE),
            mode: 0o644,
            kind: Kind::Deb,
        });
    }
    out
}

struct Remote<'a> {
    host: &'a Host,
    ssh: &'a Ssh,
    opts: &'a ApplyOptions,
}

/// `user@host` (or `host`) for ssh. Shared with `status`, which reaches hosts the same way.
pub(crate) fn ssh_destination(ssh: &Ssh) -> String {
    match &ssh.user {
        Some(u) => format!("{u}@{}", ssh.host),
        None => ssh.host.clone(),
    }
}

/// The options every ssh/scp call to the host gets (batch mode, port, identity, `-o` options).
pub(crate) fn ssh_common_args(ssh: &Ssh, cmd: &mut Command, port_flag: &str) {
    cmd.arg("-o").arg("BatchMode=yes");
    cmd.arg(port_flag).arg(ssh.port.to_string());
    if let Some(k) = &ssh.identity_file {
        cmd.arg("-i").arg(k);
    }
    for o in &ssh.options {
        cmd.arg("-o").arg(o);
    }
}

impl Remote<'_> {
    fn destination(&self) -> String {
        ssh_destination(self.ssh)
    }

    fn common_args(&self, cmd: &mut Command, port_flag: &str) {
        ssh_common_args(self.ssh, cmd, port_flag)
    }

    /// Runs `script` with `sh -s` on the host (through `sudo -n` when `become`).
    fn run(&self, step: &str, script: &str, privileged: bool) -> Result<String, ApplyError> {
        let mut cmd = Command::new(&self.opts.ssh_program);
        self.common_args(&mut cmd, "-p");
        cmd.arg(self.destination());
        cmd.arg(if privileged && self.ssh.become_root {
            "sudo -n sh -s"
        } else {
            "sh -s"
        });
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| ApplyError::Spawn {
            command: self.opts.ssh_program.clone(),
            source,
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A failed write shows up as the command's own failure below.
            let _ = stdin.write_all(script.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|source| ApplyError::Spawn {
                command: self.opts.ssh_program.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(ApplyError::Remote {
                host: self.host.name.clone(),
                step: step.into(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Copies files into the staging directory `dir`, each under its `stage_name`.
    fn scp(&self, files: &[&Install], dir: &str) -> Result<(), ApplyError> {
        let (same, renamed): (Vec<&Install>, Vec<&Install>) = files.iter().partition(|f| {
            f.local
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == f.stage_name)
        });
        if !same.is_empty() {
            self.scp_to(same.iter().map(|f| f.local.as_path()), &format!("{dir}/"))?;
        }
        for f in renamed {
            self.scp_to(
                std::iter::once(f.local.as_path()),
                &format!("{dir}/{}", f.stage_name),
            )?;
        }
        Ok(())
    }

    fn scp_to<'p>(
        &self,
        sources: impl Iterator<Item = &'p Path>,
        target: &str,
    ) -> Result<(), ApplyError> {
        let mut cmd = Command::new(&self.opts.scp_program);
        cmd.arg("-q");
        self.common_args(&mut cmd, "-P");
        for s in sources {
            cmd.arg(s);
        }
        let host = if self.ssh.host.contains(':') {
            format!("[{}]", self.ssh.host)
        } else {
            self.ssh.host.clone()
        };
        let dest = match &self.ssh.user {
            Some(u) => format!("{u}@{host}:{target}"),
            None => format!("{host}:{target}"),
        };
        cmd.arg(dest);
        let out = cmd.output().map_err(|source| ApplyError::Spawn {
            command: self.opts.scp_program.clone(),
            source,
        })?;
        if !out.status.success() {
            return Err(ApplyError::Remote {
                host: self.host.name.clone(),
                step: "copying the bundle (scp)".into(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

/// What the probe found on the host.
#[derive(Debug, Default)]
struct Probe {
    /// remote path -> (sha256, mode) when present.
    files: BTreeMap<String, Option<(String, u32)>>,
    enabled: String,
    active: String,
    edge_enabled: String,
    edge_active: String,
    config: Option<Vec<u8>>,
}

fn probe_script(installs: &[Install], systemctl: &str, config_path: &str) -> String {
    let mut s = String::from("set -u\n");
    for i in installs {
        let p = quote(&i.remote);
        s.push_str(&format!(
            "if [ -f {p} ]; then echo \"F $(sha256sum < {p} | cut -d' ' -f1) $(stat -c %a {p}) \"{p}; else echo \"F - - \"{p}; fi\n"
        ));
    }
    for (tag, unit) in [("", names::SERVICE), ("edge_", names::EDGE_SERVICE)] {
        s.push_str(&format!(
            "echo \"S {tag}enabled $({systemctl} is-enabled {unit} 2>/dev/null)\"\n\
             echo \"S {tag}active $({systemctl} is-active {unit} 2>/dev/null)\"\n"
        ));
    }
    let c = quote(config_path);
    s.push_str(&format!(
        "if [ -f {c} ]; then echo \"C $(base64 < {c} | tr -d '\\n')\"; fi\n"
    ));
    s
}

fn parse_probe(host: &str, out: &str) -> Result<Probe, ApplyError> {
    let bad = |line: &str| ApplyError::Protocol {
        host: host.to_string(),
        step: "the probe".into(),
        line: line.to_string(),
    };
    let mut p = Probe::default();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("F ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(h), Some(m), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(line));
            };
            let v = if h == "-" {
                None
            } else {
                let mode = u32::from_str_radix(m, 8).map_err(|_| bad(line))?;
                Some((h.to_string(), mode))
            };
            p.files.insert(path.to_string(), v);
        } else if let Some(rest) = line.strip_prefix("S ") {
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            let v = v.trim().to_string();
            match k {
                "enabled" => p.enabled = v,
                "active" => p.active = v,
                "edge_enabled" => p.edge_enabled = v,
                "edge_active" => p.edge_active = v,
                _ => return Err(bad(line)),
            }
        } else if let Some(rest) = line.strip_prefix("C ") {
            p.config = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok();
        }
    }
    Ok(p)
}

/// Whether a config change needs a restart: Nebula reloads pki, firewall and lighthouse settings
/// on SIGHUP, but not the tunnel device or the listen socket.
fn config_needs_restart(old: Option<&[u8]>, new: Option<&[u8]>) -> bool {
    let parse =
        |b: Option<&[u8]>| -> Option<serde_norway::Value> { serde_norway::from_slice(b?).ok() };
    let (Some(old), Some(new)) = (parse(old), parse(new)) else {
        return true;
    };
    ["tun", "listen", "cipher"]
        .iter()
        .any(|k| old.get(k) != new.get(k))
}

fn active(state: &str) -> bool {
    state == "active" || state == "reloading"
}

fn enabled(state: &str) -> bool {
    matches!(state, "enabled" | "enabled-runtime" | "static" | "alias")
}

/// Applies `host`'s bundle: `bundle_dir` is `<out>/<host>`, `files` the rendered bundle files
/// (from a render, or a dry-run plan).
pub fn apply_host(
    mesh: &Mesh,
    host: &Host,
    bundle_dir: &Path,
    files: &[OutFile],
    opts: &ApplyOptions,
) -> Result<HostReport, ApplyError> {
    let ssh = host.ssh.as_ref().ok_or_else(|| ApplyError::NoSsh {
        host: host.name.clone(),
    })?;
    let is_edge = mesh.edge.as_ref().is_some_and(|e| e.host == host.name);
    let root = root_of(ssh, opts);
    let systemctl = opts
        .systemctl
        .clone()
        .or_else(|| ssh.systemctl.clone())
        .unwrap_or_else(|| "systemctl".into());
    let remote = Remote { host, ssh, opts };
    let mut wanted = installs(host, bundle_dir, files, &root);

    // Desired hashes: rendered contents, or the local file (binary, or a bundle file whose
    // contents were not passed in).
    let mut desired: BTreeMap<String, Option<String>> = BTreeMap::new();
    for i in &mut wanted {
        let h = match &i.contents {
            Some(c) => Some(sha256_hex(c)),
            None if matches!(i.kind, Kind::Binary | Kind::Deb) || !opts.dry_run => {
                let data = std::fs::read(&i.local).map_err(|source| ApplyError::Bundle {
                    path: i.local.clone(),
                    source,
                })?;
                Some(sha256_hex(&data))
            }
            None => None,
        };
        desired.insert(i.remote.clone(), h);
    }

    let config_remote = format!("{root}{ETC_DIR}/{}", names::CONFIG);
    let probe_out = remote.run(
        "the probe",
        &probe_script(&wanted, &systemctl, &config_remote),
        true,
    )?;
    let probe = parse_probe(&host.name, &probe_out)?;

    let mut report = HostReport {
        host: host.name.clone(),
        files: Vec::new(),
        actions: Vec::new(),
        state: None,
    };
    let mut push: Vec<&Install> = Vec::new();
    let mut chmod: Vec<&Install> = Vec::new();
    for i in &wanted {
        let have = probe.files.get(&i.remote).cloned().flatten();
        let want = desired.get(&i.remote).cloned().flatten();
        let change = match (&have, &want) {
            (None, _) => "create",
            (Some(_), None) => "update",
            (Some((h, _)), Some(w)) if h != w => "update",
            (Some((_, m)), Some(_)) if *m != i.mode => "chmod",
            _ => "unchanged",
        };
        match change {
            "create" | "update" => push.push(i),
            "chmod" => chmod.push(i),
            _ => {}
        }
        report.files.push((i.remote.clone(), change));
    }
    let changed = |k: Kind| push.iter().any(|i| i.kind == k);

    // What to tell systemd.
    let mut actions = Vec::new();
    if let BinarySource::Deb(d) = &host.binary.source {
        // Installs only a version the host does not have; a restart follows below if it did.
        // The bundle keeps /etc/nebula 0700 whatever the package left (older nebula-rs made it 0750).
        let etc = quote(&format!("{root}{ETC_DIR}"));
        actions.push((
            "install the nebula .deb unless that version is installed".into(),
            format!(
                "{}if [ \"${{{v}:-0}}\" = 1 ] && [ -d {etc} ]; then chmod 0700 {etc}; fi",
                shell::deb_install_body(d, &root),
                v = shell::DEB_CHANGED_VAR
            ),
        ));
    } else if let Some(script) = shell::binary_install_script(&host.binary, &root) {
        let bin = format!("{root}{}", host.binary.path);
        actions.push((
            format!("install {} if missing", host.binary.path),
            format!("if [ ! -x {} ]; then (\n{script}) ; fi", quote(&bin)),
        ));
    }
    let units_changed = changed(Kind::Unit) || (is_edge && changed(Kind::EdgeUnit));
    if units_changed {
        actions.push(sysd(&systemctl, "daemon-reload", None));
    }
    let cfg_new = wanted
        .iter()
        .find(|i| i.kind == Kind::Config)
        .and_then(|i| i.contents.clone());
    if !enabled(&probe.enabled) || !active(&probe.active) {
        actions.push(sysd(&systemctl, "enable --now", Some(names::SERVICE)));
    } else if changed(Kind::Unit)
        || changed(Kind::Binary)
        || (changed(Kind::Config)
            && config_needs_restart(probe.config.as_deref(), cfg_new.as_deref()))
    {
        actions.push(sysd(&systemctl, "restart", Some(names::SERVICE)));
    } else if changed(Kind::Pki) || changed(Kind::Config) {
        actions.push(sysd(&systemctl, "reload", Some(names::SERVICE)));
        deb_restart(&host.binary.source, &systemctl, &mut actions);
    } else {
        deb_restart(&host.binary.source, &systemctl, &mut actions);
    }
    if is_edge {
        if !enabled(&probe.edge_enabled) || !active(&probe.edge_active) {
            actions.push(sysd(&systemctl, "enable --now", Some(names::EDGE_SERVICE)));
        } else if changed(Kind::EdgeRules) || changed(Kind::EdgeUnit) {
            actions.push(sysd(&systemctl, "restart", Some(names::EDGE_SERVICE)));
        }
    }
    report.actions = actions.iter().map(|(d, _)| d.clone()).collect();

    if opts.dry_run {
        return Ok(report);
    }

    // Stage, install, act.
    let mut script = String::from("set -eu\numask 077\n");
    if !push.is_empty() {
        let stage = remote.run("making a staging directory", "mktemp -d\n", false)?;
        let stage = stage.trim().to_string();
        if !stage.starts_with('/') || stage.contains(char::is_whitespace) {
            return Err(ApplyError::Protocol {
                host: host.name.clone(),
                step: "mktemp".into(),
                line: stage,
            });
        }
        remote.scp(&push, &stage)?;
        let etc = quote(&format!("{root}{ETC_DIR}"));
        script.push_str(&format!("mkdir -p {etc}\nchmod 0700 {etc}\n"));
        for i in &push {
            script.push_str(&format!(
                "install -D -m {:04o} {} {}\n",
                i.mode,
                quote(&format!("{stage}/{}", i.stage_name)),
                quote(&i.remote)
            ));
        }
        script.push_str(&format!("rm -rf {}\n", quote(&stage)));
    }
    for i in &chmod {
        script.push_str(&format!("chmod {:04o} {}\n", i.mode, quote(&i.remote)));
    }
    for (_, cmd) in &actions {
        script.push_str(cmd);
        script.push('\n');
    }
    remote.run("installing the bundle", &script, true)?;

    // Did it come up?
    let check = format!(
        "i=0\nwhile :; do\n  s=$({systemctl} is-active {unit} 2>/dev/null || true)\n  case \"$s\" in active) break;; esac\n  i=$((i+1))\n  [ $i -ge {n} ] && break\n  sleep 1\ndone\necho \"state $s\"\n",
        unit = names::SERVICE,
        n = opts.check_seconds.max(1),
    );
    let out = remote.run("checking nebula.service", &check, true)?;
    let state = out
        .lines()
        .find_map(|l| l.strip_prefix("state "))
        .unwrap_or("")
        .trim()
        .to_string();
    if state != "active" {
        return Err(ApplyError::NotActive {
            host: host.name.clone(),
            state,
        });
    }
    if root.is_empty() {
        // On a real root the tunnel device must exist too.
        let dev = quote(&mesh.tun_dev);
        remote
            .run(
                "checking the tun device",
                &format!("ip -o link show dev {dev} >/dev/null"),
                false,
            )
            .map_err(|_| ApplyError::NotActive {
                host: host.name.clone(),
                state: format!("active, but no {} device", mesh.tun_dev),
            })?;
    }
    report.state = Some(state);
    Ok(report)
}

/// With a `.deb` source, a running nebula is restarted when the install step above installed a
/// new version (only known on the host, so the decision is made there).
fn deb_restart(source: &BinarySource, systemctl: &str, actions: &mut Vec<(String, String)>) {
    if matches!(source, BinarySource::Deb(_)) {
        let unit = names::SERVICE;
        actions.push((
            format!("{systemctl} restart {unit} if the .deb was installed"),
            format!(
                "if [ \"${{{v}:-0}}\" = 1 ] && {systemctl} is-active {unit} >/dev/null 2>&1; then {systemctl} restart {unit}; fi",
                v = shell::DEB_CHANGED_VAR
            ),
        ));
    }
}

fn sysd(systemctl: &str, verb: &str, unit: Option<&str>) -> (String, String) {
    let cmd = match unit {
        Some(u) => format!("{systemctl} {verb} {u}"),
        None => format!("{systemctl} {verb}"),
    };
    (cmd.clone(), cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_is_parsed() {
        let out = "F abc 600 /r/etc/nebula/host.key\nF - - /r/etc/nebula/ca.crt\nS enabled enabled\nS active active\nS edge_enabled \nS edge_active inactive\nC aGVsbG8=\n";
        let p = parse_probe("h", out).expect("parse");
        assert_eq!(
            p.files.get("/r/etc/nebula/host.key"),
            Some(&Some(("abc".to_string(), 0o600)))
        );
        assert_eq!(p.files.get("/r/etc/nebula/ca.crt"), Some(&None));
        assert_eq!(p.enabled, "enabled");
        assert_eq!(p.edge_enabled, "");
        assert_eq!(p.edge_active, "inactive");
        assert_eq!(p.config.as_deref(), Some(&b"hello"[..]));
        assert!(parse_probe("h", "F abc xyz /p\n").is_err());
    }

    #[test]
    fn restart_only_for_tun_listen_or_cipher_changes() {
        let a = b"tun:\n  dev: nebula1\nlisten:\n  port: 4242\nfirewall:\n  inbound: []\n";
        let b = b"tun:\n  dev: nebula1\nlisten:\n  port: 4242\nfirewall:\n  inbound: [1]\n";
        let c = b"tun:\n  dev: nebula2\nlisten:\n  port: 4242\n";
        assert!(!config_needs_restart(Some(a), Some(b)));
        assert!(config_needs_restart(Some(a), Some(c)));
        assert!(config_needs_restart(None, Some(a)));
    }
}
