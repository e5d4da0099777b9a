//! Connection tracking for the firewall: flows admitted by a rule, keyed by the locally oriented
//! tuple, with protocol timeouts, the rules version that admitted them and bounded lazy expiry.

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

/// The conntrack table. Not synchronised: the caller owns one per data-plane worker or wraps it
/// in a lock. An outbound packet and its reply share a key, so a reply is only admitted by the
/// table that saw the outbound packet.
#[derive(Debug, Default)]
pub struct Conntrack {
    entries: HashMap<Packet, ConnEntry>,
    /// One FIFO per timeout class (tcp, udp, other): deadlines in each are (nearly) ascending.
    queues: [VecDeque<Timer>; 3],
    next_token: u32,
}

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

    /// Creates or overwrites the entry for `key`.
    pub(crate) fn insert(
        &mut self,
        key: Packet,
        incoming: bool,
        rules_version: u64,
        expires: Instant,
    ) {
        if let Some(e) = self.entries.get_mut(&key) {
            e.incoming = incoming;
            e.rules_version = rules_version;
            e.expires = expires;
            return;
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
            ct.insert(key(p, PROTO_UDP), false, 1, t0 + Duration::from_secs(10));
        }
        ct.insert(key(100, PROTO_TCP), false, 1, t0 + Duration::from_secs(100));
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
        ct.insert(k, true, 1, t0 + Duration::from_secs(10));
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
        ct.insert(k, true, 1, t0 + Duration::from_secs(10));
        ct.remove(&k);
        ct.insert(k, true, 1, t0 + Duration::from_secs(30));
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
        ct.insert(k, true, 1, t0 + Duration::from_secs(40));
        ct.clear();
        assert!(ct.is_empty());
    }
}
