//! Connection tracking for the firewall: flows admitted by a rule, keyed by the locally oriented
//! tuple, with protocol timeouts, the rules version that admitted them, a size cap and bounded expiry.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::packet::{Packet, PROTO_TCP, PROTO_UDP};

/// One tracked flow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnEntry {
    /// The flow is forgotten at this instant unless refreshed.
    pub expires: Instant,
    /// Direction of the packet that created the entry (which rule table admitted it).
    pub incoming: bool,
    /// [`super::Firewall::rules_version`] of the firewall that admitted or last re-checked it.
    pub rules_version: u64,
    /// Identifies the expiry-queue item belonging to this entry.
    token: u32,
}

/// An item in an expiry queue: check `key` at `deadline`.
#[derive(Debug, Clone, Copy)]
struct Timer {
    key: Packet,
    deadline: Instant,
    token: u32,
}

/// Default cap on tracked flows (`firewall.conntrack.max_entries`): 131,072 (64 shards x 2,048).
///
/// What a flow costs: the map entry is a 40-byte [`Packet`] key plus a 40-byte [`ConnEntry`] plus
/// a control byte, in a table kept at most 7/8 full and grown by doubling (so up to ~2x that), and
/// one 64-byte expiry-queue item in a doubling ring buffer (again up to ~2x): at worst about 300
/// bytes a flow, ~40 MiB for the whole default table. A 1 GB VM survives a peer that fills it, and
/// 131k concurrent flows is far more than the hosts a Nebula node usually fronts open at once.
pub const DEFAULT_MAX_ENTRIES: usize = 131_072;

/// Expiry-queue items examined, before a new flow is refused, to make room from expired flows.
const PURGE_WHEN_FULL: usize = 64;

