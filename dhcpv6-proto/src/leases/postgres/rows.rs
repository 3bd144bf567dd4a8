//! Statements and the row codec of the `leases` table.

use std::net::{IpAddr, Ipv6Addr};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row, Statement};
use tracing::warn;

use super::{connect, is_connection_loss, pg_error, ConnectionTask, Location, StoreError};
use crate::leases::{Lease, LeaseFilter, LeaseKey, LeaseKind, LeaseState, NextHop, RelayRecord};

/// Column list matching [`decode_row`].
pub(super) const COLUMNS: &str = "kind, address, prefix_len, duid, iaid, iface, valid_until, preferred_until, state, \
     next_hop, next_hop_dev, last_transaction, relay_link_address, relay_peer_address, relay_source, \
     relay_interface_id, relay_remote_id, relay_subscriber_id, relay_id, relay_client_linklayer";

/// How many columns [`COLUMNS`] names: `written_by` follows them in queries that want it.
const COLUMN_COUNT: usize = 20;

/// The writer's statements, prepared once per connection so that sending one costs no
/// round trip (a pipeline of unprepared statements would wait for each parse).
///
/// Several daemons may share the table, so `upsert` is a claim: it replaces a row only if
/// this daemon wrote it, or it is the same client's IA, or it has expired (by the
/// database's clock, the one all daemons share); otherwise it raises SQLSTATE
/// [`TAKEN`], which aborts the transaction. `remove` likewise leaves a row another daemon
/// wrote alone until it expires: a sweep that did not hear of another box's renewal
/// must not delete it.
#[derive(Debug)]
pub(super) struct Statements {
    pub upsert: Statement,
    pub remove: Statement,
    pub reclaim: Statement,
    /// One row by key: the holder a failed claim ran into.
    pub get: Statement,
}

/// SQLSTATE of a claim that ran into another client's binding (`dhcpv6_lease_taken`).
pub(super) const TAKEN: &str = "DH001";

/// The database's clock in unix seconds.
const DB_NOW: &str = "extract(epoch FROM clock_timestamp())";

impl Statements {
    pub(super) async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Statements {
            upsert: client
                .prepare(&format!(
                    "WITH claimed AS (
                        INSERT INTO leases ({COLUMNS}, written_by)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                                $18, $19, $20, $21)
                        ON CONFLICT (kind, address, prefix_len) DO UPDATE SET
                            duid = EXCLUDED.duid, iaid = EXCLUDED.iaid, iface = EXCLUDED.iface,
                            valid_until = EXCLUDED.valid_until, preferred_until = EXCLUDED.preferred_until,
                            state = EXCLUDED.state, next_hop = EXCLUDED.next_hop,
                            next_hop_dev = EXCLUDED.next_hop_dev, written_by = EXCLUDED.written_by,
                            last_transaction = EXCLUDED.last_transaction,
                            relay_link_address = EXCLUDED.relay_link_address,
                            relay_peer_address = EXCLUDED.relay_peer_address, relay_source = EXCLUDED.relay_source,
                            relay_interface_id = EXCLUDED.relay_interface_id,
                            relay_remote_id = EXCLUDED.relay_remote_id,
                            relay_subscriber_id = EXCLUDED.relay_subscriber_id, relay_id = EXCLUDED.relay_id,
                            relay_client_linklayer = EXCLUDED.relay_client_linklayer,
                            updated_at = now()
                        WHERE leases.written_by = EXCLUDED.written_by
                           OR (leases.duid = EXCLUDED.duid AND leases.iaid = EXCLUDED.iaid)
                           OR leases.valid_until <= {DB_NOW}
                        RETURNING 1)
                     SELECT dhcpv6_lease_taken($1, $2, $3) WHERE NOT EXISTS (SELECT 1 FROM claimed)"
                ))
                .await?,
            remove: client
                .prepare(&format!(
                    "DELETE FROM leases WHERE kind = $1 AND address = $2 AND prefix_len = $3
                        AND (written_by = $4 OR valid_until <= {DB_NOW})"
                ))
                .await?,
            reclaim: client.prepare(&format!("DELETE FROM leases WHERE valid_until <= $1 RETURNING {COLUMNS}")).await?,
            get: client
                .prepare(&format!("SELECT {COLUMNS} FROM leases WHERE kind = $1 AND address = $2 AND prefix_len = $3"))
                .await?,
        })
    }
}

