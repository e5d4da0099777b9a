//! Test kit for end-to-end tests in network namespaces (root): a "wan" switch namespace, hosts on
//! it, hosts behind NAT routers, processes started inside, and cleanup that always runs.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nebula_cert::cert::{Certificate, TbsCertificate};
use nebula_cert::signing::CaSigningKey;
use nebula_cert::{keys, Curve, Version};

pub const GO_161: &str = "/usr/bin/nebula";
pub const GO_1110: &str = "/opt/go-nebula/1.11.0/usr/bin/nebula";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Which nebula a test node runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Impl {
    Ours,
    Go161,
    Go1110,
}

impl Impl {
    /// The command line that runs this implementation with `cfg`.
    pub fn cmd(self, cfg: &Path) -> String {
        let bin = match self {
            Impl::Ours => our_nebula(),
            Impl::Go161 => go_binary(GO_161),
            Impl::Go1110 => go_binary(GO_1110),
        };
        format!("{} -config {}", bin.display(), cfg.display())
    }
}

/// Path of our `nebula` binary (built by cargo for integration tests), or `$NEBULA_TEST_BIN` when
/// set (a copy taken right after the build, when a shared target dir may be rebuilt meanwhile).
pub fn our_nebula() -> PathBuf {
    match std::env::var_os("NEBULA_TEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_nebula")),
    }
}

pub fn go_binary(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: run `bash scripts/install-deps.sh` (scripts/test.sh does) to install Go Nebula"
    );
    p
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "namespace tests need root (CI runs as root)");
    assert!(
        Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing"
    );
}

pub fn sh(cmd: &str) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run bash")
}

