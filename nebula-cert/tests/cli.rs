//! End-to-end tests of the `nebula-cert` binary: every mode's happy path (v1/v2, both curves) and each
//! failure case with its message and exit code, run in temporary directories. No Go binary is needed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use nebula_cert::cert::{Certificate, TbsCertificate};
use nebula_cert::keys::{generate_ca_key, keygen, marshal_ca_private_key};
use nebula_cert::signing::CaSigningKey;
use nebula_cert::{Curve, Version};

const BIN: &str = env!("CARGO_BIN_EXE_nebula-cert");

/// Small Argon2 settings so encrypted-key tests run fast.
const FAST_ARGON: [&str; 6] = [
    "-argon-memory",
    "1024",
    "-argon-iterations",
    "1",
    "-argon-parallelism",
    "1",
];

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success, stderr:\n{}", self.stderr);
        self
    }

    /// Asserts failure with exit code 1 and an `Error: ` report on stderr that contains `msg`
    /// (pass the start of the message, `Error: ` excluded, or any distinctive part of it).
    #[track_caller]
    fn fails_with(self, msg: &str) -> Run {
        assert_eq!(self.code, 1, "expected exit 1, stderr:\n{}", self.stderr);
        let report = self
            .stderr
            .find("Error: ")
            .map(|i| &self.stderr[i + "Error: ".len()..])
            .unwrap_or_else(|| panic!("no \"Error: \" on stderr:\n{}", self.stderr));
        assert!(
            report.contains(msg),
            "error report does not contain {msg:?}:\n{}",
            self.stderr
        );
        self
    }
}

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).unwrap()
    }

    fn read_str(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap()
    }

    fn write(&self, name: &str, data: impl AsRef<[u8]>) {
        fs::write(self.path(name), data).unwrap();
    }

    fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    fn run_full(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.tmp.path())
            .env_remove("NEBULA_CA_PASSPHRASE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().unwrap();
        if let Some(data) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(data).unwrap();
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_full(args, &[], None)
    }

    fn cert(&self, name: &str) -> Certificate {
        Certificate::from_pem(&self.read(name)).unwrap().0
    }

    /// `ca` with a short duration plus `extra` flags, writing `<stem>.crt` and `<stem>.key`.
    fn make_ca(&self, stem: &str, extra: &[&str]) {
        let crt = format!("{stem}.crt");
        let key = format!("{stem}.key");
        let mut args = vec![
            "ca",
            "-name",
            "Test CA",
            "-duration",
            "10h",
            "-out-crt",
            &crt,
            "-out-key",
            &key,
        ];
        args.extend_from_slice(extra);
        self.run(&args).ok();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn mode_of(dir: &Dir, name: &str) -> u32 {
    fs::metadata(dir.path(name)).unwrap().permissions().mode() & 0o777
}

/// A CA made through the library (valid from 10 days ago to 10 days ahead), written to ca.crt/ca.key.
fn library_ca(dir: &Dir, version: Version, curve: Curve) -> (Certificate, CaSigningKey) {
    let key = generate_ca_key(curve);
    let t = now();
    let ca = TbsCertificate {
        version,
        name: "lib ca".into(),
        networks: vec!["10.9.0.0/16".parse().unwrap()],
        unsafe_networks: vec![],
        groups: vec![],
        is_ca: true,
        not_before: t - 10 * 86400,
        not_after: t + 10 * 86400,
        public_key: key.public_key_bytes(),
        curve,
    }
    .sign(None, &key)
    .unwrap();
    dir.write("ca.crt", ca.marshal_pem());
    dir.write("ca.key", marshal_ca_private_key(&key));
    (ca, key)
}

/// A host certificate made through the library with the given validity window.
fn library_host(
    ca: &Certificate,
    key: &CaSigningKey,
    version: Version,
    not_before: i64,
    not_after: i64,
) -> Certificate {
    let (_, public) = keygen(ca.curve());
    TbsCertificate {
        version,
        name: "lib host".into(),
        networks: vec!["10.9.1.1/16".parse().unwrap()],
        unsafe_networks: vec![],
        groups: vec![],
        is_ca: false,
        not_before,
        not_after,
        public_key: public,
        curve: ca.curve(),
    }
    .sign(Some(ca), key)
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Happy paths

fn ca_sign_verify_print(version: &str, curve: &str) {
    let d = Dir::new();
    d.make_ca(
        "ca",
        &[
            "-version",
            version,
            "-curve",
            curve,
            "-networks",
            "10.1.0.0/16",
            "-groups",
            "a,b",
        ],
    );
    assert_eq!(mode_of(&d, "ca.crt"), 0o600);
    assert_eq!(mode_of(&d, "ca.key"), 0o600);
    let ca = d.cert("ca.crt");
    assert!(ca.is_ca());
    assert_eq!(ca.name(), "Test CA");
    assert_eq!(ca.groups(), ["a", "b"]);
    assert_eq!(ca.not_after() - ca.not_before(), 36000);
    let want_version = if version == "1" {
        Version::V1
    } else {
        Version::V2
    };
    assert_eq!(ca.version(), want_version);
    let want_curve = if curve == "P256" {
        Curve::P256
    } else {
        Curve::Curve25519
    };
    assert_eq!(ca.curve(), want_curve);

    d.run(&[
        "sign",
        "-name",
        "host1",
        "-networks",
        "10.1.2.3/16",
        "-groups",
        "a",
        "-unsafe-networks",
        "192.168.5.0/24",
    ])
    .ok();
    assert_eq!(mode_of(&d, "host1.crt"), 0o600);
    assert_eq!(mode_of(&d, "host1.key"), 0o600);
    let host = d.cert("host1.crt");
    assert_eq!(host.version(), want_version);
    assert_eq!(host.curve(), want_curve);
    assert_eq!(host.issuer_hex(), ca.fingerprint_hex());
    assert_eq!(host.networks()[0].to_string(), "10.1.2.3/16");
    assert_eq!(host.unsafe_networks()[0].to_string(), "192.168.5.0/24");
    // Default duration: one second before the CA expires.
    assert!(host.not_after() < ca.not_after());
    assert!(ca.not_after() - host.not_after() <= 2);
    let key_pem = d.read_str("host1.key");
    let banner = if curve == "P256" {
        "NEBULA P256 PRIVATE KEY"
    } else {
        "NEBULA X25519 PRIVATE KEY"
    };
    assert!(key_pem.starts_with(&format!("-----BEGIN {banner}-----\n")));

    let v = d
        .run(&["verify", "-ca", "ca.crt", "-crt", "host1.crt"])
        .ok();
    assert!(v.stdout.is_empty() && v.stderr.is_empty());

    let text = d.run(&["print", "-path", "host1.crt"]).ok().out();
    assert_eq!(text, format!("{host}\n"));
    assert!(text.contains("\"name\": \"host1\""));
    let json = d.run(&["print", "-json", "-path", "host1.crt"]).ok().out();
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let arr = parsed.as_array().unwrap();
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["fingerprint"], host.fingerprint_hex());
    assert_eq!(arr[0]["version"], if version == "1" { 1 } else { 2 });
}

#[test]
fn happy_path_v1_curve25519() {
    ca_sign_verify_print("1", "25519");
}

#[test]
fn happy_path_v1_p256() {
    ca_sign_verify_print("1", "P256");
}

#[test]
fn happy_path_v2_curve25519() {
    ca_sign_verify_print("2", "25519");
}

#[test]
fn happy_path_v2_p256() {
    ca_sign_verify_print("2", "P256");
}

#[test]
fn ca_defaults_to_v2_curve25519_one_year() {
    let d = Dir::new();
    d.run(&["ca", "-name", "defaults"]).ok();
    let ca = d.cert("ca.crt");
    assert_eq!(ca.version(), Version::V2);
    assert_eq!(ca.curve(), Curve::Curve25519);
    assert_eq!(ca.not_after() - ca.not_before(), 8760 * 3600);
    assert!(d
        .read_str("ca.key")
        .starts_with("-----BEGIN NEBULA ED25519 PRIVATE KEY-----\n"));
}

#[test]
fn deprecated_aliases_ips_subnets_ip() {
    let d = Dir::new();
    d.make_ca(
        "ca",
        &[
            "-version",
            "1",
            "-ips",
            "10.5.0.0/16",
            "-subnets",
            "172.16.0.0/12",
        ],
    );
    let ca = d.cert("ca.crt");
    assert_eq!(ca.networks()[0].to_string(), "10.5.0.0/16");
    assert_eq!(ca.unsafe_networks()[0].to_string(), "172.16.0.0/12");
    d.run(&[
        "sign",
        "-name",
        "h",
        "-ip",
        "10.5.0.9/16",
        "-subnets",
        "172.16.1.0/24",
    ])
    .ok();
    let h = d.cert("h.crt");
    assert_eq!(h.networks()[0].to_string(), "10.5.0.9/16");
    assert_eq!(h.unsafe_networks()[0].to_string(), "172.16.1.0/24");
}

#[test]
fn sign_v2_with_ipv6_and_explicit_version_and_duration() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    d.run(&[
        "sign",
        "-name",
        "six",
        "-networks",
        "fd00::5/64,10.0.0.5/8",
        "-duration",
        "1h30m",
    ])
    .ok();
    let h = d.cert("six.crt");
    assert_eq!(h.not_after() - h.not_before(), 5400);
    // The signer sorts networks: IPv4 first.
    assert_eq!(h.networks()[0].to_string(), "10.0.0.5/8");
    assert_eq!(h.networks()[1].to_string(), "fd00::5/64");
    d.run(&[
        "sign",
        "-name",
        "old",
        "-version",
        "1",
        "-networks",
        "10.0.0.6/8",
    ])
    .ok();
    assert_eq!(d.cert("old.crt").version(), Version::V1);
}

