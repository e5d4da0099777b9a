//! The `static_host_map`, `static_map` and `lighthouse` sections: static underlay addresses
//! (DNS names kept as text for the caller to resolve), lighthouse hosts and cadence, allow lists
//! (`allow_list.go`), advertised addresses and calculated remotes (`calculated_remote.go`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use super::error::{ConfigError, WarningKind};
use super::read::{atoi, shown, Reader, MAX_TIMER_INTERVAL};
use super::value::{Map, Value};

/// An underlay `host:port` as written: `host` is an IP literal or a DNS name the caller
/// resolves (Go re-resolves names every `static_map.cadence`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The host part, without IPv6 brackets.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl HostPort {
    /// Splits `host:port` / `[v6]:port` like Go's `net.SplitHostPort` + `strconv.Atoi`.
    pub fn parse(s: &str) -> Result<HostPort, String> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest
                .find(']')
                .ok_or_else(|| format!("missing ']' in address {s:?}"))?;
            let host = &rest[..end];
            let after = &rest[end + 1..];
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| format!("missing port in address {s:?}"))?;
            (host, port)
        } else {
            let i = s
                .rfind(':')
                .ok_or_else(|| format!("missing port in address {s:?}"))?;
            let host = &s[..i];
            if host.contains(':') {
                return Err(format!("too many colons in address {s:?}"));
            }
            (host, &s[i + 1..])
        };
        if host.contains(['[', ']']) || port.contains(['[', ']']) {
            return Err(format!("unexpected bracket in address {s:?}"));
        }
        let port = atoi(port)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("invalid port {port:?} in address {s:?}"))?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }

    /// The host as an IP address, when it is a literal (IPv4-mapped IPv6 unmapped).
    pub fn ip(&self) -> Option<IpAddr> {
        IpAddr::from_str(&self.host)
            .ok()
            .map(|ip| ip.to_canonical())
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One `static_host_map` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticHost {
    /// The VPN address (the key).
    pub vpn_addr: IpAddr,
    /// Its underlay addresses, in config order.
    pub remotes: Vec<HostPort>,
}

/// Which addresses to ask DNS for (`static_map.network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupNetwork {
    /// `ip4` (default): A records only.
    Ip4,
    /// `ip6`: AAAA records only.
    Ip6,
    /// `ip`: both.
    Ip,
}

