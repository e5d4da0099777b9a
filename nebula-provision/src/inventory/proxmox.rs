//! The `proxmox:` sections of the inventory as written: the top-level defaults (API endpoint,
//! template, datastores, bridge) and each host's VM (VMID, role, sizes, network, address).
//!
//! Names follow the bpg/proxmox Terraform provider (`vm_id`, `node_name`, `datastore_id`,
//! `bridge`, `vlan_id`, `ipv4.address`/`gateway`); `validate::proxmox` checks and resolves them.

use serde::Deserialize;

/// Top-level `proxmox:`: settings of the Terraform folder and defaults for every host's VM.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxDefaultsSpec {
    /// The Terraform folder, `terraform/<terraform_dir>/` (default `proxmox`).
    #[serde(default)]
    pub terraform_dir: Option<String>,
    /// Default of the `proxmox_endpoint` variable, e.g. `https://192.168.68.200:8006/`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Default of the `proxmox_insecure` variable: skip TLS verification (default false).
    #[serde(default)]
    pub insecure: Option<bool>,
    /// Default of the `proxmox_ssh_username` variable: the SSH user snippets are uploaded as
    /// (default `root`).
    #[serde(default)]
    pub ssh_username: Option<String>,
    /// Default Proxmox node the VMs run on.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Default template the VMs are cloned from.
    #[serde(default)]
    pub template: Option<TemplateSpec>,
    /// Default datastore of the VM disks and the cloud-init drive (default `local-lvm`).
    #[serde(default)]
    pub datastore_id: Option<String>,
    /// Datastore the user-data snippets are uploaded to (default `local`; needs the `snippets`
    /// content type enabled).
    #[serde(default)]
    pub snippets_datastore_id: Option<String>,
    /// The template's boot disk, resized on the clone (default `scsi0`).
    #[serde(default)]
    pub disk_interface: Option<String>,
    /// Default bridge of the VM's network device (default `vmbr0`).
    #[serde(default)]
    pub bridge: Option<String>,
    /// Default VLAN tag of the network device (default none).
    #[serde(default)]
    pub vlan_id: Option<u32>,
    /// Default IPv4 gateway of hosts with a static address.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Default DNS settings given to the VMs by cloud-init.
    #[serde(default)]
    pub dns: Option<DnsSpec>,
}

/// `template:` — the VM template to full-clone, by VMID or by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// The template's VMID, e.g. 9000.
    #[serde(default)]
    pub vm_id: Option<u64>,
    /// The template's name, e.g. `prakriti-template` (looked up at plan time when no `vm_id`).
    #[serde(default)]
    pub name: Option<String>,
    /// The node holding the template (default: the VM's node).
    #[serde(default)]
    pub node_name: Option<String>,
}

/// `dns:` — what cloud-init configures as resolvers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// Resolver addresses.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Search domain.
    #[serde(default)]
    pub domain: Option<String>,
}

/// `ipv4:` — the VM's address: `dhcp` or `a.b.c.d/len` with an optional gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipv4Spec {
    /// `dhcp` or an address with its prefix length, e.g. `192.168.68.211/20`.
    pub address: String,
    /// Gateway (static addresses only; default `proxmox.gateway`).
    #[serde(default)]
    pub gateway: Option<String>,
}

/// `hosts.<name>.proxmox:` — this host is a VM on Proxmox, rendered into `terraform/<dir>/`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxSpec {
    /// Node the VM runs on (default `proxmox.node_name`).
    #[serde(default)]
    pub node_name: Option<String>,
    /// The VMID (default: Proxmox picks the next free one).
    #[serde(default)]
    pub vm_id: Option<u64>,
    /// VM name (default: the host name).
    #[serde(default)]
    pub name: Option<String>,
    /// `control-plane`, `worker`, `ingress` or `other` (default): picks the default sizes.
    #[serde(default)]
    pub role: Option<String>,
    /// vCPU cores.
    #[serde(default)]
    pub cores: Option<u32>,
    /// Memory in MiB.
    #[serde(default)]
    pub memory: Option<u32>,
    /// Boot disk size in GB (the provider's unit; Proxmox's `G`).
    #[serde(default)]
    pub disk_size: Option<u32>,
    /// Datastore of the disk and the cloud-init drive (default `proxmox.datastore_id`).
    #[serde(default)]
    pub datastore_id: Option<String>,
    /// Bridge (default `proxmox.bridge`).
    #[serde(default)]
    pub bridge: Option<String>,
    /// VLAN tag (default `proxmox.vlan_id`).
    #[serde(default)]
    pub vlan_id: Option<u32>,
    /// Address (default DHCP, as the template is left).
    #[serde(default)]
    pub ipv4: Option<Ipv4Spec>,
    /// DNS (default `proxmox.dns`).
    #[serde(default)]
    pub dns: Option<DnsSpec>,
    /// Template (default `proxmox.template`).
    #[serde(default)]
    pub template: Option<TemplateSpec>,
}
