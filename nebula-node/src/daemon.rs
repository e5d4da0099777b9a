//! The daemon's event loop: one thread polling the UDP socket, the TUN device and a signal pipe,
//! feeding the engine and carrying out what it asks; SIGHUP reloads, SIGTERM/SIGINT close cleanly.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nebula_core::engine::{Engine, Event, Outputs};
use nebula_core::filter::GroupFirewall;
use nebula_lighthouse::AddressBook;
use rand::SeedableRng;
use thiserror::Error;

use crate::config::{Config, LoadedConfig};
use crate::datapath::DataPath;
use crate::setup::{self, SetupError};
use crate::tun::VIRTIO_NET_HDR_LEN;
use crate::udp_batch::{BatchOptions, BatchSocket, DEFAULT_SOCKET_BUFFER};

/// Largest packet we handle (Go's internal `mtu` constant).
pub const MAX_PACKET: usize = 9001;

/// Why the daemon stopped with an error.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("listen.host/listen.port: {0}")]
    Listen(io::Error),
    #[error("tun: {0}")]
    Tun(String),
    #[error("signals: {0}")]
    Signals(io::Error),
    #[error("poll: {0}")]
    Poll(io::Error),
}

/// A packet device the loop reads from and writes to (the TUN).
pub trait Device {
    fn fd(&self) -> RawFd;
    /// Packets carry a `virtio_net_hdr` (IFF_VNET_HDR).
    fn vnet_hdr(&self) -> bool;
    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_packet(&self, buf: &[u8]) -> io::Result<usize>;
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn unix_secs() -> i64 {
    i64::try_from(unix_nanos() / 1_000_000_000).unwrap_or(i64::MAX)
}

/// Everything `-test` checks, and the start-up path uses: config, pki, firewall.
pub fn validate(loaded: &LoadedConfig) -> Result<Vec<String>, SetupError> {
    let cfg = &loaded.config;
    let (pki, mut warnings) = setup::load_pki(cfg, unix_secs())?;
    for w in cfg.check_networks(pki.networks())? {
        warnings.push(w.to_string());
    }
    setup::build_firewall(cfg, &pki)?;
    Ok(warnings)
}

/// The running node.
pub struct Node<D: Device> {
    pub engine: Engine,
    data: DataPath,
    tun: Option<D>,
    config_path: PathBuf,
    sighup: UnixStream,
    sigterm: UnixStream,
    stop: bool,
    drop_filter: LocalDrop,
}

/// `tun.drop_local_broadcast` / `tun.drop_multicast`: packets from the TUN we never forward.
struct LocalDrop {
    multicast: bool,
    broadcast: bool,
    broadcast_addrs: Vec<IpAddr>,
}

impl LocalDrop {
    fn new(tun: &crate::config::TunConfig, networks: Vec<ipnet::IpNet>) -> LocalDrop {
        let mut broadcast_addrs: Vec<IpAddr> = vec![IpAddr::V4(std::net::Ipv4Addr::BROADCAST)];
        for n in networks {
            if let ipnet::IpNet::V4(v4) = n {
                broadcast_addrs.push(IpAddr::V4(v4.broadcast()));
            }
        }
        LocalDrop {
            multicast: tun.drop_multicast,
            broadcast: tun.drop_local_broadcast,
            broadcast_addrs,
        }
    }

    fn drops(&self, packet: &[u8]) -> bool {
        if !self.multicast && !self.broadcast {
            return false;
        }
        let Some(dst) = nebula_core::filter::destination(packet) else {
            return false;
        };
        (self.multicast && dst.is_multicast())
            || (self.broadcast && self.broadcast_addrs.contains(&dst))
    }
}

/// A socket pair whose read end becomes readable each time one of `signals` arrives.
fn signal_pipe(signals: &[i32]) -> io::Result<UnixStream> {
    let (read, write) = UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    for sig in signals {
        signal_hook::low_level::pipe::register(*sig, write.try_clone()?)?;
    }
    Ok(read)
}

fn drain(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 64];
    let mut any = false;
    while let Ok(n) = io::Read::read(s, &mut b) {
        if n == 0 {
            break;
        }
        any = true;
    }
    any
}

