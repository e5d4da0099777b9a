//! v2 certificates (Nebula 1.10+): the ASN.1 DER codec (`cert/cert_v2.asn1`, `cert/cert_v2.go` @ v1.11.1).
//! Owns the v2 tags, size limits and details/certificate layouts on top of [`crate::der`]; never panics.

use crate::der;
use crate::details::Details;
use crate::error::CertError;
use crate::Curve;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Largest certificate the parser accepts (bytes).
pub const MAX_CERTIFICATE_SIZE: usize = 65536;
/// Longest name (bytes), a realistic maximum DNS name.
pub const MAX_NAME_LENGTH: usize = 253;
/// Longest network value: 16 address bytes + 1 prefix byte.
pub const MAX_NETWORK_LENGTH: usize = 17;

/// Certificate-level tags.
pub const TAG_CERT_DETAILS: u8 = 0xa0;
pub const TAG_CERT_CURVE: u8 = 0x81;
pub const TAG_CERT_PUBLIC_KEY: u8 = 0x82;
pub const TAG_CERT_SIGNATURE: u8 = 0x83;
/// Details-level tags.
pub const TAG_DETAILS_NAME: u8 = 0x80;
pub const TAG_DETAILS_NETWORKS: u8 = 0xa1;
pub const TAG_DETAILS_UNSAFE_NETWORKS: u8 = 0xa2;
pub const TAG_DETAILS_GROUPS: u8 = 0xa3;
pub const TAG_DETAILS_IS_CA: u8 = 0x84;
pub const TAG_DETAILS_NOT_BEFORE: u8 = 0x85;
pub const TAG_DETAILS_NOT_AFTER: u8 = 0x86;
pub const TAG_DETAILS_ISSUER: u8 = 0x87;

fn der_err(e: der::DerError) -> CertError {
    match e {
        der::DerError::Truncated => CertError::Truncated,
        der::DerError::Malformed(reason) => CertError::InvalidDer { reason },
    }
}

fn bad(reason: &'static str) -> CertError {
    CertError::InvalidDer { reason }
}

/// What the v2 parser hands to `Certificate`.
pub(crate) struct Decoded {
    pub details: Details,
    /// The whole `a0` TLV exactly as received (signature and fingerprint use these bytes).
    pub raw_details: Vec<u8>,
    pub curve: Curve,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Parse a v2 certificate. With `public_key` (handshake form) the certificate must not carry one;
/// `default_curve` is used when the curve element is absent (our own curve in a handshake,
/// Curve25519 otherwise). Networks are returned unsorted; `Certificate` validates and sorts.
pub(crate) fn decode(
    b: &[u8],
    public_key: Option<&[u8]>,
    default_curve: Curve,
) -> Result<Decoded, CertError> {
    if b.is_empty() {
        return Err(CertError::Empty);
    }
    if b.len() > MAX_CERTIFICATE_SIZE {
        return Err(CertError::TooLarge { len: b.len() });
    }
    let mut outer = der::Reader::new(b);
    // Bytes after the outer SEQUENCE are ignored, as Go does.
    let body = outer.read_expect(der::TAG_SEQUENCE).map_err(der_err)?;
    if body.is_empty() {
        return Err(bad("empty certificate sequence"));
    }
    let mut input = der::Reader::new(body);
    let raw_details = input
        .read_element_expect(TAG_CERT_DETAILS)
        .map_err(|e| match e {
            der::DerError::Malformed("unexpected tag") => bad("certificate details missing"),
            other => der_err(other),
        })?
        .whole;

    let curve = match input.read_optional(TAG_CERT_CURVE).map_err(der_err)? {
        None => default_curve,
        Some([v]) => Curve::from_wire(i64::from(*v)).ok_or(CertError::UnknownCurve {
            value: i64::from(*v),
        })?,
        Some(_) => return Err(bad("curve must be exactly one byte")),
    };

    let key: Vec<u8> = match public_key {
        Some(pk) => {
            if input.peek_tag() == Some(TAG_CERT_PUBLIC_KEY) {
                return Err(CertError::PublicKeyPresent);
            }
            pk.to_vec()
        }
        None => input
            .read_optional(TAG_CERT_PUBLIC_KEY)
            .map_err(der_err)?
            .unwrap_or(&[])
            .to_vec(),
    };
    if key.is_empty() {
        return Err(CertError::EmptyPublicKey);
    }

    let signature = input.read_expect(TAG_CERT_SIGNATURE).map_err(|e| match e {
        der::DerError::Malformed("unexpected tag") => bad("signature missing"),
        other => der_err(other),
    })?;
    if signature.is_empty() {
        return Err(CertError::EmptySignature);
    }
    // Anything after the signature is an extension we do not know: ignored, as in Go.

    let details = decode_details(raw_details)?;
    Ok(Decoded {
        details,
        raw_details: raw_details.to_vec(),
        curve,
        public_key: key,
        signature: signature.to_vec(),
    })
}

fn decode_network(val: &[u8]) -> Result<IpNet, CertError> {
    if val.is_empty() || val.len() > MAX_NETWORK_LENGTH {
        return Err(bad("network value must be 5 or 17 bytes"));
    }
    let (bits, addr) = val
        .split_last()
        .ok_or(bad("network value must be 5 or 17 bytes"))?;
    let net = match addr.len() {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(addr);
            Ipv4Net::new(Ipv4Addr::from(a), *bits).map(IpNet::V4)
        }
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(addr);
            Ipv6Net::new(Ipv6Addr::from(a), *bits).map(IpNet::V6)
        }
        0 => return Err(bad("invalid network: empty address")),
        _ => return Err(bad("network address must be 4 or 16 bytes")),
    };
    net.map_err(|_| bad("invalid network: prefix length too long for the address"))
}

