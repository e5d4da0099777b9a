//! Firewall configuration as plain values (the node maps `firewall.*` YAML onto these) and its
//! validation into checked rules, with Go Nebula 1.11's error texts, defaults and warnings.

use std::fmt;
use std::time::Duration;

use ipnet::IpNet;

use super::packet::{PROTO_ANY, PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// Default `firewall.conntrack.tcp_timeout` (12 minutes).
pub const DEFAULT_TCP_TIMEOUT: Duration = Duration::from_secs(12 * 60);
/// Default `firewall.conntrack.udp_timeout` (3 minutes).
pub const DEFAULT_UDP_TIMEOUT: Duration = Duration::from_secs(3 * 60);
/// Default `firewall.conntrack.default_timeout` (10 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What to do with a packet the firewall refuses (`firewall.inbound_action` / `outbound_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    /// Silently drop (the default).
    #[default]
    Drop,
    /// Drop and answer with a TCP RST or an ICMP "administratively prohibited" ([`super::build_reject`]).
    Reject,
}

impl Action {
    /// Parses the config word (`drop` or `reject`). Go Nebula logs a warning and uses `drop` for
    /// anything else; the caller decides (this returns `None`).
    pub fn from_config(s: &str) -> Option<Action> {
        match s {
            "drop" => Some(Action::Drop),
            "reject" => Some(Action::Reject),
            _ => None,
        }
    }
}

/// Which rule list a rule (or an error about it) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `firewall.inbound`: packets coming out of a tunnel towards this host.
    Inbound,
    /// `firewall.outbound`: packets read from the TUN going into a tunnel.
    Outbound,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Inbound => "firewall.inbound",
            Direction::Outbound => "firewall.outbound",
        })
    }
}

/// One entry of `firewall.inbound` / `firewall.outbound`, as written in the config. Every field is
/// the YAML value as a string (numbers formatted as decimal); `None` and `Some("")` mean the same.
/// A YAML `group:` that is a one-element list should be given as that element; a longer list is an
/// error the node reports ("group should contain a single value ...").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleConfig {
    /// `port`: `any`, `0`, `N`, `N-M` or `fragment`.
    pub port: Option<String>,
    /// `code`: parsed like `port` (deprecated, never functional in Go).
    pub code: Option<String>,
    /// `proto`: `any`, `tcp`, `udp` or `icmp` (required).
    pub proto: Option<String>,
    /// `host`: a certificate name or `any`.
    pub host: Option<String>,
    /// `group`: one group name or `any`.
    pub group: Option<String>,
    /// `groups`: the certificate must hold all of them (`any` among them means any host).
    pub groups: Option<Vec<String>>,
    /// `cidr`: remote address prefix, or `any`.
    pub cidr: Option<String>,
    /// `local_cidr`: local (destination for inbound) address prefix, or `any`.
    pub local_cidr: Option<String>,
    /// `ca_name`: the issuing CA's name.
    pub ca_name: Option<String>,
    /// `ca_sha`: the issuing CA's fingerprint, hex.
    pub ca_sha: Option<String>,
}

/// The whole `firewall` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfig {
    /// `firewall.outbound`.
    pub outbound: Vec<RuleConfig>,
    /// `firewall.inbound`.
    pub inbound: Vec<RuleConfig>,
    /// `firewall.inbound_action` (default drop).
    pub inbound_action: Action,
    /// `firewall.outbound_action` (default drop).
    pub outbound_action: Action,
    /// `firewall.conntrack.tcp_timeout` (default 12m).
    pub tcp_timeout: Duration,
    /// `firewall.conntrack.udp_timeout` (default 3m).
    pub udp_timeout: Duration,
    /// `firewall.conntrack.default_timeout` (default 10m).
    pub default_timeout: Duration,
    /// `firewall.default_local_cidr_any` (default false since 1.10).
    pub default_local_cidr_any: bool,
    /// `firewall.conntrack.max_entries` (ours; default [`super::DEFAULT_CONNTRACK_MAX_ENTRIES`]):
    /// most flows tracked at once; new flows past it are dropped with
    /// [`super::DropReason::ConntrackFull`].
    pub conntrack_max_entries: usize,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            outbound: Vec::new(),
            inbound: Vec::new(),
            inbound_action: Action::Drop,
            outbound_action: Action::Drop,
            tcp_timeout: DEFAULT_TCP_TIMEOUT,
            udp_timeout: DEFAULT_UDP_TIMEOUT,
            default_timeout: DEFAULT_TIMEOUT,
            default_local_cidr_any: false,
            conntrack_max_entries: super::DEFAULT_CONNTRACK_MAX_ENTRIES,
        }
    }
}

