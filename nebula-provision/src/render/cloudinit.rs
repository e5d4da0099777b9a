//! Cloud-init `user-data` for hosts cloned from a template (the ADR's Vyom VMs): on first boot it
//! writes the bundle to `/etc/nebula/`, the unit(s) to `/etc/systemd/system/`, installs the binary
//! if the inventory says how (a local `.deb` travels inside the user data), and enables nebula.
//!
//! The file embeds the host's private key: it is written 0600 and should be handed to the
//! hypervisor as a private snippet.

use base64::Engine;
use serde_norway::{Mapping, Value};

use crate::model::{BinarySource, CloudInit, DebSource, Host, Mesh};
use crate::render::{config, inventory_name, names, systemd, ETC_DIR, UNIT_DIR};
use crate::shell;

/// The certificate material (and edge rules) the user-data carries.
#[derive(Debug, Clone)]
pub struct Files<'a> {
    /// CA certificate PEM.
    pub ca: &'a str,
    /// Host certificate PEM.
    pub cert: &'a str,
    /// Host key PEM.
    pub key: &'a str,
    /// Edge nftables rules, when this host forwards.
    pub edge: Option<String>,
    /// The local `.deb` of `nebula_binary.deb`, written to the package cache and installed.
    pub deb: Option<&'a [u8]>,
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn write_file(path: &str, content: &str, mode: u32) -> Value {
    write_bytes(path, content.as_bytes(), mode)
}

fn write_bytes(path: &str, content: &[u8], mode: u32) -> Value {
    let mut m = Mapping::new();
    m.insert(s("path"), s(path));
    m.insert(s("owner"), s("root:root"));
    m.insert(s("permissions"), s(&format!("{mode:04o}")));
    m.insert(s("encoding"), s("b64"));
    m.insert(
        s("content"),
        s(&base64::engine::general_purpose::STANDARD.encode(content)),
    );
    Value::Mapping(m)
}

fn cmd(words: &[&str]) -> Value {
    Value::Sequence(words.iter().map(|w| s(w)).collect())
}

