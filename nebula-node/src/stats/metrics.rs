//! Go Nebula's metric set, by Go's names: one list built from the engine's snapshot, the node's
//! message counters and the sockets, shared by the Prometheus and Graphite exporters.
//!
//! Names are Go's dotted registry names (`hostmap.main.hosts`); each exporter spells them as Go's
//! does. Go's runtime metrics (`runtime.*`, `debug.*`) have no counterpart here.

use std::os::fd::{AsRawFd, BorrowedFd};

use nebula_core::engine::StatsSnapshot;
use nebula_core::filter::DirectionDrops;
use nebula_core::stats::{HistogramSummary, LIGHTHOUSE_KINDS};

use crate::counters::{MessageCounts, MESSAGE_NAMES};

/// How Go registers a metric: graphite writes each kind differently (Prometheus shows all of them
/// as gauges, as Go's bridge does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A metric's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Histogram(HistogramSummary),
}

/// One metric under its Go name.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub kind: Kind,
    pub value: Value,
}

/// Which optional groups are on (`stats.message_metrics`, `stats.lighthouse_metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Groups {
    pub messages: bool,
    pub lighthouse: bool,
}

/// Everything the metric list is built from.
pub struct Inputs<'a> {
    pub engine: &'a StatsSnapshot,
    pub messages: MessageCounts,
    pub groups: Groups,
    /// `routines`.
    pub routines: usize,
    /// The data-plane sockets, in order (`udp.<i>.*`).
    pub sockets: &'a [BorrowedFd<'a>],
}

