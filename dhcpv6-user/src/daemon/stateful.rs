//! Stateful service in the daemon: one owner for a client message's whole way from the
//! engine's decision to the wire.
//!
//! `StatefulService::serve_on` does, in this order and nowhere else: decide (the engine,
//! pure), wrap the reply for the relays, commit the lease changes, and once they are
//! durable send the reply and apply the routes to delegated prefixes. What cannot go on
//! is undone in the same place: a reply that cannot be wrapped commits nothing and rolls
//! the engine back; a failed commit sends nothing, rolls back and counts
//! `drop_commit_failed` (the client retransmits and gets a fresh decision). A commit that lost
//! its claim to another server sharing the store (`StoreError::Conflict`) is one of those; the
//! engine also learns the winner's binding, as it learns every other server's changes from
//! `LeaseStore::subscribe`, so the retransmission is given something else.
//!
//! A failed commit that shows the store itself failing (full disk, I/O errors) begins an
//! outage (`store_health`): until a probe writes again, messages are decided with
//! `Engine::handle_store_down` and nothing is committed. Solicit and Request are answered
//! with NoAddrsAvail (`refused_store_down`); a Renew, Rebind, Release or Decline that would
//! change a lease is dropped (`drop_store_down`). A Renew is dropped rather than answered with
//! the lifetimes the store still has: the client loses nothing by it (its lease runs to the
//! stored valid lifetime either way, it retransmits and Rebinds at T2), and no Reply can name
//! a lifetime the store does not cover. Expiry sweeps wait for the store as well.
//!
//! Lease events (`lease_events.rs`: the log line, the lease script) are emitted here too, from
//! what the engine reports it changed, once the change is durable and after the Reply went out.
//!
//! The engine sits behind a mutex so that the task waiting for a commit can roll back
//! itself; the lock is only ever held for synchronous work, never across an await. Every
//! receive worker shares this one service (one engine, one store and its one group-commit
//! writer), each sending on its own socket (`serve_on`): a critical section is a decision
//! (microseconds), so the workers spend their time in parsing, encoding and I/O, in parallel.
//!
//! Commits on their way to the store are bounded (`commit_limit`): a lease change decided
//! while that many are still waiting is rolled back and its message shed
//! (`shed_commit_backlog`), so a store slower than a storm cannot make memory grow.

use std::{
    net::{Ipv6Addr, SocketAddrV6},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Instant,
};

use anyhow::{Context, Result};
use dhcpv6_common::wire::msg;
use tracing::{debug, info, warn};

use super::fast_renew::{FastRenew, PUT_CHUNK};
use super::lease_events::EventSink;
use super::pending::Claim;
use super::store_health::StoreHealth;
use super::transmit::{send_reply, Transmit};
use crate::{
    config::LoadSplit,
    leases::{unix_now, CommitTicket, ForeignChange, Lease, LeaseKey, LeaseOp, LeaseStore, StoreError, StoreSpec},
    routes::Routes,
    server::split::Split,
    server::stateful::{
        unconfigured, ClientContext, Engine, LeaseEvent as Event, LinkPools, Requester, RouteChange, Undo,
    },
    stats::{Counter, LeaseEvent, MessageOutcome, Phase, UserStats},
    wire::Message,
};

/// Where the reply to one message goes.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub addr: SocketAddrV6,
    /// The interface the message arrived on: routes to what it delegates go out of it.
    pub ifindex: u32,
}

pub struct StatefulService {
    engine: Arc<Mutex<Engine>>,
    store: Arc<dyn LeaseStore>,
    routes: Option<Routes>,
    stats: Arc<UserStats>,
    health: Arc<StoreHealth>,
    events: Arc<EventSink>,
    /// `--load-split`: whose Solicits this box answers, kept current by the heartbeat task.
    split: Option<Arc<Mutex<Split>>>,
    /// Commits queued and not yet durable (or failed), and how many may be.
    in_flight: Arc<AtomicUsize>,
    commit_limit: usize,
    /// Decisions made, and of those how many found the engine locked by another worker:
    /// the measure of whether one engine is enough for the workers (docs/design.md).
    lock_stats: Arc<LockStats>,
    /// Renews answered in XDP (`xdp_renew`): the entries of `DHCPV6_RENEWS` and the queue of
    /// leases to pre-extend. Every commit below deletes its leases' entries first.
    fast_renew: Option<Arc<FastRenew>>,
}

/// How often the workers meet at the engine's lock.
#[derive(Debug, Default)]
pub struct LockStats {
    pub decisions: std::sync::atomic::AtomicU64,
    pub contended: std::sync::atomic::AtomicU64,
}

/// Commits on their way to the store, at most. Each holds its reply, its undo record and its
/// waiting task (about 2 KB), so the bound is some 32 MB. It is set by memory, not by
/// patience: a retransmission keeps its transaction ID, so a Reply that comes late is still
/// taken, and 20,000 exchanges/s ride out 800 ms of commit latency under it (with 4,096, a
/// loaded bench machine shed thousands of Requests at the upper steps of a search, where
/// exchanges took 0.2 to 0.6 s). Reached only when the store stalls for longer; then
/// answering more would only queue more.
pub const COMMIT_LIMIT: usize = 16_384;

/// Gives its slot in the commit pipeline back when the commit's outcome is known.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one decided and wrapped message leads to.
enum Action {
    /// Nothing to make durable (Advertise, Confirm, errors): send at once.
    Send(Vec<u8>),
    /// Leases on their way to disk: the reply and the routes wait for them.
    Commit {
        ticket: CommitTicket,
        slot: InFlight,
        reply: Option<Vec<u8>>,
        undo: Undo,
        routes: Vec<RouteChange>,
        /// The leases the commit touches, for the pre-extension queue once it resolved.
        touched: Vec<LeaseKey>,
    },
}

impl StatefulService {
    /// Opens the lease store, drops what expired while we were away (their `expire` and
    /// `reclaim` events go to `events`), and rebuilds the engine from what is left. `None`
    /// when no link has pools.
    pub async fn open(
        lease_db: &StoreSpec,
        split: Option<LoadSplit>,
        routes: bool,
        links: Vec<LinkPools>,
        stats: Arc<UserStats>,
        events: Arc<EventSink>,
    ) -> Result<Option<Self>> {
        if links.is_empty() {
            return Ok(None);
        }
        let spec = lease_db.clone();
        type Opened = (Arc<dyn LeaseStore>, Vec<Lease>, Vec<Lease>, u64);
        let (store, leases, reclaimed, at) = tokio::task::spawn_blocking(move || -> Result<Opened> {
            // SQLite files are locked against a second daemon; PostgreSQL is shared.
            let store = spec.open()?;
            let at = unix_now();
            let reclaimed = store.reclaim_expired(at)?;
            let leases = store.load_all()?;
            info!(db = %store.location(), leases = leases.len(), reclaimed = reclaimed.len(), "lease store open");
            Ok((store, leases, reclaimed, at))
        })
        .await??;
        events.emit(reclaimed.into_iter().map(|l| Event::ended(l, at)).collect());
        let routes = if routes { Some(Routes::connect()?) } else { None };
        let mut s = Self::new(links, store, leases, routes, stats)?;
        s.events = events;
        if let Some(ls) = split {
            s.start_load_split(ls).await?;
        }
        s.follow_other_servers();
        s.reconcile_routes().await;
        Ok(Some(s))
    }
}

impl StatefulService {
    /// The service over `store`, whose `leases` the engine starts from.
    pub fn new(
        mut links: Vec<LinkPools>,
        store: Arc<dyn LeaseStore>,
        leases: Vec<Lease>,
        routes: Option<Routes>,
        stats: Arc<UserStats>,
    ) -> Result<Self> {
        links.push(unconfigured());
        let engine = Engine::new(links, leases, unix_now()).context("stateful configuration")?;
        let health = Arc::new(StoreHealth::new(Arc::clone(&stats)));
        let stats_for_events = Arc::clone(&stats);
        Ok(Self {
            engine: Arc::new(Mutex::new(engine)),
            store,
            routes,
            stats,
            health,
            in_flight: Arc::default(),
            commit_limit: COMMIT_LIMIT,
            lock_stats: Arc::default(),
            events: Arc::new(EventSink::new(stats_for_events)),
            split: None,
            fast_renew: None,
        })
    }

    /// Lets XDP answer Renews (`xdp_renew`) through `fr`, whose map is empty: every bound
    /// lease is queued for the first batches, which `set_renew_ifaces` lets put entries.
    pub fn enable_fast_renew(&mut self, fr: FastRenew) {
        fr.enqueue(lock(&self.engine).direct_bound_keys());
        self.fast_renew = Some(Arc::new(fr));
    }

    /// Batches until the queue is empty (at most `rounds`): at start, after a reload, or
    /// after a storm of grants, every lease gets its entry within seconds, not one
    /// `BATCH_MAX` a second. Stops early while the store is down.
    pub async fn pre_extend_all(&self, rounds: usize) {
        let Some(fr) = &self.fast_renew else { return };
        for _ in 0..rounds {
            self.pre_extend_batch().await;
            if fr.backlog() == 0 || !self.health.is_up() {
                break;
            }
        }
    }

