//! A small rtnetlink client written by hand over a raw `NETLINK_ROUTE` socket: add/remove
//! interface addresses, replace/remove routes (with `RTAX_MTU`/`RTAX_ADVMSS` metrics), link up/down
//! and IPv6 address-generation mode. Requests are built as bytes; only the syscalls are `unsafe`.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ipnet::IpNet;
use thiserror::Error;

// Message types (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
// linux/netlink.h
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_HDRLEN: usize = 16;
// linux/if_addr.h
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
// linux/rtnetlink.h route attributes
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_METRICS: u16 = 8;
const RTA_TABLE: u16 = 15;
const RTAX_MTU: u16 = 2;
const RTAX_ADVMSS: u16 = 8;
// linux/if_link.h
const IFLA_AF_SPEC: u16 = 26;
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;

/// `rtm_protocol` values (linux/rtnetlink.h).
pub const RTPROT_KERNEL: u8 = 2;
/// Routes added by an administrator or a daemon (what `ip route` and Go's netlink library use).
pub const RTPROT_BOOT: u8 = 3;
/// `rtm_scope`: global.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
/// `rtm_scope`: directly attached (what Go Nebula uses for its routes).
pub const RT_SCOPE_LINK: u8 = 253;
/// The main routing table.
pub const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;

/// A failed netlink request.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// The socket could not be opened, or sending/receiving failed (including a 5 s timeout
    /// waiting for the kernel's answer).
    #[error("netlink {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The kernel refused the request (`EEXIST`, `EINVAL`, `EPERM` without `CAP_NET_ADMIN`, ...).
    #[error("netlink {op} refused by the kernel: {source}")]
    Kernel {
        /// What was requested, e.g. "add address 10.1.0.1/16".
        op: String,
        /// The errno the kernel answered with.
        source: io::Error,
    },
    /// The kernel's answer could not be understood.
    #[error("netlink {op}: malformed answer from the kernel")]
    Malformed {
        /// What was requested.
        op: String,
    },
}

/// A route for [`Netlink::replace_route`] / [`Netlink::delete_route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Output interface index.
    pub ifindex: u32,
    /// Destination (host bits are cleared before sending).
    pub dst: IpNet,
    /// `RTAX_MTU`; 0 = none.
    pub mtu: u32,
    /// `RTAX_ADVMSS`; 0 = none.
    pub advmss: u32,
    /// `RTA_PRIORITY` (metric); 0 = not sent (IPv6 then uses the kernel default 1024).
    pub metric: u32,
    /// `RTA_PREFSRC`: preferred source address.
    pub prefsrc: Option<IpAddr>,
    /// `rtm_protocol` ([`RTPROT_BOOT`] normally).
    pub protocol: u8,
    /// `rtm_scope` ([`RT_SCOPE_LINK`] normally).
    pub scope: u8,
    /// Routing table ([`RT_TABLE_MAIN`] normally).
    pub table: u32,
}

impl RouteSpec {
    /// A link-scope route in the main table, like Go Nebula's `addRoutes`.
    pub fn new(ifindex: u32, dst: IpNet) -> RouteSpec {
        RouteSpec {
            ifindex,
            dst,
            mtu: 0,
            advmss: 0,
            metric: 0,
            prefsrc: None,
            protocol: RTPROT_BOOT,
            scope: RT_SCOPE_LINK,
            table: RT_TABLE_MAIN,
        }
    }
}

/// An open `NETLINK_ROUTE` socket. Every request waits for the kernel's acknowledgement.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Builds one netlink request: header, fixed part, attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16, fixed: &[u8]) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set in finish()
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: 0 = let the kernel fill it
        buf.extend_from_slice(fixed);
        pad(&mut buf);
        Msg { buf }
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Msg {
        push_attr(&mut self.buf, kind, payload);
        self
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn pad(buf: &mut Vec<u8>) {
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = (4 + payload.len()) as u16;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    pad(buf);
}

/// `ifaddrmsg`: family, prefix length, flags, scope, interface index.
fn ifaddrmsg(net: &IpNet, ifindex: u32) -> Vec<u8> {
    let mut v = vec![family(&net.addr()), net.prefix_len(), 0, RT_SCOPE_UNIVERSE];
    v.extend_from_slice(&ifindex.to_ne_bytes());
    v
}

fn v4_broadcast(net: &IpNet) -> Option<IpAddr> {
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => Some(IpAddr::V4(n.broadcast())),
        _ => None,
    }
}

