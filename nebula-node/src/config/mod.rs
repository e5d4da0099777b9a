//! The nebula config file: YAML loaded from a file or a directory and merged as Go Nebula does,
//! kept as a generic tree (for reload diffs and key warnings) and read into a typed [`Config`].
//!
//! Defaults are Go Nebula 1.11's **code** defaults (PROTOCOL.md §10), which sometimes differ from
//! the values shown in `examples/config.yml`. Where Go silently replaces a malformed value by
//! the default (`tun.mtu: abc` → 1300), we refuse the config with an error naming the key.
//! Go ignores unknown keys silently; we accept them with a warning (see [`keys`]).
//!
//! YAML is parsed with `serde_norway`, the maintained fork of `serde_yaml` (which is deprecated),
//! built on a maintained libyaml port; it follows YAML 1.2 scalars like Go's yaml.v3 does.

mod control;
mod error;
pub mod files;
mod firewall;
pub mod keys;
mod lighthouse;
mod misc;
mod pki;
mod read;
mod tun;
pub mod value;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

pub use control::{ControlConfig, DEFAULT_CONTROL_SOCKET};
pub use error::{ConfigError, ConfigWarning, WarningKind};
pub use firewall::{ConntrackConfig, FirewallAction, FirewallConfig, RawFirewallRule};
pub use keys::{known_key, KeyStatus, KnownKey, Shape, KNOWN_KEYS};
pub use lighthouse::{
    AllowList, CalculatedRemote, HostPort, InterfaceRule, LighthouseConfig, LocalAllowList,
    LookupNetwork, RemoteAllowList, StaticHost, StaticMapConfig,
};
pub use misc::{
    Cipher, CountersConfig, HandshakesConfig, ListenConfig, LogFormat, LogLevel, LoggingConfig,
    PunchyConfig, RecvErrorPolicy, RelayConfig, SshUser, SshdConfig, StatsBackend, StatsConfig,
    TimersConfig, TunnelsConfig,
};
pub use pki::{KeySource, PemSource, PkiBytes, PkiConfig};
pub use tun::{
    Gateway, SystemRoute, TunConfig, TunRouteConfig, UnsafeRouteConfig, DEFAULT_MTU,
    DEFAULT_TX_QUEUE, MIN_ROUTE_MTU,
};
pub use value::{changed, Map, Value};

use read::Reader;

/// Go 1.11's cap on `routines` (`maxRoutines`).
pub const MAX_ROUTINES: usize = 1 << 16;

/// The whole config, typed, with code defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `pki.*`.
    pub pki: PkiConfig,
    /// `static_host_map`, sorted by key text.
    pub static_host_map: Vec<StaticHost>,
    /// `static_map.*`.
    pub static_map: StaticMapConfig,
    /// `lighthouse.*`.
    pub lighthouse: LighthouseConfig,
    /// `listen.*`.
    pub listen: ListenConfig,
    /// `punchy.*` (+ `punchy`, `punch_back`).
    pub punchy: PunchyConfig,
    /// `cipher`.
    pub cipher: Cipher,
    /// `preferred_ranges` (invalid entries skipped with a warning, as 1.11 does), plus the
    /// deprecated `local_range` when set and not already listed.
    pub preferred_ranges: Vec<IpNet>,
    /// `relay.*`.
    pub relay: RelayConfig,
    /// `tun.*`.
    pub tun: TunConfig,
    /// Worker count: `routines` (or the deprecated max of `tun.routines`/`listen.routines`),
    /// at least 1, at most [`MAX_ROUTINES`].
    pub routines: usize,
    /// `logging.*`.
    pub logging: LoggingConfig,
    /// `stats.*`.
    pub stats: StatsConfig,
    /// `handshakes.*`.
    pub handshakes: HandshakesConfig,
    /// `timers.*`.
    pub timers: TimersConfig,
    /// `counters.*`.
    pub counters: CountersConfig,
    /// `tunnels.*`.
    pub tunnels: TunnelsConfig,
    /// `sshd.*` (the debug console).
    pub sshd: SshdConfig,
    /// `control.*` (ours): the local control API.
    pub control: ControlConfig,
    /// `firewall.*`.
    pub firewall: FirewallConfig,
}

