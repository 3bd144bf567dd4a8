//! Stateful service in the daemon: one owner for a client message's whole way from the
//! engine's decision to the wire.
//!
//! `StatefulService::serve` does, in this order and nowhere else: decide (the engine,
//! pure), wrap the reply for the relays, commit the lease changes, and once they are
//! durable send the reply and apply the routes to delegated prefixes. What cannot go on
//! is undone in the same place: a reply that cannot be wrapped commits nothing and rolls
//! the engine back; a failed commit sends nothing, rolls back and counts
//! `drop_commit_failed` (the client retransmits and gets a fresh decision).
//!
//! The engine sits behind a mutex so that the task waiting for a commit can roll back
//! itself; the lock is only ever held for synchronous work, never across an await.

use std::{
    net::{Ipv6Addr, SocketAddrV6},
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use anyhow::{Context, Result};
use tracing::{debug, info, warn};

use super::transmit::{send_reply, Transmit};
use crate::{
    leases::{unix_now, CommitTicket, Lease, LeaseStore},
    routes::Routes,
    server::stateful::{unconfigured, ClientContext, Engine, LinkPools, RouteChange, Undo},
    socket::ServerSocket,
    stats::{Counter, UserStats},
    wire::Message,
};

/// Where the reply to one message goes.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub addr: SocketAddrV6,
    /// The interface the message arrived on: routes to what it delegates go out of it.
    pub ifindex: u32,
}

pub struct StatefulService<S = ServerSocket> {
    engine: Arc<Mutex<Engine>>,
    store: Arc<dyn LeaseStore>,
    routes: Option<Routes>,
    sock: Arc<S>,
    stats: Arc<UserStats>,
}

/// What one decided and wrapped message leads to.
enum Action {
    /// Nothing to make durable (Advertise, Confirm, errors): send at once.
    Send(Vec<u8>),
    /// Leases on their way to disk: the reply and the routes wait for them.
    Commit { ticket: CommitTicket, reply: Option<Vec<u8>>, undo: Undo, routes: Vec<RouteChange> },
}

impl StatefulService {
    /// Opens the lease store, drops what expired while we were away, and rebuilds the engine
    /// from what is left. `None` when no link has pools.
    pub async fn open(
        lease_db: &Path,
        routes: bool,
        links: Vec<LinkPools>,
        sock: Arc<ServerSocket>,
        stats: Arc<UserStats>,
    ) -> Result<Option<Self>> {
        if links.is_empty() {
            return Ok(None);
        }
        let path = lease_db.to_path_buf();
        let (store, leases) = tokio::task::spawn_blocking(move || -> Result<(Arc<dyn LeaseStore>, Vec<Lease>)> {
            // A path is SQLite, a postgresql:// URL PostgreSQL; anything else is refused.
            let store = crate::leases::open(&path)?;
            let reclaimed = store.reclaim_expired(unix_now())?;
            let leases = store.load_all()?;
            info!(db = %store.location(), leases = leases.len(), reclaimed = reclaimed.len(), "lease store open");
            Ok((store, leases))
        })
        .await??;
        let routes = if routes { Some(Routes::connect()?) } else { None };
        let s = Self::new(links, store, leases, routes, sock, stats)?;
        s.reconcile_routes().await;
        Ok(Some(s))
    }
}

impl<S: Transmit> StatefulService<S> {
    /// The service over `store`, whose `leases` the engine starts from.
    pub fn new(
        mut links: Vec<LinkPools>,
        store: Arc<dyn LeaseStore>,
        leases: Vec<Lease>,
        routes: Option<Routes>,
        sock: Arc<S>,
        stats: Arc<UserStats>,
    ) -> Result<Self> {
        links.push(unconfigured());
        let engine = Engine::new(links, leases, unix_now()).context("stateful configuration")?;
        Ok(Self { engine: Arc::new(Mutex::new(engine)), store, routes, sock, stats })
    }

