//! The inventory file as written by the operator: serde types mirroring the documented YAML format
//! (see `nebula-provision/INVENTORY.md`), and loading. Checking and resolving is `validate.rs`'s job.
//!
//! Fields whose syntax we check ourselves (addresses, CIDRs, selectors, ports) are read as strings or
//! raw YAML values here, so that a bad value gives an error naming the host and the field rather than
//! a bare serde message. Unknown keys are refused (`deny_unknown_fields`): a typo must not be ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::InventoryError;

pub mod proxmox;

pub use proxmox::ProxmoxSpec;

/// The whole inventory file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Mesh-wide settings: overlay network, certificate format, tunnel device.
    pub mesh: MeshSpec,
    /// Where the CA and the issued host certificates live, and their lifetimes.
    pub pki: PkiSpec,
    /// Defaults every host inherits (binary, SSH).
    #[serde(default)]
    pub defaults: DefaultsSpec,
    /// The hosts, by name (the name is the certificate name and the bundle folder name).
    pub hosts: BTreeMap<String, HostSpec>,
    /// The firewall policy: explicit allows only.
    #[serde(default)]
    pub firewall: FirewallSpec,
    /// Optional: one host forwards public ports over the mesh to other hosts.
    #[serde(default)]
    pub edge_forwarding: Option<EdgeSpec>,
    /// Optional: the Proxmox provider settings and VM defaults for hosts with `proxmox:`.
    #[serde(default)]
    pub proxmox: Option<proxmox::ProxmoxDefaultsSpec>,
}

/// `mesh:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSpec {
    /// The CA's name.
    pub name: String,
    /// The overlay network, e.g. `10.100.0.0/24`; each host's overlay address gets its prefix.
    pub network: String,
    /// Certificate version: 1 (default; every Nebula release understands it) or 2 (Nebula >= 1.10).
    #[serde(default)]
    pub cert_version: Option<u8>,
    /// `25519` (default) or `P256`.
    #[serde(default)]
    pub curve: Option<String>,
    /// UDP port of hosts that listen on a fixed port (lighthouses, hosts with public endpoints).
    #[serde(default)]
    pub port: Option<u16>,
    /// Tunnel MTU (default 1300).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Tunnel device name (default `nebula1`).
    #[serde(default)]
    pub tun_dev: Option<String>,
    /// `aes` or `chachapoly`; omitted means Nebula's default (`aes`). Must be the same on every host.
    #[serde(default)]
    pub cipher: Option<String>,
    /// Seconds between lighthouse updates (default 60).
    #[serde(default)]
    pub lighthouse_interval: Option<u32>,
    /// Nebula log level (default `info`).
    #[serde(default)]
    pub log_level: Option<String>,
}

/// `pki:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiSpec {
    /// Directory holding `ca.crt`, `ca.key` and `hosts/<name>.{crt,key}`; relative to the inventory file.
    pub dir: String,
    /// CA lifetime in days when it is created (default 730).
    #[serde(default)]
    pub ca_days: Option<u32>,
    /// Host certificate lifetime in days (default 365; capped at the CA's expiry).
    #[serde(default)]
    pub cert_days: Option<u32>,
    /// Re-issue a host certificate this many days before it expires (default 30).
    #[serde(default)]
    pub renew_before_days: Option<u32>,
    /// Encrypt the CA key with a passphrase (Go's `nebula-cert ca -encrypt` format).
    #[serde(default)]
    pub encrypt_ca_key: bool,
    /// Environment variable holding the CA passphrase (default `NEBULA_CA_PASSPHRASE`).
    #[serde(default)]
    pub passphrase_env: Option<String>,
    /// Argon2id cost for a newly encrypted CA key (default Go's: 2 GiB, 1 iteration, 4 lanes).
    #[serde(default)]
    pub argon2: Option<Argon2Spec>,
}

/// `pki.argon2:`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Spec {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u8,
}

/// `defaults:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSpec {
    /// The nebula binary every host uses unless it says otherwise.
    #[serde(default)]
    pub nebula_binary: Option<BinarySpec>,
    /// SSH settings every host inherits (each field separately).
    #[serde(default)]
    pub ssh: Option<SshSpec>,
}

/// `nebula_binary:` — where the daemon lives on the host and how it gets there.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinarySpec {
    /// Absolute path on the host (default `/usr/local/bin/nebula`).
    #[serde(default)]
    pub path: Option<String>,
    /// The binary tells systemd when it is ready (`Type=notify`; Nebula >= 1.7 and ours). Default true.
    #[serde(default)]
    pub notify: Option<bool>,
    /// The binary sends `WATCHDOG=1` (ours), so the unit gets `WatchdogSec=`. Default: `notify`.
    /// Go Nebula sends only `READY=1`: set false for it, or systemd kills it every 30 s.
    #[serde(default)]
    pub watchdog: Option<bool>,
    /// Install from this apt package.
    #[serde(default)]
    pub apt: Option<String>,
    /// Download from this URL (a `.tar.gz` holding `nebula`, or the bare binary) ...
    #[serde(default)]
    pub url: Option<String>,
    /// ... whose SHA-256 must be this (hex).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Copy this file from the operator's machine (apply and Ansible; not cloud-init).
    #[serde(default)]
    pub local: Option<String>,
    /// Install our Debian package (`nebula-rs`): a `.deb` on the operator's machine, or an
    /// `https://` URL (then `sha256` is required). The binary is then `/usr/bin/nebula`.
    #[serde(default)]
    pub deb: Option<String>,
}