#[test]
fn keygen_then_sign_in_pub_both_curves() {
    for curve in ["25519", "P256"] {
        let d = Dir::new();
        d.make_ca("ca", &["-curve", curve]);
        d.run(&[
            "keygen", "-curve", curve, "-out-key", "h.key", "-out-pub", "h.pub",
        ])
        .ok();
        assert_eq!(mode_of(&d, "h.key"), 0o600);
        assert_eq!(mode_of(&d, "h.pub"), 0o600);
        d.run(&[
            "sign",
            "-name",
            "h",
            "-networks",
            "10.3.0.1/24",
            "-in-pub",
            "h.pub",
        ])
        .ok();
        assert!(!d.exists("h.key.new"));
        let (public, _, _) = nebula_cert::keys::unmarshal_public_key(&d.read("h.pub")).unwrap();
        assert_eq!(d.cert("h.crt").public_key(), public.as_slice());
    }
}

#[test]
fn keygen_overwrites_existing_files() {
    let d = Dir::new();
    d.write("k.key", "old");
    d.write("k.pub", "old");
    d.run(&["keygen", "-out-key", "k.key", "-out-pub", "k.pub"])
        .ok();
    assert!(d
        .read_str("k.key")
        .starts_with("-----BEGIN NEBULA X25519 PRIVATE KEY-----"));
    assert!(d
        .read_str("k.pub")
        .starts_with("-----BEGIN NEBULA X25519 PUBLIC KEY-----"));
}

