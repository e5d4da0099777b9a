//! SIGHUP's work, without the signal: re-read the config, build credentials, firewall and settings
//! as at start-up, and hand them to [`Engine::reload`]. A broken config is refused as a whole.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Instant;

use nebula_core::engine::{Engine, Outputs, Reload};
use nebula_core::firewall::Firewall;
use nebula_core::pki::Pki;

use crate::config::Config;
use crate::plane::Plane;
use crate::setup::{self, SetupError};

/// SIGHUP: re-read the config at `config_path` (pki valid at `now_unix`) and reload the engine
/// behind `plane`; returns the config, for what lives outside the engine. A broken config is
/// refused as a whole (logged, and returned) and the engine keeps running on the old one.
pub fn reload(
    plane: &Plane,
    config_path: &Path,
    now_unix: i64,
    out: &mut Outputs,
) -> Result<Config, SetupError> {
    tracing::info!(path = %config_path.display(), "Caught HUP, reloading config");
    let prepared = match PreparedReload::load(config_path, now_unix) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "Failed to reload config, keeping the old one");
            return Err(e);
        }
    };
    tracing::info!(rules = %prepared.firewall.rules_hash(), "Firewall reloaded");
    Ok(plane.with_engine(|engine| prepared.apply(engine, Instant::now(), out)))
}

/// A re-read config, checked and built, waiting for the engine. Built without the engine's lock
/// (reading and verifying the pki files takes a while).
pub struct PreparedReload {
    config: Config,
    pki: Pki,
    firewall: Firewall,
    static_hosts: HashMap<IpAddr, Vec<SocketAddr>>,
}

impl PreparedReload {
    /// Read the config at `path` (a file or a directory, as at start-up) and build from it.
    pub fn load(path: &Path, now_unix: i64) -> Result<PreparedReload, SetupError> {
        let loaded = Config::load(path)?;
        PreparedReload::from_config(loaded.config, now_unix)
    }

    /// Build pki (valid at `now_unix`), firewall and static hosts from `config`.
    pub fn from_config(config: Config, now_unix: i64) -> Result<PreparedReload, SetupError> {
        let (pki, _) = setup::load_pki(&config, now_unix)?;
        let firewall = setup::build_firewall(&config, &pki)?;
        let static_hosts = setup::resolve_static_hosts(&config)?;
        Ok(PreparedReload {
            config,
            pki,
            firewall,
            static_hosts,
        })
    }

    /// Hand everything to [`Engine::reload`], which takes from the settings only what a reload
    /// may change (the addresses we advertise are the engine's own, learned at start-up).
    /// Returns the config.
    pub fn apply(self, engine: &mut Engine, now: Instant, out: &mut Outputs) -> Config {
        let config = setup::engine_config(
            &self.config,
            self.static_hosts,
            engine.config().advertise_addrs.clone(),
        );
        let reload = Reload {
            config,
            pki: self.pki,
            firewall: self.firewall,
        };
        engine.reload(now, reload, out);
        self.config
    }
}

