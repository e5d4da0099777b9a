//! Inventory validation and resolution: checks every field (collecting all problems, each naming its
//! host and field) and turns a valid [`Inventory`] into a [`Mesh`] with defaults and firewall rules.
//!
//! Names that end up in file paths, unit files, shell commands or HCL are restricted to safe
//! characters here, so the renderers never have to guess whether a value could break out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nebula_cert::encrypted::Argon2Params;
use nebula_cert::{Curve, Version};
use serde_norway::Value;

use crate::error::{InventoryError, Problem};
use crate::inventory::{self, AllowSpec, BinarySpec, CloudInitSpec, HostSpec, Inventory, SshSpec};
use crate::model::{
    Binary, BinarySource, CloudInit, DebSource, Edge, Forward, FwRule, Host, Lightsail, Mesh,
    PkiSettings, Ports, Proto, Remote, Ssh,
};

mod proxmox;

pub use proxmox::tf_ident;

/// Host names that would collide with the non-host folders of the output directory.
pub const RESERVED_NAMES: &[&str] = &["ansible", "terraform"];
/// Default binary path on hosts.
pub const DEFAULT_BINARY: &str = "/usr/local/bin/nebula";
/// Where our Debian package (`nebula_binary.deb`) puts the binary.
pub const DEB_BINARY: &str = "/usr/bin/nebula";

/// Loads, parses and validates an inventory file.
pub fn load_mesh(path: &Path) -> Result<Mesh, InventoryError> {
    let inv = inventory::load(path)?;
    resolve(&inv, path)
}

/// Validates a parsed inventory; `path` locates relative paths (PKI dir, local binaries, keys).
pub fn resolve(inv: &Inventory, path: &Path) -> Result<Mesh, InventoryError> {
    let mut v = Validator {
        problems: Vec::new(),
        base: inventory::base_dir(path),
        outside: inv
            .hosts
            .iter()
            .filter(|(_, h)| h.mesh == Some(false))
            .map(|(n, _)| n.clone())
            .collect(),
    };
    let mesh = v.mesh(inv, path);
    if v.problems.is_empty() {
        if let Some(mesh) = mesh {
            return Ok(mesh);
        }
    }
    Err(InventoryError::Invalid {
        problems: v.problems,
    })
}

/// A selector from the firewall or edge sections.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Any,
    Host(String),
    Groups(Vec<String>),
    Cidr(IpNet),
}

impl Selector {
    fn remote(&self) -> Remote {
        match self {
            Selector::Any => Remote::Any,
            Selector::Host(h) => Remote::Host(h.clone()),
            Selector::Groups(g) => Remote::Groups(g.clone()),
            Selector::Cidr(c) => Remote::Cidr(*c),
        }
    }

    fn matches(&self, h: &Host) -> bool {
        match self {
            Selector::Any => true,
            Selector::Host(n) => &h.name == n,
            Selector::Groups(gs) => gs.iter().all(|g| h.groups.contains(g)),
            Selector::Cidr(c) => c.contains(&h.overlay_ip),
        }
    }
}

struct Validator {
    problems: Vec<Problem>,
    base: PathBuf,
    /// Hosts with `mesh: false`: named in errors about selectors that cannot reach them.
    outside: BTreeSet<String>,
}

/// `[A-Za-z0-9][A-Za-z0-9._-]*`, at most `max` bytes.
pub fn is_safe_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// An absolute path of safe characters (no spaces, quotes, `%`, `$`, control characters, `..`).
pub fn is_safe_abs_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() <= 4096
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b'@')
        })
        && !s.split('/').any(|c| c == "..")
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A printable single-line string without characters that matter to shells, YAML or HCL quoting.
fn is_plain_text(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| !c.is_control())
}

fn parse_proto(s: &str, allow_any_icmp: bool) -> Option<Proto> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        "icmp" if allow_any_icmp => Some(Proto::Icmp),
        "any" if allow_any_icmp => Some(Proto::Any),
        _ => None,
    }
}

fn parse_port_word(v: &Value) -> Result<Ports, String> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(0) => Ok(Ports::Any),
            Some(p) if p <= 65535 => Ok(Ports::Range(p as u16, p as u16)),
            _ => Err(format!("{n} is not a port (1-65535, or `any`)")),
        },
        Value::String(s) => {
            let s = s.trim();
            if s == "any" || s == "0" {
                return Ok(Ports::Any);
            }
            let (lo, hi) = match s.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (s, s),
            };
            match (lo.parse::<u16>(), hi.parse::<u16>()) {
                (Ok(lo), Ok(hi)) if lo >= 1 && lo <= hi => Ok(Ports::Range(lo, hi)),
                _ => Err(format!(
                    "`{s}` is not a port, a range `low-high` (1-65535) or `any`"
                )),
            }
        }
        _ => Err("expected a port number, `low-high` or `any`".into()),
    }
}

fn parse_ports(v: Option<&Value>) -> Result<Vec<Ports>, String> {
    match v {
        None | Some(Value::Null) => Ok(vec![Ports::Any]),
        Some(Value::Sequence(items)) => {
            if items.is_empty() {
                return Err("empty port list".into());
            }
            items.iter().map(parse_port_word).collect()
        }
        Some(other) => Ok(vec![parse_port_word(other)?]),
    }
}

fn parse_selector(v: &Value) -> Result<Selector, String> {
    const FORMS: &str =
        "expected `any`, {host: NAME}, {group: NAME}, {groups: [A, B]} or {cidr: CIDR}";
    match v {
        Value::String(s) if s == "any" => Ok(Selector::Any),
        Value::Mapping(m) => {
            if m.len() != 1 {
                return Err(format!("give exactly one key; {FORMS}"));
            }
            let Some((k, val)) = m.iter().next() else {
                return Err(FORMS.into());
            };
            let key = k.as_str().unwrap_or("");
            match key {
                "host" => match val.as_str() {
                    Some("any") => Ok(Selector::Any),
                    Some(s) => Ok(Selector::Host(s.to_string())),
                    None => Err("`host` must be a host name".into()),
                },
                "group" => match val.as_str() {
                    Some("any") => Ok(Selector::Any),
                    Some(s) => Ok(Selector::Groups(vec![s.to_string()])),
                    None => Err("`group` must be a group name".into()),
                },
                "groups" => {
                    let Some(seq) = val.as_sequence() else {
                        return Err("`groups` must be a list of group names".into());
                    };
                    let mut gs = Vec::new();
                    for g in seq {
                        match g.as_str() {
                            Some(s) => gs.push(s.to_string()),
                            None => return Err("`groups` must be a list of group names".into()),
                        }
                    }
                    if gs.is_empty() {
                        return Err("`groups` is empty".into());
                    }
                    gs.sort();
                    gs.dedup();
                    Ok(Selector::Groups(gs))
                }
                "cidr" => match val.as_str().map(str::parse::<IpNet>) {
                    Some(Ok(c)) => Ok(Selector::Cidr(c.trunc())),
                    _ => Err("`cidr` must be a network like 10.100.0.0/24".into()),
                },
                other => Err(format!("unknown key `{other}`; {FORMS}")),
            }
        }
        _ => Err(FORMS.into()),
    }
}

