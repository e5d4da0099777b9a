//! The Ansible tree under `ansible/`: an inventory of the mesh hosts (with per-host variables
//! taken from the same inventory), a `site.yml` playbook (lighthouses first) and a `nebula` role that
//! installs the binary and the host's rendered bundle, enables the service and checks it is up
//! (where systemd runs the host: `nebula_manage_service`).

use std::path::PathBuf;

use serde_norway::{Mapping, Value};

use crate::model::{BinarySource, DebSource, Mesh};
use crate::render::{inventory_name, is_edge, names, OutFile, ETC_DIR, UNIT_DIR};

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn b(v: bool) -> Value {
    Value::Bool(v)
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

fn seq(v: Vec<Value>) -> Value {
    Value::Sequence(v)
}

fn yaml(header: &str, v: &Value) -> String {
    let mut body = String::new();
    emit(v, 0, &mut body);
    format!("---\n# {header}\n{body}")
}

/// One scalar as YAML (quoted where YAML needs it); multi-line strings as JSON, which is YAML.
fn scalar(v: &Value) -> String {
    let text = serde_norway::to_string(v).unwrap_or_default();
    let text = text.trim_end_matches('\n');
    if text.contains('\n') {
        serde_json::to_string(v).unwrap_or_default()
    } else {
        text.to_string()
    }
}

/// Block-style YAML with sequences indented under their keys (ansible-lint's yamllint settings;
/// serde's emitter puts them at the key's column).
fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, val) in m {
                out.push_str(&format!("{pad}{}:", scalar(k)));
                emit_value_after_key(val, indent, out);
            }
        }
        Value::Sequence(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&format!("{pad}- "));
                match item {
                    Value::Mapping(m) if !m.is_empty() => {
                        // First entry on the dash's line, the rest aligned under it.
                        let mut first = true;
                        for (k, val) in m {
                            if !first {
                                out.push_str(&format!("{pad}  "));
                            }
                            first = false;
                            out.push_str(&format!("{}:", scalar(k)));
                            emit_value_after_key(val, indent + 2, out);
                        }
                    }
                    Value::Sequence(s) if !s.is_empty() => {
                        out.push('\n');
                        emit(item, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{}\n", inline(item))),
                }
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", inline(v))),
    }
}

fn emit_value_after_key(val: &Value, indent: usize, out: &mut String) {
    match val {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            emit(val, indent + 2, out);
        }
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            emit(val, indent + 2, out);
        }
        Value::Null => out.push('\n'),
        _ => out.push_str(&format!(" {}\n", inline(val))),
    }
}

/// A scalar or an empty collection on one line.
fn inline(v: &Value) -> String {
    match v {
        Value::Mapping(_) => "{}".into(),
        Value::Sequence(_) => "[]".into(),
        _ => scalar(v),
    }
}

