//! The `leases` table's row codec: how one lease is written, deleted and read back.
//! Shared by the store's reader (`sqlite.rs`) and its writer thread (`group_commit.rs`),
//! so neither has to reach into the other.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{params, Row, Transaction};
use tracing::warn;

use super::{Lease, LeaseFilter, LeaseKey, LeaseKind, LeaseState, NextHop, RelayRecord, StoreError};

pub(super) fn sql_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |e| {
        let (path, source) = (path.to_path_buf(), Arc::new(e));
        // A full disk is the one failure an operator can fix without a restart, and the
        // one a caller must tell apart: name it.
        match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full { path, action, source },
            _ => StoreError::Sqlite { path, action, source },
        }
    }
}

/// Room a probe asks of the store: more than a typical batch of leases needs, so that a
/// disk with only the scraps a failed transaction left behind does not pass for working.
const PROBE_BYTES: i64 = 64 * 1024;

/// Writes a row that no lease can be (kind `probe`) and deletes it again, in `tx`: the
/// commit writes real pages (WAL frames) and fails where a lease would, yet leaves nothing.
pub(super) fn probe(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO leases (duid, iaid, kind, address, prefix_len, iface, valid_until, preferred_until, state)
         VALUES (zeroblob(?1), 0, 'probe', '::', 0, '', 0, 0, 'probe')",
        [PROBE_BYTES],
    )?;
    tx.execute("DELETE FROM leases WHERE kind = 'probe'", [])?;
    Ok(())
}

/// Column list matching [`decode_row`].
pub(super) const ROW_COLUMNS: &str =
    "rowid, duid, iaid, kind, address, prefix_len, iface, valid_until, preferred_until, \
     state, next_hop, next_hop_dev, last_transaction, relay_link_address, relay_peer_address, relay_source, \
     relay_interface_id, relay_remote_id, relay_subscriber_id, relay_id, relay_client_linklayer";

pub(super) fn upsert(tx: &Transaction<'_>, lease: &Lease) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO leases
            (duid, iaid, kind, address, prefix_len, iface, valid_until, preferred_until, state,
             next_hop, next_hop_dev, last_transaction, relay_link_address, relay_peer_address,
             relay_source, relay_interface_id, relay_remote_id, relay_subscriber_id, relay_id,
             relay_client_linklayer)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
         ON CONFLICT (kind, address, prefix_len) DO UPDATE SET
            duid = excluded.duid, iaid = excluded.iaid, iface = excluded.iface,
            valid_until = excluded.valid_until, preferred_until = excluded.preferred_until,
            state = excluded.state, next_hop = excluded.next_hop, next_hop_dev = excluded.next_hop_dev,
            last_transaction = excluded.last_transaction,
            relay_link_address = excluded.relay_link_address, relay_peer_address = excluded.relay_peer_address,
            relay_source = excluded.relay_source, relay_interface_id = excluded.relay_interface_id,
            relay_remote_id = excluded.relay_remote_id, relay_subscriber_id = excluded.relay_subscriber_id,
            relay_id = excluded.relay_id, relay_client_linklayer = excluded.relay_client_linklayer",
    )?;
    let relay = lease.relay.as_deref();
    let hex = |f: fn(&RelayRecord) -> &Option<Vec<u8>>| relay.and_then(|r| f(r).as_deref()).map(hex_encode);
    stmt.execute(params![
        hex_encode(&lease.duid),
        lease.iaid,
        lease.kind.as_str(),
        lease.addr.to_string(),
        lease.prefix_len,
        lease.iface,
        sql_int(lease.valid_until)?,
        sql_int(lease.preferred_until)?,
        lease.state.as_str(),
        lease.next_hop.as_ref().map(|h| h.via.to_string()),
        lease.next_hop.as_ref().map(|h| h.dev.as_str()),
        sql_int(lease.last_transaction)?,
        relay.map(|r| r.link_address.to_string()),
        relay.map(|r| r.peer_address.to_string()),
        relay.map(|r| r.source.to_string()),
        hex(|r| &r.interface_id),
        hex(|r| &r.remote_id),
        hex(|r| &r.subscriber_id),
        hex(|r| &r.relay_id),
        hex(|r| &r.client_linklayer),
    ])?;
    Ok(())
}

