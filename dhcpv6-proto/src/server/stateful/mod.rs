//! Stateful service (IA_NA addresses, IA_PD prefixes) per RFC 9915: the decision engine.
//!
//! `Engine::handle` takes one parsed client message (Solicit, Request, Renew, Rebind,
//! Release, Decline, Confirm) with its `ClientContext` and returns an `Outcome`: the
//! encoded Advertise or Reply, the lease changes to make durable, the route changes for
//! delegated prefixes, or the counter to bump when the message is dropped. It is pure and
//! synchronous: no sockets, no store, no clock (the daemon passes `now`, unix seconds).
//!
//! # Commit contract
//!
//! The engine applies its own decisions to its memory at once, so that the next message,
//! handled while this one's commit is still in flight, cannot be given the same address.
//! The daemon then:
//!
//! 1. wraps `reply` for the relays, if the message was relayed; if that fails, commits
//!    nothing, sends nothing and calls `engine.rollback(outcome.undo)`;
//! 2. if `outcome.ops` is empty: sends `reply` (Advertise, Confirm, NoBinding-only
//!    replies, errors);
//! 3. else commits `ops` (`LeaseStore::commit`), and only once the ticket resolves `Ok`
//!    sends `reply` and applies `routes` (a client is never told of a lease the disk does
//!    not have);
//! 4. if the commit fails: sends nothing, applies no route, and calls
//!    `engine.rollback(outcome.undo)`. The client retransmits and gets a fresh decision.
//!
//! The daemon does all of this in one place, `StatefulService::serve`. While the lease store
//! cannot write, it calls `Engine::handle_store_down` instead of `handle`: the same checks,
//! no grants (NoAddrsAvail / NoPrefixAvail), and never any ops, so there is nothing to commit.
//!
//! Rollback reverts only keys that still hold what this outcome wrote; a key a later
//! message changed again keeps the later value, whose own commit decides. Lease keys are
//! addresses and prefixes, and the store upserts by key, so engine and store agree again at
//! the latest at the next write of that key, whatever order commits fail in.
//!
//! Call `engine.expire(now)` every few seconds: it frees leases whose valid lifetime ended
//! and returns the matching `Remove` ops and route removals.
//!
//! # Choices where RFC 9915 leaves room
//!
//! * Offers are not recorded. The address offered in an Advertise is derived from a hash of
//!   DUID, IAID and kind, so the Request that follows normally gets the same one without
//!   any state, and a flood of Solicits cannot exhaust a pool.
//! * One address per IA_NA and one prefix per IA_PD. A client wanting more sends more IAs.
//! * NoAddrsAvail/NoPrefixAvail go inside each IA that gets nothing; an Advertise in which
//!   no IA gets anything also carries NoAddrsAvail at the top level for RFC 3315 clients.
//! * Unicast: RFC 9915 removed the Server Unicast option and the UseMulticast status; a
//!   server that never sent Server Unicast discards what a client unicasts (section 16).
//!   With `LinkPools::reject_unicast` (what the configuration always sets) the engine does
//!   so; without it, unicast messages are served like multicast ones.
//! * Renew or Rebind for an IA we have no binding for (we lost it, or the client's lease
//!   file is from another IA type): with `LinkPools::create_on_renew` (the default) the IA
//!   is bound like a Request would bind it, the address or prefix it names first if that is
//!   free and belongs to the link; what it names and does not get is returned with zero
//!   lifetimes (sections 18.3.4, 18.3.5). When nothing can be bound, or with
//!   `create_on_renew` off: NoBinding for Renew; for Rebind, named addresses that are free
//!   and appropriate are bound, others zeroed, an IA naming nothing is skipped, and a Rebind
//!   with nothing to say is dropped.
//! * Per-client limits (`ClientLimits`): a new lease past what the client's DUID or its
//!   identity (`identity.rs`) may hold on the link gets NoAddrsAvail/NoPrefixAvail in its IA
//!   and a `Limit*` counter in `Outcome::events`; leases held are always renewed. A Decline
//!   past the client's or the link's cap of held declines frees the address instead of
//!   holding it (a Request/Decline loop cannot empty a pool).
//! * A reservation made while a client holds a dynamic lease moves the client at its next
//!   Request/Renew: the old lease is returned with zero lifetimes.
//! * Request with an IA_NA naming an address that is not on the link: NotOnLink in that IA
//!   (the client moved; it must start over with a Solicit).
//!
//! Modules: `link` (which link a client is on), `pools` (ranges and prefix pools, parsing), `config` (per-link configuration,
//! validation, `link_for_relay`), `occupancy` (hierarchical bitmap of taken slots),
//! `state` (leases + bitmaps + expiry, undo), `reservations` (lookup), `index` (leases by
//! binding and by client IA, with the per-client counts), `identity` (who a client is beyond its DUID), `ia` (IA option codec), `allocator` (per-IA decisions over
//! pools, reservations and state), `engine` (messages), `events` (lease events for the log
//! and the lease script, from what a message, a sweep or an operator changed), `pre_extend`
//! (the stored expiry written ahead of Renews that XDP answers).

mod allocator;
mod config;
mod context;
mod engine;
mod events;
pub mod fast_renew;
mod ia;
mod identity;
mod index;
mod link;
mod occupancy;
mod pools;
mod pre_extend;
mod reservations;
mod state;

#[cfg(test)]
mod tests;

pub use config::{
    check_links, link_for_relay, ClientLimits, ConfigError, Item, LifetimeField, LifetimeProblem, Lifetimes, LinkPools,
    Location, Refusal, Reservation, ReservationPart,
};
pub use context::{ClientContext, Expired, Outcome, RouteChange, Undo};
pub use engine::{Engine, PoolUsage};
pub use events::{EventKind, LeaseEvent, Origin, RelayIds, Requester};
pub use link::{unconfigured, UNCONFIGURED_LINK};
pub use pools::{AddrRange, PoolError, PrefixPool};
pub use pre_extend::{PreExtendPolicy, PreExtension, Renewable};