/// The `user-data` text.
pub fn user_data(mesh: &Mesh, host: &Host, ci: &CloudInit, f: &Files<'_>) -> String {
    let mut top = Mapping::new();
    if let Some(hn) = &ci.hostname {
        top.insert(s("hostname"), s(hn));
    }
    if !ci.ssh_authorized_keys.is_empty() {
        top.insert(
            s("ssh_authorized_keys"),
            Value::Sequence(ci.ssh_authorized_keys.iter().map(|k| s(k)).collect()),
        );
    }
    if let BinarySource::Apt(pkg) = &host.binary.source {
        top.insert(s("packages"), Value::Sequence(vec![s(pkg)]));
    }
    if let BinarySource::Deb(_) = &host.binary.source {
        // The package's dependencies come from the mirror: fresh package lists before runcmd.
        top.insert(s("package_update"), Value::Bool(true));
    }
    let etc = |n: &str| format!("{ETC_DIR}/{n}");
    let unit = |n: &str| format!("{UNIT_DIR}/{n}");
    let mut files = vec![
        write_file(&etc(names::CONFIG), &config::config_yml(mesh, host), 0o644),
        write_file(&etc(names::CA_CRT), f.ca, 0o644),
        write_file(&etc(names::HOST_CRT), f.cert, 0o644),
        write_file(&etc(names::HOST_KEY), f.key, 0o600),
        write_file(
            &unit(names::SERVICE),
            &systemd::nebula_service(mesh, host),
            0o644,
        ),
    ];
    if let Some(rules) = &f.edge {
        files.push(write_file(&etc(names::EDGE_NFT), rules, 0o644));
        files.push(write_file(
            &unit(names::EDGE_SERVICE),
            &systemd::edge_service(mesh, host),
            0o644,
        ));
    }
    if let (BinarySource::Deb(DebSource::Local(_)), Some(deb)) = (&host.binary.source, f.deb) {
        files.push(write_bytes(shell::DEB_CACHE, deb, 0o644));
    }
    top.insert(s("write_files"), Value::Sequence(files));

    let mut run = Vec::new();
    if let (BinarySource::Url { .. } | BinarySource::Deb(_), Some(script)) = (
        &host.binary.source,
        shell::binary_install_script(&host.binary, "/"),
    ) {
        run.push(cmd(&["sh", "-c", &script]));
    }
    // After the install: the bundle wants /etc/nebula 0700 whatever the package left (older
    // nebula-rs packages made it 0750).
    run.push(cmd(&["chmod", "0700", ETC_DIR]));
    run.push(cmd(&["systemctl", "daemon-reload"]));
    run.push(cmd(&["systemctl", "enable", "--now", names::SERVICE]));
    if f.edge.is_some() {
        run.push(cmd(&["systemctl", "enable", "--now", names::EDGE_SERVICE]));
    }
    top.insert(s("runcmd"), Value::Sequence(run));

    let body = serde_norway::to_string(&Value::Mapping(top)).unwrap_or_default();
    format!(
        "#cloud-config\n# First-boot install of the nebula bundle for `{}`, rendered by nebula-provision from {}.\n# Contains the host's private key: keep it private.\n{body}",
        host.name,
        inventory_name(mesh)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{bundle, Pem};
    use crate::testutil::{mesh_in, INV};

    fn user_data_of(text: &str, deb: Option<&[u8]>) -> Value {
        let t = tempfile::tempdir().expect("tempdir");
        let m = mesh_in(t.path(), text);
        let web1 = m.host("web1").expect("web1");
        let files = bundle(
            &m,
            web1,
            Pem {
                ca: Some("CA\n"),
                cert: Some("CERT\n"),
                key: Some("KEY\n"),
                deb,
            },
        );
        let ud = files
            .iter()
            .find(|f| f.rel.ends_with(names::USER_DATA))
            .and_then(|f| f.contents.clone())
            .expect("user-data");
        serde_norway::from_slice(&ud).expect("yaml")
    }

    fn runcmd(v: &Value) -> String {
        serde_norway::to_string(&v["runcmd"]).expect("ser")
    }

    #[test]
    fn a_local_deb_travels_in_write_files_and_is_installed_before_nebula_starts() {
        let pkg: &[u8] = b"!<arch>\nnot really a package\0\xff";
        let v = user_data_of(
            &INV.replacen(
                "cloud_init: {}",
                "cloud_init: {}\n    nebula_binary: {deb: ./n.deb}",
                1,
            ),
            Some(pkg),
        );
        let wf = v["write_files"]
            .as_sequence()
            .expect("write_files")
            .iter()
            .find(|f| f["path"].as_str() == Some(shell::DEB_CACHE))
            .expect("the .deb is written");
        assert_eq!(wf["encoding"].as_str(), Some("b64"));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(wf["content"].as_str().expect("content"))
                .expect("b64"),
            pkg
        );
        let run = runcmd(&v);
        let install = run
            .find(&format!("apt-get install -y -q {}", shell::DEB_CACHE))
            .expect("installed");
        assert!(!run.contains("curl"), "{run}");
        let start = run.find("enable").expect("enable");
        assert!(install < start, "{run}");
        let chmod = run.find("0700").expect("chmod");
        assert!(
            install < chmod,
            "the bundle folder is closed after the install: {run}"
        );
        assert!(v.get("packages").is_none());
        assert_eq!(v["package_update"].as_bool(), Some(true));
    }

    #[test]
    fn a_deb_url_is_downloaded_checked_and_installed() {
        let sha = "12".repeat(32);
        let v = user_data_of(
            &INV.replacen(
                "cloud_init: {}",
                &format!(
                    "cloud_init: {{}}\n    nebula_binary: {{deb: \"https://x.invalid/n.deb\", sha256: \"{sha}\"}}"
                ),
                1,
            ),
            None,
        );
        assert!(!v["write_files"]
            .as_sequence()
            .expect("write_files")
            .iter()
            .any(|f| f["path"].as_str() == Some(shell::DEB_CACHE)));
        let run = runcmd(&v);
        for part in [
            "curl -fsSL --proto '=https'",
            "https://x.invalid/n.deb",
            &sha,
            "sha256sum -c",
            "apt-get install -y -q",
        ] {
            assert!(run.contains(part), "{part} missing: {run}");
        }
    }
}
