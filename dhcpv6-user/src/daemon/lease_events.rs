//! Where lease events go once their change is durable: one log line each, at info under the
//! target `dhcpv6d::lease` (so `RUST_LOG=info,dhcpv6d::lease=off` silences them and
//! `RUST_LOG=warn,dhcpv6d::lease=info` keeps only them), and the lease script's queue when
//! one is configured. The stateful service calls `emit` after the Reply went out, never
//! before, and only for changes the store confirmed.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing::{field::display, info, warn, Level};

use super::lease_script::ScriptQueue;
use crate::{config::LeaseScript, leases::LeaseKind, server::stateful::LeaseEvent, stats::UserStats};

/// The log target of lease events.
pub const TARGET: &str = "dhcpv6d::lease";

pub struct EventSink {
    stats: Arc<UserStats>,
    script: Mutex<Option<ScriptQueue>>,
}

impl EventSink {
    /// Logging only, until `set_script`.
    pub fn new(stats: Arc<UserStats>) -> Self {
        Self { stats, script: Mutex::new(None) }
    }

    /// Starts, replaces or stops the lease script (start and SIGHUP). A script replaced or
    /// removed still runs what was queued for it.
    pub fn set_script(&self, script: Option<&LeaseScript>) {
        let mut current = self.queue();
        if current.as_ref().map(ScriptQueue::script) == script {
            return;
        }
        *current = match script {
            None => None,
            Some(s) => match ScriptQueue::start(s.clone(), Arc::clone(&self.stats)) {
                Ok(q) => {
                    tracing::info!(script = %s.path.display(), timeout = ?s.timeout, "lease script");
                    Some(q)
                }
                Err(e) => {
                    warn!(script = %s.path.display(), error = %e, "cannot start the lease script's runner; events are only logged");
                    None
                }
            },
        };
    }

    /// Whether anything would take an event: the caller builds none otherwise (the
    /// benchmark's log level and no script: no copy of the relay options per message).
    pub fn wanted(&self) -> bool {
        tracing::enabled!(target: TARGET, Level::INFO) || self.queue().is_some()
    }

    pub fn emit(&self, events: Vec<LeaseEvent>) {
        if events.is_empty() {
            return;
        }
        let queue = self.queue();
        for ev in events {
            log(&ev);
            if let Some(q) = queue.as_ref() {
                q.push(ev);
            }
        }
    }

    fn queue(&self) -> MutexGuard<'_, Option<ScriptQueue>> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The event's log line. Fields that are unknown (no relay) are left out.
fn log(ev: &LeaseEvent) {
    let l = &ev.lease;
    let (preferred, valid) = ev.lifetimes();
    let relay = ev.requester.relay.as_ref();
    let hex_of = |b: Option<&Vec<u8>>| b.map(|b| display(hex(b)));
    let address = (l.kind == LeaseKind::Address).then_some(display(l.addr));
    let prefix = (l.kind == LeaseKind::Prefix).then(|| display(format!("{}/{}", l.addr, l.prefix_len)));
    info!(
        target: TARGET,
        event = %ev.kind.as_str(),
        origin = %ev.origin.as_str(),
        duid = %hex(&l.duid),
        iaid = l.iaid,
        address,
        prefix,
        link = %l.iface,
        preferred_lifetime = preferred,
        valid_lifetime = valid,
        peer = ev.requester.peer.map(display),
        relay_link_address = relay.and_then(|r| r.link_address).map(display),
        interface_id = hex_of(relay.and_then(|r| r.interface_id.as_ref())),
        remote_id = hex_of(relay.and_then(|r| r.remote_id.as_ref())),
        subscriber_id = hex_of(relay.and_then(|r| r.subscriber_id.as_ref())),
        client_mac = relay.and_then(|r| r.client_mac).map(|m| display(mac(&m))),
        "lease {}", ev.kind.as_str()
    );
}

/// Lower-case hex, no separators (as `ctl leases` shows DUIDs).
pub fn hex(b: &[u8]) -> String {
    crate::control_proto::hex(b)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted_under(filter: &str) -> bool {
        let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::sink).finish();
        let sink = EventSink::new(Arc::default());
        tracing::subscriber::with_default(subscriber, || sink.wanted())
    }

    #[test]
    fn events_are_built_only_when_logged_or_scripted() {
        assert!(wanted_under("info"), "the default level logs them");
        assert!(wanted_under("warn,dhcpv6d::lease=info"));
        // The benchmark's filter (xtask/src/bench/peers.rs): not logged, so not built.
        assert!(!wanted_under("warn,dhcpv6::daemon=info"));
        assert!(!wanted_under("info,dhcpv6d::lease=off"));
    }

    #[test]
    fn hex_and_mac_as_operators_read_them() {
        assert_eq!(hex(&[0, 1, 0xab]), "0001ab");
        assert_eq!(mac(&[2, 0, 0, 0xde, 0xad, 1]), "02:00:00:de:ad:01");
    }
}