fn int<T: TryInto<i64>>(v: T) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// Go's metric list for this node.
pub fn collect(i: &Inputs<'_>) -> Vec<Metric> {
    let mut out = Vec::with_capacity(96);
    let mut push = |name: String, kind: Kind, value: i64| {
        out.push(Metric {
            name,
            kind,
            value: Value::Int(value),
        })
    };
    let e = i.engine;
    let c = &e.counters;
    push(
        "handshake_manager.initiated".into(),
        Kind::Counter,
        int(c.handshakes_initiated),
    );
    push(
        "handshake_manager.timed_out".into(),
        Kind::Counter,
        int(c.handshakes_timed_out),
    );
    for (name, v) in [
        ("hostmap.main.hosts", e.hosts),
        ("hostmap.main.indexes", e.indexes),
        ("hostmap.main.remoteIndexes", e.remote_indexes),
        ("hostmap.main.relayIndexes", e.relay_indexes),
        ("hostmap.pending.hosts", e.pending_hosts),
        ("hostmap.pending.indexes", e.pending_indexes),
        ("firewall.conntrack.count", e.conntrack),
    ] {
        push(name.into(), Kind::Gauge, int(v));
    }
    push(
        "firewall.rules.version".into(),
        Kind::Gauge,
        int(c.rules_version),
    );
    push(
        "firewall.rules.hash".into(),
        Kind::Gauge,
        i64::from(e.rules_hash),
    );
    for (dir, d) in [
        ("incoming", e.drops.incoming),
        ("outgoing", e.drops.outgoing),
    ] {
        let DirectionDrops {
            local_addr,
            remote_addr,
            no_rule,
            conntrack_full,
        } = d;
        push(
            format!("firewall.{dir}.dropped.local_addr"),
            Kind::Counter,
            int(local_addr),
        );
        push(
            format!("firewall.{dir}.dropped.remote_addr"),
            Kind::Counter,
            int(remote_addr),
        );
        push(
            format!("firewall.{dir}.dropped.no_rule"),
            Kind::Counter,
            int(no_rule),
        );
        // Ours: Go's conntrack has no cap.
        push(
            format!("firewall.{dir}.dropped.conntrack_full"),
            Kind::Counter,
            int(conntrack_full),
        );
    }
    push(
        "network.packets.lost".into(),
        Kind::Counter,
        int(e.replay.lost),
    );
    push(
        "network.packets.duplicate".into(),
        Kind::Counter,
        int(e.replay.duplicate),
    );
    push(
        "network.packets.out_of_window".into(),
        Kind::Counter,
        int(e.replay.out_of_window),
    );
    push(
        "hostinfo.cached_packets.sent".into(),
        Kind::Counter,
        int(c.cached_packets_sent),
    );
    push(
        "hostinfo.cached_packets.dropped".into(),
        Kind::Counter,
        int(c.cached_packets_dropped),
    );
    push(
        "certificate.ttl_seconds".into(),
        Kind::Gauge,
        e.cert_ttl_seconds,
    );
    push(
        "certificate.initiating_version".into(),
        Kind::Gauge,
        i64::from(e.initiating_version),
    );
    push(
        "certificate.max_version".into(),
        Kind::Gauge,
        i64::from(e.max_version),
    );
    push("routines".into(), Kind::Gauge, int(i.routines));
    let m = i.messages;
    // Go always keeps recv_error and the punch counters; the rest with `message_metrics`.
    for (slot, name) in MESSAGE_NAMES.iter().enumerate() {
        if i.groups.messages || *name == "recv_error" {
            push(
                format!("messages.rx.{name}"),
                Kind::Counter,
                int(m.rx[slot]),
            );
            push(
                format!("messages.tx.{name}"),
                Kind::Counter,
                int(m.tx[slot]),
            );
        }
    }
    if i.groups.messages {
        push(
            "messages.rx.invalid".into(),
            Kind::Counter,
            int(m.rx_invalid),
        );
    }
    push("messages.tx.punchy".into(), Kind::Counter, int(m.tx_punchy));
    if i.groups.lighthouse {
        push(
            "messages.tx.holepunch".into(),
            Kind::Counter,
            int(m.tx_holepunch),
        );
        for (k, kind) in LIGHTHOUSE_KINDS.iter().enumerate() {
            push(
                format!("lighthouse.rx.{kind}"),
                Kind::Counter,
                int(c.lighthouse_rx[k]),
            );
            push(
                format!("lighthouse.tx.{kind}"),
                Kind::Counter,
                int(c.lighthouse_tx[k]),
            );
        }
    }
    for (n, fd) in i.sockets.iter().enumerate() {
        if let Some(mem) = meminfo(*fd) {
            for (field, v) in MEMINFO_NAMES.iter().zip(mem) {
                push(format!("udp.{n}.{field}"), Kind::Gauge, i64::from(v));
            }
        }
    }
    out.push(Metric {
        name: "handshakes".into(),
        kind: Kind::Gauge,
        value: Value::Histogram(c.handshakes.summary()),
    });
    out
}

/// The kernel's `SO_MEMINFO` fields, in its order, under Go's names (`udp.<i>.<name>`).
pub const MEMINFO_NAMES: [&str; 9] = [
    "rmem_alloc",
    "rcvbuf",
    "wmem_alloc",
    "sndbuf",
    "fwd_alloc",
    "wmem_queued",
    "optmem",
    "backlog",
    "drops",
];

/// `SO_MEMINFO` (Linux 3.9+; not in every libc binding).
const SO_MEMINFO: libc::c_int = 55;

