//! Every lease the engine holds, found by binding (`LeaseKey`) or by the client's IA
//! (DUID, IAID, kind) in constant time: a Renew asks for one IA of one client, and must
//! not pay for the other IAs the same DUID holds (a cloned image, or a CPE that numbers
//! its IAs per subscriber port, can bring tens of thousands under one DUID).
//!
//! It also counts, per link, what each DUID and each client identity holds and how many
//! addresses are declined, so that the per-client limits cost a lookup, not a scan.

use std::collections::HashMap;

use crate::leases::{Lease, LeaseKey, LeaseKind, LeaseState};

/// One IA of a client: its IAID and whether it is an IA_NA or an IA_PD.
type IaId = (u32, LeaseKind);

/// Who a client is beyond its DUID (a MAC, a relay's Remote-ID, a link-local address),
/// tagged by kind; see `Client::ident`. Kept in memory only: the store has no column for
/// it, so leases loaded at start count towards their DUID but not their identity until
/// the client renews them.
pub(crate) type Ident = Vec<u8>;

/// What one DUID or identity holds on a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub bound: u32,
    pub declined: u32,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.bound == 0 && self.declined == 0
    }
}

/// The counts of one link (`Lease::iface`).
#[derive(Debug, Clone, Default)]
struct LinkHeld {
    declined: u32,
    by_duid: HashMap<Vec<u8>, Held>,
    by_ident: HashMap<Ident, Held>,
}

