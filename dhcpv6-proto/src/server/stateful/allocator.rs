//! Per-IA decisions: which address or prefix an IA gets, keeps, or loses. The allocator
//! owns what those decisions read and change (links, their pools and reservations, and the
//! lease state); the engine above it only speaks messages.
//!
//! Every function takes `txn: Option<&mut Txn>`: `None` answers a Solicit without Rapid
//! Commit (an offer: nothing is recorded, RFC 9915 section 18.3.1), `Some` commits. `skip`
//! holds keys already placed in the message being built, so two IAs of one Advertise are
//! not offered the same address.

use std::collections::HashSet;

use dhcpv6_common::wire::status;

use crate::leases::{Lease, LeaseKey, LeaseKind, LeaseOp, LeaseState, NextHop, RelayRecord};
use crate::server::relay::LinkSelector;
use crate::stats::Counter;

use super::config::LinkPools;
use super::context::{Client, RouteChange};
use super::ia::{Granted, Hint, IaAnswer, IaRequest};
use super::pools::mask;
use super::reservations::LinkReservations;
use super::state::{key, seed, Geo, State, Txn};

/// Links with their pools and reservations, and the leases held in them.
#[derive(Debug)]
pub(crate) struct Allocator {
    pub links: Vec<LinkPools>,
    /// Per link: pool ids for addresses and for prefixes.
    pool_ids: Vec<[Vec<usize>; 2]>,
    reservations: Vec<LinkReservations>,
    pub state: State,
}

fn zero(k: LeaseKey) -> Granted {
    Granted { addr: k.addr, len: k.prefix_len, preferred: 0, valid: 0 }
}

/// The key a specified hint names, if the hint names one exactly.
fn hint_key(kind: LeaseKind, h: &Hint) -> Option<LeaseKey> {
    match kind {
        LeaseKind::Address => Some(key(kind, h.addr, 128)),
        LeaseKind::Prefix if h.len > 0 => Some(key(kind, h.addr, h.len)),
        LeaseKind::Prefix => None,
    }
}

impl Allocator {
    /// Pools for every link, and reserved addresses and prefixes inside pools taken out of
    /// dynamic allocation. No lease yet: `state.load` adds them.
    pub fn new(links: Vec<LinkPools>) -> Self {
        let mut state = State::new();
        let mut pool_ids = Vec::with_capacity(links.len());
        for (i, l) in links.iter().enumerate() {
            let na = l.na.iter().map(|r| state.add_pool(i, Geo::Na(*r))).collect();
            let pd = l.pd.iter().map(|p| state.add_pool(i, Geo::Pd(*p))).collect();
            pool_ids.push([na, pd]);
        }
        for l in &links {
            for r in &l.reservations {
                let keys = [
                    r.address.map(|a| key(LeaseKind::Address, a, 128)),
                    r.prefix.map(|(p, len)| key(LeaseKind::Prefix, p, len)),
                ];
                for k in keys.into_iter().flatten() {
                    if state.locate(&k).is_some() {
                        state.reserve(k);
                    }
                }
            }
        }
        let reservations = links.iter().map(|l| LinkReservations::new(l.reservations.clone())).collect();
        Self { links, pool_ids, reservations, state }
    }

    fn pool_ids(&self, link: usize, kind: LeaseKind) -> &[usize] {
        &self.pool_ids[link][match kind {
            LeaseKind::Address => 0,
            LeaseKind::Prefix => 1,
        }]
    }

    /// The reserved key for this IA, if the client has one that nobody else holds.
    fn reserved_for(&self, c: &Client<'_>, ia: &IaRequest, skip: &HashSet<LeaseKey>) -> Option<LeaseKey> {
        self.reservations[c.link].matching(c.duid, ia.iaid, c.relay).into_iter().find_map(|r| {
            let k = match ia.kind {
                LeaseKind::Address => key(ia.kind, r.address?, 128),
                LeaseKind::Prefix => {
                    let (p, l) = r.prefix?;
                    key(ia.kind, p, l)
                }
            };
            let mine_or_free = match self.state.leases.get(&k) {
                None => true,
                Some(l) => l.state == LeaseState::Bound && l.duid == c.duid && l.iaid == ia.iaid,
            };
            (mine_or_free && !skip.contains(&k)).then_some(k)
        })
    }

