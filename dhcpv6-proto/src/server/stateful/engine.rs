//! The stateful decision engine: one message in, one `Outcome` out. Synchronous and free of
//! I/O; the daemon owns sockets, the lease store and the routing table.

use crate::stats::Counter;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv6Addr;

use dhcpv6_common::wire::{msg, opt, status};

use crate::leases::{ForeignChange, Lease, LeaseKey, LeaseKind, LeaseOp, LeaseState};
use crate::wire::{Message, WireError, Writer};

use super::allocator::Allocator;
use super::config::{self, ConfigError, LinkPools};
use super::context::{Client, ClientContext, Expired, Outcome, RouteChange, Undo};
use super::ia::{self, IaAnswer, IaRequest};
use super::link;
use super::state::Txn;
use crate::server::relay::LinkSelector;
use crate::server::user_class;

/// How full one pool is, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    pub link: String,
    /// `START-END` or `PREFIX/LEN:DELEGATED_LEN`.
    pub pool: String,
    pub used: u64,
    pub size: u128,
}

/// Stateful DHCPv6 (IA_NA, IA_PD) for a set of links. See the module docs for the
/// commit/rollback contract.
#[derive(Debug)]
pub struct Engine {
    pub(super) alloc: Allocator,
    by_name: HashMap<String, usize>,
    /// Link prefixes merged into disjoint spans: first address -> (last address, link).
    relay_index: BTreeMap<u128, (u128, usize)>,
}

/// Whether the lease store can record what is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Up,
    Down,
}

/// One client message as the handlers of its type read it (`Engine::decide` builds it once).
#[derive(Clone, Copy)]
struct Ask<'a> {
    req: &'a Message<'a>,
    c: &'a Client<'a>,
    ctx: &'a ClientContext<'a>,
    ias: &'a [IaRequest],
    /// The Option Request's codes.
    requested: &'a [u16],
}

/// Where the Server Identifier must (not) be, RFC 9915 section 16.
#[derive(PartialEq)]
enum ServerIdRule {
    Forbidden,
    Required,
}

impl Engine {
    /// Builds the engine from configuration and the leases the store holds. Expired leases
    /// are left out (the daemon should also run `LeaseStore::reclaim_expired(now)`), as are
    /// leases that fail validation. Reserved addresses and prefixes inside pools are taken out
    /// of dynamic allocation.
    pub fn new(links: Vec<LinkPools>, leases: impl IntoIterator<Item = Lease>, now: u64) -> Result<Self, ConfigError> {
        config::validate(&links)?;
        let relay_index = relay_index(&links);
        let by_name = links.iter().enumerate().map(|(i, l)| (l.link.clone(), i)).collect();
        let mut alloc = Allocator::new(links);
        for lease in leases {
            if lease.is_expired(now) {
                continue;
            }
            if let Err(e) = lease.validate() {
                tracing::warn!("ignoring stored lease: {e}");
                continue;
            }
            alloc.state.load(lease);
        }
        Ok(Self { alloc, by_name, relay_index })
    }

    /// New configuration (SIGHUP) over every lease held, committed or not, and what the engine
    /// knows of their clients (their identities, which the store does not keep). On error
    /// nothing changes.
    pub fn reconfigure(&mut self, links: Vec<LinkPools>, now: u64) -> Result<(), ConfigError> {
        let mut next = Engine::new(links, self.leases().cloned(), now)?;
        for (key, ident) in self.alloc.state.leases.idents() {
            next.alloc.state.leases.adopt_ident(key, ident.clone());
        }
        *self = next;
        Ok(())
    }

    pub fn link(&self, name: &str) -> Option<&LinkPools> {
        self.by_name.get(name).map(|i| &self.alloc.links[*i])
    }

    pub fn links(&self) -> &[LinkPools] {
        &self.alloc.links
    }

    /// The link a relayed client is on, from the relay's link-address.
    /// Same answer as `stateful::link_for_relay`, in O(log links).
    pub fn link_for_relay(&self, link_address: Ipv6Addr) -> Option<&LinkPools> {
        self.relay_link(link_address).map(|i| &self.alloc.links[i])
    }

    fn relay_link(&self, link_address: Ipv6Addr) -> Option<usize> {
        if link_address.is_unspecified() {
            return None;
        }
        let a = u128::from(link_address);
        let (_, &(end, link)) = self.relay_index.range(..=a).next_back()?;
        (a <= end).then_some(link)
    }

