//! TUN-side segmentation and coalescing for `IFF_VNET_HDR` queues, plus Internet checksums:
//! pure functions over caller buffers, no I/O and no allocation per packet.
//!
//! Outbound ([`Segmenter`], [`split_superpacket`]): a packet read from the TUN carries a
//! [`VirtioNetHdr`]. A TSO (`GSO_TCPV4`/`GSO_TCPV6`) or USO (`GSO_UDP_L4`) superpacket is cut into
//! MSS-sized IP packets, each with its own IP length, IPv4 identification and header checksum,
//! TCP sequence number and flags (FIN/PSH only on the last segment, CWR only on the first) or
//! UDP length, and a complete transport checksum. A plain packet with `NEEDS_CSUM` gets its
//! partial checksum completed ([`complete_checksum`] does it in place).
//!
//! Inbound ([`Coalescer`]): the receive-side GRO. Decrypted TCP segments (and, if enabled, UDP
//! datagrams) of one flow that follow each other are merged into one superpacket of at most
//! 64 KiB, written to the TUN behind a `virtio_net_hdr` with `GSO_TCPV4`/`GSO_TCPV6`/`GSO_UDP_L4`
//! and `NEEDS_CSUM` (the checksum field holds the pseudo-header sum, as the kernel expects).
//! Everything else passes through untouched, in order with respect to its own flow.
//!
//! Checksums ([`csum_sum`], [`internet_checksum`], [`pseudo_header_sum`], [`csum_update16`],
//! [`csum_update32`]): the one's-complement sum of RFC 1071 computed 32 bits at a time into a
//! 64-bit accumulator (vectorised by the compiler), and the incremental update of RFC 1624.

use thiserror::Error;

