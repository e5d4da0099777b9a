//! Criterion benches for the TUN-side per-packet path: TSO splitting, GRO coalescing and the
//! Internet checksum (`cargo bench -p nebula-node --bench offload`).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use nebula_node::offload::{
    internet_checksum, pseudo_header_sum, split_superpacket, Coalescer, CoalescerConfig, Pushed,
    Segmenter, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4,
};
use nebula_node::tun::VirtioNetHdr;

const MSS: usize = 1380;

/// An IPv4/TCP superpacket as the kernel hands it over with TSO: `payload` bytes after a
/// 40-byte header, checksum field holding the pseudo-header sum.
fn tso_superpacket(payload: usize) -> (VirtioNetHdr, Vec<u8>) {
    let total = 40 + payload;
    let mut p = vec![0u8; total];
    for (i, b) in p.iter_mut().enumerate().skip(40) {
        *b = (i as u8).wrapping_mul(7);
    }
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total.min(65_535) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = internet_checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&50000u16.to_be_bytes());
    p[22..24].copy_from_slice(&443u16.to_be_bytes());
    p[24..28].copy_from_slice(&1u32.to_be_bytes());
    p[28..32].copy_from_slice(&99u32.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x18; // ACK|PSH
    p[34..36].copy_from_slice(&500u16.to_be_bytes());
    let ps = pseudo_header_sum(&p[12..20], 6, (total - 20) as u32);
    p[36..38].copy_from_slice(&ps.to_be_bytes());
    let hdr = VirtioNetHdr {
        flags: VNET_F_NEEDS_CSUM,
        gso_type: VNET_GSO_TCPV4,
        hdr_len: 40,
        gso_size: MSS as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    (hdr, p)
}

fn bench_split(c: &mut Criterion) {
    // The largest superpacket: 64 KiB IP packet -> 48 segments of at most 1,380 bytes.
    let (hdr, p) = tso_superpacket(65_535 - 40);
    let mut scratch = vec![0u8; 65_535];
    let mut g = c.benchmark_group("tso_split");
    g.throughput(Throughput::Bytes(p.len() as u64));
    g.bench_function("64KiB_into_1380B_segments", |b| {
        b.iter(|| {
            let mut n = 0usize;
            let mut seg = Segmenter::new(&hdr, black_box(&p), None).expect("valid");
            while let Some(len) = seg.next_into(&mut scratch).expect("fits") {
                n += len;
            }
            black_box(n)
        })
    });
    g.bench_function("64KiB_callback_api", |b| {
        b.iter(|| {
            let mut n = 0usize;
            split_superpacket(
                &hdr,
                black_box(&p),
                None,
                &mut scratch,
                &mut |s: &[u8]| n += s.len(),
            )
            .expect("valid");
            black_box(n)
        })
    });
    g.finish();
}

fn bench_coalesce(c: &mut Criterion) {
    // 44 full segments (60,720 payload bytes) merged back into one superpacket.
    let (hdr, p) = tso_superpacket(44 * MSS);
    let mut segs = Vec::new();
    let mut scratch = vec![0u8; 65_535];
    split_superpacket(&hdr, &p, None, &mut scratch, &mut |s: &[u8]| {
        segs.push(s.to_vec())
    })
    .expect("valid");
    assert_eq!(segs.len(), 44);
    let total: usize = segs.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("gro_coalesce");
    g.throughput(Throughput::Bytes(total as u64));
    for verify in [true, false] {
        let mut co = Coalescer::new(CoalescerConfig {
            verify_checksums: verify,
            ..CoalescerConfig::default()
        });
        let name = if verify {
            "44_segments_verify_checksums"
        } else {
            "44_segments_no_verify"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut frames = 0usize;
                let mut out = |f: &[u8]| frames += f.len();
                for s in &segs {
                    let r = co.push(black_box(s), &mut out);
                    debug_assert_eq!(r, Pushed::Held);
                }
                co.flush(&mut out);
                black_box(frames)
            })
        });
    }
    g.finish();
}

fn bench_checksum(c: &mut Criterion) {
    let data: Vec<u8> = (0..1400u32).map(|i| (i * 13) as u8).collect();
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("internet_checksum_1400B", |b| {
        b.iter(|| internet_checksum(black_box(&data)))
    });
    g.finish();
}

criterion_group!(benches, bench_split, bench_coalesce, bench_checksum);
criterion_main!(benches);