    /// The own options of the link a client is on, when that link has some (a relayed
    /// `[[link]]` with option keys): what a relayed Information-Request is answered with.
    pub fn link_service(
        &self,
        arrival: &str,
        relay: Option<&LinkSelector<'_>>,
    ) -> Option<std::sync::Arc<crate::server::LinkService>> {
        self.link_index(arrival, relay).and_then(|i| self.alloc.links[i].service.clone())
    }

    /// Every link by name, with its own options when it has some: what a relayed
    /// Information-Request's Interface-ID may select (`link_service`).
    pub fn link_services(&self) -> Vec<(String, Option<std::sync::Arc<crate::server::LinkService>>)> {
        self.alloc.links.iter().map(|l| (l.link.clone(), l.service.clone())).collect()
    }

    /// The link called `name`, by index.
    pub(super) fn link_index_by_name(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The link a client is on (see `link.rs`).
    fn link_index(&self, arrival: &str, relay: Option<&LinkSelector<'_>>) -> Option<usize> {
        link::choose(arrival, relay, |n| self.by_name.get(n).copied(), |a| self.relay_link(a))
    }

    /// Every lease held, bound or declined (for reloads: `Engine::new(new_config,
    /// old.leases().cloned(), now)`).
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.alloc.state.leases.iter()
    }

    pub fn lease_count(&self) -> usize {
        self.alloc.state.leases.len()
    }

