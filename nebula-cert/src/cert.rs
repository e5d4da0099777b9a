//! The version-agnostic `Certificate` (v1 protobuf or v2 DER) and `TbsCertificate`, the signer.
//! Parse, marshal, fingerprint, check signatures and private keys, CA constraints, sign (output: `print`).

use crate::details::Details;
use crate::error::CertError;
use crate::signing::{self, CaSigningKey};
use crate::{pem, v1, v2, Curve, Version};
use ipnet::IpNet;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::sync::Arc;

/// Go-compatible JSON and time text (defined in `gojson`), used by the `nebula-cert print` command.
pub use crate::gojson::{go_json_string, go_time_rfc3339, go_time_text};

struct Inner {
    version: Version,
    details: Details,
    curve: Curve,
    /// The key, the signature and (v2) the details as received, one after the other. A peer's
    /// certificate is held once per tunnel: the encoding is rebuilt from these when asked for
    /// rather than kept (v1 re-encodes canonically anyway), and the parts share one allocation.
    bytes: Box<[u8]>,
    public_key: Span,
    signature: Span,
    /// v2 only: the details TLV as received/encoded (v1's signed bytes are re-encoded).
    raw_details: Span,
    fingerprint: [u8; 32],
}

/// Where one part of a certificate lies in [`Inner::bytes`].
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(self, bytes: &[u8]) -> &[u8] {
        let start = self.start as usize;
        bytes
            .get(start..start.saturating_add(self.len as usize))
            .unwrap_or(&[])
    }
}

/// Packs `parts` into one buffer, each found again through its [`Span`].
fn pack<const N: usize>(parts: [&[u8]; N]) -> (Box<[u8]>, [Span; N]) {
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    let spans = parts.map(|part| {
        let start = bytes.len();
        bytes.extend_from_slice(part);
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(part.len()).unwrap_or(u32::MAX),
        }
    });
    (bytes.into_boxed_slice(), spans)
}

/// A parsed or freshly signed Nebula certificate of either version. Immutable; `clone` is an `Arc` bump.
#[derive(Clone)]
pub struct Certificate(Arc<Inner>);

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.0.version == other.0.version && self.0.fingerprint == other.0.fingerprint
    }
}
impl Eq for Certificate {}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("version", &self.0.version)
            .field("name", &self.0.details.name)
            .field("networks", &self.0.details.networks)
            .field("is_ca", &self.0.details.is_ca)
            .field("curve", &self.0.curve)
            .field("fingerprint", &self.fingerprint_hex())
            .finish()
    }
}

/// Go's `checkCAConstraints` over the parts of a certificate (or of one being signed).
fn check_constraints(
    ca: &Certificate,
    not_before: i64,
    not_after: i64,
    groups: &[String],
    networks: &[IpNet],
    unsafe_networks: &[IpNet],
) -> Result<(), CertError> {
    if not_after > ca.not_after() {
        return Err(CertError::NotAfterAfterCa);
    }
    if not_before < ca.not_before() {
        return Err(CertError::NotBeforeBeforeCa);
    }
    let ca_groups = ca.groups();
    if !ca_groups.is_empty() {
        if let Some(g) = groups.iter().find(|g| !ca_groups.contains(g)) {
            return Err(CertError::GroupNotAllowedByCa { group: g.clone() });
        }
    }
    let inside = |allowed: &[IpNet], n: &IpNet| {
        allowed
            .iter()
            .any(|a| a.contains(&n.addr()) && a.prefix_len() <= n.prefix_len())
    };
    let ca_nets = ca.networks();
    if !ca_nets.is_empty() {
        if let Some(n) = networks.iter().find(|n| !inside(ca_nets, n)) {
            return Err(CertError::NetworkNotAllowedByCa { network: *n });
        }
    }
    let ca_unsafe = ca.unsafe_networks();
    if !ca_unsafe.is_empty() {
        if let Some(n) = unsafe_networks.iter().find(|n| !inside(ca_unsafe, n)) {
            return Err(CertError::UnsafeNetworkNotAllowedByCa { network: *n });
        }
    }
    Ok(())
}

