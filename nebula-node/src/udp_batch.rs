//! Batched UDP for the underlay (Linux): `recvmmsg`/`sendmmsg`, UDP GSO (`UDP_SEGMENT`) on send
//! and GRO (`UDP_GRO`) on receive, large socket buffers; probed at start, with plain fallbacks.
//!
//! [`BatchSocket`] wraps a non-blocking UDP socket. [`BatchSocket::send_batch`] takes datagrams
//! with their destinations and groups each run of equal-size datagrams (the last of a run may be
//! shorter) to one destination into a single GSO message, so one `sendmmsg` carries many runs; if
//! the kernel refuses GSO (`EIO`/`EINVAL`) it is switched off and the batch is sent again as
//! plain datagrams. [`BatchSocket::recv_batch`] fills several buffers per syscall; with GRO one
//! buffer may hold several datagrams of equal size ([`RecvMeta::datagrams`] splits them). On a
//! dual-stack IPv6 socket, IPv4 peers appear as plain IPv4 addresses in both directions.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Most messages handed to one `recvmmsg`/`sendmmsg`.
pub const MAX_BATCH: usize = 64;
/// Most datagrams one `send_batch` call consumes (the iovec array size).
pub const MAX_SEND_DATAGRAMS: usize = 256;
/// Most segments in one GSO message (the kernel's `UDP_MAX_SEGMENTS` has been 64 or more).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO message (an IP packet of 64 KiB minus IPv6 and UDP headers).
pub const MAX_GSO_BYTES: usize = 65_535 - 40 - 8;
/// Socket buffer size asked for by default.
pub const DEFAULT_SOCKET_BUFFER: usize = 8 << 20;
/// A receive buffer this large never truncates a GRO batch.
pub const GRO_BUFFER_LEN: usize = 65_535;

/// Room for the control messages we send or expect (one `UDP_SEGMENT`/`UDP_GRO`, with slack).
const CMSG_BUF_LEN: usize = 64;

/// Aligned storage for control messages.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_BUF_LEN]);

/// What the kernel offers (or what is switched on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// UDP segmentation offload on send (`UDP_SEGMENT`, Linux 4.18+).
    pub gso: bool,
    /// UDP receive coalescing (`UDP_GRO`, Linux 5.0+).
    pub gro: bool,
}

/// Effective socket buffer sizes, as the kernel reports them (it doubles what was asked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferSizes {
    /// `SO_RCVBUF` now.
    pub recv: usize,
    /// `SO_SNDBUF` now.
    pub send: usize,
    /// The receive size was set with `SO_RCVBUFFORCE` (privileged, ignores `rmem_max`).
    pub recv_forced: bool,
    /// The send size was set with `SO_SNDBUFFORCE` (privileged, ignores `wmem_max`).
    pub send_forced: bool,
}

/// How to set a [`BatchSocket`] up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Use UDP GSO on send when the kernel has it.
    pub gso: bool,
    /// Use UDP GRO on receive when the kernel has it (receive buffers should then be
    /// [`GRO_BUFFER_LEN`] bytes, or a coalesced batch is truncated).
    pub gro: bool,
    /// Receive buffer to ask for; 0 leaves the system default.
    pub recv_buffer: usize,
    /// Send buffer to ask for; 0 leaves the system default.
    pub send_buffer: usize,
    /// `SO_MARK` for outgoing packets (`listen.so_mark`); 0 leaves it unset.
    pub mark: u32,
    /// `SO_REUSEPORT` before binding: several sockets (one per worker) share the port and the
    /// kernel spreads peers over them by address hash, so one peer stays on one socket.
    pub reuse_port: bool,
}

impl Default for BatchOptions {
    fn default() -> BatchOptions {
        BatchOptions {
            gso: true,
            gro: true,
            recv_buffer: DEFAULT_SOCKET_BUFFER,
            send_buffer: DEFAULT_SOCKET_BUFFER,
            mark: 0,
            reuse_port: false,
        }
    }
}

