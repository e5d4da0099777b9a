//! Differential firewall test (root, network namespaces): one rule set and one list of crafted inner
//! packets, sent through Go Nebula 1.11.0 and through our `nebula`; their allow/deny verdicts must agree.
//!
//! The sender is our sans-IO engine driven by this test with the permissive `AllowAll` filter, so every
//! crafted packet (malformed, fragmented, with IPv6 extension headers, spoofed...) reaches the receiver
//! unfiltered. The receiver is a real node with a TUN device in a namespace of its own; what its firewall
//! lets through is read back from `tcpdump` on that TUN (a packet is "allowed" if its exact bytes show
//! up there). Each packet is unique (IPv4 identification / IPv6 flow label, source port, payload marker),
//! so conntrack never admits one packet because of another.
//!
//! Where Go 1.11.0 and we deliberately differ, the case says so and why: we follow Go 1.11.1, whose IPv6
//! classification fixes (slackhq/nebula#1840) are not in 1.11.0, the version Debian ships. For those cases
//! the test asserts that the difference really is there, so a fixed Go (or a regression of ours) shows up.
#![cfg(all(feature = "netns", feature = "interop"))]

use std::collections::HashSet;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use nebula_cert::cert::{Certificate, TbsCertificate};
use nebula_cert::{keys, Curve, Version};
use nebula_core::aead::TAG_LEN;
use nebula_core::engine::{Engine, EngineConfig, InsideOutcome, Outputs};
use nebula_core::filter::AllowAll;
use nebula_core::pki::Pki;
use nebula_core::sim::TestCa;
use proto::header::HEADER_LEN;
use rand::SeedableRng;

const GO_1110: &str = "/opt/go-nebula/1.11.0/usr/bin/nebula";
const TUN_DEV: &str = "fwd0";
const LISTEN_PORT: u16 = 4242;
const CA_NAME: &str = "fwdiff-ca";

// The sender (our engine, in-process) and the receiver (the node under test).
const S4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const R4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const S6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
const R6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);
/// A VPN address in the sender's certificate that lies outside the receiver's VPN networks.
const S4_FOREIGN_VPN: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// Inside the sender's certificate unsafe network 172.16.5.0/24.
const S4_UNSAFE: Ipv4Addr = Ipv4Addr::new(172, 16, 5, 9);
/// In the sender's VPN network but not its address (spoofed).
const S4_SPOOF: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
const S6_SPOOF: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0x50);
/// Inside the receiver's unsafe network 192.168.77.0/24: low and high half.
const R4_UNSAFE_LO: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 5);
const R4_UNSAFE_HI: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 200);
/// Inside the receiver's unsafe network fd99::/64.
const R6_UNSAFE: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 5);
/// Routed to the receiver by the sender but not the receiver's at all.
const R4_NOT_OURS: Ipv4Addr = Ipv4Addr::new(192, 168, 88, 5);
const R6_NOT_OURS: Ipv6Addr = Ipv6Addr::new(0xfd88, 0, 0, 0, 0, 0, 0, 5);

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;
const GRE: u8 = 47;
const SCTP: u8 = 132;
const ESP: u8 = 50;
const NO_NEXT: u8 = 59;
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AH: u8 = 51;
const DEST_OPTS: u8 = 60;
const MOBILITY: u8 = 135;

/// The receiver's inbound rules (Go YAML), exercising every selector. `{ca_sha}` is filled in.
const INBOUND_RULES: &str = "\
    # R1 tcp 80 from anyone (no local_cidr: only our VPN networks, as we hold unsafe networks)
    - port: 80
      proto: tcp
      host: any
    # R2 a udp range for a group the sender has
    - port: 1000-2000
      proto: udp
      group: eng
    # R3 all ICMP / ICMPv6
    - port: any
      proto: icmp
      host: any
    # R4 non-first udp fragments
    - port: fragment
      proto: udp
      host: any
    # R5 / R6 groups: all must be held
    - port: 443
      proto: tcp
      groups: [eng, ops]
    - port: 444
      proto: tcp
      groups: [eng, nobody]
    # R7 / R8 host names
    - port: 22
      proto: tcp
      host: sender
    - port: 23
      proto: tcp
      host: someone-else
    # R9 / R10 remote cidrs
    - port: 5353
      proto: udp
      cidr: 10.77.0.0/24
    - port: 5354
      proto: udp
      cidr: 10.99.0.0/16
    # R11 local_cidr inside our unsafe network
    - port: 8080
      proto: tcp
      host: any
      local_cidr: 192.168.77.0/25
    # R12 any protocol on a port range (GRE/SCTP/... \"ports\" are the 4 bytes after the IPv4 header)
    - port: 9000-9100
      proto: any
      group: eng
    # R13 anything to our IPv6 unsafe network
    - port: any
      proto: any
      host: any
      local_cidr: fd99::/64
    # R14 from the sender's unsafe network
    - port: 7000
      proto: udp
      cidr: 172.16.5.0/24
    # R15 an IPv6 remote cidr
    - port: 6000
      proto: tcp
      cidr: fd77::/64
    # R16-R19 CA selectors
    - port: 6001
      proto: tcp
      ca_name: fwdiff-ca
    - port: 6002
      proto: tcp
      ca_name: other-ca
    - port: 6003
      proto: tcp
      ca_sha: {ca_sha}
    - port: 6004
      proto: tcp
      host: any
      ca_sha: 0000000000000000000000000000000000000000000000000000000000000000
    # R20 a range starting at 0 means any port
    - port: 0-5
      proto: udp
      host: any
      local_cidr: 192.168.77.128/25
    # R21 a port on an ICMP rule is ignored
    - port: 1
      proto: icmp
      host: any
      local_cidr: 192.168.77.0/25
";

// ------------------------------------------------------------------------------------------------
// Packet crafting

fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Recomputes the IPv4 header checksum over `ihl` bytes (or what there is of them).
fn fix_v4_checksum(p: &mut [u8]) {
    let ihl = (usize::from(p[0] & 0x0f) * 4).clamp(20, p.len());
    p[10] = 0;
    p[11] = 0;
    let c = fold(sum16(&p[..ihl]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// An IPv4 packet: `frag` is the flags/fragment-offset field, `options` extend the header.
fn v4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    frag: u16,
    options: &[u8],
    l4: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "IPv4 options are whole words");
    let hl = 20 + options.len();
    let total = hl + l4.len();
    let mut p = Vec::with_capacity(total);
    p.push(0x40 | (hl / 4) as u8);
    p.push(0);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.push(64);
    p.push(proto);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(options);
    p.extend_from_slice(l4);
    fix_v4_checksum(&mut p);
    p
}

/// An IPv6 packet; `body` is the extension headers plus the upper-layer bytes.
fn v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, flow: u32, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + body.len());
    p.extend_from_slice(&(0x6000_0000u32 | (flow & 0xf_ffff)).to_be_bytes());
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.push(next);
    p.push(64);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(body);
    p
}

/// A TCP SYN header (no options) followed by `data`; checksum left zero (the TUN capture sees
/// packets before the kernel validates them).
fn tcp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + data.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&[0x50, 0x02, 0x04, 0x00, 0, 0, 0, 0]);
    t.extend_from_slice(data);
    t
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + data.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