#[test]
fn sign_in_pub_of_other_curve_fails() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    d.run(&[
        "keygen", "-curve", "P256", "-out-key", "h.key", "-out-pub", "h.pub",
    ])
    .ok();
    d.run(&[
        "sign",
        "-name",
        "h",
        "-networks",
        "10.3.0.1/24",
        "-in-pub",
        "h.pub",
    ])
    .fails_with("curve of in-pub does not match ca");
}

#[test]
fn encrypted_ca_key_round_trip_with_env_passphrase() {
    let d = Dir::new();
    let mut args = vec!["ca", "-name", "enc", "-encrypt", "-duration", "5h"];
    args.extend_from_slice(&FAST_ARGON);
    d.run_full(&args, &[("NEBULA_CA_PASSPHRASE", "correct horse")], None)
        .ok();
    assert!(d
        .read_str("ca.key")
        .starts_with("-----BEGIN NEBULA ED25519 ENCRYPTED PRIVATE KEY-----\n"));
    d.run_full(
        &["sign", "-name", "h", "-networks", "10.0.0.1/24"],
        &[("NEBULA_CA_PASSPHRASE", "correct horse")],
        None,
    )
    .ok();
    d.run(&["verify", "-ca", "ca.crt", "-crt", "h.crt"]).ok();
}

#[test]
fn encrypted_p256_ca_key() {
    let d = Dir::new();
    let mut args = vec![
        "ca", "-name", "enc", "-encrypt", "-curve", "P256", "-version", "1",
    ];
    args.extend_from_slice(&FAST_ARGON);
    d.run_full(&args, &[("NEBULA_CA_PASSPHRASE", "pw")], None)
        .ok();
    assert!(d
        .read_str("ca.key")
        .starts_with("-----BEGIN NEBULA ECDSA P256 ENCRYPTED PRIVATE KEY-----\n"));
    d.run_full(
        &["sign", "-name", "h", "-ip", "10.0.0.1/24"],
        &[("NEBULA_CA_PASSPHRASE", "pw")],
        None,
    )
    .ok();
}

#[test]
fn encrypt_without_terminal_or_env_fails() {
    let d = Dir::new();
    let mut args = vec!["ca", "-name", "enc", "-encrypt"];
    args.extend_from_slice(&FAST_ARGON);
    d.run(&args)
        .fails_with("out-key must be encrypted interactively");
    assert!(!d.exists("ca.key") && !d.exists("ca.crt"));
}

#[test]
fn sign_with_encrypted_key_without_terminal_or_env_fails() {
    let d = Dir::new();
    let mut args = vec!["ca", "-name", "enc", "-encrypt"];
    args.extend_from_slice(&FAST_ARGON);
    d.run_full(&args, &[("NEBULA_CA_PASSPHRASE", "pw")], None)
        .ok();
    d.run(&["sign", "-name", "h", "-networks", "10.0.0.1/24"])
        .fails_with("ca-key is encrypted and must be decrypted interactively");
}

