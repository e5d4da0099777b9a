//! Go Nebula's own example configs (1.6.1 and 1.11.1, in tests/data) load without warnings, and
//! every key they leave commented out comes out with Go's code default.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nebula_node::config::{
    Cipher, Config, FirewallAction, KeySource, LoadedConfig, LogFormat, LogLevel, LookupNetwork,
    PemSource, RawFirewallRule, RecvErrorPolicy, StatsBackend, WarningKind, KNOWN_KEYS,
};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn load(name: &str) -> LoadedConfig {
    match Config::load(data(name)) {
        Ok(l) => l,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Values both example files share, and the code defaults of everything they leave commented.
fn check_common(l: &LoadedConfig) {
    // The only remarks allowed on Go's own examples name keys we do not implement yet.
    assert!(
        l.warnings
            .iter()
            .all(|w| w.kind == nebula_node::config::WarningKind::NotYetImplemented),
        "warnings: {:?}",
        l.warnings
    );
    let c = &l.config;

    assert_eq!(c.pki.ca, PemSource::Path("/etc/nebula/ca.crt".into()));
    assert_eq!(c.pki.cert, PemSource::Path("/etc/nebula/host.crt".into()));
    assert_eq!(
        c.pki.key,
        KeySource::Pem(PemSource::Path("/etc/nebula/host.key".into()))
    );
    assert!(c.pki.blocklist.is_empty());
    assert!(c.pki.disconnect_invalid, "1.8+ code default is true");
    assert_eq!(c.pki.initiating_version, None);

    assert_eq!(c.static_host_map.len(), 1);
    assert_eq!(c.static_host_map[0].vpn_addr, ip("192.168.100.1"));
    assert_eq!(c.static_host_map[0].remotes.len(), 1);
    assert_eq!(
        c.static_host_map[0].remotes[0].to_string(),
        "100.64.22.11:4242"
    );
    assert_eq!(c.static_map.cadence, Duration::from_secs(30));
    assert_eq!(c.static_map.network, LookupNetwork::Ip4);
    assert_eq!(c.static_map.lookup_timeout, Duration::from_millis(250));

    assert!(!c.lighthouse.am_lighthouse);
    assert!(!c.lighthouse.serve_dns);
    assert_eq!(c.lighthouse.dns_host, "");
    assert_eq!(c.lighthouse.dns_port, 53);
    assert_eq!(
        c.lighthouse.interval,
        Duration::from_secs(60),
        "set to 60 in the example"
    );
    assert_eq!(c.lighthouse.hosts, [ip("192.168.100.1")]);
    assert!(c.lighthouse.remote_allow_list.base.is_none());
    assert!(c.lighthouse.remote_allow_list.ranges.is_empty());
    assert!(c.lighthouse.local_allow_list.is_none());
    assert!(c.lighthouse.advertise_addrs.is_empty());
    assert!(c.lighthouse.calculated_remotes.is_empty());

    assert_eq!(c.listen.port, 4242);
    assert_eq!(c.listen.batch, 64);
    assert_eq!(c.listen.read_buffer, 0);
    assert_eq!(c.listen.write_buffer, 0);
    assert_eq!(c.listen.send_recv_error, RecvErrorPolicy::Always);
    assert_eq!(c.listen.accept_recv_error, RecvErrorPolicy::Always);
    assert_eq!(c.listen.so_mark, 0);
    assert_eq!(c.routines, 1);

    assert!(c.punchy.punch);
    assert!(!c.punchy.respond);
    assert_eq!(c.punchy.delay, Duration::from_secs(1));
    assert_eq!(c.punchy.respond_delay, Duration::from_secs(5));
    assert!(!c.punchy.target_all_remotes);

    assert_eq!(c.cipher, Cipher::Aes);
    assert!(c.preferred_ranges.is_empty());

    assert!(c.relay.relays.is_empty());
    assert!(!c.relay.am_relay);
    assert!(c.relay.use_relays());

    assert!(!c.tun.disabled);
    assert_eq!(c.tun.dev, "nebula1");
    assert!(!c.tun.drop_local_broadcast);
    assert!(!c.tun.drop_multicast);
    assert_eq!(c.tun.tx_queue, 500);
    assert_eq!(c.tun.mtu, 1300);
    assert!(c.tun.routes.is_empty());
    assert!(c.tun.unsafe_routes.is_empty());
    assert!(!c.tun.use_system_route_table);
    assert!(c.tun.use_offloads, "upstream master's default");
    assert!(c.listen.udp_offloads, "upstream master's default");
    assert_eq!(c.tun.max_mtu(), 1300);

    assert_eq!(c.logging.level, LogLevel::Info);
    assert_eq!(c.logging.format, LogFormat::Text);
    assert!(!c.logging.disable_timestamp);

    assert_eq!(c.stats.backend, StatsBackend::None);
    assert!(!c.stats.message_metrics);
    assert!(!c.stats.lighthouse_metrics);

    assert_eq!(c.handshakes.try_interval, Duration::from_millis(100));
    assert_eq!(
        c.handshakes.retries, 10,
        "code default; the example's comment says 20"
    );
    assert_eq!(c.handshakes.trigger_buffer, 64);
    assert_eq!(c.handshakes.query_buffer, 64);

    assert_eq!(c.timers.connection_alive_interval, Duration::from_secs(5));
    assert_eq!(c.timers.pending_deletion_interval, Duration::from_secs(10));
    assert_eq!(c.timers.requery_wait_duration, Duration::from_secs(60));
    assert_eq!(c.counters.try_promote, 1000);
    assert_eq!(c.counters.requery_every_packets, 5000);
    assert!(!c.tunnels.drop_inactive);
    assert_eq!(c.tunnels.inactivity_timeout, Duration::from_secs(600));

    assert!(!c.sshd.enabled);
    assert!(c.sshd.authorized_users.is_empty());

    assert_eq!(
        c.firewall.conntrack.tcp_timeout,
        Duration::from_secs(12 * 60)
    );
    assert_eq!(
        c.firewall.conntrack.udp_timeout,
        Duration::from_secs(3 * 60)
    );
    assert_eq!(
        c.firewall.conntrack.default_timeout,
        Duration::from_secs(10 * 60)
    );
    assert_eq!(c.firewall.conntrack.routine_cache_timeout, None);
    assert_eq!(c.firewall.conntrack.max_entries, 131_072);
    assert_eq!(c.routine_cache_timeout(), Duration::ZERO);
    assert!(!c.firewall.default_local_cidr_any);
    assert_eq!(c.firewall.inbound_action, FirewallAction::Drop);
    assert_eq!(c.firewall.outbound_action, FirewallAction::Drop);
    assert_eq!(
        c.firewall.outbound,
        [RawFirewallRule {
            port: Some("any".into()),
            proto: Some("any".into()),
            host: Some("any".into()),
            ..RawFirewallRule::default()
        }]
    );
    assert_eq!(
        c.firewall.inbound[0],
        RawFirewallRule {
            port: Some("any".into()),
            proto: Some("icmp".into()),
            host: Some("any".into()),
            ..RawFirewallRule::default()
        }
    );
    assert_eq!(
        c.firewall.inbound[1],
        RawFirewallRule {
            port: Some("443".into()),
            proto: Some("tcp".into()),
            groups: Some(vec!["laptop".into(), "home".into()]),
            ..RawFirewallRule::default()
        }
    );

    // The raw tree is kept for reload diffs.
    assert!(l.raw.is_set("firewall.inbound"));
    assert_eq!(l.files.len(), 1);
}

#[test]
fn example_config_v1_11_1_loads_with_code_defaults() {
    let l = load("example-config-v1.11.1.yml");
    check_common(&l);
    let c = &l.config;
    assert_eq!(c.listen.host, "::");
    assert_eq!(c.listen.host_ip(), Some(ip("::")));
    assert_eq!(c.firewall.inbound.len(), 3);
    assert_eq!(
        c.firewall.inbound[2],
        RawFirewallRule {
            port: Some("8080".into()),
            proto: Some("tcp".into()),
            group: Some("remote_client".into()),
            local_cidr: Some("192.168.100.1/24".into()),
            ..RawFirewallRule::default()
        }
    );
}

#[test]
fn example_config_v1_6_1_loads_with_code_defaults() {
    let l = load("example-config-v1.6.1.yml");
    check_common(&l);
    let c = &l.config;
    assert_eq!(c.listen.host, "0.0.0.0");
    assert_eq!(c.firewall.inbound.len(), 2);
}

/// Every key of both example files, commented or not, uncommented at once: all are known keys,
/// and the ones we do not act on yet are named in warnings.
#[test]
fn every_documented_key_is_known() {
    let text = r#"
pki:
  ca: /etc/nebula/ca.crt
  cert: /etc/nebula/host.crt
  key: /etc/nebula/host.key
  blocklist: [c99d4e650533b92061b09918e838a5a0a6aaee21eed1d12fd937682865936c72]
  disconnect_invalid: true
  initiating_version: 1
static_host_map:
  "192.168.100.1": ["100.64.22.11:4242", "lighthouse.example.com:4242"]
static_map: {cadence: 30s, network: ip4, lookup_timeout: 250ms}
lighthouse:
  am_lighthouse: false
  serve_dns: false
  dns: {host: 0.0.0.0, port: 53}
  interval: 60
  hosts: ["192.168.100.1"]
  remote_allow_list:
    "172.16.0.0/12": false
  remote_allow_ranges:
    "10.42.42.0/24":
      "192.168.0.0/16": true
  local_allow_list:
    interfaces:
      tun0: false
      'docker.*': false
    "10.0.0.0/8": true
  advertise_addrs: ["1.1.1.1:4242", "1.2.3.4:0"]
  calculated_remotes:
    10.0.10.0/24:
      - mask: 192.168.1.0/24
        port: 4242
listen:
  host: "::"
  port: 4242
  batch: 64
  read_buffer: 10485760
  write_buffer: 10485760
  windows_bypass_wdf: true
  rebind_on_network_change: true
  send_recv_error: always
  accept_recv_error: always
  so_mark: 0
  udp_offloads: true
routines: 1
punchy: {punch: true, respond: true, delay: 1s, respond_delay: 5s, target_all_remotes: false}
cipher: chachapoly
preferred_ranges: ["172.16.0.0/24"]
sshd:
  enabled: true
  listen: 127.0.0.1:2222
  host_key: ./ssh_host_ed25519_key
  authorized_users:
    - user: steeeeve
      keys: ["ssh public key string"]
  trusted_cas: ["ssh public key string"]
  sandbox_dir: /var/tmp/nebula-debug
relay:
  relays: [192.168.100.1]
  am_relay: false
  use_relays: true
tun:
  disabled: false
  dev: nebula1
  drop_local_broadcast: false
  drop_multicast: false
  tx_queue: 500
  mtu: 1300
  routes:
    - mtu: 8800
      route: 10.0.0.0/16
  unsafe_routes:
    - route: 172.16.1.0/24
      via: 192.168.100.99
      mtu: 1300
      metric: 100
      install: true
    - route: 192.168.87.0/24
      via:
        - gateway: 10.0.0.1
          weight: 10
        - gateway: 10.0.0.2
  network_category: private
  windows_bypass_wdf: true
  use_system_route_table: false
  use_system_route_table_buffer_size: 0
logging: {level: info, format: text, disable_timestamp: true}
stats:
  type: prometheus
  prefix: nebula
  protocol: tcp
  host: 127.0.0.1:9999
  listen: 127.0.0.1:8080
  path: /metrics
  namespace: prometheusns
  subsystem: nebula
  interval: 10s
  message_metrics: false
  lighthouse_metrics: false
  peer_metrics: 50
control: {socket: /run/nebula/test.sock}
handshakes: {try_interval: 100ms, retries: 20, query_buffer: 64, trigger_buffer: 64}
tunnels: {drop_inactive: false, inactivity_timeout: 10m}
timers: {connection_alive_interval: 5, pending_deletion_interval: 10, requery_wait_duration: 60s}
counters: {try_promote: 1000, requery_every_packets: 5000}
firewall:
  outbound_action: drop
  inbound_action: reject
  default_local_cidr_any: false
  conntrack: {tcp_timeout: 12m, udp_timeout: 3m, default_timeout: 10m, routine_cache_timeout: 1s, max_entries: 4096}
  outbound:
    - {port: any, proto: any, host: any}
  inbound:
    - {port: any, proto: icmp, host: any}
    - {port: 443, proto: tcp, groups: [laptop, home]}
    - {code: any, proto: icmp, cidr: 10.0.0.0/8, ca_name: myca, ca_sha: abc}
    - {port: 8080, proto: tcp, group: remote_client, local_cidr: 192.168.100.1/24}
"#;
    let l = match Config::from_str(text) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let unknown: Vec<_> = l
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::UnknownKey)
        .collect();
    assert!(unknown.is_empty(), "{unknown:?}");
    // Every key of Go's example config is implemented: nothing is named "not implemented".
    let nyi: Vec<_> = l
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::NotYetImplemented)
        .collect();
    assert!(nyi.is_empty(), "{nyi:?}");
    for key in [
        "firewall.conntrack.routine_cache_timeout",
        "punchy.target_all_remotes",
        "tunnels.drop_inactive",
        "tunnels.inactivity_timeout",
        "static_map.cadence",
        "static_map.lookup_timeout",
        "tun.use_system_route_table",
        "tun.use_system_route_table_buffer_size",
    ] {
        assert!(
            l.warnings.iter().all(|w| w.key != key),
            "{key} warned: {:?}",
            l.warnings
        );
    }
    for key in ["listen.windows_bypass_wdf", "tun.network_category"] {
        assert!(l
            .warnings
            .iter()
            .any(|w| w.key == key && w.kind == WarningKind::OtherPlatform));
    }
    let c = &l.config;
    assert_eq!(c.cipher, Cipher::ChaChaPoly);
    assert_eq!(c.firewall.inbound_action, FirewallAction::Reject);
    assert_eq!(c.tun.routes[0].mtu, 8800);
    assert_eq!(c.tun.unsafe_routes[0].metric, 100);
    assert_eq!(c.tun.unsafe_routes[1].via.len(), 2);
    assert_eq!(c.tun.unsafe_routes[1].via[0].weight, 10);
    assert_eq!(c.tun.unsafe_routes[1].via[1].weight, 1);
    assert_eq!(c.tun.max_mtu(), 8800);
    assert_eq!(
        c.static_host_map[0].remotes[1].ip(),
        None,
        "DNS names kept for the caller"
    );
    assert_eq!(c.lighthouse.calculated_remotes[0].port, 4242);
    let lal = c.lighthouse.local_allow_list.as_ref().unwrap();
    assert!(!lal.allows_interface("docker0"));
    assert!(!lal.allows_interface("tun0"));
    assert!(lal.allows_interface("eth0"));
    assert!(
        lal.allows_interface("xtun0"),
        "patterns are anchored: xtun0 is not tun0"
    );
    assert!(
        lal.allows_interface("tun01"),
        "patterns are anchored: tun01 is not tun0"
    );
    assert!(lal.allows(ip("10.1.2.3")));
    assert!(!lal.allows(ip("192.168.1.1")));
    let ral = &c.lighthouse.remote_allow_list;
    assert!(!ral.allows(ip("10.1.1.1"), ip("172.16.5.5")));
    assert!(ral.allows(ip("10.1.1.1"), ip("8.8.8.8")));
    assert!(
        !ral.allows(ip("10.42.42.9"), ip("8.8.8.8")),
        "range list allows only 192.168/16"
    );
    assert!(ral.allows(ip("10.42.42.9"), ip("192.168.3.3")));
    assert_eq!(c.firewall.inbound[2].code.as_deref(), Some("any"));
    assert_eq!(c.routine_cache_timeout(), Duration::from_secs(1));
    assert_eq!(c.handshakes.retries, 20);
    assert_eq!(c.firewall.conntrack.max_entries, 4096);
    assert_eq!(c.stats.peer_metrics, 50);
    assert_eq!(
        c.control.socket.as_deref(),
        Some(Path::new("/run/nebula/test.sock"))
    );

    // Every key in the table appears in this file (sections included), so none is forgotten here.
    for k in KNOWN_KEYS {
        let deprecated_spelling = matches!(
            k.path,
            "pki.blacklist"
                | "punch_back"
                | "local_range"
                | "tun.routines"
                | "listen.routines"
                | "logging.timestamp_format"
                | "tun.use_offloads"
        );
        if !deprecated_spelling {
            assert!(l.raw.is_set(k.path), "{} missing from this test", k.path);
        }
    }
}
