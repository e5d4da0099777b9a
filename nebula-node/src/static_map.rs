//! `static_map`: the host names in `static_host_map`, resolved with `static_map.network` and
//! `static_map.lookup_timeout`, and re-resolved in the background every `static_map.cadence`.
//!
//! As Go 1.11 does (`remote_list.go`): every round resolves each entry of a host that has at least
//! one name; IP literals always count; a name whose lookup fails or times out adds nothing that
//! round; when the set of addresses differs from the last one, the host's static addresses become
//! the new set (the engine's [`Engine::set_static_addrs`](nebula_core::engine::Engine)), used by
//! the next handshake. Hosts with only IP literals are never looked up again.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Config, HostPort, LookupNetwork, StaticHost};
use crate::plane::Plane;
use crate::poll::{poll, pollin, readable};

/// Most lookups still waiting on the system resolver at once. A lookup that outlives
/// `static_map.lookup_timeout` keeps its thread until the resolver gives up; past this many, new
/// lookups fail at once instead of piling up threads.
pub const MAX_LOOKUPS_IN_FLIGHT: usize = 16;

/// A name resolver: the system's ([`SystemResolver`]) or a test's.
pub trait Resolve {
    /// The addresses of `host`, within `timeout`.
    fn lookup(&self, host: &str, timeout: Duration) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo`: `/etc/hosts`, DNS, ...), each lookup on its own short-lived
/// thread so that `lookup_timeout` can be kept (`getaddrinfo` has no timeout of its own).
#[derive(Default, Clone)]
pub struct SystemResolver {
    in_flight: Arc<AtomicUsize>,
}

/// Decrements the in-flight count when a lookup thread ends, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Resolve for SystemResolver {
    fn lookup(&self, host: &str, timeout: Duration) -> io::Result<Vec<IpAddr>> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_LOOKUPS_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "too many earlier lookups still running",
            ));
        }
        let guard = InFlight(Arc::clone(&self.in_flight));
        let (tx, rx) = mpsc::channel();
        let name = host.to_string();
        std::thread::Builder::new()
            .name("nebula-dns".into())
            .spawn(move || {
                let _guard = guard;
                let r = (name.as_str(), 0u16)
                    .to_socket_addrs()
                    .map(|it| it.map(|a| a.ip()).collect::<Vec<_>>());
                // The caller may have given up waiting: nobody to tell.
                let _ = tx.send(r);
            })?;
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer within static_map.lookup_timeout",
            )),
        }
    }
}

/// The `static_host_map` entries and how to resolve their names, with the last answer per host.
#[derive(Debug, Clone)]
pub struct StaticNames {
    hosts: Vec<StaticHost>,
    network: LookupNetwork,
    lookup_timeout: Duration,
    cadence: Duration,
    /// The addresses the engine was last given, per host.
    current: HashMap<IpAddr, Vec<SocketAddr>>,
}

impl StaticNames {
    /// The hosts and settings of `cfg` (nothing resolved yet).
    pub fn from_config(cfg: &Config) -> StaticNames {
        StaticNames {
            hosts: cfg.static_host_map.clone(),
            network: cfg.static_map.network,
            lookup_timeout: cfg.static_map.lookup_timeout,
            cadence: cfg.static_map.cadence,
            current: HashMap::new(),
        }
    }

    /// Does any entry need a lookup (else there is nothing to re-resolve)?
    pub fn has_names(&self) -> bool {
        self.hosts
            .iter()
            .any(|h| h.remotes.iter().any(|r| r.ip().is_none()))
    }

    /// `static_map.cadence`.
    pub fn cadence(&self) -> Duration {
        self.cadence
    }

    /// Resolve every host once (start-up, reload): the engine's `static_host_map`.
    pub fn resolve_all(&mut self, resolver: &dyn Resolve) -> HashMap<IpAddr, Vec<SocketAddr>> {
        let mut out: HashMap<IpAddr, Vec<SocketAddr>> = HashMap::new();
        for h in &self.hosts {
            let addrs = self.resolve_host(&h.remotes, resolver);
            let list = out.entry(h.vpn_addr).or_default();
            for a in addrs {
                if !list.contains(&a) {
                    list.push(a);
                }
            }
        }
        self.current = out.clone();
        out
    }

    /// One background round: re-resolve the hosts that have names and return those whose set of
    /// addresses changed, with their new addresses.
    pub fn refresh(&mut self, resolver: &dyn Resolve) -> Vec<(IpAddr, Vec<SocketAddr>)> {
        let mut fresh: HashMap<IpAddr, Vec<SocketAddr>> = HashMap::new();
        for h in &self.hosts {
            if h.remotes.iter().all(|r| r.ip().is_some()) {
                continue;
            }
            let list = fresh.entry(h.vpn_addr).or_default();
            for a in self.resolve_host(&h.remotes, resolver) {
                if !list.contains(&a) {
                    list.push(a);
                }
            }
        }
        let mut changed = Vec::new();
        let mut hosts: Vec<IpAddr> = fresh.keys().copied().collect();
        hosts.sort();
        for vpn in hosts {
            let Some(new) = fresh.remove(&vpn) else {
                continue;
            };
            let same = self
                .current
                .get(&vpn)
                .is_some_and(|old| old.len() == new.len() && old.iter().all(|a| new.contains(a)));
            if !same {
                // No earlier answer (the first round after a reload): nothing to compare with.
                if let Some(old) = self.current.get(&vpn) {
                    tracing::info!(
                        vpn_addr = %vpn,
                        old = ?old,
                        new = ?new,
                        "DNS results changed for static_host_map host"
                    );
                }
                self.current.insert(vpn, new.clone());
                changed.push((vpn, new));
            }
        }
        changed
    }

    fn resolve_host(&self, remotes: &[HostPort], resolver: &dyn Resolve) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for r in remotes {
            if let Some(ip) = r.ip() {
                out.push(SocketAddr::new(ip, r.port));
                continue;
            }
            match resolver.lookup(&r.host, self.lookup_timeout) {
                Ok(ips) => {
                    for ip in ips {
                        let ip = ip.to_canonical();
                        let wanted = match self.network {
                            LookupNetwork::Ip4 => ip.is_ipv4(),
                            LookupNetwork::Ip6 => ip.is_ipv6(),
                            LookupNetwork::Ip => true,
                        };
                        let a = SocketAddr::new(ip, r.port);
                        if wanted && !out.contains(&a) {
                            out.push(a);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(
                        hostname = %r.host,
                        network = ?self.network,
                        error = %e,
                        "DNS resolution failed for static_map host"
                    );
                }
            }
        }
        out
    }
}

/// The background re-resolver: every `cadence` of the names in `shared` (which a reload
/// replaces), re-resolve and hand changed hosts to the engine, until `stop` becomes readable.
pub fn run(plane: &Plane, shared: &Mutex<StaticNames>, resolver: &dyn Resolve, stop: &UnixStream) {
    loop {
        // The lock is held only to copy: lookups take a while and a reload must not wait.
        let mut names = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut fds = [pollin(stop.as_raw_fd())];
        if poll(&mut fds, names.cadence()).is_err() || readable(&fds[0]) {
            return;
        }
        if !names.has_names() {
            continue;
        }
        let changed = names.refresh(resolver);
        {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            // A reload in the meantime brought new hosts: its own resolution stands.
            if s.hosts != names.hosts {
                continue;
            }
            s.current = names.current;
        }
        if !changed.is_empty() {
            plane.with_engine(|e| {
                for (vpn, addrs) in changed {
                    e.set_static_addrs(vpn, addrs);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    /// Answers from a table that the test edits between rounds; `None` = lookup fails.
    #[derive(Default)]
    struct FakeResolver {
        table: RefCell<HashMap<String, Option<Vec<IpAddr>>>>,
        calls: RefCell<Vec<String>>,
    }

    impl FakeResolver {
        fn set(&self, name: &str, ips: Option<&[&str]>) {
            self.table.borrow_mut().insert(
                name.to_string(),
                ips.map(|v| v.iter().map(|s| s.parse().expect("ip")).collect()),
            );
        }
    }

    impl Resolve for FakeResolver {
        fn lookup(&self, host: &str, _timeout: Duration) -> io::Result<Vec<IpAddr>> {
            self.calls.borrow_mut().push(host.to_string());
            match self.table.borrow().get(host) {
                Some(Some(v)) => Ok(v.clone()),
                _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
            }
        }
    }

    fn names(yaml: &str) -> StaticNames {
        let text = format!("pki: {{ca: /ca.crt, cert: /host.crt, key: /host.key}}\n{yaml}");
        let c = Config::from_str(&text).expect("config").config;
        StaticNames::from_config(&c)
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    const MAP: &str = "static_host_map:\n  \"10.1.0.1\": [\"lh.example:4242\", \"192.0.2.9:4242\"]\n  \"10.1.0.2\": [\"192.0.2.10:4242\"]\n";

    #[test]
    fn a_changed_name_is_picked_up_by_the_next_round() {
        let r = FakeResolver::default();
        r.set("lh.example", Some(&["198.51.100.1"]));
        let mut n = names(MAP);
        assert!(n.has_names());
        let all = n.resolve_all(&r);
        let vpn1: IpAddr = "10.1.0.1".parse().expect("ip");
        assert_eq!(
            all[&vpn1],
            vec![sa("198.51.100.1:4242"), sa("192.0.2.9:4242")]
        );
        // Same answer: nothing to tell the engine.
        assert!(n.refresh(&r).is_empty());
        // The name moves.
        r.set("lh.example", Some(&["198.51.100.7", "::ffff:198.51.100.8"]));
        let changed = n.refresh(&r);
        assert_eq!(
            changed,
            vec![(
                vpn1,
                vec![
                    sa("198.51.100.7:4242"),
                    sa("198.51.100.8:4242"),
                    sa("192.0.2.9:4242")
                ]
            )]
        );
        // Hosts with only literals are never looked up in the background.
        assert!(r.calls.borrow().iter().all(|c| c == "lh.example"));
    }

    #[test]
    fn a_failed_lookup_drops_the_names_addresses_as_go_does() {
        let r = FakeResolver::default();
        r.set("lh.example", Some(&["198.51.100.1"]));
        let mut n = names(MAP);
        n.resolve_all(&r);
        r.set("lh.example", None);
        let vpn1: IpAddr = "10.1.0.1".parse().expect("ip");
        assert_eq!(n.refresh(&r), vec![(vpn1, vec![sa("192.0.2.9:4242")])]);
        // And comes back once the name resolves again.
        r.set("lh.example", Some(&["198.51.100.1"]));
        assert_eq!(
            n.refresh(&r),
            vec![(vpn1, vec![sa("198.51.100.1:4242"), sa("192.0.2.9:4242")])]
        );
    }

    #[test]
    fn static_map_network_filters_the_families() {
        let r = FakeResolver::default();
        r.set("lh.example", Some(&["198.51.100.1", "2001:db8::1"]));
        let vpn1: IpAddr = "10.1.0.1".parse().expect("ip");
        for (net, want) in [
            ("ip4", vec!["198.51.100.1:4242"]),
            ("ip6", vec!["[2001:db8::1]:4242"]),
            ("ip", vec!["198.51.100.1:4242", "[2001:db8::1]:4242"]),
        ] {
            let mut n = names(&format!(
                "static_map: {{network: {net}}}\nstatic_host_map:\n  \"10.1.0.1\": [\"lh.example:4242\"]\n"
            ));
            let all = n.resolve_all(&r);
            let want: Vec<SocketAddr> = want.iter().map(|s| sa(s)).collect();
            assert_eq!(all[&vpn1], want, "{net}");
        }
    }

    #[test]
    fn only_literals_means_no_background_work() {
        let n = names("static_host_map:\n  \"10.1.0.2\": [\"192.0.2.10:4242\"]\n");
        assert!(!n.has_names());
    }

    #[test]
    fn system_resolver_keeps_the_timeout_and_bounds_its_threads() {
        let r = SystemResolver::default();
        let ips = r
            .lookup("localhost", Duration::from_secs(5))
            .expect("localhost resolves");
        assert!(ips.iter().any(|ip| ip.is_loopback()));
        // With every slot taken, a lookup fails at once.
        r.in_flight.store(MAX_LOOKUPS_IN_FLIGHT, Ordering::Release);
        let e = r
            .lookup("localhost", Duration::from_secs(5))
            .expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(r.in_flight.load(Ordering::Acquire), MAX_LOOKUPS_IN_FLIGHT);
    }
}
