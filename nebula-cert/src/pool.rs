//! `CaPool`: the trusted CA certificates (v1 and v2 mixed) and the fingerprint blocklist.
//! Verifies host certificates in Go 1.11's order (`cert/ca_pool.go` @ v1.11.1).

use crate::cert::{check_ca_constraints, Certificate};
use crate::error::CertError;
use std::collections::{HashMap, HashSet};

/// Trusted CAs keyed by fingerprint, plus blocklisted certificate fingerprints.
#[derive(Debug, Clone, Default)]
pub struct CaPool {
    /// CAs in insertion order.
    cas: Vec<Certificate>,
    /// Hex fingerprint → index into `cas`.
    by_fingerprint: HashMap<String, usize>,
    /// Lowercase hex fingerprints.
    blocklist: HashSet<String>,
}

fn is_go_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Split a bundle into PEM chunks like Go's `SplitPEM` (text before a BEGIN line is skipped; a BEGIN
/// without END, or trailing non-space text without any block, is an error).
fn split_pem(data: &[u8]) -> Result<Vec<&[u8]>, CertError> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let Some(start) = find(rest, b"-----BEGIN ") else {
            if rest.iter().all(|b| is_go_space(*b)) {
                return Ok(out);
            }
            return Err(CertError::InvalidPem {
                reason: "truncated PEM block".into(),
            });
        };
        let from_start = rest.get(start..).unwrap_or_default();
        let Some(end_marker) = find(from_start, b"-----END ") else {
            return Err(CertError::InvalidPem {
                reason: "truncated PEM block".into(),
            });
        };
        let after_marker = from_start.get(end_marker..).unwrap_or_default();
        let end = match after_marker.iter().position(|b| *b == b'\n') {
            Some(nl) => end_marker + nl + 1,
            None => from_start.len(),
        };
        out.push(from_start.get(..end).unwrap_or_default());
        rest = from_start.get(end..).unwrap_or_default();
    }
}

impl CaPool {
    /// An empty pool.
    pub fn new() -> CaPool {
        CaPool::default()
    }