    /// Whether a Renew from `lease`'s client on `link` (not relayed) would keep the lease as
    /// it is: what `assign` decides for a binding the IA holds (its reservation, if it has
    /// one, else a slot of the link's pools not reserved for someone else).
    pub(crate) fn keeps(&self, lease: &Lease, link: usize) -> bool {
        let c = Client {
            duid: &lease.duid,
            link,
            relay: None,
            peer: std::net::Ipv6Addr::UNSPECIFIED,
            arrival: &lease.iface,
            now: 0,
            ident: None,
            can_bind: true,
        };
        let ia = IaRequest { kind: lease.kind, iaid: lease.iaid, hints: Vec::new() };
        let k = lease.key();
        match self.reserved_for(&c, &ia, &HashSet::new()) {
            Some(r) => r == k,
            None => self.servable(&c, &ia, k),
        }
    }

    /// True if `k` may stay with this client on this link: a slot of one of the link's pools
    /// that is not reserved for someone else, or one of the client's reservations.
    fn servable(&self, c: &Client<'_>, ia: &IaRequest, k: LeaseKey) -> bool {
        let mine = |k: LeaseKey| {
            self.reservations[c.link].matching(c.duid, ia.iaid, c.relay).iter().any(|r| match k.kind {
                LeaseKind::Address => r.address == Some(k.addr),
                LeaseKind::Prefix => r.prefix == Some((k.addr, k.prefix_len)),
            })
        };
        match self.state.locate(&k) {
            Some((id, _)) => self.state.pools[id].link == c.link && (!self.state.reserved.contains(&k) || mine(k)),
            None => mine(k),
        }
    }

    /// A hinted key that is free in one of the link's pools.
    fn hinted(&self, c: &Client<'_>, ia: &IaRequest, skip: &HashSet<LeaseKey>) -> Option<LeaseKey> {
        let pools = self.pool_ids(c.link, ia.kind);
        ia.hints.iter().filter(|h| h.is_specified()).find_map(|h| {
            // A prefix hint without a length (RFC 8168 section 3.1) is tried at each
            // delegated length of the link.
            let lens: Vec<u8> = match (ia.kind, h.len) {
                (LeaseKind::Address, _) => vec![128],
                (LeaseKind::Prefix, 0) => pools.iter().map(|id| self.state.pools[*id].geo.delegated_len()).collect(),
                (LeaseKind::Prefix, l) => vec![l],
            };
            lens.into_iter().find_map(|l| {
                let k = key(ia.kind, std::net::Ipv6Addr::from(u128::from(h.addr) & mask(l)), l);
                let (id, slot) = self.state.locate(&k)?;
                let ok = self.state.pools[id].link == c.link && self.state.is_free(id, slot) && !skip.contains(&k);
                ok.then_some(k)
            })
        })
    }

    /// A free key from the link's pools. For prefixes, pools of the hinted length come
    /// first, then the closest lengths, shorter (bigger) before longer (RFC 8168 section 3.2:
    /// a hint the server cannot meet exactly still gets a prefix of a configured length).
    fn dynamic(&self, c: &Client<'_>, ia: &IaRequest, skip: &HashSet<LeaseKey>) -> Option<LeaseKey> {
        let mut ids = self.pool_ids(c.link, ia.kind).to_vec();
        let s = seed(c.duid, ia.iaid, ia.kind);
        let Some(hint) = ia.length_hint().filter(|_| ia.kind == LeaseKind::Prefix) else {
            return self.state.alloc(&ids, s, skip);
        };
        let rank = |d: u8| (d != hint, d.abs_diff(hint), d > hint);
        ids.sort_by_key(|id| rank(self.state.pools[*id].geo.delegated_len()));
        ids.chunk_by(|a, b| self.state.pools[*a].geo.delegated_len() == self.state.pools[*b].geo.delegated_len())
            .find_map(|group| self.state.alloc(group, s, skip))
    }