/// Check that `cert` respects `ca`'s constraints (validity window, groups, networks, unsafe networks),
/// as Go's `CheckCAConstraints`. Does not check the signature.
pub fn check_ca_constraints(ca: &Certificate, cert: &Certificate) -> Result<(), CertError> {
    check_constraints(
        ca,
        cert.not_before(),
        cert.not_after(),
        cert.groups(),
        cert.networks(),
        cert.unsafe_networks(),
    )
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

impl Certificate {
    fn build_v1(
        mut details: Details,
        curve: Curve,
        public_key: Vec<u8>,
        signature: Vec<u8>,
    ) -> Self {
        details.shrink();
        let marshaled = v1::encode_certificate(&details, curve, &public_key, &signature);
        let fingerprint = sha256(&[&marshaled]);
        let (bytes, [public_key, signature, raw_details]) = pack([&public_key, &signature, &[]]);
        Certificate(Arc::new(Inner {
            version: Version::V1,
            details,
            curve,
            bytes,
            public_key,
            signature,
            raw_details,
            fingerprint,
        }))
    }

    fn build_v2(
        mut details: Details,
        raw_details: Vec<u8>,
        curve: Curve,
        public_key: Vec<u8>,
        signature: Vec<u8>,
    ) -> Self {
        details.shrink();
        let fingerprint = sha256(&[&raw_details, &[curve.wire()], &public_key, &signature]);
        let (bytes, [public_key, signature, raw_details]) =
            pack([&public_key, &signature, &raw_details]);
        Certificate(Arc::new(Inner {
            version: Version::V2,
            details,
            curve,
            bytes,
            public_key,
            signature,
            raw_details,
            fingerprint,
        }))
    }

    fn from_v1_decoded(d: v1::Decoded) -> Result<Self, CertError> {
        d.details.validate_v1(&d.public_key)?;
        Ok(Self::build_v1(
            d.details,
            d.curve,
            d.public_key,
            d.signature,
        ))
    }

    fn from_v2_decoded(mut d: v2::Decoded) -> Result<Self, CertError> {
        d.details.validate_v2(&d.public_key)?;
        Ok(Self::build_v2(
            d.details,
            d.raw_details,
            d.curve,
            d.public_key,
            d.signature,
        ))
    }

    /// Parse the raw (non-PEM) bytes of a certificate of the given version.
    pub fn from_bytes(version: Version, bytes: &[u8]) -> Result<Certificate, CertError> {
        match version {
            Version::V1 => Self::from_v1_decoded(v1::decode(bytes, None)?),
            Version::V2 => Self::from_v2_decoded(v2::decode(bytes, None, Curve::Curve25519)?),
        }
    }

    /// Parse the first PEM block of `input` (version chosen by its banner) and return the bytes after it.
    pub fn from_pem(input: &[u8]) -> Result<(Certificate, &[u8]), CertError> {
        let (block, rest) = first_pem_block(input)?;
        let version = version_of_banner(&block.label)?;
        Ok((Self::from_bytes(version, &block.data)?, rest))
    }

    /// Parse every certificate in a PEM file, the way `nebula-cert print` and `pki.cert` read one:
    /// blocks are read until only whitespace remains; any bad block is an error.
    pub fn from_pem_many(input: &[u8]) -> Result<Vec<Certificate>, CertError> {
        let mut out = Vec::new();
        let mut rest = input;
        loop {
            let (c, r) = Self::from_pem(rest)?;
            out.push(c);
            rest = r;
            if rest.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(out);
            }
        }
    }

    /// Rebuild a certificate received in a handshake: `raw` is the handshake form (no public key),
    /// `public_key` the peer's Noise static key, `curve` our own curve. A raw certificate that already
    /// carries a key is refused (as 1.11), and the certificate's curve must equal `curve`. For v1 the
    /// details are re-encoded canonically with the key inserted before the signature is checked.
    pub fn recombine_from_handshake(
        version: Version,
        raw: &[u8],
        public_key: &[u8],
        curve: Curve,
    ) -> Result<Certificate, CertError> {
        if public_key.is_empty() {
            return Err(CertError::NoPeerStaticKey);
        }
        if raw.is_empty() {
            return Err(CertError::Empty);
        }
        let c = match version {
            Version::V1 => Self::from_v1_decoded(v1::decode(raw, Some(public_key))?)?,
            Version::V2 => Self::from_v2_decoded(v2::decode(raw, Some(public_key), curve)?)?,
        };
        if c.curve() != curve {
            return Err(CertError::curve_mismatch(curve, c.curve()));
        }
        Ok(c)
    }

    fn part(&self, span: Span) -> &[u8] {
        span.of(&self.0.bytes)
    }

    fn raw_details(&self) -> &[u8] {
        self.part(self.0.raw_details)
    }

    /// Certificate format version.
    pub fn version(&self) -> Version {
        self.0.version
    }
    /// Curve of the public key and of the signature.
    pub fn curve(&self) -> Curve {
        self.0.curve
    }
    /// Name (may be empty in v1).
    pub fn name(&self) -> &str {
        &self.0.details.name
    }
    /// Networks: host address with prefix (10.42.1.5/16). v1 in wire order; v2 sorted as Go keeps them.
    /// On a CA: the networks it may issue from (empty = any).
    pub fn networks(&self) -> &[IpNet] {
        &self.0.details.networks
    }
    /// Unsafe networks (routes this host may serve); on a CA the allowed ones.
    pub fn unsafe_networks(&self) -> &[IpNet] {
        &self.0.details.unsafe_networks
    }
    /// Groups, in order.
    pub fn groups(&self) -> &[String] {
        &self.0.details.groups
    }
    /// Whether this is a CA certificate.
    pub fn is_ca(&self) -> bool {
        self.0.details.is_ca
    }
    /// Start of validity, Unix seconds.
    pub fn not_before(&self) -> i64 {
        self.0.details.not_before
    }
    /// End of validity, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.0.details.not_after
    }
    /// Public key: X25519/Ed25519 32 bytes or P256 65 bytes.
    pub fn public_key(&self) -> &[u8] {
        self.part(self.0.public_key)
    }
    /// The issuer (signing CA fingerprint) when it is exactly 32 bytes; `None` on CAs.
    pub fn issuer(&self) -> Option<[u8; 32]> {
        <[u8; 32]>::try_from(self.0.details.issuer.as_slice()).ok()
    }
    /// The raw issuer bytes as carried (empty on CAs).
    pub fn issuer_bytes(&self) -> &[u8] {
        self.0.details.issuer.as_slice()
    }
    /// Hex of the issuer ("" when none), the form used in JSON, blocklists and pool lookups.
    pub fn issuer_hex(&self) -> String {
        hex::encode(self.0.details.issuer.as_slice())
    }
    /// The signature.
    pub fn signature(&self) -> &[u8] {
        self.part(self.0.signature)
    }
    /// SHA-256 fingerprint (v1: of the full encoding; v2: of details ‖ curve ‖ key ‖ signature).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.0.fingerprint
    }
    /// Lowercase hex of `fingerprint()`.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.0.fingerprint)
    }

    /// Fingerprint of the same certificate with the other form of its P256 signature (s ↔ n − s).
    /// `None` for Curve25519 or an unparseable signature. 1.10.3+ blocklists check this form too.
    pub fn alternate_fingerprint(&self) -> Option<[u8; 32]> {
        if self.0.curve != Curve::P256 {
            return None;
        }
        let sig = signing::p256_swap_signature(self.signature())?;
        Some(self.fingerprint_with_signature(&sig))
    }

    fn fingerprint_with_signature(&self, sig: &[u8]) -> [u8; 32] {
        match self.0.version {
            Version::V1 => sha256(&[&v1::encode_certificate(
                &self.0.details,
                self.0.curve,
                self.public_key(),
                sig,
            )]),
            Version::V2 => sha256(&[
                self.raw_details(),
                &[self.0.curve.wire()],
                self.public_key(),
                sig,
            ]),
        }
    }

    /// The bytes the CA signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        match self.0.version {
            Version::V1 => v1::encode_details(&self.0.details, self.0.curve, self.public_key()),
            Version::V2 => v2::signed_bytes(self.raw_details(), self.0.curve, self.public_key()),
        }
    }

    /// The wire/file encoding: v1 protobuf byte-identical to Go; v2 DER as Go re-marshals it.
    pub fn marshal(&self) -> Vec<u8> {
        match self.0.version {
            Version::V1 => v1::encode_certificate(
                &self.0.details,
                self.0.curve,
                self.public_key(),
                self.signature(),
            ),
            Version::V2 => v2::encode_certificate(
                self.raw_details(),
                self.0.curve,
                Some(self.public_key()),
                self.signature(),
            ),
        }
    }

    /// PEM with the banner of the version (`NEBULA CERTIFICATE` / `NEBULA CERTIFICATE V2`).
    pub fn marshal_pem(&self) -> String {
        let banner = match self.0.version {
            Version::V1 => pem::CERT_V1_BANNER,
            Version::V2 => pem::CERT_V2_BANNER,
        };
        pem::encode(banner, &self.marshal())
    }

    /// The form sent in handshakes: v1 = protobuf without the public key; v2 = `30 { a0 details, 83 sig }`.
    pub fn marshal_for_handshake(&self) -> Vec<u8> {
        match self.0.version {
            Version::V1 => {
                v1::encode_certificate(&self.0.details, self.0.curve, &[], self.signature())
            }
            Version::V2 => v2::encode_for_handshake(self.raw_details(), self.signature()),
        }
    }

    /// Go's rule: invalid when `now < notBefore` or `now > notAfter` (both bounds inclusive-valid).
    pub fn expired(&self, now_unix: i64) -> bool {
        now_unix < self.0.details.not_before || now_unix > self.0.details.not_after
    }

    /// Whether the signature verifies with `ca_public_key` (using this certificate's curve).
    pub fn check_signature(&self, ca_public_key: &[u8]) -> bool {
        let msg = self.signed_bytes();
        signing::verify_signature(self.0.curve, ca_public_key, &msg, self.signature())
    }

    /// Check that `private_key` belongs to this certificate's public key. CA: Ed25519 64 bytes
    /// (seed ‖ public; both the seed-derived and the embedded public key must match) or P256 32 bytes;
    /// host: X25519 or P256 ECDH 32 bytes.
    pub fn verify_private_key(&self, curve: Curve, private_key: &[u8]) -> Result<(), CertError> {
        if curve != self.0.curve {
            return Err(CertError::curve_mismatch(self.0.curve, curve));
        }
        let derived: Vec<u8> = match (self.0.details.is_ca, curve) {
            (true, Curve::Curve25519) => {
                let kp = <[u8; 64]>::try_from(private_key).map_err(|_| {
                    CertError::InvalidPrivateKey {
                        reason: "key was not 64 bytes, is invalid ed25519 private key",
                    }
                })?;
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&kp[..32]);
                let pk = ed25519_dalek::SigningKey::from_bytes(&seed)
                    .verifying_key()
                    .to_bytes();
                if kp[32..] != pk[..] {
                    return Err(CertError::PublicKeyMismatch);
                }
                pk.to_vec()
            }
            (_, Curve::P256) => {
                if private_key.len() != 32 {
                    return Err(CertError::InvalidPrivateKey {
                        reason: "P256 private keys are 32 bytes",
                    });
                }
                let sk = p256::SecretKey::from_slice(private_key).map_err(|_| {
                    CertError::InvalidPrivateKey {
                        reason: "cannot parse private key as P256",
                    }
                })?;
                use p256::elliptic_curve::sec1::ToEncodedPoint as _;
                sk.public_key().to_encoded_point(false).as_bytes().to_vec()
            }
            (false, Curve::Curve25519) => {
                let k = <[u8; 32]>::try_from(private_key).map_err(|_| {
                    CertError::InvalidPrivateKey {
                        reason: "X25519 private keys are 32 bytes",
                    }
                })?;
                let secret = x25519_dalek::StaticSecret::from(k);
                x25519_dalek::PublicKey::from(&secret).as_bytes().to_vec()
            }
        };
        if derived != self.public_key() {
            return Err(CertError::PublicKeyMismatch);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Signing

/// A certificate to be signed (Go's `TBSCertificate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TbsCertificate {
    pub version: Version,
    pub name: String,
    /// Host: its address(es) with prefix; CA: networks it may issue from (empty = any).
    pub networks: Vec<IpNet>,
    pub unsafe_networks: Vec<IpNet>,
    pub groups: Vec<String>,
    pub is_ca: bool,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    pub public_key: Vec<u8>,
    pub curve: Curve,
}

