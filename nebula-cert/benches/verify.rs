//! Benchmarks of the per-handshake certificate work: `CaPool::verify` of a Go-made host cert, and
//! `recombine_from_handshake` + verify (what a responder does with a peer's handshake cert).
//!
//! Inputs are the golden Go 1.11.0 files in `tests/data/go-1.11.0`; the pool holds Go's mixed bundle
//! (8 CAs, v1 and v2). `now` is fixed inside the files' validity.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use nebula_cert::cert::Certificate;
use nebula_cert::pool::CaPool;

/// 2030-01-01T00:00:00Z, inside every golden cert's validity.
const NOW: i64 = 1_893_456_000;

fn read(file: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/go-1.11.0")
        .join(file);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn bench_verify(c: &mut Criterion) {
    let (pool, _) = CaPool::from_pem_at(&read("bundle-mixed.crt"), NOW)
        .unwrap_or_else(|e| panic!("bundle: {e}"));
    let mut group = c.benchmark_group("cert");
    for (label, file) in [
        ("v1_25519", "host-v1-25519.crt"),
        ("v1_p256", "host-v1-p256.crt"),
        ("v2_25519", "host-v2-25519.crt"),
        ("v2_p256", "host-v2-p256.crt"),
    ] {
        let (cert, _) =
            Certificate::from_pem(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        pool.verify(NOW, &cert)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        group.bench_function(format!("verify/{label}"), |b| {
            b.iter(|| pool.verify(std::hint::black_box(NOW), std::hint::black_box(&cert)))
        });

        let wire = cert.marshal_for_handshake();
        let key = cert.public_key().to_vec();
        let (version, curve) = (cert.version(), cert.curve());
        group.bench_function(format!("recombine_verify/{label}"), |b| {
            b.iter(|| {
                let c = Certificate::recombine_from_handshake(
                    version,
                    std::hint::black_box(&wire),
                    &key,
                    curve,
                )
                .unwrap_or_else(|e| panic!("{file}: {e}"));
                pool.verify(NOW, &c)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
