//! The handshake payload carried inside Noise IX messages: `NebulaHandshake` and its details.
//! Lenient decoding via prost (as 1.6.1's gogo code), plus a strict decoder with 1.11's rules.

use crate::wire::{wire_type, Reader, WireError};

/// Field numbers of `NebulaHandshakeDetails`.
pub mod field {
    /// `Cert`, bytes.
    pub const CERT: u32 = 1;
    /// `InitiatorIndex`, uint32.
    pub const INITIATOR_INDEX: u32 = 2;
    /// `ResponderIndex`, uint32.
    pub const RESPONDER_INDEX: u32 = 3;
    /// `Cookie`, uint64, never populated.
    pub const COOKIE: u32 = 4;
    /// `Time`, uint64 nanoseconds.
    pub const TIME: u32 = 5;
    /// `CertVersion`, uint32 (1.10+).
    pub const CERT_VERSION: u32 = 8;
}

/// The outer handshake message.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct NebulaHandshake {
    #[prost(message, optional, tag = "1")]
    pub details: Option<NebulaHandshakeDetails>,
    /// Never set or checked by any release.
    #[prost(bytes = "vec", tag = "2")]
    pub hmac: Vec<u8>,
}

/// What a handshake message says about its sender.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct NebulaHandshakeDetails {
    /// The sender's certificate with its public key removed (v1: protobuf, v2: reduced DER).
    #[prost(bytes = "vec", tag = "1")]
    pub cert: Vec<u8>,
    /// The initiator's local index; the responder echoes it.
    #[prost(uint32, tag = "2")]
    pub initiator_index: u32,
    /// The responder's local index (stage 2 only).
    #[prost(uint32, tag = "3")]
    pub responder_index: u32,
    /// Reserved and never populated; 1.11 ignores it, a 1.6.1 responder echoes it.
    #[prost(uint64, tag = "4")]
    pub cookie: u64,
    /// Sender's wall clock in nanoseconds since the Unix epoch.
    #[prost(uint64, tag = "5")]
    pub time: u64,
    /// 1 or 2 from 1.10+; 0 (absent) from 1.6.1 means v1.
    #[prost(uint32, tag = "8")]
    pub cert_version: u32,
}

impl NebulaHandshake {
    /// The message as 1.11 writes it: details always present (even if all-zero), no hmac.
    pub fn from_details(details: NebulaHandshakeDetails) -> Self {
        NebulaHandshake {
            details: Some(details),
            hmac: Vec::new(),
        }
    }
}

/// Why [`decode_strict`] refused a handshake payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeDecodeError {
    /// The outer `NebulaHandshake` framing is broken (truncated, bad tag, bad wire type 6/7…).
    #[error("invalid handshake message: {0}")]
    Message(WireError),
    /// The embedded `NebulaHandshakeDetails` framing is broken.
    #[error("invalid handshake details: {0}")]
    Details(WireError),
    /// A known details field arrived with the wrong wire type: a protocol violation by the peer.
    #[error("handshake details field {field} has wire type {wire_type}, expected {expected}")]
    WrongWireType {
        /// Field number.
        field: u32,
        /// Wire type received.
        wire_type: u8,
        /// Wire type the field requires.
        expected: u8,
    },
    /// A `uint32` details field holds a value above 2^32-1.
    #[error("handshake details field {field} value {value} does not fit in 32 bits")]
    ValueTooLarge {
        /// Field number.
        field: u32,
        /// Value received.
        value: u64,
    },
}

