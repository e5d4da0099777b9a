//! The smaller sections: `listen`, `punchy`, `cipher`, `relay`, `logging`, `stats`, `handshakes`,
//! `timers`, `counters`, `tunnels` and `sshd`, with Go 1.11's code defaults.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use super::error::{ConfigError, WarningKind};
use super::read::{scalar_string, shown, value_bool, Reader, MAX_DURATION, MAX_TIMER_INTERVAL};
use super::value::Value;

/// The longest `handshakes.try_interval` (the wait grows by it with every attempt).
const MAX_TRY_INTERVAL: Duration = Duration::from_secs(60);
/// The most `handshakes.retries`.
const MAX_HANDSHAKE_RETRIES: i64 = 1000;

/// `listen.send_recv_error` / `listen.accept_recv_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvErrorPolicy {
    /// `always` (default; also `true`).
    Always,
    /// `never` (also `false`).
    Never,
    /// `private`: only for private-range underlay addresses.
    Private,
}

/// The `listen` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenConfig {
    /// `listen.host` ("0.0.0.0"): an IP literal or a name the caller resolves.
    pub host: String,
    /// `listen.port` (0 = any free port).
    pub port: u16,
    /// `listen.batch` (64): datagrams per `recvmmsg`.
    pub batch: u32,
    /// `listen.read_buffer` (0 = system default).
    pub read_buffer: u32,
    /// `listen.write_buffer` (0 = system default).
    pub write_buffer: u32,
    /// `listen.send_recv_error` (always).
    pub send_recv_error: RecvErrorPolicy,
    /// `listen.accept_recv_error` (always, 1.10.1+).
    pub accept_recv_error: RecvErrorPolicy,
    /// `listen.so_mark` (0 = none).
    pub so_mark: u32,
    /// `listen.udp_offloads` (true, as upstream master): try UDP GSO/GRO on the socket.
    pub udp_offloads: bool,
}

impl ListenConfig {
    /// The listen address when `listen.host` is an IP literal (Go turns the old `[::]` advice
    /// into `::`); `None` means it is a name to resolve.
    pub fn host_ip(&self) -> Option<IpAddr> {
        if self.host == "[::]" {
            return Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        }
        IpAddr::from_str(&self.host)
            .ok()
            .map(|ip| ip.to_canonical())
    }

    pub(crate) fn parse(r: &Reader<'_>) -> Result<ListenConfig, ConfigError> {
        Ok(ListenConfig {
            host: r.string("listen.host", "0.0.0.0")?,
            port: r.int_in("listen.port", 0, 0, 65535)?,
            batch: r.int_in("listen.batch", 64, 1, 1 << 16)?,
            read_buffer: r.int_in("listen.read_buffer", 0, 0, i32::MAX as i64)?,
            write_buffer: r.int_in("listen.write_buffer", 0, 0, i32::MAX as i64)?,
            send_recv_error: recv_error(r, "listen.send_recv_error")?,
            accept_recv_error: recv_error(r, "listen.accept_recv_error")?,
            so_mark: r.int_in("listen.so_mark", 0, 0, u32::MAX as i64)?,
            udp_offloads: r.bool("listen.udp_offloads", true)?,
        })
    }
}

fn recv_error(r: &Reader<'_>, key: &str) -> Result<RecvErrorPolicy, ConfigError> {
    let Some(v) = r.get(key) else {
        return Ok(RecvErrorPolicy::Always);
    };
    match scalar_string(key, v)?.as_str() {
        "always" => Ok(RecvErrorPolicy::Always),
        "never" => Ok(RecvErrorPolicy::Never),
        "private" => Ok(RecvErrorPolicy::Private),
        _ => match value_bool(key, v) {
            Ok(true) => Ok(RecvErrorPolicy::Always),
            Ok(false) => Ok(RecvErrorPolicy::Never),
            Err(_) => Err(ConfigError::invalid(
                key,
                format!("expected always, never or private, got {}", shown(v)),
            )),
        },
    }
}

/// The `punchy` section (and the old `punchy: bool` / `punch_back` spellings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchyConfig {
    /// `punchy.punch` (false; falls back to the bool `punchy`).
    pub punch: bool,
    /// `punchy.respond` (false; falls back to `punch_back`).
    pub respond: bool,
    /// `punchy.delay` (1s).
    pub delay: Duration,
    /// `punchy.respond_delay` (5s).
    pub respond_delay: Duration,
    /// `punchy.target_all_remotes` (false).
    pub target_all_remotes: bool,
}