/// One lease as statement parameters (owned where the lease's fields do not fit the
/// column types as they are).
pub(super) struct UpsertArgs<'a> {
    kind: &'static str,
    address: IpAddr,
    prefix_len: i16,
    duid: &'a [u8],
    iaid: i64,
    iface: &'a str,
    valid_until: i64,
    preferred_until: i64,
    state: &'static str,
    next_hop: Option<IpAddr>,
    next_hop_dev: Option<&'a str>,
    last_transaction: i64,
    relay_link_address: Option<IpAddr>,
    relay_peer_address: Option<IpAddr>,
    relay_source: Option<IpAddr>,
    relay_interface_id: Option<&'a [u8]>,
    relay_remote_id: Option<&'a [u8]>,
    relay_subscriber_id: Option<&'a [u8]>,
    relay_id: Option<&'a [u8]>,
    relay_client_linklayer: Option<&'a [u8]>,
    writer: &'a str,
}

impl<'a> UpsertArgs<'a> {
    /// `None` for a lease validation should have refused (a time past i64).
    pub(super) fn new(lease: &'a Lease, writer: &'a str) -> Option<Self> {
        let relay = lease.relay.as_deref();
        let bytes = |f: fn(&RelayRecord) -> &Option<Vec<u8>>| relay.and_then(|r| f(r).as_deref());
        Some(UpsertArgs {
            kind: lease.kind.as_str(),
            address: IpAddr::V6(lease.addr),
            prefix_len: i16::from(lease.prefix_len),
            duid: &lease.duid,
            iaid: i64::from(lease.iaid),
            iface: &lease.iface,
            valid_until: i64::try_from(lease.valid_until).ok()?,
            preferred_until: i64::try_from(lease.preferred_until).ok()?,
            state: lease.state.as_str(),
            next_hop: lease.next_hop.as_ref().map(|h| IpAddr::V6(h.via)),
            next_hop_dev: lease.next_hop.as_ref().map(|h| h.dev.as_str()),
            last_transaction: i64::try_from(lease.last_transaction).ok()?,
            relay_link_address: relay.map(|r| IpAddr::V6(r.link_address)),
            relay_peer_address: relay.map(|r| IpAddr::V6(r.peer_address)),
            relay_source: relay.map(|r| IpAddr::V6(r.source)),
            relay_interface_id: bytes(|r| &r.interface_id),
            relay_remote_id: bytes(|r| &r.remote_id),
            relay_subscriber_id: bytes(|r| &r.subscriber_id),
            relay_id: bytes(|r| &r.relay_id),
            relay_client_linklayer: bytes(|r| &r.client_linklayer),
            writer,
        })
    }

    /// In [`COLUMNS`] order, then the writer.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); COLUMN_COUNT + 1] {
        [
            &self.kind,
            &self.address,
            &self.prefix_len,
            &self.duid,
            &self.iaid,
            &self.iface,
            &self.valid_until,
            &self.preferred_until,
            &self.state,
            &self.next_hop,
            &self.next_hop_dev,
            &self.last_transaction,
            &self.relay_link_address,
            &self.relay_peer_address,
            &self.relay_source,
            &self.relay_interface_id,
            &self.relay_remote_id,
            &self.relay_subscriber_id,
            &self.relay_id,
            &self.relay_client_linklayer,
            &self.writer,
        ]
    }
}

/// A lease key as statement parameters.
pub(super) struct KeyArgs {
    kind: &'static str,
    address: IpAddr,
    prefix_len: i16,
}

impl KeyArgs {
    pub(super) fn new(key: &LeaseKey) -> Self {
        KeyArgs { kind: key.kind.as_str(), address: IpAddr::V6(key.addr), prefix_len: i16::from(key.prefix_len) }
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.kind, &self.address, &self.prefix_len]
    }

    /// The key, then the writer (for `remove`).
    pub(super) fn params_by<'a>(&'a self, writer: &'a String) -> [&'a (dyn ToSql + Sync); 4] {
        [&self.kind, &self.address, &self.prefix_len, writer]
    }
}

