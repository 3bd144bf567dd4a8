//! Every lease the engine holds, found by binding (`LeaseKey`) or by the client's IA
//! (DUID, IAID, kind) in constant time: a Renew asks for one IA of one client, and must
//! not pay for the other IAs the same DUID holds (a cloned image, or a CPE that numbers
//! its IAs per subscriber port, can bring tens of thousands under one DUID).
//!
//! It also counts, per link, what each DUID and each client identity holds and how many
//! addresses are declined, so that the per-client limits cost a lookup, not a scan.

use std::collections::{hash_map, HashMap};

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

    fn step(&mut self, declined: bool, up: bool) {
        let n = if declined { &mut self.declined } else { &mut self.bound };
        *n = if up { n.saturating_add(1) } else { n.saturating_sub(1) };
    }
}

/// A lease, the identity it was given to, and its link's number (`LeaseIndex::links`).
#[derive(Debug, Clone)]
struct Slot {
    lease: Lease,
    ident: Option<Ident>,
    link: u32,
}

/// One DUID: its IAs and what it holds per link. Kept in the one map entry the IA lookup
/// needs anyway, so that counting a lease costs no lookup of its own.
#[derive(Debug, Clone, Default)]
struct ClientEntry {
    /// IA, then the keys that IA holds (usually one).
    ias: HashMap<IaId, Vec<LeaseKey>>,
    /// (link number, counts); a client is almost always on one link.
    held: Vec<(u32, Held)>,
}

impl ClientEntry {
    fn held_on(&self, link: u32) -> Held {
        self.held.iter().find(|(l, _)| *l == link).map(|(_, h)| *h).unwrap_or_default()
    }

    fn step(&mut self, link: u32, declined: bool, up: bool) {
        let i = match self.held.iter().position(|(l, _)| *l == link) {
            Some(i) => i,
            None if up => {
                self.held.push((link, Held::default()));
                self.held.len() - 1
            }
            None => return,
        };
        self.held[i].1.step(declined, up);
        if self.held[i].1.is_empty() {
            self.held.swap_remove(i);
        }
    }
}

/// The counts of one link (`Lease::iface`) that are not per DUID.
#[derive(Debug, Clone, Default)]
struct LinkHeld {
    declined: u32,
    by_ident: HashMap<Ident, Held>,
}

impl LinkHeld {
    fn step(&mut self, ident: Option<&[u8]>, declined: bool, up: bool) {
        if declined {
            self.declined = if up { self.declined.saturating_add(1) } else { self.declined.saturating_sub(1) };
        }
        let Some(ident) = ident else { return };
        probe();
        match self.by_ident.get_mut(ident) {
            Some(h) => {
                h.step(declined, up);
                if h.is_empty() {
                    self.by_ident.remove(ident);
                }
            }
            None if up => {
                let mut h = Held::default();
                h.step(declined, up);
                self.by_ident.insert(ident.to_vec(), h);
            }
            None => {}
        }
    }
}