use crate::tun::{VirtioNetHdr, VIRTIO_NET_HDR_LEN};

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` on is partial (pseudo-header only).
pub const VNET_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
pub const VNET_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const VNET_GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: TSO over IPv4.
pub const VNET_GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: UDP fragmentation offload (UFO, legacy; not supported here).
pub const VNET_GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: TSO over IPv6.
pub const VNET_GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP segmentation offload (USO), IPv4 or IPv6.
pub const VNET_GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: ORed into `gso_type` when the TCP stream uses ECN.
pub const VNET_GSO_ECN: u8 = 0x80;

/// Largest IP packet a superpacket may become (IPv4 total length / IPv6 payload length are 16 bits).
pub const MAX_SUPERPACKET: usize = 65_535;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const TCP_CWR: u8 = 0x80;
/// Offset of the checksum in the TCP header.
const TCP_CSUM_OFF: usize = 16;
/// Offset of the checksum in the UDP header.
const UDP_CSUM_OFF: usize = 6;
const UDP_HDR_LEN: usize = 8;
/// IPv6 next-header values that are extension headers (IANA "IPv6 Extension Header Types").
const IPV6_EXTENSION_HEADERS: [u8; 11] = [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254];

/// Why a packet from the TUN could not be segmented or checksummed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// The packet is shorter than the headers it announces (or not an IP packet at all).
    #[error("packet truncated: {what} needs {need} bytes, packet has {have}")]
    Truncated {
        /// Which header or field did not fit.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The first nibble is neither 4 nor 6.
    #[error("not an IPv4 or IPv6 packet (version {0})")]
    NotIp(u8),
    /// `gso_type` is one we do not segment (UFO, or unknown).
    #[error("unsupported GSO type {0}")]
    UnsupportedGso(u8),
    /// The GSO type does not match the packet (TCPV4 on IPv6, TCP GSO on a UDP packet, ...).
    #[error("GSO type {gso_type} does not fit an IPv{version} packet with protocol {proto}")]
    GsoMismatch {
        /// The `gso_type` (ECN bit removed).
        gso_type: u8,
        /// The IP version of the packet.
        version: u8,
        /// The IPv4 protocol / IPv6 next header.
        proto: u8,
    },
    /// A GSO IPv6 packet whose transport header is not directly after the fixed header.
    #[error("IPv6 extension headers in a GSO packet are not supported")]
    Ipv6ExtensionHeaders,
    /// A GSO IPv4 packet that is itself a fragment.
    #[error("GSO IPv4 packet is a fragment")]
    Fragment,
    /// `gso_size` (or the override) is zero.
    #[error("segment size is zero")]
    ZeroSegmentSize,
    /// `hdr_len` says the headers are longer than the whole packet.
    #[error("hdr_len {hdr_len} is larger than the packet ({len} bytes)")]
    HdrLenTooLong {
        /// The header's `hdr_len`.
        hdr_len: u16,
        /// The packet length.
        len: usize,
    },
    /// `csum_start`/`csum_offset` point outside the packet or away from the transport header.
    #[error(
        "checksum position start {start} + offset {offset} is invalid for a {len}-byte packet"
    )]
    BadChecksumOffset {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// The packet length.
        len: usize,
    },
    /// Headers plus one segment would exceed the largest IP packet.
    #[error("segment of {0} bytes would exceed the largest IP packet")]
    SegmentTooLarge(usize),
    /// The caller's output buffer is too small for the next segment.
    #[error("output buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

// ------------------------------------------------------------------------------- checksums

/// Folds a 64-bit one's-complement accumulator to 16 bits (not complemented).
#[inline]
pub fn csum_fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// One's-complement addition of two folded sums.
#[inline]
pub fn csum_add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// The one's-complement sum of `data` read as big-endian 16-bit words (an odd last byte is
/// padded with zero), folded to 16 bits and not complemented.
///
/// Works 32 bits at a time in native order into a 64-bit accumulator (no carry handling
/// needed for inputs below 16 GiB; the loop vectorises), then swaps to network order once
/// (RFC 1071 §2(B): the sum is byte-order independent).
#[inline]
pub fn csum_sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        let mut words = [0u32; 8];
        for (w, b) in words.iter_mut().zip(c.chunks_exact(4)) {
            *w = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        }
        acc += words.iter().map(|&w| u64::from(w)).sum::<u64>();
    }
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(4);
    for b in &mut words {
        acc += u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    }
    let tail = words.remainder();
    let mut last = [0u8; 4];
    last[..tail.len()].copy_from_slice(tail);
    acc += u64::from(u32::from_ne_bytes(last));
    u16::from_be(csum_fold(acc))
}

/// The Internet checksum of `data` (RFC 1071): the complement of [`csum_sum`].
#[inline]
pub fn internet_checksum(data: &[u8]) -> u16 {
    !csum_sum(data)
}

/// The folded (not complemented) sum of the TCP/UDP pseudo-header. `src_dst` is the source
/// address followed by the destination address, exactly as they sit in the IP header (8 bytes
/// for IPv4 at offset 12, 32 bytes for IPv6 at offset 8); `l4_len` is the transport length.
#[inline]
pub fn pseudo_header_sum(src_dst: &[u8], proto: u8, l4_len: u32) -> u16 {
    let fixed = u64::from(proto) + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff);
    csum_add(csum_sum(src_dst), csum_fold(fixed))
}

/// RFC 1624 eqn. 3: the checksum `csum` after one 16-bit word changes from `old` to `new`.
#[inline]
pub fn csum_update16(csum: u16, old: u16, new: u16) -> u16 {
    !csum_add(csum_add(!csum, !old), new)
}

/// [`csum_update16`] for a 32-bit field (two words), e.g. an IPv4 address or a TCP sequence number.
#[inline]
pub fn csum_update32(csum: u16, old: u32, new: u32) -> u16 {
    let c = csum_update16(csum, (old >> 16) as u16, (new >> 16) as u16);
    csum_update16(c, old as u16, new as u16)
}

// ------------------------------------------------------------------------ header parsing

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_be_bytes([s[0], s[1]]),
        None => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn need(what: &'static str, need: usize, have: usize) -> Result<(), OffloadError> {
    if have < need {
        return Err(OffloadError::Truncated { what, need, have });
    }
    Ok(())
}

/// The IP layer of a packet, validated so that `l4_off <= len`.
#[derive(Debug, Clone, Copy)]
struct Ip {
    v6: bool,
    /// IPv4 protocol or IPv6 next header.
    proto: u8,
    /// Length of the IP header(s).
    l4_off: usize,
}

impl Ip {
    fn parse(p: &[u8]) -> Result<Ip, OffloadError> {
        let first = *p.first().ok_or(OffloadError::Truncated {
            what: "IP header",
            need: 1,
            have: 0,
        })?;
        match first >> 4 {
            4 => {
                need("IPv4 header", 20, p.len())?;
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < 20 {
                    return Err(OffloadError::Truncated {
                        what: "IPv4 IHL",
                        need: 20,
                        have: ihl,
                    });
                }
                need("IPv4 options", ihl, p.len())?;
                Ok(Ip {
                    v6: false,
                    proto: p[9],
                    l4_off: ihl,
                })
            }
            6 => {
                need("IPv6 header", 40, p.len())?;
                Ok(Ip {
                    v6: true,
                    proto: p[6],
                    l4_off: 40,
                })
            }
            v => Err(OffloadError::NotIp(v)),
        }
    }

    /// Source and destination addresses, contiguous in both header formats.
    fn addrs(self) -> std::ops::Range<usize> {
        if self.v6 {
            8..40
        } else {
            12..20
        }
    }

    fn is_fragment(self, p: &[u8]) -> bool {
        !self.v6 && be16(p, 6) & 0x3fff != 0
    }
}

/// Length of the transport header at `l4_off` (TCP data offset or the 8-byte UDP header),
/// checked against the packet.
fn l4_header_len(p: &[u8], ip: Ip) -> Result<usize, OffloadError> {
    match ip.proto {
        PROTO_TCP => {
            need("TCP header", ip.l4_off + 20, p.len())?;
            let doff = usize::from(p[ip.l4_off + 12] >> 4) * 4;
            if doff < 20 {
                return Err(OffloadError::Truncated {
                    what: "TCP data offset",
                    need: 20,
                    have: doff,
                });
            }
            need("TCP options", ip.l4_off + doff, p.len())?;
            Ok(doff)
        }
        _ => {
            need("UDP header", ip.l4_off + UDP_HDR_LEN, p.len())?;
            Ok(UDP_HDR_LEN)
        }
    }
}

/// Writes the IP length field(s) for a packet of `total` bytes and, for IPv4, the
/// identification and header checksum.
fn fix_ip_header(pkt: &mut [u8], ip: Ip, total: usize, ipv4_id: Option<u16>) {
    if ip.v6 {
        put16(pkt, 4, (total - 40) as u16);
    } else {
        put16(pkt, 2, total as u16);
        if let Some(id) = ipv4_id {
            put16(pkt, 4, id);
        }
        put16(pkt, 10, 0);
        let c = pkt.get(..ip.l4_off).map_or(0, internet_checksum);
        put16(pkt, 10, c);
    }
}

/// Computes and stores the full transport checksum of `pkt` (IP header at 0, transport
/// header at `ip.l4_off`, checksum field at `csum_at`).
fn write_l4_checksum(pkt: &mut [u8], ip: Ip, csum_at: usize) {
    let l4_len = pkt.len() - ip.l4_off;
    put16(pkt, csum_at, 0);
    let pseudo = pseudo_header_sum(&pkt[ip.addrs()], ip.proto, l4_len as u32);
    let sum = csum_add(pseudo, csum_sum(&pkt[ip.l4_off..]));
    let c = !sum;
    // A UDP checksum of 0 means "none"; 0xffff is the same value in one's complement.
    put16(pkt, csum_at, if c == 0 { 0xffff } else { c });
}

/// Completes a partial checksum in place: sums `packet[csum_start..]` (whose checksum field
/// already holds the pseudo-header sum) and stores the complement at `csum_start + csum_offset`.
/// Does nothing unless `hdr.flags` has [`VNET_F_NEEDS_CSUM`]. Only for `GSO_NONE` packets;
/// superpackets go through [`Segmenter`].
pub fn complete_checksum(hdr: &VirtioNetHdr, packet: &mut [u8]) -> Result<(), OffloadError> {
    if hdr.flags & VNET_F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    let (start, at) = checksum_place(hdr, packet.len())?;
    let c = !csum_sum(&packet[start..]);
    put16(packet, at, if c == 0 { 0xffff } else { c });
    Ok(())
}

/// Where a partial checksum starts and where it goes, checked against a `len`-byte packet.
fn checksum_place(hdr: &VirtioNetHdr, len: usize) -> Result<(usize, usize), OffloadError> {
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if at + 2 > len {
        return Err(OffloadError::BadChecksumOffset {
            start: hdr.csum_start,
            offset: hdr.csum_offset,
            len,
        });
    }
    Ok((start, at))
}

// ---------------------------------------------------------------------------- segmenting

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegKind {
    /// One segment: the packet as is.
    Copy,
    /// One segment: the packet with its partial checksum completed.
    CompleteCsum { start: usize, at: usize },
    /// TSO: TCP segments.
    Tcp,
    /// USO: UDP datagrams.
    Udp,
}

/// Cuts one packet read from an `IFF_VNET_HDR` TUN queue into the IP packets it stands for,
/// one at a time into caller buffers ([`Segmenter::next_into`]).
///
/// A GSO superpacket yields `ceil(payload / mss)` segments (at least one); a plain packet
/// yields itself once (with its checksum completed if `NEEDS_CSUM` is set). All validation
/// happens in [`Segmenter::new`]; afterwards only a too-small output buffer is an error.
#[derive(Debug, Clone)]
pub struct Segmenter<'a> {
    packet: &'a [u8],
    kind: SegKind,
    ip: Ip,
    /// Headers copied into every segment.
    hdr_len: usize,
    mss: usize,
    /// Next payload byte to emit (`packet.len()` when done, or `usize::MAX` for one-shot kinds).
    pos: usize,
    index: usize,
    count: usize,
    done: bool,
}

impl<'a> Segmenter<'a> {
    /// Validates `packet` (the bytes after the virtio header) against `hdr`. `mss_override`
    /// replaces `gso_size` (e.g. to fit a smaller tunnel MTU).
    pub fn new(
        hdr: &VirtioNetHdr,
        packet: &'a [u8],
        mss_override: Option<u16>,
    ) -> Result<Segmenter<'a>, OffloadError> {
        let gso = hdr.gso_type & !VNET_GSO_ECN;
        if usize::from(hdr.hdr_len) > packet.len() {
            return Err(OffloadError::HdrLenTooLong {
                hdr_len: hdr.hdr_len,
                len: packet.len(),
            });
        }
        let ip = Ip::parse(packet)?;
        if gso == VNET_GSO_NONE {
            let kind = if hdr.flags & VNET_F_NEEDS_CSUM != 0 {
                let (start, at) = checksum_place(hdr, packet.len())?;
                SegKind::CompleteCsum { start, at }
            } else {
                SegKind::Copy
            };
            return Ok(Segmenter {
                packet,
                kind,
                ip,
                hdr_len: packet.len(),
                mss: 0,
                pos: packet.len(),
                index: 0,
                count: 1,
                done: false,
            });
        }
        let (kind, want_proto, want_v6) = match gso {
            VNET_GSO_TCPV4 => (SegKind::Tcp, PROTO_TCP, Some(false)),
            VNET_GSO_TCPV6 => (SegKind::Tcp, PROTO_TCP, Some(true)),
            VNET_GSO_UDP_L4 => (SegKind::Udp, PROTO_UDP, None),
            other => return Err(OffloadError::UnsupportedGso(other)),
        };
        let version = if ip.v6 { 6 } else { 4 };
        if ip.v6 && IPV6_EXTENSION_HEADERS.contains(&ip.proto) {
            return Err(OffloadError::Ipv6ExtensionHeaders);
        }
        if ip.proto != want_proto || want_v6.is_some_and(|v6| v6 != ip.v6) {
            return Err(OffloadError::GsoMismatch {
                gso_type: gso,
                version,
                proto: ip.proto,
            });
        }
        if ip.is_fragment(packet) {
            return Err(OffloadError::Fragment);
        }
        let l4_hdr = l4_header_len(packet, ip)?;
        let hdr_len = ip.l4_off + l4_hdr;
        if hdr.flags & VNET_F_NEEDS_CSUM != 0 && usize::from(hdr.csum_start) != ip.l4_off {
            return Err(OffloadError::BadChecksumOffset {
                start: hdr.csum_start,
                offset: hdr.csum_offset,
                len: packet.len(),
            });
        }
        let mss = usize::from(mss_override.unwrap_or(hdr.gso_size));
        if mss == 0 {
            return Err(OffloadError::ZeroSegmentSize);
        }
        if hdr_len + mss > MAX_SUPERPACKET {
            return Err(OffloadError::SegmentTooLarge(hdr_len + mss));
        }
        let payload = packet.len() - hdr_len;
        let count = payload.div_ceil(mss).max(1);
        Ok(Segmenter {
            packet,
            kind,
            ip,
            hdr_len,
            mss,
            pos: hdr_len,
            index: 0,
            count,
            done: false,
        })
    }

    /// How many IP packets this superpacket stands for.
    pub fn segment_count(&self) -> usize {
        self.count
    }

    /// The largest segment [`Segmenter::next_into`] will write (size the buffer with this).
    pub fn max_segment_len(&self) -> usize {
        match self.kind {
            SegKind::Copy | SegKind::CompleteCsum { .. } => self.packet.len(),
            SegKind::Tcp | SegKind::Udp => {
                self.hdr_len + self.mss.min(self.packet.len() - self.hdr_len)
            }
        }
    }

    /// Writes the next segment to the start of `dst` and returns its length, or `None` when
    /// every segment has been produced.
    pub fn next_into(&mut self, dst: &mut [u8]) -> Result<Option<usize>, OffloadError> {
        if self.done {
            return Ok(None);
        }
        match self.kind {
            SegKind::Copy | SegKind::CompleteCsum { .. } => {
                let n = self.packet.len();
                let have = dst.len();
                let out = dst
                    .get_mut(..n)
                    .ok_or(OffloadError::BufferTooSmall { need: n, have })?;
                out.copy_from_slice(self.packet);
                if let SegKind::CompleteCsum { start, at } = self.kind {
                    let c = !csum_sum(&out[start..]);
                    put16(out, at, if c == 0 { 0xffff } else { c });
                }
                self.done = true;
                Ok(Some(n))
            }
            SegKind::Tcp | SegKind::Udp => {
                let chunk = self.mss.min(self.packet.len() - self.pos);
                let n = self.hdr_len + chunk;
                let have = dst.len();
                let out = dst
                    .get_mut(..n)
                    .ok_or(OffloadError::BufferTooSmall { need: n, have })?;
                out[..self.hdr_len].copy_from_slice(&self.packet[..self.hdr_len]);
                out[self.hdr_len..].copy_from_slice(&self.packet[self.pos..self.pos + chunk]);
                let first = self.index == 0;
                let last = self.index + 1 == self.count;
                let ip = self.ip;
                let id = (!ip.v6).then(|| be16(self.packet, 4).wrapping_add(self.index as u16));
                fix_ip_header(out, ip, n, id);
                let l4 = ip.l4_off;
                if self.kind == SegKind::Tcp {
                    let seq0 = be32(self.packet, l4 + 4);
                    let advanced = (self.pos - self.hdr_len) as u32;
                    put32(out, l4 + 4, seq0.wrapping_add(advanced));
                    let mut flags = out[l4 + 13];
                    if !last {
                        flags &= !(TCP_FIN | TCP_PSH);
                    }
                    if !first {
                        flags &= !TCP_CWR;
                    }
                    out[l4 + 13] = flags;
                    write_l4_checksum(out, ip, l4 + TCP_CSUM_OFF);
                } else {
                    put16(out, l4 + 4, (n - l4) as u16);
                    write_l4_checksum(out, ip, l4 + UDP_CSUM_OFF);
                }
                self.pos += chunk;
                self.index += 1;
                if self.index >= self.count {
                    self.done = true;
                }
                Ok(Some(n))
            }
        }
    }
}

/// Splits `packet` (as read from the TUN after its [`VirtioNetHdr`]) and calls `out` with each
/// resulting IP packet, built in `scratch` (which must hold [`Segmenter::max_segment_len`]
/// bytes; 65,535 always suffices). Returns the number of packets produced.
pub fn split_superpacket(
    hdr: &VirtioNetHdr,
    packet: &[u8],
    mss_override: Option<u16>,
    scratch: &mut [u8],
    out: &mut impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let mut seg = Segmenter::new(hdr, packet, mss_override)?;
    let mut produced = 0;
    while let Some(n) = seg.next_into(scratch)? {
        out(&scratch[..n]);
        produced += 1;
    }
    Ok(produced)
}

// ---------------------------------------------------------------------------- coalescing

/// What the [`Coalescer`] merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalescerConfig {
    /// Flows held at once; a new flow beyond this evicts (emits) the oldest.
    pub max_flows: usize,
    /// Merge TCP segments (write them with `GSO_TCPV4`/`GSO_TCPV6`; needs TSO4/TSO6 on the TUN).
    pub tcp: bool,
    /// Merge UDP datagrams (written with `GSO_UDP_L4`; only with USO4/USO6 on the TUN, Linux 6.2+).
    pub udp: bool,
    /// Verify each packet's IPv4 header and transport checksums before merging it, so that
    /// the partial checksum of the superpacket cannot hide a bad one. Packets that fail pass
    /// through unmerged and the kernel drops them as it would have anyway.
    pub verify_checksums: bool,
}

impl Default for CoalescerConfig {
    fn default() -> CoalescerConfig {
        CoalescerConfig {
            max_flows: 8,
            tcp: true,
            udp: false,
            verify_checksums: true,
        }
    }
}

/// What [`Coalescer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The packet was copied in; it comes out through `out` later (when its flow breaks, the
    /// superpacket is full, or on [`Coalescer::flush`]).
    Held,
    /// Not coalescable: the caller writes it to the TUN itself, now, behind a zero
    /// [`VirtioNetHdr`]. Anything held for its flow was emitted first.
    PassThrough,
}