    /// The limit that keeps this client from one more lease on its link, if one does.
    /// Offers of the message being answered count too: a Solicit records nothing, so they
    /// are only in `skip` (keys the client already holds are not new).
    fn over_limit(&self, c: &Client<'_>, skip: &HashSet<LeaseKey>) -> Option<Counter> {
        let link = &self.links[c.link];
        let held_here =
            |k: &&LeaseKey| self.state.leases.get(k).is_some_and(|l| l.duid == c.duid && l.state == LeaseState::Bound);
        let pending = u32::try_from(skip.iter().filter(|k| !held_here(k)).count()).unwrap_or(u32::MAX);
        let full = |cap: u32, bound: u32| cap != 0 && bound.saturating_add(pending) >= cap;
        if full(link.limits.per_client, self.state.leases.held_by_duid(&link.link, c.duid).bound) {
            return Some(Counter::LimitLeasesPerClient);
        }
        let by_ident = c.ident.as_ref().map(|id| self.state.leases.held_by_ident(&link.link, id));
        if by_ident.is_some_and(|h| full(link.limits.per_mac, h.bound)) {
            return Some(Counter::LimitLeasesPerMac);
        }
        None
    }

    /// Binds (or re-binds with fresh lifetimes) `k` to the IA.
    fn grant(
        &mut self,
        c: &Client<'_>,
        ia: &IaRequest,
        k: LeaseKey,
        txn: Option<&mut Txn>,
        skip: &mut HashSet<LeaseKey>,
    ) -> Granted {
        skip.insert(k);
        let link = &self.links[c.link];
        let lt = link.lifetimes;
        if let Some(txn) = txn {
            let lease = Lease {
                duid: c.duid.to_vec(),
                iaid: ia.iaid,
                kind: ia.kind,
                addr: k.addr,
                prefix_len: k.prefix_len,
                iface: link.link.clone(),
                valid_until: c.now + u64::from(lt.valid),
                preferred_until: c.now + u64::from(lt.preferred),
                state: LeaseState::Bound,
                next_hop: (ia.kind == LeaseKind::Prefix)
                    .then(|| Box::new(NextHop { via: c.peer, dev: c.arrival.to_owned() })),
                last_transaction: c.now,
                relay: c.relay.map(|sel| Box::new(relay_record(sel, c.peer))),
            };
            if ia.kind == LeaseKind::Prefix {
                txn.routes.push(RouteChange::Add {
                    prefix: k.addr,
                    len: k.prefix_len,
                    via: c.peer,
                    link: link.link.clone(),
                });
            }
            self.state.apply(txn, LeaseOp::Upsert(lease), c.ident.clone());
        }
        Granted { addr: k.addr, len: k.prefix_len, preferred: lt.preferred, valid: lt.valid }
    }

    /// Ends a binding. Returns the zero-lifetime entry that tells the client, when committing.
    pub(crate) fn revoke(&mut self, lease: &Lease, txn: Option<&mut Txn>) -> Option<Granted> {
        let txn = txn?;
        if lease.kind == LeaseKind::Prefix {
            txn.routes.push(RouteChange::Remove {
                prefix: lease.addr,
                len: lease.prefix_len,
                link: lease.iface.clone(),
            });
        }
        self.state.apply(txn, LeaseOp::remove(lease.key()), None);
        Some(zero(lease.key()))
    }