/// Leases by binding and by client IA.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaseIndex {
    by_key: HashMap<LeaseKey, Slot>,
    /// DUID, then IA, then the keys that IA holds (usually one). Two levels rather than
    /// one map keyed by (DUID, IA): the lookup needs no owned DUID, and a client's DUID
    /// is stored once, not per IA.
    by_client: HashMap<Vec<u8>, ClientEntry>,
    /// Link names (`Lease::iface`) by number, numbered as first seen. Never forgotten:
    /// there are as many as configured links and names found in the store.
    link_ids: HashMap<String, u32>,
    /// Per link number: declines and what each identity holds.
    links: Vec<LinkHeld>,
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

    /// The identity the lease for `key` was given to, if any.
    pub fn ident_of(&self, key: &LeaseKey) -> Option<&Ident> {
        self.by_key.get(key).and_then(|e| e.ident.as_ref())
    }

    pub fn get(&self, key: &LeaseKey) -> Option<&Lease> {
        self.by_key.get(key).map(|e| &e.lease)
    }

    /// True if the address or prefix is bound or declined (not free to allocate).
    pub fn contains(&self, key: &LeaseKey) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_key.values().map(|e| visit(&e.lease))
    }

    /// All leases of one client, across its IAs (tests check the per-IA view against it).
    #[cfg(test)]
    pub fn for_duid<'a>(&'a self, duid: &[u8]) -> impl Iterator<Item = &'a Lease> + 'a {
        self.by_client
            .get(duid)
            .into_iter()
            .flat_map(|c| c.ias.values())
            .flatten()
            .filter_map(|key| self.get(key))
            .map(visit)
    }

    /// The leases of one IA of one client: two hash lookups, whatever else the client holds.
    pub fn for_client<'a>(&'a self, duid: &[u8], iaid: u32, kind: LeaseKind) -> impl Iterator<Item = &'a Lease> + 'a {
        let keys = self.by_client.get(duid).and_then(|c| c.ias.get(&(iaid, kind)));
        keys.into_iter().flatten().filter_map(|key| self.get(key)).map(visit)
    }

    /// Every lease's identity, to carry over into a rebuilt engine (`adopt_ident`).
    pub fn idents(&self) -> impl Iterator<Item = (&LeaseKey, &Ident)> {
        self.by_key.iter().filter_map(|(k, e)| Some((k, e.ident.as_ref()?)))
    }

    /// Gives the lease for `key` an identity, if it has none yet (a lease loaded without one).
    pub fn adopt_ident(&mut self, key: &LeaseKey, ident: Ident) {
        if self.by_key.get(key).is_none_or(|e| e.ident.is_some()) {
            return;
        }
        if let Some((lease, _)) = self.take(key) {
            self.put(lease, Some(ident));
        }
    }

    /// What `duid` holds on `link`.
    pub fn held_by_duid(&self, link: &str, duid: &[u8]) -> Held {
        let (Some(&id), Some(c)) = (self.link_ids.get(link), self.by_client.get(duid)) else {
            return Held::default();
        };
        c.held_on(id)
    }

    /// What the identity `ident` holds on `link`.
    pub fn held_by_ident(&self, link: &str, ident: &[u8]) -> Held {
        self.link_held(link).and_then(|l| l.by_ident.get(ident)).copied().unwrap_or_default()
    }

    /// Declined addresses held on `link`.
    pub fn declined_on(&self, link: &str) -> u32 {
        self.link_held(link).map_or(0, |l| l.declined)
    }

    fn link_held(&self, link: &str) -> Option<&LinkHeld> {
        self.link_ids.get(link).and_then(|&id| self.links.get(id as usize))
    }

    /// Inserts or replaces the lease for its key, given to `ident`; returns the one it
    /// replaced.
    #[cfg(test)]
    pub fn upsert(&mut self, lease: Lease, ident: Option<Ident>) -> Option<Lease> {
        self.put(lease, ident).map(|(old, _)| old)
    }

    /// As `upsert`, returning the replaced lease with its identity.
    pub fn put(&mut self, lease: Lease, ident: Option<Ident>) -> Option<(Lease, Option<Ident>)> {
        let key = lease.key();
        let declined = lease.state == LeaseState::Declined;
        let (duid, iaid) = (lease.duid.clone(), lease.iaid);
        let (links, link_ids) = (&mut self.links, &mut self.link_ids);
        // One lookup of the key does it all: the link number comes from the lease replaced
        // when it is on the same link (a renewal), and the identity is counted before the
        // slot takes it.
        probe();
        let (link, old) = match self.by_key.entry(key) {
            hash_map::Entry::Occupied(mut o) => {
                let link = if o.get().lease.iface == lease.iface {
                    o.get().link
                } else {
                    link_id(link_ids, links, &lease.iface)
                };
                step_link(links, link, ident.as_deref(), declined, true);
                (link, Some(o.insert(Slot { lease, ident, link })))
            }
            hash_map::Entry::Vacant(v) => {
                let link = link_id(link_ids, links, &lease.iface);
                step_link(links, link, ident.as_deref(), declined, true);
                v.insert(Slot { lease, ident, link });
                (link, None)
            }
        };
        if let Some(old) = &old {
            step_link(&mut self.links, old.link, old.ident.as_deref(), old.lease.state == LeaseState::Declined, false);
        }
        match &old {
            Some(old) if (&old.lease.duid, old.lease.iaid) == (&duid, iaid) => {
                probe();
                if let Some(c) = self.by_client.get_mut(duid.as_slice()) {
                    c.step(old.link, old.lease.state == LeaseState::Declined, false);
                    c.step(link, declined, true);
                }
            }
            Some(old) => {
                self.unlink(&old.lease, old.link, &key);
                self.link(duid, iaid, key, link, declined);
            }
            None => self.link(duid, iaid, key, link, declined),
        }
        old.map(|e| (e.lease, e.ident))
    }

    #[cfg(test)]
    pub fn remove(&mut self, key: &LeaseKey) -> Option<Lease> {
        self.take(key).map(|(old, _)| old)
    }

    /// As `remove`, returning the lease with its identity.
    pub fn take(&mut self, key: &LeaseKey) -> Option<(Lease, Option<Ident>)> {
        probe();
        let old = self.by_key.remove(key)?;
        step_link(&mut self.links, old.link, old.ident.as_deref(), old.lease.state == LeaseState::Declined, false);
        self.unlink(&old.lease, old.link, key);
        Some((old.lease, old.ident))
    }

    fn link(&mut self, duid: Vec<u8>, iaid: u32, key: LeaseKey, link: u32, declined: bool) {
        probe();
        let c = self.by_client.entry(duid).or_default();
        c.ias.entry((iaid, key.kind)).or_default().push(key);
        c.step(link, declined, true);
    }

    fn unlink(&mut self, old: &Lease, link: u32, key: &LeaseKey) {
        probe();
        let Some(c) = self.by_client.get_mut(old.duid.as_slice()) else { return };
        c.step(link, old.state == LeaseState::Declined, false);
        if let Some(keys) = c.ias.get_mut(&(old.iaid, key.kind)) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                c.ias.remove(&(old.iaid, key.kind));
            }
        }
        if c.ias.is_empty() {
            self.by_client.remove(old.duid.as_slice());
        }
    }
}