fn decode_networks(content: &[u8]) -> Result<Vec<IpNet>, CertError> {
    let mut r = der::Reader::new(content);
    let mut out = Vec::new();
    while !r.is_empty() {
        let val = r.read_expect(der::TAG_OCTET_STRING).map_err(der_err)?;
        out.push(decode_network(val)?);
    }
    Ok(out)
}

/// Parse the details TLV (tag included).
fn decode_details(raw: &[u8]) -> Result<Details, CertError> {
    let mut outer = der::Reader::new(raw);
    let body = outer.read_expect(TAG_CERT_DETAILS).map_err(der_err)?;
    if body.is_empty() {
        return Err(bad("empty details"));
    }
    let mut b = der::Reader::new(body);

    let name = b.read_expect(TAG_DETAILS_NAME).map_err(|e| match e {
        der::DerError::Malformed("unexpected tag") => bad("name missing"),
        other => der_err(other),
    })?;
    if name.is_empty() || name.len() > MAX_NAME_LENGTH {
        return Err(CertError::InvalidName { len: name.len() });
    }

    let networks = match b.read_optional(TAG_DETAILS_NETWORKS).map_err(der_err)? {
        Some(c) => decode_networks(c)?,
        None => Vec::new(),
    };
    let unsafe_networks = match b
        .read_optional(TAG_DETAILS_UNSAFE_NETWORKS)
        .map_err(der_err)?
    {
        Some(c) => decode_networks(c)?,
        None => Vec::new(),
    };
    let mut groups = Vec::new();
    if let Some(c) = b.read_optional(TAG_DETAILS_GROUPS).map_err(der_err)? {
        let mut r = der::Reader::new(c);
        while !r.is_empty() {
            let g = r.read_expect(der::TAG_UTF8_STRING).map_err(der_err)?;
            if g.is_empty() {
                return Err(CertError::EmptyGroup);
            }
            groups.push(String::from_utf8_lossy(g).into_owned());
        }
    }
    let is_ca = match b.read_optional(TAG_DETAILS_IS_CA).map_err(der_err)? {
        None => false,
        // Go accepts any non-zero byte as true.
        Some([v]) => *v != 0,
        Some(_) => return Err(bad("isCA must be exactly one byte")),
    };
    let not_before = b
        .read_i64_with_tag(TAG_DETAILS_NOT_BEFORE)
        .map_err(der_err)?;
    let not_after = b
        .read_i64_with_tag(TAG_DETAILS_NOT_AFTER)
        .map_err(der_err)?;
    let issuer = b
        .read_optional(TAG_DETAILS_ISSUER)
        .map_err(der_err)?
        .unwrap_or(&[])
        .to_vec();
    // Remaining bytes are future extension fields: ignored, as in Go.

    Ok(Details {
        name: String::from_utf8_lossy(name).into(),
        networks,
        unsafe_networks,
        groups,
        is_ca,
        not_before,
        not_after,
        issuer: issuer.into(),
    })
}

fn push_network(out: &mut Vec<u8>, n: &IpNet) {
    let mut v = Vec::with_capacity(17);
    match n {
        IpNet::V4(n) => v.extend_from_slice(&n.addr().octets()),
        IpNet::V6(n) => v.extend_from_slice(&n.addr().octets()),
    }
    v.push(n.prefix_len());
    der::push_tlv(out, der::TAG_OCTET_STRING, &v);
}

