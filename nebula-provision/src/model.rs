//! The mesh as resolved from a valid inventory: defaults filled in, selectors expanded into per-host
//! firewall rules, paths made absolute. Renderers and the PKI read only this, never the raw YAML.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use nebula_cert::encrypted::Argon2Params;
use nebula_cert::{Curve, Version};

pub mod proxmox;

pub use proxmox::{NonMember, ProxmoxSettings, ProxmoxVm};

/// Where the operator's PKI state lives and how certificates are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiSettings {
    /// Absolute (or inventory-relative resolved) directory with `ca.crt`, `ca.key`, `hosts/`.
    pub dir: PathBuf,
    /// CA lifetime in days, used when the CA is created.
    pub ca_days: u32,
    /// Host certificate lifetime in days.
    pub cert_days: u32,
    /// Renewal window in days.
    pub renew_before_days: u32,
    /// Encrypt a new CA key; an existing encrypted key always needs the passphrase to sign.
    pub encrypt_ca_key: bool,
    /// Environment variable with the passphrase.
    pub passphrase_env: String,
    /// Argon2id cost for a new encrypted CA key.
    pub argon2: Argon2Params,
}

/// How the nebula binary gets onto a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinarySource {
    /// Already there (image, manual install).
    Preinstalled,
    /// An apt package.
    Apt(String),
    /// Downloaded and checked against a SHA-256 (hex, lower case).
    Url {
        /// The URL.
        url: String,
        /// Expected SHA-256 of the download.
        sha256: String,
    },
    /// Copied from the operator's machine.
    Local(PathBuf),
    /// Our Debian package (`nebula-rs`, installs `/usr/bin/nebula`).
    Deb(DebSource),
}

/// Where the `.deb` of a [`BinarySource::Deb`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebSource {
    /// A file on the operator's machine.
    Local(PathBuf),
    /// Downloaded over HTTPS and checked against a SHA-256 (hex, lower case).
    Url {
        /// The URL.
        url: String,
        /// Expected SHA-256 of the package.
        sha256: String,
    },
}

/// The nebula binary on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// Absolute path on the host.
    pub path: String,
    /// `Type=notify` (true) or `Type=simple`.
    pub notify: bool,
    /// `WatchdogSec=` (the binary sends `WATCHDOG=1`; only with `notify`).
    pub watchdog: bool,
    /// How it is installed.
    pub source: BinarySource,
}

/// How `apply` reaches a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    /// Address or name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login user, if set.
    pub user: Option<String>,
    /// `-i` file.
    pub identity_file: Option<PathBuf>,
    /// `-o` options.
    pub options: Vec<String>,
    /// Wrap remote commands in `sudo -n`.
    pub become_root: bool,
    /// Install root on the host (`/` normally).
    pub remote_root: Option<String>,
    /// systemctl command on the host.
    pub systemctl: Option<String>,
}

/// Cloud-init settings for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudInit {
    /// Hostname to set, if any.
    pub hostname: Option<String>,
    /// SSH keys for the default user.
    pub ssh_authorized_keys: Vec<String>,
}

/// An AWS Lightsail instance for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lightsail {
    /// Instance name.
    pub instance_name: String,
    /// AWS region.
    pub region: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Blueprint (OS image).
    pub blueprint_id: String,
    /// Bundle (size).
    pub bundle_id: String,
    /// Static IP name.
    pub static_ip_name: String,
    /// SSH sources.
    pub ssh_admin_cidrs: Vec<IpNet>,
}

/// IP protocol of a firewall rule or forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// Any protocol.
    Any,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (ports do not apply).
    Icmp,
}

impl Proto {
    /// The word Nebula's config (and nftables) use.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Any => "any",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

/// A port or port range; `Any` matches all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ports {
    /// Any port.
    Any,
    /// `low..=high` (equal for a single port).
    Range(u16, u16),
}

impl Ports {
    /// Whether `port` falls in this set.
    pub fn contains(self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Range(lo, hi) => lo <= port && port <= hi,
        }
    }
}