    /// Bound prefixes, for the daemon to check its routes against after a restart.
    pub fn delegations(&self) -> impl Iterator<Item = &Lease> {
        self.leases().filter(|l| l.kind == LeaseKind::Prefix && l.state == LeaseState::Bound)
    }

    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        self.alloc
            .state
            .pools
            .iter()
            .map(|p| PoolUsage {
                link: self.alloc.links[p.link].link.clone(),
                pool: p.geo.describe(),
                used: p.occ.used(),
                size: u128::from(p.geo.last_slot()) + 1,
            })
            .collect()
    }

    /// Undoes the in-memory effect of an `Outcome` whose ops failed to commit.
    pub fn rollback(&mut self, undo: Undo) {
        self.alloc.state.rollback(undo);
    }

    /// Ends the binding of `key` on an operator's word, as if its client had released it:
    /// memory forgets it at once, and the `Outcome` carries the `Remove` to commit, the
    /// route to take away for a prefix and the undo for a failed commit (no reply: the
    /// client is not told, and learns at its next Renew). `None` when nothing holds `key`.
    pub fn release_lease(&mut self, key: &LeaseKey) -> Option<(Lease, Outcome)> {
        let lease = self.alloc.state.leases.get(key)?.clone();
        let mut txn = Txn::default();
        if lease.state == LeaseState::Declined {
            // A declined address has no route and no client to revoke it from.
            self.alloc.state.apply(&mut txn, LeaseOp::remove(*key), None);
        } else {
            let _ = self.alloc.revoke(&lease, Some(&mut txn));
        }
        let outcome = Outcome { ops: txn.ops, routes: txn.routes, undo: Undo(txn.undo), ..Outcome::default() };
        Some((lease, outcome))
    }

    /// Takes in what another server sharing the lease store did (`LeaseStore::subscribe`,
    /// or the holder of a lost claim): its bindings are then neither offered to anyone
    /// else nor unknown to a Renew or Rebind of their client (failover). Nothing is
    /// recorded: the change is already in the store.
    pub fn learn(&mut self, change: ForeignChange, now: u64) {
        match change {
            ForeignChange::Upsert(lease) => {
                if !lease.is_expired(now) && lease.validate().is_ok() {
                    self.alloc.state.load(lease);
                }
            }
            ForeignChange::Remove { key, valid_until } => self.alloc.state.forget(&key, valid_until),
        }
    }

    /// Drops leases whose valid lifetime ended (bound ones and declined ones whose hold is
    /// over), freeing their addresses and prefixes. Call every few seconds.
    pub fn expire(&mut self, now: u64) -> Expired {
        let leases = self.alloc.state.pop_expired(now);
        let ops = leases.iter().map(|l| LeaseOp::remove(l.key())).collect();
        let routes = leases
            .iter()
            .filter(|l| l.kind == LeaseKind::Prefix && l.state == LeaseState::Bound)
            .map(|l| RouteChange::Remove { prefix: l.addr, len: l.prefix_len, link: l.iface.clone() })
            .collect();
        Expired { ops, routes, leases }
    }

    /// Decides the answer to one client message (not Information-Request, which the
    /// stateless path answers; not relay messages, which the daemon unwraps first).
    pub fn handle(&mut self, req: &Message<'_>, ctx: &ClientContext, now: u64) -> Outcome {
        self.decide(req, ctx, now, Store::Up)
    }

    /// As `handle`, for while the lease store cannot write: nothing that needs a write is
    /// decided. Solicit and Request get NoAddrsAvail / NoPrefixAvail in every IA (and at the
    /// top of the Advertise), which is true: nothing can be granted now. A Renew, Rebind,
    /// Release or Decline that would change a lease is dropped (`DropStoreDown`) and leaves
    /// the engine as it was: the client keeps its stored lease until its stored valid
    /// lifetime and retransmits; one that changes nothing (NoBinding) is answered.
    /// `outcome.ops` is always empty.
    pub fn handle_store_down(&mut self, req: &Message<'_>, ctx: &ClientContext, now: u64) -> Outcome {
        let out = self.decide(req, ctx, now, Store::Down);
        if out.ops.is_empty() {
            return out;
        }
        self.rollback(out.undo);
        Outcome::dropped(Counter::DropStoreDown)
    }

    fn decide(&mut self, req: &Message<'_>, ctx: &ClientContext, now: u64, store: Store) -> Outcome {
        let Some(link) = self.link_index(ctx.arrival, ctx.relay.as_ref()) else {
            return Outcome::dropped(Counter::DropUnknownLink);
        };
        // A relayed link with options of its own answers with those, not the arrival
        // interface's (and filters by its own User Classes).
        let own = self.alloc.links[link].service.clone();
        let (options, ignore_user_classes) = match own.as_deref() {
            Some(s) => (&s.options[..], &s.ignore_user_classes[..]),
            None => (ctx.options, ctx.ignore_user_classes),
        };
        if user_class::ignored(req, ignore_user_classes) {
            return Outcome::dropped(Counter::DropUserClass);
        }
        let ctx = &ClientContext { options, ignore_user_classes, ..*ctx };
        let t = req.msg_type();
        let rule = match t {
            msg::SOLICIT | msg::REBIND | msg::CONFIRM => ServerIdRule::Forbidden,
            msg::REQUEST | msg::RENEW | msg::RELEASE | msg::DECLINE => ServerIdRule::Required,
            _ => return Outcome::dropped(Counter::DropUnsupported),
        };
        let (Ok(cid), Ok(sid), Ok(requested), Ok(ias)) =
            (req.client_id(), req.server_id(), req.requested_options(), ia::parse(req))
        else {
            return Outcome::dropped(Counter::DropMalformed);
        };
        // RFC 9915 section 16: every one of these carries the client's DUID; the ones sent
        // to one server name it, the others must not.
        let Some(cid) = cid else {
            return Outcome::dropped(Counter::DropNoClientId);
        };
        match (rule, sid) {
            (ServerIdRule::Forbidden, Some(_)) => return Outcome::dropped(Counter::DropUnexpectedServerId),
            (ServerIdRule::Required, None) => return Outcome::dropped(Counter::DropMissingServerId),
            (ServerIdRule::Required, Some(s)) if s != ctx.server_duid.as_bytes() => {
                return Outcome::dropped(Counter::DropForeignServerId)
            }
            _ => {}
        }
        // RFC 9915 section 16: we never send Server Unicast, so what a client unicasts is
        // discarded (no UseMulticast, which RFC 9915 removed). The daemon drops it before
        // (`trust::admit_client_destination`); this keeps the engine right on its own.
        if ctx.unicast && self.alloc.links[link].reject_unicast {
            return Outcome::dropped(Counter::DropUnicast);
        }
        let ident = super::identity::of(ctx.relay.as_ref(), ctx.peer);
        let c = Client {
            duid: cid,
            link,
            relay: ctx.relay.as_ref(),
            peer: ctx.peer,
            arrival: ctx.arrival,
            now,
            ident,
            can_bind: store == Store::Up,
        };
        let mut txn = Txn::default();
        let a = Ask { req, c: &c, ctx, ias: &ias, requested: &requested };
        let reply = match t {
            msg::SOLICIT => self.solicit(&a, &mut txn, store),
            msg::REQUEST => self.request(&a, &mut txn, store).map(Some),
            msg::RENEW | msg::REBIND => self.renew(&a, &mut txn, t == msg::REBIND),
            msg::RELEASE | msg::DECLINE => self.release(&a, &mut txn, t == msg::DECLINE).map(Some),
            _ => self.confirm(&a),
        };
        // Too long to send: as if never decided, so memory keeps what the disk has.
        let Ok(reply) = reply else {
            self.rollback(Undo(txn.undo));
            return Outcome::dropped(Counter::DropReplyTooLong);
        };
        let discard = match (&reply, t) {
            (Some(_), _) => None,
            (None, msg::REBIND) => Some(Counter::DropRebindNothingToSay),
            (None, _) => Some(Counter::DropConfirmUndecidable),
        };
        Outcome { reply, ops: txn.ops, routes: txn.routes, discard, events: txn.events, undo: Undo(txn.undo) }
    }

    /// RFC 9915 sections 18.3.1 and 18.3.9. With the store down, an Advertise that offers
    /// nothing (section 18.3.9: the server will not assign anything to a Request now), and
    /// never a Rapid Commit Reply.
    fn solicit(&mut self, a: &Ask<'_>, txn: &mut Txn, store: Store) -> Result<Option<Vec<u8>>, WireError> {
        let Ask { req, c, ctx, ias, requested } = *a;
        let rapid =
            store == Store::Up && self.alloc.links[c.link].rapid_commit && req.find(opt::RAPID_COMMIT).is_some();
        let mut skip = HashSet::new();
        let answers: Vec<IaAnswer> = ias
            .iter()
            .map(|ia| match store {
                Store::Down => IaAnswer::unavailable(ia),
                Store::Up => self.alloc.assign(c, ia, if rapid { Some(&mut *txn) } else { None }, &mut skip),
            })
            .collect();
        note_limits(txn, &answers);
        let mut w = head(if rapid { msg::REPLY } else { msg::ADVERTISE }, req, c.duid, ctx);
        if rapid {
            w.option(opt::RAPID_COMMIT, &[]);
        }
        self.write_ias(&mut w, c, &answers);
        // NoAddrsAvail is placed in each IA that gets nothing. When no IA gets anything,
        // it is repeated at the top level of the Advertise: RFC 3315 clients look for it
        // there, RFC 9915 clients ignore such an Advertise either way (section 18.2.9). It
        // is not added when only some IAs fail: an RFC 3315 client would drop the whole
        // Advertise, including the IAs it could have had.
        if !rapid && !answers.is_empty() && answers.iter().all(|a| !a.has_valid()) {
            // RFC 3633 clients (prefixes only) look for NoPrefixAvail.
            if answers.iter().all(|a| a.kind == LeaseKind::Prefix) {
                w.status(status::NO_PREFIX_AVAIL, "no prefixes available");
            } else {
                w.status(status::NO_ADDRS_AVAIL, "no addresses available");
            }
        }
        write_options(&mut w, ctx, requested);
        w.finish().map(Some)
    }

    /// RFC 9915 section 18.3.2. With the store down every IA gets NoAddrsAvail or
    /// NoPrefixAvail, also one the client already holds: a binding that cannot be recorded
    /// anew is not confirmed.
    fn request(&mut self, a: &Ask<'_>, txn: &mut Txn, store: Store) -> Result<Vec<u8>, WireError> {
        let Ask { c, ias, .. } = *a;
        let mut skip = HashSet::new();
        let link = &self.alloc.links[c.link];
        let off_link = |ia: &IaRequest| {
            ia.kind == LeaseKind::Address && ia.hints.iter().any(|h| h.is_specified() && !link.is_on_link(h.addr))
        };
        let flags: Vec<bool> = ias.iter().map(off_link).collect();
        let answers: Vec<IaAnswer> = ias
            .iter()
            .zip(flags)
            .map(|(ia, off)| {
                // An address from another link: the client moved and must start over with
                // a Solicit rather than get something it did not ask for.
                if off {
                    IaAnswer::with_status(ia, status::NOT_ON_LINK, "address not on this link")
                } else if store == Store::Down {
                    IaAnswer::unavailable(ia)
                } else {
                    self.alloc.assign(c, ia, Some(&mut *txn), &mut skip)
                }
            })
            .collect();
        note_limits(txn, &answers);
        self.ia_reply(a, &answers)
    }

    /// RFC 9915 sections 18.3.4 and 18.3.5.
    fn renew(&mut self, a: &Ask<'_>, txn: &mut Txn, rebind: bool) -> Result<Option<Vec<u8>>, WireError> {
        let mut skip = HashSet::new();
        let answers: Vec<IaAnswer> =
            a.ias.iter().filter_map(|ia| self.alloc.extend(a.c, ia, txn, &mut skip, rebind)).collect();
        note_limits(txn, &answers);
        if rebind && answers.is_empty() {
            return Ok(None);
        }
        self.ia_reply(a, &answers).map(Some)
    }

    /// RFC 9915 sections 18.3.7 and 18.3.8: Success at the top, NoBinding in the IAs we
    /// know nothing of.
    fn release(&mut self, a: &Ask<'_>, txn: &mut Txn, decline: bool) -> Result<Vec<u8>, WireError> {
        let Ask { req, c, ctx, ias, .. } = *a;
        let answers: Vec<IaAnswer> = ias
            .iter()
            .filter_map(
                |ia| if decline { self.alloc.decline_ia(c, ia, txn) } else { self.alloc.release_ia(c, ia, txn) },
            )
            .collect();
        let mut w = head(msg::REPLY, req, c.duid, ctx);
        w.status(status::SUCCESS, if decline { "declined" } else { "released" });
        self.write_ias(&mut w, c, &answers);
        w.finish()
    }

    /// RFC 9915 section 18.3.3: Success if every address is on the link, NotOnLink if one
    /// is not; no reply when there is no address to judge or nothing to judge it by.
    fn confirm(&self, a: &Ask<'_>) -> Result<Option<Vec<u8>>, WireError> {
        let Ask { req, c, ctx, ias, .. } = *a;
        let link = &self.alloc.links[c.link];
        let addrs: Vec<Ipv6Addr> = ias
            .iter()
            .filter(|ia| ia.kind == LeaseKind::Address)
            .flat_map(|ia| ia.hints.iter().filter(|h| h.is_specified()).map(|h| h.addr))
            .collect();
        if addrs.is_empty() || link.na.is_empty() {
            return Ok(None);
        }
        let mut w = head(msg::REPLY, req, c.duid, ctx);
        if addrs.iter().all(|a| link.is_on_link(*a)) {
            w.status(status::SUCCESS, "addresses are on link");
        } else {
            w.status(status::NOT_ON_LINK, "address not on this link");
        }
        w.finish().map(Some)
    }

    /// The Reply of a Request, Renew or Rebind: the answers, then the options asked for.
    fn ia_reply(&self, a: &Ask<'_>, answers: &[IaAnswer]) -> Result<Vec<u8>, WireError> {
        let mut w = head(msg::REPLY, a.req, a.c.duid, a.ctx);
        self.write_ias(&mut w, a.c, answers);
        write_options(&mut w, a.ctx, a.requested);
        w.finish()
    }

    fn write_ias(&self, w: &mut Writer, c: &Client<'_>, answers: &[IaAnswer]) {
        let lt = self.alloc.links[c.link].lifetimes;
        for a in answers {
            ia::write(w, a, lt.t1, lt.t2);
        }
    }
}

