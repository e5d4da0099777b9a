//! `Details`: the certificate fields both versions share, and the per-version rules they must obey.
//! The v1 and v2 codecs read and write it; `Certificate` holds one. Knows no encoding itself.

use crate::error::CertError;
use ipnet::IpNet;
use std::cmp::Ordering;
use std::net::IpAddr;

/// The fields both versions share (the v1 `Details` message / the v2 `[0]` details).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Details {
    pub name: Box<str>,
    pub networks: Vec<IpNet>,
    pub unsafe_networks: Vec<IpNet>,
    pub groups: Vec<String>,
    pub is_ca: bool,
    pub not_before: i64,
    pub not_after: i64,
    /// Raw issuer bytes (32-byte CA fingerprint on host certs, empty on CAs).
    pub issuer: Issuer,
}

/// A certificate's issuer field: nearly always a 32-byte CA fingerprint, held inline (a peer's
/// certificate is kept per tunnel), or nothing (CAs); any other length is kept as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Issuer {
    #[default]
    None,
    Fingerprint([u8; 32]),
    Other(Box<[u8]>),
}

impl Issuer {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Issuer::None => &[],
            Issuer::Fingerprint(f) => f,
            Issuer::Other(b) => b,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

impl From<Vec<u8>> for Issuer {
    fn from(v: Vec<u8>) -> Issuer {
        if v.is_empty() {
            return Issuer::None;
        }
        match <[u8; 32]>::try_from(v.as_slice()) {
            Ok(f) => Issuer::Fingerprint(f),
            Err(_) => Issuer::Other(v.into_boxed_slice()),
        }
    }
}

impl Details {
    /// Drop spare capacity left by decoding: a peer's details are kept for the tunnel's life.
    pub(crate) fn shrink(&mut self) {
        self.networks.shrink_to_fit();
        self.unsafe_networks.shrink_to_fit();
        self.groups.shrink_to_fit();
        for g in &mut self.groups {
            g.shrink_to_fit();
        }
    }

    /// 1.11 `certificateV1.validate`.
    pub(crate) fn validate_v1(&self, public_key: &[u8]) -> Result<(), CertError> {
        if public_key.is_empty() {
            return Err(CertError::EmptyPublicKey);
        }
        if !self.is_ca && self.networks.is_empty() {
            return Err(CertError::NoNetworks);
        }
        for n in &self.networks {
            if matches!(n, IpNet::V6(_)) {
                return Err(CertError::Ipv6InV1 {
                    kind: "networks",
                    network: *n,
                });
            }
            if is_unspecified(n) {
                return Err(CertError::ZeroAddressNetwork { network: *n });
            }
        }
        for n in &self.unsafe_networks {
            if matches!(n, IpNet::V6(_)) {
                return Err(CertError::Ipv6InV1 {
                    kind: "unsafe networks",
                    network: *n,
                });
            }
        }
        Ok(())
    }