impl<D: Device> Node<D> {
    /// Build the node from a loaded config. `tun` is `None` when `tun.disabled`.
    pub fn new(
        loaded: &LoadedConfig,
        config_path: &Path,
        tun: Option<D>,
    ) -> Result<Node<D>, DaemonError> {
        let cfg = &loaded.config;
        let (pki, warnings) = setup::load_pki(cfg, unix_secs())?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        for w in cfg
            .check_networks(pki.networks())
            .map_err(SetupError::from)?
        {
            tracing::warn!("{w}");
        }
        let firewall = setup::build_firewall(cfg, &pki)?;
        for w in firewall.warnings() {
            tracing::warn!("firewall: {w:?}");
        }
        let host: IpAddr = cfg
            .listen
            .host_ip()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let buffer = |configured: u32| {
            if configured > 0 {
                configured as usize
            } else {
                DEFAULT_SOCKET_BUFFER
            }
        };
        let opts = BatchOptions {
            gso: cfg.listen.udp_offloads,
            gro: cfg.listen.udp_offloads,
            recv_buffer: buffer(cfg.listen.read_buffer),
            send_buffer: buffer(cfg.listen.write_buffer),
            mark: cfg.listen.so_mark,
        };
        let udp = BatchSocket::bind(SocketAddr::new(host, cfg.listen.port), &opts)
            .map_err(DaemonError::Listen)?;
        let (offloads, buffers) = (udp.offloads(), udp.buffers());
        tracing::info!(
            gso = offloads.gso,
            gro = offloads.gro,
            recv_buffer = buffers.recv,
            send_buffer = buffers.send,
            "UDP socket offloads"
        );
        let drop_filter = LocalDrop::new(&cfg.tun, pki.networks().to_vec());
        let bound = udp.local_addr().map_err(DaemonError::Listen)?;
        let static_hosts = setup::resolve_static_hosts(cfg)?;
        let advertise = advertise_addrs(cfg, pki.networks(), bound.port());
        let ecfg = setup::engine_config(cfg, static_hosts, advertise);
        let now = Instant::now();
        let mut engine = Engine::new(
            ecfg,
            pki,
            Box::new(GroupFirewall::new(firewall)),
            Box::new(rand::rngs::StdRng::from_entropy()),
            now,
            unix_nanos(),
        );
        if cfg.lighthouse.am_lighthouse {
            engine.set_lighthouse_server(Box::new(AddressBook::with_remote_allow_list(
                setup::remote_allow_list(&cfg.lighthouse.remote_allow_list),
                engine.pki().networks().to_vec(),
            )));
        }
        tracing::info!(
            udp_addr = %bound,
            vpn_addr = %engine.vpn_addr(),
            lighthouse = cfg.lighthouse.am_lighthouse,
            "Nebula interface is active"
        );
        let sighup = signal_pipe(&[signal_hook::consts::SIGHUP]).map_err(DaemonError::Signals)?;
        let sigterm = signal_pipe(&[signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
            .map_err(DaemonError::Signals)?;
        Ok(Node {
            engine,
            data: DataPath::new(udp),
            tun,
            config_path: config_path.to_path_buf(),
            sighup,
            sigterm,
            stop: false,
            drop_filter,
        })
    }

    /// The TUN device, if the node has one.
    pub fn device(&self) -> Option<&D> {
        self.tun.as_ref()
    }

    pub fn udp_addr(&self) -> io::Result<SocketAddr> {
        self.data.udp.local_addr()
    }

    /// The TUN offloads the kernel accepted (`Tun::enable_offloads`), for the data path.
    pub fn set_tun_offloads(&mut self, offloads: u32) {
        let vnet = self.tun.as_ref().is_some_and(|t| t.vnet_hdr());
        self.data.set_tun_offloads(vnet, offloads);
    }

    fn flush(&mut self, out: &mut Outputs) {
        if !out.transmits.is_empty() {
            self.data.send_transmits(&out.transmits);
            out.transmits.clear();
        }
        for p in out.tun.drain(..) {
            if let Some(tun) = &self.tun {
                if tun.vnet_hdr() {
                    let mut framed = vec![0u8; VIRTIO_NET_HDR_LEN + p.len()];
                    framed[VIRTIO_NET_HDR_LEN..].copy_from_slice(&p);
                    let _ = tun.write_packet(&framed);
                } else {
                    let _ = tun.write_packet(&p);
                }
            }
        }
        for e in out.events.drain(..) {
            log_event(&e);
        }
    }

    /// Run until SIGTERM/SIGINT.
    pub fn run(&mut self) -> Result<(), DaemonError> {
        let mut out = Outputs::default();
        self.engine.start(Instant::now(), &mut out);
        self.flush(&mut out);
        crate::notify::notify("READY=1");
        while !self.stop {
            let timeout = self
                .engine
                .poll_timeout()
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let mut fds = vec![
                libc::pollfd {
                    fd: self.data.udp.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.sighup.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.sigterm.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            if let Some(t) = &self.tun {
                fds.push(libc::pollfd {
                    fd: t.fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let ms = i32::try_from(timeout.as_millis())
                .unwrap_or(1000)
                .max(if timeout.is_zero() { 0 } else { 1 });
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(DaemonError::Poll(e));
                }
            }
            if fds[0].revents & libc::POLLIN != 0 {
                self.read_udp(&mut out);
            }
            if fds.len() > 3 && fds[3].revents & libc::POLLIN != 0 {
                self.read_tun(&mut out);
            }
            self.engine.handle_timeout(Instant::now(), &mut out);
            self.flush(&mut out);
            if fds[1].revents & libc::POLLIN != 0 && drain(&mut self.sighup) {
                crate::notify::notify("RELOADING=1");
                self.reload(&mut out);
                crate::notify::notify("READY=1");
            }
            if fds[2].revents & libc::POLLIN != 0 && drain(&mut self.sigterm) {
                tracing::info!("Caught signal, shutting down");
                self.stop = true;
            }
        }
        crate::notify::notify("STOPPING=1");
        tracing::info!("Closing all tunnels");
        self.engine.close_all(&mut out);
        self.flush(&mut out);
        Ok(())
    }

    fn read_udp(&mut self, out: &mut Outputs) {
        self.data.read_udp(&mut self.engine, self.tun.as_ref(), out);
        self.flush(out);
    }

    fn read_tun(&mut self, out: &mut Outputs) {
        let Some(tun) = self.tun.as_ref() else { return };
        let filter = &self.drop_filter;
        self.data
            .read_tun(&mut self.engine, tun, &|p: &[u8]| filter.drops(p), out);
        self.flush(out);
    }

    /// SIGHUP: re-read the config; swap pki, firewall and lighthouse hosts. A broken new config
    /// is refused as a whole and the node keeps running on the old one.
    pub fn reload(&mut self, out: &mut Outputs) {
        tracing::info!(path = %self.config_path.display(), "Caught HUP, reloading config");
        let loaded = match Config::load(&self.config_path) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "Failed to reload config, keeping the old one");
                return;
            }
        };
        let cfg = &loaded.config;
        let (pki, _) = match setup::load_pki(cfg, unix_secs()) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "Failed to reload pki, keeping the old one");
                return;
            }
        };
        let firewall = match setup::build_firewall(cfg, &pki) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "Failed to reload firewall, keeping the old one");
                return;
            }
        };
        let static_hosts = match setup::resolve_static_hosts(cfg) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "Failed to reload static_host_map");
                return;
            }
        };
        tracing::info!(rules = %firewall.rules_hash(), "Firewall reloaded");
        self.engine.reload_firewall(firewall);
        self.engine.reload_pki(pki);
        self.engine.reload_lighthouses(
            cfg.lighthouse.hosts.clone(),
            static_hosts,
            Instant::now(),
            out,
        );
        self.flush(out);
    }
}