    /// Whether this service pre-extends leases for Renews answered in XDP.
    pub fn fast_renew(&self) -> Option<&Arc<FastRenew>> {
        self.fast_renew.as_ref()
    }

    /// The interfaces XDP answers Renews on now (name -> ifindex), after a sync of the
    /// served interfaces: a change deletes every entry and queues every lease again. Each
    /// counts for the link its direct clients are on: the one named after it, else the
    /// command line's (`DEFAULT_LINK`), as the engine chooses.
    pub fn set_renew_ifaces(&self, ifaces: std::collections::HashMap<String, u32>) {
        let Some(fr) = &self.fast_renew else { return };
        let engine = lock(&self.engine);
        let mut links: std::collections::HashMap<String, Vec<u32>> = std::collections::HashMap::new();
        for (name, ifindex) in ifaces {
            let link = match engine.link(&name) {
                Some(_) => name,
                None if engine.link(crate::config::DEFAULT_LINK).is_some() => crate::config::DEFAULT_LINK.to_owned(),
                None => continue,
            };
            links.entry(link).or_default().push(ifindex);
        }
        for v in links.values_mut() {
            v.sort_unstable();
        }
        if fr.set_ifaces(links, || engine.direct_bound_keys()) {
            info!("interfaces answering Renews in XDP changed: Renew entries rebuilt from the store");
        }
    }

    /// One pre-extension batch (`fast_renew`): takes leases from the queue, stores the
    /// longer expiry of those that qualify in one commit, and once it is durable puts their
    /// entries. Entries past their deadline go first. Returns the entries put.
    pub async fn pre_extend_batch(&self) -> usize {
        let Some(fr) = &self.fast_renew else { return 0 };
        fr.expire(unix_now());
        if !self.health.is_up() {
            return 0;
        }
        let now = unix_now();
        let (batch, pre, ticket) = {
            let mut engine = lock(&self.engine);
            let batch = fr.take_batch();
            if batch.keys.is_empty() {
                return 0;
            }
            let mut pre = fr.pre_extend(&mut engine, &batch, now);
            if pre.ops.is_empty() {
                return 0;
            }
            // Queued under the lock, as `decide` does: the store sees commits in order. The
            // upserts never shorten a lease, so no entry needs to go before them.
            let ticket = self.store.commit(std::mem::take(&mut pre.ops));
            (batch, pre, ticket)
        };
        if let Err(e) = timed_wait(ticket, &self.stats).await {
            self.stats.bump(Counter::XdpRenewBatchFailed);
            lock(&self.engine).rollback(pre.undo);
            fr.enqueue(batch.keys.iter().copied());
            if e.outage().is_none() {
                warn!(error = %e, "pre-extension batch failed; no Renew entry put");
            }
            self.health.commit_failed(&e, &self.store);
            return 0;
        }
        self.stats.bump(Counter::XdpRenewBatches);
        let extended: Vec<Lease> = pre.renewable.iter().filter(|r| r.extended).map(|r| r.lease.clone()).collect();
        self.stats.lease_event(LeaseEvent::PreExtended, extended.len() as u64);
        let mut put = 0;
        // In chunks: workers deciding messages wait for the engine at most one chunk's puts.
        for chunk in pre.renewable.chunks(PUT_CHUNK) {
            let engine = lock(&self.engine);
            put += fr.put_durable(&engine, &batch, chunk);
        }
        debug!(
            leases = pre.renewable.len(),
            extended = extended.len(),
            put,
            entries = fr.entries(),
            "pre-extension batch durable"
        );
        if self.events.wanted() {
            self.events.emit(extended.into_iter().map(|l| Event::pre_extended(l, now)).collect());
        }
        put
    }

