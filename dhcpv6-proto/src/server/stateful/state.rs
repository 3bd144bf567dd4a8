//! The engine's memory: every lease (`LeaseIndex`), which pool slots are taken
//! (`Occupancy`), and when leases expire. All three change together, through `put`, so they
//! cannot drift apart.
//!
//! A slot's bit is set exactly when the slot is reserved or a lease (bound or declined)
//! holds it. Prefix leases whose length does not match their pool (left over from an older
//! configuration) are "pinned" instead: they block the slots they overlap without owning a
//! bit, and are rare enough to be checked with a short list.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv6Addr;

use crate::leases::{Lease, LeaseKey, LeaseKind, LeaseOp, LeaseState};

use super::context::{RouteChange, Undo, UndoEntry};
use super::index::{Ident, LeaseIndex};
use super::occupancy::Occupancy;
use super::pools::{mask, AddrRange, PrefixPool};

/// A pool's shape: which key each slot stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Geo {
    Na(AddrRange),
    Pd(PrefixPool),
}

impl Geo {
    fn kind(&self) -> LeaseKind {
        match self {
            Geo::Na(_) => LeaseKind::Address,
            Geo::Pd(_) => LeaseKind::Prefix,
        }
    }

    pub fn last_slot(&self) -> u64 {
        match self {
            Geo::Na(r) => r.last_slot(),
            Geo::Pd(p) => p.last_slot(),
        }
    }

    pub fn key_at(&self, slot: u64) -> LeaseKey {
        match self {
            Geo::Na(r) => LeaseKey { kind: LeaseKind::Address, addr: r.at(slot), prefix_len: 128 },
            Geo::Pd(p) => LeaseKey { kind: LeaseKind::Prefix, addr: p.at(slot), prefix_len: p.delegated_len() },
        }
    }

    fn slot_of(&self, key: &LeaseKey) -> Option<u64> {
        match self {
            Geo::Na(r) if key.kind == LeaseKind::Address => r.slot_of(key.addr),
            Geo::Pd(p) if key.kind == LeaseKind::Prefix => p.slot_of(key.addr, key.prefix_len),
            _ => None,
        }
    }

    /// First and last address of the space the pool covers.
    fn span(&self) -> (u128, u128) {
        match self {
            Geo::Na(r) => (u128::from(r.start()), u128::from(r.end())),
            Geo::Pd(p) => {
                let s = u128::from(p.prefix());
                (s, s | !mask(p.prefix_len()))
            }
        }
    }

