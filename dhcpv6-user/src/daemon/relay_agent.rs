//! Relay-agent mode: datagrams from clients below and servers above, relayed on.
//!
//! The agent owns the relay settings, the relay's interfaces as of the last sync (indexes
//! and link-addresses) and the downstream interfaces where the program runs only to learn
//! client MACs. What to do with a datagram is decided by `server::relay_agent` in proto;
//! this component feeds it the kernel's view and sends what it decides.

use std::{
    collections::HashMap,
    net::{Ipv6Addr, SocketAddrV6},
};

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

/// Where the client MACs the program learned are looked up: the dataplane's map, or a
/// test's table.
pub trait ClientMacs {
    fn client_mac(&self, ifindex: u32, addr: Ipv6Addr) -> Option<[u8; 6]>;
}

impl ClientMacs for Dataplane {
    fn client_mac(&self, ifindex: u32, addr: Ipv6Addr) -> Option<[u8; 6]> {
        Dataplane::client_mac(self, ifindex, addr)
    }
}

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

    /// The upstream interface, when relaying is configured (for `ctl status`).
    pub fn upstream(&self) -> Option<&str> {
        self.relay.as_ref().map(|r| r.upstream())
    }

    /// The interfaces the settings name, upstream first.
    pub fn names(&self) -> Vec<String> {
        let Some(r) = &self.relay else { return Vec::new() };
        std::iter::once(r.upstream().to_owned()).chain(r.downstream().iter().cloned()).collect()
    }

    /// The ifindexes `classify` takes datagrams from (downstream and upstream), as of the
    /// last sync.
    pub fn ifindexes(&self) -> std::collections::HashSet<u32> {
        let Some(a) = &self.agent else { return Default::default() };
        a.downstream.iter().map(|d| d.ifindex).chain(std::iter::once(a.upstream.ifindex)).collect()
    }

    /// The ifindexes where the program learns client MACs.
    pub fn learning_indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.learning.values().copied()
    }

    /// A datagram for the relay agent: from a client (or relay) below, or a Relay-Reply from
    /// above. `None` when the relay has nothing to do with this interface.
    pub fn classify(
        &self,
        pkt: &[u8],
        from: SocketAddrV6,
        ifindex: u32,
        macs: &impl ClientMacs,
    ) -> Option<AgentAction> {
        let agent = self.agent.as_ref()?;
        if let Some(d) = agent.downstream.iter().find(|d| d.ifindex == ifindex) {
            let mac = macs.client_mac(ifindex, *from.ip());
            let action = agent.from_client(ifindex, from, pkt, mac);
            if action == AgentAction::Drop(Counter::DropAgentUntrustedRelay) {
                super::trust::untrusted_relay(&d.name, &from);
            }
            return Some(action);
        }
        if agent.upstream.ifindex == ifindex {
            return Some(agent.from_upstream(ifindex, from, pkt));
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
            // Out of the interface the Interface-ID named, whatever the routing table says.
            AgentAction::SendDown { ifindex, to, payload } => match sock.send_via(&payload, to, ifindex).await {
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
            let link_address = link.global.unwrap_or(Ipv6Addr::UNSPECIFIED);
            let on_link = link.global_prefix.into_iter().collect();
            downstream
                .push(DownstreamIface { on_link, ..DownstreamIface::new(name.clone(), link.ifindex, link_address) });
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use dhcpv6_common::wire::msg;

    use super::*;
    use crate::server::relay;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const SOLICIT: &[u8] = &[msg::SOLICIT, 1, 2, 3, 0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9];
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
    const SERVER: &str = "2001:db8:ff::547";

    /// The program saw `MAC` on a frame from fe80::9 on ifindex 11, and nothing else.
    struct Learned;

    impl ClientMacs for Learned {
        fn client_mac(&self, ifindex: u32, addr: Ipv6Addr) -> Option<[u8; 6]> {
            (ifindex == 11 && addr == ip("fe80::9")).then_some(MAC)
        }
    }

    /// An agent as `sync` leaves it: downstream eth1 (11), upstream wan (2), one server.
    fn synced() -> RelayAgent {
        let mut a = RelayAgent::new(None, AttachMode::Generic);
        a.agent = Some(RelayAgentConfig {
            downstream: vec![DownstreamIface::new("eth1", 11, ip("2001:db8:1::1"))],
            upstream: UpstreamTarget { servers: vec![ip(SERVER)], ifname: "wan".into(), ifindex: 2 },
            rewrite_dns: None,
            trusted_relays: Default::default(),
        });
        a
    }

    fn client() -> SocketAddrV6 {
        SocketAddrV6::new(ip("fe80::9"), 546, 0, 11)
    }

    #[test]
    fn a_client_below_is_relayed_up_with_the_mac_the_program_learned() {
        let Some(AgentAction::Send { to, payload }) = synced().classify(SOLICIT, client(), 11, &Learned) else {
            panic!("expected a Relay-Forward");
        };
        assert_eq!(to, vec![SocketAddrV6::new(ip(SERVER), 547, 0, 0)]);
        let r = relay::unwrap(&payload).unwrap();
        assert_eq!(r.inner, SOLICIT);
        assert_eq!(r.link_selector().client_mac(), Some(MAC));
        // A client the program has not seen is relayed without the option.
        let other = SocketAddrV6::new(ip("fe80::7"), 546, 0, 11);
        let Some(AgentAction::Send { payload, .. }) = synced().classify(SOLICIT, other, 11, &Learned) else {
            panic!("expected a Relay-Forward");
        };
        assert_eq!(relay::unwrap(&payload).unwrap().link_selector().client_mac(), None);
    }

    #[test]
    fn only_the_configured_servers_are_heard_above() {
        let rogue = SocketAddrV6::new(ip("2001:db8:ff::666"), 547, 0, 0);
        assert_eq!(
            synced().classify(&[msg::RELAY_REPL], rogue, 2, &Learned),
            Some(AgentAction::Drop(Counter::DropAgentUnexpectedServer))
        );
        // The configured server's Relay-Reply goes down to the client it names.
        let Some(AgentAction::Send { payload: forward, .. }) = synced().classify(SOLICIT, client(), 11, &Learned)
        else {
            panic!("expected a Relay-Forward");
        };
        let reply = [msg::ADVERTISE, 1, 2, 3];
        let relay_reply = relay::wrap(&relay::unwrap(&forward).unwrap().levels, &reply).unwrap();
        let server = SocketAddrV6::new(ip(SERVER), 547, 0, 0);
        assert_eq!(
            synced().classify(&relay_reply, server, 2, &Learned),
            Some(AgentAction::SendDown {
                ifindex: 11,
                to: SocketAddrV6::new(ip("fe80::9"), 546, 0, 11),
                payload: reply.to_vec()
            })
        );
        assert_eq!(
            synced().classify(&relay_reply, rogue, 2, &Learned),
            Some(AgentAction::Drop(Counter::DropAgentUnexpectedServer))
        );
    }

    #[test]
    fn a_relay_forward_from_below_needs_a_trusted_relay() {
        let mut w = crate::wire::Writer::relay(msg::RELAY_FORW, 0, Ipv6Addr::UNSPECIFIED, ip("fe80::9"));
        w.option(dhcpv6_common::wire::opt::RELAY_MSG, SOLICIT);
        let fwd = w.finish().unwrap();
        assert_eq!(
            synced().classify(&fwd, client(), 11, &Learned),
            Some(AgentAction::Drop(Counter::DropAgentUntrustedRelay))
        );
        let mut trusting = synced();
        if let Some(a) = trusting.agent.as_mut() {
            a.trusted_relays = crate::server::trust::TrustedRelays::new(["fe80::/10".parse().unwrap()]);
        }
        assert!(matches!(trusting.classify(&fwd, client(), 11, &Learned), Some(AgentAction::Send { .. })));
    }

    #[test]
    fn other_interfaces_and_an_agent_not_yet_synced_are_not_the_relays_business() {
        assert_eq!(synced().classify(SOLICIT, SocketAddrV6::new(ip("fe80::9"), 546, 0, 5), 5, &Learned), None);
        assert_eq!(RelayAgent::new(None, AttachMode::Generic).classify(SOLICIT, client(), 11, &Learned), None);
    }

    /// Records what goes out; sends to `fail` fail.
    struct Wire {
        sent: Mutex<Vec<SocketAddrV6>>,
        fail: Option<SocketAddrV6>,
    }

    impl Transmit for Wire {
        async fn send_to(&self, buf: &[u8], to: SocketAddrV6) -> std::io::Result<usize> {
            if self.fail == Some(to) {
                return Err(std::io::Error::from(std::io::ErrorKind::HostUnreachable));
            }
            self.sent.lock().unwrap().push(to);
            Ok(buf.len())
        }
    }

    #[tokio::test]
    async fn forward_sends_every_copy_and_counts_each_outcome() {
        let (a, b) = (SocketAddrV6::new(ip(SERVER), 547, 0, 0), SocketAddrV6::new(ip("fe80::5"), 547, 0, 2));
        let wire = Wire { sent: Mutex::default(), fail: Some(b) };
        let stats = UserStats::default();
        RelayAgent::forward(AgentAction::Send { to: vec![a, b], payload: vec![msg::RELAY_FORW] }, &wire, &stats).await;
        assert_eq!(*wire.sent.lock().unwrap(), vec![a]);
        assert_eq!((stats.get(Counter::RelayedUp), stats.get(Counter::SendFailed)), (1, 1));

        let down = client();
        let action = AgentAction::SendDown { ifindex: 11, to: down, payload: vec![msg::REPLY] };
        RelayAgent::forward(action, &wire, &stats).await;
        assert_eq!(*wire.sent.lock().unwrap(), vec![a, down]);
        assert_eq!(stats.get(Counter::RelayedDown), 1);

        RelayAgent::forward(AgentAction::Drop(Counter::DropAgentMalformed), &wire, &stats).await;
        assert_eq!(wire.sent.lock().unwrap().len(), 2);
        assert_eq!(stats.get(Counter::DropAgentMalformed), 1);
    }
}
