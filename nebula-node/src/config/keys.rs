//! Every config key Go Nebula 1.6.1 or 1.11 reads, with what this implementation does with it
//! ([`KeyStatus`]), and the walk over a config tree that warns about unknown and unused keys.
//!
//! The list was made by grepping `c.Get*`/`c.IsSet` in upstream @ v1.6.1 and @ v1.11.1 and
//! reading both `examples/config.yml`. Go ignores unknown keys silently; we warn.
//! When the daemon starts honouring a key, flip its status here.

use super::error::{ConfigWarning, WarningKind};
use super::value::Value;

/// What this implementation does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Read and acted on.
    Implemented,
    /// Go reads it; we parse it (so a wrong value is still an error) but do not act on it yet.
    NotYetImplemented,
    /// Still honoured, but Go has a newer spelling: the payload names it.
    Deprecated(&'static str),
    /// Read by 1.6.1 and ignored since: the payload says since when / what replaces it.
    Removed(&'static str),
    /// Only read on another OS: the payload names it.
    OtherPlatform(&'static str),
}

/// How the walk treats the value under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A single value.
    Leaf,
    /// A map of further known keys.
    Section,
    /// Free-form content (a map keyed by addresses, a list of rules): checked by the typed parse.
    Opaque,
}

/// One known key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownKey {
    /// The dotted key.
    pub path: &'static str,
    /// What we do with it.
    pub status: KeyStatus,
    /// How to walk below it.
    pub shape: Shape,
}

use KeyStatus::*;
use Shape::*;

const fn k(path: &'static str, status: KeyStatus, shape: Shape) -> KnownKey {
    KnownKey {
        path,
        status,
        shape,
    }
}

