//! Shared helpers of the integration tests: finding the tools (failing loudly when one is missing),
//! rendering the ADR inventory, running `nebula -test` on a bundle as `/etc/nebula`; a test sshd;
//! a Debian root with its own sshd (`debian`).
#![allow(dead_code)]

pub mod debian;
pub mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where tests/install-test-deps.sh puts the Python tools.
pub const TOOLS_VENV: &str = "/opt/nebula-provision-tools";
/// Passphrase the tests use for the ADR inventory's encrypted CA key.
pub const PASSPHRASE: &str = "correct horse battery staple";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

pub fn provision_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nebula-provision"))
}

fn missing(what: &str) -> ! {
    panic!(
        "required test tool missing: {what}. Install the test dependencies with \
         `bash nebula-provision/tests/install-test-deps.sh` (as root)."
    )
}

/// An executable by absolute path or on PATH; panics with instructions when absent.
pub fn require(name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        if p.is_file() {
            return p.to_path_buf();
        }
        missing(name);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let c = dir.join(name);
            if c.is_file() {
                return c;
            }
        }
    }
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let c = Path::new(dir).join(name);
        if c.is_file() {
            return c;
        }
    }
    missing(name)
}

/// A program of the tools venv.
pub fn venv_tool(name: &str) -> PathBuf {
    let p = Path::new(TOOLS_VENV).join("bin").join(name);
    if !p.is_file() {
        missing(&p.display().to_string());
    }
    p
}

/// Tests that need root (namespaces, mounts, sshd) say so clearly instead of failing obscurely.
pub fn require_root() {
    // The real uid, from /proc/self/status.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|r| r.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    assert_eq!(uid, "0", "this test needs root (namespaces, mounts, sshd)");
}

/// Runs a command, returning its output; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies `config/adr-inventory.yml` to `dir/config/adr-inventory.yml`, changing only the CA
/// key's Argon2 cost (Go's default, 2 GiB, takes ~20 s per use in a debug build).
pub fn adr_inventory_copy(dir: &Path) -> PathBuf {
    let src = workspace_root().join("config/adr-inventory.yml");
    let text = std::fs::read_to_string(&src).expect("read config/adr-inventory.yml");
    let mut v: serde_norway::Value = serde_norway::from_str(&text).expect("ADR inventory YAML");
    let argon2: serde_norway::Value =
        serde_norway::from_str("{memory_kib: 1024, iterations: 1, parallelism: 1}").expect("yaml");
    v["pki"]
        .as_mapping_mut()
        .expect("pki mapping")
        .insert("argon2".into(), argon2);
    let dst = dir.join("config/adr-inventory.yml");
    std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
    std::fs::write(&dst, serde_norway::to_string(&v).expect("yaml")).expect("write");
    dst
}

/// Renders the ADR inventory into `dir/out` with the CLI; returns the output directory.
pub fn render_adr(dir: &Path) -> PathBuf {
    let inv = adr_inventory_copy(dir);
    let out = dir.join("out");
    render(&inv, &out);
    out
}

/// The three mesh hosts of the ADR inventory.
pub const ADR_HOSTS: [&str; 3] = ["kshitiz", "vyom-ingress-1", "vyom-ingress-2"];

/// The ADR inventory's K3s VMs: `mesh: false`, in Terraform only (user-data, no bundle).
pub const ADR_NON_MEMBERS: [&str; 3] = ["vyom-k3s-cp-1", "vyom-k3s-worker-1", "vyom-k3s-worker-2"];

/// Our `nebula`: $NEBULA_BIN, or `debug/nebula` in cargo's target dir ($CARGO_TARGET_DIR when
/// set, else the workspace's `target/`).
pub fn our_nebula() -> PathBuf {
    match std::env::var_os("NEBULA_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("debug/nebula"),
    }
}

/// Runs `<bin> <args> -config /etc/nebula/config.yml` with `bundle` bind-mounted on /etc/nebula
/// in a private mount namespace (so the config's /etc/nebula paths are the bundle's files).
pub fn in_bundle_command(bundle: &Path, bin: &Path, args: &[&str]) -> Command {
    require_root();
    std::fs::create_dir_all("/etc/nebula").expect("/etc/nebula mount point");
    let mut c = Command::new(require("unshare"));
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/nebula && shift && exec \"$@\" -config /etc/nebula/config.yml")
        .arg(bundle)
        .arg("--")
        .arg(bin)
        .args(args);
    c
}

/// `nebula-provision render --inventory INV --out OUT` (with the test CA passphrase); must succeed.
pub fn render(inv: &Path, out: &Path) {
    ok(Command::new(provision_bin())
        .args(["render", "--inventory"])
        .arg(inv)
        .arg("--out")
        .arg(out)
        .env("NEBULA_CA_PASSPHRASE", PASSPHRASE));
}

/// The permission bits of `p` (panics when it is missing).
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `nebula-provision apply --inventory INV --out OUT ARGS...`: whether it succeeded, and its
/// stdout and stderr together.
pub fn run_apply(inv: &Path, out: &Path, args: &[&str]) -> (bool, String) {
    let o = run(Command::new(provision_bin())
        .arg("apply")
        .arg("--inventory")
        .arg(inv)
        .arg("--out")
        .arg(out)
        .args(args));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}