/// A configuration error: which rule, in which list, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FirewallError {
    /// A rule failed validation; the text matches Go Nebula's (`firewall.inbound rule #0; ...`).
    #[error("{direction} rule #{index}; {problem}")]
    Rule {
        /// The list holding the rule.
        direction: Direction,
        /// Zero-based position in that list.
        index: usize,
        /// What is wrong.
        problem: RuleProblem,
    },
}

/// What is wrong with one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleProblem {
    /// Both `group` and `groups` were given.
    #[error("only one of group or groups should be defined, both provided")]
    GroupAndGroups,
    /// Both `port` and `code` were given.
    #[error("only one of port or code should be provided")]
    PortAndCode,
    /// The rule names nobody: none of host, group(s), cidr, local_cidr, ca_name, ca_sha.
    #[error("at least one of host, group, cidr, local_cidr, ca_name, or ca_sha must be provided")]
    NoSelector,
    /// `proto` is missing or not one of any/tcp/udp/icmp.
    #[error("proto was not understood; `{0}`")]
    UnknownProto(String),
    /// `port` (or `code`) did not parse.
    #[error("{field} {error}")]
    Port {
        /// `port` or `code`.
        field: &'static str,
        /// Why.
        error: PortError,
    },
    /// A range whose start is above its end (`10-5`).
    #[error("`start port was lower than end port`")]
    StartAfterEnd,
    /// `cidr` is neither `any` nor an address/prefix-length.
    #[error("cidr did not parse; {0}")]
    Cidr(String),
    /// `local_cidr` is neither `any` nor an address/prefix-length.
    #[error("local_cidr did not parse; {0}")]
    LocalCidr(String),
}

/// Why a port specification did not parse (texts as Go's `parsePort`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// Not a decimal number (`prefix` says which end of a range).
    #[error("{prefix}was not a number; `{value}`")]
    NotANumber {
        /// "", "beginning range " or "ending range ".
        prefix: &'static str,
        /// The offending text.
        value: String,
    },
    /// A number above 65535.
    #[error("{prefix}out of range [0,65535]; `{value}`")]
    OutOfRange {
        /// "", "beginning range " or "ending range ".
        prefix: &'static str,
        /// The offending text.
        value: String,
    },
    /// Contains `-` but is not `N-M`.
    #[error("appears to be a range but could not be parsed; `{0}`")]
    BadRange(String),
}

/// A warning about a rule that is accepted but probably not what was meant (Go logs these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleWarning {
    /// The list holding the rule.
    pub direction: Direction,
    /// Zero-based position in that list.
    pub index: usize,
    /// What looks wrong.
    pub message: String,
}

impl fmt::Display for RuleWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rule #{}; {}",
            self.direction, self.index, self.message
        )
    }
}

/// Port part of a rule, in Go's encoding: `Any` is port 0, `Fragment` is -1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortSpec {
    /// Any port (`any`, `0`, or a range starting at 0).
    Any,
    /// Non-first fragments.
    Fragment,
    /// Inclusive range, start >= 1.
    Range(u16, u16),
}

impl PortSpec {
    /// Go's (startPort, endPort) pair.
    pub(crate) fn go_pair(self) -> (i32, i32) {
        match self {
            PortSpec::Any => (0, 0),
            PortSpec::Fragment => (-1, -1),
            PortSpec::Range(s, e) => (i32::from(s), i32::from(e)),
        }
    }
}

/// Remote or local address selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CidrSpec {
    /// Not given.
    Unset,
    /// `any`.
    Any,
    /// A prefix (host bits kept as written; matching masks them).
    Net(IpNet),
}

/// A validated rule, ready to be compiled into the lookup tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedRule {
    /// IP protocol number; [`PROTO_ANY`] for `any`.
    pub proto: u8,
    pub port: PortSpec,
    pub groups: Vec<String>,
    pub host: String,
    pub cidr: CidrSpec,
    pub cidr_text: String,
    pub local_cidr: CidrSpec,
    pub local_cidr_text: String,
    pub ca_name: String,
    pub ca_sha: String,
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// Parses one decimal port in [0, 65535]: ASCII digits only, no sign, no spaces.
fn parse_port_value(prefix: &'static str, s: &str) -> Result<u16, PortError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortError::NotANumber {
            prefix,
            value: s.to_string(),
        });
    }
    s.parse::<u16>().map_err(|_| PortError::OutOfRange {
        prefix,
        value: s.to_string(),
    })
}

