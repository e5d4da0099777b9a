//! A host's nebula `config.yml`, in Go Nebula's format (accepted by Go 1.6.1 and 1.11, and ours):
//! pki paths under `/etc/nebula`, lighthouse and static host map, tunnel, and the firewall rules.
//!
//! Emitted through serde_norway so quoting is always right; keys appear in the order a human reads.

use std::net::IpAddr;

use serde_norway::{Mapping, Value};

use crate::model::{FwRule, Host, Mesh, Ports, Proto, Remote};
use crate::render::{inventory_name, names, ETC_DIR};

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn n(v: u64) -> Value {
    Value::Number(v.into())
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

fn rule(r: &FwRule) -> Value {
    let port = match (r.proto, r.ports) {
        (Proto::Icmp, _) | (_, Ports::Any) => s("any"),
        (_, Ports::Range(lo, hi)) if lo == hi => n(u64::from(lo)),
        (_, Ports::Range(lo, hi)) => s(&format!("{lo}-{hi}")),
    };
    let mut e = vec![("port", port), ("proto", s(r.proto.as_str()))];
    match &r.remote {
        Remote::Any => e.push(("host", s("any"))),
        Remote::Host(h) => e.push(("host", s(h))),
        Remote::Groups(gs) => {
            e.push(("groups", Value::Sequence(gs.iter().map(|g| s(g)).collect())))
        }
        Remote::Cidr(c) => e.push(("cidr", s(&c.to_string()))),
    }
    map(e)
}

/// The `config.yml` text for `host`.
pub fn config_yml(mesh: &Mesh, host: &Host) -> String {
    let etc = |f: &str| s(&format!("{ETC_DIR}/{f}"));
    let pki = map(vec![
        ("ca", etc(names::CA_CRT)),
        ("cert", etc(names::HOST_CRT)),
        ("key", etc(names::HOST_KEY)),
        ("disconnect_invalid", Value::Bool(true)),
    ]);

    // Every other host with a static address, so this one can reach it without asking.
    let mut shm = Mapping::new();
    for other in mesh.hosts.iter().filter(|o| o.name != host.name) {
        if !other.public_endpoints.is_empty() {
            shm.insert(
                s(&other.overlay_ip.to_string()),
                Value::Sequence(other.public_endpoints.iter().map(|e| s(e)).collect()),
            );
        }
    }

    let mut lh = vec![
        ("am_lighthouse", Value::Bool(host.lighthouse)),
        ("interval", n(u64::from(mesh.lighthouse_interval))),
    ];
    if !host.lighthouse {
        lh.push((
            "hosts",
            Value::Sequence(
                mesh.lighthouses()
                    .map(|l| s(&l.overlay_ip.to_string()))
                    .collect(),
            ),
        ));
    }

    let v6 = host
        .public_endpoints
        .iter()
        .any(|e| e.parse::<std::net::SocketAddr>().is_ok_and(|a| a.is_ipv6()))
        || matches!(host.overlay_ip, IpAddr::V6(_));
    let listen = map(vec![
        ("host", s(if v6 { "::" } else { "0.0.0.0" })),
        ("port", n(u64::from(host.listen_port))),
    ]);

    let punchy = map(vec![
        ("punch", Value::Bool(true)),
        ("respond", Value::Bool(true)),
    ]);

    let tun = map(vec![
        ("disabled", Value::Bool(false)),
        ("dev", s(&mesh.tun_dev)),
        ("drop_local_broadcast", Value::Bool(false)),
        ("drop_multicast", Value::Bool(false)),
        ("tx_queue", n(500)),
        ("mtu", n(u64::from(mesh.mtu))),
    ]);

    let logging = map(vec![("level", s(&mesh.log_level)), ("format", s("text"))]);

    let firewall = map(vec![
        ("outbound_action", s("drop")),
        ("inbound_action", s("drop")),
        (
            "conntrack",
            map(vec![
                ("tcp_timeout", s("12m")),
                ("udp_timeout", s("3m")),
                ("default_timeout", s("10m")),
            ]),
        ),
        (
            "outbound",
            Value::Sequence(host.outbound.iter().map(rule).collect()),
        ),
        (
            "inbound",
            Value::Sequence(host.inbound.iter().map(rule).collect()),
        ),
    ]);

    let mut top = vec![
        ("pki", pki),
        ("static_host_map", Value::Mapping(shm)),
        ("lighthouse", map(lh)),
        ("listen", listen),
        ("punchy", punchy),
    ];
    if let Some(c) = &mesh.cipher {
        top.push(("cipher", s(c)));
    }
    top.push(("tun", tun));
    top.push(("logging", logging));
    top.push(("firewall", firewall));

    let body = serde_norway::to_string(&map(top)).unwrap_or_default();
    format!(
        "# Nebula config for host `{}` (overlay {}), rendered by nebula-provision from {}.\n\
         # Do not edit: change the inventory and render again. Installed as {ETC_DIR}/{}.\n{body}",
        host.name,
        host.network,
        inventory_name(mesh),
        names::CONFIG,
    )
}
