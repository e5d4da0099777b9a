//! Protocol-level interop with real Go Nebula (Debian's 1.6.1 and 1.11.0), no root needed: Go runs
//! with `tun.disabled: true` on loopback; our engine is driven over a real UDP socket by this harness.
//! The Go binaries come from `.ci/install-go-nebula.sh` (the test fails, loudly, if they are missing).
#![cfg(feature = "interop")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nebula_cert::{keys, Curve, Version};
use nebula_core::aead::CipherKind;
use nebula_core::engine::{CloseReason, Engine, EngineConfig, Event, Outputs, Reload};
use nebula_core::filter::AllowAll;
use nebula_core::firewall::{Firewall, FirewallConfig};
use nebula_core::pki::Pki;
use nebula_core::sim::TestCa;
use rand::SeedableRng;

const GO_161: &str = "/usr/bin/nebula";
const GO_1110: &str = "/opt/go-nebula/1.11.0/usr/bin/nebula";

fn go_binary(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: run `bash .ci/install-go-nebula.sh` (scripts/test.sh does) to install Go Nebula"
    );
    p
}

fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// A running Go nebula with its log lines collected.
struct GoNode {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl GoNode {
    fn start(bin: &Path, config: &str, dir: tempfile::TempDir) -> GoNode {
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("write config");
        let mut child = Command::new(bin)
            .arg("-config")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn go nebula");
        let log = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().expect("log").push(line);
                }
            });
        }
        GoNode {
            child,
            log,
            _dir: dir,
        }
    }

    fn logged(&self, needle: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains(needle))
    }

    fn dump(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    fn terminate(&mut self) {
        // SIGTERM: Go closes its tunnels (sends closeTunnel) on a clean stop.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }
}

impl Drop for GoNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our engine on a real UDP socket.
struct Driver {
    engine: Engine,
    sock: UdpSocket,
    events: Vec<Event>,
}

impl Driver {
    fn now_unix_nanos() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }

    fn new(cfg: EngineConfig, pki: Pki) -> Driver {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let engine = Engine::new(
            cfg,
            pki,
            Box::new(AllowAll),
            Box::new(rand::rngs::StdRng::from_entropy()),
            Instant::now(),
            Self::now_unix_nanos(),
        );
        Driver {
            engine,
            sock,
            events: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("addr")
    }

    fn flush(&mut self, out: Outputs) {
        for t in out.transmits {
            let _ = self.sock.send_to(&t.payload, t.to);
        }
        self.events.extend(out.events);
    }

    fn with<F: FnOnce(&mut Engine, Instant, &mut Outputs)>(&mut self, f: F) {
        let mut out = Outputs::default();
        f(&mut self.engine, Instant::now(), &mut out);
        self.flush(out);
    }

    /// Pump packets and timers until `until` returns true or `limit` passes.
    fn run_until(&mut self, limit: Duration, mut until: impl FnMut(&Driver) -> bool) -> bool {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 9001];
        while Instant::now() < end {
            if until(self) {
                return true;
            }
            let wait = self
                .engine
                .poll_timeout()
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(50))
                .clamp(Duration::from_millis(1), Duration::from_millis(50));
            self.sock.set_read_timeout(Some(wait)).expect("timeout");
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                let mut out = Outputs::default();
                let _ = self
                    .engine
                    .handle_outside(Instant::now(), from, &mut buf[..n], &mut out);
                self.flush(out);
            }
            let mut out = Outputs::default();
            self.engine.handle_timeout(Instant::now(), &mut out);
            self.flush(out);
        }
        until(self)
    }
}

struct Case {
    bin: &'static str,
    version: Version,
    cipher: CipherKind,
    curve: Curve,
}

fn cipher_name(c: CipherKind) -> &'static str {
    match c {
        CipherKind::AesGcm => "aes",
        CipherKind::ChaChaPoly => "chachapoly",
    }
}

