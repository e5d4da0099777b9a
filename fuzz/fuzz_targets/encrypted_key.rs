//! Fuzz target: `nebula_cert::encrypted::decrypt_and_unmarshal_ca_private_key` with a fixed passphrase.
//! Inputs whose Argon2 cost exceeds a small budget are skipped here (see the note below); everything else runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nebula_cert::{encrypted, pem};
use prost::Message;
use proto::cert::RawNebulaEncryptedData;

/// The passphrase of the golden encrypted keys (nebula-cert/tests/data/README.md), so seeds decrypt.
const PASSPHRASE: &[u8] = b"golden passphrase";

/// Largest Argon2 work (memory KiB x iterations) a fuzz run may ask for.
///
/// The library bounds a hostile file's cost itself (`encrypted::MAX_ARGON2_MEMORY_KIB` and
/// `encrypted::MAX_ARGON2_WORK_KIB`, tens of seconds at most), and `nebula-cert/tests/golden.rs`
/// checks that over-limit parameters are refused before any work. That is still far too slow for a
/// fuzzer, so inputs above this budget are skipped here. The check decodes the parameters the way the
/// library does (prost: last value wins, repeated messages merged).
const MAX_WORK_KIB: u64 = 4 * 1024;

fn too_expensive(data: &[u8]) -> bool {
    let Ok(Some((block, _))) = pem::decode(data) else {
        return false;
    };
    let Ok(raw) = RawNebulaEncryptedData::decode(block.data.as_slice()) else {
        return false;
    };
    let Some(argon) = raw.encryption_metadata.and_then(|m| m.argon2_parameters) else {
        return false;
    };
    let work = u64::from(argon.memory).saturating_mul(u64::from(argon.iterations.max(1)));
    u64::from(argon.memory) > MAX_WORK_KIB || work > MAX_WORK_KIB
}

fuzz_target!(|data: &[u8]| {
    if too_expensive(data) {
        return;
    }
    if let Ok((_key, rest)) = encrypted::decrypt_and_unmarshal_ca_private_key(PASSPHRASE, data) {
        assert!(rest.len() < data.len(), "a decrypted key consumed no input");
    }
});