    /// Writes the first heartbeat (so that the other boxes count this one before it answers
    /// anything), then one every `ls.interval()`, each time taking the boxes alive as the
    /// split. A heartbeat that fails keeps the last view: while the database is away nothing
    /// is granted anyway, and the boxes come back to the same view with it.
    async fn start_load_split(&mut self, ls: LoadSplit) -> Result<()> {
        let beat = move |store: Arc<dyn LeaseStore>| tokio::task::spawn_blocking(move || store.heartbeat(ls.stale()));
        let first =
            beat(Arc::clone(&self.store)).await??.context("the load split needs a store several boxes share")?;
        let mut view = Split::new(first.me.clone());
        view.set_live(first.live);
        info!(me = %view.me(), live = ?view.live(), stale_after = ?ls.stale(), "load split: answering Solicits for this box's share");
        let split = Arc::new(Mutex::new(view));
        self.split = Some(Arc::clone(&split));
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ls.interval());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match beat(Arc::clone(&store)).await {
                    Ok(Ok(Some(h))) => {
                        failing = false;
                        let mut s = lock(&split);
                        let before = s.live().to_vec();
                        s.set_live(h.live);
                        if s.live() != before {
                            info!(live = ?s.live(), was = ?before, "load split: the boxes alive changed");
                        }
                    }
                    Ok(Ok(None)) => return,
                    Ok(Err(e)) if !failing => {
                        failing = true;
                        warn!(error = %e, "load split: heartbeat failed; keeping the last view of the boxes");
                    }
                    Ok(Err(_)) => {}
                    Err(e) => {
                        warn!(error = %e, "load split: heartbeat task failed");
                    }
                }
            }
        });
        Ok(())
    }

    /// At most `limit` commits on their way to the store (`COMMIT_LIMIT` by default).
    #[cfg(test)]
    pub fn with_commit_limit(mut self, limit: usize) -> Self {
        self.commit_limit = limit;
        self
    }

    /// Decisions and how many waited for the engine's lock, for the metrics.
    pub fn lock_stats(&self) -> Arc<LockStats> {
        Arc::clone(&self.lock_stats)
    }

    /// True while as many commits as allowed are on their way: a lease change decided now
    /// would be shed (`shed_commit_backlog`).
    pub fn commits_full(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) >= self.commit_limit
    }

    /// Commits queued and not yet resolved, for the metrics.
    pub fn commits_in_flight(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.in_flight)
    }

    /// Answers one client message (Solicit, Request, Renew, Rebind, Release, Decline,
    /// Confirm): decide, `wrap` the reply (Relay-Reply levels, or nothing), commit, then
    /// send on `sock` (the receiving worker's socket) and route once durable, or roll back; the
    /// wait for the commit is spawned on the caller's runtime. `Err` names the counter of the reason
    /// nothing will be sent; what happens after the commit is counted here. `claim` (the
    /// message's transaction, `pending`) is held until the Reply is sent or nothing will be:
    /// until then the client's retransmissions are dropped on arrival.
    pub async fn serve_on<S: Transmit>(
        &self,
        sock: &Arc<S>,
        m: &Message<'_>,
        ctx: &ClientContext<'_>,
        to: ReplyTo,
        wrap: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, Counter>,
        claim: Option<Claim>,
    ) -> Result<(), Counter> {
        let msg_type = m.msg_type();
        let now = unix_now();
        let deciding = Instant::now();
        let action = self.decide(m, ctx, now, wrap);
        self.stats.phase(Phase::Decide).since(deciding);
        match action? {
            Action::Send(reply) => {
                let sent = send_reply(&**sock, &self.stats, &reply, to.addr).await;
                self.stats.message(msg_type, sent);
            }
            Action::Commit { ticket, slot, reply, undo, routes, touched } => {
                let engine = Arc::clone(&self.engine);
                let fast_renew = self.fast_renew.clone();
                let (sock, stats, routing) = (Arc::clone(sock), Arc::clone(&self.stats), self.routes.clone());
                let (health, store) = (Arc::clone(&self.health), Arc::clone(&self.store));
                let events = Arc::clone(&self.events);
                // Copied only when something takes events (a log at info, a script).
                let requester = events.wanted().then(|| Requester::new(ctx.peer, ctx.relay.as_ref()));
                // The wait must not hold up the next message: commits that queue up
                // meanwhile share one fsync (group commit).
                tokio::spawn(async move {
                    let _slot = slot;
                    let counted: Vec<LeaseEvent> = undo.lease_events().collect();
                    let committed = timed_wait(ticket, &stats).await;
                    // Durable or not, the leases it touched are candidates again.
                    if let Some(fr) = &fast_renew {
                        fr.enqueue(touched);
                    }
                    if let Err(e) = committed {
                        stats.bump(Counter::DropCommitFailed);
                        stats.message(msg_type, MessageOutcome::Failed);
                        let mut engine = lock(&engine);
                        engine.rollback(undo);
                        if let StoreError::Conflict { holder, key, .. } = &e {
                            // Another server won the race for this binding: learn its lease,
                            // so that the client's retransmission gets something else.
                            debug!(%key, "binding taken by another server; no reply sent");
                            if let Some(holder) = holder {
                                engine.learn(ForeignChange::Upsert(Lease::clone(holder)), unix_now());
                            }
                        } else {
                            if e.outage().is_none() {
                                warn!(error = %e, "lease commit failed; no reply sent");
                            }
                            health.commit_failed(&e, &store);
                        }
                        return;
                    }
                    counted.into_iter().for_each(|e| stats.lease_event(e, 1));
                    let outcome = match reply {
                        Some(reply) => {
                            let sending = Instant::now();
                            let sent = send_reply(&*sock, &stats, &reply, to.addr).await;
                            stats.phase(Phase::ReplySend).since(sending);
                            sent
                        }
                        None => MessageOutcome::Dropped,
                    };
                    stats.message(msg_type, outcome);
                    // The Reply is out: a retransmission from now on is served again (its
                    // Reply may have been lost).
                    drop(claim);
                    // Durable, and the Reply is out: now the log line and the script.
                    if let Some(requester) = requester {
                        events.emit(undo.into_events(msg_type, &requester, now));
                    }
                    if let Some(r) = routing {
                        apply_routes(&r, &routes, to.ifindex, &stats).await;
                    }
                });
            }
        }
        Ok(())
    }

    /// The engine's decision, wrapped and, if it changes leases, committed (not yet
    /// durable). Anything that stops the message before the commit rolls the engine back.
    fn decide(
        &self,
        m: &Message<'_>,
        ctx: &ClientContext<'_>,
        now: u64,
        wrap: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, Counter>,
    ) -> Result<Action, Counter> {
        if m.msg_type() == msg::SOLICIT {
            if let (Some(split), Ok(Some(duid))) = (&self.split, m.client_id()) {
                if !lock(split).serves(duid) {
                    return Err(Counter::DropOtherShare);
                }
            }
        }
        let mut engine = match self.engine.try_lock() {
            Ok(e) => e,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.lock_stats.contended.fetch_add(1, Ordering::Relaxed);
                lock(&self.engine)
            }
        };
        self.lock_stats.decisions.fetch_add(1, Ordering::Relaxed);
        let out = if self.health.is_up() {
            engine.handle(m, ctx, now)
        } else {
            let out = engine.handle_store_down(m, ctx, now);
            if out.reply.is_some() && matches!(m.msg_type(), msg::SOLICIT | msg::REQUEST) {
                self.stats.bump(Counter::RefusedStoreDown);
            }
            out
        };
        // Limits are counted when they refuse, whether or not the reply goes out.
        for c in &out.events {
            self.stats.bump(*c);
        }
        if let Some(c) = out.discard {
            debug!(peer = %ctx.peer, msg_type = m.msg_type(), reason = c.as_str(), "stateful message discarded");
            engine.rollback(out.undo);
            return Err(c);
        }
        // Wrapped before the commit: a Relay-Reply that cannot be built must not leave a
        // lease behind that no client was told of and no route points to.
        let reply = match out.reply.map(wrap).transpose() {
            Ok(reply) => reply,
            Err(c) => {
                engine.rollback(out.undo);
                return Err(c);
            }
        };
        if out.ops.is_empty() {
            return reply.map(Action::Send).ok_or(Counter::DropNoReply);
        }
        // Counted under the lock, so that workers deciding at once cannot both take the last
        // slot; given back (outside it) when the commit's outcome is known.
        if self.in_flight.load(Ordering::Acquire) >= self.commit_limit {
            debug!(peer = %ctx.peer, msg_type = m.msg_type(), "commit pipeline full: message shed");
            engine.rollback(out.undo);
            return Err(Counter::ShedCommitBacklog);
        }
        // Entries XDP answers from go before the commit that changes their leases.
        let touched = match &self.fast_renew {
            Some(fr) => {
                if fr.forget(&out.ops).is_err() {
                    engine.rollback(out.undo);
                    return Err(Counter::DropXdpRenewDelete);
                }
                out.ops.iter().map(LeaseOp::key).collect()
            }
            None => Vec::new(),
        };
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = InFlight(Arc::clone(&self.in_flight));
        // Queued under the lock, so the store sees commits in the order they were decided.
        let ticket = self.store.commit(out.ops);
        Ok(Action::Commit { ticket, slot, reply, undo: out.undo, routes: out.routes, touched })
    }

    /// Keeps the engine told of what other servers sharing the store grant and release,
    /// for as long as the store reports it (PostgreSQL; nothing for SQLite).
    fn follow_other_servers(&self) {
        let Some(mut changes) = self.store.subscribe() else { return };
        let engine = Arc::downgrade(&self.engine);
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                let Some(engine) = engine.upgrade() else { return };
                lock(&engine).learn(change, unix_now());
            }
        });
    }

    /// New pools, lifetimes and reservations (SIGHUP). The engine is rebuilt around the leases
    /// it holds, committed or not: nothing a client was told is forgotten. A lease that no
    /// pool covers any more stays until it expires; its client is not given it again
    /// (a Renew gets it back with lifetimes 0, RFC 9915 section 18.3.4).
    pub fn reconfigure(&self, mut links: Vec<LinkPools>) -> Result<()> {
        links.push(unconfigured());
        let mut engine = lock(&self.engine);
        engine.reconfigure(links, unix_now()).context("stateful configuration")?;
        // Lifetimes, reservations or links may have changed: no entry stays.
        if let Some(fr) = &self.fast_renew {
            fr.flush(engine.direct_bound_keys());
        }
        Ok(())
    }

    /// Routes of ours whose delegation is gone (expired or released while we were down) go;
    /// those still delegated are put (back) where the store says: after a restart of the
    /// machine the kernel has none of them, and a client may not renew for hours.
    async fn reconcile_routes(&self) {
        let Some(r) = &self.routes else { return };
        let delegations: Vec<Lease> = lock(&self.engine).delegations().cloned().collect();
        let delegated: Vec<(Ipv6Addr, u8)> = delegations.iter().map(|l| (l.addr, l.prefix_len)).collect();
        for l in &delegations {
            let Some(hop) = &l.next_hop else { continue };
            // A link-local next hop needs its interface; a global one (a relay) does not.
            let ifindex = match nix::net::if_::if_nametoindex(hop.dev.as_str()) {
                Ok(i) => i,
                Err(_) if !is_link_local(&hop.via) => 0,
                Err(e) => {
                    warn!(prefix = %l.addr, len = l.prefix_len, dev = %hop.dev, error = %e, "cannot restore route: no such interface");
                    continue;
                }
            };
            if let Err(e) = r.replace(l.addr, l.prefix_len, hop.via, ifindex).await {
                warn!(error = %format!("{e:#}"), "restoring a route");
            }
        }
        match r.ours().await {
            Ok(ours) => {
                for (p, l) in ours.into_iter().filter(|x| !delegated.contains(x)) {
                    if let Err(e) = r.remove(p, l).await {
                        warn!(error = %format!("{e:#}"), "removing a stale route");
                    }
                }
            }
            Err(e) => warn!(error = %format!("{e:#}"), "listing routes"),
        }
    }

    /// Reclaims expired leases: durable first, then their routes go. Not while the store is
    /// down: the leases stay in memory (nothing is granted meanwhile anyway) and go at the
    /// first sweep after it recovers, so memory and disk are told the same.
    pub async fn expire(&self) {
        if !self.health.is_up() {
            return;
        }
        let now = unix_now();
        let mut expired = {
            let mut engine = lock(&self.engine);
            let expired = engine.expire(now);
            // Their entries' deadlines passed long ago (a lease outlives its entry by the
            // valid lifetime), so a delete that fails here cannot let XDP answer.
            if let Some(fr) = &self.fast_renew {
                let _ = fr.forget(&expired.ops);
            }
            expired
        };
        if expired.ops.is_empty() {
            return;
        }
        info!(leases = expired.leases.len(), "leases expired");
        match timed_wait(self.store.commit(std::mem::take(&mut expired.ops)), &self.stats).await {
            Ok(()) => {
                self.stats.lease_event(LeaseEvent::Expired, expired.leases.len() as u64);
                self.events.emit(expired.events(now));
            }
            Err(e) => {
                // The removals are lost; the rows go at the next start (`reclaim_expired`),
                // and a stored row of an expired lease blocks nothing the engine would hand out.
                if e.outage().is_none() {
                    warn!(error = %e, "recording expired leases failed");
                }
                self.health.commit_failed(&e, &self.store);
            }
        }
        if let Some(r) = &self.routes {
            apply_routes(r, &expired.routes, 0, &self.stats).await;
        }
    }

    /// The own options of a relayed client's link, if it has some (`Engine::link_service`).
    pub fn link_service(
        &self,
        arrival: &str,
        relay: Option<&crate::server::relay::LinkSelector<'_>>,
    ) -> Option<Arc<crate::server::LinkService>> {
        lock(&self.engine).link_service(arrival, relay)
    }

    /// Every link by name, with its own options when it has some (for the fast path's
    /// relayed Information-Requests).
    pub fn link_services(&self) -> Vec<(String, Option<Arc<crate::server::LinkService>>)> {
        lock(&self.engine).link_services()
    }

    /// Where lease events go (the daemon passes its own to `open`; tests set a script here).
    #[cfg(test)]
    pub fn events(&self) -> &Arc<EventSink> {
        &self.events
    }

    /// The lease store's writer timings, for the metrics (`dhcpv6_store_step_seconds`).
    pub fn store_timings(&self) -> Option<Arc<crate::leases::StoreTimings>> {
        self.store.timings()
    }

    /// True while the lease store writes (for the `dhcpv6_store_healthy` gauge).
    pub fn store_gauge(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.health.gauge()
    }

    pub fn lease_count(&self) -> usize {
        lock(&self.engine).lease_count()
    }

    /// (link, pool, used, size) per pool, for the metrics.
    pub fn pool_usage(&self) -> Vec<(String, String, u64, u128)> {
        lock(&self.engine).pool_usage().into_iter().map(|p| (p.link, p.pool, p.used, p.size)).collect()
    }
}

