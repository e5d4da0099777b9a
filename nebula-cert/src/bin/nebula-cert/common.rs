//! What every mode shares: the CLI error kinds (Go's helpError / flag.ErrHelp / plain errors),
//! required-flag checks, Go-style list and CIDR parsing, the clock, and curve names.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use goflag::{FlagError, FlagSet};
use ipnet::IpNet;
use nebula_cert::Curve;

/// How a mode failed; decides what is printed and the exit code (see `main::handle_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// A usage mistake: `Error: <msg>` then the mode's usage, exit 1 (Go's `helpError`).
    Usage(String),
    /// `-h`/`-help` inside a mode: the mode's usage only, exit 0 (Go's `flag.ErrHelp`).
    HelpRequested,
    /// A flag the parser refused. Go's flag package prints the bare message first, then
    /// `Error: <msg>`; exit 1, no usage.
    Flag(String),
    /// Anything else: `Error: <msg>`, exit 1.
    Failed(String),
}

impl CliError {
    /// Shorthand for [`CliError::Failed`].
    pub fn failed(msg: impl Into<String>) -> CliError {
        CliError::Failed(msg.into())
    }

    /// Shorthand for [`CliError::Usage`].
    pub fn usage(msg: impl Into<String>) -> CliError {
        CliError::Usage(msg.into())
    }
}

impl From<FlagError> for CliError {
    fn from(e: FlagError) -> CliError {
        match e {
            FlagError::Help => CliError::HelpRequested,
            other => CliError::Flag(other.to_string()),
        }
    }
}

/// Parses a mode's flags, mapping errors like Go's `ContinueOnError` sets.
pub fn parse_flags(set: &mut FlagSet, args: &[String]) -> Result<(), CliError> {
    set.parse(args).map_err(CliError::from)
}

/// Go's `mustFlagString`: an empty required flag is a usage error.
pub fn must_flag_string(name: &str, value: &str) -> Result<(), CliError> {
    if value.is_empty() {
        Err(CliError::usage(format!("-{name} is required")))
    } else {
        Ok(())
    }
}

/// Usage text of the hidden `-pkcs11` flag (registered so it gets a clear error, not "not defined").
pub const PKCS11_USAGE: &str = "Optional: PKCS#11 URI to an existing private key";

/// Registers `-pkcs11` hidden, as Go's non-PKCS#11 builds show no such flag.
pub fn pkcs11_flag(set: &mut FlagSet) -> goflag::Flag<String> {
    let f = set.string("pkcs11", "", PKCS11_USAGE);
    set.hide("pkcs11");
    f
}

/// Refuses a non-empty `-pkcs11`: this build has no PKCS#11 support.
pub fn refuse_pkcs11(value: &str) -> Result<(), CliError> {
    if value.is_empty() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "-pkcs11 is not supported in this build: keys can only be read from and written to files \
             (got -pkcs11 {value})"
        )))
    }
}

/// Go's group list handling: split on ',', trim whitespace, drop empty entries.
pub fn split_groups(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

/// Go's network list handling: split on ',', trim spaces only, drop empty entries.
pub fn split_networks(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',')
        .map(|r| r.trim_matches(' '))
        .filter(|r| !r.is_empty())
        .collect()
}

/// Parses a CIDR like Go's `netip.ParsePrefix`: the address is kept as written (not masked),
/// no zones, prefix length in decimal without leading zeros.
pub fn parse_prefix(s: &str) -> Option<IpNet> {
    let (addr, bits) = s.split_once('/')?;
    if addr.contains('%') {
        return None;
    }
    let addr: IpAddr = addr.parse().ok()?;
    if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if bits.len() > 1 && bits.starts_with('0') {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    IpNet::new(addr, bits).ok()
}

/// Curve names `nebula-cert` accepts for `-curve`.
pub fn parse_curve(s: &str) -> Option<Curve> {
    match s {
        "25519" | "X25519" | "Curve25519" | "CURVE25519" => Some(Curve::Curve25519),
        "P256" => Some(Curve::P256),
        _ => None,
    }
}

/// The current time in nanoseconds since the Unix epoch (negative before 1970).
pub fn now_nanos() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Unix seconds of a nanosecond timestamp, truncated like Go's `Time.Unix`.
pub fn unix_secs(nanos: i128) -> i64 {
    let secs = nanos.div_euclid(1_000_000_000);
    i64::try_from(secs).unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_trimmed_and_empty_dropped() {
        assert_eq!(
            split_groups("1,,   2    ,        ,,,3,4,5"),
            ["1", "2", "3", "4", "5"]
        );
        assert!(split_groups("").is_empty());
        assert_eq!(split_groups(" a\t,b "), ["a", "b"]);
    }

    #[test]
    fn networks_trim_spaces_only() {
        assert_eq!(
            split_networks("10.1.1.1/32, ,   10.2.2.2/32   ,   ,  ,, 10.5.5.5/32"),
            ["10.1.1.1/32", "10.2.2.2/32", "10.5.5.5/32"]
        );
        assert_eq!(split_networks("\t10.0.0.1/8"), ["\t10.0.0.1/8"]);
    }

    #[test]
    fn prefixes_like_netip() {
        let p = parse_prefix("10.0.0.123/8").unwrap();
        assert_eq!(p.to_string(), "10.0.0.123/8");
        assert!(parse_prefix("fd00::1/64").is_some());
        assert!(parse_prefix("::ffff:1.2.3.4/120").is_some_and(|p| matches!(p, IpNet::V6(_))));
        for bad in [
            "a1.1.1.1/24",
            "10.0.0.1",
            "10.0.0.1/33",
            "10.0.0.1/08",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "fe80::1%eth0/64",
            "010.0.0.1/8",
            "a",
        ] {
            assert_eq!(parse_prefix(bad), None, "{bad}");
        }
        assert!(parse_prefix("0.0.0.0/0").is_some());
    }

    #[test]
    fn curves() {
        for s in ["25519", "X25519", "Curve25519", "CURVE25519"] {
            assert_eq!(parse_curve(s), Some(Curve::Curve25519));
        }
        assert_eq!(parse_curve("P256"), Some(Curve::P256));
        assert_eq!(parse_curve("p256"), None);
    }

    #[test]
    fn unix_truncation() {
        assert_eq!(unix_secs(1_999_999_999), 1);
        assert_eq!(unix_secs(-1), -1);
    }

    #[test]
    fn flag_errors_map_like_go() {
        assert_eq!(CliError::from(FlagError::Help), CliError::HelpRequested);
        assert_eq!(
            CliError::from(FlagError::Undefined("x".into())),
            CliError::Flag("flag provided but not defined: -x".into())
        );
        assert_eq!(
            must_flag_string("name", ""),
            Err(CliError::Usage("-name is required".into()))
        );
        assert!(refuse_pkcs11("").is_ok());
        assert!(refuse_pkcs11("pkcs11:token=x").is_err());
    }
}
