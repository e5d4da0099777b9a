//! One data-plane worker: its UDP socket and device queue, polled until the stop pipe says stop,
//! with what it reads handed to its [`DataPath`]; and the local-drop rules it applies to the TUN.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nebula_core::engine::Outputs;

use crate::config::TunConfig;
use crate::datapath::DataPath;
use crate::device::Device;
use crate::plane::Plane;
use crate::poll::{poll, pollin, readable};

/// `tun.drop_local_broadcast` / `tun.drop_multicast`: packets from the TUN we never forward.
pub struct LocalDrop {
    multicast: bool,
    broadcast: bool,
    broadcast_addrs: Vec<IpAddr>,
}

impl LocalDrop {
    pub fn new(tun: &TunConfig, networks: Vec<ipnet::IpNet>) -> LocalDrop {
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

    /// `packet` (read from the TUN) is one we never forward.
    pub fn drops(&self, packet: &[u8]) -> bool {
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

/// Run one worker on its socket (inside `data`) and device queue until `stop` becomes readable
/// (returns true) or poll fails (returns false).
pub fn run<D: Device>(
    plane: &Plane,
    worker: usize,
    mut data: DataPath,
    queue: Option<&D>,
    drop_filter: &LocalDrop,
    stop: &UnixStream,
) -> bool {
    let mut out = Outputs::default();
    let is_dropped = |p: &[u8]| drop_filter.drops(p);
    loop {
        let mut fds = [
            pollin(data.udp.as_raw_fd()),
            pollin(stop.as_raw_fd()),
            pollin(queue.map(|q| q.as_raw_fd()).unwrap_or(-1)),
        ];
        let n = if queue.is_some() { 3 } else { 2 };
        if let Err(e) = poll(&mut fds[..n], Duration::from_secs(1)) {
            tracing::error!(error = %e, "worker poll failed");
            return false;
        }
        if readable(&fds[1]) {
            return true;
        }
        if plane.stalled() {
            // Test hook: a hung data plane (no packets handled, no heartbeat; the sleep keeps
            // unread datagrams from spinning the poll).
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        plane.beat(worker);
        if readable(&fds[0]) {
            data.read_udp(plane, queue, &mut out);
            data.flush_outputs(queue, &mut out, plane);
        }
        if let (Some(q), true) = (queue, readable(&fds[2])) {
            data.read_tun(plane, q, &is_dropped, &mut out);
            data.flush_outputs(queue, &mut out, plane);
        }
    }
}

/// A worker driven for real over loopback UDP and a fake device: its node ("a", 10.42.0.1) talks
/// to a peer ("b", 10.42.0.2) whose engine this test drives on a plain UDP socket.
#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use nebula_cert::{Curve, Version};
    use nebula_core::engine::{Engine, InsideOutcome, Outputs, OutsideOutcome};
    use nebula_core::filter::{AllowAll, GroupFirewall};
    use nebula_core::firewall::{Firewall, FirewallConfig};
    use nebula_core::sim::{rule_from_anyone, static_config, udp_packet, TestCa};
    use proto::header::HEADER_LEN;
    use rand::SeedableRng;

    use super::{run, LocalDrop};
    use crate::datapath::DataPath;
    use crate::device::fake::{self, Wire};
    use crate::plane::Plane;
    use crate::udp_batch::{BatchOptions, BatchSocket};

    const A: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 2);
    /// The only inbound port node a's firewall opens (UDP, from anyone).
    const OPEN_PORT: u16 = 5000;
    const LIMIT: Duration = Duration::from_secs(5);

    fn unix_nanos() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }

    fn engine(
        cfg: nebula_core::engine::EngineConfig,
        pki: nebula_core::pki::Pki,
        f: Box<dyn nebula_core::filter::PacketFilter>,
    ) -> Engine {
        let mut e = Engine::new(
            cfg,
            pki,
            f,
            Box::new(rand::rngs::StdRng::from_entropy()),
            Instant::now(),
            unix_nanos(),
        );
        e.start(Instant::now(), &mut Outputs::default());
        e
    }

    /// The peer: an engine on a plain loopback socket, pumped by the test.
    struct Peer {
        engine: Engine,
        sock: UdpSocket,
    }

    impl Peer {
        fn send(&self, out: &mut Outputs) {
            for t in out.transmits.drain(..) {
                self.sock.send_to(&t.payload, t.to).expect("peer send");
            }
        }

        /// Handle one datagram from the node (waiting up to 50 ms), answering the control plane.
        /// Returns the raw datagram and the packet it opened to, if it was a data packet.
        fn pump_one(&mut self) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
            let mut buf = vec![0u8; 65_536];
            let (n, from) = self.sock.recv_from(&mut buf).ok()?;
            buf.truncate(n);
            let raw = buf.clone();
            let mut out = Outputs::default();
            let opened = match self
                .engine
                .handle_outside(Instant::now(), from, &mut buf, &mut out)
            {
                OutsideOutcome::Tun { start, end } => Some(buf[start..end].to_vec()),
                _ => out.tun.pop(),
            };
            self.send(&mut out);
            Some((raw, opened))
        }

        /// Seal `packet` towards the node and send it (a handshake first if there is no tunnel:
        /// the packet then waits in the engine's queue until `pump_one` completes it).
        fn send_packet(&mut self, packet: &[u8]) {
            let mut buf = vec![0u8; HEADER_LEN + packet.len() + 64];
            buf[HEADER_LEN..HEADER_LEN + packet.len()].copy_from_slice(packet);
            let mut out = Outputs::default();
            let r = self
                .engine
                .handle_inside(Instant::now(), &mut buf, packet.len(), &mut out);
            if let InsideOutcome::Send { to, len } = r {
                self.sock.send_to(&buf[..len], to).expect("peer send");
            }
            self.send(&mut out);
        }

        /// Pump the peer until the node's device gives out a packet (or `LIMIT` passes).
        fn until_device_packet(&mut self, wire: &Wire) -> Option<Vec<u8>> {
            let deadline = Instant::now() + LIMIT;
            while Instant::now() < deadline {
                self.pump_one();
                if let Some(p) = wire.recv(Duration::from_millis(20)) {
                    return Some(p);
                }
            }
            None
        }
    }