/// Merges a host's binary spec over the defaults', field by field.
fn merge_binary(d: Option<&BinarySpec>, h: Option<&BinarySpec>) -> BinarySpec {
    let d = d.cloned().unwrap_or_default();
    let Some(h) = h else { return d };
    // A host that names a source replaces the default source entirely.
    let host_has_source = h.apt.is_some()
        || h.url.is_some()
        || h.local.is_some()
        || h.sha256.is_some()
        || h.deb.is_some();
    BinarySpec {
        path: h.path.clone().or(d.path),
        notify: h.notify.or(d.notify),
        watchdog: h.watchdog.or(d.watchdog),
        apt: if host_has_source {
            h.apt.clone()
        } else {
            d.apt
        },
        url: if host_has_source {
            h.url.clone()
        } else {
            d.url
        },
        sha256: if host_has_source {
            h.sha256.clone()
        } else {
            d.sha256
        },
        local: if host_has_source {
            h.local.clone()
        } else {
            d.local
        },
        deb: if host_has_source {
            h.deb.clone()
        } else {
            d.deb
        },
    }
}

fn merge_ssh(d: Option<&SshSpec>, h: Option<&SshSpec>) -> Option<SshSpec> {
    let h = h?;
    let d = d.cloned().unwrap_or_default();
    Some(SshSpec {
        host: h.host.clone().or(d.host),
        port: h.port.or(d.port),
        user: h.user.clone().or(d.user),
        identity_file: h.identity_file.clone().or(d.identity_file),
        options: h.options.clone().or(d.options),
        become_root: h.become_root.or(d.become_root),
        remote_root: h.remote_root.clone().or(d.remote_root),
        systemctl: h.systemctl.clone().or(d.systemctl),
    })
}

