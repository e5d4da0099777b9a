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
