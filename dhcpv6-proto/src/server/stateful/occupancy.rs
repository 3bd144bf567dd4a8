//! Which slots of a pool are taken: a sparse, hierarchical bitmap.
//!
//! Level 0 has one bit per slot (set = taken). A bit at level `L+1` is set when the whole
//! 64-bit word below it at level `L` is full. "First free slot at or after `p`" then walks up
//! until a level shows room and back down, touching at most two words per level: 11 levels
//! for a pool of 2^64 slots, 3 for a million. That keeps allocation cost independent of how
//! full the pool is, which linear probing is not (a 99 %-full pool costs ~100 probes per
//! allocation there, and a scan of the pool costs millions).
//!
//! Words are kept in hash maps and all-zero words are dropped, so a /64 of addresses with a
//! million leases scattered in it costs about a million words, not 2^58.

use std::collections::HashMap;

#[derive(Debug, Clone)]
pub(crate) struct Occupancy {
    last: u64,
    /// `levels[0]` are the slot bits; the last level has a single word (word 0).
    levels: Vec<HashMap<u64, u64>>,
    used: u64,
}

const FULL: u64 = u64::MAX;

impl Occupancy {
    /// A bitmap for slots `0..=last`, all free.
    pub fn new(last: u64) -> Self {
        let mut n: u32 = 1;
        while last.checked_shr(6 * n).unwrap_or(0) > 0 {
            n += 1;
        }
        Self { last, levels: vec![HashMap::new(); n as usize], used: 0 }
    }

    /// Slots taken.
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn is_full(&self) -> bool {
        // `used` counts slots in 0..=last, so it reaches last + 1 only when all are taken;
        // compared this way to avoid overflowing for a pool of 2^64 slots.
        self.used > 0 && self.used - 1 == self.last
    }

    fn word(&self, level: usize, n: u64) -> u64 {
        self.levels[level].get(&n).copied().unwrap_or(0)
    }

    pub fn is_set(&self, slot: u64) -> bool {
        self.word(0, slot >> 6) & (1 << (slot & 63)) != 0
    }

    /// Marks `slot` taken; false if it already was.
    pub fn set(&mut self, slot: u64) -> bool {
        debug_assert!(slot <= self.last);
        let top = self.levels.len() - 1;
        let mut idx = slot;
        for level in 0..=top {
            let w = self.levels[level].entry(idx >> 6).or_insert(0);
            let before = *w;
            *w |= 1 << (idx & 63);
            if before == *w {
                return level > 0;
            }
            if level == 0 {
                self.used += 1;
            }
            if *w != FULL {
                break;
            }
            idx >>= 6;
        }
        true
    }

    /// Marks `slot` free; false if it already was.
    pub fn clear(&mut self, slot: u64) -> bool {
        let top = self.levels.len() - 1;
        let mut idx = slot;
        for level in 0..=top {
            let n = idx >> 6;
            let bit = 1u64 << (idx & 63);
            let before = self.word(level, n);
            if before & bit == 0 {
                return level > 0;
            }
            let after = before & !bit;
            if after == 0 {
                self.levels[level].remove(&n);
            } else {
                self.levels[level].insert(n, after);
            }
            if level == 0 {
                self.used -= 1;
            }
            if before != FULL {
                break;
            }
            idx = n;
        }
        true
    }

    /// The first free slot in `from..=last`.
    pub fn next_free(&self, from: u64) -> Option<u64> {
        let top = self.levels.len() - 1;
        let mut level = 0;
        let mut pos = from;
        loop {
            // Highest slot index that exists at this level; beyond it lies only the unused
            // tail of the last word, which is never marked taken.
            let limit = self.last >> (6 * level);
            if pos > limit {
                return None;
            }
            let n = pos >> 6;
            let free = !self.word(level, n) & (FULL << (pos & 63));
            if free != 0 {
                let mut slot = (n << 6) | u64::from(free.trailing_zeros());
                if slot > limit {
                    return None;
                }
                while level > 0 {
                    level -= 1;
                    // The parent bit is clear, so this word has a zero bit.
                    let free = !self.word(level, slot);
                    debug_assert_ne!(free, 0);
                    slot = (slot << 6) | u64::from(free.trailing_zeros());
                }
                // Only the last word of a level can send us into its unused tail, and
                // nothing follows it.
                return (slot <= self.last).then_some(slot);
            }
            if level == top {
                return None;
            }
            level += 1;
            pos = n + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious implementation, to compare against.
    fn naive_next_free(bits: &[bool], from: u64) -> Option<u64> {
        (from as usize..bits.len()).find(|&i| !bits[i]).map(|i| i as u64)
    }

    #[test]
    fn level_counts() {
        assert_eq!(Occupancy::new(0).levels.len(), 1);
        assert_eq!(Occupancy::new(63).levels.len(), 1);
        assert_eq!(Occupancy::new(64).levels.len(), 2);
        assert_eq!(Occupancy::new(4095).levels.len(), 2);
        assert_eq!(Occupancy::new(4096).levels.len(), 3);
        assert_eq!(Occupancy::new(u64::MAX).levels.len(), 11);
    }

    #[test]
    fn fills_completely_in_order_and_frees() {
        let last = 64 * 64 * 3 + 17; // three levels, partial last word
        let mut o = Occupancy::new(last);
        for i in 0..=last {
            assert_eq!(o.next_free(0), Some(i));
            assert!(o.set(i));
        }
        assert!(o.is_full());
        assert_eq!(o.next_free(0), None);
        assert!(!o.set(5));
        assert!(o.clear(4100));
        assert!(!o.clear(4100));
        assert!(!o.is_full());
        assert_eq!(o.next_free(0), Some(4100));
        assert_eq!(o.next_free(4101), None);
        assert!(o.set(4100));
        assert!(o.is_full());
    }

    #[test]
    fn matches_naive_model_on_random_operations() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let last = 20_000u64;
        let mut o = Occupancy::new(last);
        let mut bits = vec![false; last as usize + 1];
        for step in 0..200_000 {
            let s = rng.random_range(0..=last);
            // Bias towards filling so that the upper levels get exercised.
            if rng.random_bool(0.8) {
                assert_eq!(o.set(s), !bits[s as usize]);
                bits[s as usize] = true;
            } else {
                assert_eq!(o.clear(s), bits[s as usize]);
                bits[s as usize] = false;
            }
            if step % 7 == 0 {
                let from = rng.random_range(0..=last);
                let got = o.next_free(from);
                assert_eq!(got, naive_next_free(&bits, from), "step {step} from {from}");
            }
        }
        assert_eq!(o.used(), bits.iter().filter(|b| **b).count() as u64);
    }

    #[test]
    fn huge_sparse_pool() {
        let mut o = Occupancy::new(u64::MAX);
        assert_eq!(o.next_free(u64::MAX), Some(u64::MAX));
        assert!(o.set(u64::MAX));
        assert_eq!(o.next_free(u64::MAX), None);
        assert_eq!(o.next_free(u64::MAX - 1), Some(u64::MAX - 1));
        for i in 0..64 {
            o.set(1 << 40 | i);
        }
        assert_eq!(o.next_free(1 << 40), Some((1 << 40) + 64));
        assert_eq!(o.levels[0].len(), 2);
    }
}