    /// Solicit, Request: keep what the IA has if it still may, else find something
    /// (reservation, then hint, then the pool), within the client's limits (a reservation
    /// is not limited).
    pub(crate) fn assign(
        &mut self,
        c: &Client<'_>,
        ia: &IaRequest,
        mut txn: Option<&mut Txn>,
        skip: &mut HashSet<LeaseKey>,
    ) -> IaAnswer {
        let reserved = self.reserved_for(c, ia, skip);
        let mut out = IaAnswer::new(ia);
        let mut keep = Vec::new();
        for k in self.state.bound_keys(c.duid, ia.iaid, ia.kind) {
            // A reservation added since the lease was made wins: the client moves to it.
            let stays = match reserved {
                Some(r) => r == k,
                None => self.servable(c, ia, k),
            };
            if stays {
                keep.push(k);
            } else if let Some(lease) = self.state.leases.get(&k).cloned() {
                // Still there: revoking another key of the IA leaves this one alone.
                out.leases.extend(self.revoke(&lease, txn.as_deref_mut()));
            }
        }
        if keep.is_empty() {
            let limit = if reserved.is_none() { self.over_limit(c, skip) } else { None };
            let found = match limit {
                Some(_) => None,
                None => reserved.or_else(|| self.hinted(c, ia, skip)).or_else(|| self.dynamic(c, ia, skip)),
            };
            match found {
                Some(k) => keep.push(k),
                None => {
                    out.status = IaAnswer::unavailable(ia).status;
                    out.limit = limit;
                    return out;
                }
            }
        }
        for k in keep {
            let g = self.grant(c, ia, k, txn.as_deref_mut(), skip);
            out.leases.push(g);
        }
        out
    }

    /// Renew (RFC 9915 section 18.3.4) and Rebind (18.3.5). `None`: nothing to say about
    /// this IA (a Rebind for an unknown binding that names nothing).
    pub(crate) fn extend(
        &mut self,
        c: &Client<'_>,
        ia: &IaRequest,
        txn: &mut Txn,
        skip: &mut HashSet<LeaseKey>,
        rebind: bool,
    ) -> Option<IaAnswer> {
        let named: Vec<LeaseKey> =
            ia.hints.iter().filter(|h| h.is_specified()).filter_map(|h| hint_key(ia.kind, h)).collect();
        let mut limit = None;
        if self.state.bound_count(c.duid, ia.iaid, ia.kind) == 0 {
            // We lost the binding, or the client never had it here: bind it as a Request
            // would (the named address or prefix first, if free and on the link).
            if self.links[c.link].create_on_renew && c.can_bind {
                let mut out = self.assign(c, ia, Some(&mut *txn), skip);
                if out.has_valid() {
                    zero_the_rest(&mut out, &named);
                    return Some(out);
                }
                limit = out.limit;
            }
            let mut out = if rebind {
                self.rebind_unknown(c, ia, &named, txn, skip)?
            } else {
                IaAnswer::with_status(ia, status::NO_BINDING, "no binding for this IA")
            };
            out.limit = out.limit.or(limit);
            return Some(out);
        }
        let mut out = self.assign(c, ia, Some(txn), skip);
        zero_the_rest(&mut out, &named);
        Some(out)
    }

    /// A Rebind for a binding we do not have (lost state, another server's lease): extend
    /// what is still appropriate and free, zero the rest (RFC 9915 section 18.3.5).
    fn rebind_unknown(
        &mut self,
        c: &Client<'_>,
        ia: &IaRequest,
        named: &[LeaseKey],
        txn: &mut Txn,
        skip: &mut HashSet<LeaseKey>,
    ) -> Option<IaAnswer> {
        if named.is_empty() {
            return None;
        }
        let reserved = self.reserved_for(c, ia, skip);
        let mut out = IaAnswer::new(ia);
        let limit = if reserved.is_none() { self.over_limit(c, skip) } else { None };
        for &k in named {
            let usable = !out.has_valid()
                && limit.is_none()
                && match reserved {
                    Some(r) => r == k,
                    None => self.state.locate(&k).is_some_and(|(id, slot)| {
                        self.state.pools[id].link == c.link && self.state.is_free(id, slot) && !skip.contains(&k)
                    }),
                };
            if usable {
                let g = self.grant(c, ia, k, Some(txn), skip);
                out.leases.push(g);
            } else {
                out.leases.push(zero(k));
            }
        }
        out.limit = limit;
        Some(out)
    }

