//! What the data-plane workers and the control thread share: the engine behind one lock (for
//! what the snapshot cannot do), the engine's latest data table, and the control thread's alarm.
//!
//! Workers handle ordinary packets with the data table alone: they load it with one atomic read
//! per packet (a lock only on the rare packet after the engine published a new one). Packets the
//! table cannot handle take the engine lock, one packet at a time.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nebula_core::dataplane::DataTable;
use nebula_core::engine::Engine;

use crate::counters::NodeCounters;
use crate::rtt::RttTable;

/// The shared state of one node.
pub struct Plane {
    engine: Mutex<Engine>,
    table: Mutex<Option<Arc<DataTable>>>,
    /// Generation of the table in `table` (0: none yet).
    generation: AtomicU64,
    /// When the control thread next wakes for the engine's timers, in nanoseconds after `base`.
    control_deadline: AtomicU64,
    base: Instant,
    /// Write end of the control thread's wake-up pipe.
    wake: UnixStream,
    /// Datagrams by type, for the `messages.*` metrics.
    counters: NodeCounters,
    /// Round trips to peers (status, `ping`, health).
    rtt: RttTable,
    /// Each worker's last trip round its loop, in nanoseconds after `base` (the watchdog's and
    /// `health`'s view of the data plane).
    heartbeats: Vec<AtomicU64>,
    /// Test hook: the workers stop working (see `nebula-ctl`'s debug command).
    stalled: AtomicBool,
}

impl Plane {
    /// Share `engine`; `wake` is written to when the engine needs its timers sooner than the
    /// control thread planned.
    pub fn new(mut engine: Engine, wake: UnixStream) -> Plane {
        let first = engine.data_table();
        let generation = first.as_ref().map(|t| t.generation()).unwrap_or(0);
        Plane {
            engine: Mutex::new(engine),
            table: Mutex::new(first),
            generation: AtomicU64::new(generation),
            control_deadline: AtomicU64::new(u64::MAX),
            base: Instant::now(),
            wake,
            counters: NodeCounters::default(),
            rtt: RttTable::default(),
            heartbeats: Vec::new(),
            stalled: AtomicBool::new(false),
        }
    }

    /// The node's message counters.
    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }

    /// Round trips to peers.
    pub fn rtt(&self) -> &RttTable {
        &self.rtt
    }

    /// How many workers report heartbeats (set once, before the plane is shared).
    pub fn set_workers(&mut self, n: usize) {
        let now = self.nanos(Instant::now());
        self.heartbeats = (0..n).map(|_| AtomicU64::new(now)).collect();
    }

    /// Worker `i` went round its loop.
    pub fn beat(&self, i: usize) {
        if let Some(h) = self.heartbeats.get(i) {
            h.store(self.nanos(Instant::now()), Ordering::Relaxed);
        }
    }

    /// Every worker beat within `within` of `now`.
    pub fn workers_alive(&self, now: Instant, within: Duration) -> bool {
        let now = self.nanos(now);
        let limit = u64::try_from(within.as_nanos()).unwrap_or(u64::MAX);
        self.heartbeats
            .iter()
            .all(|h| now.saturating_sub(h.load(Ordering::Relaxed)) <= limit)
    }

    /// Test hook: make the workers stop handling packets and beating.
    pub fn stall_workers(&self) {
        self.stalled.store(true, Ordering::Release);
    }

    /// Whether the workers were told to stall.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// The engine, locked. Prefer [`Plane::with_engine`], which also publishes what changed.
    pub fn lock(&self) -> MutexGuard<'_, Engine> {
        // The engine is a state machine whose calls complete or change nothing of substance; a
        // worker that panicked mid-call leaves it usable.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the locked engine, then publish its new data table (if any) and wake the
    /// control thread if the engine's next timer moved earlier.
    pub fn with_engine<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let mut engine = self.lock();
        let r = f(&mut engine);
        self.publish(&mut engine);
        if let Some(next) = engine.poll_timeout() {
            if self.nanos(next) < self.control_deadline.load(Ordering::Acquire) {
                self.wake_control();
            }
        }
        r
    }

    /// Wake the control thread now.
    pub fn wake_control(&self) {
        // A full pipe already means "wake up": the error is of no interest.
        let _ = (&self.wake).write(&[1]);
    }

    /// Publish the engine's new data table, if it made one. Call with the engine locked.
    pub fn publish(&self, engine: &mut Engine) {
        if let Some(t) = engine.data_table() {
            let generation = t.generation();
            *self.table.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
            self.generation.store(generation, Ordering::Release);
        }
    }

    /// The control thread plans to wake at `at` (`None`: no timer). Call with the engine locked,
    /// so that a worker adding an earlier timer afterwards sees the plan and wakes it.
    pub fn set_control_deadline(&self, at: Option<Instant>) {
        let ns = at.map(|t| self.nanos(t)).unwrap_or(u64::MAX);
        self.control_deadline.store(ns, Ordering::Release);
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A worker's handle on the current data table.
#[derive(Default)]
pub struct TableView {
    generation: u64,
    table: Option<Arc<DataTable>>,
}

impl TableView {
    /// The latest table the engine published.
    pub fn current(&mut self, plane: &Plane) -> Option<&DataTable> {
        let g = plane.generation.load(Ordering::Acquire);
        if g != self.generation {
            self.table = plane
                .table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            self.generation = self.table.as_ref().map(|t| t.generation()).unwrap_or(0);
        }
        self.table.as_deref()
    }
}

#[cfg(test)]
impl Plane {
    /// A plane around `engine` whose wake pipe nobody reads (unit tests).
    pub(crate) fn for_test(engine: Engine) -> Plane {
        let (_, wake) = UnixStream::pair().expect("wake pipe");
        wake.set_nonblocking(true).expect("nonblocking");
        Plane::new(engine, wake)
    }

    /// A plane for node `a` (10.1.0.1/16): default config, no firewall (unit tests).
    pub(crate) fn bare_for_test() -> Plane {
        use rand::SeedableRng;
        let ca = nebula_core::sim::TestCa::new(
            "ca",
            nebula_cert::Curve::Curve25519,
            nebula_cert::Version::V1,
        );
        Plane::for_test(Engine::new(
            nebula_core::engine::EngineConfig::default(),
            ca.pki("a", "10.1.0.1/16"),
            Box::new(nebula_core::filter::AllowAll),
            Box::new(rand::rngs::StdRng::seed_from_u64(1)),
            Instant::now(),
            0,
        ))
    }
}
