//! The lighthouse DNS responder (`lighthouse.serve_dns`, Go's `dns_server.go`): its own thread
//! and UDP socket, turned on, moved and off by SIGHUP; names come from tunnel-up events.
//!
//! Go adds a host's certificate name when its handshake completes and never removes it while
//! serving (turning DNS off clears the table). Events reach us through [`observe`], called where
//! the node drains the engine's outputs; the responder thread then looks up the peer's vpn
//! addresses in the host map (all of them, as Go does, not only the event's), and answers with
//! [`answer::respond`]. TXT answers read the host map and our credentials at question time.

pub mod answer;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Duration;

use nebula_cert::cert::go_json_string;
use nebula_core::engine::{Engine, Event};

use crate::config::Config;
use crate::plane::Plane;
use crate::poll::{poll, pollin, readable};
use answer::{CertSource, NameTable, MAX_QUERY};

/// Tunnel-up events waiting for the responder thread; more are dropped (and counted).
const MAX_PENDING: usize = 16 * 1024;

/// How often the responder thread wakes without a question, to take in pending names.
const TICK: Duration = Duration::from_millis(250);

/// Whether and where to serve, from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// `lighthouse.serve_dns && lighthouse.am_lighthouse`.
    pub enabled: bool,
    /// `lighthouse.dns.host` ("" = every address, IPv6 and IPv4).
    pub host: String,
    /// `lighthouse.dns.port`.
    pub port: u16,
}

impl DnsSettings {
    pub fn from_config(cfg: &Config) -> DnsSettings {
        DnsSettings {
            enabled: cfg.lighthouse.serve_dns && cfg.lighthouse.am_lighthouse,
            host: cfg.lighthouse.dns_host.clone(),
            port: cfg.lighthouse.dns_port,
        }
    }

    /// The address to bind (a host name is resolved; the first answer wins).
    fn bind_addr(&self) -> io::Result<SocketAddr> {
        if self.host.is_empty() {
            return Ok(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                self.port,
            ));
        }
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("no address for {:?}", self.host)))
    }

    /// `host:port` as Go logs it.
    fn shown(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A tunnel that came up, waiting for the responder thread.
struct Pending {
    cert_name: String,
    vpn_addr: IpAddr,
    local_index: u32,
}

/// What the event path and the responder thread share (one node per process).
struct Shared {
    /// Names are taken in only while serving (Go's `Add` is a no-op otherwise).
    enabled: AtomicBool,
    pending: Mutex<VecDeque<Pending>>,
    dropped: AtomicU64,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| Shared {
    enabled: AtomicBool::new(false),
    pending: Mutex::new(VecDeque::new()),
    dropped: AtomicU64::new(0),
});

fn pending() -> MutexGuard<'static, VecDeque<Pending>> {
    SHARED.pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hand one engine event to the responder: a tunnel that came up adds its certificate name.
/// Cheap when DNS is off. Never takes the engine lock.
pub fn observe(e: &Event) {
    let Event::TunnelUp {
        vpn_addr,
        local_index,
        cert_name,
        ..
    } = e
    else {
        return;
    };
    if !SHARED.enabled.load(Ordering::Acquire) {
        return;
    }
    let mut q = pending();
    if q.len() >= MAX_PENDING {
        SHARED.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    q.push_back(Pending {
        cert_name: cert_name.clone(),
        vpn_addr: *vpn_addr,
        local_index: *local_index,
    });
}

/// The control thread's handle on the responder thread.
pub struct DnsHandle {
    tx: Sender<DnsSettings>,
    wake: UnixStream,
}

impl DnsHandle {
    /// A reloaded config: start, move or stop the responder to match.
    pub fn reload(&self, settings: DnsSettings) {
        if self.tx.send(settings).is_ok() {
            // A full pipe already means "wake up".
            let _ = (&self.wake).write(&[1]);
        }
    }
}

/// Start the responder thread in `scope`; it serves while `settings` say so and ends when `stop`
/// becomes readable.
pub fn spawn<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    plane: &'env Plane,
    settings: DnsSettings,
    stop: &'env UnixStream,
) -> io::Result<(DnsHandle, ScopedJoinHandle<'scope, ()>)> {
    let (tx, rx) = mpsc::channel();
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    wake_tx.set_nonblocking(true)?;
    tx.send(settings).map_err(io::Error::other)?;
    let join = std::thread::Builder::new()
        .name("nebula-dns".into())
        .spawn_scoped(scope, move || {
            Responder {
                plane,
                table: NameTable::default(),
                socket: None,
                current: None,
            }
            .run(&rx, &wake_rx, stop)
        })?;
    Ok((DnsHandle { tx, wake: wake_tx }, join))
}

struct Responder<'a> {
    plane: &'a Plane,
    table: NameTable,
    socket: Option<UdpSocket>,
    /// The settings in force.
    current: Option<DnsSettings>,
}

