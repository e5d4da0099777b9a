//! Passphrase-encrypted CA private keys (`NEBULA ED25519 / ECDSA P256 ENCRYPTED PRIVATE KEY`), the format
//! Go's `nebula-cert ca -encrypt` writes: Argon2id (v0x13) derives an AES-256-GCM key from the passphrase.
//!
//! Layout (`cert/crypto.go @ v1.11.1`): the PEM body is a `RawNebulaEncryptedData` protobuf whose metadata
//! names "AES-256-GCM" and the Argon2 parameters (version, memory KiB, iterations, parallelism, salt), and
//! whose ciphertext is `nonce(12) || GCM(seal of the raw private key, no associated data)`.
//!
//! Limits we enforce when reading (a hostile file must not make us allocate or spin without bound):
//! Go's own checks (algorithm, version 0x13, salt ≥ 16 bytes, memory/iterations/parallelism > 0,
//! parallelism ≤ 255), plus memory ≤ [`MAX_ARGON2_MEMORY_KIB`] (4 GiB, twice Go's default) and
//! memory × iterations ≤ [`MAX_ARGON2_WORK_KIB`] (16 times Go's default cost, roughly 40 s here). Go
//! accepts up to `u32::MAX` for each. Go also accepts memory below 8 × parallelism KiB (it silently
//! raises it); the Argon2 crate we use refuses that, so such a file gives [`KeyError::Argon2Params`].
//! The same limits apply when encrypting, so we never write a key we would refuse to read.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use prost::Message;
use proto::cert::{RawNebulaArgon2Parameters, RawNebulaEncryptedData, RawNebulaEncryptionMetadata};
use zeroize::Zeroizing;

use crate::keys::{self, KeyError};
use crate::pem::{
    self, ECDSA_P256_ENCRYPTED_PRIVATE_KEY_BANNER, ED25519_ENCRYPTED_PRIVATE_KEY_BANNER,
};
use crate::signing::CaSigningKey;
use crate::Curve;

/// The only encryption algorithm Go writes or reads.
pub const ENCRYPTION_ALGORITHM: &str = "AES-256-GCM";
/// Argon2 version 1.3, the only one Go accepts.
pub const ARGON2_VERSION: i32 = 0x13;
/// Largest Argon2 memory we accept, in KiB (4 GiB). Go accepts up to `u32::MAX` KiB.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// Largest Argon2 work we accept: memory (KiB) × iterations, 32 GiB (Go's default is 2 GiB × 1).
pub const MAX_ARGON2_WORK_KIB: u64 = 32 * 1024 * 1024;
/// Salt length we write (Go writes 32 random bytes).
pub const SALT_LEN: usize = 32;
/// Shortest salt we accept (Go: at least 128 bits).
pub const MIN_SALT_LEN: usize = 16;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;

/// Argon2id cost parameters for encrypting a CA key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Number of lanes (computed one after another here; the result is the same as Go's threads).
    pub parallelism: u8,
}

impl Default for Argon2Params {
    /// Go's `nebula-cert ca` defaults on 64-bit builds: 2 GiB, 1 iteration, 4 lanes.
    fn default() -> Self {
        Argon2Params {
            memory_kib: 2 * 1024 * 1024,
            iterations: 1,
            parallelism: 4,
        }
    }
}

impl Argon2Params {
    /// Checks the parameters against Go's rules and our limits (see the module doc).
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.memory_kib == 0 || self.memory_kib > MAX_ARGON2_MEMORY_KIB {
            return Err(KeyError::Argon2Params(format!(
                "memory must be greater than 0 and no more than {MAX_ARGON2_MEMORY_KIB} KiB (got {})",
                self.memory_kib
            )));
        }
        if self.iterations == 0 {
            return Err(KeyError::Argon2Params(
                "iterations must be greater than 0".into(),
            ));
        }
        let work = u64::from(self.memory_kib) * u64::from(self.iterations);
        if work > MAX_ARGON2_WORK_KIB {
            return Err(KeyError::Argon2Params(format!(
                "memory × iterations must be no more than {MAX_ARGON2_WORK_KIB} KiB \
                 (got {} KiB × {})",
                self.memory_kib, self.iterations
            )));
        }
        if self.parallelism == 0 {
            return Err(KeyError::Argon2Params(
                "parallelism must be greater than 0 and no more than 255".into(),
            ));
        }
        if self.memory_kib < 8 * u32::from(self.parallelism) {
            return Err(KeyError::Argon2Params(format!(
                "memory ({} KiB) must be at least 8 KiB per lane ({} KiB for parallelism {})",
                self.memory_kib,
                8 * u32::from(self.parallelism),
                self.parallelism
            )));
        }
        Ok(())
    }
}

