//! v1 certificates: the protobuf codec (`cert/cert_v1.go` @ v1.11.1, `cert/cert.go` @ v1.6.1).
//! Decodes `RawNebulaCertificate` into `Details` and re-encodes canonically, byte-identical to Go.

use crate::details::Details;
use crate::error::CertError;
use crate::Curve;
use ipnet::{IpNet, Ipv4Net};
use prost::Message as _;
use proto::cert::{RawNebulaCertificate, RawNebulaCertificateDetails};
use std::net::Ipv4Addr;

/// What the v1 parser hands to `Certificate`.
pub(crate) struct Decoded {
    pub details: Details,
    pub curve: Curve,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Prefix length of a netmask word the way Go's `net.IPMask.Size` reads it: ones followed by
/// zeros gives the count of ones, anything else gives 0 (1.11 then re-encodes it as /0).
fn mask_bits(mask: u32) -> u8 {
    let ones = mask.leading_ones();
    if ones == 32 || mask << ones == 0 {
        ones as u8
    } else {
        0
    }
}

fn bits_to_mask(bits: u8) -> u32 {
    if bits == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(bits.min(32)))
    }
}

fn words_to_networks(words: &[u32], field: &'static str) -> Result<Vec<IpNet>, CertError> {
    if words.len() & 1 != 0 {
        return Err(CertError::OddIpWords { field });
    }
    words
        .chunks_exact(2)
        .map(|pair| match pair {
            [addr, mask] => Ipv4Net::new(Ipv4Addr::from(*addr), mask_bits(*mask))
                .map(IpNet::V4)
                .map_err(|_| CertError::InvalidProtobuf {
                    reason: "invalid netmask".into(),
                }),
            _ => Err(CertError::OddIpWords { field }),
        })
        .collect()
}

fn networks_to_words(nets: &[IpNet]) -> Vec<u32> {
    let mut out = Vec::with_capacity(nets.len() * 2);
    for n in nets {
        // Callers validate that v1 networks are IPv4; an IPv6 one would be unencodable in Go too.
        if let IpNet::V4(n) = n {
            out.push(u32::from(n.addr()));
            out.push(bits_to_mask(n.prefix_len()));
        }
    }
    out
}

/// Decode a v1 certificate. With `public_key` (handshake form) the encoded certificate must not carry
/// a key and the given one is inserted.
pub(crate) fn decode(b: &[u8], public_key: Option<&[u8]>) -> Result<Decoded, CertError> {
    if b.is_empty() {
        return Err(CertError::Empty);
    }
    let rc = RawNebulaCertificate::decode(b).map_err(|e| CertError::InvalidProtobuf {
        reason: e.to_string(),
    })?;
    let d = rc.details.ok_or(CertError::MissingDetails)?;
    // Check both pair counts before building anything (Go 1.6.1 crashed on an odd count in some paths).
    if d.ips.len() & 1 != 0 {
        return Err(CertError::OddIpWords { field: "IPs" });
    }
    if d.subnets.len() & 1 != 0 {
        return Err(CertError::OddIpWords { field: "Subnets" });
    }
    let curve = Curve::from_wire(i64::from(d.curve)).ok_or(CertError::UnknownCurve {
        value: i64::from(d.curve),
    })?;
    let key = match public_key {
        Some(pk) => {
            if !d.public_key.is_empty() {
                return Err(CertError::PublicKeyPresent);
            }
            pk.to_vec()
        }
        None => d.public_key,
    };
    let details = Details {
        name: d.name.into(),
        networks: words_to_networks(&d.ips, "IPs")?,
        unsafe_networks: words_to_networks(&d.subnets, "Subnets")?,
        groups: d.groups,
        is_ca: d.is_ca,
        not_before: d.not_before,
        not_after: d.not_after,
        issuer: d.issuer.into(),
    };
    Ok(Decoded {
        details,
        curve,
        public_key: key,
        signature: rc.signature,
    })
}

fn raw_details(d: &Details, curve: Curve, public_key: &[u8]) -> RawNebulaCertificateDetails {
    RawNebulaCertificateDetails {
        name: d.name.to_string(),
        ips: networks_to_words(&d.networks),
        subnets: networks_to_words(&d.unsafe_networks),
        groups: d.groups.clone(),
        not_before: d.not_before,
        not_after: d.not_after,
        public_key: public_key.to_vec(),
        is_ca: d.is_ca,
        issuer: d.issuer.as_slice().to_vec(),
        curve: i32::from(curve.wire()),
    }
}

/// The canonical encoding of the details message: the bytes the CA signs.
pub(crate) fn encode_details(d: &Details, curve: Curve, public_key: &[u8]) -> Vec<u8> {
    raw_details(d, curve, public_key).encode_to_vec()
}

/// The canonical encoding of the whole certificate (`public_key` empty = handshake form).
pub(crate) fn encode_certificate(
    d: &Details,
    curve: Curve,
    public_key: &[u8],
    signature: &[u8],
) -> Vec<u8> {
    RawNebulaCertificate {
        details: Some(raw_details(d, curve, public_key)),
        signature: signature.to_vec(),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_words() {
        assert_eq!(mask_bits(0xffff_0000), 16);
        assert_eq!(mask_bits(0xffff_ffff), 32);
        assert_eq!(mask_bits(0), 0);
        assert_eq!(
            mask_bits(0xff00_ff00),
            0,
            "non-canonical mask reads as /0 like Go"
        );
        assert_eq!(bits_to_mask(16), 0xffff_0000);
        assert_eq!(bits_to_mask(32), 0xffff_ffff);
        assert_eq!(bits_to_mask(0), 0);
    }

    #[test]
    fn odd_ip_words_are_an_error_not_a_panic() {
        for (ips, subnets, field) in [
            (vec![0x0a2a_0105], vec![], "IPs"),
            (vec![0x0a2a_0105, 0xffff_0000], vec![1, 2, 3], "Subnets"),
            (vec![1, 2, 3], vec![1], "IPs"),
        ] {
            let raw = RawNebulaCertificate {
                details: Some(RawNebulaCertificateDetails {
                    name: "x".into(),
                    ips,
                    subnets,
                    public_key: vec![1; 32],
                    ..Default::default()
                }),
                signature: vec![2; 64],
            };
            let bytes = raw.encode_to_vec();
            assert_eq!(
                decode(&bytes, None).err(),
                Some(CertError::OddIpWords { field })
            );
            // Same in the handshake path.
            let mut hs = raw.clone();
            if let Some(d) = hs.details.as_mut() {
                d.public_key.clear();
            }
            assert_eq!(
                decode(&hs.encode_to_vec(), Some(&[3; 32])).err(),
                Some(CertError::OddIpWords { field })
            );
        }
    }

    #[test]
    fn missing_details_and_garbage() {
        let raw = RawNebulaCertificate {
            details: None,
            signature: vec![1],
        };
        assert_eq!(
            decode(&raw.encode_to_vec(), None).err(),
            Some(CertError::MissingDetails)
        );
        assert_eq!(decode(&[], None).err(), Some(CertError::Empty));
        assert!(matches!(
            decode(&[0x0a, 0x05, 0x01], None),
            Err(CertError::InvalidProtobuf { .. })
        ));
    }
}
