//! Fuzzes the attacker-facing crypto paths of nebula-core: Noise IX message 1 and 2 parsing (both curves,
//! both ciphers), data-plane frame opening, relay tag checks, and the replay window's invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nebula_core::aead::{CipherKind, KeyUse, SessionCipher};
use nebula_core::noise::{DhKind, Initiator, Responder, StaticKeypair};
use nebula_core::replay::ReplayWindow;
use rand::rngs::StdRng;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let dh = if sel & 1 == 0 { DhKind::X25519 } else { DhKind::P256 };
    let cipher = if sel & 2 == 0 { CipherKind::AesGcm } else { CipherKind::ChaChaPoly };
    let mut rng = StdRng::seed_from_u64(u64::from(sel));
    let Ok(key) = StaticKeypair::from_private(dh, &[7u8; 32]) else {
        panic!("fixed key must load");
    };

    // Responder fed an arbitrary message 1; if it parses, answering must not panic either.
    if let Ok((_, remote, resp)) = Responder::read_message_1(cipher, key.clone(), rest) {
        assert_eq!(remote.len(), dh.public_key_len());
        let _ = resp.write_message_2(b"reply", &mut rng);
    }

    // Initiator fed an arbitrary message 2 must fail (the fuzzer cannot forge the AEAD tags).
    let mut init = Initiator::new(cipher, key);
    if init.write_message_1(b"hello", &mut rng).is_ok() {
        assert!(init.read_message_2(rest).is_err());
    }

    // Data-plane open on arbitrary frames: must fail without panicking.
    if let Ok(c) = SessionCipher::new(cipher, &[1u8; 32]) {
        let counter = rest
            .get(8..16)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes);
        let mut buf = rest.to_vec();
        assert!(c.open_frame(KeyUse::Data, counter, &mut buf, 16).is_err());
        assert!(c.open_ad_only_frame(KeyUse::Data, counter, rest).is_err());
    }

    // Replay window: update never accepts what check refused, and never accepts a counter twice.
    let mut w = ReplayWindow::after_handshake();
    for chunk in rest.chunks_exact(8) {
        let Ok(b) = <[u8; 8]>::try_from(chunk) else {
            continue;
        };
        // Keep counters clustered so the in-window paths get exercised.
        let i = u64::from_le_bytes(b) % 4096;
        let allowed = w.check(i);
        let accepted = w.update(i);
        assert!(!accepted || allowed, "update accepted {i} that check refused");
        if accepted {
            assert!(!w.check(i) && !w.update(i), "counter {i} accepted twice");
        }
    }
});