/// A socket's memory figures, `None` when the kernel will not say.
fn meminfo(fd: BorrowedFd<'_>) -> Option<[u32; 9]> {
    let mut mem = [0u32; 9];
    let mut len = std::mem::size_of_val(&mem) as libc::socklen_t;
    // SAFETY: `fd` is a live socket for the borrow; `mem` and `len` describe a writable buffer
    // of `len` bytes, and the kernel writes at most `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            mem.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(mem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::os::fd::AsFd;

    /// Go 1.11.0's metric names (a real scrape of a lighthouse with `message_metrics` and
    /// `lighthouse_metrics` on, one UDP socket), less its Go-runtime metrics.
    pub const GO_1_11_NAMES: &[&str] = &[
        "certificate.initiating_version",
        "certificate.max_version",
        "certificate.ttl_seconds",
        "firewall.conntrack.count",
        "firewall.incoming.dropped.local_addr",
        "firewall.incoming.dropped.no_rule",
        "firewall.incoming.dropped.remote_addr",
        "firewall.outgoing.dropped.local_addr",
        "firewall.outgoing.dropped.no_rule",
        "firewall.outgoing.dropped.remote_addr",
        "firewall.rules.hash",
        "firewall.rules.version",
        "handshake_manager.initiated",
        "handshake_manager.timed_out",
        "handshakes",
        "hostinfo.cached_packets.dropped",
        "hostinfo.cached_packets.sent",
        "hostmap.main.hosts",
        "hostmap.main.indexes",
        "hostmap.main.relayIndexes",
        "hostmap.main.remoteIndexes",
        "hostmap.pending.hosts",
        "hostmap.pending.indexes",
        "lighthouse.rx.HostPunchNotification",
        "lighthouse.rx.HostQuery",
        "lighthouse.rx.HostQueryReply",
        "lighthouse.rx.HostUpdateNotification",
        "lighthouse.rx.HostUpdateNotificationAck",
        "lighthouse.rx.other",
        "lighthouse.tx.HostPunchNotification",
        "lighthouse.tx.HostQuery",
        "lighthouse.tx.HostQueryReply",
        "lighthouse.tx.HostUpdateNotification",
        "lighthouse.tx.HostUpdateNotificationAck",
        "lighthouse.tx.other",
        "messages.rx.close_tunnel",
        "messages.rx.handshake_ixpsk0",
        "messages.rx.invalid",
        "messages.rx.lighthouse",
        "messages.rx.message",
        "messages.rx.other",
        "messages.rx.recv_error",
        "messages.rx.test_request",
        "messages.rx.test_response",
        "messages.tx.close_tunnel",
        "messages.tx.handshake_ixpsk0",
        "messages.tx.holepunch",
        "messages.tx.lighthouse",
        "messages.tx.message",
        "messages.tx.other",
        "messages.tx.punchy",
        "messages.tx.recv_error",
        "messages.tx.test_request",
        "messages.tx.test_response",
        "network.packets.duplicate",
        "network.packets.lost",
        "network.packets.out_of_window",
        "routines",
        "udp.0.backlog",
        "udp.0.drops",
        "udp.0.fwd_alloc",
        "udp.0.optmem",
        "udp.0.rcvbuf",
        "udp.0.rmem_alloc",
        "udp.0.sndbuf",
        "udp.0.wmem_alloc",
        "udp.0.wmem_queued",
    ];

    #[test]
    fn our_names_contain_go_s() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let fds = [sock.as_fd()];
        let snap = StatsSnapshot::default();
        let list = collect(&Inputs {
            engine: &snap,
            messages: MessageCounts::default(),
            groups: Groups {
                messages: true,
                lighthouse: true,
            },
            routines: 1,
            sockets: &fds,
        });
        let ours: BTreeSet<&str> = list.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(ours.len(), list.len(), "no name twice");
        let missing: Vec<&&str> = GO_1_11_NAMES
            .iter()
            .filter(|n| !ours.contains(**n))
            .collect();
        assert!(missing.is_empty(), "missing Go metrics: {missing:?}");
        let rcvbuf = list
            .iter()
            .find(|m| m.name == "udp.0.rcvbuf")
            .map(|m| m.value);
        assert!(matches!(rcvbuf, Some(Value::Int(v)) if v > 0), "{rcvbuf:?}");
    }

    #[test]
    fn optional_groups_follow_the_config() {
        let snap = StatsSnapshot::default();
        let list = collect(&Inputs {
            engine: &snap,
            messages: MessageCounts::default(),
            groups: Groups::default(),
            routines: 2,
            sockets: &[],
        });
        let names: BTreeSet<&str> = list.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains("messages.rx.recv_error"));
        assert!(names.contains("messages.tx.punchy"));
        assert!(!names.contains("messages.rx.handshake_ixpsk0"));
        assert!(!names.iter().any(|n| n.starts_with("lighthouse.")));
        let routines = list.iter().find(|m| m.name == "routines").map(|m| m.value);
        assert_eq!(routines, Some(Value::Int(2)));
    }
}