impl Responder<'_> {
    fn run(mut self, rx: &Receiver<DnsSettings>, wake: &UnixStream, stop: &UnixStream) {
        let mut buf = [0u8; MAX_QUERY];
        // The start-up settings are waiting already.
        while let Ok(s) = rx.try_recv() {
            self.apply(s);
        }
        loop {
            let mut fds = vec![pollin(stop.as_raw_fd()), pollin(wake.as_raw_fd())];
            if let Some(s) = &self.socket {
                fds.push(pollin(s.as_raw_fd()));
            }
            // Idle (DNS off), only a reload or the stop pipe wakes us.
            let tick = if SHARED.enabled.load(Ordering::Acquire) {
                TICK
            } else {
                Duration::from_secs(3600)
            };
            if let Err(e) = poll(&mut fds, tick) {
                tracing::error!(error = %e, "DNS responder: poll failed, stopping it");
                break;
            }
            if readable(&fds[0]) {
                break;
            }
            if readable(&fds[1]) {
                let mut b = [0u8; 64];
                while matches!(io::Read::read(&mut &*wake, &mut b), Ok(n) if n > 0) {}
            }
            while let Ok(s) = rx.try_recv() {
                self.apply(s);
            }
            self.take_pending();
            if fds.get(2).is_some_and(readable) {
                self.serve(&mut buf);
            }
        }
        SHARED.enabled.store(false, Ordering::Release);
    }

    /// Go's reload: off clears the table; on binds (again, on a new address, or after a failed
    /// bind); on refreshes our own name from the current certificate.
    fn apply(&mut self, s: DnsSettings) {
        let moved = self
            .current
            .as_ref()
            .is_some_and(|c| (&c.host, c.port) != (&s.host, s.port));
        SHARED.enabled.store(s.enabled, Ordering::Release);
        if !s.enabled {
            if self.socket.take().is_some() {
                tracing::info!("Stopped the DNS responder");
            }
            self.table.clear();
            pending().clear();
            self.current = Some(s);
            return;
        }
        if moved {
            self.socket = None;
        }
        if self.socket.is_none() {
            tracing::info!(dnsListener = %s.shown(), "Starting DNS responder");
            match bind(&s) {
                Ok(sock) => self.socket = Some(sock),
                Err(e) => tracing::warn!(error = %e, "Failed to run the DNS responder"),
            }
        }
        let (name, addrs) = {
            let e = self.plane.lock();
            let pki = e.pki();
            let name = pki
                .cert(pki.initiating_version())
                .map(|c| c.name().to_string());
            let addrs: Vec<IpAddr> = pki.networks().iter().map(|n| n.addr()).collect();
            (name, addrs)
        };
        if let Some(name) = name {
            self.table.seed_self(&name, &addrs);
        }
        self.current = Some(s);
    }

    /// Add the names of the tunnels that came up since the last look, with every vpn address
    /// the host map has for them (the event's own when the tunnel is already gone).
    fn take_pending(&mut self) {
        let batch: Vec<Pending> = pending().drain(..).collect();
        let dropped = SHARED.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "DNS responder: too many new tunnels at once, names lost"
            );
        }
        if batch.is_empty() || !SHARED.enabled.load(Ordering::Acquire) {
            return;
        }
        let resolved: Vec<(String, Vec<IpAddr>)> = {
            let e = self.plane.lock();
            batch
                .into_iter()
                .map(|p| {
                    let addrs = e
                        .hostmap()
                        .get(p.local_index)
                        .filter(|t| t.peer.cert.name() == p.cert_name)
                        .map(|t| t.peer.vpn_addrs.clone())
                        .unwrap_or_else(|| vec![p.vpn_addr]);
                    (p.cert_name, addrs)
                })
                .collect()
        };
        let mut full = false;
        for (name, addrs) in resolved {
            full |= !self.table.add(&name, &addrs);
        }
        if full {
            tracing::warn!(
                limit = answer::MAX_NAMES,
                "DNS responder: name table full, new names not added"
            );
        }
    }

    /// Answer what is waiting on the socket (a bounded number per wake-up).
    fn serve(&mut self, buf: &mut [u8]) {
        let Some(sock) = &self.socket else { return };
        for _ in 0..64 {
            let (n, from) = match sock.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS responder: receive failed");
                    return;
                }
            };
            let certs = EngineCerts { plane: self.plane };
            let asker = from.ip().to_canonical();
            if let Some(reply) = answer::respond(&buf[..n], asker, &self.table, &certs) {
                if let Err(e) = sock.send_to(&reply, from) {
                    tracing::debug!(error = %e, to = %from, "DNS responder: send failed");
                }
            }
        }
    }
}