impl Netlink {
    /// Opens and binds a `NETLINK_ROUTE` socket (needs `CAP_NET_ADMIN` for changes).
    pub fn open() -> Result<Netlink, NetlinkError> {
        let io_err = |op| move |source| NetlinkError::Io { op, source };
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io_err("socket")(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value (port id 0 = kernel assigns).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io_err("bind")(io::Error::last_os_error()));
        }
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a valid timeval and the length passed is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io_err("setsockopt")(io::Error::last_os_error()));
        }
        Ok(Netlink { fd, seq: 0 })
    }

    /// Adds `net.addr()/prefix` to the interface, or updates it if present (Go's `AddrReplace`).
    /// IPv4 gets the broadcast address for prefixes shorter than /31, as Go's library sets it.
    pub fn replace_address(&mut self, ifindex: u32, net: IpNet) -> Result<(), NetlinkError> {
        let mut m = Msg::new(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_REPLACE,
            &ifaddrmsg(&net, ifindex),
        );
        let addr = ip_bytes(&net.addr());
        m.attr(IFA_LOCAL, &addr).attr(IFA_ADDRESS, &addr);
        if let Some(b) = v4_broadcast(&net) {
            m.attr(IFA_BROADCAST, &ip_bytes(&b));
        }
        self.request(m, || format!("add address {net}"))
    }

    /// Removes an address from the interface.
    pub fn delete_address(&mut self, ifindex: u32, net: IpNet) -> Result<(), NetlinkError> {
        let mut m = Msg::new(RTM_DELADDR, 0, &ifaddrmsg(&net, ifindex));
        let addr = ip_bytes(&net.addr());
        m.attr(IFA_LOCAL, &addr).attr(IFA_ADDRESS, &addr);
        self.request(m, || format!("delete address {net}"))
    }

    /// Adds a route, or replaces the one with the same table/destination/metric
    /// (Go's `RouteReplace`).
    pub fn replace_route(&mut self, r: &RouteSpec) -> Result<(), NetlinkError> {
        let m = route_msg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, r);
        self.request(m, || format!("replace route {}", r.dst))
    }

    /// Deletes a route (matched on table, destination, metric and interface).
    pub fn delete_route(&mut self, r: &RouteSpec) -> Result<(), NetlinkError> {
        let m = route_msg(RTM_DELROUTE, 0, r);
        self.request(m, || format!("delete route {}", r.dst))
    }

    /// Sets or clears `IFF_UP` on an interface.
    pub fn set_link_up(&mut self, ifindex: u32, up: bool) -> Result<(), NetlinkError> {
        let flags = if up { libc::IFF_UP as u32 } else { 0 };
        let m = Msg::new(
            RTM_NEWLINK,
            0,
            &ifinfomsg(ifindex, flags, libc::IFF_UP as u32),
        );
        self.request(m, || {
            format!("set link {ifindex} {}", if up { "up" } else { "down" })
        })
    }

    /// Turns off IPv6 link-local address generation on an interface (`addrgenmode none`),
    /// as Go Nebula does for its TUN device.
    pub fn set_addr_gen_mode_none(&mut self, ifindex: u32) -> Result<(), NetlinkError> {
        let mut inet6 = Vec::new();
        push_attr(
            &mut inet6,
            IFLA_INET6_ADDR_GEN_MODE,
            &[IN6_ADDR_GEN_MODE_NONE],
        );
        let mut spec = Vec::new();
        push_attr(&mut spec, libc::AF_INET6 as u16, &inet6);
        let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(ifindex, 0, 0));
        m.attr(IFLA_AF_SPEC, &spec);
        self.request(m, || format!("set addrgenmode none on link {ifindex}"))
    }

    fn request(&mut self, m: Msg, op: impl Fn() -> String) -> Result<(), NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = m.finish(seq);
        // SAFETY: sockaddr_nl is plain data; zeroed = the kernel (port id 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `bytes` is a live buffer of the given length; `kernel` is a valid address.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(NetlinkError::Io {
                op: "send",
                source: io::Error::last_os_error(),
            });
        }
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // SAFETY: `buf` is a live, writable buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NetlinkError::Io {
                    op: "receive",
                    source: e,
                });
            }
            let data = buf.get(..n as usize).unwrap_or(&[]);
            if let Some(result) = find_ack(data, seq) {
                return match result {
                    Ok(()) => Ok(()),
                    Err(Some(errno)) => Err(NetlinkError::Kernel {
                        op: op(),
                        source: io::Error::from_raw_os_error(errno),
                    }),
                    Err(None) => Err(NetlinkError::Malformed { op: op() }),
                };
            }
        }
    }
}

fn ifinfomsg(ifindex: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut v = vec![libc::AF_UNSPEC as u8, 0];
    v.extend_from_slice(&0u16.to_ne_bytes()); // device type
    v.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&change.to_ne_bytes());
    v
}

fn route_msg(kind: u16, flags: u16, r: &RouteSpec) -> Msg {
    let dst = r.dst.trunc();
    let table_byte = u8::try_from(r.table).unwrap_or(0); // RT_TABLE_UNSPEC: use RTA_TABLE
    let fixed = [
        family(&dst.addr()),
        dst.prefix_len(),
        0, // src_len
        0, // tos
        table_byte,
        r.protocol,
        r.scope,
        RTN_UNICAST,
        0,
        0,
        0,
        0, // rtm_flags
    ];
    let mut m = Msg::new(kind, flags, &fixed);
    m.attr(RTA_DST, &ip_bytes(&dst.addr()));
    m.attr(RTA_OIF, &r.ifindex.to_ne_bytes());
    m.attr(RTA_TABLE, &r.table.to_ne_bytes());
    if r.metric > 0 {
        m.attr(RTA_PRIORITY, &r.metric.to_ne_bytes());
    }
    if let Some(src) = &r.prefsrc {
        m.attr(RTA_PREFSRC, &ip_bytes(src));
    }
    if r.mtu > 0 || r.advmss > 0 {
        let mut metrics = Vec::new();
        if r.mtu > 0 {
            push_attr(&mut metrics, RTAX_MTU, &r.mtu.to_ne_bytes());
        }
        if r.advmss > 0 {
            push_attr(&mut metrics, RTAX_ADVMSS, &r.advmss.to_ne_bytes());
        }
        m.attr(RTA_METRICS, &metrics);
    }
    m
}