/// The shortest `static_map.cadence`: Go panics on zero (its ticker), and resolving names more
/// than once a second is a load on the resolver, not fresher addresses.
pub const MIN_STATIC_MAP_CADENCE: Duration = Duration::from_secs(1);
/// The longest `static_map.lookup_timeout`: a resolver that needs longer is down.
pub const MAX_LOOKUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The `static_map` section (1.7+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMapConfig {
    /// `static_map.cadence` (30s, 1s..1d): how often DNS names are re-resolved.
    pub cadence: Duration,
    /// `static_map.network` (ip4).
    pub network: LookupNetwork,
    /// `static_map.lookup_timeout` (250ms, 1ms..1m): the longest wait for one name's answer.
    pub lookup_timeout: Duration,
}

/// A CIDR allow list (`allow_list.go`) as the engine uses it: the rules as written (sorted by key
/// text) plus the per-family default Go adds (the inverse of the rules when they all agree).
pub use nebula_core::remotes::AllowList;
/// `lighthouse.remote_allow_list` + `lighthouse.remote_allow_ranges`, as the engine uses it.
pub use nebula_core::remotes::RemoteAllowList;

/// Parse the allow list under `key`; `skip` passes over entries that are not CIDRs (the
/// `interfaces` map of `local_allow_list`).
fn parse_allow_list(
    key: &str,
    map: &Map,
    mut skip: impl FnMut(&str, &Value) -> Result<bool, ConfigError>,
) -> Result<AllowList, ConfigError> {
    #[derive(Default)]
    struct Family {
        first: Option<bool>,
        all_match: bool,
        default_set: bool,
    }
    let mut v4 = Family {
        all_match: true,
        ..Family::default()
    };
    let mut v6 = Family {
        all_match: true,
        ..Family::default()
    };
    let mut rules = Vec::new();
    for (cidr, raw) in map {
        if skip(cidr, raw)? {
            continue;
        }
        let allow = as_bool(raw).ok_or_else(|| {
            ConfigError::invalid(
                format!("{key}.{cidr}"),
                format!("expected true or false, got {}", shown(raw)),
            )
        })?;
        let net = IpNet::from_str(cidr).map_err(|_| {
            ConfigError::invalid(format!("{key}.{cidr}"), format!("invalid CIDR {cidr:?}"))
        })?;
        let fam = if net.addr().to_canonical().is_ipv4() {
            &mut v4
        } else {
            &mut v6
        };
        match fam.first {
            None => fam.first = Some(allow),
            Some(f) if f != allow => fam.all_match = false,
            Some(_) => {}
        }
        if net.prefix_len() == 0 {
            fam.default_set = true;
        }
        rules.push((net, allow));
    }
    for (fam, any, name) in [(&v4, "0.0.0.0/0", "0.0.0.0/0"), (&v6, "::/0", "::/0")] {
        if fam.default_set {
            continue;
        }
        if !fam.all_match {
            return Err(ConfigError::invalid(
                key,
                format!("contains both true and false rules, but no default set for {name}"),
            ));
        }
        let default = !fam.first.unwrap_or(false);
        if let Ok(net) = IpNet::from_str(any) {
            rules.push((net, default));
        }
    }
    Ok(AllowList { rules })
}

/// Go's `config.AsBool`: a YAML bool, or the strings y/yes/n/no.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "y" | "yes" => Some(true),
            "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// An interface-name rule of `lighthouse.local_allow_list.interfaces` (anchored regex).
#[derive(Debug, Clone)]
pub struct InterfaceRule {
    /// The pattern as written.
    pub pattern: String,
    /// `^pattern$`, compiled.
    pub regex: regex::Regex,
    /// Allow or deny.
    pub allow: bool,
}

impl PartialEq for InterfaceRule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.allow == other.allow
    }
}
impl Eq for InterfaceRule {}

/// `lighthouse.local_allow_list`: which of our own addresses we report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAllowList {
    /// CIDR rules (with Go's implied defaults).
    pub cidrs: AllowList,
    /// Interface name rules; all have the same `allow`, the default is its inverse.
    pub interfaces: Vec<InterfaceRule>,
}

impl LocalAllowList {
    /// Whether addresses of interface `name` may be reported (checked before the CIDR rules).
    pub fn allows_interface(&self, name: &str) -> bool {
        match self.interfaces.first() {
            None => true,
            Some(first) => self
                .interfaces
                .iter()
                .find(|r| r.regex.is_match(name))
                .map(|r| r.allow)
                .unwrap_or(!first.allow),
        }
    }

    /// Whether address `ip` may be reported.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.cidrs.allows(ip)
    }
}

/// One `lighthouse.calculated_remotes` entry, as the engine uses it.
pub use nebula_core::remotes::CalculatedRemote;

/// The `lighthouse` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LighthouseConfig {
    /// `lighthouse.am_lighthouse` (false).
    pub am_lighthouse: bool,
    /// `lighthouse.serve_dns` (false; only honoured on a lighthouse).
    pub serve_dns: bool,
    /// `lighthouse.dns.host` ("", trimmed; `[::]` is taken as `::`).
    pub dns_host: String,
    /// `lighthouse.dns.port` (53).
    pub dns_port: u16,
    /// `lighthouse.interval` in whole seconds (code default 10; the example file says 60;
    /// 0 = never send updates).
    pub interval: Duration,
    /// `lighthouse.hosts`: VPN addresses of the lighthouses.
    pub hosts: Vec<IpAddr>,
    /// `lighthouse.remote_allow_list` / `remote_allow_ranges`.
    pub remote_allow_list: RemoteAllowList,
    /// `lighthouse.local_allow_list`; `None` = report every address.
    pub local_allow_list: Option<LocalAllowList>,
    /// `lighthouse.advertise_addrs` (port 0 = our listen port; names resolved by the caller).
    pub advertise_addrs: Vec<HostPort>,
    /// `lighthouse.calculated_remotes`.
    pub calculated_remotes: Vec<CalculatedRemote>,
}

