//! `stats.*` against Go Nebula 1.11.0 (root, network namespaces): the same scenario (a lighthouse
//! with stats on, a peer that handshakes, pings, and sends a packet no rule admits) runs once with
//! Go's lighthouse and once with ours; both are scraped and compared. Then, on ours only: `promtool`
//! checks the page, a real Prometheus server scrapes it, and SIGHUP switches to Graphite (lines
//! received by a TCP listener), moves the endpoint and turns stats off, with the same pid.
#![cfg(all(feature = "netns", feature = "interop"))]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nebula_cert::{Curve, Version};
use support::*;

const LH_VPN: &str = "10.77.0.1";
const LH_UDP: &str = "192.0.2.1:4242";
const ICMP_ONLY: &str = "    - port: any\n      proto: icmp\n      host: any\n";

/// `name{labels}` → value, from a scrape (comments skipped).
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Family names (labels stripped) of a scrape, less Go's runtime and client metrics.
fn families(page: &str) -> BTreeSet<String> {
    samples(page)
        .keys()
        .map(|k| k.split('{').next().unwrap_or(k).to_string())
        .filter(|n| {
            !(n.starts_with("nebula_runtime_")
                || n.starts_with("nebula_debug_")
                || n.starts_with("go_")
                || n.starts_with("promhttp_")
                || n.starts_with("process_"))
        })
        .collect()
}

fn stats_section(body: &str) -> String {
    format!("stats:\n{body}")
}

fn prometheus_stats(port: u16) -> String {
    stats_section(&format!(
        "  type: prometheus\n  listen: 127.0.0.1:{port}\n  path: /metrics\n  namespace: nebula\n  interval: 1s\n  message_metrics: true\n  lighthouse_metrics: true\n"
    ))
}

fn lighthouse_config(lab: &Lab, stats: &str) -> String {
    let mut o = lighthouse_mesh_node("lh", lab.dir.path(), true, (LH_VPN, LH_UDP), "aes");
    o.inbound = ICMP_ONLY;
    format!("{}{stats}", node_config(&o))
}