    pub fn delegated_len(&self) -> u8 {
        match self {
            Geo::Na(_) => 128,
            Geo::Pd(p) => p.delegated_len(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Geo::Na(r) => r.to_string(),
            Geo::Pd(p) => p.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub link: usize,
    pub geo: Geo,
    pub occ: Occupancy,
    /// Inclusive slot ranges blocked by mismatched prefix leases.
    pinned: Vec<(u64, u64, LeaseKey)>,
}

impl Pool {
    fn pinned_until(&self, slot: u64) -> Option<u64> {
        self.pinned.iter().filter(|(a, b, _)| (*a..=*b).contains(&slot)).map(|(_, b, _)| *b).max()
    }
}

/// Lease changes of one message, applied as they are decided so that the next decision
/// (same message or next one) sees them.
#[derive(Debug, Default)]
pub(crate) struct Txn {
    pub ops: Vec<LeaseOp>,
    pub undo: Vec<UndoEntry>,
    pub routes: Vec<RouteChange>,
    /// Counters for `Outcome::events`.
    pub events: Vec<crate::stats::Counter>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub pools: Vec<Pool>,
    /// Pools by first address, per kind (0: addresses, 1: prefixes). Pools of one kind do
    /// not overlap (validated), so the last pool starting at or below an address is the
    /// only one that can hold it.
    by_start: [BTreeMap<u128, usize>; 2],
    pub leases: LeaseIndex,
    /// (valid_until, key) of every lease, exactly: an extension moves its lease's entry, so
    /// nothing goes stale and nothing ever needs rebuilding (a rebuild walked every lease,
    /// inside the message that tipped it over: a stall of milliseconds every few hundred
    /// thousand renewals).
    expiry: BTreeSet<(u64, LeaseKey)>,
    /// Reserved keys that lie in a pool; their bits stay set whoever holds them.
    pub reserved: HashSet<LeaseKey>,
}

fn kind_index(kind: LeaseKind) -> usize {
    match kind {
        LeaseKind::Address => 0,
        LeaseKind::Prefix => 1,
    }
}

/// Where a client's search starts: a hash of DUID, IAID and kind, so the same client gets
/// the same address back after its lease expired or the server lost its state, and
/// addresses are spread over the pool rather than handed out in order (RFC 7943 on
/// guessable addresses). FNV-1a with a SplitMix64 finish: stable across Rust releases and
/// restarts, unlike `DefaultHasher`.
pub(crate) fn seed(duid: &[u8], iaid: u32, kind: LeaseKind) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in duid.iter().chain(&iaid.to_be_bytes()).chain(&[kind_index(kind) as u8]) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix(h)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl State {
    pub fn new() -> Self {
        Self {
            pools: Vec::new(),
            by_start: [BTreeMap::new(), BTreeMap::new()],
            leases: LeaseIndex::new(),
            expiry: BTreeSet::new(),
            reserved: HashSet::new(),
        }
    }

    pub fn add_pool(&mut self, link: usize, geo: Geo) -> usize {
        let id = self.pools.len();
        self.by_start[kind_index(geo.kind())].insert(geo.span().0, id);
        self.pools.push(Pool { link, geo, occ: Occupancy::new(geo.last_slot()), pinned: Vec::new() });
        id
    }

    /// The pool and slot that `key` is exactly.
    pub fn locate(&self, key: &LeaseKey) -> Option<(usize, u64)> {
        let (_, &id) = self.by_start[kind_index(key.kind)].range(..=u128::from(key.addr)).next_back()?;
        self.pools[id].geo.slot_of(key).map(|slot| (id, slot))
    }

    pub fn reserve(&mut self, key: LeaseKey) {
        self.reserved.insert(key);
        self.sync(&key);
    }

    /// True if nobody holds the slot and it is not reserved.
    pub fn is_free(&self, id: usize, slot: u64) -> bool {
        let pool = &self.pools[id];
        !pool.occ.is_set(slot) && pool.pinned_until(slot).is_none()
    }

    /// A client's bound leases in one IA (declined ones are not a binding any more).
    fn bound_iter<'a>(&'a self, duid: &[u8], iaid: u32, kind: LeaseKind) -> impl Iterator<Item = &'a Lease> + 'a {
        self.leases.for_client(duid, iaid, kind).filter(|l| l.state == LeaseState::Bound)
    }

    /// Copies of a client's bound leases in one IA, for the rare paths that change them
    /// while reading them (Release, Decline).
    pub fn bound(&self, duid: &[u8], iaid: u32, kind: LeaseKind) -> Vec<Lease> {
        self.bound_iter(duid, iaid, kind).cloned().collect()
    }

    /// The keys of a client's bound leases in one IA: what a Request or a Renew walks, with
    /// no copy of each lease (its DUID, link name, next hop and relay record) per message.
    pub fn bound_keys(&self, duid: &[u8], iaid: u32, kind: LeaseKind) -> Vec<LeaseKey> {
        self.bound_iter(duid, iaid, kind).map(Lease::key).collect()
    }

    /// How many bound leases a client has in one IA.
    pub fn bound_count(&self, duid: &[u8], iaid: u32, kind: LeaseKind) -> usize {
        self.bound_iter(duid, iaid, kind).count()
    }

    /// Sets or removes the lease for `key` (given to `ident`), keeping bits, pins, expiry
    /// and the per-client counts in step.
    /// Returns the lease it replaced, with the identity that one was given to.
    fn put(&mut self, key: LeaseKey, lease: Option<Lease>, ident: Option<Ident>) -> Option<(Lease, Option<Ident>)> {
        let until = lease.as_ref().map(|l| l.valid_until);
        let old = match lease {
            Some(lease) => {
                debug_assert_eq!(lease.key(), key);
                self.leases.put(lease, ident)
            }
            None => self.leases.take(&key),
        };
        if let Some((old, _)) = &old {
            self.expiry.remove(&(old.valid_until, key));
        }
        if let Some(t) = until {
            self.expiry.insert((t, key));
        }
        if key.kind == LeaseKind::Prefix && self.locate(&key).is_none() {
            self.repin(&key);
        }
        self.sync(&key);
        old
    }

    fn sync(&mut self, key: &LeaseKey) {
        if let Some((id, slot)) = self.locate(key) {
            let taken = self.reserved.contains(key) || self.leases.contains(key);
            let occ = &mut self.pools[id].occ;
            if taken {
                occ.set(slot);
            } else {
                occ.clear(slot);
            }
        }
    }

    /// Recomputes the pins of a prefix key that is not a slot of any pool.
    fn repin(&mut self, key: &LeaseKey) {
        let held = self.leases.contains(key);
        let (start, end) = (u128::from(key.addr) & mask(key.prefix_len), u128::from(key.addr) | !mask(key.prefix_len));
        let ids: Vec<usize> = self.by_start[1]
            .range(..=end)
            .rev()
            .map(|(_, id)| *id)
            .take_while(|id| self.pools[*id].geo.span().1 >= start)
            .collect();
        for id in ids {
            let pool = &mut self.pools[id];
            pool.pinned.retain(|(_, _, k)| k != key);
            if let (true, Geo::Pd(p)) = (held, pool.geo) {
                if let Some((a, b)) = p.covered_slots(key.addr, key.prefix_len) {
                    pool.pinned.push((a, b, *key));
                }
            }
        }
    }

    /// Applies one op, an upsert for the client `ident`, and records how to undo it.
    pub fn apply(&mut self, txn: &mut Txn, op: LeaseOp, ident: Option<Ident>) {
        let key = op.key();
        let after = match &op {
            LeaseOp::Upsert(l) => Some(l.clone()),
            LeaseOp::Remove { .. } => None,
        };
        let (before, before_ident) = self.put(key, after.clone(), ident).unzip();
        let before_ident = before_ident.flatten();
        txn.undo.push(UndoEntry { key, before, before_ident, after });
        txn.ops.push(op);
    }

    /// Reverts entries whose key still holds what this transaction wrote. A key that a
    /// later message changed again is left alone: that later write is the newer truth, and
    /// its own commit decides whether it stands.
    pub fn rollback(&mut self, undo: Undo) {
        for e in undo.0.into_iter().rev() {
            if self.leases.get(&e.key) == e.after.as_ref() {
                self.put(e.key, e.before, e.before_ident);
            }
        }
    }

    /// Loads a stored lease without recording anything.
    pub fn load(&mut self, lease: Lease) {
        self.put(lease.key(), Some(lease), None);
    }

    /// Drops the lease for `key` that another server deleted, unless our copy ends later
    /// than the deleted row did (it was extended since, here).
    pub fn forget(&mut self, key: &LeaseKey, valid_until: u64) {
        if self.leases.get(key).is_some_and(|l| l.valid_until <= valid_until) {
            self.put(*key, None, None);
        }
    }

    /// Removes and returns every lease with `valid_until <= now`.
    pub fn pop_expired(&mut self, now: u64) -> Vec<Lease> {
        let mut out = Vec::new();
        while let Some(&(t, key)) = self.expiry.first() {
            if t > now {
                break;
            }
            self.expiry.pop_first();
            out.extend(self.put(key, None, None).map(|(l, _)| l));
        }
        out
    }

    /// A free slot in one of `ids`, searched from a point derived from `seed`; `skip` holds
    /// keys already chosen in the message being answered (offers are not recorded).
    pub fn alloc(&self, ids: &[usize], seed: u64, skip: &HashSet<LeaseKey>) -> Option<LeaseKey> {
        let n = ids.len();
        (0..n).find_map(|k| {
            let id = ids[(seed as usize).wrapping_add(k) % n];
            let pool = &self.pools[id];
            if pool.occ.is_full() {
                return None;
            }
            let size = u128::from(pool.geo.last_slot()) + 1;
            let start = (u128::from(splitmix(seed ^ k as u64)) % size) as u64;
            self.find_from(id, start, skip)
        })
    }

    /// First usable slot at or after `start`, wrapping around once.
    fn find_from(&self, id: usize, start: u64, skip: &HashSet<LeaseKey>) -> Option<LeaseKey> {
        let pool = &self.pools[id];
        let mut from = start;
        let mut wrapped = false;
        loop {
            let next = pool.occ.next_free(from).filter(|s| !wrapped || *s < start);
            let Some(slot) = next else {
                if wrapped || start == 0 {
                    return None;
                }
                wrapped = true;
                from = 0;
                continue;
            };
            let key = pool.geo.key_at(slot);
            let resume = if skip.contains(&key) { Some(slot) } else { pool.pinned_until(slot) };
            match resume {
                None => return Some(key),
                Some(last) => match last.checked_add(1).filter(|s| *s <= pool.geo.last_slot()) {
                    Some(s) => from = s,
                    None if wrapped || start == 0 => return None,
                    None => {
                        wrapped = true;
                        from = 0;
                    }
                },
            }
        }
    }
}

/// The key of an address or prefix.
pub(crate) fn key(kind: LeaseKind, addr: Ipv6Addr, len: u8) -> LeaseKey {
    LeaseKey { kind, addr, prefix_len: len }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(kind: LeaseKind, addr: &str, len: u8, valid_until: u64) -> Lease {
        Lease {
            duid: vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6],
            iaid: 1,
            kind,
            addr: addr.parse().unwrap(),
            prefix_len: len,
            iface: "eth1".into(),
            valid_until,
            preferred_until: valid_until,
            state: LeaseState::Bound,
            next_hop: None,
            last_transaction: 0,
            relay: None,
        }
    }

    fn state() -> State {
        let mut s = State::new();
        s.add_pool(0, Geo::Na("2001:db8::10-2001:db8::13".parse().unwrap()));
        s.add_pool(0, Geo::Pd("2001:db8:100::/40:56".parse().unwrap()));
        s
    }

    #[test]
    fn bits_follow_leases_and_reservations() {
        let mut s = state();
        let l = lease(LeaseKind::Address, "2001:db8::11", 128, 100);
        let k = l.key();
        let mut txn = Txn::default();
        s.apply(&mut txn, LeaseOp::Upsert(l), None);
        assert_eq!(s.locate(&k), Some((0, 1)));
        assert!(!s.is_free(0, 1));
        s.reserve(k);
        s.apply(&mut txn, LeaseOp::remove(k), None);
        assert!(!s.is_free(0, 1), "still reserved");
        s.reserved.remove(&k);
        s.sync(&k);
        assert!(s.is_free(0, 1));
    }

    #[test]
    fn alloc_skips_offered_keys_and_wraps() {
        let s = state();
        let mut skip = HashSet::new();
        let mut got = Vec::new();
        for _ in 0..4 {
            let k = s.alloc(&[0], 42, &skip).unwrap();
            skip.insert(k);
            got.push(k.addr);
        }
        got.sort();
        let want: Vec<Ipv6Addr> = (0x10..=0x13).map(|i| Ipv6Addr::from(0x2001_0db8_u128 << 96 | i)).collect();
        assert_eq!(got, want);
        assert_eq!(s.alloc(&[0], 42, &skip), None);
    }

    #[test]
    fn mismatched_prefix_leases_pin_the_slots_they_cover() {
        let mut s = state();
        let mut txn = Txn::default();
        // A /48 left over from an older configuration covers slots 0..=255 of the /56 pool.
        let old = lease(LeaseKind::Prefix, "2001:db8:100::", 48, 100);
        s.apply(&mut txn, LeaseOp::Upsert(old.clone()), None);
        assert!(!s.is_free(1, 0) && !s.is_free(1, 255) && s.is_free(1, 256));
        let k = s.find_from(1, 3, &HashSet::new()).unwrap();
        assert_eq!(k.addr, "2001:db8:101::".parse::<Ipv6Addr>().unwrap());
        s.apply(&mut txn, LeaseOp::remove(old.key()), None);
        assert!(s.is_free(1, 0));
    }

    /// Extensions keep one expiry entry per lease: however many renewals come, none of
    /// them walks the leases (the index counts every lease it hands out).
    #[test]
    fn renewals_never_walk_the_leases() {
        let mut s = state();
        let addr = |n: u32| format!("2001:db8::{:x}", 0x10 + n);
        for n in 0..200 {
            s.apply(&mut Txn::default(), LeaseOp::Upsert(lease(LeaseKind::Address, &addr(n), 128, 100)), None);
        }
        let before = super::super::index::visited();
        // Ten renewals of each: more than the old rebuild's threshold (2n + 1024).
        for round in 1..=10u64 {
            for n in 0..200 {
                let l = lease(LeaseKind::Address, &addr(n), 128, 100 + round);
                s.apply(&mut Txn::default(), LeaseOp::Upsert(l), None);
            }
        }
        assert_eq!(super::super::index::visited() - before, 0, "a renewal looked at other leases");
        assert_eq!(s.expiry.len(), 200, "one entry per lease");
        assert!(s.pop_expired(109).is_empty());
        assert_eq!(s.pop_expired(110).len(), 200);
        assert!(s.expiry.is_empty());
    }

    #[test]
    fn expiry_skips_extended_leases_and_rollback_restores() {
        let mut s = state();
        let mut txn = Txn::default();
        let l = lease(LeaseKind::Address, "2001:db8::10", 128, 100);
        s.apply(&mut txn, LeaseOp::Upsert(l.clone()), None);
        let mut longer = l.clone();
        longer.valid_until = 300;
        longer.preferred_until = 300;
        let mut txn2 = Txn::default();
        s.apply(&mut txn2, LeaseOp::Upsert(longer.clone()), None);
        assert!(s.pop_expired(200).is_empty());
        // Undo the extension: back to the shorter lease, which then expires.
        s.rollback(Undo(txn2.undo));
        assert_eq!(s.leases.get(&l.key()), Some(&l));
        // The first transaction's entry is superseded by nothing, so it can be undone too.
        s.rollback(Undo(txn.undo));
        assert!(s.leases.is_empty());
        assert!(s.is_free(0, 0));
        assert!(s.pop_expired(1000).is_empty());
    }

    #[test]
    fn rollback_leaves_keys_that_changed_since() {
        let mut s = state();
        let l = lease(LeaseKind::Address, "2001:db8::10", 128, 100);
        let mut t1 = Txn::default();
        s.apply(&mut t1, LeaseOp::Upsert(l.clone()), None);
        let mut t2 = Txn::default();
        let mut other = l.clone();
        other.iaid = 9;
        s.apply(&mut t2, LeaseOp::Upsert(other.clone()), None);
        s.rollback(Undo(t1.undo));
        assert_eq!(s.leases.get(&l.key()), Some(&other));
    }

    #[test]
    fn seeds_are_stable_and_distinct() {
        let a = seed(b"\x00\x03\x00\x01abcdef", 1, LeaseKind::Address);
        assert_eq!(a, seed(b"\x00\x03\x00\x01abcdef", 1, LeaseKind::Address));
        assert_ne!(a, seed(b"\x00\x03\x00\x01abcdef", 2, LeaseKind::Address));
        assert_ne!(a, seed(b"\x00\x03\x00\x01abcdef", 1, LeaseKind::Prefix));
    }
}