impl Validator {
    fn host_err(&mut self, host: &str, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem::host(host, field, reason));
    }

    /// A host's name becomes a certificate name and a folder of the output: checks it is one.
    fn host_name(&mut self, name: &str) {
        if !is_safe_name(name, 63) {
            self.host_err(
                name,
                "(name)",
                "host names must be 1-63 of [A-Za-z0-9._-], starting with a letter or digit",
            );
        } else if RESERVED_NAMES.contains(&name) {
            self.host_err(
                name,
                "(name)",
                "this name is used for a folder of the output directory; pick another",
            );
        }
    }

    fn field_err(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem::field(field, reason));
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn mesh(&mut self, inv: &Inventory, path: &Path) -> Option<Mesh> {
        let m = &inv.mesh;
        if !is_plain_text(&m.name) || m.name.len() > 253 {
            self.field_err("mesh.name", "must be 1-253 printable characters");
        }
        let cert_version = match m.cert_version.unwrap_or(1) {
            1 => Version::V1,
            2 => Version::V2,
            other => {
                self.field_err(
                    "mesh.cert_version",
                    format!("{other} is not a certificate version (1 or 2)"),
                );
                Version::V1
            }
        };
        let network = match m.network.parse::<IpNet>() {
            Ok(n) => {
                if n != n.trunc() {
                    self.field_err(
                        "mesh.network",
                        format!(
                            "`{}` has host bits set; did you mean {}?",
                            m.network,
                            n.trunc()
                        ),
                    );
                }
                if cert_version == Version::V1 && !matches!(n, IpNet::V4(_)) {
                    self.field_err(
                        "mesh.network",
                        "v1 certificates carry IPv4 only; use an IPv4 network or cert_version: 2",
                    );
                }
                Some(n.trunc())
            }
            Err(_) => {
                self.field_err(
                    "mesh.network",
                    format!("`{}` is not a network like 10.100.0.0/24", m.network),
                );
                None
            }
        };
        let curve = match m.curve.as_deref().unwrap_or("25519") {
            "25519" | "curve25519" | "CURVE25519" | "X25519" | "x25519" => Curve::Curve25519,
            "P256" | "p256" => Curve::P256,
            other => {
                self.field_err(
                    "mesh.curve",
                    format!("`{other}` is not a curve (25519 or P256)"),
                );
                Curve::Curve25519
            }
        };
        let port = m.port.unwrap_or(4242);
        if port == 0 {
            self.field_err("mesh.port", "must be a fixed port (1-65535)");
        }
        let mtu = m.mtu.unwrap_or(1300);
        if !(576..=9001).contains(&mtu) {
            self.field_err("mesh.mtu", format!("{mtu} is outside 576-9001"));
        }
        let tun_dev = m.tun_dev.clone().unwrap_or_else(|| "nebula1".into());
        if !is_safe_name(&tun_dev, 15) {
            self.field_err(
                "mesh.tun_dev",
                "must be an interface name: 1-15 of [A-Za-z0-9._-]",
            );
        }
        if let Some(c) = &m.cipher {
            if c != "aes" && c != "chachapoly" {
                self.field_err("mesh.cipher", format!("`{c}` is not `aes` or `chachapoly`"));
            }
        }
        let log_level = m.log_level.clone().unwrap_or_else(|| "info".into());
        if !["panic", "fatal", "error", "warning", "info", "debug"].contains(&log_level.as_str()) {
            self.field_err(
                "mesh.log_level",
                format!("`{log_level}` is not one of panic, fatal, error, warning, info, debug"),
            );
        }
        let lighthouse_interval = m.lighthouse_interval.unwrap_or(60);
        if lighthouse_interval == 0 {
            self.field_err("mesh.lighthouse_interval", "must be at least 1 second");
        }

        let pki = self.pki(inv);
        let hosts = self.hosts(inv, network, cert_version, port);
        if !hosts.iter().any(|h| h.lighthouse) && !hosts.is_empty() {
            self.field_err(
                "hosts",
                "no host has `lighthouse: true`; the mesh needs one",
            );
        }
        if inv.hosts.is_empty() {
            self.field_err("hosts", "no hosts");
        }
        let mut hosts = hosts;
        self.firewall(inv, &mut hosts);
        let edge = inv
            .edge_forwarding
            .as_ref()
            .and_then(|e| self.edge(e, &hosts));
        let non_members = self.non_members(inv);
        let proxmox = self.proxmox_settings(inv, &hosts, &non_members, network);

        Some(Mesh {
            inventory_path: path.to_path_buf(),
            name: m.name.clone(),
            network: network?,
            cert_version,
            curve,
            mtu,
            tun_dev,
            cipher: m.cipher.clone(),
            lighthouse_interval,
            log_level,
            pki: pki?,
            hosts,
            edge,
            non_members,
            proxmox,
        })
    }

    fn pki(&mut self, inv: &Inventory) -> Option<PkiSettings> {
        let p = &inv.pki;
        if p.dir.trim().is_empty() {
            self.field_err("pki.dir", "must name a directory");
        }
        let ca_days = p.ca_days.unwrap_or(730);
        let cert_days = p.cert_days.unwrap_or(365);
        let renew_before_days = p.renew_before_days.unwrap_or(30);
        if ca_days == 0 {
            self.field_err("pki.ca_days", "must be at least 1");
        }
        if cert_days == 0 {
            self.field_err("pki.cert_days", "must be at least 1");
        }
        if renew_before_days >= cert_days {
            self.field_err(
                "pki.renew_before_days",
                format!(
                    "{renew_before_days} is not less than pki.cert_days ({cert_days}): every run would re-issue"
                ),
            );
        }
        let passphrase_env = p
            .passphrase_env
            .clone()
            .unwrap_or_else(|| "NEBULA_CA_PASSPHRASE".into());
        if !is_safe_name(&passphrase_env, 128) {
            self.field_err("pki.passphrase_env", "must be an environment variable name");
        }
        let argon2 = match p.argon2 {
            Some(a) => {
                let params = Argon2Params {
                    memory_kib: a.memory_kib,
                    iterations: a.iterations,
                    parallelism: a.parallelism,
                };
                if let Err(e) = params.validate() {
                    self.field_err("pki.argon2", e.to_string());
                }
                params
            }
            None => Argon2Params::default(),
        };
        Some(PkiSettings {
            dir: self.resolve_path(&p.dir),
            ca_days,
            cert_days,
            renew_before_days,
            encrypt_ca_key: p.encrypt_ca_key,
            passphrase_env,
            argon2,
        })
    }

    fn hosts(
        &mut self,
        inv: &Inventory,
        network: Option<IpNet>,
        version: Version,
        mesh_port: u16,
    ) -> Vec<Host> {
        let mut out = Vec::new();
        let mut by_ip: BTreeMap<IpAddr, String> = BTreeMap::new();
        for (name, spec) in inv.hosts.iter().filter(|(_, s)| s.mesh != Some(false)) {
            if let Some(h) = self.host(inv, name, spec, network, version, mesh_port) {
                if let Some(other) = by_ip.insert(h.overlay_ip, name.clone()) {
                    self.host_err(
                        name,
                        "overlay_ip",
                        format!("{} is also host `{other}`'s address", h.overlay_ip),
                    );
                }
                out.push(h);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn host(
        &mut self,
        inv: &Inventory,
        name: &str,
        spec: &HostSpec,
        network: Option<IpNet>,
        version: Version,
        mesh_port: u16,
    ) -> Option<Host> {
        let before = self.problems.len();
        self.host_name(name);
        let overlay_ip = match spec.overlay_ip.as_deref().map(str::parse::<IpAddr>) {
            Some(Ok(ip)) => Some(ip),
            Some(Err(_)) => {
                self.host_err(
                    name,
                    "overlay_ip",
                    format!(
                        "`{}` is not an IP address",
                        spec.overlay_ip.as_deref().unwrap_or_default()
                    ),
                );
                None
            }
            None => {
                self.host_err(
                    name,
                    "overlay_ip",
                    "a mesh member needs its overlay address (or set `mesh: false`)",
                );
                None
            }
        };
        let mut host_net = None;
        if let (Some(ip), Some(net)) = (overlay_ip, network) {
            if !net.contains(&ip) {
                self.host_err(
                    name,
                    "overlay_ip",
                    format!("{ip} is outside the mesh network {net}"),
                );
            } else if ip == net.network() || (ip == net.broadcast() && net.prefix_len() < 31) {
                self.host_err(
                    name,
                    "overlay_ip",
                    format!("{ip} is the network or broadcast address of {net}"),
                );
            } else if version == Version::V1 && !ip.is_ipv4() {
                self.host_err(name, "overlay_ip", "v1 certificates carry IPv4 only");
            } else {
                host_net = IpNet::new(ip, net.prefix_len()).ok();
            }
        }
        let mut groups = Vec::new();
        for (i, g) in spec.groups.iter().enumerate() {
            if !is_safe_name(g, 64) {
                self.host_err(
                    name,
                    format!("groups[{i}]"),
                    format!("`{g}` is not a group name: 1-64 of [A-Za-z0-9._-]"),
                );
            }
            groups.push(g.clone());
        }
        groups.sort();
        groups.dedup();

        let mut endpoints = Vec::new();
        for (i, e) in spec.public_endpoints.iter().enumerate() {
            let ok = match e.parse::<SocketAddr>() {
                Ok(sa) => sa.port() != 0,
                Err(_) => match e.rsplit_once(':') {
                    Some((h, p)) => is_dns_name(h) && p.parse::<u16>().is_ok_and(|p| p != 0),
                    None => false,
                },
            };
            if !ok {
                self.host_err(
                    name,
                    format!("public_endpoints[{i}]"),
                    format!("`{e}` is not `address:port` or `name:port` (IPv6: `[addr]:port`)"),
                );
            }
            endpoints.push(e.clone());
        }
        if spec.lighthouse && endpoints.is_empty() {
            self.host_err(
                name,
                "public_endpoints",
                "a lighthouse needs its static public address, e.g. [\"203.0.113.10:4242\"]",
            );
        }
        let default_port = if spec.lighthouse || !endpoints.is_empty() {
            mesh_port
        } else {
            0
        };
        let listen_port = spec.listen_port.unwrap_or(default_port);
        if spec.lighthouse && listen_port == 0 {
            self.host_err(
                name,
                "listen_port",
                "a lighthouse must listen on a fixed port",
            );
        }

        let bspec = merge_binary(
            inv.defaults.nebula_binary.as_ref(),
            spec.nebula_binary.as_ref(),
        );
        let binary = self.binary(
            name,
            &bspec,
            spec.cloud_init.is_some() || spec.proxmox.is_some(),
            // Only user data handed to Lightsail is size-limited: a Lightsail host without
            // `cloud_init:` gets its package over SSH (apply, Ansible).
            spec.lightsail.is_some() && spec.cloud_init.is_some(),
        );
        let ssh = merge_ssh(inv.defaults.ssh.as_ref(), spec.ssh.as_ref())
            .and_then(|s| self.ssh(name, &s));
        let proxmox = spec
            .proxmox
            .as_ref()
            .and_then(|p| self.proxmox_vm(inv, name, p));
        // A Proxmox VM's user-data is its cloud-init snippet: it always has one.
        let cloud_init = match (&spec.cloud_init, &spec.proxmox) {
            (Some(c), _) => Some(self.cloud_init(name, c.clone())),
            (None, Some(_)) => Some(self.cloud_init(name, CloudInitSpec::default())),
            (None, None) => None,
        };
        let cloud_init = match (cloud_init, &proxmox) {
            (Some(ci), Some(vm)) => Some(proxmox::with_hostname(ci, vm)),
            (ci, _) => ci,
        };
        let lightsail = spec.lightsail.as_ref().map(|l| {
            let instance_name = l.instance_name.clone().unwrap_or_else(|| name.to_string());
            let static_ip_name = l
                .static_ip_name
                .clone()
                .unwrap_or_else(|| format!("{name}-static-ip"));
            let az = l.availability_zone.clone();
            let region = l.region.clone().unwrap_or_else(|| {
                az.trim_end_matches(|c: char| c.is_ascii_lowercase())
                    .to_string()
            });
            let region = if region.is_empty() {
                az.clone()
            } else {
                region
            };
            let blueprint_id = l
                .blueprint_id
                .clone()
                .unwrap_or_else(|| "ubuntu_22_04".into());
            let bundle_id = l.bundle_id.clone().unwrap_or_else(|| "nano_3_0".into());
            for (field, v) in [
                ("lightsail.instance_name", &instance_name),
                ("lightsail.static_ip_name", &static_ip_name),
                ("lightsail.availability_zone", &az),
                ("lightsail.region", &region),
                ("lightsail.blueprint_id", &blueprint_id),
                ("lightsail.bundle_id", &bundle_id),
            ] {
                if !is_safe_name(v, 255) {
                    self.host_err(name, field, format!("`{v}` must be of [A-Za-z0-9._-]"));
                }
            }
            let mut cidrs = Vec::new();
            for (i, c) in l.ssh_admin_cidrs.iter().enumerate() {
                match c.parse::<IpNet>() {
                    Ok(n) if n.prefix_len() == 0 => self.host_err(
                        name,
                        format!("lightsail.ssh_admin_cidrs[{i}]"),
                        "SSH must be restricted to the admin's address, not the whole internet",
                    ),
                    Ok(n) => cidrs.push(n.trunc()),
                    Err(_) => self.host_err(
                        name,
                        format!("lightsail.ssh_admin_cidrs[{i}]"),
                        format!("`{c}` is not a network like 198.51.100.7/32"),
                    ),
                }
            }
            if l.ssh_admin_cidrs.is_empty() {
                self.host_err(
                    name,
                    "lightsail.ssh_admin_cidrs",
                    "give the admin address(es) SSH is allowed from, e.g. [198.51.100.7/32]",
                );
            }
            Lightsail {
                instance_name,
                region,
                availability_zone: az,
                blueprint_id,
                bundle_id,
                static_ip_name,
                ssh_admin_cidrs: cidrs,
            }
        });

        if self.problems.len() != before {
            return None;
        }
        Some(Host {
            name: name.to_string(),
            overlay_ip: overlay_ip?,
            network: host_net?,
            groups,
            lighthouse: spec.lighthouse,
            public_endpoints: endpoints,
            listen_port,
            binary: binary?,
            ssh,
            cloud_init,
            lightsail,
            proxmox,
            inbound: Vec::new(),
            outbound: Vec::new(),
        })
    }

    fn cloud_init(&mut self, name: &str, c: CloudInitSpec) -> CloudInit {
        if let Some(hn) = &c.hostname {
            if !is_dns_name(hn) {
                self.host_err(
                    name,
                    "cloud_init.hostname",
                    format!("`{hn}` is not a hostname"),
                );
            }
        }
        for (i, k) in c.ssh_authorized_keys.iter().enumerate() {
            if !is_plain_text(k) || !k.starts_with("ssh-") && !k.starts_with("ecdsa-") {
                self.host_err(
                    name,
                    format!("cloud_init.ssh_authorized_keys[{i}]"),
                    "not a one-line OpenSSH public key",
                );
            }
        }
        CloudInit {
            hostname: c.hostname,
            ssh_authorized_keys: c.ssh_authorized_keys,
        }
    }

    fn binary(
        &mut self,
        host: &str,
        b: &BinarySpec,
        cloud_init: bool,
        lightsail: bool,
    ) -> Option<Binary> {
        let default_path = if b.deb.is_some() {
            DEB_BINARY
        } else {
            DEFAULT_BINARY
        };
        let path = b.path.clone().unwrap_or_else(|| default_path.into());
        let mut ok = true;
        if !is_safe_abs_path(&path) {
            self.host_err(
                host,
                "nebula_binary.path",
                format!("`{path}` must be an absolute path of [A-Za-z0-9/._+@-]"),
            );
            ok = false;
        }
        let n = [
            b.apt.is_some(),
            b.url.is_some(),
            b.local.is_some(),
            b.deb.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if n > 1 {
            self.host_err(
                host,
                "nebula_binary",
                "give at most one of `apt`, `url`, `local`, `deb`",
            );
            return None;
        }
        let source = if let Some(deb) = &b.deb {
            if path != DEB_BINARY {
                self.host_err(
                    host,
                    "nebula_binary.path",
                    format!("the `deb` package installs {DEB_BINARY}; `{path}` cannot be used with it (leave `path` out)"),
                );
                ok = false;
            }
            match self.deb(host, deb, b.sha256.as_deref(), lightsail) {
                Some(d) => BinarySource::Deb(d),
                None => return None,
            }
        } else if let Some(pkg) = &b.apt {
            if !is_safe_name(pkg, 128) {
                self.host_err(
                    host,
                    "nebula_binary.apt",
                    format!("`{pkg}` is not a package name"),
                );
                ok = false;
            }
            BinarySource::Apt(pkg.clone())
        } else if let Some(url) = &b.url {
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || !url
                    .bytes()
                    .all(|c| c.is_ascii_graphic() && c != b'\'' && c != b'"')
            {
                self.host_err(
                    host,
                    "nebula_binary.url",
                    "must be an http(s) URL without quotes",
                );
                ok = false;
            }
            let sha = b.sha256.clone().unwrap_or_default().to_ascii_lowercase();
            if sha.len() != 64 || !sha.bytes().all(|c| c.is_ascii_hexdigit()) {
                self.host_err(
                    host,
                    "nebula_binary.sha256",
                    "a download needs the SHA-256 of the file (64 hex digits)",
                );
                ok = false;
            }
            BinarySource::Url {
                url: url.clone(),
                sha256: sha,
            }
        } else if let Some(local) = &b.local {
            if cloud_init {
                self.host_err(
                    host,
                    "nebula_binary.local",
                    "a cloud-init host installs on first boot and cannot copy a local file; use `apt` or `url`, or preinstall it in the template",
                );
                ok = false;
            }
            BinarySource::Local(self.resolve_path(local))
        } else {
            if b.sha256.is_some() {
                self.host_err(host, "nebula_binary.sha256", "only meaningful with `url`");
                ok = false;
            }
            BinarySource::Preinstalled
        };
        let notify = b.notify.unwrap_or(true);
        let watchdog = b.watchdog.unwrap_or(notify);
        if watchdog && !notify {
            self.host_err(
                host,
                "nebula_binary.watchdog",
                "the watchdog needs `notify: true` (the binary must talk to systemd)",
            );
            ok = false;
        }
        ok.then_some(Binary {
            path,
            notify,
            watchdog,
            source,
        })
    }

    /// `nebula_binary.deb`: an `https://` URL with its SHA-256, or a local `.deb` (which
    /// cloud-init embeds in the user data, too big for Lightsail's 16 KB).
    fn deb(
        &mut self,
        host: &str,
        deb: &str,
        sha256: Option<&str>,
        lightsail: bool,
    ) -> Option<DebSource> {
        if deb.contains("://") {
            let mut ok = true;
            if !deb.starts_with("https://")
                || !deb
                    .bytes()
                    .all(|c| c.is_ascii_graphic() && c != b'\'' && c != b'"')
            {
                self.host_err(
                    host,
                    "nebula_binary.deb",
                    "a package URL must be https:// without quotes or spaces",
                );
                ok = false;
            }
            let sha = sha256.unwrap_or_default().to_ascii_lowercase();
            if sha.len() != 64 || !sha.bytes().all(|c| c.is_ascii_hexdigit()) {
                self.host_err(
                    host,
                    "nebula_binary.sha256",
                    "a package URL needs the SHA-256 of the .deb (64 hex digits)",
                );
                ok = false;
            }
            return ok.then(|| DebSource::Url {
                url: deb.to_string(),
                sha256: sha,
            });
        }
        let mut ok = true;
        if !deb.ends_with(".deb") {
            self.host_err(
                host,
                "nebula_binary.deb",
                format!("`{deb}` is neither an https:// URL nor a local .deb file"),
            );
            ok = false;
        }
        if sha256.is_some() {
            self.host_err(
                host,
                "nebula_binary.sha256",
                "only meaningful with a `url` or a `deb` URL",
            );
            ok = false;
        }
        if lightsail {
            self.host_err(
                host,
                "nebula_binary.deb",
                "a local .deb would be embedded in the user data, and Lightsail limits user data to 16 KB; use an https:// URL with `sha256`",
            );
            ok = false;
        }
        ok.then(|| DebSource::Local(self.resolve_path(deb)))
    }

    fn ssh(&mut self, host: &str, s: &SshSpec) -> Option<Ssh> {
        let before = self.problems.len();
        let target = s.host.clone().unwrap_or_default();
        if target.parse::<IpAddr>().is_err() && !is_dns_name(&target) {
            self.host_err(
                host,
                "ssh.host",
                format!("`{target}` is not an address or DNS name"),
            );
        }
        if let Some(u) = &s.user {
            if !is_safe_name(u, 32) {
                self.host_err(host, "ssh.user", format!("`{u}` is not a user name"));
            }
        }
        let options = s.options.clone().unwrap_or_default();
        for (i, o) in options.iter().enumerate() {
            if !is_plain_text(o) || o.starts_with('-') || !o.contains('=') {
                self.host_err(
                    host,
                    format!("ssh.options[{i}]"),
                    "must look like `Name=value` (one ssh -o option)",
                );
            }
        }
        if let Some(r) = &s.remote_root {
            if !is_safe_abs_path(r) {
                self.host_err(
                    host,
                    "ssh.remote_root",
                    "must be an absolute path of [A-Za-z0-9/._+@-]",
                );
            }
        }
        if let Some(c) = &s.systemctl {
            if !is_plain_text(c) {
                self.host_err(host, "ssh.systemctl", "must be a one-line command");
            }
        }
        if self.problems.len() != before {
            return None;
        }
        let user = s.user.clone();
        let become_root = s
            .become_root
            .unwrap_or_else(|| user.as_deref().is_some_and(|u| u != "root"));
        Some(Ssh {
            host: target,
            port: s.port.unwrap_or(22),
            user,
            identity_file: s.identity_file.as_deref().map(|p| self.resolve_path(p)),
            options,
            become_root,
            remote_root: s.remote_root.clone(),
            systemctl: s.systemctl.clone(),
        })
    }

    fn firewall(&mut self, inv: &Inventory, hosts: &mut [Host]) {
        let known_groups: BTreeSet<String> = hosts
            .iter()
            .flat_map(|h| h.groups.iter().cloned())
            .collect();
        for (i, rule) in inv.firewall.allow.iter().enumerate() {
            let field = format!("firewall.allow[{i}]");
            if let Some(r) = self.allow(&field, rule, hosts, &known_groups) {
                let (from, to, proto, ports) = r;
                for h in hosts.iter_mut() {
                    for p in &ports {
                        if to.matches(h) {
                            h.inbound.push(FwRule {
                                proto,
                                ports: *p,
                                remote: from.remote(),
                            });
                        }
                        if from.matches(h) {
                            h.outbound.push(FwRule {
                                proto,
                                ports: *p,
                                remote: to.remote(),
                            });
                        }
                    }
                }
            }
        }
        for h in hosts.iter_mut() {
            h.inbound.sort();
            h.inbound.dedup();
            h.outbound.sort();
            h.outbound.dedup();
        }
    }

    #[allow(clippy::type_complexity)]
    fn allow(
        &mut self,
        field: &str,
        rule: &AllowSpec,
        hosts: &[Host],
        known_groups: &BTreeSet<String>,
    ) -> Option<(Selector, Selector, Proto, Vec<Ports>)> {
        let before = self.problems.len();
        let sel = |v: &Value, which: &str, this: &mut Self| -> Option<Selector> {
            match parse_selector(v) {
                Ok(s) => {
                    this.check_selector(&format!("{field}.{which}"), &s, hosts, known_groups);
                    Some(s)
                }
                Err(e) => {
                    this.field_err(format!("{field}.{which}"), e);
                    None
                }
            }
        };
        let from = sel(&rule.from, "from", self);
        let to = sel(&rule.to, "to", self);
        let proto = parse_proto(&rule.proto, true);
        if proto.is_none() {
            self.field_err(
                format!("{field}.proto"),
                format!("`{}` is not tcp, udp, icmp or any", rule.proto),
            );
        }
        let ports = match parse_ports(rule.port.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                self.field_err(format!("{field}.port"), e);
                Vec::new()
            }
        };
        if proto == Some(Proto::Icmp) && ports.iter().any(|p| *p != Ports::Any) {
            self.field_err(
                format!("{field}.port"),
                "ICMP has no ports; leave `port` out or set it to `any`",
            );
        }
        if let Some(d) = &rule.description {
            if d.contains('\n') {
                self.field_err(format!("{field}.description"), "must be one line");
            }
        }
        if self.problems.len() != before {
            return None;
        }
        Some((from?, to?, proto?, ports))
    }

    fn check_selector(
        &mut self,
        field: &str,
        s: &Selector,
        hosts: &[Host],
        known_groups: &BTreeSet<String>,
    ) {
        match s {
            Selector::Any => {}
            Selector::Host(n) => {
                if !hosts.iter().any(|h| &h.name == n) {
                    let reason = if self.outside.contains(n) {
                        format!("`{n}` has `mesh: false`: it is outside the mesh and its firewall")
                    } else {
                        format!("no host is called `{n}`")
                    };
                    self.field_err(field, reason);
                }
            }
            Selector::Groups(gs) => {
                for g in gs {
                    if !known_groups.contains(g) {
                        self.field_err(field, format!("no host is in group `{g}`"));
                        return;
                    }
                }
                if !hosts.iter().any(|h| s.matches(h)) {
                    self.field_err(field, "no host has all of these groups");
                }
            }
            Selector::Cidr(c) => {
                if !hosts.iter().any(|h| c.contains(&h.overlay_ip)) {
                    self.field_err(field, format!("no host's overlay address is in {c}"));
                }
            }
        }
    }

    fn edge(&mut self, e: &inventory::EdgeSpec, hosts: &[Host]) -> Option<Edge> {
        let before = self.problems.len();
        let Some(edge_host) = hosts.iter().find(|h| h.name == e.host) else {
            self.field_err(
                "edge_forwarding.host",
                format!("no (valid) host is called `{}`", e.host),
            );
            return None;
        };
        if let Some(ifname) = &e.public_interface {
            if !is_safe_name(ifname, 15) {
                self.field_err(
                    "edge_forwarding.public_interface",
                    "must be an interface name: 1-15 of [A-Za-z0-9._-]",
                );
            }
        }
        if !edge_host.overlay_ip.is_ipv4() {
            self.field_err(
                "edge_forwarding.host",
                "forwarding is rendered for IPv4 overlays only",
            );
        }
        if e.ports.is_empty() {
            self.field_err("edge_forwarding.ports", "no ports to forward");
        }
        let groups: BTreeSet<String> = hosts
            .iter()
            .flat_map(|h| h.groups.iter().cloned())
            .collect();
        let mut seen = BTreeSet::new();
        let mut forwards = Vec::new();
        for (i, f) in e.ports.iter().enumerate() {
            let field = format!("edge_forwarding.ports[{i}]");
            let proto = match f.proto.as_deref().map(|p| parse_proto(p, false)) {
                None => Proto::Tcp,
                Some(Some(p)) => p,
                Some(None) => {
                    self.field_err(format!("{field}.proto"), "must be tcp or udp");
                    continue;
                }
            };
            if f.port == 0 || f.to_port == Some(0) {
                self.field_err(format!("{field}.port"), "ports must be 1-65535");
                continue;
            }
            if !seen.insert((proto, f.port)) {
                self.field_err(
                    format!("{field}.port"),
                    format!("{}/{} is forwarded twice", proto.as_str(), f.port),
                );
            }
            let sel = match parse_selector(&f.to) {
                Ok(s) => s,
                Err(err) => {
                    self.field_err(format!("{field}.to"), err);
                    continue;
                }
            };
            self.check_selector(&format!("{field}.to"), &sel, hosts, &groups);
            let to_port = f.to_port.unwrap_or(f.port);
            let mut targets = Vec::new();
            for h in hosts.iter().filter(|h| sel.matches(h) && h.name != e.host) {
                if !h.overlay_ip.is_ipv4() {
                    continue;
                }
                // The target sees the edge host's overlay address (masquerade): both sides'
                // firewalls must allow edge -> target on to_port.
                let out_ok = edge_host
                    .outbound
                    .iter()
                    .any(|r| rule_allows(r, proto, to_port) && remote_matches(&r.remote, h));
                let in_ok = h.inbound.iter().any(|r| {
                    rule_allows(r, proto, to_port) && remote_matches(&r.remote, edge_host)
                });
                if !(out_ok && in_ok) {
                    self.field_err(
                        format!("{field}.to"),
                        format!(
                            "the firewall does not allow `{}` -> `{}` {}/{}; add a firewall.allow rule for it",
                            e.host,
                            h.name,
                            proto.as_str(),
                            to_port
                        ),
                    );
                }
                targets.push((h.name.clone(), h.overlay_ip));
            }
            if targets.is_empty() {
                self.field_err(format!("{field}.to"), "selects no target host");
            }
            forwards.push(Forward {
                proto,
                port: f.port,
                to_port,
                targets,
            });
        }
        if self.problems.len() != before {
            return None;
        }
        Some(Edge {
            host: e.host.clone(),
            public_interface: e.public_interface.clone(),
            clamp_mss: e.clamp_mss.unwrap_or(true),
            forwards,
        })
    }
}

fn rule_allows(r: &FwRule, proto: Proto, port: u16) -> bool {
    (r.proto == Proto::Any || r.proto == proto) && r.ports.contains(port)
}

fn remote_matches(r: &Remote, h: &Host) -> bool {
    match r {
        Remote::Any => true,
        Remote::Host(n) => &h.name == n,
        Remote::Groups(gs) => gs.iter().all(|g| h.groups.contains(g)),
        Remote::Cidr(c) => c.contains(&h.overlay_ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{problems, INV};

    fn with(from: &str, to: &str) -> String {
        assert!(INV.contains(from), "fixture lacks {from}");
        INV.replacen(from, to, 1)
    }

    fn assert_problem(text: &str, host: Option<&str>, field: &str) {
        let ps = problems(text);
        let want = match host {
            Some(h) => format!("host `{h}`, field `{field}`"),
            None => format!("field `{field}`"),
        };
        assert!(
            ps.iter().any(|p| p.starts_with(&want)),
            "expected a problem starting with {want:?}, got {ps:#?}"
        );
    }

    #[test]
    fn fixture_is_valid_and_resolves_firewall_both_ways() {
        assert_eq!(problems(INV), Vec::<String>::new());
        let inv = inventory::parse(INV).expect("parse");
        let mesh = resolve(&inv, Path::new("/x/inventory.yml")).expect("valid");
        let lh = mesh.host("lh").expect("lh");
        let web1 = mesh.host("web1").expect("web1");
        let web = Remote::Groups(vec!["web".into()]);
        let lighthouse = Remote::Groups(vec!["lighthouse".into()]);
        assert_eq!(
            lh.outbound,
            vec![FwRule {
                proto: Proto::Tcp,
                ports: Ports::Range(443, 443),
                remote: web.clone()
            }]
        );
        assert_eq!(
            lh.inbound,
            vec![FwRule {
                proto: Proto::Icmp,
                ports: Ports::Any,
                remote: web
            }]
        );
        assert_eq!(
            web1.inbound,
            vec![FwRule {
                proto: Proto::Tcp,
                ports: Ports::Range(443, 443),
                remote: lighthouse
            }]
        );
        assert_eq!(
            web1.outbound,
            vec![FwRule {
                proto: Proto::Icmp,
                ports: Ports::Any,
                remote: Remote::Host("lh".into())
            }]
        );
        assert_eq!(lh.listen_port, 4242);
        assert_eq!(web1.listen_port, 0);
        assert_eq!(mesh.pki.dir, Path::new("/x/pki"));
        let edge = mesh.edge.expect("edge");
        assert_eq!(edge.forwards.len(), 1);
        assert_eq!(edge.forwards[0].targets.len(), 2);
    }

    #[test]
    fn errors_name_the_host_and_the_field() {
        assert_problem(
            &with("overlay_ip: 10.10.0.11", "overlay_ip: 10.99.0.11"),
            Some("web1"),
            "overlay_ip",
        );
        assert_problem(
            &with("overlay_ip: 10.10.0.11", "overlay_ip: banana"),
            Some("web1"),
            "overlay_ip",
        );
        assert_problem(
            &with("overlay_ip: 10.10.0.12", "overlay_ip: 10.10.0.11"),
            Some("web2"),
            "overlay_ip",
        );
        assert_problem(
            &with("overlay_ip: 10.10.0.11", "overlay_ip: 10.10.0.255"),
            Some("web1"),
            "overlay_ip",
        );
        assert_problem(
            &with(
                "groups: [web]\n    cloud_init",
                "groups: [\"we b\"]\n    cloud_init",
            ),
            Some("web1"),
            "groups[0]",
        );
        assert_problem(
            &with(
                "public_endpoints: [\"192.0.2.1:4242\"]",
                "public_endpoints: [\"192.0.2.1\"]",
            ),
            Some("lh"),
            "public_endpoints[0]",
        );
        assert_problem(
            &with(
                "public_endpoints: [\"192.0.2.1:4242\"]",
                "public_endpoints: []",
            ),
            Some("lh"),
            "public_endpoints",
        );
        assert_problem(
            &with(
                "ssh_admin_cidrs: [198.51.100.7/32]",
                "ssh_admin_cidrs: [0.0.0.0/0]",
            ),
            Some("lh"),
            "lightsail.ssh_admin_cidrs[0]",
        );
        assert_problem(
            &with(
                "cloud_init: {}",
                "cloud_init: {}\n    nebula_binary: {local: ./nebula}",
            ),
            Some("web1"),
            "nebula_binary.local",
        );
        assert_problem(
            &with(
                "cloud_init: {}",
                "cloud_init: {}\n    nebula_binary: {url: \"https://x.invalid/n\"}",
            ),
            Some("web1"),
            "nebula_binary.sha256",
        );
        assert_problem(
            &with(
                "cloud_init: {}",
                "cloud_init: {}\n    nebula_binary: {path: \"bin/nebula\"}",
            ),
            Some("web1"),
            "nebula_binary.path",
        );
        assert_problem(
            &with(
                "cloud_init: {}",
                "cloud_init: {}\n    nebula_binary: {notify: false, watchdog: true}",
            ),
            Some("web1"),
            "nebula_binary.watchdog",
        );
        assert_problem(
            &with(
                "cloud_init: {}",
                "cloud_init: {}\n    ssh: {host: \"-oProxyCommand=x\"}",
            ),
            Some("web1"),
            "ssh.host",
        );
        assert_problem(&with("  web2:", "  ../evil:"), Some("../evil"), "(name)");
        assert_problem(&with("  web2:", "  ansible:"), Some("ansible"), "(name)");
    }

    #[test]
    fn deb_source_resolves_and_its_mistakes_are_named() {
        let sha = "ab".repeat(32);
        let t = tempfile::tempdir().expect("tempdir");
        // A local package, relative to the inventory; the binary path follows the package.
        let m = crate::testutil::mesh_in(
            t.path(),
            &with(
                "cloud_init: {}",
                "cloud_init: {}\n    nebula_binary: {deb: debs/nebula-rs_1.0_amd64.deb}",
            ),
        );
        let web1 = m.host("web1").expect("web1");
        assert_eq!(web1.binary.path, DEB_BINARY);
        assert_eq!(
            web1.binary.source,
            BinarySource::Deb(DebSource::Local(
                t.path().join("debs/nebula-rs_1.0_amd64.deb")
            ))
        );
        assert_eq!(
            m.host("web2").expect("web2").binary.path,
            DEFAULT_BINARY,
            "other hosts keep the default"
        );
        // A URL with its hash, given as the default for every host; a host may still pick `apt`.
        let m = crate::testutil::mesh_in(
            t.path(),
            &with(
                "pki:",
                &format!(
                    "defaults:\n  nebula_binary: {{deb: \"https://x.invalid/n.deb\", sha256: \"{}\"}}\npki:",
                    sha.to_ascii_uppercase()
                ),
            )
            .replacen("groups: [web]\n", "groups: [web]\n    nebula_binary: {apt: nebula}\n", 1),
        );
        assert_eq!(
            m.host("lh").expect("lh").binary.source,
            BinarySource::Deb(DebSource::Url {
                url: "https://x.invalid/n.deb".into(),
                sha256: sha.clone(),
            })
        );
        assert_eq!(
            m.host("web1").expect("web1").binary.source,
            BinarySource::Apt("nebula".into())
        );
        assert_eq!(m.host("web1").expect("web1").binary.path, DEFAULT_BINARY);

        let web2 = |b: &str| {
            with(
                "    groups: [web]\nfirewall",
                &format!("    groups: [web]\n    nebula_binary: {b}\nfirewall"),
            )
        };
        assert!(INV.contains("    groups: [web]\nfirewall"));
        assert_problem(
            &web2("{deb: \"https://x.invalid/n.deb\"}"),
            Some("web2"),
            "nebula_binary.sha256",
        );
        assert_problem(
            &web2(&format!(
                "{{deb: \"http://x.invalid/n.deb\", sha256: \"{sha}\"}}"
            )),
            Some("web2"),
            "nebula_binary.deb",
        );
        assert_problem(
            &web2(&format!("{{deb: ./n.deb, sha256: \"{sha}\"}}")),
            Some("web2"),
            "nebula_binary.sha256",
        );
        assert_problem(&web2("{deb: ./nebula}"), Some("web2"), "nebula_binary.deb");
        assert_problem(
            &web2("{deb: ./n.deb, path: /usr/local/bin/nebula}"),
            Some("web2"),
            "nebula_binary.path",
        );
        assert_problem(
            &web2("{deb: ./n.deb, local: ./nebula}"),
            Some("web2"),
            "nebula_binary",
        );
        assert_eq!(
            problems(&web2("{deb: ./n.deb, path: /usr/bin/nebula}")),
            Vec::<String>::new()
        );
        // Lightsail's user data cannot carry a package ...
        assert_problem(
            &with(
                "    lightsail:",
                "    nebula_binary: {deb: ./n.deb}\n    cloud_init: {}\n    lightsail:",
            ),
            Some("lh"),
            "nebula_binary.deb",
        );
        // ... but a Lightsail host without user data (Kshitiz in the ADR) gets it over SSH.
        assert_eq!(
            problems(&with(
                "    lightsail:",
                "    nebula_binary: {deb: ./n.deb}\n    lightsail:",
            )),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(&with(
                "    lightsail:",
                &format!("    nebula_binary: {{deb: \"https://x.invalid/n.deb\", sha256: \"{sha}\"}}\n    lightsail:"),
            )),
            Vec::<String>::new()
        );
    }

    /// The README's walkthrough: the ADR inventory with every host on our package.
    #[test]
    fn adr_inventory_takes_a_local_deb_for_every_host() {
        let adr = include_str!("../../config/adr-inventory.yml");
        let with_deb = adr.replacen(
            "    path: /usr/local/bin/nebula\n",
            "    deb: ../target/debian/nebula-rs_0.1.0-1_amd64.deb\n",
            1,
        );
        assert_ne!(with_deb, adr, "the ADR inventory's binary path moved");
        assert_eq!(problems(adr), Vec::<String>::new());
        assert_eq!(problems(&with_deb), Vec::<String>::new());
    }

    #[test]
    fn errors_name_top_level_fields() {
        assert_problem(
            &with("network: 10.10.0.0/24", "network: 10.10.0.1/24"),
            None,
            "mesh.network",
        );
        assert_problem(
            &with("network: 10.10.0.0/24", "network: fd00::/64"),
            None,
            "mesh.network",
        );
        assert_problem(
            &with(
                "to: {group: web}, proto: tcp",
                "to: {group: wbe}, proto: tcp",
            ),
            None,
            "firewall.allow[0].to",
        );
        assert_problem(
            &with("proto: tcp, port: 443", "proto: tcp, port: 70000"),
            None,
            "firewall.allow[0].port",
        );
        assert_problem(
            &with("proto: icmp}", "proto: icmp, port: 7}"),
            None,
            "firewall.allow[1].port",
        );
        assert_problem(
            &with("proto: tcp, port: 443", "proto: sctp, port: 443"),
            None,
            "firewall.allow[0].proto",
        );
        assert_problem(
            &with("lighthouse: true\n", "lighthouse: false\n"),
            None,
            "hosts",
        );
        assert_problem(
            &with(
                "dir: pki",
                "dir: pki\n  cert_days: 10\n  renew_before_days: 10",
            ),
            None,
            "pki.renew_before_days",
        );
        // The firewall must allow what is forwarded.
        assert_problem(
            &with("proto: tcp, port: 443", "proto: tcp, port: 80"),
            None,
            "edge_forwarding.ports[0].to",
        );
        assert_problem(
            &with("host: lh\n  ports", "host: nobody\n  ports"),
            None,
            "edge_forwarding.host",
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let ps = problems(&with(
            "    cloud_init: {}",
            "    cloud_init: {}\n    overlay: 1",
        ));
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert!(
            ps[0].contains("hosts.web1") && ps[0].contains("unknown field `overlay`"),
            "{ps:?}"
        );
    }

    #[test]
    fn selectors_and_ports_parse() {
        let v = |s: &str| serde_norway::from_str::<Value>(s).expect("yaml");
        assert_eq!(parse_selector(&v("any")), Ok(Selector::Any));
        assert_eq!(
            parse_selector(&v("{groups: [b, a]}")),
            Ok(Selector::Groups(vec!["a".into(), "b".into()]))
        );
        assert!(parse_selector(&v("{host: a, group: b}")).is_err());
        assert!(parse_selector(&v("{cidr: nope}")).is_err());
        assert_eq!(
            parse_ports(Some(&v("[80, \"8000-8080\", any]"))),
            Ok(vec![
                Ports::Range(80, 80),
                Ports::Range(8000, 8080),
                Ports::Any
            ])
        );
        assert!(parse_ports(Some(&v("\"9-1\""))).is_err());
        assert!(parse_ports(Some(&v("[]"))).is_err());
    }

    #[test]
    fn safe_names_and_paths() {
        assert!(is_safe_name("vyom-ingress-1", 63));
        assert!(!is_safe_name("-x", 63));
        assert!(!is_safe_name("a/b", 63));
        assert!(!is_safe_name("", 63));
        assert!(is_safe_abs_path("/usr/local/bin/nebula"));
        assert!(!is_safe_abs_path("/usr/../bin/nebula"));
        assert!(!is_safe_abs_path("/usr/bin/neb ula"));
        assert!(!is_safe_abs_path("/usr/bin/%n"));
    }
}
