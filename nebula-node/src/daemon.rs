//! The daemon's threads: `routines` data-plane workers, each with its own UDP socket
//! (`SO_REUSEPORT`) and TUN queue, and a control thread for timers and signals (SIGHUP reloads,
//! SIGTERM/SIGINT close cleanly).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nebula_core::engine::{Engine, Outputs};
use nebula_core::filter::GroupFirewall;
use nebula_core::pki::Pki;
use nebula_lighthouse::AddressBook;
use rand::SeedableRng;
use thiserror::Error;

use crate::config::{Config, LoadedConfig, SshdConfig};
use crate::datapath::{flush_outputs, DataPath};
use crate::dns::{self, DnsHandle, DnsSettings};
use crate::plane::Plane;
use crate::poll::{poll, pollin, readable};
use crate::reload;
use crate::route_watch::RouteWatch;
use crate::services::Services;
use crate::setup::{self, SetupError};
use crate::sshd::{Console, ConsoleDeps};
use crate::static_map::{self, StaticNames, SystemResolver};
use crate::stats::{Sources, StatsService};
use crate::status::NodeFacts;
use crate::tun::{Tun, TunQueue};
use crate::udp_batch::{BatchOptions, BatchSocket, DEFAULT_SOCKET_BUFFER};
use crate::worker::{self, LocalDrop};

/// Largest packet we handle (Go's internal `mtu` constant).
pub const MAX_PACKET: usize = 9001;

/// Why the daemon stopped with an error.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("listen.host/listen.port: {0}")]
    Listen(io::Error),
    #[error("signals: {0}")]
    Signals(io::Error),
    #[error("poll: {0}")]
    Poll(io::Error),
    #[error("a data-plane worker stopped unexpectedly (see the log above)")]
    WorkerDied,
}

pub use crate::clock::{unix_nanos, unix_secs};

/// Everything `-test` checks, and the start-up path uses: config, pki, firewall.
pub fn validate(loaded: &LoadedConfig) -> Result<Vec<String>, SetupError> {
    let cfg = &loaded.config;
    let (pki, mut warnings) = setup::load_pki(cfg, unix_secs())?;
    for w in cfg.check_networks(pki.networks())? {
        warnings.push(w.to_string());
    }
    setup::build_firewall(cfg, &pki)?;
    // As Go: a console that cannot be set up is a warning, the node runs without it.
    if let Err(e) = crate::sshd::Settings::from_config(&cfg.sshd) {
        warnings.push(format!(
            "Failed to configure sshd, ssh debugging will not be available: {e}"
        ));
    }
    Ok(warnings)
}

