//! One datagram on UDP/547: parse, unwrap relays, decide (stateless or stateful), send now or
//! once its leases are durable.

use crate::stats::Counter;
use std::net::SocketAddrV6;

use dhcpv6_common::wire::msg;
use tracing::{debug, warn};

use super::Server;
use crate::{
    server::{information_request, relay, stateful::Undo},
    stateful_service::Deferred,
    wire::Message,
};

impl Server {
    pub(super) async fn handle(&mut self, pkt: &[u8], from: SocketAddrV6, ifindex: u32, dst: std::net::Ipv6Addr) {
        let mut from = from;
        if from.scope_id() == 0 && from.ip().is_unicast_link_local() {
            from.set_scope_id(ifindex);
        }
        if let Some(action) = self.relay_action(pkt, from, ifindex) {
            self.stats.bump(Counter::Received);
            self.relay(action).await;
            return;
        }
        let Some(&idx) = self.by_index.get(&ifindex) else {
            self.stats.bump(Counter::IgnoredOtherIface);
            return;
        };
        self.stats.bump(Counter::Received);
        if let Err(c) = self.admit(pkt, idx, &from, dst) {
            self.stats.bump(c);
            return;
        }
        let unicast = !dst.is_multicast();
        let outcome = if pkt.first() == Some(&msg::RELAY_FORW) {
            self.stats.bump(Counter::Relayed);
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
                .map_err(|_| Counter::DropMalformed)
                .and_then(|m| self.answer(&m, idx, &from, None, unicast))
                .and_then(|a| a.map_reply(Ok, from))
        };
        match outcome {
            Err(counter) => self.stats.bump(counter),
            Ok(Sendable::Now(reply, to)) => match self.sock.send_to(&reply, to).await {
                Ok(_) => self.stats.bump(Counter::Replied),
                Err(e) => {
                    warn!(%to, error = %e, "send failed");
                    self.stats.bump(Counter::SendFailed);
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
    ) -> Result<Answer, Counter> {
        let svc = self.ifaces[idx].svc.as_ref().ok_or(Counter::IgnoredIfaceNotReady)?;
        match m.msg_type() {
            msg::INFORMATION_REQUEST => information_request(m, svc).map(Answer::Now).map_err(|d| {
                debug!(%from, reason = %d, "Information-Request discarded");
                d.counter()
            }),
            msg::SOLICIT | msg::REQUEST | msg::CONFIRM | msg::RENEW | msg::REBIND | msg::RELEASE | msg::DECLINE => {
                let Some(st) = self.stateful.as_mut() else {
                    debug!(%from, msg_type = m.msg_type(), "no stateful service configured");
                    return Err(Counter::DropNoStatefulService);
                };
                let arrival = self.ifaces[idx].cfg.name();
                let link = st.link_for(arrival, relayed);
                let (duid, options) = (svc.duid.clone(), svc.options.clone());
                let out = st.decide(m, link, &duid, relayed, unicast, *from.ip(), arrival, options);
                if let Some(c) = out.discard {
                    debug!(%from, msg_type = m.msg_type(), reason = c.as_str(), "stateful message discarded");
                    return Err(c);
                }
                if out.ops.is_empty() {
                    return out.reply.map(Answer::Now).ok_or(Counter::DropNoReply);
                }
                let ticket = st.commit(out.ops);
                Ok(Answer::Later { reply: out.reply, ticket, undo: out.undo, routes: out.routes })
            }
            t => {
                debug!(%from, msg_type = t, "message type not served");
                Err(Counter::DropUnsupported)
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
        wrap: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, Counter>,
        to: SocketAddrV6,
    ) -> Result<Sendable, Counter> {
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
