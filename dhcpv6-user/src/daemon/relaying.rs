//! Relay-agent mode: datagrams from clients below and servers above, relayed on.

use crate::stats::Counter;
use std::net::SocketAddrV6;

use tracing::warn;

use super::Server;
use crate::server::relay_agent::AgentAction;

impl Server {
    /// A datagram for the relay agent: from a client (or relay) below, or a Relay-Reply from
    /// above. `None` when the relay has nothing to do with this interface.
    pub(super) fn relay_action(&self, pkt: &[u8], from: SocketAddrV6, ifindex: u32) -> Option<AgentAction> {
        let agent = self.agent.as_ref()?;
        if let Some(d) = agent.downstream.iter().find(|d| d.ifindex == ifindex) {
            let mac = self.dp.client_mac(ifindex, *from.ip());
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

    pub(super) async fn relay(&self, action: AgentAction) {
        match action {
            AgentAction::Drop(counter) => self.stats.bump(counter),
            AgentAction::Send { to, payload } => {
                for dst in to {
                    match self.sock.send_to(&payload, dst).await {
                        Ok(_) => self.stats.bump(Counter::RelayedUp),
                        Err(e) => {
                            warn!(to = %dst, error = %e, "relaying upstream failed");
                            self.stats.bump(Counter::SendFailed);
                        }
                    }
                }
            }
            // Out of the interface the Interface-ID named, whatever the routing table says.
            AgentAction::SendDown { ifindex, to, payload } => match self.sock.send_via(&payload, to, ifindex).await {
                Ok(_) => self.stats.bump(Counter::RelayedDown),
                Err(e) => {
                    warn!(%to, error = %e, "relaying downstream failed");
                    self.stats.bump(Counter::SendFailed);
                }
            },
        }
    }
}