impl PunchyConfig {
    pub(crate) fn parse(r: &Reader<'_>) -> Result<PunchyConfig, ConfigError> {
        let punch = if r.is_set("punchy.punch") {
            r.bool("punchy.punch", false)?
        } else {
            match r.get("punchy") {
                Some(v) if v.is_scalar() => value_bool("punchy", v)?,
                _ => false,
            }
        };
        let respond = if r.is_set("punchy.respond") {
            r.bool("punchy.respond", false)?
        } else {
            r.bool("punch_back", false)?
        };
        Ok(PunchyConfig {
            punch,
            respond,
            delay: r.duration("punchy.delay", Duration::from_secs(1))?,
            respond_delay: r.duration("punchy.respond_delay", Duration::from_secs(5))?,
            target_all_remotes: r.bool("punchy.target_all_remotes", false)?,
        })
    }
}

/// `cipher`: the mesh-wide AEAD of the Noise sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// `aes` (default): AES-256-GCM.
    Aes,
    /// `chachapoly`: ChaCha20-Poly1305.
    ChaChaPoly,
}

pub(crate) fn parse_cipher(r: &Reader<'_>) -> Result<Cipher, ConfigError> {
    match r.string("cipher", "aes")?.as_str() {
        "aes" => Ok(Cipher::Aes),
        "chachapoly" => Ok(Cipher::ChaChaPoly),
        other => Err(ConfigError::invalid(
            "cipher",
            format!("unknown cipher {other:?} (expected aes or chachapoly)"),
        )),
    }
}

/// The `relay` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// `relay.relays`: VPN addresses that may relay for us (ignored when `am_relay`).
    pub relays: Vec<IpAddr>,
    /// `relay.am_relay` (false).
    pub am_relay: bool,
    /// `relay.use_relays` as written (true). See [`RelayConfig::use_relays`].
    pub use_relays_setting: bool,
}

impl RelayConfig {
    /// Whether we may reach peers through relays: `use_relays && !am_relay`.
    pub fn use_relays(&self) -> bool {
        self.use_relays_setting && !self.am_relay
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<RelayConfig, ConfigError> {
        let am_relay = r.bool("relay.am_relay", false)?;
        let raw = r.string_list("relay.relays")?;
        let mut relays = Vec::new();
        if am_relay {
            if !raw.is_empty() {
                r.warn(
                    "relay.relays",
                    WarningKind::IgnoredValue,
                    "ignoring relays from config because am_relay is true",
                );
            }
        } else {
            for (i, s) in raw.iter().enumerate() {
                match IpAddr::from_str(s) {
                    Ok(ip) => relays.push(ip),
                    Err(_) => r.warn(
                        format!("relay.relays[{i}]"),
                        WarningKind::IgnoredValue,
                        format!("{s:?} is not an IP address; ignored (as Go does)"),
                    ),
                }
            }
        }
        Ok(RelayConfig {
            relays,
            am_relay,
            use_relays_setting: r.bool("relay.use_relays", true)?,
        })
    }
}

/// `logging.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info` (default).
    Info,
    /// `warn` / `warning`.
    Warn,
    /// `error` (also `fatal` and `panic`, as in 1.11).
    Error,
}

/// `logging.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `text` (default).
    Text,
    /// `json`.
    Json,
}

/// The `logging` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// `logging.level` (info; case-insensitive).
    pub level: LogLevel,
    /// `logging.format` (text; case-insensitive).
    pub format: LogFormat,
    /// `logging.disable_timestamp` (false).
    pub disable_timestamp: bool,
}

impl LoggingConfig {
    pub(crate) fn parse(r: &Reader<'_>) -> Result<LoggingConfig, ConfigError> {
        let level = match r.string("logging.level", "info")?.to_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" | "fatal" | "panic" => LogLevel::Error,
            other => {
                return Err(ConfigError::invalid(
                    "logging.level",
                    format!("not a valid logging level: {other:?}"),
                ))
            }
        };
        let format = match r.string("logging.format", "text")?.to_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "logging.format",
                    format!("unknown log format {other:?}; possible formats: text, json"),
                ))
            }
        };
        Ok(LoggingConfig {
            level,
            format,
            disable_timestamp: r.bool("logging.disable_timestamp", false)?,
        })
    }
}

