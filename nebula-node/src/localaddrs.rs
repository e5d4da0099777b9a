//! Our own underlay addresses, as reported to lighthouses: every interface address allowed by
//! `lighthouse.local_allow_list`, minus loopback, link-local and addresses inside the VPN.

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::config::LocalAllowList;

/// True for addresses Go never advertises: loopback, link-local, unspecified.
pub fn is_unadvertisable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// (interface name, address) pairs of this host.
pub fn interface_addrs() -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return out;
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .to_string();
        // SAFETY: ifa_addr points at a sockaddr whose family tells its real type.
        let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
        let ip = match family {
            libc::AF_INET => {
                // SAFETY: family AF_INET means the storage is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: family AF_INET6 means the storage is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        out.push((name, ip));
    }
    // SAFETY: frees the list allocated by getifaddrs above, once.
    unsafe { libc::freeifaddrs(ifap) };
    out
}

/// The addresses to advertise, in interface order.
pub fn advertisable(vpn_networks: &[IpNet], allow: Option<&LocalAllowList>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (name, ip) in interface_addrs() {
        if is_unadvertisable(&ip) || vpn_networks.iter().any(|n| n.contains(&ip)) {
            continue;
        }
        if let Some(a) = allow {
            if !a.allows_interface(&name) || !a.allows(ip) {
                continue;
            }
        }
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_loopback_but_never_advertises_it() {
        let all = interface_addrs();
        assert!(all.iter().any(|(_, ip)| ip.is_loopback()), "{all:?}");
        assert!(advertisable(&[], None).iter().all(|ip| !ip.is_loopback()));
    }
}
