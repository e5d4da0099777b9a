//! The SSH debug console against Go Nebula 1.11.0's: the same scenario (a lighthouse and two hosts,
//! the console on host A) run once with Go on A and once with ours, the OpenSSH client running each
//! command one-shot; the JSON key sets must match. Also: an unknown key is refused, port 22 is
//! refused, and SIGHUP (and the `reload` command) turn the console off, on, and move it.
#![cfg(all(feature = "netns", feature = "interop"))]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use nebula_cert::{Curve, Version};
use serde_json::Value;
use support::*;

const LH_VPN: &str = "10.77.0.1";
const A_VPN: &str = "10.77.0.2";
const B_VPN: &str = "10.77.0.3";

/// Make an ed25519 key pair with ssh-keygen at `<dir>/<name>`; returns the public key line.
fn keygen(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    must(&format!(
        "ssh-keygen -q -t ed25519 -N '' -C {name} -f {}",
        p.display()
    ));
    std::fs::read_to_string(dir.join(format!("{name}.pub")))
        .expect("public key")
        .trim()
        .to_string()
}

/// The `sshd` section for a console on `listen` letting `tester` in with `user_pub`.
fn sshd_section(enabled: bool, listen: &str, host_key: &Path, user_pub: &str) -> String {
    format!(
        "sshd:\n  enabled: {enabled}\n  listen: {listen}\n  host_key: {}\n  authorized_users:\n    - user: tester\n      keys:\n        - \"{user_pub}\"\n",
        host_key.display()
    )
}

/// Run `command` one-shot over ssh from inside `ns` with identity `key`; (exit ok, stdout).
fn ssh(lab: &Lab, ns: &str, port: u16, key: &Path, command: &str) -> (bool, String) {
    let o = lab.exec(
        ns,
        &format!(
            "timeout 20 ssh -p {port} -i {} -o IdentitiesOnly=yes -o BatchMode=yes \
             -o PasswordAuthentication=no -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5 \
             tester@127.0.0.1 {command}",
            key.display()
        ),
    );
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
    )
}

/// Every key path in `v` (objects by key, arrays as `[]`, element key sets merged).
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{prefix}.{k}");
                out.insert(p.clone());
                key_paths(x, &p, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                key_paths(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn keys_of(text: &str, what: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text:?}"));
    let mut out = BTreeSet::new();
    key_paths(&v, "", &mut out);
    out
}

fn hostmap_has(text: &str, vpn: &str) -> bool {
    let v: Value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    v.as_array().is_some_and(|a| {
        a.iter().any(|h| {
            h["vpnAddrs"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x == vpn))
        })
    })
}