/// The number of link `name`, given one if it is new.
fn link_id(ids: &mut HashMap<String, u32>, links: &mut Vec<LinkHeld>, name: &str) -> u32 {
    probe();
    if let Some(&id) = ids.get(name) {
        return id;
    }
    // More than 4 billion link names cannot happen; the last number then takes them all.
    let id = u32::try_from(links.len()).unwrap_or(u32::MAX);
    if id != u32::MAX {
        links.push(LinkHeld::default());
        ids.insert(name.to_owned(), id);
    }
    id
}

/// Counts one lease of link `id` up or down.
fn step_link(links: &mut [LinkHeld], id: u32, ident: Option<&[u8]>, declined: bool, up: bool) {
    if let Some(l) = links.get_mut(id as usize) {
        l.step(ident, declined, up);
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

// Every map lookup that keeping the index and its counts costs passes through `probe`, so a
// test can hold a grant to a fixed number of them: the limits must stay a lookup, not grow
// into a walk over maps per message.
#[cfg(test)]
thread_local! {
    static PROBED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn probe() {
    #[cfg(test)]
    PROBED.with(|v| v.set(v.get() + 1));
}

/// Map lookups the index's writes made on this thread so far.
#[cfg(test)]
pub(crate) fn probed() -> usize {
    PROBED.with(std::cell::Cell::get)
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
        assert!(
            index.links.iter().all(|l| l.declined == 0 && l.by_ident.is_empty())
                && index.by_client.is_empty()
                && index.idents().next().is_none(),
            "nothing left behind"
        );
    }

    /// The limits' counts ride on the lookups the index makes anyway: a new lease and a
    /// renewal each cost four map lookups however many leases and clients there are (the
    /// counts once took a dozen hashed lookups and two allocations per lease, a quarter of
    /// the SARR rate).
    #[test]
    fn a_grant_and_a_renewal_cost_a_fixed_few_lookups() {
        let mut index = LeaseIndex::new();
        let mac = vec![1, 2, 0, 0, 0, 0, 1];
        for n in 0..2_000 {
            index.upsert(address(n), Some(mac.clone()));
        }
        let before = probed();
        index.upsert(address(5_000), Some(mac.clone()));
        assert_eq!(probed() - before, 4, "a new lease");
        let before = probed();
        let renewed = Lease { valid_until: address(5_000).valid_until + 100, ..address(5_000) };
        index.upsert(renewed, Some(mac.clone()));
        assert_eq!(probed() - before, 4, "a renewal");
        let before = probed();
        index.remove(&address(5_000).key());
        assert_eq!(probed() - before, 3, "a removal");
        assert_eq!(index.held_by_ident(&address(0).iface, &mac), Held { bound: 2_000, declined: 0 });
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
