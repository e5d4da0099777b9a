//! The `control` section (ours; Go has none): the local control API's Unix socket, and the
//! per-peer metrics bound.

use std::path::PathBuf;

use super::error::ConfigError;
use super::read::Reader;

/// Default `control.socket`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/nebula/control.sock";
/// Default `stats.peer_metrics`: peers that get their own series at most.
pub const DEFAULT_PEER_METRICS: usize = 100;
/// Largest `stats.peer_metrics` (label cardinality stays bounded).
pub const MAX_PEER_METRICS: usize = 10_000;

/// `control.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// `control.socket`: where the control API listens; `None` when set to "" (off).
    pub socket: Option<PathBuf>,
}

impl ControlConfig {
    pub(crate) fn parse(r: &Reader<'_>) -> Result<ControlConfig, ConfigError> {
        let socket = r.string("control.socket", DEFAULT_CONTROL_SOCKET)?;
        if socket.len() > 100 {
            // sun_path holds 108 bytes.
            return Err(ConfigError::invalid(
                "control.socket",
                "a Unix socket path must be shorter than 100 bytes",
            ));
        }
        Ok(ControlConfig {
            socket: (!socket.is_empty()).then(|| PathBuf::from(socket)),
        })
    }
}

/// `stats.peer_metrics` (ours): how many peers get per-peer series (0: none).
pub(crate) fn parse_peer_metrics(r: &Reader<'_>) -> Result<usize, ConfigError> {
    r.int_in(
        "stats.peer_metrics",
        DEFAULT_PEER_METRICS,
        0,
        MAX_PEER_METRICS as i64,
    )
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn control_socket_default_off_and_bad() {
        let base = "pki: {ca: a, cert: b, key: c}\n";
        let c = Config::from_str(base).expect("config").config;
        assert_eq!(
            c.control.socket.as_deref(),
            Some(std::path::Path::new("/run/nebula/control.sock"))
        );
        assert_eq!(c.stats.peer_metrics, 100);
        let off = Config::from_str(&format!("{base}control: {{socket: \"\"}}\n"))
            .expect("config")
            .config;
        assert_eq!(off.control.socket, None);
        let long = format!("{base}control: {{socket: /{}}}\n", "a".repeat(120));
        let e = Config::from_str(&long).expect_err("too long").to_string();
        assert!(e.contains("control.socket"), "{e}");
        let e = Config::from_str(&format!("{base}stats: {{peer_metrics: 100000}}\n"))
            .expect_err("too many")
            .to_string();
        assert!(e.contains("stats.peer_metrics"), "{e}");
    }
}