    /// Node a's worker on a loopback socket with a fake device, running for the length of
    /// `body(peer, wire)`; the worker must stop when asked.
    fn with_worker(body: impl FnOnce(&mut Peer, &Wire)) {
        let ca = TestCa::new("worker test ca", Curve::Curve25519, Version::V1);
        let (pki_a, pki_b) = (ca.pki("a", "10.42.0.1/16"), ca.pki("b", "10.42.0.2/16"));
        let udp = BatchSocket::bind(
            "127.0.0.1:0".parse().expect("addr"),
            &BatchOptions::default(),
        )
        .expect("bind node socket");
        let a_addr = udp.local_addr().expect("node addr");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind peer socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let b_addr: SocketAddr = sock.local_addr().expect("peer addr");

        let rules = FirewallConfig {
            outbound: vec![rule_from_anyone("any", "any")],
            inbound: vec![rule_from_anyone("udp", &OPEN_PORT.to_string())],
            ..FirewallConfig::default()
        };
        let firewall =
            Firewall::new(&rules, pki_a.networks(), pki_a.unsafe_networks()).expect("rules");
        let a = engine(
            static_config(&[("10.42.0.2", &b_addr.to_string())]),
            pki_a,
            Box::new(GroupFirewall::new(firewall)),
        );
        let b = engine(
            static_config(&[("10.42.0.1", &a_addr.to_string())]),
            pki_b,
            Box::new(AllowAll),
        );
        let mut peer = Peer { engine: b, sock };

        let (_wake_rx, wake_tx) = UnixStream::pair().expect("wake pipe");
        wake_tx.set_nonblocking(true).expect("nonblocking");
        let plane = Plane::new(a, wake_tx);
        let (dev, wire) = fake::pair().expect("fake device");
        let drop_filter = LocalDrop {
            multicast: true,
            broadcast: true,
            broadcast_addrs: vec![Ipv4Addr::BROADCAST.into()],
        };
        let (stop_rx, stop_tx) = UnixStream::pair().expect("stop pipe");
        std::thread::scope(|s| {
            let worker = s.spawn(|| {
                run(
                    &plane,
                    0,
                    DataPath::new(udp, 16),
                    Some(&dev),
                    &drop_filter,
                    &stop_rx,
                )
            });
            // Stops the worker however `body` ends (a failed assertion too), so the scope can end.
            let stop = Stop(stop_tx);
            body(&mut peer, &wire);
            drop(stop);
            assert!(worker.join().expect("worker thread"), "stopped when asked");
        });
    }