/// Decodes a `NebulaHandshake` with the rules of 1.11's hand-written parser:
/// known details fields with the wrong wire type and `uint32` fields above 2^32-1 are errors;
/// unknown fields (and `Cookie`, `Hmac`, fields 6/7) are skipped; repeated singular fields
/// follow last-wins; repeated `Details` fields merge. The returned `cookie` is always 0.
///
/// A missing `Details` yields all-zero details: checking that a cert and index are present is
/// the caller's job.
pub fn decode_strict(buf: &[u8]) -> Result<NebulaHandshakeDetails, HandshakeDecodeError> {
    let mut details = NebulaHandshakeDetails::default();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let (number, wt) = r.tag().map_err(HandshakeDecodeError::Message)?;
        if number == 1 && wt == wire_type::LEN {
            let inner = r.bytes().map_err(HandshakeDecodeError::Message)?;
            merge_details_strict(&mut details, inner)?;
        } else {
            r.skip_value(number, wt)
                .map_err(HandshakeDecodeError::Message)?;
        }
    }
    Ok(details)
}

fn merge_details_strict(
    details: &mut NebulaHandshakeDetails,
    buf: &[u8],
) -> Result<(), HandshakeDecodeError> {
    let mut r = Reader::new(buf);
    let expect = |number: u32, got: u8, expected: u8| {
        if got == expected {
            Ok(())
        } else {
            Err(HandshakeDecodeError::WrongWireType {
                field: number,
                wire_type: got,
                expected,
            })
        }
    };
    let uint32 = |number: u32, value: u64| {
        u32::try_from(value).map_err(|_| HandshakeDecodeError::ValueTooLarge {
            field: number,
            value,
        })
    };
    while !r.is_empty() {
        let (number, wt) = r.tag().map_err(HandshakeDecodeError::Details)?;
        match number {
            field::CERT => {
                expect(number, wt, wire_type::LEN)?;
                details.cert = r.bytes().map_err(HandshakeDecodeError::Details)?.to_vec();
            }
            field::INITIATOR_INDEX | field::RESPONDER_INDEX | field::CERT_VERSION => {
                expect(number, wt, wire_type::VARINT)?;
                let value = uint32(number, r.varint().map_err(HandshakeDecodeError::Details)?)?;
                match number {
                    field::INITIATOR_INDEX => details.initiator_index = value,
                    field::RESPONDER_INDEX => details.responder_index = value,
                    _ => details.cert_version = value,
                }
            }
            field::TIME => {
                expect(number, wt, wire_type::VARINT)?;
                details.time = r.varint().map_err(HandshakeDecodeError::Details)?;
            }
            _ => r
                .skip_value(number, wt)
                .map_err(HandshakeDecodeError::Details)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// PROTOCOL.md §2.2: cert "CCCC", initiator index 0x11223344, time 1.7e18.
    const EXAMPLE_HEX: &str = "0a160a044343434310c4e6888901288080a8b1e39fe7cb17";

    fn example_bytes() -> Vec<u8> {
        hex::decode(EXAMPLE_HEX).unwrap()
    }

    fn example_details() -> NebulaHandshakeDetails {
        NebulaHandshakeDetails {
            cert: b"CCCC".to_vec(),
            initiator_index: 0x1122_3344,
            time: 1_700_000_000_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn example_encodes_byte_identically() {
        let msg = NebulaHandshake::from_details(example_details());
        assert_eq!(msg.encode_to_vec(), example_bytes());
    }

    #[test]
    fn example_decodes_both_ways() {
        let bytes = example_bytes();
        let lenient = NebulaHandshake::decode(bytes.as_slice()).unwrap();
        assert_eq!(lenient, NebulaHandshake::from_details(example_details()));
        assert_eq!(lenient.encode_to_vec(), bytes);
        assert_eq!(decode_strict(&bytes).unwrap(), example_details());
    }

    #[test]
    fn empty_details_are_still_written() {
        let msg = NebulaHandshake::from_details(NebulaHandshakeDetails::default());
        assert_eq!(msg.encode_to_vec(), [0x0a, 0x00]);
        assert_eq!(
            decode_strict(&[]).unwrap(),
            NebulaHandshakeDetails::default()
        );
    }

    #[test]
    fn cert_version_is_field_eight() {
        let d = NebulaHandshakeDetails {
            cert_version: 1,
            ..Default::default()
        };
        // 1.11.0 stage 1 is 2 bytes longer than 1.6.1's: `40 01`.
        assert_eq!(d.encode_to_vec(), [0x40, 0x01]);
        let all = NebulaHandshakeDetails {
            cert: vec![1],
            initiator_index: 1,
            responder_index: 2,
            cookie: 3,
            time: 4,
            cert_version: 2,
        };
        assert_eq!(
            all.encode_to_vec(),
            [0x0a, 0x01, 0x01, 0x10, 0x01, 0x18, 0x02, 0x20, 0x03, 0x28, 0x04, 0x40, 0x02]
        );
    }

    #[test]
    fn strict_skips_unknown_cookie_hmac_and_reserved() {
        // details: init=77, cookie=5, field 6 varint, field 7 bytes, field 50 fixed32, resp=88
        let details = [
            0x10, 77, 0x20, 5, 0x30, 1, 0x3a, 1, 0xff, 0x95, 0x03, 1, 2, 3, 4, 0x18, 88,
        ];
        let mut msg = vec![0x0a, details.len() as u8];
        msg.extend_from_slice(&details);
        msg.extend_from_slice(&[0x12, 2, 0xaa, 0xbb]); // hmac
        msg.extend_from_slice(&[0x98, 0x06, 0x01]); // outer field 99, varint
        let d = decode_strict(&msg).unwrap();
        assert_eq!(d.initiator_index, 77);
        assert_eq!(d.responder_index, 88);
        assert_eq!(d.cookie, 0);
        // prost keeps the cookie.
        let lenient = NebulaHandshake::decode(msg.as_slice()).unwrap();
        assert_eq!(lenient.details.unwrap().cookie, 5);
        assert_eq!(lenient.hmac, [0xaa, 0xbb]);
    }

    #[test]
    fn strict_last_wins_and_details_merge() {
        let msg = [
            0x0a, 0x04, 0x10, 0x01, 0x10, 0x02, // init 1 then 2
            0x0a, 0x02, 0x18, 0x07, // a second details: resp 7
        ];
        let d = decode_strict(&msg).unwrap();
        assert_eq!(d.initiator_index, 2);
        assert_eq!(d.responder_index, 7);
    }

    #[test]
    fn strict_rejects_wrong_wire_type() {
        // InitiatorIndex sent as fixed32.
        let msg = [0x0a, 0x05, 0x15, 1, 2, 3, 4];
        assert_eq!(
            decode_strict(&msg),
            Err(HandshakeDecodeError::WrongWireType {
                field: 2,
                wire_type: 5,
                expected: 0
            })
        );
        // Cert sent as varint.
        assert!(matches!(
            decode_strict(&[0x0a, 0x02, 0x08, 0x01]),
            Err(HandshakeDecodeError::WrongWireType { field: 1, .. })
        ));
        // Outer field 1 with a varint wire type is skipped, as 1.11 does.
        assert_eq!(
            decode_strict(&[0x08, 0x01]).unwrap(),
            NebulaHandshakeDetails::default()
        );
    }

    #[test]
    fn strict_rejects_index_above_u32() {
        // initiator index = 2^32
        let msg = [0x0a, 0x06, 0x10, 0x80, 0x80, 0x80, 0x80, 0x10];
        assert_eq!(
            decode_strict(&msg),
            Err(HandshakeDecodeError::ValueTooLarge {
                field: 2,
                value: 1 << 32
            })
        );
    }

    #[test]
    fn truncated_input_is_an_error_everywhere() {
        let bytes = example_bytes();
        for len in 1..bytes.len() {
            let cut = &bytes[..len];
            assert!(decode_strict(cut).is_err(), "strict accepted {len} bytes");
            assert!(
                NebulaHandshake::decode(cut).is_err(),
                "prost accepted {len} bytes"
            );
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for garbage in [
            &[0xff][..],
            &[0x00, 0x00],
            &[0x0f],
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            &[0x0a, 0x02, 0x0c, 0x00],
        ] {
            assert!(decode_strict(garbage).is_err(), "{garbage:02x?}");
            assert!(NebulaHandshake::decode(garbage).is_err(), "{garbage:02x?}");
        }
    }
}
