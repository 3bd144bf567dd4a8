//! A hashed timer wheel of 1 ms slots: every CPE (and LAN host) has at most one timer, its
//! due time kept by the caller; the wheel holds indexes only. Arming again leaves the old
//! entry in place, and a slot's entries whose owner's due time is not that slot's are
//! dropped (stale) or kept for a later turn (due in a later round). Memory is bounded by
//! the number of arms between two turns, and a turn of the wheel costs one pass.

/// Slots of 1 ms: a turn is 8.192 s, longer timers go round.
const SLOTS: usize = 8192;
const SLOT_NS: u64 = 1_000_000;

pub struct Wheel {
    slots: Vec<Vec<u32>>,
    /// The next slot time (ms) to be processed.
    cursor_ms: u64,
}

impl Wheel {
    pub fn new(now_ns: u64) -> Wheel {
        Wheel { slots: vec![Vec::new(); SLOTS], cursor_ms: now_ns / SLOT_NS }
    }

    /// Puts `id` in the slot of `due_ns` (a time already passed fires at the next turn).
    pub fn arm(&mut self, id: u32, due_ns: u64) {
        let ms = (due_ns / SLOT_NS).max(self.cursor_ms);
        self.slots[(ms % SLOTS as u64) as usize].push(id);
    }

    /// Ids whose timer is due by `now_ns` (at most 1 ms late), oldest slot first, into `fired` (at most
    /// `limit`; the rest stay for the next call). `due(id)` is the owner's current due
    /// time (u64::MAX: none).
    pub fn expire(&mut self, now_ns: u64, limit: usize, due: impl Fn(u32) -> u64, fired: &mut Vec<u32>) {
        // Only slots wholly in the past: a timer later in the current millisecond must not
        // be taken out of the wheel before it is due.
        let Some(last) = (now_ns / SLOT_NS).checked_sub(1) else { return };
        // Bounded: at most one turn of slots per call, and `limit` ids.
        let last = last.min(self.cursor_ms + SLOTS as u64 - 1);
        while self.cursor_ms <= last {
            let slot = &mut self.slots[(self.cursor_ms % SLOTS as u64) as usize];
            let mut i = 0;
            while i < slot.len() {
                let id = slot[i];
                let d = due(id);
                let d_ms = d / SLOT_NS;
                if d != u64::MAX && d_ms <= self.cursor_ms {
                    if fired.len() >= limit {
                        return;
                    }
                    fired.push(id);
                    slot.swap_remove(i);
                } else if d != u64::MAX && d_ms % SLOTS as u64 == self.cursor_ms % SLOTS as u64 {
                    // A later round's timer in this slot.
                    i += 1;
                } else {
                    slot.swap_remove(i);
                }
            }
            self.cursor_ms += 1;
        }
    }

    /// When the next slot is to be looked at (ns): the caller may sleep until then.
    pub fn next_tick_ns(&self) -> u64 {
        self.cursor_ms * SLOT_NS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order_once_and_forgets_rearmed_and_cancelled_timers() {
        let mut due = [u64::MAX; 4];
        let mut w = Wheel::new(0);
        due[0] = 5_000_000;
        w.arm(0, due[0]);
        due[1] = 2_000_000;
        w.arm(1, due[1]);
        // Re-armed later: the first entry is stale.
        due[2] = 1_000_000;
        w.arm(2, due[2]);
        due[2] = 20_000_000_000;
        w.arm(2, due[2]);
        // Cancelled.
        due[3] = 1_000_000;
        w.arm(3, due[3]);
        due[3] = u64::MAX;
        let mut fired = Vec::new();
        w.expire(4_000_000, 100, |i| due[i as usize], &mut fired);
        assert_eq!(fired, vec![1]);
        fired.clear();
        w.expire(6_000_000, 100, |i| due[i as usize], &mut fired);
        assert_eq!(fired, vec![0]);
        fired.clear();
        // 20 s: more than two turns of the wheel, in steps of a few seconds.
        let mut t = 6_000_000;
        while t < 21_000_000_000 {
            t += 3_000_000_000;
            w.expire(t, 100, |i| due[i as usize], &mut fired);
        }
        assert_eq!(fired, vec![2]);
    }

    #[test]
    fn a_timer_later_in_the_current_millisecond_waits_for_it() {
        let due = [5_700_000u64];
        let mut w = Wheel::new(0);
        w.arm(0, due[0]);
        let mut fired = Vec::new();
        w.expire(5_300_000, 100, |i| due[i as usize], &mut fired);
        assert!(fired.is_empty());
        w.expire(5_800_000, 100, |i| due[i as usize], &mut fired);
        assert!(fired.is_empty(), "its millisecond is not over yet");
        w.expire(6_000_000, 100, |i| due[i as usize], &mut fired);
        assert_eq!(fired, vec![0]);
    }

    #[test]
    fn the_limit_leaves_the_rest_for_later() {
        let due = [1_000_000u64; 10];
        let mut w = Wheel::new(0);
        for i in 0..10 {
            w.arm(i, due[i as usize]);
        }
        let mut fired = Vec::new();
        w.expire(2_000_000, 4, |i| due[i as usize], &mut fired);
        assert_eq!(fired.len(), 4);
        w.expire(2_000_000, 100, |i| due[i as usize], &mut fired);
        fired.sort_unstable();
        assert_eq!(fired, (0..10).collect::<Vec<u32>>());
    }
}