pub(crate) fn parse_static_host_map(r: &Reader<'_>) -> Result<Vec<StaticHost>, ConfigError> {
    let Some(map) = r.map("static_host_map")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let key = format!("static_host_map.{k:?}");
        let vpn_addr = IpAddr::from_str(k)
            .map_err(|_| ConfigError::invalid(&key, format!("{k:?} is not a VPN IP address")))?;
        let values: Vec<&Value> = match v {
            Value::List(items) => items.iter().collect(),
            Value::Null => Vec::new(),
            other => vec![other],
        };
        let mut remotes = Vec::with_capacity(values.len());
        for (i, item) in values.into_iter().enumerate() {
            if !item.is_scalar() {
                return Err(ConfigError::invalid(
                    format!("{key}[{i}]"),
                    format!("expected \"host:port\", got {}", item.kind_name()),
                ));
            }
            let text = item.go_string();
            remotes.push(
                HostPort::parse(&text)
                    .map_err(|e| ConfigError::invalid(format!("{key}[{i}]"), e))?,
            );
        }
        out.push(StaticHost { vpn_addr, remotes });
    }
    Ok(out)
}

pub(crate) fn parse_static_map(r: &Reader<'_>) -> Result<StaticMapConfig, ConfigError> {
    let network = match r.string("static_map.network", "ip4")?.as_str() {
        "ip4" => LookupNetwork::Ip4,
        "ip6" => LookupNetwork::Ip6,
        "ip" => LookupNetwork::Ip,
        other => {
            return Err(ConfigError::invalid(
                "static_map.network",
                format!("must be one of ip, ip4 or ip6, got {other:?}"),
            ))
        }
    };
    Ok(StaticMapConfig {
        cadence: r.duration_between(
            "static_map.cadence",
            Duration::from_secs(30),
            MIN_STATIC_MAP_CADENCE,
            MAX_TIMER_INTERVAL,
        )?,
        network,
        lookup_timeout: r.duration_between(
            "static_map.lookup_timeout",
            Duration::from_millis(250),
            Duration::from_millis(1),
            MAX_LOOKUP_TIMEOUT,
        )?,
    })
}

