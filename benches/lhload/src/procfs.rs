//! What the benchmark reads from `/proc` about the lighthouse under test (and about itself):
//! CPU time from `stat`, resident memory from `status`, UDP receive drops from `net/udp`.

use std::fs;

use anyhow::{anyhow, Context, Result};

/// User + system CPU time of a process, in clock ticks (all its threads).
pub fn parse_stat_cpu_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or ')': split after the
    // last ')'. What follows starts with field 3 (state); utime is field 14, stime field 15.
    let close = stat
        .rfind(')')
        .ok_or_else(|| anyhow!("stat line has no ')': {stat:?}"))?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        let s = fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("stat line has no field {n}"))?;
        s.parse::<u64>()
            .with_context(|| format!("stat field {n} is not a number: {s:?}"))
    };
    Ok(field(14)? + field(15)?)
}

/// `VmRSS` from a `/proc/PID/status` text, in KiB.
pub fn parse_status_rss_kib(status: &str) -> Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("status has no VmRSS line"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let n = parts
        .next()
        .ok_or_else(|| anyhow!("empty VmRSS line"))?
        .parse::<u64>()
        .with_context(|| format!("bad VmRSS line {line:?}"))?;
    match parts.next() {
        Some("kB") => Ok(n),
        other => Err(anyhow!("VmRSS unit is {other:?}, expected kB")),
    }
}

/// The sum of the `drops` column over every IPv4 UDP socket bound to local `port` in a
/// `/proc/net/udp` text (several with `SO_REUSEPORT`).
pub fn parse_net_udp_drops(text: &str, port: u16) -> Result<u64> {
    let want = format!("{port:04X}");
    let mut total = 0;
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(local) = fields.get(1) else { continue };
        let Some((_, local_port)) = local.split_once(':') else {
            continue;
        };
        if local_port != want {
            continue;
        }
        let drops = fields
            .last()
            .ok_or_else(|| anyhow!("empty /proc/net/udp line"))?;
        total += drops
            .parse::<u64>()
            .with_context(|| format!("bad drops field in {line:?}"))?;
    }
    Ok(total)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux unless told otherwise).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions and touches no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this process).
pub fn cpu_seconds(pid: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_stat_cpu_ticks(&text)? as f64 / clock_ticks_per_second() as f64)
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_rss_kib(&text)
}

/// UDP receive drops of the sockets bound to `port`.
pub fn udp_drops(port: u16) -> Result<u64> {
    let text = fs::read_to_string("/proc/net/udp").context("reading /proc/net/udp")?;
    parse_net_udp_drops(&text, port)
}

/// The 1-minute load average, for the report.
pub fn load_average() -> Option<String> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_utime_plus_stime() {
        let stat = "4242 (nebula) S 1 4242 4242 0 -1 4194560 1234 0 0 0 517 83 0 0 20 0 5 0 \
                    100 123456 789 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat).unwrap(), 600);
    }

    #[test]
    fn stat_command_name_with_spaces_and_parens() {
        let stat = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat_cpu_ticks(stat).unwrap(), 15);
    }

    #[test]
    fn stat_truncated_is_an_error() {
        assert!(parse_stat_cpu_ticks("7 (x) R 1 2").is_err());
        assert!(parse_stat_cpu_ticks("no parens").is_err());
    }

    #[test]
    fn status_rss() {
        let status = "Name:\tnebula\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_status_rss_kib(status).unwrap(), 12345);
        assert!(parse_status_rss_kib("Name:\tx\n").is_err());
        assert!(parse_status_rss_kib("VmRSS:\t12 MB\n").is_err());
    }

    #[test]
    fn net_udp_drops_summed_for_the_port() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  123: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1111 2 0000000000000000 7\n\
  124: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1112 2 0000000000000000 5\n\
  125: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1113 2 0000000000000000 99\n";
        assert_eq!(parse_net_udp_drops(text, 8080).unwrap(), 12);
        assert_eq!(parse_net_udp_drops(text, 53).unwrap(), 99);
        assert_eq!(parse_net_udp_drops(text, 1).unwrap(), 0);
    }

    #[test]
    fn own_process_is_readable() {
        assert!(rss_kib("self").unwrap() > 0);
        assert!(cpu_seconds("self").unwrap() >= 0.0);
    }
}