/// Run and insist on success.
pub fn must(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "command failed: {cmd}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A set of namespaces for one test; everything is deleted on drop.
pub struct Lab {
    pub prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    pub dir: tempfile::TempDir,
    wan_hosts: u32,
}

impl Lab {
    /// A new lab with a "wan" namespace holding a bridge on 192.0.2.0/24 (TEST-NET-1, only ever
    /// inside our namespaces).
    pub fn new(tag: &str) -> Lab {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("nt{}{}{}", tag, std::process::id() % 100000, n);
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
            wan_hosts: 0,
        };
        let wan = lab.ns("wan");
        must(&format!(
            "ip -n {wan} link add br0 type bridge && ip -n {wan} link set br0 up && ip -n {wan} link set lo up"
        ));
        lab
    }

    /// Create (and remember) a namespace named `<prefix>-<name>`.
    pub fn ns(&mut self, name: &str) -> String {
        let full = format!("{}-{}", self.prefix, name);
        must(&format!(
            "ip netns add {full} && ip -n {full} link set lo up"
        ));
        self.namespaces.push(full.clone());
        full
    }

    pub fn wan(&self) -> String {
        format!("{}-wan", self.prefix)
    }

    fn veth_names(&mut self) -> (String, String) {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = format!("v{}{}", std::process::id() % 10000, n);
        (format!("{base}a"), format!("{base}b"))
    }

    /// A host directly on the wan with address `ip`/24 (e.g. "192.0.2.1").
    pub fn public_host(&mut self, name: &str, ip: &str) -> String {
        let ns = self.ns(name);
        let wan = self.wan();
        let (a, b) = self.veth_names();
        must(&format!(
            "ip link add {a} netns {ns} type veth peer name {b} netns {wan} && \
             ip -n {wan} link set {b} master br0 up && \
             ip -n {ns} link set {a} name eth0 && ip -n {ns} addr add {ip}/24 dev eth0 && ip -n {ns} link set eth0 up"
        ));
        self.wan_hosts += 1;
        ns
    }

    /// A host behind its own NAT router: router on the wan at `router_ip`, LAN `lan_prefix`.1/24,
    /// host at `lan_prefix`.2. `symmetric` makes the NAT pick a random port per destination.
    pub fn natted_host(
        &mut self,
        name: &str,
        router_ip: &str,
        lan_prefix: &str,
        symmetric: bool,
    ) -> (String, String) {
        let router = self.public_host(&format!("{name}r"), router_ip);
        let host = self.ns(name);
        let (a, b) = self.veth_names();
        must(&format!(
            "ip link add {a} netns {host} type veth peer name {b} netns {router} && \
             ip -n {router} link set {b} name lan0 && ip -n {router} addr add {lan_prefix}.1/24 dev lan0 && ip -n {router} link set lan0 up && \
             ip -n {host} link set {a} name eth0 && ip -n {host} addr add {lan_prefix}.2/24 dev eth0 && ip -n {host} link set eth0 up && \
             ip -n {host} route add default via {lan_prefix}.1 && \
             ip netns exec {router} sysctl -qw net.ipv4.ip_forward=1"
        ));
        let random = if symmetric { " --random-fully" } else { "" };
        must(&format!(
            "ip netns exec {router} iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE{random}"
        ));
        (host, router)
    }

    /// Start `cmd` inside `ns`, output to `<dir>/<log>`.
    pub fn spawn(&mut self, ns: &str, cmd: &str, log: &str) -> usize {
        let logf = self.dir.path().join(log);
        let f = std::fs::File::create(&logf).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "bash", "-c", &format!("exec {cmd}")])
            .stdout(Stdio::from(f.try_clone().expect("dup")))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("spawn");
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn pid(&self, idx: usize) -> u32 {
        self.children[idx].id()
    }

    pub fn kill(&mut self, idx: usize, signal: &str) {
        let _ = sh(&format!("kill -{signal} {}", self.children[idx].id()));
    }

    pub fn wait_exit(&mut self, idx: usize, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.children[idx].try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default()
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    pub fn write(&self, f: &str, content: &str) -> PathBuf {
        let p = self.path(f);
        let mut file = std::fs::File::create(&p).expect("create");
        file.write_all(content.as_bytes()).expect("write");
        p
    }

    /// Run in a namespace.
    pub fn exec(&self, ns: &str, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns, "bash", "-c", cmd])
            .output()
            .expect("ip netns exec")
    }

    /// Ping `dst` from `ns` until it answers or `limit` passes.
    pub fn wait_ping(&self, ns: &str, dst: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self
                .exec(ns, &format!("ping -c 1 -W 1 {dst}"))
                .status
                .success()
            {
                return true;
            }
        }
        false
    }

    /// Send `mb` MiB over TCP from `from_ns` to `to_ns` at `to_ip`:`port`; compare checksums.
    pub fn tcp_transfer(
        &mut self,
        from_ns: &str,
        to_ns: &str,
        to_ip: &str,
        port: u16,
        mb: u32,
    ) -> bool {
        let src = self.path(&format!("src-{port}.bin"));
        let dst = self.path(&format!("dst-{port}.bin"));
        must(&format!("head -c {}M /dev/urandom > {}", mb, src.display()));
        let server = self.spawn(
            to_ns,
            &format!("timeout 60 nc -l {port} > {}", dst.display()),
            &format!("nc-server-{port}.log"),
        );
        std::thread::sleep(Duration::from_millis(300));
        let o = self.exec(
            from_ns,
            &format!("timeout 60 nc -N -w 10 {to_ip} {port} < {}", src.display()),
        );
        let _ = self.wait_exit(server, Duration::from_secs(30));
        if !o.status.success() {
            return false;
        }
        let a = must(&format!("sha256sum < {}", src.display()));
        let b = must(&format!("sha256sum < {}", dst.display()));
        a == b
    }
}