#[test]
fn stdio_outputs_and_inputs() {
    let d = Dir::new();
    let r = d
        .run(&["ca", "-name", "s", "-out-crt", "-", "-out-key", "ca.key"])
        .ok();
    let (ca, rest) = Certificate::from_pem(&r.stdout).unwrap();
    assert!(ca.is_ca() && rest.is_empty());
    d.write("ca.crt", &r.stdout);
    // CA key on stdin, certificate to stdout.
    let key = d.read("ca.key");
    let r = d
        .run_full(
            &[
                "sign",
                "-name",
                "h",
                "-networks",
                "10.0.0.1/24",
                "-ca-key",
                "-",
                "-out-crt",
                "-",
            ],
            &[],
            Some(&key),
        )
        .ok();
    let (h, _) = Certificate::from_pem(&r.stdout).unwrap();
    assert_eq!(h.name(), "h");
    assert!(d.exists("h.key") && !d.exists("h.crt"));
    // Certificate on stdin for verify and print.
    d.run_full(
        &["verify", "-ca", "ca.crt", "-crt", "-"],
        &[],
        Some(&r.stdout),
    )
    .ok();
    let out = d
        .run_full(&["print", "-json", "-path", "-"], &[], Some(&r.stdout))
        .ok()
        .out();
    assert!(out.starts_with("[{") && out.ends_with("}]\n"));
    // Key pair halves to stdout.
    let r = d
        .run(&["keygen", "-out-key", "-", "-out-pub", "k.pub"])
        .ok();
    assert!(r
        .out()
        .starts_with("-----BEGIN NEBULA X25519 PRIVATE KEY-----"));
}

#[test]
fn stdio_conflicts_are_refused_up_front() {
    let d = Dir::new();
    d.run(&["ca", "-name", "s", "-out-crt", "-", "-out-key", "-"])
        .fails_with("-out-key and -out-crt both set to \"-\", only one output may write to stdout");
    d.run(&["verify", "-ca", "-", "-crt", "-"])
        .fails_with("-ca and -crt both set to \"-\", only one input may read from stdin");
}

#[test]
fn print_multiple_certs_and_json_array() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    d.run(&["sign", "-name", "a", "-networks", "10.0.0.1/24"])
        .ok();
    d.run(&[
        "sign",
        "-name",
        "b",
        "-networks",
        "10.0.0.2/24",
        "-version",
        "1",
    ])
    .ok();
    let bundle = format!("{}{}\n\n", d.read_str("a.crt"), d.read_str("b.crt"));
    d.write("both.crt", &bundle);
    let text = d.run(&["print", "-path", "both.crt"]).ok().out();
    assert_eq!(text, format!("{}\n{}\n", d.cert("a.crt"), d.cert("b.crt")));
    let json = d.run(&["print", "-json", "-path", "both.crt"]).ok().out();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["details"]["name"], "a");
    assert_eq!(arr[1]["details"]["name"], "b");
    assert_eq!(arr[0]["version"], 2);
    assert_eq!(arr[1]["version"], 1);
    // Compact, like Go's json.Marshal, on one line.
    assert_eq!(json.lines().count(), 1);
}

