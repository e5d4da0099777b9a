//! Validation of the `proxmox:` sections and of hosts outside the mesh (`mesh: false`): merges
//! each host's VM over the top-level defaults, checks every field (naming host and field), and
//! checks what must be unique across VMs (VMIDs, static addresses, VM and Terraform names).
//!
//! Limits (documented in INVENTORY.md): cores 1-128, memory 512 MiB-1 TiB, disk 8-65536 GB,
//! VMID 100-999999999 (Proxmox's range), VLAN 1-4094, bridges are Linux interface names.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::{is_dns_name, is_safe_name, Validator};
use crate::inventory::proxmox::{DnsSpec, ProxmoxDefaultsSpec, TemplateSpec};
use crate::inventory::{HostSpec, Inventory, ProxmoxSpec};
use crate::model::proxmox::{
    Dns, Ipv4Config, NonMember, ProxmoxSettings, ProxmoxVm, Role, Template,
};
use crate::model::{CloudInit, Host};

/// vCPU cores a VM may have.
pub const CORES: std::ops::RangeInclusive<u32> = 1..=128;
/// Memory a VM may have, MiB.
pub const MEMORY_MIB: std::ops::RangeInclusive<u32> = 512..=1024 * 1024;
/// Boot disk size, GB: the Ubuntu 24.04 cloud image's disk is 3.5 GB and a clone's disk can only
/// grow, so at least the provider's default of 8.
pub const DISK_GB: std::ops::RangeInclusive<u32> = 8..=65536;
/// Proxmox's VMID range.
pub const VM_ID: std::ops::RangeInclusive<u64> = 100..=999_999_999;
/// 802.1Q VLAN IDs.
pub const VLAN_ID: std::ops::RangeInclusive<u32> = 1..=4094;
/// Default folder under `terraform/`.
pub const DEFAULT_TERRAFORM_DIR: &str = "proxmox";

/// A bridge name: a Linux interface name (1-15 bytes, no `/`, `:` or whitespace), and for our
/// quoting, of `[A-Za-z0-9._-]` starting with a letter or digit. `vmbrN` is the Proxmox
/// convention, but SDN vnets and OVS bridges have other names, so any such name is accepted.
pub fn is_bridge_name(s: &str) -> bool {
    is_safe_name(s, 15)
}

