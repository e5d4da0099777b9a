//! The load generator: many simulated hosts handshaking (Noise IX, as initiators) with one
//! lighthouse over a few loopback UDP sockets, a bounded number in flight; and a garbage sender.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use nebula_cert::Version;
use nebula_core::aead::CipherKind;
use nebula_core::aead::{KeyUse, TAG_LEN};
use nebula_core::handshake::{self, Completed, PendingHandshake};
use nebula_core::lighthouse;
use nebula_core::pki::Pki;
use prost::Message as _;
use proto::header::{subtype, Header, MessageType, HEADER_LEN};
use rand::RngCore;

use crate::setup::{host_vpn_addr, unix_now, Ca};

/// How a batch of handshakes went.
#[derive(Clone, Debug, Default)]
pub struct BatchStats {
    /// Stage 2 received and accepted: the lighthouse holds a tunnel for the host.
    pub completed: u64,
    /// Refused by us, or no answer after the last attempt.
    pub failed: u64,
    /// Stage 1 sent again after no answer.
    pub retries: u64,
    /// Datagrams that were not an answer to a handshake in flight.
    pub other: u64,
    pub elapsed: Duration,
    /// The deadline passed with handshakes still to do.
    pub timed_out: bool,
    /// The first refusal, for the report.
    pub first_error: Option<String>,
}

impl BatchStats {
    pub fn add(&mut self, o: &BatchStats) {
        self.completed += o.completed;
        self.failed += o.failed;
        self.retries += o.retries;
        self.other += o.other;
        self.elapsed += o.elapsed;
        self.timed_out |= o.timed_out;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
    }
}

struct Flight {
    hs: PendingHandshake,
    sent: Instant,
    attempts: u32,
}

/// Drives simulated hosts against one lighthouse.
pub struct Driver {
    sockets: Vec<UdpSocket>,
    target: SocketAddr,
    ca: Ca,
    /// Any host's credentials: `complete` only needs the CA pool and curve from it.
    verifier: Pki,
    next_host: u64,
    /// Handshakes in flight at most.
    pub in_flight: usize,
    pub retry_after: Duration,
    pub max_attempts: u32,
    /// Tunnels the lighthouse holds with our hosts.
    pub live: u64,
    /// Length of a stage-1 datagram, for garbage of the same size.
    pub stage1_len: usize,
    buf: Vec<u8>,
}

impl Driver {
    /// `sockets` loopback sockets (distinct source ports) talking to `target`.
    pub fn new(ca: Ca, target: SocketAddr, sockets: usize, in_flight: usize) -> Result<Driver> {
        if !target.ip().is_loopback() {
            return Err(anyhow!("the lighthouse must be on loopback, not {target}"));
        }
        let mut socks = Vec::with_capacity(sockets);
        for _ in 0..sockets.max(1) {
            let s = UdpSocket::bind("127.0.0.1:0").context("binding a loopback socket")?;
            s.set_nonblocking(true)?;
            socks.push(s);
        }
        // Host number 4,000,000 is far above any load size: the verifier's own.
        let verifier = ca.host_pki(4_000_000)?;
        Ok(Driver {
            sockets: socks,
            target,
            ca,
            verifier,
            next_host: 0,
            in_flight: in_flight.max(1),
            retry_after: Duration::from_secs(1),
            max_attempts: 10,
            live: 0,
            stage1_len: 0,
            buf: vec![0u8; 65536],
        })
    }