/// A loaded config: the typed view, the merged raw tree and what was remarked on the way.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The typed config.
    pub config: Config,
    /// The merged tree, for reload diffs ([`changed`]) and keys the typed view does not carry.
    pub raw: Value,
    /// Warnings (unknown keys, unimplemented keys, deprecated spellings, ignored values, merge
    /// quirks), in a stable order.
    pub warnings: Vec<ConfigWarning>,
    /// The files read, in merge order (empty for [`Config::from_str`]).
    pub files: Vec<PathBuf>,
}

impl Config {
    /// Loads a config file, or every `*.yml`/`*.yaml` under a directory merged in Go's order
    /// (see [`files`]). Nothing named by `pki.*` is read yet: see [`PkiConfig::load`].
    pub fn load(path: impl AsRef<Path>) -> Result<LoadedConfig, ConfigError> {
        let path = path.as_ref();
        let files = files::config_files(path)?;
        if files.is_empty() {
            return Err(ConfigError::NoFiles(path.to_path_buf()));
        }
        let (raw, merge_warnings) = files::load_files(&files)?;
        let (config, mut warnings) = Config::from_value(&raw)?;
        let mut all = merge_warnings;
        all.append(&mut warnings);
        Ok(LoadedConfig {
            config,
            raw,
            warnings: all,
            files,
        })
    }

