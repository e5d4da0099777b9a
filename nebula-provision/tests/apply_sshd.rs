//! `apply` against a real OpenSSH server started by the test on a loopback port (throwaway host key,
//! authorized key made here), installing into throwaway root directories, with `systemctl` replaced
//! by a stub script that records every call and keeps a little unit state.
#![cfg(all(feature = "netns", feature = "interop"))]

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::sshd::start_sshd;
use common::*;

/// A systemctl stand-in: logs its arguments to `<dir>/log`, remembers enabled/active units as
/// marker files, and reports `failed` for is-active when `<dir>/fail` exists.
fn systemctl_stub(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("stub dir");
    let p = dir.join("systemctl");
    std::fs::write(
        &p,
        r#"#!/bin/sh
d=$(dirname "$0")
echo "$*" >> "$d/log"
verb=$1; shift
case "$verb" in
  is-enabled) if [ -f "$d/enabled-$1" ]; then echo enabled; else echo disabled; exit 1; fi ;;
  is-active)
    if [ -f "$d/fail" ]; then echo failed; exit 3; fi
    if [ -f "$d/active-$1" ]; then echo active; else echo inactive; exit 3; fi ;;
  enable)
    now=0
    for a in "$@"; do
      case "$a" in --now) now=1 ;; *) touch "$d/enabled-$a"; [ $now = 1 ] && touch "$d/active-$a" ;; esac
    done ;;
  start|restart|reload) touch "$d/active-$1" ;;
  daemon-reload) ;;
  *) echo "stub: unexpected $verb" >&2; exit 1 ;;
esac
exit 0
"#,
    )
    .expect("stub");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

fn log(stub_dir: &Path) -> String {
    std::fs::read_to_string(stub_dir.join("log")).unwrap_or_default()
}

/// Log lines that change something (not the probes).
fn acting(stub_dir: &Path) -> Vec<String> {
    log(stub_dir)
        .lines()
        .filter(|l| !l.starts_with("is-"))
        .map(str::to_string)
        .collect()
}

fn inventory(dir: &Path, port: u16, mtu: u32, web_groups: &str) -> PathBuf {
    let d = dir.display();
    let text = format!(
        r#"
mesh: {{name: apply-test, network: 10.77.0.0/24, mtu: {mtu}}}
pki: {{dir: pki}}
defaults:
  ssh:
    host: 127.0.0.1
    port: {port}
    user: root
    identity_file: {d}/id
    options: ["UserKnownHostsFile={d}/known_hosts", "StrictHostKeyChecking=yes"]
hosts:
  lh:
    overlay_ip: 10.77.0.1
    groups: [lighthouse]
    lighthouse: true
    public_endpoints: ["192.0.2.1:4242"]
    nebula_binary: {{local: {d}/fake-nebula}}
    ssh: {{remote_root: {d}/root-lh, systemctl: {d}/stub-lh/systemctl}}
  web:
    overlay_ip: 10.77.0.2
    groups: {web_groups}
    cloud_init: {{}}
    ssh: {{remote_root: {d}/root-web, systemctl: {d}/stub-web/systemctl}}
firewall:
  allow:
    - {{from: {{host: lh}}, to: {{group: web}}, proto: tcp, port: 443}}
edge_forwarding: {{host: lh, ports: [{{port: 443, to: {{group: web}}}}]}}
"#
    );
    let p = dir.join("inventory.yml");
    std::fs::write(&p, text).expect("inventory");
    p
}