    /// Makes `n` new hosts (certificate, key) and their stage-1 messages.
    pub fn prepare(&mut self, n: usize) -> Result<Vec<PendingHandshake>> {
        let mut rng = rand::thread_rng();
        let unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let host = self.next_host;
            self.next_host += 1;
            let pki = self.ca.host_pki(host)?;
            let local_index =
                u32::try_from(host + 1).map_err(|_| anyhow!("host {host}: out of indexes"))?;
            let hs = handshake::initiate(
                &pki,
                CipherKind::AesGcm,
                Version::V1,
                IpAddr::V4(host_vpn_addr(host)?),
                local_index,
                unix_nanos,
                Instant::now(),
                &mut rng,
            )
            .map_err(|e| anyhow!("stage 1 of host {host}: {e}"))?;
            self.stage1_len = hs.stage1.len();
            out.push(hs);
        }
        Ok(out)
    }

    fn send(&self, hs: &PendingHandshake) -> Result<()> {
        let sock = &self.sockets[hs.local_index as usize % self.sockets.len()];
        match sock.send_to(&hs.stage1, self.target) {
            Ok(_) => Ok(()),
            // A full send buffer: the retry will send it again.
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e).context("sending stage 1"),
        }
    }

    /// What a real host does right after its handshake with a lighthouse: a HostUpdateNotification
    /// with its underlay address, sealed on the new tunnel (this also confirms the tunnel on the
    /// lighthouse, as real traffic would). The lighthouse's ack is counted as "other".
    fn announce(&self, socket: usize, local_index: u32, done: &Completed) -> Result<()> {
        let sock = &self.sockets[socket];
        let host = u64::from(local_index)
            .checked_sub(1)
            .ok_or_else(|| anyhow!("local index 0"))?;
        let me = IpAddr::V4(host_vpn_addr(host)?);
        let here = sock.local_addr().context("socket address")?;
        let msg = lighthouse::host_update(me, &[here], &[], Version::V1).encode_to_vec();
        let counter = done
            .session
            .next_counter()
            .map_err(|e| anyhow!("host {host}: {e}"))?;
        let mut d = vec![0u8; HEADER_LEN + msg.len() + TAG_LEN];
        d[..HEADER_LEN].copy_from_slice(
            &Header::new(MessageType::LightHouse, 0, done.peer_index, counter).to_bytes(),
        );
        d[HEADER_LEN..HEADER_LEN + msg.len()].copy_from_slice(&msg);
        done.session
            .send
            .seal_frame(KeyUse::Data, counter, &mut d, HEADER_LEN)
            .map_err(|e| anyhow!("host {host}: {e}"))?;
        match sock.send_to(&d, self.target) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e).context("sending the host update"),
        }
    }

    /// Runs `batch` to the end (every handshake completed or failed) or until `deadline`.
    pub fn run(&mut self, batch: Vec<PendingHandshake>, deadline: Instant) -> Result<BatchStats> {
        let start = Instant::now();
        let mut stats = BatchStats::default();
        let mut queue = batch.into_iter();
        let mut flight: HashMap<u32, Flight> = HashMap::with_capacity(self.in_flight * 2);
        let mut expired: Vec<u32> = Vec::new();
        loop {
            while flight.len() < self.in_flight {
                let Some(hs) = queue.next() else { break };
                self.send(&hs)?;
                flight.insert(
                    hs.local_index,
                    Flight {
                        hs,
                        sent: Instant::now(),
                        attempts: 1,
                    },
                );
            }
            if flight.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                stats.timed_out = true;
                break;
            }
            let mut wake = deadline;
            for (index, f) in flight.iter_mut() {
                let due = f.sent + self.retry_after;
                if due > now {
                    wake = wake.min(due);
                } else if f.attempts >= self.max_attempts {
                    expired.push(*index);
                } else {
                    self.send(&f.hs)?;
                    f.sent = now;
                    f.attempts += 1;
                    stats.retries += 1;
                    wake = wake.min(now + self.retry_after);
                }
            }
            for index in expired.drain(..) {
                flight.remove(&index);
                stats.failed += 1;
                if stats.first_error.is_none() {
                    stats.first_error =
                        Some(format!("no answer after {} attempts", self.max_attempts));
                }
            }
            self.wait_readable(wake.saturating_duration_since(now))?;
            self.drain(&mut flight, &mut stats)?;
        }
        stats.elapsed = start.elapsed();
        Ok(stats)
    }

    fn wait_readable(&self, timeout: Duration) -> Result<()> {
        let mut fds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: `fds` is a live, correctly sized array of pollfd for the duration of the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(e).context("poll");
            }
        }
        Ok(())
    }

    fn drain(&mut self, flight: &mut HashMap<u32, Flight>, stats: &mut BatchStats) -> Result<()> {
        let unix_secs = unix_now();
        for i in 0..self.sockets.len() {
            loop {
                let (n, from) = match self.sockets[i].recv_from(&mut self.buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e).context("receiving"),
                };
                if from != self.target {
                    stats.other += 1;
                    continue;
                }
                let Ok((h, body)) = Header::parse_split(&self.buf[..n]) else {
                    stats.other += 1;
                    continue;
                };
                if h.msg_type != MessageType::Handshake
                    || h.subtype != subtype::HANDSHAKE_IX_PSK0
                    || h.message_counter != 2
                {
                    stats.other += 1;
                    continue;
                }
                let Some(f) = flight.get_mut(&h.remote_index) else {
                    // A late duplicate answer to a retried stage 1.
                    stats.other += 1;
                    continue;
                };
                match handshake::complete(&mut f.hs, &self.verifier, body, unix_secs) {
                    Ok(Some(done)) => {
                        flight.remove(&h.remote_index);
                        stats.completed += 1;
                        self.live += 1;
                        self.announce(i, h.remote_index, &done)?;
                    }
                    Ok(None) => stats.other += 1,
                    Err(e) => {
                        flight.remove(&h.remote_index);
                        stats.failed += 1;
                        if stats.first_error.is_none() {
                            stats.first_error = Some(e.to_string());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A garbage stage 1 of `len` bytes: a valid header (handshake, IX-PSK0, remote index 0,
/// counter 1) and random bytes, the first eight of them `seq` so that no two are the same.
pub fn garbage_datagram(rng: &mut dyn RngCore, len: usize, seq: u64) -> Vec<u8> {
    let len = len.max(HEADER_LEN + 8);
    let mut d = vec![0u8; len];
    d[..HEADER_LEN].copy_from_slice(
        &Header::new(MessageType::Handshake, subtype::HANDSHAKE_IX_PSK0, 0, 1).to_bytes(),
    );
    rng.fill_bytes(&mut d[HEADER_LEN..]);
    d[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&seq.to_le_bytes());
    d
}

/// Sends up to `count` garbage datagrams of `len` bytes to `target` from one new loopback
/// socket, at `rate` per second (`None`: as fast as the socket takes them), until `stop`.
/// Returns how many were sent.
pub fn send_garbage(
    target: SocketAddr,
    len: usize,
    count: u64,
    rate: Option<f64>,
    stop: &AtomicBool,
) -> Result<u64> {
    let sock = UdpSocket::bind("127.0.0.1:0").context("binding the garbage socket")?;
    let mut rng = rand::thread_rng();
    let mut d = garbage_datagram(&mut rng, len, 0);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count && !stop.load(Ordering::Relaxed) {
        d[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&sent.to_le_bytes());
        // Fresh randomness in the ephemeral-key bytes too, cheaply: the next 8 bytes.
        d[HEADER_LEN + 8..HEADER_LEN + 16].copy_from_slice(&rng.next_u64().to_le_bytes());
        match sock.send_to(&d, target) {
            Ok(_) => sent += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("sending garbage"),
        }
        if let Some(rate) = rate {
            if sent & 31 == 0 {
                let due = start + Duration::from_secs_f64(sent as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_has_a_stage1_header_and_distinct_bodies() {
        let mut rng = rand::thread_rng();
        let a = garbage_datagram(&mut rng, 300, 1);
        let b = garbage_datagram(&mut rng, 300, 2);
        assert_eq!(a.len(), 300);
        let h = Header::parse(&a).unwrap();
        assert_eq!(h.msg_type, MessageType::Handshake);
        assert_eq!(h.subtype, subtype::HANDSHAKE_IX_PSK0);
        assert_eq!(h.remote_index, 0);
        assert_eq!(h.message_counter, 1);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
        assert_eq!(garbage_datagram(&mut rng, 3, 0).len(), HEADER_LEN + 8);
    }

    #[test]
    fn refuses_a_target_off_loopback() {
        let ca = Ca::new().unwrap();
        assert!(Driver::new(ca, "192.0.2.1:4242".parse().unwrap(), 1, 1).is_err());
    }

    /// Our own engine's responder in-process, over a real loopback socket: the driver completes
    /// handshakes against it, and a retried stage 1 after silence is counted.
    #[test]
    fn completes_handshakes_against_a_responder() {
        let ca = Ca::new().unwrap();
        let responder_pki = ca.host_pki(3_000_000).unwrap();
        let lh = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = lh.local_addr().unwrap();
        let mut driver = Driver::new(ca, target, 2, 4).unwrap();
        let batch = driver.prepare(6).unwrap();
        assert!(driver.stage1_len > HEADER_LEN);
        let responder = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            let mut answered = 0u32;
            let mut dropped_one = false;
            let mut sessions = HashMap::new();
            let mut announced = 0u32;
            // Answer every stage 1 (retries included) until the driver has gone quiet.
            lh.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            while let Ok((n, from)) = lh.recv_from(&mut buf) {
                let (h, body) = Header::parse_split(&buf[..n]).unwrap();
                if h.msg_type == MessageType::LightHouse {
                    // A host announcing itself on its new tunnel: it must open with that
                    // tunnel's keys.
                    let s: &nebula_core::aead::Session = sessions.get(&h.remote_index).unwrap();
                    let mut d = buf[..n].to_vec();
                    s.open_frame(KeyUse::Data, h.message_counter, &mut d, HEADER_LEN)
                        .unwrap();
                    announced += 1;
                    continue;
                }
                if !dropped_one {
                    dropped_one = true; // lose the first stage 1: the driver must retry it
                    continue;
                }
                let r = handshake::respond(
                    &responder_pki,
                    CipherKind::AesGcm,
                    body,
                    1000 + answered,
                    0,
                    unix_now(),
                    &mut rand::thread_rng(),
                )
                .unwrap();
                let mut out = Header::new(
                    MessageType::Handshake,
                    subtype::HANDSHAKE_IX_PSK0,
                    r.peer_index,
                    2,
                )
                .to_bytes()
                .to_vec();
                out.extend_from_slice(&r.stage2);
                lh.send_to(&out, from).unwrap();
                sessions.insert(1000 + answered, r.session);
                answered += 1;
            }
            announced
        });
        driver.retry_after = Duration::from_millis(300);
        let stats = driver
            .run(batch, Instant::now() + Duration::from_secs(20))
            .unwrap();
        let announced = responder.join().unwrap();
        assert_eq!(stats.completed, 6, "{stats:?}");
        assert_eq!(announced, 6, "every host announced itself on its tunnel");
        assert_eq!(stats.failed, 0);
        assert!(stats.retries >= 1);
        assert!(!stats.timed_out);
        assert_eq!(driver.live, 6);
    }

    #[test]
    fn a_silent_target_times_out() {
        let ca = Ca::new().unwrap();
        let lh = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut driver = Driver::new(ca, lh.local_addr().unwrap(), 1, 2).unwrap();
        let batch = driver.prepare(3).unwrap();
        let stats = driver
            .run(batch, Instant::now() + Duration::from_millis(300))
            .unwrap();
        assert!(stats.timed_out);
        assert_eq!(stats.completed, 0);
    }

    #[test]
    fn garbage_sender_sends_the_count_at_the_rate() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stop = AtomicBool::new(false);
        let t = Instant::now();
        let sent = send_garbage(sink.local_addr().unwrap(), 100, 200, Some(2000.0), &stop).unwrap();
        assert_eq!(sent, 200);
        assert!(
            t.elapsed() >= Duration::from_millis(80),
            "{:?}",
            t.elapsed()
        );
        let mut buf = [0u8; 200];
        let (n, _) = sink.recv_from(&mut buf).unwrap();
        assert_eq!(n, 100);
        stop.store(true, Ordering::Relaxed);
        assert_eq!(
            send_garbage(sink.local_addr().unwrap(), 100, 10, None, &stop).unwrap(),
            0
        );
    }
}