/// The running node.
pub struct Node {
    /// Shared with the workers (scoped borrows) and the exporters' threads (clones).
    plane: Arc<Plane>,
    /// One data path (socket and buffers) per worker.
    workers: Vec<DataPath>,
    /// The control thread's handle on worker 0's socket, for what the engine sends on timers.
    control: BatchSocket,
    /// Read end of the pipe workers write to when the engine needs its timers sooner.
    wake: UnixStream,
    tun: Option<Tun>,
    config_path: PathBuf,
    sighup: UnixStream,
    sigterm: UnixStream,
    drop_filter: LocalDrop,
    /// The config at start-up, for the services (reloads bring new ones).
    config: Config,
    /// Duplicates of the workers' sockets, for the `udp.<i>.*` metrics.
    socket_fds: Vec<OwnedFd>,
    /// The lighthouse DNS responder's settings at start-up.
    dns: DnsSettings,
    /// `static_host_map` names, re-resolved every `static_map.cadence` ([`crate::static_map`]).
    static_names: Mutex<StaticNames>,
    /// `tun.use_system_route_table`'s subscription, when on (and the TUN is there).
    route_watch: Option<RouteWatch>,
    /// `sshd.*` at start-up (the debug console follows reloads).
    sshd: SshdConfig,
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

fn drain(mut s: &UnixStream) -> bool {
    let mut b = [0u8; 64];
    let mut any = false;
    while let Ok(n) = io::Read::read(&mut s, &mut b) {
        if n == 0 {
            break;
        }
        any = true;
    }
    any
}

impl Node {
    /// Build the node from a loaded config. `tun` is `None` when `tun.disabled`; otherwise it
    /// has one queue per worker (`routines`).
    pub fn new(
        loaded: &LoadedConfig,
        config_path: &Path,
        tun: Option<Tun>,
    ) -> Result<Node, DaemonError> {
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
        let workers = cfg.routines.max(1);
        let opts = BatchOptions {
            gso: cfg.listen.udp_offloads,
            gro: cfg.listen.udp_offloads,
            recv_buffer: buffer(cfg.listen.read_buffer),
            send_buffer: buffer(cfg.listen.write_buffer),
            mark: cfg.listen.so_mark,
            reuse_port: workers > 1,
        };
        let udp = BatchSocket::bind(SocketAddr::new(host, cfg.listen.port), &opts)
            .map_err(DaemonError::Listen)?;
        let bound = udp.local_addr().map_err(DaemonError::Listen)?;
        // The other workers' sockets join the first one's port (which may have been picked by
        // the kernel).
        let mut sockets = vec![udp];
        for _ in 1..workers {
            sockets.push(BatchSocket::bind(bound, &opts).map_err(DaemonError::Listen)?);
        }
        let control = sockets[0].try_clone().map_err(DaemonError::Listen)?;
        let socket_fds = sockets
            .iter()
            .map(|s| s.socket().try_clone().map(OwnedFd::from))
            .collect::<io::Result<Vec<_>>>()
            .map_err(DaemonError::Listen)?;
        let batch = cfg.listen.batch as usize;
        let udp = &sockets[0];
        let (offloads, buffers) = (udp.offloads(), udp.buffers());
        tracing::info!(
            gso = offloads.gso,
            gro = offloads.gro,
            recv_buffer = buffers.recv,
            send_buffer = buffers.send,
            workers,
            "UDP socket offloads"
        );
        let drop_filter = LocalDrop::new(&cfg.tun, pki.networks().to_vec());
        let mut static_names = StaticNames::from_config(cfg);
        let static_hosts = static_names.resolve_all(&SystemResolver::default());
        if let Some(d) = cfg.firewall.conntrack.routine_cache_timeout {
            tracing::debug!(
                value = %goflag::GoDuration::from_std(d),
                "firewall.conntrack.routine_cache_timeout has nothing to configure here: \
                 conntrack is sharded, workers keep no private cache"
            );
        }
        let route_watch = match (&tun, cfg.tun.use_system_route_table) {
            (Some(t), true) => match RouteWatch::open(
                t.ifindex(),
                pki.networks().to_vec(),
                cfg.tun.use_system_route_table_buffer_size,
            ) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(error = %e, "failed to subscribe to system route changes");
                    None
                }
            },
            _ => None,
        };
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
                cfg.lighthouse.remote_allow_list.clone(),
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
        let (wake, wake_tx) = UnixStream::pair().map_err(DaemonError::Signals)?;
        wake.set_nonblocking(true).map_err(DaemonError::Signals)?;
        wake_tx
            .set_nonblocking(true)
            .map_err(DaemonError::Signals)?;
        Ok(Node {
            plane: {
                let mut plane = Plane::new(engine, wake_tx);
                plane.set_workers(workers);
                Arc::new(plane)
            },
            workers: sockets
                .into_iter()
                .map(|s| DataPath::new(s, batch))
                .collect(),
            control,
            wake,
            tun,
            config_path: config_path.to_path_buf(),
            sighup,
            sigterm,
            drop_filter,
            config: cfg.clone(),
            socket_fds,
            dns: DnsSettings::from_config(cfg),
            static_names: Mutex::new(static_names),
            route_watch,
            sshd: cfg.sshd.clone(),
        })
    }

    /// The TUN device, if the node has one.
    pub fn device(&self) -> Option<&Tun> {
        self.tun.as_ref()
    }

    /// Our credentials (a copy: the engine lives behind the workers' lock).
    pub fn pki(&self) -> Pki {
        self.plane.lock().pki().clone()
    }

    pub fn udp_addr(&self) -> io::Result<SocketAddr> {
        self.control.local_addr()
    }

    /// The TUN offloads the kernel accepted (`Tun::enable_offloads`), for the data paths.
    pub fn set_tun_offloads(&mut self, offloads: u32) {
        let vnet = self.tun.as_ref().is_some_and(|t| t.vnet_hdr());
        for w in &mut self.workers {
            w.set_tun_offloads(vnet, offloads);
        }
    }

    /// Run until SIGTERM/SIGINT: the workers on their own threads, the control loop on this one.
    pub fn run(self) -> Result<(), DaemonError> {
        let Node {
            plane,
            workers,
            mut control,
            wake,
            tun,
            config_path,
            sighup,
            sigterm,
            drop_filter,
            config,
            socket_fds,
            dns,
            static_names,
            route_watch,
            sshd,
        } = self;
        let routines = workers.len();
        let exporter = StatsService::new(Sources {
            plane: Arc::clone(&plane),
            sockets: socket_fds,
            routines,
        });
        let facts = NodeFacts {
            listen: control
                .local_addr()
                .map(|a| vec![a.to_string()])
                .unwrap_or_default(),
            started: Instant::now(),
        };
        let mut services = Services::new(
            Arc::clone(&plane),
            facts,
            control.try_clone().map_err(DaemonError::Listen)?,
            exporter,
        );
        services.apply(&config);
        let console = start_console(&plane, &control, tun.as_ref(), &sshd);
        let queue0 = tun.as_ref().and_then(|t| t.queues().first());
        let mut out = Outputs::default();
        plane.with_engine(|e| e.start(Instant::now(), &mut out));
        flush_outputs(&mut control, queue0, &mut out, &plane);
        crate::notify::notify("READY=1");
        let (stop_rx, mut stop_tx) = UnixStream::pair().map_err(DaemonError::Signals)?;
        let died = AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            for (i, data) in workers.into_iter().enumerate() {
                let queue = tun.as_ref().and_then(|t| t.queues().get(i));
                let (plane, drop_filter, stop, died) = (&plane, &drop_filter, &stop_rx, &died);
                let spawned = std::thread::Builder::new()
                    .name(format!("nebula-worker-{i}"))
                    .spawn_scoped(s, move || {
                        // However the worker ends before the stop pipe asks (an error, a panic),
                        // the control thread hears of it and stops the node.
                        let mut notice = DeathNotice {
                            plane,
                            died,
                            asked_to_stop: false,
                        };
                        notice.asked_to_stop =
                            worker::run(plane, i, data, queue, drop_filter, stop);
                    });
                if let Err(e) = spawned {
                    let _ = io::Write::write(&mut stop_tx, &[1]);
                    return Err(DaemonError::Signals(e));
                }
            }
            let dns = match dns::spawn(s, &plane, dns, &stop_rx) {
                Ok((handle, _)) => handle,
                Err(e) => {
                    let _ = io::Write::write(&mut stop_tx, &[1]);
                    return Err(DaemonError::Signals(e));
                }
            };
            let stop = &stop_rx;
            let names = &static_names;
            let plane_ref = &plane;
            // Both helpers end with the stop pipe; a failure to start one is logged, not fatal.
            // The re-resolver runs even without names: a reload may bring some.
            let spawned = std::thread::Builder::new()
                .name("nebula-static-map".into())
                .spawn_scoped(s, move || {
                    static_map::run(plane_ref, names, &SystemResolver::default(), stop)
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "static_map: cannot start the re-resolver");
            }
            if let Some(w) = route_watch.as_ref() {
                let spawned = std::thread::Builder::new()
                    .name("nebula-routes".into())
                    .spawn_scoped(s, move || w.run(plane_ref, stop));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "tun.use_system_route_table: cannot start");
                }
            }
            let ctl = Control {
                dns: &dns,
                died: &died,
                plane: &plane,
                udp: &mut control,
                queue0,
                wake: &wake,
                sighup: &sighup,
                sigterm: &sigterm,
                config_path: &config_path,
                services: &mut services,
                static_names: &static_names,
                console: console.as_ref(),
            };
            let r = ctl.run();
            // Every worker polls the stop pipe: one byte, never read, wakes them all.
            let _ = io::Write::write(&mut stop_tx, &[1]);
            r
        });
        crate::notify::notify("STOPPING=1");
        drop(console);
        tracing::info!("Closing all tunnels");
        services.stop();
        plane.with_engine(|e| e.close_all(&mut out));
        flush_outputs(&mut control, queue0, &mut out, &plane);
        result
    }
}