/// Argon2id(passphrase, salt) → 32-byte AES-256 key. Memory is reserved fallibly so that an
/// allocation failure is an error, not an abort.
fn derive_key(
    passphrase: &[u8],
    salt: &[u8],
    params: &Argon2Params,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    params.validate()?;
    if salt.len() < MIN_SALT_LEN {
        return Err(KeyError::Argon2Params(format!(
            "salt must be at least {MIN_SALT_LEN} bytes (got {})",
            salt.len()
        )));
    }
    let argon_params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        u32::from(params.parallelism),
        Some(32),
    )
    .map_err(|e| KeyError::Argon2Params(e.to_string()))?;
    let block_count = argon_params.block_count();
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    // The working memory holds values derived from the passphrase: wiped on every way out.
    let mut blocks: Zeroizing<Vec<argon2::Block>> = Zeroizing::new(Vec::new());
    blocks.try_reserve_exact(block_count).map_err(|_| {
        KeyError::Kdf(format!(
            "cannot allocate {} KiB for Argon2",
            params.memory_kib
        ))
    })?;
    blocks.resize(block_count, argon2::Block::default());
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into_with_memory(passphrase, salt, key.as_mut_slice(), &mut blocks)
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    Ok(key)
}

/// Encrypts a CA private key with a passphrase and PEM-encodes it exactly as Go's
/// `EncryptAndMarshalSigningPrivateKey` (fresh random 32-byte salt and 12-byte nonce each call).
pub fn encrypt_and_marshal_ca_private_key(
    key: &CaSigningKey,
    passphrase: &[u8],
    params: &Argon2Params,
) -> Result<String, KeyError> {
    let mut salt = vec![0u8; SALT_LEN];
    keys::random_bytes(&mut salt)?;
    let mut nonce = [0u8; NONCE_LEN];
    keys::random_bytes(&mut nonce)?;
    let aes_key = derive_key(passphrase, &salt, params)?;
    let cipher = Aes256Gcm::new((&*aes_key).into());
    let plaintext = keys::ca_private_bytes(key);
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), plaintext.as_slice())
        .map_err(|_| KeyError::Kdf("AES-256-GCM encryption failed".into()))?;
    let mut ciphertext = Vec::with_capacity(NONCE_LEN + sealed.len());
    ciphertext.extend_from_slice(&nonce);
    ciphertext.extend_from_slice(&sealed);

    let raw = RawNebulaEncryptedData {
        encryption_metadata: Some(RawNebulaEncryptionMetadata {
            encryption_algorithm: ENCRYPTION_ALGORITHM.to_owned(),
            argon2_parameters: Some(RawNebulaArgon2Parameters {
                version: ARGON2_VERSION,
                memory: params.memory_kib,
                iterations: params.iterations,
                parallelism: u32::from(params.parallelism),
                salt,
            }),
        }),
        ciphertext,
    };
    let label = match keys::ca_curve(key) {
        Curve::Curve25519 => ED25519_ENCRYPTED_PRIVATE_KEY_BANNER,
        Curve::P256 => ECDSA_P256_ENCRYPTED_PRIVATE_KEY_BANNER,
    };
    Ok(pem::encode(label, &raw.encode_to_vec()))
}