    /// Build a pool from a PEM bundle using the system clock for the expiry warnings.
    /// See [`CaPool::from_pem_at`].
    pub fn from_pem(bundle: &[u8]) -> Result<(CaPool, Vec<String>), CertError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self::from_pem_at(bundle, now)
    }

    /// Build a pool from a PEM bundle (v1 and v2 CAs may be mixed). Every block must be a
    /// self-signed CA certificate; an expired (or not yet valid) CA is still added but reported in
    /// the returned warnings, as Go does. An empty bundle gives an empty pool.
    pub fn from_pem_at(bundle: &[u8], now_unix: i64) -> Result<(CaPool, Vec<String>), CertError> {
        let mut pool = CaPool::new();
        let mut warnings = Vec::new();
        for chunk in split_pem(bundle)? {
            let (block, rest) = crate::cert::first_pem_block(chunk)?;
            if !rest.iter().all(|b| is_go_space(*b)) {
                return Err(CertError::InvalidPem {
                    reason: "unexpected data after PEM block".into(),
                });
            }
            let version = crate::cert::version_of_banner(&block.label)?;
            let cert = Certificate::from_bytes(version, &block.data)?;
            pool.add_ca(cert.clone())?;
            if now_unix > cert.not_after() {
                warnings.push(format!(
                    "CA certificate {} ({}) is expired",
                    cert.name(),
                    cert.fingerprint_hex()
                ));
            } else if now_unix < cert.not_before() {
                warnings.push(format!(
                    "CA certificate {} ({}) is not valid yet",
                    cert.name(),
                    cert.fingerprint_hex()
                ));
            }
        }
        Ok((pool, warnings))
    }

    /// Add a CA: it must be a CA and self-signed (its signature verifies with its own key).
    /// Expiry is not checked here (Go adds expired CAs too). Re-adding the same CA replaces it.
    pub fn add_ca(&mut self, cert: Certificate) -> Result<(), CertError> {
        if !cert.is_ca() {
            return Err(CertError::NotACa {
                name: cert.name().to_string(),
            });
        }
        if !cert.check_signature(cert.public_key()) {
            return Err(CertError::NotSelfSigned {
                name: cert.name().to_string(),
            });
        }
        let fp = cert.fingerprint_hex();
        match self.by_fingerprint.get(&fp) {
            Some(&i) => {
                if let Some(slot) = self.cas.get_mut(i) {
                    *slot = cert;
                }
            }
            None => {
                self.by_fingerprint.insert(fp, self.cas.len());
                self.cas.push(cert);
            }
        }
        Ok(())
    }

    /// Block a certificate by its hex fingerprint (case and surrounding space are ignored).
    pub fn blocklist_fingerprint(&mut self, fingerprint_hex: &str) {
        self.blocklist
            .insert(fingerprint_hex.trim().to_ascii_lowercase());
    }

    /// Forget every blocklisted fingerprint.
    pub fn reset_blocklist(&mut self) {
        self.blocklist.clear();
    }

    /// Whether this hex fingerprint is blocklisted.
    pub fn is_fingerprint_blocklisted(&self, fingerprint_hex: &str) -> bool {
        self.blocklist
            .contains(&fingerprint_hex.trim().to_ascii_lowercase())
    }

    /// Whether the certificate is blocklisted by its fingerprint or, for P256, by the fingerprint of
    /// its other (high-S/low-S) signature form.
    pub fn is_blocklisted(&self, cert: &Certificate) -> bool {
        if self.blocklist.is_empty() {
            return false;
        }
        if self.blocklist.contains(&cert.fingerprint_hex()) {
            return true;
        }
        cert.alternate_fingerprint()
            .is_some_and(|fp| self.blocklist.contains(&hex::encode(fp)))
    }

    /// The CA named by the certificate's issuer. No signature check.
    pub fn get_ca_for_cert(&self, cert: &Certificate) -> Result<&Certificate, CertError> {
        let issuer = cert.issuer_hex();
        if issuer.is_empty() {
            return Err(CertError::NoIssuer);
        }
        self.by_fingerprint
            .get(&issuer)
            .and_then(|&i| self.cas.get(i))
            .ok_or(CertError::UnknownIssuer { issuer })
    }

    /// Verify a certificate at `now_unix`, in Go 1.11's order: blocklist, issuer lookup, curve, CA
    /// validity, certificate validity, signature, CA constraints, then the alternate P256 fingerprint
    /// against the blocklist.
    pub fn verify(&self, now_unix: i64, cert: &Certificate) -> Result<(), CertError> {
        self.verify_inner(now_unix, cert, true)
    }

    /// [`CaPool::verify`] for a certificate whose signature this same pool already checked (a
    /// peer's certificate, re-checked periodically): validity times, CA constraints and the
    /// blocklist, without the signature check.
    pub fn reverify(&self, now_unix: i64, cert: &Certificate) -> Result<(), CertError> {
        self.verify_inner(now_unix, cert, false)
    }

    fn verify_inner(
        &self,
        now_unix: i64,
        cert: &Certificate,
        check_signature: bool,
    ) -> Result<(), CertError> {
        if self.blocklist.contains(&cert.fingerprint_hex()) {
            return Err(CertError::Blocklisted);
        }
        let ca = self.get_ca_for_cert(cert)?;
        if ca.curve() != cert.curve() {
            return Err(CertError::curve_mismatch(ca.curve(), cert.curve()));
        }
        if now_unix > ca.not_after() {
            return Err(CertError::CaExpired);
        }
        if now_unix < ca.not_before() {
            return Err(CertError::CaNotYetValid);
        }
        if now_unix > cert.not_after() {
            return Err(CertError::Expired {
                not_after: cert.not_after(),
            });
        }
        if now_unix < cert.not_before() {
            return Err(CertError::NotYetValid {
                not_before: cert.not_before(),
            });
        }
        if check_signature && !cert.check_signature(ca.public_key()) {
            return Err(CertError::SignatureMismatch);
        }
        check_ca_constraints(ca, cert)?;
        if self.blocklist.is_empty() {
            return Ok(());
        }
        if let Some(alt) = cert.alternate_fingerprint() {
            if self.blocklist.contains(&hex::encode(alt)) {
                return Err(CertError::Blocklisted);
            }
        }
        Ok(())
    }

    /// The trusted CAs, in the order they were added.
    pub fn cas(&self) -> impl Iterator<Item = &Certificate> {
        self.cas.iter()
    }

    /// Hex fingerprints of the trusted CAs, in the order they were added.
    pub fn ca_fingerprints(&self) -> Vec<String> {
        self.cas.iter().map(|c| c.fingerprint_hex()).collect()
    }

    /// Number of CAs.
    pub fn len(&self) -> usize {
        self.cas.len()
    }

    /// Whether the pool has no CA.
    pub fn is_empty(&self) -> bool {
        self.cas.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::tests::{fixed_pair, host_tbs, make_ca, net, sign_unchecked, with_signature};
    use crate::cert::TbsCertificate;
    use crate::signing::{p256_is_low_s, p256_swap_signature, CaSigningKey};
    use crate::{Curve, Version};

    fn pool_of(cas: &[&Certificate]) -> CaPool {
        let mut p = CaPool::new();
        for c in cas {
            p.add_ca((*c).clone()).expect("add ca");
        }
        p
    }

    #[test]
    fn valid_certificates_verify_for_every_curve_and_version() {
        for curve in [Curve::Curve25519, Curve::P256] {
            for version in [Version::V1, Version::V2] {
                let (k, ca) = make_ca(
                    curve,
                    version,
                    vec![net("10.1.0.0/16")],
                    vec!["g"],
                    0,
                    10_000,
                );
                let mut t = host_tbs(curve, version, "h");
                t.groups = vec!["g".into()];
                let h = t.sign(Some(&ca), &k).expect("sign");
                let pool = pool_of(&[&ca]);
                assert_eq!(pool.verify(1500, &h), Ok(()), "{curve:?} {version:?}");
                assert_eq!(pool.get_ca_for_cert(&h).expect("ca"), &ca);
            }
        }
    }

    #[test]
    fn wrong_ca_is_unknown_issuer() {
        let (k, ca) = make_ca(Curve::Curve25519, Version::V1, vec![], vec![], 0, 10_000);
        let (_, other) = make_ca(Curve::Curve25519, Version::V1, vec![], vec![], 0, 10_000);
        let h = host_tbs(Curve::Curve25519, Version::V1, "h")
            .sign(Some(&ca), &k)
            .expect("sign");
        let pool = pool_of(&[&other]);
        assert_eq!(
            pool.verify(1500, &h),
            Err(CertError::UnknownIssuer {
                issuer: ca.fingerprint_hex()
            })
        );
        // A CA certificate has no issuer.
        assert_eq!(pool.verify(1500, &other), Err(CertError::NoIssuer));
    }

    #[test]
    fn expiry_of_cert_and_ca() {
        let (k, ca) = make_ca(Curve::Curve25519, Version::V2, vec![], vec![], 500, 3000);
        let h = host_tbs(Curve::Curve25519, Version::V2, "h")
            .sign(Some(&ca), &k)
            .expect("sign");
        let pool = pool_of(&[&ca]);
        assert_eq!(pool.verify(1000, &h), Ok(()));
        assert_eq!(pool.verify(2000, &h), Ok(()));
        assert_eq!(
            pool.verify(999, &h),
            Err(CertError::NotYetValid { not_before: 1000 })
        );
        assert_eq!(
            pool.verify(2001, &h),
            Err(CertError::Expired { not_after: 2000 })
        );
        // The CA is checked first.
        assert_eq!(pool.verify(3001, &h), Err(CertError::CaExpired));
        assert_eq!(pool.verify(499, &h), Err(CertError::CaNotYetValid));
    }

    #[test]
    fn ca_constraints_are_enforced_on_verify() {
        let k = CaSigningKey::generate(Curve::Curve25519);
        let ca = TbsCertificate {
            version: Version::V1,
            name: "ca".into(),
            networks: vec![net("10.1.0.0/16")],
            unsafe_networks: vec![net("192.168.0.0/16")],
            groups: vec!["a".into()],
            is_ca: true,
            not_before: 100,
            not_after: 10_000,
            public_key: k.public_key_bytes(),
            curve: Curve::Curve25519,
        }
        .sign(None, &k)
        .expect("ca");
        let pool = pool_of(&[&ca]);
        let issuer = ca.fingerprint();
        let base = host_tbs(Curve::Curve25519, Version::V1, "h");
        let verify = |f: &dyn Fn(&mut TbsCertificate)| {
            let mut t = base.clone();
            f(&mut t);
            pool.verify(1500, &sign_unchecked(&t, &issuer, &k))
        };
        assert_eq!(verify(&|_| {}), Ok(()));
        assert_eq!(
            verify(&|t| t.networks = vec![net("10.2.0.1/24")]),
            Err(CertError::NetworkNotAllowedByCa {
                network: net("10.2.0.1/24")
            })
        );
        assert_eq!(
            verify(&|t| t.networks = vec![net("10.1.0.1/8")]),
            Err(CertError::NetworkNotAllowedByCa {
                network: net("10.1.0.1/8")
            })
        );
        assert_eq!(
            verify(&|t| t.unsafe_networks = vec![net("172.16.0.0/24")]),
            Err(CertError::UnsafeNetworkNotAllowedByCa {
                network: net("172.16.0.0/24")
            })
        );
        assert_eq!(
            verify(&|t| t.groups = vec!["a".into(), "b".into()]),
            Err(CertError::GroupNotAllowedByCa { group: "b".into() })
        );
        assert_eq!(
            verify(&|t| {
                t.not_before = 50;
                t.not_after = 2000;
            }),
            Err(CertError::NotBeforeBeforeCa)
        );
        assert_eq!(
            verify(&|t| t.not_after = 20_000),
            Err(CertError::NotAfterAfterCa)
        );
    }

    #[test]
    fn tampered_signature_is_a_mismatch() {
        for version in [Version::V1, Version::V2] {
            let (_, ca, host) = fixed_pair(version);
            let pool = pool_of(&[&ca]);
            let now = host.not_before() + 1;
            assert_eq!(pool.verify(now, &host), Ok(()));
            let mut sig = host.signature().to_vec();
            sig[0] ^= 1;
            assert_eq!(
                pool.verify(now, &with_signature(&host, sig)),
                Err(CertError::SignatureMismatch)
            );
            // Same issuer, but signed by a different key.
            let other = CaSigningKey::generate(Curve::Curve25519);
            let mut t = host_tbs(Curve::Curve25519, version, "x");
            t.networks = vec![net("10.42.9.9/16")];
            t.not_before = host.not_before();
            t.not_after = host.not_after();
            let forged = sign_unchecked(&t, &ca.fingerprint(), &other);
            assert_eq!(pool.verify(now, &forged), Err(CertError::SignatureMismatch));
        }
    }

    #[test]
    fn reverify_skips_only_the_signature() {
        let (_, ca, host) = fixed_pair(Version::V1);
        let mut pool = pool_of(&[&ca]);
        let now = host.not_before() + 1;
        let mut sig = host.signature().to_vec();
        sig[0] ^= 1;
        let tampered = with_signature(&host, sig);
        assert_eq!(pool.reverify(now, &host), Ok(()));
        assert_eq!(pool.reverify(now, &tampered), Ok(()));
        assert_eq!(
            pool.verify(now, &tampered),
            Err(CertError::SignatureMismatch)
        );
        // Everything else is still checked.
        assert!(matches!(
            pool.reverify(host.not_after() + 1, &host),
            Err(CertError::Expired { .. })
        ));
        pool.blocklist_fingerprint(&host.fingerprint_hex());
        assert_eq!(pool.reverify(now, &host), Err(CertError::Blocklisted));
    }

    #[test]
    fn curve_mismatch_between_ca_and_cert() {
        let (_, ca) = make_ca(Curve::Curve25519, Version::V2, vec![], vec![], 0, 10_000);
        let pk = CaSigningKey::generate(Curve::P256);
        let c = sign_unchecked(
            &host_tbs(Curve::P256, Version::V2, "p"),
            &ca.fingerprint(),
            &pk,
        );
        assert_eq!(
            pool_of(&[&ca]).verify(1500, &c),
            Err(CertError::CurveMismatch {
                expected: "CURVE25519",
                found: "P256"
            })
        );
    }

    #[test]
    fn blocklist_by_fingerprint() {
        let (_, ca, host) = fixed_pair(Version::V2);
        let mut pool = pool_of(&[&ca]);
        let now = host.not_before() + 1;
        pool.blocklist_fingerprint(&host.fingerprint_hex().to_uppercase());
        assert!(pool.is_blocklisted(&host));
        assert!(pool.is_fingerprint_blocklisted(&host.fingerprint_hex()));
        assert_eq!(pool.verify(now, &host), Err(CertError::Blocklisted));
        pool.reset_blocklist();
        assert!(!pool.is_blocklisted(&host));
        assert_eq!(pool.verify(now, &host), Ok(()));
        // Blocklist wins over every other failure (checked first).
        pool.blocklist_fingerprint(&host.fingerprint_hex());
        assert_eq!(pool.verify(0, &host), Err(CertError::Blocklisted));
    }

    #[test]
    fn p256_high_s_twin_verifies_and_alternate_fingerprint_is_blocklisted() {
        for version in [Version::V1, Version::V2] {
            let (k, ca) = make_ca(Curve::P256, version, vec![], vec![], 0, 10_000);
            let low = host_tbs(Curve::P256, version, "p")
                .sign(Some(&ca), &k)
                .expect("sign");
            assert_eq!(
                p256_is_low_s(low.signature()),
                Some(true),
                "we always sign low-S"
            );
            let high = with_signature(&low, p256_swap_signature(low.signature()).expect("swap"));
            assert_ne!(high.fingerprint(), low.fingerprint());
            assert_eq!(low.alternate_fingerprint(), Some(high.fingerprint()));
            assert_eq!(high.alternate_fingerprint(), Some(low.fingerprint()));

            let mut pool = pool_of(&[&ca]);
            // Go accepts high-S signatures on verify.
            assert_eq!(pool.verify(1500, &high), Ok(()));
            assert_eq!(pool.verify(1500, &low), Ok(()));
            // Blocking one form blocks both.
            pool.blocklist_fingerprint(&low.fingerprint_hex());
            assert_eq!(pool.verify(1500, &high), Err(CertError::Blocklisted));
            assert!(pool.is_blocklisted(&high));
            pool.reset_blocklist();
            pool.blocklist_fingerprint(&high.fingerprint_hex());
            assert_eq!(pool.verify(1500, &low), Err(CertError::Blocklisted));
            assert!(pool.is_blocklisted(&low));
        }
        // Curve25519 certificates have no alternate fingerprint.
        let (_, _, host) = fixed_pair(Version::V1);
        assert_eq!(host.alternate_fingerprint(), None);
    }

    #[test]
    fn mixed_version_pool_from_pem() {
        let (k1, ca1) = make_ca(Curve::Curve25519, Version::V1, vec![], vec![], 0, 10_000);
        let (k2, ca2) = make_ca(Curve::Curve25519, Version::V2, vec![], vec![], 0, 10_000);
        let (kp, cap) = make_ca(Curve::P256, Version::V2, vec![], vec![], 0, 10_000);
        let bundle = format!(
            "# comment\n{}garbage between blocks\n{}\n{}\n\n",
            ca1.marshal_pem(),
            ca2.marshal_pem(),
            cap.marshal_pem()
        );
        let (pool, warnings) = CaPool::from_pem_at(bundle.as_bytes(), 1500).expect("pool");
        assert!(warnings.is_empty());
        assert_eq!(pool.len(), 3);
        assert_eq!(
            pool.ca_fingerprints(),
            vec![
                ca1.fingerprint_hex(),
                ca2.fingerprint_hex(),
                cap.fingerprint_hex()
            ]
        );
        assert_eq!(pool.cas().count(), 3);
        let h1 = host_tbs(Curve::Curve25519, Version::V1, "a")
            .sign(Some(&ca1), &k1)
            .expect("a");
        let h2 = host_tbs(Curve::Curve25519, Version::V2, "b")
            .sign(Some(&ca2), &k2)
            .expect("b");
        let h3 = host_tbs(Curve::Curve25519, Version::V1, "c")
            .sign(Some(&ca2), &k2)
            .expect("c");
        let h4 = host_tbs(Curve::P256, Version::V1, "d")
            .sign(Some(&cap), &kp)
            .expect("d");
        for h in [&h1, &h2, &h3, &h4] {
            assert_eq!(pool.verify(1500, h), Ok(()), "{}", h.name());
        }
    }

    #[test]
    fn from_pem_errors_and_warnings() {
        let (_, expired) = make_ca(Curve::Curve25519, Version::V1, vec![], vec![], 0, 100);
        let (_, future) = make_ca(Curve::Curve25519, Version::V2, vec![], vec![], 5000, 6000);
        let bundle = format!("{}{}", expired.marshal_pem(), future.marshal_pem());
        let (pool, warnings) = CaPool::from_pem_at(bundle.as_bytes(), 1000).expect("pool");
        assert_eq!(pool.len(), 2, "expired CAs are still loaded");
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("is expired"));
        assert!(warnings[1].contains("not valid yet"));

        // Empty bundle: empty pool.
        let (pool, _) = CaPool::from_pem_at(b"\n \n", 0).expect("empty");
        assert!(pool.is_empty());
        // A host certificate in the bundle.
        let (_, ca, host) = fixed_pair(Version::V1);
        let b = format!("{}{}", ca.marshal_pem(), host.marshal_pem());
        assert_eq!(
            CaPool::from_pem_at(b.as_bytes(), 0).err(),
            Some(CertError::NotACa {
                name: "host1".into()
            })
        );
        // A CA whose signature does not verify with its own key.
        let mut sig = ca.signature().to_vec();
        sig[5] ^= 1;
        let bad = with_signature(&ca, sig);
        assert_eq!(
            CaPool::from_pem_at(bad.marshal_pem().as_bytes(), 0).err(),
            Some(CertError::NotSelfSigned {
                name: "Test CA".into()
            })
        );
        let mut p = CaPool::new();
        assert_eq!(
            p.add_ca(bad),
            Err(CertError::NotSelfSigned {
                name: "Test CA".into()
            })
        );
        assert_eq!(
            p.add_ca(host),
            Err(CertError::NotACa {
                name: "host1".into()
            })
        );
        // A key where a certificate should be.
        let key = crate::pem::encode("NEBULA ED25519 PRIVATE KEY", &[0; 64]);
        assert_eq!(
            CaPool::from_pem_at(key.as_bytes(), 0).err(),
            Some(CertError::WrongPemBanner {
                found: "NEBULA ED25519 PRIVATE KEY".into()
            })
        );
        // Trailing text, a truncated block, garbage.
        for bad in [
            format!("{}trailing", ca.marshal_pem()),
            ca.marshal_pem()
                .replace("-----END NEBULA CERTIFICATE-----\n", ""),
            "just text".to_string(),
        ] {
            assert!(
                matches!(
                    CaPool::from_pem_at(bad.as_bytes(), 0),
                    Err(CertError::InvalidPem { .. })
                ),
                "{bad:?}"
            );
        }
        // Adding the same CA twice keeps one entry.
        let mut p = CaPool::new();
        p.add_ca(ca.clone()).expect("add");
        p.add_ca(ca.clone()).expect("add again");
        assert_eq!(p.len(), 1);
    }
}
