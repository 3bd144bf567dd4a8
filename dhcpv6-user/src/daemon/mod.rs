//! The running server: keeps the XDP program's maps in step with config and interfaces, and
//! answers on UDP/547 what the fast path passes up.
//!
//! The server is a select loop over its components, each owning its own state:
//! `interfaces` (the served-interface table, kept in step with the kernel in the maps),
//! `relay_agent` (relay-agent mode and MAC learning), `stateful` (a stateful message from
//! decision to durable reply; its lease events go to `lease_events`, the log and the
//! `lease_script`), `control` (the socket `dhcpv6d ctl` talks to), `leasequery`
//! (RFC 5007 / RFC 5460 queries from the lease store, UDP and TCP).
//!
//! Datagrams are not the loop's: `worker`s receive them, each on its own socket and thread
//! (`--workers`, one per core by default), and `dispatch` routes one to the stateless answer
//! or the shared stateful service once `trust` has admitted it; `transmit` sends. The loop
//! publishes the served-interface table to them (`table`) after every change, and takes the
//! relay agent's datagrams from them, since the agent reads the dataplane the loop owns.

mod control;
mod dispatch;
mod fast_renew;
mod interfaces;
mod lease_events;
mod lease_script;
mod leasequery;
mod pending;
mod queue;
mod relay_agent;
mod stateful;
mod store_health;
mod table;
mod throttle;
mod transmit;
mod trust;
mod worker;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};
use tracing::{info, warn};

use crate::{
    config::{self, Overrides},
    dataplane::{AttachMode, Dataplane},
    fastpath::FloodOptions,
    metrics::WorkerStats,
    netlink::{self, Netlink},
    socket::ServerSocket,
    stats::{stats_file, Counter, UserStats},
};
use interfaces::ServedIfaces;
use queue::Queued;
use relay_agent::RelayAgent;
use stateful::StatefulService;
use table::{Table, TableCell};
use worker::{Shared, Worker};

pub use stateful::LockStats;

#[derive(Debug, Clone)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub overrides: Overrides,
    pub fast_path: bool,
    pub xdp_mode: AttachMode,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub bpf_log: bool,
    pub resolv_conf: PathBuf,
    pub routes: bool,
    /// Prometheus text on this address (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// Token buckets for frames the XDP program passes up (`--flood-*`).
    pub flood: FloodOptions,
    /// The control socket (`--control-socket`) `dhcpv6d ctl` talks to.
    pub control_socket: PathBuf,
}

/// The components and what they share. The dataplane and netlink are lent to the
/// components that write the kernel's state (`ifaces`, `agent`) one at a time, from the loop.
struct Server {
    opts: Options,
    /// The lease store opened at start (`--lease-db`, `[store]`): a reload does not move it.
    store: crate::leases::StoreSpec,
    dp: Dataplane,
    nl: Netlink,
    /// Worker 0's socket: the one that joins the multicast groups, and the relay agent's.
    sock: Arc<ServerSocket>,
    ifaces: ServedIfaces,
    agent: RelayAgent,
    stateful: Option<Arc<StatefulService>>,
    stats: Arc<UserStats>,
    /// Frames the flood buckets had dropped at the last look (`report_floods`).
    flood_dropped: u64,
    /// Lease count and pool usage for the metrics.
    lease_gauge: Arc<std::sync::atomic::AtomicU64>,
    pool_gauge: Arc<std::sync::Mutex<Vec<(String, String, u64, u128)>>>,
    control: control::Control,
    /// Lease events' log and script (the script follows reloads).
    events: Arc<lease_events::EventSink>,
    lq: Arc<leasequery::Leasequery>,
    /// What the workers read: the served-interface table.
    table: Arc<TableCell>,
    /// The workers, until the first sync has given them a table to work with: worker 0 and
    /// the sockets of the others.
    starting: Option<(Worker, Vec<socket2::Socket>)>,
    shared: Arc<Shared>,
    workers: Vec<Arc<WorkerStats>>,
    /// The relay agent's datagrams, from the workers.
    agent_rx: mpsc::Receiver<Queued>,
    /// Workers whose thread ended (a panic), and worker 0's task.
    died: (mpsc::UnboundedSender<usize>, mpsc::UnboundedReceiver<usize>),
    worker0: Option<tokio::task::JoinHandle<()>>,
}

