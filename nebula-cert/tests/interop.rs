//! Interop between our `nebula-cert` binary and Go's (Debian 1.6.1 and 1.11.0): each tool signs under
//! the other's CA, verifies the other's output, rejects the other's foreign certs, and prints the same JSON.
//!
//! The Go binaries are installed by `.ci/install-go-nebula.sh`; a missing one FAILS these tests (with
//! that hint) rather than skipping them. Everything runs in fresh temp dirs with cheap Argon2 settings.
#![cfg(feature = "interop")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod support;
use support::assert_json_eq;

const GO_1_6_1: &str = "/usr/bin/nebula-cert";
const GO_1_11_0: &str = "/opt/go-nebula/1.11.0/usr/bin/nebula-cert";
/// Passphrase for the encrypted-CA cases.
const PASSPHRASE: &str = "interop passphrase";
/// Cheap Argon2 parameters (KiB, iterations, lanes) so the encrypted cases stay fast in debug builds.
const ARGON: [&str; 6] = [
    "-argon-memory",
    "1024",
    "-argon-iterations",
    "1",
    "-argon-parallelism",
    "2",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Ours,
    Go161,
    Go1110,
}

impl Tool {
    fn path(self) -> PathBuf {
        let p = match self {
            Tool::Ours => return PathBuf::from(env!("CARGO_BIN_EXE_nebula-cert")),
            Tool::Go161 => GO_1_6_1,
            Tool::Go1110 => GO_1_11_0,
        };
        let path = PathBuf::from(p);
        assert!(
            path.is_file(),
            "Go nebula-cert for {self:?} is missing at {p}: run .ci/install-go-nebula.sh (as root) to install \
             the reference Go binaries; these interop tests must not be skipped"
        );
        path
    }

    fn run(self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(self.path());
        cmd.current_dir(dir)
            .args(args)
            .env_remove("NEBULA_CA_PASSPHRASE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        match cmd.output() {
            Ok(out) => out,
            Err(e) => panic!("cannot run {self:?} ({}): {e}", self.path().display()),
        }
    }

