//! The daemon's side of stateful service: the engine's decisions made durable before the
//! client hears of them, and routes for what was delegated.

use crate::stats::{Counter, LeaseEvent, MessageOutcome};
use std::{net::Ipv6Addr, net::SocketAddrV6, sync::Arc, time::Instant};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    config::DEFAULT_LINK,
    leases::{unix_now, CommitTicket, Lease, LeaseOp, LeaseStore, SqliteStore},
    routes::Routes,
    server::{
        relay::LinkSelector,
        stateful::{ClientContext, Engine, LinkPools, Outcome, RelayInfo, RouteChange, Undo},
        ConfiguredOption,
    },
    socket::ServerSocket,
    stats::UserStats,
    wire::{Duid, Message},
};

/// Clients on a link no pool names: they get NoAddrsAvail / NoPrefixAvail inside their IAs.
pub const UNCONFIGURED_LINK: &str = "unconfigured";

pub struct Stateful {
    engine: Engine,
    store: Arc<SqliteStore>,
    routes: Option<Routes>,
    undo_tx: mpsc::UnboundedSender<Undo>,
}

/// What to send once a decision is durable.
pub struct Deferred {
    pub reply: Option<(Vec<u8>, SocketAddrV6)>,
    pub ticket: CommitTicket,
    pub undo: Undo,
    pub routes: Vec<RouteChange>,
    /// The interface routes to delegated prefixes go out of.
    pub route_ifindex: u32,
    /// The client message's type, for the per-type metrics.
    pub msg_type: u8,
}

impl Stateful {
    /// Opens the lease store, drops what expired while we were away, and rebuilds the engine
    /// from what is left. `None` when no link has pools.
    pub async fn open(
        lease_db: &std::path::Path,
        routes: bool,
        mut links: Vec<LinkPools>,
    ) -> Result<Option<(Self, mpsc::UnboundedReceiver<Undo>)>> {
        if links.is_empty() {
            return Ok(None);
        }
        links.push(unconfigured());
        let path = lease_db.to_path_buf();
        let (store, leases) = tokio::task::spawn_blocking(move || -> Result<_> {
            let store = SqliteStore::open(&path)?;
            let reclaimed = store.reclaim_expired(unix_now())?;
            let leases = store.load_all()?;
            info!(db = %path.display(), leases = leases.len(), reclaimed = reclaimed.len(), "lease store open");
            Ok((store, leases))
        })
        .await??;
        let engine = Engine::new(links, leases, unix_now()).context("stateful configuration")?;
        let routes = if routes { Some(Routes::connect()?) } else { None };
        let (undo_tx, undo_rx) = mpsc::unbounded_channel();
        let s = Self { engine, store: Arc::new(store), routes, undo_tx };
        s.reconcile_routes().await;
        Ok(Some((s, undo_rx)))
    }

    /// New pools, lifetimes and reservations (SIGHUP). The engine is rebuilt around the leases
    /// it holds, committed or not: nothing a client was told is forgotten. A lease that no
    /// pool covers any more stays until it expires; its client is not given it again
    /// (a Renew gets it back with lifetimes 0, RFC 9915 section 18.3.4).
    pub fn reconfigure(&mut self, mut links: Vec<LinkPools>) -> Result<()> {
        links.push(unconfigured());
        let leases: Vec<_> = self.engine.leases().cloned().collect();
        self.engine = Engine::new(links, leases, unix_now()).context("stateful configuration")?;
        Ok(())
    }