const GO_VPN: &str = "10.77.0.2";
const OUR_VPN: &str = "10.77.0.1";

/// Write the Go side's PKI and return (config text, our Pki).
fn setup(case: &Case, dir: &Path, go_port: u16, our_addr: Option<SocketAddr>) -> (String, Pki) {
    let ca = TestCa::new("interop-ca", case.curve, case.version);
    let (go_cert, go_key) = ca.host("go-node", &format!("{GO_VPN}/16"), &["go"]);
    std::fs::write(dir.join("ca.crt"), ca.cert.marshal_pem()).expect("ca");
    std::fs::write(dir.join("host.crt"), go_cert.marshal_pem()).expect("crt");
    std::fs::write(
        dir.join("host.key"),
        keys::marshal_private_key(case.curve, &go_key),
    )
    .expect("key");
    let our = ca.pki("rust-node", &format!("{OUR_VPN}/16"));
    let lighthouse = match our_addr {
        Some(a) => format!(
            "static_host_map:\n  \"{OUR_VPN}\": [\"{a}\"]\nlighthouse:\n  am_lighthouse: false\n  interval: 1\n  hosts:\n    - \"{OUR_VPN}\"\n"
        ),
        None => "lighthouse:\n  am_lighthouse: false\n".to_string(),
    };
    let cfg = format!(
        "pki:\n  ca: {d}/ca.crt\n  cert: {d}/host.crt\n  key: {d}/host.key\n{lighthouse}listen:\n  host: 127.0.0.1\n  port: {go_port}\ntun:\n  disabled: true\n  dev: gonebtest\ncipher: {cipher}\nhandshakes:\n  try_interval: 100ms\nlogging:\n  level: debug\nfirewall:\n  outbound:\n    - port: any\n      proto: any\n      host: any\n  inbound:\n    - port: any\n      proto: any\n      host: any\n",
        d = dir.display(),
        cipher = cipher_name(case.cipher),
    );
    (cfg, our)
}