/// Worker 0's end (never, before it is started).
async fn worker0_done(h: &mut Option<tokio::task::JoinHandle<()>>) -> Result<(), tokio::task::JoinError> {
    match h.as_mut() {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

/// The workers asked for (`--workers`, `workers`), or one per CPU this process may run on
/// (its affinity mask, as `taskset` sets it).
fn worker_count(asked: Option<u32>) -> u32 {
    asked.unwrap_or_else(|| {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        u32::try_from(cpus).unwrap_or(config::MAX_WORKERS).min(config::MAX_WORKERS)
    })
}

pub async fn run(opts: Options) -> Result<()> {
    let cfg = config::load(opts.config.as_deref(), &opts.overrides, &opts.resolv_conf)?;
    let stats = Arc::<UserStats>::default();
    let events = Arc::new(lease_events::EventSink::new(stats.clone()));
    events.set_script(cfg.lease_script());
    let leasequery_from = cfg.leasequery_from().clone();
    let store = cfg.store().clone();
    let split = cfg.load_split();
    let xdp_renew = cfg.xdp_renew();
    let n = worker_count(cfg.workers());
    let (ifaces, relay, links) = cfg.into_parts();
    std::fs::create_dir_all(&opts.state_dir).with_context(|| format!("creating {}", opts.state_dir.display()))?;
    let dp = Dataplane::load(&opts.pin_dir, opts.bpf_log)?;
    let nl = Netlink::connect()?;
    let mut socks = ServerSocket::bind_group(n)?.into_iter();
    let first = socks.next().context("no socket bound")?;
    let sock = Arc::new(ServerSocket::register(first)?);
    let mut stateful = StatefulService::open(&store, split, opts.routes, links, stats.clone(), events.clone()).await?;
    enable_xdp_renew(stateful.as_mut(), xdp_renew, &opts, &stats);
    let stateful = stateful.map(Arc::new);
    if let Some(st) = stateful.clone().filter(|s| s.fast_renew().is_some()) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(fast_renew::BATCH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                st.pre_extend_all(64).await;
            }
        });
    }
    let lq = leasequery::Leasequery::new(leasequery_from, stateful.as_ref().map(|s| s.lease_store()), stats.clone());
    // Bulk leasequery is an extra: a TCP/547 another program holds must not stop the DHCP service.
    if stateful.is_some() {
        if let Err(e) = lq.listen_tcp() {
            warn!(error = %format!("{e:#}"), "bulk leasequery (TCP/547) not served");
        }
    }
    let ifaces = ServedIfaces::new(ifaces, opts.fast_path, opts.xdp_mode);
    let agent = RelayAgent::new(relay, opts.xdp_mode);
    let control = control::Control::start(&opts.control_socket)?;
    let table = Arc::<TableCell>::default();
    let (agent_tx, agent_rx) = mpsc::channel(queue::QUEUE_LIMIT);
    let shared = Arc::new(Shared {
        stats: stats.clone(),
        stateful: stateful.clone(),
        table: table.clone(),
        agent: agent_tx,
        lq: lq.clone(),
        pending: stateful.is_some().then(|| pending::Pending::new(pending::PENDING_LIMIT)),
    });
    let workers: Vec<Arc<WorkerStats>> = (0..n).map(|_| Arc::default()).collect();
    let worker0 = Worker::new(sock.clone(), shared.clone(), workers[0].clone());
    info!(workers = n, "userspace workers");
    let mut s = Server {
        opts,
        store,
        dp,
        nl,
        sock,
        ifaces,
        agent,
        stateful,
        stats,
        flood_dropped: 0,
        lease_gauge: Arc::default(),
        pool_gauge: Arc::default(),
        control,
        events,
        lq,
        table,
        starting: Some((worker0, socks.collect())),
        shared,
        workers,
        agent_rx,
        died: mpsc::unbounded_channel(),
        worker0: None,
    };
    if let Some(addr) = s.opts.metrics {
        let listener = crate::metrics::bind(addr).await?;
        let sources = crate::metrics::Sources {
            pin_dir: s.opts.pin_dir.clone(),
            user: s.stats.clone(),
            leases: s.lease_gauge.clone(),
            pools: s.pool_gauge.clone(),
            store_up: s.stateful.as_deref().map(StatefulService::store_gauge),
            workers: s.workers.clone(),
            commits_in_flight: s.stateful.as_deref().map(StatefulService::commits_in_flight),
            engine_lock: s.stateful.as_deref().map(StatefulService::lock_stats),
            store_timings: s.stateful.as_deref().and_then(StatefulService::store_timings),
        };
        tokio::spawn(crate::metrics::serve(listener, sources));
    }
    // However the daemon ends (error, signal, crash), the program stays attached through its
    // pinned links and answers from the last reply data; the next daemon adopts it, and only
    // `dhcpv6d detach` removes it.
    s.start_and_serve().await
}

