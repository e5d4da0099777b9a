//! The TUN device for real, as root, each test in a network namespace of its own (created with
//! `ip netns add`, entered by this test thread with setns(2), always deleted by a guard): addresses,
//! routes with MTU and metric, txqueuelen, traffic both ways, multi-queue, vnet headers, teardown.
//! Traffic only goes to addresses inside the namespace the test created.
//!
//! The expected `ip` output is what Go Nebula 1.11.0 itself produced here for the same settings
//! (`/opt/go-nebula/1.11.0/usr/bin/nebula` in a namespace, `tun.mtu 1300`, `tx_queue 777`, a 1400
//! route, an unsafe route with metric 50): `mtu 1400 ... qlen 777`, `addrgenmode none`,
//! `inet 10.77.0.1/24 brd 10.77.0.255`, `10.77.0.0/24 proto kernel scope link src 10.77.0.1 mtu 1300
//! advmss 1260`, `<route> scope link mtu 1400`, `172.30.0.0/24 scope link metric 50 mtu 1300 advmss 1260`.
#![cfg(feature = "netns")]

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nebula_node::config::SystemRoute;
use nebula_node::tun::{
    offload, Tun, TunError, TunFeatures, TunOptions, TunQueue, TunSetup, VirtioNetHdr,
    VIRTIO_NET_HDR_LEN,
};

/// A network namespace entered by the current thread; leaving and deleting it on drop.
struct Netns {
    name: String,
    original: File,
}

