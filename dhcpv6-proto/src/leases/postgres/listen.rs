//! What other daemons sharing the database change, as they commit: a session of its own
//! that LISTENs on `dhcpv6_leases` (the trigger of schema version 2 sends one line per
//! changed row) and turns each line into a [`ForeignChange`]. Our own changes (the
//! `written_by` name is ours) are skipped: the engine made them.
//!
//! Notifications are not queued for a session that is gone, so once LISTEN is on (at
//! the start, and after each reconnection) the whole table is read again and every binding another daemon wrote is passed on as
//! an upsert. Deletions missed meanwhile are not: the engine then keeps a binding that
//! ended a little early until it expires, which blocks an address but never gives one
//! out twice.

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_postgres::{AsyncMessage, Config, NoTls};
use tracing::{debug, info, warn};

use super::rows::decode_rows_by;
use super::{message, pg_error, Location, StoreError};
use crate::leases::{ForeignChange, Lease, LeaseKey, LeaseKind, LeaseState, NextHop, RelayRecord};

/// The channel the trigger notifies.
const CHANNEL: &str = "dhcpv6_leases";

/// Feeds `out` until it is closed (the subscriber went away) or the runtime stops.
pub(super) async fn run(
    config: Arc<Config>,
    location: Arc<Location>,
    writer: String,
    out: UnboundedSender<ForeignChange>,
    retry: (Duration, Duration),
) {
    // Whether a session was up before: the next one reads the table again and says so.
    let mut was_up = false;
    let mut delay = retry.0;
    while !out.is_closed() {
        let mut up = false;
        match session(&config, &location, &writer, &out, was_up, &mut up).await {
            Ok(()) => return,
            Err(e) if up => {
                warn!(store = %location, error = %e, "lease change feed lost; reconnecting");
                delay = retry.0;
            }
            Err(e) => debug!(store = %location, error = %e, retry_in = ?delay, "lease change feed still down"),
        }
        was_up |= up;
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(retry.1);
    }
}