    /// Loads config text (Go's `LoadString`; empty text is an error).
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str) -> Result<LoadedConfig, ConfigError> {
        if text.is_empty() {
            return Err(ConfigError::Empty);
        }
        let raw = Value::from_yaml(text, None)?;
        let (config, warnings) = Config::from_value(&raw)?;
        Ok(LoadedConfig {
            config,
            raw,
            warnings,
            files: Vec::new(),
        })
    }

    /// Reads the typed config out of a (merged) tree. Returns the key warnings too.
    pub fn from_value(raw: &Value) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let mut r = Reader::new(raw);
        let pki = PkiConfig::parse(&mut r)?;
        let static_host_map = lighthouse::parse_static_host_map(&r)?;
        let static_map = lighthouse::parse_static_map(&r)?;
        let lighthouse = LighthouseConfig::parse(&mut r, &static_host_map)?;
        let listen = ListenConfig::parse(&r)?;
        if lighthouse.am_lighthouse && listen.port == 0 {
            return Err(ConfigError::invalid(
                "listen.port",
                "lighthouse.am_lighthouse enabled on node but no port number is set in config",
            ));
        }
        let punchy = PunchyConfig::parse(&r)?;
        let cipher = misc::parse_cipher(&r)?;
        let preferred_ranges = parse_preferred_ranges(&mut r)?;
        let relay = RelayConfig::parse(&mut r)?;
        let tun = TunConfig::parse(&mut r)?;
        let routines = parse_routines(&mut r)?;
        let logging = LoggingConfig::parse(&r)?;
        let stats = StatsConfig::parse(&r)?;
        let handshakes = HandshakesConfig::parse(&r)?;
        let timers = TimersConfig::parse(&r)?;
        let counters = CountersConfig::parse(&r)?;
        let tunnels = TunnelsConfig::parse(&r)?;
        let sshd = SshdConfig::parse(&r)?;
        let control = ControlConfig::parse(&r)?;
        let firewall = FirewallConfig::parse(&mut r)?;

        let mut warnings = keys::key_warnings(raw);
        warnings.append(&mut r.warnings);
        Ok((
            Config {
                pki,
                static_host_map,
                static_map,
                lighthouse,
                listen,
                punchy,
                cipher,
                preferred_ranges,
                relay,
                tun,
                routines,
                logging,
                stats,
                handshakes,
                timers,
                counters,
                tunnels,
                sshd,
                control,
                firewall,
            },
            warnings,
        ))
    }

    /// The checks that need our certificate's VPN networks, made once the certificate is
    /// loaded: `tun.routes` inside and `tun.unsafe_routes` outside them are errors (as in Go);
    /// `static_host_map` keys and `lighthouse.hosts` outside them are warnings (1.11 warns,
    /// 1.6.1 refused the config).
    pub fn check_networks(&self, networks: &[IpNet]) -> Result<Vec<ConfigWarning>, ConfigError> {
        self.tun.check_networks(networks)?;
        let inside = |ip: &IpAddr| networks.iter().any(|n| n.contains(ip));
        let mut out = Vec::new();
        for h in &self.static_host_map {
            if !inside(&h.vpn_addr) {
                out.push(ConfigWarning::new(
                    format!("static_host_map.{:?}", h.vpn_addr.to_string()),
                    WarningKind::Advice,
                    format!(
                        "{} is not inside our VPN networks; layer 3 traffic to this host will not work",
                        h.vpn_addr
                    ),
                ));
            }
        }
        for (i, h) in self.lighthouse.hosts.iter().enumerate() {
            if !inside(h) {
                out.push(ConfigWarning::new(
                    format!("lighthouse.hosts[{i}]"),
                    WarningKind::Advice,
                    format!(
                        "lighthouse {h} is not inside our VPN networks; lighthouse functionality \
                         will work but layer 3 traffic to it will not"
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// `firewall.conntrack.routine_cache_timeout` as Go applies it: the value when set, else
    /// 1s with more than one routine, else 0 (off).
    pub fn routine_cache_timeout(&self) -> Duration {
        match self.firewall.conntrack.routine_cache_timeout {
            Some(d) => d,
            None if self.routines > 1 => Duration::from_secs(1),
            None => Duration::ZERO,
        }
    }
}

fn parse_preferred_ranges(r: &mut Reader<'_>) -> Result<Vec<IpNet>, ConfigError> {
    let mut out = Vec::new();
    for (i, s) in r.string_list("preferred_ranges")?.iter().enumerate() {
        match IpNet::from_str(s) {
            Ok(n) => out.push(n),
            Err(_) => r.warn(
                format!("preferred_ranges[{i}]"),
                WarningKind::IgnoredValue,
                format!("{s:?} is not a CIDR; ignored (as Go 1.11 does)"),
            ),
        }
    }
    let local = r.string("local_range", "")?;
    if !local.is_empty() {
        match IpNet::from_str(&local) {
            Ok(n) => {
                let n = n.trunc();
                if !out.iter().any(|p| p.trunc() == n) {
                    out.push(n);
                }
            }
            Err(_) => {
                return Err(ConfigError::invalid(
                    "local_range",
                    format!("{local:?} is not a CIDR"),
                ))
            }
        }
    }
    Ok(out)
}

fn parse_routines(r: &mut Reader<'_>) -> Result<usize, ConfigError> {
    let n = r.int("routines", 0)?;
    let n = if n != 0 {
        n.max(1)
    } else {
        let tun = r.int("tun.routines", 1)?;
        let listen = r.int("listen.routines", 1)?;
        tun.max(listen).max(1)
    };
    if n > MAX_ROUTINES as i64 {
        r.warn(
            "routines",
            WarningKind::IgnoredValue,
            format!("{n} is more than {MAX_ROUTINES}; clamped"),
        );
        return Ok(MAX_ROUTINES);
    }
    Ok(usize::try_from(n).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "pki: {ca: /ca.crt, cert: /host.crt, key: /host.key}\n";

    fn load(extra: &str) -> Result<LoadedConfig, ConfigError> {
        Config::from_str(&format!("{MIN}{extra}"))
    }

    #[test]
    fn minimal_config_gets_code_defaults() {
        let c = load("").unwrap().config;
        assert_eq!(c.tun.mtu, 1300);
        assert_eq!(c.tun.tx_queue, 500);
        assert_eq!(c.lighthouse.interval, Duration::from_secs(10));
        assert_eq!(c.handshakes.try_interval, Duration::from_millis(100));
        assert_eq!(c.handshakes.retries, 10);
        assert!(c.pki.disconnect_invalid);
        assert_eq!(c.cipher, Cipher::Aes);
        assert_eq!(c.routines, 1);
        assert_eq!(c.routine_cache_timeout(), Duration::ZERO);
        assert_eq!(c.pki.ca, PemSource::Path("/ca.crt".into()));
    }

    #[test]
    fn routines_and_cache_timeout() {
        let c = load("routines: 4\n").unwrap().config;
        assert_eq!(c.routines, 4);
        assert_eq!(c.routine_cache_timeout(), Duration::from_secs(1));
        let c = load("routines: -3\n").unwrap().config;
        assert_eq!(c.routines, 1);
        let l = load("tun: {routines: 3}\nlisten: {routines: 2}\n").unwrap();
        assert_eq!(l.config.routines, 3);
        assert!(l
            .warnings
            .iter()
            .any(|w| w.key == "tun.routines" && w.kind == WarningKind::Deprecated));
        let c = load("routines: 2\nfirewall: {conntrack: {routine_cache_timeout: 0}}\n")
            .unwrap()
            .config;
        assert_eq!(c.routine_cache_timeout(), Duration::ZERO);
    }

    #[test]
    fn conntrack_max_entries_default_and_set() {
        let c = load("").unwrap().config;
        assert_eq!(
            c.firewall.conntrack.max_entries,
            nebula_core::firewall::DEFAULT_CONNTRACK_MAX_ENTRIES
        );
        let l = load("firewall: {conntrack: {max_entries: 5000}}\n").unwrap();
        assert_eq!(l.config.firewall.conntrack.max_entries, 5000);
        assert!(
            !l.warnings.iter().any(|w| w.key.contains("max_entries")),
            "a known key, not warned about: {:?}",
            l.warnings
        );
    }

    #[test]
    fn preferred_ranges_and_local_range() {
        let l = load("preferred_ranges: [\"172.16.0.0/24\", bogus]\nlocal_range: 10.0.0.0/8\n")
            .unwrap();
        assert_eq!(
            l.config.preferred_ranges,
            [
                "172.16.0.0/24".parse::<IpNet>().unwrap(),
                "10.0.0.0/8".parse().unwrap()
            ]
        );
        assert!(l.warnings.iter().any(|w| w.key == "preferred_ranges[1]"));
        assert!(l.warnings.iter().any(|w| w.key == "local_range"));
    }

    #[test]
    fn pki_inline_and_missing() {
        let c = Config::from_str(
            "pki:\n  ca: |\n    -----BEGIN NEBULA CERTIFICATE-----\n    x\n  cert: c\n  key: \"pkcs11:token=x\"\n",
        )
        .unwrap()
        .config;
        assert!(matches!(c.pki.ca, PemSource::Inline(ref s) if s.starts_with("-----BEGIN")));
        assert!(matches!(c.pki.key, KeySource::Pkcs11(_)));
        assert!(c.pki.key.load().is_err());
        let e = Config::from_str("pki: {ca: a, cert: b}\n").unwrap_err();
        assert_eq!(e.key(), Some("pki.key"));
        assert!(matches!(Config::from_str(""), Err(ConfigError::Empty)));
        let e = load("pki: {initiating_version: 3}\n").unwrap_err();
        assert!(e.to_string().contains("pki"), "{e}");
    }

    #[test]
    fn punchy_old_forms() {
        let c = load("punchy: true\npunch_back: true\n").unwrap().config;
        assert!(c.punchy.punch && c.punchy.respond);
        let c = load("punchy: {punch: false}\npunch_back: true\n")
            .unwrap()
            .config;
        assert!(!c.punchy.punch && c.punchy.respond);
        let c = load("punchy: {respond: false, delay: 2s}\npunch_back: true\n")
            .unwrap()
            .config;
        assert!(!c.punchy.respond);
        assert_eq!(c.punchy.delay, Duration::from_secs(2));
    }

    #[test]
    fn check_networks_rules() {
        let c = load(
            "static_host_map: {\"10.1.0.1\": [\"1.2.3.4:4242\"], \"192.168.9.9\": [\"1.2.3.5:4242\"]}\n\
             lighthouse: {hosts: [\"10.1.0.1\"]}\n\
             tun:\n  routes: [{route: 10.1.2.0/24, mtu: 8800}]\n  unsafe_routes: [{route: 172.16.0.0/24, via: 10.1.0.9}]\n",
        )
        .unwrap()
        .config;
        let nets: Vec<IpNet> = vec!["10.1.0.0/16".parse().unwrap()];
        let w = c.check_networks(&nets).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("192.168.9.9"));
        let e = c
            .check_networks(&["10.2.0.0/16".parse().unwrap()])
            .unwrap_err();
        assert_eq!(e.key(), Some("tun.routes[0].route"));
        let e = c
            .check_networks(&["172.16.0.0/12".parse().unwrap(), nets[0]])
            .unwrap_err();
        assert_eq!(e.key(), Some("tun.unsafe_routes[0].route"));
        assert_eq!(c.tun.max_mtu(), 8800);
    }
}