/// One flow being merged: the frame under construction (virtio header space, then the first
/// packet's headers, then every payload so far).
#[derive(Debug)]
struct Slot {
    buf: Box<[u8]>,
    active: bool,
    /// Order of creation, for eviction and flush order.
    age: u64,
    ip: Ip,
    hdr_len: usize,
    /// Bytes of IP packet in `buf` after the virtio header.
    len: usize,
    /// Payload of the first segment; every other segment but the last has the same.
    gso_size: usize,
    segs: usize,
    /// TCP: sequence number the next segment must carry.
    next_seq: u32,
}

impl Slot {
    fn packet(&self) -> &[u8] {
        &self.buf[VIRTIO_NET_HDR_LEN..VIRTIO_NET_HDR_LEN + self.len]
    }
}

/// A packet classified for coalescing.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    ip: Ip,
    hdr_len: usize,
    payload: usize,
    /// Whether it may be merged at all (flags, options, checksums); if not, it still has a
    /// flow whose held segments must go out first.
    mergeable: bool,
    /// TCP PSH set: merge, then emit.
    psh: bool,
}

/// Receive-side GRO for the TUN write path. Feed it decrypted IP packets with
/// [`Coalescer::push`]; it calls `out` with complete TUN frames (a 10-byte [`VirtioNetHdr`]
/// followed by an IP packet) and tells the caller when a packet is not its business
/// ([`Pushed::PassThrough`]). Call [`Coalescer::flush`] at the end of every receive batch.
///
/// Merging rules follow the kernel's `tcp_gro_receive`: same addresses and ports, same IP
/// header apart from length/ID/checksum (no IPv4 options, no fragments, IPv6 without extension
/// headers), same TCP header apart from sequence number, checksum and PSH (so same ACK, window
/// and options), only ACK/PSH/ECE flags, contiguous sequence numbers, every segment but the last
/// of the first one's size; a short segment or PSH ends the superpacket. UDP datagrams merge
/// when the addresses, ports and sizes fit the same way.
#[derive(Debug)]
pub struct Coalescer {
    cfg: CoalescerConfig,
    slots: Vec<Slot>,
    clock: u64,
}

