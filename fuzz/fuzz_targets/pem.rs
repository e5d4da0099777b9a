//! Fuzz target: `nebula_cert::pem::decode` walked over arbitrary bytes, block after block.
//! Checks: no panic, every step consumes input (no endless loop), every block re-encodes and re-decodes to
//! itself; the same bytes also go through every PEM reader (certs, CA pool bundle, keys).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nebula_cert::cert::Certificate;
use nebula_cert::pool::CaPool;
use nebula_cert::{keys, pem};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((block, after))) = pem::decode(rest) {
        assert!(
            after.len() < rest.len(),
            "pem::decode returned a block without consuming input"
        );
        let encoded = pem::encode(&block.label, &block.data);
        match pem::decode(encoded.as_bytes()) {
            Ok(Some((again, tail))) => {
                assert_eq!(again, block, "encode/decode round trip changed the block");
                assert!(tail.is_empty(), "encode left bytes after the END line");
            }
            // A label holding a newline or "-----" cannot round-trip; that is not a decoder bug.
            Ok(None) | Err(_) => {
                assert!(
                    block.label.contains('\n')
                        || block.label.contains('\r')
                        || block.label.contains("-----")
                        || block.label.contains(':')
                        || block.label.ends_with([' ', '\t']),
                    "re-decoding an encoded block failed for label {:?}",
                    block.label
                );
            }
        }
        rest = after;
    }
    let _ = pem::decode_all(data);
    // Everything else that reads PEM input from files or config.
    let _ = Certificate::from_pem_many(data);
    let _ = CaPool::from_pem_at(data, 1_893_456_000);
    let _ = keys::unmarshal_private_key(data);
    let _ = keys::unmarshal_public_key(data);
    let _ = keys::unmarshal_ca_private_key(data);
    let _ = keys::unmarshal_ca_public_key(data);
});
