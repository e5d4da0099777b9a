//! Protobuf messages of v1 certificates (`RawNebulaCertificate`) and encrypted CA keys.
//! Field numbers follow upstream `cert/cert_v1.proto`; prost encodes them in Go's canonical form.

/// A v1 certificate as it travels: details plus the CA's signature over their encoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawNebulaCertificate {
    #[prost(message, optional, tag = "1")]
    pub details: Option<RawNebulaCertificateDetails>,
    #[prost(bytes = "vec", tag = "2")]
    pub signature: Vec<u8>,
}

/// The signed part of a v1 certificate.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawNebulaCertificateDetails {
    #[prost(string, tag = "1")]
    pub name: String,
    /// Pairs of (address, netmask), each an IPv4 address read as a big-endian u32.
    #[prost(uint32, repeated, packed = "true", tag = "2")]
    pub ips: Vec<u32>,
    /// Pairs of (address, netmask) for unsafe routes (host) or allowed subnets (CA).
    #[prost(uint32, repeated, packed = "true", tag = "3")]
    pub subnets: Vec<u32>,
    #[prost(string, repeated, tag = "4")]
    pub groups: Vec<String>,
    #[prost(int64, tag = "5")]
    pub not_before: i64,
    #[prost(int64, tag = "6")]
    pub not_after: i64,
    #[prost(bytes = "vec", tag = "7")]
    pub public_key: Vec<u8>,
    #[prost(bool, tag = "8")]
    pub is_ca: bool,
    /// Raw 32-byte SHA-256 fingerprint of the signing CA; empty on a CA.
    #[prost(bytes = "vec", tag = "9")]
    pub issuer: Vec<u8>,
    /// 0 = Curve25519, 1 = P256.
    #[prost(int32, tag = "100")]
    pub curve: i32,
}

/// A passphrase-encrypted private key (`NEBULA ... ENCRYPTED PRIVATE KEY`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawNebulaEncryptedData {
    #[prost(message, optional, tag = "1")]
    pub encryption_metadata: Option<RawNebulaEncryptionMetadata>,
    /// nonce(12) || AES-256-GCM ciphertext and tag.
    #[prost(bytes = "vec", tag = "2")]
    pub ciphertext: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawNebulaEncryptionMetadata {
    /// Always "AES-256-GCM" in files Go writes.
    #[prost(string, tag = "1")]
    pub encryption_algorithm: String,
    #[prost(message, optional, tag = "2")]
    pub argon2_parameters: Option<RawNebulaArgon2Parameters>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawNebulaArgon2Parameters {
    #[prost(int32, tag = "1")]
    pub version: i32,
    /// KiB.
    #[prost(uint32, tag = "2")]
    pub memory: u32,
    #[prost(uint32, tag = "3")]
    pub iterations: u32,
    #[prost(uint32, tag = "4")]
    pub parallelism: u32,
    #[prost(bytes = "vec", tag = "5")]
    pub salt: Vec<u8>,
}
