//! The systemd watchdog and the control API, without root: a node with no TUN on loopback, under
//! a test supervisor that speaks `NOTIFY_SOCKET` (as systemd does for `Type=notify` with
//! `WatchdogSec`). The node pings while its data plane is alive; once the data plane stalls (the
//! test hook), the pings stop and the watchdog lapses. `nebula-ctl health` says the same.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nebula_cert::{Curve, Version};
use support::{our_nebula, Pki};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ctl(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nebula-ctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("nebula-ctl")
}

/// A node with no TUN on loopback, its control socket at `socket`, started with `env`.
fn start(dir: &Path, crt: &Path, key: &Path, socket: &Path, env: &[(&str, &Path)]) -> Node {
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "pki: {{ca: {}, cert: {}, key: {}}}\nlisten: {{host: 127.0.0.1, port: 0}}\ntun: {{disabled: true}}\ncontrol: {{socket: {}}}\n",
            dir.join("ca.crt").display(),
            crt.display(),
            key.display(),
            socket.display()
        ),
    )
    .expect("config");
    let mut cmd = Command::new(our_nebula());
    cmd.args(["-config", &cfg.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let node = Node(cmd.spawn().expect("nebula"));
    let end = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    node
}

/// Datagrams received on `sock` within `window`.
fn received(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    let end = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < end {
        sock.set_read_timeout(Some(
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .expect("timeout");
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn the_watchdog_lapses_when_the_data_plane_stalls() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let (crt, key) = pki.host(dir.path(), "wd", "10.66.0.1/24", &[]);
    let socket = dir.path().join("control.sock");
    let notify = dir.path().join("notify.sock");
    let supervisor = UnixDatagram::bind(&notify).expect("notify socket");
    let _node = start(
        dir.path(),
        &crt,
        &key,
        &socket,
        &[
            ("NOTIFY_SOCKET", notify.as_path()),
            ("WATCHDOG_USEC", Path::new("2000000")),
            ("NEBULA_TEST_HOOKS", Path::new("1")),
        ],
    );

    // READY, then a ping every half period (1 s) while the data plane works.
    let first = received(&supervisor, Duration::from_secs(5));
    assert!(first.iter().any(|m| m == "READY=1"), "{first:?}");
    let pings = first.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 4, "{pings} watchdog pings in 5 s: {first:?}");
    let h = ctl(&socket, &["health"]);
    assert_eq!(
        h.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&h.stdout)
    );

    // The data plane stalls: the pings stop, so systemd would see the watchdog lapse (after
    // one period) and restart the node. The worker heartbeat is given 5 s to go stale.
    let stall = ctl(&socket, &["debug-stall-workers"]);
    assert!(
        stall.status.success(),
        "{}",
        String::from_utf8_lossy(&stall.stderr)
    );
    std::thread::sleep(Duration::from_secs(6));
    let _ = received(&supervisor, Duration::from_millis(100));
    let after = received(&supervisor, Duration::from_secs(3));
    assert!(
        !after.iter().any(|m| m == "WATCHDOG=1"),
        "the node still pings with its data plane stalled: {after:?}"
    );
    let h = ctl(&socket, &["health"]);
    assert_eq!(h.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&h.stdout).contains("data plane stalled"));
}

/// `health` fails for a certificate that expires in two days, and `cert` shows it; a request of
/// another API version is refused by name.
#[test]
fn health_fails_for_a_certificate_about_to_expire() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let (crt, key) = pki.host_expiring(dir.path(), "soon", "10.66.0.2/24", 2 * 86_400);
    let socket = dir.path().join("control.sock");
    let _node = start(dir.path(), &crt, &key, &socket, &[]);
    let h = ctl(&socket, &["health"]);
    let out = String::from_utf8_lossy(&h.stdout).into_owned();
    assert_eq!(h.status.code(), Some(1), "{out}");
    assert!(
        out.contains("our certificate \"soon\" expires in 2.0 days"),
        "{out}"
    );
    // With a shorter horizon it is healthy.
    let h = ctl(&socket, &["health", "--days", "1"]);
    assert_eq!(
        h.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&h.stdout)
    );
    let c = ctl(&socket, &["cert"]);
    assert!(String::from_utf8_lossy(&c.stdout).contains("(2.0 days left)"));
    let r = nebula_node::status::api::call(
        &socket,
        &nebula_node::status::report::Request {
            version: 9,
            command: nebula_node::status::report::Command::Status,
        },
        Duration::from_secs(5),
    )
    .expect("answer");
    assert!(!r.ok);
    assert!(r.error.unwrap_or_default().contains("version 9"));
}
