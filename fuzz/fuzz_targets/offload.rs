//! Fuzz target: TUN-side segmentation (any virtio header + packet) and GRO coalescing of
//! arbitrary packets; every GSO segment must carry valid checksums, every frame must fit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nebula_node::offload::{
    csum_add, csum_sum, pseudo_header_sum, Coalescer, CoalescerConfig, Pushed, Segmenter,
    MAX_SUPERPACKET, VNET_GSO_ECN, VNET_GSO_NONE,
};
use nebula_node::tun::{VirtioNetHdr, VIRTIO_NET_HDR_LEN};

/// A produced GSO segment: IPv4 header checksum and transport checksum must verify.
fn check_segment(s: &[u8]) {
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

fuzz_target!(|data: &[u8]| {
    let Some(hdr) = VirtioNetHdr::parse(data) else {
        return;
    };
    let packet = &data[VIRTIO_NET_HDR_LEN..];
    let mut co = Coalescer::new(CoalescerConfig {
        max_flows: 2,
        tcp: true,
        udp: true,
        verify_checksums: hdr.flags & 0x80 == 0,
    });
    let mut check_frame = |f: &[u8]| {
        assert!(f.len() >= VIRTIO_NET_HDR_LEN);
        assert!(f.len() - VIRTIO_NET_HDR_LEN <= MAX_SUPERPACKET);
        let h = VirtioNetHdr::parse(f).expect("frame header");
        if h.gso_type != VNET_GSO_NONE {
            assert!(h.gso_size > 0 && usize::from(h.hdr_len) < f.len() - VIRTIO_NET_HDR_LEN);
        }
    };
    let mss = (hdr.flags & 0x40 != 0).then_some(hdr.gso_size / 3 + 1);
    if let Ok(mut seg) = Segmenter::new(&hdr, packet, mss) {
        let gso = hdr.gso_type & !VNET_GSO_ECN != VNET_GSO_NONE;
        let mut buf = vec![0u8; seg.max_segment_len()];
        let mut n_out = 0;
        while let Some(n) = seg
            .next_into(&mut buf)
            .expect("buffer sized by max_segment_len")
        {
            n_out += 1;
            if gso {
                check_segment(&buf[..n]);
            }
            let _ = co.push(&buf[..n], &mut check_frame);
        }
        assert_eq!(n_out, seg.segment_count());
    }
    // Raw packets too: the input cut at a few places.
    let cut = packet.len() / 2;
    for p in [packet, &packet[..cut], &packet[cut..]] {
        let _: Pushed = co.push(p, &mut check_frame);
    }
    co.flush(&mut check_frame);
});