    /// Answers one client message (Solicit, Request, Renew, Rebind, Release, Decline,
    /// Confirm): decide, `wrap` the reply (Relay-Reply levels, or nothing), commit, then
    /// send and route once durable, or roll back. `Err` names the counter of the reason
    /// nothing will be sent; what happens after the commit is counted here.
    pub async fn serve(
        &self,
        m: &Message<'_>,
        ctx: &ClientContext<'_>,
        to: ReplyTo,
        wrap: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, Counter>,
    ) -> Result<(), Counter> {
        match self.decide(m, ctx, wrap)? {
            Action::Send(reply) => send_reply(&*self.sock, &self.stats, &reply, to.addr).await,
            Action::Commit { ticket, reply, undo, routes } => {
                let engine = Arc::clone(&self.engine);
                let (sock, stats, routing) = (Arc::clone(&self.sock), Arc::clone(&self.stats), self.routes.clone());
                // The wait must not hold up the next message: commits that queue up
                // meanwhile share one fsync (group commit).
                tokio::spawn(async move {
                    if let Err(e) = ticket.wait().await {
                        warn!(error = %e, "lease commit failed; no reply sent");
                        stats.bump(Counter::DropCommitFailed);
                        lock(&engine).rollback(undo);
                        return;
                    }
                    if let Some(reply) = reply {
                        send_reply(&*sock, &stats, &reply, to.addr).await;
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
        wrap: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, Counter>,
    ) -> Result<Action, Counter> {
        let mut engine = lock(&self.engine);
        let out = engine.handle(m, ctx, unix_now());
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
        // Queued under the lock, so the store sees commits in the order they were decided.
        let ticket = self.store.commit(out.ops);
        Ok(Action::Commit { ticket, reply, undo: out.undo, routes: out.routes })
    }

    /// New pools, lifetimes and reservations (SIGHUP). The engine is rebuilt around the leases
    /// it holds, committed or not: nothing a client was told is forgotten. A lease that no
    /// pool covers any more stays until it expires; its client is not given it again
    /// (a Renew gets it back with lifetimes 0, RFC 9915 section 18.3.4).
    pub fn reconfigure(&self, mut links: Vec<LinkPools>) -> Result<()> {
        links.push(unconfigured());
        let mut engine = lock(&self.engine);
        let leases: Vec<Lease> = engine.leases().cloned().collect();
        *engine = Engine::new(links, leases, unix_now()).context("stateful configuration")?;
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

    /// Reclaims expired leases: durable first, then their routes go.
    pub async fn expire(&self) {
        let expired = lock(&self.engine).expire(unix_now());
        if expired.ops.is_empty() {
            return;
        }
        info!(leases = expired.leases.len(), "leases expired");
        if let Err(e) = self.store.commit(expired.ops).wait().await {
            warn!(error = %e, "recording expired leases failed; retrying at the next sweep");
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

    pub fn lease_count(&self) -> usize {
        lock(&self.engine).lease_count()
    }

    /// (link, pool, used, size) per pool, for the metrics.
    pub fn pool_usage(&self) -> Vec<(String, String, u64, u128)> {
        lock(&self.engine).pool_usage().into_iter().map(|p| (p.link, p.pool, p.used, p.size)).collect()
    }
}

/// The engine, even if its lock is poisoned: a panic while deciding is a bug, and the
/// clients of every other message should not pay for it with a daemon that stops serving.
fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(PoisonError::into_inner)
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

    use dhcpv6_common::wire::{msg, opt};

    use super::*;
    use crate::leases::{LeaseOp, MemoryStore, StoreError};
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

    struct Fixture {
        svc: StatefulService<Sent>,
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
        let svc = StatefulService::new(links, store, Vec::new(), None, sock.clone(), stats.clone()).unwrap();
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
            let mut m = vec![msg::REQUEST, 1, 2, 3];
            m.extend(option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 7]));
            m.extend(option(opt::SERVERID, self.duid.as_bytes()));
            m.extend(option(opt::IA_NA, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
            m.extend(option(opt::IA_PD, &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]));
            m
        }

        async fn serve(&self, m: &[u8], wrap: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, Counter>) -> Result<(), Counter> {
            self.svc.serve(&Message::parse(m).unwrap(), &self.ctx(), to(), wrap).await
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

    #[tokio::test]
    async fn a_discarded_message_is_counted_by_the_caller() {
        let f = fixture(Arc::new(MemoryStore::new()));
        let mut m = vec![msg::REQUEST, 1, 2, 3];
        m.extend(option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 7]));
        assert_eq!(f.serve(&m, Ok).await, Err(Counter::DropMissingServerId));
        assert!(f.sent().is_empty());
    }
}