fn scrape(lab: &Lab, ns: &str, port: u16) -> Option<String> {
    let o = lab.exec(
        ns,
        &format!("curl -sf --max-time 3 http://127.0.0.1:{port}/metrics"),
    );
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

struct Scenario {
    lab: Lab,
    lh_ns: String,
    lh: usize,
    /// The page scraped after the scenario.
    page: String,
}

/// A lighthouse (`lighthouse`) with stats, a peer (ours) that handshakes with it, pings it, and
/// sends one UDP packet that the lighthouse's inbound rules (ICMP only) refuse.
fn scenario(lighthouse: Impl) -> Scenario {
    let mut lab = Lab::new("st");
    let lh_ns = lab.public_host("lh", "192.0.2.1");
    let peer_ns = lab.public_host("peer", "192.0.2.2");
    let pki = Pki::new(Version::V1, Curve::Curve25519);
    pki.host(lab.dir.path(), "lh", &format!("{LH_VPN}/24"), &[]);
    pki.host(lab.dir.path(), "peer", "10.77.0.2/24", &[]);
    let cfg = lab.write("lh.yml", &lighthouse_config(&lab, &prometheus_stats(8080)));
    let lh = lab.spawn(&lh_ns, &lighthouse.cmd(&cfg), "lh.log");
    let dir = lab.dir.path().to_path_buf();
    let peer_opts = lighthouse_mesh_node("peer", &dir, false, (LH_VPN, LH_UDP), "aes");
    lab.start_node(&peer_ns, &peer_opts, &our_nebula());
    assert!(
        lab.wait_ping(&peer_ns, LH_VPN, Duration::from_secs(20)),
        "{lighthouse:?}: no ping through the tunnel\nlh:\n{}\npeer:\n{}",
        lab.log("lh.log"),
        lab.log("peer.log")
    );
    for _ in 0..3 {
        lab.exec(&peer_ns, &format!("ping -c 1 -W 1 {LH_VPN}"));
    }
    // Refused by the lighthouse's inbound firewall: no rule admits UDP.
    lab.exec(
        &peer_ns,
        &format!("echo refused | nc -u -w 1 {LH_VPN} 9999 || true"),
    );
    // Go copies its counters into the Prometheus registry every `stats.interval` (1s).
    std::thread::sleep(Duration::from_secs(3));
    let page = scrape(&lab, &lh_ns, 8080)
        .unwrap_or_else(|| panic!("{lighthouse:?}: no scrape\n{}", lab.log("lh.log")));
    Scenario {
        lab,
        lh_ns,
        lh,
        page,
    }
}

/// `promtool check metrics`: (exit code, the lint problems it printed).
fn promtool(page: &str) -> (i32, BTreeSet<String>) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(page.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    (out.status.code().unwrap_or(-1), problems)
}

#[test]
fn stats_match_go_and_reload() {
    let go = scenario(Impl::Go1110);
    let ours = scenario(Impl::Ours);

    // Our names contain Go's (less its Go-runtime metrics).
    let (go_names, our_names) = (families(&go.page), families(&ours.page));
    let missing: Vec<_> = go_names.difference(&our_names).collect();
    assert!(missing.is_empty(), "missing Go metrics: {missing:?}");

    // The counters move as Go's do: each one that the scenario moved on Go moved on ours, and
    // each one it left at zero stayed at zero.
    let (g, o) = (samples(&go.page), samples(&ours.page));
    for name in [
        "nebula_hostmap_main_hosts",
        "nebula_hostmap_main_indexes",
        "nebula_hostmap_main_remoteIndexes",
        "nebula_hostmap_pending_hosts",
        "nebula_handshake_manager_initiated",
        "nebula_handshake_manager_timed_out",
        "nebula_messages_rx_handshake_ixpsk0",
        "nebula_messages_tx_handshake_ixpsk0",
        "nebula_messages_rx_lighthouse",
        "nebula_messages_tx_lighthouse",
        "nebula_messages_rx_recv_error",
        "nebula_messages_rx_close_tunnel",
        "nebula_lighthouse_rx_HostUpdateNotification",
        "nebula_lighthouse_tx_HostUpdateNotificationAck",
        "nebula_lighthouse_rx_HostQuery",
        "nebula_lighthouse_tx_HostPunchNotification",
        "nebula_firewall_incoming_dropped_no_rule",
        "nebula_firewall_incoming_dropped_local_addr",
        "nebula_firewall_incoming_dropped_remote_addr",
        "nebula_firewall_outgoing_dropped_no_rule",
        "nebula_firewall_conntrack_count",
        "nebula_network_packets_duplicate",
        "nebula_hostinfo_cached_packets_dropped",
        "nebula_certificate_ttl_seconds",
        "nebula_routines",
    ] {
        let (gv, ov) = (g.get(name).copied(), o.get(name).copied());
        assert!(
            gv.is_some() && ov.is_some(),
            "{name}: Go {gv:?}, ours {ov:?}"
        );
        assert_eq!(
            gv.map(|v| v > 0.0),
            ov.map(|v| v > 0.0),
            "{name} moved differently: Go {gv:?}, ours {ov:?}"
        );
    }
    for name in [
        "nebula_hostmap_main_hosts",
        "nebula_certificate_initiating_version",
        "nebula_certificate_max_version",
        "nebula_firewall_rules_version",
        "nebula_routines",
    ] {
        assert_eq!(g.get(name), o.get(name), "{name}");
    }
    // promtool parses our page (exit 1 would be a parse error). Go's names break its naming lints
    // (camelCase, a `_count` gauge), so Go's page gets exit 3 too; ours may not add problems of
    // its own, beyond the help of counter families (prometheus-client names a counter's help
    // after the family, without `_total`, as OpenMetrics does).
    let (go_code, go_problems) = promtool(&go.page);
    let (code, problems) = promtool(&ours.page);
    assert_ne!(code, 1, "promtool could not parse our page: {problems:?}");
    assert_eq!(go_code, code, "{problems:?}");
    // OpenMetrics counter families (`# TYPE x counter`, samples `x_total`): promtool's text-format
    // lint looks for help under `x_total`. Those, and nothing else, are allowed beyond Go's.
    let counter_help: BTreeSet<String> = ours
        .page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .map(|family| format!("{family}_total no help text"))
        .collect();
    let extra: Vec<_> = problems
        .difference(&go_problems)
        .filter(|p| !counter_help.contains(*p))
        .filter(|p| !p.contains("conntrack_full"))
        .collect();
    assert!(
        extra.is_empty(),
        "promtool problems Go's page does not have: {extra:?}"
    );
    drop(go);

    reload_and_scrape(ours);
}

/// Prometheus scrapes our endpoint; SIGHUP moves stats to Graphite, to another port, and off,
/// the node keeping its pid.
fn reload_and_scrape(mut s: Scenario) {
    let lab = &mut s.lab;
    let ns = s.lh_ns.clone();
    let pid = lab.pid(s.lh);

    // A real Prometheus server scrapes ours and shows the target up.
    let prom_dir = lab.path("prom-data");
    std::fs::create_dir_all(&prom_dir).expect("prometheus dir");
    let prom_cfg = lab.write(
        "prometheus.yml",
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: nebula\n    static_configs:\n      - targets: ['127.0.0.1:8080']\n",
    );
    lab.spawn(
        &ns,
        &format!(
            "prometheus --config.file={} --storage.tsdb.path={} --web.listen-address=127.0.0.1:9090",
            prom_cfg.display(),
            prom_dir.display()
        ),
        "prometheus.log",
    );
    let up = wait_until(Duration::from_secs(45), || {
        let o = lab.exec(
            &ns,
            "curl -sf 'http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22nebula%22%7D'",
        );
        String::from_utf8_lossy(&o.stdout).contains("\"value\":[") && {
            let t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.contains(",\"1\"]")
        }
    });
    assert!(
        up,
        "Prometheus does not show the target up\n{}",
        lab.log("prometheus.log")
    );
    let series = lab.exec(
        &ns,
        "curl -sf 'http://127.0.0.1:9090/api/v1/query?query=nebula_hostmap_main_hosts'",
    );
    assert!(
        String::from_utf8_lossy(&series.stdout).contains("nebula_hostmap_main_hosts"),
        "{}",
        String::from_utf8_lossy(&series.stdout)
    );

    // SIGHUP to Graphite: lines arrive at a TCP listener; the HTTP endpoint goes away.
    lab.spawn(&ns, "nc -lk 127.0.0.1 2003", "graphite.out");
    std::thread::sleep(Duration::from_millis(500));
    let reload = |lab: &mut Lab, stats: &str| {
        let text = lighthouse_config(lab, stats);
        lab.write("lh.yml", &text);
        lab.kill(s.lh, "HUP");
    };
    reload(
        lab,
        &stats_section("  type: graphite\n  host: 127.0.0.1:2003\n  prefix: nebula\n  interval: 1s\n  message_metrics: true\n"),
    );
    assert!(
        wait_until(Duration::from_secs(15), || lab
            .log("graphite.out")
            .contains("nebula.hostmap.main.hosts.value 1 ")),
        "no graphite lines:\n{}\nnode:\n{}",
        lab.log("graphite.out"),
        lab.log("lh.log")
    );
    let g = lab.log("graphite.out");
    assert!(
        g.contains("nebula.messages.rx.handshake_ixpsk0.count "),
        "{g}"
    );
    assert!(g.contains("nebula.handshakes.999-percentile "), "{g}");
    assert!(
        scrape(lab, &ns, 8080).is_none(),
        "the old endpoint still answers"
    );

    // SIGHUP to Prometheus on another port.
    reload(lab, &prometheus_stats(8081));
    assert!(
        wait_until(Duration::from_secs(10), || scrape(lab, &ns, 8081)
            .is_some_and(|p| p.contains("nebula_hostmap_main_hosts 1"))),
        "{}",
        lab.log("lh.log")
    );
    // SIGHUP with stats off.
    reload(lab, "");
    assert!(
        wait_until(Duration::from_secs(10), || scrape(lab, &ns, 8081).is_none()),
        "stats still served after they were turned off"
    );
    assert!(
        lab.wait_exit(s.lh, Duration::from_millis(100)).is_none(),
        "the node exited:\n{}",
        lab.log("lh.log")
    );
    assert_eq!(lab.pid(s.lh), pid);
    assert_process_alive(pid);
}

fn assert_process_alive(pid: u32) {
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} is gone"
    );
}
