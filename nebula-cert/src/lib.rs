//! Nebula certificates as values: parse, marshal, sign, verify, fingerprint, PEM, keys, CA pools.
//! Pure library: no file or network I/O here (the `nebula-cert` binary does that), no panics on bad input.
#![forbid(unsafe_code)]

// Module layers, bottom up: a module imports only from layers below it (`scripts/import-cycles.sh`
// finds any cycle).
//   1. the crate root (`Curve`, `Version`); der, gojson, pem, error
//   2. details (the fields both versions share); signing (its ECDSA encoding is on `der`)
//   3. v1, v2 (the codecs of `Details`; v2 on `der`); keys
//   4. cert; encrypted
//   5. print (`Certificate`'s Go output), pool
pub mod cert;
pub mod der;
mod details;
pub mod encrypted;
pub mod error;
mod gojson;
pub mod keys;
pub mod pem;
pub mod pool;
mod print;
pub mod signing;
pub mod v1;
pub mod v2;

/// The curve a certificate and its keys use. Signer, certificate and both tunnel peers must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Curve {
    /// Ed25519 signatures for CAs, X25519 Diffie-Hellman for hosts.
    #[default]
    Curve25519,
    /// ECDSA P-256 with SHA-256 for CAs, P-256 ECDH for hosts.
    P256,
}

impl Curve {
    /// The wire value (v1 `curve` field, v2 `[1]` byte).
    pub fn wire(self) -> u8 {
        match self {
            Curve::Curve25519 => 0,
            Curve::P256 => 1,
        }
    }

    pub fn from_wire(v: i64) -> Option<Curve> {
        match v {
            0 => Some(Curve::Curve25519),
            1 => Some(Curve::P256),
            _ => None,
        }
    }

    /// The name Go prints (`CURVE25519`, `P256`).
    pub fn name(self) -> &'static str {
        match self {
            Curve::Curve25519 => "CURVE25519",
            Curve::P256 => "P256",
        }
    }
}

/// Certificate format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// Protobuf certificates, understood by every Nebula release.
    V1,
    /// ASN.1 DER certificates, Nebula 1.10 and later.
    V2,
}
