//! One datagram on UDP/547, in the worker that received it: parse, unwrap relays, and hand
//! the message to the stateless answer or to the stateful service, with the way back
//! (address, relay levels) it needs. The relay agent's datagrams go to the server loop.

use std::net::SocketAddrV6;

use dhcpv6_common::wire::msg;
use tracing::debug;

use super::interfaces::ServedIface;
use super::pending::Claim;
use super::queue::Queued;
use super::stateful::ReplyTo;
use super::table::Table;
use super::transmit::send_reply;
use super::worker::Handler;
use crate::{
    server::{information_request_with, relay, stateful::ClientContext},
    stats::{Counter, MessageOutcome},
    wire::Message,
};

impl Handler {
    pub(super) async fn handle(
        &self,
        table: &Table,
        pkt: &[u8],
        from: SocketAddrV6,
        ifindex: u32,
        dst: std::net::Ipv6Addr,
        claim: Option<Claim>,
    ) {
        let stats = &*self.shared.stats;
        let mut from = from;
        if from.scope_id() == 0 && from.ip().is_unicast_link_local() {
            from.set_scope_id(ifindex);
        }
        if table.agent.contains(&ifindex) {
            let d = Queued { data: pkt.into(), from, ifindex, dst, at: std::time::Instant::now(), claim: None };
            if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = self.shared.agent.try_send(d) {
                stats.bump(Counter::ShedRelayAgentBusy);
            }
            return;
        }
        // A leasequery comes unicast from a requestor anywhere (a BNG, a relay): not a client
        // message, so neither the on-link nor the multicast rule applies; `leasequery_from`
        // decides who is answered.
        if pkt.first() == Some(&msg::LEASEQUERY) {
            stats.bump(Counter::Received);
            self.shared.lq.udp(pkt, from, (ifindex, dst), &self.sock);
            return;
        }
        let Some(iface) = table.ifaces.get(&ifindex) else {
            stats.bump(Counter::IgnoredOtherIface);
            return;
        };
        stats.bump(Counter::Received);
        if let Err(c) = super::trust::admit(pkt, iface, &from, dst) {
            stats.bump(c);
            return;
        }
        // Relayed: the client's message inside, once unwrapped.
        let mut msg_type = pkt.first().copied().unwrap_or(0);
        let unicast = !dst.is_multicast();
        let result = if pkt.first() == Some(&msg::RELAY_FORW) {
            stats.bump(Counter::Relayed);
            match relay::unwrap(pkt) {
                Err(e) => Err(e.counter()),
                Ok(r) => {
                    msg_type = r.message().msg_type();
                    let sel = r.link_selector();
                    debug!(
                        %from,
                        levels = r.levels.len(),
                        link_address = ?sel.link_address,
                        interface_id = ?sel.interface_id.map(String::from_utf8_lossy),
                        client_mac = %sel.client_mac().map(fmt_mac).unwrap_or_default(),
                        "relayed message"
                    );
                    let to = ReplyTo { addr: relay::reply_destination(from), ifindex };
                    let arrival = Arrival { iface, from, relayed: Some(&sel), unicast, to };
                    let wrap = |reply: Vec<u8>| relay::wrap(&r.levels, &reply).map_err(|e| e.counter());
                    self.answer(&r.message(), &arrival, wrap, claim).await
                }
            }
        } else {
            match Message::parse(pkt) {
                Err(_) => Err(Counter::DropMalformed),
                Ok(m) => {
                    let arrival = Arrival { iface, from, relayed: None, unicast, to: ReplyTo { addr: from, ifindex } };
                    self.answer(&m, &arrival, Ok, claim).await
                }
            }
        };
        if let Err(counter) = result {
            stats.bump(counter);
            stats.message(msg_type, MessageOutcome::Dropped);
        }
    }

    /// Answers a client message; `Err` names the counter of the reason nothing is sent (the
    /// caller counts it, and the message as dropped). What is sent is counted by type here
    /// or, for a stateful message, by the stateful service, which keeps `claim` until the
    /// message's outcome is known.
    async fn answer(
        &self,
        m: &Message<'_>,
        arrival: &Arrival<'_>,
        wrap: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, Counter>,
        claim: Option<Claim>,
    ) -> Result<(), Counter> {
        let Arrival { iface, ref from, relayed, unicast, to } = *arrival;
        let svc = iface.service().ok_or(Counter::IgnoredIfaceNotReady)?;
        let stats = &*self.shared.stats;
        match m.msg_type() {
            msg::INFORMATION_REQUEST => {
                // A relayed client on a `[[link]]` with options of its own gets those.
                let own = relayed.and_then(|sel| self.shared.stateful.as_ref()?.link_service(iface.name(), Some(sel)));
                let (options, classes) = match own.as_deref() {
                    Some(l) => (&l.options[..], &l.ignore_user_classes[..]),
                    None => (&svc.options[..], &svc.ignore_user_classes[..]),
                };
                let reply = information_request_with(m, &svc.duid, options, classes).map_err(|d| {
                    debug!(%from, reason = %d, "Information-Request discarded");
                    d.counter()
                })?;
                let sent = send_reply(&*self.sock, stats, &wrap(reply)?, to.addr).await;
                stats.message(msg::INFORMATION_REQUEST, sent);
                Ok(())
            }
            msg::SOLICIT | msg::REQUEST | msg::CONFIRM | msg::RENEW | msg::REBIND | msg::RELEASE | msg::DECLINE => {
                let Some(st) = self.shared.stateful.as_ref() else {
                    debug!(%from, msg_type = m.msg_type(), "no stateful service configured");
                    return Err(Counter::DropNoStatefulService);
                };
                let ctx = ClientContext {
                    server_duid: &svc.duid,
                    relay: relayed.copied(),
                    // The relay-to-server hop is unicast by design.
                    unicast: unicast && relayed.is_none(),
                    peer: *from.ip(),
                    arrival: iface.name(),
                    options: &svc.options,
                    ignore_user_classes: &svc.ignore_user_classes,
                };
                st.serve_on(&self.sock, m, &ctx, to, wrap, claim).await
            }
            t => {
                debug!(%from, msg_type = t, "message type not served");
                Err(Counter::DropUnsupported)
            }
        }
    }
}

/// How a client message reached us, and where its reply goes.
struct Arrival<'a> {
    /// The served interface it arrived on (directly or relayed).
    iface: &'a ServedIface,
    from: SocketAddrV6,
    relayed: Option<&'a relay::LinkSelector<'a>>,
    /// Sent to one of our unicast addresses.
    unicast: bool,
    to: ReplyTo,
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