    /// Routes of ours whose delegation is gone (expired or released while we were down) go;
    /// those still delegated are put (back) where the store says: after a restart of the
    /// machine the kernel has none of them, and a client may not renew for hours.
    async fn reconcile_routes(&self) {
        let Some(r) = &self.routes else { return };
        let delegated: Vec<(Ipv6Addr, u8)> = self.engine.delegations().map(|l| (l.addr, l.prefix_len)).collect();
        for l in self.engine.delegations() {
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

    /// The link a client belongs to: its interface's pools, else the command line's; for a
    /// relayed client, the link named by its Interface-ID, else the one whose prefix holds the
    /// relay's link-address.
    pub fn link_for(&self, iface: &str, relayed: Option<&LinkSelector<'_>>) -> String {
        if let Some(sel) = relayed {
            if let Some(id) = sel.interface_id.and_then(|i| std::str::from_utf8(i).ok()) {
                if self.engine.link(id).is_some() {
                    return id.to_owned();
                }
            }
            if let Some(l) = sel.link_address.and_then(|a| self.engine.link_for_relay(a)) {
                return l.link.clone();
            }
            return UNCONFIGURED_LINK.to_owned();
        }
        for name in [iface, DEFAULT_LINK] {
            if self.engine.link(name).is_some() {
                return name.to_owned();
            }
        }
        UNCONFIGURED_LINK.to_owned()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        m: &Message<'_>,
        link: String,
        duid: &Duid,
        relayed: Option<&LinkSelector<'_>>,
        unicast: bool,
        peer: Ipv6Addr,
        arrival: &str,
        options: Vec<ConfiguredOption>,
    ) -> Outcome {
        let relay = relayed.map(|s| RelayInfo {
            remote_id: s.remote_id.map(<[u8]>::to_vec),
            subscriber_id: s.subscriber_id.map(<[u8]>::to_vec),
            interface_id: s.interface_id.map(<[u8]>::to_vec),
            client_linklayer: s.client_linklayer.map(<[u8]>::to_vec),
        });
        let ctx = ClientContext {
            link,
            server_duid: duid.clone(),
            relay,
            unicast: unicast && relayed.is_none(),
            peer,
            arrival: arrival.to_owned(),
            options,
        };
        self.engine.handle(m, &ctx, unix_now())
    }

    pub fn commit(&self, ops: Vec<LeaseOp>) -> CommitTicket {
        self.store.commit(ops)
    }

    pub fn rollback(&mut self, undo: Undo) {
        self.engine.rollback(undo);
    }

    /// Sends the reply once its leases are on disk, then routes what it delegated; on a
    /// failed commit, nothing is sent and the engine forgets the decision.
    pub fn finish(&self, d: Deferred, sock: Arc<ServerSocket>, stats: Arc<UserStats>) {
        let routes = self.routes.clone();
        let undo_tx = self.undo_tx.clone();
        tokio::spawn(async move {
            let events: Vec<LeaseEvent> = d.undo.lease_events().collect();
            let started = Instant::now();
            let committed = d.ticket.wait().await;
            stats.commit_latency.observe(started.elapsed());
            if let Err(e) = committed {
                warn!(error = %e, "lease commit failed; no reply sent");
                stats.bump(Counter::DropCommitFailed);
                stats.message(d.msg_type, MessageOutcome::Failed);
                let _ = undo_tx.send(d.undo);
                return;
            }
            events.into_iter().for_each(|e| stats.lease_event(e, 1));
            match d.reply {
                Some((bytes, to)) => match sock.send_to(&bytes, to).await {
                    Ok(_) => {
                        stats.bump(Counter::Replied);
                        stats.message(d.msg_type, MessageOutcome::Replied);
                    }
                    Err(e) => {
                        warn!(%to, error = %e, "send failed");
                        stats.bump(Counter::SendFailed);
                        stats.message(d.msg_type, MessageOutcome::Failed);
                    }
                },
                None => stats.message(d.msg_type, MessageOutcome::Dropped),
            }
            if let Some(r) = routes {
                apply_routes(&r, &d.routes, d.route_ifindex, &stats).await;
            }
        });
    }

    /// Reclaims expired leases: durable first, then their routes go.
    pub async fn expire(&mut self, stats: &UserStats) {
        let expired = self.engine.expire(unix_now());
        if expired.ops.is_empty() {
            return;
        }
        info!(leases = expired.leases.len(), "leases expired");
        stats.lease_event(LeaseEvent::Expired, expired.leases.len() as u64);
        let started = Instant::now();
        let committed = self.store.commit(expired.ops).wait().await;
        stats.commit_latency.observe(started.elapsed());
        if let Err(e) = committed {
            warn!(error = %e, "recording expired leases failed; retrying at the next sweep");
        }
        if let Some(r) = &self.routes {
            apply_routes(r, &expired.routes, 0, stats).await;
        }
    }

    pub fn lease_count(&self) -> usize {
        self.engine.lease_count()
    }

    /// (link, pool, used, size) per pool, for the metrics.
    pub fn pool_usage(&self) -> Vec<(String, String, u64, u128)> {
        self.engine.pool_usage().into_iter().map(|p| (p.link, p.pool, p.used, p.size)).collect()
    }
}

// For `dhcpv6d ctl` (daemon/control.rs): the store to list leases from, and an operator's
// release. Self-contained, to move with the rest of this file.
impl Stateful {
    /// The lease store, for reading what is durable (`ctl leases`) off the server loop.
    pub fn lease_store(&self) -> Arc<dyn LeaseStore> {
        self.store.clone()
    }

    /// Ends the first lease `names` picks, as its client's Release would: the engine forgets
    /// it, the store's commit removes it (on failure the engine takes it back), and its route
    /// goes. The client is not told; its next Renew gets NoBinding. `Ok(None)`: no lease.
    pub async fn release(&mut self, names: impl Fn(&Lease) -> bool, stats: &UserStats) -> Result<Option<Lease>> {
        let Some(key) = self.engine.leases().find(|l| names(l)).map(Lease::key) else {
            return Ok(None);
        };
        let Some((lease, out)) = self.engine.release_lease(&key) else {
            return Ok(None);
        };
        let started = Instant::now();
        let committed = self.store.commit(out.ops).wait().await;
        stats.commit_latency.observe(started.elapsed());
        if let Err(e) = committed {
            self.engine.rollback(out.undo);
            return Err(e).context("removing the lease from the store");
        }
        stats.lease_event(LeaseEvent::OperatorReleased, 1);
        if let Some(r) = &self.routes {
            apply_routes(r, &out.routes, 0, stats).await;
        }
        Ok(Some(lease))
    }
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

/// Where clients on a link no pool names are put: NoAddrsAvail / NoPrefixAvail.
fn unconfigured() -> LinkPools {
    let mut l = LinkPools::new(UNCONFIGURED_LINK);
    l.reject_unicast = true;
    l
}
