//! `lhload`: a lighthouse load benchmark. Starts a lighthouse (ours or Go Nebula) on loopback and
//! grows it to N live tunnels with simulated hosts, measuring handshake rate, CPU and memory.

mod driver;
mod procfs;
mod report;
mod setup;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Parser;

use crate::driver::{send_garbage, BatchStats, Driver};
use crate::report::{GarbageResult, SizeResult, TargetResult, Window};
use crate::setup::{Ca, Lighthouse};

/// Lighthouse load benchmark: handshakes/s, lighthouse CPU-s per 1,000 handshakes and RSS per
/// 1,000 live tunnels at several tunnel counts, for our nebula and Go Nebula in the same run.
#[derive(Parser, Debug)]
#[command(name = "lhload")]
struct Args {
    /// Targets to run, in order: `ours`, `go` (comma-separated).
    #[arg(long, default_value = "go,ours", value_delimiter = ',')]
    targets: Vec<String>,
    /// Our nebula binary.
    #[arg(long, default_value = "target/release/nebula")]
    ours: PathBuf,
    /// Go Nebula's binary.
    #[arg(long, default_value = "/opt/go-nebula/1.11.0/usr/bin/nebula")]
    go: PathBuf,
    /// Live tunnel counts to measure at (ascending).
    #[arg(long, default_value = "1000,10000,50000,100000", value_delimiter = ',')]
    sizes: Vec<u64>,
    /// New hosts per measurement window.
    #[arg(long, default_value_t = 2000)]
    window: usize,
    /// Handshakes in flight.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Loopback UDP sockets the simulated hosts share (distinct source ports).
    #[arg(long, default_value_t = 8)]
    sockets: usize,
    /// Seconds each size may take (growing to it and all its measurements) before the target is
    /// reported "timed out" and its larger sizes skipped.
    #[arg(long, default_value_t = 600)]
    phase_timeout: u64,
    /// Sizes at which to run the garbage measurements.
    #[arg(long, default_value = "1000,10000", value_delimiter = ',')]
    garbage_sizes: Vec<u64>,
    /// No garbage measurements at all.
    #[arg(long)]
    no_garbage: bool,
    /// Garbage stage-1 datagrams sent (as fast as possible) for the CPU-per-garbage figure.
    #[arg(long, default_value_t = 50_000)]
    garbage_count: u64,
    /// Garbage datagrams per second sent while real handshakes are measured.
    #[arg(long, default_value_t = 10_000.0)]
    garbage_rate: f64,
    /// Directory for certificates, configs and lighthouse logs (default: a new one under /tmp).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Write PREFIX.txt and PREFIX.json.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.sizes.windows(2).any(|w| w[0] >= w[1]) || args.sizes.is_empty() {
        return Err(anyhow!("--sizes must be ascending and non-empty"));
    }
    let workdir = match &args.workdir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("lhload-{}", std::process::id())),
    };
    let load_start = procfs::load_average();
    let started = setup::unix_now();
    let mut results = Vec::new();
    for target in &args.targets {
        let binary = match target.as_str() {
            "ours" => args.ours.clone(),
            "go" => args.go.clone(),
            other => return Err(anyhow!("unknown target {other:?} (ours, go)")),
        };
        let label = if target == "go" { "go-1.11.0" } else { "ours" };
        eprintln!("== {label}: {}", binary.display());
        let r = run_target(&args, label, &binary, &workdir.join(target));
        let r = r.unwrap_or_else(|e| TargetResult::failed(label, &binary, format!("{e:#}")));
        results.push(r);
    }
    let text = report::text(&results, &args_summary(&args), load_start.as_deref());
    print!("{text}");
    if let Some(prefix) = &args.out {
        let txt = prefix.with_extension("txt");
        let json = prefix.with_extension("json");
        std::fs::write(&txt, &text).with_context(|| format!("writing {}", txt.display()))?;
        let j = report::json(
            &results,
            &args_summary(&args),
            load_start.as_deref(),
            started,
        );
        std::fs::write(&json, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {}", json.display()))?;
        eprintln!("wrote {} and {}", txt.display(), json.display());
    }
    Ok(())
}

fn args_summary(a: &Args) -> String {
    format!(
        "window {} handshakes, {} in flight, {} sockets, phase timeout {} s, garbage {} datagrams \
         (CPU figure) and {}/s (during handshakes)",
        a.window, a.in_flight, a.sockets, a.phase_timeout, a.garbage_count, a.garbage_rate
    )
}

fn run_target(
    args: &Args,
    label: &str,
    binary: &std::path::Path,
    dir: &std::path::Path,
) -> Result<TargetResult> {
    if !binary.exists() {
        return Err(anyhow!("{} not found", binary.display()));
    }
    let ca = Ca::new()?;
    let mut lh = Lighthouse::start(binary, dir, &ca)?;
    let result = measure(args, label, binary, &mut lh, ca);
    let result = result.map_err(|e| anyhow!("{e:#}\nlighthouse log tail:\n{}", lh.log_tail()));
    lh.stop();
    result
}

