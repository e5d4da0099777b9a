//! A hostile mesh member for namespace tests: a sans-IO engine with a valid certificate, on real
//! UDP sockets in its namespace, that floods crafted lighthouse/relay messages and roams.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nebula_cert::Version;
use nebula_core::engine::{Engine, EngineConfig, Outputs};
use nebula_core::filter::AllowAll;
use nebula_core::pki::Pki;
use proto::control::{NebulaControl, NebulaControlType};
use proto::header::{subtype, MessageType};
use proto::lighthouse::AddrEncoding;
use proto::prost::Message as _;
use rand::{RngCore, SeedableRng};

/// Largest datagram our daemon reads (`nebula_node::daemon::MAX_PACKET`), less header and tag.
const MAX_PAYLOAD: usize = 9001 - 16 - 16;

/// What to attack and how hard (messages per second of each kind).
pub struct HostileConfig {
    pub ns: String,
    pub pki: Pki,
    /// Source addresses (already on the namespace's interface) the member roams between.
    pub sources: Vec<Ipv4Addr>,
    /// Sockets bound per source address; one is re-bound to a fresh port every 256 datagrams.
    pub ports_per_source: usize,
    pub lighthouse: (IpAddr, SocketAddr),
    pub victim: (IpAddr, SocketAddr),
    /// An honest host the victim has a tunnel to (a real relay target).
    pub honest: IpAddr,
    /// HostUpdateNotifications to the lighthouse per second.
    pub host_update_rate: u64,
    /// CreateRelayRequests to the victim per second.
    pub relay_request_rate: u64,
    /// Authenticated test requests to the victim per second, each from the next source.
    pub roam_rate: u64,
}

/// Counters of what the member sent and got.
#[derive(Default, Debug)]
pub struct HostileStats {
    pub host_updates: AtomicU64,
    pub relays_per_update: AtomicU64,
    pub addrs_per_update: AtomicU64,
    pub relay_requests: AtomicU64,
    pub relay_requests_to_victim: AtomicU64,
    pub roam_packets: AtomicU64,
    pub rebinds: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub test_replies: AtomicU64,
    pub attack_nanos: AtomicU64,
}

/// A running hostile member (its own thread inside its namespace).
pub struct Hostile {
    attack: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<HostileStats>,
    thread: Option<JoinHandle<Result<(), String>>>,
    ready: mpsc::Receiver<Result<(), String>>,
}

fn enter(ns: &str) -> Result<(), String> {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("netns: {e}"))?;
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err("setns failed".into());
    }
    Ok(())
}