#[test]
fn out_qr_writes_png() {
    let d = Dir::new();
    d.run(&["ca", "-name", "q", "-out-qr", "ca.png"]).ok();
    let png = d.read("ca.png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(mode_of(&d, "ca.png"), 0o600);
    d.run(&[
        "sign",
        "-name",
        "h",
        "-networks",
        "10.0.0.1/24",
        "-out-qr",
        "h.png",
    ])
    .ok();
    assert_eq!(&d.read("h.png")[..4], b"\x89PNG");
    // QR to stdout replaces the printed text.
    let r = d.run(&["print", "-path", "h.crt", "-out-qr", "-"]).ok();
    assert_eq!(&r.stdout[..8], b"\x89PNG\r\n\x1a\n");
    assert!(!r.out().contains("\"details\""));
    let r = d.run(&["print", "-path", "h.crt", "-out-qr", "p.png"]).ok();
    assert!(r.out().contains("\"details\""));
    assert_eq!(&d.read("p.png")[..4], b"\x89PNG");
}

#[test]
fn version_and_help() {
    let d = Dir::new();
    let r = d.run(&["-version"]).ok();
    assert_eq!(r.out(), format!("Version: {}\n", env!("CARGO_PKG_VERSION")));
    let r = d.run(&["-h"]).ok();
    assert!(r.stderr.contains("<global flags> <mode>:\n"));
    assert!(r.stdout.is_empty());
    for mode in ["ca", "keygen", "sign", "print", "verify"] {
        let r = d.run(&[mode, "-h"]).ok();
        assert!(
            r.stderr.contains(&format!(" {mode} <flags>: ")),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("Pass \"-\" to any path flag"));
        assert!(!r.stderr.contains("-pkcs11"));
        let r = d.run(&["-help", mode]).ok();
        assert!(r.stderr.contains(&format!(" {mode} <flags>: ")));
    }
}

#[test]
fn no_mode_and_unknown_mode() {
    let d = Dir::new();
    let r = d.run(&[]);
    assert_eq!(r.code, 1);
    assert!(r
        .stderr
        .starts_with("Error: No mode was provided\n\nUsage of "));
    d.run(&["frobnicate"])
        .fails_with("unknown mode: frobnicate");
}

// ---------------------------------------------------------------------------------------------
// Failure cases

#[test]
fn fail_unknown_flag() {
    let d = Dir::new();
    let r = d
        .run(&["sign", "-bogus", "x"])
        .fails_with("flag provided but not defined: -bogus");
    assert!(r
        .stderr
        .starts_with("flag provided but not defined: -bogus\n"));
    let r = d.run(&["-bogus"]);
    assert_eq!(r.code, 1);
    assert!(r
        .stderr
        .starts_with("flag provided but not defined: -bogus\nUsage of "));
}

#[test]
fn fail_bad_flag_value() {
    let d = Dir::new();
    d.run(&["ca", "-name", "x", "-duration", "1d"])
        .fails_with("invalid value \"1d\" for flag -duration: parse error");
    d.run(&["print", "-json=maybe", "-path", "x"])
        .fails_with("invalid boolean value \"maybe\" for -json: parse error");
}

#[test]
fn fail_missing_required_flag() {
    let d = Dir::new();
    let r = d.run(&["ca"]).fails_with("-name is required");
    assert!(
        r.stderr.contains("Usage of "),
        "usage follows a required-flag error"
    );
    d.run(&["sign", "-name", "x"])
        .fails_with("-networks is required");
    d.run(&["sign", "-networks", "10.0.0.1/8"])
        .fails_with("-name is required");
    d.run(&["keygen", "-out-pub", "p"])
        .fails_with("-out-key is required");
    d.run(&["keygen", "-out-key", "k"])
        .fails_with("-out-pub is required");
    d.run(&["print"]).fails_with("-path is required");
    d.run(&["verify", "-crt", "x"])
        .fails_with("-ca is required");
    d.run(&["verify", "-ca", "x"])
        .fails_with("-crt is required");
}

#[test]
fn fail_pkcs11_is_not_supported() {
    let d = Dir::new();
    d.run(&["ca", "-name", "x", "-pkcs11", "pkcs11:token=t"])
        .fails_with("-pkcs11 is not supported in this build");
    d.run(&[
        "keygen", "-out-key", "k", "-out-pub", "p", "-pkcs11", "pkcs11:x",
    ])
    .fails_with("-pkcs11 is not supported in this build");
    assert!(!d.exists("ca.crt") && !d.exists("k"));
}

#[test]
fn fail_verify_wrong_ca() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    d.make_ca("other", &[]);
    d.run(&["sign", "-name", "h", "-networks", "10.0.0.1/24"])
        .ok();
    let r = d
        .run(&["verify", "-ca", "other.crt", "-crt", "h.crt"])
        .fails_with("error while verifying certificate v2 h with issuer ");
    assert!(r.stderr.contains(": could not find ca for the certificate"));
}

#[test]
fn fail_verify_expired_certificate() {
    let d = Dir::new();
    let (ca, key) = library_ca(&d, Version::V1, Curve::Curve25519);
    let t = now();
    let host = library_host(&ca, &key, Version::V1, t - 5 * 86400, t - 86400);
    d.write("h.crt", host.marshal_pem());
    let r = d
        .run(&["verify", "-ca", "ca.crt", "-crt", "h.crt"])
        .fails_with("error while verifying certificate {");
    assert!(r.stderr.contains("certificate is expired"), "{}", r.stderr);
}

#[test]
fn fail_verify_not_yet_valid_certificate() {
    let d = Dir::new();
    let (ca, key) = library_ca(&d, Version::V2, Curve::P256);
    let t = now();
    let host = library_host(&ca, &key, Version::V2, t + 86400, t + 2 * 86400);
    d.write("h.crt", host.marshal_pem());
    let r = d
        .run(&["verify", "-ca", "ca.crt", "-crt", "h.crt"])
        .fails_with("error while verifying certificate");
    assert!(r.stderr.contains("not valid yet"), "{}", r.stderr);
}