impl Lab {
    /// Send 300 numbered UDP datagrams of ~1,000 bytes from `from_ns` to `to_ip`:`port` and
    /// return (received, corrupted): every received datagram must be one that was sent, intact.
    pub fn udp_transfer(
        &mut self,
        from_ns: &str,
        to_ns: &str,
        to_ip: &str,
        port: u16,
    ) -> (usize, usize) {
        let dst = self.path(&format!("udp-{port}.out"));
        let server = self.spawn(
            to_ns,
            &format!("timeout 15 nc -u -l {port} > {}", dst.display()),
            &format!("udp-server-{port}.log"),
        );
        std::thread::sleep(Duration::from_millis(300));
        let pad = "x".repeat(1000);
        let o = self.exec(
            from_ns,
            &format!(
                "for i in $(seq 1 300); do printf 'dgram-%05d-{pad}\\n' $i; sleep 0.002; done | timeout 15 nc -u -w 1 {to_ip} {port}"
            ),
        );
        assert!(
            o.status.success(),
            "udp sender failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
        self.kill(server, "TERM");
        let _ = self.wait_exit(server, Duration::from_secs(5));
        let got = std::fs::read_to_string(&dst).unwrap_or_default();
        let mut ok = 0;
        let mut bad = 0;
        for line in got.lines() {
            let good = line.len() == 12 + pad.len()
                && line.starts_with("dgram-")
                && line[6..11].chars().all(|c| c.is_ascii_digit())
                && line[12..] == pad;
            if good {
                ok += 1;
            } else {
                bad += 1;
            }
        }
        (ok, bad)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            // Kill anything left inside, then delete.
            let _ = sh(&format!(
                "ip netns pids {ns} 2>/dev/null | xargs -r kill -9"
            ));
            let _ = sh(&format!("ip netns del {ns}"));
        }
    }
}

/// A CA and host certificates written as files.
pub struct Pki {
    pub ca: Certificate,
    pub key: CaSigningKey,
    pub curve: Curve,
    pub version: Version,
}

impl Pki {
    pub fn new(version: Version, curve: Curve) -> Pki {
        let key = keys::generate_ca_key(curve);
        let now = now_unix();
        let tbs = TbsCertificate {
            version,
            name: "e2e-ca".into(),
            networks: vec![],
            unsafe_networks: vec![],
            groups: vec![],
            is_ca: true,
            not_before: now - 3600,
            not_after: now + 86400 * 30,
            public_key: keys::ca_public_key_bytes(&key),
            curve,
        };
        let ca = tbs.sign(None, &key).expect("ca");
        Pki {
            ca,
            key,
            curve,
            version,
        }
    }

    /// Write `ca.crt`, `<name>.crt`, `<name>.key` into `dir`; returns (crt, key) paths.
    pub fn host(
        &self,
        dir: &Path,
        name: &str,
        network: &str,
        groups: &[&str],
    ) -> (PathBuf, PathBuf) {
        self.host_until(dir, name, network, groups, now_unix() + 86400 * 29)
    }

    /// [`Pki::host`] with a certificate that expires `secs` from now.
    pub fn host_expiring(
        &self,
        dir: &Path,
        name: &str,
        network: &str,
        secs: i64,
    ) -> (PathBuf, PathBuf) {
        self.host_until(dir, name, network, &[], now_unix() + secs)
    }

    fn host_until(
        &self,
        dir: &Path,
        name: &str,
        network: &str,
        groups: &[&str],
        not_after: i64,
    ) -> (PathBuf, PathBuf) {
        let (private, public) = keys::keygen(self.curve);
        let now = now_unix();
        let tbs = TbsCertificate {
            version: self.version,
            name: name.into(),
            networks: vec![network.parse().expect("network")],
            unsafe_networks: vec![],
            groups: groups.iter().map(|g| g.to_string()).collect(),
            is_ca: false,
            not_before: now - 3600,
            not_after,
            public_key: public,
            curve: self.curve,
        };
        let cert = tbs.sign(Some(&self.ca), &self.key).expect("host cert");
        std::fs::write(dir.join("ca.crt"), self.ca.marshal_pem()).expect("ca");
        let crt = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&crt, cert.marshal_pem()).expect("crt");
        std::fs::write(&key, keys::marshal_private_key(self.curve, &private)).expect("key");
        (crt, key)
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Options for a node config.
pub struct NodeOpts<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    pub listen_port: u16,
    pub am_lighthouse: bool,
    /// (vpn, "ip:port") of the lighthouse, if any.
    pub lighthouse: Option<(&'a str, &'a str)>,
    /// extra static_host_map entries.
    pub statics: Vec<(&'a str, &'a str)>,
    pub cipher: &'a str,
    pub dev: &'a str,
    /// firewall inbound rules as YAML list items (already indented by 4).
    pub inbound: &'a str,
    pub punchy: bool,
}

