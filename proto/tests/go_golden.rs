//! Golden datagrams captured from real Go Nebula 1.6.1 and 1.11.0 (see `data/capture.sh`):
//! checks the header, the handshake payload and the embedded certificate decode and re-encode exactly.

use proto::cert::RawNebulaCertificate;
use proto::handshake::{self, NebulaHandshake, NebulaHandshakeDetails};
use proto::header::{subtype, Header, MessageType, HEADER_LEN};
use proto::prost::Message;

/// The node's own certificate (PEM body of `a.crt`), public key included.
const NODE_CERT: &[u8] = include_bytes!("data/go-node-a-cert.bin");

/// X25519 public keys in Noise IX message 1: e(32) then s(32), both in clear.
const KEY_LEN: usize = 32;

struct Capture {
    name: &'static str,
    datagram: &'static [u8],
    cert_version: u32,
}

const CAPTURES: [Capture; 2] = [
    Capture {
        name: "1.6.1",
        datagram: include_bytes!("data/go-1.6.1-stage1-1.bin"),
        cert_version: 0,
    },
    Capture {
        name: "1.11.0",
        datagram: include_bytes!("data/go-1.11.0-stage1-1.bin"),
        cert_version: 1,
    },
];

fn split(c: &Capture) -> (Header, &'static [u8], &'static [u8]) {
    let (header, noise) = Header::parse_split(c.datagram).unwrap();
    let (keys, payload) = noise.split_at(2 * KEY_LEN);
    let static_key = &keys[KEY_LEN..];
    (header, static_key, payload)
}

#[test]
fn stage_one_header() {
    for c in &CAPTURES {
        let (header, _, _) = split(c);
        assert_eq!(
            header,
            Header::new(MessageType::Handshake, subtype::HANDSHAKE_IX_PSK0, 0, 1),
            "{}",
            c.name
        );
        assert!(Header::parse_strict(c.datagram).is_ok(), "{}", c.name);
        assert_eq!(&header.to_bytes()[..], &c.datagram[..HEADER_LEN]);
    }
}

#[test]
fn handshake_payload_round_trips_byte_identically() {
    for c in &CAPTURES {
        let (_, _, payload) = split(c);
        let msg = NebulaHandshake::decode(payload).unwrap();
        assert_eq!(msg.encode_to_vec(), payload, "{}", c.name);
        assert!(msg.hmac.is_empty());
        let details = msg.details.clone().unwrap();
        assert_eq!(details.cert_version, c.cert_version, "{}", c.name);
        assert_ne!(details.initiator_index, 0);
        assert_eq!(details.responder_index, 0);
        assert_eq!(details.cookie, 0);
        // Nanoseconds since the epoch, somewhere between 2023 and 2100.
        assert!((1_700_000_000_000_000_000..4_102_444_800_000_000_000).contains(&details.time));

        let strict = handshake::decode_strict(payload).unwrap();
        assert_eq!(strict, details, "{}", c.name);
        // What 1.11 would send with the same details is what the Go node sent.
        assert_eq!(
            NebulaHandshake::from_details(strict).encode_to_vec(),
            payload
        );
    }
}

#[test]
fn handshake_cert_is_the_node_cert_without_its_key() {
    let node = RawNebulaCertificate::decode(NODE_CERT).unwrap();
    assert_eq!(node.encode_to_vec(), NODE_CERT, "canonical re-encoding");
    for c in &CAPTURES {
        let (_, static_key, payload) = split(c);
        let details: NebulaHandshakeDetails =
            NebulaHandshake::decode(payload).unwrap().details.unwrap();
        let mut cert = RawNebulaCertificate::decode(details.cert.as_slice()).unwrap();
        let cert_details = cert.details.as_mut().unwrap();
        assert!(
            cert_details.public_key.is_empty(),
            "{}: key stripped",
            c.name
        );
        assert_eq!(cert_details.name, "node-a");
        // Putting the Noise static key back gives the exact certificate bytes.
        cert_details.public_key = static_key.to_vec();
        assert_eq!(cert.encode_to_vec(), NODE_CERT, "{}", c.name);
    }
}