/// What arrived in one receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// The sender (IPv4-mapped addresses folded to IPv4).
    pub addr: SocketAddr,
    /// Bytes written to the buffer.
    pub len: usize,
    /// Size of each datagram in the buffer (the last may be shorter); equals `len` without GRO.
    pub stride: usize,
    /// The datagram (or GRO batch) did not fit the buffer and was cut (`MSG_TRUNC`).
    pub truncated: bool,
}

impl Default for RecvMeta {
    fn default() -> RecvMeta {
        RecvMeta {
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            len: 0,
            stride: 0,
            truncated: false,
        }
    }
}

impl RecvMeta {
    /// The datagrams in `buf` (the buffer this meta describes): `len` bytes cut every `stride`.
    pub fn datagrams<'a>(&self, buf: &'a [u8]) -> Datagrams<'a> {
        let len = self.len.min(buf.len());
        Datagrams {
            rest: &buf[..len],
            stride: self.stride.max(1),
            empty: len == 0,
        }
    }

    /// How many datagrams the buffer holds.
    pub fn count(&self) -> usize {
        if self.len == 0 {
            1
        } else {
            self.len.div_ceil(self.stride.max(1))
        }
    }
}

/// Iterator over the datagrams of one GRO buffer ([`RecvMeta::datagrams`]).
#[derive(Debug, Clone)]
pub struct Datagrams<'a> {
    rest: &'a [u8],
    stride: usize,
    /// A single empty datagram still to yield.
    empty: bool,
}

impl<'a> Iterator for Datagrams<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.empty {
            self.empty = false;
            return Some(self.rest);
        }
        if self.rest.is_empty() {
            return None;
        }
        let (d, rest) = self.rest.split_at(self.stride.min(self.rest.len()));
        self.rest = rest;
        Some(d)
    }
}

/// One datagram to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Destination (IPv4 is fine on a dual-stack socket).
    pub to: SocketAddr,
    /// The datagram.
    pub payload: &'a [u8],
}

/// Per-call scratch for the syscalls: message headers, iovecs, addresses, control buffers.
struct Scratch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
    /// Datagrams carried by each message of the last send.
    counts: Vec<usize>,
}

// SAFETY: the raw pointers inside `hdrs` and `iovs` are rewritten at the start of every call,
// point only at buffers borrowed for that call (or at the other vectors of this struct), and are
// dereferenced only by the kernel during the call. Between calls they are dead values, so moving
// a `Scratch` to another thread shares nothing.
unsafe impl Send for Scratch {}

impl Scratch {
    fn new() -> Scratch {
        // SAFETY: these are plain C structs for which all-zero bytes are a valid value
        // (null pointers, zero lengths, AF_UNSPEC).
        let (hdr, iov, addr) = unsafe {
            (
                zeroed::<libc::mmsghdr>(),
                zeroed::<libc::iovec>(),
                zeroed::<libc::sockaddr_storage>(),
            )
        };
        Scratch {
            hdrs: vec![hdr; MAX_BATCH],
            iovs: vec![iov; MAX_SEND_DATAGRAMS],
            addrs: vec![addr; MAX_BATCH],
            cmsgs: vec![CmsgBuf([0; CMSG_BUF_LEN]); MAX_BATCH],
            counts: vec![0; MAX_BATCH],
        }
    }
}

/// A non-blocking UDP socket doing batched I/O with GSO/GRO where the kernel allows.
pub struct BatchSocket {
    sock: UdpSocket,
    /// AF_INET6 socket (IPv4 peers go as v4-mapped addresses).
    v6: bool,
    available: Offloads,
    active: Offloads,
    buffers: BufferSizes,
    scratch: Scratch,
}