/// Bind the responder's socket: nonblocking; the wildcard IPv6 address also takes IPv4 (falling
/// back to IPv4 alone where the host has no IPv6).
fn bind(s: &DnsSettings) -> io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let addr = s.bind_addr()?;
    let open = |addr: SocketAddr| -> io::Result<UdpSocket> {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
        if addr.is_ipv6() {
            sock.set_only_v6(false)?;
        }
        sock.bind(&addr.into())?;
        sock.set_nonblocking(true)?;
        Ok(sock.into())
    };
    match open(addr) {
        Err(e) if s.host.is_empty() && e.kind() == io::ErrorKind::AddrNotAvailable => {
            open(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), s.port))
        }
        Err(e) if s.host.is_empty() && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            open(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), s.port))
        }
        r => r,
    }
}

/// TXT answers from the engine: our credentials and the host map, read at question time.
struct EngineCerts<'a> {
    plane: &'a Plane,
}

impl CertSource for EngineCerts<'_> {
    fn may_read_certs(&self, asker: IpAddr) -> bool {
        asker.is_loopback() || self.plane.lock().pki().is_my_addr(&asker)
    }

    fn cert_json(&self, vpn_addr: IpAddr) -> Option<String> {
        let e = self.plane.lock();
        cert_json(&e, vpn_addr)
    }
}

fn cert_json(e: &Engine, vpn_addr: IpAddr) -> Option<String> {
    let pki = e.pki();
    if pki.is_my_addr(&vpn_addr) {
        let cert = pki.cert(pki.initiating_version())?;
        return Some(go_json_string(&cert.to_json(), false));
    }
    let hm = e.hostmap();
    let idx = hm
        .primary(&vpn_addr)
        .or_else(|| hm.tunnels_for(&vpn_addr).first().copied())?;
    let tunnel = hm.get(idx)?;
    Some(go_json_string(&tunnel.peer.cert.to_json(), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKI: &str = "pki: {ca: /ca.crt, cert: /host.crt, key: /host.key}\nlisten: {port: 4242}\n";

    fn settings(lighthouse: &str) -> DnsSettings {
        let cfg = Config::from_str(&format!("{PKI}lighthouse: {lighthouse}\n")).expect("config");
        DnsSettings::from_config(&cfg.config)
    }

    #[test]
    fn settings_follow_gos_gating_and_defaults() {
        let s = settings("{am_lighthouse: true, serve_dns: true}");
        assert_eq!(
            s,
            DnsSettings {
                enabled: true,
                host: String::new(),
                port: 53
            }
        );
        assert_eq!(
            s.bind_addr().expect("addr"),
            "[::]:53".parse().expect("addr")
        );
        // Not a lighthouse: off (the config warns).
        assert!(!settings("{am_lighthouse: false, serve_dns: true}").enabled);
        assert!(!settings("{am_lighthouse: true}").enabled);
        // Go's old `[::]` advice is taken as `::`; spaces are trimmed.
        let s =
            settings("{am_lighthouse: true, serve_dns: true, dns: {host: \"[::]\", port: 5353}}");
        assert_eq!(s.host, "::");
        assert_eq!(s.shown(), "[::]:5353");
        let s = settings("{am_lighthouse: true, serve_dns: true, dns: {host: \" 127.0.0.1 \"}}");
        assert_eq!(
            s.bind_addr().expect("addr"),
            "127.0.0.1:53".parse().expect("addr")
        );
    }
}