/// The far side of a firewall rule, as Nebula matches it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Remote {
    /// Any host with a certificate from our CA.
    Any,
    /// The host with this certificate name.
    Host(String),
    /// Hosts holding all these groups.
    Groups(Vec<String>),
    /// Hosts whose overlay address is in this network.
    Cidr(IpNet),
}

/// One Nebula firewall rule on one host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FwRule {
    /// Protocol.
    pub proto: Proto,
    /// Ports (remote port for outbound, local for inbound; ignored for ICMP).
    pub ports: Ports,
    /// Who the peer may be.
    pub remote: Remote,
}

/// One forwarded public port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// `tcp` or `udp`.
    pub proto: Proto,
    /// Public port.
    pub port: u16,
    /// Port on the targets.
    pub to_port: u16,
    /// Target hosts: (name, overlay address).
    pub targets: Vec<(String, IpAddr)>,
}

/// Edge forwarding on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The forwarding host.
    pub host: String,
    /// Restrict to this inbound interface.
    pub public_interface: Option<String>,
    /// Clamp MSS on forwarded TCP.
    pub clamp_mss: bool,
    /// The forwards.
    pub forwards: Vec<Forward>,
}

/// One host, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Name (certificate name, folder name).
    pub name: String,
    /// Overlay address.
    pub overlay_ip: IpAddr,
    /// Overlay address with the mesh prefix (the certificate network).
    pub network: IpNet,
    /// Groups, sorted and deduplicated.
    pub groups: Vec<String>,
    /// `am_lighthouse`.
    pub lighthouse: bool,
    /// Static underlay endpoints.
    pub public_endpoints: Vec<String>,
    /// UDP listen port (0 = any).
    pub listen_port: u16,
    /// The binary.
    pub binary: Binary,
    /// SSH access, if any.
    pub ssh: Option<Ssh>,
    /// Cloud-init, if any.
    pub cloud_init: Option<CloudInit>,
    /// Lightsail, if any.
    pub lightsail: Option<Lightsail>,
    /// Proxmox VM, if any.
    pub proxmox: Option<ProxmoxVm>,
    /// Inbound allows, sorted, deduplicated.
    pub inbound: Vec<FwRule>,
    /// Outbound allows, sorted, deduplicated.
    pub outbound: Vec<FwRule>,
}

/// The whole mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mesh {
    /// The inventory file it came from (shown in rendered headers).
    pub inventory_path: PathBuf,
    /// CA name.
    pub name: String,
    /// Overlay network.
    pub network: IpNet,
    /// Certificate version for hosts and CA.
    pub cert_version: Version,
    /// Curve.
    pub curve: Curve,
    /// Tunnel MTU.
    pub mtu: u32,
    /// Tunnel device.
    pub tun_dev: String,
    /// Cipher, if not Nebula's default.
    pub cipher: Option<String>,
    /// Lighthouse update interval (s).
    pub lighthouse_interval: u32,
    /// Log level.
    pub log_level: String,
    /// PKI settings.
    pub pki: PkiSettings,
    /// Hosts sorted by name.
    pub hosts: Vec<Host>,
    /// Edge forwarding, if any.
    pub edge: Option<Edge>,
    /// Hosts with `mesh: false` (Terraform only), sorted by name. Not in `hosts`.
    pub non_members: Vec<NonMember>,
    /// Proxmox provider settings, when some host has `proxmox:`.
    pub proxmox: Option<ProxmoxSettings>,
}

impl Mesh {
    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The host called `name` if it is not a mesh member.
    pub fn non_member(&self, name: &str) -> Option<&NonMember> {
        self.non_members.iter().find(|h| h.name == name)
    }

    /// Every Proxmox VM, members' and non-members', by host name.
    pub fn proxmox_vms(&self) -> Vec<(&str, &ProxmoxVm)> {
        let mut v: Vec<(&str, &ProxmoxVm)> = self
            .hosts
            .iter()
            .filter_map(|h| h.proxmox.as_ref().map(|p| (h.name.as_str(), p)))
            .chain(
                self.non_members
                    .iter()
                    .map(|h| (h.name.as_str(), &h.proxmox)),
            )
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The lighthouses.
    pub fn lighthouses(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.lighthouse)
    }
}