#[test]
fn fail_verify_expired_ca() {
    let d = Dir::new();
    let key = generate_ca_key(Curve::Curve25519);
    let t = now();
    let ca = TbsCertificate {
        version: Version::V1,
        name: "old ca".into(),
        networks: vec![],
        unsafe_networks: vec![],
        groups: vec![],
        is_ca: true,
        not_before: t - 10 * 86400,
        not_after: t - 86400,
        public_key: key.public_key_bytes(),
        curve: Curve::Curve25519,
    }
    .sign(None, &key)
    .unwrap();
    d.write("ca.crt", ca.marshal_pem());
    d.write("ca.key", marshal_ca_private_key(&key));
    let host = library_host(&ca, &key, Version::V1, t - 9 * 86400, t - 2 * 86400);
    d.write("h.crt", host.marshal_pem());
    let r = d
        .run(&["verify", "-ca", "ca.crt", "-crt", "h.crt"])
        .fails_with("error while verifying certificate");
    assert!(
        r.stderr.contains("root certificate is expired"),
        "{}",
        r.stderr
    );
    d.run(&["sign", "-name", "n", "-networks", "10.0.0.1/24"])
        .fails_with("ca certificate is expired");
}

#[test]
fn fail_sign_network_outside_ca() {
    let d = Dir::new();
    d.make_ca("ca", &["-networks", "10.1.0.0/16"]);
    d.run(&["sign", "-name", "h", "-networks", "10.2.0.1/16"]).fails_with(
        "error while signing: certificate contained a network assignment outside the limitations of the signing ca: 10.2.0.1/16",
    );
    // A wider prefix than the CA's is also outside.
    d.run(&["sign", "-name", "h", "-networks", "10.1.0.1/8"])
        .fails_with("outside the limitations of the signing ca: 10.1.0.1/8");
    assert!(!d.exists("h.crt") && !d.exists("h.key"));
}

#[test]
fn fail_sign_unsafe_network_outside_ca() {
    let d = Dir::new();
    d.make_ca("ca", &["-unsafe-networks", "192.168.0.0/16"]);
    d.run(&["sign", "-name", "h", "-networks", "10.0.0.1/8", "-unsafe-networks", "172.16.0.0/24"])
        .fails_with("error while signing: certificate contained an unsafe network assignment outside the limitations of the signing ca: 172.16.0.0/24");
}

#[test]
fn fail_sign_group_not_allowed_by_ca() {
    let d = Dir::new();
    d.make_ca("ca", &["-groups", "laptop,servers"]);
    d.run(&[
        "sign",
        "-name",
        "h",
        "-networks",
        "10.0.0.1/8",
        "-groups",
        "laptop,phones",
    ])
    .fails_with(
        "error while signing: certificate contained a group not present on the signing ca: phones",
    );
}

#[test]
fn fail_sign_duration_beyond_ca() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    d.run(&[
        "sign",
        "-name",
        "h",
        "-networks",
        "10.0.0.1/8",
        "-duration",
        "20h",
    ])
    .fails_with("error while signing: certificate expires after signing certificate");
}

#[test]
fn fail_sign_v1_network_rules() {
    let d = Dir::new();
    d.make_ca("ca", &["-version", "1"]);
    d.run(&["sign", "-name", "h", "-networks", "10.0.0.1/8,10.0.0.2/8"])
        .fails_with(
            "invalid -networks definition: v1 certificates can only have a single ipv4 address",
        );
    d.run(&["sign", "-name", "h", "-networks", "10.0.0.1/8,fd00::1/64"])
        .fails_with(
            "invalid -networks definition: v1 certificates can only contain ipv4 addresses",
        );
    d.run(&[
        "sign",
        "-name",
        "h",
        "-networks",
        "10.0.0.1/8",
        "-unsafe-networks",
        "fd00::/64",
    ])
    .fails_with(
        "invalid -unsafe-networks definition: v1 certificates can only contain ipv4 addresses",
    );
    d.run(&["sign", "-name", "h", "-networks", "a1.1.1.1/24"])
        .fails_with("invalid -networks definition: a1.1.1.1/24");
    d.run(&[
        "ca",
        "-name",
        "x",
        "-version",
        "1",
        "-networks",
        "fd00::/8",
        "-out-crt",
        "x.crt",
        "-out-key",
        "x.key",
    ])
    .fails_with("invalid -networks definition: v1 certificates can only be ipv4, have fd00::/8");
}

#[test]
fn fail_verify_tampered_signature() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    d.run(&["sign", "-name", "h", "-networks", "10.0.0.1/24"])
        .ok();
    // Flip the last bit of the DER (inside the signature) and re-armour.
    let block = nebula_cert::pem::decode(&d.read("h.crt"))
        .unwrap()
        .unwrap()
        .0;
    let mut raw = block.data.clone();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    d.write("bad.crt", nebula_cert::pem::encode(&block.label, &raw));
    let r = d
        .run(&["verify", "-ca", "ca.crt", "-crt", "bad.crt"])
        .fails_with("error while verifying certificate {");
    assert!(
        r.stderr
            .trim_end()
            .ends_with(": certificate signature did not match"),
        "{}",
        r.stderr
    );
}

