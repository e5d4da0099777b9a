//! Address messages shared by the lighthouse and relay protocols (`Addr`, `V4AddrPort`, `V6AddrPort`)
//! and their conversions to `std::net` types; IPv4 in `Addr` travels as `::ffff:a.b.c.d`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Which of the two address encodings a lighthouse or control message uses.
///
/// 1.11 picks one per peer from the certificate version of the tunnel; 1.6.1 knows only `V1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrEncoding {
    /// IPv4 only, as a big-endian `uint32` (the `Old…` fields, 1.6.1's only form).
    V1,
    /// `Addr {hi, lo}` (1.10+), any IP version.
    V2,
}

/// Why an address could not be converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddrError {
    /// A `port` field holds a value above 65535 (Go would silently truncate it).
    #[error("port {0} is out of range")]
    PortOutOfRange(u32),
    /// The v1 encoding was asked to carry an IPv6 address.
    #[error("{0} cannot be carried in the v1 (IPv4 uint32) encoding")]
    NotIpv4(IpAddr),
}

/// An IPv4 address as the big-endian `uint32` Nebula puts on the wire (10.1.1.1 = 0x0A010101).
pub fn ipv4_to_u32(ip: Ipv4Addr) -> u32 {
    u32::from(ip)
}

/// The inverse of [`ipv4_to_u32`].
pub fn u32_to_ipv4(value: u32) -> Ipv4Addr {
    Ipv4Addr::from(value)
}

/// An IP address as two big-endian halves (1.10+ `Addr`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Addr {
    /// Bytes 0-7 of the 16-byte address, big-endian.
    #[prost(uint64, tag = "1")]
    pub hi: u64,
    /// Bytes 8-15 of the 16-byte address, big-endian.
    #[prost(uint64, tag = "2")]
    pub lo: u64,
}

impl Addr {
    /// Encodes an address; IPv4 becomes `::ffff:a.b.c.d`.
    pub fn from_ip(ip: IpAddr) -> Addr {
        let v6 = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let (hi, lo) = split_v6(v6);
        Addr { hi, lo }
    }

    /// Decodes the address; an IPv4-mapped address comes back as IPv4 (Go's `Unmap`).
    pub fn to_ip(&self) -> IpAddr {
        unmap(join_v6(self.hi, self.lo))
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Self {
        Addr::from_ip(ip)
    }
}

impl From<Ipv4Addr> for Addr {
    fn from(ip: Ipv4Addr) -> Self {
        Addr::from_ip(IpAddr::V4(ip))
    }
}

impl From<Ipv6Addr> for Addr {
    fn from(ip: Ipv6Addr) -> Self {
        Addr::from_ip(IpAddr::V6(ip))
    }
}

impl From<Addr> for IpAddr {
    fn from(addr: Addr) -> Self {
        addr.to_ip()
    }
}

impl From<&Addr> for IpAddr {
    fn from(addr: &Addr) -> Self {
        addr.to_ip()
    }
}

/// An underlay IPv4 address and UDP port (1.6.1 `Ip4AndPort`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct V4AddrPort {
    /// IPv4 address as a big-endian `uint32`.
    #[prost(uint32, tag = "1")]
    pub addr: u32,
    /// UDP port (a `uint32` on the wire).
    #[prost(uint32, tag = "2")]
    pub port: u32,
}

impl V4AddrPort {
    /// The IPv4 address.
    pub fn ip(&self) -> Ipv4Addr {
        u32_to_ipv4(self.addr)
    }

    /// The socket address; fails if the port field exceeds 65535.
    pub fn to_socket_addr(&self) -> Result<SocketAddrV4, AddrError> {
        Ok(SocketAddrV4::new(self.ip(), port_u16(self.port)?))
    }
}

impl From<SocketAddrV4> for V4AddrPort {
    fn from(sa: SocketAddrV4) -> Self {
        V4AddrPort {
            addr: ipv4_to_u32(*sa.ip()),
            port: u32::from(sa.port()),
        }
    }
}

impl TryFrom<&V4AddrPort> for SocketAddrV4 {
    type Error = AddrError;
    fn try_from(v: &V4AddrPort) -> Result<Self, AddrError> {
        v.to_socket_addr()
    }
}

impl TryFrom<&V4AddrPort> for SocketAddr {
    type Error = AddrError;
    fn try_from(v: &V4AddrPort) -> Result<Self, AddrError> {
        v.to_socket_addr().map(SocketAddr::V4)
    }
}

/// An underlay IPv6 address and UDP port (1.6.1 `Ip6AndPort`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct V6AddrPort {
    /// Bytes 0-7 of the address, big-endian.
    #[prost(uint64, tag = "1")]
    pub hi: u64,
    /// Bytes 8-15 of the address, big-endian.
    #[prost(uint64, tag = "2")]
    pub lo: u64,
    /// UDP port (a `uint32` on the wire).
    #[prost(uint32, tag = "3")]
    pub port: u32,
}

impl V6AddrPort {
    /// The raw 16-byte address, not unmapped.
    pub fn ip(&self) -> Ipv6Addr {
        join_v6(self.hi, self.lo)
    }

    /// The socket address; an IPv4-mapped address becomes an IPv4 socket address, as 1.11 does.
    /// Fails if the port field exceeds 65535.
    pub fn to_socket_addr(&self) -> Result<SocketAddr, AddrError> {
        let port = port_u16(self.port)?;
        Ok(SocketAddr::new(unmap(self.ip()), port))
    }
}