impl LighthouseConfig {
    pub(crate) fn parse(
        r: &mut Reader<'_>,
        static_hosts: &[StaticHost],
    ) -> Result<LighthouseConfig, ConfigError> {
        let am_lighthouse = r.bool("lighthouse.am_lighthouse", false)?;
        let serve_dns = r.bool("lighthouse.serve_dns", false)?;
        if serve_dns && !am_lighthouse {
            r.warn(
                "lighthouse.serve_dns",
                WarningKind::Advice,
                "DNS server refusing to run because this host is not a lighthouse",
            );
        }
        let mut dns_host = r.string("lighthouse.dns.host", "")?.trim().to_string();
        // Go's old examples said `[::]`, which does not resolve: Go takes it as `::`.
        if dns_host == "[::]" {
            dns_host = "::".into();
        }
        let dns_port: u16 = r.int_in("lighthouse.dns.port", 53, 0, 65535)?;
        let interval = r.seconds("lighthouse.interval", 10, MAX_TIMER_INTERVAL)?;

        let mut hosts = Vec::new();
        for (i, h) in r.string_list("lighthouse.hosts")?.iter().enumerate() {
            let ip = IpAddr::from_str(h).map_err(|_| {
                ConfigError::invalid(
                    format!("lighthouse.hosts[{i}]"),
                    format!("{h:?} is not a VPN IP address"),
                )
            })?;
            if !static_hosts.iter().any(|s| s.vpn_addr == ip) {
                return Err(ConfigError::invalid(
                    format!("lighthouse.hosts[{i}]"),
                    format!("lighthouse {ip} does not have a static_host_map entry"),
                ));
            }
            hosts.push(ip);
        }
        if am_lighthouse && !hosts.is_empty() {
            r.warn(
                "lighthouse.hosts",
                WarningKind::Advice,
                "lighthouse.am_lighthouse enabled on node but upstream lighthouses exist in config",
            );
        }
        if !am_lighthouse && hosts.is_empty() {
            r.warn(
                "lighthouse.hosts",
                WarningKind::Advice,
                "no lighthouse.hosts configured, this host will only be able to initiate tunnels \
                 with static_host_map entries",
            );
        }

        let base = match r.map("lighthouse.remote_allow_list")? {
            None => None,
            Some(m) => Some(parse_allow_list(
                "lighthouse.remote_allow_list",
                m,
                |_, _| Ok(false),
            )?),
        };
        let mut ranges = Vec::new();
        if let Some(m) = r.map("lighthouse.remote_allow_ranges")? {
            for (cidr, inner) in m {
                let key = format!("lighthouse.remote_allow_ranges.{cidr}");
                let Value::Map(inner) = inner else {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "expected a map of CIDR: true/false, got {}",
                            inner.kind_name()
                        ),
                    ));
                };
                let list = parse_allow_list(&key, inner, |_, _| Ok(false))?;
                let net = IpNet::from_str(cidr)
                    .map_err(|_| ConfigError::invalid(&key, format!("invalid CIDR {cidr:?}")))?;
                ranges.push((net, list));
            }
        }

        let local_allow_list = match r.map("lighthouse.local_allow_list")? {
            None => None,
            Some(m) => {
                let mut interfaces = Vec::new();
                let cidrs = parse_allow_list("lighthouse.local_allow_list", m, |k, v| {
                    if k != "interfaces" {
                        return Ok(false);
                    }
                    interfaces = parse_interfaces(v)?;
                    Ok(true)
                })?;
                Some(LocalAllowList { cidrs, interfaces })
            }
        };

        let mut advertise_addrs = Vec::new();
        for (i, a) in r
            .string_list("lighthouse.advertise_addrs")?
            .iter()
            .enumerate()
        {
            advertise_addrs.push(HostPort::parse(a).map_err(|e| {
                ConfigError::invalid(format!("lighthouse.advertise_addrs[{i}]"), e)
            })?);
        }

        let calculated_remotes = parse_calculated_remotes(r)?;

        Ok(LighthouseConfig {
            am_lighthouse,
            serve_dns,
            dns_host,
            dns_port,
            interval,
            hosts,
            remote_allow_list: RemoteAllowList { base, ranges },
            local_allow_list,
            advertise_addrs,
            calculated_remotes,
        })
    }
}

fn parse_interfaces(v: &Value) -> Result<Vec<InterfaceRule>, ConfigError> {
    const KEY: &str = "lighthouse.local_allow_list.interfaces";
    let Value::Map(m) = v else {
        return Err(ConfigError::invalid(
            KEY,
            format!(
                "expected a map of name regex: true/false, got {}",
                v.kind_name()
            ),
        ));
    };
    let mut out: Vec<InterfaceRule> = Vec::new();
    for (name, raw) in m {
        let allow = as_bool(raw).ok_or_else(|| {
            ConfigError::invalid(
                format!("{KEY}.{name}"),
                format!("expected true or false, got {}", shown(raw)),
            )
        })?;
        let regex = regex::Regex::new(&format!("^(?:{name})$")).map_err(|e| {
            ConfigError::invalid(format!("{KEY}.{name}"), format!("invalid regex: {e}"))
        })?;
        if let Some(first) = out.first() {
            if first.allow != allow {
                return Err(ConfigError::invalid(
                    KEY,
                    "values must all be the same true/false value",
                ));
            }
        }
        out.push(InterfaceRule {
            pattern: name.clone(),
            regex,
            allow,
        });
    }
    Ok(out)
}