/// Every stored lease, over the reader connection (made now if there is none, or the
/// last one was lost).
pub(super) async fn load_all(
    reader: &tokio::sync::Mutex<Option<(Client, ConnectionTask)>>,
    config: &Config,
    location: &Location,
) -> Result<Vec<Lease>, StoreError> {
    let mut slot = reader.lock().await;
    let (client, task) = match slot.take() {
        Some((client, task)) if !client.is_closed() && !task.is_finished() => (client, task),
        _ => connect(config, location).await?,
    };
    let sql = format!("SELECT {COLUMNS} FROM leases ORDER BY kind, address, prefix_len");
    let result = client.query(&sql, &[]).await;
    let lost = result.as_ref().err().is_some_and(|e| is_connection_loss(e, &client));
    if !lost {
        *slot = Some((client, task));
    }
    match result {
        Ok(rows) => Ok(decode_rows(&rows, location)),
        Err(e) => Err(pg_error(location, "load leases")(e)),
    }
}

/// Writes this box's heartbeat and reads which boxes beat within `stale`, on the reader's
/// session (the writer's stays for leases). Rows a day old go: daemons that are gone.
pub(super) async fn heartbeat(
    reader: &tokio::sync::Mutex<Option<(Client, ConnectionTask)>>,
    config: &Config,
    location: &Location,
    me: &str,
    stale: std::time::Duration,
) -> Result<Vec<String>, StoreError> {
    let mut slot = reader.lock().await;
    let (client, task) = match slot.take() {
        Some((client, task)) if !client.is_closed() && !task.is_finished() => (client, task),
        _ => connect(config, location).await?,
    };
    let result = async {
        client
            .execute(
                "INSERT INTO heartbeats (box, beat_at) VALUES ($1, clock_timestamp())
                 ON CONFLICT (box) DO UPDATE SET beat_at = EXCLUDED.beat_at",
                &[&me],
            )
            .await?;
        client.execute("DELETE FROM heartbeats WHERE beat_at < clock_timestamp() - interval '1 day'", &[]).await?;
        client
            .query(
                "SELECT box FROM heartbeats WHERE beat_at >= clock_timestamp() - make_interval(secs => $1) ORDER BY box",
                &[&stale.as_secs_f64()],
            )
            .await
    }
    .await;
    let lost = result.as_ref().err().is_some_and(|e| is_connection_loss(e, &client));
    if !lost {
        *slot = Some((client, task));
    }
    match result {
        Ok(rows) => rows.iter().map(|r| r.try_get::<_, String>(0)).collect::<Result<_, _>>(),
        Err(e) => Err(e),
    }
    .map_err(pg_error(location, "heartbeat"))
}

/// Decodes rows, skipping (and logging) the ones that are not valid leases: the table
/// may have been edited by hand, so nothing here trusts it.
pub(super) fn decode_rows(rows: &[Row], location: &Location) -> Vec<Lease> {
    rows.iter()
        .filter_map(|row| match decode_row(row) {
            Ok(lease) => Some(lease),
            Err(reason) => {
                let binding = row.try_get::<_, IpAddr>(1).ok();
                warn!(store = %location, ?binding, %reason, "skipping corrupt lease row");
                None
            }
        })
        .collect()
}

/// Rows of `SELECT {COLUMNS}, written_by`: the leases another writer than `me` wrote.
pub(super) fn decode_rows_by(rows: &[Row], location: &Location, me: &str) -> Vec<Lease> {
    let theirs: Vec<Row> =
        rows.iter().filter(|r| r.try_get::<_, String>(COLUMN_COUNT).map_or(true, |by| by != me)).cloned().collect();
    decode_rows(&theirs, location)
}

