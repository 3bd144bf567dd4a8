//! [`MemoryStore`]: a diskless [`LeaseStore`] with the same semantics as the SQLite
//! one, for tests of the modules above the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{CommitTicket, Lease, LeaseKey, LeaseOp, LeaseStore, Location, StoreError};

/// A [`LeaseStore`] that keeps leases in memory only. Commits resolve immediately;
/// validation, atomicity and expiry follow [`SqliteStore`](super::SqliteStore).
#[derive(Debug, Default)]
pub struct MemoryStore {
    leases: Mutex<HashMap<LeaseKey, Lease>>,
    transactions: AtomicU64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `leases`, as if reloaded after a restart.
    pub fn with_leases(leases: impl IntoIterator<Item = Lease>) -> Self {
        // Later leases replace earlier ones with the same key, as upserts would.
        let leases = leases.into_iter().map(|l| (l.key(), l)).collect();
        MemoryStore { leases: Mutex::new(leases), transactions: AtomicU64::new(0) }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseKey, Lease>> {
        // Every mutation below validates first and cannot panic half-way, so a
        // poisoned lock still guards a consistent index.
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LeaseStore for MemoryStore {
    fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
        // Sorted so that tests see a stable order (the SQLite store uses row order).
        let mut leases: Vec<Lease> = self.index().values().cloned().collect();
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
            match op {
                LeaseOp::Upsert(lease) => index.insert(lease.key(), lease),
                LeaseOp::Remove { .. } => index.remove(&op.key()),
            };
        }
        self.transactions.fetch_add(1, Ordering::Relaxed);
        CommitTicket::resolved(Ok(()))
    }

    fn reclaim_expired(&self, now: u64) -> Result<Vec<Lease>, StoreError> {
        let mut index = self.index();
        let expired: Vec<LeaseKey> = index.values().filter(|l| l.is_expired(now)).map(Lease::key).collect();
        let reclaimed = expired.iter().filter_map(|k| index.remove(k)).collect();
        drop(index);
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