// For `dhcpv6d ctl` (daemon/control.rs): the store to list leases from, and an operator's
// release.
impl StatefulService {
    /// The lease store, for reading what is durable (`ctl leases`) off the server loop.
    pub fn lease_store(&self) -> Arc<dyn LeaseStore> {
        Arc::clone(&self.store)
    }

    /// Ends the first lease `names` picks, as its client's Release would: the engine forgets
    /// it, the store's commit removes it (on failure the engine takes it back), and its route
    /// goes. The client is not told; its next Renew gets NoBinding. `Ok(None)`: no lease.
    pub async fn release(&self, names: impl Fn(&Lease) -> bool) -> Result<Option<Lease>> {
        let (lease, out, ticket) = {
            let mut engine = lock(&self.engine);
            let Some(key) = engine.leases().find(|l| names(l)).map(Lease::key) else {
                return Ok(None);
            };
            let Some((lease, mut out)) = engine.release_lease(&key) else {
                return Ok(None);
            };
            if let Some(fr) = &self.fast_renew {
                if let Err(e) = fr.forget(&out.ops) {
                    engine.rollback(out.undo);
                    return Err(e).context("the lease's Renew entry cannot be deleted; nothing released");
                }
            }
            // Queued under the lock, as `decide` does: the store sees commits in order.
            let ticket = self.store.commit(std::mem::take(&mut out.ops));
            (lease, out, ticket)
        };
        if let Err(e) = timed_wait(ticket, &self.stats).await {
            self.health.commit_failed(&e, &self.store);
            lock(&self.engine).rollback(out.undo);
            return Err(e).context("removing the lease from the store");
        }
        self.stats.lease_event(LeaseEvent::OperatorReleased, 1);
        self.events.emit(vec![Event::operator_release(lease.clone(), unix_now())]);
        if let Some(r) = &self.routes {
            apply_routes(r, &out.routes, 0, &self.stats).await;
        }
        Ok(Some(lease))
    }
}

/// Waits for a commit to be durable, and puts how long it took into the histogram.
async fn timed_wait(ticket: CommitTicket, stats: &UserStats) -> Result<(), crate::leases::StoreError> {
    let started = Instant::now();
    let committed = ticket.wait().await;
    stats.commit_latency.observe(started.elapsed());
    committed
}

