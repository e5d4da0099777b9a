//! Fuzz target: v1 (protobuf) certificates: `Certificate::from_bytes(V1, ..)` and the handshake
//! recombine path with both curves (body shared with the other version in `cert_common.rs`).
#![no_main]

#[path = "cert_common.rs"]
mod cert_common;

use libfuzzer_sys::fuzz_target;
use nebula_cert::Version;

fuzz_target!(|data: &[u8]| cert_common::run(Version::V1, data));
