//! The `firewall` section: conntrack timeouts, reject/drop actions and the inbound/outbound
//! rules kept as text ([`RawFirewallRule`]) for nebula-core's rule parser.

use std::time::Duration;

use super::error::{ConfigError, WarningKind};
use super::read::Reader;
use super::value::Value;

/// What to do with a packet no rule allows (`firewall.inbound_action` / `outbound_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallAction {
    /// `drop` (default): silently drop.
    Drop,
    /// `reject`: TCP RST, or ICMP administratively prohibited.
    Reject,
}

/// One rule as written, every field as Go's `%v` text: nebula-core's [`RuleConfig`], whose
/// parser makes Go's checks (proto known, port syntax, a selector present, `group` xor `groups`).
pub use nebula_core::firewall::RuleConfig as RawFirewallRule;

const RULE_KEYS: &[&str] = &[
    "port",
    "code",
    "proto",
    "host",
    "group",
    "groups",
    "cidr",
    "local_cidr",
    "ca_name",
    "ca_sha",
];

/// `firewall.conntrack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// `tcp_timeout` (12m).
    pub tcp_timeout: Duration,
    /// `udp_timeout` (3m).
    pub udp_timeout: Duration,
    /// `default_timeout` (10m).
    pub default_timeout: Duration,
    /// `routine_cache_timeout` as set (`None` = unset: 0, or 1s when `routines` > 1; see
    /// [`crate::config::Config::routine_cache_timeout`]; at most a year).
    ///
    /// Nothing to configure in our design: in Go each routine keeps a private cache of flows it
    /// already found in the one shared, locked conntrack map, so that most packets skip that
    /// lock, and this key says how long the cache lives. Our conntrack is split into
    /// independently locked shards by flow hash (`nebula_core::filter`), so workers rarely meet
    /// on a lock and there is no per-worker cache to expire. The value is parsed (a bad one is
    /// still an error) and logged at debug level at start-up.
    pub routine_cache_timeout: Option<Duration>,
    /// `max_entries` (ours, 131072; 1 to [`MAX_CONNTRACK_ENTRIES`]): most flows tracked at once;
    /// new flows past it are dropped. See nebula-core's `DEFAULT_CONNTRACK_MAX_ENTRIES`.
    pub max_entries: usize,
}

/// Upper bound of `firewall.conntrack.max_entries`: 16M flows is ~5 GB of conntrack at worst.
pub const MAX_CONNTRACK_ENTRIES: i64 = 1 << 24;

/// The `firewall` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfig {
    /// `firewall.conntrack.*`.
    pub conntrack: ConntrackConfig,
    /// `firewall.default_local_cidr_any` (false since 1.10; deprecated).
    pub default_local_cidr_any: bool,
    /// `firewall.inbound_action` (drop).
    pub inbound_action: FirewallAction,
    /// `firewall.outbound_action` (drop).
    pub outbound_action: FirewallAction,
    /// `firewall.inbound`.
    pub inbound: Vec<RawFirewallRule>,
    /// `firewall.outbound`.
    pub outbound: Vec<RawFirewallRule>,
}

impl FirewallConfig {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<FirewallConfig, ConfigError> {
        let conntrack = ConntrackConfig {
            tcp_timeout: r.duration("firewall.conntrack.tcp_timeout", Duration::from_secs(720))?,
            udp_timeout: r.duration("firewall.conntrack.udp_timeout", Duration::from_secs(180))?,
            default_timeout: r.duration(
                "firewall.conntrack.default_timeout",
                Duration::from_secs(600),
            )?,
            routine_cache_timeout: if r.is_set("firewall.conntrack.routine_cache_timeout") {
                Some(r.duration("firewall.conntrack.routine_cache_timeout", Duration::ZERO)?)
            } else {
                None
            },
            max_entries: r.int_in(
                "firewall.conntrack.max_entries",
                nebula_core::firewall::DEFAULT_CONNTRACK_MAX_ENTRIES,
                1,
                MAX_CONNTRACK_ENTRIES,
            )?,
        };
        let default_local_cidr_any = r.bool("firewall.default_local_cidr_any", false)?;
        let inbound_action = action(r, "firewall.inbound_action")?;
        let outbound_action = action(r, "firewall.outbound_action")?;
        let inbound = rules(r, "firewall.inbound")?;
        let outbound = rules(r, "firewall.outbound")?;
        Ok(FirewallConfig {
            conntrack,
            default_local_cidr_any,
            inbound_action,
            outbound_action,
            inbound,
            outbound,
        })
    }
}

fn action(r: &mut Reader<'_>, key: &str) -> Result<FirewallAction, ConfigError> {
    match r.string(key, "drop")?.as_str() {
        "drop" => Ok(FirewallAction::Drop),
        "reject" => Ok(FirewallAction::Reject),
        other => {
            r.warn(
                key,
                WarningKind::IgnoredValue,
                format!("invalid action {other:?}, defaulting to drop (as Go does)"),
            );
            Ok(FirewallAction::Drop)
        }
    }
}

fn rules(r: &mut Reader<'_>, table: &str) -> Result<Vec<RawFirewallRule>, ConfigError> {
    let Some(items) = r.get(table) else {
        return Ok(Vec::new());
    };
    let Value::List(items) = items else {
        return Err(ConfigError::invalid(
            table,
            "failed to parse, should be an array of rules",
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = format!("{table}[{i}]");
        let Value::Map(m) = item else {
            return Err(ConfigError::invalid(
                key,
                "could not parse rule (expected a map)",
            ));
        };
        for k in m.keys() {
            if !RULE_KEYS.contains(&k.as_str()) {
                r.warn(
                    format!("{key}.{k}"),
                    WarningKind::UnknownKey,
                    "unknown rule key, ignored (Go Nebula ignores it too)",
                );
            }
        }
        // Go's toString: a present key is `%v` of its value (so `host:` with nothing gives "<nil>").
        let text = |k: &str| m.get(k).map(Value::go_string);
        let group = match m.get("group") {
            Some(Value::List(l)) if l.len() > 1 => {
                return Err(ConfigError::invalid(
                    format!("{key}.group"),
                    "group should contain a single value, an array with more than one entry was provided",
                ))
            }
            Some(Value::List(l)) => {
                r.warn(
                    format!("{key}.group"),
                    WarningKind::Advice,
                    "group was an array with a single value, converting to simple value",
                );
                l.first().map(Value::go_string)
            }
            other => other.map(Value::go_string),
        };
        let groups = match m.get("groups") {
            None => None,
            Some(Value::List(l)) => Some(l.iter().map(Value::go_string).collect()),
            Some(other) => Some(vec![other.go_string()]),
        };
        out.push(RawFirewallRule {
            port: text("port"),
            code: text("code"),
            proto: text("proto"),
            host: text("host"),
            group,
            groups,
            cidr: text("cidr"),
            local_cidr: text("local_cidr"),
            ca_name: text("ca_name"),
            ca_sha: text("ca_sha"),
        });
    }
    Ok(out)
}
