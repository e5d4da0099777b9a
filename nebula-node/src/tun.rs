//! The Linux TUN device on plain libc: `/dev/net/tun` + `TUNSETIFF` (`IFF_TUN|IFF_NO_PI`, optional
//! multi-queue and `IFF_VNET_HDR` offloads), MTU/txqueuelen ioctls, addresses and routes via [`crate::netlink`].
//!
//! Set-up follows Go Nebula's `overlay/tun_linux.go` @ v1.11.1 (`Activate`): device MTU = the largest
//! route MTU, txqueuelen, IPv6 `addrgenmode none`, the certificate's networks as addresses, link up,
//! the kernel's prefix route for each network replaced by one carrying `tun.mtu`, then `tun.routes` and
//! installable `tun.unsafe_routes` (link scope, per-route MTU and ADVMSS, metric). Queues are
//! non-blocking; their raw fds are exposed for epoll. Dropping a [`Tun`] closes every queue, and the
//! kernel removes the (non-persistent) device.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;

use crate::config::{SystemRoute, TunConfig};
use crate::netlink::{self, Netlink, NetlinkError, RouteSpec, RTPROT_KERNEL};

/// The clone device.
pub const TUN_PATH: &str = "/dev/net/tun";
/// Longest interface name (IFNAMSIZ - 1).
pub const MAX_NAME_LEN: usize = 15;
/// Size of `struct virtio_net_hdr`, the prefix of every packet on an `IFF_VNET_HDR` queue.
pub const VIRTIO_NET_HDR_LEN: usize = 10;

/// `TUNSETOFFLOAD` bits (linux/if_tun.h).
pub mod offload {
    /// The kernel may hand us packets with partial checksums (and accepts them from us).
    pub const CSUM: u32 = 0x01;
    /// TCP segmentation offload, IPv4.
    pub const TSO4: u32 = 0x02;
    /// TCP segmentation offload, IPv6.
    pub const TSO6: u32 = 0x04;
    /// TSO with ECN.
    pub const TSO_ECN: u32 = 0x08;
    /// UDP segmentation offload, IPv4 (Linux 6.2+).
    pub const USO4: u32 = 0x20;
    /// UDP segmentation offload, IPv6 (Linux 6.2+).
    pub const USO6: u32 = 0x40;
}

/// A TUN operation that failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TunError {
    /// `/dev/net/tun` could not be opened (missing module, no permission, no such device node).
    #[error("cannot open {TUN_PATH}: {source} (needs the tun module and CAP_NET_ADMIN)")]
    Open {
        /// The error.
        source: io::Error,
    },
    /// The device name is too long or contains a NUL byte.
    #[error("invalid TUN device name {0:?} (at most {MAX_NAME_LEN} bytes, no NUL)")]
    InvalidName(String),
    /// An ioctl on the device or on the helper socket failed.
    #[error("{op} on {name:?}: {source}")]
    Ioctl {
        /// Which request, e.g. "TUNSETIFF".
        op: &'static str,
        /// The device name (as requested).
        name: String,
        /// The error.
        source: io::Error,
    },
    /// Adding a queue to a device that was opened without multi-queue.
    #[error("{0:?} was opened without IFF_MULTI_QUEUE; cannot add a queue")]
    NotMultiQueue(String),
    /// Offloads need a device opened with `vnet_hdr`.
    #[error("{0:?} was opened without IFF_VNET_HDR; offloads are not possible")]
    NoVnetHdr(String),
    /// A netlink request (address, route, link state) failed.
    #[error("{name:?}: {source}")]
    Netlink {
        /// The device name.
        name: String,
        /// The error.
        source: NetlinkError,
    },
}

/// How to open the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunOptions {
    /// Device name; empty = the kernel picks `tun%d` (Go Nebula does the same for `tun.dev: ""`).
    pub name: String,
    /// Number of queues to open (≥ 1). More than one implies `multi_queue`.
    pub queues: usize,
    /// `IFF_MULTI_QUEUE`: allows more queues later with [`Tun::add_queue`].
    pub multi_queue: bool,
    /// `IFF_VNET_HDR`: every packet read or written starts with a `virtio_net_hdr`
    /// ([`VIRTIO_NET_HDR_LEN`] bytes, see [`VirtioNetHdr`]); needed for offloads.
    pub vnet_hdr: bool,
}

