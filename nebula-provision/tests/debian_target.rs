//! The rendered Ansible role and `apply` run for real against a Debian bookworm root (its own
//! sshd, chrooted in a network namespace made here; tests/debian-root.sh builds it), installing
//! our real `nebula-rs` package (`nebula_binary.deb`): first run changes things, the second
//! nothing, a broken target is repaired.
#![cfg(all(feature = "netns", feature = "interop"))]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::debian::{deb_depends, deb_field, our_deb, DebianTarget};
use common::*;

/// A one-host mesh whose only host is the target, installed from the package at `deb`.
fn inventory(dir: &Path, t: &DebianTarget, deb: &Path, ssh_extra: &str) -> PathBuf {
    let opts = t
        .ssh_options()
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"
mesh: {{name: debian-target-test, network: 10.78.0.0/24}}
pki: {{dir: pki, argon2: {{memory_kib: 64, iterations: 1, parallelism: 1}}}}
hosts:
  target:
    overlay_ip: 10.78.0.1
    groups: [lighthouse]
    lighthouse: true
    listen_port: 4242
    public_endpoints: ["{addr}:4242"]
    nebula_binary: {{deb: {deb}}}
    ssh:
      host: {addr}
      port: {port}
      user: root
      identity_file: {d}/id
      options: [{opts}]
{ssh_extra}
firewall:
  allow:
    - {{from: any, to: {{host: target}}, proto: icmp}}
"#,
        addr = t.addr,
        port = t.port,
        deb = deb.display(),
        d = t.dir.path().display(),
    );
    let p = dir.join("inventory.yml");
    std::fs::write(&p, text).expect("inventory");
    p
}

