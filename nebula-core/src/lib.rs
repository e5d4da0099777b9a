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
pub mod timers;

pub use engine::{
    CloseReason, DropReason, Engine, EngineConfig, Event, InsideOutcome, Outputs, OutsideOutcome,
    Transmit,
};

/// Errors of the engine's control plane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Our own configuration or credentials are unusable (a local problem, not the peer's).
    #[error("configuration: {0}")]
    Config(String),
    /// A handshake from a peer was refused (bad payload, certificate, index...).
    #[error("handshake: {0}")]
    Handshake(String),
    /// A cryptographic primitive failed (bad key material).
    #[error("crypto: {0}")]
    Crypto(String),
}