fn measure(
    args: &Args,
    label: &str,
    binary: &std::path::Path,
    lh: &mut Lighthouse,
    ca: Ca,
) -> Result<TargetResult> {
    let pid = lh.pid();
    let mut d = Driver::new(ca, lh.addr, args.sockets, args.in_flight)?;
    // Ready: one handshake answered.
    let first = d.prepare(1)?;
    let ready_by = Instant::now() + Duration::from_secs(20);
    let mut ready = false;
    let mut probe = Some(first);
    while Instant::now() < ready_by {
        lh.check_alive()?;
        let batch = match probe.take() {
            Some(b) => b,
            None => d.prepare(1)?,
        };
        let s = d.run(
            batch,
            (Instant::now() + Duration::from_secs(2)).min(ready_by),
        )?;
        if s.completed == 1 {
            ready = true;
            break;
        }
    }
    if !ready {
        return Err(anyhow!("the lighthouse never answered a handshake"));
    }
    let mut out = TargetResult::new(label, binary);
    out.rss_start_kib = procfs::rss_kib(&pid)?;
    for &size in &args.sizes {
        let deadline = Instant::now() + Duration::from_secs(args.phase_timeout);
        match measure_size(args, &pid, lh, &mut d, size, deadline, &mut out) {
            Ok(None) => {}
            Ok(Some(partial)) => {
                out.note = Some(format!(
                    "size {size}: timed out after {} s ({partial}); larger sizes skipped",
                    args.phase_timeout
                ));
                eprintln!("   {}", out.note.as_deref().unwrap_or_default());
                break;
            }
            Err(e) => {
                out.note = Some(format!("size {size}: {e:#}"));
                break;
            }
        }
    }
    Ok(out)
}

/// Grows to `size`, measures a window, and the garbage figures if asked. `Ok(Some(what))`: timed
/// out, with what was done by then.
fn measure_size(
    args: &Args,
    pid: &str,
    lh: &mut Lighthouse,
    d: &mut Driver,
    size: u64,
    deadline: Instant,
    out: &mut TargetResult,
) -> Result<Option<String>> {
    let grow_start = Instant::now();
    let live_start = d.live;
    let grow_cpu0 = procfs::cpu_seconds(pid)?;
    let mut grow = BatchStats::default();
    while d.live < size {
        lh.check_alive()?;
        let n = (size - d.live).min(4096) as usize;
        let batch = d.prepare(n)?;
        let s = d.run(batch, deadline)?;
        grow.add(&s);
        if s.timed_out {
            let cpu = procfs::cpu_seconds(pid)? - grow_cpu0;
            return Ok(Some(format!(
                "grew from {live_start} to {} live tunnels in {:.0} s, lighthouse CPU {cpu:.1} s = \
                 {:.2} CPU-s per 1k handshakes, RSS {:.1} MiB",
                d.live,
                grow_start.elapsed().as_secs_f64(),
                cpu * 1000.0 / grow.completed.max(1) as f64,
                procfs::rss_kib(pid)? as f64 / 1024.0
            )));
        }
    }
    let grow_cpu = procfs::cpu_seconds(pid)? - grow_cpu0;
    let live = d.live;
    let rss_kib = procfs::rss_kib(pid)?;
    let w = window(d, pid, args.window, deadline)?;
    if w.stats.timed_out {
        return Ok(Some(format!(
            "the window at {live} tunnels did {} handshakes in {:.0} s",
            w.stats.completed,
            w.stats.elapsed.as_secs_f64()
        )));
    }
    let r = SizeResult {
        live_tunnels: live,
        rss_kib,
        grow_handshakes: grow.completed,
        grow_lighthouse_cpu_s: grow_cpu,
        grow_wall_s: grow_start.elapsed().as_secs_f64() - w.stats.elapsed.as_secs_f64(),
        window: w,
    };
    eprintln!("   {}", r.one_line());
    out.sizes.push(r);
    if !args.no_garbage && args.garbage_sizes.contains(&size) {
        let g = garbage(args, pid, lh, d, deadline)?;
        eprintln!("   {}", g.one_line());
        out.garbage.push(g);
    }
    Ok(None)
}

fn window(d: &mut Driver, pid: &str, n: usize, deadline: Instant) -> Result<Window> {
    let batch = d.prepare(n)?;
    let cpu0 = procfs::cpu_seconds(pid)?;
    let self0 = procfs::cpu_seconds("self")?;
    let stats = d.run(batch, deadline)?;
    Ok(Window {
        lighthouse_cpu_s: procfs::cpu_seconds(pid)? - cpu0,
        generator_cpu_s: procfs::cpu_seconds("self")? - self0,
        stats,
    })
}

fn garbage(
    args: &Args,
    pid: &str,
    lh: &mut Lighthouse,
    d: &mut Driver,
    deadline: Instant,
) -> Result<GarbageResult> {
    let port = lh.addr.port();
    let len = d.stage1_len;
    let live = d.live;
    // 1. Garbage alone, as fast as one socket sends: lighthouse CPU per datagram it read.
    let never = AtomicBool::new(false);
    let drops0 = procfs::udp_drops(port).unwrap_or(0);
    let cpu0 = procfs::cpu_seconds(pid)?;
    let t0 = Instant::now();
    let sent = send_garbage(lh.addr, len, args.garbage_count, None, &never)?;
    // Let the lighthouse finish what is queued in its socket.
    std::thread::sleep(Duration::from_millis(500));
    let wall = t0.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds(pid)? - cpu0;
    let dropped = procfs::udp_drops(port).unwrap_or(0).saturating_sub(drops0);
    lh.check_alive()?;
    // 2. Real handshakes while garbage flows at a fixed rate.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let target = lh.addr;
    let rate = args.garbage_rate;
    let sender =
        std::thread::spawn(move || send_garbage(target, len, u64::MAX, Some(rate), &stop2));
    let drops1 = procfs::udp_drops(port).unwrap_or(0);
    let w = window(d, pid, args.window, deadline);
    stop.store(true, Ordering::Relaxed);
    let during_sent = sender
        .join()
        .map_err(|_| anyhow!("the garbage thread panicked"))??;
    let during_dropped = procfs::udp_drops(port).unwrap_or(0).saturating_sub(drops1);
    let w = w?;
    Ok(GarbageResult {
        live_tunnels: live,
        sent,
        dropped,
        wall_s: wall,
        lighthouse_cpu_s: cpu,
        during_rate: rate,
        during_sent,
        during_dropped,
        window: w,
    })
}