/// One LISTEN session; `up` once LISTEN is on. `Ok` only when the subscriber went away.
async fn session(
    config: &Config,
    location: &Location,
    writer: &str,
    out: &UnboundedSender<ForeignChange>,
    again: bool,
    up: &mut bool,
) -> Result<(), StoreError> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(pg_error(location, "listen"))?;
    // The connection's messages are read here, not by a spawned task, because the
    // notifications arrive among them.
    let (note_tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if note_tx.send(n.payload().to_owned()).is_err() {
                        return String::from("subscriber gone");
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return message(&e),
                None => return String::from("connection closed"),
            }
        }
    });
    let _abort = AbortOnDrop(pump.abort_handle());
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(pg_error(location, "listen"))?;
    *up = true;
    {
        // What changed before LISTEN took effect (since the daemon loaded its leases, or
        // while the session was down), as it stands now.
        let rows = client
            .query(&format!("SELECT {}, written_by FROM leases", super::rows::COLUMNS), &[])
            .await
            .map_err(pg_error(location, "listen"))?;
        let mut n = 0;
        for lease in decode_rows_by(&rows, location, writer) {
            n += 1;
            if out.send(ForeignChange::Upsert(lease)).is_err() {
                return Ok(());
            }
        }
        if again {
            info!(store = %location, leases = n, "lease change feed back; bindings of other servers read again");
        }
    }
    loop {
        tokio::select! {
            note = notes.recv() => match note {
                Some(payload) => match parse(&payload, writer) {
                    Ok(Some(change)) => {
                        if out.send(change).is_err() {
                            return Ok(());
                        }
                    }
                    Ok(None) => {}
                    Err(reason) => warn!(store = %location, %payload, %reason, "ignoring a lease change notification"),
                },
                None => break,
            },
            () = out.closed() => return Ok(()),
        }
    }
    Err(StoreError::Postgres {
        store: location.clone(),
        action: "listen",
        message: String::from("the change feed's connection ended"),
    })
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One notification line (see the triggers in `schema.rs`); `None` for our own changes. `R`
/// (schema v3) is `U` with the transaction time and the relay record before the interface.
pub(super) fn parse(payload: &str, me: &str) -> Result<Option<ForeignChange>, String> {
    let fields = if payload.starts_with("R ") { 22 } else { 13 };
    let mut f = payload.splitn(fields, ' ');
    let mut next = |name: &str| f.next().ok_or_else(|| format!("no {name}"));
    let op = next("op")?;
    let kind = next("kind")?;
    let kind = LeaseKind::parse(kind).ok_or_else(|| format!("unknown kind {kind:?}"))?;
    let addr: Ipv6Addr = next("address")?.parse().map_err(|e| format!("address: {e}"))?;
    let prefix_len: u8 = next("prefix_len")?.parse().map_err(|e| format!("prefix_len: {e}"))?;
    let key = LeaseKey { kind, addr, prefix_len };
    match op {
        "D" => {
            let valid_until = number(next("valid_until")?, "valid_until")?;
            let by = next("writer").unwrap_or("");
            Ok((by != me).then_some(ForeignChange::Remove { key, valid_until }))
        }
        "U" | "R" => {
            let duid = hex(next("duid")?)?;
            let iaid: u32 = next("iaid")?.parse().map_err(|e| format!("iaid: {e}"))?;
            let valid_until = number(next("valid_until")?, "valid_until")?;
            let preferred_until = number(next("preferred_until")?, "preferred_until")?;
            let state = next("state")?;
            let state = LeaseState::parse(state).ok_or_else(|| format!("unknown state {state:?}"))?;
            let via = next("next_hop")?;
            let dev = next("next_hop_dev")?;
            let by = next("writer")?;
            let (last_transaction, relay) = match op {
                "R" => {
                    let last = number(next("last_transaction")?, "last_transaction")?;
                    let mut parts = [""; 8];
                    for (i, name) in RELAY_FIELDS.iter().enumerate() {
                        parts[i] = next(name)?;
                    }
                    (last, relay_record(&parts)?)
                }
                _ => (0, None),
            };
            let iface = next("iface")?.to_owned();
            let next_hop = match (via, dev) {
                ("-", "-") => None,
                ("-", _) | (_, "-") => return Err("next_hop and next_hop_dev must be set together".into()),
                (via, dev) => Some(Box::new(NextHop {
                    via: via.parse().map_err(|e| format!("next_hop: {e}"))?,
                    dev: dev.to_owned(),
                })),
            };
            if by == me {
                return Ok(None);
            }
            // A `U` line (a payload too long for pg_notify with the relay record, or written
            // by a daemon of schema v2) carries neither: the engine needs neither to avoid the
            // binding, and leasequery reads the table.
            let lease = Lease {
                duid,
                iaid,
                kind,
                addr,
                prefix_len,
                iface,
                valid_until,
                preferred_until,
                state,
                next_hop,
                last_transaction,
                relay,
            };
            lease.validate().map_err(|e| e.to_string())?;
            Ok(Some(ForeignChange::Upsert(lease)))
        }
        other => Err(format!("unknown op {other:?}")),
    }
}

/// The relay columns of an `R` line, in order: '-' for NULL, identifiers in hex.
const RELAY_FIELDS: [&str; 8] = [
    "relay_link_address",
    "relay_peer_address",
    "relay_source",
    "relay_interface_id",
    "relay_remote_id",
    "relay_subscriber_id",
    "relay_id",
    "relay_client_linklayer",
];

fn relay_record(f: &[&str; 8]) -> Result<Option<Box<RelayRecord>>, String> {
    let addr = |s: &str, name: &str| s.parse::<Ipv6Addr>().map_err(|e| format!("{name}: {e}"));
    let bytes = |s: &str| if s == "-" { Ok(None) } else { hex(s).map(Some) };
    match (f[0], f[1], f[2]) {
        ("-", "-", "-") => Ok(None),
        ("-", _, _) | (_, "-", _) | (_, _, "-") => Err("the relay addresses must be set together".into()),
        (link, peer, source) => Ok(Some(Box::new(RelayRecord {
            link_address: addr(link, RELAY_FIELDS[0])?,
            peer_address: addr(peer, RELAY_FIELDS[1])?,
            source: addr(source, RELAY_FIELDS[2])?,
            interface_id: bytes(f[3])?,
            remote_id: bytes(f[4])?,
            subscriber_id: bytes(f[5])?,
            relay_id: bytes(f[6])?,
            client_linklayer: bytes(f[7])?,
        }))),
    }
}

