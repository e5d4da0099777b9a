//! Relay control messages (`NebulaControl`, header type 6): create-relay requests and responses.
//! Field numbers as in `nebula.proto` @ v1.6.1 and v1.11.1; v1 addresses in fields 4/5, v2 in 6/7.

use std::net::IpAddr;

use crate::addr::{u32_to_ipv4, v1_addr};
pub use crate::addr::{Addr, AddrEncoding, AddrError};

/// `NebulaControl.MessageType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum NebulaControlType {
    /// Unused.
    None = 0,
    /// Ask the next hop to set up (or forward) a relay.
    CreateRelayRequest = 1,
    /// Confirm a relay, echoing the initiator's index.
    CreateRelayResponse = 2,
}

/// A relay control message.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct NebulaControl {
    /// A [`NebulaControlType`] value; unknown values are kept (see [`NebulaControl::known_type`]).
    #[prost(enumeration = "NebulaControlType", tag = "1")]
    pub msg_type: i32,
    /// Request: sender's local relay index; response: echo of it.
    #[prost(uint32, tag = "2")]
    pub initiator_relay_index: u32,
    /// Response: responder's local relay index.
    #[prost(uint32, tag = "3")]
    pub responder_relay_index: u32,
    /// Final target VPN IPv4, v1 encoding (1.6.1 `RelayToIp`).
    #[prost(uint32, tag = "4")]
    pub old_relay_to_addr: u32,
    /// Original initiator VPN IPv4, v1 encoding (1.6.1 `RelayFromIp`).
    #[prost(uint32, tag = "5")]
    pub old_relay_from_addr: u32,
    /// Final target, v2 encoding (1.10+).
    #[prost(message, optional, tag = "6")]
    pub relay_to_addr: Option<Addr>,
    /// Original initiator, v2 encoding (1.10+).
    #[prost(message, optional, tag = "7")]
    pub relay_from_addr: Option<Addr>,
}

/// The two ends of a relay as a control message names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RelayEnds {
    /// The original initiator.
    pub from: IpAddr,
    /// The final target.
    pub to: IpAddr,
    /// Which fields carried them.
    pub encoding: AddrEncoding,
}

impl NebulaControl {
    /// The message type, or `None` for a value this crate does not know.
    pub fn known_type(&self) -> Option<NebulaControlType> {
        NebulaControlType::try_from(self.msg_type).ok()
    }

    /// The relay ends as 1.11 reads them: if either v1 field is non-zero both v1 fields are used
    /// (a zero one reads as 0.0.0.0); otherwise both v2 fields, `None` if either is missing.
    pub fn relay_ends(&self) -> Option<RelayEnds> {
        if self.old_relay_from_addr != 0 || self.old_relay_to_addr != 0 {
            Some(RelayEnds {
                from: IpAddr::V4(u32_to_ipv4(self.old_relay_from_addr)),
                to: IpAddr::V4(u32_to_ipv4(self.old_relay_to_addr)),
                encoding: AddrEncoding::V1,
            })
        } else {
            Some(RelayEnds {
                from: self.relay_from_addr.as_ref()?.to_ip(),
                to: self.relay_to_addr.as_ref()?.to_ip(),
                encoding: AddrEncoding::V2,
            })
        }
    }

    /// Writes both relay ends in one encoding and clears the other pair. `V1` needs IPv4.
    pub fn set_relay_ends(
        &mut self,
        from: IpAddr,
        to: IpAddr,
        encoding: AddrEncoding,
    ) -> Result<(), AddrError> {
        match encoding {
            AddrEncoding::V1 => {
                self.old_relay_from_addr = v1_addr(from)?;
                self.old_relay_to_addr = v1_addr(to)?;
                self.relay_from_addr = None;
                self.relay_to_addr = None;
            }
            AddrEncoding::V2 => {
                self.old_relay_from_addr = 0;
                self.old_relay_to_addr = 0;
                self.relay_from_addr = Some(Addr::from_ip(from));
                self.relay_to_addr = Some(Addr::from_ip(to));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// PROTOCOL.md §6: request, index 0xdeadbeef, to 10.42.1.7, from 10.42.1.6.
    const REQUEST: [u8; 18] = [
        0x08, 0x01, 0x10, 0xef, 0xfd, 0xb6, 0xf5, 0x0d, 0x20, 0x87, 0x82, 0xa8, 0x51, 0x28, 0x86,
        0x82, 0xa8, 0x51,
    ];

    fn from() -> IpAddr {
        "10.42.1.6".parse().unwrap()
    }

    fn to() -> IpAddr {
        "10.42.1.7".parse().unwrap()
    }

    #[test]
    fn v1_request_bytes() {
        let mut msg = NebulaControl {
            msg_type: NebulaControlType::CreateRelayRequest.into(),
            initiator_relay_index: 0xdead_beef,
            ..Default::default()
        };
        msg.set_relay_ends(from(), to(), AddrEncoding::V1).unwrap();
        assert_eq!(msg.encode_to_vec(), REQUEST);
        let back = NebulaControl::decode(&REQUEST[..]).unwrap();
        assert_eq!(back, msg);
        assert_eq!(back.encode_to_vec(), REQUEST);
        assert_eq!(
            back.known_type(),
            Some(NebulaControlType::CreateRelayRequest)
        );
        assert_eq!(
            back.relay_ends(),
            Some(RelayEnds {
                from: from(),
                to: to(),
                encoding: AddrEncoding::V1
            })
        );
    }

    #[test]
    fn v2_response_round_trip() {
        let mut msg = NebulaControl {
            msg_type: NebulaControlType::CreateRelayResponse.into(),
            initiator_relay_index: 1,
            responder_relay_index: 2,
            ..Default::default()
        };
        let v6: IpAddr = "fd00::7".parse().unwrap();
        msg.set_relay_ends(from(), v6, AddrEncoding::V2).unwrap();
        let bytes = msg.encode_to_vec();
        // type, indexes, then fields 6 and 7 in ascending order
        assert_eq!(&bytes[..6], &[0x08, 0x02, 0x10, 0x01, 0x18, 0x02]);
        assert_eq!(bytes[6], 0x32);
        let back = NebulaControl::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, msg);
        let ends = back.relay_ends().unwrap();
        assert_eq!(
            (ends.from, ends.to, ends.encoding),
            (from(), v6, AddrEncoding::V2)
        );
        assert_eq!(
            msg.set_relay_ends(from(), v6, AddrEncoding::V1),
            Err(AddrError::NotIpv4(v6))
        );
    }

    #[test]
    fn missing_v2_end_is_none() {
        let msg = NebulaControl {
            relay_from_addr: Some(Addr::from_ip(from())),
            ..Default::default()
        };
        assert_eq!(msg.relay_ends(), None);
    }

    #[test]
    fn unknown_type_survives() {
        let msg = NebulaControl::decode(&[0x08, 0x07][..]).unwrap();
        assert_eq!(msg.known_type(), None);
        assert_eq!(msg.encode_to_vec(), [0x08, 0x07]);
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error() {
        // Cuts inside a varint are errors; cuts on a field boundary are valid shorter messages.
        for len in [1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17] {
            assert!(NebulaControl::decode(&REQUEST[..len]).is_err(), "{len}");
        }
        for garbage in [&[0xff][..], &[0x00, 0x00], &[0x0f], &[0x32, 0x05, 0x08]] {
            assert!(NebulaControl::decode(garbage).is_err(), "{garbage:02x?}");
        }
        // wrong wire type on a known field (prost and gogo both refuse it)
        assert!(NebulaControl::decode(&[0x12, 0x00][..]).is_err());
    }
}
