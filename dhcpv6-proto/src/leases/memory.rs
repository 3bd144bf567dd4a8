//! In-memory leases: [`LeaseIndex`], the lookup structure the allocator keeps at
//! run time (filled from [`LeaseStore::load_all`] at start), and [`MemoryStore`], a
//! diskless [`LeaseStore`] with the same semantics as the SQLite one, for tests of
//! the modules above the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{CommitTicket, Lease, LeaseKey, LeaseKind, LeaseOp, LeaseStore, Location, StoreError};

/// Leases by binding ([`LeaseKey`]) and by client DUID.
#[derive(Debug, Clone, Default)]
pub struct LeaseIndex {
    by_key: HashMap<LeaseKey, Lease>,
    /// A client holds a handful of leases, so a Vec beats a nested map here.
    by_duid: HashMap<Vec<u8>, Vec<LeaseKey>>,
}

impl LeaseIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn get(&self, key: &LeaseKey) -> Option<&Lease> {
        self.by_key.get(key)
    }

    /// True if the address or prefix is bound or declined (not free to allocate).
    pub fn contains(&self, key: &LeaseKey) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_key.values()
    }

    /// All leases of one client, across its IAs.
    pub fn for_duid<'a>(&'a self, duid: &[u8]) -> impl Iterator<Item = &'a Lease> + 'a {
        self.by_duid.get(duid).into_iter().flatten().filter_map(|key| self.by_key.get(key))
    }

    /// The leases of one IA of one client.
    pub fn for_client<'a>(&'a self, duid: &[u8], iaid: u32, kind: LeaseKind) -> impl Iterator<Item = &'a Lease> + 'a {
        self.for_duid(duid).filter(move |lease| lease.iaid == iaid && lease.kind == kind)
    }

    /// Inserts or replaces the lease for its key; returns the one it replaced.
    pub fn upsert(&mut self, lease: Lease) -> Option<Lease> {
        let key = lease.key();
        let duid = lease.duid.clone();
        let old = self.by_key.insert(key, lease);
        match &old {
            Some(old) if old.duid == duid => {}
            Some(old) => {
                let old_duid = old.duid.clone();
                self.unlink(&old_duid, &key);
                self.by_duid.entry(duid).or_default().push(key);
            }
            None => self.by_duid.entry(duid).or_default().push(key),
        }
        old
    }

    pub fn remove(&mut self, key: &LeaseKey) -> Option<Lease> {
        let old = self.by_key.remove(key)?;
        self.unlink(&old.duid, key);
        Some(old)
    }

    /// Applies one store operation; returns the lease it replaced or removed.
    pub fn apply(&mut self, op: LeaseOp) -> Option<Lease> {
        match op {
            LeaseOp::Upsert(lease) => self.upsert(lease),
            LeaseOp::Remove { .. } => self.remove(&op.key()),
        }
    }

    /// Removes and returns every lease with `valid_until <= now`. A linear scan: it
    /// runs every few seconds at most, and a lease table fits in cache-friendly
    /// hash maps even at ISP scale.
    pub fn remove_expired(&mut self, now: u64) -> Vec<Lease> {
        let expired: Vec<LeaseKey> =
            self.by_key.values().filter(|lease| lease.is_expired(now)).map(Lease::key).collect();
        expired.iter().filter_map(|key| self.remove(key)).collect()
    }

    fn unlink(&mut self, duid: &[u8], key: &LeaseKey) {
        if let Some(keys) = self.by_duid.get_mut(duid) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_duid.remove(duid);
            }
        }
    }
}

impl FromIterator<Lease> for LeaseIndex {
    /// Later leases replace earlier ones with the same key.
    fn from_iter<I: IntoIterator<Item = Lease>>(leases: I) -> Self {
        let mut index = LeaseIndex::new();
        leases.into_iter().for_each(|lease| {
            index.upsert(lease);
        });
        index
    }
}

