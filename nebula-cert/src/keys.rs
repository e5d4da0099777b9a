//! Host key pairs (X25519 / P-256 ECDH) and CA signing keys (Ed25519 / ECDSA P-256): generation,
//! public-from-private, and their PEM forms, byte-compatible with Go's `nebula-cert`.
//!
//! Unmarshalling follows Go (`cert/pem.go @ v1.11.1`): the banner picks the curve and the length is
//! checked; a host key or a CA key under the other kind's banner is refused with a [`KeyError::WrongBanner`]
//! naming both. CA private keys are also turned into a usable [`CaSigningKey`], so they are checked more
//! than Go does: an Ed25519 key's public half must match its seed and a P-256 scalar must be in range.
//! Public keys are only checked for banner and length, like Go.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{OsRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::pem::{
    self, PemError, CERT_V1_BANNER, CERT_V2_BANNER, ECDSA_P256_ENCRYPTED_PRIVATE_KEY_BANNER,
    ECDSA_P256_PRIVATE_KEY_BANNER, ECDSA_P256_PUBLIC_KEY_BANNER,
    ED25519_ENCRYPTED_PRIVATE_KEY_BANNER, ED25519_PRIVATE_KEY_BANNER, ED25519_PUBLIC_KEY_BANNER,
    P256_PRIVATE_KEY_BANNER, P256_PUBLIC_KEY_BANNER, X25519_PRIVATE_KEY_BANNER,
    X25519_PUBLIC_KEY_BANNER,
};
use crate::signing::CaSigningKey;
use crate::Curve;

/// Length of an X25519 private or public key, and of a P-256 private scalar.
pub const KEY_LEN_32: usize = 32;
/// Length of an uncompressed SEC1 P-256 point (`04 || x || y`).
pub const P256_PUBLIC_KEY_LEN: usize = 65;
/// Length of a Go Ed25519 private key (seed || public key).
pub const ED25519_PRIVATE_KEY_LEN: usize = 64;