/// The engine (or the split), even if its lock is poisoned: a panic while deciding is a bug, and the
/// clients of every other message should not pay for it with a daemon that stops serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn apply_routes(r: &Routes, changes: &[RouteChange], ifindex: u32, stats: &UserStats) {
    for c in changes {
        let res = match c {
            RouteChange::Add { prefix, len, via, .. } => r.replace(*prefix, *len, *via, ifindex).await,
            RouteChange::Remove { prefix, len, .. } => r.remove(*prefix, *len).await,
        };
        match res {
            Ok(()) => stats.bump(Counter::RouteChanges),
            Err(e) => {
                warn!(error = %format!("{e:#}"), "route change failed");
                stats.bump(Counter::RouteFailures);
            }
        }
    }
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dhcpv6_common::wire::{msg, opt, status};

    use super::*;
    use crate::leases::{LeaseOp, MemoryStore};
    use crate::wire::{writer, Duid};

    /// Records what would have gone out.
    #[derive(Default)]
    struct Sent(Mutex<Vec<(Vec<u8>, SocketAddrV6)>>);

    impl Transmit for Sent {
        async fn send_to(&self, buf: &[u8], to: SocketAddrV6) -> std::io::Result<usize> {
            self.0.lock().unwrap().push((buf.to_vec(), to));
            Ok(buf.len())
        }
    }

    /// A store whose disk has gone away: every commit fails.
    struct BrokenStore;

    impl LeaseStore for BrokenStore {
        fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
            Ok(Vec::new())
        }
        fn commit(&self, _: Vec<LeaseOp>) -> CommitTicket {
            CommitTicket::resolved(Err(StoreError::WriterStopped { store: dhcpv6_proto::leases::Location::Memory }))
        }
        fn reclaim_expired(&self, _: u64) -> Result<Vec<Lease>, StoreError> {
            Ok(Vec::new())
        }
        fn transactions(&self) -> u64 {
            0
        }
    }

    /// A store whose disk fills up and is emptied again, on the test's word: while full, every
    /// commit and probe fails with `StoreError::Full` and stores nothing.
    #[derive(Default)]
    struct FillingStore {
        inner: MemoryStore,
        full: std::sync::atomic::AtomicBool,
        /// Commits and probes that reached the store (failed ones included).
        commits: std::sync::atomic::AtomicU64,
        probes: std::sync::atomic::AtomicU64,
    }

    impl FillingStore {
        fn fill(&self, full: bool) {
            self.full.store(full, std::sync::atomic::Ordering::SeqCst);
        }

        fn commits(&self) -> u64 {
            self.commits.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn probes(&self) -> u64 {
            self.probes.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn outcome(&self) -> Option<CommitTicket> {
            self.full.load(std::sync::atomic::Ordering::SeqCst).then(|| {
                CommitTicket::resolved(Err(StoreError::Full {
                    path: std::path::PathBuf::from("/full/leases.db"),
                    action: "commit",
                    source: Arc::new(std::io::Error::from_raw_os_error(28)),
                }))
            })
        }
    }

    impl LeaseStore for FillingStore {
        fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
            self.inner.load_all()
        }
        fn commit(&self, ops: Vec<LeaseOp>) -> CommitTicket {
            self.commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.outcome().unwrap_or_else(|| self.inner.commit(ops))
        }
        fn probe(&self) -> CommitTicket {
            self.probes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.outcome().unwrap_or_else(|| CommitTicket::resolved(Ok(())))
        }
        fn reclaim_expired(&self, now: u64) -> Result<Vec<Lease>, StoreError> {
            self.inner.reclaim_expired(now)
        }
        fn transactions(&self) -> u64 {
            self.inner.transactions()
        }
    }

    struct Fixture {
        svc: StatefulService,
        sock: Arc<Sent>,
        stats: Arc<UserStats>,
        duid: Duid,
    }

    fn fixture(store: Arc<dyn LeaseStore>) -> Fixture {
        let links = vec![LinkPools {
            na: vec!["2001:db8:1::100-2001:db8:1::1ff".parse().unwrap()],
            pd: vec!["2001:db8:100::/40:56".parse().unwrap()],
            ..LinkPools::new("eth1")
        }];
        let (sock, stats) = (Arc::new(Sent::default()), Arc::new(UserStats::default()));
        let svc = StatefulService::new(links, store, Vec::new(), None, stats.clone()).unwrap();
        Fixture { svc, sock, stats, duid: Duid::from_mac([2, 0, 0, 0, 0, 1]) }
    }

    impl Fixture {
        fn ctx(&self) -> ClientContext<'_> {
            ClientContext {
                server_duid: &self.duid,
                relay: None,
                unicast: false,
                peer: "fe80::2".parse().unwrap(),
                arrival: "eth1",
                options: &[],
                ignore_user_classes: &[],
            }
        }

        /// A Request for one address and one prefix.
        fn request(&self) -> Vec<u8> {
            self.request_from(7)
        }

        /// A Request for one address and one prefix from client `n`.
        fn request_from(&self, n: u8) -> Vec<u8> {
            let mut m = vec![msg::REQUEST, 1, 2, 3];
            m.extend(option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, n]));
            m.extend(option(opt::SERVERID, self.duid.as_bytes()));
            m.extend(option(opt::IA_NA, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
            m.extend(option(opt::IA_PD, &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]));
            m
        }

        async fn serve(&self, m: &[u8], wrap: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, Counter>) -> Result<(), Counter> {
            self.svc.serve_on(&self.sock, &Message::parse(m).unwrap(), &self.ctx(), to(), wrap, None).await
        }

        fn sent(&self) -> Vec<(Vec<u8>, SocketAddrV6)> {
            self.sock.0.lock().unwrap().clone()
        }

        /// Waits (bounded) for the task that finishes a commit to have done `done`.
        async fn settle(&self, done: impl Fn(&Self) -> bool) {
            for _ in 0..200 {
                if done(self) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    fn option(code: u16, data: &[u8]) -> Vec<u8> {
        writer::encode_option(code, data).unwrap()
    }

    fn to() -> ReplyTo {
        ReplyTo { addr: "[fe80::2%3]:546".parse().unwrap(), ifindex: 3 }
    }

    #[tokio::test]
    async fn a_reply_goes_out_once_its_leases_are_stored() {
        let store = Arc::new(MemoryStore::new());
        let f = fixture(store.clone());
        let m = f.request();
        f.serve(&m, |r| Ok([b"wrapped:".as_slice(), &r].concat())).await.unwrap();
        f.settle(|f| !f.sent().is_empty()).await;
        let sent = f.sent();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].0.starts_with(b"wrapped:"), "the reply goes out as wrapped");
        assert_eq!(sent[0].0[8], msg::REPLY);
        assert_eq!(sent[0].1, to().addr);
        assert_eq!(store.load_all().unwrap().len(), 2, "address and prefix are stored");
        assert_eq!(f.svc.lease_count(), 2);
        assert_eq!(f.stats.get(Counter::Replied), 1);
    }

    /// Finding 9: a Relay-Reply that cannot be built after the leases were committed left
    /// a lease with no reply, no route and no rollback. Wrapping comes first now.
    #[tokio::test]
    async fn a_reply_that_cannot_be_wrapped_commits_nothing_and_is_rolled_back() {
        let store = Arc::new(MemoryStore::new());
        let f = fixture(store.clone());
        let m = f.request();
        let r = f.serve(&m, |_| Err(Counter::DropRelayTooLarge)).await;
        assert_eq!(r, Err(Counter::DropRelayTooLarge));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(store.load_all().unwrap().is_empty(), "nothing committed");
        assert_eq!(store.transactions(), 0);
        assert_eq!(f.svc.lease_count(), 0, "the engine forgot the decision");
        assert!(f.sent().is_empty());

        // The retransmission is served like a first attempt.
        f.serve(&m, Ok).await.unwrap();
        f.settle(|f| !f.sent().is_empty()).await;
        assert_eq!(f.sent().len(), 1);
        assert_eq!(store.load_all().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_failed_commit_sends_nothing_and_rolls_back() {
        let f = fixture(Arc::new(BrokenStore));
        let m = f.request();
        f.serve(&m, Ok).await.unwrap();
        f.settle(|f| f.stats.get(Counter::DropCommitFailed) > 0).await;
        assert_eq!(f.stats.get(Counter::DropCommitFailed), 1);
        f.settle(|f| f.svc.lease_count() == 0).await;
        assert_eq!(f.svc.lease_count(), 0, "rolled back");
        assert!(f.sent().is_empty());
        assert_eq!(f.stats.get(Counter::Replied), 0);
    }

    /// One IA of a reply: its status and its leases (address, valid lifetime).
    type IaSeen = (Option<u16>, Vec<(Ipv6Addr, u32)>);

    /// The IAs of a reply, decoded.
    fn ias(reply: &[u8]) -> Vec<IaSeen> {
        let m = Message::parse(reply).unwrap();
        m.options()
            .filter(|o| o.code == opt::IA_NA || o.code == opt::IA_PD)
            .map(|o| {
                let mut status = None;
                let mut leases = Vec::new();
                for s in crate::wire::OptionIter::new(&o.data[12..]).map(Result::unwrap) {
                    let at = |i: usize| u32::from_be_bytes(s.data[i..i + 4].try_into().unwrap());
                    match s.code {
                        opt::STATUS_CODE => status = Some(u16::from_be_bytes([s.data[0], s.data[1]])),
                        opt::IAADDR => {
                            leases.push((Ipv6Addr::from(<[u8; 16]>::try_from(&s.data[..16]).unwrap()), at(20)))
                        }
                        opt::IAPREFIX => {
                            leases.push((Ipv6Addr::from(<[u8; 16]>::try_from(&s.data[9..25]).unwrap()), at(4)))
                        }
                        _ => {}
                    }
                }
                (status, leases)
            })
            .collect()
    }

    /// Every address and prefix a Reply in `sent` names with a valid lifetime.
    fn granted(sent: &[(Vec<u8>, SocketAddrV6)]) -> Vec<Ipv6Addr> {
        sent.iter()
            .filter(|(r, _)| r[0] == msg::REPLY)
            .flat_map(|(r, _)| ias(r))
            .flat_map(|(_, leases)| leases)
            .filter(|(_, valid)| *valid > 0)
            .map(|(a, _)| a)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_disk_stops_grants_without_commits_and_they_resume_when_it_empties() {
        let store = Arc::new(FillingStore::default());
        let f = fixture(store.clone());
        assert!(f.svc.store_gauge().load(std::sync::atomic::Ordering::SeqCst));

        // The disk fills: the first Request that needs a write fails and begins the outage.
        store.fill(true);
        f.serve(&f.request_from(1), Ok).await.unwrap();
        f.settle(|f| f.stats.get(Counter::DropCommitFailed) == 1).await;
        assert_eq!(f.stats.get(Counter::DropCommitFailed), 1);
        assert_eq!(f.stats.get(Counter::StoreOutageFull), 1, "the outage is counted by its reason");
        assert!(!f.svc.store_gauge().load(std::sync::atomic::Ordering::SeqCst), "unhealthy");
        assert!(f.sent().is_empty(), "no Reply for a lease the store does not have");
        assert_eq!(f.svc.lease_count(), 0, "rolled back");

        // While down: a new Request gets NoAddrsAvail / NoPrefixAvail, and the store is not
        // even asked.
        let commits = store.commits();
        f.serve(&f.request_from(2), Ok).await.unwrap();
        assert_eq!(store.commits(), commits, "no commit tried while the store is down");
        let sent = f.sent();
        assert_eq!(sent.len(), 1, "answered at once");
        assert_eq!(sent[0].0[0], msg::REPLY);
        assert_eq!(
            ias(&sent[0].0).iter().map(|(s, l)| (*s, l.len())).collect::<Vec<_>>(),
            [(Some(status::NO_ADDRS_AVAIL), 0), (Some(status::NO_PREFIX_AVAIL), 0)]
        );
        assert_eq!(f.stats.get(Counter::RefusedStoreDown), 1);
        assert_eq!(f.stats.get(Counter::StoreOutageFull), 1, "one outage, counted once");
        assert_eq!(f.svc.lease_count(), 0);

        // The probe keeps trying, with backoff, while the disk stays full.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let probes = store.probes();
        assert!((2..=6).contains(&probes), "{probes} probes in 10 s");
        assert!(!f.svc.store_gauge().load(std::sync::atomic::Ordering::SeqCst));

        // Room again: within one probe interval grants resume by themselves.
        store.fill(false);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(f.svc.store_gauge().load(std::sync::atomic::Ordering::SeqCst), "healthy again");
        assert_eq!(f.stats.get(Counter::StoreRecovered), 1);
        f.serve(&f.request_from(3), Ok).await.unwrap();
        f.settle(|f| f.sent().len() == 2).await;
        let sent = f.sent();
        assert_eq!(granted(&sent).len(), 2, "address and prefix granted: {:?}", ias(&sent[1].0));

        // Every lease any Reply named is stored.
        let stored: Vec<Ipv6Addr> = store.load_all().unwrap().iter().map(|l| l.addr).collect();
        for a in granted(&sent) {
            assert!(stored.contains(&a), "{a} was told but is not stored");
        }
        assert_eq!(stored.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_disk_full_a_renew_is_dropped_not_extended_and_the_stored_lease_stays() {
        let store = Arc::new(FillingStore::default());
        let f = fixture(store.clone());
        f.serve(&f.request_from(1), Ok).await.unwrap();
        f.settle(|f| f.sent().len() == 1).await;
        let stored = store.load_all().unwrap();
        assert_eq!(stored.len(), 2);

        // The disk fills; an expiry sweep or another client's Request finds out.
        store.fill(true);
        f.serve(&f.request_from(2), Ok).await.unwrap();
        f.settle(|f| f.stats.get(Counter::DropCommitFailed) == 1).await;
        assert!(!f.svc.store_gauge().load(std::sync::atomic::Ordering::SeqCst));

        // Client 1 renews: the extension cannot be stored, so no Reply (no lifetime the
        // store does not cover) and the engine keeps the stored lease unchanged.
        let commits = store.commits();
        let mut renew = f.request_from(1);
        renew[0] = msg::RENEW;
        assert_eq!(f.serve(&renew, Ok).await, Err(Counter::DropStoreDown));
        assert_eq!(store.commits(), commits, "no commit tried");
        assert_eq!(f.sent().len(), 1, "nothing more sent");
        let mut held: Vec<Lease> = f.svc.engine.lock().unwrap().leases().cloned().collect();
        held.sort_by_key(Lease::key);
        assert_eq!(held, stored, "memory holds what the store holds");
        // Expiry waits for the store too: no removal is tried while it is down.
        f.svc.expire().await;
        assert_eq!(store.commits(), commits);

        // Room again: the same Renew is extended and answered.
        store.fill(false);
        tokio::time::sleep(Duration::from_secs(2)).await;
        f.serve(&renew, Ok).await.unwrap();
        f.settle(|f| f.sent().len() == 2).await;
        assert_eq!(granted(&f.sent()[1..]).len(), 2);
        let renewed = store.load_all().unwrap();
        assert!(renewed.iter().zip(&stored).all(|(n, o)| n.valid_until >= o.valid_until));
    }

    /// A store shared with another server that already gave the first address claimed to
    /// someone else: that commit fails with the holder, the others are stored.
    struct SharedStore {
        inner: MemoryStore,
        lost: Mutex<bool>,
    }

    impl LeaseStore for SharedStore {
        fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
            self.inner.load_all()
        }
        fn commit(&self, ops: Vec<LeaseOp>) -> CommitTicket {
            let mut lost = self.lost.lock().unwrap();
            if !*lost {
                *lost = true;
                let Some(LeaseOp::Upsert(mine)) = ops.first() else { panic!("a grant upserts") };
                let holder = Lease { duid: vec![0, 3, 0, 1, 9, 9, 9, 9, 9, 9], iaid: 5, ..mine.clone() };
                self.inner.commit(vec![LeaseOp::Upsert(holder.clone())]).wait_blocking().unwrap();
                return CommitTicket::resolved(Err(StoreError::Conflict {
                    store: dhcpv6_proto::leases::Location::Memory,
                    key: mine.key(),
                    holder: Some(Box::new(holder)),
                }));
            }
            self.inner.commit(ops)
        }
        fn reclaim_expired(&self, now: u64) -> Result<Vec<Lease>, StoreError> {
            self.inner.reclaim_expired(now)
        }
        fn transactions(&self) -> u64 {
            self.inner.transactions()
        }
    }

    #[tokio::test]
    async fn a_claim_lost_to_another_server_sends_nothing_and_the_retransmission_gets_another_binding() {
        let store = Arc::new(SharedStore { inner: MemoryStore::new(), lost: Mutex::new(false) });
        let f = fixture(store.clone());
        let m = f.request();
        f.serve(&m, Ok).await.unwrap();
        f.settle(|f| f.stats.get(Counter::DropCommitFailed) > 0).await;
        f.settle(|f| f.svc.lease_count() == 1).await;
        assert!(f.sent().is_empty(), "no Reply for a lost claim");
        let taken = store.inner.load_all().unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(f.svc.lease_count(), 1, "rolled back, and the other server's binding learned");

        f.serve(&m, Ok).await.unwrap();
        f.settle(|f| !f.sent().is_empty()).await;
        assert_eq!(f.sent().len(), 1);
        let stored = store.inner.load_all().unwrap();
        assert_eq!(stored.len(), 3, "the holder's, and our client's address and prefix");
        let ours: Vec<&Lease> = stored.iter().filter(|l| l.duid != taken[0].duid).collect();
        assert!(ours.iter().all(|l| l.key() != taken[0].key()), "another address: {ours:?}");
    }

    #[tokio::test]
    async fn an_advertise_commits_nothing_and_goes_out_at_once() {
        let f = fixture(Arc::new(BrokenStore));
        let mut m = vec![msg::SOLICIT, 1, 2, 3];
        m.extend(option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 7]));
        m.extend(option(opt::IA_NA, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
        f.serve(&m, Ok).await.unwrap();
        let sent = f.sent();
        assert_eq!(sent.len(), 1, "sent before serve returned");
        assert_eq!(sent[0].0[0], msg::ADVERTISE);
        assert_eq!(f.stats.get(Counter::DropCommitFailed), 0);
    }

    /// `messages` as (type, outcome) -> count, only what is not zero.
    fn messages(stats: &UserStats) -> Vec<(&'static str, &'static str, u64)> {
        stats.messages().into_iter().filter(|m| m.2 > 0).collect()
    }

    fn lease_event(stats: &UserStats, name: &str) -> u64 {
        stats.lease_events().into_iter().find(|e| e.0 == name).map_or(0, |e| e.1)
    }

    #[tokio::test]
    async fn a_durable_reply_counts_its_message_its_lease_events_and_the_commit_latency() {
        let f = fixture(Arc::new(MemoryStore::new()));
        let m = f.request();
        f.serve(&m, Ok).await.unwrap();
        f.settle(|f| !messages(&f.stats).is_empty()).await;
        assert_eq!(messages(&f.stats), [("request", "replied", 1)]);
        assert_eq!(lease_event(&f.stats, "granted"), 2, "an address and a prefix");
        assert_eq!(f.stats.commit_latency.snapshot().count, 1);

        // The same Request again extends both: renewed, not granted.
        f.serve(&m, Ok).await.unwrap();
        f.settle(|f| messages(&f.stats).iter().any(|m| m.2 == 2)).await;
        assert_eq!(messages(&f.stats), [("request", "replied", 2)]);
        assert_eq!((lease_event(&f.stats, "granted"), lease_event(&f.stats, "renewed")), (2, 2));
        assert_eq!(f.stats.commit_latency.snapshot().count, 2);
    }

    #[tokio::test]
    async fn a_failed_commit_counts_its_message_as_failed_and_no_lease_event() {
        let f = fixture(Arc::new(BrokenStore));
        f.serve(&f.request(), Ok).await.unwrap();
        f.settle(|f| !messages(&f.stats).is_empty()).await;
        assert_eq!(messages(&f.stats), [("request", "failed", 1)]);
        assert!(f.stats.lease_events().iter().all(|e| e.1 == 0), "{:?}", f.stats.lease_events());
        assert_eq!(f.stats.commit_latency.snapshot().count, 1, "a failed commit took time too");
    }

    #[tokio::test]
    async fn an_advertise_is_counted_by_type_when_sent() {
        let f = fixture(Arc::new(MemoryStore::new()));
        let mut m = vec![msg::SOLICIT, 1, 2, 3];
        m.extend(option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 7]));
        m.extend(option(opt::IA_NA, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
        f.serve(&m, Ok).await.unwrap();
        assert_eq!(messages(&f.stats), [("solicit", "replied", 1)]);
        assert_eq!(f.stats.commit_latency.snapshot().count, 0, "nothing committed");
    }

    #[tokio::test]
    async fn an_operator_release_removes_the_lease_from_engine_and_store() {
        let store = Arc::new(MemoryStore::new());
        let f = fixture(store.clone());
        f.serve(&f.request(), Ok).await.unwrap();
        f.settle(|f| f.svc.lease_count() == 2 && store.load_all().unwrap().len() == 2).await;
        let stored = store.load_all().unwrap();
        let prefix = stored.iter().find(|l| l.kind == crate::leases::LeaseKind::Prefix).unwrap().clone();

        let released = f.svc.release(|l| l.key() == prefix.key()).await.unwrap();
        assert_eq!(released.map(|l| l.key()), Some(prefix.key()));
        assert_eq!(f.svc.lease_count(), 1);
        let left = f.svc.lease_store().load_all().unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left.iter().all(|l| l.key() != prefix.key()));
        assert_eq!(lease_event(&f.stats, "operator_released"), 1);
        assert!(f.svc.release(|l| l.key() == prefix.key()).await.unwrap().is_none(), "nothing holds it any more");
    }

    #[tokio::test]
    async fn an_operator_release_whose_commit_fails_puts_the_lease_back() {
        let f = fixture(Arc::new(BrokenStore));
        let lease = Lease {
            kind: crate::leases::LeaseKind::Address,
            addr: "2001:db8:1::100".parse().unwrap(),
            prefix_len: 128,
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 7],
            iaid: 1,
            iface: "eth1".into(),
            valid_until: unix_now() + 3600,
            preferred_until: unix_now() + 1800,
            state: crate::leases::LeaseState::Bound,
            next_hop: None,
            last_transaction: 0,
            relay: None,
        };
        let links =
            vec![LinkPools { na: vec!["2001:db8:1::100-2001:db8:1::1ff".parse().unwrap()], ..LinkPools::new("eth1") }];
        let svc = StatefulService::new(links, Arc::new(BrokenStore), vec![lease], None, f.stats.clone()).unwrap();
        assert_eq!(svc.lease_count(), 1);
        assert!(svc.release(|_| true).await.is_err());
        assert_eq!(svc.lease_count(), 1, "the engine took it back");
        assert_eq!(lease_event(&f.stats, "operator_released"), 0);
    }

    /// A lease script that records each event as a file `EVENT-IAID` holding its
    /// `ADDRESS`/`PREFIX`, in a folder of the test's own.
    fn recording_script(name: &str) -> (std::path::PathBuf, crate::config::LeaseScript) {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("dhcpv6-stateful-events-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("script.sh");
        let body = format!("#!/bin/sh\necho \"$ADDRESS$PREFIX $DUID\" > {}/$EVENT-$IAID\n", d.display());
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (d, crate::config::LeaseScript { path, timeout: Duration::from_secs(10) })
    }

    /// The files `recording_script` wrote: (name, content).
    fn recorded(d: &std::path::Path) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "script.sh")
            .map(|e| (e.file_name().into_string().unwrap(), std::fs::read_to_string(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn durable_grants_and_releases_reach_the_lease_script_after_their_reply() {
        let store = Arc::new(MemoryStore::new());
        let f = fixture(store.clone());
        let (dir, script) = recording_script("durable");
        f.svc.events().set_script(Some(&script));
        f.serve(&f.request(), Ok).await.unwrap();
        f.settle(|f| !f.sent().is_empty()).await;
        let stored = store.load_all().unwrap();
        let runs = || f.stats.lease_script.runs();
        for _ in 0..400 {
            if runs() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let duid = "00030001020000000007";
        let got = recorded(&dir);
        let na = stored.iter().find(|l| l.kind == crate::leases::LeaseKind::Address).unwrap();
        let pd = stored.iter().find(|l| l.kind == crate::leases::LeaseKind::Prefix).unwrap();
        assert_eq!(
            got,
            [
                ("grant-1".to_owned(), format!("{} {duid}\n", na.addr)),
                ("grant-2".to_owned(), format!("{}/{} {duid}\n", pd.addr, pd.prefix_len)),
            ]
        );

        // An operator's release is an event too, once removed from the store.
        f.svc.release(|l| l.key() == na.key()).await.unwrap().unwrap();
        for _ in 0..400 {
            if runs() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(recorded(&dir).len(), 3, "{:?}", recorded(&dir));
        assert_eq!(recorded(&dir)[2], ("release-1".to_owned(), format!("{} {duid}\n", na.addr)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_failed_commit_emits_no_lease_event() {
        let f = fixture(Arc::new(BrokenStore));
        let (dir, script) = recording_script("failed");
        f.svc.events().set_script(Some(&script));
        f.serve(&f.request(), Ok).await.unwrap();
        f.settle(|f| f.stats.get(Counter::DropCommitFailed) > 0).await;
        // Give a wrongly queued run the time to show.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(f.stats.lease_script.runs(), 0);
        assert!(recorded(&dir).is_empty(), "{:?}", recorded(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn with_the_commit_pipeline_full_new_stateful_work_is_shed_and_rolled_back() {
        let store = Arc::new(MemoryStore::new());
        let mut f = fixture(store.clone());
        f.svc = f.svc.with_commit_limit(1);
        // The first Request's commit is queued; its waiting task has not run yet (this
        // runtime runs it only when the test yields), so the pipeline is full.
        f.serve(&f.request_from(1), Ok).await.unwrap();
        assert_eq!(f.svc.commits_in_flight().load(Ordering::SeqCst), 1);
        assert!(f.svc.commits_full(), "the receive queue waits while this holds");
        let held = f.svc.lease_count();
        assert_eq!(f.serve(&f.request_from(2), Ok).await, Err(Counter::ShedCommitBacklog));
        assert_eq!(f.svc.lease_count(), held, "the shed decision is rolled back");
        f.settle(|f| f.sent().len() == 1 && f.svc.commits_in_flight().load(Ordering::SeqCst) == 0).await;
        assert_eq!(f.svc.commits_in_flight().load(Ordering::SeqCst), 0, "the slot is given back");
        assert!(!f.svc.commits_full());
        assert_eq!(f.sent().len(), 1, "only the first was answered");
        // Room again: the retransmission is served.
        f.serve(&f.request_from(2), Ok).await.unwrap();
        f.settle(|f| f.sent().len() == 2).await;
        let stored: Vec<Ipv6Addr> = store.load_all().unwrap().iter().map(|l| l.addr).collect();
        let told = granted(&f.sent());
        assert_eq!(told.len(), 4, "address and prefix for both");
        for a in told {
            assert!(stored.contains(&a), "{a} was told but is not stored");
        }
        assert_eq!(stored.len(), 4);
    }

    /// A datagram as the worker's queue takes it in.
    fn queued(m: &[u8]) -> super::super::queue::Queued {
        super::super::queue::Queued {
            data: m.into(),
            from: to().addr,
            ifindex: 3,
            dst: "ff02::1:2".parse().unwrap(),
            at: Instant::now(),
            claim: None,
        }
    }

    #[tokio::test]
    async fn a_retransmitted_request_during_its_commit_gets_one_reply_and_one_commit() {
        use super::super::{pending::Pending, queue::RxQueue};
        let store = Arc::new(MemoryStore::new());
        let f = fixture(store.clone());
        let mut rx = RxQueue::new(16).tracking(Some(Pending::new(64)));
        let m = f.request();
        rx.push(queued(&m), &f.stats);
        // A copy while the first waits in the queue: not queued.
        rx.push(queued(&m), &f.stats);
        let first = rx.pop().unwrap();
        assert!(rx.is_empty(), "the copy was not queued");
        f.svc.serve_on(&f.sock, &Message::parse(&first.data).unwrap(), &f.ctx(), to(), Ok, first.claim).await.unwrap();
        // Decided and committed, the Reply waits for its commit (this runtime runs the
        // waiting task only when the test yields): the retransmission now is dropped too.
        assert!(f.sent().is_empty());
        rx.push(queued(&m), &f.stats);
        assert!(rx.is_empty());
        assert_eq!(f.stats.get(Counter::DuplicateInFlightRequest), 2);
        f.settle(|f| f.sent().len() == 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(f.sent().len(), 1, "one Reply");
        assert_eq!(store.transactions(), 1, "one commit");
        assert_eq!(messages(&f.stats), [("request", "replied", 1)]);
        assert_eq!((lease_event(&f.stats, "granted"), lease_event(&f.stats, "renewed")), (2, 0));

        // Once the Reply is out, a retransmission (that Reply was lost) is served again.
        rx.push(queued(&m), &f.stats);
        let again = rx.pop().expect("queued: the first is done");
        f.svc.serve_on(&f.sock, &Message::parse(&again.data).unwrap(), &f.ctx(), to(), Ok, again.claim).await.unwrap();
        f.settle(|f| f.sent().len() == 2).await;
        assert_eq!(f.sent().len(), 2);
        assert_eq!(f.stats.get(Counter::DuplicateInFlightRequest), 2);
    }

    #[tokio::test]
    async fn a_request_that_commits_nothing_or_is_shed_frees_its_transaction_at_once() {
        use super::super::{pending::Pending, queue::RxQueue};
        let f = fixture(Arc::new(MemoryStore::new()));
        let pending = Pending::new(64);
        let mut rx = RxQueue::new(1).tracking(Some(pending.clone()));
        // Discarded by the engine (no Server Identifier): its claim goes with it.
        let mut bad = vec![msg::REQUEST, 1, 2, 3];
        bad.extend(option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 7]));
        rx.push(queued(&bad), &f.stats);
        let d = rx.pop().unwrap();
        let r = f.svc.serve_on(&f.sock, &Message::parse(&d.data).unwrap(), &f.ctx(), to(), Ok, d.claim).await;
        assert_eq!(r, Err(Counter::DropMissingServerId));
        assert_eq!(pending.len(), 0);
        // Shed from a full queue: freed with it.
        rx.push(queued(&f.request_from(1)), &f.stats);
        rx.push(queued(&f.request_from(2)), &f.stats);
        assert_eq!(f.stats.get(Counter::ShedOldest), 1);
        assert_eq!(pending.len(), 1, "only the queued one holds its transaction");
        rx.push(queued(&f.request_from(1)), &f.stats);
        assert_eq!(f.stats.get(Counter::DuplicateInFlightRequest), 0, "the shed one's copy is queued");
    }

    #[tokio::test]
    async fn a_discarded_message_is_counted_by_the_caller() {
        let f = fixture(Arc::new(MemoryStore::new()));
        let mut m = vec![msg::REQUEST, 1, 2, 3];
        m.extend(option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 7]));
        assert_eq!(f.serve(&m, Ok).await, Err(Counter::DropMissingServerId));
        assert!(f.sent().is_empty());
    }

    /// Renews answered in XDP: entries only after a durable batch, gone before any commit
    /// that changes their lease.
    mod xdp_renew {
        use super::*;
        use crate::daemon::fast_renew::{testing::FakeMap, FastRenew, MARGIN};
        use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

        /// A memory store that checks, at every commit, that no touched lease still has an
        /// entry in the map (the program could answer from it while the commit lands).
        struct Watching {
            inner: MemoryStore,
            map: Arc<FakeMap>,
            violations: AtomicU64,
            fail: std::sync::atomic::AtomicBool,
        }

        impl LeaseStore for Watching {
            fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
                self.inner.load_all()
            }
            fn commit(&self, ops: Vec<LeaseOp>) -> CommitTicket {
                let entries = self.map.entries.lock().unwrap();
                for op in &ops {
                    let k = op.key();
                    if entries.values().any(|e| e.lease == k.addr.octets() && e.prefix_len == k.prefix_len) {
                        self.violations.fetch_add(1, SeqCst);
                    }
                }
                drop(entries);
                if self.fail.load(SeqCst) {
                    return CommitTicket::resolved(Err(StoreError::WriterStopped {
                        store: dhcpv6_proto::leases::Location::Memory,
                    }));
                }
                self.inner.commit(ops)
            }
            fn reclaim_expired(&self, now: u64) -> Result<Vec<Lease>, StoreError> {
                self.inner.reclaim_expired(now)
            }
            fn transactions(&self) -> u64 {
                self.inner.transactions()
            }
        }

        const WINDOW: u32 = 600;

        fn setup() -> (Fixture, Arc<Watching>, Arc<FakeMap>) {
            let map = Arc::new(FakeMap::default());
            // An entry a previous daemon left: emptied at start.
            map.entries.lock().unwrap().insert(bytemuck::Zeroable::zeroed(), bytemuck::Zeroable::zeroed());
            let store = Arc::new(Watching {
                inner: MemoryStore::new(),
                map: map.clone(),
                violations: AtomicU64::new(0),
                fail: Default::default(),
            });
            let mut f = fixture(store.clone());
            let fr = FastRenew::new(Box::new(map.clone()), WINDOW, f.stats.clone()).unwrap();
            assert!(map.entries.lock().unwrap().is_empty(), "a previous daemon's entries are not trusted");
            f.svc.enable_fast_renew(fr);
            f.svc.set_renew_ifaces([("eth1".to_string(), 3)].into());
            (f, store, map)
        }

        fn boot_ns() -> u64 {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: one timespec written through a valid pointer.
            assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) }, 0);
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        }

        /// Every entry's deadline plus the valid lifetime it tells ends before its stored lease.
        fn assert_covered(store: &Watching, map: &FakeMap) {
            let (boot, wall) = (boot_ns(), unix_now());
            let leases = store.inner.load_all().unwrap();
            let entries = map.entries.lock().unwrap();
            for e in entries.values() {
                let l = leases.iter().find(|l| l.addr.octets() == e.lease).expect("an entry has its stored lease");
                let valid = u64::from(Lifetimes::default().valid);
                let deadline_wall = wall + (e.answer_until_ns.saturating_sub(boot)) / 1_000_000_000 + 1;
                assert!(deadline_wall + valid <= l.valid_until, "entry answers past what the store covers: {l:?}");
            }
        }

        fn renew(f: &Fixture) -> Vec<u8> {
            let mut m = f.request();
            m[0] = msg::RENEW;
            m
        }

        use crate::server::stateful::Lifetimes;

        #[tokio::test]
        async fn entries_come_after_a_durable_batch_and_go_before_every_change() {
            let (f, store, map) = setup();
            f.serve(&f.request(), Ok).await.unwrap();
            f.settle(|f| !f.sent().is_empty()).await;
            let before = store.transactions();
            assert_eq!(f.svc.pre_extend_batch().await, 2, "address and prefix");
            assert_eq!(store.transactions(), before + 1, "one batch, one transaction");
            assert_eq!(map.entries.lock().unwrap().len(), 2);
            let now = unix_now();
            for l in store.inner.load_all().unwrap() {
                assert!(l.valid_until >= now + u64::from(WINDOW) + u64::from(Lifetimes::default().valid) - 2, "{l:?}");
            }
            assert_covered(&store, &map);
            assert_eq!(f.stats.get(Counter::XdpRenewBatches), 1);
            assert_eq!(f.stats.get(Counter::XdpRenewEntriesPut), 2);
            assert_eq!(f.svc.pre_extend_batch().await, 0, "nothing queued: no second write");

            // A Renew that went up: its entries go before its commit, and come back after the
            // next batch.
            f.serve(&renew(&f), Ok).await.unwrap();
            f.settle(|f| f.sent().len() == 2).await;
            assert!(map.entries.lock().unwrap().is_empty());
            assert_eq!(f.svc.pre_extend_batch().await, 2);
            assert_covered(&store, &map);

            // Release: gone before the commit, and nothing to put afterwards.
            let leases = store.inner.load_all().unwrap();
            let na = leases.iter().find(|l| l.prefix_len == 128).unwrap();
            let pd = leases.iter().find(|l| l.prefix_len != 128).unwrap();
            let mut rel = vec![msg::RELEASE, 1, 2, 4];
            rel.extend(option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 7]));
            rel.extend(option(opt::SERVERID, f.duid.as_bytes()));
            let addr = option(opt::IAADDR, &[&na.addr.octets()[..], &[0; 8]].concat());
            rel.extend(option(opt::IA_NA, &[&[0, 0, 0, 1][..], &[0; 8], &addr].concat()));
            let pfx = option(opt::IAPREFIX, &[&[0; 8][..], &[pd.prefix_len], &pd.addr.octets()].concat());
            rel.extend(option(opt::IA_PD, &[&[0, 0, 0, 2][..], &[0; 8], &pfx].concat()));
            f.serve(&rel, Ok).await.unwrap();
            f.settle(|f| f.sent().len() == 3).await;
            assert!(map.entries.lock().unwrap().is_empty());
            assert!(store.inner.load_all().unwrap().is_empty(), "released");
            assert_eq!(f.svc.pre_extend_batch().await, 0);
            assert_eq!(store.violations.load(SeqCst), 0, "a commit landed while its lease had an entry");
        }

        #[tokio::test]
        async fn operator_release_reload_and_interface_changes_delete_entries() {
            let (f, store, map) = setup();
            f.serve(&f.request(), Ok).await.unwrap();
            f.settle(|f| !f.sent().is_empty()).await;
            assert_eq!(f.svc.pre_extend_batch().await, 2);
            let na = store.inner.load_all().unwrap().into_iter().find(|l| l.prefix_len == 128).unwrap();
            f.svc.release(|l| l.key() == na.key()).await.unwrap().unwrap();
            assert_eq!(map.entries.lock().unwrap().len(), 1, "the prefix's entry stays");

            // A reload may change lifetimes: every entry goes, every lease is queued again.
            let links = vec![LinkPools {
                na: vec!["2001:db8:1::100-2001:db8:1::1ff".parse().unwrap()],
                pd: vec!["2001:db8:100::/40:56".parse().unwrap()],
                ..LinkPools::new("eth1")
            }];
            f.svc.reconfigure(links).unwrap();
            assert!(map.entries.lock().unwrap().is_empty());
            assert_eq!(f.svc.pre_extend_batch().await, 1);

            // The interface re-created under another ifindex: rebuilt under the new one.
            f.svc.set_renew_ifaces([("eth1".to_string(), 9)].into());
            assert!(map.entries.lock().unwrap().is_empty());
            assert_eq!(f.svc.pre_extend_batch().await, 1);
            assert!(map.entries.lock().unwrap().keys().all(|k| k.iface.ifindex == 9));
            // No interface answers Renews any more: nothing is put.
            f.svc.set_renew_ifaces(Default::default());
            assert_eq!(f.svc.pre_extend_batch().await, 0);
            assert!(map.entries.lock().unwrap().is_empty());
            assert_eq!(store.violations.load(SeqCst), 0);
        }

        /// The command line's pools serve every interface: a lease on them has an entry on
        /// each interface that answers Renews, and a change deletes them all.
        #[tokio::test]
        async fn a_lease_of_the_default_link_has_an_entry_per_interface() {
            let map = Arc::new(FakeMap::default());
            let store = Arc::new(Watching {
                inner: MemoryStore::new(),
                map: map.clone(),
                violations: AtomicU64::new(0),
                fail: Default::default(),
            });
            let links = vec![LinkPools {
                na: vec!["2001:db8:1::100-2001:db8:1::1ff".parse().unwrap()],
                ..LinkPools::new(crate::config::DEFAULT_LINK)
            }];
            let stats = Arc::new(UserStats::default());
            let mut svc = StatefulService::new(links, store.clone(), Vec::new(), None, stats.clone()).unwrap();
            svc.enable_fast_renew(FastRenew::new(Box::new(map.clone()), WINDOW, stats.clone()).unwrap());
            svc.set_renew_ifaces([("eth1".to_string(), 3), ("eth2".to_string(), 4)].into());
            let f = Fixture { svc, sock: Arc::new(Sent::default()), stats, duid: Duid::from_mac([2, 0, 0, 0, 0, 1]) };
            f.serve(&f.request(), Ok).await.unwrap();
            f.settle(|f| !f.sent().is_empty()).await;
            assert_eq!(f.svc.pre_extend_batch().await, 2, "one address, an entry on each interface");
            let mut on: Vec<u32> = map.entries.lock().unwrap().keys().map(|k| k.iface.ifindex).collect();
            on.sort_unstable();
            assert_eq!(on, [3, 4]);
            f.serve(&renew(&f), Ok).await.unwrap();
            f.settle(|f| f.sent().len() == 2).await;
            assert!(map.entries.lock().unwrap().is_empty(), "both went before the commit");
            assert_eq!(store.violations.load(SeqCst), 0);
        }

        #[tokio::test]
        async fn an_entry_that_cannot_be_deleted_stops_the_commit_and_a_failed_batch_puts_nothing() {
            let (f, store, map) = setup();
            f.serve(&f.request(), Ok).await.unwrap();
            f.settle(|f| !f.sent().is_empty()).await;
            assert_eq!(f.svc.pre_extend_batch().await, 2);
            let stored = store.inner.load_all().unwrap();
            map.fail_deletes.store(true, SeqCst);
            let t = store.transactions();
            assert_eq!(f.serve(&renew(&f), Ok).await, Err(Counter::DropXdpRenewDelete));
            assert_eq!(store.transactions(), t, "not committed");
            assert_eq!(f.sent().len(), 1, "not answered");
            assert_eq!(f.svc.lease_count(), 2);
            map.fail_deletes.store(false, SeqCst);

            // A Renew goes up and is answered; its batch then fails: no entry, memory as stored.
            f.serve(&renew(&f), Ok).await.unwrap();
            f.settle(|f| f.sent().len() == 2).await;
            store.fail.store(true, SeqCst);
            assert_eq!(f.svc.pre_extend_batch().await, 0);
            assert!(map.entries.lock().unwrap().is_empty());
            assert_eq!(f.stats.get(Counter::XdpRenewBatchFailed), 1);
            let held: Vec<Lease> = lock(&f.svc.engine).leases().cloned().collect();
            let mut now_stored = store.inner.load_all().unwrap();
            now_stored.sort_by_key(Lease::key);
            let mut held = held;
            held.sort_by_key(Lease::key);
            assert_eq!(held, now_stored, "the failed batch was rolled back");
            assert_ne!(now_stored, stored);
            let _ = MARGIN;
        }
    }
}