/// Go's `parsePort`: `any`, `fragment`, `N` or `N-M` (spaces allowed around the dash); a range
/// starting at 0 means any. Does not check start <= end (that is [`RuleProblem::StartAfterEnd`]).
pub(crate) fn parse_port(s: &str) -> Result<(i32, i32), PortError> {
    match s {
        "any" => return Ok((0, 0)),
        "fragment" => return Ok((-1, -1)),
        _ => {}
    }
    let Some((a, b)) = s.split_once('-') else {
        let p = i32::from(parse_port_value("", s)?);
        return Ok((p, p));
    };
    let (a, b) = (a.trim_matches(' '), b.trim_matches(' '));
    if a.is_empty() || b.is_empty() {
        return Err(PortError::BadRange(s.to_string()));
    }
    let start = i32::from(parse_port_value("beginning range ", a)?);
    let end = i32::from(parse_port_value("ending range ", b)?);
    if start == 0 {
        return Ok((0, 0));
    }
    Ok((start, end))
}

fn parse_cidr(s: &str) -> Result<CidrSpec, String> {
    match s {
        "" => Ok(CidrSpec::Unset),
        "any" => Ok(CidrSpec::Any),
        _ => {
            if !s.contains('/') {
                return Err(format!("`{s}` has no '/' (want address/prefix-length)"));
            }
            s.parse::<IpNet>()
                .map(CidrSpec::Net)
                .map_err(|_| format!("`{s}` is not an address/prefix-length"))
        }
    }
}

/// Go's `rule.sanity()`: combinations where an `any` silently swallows another selector.
fn sanity(groups: &[String], host: &str, cidr: &str, code: &str) -> Option<String> {
    let groups_empty = groups.is_empty();
    if groups_empty && host.is_empty() && cidr.is_empty() {
        return None;
    }
    let groups_any = groups.iter().any(|g| g == "any");
    let list = groups.join(" ");
    if groups_any && groups.len() > 1 {
        return Some(format!(
            "groups spec [{list}] contains the group '\"any\". This rule will ignore the other groups specified"
        ));
    }
    if host == "any" {
        if !groups_empty {
            return Some(format!(
                "groups specified as [{list}], but host=any will match any host, regardless of groups"
            ));
        }
        if !cidr.is_empty() {
            return Some(format!(
                "cidr specified as {cidr}, but host=any will match any host, regardless of cidr"
            ));
        }
    }
    if groups_any {
        if !host.is_empty() && host != "any" {
            return Some(format!(
                "groups spec [{list}] contains the group '\"any\". This rule will ignore the specified host {host}"
            ));
        }
        if !cidr.is_empty() {
            return Some(format!(
                "groups spec [{list}] contains the group '\"any\". This rule will ignore the specified cidr {cidr}"
            ));
        }
    }
    if !code.is_empty() {
        return Some(format!(
            "code specified as [{code}]. Support for 'code' will be dropped in a future release, as it has never been functional"
        ));
    }
    None
}

