//! CA signing keys and signature checks for both curves (Ed25519; ECDSA P-256 with SHA-256, low-S).
//! Certificates of every version are signed and verified through this one seam.

use crate::der;
use crate::error::CertError;
use crate::Curve;
use ed25519_dalek::Signer as _;
use p256::ecdsa::signature::hazmat::{PrehashSigner as _, PrehashVerifier as _};
use sha2::{Digest as _, Sha256};

/// A CA's private signing key.
#[derive(Clone)]
pub enum CaSigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// Both key types wipe themselves on drop (ed25519-dalek with its `zeroize` feature, and
/// `p256::ecdsa::SigningKey` always); see the test below.
impl zeroize::ZeroizeOnDrop for CaSigningKey {}

impl std::fmt::Debug for CaSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "CaSigningKey::{}(<secret>)", self.curve().name())
    }
}

impl CaSigningKey {
    /// A fresh random key for `curve` (OS randomness).
    pub fn generate(curve: Curve) -> CaSigningKey {
        let mut rng = rand_core::OsRng;
        match curve {
            Curve::Curve25519 => {
                CaSigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng))
            }
            Curve::P256 => CaSigningKey::P256(p256::ecdsa::SigningKey::random(&mut rng)),
        }
    }

    /// Build from the raw bytes Go stores in a CA key file: Ed25519 = 64 bytes (seed ‖ public key;
    /// a 32-byte seed alone is also accepted), P256 = the 32-byte big-endian scalar.
    /// A 64-byte Ed25519 key whose public half does not belong to its seed is refused.
    pub fn from_raw(curve: Curve, bytes: &[u8]) -> Result<CaSigningKey, CertError> {
        match curve {
            Curve::Curve25519 => {
                if bytes.len() == 64 {
                    let mut kp = [0u8; 64];
                    kp.copy_from_slice(bytes);
                    ed25519_dalek::SigningKey::from_keypair_bytes(&kp)
                        .map(CaSigningKey::Ed25519)
                        .map_err(|_| CertError::InvalidPrivateKey {
                            reason: "ed25519 public half does not match its seed",
                        })
                } else if bytes.len() == 32 {
                    let mut seed = [0u8; 32];
                    seed.copy_from_slice(bytes);
                    Ok(CaSigningKey::Ed25519(
                        ed25519_dalek::SigningKey::from_bytes(&seed),
                    ))
                } else {
                    Err(CertError::InvalidPrivateKey {
                        reason: "key was not 64 bytes, is invalid ed25519 private key",
                    })
                }
            }
            Curve::P256 => {
                if bytes.len() != 32 {
                    return Err(CertError::InvalidPrivateKey {
                        reason: "key was not 32 bytes, is invalid ECDSA P256 private key",
                    });
                }
                p256::ecdsa::SigningKey::from_slice(bytes)
                    .map(CaSigningKey::P256)
                    .map_err(|_| CertError::InvalidPrivateKey {
                        reason: "not a valid P256 scalar",
                    })
            }
        }
    }

    /// The raw private key bytes in Go's file layout: Ed25519 64 bytes (seed ‖ public), P256 32 bytes.
    /// Wiped when dropped.
    pub fn to_raw(&self) -> zeroize::Zeroizing<Vec<u8>> {
        use zeroize::Zeroizing;
        match self {
            CaSigningKey::Ed25519(k) => {
                Zeroizing::new(Zeroizing::new(k.to_keypair_bytes()).to_vec())
            }
            CaSigningKey::P256(k) => Zeroizing::new(Zeroizing::new(k.to_bytes()).to_vec()),
        }
    }

    /// The curve this key signs for.
    pub fn curve(&self) -> Curve {
        match self {
            CaSigningKey::Ed25519(_) => Curve::Curve25519,
            CaSigningKey::P256(_) => Curve::P256,
        }
    }

    /// The public key as certificates carry it: Ed25519 32 bytes, P256 65 bytes uncompressed SEC1.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match self {
            CaSigningKey::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            CaSigningKey::P256(k) => k
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
        }
    }

    /// Sign `msg`: Ed25519 (64 bytes) or ECDSA P-256 over SHA-256(msg), ASN.1 DER, normalised to low-S
    /// (as Go does since 1.10.3).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            CaSigningKey::Ed25519(k) => k.sign(msg).to_bytes().to_vec(),
            CaSigningKey::P256(k) => {
                let digest = Sha256::digest(msg);
                // RFC 6979 deterministic signing over a 32-byte prehash cannot fail.
                let sig: p256::ecdsa::Signature = match k.sign_prehash(&digest) {
                    Ok(s) => s,
                    Err(_) => unreachable_sign_failure(),
                };
                let sig = sig.normalize_s().unwrap_or(sig);
                sig.to_der().as_bytes().to_vec()
            }
        }
    }
}

#[cold]
fn unreachable_sign_failure() -> ! {
    // p256 only fails for a digest shorter than half the field size; ours is always 32 bytes.
    panic!("P256 prehash signing failed on a 32-byte digest")
}

