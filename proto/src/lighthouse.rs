//! Lighthouse messages (`NebulaMeta`, header type 3): queries, replies, updates, punch notifications.
//! Field numbers as in `nebula.proto` @ v1.6.1 and v1.11.1; v1 fields 1/5, v2 fields 6/7.

use std::net::{IpAddr, SocketAddr};

use crate::addr::{u32_to_ipv4, v1_addr};
pub use crate::addr::{Addr, AddrEncoding, AddrError, UnderlayAddr, V4AddrPort, V6AddrPort};

/// `NebulaMeta.MessageType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum NebulaMetaType {
    /// Unused.
    None = 0,
    /// Node → each lighthouse: where is this VPN address?
    HostQuery = 1,
    /// Lighthouse → querier: its addresses and relays.
    HostQueryReply = 2,
    /// Node → each lighthouse: my addresses and relays.
    HostUpdateNotification = 3,
    /// Accepted and ignored.
    HostMovedNotification = 4,
    /// Lighthouse → queried host: punch toward these addresses.
    HostPunchNotification = 5,
    /// Defined, never used.
    HostWhoami = 6,
    /// Defined, never used.
    HostWhoamiReply = 7,
    /// Defined, never used.
    PathCheck = 8,
    /// Defined, never used.
    PathCheckReply = 9,
    /// Lighthouse → updater (1.7+); receivers ignore it.
    HostUpdateNotificationAck = 10,
}

/// A lighthouse message.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct NebulaMeta {
    /// A [`NebulaMetaType`] value; unknown values are kept (see [`NebulaMeta::known_type`]).
    #[prost(enumeration = "NebulaMetaType", tag = "1")]
    pub msg_type: i32,
    #[prost(message, optional, tag = "2")]
    pub details: Option<NebulaMetaDetails>,
}

/// The body of a lighthouse message.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct NebulaMetaDetails {
    /// Subject VPN IPv4 as a big-endian u32 (1.6.1 `VpnIp`); non-zero means a v1 message.
    #[prost(uint32, tag = "1")]
    pub old_vpn_addr: u32,
    /// Underlay IPv4 addresses (1.6.1 `Ip4AndPorts`).
    #[prost(message, repeated, tag = "2")]
    pub v4_addr_ports: Vec<V4AddrPort>,
    /// Never used.
    #[prost(uint32, tag = "3")]
    pub counter: u32,
    /// Underlay IPv6 addresses (1.6.1 `Ip6AndPorts`).
    #[prost(message, repeated, tag = "4")]
    pub v6_addr_ports: Vec<V6AddrPort>,
    /// Relays for the subject, v1 encoding (1.6.1 `RelayVpnIp`).
    #[prost(uint32, repeated, packed = "true", tag = "5")]
    pub old_relay_vpn_addrs: Vec<u32>,
    /// Subject VPN address, v2 encoding (1.10+).
    #[prost(message, optional, tag = "6")]
    pub vpn_addr: Option<Addr>,
    /// Relays for the subject, v2 encoding (1.10+).
    #[prost(message, repeated, tag = "7")]
    pub relay_vpn_addrs: Vec<Addr>,
}

impl NebulaMeta {
    /// A message of `msg_type` with `details`.
    pub fn new(msg_type: NebulaMetaType, details: NebulaMetaDetails) -> Self {
        NebulaMeta {
            msg_type: msg_type.into(),
            details: Some(details),
        }
    }

    /// The message type, or `None` for a value this crate does not know.
    pub fn known_type(&self) -> Option<NebulaMetaType> {
        NebulaMetaType::try_from(self.msg_type).ok()
    }
}

impl NebulaMetaDetails {
    /// Details naming `vpn_addr` as the subject in the given encoding.
    /// `V1` needs an IPv4 address.
    pub fn for_vpn_addr(vpn_addr: IpAddr, encoding: AddrEncoding) -> Result<Self, AddrError> {
        let mut details = NebulaMetaDetails::default();
        details.set_vpn_addr(vpn_addr, encoding)?;
        Ok(details)
    }

    /// The subject VPN address and the encoding it came in, as 1.11 reads it:
    /// `old_vpn_addr` if non-zero (v1), else `vpn_addr` (v2), else `None`.
    pub fn vpn_addr_and_encoding(&self) -> Option<(IpAddr, AddrEncoding)> {
        if self.old_vpn_addr != 0 {
            Some((IpAddr::V4(u32_to_ipv4(self.old_vpn_addr)), AddrEncoding::V1))
        } else {
            self.vpn_addr
                .as_ref()
                .map(|a| (a.to_ip(), AddrEncoding::V2))
        }
    }