/// Validates one rule in Go 1.11's order, returning it and any warnings.
pub(crate) fn parse_rule(
    r: &RuleConfig,
    warnings: &mut Vec<String>,
) -> Result<ParsedRule, RuleProblem> {
    let group = text(&r.group);
    let mut groups: Vec<String> = r.groups.clone().unwrap_or_default();
    if !group.is_empty() {
        if !groups.is_empty() {
            return Err(RuleProblem::GroupAndGroups);
        }
        groups = vec![group.to_string()];
    }
    let (port, code) = (text(&r.port), text(&r.code));
    if !port.is_empty() && !code.is_empty() {
        return Err(RuleProblem::PortAndCode);
    }
    let (host, cidr, local_cidr) = (text(&r.host), text(&r.cidr), text(&r.local_cidr));
    let (ca_name, ca_sha) = (text(&r.ca_name), text(&r.ca_sha));
    if host.is_empty()
        && groups.is_empty()
        && cidr.is_empty()
        && local_cidr.is_empty()
        && ca_name.is_empty()
        && ca_sha.is_empty()
    {
        return Err(RuleProblem::NoSelector);
    }
    let (field, port_text) = if code.is_empty() {
        ("port", port)
    } else {
        ("code", code)
    };
    let parse = |s| parse_port(s).map_err(|error| RuleProblem::Port { field, error });
    let (proto, (start, end)) = match text(&r.proto) {
        "any" => (PROTO_ANY, parse(port_text)?),
        "tcp" => (PROTO_TCP, parse(port_text)?),
        "udp" => (PROTO_UDP, parse(port_text)?),
        "icmp" => {
            if !port_text.is_empty() {
                warnings.push(format!(
                    "ignoring port specification for ICMP firewall rule ({field} {port_text})"
                ));
            }
            (PROTO_ICMP, (0, 0))
        }
        other => return Err(RuleProblem::UnknownProto(other.to_string())),
    };
    let cidr_spec = parse_cidr(cidr).map_err(RuleProblem::Cidr)?;
    let local_spec = parse_cidr(local_cidr).map_err(RuleProblem::LocalCidr)?;
    if let Some(w) = sanity(&groups, host, cidr, code) {
        warnings.push(w);
    }
    let port = match (start, end) {
        (0, _) => PortSpec::Any,
        (-1, _) => PortSpec::Fragment,
        (s, e) if s > e => return Err(RuleProblem::StartAfterEnd),
        (s, e) => PortSpec::Range(
            u16::try_from(s).map_err(|_| RuleProblem::StartAfterEnd)?,
            u16::try_from(e).map_err(|_| RuleProblem::StartAfterEnd)?,
        ),
    };
    Ok(ParsedRule {
        proto,
        port,
        groups,
        host: host.to_string(),
        cidr: cidr_spec,
        cidr_text: cidr.to_string(),
        local_cidr: local_spec,
        local_cidr_text: local_cidr.to_string(),
        ca_name: ca_name.to_string(),
        ca_sha: ca_sha.to_string(),
    })
}