    /// Runs and requires exit status 0.
    fn ok(self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.run(dir, args, env);
        assert!(
            out.status.success(),
            "{self:?} nebula-cert {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs and requires a non-zero exit status.
    fn fails(self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.run(dir, args, env);
        assert!(
            !out.status.success(),
            "{self:?} nebula-cert {args:?} unexpectedly succeeded:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `print -json -path <crt>` as a list of cert objects (1.6.1 prints one object per line,
    /// 1.10+ and ours one array).
    fn print_json(self, dir: &Path, crt: &str) -> Vec<Value> {
        let out = self.ok(dir, &["print", "-json", "-path", crt], &[]);
        let text = String::from_utf8_lossy(&out.stdout);
        let parse = |s: &str| -> Value {
            serde_json::from_str(s)
                .unwrap_or_else(|e| panic!("{self:?} print -json gave invalid JSON ({e}): {s}"))
        };
        if self == Tool::Go161 {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(parse)
                .collect()
        } else {
            match parse(&text) {
                Value::Array(items) => items,
                other => panic!("{self:?} print -json did not print an array: {other}"),
            }
        }
    }
}

/// What one cert family looks like: format version, curve, and flags in the dialect of each tool.
#[derive(Clone, Copy, Debug)]
struct Family {
    /// The Go tool this family is checked against.
    go: Tool,
    version: u8,
    curve: &'static str,
    ca_networks: &'static str,
    ca_unsafe: &'static str,
    host_networks: &'static str,
    host_unsafe: &'static str,
}

const CA_GROUPS: &str = "laptop,servers,ops";
const HOST_GROUPS: &str = "servers,ops";

const V1_161: Family = Family {
    go: Tool::Go161,
    version: 1,
    curve: "25519",
    ca_networks: "10.42.0.0/16",
    ca_unsafe: "10.200.0.0/16",
    host_networks: "10.42.3.4/16",
    host_unsafe: "10.200.7.0/24",
};
const V1_25519: Family = Family {
    go: Tool::Go1110,
    version: 1,
    curve: "25519",
    ..V1_161
};
const V1_P256: Family = Family {
    curve: "P256",
    ..V1_25519
};
const V2_25519: Family = Family {
    go: Tool::Go1110,
    version: 2,
    curve: "25519",
    ca_networks: "10.43.0.0/16,fd00:43::/32",
    ca_unsafe: "10.201.0.0/16,fd00:201::/32",
    host_networks: "fd00:43::9/64,10.43.2.9/16",
    host_unsafe: "10.201.1.0/24,fd00:201:1::/48",
};
const V2_P256: Family = Family {
    curve: "P256",
    ..V2_25519
};

fn ca_args(tool: Tool, f: &Family, name: &str, prefix: &str) -> Vec<String> {
    let crt = format!("{prefix}.crt");
    let key = format!("{prefix}.key");
    let mut a: Vec<String> = [
        "ca", "-name", name, "-groups", CA_GROUPS, "-out-crt", &crt, "-out-key", &key,
    ]
    .map(String::from)
    .to_vec();
    if tool == Tool::Go161 {
        a.extend(["-ips", f.ca_networks, "-subnets", f.ca_unsafe].map(String::from));
    } else {
        let v = f.version.to_string();
        a.extend(
            [
                "-version",
                v.as_str(),
                "-curve",
                f.curve,
                "-networks",
                f.ca_networks,
                "-unsafe-networks",
                f.ca_unsafe,
            ]
            .map(String::from),
        );
    }
    a
}

fn sign_args(tool: Tool, f: &Family, name: &str, ca: &str, out: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "sign",
        "-name",
        name,
        "-groups",
        HOST_GROUPS,
        "-ca-crt",
        &format!("{ca}.crt"),
        "-ca-key",
        &format!("{ca}.key"),
        "-out-crt",
        &format!("{out}.crt"),
    ]
    .map(String::from)
    .to_vec();
    if tool == Tool::Go161 {
        a.extend(["-ip", f.host_networks, "-subnets", f.host_unsafe].map(String::from));
    } else {
        a.extend(
            [
                "-networks",
                f.host_networks,
                "-unsafe-networks",
                f.host_unsafe,
            ]
            .map(String::from),
        );
    }
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create a temp dir: {e}"),
    }
}

/// Turns a 1.10+-shaped v1 cert object into the shape 1.6.1 prints: `networks`/`unsafeNetworks`
/// become `ips`/`subnets`, `curve` and `version` go, `null` lists become `[]`.
fn to_1_6_shape(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("version");
        obj.remove("curve");
        if let Some(Value::Object(d)) = obj.get_mut("details") {
            d.remove("curve");
            for (new, old) in [("networks", "ips"), ("unsafeNetworks", "subnets")] {
                let val = d.remove(new).unwrap_or(Value::Null);
                d.insert(
                    old.to_owned(),
                    if val.is_null() {
                        Value::Array(vec![])
                    } else {
                        val
                    },
                );
            }
            if d.get("groups").is_some_and(Value::is_null) {
                d.insert("groups".to_owned(), Value::Array(vec![]));
            }
        }
    }
    v
}

/// `print -json` of our tool and of `go` on the same file agree, field for field.
fn assert_same_print(go: Tool, dir: &Path, crt: &str) {
    let ours = Tool::Ours.print_json(dir, crt);
    let theirs = go.print_json(dir, crt);
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{crt}: ours printed {} certs, {go:?} {}",
        ours.len(),
        theirs.len()
    );
    for (i, (o, g)) in ours.iter().zip(&theirs).enumerate() {
        let o = if go == Tool::Go161 {
            to_1_6_shape(o)
        } else {
            o.clone()
        };
        assert_json_eq(&o, g, &format!("{crt}[{i}] print -json, ours vs {go:?}"));
    }
    // Our text `print` is 1.11's; it must match byte for byte.
    if go == Tool::Go1110 {
        let ours = Tool::Ours.ok(dir, &["print", "-path", crt], &[]).stdout;
        let theirs = go.ok(dir, &["print", "-path", crt], &[]).stdout;
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "{crt}: text print differs (left ours, right Go 1.11.0)"
        );
    }
}