impl TbsCertificate {
    /// Sign. `signer_ca = None` makes a self-signed CA (`is_ca` must be set and `public_key` must be the
    /// key's own); otherwise the signer must be a CA of the same curve whose public key is `key`'s, the
    /// new certificate must not be a CA and must respect the signer's constraints, and its issuer is the
    /// signer's fingerprint. v1: IPv4 only, hosts exactly one network. v2: networks sorted, duplicates
    /// refused, name 1–253 bytes. P256 signatures are low-S.
    pub fn sign(
        &self,
        signer_ca: Option<&Certificate>,
        key: &CaSigningKey,
    ) -> Result<Certificate, CertError> {
        if key.curve() != self.curve {
            return Err(CertError::curve_mismatch(self.curve, key.curve()));
        }
        let issuer = self.issuer_checked(signer_ca, key)?;
        self.check_public_key()?;
        let details = self.details(issuer);
        match self.version {
            Version::V1 => self.sign_v1(details, key),
            Version::V2 => self.sign_v2(details, key),
        }
    }

    /// The issuer bytes after the signer's checks: a CA signing a host (same curve, `key` is the CA's,
    /// constraints respected) gives its fingerprint; a self-signed CA gives none.
    fn issuer_checked(
        &self,
        signer_ca: Option<&Certificate>,
        key: &CaSigningKey,
    ) -> Result<Vec<u8>, CertError> {
        let Some(ca) = signer_ca else {
            if !self.is_ca {
                return Err(CertError::SelfSignedNotCa);
            }
            if self.public_key != key.public_key_bytes() {
                return Err(CertError::SigningKeyMismatch);
            }
            return Ok(Vec::new());
        };
        if self.is_ca {
            return Err(CertError::CaSignedByCa);
        }
        if !ca.is_ca() {
            return Err(CertError::NotACa {
                name: ca.name().to_string(),
            });
        }
        if ca.curve() != self.curve {
            return Err(CertError::curve_mismatch(ca.curve(), self.curve));
        }
        if ca.public_key() != key.public_key_bytes().as_slice() {
            return Err(CertError::SigningKeyMismatch);
        }
        check_constraints(
            ca,
            self.not_before,
            self.not_after,
            &self.groups,
            &self.networks,
            &self.unsafe_networks,
        )?;
        Ok(ca.fingerprint().to_vec())
    }

    /// The public key is present and of the curve's size (X25519/Ed25519 32, P256 65 bytes).
    fn check_public_key(&self) -> Result<(), CertError> {
        let want_len = match self.curve {
            Curve::Curve25519 => 32,
            Curve::P256 => 65,
        };
        if self.public_key.is_empty() {
            return Err(CertError::EmptyPublicKey);
        }
        if self.public_key.len() != want_len {
            return Err(CertError::InvalidPublicKey {
                curve: self.curve.name(),
                len: self.public_key.len(),
            });
        }
        Ok(())
    }

    /// The details this certificate will carry, with `issuer`.
    fn details(&self, issuer: Vec<u8>) -> Details {
        Details {
            name: self.name.as_str().into(),
            networks: self.networks.clone(),
            unsafe_networks: self.unsafe_networks.clone(),
            groups: self.groups.clone(),
            is_ca: self.is_ca,
            not_before: self.not_before,
            not_after: self.not_after,
            issuer: issuer.into(),
        }
    }

    /// v1: IPv4 only, a host carries exactly one network.
    fn sign_v1(&self, details: Details, key: &CaSigningKey) -> Result<Certificate, CertError> {
        details.validate_v1(&self.public_key)?;
        if !self.is_ca && details.networks.len() != 1 {
            return Err(CertError::TooManyNetworksV1 {
                count: details.networks.len(),
            });
        }
        let signed = v1::encode_details(&details, self.curve, &self.public_key);
        let sig = key.sign(&signed);
        Ok(Certificate::build_v1(
            details,
            self.curve,
            self.public_key.clone(),
            sig,
        ))
    }

    /// v2: name 1–253 bytes, no empty group, networks sorted without duplicates, at most 64 KiB.
    fn sign_v2(&self, mut details: Details, key: &CaSigningKey) -> Result<Certificate, CertError> {
        let name_len = details.name.len();
        if name_len == 0 || name_len > v2::MAX_NAME_LENGTH {
            return Err(CertError::InvalidName { len: name_len });
        }
        if details.groups.iter().any(|g| g.is_empty()) {
            return Err(CertError::EmptyGroup);
        }
        details.validate_v2(&self.public_key)?;
        let raw = v2::encode_details(&details);
        let sig = key.sign(&v2::signed_bytes(&raw, self.curve, &self.public_key));
        let cert = Certificate::build_v2(details, raw, self.curve, self.public_key.clone(), sig);
        let len = cert.marshal().len();
        if len > v2::MAX_CERTIFICATE_SIZE {
            return Err(CertError::TooLarge { len });
        }
        Ok(cert)
    }
}

/// The first PEM block of `input` and the bytes after it; no block at all is an error.
pub(crate) fn first_pem_block(input: &[u8]) -> Result<(pem::PemBlock, &[u8]), CertError> {
    match pem::decode(input) {
        Ok(Some(x)) => Ok(x),
        Ok(None) => Err(CertError::InvalidPem {
            reason: String::new(),
        }),
        Err(e) => Err(CertError::InvalidPem {
            reason: e.to_string(),
        }),
    }
}