impl From<SocketAddrV6> for V6AddrPort {
    fn from(sa: SocketAddrV6) -> Self {
        let (hi, lo) = split_v6(*sa.ip());
        V6AddrPort {
            hi,
            lo,
            port: u32::from(sa.port()),
        }
    }
}

impl TryFrom<&V6AddrPort> for SocketAddr {
    type Error = AddrError;
    fn try_from(v: &V6AddrPort) -> Result<Self, AddrError> {
        v.to_socket_addr()
    }
}

/// An underlay address in whichever list it belongs to: IPv4 socket addresses go to the v4 list,
/// everything else (including IPv4-mapped IPv6) to the v6 list, as Go's `Is4` decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnderlayAddr {
    /// For `v4_addr_ports`.
    V4(V4AddrPort),
    /// For `v6_addr_ports`.
    V6(V6AddrPort),
}

impl From<SocketAddr> for UnderlayAddr {
    fn from(sa: SocketAddr) -> Self {
        match sa {
            SocketAddr::V4(v4) => UnderlayAddr::V4(v4.into()),
            SocketAddr::V6(v6) => UnderlayAddr::V6(v6.into()),
        }
    }
}

fn port_u16(port: u32) -> Result<u16, AddrError> {
    u16::try_from(port).map_err(|_| AddrError::PortOutOfRange(port))
}

fn split_v6(ip: Ipv6Addr) -> (u64, u64) {
    let bits = u128::from(ip);
    ((bits >> 64) as u64, bits as u64)
}

fn join_v6(hi: u64, lo: u64) -> Ipv6Addr {
    Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo))
}

fn unmap(ip: Ipv6Addr) -> IpAddr {
    match ip.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(ip),
    }
}

/// Encodes an address for a v1 field; only IPv4 fits.
pub(crate) fn v1_addr(ip: IpAddr) -> Result<u32, AddrError> {
    match ip {
        IpAddr::V4(v4) => Ok(ipv4_to_u32(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Ok(ipv4_to_u32(v4)),
            None => Err(AddrError::NotIpv4(ip)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn ipv4_u32_is_big_endian() {
        assert_eq!(ipv4_to_u32(Ipv4Addr::new(10, 1, 1, 1)), 0x0a01_0101);
        assert_eq!(u32_to_ipv4(0x0a2a_0106), Ipv4Addr::new(10, 42, 1, 6));
    }

    #[test]
    fn addr_maps_ipv4() {
        let a = Addr::from(Ipv4Addr::new(10, 42, 1, 6));
        assert_eq!(
            a,
            Addr {
                hi: 0,
                lo: 0x0000_ffff_0a2a_0106
            }
        );
        assert_eq!(a.to_ip(), IpAddr::V4(Ipv4Addr::new(10, 42, 1, 6)));
    }

    #[test]
    fn addr_ipv6_round_trip() {
        let ip: Ipv6Addr = "fd00:1:2:3:4:5:6:7".parse().unwrap();
        let a = Addr::from(ip);
        assert_eq!(a.hi, 0xfd00_0001_0002_0003);
        assert_eq!(a.lo, 0x0004_0005_0006_0007);
        assert_eq!(IpAddr::from(a), IpAddr::V6(ip));
    }

    #[test]
    fn v4_addr_port_matches_upstream_bytes() {
        // lighthouse_test.go @ v1.6.1: Ip4AndPort{10.1.1.1, 10}.
        let v = V4AddrPort::from(SocketAddrV4::new(Ipv4Addr::new(10, 1, 1, 1), 10));
        assert_eq!(
            v.encode_to_vec(),
            [0x08, 0x81, 0x82, 0x84, 0x50, 0x10, 0x0a]
        );
        assert_eq!(
            SocketAddr::try_from(&v).unwrap(),
            "10.1.1.1:10".parse().unwrap()
        );
    }

    #[test]
    fn ports_above_u16_are_refused() {
        let v4 = V4AddrPort {
            addr: 1,
            port: 65536,
        };
        assert_eq!(v4.to_socket_addr(), Err(AddrError::PortOutOfRange(65536)));
        let v6 = V6AddrPort {
            hi: 0,
            lo: 1,
            port: 70000,
        };
        assert_eq!(v6.to_socket_addr(), Err(AddrError::PortOutOfRange(70000)));
    }

    #[test]
    fn v6_addr_port_conversions() {
        let sa: SocketAddrV6 = "[2001:db8::1]:4242".parse().unwrap();
        let v = V6AddrPort::from(sa);
        assert_eq!(v.hi, 0x2001_0db8_0000_0000);
        assert_eq!(v.lo, 1);
        assert_eq!(v.to_socket_addr().unwrap(), SocketAddr::V6(sa));
        let mapped: SocketAddrV6 = "[::ffff:192.0.2.1]:53".parse().unwrap();
        assert_eq!(
            V6AddrPort::from(mapped).to_socket_addr().unwrap(),
            "192.0.2.1:53".parse().unwrap()
        );
    }

    #[test]
    fn underlay_split() {
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert!(matches!(UnderlayAddr::from(a), UnderlayAddr::V4(_)));
        let b: SocketAddr = "[::ffff:192.0.2.1]:1".parse().unwrap();
        assert!(matches!(UnderlayAddr::from(b), UnderlayAddr::V6(_)));
    }

    #[test]
    fn v1_encoding_needs_ipv4() {
        assert_eq!(v1_addr("10.0.0.1".parse().unwrap()), Ok(0x0a00_0001));
        assert_eq!(v1_addr("::ffff:10.0.0.1".parse().unwrap()), Ok(0x0a00_0001));
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(v1_addr(v6), Err(AddrError::NotIpv4(v6)));
    }
}