/// Every key README's "Signals:" paragraph says SIGHUP reloads, one at a time: a node started
/// from a base config, that key changed in the file, [`reload`], and the engine must show it.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use nebula_cert::{keys, Curve, Version};
    use nebula_core::engine::{Engine, Outputs, RecvErrorPolicy};
    use nebula_core::filter::{GroupFirewall, PeerIdentity, Verdict};
    use nebula_core::firewall::DropReason;
    use nebula_core::sim::{udp_packet, TestCa};
    use rand::SeedableRng;

    use super::reload;
    use crate::config::Config;
    use crate::plane::Plane;
    use crate::setup;

    const B: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 2);

    fn now_unix() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// Certificates on disk: `ca.crt` (CA one), `ca2.crt` (CA one and CA two), host `a` and a
    /// renewed `a2` (same address, another name); in memory, peer `b`'s and a CA-two host's.
    struct Files {
        dir: tempfile::TempDir,
        peer: nebula_cert::cert::Certificate,
        /// A host of CA two (which only `ca2.crt` holds).
        other: nebula_cert::cert::Certificate,
    }

    impl Files {
        fn new() -> Files {
            let dir = tempfile::tempdir().expect("temp dir");
            let (one, two) = (
                TestCa::new("ca one", Curve::Curve25519, Version::V1),
                TestCa::new("ca two", Curve::Curve25519, Version::V1),
            );
            let write = |name: &str, text: &str| {
                std::fs::write(dir.path().join(name), text).expect("write test file")
            };
            write("ca.crt", &one.cert.marshal_pem());
            let mut both = one.cert.marshal_pem();
            both.push_str(&two.cert.marshal_pem());
            write("ca2.crt", &both);
            for name in ["a", "a2"] {
                let (cert, key) = one.host(name, "10.42.0.1/16", &[]);
                write(&format!("{name}.crt"), &cert.marshal_pem());
                write(
                    &format!("{name}.key"),
                    &keys::marshal_private_key(Curve::Curve25519, &key),
                );
            }
            let (peer, _) = one.host("b", "10.42.0.2/16", &[]);
            let (other, _) = two.host("c", "10.42.0.3/16", &[]);
            Files { dir, peer, other }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        /// The config file text: the base sections with `changes` replacing some of them
        /// (section name -> what follows `name:`).
        fn config(&self, changes: &[(&str, String)]) -> String {
            let mut sections: BTreeMap<&str, String> = BTreeMap::new();
            sections.insert(
                "pki",
                format!(
                    "\n  ca: {}\n  cert: {}\n  key: {}",
                    self.path("ca.crt"),
                    self.path("a.crt"),
                    self.path("a.key")
                ),
            );
            sections.insert(
                "static_host_map",
                "\n  '10.42.0.2': ['192.0.2.2:4242']".into(),
            );
            sections.insert("lighthouse", "\n  am_lighthouse: false".into());
            sections.insert("listen", "\n  host: 0.0.0.0\n  port: 0".into());
            sections.insert("punchy", "\n  punch: false".into());
            sections.insert("relay", "\n  am_relay: false".into());
            sections.insert("preferred_ranges", " []".into());
            sections.insert(
                "firewall",
                "\n  outbound: [{port: any, proto: any, host: any}]\
                 \n  inbound: [{port: 5000, proto: udp, host: any}]"
                    .into(),
            );
            for (name, text) in changes {
                sections.insert(name, text.clone());
            }
            sections
                .iter()
                .map(|(name, text)| format!("{name}:{text}\n"))
                .collect()
        }

        fn write_config(&self, changes: &[(&str, String)]) -> PathBuf {
            let p = self.dir.path().join("config.yml");
            std::fs::write(&p, self.config(changes)).expect("write config");
            p
        }

        /// A node's engine started from the base config, as `Node::new` builds it.
        fn start(&self) -> Plane {
            let loaded = Config::from_str(&self.config(&[])).expect("base config");
            let cfg = &loaded.config;
            let (pki, _) = setup::load_pki(cfg, now_unix()).expect("base pki");
            let firewall = setup::build_firewall(cfg, &pki).expect("base firewall");
            let hosts = setup::resolve_static_hosts(cfg).expect("base static hosts");
            let mut engine = Engine::new(
                setup::engine_config(cfg, hosts, Vec::new()),
                pki,
                Box::new(GroupFirewall::new(firewall)),
                Box::new(rand::rngs::StdRng::from_entropy()),
                Instant::now(),
                0,
            );
            engine.set_wall_clock(Instant::now(), now_unix() as u64 * 1_000_000_000);
            engine.start(Instant::now(), &mut Outputs::default());
            Plane::for_test(engine)
        }

        /// The firewall's verdict on a UDP packet from peer `b` to our port `dport`.
        fn inbound_verdict(&self, engine: &Engine, dport: u16) -> Verdict {
            let packet = udp_packet(B, Ipv4Addr::new(10, 42, 0, 1), 40_000, dport, b"x");
            let peer = PeerIdentity {
                cert: &self.peer,
                vpn_addrs: &[IpAddr::V4(B)],
                ca_name: "ca one",
                issuer_hex: "",
            };
            engine.filter().check(Instant::now(), &packet, true, &peer)
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    type Check = Box<dyn Fn(&Files, &Engine) -> bool>;

    /// (key, section replaced, its new text, "the engine shows the new value").
    fn cases(f: &Files) -> Vec<(&'static str, &'static str, String, Check)> {
        let b = IpAddr::V4(B);
        let remote = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        vec![
            (
                "pki.cert, pki.key",
                "pki",
                format!(
                    "\n  ca: {}\n  cert: {}\n  key: {}",
                    f.path("ca.crt"),
                    f.path("a2.crt"),
                    f.path("a2.key")
                ),
                Box::new(|_, e| {
                    e.pki().cert(Version::V1).map(|c| c.name().to_string())
                        == Some("a2".to_string())
                }),
            ),
            (
                "pki.ca",
                "pki",
                format!(
                    "\n  ca: {}\n  cert: {}\n  key: {}",
                    f.path("ca2.crt"),
                    f.path("a.crt"),
                    f.path("a.key")
                ),
                Box::new(|f, e| {
                    // A host of a CA only the new bundle holds: the pool now knows its CA.
                    e.pki()
                        .ca_pool()
                        .get_ca_for_cert(&f.other)
                        .is_ok_and(|ca| ca.name() == "ca two")
                }),
            ),
            (
                "firewall.inbound",
                "firewall",
                "\n  outbound: [{port: any, proto: any, host: any}]\
                 \n  inbound: [{port: 6000, proto: udp, host: any}]"
                    .into(),
                Box::new(|f, e| {
                    f.inbound_verdict(e, 6000) == Verdict::Allow
                        && f.inbound_verdict(e, 5000) == Verdict::Drop(DropReason::NoMatchingRule)
                }),
            ),
            (
                "static_host_map",
                "static_host_map",
                "\n  '10.42.0.2': ['192.0.2.3:4343']".into(),
                Box::new(move |_, e| {
                    e.config().static_host_map.get(&b) == Some(&vec![addr("192.0.2.3:4343")])
                        && e.remotes_for(&b).map(|r| r.static_addrs().to_vec())
                            == Some(vec![addr("192.0.2.3:4343")])
                }),
            ),
            (
                "lighthouse.hosts",
                "lighthouse",
                "\n  am_lighthouse: false\n  hosts: ['10.42.0.2']".into(),
                Box::new(move |_, e| e.config().lighthouses == vec![b]),
            ),
            (
                "lighthouse.remote_allow_list",
                "lighthouse",
                "\n  am_lighthouse: false\n  remote_allow_list: {'192.0.2.0/24': false}".into(),
                Box::new(move |_, e| !e.config().remote_allow_list.allows(b, remote)),
            ),
            (
                "lighthouse.remote_allow_ranges",
                "lighthouse",
                "\n  am_lighthouse: false\
                 \n  remote_allow_ranges: {'10.42.0.0/24': {'192.0.2.0/24': false}}"
                    .into(),
                Box::new(move |_, e| !e.config().remote_allow_list.allows(b, remote)),
            ),
            (
                "lighthouse.calculated_remotes",
                "lighthouse",
                "\n  am_lighthouse: false\
                 \n  calculated_remotes: {'10.42.0.0/24': [{mask: '192.0.2.0/24', port: 4242}]}"
                    .into(),
                Box::new(move |_, e| {
                    e.config()
                        .calculated_remotes
                        .iter()
                        .any(|c| c.apply(b) == Some(addr("192.0.2.2:4242")))
                }),
            ),
            (
                "relay.relays",
                "relay",
                "\n  am_relay: false\n  relays: ['10.42.0.2']".into(),
                Box::new(move |_, e| e.config().relays == vec![b]),
            ),
            (
                "relay.am_relay",
                "relay",
                "\n  am_relay: true".into(),
                Box::new(|_, e| e.config().am_relay),
            ),
            (
                "relay.use_relays",
                "relay",
                "\n  am_relay: false\n  use_relays: false".into(),
                Box::new(|_, e| !e.config().use_relays),
            ),
            (
                "preferred_ranges",
                "preferred_ranges",
                " ['192.0.2.0/24']".into(),
                Box::new(|_, e| {
                    e.config().preferred_ranges == vec!["192.0.2.0/24".parse().expect("net")]
                }),
            ),
            (
                "punchy.punch",
                "punchy",
                "\n  punch: true".into(),
                Box::new(|_, e| e.config().punchy.punch),
            ),
            (
                "punchy.respond",
                "punchy",
                "\n  punch: false\n  respond: true".into(),
                Box::new(|_, e| e.config().punchy.respond),
            ),
            (
                "punchy.delay",
                "punchy",
                "\n  punch: false\n  delay: 3s".into(),
                Box::new(|_, e| e.config().punchy.delay == Duration::from_secs(3)),
            ),
            (
                "punchy.respond_delay",
                "punchy",
                "\n  punch: false\n  respond_delay: 7s".into(),
                Box::new(|_, e| e.config().punchy.respond_delay == Duration::from_secs(7)),
            ),
            (
                "listen.send_recv_error",
                "listen",
                "\n  host: 0.0.0.0\n  port: 0\n  send_recv_error: never".into(),
                Box::new(|_, e| e.config().send_recv_error == RecvErrorPolicy::Never),
            ),
            (
                "listen.accept_recv_error",
                "listen",
                "\n  host: 0.0.0.0\n  port: 0\n  accept_recv_error: never".into(),
                Box::new(|_, e| !e.config().accept_recv_error),
            ),
        ]
    }

    #[test]
    fn sighup_reloads_every_key_the_readme_names() {
        let f = Files::new();
        for (key, section, text, reloaded) in cases(&f) {
            let plane = f.start();
            assert!(
                !reloaded(&f, &plane.lock()),
                "{key}: the base config already has it"
            );
            let path = f.write_config(&[(section, text)]);
            let mut out = Outputs::default();
            reload(&plane, &path, now_unix(), &mut out)
                .unwrap_or_else(|e| panic!("{key}: reload refused: {e}"));
            assert!(reloaded(&f, &plane.lock()), "{key}: not reloaded");
        }
    }

    #[test]
    fn settings_a_reload_may_not_change_keep_their_start_up_value() {
        let f = Files::new();
        let plane = f.start();
        let before = plane.lock().config().clone();
        let path = f.write_config(&[
            ("cipher", " chachapoly".into()),
            ("handshakes", "\n  try_interval: 900ms\n  retries: 3".into()),
        ]);
        reload(&plane, &path, now_unix(), &mut Outputs::default()).expect("reload");
        let e = plane.lock();
        assert_eq!(e.config().cipher, before.cipher);
        assert_eq!(
            e.config().handshake_try_interval,
            before.handshake_try_interval
        );
        assert_eq!(e.config().handshake_retries, before.handshake_retries);
        assert_ne!(before.handshake_try_interval, Duration::from_millis(900));
    }

    #[test]
    fn a_broken_config_is_refused_and_the_old_one_stays() {
        let f = Files::new();
        let plane = f.start();
        let broken: [(&str, &str, String); 3] = [
            (
                "firewall",
                "firewall",
                "\n  inbound: [{port: 6000, proto: bogus, host: any}]".into(),
            ),
            (
                "pki.cert",
                "pki",
                format!(
                    "\n  ca: {}\n  cert: {}\n  key: {}",
                    f.path("ca.crt"),
                    f.path("missing.crt"),
                    f.path("a.key")
                ),
            ),
            ("yaml", "static_host_map", "\n  - [unbalanced".into()),
        ];
        for (what, section, text) in broken {
            // Change a reloadable key too: none of it may be applied.
            let path = f.write_config(&[
                (section, text),
                ("preferred_ranges", " ['192.0.2.0/24']".into()),
            ]);
            let err = reload(
                &plane,
                Path::new(&path),
                now_unix(),
                &mut Outputs::default(),
            )
            .expect_err(what);
            if what != "yaml" {
                assert!(err.to_string().contains(what), "{what}: {err}");
            }
            let e = plane.lock();
            assert!(e.config().preferred_ranges.is_empty(), "{what}");
            assert_eq!(e.pki().cert(Version::V1).map(|c| c.name()), Some("a"));
            assert_eq!(f.inbound_verdict(&e, 5000), Verdict::Allow, "{what}");
            assert_eq!(
                f.inbound_verdict(&e, 6000),
                Verdict::Drop(DropReason::NoMatchingRule),
                "{what}"
            );
        }
    }
}
