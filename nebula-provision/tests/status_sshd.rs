//! `status` against real OpenSSH servers on loopback ports, one per host, each with a `nebula-ctl`
//! stand-in on its PATH (sshd `SetEnv`) that prints what the node would, fails, or prints garbage;
//! plus a host whose port accepts connections and never speaks.
#![cfg(all(feature = "netns", feature = "interop"))]

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::sshd::{start_sshd, Sshd};
use common::*;

const DAY: f64 = 86_400.0;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A certificate object as the node writes it, expiring in `days`.
fn cert(name: &str, fingerprint: &str, days: f64) -> String {
    format!(
        r#"{{"name":"{name}","version":1,"fingerprint":"{fingerprint}","not_after":{},"days_left":{days}}}"#,
        now() + (days * DAY) as i64
    )
}

/// One tunnel as the node writes it. `path`: `direct:<remote>` or `relayed:<via>`.
fn tunnel(name: &str, vpn: &str, groups: &str, path: &str, rtt: Option<f64>) -> String {
    let path = match path.split_once(':') {
        Some(("relayed", via)) => format!(r#"{{"kind":"relayed","via":"{via}"}}"#),
        _ => format!(
            r#"{{"kind":"direct","remote":"{}"}}"#,
            path.trim_start_matches("direct:")
        ),
    };
    let rtt = rtt.map_or("null".to_string(), |r| r.to_string());
    format!(
        r#"{{"name":"{name}","vpn_addrs":["{vpn}"],"groups":[{groups}],"path":{path},"rtt_ms":{rtt},"rx_bytes":182344,"tx_bytes":99120,"rx_packets":1201,"tx_packets":998,"handshake_age_seconds":412,"cipher":"aes","cert_version":1,"cert_not_after":{},"cert_days_left":301.5,"initiator":true}}"#,
        now() + (301.5 * DAY) as i64
    )
}

/// A whole `nebula-ctl status --json` answer (version 1), as the node prints it.
fn response(name: &str, vpn: &str, lighthouse: bool, cert_days: f64, tunnels: &[String]) -> String {
    let ca = cert("apply-test", "5c1e0a7d", 700.25);
    let lighthouses = if lighthouse {
        "[]".to_string()
    } else {
        r#"[{"vpn_addr":"10.77.0.1","reachable":true}]"#.to_string()
    };
    format!(
        r#"{{"version":1,"ok":true,"status":{{"node":{{"name":"{name}","vpn_addrs":["{vpn}"],"cert":{},"cas":[{ca}],"listen":["0.0.0.0:4242"],"am_lighthouse":{lighthouse},"am_relay":{lighthouse},"lighthouses":{lighthouses},"relays":[],"uptime_seconds":86400,"version":"0.1.0"}},"tunnels":[{}],"health":{{"lighthouses":{n},"lighthouses_reachable":{n},"data_plane_alive":true,"cert_days_left":{cert_days}}}}}}}"#,
        cert(name, &format!("f00d{vpn}"), cert_days),
        tunnels.join(","),
        n = usize::from(!lighthouse),
    )
}

/// A host: its own sshd whose sessions find `script` as `nebula-ctl` first on the PATH.
fn host(dir: &Path, name: &str, script: &str) -> Sshd {
    let d = dir.join(name);
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let ctl = bin.join("nebula-ctl");
    std::fs::write(&ctl, script).expect("script");
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    start_sshd(
        &d,
        &[format!("SetEnv=PATH={}:/usr/bin:/bin", bin.display())],
    )
}

/// A `nebula-ctl` that prints `json` for `status --json` and refuses anything else.
fn ctl_printing(json: &str) -> String {
    format!(
        "#!/bin/sh\n[ \"$*\" = \"status --json\" ] || {{ echo \"unexpected: $*\" >&2; exit 64; }}\ncat <<'EOF'\n{json}\nEOF\n"
    )
}

fn ssh_section(dir: &Path, name: &str, port: u16) -> String {
    let d = dir.join(name);
    format!(
        "ssh: {{host: 127.0.0.1, port: {port}, user: root, identity_file: {d}/id, options: [\"UserKnownHostsFile={d}/known_hosts\", \"StrictHostKeyChecking=yes\"]}}",
        d = d.display()
    )
}

fn status(inv: &Path, extra: &[&str]) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let o = run(Command::new(provision_bin())
        .arg("status")
        .arg("--inventory")
        .arg(inv)
        .args(["--timeout", "4"])
        .args(extra));
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        started.elapsed(),
    )
}

/// The table row of `host`, split on whitespace (the note is the rest).
fn row<'a>(out: &'a str, host: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no row for {host} in\n{out}"))
        .split_whitespace()
        .collect()
}

