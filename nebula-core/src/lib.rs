//! The Nebula protocol engine, sans-IO: datagrams, inside packets and time go in; transmits,
//! inside packets, events and the next timeout come out. No sockets, no TUN, no clock reads here.
#![forbid(unsafe_code)]

pub mod aead;
pub mod dataplane;
pub mod engine;
pub mod filter;
pub mod firewall;
pub mod handshake;
pub mod hostmap;
pub mod lighthouse;
pub mod noise;
pub mod outcome;
pub mod pki;
pub mod remotes;
pub mod replay;
pub mod sim;
pub mod stats;
pub mod timers;

pub use engine::{
    CloseReason, DropReason, Engine, EngineConfig, Event, InsideOutcome, Outputs, OutsideOutcome,
    RelayRefusal, Transmit,
};

/// Errors of the engine's control plane. [`EngineError::Config`] and [`EngineError::Key`] are
/// ours to fix; [`EngineError::Handshake`] is the peer's doing (or an attacker's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Our own configuration or credentials are unusable (a local problem, not the peer's).
    #[error("configuration: {0}")]
    Config(String),
    /// Our private key does not fit our certificate.
    #[error("configuration: pki.key does not match pki.cert: {0}")]
    KeyMismatch(#[source] nebula_cert::error::CertError),
    /// Our private key cannot be loaded as a Noise static key.
    #[error("configuration: pki.key: {0}")]
    Key(#[source] noise::NoiseError),
    /// A handshake from a peer was refused.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A cryptographic primitive failed (bad key material, a low-order point).
    #[error("crypto: {0}")]
    Crypto(#[source] noise::NoiseError),
    /// The handshake's keys could not be turned into a session's ciphers.
    #[error("crypto: {0}")]
    Session(#[source] aead::AeadError),
}

/// Why a peer's handshake message was refused. Each names what the peer sent wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The Noise message did not decrypt or parse (not a stage 1 for us, or corrupted).
    #[error("noise: {0}")]
    Noise(#[source] noise::NoiseError),
    /// The payload inside the Noise message is not a valid Nebula handshake.
    #[error("bad handshake payload: {0}")]
    Payload(#[source] proto::handshake::HandshakeDecodeError),
    #[error("handshake carries no certificate")]
    NoCertificate,
    #[error("unknown certificate version {0}")]
    UnknownCertVersion(u32),
    /// The certificate bytes (with the Noise static key put back) do not parse.
    #[error("peer certificate: {0}")]
    BadCertificate(#[source] nebula_cert::error::CertError),
    #[error("peer certificate uses another curve")]
    OtherCurve,
    #[error("peer presented a CA certificate")]
    CaCertificate,
    /// The certificate does not verify against our CA pool (unknown CA, expired, blocklisted).
    #[error("peer certificate {name:?}: {source}")]
    Untrusted {
        name: String,
        #[source]
        source: nebula_cert::error::CertError,
    },
    #[error("peer certificate has no networks")]
    NoNetworks,
    #[error("stage 1 without an initiator index")]
    NoInitiatorIndex,
    #[error("stage 1 carries a responder index")]
    ResponderIndexInStage1,
    #[error("stage 2 without a responder index")]
    NoResponderIndex,
    #[error("stage 2 echoes another initiator index")]
    WrongInitiatorIndex,
}