    /// Release (RFC 9915 section 18.3.7): drop what the IA names and holds. An IA is only
    /// mentioned in the Reply when we have no binding for it (NoBinding).
    pub(crate) fn release_ia(&mut self, c: &Client<'_>, ia: &IaRequest, txn: &mut Txn) -> Option<IaAnswer> {
        let bound = self.state.bound(c.duid, ia.iaid, ia.kind);
        if bound.is_empty() {
            return Some(IaAnswer::with_status(ia, status::NO_BINDING, "no binding for this IA"));
        }
        for h in ia.hints.iter().filter(|h| h.is_specified()) {
            if let Some(lease) = hint_key(ia.kind, h).and_then(|k| bound.iter().find(|l| l.key() == k)) {
                self.revoke(lease, Some(txn));
            }
        }
        None
    }

    /// Decline (RFC 9915 section 18.3.8): the client found the address in use; keep it out
    /// of allocation for `decline_hold`. Addresses only: IA_PD has no Decline. Past the
    /// client's or the link's cap of held declines the address is freed instead (counted
    /// in `txn.events`): a Request/Decline loop must not take a pool out of service for a
    /// day, and a real conflict past the cap is the operator's to find.
    pub(crate) fn decline_ia(&mut self, c: &Client<'_>, ia: &IaRequest, txn: &mut Txn) -> Option<IaAnswer> {
        if ia.kind != LeaseKind::Address {
            return None;
        }
        let bound = self.state.bound(c.duid, ia.iaid, ia.kind);
        if bound.is_empty() {
            return Some(IaAnswer::with_status(ia, status::NO_BINDING, "no binding for this IA"));
        }
        let link = &self.links[c.link];
        let (hold, limits, name) = (u64::from(link.decline_hold), link.limits, link.link.clone());
        let full = |cap: u32, held: u32| cap != 0 && held >= cap;
        for h in ia.hints.iter().filter(|h| h.is_specified()) {
            if let Some(lease) = bound.iter().find(|l| l.addr == h.addr) {
                let by_client = self.state.leases.held_by_duid(&name, c.duid).declined;
                let on_link = self.state.leases.declined_on(&name);
                if full(limits.declined_per_client, by_client) || full(limits.declined_per_link, on_link) {
                    self.state.apply(txn, LeaseOp::remove(lease.key()), None);
                    txn.events.push(Counter::LimitDeclined);
                    continue;
                }
                let declined = Lease {
                    state: LeaseState::Declined,
                    valid_until: c.now + hold,
                    preferred_until: c.now,
                    ..lease.clone()
                };
                self.state.apply(txn, LeaseOp::Upsert(declined), c.ident.clone());
            }
        }
        None
    }
}

/// What the relays said about the client, as the lease keeps it; `source` is the address the
/// Relay-Forward came from.
fn relay_record(sel: &LinkSelector<'_>, source: std::net::Ipv6Addr) -> RelayRecord {
    let owned = |b: Option<&[u8]>| b.map(<[u8]>::to_vec);
    RelayRecord {
        link_address: sel.link_address.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED),
        peer_address: sel.peer_address.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED),
        source,
        interface_id: owned(sel.interface_id),
        remote_id: owned(sel.remote_id),
        subscriber_id: owned(sel.subscriber_id),
        relay_id: owned(sel.relay_id),
        client_linklayer: owned(sel.client_linklayer),
    }
}

/// What the client named in an IA but does not get: returned with zero lifetimes, so that
/// it stops using it (RFC 9915 sections 18.3.4, 18.3.5).
fn zero_the_rest(out: &mut IaAnswer, named: &[LeaseKey]) {
    for k in named {
        if !out.leases.iter().any(|g| g.addr == k.addr && g.len == k.prefix_len) {
            out.leases.push(zero(*k));
        }
    }
}