fn decode_row(row: &Row) -> Result<Lease, String> {
    let lease = Lease {
        kind: {
            let s: String = get(row, 0, "kind")?;
            LeaseKind::parse(&s).ok_or_else(|| format!("unknown kind {s:?}"))?
        },
        addr: ipv6(get(row, 1, "address")?, "address")?,
        prefix_len: int(get::<i16>(row, 2, "prefix_len")?, "prefix_len")?,
        duid: get(row, 3, "duid")?,
        iaid: int(get::<i64>(row, 4, "iaid")?, "iaid")?,
        iface: get(row, 5, "iface")?,
        valid_until: int(get::<i64>(row, 6, "valid_until")?, "valid_until")?,
        preferred_until: int(get::<i64>(row, 7, "preferred_until")?, "preferred_until")?,
        state: {
            let s: String = get(row, 8, "state")?;
            LeaseState::parse(&s).ok_or_else(|| format!("unknown state {s:?}"))?
        },
        next_hop: match (get::<Option<IpAddr>>(row, 9, "next_hop")?, get::<Option<String>>(row, 10, "next_hop_dev")?) {
            (None, None) => None,
            (Some(via), Some(dev)) => Some(Box::new(NextHop { via: ipv6(via, "next_hop")?, dev })),
            _ => return Err("next_hop and next_hop_dev must be set together".into()),
        },
        last_transaction: int(get::<i64>(row, 11, "last_transaction")?, "last_transaction")?,
        relay: relay(row)?,
    };
    match lease.problem() {
        None => Ok(lease),
        Some(reason) => Err(reason),
    }
}

/// Columns 12 to 19 (the table's CHECK keeps the three addresses together).
fn relay(row: &Row) -> Result<Option<Box<RelayRecord>>, String> {
    let addr = |idx: usize, name: &str| -> Result<Option<Ipv6Addr>, String> {
        get::<Option<IpAddr>>(row, idx, name)?.map(|a| ipv6(a, name)).transpose()
    };
    RelayRecord::from_columns(12, addr, |idx, name| get(row, idx, name))
}

/// The leases `filter` asks for, over the reader connection, each on an index of schema v3
/// (or the primary key, for addresses and the prefixes containing one).
pub(super) async fn query(
    reader: &tokio::sync::Mutex<Option<(Client, ConnectionTask)>>,
    config: &Config,
    location: &Location,
    filter: &LeaseFilter,
) -> Result<Vec<Lease>, StoreError> {
    let mut slot = reader.lock().await;
    let (client, task) = match slot.take() {
        Some((client, task)) if !client.is_closed() && !task.is_finished() => (client, task),
        _ => connect(config, location).await?,
    };
    let select = |cond: &str| format!("SELECT {COLUMNS} FROM leases WHERE {cond}");
    let result = match filter {
        LeaseFilter::Address(a) => {
            let a = IpAddr::V6(*a);
            client
                .query(
                    &select(
                        "(kind = 'na' AND address = $1) OR (kind = 'pd' AND prefix >>= set_masklen($1::cidr, 128))",
                    ),
                    &[&a],
                )
                .await
        }
        LeaseFilter::Client(duid) => client.query(&select("duid = $1"), &[duid]).await,
        LeaseFilter::RelayId(id) => client.query(&select("relay_id = $1"), &[id]).await,
        LeaseFilter::LinkAddress(a) => client.query(&select("relay_link_address = $1"), &[&IpAddr::V6(*a)]).await,
        LeaseFilter::RemoteId(id) => client.query(&select("relay_remote_id = $1"), &[id]).await,
    };
    let lost = result.as_ref().err().is_some_and(|e| is_connection_loss(e, &client));
    if !lost {
        *slot = Some((client, task));
    }
    match result {
        Ok(rows) => Ok(decode_rows(&rows, location)),
        Err(e) => Err(pg_error(location, "query leases")(e)),
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, idx: usize, name: &str) -> Result<T, String> {
    row.try_get(idx).map_err(|e| format!("{name}: {e}"))
}

fn int<T: TryFrom<i64>>(v: impl Into<i64>, name: &str) -> Result<T, String> {
    let v = v.into();
    T::try_from(v).map_err(|_| format!("{name} {v} is out of range"))
}

fn ipv6(addr: IpAddr, name: &str) -> Result<Ipv6Addr, String> {
    match addr {
        IpAddr::V6(a) => Ok(a),
        IpAddr::V4(a) => Err(format!("{name} {a} is not IPv6")),
    }
}