/// Check `sig` over `msg` with `public_key` the way Go 1.11 does: Ed25519 (32-byte key, 64-byte
/// signature, canonical S) or ECDSA P-256/SHA-256 with a 65-byte uncompressed key and a strict DER
/// signature. High-S P256 signatures are accepted (Go does not enforce low-S on verify).
pub fn verify_signature(curve: Curve, public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    match curve {
        Curve::Curve25519 => {
            let (Ok(pk), Ok(sig)) = (<[u8; 32]>::try_from(public_key), <[u8; 64]>::try_from(sig))
            else {
                return false;
            };
            let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else {
                return false;
            };
            use ed25519_dalek::Verifier as _;
            vk.verify(msg, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok()
        }
        Curve::P256 => {
            if public_key.len() != 65 || public_key.first() != Some(&0x04) {
                return false;
            }
            let Ok(vk) = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key) else {
                return false;
            };
            let Some((r, s)) = parse_ecdsa_der(sig) else {
                return false;
            };
            let (Some(r), Some(s)) = (pad32(r), pad32(s)) else {
                return false;
            };
            let Ok(sig) = p256::ecdsa::Signature::from_scalars(r, s) else {
                return false;
            };
            let digest = Sha256::digest(msg);
            vk.verify_prehash(&digest, &sig).is_ok()
        }
    }
}

/// Left-pad a big-endian unsigned integer (without leading zeros) to 32 bytes.
fn pad32(v: &[u8]) -> Option<[u8; 32]> {
    if v.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - v.len()..].copy_from_slice(v);
    Some(out)
}

/// Parse `SEQUENCE { INTEGER r, INTEGER s }` strictly (minimal, positive integers, nothing trailing),
/// returning r and s without leading zero bytes, like Go's `crypto/ecdsa` parser.
pub(crate) fn parse_ecdsa_der(sig: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut outer = der::Reader::new(sig);
    let inner = outer.read_expect(der::TAG_SEQUENCE).ok()?;
    if !outer.is_empty() {
        return None;
    }
    let mut inner = der::Reader::new(inner);
    let r = read_positive_integer(&mut inner)?;
    let s = read_positive_integer(&mut inner)?;
    if !inner.is_empty() {
        return None;
    }
    Some((r, s))
}

fn read_positive_integer<'a>(r: &mut der::Reader<'a>) -> Option<&'a [u8]> {
    let v = r.read_expect(der::TAG_INTEGER).ok()?;
    if !der::is_minimal_integer(v) || v.first()? & 0x80 != 0 {
        return None;
    }
    let mut v = v;
    while v.len() > 1 && v.first() == Some(&0) {
        v = v.get(1..)?;
    }
    Some(v)
}

/// Encode a positive big-endian integer as a DER INTEGER (leading zeros stripped, 0x00 added when the
/// top bit is set).
fn push_positive_integer(out: &mut Vec<u8>, v: &[u8]) {
    let mut v = v;
    while v.len() > 1 && v.first() == Some(&0) {
        v = &v[1..];
    }
    let mut content = Vec::with_capacity(v.len() + 1);
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(v);
    der::push_tlv(out, der::TAG_INTEGER, &content);
}

/// The P-256 group order n, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Turn a P256 DER signature into its other form (s ↔ n − s). Used for the alternate fingerprint that
/// 1.10.3+ also checks against the blocklist. `None` when the signature does not parse or s ∉ [1, n).
pub fn p256_swap_signature(sig: &[u8]) -> Option<Vec<u8>> {
    let (r, s) = parse_ecdsa_der(sig)?;
    let s = pad32(s)?;
    if s == [0u8; 32] || s >= P256_N {
        return None;
    }
    // n - s, big-endian subtraction.
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        if d < 0 {
            d += 256;
            borrow = 1;
        } else {
            borrow = 0;
        }
        out[i] = d as u8;
    }
    let mut content = Vec::with_capacity(72);
    push_positive_integer(&mut content, r);
    push_positive_integer(&mut content, &out);
    let mut der_sig = Vec::with_capacity(content.len() + 2);
    der::push_tlv(&mut der_sig, der::TAG_SEQUENCE, &content);
    Some(der_sig)
}

/// Whether a P256 DER signature is in low-S form (s ≤ n/2, the midpoint included as Go does).
pub fn p256_is_low_s(sig: &[u8]) -> Option<bool> {
    let (_, s) = parse_ecdsa_der(sig)?;
    let s = pad32(s)?;
    // half_n = n >> 1
    let mut half = [0u8; 32];
    let mut carry = 0u8;
    for i in 0..32 {
        half[i] = (P256_N[i] >> 1) | (carry << 7);
        carry = P256_N[i] & 1;
    }
    Some(s <= half)
}