/// Looks for the `NLMSG_ERROR` answering `seq` in a datagram from the kernel.
/// `Some(Ok)` = acknowledged, `Some(Err(Some(errno)))` = refused, `Some(Err(None))` = garbled.
fn find_ack(mut data: &[u8], seq: u32) -> Option<Result<(), Option<i32>>> {
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().ok()?);
        let msg_seq = u32::from_ne_bytes(data[8..12].try_into().ok()?);
        if len < NLMSG_HDRLEN || len > data.len() {
            return Some(Err(None));
        }
        if kind == NLMSG_ERROR && msg_seq == seq {
            let code = data
                .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_ne_bytes);
            return Some(match code {
                Some(0) => Ok(()),
                Some(c) => Err(Some(-c)),
                None => Err(None),
            });
        }
        let aligned = (len + 3) & !3;
        data = data.get(aligned..).unwrap_or(&[]);
    }
    None
}

/// The index of a network interface by name (`if_nametoindex`).
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_request_bytes() {
        let net: IpNet = "10.1.0.1/16".parse().unwrap();
        let mut m = Msg::new(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_REPLACE,
            &ifaddrmsg(&net, 7),
        );
        m.attr(IFA_LOCAL, &[10, 1, 0, 1]);
        let b = m.finish(9);
        assert_eq!(b.len(), 16 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), RTM_NEWADDR);
        assert_eq!(
            u16::from_ne_bytes(b[6..8].try_into().unwrap()),
            0x405 | 0x100
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 9);
        assert_eq!(&b[16..20], &[libc::AF_INET as u8, 16, 0, 0]);
        assert_eq!(u32::from_ne_bytes(b[20..24].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes(b[24..26].try_into().unwrap()), 8);
        assert_eq!(u16::from_ne_bytes(b[26..28].try_into().unwrap()), IFA_LOCAL);
        assert_eq!(&b[28..32], &[10, 1, 0, 1]);
        assert_eq!(v4_broadcast(&net), Some("10.1.255.255".parse().unwrap()));
        assert_eq!(v4_broadcast(&"10.1.0.1/31".parse().unwrap()), None);
    }

    #[test]
    fn route_request_has_nested_metrics() {
        let mut r = RouteSpec::new(3, "10.1.2.3/24".parse().unwrap());
        r.mtu = 1300;
        r.advmss = 1260;
        r.metric = 100;
        let b = route_msg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &r).finish(1);
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type.
        assert_eq!(
            &b[16..24],
            &[libc::AF_INET as u8, 24, 0, 0, 254, RTPROT_BOOT, 253, 1]
        );
        // RTA_DST carries the masked destination.
        assert_eq!(&b[30..32], &RTA_DST.to_ne_bytes());
        assert_eq!(&b[32..36], &[10, 1, 2, 0]);
        // The RTA_METRICS attribute nests RTAX_MTU then RTAX_ADVMSS.
        let attr_head = |len: u16, kind: u16| [len.to_ne_bytes(), kind.to_ne_bytes()].concat();
        let pos = b
            .windows(4)
            .position(|w| w == attr_head(20, RTA_METRICS).as_slice())
            .expect("metrics attribute");
        assert_eq!(&b[pos + 4..pos + 8], attr_head(8, RTAX_MTU).as_slice());
        assert_eq!(
            u32::from_ne_bytes(b[pos + 8..pos + 12].try_into().unwrap()),
            1300
        );
        assert_eq!(&b[pos + 12..pos + 16], attr_head(8, RTAX_ADVMSS).as_slice());
        assert_eq!(b.len(), pos + 20);
    }

    #[test]
    fn ack_parsing() {
        let mut ack = Vec::new();
        ack.extend_from_slice(&36u32.to_ne_bytes());
        ack.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack.extend_from_slice(&0u16.to_ne_bytes());
        ack.extend_from_slice(&5u32.to_ne_bytes());
        ack.extend_from_slice(&0u32.to_ne_bytes());
        ack.extend_from_slice(&(-17i32).to_ne_bytes());
        ack.extend_from_slice(&[0u8; 16]);
        assert_eq!(find_ack(&ack, 5), Some(Err(Some(17))));
        assert_eq!(find_ack(&ack, 6), None);
        ack[16..20].copy_from_slice(&0i32.to_ne_bytes());
        assert_eq!(find_ack(&ack, 5), Some(Ok(())));
        assert_eq!(find_ack(&ack[..20], 5), Some(Err(None)));
        assert_eq!(find_ack(&[1, 2, 3], 5), None);
    }
}
