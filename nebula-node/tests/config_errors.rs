//! Broken configs are refused with an error that names the key and the problem.

use nebula_node::config::{Config, ConfigError};

const PKI: &str = "pki: {ca: /ca.crt, cert: /host.crt, key: /host.key}\n";

fn err(extra: &str) -> ConfigError {
    let pki = if extra.starts_with("pki:") { "" } else { PKI };
    match Config::from_str(&format!("{pki}{extra}")) {
        Ok(_) => panic!("accepted:\n{extra}"),
        Err(e) => e,
    }
}

/// (config fragment, key the error must name, text the message must contain)
const CASES: &[(&str, &str, &str)] = &[
    ("tun: {mtu: abc}\n", "tun.mtu", "expected an integer, got \"abc\""),
    ("tun: {mtu: 70000}\n", "tun.mtu", "out of range"),
    ("tun: {tx_queue: [1]}\n", "tun.tx_queue", "expected an integer"),
    ("tun: {dev: waytoolonganinterfacename}\n", "tun.dev", "not a valid interface name"),
    ("punchy: {delay: 5}\n", "punchy.delay", "missing unit"),
    ("handshakes: {try_interval: fast}\n", "handshakes.try_interval", "invalid duration"),
    ("firewall: {conntrack: {tcp_timeout: 12parsecs}}\n", "firewall.conntrack.tcp_timeout", "unknown unit"),
    ("firewall: {conntrack: {max_entries: 0}}\n", "firewall.conntrack.max_entries", "out of range"),
    ("tunnels: {inactivity_timeout: -1m}\n", "tunnels.inactivity_timeout", "negative"),
    ("tunnels: {inactivity_timeout: 0s}\n", "tunnels.inactivity_timeout", "at least 1s"),
    ("tunnels: {inactivity_timeout: 400d}\n", "tunnels.inactivity_timeout", "unknown unit"),
    ("tunnels: {inactivity_timeout: 9000h}\n", "tunnels.inactivity_timeout", "out of range"),
    ("tunnels: {drop_inactive: sometimes}\n", "tunnels.drop_inactive", "expected a boolean"),
    ("punchy: {target_all_remotes: everyone}\n", "punchy.target_all_remotes", "expected a boolean"),
    ("static_map: {cadence: 0s}\n", "static_map.cadence", "at least 1s"),
    ("static_map: {cadence: 48h}\n", "static_map.cadence", "out of range"),
    ("static_map: {cadence: often}\n", "static_map.cadence", "invalid duration"),
    ("static_map: {lookup_timeout: 0s}\n", "static_map.lookup_timeout", "at least 1ms"),
    ("static_map: {lookup_timeout: 5m}\n", "static_map.lookup_timeout", "out of range"),
    ("tun: {use_system_route_table: perhaps}\n", "tun.use_system_route_table", "expected a boolean"),
    ("tun: {use_system_route_table_buffer_size: -1}\n", "tun.use_system_route_table_buffer_size", "out of range"),
    ("tun: {use_system_route_table_buffer_size: 134217728}\n", "tun.use_system_route_table_buffer_size", "out of range"),
    ("firewall: {conntrack: {routine_cache_timeout: 2years}}\n", "firewall.conntrack.routine_cache_timeout", "unknown unit"),
    ("lighthouse: {interval: 10s}\n", "lighthouse.interval", "expected an integer"),
    ("tun: {unsafe_routes: [{route: 172.16.1.0/33, via: 10.0.0.1}]}\n", "tun.unsafe_routes[0].route", "is not a CIDR"),
    ("tun: {unsafe_routes: [{route: banana, via: 10.0.0.1}]}\n", "tun.unsafe_routes[0].route", "is not a CIDR"),
    ("tun: {unsafe_routes: [{route: 172.16.1.0/24}]}\n", "tun.unsafe_routes[0].via", "is not present"),
    ("tun: {unsafe_routes: [{route: 172.16.1.0/24, via: nothost}]}\n", "tun.unsafe_routes[0].via", "not an IP address"),
    ("tun: {unsafe_routes: [{route: 172.16.1.0/24, via: [{gateway: 10.0.0.1, weight: 0}]}]}\n", "tun.unsafe_routes[0].via[0].weight", "out of range"),
    ("tun: {unsafe_routes: [{route: 172.16.1.0/24, via: 10.0.0.1, mtu: 100}]}\n", "tun.unsafe_routes[0].mtu", "below 500"),
    ("tun: {unsafe_routes: [{route: 172.16.1.0/24, via: 10.0.0.1, metric: -1}]}\n", "tun.unsafe_routes[0].metric", "out of range"),
    ("tun: {unsafe_routes: [{route: 172.16.1.0/24, via: 10.0.0.1, install: maybe}]}\n", "tun.unsafe_routes[0].install", "expected a boolean"),
    ("tun: {unsafe_routes: {route: 172.16.1.0/24}}\n", "tun.unsafe_routes", "expected a list"),
    ("tun: {routes: [{route: 10.0.0.0/16}]}\n", "tun.routes[0].mtu", "is not present"),
    ("tun: {routes: [{route: 10.0.0.0/16, mtu: 499}]}\n", "tun.routes[0].mtu", "below 500"),
    ("static_host_map: {\"not-an-ip\": [\"1.2.3.4:4242\"]}\n", "static_host_map.\"not-an-ip\"", "not a VPN IP address"),
    ("static_host_map: {\"10.1.1.1\": [\"1.2.3.4\"]}\n", "static_host_map.\"10.1.1.1\"[0]", "missing port"),
    ("static_host_map: {\"10.1.1.1\": [\"1.2.3.4:99999\"]}\n", "static_host_map.\"10.1.1.1\"[0]", "invalid port"),
    ("static_host_map: {\"10.1.1.1\": \"::1:4242\"}\n", "static_host_map.\"10.1.1.1\"[0]", "too many colons"),
    ("static_map: {network: ip5}\n", "static_map.network", "must be one of"),
    ("cipher: des\n", "cipher", "unknown cipher \"des\""),
    ("lighthouse: {hosts: [\"10.1.1.1\"]}\n", "lighthouse.hosts[0]", "does not have a static_host_map entry"),
    ("lighthouse: {hosts: [\"lighthouse1\"]}\n", "lighthouse.hosts[0]", "not a VPN IP address"),
    ("lighthouse: {hosts: \"10.1.1.1\"}\n", "lighthouse.hosts", "expected a list"),
    ("lighthouse: {am_lighthouse: true}\n", "listen.port", "no port number"),
    ("lighthouse: {remote_allow_list: {\"10.0.0.0/8\": true, \"10.1.0.0/16\": false}}\n", "lighthouse.remote_allow_list", "no default set for 0.0.0.0/0"),
    ("lighthouse: {remote_allow_list: {\"10.0.0.0/8\": 1}}\n", "lighthouse.remote_allow_list.10.0.0.0/8", "expected true or false"),
    ("lighthouse: {remote_allow_ranges: {\"10.0.0.0/8\": true}}\n", "lighthouse.remote_allow_ranges.10.0.0.0/8", "expected a map"),
    ("lighthouse: {local_allow_list: {interfaces: {eth0: true, wlan0: false}}}\n", "lighthouse.local_allow_list.interfaces", "must all be the same"),
    ("lighthouse: {local_allow_list: {interfaces: {\"eth[\": true}}}\n", "lighthouse.local_allow_list.interfaces.eth[", "invalid regex"),
    ("lighthouse: {advertise_addrs: [\"1.2.3.4\"]}\n", "lighthouse.advertise_addrs[0]", "missing port"),
    ("lighthouse: {calculated_remotes: {\"10.0.10.0/24\": [{mask: \"fd00::/64\", port: 4242}]}}\n", "lighthouse.calculated_remotes.10.0.10.0/24[0].mask", "invalid mask"),
    ("lighthouse: {calculated_remotes: {\"10.0.10.0/24\": [{mask: \"192.168.1.0/24\"}]}}\n", "lighthouse.calculated_remotes.10.0.10.0/24[0].port", "missing port"),
    ("lighthouse: {dns: {port: 65536}}\n", "lighthouse.dns.port", "out of range"),
    ("lighthouse: {dns: {port: -1}}\n", "lighthouse.dns.port", "out of range"),
    ("lighthouse: {dns: {port: fiftythree}}\n", "lighthouse.dns.port", "expected an integer"),
    ("lighthouse: {serve_dns: maybe}\n", "lighthouse.serve_dns", "expected a boolean"),
    ("listen: {port: 70000}\n", "listen.port", "out of range"),
    ("listen: {send_recv_error: sometimes}\n", "listen.send_recv_error", "expected always, never or private"),
    ("logging: {level: loud}\n", "logging.level", "not a valid logging level"),
    ("logging: {format: xml}\n", "logging.format", "unknown log format"),
    ("stats: {type: graphite, interval: 10s}\n", "stats.host", "can not be empty"),
    ("stats: {type: prometheus}\n", "stats.interval", "positive duration"),
    ("stats: {type: statsd, interval: 10s}\n", "stats.type", "was not understood"),
    ("firewall: {inbound: {port: any}}\n", "firewall.inbound", "should be an array of rules"),
    ("firewall: {inbound: [any]}\n", "firewall.inbound[0]", "could not parse rule"),
    ("firewall: {outbound: [{port: any, proto: any, group: [a, b]}]}\n", "firewall.outbound[0].group", "single value"),
    ("pki: {ca: a, cert: b, key: c, disconnect_invalid: sometimes}\n", "pki.disconnect_invalid", "expected a boolean"),
    ("pki: {ca: a, cert: b, key: c, initiating_version: 3}\n", "pki.initiating_version", "out of range"),
    ("pki: {ca: a, cert: b, key: c, blocklist: abc}\n", "pki.blocklist", "expected a list"),
    ("relay: {am_relay: perhaps}\n", "relay.am_relay", "expected a boolean"),
    ("timers: {connection_alive_interval: 5s}\n", "timers.connection_alive_interval", "expected an integer"),
    // Values a timer cannot use: once accepted, they made `now + interval` panic.
    ("timers: {connection_alive_interval: 9223372036854775807}\n", "timers.connection_alive_interval", "out of range"),
    ("timers: {pending_deletion_interval: 86401}\n", "timers.pending_deletion_interval", "out of range"),
    ("lighthouse: {interval: 9223372036854775807}\n", "lighthouse.interval", "out of range"),
    ("handshakes: {try_interval: 2562047h}\n", "handshakes.try_interval", "out of range"),
    ("handshakes: {retries: 2147483647}\n", "handshakes.retries", "out of range"),
    ("punchy: {delay: 2562047h}\n", "punchy.delay", "out of range"),
    ("timers: {requery_wait_duration: 9000h}\n", "timers.requery_wait_duration", "out of range"),
    ("preferred_ranges: \"10.0.0.0/8\"\n", "preferred_ranges", "expected a list"),
    ("sshd: {authorized_users: [{keys: [x]}]}\n", "sshd.authorized_users[0].user", "is not present"),
];