/// Ansible group name for a Nebula group (Ansible wants identifiers).
pub fn group_name(g: &str) -> String {
    let mut out = String::from("nebula_");
    out.extend(
        g.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    out
}

fn inventory(mesh: &Mesh) -> Value {
    let mut hosts = Mapping::new();
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for h in &mesh.hosts {
        let mut vars = Vec::new();
        if let Some(ssh) = &h.ssh {
            vars.push(("ansible_host", s(&ssh.host)));
            vars.push(("ansible_port", Value::Number(ssh.port.into())));
            if let Some(u) = &ssh.user {
                vars.push(("ansible_user", s(u)));
            }
            if let Some(k) = &ssh.identity_file {
                vars.push(("ansible_ssh_private_key_file", s(&k.to_string_lossy())));
            }
            if !ssh.options.is_empty() {
                let opts = ssh
                    .options
                    .iter()
                    .map(|o| format!("-o {o}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                vars.push(("ansible_ssh_extra_args", s(&opts)));
            }
        }
        vars.push(("nebula_binary_path", s(&h.binary.path)));
        match &h.binary.source {
            BinarySource::Preinstalled => vars.push(("nebula_binary_source", s("preinstalled"))),
            BinarySource::Apt(p) => {
                vars.push(("nebula_binary_source", s("apt")));
                vars.push(("nebula_binary_apt", s(p)));
            }
            BinarySource::Url { url, sha256 } => {
                vars.push(("nebula_binary_source", s("url")));
                vars.push(("nebula_binary_url", s(url)));
                vars.push(("nebula_binary_sha256", s(sha256)));
                vars.push((
                    "nebula_binary_tarball",
                    b(url.ends_with(".tar.gz") || url.ends_with(".tgz")),
                ));
            }
            BinarySource::Local(p) => {
                vars.push(("nebula_binary_source", s("local")));
                vars.push(("nebula_binary_local", s(&p.to_string_lossy())));
            }
            BinarySource::Deb(DebSource::Local(p)) => {
                vars.push(("nebula_binary_source", s("deb")));
                vars.push(("nebula_binary_deb", s(&p.to_string_lossy())));
            }
            BinarySource::Deb(DebSource::Url { url, sha256 }) => {
                vars.push(("nebula_binary_source", s("deb")));
                vars.push(("nebula_binary_deb_url", s(url)));
                vars.push(("nebula_binary_sha256", s(sha256)));
            }
        }
        vars.push(("nebula_edge", b(is_edge(mesh, h))));
        vars.push(("nebula_overlay_ip", s(&h.overlay_ip.to_string())));
        hosts.insert(s(&h.name), map(vars));
        let mut gs: Vec<String> = h.groups.iter().map(|g| group_name(g)).collect();
        if h.lighthouse {
            gs.push("nebula_am_lighthouse".into());
        }
        for g in gs {
            groups.entry(g).or_default().push(h.name.clone());
        }
    }
    let mut children = Mapping::new();
    for (g, members) in groups {
        let mut hm = Mapping::new();
        for m in members {
            hm.insert(s(&m), Value::Null);
        }
        children.insert(s(&g), map(vec![("hosts", Value::Mapping(hm))]));
    }
    if !children.contains_key("nebula_am_lighthouse") {
        children.insert(
            s("nebula_am_lighthouse"),
            map(vec![("hosts", Value::Mapping(Mapping::new()))]),
        );
    }
    map(vec![(
        "all",
        map(vec![(
            "children",
            map(vec![(
                "nebula",
                map(vec![
                    ("hosts", Value::Mapping(hosts)),
                    ("children", Value::Mapping(children)),
                ]),
            )]),
        )]),
    )])
}

fn playbook() -> Value {
    let play = |name: &str, hosts: &str| {
        map(vec![
            ("name", s(name)),
            ("hosts", s(hosts)),
            ("become", b(true)),
            ("roles", seq(vec![s("nebula")])),
        ])
    };
    seq(vec![
        play("Nebula lighthouses", "nebula_am_lighthouse"),
        play("Nebula hosts", "nebula:!nebula_am_lighthouse"),
    ])
}

fn task(name: &str, module: &str, args: Value, extra: Vec<(&str, Value)>) -> Value {
    let mut e = vec![("name", s(name)), (module, args)];
    e.extend(extra);
    map(e)
}

fn copy_file(file: &str, dest: &str, mode: &str, handler: &str, when: Option<&str>) -> Value {
    let mut extra = vec![("notify", s(handler))];
    if let Some(w) = when {
        extra.push(("when", s(w)));
    }
    task(
        &format!("Install {dest}"),
        "ansible.builtin.copy",
        map(vec![
            ("src", s(&format!("{{{{ nebula_bundle_dir }}}}/{file}"))),
            ("dest", s(dest)),
            ("owner", s("root")),
            ("group", s("root")),
            ("mode", s(mode)),
        ]),
        extra,
    )
}

fn tasks() -> Value {
    let cache = "/var/cache/nebula-provision";
    let deb = crate::shell::DEB_CACHE;
    let etc = |n: &str| format!("{ETC_DIR}/{n}");
    let unit = |n: &str| format!("{UNIT_DIR}/{n}");
    seq(vec![
        task(
            "Install nebula from apt",
            "ansible.builtin.apt",
            map(vec![
                ("name", s("{{ nebula_binary_apt }}")),
                ("state", s("present")),
                ("update_cache", b(true)),
            ]),
            vec![
                ("when", s("nebula_binary_source == 'apt'")),
                ("notify", s("Restart nebula")),
            ],
        ),
        task(
            "Cache directory for the nebula download",
            "ansible.builtin.file",
            map(vec![
                ("path", s(cache)),
                ("state", s("directory")),
                ("owner", s("root")),
                ("group", s("root")),
                ("mode", s("0700")),
            ]),
            vec![("when", s("nebula_binary_source in ['url', 'deb']"))],
        ),
        task(
            "Download nebula (checked against its SHA-256)",
            "ansible.builtin.get_url",
            map(vec![
                ("url", s("{{ nebula_binary_url }}")),
                ("dest", s(&format!("{cache}/download"))),
                ("checksum", s("sha256:{{ nebula_binary_sha256 }}")),
                ("mode", s("0600")),
            ]),
            vec![("when", s("nebula_binary_source == 'url'"))],
        ),
        task(
            "Unpack nebula from the release archive",
            "ansible.builtin.unarchive",
            map(vec![
                ("src", s(&format!("{cache}/download"))),
                ("dest", s(cache)),
                ("remote_src", b(true)),
                ("include", seq(vec![s("nebula")])),
            ]),
            vec![(
                "when",
                s("nebula_binary_source == 'url' and nebula_binary_tarball"),
            )],
        ),
        task(
            "Install the downloaded nebula binary",
            "ansible.builtin.copy",
            map(vec![
                (
                    "src",
                    s(&format!(
                        "{cache}/{{{{ 'nebula' if nebula_binary_tarball else 'download' }}}}"
                    )),
                ),
                ("dest", s("{{ nebula_binary_path }}")),
                ("remote_src", b(true)),
                ("mode", s("0755")),
            ]),
            vec![
                ("when", s("nebula_binary_source == 'url'")),
                ("notify", s("Restart nebula")),
            ],
        ),
        task(
            "Copy the nebula binary from the control machine",
            "ansible.builtin.copy",
            map(vec![
                ("src", s("{{ nebula_binary_local }}")),
                ("dest", s("{{ nebula_binary_path }}")),
                ("mode", s("0755")),
            ]),
            vec![
                ("when", s("nebula_binary_source == 'local'")),
                ("notify", s("Restart nebula")),
            ],
        ),
        task(
            "Copy the nebula package from the control machine",
            "ansible.builtin.copy",
            map(vec![
                ("src", s("{{ nebula_binary_deb }}")),
                ("dest", s(deb)),
                ("owner", s("root")),
                ("group", s("root")),
                ("mode", s("0644")),
            ]),
            vec![(
                "when",
                s("nebula_binary_source == 'deb' and nebula_binary_deb is defined"),
            )],
        ),
        task(
            "Download the nebula package (checked against its SHA-256)",
            "ansible.builtin.get_url",
            map(vec![
                ("url", s("{{ nebula_binary_deb_url }}")),
                ("dest", s(deb)),
                ("checksum", s("sha256:{{ nebula_binary_sha256 }}")),
                ("owner", s("root")),
                ("group", s("root")),
                ("mode", s("0644")),
            ]),
            vec![(
                "when",
                s("nebula_binary_source == 'deb' and nebula_binary_deb_url is defined"),
            )],
        ),
        task(
            "Install the nebula package (unless this version is installed)",
            "ansible.builtin.apt",
            map(vec![("deb", s(deb))]),
            vec![
                ("when", s("nebula_binary_source == 'deb'")),
                ("notify", s("Restart nebula")),
            ],
        ),
        task(
            &format!("Bundle directory {ETC_DIR}"),
            "ansible.builtin.file",
            map(vec![
                ("path", s(ETC_DIR)),
                ("state", s("directory")),
                ("owner", s("root")),
                ("group", s("root")),
                ("mode", s("0700")),
            ]),
            vec![],
        ),
        copy_file(
            names::CA_CRT,
            &etc(names::CA_CRT),
            "0644",
            "Reload nebula",
            None,
        ),
        copy_file(
            names::HOST_CRT,
            &etc(names::HOST_CRT),
            "0644",
            "Reload nebula",
            None,
        ),
        copy_file(
            names::HOST_KEY,
            &etc(names::HOST_KEY),
            "0600",
            "Reload nebula",
            None,
        ),
        copy_file(
            names::CONFIG,
            &etc(names::CONFIG),
            "0644",
            "Restart nebula",
            None,
        ),
        copy_file(
            names::SERVICE,
            &unit(names::SERVICE),
            "0644",
            "Restart nebula",
            None,
        ),
        copy_file(
            names::EDGE_NFT,
            &etc(names::EDGE_NFT),
            "0644",
            "Restart nebula-edge",
            Some("nebula_edge"),
        ),
        copy_file(
            names::EDGE_SERVICE,
            &unit(names::EDGE_SERVICE),
            "0644",
            "Restart nebula-edge",
            Some("nebula_edge"),
        ),
        task(
            "Say that services are left alone without systemd",
            "ansible.builtin.debug",
            map(vec![(
                "msg",
                s("Units installed; nebula not started: service manager {{ ansible_facts['service_mgr'] | default('?') }} is not systemd (nebula_manage_service)"),
            )]),
            vec![("when", s("not (nebula_manage_service | bool)"))],
        ),
        task(
            "Enable and start nebula",
            "ansible.builtin.systemd",
            map(vec![
                ("name", s(names::SERVICE)),
                ("enabled", b(true)),
                ("state", s("started")),
                ("daemon_reload", b(true)),
            ]),
            vec![("when", s("nebula_manage_service | bool"))],
        ),
        task(
            "Enable and start edge forwarding",
            "ansible.builtin.systemd",
            map(vec![
                ("name", s(names::EDGE_SERVICE)),
                ("enabled", b(true)),
                ("state", s("started")),
            ]),
            vec![("when", s("nebula_edge and (nebula_manage_service | bool)"))],
        ),
        task(
            "Apply pending restarts",
            "ansible.builtin.meta",
            s("flush_handlers"),
            vec![],
        ),
        task(
            "Check that nebula is running",
            "ansible.builtin.systemd",
            map(vec![("name", s(names::SERVICE))]),
            vec![
                ("register", s("nebula_state")),
                ("retries", Value::Number(10.into())),
                ("delay", Value::Number(2.into())),
                ("until", s("nebula_state.status.ActiveState == 'active'")),
                ("when", s("nebula_manage_service | bool")),
            ],
        ),
    ])
}

fn handlers() -> Value {
    let h = |name: &str, unit: &str, state: &str| {
        let mut args = vec![("name", s(unit)), ("state", s(state))];
        if state == "restarted" {
            args.push(("daemon_reload", b(true)));
        }
        task(
            name,
            "ansible.builtin.systemd",
            map(args),
            vec![("when", s("nebula_manage_service | bool"))],
        )
    };
    seq(vec![
        h("Restart nebula", names::SERVICE, "restarted"),
        h("Reload nebula", names::SERVICE, "reloaded"),
        h("Restart nebula-edge", names::EDGE_SERVICE, "restarted"),
    ])
}

fn defaults() -> Value {
    map(vec![
        (
            "nebula_bundle_dir",
            s("{{ playbook_dir }}/../{{ inventory_hostname }}"),
        ),
        ("nebula_binary_path", s("/usr/local/bin/nebula")),
        ("nebula_binary_source", s("preinstalled")),
        ("nebula_binary_tarball", b(false)),
        ("nebula_edge", b(false)),
        // Enable, start, restart and check nebula only where systemd runs the host (not in a
        // chroot or a container without it); the files are installed either way.
        (
            "nebula_manage_service",
            s("{{ ansible_facts['service_mgr'] | default('') == 'systemd' }}"),
        ),
    ])
}

/// The files under `ansible/`.
pub fn files(mesh: &Mesh) -> Vec<OutFile> {
    let inv = inventory_name(mesh);
    let hdr = |what: &str| format!("{what}, rendered by nebula-provision from {inv}. Do not edit.");
    let f = |rel: &str, text: String| OutFile {
        rel: PathBuf::from("ansible").join(rel),
        contents: Some(text.into_bytes()),
        mode: 0o644,
    };
    vec![
        f(
            "ansible.cfg",
            format!(
                "# Ansible settings for the nebula playbook, rendered by nebula-provision from {inv}.\n\
                 [defaults]\ninventory = inventory.yml\nroles_path = roles\n"
            ),
        ),
        f(
            "inventory.yml",
            yaml(&hdr("Nebula mesh hosts"), &inventory(mesh)),
        ),
        f(
            "site.yml",
            yaml(
                &hdr("Installs each host's bundle (../<host>/); run: ansible-playbook site.yml"),
                &playbook(),
            ),
        ),
        f(
            "roles/nebula/tasks/main.yml",
            yaml(&hdr("nebula role tasks"), &tasks()),
        ),
        f(
            "roles/nebula/handlers/main.yml",
            yaml(&hdr("nebula role handlers"), &handlers()),
        ),
        f(
            "roles/nebula/defaults/main.yml",
            yaml(&hdr("nebula role defaults"), &defaults()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mesh_in, INV};

    fn parse(text: &str) -> Value {
        serde_norway::from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
    }

    #[test]
    fn emitted_yaml_reads_back_as_the_same_values_with_indented_sequences() {
        let tricky = map(vec![
            ("plain", s("word")),
            ("quoted", s("it's: a \"test\" # not a comment")),
            ("looks_bool", s("true")),
            ("looks_octal", s("0644")),
            ("jinja", s("{{ x }}")),
            ("star", s("*alias")),
            ("empty", s("")),
            ("lines", s("one\ntwo")),
            ("n", Value::Number(7.into())),
            ("flag", b(false)),
            ("none", Value::Null),
            ("no_map", Value::Mapping(Mapping::new())),
            ("no_seq", seq(vec![])),
            (
                "nested",
                seq(vec![
                    map(vec![("a", s("1")), ("b", seq(vec![s("x"), s("y")]))]),
                    seq(vec![s("inner")]),
                    s("z"),
                ]),
            ),
        ]);
        let text = yaml("header", &tricky);
        assert!(text.starts_with("---\n# header\n"), "{text}");
        assert_eq!(parse(&text), tricky, "{text}");
        assert!(text.contains("\n  - a: '1'\n    b:\n      - x\n"), "{text}");
        for v in [tasks(), handlers(), playbook(), defaults()] {
            assert_eq!(parse(&yaml("h", &v)), v);
        }
        let t = tempfile::tempdir().expect("tempdir");
        let m = mesh_in(t.path(), INV);
        assert_eq!(parse(&yaml("h", &inventory(&m))), inventory(&m));
    }

    #[test]
    fn deb_hosts_get_the_package_and_services_wait_for_systemd() {
        let t = tempfile::tempdir().expect("tempdir");
        let sha = "ef".repeat(32);
        let text = INV
            .replacen(
                "    lightsail:",
                &format!("    nebula_binary: {{deb: \"https://x.invalid/n.deb\", sha256: \"{sha}\"}}\n    lightsail:"),
                1,
            )
            .replacen(
                "cloud_init: {}",
                "cloud_init: {}\n    nebula_binary: {deb: nebula-rs_1_amd64.deb}",
                1,
            );
        let m = mesh_in(t.path(), &text);
        let inv = inventory(&m);
        let hosts = &inv["all"]["children"]["nebula"]["hosts"];
        assert_eq!(hosts["web1"]["nebula_binary_source"], s("deb"));
        assert_eq!(
            hosts["web1"]["nebula_binary_deb"],
            s(&t.path().join("nebula-rs_1_amd64.deb").to_string_lossy())
        );
        assert_eq!(hosts["web1"]["nebula_binary_path"], s("/usr/bin/nebula"));
        assert_eq!(
            hosts["lh"]["nebula_binary_deb_url"],
            s("https://x.invalid/n.deb")
        );
        assert_eq!(hosts["lh"]["nebula_binary_sha256"], s(&sha));
        assert!(hosts["lh"].get("nebula_binary_deb").is_none());
        assert_eq!(hosts["web2"]["nebula_binary_source"], s("preinstalled"));

        let tasks = tasks();
        let list = tasks.as_sequence().expect("tasks");
        let named = |n: &str| {
            list.iter()
                .find(|t| t["name"].as_str() == Some(n))
                .unwrap_or_else(|| panic!("no task {n}"))
        };
        let install = named("Install the nebula package (unless this version is installed)");
        assert_eq!(
            install["ansible.builtin.apt"]["deb"],
            s(crate::shell::DEB_CACHE)
        );
        assert_eq!(install["notify"], s("Restart nebula"));
        // The package lands where the install task reads it, from either source.
        for n in [
            "Copy the nebula package from the control machine",
            "Download the nebula package (checked against its SHA-256)",
        ] {
            let t = named(n);
            let module = if n.starts_with("Copy") {
                "ansible.builtin.copy"
            } else {
                "ansible.builtin.get_url"
            };
            assert_eq!(t[module]["dest"], s(crate::shell::DEB_CACHE), "{n}");
        }
        // Every task that talks to systemd is gated; so are the handlers.
        for t in list
            .iter()
            .chain(handlers().as_sequence().expect("handlers"))
        {
            if t.get("ansible.builtin.systemd").is_some() {
                let when = t["when"].as_str().unwrap_or_default();
                assert!(when.contains("nebula_manage_service | bool"), "{t:?}");
            }
        }
        assert!(defaults()["nebula_manage_service"]
            .as_str()
            .is_some_and(|d| d.contains("service_mgr") && d.contains("systemd")));
    }
}