impl Coalescer {
    /// Allocates the flow buffers (`max_flows` x 64 KiB) once.
    pub fn new(cfg: CoalescerConfig) -> Coalescer {
        let n = cfg.max_flows.max(1);
        let slots = (0..n)
            .map(|_| Slot {
                buf: vec![0u8; VIRTIO_NET_HDR_LEN + MAX_SUPERPACKET].into_boxed_slice(),
                active: false,
                age: 0,
                ip: Ip {
                    v6: false,
                    proto: 0,
                    l4_off: 0,
                },
                hdr_len: 0,
                len: 0,
                gso_size: 0,
                segs: 0,
                next_seq: 0,
            })
            .collect();
        Coalescer {
            cfg,
            slots,
            clock: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CoalescerConfig {
        &self.cfg
    }

    /// Number of flows currently held.
    pub fn held_flows(&self) -> usize {
        self.slots.iter().filter(|s| s.active).count()
    }

    /// Offers one decrypted IP packet. Frames that become complete are passed to `out`
    /// (each a [`VirtioNetHdr`] then an IP packet, ready for one TUN write).
    pub fn push(&mut self, packet: &[u8], out: &mut impl FnMut(&[u8])) -> Pushed {
        let Some(c) = self.classify(packet) else {
            return Pushed::PassThrough;
        };
        let found = self
            .slots
            .iter()
            .position(|s| s.active && same_flow(s.packet(), s.ip, packet, c.ip));
        if let Some(i) = found {
            if c.mergeable && self.try_append(i, packet, &c) {
                if self.slot_closed(i, &c) {
                    self.emit(i, out);
                }
                return Pushed::Held;
            }
            self.emit(i, out);
        }
        if !c.mergeable || c.psh || c.payload == 0 {
            return Pushed::PassThrough;
        }
        let i = self.free_slot(out);
        self.start(i, packet, &c);
        Pushed::Held
    }

    /// Emits every held flow (oldest first). Call at the end of each receive batch.
    pub fn flush(&mut self, out: &mut impl FnMut(&[u8])) {
        loop {
            let oldest = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active)
                .min_by_key(|(_, s)| s.age)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => self.emit(i, out),
                None => return,
            }
        }
    }

