//! Rendering: turns a resolved [`Mesh`] (plus the CA and host certificates) into the files of the
//! output directory: one bundle per host, the Ansible tree and the Terraform files. Pure functions.
//!
//! A bundle is installed as `/etc/nebula/` on its host (units go to `/etc/systemd/system/`).

pub mod ansible;
pub mod cloudinit;
pub mod config;
pub mod edge;
pub mod proxmox;
pub mod systemd;
pub mod terraform;
pub mod vm_user_data;

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

/// The certificate material a bundle carries; `None` parts are not known yet (dry run). Also
/// the bytes of a local `nebula_binary.deb`, which a cloud-init host's user data embeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pem<'a> {
    /// CA certificate PEM.
    pub ca: Option<&'a str>,
    /// Host certificate PEM.
    pub cert: Option<&'a str>,
    /// Host key PEM.
    pub key: Option<&'a str>,
    /// The local `.deb` (only read for cloud-init hosts with `nebula_binary.deb: <file>`).
    pub deb: Option<&'a [u8]>,
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
                    deb: pem.deb,
                },
            )),
            _ => None,
        };
        add(names::USER_DATA, ud);
    }
    out
}

/// Every non-bundle file: the Ansible tree, Terraform for Lightsail hosts and for Proxmox VMs,
/// and the user-data of hosts outside the mesh.
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
    out.extend(proxmox::files(mesh));
    out.extend(vm_user_data::files(mesh));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mesh_in, INV};
    use base64::Engine;
    use serde_norway::Value;

    fn yaml(s: &str) -> Value {
        serde_norway::from_str(s).expect("valid YAML")
    }

    fn fixture() -> (tempfile::TempDir, Mesh) {
        let t = tempfile::tempdir().expect("tempdir");
        let m = mesh_in(t.path(), INV);
        (t, m)
    }

    #[test]
    fn config_points_at_the_bundle_and_carries_the_policy() {
        let (_t, mesh) = fixture();
        let web1 = mesh.host("web1").expect("web1");
        let c = yaml(&config::config_yml(&mesh, web1));
        assert_eq!(c["pki"]["ca"].as_str(), Some("/etc/nebula/ca.crt"));
        assert_eq!(c["pki"]["cert"].as_str(), Some("/etc/nebula/host.crt"));
        assert_eq!(c["pki"]["key"].as_str(), Some("/etc/nebula/host.key"));
        assert_eq!(c["lighthouse"]["am_lighthouse"].as_bool(), Some(false));
        assert_eq!(c["lighthouse"]["hosts"][0].as_str(), Some("10.10.0.1"));
        assert_eq!(
            c["static_host_map"]["10.10.0.1"][0].as_str(),
            Some("192.0.2.1:4242")
        );
        assert_eq!(c["listen"]["port"].as_u64(), Some(0));
        assert_eq!(c["tun"]["dev"].as_str(), Some("nebula1"));
        assert_eq!(c["firewall"]["inbound_action"].as_str(), Some("drop"));
        let inbound = c["firewall"]["inbound"].as_sequence().expect("inbound");
        assert_eq!(inbound.len(), 1);
        assert_eq!(inbound[0]["port"].as_u64(), Some(443));
        assert_eq!(inbound[0]["proto"].as_str(), Some("tcp"));
        assert_eq!(inbound[0]["groups"][0].as_str(), Some("lighthouse"));
        let outbound = c["firewall"]["outbound"].as_sequence().expect("outbound");
        assert_eq!(outbound.len(), 1);
        assert_eq!(outbound[0]["proto"].as_str(), Some("icmp"));
        // Go 1.6.1 needs a port even on ICMP rules.
        assert_eq!(outbound[0]["port"].as_str(), Some("any"));
        assert_eq!(outbound[0]["host"].as_str(), Some("lh"));

        let lh = yaml(&config::config_yml(&mesh, mesh.host("lh").expect("lh")));
        assert_eq!(lh["lighthouse"]["am_lighthouse"].as_bool(), Some(true));
        assert!(lh["lighthouse"].get("hosts").is_none());
        assert_eq!(lh["listen"]["port"].as_u64(), Some(4242));
        assert_eq!(lh["static_host_map"].as_mapping().map(|m| m.len()), Some(0));
        // No rule anywhere allows everything.
        for h in &mesh.hosts {
            let c = yaml(&config::config_yml(&mesh, h));
            for dir in ["inbound", "outbound"] {
                for r in c["firewall"][dir].as_sequence().expect("rules") {
                    assert!(
                        !(r["proto"].as_str() == Some("any") && r["host"].as_str() == Some("any")),
                        "{}: allow-all {dir} rule",
                        h.name
                    );
                }
            }
        }
    }

    #[test]
    fn unit_is_hardened_and_runs_the_configured_binary() {
        let (_t, mesh) = fixture();
        let u = systemd::nebula_service(&mesh, mesh.host("web1").expect("web1"));
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=30s",
            "ExecStart=/usr/local/bin/nebula -config /etc/nebula/config.yml",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure",
            "CapabilityBoundingSet=CAP_NET_ADMIN",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "DevicePolicy=closed",
            "DeviceAllow=/dev/net/tun rw",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_UNIX",
            "SystemCallFilter=@system-service",
            "WantedBy=multi-user.target",
        ] {
            assert!(u.lines().any(|l| l == line), "missing {line:?} in\n{u}");
        }
        assert!(!u.contains("AmbientCapabilities"));
        let old = mesh_in(
            _t.path(),
            &INV.replacen(
                "pki:",
                "defaults:\n  nebula_binary: {notify: false, path: /usr/bin/nebula}\npki:",
                1,
            ),
        );
        let u = systemd::nebula_service(&old, old.host("lh").expect("lh"));
        assert!(u.contains("Type=simple\n") && !u.contains("NotifyAccess"));
        assert!(!u.contains("Watchdog"));
        assert!(u.contains("ExecStart=/usr/bin/nebula -config"));
        // Go Nebula >= 1.7 sends READY=1 but never WATCHDOG=1: notify without the watchdog.
        let go = mesh_in(
            _t.path(),
            &INV.replacen(
                "pki:",
                "defaults:\n  nebula_binary: {watchdog: false}\npki:",
                1,
            ),
        );
        let u = systemd::nebula_service(&go, go.host("lh").expect("lh"));
        assert!(
            u.contains("Type=notify\nNotifyAccess=main\nExecStart="),
            "{u}"
        );
        assert!(!u.contains("Watchdog"));
    }

    #[test]
    fn edge_rules_forward_round_robin_and_masquerade() {
        let (_t, mesh) = fixture();
        let edge = mesh.edge.as_ref().expect("edge");
        let r = edge::nft_rules(&mesh, edge);
        assert!(r.contains(
            "iifname != \"nebula1\" fib daddr type local tcp dport 443 dnat to numgen inc mod 2 map { 0 : 10.10.0.11, 1 : 10.10.0.12 } : 443"
        ), "{r}");
        assert!(r.contains(
            "oifname \"nebula1\" ct status dnat ip daddr { 10.10.0.11, 10.10.0.12 } masquerade"
        ));
        assert!(r.contains("tcp option maxseg size set rt mtu"));
        assert!(r.starts_with("#!/usr/sbin/nft -f\n"));
        let one = mesh_in(
            _t.path(),
            &INV.replacen(
                "{port: 443, to: {group: web}}",
                "{port: 8443, to_port: 443, to: {host: web2}}",
                1,
            )
            .replacen(
                "host: lh\n  ports",
                "host: lh\n  public_interface: ens5\n  clamp_mss: false\n  ports",
                1,
            ),
        );
        let r = edge::nft_rules(&one, one.edge.as_ref().expect("edge"));
        assert!(
            r.contains(
                "iifname \"ens5\" fib daddr type local tcp dport 8443 dnat to 10.10.0.12:443"
            ),
            "{r}"
        );
        assert!(!r.contains("maxseg"));
    }

    #[test]
    fn user_data_installs_exactly_the_bundle() {
        let (_t, mesh) = fixture();
        let web1 = mesh.host("web1").expect("web1");
        let files = bundle(
            &mesh,
            web1,
            Pem {
                ca: Some("CA PEM\n"),
                cert: Some("CERT PEM\n"),
                key: Some("KEY PEM\n"),
                deb: None,
            },
        );
        let ud = files
            .iter()
            .find(|f| f.rel.ends_with(names::USER_DATA))
            .and_then(|f| f.contents.clone())
            .expect("user-data");
        let text = String::from_utf8(ud).expect("utf8");
        assert!(text.starts_with("#cloud-config\n"));
        let v = yaml(&text);
        let mut written = std::collections::BTreeMap::new();
        for wf in v["write_files"].as_sequence().expect("write_files") {
            assert_eq!(wf["encoding"].as_str(), Some("b64"));
            let data = base64::engine::general_purpose::STANDARD
                .decode(wf["content"].as_str().expect("content"))
                .expect("b64");
            written.insert(
                wf["path"].as_str().expect("path").to_string(),
                (data, wf["permissions"].as_str().expect("perm").to_string()),
            );
        }
        for f in files.iter().filter(|f| !f.rel.ends_with(names::USER_DATA)) {
            let name = f
                .rel
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let dest = if name.ends_with(".service") {
                format!("{UNIT_DIR}/{name}")
            } else {
                format!("{ETC_DIR}/{name}")
            };
            let (data, perm) = written
                .get(&dest)
                .unwrap_or_else(|| panic!("{dest} not written"));
            assert_eq!(Some(data), f.contents.as_ref(), "{dest}");
            assert_eq!(perm, &format!("{:04o}", f.mode), "{dest}");
        }
        assert_eq!(written.len(), 5);
        let runcmd = serde_norway::to_string(&v["runcmd"]).expect("ser");
        assert!(
            runcmd.contains("enable") && runcmd.contains("nebula.service"),
            "{runcmd}"
        );
        // Unknown certificate material: no user-data yet.
        let pending = bundle(&mesh, web1, Pem::default());
        assert!(pending
            .iter()
            .filter(|f| f.rel.ends_with(names::USER_DATA) || f.rel.ends_with(names::HOST_KEY))
            .all(|f| f.contents.is_none()));
    }

    #[test]
    fn terraform_opens_only_nebula_ssh_from_admin_and_forwarded_ports() {
        let (_t, mesh) = fixture();
        let lh = mesh.host("lh").expect("lh");
        let tf = terraform::lightsail_tf(&mesh, lh, lh.lightsail.as_ref().expect("ls"));
        let blocks: Vec<&str> = tf.split("port_info {").skip(1).collect();
        assert_eq!(blocks.len(), 3, "{tf}");
        assert!(blocks[0].contains("\"udp\"") && blocks[0].contains("from_port = 4242"));
        assert!(blocks[1].contains("\"tcp\"") && blocks[1].contains("from_port = 22"));
        assert!(blocks[1].contains("[\"198.51.100.7/32\"]"));
        assert!(blocks[2].contains("from_port = 443") && blocks[2].contains("0.0.0.0/0"));
        assert!(tf.contains("region = \"ap-southeast-1\""));
        assert_eq!(terraform::hcl_str("a\"b${c}\\"), "\"a\\\"b$${c}\\\\\"");
    }

    #[test]
    fn ansible_inventory_lists_every_host_with_its_groups() {
        let (_t, mesh) = fixture();
        let files = ansible::files(&mesh);
        let inv = files
            .iter()
            .find(|f| f.rel.ends_with("inventory.yml"))
            .and_then(|f| f.contents.clone())
            .expect("inventory");
        let v: Value = serde_norway::from_slice(&inv).expect("yaml");
        let nebula = &v["all"]["children"]["nebula"];
        assert_eq!(nebula["hosts"]["lh"]["nebula_edge"].as_bool(), Some(true));
        assert_eq!(
            nebula["hosts"]["web1"]["nebula_edge"].as_bool(),
            Some(false)
        );
        assert!(nebula["children"]["nebula_web"]["hosts"]
            .as_mapping()
            .is_some_and(|m| m.len() == 2));
        assert!(nebula["children"]["nebula_am_lighthouse"]["hosts"]
            .as_mapping()
            .is_some_and(|m| m.contains_key("lh")));
        for f in &files {
            if f.rel.extension().is_some_and(|e| e == "yml") {
                let _: Value = serde_norway::from_slice(f.contents.as_deref().expect("c"))
                    .unwrap_or_else(|e| panic!("{}: {e}", f.rel.display()));
            }
        }
    }
}
