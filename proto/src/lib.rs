//! Nebula's wire formats: bytes in, typed messages out, and back.
//! No crypto and no state live here; every decoder refuses bad input with an error, never a panic.
#![forbid(unsafe_code)]

pub mod cert;