/// Encode details exactly as Go's `detailsV2.Marshal` (networks in the order given: the signer sorts first).
pub(crate) fn encode_details(d: &Details) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    der::push_tlv(&mut body, TAG_DETAILS_NAME, d.name.as_bytes());
    if !d.networks.is_empty() {
        let mut c = Vec::new();
        for n in &d.networks {
            push_network(&mut c, n);
        }
        der::push_tlv(&mut body, TAG_DETAILS_NETWORKS, &c);
    }
    if !d.unsafe_networks.is_empty() {
        let mut c = Vec::new();
        for n in &d.unsafe_networks {
            push_network(&mut c, n);
        }
        der::push_tlv(&mut body, TAG_DETAILS_UNSAFE_NETWORKS, &c);
    }
    if !d.groups.is_empty() {
        let mut c = Vec::new();
        for g in &d.groups {
            der::push_tlv(&mut c, der::TAG_UTF8_STRING, g.as_bytes());
        }
        der::push_tlv(&mut body, TAG_DETAILS_GROUPS, &c);
    }
    if d.is_ca {
        der::push_tlv(&mut body, TAG_DETAILS_IS_CA, &[0xff]);
    }
    der::push_tlv(
        &mut body,
        TAG_DETAILS_NOT_BEFORE,
        &der::encode_i64(d.not_before),
    );
    der::push_tlv(
        &mut body,
        TAG_DETAILS_NOT_AFTER,
        &der::encode_i64(d.not_after),
    );
    if !d.issuer.is_empty() {
        der::push_tlv(&mut body, TAG_DETAILS_ISSUER, d.issuer.as_slice());
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    der::push_tlv(&mut out, TAG_CERT_DETAILS, &body);
    out
}

/// The bytes a v2 signature covers: rawDetails ‖ curve byte ‖ publicKey.
pub(crate) fn signed_bytes(raw_details: &[u8], curve: Curve, public_key: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(raw_details.len() + 1 + public_key.len());
    b.extend_from_slice(raw_details);
    b.push(curve.wire());
    b.extend_from_slice(public_key);
    b
}

/// The handshake form: `30 { a0 details, 83 signature }` (no curve, no public key).
pub(crate) fn encode_for_handshake(raw_details: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(raw_details.len() + 80);
    body.extend_from_slice(raw_details);
    der::push_tlv(&mut body, TAG_CERT_SIGNATURE, signature);
    let mut out = Vec::with_capacity(body.len() + 4);
    der::push_tlv(&mut out, der::TAG_SEQUENCE, &body);
    out
}

/// The full certificate: `30 { details, [81 curve], [82 key], 83 signature }`.
pub(crate) fn encode_certificate(
    raw_details: &[u8],
    curve: Curve,
    public_key: Option<&[u8]>,
    signature: &[u8],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(raw_details.len() + 140);
    body.extend_from_slice(raw_details);
    if curve != Curve::Curve25519 {
        der::push_tlv(&mut body, TAG_CERT_CURVE, &[curve.wire()]);
    }
    if let Some(pk) = public_key {
        der::push_tlv(&mut body, TAG_CERT_PUBLIC_KEY, pk);
    }
    der::push_tlv(&mut body, TAG_CERT_SIGNATURE, signature);
    let mut out = Vec::with_capacity(body.len() + 4);
    der::push_tlv(&mut out, der::TAG_SEQUENCE, &body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test network")
    }

    /// `TestCertificateV2_marshalForSigningStability` @ v1.11.1 (unsorted networks, 16-byte issuer).
    const STABILITY_DETAILS: &str = "a070800774657374696e67a10e04050a0101021004050a01010118a20e0405090101031004050901010218a3270c0b746573742d67726f7570310c0b746573742d67726f7570320c0b746573742d67726f7570338504318bef808604318befbc87101234567890abcdef1234567890abcdef";

    fn stability_details() -> Details {
        Details {
            name: "testing".into(),
            networks: vec![net("10.1.1.2/16"), net("10.1.1.1/24")],
            unsafe_networks: vec![net("9.1.1.3/16"), net("9.1.1.2/24")],
            groups: vec![
                "test-group1".into(),
                "test-group2".into(),
                "test-group3".into(),
            ],
            is_ca: false,
            // 1996-05-05T00:00:00Z and one minute later.
            not_before: 831_254_400,
            not_after: 831_254_460,
            issuer: hex::decode("1234567890abcdef1234567890abcdef")
                .expect("hex")
                .into(),
        }
    }

    #[test]
    fn details_match_go_test_vector() {
        let d = stability_details();
        let enc = encode_details(&d);
        assert_eq!(hex::encode(&enc), STABILITY_DETAILS);
        let signed = signed_bytes(&enc, Curve::Curve25519, b"1234567890abcedfghij1234567890ab");
        assert_eq!(
            hex::encode(signed),
            format!("{STABILITY_DETAILS}00313233343536373839306162636564666768696a313233343536373839306162")
        );
        let back = decode_details(&enc).expect("decode");
        assert_eq!(back, d);
    }

    #[test]
    fn network_values() {
        assert_eq!(
            decode_network(&[10, 1, 0, 7, 16]).expect("v4"),
            net("10.1.0.7/16")
        );
        let mut v6 = vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        v6.push(64);
        assert_eq!(decode_network(&v6).expect("v6"), net("fd00::1/64"));
        assert!(decode_network(&[10, 1, 0, 7, 33]).is_err());
        assert!(decode_network(&[10, 1, 0, 16]).is_err());
        assert!(decode_network(&[16]).is_err());
        assert!(decode_network(&[]).is_err());
        assert!(decode_network(&[0u8; 18]).is_err());
    }
}