/// Where metrics go (`stats.type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsBackend {
    /// Unset, `""` or `none`.
    None,
    /// `graphite`.
    Graphite {
        /// `stats.protocol` (tcp).
        protocol: String,
        /// `stats.host` (required).
        host: String,
        /// `stats.prefix` (nebula).
        prefix: String,
    },
    /// `prometheus`.
    Prometheus {
        /// `stats.listen` (required).
        listen: String,
        /// `stats.path` (required).
        path: String,
        /// `stats.namespace` ("").
        namespace: String,
        /// `stats.subsystem` ("").
        subsystem: String,
    },
}

/// The `stats` section (parsed and checked like Go's `loadStatsConfig`; run by `crate::stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsConfig {
    /// The backend.
    pub backend: StatsBackend,
    /// `stats.interval` (required when a backend is set; also the stats emit cadence, 10s).
    pub interval: Duration,
    /// `stats.message_metrics` (false).
    pub message_metrics: bool,
    /// `stats.lighthouse_metrics` (false).
    pub lighthouse_metrics: bool,
    /// `stats.peer_metrics` (ours, 100): per-peer series for at most this many peers.
    pub peer_metrics: usize,
}

impl StatsConfig {
    pub(crate) fn parse(r: &Reader<'_>) -> Result<StatsConfig, ConfigError> {
        let typ = r.string("stats.type", "")?;
        let message_metrics = r.bool("stats.message_metrics", false)?;
        let lighthouse_metrics = r.bool("stats.lighthouse_metrics", false)?;
        let peer_metrics = super::control::parse_peer_metrics(r)?;
        if typ.is_empty() || typ == "none" {
            return Ok(StatsConfig {
                backend: StatsBackend::None,
                interval: r.duration("stats.interval", Duration::from_secs(10))?,
                message_metrics,
                lighthouse_metrics,
                peer_metrics,
            });
        }
        let interval = r.duration("stats.interval", Duration::ZERO)?;
        if interval.is_zero() {
            return Err(ConfigError::invalid(
                "stats.interval",
                "must be a positive duration when stats.type is set",
            ));
        }
        let required = |key: &str| -> Result<String, ConfigError> {
            let s = r.string(key, "")?;
            if s.is_empty() {
                return Err(ConfigError::invalid(key, "can not be empty"));
            }
            Ok(s)
        };
        let backend = match typ.as_str() {
            "graphite" => StatsBackend::Graphite {
                protocol: r.string("stats.protocol", "tcp")?,
                host: required("stats.host")?,
                prefix: r.string("stats.prefix", "nebula")?,
            },
            "prometheus" => StatsBackend::Prometheus {
                listen: required("stats.listen")?,
                path: required("stats.path")?,
                namespace: r.string("stats.namespace", "")?,
                subsystem: r.string("stats.subsystem", "")?,
            },
            other => {
                return Err(ConfigError::invalid(
                    "stats.type",
                    format!("was not understood: {other:?}"),
                ))
            }
        };
        Ok(StatsConfig {
            backend,
            interval,
            message_metrics,
            lighthouse_metrics,
            peer_metrics,
        })
    }
}

/// The `handshakes` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakesConfig {
    /// `handshakes.try_interval` (100ms): linear backoff step.
    pub try_interval: Duration,
    /// `handshakes.retries` (10).
    pub retries: u32,
    /// `handshakes.trigger_buffer` (64).
    pub trigger_buffer: u32,
    /// `handshakes.query_buffer` (64, 1.9+).
    pub query_buffer: u32,
}

impl HandshakesConfig {
    pub(crate) fn parse(r: &Reader<'_>) -> Result<HandshakesConfig, ConfigError> {
        Ok(HandshakesConfig {
            try_interval: r.duration_in(
                "handshakes.try_interval",
                Duration::from_millis(100),
                MAX_TRY_INTERVAL,
            )?,
            retries: r.int_in("handshakes.retries", 10, 0, MAX_HANDSHAKE_RETRIES)?,
            trigger_buffer: r.int_in("handshakes.trigger_buffer", 64, 0, i32::MAX as i64)?,
            query_buffer: r.int_in("handshakes.query_buffer", 64, 0, u32::MAX as i64)?,
        })
    }
}

/// The `timers` section (not in the example file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimersConfig {
    /// `timers.connection_alive_interval` in whole seconds (5).
    pub connection_alive_interval: Duration,
    /// `timers.pending_deletion_interval` in whole seconds (10).
    pub pending_deletion_interval: Duration,
    /// `timers.requery_wait_duration` (60s, 1.8+).
    pub requery_wait_duration: Duration,
}