impl Default for TunOptions {
    fn default() -> TunOptions {
        TunOptions {
            name: String::new(),
            queues: 1,
            multi_queue: false,
            vnet_hdr: false,
        }
    }
}

/// What the running kernel's TUN driver supports (`TUNGETFEATURES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunFeatures {
    /// The raw `IFF_*` feature bits.
    pub raw: u32,
    /// `IFF_MULTI_QUEUE` is supported.
    pub multi_queue: bool,
    /// `IFF_VNET_HDR` is supported.
    pub vnet_hdr: bool,
}

impl TunFeatures {
    /// Asks the kernel (opens `/dev/net/tun` without creating a device).
    pub fn probe() -> Result<TunFeatures, TunError> {
        let fd = open_clone_device()?;
        let mut raw: libc::c_uint = 0;
        // SAFETY: TUNGETFEATURES writes one unsigned int to the pointer, which is valid.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETFEATURES, &mut raw) };
        if rc < 0 {
            return Err(TunError::Ioctl {
                op: "TUNGETFEATURES",
                name: String::new(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(TunFeatures {
            raw,
            multi_queue: raw & libc::IFF_MULTI_QUEUE as u32 != 0,
            vnet_hdr: raw & libc::IFF_VNET_HDR as u32 != 0,
        })
    }
}

/// `struct ifreq` (40 bytes on 64-bit Linux): the name, then a union we fill by hand.
#[repr(C, align(8))]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> Result<IfReq, TunError> {
        let bytes = name.as_bytes();
        if bytes.len() > MAX_NAME_LEN || bytes.contains(&0) {
            return Err(TunError::InvalidName(name.to_string()));
        }
        let mut req = IfReq {
            name: [0; 16],
            data: [0; 24],
        };
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }

    fn set_short(&mut self, v: libc::c_short) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }

    fn set_int(&mut self, v: libc::c_int) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }

    fn int(&self) -> libc::c_int {
        libc::c_int::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }

    fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

fn open_clone_device() -> Result<OwnedFd, TunError> {
    let path = c"/dev/net/tun";
    // SAFETY: `path` is a valid NUL-terminated string; the result is checked.
    let raw = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw >= 0 {
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::NotFound && !Path::new(TUN_PATH).exists() {
        // Like Go Nebula (containers often lack the node): create /dev/net/tun (char 10:200).
        if make_device_node().is_ok() {
            // SAFETY: as above.
            let raw = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
                )
            };
            if raw >= 0 {
                // SAFETY: as above.
                return Ok(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    Err(TunError::Open { source: err })
}

fn make_device_node() -> io::Result<()> {
    std::fs::create_dir_all("/dev/net")?;
    let dev = libc::makedev(10, 200);
    // SAFETY: valid NUL-terminated path; mknod only creates a node and reports errors.
    let rc = unsafe { libc::mknod(c"/dev/net/tun".as_ptr(), libc::S_IFCHR | 0o600, dev) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One queue of the device: a non-blocking fd carrying one IP packet per read/write.
#[derive(Debug)]
pub struct TunQueue {
    fd: OwnedFd,
    vnet_hdr: bool,
}

impl TunQueue {
    /// Reads one packet. `WouldBlock` when none is waiting. With `vnet_hdr` the packet starts
    /// with a [`VirtioNetHdr`]. A buffer shorter than the packet truncates it.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is a live, writable buffer of the given length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Writes one packet (with its [`VirtioNetHdr`] first when `vnet_hdr`). `WouldBlock` when the
    /// queue is full.
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `packet` is a live buffer of the given length.
            let n =
                unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Waits until a packet can be read, at most `timeout` (`None` = forever).
    /// Returns false on timeout.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ms = match timeout {
            None => -1,
            Some(t) => i32::try_from(t.as_millis()).unwrap_or(i32::MAX),
        };
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd, count 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc >= 0 {
                return Ok(rc > 0);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Whether packets on this queue carry a `virtio_net_hdr` prefix.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TunQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The addresses, MTUs and routes to give the device ([`Tun::activate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunSetup {
    /// The certificate's networks: each becomes an address (`addr/prefix`) and a prefix route.
    pub networks: Vec<IpNet>,
    /// `tun.mtu`: MTU of the network routes and default for routes without their own.
    pub default_mtu: u32,
    /// `tun.tx_queue`.
    pub tx_queue_len: u32,
    /// Routes to install (see [`TunConfig::system_routes`]).
    pub routes: Vec<SystemRoute>,
}

impl TunSetup {
    /// From the `tun` section and our certificate's networks.
    pub fn from_config(tun: &TunConfig, networks: &[IpNet]) -> TunSetup {
        TunSetup {
            networks: networks.to_vec(),
            default_mtu: tun.mtu,
            tx_queue_len: tun.tx_queue,
            routes: tun.system_routes(),
        }
    }

    /// The device MTU: the largest of the default and every route MTU.
    pub fn max_mtu(&self) -> u32 {
        self.routes
            .iter()
            .map(|r| r.mtu)
            .fold(self.default_mtu, u32::max)
    }

    /// Go's ADVMSS rule: set (MTU - 40) only when a route's MTU differs from the device MTU.
    fn advmss(&self, mtu: u32) -> u32 {
        if mtu != self.max_mtu() {
            mtu.saturating_sub(40)
        } else {
            0
        }
    }

    fn network_route(&self, ifindex: u32, net: &IpNet) -> RouteSpec {
        let mut r = RouteSpec::new(ifindex, net.trunc());
        r.mtu = self.default_mtu;
        r.advmss = self.advmss(self.default_mtu);
        r.prefsrc = Some(net.addr());
        r.protocol = RTPROT_KERNEL;
        // Replace the kernel's own prefix route, which has metric 0 (IPv4) or 256 (IPv6).
        r.metric = if net.addr().is_ipv6() { 256 } else { 0 };
        r
    }

    fn route(&self, ifindex: u32, sr: &SystemRoute) -> RouteSpec {
        let mut r = RouteSpec::new(ifindex, sr.dst.trunc());
        r.mtu = sr.mtu;
        r.advmss = self.advmss(sr.mtu);
        r.metric = sr.metric;
        r
    }
}

/// An open TUN device and its queues.
#[derive(Debug)]
pub struct Tun {
    name: String,
    ifindex: u32,
    flags: libc::c_short,
    queues: Vec<TunQueue>,
}

impl Tun {
    /// Creates (or attaches to) the device and opens `opts.queues` queues.
    pub fn open(opts: &TunOptions) -> Result<Tun, TunError> {
        let queues_wanted = opts.queues.max(1);
        let mut flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        if opts.multi_queue || queues_wanted > 1 {
            flags |= libc::IFF_MULTI_QUEUE as libc::c_short;
        }
        if opts.vnet_hdr {
            flags |= libc::IFF_VNET_HDR as libc::c_short;
        }
        let (first, name) = attach_queue(&opts.name, flags)?;
        let ifindex = netlink::ifindex(&name).map_err(|source| TunError::Ioctl {
            op: "if_nametoindex",
            name: name.clone(),
            source,
        })?;
        let mut tun = Tun {
            name,
            ifindex,
            flags,
            queues: vec![TunQueue {
                fd: first,
                vnet_hdr: opts.vnet_hdr,
            }],
        };
        if opts.vnet_hdr {
            tun.set_vnet_hdr_len(VIRTIO_NET_HDR_LEN)?;
        }
        for _ in 1..queues_wanted {
            tun.add_queue()?;
        }
        Ok(tun)
    }

    /// Opens one more queue on a multi-queue device; returns its index.
    pub fn add_queue(&mut self) -> Result<usize, TunError> {
        if self.flags & libc::IFF_MULTI_QUEUE as libc::c_short == 0 {
            return Err(TunError::NotMultiQueue(self.name.clone()));
        }
        let (fd, _) = attach_queue(&self.name, self.flags)?;
        self.queues.push(TunQueue {
            fd,
            vnet_hdr: self.vnet_hdr(),
        });
        Ok(self.queues.len() - 1)
    }

    /// The device name (the kernel's choice when none was asked for).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The queues; queue 0 always exists.
    pub fn queues(&self) -> &[TunQueue] {
        &self.queues
    }

    /// Moves the queues out (e.g. one per worker thread). The device lives until every queue
    /// is dropped.
    pub fn into_queues(self) -> Vec<TunQueue> {
        self.queues
    }

    /// Whether packets carry a `virtio_net_hdr`.
    pub fn vnet_hdr(&self) -> bool {
        self.flags & libc::IFF_VNET_HDR as libc::c_short != 0
    }

    /// Reads a packet from queue 0 (see [`TunQueue::read`]).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.queues[0].read(buf)
    }

    /// Writes a packet to queue 0 (see [`TunQueue::write`]).
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        self.queues[0].write(packet)
    }

    fn ioctl_err(&self, op: &'static str) -> TunError {
        TunError::Ioctl {
            op,
            name: self.name.clone(),
            source: io::Error::last_os_error(),
        }
    }

    fn set_vnet_hdr_len(&self, len: usize) -> Result<(), TunError> {
        let v = len as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer, which is valid.
        let rc = unsafe { libc::ioctl(self.queues[0].as_raw_fd(), libc::TUNSETVNETHDRSZ, &v) };
        if rc < 0 {
            return Err(self.ioctl_err("TUNSETVNETHDRSZ"));
        }
        Ok(())
    }

    /// Enables exactly the given [`offload`] bits (`TUNSETOFFLOAD`, device-wide). The kernel
    /// refuses bits it does not know with `EINVAL`.
    pub fn set_offloads(&self, bits: u32) -> Result<(), TunError> {
        if !self.vnet_hdr() {
            return Err(TunError::NoVnetHdr(self.name.clone()));
        }
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        let rc = unsafe {
            libc::ioctl(
                self.queues[0].as_raw_fd(),
                libc::TUNSETOFFLOAD,
                bits as libc::c_ulong,
            )
        };
        if rc < 0 {
            return Err(self.ioctl_err("TUNSETOFFLOAD"));
        }
        Ok(())
    }

    /// Enables as many of the `wanted` offloads as the kernel accepts, trying
    /// `wanted`, then without USO, then checksum+TSO, then checksum only. Returns the bits now
    /// enabled (0 if none, in which case offloads are off).
    pub fn enable_offloads(&self, wanted: u32) -> Result<u32, TunError> {
        let tso = offload::CSUM | offload::TSO4 | offload::TSO6;
        let tries = [
            wanted,
            wanted & !(offload::USO4 | offload::USO6),
            wanted & tso,
            wanted & offload::CSUM,
        ];
        for bits in tries {
            if bits == 0 {
                continue;
            }
            if self.set_offloads(bits).is_ok() {
                return Ok(bits);
            }
        }
        self.set_offloads(0)?;
        Ok(0)
    }

    fn ioctl_socket() -> Result<OwnedFd, io::Error> {
        // SAFETY: plain socket(2) call; checked.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: freshly opened, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    fn if_ioctl(
        &self,
        op: &'static str,
        req: libc::Ioctl,
        ifr: &mut IfReq,
    ) -> Result<(), TunError> {
        let sock = Tun::ioctl_socket().map_err(|source| TunError::Ioctl {
            op,
            name: self.name.clone(),
            source,
        })?;
        // SAFETY: `ifr` is a valid, writable struct ifreq layout for these SIOC* requests.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), req, ifr as *mut IfReq) };
        if rc < 0 {
            return Err(self.ioctl_err(op));
        }
        Ok(())
    }

    /// Sets the device MTU (`SIOCSIFMTU`).
    pub fn set_mtu(&self, mtu: u32) -> Result<(), TunError> {
        let mut ifr = IfReq::new(&self.name)?;
        ifr.set_int(mtu as libc::c_int);
        self.if_ioctl("SIOCSIFMTU", libc::SIOCSIFMTU as libc::Ioctl, &mut ifr)
    }

    /// The device MTU (`SIOCGIFMTU`).
    pub fn mtu(&self) -> Result<u32, TunError> {
        let mut ifr = IfReq::new(&self.name)?;
        self.if_ioctl("SIOCGIFMTU", libc::SIOCGIFMTU as libc::Ioctl, &mut ifr)?;
        Ok(ifr.int() as u32)
    }

    /// Sets the transmit queue length (`SIOCSIFTXQLEN`).
    pub fn set_tx_queue_len(&self, len: u32) -> Result<(), TunError> {
        let mut ifr = IfReq::new(&self.name)?;
        ifr.set_int(len as libc::c_int);
        self.if_ioctl(
            "SIOCSIFTXQLEN",
            libc::SIOCSIFTXQLEN as libc::Ioctl,
            &mut ifr,
        )
    }

    fn nl_err(&self) -> impl Fn(NetlinkError) -> TunError + '_ {
        move |source| TunError::Netlink {
            name: self.name.clone(),
            source,
        }
    }

    /// Brings the device up with its addresses and routes, in Go Nebula's order. Failures Go
    /// only logs (MTU, txqueuelen, addrgenmode) are returned as the `Ok` list; the rest are errors.
    pub fn activate(&self, setup: &TunSetup) -> Result<Vec<TunError>, TunError> {
        let mut soft = Vec::new();
        let mut nl = Netlink::open().map_err(self.nl_err())?;
        if let Err(e) = self.set_mtu(setup.max_mtu()) {
            soft.push(e);
        }
        if let Err(e) = self.set_tx_queue_len(setup.tx_queue_len) {
            soft.push(e);
        }
        if let Err(e) = nl.set_addr_gen_mode_none(self.ifindex) {
            soft.push(self.nl_err()(e));
        }
        for net in &setup.networks {
            nl.replace_address(self.ifindex, *net)
                .map_err(self.nl_err())?;
        }
        nl.set_link_up(self.ifindex, true).map_err(self.nl_err())?;
        for net in &setup.networks {
            self.replace_with_retry(&mut nl, &setup.network_route(self.ifindex, net))?;
        }
        for r in &setup.routes {
            nl.replace_route(&setup.route(self.ifindex, r))
                .map_err(self.nl_err())?;
        }
        Ok(soft)
    }

    /// Go retries the network route twice, 100 ms apart: some kernels refuse it right after
    /// the link comes up.
    fn replace_with_retry(&self, nl: &mut Netlink, r: &RouteSpec) -> Result<(), TunError> {
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            match nl.replace_route(r) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(self.nl_err()(e)),
            None => Ok(()),
        }
    }

    /// Applies a reloaded `tun` section: device MTU and network routes when the MTUs changed,
    /// routes that disappeared removed, every wanted route (re)installed. Returns the failures
    /// (Go logs them and carries on).
    pub fn reload(&self, old: &TunSetup, new: &TunSetup) -> Vec<TunError> {
        let mut errors = Vec::new();
        let mut nl = match Netlink::open() {
            Ok(nl) => nl,
            Err(e) => return vec![self.nl_err()(e)],
        };
        if old.max_mtu() != new.max_mtu() {
            if let Err(e) = self.set_mtu(new.max_mtu()) {
                errors.push(e);
            }
        }
        if old.default_mtu != new.default_mtu || old.max_mtu() != new.max_mtu() {
            for net in &new.networks {
                if let Err(e) = nl.replace_route(&new.network_route(self.ifindex, net)) {
                    errors.push(self.nl_err()(e));
                }
            }
        }
        for r in &old.routes {
            if !new.routes.contains(r) {
                if let Err(e) = nl.delete_route(&old.route(self.ifindex, r)) {
                    errors.push(self.nl_err()(e));
                }
            }
        }
        for r in &new.routes {
            if let Err(e) = nl.replace_route(&new.route(self.ifindex, r)) {
                errors.push(self.nl_err()(e));
            }
        }
        errors
    }
}

/// Opens `/dev/net/tun` and attaches it to device `name` with `flags`; returns the fd and the
/// device's actual name.
fn attach_queue(name: &str, flags: libc::c_short) -> Result<(OwnedFd, String), TunError> {
    let mut ifr = IfReq::new(name)?;
    ifr.set_short(flags);
    let fd = open_clone_device()?;
    // SAFETY: TUNSETIFF reads and writes a struct ifreq; `ifr` has that layout and is writable.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr as *mut IfReq) };
    if rc < 0 {
        return Err(TunError::Ioctl {
            op: "TUNSETIFF",
            name: name.to_string(),
            source: io::Error::last_os_error(),
        });
    }
    Ok((fd, ifr.name()))
}

/// `struct virtio_net_hdr`, the prefix of each packet on an `IFF_VNET_HDR` queue (native byte
/// order, as the TUN driver uses by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM` (1), `DATA_VALID` (2).
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_NONE` (0), `TCPV4` (1), `UDP` (3), `TCPV6` (4), `UDP_L4` (5).
    pub gso_type: u8,
    /// Length of the headers to copy into each segment.
    pub hdr_len: u16,
    /// Segment payload size.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// Parses the first [`VIRTIO_NET_HDR_LEN`] bytes; `None` if there are fewer.
    pub fn parse(b: &[u8]) -> Option<VirtioNetHdr> {
        let b: &[u8; VIRTIO_NET_HDR_LEN] = b.get(..VIRTIO_NET_HDR_LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; VIRTIO_NET_HDR_LEN] {
        let mut b = [0u8; VIRTIO_NET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_layout_and_names() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert!(IfReq::new("0123456789abcde").is_ok());
        assert!(matches!(
            IfReq::new("0123456789abcdef"),
            Err(TunError::InvalidName(_))
        ));
        assert!(IfReq::new("a\0b").is_err());
        let mut r = IfReq::new("nebula1").unwrap();
        r.set_int(1300);
        assert_eq!(r.int(), 1300);
        assert_eq!(r.name(), "nebula1");
    }

    #[test]
    fn setup_mtus_like_go() {
        let tun: TunConfig = crate::config::Config::from_str(
            "pki: {ca: a, cert: b, key: c}\ntun:\n  mtu: 1300\n  routes: [{route: 10.1.2.0/24, mtu: 8800}]\n  unsafe_routes:\n    - {route: 172.16.0.0/24, via: 10.1.0.9, metric: 100}\n    - {route: 172.17.0.0/24, via: 10.1.0.9, install: false}\n",
        )
        .unwrap()
        .config
        .tun;
        let s = TunSetup::from_config(&tun, &["10.1.0.1/16".parse().unwrap()]);
        assert_eq!(s.max_mtu(), 8800);
        assert_eq!(s.routes.len(), 2, "install: false is skipped");
        let net = s.network_route(4, &s.networks[0]);
        assert_eq!(net.dst, "10.1.0.0/16".parse::<IpNet>().unwrap());
        assert_eq!((net.mtu, net.advmss), (1300, 1260));
        assert_eq!(net.prefsrc, Some("10.1.0.1".parse().unwrap()));
        let big = s.route(4, &s.routes[0]);
        assert_eq!((big.mtu, big.advmss, big.metric), (8800, 0, 0));
        let unsafe_ = s.route(4, &s.routes[1]);
        assert_eq!(
            (unsafe_.mtu, unsafe_.advmss, unsafe_.metric),
            (1300, 1260, 100)
        );
    }

    #[test]
    fn virtio_header_round_trip() {
        let h = VirtioNetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 74,
            gso_size: 1388,
            csum_start: 54,
            csum_offset: 16,
        };
        assert_eq!(VirtioNetHdr::parse(&h.to_bytes()), Some(h));
        assert_eq!(VirtioNetHdr::parse(&[0; 9]), None);
    }
}
