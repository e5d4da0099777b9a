//! nebula-provision: from one inventory file to a running Nebula mesh. Owns the inventory format
//! and its validation, the operator's PKI state, rendering of per-host bundles (config.yml, certs,
//! hardened systemd unit, cloud-init user-data, edge nftables rules), the Ansible tree, Terraform
//! for Lightsail and for Proxmox VMs (also of hosts outside the mesh), and `apply` over the system
//! ssh/scp.
//!
//! It never talks to the network itself except through `ssh`/`scp` in [`apply`]; certificates are
//! made with the `nebula-cert` library (v1 certificates by default, so Go Nebula 1.6.x nodes can
//! join the same mesh).
#![forbid(unsafe_code)]

pub mod apply;
pub mod error;
pub mod inventory;
pub mod model;
pub mod pki;
pub mod provision;
pub mod render;
pub mod shell;
pub mod status;
#[cfg(test)]
mod testutil;
pub mod validate;

pub use error::{ApplyError, InventoryError, OutputError, PkiError, Problem, StatusError};
pub use model::Mesh;
pub use provision::{run, Options, Outcome};
pub use validate::load_mesh;
