//! The `nebula` command line: Go's flag syntax, `-test` on Go's own example configs and on ours
//! (checked with Go 1.11.0's `-test` too), broken configs refused with the key named.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nebula_cert::{Curve, Version};
#[cfg(feature = "interop")]
use support::{go_binary, GO_1110};
use support::{our_nebula, Pki};

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run nebula")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

/// A config file's text with its pki paths pointing at fresh test certificates.
fn with_test_pki(dir: &Path, src: &Path, network: &str, groups: &[&str]) -> PathBuf {
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    let (crt, key) = pki.host(dir, "host", network, groups);
    let text = std::fs::read_to_string(src).expect("read config");
    let text = text
        .replace(
            "/etc/nebula/ca.crt",
            &dir.join("ca.crt").display().to_string(),
        )
        .replace("/etc/nebula/host.crt", &crt.display().to_string())
        .replace("/etc/nebula/host.key", &key.display().to_string());
    let out = dir.join("config.yml");
    std::fs::write(&out, text).expect("write");
    out
}

#[test]
fn version_help_and_flag_syntax() {
    let bin = our_nebula();
    let o = run(&bin, &["-version"]);
    assert!(o.status.success());
    assert!(text(&o).starts_with("Version: "), "{}", text(&o));
    let o = run(&bin, &["--version"]);
    assert!(o.status.success());
    let o = run(&bin, &["-help"]);
    assert!(o.status.success());
    assert!(text(&o).contains("-config string"), "{}", text(&o));
    let o = run(&bin, &["-h"]);
    assert!(o.status.success());
    let o = run(&bin, &["-nonsense"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("flag provided but not defined: -nonsense"));
    let o = run(&bin, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("-config flag must be set"));
    let o = run(&bin, &["-config"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("flag needs an argument: -config"));
}

#[test]
fn test_flag_accepts_go_example_configs() {
    for (file, net) in [
        (
            "nebula-node/tests/data/example-config-v1.6.1.yml",
            "192.168.100.5/24",
        ),
        (
            "nebula-node/tests/data/example-config-v1.11.1.yml",
            "192.168.100.5/24",
        ),
    ] {
        let src = repo(file);
        assert!(src.exists(), "{} missing", src.display());
        let dir = tempfile::tempdir().expect("dir");
        let cfg = with_test_pki(dir.path(), &src, net, &[]);
        let c = cfg.display().to_string();
        for args in [
            vec!["-test", "-config", c.as_str()],
            vec!["--test", "--config", c.as_str()],
            vec!["-test", &format!("-config={c}")],
        ] {
            let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
            let o = run(&our_nebula(), &args);
            assert!(o.status.success(), "{file} {args:?}: {}", text(&o));
        }
    }
}

/// Needs Go Nebula 1.11.0 (`scripts/install-deps.sh`): the `interop` tier.
#[cfg(feature = "interop")]
#[test]
fn adr_configs_pass_test_for_ours_and_go_1_11() {
    let go = go_binary(GO_1110);
    for (file, net, groups) in [
        (
            "config/kshitiz-lighthouse.yml",
            "10.10.0.1/16",
            vec!["lighthouse"],
        ),
        (
            "config/vyom-ingress.yml",
            "10.10.0.2/16",
            vec!["public-ingress"],
        ),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = with_test_pki(dir.path(), &repo(file), net, &groups);
        let c = cfg.display().to_string();
        let o = run(&our_nebula(), &["-test", "-config", &c]);
        assert!(o.status.success(), "ours -test {file}: {}", text(&o));
        assert!(
            !text(&o).contains("WARN"),
            "ours -test {file} warns: {}",
            text(&o)
        );
        let o = run(&go, &["-test", "-config", &c]);
        assert!(o.status.success(), "go 1.11.0 -test {file}: {}", text(&o));
    }
}

#[test]
fn broken_configs_are_refused_with_the_key_named() {
    let src = repo("config/vyom-ingress.yml");
    let cases: &[(&str, &str, &str)] = &[
        ("  mtu: 1300", "  mtu: abc", "tun.mtu"),
        ("cipher: aes", "cipher: rot13", "cipher"),
        ("  port: 0\n", "  port: 99999\n", "listen.port"),
        (
            "    - port: 443\n      proto: tcp\n      group: lighthouse",
            "    - port: 443\n      proto: tcp\n      group: lighthouse\n      groups: [a]",
            "firewall",
        ),
        ("    - port: 80\n", "    - port: 80-70000\n", "firewall"),
        (
            "\"10.10.0.1\": [\"203.0.113.10:4242\"]",
            "\"10.10.0.1\": [\"203.0.113.10:notaport\"]",
            "static_host_map",
        ),
        (
            "  interval: 60",
            "  interval: 1m-ish",
            "lighthouse.interval",
        ),
    ];
    for (from, to, key) in cases {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = with_test_pki(dir.path(), &src, "10.10.0.2/16", &["public-ingress"]);
        let t = std::fs::read_to_string(&cfg).expect("read");
        assert!(t.contains(from), "case {key}: pattern not in config");
        std::fs::write(&cfg, t.replacen(from, to, 1)).expect("write");
        let o = run(
            &our_nebula(),
            &["-test", "-config", &cfg.display().to_string()],
        );
        assert_eq!(o.status.code(), Some(1), "{key}: {}", text(&o));
        assert!(text(&o).contains(key), "{key} not named in: {}", text(&o));
    }
    // Missing pki files are named too.
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, std::fs::read_to_string(&src).expect("read")).expect("write");
    let o = run(
        &our_nebula(),
        &["-test", "-config", &cfg.display().to_string()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("pki.ca"), "{}", text(&o));
    // A cert for the wrong CA.
    let dir = tempfile::tempdir().expect("dir");
    let cfg = with_test_pki(dir.path(), &src, "10.10.0.2/16", &[]);
    let other = Pki::new(Version::V1, Curve::Curve25519);
    std::fs::write(dir.path().join("ca.crt"), other.ca.marshal_pem()).expect("write");
    let o = run(
        &our_nebula(),
        &["-test", "-config", &cfg.display().to_string()],
    );
    assert!(text(&o).contains("pki"), "{}", text(&o));
}

#[test]
fn unimplemented_keys_are_named_at_startup() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = with_test_pki(
        dir.path(),
        &repo("config/vyom-ingress.yml"),
        "10.10.0.2/16",
        &[],
    );
    let mut t = std::fs::read_to_string(&cfg).expect("read");
    t.push_str("sshd:\n  enabled: false\n  listen: 127.0.0.1:2222\nstats:\n  type: prometheus\n  listen: 127.0.0.1:8080\n  interval: 10s\n  path: /metrics\n");
    std::fs::write(&cfg, t).expect("write");
    let o = run(
        &our_nebula(),
        &["-test", "-config", &cfg.display().to_string()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    // Stats and sshd are implemented: not named.
    assert!(
        !out.contains("sshd.listen") && !out.contains("stats.type"),
        "{out}"
    );
}
