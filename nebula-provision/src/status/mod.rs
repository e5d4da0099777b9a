//! `nebula-provision status`: each host's `nebula-ctl status --json` (asked by [`collect`], read by
//! [`wire`]) judged against the inventory ([`peers`]) as a table, the renewals due, or JSON.

pub mod collect;
pub mod peers;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::json;

use crate::model::Mesh;
use crate::provision::date;
use crate::shell::quote;
use collect::Answer;
use wire::{CertInfo, NodeStatus, TunnelPath};

/// Whether a host is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// nebula answered and its data plane is alive.
    Up,
    /// ssh failed, nebula-ctl failed, nebula is not running or its data plane is stalled.
    Down,
    /// Not asked (no ssh section).
    Unknown,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Unknown => "unknown",
        }
    }
}

/// One host of the table: the answer, judged.
#[derive(Debug, Clone)]
pub struct HostRow {
    /// Inventory name.
    pub host: String,
    /// Up, down or unknown.
    pub state: State,
    /// Why it is down or unknown.
    pub reason: Option<String>,
    /// Peers the firewall allows (see [`peers::allowed_peers`]).
    pub allowed: BTreeSet<String>,
    /// Allowed peers it has a tunnel with.
    pub connected: BTreeSet<String>,
    /// Tunnels to peers that are not allowed (or not in the inventory), by name.
    pub unexpected: BTreeSet<String>,
    /// Direct tunnels.
    pub direct: usize,
    /// Relayed tunnels.
    pub relayed: usize,
    /// Worst and median of the measured round trips (ms).
    pub rtt: Option<(f64, f64)>,
    /// The node's status, when it answered.
    pub status: Option<NodeStatus>,
    /// The whole answer, as sent.
    pub raw: Option<serde_json::Value>,
}

impl HostRow {
    /// Days left on the host's certificate, as the host reports it.
    pub fn cert_days_left(&self) -> Option<f64> {
        self.status.as_ref().map(|s| s.node.cert.days_left)
    }
}

/// The worst and the median of `values` (NaN-free; `None` when empty).
fn worst_and_median(mut values: Vec<f64>) -> Option<(f64, f64)> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Some((values[n - 1], median))
}

/// The inventory name of a tunnel's peer: its certificate name if a host has it, else the host
/// owning one of its vpn addresses (with or without a prefix length), else the name as given.
fn peer_name(mesh: &Mesh, name: &str, vpn_addrs: &[String]) -> String {
    if mesh.host(name).is_some() {
        return name.to_string();
    }
    mesh.hosts
        .iter()
        .find(|h| {
            vpn_addrs
                .iter()
                .any(|a| a.split('/').next() == Some(h.overlay_ip.to_string().as_str()))
        })
        .map(|h| h.name.clone())
        .unwrap_or_else(|| name.to_string())
}

/// Judges each host's answer against the inventory. `answers` pairs a host name with its answer.
pub fn rows(mesh: &Mesh, answers: Vec<(String, Answer)>) -> Vec<HostRow> {
    answers
        .into_iter()
        .map(|(name, answer)| {
            let allowed = mesh
                .host(&name)
                .map(|h| peers::allowed_peers(mesh, h))
                .unwrap_or_default();
            let mut row = HostRow {
                host: name,
                state: State::Down,
                reason: None,
                allowed,
                connected: BTreeSet::new(),
                unexpected: BTreeSet::new(),
                direct: 0,
                relayed: 0,
                rtt: None,
                status: None,
                raw: None,
            };
            match answer {
                Err(crate::StatusError::NoSsh) => {
                    row.state = State::Unknown;
                    row.reason = Some(crate::StatusError::NoSsh.to_string());
                }
                Err(e) => row.reason = Some(e.to_string()),
                Ok((status, raw)) => {
                    for t in &status.tunnels {
                        let peer = peer_name(mesh, &t.name, &t.vpn_addrs);
                        if row.allowed.contains(&peer) {
                            row.connected.insert(peer);
                        } else {
                            row.unexpected.insert(peer);
                        }
                        match t.path {
                            TunnelPath::Direct { .. } => row.direct += 1,
                            TunnelPath::Relayed { .. } => row.relayed += 1,
                            TunnelPath::Other => {}
                        }
                    }
                    row.rtt =
                        worst_and_median(status.tunnels.iter().filter_map(|t| t.rtt_ms).collect());
                    if status.health.data_plane_alive {
                        row.state = State::Up;
                    } else {
                        row.reason = Some("nebula answers but its data plane is stalled".into());
                    }
                    row.status = Some(status);
                    row.raw = Some(raw);
                }
            }
            row
        })
        .collect()
}