#[test]
fn broken_values_name_their_key() {
    for (fragment, key, text) in CASES {
        let e = err(fragment);
        assert_eq!(e.key(), Some(*key), "for:\n{fragment}got: {e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{key}: ")) && msg.contains(text),
            "for:\n{fragment}expected `{key}: ...{text}...`, got `{msg}`"
        );
    }
}

#[test]
fn missing_pki_is_refused() {
    for (text, key) in [
        ("tun: {mtu: 1300}\n", "pki.ca"),
        ("pki: {ca: a}\n", "pki.cert"),
        ("pki: {ca: a, cert: b, key: \"\"}\n", "pki.key"),
    ] {
        let e = Config::from_str(text).unwrap_err();
        assert!(matches!(e, ConfigError::Missing { .. }), "{e}");
        assert_eq!(e.key(), Some(key));
    }
}

#[test]
fn bad_yaml_is_refused() {
    for text in [
        "pki: [unclosed\n",
        "- just\n- a list\n",
        "a: 1\na: 2\n",
        "\t- tab\n",
    ] {
        let e = Config::from_str(text).unwrap_err();
        assert!(matches!(e, ConfigError::Yaml { .. }), "{text:?}: {e}");
    }
    assert!(matches!(Config::from_str(""), Err(ConfigError::Empty)));
}

#[test]
fn pki_files_are_read_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, b"-----BEGIN NEBULA CERTIFICATE-----\n").unwrap();
    let text = format!(
        "pki:\n  ca: {}\n  cert: {}\n  key: |\n    -----BEGIN NEBULA X25519 PRIVATE KEY-----\n    AAAA\n",
        ca.display(),
        dir.path().join("missing.crt").display()
    );
    let c = Config::from_str(&text).unwrap().config;
    assert_eq!(
        c.pki.ca.load("pki.ca").unwrap(),
        b"-----BEGIN NEBULA CERTIFICATE-----\n"
    );
    let e = c.pki.load().unwrap_err();
    assert_eq!(e.key(), Some("pki.cert"));
    assert!(e.to_string().contains("missing.crt"), "{e}");
    let key = c.pki.key.load().unwrap();
    assert!(key.starts_with(b"-----BEGIN NEBULA X25519 PRIVATE KEY-----"));
}