#[test]
fn fail_verify_tampered_details() {
    let d = Dir::new();
    d.make_ca("ca", &["-version", "1"]);
    d.run(&["sign", "-name", "hostA", "-networks", "10.0.0.1/24"])
        .ok();
    // Change the name inside the signed details (same length, so the encoding stays valid).
    let block = nebula_cert::pem::decode(&d.read("hostA.crt"))
        .unwrap()
        .unwrap()
        .0;
    let raw = block.data.clone();
    let pos = raw.windows(5).position(|w| w == b"hostA").unwrap();
    let mut tampered = raw.clone();
    tampered[pos + 4] = b'B';
    d.write("bad.crt", nebula_cert::pem::encode(&block.label, &tampered));
    d.run(&["verify", "-ca", "ca.crt", "-crt", "bad.crt"])
        .fails_with("certificate signature did not match");
}

#[test]
fn fail_garbage_pem() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    d.write("garbage.crt", "this is not a certificate\n");
    d.run(&["print", "-path", "garbage.crt"]).fails_with(
        "error while unmarshaling cert: input did not contain a valid PEM encoded block",
    );
    d.run(&["verify", "-ca", "ca.crt", "-crt", "garbage.crt"])
        .fails_with("error while parsing crt: input did not contain a valid PEM encoded block");
    d.run(&["verify", "-ca", "garbage.crt", "-crt", "ca.crt"])
        .fails_with(
            "error while adding ca cert to pool: input did not contain a valid PEM encoded block",
        );
    d.run(&[
        "sign",
        "-name",
        "h",
        "-networks",
        "10.0.0.1/8",
        "-ca-crt",
        "garbage.crt",
    ])
    .fails_with("error while parsing ca-crt: input did not contain a valid PEM encoded block");
    d.run(&[
        "sign",
        "-name",
        "h",
        "-networks",
        "10.0.0.1/8",
        "-ca-key",
        "garbage.crt",
    ])
    .fails_with("error while parsing ca-key: input did not contain a valid PEM encoded block");
}

#[test]
fn fail_truncated_pem() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    let pem = d.read_str("ca.crt");
    // Cut in the middle of the base64 body: no END line.
    d.write("cut.crt", &pem[..pem.len() / 2]);
    let r = d
        .run(&["print", "-path", "cut.crt"])
        .fails_with("error while unmarshaling cert: ");
    assert!(r.stderr.contains("PEM"), "{}", r.stderr);
    // Truncated DER inside a well-formed PEM.
    let block = nebula_cert::pem::decode(pem.as_bytes()).unwrap().unwrap().0;
    let short = &block.data[..block.data.len() - 10];
    d.write("short.crt", nebula_cert::pem::encode(&block.label, short));
    d.run(&["print", "-path", "short.crt"])
        .fails_with("error while unmarshaling cert: ");
    d.run(&["verify", "-ca", "short.crt", "-crt", "ca.crt"])
        .fails_with("error while adding ca cert to pool: ");
}

#[test]
fn fail_wrong_pem_banner() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    d.run(&["sign", "-name", "h", "-networks", "10.0.0.1/24"])
        .ok();
    // A key passed where a certificate is expected.
    d.run(&["verify", "-ca", "ca.crt", "-crt", "h.key"])
        .fails_with("error while parsing crt: bytes did not contain a proper certificate banner");
    d.run(&["print", "-path", "ca.key"]).fails_with(
        "error while unmarshaling cert: bytes did not contain a proper certificate banner",
    );
    // A certificate passed where a key is expected.
    d.run(&[
        "sign",
        "-name",
        "x",
        "-networks",
        "10.0.0.2/24",
        "-ca-key",
        "ca.crt",
    ])
    .fails_with("error while parsing ca-key: ");
    d.run(&[
        "sign",
        "-name",
        "x",
        "-networks",
        "10.0.0.2/24",
        "-in-pub",
        "h.crt",
    ])
    .fails_with("error while parsing in-pub: ");
    // A host certificate is not a CA.
    d.run(&["verify", "-ca", "h.crt", "-crt", "h.crt"])
        .fails_with("error while adding ca cert to pool: h: certificate is not a CA");
}

#[test]
fn fail_sign_wrong_ca_key() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    d.make_ca("other", &[]);
    d.run(&[
        "sign",
        "-name",
        "h",
        "-networks",
        "10.0.0.1/24",
        "-ca-key",
        "other.key",
    ])
    .fails_with("refusing to sign, root certificate does not match private key");
    // A key of the other curve does not match either.
    d.make_ca("p", &["-curve", "P256"]);
    d.run(&[
        "sign",
        "-name",
        "h",
        "-networks",
        "10.0.0.1/24",
        "-ca-key",
        "p.key",
    ])
    .fails_with("refusing to sign, root certificate does not match private key");
    assert!(!d.exists("h.crt") && !d.exists("h.key"));
}

