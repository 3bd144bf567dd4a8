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

    /// What the log got, shared with the subscriber's writer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(events: Vec<LeaseEvent>) -> String {
        let out = Captured::default();
        let w = out.clone();
        let subscriber =
            tracing_subscriber::fmt().with_env_filter("info").with_ansi(false).with_writer(move || w.clone()).finish();
        tracing::subscriber::with_default(subscriber, || EventSink::new(Arc::default()).emit(events));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }

    fn lease(kind: LeaseKind, addr: &str, len: u8) -> crate::leases::Lease {
        crate::leases::Lease {
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 7],
            iaid: 9,
            kind,
            addr: addr.parse().unwrap(),
            prefix_len: len,
            iface: "eth1".into(),
            valid_until: 1_000 + 7200,
            preferred_until: 1_000 + 3600,
            state: crate::leases::LeaseState::Bound,
            next_hop: None,
            last_transaction: 0,
            relay: None,
        }
    }

    #[test]
    fn one_line_per_event_under_its_target_with_the_relay_identities_when_relayed() {
        use crate::server::stateful::{EventKind, Origin, RelayIds, Requester};
        let relayed = LeaseEvent {
            kind: EventKind::Grant,
            origin: Origin::Client,
            lease: lease(LeaseKind::Address, "2001:db8:1::100", 128),
            at: 1_000,
            requester: Requester {
                peer: Some("2001:db8:1::2".parse().unwrap()),
                relay: Some(RelayIds {
                    link_address: Some("2001:db8:1::1".parse().unwrap()),
                    interface_id: Some(b"p7".to_vec()),
                    remote_id: Some(vec![0, 0, 0, 9, 0xab]),
                    subscriber_id: None,
                    client_mac: Some([2, 0, 0, 0, 0, 0x42]),
                }),
            },
        };
        let expired = LeaseEvent::ended(lease(LeaseKind::Prefix, "2001:db8:100::", 56), 9_000);
        let text = logged(vec![relayed, expired]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for want in ["INFO dhcpv6d::lease: lease grant event=grant origin=client duid=00030001020000000007 iaid=9 \
             address=2001:db8:1::100 link=eth1 preferred_lifetime=3600 valid_lifetime=7200 peer=2001:db8:1::2 \
             relay_link_address=2001:db8:1::1 interface_id=7037 remote_id=00000009ab client_mac=02:00:00:00:00:42"]
        {
            assert!(lines[0].ends_with(want), "{}\n{want}", lines[0]);
        }
        assert!(
            !lines[0].contains("subscriber_id") && !lines[0].contains("prefix="),
            "unknown: left out: {}",
            lines[0]
        );
        assert!(
            lines[1].ends_with(
                "lease expire event=expire origin=server duid=00030001020000000007 iaid=9 \
                 prefix=2001:db8:100::/56 link=eth1 preferred_lifetime=0 valid_lifetime=0"
            ),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn hex_and_mac_as_operators_read_them() {
        assert_eq!(hex(&[0, 1, 0xab]), "0001ab");
        assert_eq!(mac(&[2, 0, 0, 0xde, 0xad, 1]), "02:00:00:de:ad:01");
    }
}