/// The rows `filter` asks for, each lookup on an index: `leases_by_client` for a DUID, the
/// `UNIQUE (kind, address, prefix_len)` index for an address (once as an address, then once
/// per prefix length for the prefixes that could contain it), the v3 relay indexes for the rest.
pub(super) fn query(conn: &rusqlite::Connection, filter: &LeaseFilter, path: &Path) -> rusqlite::Result<Vec<Lease>> {
    match filter {
        LeaseFilter::Address(a) => {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM leases WHERE kind = ?1 AND address = ?2 AND prefix_len = ?3"
            ))?;
            let mut out = decode_rows(stmt.query(params![LeaseKind::Address.as_str(), a.to_string(), 128])?, path)?;
            for len in 1..=128u8 {
                let mask = u128::MAX << (128 - u32::from(len));
                let net = std::net::Ipv6Addr::from(u128::from(*a) & mask);
                let rows = stmt.query(params![LeaseKind::Prefix.as_str(), net.to_string(), len])?;
                out.extend(decode_rows(rows, path)?);
            }
            Ok(out)
        }
        LeaseFilter::Client(duid) => by_column(conn, "duid", hex_encode(duid), path),
        LeaseFilter::RelayId(id) => by_column(conn, "relay_id", hex_encode(id), path),
        LeaseFilter::LinkAddress(a) => by_column(conn, "relay_link_address", a.to_string(), path),
        LeaseFilter::RemoteId(id) => by_column(conn, "relay_remote_id", hex_encode(id), path),
    }
}

/// SQLite integers are signed. Validation already rejected times that do not fit;
/// this turns a miss into an error instead of a silent wrap.
fn sql_int(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub(super) fn remove(tx: &Transaction<'_>, key: &LeaseKey) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached("DELETE FROM leases WHERE kind = ?1 AND address = ?2 AND prefix_len = ?3")?;
    stmt.execute(params![key.kind.as_str(), key.addr.to_string(), key.prefix_len])?;
    Ok(())
}

pub(super) fn delete_expired(tx: &Transaction<'_>, now: u64, path: &Path) -> rusqlite::Result<Vec<Lease>> {
    // Clamp rather than fail: "now" past i64::MAX means everything has expired.
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut stmt = tx.prepare_cached(&format!("DELETE FROM leases WHERE valid_until <= ?1 RETURNING {ROW_COLUMNS}"))?;
    let rows = stmt.query([now])?;
    decode_rows(rows, path)
}

/// Decodes rows, skipping (and logging) the ones that are not valid leases. Only
/// errors reading the database itself are returned.
pub(super) fn decode_rows(mut rows: rusqlite::Rows<'_>, path: &Path) -> rusqlite::Result<Vec<Lease>> {
    let mut leases = Vec::new();
    while let Some(row) = rows.next()? {
        match decode_row(row) {
            Ok(lease) => leases.push(lease),
            Err(reason) => {
                let rowid = row.get::<_, i64>(0).ok();
                warn!(path = %path.display(), ?rowid, %reason, "skipping corrupt lease row");
            }
        }
    }
    Ok(leases)
}

/// One row (in [`ROW_COLUMNS`] order) to a lease, or why it is not one. The file
/// may have been edited by hand, so nothing here trusts it.
fn decode_row(row: &Row<'_>) -> Result<Lease, String> {
    let duid_hex = text(row, 1, "duid")?;
    let lease = Lease {
        duid: hex_decode(duid_hex).ok_or_else(|| format!("duid {duid_hex:?} is not hex"))?,
        iaid: int(row, 2, "iaid")?,
        kind: {
            let s = text(row, 3, "kind")?;
            LeaseKind::parse(s).ok_or_else(|| format!("unknown kind {s:?}"))?
        },
        addr: {
            let s = text(row, 4, "address")?;
            s.parse().map_err(|_| format!("address {s:?} is not IPv6"))?
        },
        prefix_len: int(row, 5, "prefix_len")?,
        iface: text(row, 6, "iface")?.to_string(),
        valid_until: int(row, 7, "valid_until")?,
        preferred_until: int(row, 8, "preferred_until")?,
        state: {
            let s = text(row, 9, "state")?;
            LeaseState::parse(s).ok_or_else(|| format!("unknown state {s:?}"))?
        },
        next_hop: next_hop(row)?,
        last_transaction: int(row, 12, "last_transaction")?,
        relay: relay(row)?,
    };
    match lease.problem() {
        None => Ok(lease),
        Some(reason) => Err(reason),
    }
}

/// Columns 10 and 11: both set, or both NULL (a half-written pair is corrupt).
fn next_hop(row: &Row<'_>) -> Result<Option<Box<NextHop>>, String> {
    let optional = |idx: usize, name: &str| -> Result<Option<&str>, String> {
        let v = row.get_ref(idx).map_err(|e| format!("{name}: {e}"))?;
        match v {
            rusqlite::types::ValueRef::Null => Ok(None),
            v => v.as_str().map(Some).map_err(|_| format!("{name} is not text")),
        }
    };
    match (optional(10, "next_hop")?, optional(11, "next_hop_dev")?) {
        (None, None) => Ok(None),
        (Some(via), Some(dev)) => {
            let via = via.parse().map_err(|_| format!("next_hop {via:?} is not IPv6"))?;
            Ok(Some(Box::new(NextHop { via, dev: dev.to_string() })))
        }
        _ => Err("next_hop and next_hop_dev must be set together".to_string()),
    }
}

/// Every row whose `column` (one with an index) holds `value`.
fn by_column(conn: &rusqlite::Connection, column: &str, value: String, path: &Path) -> rusqlite::Result<Vec<Lease>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM leases WHERE {column} = ?1 ORDER BY rowid"))?;
    let rows = stmt.query([value])?;
    decode_rows(rows, path)
}