    /// Sets the subject in one encoding and clears the other.
    pub fn set_vpn_addr(&mut self, ip: IpAddr, encoding: AddrEncoding) -> Result<(), AddrError> {
        match encoding {
            AddrEncoding::V1 => {
                self.old_vpn_addr = v1_addr(ip)?;
                self.vpn_addr = None;
            }
            AddrEncoding::V2 => {
                self.old_vpn_addr = 0;
                self.vpn_addr = Some(Addr::from_ip(ip));
            }
        }
        Ok(())
    }

    /// All relays, v1 entries first then v2 ones (1.11's `GetRelays`).
    pub fn relays(&self) -> Vec<IpAddr> {
        self.old_relay_vpn_addrs
            .iter()
            .map(|&r| IpAddr::V4(u32_to_ipv4(r)))
            .chain(self.relay_vpn_addrs.iter().map(Addr::to_ip))
            .collect()
    }

    /// Replaces the relay list, written in one encoding (the other list is cleared).
    pub fn set_relays<I>(&mut self, relays: I, encoding: AddrEncoding) -> Result<(), AddrError>
    where
        I: IntoIterator<Item = IpAddr>,
    {
        match encoding {
            AddrEncoding::V1 => {
                self.old_relay_vpn_addrs =
                    relays.into_iter().map(v1_addr).collect::<Result<_, _>>()?;
                self.relay_vpn_addrs.clear();
            }
            AddrEncoding::V2 => {
                self.relay_vpn_addrs = relays.into_iter().map(Addr::from_ip).collect();
                self.old_relay_vpn_addrs.clear();
            }
        }
        Ok(())
    }

    /// Appends an underlay address to the v4 or v6 list (IPv4-mapped IPv6 goes to v6, as in Go).
    pub fn push_underlay(&mut self, addr: SocketAddr) {
        match UnderlayAddr::from(addr) {
            UnderlayAddr::V4(v4) => self.v4_addr_ports.push(v4),
            UnderlayAddr::V6(v6) => self.v6_addr_ports.push(v6),
        }
    }

