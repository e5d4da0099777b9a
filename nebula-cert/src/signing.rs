//! CA signing keys and signature checks for both curves (Ed25519; ECDSA P-256 with SHA-256, low-S).
//! Certificates of every version are signed and verified through this one seam.

/// A CA's private signing key.
#[derive(Clone)]
pub enum CaSigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}
