//! Rendering: turns a resolved [`Mesh`] (plus the CA and host certificates) into the files of the
//! output directory: one bundle per host, the Ansible tree and the Terraform files. Pure functions.
//!
//! A bundle is installed as `/etc/nebula/` on its host (units go to `/etc/systemd/system/`).

pub mod ansible;
pub mod cloudinit;
pub mod config;
pub mod edge;
pub mod systemd;
pub mod terraform;

use std::path::PathBuf;

use crate::model::{Host, Mesh};

/// Where bundles are installed on hosts.
pub const ETC_DIR: &str = "/etc/nebula";
/// Where units are installed on hosts.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// Bundle file names.
pub mod names {
    /// The nebula config.
    pub const CONFIG: &str = "config.yml";
    /// The CA certificate.
    pub const CA_CRT: &str = "ca.crt";
    /// The host certificate.
    pub const HOST_CRT: &str = "host.crt";
    /// The host private key.
    pub const HOST_KEY: &str = "host.key";
    /// The systemd unit.
    pub const SERVICE: &str = "nebula.service";
    /// Cloud-init user-data.
    pub const USER_DATA: &str = "user-data";
    /// nftables rules for edge forwarding.
    pub const EDGE_NFT: &str = "nebula-edge.nft";
    /// systemd unit loading the edge rules.
    pub const EDGE_SERVICE: &str = "nebula-edge.service";
    /// Every name a bundle may hold (stale ones among these are removed).
    pub const ALL: &[&str] = &[
        CONFIG,
        CA_CRT,
        HOST_CRT,
        HOST_KEY,
        SERVICE,
        USER_DATA,
        EDGE_NFT,
        EDGE_SERVICE,
    ];
}

/// One file of the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    /// Path relative to the output directory.
    pub rel: PathBuf,
    /// Contents; `None` while still unknown (a plan in which the certificate is not issued yet).
    pub contents: Option<Vec<u8>>,
    /// Unix mode.
    pub mode: u32,
}

impl OutFile {
    fn text(rel: PathBuf, s: String, mode: u32) -> OutFile {
        OutFile {
            rel,
            contents: Some(s.into_bytes()),
            mode,
        }
    }
}

/// The certificate material a bundle carries; `None` parts are not known yet (dry run).
#[derive(Debug, Clone, Copy, Default)]
pub struct Pem<'a> {
    /// CA certificate PEM.
    pub ca: Option<&'a str>,
    /// Host certificate PEM.
    pub cert: Option<&'a str>,
    /// Host key PEM.
    pub key: Option<&'a str>,
}

/// Mode of each bundle file: keys and anything that embeds one are 0600.
pub fn mode_of(name: &str) -> u32 {
    match name {
        names::HOST_KEY | names::USER_DATA => 0o600,
        _ => 0o644,
    }
}

/// The file name used in generated headers (not the full path: rendered files should not
/// depend on where the operator keeps the inventory).
pub fn inventory_name(mesh: &Mesh) -> String {
    mesh.inventory_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "inventory".into())
}

/// Whether `host` is the edge forwarder.
pub fn is_edge(mesh: &Mesh, host: &Host) -> bool {
    mesh.edge.as_ref().is_some_and(|e| e.host == host.name)
}

/// The files of one host's bundle, `<host>/...`.
pub fn bundle(mesh: &Mesh, host: &Host, pem: Pem<'_>) -> Vec<OutFile> {
    let dir = PathBuf::from(&host.name);
    let mut out = Vec::new();
    let mut add = |name: &str, contents: Option<String>| {
        out.push(OutFile {
            rel: dir.join(name),
            contents: contents.map(String::into_bytes),
            mode: mode_of(name),
        });
    };
    add(names::CONFIG, Some(config::config_yml(mesh, host)));
    add(names::CA_CRT, pem.ca.map(str::to_string));
    add(names::HOST_CRT, pem.cert.map(str::to_string));
    add(names::HOST_KEY, pem.key.map(str::to_string));
    add(names::SERVICE, Some(systemd::nebula_service(mesh, host)));
    let edge = mesh.edge.as_ref().filter(|e| e.host == host.name);
    if let Some(e) = edge {
        add(names::EDGE_NFT, Some(edge::nft_rules(mesh, e)));
        add(names::EDGE_SERVICE, Some(systemd::edge_service(mesh, host)));
    }
    if let Some(ci) = &host.cloud_init {
        let ud = match (pem.ca, pem.cert, pem.key) {
            (Some(ca), Some(cert), Some(key)) => Some(cloudinit::user_data(
                mesh,
                host,
                ci,
                &cloudinit::Files {
                    ca,
                    cert,
                    key,
                    edge: edge.map(|e| edge::nft_rules(mesh, e)),
                },
            )),
            _ => None,
        };
        add(names::USER_DATA, ud);
    }
    out
}

/// Every non-bundle file: the Ansible tree and Terraform for Lightsail hosts.
pub fn shared_files(mesh: &Mesh) -> Vec<OutFile> {
    let mut out = ansible::files(mesh);
    for h in &mesh.hosts {
        if let Some(ls) = &h.lightsail {
            out.push(OutFile::text(
                PathBuf::from("terraform").join(&h.name).join("main.tf"),
                terraform::lightsail_tf(mesh, h, ls),
                0o644,
            ));
        }
    }
    out
}