/// Go's per-rule line in the string whose SHA-256/FNV-1a is the "rule hash" Go logs.
pub(crate) fn go_rule_string(incoming: bool, r: &ParsedRule) -> String {
    let (s, e) = r.port.go_pair();
    format!(
        "incoming: {incoming}, proto: {}, startPort: {s}, endPort: {e}, groups: [{}], host: {}, ip: {}, localIp: {}, caName: {}, caSha: {}",
        r.proto,
        r.groups.join(" "),
        r.host,
        r.cidr_text,
        r.local_cidr_text,
        r.ca_name,
        r.ca_sha
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(f: impl FnOnce(&mut RuleConfig)) -> RuleConfig {
        let mut r = RuleConfig::default();
        f(&mut r);
        r
    }
    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn parse_port_go_cases() {
        let err = |s: &str| parse_port(s).unwrap_err().to_string();
        assert_eq!(err(""), "was not a number; ``");
        assert_eq!(err("  "), "was not a number; `  `");
        assert_eq!(
            err("-"),
            "appears to be a range but could not be parsed; `-`"
        );
        assert_eq!(
            err(" - "),
            "appears to be a range but could not be parsed; ` - `"
        );
        assert_eq!(err("a-b"), "beginning range was not a number; `a`");
        assert_eq!(err("1-b"), "ending range was not a number; `b`");
        assert_eq!(parse_port(" 1 - 2    "), Ok((1, 2)));
        assert_eq!(parse_port("0-1"), Ok((0, 0)));
        assert_eq!(parse_port("9919"), Ok((9919, 9919)));
        assert_eq!(parse_port("any"), Ok((0, 0)));
        assert_eq!(parse_port("fragment"), Ok((-1, -1)));
    }

    #[test]
    fn parse_port_invalid_table() {
        let cases = [
            ("4294967296", "out of range"),
            ("65536", "out of range"),
            ("-1", "could not be parsed"),
            ("4\u{0}2", "was not a number"),
            ("0x10", "was not a number"),
            ("1e3", "was not a number"),
            (" 42", "was not a number"),
            ("+42", "was not a number"),
            ("４２", "was not a number"),
            ("1-65536", "ending range out of range"),
            ("65536-65537", "beginning range out of range"),
            ("1--1", "ending range was not a number"),
        ];
        for (input, want) in cases {
            let e = parse_port(input).expect_err(input).to_string();
            assert!(e.contains(want), "{input:?}: {e}");
        }
    }

    #[test]
    fn parse_port_valid_boundaries() {
        let cases = [
            ("0", (0, 0)),
            ("1", (1, 1)),
            ("65535", (65535, 65535)),
            ("0-65535", (0, 0)),
            ("65535-65535", (65535, 65535)),
            ("1-65535", (1, 65535)),
            (" 1 - 2    ", (1, 2)),
            ("007", (7, 7)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_port(input), Ok(want), "{input:?}");
        }
    }

    fn problem(r: &RuleConfig) -> String {
        parse_rule(r, &mut Vec::new()).unwrap_err().to_string()
    }

    #[test]
    fn rule_validation_errors_match_go() {
        assert_eq!(
            problem(&rule(|r| {
                r.port = s("1");
                r.code = s("2");
            })),
            "only one of port or code should be provided"
        );
        assert_eq!(
            problem(&RuleConfig::default()),
            "at least one of host, group, cidr, local_cidr, ca_name, or ca_sha must be provided"
        );
        assert_eq!(
            problem(&rule(|r| {
                r.code = s("a");
                r.host = s("testh");
                r.proto = s("any");
            })),
            "code was not a number; `a`"
        );
        assert_eq!(
            problem(&rule(|r| {
                r.port = s("a");
                r.host = s("testh");
                r.proto = s("any");
            })),
            "port was not a number; `a`"
        );
        assert_eq!(
            problem(&rule(|r| {
                r.code = s("1");
                r.host = s("testh");
            })),
            "proto was not understood; ``"
        );
        assert_eq!(
            problem(&rule(|r| {
                r.port = s("1");
                r.host = s("testh");
                r.proto = s("sctp");
            })),
            "proto was not understood; `sctp`"
        );
        assert!(problem(&rule(|r| {
            r.code = s("1");
            r.cidr = s("testh");
            r.proto = s("any");
        }))
        .starts_with("cidr did not parse; "));
        assert!(problem(&rule(|r| {
            r.port = s("1");
            r.cidr = s("junk/junk");
            r.proto = s("any");
        }))
        .starts_with("cidr did not parse; "));
        assert!(problem(&rule(|r| {
            r.code = s("1");
            r.local_cidr = s("testh");
            r.proto = s("any");
        }))
        .starts_with("local_cidr did not parse; "));
        assert_eq!(
            problem(&rule(|r| {
                r.port = s("1");
                r.proto = s("any");
                r.group = s("a");
                r.groups = Some(vec!["b".into(), "c".into()]);
            })),
            "only one of group or groups should be defined, both provided"
        );
        assert_eq!(
            problem(&rule(|r| {
                r.port = s("10-5");
                r.proto = s("tcp");
                r.host = s("a");
            })),
            "`start port was lower than end port`"
        );
        // A missing port is an error for every proto but icmp.
        assert_eq!(
            problem(&rule(|r| {
                r.proto = s("tcp");
                r.host = s("a");
            })),
            "port was not a number; ``"
        );
    }

    #[test]
    fn error_names_direction_and_index() {
        let e = FirewallError::Rule {
            direction: Direction::Outbound,
            index: 0,
            problem: RuleProblem::PortAndCode,
        };
        assert_eq!(
            e.to_string(),
            "firewall.outbound rule #0; only one of port or code should be provided"
        );
    }

    #[test]
    fn accepted_rules_have_go_values() {
        let ok = |f: fn(&mut RuleConfig)| parse_rule(&rule(f), &mut Vec::new()).unwrap();
        let r = ok(|r| {
            r.port = s("1");
            r.proto = s("tcp");
            r.host = s("a");
        });
        assert_eq!(
            (r.proto, r.port, r.host.as_str()),
            (PROTO_TCP, PortSpec::Range(1, 1), "a")
        );
        let r = ok(|r| {
            r.port = s("1");
            r.proto = s("udp");
            r.host = s("a");
        });
        assert_eq!(r.proto, PROTO_UDP);
        // icmp ignores the port, with or without one given
        let r = ok(|r| {
            r.port = s("1");
            r.proto = s("icmp");
            r.host = s("a");
        });
        assert_eq!((r.proto, r.port), (PROTO_ICMP, PortSpec::Any));
        let r = ok(|r| {
            r.proto = s("icmp");
            r.host = s("a");
        });
        assert_eq!((r.proto, r.port), (PROTO_ICMP, PortSpec::Any));
        let r = ok(|r| {
            r.port = s("1");
            r.proto = s("any");
            r.cidr = s("10.0.0.0/8");
        });
        assert_eq!(r.cidr, CidrSpec::Net("10.0.0.0/8".parse().unwrap()));
        let r = ok(|r| {
            r.port = s("1");
            r.proto = s("any");
            r.local_cidr = s("fd00::/8");
        });
        assert_eq!(r.local_cidr, CidrSpec::Net("fd00::/8".parse().unwrap()));
        let r = ok(|r| {
            r.port = s("1");
            r.proto = s("any");
            r.cidr = s("any");
            r.local_cidr = s("any");
        });
        assert_eq!((r.cidr, r.local_cidr), (CidrSpec::Any, CidrSpec::Any));
        let r = ok(|r| {
            r.port = s("1");
            r.proto = s("any");
            r.ca_sha = s("12312313123");
        });
        assert_eq!(r.ca_sha, "12312313123");
        let r = ok(|r| {
            r.port = s("1");
            r.proto = s("any");
            r.ca_name = s("root01");
        });
        assert_eq!(r.ca_name, "root01");
        let r = ok(|r| {
            r.port = s("1");
            r.proto = s("any");
            r.group = s("a");
        });
        assert_eq!(r.groups, vec!["a".to_string()]);
        let r = ok(|r| {
            r.port = s("1");
            r.proto = s("any");
            r.groups = Some(vec!["a".into(), "b".into()]);
        });
        assert_eq!(r.groups, vec!["a".to_string(), "b".to_string()]);
        let r = ok(|r| {
            r.port = s("fragment");
            r.proto = s("any");
            r.host = s("any");
        });
        assert_eq!(r.port, PortSpec::Fragment);
        // Empty strings are the same as absent values.
        let r = ok(|r| {
            r.port = s("any");
            r.proto = s("any");
            r.host = s("h");
            r.group = s("");
            r.code = s("");
        });
        assert!(r.groups.is_empty());
    }

    #[test]
    fn sanity_warnings_as_go() {
        let quiet: Vec<(Vec<&str>, &str, &str)> = vec![
            (vec!["group1"], "", ""),
            (vec![], "bob", ""),
            (vec![], "", "1.1.1.1/1"),
            (vec!["group2"], "bob", ""),
            (vec![], "bob", "1.1.1.1/1"),
            (vec!["group2"], "", "1.1.1.1/1"),
            (vec!["group2"], "bob", "1.1.1.1/1"),
        ];
        for (g, h, c) in &quiet {
            let g: Vec<String> = g.iter().map(|s| s.to_string()).collect();
            assert_eq!(sanity(&g, h, c, ""), None, "{g:?} {h} {c}");
        }
        // host=any swallows groups/cidr
        for (g, _h, c) in quiet
            .iter()
            .filter(|(g, _, c)| !g.is_empty() || !c.is_empty())
        {
            let g: Vec<String> = g.iter().map(|s| s.to_string()).collect();
            assert!(sanity(&g, "any", c, "").is_some(), "{g:?} {c}");
        }
        // a group "any" swallows the rest
        for (g, h, c) in &quiet {
            let mut g: Vec<String> = g.iter().map(|s| s.to_string()).collect();
            g.push("any".into());
            assert!(sanity(&g, h, c, "").is_some(), "{g:?} {h} {c}");
        }
        assert!(sanity(&["a".into()], "", "", "1").is_some());
    }

    #[test]
    fn defaults_are_go_code_defaults() {
        let c = FirewallConfig::default();
        assert_eq!(c.tcp_timeout, Duration::from_secs(720));
        assert_eq!(c.udp_timeout, Duration::from_secs(180));
        assert_eq!(c.default_timeout, Duration::from_secs(600));
        assert!(!c.default_local_cidr_any);
        assert_eq!(
            (c.inbound_action, c.outbound_action),
            (Action::Drop, Action::Drop)
        );
        assert_eq!(Action::from_config("reject"), Some(Action::Reject));
        assert_eq!(Action::from_config("drop"), Some(Action::Drop));
        assert_eq!(Action::from_config("deny"), None);
    }
}