fn bind(ip: Ipv4Addr) -> Result<UdpSocket, String> {
    let s = UdpSocket::bind((ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    s.set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    Ok(s)
}

/// The member's sockets and its place in the rotation.
struct Roamer {
    sources: Vec<Ipv4Addr>,
    sockets: Vec<UdpSocket>,
    next: usize,
    sent: u64,
    stats: Arc<HostileStats>,
}

impl Roamer {
    /// Send every transmit, each from the next socket; now and then re-bind one socket.
    fn send(&mut self, out: &mut Outputs) {
        for t in out.transmits.drain(..) {
            let i = self.next % self.sockets.len();
            self.next = self.next.wrapping_add(1);
            let _ = self.sockets[i].send_to(&t.payload, t.to);
            self.sent += 1;
            if self.sent.is_multiple_of(256) {
                let slot = (self.sent / 256) as usize % self.sockets.len();
                let ip = self.sources[slot % self.sources.len()];
                if let Ok(s) = bind(ip) {
                    self.sockets[slot] = s;
                    self.stats.rebinds.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out.clear();
    }

    /// Feed everything waiting on any socket to the engine.
    fn receive(&mut self, engine: &mut Engine, buf: &mut [u8], out: &mut Outputs) {
        for i in 0..self.sockets.len() {
            for _ in 0..64 {
                let Ok((n, from)) = self.sockets[i].recv_from(buf) else {
                    break;
                };
                self.stats
                    .datagrams_received
                    .fetch_add(1, Ordering::Relaxed);
                let _ = engine.handle_outside(Instant::now(), from, &mut buf[..n], out);
                for e in out.events.drain(..) {
                    if matches!(e, nebula_core::Event::TestReply { .. }) {
                        self.stats.test_replies.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

impl Hostile {
    /// Start the member: it makes genuine tunnels to the lighthouse and the victim, then waits
    /// for [`Hostile::attack`].
    pub fn start(cfg: HostileConfig) -> Hostile {
        let attack = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(HostileStats::default());
        let (tx, ready) = mpsc::channel();
        let (a, s, st) = (attack.clone(), stop.clone(), stats.clone());
        let thread = std::thread::spawn(move || run(cfg, a, s, st, tx));
        Hostile {
            attack,
            stop,
            stats,
            thread: Some(thread),
            ready,
        }
    }

    /// Wait until both tunnels are up.
    pub fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        self.ready
            .recv_timeout(limit)
            .map_err(|e| format!("hostile member not ready: {e}"))?
    }

    pub fn attack(&self) {
        self.attack.store(true, Ordering::SeqCst);
    }

    /// Stop and join the thread.
    pub fn stop(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| "hostile thread panicked".to_string())?,
            None => Ok(()),
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn run(
    cfg: HostileConfig,
    attack: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    stats: Arc<HostileStats>,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let r = setup(&cfg, &stats, &stop);
    let (mut engine, mut roamer) = match r {
        Ok(v) => {
            let _ = ready.send(Ok(()));
            v
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let mut buf = vec![0u8; 65536];
    let mut out = Outputs::default();
    while !attack.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        pump(&mut engine, &mut roamer, &mut buf, &mut out);
        std::thread::sleep(Duration::from_millis(5));
    }
    flood(
        &cfg,
        &mut engine,
        &mut roamer,
        &stop,
        &stats,
        &mut buf,
        &mut out,
    );
    Ok(())
}

/// Receive, run timers, send.
fn pump(engine: &mut Engine, roamer: &mut Roamer, buf: &mut [u8], out: &mut Outputs) {
    roamer.receive(engine, buf, out);
    let now = Instant::now();
    if engine.poll_timeout().is_some_and(|t| t <= now) {
        engine.handle_timeout(now, out);
    }
    roamer.send(out);
}

fn setup(
    cfg: &HostileConfig,
    stats: &Arc<HostileStats>,
    stop: &AtomicBool,
) -> Result<(Engine, Roamer), String> {
    enter(&cfg.ns)?;
    let mut sockets = Vec::new();
    for ip in &cfg.sources {
        for _ in 0..cfg.ports_per_source.max(1) {
            sockets.push(bind(*ip)?);
        }
    }
    let mut roamer = Roamer {
        sources: cfg.sources.clone(),
        sockets,
        next: 0,
        sent: 0,
        stats: stats.clone(),
    };
    let ecfg = EngineConfig {
        static_host_map: HashMap::from([
            (cfg.lighthouse.0, vec![cfg.lighthouse.1]),
            (cfg.victim.0, vec![cfg.victim.1]),
        ]),
        ..EngineConfig::default()
    };
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut engine = Engine::new(
        ecfg,
        cfg.pki.clone(),
        Box::new(AllowAll),
        Box::new(rand::rngs::StdRng::from_entropy()),
        Instant::now(),
        unix,
    );
    let mut buf = vec![0u8; 65536];
    let mut out = Outputs::default();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        let mut up = true;
        for vpn in [cfg.lighthouse.0, cfg.victim.0] {
            up &= engine.connect(Instant::now(), vpn, &mut out);
        }
        if up {
            return Ok((engine, roamer));
        }
        pump(&mut engine, &mut roamer, &mut buf, &mut out);
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!(
        "hostile member: no tunnels after 15 s ({:?} tunnels, pending)",
        engine.counts()
    ))
}

/// The biggest HostUpdateNotification that fits one datagram: every relay and address a
/// different one, shifted by `k`.
fn host_update(me: IpAddr, k: u64, relays: usize, addrs: usize) -> Vec<u8> {
    let relays: Vec<IpAddr> = (0..relays as u64)
        .map(|i| {
            let n = (k.wrapping_mul(7919).wrapping_add(i)) as u32;
            IpAddr::V4(Ipv4Addr::from(0x0a63_0000 | (n & 0xffff)))
        })
        .collect();
    let addrs: Vec<SocketAddr> = (0..addrs as u64)
        .map(|i| {
            let n = k.wrapping_mul(131).wrapping_add(i) as u32;
            SocketAddr::from((
                Ipv4Addr::from(0xc633_6400 | (n & 0xff)),
                1024 + (n >> 8) as u16 % 60000,
            ))
        })
        .collect();
    nebula_core::lighthouse::host_update(me, &addrs, &relays, Version::V1).encode_to_vec()
}

fn relay_request(init: u32, from: IpAddr, to: IpAddr) -> Vec<u8> {
    let mut msg = NebulaControl {
        msg_type: NebulaControlType::CreateRelayRequest.into(),
        initiator_relay_index: init,
        ..NebulaControl::default()
    };
    let _ = msg.set_relay_ends(from, to, AddrEncoding::V1);
    msg.encode_to_vec()
}

fn flood(
    cfg: &HostileConfig,
    engine: &mut Engine,
    roamer: &mut Roamer,
    stop: &AtomicBool,
    stats: &HostileStats,
    buf: &mut [u8],
    out: &mut Outputs,
) {
    let me = cfg.pki.vpn_addr();
    // As many relays (and 100 addresses) as fit in one datagram.
    let addrs = 100;
    let mut relays = 4000;
    while relays > 0 && host_update(me, 0, relays, addrs).len() > MAX_PAYLOAD {
        relays -= 50;
    }
    stats
        .relays_per_update
        .store(relays as u64, Ordering::Relaxed);
    stats
        .addrs_per_update
        .store(addrs as u64, Ordering::Relaxed);
    // Made ahead (encoding 2,000 addresses per message is slower than the wire): 256 different
    // lists, sent in turn.
    let updates_pool: Vec<Vec<u8>> = (0..256)
        .map(|k| host_update(me, k, relays, addrs))
        .collect();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let victim_net = match cfg.victim.0 {
        IpAddr::V4(v) => u32::from(v) & 0xffff_0000,
        IpAddr::V6(_) => 0,
    };
    let start = Instant::now();
    let (mut updates, mut requests, mut roams) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::SeqCst) {
        let el = start.elapsed().as_secs_f64();
        let due = |rate: u64| (el * rate as f64) as u64;
        // Bursts of at most 256 of a kind per turn, so receiving and timers keep running.
        let mut budget = 256;
        while updates < due(cfg.host_update_rate) && budget > 0 {
            let msg = &updates_pool[updates as usize % updates_pool.len()];
            engine.send_message(cfg.lighthouse.0, MessageType::LightHouse, 0, msg, out);
            updates += 1;
            budget -= 1;
        }
        roamer.send(out);
        budget = 256;
        while requests < due(cfg.relay_request_rate) && budget > 0 {
            let init = rng.next_u32() | 1;
            // Every fourth asks for a relay to the victim itself, every sixteenth to an honest
            // host it has a tunnel to; the rest each name a different host of the network.
            let to = if requests.is_multiple_of(4) {
                cfg.victim.0
            } else if requests % 16 == 1 {
                cfg.honest
            } else {
                let host = (requests as u32).wrapping_mul(40503) & 0xffff;
                IpAddr::V4(Ipv4Addr::from(victim_net | host.max(2)))
            };
            if to == cfg.victim.0 {
                stats
                    .relay_requests_to_victim
                    .fetch_add(1, Ordering::Relaxed);
            }
            let msg = relay_request(init, me, to);
            engine.send_message(cfg.victim.0, MessageType::Control, 0, &msg, out);
            requests += 1;
            budget -= 1;
        }
        roamer.send(out);
        budget = 256;
        while roams < due(cfg.roam_rate) && budget > 0 {
            engine.send_message(
                cfg.victim.0,
                MessageType::Test,
                subtype::TEST_REQUEST,
                &roams.to_be_bytes(),
                out,
            );
            roams += 1;
            budget -= 1;
        }
        roamer.send(out);
        pump(engine, roamer, buf, out);
        stats.host_updates.store(updates, Ordering::Relaxed);
        stats.relay_requests.store(requests, Ordering::Relaxed);
        stats.roam_packets.store(roams, Ordering::Relaxed);
        stats
            .attack_nanos
            .store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if updates >= due(cfg.host_update_rate)
            && requests >= due(cfg.relay_request_rate)
            && roams >= due(cfg.roam_rate)
        {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}
