//! Which datagrams on a served interface are looked at at all: the decisions are
//! `server::trust`'s; here they meet the interface's state, and the first untrusted
//! Relay-Forward is logged with the setting that would serve it.

use std::{
    net::{Ipv6Addr, SocketAddrV6},
    sync::atomic::{AtomicBool, Ordering},
};

use tracing::{debug, warn};

use super::interfaces::ServedIface;
use crate::stats::Counter;

/// Once per daemon: a relay nobody trusted is a configuration to fix, not an event per packet.
static UNTRUSTED_RELAY_LOGGED: AtomicBool = AtomicBool::new(false);

/// `Err` names the counter of the reason `pkt`, from `from` to `dst` on served interface
/// `iface`, is dropped unread.
pub(super) fn admit(pkt: &[u8], iface: &ServedIface, from: &SocketAddrV6, dst: Ipv6Addr) -> Result<(), Counter> {
    let verdict = iface.arrival().admit(pkt.first().copied(), from.ip(), &dst);
    match verdict {
        Err(Counter::DropUntrustedRelay) => untrusted_relay(iface.name(), from),
        Err(c) => debug!(%from, %dst, iface = iface.name(), reason = c.as_str(), "datagram not admitted"),
        Ok(()) => {}
    }
    verdict
}

/// Logs the first Relay-Forward refused for its source, naming what to configure.
pub(super) fn untrusted_relay(iface: &str, from: &SocketAddrV6) {
    if !UNTRUSTED_RELAY_LOGGED.swap(true, Ordering::Relaxed) {
        warn!(
            %from,
            iface,
            "Relay-Forward from a relay nobody trusted: dropped, and so will be the next ones (logged once, \
             counted in drop_untrusted_relay / drop_agent_untrusted_relay). To serve it, give --trusted-relay {} \
             or list it in trusted_relays (docs/config.md)",
            from.ip()
        );
    } else {
        debug!(%from, iface, "Relay-Forward from an untrusted relay dropped");
    }
}
