//! Which reply-data slot each interface's untagged frames are answered from, and which slots
//! the daemon may write: the bookkeeping of the scheme in `dhcpv6_common::IfaceSlot`.
//!
//! A slot is in one of three states: live (a selector points to it), retired (no selector
//! points to it, but one did since the last grace period, so a program run may still be
//! reading it) or free (safe to write). Retired slots become free only through a grace
//! period; a write takes a free slot, and a selector that moves away retires its old one.

use std::collections::HashMap;

use dhcpv6_common::REPLY_SLOTS;

#[derive(Debug, Default)]
pub struct SlotPool {
    live: HashMap<u32, u32>,
    free: Vec<u32>,
    retired: Vec<u32>,
}

impl SlotPool {
    /// The pool as the selectors in the map say: `(ifindex, slot)` for every non-zero one.
    /// Every other slot counts as retired: a previous daemon may have moved a selector away
    /// from it moments ago, so the first write waits for a grace period.
    pub fn adopt(selectors: impl IntoIterator<Item = (u32, u32)>) -> SlotPool {
        let mut pool = SlotPool::default();
        for (ifindex, slot) in selectors {
            // A slot named twice (not written by us) is left to the first: the second is
            // rewritten with its own data at the next sync.
            if (1..REPLY_SLOTS).contains(&slot) && !pool.live.values().any(|&s| s == slot) {
                pool.live.insert(ifindex, slot);
            }
        }
        pool.retired = (1..REPLY_SLOTS).filter(|s| !pool.live.values().any(|l| l == s)).collect();
        pool
    }

    pub fn live(&self, ifindex: u32) -> Option<u32> {
        self.live.get(&ifindex).copied()
    }

    pub fn live_ifindexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.live.keys().copied()
    }

    /// A slot that no program run can be reading, to write new reply data into; `grace`
    /// (one RCU grace period) is called when only retired slots are left. None: every slot
    /// is live.
    pub fn take<E>(&mut self, grace: impl FnOnce() -> Result<(), E>) -> Result<Option<u32>, E> {
        if self.free.is_empty() && !self.retired.is_empty() {
            grace()?;
            self.free.append(&mut self.retired);
        }
        Ok(self.free.pop())
    }

    /// A taken slot that was not linked after all (its write failed): still unread.
    pub fn put_back(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// `ifindex`'s selector now points to `slot`; the slot it pointed to before is retired.
    pub fn link(&mut self, ifindex: u32, slot: u32) {
        if let Some(old) = self.live.insert(ifindex, slot) {
            self.retired.push(old);
        }
    }

    /// `ifindex`'s selector is now 0; its slot is retired.
    pub fn unlink(&mut self, ifindex: u32) {
        if let Some(old) = self.live.remove(&ifindex) {
            self.retired.push(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_grace() -> Result<(), ()> {
        panic!("no grace period expected here")
    }

    #[test]
    fn a_rewrite_never_takes_the_live_slot_nor_one_retired_since_the_last_grace() {
        let mut pool = SlotPool::adopt([]);
        let graces = std::cell::Cell::new(0usize);
        let grace = || -> Result<(), ()> {
            graces.set(graces.get() + 1);
            Ok(())
        };
        // Adopted: nothing is known to be unread, so the first write waits.
        let first = pool.take(grace).unwrap().unwrap();
        pool.link(7, first);
        assert_eq!(graces.get(), 1);
        let mut retired_since_grace = vec![];
        let mut last = first;
        for _ in 0..1000 {
            let before = graces.get();
            let s = pool.take(grace).unwrap().unwrap();
            if graces.get() != before {
                retired_since_grace.clear();
            }
            assert_ne!(s, last, "the live slot");
            assert!(!retired_since_grace.contains(&s), "slot {s} retired without a grace period since");
            pool.link(7, s);
            retired_since_grace.push(last);
            last = s;
        }
        // 126 spare slots: one grace period per 126 rewrites, not one per rewrite.
        assert!(graces.get() <= 1 + 1000 / (REPLY_SLOTS as usize - 2), "{} grace periods", graces.get());
    }

    #[test]
    fn adopted_selectors_stay_live_and_a_full_pool_says_so() {
        let mut pool = SlotPool::adopt([(3, 5), (4, 5), (9, 0), (10, 200), (11, 6)]);
        assert_eq!(
            (pool.live(3), pool.live(4), pool.live(9), pool.live(10), pool.live(11)),
            (Some(5), None, None, None, Some(6))
        );
        let mut n = 0;
        while let Some(s) = pool.take(|| Ok::<(), ()>(())).unwrap() {
            assert!(s != 5 && s != 6 && s != 0 && s < REPLY_SLOTS);
            pool.link(1000 + n, s);
            n += 1;
        }
        assert_eq!(n, REPLY_SLOTS - 3, "every slot but 0 and the two live ones");
        // Full: a removal retires a slot, which a grace period then frees.
        pool.unlink(3);
        assert_eq!(pool.live(3), None);
        assert_eq!(pool.take(|| Ok::<(), ()>(())).unwrap(), Some(5));
        assert_eq!(pool.take(no_grace).unwrap(), None);
    }
}
