//! `tun.use_system_route_table`: routes learned from the kernel. A netlink socket subscribed to
//! IPv4/IPv6 route changes; each route through our TUN device whose gateway is a vpn address
//! becomes an unsafe route in the engine, and goes when the kernel deletes it.
//!
//! What counts is Go 1.11's rule (`overlay/tun_linux.go`): only changes seen after start-up (no
//! dump of the existing table), from any routing table; a route counts when its output interface
//! (or one of its multipath next hops) is our device and the gateway (`RTA_GATEWAY`, else
//! `RTA_VIA`) lies inside our vpn networks; routes without a destination (a default route) are
//! ignored. An add replaces the route for the same prefix (a `tun.unsafe_routes` one included), a
//! delete removes it. Our routes carry one gateway: of several next hops the first is used.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use ipnet::IpNet;

use crate::plane::Plane;
use crate::poll::{poll, pollin, readable};

// linux/rtnetlink.h
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_MULTIPATH: u16 = 9;
const RTA_VIA: u16 = 18;
const NLMSG_HDRLEN: usize = 16;
const RTMSG_LEN: usize = 12;
const RTNH_LEN: usize = 8;
const NLMSG_DONE: u16 = 3;

/// One route change as the kernel reported it (the parts we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChange {
    /// `RTM_NEWROUTE` (true) or `RTM_DELROUTE`.
    pub added: bool,
    /// `RTA_DST` with the prefix length; `None` for a default route.
    pub dst: Option<IpNet>,
    /// (output interface, gateway) of the route itself and of each multipath next hop.
    pub hops: Vec<(u32, Option<IpAddr>)>,
}

/// What a change means for the engine: `net` now goes to `gateway`, or (`None`) no longer
/// through us. `None` overall: the change is not ours (another device, no vpn gateway, no
/// destination).
pub fn decide(
    change: &RouteChange,
    tun_index: u32,
    vpn_networks: &[IpNet],
) -> Option<(IpNet, Option<IpAddr>)> {
    let gateway = change
        .hops
        .iter()
        .filter(|(oif, _)| *oif == tun_index)
        .filter_map(|(_, gw)| *gw)
        .find(|gw| vpn_networks.iter().any(|n| n.contains(gw)))?;
    let dst = change.dst?;
    Some((dst, change.added.then_some(gateway)))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes in `b`: (type, payload). Stops at the first malformed one.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let (Some(len), Some(kind)) = (u16_at(b, 0), u16_at(b, 2)) else {
            break;
        };
        let len = usize::from(len);
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind & 0x3fff, &b[4..len]));
        b = &b[align4(len).min(b.len())..];
    }
    out
}

fn ip_from(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (i32::from(family), b.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        (libc::AF_INET6, 16) => {
            let a: [u8; 16] = b.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)).to_canonical())
        }
        _ => None,
    }
}

/// `RTA_VIA`: `struct rtvia { sa_family_t family; u8 addr[]; }`.
fn via(b: &[u8]) -> Option<IpAddr> {
    let family = u16_at(b, 0)?;
    ip_from(u8::try_from(family).ok()?, b.get(2..)?)
}

/// The gateway among a route's (or next hop's) attributes: `RTA_GATEWAY`, else `RTA_VIA`.
fn gateway(family: u8, attrs: &[(u16, &[u8])]) -> Option<IpAddr> {
    attrs
        .iter()
        .find(|(k, _)| *k == RTA_GATEWAY)
        .and_then(|(_, v)| ip_from(family, v))
        .or_else(|| {
            attrs
                .iter()
                .find(|(k, _)| *k == RTA_VIA)
                .and_then(|(_, v)| via(v))
        })
}