/// The certificate version a PEM banner names.
pub(crate) fn version_of_banner(label: &str) -> Result<Version, CertError> {
    match label {
        pem::CERT_V1_BANNER => Ok(Version::V1),
        pem::CERT_V2_BANNER => Ok(Version::V2),
        other => Err(CertError::WrongPemBanner {
            found: other.to_string(),
        }),
    }
}
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::der;
    use prost::Message as _;

    pub(crate) fn net(s: &str) -> IpNet {
        s.parse().expect("test network")
    }

    /// A CA and a host certificate from fixed keys and times (Ed25519 is deterministic, so the bytes
    /// are stable). v2 adds an IPv6 network, given unsorted.
    pub(crate) fn fixed_pair(version: Version) -> (CaSigningKey, Certificate, Certificate) {
        let k = CaSigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]));
        let mut ca_nets = vec![net("10.42.0.0/16")];
        let mut host_nets = vec![net("10.42.1.5/16")];
        if version == Version::V2 {
            ca_nets.push(net("fd00::/64"));
            host_nets.insert(0, net("fd00::5/64"));
        }
        let ca = TbsCertificate {
            version,
            name: "Test CA".into(),
            networks: ca_nets,
            unsafe_networks: vec![],
            groups: vec!["laptop".into(), "home".into()],
            is_ca: true,
            not_before: 1_700_000_000,
            not_after: 1_900_000_000,
            public_key: k.public_key_bytes(),
            curve: Curve::Curve25519,
        }
        .sign(None, &k)
        .expect("ca");
        let host = TbsCertificate {
            version,
            name: "host1".into(),
            networks: host_nets,
            unsafe_networks: vec![net("10.42.200.0/24")],
            groups: vec!["laptop".into()],
            is_ca: false,
            not_before: 1_700_000_100,
            not_after: 1_800_000_000,
            public_key: vec![2u8; 32],
            curve: Curve::Curve25519,
        }
        .sign(Some(&ca), &k)
        .expect("host");
        (k, ca, host)
    }

    /// A fresh CA for `curve`/`version` with the given constraints.
    pub(crate) fn make_ca(
        curve: Curve,
        version: Version,
        networks: Vec<IpNet>,
        groups: Vec<&str>,
        not_before: i64,
        not_after: i64,
    ) -> (CaSigningKey, Certificate) {
        let k = CaSigningKey::generate(curve);
        let ca = TbsCertificate {
            version,
            name: format!("ca-{curve:?}-{version:?}"),
            networks,
            unsafe_networks: vec![],
            groups: groups.into_iter().map(String::from).collect(),
            is_ca: true,
            not_before,
            not_after,
            public_key: k.public_key_bytes(),
            curve,
        }
        .sign(None, &k)
        .expect("make_ca");
        (k, ca)
    }

    /// A host TBS template (valid 1000..=2000) with a key of the right size.
    pub(crate) fn host_tbs(curve: Curve, version: Version, name: &str) -> TbsCertificate {
        TbsCertificate {
            version,
            name: name.into(),
            networks: vec![net("10.1.2.3/24")],
            unsafe_networks: vec![],
            groups: vec![],
            is_ca: false,
            not_before: 1000,
            not_after: 2000,
            public_key: CaSigningKey::generate(curve).public_key_bytes(),
            curve,
        }
    }

    /// Sign without any of the signer's checks (to build certificates Go's signer would refuse, e.g.
    /// ones violating CA constraints). Networks are encoded in the order given.
    pub(crate) fn sign_unchecked(
        tbs: &TbsCertificate,
        issuer: &[u8],
        key: &CaSigningKey,
    ) -> Certificate {
        let details = tbs.details(issuer.to_vec());
        match tbs.version {
            Version::V1 => {
                let sig = key.sign(&v1::encode_details(&details, tbs.curve, &tbs.public_key));
                Certificate::build_v1(details, tbs.curve, tbs.public_key.clone(), sig)
            }
            Version::V2 => {
                let raw = v2::encode_details(&details);
                let sig = key.sign(&v2::signed_bytes(&raw, tbs.curve, &tbs.public_key));
                Certificate::build_v2(details, raw, tbs.curve, tbs.public_key.clone(), sig)
            }
        }
    }

    /// Same certificate with another signature (fields and raw details kept).
    pub(crate) fn with_signature(c: &Certificate, sig: Vec<u8>) -> Certificate {
        match c.version() {
            Version::V1 => {
                Certificate::build_v1(c.0.details.clone(), c.curve(), c.public_key().to_vec(), sig)
            }
            Version::V2 => Certificate::build_v2(
                c.0.details.clone(),
                c.raw_details().to_vec(),
                c.curve(),
                c.public_key().to_vec(),
                sig,
            ),
        }
    }

    #[test]
    fn a_certificate_keeps_its_parts_in_one_buffer_and_rebuilds_the_encoding() {
        for version in [Version::V1, Version::V2] {
            let (_, ca, host) = fixed_pair(version);
            for c in [&ca, &host] {
                let wire = c.marshal();
                let back = Certificate::from_bytes(version, &wire).expect("parse");
                assert_eq!(
                    back.marshal(),
                    wire,
                    "{version:?}: the encoding is rebuilt exactly"
                );
                assert_eq!(back.public_key(), c.public_key());
                assert_eq!(back.signature(), c.signature());
                assert_eq!(back.signed_bytes(), c.signed_bytes());
                assert!(!back.signature().is_empty() && !back.public_key().is_empty());
                // Only the parts are held: key + signature (+ v2 details), never the encoding.
                let parts = back.public_key().len()
                    + back.signature().len()
                    + match version {
                        Version::V1 => 0,
                        Version::V2 => back.raw_details().len(),
                    };
                assert_eq!(back.0.bytes.len(), parts);
                // A host's issuer (a CA fingerprint) is held inline, a CA's is empty.
                assert!(matches!(
                    back.0.details.issuer,
                    crate::details::Issuer::Fingerprint(_) | crate::details::Issuer::None
                ));
                assert_eq!(back.issuer_bytes(), c.issuer_bytes());
            }
        }
        let (bytes, [a, empty, b]) = pack([b"key".as_slice(), b"", b"sig"]);
        assert_eq!(
            (a.of(&bytes), empty.of(&bytes), b.of(&bytes)),
            (&b"key"[..], &b""[..], &b"sig"[..])
        );
    }

    #[test]
    fn v1_round_trip_is_byte_identical() {
        let (_, ca, host) = fixed_pair(Version::V1);
        for c in [&ca, &host] {
            let bytes = c.marshal();
            assert_eq!(c.fingerprint(), sha256(&[&bytes]));
            let back = Certificate::from_bytes(Version::V1, &bytes).expect("parse");
            assert_eq!(back.marshal(), bytes);
            assert_eq!(back.fingerprint(), c.fingerprint());
            assert_eq!(back.name(), c.name());
            assert_eq!(back.networks(), c.networks());
            assert_eq!(back.unsafe_networks(), c.unsafe_networks());
            assert_eq!(back.groups(), c.groups());
            assert_eq!(back.is_ca(), c.is_ca());
            assert_eq!(
                (back.not_before(), back.not_after()),
                (c.not_before(), c.not_after())
            );
            assert_eq!(back.public_key(), c.public_key());
            assert_eq!(back.signature(), c.signature());
            assert_eq!(back.issuer(), c.issuer());
            let pem_text = c.marshal_pem();
            let (pem_back, rest) = Certificate::from_pem(pem_text.as_bytes()).expect("pem");
            assert_eq!(pem_back, back);
            assert!(rest.is_empty());
        }
        assert_eq!(host.issuer(), Some(ca.fingerprint()));
        assert_eq!(host.issuer_hex(), ca.fingerprint_hex());
        assert_eq!(ca.issuer(), None);
        assert_eq!(ca.issuer_hex(), "");
        assert!(host.check_signature(ca.public_key()));
        assert!(ca.check_signature(ca.public_key()));
        // Field layout as in PROTOCOL.md §7.2: name, ips, subnets, groups, nbf, naf, key, issuer.
        let raw = proto::cert::RawNebulaCertificate::decode(host.marshal().as_slice()).expect("pb");
        let d = raw.details.expect("details");
        assert_eq!(d.ips, vec![0x0a2a_0105, 0xffff_0000]);
        assert_eq!(d.subnets, vec![0x0a2a_c800, 0xffff_ff00]);
        assert!(host
            .signed_bytes()
            .starts_with(&[0x0a, 0x05, b'h', b'o', b's', b't', b'1', 0x12, 0x09]));
    }

    #[test]
    fn v2_round_trip_sorted_and_byte_identical() {
        let (_, ca, host) = fixed_pair(Version::V2);
        // Given fd00::5/64 first; Go sorts IPv4 before IPv6.
        assert_eq!(host.networks(), &[net("10.42.1.5/16"), net("fd00::5/64")]);
        for c in [&ca, &host] {
            let bytes = c.marshal();
            let back = Certificate::from_bytes(Version::V2, &bytes).expect("parse");
            assert_eq!(back.marshal(), bytes);
            assert_eq!(back.fingerprint(), c.fingerprint());
            assert_eq!(back.networks(), c.networks());
            assert_eq!(back.version(), Version::V2);
            let (p, _) = Certificate::from_pem(c.marshal_pem().as_bytes()).expect("pem");
            assert_eq!(p.version(), Version::V2);
            assert!(c
                .marshal_pem()
                .starts_with("-----BEGIN NEBULA CERTIFICATE V2-----\n"));
        }
        assert!(host.check_signature(ca.public_key()));
        // The details carry the networks sorted on the wire: 10.42.1.5/16 before fd00::5/64.
        let sb = host.signed_bytes();
        let pos4 = sb
            .windows(5)
            .position(|w| w == [10, 42, 1, 5, 16])
            .expect("v4");
        let pos6 = sb.windows(2).position(|w| w == [0xfd, 0x00]).expect("v6");
        assert!(pos4 < pos6);
    }

    /// A v2 certificate built from the Go test vector's details (unsorted networks, 16-byte issuer):
    /// parsed leniently, sorted in memory, raw bytes kept for fingerprint and re-marshal.
    #[test]
    fn v2_parse_of_go_vector_keeps_raw_details() {
        let raw = hex::decode("a070800774657374696e67a10e04050a0101021004050a01010118a20e0405090101031004050901010218a3270c0b746573742d67726f7570310c0b746573742d67726f7570320c0b746573742d67726f7570338504318bef808604318befbc87101234567890abcdef1234567890abcdef").expect("hex");
        let key = b"1234567890abcedfghij1234567890ab";
        let sig = [7u8; 64];
        let der = v2::encode_certificate(&raw, Curve::Curve25519, Some(key), &sig);
        let c = Certificate::from_bytes(Version::V2, &der).expect("parse");
        assert_eq!(c.name(), "testing");
        assert_eq!(c.networks(), &[net("10.1.1.1/24"), net("10.1.1.2/16")]);
        assert_eq!(c.unsafe_networks(), &[net("9.1.1.2/24"), net("9.1.1.3/16")]);
        assert_eq!(c.groups(), &["test-group1", "test-group2", "test-group3"]);
        assert_eq!(c.not_before(), 831_254_400);
        assert_eq!(c.not_after(), 831_254_460);
        assert_eq!(c.issuer(), None, "a 16-byte issuer is not a fingerprint");
        assert_eq!(c.issuer_hex(), "1234567890abcdef1234567890abcdef");
        assert_eq!(c.marshal(), der);
        assert_eq!(c.fingerprint(), sha256(&[&raw, &[0], key, &sig]));
        let mut signed = raw.clone();
        signed.push(0);
        signed.extend_from_slice(key);
        assert_eq!(c.signed_bytes(), signed);
    }

    #[test]
    fn handshake_forms_and_recombine() {
        for version in [Version::V1, Version::V2] {
            let (_, ca, host) = fixed_pair(version);
            let hs = host.marshal_for_handshake();
            match version {
                Version::V1 => {
                    let raw = proto::cert::RawNebulaCertificate::decode(hs.as_slice()).expect("pb");
                    assert!(raw.details.expect("details").public_key.is_empty());
                }
                Version::V2 => {
                    let mut r = der::Reader::new(&hs);
                    let body = r.read_expect(0x30).expect("seq");
                    let mut r = der::Reader::new(body);
                    assert_eq!(r.read_element().expect("details").whole, host.raw_details());
                    assert_eq!(r.read_expect(0x83).expect("sig"), host.signature());
                    assert!(r.is_empty());
                }
            }
            let back = Certificate::recombine_from_handshake(
                version,
                &hs,
                host.public_key(),
                Curve::Curve25519,
            )
            .expect("recombine");
            assert_eq!(back.fingerprint(), host.fingerprint());
            assert!(back.check_signature(ca.public_key()));
            // Another key inserted: the signature no longer verifies.
            let other =
                Certificate::recombine_from_handshake(version, &hs, &[9u8; 32], Curve::Curve25519)
                    .expect("recombine other key");
            assert!(!other.check_signature(ca.public_key()));
            // A raw cert still carrying a key is refused.
            assert_eq!(
                Certificate::recombine_from_handshake(
                    version,
                    &host.marshal(),
                    host.public_key(),
                    Curve::Curve25519
                )
                .err(),
                Some(CertError::PublicKeyPresent)
            );
            // Our curve differs from the cert's: v1 carries its curve and is refused; the v2 handshake
            // form has no curve, so it is read as ours and its signature cannot verify.
            let mismatch =
                Certificate::recombine_from_handshake(version, &hs, host.public_key(), Curve::P256);
            match version {
                Version::V1 => assert!(matches!(mismatch, Err(CertError::CurveMismatch { .. }))),
                Version::V2 => assert!(!mismatch
                    .expect("v2 parses")
                    .check_signature(ca.public_key())),
            }
            let full_p256 =
                v2::encode_certificate(host.raw_details(), Curve::P256, None, host.signature());
            if version == Version::V2 {
                assert!(matches!(
                    Certificate::recombine_from_handshake(
                        version,
                        &full_p256,
                        host.public_key(),
                        Curve::Curve25519
                    ),
                    Err(CertError::CurveMismatch { .. })
                ));
            }
            assert_eq!(
                Certificate::recombine_from_handshake(version, &hs, &[], Curve::Curve25519).err(),
                Some(CertError::NoPeerStaticKey)
            );
            assert_eq!(
                Certificate::recombine_from_handshake(version, &[], &[1; 32], Curve::Curve25519)
                    .err(),
                Some(CertError::Empty)
            );
        }
    }

    #[test]
    fn p256_v2_handshake_assumes_our_curve() {
        let (k, ca) = make_ca(Curve::P256, Version::V2, vec![], vec![], 0, 10_000);
        let host = host_tbs(Curve::P256, Version::V2, "p")
            .sign(Some(&ca), &k)
            .expect("sign");
        let hs = host.marshal_for_handshake();
        let back =
            Certificate::recombine_from_handshake(Version::V2, &hs, host.public_key(), Curve::P256)
                .expect("recombine");
        assert_eq!(back.fingerprint(), host.fingerprint());
        assert!(back.check_signature(ca.public_key()));
        // A Curve25519 receiver reads it as a Curve25519 cert: the signature cannot verify.
        let wrong = Certificate::recombine_from_handshake(
            Version::V2,
            &hs,
            host.public_key(),
            Curve::Curve25519,
        )
        .expect("parses");
        assert!(!wrong.check_signature(ca.public_key()));
    }

    #[test]
    fn expired_boundaries() {
        let (_, _, host) = fixed_pair(Version::V1);
        assert!(host.expired(host.not_before() - 1));
        assert!(!host.expired(host.not_before()));
        assert!(!host.expired(host.not_after()));
        assert!(host.expired(host.not_after() + 1));
    }

    #[test]
    fn tampered_certificates_fail_signature() {
        for version in [Version::V1, Version::V2] {
            let (_, ca, host) = fixed_pair(version);
            let mut sig = host.signature().to_vec();
            sig[10] ^= 0x40;
            assert!(!with_signature(&host, sig).check_signature(ca.public_key()));
            // Change the name inside the encoded bytes and re-parse.
            let mut bytes = host.marshal();
            let pos = bytes.windows(5).position(|w| w == b"host1").expect("name");
            bytes[pos + 4] = b'2';
            let t = Certificate::from_bytes(version, &bytes).expect("still parses");
            assert_eq!(t.name(), "host2");
            assert!(!t.check_signature(ca.public_key()));
            // The wrong CA key.
            let other = CaSigningKey::generate(Curve::Curve25519);
            assert!(!host.check_signature(&other.public_key_bytes()));
        }
    }

    #[test]
    fn verify_private_key_all_kinds() {
        // Ed25519 CA.
        let k = CaSigningKey::generate(Curve::Curve25519);
        let (_, ca) = (
            0,
            TbsCertificate {
                version: Version::V1,
                name: "ca".into(),
                networks: vec![],
                unsafe_networks: vec![],
                groups: vec![],
                is_ca: true,
                not_before: 0,
                not_after: 10,
                public_key: k.public_key_bytes(),
                curve: Curve::Curve25519,
            }
            .sign(None, &k)
            .expect("ca"),
        );
        assert_eq!(
            ca.verify_private_key(Curve::Curve25519, &k.to_raw()),
            Ok(())
        );
        let other = CaSigningKey::generate(Curve::Curve25519).to_raw();
        assert_eq!(
            ca.verify_private_key(Curve::Curve25519, &other),
            Err(CertError::PublicKeyMismatch)
        );
        // Right public half, wrong seed.
        let mut forged = other.clone();
        forged[32..].copy_from_slice(&k.public_key_bytes());
        assert_eq!(
            ca.verify_private_key(Curve::Curve25519, &forged),
            Err(CertError::PublicKeyMismatch)
        );
        assert!(matches!(
            ca.verify_private_key(Curve::Curve25519, &[1; 32]),
            Err(CertError::InvalidPrivateKey { .. })
        ));
        assert!(matches!(
            ca.verify_private_key(Curve::P256, &[1; 32]),
            Err(CertError::CurveMismatch { .. })
        ));
        // X25519 host.
        let secret = [5u8; 32];
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
        let mut tbs = host_tbs(Curve::Curve25519, Version::V1, "h");
        tbs.public_key = public.as_bytes().to_vec();
        let host = tbs.sign(Some(&ca), &k).err();
        // CA has no networks (any) but validity 0..10 excludes the template's 1000..2000.
        assert_eq!(host, Some(CertError::NotAfterAfterCa));
        let (k2, ca2) = make_ca(Curve::Curve25519, Version::V2, vec![], vec![], 0, 10_000);
        tbs.version = Version::V2;
        let host = tbs.sign(Some(&ca2), &k2).expect("host");
        assert_eq!(host.verify_private_key(Curve::Curve25519, &secret), Ok(()));
        assert_eq!(
            host.verify_private_key(Curve::Curve25519, &[6; 32]),
            Err(CertError::PublicKeyMismatch)
        );
        assert!(host
            .verify_private_key(Curve::Curve25519, &[6; 31])
            .is_err());
        // P256 CA and host.
        let (pk, pca) = make_ca(Curve::P256, Version::V1, vec![], vec![], 0, 10_000);
        assert_eq!(pca.verify_private_key(Curve::P256, &pk.to_raw()), Ok(()));
        assert_eq!(
            pca.verify_private_key(Curve::P256, &CaSigningKey::generate(Curve::P256).to_raw()),
            Err(CertError::PublicKeyMismatch)
        );
        assert!(pca.verify_private_key(Curve::P256, &[0; 32]).is_err());
        assert!(pca.verify_private_key(Curve::P256, &[0xff; 32]).is_err());
        let hsk = p256::SecretKey::from_slice(&[3u8; 32]).expect("sk");
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        let mut ptbs = host_tbs(Curve::P256, Version::V1, "ph");
        ptbs.public_key = hsk.public_key().to_encoded_point(false).as_bytes().to_vec();
        let ph = ptbs.sign(Some(&pca), &pk).expect("p256 host");
        assert_eq!(ph.verify_private_key(Curve::P256, &[3u8; 32]), Ok(()));
        assert_eq!(
            ph.verify_private_key(Curve::P256, &[4u8; 32]),
            Err(CertError::PublicKeyMismatch)
        );
    }

    #[test]
    fn sign_refuses_what_go_refuses() {
        let (k, ca) = make_ca(
            Curve::Curve25519,
            Version::V2,
            vec![net("10.1.0.0/16"), net("fd00::/64")],
            vec!["a", "b"],
            0,
            10_000,
        );
        let ok = host_tbs(Curve::Curve25519, Version::V2, "h");
        assert!(ok.sign(Some(&ca), &k).is_ok());
        let check = |f: &dyn Fn(&mut TbsCertificate), want: CertError| {
            let mut t = ok.clone();
            f(&mut t);
            assert_eq!(t.sign(Some(&ca), &k).err(), Some(want));
        };
        check(&|t| t.is_ca = true, CertError::CaSignedByCa);
        check(
            &|t| t.networks = vec![net("10.2.0.1/24")],
            CertError::NetworkNotAllowedByCa {
                network: net("10.2.0.1/24"),
            },
        );
        check(
            &|t| t.networks = vec![net("10.1.0.1/8")],
            CertError::NetworkNotAllowedByCa {
                network: net("10.1.0.1/8"),
            },
        );
        check(
            &|t| t.groups = vec!["a".into(), "c".into()],
            CertError::GroupNotAllowedByCa { group: "c".into() },
        );
        check(&|t| t.not_before = -1, CertError::NotBeforeBeforeCa);
        check(&|t| t.not_after = 10_001, CertError::NotAfterAfterCa);
        check(&|t| t.networks = vec![], CertError::NoNetworks);
        check(
            &|t| t.networks = vec![net("fd01::1/64")],
            CertError::NetworkNotAllowedByCa {
                network: net("fd01::1/64"),
            },
        );
        check(
            &|t| t.networks = vec![net("fd00::1/56")],
            CertError::NetworkNotAllowedByCa {
                network: net("fd00::1/56"),
            },
        );
        check(
            &|t| t.groups = vec!["x".repeat(70_000)],
            CertError::GroupNotAllowedByCa {
                group: "x".repeat(70_000),
            },
        );
        check(
            &|t| t.networks = vec![net("10.1.0.1/24"), net("10.1.0.1/24")],
            CertError::DuplicateNetwork {
                network: net("10.1.0.1/24"),
            },
        );
        check(
            &|t| t.name = String::new(),
            CertError::InvalidName { len: 0 },
        );
        check(
            &|t| t.name = "x".repeat(254),
            CertError::InvalidName { len: 254 },
        );
        check(
            &|t| t.groups = vec!["a".into(), String::new()],
            CertError::GroupNotAllowedByCa {
                group: String::new(),
            },
        );
        check(
            &|t| t.public_key = vec![1; 31],
            CertError::InvalidPublicKey {
                curve: "CURVE25519",
                len: 31,
            },
        );
        check(&|t| t.public_key = vec![], CertError::EmptyPublicKey);
        check(
            &|t| t.curve = Curve::P256,
            CertError::CurveMismatch {
                expected: "P256",
                found: "CURVE25519",
            },
        );
        // Unsafe IPv6 network without an IPv6 address (the CA allows any unsafe network).
        check(
            &|t| t.unsafe_networks = vec![net("fd01::/64")],
            CertError::UnsafeNetworkFamilyWithoutNetwork {
                network: net("fd01::/64"),
            },
        );
        // Signer must be a CA, and the key must be the signer's.
        let host = ok.sign(Some(&ca), &k).expect("host");
        assert_eq!(
            ok.sign(Some(&host), &k).err(),
            Some(CertError::NotACa { name: "h".into() })
        );
        let other = CaSigningKey::generate(Curve::Curve25519);
        assert_eq!(
            ok.sign(Some(&ca), &other).err(),
            Some(CertError::SigningKeyMismatch)
        );
        // Self-signed: must be a CA and carry the signing key.
        assert_eq!(ok.sign(None, &k).err(), Some(CertError::SelfSignedNotCa));
        let mut self_ca = ok.clone();
        self_ca.is_ca = true;
        assert_eq!(
            self_ca.sign(None, &k).err(),
            Some(CertError::SigningKeyMismatch)
        );
        // Empty group with a CA that does not restrict groups.
        let (k_any, ca_any) = make_ca(Curve::Curve25519, Version::V2, vec![], vec![], 0, 10_000);
        let mut g = ok.clone();
        g.groups = vec![String::new()];
        assert_eq!(
            g.sign(Some(&ca_any), &k_any).err(),
            Some(CertError::EmptyGroup)
        );
        // Zero address and 4in6.
        g.groups = vec![];
        g.networks = vec![net("0.0.0.0/0")];
        assert_eq!(
            g.sign(Some(&ca_any), &k_any).err(),
            Some(CertError::ZeroAddressNetwork {
                network: net("0.0.0.0/0")
            })
        );
        g.networks = vec![net("::ffff:10.0.0.1/120")];
        assert_eq!(
            g.sign(Some(&ca_any), &k_any).err(),
            Some(CertError::FourInSixNetwork {
                network: net("::ffff:10.0.0.1/120")
            })
        );
        // Over 65536 bytes encoded.
        g.networks = vec![net("10.0.0.1/24")];
        g.groups = vec!["x".repeat(70_000)];
        assert!(matches!(
            g.sign(Some(&ca_any), &k_any),
            Err(CertError::TooLarge { .. })
        ));
    }

    #[test]
    fn sign_checks_ca_unsafe_networks() {
        let k = CaSigningKey::generate(Curve::Curve25519);
        let ca = TbsCertificate {
            version: Version::V1,
            name: "ca".into(),
            networks: vec![],
            unsafe_networks: vec![net("192.168.0.0/16")],
            groups: vec![],
            is_ca: true,
            not_before: 0,
            not_after: 10_000,
            public_key: k.public_key_bytes(),
            curve: Curve::Curve25519,
        }
        .sign(None, &k)
        .expect("ca");
        let mut t = host_tbs(Curve::Curve25519, Version::V1, "h");
        t.unsafe_networks = vec![net("192.168.4.0/24")];
        assert!(t.sign(Some(&ca), &k).is_ok());
        t.unsafe_networks = vec![net("192.168.4.0/24"), net("192.0.0.0/8")];
        assert_eq!(
            t.sign(Some(&ca), &k).err(),
            Some(CertError::UnsafeNetworkNotAllowedByCa {
                network: net("192.0.0.0/8")
            })
        );
        t.unsafe_networks = vec![net("10.0.0.0/8")];
        assert_eq!(
            t.sign(Some(&ca), &k).err(),
            Some(CertError::UnsafeNetworkNotAllowedByCa {
                network: net("10.0.0.0/8")
            })
        );
    }

    #[test]
    fn v1_sign_rules() {
        let (k, ca) = make_ca(Curve::Curve25519, Version::V1, vec![], vec![], 0, 10_000);
        let ok = host_tbs(Curve::Curve25519, Version::V1, "h");
        let c = ok.sign(Some(&ca), &k).expect("v1 host");
        assert_eq!(c.version(), Version::V1);
        let mut t = ok.clone();
        t.networks = vec![net("10.1.2.3/24"), net("10.1.2.4/24")];
        assert_eq!(
            t.sign(Some(&ca), &k).err(),
            Some(CertError::TooManyNetworksV1 { count: 2 })
        );
        t.networks = vec![net("fd00::1/64")];
        assert_eq!(
            t.sign(Some(&ca), &k).err(),
            Some(CertError::Ipv6InV1 {
                kind: "networks",
                network: net("fd00::1/64")
            })
        );
        t.networks = vec![net("10.1.2.3/24")];
        t.unsafe_networks = vec![net("fd00::/64")];
        assert_eq!(
            t.sign(Some(&ca), &k).err(),
            Some(CertError::Ipv6InV1 {
                kind: "unsafe networks",
                network: net("fd00::/64")
            })
        );
        // v1 names may be empty; v1 CAs may hold several networks.
        t.unsafe_networks = vec![];
        t.name = String::new();
        assert!(t.sign(Some(&ca), &k).is_ok());
        let (_, multi) = make_ca(
            Curve::Curve25519,
            Version::V1,
            vec![net("10.0.0.0/8"), net("192.168.0.0/16")],
            vec![],
            0,
            10,
        );
        assert_eq!(multi.networks().len(), 2);
        // A v1 host signed by a v2 CA (sign -version 1) works.
        let (k2, ca2) = make_ca(
            Curve::Curve25519,
            Version::V2,
            vec![net("10.1.0.0/16")],
            vec![],
            0,
            10_000,
        );
        let h = ok.sign(Some(&ca2), &k2).expect("v1 host from v2 ca");
        assert_eq!(h.issuer(), Some(ca2.fingerprint()));
        assert!(h.check_signature(ca2.public_key()));
    }

    #[test]
    fn from_pem_banners_and_rest() {
        let (_, ca1, _) = fixed_pair(Version::V1);
        let (_, ca2, _) = fixed_pair(Version::V2);
        let both = format!("{}\n{}junk?", ca1.marshal_pem(), ca2.marshal_pem());
        let (a, rest) = Certificate::from_pem(both.as_bytes()).expect("first");
        assert_eq!(a, ca1);
        let (b, rest) = Certificate::from_pem(rest).expect("second");
        assert_eq!(b, ca2);
        assert_eq!(rest, b"junk?");
        // A v1 body under the v2 banner (and vice versa) fails to parse, not silently.
        let swapped = pem::encode(pem::CERT_V2_BANNER, &ca1.marshal());
        assert!(Certificate::from_pem(swapped.as_bytes()).is_err());
        let swapped = pem::encode(pem::CERT_V1_BANNER, &ca2.marshal());
        assert!(Certificate::from_pem(swapped.as_bytes()).is_err());
        let key = pem::encode("NEBULA X25519 PRIVATE KEY", &[0; 32]);
        assert_eq!(
            Certificate::from_pem(key.as_bytes()).err(),
            Some(CertError::WrongPemBanner {
                found: "NEBULA X25519 PRIVATE KEY".into()
            })
        );
        assert!(matches!(
            Certificate::from_pem(b"not pem"),
            Err(CertError::InvalidPem { .. })
        ));
        assert!(matches!(
            Certificate::from_pem(b""),
            Err(CertError::InvalidPem { .. })
        ));
        let many = Certificate::from_pem_many(
            format!("{}{}\n\n", ca1.marshal_pem(), ca2.marshal_pem()).as_bytes(),
        )
        .expect("many");
        assert_eq!(many, vec![ca1.clone(), ca2]);
        assert!(Certificate::from_pem_many(format!("{}xx", ca1.marshal_pem()).as_bytes()).is_err());
    }

    #[test]
    fn v1_parse_validation() {
        let raw = |ips: Vec<u32>, key: Vec<u8>, is_ca: bool, curve: i32| {
            proto::cert::RawNebulaCertificate {
                details: Some(proto::cert::RawNebulaCertificateDetails {
                    name: "n".into(),
                    ips,
                    public_key: key,
                    is_ca,
                    curve,
                    ..Default::default()
                }),
                signature: vec![1; 64],
            }
            .encode_to_vec()
        };
        let parse = |b: Vec<u8>| Certificate::from_bytes(Version::V1, &b);
        assert!(parse(raw(vec![0x0a00_0001, 0xffff_ff00], vec![1; 32], false, 0)).is_ok());
        assert_eq!(
            parse(raw(vec![], vec![1; 32], false, 0)).err(),
            Some(CertError::NoNetworks)
        );
        assert!(parse(raw(vec![], vec![1; 32], true, 0)).is_ok());
        assert_eq!(
            parse(raw(vec![0x0a00_0001, 0xffff_ff00], vec![], false, 0)).err(),
            Some(CertError::EmptyPublicKey)
        );
        assert_eq!(
            parse(raw(vec![0, 0xffff_ff00], vec![1; 32], false, 0)).err(),
            Some(CertError::ZeroAddressNetwork {
                network: net("0.0.0.0/24")
            })
        );
        assert_eq!(
            parse(raw(vec![0x0a00_0001, 0xffff_ff00], vec![1; 32], false, 7)).err(),
            Some(CertError::UnknownCurve { value: 7 })
        );
        assert_eq!(
            parse(raw(vec![0x0a00_0001], vec![1; 32], false, 0)).err(),
            Some(CertError::OddIpWords { field: "IPs" })
        );
        // A non-canonical mask reads as /0 and re-encodes as mask 0 (1.11 behaviour).
        let c =
            parse(raw(vec![0x0a00_0001, 0xff00_ff00], vec![1; 32], false, 0)).expect("odd mask");
        assert_eq!(c.networks(), &[net("10.0.0.1/0")]);
        // Multiple networks in a parsed v1 host cert are kept (first one is the VPN address).
        let c = parse(raw(
            vec![0x0a00_0001, 0xffff_ff00, 0x0b00_0001, 0xffff_0000],
            vec![1; 32],
            false,
            0,
        ))
        .expect("two");
        assert_eq!(c.networks().len(), 2);
    }

    #[test]
    fn v2_parse_rules() {
        let k = CaSigningKey::generate(Curve::Curve25519);
        let base = Details {
            name: "n".into(),
            networks: vec![net("10.0.0.1/24")],
            not_before: 1,
            not_after: 2,
            issuer: vec![9; 32].into(),
            ..Default::default()
        };
        let build = |d: &Details,
                     curve: Option<u8>,
                     key: Option<&[u8]>,
                     sig: &[u8],
                     extra: &[u8]|
         -> Vec<u8> {
            let mut body = v2::encode_details(d);
            if let Some(c) = curve {
                der::push_tlv(&mut body, 0x81, &[c]);
            }
            if let Some(pk) = key {
                der::push_tlv(&mut body, 0x82, pk);
            }
            der::push_tlv(&mut body, 0x83, sig);
            body.extend_from_slice(extra);
            let mut out = Vec::new();
            der::push_tlv(&mut out, 0x30, &body);
            out
        };
        let pk = [3u8; 32];
        let parse = |b: &[u8]| Certificate::from_bytes(Version::V2, b);
        let good = build(&base, None, Some(&pk), &[1; 64], &[]);
        let c = parse(&good).expect("good");
        assert_eq!(c.curve(), Curve::Curve25519);
        // Extension bytes after the signature and after the outer SEQUENCE are ignored.
        let ext = build(&base, None, Some(&pk), &[1; 64], &[0x84, 0x01, 0x00]);
        assert_eq!(parse(&ext).expect("ext").fingerprint(), c.fingerprint());
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"garbage");
        assert_eq!(
            parse(&trailing).expect("trailing").fingerprint(),
            c.fingerprint()
        );
        // Explicit curve 0 is accepted; re-marshal omits it (as Go).
        let explicit = build(&base, Some(0), Some(&pk), &[1; 64], &[]);
        assert_eq!(parse(&explicit).expect("explicit").marshal(), good);
        assert_eq!(
            parse(&build(&base, Some(1), Some(&pk), &[1; 64], &[]))
                .expect("p256")
                .curve(),
            Curve::P256
        );
        assert_eq!(
            parse(&build(&base, Some(2), Some(&pk), &[1; 64], &[])).err(),
            Some(CertError::UnknownCurve { value: 2 })
        );
        // Missing key, empty signature.
        assert_eq!(
            parse(&build(&base, None, None, &[1; 64], &[])).err(),
            Some(CertError::EmptyPublicKey)
        );
        assert_eq!(
            parse(&build(&base, None, Some(&pk), &[], &[])).err(),
            Some(CertError::EmptySignature)
        );
        // Name length.
        let mut d = base.clone();
        d.name = "x".repeat(253).into();
        assert!(parse(&build(&d, None, Some(&pk), &[1; 64], &[])).is_ok());
        d.name = "x".repeat(254).into();
        assert_eq!(
            parse(&build(&d, None, Some(&pk), &[1; 64], &[])).err(),
            Some(CertError::InvalidName { len: 254 })
        );
        d.name = "".into();
        assert_eq!(
            parse(&build(&d, None, Some(&pk), &[1; 64], &[])).err(),
            Some(CertError::InvalidName { len: 0 })
        );
        // Duplicates, zero address, 4in6, family rule, no networks.
        let with_nets = |nets: Vec<IpNet>, unsafe_nets: Vec<IpNet>, is_ca: bool| {
            let mut d = base.clone();
            d.networks = nets;
            d.unsafe_networks = unsafe_nets;
            d.is_ca = is_ca;
            parse(&build(&d, None, Some(&pk), &[1; 64], &[]))
        };
        assert_eq!(
            with_nets(vec![net("10.0.0.1/24"), net("10.0.0.1/24")], vec![], false).err(),
            Some(CertError::DuplicateNetwork {
                network: net("10.0.0.1/24")
            })
        );
        assert!(with_nets(vec![net("10.0.0.1/24"), net("10.0.0.1/25")], vec![], false).is_ok());
        assert_eq!(
            with_nets(
                vec![net("10.0.0.1/24")],
                vec![net("10.9.0.0/16"), net("10.9.0.0/16")],
                false
            )
            .err(),
            Some(CertError::DuplicateNetwork {
                network: net("10.9.0.0/16")
            })
        );
        assert_eq!(
            with_nets(vec![net("::/0")], vec![], true).err(),
            Some(CertError::ZeroAddressNetwork {
                network: net("::/0")
            })
        );
        assert_eq!(
            with_nets(vec![net("::ffff:1.2.3.4/128")], vec![], false).err(),
            Some(CertError::FourInSixNetwork {
                network: net("::ffff:1.2.3.4/128")
            })
        );
        assert_eq!(
            with_nets(vec![net("10.0.0.1/24")], vec![net("fd00::/64")], false).err(),
            Some(CertError::UnsafeNetworkFamilyWithoutNetwork {
                network: net("fd00::/64")
            })
        );
        assert!(
            with_nets(vec![], vec![net("fd00::/64")], true).is_ok(),
            "CAs skip the family rule"
        );
        assert_eq!(
            with_nets(vec![], vec![], false).err(),
            Some(CertError::NoNetworks)
        );
        // isCA: any non-zero byte is true; two bytes is an error.
        let mut d = base.clone();
        d.is_ca = true;
        let mut b = build(&d, None, Some(&pk), &[1; 64], &[]);
        let pos = b
            .windows(3)
            .position(|w| w == [0x84, 0x01, 0xff])
            .expect("isCA");
        b[pos + 2] = 0x01;
        assert!(parse(&b).expect("isCA 1").is_ca());
        // Too large.
        let big = vec![0u8; v2::MAX_CERTIFICATE_SIZE + 1];
        assert_eq!(parse(&big).err(), Some(CertError::TooLarge { len: 65_537 }));
        // Missing signature element.
        let mut body = v2::encode_details(&base);
        der::push_tlv(&mut body, 0x82, &pk);
        let mut nosig = Vec::new();
        der::push_tlv(&mut nosig, 0x30, &body);
        assert!(matches!(
            parse(&nosig),
            Err(CertError::Truncated | CertError::InvalidDer { .. })
        ));
        let _ = k;
    }

    /// Every prefix, every single-byte corruption and assorted garbage: errors, never panics.
    #[test]
    fn garbage_never_panics() {
        for version in [Version::V1, Version::V2] {
            let (_, _, host) = fixed_pair(version);
            for bytes in [host.marshal(), host.marshal_for_handshake()] {
                for n in 0..bytes.len() {
                    let _ = Certificate::from_bytes(version, &bytes[..n]);
                    let _ = Certificate::recombine_from_handshake(
                        version,
                        &bytes[..n],
                        &[1; 32],
                        Curve::Curve25519,
                    );
                }
                for i in 0..bytes.len() {
                    for flip in [0x01u8, 0x80, 0xff] {
                        let mut b = bytes.clone();
                        b[i] ^= flip;
                        if let Ok(c) = Certificate::from_bytes(version, &b) {
                            let _ = c.to_json();
                            let _ = c.to_string();
                            let _ = c.alternate_fingerprint();
                        }
                        let _ = Certificate::recombine_from_handshake(
                            version,
                            &b,
                            &[1; 32],
                            Curve::Curve25519,
                        );
                    }
                }
            }
        }
        let mut x: u32 = 0x1234_5678;
        for len in 0..300usize {
            let g: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            for version in [Version::V1, Version::V2] {
                let _ = Certificate::from_bytes(version, &g);
            }
            let mut seq = vec![0x30, 0x82, (len >> 8) as u8, len as u8];
            seq.extend_from_slice(&g);
            let _ = Certificate::from_bytes(Version::V2, &seq);
        }
    }
}