/// The conntrack table. Not synchronised: the caller owns one per data-plane worker or wraps it
/// in a lock. An outbound packet and its reply share a key, so a reply is only admitted by the
/// table that saw the outbound packet. Holds at most [`Conntrack::max_entries`] flows: a new flow
/// past that is refused (existing flows are never evicted to make room, so nothing is admitted
/// that the rules did not admit, and no established flow loses its entry).
#[derive(Debug)]
pub struct Conntrack {
    entries: HashMap<Packet, ConnEntry>,
    /// One FIFO per timeout class (tcp, udp, other): deadlines in each are (nearly) ascending.
    queues: [VecDeque<Timer>; 3],
    next_token: u32,
    max_entries: usize,
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack {
            entries: HashMap::new(),
            queues: Default::default(),
            next_token: 0,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// The table is at its [`Conntrack::max_entries`] and the flow is new: it is not tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

fn class(protocol: u8) -> usize {
    match protocol {
        PROTO_TCP => 0,
        PROTO_UDP => 1,
        _ => 2,
    }
}

impl Conntrack {
    /// An empty table.
    pub fn new() -> Conntrack {
        Conntrack::default()
    }

    /// An empty table with room for `n` flows before it reallocates.
    pub fn with_capacity(n: usize) -> Conntrack {
        Conntrack {
            entries: HashMap::with_capacity(n),
            ..Conntrack::default()
        }
    }

    /// Most flows this table holds at once.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Change the cap. Lowering it below [`Conntrack::len`] evicts nothing: new flows are refused
    /// until expiry brings the table under the new cap.
    pub fn set_max_entries(&mut self, max: usize) {
        self.max_entries = max;
    }

    /// Number of tracked flows (including expired ones not purged yet).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every flow.
    pub fn clear(&mut self) {
        self.entries.clear();
        for q in &mut self.queues {
            q.clear();
        }
    }

    /// True if `key` is tracked and not expired at `now`.
    pub fn contains(&self, key: &Packet, now: Instant) -> bool {
        self.entries.get(key).is_some_and(|e| e.expires > now)
    }

    /// Removes flows that expired by `now`, examining at most `max` expiry-queue items (a refreshed
    /// flow found in the queue is rescheduled, which also counts). Returns how many were removed.
    pub fn purge_expired(&mut self, now: Instant, max: usize) -> usize {
        let mut removed = 0;
        let mut work = 0;
        while work < max {
            let Some(qi) = (0..self.queues.len()).find(|&i| {
                self.queues
                    .get(i)
                    .and_then(|q| q.front())
                    .is_some_and(|t| t.deadline <= now)
            }) else {
                break;
            };
            let Some(queue) = self.queues.get_mut(qi) else {
                break;
            };
            let Some(timer) = queue.pop_front() else {
                break;
            };
            work += 1;
            let Some(entry) = self.entries.get(&timer.key) else {
                continue;
            };
            if entry.token != timer.token {
                continue; // stale item of an entry that was removed and re-created
            }
            if entry.expires <= now {
                self.entries.remove(&timer.key);
                removed += 1;
            } else {
                queue.push_back(Timer {
                    deadline: entry.expires,
                    ..timer
                });
            }
        }
        removed
    }

    pub(crate) fn get_mut(&mut self, key: &Packet) -> Option<&mut ConnEntry> {
        self.entries.get_mut(key)
    }

    pub(crate) fn remove(&mut self, key: &Packet) {
        self.entries.remove(key);
    }

    /// Creates or overwrites the entry for `key`. A new key in a table at its cap first purges
    /// a few expired flows (as of `now`); if that frees nothing, the flow is refused with [`Full`].
    pub(crate) fn insert(
        &mut self,
        key: Packet,
        incoming: bool,
        rules_version: u64,
        expires: Instant,
        now: Instant,
    ) -> Result<(), Full> {
        if let Some(e) = self.entries.get_mut(&key) {
            e.incoming = incoming;
            e.rules_version = rules_version;
            e.expires = expires;
            return Ok(());
        }
        if self.entries.len() >= self.max_entries {
            self.purge_expired(now, PURGE_WHEN_FULL);
            if self.entries.len() >= self.max_entries {
                return Err(Full);
            }
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        self.entries.insert(
            key,
            ConnEntry {
                expires,
                incoming,
                rules_version,
                token,
            },
        );
        if let Some(q) = self.queues.get_mut(class(key.protocol)) {
            q.push_back(Timer {
                key,
                deadline: expires,
                token,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(port: u16, protocol: u8) -> Packet {
        Packet {
            local_addr: "10.0.0.1".parse().unwrap(),
            remote_addr: "10.0.0.2".parse().unwrap(),
            local_port: port,
            remote_port: 80,
            protocol,
            fragment: false,
        }
    }

    #[test]
    fn purge_removes_only_expired_and_is_bounded() {
        let t0 = Instant::now();
        let mut ct = Conntrack::new();
        for p in 0..10 {
            ct.insert(
                key(p, PROTO_UDP),
                false,
                1,
                t0 + Duration::from_secs(10),
                t0,
            )
            .expect("room");
        }
        ct.insert(
            key(100, PROTO_TCP),
            false,
            1,
            t0 + Duration::from_secs(100),
            t0,
        )
        .expect("room");
        assert_eq!(ct.len(), 11);
        assert_eq!(ct.purge_expired(t0 + Duration::from_secs(5), usize::MAX), 0);
        assert_eq!(ct.purge_expired(t0 + Duration::from_secs(10), 3), 3);
        assert_eq!(ct.len(), 8);
        assert_eq!(
            ct.purge_expired(t0 + Duration::from_secs(11), usize::MAX),
            7
        );
        assert_eq!(ct.len(), 1);
        assert!(ct.contains(&key(100, PROTO_TCP), t0 + Duration::from_secs(11)));
        assert!(!ct.contains(&key(100, PROTO_TCP), t0 + Duration::from_secs(100)));
        assert_eq!(
            ct.purge_expired(t0 + Duration::from_secs(100), usize::MAX),
            1
        );
        assert!(ct.is_empty());
    }

    #[test]
    fn refreshed_entry_is_rescheduled_not_removed() {
        let t0 = Instant::now();
        let mut ct = Conntrack::new();
        let k = key(1, PROTO_UDP);
        ct.insert(k, true, 1, t0 + Duration::from_secs(10), t0)
            .expect("room");
        if let Some(e) = ct.get_mut(&k) {
            e.expires = t0 + Duration::from_secs(20);
        }
        assert_eq!(
            ct.purge_expired(t0 + Duration::from_secs(15), usize::MAX),
            0
        );
        assert_eq!(ct.len(), 1);
        assert_eq!(
            ct.purge_expired(t0 + Duration::from_secs(20), usize::MAX),
            1
        );
        assert!(ct.is_empty());
    }

    #[test]
    fn recreated_entry_ignores_stale_timer() {
        let t0 = Instant::now();
        let mut ct = Conntrack::new();
        let k = key(1, PROTO_UDP);
        ct.insert(k, true, 1, t0 + Duration::from_secs(10), t0)
            .expect("room");
        ct.remove(&k);
        ct.insert(k, true, 1, t0 + Duration::from_secs(30), t0)
            .expect("room");
        // The first item is stale and must not remove the new entry.
        assert_eq!(
            ct.purge_expired(t0 + Duration::from_secs(10), usize::MAX),
            0
        );
        assert_eq!(ct.len(), 1);
        assert_eq!(
            ct.purge_expired(t0 + Duration::from_secs(30), usize::MAX),
            1
        );
        ct.insert(k, true, 1, t0 + Duration::from_secs(40), t0)
            .expect("room");
        ct.clear();
        assert!(ct.is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_flows_but_keeps_and_refreshes_old_ones() {
        let t0 = Instant::now();
        let mut ct = Conntrack::new();
        ct.set_max_entries(100);
        let exp = t0 + Duration::from_secs(10);
        let mut refused = 0;
        for p in 0..1_000 {
            if ct.insert(key(p, PROTO_UDP), false, 1, exp, t0).is_err() {
                refused += 1;
            }
        }
        assert_eq!(ct.len(), 100, "a flood stops at the cap");
        assert_eq!(refused, 900);
        // A tracked flow is still refreshed (an overwrite is not a new flow) and stays tracked.
        assert_eq!(ct.insert(key(0, PROTO_UDP), true, 2, exp, t0), Ok(()));
        assert!(ct.contains(&key(0, PROTO_UDP), t0));
        assert_eq!(
            ct.insert(key(5_000, PROTO_UDP), false, 1, exp, t0),
            Err(Full)
        );
        // Once flows expire, a new one makes room for itself.
        let later = t0 + Duration::from_secs(11);
        let exp2 = later + Duration::from_secs(10);
        assert_eq!(
            ct.insert(key(5_000, PROTO_UDP), false, 1, exp2, later),
            Ok(())
        );
        assert!(ct.len() <= 100);
        assert!(ct.contains(&key(5_000, PROTO_UDP), later));
    }

    #[test]
    fn the_default_cap_is_the_documented_one() {
        assert_eq!(Conntrack::new().max_entries(), DEFAULT_MAX_ENTRIES);
        // The cost estimate in DEFAULT_MAX_ENTRIES's doc assumes these sizes.
        assert!(std::mem::size_of::<Packet>() <= 40);
        assert!(std::mem::size_of::<ConnEntry>() <= 40);
        assert!(std::mem::size_of::<Timer>() <= 64);
    }
}