/// An ICMP / ICMPv6 message: type, code, checksum, 4 "rest of header" bytes, data.
fn icmp(kind: u8, code: u8, rest: u32, data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(data);
    let c = fold(sum16(&m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Hop-by-hop / routing / destination options header of `(len + 1) * 8` bytes (PadN filled).
fn ext(next: u8, len: u8) -> Vec<u8> {
    let size = (usize::from(len) + 1) * 8;
    let mut h = vec![0u8; size];
    h[0] = next;
    h[1] = len;
    h[2] = 1; // PadN option covering the rest
    h[3] = (size - 4) as u8;
    h
}

/// A fragment header: `offset` in 8-byte units, `more` = M flag.
fn frag6(next: u8, offset: u16, more: bool, ident: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&ident.to_be_bytes());
    h
}

/// An authentication header of `(len + 2) * 4` bytes.
fn ah(next: u8, len: u8) -> Vec<u8> {
    let size = (usize::from(len) + 2) * 4;
    let mut h = vec![0u8; size];
    h[0] = next;
    h[1] = len;
    h[4..8].copy_from_slice(&0x1000u32.to_be_bytes()); // SPI
    h[8..12].copy_from_slice(&1u32.to_be_bytes()); // sequence
    h
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ------------------------------------------------------------------------------------------------
// The cases

struct Case {
    name: String,
    packet: Vec<u8>,
    /// Verdict under Go 1.11.1 semantics, which we implement (true = delivered to the TUN).
    expect: bool,
    /// Some(why) where Go 1.11.0 deliberately gives the opposite verdict (a Go bug fixed later).
    go_1110_differs: Option<&'static str>,
}

/// Why Go 1.11.0 lets crafted IPv6 packets pose as TCP/UDP.
const WHY_1840_WALK: &str = "Go 1.11.0 walks every unknown IPv6 next header (SCTP, GRE, Mobility...) as \
    an extension header, so crafted bytes after it are read as TCP/UDP ports and match a TCP/UDP rule; \
    1.11.1 (slackhq/nebula#1840) makes them terminal: only a `proto: any` rule admits them. We follow 1.11.1.";
/// Why Go 1.11.0 drops genuine IPv6 traffic of protocols it does not parse.
const WHY_1840_TERMINAL: &str =
    "Go 1.11.0 walks this terminal protocol as an extension header; the \
    bogus length runs past the packet end, so it drops a packet a `proto: any` rule admits. 1.11.1 \
    (#1840) classifies it as its own protocol; we follow 1.11.1.";
/// Why Go 1.11.0 admits a chain that points past the packet end.
const WHY_1840_OVERRUN: &str = "an extension header whose length points past the packet end: Go 1.11.0 \
    still reads the next-header byte it carries (here No Next Header) and classifies the packet; 1.11.1 \
    (#1840, IPv6FindUpperProtocol) treats the chain as truncated and drops it. We follow 1.11.1.";
/// Why Go 1.11.0 drops short ICMPv6 errors.
const WHY_1840_ICMPV6: &str = "Go 1.11.0 requires 6 bytes of every ICMPv6 message (and reads the type \
    from the code byte); 1.11.1 (#1840) reads the type from byte 0 and needs only type/code/checksum \
    (4 bytes) unless it is an echo. We follow 1.11.1, so a 4-byte ICMPv6 error passes an icmp rule.";

struct Cases {
    v: Vec<Case>,
}

impl Cases {
    /// Unique per packet: IPv4 identification, IPv6 flow label, source port / ICMP identifier base.
    fn next_id(&self) -> u16 {
        100 + self.v.len() as u16
    }
    fn sport(&self) -> u16 {
        20000 + self.v.len() as u16
    }
    fn marker(&self) -> Vec<u8> {
        format!("fwdiff-{:03}", self.v.len()).into_bytes()
    }

    fn add(&mut self, name: &str, packet: Vec<u8>, expect: bool) {
        self.v.push(Case {
            name: name.to_string(),
            packet,
            expect,
            go_1110_differs: None,
        });
    }

    fn add_differs(&mut self, name: &str, packet: Vec<u8>, expect: bool, why: &'static str) {
        self.v.push(Case {
            name: name.to_string(),
            packet,
            expect,
            go_1110_differs: Some(why),
        });
    }

    // Shorthands for well-formed packets.
    fn v4_tcp(&mut self, name: &str, src: Ipv4Addr, dst: Ipv4Addr, dport: u16, expect: bool) {
        let p = v4(
            src,
            dst,
            TCP,
            self.next_id(),
            0,
            &[],
            &tcp(self.sport(), dport, &self.marker()),
        );
        self.add(name, p, expect);
    }
    fn v4_udp(&mut self, name: &str, src: Ipv4Addr, dst: Ipv4Addr, dport: u16, expect: bool) {
        let p = v4(
            src,
            dst,
            UDP,
            self.next_id(),
            0,
            &[],
            &udp(self.sport(), dport, &self.marker()),
        );
        self.add(name, p, expect);
    }
    fn v4_l4(&mut self, name: &str, dst: Ipv4Addr, proto: u8, frag: u16, l4: &[u8], expect: bool) {
        let p = v4(S4, dst, proto, self.next_id(), frag, &[], l4);
        self.add(name, p, expect);
    }
    fn v6p(&self, src: Ipv6Addr, dst: Ipv6Addr, next: u8, body: &[u8]) -> Vec<u8> {
        v6(src, dst, next, u32::from(self.next_id()), body)
    }
}

fn cases() -> Vec<Case> {
    let mut c = Cases { v: Vec::new() };

    // ---- IPv4: ports, protocols, selectors
    c.v4_tcp("v4 tcp 80 (R1)", S4, R4, 80, true);
    c.v4_tcp("v4 tcp 81 (no rule)", S4, R4, 81, false);
    let (id, sp, mk) = (c.next_id(), c.sport(), c.marker());
    c.add(
        "v4 tcp 80 with DF set (not a fragment)",
        v4(S4, R4, TCP, id, 0x4000, &[], &tcp(sp, 80, &mk)),
        true,
    );
    c.v4_udp("v4 udp 1000 (R2 range start)", S4, R4, 1000, true);
    c.v4_udp("v4 udp 1500 (R2)", S4, R4, 1500, true);
    c.v4_udp("v4 udp 2000 (R2 range end)", S4, R4, 2000, true);
    c.v4_udp("v4 udp 999 (below R2)", S4, R4, 999, false);
    c.v4_udp("v4 udp 2001 (above R2)", S4, R4, 2001, false);
    c.v4_tcp("v4 tcp 1500 (R2 is udp only)", S4, R4, 1500, false);
    let l4 = icmp(8, 0, (u32::from(c.next_id()) << 16) | 1, &c.marker());
    c.v4_l4("v4 icmp echo (R3)", R4, ICMP, 0, &l4, true);
    let l4 = icmp(3, 1, 0, &c.marker());
    c.v4_l4("v4 icmp unreachable (R3)", R4, ICMP, 0, &l4, true);
    let l4 = icmp(8, 0, 0, &[])[..4].to_vec();
    c.v4_l4(
        "v4 icmp 4 bytes (no identifier: truncated)",
        R4,
        ICMP,
        0,
        &l4,
        false,
    );
    let l4 = icmp(8, 0, (u32::from(c.next_id()) << 16) | 1, &c.marker());
    c.v4_l4(
        "v4 icmp echo to unsafe .5 (R21: port ignored)",
        R4_UNSAFE_LO,
        ICMP,
        0,
        &l4,
        true,
    );
    let l4 = icmp(8, 0, (u32::from(c.next_id()) << 16) | 1, &c.marker());
    c.v4_l4(
        "v4 icmp echo to unsafe .200 (R3 local default)",
        R4_UNSAFE_HI,
        ICMP,
        0,
        &l4,
        false,
    );
    c.v4_tcp("v4 tcp 443 (R5 groups eng+ops)", S4, R4, 443, true);
    c.v4_tcp("v4 tcp 444 (R6 needs group nobody)", S4, R4, 444, false);
    c.v4_tcp("v4 tcp 22 (R7 host sender)", S4, R4, 22, true);
    c.v4_tcp("v4 tcp 23 (R8 other host)", S4, R4, 23, false);
    c.v4_udp("v4 udp 5353 (R9 cidr)", S4, R4, 5353, true);
    c.v4_udp("v4 udp 5354 (R10 other cidr)", S4, R4, 5354, false);
    c.v4_tcp(
        "v4 tcp 8080 to unsafe .5 (R11 local_cidr)",
        S4,
        R4_UNSAFE_LO,
        8080,
        true,
    );
    c.v4_tcp(
        "v4 tcp 8080 to unsafe .200 (outside R11)",
        S4,
        R4_UNSAFE_HI,
        8080,
        false,
    );
    c.v4_tcp(
        "v4 tcp 80 to unsafe .5 (R1 local default)",
        S4,
        R4_UNSAFE_LO,
        80,
        false,
    );
    c.v4_udp(
        "v4 udp 31337 to unsafe .200 (R20 0-5 = any)",
        S4,
        R4_UNSAFE_HI,
        31337,
        true,
    );
    c.v4_tcp("v4 tcp 80 to a dst not ours", S4, R4_NOT_OURS, 80, false);
    c.v4_tcp(
        "v4 tcp 80 from a src not in the cert",
        S4_SPOOF,
        R4,
        80,
        false,
    );
    c.v4_udp(
        "v4 udp 7000 from sender unsafe net (R14)",
        S4_UNSAFE,
        R4,
        7000,
        true,
    );
    c.v4_udp("v4 udp 7000 from sender vpn addr", S4, R4, 7000, false);
    c.v4_udp(
        "v4 udp 1500 from sender unsafe net (R2)",
        S4_UNSAFE,
        R4,
        1500,
        true,
    );
    c.v4_tcp(
        "v4 tcp 80 from sender vpn addr outside our nets",
        S4_FOREIGN_VPN,
        R4,
        80,
        false,
    );
    c.v4_tcp("v4 tcp 6000 (R15 is an IPv6 cidr)", S4, R4, 6000, false);
    c.v4_tcp("v4 tcp 6001 (R16 ca_name)", S4, R4, 6001, true);
    c.v4_tcp("v4 tcp 6002 (R17 other ca_name)", S4, R4, 6002, false);
    c.v4_tcp("v4 tcp 6003 (R18 ca_sha)", S4, R4, 6003, true);
    c.v4_tcp("v4 tcp 6004 (R19 other ca_sha)", S4, R4, 6004, false);

    // ---- IPv4 fragments
    let l4 = udp(c.sport(), 1500, &c.marker());
    c.v4_l4(
        "v4 first fragment udp 1500 (R2)",
        R4,
        UDP,
        0x2000,
        &l4,
        true,
    );
    let l4 = tcp(c.sport(), 81, &c.marker());
    c.v4_l4("v4 first fragment tcp 81", R4, TCP, 0x2000, &l4, false);
    let l4 = cat(&[&[0x4e, 0x20, 0x05, 0xdc], &c.marker()]);
    c.v4_l4(
        "v4 later fragment udp (R4 fragment)",
        R4,
        UDP,
        0x2000 | 185,
        &l4,
        true,
    );
    c.v4_l4(
        "v4 last fragment udp, no data (R4)",
        R4,
        UDP,
        185,
        &[],
        true,
    );
    let l4 = tcp(c.sport(), 80, &c.marker());
    c.v4_l4(
        "v4 later fragment tcp posing as port 80",
        R4,
        TCP,
        0x2000 | 185,
        &l4,
        false,
    );
    let l4 = cat(&[&[0, 0, 0x23, 0x5a], &c.marker()]);
    c.v4_l4(
        "v4 later fragment gre posing as 9050",
        R4,
        GRE,
        185,
        &l4,
        false,
    );

    let l4 = cat(&[&[0, 0, 0, 0], &c.marker()]);
    c.v4_l4(
        "v4 later fragment icmp (R3: icmp ignores ports)",
        R4,
        ICMP,
        185,
        &l4,
        true,
    );

    // ---- IPv4 malformed headers
    let mut p = v4(
        S4,
        R4,
        TCP,
        c.next_id(),
        0,
        &[],
        &tcp(c.sport(), 80, &c.marker()),
    );
    p[0] = 0x44;
    fix_v4_checksum(&mut p);
    c.add("v4 ihl=4 (< 5) tcp 80", p, false);
    let mut p = v4(S4, R4, TCP, c.next_id(), 0, &[], &tcp(c.sport(), 80, &[]));
    p[0] = 0x4f;
    fix_v4_checksum(&mut p);
    c.add("v4 ihl=15 but 40 bytes (header truncated)", p, false);
    let p = v4(
        S4,
        R4,
        TCP,
        c.next_id(),
        0,
        &[1, 1, 1, 0],
        &tcp(c.sport(), 80, &c.marker()),
    );
    c.add("v4 ihl=6 with options, tcp 80", p, true);
    let p = v4(
        S4,
        R4,
        TCP,
        c.next_id(),
        0,
        &[0x4e, 0x20, 0x00, 0x50],
        &tcp(c.sport(), 81, &c.marker()),
    );
    c.add("v4 ihl=6, options look like port 80, tcp 81", p, false);
    let l4 = c.sport().to_be_bytes();
    c.v4_l4("v4 udp with 2 bytes (no dst port)", R4, UDP, 0, &l4, false);
    c.v4_l4("v4 udp with 0 bytes", R4, UDP, 0, &[], false);
    let l4 = cat(&[&c.sport().to_be_bytes(), &80u16.to_be_bytes()]);
    c.v4_l4(
        "v4 tcp with just the 4 port bytes, 80",
        R4,
        TCP,
        0,
        &l4,
        true,
    );
    let mut p = v4(
        S4,
        R4,
        TCP,
        c.next_id(),
        0,
        &[],
        &tcp(c.sport(), 80, &c.marker()),
    );
    p[2..4].copy_from_slice(&1000u16.to_be_bytes());
    fix_v4_checksum(&mut p);
    c.add("v4 total length field larger than packet, tcp 80", p, true);

    // ---- IPv4 odd protocols: the 4 bytes after the header are read as ports whatever the protocol
    let l4 = cat(&[&[0, 0, 0x23, 0x5a], &c.marker()]);
    c.v4_l4(
        "v4 gre, protocol type 9050 (R12 proto any)",
        R4,
        GRE,
        0,
        &l4,
        true,
    );
    let l4 = cat(&[&[0, 0, 0x08, 0x00], &c.marker()]);
    c.v4_l4("v4 gre carrying IPv4 (2048)", R4, GRE, 0, &l4, false);
    c.v4_l4(
        "v4 gre with 2 bytes (truncated)",
        R4,
        GRE,
        0,
        &[0, 0],
        false,
    );
    let l4 = cat(&[
        &c.sport().to_be_bytes(),
        &9050u16.to_be_bytes(),
        &[0; 8],
        &c.marker(),
    ]);
    c.v4_l4("v4 sctp 9050 (R12 proto any)", R4, SCTP, 0, &l4, true);
    let l4 = cat(&[
        &c.sport().to_be_bytes(),
        &80u16.to_be_bytes(),
        &[0; 8],
        &c.marker(),
    ]);
    c.v4_l4("v4 sctp 80 (R1 is tcp only)", R4, SCTP, 0, &l4, false);
    let l4 = cat(&[
        &c.sport().to_be_bytes(),
        &9000u16.to_be_bytes(),
        &c.marker(),
    ]);
    c.v4_l4("v4 proto 253 'port' 9000 (R12)", R4, 253, 0, &l4, true);

    // ---- IPv6 basics
    let t = |c: &Cases, dport: u16| tcp(c.sport(), dport, &c.marker());
    let u = |c: &Cases, dport: u16| udp(c.sport(), dport, &c.marker());
    let b = t(&c, 80);
    let p = c.v6p(S6, R6, TCP, &b);
    c.add("v6 tcp 80 (R1)", p, true);
    let b = t(&c, 81);
    let p = c.v6p(S6, R6, TCP, &b);
    c.add("v6 tcp 81", p, false);
    let b = u(&c, 1500);
    let p = c.v6p(S6, R6, UDP, &b);
    c.add("v6 udp 1500 (R2)", p, true);
    let b = icmp(128, 0, (u32::from(c.next_id()) << 16) | 1, &c.marker());
    let p = c.v6p(S6, R6, ICMPV6, &b);
    c.add("v6 icmpv6 echo (R3)", p, true);
    let b = icmp(1, 4, 0, &[])[..4].to_vec();
    let p = c.v6p(S6, R6, ICMPV6, &b);
    c.add_differs(
        "v6 icmpv6 unreachable, 4 bytes (R3)",
        p,
        true,
        WHY_1840_ICMPV6,
    );
    let b = icmp(128, 0, 0, &[])[..4].to_vec();
    let p = c.v6p(S6, R6, ICMPV6, &b);
    c.add("v6 icmpv6 echo, 4 bytes (no identifier)", p, false);
    let b = t(&c, 6000);
    let p = c.v6p(S6, R6, TCP, &b);
    c.add("v6 tcp 6000 (R15 v6 cidr)", p, true);
    let b = u(&c, 5353);
    let p = c.v6p(S6, R6, UDP, &b);
    c.add("v6 udp 5353 (R9 is a v4 cidr)", p, false);
    let b = t(&c, 80);
    let p = c.v6p(S6_SPOOF, R6, TCP, &b);
    c.add("v6 tcp 80 from a src not in the cert", p, false);
    let b = t(&c, 80);
    let p = c.v6p(S6, R6_NOT_OURS, TCP, &b);
    c.add("v6 tcp 80 to a dst not ours", p, false);
    let b = t(&c, 31337);
    let p = c.v6p(S6, R6_UNSAFE, TCP, &b);
    c.add("v6 tcp 31337 to unsafe fd99::5 (R13)", p, true);
    let b = t(&c, 80)[..2].to_vec();
    let p = c.v6p(S6, R6, TCP, &b);
    c.add("v6 tcp with 2 bytes", p, false);
    let p = c.v6p(S6, R6, TCP, &[]);
    c.add("v6 bare 40-byte header, next=tcp", p, false);

    // ---- IPv6 extension headers
    let b = cat(&[&ext(TCP, 0), &t(&c, 80)]);
    let p = c.v6p(S6, R6, HOP_BY_HOP, &b);
    c.add("v6 hop-by-hop + tcp 80", p, true);
    let b = cat(&[&ext(TCP, 0), &t(&c, 81)]);
    let p = c.v6p(S6, R6, HOP_BY_HOP, &b);
    c.add("v6 hop-by-hop + tcp 81", p, false);
    let b = cat(&[&ext(DEST_OPTS, 1), &ext(UDP, 0), &u(&c, 1500)]);
    let p = c.v6p(S6, R6, ROUTING, &b);
    c.add("v6 routing + dest opts + udp 1500", p, true);
    let b = cat(&[
        &ext(ICMPV6, 0),
        &icmp(128, 0, (u32::from(c.next_id()) << 16) | 1, &c.marker()),
    ]);
    let p = c.v6p(S6, R6, HOP_BY_HOP, &b);
    c.add("v6 hop-by-hop + icmpv6 echo", p, true);
    let b = cat(&[&frag6(TCP, 0, true, 7), &t(&c, 80)]);
    let p = c.v6p(S6, R6, FRAGMENT, &b);
    c.add("v6 first fragment tcp 80", p, true);
    let b = cat(&[&frag6(TCP, 0, true, 8), &t(&c, 81)]);
    let p = c.v6p(S6, R6, FRAGMENT, &b);
    c.add("v6 first fragment tcp 81", p, false);
    let b = cat(&[&frag6(UDP, 100, true, 9), &c.marker()]);
    let p = c.v6p(S6, R6, FRAGMENT, &b);
    c.add("v6 later fragment udp (R4)", p, true);
    let b = cat(&[&frag6(TCP, 100, true, 10), &t(&c, 80)]);
    let p = c.v6p(S6, R6, FRAGMENT, &b);
    c.add("v6 later fragment tcp posing as 80", p, false);
    let b = cat(&[&ext(FRAGMENT, 0), &frag6(UDP, 3, false, 11), &c.marker()]);
    let p = c.v6p(S6, R6, HOP_BY_HOP, &b);
    c.add("v6 hop-by-hop + later fragment udp (R4)", p, true);
    let b = cat(&[&frag6(ICMPV6, 50, false, 13), &c.marker()]);
    let p = c.v6p(S6, R6, FRAGMENT, &b);
    c.add("v6 later fragment icmpv6 (R3: icmp ignores ports)", p, true);
    let b = frag6(TCP, 0, true, 12)[..4].to_vec();
    let p = c.v6p(S6, R6, FRAGMENT, &b);
    c.add("v6 fragment header truncated to 4 bytes", p, false);
    let b = cat(&[&ah(TCP, 1), &t(&c, 80)]);
    let p = c.v6p(S6, R6, AH, &b);
    c.add("v6 AH (12 bytes) + tcp 80", p, true);
    let b = cat(&[&ah(TCP, 4), &t(&c, 81)]);
    let p = c.v6p(S6, R6, AH, &b);
    c.add("v6 AH (24 bytes) + tcp 81", p, false);
    let b = cat(&[&ext(TCP, 255), &t(&c, 80)]);
    let p = c.v6p(S6, R6, HOP_BY_HOP, &b);
    c.add("v6 hop-by-hop len 255 (2048 bytes) + tcp 80", p, true);
    let b = cat(&[&ah(TCP, 255), &t(&c, 80)]);
    let p = c.v6p(S6, R6, AH, &b);
    c.add("v6 AH len 255 (1028 bytes) + tcp 80", p, true);
    let b = cat(&[&ext(TCP, 255)[..8], &t(&c, 80)]);
    let p = c.v6p(S6, R6, HOP_BY_HOP, &b);
    c.add("v6 hop-by-hop claims 2048 bytes, has 48", p, false);
    let b = ext(NO_NEXT, 1)[..8].to_vec();
    let p = c.v6p(S6, R6, DEST_OPTS, &b);
    c.add("v6 dest opts overrun, next=none, to us", p, false);
    let b = ext(NO_NEXT, 1)[..8].to_vec();
    let p = c.v6p(S6, R6_UNSAFE, DEST_OPTS, &b);
    c.add_differs(
        "v6 dest opts overrun, next=none, to fd99 (R13)",
        p,
        false,
        WHY_1840_OVERRUN,
    );

    // ---- IPv6 terminal protocols (#1840)
    let b = cat(&[&[TCP, 0, 0, 0, 0, 0, 0, 0], &t(&c, 80)]);
    let p = c.v6p(S6, R6, SCTP, &b);
    c.add_differs(
        "v6 sctp crafted to look like tcp 80",
        p,
        false,
        WHY_1840_WALK,
    );
    let b = cat(&[&ext(SCTP, 0), &[TCP, 0, 0, 0, 0, 0, 0, 0], &t(&c, 80)]);
    let p = c.v6p(S6, R6, HOP_BY_HOP, &b);
    c.add_differs(
        "v6 hop-by-hop + sctp crafted to look like tcp 80",
        p,
        false,
        WHY_1840_WALK,
    );
    let b = cat(&[&[UDP, 0, 0, 0, 0, 0, 0, 0], &u(&c, 1500)]);
    let p = c.v6p(S6, R6, GRE, &b);
    c.add_differs(
        "v6 gre crafted to look like udp 1500",
        p,
        false,
        WHY_1840_WALK,
    );
    let b = cat(&[&[TCP, 0, 0, 0, 0, 0, 0, 0], &t(&c, 22)]);
    let p = c.v6p(S6, R6, MOBILITY, &b);
    c.add_differs(
        "v6 mobility crafted to look like tcp 22",
        p,
        false,
        WHY_1840_WALK,
    );
    // A genuine SCTP common header (src port 5000 = 0x13 0x88): 1.11.0 reads 0x88 as a length.
    let b = cat(&[
        &5000u16.to_be_bytes(),
        &9050u16.to_be_bytes(),
        &[0; 8],
        &c.marker(),
    ]);
    let p = c.v6p(S6, R6_UNSAFE, SCTP, &b);
    c.add_differs(
        "v6 genuine sctp to fd99 (R13 proto any)",
        p,
        true,
        WHY_1840_TERMINAL,
    );
    let p = c.v6p(S6, R6_UNSAFE, 253, &[]);
    c.add_differs(
        "v6 proto 253, no payload, to fd99 (R13)",
        p,
        true,
        WHY_1840_TERMINAL,
    );
    let p = c.v6p(S6, R6_UNSAFE, NO_NEXT, &[]);
    c.add("v6 no next header, to fd99 (R13)", p, true);
    let b = cat(&[&[0, 0, 0x10, 0, 0, 0, 0, 1], &c.marker()]);
    let p = c.v6p(S6, R6_UNSAFE, ESP, &b);
    c.add("v6 esp to fd99 (R13)", p, true);
    let b = cat(&[&[0, 0, 0x10, 0, 0, 0, 0, 1], &c.marker()]);
    let p = c.v6p(S6, R6, ESP, &b);
    c.add("v6 esp to us (no proto any rule)", p, false);
    let b = cat(&[
        &c.sport().to_be_bytes(),
        &80u16.to_be_bytes(),
        &[0; 8],
        &c.marker(),
    ]);
    let p = c.v6p(S6, R6, SCTP, &b);
    c.add("v6 sctp 80 to us (no proto any rule)", p, false);

    c.v
}

// ------------------------------------------------------------------------------------------------
// PKI

struct Creds {
    ca: TestCa,
    sender: (Certificate, Vec<u8>),
    receiver: (Certificate, Vec<u8>),
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn host_cert(
    ca: &TestCa,
    name: &str,
    networks: &[&str],
    unsafe_networks: &[&str],
    groups: &[&str],
) -> (Certificate, Vec<u8>) {
    let (private, public) = keys::keygen(ca.curve);
    let now = now_unix();
    let nets = |l: &[&str]| -> Vec<IpNet> { l.iter().map(|n| n.parse().expect("net")).collect() };
    let tbs = TbsCertificate {
        version: ca.version,
        name: name.into(),
        networks: nets(networks),
        unsafe_networks: nets(unsafe_networks),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        is_ca: false,
        not_before: now - 3600,
        not_after: now + 86400,
        public_key: public,
        curve: ca.curve,
    };
    let cert = tbs.sign(Some(&ca.cert), &ca.key).expect("host cert");
    (cert, private.to_vec())
}

fn creds() -> Creds {
    // V2: several networks per certificate, IPv6 VPN addresses.
    let ca = TestCa::new(CA_NAME, Curve::Curve25519, Version::V2);
    let sender = host_cert(
        &ca,
        "sender",
        &["10.77.0.1/16", "fd77::1/64", "10.88.0.1/16"],
        &["172.16.5.0/24"],
        &["eng", "ops"],
    );
    let receiver = host_cert(
        &ca,
        "receiver",
        &["10.77.0.2/16", "fd77::2/64"],
        &["192.168.77.0/24", "fd99::/64"],
        &[],
    );
    Creds {
        ca,
        sender,
        receiver,
    }
}

fn receiver_config(dir: &Path, ca_sha: &str) -> String {
    let d = dir.display();
    format!(
        "pki:\n  ca: {d}/ca.crt\n  cert: {d}/host.crt\n  key: {d}/host.key\n\
         listen:\n  host: 127.0.0.1\n  port: {LISTEN_PORT}\n\
         lighthouse:\n  am_lighthouse: false\n\
         punchy:\n  punch: false\n\
         tun:\n  dev: {TUN_DEV}\n  mtu: 1300\n\
         logging:\n  level: debug\n\
         firewall:\n  outbound:\n    - port: any\n      proto: any\n      host: any\n  inbound:\n{}",
        INBOUND_RULES.replace("{ca_sha}", ca_sha)
    )
}

// ------------------------------------------------------------------------------------------------
// Namespaces, processes, capture

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn sh(cmd: &str) -> std::process::Output {
    Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run bash")
}

fn must(cmd: &str) {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "command failed: {cmd}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A child process, killed (by its own pid) on drop.
struct Proc(Child);

impl Proc {
    fn spawn(ns: &str, argv: &[&str], log: &Path) -> Proc {
        let f = File::create(log).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone().expect("dup")))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("spawn in namespace");
        Proc(child)
    }

    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One receiver run: its namespace, daemon and capture (fields drop in order: processes first).
struct Run {
    tcpdump: Option<Proc>,
    daemon: Option<Proc>,
    ns: String,
    dir: tempfile::TempDir,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.tcpdump.take();
        self.daemon.take();
        let _ = sh(&format!("ip netns del {}", self.ns));
    }
}

impl Run {
    fn log(&self, f: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default()
    }
}

/// A UDP socket on 127.0.0.1 inside namespace `ns` (made on a short-lived thread that enters it).
fn socket_in_netns(ns: &str) -> UdpSocket {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = File::open(&path).expect("open netns");
        // SAFETY: setns takes a valid namespace fd (kept open for the call) and only moves this
        // thread, which ends right after creating the socket, into the namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        UdpSocket::bind("127.0.0.1:0").expect("bind in namespace")
    })
    .join()
    .expect("netns thread")
}

/// The raw IP packets of a pcap file (tolerates a partly written last record).
fn pcap_packets(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Some(magic) = data.get(..4) else {
        return out;
    };
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("not a pcap file (magic {magic:02x?})"),
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let Some(link) = u32_at(20) else {
        return out;
    };
    // LINKTYPE_RAW (101, or DLT_RAW 12/14), IPV4/IPV6 (228/229): no link header;
    // LINUX_SLL (113): 16 bytes; LINUX_SLL2 (276): 20 bytes.
    let skip = match link & 0xffff {
        101 | 12 | 14 | 228 | 229 => 0,
        113 => 16,
        276 => 20,
        other => panic!("unexpected pcap link type {other}"),
    };
    let mut at = 24;
    while let Some(incl) = u32_at(at + 8) {
        let start = at + 16;
        let end = start + incl as usize;
        let Some(rec) = data.get(start..end) else {
            break;
        };
        if let Some(p) = rec.get(skip..) {
            out.push(p.to_vec());
        }
        at = end;
    }
    out
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

// ------------------------------------------------------------------------------------------------
// The sender

struct Sender {
    engine: Engine,
    sock: UdpSocket,
}

impl Sender {
    fn new(creds: &Creds, sock: UdpSocket, receiver: SocketAddr) -> Sender {
        let (cert, key) = creds.sender.clone();
        let pki = Pki::new(vec![cert], key, creds.ca.pool(), None).expect("sender pki");
        let r4 = IpAddr::V4(R4);
        let r6 = IpAddr::V6(R6);
        let net = |s: &str| -> IpNet { s.parse().expect("net") };
        let cfg = EngineConfig {
            static_host_map: [(r4, vec![receiver])].into_iter().collect(),
            unsafe_routes: vec![
                (net("192.168.77.0/24"), r4),
                (net("192.168.88.0/24"), r4),
                (net("fd99::/64"), r6),
                (net("fd88::/64"), r6),
            ],
            try_promote_every: 0,
            requery_every_packets: 0,
            ..EngineConfig::default()
        };
        let unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let engine = Engine::new(
            cfg,
            pki,
            Box::new(AllowAll),
            Box::new(rand::rngs::StdRng::from_entropy()),
            Instant::now(),
            unix_nanos,
        );
        Sender { engine, sock }
    }

    fn flush(&self, out: Outputs) {
        for t in out.transmits {
            let _ = self.sock.send_to(&t.payload, t.to);
        }
    }

    /// Receive and time out for `limit` (or until `until` holds).
    fn pump(&mut self, limit: Duration, mut until: impl FnMut(&Sender) -> bool) -> bool {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 9001];
        while Instant::now() < end {
            if until(self) {
                return true;
            }
            let wait = end
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(20));
            self.sock.set_read_timeout(Some(wait)).expect("timeout");
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                let mut out = Outputs::default();
                let _ = self
                    .engine
                    .handle_outside(Instant::now(), from, &mut buf[..n], &mut out);
                self.flush(out);
            }
            let mut out = Outputs::default();
            self.engine.handle_timeout(Instant::now(), &mut out);
            self.flush(out);
        }
        until(self)
    }

    /// Seal one inner packet and send it; the tunnel must be up.
    fn send(&mut self, packet: &[u8]) {
        let mut buf = vec![0u8; HEADER_LEN + packet.len() + TAG_LEN + 64];
        buf[HEADER_LEN..HEADER_LEN + packet.len()].copy_from_slice(packet);
        let mut out = Outputs::default();
        match self
            .engine
            .handle_inside(Instant::now(), &mut buf, packet.len(), &mut out)
        {
            InsideOutcome::Send { to, len } => {
                self.sock.send_to(&buf[..len], to).expect("send");
            }
            other => panic!("sender engine did not send {packet:02x?}: {other:?}"),
        }
        self.flush(out);
    }
}

