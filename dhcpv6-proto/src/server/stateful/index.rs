//! Every lease the engine holds, found by binding (`LeaseKey`) or by the client's IA
//! (DUID, IAID, kind) in constant time: a Renew asks for one IA of one client, and must
//! not pay for the other IAs the same DUID holds (a cloned image, or a CPE that numbers
//! its IAs per subscriber port, can bring tens of thousands under one DUID).

use std::collections::HashMap;

use crate::leases::{Lease, LeaseKey, LeaseKind};

/// One IA of a client: its IAID and whether it is an IA_NA or an IA_PD.
type IaId = (u32, LeaseKind);

/// Leases by binding and by client IA.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaseIndex {
    by_key: HashMap<LeaseKey, Lease>,
    /// DUID, then IA, then the keys that IA holds (usually one). Two levels rather than
    /// one map keyed by (DUID, IA): the lookup needs no owned DUID, and a client's DUID
    /// is stored once, not per IA.
    by_client: HashMap<Vec<u8>, HashMap<IaId, Vec<LeaseKey>>>,
}

impl LeaseIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    #[cfg(test)]
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
        self.by_key.values().map(visit)
    }

    /// All leases of one client, across its IAs (tests check the per-IA view against it).
    #[cfg(test)]
    pub fn for_duid<'a>(&'a self, duid: &[u8]) -> impl Iterator<Item = &'a Lease> + 'a {
        self.by_client
            .get(duid)
            .into_iter()
            .flat_map(HashMap::values)
            .flatten()
            .filter_map(|key| self.by_key.get(key))
            .map(visit)
    }

    /// The leases of one IA of one client: two hash lookups, whatever else the client holds.
    pub fn for_client<'a>(&'a self, duid: &[u8], iaid: u32, kind: LeaseKind) -> impl Iterator<Item = &'a Lease> + 'a {
        let keys = self.by_client.get(duid).and_then(|ias| ias.get(&(iaid, kind)));
        keys.into_iter().flatten().filter_map(|key| self.by_key.get(key)).map(visit)
    }

    /// Inserts or replaces the lease for its key; returns the one it replaced.
    pub fn upsert(&mut self, lease: Lease) -> Option<Lease> {
        let key = lease.key();
        let owner = (lease.duid.clone(), lease.iaid);
        let old = self.by_key.insert(key, lease);
        match &old {
            Some(old) if (&old.duid, old.iaid) == (&owner.0, owner.1) => {}
            Some(old) => {
                let (old_duid, old_iaid) = (old.duid.clone(), old.iaid);
                self.unlink(&old_duid, old_iaid, &key);
                self.link(owner.0, owner.1, key);
            }
            None => self.link(owner.0, owner.1, key),
        }
        old
    }

    pub fn remove(&mut self, key: &LeaseKey) -> Option<Lease> {
        let old = self.by_key.remove(key)?;
        self.unlink(&old.duid, old.iaid, key);
        Some(old)
    }

    fn link(&mut self, duid: Vec<u8>, iaid: u32, key: LeaseKey) {
        self.by_client.entry(duid).or_default().entry((iaid, key.kind)).or_default().push(key);
    }

    fn unlink(&mut self, duid: &[u8], iaid: u32, key: &LeaseKey) {
        let Some(ias) = self.by_client.get_mut(duid) else { return };
        if let Some(keys) = ias.get_mut(&(iaid, key.kind)) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                ias.remove(&(iaid, key.kind));
            }
        }
        if ias.is_empty() {
            self.by_client.remove(duid);
        }
    }
}

// Every lease the index hands out passes through `visit`, so a test can count how many a
// lookup looked at: the guard against a lookup that quietly becomes a scan again.
#[cfg(test)]
thread_local! {
    static VISITED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn visit(lease: &Lease) -> &Lease {
    #[cfg(test)]
    VISITED.with(|v| v.set(v.get() + 1));
    lease
}

/// Leases the index handed out on this thread so far.
#[cfg(test)]
pub(crate) fn visited() -> usize {
    VISITED.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::testutil::{address, prefix};

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

        assert_eq!(index.remove(&moved.key()), Some(moved.clone()));
        assert!(!index.contains(&moved.key()));
        assert_eq!(index.for_duid(&moved.duid).count(), 0);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_new_iaid_for_the_same_binding_moves_it_between_ias() {
        let mut index = LeaseIndex::new();
        let a = address(1);
        index.upsert(a.clone());
        let renumbered = Lease { iaid: 9, ..a.clone() };
        index.upsert(renumbered.clone());
        assert_eq!(index.for_client(&a.duid, a.iaid, LeaseKind::Address).count(), 0);
        assert_eq!(index.for_client(&a.duid, 9, LeaseKind::Address).collect::<Vec<_>>(), vec![&renumbered]);
        index.remove(&a.key());
        assert!(index.by_client.is_empty(), "no empty entries left behind");
    }

    /// One DUID with 50,000 IAs: finding one IA's lease must look at that lease only,
    /// not at the client's others (it used to filter all of them, 300 ms per Renew).
    #[test]
    fn one_ia_of_a_client_with_many_is_found_without_a_scan() {
        const IAS: u32 = 50_000;
        let mut index = LeaseIndex::new();
        let duid = address(0).duid;
        for n in 0..IAS {
            index.upsert(Lease { duid: duid.clone(), ..address(n) });
        }
        assert_eq!(index.len(), IAS as usize);

        let before = visited();
        let found: Vec<&Lease> = index.for_client(&duid, 31_337, LeaseKind::Address).collect();
        assert_eq!(found, vec![&Lease { duid: duid.clone(), ..address(31_337) }]);
        assert_eq!(visited() - before, 1, "the lookup looked at other leases of the client");
        assert_eq!(index.for_client(&duid, 31_337, LeaseKind::Prefix).count(), 0);
        assert_eq!(visited() - before, 1, "an IA the client does not have costs no lease");

        // The counter does see scans: listing the client's leases visits every one.
        let before = visited();
        assert_eq!(index.for_duid(&duid).count(), IAS as usize);
        assert_eq!(visited() - before, IAS as usize);
    }
}