    /// Decides whether `p` belongs to the coalescer at all (TCP/UDP as configured, parsable),
    /// and whether it may be merged.
    fn classify(&self, p: &[u8]) -> Option<Candidate> {
        let ip = Ip::parse(p).ok()?;
        let wanted = match ip.proto {
            PROTO_TCP => self.cfg.tcp,
            PROTO_UDP => self.cfg.udp,
            _ => false,
        };
        if !wanted || ip.is_fragment(p) {
            return None;
        }
        let l4_hdr = l4_header_len(p, ip).ok()?;
        let hdr_len = ip.l4_off + l4_hdr;
        let payload = p.len() - hdr_len;
        let mut mergeable = true;
        // Exact lengths only (no link-layer padding, no jumbograms).
        let ip_len = if ip.v6 {
            usize::from(be16(p, 4)) + 40
        } else {
            usize::from(be16(p, 2))
        };
        if ip_len != p.len() || (!ip.v6 && ip.l4_off != 20) {
            mergeable = false;
        }
        let mut psh = false;
        if ip.proto == PROTO_TCP {
            let flags = p[ip.l4_off + 13];
            psh = flags & TCP_PSH != 0;
            if flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_URG | TCP_CWR) != 0
                || flags & TCP_ACK == 0
            {
                mergeable = false;
            }
        } else if usize::from(be16(p, ip.l4_off + 4)) != p.len() - ip.l4_off {
            mergeable = false;
        }
        if mergeable && self.cfg.verify_checksums && !checksums_ok(p, ip) {
            mergeable = false;
        }
        Some(Candidate {
            ip,
            hdr_len,
            payload,
            mergeable,
            psh,
        })
    }

    /// Appends `p`'s payload to slot `i` if it continues the superpacket there.
    fn try_append(&mut self, i: usize, p: &[u8], c: &Candidate) -> bool {
        let s = &mut self.slots[i];
        if c.payload == 0
            || c.payload > s.gso_size
            || c.hdr_len != s.hdr_len
            || s.len + c.payload > MAX_SUPERPACKET
        {
            return false;
        }
        let head = &s.buf[VIRTIO_NET_HDR_LEN..VIRTIO_NET_HDR_LEN + s.len];
        if !same_headers(head, p, c.ip, c.hdr_len) {
            return false;
        }
        if c.ip.proto == PROTO_TCP && be32(p, c.ip.l4_off + 4) != s.next_seq {
            return false;
        }
        let at = VIRTIO_NET_HDR_LEN + s.len;
        s.buf[at..at + c.payload].copy_from_slice(&p[c.hdr_len..]);
        s.len += c.payload;
        s.segs += 1;
        s.next_seq = s.next_seq.wrapping_add(c.payload as u32);
        if c.psh {
            s.buf[VIRTIO_NET_HDR_LEN + c.ip.l4_off + 13] |= TCP_PSH;
        }
        true
    }

    /// After an append: a short segment, PSH, or no room for another full segment ends it.
    fn slot_closed(&self, i: usize, c: &Candidate) -> bool {
        let s = &self.slots[i];
        c.psh || c.payload < s.gso_size || s.len + s.gso_size > MAX_SUPERPACKET
    }

    /// A free slot, evicting (emitting) the oldest flow if all are busy.
    fn free_slot(&mut self, out: &mut impl FnMut(&[u8])) -> usize {
        if let Some(i) = self.slots.iter().position(|s| !s.active) {
            return i;
        }
        let oldest = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.age)
            .map_or(0, |(i, _)| i);
        self.emit(oldest, out);
        oldest
    }

    fn start(&mut self, i: usize, p: &[u8], c: &Candidate) {
        self.clock += 1;
        let s = &mut self.slots[i];
        s.buf[VIRTIO_NET_HDR_LEN..VIRTIO_NET_HDR_LEN + p.len()].copy_from_slice(p);
        s.active = true;
        s.age = self.clock;
        s.ip = c.ip;
        s.hdr_len = c.hdr_len;
        s.len = p.len();
        s.gso_size = c.payload;
        s.segs = 1;
        s.next_seq = if c.ip.proto == PROTO_TCP {
            be32(p, c.ip.l4_off + 4).wrapping_add(c.payload as u32)
        } else {
            0
        };
    }

    /// Writes slot `i` out as one frame and frees it.
    fn emit(&mut self, i: usize, out: &mut impl FnMut(&[u8])) {
        let s = &mut self.slots[i];
        if !s.active {
            return;
        }
        s.active = false;
        let frame_len = VIRTIO_NET_HDR_LEN + s.len;
        let hdr = if s.segs == 1 {
            // The original packet, untouched.
            VirtioNetHdr::default()
        } else {
            let ip = s.ip;
            let pkt = &mut s.buf[VIRTIO_NET_HDR_LEN..frame_len];
            fix_ip_header(pkt, ip, pkt.len(), None);
            let l4_len = pkt.len() - ip.l4_off;
            let (gso_type, csum_offset) = if ip.proto == PROTO_TCP {
                let t = if ip.v6 {
                    VNET_GSO_TCPV6
                } else {
                    VNET_GSO_TCPV4
                };
                (t, TCP_CSUM_OFF)
            } else {
                put16(pkt, ip.l4_off + 4, l4_len as u16);
                (VNET_GSO_UDP_L4, UDP_CSUM_OFF)
            };
            let pseudo = pseudo_header_sum(&pkt[ip.addrs()], ip.proto, l4_len as u32);
            put16(pkt, ip.l4_off + csum_offset, pseudo);
            VirtioNetHdr {
                flags: VNET_F_NEEDS_CSUM,
                gso_type,
                hdr_len: s.hdr_len as u16,
                gso_size: s.gso_size as u16,
                csum_start: ip.l4_off as u16,
                csum_offset: csum_offset as u16,
            }
        };
        s.buf[..VIRTIO_NET_HDR_LEN].copy_from_slice(&hdr.to_bytes());
        out(&s.buf[..frame_len]);
    }
}

/// Same addresses, protocol and ports.
fn same_flow(a: &[u8], aip: Ip, b: &[u8], bip: Ip) -> bool {
    aip.v6 == bip.v6
        && aip.proto == bip.proto
        && a.get(aip.addrs()) == b.get(bip.addrs())
        && a.get(aip.l4_off..aip.l4_off + 4) == b.get(bip.l4_off..bip.l4_off + 4)
}

/// The headers of `p` match the held `head` in everything that must be equal for a merge.
/// Both are known to have `hdr_len` bytes of headers and the same flow.
fn same_headers(head: &[u8], p: &[u8], ip: Ip, hdr_len: usize) -> bool {
    let (Some(h), Some(q)) = (head.get(..hdr_len), p.get(..hdr_len)) else {
        return false;
    };
    let same = |r: std::ops::Range<usize>| h.get(r.clone()) == q.get(r);
    let ip_ok = if ip.v6 {
        // Version, traffic class, flow label; next header, hop limit.
        same(0..4) && same(6..8)
    } else {
        // Version/IHL, TOS; flags (DF); TTL, protocol.
        same(0..2) && (h[6] & 0x40) == (q[6] & 0x40) && same(8..10)
    };
    if !ip_ok {
        return false;
    }
    let l4 = ip.l4_off;
    if ip.proto != PROTO_TCP {
        return true;
    }
    // Ack number, data offset, flags except PSH, window, urgent pointer, options.
    same(l4 + 8..l4 + 13)
        && (h[l4 + 13] & !TCP_PSH) == (q[l4 + 13] & !TCP_PSH)
        && same(l4 + 14..l4 + 16)
        && same(l4 + 18..hdr_len)
}

