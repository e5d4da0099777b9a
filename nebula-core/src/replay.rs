//! Anti-replay window for received message counters: Go Nebula's 1024-slot sliding bitmap (`bits.go`),
//! with its exact accept/reject semantics (check before decrypt, update after) and lost/duplicate counts.

/// Window length used by Nebula (`ReplayWindow` in `connection_state.go`).
pub const REPLAY_WINDOW: u64 = 1024;

/// Words of backing storage: enough for the largest supported window (1024 bits).
const STORAGE_WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Sliding-window replay tracker of `LEN` counters (a power of two, at most 1024). The data plane uses
/// [`ReplayWindow`] (1024); smaller sizes exist for tests mirroring upstream's.
///
/// `current` is the highest counter accepted so far; counter *i* lives in slot `i mod LEN`. Counter 0 is
/// never sent, so its slot starts marked.
#[derive(Debug, Clone)]
pub struct ReplayWindowOf<const LEN: u64> {
    current: u64,
    bits: [u64; STORAGE_WORDS],
    lost: u64,
    duplicates: u64,
    out_of_window: u64,
}

/// The 1024-counter window every tunnel uses.
pub type ReplayWindow = ReplayWindowOf<REPLAY_WINDOW>;

impl<const LEN: u64> Default for ReplayWindowOf<LEN> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const LEN: u64> ReplayWindowOf<LEN> {
    const MASK: u64 = LEN - 1;
    const WORDS_USED: usize = if LEN < 64 { 1 } else { (LEN / 64) as usize };

    /// A fresh window: nothing received, counter 0 pre-marked as seen.
    pub fn new() -> Self {
        const {
            assert!(
                LEN.is_power_of_two() && LEN <= REPLAY_WINDOW,
                "LEN must be a power of two <= 1024"
            )
        };
        let mut bits = [0u64; STORAGE_WORDS];
        bits[0] = 1;
        Self {
            current: 0,
            bits,
            lost: 0,
            duplicates: 0,
            out_of_window: 0,
        }
    }

    /// The window of a tunnel that just completed its handshake: counters 1 and 2 (the two handshake
    /// messages) are marked as received, so `current` = 2 and the first data counter expected is 3.
    pub fn after_handshake() -> Self {
        let mut w = Self::new();
        w.update(1);
        w.update(2);
        w
    }

    /// Highest counter accepted so far.
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Counters that left the window without ever being received.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Updates rejected because the counter had already been received.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Updates rejected because the counter was older than the window.
    pub fn out_of_window(&self) -> u64 {
        self.out_of_window
    }

    fn slot(i: u64) -> (usize, u64) {
        let pos = i & Self::MASK;
        // pos < LEN <= 1024, so the word index is < 16.
        ((pos >> 6) as usize, 1u64 << (pos & 63))
    }

    fn get(&self, i: u64) -> bool {
        let (word, mask) = Self::slot(i);
        self.bits.get(word).is_some_and(|w| w & mask != 0)
    }