/// Renews answered in XDP (`xdp_renew`), when asked for and possible. Whatever is asked, the
/// map is emptied first: entries a previous daemon left are never trusted.
fn enable_xdp_renew(
    st: Option<&mut StatefulService>,
    asked: Option<config::XdpRenew>,
    opts: &Options,
    stats: &Arc<UserStats>,
) {
    let map = match fast_renew::PinnedRenews::open(&opts.pin_dir) {
        Ok(map) => map,
        Err(e) => {
            if asked.is_some() {
                warn!(error = %format!("{e:#}"), "xdp_renew is off: the XDP program has no Renew map");
            }
            return;
        }
    };
    let off = |why: &str| {
        use fast_renew::RenewMap;
        if let Err(e) = map.clear() {
            warn!(error = %format!("{e:#}"), "cannot empty DHCPV6_RENEWS");
        }
        if asked.is_some() {
            warn!("xdp_renew is off: {why}");
        }
    };
    let (Some(st), Some(asked)) = (st, asked) else { return off("no stateful service (no pools)") };
    if !opts.fast_path {
        return off("--no-fast-path");
    }
    if !st.lease_store().single_writer() {
        return off("the lease store is shared with other servers (PostgreSQL)");
    }
    match fast_renew::FastRenew::new(Box::new(map), asked.window, Arc::clone(stats)) {
        Ok(fr) => {
            st.enable_fast_renew(fr);
            info!(window = asked.window, "Renews answered in XDP for leases pre-extended in the store");
        }
        Err(e) => warn!(error = %format!("{e:#}"), "xdp_renew is off"),
    }
}

impl Server {
    async fn start_and_serve(&mut self) -> Result<()> {
        self.dp.set_flood(&self.opts.flood.config(), &self.opts.flood.relays)?;
        let f = &self.opts.flood;
        info!(rate = f.rate, burst = f.burst, relay_rate = f.relay_rate, relay_burst = f.relay_burst, relays = ?f.relays, "flood limits for frames passed up");
        let mut names: Vec<String> = self.ifaces.names().map(str::to_owned).collect();
        names.extend(self.agent.names());
        for name in names {
            if self.nl.link(&name).await?.is_none() {
                bail!("interface {name} does not exist");
            }
        }
        self.serve().await
    }

