//! v2 certificates (Nebula 1.10+): the ASN.1 DER codec (`cert/cert_v2.asn1`, `cert/cert_v2.go` @ v1.11.1).
//! Owns a small strict DER reader/writer with Go `cryptobyte` semantics; the parser never panics.

use crate::cert::Details;
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

/// Strict DER primitives with the semantics of Go's `golang.org/x/crypto/cryptobyte`.
pub mod der {
    pub const TAG_INTEGER: u8 = 0x02;
    pub const TAG_OCTET_STRING: u8 = 0x04;
    pub const TAG_UTF8_STRING: u8 = 0x0c;
    pub const TAG_SEQUENCE: u8 = 0x30;

    /// Why an element could not be read.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DerError {
        /// The input ends inside the element.
        Truncated,
        /// The element is malformed or has another tag than expected.
        Malformed(&'static str),
    }

    /// A cursor over DER bytes.
    #[derive(Debug, Clone, Copy)]
    pub struct Reader<'a> {
        buf: &'a [u8],
    }

    /// One element: its tag, its content, and the whole TLV (header included).
    #[derive(Debug, Clone, Copy)]
    pub struct Element<'a> {
        pub tag: u8,
        pub content: &'a [u8],
        pub whole: &'a [u8],
    }

    impl<'a> Reader<'a> {
        pub fn new(buf: &'a [u8]) -> Reader<'a> {
            Reader { buf }
        }

        pub fn is_empty(&self) -> bool {
            self.buf.is_empty()
        }

        /// The bytes not read yet.
        pub fn remaining(&self) -> &'a [u8] {
            self.buf
        }

        /// The next tag byte, if any.
        pub fn peek_tag(&self) -> Option<u8> {
            self.buf.first().copied()
        }

        /// Read the next element of any tag. Lengths must be DER-minimal; at most 4 length bytes;
        /// high tag numbers (tag & 0x1f == 0x1f) and the indefinite form are refused.
        pub fn read_element(&mut self) -> Result<Element<'a>, DerError> {
            let (&tag, rest) = self.buf.split_first().ok_or(DerError::Truncated)?;
            let (&len_byte, rest) = rest.split_first().ok_or(DerError::Truncated)?;
            if tag & 0x1f == 0x1f {
                return Err(DerError::Malformed("high tag number form is not supported"));
            }
            let (len, header) = if len_byte & 0x80 == 0 {
                (usize::from(len_byte), 2usize)
            } else {
                let n = usize::from(len_byte & 0x7f);
                if n == 0 {
                    return Err(DerError::Malformed("indefinite length"));
                }
                if n > 4 {
                    return Err(DerError::Malformed("length field longer than 4 bytes"));
                }
                let len_bytes = rest.get(..n).ok_or(DerError::Truncated)?;
                let mut len: u32 = 0;
                for &b in len_bytes {
                    len = (len << 8) | u32::from(b);
                }
                if len < 128 {
                    return Err(DerError::Malformed(
                        "non-minimal length (short form required)",
                    ));
                }
                if len_bytes.first() == Some(&0) {
                    return Err(DerError::Malformed("non-minimal length (leading zero)"));
                }
                let len =
                    usize::try_from(len).map_err(|_| DerError::Malformed("length too big"))?;
                (len, 2 + n)
            };
            let total = header
                .checked_add(len)
                .ok_or(DerError::Malformed("length overflow"))?;
            let whole = self.buf.get(..total).ok_or(DerError::Truncated)?;
            let content = whole.get(header..).ok_or(DerError::Truncated)?;
            self.buf = self.buf.get(total..).ok_or(DerError::Truncated)?;
            Ok(Element {
                tag,
                content,
                whole,
            })
        }

        /// Read an element that must carry `tag` (cryptobyte `ReadASN1Element`).
        pub fn read_element_expect(&mut self, tag: u8) -> Result<Element<'a>, DerError> {
            let mut probe = *self;
            let el = probe.read_element()?;
            if el.tag != tag {
                return Err(DerError::Malformed("unexpected tag"));
            }
            *self = probe;
            Ok(el)
        }

        /// Read an element that must carry `tag` and return its content (cryptobyte `ReadASN1`).
        pub fn read_expect(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
            self.read_element_expect(tag).map(|e| e.content)
        }

        /// If the next tag is `tag`, read that element's content (cryptobyte `ReadOptionalASN1`).
        pub fn read_optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, DerError> {
            if self.peek_tag() == Some(tag) {
                self.read_expect(tag).map(Some)
            } else {
                Ok(None)
            }
        }

        /// Read a DER INTEGER with a context tag into an i64 (cryptobyte `ReadASN1Int64WithTag`).
        pub fn read_i64_with_tag(&mut self, tag: u8) -> Result<i64, DerError> {
            let v = self.read_expect(tag)?;
            decode_i64(v).ok_or(DerError::Malformed("invalid integer"))
        }
    }

    /// Whether INTEGER content is present and minimally encoded (two's complement).
    pub fn is_minimal_integer(v: &[u8]) -> bool {
        match v {
            [] => false,
            [_] => true,
            [0x00, b, ..] => b & 0x80 != 0,
            [0xff, b, ..] => b & 0x80 == 0,
            _ => true,
        }
    }

    /// Decode minimal two's-complement INTEGER content of at most 8 bytes.
    pub fn decode_i64(v: &[u8]) -> Option<i64> {
        if !is_minimal_integer(v) || v.len() > 8 {
            return None;
        }
        let first = *v.first()?;
        let mut out: i64 = if first & 0x80 != 0 { -1 } else { 0 };
        for &b in v {
            out = (out << 8) | i64::from(b);
        }
        Some(out)
    }

    /// Minimal two's-complement encoding of `v`.
    pub fn encode_i64(v: i64) -> Vec<u8> {
        let mut len = 1usize;
        let mut i = v;
        while !(-0x80..0x80).contains(&i) {
            len += 1;
            i >>= 8;
        }
        (0..len).rev().map(|k| (v >> (k * 8)) as u8).collect()
    }

    /// Append the DER length of `len`.
    pub fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = (len as u64).to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            let used = bytes.get(skip..).unwrap_or(&[]);
            out.push(0x80 | used.len() as u8);
            out.extend_from_slice(used);
        }
    }

    /// Append one TLV.
    pub fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
        out.push(tag);
        push_len(out, content.len());
        out.extend_from_slice(content);
    }
}

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
        name: String::from_utf8_lossy(name).into_owned(),
        networks,
        unsafe_networks,
        groups,
        is_ca,
        not_before,
        not_after,
        issuer,
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
        der::push_tlv(&mut body, TAG_DETAILS_ISSUER, &d.issuer);
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
            issuer: hex::decode("1234567890abcdef1234567890abcdef").expect("hex"),
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
    fn integer_encoding_is_minimal() {
        for (v, h) in [
            (0i64, "00"),
            (127, "7f"),
            (128, "0080"),
            (255, "00ff"),
            (256, "0100"),
            (-1, "ff"),
            (-128, "80"),
            (-129, "ff7f"),
            (831_254_400, "318bef80"),
            (i64::MAX, "7fffffffffffffff"),
            (i64::MIN, "8000000000000000"),
        ] {
            let e = der::encode_i64(v);
            assert_eq!(hex::encode(&e), h, "{v}");
            assert_eq!(der::decode_i64(&e), Some(v));
        }
        assert_eq!(der::decode_i64(&[0x00, 0x01]), None);
        assert_eq!(der::decode_i64(&[0xff, 0x80]), None);
        assert_eq!(der::decode_i64(&[]), None);
        assert_eq!(der::decode_i64(&[1; 9]), None);
    }

    #[test]
    fn long_form_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536] {
            let content = vec![7u8; len];
            let mut out = Vec::new();
            der::push_tlv(&mut out, 0x04, &content);
            let expect_hdr = match len {
                0..=127 => 2,
                128..=255 => 3,
                256..=65535 => 4,
                _ => 5,
            };
            assert_eq!(out.len(), len + expect_hdr);
            let mut r = der::Reader::new(&out);
            let el = r.read_element().expect("read back");
            assert_eq!(el.content.len(), len);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn reader_rejects_non_minimal_and_odd_forms() {
        let cases: &[(&[u8], der::DerError)] = &[
            (&[0x04], der::DerError::Truncated),
            (&[0x04, 0x02, 0x00], der::DerError::Truncated),
            (
                &[0x04, 0x81, 0x05, 0, 0, 0, 0, 0],
                der::DerError::Malformed("non-minimal length (short form required)"),
            ),
            (&[0x04, 0x80], der::DerError::Malformed("indefinite length")),
            (
                &[0x1f, 0x01, 0x00],
                der::DerError::Malformed("high tag number form is not supported"),
            ),
            (
                &[0x04, 0x85, 1, 0, 0, 0, 0],
                der::DerError::Malformed("length field longer than 4 bytes"),
            ),
            (&[0x04, 0x82], der::DerError::Truncated),
            (
                &[0x04, 0x84, 0xff, 0xff, 0xff, 0xff],
                der::DerError::Truncated,
            ),
        ];
        for (input, want) in cases {
            let mut r = der::Reader::new(input);
            assert_eq!(r.read_element().map(|_| ()), Err(*want), "{input:02x?}");
        }
        // Leading zero in a long-form length.
        let mut v = vec![0x04, 0x82, 0x00, 0x80];
        v.extend(std::iter::repeat_n(0u8, 0x80));
        let mut r = der::Reader::new(&v);
        assert_eq!(
            r.read_element().map(|_| ()),
            Err(der::DerError::Malformed(
                "non-minimal length (leading zero)"
            ))
        );
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
