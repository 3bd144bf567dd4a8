//! Pre-extension: what lets a Renew be answered in XDP (issue 15, docs/fast-path.md).
//!
//! The XDP program may answer a Renew only while the store already holds the lease past
//! every lifetime its Reply tells. The daemon therefore writes, in batches and ahead of the
//! Renews, a longer stored expiry for the leases whose Renews the kernel is to answer, and
//! only once that write is durable gives the program their entries. This module is the
//! engine's half: which leases qualify, and the stored lease that covers their answers.
//!
//! A lease qualifies when a Renew of its client would keep it exactly as it is: bound, of a
//! client on the link (not relayed: XDP answers direct Renews only), on a link whose Replies
//! carry the arrival interface's options (no `[[link]]` options of its own), the only lease
//! of its IA, and still the client's by the reservations. XDP answers its Renews until
//! `answer_until = last_transaction + window`: a window counted from the last transaction a
//! Renew, Request or Rebind made in userspace, so a client that went away still loses its
//! lease at most `window + valid` after it was last seen (kernel answers leave no trace in
//! the store), and one Renew per window goes up and moves the window on. The stored expiry
//! becomes at least `answer_until + valid + margin`: a Reply sent at any instant up to
//! `answer_until` tells a valid lifetime that ends before it.

use crate::leases::{Lease, LeaseKey, LeaseOp, LeaseState};

use super::config::Lifetimes;
use super::context::Undo;
use super::engine::Engine;
use super::state::Txn;

/// What a pre-extension batch is asked to do.
pub struct PreExtendPolicy<'a> {
    /// Seconds after a lease's last client transaction during which XDP may answer.
    pub window: u32,
    /// Seconds the stored expiry exceeds the latest valid lifetime an XDP Reply can tell;
    /// also the least time left in the window for an entry to be worth writing.
    pub margin: u32,
    /// Whether the fast path answers Renews on this link (by name).
    pub fast_link: &'a dyn Fn(&str) -> bool,
}

/// A lease whose Renews XDP may answer once the batch that wrote it is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewable {
    /// As stored by the batch (at least `answer_until + lifetimes.valid + margin`).
    pub lease: Lease,
    /// The link's lifetimes: what the Reply tells, as the engine's Renew Reply would.
    pub lifetimes: Lifetimes,
    /// Unix seconds: the last instant XDP may answer.
    pub answer_until: u64,
    /// Whether the batch moved the stored expiry (false: it rewrote what was stored).
    pub extended: bool,
}

/// One batch: the upserts to commit in one transaction, their undo for a failed commit, and
/// the entries to put once the commit is durable.
#[derive(Debug, Default)]
pub struct PreExtension {
    pub ops: Vec<LeaseOp>,
    pub undo: Undo,
    pub renewable: Vec<Renewable>,
}

impl Engine {
    /// The lease for `key`, its link's lifetimes and its window's end, if XDP may answer
    /// its Renews (see the module docs).
    fn qualifies(&self, key: &LeaseKey, policy: &PreExtendPolicy<'_>, now: u64) -> Option<(Lifetimes, u64)> {
        let state = &self.alloc.state;
        let lease = state.leases.get(key)?;
        if lease.state != LeaseState::Bound || lease.relay.is_some() || lease.last_transaction == 0 {
            return None;
        }
        if !(policy.fast_link)(&lease.iface) {
            return None;
        }
        let link = self.link_index_by_name(&lease.iface)?;
        let pools = &self.alloc.links[link];
        if pools.service.is_some() || state.bound_count(&lease.duid, lease.iaid, lease.kind) != 1 {
            return None;
        }
        if !self.alloc.keeps(lease, link) {
            return None;
        }
        let answer_until = lease.last_transaction.checked_add(u64::from(policy.window))?;
        (answer_until > now.saturating_add(u64::from(policy.margin))).then_some((pools.lifetimes, answer_until))
    }

    /// Extends the stored expiry of every lease of `keys` that qualifies (others are
    /// skipped), in memory at once, as a message's decision is: commit `ops` in one
    /// transaction, then put the entries of `renewable` whose lease the engine still holds
    /// unchanged (`holds`); on failure, `rollback(undo)`. A lease already stored long enough
    /// is written again as it is: a batch puts entries only for what its own commit made
    /// durable, whatever memory held before.
    pub fn pre_extend(&mut self, keys: &[LeaseKey], policy: &PreExtendPolicy<'_>, now: u64) -> PreExtension {
        let mut txn = Txn::default();
        let mut renewable = Vec::new();
        for key in keys {
            let Some((lifetimes, answer_until)) = self.qualifies(key, policy, now) else { continue };
            let state = &mut self.alloc.state;
            let Some(mut lease) = state.leases.get(key).cloned() else { continue };
            let (old_valid, old_preferred) = (lease.valid_until, lease.preferred_until);
            let margin = u64::from(policy.margin);
            let need = answer_until + u64::from(lifetimes.valid) + margin;
            lease.valid_until = old_valid.max(need);
            let preferred = answer_until + u64::from(lifetimes.preferred) + margin;
            lease.preferred_until = old_preferred.max(preferred).min(lease.valid_until);
            let ident = state.leases.ident_of(key).cloned();
            state.apply(&mut txn, LeaseOp::Upsert(lease.clone()), ident);
            let extended = lease.valid_until != old_valid;
            renewable.push(Renewable { lease, lifetimes, answer_until, extended });
        }
        PreExtension { ops: txn.ops, undo: Undo(txn.undo), renewable }
    }

    /// Whether the engine holds exactly `lease` (nothing changed it since it was decided).
    pub fn holds(&self, lease: &Lease) -> bool {
        self.alloc.state.leases.get(&lease.key()) == Some(lease)
    }

    /// Bound leases of clients on the link (not relayed): what a start or a reload offers
    /// to the pre-extension, every one of them once.
    pub fn direct_bound_keys(&self) -> Vec<LeaseKey> {
        self.leases().filter(|l| l.state == LeaseState::Bound && l.relay.is_none()).map(Lease::key).collect()
    }
}