/// A Go-compatible config.yml for a node.
pub fn node_config(o: &NodeOpts<'_>) -> String {
    let d = o.dir.display();
    let mut s = format!(
        "pki:\n  ca: {d}/ca.crt\n  cert: {d}/{n}.crt\n  key: {d}/{n}.key\n",
        n = o.name
    );
    let mut statics = o.statics.clone();
    if let Some(lh) = o.lighthouse {
        statics.push(lh);
    }
    if !statics.is_empty() {
        s.push_str("static_host_map:\n");
        for (vpn, addr) in &statics {
            s.push_str(&format!("  \"{vpn}\": [\"{addr}\"]\n"));
        }
    }
    s.push_str(&format!(
        "lighthouse:\n  am_lighthouse: {}\n  interval: 2\n",
        o.am_lighthouse
    ));
    if let Some((vpn, _)) = o.lighthouse {
        s.push_str(&format!("  hosts:\n    - \"{vpn}\"\n"));
    }
    s.push_str(&format!(
        "listen:\n  host: 0.0.0.0\n  port: {}\npunchy:\n  punch: {}\n  respond: {}\ncipher: {}\ntun:\n  dev: {}\n  mtu: 1300\nlogging:\n  level: debug\nfirewall:\n  outbound:\n    - port: any\n      proto: any\n      host: any\n  inbound:\n{}",
        o.listen_port, o.punchy, o.punchy, o.cipher, o.dev, o.inbound
    ));
    s
}

impl Lab {
    /// Write `<name>.yml` for `opts` and start `bin` with it in `ns`; logs go to `<name>.log`.
    pub fn start_node(&mut self, ns: &str, opts: &NodeOpts<'_>, bin: &Path) -> usize {
        let path = self.write(&format!("{}.yml", opts.name), &node_config(opts));
        self.spawn(
            ns,
            &format!("{} -config {}", bin.display(), path.display()),
            &format!("{}.log", opts.name),
        )
    }
}

/// Options for a node on a static mesh (no lighthouse, port 4242, allow-all inbound).
pub fn static_node<'a>(
    name: &'a str,
    dir: &'a Path,
    statics: &[(&'a str, &'a str)],
) -> NodeOpts<'a> {
    NodeOpts {
        name,
        dir,
        listen_port: 4242,
        am_lighthouse: false,
        lighthouse: None,
        statics: statics.to_vec(),
        cipher: "aes",
        dev: "nebula1",
        inbound: ALLOW_ALL_IN,
        punchy: false,
    }
}

/// Options for a node of a lighthouse mesh: the lighthouse listens on 4242 at `lighthouse`
/// (vpn, "ip:port"); the others use a random port, punch, and know only the lighthouse.
pub fn lighthouse_mesh_node<'a>(
    name: &'a str,
    dir: &'a Path,
    am_lighthouse: bool,
    lighthouse: (&'a str, &'a str),
    cipher: &'a str,
) -> NodeOpts<'a> {
    NodeOpts {
        name,
        dir,
        listen_port: if am_lighthouse { 4242 } else { 0 },
        am_lighthouse,
        lighthouse: if am_lighthouse {
            None
        } else {
            Some(lighthouse)
        },
        statics: vec![],
        cipher,
        dev: "nebula1",
        inbound: ALLOW_ALL_IN,
        punchy: true,
    }
}

/// Inbound rules allowing everything.
pub const ALLOW_ALL_IN: &str = "    - port: any\n      proto: any\n      host: any\n";
