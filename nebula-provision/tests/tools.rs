//! The rendered ADR bundles checked by the tools that will consume them: `nebula -test` (Go 1.11.0,
//! Go 1.6.1, ours), `systemd-analyze verify`/`security`, `ansible-playbook --syntax-check`, `ansible-lint`,
//! cloud-init's schema, a Terraform (HCL2) parser, and nftables loading the edge rules.
#![cfg(all(feature = "netns", feature = "interop"))]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;

fn nebula_test(bin: &Path, what: &str) {
    if !bin.is_file() {
        panic!("{what}: {} not found", bin.display());
    }
    let t = tempfile::tempdir().expect("tempdir");
    let out = render_adr(t.path());
    for h in ADR_HOSTS {
        let o = run(&mut in_bundle_command(&out.join(h), bin, &["-test"]));
        assert!(
            o.status.success(),
            "{what} -test rejected {h}'s config:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn go_nebula_1_11_0_accepts_every_rendered_config() {
    nebula_test(
        Path::new("/opt/go-nebula/1.11.0/usr/bin/nebula"),
        "Go nebula 1.11.0 (install with .ci/install-go-nebula.sh)",
    );
}

#[test]
fn go_nebula_1_6_1_accepts_every_rendered_config() {
    nebula_test(
        Path::new("/usr/bin/nebula"),
        "Go nebula 1.6.1 (Debian package `nebula`)",
    );
}

#[test]
fn our_nebula_accepts_every_rendered_config() {
    nebula_test(
        &our_nebula(),
        "our nebula (NEBULA_BIN or target/debug/nebula)",
    );
}

/// Copies a unit with its ExecStart binary replaced by an existing stub (verify insists that
/// the binary exists); nothing else changes.
fn unit_with_stub(unit: &Path, dir: &Path) -> std::path::PathBuf {
    let stub = dir.join("nebula-stub");
    std::fs::write(&stub, "#!/bin/sh\nexit 0\n").expect("stub");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let text = std::fs::read_to_string(unit).expect("unit");
    assert!(text.contains("ExecStart=/usr/local/bin/nebula "), "{text}");
    let dst = dir.join(unit.file_name().expect("name"));
    std::fs::write(
        &dst,
        text.replace(
            "ExecStart=/usr/local/bin/nebula ",
            &format!("ExecStart={} ", stub.display()),
        ),
    )
    .expect("write");
    dst
}

#[test]
fn systemd_analyze_verifies_the_units_and_rates_them_hardened() {
    let sa = require("systemd-analyze");
    let t = tempfile::tempdir().expect("tempdir");
    let out = render_adr(t.path());
    let mut units = Vec::new();
    for h in ADR_HOSTS {
        let d = t.path().join(format!("units-{h}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        units.push(unit_with_stub(&out.join(h).join("nebula.service"), &d));
    }
    units.push(out.join("kshitiz/nebula-edge.service"));
    // What is verified includes the readiness and watchdog settings.
    let main = std::fs::read_to_string(&units[0]).expect("unit");
    for line in ["Type=notify", "NotifyAccess=main", "WatchdogSec=30s"] {
        assert!(main.lines().any(|l| l == line), "{line} missing:\n{main}");
    }
    for u in &units {
        let o = run(Command::new(&sa).arg("verify").arg(u));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {}: {}\n{stderr}",
            u.display(),
            o.status
        );
    }
    // Exposure 3.0 or better ("OK") on systemd's 0-10 scale.
    let o = run(Command::new(&sa)
        .args(["security", "--offline=yes", "--threshold=30", "--no-pager"])
        .arg(&units[0]));
    assert!(
        o.status.success(),
        "systemd-analyze security rates nebula.service worse than 3.0:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn ansible_playbook_syntax_check_passes() {
    let ap = venv_tool("ansible-playbook");
    let t = tempfile::tempdir().expect("tempdir");
    let out = render_adr(t.path());
    let dir = out.join("ansible");
    let o = run(Command::new(&ap)
        .current_dir(&dir)
        .env("ANSIBLE_LOCAL_TEMP", t.path().join("ansible-tmp"))
        .env("ANSIBLE_HOME", t.path().join("ansible-home"))
        .args(["--syntax-check", "-i", "inventory.yml", "site.yml"]));
    assert!(
        o.status.success(),
        "ansible-playbook --syntax-check failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // The inventory as Ansible reads it: every host, with its bundle variables.
    let inv = ok(Command::new(venv_tool("ansible-inventory"))
        .current_dir(&dir)
        .env("ANSIBLE_LOCAL_TEMP", t.path().join("ansible-tmp"))
        .env("ANSIBLE_HOME", t.path().join("ansible-home"))
        .args(["-i", "inventory.yml", "--list"]));
    let v: serde_json::Value = serde_json::from_str(&inv).expect("json");
    for h in ADR_HOSTS {
        assert!(
            v["_meta"]["hostvars"][h]["nebula_binary_path"].is_string(),
            "{h}: {inv}"
        );
    }
    assert_eq!(
        v["_meta"]["hostvars"]["kshitiz"]["nebula_edge"],
        serde_json::json!(true)
    );
    assert_eq!(
        v["_meta"]["hostvars"]["kshitiz"]["ansible_host"],
        serde_json::json!("203.0.113.10")
    );
    // Hosts outside the mesh get no nebula role.
    for h in ADR_NON_MEMBERS {
        assert!(v["_meta"]["hostvars"].get(h).is_none(), "{h}: {inv}");
    }
}

/// ansible-lint at its default settings (every rule of the default profile, yamllint included)
/// finds nothing in the rendered tree. Offline: no collection installs, no version or schema
/// checks over the network.
#[test]
fn ansible_lint_passes_on_the_rendered_tree() {
    let lint = venv_tool("ansible-lint");
    let t = tempfile::tempdir().expect("tempdir");
    let out = render_adr(t.path());
    let dir = out.join("ansible");
    let o = run(Command::new(&lint)
        .current_dir(&dir)
        .env("ANSIBLE_LOCAL_TEMP", t.path().join("ansible-tmp"))
        .env("ANSIBLE_HOME", t.path().join("ansible-home"))
        .env("SKIP_SCHEMA_UPDATE", "1")
        .env("NO_COLOR", "1")
        .args(["--offline", "--nocolor", "--strict"]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "ansible-lint failed:\n{text}");
    // It really looked at the role (not an empty match).
    assert!(text.contains("0 failure(s), 0 warning(s)"), "{text}");
    assert!(!text.contains(" 0 files processed"), "{text}");
}

/// The ADR inventory with `nebula_binary.deb`: a local package (embedded in the user data) for
/// vyom-ingress-1, a URL for vyom-ingress-2. Returns the output directory.
fn render_adr_with_debs(dir: &Path) -> std::path::PathBuf {
    let inv = adr_inventory_copy(dir);
    let text = std::fs::read_to_string(&inv).expect("inventory");
    let mut v: serde_norway::Value = serde_norway::from_str(&text).expect("yaml");
    let deb = dir.join("nebula-rs_0.0.1_amd64.deb");
    std::fs::write(&deb, b"!<arch>\nnot a real package, only carried\n").expect("deb");
    let local: serde_norway::Value = serde_norway::from_str(&format!(
        "{{deb: {}, path: /usr/bin/nebula}}",
        deb.display()
    ))
    .expect("yaml");
    let url: serde_norway::Value = serde_norway::from_str(&format!(
        "{{deb: \"https://example.invalid/nebula-rs_0.0.1_amd64.deb\", sha256: \"{}\", path: /usr/bin/nebula}}",
        "ab".repeat(32)
    ))
    .expect("yaml");
    for (h, b) in [("vyom-ingress-1", local), ("vyom-ingress-2", url)] {
        v["hosts"][h]
            .as_mapping_mut()
            .expect("host mapping")
            .insert("nebula_binary".into(), b);
    }
    std::fs::write(&inv, serde_norway::to_string(&v).expect("yaml")).expect("write");
    let out = dir.join("out");
    render(&inv, &out);
    let ud = std::fs::read_to_string(out.join("vyom-ingress-1/user-data")).expect("user-data");
    assert!(
        ud.contains("/var/cache/nebula-provision/nebula-rs.deb"),
        "{ud}"
    );
    out
}

#[test]
fn cloud_init_schema_accepts_the_user_data() {
    let py = venv_tool("python");
    let ci = Path::new(TOOLS_VENV).join("cloud-init/usr/lib/python3/dist-packages");
    if !ci.join("cloudinit").is_dir() {
        panic!(
            "cloud-init's code is missing at {}; run nebula-provision/tests/install-test-deps.sh",
            ci.display()
        );
    }
    let t = tempfile::tempdir().expect("tempdir");
    let out = render_adr(t.path());
    let with_debs = render_adr_with_debs(&t.path().join("debs"));
    // Members' (the bundle) and non-members' (hostname, keys, agent) user-data, and members'
    // with a .deb (embedded, or downloaded).
    let members = ["vyom-ingress-1", "vyom-ingress-2"];
    for (out, h) in members
        .into_iter()
        .chain(ADR_NON_MEMBERS)
        .map(|h| (&out, h))
        .chain(members.into_iter().map(|h| (&with_debs, h)))
    {
        let ud = out.join(h).join("user-data");
        let o = run(Command::new(&py)
            .env("PYTHONPATH", &ci)
            .args(["-m", "cloudinit.cmd.main", "schema", "--config-file"])
            .arg(&ud));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success() && text.contains("Valid cloud-config"),
            "{h}: {text}"
        );
    }
    assert!(!out.join("kshitiz/user-data").exists());
}

#[test]
fn terraform_parses_and_opens_only_what_the_adr_allows() {
    let py = venv_tool("python");
    let t = tempfile::tempdir().expect("tempdir");
    let out = render_adr(t.path());
    let tf = out.join("terraform/kshitiz/main.tf");
    let json = ok(Command::new(&py)
        .arg("-c")
        .arg("import hcl2, json, sys\nprint(json.dumps(hcl2.load(open(sys.argv[1]))))")
        .arg(&tf));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let unq = |v: &serde_json::Value| v.to_string().replace(['"', '\\'], "");
    let mut ports = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for r in v["resource"].as_array().expect("resources") {
        for (kind, body) in r.as_object().expect("object") {
            kinds.insert(kind.trim_matches(|c| c == '"' || c == '\\').to_string());
            if kind.contains("aws_lightsail_instance_public_ports") {
                for (_, b) in body.as_object().expect("named") {
                    for p in b["port_info"].as_array().expect("port_info") {
                        let cidrs: Vec<String> = p["cidrs"]
                            .as_array()
                            .expect("cidrs")
                            .iter()
                            .map(unq)
                            .collect();
                        ports.insert(format!(
                            "{}/{}-{} from {}",
                            unq(&p["protocol"]),
                            p["from_port"],
                            p["to_port"],
                            cidrs.join(",")
                        ));
                    }
                }
            }
        }
    }
    let want: BTreeSet<String> = [
        "udp/4242-4242 from 0.0.0.0/0",
        "tcp/22-22 from 198.51.100.7/32",
        "tcp/80-80 from 0.0.0.0/0",
        "tcp/443-443 from 0.0.0.0/0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(ports, want, "{json}");
    for k in [
        "aws_lightsail_instance",
        "aws_lightsail_static_ip",
        "aws_lightsail_static_ip_attachment",
        "aws_lightsail_instance_public_ports",
    ] {
        assert!(kinds.contains(k), "{k} missing: {kinds:?}");
    }
}

#[test]
fn nftables_loads_the_edge_rules_in_a_namespace() {
    require_root();
    let ip = require("ip");
    let nft = require("nft");
    let t = tempfile::tempdir().expect("tempdir");
    let out = render_adr(t.path());
    let ns = format!("npnft{}", std::process::id());
    ok(Command::new(&ip).args(["netns", "add", &ns]));
    struct Del(String, std::path::PathBuf);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new(&self.1)
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let _guard = Del(ns.clone(), ip.clone());
    let rules = out.join("kshitiz/nebula-edge.nft");
    // Twice: the file must replace its own table, not fail on reload.
    for _ in 0..2 {
        ok(Command::new(&ip)
            .args(["netns", "exec", &ns])
            .arg(&nft)
            .arg("-f")
            .arg(&rules));
    }
    let listed = ok(Command::new(&ip)
        .args(["netns", "exec", &ns])
        .arg(&nft)
        .args(["list", "table", "ip", "nebula_edge"]));
    assert!(
        listed.contains("dnat to numgen inc mod 2 map { 0 : 10.10.0.11, 1 : 10.10.0.12 }"),
        "{listed}"
    );
    assert!(listed.contains("masquerade"), "{listed}");
    assert_eq!(listed.matches("dport 443").count(), 1, "{listed}");
}

/// Parses a Terraform file with python-hcl2 into JSON.
fn hcl_json(tf: &Path) -> serde_json::Value {
    let json = ok(Command::new(venv_tool("python"))
        .arg("-c")
        .arg("import hcl2, json, sys\nprint(json.dumps(hcl2.load(open(sys.argv[1]))))")
        .arg(tf));
    serde_json::from_str(&json).expect("json")
}

/// `"\"x\""` -> `x` (python-hcl2 keeps the quotes of labels and string values).
fn unq(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.trim_matches('"').to_string(),
        other => other.to_string(),
    }
}

/// python-hcl2's own keys (`__is_block__`, `__comments__`, ...), not HCL names.
fn is_hcl2_meta(k: &str) -> bool {
    k.len() > 4 && k.starts_with("__") && k.ends_with("__")
}

fn is_block_list(v: &serde_json::Value) -> bool {
    v.as_array().is_some_and(|a| {
        !a.is_empty()
            && a.iter()
                .all(|b| b.get("__is_block__") == Some(&serde_json::json!(true)))
    })
}

/// Walks one block body against its schema facts node ({attributes, blocks}); every unknown name
/// is pushed to `bad` with its path.
fn walk(body: &serde_json::Value, schema: &serde_json::Value, path: &str, bad: &mut Vec<String>) {
    let Some(map) = body.as_object() else {
        bad.push(format!("{path}: not a block body"));
        return;
    };
    for (k, v) in map {
        if is_hcl2_meta(k) {
            continue;
        }
        let p = format!("{path}.{k}");
        if is_block_list(v) {
            match schema["blocks"].get(k) {
                Some(s) => {
                    for b in v.as_array().into_iter().flatten() {
                        walk(b, s, &p, bad);
                    }
                }
                None => bad.push(format!("block {p}")),
            }
        } else if schema["attributes"].get(k).is_none() {
            bad.push(format!("attribute {p}"));
        }
    }
}

/// Every `type.name.attr` reference to a provider resource (and `data.type.name.attr`) in `text`.
fn references(text: &str) -> Vec<(bool, String, String)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("proxmox_virtual_environment_") {
        let data = text[..i].ends_with("data.");
        let rest: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() >= 3 {
            out.push((data, parts[0].to_string(), parts[2].to_string()));
        }
    }
    out
}

/// What a walk over `terraform/<dir>/` found: unknown names, and the VM, file and variable bodies.
#[derive(Default)]
struct Walked {
    bad: Vec<String>,
    vms: std::collections::BTreeMap<String, serde_json::Value>,
    files: std::collections::BTreeMap<String, serde_json::Value>,
    variables: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Parses every rendered `.tf` of `dir` and walks it against the schema facts.
fn walk_terraform_dir(dir: &Path, facts: &serde_json::Value) -> Walked {
    let mut w = Walked::default();
    let (bad, vms, files, variables) = (&mut w.bad, &mut w.vms, &mut w.files, &mut w.variables);
    for f in ["versions.tf", "variables.tf", "main.tf", "outputs.tf"] {
        let path = dir.join(f);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!text.contains("PRIVATE KEY"), "{f} holds a key");
        let v = hcl_json(&path);
        for (kind, items) in v.as_object().expect("top level") {
            if is_hcl2_meta(kind) {
                continue;
            }
            for item in items.as_array().expect("list") {
                match kind.as_str() {
                    "terraform" => walk(item, &facts["language"]["terraform"], "terraform", bad),
                    "provider" | "variable" | "output" => {
                        for (label, body) in item.as_object().expect("labelled") {
                            let schema = if kind == "provider" {
                                assert_eq!(unq(&serde_json::json!(label)), "proxmox");
                                &facts["provider_block"]
                            } else {
                                &facts["language"][kind.as_str()]
                            };
                            walk(body, schema, &format!("{kind}.{label}"), bad);
                            if kind == "variable" {
                                variables.insert(unq(&serde_json::json!(label)), body.clone());
                            }
                        }
                    }
                    "resource" | "data" => {
                        let group = if kind == "resource" {
                            "resources"
                        } else {
                            "data_sources"
                        };
                        for (ty, named) in item.as_object().expect("typed") {
                            let ty = unq(&serde_json::json!(ty));
                            let Some(schema) = facts[group].get(&ty) else {
                                bad.push(format!("{kind} type {ty}"));
                                continue;
                            };
                            for (name, body) in named.as_object().expect("named") {
                                let name = unq(&serde_json::json!(name));
                                walk(body, schema, &format!("{ty}.{name}"), bad);
                                match ty.as_str() {
                                    "proxmox_virtual_environment_vm" => {
                                        vms.insert(name, body.clone());
                                    }
                                    "proxmox_virtual_environment_file" => {
                                        files.insert(name, body.clone());
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                    other => bad.push(format!("top-level {other}")),
                }
            }
        }
        // Attributes read from other resources are ones the provider exports.
        for (data, ty, attr) in references(&text) {
            let group = if data { "data_sources" } else { "resources" };
            let known = facts[group][&ty]["exported"].get(&attr).is_some()
                || facts[group][&ty]["attributes"].get(&attr).is_some();
            if !known {
                bad.push(format!("{f}: reference {ty}.*.{attr}"));
            }
        }
    }
    // Terraform itself agrees on the syntax and layout, when it is installed.
    if let Some(tf) = terraform_on_path() {
        let o =
            run(Command::new(&tf)
                .current_dir(dir)
                .args(["fmt", "-check", "-diff", "-no-color"]));
        assert!(
            o.status.success(),
            "terraform fmt -check {}:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        println!("SKIPPED: terraform fmt -check (no terraform on PATH)");
    }
    w
}

fn terraform_on_path() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("terraform"))
            .find(|c| c.is_file())
    })
}

#[test]
fn proxmox_terraform_uses_only_documented_provider_schema() {
    let facts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/bpg-proxmox.json"),
        )
        .expect("schema/bpg-proxmox.json"),
    )
    .expect("schema facts JSON");
    let t = tempfile::tempdir().expect("tempdir");
    let out = render_adr(t.path());
    let dir = out.join("terraform/vyom");
    let Walked {
        bad,
        vms,
        files,
        variables,
    } = walk_terraform_dir(&dir, &facts);
    assert!(bad.is_empty(), "not in schema/bpg-proxmox.json: {bad:#?}");

    // The API token is sensitive and never has a value in the files.
    assert_eq!(
        variables["proxmox_api_token"]["sensitive"],
        serde_json::json!(true)
    );
    assert!(variables["proxmox_api_token"].get("default").is_none());

    // The ADR's VMs: full clones of 9000, sized by the ADR table, static addresses, snippets.
    let want = [
        ("vyom-ingress-1", 211, 2, 2048, 32, "192.168.68.211/20"),
        ("vyom-ingress-2", 212, 2, 2048, 32, "192.168.68.212/20"),
        ("vyom-k3s-cp-1", 221, 4, 8192, 64, "192.168.68.221/20"),
        ("vyom-k3s-worker-1", 222, 4, 16384, 128, "192.168.68.222/20"),
        ("vyom-k3s-worker-2", 223, 4, 16384, 128, "192.168.68.223/20"),
    ];
    assert_eq!(vms.len(), want.len(), "{:?}", vms.keys());
    for (host, vm_id, cores, memory, disk, address) in want {
        let id = host.replace('-', "_");
        let vm = &vms[&id];
        let ctx = format!("{host}: {vm}");
        assert_eq!(unq(&vm["name"]), host, "{ctx}");
        assert_eq!(unq(&vm["node_name"]), "vyom", "{ctx}");
        assert_eq!(vm["vm_id"], serde_json::json!(vm_id), "{ctx}");
        assert_eq!(vm["clone"][0]["vm_id"], serde_json::json!(9000), "{ctx}");
        assert_eq!(vm["clone"][0]["full"], serde_json::json!(true), "{ctx}");
        assert_eq!(vm["agent"][0]["enabled"], serde_json::json!(true), "{ctx}");
        assert_eq!(vm["cpu"][0]["cores"], serde_json::json!(cores), "{ctx}");
        assert_eq!(
            vm["memory"][0]["dedicated"],
            serde_json::json!(memory),
            "{ctx}"
        );
        assert_eq!(vm["disk"][0]["size"], serde_json::json!(disk), "{ctx}");
        assert_eq!(unq(&vm["disk"][0]["interface"]), "scsi0", "{ctx}");
        assert_eq!(unq(&vm["network_device"][0]["bridge"]), "vmbr0", "{ctx}");
        let init = &vm["initialization"][0];
        let ipv4 = &init["ip_config"][0]["ipv4"][0];
        assert_eq!(unq(&ipv4["address"]), address, "{ctx}");
        assert_eq!(unq(&ipv4["gateway"]), "192.168.68.1", "{ctx}");
        assert_eq!(
            unq(&init["user_data_file_id"]),
            format!("${{proxmox_virtual_environment_file.user_data_{id}.id}}"),
            "{ctx}"
        );
        let file = &files[&format!("user_data_{id}")];
        assert_eq!(unq(&file["content_type"]), "snippets", "{file}");
        assert_eq!(unq(&file["datastore_id"]), "local", "{file}");
        let src = unq(&file["source_file"][0]["path"]);
        assert_eq!(src, format!("${{path.module}}/../../{host}/user-data"));
        // The path resolves, from the Terraform folder, to the host's rendered user-data.
        let ud = dir.join(src.replace("${path.module}/", ""));
        let text = std::fs::read_to_string(&ud).unwrap_or_else(|e| panic!("{}: {e}", ud.display()));
        assert!(text.starts_with("#cloud-config\n"), "{text}");
        assert!(text.contains(&format!("hostname: {host}")), "{text}");
        // Members' user-data installs the bundle (with the key); the K3s VMs' has no Nebula.
        assert_eq!(
            text.contains("path: /etc/nebula/host.key"),
            host.contains("ingress"),
            "{host}: {text}"
        );
    }

    // The forms the ADR does not use (template by name, VLAN, DNS, template on another node)
    // stay inside the schema facts too.
    let inv = t.path().join("config/adr-inventory.yml");
    let text = std::fs::read_to_string(&inv).expect("inventory");
    let variant = text.replacen("vm_id: 9000", "node_name: vyom2", 1);
    assert_ne!(variant, text, "the ADR template has a vm_id");
    let variant = variant.replacen(
        "bridge: vmbr0",
        "bridge: vmbr0\n  vlan_id: 30\n  dns: {servers: [192.168.68.1], domain: home.arpa}",
        1,
    );
    let vdir = t.path().join("variant");
    std::fs::create_dir_all(vdir.join("config")).expect("mkdir");
    std::fs::write(vdir.join("config/adr-inventory.yml"), variant).expect("write");
    render(&vdir.join("config/adr-inventory.yml"), &vdir.join("out"));
    let v = walk_terraform_dir(&vdir.join("out/terraform/vyom"), &facts);
    assert!(
        v.bad.is_empty(),
        "not in schema/bpg-proxmox.json: {:#?}",
        v.bad
    );
    let vm = &v.vms["vyom_k3s_cp_1"];
    assert_eq!(
        vm["network_device"][0]["vlan_id"],
        serde_json::json!(30),
        "{vm}"
    );
    assert_eq!(
        unq(&vm["initialization"][0]["dns"][0]["domain"]),
        "home.arpa",
        "{vm}"
    );
    assert!(
        unq(&vm["clone"][0]["vm_id"]).contains(
            "data.proxmox_virtual_environment_vms.template_prakriti_template_vyom2.vms[0].vm_id"
        ),
        "{vm}"
    );

    // `terraform validate` needs the provider; without it this says so and skips that part.
    let terraform = terraform_on_path();
    let plugins = std::env::var_os("NEBULA_PROVISION_TF_PLUGIN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/opt/tf-plugins"));
    // A plugin dir is laid out <registry host>/<namespace>/<type>/...: any host will do.
    let has_provider = std::fs::read_dir(&plugins)
        .into_iter()
        .flatten()
        .flatten()
        .any(|host| host.path().join("bpg/proxmox").is_dir());
    match (terraform, has_provider) {
        (Some(tf), true) => {
            ok(Command::new(&tf)
                .current_dir(&dir)
                .arg("init")
                .arg("-backend=false")
                .arg("-input=false")
                .arg(format!("-plugin-dir={}", plugins.display())));
            let o = ok(Command::new(&tf).current_dir(&dir).args(["validate", "-no-color"]));
            assert!(o.contains("Success"), "{o}");
        }
        (tf, _) => println!(
            "SKIPPED: terraform validate of terraform/vyom/ ({}; the schema-facts checks above ran)",
            if tf.is_none() {
                "no terraform on PATH".to_string()
            } else {
                format!(
                    "the bpg/proxmox provider is not in {} (set NEBULA_PROVISION_TF_PLUGIN_DIR)",
                    plugins.display()
                )
            }
        ),
    }
}
