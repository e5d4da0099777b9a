//! Test helpers shared by the unit tests: a small inventory and a way to load it from a temp dir.
//! Compiled only for tests.

use std::path::Path;

use crate::model::Mesh;

/// A small mesh: a lighthouse with a public address (and Lightsail), two web hosts, an edge forward.
pub const INV: &str = r#"
mesh:
  name: test-ca
  network: 10.10.0.0/24
pki:
  dir: pki
  argon2: {memory_kib: 64, iterations: 1, parallelism: 1}
hosts:
  lh:
    overlay_ip: 10.10.0.1
    groups: [lighthouse]
    lighthouse: true
    public_endpoints: ["192.0.2.1:4242"]
    lightsail: {availability_zone: ap-southeast-1a, ssh_admin_cidrs: [198.51.100.7/32]}
  web1:
    overlay_ip: 10.10.0.11
    groups: [web]
    cloud_init: {}
  web2:
    overlay_ip: 10.10.0.12
    groups: [web]
firewall:
  allow:
    - {from: {group: lighthouse}, to: {group: web}, proto: tcp, port: 443}
    - {from: {group: web}, to: {host: lh}, proto: icmp}
edge_forwarding:
  host: lh
  ports:
    - {port: 443, to: {group: web}}
"#;

/// Writes `text` as `dir/inventory.yml` and loads it; panics with the problems if invalid.
pub fn mesh_in(dir: &Path, text: &str) -> Mesh {
    let p = dir.join("inventory.yml");
    std::fs::write(&p, text).expect("write inventory");
    match crate::load_mesh(&p) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    }
}

/// The problems `text` has (empty if it is valid).
pub fn problems(text: &str) -> Vec<String> {
    let inv = match crate::inventory::parse(text) {
        Ok(i) => i,
        Err(e) => return vec![e],
    };
    match crate::validate::resolve(&inv, Path::new("/nonexistent/inventory.yml")) {
        Ok(_) => Vec::new(),
        Err(crate::InventoryError::Invalid { problems }) => {
            problems.iter().map(|p| p.to_string()).collect()
        }
        Err(e) => vec![e.to_string()],
    }
}

/// [`INV`] with Proxmox VMs: web1 (a member, ingress, static), k3s-cp (outside the mesh, control
/// plane, static with gateway) and k3s-w1 (outside, worker, DHCP); template 9000 on node `vyom`.
pub fn with_proxmox() -> String {
    let s = INV
        .replacen(
            "    cloud_init: {}\n",
            "    cloud_init: {}\n    proxmox: {vm_id: 211, role: ingress, ipv4: {address: 192.168.68.211/20}}\n",
            1,
        )
        .replacen(
            "firewall:",
            "  k3s-cp:\n    mesh: false\n    proxmox:\n      vm_id: 221\n      role: control-plane\n      ipv4: {address: 192.168.68.221/20, gateway: 192.168.68.1}\n  k3s-w1:\n    mesh: false\n    proxmox: {vm_id: 222, role: worker}\nfirewall:",
            1,
        );
    format!(
        "{s}proxmox:\n  node_name: vyom\n  template: {{vm_id: 9000, name: prakriti-template}}\n  endpoint: https://192.168.68.200:8006/\n"
    )
}
