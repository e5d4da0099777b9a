//! The batched data path: many datagrams per syscall (recvmmsg/sendmmsg, UDP GSO/GRO) and TUN
//! superpackets (IFF_VNET_HDR: TSO split before sealing, GRO coalescing after opening).

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use nebula_core::dataplane::{FastInside, FastOutside};
use nebula_core::engine::{Event, InsideOutcome, Outputs, OutsideOutcome};
use proto::header::HEADER_LEN;

use crate::device::Device;
use crate::events::log_event;
use crate::offload::{
    complete_checksum, Coalescer, CoalescerConfig, Pushed, Segmenter, VNET_F_NEEDS_CSUM,
    VNET_GSO_NONE,
};
use crate::plane::{Plane, TableView};
use crate::tun::{offload as tun_offload, VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use crate::udp_batch::{BatchSocket, RecvMeta, Transmit, GRO_BUFFER_LEN};

/// Most datagrams read per `recvmmsg` (`listen.batch` is capped here: every slot is a 64 KiB
/// GRO buffer).
pub const MAX_RECV_BATCH: usize = 256;
/// Sealed bytes gathered before a send: a few superpackets' worth.
const ARENA_LEN: usize = 1 << 20;
/// Room one TUN read can need in the arena (a 64 KiB superpacket plus its sealed segments).
const ARENA_HEADROOM: usize = 2 * 65_536 + 16_384;
/// TUN reads per poll wake-up.
const TUN_BATCH: usize = 64;

/// The socket, the buffers, and the TUN offload state.
pub struct DataPath {
    pub udp: BatchSocket,
    /// This worker's view of the engine's data table.
    view: TableView,
    /// `batch` receive buffers of [`GRO_BUFFER_LEN`] bytes, in one allocation: it is large enough
    /// to be mapped fresh, so a page becomes resident only when a datagram lands in it (64
    /// separate 64 KiB buffers came from the heap and were resident from the start: 2.8 MiB).
    rx: Vec<u8>,
    batch: usize,
    rx_meta: Vec<RecvMeta>,
    /// Sealed datagrams waiting to be sent, and where each one is.
    arena: Vec<u8>,
    pending: Vec<(SocketAddr, Range<usize>)>,
    /// Packets read from the TUN carry a virtio_net_hdr.
    vnet: bool,
    coalescer: Option<Coalescer>,
}

impl DataPath {
    /// `batch`: datagrams per `recvmmsg` (`listen.batch`).
    pub fn new(udp: BatchSocket, batch: usize) -> DataPath {
        let batch = batch.clamp(1, MAX_RECV_BATCH);
        DataPath {
            udp,
            view: TableView::default(),
            rx: vec![0u8; batch * GRO_BUFFER_LEN],
            batch,
            rx_meta: vec![RecvMeta::default(); batch],
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

    /// Carry out what the engine asked (see [`flush_outputs`]).
    pub fn flush_outputs<D: Device>(&mut self, tun: Option<&D>, out: &mut Outputs, plane: &Plane) {
        flush_outputs(&mut self.udp, tun, out, plane);
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
    /// Ordinary packets are opened with the data table; the rest go to the engine.
    pub fn read_udp<D: Device>(&mut self, plane: &Plane, tun: Option<&D>, out: &mut Outputs) {
        let mut tun_frames = 0usize;
        let batch = self.batch;
        for _ in 0..8 {
            let mut chunks = self.rx.chunks_mut(GRO_BUFFER_LEN);
            let mut bufs: [&mut [u8]; MAX_RECV_BATCH] =
                std::array::from_fn(|_| chunks.next().unwrap_or_default());
            let n = match self.udp.recv_batch(&mut bufs[..batch], &mut self.rx_meta) {
                Ok(n) => n,
                Err(_) => break,
            };
            let now = Instant::now();
            for (buf, meta) in bufs.iter_mut().zip(self.rx_meta.iter()).take(n) {
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
                    plane.counters().received(d);
                    let fast = match self.view.current(plane) {
                        Some(table) => table.open_outside(now, meta.addr, d),
                        None => FastOutside::Engine,
                    };
                    let opened = match fast {
                        FastOutside::Tun { start, end } => Some((start, end)),
                        FastOutside::Dropped(_, reply) => {
                            out.transmits.extend(reply);
                            None
                        }
                        FastOutside::Engine => {
                            match plane.with_engine(|e| e.handle_outside(now, meta.addr, d, out)) {
                                OutsideOutcome::Tun { start, end } => Some((start, end)),
                                OutsideOutcome::Send { to, len } => {
                                    // A relay frame we forward, re-sealed in this buffer.
                                    if let Some(payload) = d.get(..len) {
                                        send_all(&mut self.udp, &[Transmit { to, payload }]);
                                    }
                                    None
                                }
                                OutsideOutcome::Handled | OutsideOutcome::Dropped(_) => None,
                            }
                        }
                    };
                    match (opened, tun) {
                        (Some((s, e)), Some(t)) => {
                            tun_frames += 1;
                            deliver(t, self.vnet, self.coalescer.as_mut(), d, s, e);
                        }
                        (Some(_), None) => plane.counters().received_for_no_device(),
                        _ => {}
                    }
                    start = end;
                }
            }
            if n < batch {
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
    /// Ordinary packets are sealed with the data table; the rest go to the engine.
    pub fn read_tun<D: Device>(
        &mut self,
        plane: &Plane,
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
                        if let Some((to, dl)) = seal(&mut self.view, plane, now, slot, len, out) {
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
                    if let Some((to, len)) = seal(&mut self.view, plane, now, slot, plen, out) {
                        self.pending.push((to, off..off + len));
                        off += len;
                    }
                }
            }
            // What the engine answered (a handshake started, a reject) goes out first.
            flush_outputs(&mut self.udp, Some(tun), out, plane);
        }
        self.flush_pending();
    }
}

/// Carry out what the engine asked: send its datagrams on `udp`, write its packets to the TUN,
/// log its events.
pub fn flush_outputs<D: Device>(
    udp: &mut BatchSocket,
    tun: Option<&D>,
    out: &mut Outputs,
    plane: &Plane,
) {
    if !out.transmits.is_empty() {
        for t in &out.transmits {
            plane.counters().sent(&t.payload);
        }
        let list: Vec<Transmit<'_>> = out
            .transmits
            .iter()
            .map(|t| Transmit {
                to: t.to,
                payload: &t.payload,
            })
            .collect();
        send_all(udp, &list);
        out.transmits.clear();
    }
    for p in out.tun.drain(..) {
        if let Some(tun) = tun {
            if tun.vnet_hdr() {
                let mut framed = vec![0u8; VIRTIO_NET_HDR_LEN + p.len()];
                framed[VIRTIO_NET_HDR_LEN..].copy_from_slice(&p);
                let _ = tun.write_packet(&framed);
            } else {
                let _ = tun.write_packet(&p);
            }
        }
    }
    let now = Instant::now();
    for e in out.events.drain(..) {
        if let Event::TestReply { vpn_addr, payload } = &e {
            plane.rtt().reply(*vpn_addr, payload, now);
        }
        log_event(&e);
        crate::dns::observe(&e);
    }
}

/// Seal one TUN packet (at `slot[HEADER_LEN..HEADER_LEN + len]`) with the data table, or with
/// the engine when the table cannot. Returns where the datagram goes and its length.
fn seal(
    view: &mut TableView,
    plane: &Plane,
    now: Instant,
    slot: &mut [u8],
    len: usize,
    out: &mut Outputs,
) -> Option<(SocketAddr, usize)> {
    let fast = match view.current(plane) {
        Some(table) => table.seal_inside(now, slot, len),
        None => FastInside::Engine,
    };
    match fast {
        FastInside::Send { to, len, promote } => {
            if let Some((idx, count)) = promote {
                plane.with_engine(|e| e.sent_from_tun(now, idx, count, out));
            }
            Some((to, len))
        }
        FastInside::Dropped(_) => None,
        FastInside::Rejected(_) => {
            let packet = slot.get(HEADER_LEN..HEADER_LEN + len).unwrap_or(&[]);
            if let Some(reply) = nebula_core::filter::reject_reply(packet) {
                out.tun.push(reply);
            }
            None
        }
        FastInside::Engine => match plane.with_engine(|e| e.handle_inside(now, slot, len, out)) {
            InsideOutcome::Send { to, len } => Some((to, len)),
            _ => None,
        },
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