/// The route changes in one datagram from the subscription; anything else (and anything
/// malformed) is skipped.
pub fn parse(mut buf: &[u8]) -> Vec<RouteChange> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let (Some(len), Some(kind)) = (u32_at(buf, 0), u16_at(buf, 4)) else {
            break;
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        let body = &buf[NLMSG_HDRLEN..len];
        buf = &buf[align4(len).min(buf.len())..];
        if kind == NLMSG_DONE {
            break;
        }
        if kind != RTM_NEWROUTE && kind != RTM_DELROUTE {
            continue;
        }
        if body.len() < RTMSG_LEN {
            continue;
        }
        let (family, dst_len) = (body[0], body[1]);
        let a = attrs(&body[RTMSG_LEN..]);
        let dst = a
            .iter()
            .find(|(k, _)| *k == RTA_DST)
            .and_then(|(_, v)| ip_from(family, v))
            .and_then(|ip| IpNet::new(ip, dst_len).ok());
        let mut hops = Vec::new();
        if let Some(oif) = a
            .iter()
            .find(|(k, _)| *k == RTA_OIF)
            .and_then(|(_, v)| u32_at(v, 0))
        {
            hops.push((oif, gateway(family, &a)));
        }
        if let Some((_, mut mp)) = a.iter().find(|(k, _)| *k == RTA_MULTIPATH) {
            // struct rtnexthop { u16 len; u8 flags; u8 hops; i32 ifindex; } + attributes.
            while mp.len() >= RTNH_LEN {
                let Some(nlen) = u16_at(mp, 0).map(usize::from) else {
                    break;
                };
                if nlen < RTNH_LEN || nlen > mp.len() {
                    break;
                }
                if let Some(ifindex) = u32_at(mp, 4) {
                    hops.push((ifindex, gateway(family, &attrs(&mp[RTNH_LEN..nlen]))));
                }
                mp = &mp[align4(nlen).min(mp.len())..];
            }
        }
        out.push(RouteChange {
            added: kind == RTM_NEWROUTE,
            dst,
            hops,
        });
    }
    out
}

/// The subscription: a netlink socket in the route-change groups, and what it needs to decide.
pub struct RouteWatch {
    fd: OwnedFd,
    tun_index: u32,
    vpn_networks: Vec<IpNet>,
}