impl std::fmt::Debug for BatchSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSocket")
            .field("sock", &self.sock)
            .field("v6", &self.v6)
            .field("available", &self.available)
            .field("active", &self.active)
            .field("buffers", &self.buffers)
            .finish_non_exhaustive()
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `v` is a live c_int and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and writable; `len` holds the size of `v`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Asks for `size` with the privileged option first, then the normal one; returns the
/// effective size and whether the privileged option worked.
fn set_buffer(fd: RawFd, force: libc::c_int, normal: libc::c_int, size: usize) -> (usize, bool) {
    let mut forced = false;
    if size > 0 {
        let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        forced = setsockopt_int(fd, libc::SOL_SOCKET, force, v).is_ok();
        if !forced {
            // Capped by net.core.{r,w}mem_max; a failure leaves the default, which is fine.
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, normal, v);
        }
    }
    let now = getsockopt_int(fd, libc::SOL_SOCKET, normal).unwrap_or(0);
    (usize::try_from(now).unwrap_or(0), forced)
}

/// Writes `addr` into `ss` in the socket's family; returns the address length, or `None` when
/// the address cannot be reached from this socket (IPv6 on an IPv4 socket).
fn write_sockaddr(
    addr: SocketAddr,
    v6_socket: bool,
    ss: &mut libc::sockaddr_storage,
) -> Option<libc::socklen_t> {
    let addr = canonical(addr);
    match (addr, v6_socket) {
        (SocketAddr::V4(a), false) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((ss as *mut libc::sockaddr_storage).cast(), sin) };
            Some(size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        (SocketAddr::V6(_), false) => None,
        (a, true) => {
            let (ip, port, flow, scope) = match a {
                SocketAddr::V4(a) => (a.ip().to_ipv6_mapped(), a.port(), 0, 0),
                SocketAddr::V6(a) => (*a.ip(), a.port(), a.flowinfo(), a.scope_id()),
            };
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: port.to_be(),
                sin6_flowinfo: flow.to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                sin6_scope_id: scope,
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((ss as *mut libc::sockaddr_storage).cast(), sin6) };
            Some(size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Reads the source address the kernel wrote; IPv4-mapped folded to IPv4.
fn read_sockaddr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is large and
            // aligned enough for one.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(canonical(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            ))))
        }
        _ => None,
    }
}

