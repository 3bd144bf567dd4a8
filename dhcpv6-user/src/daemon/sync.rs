//! Interfaces as the kernel has them, into the XDP maps and the socket's memberships.

use anyhow::{Context, Result};
use tracing::{info, warn};

use super::Server;
use crate::{
    fastpath::build_reply_data,
    netlink::LinkState,
    server::{
        relay_agent::{DownstreamIface, RelayAgentConfig, UpstreamTarget, UPSTREAM_MULTICAST_HOPS},
        IfaceService,
    },
    wire::Duid,
};

impl Server {
    /// Re-reads every served interface from the kernel and rewrites what changed: attachment,
    /// multicast membership, and the reply data of the fast path.
    pub(super) async fn sync(&mut self) -> Result<()> {
        self.by_index.clear();
        for idx in 0..self.ifaces.len() {
            let name = self.ifaces[idx].cfg.name().to_owned();
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
            self.sock.join(link.ifindex)?;
            self.by_index.insert(link.ifindex, idx);
            self.ifaces[idx].link = Some(link);
            // Reply data first: a program swapped in over fresh maps (changed layout) must
            // find it there from its first frame.
            self.update_reply_data(idx)?;
            if before.map(|b| b.ifindex) != Some(link.ifindex) {
                let mode =
                    self.dp.attach(&name, self.opts.xdp_mode).with_context(|| format!("attaching XDP to {name}"))?;
                info!(iface = %name, ifindex = link.ifindex, ?mode, "XDP attached");
            }
        }
        self.sync_relay().await
    }

    /// Once, after the first sync: what a previous daemon attached or wrote for interfaces
    /// this one does not serve goes.
    pub(super) fn remove_stale(&mut self) -> Result<()> {
        let served: std::collections::HashSet<u32> =
            self.by_index.keys().chain(self.learning.values()).copied().collect();
        for name in self.dp.remove_stale(&served)? {
            info!(iface = %name, "no longer served: XDP detached");
        }
        Ok(())
    }

    pub(super) fn update_reply_data(&mut self, idx: usize) -> Result<()> {
        let served = &self.ifaces[idx];
        let Some(link) = served.link else {
            return Ok(());
        };
        let mut service = served.cfg.service().clone();
        // As odhcpd: with no DNS server known, announce ourselves (the link-local address).
        if service.dns.is_empty() {
            service.dns.extend(link.link_local);
        }
        let options = service.encode().with_context(|| format!("{}: configured options", served.cfg.name()))?;
        let svc = IfaceService { duid: Duid::from_mac(link.mac), options };
        let name = served.cfg.name().to_owned();
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

    /// Relay-agent mode: indexes and link-addresses of the relay's interfaces, ff02::1:2 on
    /// the downstream ones, and where multicast to the servers leaves.
    async fn sync_relay(&mut self) -> Result<()> {
        let Some(r) = self.relay.clone() else {
            self.agent = None;
            return Ok(());
        };
        let Some(up) = self.nl.link(r.upstream()).await? else {
            warn!(iface = %r.upstream(), "relay upstream interface missing; not relaying");
            self.agent = None;
            return Ok(());
        };
        let mut downstream = Vec::new();
        for name in r.downstream() {
            let Some(link) = self.nl.link(name).await? else {
                warn!(iface = %name, "relay downstream interface missing");
                continue;
            };
            self.sock.join(link.ifindex)?;
            self.learn_macs(name, &link)?;
            let link_address = link.global.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
            let on_link = link.global_prefix.into_iter().collect();
            downstream
                .push(DownstreamIface { on_link, ..DownstreamIface::new(name.clone(), link.ifindex, link_address) });
        }
        if r.servers().is_empty() {
            self.sock.set_multicast_upstream(up.ifindex, UPSTREAM_MULTICAST_HOPS)?;
        }
        let agent = RelayAgentConfig {
            downstream,
            upstream: UpstreamTarget {
                servers: r.servers().to_vec(),
                ifname: r.upstream().to_owned(),
                ifindex: up.ifindex,
            },
            rewrite_dns: r.rewrite_dns().map(<[_]>::to_vec),
            trusted_relays: r.trusted_relays().clone(),
        };
        if self.agent.as_ref() != Some(&agent) {
            info!(upstream = %r.upstream(), downstream = ?r.downstream(), "relaying");
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
        let data =
            dhcpv6_common::IfaceReply { flags: dhcpv6_common::IFACE_LEARN_MACS, mac: link.mac, ..Default::default() };
        self.dp.set_iface(link.ifindex, &data)?;
        self.dp.attach(name, self.opts.xdp_mode).with_context(|| format!("attaching XDP to {name}"))?;
        self.learning.insert(name.to_owned(), link.ifindex);
        Ok(())
    }
}