impl RouteWatch {
    /// Subscribe to IPv4 and IPv6 route changes. `buffer` (`tun.use_system_route_table_buffer_size`)
    /// sets the socket's receive buffer, forced past `rmem_max` as Go does (falling back to the
    /// capped size without `CAP_NET_ADMIN`); 0 keeps the kernel's default.
    pub fn open(tun_index: u32, vpn_networks: Vec<IpNet>, buffer: u32) -> io::Result<RouteWatch> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if buffer > 0 {
            let size = i32::try_from(buffer).unwrap_or(i32::MAX);
            let set = |opt| {
                // SAFETY: `size` is a valid c_int and the length passed is its size.
                unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        opt,
                        (&size as *const i32).cast(),
                        std::mem::size_of::<i32>() as libc::socklen_t,
                    )
                }
            };
            if set(libc::SO_RCVBUFFORCE) < 0 && set(libc::SO_RCVBUF) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
        // SAFETY: `sa` is a valid sockaddr_nl and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RouteWatch {
            fd,
            tun_index,
            vpn_networks,
        })
    }

    /// Follow route changes into the engine behind `plane` until `stop` becomes readable.
    pub fn run(&self, plane: &Plane, stop: &UnixStream) {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let mut fds = [pollin(self.fd.as_raw_fd()), pollin(stop.as_raw_fd())];
            if let Err(e) = poll(&mut fds, std::time::Duration::from_secs(1)) {
                tracing::error!(error = %e, "tun.use_system_route_table: poll failed, no more route updates");
                return;
            }
            if readable(&fds[1]) {
                return;
            }
            if !readable(&fds[0]) {
                continue;
            }
            loop {
                // SAFETY: `buf` is valid for writes of its length for the duration of the call.
                let n = unsafe {
                    libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        // ENOBUFS: the kernel dropped changes (buffer too small); go on.
                        _ => {
                            tracing::error!(error = %e, "netlink error");
                            break;
                        }
                    }
                }
                let n = usize::try_from(n).unwrap_or(0);
                self.apply(plane, &buf[..n]);
            }
        }
    }

    fn apply(&self, plane: &Plane, datagram: &[u8]) {
        for change in parse(datagram) {
            let Some((net, gateway)) = decide(&change, self.tun_index, &self.vpn_networks) else {
                tracing::debug!(?change, "Ignoring route update");
                continue;
            };
            match gateway {
                Some(g) => tracing::info!(destination = %net, via = %g, "Adding route"),
                None => tracing::info!(destination = %net, "Removing route"),
            }
            if !plane.with_engine(|e| e.set_system_route(net, gateway)) {
                tracing::warn!(
                    destination = %net,
                    max = nebula_core::engine::MAX_UNSAFE_ROUTES,
                    "Ignoring route update: the route table is full"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn msg(kind: u16, family: u8, dst_len: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = attrs.concat();
        let len = NLMSG_HDRLEN + RTMSG_LEN + body.len();
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&[0u8; 10]);
        v.extend_from_slice(&[family, dst_len, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0]);
        v.extend_from_slice(&body);
        v
    }

    const TUN: u32 = 7;

    fn vpn() -> Vec<IpNet> {
        vec!["10.42.0.1/16".parse().expect("net")]
    }

    #[test]
    fn a_route_via_a_vpn_gateway_on_our_device_is_learned_and_deleted() {
        let add = msg(
            RTM_NEWROUTE,
            libc::AF_INET as u8,
            24,
            &[
                attr(RTA_DST, &[192, 168, 50, 0]),
                attr(RTA_GATEWAY, &[10, 42, 0, 2]),
                attr(RTA_OIF, &TUN.to_ne_bytes()),
            ],
        );
        let mut dgram = add.clone();
        dgram.extend(msg(
            RTM_DELROUTE,
            libc::AF_INET as u8,
            24,
            &[
                attr(RTA_DST, &[192, 168, 50, 0]),
                attr(RTA_GATEWAY, &[10, 42, 0, 2]),
                attr(RTA_OIF, &TUN.to_ne_bytes()),
            ],
        ));
        let changes = parse(&dgram);
        assert_eq!(changes.len(), 2);
        let net: IpNet = "192.168.50.0/24".parse().expect("net");
        let gw: IpAddr = "10.42.0.2".parse().expect("ip");
        assert_eq!(decide(&changes[0], TUN, &vpn()), Some((net, Some(gw))));
        assert_eq!(decide(&changes[1], TUN, &vpn()), Some((net, None)));
    }

    #[test]
    fn other_devices_outside_gateways_and_default_routes_are_ignored() {
        let other_dev = msg(
            RTM_NEWROUTE,
            libc::AF_INET as u8,
            24,
            &[
                attr(RTA_DST, &[192, 168, 50, 0]),
                attr(RTA_GATEWAY, &[10, 42, 0, 2]),
                attr(RTA_OIF, &3u32.to_ne_bytes()),
            ],
        );
        let outside_gw = msg(
            RTM_NEWROUTE,
            libc::AF_INET as u8,
            24,
            &[
                attr(RTA_DST, &[192, 168, 50, 0]),
                attr(RTA_GATEWAY, &[172, 16, 0, 1]),
                attr(RTA_OIF, &TUN.to_ne_bytes()),
            ],
        );
        let no_gw = msg(
            RTM_NEWROUTE,
            libc::AF_INET as u8,
            24,
            &[
                attr(RTA_DST, &[192, 168, 50, 0]),
                attr(RTA_OIF, &TUN.to_ne_bytes()),
            ],
        );
        let default = msg(
            RTM_NEWROUTE,
            libc::AF_INET as u8,
            0,
            &[
                attr(RTA_GATEWAY, &[10, 42, 0, 2]),
                attr(RTA_OIF, &TUN.to_ne_bytes()),
            ],
        );
        for m in [other_dev, outside_gw, no_gw, default] {
            let c = parse(&m);
            assert_eq!(c.len(), 1);
            assert_eq!(decide(&c[0], TUN, &vpn()), None, "{c:?}");
        }
    }

    #[test]
    fn multipath_and_via_and_ipv6() {
        // Two next hops: another device, then ours with RTA_VIA (an IPv4 gateway of an IPv6 route).
        let mut nh = Vec::new();
        for (ifindex, gw) in [
            (3u32, attr(RTA_GATEWAY, &[0u8; 16])),
            (TUN, {
                let mut v = (libc::AF_INET as u16).to_ne_bytes().to_vec();
                v.extend_from_slice(&[10, 42, 0, 9]);
                attr(RTA_VIA, &v)
            }),
        ] {
            let len = RTNH_LEN + gw.len();
            nh.extend_from_slice(&(len as u16).to_ne_bytes());
            nh.extend_from_slice(&[0, 0]);
            nh.extend_from_slice(&ifindex.to_ne_bytes());
            nh.extend_from_slice(&gw);
        }
        let dst: Ipv6Addr = "2001:db8:5::".parse().expect("v6");
        let m = msg(
            RTM_NEWROUTE,
            libc::AF_INET6 as u8,
            48,
            &[attr(RTA_DST, &dst.octets()), attr(RTA_MULTIPATH, &nh)],
        );
        let c = parse(&m);
        assert_eq!(
            decide(&c[0], TUN, &vpn()),
            Some((
                "2001:db8:5::/48".parse().expect("net"),
                Some("10.42.0.9".parse().expect("ip"))
            ))
        );
    }

    #[test]
    fn malformed_input_never_panics() {
        let good = msg(
            RTM_NEWROUTE,
            libc::AF_INET as u8,
            24,
            &[
                attr(RTA_DST, &[192, 168, 50, 0]),
                attr(RTA_GATEWAY, &[10, 42, 0, 2]),
                attr(RTA_OIF, &TUN.to_ne_bytes()),
            ],
        );
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
            let mut bad = good.clone();
            bad[cut] = 0xff;
            let _ = parse(&bad);
        }
    }
}