#[test]
fn status_shows_the_mesh_the_down_hosts_and_the_renewals_due() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();

    let lh = host(
        dir,
        "lh",
        &ctl_printing(&response(
            "lh",
            "10.77.0.1",
            true,
            340.7,
            &[
                tunnel(
                    "web1",
                    "10.77.0.11",
                    r#""web""#,
                    "direct:127.0.0.1:40011",
                    Some(4.0),
                ),
                tunnel(
                    "web2",
                    "10.77.0.12",
                    r#""web""#,
                    "direct:127.0.0.1:40012",
                    Some(21.5),
                ),
            ],
        )),
    );
    // web1: its certificate expires in 12 days; it reaches db only through the lighthouse.
    let web1 = host(
        dir,
        "web1",
        &ctl_printing(&response(
            "web1",
            "10.77.0.11",
            false,
            12.4,
            &[
                tunnel(
                    "lh",
                    "10.77.0.1",
                    r#""lighthouse""#,
                    "direct:127.0.0.1:4242",
                    Some(3.0),
                ),
                tunnel(
                    "db",
                    "10.77.0.20",
                    r#""db""#,
                    "relayed:10.77.0.1",
                    Some(9.5),
                ),
            ],
        )),
    );
    // web2: a tunnel to web1, which no firewall rule allows.
    let web2 = host(
        dir,
        "web2",
        &ctl_printing(&response(
            "web2",
            "10.77.0.12",
            false,
            200.0,
            &[
                tunnel(
                    "lh",
                    "10.77.0.1",
                    r#""lighthouse""#,
                    "direct:127.0.0.1:4242",
                    Some(22.0),
                ),
                tunnel(
                    "web1",
                    "10.77.0.11",
                    r#""web""#,
                    "direct:127.0.0.1:40011",
                    None,
                ),
            ],
        )),
    );
    // db: nebula is not running, so nebula-ctl cannot reach its socket.
    let db = host(
        dir,
        "db",
        "#!/bin/sh\necho 'nebula-ctl: cannot connect to /run/nebula/control.sock: Connection refused (is nebula running?)' >&2\nexit 1\n",
    );
    // cache: something answers, but not JSON.
    let cache = host(
        dir,
        "cache",
        "#!/bin/sh\necho '<html>502 Bad Gateway</html>'\n",
    );
    // mon: the port accepts connections and never speaks.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mon_port = silent.local_addr().expect("addr").port();
    std::fs::create_dir_all(dir.join("mon")).expect("mkdir");
    for f in ["id", "known_hosts"] {
        std::fs::copy(dir.join("lh").join(f), dir.join("mon").join(f)).expect("copy");
    }

    let inv = dir.join("inventory.yml");
    std::fs::write(
        &inv,
        format!(
            r#"
mesh: {{name: apply-test, network: 10.77.0.0/24}}
pki: {{dir: pki}}
hosts:
  lh:
    overlay_ip: 10.77.0.1
    groups: [lighthouse]
    lighthouse: true
    public_endpoints: ["127.0.0.1:4242"]
    {lh}
  web1: {{overlay_ip: 10.77.0.11, groups: [web], {web1}}}
  web2: {{overlay_ip: 10.77.0.12, groups: [web], {web2}}}
  db: {{overlay_ip: 10.77.0.20, groups: [db], {db}}}
  cache: {{overlay_ip: 10.77.0.30, groups: [cache], {cache}}}
  mon: {{overlay_ip: 10.77.0.40, groups: [mon], {mon}}}
firewall:
  allow:
    - {{from: {{group: lighthouse}}, to: {{group: web}}, proto: tcp, port: 443}}
    - {{from: {{group: web}}, to: {{group: db}}, proto: tcp, port: 5432}}
    - {{from: {{group: web}}, to: {{group: cache}}, proto: tcp, port: 6379}}
"#,
            lh = ssh_section(dir, "lh", lh.port),
            web1 = ssh_section(dir, "web1", web1.port),
            web2 = ssh_section(dir, "web2", web2.port),
            db = ssh_section(dir, "db", db.port),
            cache = ssh_section(dir, "cache", cache.port),
            mon = ssh_section(dir, "mon", mon_port),
        ),
    )
    .expect("inventory");
    let out_dir = dir.join("out");

    // 1. The table.
    let (code, out, err, took) = status(&inv, &["--out", &out_dir.display().to_string()]);
    println!("{out}{err}");
    assert_eq!(code, Some(2), "some hosts are down:\n{out}{err}");
    // The silent host costs ssh's ConnectTimeout (half of --timeout 4), once: hosts are asked
    // in parallel.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        out.starts_with("mesh `apply-test`: 6 host(s), 3 up, 3 down\n"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .nth(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec![
            "HOST",
            "STATE",
            "TUNNELS",
            "DIRECT",
            "RELAYED",
            "RTT-WORST",
            "RTT-MEDIAN",
            "CERT-DAYS",
            "NOTE"
        ])
    );
    // Allowed: lh <-> every other host (lighthouse); web <-> db, web <-> cache (firewall).
    assert_eq!(
        row(&out, "lh")[..8],
        ["lh", "up", "2/5", "2", "0", "21.5ms", "12.8ms", "340"],
        "{out}"
    );
    assert!(
        row(&out, "lh")
            .join(" ")
            .ends_with("no tunnel to cache, db, mon"),
        "{out}"
    );
    assert_eq!(
        row(&out, "web1")[..8],
        ["web1", "up", "2/3", "1", "1", "9.5ms", "6.2ms", "12"],
        "{out}"
    );
    assert!(
        row(&out, "web1").join(" ").ends_with("no tunnel to cache"),
        "{out}"
    );
    assert_eq!(
        row(&out, "web2")[..8],
        ["web2", "up", "1/3+1", "2", "0", "22.0ms", "22.0ms", "200"],
        "{out}"
    );
    assert!(
        row(&out, "web2")
            .join(" ")
            .ends_with("no tunnel to cache, db; tunnel the firewall does not allow: web1"),
        "{out}"
    );
    let down = |h: &str| {
        let r = row(&out, h);
        assert_eq!(r[1..8], ["down", "-", "-", "-", "-", "-", "-"], "{out}");
        r[8..].join(" ")
    };
    assert_eq!(
        down("db"),
        "nebula-ctl failed (exit status: 1): nebula-ctl: cannot connect to /run/nebula/control.sock: Connection refused (is nebula running?)"
    );
    assert!(
        down("cache").starts_with("bad JSON from nebula-ctl: expected value at line 1"),
        "{out}"
    );
    let mon = down("mon");
    assert!(
        mon.starts_with("ssh failed (exit status: 255):") && mon.contains("timed out"),
        "{out}"
    );

    // 2. The renewals: web1's certificate, with the commands that renew and install it.
    let inv_s = inv.display().to_string();
    let out_s = out_dir.display().to_string();
    let renewals = out
        .split_once("\nrenewals due within 30 day(s):\n")
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no renewals section:\n{out}"));
    let lines: Vec<&str> = renewals.lines().collect();
    assert!(
        lines[0].starts_with("  host web1: certificate expires in 12 day(s), on "),
        "{out}"
    );
    assert_eq!(lines[1], "  not known (no answer): cache, db, mon", "{out}");
    assert_eq!(lines[2], "to renew the host certificates and install them:");
    assert_eq!(
        lines[3],
        format!("  nebula-provision renew --inventory {inv_s} --out {out_s} --host web1")
    );
    assert_eq!(
        lines[4],
        format!("  nebula-provision apply --inventory {inv_s} --out {out_s} --host web1")
    );
    assert_eq!(lines.len(), 5, "{out}");

    // 3. --json: one document with every host's judgement and whole answer; a longer window
    //    makes the CA (reported by the hosts, once) and more host certificates due.
    let (code, out, err, _) = status(&inv, &["--json", "--renew-within", "800"]);
    assert_eq!(code, Some(2), "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let hosts = doc["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 6);
    let web1 = hosts.iter().find(|h| h["host"] == "web1").expect("web1");
    assert_eq!(web1["state"], "up");
    assert_eq!(web1["relayed"], 1);
    assert_eq!(web1["response"]["status"]["node"]["uptime_seconds"], 86400);
    let db = hosts.iter().find(|h| h["host"] == "db").expect("db");
    assert_eq!(db["state"], "down");
    assert!(db["reason"]
        .as_str()
        .is_some_and(|r| r.contains("control.sock")));
    let kinds: Vec<(&str, &str)> = doc["renewals"]
        .as_array()
        .expect("renewals")
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("host", "lh"),
            ("host", "web1"),
            ("host", "web2"),
            ("ca", "apply-test")
        ]
    );
    assert!(doc["renew_commands"][0]
        .as_str()
        .is_some_and(|c| c.ends_with("--host lh --host web1 --host web2")));

    // 4. Only the hosts asked for; all up is exit status 0.
    let (code, out, err, _) = status(&inv, &["--host", "web1", "--host", "lh"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with("mesh `apply-test`: 2 host(s), 2 up, 0 down\n"),
        "{out}"
    );
    drop(silent);
}