/// `ssh:` — how `apply` reaches a host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSpec {
    /// Address or DNS name.
    #[serde(default)]
    pub host: Option<String>,
    /// Port (default 22).
    #[serde(default)]
    pub port: Option<u16>,
    /// Login user (default: ssh's own default).
    #[serde(default)]
    pub user: Option<String>,
    /// Private key file (`ssh -i`).
    #[serde(default)]
    pub identity_file: Option<String>,
    /// Extra `-o` options, e.g. `StrictHostKeyChecking=yes`.
    #[serde(default)]
    pub options: Option<Vec<String>>,
    /// Run the install with `sudo -n` (default: when the user is not root).
    #[serde(default, rename = "become")]
    pub become_root: Option<bool>,
    /// Install under this directory instead of `/` (tests, chroots).
    #[serde(default)]
    pub remote_root: Option<String>,
    /// The command used on the host for systemctl (default `systemctl`).
    #[serde(default)]
    pub systemctl: Option<String>,
}

/// `hosts.<name>:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// `false`: the host is not a mesh member (no overlay address, certificate or bundle); it is
    /// in the inventory for Terraform only. Default true.
    #[serde(default)]
    pub mesh: Option<bool>,
    /// The host's address on the overlay network (required for mesh members).
    #[serde(default)]
    pub overlay_ip: Option<String>,
    /// Certificate groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// This host is a lighthouse (`lighthouse.am_lighthouse`).
    #[serde(default)]
    pub lighthouse: bool,
    /// Static underlay endpoints, `ip:port` or `name:port` (required for lighthouses).
    #[serde(default)]
    pub public_endpoints: Vec<String>,
    /// UDP listen port (default: `mesh.port` for hosts with public endpoints, 0 = any otherwise).
    #[serde(default)]
    pub listen_port: Option<u16>,
    /// Overrides `defaults.nebula_binary` (each field separately).
    #[serde(default)]
    pub nebula_binary: Option<BinarySpec>,
    /// How `apply` reaches the host; merged over `defaults.ssh`.
    #[serde(default)]
    pub ssh: Option<SshSpec>,
    /// Present: render a cloud-init `user-data` that installs the bundle on first boot.
    #[serde(default)]
    pub cloud_init: Option<CloudInitSpec>,
    /// Present: render a Terraform file for this host as an AWS Lightsail instance.
    #[serde(default)]
    pub lightsail: Option<LightsailSpec>,
    /// Present: render this host as a Proxmox VM in `terraform/<proxmox.terraform_dir>/`.
    #[serde(default)]
    pub proxmox: Option<ProxmoxSpec>,
}

/// `hosts.<name>.cloud_init:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudInitSpec {
    /// Hostname to set (default: leave it to the hypervisor's metadata).
    #[serde(default)]
    pub hostname: Option<String>,
    /// SSH public keys for the default user.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
}

/// `hosts.<name>.lightsail:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightsailSpec {
    /// Instance name (default `<host>`).
    #[serde(default)]
    pub instance_name: Option<String>,
    /// e.g. `ap-southeast-1a`.
    pub availability_zone: String,
    /// AWS region (default: the zone without its last letter).
    #[serde(default)]
    pub region: Option<String>,
    /// Default `ubuntu_22_04`.
    #[serde(default)]
    pub blueprint_id: Option<String>,
    /// Default `nano_3_0`.
    #[serde(default)]
    pub bundle_id: Option<String>,
    /// Static IP resource name (default `<host>-static-ip`).
    #[serde(default)]
    pub static_ip_name: Option<String>,
    /// Where SSH (TCP 22) may come from, e.g. `198.51.100.7/32`. Required.
    #[serde(default)]
    pub ssh_admin_cidrs: Vec<String>,
}

/// `firewall:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    /// Explicit allows; everything else is dropped.
    #[serde(default)]
    pub allow: Vec<AllowSpec>,
}

/// One `firewall.allow[]` entry: `from` hosts may open `proto`/`port` on `to` hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSpec {
    /// Free text, copied into the rendered configs as a comment-like `description`.
    #[serde(default)]
    pub description: Option<String>,
    /// Who may connect: `any`, `{host: X}`, `{group: X}`, `{groups: [X, Y]}` (all of them), `{cidr: C}`.
    pub from: serde_norway::Value,
    /// Who is connected to (same forms as `from`).
    pub to: serde_norway::Value,
    /// `tcp`, `udp`, `icmp` or `any`.
    pub proto: String,
    /// `any` (default), a number, `low-high`, or a list of those.
    #[serde(default)]
    pub port: Option<serde_norway::Value>,
}

/// `edge_forwarding:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// The host with the public address that forwards.
    pub host: String,
    /// Only forward what arrives on this interface (default: any interface but the tunnel).
    #[serde(default)]
    pub public_interface: Option<String>,
    /// Clamp TCP MSS to the path MTU on forwarded connections (default true).
    #[serde(default)]
    pub clamp_mss: Option<bool>,
    /// The forwarded ports.
    pub ports: Vec<ForwardSpec>,
}

/// One `edge_forwarding.ports[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSpec {
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub proto: Option<String>,
    /// Public port.
    pub port: u16,
    /// Port on the targets (default: the same).
    #[serde(default)]
    pub to_port: Option<u16>,
    /// Target hosts (selector, as in the firewall; several targets share connections round-robin).
    pub to: serde_norway::Value,
}

/// Reads and parses an inventory file (no validation beyond the YAML shape).
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|message| InventoryError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses inventory YAML text; the error is serde's message (it names the key path and line).
pub fn parse(text: &str) -> Result<Inventory, String> {
    serde_norway::from_str(text).map_err(|e| e.to_string())
}

/// The directory relative paths in the inventory are resolved against.
pub fn base_dir(inventory_path: &Path) -> PathBuf {
    match inventory_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