/// The `UDP_GRO` segment size in a received message's control data, if any.
fn gro_segment_size(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: `hdr` is a msghdr whose control pointer/length were set by us to a live buffer
    // and updated by the kernel; the CMSG_* helpers stay within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let data = libc::CMSG_DATA(c);
                let v = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                return usize::try_from(v).ok().filter(|&v| v > 0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

impl BatchSocket {
    /// Wraps a bound UDP socket: makes it non-blocking, sets its mark, probes GSO/GRO and
    /// switches on what `opts` wants and the kernel has, and sizes its buffers. Fails only if
    /// the socket is unusable or the mark cannot be set (needs CAP_NET_ADMIN).
    pub fn new(sock: UdpSocket, opts: &BatchOptions) -> io::Result<BatchSocket> {
        sock.set_nonblocking(true)?;
        if opts.mark != 0 {
            let mark = libc::c_int::from_ne_bytes(opts.mark.to_ne_bytes());
            setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_MARK, mark)?;
        }
        let v6 = sock.local_addr()?.is_ipv6();
        let mut s = BatchSocket {
            sock,
            v6,
            available: Offloads::default(),
            active: Offloads::default(),
            buffers: BufferSizes::default(),
            scratch: Scratch::new(),
        };
        s.available = s.probe();
        s.active.gso = opts.gso && s.available.gso;
        if opts.gro && s.available.gro {
            s.set_gro(true)?;
        }
        s.set_buffer_sizes(opts.recv_buffer, opts.send_buffer);
        Ok(s)
    }

    /// A second handle on the same socket (a duplicated descriptor) with the same offloads, for
    /// a thread that only sends.
    pub fn try_clone(&self) -> io::Result<BatchSocket> {
        Ok(BatchSocket {
            sock: self.sock.try_clone()?,
            v6: self.v6,
            available: self.available,
            active: self.active,
            buffers: self.buffers,
            scratch: Scratch::new(),
        })
    }

    /// Takes over a raw UDP socket descriptor (see [`BatchSocket::new`]).
    pub fn from_fd(fd: OwnedFd, opts: &BatchOptions) -> io::Result<BatchSocket> {
        BatchSocket::new(UdpSocket::from(fd), opts)
    }

    /// Binds `addr` (port 0 = any); `[::]` gives a dual-stack socket.
    pub fn bind(addr: SocketAddr, opts: &BatchOptions) -> io::Result<BatchSocket> {
        let domain = if addr.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            s.set_only_v6(!addr.ip().is_unspecified())?;
        }
        if opts.reuse_port {
            setsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        s.bind(&addr.into())?;
        BatchSocket::new(s.into(), opts)
    }

    /// Asks the kernel which offloads this socket can use, without changing what is on:
    /// `UDP_SEGMENT` is probed by setting the socket default segment size to 0 (none), and
    /// `UDP_GRO` by switching it on and back to its current state.
    pub fn probe(&self) -> Offloads {
        let fd = self.sock.as_raw_fd();
        let gso = setsockopt_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok();
        let gro = setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        if gro && !self.active.gro {
            let _ = setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 0);
        }
        Offloads { gso, gro }
    }

    /// What the kernel supports (from the probe at start).
    pub fn available(&self) -> Offloads {
        self.available
    }

    /// What is in use now (GSO goes off by itself if the kernel refuses it at send time).
    pub fn offloads(&self) -> Offloads {
        self.active
    }

    /// Switches GSO on (if available) or off.
    pub fn set_gso(&mut self, on: bool) {
        self.active.gso = on && self.available.gso;
    }

    /// Switches GRO on or off (`UDP_GRO`).
    pub fn set_gro(&mut self, on: bool) -> io::Result<()> {
        if on && !self.available.gro {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "UDP_GRO is not supported by this kernel",
            ));
        }
        setsockopt_int(
            self.sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            libc::c_int::from(on),
        )?;
        self.active.gro = on;
        Ok(())
    }

    /// Asks for socket buffers (privileged `*BUFFORCE` first, then the normal options, which
    /// the kernel caps at `net.core.{r,w}mem_max`); 0 leaves a side alone. Returns what is in
    /// effect.
    pub fn set_buffer_sizes(&mut self, recv: usize, send: usize) -> BufferSizes {
        let fd = self.sock.as_raw_fd();
        let (r, rf) = set_buffer(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, recv);
        let (s, sf) = set_buffer(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, send);
        self.buffers = BufferSizes {
            recv: r,
            send: s,
            recv_forced: rf,
            send_forced: sf,
        };
        self.buffers
    }

    /// The buffer sizes in effect.
    pub fn buffers(&self) -> BufferSizes {
        self.buffers
    }

    /// The bound address (IPv4-mapped folded to IPv4).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr().map(canonical)
    }

    /// The wrapped socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Gives the socket back.
    pub fn into_inner(self) -> UdpSocket {
        self.sock
    }

    /// Receives up to `min(bufs.len(), metas.len(), MAX_BATCH)` messages without blocking;
    /// returns how many (`WouldBlock` when none is waiting). Message `i` is in `bufs[i]`,
    /// described by `metas[i]`; with GRO on it may hold several datagrams
    /// ([`RecvMeta::datagrams`]).
    pub fn recv_batch<B: AsMut<[u8]>>(
        &mut self,
        bufs: &mut [B],
        metas: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let n = bufs.len().min(metas.len()).min(MAX_BATCH);
        if n == 0 {
            return Ok(0);
        }
        let sc = &mut self.scratch;
        for (i, buf) in bufs.iter_mut().take(n).enumerate() {
            let b = buf.as_mut();
            sc.iovs[i] = libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            };
        }
        for i in 0..n {
            let h = &mut sc.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut sc.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut sc.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = sc.cmsgs[i].0.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG_BUF_LEN as _;
            h.msg_hdr.msg_flags = 0;
        }
        let got = loop {
            // SAFETY: `hdrs[..n]` are initialised above; each points at one live iovec over a
            // caller buffer borrowed mutably for this call, at its own sockaddr_storage and
            // control buffer, all with their true lengths.
            let rc = unsafe {
                libc::recvmmsg(
                    self.sock.as_raw_fd(),
                    sc.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                break rc as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        for (i, meta) in metas.iter_mut().take(got).enumerate() {
            let h = &sc.hdrs[i];
            let len = h.msg_len as usize;
            let stride = if self.active.gro {
                gro_segment_size(&h.msg_hdr).unwrap_or(len)
            } else {
                len
            };
            *meta = RecvMeta {
                addr: read_sockaddr(&sc.addrs[i], h.msg_hdr.msg_namelen)
                    .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
                len,
                stride: if stride == 0 { len } else { stride },
                truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        Ok(got)
    }

    /// Sends datagrams, as many as one `sendmmsg` takes (at most [`MAX_BATCH`] messages and
    /// [`MAX_SEND_DATAGRAMS`] datagrams); returns how many of `transmits` (a prefix) went out.
    /// Call again with the rest. `WouldBlock` when the socket buffer is full and nothing was
    /// sent; `InvalidInput` when the first datagram's address family cannot be used on this
    /// socket (a later one just ends the batch before it).
    ///
    /// With GSO on, consecutive datagrams to the same destination with the same size (the last
    /// of such a run may be shorter) travel as one message with a `UDP_SEGMENT` control
    /// message. If the kernel answers `EIO` or `EINVAL` to such a message, GSO is switched off
    /// for this socket ([`BatchSocket::offloads`] shows it) and the batch is sent without it.
    pub fn send_batch(&mut self, transmits: &[Transmit<'_>]) -> io::Result<usize> {
        loop {
            let (msgs, gso_first) = self.build_send(transmits);
            if msgs == 0 {
                return match transmits.first() {
                    None => Ok(0),
                    Some(t) => Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("cannot send to {} from this socket's address family", t.to),
                    )),
                };
            }
            // SAFETY: `hdrs[..msgs]` were initialised by build_send and point into `iovs`,
            // `addrs` and `cmsgs` of the same scratch, and into `transmits`' payloads, which are
            // borrowed for this call; the kernel only reads them.
            let rc = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    self.scratch.hdrs.as_mut_ptr(),
                    msgs as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc >= 0 {
                let sent = rc as usize;
                return Ok(self.scratch.counts[..sent.min(msgs)].iter().sum());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EIO) | Some(libc::EINVAL) if gso_first => {
                    tracing::warn!(error = %e, "UDP GSO refused by the kernel; sending without it");
                    self.active.gso = false;
                }
                _ => return Err(e),
            }
        }
    }

    /// Fills the scratch message headers for `transmits`; returns the number of messages and
    /// whether the first one uses GSO.
    fn build_send(&mut self, transmits: &[Transmit<'_>]) -> (usize, bool) {
        let gso = self.active.gso;
        let v6 = self.v6;
        let sc = &mut self.scratch;
        let mut msgs = 0;
        let mut iov = 0;
        let mut i = 0;
        let mut gso_first = false;
        while i < transmits.len() && msgs < MAX_BATCH && iov < MAX_SEND_DATAGRAMS {
            let first = &transmits[i];
            let Some(namelen) = write_sockaddr(first.to, v6, &mut sc.addrs[msgs]) else {
                break;
            };
            let seg = first.payload.len();
            let mut end = i + 1;
            if gso && seg > 0 {
                let mut bytes = seg;
                while end < transmits.len()
                    && end - i < MAX_GSO_SEGMENTS
                    && iov + (end - i) < MAX_SEND_DATAGRAMS
                {
                    let t = &transmits[end];
                    let len = t.payload.len();
                    if t.to != first.to || len == 0 || len > seg || bytes + len > MAX_GSO_BYTES {
                        break;
                    }
                    bytes += len;
                    end += 1;
                    if len < seg {
                        break;
                    }
                }
            }
            let count = end - i;
            for (k, t) in transmits[i..end].iter().enumerate() {
                sc.iovs[iov + k] = libc::iovec {
                    // The kernel only reads from a send iovec; the cast to *mut is for the ABI.
                    iov_base: t.payload.as_ptr() as *mut libc::c_void,
                    iov_len: t.payload.len(),
                };
            }
            let h = &mut sc.hdrs[msgs];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut sc.addrs[msgs] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = namelen;
            h.msg_hdr.msg_iov = &mut sc.iovs[iov];
            h.msg_hdr.msg_iovlen = count as _;
            h.msg_hdr.msg_flags = 0;
            if count > 1 {
                let buf = &mut sc.cmsgs[msgs];
                // SAFETY: CMSG_SPACE of a u16 (24 bytes) fits the 8-aligned 64-byte buffer; the
                // header and data are written inside it through the CMSG_* helpers.
                unsafe {
                    let space = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
                    h.msg_hdr.msg_control = buf.0.as_mut_ptr().cast();
                    h.msg_hdr.msg_controllen = space as _;
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
                }
                if msgs == 0 {
                    gso_first = true;
                }
            } else {
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
            }
            sc.counts[msgs] = count;
            msgs += 1;
            iov += count;
            i = end;
        }
        (msgs, gso_first)
    }
}

impl AsRawFd for BatchSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for BatchSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Whether `ip` can be a destination of a socket bound as `local` (for callers that pick a
/// socket per family).
pub fn reachable_from(local: SocketAddr, ip: IpAddr) -> bool {
    match (local, canonical(SocketAddr::new(ip, 0)).ip()) {
        (SocketAddr::V4(_), IpAddr::V4(_)) => true,
        (SocketAddr::V4(_), IpAddr::V6(_)) => false,
        (SocketAddr::V6(_), _) => true,
    }
}

/// `::ffff:a.b.c.d:p` -> `a.b.c.d:p`, so callers see one form of an IPv4 peer.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trips_and_mapped_fold() {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let v4: SocketAddr = "192.0.2.7:4242".parse().unwrap();
        let len = write_sockaddr(v4, false, &mut ss).unwrap();
        assert_eq!(read_sockaddr(&ss, len), Some(v4));
        // On a v6 socket an IPv4 peer is written mapped and read back as IPv4.
        let len = write_sockaddr(v4, true, &mut ss).unwrap();
        assert_eq!(libc::c_int::from(ss.ss_family), libc::AF_INET6);
        assert_eq!(read_sockaddr(&ss, len), Some(v4));
        let v6: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        assert!(write_sockaddr(v6, false, &mut ss).is_none());
        let len = write_sockaddr(v6, true, &mut ss).unwrap();
        assert_eq!(read_sockaddr(&ss, len), Some(v6));
        assert_eq!(read_sockaddr(&ss, 3), None, "short length");
        assert!(reachable_from(
            "[::]:1".parse().unwrap(),
            "10.0.0.1".parse().unwrap()
        ));
        assert!(!reachable_from(
            "0.0.0.0:1".parse().unwrap(),
            "::1".parse().unwrap()
        ));
    }

    #[test]
    fn datagrams_iterator_cuts_by_stride() {
        let buf: Vec<u8> = (0..25).collect();
        let meta = RecvMeta {
            len: 25,
            stride: 10,
            ..RecvMeta::default()
        };
        let parts: Vec<&[u8]> = meta.datagrams(&buf).collect();
        assert_eq!(parts, vec![&buf[..10], &buf[10..20], &buf[20..]]);
        assert_eq!(meta.count(), 3);
        let empty = RecvMeta::default();
        assert_eq!(
            empty.datagrams(&buf).collect::<Vec<_>>(),
            vec![&[] as &[u8]]
        );
        assert_eq!(empty.count(), 1);
        // A stride of 0 (never from the kernel) does not loop forever.
        let odd = RecvMeta {
            len: 3,
            stride: 0,
            ..RecvMeta::default()
        };
        assert_eq!(odd.datagrams(&buf).count(), 3);
    }
}
