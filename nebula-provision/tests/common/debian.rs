//! A real Debian bookworm system for tests (built by tests/debian-root.sh, unpacked into a temp
//! dir) running its own OpenSSH server as a chroot inside a network namespace the test creates.
//! Everything (processes in the chroot, the namespace, the files) goes when it is dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{ok, require, require_root, run, workspace_root};

/// Our package: $NEBULA_DEB, else the newest `nebula-rs_*.deb` in `$CARGO_TARGET_DIR/debian`
/// (where scripts/package.sh writes it). Panics with instructions when there is none.
pub fn our_deb() -> PathBuf {
    if let Some(p) = std::env::var_os("NEBULA_DEB") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "NEBULA_DEB={} does not exist", p.display());
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("debian");
    let mut debs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("nebula-rs_") && n.ends_with(".deb")
            })
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    debs.sort();
    match debs.pop() {
        Some((_, p)) => p,
        None => panic!(
            "no nebula-rs .deb in {}: build it first with `bash scripts/package.sh` \
             (same CARGO_TARGET_DIR), or point NEBULA_DEB at one",
            dir.display()
        ),
    }
}

/// The package names a .deb depends on (first of each alternative, no versions), so the
/// Debian root can carry them: the target has no package mirror to pull them from.
pub fn deb_depends(deb: &Path) -> Vec<String> {
    let out = run(Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .args(["Pre-Depends", "Depends"]));
    // "Field: value" lines (a dependency list never holds ": ").
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_once(": ").map_or(l, |(_, v)| v).to_string())
        .collect::<Vec<_>>()
        .join(",")
        .split(',')
        .filter_map(|d| {
            let first = d.split('|').next()?.trim();
            let name = first.split([' ', '(', ':']).next()?.trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// A field of a .deb's control file.
pub fn deb_field(deb: &Path, field: &str) -> String {
    ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field))
        .trim()
        .to_string()
}

static COUNT: AtomicU32 = AtomicU32::new(0);

/// A running Debian target: `root` is its file system, reachable as root over SSH at
/// `addr:22` (inside the namespace `netns`, joined to the host by a veth pair).
pub struct DebianTarget {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub netns: String,
    pub addr: String,
    pub port: u16,
    veth: String,
    sshd: Option<Child>,
}

impl DebianTarget {
    /// Builds (or takes from the cache) a Debian root with `extra` packages, unpacks it and starts
    /// its sshd. `dir/id` is the client key, `dir/known_hosts` knows the target.
    pub fn start(extra: &[String]) -> DebianTarget {
        require_root();
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = tempfile::Builder::new()
            .prefix("nebula-debian-target")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).expect("root dir");
        let tar = dir.path().join("root.tar");
        let script = workspace_root().join("nebula-provision/tests/debian-root.sh");
        ok(Command::new("bash").arg(&script).arg(&tar).args(extra));
        ok(Command::new(require("tar"))
            .args(["--numeric-owner", "-xf"])
            .arg(&tar)
            .arg("-C")
            .arg(&root));
        std::fs::remove_file(&tar).expect("rm tar");

        let keygen = require("ssh-keygen");
        for (name, comment) in [("hostkey", "debian target"), ("id", "test client")] {
            ok(Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(dir.path().join(name)));
        }
        let ssh_dir = root.join("root/.ssh");
        std::fs::create_dir_all(&ssh_dir).expect(".ssh");
        std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::copy(dir.path().join("id.pub"), ssh_dir.join("authorized_keys"))
            .expect("authorized_keys");
        std::fs::copy(
            dir.path().join("hostkey"),
            root.join("etc/ssh/test_hostkey"),
        )
        .expect("hostkey");
        std::fs::create_dir_all(root.join("run/sshd")).expect("/run/sshd");

        // The namespace and its link to the host: 10.213.<n>.1 (host) <-> .2 (target).
        let netns = format!("npans-{pid}-{n}");
        let veth = format!("vna{}{n}", pid % 100_000);
        let (host_ip, addr) = (format!("10.213.{n}.1"), format!("10.213.{n}.2"));
        let ip = require("ip");
        ok(Command::new(&ip).args(["netns", "add", &netns]));
        let mut t = DebianTarget {
            dir,
            root,
            netns: netns.clone(),
            addr: addr.clone(),
            port: 22,
            veth: veth.clone(),
            sshd: None,
        };
        ok(Command::new(&ip).args([
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]));
        ok(Command::new(&ip).args(["addr", "add", &format!("{host_ip}/30"), "dev", &veth]));
        ok(Command::new(&ip).args(["link", "set", &veth, "up"]));
        for args in [
            vec!["addr", "add", &format!("{addr}/30"), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            ok(Command::new(&ip).arg("-n").arg(&netns).args(args));
        }

        let hostpub =
            std::fs::read_to_string(t.dir.path().join("hostkey.pub")).expect("hostkey.pub");
        std::fs::write(
            t.dir.path().join("known_hosts"),
            format!("{addr} {hostpub}"),
        )
        .expect("known_hosts");
        // sshd in the chroot, with /dev and /proc mounted in a private mount namespace.
        let sshd_cmd = format!(
            "/usr/sbin/sshd -D -e -f /dev/null -p 22 -h /etc/ssh/test_hostkey \
             -o ListenAddress={addr} -o AuthorizedKeysFile=/root/.ssh/authorized_keys \
             -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no \
             -o KbdInteractiveAuthentication=no -o UsePAM=no -o PidFile=none \
             -o 'Subsystem=sftp internal-sftp'"
        );
        t.sshd = Some(Command::new(&ip)
            .args(["netns", "exec", &netns])
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --rbind /dev \"$0/dev\" && mount -t proc proc \"$0/proc\" && exec chroot \"$0\" {sshd_cmd}"
            ))
            .arg(&t.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(t.dir.path().join("sshd.log")).expect("log"))
            .spawn()
            .expect("start sshd"));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ss = run(Command::new(&ip).args(["netns", "exec", &netns]).args([
                "ss",
                "-Hltn",
                "sport = :22",
            ]));
            if !String::from_utf8_lossy(&ss.stdout).trim().is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sshd in the Debian root did not start: {}",
                std::fs::read_to_string(t.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        t
    }

    /// SSH options for the inventory's `ssh.options`.
    pub fn ssh_options(&self) -> Vec<String> {
        let d = self.dir.path().display();
        vec![
            format!("UserKnownHostsFile={d}/known_hosts"),
            "StrictHostKeyChecking=yes".into(),
        ]
    }

    /// A command run inside the target (its network namespace, chroot, /dev and /proc).
    pub fn exec(&self, script: &str) -> Command {
        let mut c = Command::new(require("ip"));
        c.args(["netns", "exec", &self.netns])
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "mount --rbind /dev \"$0/dev\" && mount -t proc proc \"$0/proc\" && exec chroot \"$0\" sh -c \"$1\"",
            )
            .arg(&self.root)
            .arg(script);
        c
    }

    /// The target's path `p` (absolute inside the target) on this machine.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
}

impl Drop for DebianTarget {
    fn drop(&mut self) {
        if let Some(c) = &mut self.sshd {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever still runs in the chroot (ssh sessions, a daemon a test started) goes too.
        for _ in 0..20 {
            let mut left = 0;
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                if std::fs::read_link(e.path().join("root")).ok().as_deref() == Some(&self.root) {
                    left += 1;
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
            }
            if left == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}
