//! Fuzz target: the protobuf payloads of handshake, lighthouse and control packets.
//! Decoding arbitrary bytes must never panic; whatever decodes must re-encode to a stable form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::control::NebulaControl;
use proto::handshake::{self, NebulaHandshake};
use proto::lighthouse::NebulaMeta;
use proto::prost::Message;

/// decode -> encode -> decode gives the same value, and its encoding is a fixed point.
fn check_round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<M> {
    let msg = M::decode(data).ok()?;
    let bytes = msg.encode_to_vec();
    assert_eq!(bytes.len(), msg.encoded_len());
    let again = M::decode(bytes.as_slice()).expect("our own encoding decodes");
    assert_eq!(again, msg);
    assert_eq!(again.encode_to_vec(), bytes);
    Some(msg)
}

fuzz_target!(|data: &[u8]| {
    let lenient = check_round_trip::<NebulaHandshake>(data);
    if let Ok(strict) = handshake::decode_strict(data) {
        // Whatever the strict decoder accepts re-encodes and decodes back the same way.
        let bytes = NebulaHandshake::from_details(strict.clone()).encode_to_vec();
        assert_eq!(handshake::decode_strict(&bytes), Ok(strict.clone()));
        if let Some(NebulaHandshake { details: Some(d), .. }) = &lenient {
            assert_eq!(d.cert, strict.cert);
            assert_eq!(d.time, strict.time);
        }
    }

    if let Some(meta) = check_round_trip::<NebulaMeta>(data) {
        let _ = meta.known_type();
        if let Some(d) = &meta.details {
            let _ = d.vpn_addr_and_encoding();
            let _ = d.relays();
            let _ = d.underlay_addrs().count();
        }
    }

    if let Some(control) = check_round_trip::<NebulaControl>(data) {
        let _ = control.known_type();
        let _ = control.relay_ends();
    }
});
