//! The batched data path: many datagrams per syscall (recvmmsg/sendmmsg, UDP GSO/GRO) and TUN
//! superpackets (IFF_VNET_HDR: TSO split before sealing, GRO coalescing after opening).

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use nebula_core::engine::{Engine, InsideOutcome, Outputs, OutsideOutcome};
use proto::header::HEADER_LEN;

use crate::daemon::Device;
use crate::offload::{
    complete_checksum, Coalescer, CoalescerConfig, Pushed, Segmenter, VNET_F_NEEDS_CSUM,
    VNET_GSO_NONE,
};
use crate::tun::{offload as tun_offload, VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use crate::udp_batch::{BatchSocket, RecvMeta, Transmit, GRO_BUFFER_LEN};

/// Datagrams read per `recvmmsg`.
const RECV_BATCH: usize = 32;
/// Sealed bytes gathered before a send: a few superpackets' worth.
const ARENA_LEN: usize = 1 << 20;
/// Room one TUN read can need in the arena (a 64 KiB superpacket plus its sealed segments).
const ARENA_HEADROOM: usize = 2 * 65_536 + 16_384;
/// TUN reads per poll wake-up.
const TUN_BATCH: usize = 64;

/// The socket, the buffers, and the TUN offload state.
pub struct DataPath {
    pub udp: BatchSocket,
    rx_bufs: Vec<Vec<u8>>,
    rx_meta: Vec<RecvMeta>,
    /// Sealed datagrams waiting to be sent, and where each one is.
    arena: Vec<u8>,
    pending: Vec<(SocketAddr, Range<usize>)>,
    /// Packets read from the TUN carry a virtio_net_hdr.
    vnet: bool,
    coalescer: Option<Coalescer>,
}

impl DataPath {
    pub fn new(udp: BatchSocket) -> DataPath {
        DataPath {
            udp,
            rx_bufs: (0..RECV_BATCH).map(|_| vec![0u8; GRO_BUFFER_LEN]).collect(),
            rx_meta: vec![RecvMeta::default(); RECV_BATCH],
            arena: vec![0u8; ARENA_LEN],
            pending: Vec::with_capacity(256),
            vnet: false,
            coalescer: None,
        }
    }

    /// The TUN reads and writes virtio headers; `offloads` are the TUNSETOFFLOAD bits the kernel
    /// accepted (TSO lets us coalesce TCP towards the TUN, USO UDP).
    pub fn set_tun_offloads(&mut self, vnet: bool, offloads: u32) {
        self.vnet = vnet;
        let tcp = offloads & (tun_offload::TSO4 | tun_offload::TSO6) != 0;
        let udp = offloads & (tun_offload::USO4 | tun_offload::USO6) != 0;
        self.coalescer = (vnet && (tcp || udp)).then(|| {
            Coalescer::new(CoalescerConfig {
                tcp,
                udp,
                ..CoalescerConfig::default()
            })
        });
    }

    /// Send control-plane datagrams.
    pub fn send_transmits(&mut self, transmits: &[nebula_core::Transmit]) {
        let list: Vec<Transmit<'_>> = transmits
            .iter()
            .map(|t| Transmit {
                to: t.to,
                payload: &t.payload,
            })
            .collect();
        send_all(&mut self.udp, &list);
    }

    /// Send the sealed datagrams gathered in the arena.
    fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let list: Vec<Transmit<'_>> = self
            .pending
            .iter()
            .filter_map(|(to, r)| {
                self.arena
                    .get(r.clone())
                    .map(|payload| Transmit { to: *to, payload })
            })
            .collect();
        send_all(&mut self.udp, &list);
        self.pending.clear();
    }

    /// Read datagrams until the socket is empty (bounded), open them, write to the TUN.
    pub fn read_udp<D: Device>(&mut self, engine: &mut Engine, tun: Option<&D>, out: &mut Outputs) {
        let mut tun_frames = 0usize;
        for _ in 0..8 {
            let n = match self.udp.recv_batch(&mut self.rx_bufs, &mut self.rx_meta) {
                Ok(n) => n,
                Err(_) => break,
            };
            let now = Instant::now();
            for (buf, meta) in self.rx_bufs.iter_mut().zip(self.rx_meta.iter()).take(n) {
                let stride = if meta.stride > 0 {
                    meta.stride
                } else {
                    meta.len.max(1)
                };
                let mut start = 0;
                while start < meta.len {
                    let end = (start + stride).min(meta.len);
                    let Some(d) = buf.get_mut(start..end) else {
                        break;
                    };
                    if let OutsideOutcome::Tun { start: s, end: e } =
                        engine.handle_outside(now, meta.addr, d, out)
                    {
                        if let Some(t) = tun {
                            tun_frames += 1;
                            deliver(t, self.vnet, self.coalescer.as_mut(), d, s, e);
                        }
                    }
                    start = end;
                }
            }
            if n < RECV_BATCH {
                break;
            }
        }
        if let (Some(t), Some(c)) = (tun, self.coalescer.as_mut()) {
            if tun_frames > 0 {
                c.flush(&mut |frame: &[u8]| {
                    let _ = t.write_packet(frame);
                });
            }
        }
    }

    /// Read packets (or superpackets) from the TUN, seal them, send them in batches.
    pub fn read_tun<D: Device>(
        &mut self,
        engine: &mut Engine,
        tun: &D,
        is_dropped: &dyn Fn(&[u8]) -> bool,
        out: &mut Outputs,
    ) {
        let mut off = 0usize;
        for _ in 0..TUN_BATCH {
            if off + ARENA_HEADROOM > self.arena.len() {
                self.flush_pending();
                off = 0;
            }
            // Read so the IP packet lands at off + HEADER_LEN: room for our header in front.
            let vlen = if self.vnet { VIRTIO_NET_HDR_LEN } else { 0 };
            let read_at = off + HEADER_LEN - vlen;
            let n = match self.arena.get_mut(read_at..read_at + 65_535 + vlen) {
                Some(b) => match tun.read_packet(b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                None => break,
            };
            if n < vlen {
                continue;
            }
            let plen = n - vlen;
            let pkt_at = off + HEADER_LEN;
            let hdr = if self.vnet {
                VirtioNetHdr::parse(&self.arena[read_at..pkt_at])
            } else {
                None
            };
            let now = Instant::now();
            match hdr {
                Some(h) if h.gso_type != VNET_GSO_NONE => {
                    // A superpacket: cut it into MSS-sized packets sealed one by one after it.
                    let mut w = pkt_at + plen + 16;
                    let (head, tail) = self.arena.split_at_mut(pkt_at + plen);
                    let superpacket = &head[pkt_at..];
                    let Ok(mut seg) = Segmenter::new(&h, superpacket, None) else {
                        continue;
                    };
                    let tail_base = pkt_at + plen;
                    loop {
                        let rel = w - tail_base;
                        let Some(slot) = tail.get_mut(rel..) else {
                            break;
                        };
                        let Some(dst) = slot.get_mut(HEADER_LEN..) else {
                            break;
                        };
                        let len = match seg.next_into(dst) {
                            Ok(Some(len)) => len,
                            _ => break,
                        };
                        if is_dropped(&slot[HEADER_LEN..HEADER_LEN + len]) {
                            continue;
                        }
                        if let InsideOutcome::Send { to, len: dl } =
                            engine.handle_inside(now, slot, len, out)
                        {
                            self.pending.push((to, w..w + dl));
                            w += dl;
                        }
                    }
                    off = w;
                }
                other => {
                    if let Some(h) = other {
                        if h.flags & VNET_F_NEEDS_CSUM != 0 {
                            let _ = complete_checksum(&h, &mut self.arena[pkt_at..pkt_at + plen]);
                        }
                    }
                    if is_dropped(&self.arena[pkt_at..pkt_at + plen]) {
                        continue;
                    }
                    let slot = &mut self.arena[off..];
                    if let InsideOutcome::Send { to, len } =
                        engine.handle_inside(now, slot, plen, out)
                    {
                        self.pending.push((to, off..off + len));
                        off += len;
                    }
                }
            }
            if !out.transmits.is_empty() {
                self.send_transmits(&out.transmits);
                out.transmits.clear();
            }
        }
        self.flush_pending();
    }
}

/// Write one opened packet (`d[s..e]`) to the TUN: through the coalescer, or alone with a zero
/// virtio header in the bytes just before it (our 16-byte header gave us the room).
fn deliver<D: Device>(
    tun: &D,
    vnet: bool,
    coalescer: Option<&mut Coalescer>,
    d: &mut [u8],
    s: usize,
    e: usize,
) {
    if !vnet {
        let _ = tun.write_packet(&d[s..e]);
        return;
    }
    if let Some(c) = coalescer {
        let pushed = c.push(&d[s..e], &mut |frame: &[u8]| {
            let _ = tun.write_packet(frame);
        });
        if matches!(pushed, Pushed::Held) {
            return;
        }
    }
    let Some(h) = s.checked_sub(VIRTIO_NET_HDR_LEN) else {
        return;
    };
    d[h..s].fill(0);
    let _ = tun.write_packet(&d[h..e]);
}

fn send_all(udp: &mut BatchSocket, list: &[Transmit<'_>]) {
    let mut done = 0;
    while done < list.len() {
        match udp.send_batch(&list[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The socket buffer is full: wait for room briefly rather than drop.
                let mut pfd = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(udp),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut pfd, 1, 10) };
            }
            Err(e) => {
                tracing::debug!(error = %e, "udp send failed");
                // Skip the datagram that failed (e.g. an unreachable address) and go on.
                done += 1;
            }
        }
    }
}