/// Every key of Go Nebula's config (1.6.1 and 1.11), sections included.
pub const KNOWN_KEYS: &[KnownKey] = &[
    k("pki", Implemented, Section),
    k("pki.ca", Implemented, Leaf),
    k("pki.cert", Implemented, Leaf),
    k("pki.key", Implemented, Leaf),
    k("pki.blocklist", Implemented, Leaf),
    k(
        "pki.blacklist",
        Removed("removed in Go Nebula 1.8; use pki.blocklist"),
        Leaf,
    ),
    k("pki.disconnect_invalid", Implemented, Leaf),
    k("pki.initiating_version", Implemented, Leaf),
    k("static_host_map", Implemented, Opaque),
    k("static_map", Implemented, Section),
    k("static_map.cadence", Implemented, Leaf),
    k("static_map.network", Implemented, Leaf),
    k("static_map.lookup_timeout", Implemented, Leaf),
    k("lighthouse", Implemented, Section),
    k("lighthouse.am_lighthouse", Implemented, Leaf),
    k("lighthouse.serve_dns", Implemented, Leaf),
    k("lighthouse.dns", Implemented, Section),
    k("lighthouse.dns.host", Implemented, Leaf),
    k("lighthouse.dns.port", Implemented, Leaf),
    k("lighthouse.interval", Implemented, Leaf),
    k("lighthouse.hosts", Implemented, Leaf),
    k("lighthouse.remote_allow_list", Implemented, Opaque),
    k("lighthouse.remote_allow_ranges", Implemented, Opaque),
    k("lighthouse.local_allow_list", Implemented, Opaque),
    k("lighthouse.advertise_addrs", Implemented, Leaf),
    k("lighthouse.calculated_remotes", Implemented, Opaque),
    k("listen", Implemented, Section),
    k("listen.host", Implemented, Leaf),
    k("listen.port", Implemented, Leaf),
    k("listen.batch", Implemented, Leaf),
    k("listen.read_buffer", Implemented, Leaf),
    k("listen.write_buffer", Implemented, Leaf),
    k("listen.send_recv_error", Implemented, Leaf),
    k("listen.accept_recv_error", Implemented, Leaf),
    k("listen.so_mark", Implemented, Leaf),
    k("listen.udp_offloads", Implemented, Leaf),
    k("listen.routines", Deprecated("routines"), Leaf),
    k("listen.windows_bypass_wdf", OtherPlatform("Windows"), Leaf),
    k(
        "listen.rebind_on_network_change",
        OtherPlatform("macOS"),
        Leaf,
    ),
    k("routines", Implemented, Leaf),
    k("punchy", Implemented, Section),
    k("punchy.punch", Implemented, Leaf),
    k("punchy.respond", Implemented, Leaf),
    k("punchy.delay", Implemented, Leaf),
    k("punchy.respond_delay", Implemented, Leaf),
    k("punchy.target_all_remotes", Implemented, Leaf),
    k("punch_back", Deprecated("punchy.respond"), Leaf),
    k("cipher", Implemented, Leaf),
    k("preferred_ranges", Implemented, Leaf),
    k("local_range", Deprecated("preferred_ranges"), Leaf),
    k("sshd", Implemented, Section),
    k("sshd.enabled", Implemented, Leaf),
    k("sshd.listen", Implemented, Leaf),
    k("sshd.host_key", Implemented, Leaf),
    k("sshd.authorized_users", Implemented, Opaque),
    k("sshd.trusted_cas", Implemented, Leaf),
    k("sshd.sandbox_dir", Implemented, Leaf),
    k("relay", Implemented, Section),
    k("relay.relays", Implemented, Leaf),
    k("relay.am_relay", Implemented, Leaf),
    k("relay.use_relays", Implemented, Leaf),
    k("tun", Implemented, Section),
    k("tun.disabled", Implemented, Leaf),
    k("tun.dev", Implemented, Leaf),
    k("tun.drop_local_broadcast", Implemented, Leaf),
    k("tun.drop_multicast", Implemented, Leaf),
    k("tun.tx_queue", Implemented, Leaf),
    k("tun.mtu", Implemented, Leaf),
    k("tun.routes", Implemented, Opaque),
    k("tun.unsafe_routes", Implemented, Opaque),
    k("tun.use_system_route_table", Implemented, Leaf),
    k("tun.use_system_route_table_buffer_size", Implemented, Leaf),
    k("tun.use_offloads", Implemented, Leaf),
    k("tun.routines", Deprecated("routines"), Leaf),
    k("tun.network_category", OtherPlatform("Windows"), Leaf),
    k("tun.windows_bypass_wdf", OtherPlatform("Windows"), Leaf),
    k("logging", Implemented, Section),
    k("logging.level", Implemented, Leaf),
    k("logging.format", Implemented, Leaf),
    k("logging.disable_timestamp", Implemented, Leaf),
    k(
        "logging.timestamp_format",
        Removed("ignored since Go Nebula 1.11"),
        Leaf,
    ),
    k("stats", Implemented, Section),
    k("stats.type", Implemented, Leaf),
    k("stats.prefix", Implemented, Leaf),
    k("stats.protocol", Implemented, Leaf),
    k("stats.host", Implemented, Leaf),
    k("stats.interval", Implemented, Leaf),
    k("stats.listen", Implemented, Leaf),
    k("stats.path", Implemented, Leaf),
    k("stats.namespace", Implemented, Leaf),
    k("stats.subsystem", Implemented, Leaf),
    k("stats.message_metrics", Implemented, Leaf),
    k("stats.lighthouse_metrics", Implemented, Leaf),
    // Ours: per-peer series in the metrics, bounded.
    k("stats.peer_metrics", Implemented, Leaf),
    // Ours: the local control API (`nebula-ctl`).
    k("control", Implemented, Section),
    k("control.socket", Implemented, Leaf),
    k("handshakes", Implemented, Section),
    k("handshakes.try_interval", Implemented, Leaf),
    k("handshakes.retries", Implemented, Leaf),
    k("handshakes.trigger_buffer", Implemented, Leaf),
    k("handshakes.query_buffer", Implemented, Leaf),
    k("timers", Implemented, Section),
    k("timers.connection_alive_interval", Implemented, Leaf),
    k("timers.pending_deletion_interval", Implemented, Leaf),
    k("timers.requery_wait_duration", Implemented, Leaf),
    k("counters", Implemented, Section),
    k("counters.try_promote", Implemented, Leaf),
    k("counters.requery_every_packets", Implemented, Leaf),
    k("tunnels", Implemented, Section),
    k("tunnels.drop_inactive", Implemented, Leaf),
    k("tunnels.inactivity_timeout", Implemented, Leaf),
    k("firewall", Implemented, Section),
    k("firewall.outbound_action", Implemented, Leaf),
    k("firewall.inbound_action", Implemented, Leaf),
    k("firewall.default_local_cidr_any", Implemented, Leaf),
    k("firewall.conntrack", Implemented, Section),
    k("firewall.conntrack.tcp_timeout", Implemented, Leaf),
    k("firewall.conntrack.udp_timeout", Implemented, Leaf),
    k("firewall.conntrack.default_timeout", Implemented, Leaf),
    // Ours (Go has no cap on conntrack).
    k("firewall.conntrack.max_entries", Implemented, Leaf),
    // Parsed and bounded, but there is nothing to configure: see `ConntrackConfig`.
    k(
        "firewall.conntrack.routine_cache_timeout",
        Implemented,
        Leaf,
    ),
    k("firewall.outbound", Implemented, Opaque),
    k("firewall.inbound", Implemented, Opaque),
];