impl Netns {
    fn enter(tag: &str) -> Netns {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("nebtest-{}-{n}-{tag}", std::process::id());
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "`ip netns add {name}` failed ({}): {} -- these tests need root and network namespaces",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run `ip` (iproute2): {e} -- these tests need it"),
        }
        let original = match File::open("/proc/thread-self/ns/net") {
            Ok(f) => f,
            Err(e) => {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
                panic!("cannot open this thread's network namespace: {e}");
            }
        };
        // From here on the guard owns the namespace: dropping it deletes it.
        let guard = Netns { name, original };
        let target = File::open(format!("/run/netns/{}", guard.name))
            .unwrap_or_else(|e| panic!("cannot open /run/netns/{}: {e}", guard.name));
        // SAFETY: both arguments are valid; setns only changes this thread's namespace.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        guard
    }

    /// `ip -n <ns> args...`, stdout as text; panics if it fails.
    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether `ip -n <ns> args...` succeeds.
    fn ip_ok(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // SAFETY: `original` is this thread's original namespace, still open.
        unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) };
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn open(opts: &TunOptions) -> Tun {
    match Tun::open(opts) {
        Ok(t) => t,
        Err(e) => {
            panic!("opening the TUN device failed (is /dev/net/tun there, are we root?): {e}")
        }
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4_echo(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    icmp_type: u8,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![icmp_type, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let c = checksum(&icmp, 0);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 1, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&p, 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&icmp);
    p
}

fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, body: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(body.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(body);
    checksum(&pseudo, 0)
}

fn ipv6_echo_request(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![128, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let c = icmpv6_checksum(&src, &dst, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&icmp);
    p
}

/// Reads packets from any of the queues until `want` accepts one (skipping others, e.g.
/// IPv6 router solicitations), or panics after 5 s.
fn read_matching(queues: &[TunQueue], mut want: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    loop {
        assert!(
            Instant::now() < deadline,
            "no matching packet arrived on the TUN"
        );
        for q in queues {
            if !q.wait_readable(Some(Duration::from_millis(20))).unwrap() {
                continue;
            }
            match q.read(&mut buf) {
                Ok(n) => {
                    if want(&buf[..n]) {
                        return buf[..n].to_vec();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("TUN read: {e}"),
            }
        }
    }
}

fn setup() -> TunSetup {
    TunSetup {
        networks: vec![net("10.77.0.1/24"), net("fd77::1/64")],
        default_mtu: 1300,
        tx_queue_len: 777,
        routes: vec![
            SystemRoute {
                dst: net("10.78.0.0/16"),
                mtu: 1400,
                metric: 0,
            },
            SystemRoute {
                dst: net("172.30.0.0/24"),
                mtu: 1300,
                metric: 50,
            },
        ],
    }
}

#[test]
fn tun_addresses_routes_and_traffic() {
    let ns = Netns::enter("basic");
    let tun = open(&TunOptions {
        name: "nebtest0".into(),
        ..TunOptions::default()
    });
    assert_eq!(tun.name(), "nebtest0");
    let soft = tun.activate(&setup()).expect("activate");
    assert!(soft.is_empty(), "non-fatal failures: {soft:?}");
    assert_eq!(tun.mtu().unwrap(), 1400, "device MTU = largest route MTU");

    let link = ns.ip(&["-d", "link", "show", "dev", "nebtest0"]);
    assert!(link.contains("mtu 1400"), "{link}");
    assert!(link.contains("qlen 777"), "{link}");
    assert!(link.contains(",UP"), "{link}");
    assert!(link.contains("tun type tun"), "{link}");

    let addr = ns.ip(&["addr", "show", "dev", "nebtest0"]);
    assert!(addr.contains("inet 10.77.0.1/24 brd 10.77.0.255"), "{addr}");
    assert!(addr.contains("inet6 fd77::1/64"), "{addr}");
    assert!(
        !addr.contains("fe80"),
        "addrgenmode none: no link-local address\n{addr}"
    );

    let routes = ns.ip(&["-4", "route", "show", "dev", "nebtest0"]);
    let line = |prefix: &str| -> String {
        let l: Vec<&str> = routes.lines().filter(|l| l.starts_with(prefix)).collect();
        assert_eq!(l.len(), 1, "exactly one route for {prefix}:\n{routes}");
        l[0].to_string()
    };
    let net_route = line("10.77.0.0/24 ");
    for part in [
        "proto kernel",
        "scope link",
        "src 10.77.0.1",
        "mtu 1300",
        "advmss 1260",
    ] {
        assert!(net_route.contains(part), "{part} missing in {net_route}");
    }
    let big = line("10.78.0.0/16 ");
    assert!(big.contains("mtu 1400") && !big.contains("advmss"), "{big}");
    let unsafe_route = line("172.30.0.0/24 ");
    for part in ["metric 50", "mtu 1300", "advmss 1260", "scope link"] {
        assert!(
            unsafe_route.contains(part),
            "{part} missing in {unsafe_route}"
        );
    }
    let routes6 = ns.ip(&["-6", "route", "show", "dev", "nebtest0"]);
    let v6: Vec<&str> = routes6
        .lines()
        .filter(|l| l.starts_with("fd77::/64"))
        .collect();
    assert_eq!(
        v6.len(),
        1,
        "kernel prefix route replaced, not duplicated:\n{routes6}"
    );
    assert!(v6[0].contains("mtu 1300"), "{routes6}");

    let queues = tun.queues();

    // Write: an echo request from a peer (10.77.0.2) to our address; the kernel's reply comes
    // back out of the TUN.
    let payload = b"nebula tun test payload";
    let req = ipv4_echo(
        Ipv4Addr::new(10, 77, 0, 2),
        Ipv4Addr::new(10, 77, 0, 1),
        8,
        0x4242,
        7,
        payload,
    );
    assert_eq!(tun.write(&req).unwrap(), req.len());
    let reply = read_matching(queues, |p| {
        p.len() > 20 && p[0] >> 4 == 4 && p[9] == 1 && p[20] == 0
    });
    assert_eq!(&reply[12..16], &[10, 77, 0, 1], "reply source");
    assert_eq!(&reply[16..20], &[10, 77, 0, 2], "reply destination");
    assert_eq!(&reply[24..26], &0x4242u16.to_be_bytes(), "echo id");
    assert_eq!(&reply[26..28], &7u16.to_be_bytes(), "echo seq");
    assert_eq!(&reply[28..], payload);
    assert_eq!(checksum(&reply[..20], 0), 0, "valid IPv4 header checksum");
    assert_eq!(checksum(&reply[20..], 0), 0, "valid ICMP checksum");

    // The same over IPv6.
    let src6: Ipv6Addr = "fd77::2".parse().unwrap();
    let dst6: Ipv6Addr = "fd77::1".parse().unwrap();
    let req6 = ipv6_echo_request(src6, dst6, 0x77, 3, payload);
    assert_eq!(tun.write(&req6).unwrap(), req6.len());
    let reply6 = read_matching(queues, |p| {
        p.len() > 40 && p[0] >> 4 == 6 && p[6] == 58 && p[40] == 129
    });
    assert_eq!(&reply6[8..24], &dst6.octets());
    assert_eq!(&reply6[24..40], &src6.octets());
    assert_eq!(&reply6[44..46], &0x77u16.to_be_bytes());
    assert_eq!(&reply6[48..], payload);
    assert_eq!(
        icmpv6_checksum(&dst6, &src6, &reply6[40..]),
        0,
        "valid ICMPv6 checksum"
    );

    // Read: a ping (raw ICMP socket, as `ping` does) to an address routed into the TUN.
    // SAFETY: plain socket(2); checked below, then owned.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    assert!(
        raw >= 0,
        "raw ICMP socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: freshly opened, owned by nobody else.
    let ping = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut icmp = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(b"ping!");
    let c = checksum(&icmp, 0);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([10, 78, 1, 3]),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid buffer and sockaddr_in of the given sizes.
    let sent = unsafe {
        libc::sendto(
            ping.as_raw_fd(),
            icmp.as_ptr().cast(),
            icmp.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(
        sent,
        icmp.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
    let echo = read_matching(queues, |p| {
        p.len() >= 28 && p[9] == 1 && p[16..20] == [10, 78, 1, 3]
    });
    assert_eq!(&echo[12..16], &[10, 77, 0, 1], "source = the TUN's address");
    assert_eq!(&echo[20..], &icmp[..], "the echo request as sent");

    // Read: UDP from a socket in the namespace to an unsafe-route address.
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.send_to(b"hello over the tun", "172.30.0.9:4242")
        .unwrap();
    let udp = read_matching(queues, |p| {
        p.len() >= 28 && p[9] == 17 && p[16..20] == [172, 30, 0, 9]
    });
    assert_eq!(&udp[22..24], &4242u16.to_be_bytes());
    assert_eq!(&udp[28..], b"hello over the tun");
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]) as usize, udp.len());

    // Nothing else is waiting, and a non-blocking read says so.
    let mut buf = [0u8; 2048];
    while tun.queues()[0]
        .wait_readable(Some(Duration::from_millis(50)))
        .unwrap()
    {
        let _ = tun.read(&mut buf);
    }
    let e = tun.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);

    // API misuse is refused, not crashed on.
    let mut tun = tun;
    assert!(matches!(tun.add_queue(), Err(TunError::NotMultiQueue(_))));
    assert!(matches!(
        tun.set_offloads(offload::CSUM),
        Err(TunError::NoVnetHdr(_))
    ));

    // Dropping the device (closing its only fd) removes the interface.
    drop(tun);
    assert!(
        !ns.ip_ok(&["link", "show", "dev", "nebtest0"]),
        "device still present after drop"
    );
}

#[test]
fn tun_reload_changes_routes_and_mtu() {
    let ns = Netns::enter("reload");
    let tun = open(&TunOptions {
        name: "nebreload".into(),
        ..TunOptions::default()
    });
    let old = setup();
    assert!(tun.activate(&old).expect("activate").is_empty());
    let mut new = old.clone();
    new.default_mtu = 1280;
    new.routes = vec![SystemRoute {
        dst: net("172.30.0.0/24"),
        mtu: 1200,
        metric: 10,
    }];
    let errors = tun.reload(&old, &new);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(tun.mtu().unwrap(), 1280);
    let routes = ns.ip(&["-4", "route", "show", "dev", "nebreload"]);
    assert!(
        !routes.contains("10.78.0.0/16"),
        "removed route still there:\n{routes}"
    );
    assert!(
        !routes.contains("metric 50"),
        "old metric route still there:\n{routes}"
    );
    assert!(
        routes.lines().any(|l| l.starts_with("172.30.0.0/24")
            && l.contains("metric 10")
            && l.contains("mtu 1200")),
        "{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("10.77.0.0/24") && l.contains("mtu 1280")),
        "{routes}"
    );
}

#[test]
fn tun_multi_queue_and_kernel_chosen_name() {
    let ns = Netns::enter("mq");
    let features = TunFeatures::probe().expect("TUNGETFEATURES");
    assert!(
        features.multi_queue,
        "kernel without IFF_MULTI_QUEUE: {features:?}"
    );
    let mut tun = open(&TunOptions {
        name: String::new(),
        queues: 2,
        multi_queue: true,
        vnet_hdr: false,
    });
    assert!(
        tun.name().starts_with("tun"),
        "kernel-picked name: {}",
        tun.name()
    );
    assert_eq!(tun.queues().len(), 2);
    assert_ne!(tun.queues()[0].as_raw_fd(), tun.queues()[1].as_raw_fd());
    let link = ns.ip(&["-d", "link", "show", "dev", tun.name()]);
    assert!(link.contains("multi_queue"), "{link}");
    if link.contains("numqueues") {
        assert!(link.contains("numqueues 2"), "{link}");
    }
    assert_eq!(tun.add_queue().unwrap(), 2);
    let link = ns.ip(&["-d", "link", "show", "dev", tun.name()]);
    if link.contains("numqueues") {
        assert!(link.contains("numqueues 3"), "{link}");
    }

    let s = TunSetup {
        networks: vec![net("10.79.0.1/24")],
        default_mtu: 1300,
        tx_queue_len: 500,
        routes: vec![],
    };
    assert!(tun.activate(&s).expect("activate").is_empty());
    // Several flows: each lands on some queue, and every one of them is read.
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    for port in 5000..5008u16 {
        sock.send_to(&port.to_be_bytes(), (Ipv4Addr::new(10, 79, 0, 9), port))
            .unwrap();
        let p = read_matching(tun.queues(), |p| {
            p.len() >= 30 && p[9] == 17 && p[22..24] == port.to_be_bytes()
        });
        assert_eq!(&p[28..30], &port.to_be_bytes());
    }
    let queues = tun.into_queues();
    assert_eq!(queues.len(), 3);
}

#[test]
fn tun_vnet_hdr_and_offloads() {
    let ns = Netns::enter("vnet");
    let features = TunFeatures::probe().expect("TUNGETFEATURES");
    assert!(
        features.vnet_hdr,
        "kernel without IFF_VNET_HDR: {features:?}"
    );
    let tun = open(&TunOptions {
        name: "nebvnet".into(),
        queues: 1,
        multi_queue: false,
        vnet_hdr: true,
    });
    assert!(tun.vnet_hdr() && tun.queues()[0].vnet_hdr());
    let link = ns.ip(&["-d", "link", "show", "dev", "nebvnet"]);
    assert!(link.contains("vnet_hdr on"), "{link}");
    let wanted = offload::CSUM | offload::TSO4 | offload::TSO6 | offload::USO4 | offload::USO6;
    let enabled = tun.enable_offloads(wanted).expect("TUNSETOFFLOAD");
    assert_ne!(enabled & offload::CSUM, 0, "checksum offload refused");
    assert_eq!(enabled & !wanted, 0);
    let s = TunSetup {
        networks: vec![net("10.80.0.1/24")],
        default_mtu: 1300,
        tx_queue_len: 500,
        routes: vec![],
    };
    assert!(tun.activate(&s).expect("activate").is_empty());

    // Writes carry a header first (all zero: a plain packet).
    let req = ipv4_echo(
        Ipv4Addr::new(10, 80, 0, 2),
        Ipv4Addr::new(10, 80, 0, 1),
        8,
        1,
        1,
        b"vnet",
    );
    let mut framed = VirtioNetHdr::default().to_bytes().to_vec();
    framed.extend_from_slice(&req);
    assert_eq!(tun.write(&framed).unwrap(), framed.len());
    let reply = read_matching(tun.queues(), |p| {
        p.len() > VIRTIO_NET_HDR_LEN + 20
            && p[VIRTIO_NET_HDR_LEN] >> 4 == 4
            && p[VIRTIO_NET_HDR_LEN + 9] == 1
    });
    let hdr = VirtioNetHdr::parse(&reply).unwrap();
    assert_eq!(
        hdr.gso_type, 0,
        "a small reply is not a GSO packet: {hdr:?}"
    );
    let ip = &reply[VIRTIO_NET_HDR_LEN..];
    assert_eq!(&ip[12..16], &[10, 80, 0, 1]);
    assert_eq!(ip[20], 0, "echo reply");
    assert_eq!(&ip[28..], b"vnet");

    // Reads carry the header too; with checksum offload the kernel may leave the UDP checksum
    // partial and say so in the header.
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.send_to(b"offloaded", "10.80.0.7:9").unwrap();
    let p = read_matching(tun.queues(), |p| {
        p.len() > VIRTIO_NET_HDR_LEN + 28 && p[VIRTIO_NET_HDR_LEN + 9] == 17
    });
    let hdr = VirtioNetHdr::parse(&p).unwrap();
    if hdr.flags & 1 != 0 {
        assert_eq!(
            hdr.csum_start, 20,
            "checksum starts at the UDP header: {hdr:?}"
        );
        assert_eq!(hdr.csum_offset, 6, "UDP checksum field: {hdr:?}");
    }
    assert_eq!(&p[VIRTIO_NET_HDR_LEN + 28..], b"offloaded");
}
