//! The underlay UDP socket: bound per `listen.*`, non-blocking, buffers sized as configured;
//! IPv4-mapped IPv6 addresses are folded to plain IPv4 so the engine sees one form.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// A bound UDP socket.
pub struct Udp {
    sock: UdpSocket,
    dual_stack: bool,
}

impl Udp {
    /// Bind `host:port` (port 0 = random). `::` makes a dual-stack socket.
    pub fn bind(
        host: IpAddr,
        port: u16,
        read_buffer: u32,
        write_buffer: u32,
        so_mark: u32,
    ) -> io::Result<Udp> {
        let domain = if host.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        let dual_stack = host.is_ipv6() && host.is_unspecified();
        if host.is_ipv6() {
            s.set_only_v6(!dual_stack)?;
        }
        if read_buffer > 0 {
            s.set_recv_buffer_size(read_buffer as usize)?;
        }
        if write_buffer > 0 {
            s.set_send_buffer_size(write_buffer as usize)?;
        }
        if so_mark != 0 {
            s.set_mark(so_mark)?;
        }
        s.bind(&SocketAddr::new(host, port).into())?;
        s.set_nonblocking(true)?;
        Ok(Udp {
            sock: s.into(),
            dual_stack,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr().map(canonical)
    }

    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, a) = self.sock.recv_from(buf)?;
        Ok((n, canonical(a)))
    }

    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = match (self.dual_stack, to.ip()) {
            (true, IpAddr::V4(v4)) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), to.port()),
            _ => to,
        };
        self.sock.send_to(buf, to)
    }

    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }
}

/// `::ffff:a.b.c.d:p` -> `a.b.c.d:p`.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// True for addresses Go never advertises: loopback, link-local, unspecified.
pub fn is_unadvertisable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || *v6 == Ipv6Addr::LOCALHOST
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_round_trip_and_mapped_addresses_fold() {
        let a = Udp::bind("127.0.0.1".parse().expect("ip"), 0, 0, 0, 0).expect("bind a");
        let b = Udp::bind("::".parse().expect("ip"), 0, 1 << 20, 1 << 20, 7).expect("bind b");
        let bport = b.local_addr().expect("addr").port();
        a.send_to(
            b"hi",
            SocketAddr::new("127.0.0.1".parse().expect("ip"), bport),
        )
        .expect("send");
        let mut buf = [0u8; 16];
        let mut got = None;
        for _ in 0..100 {
            match b.recv_from(&mut buf) {
                Ok(r) => {
                    got = Some(r);
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        let (n, from) = got.expect("received");
        assert_eq!(&buf[..n], b"hi");
        assert!(from.is_ipv4(), "mapped source folded to IPv4: {from}");
        assert_eq!(from, a.local_addr().expect("addr"));
        // And the dual-stack socket can answer an IPv4 peer.
        b.send_to(b"yo", from).expect("send back");
    }
}
