//! Relay forwarding allocates nothing: a counting global allocator watches relay R forward
//! frames from hop H to peer V through its engine entry point (`handle_outside`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nebula_cert::{Curve, Version};
use nebula_core::engine::{EngineConfig, InsideOutcome, Outputs, OutsideOutcome};
use nebula_core::hostmap::{RelayKind, RelayState};
use nebula_core::sim::{udp_packet, Sim, TestCa};
use nebula_lighthouse::AddressBook;
use proto::header::HEADER_LEN;

/// Counts allocations made on a thread while that thread has counting switched on.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_alloc() {
    if COUNTING.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed straight to the system allocator; we only count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.load(Ordering::Relaxed) - before
}

const R_VPN: &str = "10.60.0.1";
const R_ADDR: &str = "203.0.113.1:4242";
const H_VPN: &str = "10.60.0.2";
const H_ADDR: &str = "192.0.2.2:4242";
const V_VPN: &str = "10.60.0.3";
const V_ADDR: &str = "192.0.2.3:4242";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn packet(from: &str, to: &str, marker: &[u8]) -> Vec<u8> {
    udp_packet(
        from.parse().expect("ip"),
        to.parse().expect("ip"),
        1000,
        2000,
        marker,
    )
}

/// A host that knows R as its lighthouse and advertises R as its relay.
fn host_cfg(advertise: &str) -> EngineConfig {
    EngineConfig {
        static_host_map: HashMap::from([(ip(R_VPN), vec![sa(R_ADDR)])]),
        lighthouses: vec![ip(R_VPN)],
        lighthouse_interval: Duration::from_secs(10),
        advertise_addrs: vec![sa(advertise)],
        relays: vec![ip(R_VPN)],
        ..EngineConfig::default()
    }
}

/// R is lighthouse and relay; H and V cannot reach each other directly, so H's tunnel to V
/// runs through R. Returns the sim and the indexes of R and H.
fn relayed_world() -> (Sim, usize, usize) {
    let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
    let mut sim = Sim::new(7);
    let r = sim.add_node(
        "r",
        R_ADDR,
        EngineConfig {
            am_lighthouse: true,
            am_relay: true,
            use_relays: false,
            ..EngineConfig::default()
        },
        ca.pki("r", &format!("{R_VPN}/16")),
    );
    sim.nodes[r]
        .engine
        .set_lighthouse_server(Box::new(AddressBook::new()));
    let h = sim.add_node(
        "h",
        H_ADDR,
        host_cfg(H_ADDR),
        ca.pki("h", &format!("{H_VPN}/16")),
    );
    let v = sim.add_node(
        "v",
        V_ADDR,
        host_cfg(V_ADDR),
        ca.pki("v", &format!("{V_VPN}/16")),
    );
    for (a, b) in [(H_ADDR, V_ADDR), (V_ADDR, H_ADDR)] {
        sim.blocked.push((sa(a).ip(), sa(b).ip()));
    }
    sim.run_for(Duration::from_secs(2));
    sim.inside(v, &packet(V_VPN, R_VPN, b"v-up"));
    sim.run_for(Duration::from_secs(2));
    sim.inside(h, &packet(H_VPN, V_VPN, b"first"));
    sim.run_for(Duration::from_secs(6));
    let t = sim.nodes[h].engine.tunnel_to(&ip(V_VPN)).expect("h -> v");
    assert_eq!(t.remote(), None, "h reaches v only through r");
    assert_eq!(&t.relays[..], &[ip(R_VPN)]);
    let forwarding = sim.nodes[r]
        .engine
        .relays()
        .find(ip(H_VPN), ip(V_VPN))
        .expect("r's forwarding entry from h to v");
    assert_eq!(forwarding.kind, RelayKind::Forwarding);
    assert_eq!(forwarding.state, RelayState::Established);
    (sim, r, h)
}

#[test]
fn forwarding_a_relay_frame_allocates_nothing() {
    const N: usize = 200;
    let (mut sim, r, h) = relayed_world();
    let now = sim.now;
    // N relay frames for R, sealed by H's engine (its tunnel to V is relayed).
    let pkt = packet(H_VPN, V_VPN, b"through-r");
    let mut frames = Vec::with_capacity(N);
    let mut out = Outputs::default();
    for _ in 0..N {
        let mut buf = vec![0u8; pkt.len() + 2 * HEADER_LEN + 64];
        buf[HEADER_LEN..HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
        match sim.nodes[h]
            .engine
            .handle_inside(now, &mut buf, pkt.len(), &mut out)
        {
            InsideOutcome::Send { to, len } => {
                assert_eq!(to, sa(R_ADDR));
                buf.truncate(len);
                frames.push(buf);
            }
            other => panic!("h did not seal a relay frame: {other:?}"),
        }
    }
    out.clear();
    // Warm up: the first frame may settle state (roaming checks, confirmation).
    let mut warm = frames.remove(0);
    let first = sim.nodes[r]
        .engine
        .handle_outside(now, sa(H_ADDR), &mut warm, &mut out);
    assert!(
        matches!(first, OutsideOutcome::Send { to, .. } if to == sa(V_ADDR)),
        "{first:?}"
    );
    out.clear();
    let engine = &mut sim.nodes[r].engine;
    let (mut forwarded, mut queued) = (0usize, 0usize);
    let allocs = allocations_in(|| {
        for f in frames.iter_mut() {
            if let OutsideOutcome::Send { to, len } =
                engine.handle_outside(now, sa(H_ADDR), f, &mut out)
            {
                if to == sa(V_ADDR) && len == f.len() {
                    forwarded += 1;
                }
            }
            queued += out.transmits.len();
            out.clear();
        }
    });
    assert_eq!(forwarded, N - 1, "every frame went on to v, in place");
    assert_eq!(
        queued, 0,
        "nothing went out as a queued (allocated) transmit"
    );
    assert_eq!(allocs, 0, "allocations while forwarding {} frames", N - 1);
}
