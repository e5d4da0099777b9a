//! The `stats` section at run time: Go Nebula's metric set, exported to Prometheus (an HTTP
//! endpoint) or Graphite (lines pushed every interval), started, moved and stopped by reloads.
//!
//! The numbers come from three places: the engine's [`nebula_core::engine::StatsSnapshot`]
//! (taken under its lock once per scrape or flush), the node's message counters (atomics, see
//! [`counters`]) and the sockets (`SO_MEMINFO`). Nothing is computed per packet for export.

pub mod graphite;
pub mod metrics;
pub mod peers;
pub mod prometheus;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{StatsBackend, StatsConfig};
use crate::plane::Plane;
use metrics::{Groups, Inputs, Metric};

/// Where the metric list is read from.
pub struct Sources {
    pub plane: Arc<Plane>,
    /// Duplicates of the data-plane sockets' descriptors, in worker order (`udp.<i>.*`).
    pub sockets: Vec<OwnedFd>,
    /// `routines`.
    pub routines: usize,
}

impl Sources {
    /// Go's metric list now.
    pub fn gather(&self, groups: Groups) -> Vec<Metric> {
        let snapshot = self.plane.lock().stats(Instant::now());
        let fds: Vec<_> = self.sockets.iter().map(|s| s.as_fd()).collect();
        metrics::collect(&Inputs {
            engine: &snapshot,
            messages: self.plane.counters().read(),
            groups,
            routines: self.routines,
            sockets: &fds,
        })
    }
}

/// The running exporter, if any, and the config it runs with.
pub struct StatsService {
    sources: Arc<Sources>,
    running: Option<Running>,
}

struct Running {
    config: StatsConfig,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl StatsService {
    pub fn new(sources: Sources) -> StatsService {
        StatsService {
            sources: Arc::new(sources),
            running: None,
        }
    }

    /// Run with `config`: start, stop, or restart the exporter if the section changed (a reload
    /// with the same section changes nothing). A failure (the port is taken, the Graphite host
    /// does not resolve) is logged and leaves stats off until a reload with a working config.
    pub fn apply(&mut self, config: &StatsConfig) {
        if self.running.as_ref().is_some_and(|r| &r.config == config) {
            return;
        }
        self.stop();
        match start(&self.sources, config) {
            Ok(Some(r)) => self.running = Some(r),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "Failed to start stats"),
        }
    }

    /// The Prometheus endpoint's address while it runs (tests, logs).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Stop the exporter (its thread ends within a fraction of a second).
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop.store(true, Ordering::Release);
            let _ = r.thread.join();
        }
    }
}

impl Drop for StatsService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why stats could not start.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("stats.listen {listen:?}: {source}")]
    Listen {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stats.host {host:?}: {reason}")]
    Host { host: String, reason: String },
    #[error("stats: cannot start its thread: {0}")]
    Thread(#[source] std::io::Error),
}

fn start(sources: &Arc<Sources>, config: &StatsConfig) -> Result<Option<Running>, StatsError> {
    let groups = Groups {
        messages: config.message_metrics,
        lighthouse: config.lighthouse_metrics,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (s, flag) = (Arc::clone(sources), Arc::clone(&stop));
    let thread = match &config.backend {
        StatsBackend::None => return Ok(None),
        StatsBackend::Prometheus {
            listen,
            path,
            namespace,
            subsystem,
        } => {
            let bind = |e| StatsError::Listen {
                listen: listen.clone(),
                source: e,
            };
            let addr = prometheus::listen_addr(listen).map_err(bind)?;
            let listener = TcpListener::bind(addr).map_err(bind)?;
            tracing::info!(addr = %addr, path = %path, "Starting prometheus stats listener");
            let (path, ns, sub) = (path.clone(), namespace.clone(), subsystem.clone());
            let peer_limit = config.peer_metrics;
            std::thread::Builder::new()
                .name("nebula-stats".into())
                .spawn(move || {
                    let page = || {
                        let (peers, cas) = peers::collect(
                            &s.plane,
                            peer_limit,
                            Instant::now(),
                            crate::clock::unix_secs(),
                        );
                        prometheus::render_with_peers(s.gather(groups), &peers, &cas, &ns, &sub)
                    };
                    prometheus::serve(listener, &path, &flag, &page);
                })
        }
        StatsBackend::Graphite {
            protocol,
            host,
            prefix,
        } => {
            if protocol != "tcp" {
                return Err(StatsError::Host {
                    host: host.clone(),
                    reason: format!("protocol {protocol:?} is not supported (tcp is)"),
                });
            }
            let to = resolve(host)?;
            let (prefix, interval) = (prefix.clone(), config.interval);
            tracing::info!(addr = %to, prefix = %prefix, interval = ?interval, "Starting graphite stats");
            std::thread::Builder::new()
                .name("nebula-stats".into())
                .spawn(move || graphite_loop(&s, groups, to, &prefix, interval, &flag))
        }
    }
    .map_err(StatsError::Thread)?;
    Ok(Some(Running {
        config: config.clone(),
        stop,
        thread,
    }))
}

fn resolve(host: &str) -> Result<SocketAddr, StatsError> {
    let bad = |reason: String| StatsError::Host {
        host: host.to_string(),
        reason,
    };
    host.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("no address".into()))
}

/// Every `interval`, gather and send; a failed send is logged and retried at the next flush.
fn graphite_loop(
    s: &Sources,
    groups: Groups,
    to: SocketAddr,
    prefix: &str,
    interval: Duration,
    stop: &AtomicBool,
) {
    let mut next = Instant::now() + interval;
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        next += interval;
        let text = graphite::lines(
            &s.gather(groups),
            prefix,
            interval,
            crate::clock::unix_secs(),
        );
        if let Err(e) = graphite::send(to, &text) {
            tracing::error!(error = %e, addr = %to, "Graphite export failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use nebula_core::engine::StatsSnapshot;

    use super::metrics::{collect, Groups, Inputs};
    use super::peers::{CaSeries, PeerSeries};
    use super::prometheus::render_with_peers;
    use crate::counters::MessageCounts;

    /// Every metric the Grafana dashboard in `config/` queries is one we export (under the
    /// `nebula` namespace it assumes).
    #[test]
    fn the_dashboard_queries_only_metrics_we_export() {
        let snapshot = StatsSnapshot::default();
        let list = collect(&Inputs {
            engine: &snapshot,
            messages: MessageCounts::default(),
            groups: Groups {
                messages: true,
                lighthouse: true,
            },
            routines: 1,
            sockets: &[],
        });
        let peer = PeerSeries {
            name: "p".into(),
            vpn_addr: "10.0.0.2".into(),
            traffic: Default::default(),
            rtt_seconds: Some(0.001),
            relayed: false,
            handshake_age_seconds: 1,
            cert_ttl_seconds: 1,
        };
        let ca = CaSeries {
            name: "ca".into(),
            ttl_seconds: 1,
        };
        let page = render_with_peers(list, &[peer], &[ca], "nebula", "");
        let exported: BTreeSet<&str> = page
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../config/grafana-dashboard.json"))
                .expect("dashboard JSON");
        let mut queried = BTreeSet::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with("nebula_") || word.starts_with("process_") {
                        queried.insert(word.to_string());
                    }
                }
            }
        }
        assert!(queried.len() >= 10, "{queried:?}");
        let missing: Vec<_> = queried
            .iter()
            .filter(|q| !exported.contains(q.as_str()))
            .collect();
        assert!(missing.is_empty(), "the dashboard queries {missing:?}");
    }
}