/// A [`LeaseStore`] that keeps leases in memory only. Commits resolve immediately;
/// validation, atomicity and expiry follow [`SqliteStore`](super::SqliteStore).
#[derive(Debug, Default)]
pub struct MemoryStore {
    leases: Mutex<LeaseIndex>,
    transactions: AtomicU64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `leases`, as if reloaded after a restart.
    pub fn with_leases(leases: impl IntoIterator<Item = Lease>) -> Self {
        MemoryStore { leases: Mutex::new(leases.into_iter().collect()), transactions: AtomicU64::new(0) }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, LeaseIndex> {
        // Every mutation below validates first and cannot panic half-way, so a
        // poisoned lock still guards a consistent index.
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LeaseStore for MemoryStore {
    fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
        // Sorted so that tests see a stable order (the SQLite store uses row order).
        let mut leases: Vec<Lease> = self.index().iter().cloned().collect();
        leases.sort_by_key(Lease::key);
        Ok(leases)
    }

    fn commit(&self, ops: Vec<LeaseOp>) -> CommitTicket {
        // All or nothing, like a transaction: check every op before applying any.
        if let Err(e) = ops.iter().try_for_each(LeaseOp::validate) {
            return CommitTicket::resolved(Err(e));
        }
        let mut index = self.index();
        for op in ops {
            index.apply(op);
        }
        self.transactions.fetch_add(1, Ordering::Relaxed);
        CommitTicket::resolved(Ok(()))
    }

    fn reclaim_expired(&self, now: u64) -> Result<Vec<Lease>, StoreError> {
        let reclaimed = self.index().remove_expired(now);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        Ok(reclaimed)
    }

    fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    fn location(&self) -> Location {
        Location::Memory
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::LeaseState;
    use super::*;

    #[test]
    fn index_lookups_follow_upserts_and_removes() {
        let mut index = LeaseIndex::new();
        let a = address(1);
        let mut p = prefix(1); // same client as `a`
        p.iaid = 7;
        index.upsert(a.clone());
        index.upsert(p.clone());

        assert_eq!(index.len(), 2);
        assert_eq!(index.for_duid(&a.duid).count(), 2);
        assert_eq!(index.for_client(&a.duid, a.iaid, LeaseKind::Address).collect::<Vec<_>>(), vec![&a]);
        assert_eq!(index.for_client(&a.duid, 7, LeaseKind::Prefix).collect::<Vec<_>>(), vec![&p]);
        assert_eq!(index.for_client(&a.duid, 7, LeaseKind::Address).count(), 0);

        // Rebinding the address to another client moves it in the DUID index.
        let mut moved = a.clone();
        moved.duid = vec![0xee; 10];
        assert_eq!(index.upsert(moved.clone()), Some(a.clone()));
        assert_eq!(index.for_duid(&a.duid).collect::<Vec<_>>(), vec![&p]);
        assert_eq!(index.for_duid(&moved.duid).collect::<Vec<_>>(), vec![&moved]);

        assert_eq!(index.apply(LeaseOp::remove(moved.key())), Some(moved.clone()));
        assert!(!index.contains(&moved.key()));
        assert_eq!(index.for_duid(&moved.duid).count(), 0);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn store_round_trip_upsert_remove() {
        let store = MemoryStore::new();
        store.commit(vec![LeaseOp::Upsert(address(1)), LeaseOp::Upsert(prefix(1))]).wait_blocking().unwrap();
        let mut renewed = address(1);
        renewed.valid_until += 60;
        store.commit(vec![LeaseOp::Upsert(renewed.clone())]).wait_blocking().unwrap();
        assert_eq!(store.load_all().unwrap(), vec![renewed.clone(), prefix(1)]);

        store.commit(vec![LeaseOp::remove(prefix(1).key())]).wait_blocking().unwrap();
        assert_eq!(store.load_all().unwrap(), vec![renewed]);
        assert_eq!(store.transactions(), 3);
    }

    #[test]
    fn store_commit_is_all_or_nothing() {
        let store = MemoryStore::new();
        let mut bad = prefix(2);
        bad.prefix_len = 129;
        let result = store.commit(vec![LeaseOp::Upsert(address(1)), LeaseOp::Upsert(bad)]).wait_blocking();
        assert!(matches!(result, Err(StoreError::InvalidLease { .. })));
        assert!(store.load_all().unwrap().is_empty());
    }

    #[test]
    fn store_reclaims_expired() {
        let now = 500;
        let mut expired = address(1);
        expired.valid_until = now;
        expired.preferred_until = now;
        let mut declined = address(2);
        declined.state = LeaseState::Declined;
        declined.valid_until = now - 1;
        declined.preferred_until = 0;
        let store = MemoryStore::with_leases([expired.clone(), declined.clone(), prefix(3)]);

        let mut reclaimed = store.reclaim_expired(now).unwrap();
        reclaimed.sort_by_key(Lease::key);
        assert_eq!(reclaimed, vec![expired, declined]);
        assert_eq!(store.load_all().unwrap(), vec![prefix(3)]);
    }
}