    async fn serve(&mut self) -> Result<()> {
        self.sync().await?;
        self.remove_stale()?;
        self.start_workers()?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut changes = netlink::watch(Duration::from_secs(30));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut sweep = tokio::time::interval(Duration::from_secs(10));
        let mut control_rx = self.control.rx.take();
        let names: Vec<&str> = self.ifaces.names().collect();
        info!(ifaces = ?names, fast_path = self.opts.fast_path, pin_dir = %self.opts.pin_dir.display(), "serving");
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: stopping; XDP stays attached (dhcpv6d detach removes it)"); break; }
                _ = int.recv() => { info!("SIGINT: stopping; XDP stays attached (dhcpv6d detach removes it)"); break; }
                _ = hup.recv() => { let _ = self.reload().await; }
                Some(call) = control::next(&mut control_rx) => self.control(call).await,
                Some(()) = changes.recv() => {
                    if let Err(e) = self.sync().await {
                        warn!(error = %format!("{e:#}"), "re-reading interfaces failed; will retry on the next event");
                    }
                }
                Some(d) = self.agent_rx.recv() => self.relay(d).await,
                // A worker that ends leaves its socket's share of the traffic unanswered:
                // better a restart (systemd's Restart=) than a daemon that serves 1/N less.
                Some(i) = self.died.1.recv() => bail!("worker {i} stopped (a panic; see above)"),
                r = worker0_done(&mut self.worker0) => bail!("worker 0 stopped: {r:?}"),
                _ = sweep.tick() => self.sweep().await,
                _ = tick.tick() => self.tick(),
            }
        }
        let _ = self.stats.write(&stats_file(&self.opts.state_dir));
        if let Some(st) = &self.stateful {
            let l = st.lock_stats();
            let ord = std::sync::atomic::Ordering::Relaxed;
            info!(
                workers = self.workers.len(),
                decisions = l.decisions.load(ord),
                contended = l.contended.load(ord),
                "stateful decisions, and those that found the engine locked by another worker"
            );
        }
        Ok(())
    }

    /// Worker 0 on this runtime, the others on threads of their own, once the table has
    /// been published (until then the kernel holds what arrives).
    fn start_workers(&mut self) -> Result<()> {
        let Some((worker0, socks)) = self.starting.take() else { return Ok(()) };
        for (i, sock) in socks.into_iter().enumerate() {
            let index = i + 1;
            worker::spawn(index, sock, self.shared.clone(), self.workers[index].clone(), self.died.0.clone())?;
        }
        self.worker0 = Some(tokio::spawn(worker0.run()));
        Ok(())
    }

    /// A datagram a worker received on one of the relay agent's interfaces.
    async fn relay(&mut self, d: Queued) {
        match self.agent.classify(&d.data, d.from, d.ifindex, &self.dp) {
            Some(action) => {
                self.stats.bump(Counter::Received);
                RelayAgent::forward(action, &*self.sock, &self.stats).await;
            }
            // The agent's interfaces changed since the worker's table was published.
            None => self.stats.bump(Counter::IgnoredOtherIface),
        }
    }

    /// Every 10 s: leases that ran out go, and flood drops are reported.
    async fn sweep(&mut self) {
        if let Some(st) = self.stateful.as_ref() {
            st.expire().await;
        }
        self.report_floods();
    }

    /// Every second: the program's log, the lease gauges of the metrics, the stats file.
    fn tick(&mut self) {
        self.dp.flush_log();
        if let Some(st) = self.stateful.as_ref() {
            self.lease_gauge.store(st.lease_count() as u64, std::sync::atomic::Ordering::Relaxed);
            if let Ok(mut g) = self.pool_gauge.lock() {
                *g = st.pool_usage();
            }
        }
        let _ = self.stats.write(&stats_file(&self.opts.state_dir));
    }

    /// Says so when the flood buckets dropped frames since the last look: a flood, or a
    /// relay (all its clients behind one MAC) that needs `--flood-relay`.
    fn report_floods(&mut self) {
        let Ok(c) = self.dp.counters() else { return };
        let dropped = c.drop_flood.wrapping_add(c.drop_flood_relay);
        if dropped > self.flood_dropped {
            warn!(
                dropped = dropped - self.flood_dropped,
                per_mac = c.drop_flood,
                per_relay = c.drop_flood_relay,
                "flood buckets dropped frames in XDP (a sender over --flood-rate; relays need --flood-relay ADDR)"
            );
        }
        self.flood_dropped = dropped;
    }

    /// SIGHUP and `ctl reload`: a bad file is refused (`Err` says file, line and reason) and
    /// the configuration in force kept whole.
    async fn reload(&mut self) -> Result<(), String> {
        let cfg = match config::load(self.opts.config.as_deref(), &self.opts.overrides, &self.opts.resolv_conf) {
            Ok(cfg) => cfg,
            Err(e) => {
                warn!(error = %e, "configuration refused; keeping the previous one");
                return Err(e.to_string());
            }
        };
        let script = cfg.lease_script().cloned();
        let leasequery_from = cfg.leasequery_from().clone();
        if cfg.store() != &self.store {
            // Leases live in one store per run: moving them is a restart (and a migration).
            warn!(in_force = %self.store, configured = %cfg.store(), "[store] changed: the lease store changes only with a restart");
        }
        if cfg.xdp_renew().is_some() != self.stateful.as_ref().is_some_and(|s| s.fast_renew().is_some()) {
            warn!("xdp_renew changes at the next start, not on reload");
        }
        let asked = worker_count(cfg.workers());
        if asked != self.worker_total() {
            warn!(running = self.worker_total(), asked, "the worker count changes at the next start, not on reload");
        }
        let (ifaces, relay, links) = cfg.into_parts();
        // Pools first: refused, nothing of the new file is applied.
        match self.stateful.as_ref() {
            Some(st) => match st.reconfigure(links) {
                Ok(()) => info!("pools and reservations reloaded"),
                Err(e) => {
                    let e = format!("pools refused: {e:#}");
                    warn!(error = %e, "configuration refused; keeping the previous one");
                    return Err(e);
                }
            },
            None if !links.is_empty() => {
                warn!("pools added to a daemon started without any: restart dhcpv6d to serve them")
            }
            None => {}
        }
        self.events.set_script(script.as_ref());
        self.agent.reconfigure(relay);
        self.lq.set_allowed(leasequery_from);
        if self.ifaces.reconfigure(ifaces) {
            info!("new interfaces in the configuration");
        }
        // Said once the workers have the new table (`sync` publishes it): what a client is
        // answered after this line is the new configuration.
        if let Err(e) = self.sync().await {
            warn!(error = %format!("{e:#}"), "applying the reloaded configuration failed");
        }
        info!("configuration reloaded");
        Ok(())
    }

    /// Re-reads the kernel's interfaces into the served table and the relay agent, and
    /// gives the workers the result (also what a failed sync got to).
    async fn sync(&mut self) -> Result<()> {
        let synced = self.sync_kernel().await;
        self.table.publish(Table { ifaces: self.ifaces.by_index(), agent: self.agent.ifindexes() });
        synced
    }

    async fn sync_kernel(&mut self) -> Result<()> {
        let links = self.stateful.as_ref().map_or_else(Vec::new, |s| s.link_services());
        let relay_links = crate::fastpath::relay_links(&links);
        if relay_links.is_none() {
            tracing::debug!(
                "a [[link]] with options cannot be told from an Interface-ID in XDP: relayed requests go to userspace"
            );
        }
        self.ifaces.set_relay_links(relay_links);
        // Renews in XDP on interfaces whose clients the engine answers with the interface's
        // own options (no `[[link]]` of the same name with options of its own).
        let renew_links = self.stateful.as_ref().filter(|s| s.fast_renew().is_some()).map(|_| {
            let link = |n: &str| links.iter().find(|(name, _)| name == n);
            self.ifaces
                .names()
                .filter(|i| match link(i).or_else(|| link(config::DEFAULT_LINK)) {
                    Some((_, own)) => own.is_none(),
                    None => false,
                })
                .map(str::to_owned)
                .collect()
        });
        self.ifaces.set_renew_links(renew_links);
        let synced = self.ifaces.sync(&self.nl, &mut self.dp, &self.sock).await;
        if let Some(st) = &self.stateful {
            st.set_renew_ifaces(self.ifaces.renew_ifaces());
        }
        synced?;
        self.lq.set_duid(self.ifaces.iter().find_map(|i| i.service().map(|s| s.duid.clone())));
        self.agent.sync(&self.nl, &mut self.dp, &self.sock).await
    }

    fn worker_total(&self) -> u32 {
        u32::try_from(self.workers.len()).unwrap_or(u32::MAX)
    }

    /// Once, after the first sync: what a previous daemon attached or wrote for interfaces
    /// this one does not serve goes.
    fn remove_stale(&mut self) -> Result<()> {
        let served: std::collections::HashSet<u32> =
            self.ifaces.indexes().chain(self.agent.learning_indexes()).collect();
        for name in self.dp.remove_stale(&served)? {
            info!(iface = %name, "no longer served: XDP detached");
        }
        Ok(())
    }
}
