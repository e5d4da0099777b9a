//! Nebula's wire formats: bytes in, typed messages out, and back.
//! No crypto and no state live here; every decoder refuses bad input with an error, never a panic.
#![forbid(unsafe_code)]

pub mod addr;
pub mod cert;
pub mod control;
pub mod handshake;
pub mod header;
pub mod lighthouse;
pub mod wire;

/// Re-exported so users can call `encode_to_vec` / `decode` without their own prost dependency.
pub use prost;
