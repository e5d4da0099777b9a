//! Proxmox VMs as resolved from the inventory: provider settings, and per host the template to
//! full-clone, the sizes, the network device and the cloud-init address. Read by `render::proxmox`.
//!
//! Units are the bpg/proxmox provider's: memory in MiB, disk size in GB (Proxmox's `G`).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

/// Settings of the Terraform folder shared by every VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxmoxSettings {
    /// `terraform/<terraform_dir>/`.
    pub terraform_dir: String,
    /// Default of `var.proxmox_endpoint`, if the inventory gives one.
    pub endpoint: Option<String>,
    /// Default of `var.proxmox_insecure`.
    pub insecure: bool,
    /// Default of `var.proxmox_ssh_username`.
    pub ssh_username: String,
}

/// A VM's role: it picks the default sizes (the ADR's sizing table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// K3s control plane: 4 vCPU, 8 GB, 64 GB.
    ControlPlane,
    /// K3s worker: 4 vCPU, 16 GB, 128 GB.
    Worker,
    /// Reverse proxy: 2 vCPU, 2 GB, 32 GB (our choice; the ADR does not size it).
    Ingress,
    /// Anything else: the sizes must be given.
    Other,
}

impl Role {
    /// The inventory word.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::Ingress => "ingress",
            Role::Other => "other",
        }
    }

    /// Parses the inventory word.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::ControlPlane, Role::Worker, Role::Ingress, Role::Other]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Default (cores, memory MiB, disk GB), if the role has one.
    pub fn default_size(self) -> Option<(u32, u32, u32)> {
        match self {
            Role::ControlPlane => Some((4, 8 * 1024, 64)),
            Role::Worker => Some((4, 16 * 1024, 128)),
            Role::Ingress => Some((2, 2 * 1024, 32)),
            Role::Other => None,
        }
    }
}

/// The template a VM is cloned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Its VMID, when known; otherwise it is looked up by `name` at plan time.
    pub vm_id: Option<u32>,
    /// Its name.
    pub name: Option<String>,
    /// The node holding it, when not the VM's node.
    pub node_name: Option<String>,
}

/// The VM's IPv4 configuration (cloud-init `ipconfig0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipv4Config {
    /// DHCP.
    Dhcp,
    /// A static address with its prefix, and a gateway.
    Static {
        /// Address and prefix length, e.g. 192.168.68.211/20.
        address: Ipv4Net,
        /// Gateway, if any.
        gateway: Option<Ipv4Addr>,
    },
}

/// DNS settings given by cloud-init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Resolvers.
    pub servers: Vec<IpAddr>,
    /// Search domain.
    pub domain: Option<String>,
}

/// One Proxmox VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxmoxVm {
    /// The node it runs on.
    pub node_name: String,
    /// VMID, or `None` for Proxmox's next free one.
    pub vm_id: Option<u32>,
    /// VM name (a DNS name; also the cloud-init hostname by default).
    pub name: String,
    /// Role.
    pub role: Role,
    /// vCPU cores.
    pub cores: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Boot disk size, GB.
    pub disk_size_gb: u32,
    /// Boot disk interface of the template, e.g. `scsi0`.
    pub disk_interface: String,
    /// Datastore of the disk and the cloud-init drive.
    pub datastore_id: String,
    /// Datastore of the user-data snippet.
    pub snippets_datastore_id: String,
    /// Bridge.
    pub bridge: String,
    /// VLAN tag.
    pub vlan_id: Option<u16>,
    /// Address.
    pub ipv4: Ipv4Config,
    /// DNS, if given.
    pub dns: Option<Dns>,
    /// The template to full-clone.
    pub template: Template,
}

/// A host that is not a mesh member (`mesh: false`): a VM in the inventory for Terraform only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonMember {
    /// Name (the folder of its user-data).
    pub name: String,
    /// Cloud-init settings (hostname defaults to the VM name).
    pub cloud_init: super::CloudInit,
    /// Its VM.
    pub proxmox: ProxmoxVm,
}