/// At most four names, then how many more.
fn some_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let all: Vec<&String> = names.collect();
    let mut s = all
        .iter()
        .take(4)
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > 4 {
        let _ = write!(s, " and {} more", all.len() - 4);
    }
    s
}

fn note(row: &HostRow) -> String {
    if let Some(r) = &row.reason {
        return r.clone();
    }
    let mut parts = Vec::new();
    if let Some(s) = &row.status {
        if s.node.name != row.host {
            parts.push(format!("answers as `{}`", s.node.name));
        }
    }
    let missing: Vec<&String> = row.allowed.difference(&row.connected).collect();
    if !missing.is_empty() {
        parts.push(format!("no tunnel to {}", some_names(missing.into_iter())));
    }
    if !row.unexpected.is_empty() {
        parts.push(format!(
            "tunnel the firewall does not allow: {}",
            some_names(row.unexpected.iter())
        ));
    }
    parts.join("; ")
}

fn ms(v: f64) -> String {
    format!("{v:.1}ms")
}

fn days(v: f64) -> String {
    if v < 0.0 {
        "expired".into()
    } else {
        format!("{}", v.floor() as i64)
    }
}

/// The mesh table: one line per host. Tunnels are `connected/allowed`, `+N` for tunnels the
/// firewall does not allow; RTTs are over the tunnels with a measurement; cert is days left.
pub fn table(mesh: &Mesh, rows: &[HostRow]) -> String {
    let up = rows.iter().filter(|r| r.state == State::Up).count();
    let down = rows.iter().filter(|r| r.state == State::Down).count();
    let mut out = format!(
        "mesh `{}`: {} host(s), {up} up, {down} down\n",
        mesh.name,
        rows.len()
    );
    let head = [
        "HOST",
        "STATE",
        "TUNNELS",
        "DIRECT",
        "RELAYED",
        "RTT-WORST",
        "RTT-MEDIAN",
        "CERT-DAYS",
        "NOTE",
    ];
    let mut cells: Vec<[String; 9]> = vec![head.map(str::to_string)];
    for r in rows {
        let answered = r.status.is_some();
        let dash = || "-".to_string();
        let tunnels = if answered {
            let mut t = format!("{}/{}", r.connected.len(), r.allowed.len());
            if !r.unexpected.is_empty() {
                let _ = write!(t, "+{}", r.unexpected.len());
            }
            t
        } else {
            dash()
        };
        cells.push([
            r.host.clone(),
            r.state.as_str().to_string(),
            tunnels,
            if answered {
                r.direct.to_string()
            } else {
                dash()
            },
            if answered {
                r.relayed.to_string()
            } else {
                dash()
            },
            r.rtt.map(|(w, _)| ms(w)).unwrap_or_else(dash),
            r.rtt.map(|(_, m)| ms(m)).unwrap_or_else(dash),
            r.cert_days_left().map(days).unwrap_or_else(dash),
            note(r),
        ]);
    }
    let mut widths = [0usize; 9];
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(v.chars().count());
        }
    }
    for c in &cells {
        let mut line = String::new();
        for (i, v) in c.iter().enumerate() {
            if i + 1 == c.len() {
                line.push_str(v);
            } else {
                let _ = write!(line, "{v:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Something whose certificate must be renewed soon.
#[derive(Debug, Clone, PartialEq)]
pub enum Renewal {
    /// A host certificate (as the host reports it).
    Host {
        /// Inventory name.
        host: String,
        /// The certificate.
        cert: CertInfo,
    },
    /// A CA (reported by hosts, or the one in the PKI directory).
    Ca {
        /// The certificate.
        cert: CertInfo,
    },
}

/// What is due within `within_days`: host certificates, then CAs (each CA once, by fingerprint).
/// `local_ca` is the CA of the PKI directory, if it could be read.
pub fn renewals(rows: &[HostRow], local_ca: Option<&CertInfo>, within_days: u32) -> Vec<Renewal> {
    let due = |c: &CertInfo| c.days_left < f64::from(within_days);
    let mut out = Vec::new();
    for r in rows {
        if let Some(s) = &r.status {
            if due(&s.node.cert) {
                out.push(Renewal::Host {
                    host: r.host.clone(),
                    cert: s.node.cert.clone(),
                });
            }
        }
    }
    let mut cas: BTreeMap<String, CertInfo> = BTreeMap::new();
    let reported = rows
        .iter()
        .filter_map(|r| r.status.as_ref())
        .flat_map(|s| s.node.cas.iter());
    for c in local_ca.into_iter().chain(reported) {
        let key = if c.fingerprint.is_empty() {
            format!("{}@{}", c.name, c.not_after)
        } else {
            c.fingerprint.clone()
        };
        cas.entry(key).or_insert_with(|| c.clone());
    }
    let mut cas: Vec<CertInfo> = cas.into_values().filter(due).collect();
    cas.sort_by_key(|c| c.not_after);
    out.extend(cas.into_iter().map(|cert| Renewal::Ca { cert }));
    out
}

fn expiry(c: &CertInfo) -> String {
    if c.days_left < 0.0 {
        format!("expired on {}", date(c.not_after))
    } else {
        format!(
            "expires in {} day(s), on {}",
            c.days_left.floor() as i64,
            date(c.not_after)
        )
    }
}

/// The commands that renew what is due: `renew` then `apply` for the hosts. `out` is the output
/// directory (`None`: a placeholder).
pub fn renew_commands(inventory: &str, out: Option<&str>, due: &[Renewal]) -> Vec<String> {
    let hosts: Vec<String> = due
        .iter()
        .filter_map(|r| match r {
            Renewal::Host { host, .. } => Some(format!("--host {}", quote(host))),
            Renewal::Ca { .. } => None,
        })
        .collect();
    if hosts.is_empty() {
        return Vec::new();
    }
    let common = format!(
        "--inventory {} --out {}",
        quote(inventory),
        out.map(quote).unwrap_or_else(|| "<out-dir>".into())
    );
    let hosts = hosts.join(" ");
    vec![
        format!("nebula-provision renew {common} {hosts}"),
        format!("nebula-provision apply {common} {hosts}"),
    ]
}

/// The renewals section of the text report.
pub fn renewals_text(
    rows: &[HostRow],
    due: &[Renewal],
    within_days: u32,
    inventory: &str,
    out: Option<&str>,
    pki_dir: &str,
) -> String {
    let mut s = format!("renewals due within {within_days} day(s):");
    let unknown: Vec<&String> = rows
        .iter()
        .filter(|r| r.status.is_none())
        .map(|r| &r.host)
        .collect();
    if due.is_empty() {
        s.push_str(" none\n");
    } else {
        s.push('\n');
        for r in due {
            match r {
                Renewal::Host { host, cert } => {
                    let _ = writeln!(s, "  host {host}: certificate {}", expiry(cert));
                }
                Renewal::Ca { cert } => {
                    let _ = writeln!(
                        s,
                        "  CA `{}` ({}): {}",
                        cert.name,
                        cert.fingerprint,
                        expiry(cert)
                    );
                }
            }
        }
    }
    if !unknown.is_empty() {
        let _ = writeln!(
            s,
            "  not known (no answer): {}",
            unknown
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let cmds = renew_commands(inventory, out, due);
    if !cmds.is_empty() {
        s.push_str("to renew the host certificates and install them:\n");
        for c in cmds {
            let _ = writeln!(s, "  {c}");
        }
    }
    if due.iter().any(|r| matches!(r, Renewal::Ca { .. })) {
        let common = format!(
            "--inventory {} --out {}",
            quote(inventory),
            out.map(quote).unwrap_or_else(|| "<out-dir>".into())
        );
        let _ = writeln!(
            s,
            "the CA: nebula-provision has no command that rotates a CA. With the existing ones:\n  \
             move ca.crt and ca.key out of {pki}\n  \
             nebula-provision init --inventory {inv}\n  \
             nebula-provision apply {common}\n  \
             (apply re-issues every host certificate under the new CA and installs it; bundles \
             carry one CA, so hosts on the old and the new CA cannot make tunnels with each other \
             until every host has its new bundle)",
            pki = quote(pki_dir),
            inv = quote(inventory),
        );
    }
    s
}

/// Everything collected, as one JSON document (`--json`): per host the judgement and the
/// node's whole answer, then the renewals and their commands.
pub fn json_document(
    mesh: &Mesh,
    rows: &[HostRow],
    due: &[Renewal],
    within_days: u32,
    commands: &[String],
) -> serde_json::Value {
    let hosts: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "host": r.host,
                "state": r.state.as_str(),
                "reason": r.reason,
                "allowed_peers": r.allowed,
                "connected_peers": r.connected,
                "unexpected_peers": r.unexpected,
                "direct": r.direct,
                "relayed": r.relayed,
                "rtt_worst_ms": r.rtt.map(|(w, _)| w),
                "rtt_median_ms": r.rtt.map(|(_, m)| m),
                "cert_days_left": r.cert_days_left(),
                "response": r.raw,
            })
        })
        .collect();
    let renewals: Vec<serde_json::Value> = due
        .iter()
        .map(|r| match r {
            Renewal::Host { host, cert } => json!({
                "kind": "host", "host": host, "name": cert.name,
                "not_after": cert.not_after, "days_left": cert.days_left,
            }),
            Renewal::Ca { cert } => json!({
                "kind": "ca", "name": cert.name, "fingerprint": cert.fingerprint,
                "not_after": cert.not_after, "days_left": cert.days_left,
            }),
        })
        .collect();
    json!({
        "version": 1,
        "mesh": mesh.name,
        "renew_within_days": within_days,
        "hosts": hosts,
        "renewals": renewals,
        "renew_commands": commands,
    })
}

/// The CA of the PKI directory as a [`CertInfo`] (days counted from `now`), if there is one.
pub fn local_ca(mesh: &Mesh, now: i64) -> Option<CertInfo> {
    let pem = std::fs::read(crate::pki::ca_cert_path(&mesh.pki)).ok()?;
    let (cert, _) = nebula_cert::cert::Certificate::from_pem(&pem).ok()?;
    Some(CertInfo {
        name: cert.name().to_string(),
        fingerprint: cert.fingerprint_hex(),
        not_after: cert.not_after(),
        days_left: (cert.not_after() - now) as f64 / 86_400.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mesh_in, INV};
    use crate::StatusError;

    fn answer(text: &str) -> Answer {
        wire::parse_response(text.as_bytes())
    }

    /// lh answers with direct tunnels to both web hosts; web1 (wire::tests::GOOD) with a direct
    /// tunnel to lh and a relayed one to web2, which its firewall does not allow; web2 is down.
    fn fixture() -> (tempfile::TempDir, Mesh, Vec<HostRow>) {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let lh = wire::tests::GOOD
            .replace("\"name\": \"web1\", \"vpn_addrs\": [\"10.10.0.11\"]", "\"name\": \"lh\", \"vpn_addrs\": [\"10.10.0.1\"]")
            .replace("{\"name\": \"web1\", \"version\": 1, \"fingerprint\": \"aa11\", \"not_after\": 1767225600, \"days_left\": 12.5}",
                     "{\"name\": \"lh\", \"version\": 1, \"fingerprint\": \"aa22\", \"not_after\": 1800000000, \"days_left\": 300.9}")
            .replace("\"name\": \"lh\", \"vpn_addrs\": [\"10.10.0.1\"], \"groups\": [\"lighthouse\"]", "\"name\": \"web1\", \"vpn_addrs\": [\"10.10.0.11\"], \"groups\": [\"web\"]")
            .replace("\"rtt_ms\": 3.25", "\"rtt_ms\": 1.5")
            .replace("\"kind\": \"relayed\", \"via\": \"10.10.0.1\"}, \"rtt_ms\": null", "\"kind\": \"direct\", \"remote\": \"192.0.2.12:4242\"}, \"rtt_ms\": 20.25");
        let answers = vec![
            ("lh".to_string(), answer(&lh)),
            ("web1".to_string(), answer(wire::tests::GOOD)),
            (
                "web2".to_string(),
                Err(StatusError::Ssh {
                    status: "exit status: 255".into(),
                    stderr: "ssh: connect to host 192.0.2.12 port 22: Connection timed out".into(),
                }),
            ),
        ];
        let rows = rows(&mesh, answers);
        (t, mesh, rows)
    }

    #[test]
    fn the_table_is_golden() {
        let (_t, mesh, rows) = fixture();
        let want = "\
mesh `test-ca`: 3 host(s), 2 up, 1 down
HOST  STATE  TUNNELS  DIRECT  RELAYED  RTT-WORST  RTT-MEDIAN  CERT-DAYS  NOTE
lh    up     2/2      2       0        20.2ms     10.9ms      300
web1  up     1/1+1    1       1        3.2ms      3.2ms       12         tunnel the firewall does not allow: web2
web2  down   -        -       -        -          -           -          ssh failed (exit status: 255): ssh: connect to host 192.0.2.12 port 22: Connection timed out
";
        assert_eq!(table(&mesh, &rows), want);
    }

    #[test]
    fn renewals_name_the_hosts_and_the_commands() {
        let (_t, _mesh, rows) = fixture();
        let ca = CertInfo {
            name: "test-ca".into(),
            fingerprint: "cc00".into(),
            not_after: 1_768_000_000,
            days_left: 20.0,
        };
        // web1's certificate (12.5 days) is due; lh's (300) is not; the CA reported by the hosts
        // and the one in the PKI directory are the same one (by fingerprint), listed once.
        let due = renewals(&rows, Some(&ca), 30);
        assert_eq!(due.len(), 2, "{due:?}");
        assert!(matches!(&due[0], Renewal::Host { host, .. } if host == "web1"));
        assert!(matches!(&due[1], Renewal::Ca { cert } if cert.days_left == 20.0));
        let text = renewals_text(&rows, &due, 30, "inv.yml", Some("out dir"), "/p/pki");
        let want_start = "\
renewals due within 30 day(s):
  host web1: certificate expires in 12 day(s), on 2026-01-01
  CA `test-ca` (cc00): expires in 20 day(s), on 2026-01-09
  not known (no answer): web2
to renew the host certificates and install them:
  nebula-provision renew --inventory inv.yml --out 'out dir' --host web1
  nebula-provision apply --inventory inv.yml --out 'out dir' --host web1
the CA: nebula-provision has no command that rotates a CA. With the existing ones:
  move ca.crt and ca.key out of /p/pki
  nebula-provision init --inventory inv.yml
  nebula-provision apply --inventory inv.yml --out 'out dir'
";
        assert!(text.starts_with(want_start), "{text}");
        // Nothing due within 10 days.
        let none = renewals(&rows, None, 10);
        assert!(none.is_empty(), "{none:?}");
        let text = renewals_text(&rows, &none, 10, "inv.yml", None, "/p/pki");
        assert!(
            text.starts_with("renewals due within 10 day(s): none\n"),
            "{text}"
        );
        assert!(!text.contains("nebula-provision"));
        assert_eq!(
            renew_commands("inv.yml", None, &due)[0],
            "nebula-provision renew --inventory inv.yml --out <out-dir> --host web1"
        );
    }

    #[test]
    fn the_json_document_carries_rows_answers_and_renewals() {
        let (_t, mesh, rows) = fixture();
        let due = renewals(&rows, None, 30);
        let cmds = renew_commands("inv.yml", Some("out"), &due);
        let doc = json_document(&mesh, &rows, &due, 30, &cmds);
        let text = serde_json::to_string(&doc).expect("json");
        let back: serde_json::Value = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back["hosts"][1]["host"], "web1");
        assert_eq!(back["hosts"][1]["relayed"], 1);
        assert_eq!(back["hosts"][1]["unexpected_peers"][0], "web2");
        assert_eq!(
            back["hosts"][1]["response"]["status"]["node"]["uptime_seconds"],
            3600
        );
        assert_eq!(back["hosts"][2]["state"], "down");
        assert!(back["hosts"][2]["response"].is_null());
        assert_eq!(back["renewals"][0]["host"], "web1");
        assert_eq!(back["renew_commands"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_stalled_data_plane_is_down_and_rtt_statistics_hold() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let stalled =
            wire::tests::GOOD.replace("\"data_plane_alive\": true", "\"data_plane_alive\": false");
        let r = rows(&mesh, vec![("web1".into(), answer(&stalled))]);
        assert_eq!(r[0].state, State::Down);
        assert!(note(&r[0]).contains("stalled"));
        assert_eq!(peer_name(&mesh, "web1", &[]), "web1");
        assert_eq!(
            peer_name(&mesh, "renamed", &["10.10.0.12/24".into()]),
            "web2"
        );
        assert_eq!(
            peer_name(&mesh, "stranger", &["10.10.0.99".into()]),
            "stranger"
        );
        assert_eq!(worst_and_median(vec![]), None);
        assert_eq!(worst_and_median(vec![3.0, 1.0, 2.0]), Some((3.0, 2.0)));
        assert_eq!(
            worst_and_median(vec![4.0, 1.0, f64::NAN, 2.0, 3.0]),
            Some((4.0, 2.5))
        );
    }
}
