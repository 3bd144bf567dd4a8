//! What the daemon tells the engine about a message, and what the engine answers.

use crate::stats::Counter;
use std::net::Ipv6Addr;

use crate::leases::{LeaseKey, LeaseOp, LeaseState};
use crate::server::options::ConfiguredOption;
use crate::server::relay::LinkSelector;
use crate::stats::LeaseEvent;
use crate::wire::Duid;

/// Where a message came from and what to answer with. Borrowed: the daemon builds one per
/// message from what it already holds (the served interface, the relay chain), copying
/// nothing. The engine chooses the link from `arrival` and `relay` (`link.rs`).
#[derive(Debug, Clone, Copy)]
pub struct ClientContext<'a> {
    pub server_duid: &'a Duid,
    /// What the relays said about a relayed client: where it is (to choose its link) and
    /// options about it (to match reservations). Present for relayed messages.
    pub relay: Option<LinkSelector<'a>>,
    /// The client sent the message to one of our unicast addresses (never true for a
    /// relayed message: the relay-to-server hop is unicast by design).
    pub unicast: bool,
    /// Next hop for routes to prefixes delegated to this client: its source address when
    /// it is directly attached, the relay's peer-address when relayed.
    pub peer: Ipv6Addr,
    /// The interface the message arrived on: its link for a client on it, and where routes
    /// to its delegations go out.
    pub arrival: &'a str,
    /// The arrival interface's configured options, placed in replies as the Option Request asks
    /// (`ConfiguredOption::selected`), as for Information-Request.
    pub options: &'a [ConfiguredOption],
    /// The interface's `ignore_user_classes`: a client carrying one gets no answer. A
    /// relayed link with options of its own (`LinkPools::service`) replaces both.
    pub ignore_user_classes: &'a [Vec<u8>],
}

/// A change to the routing table that follows a delegated prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    /// Route `prefix/len` via `via` on `link`. Sent for every prefix in every committed
    /// Reply, so the daemon should "replace", not "add" (the client's address may change).
    Add { prefix: Ipv6Addr, len: u8, via: Ipv6Addr, link: String },
    /// The delegation ended (Release, expiry, or no longer valid for the link).
    Remove { prefix: Ipv6Addr, len: u8, link: String },
}

/// What to undo if the commit of `Outcome::ops` fails; see `Engine::rollback`.
#[derive(Debug, Default)]
#[must_use = "keep the Undo until the commit resolves; pass it to Engine::rollback if it fails"]
pub struct Undo(pub(crate) Vec<UndoEntry>);

impl Undo {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the decision did to the lease population, one event per lease it changed (for
    /// the metrics, once its commit is durable).
    pub fn lease_events(&self) -> impl Iterator<Item = LeaseEvent> + '_ {
        self.0.iter().filter_map(|e| match (&e.before, &e.after) {
            (_, Some(a)) if a.state == LeaseState::Declined => Some(LeaseEvent::Declined),
            (None, Some(_)) => Some(LeaseEvent::Granted),
            (Some(_), Some(_)) => Some(LeaseEvent::Renewed),
            (Some(_), None) => Some(LeaseEvent::Released),
            (None, None) => None,
        })
    }
}

/// One lease-level change as the engine applied it.
#[derive(Debug, Clone)]
pub(crate) struct UndoEntry {
    pub key: LeaseKey,
    pub before: Option<crate::leases::Lease>,
    /// The identity `before` was given to (`index::Ident`).
    pub before_ident: Option<Vec<u8>>,
    pub after: Option<crate::leases::Lease>,
}

/// The engine's decision for one message.
///
/// Contract: wrap `reply` for the relays first (on failure: roll back, commit nothing).
/// Then, if `ops` is not empty, commit them (`LeaseStore::commit`) and wait for the
/// ticket; only on `Ok` send `reply` and apply `routes`. On error, do neither and pass
/// `undo` to `Engine::rollback`. With empty `ops` (Advertise, Confirm, errors) send at once.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The encoded Advertise or Reply, to send to the client (wrapped in Relay-Reply by the
    /// daemon for relayed messages).
    pub reply: Option<Vec<u8>>,
    pub ops: Vec<LeaseOp>,
    pub routes: Vec<RouteChange>,
    /// The counter to bump when there is no reply.
    pub discard: Option<Counter>,
    /// Counters to bump whatever happens to the reply: a limit that refused an IA
    /// (`Counter::LimitLeasesPerClient`, ...), once per IA.
    pub events: Vec<Counter>,
    pub undo: Undo,
}

impl Outcome {
    pub(crate) fn dropped(counter: Counter) -> Self {
        Self { discard: Some(counter), ..Self::default() }
    }
}

/// Leases reclaimed by `Engine::expire`.
#[derive(Debug, Default)]
pub struct Expired {
    /// `LeaseOp::Remove` for each; committing them is optional (the store's own
    /// `reclaim_expired(now)` removes the same rows).
    pub ops: Vec<LeaseOp>,
    pub routes: Vec<RouteChange>,
    pub leases: Vec<crate::leases::Lease>,
}

/// The client a message is from, as far as decisions go.
pub(crate) struct Client<'a> {
    pub duid: &'a [u8],
    /// Index into the engine's links.
    pub link: usize,
    pub relay: Option<&'a LinkSelector<'a>>,
    pub peer: Ipv6Addr,
    pub arrival: &'a str,
    pub now: u64,
    /// Who the client is beyond its DUID (`identity.rs`), for the per-MAC limit.
    pub ident: Option<super::index::Ident>,
    /// Whether a new binding could be stored now: false while the store is down, when a
    /// Renew or Rebind for an unknown IA gets what it would get without `create_on_renew`.
    pub can_bind: bool,
}