/// The control thread: the engine's timers, SIGHUP reloads, SIGTERM/SIGINT.
struct Control<'a> {
    /// The lighthouse DNS responder, told about reloads.
    dns: &'a DnsHandle,
    /// Set when a worker ended without being asked to.
    died: &'a AtomicBool,
    plane: &'a Plane,
    udp: &'a mut BatchSocket,
    queue0: Option<&'a TunQueue>,
    wake: &'a UnixStream,
    sighup: &'a UnixStream,
    sigterm: &'a UnixStream,
    config_path: &'a Path,
    /// Metrics, the control API, probes, expiry warnings, the watchdog; reconfigured by reloads.
    services: &'a mut Services,
    static_names: &'a Mutex<StaticNames>,
    /// The debug console, told about every reload.
    console: Option<&'a Console>,
}

impl Control<'_> {
    /// Until SIGTERM/SIGINT.
    fn run(self) -> Result<(), DaemonError> {
        let mut out = Outputs::default();
        loop {
            let next = {
                let engine = self.plane.lock();
                let next = engine.poll_timeout();
                self.plane.set_control_deadline(next);
                next
            };
            let next = match (next, self.services.next_wakeup()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = next
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let mut fds = [
                pollin(self.sighup.as_raw_fd()),
                pollin(self.sigterm.as_raw_fd()),
                pollin(self.wake.as_raw_fd()),
            ];
            poll(&mut fds, timeout).map_err(DaemonError::Poll)?;
            if readable(&fds[2]) {
                drain(self.wake);
            }
            if self.died.load(Ordering::Acquire) {
                return Err(DaemonError::WorkerDied);
            }
            self.plane.with_engine(|e| {
                let now = Instant::now();
                // Re-anchor certificate time to the real clock on every wake-up (cheap): after a
                // suspend or an NTP step, the monotonic clock alone would drift from it.
                e.set_wall_clock(now, unix_nanos());
                e.handle_timeout(now, &mut out)
            });
            self.services.tick(Instant::now(), &mut out);
            flush_outputs(self.udp, self.queue0, &mut out, self.plane);
            if readable(&fds[0]) && drain(self.sighup) {
                crate::notify::notify("RELOADING=1");
                // A refused config is logged there; the node goes on with the old one.
                // The re-resolver follows the new static_host_map/static_map (the reload itself
                // resolved the names once).
                if let Ok(config) =
                    reload::reload(self.plane, self.config_path, unix_secs(), &mut out)
                {
                    *self.static_names.lock().unwrap_or_else(|e| e.into_inner()) =
                        StaticNames::from_config(&config);
                    self.services.apply(&config);
                    self.dns.reload(DnsSettings::from_config(&config));
                    if let Some(c) = self.console {
                        c.configure(&config.sshd);
                    }
                }
                flush_outputs(self.udp, self.queue0, &mut out, self.plane);
                crate::notify::notify("READY=1");
            }
            if readable(&fds[1]) && drain(self.sigterm) {
                tracing::info!("Caught signal, shutting down");
                return Ok(());
            }
        }
    }
}

/// Start the debug console's thread (it listens only while `sshd.enabled`). A failure to start
/// the thread is logged; the node runs without the console.
fn start_console(
    plane: &Arc<Plane>,
    control: &BatchSocket,
    tun: Option<&Tun>,
    sshd: &SshdConfig,
) -> Option<Console> {
    let started = control.try_clone().and_then(|socket| {
        let deps = ConsoleDeps {
            plane: Arc::clone(plane),
            socket,
            device_name: tun.map(|t| t.name().to_string()).unwrap_or_default(),
            networks: plane.lock().pki().networks().to_vec(),
        };
        Console::start(deps, sshd)
    });
    match started {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, "sshd: could not start the console thread");
            None
        }
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

/// Marks a worker that ends on its own (not through the stop pipe) and wakes the control thread.
struct DeathNotice<'a> {
    plane: &'a Plane,
    died: &'a AtomicBool,
    asked_to_stop: bool,
}

impl Drop for DeathNotice<'_> {
    fn drop(&mut self) {
        if !self.asked_to_stop {
            tracing::error!(
                panicked = std::thread::panicking(),
                "a data-plane worker stopped"
            );
            self.died.store(true, Ordering::Release);
            self.plane.wake_control();
        }
    }
}