    fn set(&mut self, i: u64) {
        let (word, mask) = Self::slot(i);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= mask;
        }
    }

    /// Whether `i` (≤ current) still lies inside the window: the last `LEN` counters, or anything
    /// below `LEN` while the window has not slid yet.
    fn within_window(&self, i: u64) -> bool {
        if self.current < LEN {
            i < LEN
        } else {
            i > self.current - LEN
        }
    }

    /// Clears `count` slots starting at slot `start` (wrapping) and returns how many were set.
    fn clear_range(&mut self, start: u64, count: u64) -> u64 {
        let mut was_set = 0u64;
        if count >= LEN {
            for w in self.bits.iter_mut().take(Self::WORDS_USED) {
                was_set += u64::from(w.count_ones());
                *w = 0;
            }
            return was_set;
        }
        let mut pos = start & Self::MASK;
        let mut remaining = count;
        while remaining > 0 {
            let bit = pos & 63;
            let take = (64 - bit).min(remaining).min(LEN - pos);
            let mask = if take == 64 {
                u64::MAX
            } else {
                ((1u64 << take) - 1) << bit
            };
            if let Some(w) = self.bits.get_mut((pos >> 6) as usize) {
                was_set += u64::from((*w & mask).count_ones());
                *w &= !mask;
            }
            remaining -= take;
            pos = (pos + take) & Self::MASK;
        }
        was_set
    }

    /// Before decrypting: may a packet with counter `i` be accepted? True if `i` is ahead of the window,
    /// or inside it and not yet received. Does not change state.
    pub fn check(&self, i: u64) -> bool {
        if i > self.current {
            return true;
        }
        self.within_window(i) && !self.get(i)
    }

    /// After a successful decrypt: record counter `i`. Returns false (and changes nothing but the
    /// statistics) for a duplicate or a counter older than the window.
    pub fn update(&mut self, i: u64) -> bool {
        if self.current.checked_add(1) == Some(i) {
            let (word, mask) = Self::slot(i);
            if let Some(w) = self.bits.get_mut(word) {
                if i > LEN && *w & mask == 0 {
                    self.lost += 1;
                }
                *w |= mask;
            }
            self.current = i;
            return true;
        }

        if i > self.current {
            let window_end = self.current.saturating_add(LEN);
            let end = i.min(window_end);
            let count = end - self.current;
            let start = self.current.wrapping_add(1) & Self::MASK;
            let mut lost = 0u64;
            if self.current >= LEN {
                let was_set = self.clear_range(start, count);
                lost += count.saturating_sub(was_set);
            } else {
                // First window: slots of counters <= LEN never had an earlier tenant to lose.
                let mut n = self.current + 1;
                while n <= end {
                    if n > LEN && !self.get(n) {
                        lost += 1;
                    }
                    n += 1;
                }
                self.clear_range(start, count);
            }
            if i > window_end {
                lost += i - window_end;
            }
            self.lost = self.lost.saturating_add(lost);
            self.set(i);
            self.current = i;
            return true;
        }

        if self.within_window(i) {
            if i == self.current || self.get(i) {
                self.duplicates += 1;
                return false;
            }
            self.set(i);
            return true;
        }

        self.out_of_window += 1;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot<const LEN: u64>(w: &ReplayWindowOf<LEN>) -> Vec<u64> {
        (0..LEN).filter(|&i| w.get(i)).collect()
    }

    #[test]
    fn basic_sequence_len16() {
        let mut w = ReplayWindowOf::<16>::new();
        // (counter, check, update, current after, set slots after)
        let steps: &[(u64, bool, bool, u64, &[u64])] = &[
            (1, true, true, 1, &[0, 1]),
            (2, true, true, 2, &[0, 1, 2]),
            (2, false, false, 2, &[0, 1, 2]),
            (25, true, true, 25, &[9]),
            (24, true, true, 25, &[8, 9]),
            (5, false, false, 25, &[8, 9]),
        ];
        for &(i, check, update, current, slots) in steps {
            assert_eq!(w.check(i), check, "check {i}");
            assert_eq!(w.update(i), update, "update {i}");
            assert_eq!(w.current(), current, "current after {i}");
            assert_eq!(snapshot(&w), slots, "slots after {i}");
        }
    }

    #[test]
    fn same_slot_after_one_wrap() {
        let mut w = ReplayWindowOf::<16>::new();
        assert!(w.update(1));
        assert!(w.update(17));
        assert_eq!(snapshot(&w), vec![1]);
    }

    #[test]
    fn in_order_walk_then_old_rejected() {
        let mut w = ReplayWindowOf::<16>::new();
        for i in 1..=100 {
            assert!(w.check(i), "check {i}");
            assert!(w.update(i), "update {i}");
        }
        assert!(!w.check(1));
        assert_eq!(w.lost(), 0);
    }

    #[test]
    fn large_jumps_count_lost() {
        let mut w = ReplayWindowOf::<16>::new();
        for (i, lost_total) in [(55, 39), (100, 39 + 44), (200, 39 + 44 + 99)] {
            assert!(w.update(i));
            assert_eq!(w.lost(), lost_total, "after {i}");
        }
    }

    #[test]
    fn duplicate_counter() {
        let mut w = ReplayWindowOf::<16>::new();
        for (i, ok, dupes) in [
            (1, true, 0),
            (1, false, 1),
            (2, true, 1),
            (3, true, 1),
            (1, false, 2),
        ] {
            assert_eq!(w.update(i), ok, "update {i}");
            assert_eq!(w.duplicates(), dupes, "dupes after {i}");
        }
        assert_eq!(w.lost(), 0);
        assert_eq!(w.out_of_window(), 0);
    }

    #[test]
    fn out_of_window_counter() {
        let mut w = ReplayWindowOf::<16>::new();
        assert!(w.update(20));
        for n in 21..=29 {
            assert!(w.update(n));
        }
        assert_eq!(w.out_of_window(), 0);
        assert!(!w.update(0));
        assert_eq!(w.out_of_window(), 1);
        assert_eq!(w.lost(), 13);
        assert_eq!(w.duplicates(), 0);
    }

    #[test]
    fn lost_counter_walks() {
        let mut w = ReplayWindowOf::<16>::new();
        for n in 20..=29 {
            assert!(w.update(n));
        }
        assert_eq!((w.lost(), w.duplicates(), w.out_of_window()), (13, 0, 0));

        let mut w = ReplayWindowOf::<16>::new();
        // (counter, lost total afterwards)
        let mut steps: Vec<(u64, u64)> = vec![(15, 0), (16, 0), (17, 1)];
        steps.extend((18..=30).map(|n| (n, n - 16)));
        steps.push((46, 14));
        steps.extend((47..=55).map(|n| (n, n - 32)));
        steps.push((87, 45));
        for (i, lost) in steps {
            assert!(w.update(i), "update {i}");
            assert_eq!(w.lost(), lost, "lost after {i}");
        }
        assert_eq!((w.duplicates(), w.out_of_window()), (0, 0));
    }

    #[test]
    fn lost_counter_not_double_counted() {
        let mut w = ReplayWindowOf::<16>::new();
        for i in [4, 1, 9, 2, 3, 5, 6, 7, 10, 11, 14] {
            assert!(w.update(i), "update {i}");
            assert_eq!(w.lost(), 0, "after {i}");
        }
        assert!(w.update(25));
        assert_eq!(w.lost(), 1, "only packet 8 is lost");
        for i in [12, 13, 15, 16] {
            assert!(w.update(i), "backfill {i}");
            assert_eq!(w.lost(), 1);
        }
        assert_eq!((w.duplicates(), w.out_of_window()), (0, 0));
    }

    #[test]
    fn warmup_overshoot() {
        let mut w = ReplayWindowOf::<16>::new();
        assert!(w.update(20));
        assert_eq!((w.lost(), w.current()), (4, 20));
        assert!(w.update(21));
        assert_eq!(w.lost(), 5);
    }

    #[test]
    fn check_across_warmup_boundary() {
        let mut w = ReplayWindowOf::<16>::new();
        assert!(!w.check(0), "counter 0 is pre-marked");
        for i in 1..16 {
            assert!(w.check(i), "warmup {i}");
        }
        assert!(w.check(16));
        assert!(w.check(1_000_000));
        assert!(w.update(100));
        for (i, ok) in [
            (84, false),
            (85, true),
            (100, false),
            (50, false),
            (101, true),
        ] {
            assert_eq!(w.check(i), ok, "check {i}");
        }
    }

    #[test]
    fn zero_marker_len8() {
        let mut w = ReplayWindowOf::<8>::new();
        assert!(!w.check(0));
        assert!(!w.update(0));
        assert_eq!(w.duplicates(), 1);
        for n in 1..=7 {
            assert!(w.update(n));
        }
        assert!(!w.check(0));
        assert!(w.update(8));
        assert_eq!(
            w.lost(),
            0,
            "slot 0 marker means counter 8 does not count a loss"
        );
        assert!(!w.check(8));
    }

    #[test]
    fn after_handshake_state() {
        let w = ReplayWindow::after_handshake();
        assert_eq!(w.current(), 2);
        for i in [0, 1, 2] {
            assert!(!w.check(i), "{i}");
        }
        assert!(w.check(3));
        assert!(w.check(1023));
        assert!(w.check(u64::MAX));
        assert_eq!((w.lost(), w.duplicates(), w.out_of_window()), (0, 0, 0));
    }

    #[test]
    fn full_size_window_edges() {
        let mut w = ReplayWindow::after_handshake();
        assert!(w.update(5000));
        // window covers 3977..=5000
        assert!(!w.check(3976));
        assert!(w.check(3977));
        assert!(w.update(3977));
        assert!(!w.update(3977));
        assert!(!w.update(3976));
        assert_eq!(w.out_of_window(), 1);
        assert_eq!(w.duplicates(), 1);
        // jump of exactly one window clears everything
        assert!(w.update(6024));
        assert_eq!(snapshot(&w), vec![6024 % 1024]);
        assert!(w.check(5001));
        assert!(!w.check(5000));
    }

    #[test]
    fn extreme_counters_do_not_panic() {
        let mut w = ReplayWindow::after_handshake();
        assert!(w.check(u64::MAX - 1));
        assert!(w.update(u64::MAX - 1));
        assert!(w.update(u64::MAX));
        assert!(!w.update(u64::MAX));
        assert!(!w.check(0));
        assert!(!w.update(3));
        assert!(w.update(u64::MAX - 1000));
        assert_eq!(w.current(), u64::MAX);
    }

    #[test]
    fn clear_range_matches_bitwise_reference() {
        // Compare the word-level clear with a slot-by-slot model over many jump patterns.
        let mut w = ReplayWindow::new();
        let mut model = vec![false; 1024];
        model[0] = true;
        let mut current = 0u64;
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = match x % 4 {
                0 => current + 1 + (x >> 8) % 3000,
                1 => current.saturating_sub((x >> 8) % 1100),
                _ => current + 1,
            };
            // reference
            let expect = if i > current {
                let end = i.min(current + 1024);
                for n in current + 1..=end {
                    model[(n % 1024) as usize] = false;
                }
                model[(i % 1024) as usize] = true;
                current = i;
                true
            } else if (current < 1024 && i < 1024) || (current >= 1024 && i > current - 1024) {
                if i == current || model[(i % 1024) as usize] {
                    false
                } else {
                    model[(i % 1024) as usize] = true;
                    true
                }
            } else {
                false
            };
            assert_eq!(w.update(i), expect, "counter {i}");
            assert_eq!(w.current(), current);
        }
        let got: Vec<bool> = (0..1024).map(|i| w.get(i)).collect();
        assert_eq!(got, model);
    }
}