/// Columns 13 to 20: the three addresses are set for a relayed lease and NULL otherwise; the
/// identifiers are each optional.
fn relay(row: &Row<'_>) -> Result<Option<Box<RelayRecord>>, String> {
    let addr = |idx: usize, name: &str| -> Result<Option<std::net::Ipv6Addr>, String> {
        optional_text(row, idx, name)?.map(|s| s.parse().map_err(|_| format!("{name} {s:?} is not IPv6"))).transpose()
    };
    let bytes = |idx: usize, name: &str| -> Result<Option<Vec<u8>>, String> {
        optional_text(row, idx, name)?
            .map(|s| hex_decode(s).ok_or_else(|| format!("{name} {s:?} is not hex")))
            .transpose()
    };
    RelayRecord::from_columns(13, addr, bytes)
}

fn optional_text<'r>(row: &'r Row<'_>, idx: usize, name: &str) -> Result<Option<&'r str>, String> {
    match row.get_ref(idx).map_err(|e| format!("{name}: {e}"))? {
        rusqlite::types::ValueRef::Null => Ok(None),
        v => v.as_str().map(Some).map_err(|_| format!("{name} is not text")),
    }
}

fn text<'r>(row: &'r Row<'_>, idx: usize, name: &str) -> Result<&'r str, String> {
    row.get_ref(idx).map_err(|e| format!("{name}: {e}"))?.as_str().map_err(|_| format!("{name} is not text"))
}

fn int<T: TryFrom<i64>>(row: &Row<'_>, idx: usize, name: &str) -> Result<T, String> {
    let v = row
        .get_ref(idx)
        .map_err(|e| format!("{name}: {e}"))?
        .as_i64()
        .map_err(|_| format!("{name} is not an integer"))?;
    T::try_from(v).map_err(|_| format!("{name} {v} is out of range"))
}

fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    // `to_digit` rejects non-ASCII and signs, unlike `u8::from_str_radix`.
    fn nibble(c: u8) -> Option<u8> {
        char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes().chunks_exact(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        assert_eq!(hex_encode(&[0x00, 0xab, 0x10]), "00ab10");
        assert_eq!(hex_decode("00AB10"), Some(vec![0x00, 0xab, 0x10]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("+1"), None);
        assert_eq!(hex_decode("éé"), None);
        assert_eq!(hex_decode(""), Some(vec![]));
    }
}