/// What one run of the scenario saw.
struct Seen {
    /// The other JSON commands: (command, key paths, raw output). Object keys that are vpn
    /// addresses (the address maps) are part of the paths: both runs use the same addresses.
    others: Vec<(&'static str, BTreeSet<String>, String)>,
    hostmap: BTreeSet<String>,
    cert: BTreeSet<String>,
    tunnel: BTreeSet<String>,
    logs: String,
}

/// Lighthouse and B are ours; A (console on 127.0.0.1:2222) runs `a_impl`.
fn scenario(tag: &str, a_impl: Impl) -> Seen {
    let mut lab = Lab::new(tag);
    let ns_lh = lab.public_host("lh", "192.0.2.1");
    let ns_a = lab.public_host("a", "192.0.2.2");
    let ns_b = lab.public_host("b", "192.0.2.3");
    let dir = lab.dir.path().to_path_buf();
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let user_pub = keygen(&dir, "user_key");
    keygen(&dir, "stranger_key");
    keygen(&dir, "host_key");
    let hosts = [
        ("lh", LH_VPN, &ns_lh, Impl::Ours, true),
        ("a", A_VPN, &ns_a, a_impl, false),
        ("b", B_VPN, &ns_b, Impl::Ours, false),
    ];
    // Every certificate before any node starts: each one rewrites ca.crt.
    for (name, vpn, _, _, _) in &hosts {
        pki.host(&dir, name, &format!("{vpn}/16"), &[name]);
    }
    let mut procs = Vec::new();
    for (name, _, ns, imp, am_lh) in hosts {
        let mut cfg = node_config(&lighthouse_mesh_node(
            name,
            &dir,
            am_lh,
            (LH_VPN, "192.0.2.1:4242"),
            "aes",
        ));
        if name == "a" {
            cfg.push_str(&sshd_section(
                true,
                "127.0.0.1:2222",
                &dir.join("host_key"),
                &user_pub,
            ));
        }
        let path = lab.write(&format!("{name}.yml"), &cfg);
        procs.push(lab.spawn(ns, &imp.cmd(&path), &format!("{name}.log")));
    }
    let logs = |lab: &Lab| -> String {
        ["lh", "a", "b"]
            .iter()
            .map(|n| format!("----- {n}.log -----\n{}\n", lab.log(&format!("{n}.log"))))
            .collect()
    };
    assert!(
        lab.wait_ping(&ns_a, B_VPN, Duration::from_secs(20)),
        "{a_impl:?}: A cannot reach B\n{}",
        logs(&lab)
    );
    let key = dir.join("user_key");
    let run = |cmd: &str| -> String {
        let (ok, out) = ssh(&lab, &ns_a, 2222, &key, cmd);
        assert!(ok, "{a_impl:?}: ssh {cmd} failed: {out}\n{}", logs(&lab));
        out
    };
    let hostmap = run("list-hostmap -json");
    assert!(hostmap_has(&hostmap, B_VPN), "{a_impl:?}: {hostmap}");
    let cert = run("print-cert -json");
    assert!(cert.contains("\"a\""), "{a_impl:?}: our name in {cert}");
    let tunnel = run(&format!("print-tunnel {B_VPN}"));
    assert_eq!(run("log-level"), "Log level is: debug\n", "{a_impl:?}");
    assert_eq!(run("log-level info"), "Log level is: info\n", "{a_impl:?}");
    assert_eq!(run("log-format"), "Log format is: text\n", "{a_impl:?}");
    let mut others = Vec::new();
    for cmd in [
        "list-lighthouse-addrmap -json",
        "list-pending-hostmap -json",
        "print-relays",
        "device-info -json",
        "query-lighthouse 10.77.0.3",
        "list-hostmap -by-index -json",
    ] {
        let text = run(cmd);
        others.push((cmd, keys_of(&text, cmd), text));
    }
    let seen = Seen {
        others,
        hostmap: keys_of(&hostmap, "list-hostmap -json"),
        cert: keys_of(&cert, "print-cert -json"),
        tunnel: keys_of(&tunnel, "print-tunnel"),
        logs: String::new(),
    };

    // close-tunnel, then create-tunnel, checked with list-hostmap.
    assert_eq!(run(&format!("close-tunnel {B_VPN}")).trim(), "Closed");
    let after = run("list-hostmap -json");
    assert!(
        !hostmap_has(&after, B_VPN),
        "{a_impl:?}: still there after close-tunnel: {after}"
    );
    assert_eq!(run(&format!("create-tunnel {B_VPN}")).trim(), "Created");
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let now = run("list-hostmap -json");
        if hostmap_has(&now, B_VPN) {
            break;
        }
        assert!(
            Instant::now() < end,
            "{a_impl:?}: create-tunnel made no tunnel: {now}\n{}",
            logs(&lab)
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // A key nobody authorized is refused.
    let (ok, out) = ssh(&lab, &ns_a, 2222, &dir.join("stranger_key"), "version");
    assert!(!ok, "{a_impl:?}: an unknown key got in: {out}");
    Seen {
        logs: logs(&lab),
        ..seen
    }
}

#[test]
fn console_json_matches_go_1_11_and_acts() {
    let go = scenario("sshg", Impl::Go1110);
    let ours = scenario("ssho", Impl::Ours);
    for (what, g, o) in [
        ("list-hostmap -json", &go.hostmap, &ours.hostmap),
        ("print-cert -json", &go.cert, &ours.cert),
        ("print-tunnel", &go.tunnel, &ours.tunnel),
    ] {
        assert!(!g.is_empty(), "{what}: Go printed no keys");
        assert_eq!(
            g, o,
            "{what}: key sets differ (left Go, right ours)\n{}",
            ours.logs
        );
    }
    for ((cmd, g, gt), (_, o, ot)) in go.others.iter().zip(ours.others.iter()) {
        assert_eq!(g, o, "{cmd}: key sets differ\nGo:   {gt}\nours: {ot}");
    }
    assert!(go.logs.len() + ours.logs.len() > 0);
}

#[test]
fn port_22_is_refused_by_both() {
    for imp in [Impl::Go1110, Impl::Ours] {
        let mut lab = Lab::new("ssh22");
        let ns = lab.public_host("a", "192.0.2.2");
        let dir = lab.dir.path().to_path_buf();
        let pki = Pki::new(Version::V1, Curve::Curve25519);
        pki.host(&dir, "a", &format!("{A_VPN}/16"), &[]);
        let user_pub = keygen(&dir, "user_key");
        keygen(&dir, "host_key");
        let mut cfg = node_config(&static_node("a", &dir, &[]));
        cfg.push_str(&sshd_section(
            true,
            "127.0.0.1:22",
            &dir.join("host_key"),
            &user_pub,
        ));
        let path = lab.write("a.yml", &cfg);
        // `-test` accepts the config and names the problem (a warning, as the node runs on).
        let test = lab.exec(&ns, &format!("{} -test", imp.cmd(&path)));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&test.stdout),
            String::from_utf8_lossy(&test.stderr)
        );
        assert!(test.status.success(), "{imp:?} -test: {said}");
        if imp == Impl::Ours {
            assert!(said.contains("sshd.listen can not use port 22"), "{said}");
        }
        let idx = lab.spawn(&ns, &imp.cmd(&path), "a.log");
        let end = Instant::now() + Duration::from_secs(10);
        while !lab.log("a.log").contains("port 22") && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = lab.log("a.log");
        assert!(
            log.contains("sshd.listen can not use port 22"),
            "{imp:?}: {log}"
        );
        let listening = lab.exec(&ns, "ss -Hltn 'sport = :22'");
        assert!(
            String::from_utf8_lossy(&listening.stdout).trim().is_empty(),
            "{imp:?}: something listens on 22"
        );
        // The node itself runs on without the console, as Go's does.
        assert!(lab.wait_exit(idx, Duration::from_millis(500)).is_none());
    }
}

