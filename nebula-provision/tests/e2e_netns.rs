//! End to end in network namespaces: the ADR inventory rendered, each host's bundle run as its
//! `/etc/nebula` by a nebula daemon — Kshitiz on a public address, the two ingress VMs behind a
//! masquerading home router — HTTP servers on the VMs, and an "internet client" fetching through
//! Kshitiz's forwarded port 443. The firewall must let through exactly what the inventory allows.
//!
//! Topology (all addresses exist only inside the namespaces this test creates):
//!   cli 198.51.100.20 ─┐
//!   ksh 203.0.113.10 ──┼─ wan (router) ── 192.0.2.2 vgw (NAT) ── br 192.168.68.1 ─┬─ vm1 .211
//!                                                                                └─ vm2 .212
#![cfg(all(feature = "netns", feature = "interop"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Net {
    prefix: String,
    ip: PathBuf,
    children: Vec<Child>,
}

impl Net {
    fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.prefix)
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ip);
        c.args(["netns", "exec", &self.ns(ns)]).args(args);
        c
    }

    fn sh(&self, ns: &str, script: &str) {
        ok(&mut self.exec(ns, &["sh", "-ec", script]));
    }

    fn spawn(&mut self, mut c: Command, log: &Path) {
        let f = std::fs::File::create(log).expect("log");
        let f2 = f.try_clone().expect("log");
        let child = c
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {c:?}: {e}"));
        self.children.push(child);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in ["cli", "ksh", "wan", "vgw", "vm1", "vm2"] {
            let _ = Command::new(&self.ip)
                .args(["netns", "del", &self.ns(n)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn build_topology(net: &Net) {
    let ip = &net.ip;
    for n in ["cli", "ksh", "wan", "vgw", "vm1", "vm2"] {
        ok(Command::new(ip).args(["netns", "add", &net.ns(n)]));
        net.sh(n, "ip link set lo up");
    }
    let pair = |a: &str, an: &str, b: &str, bn: &str| {
        ok(Command::new(ip).args([
            "link",
            "add",
            an,
            "netns",
            &net.ns(a),
            "type",
            "veth",
            "peer",
            "name",
            bn,
            "netns",
            &net.ns(b),
        ]));
    };
    pair("ksh", "k0", "wan", "wk");
    pair("cli", "c0", "wan", "wc");
    pair("vgw", "g0", "wan", "wg");
    pair("vm1", "v0", "vgw", "g1");
    pair("vm2", "v0", "vgw", "g2");
    net.sh(
        "wan",
        "ip addr add 203.0.113.1/24 dev wk; ip addr add 198.51.100.1/24 dev wc; \
         ip addr add 192.0.2.1/24 dev wg; for d in wk wc wg; do ip link set $d up; done; \
         sysctl -qw net.ipv4.ip_forward=1",
    );
    net.sh(
        "ksh",
        "ip addr add 203.0.113.10/24 dev k0; ip link set k0 up; ip route add default via 203.0.113.1",
    );
    net.sh(
        "cli",
        "ip addr add 198.51.100.20/24 dev c0; ip link set c0 up; ip route add default via 198.51.100.1",
    );
    net.sh(
        "vgw",
        "ip addr add 192.0.2.2/24 dev g0; ip link set g0 up; ip route add default via 192.0.2.1; \
         ip link add br0 type bridge; ip link set g1 master br0; ip link set g2 master br0; \
         ip addr add 192.168.68.1/24 dev br0; for d in br0 g1 g2; do ip link set $d up; done; \
         sysctl -qw net.ipv4.ip_forward=1; \
         nft add table ip homenat; \
         nft 'add chain ip homenat post { type nat hook postrouting priority srcnat; }'; \
         nft add rule ip homenat post oifname g0 masquerade",
    );
    for (vm, addr) in [("vm1", "192.168.68.211"), ("vm2", "192.168.68.212")] {
        net.sh(
            vm,
            &format!(
                "ip addr add {addr}/24 dev v0; ip link set v0 up; ip route add default via 192.168.68.1"
            ),
        );
    }
}

fn curl(net: &Net, ns: &str, url: &str, secs: u32) -> Option<String> {
    let o = run(&mut net.exec(ns, &["curl", "-s", "--max-time", &secs.to_string(), url]));
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool, logs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            let mut all = String::new();
            if let Ok(rd) = std::fs::read_dir(logs) {
                for e in rd.flatten() {
                    if e.path().extension().is_some_and(|x| x == "log") {
                        all.push_str(&format!(
                            "==> {} <==\n{}\n",
                            e.path().display(),
                            std::fs::read_to_string(e.path()).unwrap_or_default()
                        ));
                    }
                }
            }
            panic!("timed out waiting for {what}\n{all}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn run_e2e(nebula: &Path, tag: &str) {
    require_root();
    assert!(
        nebula.is_file(),
        "nebula binary {} not found (set NEBULA_BIN or build nebula-node)",
        nebula.display()
    );
    let ip = require("ip");
    for t in ["nft", "curl", "unshare", "ping"] {
        require(t);
    }
    let python = require("/usr/bin/python3");
    let t = tempfile::tempdir().expect("tempdir");
    let out = render_adr(t.path());
    let mut net = Net {
        prefix: format!("npe{}{tag}", std::process::id() % 100_000),
        ip,
        children: Vec::new(),
    };
    build_topology(&net);

    // Kshitiz: forwarding on, edge rules loaded from its bundle (what nebula-edge.service does).
    let unit = std::fs::read_to_string(out.join("kshitiz/nebula-edge.service")).expect("unit");
    assert!(unit.contains("sysctl -q -w net.ipv4.ip_forward=1"));
    net.sh("ksh", "sysctl -qw net.ipv4.ip_forward=1");
    ok(&mut net.exec(
        "ksh",
        &[
            "nft",
            "-f",
            &out.join("kshitiz/nebula-edge.nft").display().to_string(),
        ],
    ));

    // The nebula daemons, each seeing its own bundle as /etc/nebula.
    for (ns, host) in [
        ("ksh", "kshitiz"),
        ("vm1", "vyom-ingress-1"),
        ("vm2", "vyom-ingress-2"),
    ] {
        let inner = in_bundle_command(&out.join(host), nebula, &[]);
        let mut c = net.exec(ns, &[]);
        c.arg(inner.get_program()).args(inner.get_args());
        net.spawn(c, &t.path().join(format!("nebula-{host}.log")));
    }
    // HTTP servers: 443 on both VMs (each says who it is), and 8080 on vm1, which nothing allows.
    for (ns, host) in [("vm1", "vyom-ingress-1"), ("vm2", "vyom-ingress-2")] {
        let www = t.path().join(format!("www-{host}"));
        std::fs::create_dir_all(&www).expect("www");
        std::fs::write(www.join("index.html"), host).expect("index");
        for port in ["443", "8080"] {
            let mut c = net.exec(ns, &[]);
            c.arg(&python)
                .args([
                    "-m",
                    "http.server",
                    port,
                    "--bind",
                    "0.0.0.0",
                    "--directory",
                ])
                .arg(&www);
            net.spawn(c, &t.path().join(format!("http-{host}-{port}.log")));
        }
    }

    // Kshitiz reaches both VMs' 443 over the mesh once the tunnels are up.
    for (addr, host) in [
        ("10.10.0.11", "vyom-ingress-1"),
        ("10.10.0.12", "vyom-ingress-2"),
    ] {
        wait_for(
            &format!("kshitiz -> {host}:443 over the mesh"),
            45,
            || curl(&net, "ksh", &format!("http://{addr}:443/"), 2).as_deref() == Some(host),
            t.path(),
        );
    }

    // The internet client, through Kshitiz's public 443: both VMs answer, round-robin.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let body = curl(&net, "cli", "http://203.0.113.10:443/", 10)
            .expect("client fetch through the forwarded port");
        assert!(
            body == "vyom-ingress-1" || body == "vyom-ingress-2",
            "{body}"
        );
        seen.insert(body);
    }
    assert_eq!(seen.len(), 2, "round-robin reached only {seen:?}");

    // What the inventory does not allow does not pass (the servers themselves are up).
    assert_eq!(
        curl(&net, "vm1", "http://127.0.0.1:8080/", 3).as_deref(),
        Some("vyom-ingress-1")
    );
    assert_eq!(
        curl(&net, "ksh", "http://10.10.0.11:8080/", 3),
        None,
        "kshitiz reached vyom-ingress-1:8080, which no rule allows"
    );
    assert_eq!(
        curl(&net, "vm1", "http://10.10.0.12:443/", 3),
        None,
        "one ingress VM reached the other, which no rule allows"
    );
    assert_eq!(
        curl(&net, "cli", "http://203.0.113.10:8080/", 3),
        None,
        "a port that is not forwarded answered"
    );
    // ICMP: ingress -> lighthouse allowed; lighthouse -> ingress not.
    let ping = |ns: &str, addr: &str| {
        run(&mut net.exec(ns, &["ping", "-c", "1", "-W", "2", addr]))
            .status
            .success()
    };
    assert!(
        ping("vm1", "10.10.0.1"),
        "vyom-ingress-1 cannot ping the lighthouse"
    );
    assert!(
        !ping("ksh", "10.10.0.12"),
        "the lighthouse pinged vyom-ingress-2"
    );
}

#[test]
fn adr_mesh_end_to_end_with_our_nebula() {
    run_e2e(&our_nebula(), "o");
}

/// The same run with Go Nebula 1.11.0 as the daemon: shows the rendered bundles work today.
#[test]
fn adr_mesh_end_to_end_with_go_nebula_1_11_0() {
    run_e2e(Path::new("/opt/go-nebula/1.11.0/usr/bin/nebula"), "g");
}