/// IPv4 header checksum and the transport checksum (a zero UDP checksum over IPv4 means none).
fn checksums_ok(p: &[u8], ip: Ip) -> bool {
    if !ip.v6 && csum_sum(&p[..ip.l4_off]) != 0xffff {
        return false;
    }
    if ip.proto == PROTO_UDP && be16(p, ip.l4_off + UDP_CSUM_OFF) == 0 {
        return !ip.v6;
    }
    let l4_len = (p.len() - ip.l4_off) as u32;
    let sum = csum_add(
        pseudo_header_sum(&p[ip.addrs()], ip.proto, l4_len),
        csum_sum(&p[ip.l4_off..]),
    );
    sum == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 the slow way: big-endian words into a u32, end-around carry each step.
    fn slow_sum(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i < data.len() {
            let hi = u32::from(data[i]) << 8;
            let lo = data.get(i + 1).map_or(0, |&b| u32::from(b));
            sum += hi | lo;
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            i += 2;
        }
        sum as u16
    }

    /// Independent check of a transport checksum: builds the pseudo-header as bytes.
    fn slow_l4_valid(p: &[u8]) -> bool {
        let mut ph = Vec::new();
        let (addrs, proto, l4) = if p[0] >> 4 == 4 {
            let ihl = usize::from(p[0] & 15) * 4;
            (&p[12..20], p[9], ihl)
        } else {
            (&p[8..40], p[6], 40)
        };
        ph.extend_from_slice(addrs);
        let len = (p.len() - l4) as u32;
        if addrs.len() == 8 {
            ph.extend_from_slice(&[0, proto]);
            ph.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            ph.extend_from_slice(&len.to_be_bytes());
            ph.extend_from_slice(&[0, 0, 0, proto]);
        }
        ph.extend_from_slice(&p[l4..]);
        slow_sum(&ph) == 0xffff
    }

    fn slow_ipv4_header_valid(p: &[u8]) -> bool {
        let ihl = usize::from(p[0] & 15) * 4;
        slow_sum(&p[..ihl]) == 0xffff
    }

    fn payload(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// An IPv4 TCP superpacket as the kernel hands it over: checksum field = pseudo-header sum.
    fn tcp4_super(data: &[u8], seq: u32, flags: u8, opts: &[u8]) -> Vec<u8> {
        let thl = 20 + opts.len();
        let total = 20 + thl + data.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[1] = 0x10;
        put16(&mut p, 2, total.min(65535) as u16);
        put16(&mut p, 4, 0x1234);
        p[6] = 0x40;
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[10, 1, 0, 1]);
        p[16..20].copy_from_slice(&[10, 1, 0, 2]);
        put16(&mut p, 10, 0);
        let c = internet_checksum(&p[..20]);
        put16(&mut p, 10, c);
        put16(&mut p, 20, 40000);
        put16(&mut p, 22, 443);
        put32(&mut p, 24, seq);
        put32(&mut p, 28, 0xdead_beef);
        p[32] = ((thl / 4) as u8) << 4;
        p[33] = flags;
        put16(&mut p, 34, 502);
        p[40..40 + opts.len()].copy_from_slice(opts);
        p[20 + thl..].copy_from_slice(data);
        let ps = pseudo_header_sum(&p[12..20], PROTO_TCP, (thl + data.len()) as u32);
        put16(&mut p, 36, ps);
        p
    }

    fn tcp6_super(data: &[u8], seq: u32, flags: u8) -> Vec<u8> {
        let total = 40 + 20 + data.len();
        let mut p = vec![0u8; total];
        p[0] = 0x60;
        p[1] = 0x0a;
        p[2] = 0xbc;
        p[3] = 0xde;
        put16(&mut p, 4, (20 + data.len()) as u16);
        p[6] = PROTO_TCP;
        p[7] = 63;
        p[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        put16(&mut p, 40, 5555);
        put16(&mut p, 42, 22);
        put32(&mut p, 44, seq);
        put32(&mut p, 48, 77);
        p[52] = 5 << 4;
        p[53] = flags;
        put16(&mut p, 54, 1000);
        p[60..].copy_from_slice(data);
        let ps = pseudo_header_sum(&p[8..40], PROTO_TCP, (20 + data.len()) as u32);
        put16(&mut p, 56, ps);
        p
    }

    fn udp_super(v6: bool, data: &[u8]) -> Vec<u8> {
        let l4 = if v6 { 40 } else { 20 };
        let total = l4 + 8 + data.len();
        let mut p = vec![0u8; total];
        if v6 {
            p[0] = 0x60;
            put16(&mut p, 4, (8 + data.len()) as u16);
            p[6] = PROTO_UDP;
            p[7] = 64;
            p[8] = 0xfd;
            p[23] = 1;
            p[24] = 0xfd;
            p[39] = 2;
        } else {
            p[0] = 0x45;
            put16(&mut p, 2, total as u16);
            put16(&mut p, 4, 7);
            p[8] = 64;
            p[9] = PROTO_UDP;
            p[12..16].copy_from_slice(&[10, 1, 0, 1]);
            p[16..20].copy_from_slice(&[10, 1, 0, 2]);
            let c = internet_checksum(&p[..20]);
            put16(&mut p, 10, c);
        }
        put16(&mut p, l4, 4242);
        put16(&mut p, l4 + 2, 4243);
        put16(&mut p, l4 + 4, (8 + data.len()) as u16);
        p[l4 + 8..].copy_from_slice(data);
        let ip = Ip::parse(&p).unwrap();
        let ps = pseudo_header_sum(&p[ip.addrs()], PROTO_UDP, (8 + data.len()) as u32);
        put16(&mut p, l4 + 6, ps);
        p
    }

    fn gso_hdr(
        gso_type: u8,
        hdr_len: usize,
        mss: u16,
        csum_start: usize,
        off: usize,
    ) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: VNET_F_NEEDS_CSUM,
            gso_type,
            hdr_len: hdr_len as u16,
            gso_size: mss,
            csum_start: csum_start as u16,
            csum_offset: off as u16,
        }
    }

    fn split_all(hdr: &VirtioNetHdr, p: &[u8], mss: Option<u16>) -> Vec<Vec<u8>> {
        let mut segs = Vec::new();
        let mut scratch = vec![0u8; 65535];
        split_superpacket(hdr, p, mss, &mut scratch, &mut |s: &[u8]| {
            segs.push(s.to_vec())
        })
        .unwrap();
        segs
    }

    #[test]
    fn fast_sum_matches_slow_reference_for_every_length_and_alignment() {
        let data = payload(2100, 7);
        for start in 0..9 {
            for len in (0..200).chain([1399, 1400, 1401, 2000]) {
                if start + len > data.len() {
                    continue;
                }
                let s = &data[start..start + len];
                assert_eq!(csum_sum(s), slow_sum(s), "start {start} len {len}");
            }
        }
        assert_eq!(csum_sum(&[]), 0);
        assert_eq!(csum_sum(&[0xff; 64]), 0xffff);
        // RFC 1071 §3 example: 0001 f203 f4f5 f6f7 sums to ddf2.
        assert_eq!(
            csum_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut hdr = tcp4_super(&[], 1, TCP_ACK, &[])[..20].to_vec();
        let c0 = be16(&hdr, 10);
        assert_eq!(csum_sum(&hdr), 0xffff);
        // Change TTL/protocol word and an address; update incrementally, compare.
        let old_w = be16(&hdr, 8);
        hdr[8] = 17;
        let c1 = csum_update16(c0, old_w, be16(&hdr, 8));
        let old_a = be32(&hdr, 12);
        put32(&mut hdr, 12, 0xc0a8_0101);
        let c2 = csum_update32(c1, old_a, 0xc0a8_0101);
        put16(&mut hdr, 10, 0);
        assert_eq!(c2, internet_checksum(&hdr));
    }

    #[test]
    fn tso4_split_fields_and_checksums() {
        let data = payload(10_000, 3);
        let opts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]; // NOP NOP timestamps
        let p = tcp4_super(
            &data,
            0xffff_f000,
            TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR,
            &opts,
        );
        let hdr = gso_hdr(VNET_GSO_TCPV4 | VNET_GSO_ECN, 52, 1380, 20, 16);
        let segs = split_all(&hdr, &p, None);
        assert_eq!(segs.len(), 8, "10000 / 1380 rounds up to 8");
        let mut rebuilt = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let last = i == segs.len() - 1;
            let chunk = if last { 10_000 - 7 * 1380 } else { 1380 };
            assert_eq!(s.len(), 52 + chunk);
            assert_eq!(usize::from(be16(s, 2)), s.len(), "IPv4 total length");
            assert_eq!(be16(s, 4), 0x1234 + i as u16, "IPv4 id increments");
            assert!(
                slow_ipv4_header_valid(s),
                "IPv4 header checksum, segment {i}"
            );
            assert!(slow_l4_valid(s), "TCP checksum, segment {i}");
            assert_eq!(
                be32(s, 24),
                0xffff_f000u32.wrapping_add((i * 1380) as u32),
                "sequence number (wraps)"
            );
            let f = s[33];
            assert_eq!(f & TCP_FIN != 0, last);
            assert_eq!(f & TCP_PSH != 0, last);
            assert_eq!(f & TCP_CWR != 0, i == 0);
            assert!(f & TCP_ACK != 0);
            assert_eq!(&s[40..52], &opts, "options copied");
            rebuilt.extend_from_slice(&s[52..]);
        }
        assert_eq!(rebuilt, data);
    }

    #[test]
    fn tso6_split_and_mss_override() {
        let data = payload(4000, 9);
        let p = tcp6_super(&data, 100, TCP_ACK | TCP_PSH);
        let hdr = gso_hdr(VNET_GSO_TCPV6, 60, 1440, 40, 16);
        let segs = split_all(&hdr, &p, Some(1000));
        assert_eq!(segs.len(), 4);
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(usize::from(be16(s, 4)), s.len() - 40, "IPv6 payload length");
            assert_eq!(&s[..4], &p[..4], "traffic class and flow label kept");
            assert!(slow_l4_valid(s), "TCP/IPv6 checksum, segment {i}");
            assert_eq!(be32(s, 44), 100 + 1000 * i as u32);
            assert_eq!(s[53] & TCP_PSH != 0, i == 3);
        }
    }

    #[test]
    fn one_segment_and_empty_payload_superpackets() {
        let p = tcp4_super(&payload(500, 1), 5, TCP_ACK | TCP_PSH, &[]);
        let hdr = gso_hdr(VNET_GSO_TCPV4, 40, 1380, 20, 16);
        let segs = split_all(&hdr, &p, None);
        assert_eq!(segs.len(), 1);
        assert!(slow_l4_valid(&segs[0]) && slow_ipv4_header_valid(&segs[0]));
        assert_eq!(segs[0][33], TCP_ACK | TCP_PSH, "only segment keeps PSH");
        let bare = tcp4_super(&[], 5, TCP_ACK | TCP_FIN, &[]);
        let segs = split_all(&hdr, &bare, None);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].len(), 40);
        assert!(slow_l4_valid(&segs[0]));
        // Exactly a multiple of the MSS: no empty trailing segment.
        let p = tcp4_super(&payload(2760, 2), 5, TCP_ACK, &[]);
        assert_eq!(split_all(&hdr, &p, None).len(), 2);
    }

    #[test]
    fn uso_split_v4_and_v6() {
        for v6 in [false, true] {
            let data = payload(3000, 4);
            let p = udp_super(v6, &data);
            let l4 = if v6 { 40 } else { 20 };
            let hdr = gso_hdr(VNET_GSO_UDP_L4, l4 + 8, 1200, l4, 6);
            let segs = split_all(&hdr, &p, None);
            assert_eq!(segs.len(), 3);
            let mut rebuilt = Vec::new();
            for s in &segs {
                assert_eq!(usize::from(be16(s, l4 + 4)), s.len() - l4, "UDP length");
                assert!(slow_l4_valid(s), "UDP checksum (v6 {v6})");
                assert_ne!(be16(s, l4 + 6), 0);
                if !v6 {
                    assert!(slow_ipv4_header_valid(s));
                }
                rebuilt.extend_from_slice(&s[l4 + 8..]);
            }
            assert_eq!(rebuilt, data);
        }
    }

    #[test]
    fn plain_packet_checksum_completed() {
        let mut p = tcp4_super(&payload(333, 5), 9, TCP_ACK, &[]);
        let hdr = VirtioNetHdr {
            flags: VNET_F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..VirtioNetHdr::default()
        };
        let segs = split_all(&hdr, &p, None);
        assert_eq!(segs.len(), 1);
        assert!(slow_l4_valid(&segs[0]));
        complete_checksum(&hdr, &mut p).unwrap();
        assert_eq!(p, segs[0]);
        // Without NEEDS_CSUM the packet is copied as is.
        let q = tcp4_super(&payload(10, 5), 9, TCP_ACK, &[]);
        assert_eq!(split_all(&VirtioNetHdr::default(), &q, None), vec![q]);
    }

    #[test]
    fn bad_headers_are_errors_not_panics() {
        let p = tcp4_super(&payload(3000, 1), 1, TCP_ACK, &[]);
        let tso = gso_hdr(VNET_GSO_TCPV4, 40, 1380, 20, 16);
        let e = |h: &VirtioNetHdr, p: &[u8]| Segmenter::new(h, p, None).err();
        // Every truncation of the packet.
        for n in 0..40 {
            assert!(e(&tso, &p[..n]).is_some(), "truncated to {n}");
        }
        let big = VirtioNetHdr {
            hdr_len: 4000,
            ..tso
        };
        assert!(matches!(
            e(&big, &p),
            Some(OffloadError::HdrLenTooLong { .. })
        ));
        let zero = VirtioNetHdr { gso_size: 0, ..tso };
        assert_eq!(e(&zero, &p), Some(OffloadError::ZeroSegmentSize));
        let v6 = VirtioNetHdr {
            gso_type: VNET_GSO_TCPV6,
            ..tso
        };
        assert!(matches!(e(&v6, &p), Some(OffloadError::GsoMismatch { .. })));
        let ufo = VirtioNetHdr {
            gso_type: VNET_GSO_UDP,
            ..tso
        };
        assert_eq!(
            e(&ufo, &p),
            Some(OffloadError::UnsupportedGso(VNET_GSO_UDP))
        );
        let bad_start = VirtioNetHdr {
            csum_start: 24,
            ..tso
        };
        assert!(matches!(
            e(&bad_start, &p),
            Some(OffloadError::BadChecksumOffset { .. })
        ));
        let plain = VirtioNetHdr {
            flags: VNET_F_NEEDS_CSUM,
            csum_start: 3030,
            csum_offset: 16,
            ..VirtioNetHdr::default()
        };
        assert!(matches!(
            e(&plain, &p),
            Some(OffloadError::BadChecksumOffset { .. })
        ));
        let mut q = p.clone();
        assert!(complete_checksum(&plain, &mut q).is_err());
        // TCP data offset below 5 and beyond the packet.
        let mut d = p.clone();
        d[32] = 0x20;
        assert!(e(&tso, &d).is_some());
        d[32] = 0xf0;
        assert!(e(&tso, &d[..50]).is_some());
        // Fragments, wrong version, IPv6 extension headers.
        let mut f = p.clone();
        f[6] = 0x20;
        assert_eq!(e(&tso, &f), Some(OffloadError::Fragment));
        let mut v = p.clone();
        v[0] = 0x55;
        assert_eq!(e(&tso, &v), Some(OffloadError::NotIp(5)));
        let mut x = tcp6_super(&payload(3000, 1), 1, TCP_ACK);
        x[6] = 0; // hop-by-hop options first
        let h6 = gso_hdr(VNET_GSO_TCPV6, 68, 1380, 48, 16);
        assert_eq!(e(&h6, &x), Some(OffloadError::Ipv6ExtensionHeaders));
        // Output buffer too small.
        let mut seg = Segmenter::new(&tso, &p, None).unwrap();
        let mut small = [0u8; 100];
        assert!(matches!(
            seg.next_into(&mut small),
            Err(OffloadError::BufferTooSmall { .. })
        ));
    }

    #[test]
    fn split_then_coalesce_round_trips_to_the_same_superpacket() {
        let mut co = Coalescer::new(CoalescerConfig::default());
        for (p, hdr) in [
            (
                tcp4_super(&payload(44 * 1380, 8), 77, TCP_ACK | TCP_PSH, &[]),
                gso_hdr(VNET_GSO_TCPV4, 40, 1380, 20, 16),
            ),
            (
                tcp4_super(
                    &payload(9000, 8),
                    77,
                    TCP_ACK | TCP_PSH,
                    &[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8],
                ),
                gso_hdr(VNET_GSO_TCPV4, 52, 1380, 20, 16),
            ),
            (
                tcp6_super(&payload(7777, 8), 1, TCP_ACK),
                gso_hdr(VNET_GSO_TCPV6, 60, 1300, 40, 16),
            ),
        ] {
            let segs = split_all(&hdr, &p, None);
            let mut frames = Vec::new();
            let mut out = |f: &[u8]| frames.push(f.to_vec());
            for s in &segs {
                assert_eq!(co.push(s, &mut out), Pushed::Held);
            }
            co.flush(&mut out);
            assert_eq!(frames.len(), 1, "one superpacket back");
            let got = VirtioNetHdr::parse(&frames[0]).unwrap();
            assert_eq!(got, hdr, "virtio header");
            assert_eq!(&frames[0][VIRTIO_NET_HDR_LEN..], &p[..], "packet bytes");
        }
    }

    #[test]
    fn uso_split_then_coalesce_round_trips() {
        let mut co = Coalescer::new(CoalescerConfig {
            udp: true,
            ..CoalescerConfig::default()
        });
        for v6 in [false, true] {
            let l4 = if v6 { 40 } else { 20 };
            let p = udp_super(v6, &payload(5000, 2));
            let hdr = gso_hdr(VNET_GSO_UDP_L4, l4 + 8, 1200, l4, 6);
            let mut frames = Vec::new();
            let mut out = |f: &[u8]| frames.push(f.to_vec());
            for s in split_all(&hdr, &p, None) {
                assert_eq!(co.push(&s, &mut out), Pushed::Held);
            }
            co.flush(&mut out);
            assert_eq!(frames.len(), 1);
            assert_eq!(VirtioNetHdr::parse(&frames[0]).unwrap(), hdr);
            let mut want = p.clone();
            if !v6 {
                // Our segments carry incrementing ids; the head keeps the first one.
                put16(&mut want, 4, 7);
            }
            assert_eq!(&frames[0][VIRTIO_NET_HDR_LEN..], &want[..]);
        }
    }

    #[test]
    fn coalescer_flushes_on_mismatch_and_passes_others_through() {
        let mut co = Coalescer::new(CoalescerConfig::default());
        let hdr = gso_hdr(VNET_GSO_TCPV4, 40, 1000, 20, 16);
        let p = tcp4_super(&payload(5000, 1), 1000, TCP_ACK, &[]);
        let segs = split_all(&hdr, &p, None);
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut out = |f: &[u8]| frames.push(f.to_vec());
        assert_eq!(co.push(&segs[0], &mut out), Pushed::Held);
        assert_eq!(co.push(&segs[1], &mut out), Pushed::Held);
        // A gap in the sequence: the two held go out, segment 3 starts afresh.
        assert_eq!(co.push(&segs[3], &mut out), Pushed::Held);
        // UDP (not enabled) and a pure ACK of the same flow: pure ACK flushes the flow first.
        let udp = udp_super(false, &payload(100, 1));
        assert_eq!(co.push(&udp, &mut out), Pushed::PassThrough);
        let ack = tcp4_super(&[], 6000, TCP_ACK, &[]);
        let mut ack_ok = ack.clone();
        put16(&mut ack_ok, 36, 0);
        let c = !csum_add(
            pseudo_header_sum(&ack_ok[12..20], PROTO_TCP, 20),
            csum_sum(&ack_ok[20..]),
        );
        put16(&mut ack_ok, 36, c);
        assert_eq!(co.push(&ack_ok, &mut out), Pushed::PassThrough);
        // A segment with a bad checksum passes through.
        let mut bad = segs[4].clone();
        bad[60] ^= 1;
        assert_eq!(co.push(&bad, &mut out), Pushed::PassThrough);
        co.flush(&mut out);
        assert_eq!(frames.len(), 2);
        let h0 = VirtioNetHdr::parse(&frames[0]).unwrap();
        assert_eq!(h0.gso_type, VNET_GSO_TCPV4);
        assert_eq!(h0.gso_size, 1000);
        assert_eq!(frames[0].len(), VIRTIO_NET_HDR_LEN + 40 + 2000);
        // Single segment: zero header, original bytes.
        assert_eq!(
            VirtioNetHdr::parse(&frames[1]).unwrap(),
            VirtioNetHdr::default()
        );
        assert_eq!(&frames[1][VIRTIO_NET_HDR_LEN..], &segs[3][..]);
        assert_eq!(co.held_flows(), 0);
    }

    #[test]
    fn coalescer_keeps_flows_apart_and_evicts_the_oldest() {
        let mut co = Coalescer::new(CoalescerConfig {
            max_flows: 2,
            ..CoalescerConfig::default()
        });
        let hdr = gso_hdr(VNET_GSO_TCPV4, 40, 500, 20, 16);
        let flows: Vec<Vec<Vec<u8>>> = (0..3u16)
            .map(|k| {
                let mut p = tcp4_super(&payload(1000, k as u8), 1, TCP_ACK, &[]);
                put16(&mut p, 20, 40000 + k);
                split_all(&hdr, &p, None)
            })
            .collect();
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut out = |f: &[u8]| frames.push(f.to_vec());
        // Interleave flows 0 and 1; then flow 2 evicts flow 0.
        co.push(&flows[0][0], &mut out);
        co.push(&flows[1][0], &mut out);
        co.push(&flows[1][1], &mut out);
        assert_eq!(co.held_flows(), 2);
        co.push(&flows[2][0], &mut out);
        co.push(&flows[0][1], &mut out);
        co.flush(&mut out);
        let ports: Vec<(u16, usize)> = frames
            .iter()
            .map(|f| (be16(f, VIRTIO_NET_HDR_LEN + 20), f.len()))
            .collect();
        assert_eq!(
            ports,
            vec![
                (40000, VIRTIO_NET_HDR_LEN + 540),  // evicted by flow 2
                (40001, VIRTIO_NET_HDR_LEN + 1040), // both segments, evicted by flow 0
                (40002, VIRTIO_NET_HDR_LEN + 540),  // flushed, oldest first
                (40000, VIRTIO_NET_HDR_LEN + 540),
            ]
        );
    }

    #[test]
    fn coalescer_never_exceeds_64k_and_ignores_junk() {
        let mut co = Coalescer::new(CoalescerConfig::default());
        let hdr = gso_hdr(VNET_GSO_TCPV4, 40, 1460, 20, 16);
        let p = tcp4_super(&payload(200_000, 3), 1, TCP_ACK, &[]);
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut out = |f: &[u8]| frames.push(f.to_vec());
        let mut seg = Segmenter::new(&hdr, &p, None).unwrap();
        let mut buf = vec![0u8; 2000];
        let mut n_segs = 0;
        while let Some(n) = seg.next_into(&mut buf).unwrap() {
            assert_eq!(co.push(&buf[..n], &mut out), Pushed::Held);
            n_segs += 1;
        }
        co.flush(&mut out);
        let mut total = 0;
        let mut segs_back = 0;
        for f in &frames {
            assert!(f.len() - VIRTIO_NET_HDR_LEN <= MAX_SUPERPACKET);
            let h = VirtioNetHdr::parse(f).unwrap();
            let payload_len = f.len() - VIRTIO_NET_HDR_LEN - 40;
            total += payload_len;
            segs_back += payload_len.div_ceil(1460);
            assert!(h.gso_type == VNET_GSO_TCPV4 || f.len() == VIRTIO_NET_HDR_LEN + 40 + 1460);
        }
        assert_eq!(total, 200_000);
        assert_eq!(segs_back, n_segs);
        // Junk never panics and passes through.
        let mut none = |_: &[u8]| panic!("nothing held");
        for n in 0..60 {
            let j = &p[..n];
            assert_eq!(co.push(j, &mut none), Pushed::PassThrough, "len {n}");
        }
    }
}