    /// All underlay addresses, v4 list first; entries with a port above 65535 are skipped.
    pub fn underlay_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let v4 = self
            .v4_addr_ports
            .iter()
            .filter_map(|a| a.to_socket_addr().ok().map(SocketAddr::V4));
        let v6 = self
            .v6_addr_ports
            .iter()
            .filter_map(|a| a.to_socket_addr().ok());
        v4.chain(v6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::net::Ipv4Addr;

    const VPN: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 42, 1, 6));

    #[test]
    fn v1_host_query_bytes() {
        let details = NebulaMetaDetails::for_vpn_addr(VPN, AddrEncoding::V1).unwrap();
        let msg = NebulaMeta::new(NebulaMetaType::HostQuery, details);
        let bytes = [0x08, 0x01, 0x12, 0x05, 0x08, 0x86, 0x82, 0xa8, 0x51];
        assert_eq!(msg.encode_to_vec(), bytes);
        let back = NebulaMeta::decode(&bytes[..]).unwrap();
        assert_eq!(back, msg);
        assert_eq!(back.known_type(), Some(NebulaMetaType::HostQuery));
        assert_eq!(
            back.details.unwrap().vpn_addr_and_encoding(),
            Some((VPN, AddrEncoding::V1))
        );
    }

    #[test]
    fn v2_host_query_bytes() {
        let details = NebulaMetaDetails::for_vpn_addr(VPN, AddrEncoding::V2).unwrap();
        let msg = NebulaMeta::new(NebulaMetaType::HostQuery, details);
        let bytes = [
            0x08, 0x01, 0x12, 0x0a, 0x32, 0x08, 0x10, 0x86, 0x82, 0xa8, 0xd1, 0xf0, 0xff, 0x3f,
        ];
        assert_eq!(msg.encode_to_vec(), bytes);
        let back = NebulaMeta::decode(&bytes[..]).unwrap();
        assert_eq!(back, msg);
        assert_eq!(
            back.details.unwrap().vpn_addr_and_encoding(),
            Some((VPN, AddrEncoding::V2))
        );
    }

    #[test]
    fn unknown_type_survives() {
        let bytes = [0x08, 0x2a];
        let msg = NebulaMeta::decode(&bytes[..]).unwrap();
        assert_eq!(msg.msg_type, 42);
        assert_eq!(msg.known_type(), None);
        assert_eq!(msg.msg_type(), NebulaMetaType::None);
        assert_eq!(msg.encode_to_vec(), bytes);
    }

    #[test]
    fn all_type_values() {
        for v in 0..=10 {
            assert_eq!(i32::from(NebulaMetaType::try_from(v).unwrap()), v);
        }
        assert!(NebulaMetaType::try_from(11).is_err());
        assert_eq!(
            NebulaMetaType::HostUpdateNotificationAck as i32,
            10,
            "1.11 value"
        );
    }

    #[test]
    fn field_numbers_match_upstream() {
        let d = NebulaMetaDetails {
            old_vpn_addr: 1,
            v4_addr_ports: vec![V4AddrPort { addr: 2, port: 3 }],
            counter: 4,
            v6_addr_ports: vec![V6AddrPort {
                hi: 5,
                lo: 6,
                port: 7,
            }],
            old_relay_vpn_addrs: vec![8, 9],
            vpn_addr: Some(Addr { hi: 10, lo: 11 }),
            relay_vpn_addrs: vec![Addr { hi: 12, lo: 13 }],
        };
        let expected = [
            0x08, 1, // 1: old_vpn_addr
            0x12, 4, 0x08, 2, 0x10, 3, // 2: v4
            0x18, 4, // 3: counter
            0x22, 6, 0x08, 5, 0x10, 6, 0x18, 7, // 4: v6
            0x2a, 2, 8, 9, // 5: packed relays
            0x32, 4, 0x08, 10, 0x10, 11, // 6: vpn_addr
            0x3a, 4, 0x08, 12, 0x10, 13, // 7: relays v2
        ];
        assert_eq!(d.encode_to_vec(), expected);
        assert_eq!(NebulaMetaDetails::decode(&expected[..]).unwrap(), d);
    }

    #[test]
    fn unpacked_relays_from_old_encoders_decode() {
        // proto3 parsers must accept unpacked repeated scalars too.
        let d = NebulaMetaDetails::decode(&[0x28, 8, 0x28, 9][..]).unwrap();
        assert_eq!(d.old_relay_vpn_addrs, [8, 9]);
    }

    #[test]
    fn relays_and_underlay_helpers() {
        let mut d = NebulaMetaDetails::default();
        let r1: IpAddr = "10.42.0.1".parse().unwrap();
        let r2: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(
            d.set_relays([r1, r2], AddrEncoding::V1),
            Err(AddrError::NotIpv4(r2))
        );
        d.set_relays([r1], AddrEncoding::V1).unwrap();
        assert_eq!(d.old_relay_vpn_addrs, [0x0a2a_0001]);
        d.relay_vpn_addrs.push(Addr::from_ip(r2));
        assert_eq!(d.relays(), [r1, r2]);
        d.set_relays([r1, r2], AddrEncoding::V2).unwrap();
        assert!(d.old_relay_vpn_addrs.is_empty());
        assert_eq!(d.relays(), [r1, r2]);

        let a: SocketAddr = "192.0.2.1:4242".parse().unwrap();
        let b: SocketAddr = "[2001:db8::2]:4243".parse().unwrap();
        d.push_underlay(b);
        d.push_underlay(a);
        d.v4_addr_ports.push(V4AddrPort {
            addr: 1,
            port: 1 << 20,
        });
        assert_eq!(d.underlay_addrs().collect::<Vec<_>>(), [a, b]);
    }

    #[test]
    fn missing_subject_is_none() {
        assert_eq!(NebulaMetaDetails::default().vpn_addr_and_encoding(), None);
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error() {
        let bytes = [
            0x08, 0x01, 0x12, 0x0a, 0x32, 0x08, 0x10, 0x86, 0x82, 0xa8, 0xd1, 0xf0, 0xff, 0x3f,
        ];
        // Every cut that ends inside the nested message is an error.
        for len in 3..bytes.len() {
            assert!(NebulaMeta::decode(&bytes[..len]).is_err(), "{len}");
        }
        for garbage in [&[0xff][..], &[0x00], &[0x12, 0x01, 0x08], &[0x0f, 0x00]] {
            assert!(NebulaMeta::decode(garbage).is_err(), "{garbage:02x?}");
        }
    }
}
