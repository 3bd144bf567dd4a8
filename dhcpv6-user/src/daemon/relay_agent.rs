//! Relay-agent mode: datagrams from clients below and servers above, relayed on.
//!
//! The agent owns the relay settings, the relay's interfaces as of the last sync (indexes
//! and link-addresses) and the downstream interfaces where the program runs only to learn
//! client MACs. What to do with a datagram is decided by `server::relay_agent` in proto;
//! this component feeds it the kernel's view and sends what it decides.

use std::{collections::HashMap, net::SocketAddrV6};

use anyhow::{Context, Result};
use tracing::{info, warn};

use super::transmit::Transmit;
use crate::{
    config::RelaySettings,
    dataplane::{AttachMode, Dataplane},
    netlink::{LinkState, Netlink},
    server::relay_agent::{AgentAction, DownstreamIface, RelayAgentConfig, UpstreamTarget, UPSTREAM_MULTICAST_HOPS},
    socket::ServerSocket,
    stats::{Counter, UserStats},
};

pub struct RelayAgent {
    relay: Option<RelaySettings>,
    /// Relay-agent state as of the last sync (indexes and link addresses).
    agent: Option<RelayAgentConfig>,
    /// Downstream interfaces where the program runs to learn client MACs, by ifindex.
    learning: HashMap<String, u32>,
    xdp_mode: AttachMode,
}

impl RelayAgent {
    /// Not relaying until the first `sync` when `relay` is set; inert when it is `None`.
    pub fn new(relay: Option<RelaySettings>, xdp_mode: AttachMode) -> Self {
        Self { relay, agent: None, learning: HashMap::new(), xdp_mode }
    }

    /// New relay settings (SIGHUP); the next `sync` applies them.
    pub fn reconfigure(&mut self, relay: Option<RelaySettings>) {
        self.relay = relay;
    }

    /// The interfaces the settings name, upstream first.
    pub fn names(&self) -> Vec<String> {
        let Some(r) = &self.relay else { return Vec::new() };
        std::iter::once(r.upstream().to_owned()).chain(r.downstream().iter().cloned()).collect()
    }

    /// The ifindexes where the program learns client MACs.
    pub fn learning_indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.learning.values().copied()
    }

    /// A datagram for the relay agent: from a client (or relay) below, or a Relay-Reply from
    /// above. `None` when the relay has nothing to do with this interface.
    pub fn classify(&self, pkt: &[u8], from: SocketAddrV6, ifindex: u32, dp: &Dataplane) -> Option<AgentAction> {
        let agent = self.agent.as_ref()?;
        if agent.downstream.iter().any(|d| d.ifindex == ifindex) {
            let mac = dp.client_mac(ifindex, *from.ip());
            return Some(agent.from_client(ifindex, from, pkt, mac));
        }
        if agent.upstream.ifindex == ifindex {
            if !agent.accepts_server_source(ifindex, from) {
                return Some(AgentAction::Drop(Counter::DropAgentUnexpectedServer));
            }
            return Some(agent.from_server(pkt));
        }
        None
    }

    /// Sends what `classify` decided and counts it.
    pub async fn forward(action: AgentAction, sock: &impl Transmit, stats: &UserStats) {
        match action {
            AgentAction::Drop(counter) => stats.bump(counter),
            AgentAction::Send { to, payload } => {
                for dst in to {
                    match sock.send_to(&payload, dst).await {
                        Ok(_) => stats.bump(Counter::RelayedUp),
                        Err(e) => {
                            warn!(to = %dst, error = %e, "relaying upstream failed");
                            stats.bump(Counter::SendFailed);
                        }
                    }
                }
            }
            AgentAction::SendDown { to, payload, .. } => match sock.send_to(&payload, to).await {
                Ok(_) => stats.bump(Counter::RelayedDown),
                Err(e) => {
                    warn!(%to, error = %e, "relaying downstream failed");
                    stats.bump(Counter::SendFailed);
                }
            },
        }
    }

    /// Indexes and link-addresses of the relay's interfaces, ff02::1:2 on the downstream
    /// ones, and where multicast to the servers leaves.
    pub async fn sync(&mut self, nl: &Netlink, dp: &mut Dataplane, sock: &ServerSocket) -> Result<()> {
        let Some(r) = self.relay.clone() else {
            self.agent = None;
            return Ok(());
        };
        let Some(up) = nl.link(r.upstream()).await? else {
            warn!(iface = %r.upstream(), "relay upstream interface missing; not relaying");
            self.agent = None;
            return Ok(());
        };
        let mut downstream = Vec::new();
        for name in r.downstream() {
            let Some(link) = nl.link(name).await? else {
                warn!(iface = %name, "relay downstream interface missing");
                continue;
            };
            sock.join(link.ifindex)?;
            self.learn_macs(name, &link, dp)?;
            let link_address = link.global.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
            downstream.push(DownstreamIface::new(name.clone(), link.ifindex, link_address));
        }
        if r.servers().is_empty() {
            sock.set_multicast_upstream(up.ifindex, UPSTREAM_MULTICAST_HOPS)?;
        }
        let agent = RelayAgentConfig {
            downstream,
            upstream: UpstreamTarget {
                servers: r.servers().to_vec(),
                ifname: r.upstream().to_owned(),
                ifindex: up.ifindex,
            },
            rewrite_dns: r.rewrite_dns().map(<[_]>::to_vec),
        };
        if self.agent.as_ref() != Some(&agent) {
            info!(upstream = %r.upstream(), downstream = ?r.downstream(), "relaying");
        }
        self.agent = Some(agent);
        Ok(())
    }

    /// Runs the program on a relay's downstream interface without answering, so it records
    /// client MACs for the Client Link-Layer Address option (RFC 6939).
    fn learn_macs(&mut self, name: &str, link: &LinkState, dp: &mut Dataplane) -> Result<()> {
        if self.learning.get(name) == Some(&link.ifindex) {
            return Ok(());
        }
        if self.learning.remove(name).is_some() {
            dp.detach(name)?;
        }
        let data =
            dhcpv6_common::IfaceReply { flags: dhcpv6_common::IFACE_LEARN_MACS, mac: link.mac, ..Default::default() };
        dp.set_iface(link.ifindex, &data)?;
        dp.attach(name, self.xdp_mode).with_context(|| format!("attaching XDP to {name}"))?;
        self.learning.insert(name.to_owned(), link.ifindex);
        Ok(())
    }
}