fn advertise_addrs(cfg: &Config, vpn: &[ipnet::IpNet], port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for hp in &cfg.lighthouse.advertise_addrs {
        if let Some(ip) = hp.ip() {
            if vpn.iter().any(|n| n.contains(&ip)) {
                continue;
            }
            let p = if hp.port == 0 { port } else { hp.port };
            out.push(SocketAddr::new(ip, p));
        }
    }
    for ip in crate::localaddrs::advertisable(vpn, cfg.lighthouse.local_allow_list.as_ref()) {
        let a = SocketAddr::new(ip, port);
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

fn log_event(e: &Event) {
    match e {
        Event::TunnelUp {
            vpn_addr,
            remote,
            local_index,
            initiator,
            cert_name,
        } => tracing::info!(
            vpn_addr = %vpn_addr,
            remote = ?remote,
            local_index,
            initiator,
            cert_name = %cert_name,
            "Handshake completed, tunnel up"
        ),
        Event::TunnelDown {
            vpn_addr,
            local_index,
            reason,
        } => {
            tracing::info!(vpn_addr = %vpn_addr, local_index, reason = ?reason, "Tunnel down")
        }
        Event::HandshakeTimedOut { vpn_addr } => {
            tracing::info!(vpn_addr = %vpn_addr, "Handshake timed out")
        }
        Event::HandshakeRejected { from, reason } => {
            tracing::info!(from = %from, reason = %reason, "Handshake refused")
        }
        Event::Roamed { vpn_addr, from, to } => {
            tracing::info!(vpn_addr = %vpn_addr, from = ?from, to = %to, "Host roamed to new udp ip/port.")
        }
        Event::TestReply { vpn_addr, .. } => tracing::debug!(vpn_addr = %vpn_addr, "test reply"),
    }
}
