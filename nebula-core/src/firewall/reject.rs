//! Reply packets for the `reject` firewall action (Go Nebula 1.11): TCP RST, ICMP type 3 code 13,
//! ICMPv6 type 1 code 1; never for ICMP errors or non-first fragments. Written into the caller's buffer.

use super::packet::{
    ipv6_find_upper_protocol, IPV4_HEADER_LEN, IPV6_HEADER_LEN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
};

/// Largest IPv4 reject: 20 byte header + 8 byte ICMP header + original header (up to 60) + 8 bytes.
pub const MAX_IPV4_REJECT_PACKET_SIZE: usize = IPV4_HEADER_LEN + 8 + 60 + 8;
/// Largest reject of all (IPv6): 40 byte header + 8 byte ICMPv6 header + up to 1000 original bytes.
pub const MAX_REJECT_PACKET_SIZE: usize = IPV6_HEADER_LEN + 8 + IPV6_REJECT_BODY_MAX;

const IPV6_REJECT_BODY_MAX: usize = 1000;
const TCP_HEADER_LEN: usize = 20;
const TTL: u8 = 64;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Adds `data` to a one's-complement running sum (RFC 1071), odd trailing byte padded with zero.
pub(crate) fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let &[hi, lo] = c {
            sum = sum.wrapping_add(u32::from(u16::from_be_bytes([hi, lo])));
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// Folds a running sum into the final (complemented) 16-bit checksum.
pub(crate) fn checksum_finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header_sum(src: &[u8], dst: &[u8], proto: u8, len: u32) -> u32 {
    let mut sum = checksum_add(0, src);
    sum = checksum_add(sum, dst);
    sum = sum.wrapping_add(u32::from(proto));
    sum = sum.wrapping_add(len & 0xffff).wrapping_add(len >> 16);
    sum
}

fn put16(buf: &mut [u8], at: usize, v: u16) -> Option<()> {
    buf.get_mut(at..at + 2)?.copy_from_slice(&v.to_be_bytes());
    Some(())
}

fn put32(buf: &mut [u8], at: usize, v: u32) -> Option<()> {
    buf.get_mut(at..at + 4)?.copy_from_slice(&v.to_be_bytes());
    Some(())
}

fn get32(buf: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

fn copy(out: &mut [u8], at: usize, src: &[u8]) -> Option<()> {
    out.get_mut(at..at + src.len())?.copy_from_slice(src);
    Some(())
}

/// Builds the reject reply to `packet` (the refused IP packet) into `out` and returns its length,
/// or `None` when no reply is due (ICMP error, non-first fragment, malformed or truncated packet,
/// `out` too small). Size `out` with [`MAX_REJECT_PACKET_SIZE`]. Source and destination are
/// swapped, so the reply goes back to the sender of `packet`.
pub fn build_reject(packet: &[u8], out: &mut [u8]) -> Option<usize> {
    match packet.first()? >> 4 {
        4 => {
            if packet.len() < IPV4_HEADER_LEN {
                return None;
            }
            // Non-first fragments have no transport header to answer.
            if packet.get(6)? & 0x1f != 0 || *packet.get(7)? != 0 {
                return None;
            }
            let ihl = usize::from(packet.first()? & 0x0f) * 4;
            if *packet.get(9)? == PROTO_TCP {
                ipv4_tcp_rst(packet, ihl, out)
            } else {
                ipv4_icmp_unreachable(packet, ihl, out)
            }
        }
        6 => {
            if packet.len() < IPV6_HEADER_LEN {
                return None;
            }
            let upper = ipv6_find_upper_protocol(packet).ok()?;
            if upper.fragment {
                return None;
            }
            if upper.protocol == PROTO_TCP {
                ipv6_tcp_rst(packet, upper.offset, out)
            } else {
                ipv6_icmp_unreachable(packet, upper.protocol, upper.offset, out)
            }
        }
        _ => None,
    }
}

/// Writes a 20 byte IPv4 header (no options, TTL 64) with swapped addresses and its checksum.
fn ipv4_header(packet: &[u8], out: &mut [u8], total_len: usize, proto: u8) -> Option<()> {
    let mut hdr = [0u8; IPV4_HEADER_LEN];
    hdr[0] = 0x45; // version 4, 5 words
    put16(&mut hdr, 2, u16::try_from(total_len).ok()?)?;
    hdr[8] = TTL;
    hdr[9] = proto;
    copy(&mut hdr, 12, packet.get(16..20)?)?;
    copy(&mut hdr, 16, packet.get(12..16)?)?;
    let sum = checksum_finish(checksum_add(0, &hdr));
    put16(&mut hdr, 10, sum)?;
    copy(out, 0, &hdr)
}

/// RST (and ACK) the way Linux's nf_reject does: if the segment carried an ACK, seq = its ack and
/// no ACK flag; otherwise ack = seq + SYN + FIN + payload length, with ACK set.
fn tcp_rst_numbers(tcp_in: &[u8]) -> Option<(u32, u32, u8)> {
    let flags = *tcp_in.get(13)?;
    if flags & TCP_ACK != 0 {
        return Some((get32(tcp_in, 8)?, 0, TCP_RST));
    }
    let data_offset = u32::from(tcp_in.get(12)? >> 4) * 4;
    let seg_len = u32::try_from(tcp_in.len()).ok()?;
    let ack = get32(tcp_in, 4)?
        .wrapping_add(u32::from((flags & TCP_SYN) >> 1))
        .wrapping_add(u32::from(flags & TCP_FIN))
        .wrapping_add(seg_len)
        .wrapping_sub(data_offset);
    Some((0, ack, TCP_RST | TCP_ACK))
}

/// Writes a bare 20 byte TCP RST with swapped ports at `out[at..]` (checksum left zero).
fn tcp_rst(tcp_in: &[u8], out: &mut [u8], at: usize) -> Option<()> {
    let (seq, ack, flags) = tcp_rst_numbers(tcp_in)?;
    let mut tcp = [0u8; TCP_HEADER_LEN];
    copy(&mut tcp, 0, tcp_in.get(2..4)?)?;
    copy(&mut tcp, 2, tcp_in.get(0..2)?)?;
    put32(&mut tcp, 4, seq)?;
    put32(&mut tcp, 8, ack)?;
    tcp[12] = ((TCP_HEADER_LEN / 4) as u8) << 4; // data offset
    tcp[13] = flags;
    copy(out, at, &tcp)
}

fn ipv4_tcp_rst(packet: &[u8], ihl: usize, out: &mut [u8]) -> Option<usize> {
    let out_len = IPV4_HEADER_LEN + TCP_HEADER_LEN;
    if packet.len() < ihl + TCP_HEADER_LEN || out.len() < out_len {
        return None;
    }
    let tcp_in = packet.get(ihl..)?;
    ipv4_header(packet, out, out_len, PROTO_TCP)?;
    tcp_rst(tcp_in, out, IPV4_HEADER_LEN)?;
    let sum = pseudo_header_sum(
        out.get(12..16)?,
        out.get(16..20)?,
        PROTO_TCP,
        TCP_HEADER_LEN as u32,
    );
    let sum = checksum_finish(checksum_add(sum, out.get(IPV4_HEADER_LEN..out_len)?));
    put16(out, IPV4_HEADER_LEN + 16, sum)?;
    Some(out_len)
}

fn ipv4_icmp_unreachable(packet: &[u8], ihl: usize, out: &mut [u8]) -> Option<usize> {
    if packet.len() < ihl {
        return None;
    }
    // No ICMP errors in answer to ICMP errors (unreachable, source quench, redirect, time
    // exceeded, parameter problem).
    if *packet.get(9)? == PROTO_ICMP {
        if let Some(t) = packet.get(ihl) {
            if matches!(t, 3 | 4 | 5 | 11 | 12) {
                return None;
            }
        }
    }
    // The body is the original header and the first 8 bytes after it.
    let body = packet.get(..packet.len().min(ihl + 8))?;
    let out_len = IPV4_HEADER_LEN + 8 + body.len();
    if out.len() < out_len {
        return None;
    }
    ipv4_header(packet, out, out_len, PROTO_ICMP)?;
    // Type 3 destination unreachable, code 13 communication administratively prohibited.
    copy(out, IPV4_HEADER_LEN, &[3, 13, 0, 0, 0, 0, 0, 0])?;
    copy(out, IPV4_HEADER_LEN + 8, body)?;
    let icmp = out.get_mut(IPV4_HEADER_LEN..out_len)?;
    let sum = checksum_finish(checksum_add(0, icmp));
    put16(icmp, 2, sum)?;
    Some(out_len)
}

/// Writes a 40 byte IPv6 header (hop limit 64) with swapped addresses.
fn ipv6_header(packet: &[u8], out: &mut [u8], payload_len: usize, next: u8) -> Option<()> {
    let mut hdr = [0u8; IPV6_HEADER_LEN];
    hdr[0] = 0x60; // version 6
    put16(&mut hdr, 4, u16::try_from(payload_len).ok()?)?;
    hdr[6] = next;
    hdr[7] = TTL;
    copy(&mut hdr, 8, packet.get(24..40)?)?;
    copy(&mut hdr, 24, packet.get(8..24)?)?;
    copy(out, 0, &hdr)
}

fn ipv6_tcp_rst(packet: &[u8], offset: usize, out: &mut [u8]) -> Option<usize> {
    let out_len = IPV6_HEADER_LEN + TCP_HEADER_LEN;
    if packet.len() < offset + TCP_HEADER_LEN || out.len() < out_len {
        return None;
    }
    let tcp_in = packet.get(offset..)?;
    ipv6_header(packet, out, TCP_HEADER_LEN, PROTO_TCP)?;
    tcp_rst(tcp_in, out, IPV6_HEADER_LEN)?;
    let sum = pseudo_header_sum(
        out.get(8..24)?,
        out.get(24..40)?,
        PROTO_TCP,
        TCP_HEADER_LEN as u32,
    );
    let sum = checksum_finish(checksum_add(sum, out.get(IPV6_HEADER_LEN..out_len)?));
    put16(out, IPV6_HEADER_LEN + 16, sum)?;
    Some(out_len)
}

fn ipv6_icmp_unreachable(packet: &[u8], proto: u8, offset: usize, out: &mut [u8]) -> Option<usize> {
    // No ICMPv6 errors in answer to ICMPv6 errors (types 1-4).
    if proto == PROTO_ICMPV6 {
        if let Some(t) = packet.get(offset) {
            if (1..=4).contains(t) {
                return None;
            }
        }
    }
    // As much of the original as fits in 1000 bytes, to stay under any tunnel MTU.
    let body = packet.get(..packet.len().min(IPV6_REJECT_BODY_MAX))?;
    let payload_len = 8 + body.len();
    let out_len = IPV6_HEADER_LEN + payload_len;
    if out.len() < out_len {
        return None;
    }
    ipv6_header(packet, out, payload_len, PROTO_ICMPV6)?;
    let (hdr, rest) = out.split_at_mut(IPV6_HEADER_LEN);
    // Type 1 destination unreachable, code 1 communication administratively prohibited.
    copy(rest, 0, &[1, 1, 0, 0, 0, 0, 0, 0])?;
    copy(rest, 8, body)?;
    let icmp = rest.get_mut(..payload_len)?;
    let sum = pseudo_header_sum(
        hdr.get(8..24)?,
        hdr.get(24..40)?,
        PROTO_ICMPV6,
        u32::try_from(payload_len).ok()?,
    );
    let sum = checksum_finish(checksum_add(sum, icmp));
    put16(icmp, 2, sum)?;
    Some(out_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::PROTO_UDP;

    fn v4(ihl: usize, protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; ihl];
        b[0] = 0x40 | (ihl / 4) as u8;
        b[2..4].copy_from_slice(&((ihl + payload.len()) as u16).to_be_bytes());
        b[8] = 64;
        b[9] = protocol;
        b[12..16].copy_from_slice(&[10, 0, 0, 1]);
        b[16..20].copy_from_slice(&[10, 0, 0, 2]);
        b.extend_from_slice(payload);
        b
    }

    fn v6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; IPV6_HEADER_LEN];
        b[0] = 0x60;
        b[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        b[6] = next;
        b[7] = 64;
        b[8..24].copy_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        b[24..40].copy_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(payload);
        b
    }

    fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t.extend_from_slice(data);
        t
    }

    fn build(p: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; MAX_REJECT_PACKET_SIZE];
        build_reject(p, &mut out).map(|n| out[..n].to_vec())
    }

    /// Recomputes every checksum of a generated reply: the sum over data + checksum must be 0.
    fn assert_checksums(r: &[u8]) {
        match r[0] >> 4 {
            4 => {
                assert_eq!(checksum_finish(checksum_add(0, &r[..20])), 0, "ip header");
                let body = &r[20..];
                let sum = match r[9] {
                    PROTO_TCP => {
                        pseudo_header_sum(&r[12..16], &r[16..20], PROTO_TCP, body.len() as u32)
                    }
                    _ => 0,
                };
                assert_eq!(checksum_finish(checksum_add(sum, body)), 0, "l4");
                assert_eq!(usize::from(u16::from_be_bytes([r[2], r[3]])), r.len());
            }
            6 => {
                let body = &r[40..];
                let sum = pseudo_header_sum(&r[8..24], &r[24..40], r[6], body.len() as u32);
                assert_eq!(checksum_finish(checksum_add(sum, body)), 0, "l4");
                assert_eq!(usize::from(u16::from_be_bytes([r[4], r[5]])), body.len());
            }
            v => panic!("version {v}"),
        }
    }

    #[test]
    fn checksum_known_vector() {
        // RFC 1071 example bytes: 00 01 f2 03 f4 f5 f6 f7 -> sum 0xddf2, checksum 0x220d
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum_finish(checksum_add(0, &d)), 0x220d);
        // odd length pads with zero
        assert_eq!(checksum_finish(checksum_add(0, &[0xff])), !0xff00);
    }

    #[test]
    fn ipv4_icmp_reject_sizes() {
        // iputil Test_CreateRejectPacket: ICMP from a 20 byte header + 4 bytes
        let p = v4(20, PROTO_ICMP, &[0, 3, 0, 4]);
        let r = build(&p).unwrap();
        assert_eq!(r.len(), 20 + 8 + 20 + 4);
        assert_checksums(&r);
        assert_eq!((r[9], r[20], r[21]), (PROTO_ICMP, 3, 13));
        assert_eq!(&r[12..16], &[10, 0, 0, 2]);
        assert_eq!(&r[16..20], &[10, 0, 0, 1]);
        assert_eq!(&r[28..], &p[..]);
        // max header length: 60 + 8 bytes quoted
        let p = v4(60, PROTO_ICMP, &[0, 3, 0, 4, 0, 0, 0, 0, 9, 9, 9]);
        let r = build(&p).unwrap();
        assert_eq!(r.len(), MAX_IPV4_REJECT_PACKET_SIZE);
        assert_eq!(&r[28..], &p[..68]);
        assert_checksums(&r);
        // buffer too small
        let mut small = [0u8; 40];
        assert_eq!(build_reject(&p, &mut small), None);
        // UDP gets ICMP too
        let r = build(&v4(20, PROTO_UDP, &[0, 53, 0, 53, 0, 8, 0, 0])).unwrap();
        assert_eq!((r[9], r[20], r[21]), (PROTO_ICMP, 3, 13));
        assert_checksums(&r);
    }

    #[test]
    fn ipv4_tcp_rst() {
        // max header length, data after the TCP header
        let seg = tcp(1000, 22, 5000, 0, TCP_SYN, &[1, 2, 3]);
        let p = v4(60, PROTO_TCP, &seg);
        let r = build(&p).unwrap();
        assert_eq!(r.len(), 40);
        assert_checksums(&r);
        let t = &r[20..];
        assert_eq!(u16::from_be_bytes([t[0], t[1]]), 22);
        assert_eq!(u16::from_be_bytes([t[2], t[3]]), 1000);
        assert_eq!(t[13], TCP_RST | TCP_ACK);
        // ack = seq + SYN + payload(3)
        assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), 5004);
        assert_eq!(u32::from_be_bytes([t[4], t[5], t[6], t[7]]), 0);
        // segment with ACK: RST with seq = its ack
        let seg = tcp(1000, 22, 5000, 777, TCP_ACK | TCP_FIN, &[]);
        let r = build(&v4(20, PROTO_TCP, &seg)).unwrap();
        assert_checksums(&r);
        let t = &r[20..];
        assert_eq!(t[13], TCP_RST);
        assert_eq!(u32::from_be_bytes([t[4], t[5], t[6], t[7]]), 777);
        // FIN without ACK counts one; seq wraps
        let seg = tcp(1, 2, u32::MAX, 0, TCP_FIN, &[]);
        let r = build(&v4(20, PROTO_TCP, &seg)).unwrap();
        assert_eq!(u32::from_be_bytes([r[28], r[29], r[30], r[31]]), 0);
        // truncated TCP header: nothing
        assert_eq!(build(&v4(20, PROTO_TCP, &[0, 1, 0, 2])), None);
    }

    #[test]
    fn ipv4_no_reject_for_fragments_or_icmp_errors() {
        let mut p = v4(20, PROTO_UDP, &[0; 8]);
        p[6] = 0x00;
        p[7] = 0x01;
        assert_eq!(build(&p), None, "non-zero offset");
        p[6] = 0x20;
        p[7] = 0;
        assert!(build(&p).is_some(), "MF, offset 0");
        p[6] = 0x40;
        assert!(build(&p).is_some(), "DF");
        for t in [3u8, 4, 5, 11, 12] {
            assert_eq!(
                build(&v4(20, PROTO_ICMP, &[t, 0, 0, 0, 0, 0, 0, 0])),
                None,
                "type {t}"
            );
        }
        for t in [0u8, 8, 13, 14] {
            assert!(
                build(&v4(20, PROTO_ICMP, &[t, 0, 0, 0, 0, 0, 0, 0])).is_some(),
                "type {t}"
            );
        }
        assert_eq!(build(&[0x45; 19]), None);
        assert_eq!(build(&[]), None);
        assert_eq!(build(&[0x30; 40]), None);
    }

    #[test]
    fn ipv6_icmp_reject() {
        let mut udp = vec![0u8; 20];
        udp[0..4].copy_from_slice(&[0, 80, 1, 0xbb]);
        let p = v6(PROTO_UDP, &udp);
        let r = build(&p).unwrap();
        assert_eq!(r.len(), 40 + 8 + p.len());
        assert_eq!(r[0] >> 4, 6);
        assert_eq!((r[6], r[40], r[41]), (PROTO_ICMPV6, 1, 1));
        assert_eq!(&r[8..24], &p[24..40]);
        assert_eq!(&r[24..40], &p[8..24]);
        assert_eq!(&r[48..], &p[..]);
        assert_checksums(&r);
        // large packets are quoted up to 1000 bytes
        let p = v6(PROTO_UDP, &[7u8; 1200]);
        let r = build(&p).unwrap();
        assert_eq!(r.len(), MAX_REJECT_PACKET_SIZE);
        assert_eq!(&r[48..], &p[..1000]);
        assert_checksums(&r);
    }

    #[test]
    fn ipv6_tcp_rst() {
        let p = v6(PROTO_TCP, &tcp(80, 443, 1000, 0, TCP_SYN, &[]));
        let r = build(&p).unwrap();
        assert_eq!(r.len(), 60);
        assert_checksums(&r);
        assert_eq!(r[6], PROTO_TCP);
        let t = &r[40..];
        assert_eq!(u16::from_be_bytes([t[0], t[1]]), 443);
        assert_eq!(u16::from_be_bytes([t[2], t[3]]), 80);
        assert_eq!(t[13], TCP_RST | TCP_ACK);
        assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), 1001);

        let p = v6(PROTO_TCP, &tcp(80, 443, 1000, 2000, TCP_ACK, &[]));
        let r = build(&p).unwrap();
        assert_eq!(r[40 + 13], TCP_RST);
        assert_eq!(u32::from_be_bytes([r[44], r[45], r[46], r[47]]), 2000);
        assert_checksums(&r);

        // behind a hop-by-hop header
        let payload = [
            &[PROTO_TCP, 0, 0, 0, 0, 0, 0, 0][..],
            &tcp(80, 443, 1000, 2000, TCP_ACK, &[]),
        ]
        .concat();
        let r = build(&v6(0, &payload)).unwrap();
        assert_eq!((r.len(), r[6], r[40 + 13]), (60, PROTO_TCP, TCP_RST));
        assert_checksums(&r);
    }

    #[test]
    fn ipv6_no_reject_for_fragments_errors_or_garbage() {
        let frag = [&[PROTO_UDP, 0, 0, 9, 0, 0, 0, 1][..], &[0u8; 8]].concat();
        assert_eq!(build(&v6(44, &frag)), None);
        let first = [&[PROTO_UDP, 0, 0, 1, 0, 0, 0, 1][..], &[0u8; 8]].concat();
        assert!(build(&v6(44, &first)).is_some());
        for t in 1u8..=4 {
            assert_eq!(
                build(&v6(PROTO_ICMPV6, &[t, 0, 0, 0, 0, 0, 0, 0])),
                None,
                "type {t}"
            );
        }
        for t in [128u8, 129, 133, 134] {
            assert!(
                build(&v6(PROTO_ICMPV6, &[t, 0, 0, 0, 0, 0, 0, 0])).is_some(),
                "type {t}"
            );
        }
        assert_eq!(build(&[0x60]), None);
        assert_eq!(build(&[0x60; 39]), None);
        // chain past the end
        assert_eq!(build(&v6(60, &[PROTO_TCP, 255, 0, 0, 0, 0, 0, 0])), None);
    }
}
