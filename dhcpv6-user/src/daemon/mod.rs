//! The running server: keeps the XDP program's maps in step with config and interfaces, and
//! answers on UDP/547 what the fast path passes up.
//!
//! The server is a select loop over its components, each owning its own state:
//! `interfaces` (the served-interface table, kept in step with the kernel in the maps),
//! `relay_agent` (relay-agent mode and MAC learning), `stateful` (a stateful message from
//! decision to durable reply), `control` (the socket `dhcpv6d ctl` talks to). `dispatch`
//! routes one datagram to them, once `trust` has admitted it; `transmit` sends.

mod control;
mod dispatch;
mod interfaces;
mod queue;
mod relay_agent;
mod stateful;
mod store_health;
mod transmit;
mod trust;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::{
    config::{self, Overrides},
    dataplane::{AttachMode, Dataplane},
    fastpath::FloodOptions,
    netlink::{self, Netlink},
    socket::ServerSocket,
    stats::{stats_file, UserStats},
};
use interfaces::ServedIfaces;
use relay_agent::RelayAgent;
use stateful::StatefulService;

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
    pub lease_db: PathBuf,
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
    dp: Dataplane,
    nl: Netlink,
    sock: Arc<ServerSocket>,
    ifaces: ServedIfaces,
    agent: RelayAgent,
    stateful: Option<StatefulService>,
    stats: Arc<UserStats>,
    /// Frames the flood buckets had dropped at the last look (`report_floods`).
    flood_dropped: u64,
    /// Lease count and pool usage for the metrics.
    lease_gauge: Arc<std::sync::atomic::AtomicU64>,
    pool_gauge: Arc<std::sync::Mutex<Vec<(String, String, u64, u128)>>>,
    control: control::Control,
    /// Datagrams read off the socket, waiting to be answered (`queue.rs`).
    rx: queue::RxQueue,
}

pub async fn run(opts: Options) -> Result<()> {
    let (ifaces, relay, links) = config::load(opts.config.as_deref(), &opts.overrides, &opts.resolv_conf)?.into_parts();
    std::fs::create_dir_all(&opts.state_dir).with_context(|| format!("creating {}", opts.state_dir.display()))?;
    let dp = Dataplane::load(&opts.pin_dir, opts.bpf_log)?;
    let nl = Netlink::connect()?;
    let sock = Arc::new(ServerSocket::bind()?);
    let stats = Arc::<UserStats>::default();
    let stateful = StatefulService::open(&opts.lease_db, opts.routes, links, sock.clone(), stats.clone()).await?;
    let ifaces = ServedIfaces::new(ifaces, opts.fast_path, opts.xdp_mode);
    let agent = RelayAgent::new(relay, opts.xdp_mode);
    let control = control::Control::start(&opts.control_socket)?;
    let mut s = Server {
        opts,
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
        rx: queue::RxQueue::new(queue::QUEUE_LIMIT),
    };
    if let Some(addr) = s.opts.metrics {
        let listener = crate::metrics::bind(addr).await?;
        let sources = crate::metrics::Sources {
            pin_dir: s.opts.pin_dir.clone(),
            user: s.stats.clone(),
            leases: s.lease_gauge.clone(),
            pools: s.pool_gauge.clone(),
            store_up: s.stateful.as_ref().map(StatefulService::store_gauge),
            queue: s.rx.depth(),
            store_timings: s.stateful.as_ref().and_then(StatefulService::store_timings),
        };
        tokio::spawn(crate::metrics::serve(listener, sources));
    }
    // However the daemon ends (error, signal, crash), the program stays attached through its
    // pinned links and answers from the last reply data; the next daemon adopts it, and only
    // `dhcpv6d detach` removes it.
    s.start_and_serve().await
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
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut changes = netlink::watch(Duration::from_secs(30));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut sweep = tokio::time::interval(Duration::from_secs(10));
        let mut control_rx = self.control.rx.take();
        let names: Vec<&str> = self.ifaces.names().collect();
        info!(ifaces = ?names, fast_path = self.opts.fast_path, pin_dir = %self.opts.pin_dir.display(), "serving");
        let mut buf = vec![0u8; 65536];
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
                r = self.sock.recv(&mut buf) => match r {
                    Ok(rx) => self.enqueue(rx, &mut buf),
                    Err(e) => warn!(error = %e, "receive failed"),
                },
                () = std::future::ready(()), if !self.rx.is_empty() => self.serve_queued(&mut buf).await,
                _ = sweep.tick() => self.sweep().await,
                _ = tick.tick() => self.tick(),
            }
        }
        let _ = self.stats.write(&stats_file(&self.opts.state_dir));
        Ok(())
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
        self.agent.reconfigure(relay);
        if self.ifaces.reconfigure(ifaces) {
            info!("new interfaces in the configuration");
        }
        info!("configuration reloaded");
        if let Err(e) = self.sync().await {
            warn!(error = %format!("{e:#}"), "applying the reloaded configuration failed");
        }
        Ok(())
    }

    /// Re-reads the kernel's interfaces into the served table and the relay agent.
    async fn sync(&mut self) -> Result<()> {
        self.ifaces.sync(&self.nl, &mut self.dp, &self.sock).await?;
        self.agent.sync(&self.nl, &mut self.dp, &self.sock).await
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