/// `scsiN`, `virtioN`, `sataN` or `ideN` (what the provider's `disk.interface` takes).
fn is_disk_interface(s: &str) -> bool {
    ["scsi", "virtio", "sata", "ide"].iter().any(|p| {
        s.strip_prefix(p)
            .is_some_and(|n| !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The Terraform identifier a host's resources get: non-alphanumerics become `_`, and a leading
/// digit gets an `h` in front (identifiers cannot start with one).
pub fn tf_ident(host: &str) -> String {
    let id: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if id.starts_with(|c: char| c.is_ascii_digit()) {
        format!("h{id}")
    } else {
        id
    }
}

/// The host of an `https://host:port/` endpoint, when it is an IP address.
fn endpoint_ip(endpoint: &str) -> Option<IpAddr> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next()?.parse().ok();
    }
    authority.split(':').next()?.parse().ok()
}

impl Validator {
    /// A problem with a VM field: the host's own when it set the value, else (once) the
    /// top-level `proxmox.<field>` default's.
    fn vm_err(&mut self, host: &str, inherited: bool, field: &str, reason: impl Into<String>) {
        let p = if inherited {
            crate::error::Problem::field(format!("proxmox.{field}"), reason)
        } else {
            crate::error::Problem::host(host, format!("proxmox.{field}"), reason)
        };
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    /// `hosts.<name>.mesh: false`: checks that the host asks for nothing of the mesh and has its
    /// VM; `None` (with problems recorded) otherwise.
    fn non_member(&mut self, inv: &Inventory, name: &str, spec: &HostSpec) -> Option<NonMember> {
        let before = self.problems.len();
        self.host_name(name);
        let mesh_fields = [
            ("overlay_ip", spec.overlay_ip.is_some()),
            ("groups", !spec.groups.is_empty()),
            ("lighthouse", spec.lighthouse),
            ("public_endpoints", !spec.public_endpoints.is_empty()),
            ("listen_port", spec.listen_port.is_some()),
            ("nebula_binary", spec.nebula_binary.is_some()),
            ("ssh", spec.ssh.is_some()),
            ("lightsail", spec.lightsail.is_some()),
        ];
        for (field, set) in mesh_fields {
            if set {
                self.host_err(
                    name,
                    field,
                    "a host with `mesh: false` is outside the mesh (no certificate, bundle, apply or status): remove this field or the `mesh: false`",
                );
            }
        }
        let Some(p) = &spec.proxmox else {
            self.host_err(
                name,
                "proxmox",
                "a host with `mesh: false` is in the inventory for Terraform only: give it a `proxmox:` section",
            );
            return None;
        };
        let vm = self.proxmox_vm(inv, name, p);
        let cloud_init = self.cloud_init(name, spec.cloud_init.clone().unwrap_or_default());
        if self.problems.len() != before {
            return None;
        }
        let vm = vm?;
        Some(NonMember {
            name: name.to_string(),
            cloud_init: with_hostname(cloud_init, &vm),
            proxmox: vm,
        })
    }

    /// Every host with `mesh: false`, by name.
    pub(super) fn non_members(&mut self, inv: &Inventory) -> Vec<NonMember> {
        let mut out = Vec::new();
        for (name, spec) in &inv.hosts {
            if spec.mesh == Some(false) {
                if let Some(nm) = self.non_member(inv, name, spec) {
                    out.push(nm);
                }
            }
        }
        out
    }

    /// A host's `proxmox:` merged over the top-level defaults and checked.
    pub(super) fn proxmox_vm(
        &mut self,
        inv: &Inventory,
        host: &str,
        p: &ProxmoxSpec,
    ) -> Option<ProxmoxVm> {
        let before = self.problems.len();
        let d = inv.proxmox.clone().unwrap_or_default();
        let f = |field: &str| format!("proxmox.{field}");

        let node_name = p.node_name.clone().or(d.node_name.clone());
        let node_name = match node_name {
            Some(n) if is_safe_name(&n, 63) => n,
            Some(n) => {
                let inherited = p.node_name.is_none();
                self.vm_err(
                    host,
                    inherited,
                    "node_name",
                    format!("`{n}` is not a node name"),
                );
                String::new()
            }
            None => {
                self.host_err(
                    host,
                    f("node_name"),
                    "give the Proxmox node (here or in the top-level `proxmox.node_name`)",
                );
                String::new()
            }
        };
        let vm_id = match p.vm_id {
            None => None,
            Some(id) if VM_ID.contains(&id) => u32::try_from(id).ok(),
            Some(id) => {
                self.host_err(
                    host,
                    f("vm_id"),
                    format!("{id} is outside Proxmox's VMID range 100-999999999"),
                );
                None
            }
        };
        let name = p.name.clone().unwrap_or_else(|| host.to_string());
        if !is_dns_name(&name) || name.len() > 63 || name.contains('.') {
            self.host_err(
                host,
                f("name"),
                format!("`{name}` is not a VM name: one DNS label, 1-63 of [A-Za-z0-9-]"),
            );
        }
        let (role, known_role) = match p.role.as_deref() {
            None => (Role::Other, true),
            Some(r) => match Role::parse(r) {
                Some(role) => (role, true),
                None => {
                    self.host_err(
                        host,
                        f("role"),
                        format!("`{r}` is not a role: control-plane, worker, ingress or other"),
                    );
                    (Role::Other, false)
                }
            },
        };
        let sizes = role.default_size();
        let size =
            |field: &str, given: Option<u32>, default: Option<u32>, this: &mut Self| match given
                .or(default)
            {
                Some(v) => v,
                None => {
                    // An unknown role has its own problem; its sizes are not asked for too.
                    if known_role {
                        this.host_err(
                            host,
                            f(field),
                            format!(
                                "role `{}` has no default size: give `{field}`",
                                role.as_str()
                            ),
                        );
                    }
                    0
                }
            };
        let cores = size("cores", p.cores, sizes.map(|s| s.0), self);
        let memory_mib = size("memory", p.memory, sizes.map(|s| s.1), self);
        let disk_size_gb = size("disk_size", p.disk_size, sizes.map(|s| s.2), self);
        if p.cores.is_some() && !CORES.contains(&cores) {
            self.host_err(
                host,
                f("cores"),
                format!("{cores} vCPU cores is outside 1-128"),
            );
        }
        if p.memory.is_some() && !MEMORY_MIB.contains(&memory_mib) {
            self.host_err(
                host,
                f("memory"),
                format!(
                    "{memory_mib} MiB is outside 512-1048576 MiB (the unit is MiB: 8 GB is 8192)"
                ),
            );
        }
        if p.disk_size.is_some() && !DISK_GB.contains(&disk_size_gb) {
            self.host_err(
                host,
                f("disk_size"),
                format!("{disk_size_gb} GB is outside 8-65536 GB (a clone's disk can only grow from the template's)"),
            );
        }
        let datastore_id = p
            .datastore_id
            .clone()
            .or(d.datastore_id.clone())
            .unwrap_or_else(|| "local-lvm".into());
        if !is_safe_name(&datastore_id, 63) {
            let inherited = p.datastore_id.is_none();
            self.vm_err(
                host,
                inherited,
                "datastore_id",
                format!("`{datastore_id}` is not a datastore name"),
            );
        }
        let snippets_datastore_id = d
            .snippets_datastore_id
            .clone()
            .unwrap_or_else(|| "local".into());
        let disk_interface = d.disk_interface.clone().unwrap_or_else(|| "scsi0".into());
        let bridge = p
            .bridge
            .clone()
            .or(d.bridge.clone())
            .unwrap_or_else(|| "vmbr0".into());
        if !is_bridge_name(&bridge) {
            let inherited = p.bridge.is_none();
            self.vm_err(
                host,
                inherited,
                "bridge",
                format!("`{bridge}` is not a bridge name: 1-15 of [A-Za-z0-9._-] (no `/`, `:` or spaces), e.g. vmbr0"),
            );
        }
        let vlan_id = match p.vlan_id.or(d.vlan_id) {
            None => None,
            Some(v) if VLAN_ID.contains(&v) => u16::try_from(v).ok(),
            Some(v) => {
                let inherited = p.vlan_id.is_none();
                self.vm_err(
                    host,
                    inherited,
                    "vlan_id",
                    format!("{v} is outside the VLAN IDs 1-4094"),
                );
                None
            }
        };
        let ipv4 = self.ipv4(host, p, &d);
        let dns = match p.dns.as_ref().or(d.dns.as_ref()) {
            Some(spec) => self.dns(host, p.dns.is_none(), spec),
            None => None,
        };
        let template = match p.template.as_ref().or(d.template.as_ref()) {
            Some(t) => self.template(host, p.template.is_none(), t),
            None => {
                self.host_err(
                    host,
                    f("template"),
                    "give the template to clone, e.g. {vm_id: 9000, name: prakriti-template} (here or in the top-level `proxmox.template`)",
                );
                None
            }
        };
        if self.problems.len() != before {
            return None;
        }
        Some(ProxmoxVm {
            node_name,
            vm_id,
            name,
            role,
            cores,
            memory_mib,
            disk_size_gb,
            disk_interface,
            datastore_id,
            snippets_datastore_id,
            bridge,
            vlan_id,
            ipv4: ipv4?,
            dns,
            template: template?,
        })
    }

    fn ipv4(&mut self, host: &str, p: &ProxmoxSpec, d: &ProxmoxDefaultsSpec) -> Option<Ipv4Config> {
        let Some(spec) = &p.ipv4 else {
            return Some(Ipv4Config::Dhcp);
        };
        if spec.address == "dhcp" {
            if spec.gateway.is_some() {
                self.host_err(
                    host,
                    "proxmox.ipv4.gateway",
                    "a DHCP address takes its gateway from DHCP: remove `gateway`",
                );
                return None;
            }
            return Some(Ipv4Config::Dhcp);
        }
        let address = match spec.address.parse::<Ipv4Net>() {
            Ok(a) if a.prefix_len() == 0 || a.prefix_len() > 30 => {
                self.host_err(
                    host,
                    "proxmox.ipv4.address",
                    format!("`{a}`: the prefix length must be 1-30"),
                );
                return None;
            }
            Ok(a) if a.addr() == a.network() || a.addr() == a.broadcast() => {
                self.host_err(
                    host,
                    "proxmox.ipv4.address",
                    format!(
                        "{} is the network or broadcast address of {}",
                        a.addr(),
                        a.trunc()
                    ),
                );
                return None;
            }
            Ok(a) => a,
            Err(_) => {
                self.host_err(
                    host,
                    "proxmox.ipv4.address",
                    format!(
                        "`{}` is not `dhcp` or an address with its prefix, like 192.168.68.211/20",
                        spec.address
                    ),
                );
                return None;
            }
        };
        let (gateway_text, inherited) = match (&spec.gateway, &d.gateway) {
            (Some(g), _) => (Some(g), ""),
            (None, Some(g)) => (Some(g), " (from `proxmox.gateway`)"),
            (None, None) => (None, ""),
        };
        let gateway = match gateway_text {
            None => None,
            Some(g) => {
                match g.parse::<Ipv4Addr>() {
                    Err(_) => {
                        self.host_err(
                            host,
                            "proxmox.ipv4.gateway",
                            format!("`{g}`{inherited} is not an IPv4 address"),
                        );
                        return None;
                    }
                    Ok(g) if !address.contains(&g) => {
                        self.host_err(
                            host,
                            "proxmox.ipv4.gateway",
                            format!(
                                "{g}{inherited} is outside the VM's subnet {}",
                                address.trunc()
                            ),
                        );
                        return None;
                    }
                    Ok(g)
                        if g == address.addr()
                            || g == address.network()
                            || g == address.broadcast() =>
                    {
                        self.host_err(
                        host,
                        "proxmox.ipv4.gateway",
                        format!("{g}{inherited} is the VM's own, the network or the broadcast address"),
                    );
                        return None;
                    }
                    Ok(g) => Some(g),
                }
            }
        };
        Some(Ipv4Config::Static { address, gateway })
    }

    fn dns(&mut self, host: &str, inherited: bool, d: &DnsSpec) -> Option<Dns> {
        let mut servers = Vec::new();
        for (i, s) in d.servers.iter().enumerate() {
            match s.parse::<IpAddr>() {
                Ok(ip) => servers.push(ip),
                Err(_) => self.vm_err(
                    host,
                    inherited,
                    &format!("dns.servers[{i}]"),
                    format!("`{s}` is not an IP address"),
                ),
            }
        }
        if let Some(dom) = &d.domain {
            if !is_dns_name(dom) {
                self.vm_err(
                    host,
                    inherited,
                    "dns.domain",
                    format!("`{dom}` is not a domain"),
                );
            }
        }
        Some(Dns {
            servers,
            domain: d.domain.clone(),
        })
    }

    fn template(&mut self, host: &str, inherited: bool, t: &TemplateSpec) -> Option<Template> {
        let before = self.problems.len();
        let vm_id = match t.vm_id {
            Some(id) if VM_ID.contains(&id) => u32::try_from(id).ok(),
            Some(id) => {
                self.vm_err(
                    host,
                    inherited,
                    "template.vm_id",
                    format!("{id} is outside Proxmox's VMID range 100-999999999"),
                );
                None
            }
            None => None,
        };
        if let Some(n) = &t.name {
            if !is_dns_name(n) {
                self.vm_err(
                    host,
                    inherited,
                    "template.name",
                    format!("`{n}` is not a VM name"),
                );
            }
        }
        if let Some(n) = &t.node_name {
            if !is_safe_name(n, 63) {
                self.vm_err(
                    host,
                    inherited,
                    "template.node_name",
                    format!("`{n}` is not a node name"),
                );
            }
        }
        if t.vm_id.is_none() && t.name.is_none() {
            self.vm_err(
                host,
                inherited,
                "template",
                "give the template's `vm_id` or `name`",
            );
        }
        if self.problems.len() != before {
            return None;
        }
        Some(Template {
            vm_id,
            name: t.name.clone(),
            node_name: t.node_name.clone(),
        })
    }

    /// The top-level `proxmox:` section, and what must be unique across all VMs. `None` when no
    /// host has a VM.
    pub(super) fn proxmox_settings(
        &mut self,
        inv: &Inventory,
        hosts: &[Host],
        non_members: &[NonMember],
        overlay: Option<IpNet>,
    ) -> Option<ProxmoxSettings> {
        let d = inv.proxmox.clone().unwrap_or_default();
        let terraform_dir = d
            .terraform_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_TERRAFORM_DIR.into());
        if !is_safe_name(&terraform_dir, 63) {
            self.field_err(
                "proxmox.terraform_dir",
                format!("`{terraform_dir}` must be 1-63 of [A-Za-z0-9._-]"),
            );
        } else if hosts
            .iter()
            .any(|h| h.lightsail.is_some() && h.name == terraform_dir)
        {
            self.field_err(
                "proxmox.terraform_dir",
                format!("`terraform/{terraform_dir}/` is the Lightsail host `{terraform_dir}`'s folder; pick another"),
            );
        }
        let endpoint_addr = match &d.endpoint {
            Some(e) => {
                let ok = (e.starts_with("https://") || e.starts_with("http://"))
                    && e.len() > 8
                    && e.bytes()
                        .all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\'' && c != b'\\');
                if !ok {
                    self.field_err(
                        "proxmox.endpoint",
                        format!("`{e}` is not an API URL like https://192.168.68.200:8006/"),
                    );
                }
                endpoint_ip(e)
            }
            None => None,
        };
        if let Some(ds) = &d.snippets_datastore_id {
            if !is_safe_name(ds, 63) {
                self.field_err(
                    "proxmox.snippets_datastore_id",
                    format!("`{ds}` is not a datastore name"),
                );
            }
        }
        if let Some(i) = &d.disk_interface {
            if !is_disk_interface(i) {
                self.field_err(
                    "proxmox.disk_interface",
                    format!("`{i}` is not a disk interface like scsi0, virtio0, sata0 or ide0"),
                );
            }
        }
        let ssh_username = d.ssh_username.clone().unwrap_or_else(|| "root".into());
        if !is_safe_name(&ssh_username, 32) {
            self.field_err(
                "proxmox.ssh_username",
                format!("`{ssh_username}` is not a user name"),
            );
        }

        let vms: Vec<(&str, &ProxmoxVm)> = hosts
            .iter()
            .filter_map(|h| h.proxmox.as_ref().map(|p| (h.name.as_str(), p)))
            .chain(non_members.iter().map(|n| (n.name.as_str(), &n.proxmox)))
            .collect();
        let mut ids: BTreeMap<u32, &str> = BTreeMap::new();
        let mut addrs: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        let mut idents: BTreeMap<String, &str> = BTreeMap::new();
        let mut sorted = vms.clone();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        for (host, vm) in sorted {
            if let Some(id) = vm.vm_id {
                if let Some(other) = ids.insert(id, host) {
                    self.host_err(
                        host,
                        "proxmox.vm_id",
                        format!("{id} is also host `{other}`'s VMID"),
                    );
                }
                for (_, o) in &vms {
                    if o.template.vm_id == Some(id) {
                        self.host_err(
                            host,
                            "proxmox.vm_id",
                            format!("{id} is the template's VMID"),
                        );
                        break;
                    }
                }
            }
            if let Some(other) = names.insert(&vm.name, host) {
                self.host_err(
                    host,
                    "proxmox.name",
                    format!("`{}` is also host `{other}`'s VM name", vm.name),
                );
            }
            if let Some(other) = idents.insert(tf_ident(host), host) {
                self.host_err(
                    host,
                    "(name)",
                    format!(
                        "gives the same Terraform name `{}` as host `{other}`",
                        tf_ident(host)
                    ),
                );
            }
            if let Ipv4Config::Static { address, .. } = &vm.ipv4 {
                if let Some(other) = addrs.insert(address.addr(), host) {
                    self.host_err(
                        host,
                        "proxmox.ipv4.address",
                        format!("{} is also host `{other}`'s address", address.addr()),
                    );
                }
                if endpoint_addr == Some(IpAddr::V4(address.addr())) {
                    self.host_err(
                        host,
                        "proxmox.ipv4.address",
                        format!(
                            "{} is the Proxmox host's own address (proxmox.endpoint)",
                            address.addr()
                        ),
                    );
                }
                if let Some(IpNet::V4(o)) = overlay {
                    let lan = address.trunc();
                    if lan.contains(&o.network()) || o.contains(&lan.network()) {
                        self.host_err(
                            host,
                            "proxmox.ipv4.address",
                            format!("the VM's subnet {lan} overlaps the mesh network {o}"),
                        );
                    }
                }
            }
        }
        if vms.is_empty() {
            return None;
        }
        Some(ProxmoxSettings {
            terraform_dir,
            endpoint: d.endpoint.clone(),
            insecure: d.insecure.unwrap_or(false),
            ssh_username,
        })
    }
}

/// A Proxmox VM's user-data replaces the one Proxmox would generate (which sets the hostname):
/// so the hostname defaults to the VM name.
pub(super) fn with_hostname(mut ci: CloudInit, vm: &ProxmoxVm) -> CloudInit {
    if ci.hostname.is_none() {
        ci.hostname = Some(vm.name.clone());
    }
    ci
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::model::proxmox::{Ipv4Config, Role};
    use crate::testutil::{problems, with_proxmox, INV};

    fn fixture() -> String {
        with_proxmox()
    }

    fn with(from: &str, to: &str) -> String {
        let f = fixture();
        assert!(f.contains(from), "fixture lacks {from}");
        f.replacen(from, to, 1)
    }

    fn assert_problem(text: &str, host: &str, field: &str) {
        let ps = problems(text);
        let want = format!("host `{host}`, field `{field}`");
        assert!(
            ps.iter().any(|p| p.starts_with(&want)),
            "expected a problem starting with {want:?}, got {ps:#?}"
        );
    }

    const CP: &str = "      role: control-plane\n";

    #[test]
    fn fixture_resolves_members_and_non_members() {
        assert_eq!(problems(&fixture()), Vec::<String>::new());
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = crate::testutil::mesh_in(t.path(), &fixture());
        assert!(mesh.host("k3s-cp").is_none() && mesh.host("k3s-w1").is_none());
        assert_eq!(mesh.hosts.len(), 3);
        let cp = mesh.non_member("k3s-cp").expect("k3s-cp");
        assert_eq!(cp.proxmox.role, Role::ControlPlane);
        assert_eq!(
            (
                cp.proxmox.cores,
                cp.proxmox.memory_mib,
                cp.proxmox.disk_size_gb
            ),
            (4, 8192, 64)
        );
        assert_eq!(cp.proxmox.template.vm_id, Some(9000));
        assert_eq!(cp.proxmox.node_name, "vyom");
        assert_eq!(cp.proxmox.bridge, "vmbr0");
        assert_eq!(cp.cloud_init.hostname.as_deref(), Some("k3s-cp"));
        match &cp.proxmox.ipv4 {
            Ipv4Config::Static { address, gateway } => {
                assert_eq!(address.to_string(), "192.168.68.221/20");
                assert_eq!(
                    gateway.map(|g| g.to_string()).as_deref(),
                    Some("192.168.68.1")
                );
            }
            other => panic!("{other:?}"),
        }
        let w1 = mesh.non_member("k3s-w1").expect("k3s-w1");
        assert_eq!(
            (
                w1.proxmox.cores,
                w1.proxmox.memory_mib,
                w1.proxmox.disk_size_gb
            ),
            (4, 16384, 128)
        );
        assert_eq!(w1.proxmox.ipv4, Ipv4Config::Dhcp);
        let web1 = mesh.host("web1").expect("web1");
        let vm = web1.proxmox.as_ref().expect("web1 VM");
        assert_eq!((vm.cores, vm.memory_mib, vm.disk_size_gb), (2, 2048, 32));
        // The VM's user-data replaces Proxmox's, which would have set the hostname.
        assert_eq!(
            web1.cloud_init.as_ref().and_then(|c| c.hostname.as_deref()),
            Some("web1")
        );
        let settings = mesh.proxmox.as_ref().expect("settings");
        assert_eq!(settings.terraform_dir, "proxmox");
        assert_eq!(mesh.proxmox_vms().len(), 3);
        // Without any VM there are no Proxmox settings.
        let plain = crate::validate::resolve(
            &crate::inventory::parse(INV).expect("parse"),
            Path::new("/x/inventory.yml"),
        )
        .expect("valid");
        assert!(plain.proxmox.is_none() && plain.non_members.is_empty());
    }

    #[test]
    fn cores_must_be_1_to_128() {
        assert_problem(
            &with(CP, &format!("{CP}      cores: 0\n")),
            "k3s-cp",
            "proxmox.cores",
        );
        assert_problem(
            &with(CP, &format!("{CP}      cores: 129\n")),
            "k3s-cp",
            "proxmox.cores",
        );
    }

    #[test]
    fn memory_is_mib_between_512_and_1_tib() {
        assert_problem(
            &with(CP, &format!("{CP}      memory: 8\n")),
            "k3s-cp",
            "proxmox.memory",
        );
        assert_problem(
            &with(CP, &format!("{CP}      memory: 2000000\n")),
            "k3s-cp",
            "proxmox.memory",
        );
    }

    #[test]
    fn disk_must_be_at_least_8_gb() {
        assert_problem(
            &with(CP, &format!("{CP}      disk_size: 0\n")),
            "k3s-cp",
            "proxmox.disk_size",
        );
        assert_problem(
            &with(CP, &format!("{CP}      disk_size: 4\n")),
            "k3s-cp",
            "proxmox.disk_size",
        );
        assert_problem(
            &with(CP, &format!("{CP}      disk_size: 70000\n")),
            "k3s-cp",
            "proxmox.disk_size",
        );
    }

    #[test]
    fn vm_ids_are_unique_in_range_and_not_the_templates() {
        assert_problem(&with("vm_id: 222", "vm_id: 221"), "k3s-w1", "proxmox.vm_id");
        assert_problem(
            &with("vm_id: 222", "vm_id: 9000"),
            "k3s-w1",
            "proxmox.vm_id",
        );
        assert_problem(&with("vm_id: 222", "vm_id: 99"), "k3s-w1", "proxmox.vm_id");
        assert_problem(
            &with("vm_id: 222", "vm_id: 1000000000"),
            "k3s-w1",
            "proxmox.vm_id",
        );
        let ps = problems(&with("{vm_id: 9000, name", "{vm_id: 42, name"));
        assert!(
            ps.iter()
                .any(|p| p.starts_with("field `proxmox.template.vm_id`")),
            "{ps:?}"
        );
    }

    #[test]
    fn bridges_are_interface_names() {
        for bad in [
            "\"vmbr/0\"",
            "\"vm br0\"",
            "\"vmbr:0\"",
            "vmbr0123456789012",
            "\"\"",
        ] {
            assert_problem(
                &with(CP, &format!("{CP}      bridge: {bad}\n")),
                "k3s-cp",
                "proxmox.bridge",
            );
        }
        assert_eq!(
            problems(&with(CP, &format!("{CP}      bridge: vnet30\n"))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn vlan_ids_are_1_to_4094() {
        assert_problem(
            &with(CP, &format!("{CP}      vlan_id: 0\n")),
            "k3s-cp",
            "proxmox.vlan_id",
        );
        assert_problem(
            &with(CP, &format!("{CP}      vlan_id: 4095\n")),
            "k3s-cp",
            "proxmox.vlan_id",
        );
    }

    #[test]
    fn static_addresses_are_addresses_with_a_prefix() {
        for bad in [
            "192.168.68.221",
            "192.168.64.0/20",
            "192.168.79.255/20",
            "banana/20",
            "192.168.68.221/31",
        ] {
            assert_problem(
                &with("address: 192.168.68.221/20", &format!("address: {bad}")),
                "k3s-cp",
                "proxmox.ipv4.address",
            );
        }
    }

    #[test]
    fn static_addresses_do_not_overlap() {
        assert_problem(
            &with(
                "{vm_id: 222, role: worker}",
                "{vm_id: 222, role: worker, ipv4: {address: 192.168.68.221/24}}",
            ),
            "k3s-w1",
            "proxmox.ipv4.address",
        );
        // Not the Proxmox host's own address, and not inside the mesh network.
        assert_problem(
            &with("address: 192.168.68.221/20", "address: 192.168.68.200/20"),
            "k3s-cp",
            "proxmox.ipv4.address",
        );
        assert_problem(
            &with(
                "address: 192.168.68.221/20, gateway: 192.168.68.1",
                "address: 10.10.0.50/16",
            ),
            "k3s-cp",
            "proxmox.ipv4.address",
        );
    }

    #[test]
    fn gateways_are_inside_the_subnet() {
        assert_problem(
            &with("gateway: 192.168.68.1", "gateway: 192.168.80.1"),
            "k3s-cp",
            "proxmox.ipv4.gateway",
        );
        assert_problem(
            &with("gateway: 192.168.68.1", "gateway: 192.168.68.221"),
            "k3s-cp",
            "proxmox.ipv4.gateway",
        );
        assert_problem(
            &with(
                "address: 192.168.68.221/20, gateway: 192.168.68.1",
                "address: dhcp, gateway: 192.168.68.1",
            ),
            "k3s-cp",
            "proxmox.ipv4.gateway",
        );
        // An inherited gateway is checked against each host's subnet too.
        assert_problem(
            &format!(
                "{}  gateway: 192.168.99.1\n",
                with(", gateway: 192.168.68.1", "")
            ),
            "k3s-cp",
            "proxmox.ipv4.gateway",
        );
    }

    #[test]
    fn roles_are_known_and_other_roles_give_their_sizes() {
        assert_problem(&with(CP, "      role: master\n"), "k3s-cp", "proxmox.role");
        let no_role = with(CP, "");
        for f in ["proxmox.cores", "proxmox.memory", "proxmox.disk_size"] {
            assert_problem(&no_role, "k3s-cp", f);
        }
        assert_eq!(
            problems(&with(
                CP,
                "      cores: 1\n      memory: 1024\n      disk_size: 10\n"
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn non_members_ask_nothing_of_the_mesh_and_have_a_vm() {
        assert_problem(
            &with(
                "  k3s-cp:\n    mesh: false\n",
                "  k3s-cp:\n    mesh: false\n    overlay_ip: 10.10.0.30\n",
            ),
            "k3s-cp",
            "overlay_ip",
        );
        assert_problem(
            &with(
                "  k3s-cp:\n    mesh: false\n",
                "  k3s-cp:\n    mesh: false\n    ssh: {host: 192.168.68.221}\n",
            ),
            "k3s-cp",
            "ssh",
        );
        assert_problem(
            &with(
                "    mesh: false\n    proxmox: {vm_id: 222, role: worker}\n",
                "    mesh: false\n",
            ),
            "k3s-w1",
            "proxmox",
        );
        // A member without an overlay address is told about `mesh: false`.
        assert_problem(
            &with("    overlay_ip: 10.10.0.12\n", ""),
            "web2",
            "overlay_ip",
        );
        // Firewall selectors see members only.
        let ps = problems(&with(
            "to: {group: web}, proto: tcp",
            "to: {host: k3s-cp}, proto: tcp",
        ));
        assert!(
            ps.iter()
                .any(|p| p.starts_with("field `firewall.allow[0].to`: `k3s-cp` has `mesh: false`")),
            "{ps:?}"
        );
    }

    #[test]
    fn a_bad_default_is_reported_once_where_it_is_written() {
        let ps = problems(&format!("{}  bridge: \"vmbr 0\"\n", fixture()));
        let bridge: Vec<_> = ps.iter().filter(|p| p.contains("proxmox.bridge")).collect();
        assert_eq!(bridge.len(), 1, "{ps:#?}");
        assert!(bridge[0].starts_with("field `proxmox.bridge`"), "{ps:#?}");
        let ps = problems(&format!(
            "{}  disk_interface: nvme0\n  snippets_datastore_id: \"a b\"\n",
            fixture()
        ));
        for f in ["proxmox.disk_interface", "proxmox.snippets_datastore_id"] {
            assert!(
                ps.iter().any(|p| p.starts_with(&format!("field `{f}`"))),
                "{ps:#?}"
            );
        }
        // An unknown role is one problem, not four.
        let ps = problems(&with(CP, "      role: master\n"));
        assert_eq!(ps.len(), 1, "{ps:#?}");
    }

    #[test]
    fn names_template_and_folder() {
        assert_problem(
            &with(CP, &format!("{CP}      name: \"k3s_cp\"\n")),
            "k3s-cp",
            "proxmox.name",
        );
        assert_problem(
            &with(CP, &format!("{CP}      name: k3s-w1\n")),
            "k3s-w1",
            "proxmox.name",
        );
        assert_problem(
            &with("  template: {vm_id: 9000, name: prakriti-template}\n", ""),
            "k3s-cp",
            "proxmox.template",
        );
        assert_problem(
            &with("  node_name: vyom\n", ""),
            "k3s-cp",
            "proxmox.node_name",
        );
        let ps = problems(&format!("{}  terraform_dir: lh\n", fixture()));
        assert!(
            ps.iter()
                .any(|p| p.starts_with("field `proxmox.terraform_dir`")),
            "{ps:?}"
        );
        assert_eq!(super::tf_ident("vyom-k3s-cp-1"), "vyom_k3s_cp_1");
        assert_eq!(super::tf_ident("1a.b"), "h1a_b");
    }
}
