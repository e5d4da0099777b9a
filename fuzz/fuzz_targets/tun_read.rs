//! Fuzz the TUN read path as the workers run it (`DataPath::read_tun`): virtio-net header parse,
//! then GSO segmentation into the space left in the arena, or checksum completion for one packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nebula_node::offload::{
    complete_checksum, csum_add, csum_sum, pseudo_header_sum, Segmenter, VNET_F_NEEDS_CSUM,
    VNET_GSO_ECN, VNET_GSO_NONE,
};
use nebula_node::tun::{VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use proto::header::HEADER_LEN;

/// Room after the superpacket, as in the worker's arena (one 64 KiB read + headroom).
const MAX_TAIL: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let [t0, t1, frame @ ..] = data else {
        return;
    };
    if frame.len() < VIRTIO_NET_HDR_LEN {
        return;
    }
    let Some(h) = VirtioNetHdr::parse(frame) else {
        return;
    };
    let mut packet = frame[VIRTIO_NET_HDR_LEN..].to_vec();
    if h.gso_type != VNET_GSO_NONE {
        let Ok(mut seg) = Segmenter::new(&h, &packet, None) else {
            return;
        };
        let expected = seg.segment_count();
        // The worker writes segments one after the other into what is left of its arena; the
        // fuzzer picks how much that is, so running out of room is exercised too.
        let mut tail = vec![0u8; usize::from(u16::from_be_bytes([*t0, *t1])) * 4 % MAX_TAIL];
        let mut w = 0;
        let mut n_out = 0;
        loop {
            let Some(dst) = tail.get_mut(w + HEADER_LEN..) else {
                break;
            };
            let len = match seg.next_into(dst) {
                Ok(Some(len)) => len,
                _ => break,
            };
            assert!(len <= dst.len());
            n_out += 1;
            let s = &dst[..len];
            if h.gso_type & !VNET_GSO_ECN != VNET_GSO_NONE {
                // Every segment carries a valid transport checksum.
                let (addrs, proto, l4) = if s[0] >> 4 == 4 {
                    let ihl = usize::from(s[0] & 15) * 4;
                    assert_eq!(csum_sum(&s[..ihl]), 0xffff, "IPv4 header checksum");
                    (&s[12..20], s[9], ihl)
                } else {
                    (&s[8..40], s[6], 40)
                };
                let sum = csum_add(
                    pseudo_header_sum(addrs, proto, (s.len() - l4) as u32),
                    csum_sum(&s[l4..]),
                );
                assert_eq!(sum, 0xffff, "transport checksum");
            }
            w += HEADER_LEN + len + 16;
        }
        assert!(n_out <= expected);
    } else if h.flags & VNET_F_NEEDS_CSUM != 0 {
        let _ = complete_checksum(&h, &mut packet);
    }
});
