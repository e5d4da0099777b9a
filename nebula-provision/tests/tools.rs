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
    ok(Command::new(provision_bin())
        .args(["render", "--inventory"])
        .arg(&inv)
        .arg("--out")
        .arg(&out)
        .env("NEBULA_CA_PASSPHRASE", PASSPHRASE));
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
    for (out, h) in [
        (&out, "vyom-ingress-1"),
        (&out, "vyom-ingress-2"),
        (&with_debs, "vyom-ingress-1"),
        (&with_debs, "vyom-ingress-2"),
    ] {
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