#[test]
fn fail_wrong_passphrase() {
    let d = Dir::new();
    let mut args = vec!["ca", "-name", "enc", "-encrypt"];
    args.extend_from_slice(&FAST_ARGON);
    d.run_full(&args, &[("NEBULA_CA_PASSPHRASE", "right")], None)
        .ok();
    d.run_full(
        &["sign", "-name", "h", "-networks", "10.0.0.1/24"],
        &[("NEBULA_CA_PASSPHRASE", "wrong")],
        None,
    )
    .fails_with("error while parsing encrypted ca-key: invalid passphrase or corrupt private key");
    assert!(!d.exists("h.crt") && !d.exists("h.key"));
}

#[test]
fn fail_refuse_to_overwrite() {
    let d = Dir::new();
    d.make_ca("ca", &[]);
    let before = d.read("ca.crt");
    d.run(&[
        "ca", "-name", "again", "-out-crt", "ca.crt", "-out-key", "new.key",
    ])
    .fails_with("refusing to overwrite existing CA cert: ca.crt");
    d.run(&[
        "ca", "-name", "again", "-out-crt", "new.crt", "-out-key", "ca.key",
    ])
    .fails_with("refusing to overwrite existing CA key: ca.key");
    assert_eq!(d.read("ca.crt"), before);
    assert!(!d.exists("new.key") && !d.exists("new.crt"));

    d.run(&["sign", "-name", "h", "-networks", "10.0.0.1/24"])
        .ok();
    d.run(&["sign", "-name", "h", "-networks", "10.0.0.1/24"])
        .fails_with("refusing to overwrite existing cert: h.crt");
    d.run(&[
        "sign",
        "-name",
        "h",
        "-networks",
        "10.0.0.1/24",
        "-out-crt",
        "h2.crt",
    ])
    .fails_with("refusing to overwrite existing key: h.key");
    assert!(!d.exists("h2.crt"));
}

#[test]
fn fail_unreadable_and_unwritable_paths() {
    let d = Dir::new();
    d.run(&["print", "-path", "missing.crt"])
        .fails_with("unable to read cert; open missing.crt: no such file or directory");
    d.run(&["verify", "-ca", "missing.crt", "-crt", "x"])
        .fails_with("error while reading ca: open missing.crt: no such file or directory");
    d.run(&["sign", "-name", "h", "-networks", "10.0.0.1/24"])
        .fails_with("error while reading ca-key: open ca.key: no such file or directory");
    d.run(&["ca", "-name", "x", "-out-key", "no/such/dir/ca.key"])
        .fails_with(
            "error while writing out-key: open no/such/dir/ca.key: no such file or directory",
        );
    d.run(&["keygen", "-out-key", "k", "-out-pub", "no/such/dir/p"])
        .fails_with("error while writing out-pub: open no/such/dir/p: no such file or directory");
}

#[test]
fn fail_usage_errors_show_mode_help() {
    let d = Dir::new();
    let r = d
        .run(&["ca", "-name", "x", "-version", "7"])
        .fails_with("-version must be either 1 or 2");
    assert!(r.stderr.contains("Usage of ") && r.stderr.contains(" ca <flags>: "));
    d.run(&["ca", "-name", "x", "-duration", "0s"])
        .fails_with("-duration must be greater than 0");
    d.run(&[
        "sign",
        "-name",
        "x",
        "-networks",
        "10.0.0.1/8",
        "-in-pub",
        "a",
        "-out-key",
        "b",
    ])
    .fails_with("cannot set both -in-pub and -out-key");
    d.run(&["ca", "-name", "x", "-curve", "ed448"])
        .fails_with("invalid curve: ed448");
}

#[test]
fn reads_files_written_by_nebula_cert_1_6_1() {
    // A CA and host certificate pair as Debian's nebula-cert 1.6.1 writes them (PROTOCOL.md §7.2 shape),
    // recreated here through the library: v1, Curve25519, 64-byte Ed25519 key, X25519 host key.
    let d = Dir::new();
    let (ca, key) = library_ca(&d, Version::V1, Curve::Curve25519);
    assert!(d
        .read_str("ca.key")
        .starts_with("-----BEGIN NEBULA ED25519 PRIVATE KEY-----\n"));
    let t = now();
    let host = library_host(&ca, &key, Version::V1, t - 60, t + 3600);
    d.write("h.crt", host.marshal_pem());
    d.run(&["verify", "-ca", "ca.crt", "-crt", "h.crt"]).ok();
    d.run(&["sign", "-name", "new", "-ip", "10.9.3.3/16"]).ok();
    assert_eq!(d.cert("new.crt").version(), Version::V1);
    let p: &Path = &d.path("new.crt");
    assert!(p.exists());
}