/// What went wrong reading, writing or decrypting a key.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input holds no PEM block at all (empty, or only comments / other text).
    #[error("input did not contain a valid PEM encoded block")]
    NoPemBlock,
    /// A PEM block starts but is malformed (truncated, bad base64, mismatched END line).
    #[error("invalid PEM: {0}")]
    Pem(#[from] PemError),
    /// The PEM block is some other kind of object, e.g. a CA key given where a host key is wanted,
    /// or a certificate given where a key is wanted.
    #[error("wrong PEM banner: found \"{found}\" ({}), expected {expected}", describe_banner(.found))]
    WrongBanner {
        /// The label that was found.
        found: String,
        /// The banner(s) that would have been accepted.
        expected: &'static str,
    },
    /// The key under a correct banner has the wrong number of bytes (corrupt or hand-edited file).
    #[error("key was not {expected} bytes, is invalid {what} (got {got} bytes)")]
    InvalidLength {
        /// The kind of key, e.g. "X25519 private key".
        what: &'static str,
        /// The length that kind must have.
        expected: usize,
        /// The length found.
        got: usize,
    },
    /// The CA private key is encrypted; decrypt it with
    /// [`crate::encrypted::decrypt_and_unmarshal_ca_private_key`] and a passphrase.
    #[error("private key is encrypted; a passphrase is needed to read it")]
    Encrypted,
    /// The bytes have the right length but are not a valid key (P-256 scalar zero or ≥ the group
    /// order, Ed25519 public half not derived from the seed, ...).
    #[error("invalid {what}: {reason}")]
    InvalidKey {
        /// The kind of key.
        what: &'static str,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// Decryption failed: the passphrase is wrong, or the encrypted key was altered.
    #[error("invalid passphrase or corrupt private key")]
    WrongPassphrase,
    /// The encrypted key's protobuf is malformed or lacks a required part.
    #[error("malformed encrypted private key: {0}")]
    MalformedEncrypted(&'static str),
    /// The encrypted key names a cipher other than AES-256-GCM.
    #[error("unsupported encryption algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The encrypted key's Argon2 version is not 0x13 (the only one Go writes or reads).
    #[error("incompatible Argon2 version: {0}")]
    Argon2Version(i32),
    /// Argon2 parameters are outside what we accept (see [`crate::encrypted`] for the limits).
    #[error("Argon2 parameters rejected: {0}")]
    Argon2Params(String),
    /// The Argon2 key derivation could not run (e.g. the memory could not be allocated).
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Rng(String),
}

/// A short human description of what a PEM label holds, for error messages.
pub fn describe_banner(label: &str) -> &'static str {
    match label {
        CERT_V1_BANNER => "a v1 certificate",
        CERT_V2_BANNER => "a v2 certificate",
        X25519_PRIVATE_KEY_BANNER | P256_PRIVATE_KEY_BANNER => "a host private key",
        X25519_PUBLIC_KEY_BANNER | P256_PUBLIC_KEY_BANNER => "a host public key",
        ED25519_PRIVATE_KEY_BANNER | ECDSA_P256_PRIVATE_KEY_BANNER => "a CA private key",
        ED25519_ENCRYPTED_PRIVATE_KEY_BANNER | ECDSA_P256_ENCRYPTED_PRIVATE_KEY_BANNER => {
            "an encrypted CA private key"
        }
        ED25519_PUBLIC_KEY_BANNER | ECDSA_P256_PUBLIC_KEY_BANNER => "a CA public key",
        _ => "not a Nebula object",
    }
}

const HOST_PRIVATE_EXPECTED: &str = "\"NEBULA X25519 PRIVATE KEY\" or \"NEBULA P256 PRIVATE KEY\"";
const HOST_PUBLIC_EXPECTED: &str = "\"NEBULA X25519 PUBLIC KEY\" or \"NEBULA P256 PUBLIC KEY\"";
const CA_PRIVATE_EXPECTED: &str =
    "\"NEBULA ED25519 PRIVATE KEY\" or \"NEBULA ECDSA P256 PRIVATE KEY\"";
const CA_PUBLIC_EXPECTED: &str =
    "\"NEBULA ED25519 PUBLIC KEY\" or \"NEBULA ECDSA P256 PUBLIC KEY\"";

/// Reads the first PEM block or fails with [`KeyError::NoPemBlock`].
/// The body is wiped when dropped, whatever the block turns out to be (a key file given in the
/// wrong place is still a key).
pub(crate) fn first_block(input: &[u8]) -> Result<(SecretBlock, &[u8]), KeyError> {
    let (block, rest) = pem::decode(input)?.ok_or(KeyError::NoPemBlock)?;
    let block = SecretBlock {
        label: block.label,
        data: Zeroizing::new(block.data),
    };
    Ok((block, rest))
}

/// A PEM block whose body may be a private key.
pub(crate) struct SecretBlock {
    pub(crate) label: String,
    pub(crate) data: Zeroizing<Vec<u8>>,
}

pub(crate) fn check_len(what: &'static str, expected: usize, got: &[u8]) -> Result<(), KeyError> {
    if got.len() == expected {
        Ok(())
    } else {
        Err(KeyError::InvalidLength {
            what,
            expected,
            got: got.len(),
        })
    }
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), KeyError> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|e| KeyError::Rng(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Host (key agreement) keys

/// Generates a host key pair, returning `(private, public)`: X25519 32/32 bytes, or P-256 as a 32-byte
/// scalar and a 65-byte uncompressed point (what Go's `nebula-cert keygen` writes). The private
/// key is wiped when dropped.
pub fn keygen(curve: Curve) -> (Zeroizing<Vec<u8>>, Vec<u8>) {
    match curve {
        Curve::Curve25519 => {
            let secret = x25519_dalek::StaticSecret::random_from_rng(OsRng);
            let public = x25519_dalek::PublicKey::from(&secret);
            (
                Zeroizing::new(secret.as_bytes().to_vec()),
                public.as_bytes().to_vec(),
            )
        }
        Curve::P256 => {
            let secret = p256::SecretKey::random(&mut OsRng);
            let public = secret.public_key().to_encoded_point(false);
            let scalar = Zeroizing::new(secret.to_bytes());
            (Zeroizing::new(scalar.to_vec()), public.as_bytes().to_vec())
        }
    }
}

/// Derives a host public key from its private key (X25519 with Go's clamping; P-256 point
/// multiplication). Fails on a wrong length or an out-of-range P-256 scalar.
pub fn public_from_private(curve: Curve, private: &[u8]) -> Result<Vec<u8>, KeyError> {
    match curve {
        Curve::Curve25519 => {
            let bytes: Zeroizing<[u8; 32]> =
                Zeroizing::new(private.try_into().map_err(|_| KeyError::InvalidLength {
                    what: "X25519 private key",
                    expected: KEY_LEN_32,
                    got: private.len(),
                })?);
            let secret = x25519_dalek::StaticSecret::from(*bytes);
            Ok(x25519_dalek::PublicKey::from(&secret).as_bytes().to_vec())
        }
        Curve::P256 => {
            let secret = p256_secret(private, "P256 private key")?;
            Ok(secret
                .public_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec())
        }
    }
}

/// Parses a 32-byte P-256 scalar, rejecting zero and values ≥ the group order.
fn p256_secret(private: &[u8], what: &'static str) -> Result<p256::SecretKey, KeyError> {
    let bytes: Zeroizing<[u8; 32]> =
        Zeroizing::new(private.try_into().map_err(|_| KeyError::InvalidLength {
            what,
            expected: KEY_LEN_32,
            got: private.len(),
        })?);
    p256::SecretKey::from_bytes(&(*bytes).into()).map_err(|_| KeyError::InvalidKey {
        what,
        reason: "scalar is zero or not below the P-256 group order",
    })
}

/// PEM-encodes a host private key under `NEBULA X25519 PRIVATE KEY` or `NEBULA P256 PRIVATE KEY`.
/// The text is wiped when dropped.
pub fn marshal_private_key(curve: Curve, private: &[u8]) -> Zeroizing<String> {
    let label = match curve {
        Curve::Curve25519 => X25519_PRIVATE_KEY_BANNER,
        Curve::P256 => P256_PRIVATE_KEY_BANNER,
    };
    pem::encode_secret(label, private)
}

/// PEM-encodes a host public key under `NEBULA X25519 PUBLIC KEY` or `NEBULA P256 PUBLIC KEY`.
pub fn marshal_public_key(curve: Curve, public: &[u8]) -> String {
    let label = match curve {
        Curve::Curve25519 => X25519_PUBLIC_KEY_BANNER,
        Curve::P256 => P256_PUBLIC_KEY_BANNER,
    };
    pem::encode(label, public)
}

/// Raw private key bytes, wiped when dropped.
pub type PrivateKeyBytes = Zeroizing<Vec<u8>>;

/// Reads the first PEM block as a host private key: returns the raw key (32 bytes for both curves),
/// its curve, and the bytes after the block. The key is wiped when dropped.
pub fn unmarshal_private_key(input: &[u8]) -> Result<(PrivateKeyBytes, Curve, &[u8]), KeyError> {
    let (block, rest) = first_block(input)?;
    let data = block.data;
    let (curve, what) = match block.label.as_str() {
        X25519_PRIVATE_KEY_BANNER => (Curve::Curve25519, "X25519 private key"),
        P256_PRIVATE_KEY_BANNER => (Curve::P256, "P256 private key"),
        _ => {
            return Err(KeyError::WrongBanner {
                found: block.label,
                expected: HOST_PRIVATE_EXPECTED,
            })
        }
    };
    check_len(what, KEY_LEN_32, &data)?;
    Ok((data, curve, rest))
}

/// Reads the first PEM block as a host public key: returns the raw key (X25519 32 bytes, P-256 65
/// bytes), its curve, and the bytes after the block.
pub fn unmarshal_public_key(input: &[u8]) -> Result<(Vec<u8>, Curve, &[u8]), KeyError> {
    let (block, rest) = first_block(input)?;
    let (curve, what, len) = match block.label.as_str() {
        X25519_PUBLIC_KEY_BANNER => (Curve::Curve25519, "X25519 public key", KEY_LEN_32),
        P256_PUBLIC_KEY_BANNER => (Curve::P256, "P256 public key", P256_PUBLIC_KEY_LEN),
        _ => {
            return Err(KeyError::WrongBanner {
                found: block.label,
                expected: HOST_PUBLIC_EXPECTED,
            })
        }
    };
    check_len(what, len, &block.data)?;
    Ok((block.data.to_vec(), curve, rest))
}

// ---------------------------------------------------------------------------------------------
// CA (signing) keys

/// Generates a CA signing key: Ed25519 for [`Curve::Curve25519`], ECDSA P-256 for [`Curve::P256`].
pub fn generate_ca_key(curve: Curve) -> CaSigningKey {
    match curve {
        Curve::Curve25519 => CaSigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
        Curve::P256 => CaSigningKey::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
    }
}

/// The raw private bytes Go stores for a CA key: Ed25519 64 bytes (seed || public), P-256 32 bytes.
pub(crate) fn ca_private_bytes(key: &CaSigningKey) -> Zeroizing<Vec<u8>> {
    key.to_raw()
}

/// The curve of a CA key.
pub(crate) fn ca_curve(key: &CaSigningKey) -> Curve {
    match key {
        CaSigningKey::Ed25519(_) => Curve::Curve25519,
        CaSigningKey::P256(_) => Curve::P256,
    }
}

/// The public key bytes of a CA key as they appear in its certificate: Ed25519 32 bytes, P-256 65-byte
/// uncompressed point.
pub fn ca_public_key_bytes(key: &CaSigningKey) -> Vec<u8> {
    match key {
        CaSigningKey::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
        CaSigningKey::P256(k) => k
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec(),
    }
}

/// Builds a CA key from the raw private bytes Go stores (see [`marshal_ca_private_key`]).
pub(crate) fn ca_key_from_bytes(curve: Curve, raw: &[u8]) -> Result<CaSigningKey, KeyError> {
    match curve {
        Curve::Curve25519 => {
            let what = "Ed25519 private key";
            let bytes: &[u8; ED25519_PRIVATE_KEY_LEN] =
                raw.try_into().map_err(|_| KeyError::InvalidLength {
                    what,
                    expected: ED25519_PRIVATE_KEY_LEN,
                    got: raw.len(),
                })?;
            let key = ed25519_dalek::SigningKey::from_keypair_bytes(bytes).map_err(|_| {
                KeyError::InvalidKey {
                    what,
                    reason: "the public half does not match the seed",
                }
            })?;
            Ok(CaSigningKey::Ed25519(key))
        }
        Curve::P256 => {
            let secret = p256_secret(raw, "ECDSA P256 private key")?;
            Ok(CaSigningKey::P256(p256::ecdsa::SigningKey::from(secret)))
        }
    }
}

/// PEM-encodes a CA private key in the clear: Ed25519 as 64 bytes (seed || public) under
/// `NEBULA ED25519 PRIVATE KEY`, P-256 as the 32-byte scalar under `NEBULA ECDSA P256 PRIVATE KEY`.
/// The text is wiped when dropped.
pub fn marshal_ca_private_key(key: &CaSigningKey) -> Zeroizing<String> {
    let label = match key {
        CaSigningKey::Ed25519(_) => ED25519_PRIVATE_KEY_BANNER,
        CaSigningKey::P256(_) => ECDSA_P256_PRIVATE_KEY_BANNER,
    };
    pem::encode_secret(label, &ca_private_bytes(key))
}

/// PEM-encodes a CA public key under `NEBULA ED25519 PUBLIC KEY` or `NEBULA ECDSA P256 PUBLIC KEY`
/// (the latter is what Go writes from 1.10.1).
pub fn marshal_ca_public_key(curve: Curve, public: &[u8]) -> String {
    let label = match curve {
        Curve::Curve25519 => ED25519_PUBLIC_KEY_BANNER,
        Curve::P256 => ECDSA_P256_PUBLIC_KEY_BANNER,
    };
    pem::encode(label, public)
}

/// Reads the first PEM block as an unencrypted CA private key; returns it and the bytes after the block.
/// An encrypted key gives [`KeyError::Encrypted`] (ask for the passphrase and use
/// [`crate::encrypted::decrypt_and_unmarshal_ca_private_key`]).
pub fn unmarshal_ca_private_key(input: &[u8]) -> Result<(CaSigningKey, &[u8]), KeyError> {
    let (block, rest) = first_block(input)?;
    let curve = match block.label.as_str() {
        ED25519_PRIVATE_KEY_BANNER => Curve::Curve25519,
        ECDSA_P256_PRIVATE_KEY_BANNER => Curve::P256,
        ED25519_ENCRYPTED_PRIVATE_KEY_BANNER | ECDSA_P256_ENCRYPTED_PRIVATE_KEY_BANNER => {
            return Err(KeyError::Encrypted)
        }
        _ => {
            return Err(KeyError::WrongBanner {
                found: block.label,
                expected: CA_PRIVATE_EXPECTED,
            })
        }
    };
    let data = block.data;
    let key = ca_key_from_bytes(curve, &data)?;
    Ok((key, rest))
}

/// Reads the first PEM block as a CA public key: returns the raw key (Ed25519 32 bytes, P-256 65
/// bytes), its curve, and the bytes after the block. Like Go 1.11, only the signing banners are
/// accepted (a P-256 CA public key written by 1.7–1.10.0 under `NEBULA P256 PUBLIC KEY` is refused).
pub fn unmarshal_ca_public_key(input: &[u8]) -> Result<(Vec<u8>, Curve, &[u8]), KeyError> {
    let (block, rest) = first_block(input)?;
    let (curve, what, len) = match block.label.as_str() {
        ED25519_PUBLIC_KEY_BANNER => (Curve::Curve25519, "Ed25519 public key", KEY_LEN_32),
        ECDSA_P256_PUBLIC_KEY_BANNER => (Curve::P256, "ECDSA P256 public key", P256_PUBLIC_KEY_LEN),
        _ => {
            return Err(KeyError::WrongBanner {
                found: block.label,
                expected: CA_PUBLIC_EXPECTED,
            })
        }
    };
    check_len(what, len, &block.data)?;
    Ok((block.data.to_vec(), curve, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host private keys come out of `keygen` and PEM in buffers that wipe themselves.
    #[test]
    fn private_keys_are_returned_in_wiping_buffers() {
        for curve in [Curve::Curve25519, Curve::P256] {
            let (private, _): (Zeroizing<Vec<u8>>, _) = keygen(curve);
            let pem = marshal_private_key(curve, &private);
            let (back, _, _): (Zeroizing<Vec<u8>>, _, _) =
                unmarshal_private_key(pem.as_bytes()).unwrap();
            assert_eq!(*back, *private);
        }
        let ca = generate_ca_key(Curve::Curve25519);
        let raw: Zeroizing<Vec<u8>> = ca_private_bytes(&ca);
        assert_eq!(raw.len(), 64);
    }

    // Golden keys made by Go:
    //   /usr/bin/nebula-cert keygen -out-key x.key -out-pub x.pub                       (1.6.1)
    //   /opt/go-nebula/1.11.0/usr/bin/nebula-cert keygen -curve P256 -out-key p.key -out-pub p.pub
    //   /usr/bin/nebula-cert ca -name t161 -out-crt ca161.crt -out-key ca161.key          (1.6.1)
    //   /opt/go-nebula/1.11.0/usr/bin/nebula-cert ca -curve P256 -name tp -out-crt cap.crt -out-key cap.key
    // CA public keys below are from `nebula-cert print -json -path <crt>` (1.11.0).
    const GO_X25519_KEY: &str = "-----BEGIN NEBULA X25519 PRIVATE KEY-----
PZ8x6BLPTNbarl7e6Obp1v3iAMeIiTIwgBae9QJRIq4=
-----END NEBULA X25519 PRIVATE KEY-----
";
    const GO_X25519_PUB: &str = "-----BEGIN NEBULA X25519 PUBLIC KEY-----
ugIY08bGgDRQ9OIovgPNxXQ9FdarTT2br4fjOClIJE4=
-----END NEBULA X25519 PUBLIC KEY-----
";
    const GO_P256_KEY: &str = "-----BEGIN NEBULA P256 PRIVATE KEY-----
QBgO45CPtLNpLoSeAHdRL55OmPP/D8nPB9xqDHwErXY=
-----END NEBULA P256 PRIVATE KEY-----
";
    const GO_P256_PUB: &str = "-----BEGIN NEBULA P256 PUBLIC KEY-----
BHhFN8NSAKqvgKlZ1AQQ9VGKkjeoJNGwtv8O+GbVLQ8oM4RPRf3DpacOO6i4UVg9
54nfX3mrDDzF/52eK7EjKmo=
-----END NEBULA P256 PUBLIC KEY-----
";
    const GO_ED25519_CA_KEY: &str = "-----BEGIN NEBULA ED25519 PRIVATE KEY-----
z9jibaRxUcLE8iOEdXYIoz7XQKUBsQMYlKUBIuxzeJAZZWf5i0bOG5SXk5oILKbf
e5Pz5rsFloIeCas82j6I+A==
-----END NEBULA ED25519 PRIVATE KEY-----
";
    const GO_ED25519_CA_PUB_HEX: &str =
        "196567f98b46ce1b9497939a082ca6df7b93f3e6bb0596821e09ab3cda3e88f8";
    const GO_P256_CA_KEY: &str = "-----BEGIN NEBULA ECDSA P256 PRIVATE KEY-----
o2YGK6WfWsqvEbpftEFca+DLu/boeRr3/OcYjgCmc3E=
-----END NEBULA ECDSA P256 PRIVATE KEY-----
";
    const GO_P256_CA_PUB_HEX: &str = "041b736209facd1d9b9b1848a187f58cd17b92a71c3a21bc840f661706e787954cf01eae464911e0eb186aec0a90b2ba55c70ab2a1b3160536a1792c853a563554";
    const GO_V1_CERT: &str = "-----BEGIN NEBULA CERTIFICATE-----
CjYKBHQxNjEo9fOg2AYw9dql5wY6IBllZ/mLRs4blJeTmggspt97k/PmuwWWgh4J
qzzaPoj4QAESQFCFzTteMdEJLScM/Tns7l9KWpaxM8b3kzqW6M5HAMOOBLTt6cEH
YtAF290OZLYQgKT3x1w7B/U7m4Xz8gGloQY=
-----END NEBULA CERTIFICATE-----
";

    fn pem_of(label: &str, len: usize) -> String {
        pem::encode(label, &vec![7u8; len])
    }

    #[test]
    fn go_x25519_host_keys() {
        let input = format!("# host key\n{GO_X25519_KEY}{GO_P256_KEY}");
        let (private, curve, rest) = unmarshal_private_key(input.as_bytes()).unwrap();
        assert_eq!(curve, Curve::Curve25519);
        assert_eq!(rest, GO_P256_KEY.as_bytes());
        let (public, pcurve, rest) = unmarshal_public_key(GO_X25519_PUB.as_bytes()).unwrap();
        assert_eq!(pcurve, Curve::Curve25519);
        assert!(rest.is_empty());
        assert_eq!(public_from_private(curve, &private).unwrap(), public);
        assert_eq!(*marshal_private_key(curve, &private), GO_X25519_KEY);
        assert_eq!(marshal_public_key(curve, &public), GO_X25519_PUB);
    }

    #[test]
    fn go_p256_host_keys() {
        let (private, curve, _) = unmarshal_private_key(GO_P256_KEY.as_bytes()).unwrap();
        assert_eq!(curve, Curve::P256);
        let (public, pcurve, _) = unmarshal_public_key(GO_P256_PUB.as_bytes()).unwrap();
        assert_eq!(pcurve, Curve::P256);
        assert_eq!(public.len(), P256_PUBLIC_KEY_LEN);
        assert_eq!(public_from_private(curve, &private).unwrap(), public);
        assert_eq!(*marshal_private_key(curve, &private), GO_P256_KEY);
        assert_eq!(marshal_public_key(curve, &public), GO_P256_PUB);
    }

    #[test]
    fn keygen_round_trips() {
        for (curve, plen) in [(Curve::Curve25519, 32), (Curve::P256, 65)] {
            let (private, public) = keygen(curve);
            assert_eq!(private.len(), 32);
            assert_eq!(public.len(), plen);
            assert_eq!(public_from_private(curve, &private).unwrap(), public);
            let (p2, c2, _) =
                unmarshal_private_key(marshal_private_key(curve, &private).as_bytes()).unwrap();
            assert_eq!((p2, c2), (private.clone(), curve));
            let (q2, c3, _) =
                unmarshal_public_key(marshal_public_key(curve, &public).as_bytes()).unwrap();
            assert_eq!((q2, c3), (public, curve));
            assert_ne!(keygen(curve).0, private);
        }
    }

    #[test]
    fn go_ed25519_ca_key() {
        let (key, rest) = unmarshal_ca_private_key(GO_ED25519_CA_KEY.as_bytes()).unwrap();
        assert!(rest.is_empty());
        assert!(matches!(key, CaSigningKey::Ed25519(_)));
        assert_eq!(
            hex::encode(ca_public_key_bytes(&key)),
            GO_ED25519_CA_PUB_HEX
        );
        assert_eq!(*marshal_ca_private_key(&key), GO_ED25519_CA_KEY);
    }

    #[test]
    fn go_p256_ca_key() {
        let (key, _) = unmarshal_ca_private_key(GO_P256_CA_KEY.as_bytes()).unwrap();
        assert!(matches!(key, CaSigningKey::P256(_)));
        let public = ca_public_key_bytes(&key);
        assert_eq!(hex::encode(&public), GO_P256_CA_PUB_HEX);
        assert_eq!(*marshal_ca_private_key(&key), GO_P256_CA_KEY);
        let pem_pub = marshal_ca_public_key(Curve::P256, &public);
        assert!(pem_pub.starts_with("-----BEGIN NEBULA ECDSA P256 PUBLIC KEY-----\n"));
        let (back, curve, _) = unmarshal_ca_public_key(pem_pub.as_bytes()).unwrap();
        assert_eq!((back, curve), (public, Curve::P256));
    }

    #[test]
    fn generated_ca_keys_round_trip() {
        for curve in [Curve::Curve25519, Curve::P256] {
            let key = generate_ca_key(curve);
            assert_eq!(ca_curve(&key), curve);
            let (back, _) =
                unmarshal_ca_private_key(marshal_ca_private_key(&key).as_bytes()).unwrap();
            assert_eq!(ca_private_bytes(&back), ca_private_bytes(&key));
            let public = ca_public_key_bytes(&key);
            let (p, c, _) =
                unmarshal_ca_public_key(marshal_ca_public_key(curve, &public).as_bytes()).unwrap();
            assert_eq!((p, c), (public, curve));
        }
    }

    #[test]
    fn host_key_functions_refuse_ca_keys_and_certs() {
        let err = unmarshal_private_key(GO_ED25519_CA_KEY.as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, KeyError::WrongBanner { ref found, .. } if found == ED25519_PRIVATE_KEY_BANNER)
        );
        assert!(
            msg.contains("a CA private key") && msg.contains(X25519_PRIVATE_KEY_BANNER),
            "{msg}"
        );
        let err = unmarshal_private_key(GO_V1_CERT.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("a v1 certificate"), "{err}");
        // A public key where a private key is wanted, and the other way round.
        assert!(matches!(
            unmarshal_private_key(GO_X25519_PUB.as_bytes()),
            Err(KeyError::WrongBanner { .. })
        ));
        assert!(matches!(
            unmarshal_public_key(GO_X25519_KEY.as_bytes()),
            Err(KeyError::WrongBanner { .. })
        ));
        // A CA public key is not a host public key.
        let ca_pub = pem_of(ECDSA_P256_PUBLIC_KEY_BANNER, 65);
        assert!(matches!(
            unmarshal_public_key(ca_pub.as_bytes()),
            Err(KeyError::WrongBanner { .. })
        ));
    }

    #[test]
    fn ca_key_functions_refuse_host_keys_and_certs() {
        let err = unmarshal_ca_private_key(GO_X25519_KEY.as_bytes()).unwrap_err();
        assert!(matches!(err, KeyError::WrongBanner { .. }));
        assert!(err.to_string().contains("a host private key"), "{err}");
        assert!(matches!(
            unmarshal_ca_private_key(GO_V1_CERT.as_bytes()),
            Err(KeyError::WrongBanner { .. })
        ));
        // Go 1.11 only reads the signing banners for CA public keys.
        assert!(matches!(
            unmarshal_ca_public_key(GO_P256_PUB.as_bytes()),
            Err(KeyError::WrongBanner { .. })
        ));
        assert!(matches!(
            unmarshal_ca_public_key(GO_X25519_PUB.as_bytes()),
            Err(KeyError::WrongBanner { .. })
        ));
    }

    #[test]
    fn encrypted_ca_key_needs_passphrase() {
        let input = pem_of(ED25519_ENCRYPTED_PRIVATE_KEY_BANNER, 100);
        assert!(matches!(
            unmarshal_ca_private_key(input.as_bytes()),
            Err(KeyError::Encrypted)
        ));
        let input = pem_of(ECDSA_P256_ENCRYPTED_PRIVATE_KEY_BANNER, 100);
        assert!(matches!(
            unmarshal_ca_private_key(input.as_bytes()),
            Err(KeyError::Encrypted)
        ));
    }

    #[test]
    fn bad_lengths_are_errors() {
        for (label, len) in [
            (X25519_PRIVATE_KEY_BANNER, 31),
            (X25519_PRIVATE_KEY_BANNER, 33),
            (P256_PRIVATE_KEY_BANNER, 0),
        ] {
            let input = pem_of(label, len);
            let r = unmarshal_private_key(input.as_bytes());
            assert!(
                matches!(r, Err(KeyError::InvalidLength { got, expected: 32, .. }) if got == len),
                "{label} {len}"
            );
        }
        for (label, len) in [(X25519_PUBLIC_KEY_BANNER, 65), (P256_PUBLIC_KEY_BANNER, 32)] {
            assert!(matches!(
                unmarshal_public_key(pem_of(label, len).as_bytes()),
                Err(KeyError::InvalidLength { .. })
            ));
        }
        for (label, len) in [
            (ED25519_PRIVATE_KEY_BANNER, 32),
            (ED25519_PRIVATE_KEY_BANNER, 63),
            (ECDSA_P256_PRIVATE_KEY_BANNER, 64),
        ] {
            assert!(matches!(
                unmarshal_ca_private_key(pem_of(label, len).as_bytes()),
                Err(KeyError::InvalidLength { .. })
            ));
        }
        for (label, len) in [
            (ED25519_PUBLIC_KEY_BANNER, 64),
            (ECDSA_P256_PUBLIC_KEY_BANNER, 33),
        ] {
            assert!(matches!(
                unmarshal_ca_public_key(pem_of(label, len).as_bytes()),
                Err(KeyError::InvalidLength { .. })
            ));
        }
        assert!(matches!(
            public_from_private(Curve::Curve25519, &[1; 31]),
            Err(KeyError::InvalidLength { .. })
        ));
        assert!(matches!(
            public_from_private(Curve::P256, &[1; 33]),
            Err(KeyError::InvalidLength { .. })
        ));
    }

    #[test]
    fn invalid_key_material_is_error() {
        // Ed25519 64-byte key whose public half does not belong to its seed.
        let (block, _) = pem::decode(GO_ED25519_CA_KEY.as_bytes()).unwrap().unwrap();
        let mut data = block.data;
        data[40] ^= 1;
        let bad = pem::encode(ED25519_PRIVATE_KEY_BANNER, &data);
        assert!(matches!(
            unmarshal_ca_private_key(bad.as_bytes()),
            Err(KeyError::InvalidKey { .. })
        ));
        // P-256 scalars zero and ≥ n.
        for scalar in [[0u8; 32], [0xff; 32]] {
            let bad = pem::encode(ECDSA_P256_PRIVATE_KEY_BANNER, &scalar);
            assert!(matches!(
                unmarshal_ca_private_key(bad.as_bytes()),
                Err(KeyError::InvalidKey { .. })
            ));
            assert!(matches!(
                public_from_private(Curve::P256, &scalar),
                Err(KeyError::InvalidKey { .. })
            ));
        }
    }

    #[test]
    fn garbage_and_truncated_input() {
        for input in [&b""[..], b"garbage", b"\n\n# only a comment\n"] {
            assert!(matches!(
                unmarshal_private_key(input),
                Err(KeyError::NoPemBlock)
            ));
            assert!(matches!(
                unmarshal_public_key(input),
                Err(KeyError::NoPemBlock)
            ));
            assert!(matches!(
                unmarshal_ca_private_key(input),
                Err(KeyError::NoPemBlock)
            ));
            assert!(matches!(
                unmarshal_ca_public_key(input),
                Err(KeyError::NoPemBlock)
            ));
        }
        for sample in [
            GO_X25519_KEY,
            GO_ED25519_CA_KEY,
            GO_P256_CA_KEY,
            GO_P256_PUB,
        ] {
            for cut in 1..sample.len() {
                let input = &sample.as_bytes()[..cut];
                // Some prefixes are complete blocks missing only the final newline; all others fail.
                let _ = unmarshal_private_key(input);
                let _ = unmarshal_public_key(input);
                let _ = unmarshal_ca_public_key(input);
                if cut < sample.len() - 1 {
                    assert!(unmarshal_ca_private_key(input).is_err(), "{cut}");
                }
            }
        }
        let r = unmarshal_private_key(b"-----BEGIN NEBULA X25519 PRIVATE KEY-----\n!!!!\n-----END NEBULA X25519 PRIVATE KEY-----\n");
        assert!(matches!(r, Err(KeyError::Pem(PemError::Base64 { .. }))));
    }
}
