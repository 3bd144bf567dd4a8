//! The running server: keeps the XDP program's maps in step with config and interfaces, and
//! answers on UDP/547 what the fast path passes up.

use std::{
    collections::HashMap,
    net::SocketAddrV6,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use dhcpv6_common::wire::msg;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};
use tracing::{debug, info, warn};

use crate::{
    config::{self, IfaceConfig, Overrides, RelaySettings},
    dataplane::{AttachMode, Dataplane},
    fastpath::build_reply_data,
    netlink::{self, LinkState, Netlink},
    server::{
        information_request, relay,
        relay_agent::{AgentAction, DownstreamIface, RelayAgentConfig, UpstreamTarget, UPSTREAM_MULTICAST_HOPS},
        IfaceService,
    },
    server::stateful::Undo,
    socket::ServerSocket,
    stateful_service::{Deferred, Stateful},
    stats::{stats_file, UserStats},
    wire::{Duid, Message},
};

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
}

/// One served interface as it stands now.
struct Served {
    cfg: IfaceConfig,
    link: Option<LinkState>,
    svc: Option<IfaceService>,
    /// The map entry last written, to skip rewrites that change nothing.
    written: Option<Vec<u8>>,
}

struct Server {
    opts: Options,
    dp: Dataplane,
    nl: Netlink,
    sock: Arc<ServerSocket>,
    stateful: Option<Stateful>,
    undo_rx: Option<mpsc::UnboundedReceiver<Undo>>,
    ifaces: Vec<Served>,
    by_index: HashMap<u32, usize>,
    generation: u32,
    stats: Arc<UserStats>,
    relay: Option<RelaySettings>,
    /// Relay-agent state as of the last sync (indexes and link addresses).
    agent: Option<RelayAgentConfig>,
    /// Downstream interfaces where the program runs to learn client MACs, by ifindex.
    learning: HashMap<String, u32>,
}

pub async fn run(opts: Options) -> Result<()> {
    let cfg = config::load(opts.config.as_deref(), &opts.overrides, &opts.resolv_conf)?;
    std::fs::create_dir_all(&opts.state_dir).with_context(|| format!("creating {}", opts.state_dir.display()))?;
    let dp = Dataplane::load(&opts.pin_dir, opts.bpf_log)?;
    let nl = Netlink::connect()?;
    let sock = Arc::new(ServerSocket::bind()?);
    let (stateful, undo_rx) = match Stateful::open(&opts.lease_db, opts.routes, cfg.links.clone()).await? {
        Some((s, rx)) => (Some(s), Some(rx)),
        None => (None, None),
    };
    let ifaces = cfg.ifaces.into_iter().map(|cfg| Served { cfg, link: None, svc: None, written: None }).collect();
    let mut s = Server {
        opts,
        dp,
        nl,
        sock,
        stateful,
        undo_rx,
        ifaces,
        by_index: HashMap::new(),
        generation: 0,
        stats: Arc::default(),
        relay: cfg.relay,
        agent: None,
        learning: HashMap::new(),
    };
    // Whatever happens from here on, the pins and attachments go with the daemon.
    let result = s.start_and_serve().await;
    let stop = s.dp.shutdown();
    result.and(stop)
}

impl Server {
    async fn start_and_serve(&mut self) -> Result<()> {
        let mut names: Vec<String> = self.ifaces.iter().map(|i| i.cfg.name.clone()).collect();
        if let Some(r) = &self.relay {
            names.push(r.upstream.clone());
            names.extend(r.downstream.iter().cloned());
        }
        for name in names {
            if self.nl.link(&name).await?.is_none() {
                bail!("interface {name} does not exist");
            }
        }
        self.serve().await
    }

