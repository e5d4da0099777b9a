//! The command line on the ADR inventory: validate, init, plan (with --detailed-exitcode),
//! render (idempotent), renew, and the errors an operator sees.

mod common;

use std::process::Command;

use common::*;

fn cli(args: &[&str], inv: &std::path::Path, pass: bool) -> (i32, String) {
    let mut c = Command::new(provision_bin());
    c.arg(args[0]).arg("--inventory").arg(inv).args(&args[1..]);
    if pass {
        c.env("NEBULA_CA_PASSPHRASE", PASSPHRASE);
    } else {
        c.env_remove("NEBULA_CA_PASSPHRASE");
    }
    let o = run(&mut c);
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn plan_render_renew_cycle_on_the_adr_inventory() {
    let t = tempfile::tempdir().expect("tempdir");
    let inv = adr_inventory_copy(t.path());
    let out = t.path().join("out");
    let o = out.to_str().expect("utf8");

    let (code, text) = cli(&["validate"], &inv, false);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("3 host(s), v1 certificates"), "{text}");
    assert!(text.contains("vyom-k3s-cp-1 outside the mesh"), "{text}");
    assert!(
        text.contains("proxmox: 5 VM(s) in terraform/vyom/"),
        "{text}"
    );

    let (code, text) = cli(&["plan", "--out", o, "--detailed-exitcode"], &inv, false);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("CA: would be created"), "{text}");
    assert!(!out.exists());

    // The CA key is encrypted: no passphrase, no CA.
    let (code, text) = cli(&["init"], &inv, false);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("NEBULA_CA_PASSPHRASE"), "{text}");
    let (code, text) = cli(&["init"], &inv, true);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("CA created"), "{text}");
    let (code, text) = cli(&["init"], &inv, false);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("CA exists") && text.contains("key encrypted"),
        "{text}"
    );

    let (code, text) = cli(&["render", "--out", o], &inv, true);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("cert kshitiz: issued (new host)"), "{text}");
    for h in ADR_HOSTS {
        for f in [
            "config.yml",
            "ca.crt",
            "host.crt",
            "host.key",
            "nebula.service",
        ] {
            assert!(out.join(h).join(f).is_file(), "{h}/{f}");
        }
    }

    // The K3s VMs are outside the mesh: user-data for their snippet, nothing of Nebula.
    assert!(!text.contains("cert vyom-k3s"), "{text}");
    for h in ADR_NON_MEMBERS {
        assert!(out.join(h).join("user-data").is_file(), "{h}/user-data");
        assert!(!out.join(h).join("config.yml").exists(), "{h}/config.yml");
        assert!(!out.join(h).join("host.key").exists(), "{h}/host.key");
    }
    for f in ["versions.tf", "variables.tf", "main.tf", "outputs.tf"] {
        assert!(
            out.join("terraform/vyom").join(f).is_file(),
            "terraform/vyom/{f}"
        );
    }
    let (code, text) = cli(
        &["renew", "--out", o, "--host", "vyom-k3s-cp-1"],
        &inv,
        true,
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("host `vyom-k3s-cp-1` is not a mesh member"),
        "{text}"
    );

    // Idempotent, and needs no passphrase when nothing is signed.
    let (code, text) = cli(&["render", "--out", o], &inv, false);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("files: no changes"), "{text}");
    let (code, text) = cli(&["plan", "--out", o, "--detailed-exitcode"], &inv, false);
    assert_eq!(code, 0, "{text}");

    let before = std::fs::read(out.join("vyom-ingress-1/host.crt")).expect("crt");
    let (code, text) = cli(&["renew", "--out", o, "--host", "kshitiz"], &inv, true);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("cert kshitiz: issued (renewal requested)"),
        "{text}"
    );
    assert!(text.contains("cert vyom-ingress-1: keep"), "{text}");
    assert_eq!(
        before,
        std::fs::read(out.join("vyom-ingress-1/host.crt")).expect("crt")
    );

    // A year on, everything is inside the renewal window.
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 340 * 86_400)
        .to_string();
    let (code, text) = cli(&["plan", "--out", o, "--now", &later], &inv, false);
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.matches("renewing").count(), 3, "{text}");
}

#[test]
fn invalid_inventories_are_refused_naming_host_and_field() {
    let t = tempfile::tempdir().expect("tempdir");
    let inv = adr_inventory_copy(t.path());
    let text = std::fs::read_to_string(&inv).expect("read");
    let bad = text.replacen("10.10.0.12", "10.10.1.12", 1);
    assert_ne!(bad, text);
    std::fs::write(&inv, bad).expect("write");
    let (code, out) = cli(&["validate"], &inv, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("host `vyom-ingress-2`, field `overlay_ip`: 10.10.1.12 is outside the mesh network 10.10.0.0/24"),
        "{out}"
    );
    let (code, out) = cli(&["render", "--out", "/nonexistent/out"], &inv, true);
    assert_eq!(code, 1, "{out}");
    assert!(!std::path::Path::new("/nonexistent/out").exists());
}
