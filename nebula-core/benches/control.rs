//! The control plane's cost per event against the size of the host map, in one process: a
//! responder (a lighthouse, say) answers stage 1s from ever more distinct hosts, and at each size
//! we time new handshakes (answer + the data table the workers would get) and garbage stage 1s.
//!
//! `cargo bench -p nebula-core --bench control [-- SIZES]`, SIZES like `1000,10000,100000`
//! (default). Flat rows mean O(1) work per event. Heap bytes per tunnel are the engine's live
//! allocations (the test CA and clock aside) divided by the tunnels it holds. Handshakes are answered, not completed: the
//! initiators never send stage 3 traffic, so every tunnel stays a responder tunnel, which is what
//! a lighthouse holds for most of its peers between their packets.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use nebula_cert::{Curve, Version};
use nebula_core::aead::CipherKind;
use nebula_core::engine::{Engine, EngineConfig, Outputs};
use nebula_core::filter::AllowAll;
use nebula_core::handshake;
use nebula_core::sim::{TestCa, SIM_EPOCH_UNIX};
use proto::header::{subtype, Header, MessageType, HEADER_LEN};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// The system allocator, counting the bytes in use (heap per tunnel, without allocator slack).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Handshakes and garbage datagrams timed at each size.
const HANDSHAKES: usize = 2_000;
const GARBAGE: usize = 20_000;

/// The vpn address of simulated host `n` (10.64.0.0/10: room for 4M hosts).
fn vpn(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + n + 2)
}

/// A stage-1 datagram from a fresh host `n` to the responder.
fn stage1(ca: &TestCa, n: u32, now: Instant, rng: &mut StdRng) -> Vec<u8> {
    let pki = ca.pki(&format!("h{n}"), &format!("{}/10", vpn(n)));
    let unix = u64::try_from(SIM_EPOCH_UNIX).unwrap_or(0) * 1_000_000_000;
    let target = IpAddr::V4(Ipv4Addr::new(10, 64, 0, 1));
    handshake::initiate(
        &pki,
        CipherKind::AesGcm,
        Version::V1,
        target,
        n + 1,
        unix,
        now,
        rng,
    )
    .expect("stage 1")
    .stage1
}

fn from(n: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        10_000 + (n % 50_000) as u16,
    )
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.split(',').filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000]);
    let ca = TestCa::new("bench", Curve::Curve25519, Version::V1);
    let mut rng = StdRng::seed_from_u64(1);
    let now = Instant::now();
    let unix = u64::try_from(SIM_EPOCH_UNIX).unwrap_or(0) * 1_000_000_000;
    let cfg = EngineConfig {
        am_lighthouse: true,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(
        cfg,
        ca.pki("lighthouse", "10.64.0.1/10"),
        Box::new(AllowAll),
        Box::new(StdRng::seed_from_u64(2)),
        now,
        unix,
    );
    let mut out = Outputs::default();
    let mut next_host = 0u32;
    println!("tunnels   us/handshake   us/garbage stage 1   heap bytes/tunnel");
    let base = LIVE.load(Ordering::Relaxed);
    for size in sizes {
        // Grow to `size` tunnels (untimed).
        while engine.hostmap().len() < size {
            let mut d = stage1(&ca, next_host, now, &mut rng);
            engine.handle_outside(now, from(next_host), &mut d, &mut out);
            let _ = engine.data_table();
            out.clear();
            next_host += 1;
        }
        // New handshakes at this size (stage 1s made before the clock starts).
        let mut batch: Vec<(u32, Vec<u8>)> = (0..HANDSHAKES as u32)
            .map(|k| (next_host + k, stage1(&ca, next_host + k, now, &mut rng)))
            .collect();
        next_host += HANDSHAKES as u32;
        let t = Instant::now();
        for (n, d) in &mut batch {
            engine.handle_outside(now, from(*n), d, &mut out);
            black_box(engine.data_table());
            out.clear();
        }
        let per_handshake = t.elapsed() / HANDSHAKES as u32;
        // Garbage: a well-formed stage-1 header in front of random bytes.
        let mut garbage = vec![0u8; 300];
        let t = Instant::now();
        for k in 0..GARBAGE {
            Header::new(MessageType::Handshake, subtype::HANDSHAKE_IX_PSK0, 0, 1)
                .encode(&mut garbage[..HEADER_LEN])
                .expect("header");
            rng.fill_bytes(&mut garbage[HEADER_LEN..]);
            engine.handle_outside(now, from(k as u32), &mut garbage, &mut out);
            out.clear();
        }
        let per_garbage = t.elapsed() / GARBAGE as u32;
        drop(batch);
        let tunnels = engine.hostmap().len();
        let heap = (LIVE.load(Ordering::Relaxed) - base) as f64 / tunnels as f64;
        println!(
            "{:>7}   {:>12.1}   {:>19.2}   {:>17.0}",
            tunnels - HANDSHAKES,
            micros(per_handshake),
            micros(per_garbage),
            heap
        );
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