#[cfg(test)]
mod tests {
    /// Fails to compile if a CA key type stops wiping itself on drop (ed25519-dalek without its
    /// `zeroize` feature, for one).
    #[test]
    fn ca_signing_keys_wipe_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<ed25519_dalek::SigningKey>();
        wiped_on_drop::<p256::ecdsa::SigningKey>();
        wiped_on_drop::<super::CaSigningKey>();
        wiped_on_drop::<zeroize::Zeroizing<Vec<u8>>>();
        let raw: zeroize::Zeroizing<Vec<u8>> =
            super::CaSigningKey::generate(crate::Curve::P256).to_raw();
        assert_eq!(raw.len(), 32);
    }

    use super::*;

    #[test]
    fn ed25519_sign_verify_round_trip() {
        let k = CaSigningKey::generate(Curve::Curve25519);
        let pk = k.public_key_bytes();
        assert_eq!(pk.len(), 32);
        let sig = k.sign(b"hello");
        assert_eq!(sig.len(), 64);
        assert!(verify_signature(Curve::Curve25519, &pk, b"hello", &sig));
        assert!(!verify_signature(Curve::Curve25519, &pk, b"hellO", &sig));
        assert!(!verify_signature(Curve::P256, &pk, b"hello", &sig));
        assert!(!verify_signature(
            Curve::Curve25519,
            &pk[..31],
            b"hello",
            &sig
        ));
        assert!(!verify_signature(
            Curve::Curve25519,
            &pk,
            b"hello",
            &sig[..63]
        ));
    }

    #[test]
    fn ed25519_raw_round_trip_and_mismatch() {
        let k = CaSigningKey::generate(Curve::Curve25519);
        let raw = k.to_raw();
        assert_eq!(raw.len(), 64);
        let k2 = CaSigningKey::from_raw(Curve::Curve25519, &raw).expect("raw key");
        assert_eq!(k.public_key_bytes(), k2.public_key_bytes());
        let mut bad = raw.clone();
        bad[40] ^= 1;
        assert!(CaSigningKey::from_raw(Curve::Curve25519, &bad).is_err());
        assert!(CaSigningKey::from_raw(Curve::Curve25519, &raw[..10]).is_err());
    }

    #[test]
    fn p256_sign_is_low_s_and_verifies() {
        let k = CaSigningKey::generate(Curve::P256);
        let pk = k.public_key_bytes();
        assert_eq!(pk.len(), 65);
        assert_eq!(pk[0], 4);
        for i in 0..20u8 {
            let msg = [i; 10];
            let sig = k.sign(&msg);
            assert_eq!(p256_is_low_s(&sig), Some(true));
            assert!(verify_signature(Curve::P256, &pk, &msg, &sig));
            // The high-S twin verifies as well (Go accepts both forms on verify).
            let high = p256_swap_signature(&sig).expect("swap");
            assert_ne!(high, sig);
            assert_eq!(p256_is_low_s(&high), Some(false));
            assert!(verify_signature(Curve::P256, &pk, &msg, &high));
            // Swapping twice gives the original back.
            assert_eq!(p256_swap_signature(&high).expect("swap back"), sig);
            assert!(!verify_signature(Curve::P256, &pk, b"other", &sig));
        }
        let raw = k.to_raw();
        let k2 = CaSigningKey::from_raw(Curve::P256, &raw).expect("raw");
        assert_eq!(k2.public_key_bytes(), pk);
    }

    #[test]
    fn p256_rejects_non_strict_der() {
        let k = CaSigningKey::generate(Curve::P256);
        let pk = k.public_key_bytes();
        let sig = k.sign(b"m");
        // Trailing byte after the SEQUENCE.
        let mut t = sig.clone();
        t.push(0);
        assert!(!verify_signature(Curve::P256, &pk, b"m", &t));
        // Non-minimal length form for the SEQUENCE.
        let mut nm = vec![0x30, 0x81, sig[1]];
        nm.extend_from_slice(&sig[2..]);
        assert!(!verify_signature(Curve::P256, &pk, b"m", &nm));
        // Compressed key is refused (Go wants 65-byte uncompressed).
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).expect("vk");
        let compressed = vk.to_encoded_point(true).as_bytes().to_vec();
        assert!(!verify_signature(Curve::P256, &compressed, b"m", &sig));
        // Garbage never panics.
        for n in 0..80 {
            let g: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            assert!(!verify_signature(Curve::P256, &pk, b"m", &g));
            let _ = p256_swap_signature(&g);
        }
    }

    #[test]
    fn swap_handles_leading_zero_s() {
        // s = n - 1 swaps to 1; 1 swaps back to n - 1.
        let mut content = Vec::new();
        push_positive_integer(&mut content, &[0x42]);
        let mut n1 = P256_N;
        n1[31] -= 1;
        push_positive_integer(&mut content, &n1);
        let mut sig = Vec::new();
        der::push_tlv(&mut sig, der::TAG_SEQUENCE, &content);
        let swapped = p256_swap_signature(&sig).expect("swap");
        assert_eq!(
            swapped,
            vec![0x30, 0x06, 0x02, 0x01, 0x42, 0x02, 0x01, 0x01]
        );
        assert_eq!(p256_swap_signature(&swapped).expect("back"), sig);
    }
}