fn verify_ok(tool: Tool, dir: &Path, ca: &str, crt: &str) {
    let out = tool.ok(
        dir,
        &[
            "verify",
            "-ca",
            &format!("{ca}.crt"),
            "-crt",
            &format!("{crt}.crt"),
        ],
        &[],
    );
    assert!(
        out.stdout.is_empty(),
        "{tool:?} verify printed on success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn verify_fails(tool: Tool, dir: &Path, ca: &str, crt: &str) {
    let out = tool.fails(
        dir,
        &[
            "verify",
            "-ca",
            &format!("{ca}.crt"),
            "-crt",
            &format!("{crt}.crt"),
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{tool:?} verify of a foreign cert must exit 1, not crash"
    );
}

/// CA made by `ca_tool`, host cert (with fresh key) signed by `sign_tool`; both tools verify it and
/// print the same JSON for the CA and the host.
fn cross_sign(f: Family, ca_tool: Tool, sign_tool: Tool) {
    let dir = tempdir();
    let d = dir.path();
    ca_tool.ok(d, &strs(&ca_args(ca_tool, &f, "Interop CA", "ca")), &[]);
    let mut sign = sign_args(sign_tool, &f, "host1", "ca", "host1");
    sign.extend(["-out-key".to_owned(), "host1.key".to_owned()]);
    sign_tool.ok(d, &strs(&sign), &[]);

    verify_ok(Tool::Ours, d, "ca", "host1");
    verify_ok(f.go, d, "ca", "host1");
    assert_same_print(f.go, d, "ca.crt");
    assert_same_print(f.go, d, "host1.crt");

    // keygen of one tool, `sign -in-pub` of the other: the cert must carry exactly that key.
    let (keygen_tool, signer) = (sign_tool, ca_tool);
    let mut keygen: Vec<&str> = vec!["keygen", "-out-key", "k2.key", "-out-pub", "k2.pub"];
    if keygen_tool != Tool::Go161 {
        keygen.extend(["-curve", f.curve]);
    }
    keygen_tool.ok(d, &keygen, &[]);
    let mut sign2 = sign_args(signer, &f, "host2", "ca", "host2");
    sign2.extend(["-in-pub".to_owned(), "k2.pub".to_owned()]);
    signer.ok(d, &strs(&sign2), &[]);
    verify_ok(Tool::Ours, d, "ca", "host2");
    verify_ok(f.go, d, "ca", "host2");
    assert_same_print(f.go, d, "host2.crt");

    let pub_pem = std::fs::read(d.join("k2.pub")).unwrap_or_default();
    let pub_key = match nebula_cert::pem::decode(&pub_pem) {
        Ok(Some((block, _))) => block.data,
        other => panic!("{keygen_tool:?} keygen -out-pub is not PEM: {other:?}"),
    };
    let printed = f.go.print_json(d, "host2.crt");
    let cert = printed
        .first()
        .unwrap_or_else(|| panic!("{:?} printed no cert", f.go));
    // v1 prints the key inside `details`, v2 at the top level.
    let key_hex = cert
        .get("publicKey")
        .or_else(|| cert.get("details").and_then(|d| d.get("publicKey")))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no publicKey in {cert}"));
    assert_eq!(
        key_hex,
        hex::encode(pub_key),
        "host2 cert does not carry the -in-pub key"
    );
}

/// Each tool rejects the other's host cert when given a CA that did not sign it (exit 1).
fn foreign_ca_rejected(f: Family) {
    let dir = tempdir();
    let d = dir.path();
    for (maker, checker) in [(Tool::Ours, f.go), (f.go, Tool::Ours)] {
        let pfx = format!("{maker:?}").to_lowercase();
        let (ca_a, ca_b, host) = (
            format!("{pfx}-ca-a"),
            format!("{pfx}-ca-b"),
            format!("{pfx}-host"),
        );
        maker.ok(d, &strs(&ca_args(maker, &f, "CA A", &ca_a)), &[]);
        maker.ok(d, &strs(&ca_args(maker, &f, "CA B", &ca_b)), &[]);
        let mut sign = sign_args(maker, &f, "h", &ca_b, &host);
        sign.extend(["-out-key".to_owned(), format!("{host}.key")]);
        maker.ok(d, &strs(&sign), &[]);
        verify_ok(checker, d, &ca_b, &host);
        verify_fails(checker, d, &ca_a, &host);
    }
}

#[test]
fn go_1_6_1_ca_ours_sign_v1_25519() {
    cross_sign(V1_161, Tool::Go161, Tool::Ours);
}

#[test]
fn ours_ca_go_1_6_1_sign_v1_25519() {
    cross_sign(V1_161, Tool::Ours, Tool::Go161);
}

#[test]
fn go_1_11_ca_ours_sign() {
    for f in [V1_25519, V1_P256, V2_25519, V2_P256] {
        cross_sign(f, Tool::Go1110, Tool::Ours);
    }
}

#[test]
fn ours_ca_go_1_11_sign() {
    for f in [V1_25519, V1_P256, V2_25519, V2_P256] {
        cross_sign(f, Tool::Ours, Tool::Go1110);
    }
}

#[test]
fn foreign_ca_rejected_by_both_tools() {
    for f in [V1_161, V1_25519, V2_25519, V2_P256] {
        foreign_ca_rejected(f);
    }
}

/// A v1 host cert signed with `sign -version 1` under a v2 CA (1.11 allows it) verifies in both tools.
#[test]
fn v1_host_under_v2_ca() {
    for (ca_tool, sign_tool) in [(Tool::Go1110, Tool::Ours), (Tool::Ours, Tool::Go1110)] {
        let dir = tempdir();
        let d = dir.path();
        ca_tool.ok(d, &strs(&ca_args(ca_tool, &V2_25519, "V2 CA", "ca")), &[]);
        sign_tool.ok(
            d,
            &[
                "sign",
                "-version",
                "1",
                "-name",
                "h1",
                "-networks",
                "10.43.5.5/16",
                "-ca-crt",
                "ca.crt",
                "-ca-key",
                "ca.key",
                "-out-crt",
                "h1.crt",
                "-out-key",
                "h1.key",
            ],
            &[],
        );
        verify_ok(Tool::Ours, d, "ca", "h1");
        verify_ok(Tool::Go1110, d, "ca", "h1");
        assert_same_print(Tool::Go1110, d, "h1.crt");
    }
}

/// An encrypted CA key made by one tool is usable by the other's `sign` with NEBULA_CA_PASSPHRASE,
/// and a wrong passphrase is refused (1.11.0 only: 1.6.1 has no encrypted keys).
#[test]
fn encrypted_ca_key_both_ways() {
    for f in [V2_25519, V1_P256] {
        for (ca_tool, sign_tool) in [(Tool::Go1110, Tool::Ours), (Tool::Ours, Tool::Go1110)] {
            let dir = tempdir();
            let d = dir.path();
            let mut ca = ca_args(ca_tool, &f, "Encrypted CA", "ca");
            ca.push("-encrypt".to_owned());
            ca.extend(ARGON.map(String::from));
            ca_tool.ok(d, &strs(&ca), &[("NEBULA_CA_PASSPHRASE", PASSPHRASE)]);
            let key = std::fs::read_to_string(d.join("ca.key")).unwrap_or_default();
            assert!(
                key.contains("ENCRYPTED PRIVATE KEY"),
                "{ca_tool:?} -encrypt wrote: {key}"
            );

            let mut sign = sign_args(sign_tool, &f, "h", "ca", "h");
            sign.extend(["-out-key".to_owned(), "h.key".to_owned()]);
            let bad = sign_tool.fails(
                d,
                &strs(&sign),
                &[("NEBULA_CA_PASSPHRASE", "not the passphrase")],
            );
            assert!(
                !d.join("h.crt").exists(),
                "{sign_tool:?} wrote a cert with a wrong passphrase"
            );
            assert!(
                !bad.stderr.is_empty() || !bad.stdout.is_empty(),
                "{sign_tool:?}: wrong passphrase, no message"
            );
            sign_tool.ok(d, &strs(&sign), &[("NEBULA_CA_PASSPHRASE", PASSPHRASE)]);
            verify_ok(Tool::Ours, d, "ca", "h");
            verify_ok(Tool::Go1110, d, "ca", "h");
            assert_same_print(Tool::Go1110, d, "h.crt");
        }
    }
}

/// The golden 1.6.1-vs-1.11.0 print pair confirms our 1.6.1 shape mapping.
#[test]
fn shape_mapping_matches_golden_go_outputs() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/go-1.6.1");
    for name in ["ca", "host1", "host-min", "host2"] {
        let read = |f: String| {
            std::fs::read_to_string(base.join(&f)).unwrap_or_else(|e| panic!("{f}: {e}"))
        };
        let old: Value = serde_json::from_str(read(format!("{name}.print-1.6.1.json")).trim())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let new: Vec<Value> = serde_json::from_str(&read(format!("{name}.print-1.11.0.json")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let new = new
            .first()
            .unwrap_or_else(|| panic!("{name}: empty 1.11.0 print"));
        assert_json_eq(&to_1_6_shape(new), &old, name);
    }
}