/// Handshake (either side first), then many test packets each way... as far as Go allows: Go answers
/// our testRequests with testReplies echoing the payload.
fn run_case(case: &Case, go_initiates: bool) {
    let bin = go_binary(case.bin);
    let dir = tempfile::tempdir().expect("tempdir");
    let go_port = free_udp_port();
    let go_addr: SocketAddr = format!("127.0.0.1:{go_port}").parse().expect("addr");
    let go_vpn: IpAddr = GO_VPN.parse().expect("ip");

    // Our side first, so Go can be told our port when it initiates.
    let probe_ca_dir = dir.path().to_path_buf();
    let (cfg_text, pki) = setup(case, &probe_ca_dir, go_port, None);
    let mut static_map = HashMap::new();
    static_map.insert(go_vpn, vec![go_addr]);
    let cfg = EngineConfig {
        cipher: case.cipher,
        static_host_map: if go_initiates {
            HashMap::new()
        } else {
            static_map
        },
        ..EngineConfig::default()
    };
    let mut us = Driver::new(cfg, pki);
    let cfg_text = if go_initiates {
        // Make Go treat us as its lighthouse so it dials us by itself.
        let (t, pki2) = setup(case, &probe_ca_dir, go_port, Some(us.addr()));
        let firewall = Firewall::new(&FirewallConfig::default(), pki2.networks(), &[])
            .expect("default firewall");
        let reload = Reload {
            config: us.engine.config().clone(),
            pki: pki2,
            firewall,
        };
        us.engine
            .reload(Instant::now(), reload, &mut Outputs::default());
        t
    } else {
        cfg_text
    };
    let label = format!(
        "{} {:?} {:?} {:?} go_initiates={go_initiates}",
        case.bin, case.version, case.cipher, case.curve
    );
    let mut go = GoNode::start(&bin, &cfg_text, dir);
    std::thread::sleep(Duration::from_millis(300));

    if !go_initiates {
        us.with(|e, now, out| e.send_test_request(now, go_vpn, b"hello", out));
    }
    let up = us.run_until(Duration::from_secs(10), |d| {
        d.engine.tunnel_to(&go_vpn).is_some()
    });
    assert!(up, "{label}: no tunnel\n--- go log ---\n{}", go.dump());
    let initiator = us.engine.tunnel_to(&go_vpn).map(|t| t.initiator);
    assert_eq!(initiator, Some(!go_initiates), "{label}: who initiated");

    // A few hundred test packets; Go echoes each payload.
    const N: u32 = 300;
    for i in 0..N {
        let payload = format!("probe-{i}");
        us.with(|e, now, out| e.send_test_request(now, go_vpn, payload.as_bytes(), out));
        if i % 10 == 9 {
            us.run_until(Duration::from_millis(5), |_| false);
        }
    }
    let replies = |d: &Driver| {
        d.events
            .iter()
            .filter_map(|e| match e {
                Event::TestReply { payload, .. } => Some(payload.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let base = if go_initiates { 0 } else { 1 }; // the "hello" that started the handshake
    let all = us.run_until(Duration::from_secs(5), |d| {
        replies(d).len() >= base + N as usize
    });
    let got = replies(&us);
    assert!(
        all,
        "{label}: only {} of {} replies\n{}",
        got.len(),
        base + N as usize,
        go.dump()
    );
    assert_eq!(got.len(), base + N as usize, "{label}: duplicate replies");
    if case.bin == GO_161 {
        // 1.6.1 writes its reply header over the echoed bytes (the reply buffer aliases the
        // decrypted request), so only the length survives: check lengths.
        let mut want: Vec<usize> = (0..N).map(|i| format!("probe-{i}").len()).collect();
        let mut have: Vec<usize> = got[base..].iter().map(|p| p.len()).collect();
        want.sort_unstable();
        have.sort_unstable();
        assert_eq!(have, want, "{label}: reply lengths");
    } else {
        let set: std::collections::HashSet<Vec<u8>> = got.into_iter().collect();
        for i in 0..N {
            assert!(
                set.contains(format!("probe-{i}").as_bytes()),
                "{label}: reply {i} missing"
            );
        }
    }

    if go_initiates {
        // Go closes its tunnels when stopped: our side must see closeTunnel.
        go.terminate();
        let closed = us.run_until(Duration::from_secs(5), |d| {
            d.events.iter().any(|e| {
                matches!(
                    e,
                    Event::TunnelDown {
                        reason: CloseReason::PeerClosed,
                        ..
                    }
                )
            })
        });
        assert!(
            closed,
            "{label}: Go's closeTunnel not honoured\n{}",
            go.dump()
        );
    } else {
        // We close: Go must tear the tunnel down.
        us.with(|e, _, out| e.close_all(out));
        let mut seen = false;
        for _ in 0..50 {
            if go.logged("Close tunnel received") {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            seen,
            "{label}: Go did not honour our closeTunnel\n{}",
            go.dump()
        );
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for cipher in [CipherKind::AesGcm, CipherKind::ChaChaPoly] {
        v.push(Case {
            bin: GO_161,
            version: Version::V1,
            cipher,
            curve: Curve::Curve25519,
        });
        v.push(Case {
            bin: GO_1110,
            version: Version::V1,
            cipher,
            curve: Curve::Curve25519,
        });
        v.push(Case {
            bin: GO_1110,
            version: Version::V2,
            cipher,
            curve: Curve::Curve25519,
        });
    }
    v.push(Case {
        bin: GO_1110,
        version: Version::V2,
        cipher: CipherKind::AesGcm,
        curve: Curve::P256,
    });
    v
}

#[test]
fn we_initiate_to_go() {
    for c in cases() {
        run_case(&c, false);
    }
}

#[test]
fn go_initiates_to_us() {
    for c in cases() {
        run_case(&c, true);
    }
}
