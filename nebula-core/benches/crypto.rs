//! Benchmarks of the crypto foundations: data-plane seal/open of a 1,300-byte packet in place for both
//! ciphers, and a complete Noise IX handshake (both sides) for 25519 and P256.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nebula_core::aead::{CipherKind, KeyUse, SessionCipher, TAG_LEN};
use nebula_core::noise::{DhKind, Initiator, Responder, StaticKeypair};
use rand::rngs::StdRng;
use rand::SeedableRng;

const HEADER: usize = 16;
const PAYLOAD: usize = 1300;

fn cipher_name(kind: CipherKind) -> &'static str {
    match kind {
        CipherKind::AesGcm => "aes-256-gcm",
        CipherKind::ChaChaPoly => "chacha20-poly1305",
    }
}

fn bench_aead(c: &mut Criterion) {
    let mut group = c.benchmark_group("aead_1300");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    for kind in [CipherKind::AesGcm, CipherKind::ChaChaPoly] {
        let cipher = SessionCipher::new(kind, &[0x42; 32]).expect("cipher");
        let mut frame = vec![0u8; HEADER + PAYLOAD + TAG_LEN];
        frame[0] = 0x10;
        let mut counter = 3u64;
        group.bench_function(format!("seal/{}", cipher_name(kind)), |b| {
            b.iter(|| {
                counter += 1;
                frame[8..16].copy_from_slice(&counter.to_be_bytes());
                cipher
                    .seal_frame(KeyUse::Data, counter, &mut frame, HEADER)
                    .expect("seal");
            })
        });

        // Open decrypts in place, so each iteration first restores the sealed frame; the cost of that
        // copy alone is measured as "copy-baseline".
        let mut sealed = vec![0u8; HEADER + PAYLOAD + TAG_LEN];
        sealed[8..16].copy_from_slice(&7u64.to_be_bytes());
        cipher
            .seal_frame(KeyUse::Data, 7, &mut sealed, HEADER)
            .expect("seal");
        let mut work = sealed.clone();
        group.bench_function(format!("open/{}", cipher_name(kind)), |b| {
            b.iter(|| {
                work.copy_from_slice(&sealed);
                cipher
                    .open_frame(KeyUse::Data, 7, &mut work, HEADER)
                    .expect("open")
                    .len()
            })
        });
        group.bench_function(format!("copy-baseline/{}", cipher_name(kind)), |b| {
            b.iter(|| {
                work.copy_from_slice(&sealed);
                work[20]
            })
        });
    }
    group.finish();
}

fn bench_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("noise_ix_handshake");
    for (dh, name) in [(DhKind::X25519, "25519"), (DhKind::P256, "P256")] {
        let mut rng = StdRng::seed_from_u64(1);
        let i_key = StaticKeypair::generate(dh, &mut rng);
        let r_key = StaticKeypair::generate(dh, &mut rng);
        let payload = vec![0x5a; 180]; // about the size of a real v1 handshake payload
        group.bench_function(format!("{name}_AESGCM/both_sides"), |b| {
            b.iter_batched(
                || (i_key.clone(), r_key.clone()),
                |(ik, rk)| {
                    let mut init = Initiator::new(CipherKind::AesGcm, ik);
                    let m1 = init.write_message_1(&payload, &mut rng).expect("m1");
                    let (_, _, resp) =
                        Responder::read_message_1(CipherKind::AesGcm, rk, &m1).expect("read m1");
                    let (m2, _) = resp.write_message_2(&payload, &mut rng).expect("m2");
                    init.read_message_2(&m2).expect("read m2").2
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_aead, bench_handshake);
criterion_main!(benches);