    async fn serve(&mut self) -> Result<()> {
        self.sync().await?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut changes = netlink::watch(Duration::from_secs(30));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut sweep = tokio::time::interval(Duration::from_secs(10));
        let mut undo_rx = self.undo_rx.take();
        let names: Vec<&str> = self.ifaces.iter().map(|i| i.cfg.name.as_str()).collect();
        info!(ifaces = ?names, fast_path = self.opts.fast_path, pin_dir = %self.opts.pin_dir.display(), "serving");
        let mut buf = vec![0u8; 65536];
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: stopping"); break; }
                _ = int.recv() => { info!("SIGINT: stopping"); break; }
                _ = hup.recv() => self.reload().await,
                Some(()) = changes.recv() => {
                    if let Err(e) = self.sync().await {
                        warn!(error = %format!("{e:#}"), "re-reading interfaces failed; will retry on the next event");
                    }
                }
                r = self.sock.recv(&mut buf) => match r {
                    Ok(rx) => self.handle(&buf[..rx.len], rx.from, rx.ifindex, rx.dst).await,
                    Err(e) => warn!(error = %e, "receive failed"),
                },
                Some(undo) = async {
                    match undo_rx.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(st) = self.stateful.as_mut() {
                        st.rollback(undo);
                    }
                }
                _ = sweep.tick() => {
                    if let Some(st) = self.stateful.as_mut() {
                        st.expire(&self.stats).await;
                    }
                }
                _ = tick.tick() => {
                    self.dp.flush_log();
                    let _ = self.stats.write(&stats_file(&self.opts.state_dir));
                }
            }
        }
        let _ = self.stats.write(&stats_file(&self.opts.state_dir));
        Ok(())
    }

    /// SIGHUP: a bad file is refused (with file, line and reason) and the old one kept.
    async fn reload(&mut self) {
        match config::load(self.opts.config.as_deref(), &self.opts.overrides, &self.opts.resolv_conf) {
            Ok(cfg) => {
                let known: Vec<String> = self.ifaces.iter().map(|i| i.cfg.name.clone()).collect();
                self.relay = cfg.relay;
                if self.stateful.is_some() || !cfg.links.is_empty() {
                    warn!("pools are read at start; restart dhcpv6d to apply pool changes (leases are kept)");
                }
                for c in cfg.ifaces {
                    match self.ifaces.iter_mut().find(|i| i.cfg.name == c.name) {
                        Some(i) => i.cfg = c,
                        None => self.ifaces.push(Served { cfg: c, link: None, svc: None, written: None }),
                    }
                }
                if known.len() != self.ifaces.len() {
                    info!("new interfaces in the configuration");
                }
                info!("configuration reloaded");
                if let Err(e) = self.sync().await {
                    warn!(error = %format!("{e:#}"), "applying the reloaded configuration failed");
                }
            }
            Err(e) => warn!(error = %e, "configuration refused; keeping the previous one"),
        }
    }

    /// Re-reads every served interface from the kernel and rewrites what changed: attachment,
    /// multicast membership, and the reply data of the fast path.
    async fn sync(&mut self) -> Result<()> {
        self.by_index.clear();
        for idx in 0..self.ifaces.len() {
            let name = self.ifaces[idx].cfg.name.clone();
            let now = self.nl.link(&name).await?;
            let before = self.ifaces[idx].link;
            if let Some(old) = before {
                if now.map(|n| n.ifindex) != Some(old.ifindex) {
                    // Gone or re-created: its old entry and attachment are stale.
                    self.dp.remove_iface(old.ifindex)?;
                    self.dp.detach(&name)?;
                    self.ifaces[idx].written = None;
                }
            }
            let Some(link) = now else {
                if before.is_some() {
                    warn!(iface = %name, "interface disappeared; waiting for it to come back");
                }
                self.ifaces[idx].link = None;
                self.ifaces[idx].svc = None;
                continue;
            };
            if before.map(|b| b.ifindex) != Some(link.ifindex) {
                let mode = self.dp.attach(&name, self.opts.xdp_mode).with_context(|| format!("attaching XDP to {name}"))?;
                info!(iface = %name, ifindex = link.ifindex, ?mode, "XDP attached");
            }
            self.sock.join(link.ifindex)?;
            self.by_index.insert(link.ifindex, idx);
            self.ifaces[idx].link = Some(link);
            self.update_reply_data(idx)?;
        }
        self.sync_relay().await
    }

    /// Relay-agent mode: indexes and link-addresses of the relay's interfaces, ff02::1:2 on
    /// the downstream ones, and where multicast to the servers leaves.
    async fn sync_relay(&mut self) -> Result<()> {
        let Some(r) = self.relay.clone() else {
            self.agent = None;
            return Ok(());
        };
        let Some(up) = self.nl.link(&r.upstream).await? else {
            warn!(iface = %r.upstream, "relay upstream interface missing; not relaying");
            self.agent = None;
            return Ok(());
        };
        let mut downstream = Vec::new();
        for name in &r.downstream {
            let Some(link) = self.nl.link(name).await? else {
                warn!(iface = %name, "relay downstream interface missing");
                continue;
            };
            self.sock.join(link.ifindex)?;
            self.learn_macs(name, &link)?;
            let link_address = link.global.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
            downstream.push(DownstreamIface::new(name.clone(), link.ifindex, link_address));
        }
        if r.servers.is_empty() {
            self.sock.set_multicast_upstream(up.ifindex, UPSTREAM_MULTICAST_HOPS)?;
        }
        let agent = RelayAgentConfig {
            downstream,
            upstream: UpstreamTarget { servers: r.servers.clone(), ifname: r.upstream.clone(), ifindex: up.ifindex },
            rewrite_dns: r.rewrite_dns.clone(),
        };
        if self.agent.as_ref() != Some(&agent) {
            info!(upstream = %r.upstream, downstream = ?r.downstream, "relaying");
        }
        self.agent = Some(agent);
        Ok(())
    }

    /// Runs the program on a relay's downstream interface without answering, so it records
    /// client MACs for the Client Link-Layer Address option (RFC 6939).
    fn learn_macs(&mut self, name: &str, link: &LinkState) -> Result<()> {
        if self.learning.get(name) == Some(&link.ifindex) {
            return Ok(());
        }
        if self.learning.remove(name).is_some() {
            self.dp.detach(name)?;
        }
        self.dp.attach(name, self.opts.xdp_mode).with_context(|| format!("attaching XDP to {name}"))?;
        let data = dhcpv6_common::IfaceReply { flags: dhcpv6_common::IFACE_LEARN_MACS, mac: link.mac, ..Default::default() };
        self.dp.set_iface(link.ifindex, &data)?;
        self.learning.insert(name.to_owned(), link.ifindex);
        Ok(())
    }

    /// A datagram for the relay agent: from a client (or relay) below, or a Relay-Reply from
    /// above. `None` when the relay has nothing to do with this interface.
    fn relay_action(&self, pkt: &[u8], from: SocketAddrV6, ifindex: u32) -> Option<AgentAction> {
        let agent = self.agent.as_ref()?;
        if agent.downstream.iter().any(|d| d.ifindex == ifindex) {
            let mac = self.dp.client_mac(ifindex, *from.ip());
            return Some(agent.from_client(ifindex, from, pkt, mac));
        }
        if agent.upstream.ifindex == ifindex {
            if !agent.accepts_server_source(ifindex, from) {
                return Some(AgentAction::Drop("drop_agent_unexpected_server"));
            }
            return Some(agent.from_server(pkt));
        }
        None
    }

    async fn relay(&self, action: AgentAction) {
        match action {
            AgentAction::Drop(counter) => self.stats.bump(counter),
            AgentAction::Send { to, payload } => {
                for dst in to {
                    match self.sock.send_to(&payload, dst).await {
                        Ok(_) => self.stats.bump("relayed_up"),
                        Err(e) => {
                            warn!(to = %dst, error = %e, "relaying upstream failed");
                            self.stats.bump("send_failed");
                        }
                    }
                }
            }
            AgentAction::SendDown { to, payload, .. } => match self.sock.send_to(&payload, to).await {
                Ok(_) => self.stats.bump("relayed_down"),
                Err(e) => {
                    warn!(%to, error = %e, "relaying downstream failed");
                    self.stats.bump("send_failed");
                }
            },
        }
    }

    fn update_reply_data(&mut self, idx: usize) -> Result<()> {
        let served = &self.ifaces[idx];
        let Some(link) = served.link else { return Ok(()) };
        let mut service = served.cfg.service.clone();
        // As odhcpd: with no DNS server known, announce ourselves (the link-local address).
        if service.dns.is_empty() {
            service.dns.extend(link.link_local);
        }
        let svc = IfaceService { duid: Duid::from_mac(link.mac), options: service.encode()? };
        let name = served.cfg.name.clone();
        let Some(ll) = link.link_local else {
            // No link-local address yet (DAD): the program cannot source replies; userspace will.
            self.dp.remove_iface(link.ifindex)?;
            self.ifaces[idx].svc = Some(svc);
            self.ifaces[idx].written = None;
            return Ok(());
        };
        match build_reply_data(link.mac, ll, &svc, self.opts.fast_path, self.generation.wrapping_add(1)) {
            Ok(data) => {
                let mut key = bytemuck::bytes_of(&data).to_vec();
                key[dhcpv6_common::maps::GENERATION_OFFSET..dhcpv6_common::maps::GENERATION_OFFSET + 4].fill(0);
                if self.ifaces[idx].written.as_ref() != Some(&key) {
                    self.generation = self.generation.wrapping_add(1);
                    self.dp.set_iface(link.ifindex, &data)?;
                    info!(iface = %name, link_local = %ll, generation = self.generation, "fast-path reply data written");
                    self.ifaces[idx].written = Some(key);
                }
            }
            Err(e) => {
                warn!(iface = %name, error = %e, "options do not fit the fast path; userspace answers this interface");
                self.dp.remove_iface(link.ifindex)?;
                self.ifaces[idx].written = None;
            }
        }
        self.ifaces[idx].svc = Some(svc);
        Ok(())
    }

    async fn handle(&mut self, pkt: &[u8], from: SocketAddrV6, ifindex: u32, dst: std::net::Ipv6Addr) {
        let mut from = from;
        if from.scope_id() == 0 && from.ip().is_unicast_link_local() {
            from.set_scope_id(ifindex);
        }
        if let Some(action) = self.relay_action(pkt, from, ifindex) {
            self.stats.bump("received");
            self.relay(action).await;
            return;
        }
        let Some(&idx) = self.by_index.get(&ifindex) else {
            self.stats.bump("ignored_other_iface");
            return;
        };
        self.stats.bump("received");
        let unicast = !dst.is_multicast();
        let outcome = if pkt.first() == Some(&msg::RELAY_FORW) {
            self.stats.bump("relayed");
            match relay::unwrap(pkt) {
                Err(e) => Err(e.counter()),
                Ok(r) => {
                    let sel = r.link_selector();
                    debug!(
                        %from,
                        levels = r.levels.len(),
                        link_address = ?sel.link_address,
                        interface_id = ?sel.interface_id.map(String::from_utf8_lossy),
                        client_mac = %sel.client_mac().map(fmt_mac).unwrap_or_default(),
                        "relayed message"
                    );
                    let to = relay::reply_destination(from);
                    let levels = r.levels.clone();
                    let wrap = move |reply: Vec<u8>| relay::wrap(&levels, &reply).map_err(|e| e.counter());
                    self.answer(&r.message(), idx, &from, Some(&sel), unicast).and_then(|a| a.map_reply(wrap, to))
                }
            }
        } else {
            Message::parse(pkt)
                .map_err(|_| "drop_malformed")
                .and_then(|m| self.answer(&m, idx, &from, None, unicast))
                .and_then(|a| a.map_reply(Ok, from))
        };
        match outcome {
            Err(counter) => self.stats.bump(counter),
            Ok(Sendable::Now(reply, to)) => match self.sock.send_to(&reply, to).await {
                Ok(_) => self.stats.bump("replied"),
                Err(e) => {
                    warn!(%to, error = %e, "send failed");
                    self.stats.bump("send_failed");
                }
            },
            Ok(Sendable::Later(d)) => {
                if let Some(st) = self.stateful.as_ref() {
                    let d = Deferred { route_ifindex: ifindex, ..d };
                    st.finish(d, self.sock.clone(), self.stats.clone());
                }
            }
        }
    }

    /// The answer to a client message that arrived on (or was relayed to us through) served
    /// interface `idx`; `Err` names the counter of the reason there is none.
    fn answer(
        &mut self,
        m: &Message<'_>,
        idx: usize,
        from: &SocketAddrV6,
        relayed: Option<&relay::LinkSelector<'_>>,
        unicast: bool,
    ) -> Result<Answer, &'static str> {
        let svc = self.ifaces[idx].svc.as_ref().ok_or("ignored_iface_not_ready")?;
        match m.msg_type() {
            msg::INFORMATION_REQUEST => information_request(m, svc).map(Answer::Now).map_err(|d| {
                debug!(%from, reason = %d, "Information-Request discarded");
                d.counter()
            }),
            msg::SOLICIT | msg::REQUEST | msg::CONFIRM | msg::RENEW | msg::REBIND | msg::RELEASE | msg::DECLINE => {
                let Some(st) = self.stateful.as_mut() else {
                    debug!(%from, msg_type = m.msg_type(), "no stateful service configured");
                    return Err("drop_no_stateful_service");
                };
                let link = st.link_for(&self.ifaces[idx].cfg.name, relayed);
                let (duid, options) = (svc.duid.clone(), svc.options.clone());
                let out = st.decide(m, link, &duid, relayed, unicast, *from.ip(), &options);
                if let Some(c) = out.discard {
                    debug!(%from, msg_type = m.msg_type(), reason = c, "stateful message discarded");
                    return Err(c);
                }
                if out.ops.is_empty() {
                    return out.reply.map(Answer::Now).ok_or("drop_no_reply");
                }
                let ticket = st.commit(out.ops);
                Ok(Answer::Later { reply: out.reply, ticket, undo: out.undo, routes: out.routes })
            }
            t => {
                debug!(%from, msg_type = t, "message type not served");
                Err("drop_unsupported")
            }
        }
    }
}

/// A decision before it knows where it goes.
enum Answer {
    Now(Vec<u8>),
    /// Stateful: leases to make durable before the reply may go out.
    Later {
        reply: Option<Vec<u8>>,
        ticket: crate::leases::CommitTicket,
        undo: Undo,
        routes: Vec<crate::server::stateful::RouteChange>,
    },
}

/// A decision ready to send (wrapped for relays, addressed).
enum Sendable {
    Now(Vec<u8>, SocketAddrV6),
    Later(Deferred),
}

impl Answer {
    fn map_reply(
        self,
        wrap: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, &'static str>,
        to: SocketAddrV6,
    ) -> Result<Sendable, &'static str> {
        match self {
            Answer::Now(r) => Ok(Sendable::Now(wrap(r)?, to)),
            Answer::Later { reply, ticket, undo, routes } => {
                let reply = match reply {
                    Some(r) => Some((wrap(r)?, to)),
                    None => None,
                };
                Ok(Sendable::Later(Deferred { reply, ticket, undo, routes, route_ifindex: 0 }))
            }
        }
    }
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