// ------------------------------------------------------------------------------------------------
// One run against one receiver binary

/// Sends every case through a receiver running `bin`; returns, per case, whether it reached the TUN.
fn run_receiver(label: &str, bin: &Path, creds: &Creds, cases: &[Case]) -> Vec<bool> {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let ns = format!("nfwdiff{}x{n}", std::process::id() % 100_000);
    must(&format!("ip netns add {ns}"));
    let mut run = Run {
        tcpdump: None,
        daemon: None,
        ns: ns.clone(),
        dir: tempfile::tempdir().expect("tempdir"),
    };
    must(&format!("ip -n {ns} link set lo up"));
    let dir = run.dir.path().to_path_buf();
    std::fs::write(dir.join("ca.crt"), creds.ca.cert.marshal_pem()).expect("ca");
    std::fs::write(dir.join("host.crt"), creds.receiver.0.marshal_pem()).expect("crt");
    std::fs::write(
        dir.join("host.key"),
        keys::marshal_private_key(creds.ca.curve, &creds.receiver.1),
    )
    .expect("key");
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        receiver_config(&dir, &creds.ca.cert.fingerprint_hex()),
    )
    .expect("cfg");
    let cfg_s = cfg.display().to_string();
    let bin_s = bin.display().to_string();
    run.daemon = Some(Proc::spawn(
        &ns,
        &[&bin_s, "-config", &cfg_s],
        &dir.join("nebula.log"),
    ));

    let tun_up = wait_for(Duration::from_secs(10), || {
        sh(&format!("ip -n {ns} -o link show dev {TUN_DEV} up"))
            .stdout
            .windows(2)
            .any(|w| w == b"UP")
    });
    assert!(
        tun_up,
        "{label}: {TUN_DEV} never came up\n{}",
        run.log("nebula.log")
    );

    let pcap = dir.join("tun.pcap");
    let pcap_s = pcap.display().to_string();
    run.tcpdump = Some(Proc::spawn(
        &ns,
        &[
            "tcpdump", "-i", TUN_DEV, "-n", "-U", "-s", "0", "-w", &pcap_s,
        ],
        &dir.join("tcpdump.log"),
    ));
    let listening = wait_for(Duration::from_secs(10), || {
        run.log("tcpdump.log").contains("listening on")
    });
    assert!(listening, "{label}: tcpdump\n{}", run.log("tcpdump.log"));

    let sock = socket_in_netns(&ns);
    let receiver: SocketAddr = SocketAddr::from((Ipv4Addr::LOCALHOST, LISTEN_PORT));
    let mut sender = Sender::new(creds, sock, receiver);
    let mut out = Outputs::default();
    sender
        .engine
        .connect(Instant::now(), IpAddr::V4(R4), &mut out);
    sender.flush(out);
    let r4 = IpAddr::V4(R4);
    let r6 = IpAddr::V6(R6);
    let up = sender.pump(Duration::from_secs(15), |s| {
        s.engine.tunnel_to(&r4).is_some() && s.engine.tunnel_to(&r6).is_some()
    });
    let daemon_alive = run.daemon.as_mut().is_some_and(Proc::alive);
    assert!(
        up,
        "{label}: no tunnel (daemon alive: {daemon_alive})\n{}",
        run.log("nebula.log")
    );

    for (i, case) in cases.iter().enumerate() {
        sender.send(&case.packet);
        if i % 8 == 7 {
            sender.pump(Duration::from_millis(2), |_| false);
        }
    }
    // Everything before it has been judged once the sentinel (allowed by R2) is on the TUN.
    let sentinel = v4(
        S4,
        R4,
        UDP,
        0xfff0,
        0,
        &[],
        &udp(40000, 1500, b"fwdiff-sentinel"),
    );
    sender.send(&sentinel);
    let end = Instant::now() + Duration::from_secs(10);
    let mut captured: HashSet<Vec<u8>> = loop {
        sender.pump(Duration::from_millis(50), |_| false);
        let got: HashSet<Vec<u8>> = pcap_packets(&std::fs::read(&pcap).unwrap_or_default())
            .into_iter()
            .collect();
        if got.contains(&sentinel) || Instant::now() > end {
            break got;
        }
    };
    let seen = captured.contains(&sentinel);
    assert!(
        seen,
        "{label}: the sentinel never reached the TUN\n--- nebula ---\n{}\n--- tcpdump ---\n{}",
        run.log("nebula.log"),
        run.log("tcpdump.log")
    );
    // A little grace for anything still in flight, then the final capture.
    sender.pump(Duration::from_millis(300), |_| false);
    captured.extend(pcap_packets(&std::fs::read(&pcap).unwrap_or_default()));
    if std::env::var_os("FWDIFF_KEEP_LOGS").is_some() {
        eprintln!("--- {label} log ---\n{}", run.log("nebula.log"));
    }
    cases.iter().map(|c| captured.contains(&c.packet)).collect()
}

