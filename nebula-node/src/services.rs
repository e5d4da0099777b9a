//! The node's services beside the data plane, owned by the control thread: the metrics exporter,
//! the control API, round-trip probes, certificate-expiry warnings and the systemd watchdog.
//! Started from the config at start-up and reconfigured by every reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nebula_core::engine::Outputs;

use crate::config::Config;
use crate::plane::Plane;
use crate::stats::StatsService;
use crate::status::api::{ApiContext, ApiServer};
use crate::status::{send_probes, ExpiryWatch, NodeFacts, WORKER_FRESH};
use crate::udp_batch::BatchSocket;

/// systemd's watchdog, when the unit has `WatchdogSec` (`WATCHDOG_USEC` in our environment).
struct Watchdog {
    /// Half the watchdog period: how often we ping.
    every: Duration,
    period: Duration,
    next: Instant,
}

impl Watchdog {
    fn from_env(now: Instant) -> Option<Watchdog> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Some(pid) = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        {
            if pid != std::process::id() {
                return None;
            }
        }
        let period = Duration::from_micros(usec);
        (!period.is_zero()).then_some(Watchdog {
            every: period / 2,
            period,
            next: now,
        })
    }
}

/// What the control thread runs besides the engine's timers.
pub struct Services {
    plane: Arc<Plane>,
    facts: NodeFacts,
    /// Cloned for the API's ping probes.
    udp: BatchSocket,
    stats: StatsService,
    api: Option<ApiServer>,
    api_path: Option<PathBuf>,
    test_hooks: bool,
    expiry: ExpiryWatch,
    watchdog: Option<Watchdog>,
}

impl Services {
    pub fn new(
        plane: Arc<Plane>,
        facts: NodeFacts,
        udp: BatchSocket,
        stats: StatsService,
    ) -> Services {
        Services {
            plane,
            facts,
            udp,
            stats,
            api: None,
            api_path: None,
            test_hooks: std::env::var("NEBULA_TEST_HOOKS").is_ok_and(|v| v == "1"),
            expiry: ExpiryWatch::default(),
            watchdog: Watchdog::from_env(Instant::now()),
        }
    }

    /// Start, move or stop each service as `cfg` says (at start-up and on every reload).
    pub fn apply(&mut self, cfg: &Config) {
        self.stats.apply(&cfg.stats);
        if self.api_path != cfg.control.socket || (self.api.is_none() && self.api_path.is_some()) {
            self.api = None;
            self.api_path = cfg.control.socket.clone();
            if let Some(path) = &self.api_path {
                let ctx = match self.udp.try_clone() {
                    Ok(udp) => ApiContext {
                        plane: Arc::clone(&self.plane),
                        facts: self.facts.clone(),
                        udp,
                        test_hooks: self.test_hooks,
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "Control API not started");
                        return;
                    }
                };
                match ApiServer::start(path, ctx) {
                    Ok(s) => self.api = Some(s),
                    // Not fatal: the node works without its API.
                    Err(e) => tracing::warn!(error = %e, "Control API not started"),
                }
            }
        }
    }

    /// The periodic work, about once a second: probes (into `out`), expiry warnings, watchdog.
    pub fn tick(&mut self, now: Instant, out: &mut Outputs) {
        send_probes(&self.plane, now, out);
        self.expiry
            .check(&self.plane, now, crate::clock::unix_secs());
        if let Some(w) = &mut self.watchdog {
            if now >= w.next {
                w.next = now + w.every;
                // Only while the data plane is alive: a hung worker gets the node restarted.
                if self.plane.workers_alive(now, WORKER_FRESH.min(w.period)) {
                    crate::notify::notify("WATCHDOG=1");
                }
            }
        }
    }

    /// When [`Services::tick`] must run next at the latest (the watchdog's next ping).
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.watchdog.as_ref().map(|w| w.next)
    }

    /// Stop what runs on threads of its own.
    pub fn stop(&mut self) {
        self.api = None;
        self.stats.stop();
    }
}
