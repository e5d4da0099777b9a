//! A real OpenSSH server for tests, on a loopback port: throwaway host key, a client key made here
//! (`id`), `known_hosts` written for it. Killed when dropped. Needs root.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ok, require, require_root};

pub struct Sshd {
    pub child: Child,
    pub port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts sshd on 127.0.0.1 with keys in `dir` (and `extra` `-o` options, e.g. `SetEnv=...`);
/// returns it and writes `dir/known_hosts`.
pub fn start_sshd(dir: &Path, extra: &[String]) -> Sshd {
    require_root();
    let sshd = require("/usr/sbin/sshd");
    let keygen = require("ssh-keygen");
    for (name, comment) in [("hostkey", "test host"), ("id", "test client")] {
        ok(Command::new(&keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(dir.join(name)));
    }
    std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).expect("authorized_keys");
    // sshd refuses to start without its privilege separation directory.
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
    let port = free_port();
    let hostpub = std::fs::read_to_string(dir.join("hostkey.pub")).expect("hostkey.pub");
    std::fs::write(
        dir.join("known_hosts"),
        format!("[127.0.0.1]:{port} {hostpub}"),
    )
    .expect("known_hosts");
    let opt = |k: &str, v: &str| format!("{k}={v}");
    let d = dir.display().to_string();
    let mut cmd = Command::new(&sshd);
    cmd.args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string()])
        .arg("-h")
        .arg(dir.join("hostkey"))
        .args(["-o", &opt("ListenAddress", "127.0.0.1")])
        .args([
            "-o",
            &opt("AuthorizedKeysFile", &format!("{d}/authorized_keys")),
        ])
        .args(["-o", "StrictModes=no"])
        .args(["-o", &opt("PidFile", &format!("{d}/sshd.pid"))])
        .args(["-o", "PasswordAuthentication=no"])
        .args(["-o", "KbdInteractiveAuthentication=no"])
        .args(["-o", "PermitRootLogin=prohibit-password"])
        .args(["-o", "UsePAM=no"])
        .args(["-o", "Subsystem=sftp internal-sftp"]);
    for e in extra {
        cmd.arg("-o").arg(e);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sshd.log")).expect("log"))
        .spawn()
        .expect("start sshd");
    let s = Sshd { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sshd did not start; see {d}/sshd.log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}