fn parse_calculated_remotes(r: &Reader<'_>) -> Result<Vec<CalculatedRemote>, ConfigError> {
    const KEY: &str = "lighthouse.calculated_remotes";
    let Some(m) = r.map(KEY)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (cidr, raw) in m {
        let key = format!("{KEY}.{cidr}");
        let vpn_range = IpNet::from_str(cidr)
            .map_err(|_| ConfigError::invalid(&key, format!("invalid CIDR {cidr:?}")))?;
        let Value::List(entries) = raw else {
            return Err(ConfigError::invalid(
                key,
                format!("expected a list of {{mask, port}}, got {}", raw.kind_name()),
            ));
        };
        for (i, e) in entries.iter().enumerate() {
            let ekey = format!("{key}[{i}]");
            let Value::Map(em) = e else {
                return Err(ConfigError::invalid(
                    ekey,
                    "expected a map with mask and port",
                ));
            };
            let mask = match em.get("mask") {
                Some(Value::String(s)) => IpNet::from_str(s).map_err(|_| {
                    ConfigError::invalid(format!("{ekey}.mask"), format!("invalid mask {s:?}"))
                })?,
                None | Some(Value::Null) => {
                    return Err(ConfigError::invalid(format!("{ekey}.mask"), "missing mask"))
                }
                Some(other) => {
                    return Err(ConfigError::invalid(
                        format!("{ekey}.mask"),
                        format!("expected a CIDR string, got {}", other.kind_name()),
                    ))
                }
            };
            if mask.addr().is_ipv4() != vpn_range.addr().is_ipv4() {
                return Err(ConfigError::invalid(
                    format!("{ekey}.mask"),
                    format!("invalid mask: {mask} for cidr: {vpn_range}"),
                ));
            }
            let port = match em.get("port") {
                Some(v @ (Value::Int(_) | Value::String(_))) => {
                    super::read::int_in_range::<u16>(&format!("{ekey}.port"), v, 0, 65535)?
                }
                None | Some(Value::Null) => {
                    return Err(ConfigError::invalid(format!("{ekey}.port"), "missing port"))
                }
                Some(other) => {
                    return Err(ConfigError::invalid(
                        format!("{ekey}.port"),
                        format!("expected an integer, got {}", other.kind_name()),
                    ))
                }
            };
            out.push(CalculatedRemote {
                vpn_range,
                mask,
                port,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_like_go_split_host_port() {
        let hp = HostPort::parse("100.64.22.11:4242").unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("100.64.22.11", 4242));
        assert_eq!(hp.ip(), Some("100.64.22.11".parse().unwrap()));
        let hp = HostPort::parse("[2001:db8::1]:53").unwrap();
        assert_eq!(hp.host, "2001:db8::1");
        assert_eq!(hp.to_string(), "[2001:db8::1]:53");
        let hp = HostPort::parse("lighthouse.example.com:4242").unwrap();
        assert_eq!(hp.ip(), None);
        assert!(HostPort::parse("2001:db8::1:53").is_err());
        assert!(HostPort::parse("1.2.3.4").is_err());
        assert!(HostPort::parse("1.2.3.4:").is_err());
        assert!(HostPort::parse("1.2.3.4:70000").is_err());
        assert!(HostPort::parse("1.2.3.4:x").is_err());
    }

    fn list(yaml: &str) -> Result<AllowList, ConfigError> {
        let v = Value::from_yaml(yaml, None).unwrap();
        parse_allow_list("l", v.as_map().unwrap(), |_, _| Ok(false))
    }

    #[test]
    fn allow_list_defaults_like_go() {
        // All deny: default allow.
        let l = list("\"10.0.0.0/8\": false\n").unwrap();
        assert!(!l.allows("10.1.2.3".parse().unwrap()));
        assert!(l.allows("192.168.0.1".parse().unwrap()));
        assert!(
            l.allows("2001:db8::1".parse().unwrap()),
            "no v6 rules: v6 default is !false"
        );
        // All allow: default deny.
        let l = list("\"10.0.0.0/8\": true\n").unwrap();
        assert!(!l.allows("192.168.0.1".parse().unwrap()));
        assert!(
            l.allows("::ffff:10.0.0.1".parse().unwrap()),
            "4-in-6 checked as v4"
        );
        // Mixed without default: error; with default: most specific wins.
        assert!(list("\"10.0.0.0/8\": true\n\"10.1.0.0/16\": false\n").is_err());
        let l =
            list("\"0.0.0.0/0\": true\n\"10.0.0.0/8\": false\n\"10.42.42.0/24\": yes\n").unwrap();
        assert!(l.allows("1.1.1.1".parse().unwrap()));
        assert!(!l.allows("10.1.1.1".parse().unwrap()));
        assert!(l.allows("10.42.42.7".parse().unwrap()));
        assert!(
            list("\"10.0.0.0/8\": \"true\"\n").is_err(),
            "AsBool takes no \"true\" text"
        );
        assert!(list("\"10.0.0.0\": true\n").is_err());
    }
}