    /// 1.11 `certificateV2.validate`; sorts the in-memory network lists like Go.
    pub(crate) fn validate_v2(&mut self, public_key: &[u8]) -> Result<(), CertError> {
        if public_key.is_empty() {
            return Err(CertError::EmptyPublicKey);
        }
        if !self.is_ca && self.networks.is_empty() {
            return Err(CertError::NoNetworks);
        }
        let mut has_v4 = false;
        let mut has_v6 = false;
        for n in &self.networks {
            if is_unspecified(n) {
                return Err(CertError::ZeroAddressNetwork { network: *n });
            }
            if is_4in6(n) {
                return Err(CertError::FourInSixNetwork { network: *n });
            }
            match n {
                IpNet::V4(_) => has_v4 = true,
                IpNet::V6(_) => has_v6 = true,
            }
        }
        sort_and_check_duplicates(&mut self.networks)?;
        if !self.is_ca {
            for n in &self.unsafe_networks {
                let ok = match n {
                    IpNet::V4(_) => has_v4,
                    IpNet::V6(_) => has_v6,
                };
                if !ok {
                    return Err(CertError::UnsafeNetworkFamilyWithoutNetwork { network: *n });
                }
            }
        }
        sort_and_check_duplicates(&mut self.unsafe_networks)?;
        Ok(())
    }
}

/// Go's `comparePrefix`: address (IPv4 before IPv6, then bytes), then prefix length.
pub(crate) fn compare_networks(a: &IpNet, b: &IpNet) -> Ordering {
    let key = |n: &IpNet| -> (u8, [u8; 16], u8) {
        match n.addr() {
            IpAddr::V4(a) => {
                let mut k = [0u8; 16];
                k[..4].copy_from_slice(&a.octets());
                (4, k, n.prefix_len())
            }
            IpAddr::V6(a) => (6, a.octets(), n.prefix_len()),
        }
    };
    key(a).cmp(&key(b))
}

fn is_unspecified(n: &IpNet) -> bool {
    n.addr().is_unspecified()
}

fn is_4in6(n: &IpNet) -> bool {
    match n {
        IpNet::V6(n) => n.addr().to_ipv4_mapped().is_some(),
        IpNet::V4(_) => false,
    }
}

fn sort_and_check_duplicates(nets: &mut [IpNet]) -> Result<(), CertError> {
    nets.sort_by(compare_networks);
    for w in nets.windows(2) {
        if let [a, b] = w {
            if compare_networks(a, b) == Ordering::Equal {
                return Err(CertError::DuplicateNetwork { network: *b });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test network")
    }

    fn host(networks: &[&str], unsafe_networks: &[&str]) -> Details {
        Details {
            name: "h".into(),
            networks: networks.iter().map(|n| net(n)).collect(),
            unsafe_networks: unsafe_networks.iter().map(|n| net(n)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn networks_order_like_go() {
        let mut v = vec![
            net("fd00::1/64"),
            net("10.0.0.1/24"),
            net("10.0.0.1/16"),
            net("9.255.255.255/32"),
            net("::/0"),
        ];
        v.sort_by(compare_networks);
        let want = [
            "9.255.255.255/32",
            "10.0.0.1/16",
            "10.0.0.1/24",
            "::/0",
            "fd00::1/64",
        ];
        assert_eq!(v, want.iter().map(|n| net(n)).collect::<Vec<_>>());
        assert_eq!(
            compare_networks(&net("10.0.0.1/24"), &net("10.0.0.1/24")),
            Ordering::Equal
        );
    }

    #[test]
    fn v2_rules_sort_and_refuse() {
        let mut d = host(
            &["fd00::5/64", "10.1.0.5/16"],
            &["10.9.0.0/16", "10.8.0.0/16"],
        );
        assert_eq!(d.validate_v2(&[1; 32]), Ok(()));
        assert_eq!(d.networks, vec![net("10.1.0.5/16"), net("fd00::5/64")]);
        assert_eq!(
            d.unsafe_networks,
            vec![net("10.8.0.0/16"), net("10.9.0.0/16")]
        );
        assert_eq!(d.validate_v2(&[]), Err(CertError::EmptyPublicKey));
        let mut dup = host(&["10.1.0.5/16", "10.1.0.5/16"], &[]);
        assert_eq!(
            dup.validate_v2(&[1; 32]),
            Err(CertError::DuplicateNetwork {
                network: net("10.1.0.5/16")
            })
        );
        let mut family = host(&["10.1.0.5/16"], &["fd00::/64"]);
        assert_eq!(
            family.validate_v2(&[1; 32]),
            Err(CertError::UnsafeNetworkFamilyWithoutNetwork {
                network: net("fd00::/64")
            })
        );
        family.is_ca = true;
        assert_eq!(
            family.validate_v2(&[1; 32]),
            Ok(()),
            "CAs skip the family rule"
        );
        let mut mapped = host(&["::ffff:10.0.0.1/120"], &[]);
        assert_eq!(
            mapped.validate_v2(&[1; 32]),
            Err(CertError::FourInSixNetwork {
                network: net("::ffff:10.0.0.1/120")
            })
        );
    }

    #[test]
    fn v1_rules_keep_order_and_refuse_ipv6() {
        let d = host(&["10.1.0.5/16", "10.0.0.5/16"], &[]);
        assert_eq!(d.validate_v1(&[1; 32]), Ok(()));
        assert_eq!(d.networks[0], net("10.1.0.5/16"));
        assert_eq!(
            host(&["fd00::1/64"], &[]).validate_v1(&[1; 32]),
            Err(CertError::Ipv6InV1 {
                kind: "networks",
                network: net("fd00::1/64")
            })
        );
        assert_eq!(
            host(&[], &[]).validate_v1(&[1; 32]),
            Err(CertError::NoNetworks)
        );
        assert_eq!(
            host(&["0.0.0.0/0"], &[]).validate_v1(&[1; 32]),
            Err(CertError::ZeroAddressNetwork {
                network: net("0.0.0.0/0")
            })
        );
    }
}