fn apply(inv: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let args: Vec<&str> = ["--check-seconds", "2"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    run_apply(inv, out, &args)
}

#[test]
fn apply_installs_over_ssh_then_changes_only_what_changed() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    let sshd = start_sshd(dir, &[]);
    let stub_lh = dir.join("stub-lh");
    let stub_web = dir.join("stub-web");
    systemctl_stub(&stub_lh);
    systemctl_stub(&stub_web);
    std::fs::write(dir.join("fake-nebula"), "#!/bin/sh\necho fake nebula\n").expect("bin");
    let out = dir.join("out");
    let inv = inventory(dir, sshd.port, 1300, "[web]");
    let root_lh = dir.join("root-lh");
    let root_web = dir.join("root-web");

    // 1. Dry run: says what it would do, does nothing (locally or remotely).
    let (okay, text) = apply(&inv, &out, &["--dry-run"]);
    assert!(okay, "{text}");
    assert!(text.contains("CA: would be created"), "{text}");
    assert!(
        text.contains(&format!(
            "would create {}/etc/nebula/config.yml",
            root_lh.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "would create {}/usr/local/bin/nebula",
            root_lh.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "would run: {}/systemctl enable --now nebula.service",
            stub_lh.display()
        )),
        "{text}"
    );
    assert!(text.contains("nebula-edge.service"), "{text}");
    assert!(!out.exists() && !root_lh.exists() && !root_web.exists());
    assert!(acting(&stub_lh).is_empty() && acting(&stub_web).is_empty());

    // 2. The real thing.
    let (okay, text) = apply(&inv, &out, &[]);
    assert!(okay, "{text}");
    for (root, host) in [(&root_lh, "lh"), (&root_web, "web")] {
        let etc = root.join("etc/nebula");
        assert_eq!(mode(&etc), 0o700, "{host}");
        for f in ["config.yml", "ca.crt", "host.crt", "host.key"] {
            assert_eq!(
                std::fs::read(etc.join(f)).expect("installed"),
                std::fs::read(out.join(host).join(f)).expect("bundle"),
                "{host}/{f}"
            );
        }
        assert_eq!(mode(&etc.join("host.key")), 0o600);
        assert_eq!(mode(&etc.join("config.yml")), 0o644);
        assert_eq!(
            std::fs::read(root.join("etc/systemd/system/nebula.service")).expect("unit"),
            std::fs::read(out.join(host).join("nebula.service")).expect("bundle unit")
        );
        assert!(!etc.join("user-data").exists());
    }
    assert!(root_lh.join("etc/nebula/nebula-edge.nft").is_file());
    assert!(root_lh
        .join("etc/systemd/system/nebula-edge.service")
        .is_file());
    assert!(!root_web.join("etc/nebula/nebula-edge.nft").exists());
    let bin = root_lh.join("usr/local/bin/nebula");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(
        std::fs::read(&bin).expect("bin"),
        std::fs::read(dir.join("fake-nebula")).expect("src")
    );
    assert_eq!(
        acting(&stub_lh),
        vec![
            "daemon-reload",
            "enable --now nebula.service",
            "enable --now nebula-edge.service"
        ]
    );
    assert_eq!(
        acting(&stub_web),
        vec!["daemon-reload", "enable --now nebula.service"]
    );
    assert!(log(&stub_web).contains("is-active nebula.service"));
    assert!(text.contains("nebula.service: active"), "{text}");

    // 3. Again: nothing to push, nothing to restart.
    let (okay, text) = apply(&inv, &out, &[]);
    assert!(okay, "{text}");
    assert!(
        !text.contains("create ") && !text.contains("update "),
        "{text}"
    );
    assert_eq!(acting(&stub_lh).len(), 3, "{}", log(&stub_lh));
    assert_eq!(acting(&stub_web).len(), 2, "{}", log(&stub_web));

    // 4. A new group for `web`: only its certificate changes, and nebula is reloaded there.
    let inv = inventory(dir, sshd.port, 1300, "[web, canary]");
    let (okay, text) = apply(&inv, &out, &["--dry-run"]);
    assert!(okay, "{text}");
    assert!(
        text.contains("cert web: would be issued (changed: groups"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "would update {}/etc/nebula/host.crt",
            root_web.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "would run: {}/systemctl reload nebula.service",
            stub_web.display()
        )),
        "{text}"
    );
    let (okay, text) = apply(&inv, &out, &[]);
    assert!(okay, "{text}");
    assert_eq!(
        acting(&stub_web).last().map(String::as_str),
        Some("reload nebula.service")
    );
    assert_eq!(
        acting(&stub_lh).len(),
        3,
        "lh was touched: {}",
        log(&stub_lh)
    );
    assert_eq!(
        std::fs::read(root_web.join("etc/nebula/host.crt")).expect("crt"),
        std::fs::read(out.join("web/host.crt")).expect("bundle")
    );

    // 5. A tunnel setting changed: a reload would not apply it, so nebula is restarted.
    let inv = inventory(dir, sshd.port, 1280, "[web, canary]");
    let (okay, text) = apply(&inv, &out, &["--host", "web"]);
    assert!(okay, "{text}");
    assert_eq!(
        acting(&stub_web).last().map(String::as_str),
        Some("restart nebula.service")
    );

    // 6. A node that does not come up is reported as a failure.
    std::fs::write(stub_web.join("fail"), "").expect("fail flag");
    let inv = inventory(dir, sshd.port, 1260, "[web, canary]");
    let (okay, text) = apply(&inv, &out, &["--host", "web"]);
    assert!(!okay, "{text}");
    assert!(text.contains("nebula.service is `failed`"), "{text}");

    // 7. An unreachable host fails cleanly too.
    let mut sshd = sshd;
    let _ = sshd.child.kill();
    let _ = sshd.child.wait();
    let (okay, text) = apply(&inv, &out, &["--host", "lh", "--dry-run"]);
    assert!(!okay, "{text}");
    assert!(text.contains("host `lh`: the probe failed"), "{text}");
    let mut sshd_log = String::new();
    let _ =
        std::fs::File::open(dir.join("sshd.log")).and_then(|mut f| f.read_to_string(&mut sshd_log));
    assert!(!sshd_log.contains("fatal"), "{sshd_log}");
}