/// Runs site.yml; returns (success, output, changed count from the PLAY RECAP).
fn playbook(out: &Path, tmp: &Path) -> (bool, String, Option<u32>) {
    let o = run(Command::new(venv_tool("ansible-playbook"))
        .arg("site.yml")
        .current_dir(out.join("ansible"))
        .env("ANSIBLE_LOCAL_TEMP", tmp.join("ansible-tmp"))
        .env("ANSIBLE_HOME", tmp.join("ansible-home"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
        // No ssh master left behind holding a session in the target.
        .env("ANSIBLE_SSH_ARGS", "-o ControlMaster=no")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (
        o.status.success(),
        text.clone(),
        recap_changed(&text, "target"),
    )
}

/// `changed=N` of `host` in the PLAY RECAP.
fn recap_changed(text: &str, host: &str) -> Option<u32> {
    let recap = &text[text.find("PLAY RECAP")?..];
    let line = recap
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("changed="))?
        .parse()
        .ok()
}

/// The installed version of `pkg` in the target ("" when absent).
fn installed_version(t: &DebianTarget, pkg: &str) -> String {
    let o = run(&mut t.exec(&format!(
        "dpkg-query -W -f='${{db:Status-Status}} ${{Version}}' {pkg} 2>/dev/null || true"
    )));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The bundle, unit and package are installed in the target as the render says.
fn assert_installed(t: &DebianTarget, out: &Path, deb: &Path) {
    let etc = t.path("/etc/nebula");
    assert_eq!(mode(&etc), 0o700);
    for (f, m) in [
        ("config.yml", 0o644),
        ("ca.crt", 0o644),
        ("host.crt", 0o644),
        ("host.key", 0o600),
    ] {
        assert_eq!(
            std::fs::read(etc.join(f)).expect("installed"),
            std::fs::read(out.join("target").join(f)).expect("bundle"),
            "/etc/nebula/{f}"
        );
        assert_eq!(mode(&etc.join(f)), m, "/etc/nebula/{f}");
    }
    let unit = t.path("/etc/systemd/system/nebula.service");
    assert_eq!(
        std::fs::read(&unit).expect("unit"),
        std::fs::read(out.join("target/nebula.service")).expect("bundle unit")
    );
    assert_eq!(mode(&unit), 0o644);
    let pkg = deb_field(deb, "Package");
    assert_eq!(
        installed_version(t, &pkg),
        format!("installed {}", deb_field(deb, "Version"))
    );
    let v = ok(&mut t.exec("/usr/bin/nebula -version"));
    assert!(!v.trim().is_empty(), "nebula -version printed nothing");
}

/// systemd-analyze verify accepts the installed unit, with ExecStart pointing at the target's
/// installed binary (verify wants the binary to exist on this machine).
fn verify_unit(t: &DebianTarget, dir: &Path) {
    let text = std::fs::read_to_string(t.path("/etc/systemd/system/nebula.service")).expect("unit");
    assert!(text.contains("ExecStart=/usr/bin/nebula "), "{text}");
    let copy = dir.join("nebula.service");
    std::fs::write(
        &copy,
        text.replace(
            "ExecStart=/usr/bin/nebula ",
            &format!("ExecStart={} ", t.path("/usr/bin/nebula").display()),
        ),
    )
    .expect("write");
    let o = run(Command::new(require("systemd-analyze"))
        .arg("verify")
        .arg(&copy));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        o.status
    );
}

#[test]
fn ansible_role_installs_the_deb_and_bundle_then_changes_nothing_then_repairs() {
    let deb = our_deb();
    let target = DebianTarget::start(&deb_depends(&deb));
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    let inv = inventory(t.path(), &target, &deb, "");
    render(&inv, &out);

    // 1. First run: installs everything; no systemd runs the target, so the role says it
    //    leaves the service alone.
    let (okay, text, changed) = playbook(&out, t.path());
    assert!(okay, "{text}");
    assert!(changed.is_some_and(|c| c > 0), "{changed:?}\n{text}");
    assert!(
        text.contains("is not systemd (nebula_manage_service)"),
        "{text}"
    );
    assert_installed(&target, &out, &deb);
    verify_unit(&target, t.path());

    // 2. Again: nothing changes.
    let (okay, text, changed) = playbook(&out, t.path());
    assert!(okay, "{text}");
    assert_eq!(changed, Some(0), "{text}");

    // 3. Broken on the target: a config overwritten, the key readable by all, the unit gone.
    std::fs::write(target.path("/etc/nebula/config.yml"), "broken: true\n").expect("break");
    std::fs::set_permissions(
        target.path("/etc/nebula/host.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    std::fs::remove_file(target.path("/etc/systemd/system/nebula.service")).expect("rm unit");
    let (okay, text, changed) = playbook(&out, t.path());
    assert!(okay, "{text}");
    assert!(changed.is_some_and(|c| c >= 3), "{changed:?}\n{text}");
    assert_installed(&target, &out, &deb);
    let (okay, text, changed) = playbook(&out, t.path());
    assert!(okay, "{text}");
    assert_eq!(changed, Some(0), "{text}");

    // 4. The package removed behind Ansible's back comes back.
    ok(&mut target.exec(&format!("dpkg -r {}", deb_field(&deb, "Package"))));
    assert!(!target.path("/usr/bin/nebula").exists());
    let (okay, text, changed) = playbook(&out, t.path());
    assert!(okay, "{text}");
    assert!(changed.is_some_and(|c| c > 0), "{changed:?}\n{text}");
    assert_installed(&target, &out, &deb);
}

/// A systemctl for the target without systemd: keeps enabled flags in /run/stub-systemctl and
/// really runs nebula (from the package) as the "service", in the target's namespace.
const SYSTEMCTL_STUB: &str = r#"#!/bin/sh
d=/run/stub-systemctl
mkdir -p "$d"
echo "$*" >> "$d/log"
verb=$1; shift
running() { [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; }
# Like Type=notify, a start returns once nebula is up (its tun device exists).
start() {
  running && return 0
  setsid /usr/bin/nebula -config /etc/nebula/config.yml >>"$d/nebula.log" 2>&1 </dev/null &
  echo $! > "$d/pid"
  i=0
  while running && ! ip link show dev nebula1 >/dev/null 2>&1 && [ $i -lt 100 ]; do
    sleep 0.1; i=$((i+1))
  done
}
stop() {
  running || return 0
  p=$(cat "$d/pid"); kill "$p"
  while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
}
case "$verb" in
  is-enabled) if [ -f "$d/enabled-$1" ]; then echo enabled; else echo disabled; exit 1; fi ;;
  is-active) if [ "$1" = nebula.service ] && running; then echo active; else echo inactive; exit 3; fi ;;
  enable)
    now=0
    for a in "$@"; do
      case "$a" in --now) now=1 ;; *) touch "$d/enabled-$a"; [ $now = 1 ] && [ "$a" = nebula.service ] && start ;; esac
    done ;;
  start) start ;;
  restart) stop; start ;;
  reload) running && kill -HUP "$(cat "$d/pid")" ;;
  daemon-reload) ;;
  *) echo "stub: unexpected $verb" >&2; exit 1 ;;
