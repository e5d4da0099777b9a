//! Fuzz target: v1/v2 certificate parsers, handshake recombination and CA-pool loading on arbitrary bytes.
//! Checks: no panic; whatever parses re-marshals to bytes that parse again to the same fingerprint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nebula_cert::cert::Certificate;
use nebula_cert::pool::CaPool;
use nebula_cert::{Curve, Version};

fuzz_target!(|data: &[u8]| {
    for version in [Version::V1, Version::V2] {
        if let Ok(c) = Certificate::from_bytes(version, data) {
            let again = Certificate::from_bytes(version, &c.marshal()).expect("re-marshalled cert must parse");
            assert_eq!(again.fingerprint(), c.fingerprint());
            assert_eq!(again.marshal(), c.marshal());
            let _ = c.to_json();
            let _ = c.to_string();
            let _ = c.alternate_fingerprint();
            let hs = c.marshal_for_handshake();
            let back = Certificate::recombine_from_handshake(version, &hs, c.public_key(), c.curve())
                .expect("handshake form must recombine");
            assert_eq!(back.fingerprint(), c.fingerprint());
        }
        for curve in [Curve::Curve25519, Curve::P256] {
            let _ = Certificate::recombine_from_handshake(version, data, &[7u8; 32], curve);
        }
    }
    let _ = Certificate::from_pem(data);
    let _ = CaPool::from_pem_at(data, 1_700_000_000);
});