impl TimersConfig {
    pub(crate) fn parse(r: &Reader<'_>) -> Result<TimersConfig, ConfigError> {
        Ok(TimersConfig {
            connection_alive_interval: r.seconds(
                "timers.connection_alive_interval",
                5,
                MAX_TIMER_INTERVAL,
            )?,
            pending_deletion_interval: r.seconds(
                "timers.pending_deletion_interval",
                10,
                MAX_TIMER_INTERVAL,
            )?,
            requery_wait_duration: r
                .duration("timers.requery_wait_duration", Duration::from_secs(60))?,
        })
    }
}

/// The `counters` section (1.8+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountersConfig {
    /// `counters.try_promote` (1000): packets between preferred-range probes.
    pub try_promote: u32,
    /// `counters.requery_every_packets` (5000): packets between lighthouse re-queries.
    pub requery_every_packets: u32,
}

impl CountersConfig {
    pub(crate) fn parse(r: &Reader<'_>) -> Result<CountersConfig, ConfigError> {
        Ok(CountersConfig {
            try_promote: r.int_in("counters.try_promote", 1000, 0, u32::MAX as i64)?,
            requery_every_packets: r.int_in(
                "counters.requery_every_packets",
                5000,
                0,
                u32::MAX as i64,
            )?,
        })
    }
}

/// The `tunnels` section (1.9.6+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelsConfig {
    /// `tunnels.drop_inactive` (false).
    pub drop_inactive: bool,
    /// `tunnels.inactivity_timeout` (10m, 1s..1y): a tunnel idle this long is closed. Checked at
    /// each connection check (`timers.connection_alive_interval`), so it fires up to one interval
    /// late.
    pub inactivity_timeout: Duration,
}

impl TunnelsConfig {
    pub(crate) fn parse(r: &Reader<'_>) -> Result<TunnelsConfig, ConfigError> {
        Ok(TunnelsConfig {
            drop_inactive: r.bool("tunnels.drop_inactive", false)?,
            inactivity_timeout: r.duration_between(
                "tunnels.inactivity_timeout",
                Duration::from_secs(600),
                Duration::from_secs(1),
                MAX_DURATION,
            )?,
        })
    }
}

/// One `sshd.authorized_users` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUser {
    /// `user`.
    pub user: String,
    /// `keys`: a list or a single string.
    pub keys: Vec<String>,
}

/// The `sshd` section: the debug SSH console (see [`crate::sshd`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdConfig {
    /// `sshd.enabled` (false).
    pub enabled: bool,
    /// `sshd.listen` ("").
    pub listen: String,
    /// `sshd.host_key` ("": path or inline key).
    pub host_key: String,
    /// `sshd.authorized_users`.
    pub authorized_users: Vec<SshUser>,
    /// `sshd.trusted_cas` (1.9+).
    pub trusted_cas: Vec<String>,
    /// `sshd.sandbox_dir` (1.11; `None` = Go's `$TMP/nebula-debug`).
    pub sandbox_dir: Option<String>,
}

impl SshdConfig {
    pub(crate) fn parse(r: &Reader<'_>) -> Result<SshdConfig, ConfigError> {
        let mut authorized_users = Vec::new();
        if let Some(list) = r.list("sshd.authorized_users")? {
            for (i, u) in list.iter().enumerate() {
                let key = format!("sshd.authorized_users[{i}]");
                let Value::Map(m) = u else {
                    return Err(ConfigError::invalid(
                        key,
                        "expected a map with user and keys",
                    ));
                };
                let user = match m.get("user") {
                    Some(v) if v.is_scalar() => v.go_string(),
                    _ => {
                        return Err(ConfigError::invalid(
                            format!("{key}.user"),
                            "is not present",
                        ))
                    }
                };
                let keys = match m.get("keys") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::List(l)) => l.iter().map(Value::go_string).collect(),
                    Some(v) => vec![v.go_string()],
                };
                authorized_users.push(SshUser { user, keys });
            }
        }
        Ok(SshdConfig {
            enabled: r.bool("sshd.enabled", false)?,
            listen: r.string("sshd.listen", "")?,
            host_key: r.string("sshd.host_key", "")?,
            authorized_users,
            trusted_cas: r.string_list("sshd.trusted_cas")?,
            sandbox_dir: match r.get("sshd.sandbox_dir") {
                None => None,
                Some(v) => Some(scalar_string("sshd.sandbox_dir", v)?),
            },
        })
    }
}