/// Leases by binding and by client IA.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaseIndex {
    by_key: HashMap<LeaseKey, Lease>,
    /// DUID, then IA, then the keys that IA holds (usually one). Two levels rather than
    /// one map keyed by (DUID, IA): the lookup needs no owned DUID, and a client's DUID
    /// is stored once, not per IA.
    by_client: HashMap<Vec<u8>, HashMap<IaId, Vec<LeaseKey>>>,
    /// The identity each lease was given to, when the message that made it had one.
    idents: HashMap<LeaseKey, Ident>,
    /// Per link name: what each DUID and identity holds.
    held: HashMap<String, LinkHeld>,
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

    /// The identity the lease for `key` was given to.
    pub fn ident(&self, key: &LeaseKey) -> Option<&Ident> {
        self.idents.get(key)
    }

    /// Every lease's identity, to carry over into a rebuilt engine (`adopt_ident`).
    pub fn idents(&self) -> impl Iterator<Item = (&LeaseKey, &Ident)> {
        self.idents.iter()
    }

    /// Gives the lease for `key` an identity, if it has none yet (a lease loaded without one).
    pub fn adopt_ident(&mut self, key: &LeaseKey, ident: Ident) {
        if self.idents.contains_key(key) {
            return;
        }
        if let Some(lease) = self.remove(key) {
            self.upsert(lease, Some(ident));
        }
    }

    /// What `duid` holds on `link`.
    pub fn held_by_duid(&self, link: &str, duid: &[u8]) -> Held {
        self.held.get(link).and_then(|l| l.by_duid.get(duid)).copied().unwrap_or_default()
    }

    /// What the identity `ident` holds on `link`.
    pub fn held_by_ident(&self, link: &str, ident: &[u8]) -> Held {
        self.held.get(link).and_then(|l| l.by_ident.get(ident)).copied().unwrap_or_default()
    }

    /// Declined addresses held on `link`.
    pub fn declined_on(&self, link: &str) -> u32 {
        self.held.get(link).map_or(0, |l| l.declined)
    }

    /// Inserts or replaces the lease for its key, given to `ident`; returns the one it
    /// replaced.
    pub fn upsert(&mut self, lease: Lease, ident: Option<Ident>) -> Option<Lease> {
        let key = lease.key();
        let owner = (lease.duid.clone(), lease.iaid);
        let old_ident = match &ident {
            Some(i) => self.idents.insert(key, i.clone()),
            None => self.idents.remove(&key),
        };
        let old = self.by_key.insert(key, lease);
        if let Some(old) = &old {
            count(&mut self.held, old, old_ident.as_deref(), false);
        }
        if let Some(new) = self.by_key.get(&key) {
            count(&mut self.held, new, ident.as_deref(), true);
        }
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
        let ident = self.idents.remove(key);
        count(&mut self.held, &old, ident.as_deref(), false);
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

/// Adds (`up`) or takes away one lease from its link's counts.
fn count(held: &mut HashMap<String, LinkHeld>, lease: &Lease, ident: Option<&[u8]>, up: bool) {
    let declined = lease.state == LeaseState::Declined;
    let step = |h: &mut Held| {
        let n = if declined { &mut h.declined } else { &mut h.bound };
        *n = if up { n.saturating_add(1) } else { n.saturating_sub(1) };
    };
    if !held.contains_key(lease.iface.as_str()) {
        if !up {
            return;
        }
        held.insert(lease.iface.clone(), LinkHeld::default());
    }
    let Some(link) = held.get_mut(lease.iface.as_str()) else { return };
    if declined {
        link.declined = if up { link.declined.saturating_add(1) } else { link.declined.saturating_sub(1) };
    }
    match link.by_duid.get_mut(lease.duid.as_slice()) {
        Some(h) => step(h),
        None if up => step(link.by_duid.entry(lease.duid.clone()).or_default()),
        None => {}
    }
    if link.by_duid.get(lease.duid.as_slice()).is_some_and(Held::is_empty) {
        link.by_duid.remove(lease.duid.as_slice());
    }
    if let Some(ident) = ident {
        match link.by_ident.get_mut(ident) {
            Some(h) => step(h),
            None if up => step(link.by_ident.entry(ident.to_vec()).or_default()),
            None => {}
        }
        if link.by_ident.get(ident).is_some_and(Held::is_empty) {
            link.by_ident.remove(ident);
        }
    }
    if link.declined == 0 && link.by_duid.is_empty() && link.by_ident.is_empty() {
        held.remove(lease.iface.as_str());
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
        index.upsert(a.clone(), None);
        index.upsert(p.clone(), None);

        assert_eq!(index.len(), 2);
        assert_eq!(index.for_duid(&a.duid).count(), 2);
        assert_eq!(index.for_client(&a.duid, a.iaid, LeaseKind::Address).collect::<Vec<_>>(), vec![&a]);
        assert_eq!(index.for_client(&a.duid, 7, LeaseKind::Prefix).collect::<Vec<_>>(), vec![&p]);
        assert_eq!(index.for_client(&a.duid, 7, LeaseKind::Address).count(), 0);

        // Rebinding the address to another client moves it in the DUID index.
        let mut moved = a.clone();
        moved.duid = vec![0xee; 10];
        assert_eq!(index.upsert(moved.clone(), None), Some(a.clone()));
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
        index.upsert(a.clone(), None);
        let renumbered = Lease { iaid: 9, ..a.clone() };
        index.upsert(renumbered.clone(), None);
        assert_eq!(index.for_client(&a.duid, a.iaid, LeaseKind::Address).count(), 0);
        assert_eq!(index.for_client(&a.duid, 9, LeaseKind::Address).collect::<Vec<_>>(), vec![&renumbered]);
        index.remove(&a.key());
        assert!(index.by_client.is_empty(), "no empty entries left behind");
    }

    #[test]
    fn counts_follow_binds_declines_moves_and_removes() {
        let mut index = LeaseIndex::new();
        let a = address(1);
        let (link, duid) = (a.iface.clone(), a.duid.clone());
        let mac = vec![1, 2, 0, 0, 0, 0, 1];
        index.upsert(a.clone(), Some(mac.clone()));
        index.upsert(Lease { duid: duid.clone(), iaid: 2, ..address(2) }, Some(mac.clone()));
        assert_eq!(index.held_by_duid(&link, &duid), Held { bound: 2, declined: 0 });
        assert_eq!(index.held_by_ident(&link, &mac), Held { bound: 2, declined: 0 });
        assert_eq!(index.held_by_duid("elsewhere", &duid), Held::default(), "per link");
        // Declined: moves from bound to declined, for the DUID, the identity and the link.
        index.upsert(Lease { state: LeaseState::Declined, ..a.clone() }, Some(mac.clone()));
        assert_eq!(index.held_by_duid(&link, &duid), Held { bound: 1, declined: 1 });
        assert_eq!(index.held_by_ident(&link, &mac), Held { bound: 1, declined: 1 });
        assert_eq!(index.declined_on(&link), 1);
        // Given to another client without an identity: off this client's counts.
        let other = Lease { duid: vec![9; 10], ..a.clone() };
        index.upsert(other.clone(), None);
        assert_eq!(index.held_by_duid(&link, &duid), Held { bound: 1, declined: 0 });
        assert_eq!(index.held_by_duid(&link, &other.duid), Held { bound: 1, declined: 0 });
        assert_eq!(index.held_by_ident(&link, &mac), Held { bound: 1, declined: 0 });
        assert_eq!(index.declined_on(&link), 0);
        // An identity adopted later (after a reload) counts from then on.
        index.adopt_ident(&other.key(), vec![7]);
        assert_eq!(index.held_by_ident(&link, &[7]), Held { bound: 1, declined: 0 });
        index.remove(&other.key());
        index.remove(&address(2).key());
        assert!(index.held.is_empty() && index.idents.is_empty(), "nothing left behind");
    }

    /// One DUID with 50,000 IAs: finding one IA's lease must look at that lease only,
    /// not at the client's others (it used to filter all of them, 300 ms per Renew).
    #[test]
    fn one_ia_of_a_client_with_many_is_found_without_a_scan() {
        const IAS: u32 = 50_000;
        let mut index = LeaseIndex::new();
        let duid = address(0).duid;
        for n in 0..IAS {
            index.upsert(Lease { duid: duid.clone(), ..address(n) }, None);
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
