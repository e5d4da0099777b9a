//! `nebula-ctl`: the operator's view of a running node, over its control API (`control.socket`):
//! `status` (a table, or `--json`), `ping HOST`, `cert` and `health` (an exit code for monitors).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};

use nebula_node::status::api::call;
use nebula_node::status::report::{
    Command, Path, PingResult, Request, Response, Status, API_VERSION, DEFAULT_SOCKET,
};

#[derive(Parser)]
#[command(name = "nebula-ctl", version, about = "Query a running nebula node")]
struct Cli {
    /// The node's control socket (`control.socket` in its config).
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Who is connected, how, and how well.
    Status {
        /// The API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Probe a peer (certificate name or vpn address) with Nebula test messages.
    Ping {
        host: String,
        /// Probes to send (1 to 20).
        #[arg(short = 'c', long, default_value_t = 3)]
        count: u32,
    },
    /// Our certificate and CAs, and the days they have left.
    Cert,
    /// Exit 0 when healthy, 1 when not: a lighthouse is configured and none is reachable, a
    /// certificate (ours or a CA) expires within --days, or the data plane stalled.
    Health {
        /// Warn this many days before a certificate expires.
        #[arg(long, default_value_t = 7.0)]
        days: f64,
        #[arg(long)]
        json: bool,
    },
    /// Test hook: stall the node's data plane (only with NEBULA_TEST_HOOKS=1 in the node's
    /// environment).
    #[command(hide = true)]
    DebugStallWorkers,
}

fn ask(cli: &Cli, command: Command, timeout: Duration) -> Result<Response> {
    let r = call(
        &cli.socket,
        &Request {
            version: API_VERSION,
            command,
        },
        timeout,
    )
    .with_context(|| format!("cannot talk to the node at {}", cli.socket.display()))?;
    if !r.ok {
        bail!("{}", r.error.unwrap_or_else(|| "the node refused".into()));
    }
    Ok(r)
}

fn status_of(cli: &Cli) -> Result<(Response, Status)> {
    let r = ask(cli, Command::Status, Duration::from_secs(10))?;
    let s = r
        .status
        .clone()
        .ok_or_else(|| anyhow!("the node's answer has no status"))?;
    Ok((r, s))
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn path_text(p: &Path) -> String {
    match p {
        Path::Direct { remote } => format!("direct {remote}"),
        Path::Relayed { via } => format!("relay via {via}"),
    }
}

/// The status as a person reads it at a glance.
pub fn status_table(s: &Status) -> String {
    let n = &s.node;
    let mut out = String::new();
    let lhs: Vec<String> = n
        .lighthouses
        .iter()
        .map(|l| {
            format!(
                "{} ({})",
                l.vpn_addr,
                if l.reachable { "up" } else { "UNREACHABLE" }
            )
        })
        .collect();
    out.push_str(&format!(
        "{} {}  cert v{} {:.0} days left{}{}\n",
        n.name,
        n.vpn_addrs.join(","),
        n.cert.version,
        n.cert.days_left,
        if n.am_lighthouse { "  lighthouse" } else { "" },
        if n.am_relay { "  relay" } else { "" },
    ));
    out.push_str(&format!(
        "listen {}  lighthouses {}  relays {}\n\n",
        n.listen.join(","),
        if lhs.is_empty() {
            "-".into()
        } else {
            lhs.join(", ")
        },
        if n.relays.is_empty() {
            "-".into()
        } else {
            n.relays.join(",")
        },
    ));
    let mut rows = vec![[
        "PEER".to_string(),
        "VPN ADDR".into(),
        "PATH".into(),
        "RTT".into(),
        "RX".into(),
        "TX".into(),
        "UP".into(),
        "CERT".into(),
    ]];
    for t in &s.tunnels {
        rows.push([
            t.name.clone(),
            t.vpn_addrs.first().cloned().unwrap_or_default(),
            path_text(&t.path),
            t.rtt_ms.map(|r| format!("{r:.2} ms")).unwrap_or("-".into()),
            bytes(t.rx_bytes),
            bytes(t.tx_bytes),
            age(t.handshake_age_seconds),
            format!("{:.0}d", t.cert_days_left),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if s.tunnels.is_empty() {
        out.push_str("(no tunnels)\n");
    }
    out
}

fn print_ping(p: &PingResult) -> bool {
    let mut any = false;
    for probe in &p.probes {
        match (probe.rtt_ms, &probe.path) {
            (Some(ms), Some(path)) => {
                any = true;
                println!(
                    "pong from {} ({}) via {} in {ms:.2} ms",
                    p.name,
                    p.vpn_addr,
                    path_text(path)
                )
            }
            (Some(ms), None) => {
                any = true;
                println!("pong from {} ({}) in {ms:.2} ms", p.name, p.vpn_addr)
            }
            (None, _) => println!(
                "timeout waiting for {} ({}), probe {}",
                p.name, p.vpn_addr, probe.seq
            ),
        }
    }
    any
}

/// The reasons `health` fails, empty when healthy.
fn health_problems(s: &Status, days: f64) -> Vec<String> {
    let h = &s.health;
    let mut bad = Vec::new();
    if h.lighthouses > 0 && h.lighthouses_reachable == 0 {
        bad.push(format!("no lighthouse reachable (0 of {})", h.lighthouses));
    }
    if s.node.cert.days_left <= days {
        bad.push(format!(
            "our certificate {:?} expires in {:.1} days",
            s.node.cert.name, s.node.cert.days_left
        ));
    }
    for ca in &s.node.cas {
        if ca.days_left <= days {
            bad.push(format!(
                "CA {:?} expires in {:.1} days",
                ca.name, ca.days_left
            ));
        }
    }
    if !h.data_plane_alive {
        bad.push("the data plane stalled".into());
    }
    bad
}

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.cmd {
        Cmd::Status { json } => {
            let (r, s) = status_of(cli)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", status_table(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ping { host, count } => {
            let timeout = Duration::from_secs(u64::from((*count).clamp(1, 20)) * 3 + 5);
            let r = ask(
                cli,
                Command::Ping {
                    host: host.clone(),
                    count: *count,
                },
                timeout,
            )?;
            let p = r
                .ping
                .ok_or_else(|| anyhow!("the node's answer has no ping result"))?;
            Ok(if print_ping(&p) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Cert => {
            let (_, s) = status_of(cli)?;
            let c = &s.node.cert;
            println!(
                "certificate {:?} v{} {}\n  vpn addresses {}\n  fingerprint {}\n  expires {} ({:.1} days left)",
                c.name,
                c.version,
                if c.days_left <= 0.0 { "EXPIRED" } else { "" },
                s.node.vpn_addrs.join(", "),
                c.fingerprint,
                unix_date(c.not_after),
                c.days_left
            );
            for ca in &s.node.cas {
                println!(
                    "CA {:?} v{}\n  fingerprint {}\n  expires {} ({:.1} days left)",
                    ca.name,
                    ca.version,
                    ca.fingerprint,
                    unix_date(ca.not_after),
                    ca.days_left
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Health { days, json } => {
            let (_, s) = status_of(cli)?;
            let bad = health_problems(&s, *days);
            if *json {
                println!(
                    "{}",
                    serde_json::json!({"healthy": bad.is_empty(), "problems": bad, "health": s.health})
                );
            } else if bad.is_empty() {
                println!("healthy");
            } else {
                for b in &bad {
                    println!("unhealthy: {b}");
                }
            }
            Ok(if bad.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::DebugStallWorkers => {
            ask(cli, Command::DebugStallWorkers, Duration::from_secs(5))?;
            println!("data plane stalled");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds (civil-from-days, no date library needed).
fn unix_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nebula-ctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(unix_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(unix_date(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(unix_date(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn sizes_and_ages() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(age(59), "59s");
        assert_eq!(age(61), "1m01s");
        assert_eq!(age(7200 + 60), "2h01m");
        assert_eq!(age(2 * 86_400 + 3600), "2d01h");
    }
}