/// Poll until `version` over ssh on `port` gives `want` (true) or fails (false); false on timeout.
fn console_state(lab: &Lab, ns: &str, port: u16, key: &Path, up: bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out) = ssh(lab, ns, port, key, "version");
        let answered = ok && out.trim() == env!("CARGO_PKG_VERSION");
        if answered == up {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sighup_turns_the_console_off_on_and_moves_it_same_pid() {
    let mut lab = Lab::new("sshup");
    let ns = lab.public_host("a", "192.0.2.2");
    let dir = lab.dir.path().to_path_buf();
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    pki.host(&dir, "a", &format!("{A_VPN}/16"), &[]);
    let user_pub = keygen(&dir, "user_key");
    keygen(&dir, "host_key");
    let key = dir.join("user_key");
    let base = node_config(&static_node("a", &dir, &[]));
    let write = |lab: &Lab, enabled: bool, port: u16| {
        lab.write(
            "a.yml",
            &format!(
                "{base}{}",
                sshd_section(
                    enabled,
                    &format!("127.0.0.1:{port}"),
                    &dir.join("host_key"),
                    &user_pub
                )
            ),
        )
    };
    let path = write(&lab, true, 2222);
    let idx = lab.spawn(&ns, &Impl::Ours.cmd(&path), "a.log");
    let pid = lab.pid(idx);
    let hup = || must(&format!("kill -HUP {pid}"));
    assert!(
        console_state(&lab, &ns, 2222, &key, true),
        "console up at start\n{}",
        lab.log("a.log")
    );

    write(&lab, false, 2222);
    hup();
    assert!(
        console_state(&lab, &ns, 2222, &key, false),
        "still listening after sshd.enabled: false"
    );

    write(&lab, true, 2223);
    hup();
    assert!(
        console_state(&lab, &ns, 2223, &key, true),
        "not back on 2223\n{}",
        lab.log("a.log")
    );
    assert!(
        console_state(&lab, &ns, 2222, &key, false),
        "2222 must stay closed"
    );

    // The `reload` command is SIGHUP: move to 2224 from inside the console.
    write(&lab, true, 2224);
    let (ok, out) = ssh(&lab, &ns, 2223, &key, "reload");
    assert!(ok && out.contains("Reloading config"), "{out}");
    assert!(
        console_state(&lab, &ns, 2224, &key, true),
        "reload command did not move it\n{}",
        lab.log("a.log")
    );

    // An OpenSSH user certificate from a trusted CA gets in; the bare key no longer does.
    keygen(&dir, "ssh_ca");
    must(&format!(
        "ssh-keygen -q -s {} -I tester-cert -n tester -V -5m:+1h {}.pub",
        dir.join("ssh_ca").display(),
        key.display()
    ));
    let ca_pub = std::fs::read_to_string(dir.join("ssh_ca.pub")).expect("ca key");
    lab.write(
        "a.yml",
        &format!(
            "{base}sshd:\n  enabled: true\n  listen: 127.0.0.1:2224\n  host_key: {}\n  trusted_cas:\n    - \"{}\"\n",
            dir.join("host_key").display(),
            ca_pub.trim()
        ),
    );
    hup();
    let cert_file = format!("{}-cert.pub", key.display());
    let with_cert = |file: &str| {
        lab.exec(
            &ns,
            &format!(
                "timeout 20 ssh -p 2224 -i {} -o CertificateFile={file} -o IdentitiesOnly=yes \
                 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
                 -o LogLevel=ERROR tester@127.0.0.1 version",
                key.display()
            ),
        )
        .status
        .success()
    };
    let end = Instant::now() + Duration::from_secs(10);
    while !with_cert(&cert_file) {
        assert!(
            Instant::now() < end,
            "certificate login refused\n{}",
            lab.log("a.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !with_cert("/dev/null"),
        "the bare key is no longer authorized"
    );

    assert!(
        lab.wait_exit(idx, Duration::from_millis(100)).is_none(),
        "the node must still be running"
    );
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "same process");
}
