//! Loopback tests of the batched UDP socket: GSO send, GRO and plain receive, forced and
//! kernel-triggered fallback, mixed IPv4/IPv6/dual-stack destinations in one `sendmmsg`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nebula_node::udp_batch::{
    BatchOptions, BatchSocket, RecvMeta, Transmit, GRO_BUFFER_LEN, MAX_BATCH,
};

/// Datagram `i` of a test stream: 1,200 bytes (the last `last_len`), every byte depending on
/// the index and position so any reorder, loss or corruption shows.
fn datagram(i: usize, n: usize, last_len: usize) -> Vec<u8> {
    let len = if i + 1 == n { last_len } else { 1200 };
    (0..len)
        .map(|j| (i as u8).wrapping_mul(101) ^ (j as u8).wrapping_mul(7) ^ (j >> 8) as u8)
        .collect()
}

fn bind(addr: &str, opts: &BatchOptions) -> BatchSocket {
    BatchSocket::bind(addr.parse().expect("addr"), opts).expect("bind")
}

fn addr_of(s: &BatchSocket) -> SocketAddr {
    s.local_addr().expect("local addr")
}

/// Sends everything, retrying the unsent rest (and waiting out a full socket buffer).
fn send_all(s: &mut BatchSocket, tx: &[Transmit<'_>]) {
    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while done < tx.len() {
        match s.send_batch(&tx[done..]) {
            Ok(n) => {
                assert!(n > 0, "send_batch made no progress");
                done += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "send timed out");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("send_batch: {e}"),
        }
    }
}

/// What one receive produced: each datagram with its source, and how many buffers carried
/// more than one datagram (GRO at work).
struct Received {
    datagrams: Vec<(SocketAddr, Vec<u8>)>,
    coalesced_buffers: usize,
}

fn recv_n(s: &mut BatchSocket, want: usize) -> Received {
    let mut bufs = vec![vec![0u8; GRO_BUFFER_LEN]; MAX_BATCH];
    let mut metas = vec![RecvMeta::default(); MAX_BATCH];
    let mut got = Received {
        datagrams: Vec::new(),
        coalesced_buffers: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.datagrams.len() < want {
        match s.recv_batch(&mut bufs, &mut metas) {
            Ok(n) => {
                for (buf, meta) in bufs.iter().zip(&metas).take(n) {
                    assert!(!meta.truncated, "truncated receive");
                    if meta.count() > 1 {
                        got.coalesced_buffers += 1;
                    }
                    for d in meta.datagrams(buf) {
                        got.datagrams.push((meta.addr, d.to_vec()));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "timed out with {} of {want} datagrams",
                    got.datagrams.len()
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("recv_batch: {e}"),
        }
    }
    assert_eq!(got.datagrams.len(), want, "no extra datagrams");
    got
}

/// Sends the 64-datagram stream from `tx` to `rx` and checks every byte and the source.
fn stream_64(tx: &mut BatchSocket, rx: &mut BatchSocket, to: SocketAddr) -> Received {
    let n = 64;
    let data: Vec<Vec<u8>> = (0..n).map(|i| datagram(i, n, 700)).collect();
    let transmits: Vec<Transmit<'_>> = data.iter().map(|d| Transmit { to, payload: d }).collect();
    send_all(tx, &transmits);
    let got = recv_n(rx, n);
    let from = addr_of(tx);
    for (i, (src, d)) in got.datagrams.iter().enumerate() {
        assert_eq!(d, &data[i], "datagram {i} content/order");
        assert_eq!(src.port(), from.port(), "source port");
        assert!(src.ip().is_loopback(), "source {src}");
    }
    got
}

#[test]
fn gso_send_and_gro_receive_64_datagrams_byte_exact() {
    let mut tx = bind("127.0.0.1:0", &BatchOptions::default());
    let mut rx = bind("127.0.0.1:0", &BatchOptions::default());
    let to = addr_of(&rx);
    let got = stream_64(&mut tx, &mut rx, to);
    eprintln!(
        "available tx {:?} rx {:?}; coalesced buffers {}",
        tx.available(),
        rx.available(),
        got.coalesced_buffers
    );
    if tx.offloads().gso && rx.offloads().gro {
        assert!(
            got.coalesced_buffers > 0,
            "GSO send to a GRO socket on loopback arrives coalesced"
        );
    }
    assert_eq!(tx.offloads().gso, tx.available().gso, "GSO stayed on");
}

#[test]
fn gso_send_and_plain_receive_64_datagrams() {
    let mut tx = bind("127.0.0.1:0", &BatchOptions::default());
    let mut rx = bind(
        "127.0.0.1:0",
        &BatchOptions {
            gro: false,
            ..BatchOptions::default()
        },
    );
    assert!(!rx.offloads().gro);
    let to = addr_of(&rx);
    let got = stream_64(&mut tx, &mut rx, to);
    assert_eq!(
        got.coalesced_buffers, 0,
        "without GRO every buffer is one datagram"
    );
}

#[test]
fn forced_fallback_without_gso_gives_the_same_datagrams() {
    for gro in [true, false] {
        let mut tx = bind(
            "[::1]:0",
            &BatchOptions {
                gso: false,
                ..BatchOptions::default()
            },
        );
        assert!(!tx.offloads().gso);
        let mut rx = bind(
            "[::1]:0",
            &BatchOptions {
                gro,
                ..BatchOptions::default()
            },
        );
        let to = addr_of(&rx);
        stream_64(&mut tx, &mut rx, to);
        // And switching GSO on later (where the kernel has it) still delivers the same.
        tx.set_gso(true);
        stream_64(&mut tx, &mut rx, to);
    }
}

#[test]
fn kernel_refusing_gso_falls_back_to_plain_sendmmsg() {
    let mut tx = bind("127.0.0.1:0", &BatchOptions::default());
    let mut rx = bind("127.0.0.1:0", &BatchOptions::default());
    if !tx.available().gso {
        eprintln!("kernel without UDP GSO: nothing to refuse");
        return;
    }
    // With SO_NO_CHECK (no UDP checksum) the kernel refuses GSO sends with EINVAL.
    let one: libc::c_int = 1;
    // SAFETY: plain setsockopt with a live int of the right size on an open socket.
    let rc = unsafe {
        libc::setsockopt(
            tx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_NO_CHECK");
    assert!(tx.offloads().gso);
    let to = addr_of(&rx);
    stream_64(&mut tx, &mut rx, to);
    assert!(
        !tx.offloads().gso,
        "GSO switched off after the kernel refused it"
    );
    assert!(tx.available().gso, "still reported as available");
}

#[test]
fn mixed_destinations_in_one_batch_v4_v6_and_dual_stack() {
    let opts = BatchOptions::default();
    let mut tx = bind("[::]:0", &opts); // dual-stack sender
    let mut a = bind("127.0.0.1:0", &opts);
    let mut b = bind("[::1]:0", &opts);
    let mut c = bind("[::]:0", &opts); // dual-stack receiver, reached over IPv4
    let (ta, tb) = (addr_of(&a), addr_of(&b));
    let tc: SocketAddr = SocketAddr::new("127.0.0.1".parse().expect("ip"), addr_of(&c).port());
    assert!(ta.is_ipv4() && tb.is_ipv6() && addr_of(&c).is_ipv6());
    // Runs of equal sizes (GSO candidates) interleaved with single datagrams and size changes.
    let plan: Vec<(SocketAddr, usize)> = [
        (ta, 500),
        (ta, 500),
        (ta, 500),
        (tb, 900),
        (tc, 300),
        (tc, 300),
        (tc, 100),
        (tc, 300),
        (ta, 1400),
        (tb, 900),
        (tb, 900),
        (tb, 200),
        (ta, 64),
        (ta, 1),
    ]
    .into_iter()
    .collect();
    let data: Vec<Vec<u8>> = plan
        .iter()
        .enumerate()
        .map(|(i, &(_, len))| (0..len).map(|j| (i * 31 + j) as u8).collect())
        .collect();
    let transmits: Vec<Transmit<'_>> = plan
        .iter()
        .zip(&data)
        .map(|(&(to, _), d)| Transmit { to, payload: d })
        .collect();
    let n = tx.send_batch(&transmits).expect("one sendmmsg");
    assert_eq!(n, transmits.len(), "everything in one call");
    let tx_port = addr_of(&tx).port();
    for (rx, dst, want_v4) in [(&mut a, ta, true), (&mut b, tb, false), (&mut c, tc, true)] {
        let want: Vec<&Vec<u8>> = plan
            .iter()
            .zip(&data)
            .filter(|((to, _), _)| *to == dst)
            .map(|(_, d)| d)
            .collect();
        let got = recv_n(rx, want.len());
        for ((src, d), w) in got.datagrams.iter().zip(&want) {
            assert_eq!(&d, w, "to {dst}");
            assert_eq!(src.port(), tx_port);
            assert_eq!(src.is_ipv4(), want_v4, "source {src} as seen by {dst}");
        }
    }
}

#[test]
fn ipv6_destination_on_ipv4_socket_is_rejected_cleanly() {
    let mut tx = bind("127.0.0.1:0", &BatchOptions::default());
    let mut rx = bind("127.0.0.1:0", &BatchOptions::default());
    let good = addr_of(&rx);
    let bad: SocketAddr = "[::1]:9".parse().expect("addr");
    let p = [1u8, 2, 3];
    let tx_list = [
        Transmit {
            to: good,
            payload: &p,
        },
        Transmit {
            to: bad,
            payload: &p,
        },
    ];
    assert_eq!(tx.send_batch(&tx_list).expect("first goes"), 1);
    let e = tx.send_batch(&tx_list[1..]).expect_err("v6 on v4 socket");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(recv_n(&mut rx, 1).datagrams[0].1, p);
    assert_eq!(tx.send_batch(&[]).expect("empty"), 0);
}

#[test]
fn socket_buffers_are_set_large() {
    let s = bind("127.0.0.1:0", &BatchOptions::default());
    let b = s.buffers();
    eprintln!("buffers {b:?}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(b.recv_forced && b.send_forced, "root can force: {b:?}");
        // The kernel reports twice what was set.
        assert!(b.recv >= 8 << 20 && b.send >= 8 << 20, "{b:?}");
    } else {
        assert!(b.recv > 0 && b.send > 0);
    }
    let mut s = s;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let marked = bind(
            "127.0.0.1:0",
            &BatchOptions {
                mark: 7,
                ..BatchOptions::default()
            },
        );
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a live int with its size.
        let rc = unsafe {
            libc::getsockopt(
                marked.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MARK,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!((rc, v), (0, 7), "SO_MARK applied");
    }
    let small = s.set_buffer_sizes(256 << 10, 0);
    assert!(small.recv >= 256 << 10 && small.recv < 8 << 20, "{small:?}");
    assert_eq!(small.send, b.send, "0 leaves the send side alone");
}