fn number(s: &str, name: &str) -> Result<u64, String> {
    s.parse().map_err(|e| format!("{name}: {e}"))
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("duid: odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()).ok_or_else(|| "duid: not hex".to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_other_servers_become_changes_and_ours_are_skipped() {
        let line =
            "U pd 2001:db8:100:: 56 000300010200 7 2000000100 2000000050 bound fe80::2 eth1 boxa:12 relay link 1";
        let Ok(Some(ForeignChange::Upsert(l))) = parse(line, "boxb:13") else { panic!("{line}") };
        assert_eq!((l.kind, l.prefix_len, l.iaid, l.valid_until), (LeaseKind::Prefix, 56, 7, 2_000_000_100));
        assert_eq!(l.duid, vec![0, 3, 0, 1, 2, 0]);
        assert_eq!(l.iface, "relay link 1", "the interface is the rest of the line");
        assert_eq!(l.next_hop.as_deref(), Some(&NextHop { via: "fe80::2".parse().unwrap(), dev: "eth1".into() }));
        assert_eq!(parse(line, "boxa:12"), Ok(None));

        let line = "U na 2001:db8::5 128 0a0b 1 10 5 declined - - boxa:12 eth1";
        let Ok(Some(ForeignChange::Upsert(l))) = parse(line, "me") else { panic!("{line}") };
        assert_eq!((l.state, l.next_hop), (LeaseState::Declined, None));

        let Ok(Some(ForeignChange::Remove { key, valid_until })) = parse("D na 2001:db8::5 128 99 boxa:12", "me")
        else {
            panic!()
        };
        assert_eq!((key.addr, valid_until), ("2001:db8::5".parse().unwrap(), 99));
        assert_eq!(parse("D na 2001:db8::5 128 99 me", "me"), Ok(None));
    }

    #[test]
    fn relay_lines_carry_the_transaction_time_and_the_relay_record() {
        let line = "R na 2001:db8::5 128 0a0b 1 10 5 bound - - boxa:12 9 2001:db8:1::1 fe80::7 2001:db8:1::2 \
                    706f7274 00000de96c - 0002 0001020000000007 olt 1";
        let Ok(Some(ForeignChange::Upsert(l))) = parse(line, "me") else { panic!("{line}") };
        assert_eq!((l.last_transaction, l.iface.as_str()), (9, "olt 1"));
        let r = l.relay.as_deref().unwrap();
        assert_eq!(r.link_address, "2001:db8:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!((r.interface_id.as_deref(), r.subscriber_id.as_deref()), (Some(&b"port"[..]), None));
        assert_eq!(r.relay_id.as_deref(), Some(&[0, 2][..]));
        // Empty identifiers are empty fields; a lease on the link has '-' everywhere.
        let line = "R na 2001:db8::5 128 0a0b 1 10 5 bound - - boxa:12 9 :: fe80::7 fe80::2  - - - - eth1";
        let Ok(Some(ForeignChange::Upsert(l))) = parse(line, "me") else { panic!("{line}") };
        assert_eq!(l.relay.unwrap().interface_id, Some(Vec::new()));
        let line = "R na 2001:db8::5 128 0a0b 1 10 5 bound - - boxa:12 9 - - - - - - - - eth1";
        let Ok(Some(ForeignChange::Upsert(l))) = parse(line, "me") else { panic!("{line}") };
        assert_eq!((l.relay, l.iface.as_str()), (None, "eth1"));
        for bad in [
            "R na 2001:db8::5 128 0a0b 1 10 5 bound - - boxa:12 9 - fe80::7 - - - - - - eth1",
            "R na 2001:db8::5 128 0a0b 1 10 5 bound - - boxa:12 x - - - - - - - - eth1",
            "R na 2001:db8::5 128 0a0b 1 10 5 bound - - boxa:12 9 :: ::1 ::2 zz - - - - eth1",
            "R na 2001:db8::5 128 0a0b 1 10 5 bound - - boxa:12 9 - - -",
        ] {
            assert!(parse(bad, "me").is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in [
            "",
            "X na ::1 128",
            "U na ::1 128 zz 1 1 1 bound - - a e",
            "U na ::1 64 0a 1 1 1 bound - - a e",
            "U pd 2001:db8:: 56 0a 1 1 1 bound fe80::1 - a e",
            "U na ::1 128 0a 1 1 2 bound - - a e",
        ] {
            assert!(parse(line, "me").is_err(), "{line:?}");
        }
    }
}
