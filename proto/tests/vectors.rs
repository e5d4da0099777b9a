//! Every example in PROTOCOL.md §1-§6 decoded and re-encoded byte-identically through the public API,
//! plus truncation, mutation and garbage sweeps: decoders must return errors, never panic.

use proto::control::{NebulaControl, NebulaControlType};
use proto::handshake::{self, NebulaHandshake};
use proto::header::{Header, MessageType, HEADER_LEN};
use proto::lighthouse::{NebulaMeta, NebulaMetaType, V4AddrPort};
use proto::prost::Message;

/// version 5, type 4, index 10, counter 9 (`header/header_test.go @ v1.6.1`).
const HEADER_VECTOR: &str = "540000000000000a0000000000000009";
const HANDSHAKE: &str = "0a160a044343434310c4e6888901288080a8b1e39fe7cb17";
/// Ip4AndPort{10.1.1.1, 10} (`lighthouse_test.go @ v1.6.1`).
const V4_ADDR_PORT: &str = "0881828450100a";
const META_V1_QUERY: &str = "08011205088682a851";
const META_V2_QUERY: &str = "0801120a3208108682a8d1f0ff3f";
const CONTROL_REQUEST: &str = "080110effdb6f50d208782a851288682a851";

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// Decodes with prost and, on success, checks that the canonical re-encoding is stable.
/// Returns the canonical encoding.
fn reencode<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<Vec<u8>> {
    let msg = M::decode(bytes).ok()?;
    let out = msg.encode_to_vec();
    assert_eq!(M::decode(out.as_slice()).unwrap(), msg);
    Some(out)
}

#[test]
fn header_vector() {
    let bytes = unhex(HEADER_VECTOR);
    let h = Header::parse(&bytes).unwrap();
    assert_eq!((h.version, h.msg_type), (5, MessageType::Test));
    assert_eq!((h.remote_index, h.message_counter), (10, 9));
    let mut out = [0u8; HEADER_LEN];
    h.encode(&mut out).unwrap();
    assert_eq!(out.to_vec(), bytes);
}

#[test]
fn protobuf_vectors_round_trip_exactly() {
    let hs = unhex(HANDSHAKE);
    assert_eq!(reencode::<NebulaHandshake>(&hs).unwrap(), hs);
    assert_eq!(
        handshake::decode_strict(&hs).unwrap().initiator_index,
        0x1122_3344
    );

    let v4 = unhex(V4_ADDR_PORT);
    let addr = V4AddrPort::decode(v4.as_slice()).unwrap();
    assert_eq!((addr.addr, addr.port), (0x0a01_0101, 10));
    assert_eq!(addr.encode_to_vec(), v4);

    for (hex, ty) in [
        (META_V1_QUERY, NebulaMetaType::HostQuery),
        (META_V2_QUERY, NebulaMetaType::HostQuery),
    ] {
        let bytes = unhex(hex);
        assert_eq!(reencode::<NebulaMeta>(&bytes).unwrap(), bytes);
        let meta = NebulaMeta::decode(bytes.as_slice()).unwrap();
        assert_eq!(meta.known_type(), Some(ty));
        let (ip, _) = meta.details.unwrap().vpn_addr_and_encoding().unwrap();
        assert_eq!(ip.to_string(), "10.42.1.6");
    }

    let control = unhex(CONTROL_REQUEST);
    assert_eq!(reencode::<NebulaControl>(&control).unwrap(), control);
    let msg = NebulaControl::decode(control.as_slice()).unwrap();
    assert_eq!(
        msg.known_type(),
        Some(NebulaControlType::CreateRelayRequest)
    );
    let ends = msg.relay_ends().unwrap();
    assert_eq!(
        (ends.from.to_string(), ends.to.to_string()),
        ("10.42.1.6".into(), "10.42.1.7".into())
    );
}

/// A canonical message cut anywhere either fails or, when cut on a top-level field boundary,
/// decodes to a message whose encoding is exactly the kept prefix.
#[test]
fn truncation_errors_or_yields_the_prefix() {
    fn check<M: Message + Default + PartialEq + std::fmt::Debug>(hex: &str) -> usize {
        let bytes = unhex(hex);
        let mut errors = 0;
        for len in 0..bytes.len() {
            match reencode::<M>(&bytes[..len]) {
                Some(out) => assert_eq!(out, &bytes[..len], "{hex} cut at {len}"),
                None => errors += 1,
            }
        }
        errors
    }
    assert!(check::<NebulaHandshake>(HANDSHAKE) > 20);
    assert!(check::<NebulaMeta>(META_V1_QUERY) > 5);
    assert!(check::<NebulaMeta>(META_V2_QUERY) > 10);
    assert!(check::<NebulaControl>(CONTROL_REQUEST) > 10);

    let hs = unhex(HANDSHAKE);
    for len in 1..hs.len() {
        assert!(
            handshake::decode_strict(&hs[..len]).is_err(),
            "strict cut at {len}"
        );
    }
    let header = unhex(HEADER_VECTOR);
    for len in 0..HEADER_LEN {
        assert!(Header::parse(&header[..len]).is_err());
    }
}

/// Every single-byte substitution of every vector goes through every decoder without a panic.
#[test]
fn mutations_never_panic() {
    let mut decoded = 0usize;
    for hex in [HANDSHAKE, META_V1_QUERY, META_V2_QUERY, CONTROL_REQUEST] {
        let original = unhex(hex);
        for i in 0..original.len() {
            for value in 0..=255u8 {
                let mut bytes = original.clone();
                bytes[i] = value;
                decoded += usize::from(reencode::<NebulaHandshake>(&bytes).is_some());
                decoded += usize::from(reencode::<NebulaMeta>(&bytes).is_some());
                decoded += usize::from(reencode::<NebulaControl>(&bytes).is_some());
                decoded += usize::from(handshake::decode_strict(&bytes).is_ok());
            }
        }
    }
    assert!(decoded > 0);
}

/// Deterministic pseudo-random garbage (xorshift) of lengths 0..64 through every decoder.
#[test]
fn random_garbage_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut err) = (0usize, 0usize);
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        for result in [
            reencode::<NebulaHandshake>(&bytes).is_some(),
            reencode::<NebulaMeta>(&bytes).is_some(),
            reencode::<NebulaControl>(&bytes).is_some(),
            handshake::decode_strict(&bytes).is_ok(),
            Header::parse(&bytes).is_ok(),
        ] {
            if result {
                ok += 1
            } else {
                err += 1
            }
        }
    }
    // Random bytes are mostly not valid protobuf.
    assert!(err > ok, "ok={ok} err={err}");
}