/// Reads the first PEM block as an encrypted CA private key and decrypts it with `passphrase`; returns
/// the key and the bytes after the block. A wrong passphrase gives [`KeyError::WrongPassphrase`].
pub fn decrypt_and_unmarshal_ca_private_key<'a>(
    passphrase: &[u8],
    input: &'a [u8],
) -> Result<(CaSigningKey, &'a [u8]), KeyError> {
    let (block, rest) = keys::first_block(input)?;
    let curve = match block.label.as_str() {
        ED25519_ENCRYPTED_PRIVATE_KEY_BANNER => Curve::Curve25519,
        ECDSA_P256_ENCRYPTED_PRIVATE_KEY_BANNER => Curve::P256,
        _ => {
            return Err(KeyError::WrongBanner {
                found: block.label,
                expected: "\"NEBULA ED25519 ENCRYPTED PRIVATE KEY\" or \
                           \"NEBULA ECDSA P256 ENCRYPTED PRIVATE KEY\"",
            })
        }
    };
    if block.data.is_empty() {
        return Err(KeyError::MalformedEncrypted("empty body"));
    }
    let raw = RawNebulaEncryptedData::decode(block.data.as_slice())
        .map_err(|_| KeyError::MalformedEncrypted("not a valid RawNebulaEncryptedData protobuf"))?;
    let meta = raw
        .encryption_metadata
        .ok_or(KeyError::MalformedEncrypted("encryption metadata missing"))?;
    let argon = meta
        .argon2_parameters
        .ok_or(KeyError::MalformedEncrypted("Argon2 parameters missing"))?;
    if meta.encryption_algorithm != ENCRYPTION_ALGORITHM {
        return Err(KeyError::UnsupportedAlgorithm(meta.encryption_algorithm));
    }
    if argon.version != ARGON2_VERSION {
        return Err(KeyError::Argon2Version(argon.version));
    }
    let parallelism = u8::try_from(argon.parallelism)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            KeyError::Argon2Params(format!(
                "parallelism must be greater than 0 and no more than 255 (got {})",
                argon.parallelism
            ))
        })?;
    let params = Argon2Params {
        memory_kib: argon.memory,
        iterations: argon.iterations,
        parallelism,
    };
    // Cheap structural checks before the expensive key derivation.
    params.validate()?;
    if raw.ciphertext.len() <= NONCE_LEN {
        return Err(KeyError::MalformedEncrypted(
            "ciphertext is shorter than the nonce",
        ));
    }
    let (nonce, sealed) = raw.ciphertext.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| KeyError::MalformedEncrypted("ciphertext is shorter than the nonce"))?;
    let aes_key = derive_key(passphrase, &argon.salt, &params)?;
    let cipher = Aes256Gcm::new((&*aes_key).into());
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(&Nonce::from(nonce), sealed)
            .map_err(|_| KeyError::WrongPassphrase)?,
    );
    let key = keys::ca_key_from_bytes(curve, &plaintext)?;
    Ok((key, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{ca_private_bytes, ca_public_key_bytes, KeyError};

    // Made with Debian's nebula-cert 1.11.0:
    //   NEBULA_CA_PASSPHRASE='correct horse' nebula-cert ca -encrypt -argon-memory 1024 \
    //     -argon-iterations 1 -argon-parallelism 1 -name t -out-crt cae.crt -out-key cae.key
    // and the CA public key from `nebula-cert print -json -path cae.crt`.
    const GO_ENC_ED25519: &str = "-----BEGIN NEBULA ED25519 ENCRYPTED PRIVATE KEY-----
CjoKC0FFUy0yNTYtR0NNEisIExCACBgBIAEqID+8XNYL3TvziSSii7jued/jFgd+
YlRADfiuH7H6yyqLElw5ROWVDYsx7X79pnBkIMVyySQIJr4XMdROpTaAd7swbb0l
3lWulO2Vf1k82Emklt3tzir/TVExfa33M2PMGF9A4eP7YyrmWPIRVm0UEX4hvuFL
aRqlGMkGeVdk+Q==
-----END NEBULA ED25519 ENCRYPTED PRIVATE KEY-----
";
    const GO_ENC_ED25519_PUB_HEX: &str =
        "fde85b26677a43ba6fe84d041d33836d47050a412b60486687d94f2fd3a742d0";
    // Same, with `-curve P256 -argon-iterations 2 -argon-parallelism 2 -name tpe`.
    const GO_ENC_P256: &str = "-----BEGIN NEBULA ECDSA P256 ENCRYPTED PRIVATE KEY-----
CjoKC0FFUy0yNTYtR0NNEisIExCACBgCIAIqIJG7r5qqcxD5T7NJGMEEtBqpTme4
OUk+x0tokmeJTXbtEjwnfAqPvCljWFFshuvNmTwHGfEBepmqRS0RTMbuT8HY4/hz
pQD3CT/LChLP/wO9tsiEiNf+0vwx0RpvXwY=
-----END NEBULA ECDSA P256 ENCRYPTED PRIVATE KEY-----
";
    const GO_ENC_P256_PUB_HEX: &str = "04fdff72c75cfa92bf3a0a2f5d810f58a25ee8a974509d4f0e49be1e9de2a9a297cbbcac05cd84749bd272d263302d637c21142da3d3d54cf7b1b5e157cc4cd89b";
    // Upstream's own vector (`cert/crypto_test.go @ v1.11.1`, passphrase "DO NOT USE", 64 MiB,
    // 3 iterations, 4 lanes): a good key, and one that decrypts to fewer than 64 bytes.
    const UPSTREAM_GOOD: &str = "# A good key
-----BEGIN NEBULA ED25519 ENCRYPTED PRIVATE KEY-----
CjsKC0FFUy0yNTYtR0NNEiwIExCAgAQYAyAEKiCPoDfGQiosxNPTbPn5EsMlc2MI
c0Bt4oz6gTrFQhX3aBJcimhHKeAuhyTGvllD0Z19fe+DFPcLH3h5VrdjVfIAajg0
KrbV3n9UHif/Au5skWmquNJzoW1E4MTdRbvpti6o+WdQ49DxjBFhx0YH8LBqrbPU
0BGkUHmIO7daP24=
-----END NEBULA ED25519 ENCRYPTED PRIVATE KEY-----
";
    const UPSTREAM_SHORT: &str = "-----BEGIN NEBULA ED25519 ENCRYPTED PRIVATE KEY-----
CjsKC0FFUy0yNTYtR0NNEiwIExCAgAQYAyAEKiAVJwdfl3r+eqi/vF6S7OMdpjfo
hAzmTCRnr58Su4AqmBJbCv3zleYCEKYJP6UI3S8ekLMGISsgO4hm5leukCCyqT0Z
cQ76yrberpzkJKoPLGisX8f+xdy4aXSZl7oEYWQte1+vqbtl/eY9PGZhxUQdcyq7
hqzIyrRqfUgVuA==
-----END NEBULA ED25519 ENCRYPTED PRIVATE KEY-----
";

    const PASS: &[u8] = b"correct horse";
    const CHEAP: Argon2Params = Argon2Params {
        memory_kib: 64,
        iterations: 1,
        parallelism: 2,
    };

    /// Decodes a Go-written encrypted key's protobuf, edits it, and re-wraps it in PEM.
    fn tamper(sample: &str, edit: impl FnOnce(&mut RawNebulaEncryptedData)) -> String {
        let (block, _) = pem::decode(sample.as_bytes()).unwrap().unwrap();
        let mut raw = RawNebulaEncryptedData::decode(block.data.as_slice()).unwrap();
        edit(&mut raw);
        pem::encode(&block.label, &raw.encode_to_vec())
    }

    fn argon(raw: &mut RawNebulaEncryptedData) -> &mut RawNebulaArgon2Parameters {
        raw.encryption_metadata
            .as_mut()
            .unwrap()
            .argon2_parameters
            .as_mut()
            .unwrap()
    }

    #[test]
    fn default_params_are_go_defaults() {
        let d = Argon2Params::default();
        assert_eq!(
            (d.memory_kib, d.iterations, d.parallelism),
            (2 * 1024 * 1024, 1, 4)
        );
        assert!(d.validate().is_ok());
        // Limits: 4 GiB of memory, 32 GiB of memory × iterations, 8 KiB per lane.
        let at_cap = Argon2Params {
            iterations: 16,
            ..d
        };
        assert!(at_cap.validate().is_ok());
        assert!(Argon2Params {
            iterations: 17,
            ..d
        }
        .validate()
        .is_err());
        let big = Argon2Params {
            memory_kib: MAX_ARGON2_MEMORY_KIB,
            iterations: 8,
            parallelism: 255,
        };
        assert!(big.validate().is_ok());
        assert!(Argon2Params {
            memory_kib: 2039,
            iterations: 1,
            parallelism: 255
        }
        .validate()
        .is_err());
        assert!(Argon2Params {
            memory_kib: 2040,
            iterations: 1,
            parallelism: 255
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn decrypts_go_ed25519_key() {
        let input = format!("# comment\n{GO_ENC_ED25519}tail");
        let (key, rest) = decrypt_and_unmarshal_ca_private_key(PASS, input.as_bytes()).unwrap();
        assert!(matches!(key, CaSigningKey::Ed25519(_)));
        assert_eq!(
            hex::encode(ca_public_key_bytes(&key)),
            GO_ENC_ED25519_PUB_HEX
        );
        assert_eq!(rest, b"tail");
    }

    #[test]
    fn go_protobuf_layout_reencodes_identically() {
        for sample in [GO_ENC_ED25519, GO_ENC_P256, UPSTREAM_GOOD] {
            let (block, _) = pem::decode(sample.as_bytes()).unwrap().unwrap();
            let raw = RawNebulaEncryptedData::decode(block.data.as_slice()).unwrap();
            assert_eq!(raw.encode_to_vec(), block.data);
        }
    }

    #[test]
    fn decrypts_go_p256_key() {
        let (key, _) = decrypt_and_unmarshal_ca_private_key(PASS, GO_ENC_P256.as_bytes()).unwrap();
        assert!(matches!(key, CaSigningKey::P256(_)));
        assert_eq!(hex::encode(ca_public_key_bytes(&key)), GO_ENC_P256_PUB_HEX);
    }

    #[test]
    fn upstream_vectors() {
        let (key, rest) =
            decrypt_and_unmarshal_ca_private_key(b"DO NOT USE", UPSTREAM_GOOD.as_bytes()).unwrap();
        assert_eq!(ca_private_bytes(&key).len(), 64);
        assert!(rest.is_empty());
        let r = decrypt_and_unmarshal_ca_private_key(b"DO NOT USE", UPSTREAM_SHORT.as_bytes());
        assert!(matches!(
            r,
            Err(KeyError::InvalidLength { expected: 64, .. })
        ));
    }

    #[test]
    fn wrong_passphrase() {
        for sample in [GO_ENC_ED25519, GO_ENC_P256] {
            let r = decrypt_and_unmarshal_ca_private_key(b"wrong", sample.as_bytes());
            assert!(matches!(r, Err(KeyError::WrongPassphrase)));
        }
        let r = decrypt_and_unmarshal_ca_private_key(b"", GO_ENC_ED25519.as_bytes());
        assert!(matches!(r, Err(KeyError::WrongPassphrase)));
        assert_eq!(
            KeyError::WrongPassphrase.to_string(),
            "invalid passphrase or corrupt private key"
        );
    }

    #[test]
    fn round_trip_both_curves_with_go_layout() {
        for curve in [Curve::Curve25519, Curve::P256] {
            let key = crate::keys::generate_ca_key(curve);
            let pem_text = encrypt_and_marshal_ca_private_key(&key, PASS, &CHEAP).unwrap();
            let (block, _) = pem::decode(pem_text.as_bytes()).unwrap().unwrap();
            let raw = RawNebulaEncryptedData::decode(block.data.as_slice()).unwrap();
            let meta = raw.encryption_metadata.clone().unwrap();
            let a = meta.argon2_parameters.clone().unwrap();
            assert_eq!(meta.encryption_algorithm, "AES-256-GCM");
            assert_eq!(
                (a.version, a.memory, a.iterations, a.parallelism),
                (0x13, 64, 1, 2)
            );
            assert_eq!(a.salt.len(), 32);
            let plain_len = if curve == Curve::P256 { 32 } else { 64 };
            assert_eq!(raw.ciphertext.len(), 12 + plain_len + 16);
            // Re-encoding gives the same bytes: field order and defaults match Go's proto.Marshal.
            assert_eq!(raw.encode_to_vec(), block.data);
            // Field 1 (metadata) then its field 1 "AES-256-GCM" and field 2 (Argon2), as Go writes.
            assert_eq!(block.data[0], 0x0a);
            assert_eq!(&block.data[2..16], b"\x0a\x0bAES-256-GCM\x12");
            // Argon2 parameters in field order 1..5: version, memory, iterations, parallelism, salt.
            assert_eq!(
                &block.data[17..27],
                b"\x08\x13\x10\x40\x18\x01\x20\x02\x2a\x20"
            );

            let (back, rest) =
                decrypt_and_unmarshal_ca_private_key(PASS, pem_text.as_bytes()).unwrap();
            assert!(rest.is_empty());
            assert_eq!(ca_private_bytes(&back), ca_private_bytes(&key));
            // A fresh salt and nonce each time.
            let again = encrypt_and_marshal_ca_private_key(&key, PASS, &CHEAP).unwrap();
            assert_ne!(again, pem_text);
        }
    }

    #[test]
    fn refuses_unsupported_metadata() {
        let alg = tamper(GO_ENC_ED25519, |r| {
            r.encryption_metadata.as_mut().unwrap().encryption_algorithm = "AES-128-GCM".into()
        });
        let r = decrypt_and_unmarshal_ca_private_key(PASS, alg.as_bytes());
        assert!(matches!(r, Err(KeyError::UnsupportedAlgorithm(ref a)) if a == "AES-128-GCM"));

        let ver = tamper(GO_ENC_ED25519, |r| argon(r).version = 0x10);
        let r = decrypt_and_unmarshal_ca_private_key(PASS, ver.as_bytes());
        assert!(matches!(r, Err(KeyError::Argon2Version(0x10))));

        let salt = tamper(GO_ENC_ED25519, |r| argon(r).salt.truncate(15));
        let r = decrypt_and_unmarshal_ca_private_key(PASS, salt.as_bytes());
        assert!(matches!(r, Err(KeyError::Argon2Params(_))));

        let no_meta = tamper(GO_ENC_ED25519, |r| r.encryption_metadata = None);
        let r = decrypt_and_unmarshal_ca_private_key(PASS, no_meta.as_bytes());
        assert!(matches!(r, Err(KeyError::MalformedEncrypted(_))));

        let no_argon = tamper(GO_ENC_ED25519, |r| {
            r.encryption_metadata.as_mut().unwrap().argon2_parameters = None
        });
        let r = decrypt_and_unmarshal_ca_private_key(PASS, no_argon.as_bytes());
        assert!(matches!(r, Err(KeyError::MalformedEncrypted(_))));
    }

    /// One edit of the Argon2 parameters of a Go-written key.
    type ArgonEdit = fn(&mut RawNebulaArgon2Parameters);

    #[test]
    fn refuses_hostile_cost_parameters_without_allocating() {
        let cases: [(&str, ArgonEdit); 8] = [
            ("memory 0", |a| a.memory = 0),
            ("memory 4 TiB", |a| a.memory = u32::MAX),
            ("memory just over cap", |a| {
                a.memory = MAX_ARGON2_MEMORY_KIB + 1
            }),
            ("iterations 0", |a| a.iterations = 0),
            ("iterations huge", |a| a.iterations = u32::MAX),
            ("work over cap", |a| {
                a.memory = 64 * 1024;
                a.iterations = 513;
            }),
            ("parallelism 0", |a| a.parallelism = 0),
            ("parallelism 256", |a| a.parallelism = 256),
        ];
        for (name, edit) in cases {
            let input = tamper(GO_ENC_ED25519, |r| edit(argon(r)));
            let r = decrypt_and_unmarshal_ca_private_key(PASS, input.as_bytes());
            assert!(
                matches!(r, Err(KeyError::Argon2Params(_))),
                "{name}: {r:?}",
                r = r.err()
            );
        }
        // Memory below 8 KiB per lane (Go would round it up; we refuse).
        let input = tamper(GO_ENC_ED25519, |r| {
            let a = argon(r);
            a.memory = 8;
            a.parallelism = 2;
        });
        let r = decrypt_and_unmarshal_ca_private_key(PASS, input.as_bytes());
        assert!(matches!(r, Err(KeyError::Argon2Params(_))));
        // Encrypting refuses the same parameters.
        let key = crate::keys::generate_ca_key(Curve::Curve25519);
        for bad in [
            Argon2Params {
                memory_kib: 0,
                ..CHEAP
            },
            Argon2Params {
                iterations: 0,
                ..CHEAP
            },
            Argon2Params {
                parallelism: 0,
                ..CHEAP
            },
            Argon2Params {
                memory_kib: MAX_ARGON2_MEMORY_KIB + 1,
                ..CHEAP
            },
            Argon2Params {
                memory_kib: MAX_ARGON2_MEMORY_KIB,
                iterations: 9,
                parallelism: 4,
            },
        ] {
            assert!(matches!(
                encrypt_and_marshal_ca_private_key(&key, PASS, &bad),
                Err(KeyError::Argon2Params(_))
            ));
        }
    }

    #[test]
    fn truncated_or_garbled_ciphertext() {
        let short = tamper(GO_ENC_ED25519, |r| r.ciphertext.truncate(12));
        let r = decrypt_and_unmarshal_ca_private_key(PASS, short.as_bytes());
        assert!(matches!(r, Err(KeyError::MalformedEncrypted(_))));
        let cut = tamper(GO_ENC_ED25519, |r| r.ciphertext.truncate(40));
        let r = decrypt_and_unmarshal_ca_private_key(PASS, cut.as_bytes());
        assert!(matches!(r, Err(KeyError::WrongPassphrase)));
        let flipped = tamper(GO_ENC_ED25519, |r| r.ciphertext[20] ^= 0x80);
        let r = decrypt_and_unmarshal_ca_private_key(PASS, flipped.as_bytes());
        assert!(matches!(r, Err(KeyError::WrongPassphrase)));
    }

    #[test]
    fn wrong_banner_and_garbage() {
        let plain = crate::keys::marshal_ca_private_key(&crate::keys::generate_ca_key(Curve::P256));
        let r = decrypt_and_unmarshal_ca_private_key(PASS, plain.as_bytes());
        assert!(matches!(r, Err(KeyError::WrongBanner { .. })));
        assert!(matches!(
            decrypt_and_unmarshal_ca_private_key(PASS, b"garbage"),
            Err(KeyError::NoPemBlock)
        ));
        let empty = pem::encode(ED25519_ENCRYPTED_PRIVATE_KEY_BANNER, &[]);
        assert!(matches!(
            decrypt_and_unmarshal_ca_private_key(PASS, empty.as_bytes()),
            Err(KeyError::MalformedEncrypted(_))
        ));
        let junk = pem::encode(ECDSA_P256_ENCRYPTED_PRIVATE_KEY_BANNER, &[0xff; 40]);
        assert!(matches!(
            decrypt_and_unmarshal_ca_private_key(PASS, junk.as_bytes()),
            Err(KeyError::MalformedEncrypted(_))
        ));
        // Every truncation of a Go file fails cleanly (the last byte is only the final newline).
        for cut in 0..GO_ENC_P256.len() - 1 {
            let r = decrypt_and_unmarshal_ca_private_key(PASS, &GO_ENC_P256.as_bytes()[..cut]);
            assert!(r.is_err(), "{cut}");
        }
    }

    /// The state that holds key material wipes itself: the Argon2 working blocks (wiped through
    /// `Zeroizing` in `derive_key`) and the AES key schedule inside `Aes256Gcm`. These fail to
    /// compile when the crates' `zeroize` features are off.
    #[test]
    fn kdf_and_cipher_state_is_wiped() {
        fn wipeable<T: zeroize::Zeroize>() {}
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wipeable::<argon2::Block>();
        wipeable::<Vec<argon2::Block>>();
        wiped_on_drop::<aes::Aes256>();
    }
}