fn verdict(b: bool) -> &'static str {
    if b {
        "allow"
    } else {
        "deny"
    }
}

#[test]
fn go_1110_and_ours_agree_on_crafted_packets() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "this test needs root (namespaces, TUN, tcpdump)");
    let go = PathBuf::from(GO_1110);
    assert!(
        go.exists(),
        "{GO_1110} is missing: run `bash .ci/install-go-nebula.sh` to install Go Nebula 1.11.0"
    );
    assert!(
        sh("command -v tcpdump").status.success(),
        "tcpdump is not installed"
    );
    let started = Instant::now();
    let creds = creds();
    let cases = cases();
    let go_v = run_receiver("go 1.11.0", &go, &creds, &cases);
    let ours_v = run_receiver(
        "ours",
        Path::new(env!("CARGO_BIN_EXE_nebula")),
        &creds,
        &cases,
    );

    let mut table = String::from("  #  go     ours   expect  case\n");
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let (g, o) = (go_v[i], ours_v[i]);
        let go_expected = match c.go_1110_differs {
            Some(_) => !c.expect,
            None => c.expect,
        };
        let mut note = String::new();
        if o != c.expect {
            note.push_str("  <-- OURS WRONG");
        }
        if g != go_expected {
            note.push_str(if c.go_1110_differs.is_some() {
                "  <-- documented Go 1.11.0 difference did not reproduce"
            } else {
                "  <-- GO DIFFERS"
            });
        }
        if c.go_1110_differs.is_some() && note.is_empty() {
            note.push_str("  (known Go 1.11.0 difference)");
        }
        table.push_str(&format!(
            "{i:3}  {:<6} {:<6} {:<6}  {}{note}\n",
            verdict(g),
            verdict(o),
            verdict(c.expect),
            c.name
        ));
        if o != c.expect || g != go_expected {
            failures.push((i, c));
        }
    }
    let mut why = String::new();
    for c in cases.iter().filter(|c| c.go_1110_differs.is_some()) {
        why.push_str(&format!(
            "- {}: {}\n",
            c.name,
            c.go_1110_differs.unwrap_or_default()
        ));
    }
    let mut detail = String::new();
    for (i, c) in &failures {
        detail.push_str(&format!("#{i} {}: {:02x?}\n", c.name, c.packet));
    }
    eprintln!(
        "{table}\nexpected differences (Go 1.11.0 vs our 1.11.1 semantics):\n{why}\n{} cases in {:.1?}",
        cases.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "verdicts disagree:\n{table}\nfailing packets:\n{detail}\nrules:\n{INBOUND_RULES}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