esac
exit 0
"#;

fn apply(inv: &Path, out: &Path) -> (bool, String) {
    run_apply(inv, out, &["--check-seconds", "10"])
}

fn stub_acting(t: &DebianTarget) -> Vec<String> {
    std::fs::read_to_string(t.path("/run/stub-systemctl/log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("is-"))
        .map(str::to_string)
        .collect()
}

/// The same package with another version (unpacked and rebuilt with dpkg-deb).
fn rebuilt_with_version(deb: &Path, dir: &Path, version: &str) -> PathBuf {
    let tree = dir.join("deb-tree");
    ok(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).expect("control");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&control, text).expect("control");
    let out = dir.join(format!("nebula-rs_{version}_amd64.deb"));
    ok(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&out));
    out
}

#[test]
fn apply_installs_the_deb_once_and_upgrades_it_with_a_restart() {
    let deb = our_deb();
    let target = DebianTarget::start(&deb_depends(&deb));
    let stub = target.path("/usr/local/sbin/systemctl-stub");
    std::fs::write(&stub, SYSTEMCTL_STUB).expect("stub");
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("out");
    let stub_line = "      systemctl: /usr/local/sbin/systemctl-stub";
    let inv = inventory(t.path(), &target, &deb, stub_line);

    // 1. Installs package and bundle, starts the packaged nebula (which makes its tun device).
    let (okay, text) = apply(&inv, &out);
    assert!(okay, "{text}");
    assert!(text.contains("nebula.service: active"), "{text}");
    assert_installed(&target, &out, &deb);
    assert_eq!(
        stub_acting(&target),
        vec!["daemon-reload", "enable --now nebula.service"]
    );

    // 2. Again: nothing copied, installed or restarted.
    let (okay, text) = apply(&inv, &out);
    assert!(okay, "{text}");
    assert!(
        !text.contains("create ") && !text.contains("update "),
        "{text}"
    );
    assert_eq!(stub_acting(&target).len(), 2, "{text}");
    assert_installed(&target, &out, &deb);

    // 3. A new version of the package: copied, installed, nebula restarted.
    let v = format!("{}+test1", deb_field(&deb, "Version"));
    let newer = rebuilt_with_version(&deb, t.path(), &v);
    let inv = inventory(t.path(), &target, &newer, stub_line);
    let (okay, text) = apply(&inv, &out);
    assert!(okay, "{text}");
    assert!(text.contains("update "), "{text}");
    assert_eq!(
        installed_version(&target, &deb_field(&deb, "Package")),
        format!("installed {v}")
    );
    assert_eq!(
        stub_acting(&target).last().map(String::as_str),
        Some("restart nebula.service"),
        "{text}"
    );
    assert_installed(&target, &out, &newer);
}

/// An HTTPS server inside the target's namespace (on its 127.0.0.1), serving `dir` with a
/// certificate the target trusts (added to its CA store). Killed when dropped.
struct HttpsServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVER_PY: &str = r#"
import functools, http.server, ssl, sys
d, cert, key, port = sys.argv[1:5]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=d)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