/// The entry for a dotted key, if Go knows it.
pub fn known_key(path: &str) -> Option<&'static KnownKey> {
    KNOWN_KEYS.iter().find(|k| k.path == path)
}

/// Walks a config tree and warns about every key that is unknown, not implemented yet,
/// deprecated, removed or for another OS. `null` values count as unset and give no warning.
pub fn key_warnings(root: &Value) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    if let Value::Map(m) = root {
        for (name, v) in m {
            walk(name, v, &mut out);
        }
    }
    out
}

fn walk(path: &str, v: &Value, out: &mut Vec<ConfigWarning>) {
    if *v == Value::Null {
        return;
    }
    let Some(known) = known_key(path) else {
        out.push(ConfigWarning::new(
            path,
            WarningKind::UnknownKey,
            "unknown key, ignored (Go Nebula ignores it too; is it misspelled?)",
        ));
        return;
    };
    // `punchy: true` is the old spelling of `punchy.punch: true`.
    if path == "punchy" && v.is_scalar() {
        out.push(ConfigWarning::new(
            path,
            WarningKind::Deprecated,
            "the bool form `punchy: true` is deprecated; use punchy.punch",
        ));
        return;
    }
    if known.shape == Shape::Section {
        if let Value::Map(m) = v {
            for (name, child) in m {
                walk(&format!("{path}.{name}"), child, out);
            }
            return;
        }
        // A scalar where a section belongs: the typed parse reports it if it matters.
        return;
    }
    let (kind, message) = match known.status {
        Implemented => return,
        NotYetImplemented => (
            WarningKind::NotYetImplemented,
            "is set but not implemented yet; it is ignored".to_string(),
        ),
        Deprecated(new) => (
            WarningKind::Deprecated,
            format!("deprecated; use {new} instead"),
        ),
        Removed(why) => (WarningKind::Removed, format!("ignored: {why}")),
        OtherPlatform(os) => (
            WarningKind::OtherPlatform,
            format!("only used on {os}; ignored on Linux"),
        ),
    };
    out.push(ConfigWarning::new(path, kind, message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates_and_parents_are_sections() {
        for (i, a) in KNOWN_KEYS.iter().enumerate() {
            assert!(
                KNOWN_KEYS[i + 1..].iter().all(|b| b.path != a.path),
                "duplicate {}",
                a.path
            );
            if let Some((parent, _)) = a.path.rsplit_once('.') {
                let p = known_key(parent).unwrap_or_else(|| panic!("no parent for {}", a.path));
                assert_eq!(p.shape, Shape::Section, "{parent}");
            }
        }
    }

    #[test]
    fn warns_unknown_and_unimplemented() {
        let v = Value::from_yaml(
            "tun: {mtu: 1300, mtuu: 1}\nstatic_map: {cadence: 1m}\nbogus: 1\npunchy: true\nstatic_host_map: {\"10.0.0.1\": [\"1.2.3.4:4242\"]}\nstats: ~\n",
            None,
        )
        .unwrap();
        let w = key_warnings(&v);
        let got: Vec<(&str, WarningKind)> = w.iter().map(|w| (w.key.as_str(), w.kind)).collect();
        assert_eq!(
            got,
            [
                ("bogus", WarningKind::UnknownKey),
                ("punchy", WarningKind::Deprecated),
                ("tun.mtuu", WarningKind::UnknownKey),
            ]
        );
    }
}
