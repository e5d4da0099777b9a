//! Fuzz the daemon's config loading as `nebula -test` does it: YAML text -> typed config, then
//! (with inline PEM only, so no file is read) the pki, network and firewall checks. Never panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nebula_cert::keys::marshal_private_key;
use nebula_cert::{Curve, Version};
use nebula_core::sim::TestCa;
use nebula_node::config::{Config, KeySource, PemSource};
use nebula_node::daemon;

/// A `pki:` section with a real CA, host certificate and key, inline (made once per process).
fn pki_section() -> &'static str {
    static PKI: OnceLock<String> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = TestCa::new("fuzz", Curve::Curve25519, Version::V1);
        let (cert, key) = ca.host("host", "10.9.0.1/16", &["web"]);
        let block = |pem: &str| {
            pem.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        format!(
            "pki:\n  ca: |\n{}  cert: |\n{}  key: |\n{}",
            block(&ca.cert.marshal_pem()),
            block(&cert.marshal_pem()),
            block(&marshal_private_key(Curve::Curve25519, &key)),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // Mode bit 0: put a valid pki section in front, so the rest of the checks are reached.
    let text = if mode & 1 == 1 {
        format!("{}{text}", pki_section())
    } else {
        text.to_string()
    };
    let Ok(loaded) = Config::from_str(&text) else {
        return;
    };
    let pki = &loaded.config.pki;
    let inline = |p: &PemSource| matches!(p, PemSource::Inline(_));
    if inline(&pki.ca) && inline(&pki.cert) && matches!(&pki.key, KeySource::Pem(p) if inline(p)) {
        let _ = daemon::validate(&loaded);
    }
});