/// The limits that refused IAs, for `Outcome::events`.
fn note_limits(txn: &mut Txn, answers: &[IaAnswer]) {
    txn.events.extend(answers.iter().filter_map(|a| a.limit));
}

/// Link prefixes as disjoint spans. Prefixes of different links never overlap (validated);
/// nested or repeated prefixes of one link are merged, so the span starting at or below an
/// address is the only one that can hold it.
fn relay_index(links: &[LinkPools]) -> BTreeMap<u128, (u128, usize)> {
    let mut spans: Vec<(u128, u128, usize)> = links
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            l.link_prefixes().map(move |(p, len)| {
                let start = u128::from(p);
                (start, start | !super::pools::mask(len), i)
            })
        })
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u128, u128, usize)> = Vec::with_capacity(spans.len());
    for (start, end, link) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end, link)),
        }
    }
    merged.into_iter().map(|(s, e, l)| (s, (e, l))).collect()
}

/// Message header, Client Identifier echoed, our Server Identifier (RFC 9915 section 18.3).
fn head(msg_type: u8, req: &Message<'_>, cid: &[u8], ctx: &ClientContext) -> Writer {
    let mut w = Writer::message(msg_type, req.xid());
    w.option(opt::CLIENTID, cid);
    w.option(opt::SERVERID, ctx.server_duid.as_bytes());
    w
}

/// The link's configured options, as the Option Request asks (same rule as stateless).
fn write_options(w: &mut Writer, ctx: &ClientContext, requested: &[u16]) {
    for o in ctx.options.iter().filter(|o| o.in_stateful_reply() && o.selected(requested)) {
        w.raw(&o.encoded);
    }
}
