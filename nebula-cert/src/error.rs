//! `CertError`: every way parsing, signing or verifying a certificate (or building a CA pool) can fail.
//! One variant per cause, each worded at least as clearly as Go's `cert/errors.go` @ v1.11.1.

use crate::Curve;
use ipnet::IpNet;

/// Errors of the certificate layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    // ----- verification against a CA pool -----
    /// The current time is after the certificate's notAfter.
    #[error("certificate is expired (not after {not_after})")]
    Expired {
        /// The certificate's notAfter, Unix seconds.
        not_after: i64,
    },
    /// The current time is before the certificate's notBefore (clock skew, or a cert issued for later).
    #[error("certificate is not valid yet (not before {not_before})")]
    NotYetValid {
        /// The certificate's notBefore, Unix seconds.
        not_before: i64,
    },
    /// The signing CA's notAfter has passed (Go: "root certificate is expired").
    #[error("root certificate is expired")]
    CaExpired,
    /// The signing CA's notBefore is still in the future.
    #[error("root certificate is not valid yet")]
    CaNotYetValid,
    /// The certificate names an issuer that is not in the CA pool: it was signed by a CA we do not trust.
    #[error("could not find ca for the certificate (issuer {issuer})")]
    UnknownIssuer {
        /// Hex of the issuer field.
        issuer: String,
    },
    /// The certificate has no issuer field (a CA certificate, or a malformed host certificate).
    #[error("no issuer in certificate")]
    NoIssuer,
    /// The signature does not verify with the CA's public key: tampered or signed by another key.
    #[error("certificate signature did not match")]
    SignatureMismatch,
    /// The certificate's fingerprint (or its alternate P256 form) is in the blocklist.
    #[error("certificate is in the block list")]
    Blocklisted,
    /// A network of the certificate is not inside any network the CA allows.
    #[error("certificate contained a network assignment outside the limitations of the signing ca: {network}")]
    NetworkNotAllowedByCa {
        /// The offending network (host address and prefix).
        network: IpNet,
    },
    /// An unsafe network of the certificate is not inside any unsafe network the CA allows.
    #[error("certificate contained an unsafe network assignment outside the limitations of the signing ca: {network}")]
    UnsafeNetworkNotAllowedByCa {
        /// The offending unsafe network.
        network: IpNet,
    },
    /// The certificate carries a group the CA does not list.
    #[error("certificate contained a group not present on the signing ca: {group}")]
    GroupNotAllowedByCa {
        /// The offending group.
        group: String,
    },
    /// The certificate's notBefore is earlier than the CA's notBefore.
    #[error("certificate is valid before the signing certificate")]
    NotBeforeBeforeCa,
    /// The certificate's notAfter is later than the CA's notAfter.
    #[error("certificate expires after signing certificate")]
    NotAfterAfterCa,
    /// Two things that must share a curve do not (cert vs CA, cert vs key, cert vs our own curve).
    #[error("certificate curve {found} does not match expected {expected}")]
    CurveMismatch {
        /// The curve that was required.
        expected: &'static str,
        /// The curve that was found.
        found: &'static str,
    },
    /// A CA certificate was required (pool entry, signer) but this certificate is not a CA.
    #[error("{name}: certificate is not a CA")]
    NotACa {
        /// The certificate's name.
        name: String,
    },
    /// A CA pool entry's signature does not verify with its own key.
    #[error("{name}: certificate is not self-signed")]
    NotSelfSigned {
        /// The certificate's name.
        name: String,
    },
    /// The private key given does not belong to the certificate's public key.
    #[error("public key in cert and private key supplied don't match")]
    PublicKeyMismatch,
    /// The private key bytes are not a valid key for the curve.
    #[error("invalid private key: {reason}")]
    InvalidPrivateKey {
        /// What is wrong with it.
        reason: &'static str,
    },

    // ----- signing / certificate properties -----
    /// A CA certificate cannot be signed by another CA (Nebula has no intermediates).
    #[error("can not sign a CA certificate with another")]
    CaSignedByCa,
    /// Only CA certificates can be self-signed.
    #[error("self signed certificates must have IsCA set to true")]
    SelfSignedNotCa,
    /// The certificate has no public key.
    #[error("invalid public key: certificate has no public key")]
    EmptyPublicKey,
    /// The public key has the wrong length for the curve.
    #[error("invalid public key: {len} bytes is not a valid {curve} key")]
    InvalidPublicKey {
        /// Curve name.
        curve: &'static str,
        /// Length found.
        len: usize,
    },
    /// A host certificate without any network.
    #[error("non-CA certificate must contain at least 1 network")]
    NoNetworks,
    /// v1 host certificates carry exactly one network (signing only; parsing is lenient like Go).
    #[error("v1 certificates can only have a single ipv4 address, found {count} networks")]
    TooManyNetworksV1 {
        /// How many were given.
        count: usize,
    },
    /// v1 certificates are IPv4-only.
    #[error("v1 certificates may not contain IPv6 {kind}: {network}")]
    Ipv6InV1 {
        /// "networks" or "unsafe networks".
        kind: &'static str,
        /// The offending network.
        network: IpNet,
    },
    /// The zero address (0.0.0.0 or ::) cannot be a network.
    #[error("certificates must not use the zero address as a network: {network}")]
    ZeroAddressNetwork {
        /// The offending network.
        network: IpNet,
    },
    /// IPv4-mapped IPv6 addresses are not allowed as networks in v2.
    #[error("4in6 networks are not allowed: {network}")]
    FourInSixNetwork {
        /// The offending network.
        network: IpNet,
    },
    /// The same network (address and prefix) appears twice.
    #[error("duplicate network detected: {network}")]
    DuplicateNetwork {
        /// The duplicated network.
        network: IpNet,
    },
    /// A host's unsafe network of one address family without any network of that family.
    #[error("{network}: unsafe networks of an address family require a network assignment of the same family")]
    UnsafeNetworkFamilyWithoutNetwork {
        /// The offending unsafe network.
        network: IpNet,
    },
    /// A v2 name must be 1..=253 bytes.
    #[error("invalid name: v2 certificate names must be 1 to 253 bytes, got {len}")]
    InvalidName {
        /// Length in bytes.
        len: usize,
    },
    /// A v2 group must not be empty.
    #[error("invalid group: v2 certificate groups must not be empty")]
    EmptyGroup,
    /// The signature is empty.
    #[error("empty signature")]
    EmptySignature,
    /// The signing key is not the key of the signing certificate.
    #[error("refusing to sign, root certificate does not match private key")]
    SigningKeyMismatch,

    // ----- parsing -----
    /// No bytes at all.
    #[error("certificate bytes are empty")]
    Empty,
    /// Input ends inside an element.
    #[error("certificate is truncated")]
    Truncated,
    /// v1 protobuf could not be decoded.
    #[error("invalid v1 certificate protobuf: {reason}")]
    InvalidProtobuf {
        /// Decoder message.
        reason: String,
    },
    /// v1 certificate without its details message.
    #[error("encoded Details was nil")]
    MissingDetails,
    /// v1 `Ips` or `Subnets` holds an odd number of words (each network is address + mask).
    #[error("encoded {field} should be in pairs, an odd number was found")]
    OddIpWords {
        /// "IPs" or "Subnets".
        field: &'static str,
    },
    /// v2 DER is malformed (Go: "bad wire format").
    #[error("bad wire format: {reason}")]
    InvalidDer {
        /// What was wrong.
        reason: &'static str,
    },
    /// v2 certificates are limited to 65536 bytes.
    #[error("certificate is {len} bytes, more than the 65536 allowed")]
    TooLarge {
        /// Input length.
        len: usize,
    },
    /// The curve value is neither 0 (Curve25519) nor 1 (P256).
    #[error("unknown curve value {value}")]
    UnknownCurve {
        /// The wire value.
        value: i64,
    },
    /// A handshake certificate carried a public key although the key comes from the Noise handshake.
    #[error("certificate has unexpected pubkey present")]
    PublicKeyPresent,
    /// No Noise static key to insert into a handshake certificate.
    #[error("no peer static key was present")]
    NoPeerStaticKey,
    /// The input was not PEM or the PEM block was malformed.
    #[error("input did not contain a valid PEM encoded block{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    InvalidPem {
        /// Extra detail ("" when none).
        reason: String,
    },
    /// A PEM block had a banner other than `NEBULA CERTIFICATE` / `NEBULA CERTIFICATE V2`.
    #[error("bytes did not contain a proper certificate banner (found \"{found}\")")]
    WrongPemBanner {
        /// The banner found.
        found: String,
    },
}

impl CertError {
    pub(crate) fn curve_mismatch(expected: Curve, found: Curve) -> CertError {
        CertError::CurveMismatch {
            expected: expected.name(),
            found: found.name(),
        }
    }
}