fn https_server(t: &DebianTarget, dir: &Path) -> HttpsServer {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    ok(Command::new(require("openssl"))
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    std::fs::copy(
        &cert,
        t.path("/usr/local/share/ca-certificates/nebula-provision-test.crt"),
    )
    .expect("trust");
    ok(&mut t.exec("update-ca-certificates >/dev/null"));
    let port = 8443;
    let child = Command::new(require("ip"))
        .args([
            "netns",
            "exec",
            &t.netns,
            "/usr/bin/python3",
            "-c",
            SERVER_PY,
        ])
        .arg(dir)
        .arg(&cert)
        .arg(&key)
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("https.log")).expect("log"))
        .spawn()
        .expect("start the HTTPS server");
    let s = HttpsServer { child, port };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ss = run(Command::new(require("ip"))
            .args(["netns", "exec", &t.netns])
            .args(["ss", "-Hltn", &format!("sport = :{port}")]));
        if !String::from_utf8_lossy(&ss.stdout).trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "HTTPS server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    s
}

fn sha256_file(p: &Path) -> String {
    ok(Command::new("sha256sum").arg(p))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `deb:` as an https URL with its SHA-256: apply downloads, checks and installs it once and
/// refuses a package whose hash is not the inventory's; the Ansible role does the same.
#[test]
fn deb_urls_are_downloaded_checked_and_installed_by_apply_and_ansible() {
    let deb = our_deb();
    let mut pkgs = deb_depends(&deb);
    pkgs.push("curl".into());
    let target = DebianTarget::start(&pkgs);
    let stub = target.path("/usr/local/sbin/systemctl-stub");
    std::fs::write(&stub, SYSTEMCTL_STUB).expect("stub");
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let t = tempfile::tempdir().expect("tempdir");
    let www = t.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::copy(&deb, www.join("nebula-rs.deb")).expect("serve");
    let server = https_server(&target, &www);
    let url = format!("https://127.0.0.1:{}/nebula-rs.deb", server.port);
    let out = t.path().join("out");
    let url_inventory = |sha: &str| {
        let p = inventory(
            t.path(),
            &target,
            Path::new("placeholder.deb"),
            "      systemctl: /usr/local/sbin/systemctl-stub",
        );
        let text = std::fs::read_to_string(&p).expect("inventory").replace(
            "nebula_binary: {deb: placeholder.deb}",
            &format!("nebula_binary: {{deb: \"{url}\", sha256: \"{sha}\"}}"),
        );
        assert!(text.contains(&url), "{text}");
        std::fs::write(&p, text).expect("inventory");
        p
    };

    // 1. A hash that is not the package's: nothing is installed.
    let inv = url_inventory(&"0".repeat(64));
    let (okay, text) = apply(&inv, &out);
    assert!(!okay, "{text}");
    assert!(text.contains("installing the bundle failed"), "{text}");
    assert_eq!(installed_version(&target, &deb_field(&deb, "Package")), "");

    // 2. The right hash: downloaded, installed, started; again: nothing happens.
    let inv = url_inventory(&sha256_file(&deb));
    let (okay, text) = apply(&inv, &out);
    assert!(okay, "{text}");
    assert!(text.contains("nebula.service: active"), "{text}");
    assert_installed(&target, &out, &deb);
    let acted = stub_acting(&target).len();
    let (okay, text) = apply(&inv, &out);
    assert!(okay, "{text}");
    assert!(
        !text.contains("create ") && !text.contains("update "),
        "{text}"
    );
    assert_eq!(stub_acting(&target).len(), acted, "{text}");

    // 3. The role, from a clean package cache: downloads and installs nothing new (that
    //    version is installed), then changes nothing.
    std::fs::remove_file(target.path("/var/cache/nebula-provision/nebula-rs.deb")).expect("rm");
    let (okay, text, _) = playbook(&out, t.path());
    assert!(okay, "{text}");
    assert!(target
        .path("/var/cache/nebula-provision/nebula-rs.deb")
        .is_file());
    let (okay, text, changed) = playbook(&out, t.path());
    assert!(okay, "{text}");
    assert_eq!(changed, Some(0), "{text}");
    assert_installed(&target, &out, &deb);
}