    /// Writes the worker's stop byte when dropped.
    struct Stop(UnixStream);

    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::io::Write::write_all(&mut self.0, &[1]);
        }
    }

    #[test]
    fn device_packet_goes_out_sealed_to_the_peer() {
        with_worker(|peer, wire| {
            let packet = udp_packet(A, B, 4000, 7000, b"inside-out marker");
            wire.inject(&packet).expect("inject");
            let deadline = Instant::now() + LIMIT;
            let mut got = None;
            while got.is_none() && Instant::now() < deadline {
                if let Some((raw, Some(opened))) = peer.pump_one() {
                    got = Some((raw, opened));
                }
            }
            let (raw, opened) = got.expect("the packet reached the peer");
            assert_eq!(opened, packet, "the peer opens exactly the device's packet");
            assert!(
                !raw.windows(17).any(|w| w == b"inside-out marker"),
                "the datagram on the wire is sealed"
            );
        });
    }

    #[test]
    fn sealed_datagram_comes_out_decrypted_on_the_device() {
        with_worker(|peer, wire| {
            let packet = udp_packet(B, A, 4000, OPEN_PORT, b"outside-in");
            peer.send_packet(&packet);
            let got = peer.until_device_packet(wire);
            assert_eq!(got.as_deref(), Some(&packet[..]));
        });
    }

    #[test]
    fn packet_the_firewall_drops_does_not_come_out() {
        with_worker(|peer, wire| {
            // A first allowed packet brings the tunnel up.
            let first = udp_packet(B, A, 4000, OPEN_PORT, b"first");
            peer.send_packet(&first);
            assert_eq!(peer.until_device_packet(wire).as_deref(), Some(&first[..]));
            let closed = udp_packet(B, A, 4001, OPEN_PORT + 1, b"closed port");
            let after = udp_packet(B, A, 4002, OPEN_PORT, b"after");
            peer.send_packet(&closed);
            peer.send_packet(&after);
            assert_eq!(
                peer.until_device_packet(wire).as_deref(),
                Some(&after[..]),
                "the closed-port packet is dropped, the next one passes"
            );
            assert_eq!(wire.recv(Duration::from_millis(200)), None);
        });
    }

    #[test]
    fn local_drop_catches_broadcast_and_multicast_only_when_asked() {
        let net: ipnet::IpNet = "10.42.0.1/16".parse().expect("net");
        let mut tun =
            crate::config::Config::from_str("pki: {ca: ca.crt, cert: h.crt, key: h.key}\n")
                .expect("an empty config")
                .config
                .tun;
        let to = |dst: Ipv4Addr| udp_packet(A, dst, 1, 2, b"x");
        let (bcast, net_bcast, mcast) = (
            to(Ipv4Addr::BROADCAST),
            to(Ipv4Addr::new(10, 42, 255, 255)),
            to(Ipv4Addr::new(224, 0, 0, 251)),
        );
        tun.drop_local_broadcast = false;
        tun.drop_multicast = false;
        let none = LocalDrop::new(&tun, vec![net]);
        assert!(!none.drops(&bcast) && !none.drops(&net_bcast) && !none.drops(&mcast));
        tun.drop_local_broadcast = true;
        let b = LocalDrop::new(&tun, vec![net]);
        assert!(b.drops(&bcast) && b.drops(&net_bcast) && !b.drops(&mcast));
        assert!(!b.drops(&to(B)));
        tun.drop_local_broadcast = false;
        tun.drop_multicast = true;
        let m = LocalDrop::new(&tun, vec![net]);
        assert!(!m.drops(&bcast) && m.drops(&mcast));
    }
}
