//! Shared body of the `cert_v1` and `cert_v2` fuzz targets: parse, round-trip and the handshake
//! recombine path for one certificate version. No panics; parse∘marshal is stable.

use nebula_cert::cert::Certificate;
use nebula_cert::{Curve, Version};

/// Stand-in peer static keys (any bytes of the right length are accepted as a key by recombine).
const X25519_KEY: [u8; 32] = [7; 32];
const P256_KEY: [u8; 65] = [4; 65];

fn check_stable(c: &Certificate, version: Version) {
    let again =
        Certificate::from_bytes(version, &c.marshal()).expect("re-parsing our own marshal failed");
    assert_eq!(again.marshal(), c.marshal(), "marshal is not stable");
    assert_eq!(
        again.fingerprint(),
        c.fingerprint(),
        "fingerprint changed after a round trip"
    );
    let _ = c.to_json();
    let _ = c.to_json_v1_6();
    let _ = c.to_string_v1_6();
    let _ = c.to_string();
    let _ = c.check_signature(c.public_key());
    let _ = c.alternate_fingerprint();
}

/// One fuzz input as a certificate of `version`.
pub fn run(version: Version, data: &[u8]) {
    if let Ok(c) = Certificate::from_bytes(version, data) {
        check_stable(&c, version);
        // The handshake form recombines to the same cert when given its own key.
        if !c.public_key().is_empty() {
            let hs = c.marshal_for_handshake();
            if let Ok(back) =
                Certificate::recombine_from_handshake(version, &hs, c.public_key(), c.curve())
            {
                assert_eq!(
                    back.fingerprint(),
                    c.fingerprint(),
                    "handshake recombine changed the cert"
                );
            }
        }
    }
    for (key, curve) in [
        (&X25519_KEY[..], Curve::Curve25519),
        (&P256_KEY[..], Curve::P256),
    ] {
        if let Ok(c) = Certificate::recombine_from_handshake(version, data, key, curve) {
            assert_eq!(c.public_key(), key, "recombine did not insert the peer key");
            assert_eq!(c.curve(), curve, "recombine accepted another curve");
            check_stable(&c, version);
        }
    }
}
