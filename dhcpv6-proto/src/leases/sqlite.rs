//! The production lease store: one SQLite database in WAL mode.
//!
//! Why SQLite: the operator can inspect the store with the stock tool
//! (`sqlite3 /var/lib/dhcpv6d/leases.db 'select * from leases'`), and WAL with
//! `synchronous=FULL` gives exactly the guarantee we need: a transaction is on disk
//! once COMMIT returns, at the price of one WAL fsync, which group commit shares.
//!
//! Columns are plain text and integers rather than blobs so that `select *` is
//! readable as is. The table is deliberately not `STRICT`, so older `sqlite3`
//! binaries found on operators' machines can still open it.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::checkpoint::Checkpointer;
use super::group_commit::GroupCommitter;
use super::lock::{self, StoreLock};
use super::rows::{self, decode_rows, sql_error, ROW_COLUMNS};
use super::spec;
use super::{CommitTicket, Lease, LeaseFilter, LeaseOp, LeaseStore, Location, StoreError, StoreTimings};

/// Tuning knobs of [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Commits that may wait for the writer before [`StoreError::QueueFull`] is
    /// returned. Bounded so that a disk that cannot keep up sheds load instead of
    /// growing memory and latency without limit.
    pub queue_capacity: usize,
    /// How long to wait for a lock held by another process (an operator running
    /// a write in `sqlite3`) before failing.
    pub busy_timeout: Duration,
    /// Hold `FILE.lock` for the store's life, refusing a second daemon on the same
    /// file (`lock.rs`). Off only for inspection (`dhcpv6d leases` while the
    /// daemon runs), which allocates nothing.
    pub exclusive: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { queue_capacity: 16_384, busy_timeout: Duration::from_secs(5), exclusive: true }
    }
}

/// Schema migrations; entry `i` moves the database from `user_version` i to i+1.
/// Append new entries, never edit old ones: deployed databases already ran them.
const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE leases (
        duid            TEXT    NOT NULL,  -- lowercase hex
        iaid            INTEGER NOT NULL,
        kind            TEXT    NOT NULL,  -- 'na' (address) or 'pd' (prefix)
        address         TEXT    NOT NULL,  -- canonical IPv6 text (RFC 5952)
        prefix_len      INTEGER NOT NULL,  -- 128 for addresses
        iface           TEXT    NOT NULL,
        valid_until     INTEGER NOT NULL,  -- unix seconds
        preferred_until INTEGER NOT NULL,  -- unix seconds
        state           TEXT    NOT NULL,  -- 'bound' or 'declined'
        UNIQUE (kind, address, prefix_len)
     );
     CREATE INDEX leases_by_client ON leases (duid, iaid, kind);
     CREATE INDEX leases_by_expiry ON leases (valid_until);
     -- Same rows with human-readable times, for operators.
     CREATE VIEW leases_readable AS
        SELECT duid, iaid, kind, address || '/' || prefix_len AS binding, iface, state,
               datetime(valid_until, 'unixepoch') AS valid_until_utc,
               datetime(preferred_until, 'unixepoch') AS preferred_until_utc
        FROM leases;",
    // v2: the route of a delegated prefix, put back when the machine restarts.
    "ALTER TABLE leases ADD COLUMN next_hop TEXT;      -- canonical IPv6 text, or NULL
     ALTER TABLE leases ADD COLUMN next_hop_dev TEXT;  -- interface name, or NULL",
    // v3: when the client last wrote the lease, and what its relays said (leasequery,
    // RFC 5007 / RFC 5460). Relay columns are NULL for a client on the link; binary
    // identifiers are lowercase hex, like duid.
    "ALTER TABLE leases ADD COLUMN last_transaction INTEGER NOT NULL DEFAULT 0;  -- unix seconds, 0: unknown
     ALTER TABLE leases ADD COLUMN relay_link_address TEXT;   -- IPv6 text; '::' when unspecified
     ALTER TABLE leases ADD COLUMN relay_peer_address TEXT;   -- IPv6 text
     ALTER TABLE leases ADD COLUMN relay_source TEXT;         -- IPv6 text of the Relay-Forward's source
     ALTER TABLE leases ADD COLUMN relay_interface_id TEXT;   -- hex
     ALTER TABLE leases ADD COLUMN relay_remote_id TEXT;      -- hex: enterprise number then id
     ALTER TABLE leases ADD COLUMN relay_subscriber_id TEXT;  -- hex
     ALTER TABLE leases ADD COLUMN relay_id TEXT;             -- hex (a DUID, RFC 5460)
     ALTER TABLE leases ADD COLUMN relay_client_linklayer TEXT; -- hex: hardware type then address
     CREATE INDEX leases_by_relay_id ON leases (relay_id) WHERE relay_id IS NOT NULL;
     CREATE INDEX leases_by_relay_link ON leases (relay_link_address) WHERE relay_link_address IS NOT NULL;
     CREATE INDEX leases_by_remote_id ON leases (relay_remote_id) WHERE relay_remote_id IS NOT NULL;",
];

/// Leases in an SQLite file; see the module docs.
///
/// Writes go through a single writer thread (group commit); reads use a second
/// connection, which WAL lets run alongside the writer. Dropping the store flushes
/// every queued commit and joins the writer.
#[derive(Debug)]
pub struct SqliteStore {
    path: Arc<Path>,
    reader: Mutex<Connection>,
    writer: GroupCommitter,
    /// After the writer: it stops once the writer has.
    _checkpointer: Checkpointer,
    /// Declared last so it is released only after the writer has flushed and stopped.
    _lock: Option<StoreLock>,
}

impl SqliteStore {
    /// The schema version this build writes (`PRAGMA user_version`).
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// Opens or creates the store at `path`, creating parent directories.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        Self::open_tuned(path, options, |_| Ok(()))
    }

    /// As `open_with`, with `tune` applied to the write connection before the writer
    /// starts (tests cap the file's size with it to play a full disk).
    fn open_tuned(
        path: impl AsRef<Path>,
        options: SqliteOptions,
        tune: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> Result<Self, StoreError> {
        let path: Arc<Path> = Arc::from(path.as_ref());
        // A URL handed here by mistake would become a folder named `postgresql:` and a
        // file that a second daemon then silently shares.
        if let Some(reason) = spec::url_like(path.as_os_str()) {
            return Err(StoreError::UnsupportedSpec { spec: spec::redacted(&path.to_string_lossy()), reason });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::CreateDir { path: path.to_path_buf(), source: Arc::new(e) })?;
        }
        // Before touching the database: a refused second daemon must change nothing.
        let lock = if options.exclusive { Some(lock::lock(&path)?) } else { None };

        let mut write_conn = connect(&path, &options)?;
        migrate(&mut write_conn, &path)?;
        tune_writer(&write_conn).map_err(sql_error(&path, "open"))?;
        tune(&write_conn).map_err(sql_error(&path, "open"))?;

        let reader = connect(&path, &options)?;
        // The reader must never take the write lock away from the writer thread.
        reader.pragma_update(None, "query_only", true).map_err(sql_error(&path, "open"))?;

        let timings = Arc::new(StoreTimings::default());
        let (nudge, committed) = std::sync::mpsc::sync_channel(1);
        let checkpointer =
            Checkpointer::spawn(connect(&path, &options)?, Arc::clone(&path), committed, Arc::clone(&timings))
                .map_err(|e| StoreError::SpawnWriter {
                    store: Location::File(path.to_path_buf()),
                    source: Arc::new(e),
                })?;
        let writer =
            GroupCommitter::spawn(write_conn, Arc::clone(&path), options.queue_capacity, timings, Some(nudge))?;
        Ok(SqliteStore { path, reader: Mutex::new(reader), writer, _checkpointer: checkpointer, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl LeaseStore for SqliteStore {
    fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
        // A poisoned lock only means another reader panicked; the connection is fine.
        let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let load = || -> rusqlite::Result<Vec<Lease>> {
            let mut stmt = conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM leases ORDER BY rowid"))?;
            let rows = stmt.query([])?;
            decode_rows(rows, &self.path)
        };
        load().map_err(sql_error(&self.path, "load leases"))
    }

    fn commit(&self, ops: Vec<LeaseOp>) -> CommitTicket {
        // Reject bad input here, not in the writer: one caller's mistake must not
        // fail the transaction it would share with other callers.
        if let Err(e) = ops.iter().try_for_each(LeaseOp::validate) {
            return CommitTicket::resolved(Err(e));
        }
        self.writer.commit(ops)
    }

    fn query(&self, filter: &LeaseFilter) -> Result<Vec<Lease>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        rows::query(&conn, filter, &self.path).map_err(sql_error(&self.path, "query leases"))
    }

    fn reclaim_expired(&self, now: u64) -> Result<Vec<Lease>, StoreError> {
        self.writer.reclaim(now)
    }

    fn probe(&self) -> CommitTicket {
        // An empty transaction writes nothing and succeeds on a full disk.
        self.writer.probe()
    }

    fn transactions(&self) -> u64 {
        self.writer.transactions()
    }

    fn timings(&self) -> Option<Arc<StoreTimings>> {
        Some(self.writer.timings())
    }

    fn location(&self) -> Location {
        Location::File(self.path.to_path_buf())
    }
}

/// Opens one connection with the durability settings every connection needs.
fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    let err = |action| sql_error(path, action);
    let conn = Connection::open(path).map_err(err("open"))?;
    conn.busy_timeout(options.busy_timeout).map_err(err("open"))?;
    // WAL: readers (ours and the operator's sqlite3) never block the writer, and a
    // commit costs one sequential append plus one fsync.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(err("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some file systems (network mounts) cannot do WAL; refuse rather than
        // silently run with different durability and locking.
        return Err(StoreError::NotWal { path: path.to_path_buf(), mode });
    }
    // FULL, not the WAL-typical NORMAL: NORMAL may lose the last transactions on
    // power loss, which are exactly the leases just promised to clients.
    conn.pragma_update(None, "synchronous", "FULL").map_err(err("set synchronous=FULL"))?;
    Ok(conn)
}

/// Pages the writer's own auto-checkpoint lets the WAL reach (SQLite's default: 1,000). The
/// checkpointer thread copies the WAL beside the writer; what it has not copied yet, the
/// auto-checkpoint copies inside a COMMIT, which every Reply of that batch then waits for.
/// At 1,000 pages (4 MiB) an address + prefix SARR load passed it 20-25 times a second, and
/// those COMMITs were the slow ones (mean 2.4-4.6 ms, max 45-92 ms at 8,000 exchanges/s
/// against 1.1-1.3 ms and 19-28 ms with 8,192). The price is disk: the WAL wraps only once
/// everything in it is copied, so under a sustained load its file grows to this size and past
/// it by what commits add while a checkpoint runs (50-91 MB after the bench's SARR rows at
/// 10,000-20,000 exchanges/s); SQLite keeps the file at that size and reuses it.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 8_192;

/// The writer's page cache (KiB; SQLite's default is 2 MiB). Each lease goes to a random leaf
/// of the `(kind, address, prefix_len)` index (addresses are spread over the pool), so once
/// that index outgrows the cache nearly every upsert first reads its leaf back from the
/// WAL or the file: 6-7 KB read per address + prefix exchange at 2 MiB, 0.2 KB at 32 MiB.
/// The cache grows only with the database (a 1,000,000-lease index is about 45 MB).
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// Settings of the write connection only (readers keep SQLite's defaults).
fn tune_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    // Negative: KiB rather than pages, whatever the page size.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
}

/// Brings the schema to [`SqliteStore::SCHEMA_VERSION`] in one transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = |action| sql_error(path, action);
    // IMMEDIATE so two processes opening a new file at once cannot both create it.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("migrate schema"))?;
    let found: i64 =
        tx.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(err("read schema version"))?;
    let Some(pending) = usize::try_from(found).ok().and_then(|v| MIGRATIONS.get(v..)) else {
        return Err(StoreError::UnsupportedSchema {
            store: Location::File(path.to_path_buf()),
            found,
            supported: SqliteStore::SCHEMA_VERSION,
        });
    };
    if pending.is_empty() {
        return Ok(());
    }
    for sql in pending {
        tx.execute_batch(sql).map_err(err("migrate schema"))?;
    }
    tx.pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION).map_err(err("migrate schema"))?;
    tx.commit().map_err(err("migrate schema"))
}

#[cfg(test)]
/// What only SQLite promises (its files, columns, migrations, tuning). What every store
/// promises (round trips, upserts, removals, reopening, reclaiming, group commit) is the
/// contract (`contract.rs`), which `leases::contract_tests` runs on `SqliteStore`.
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn db(dir: &TempDir) -> std::path::PathBuf {
        dir.path().join("leases.db")
    }

    /// The checkpointer copies the WAL into the database on its own thread, after the
    /// writer's transactions, and every transaction's COMMIT and statements are timed.
    #[test]
    fn the_wal_is_checkpointed_beside_the_writer_and_the_writer_is_timed() {
        let dir = TempDir::new("checkpoint");
        let store = SqliteStore::open(db(&dir)).unwrap();
        // Bulky leases, one per transaction: a WAL past the checkpointer's threshold (1 MiB).
        let bulky = |n: u32| Lease { iface: format!("relay:{n}:{}", "x".repeat(3000)), ..address(n) };
        for n in 0..400 {
            store.commit(vec![LeaseOp::Upsert(bulky(n))]).wait_blocking().unwrap();
        }
        let timings = store.timings().expect("SQLite times its writer");
        assert_eq!(timings.sync.snapshot().count, store.transactions());
        assert_eq!(timings.write.snapshot().count, store.transactions());
        assert_eq!(timings.jobs.load(std::sync::atomic::Ordering::Relaxed), 400);
        // Waiting for the thread to get its turn, not for a duration.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while timings.checkpoint.snapshot().count == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(timings.checkpoint.snapshot().count > 0, "no checkpoint ran");
        drop(store);
        // Everything is there after the threads stopped (the checkpointer's connection too).
        let again = SqliteStore::open(db(&dir)).unwrap();
        assert_eq!(again.load_all().unwrap().len(), 400);
    }

    /// The write connection's tuning takes (both pragmas read back as set, the cache in KiB).
    #[test]
    fn the_writer_is_tuned() {
        let dir = TempDir::new("tune");
        let conn = connect(&db(&dir), &SqliteOptions::default()).unwrap();
        tune_writer(&conn).unwrap();
        let pages: i64 = conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
        let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
        assert_eq!((pages, cache), (WRITER_AUTOCHECKPOINT_PAGES, -WRITER_CACHE_KIB));
    }

    fn commit(store: &SqliteStore, ops: Vec<LeaseOp>) {
        store.commit(ops).wait_blocking().expect("commit");
    }

    #[test]
    fn columns_are_readable_text() {
        let dir = TempDir::new("columns");
        let store = SqliteStore::open(db(&dir)).unwrap();
        commit(&store, vec![LeaseOp::Upsert(prefix(1))]);
        let conn = Connection::open(db(&dir)).unwrap();
        let row: (String, i64, String, String, i64, String, String) = conn
            .query_row("SELECT duid, iaid, kind, address, prefix_len, iface, state FROM leases", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })
            .unwrap();
        assert_eq!(
            row,
            (
                "0001000100000001".to_string(),
                1,
                "pd".to_string(),
                "2001:db8:8000:100::".to_string(),
                56,
                "relay:10.0.0.1/3".to_string(),
                "bound".to_string()
            )
        );
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SqliteStore::SCHEMA_VERSION);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let readable: String = conn.query_row("SELECT valid_until_utc FROM leases_readable", [], |r| r.get(0)).unwrap();
        assert_eq!(readable, "2033-05-18 03:33:20");
    }

    /// A database of the previous version (v2, before leasequery) opens, is migrated, keeps its
    /// leases (with no transaction time and no relay record) and takes relayed ones.
    #[test]
    fn a_v2_database_is_migrated() {
        let dir = TempDir::new("migrate-v2");
        {
            let conn = Connection::open(db(&dir)).unwrap();
            for sql in &MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute(
                "INSERT INTO leases (duid, iaid, kind, address, prefix_len, iface, valid_until, preferred_until, \
                 state, next_hop, next_hop_dev) VALUES ('000300010200000000aa', 5, 'pd', '2001:db8:100::', 56, \
                 'eth1', 2000000000, 1999999000, 'bound', 'fe80::2', 'eth1')",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(db(&dir)).unwrap();
        let old = store.load_all().unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!((old[0].iaid, old[0].last_transaction, old[0].relay.as_ref()), (5, 0, None));
        assert_eq!(old[0].next_hop.as_ref().unwrap().via, "fe80::2".parse::<std::net::Ipv6Addr>().unwrap());
        let relayed = prefix(1);
        assert!(relayed.relay.is_some());
        commit(&store, vec![LeaseOp::Upsert(relayed.clone())]);
        let filter = crate::leases::LeaseFilter::RelayId(relayed.relay.as_ref().unwrap().relay_id.clone().unwrap());
        assert_eq!(store.query(&filter).unwrap(), vec![relayed]);
        drop(store);
        let conn = Connection::open(db(&dir)).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SqliteStore::SCHEMA_VERSION);
        assert_eq!(version, 3);
        let plan: String = conn
            .query_row("EXPLAIN QUERY PLAN SELECT * FROM leases WHERE relay_remote_id = 'ab'", [], |r| r.get(3))
            .unwrap();
        assert!(plan.contains("leases_by_remote_id"), "{plan}");
    }

    #[test]
    fn resolved_ticket_is_visible_to_a_fresh_connection() {
        let dir = TempDir::new("durable");
        let store = SqliteStore::open(db(&dir)).unwrap();
        for n in 0..20 {
            commit(&store, vec![LeaseOp::Upsert(address(n))]);
            let conn = Connection::open(db(&dir)).unwrap();
            let count: i64 = conn
                .query_row("SELECT count(*) FROM leases WHERE address = ?1", [address(n).addr.to_string()], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(count, 1, "lease {n} not visible after its ticket resolved");
        }
    }

    #[test]
    fn corrupt_rows_are_skipped() {
        let dir = TempDir::new("corrupt");
        let store = SqliteStore::open(db(&dir)).unwrap();
        commit(&store, vec![LeaseOp::Upsert(address(1))]);
        let conn = Connection::open(db(&dir)).unwrap();
        let insert = "INSERT INTO leases (duid, iaid, kind, address, prefix_len, iface, valid_until, preferred_until, state) VALUES ";
        for values in [
            "('zz', 1, 'na', '2001:db8::2', 128, 'x', 10, 5, 'bound')", // bad hex
            "('0001', 1, 'na', 'not-an-ip', 128, 'x', 10, 5, 'bound')", // bad address
            "('0001', 1, 'ta', '2001:db8::3', 128, 'x', 10, 5, 'bound')", // unknown kind
            "('0001', -1, 'na', '2001:db8::4', 128, 'x', 10, 5, 'bound')", // iaid range
            "('0001', 1, 'na', '2001:db8::5', 64, 'x', 10, 5, 'bound')", // invariant
            "('0001', 1, 'na', '2001:db8::6', 128, 'x', 'soon', 5, 'bound')", // type
            "('0001', 1, 'na', '2001:db8::7', 128, 'x', 10, 5, 'offered')", // state
            "(x'0001', 1, 'na', '2001:db8::8', 128, 'x', 10, 5, 'bound')", // blob duid
        ] {
            conn.execute(&format!("{insert}{values}"), []).unwrap();
        }
        assert_eq!(store.load_all().unwrap(), vec![address(1)]);
    }

    #[test]
    fn a_version_1_store_is_migrated_and_keeps_its_leases() {
        // A store written before next hops were kept: its leases load, with none.
        let dir = TempDir::new("v1");
        {
            let mut conn = Connection::open(db(&dir)).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(MIGRATIONS[0]).unwrap();
            tx.execute(
                "INSERT INTO leases (duid, iaid, kind, address, prefix_len, iface, valid_until, preferred_until, state)
                 VALUES ('0001000100000001', 1, 'pd', '2001:db8:8000:100::', 56, 'eth1', 2000000000, 1999999000, 'bound')",
                [],
            )
            .unwrap();
            tx.pragma_update(None, "user_version", 1).unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(db(&dir)).unwrap();
        let leases = store.load_all().unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].next_hop, None);
        // And a prefix written now keeps its next hop.
        store.commit(vec![LeaseOp::Upsert(prefix(7))]).wait_blocking().unwrap();
        let back = store.load_all().unwrap();
        assert_eq!(back.iter().find(|l| l.addr == prefix(7).addr), Some(&prefix(7)));
    }

    #[test]
    fn half_a_next_hop_is_a_corrupt_row() {
        let dir = TempDir::new("hop");
        let store = SqliteStore::open(db(&dir)).unwrap();
        store.commit(vec![LeaseOp::Upsert(prefix(1)), LeaseOp::Upsert(prefix(2))]).wait_blocking().unwrap();
        let conn = Connection::open(db(&dir)).unwrap();
        conn.execute("UPDATE leases SET next_hop_dev = NULL WHERE address = ?1", [prefix(1).addr.to_string()]).unwrap();
        assert_eq!(store.load_all().unwrap(), vec![prefix(2)], "the damaged row is skipped, the other kept");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = TempDir::new("schema");
        {
            let conn = Connection::open(db(&dir)).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = SqliteStore::open(db(&dir)).unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedSchema { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("leases.db"), "{err}");
    }

    #[test]
    fn open_creates_parent_dirs_and_errors_name_the_path() {
        let dir = TempDir::new("mkdir");
        let nested = dir.path().join("a/b/leases.db");
        SqliteStore::open(&nested).unwrap();
        assert!(nested.exists());

        // A regular file where a directory should be.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let err = SqliteStore::open(blocker.join("leases.db")).unwrap_err();
        assert!(matches!(err, StoreError::CreateDir { .. }), "{err}");
        assert!(err.to_string().contains(&*blocker.to_string_lossy()), "{err}");
    }

    #[test]
    fn a_second_store_on_the_same_file_is_refused() {
        let dir = TempDir::new("exclusive");
        let first = SqliteStore::open(db(&dir)).unwrap();
        commit(&first, vec![LeaseOp::Upsert(address(1))]);
        let err = SqliteStore::open(db(&dir)).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&*db(&dir).to_string_lossy()), "names the file: {message}");
        assert!(message.contains("another dhcpv6d"), "{message}");

        // Inspection does not allocate, so it may read alongside the daemon.
        let inspector =
            SqliteStore::open_with(db(&dir), SqliteOptions { exclusive: false, ..SqliteOptions::default() }).unwrap();
        assert_eq!(inspector.load_all().unwrap(), vec![address(1)]);

        drop(first);
        let again = SqliteStore::open(db(&dir)).expect("the file is free once its daemon is gone");
        assert_eq!(again.load_all().unwrap(), vec![address(1)]);
    }
}

/// A store that cannot write (full disk): typed errors, nothing half-kept, and a store
/// that is sound when opened again.
#[cfg(test)]
mod full_disk_tests {
    use super::super::testutil::*;
    use super::super::{Lease, LeaseOp, LeaseStore, Outage, StoreError};
    use super::{SqliteOptions, SqliteStore};
    use rusqlite::Connection;

    /// A store whose file may not grow past `pages` pages: SQLite then fails writes with
    /// SQLITE_FULL, as it does on a full disk.
    fn capped(path: &std::path::Path, pages: u32) -> SqliteStore {
        SqliteStore::open_tuned(path, SqliteOptions::default(), |c| c.pragma_update(None, "max_page_count", pages))
            .unwrap()
    }

    /// Lease `n` with a long interface name, so that a few of them fill a page.
    fn bulky(n: u32) -> Lease {
        Lease { iface: format!("relay:{}", "x".repeat(400)), ..address(n) }
    }

    #[test]
    fn a_full_store_says_so_and_keeps_exactly_what_it_confirmed() {
        let dir = TempDir::new("full-disk");
        let path = dir.path().join("leases.db");
        drop(SqliteStore::open(&path).unwrap());
        let pages: u32 = Connection::open(&path).unwrap().query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        let store = capped(&path, pages + 4);

        let mut confirmed = Vec::new();
        let mut failure = None;
        for n in 0..200 {
            match store.commit(vec![LeaseOp::Upsert(bulky(n))]).wait_blocking() {
                Ok(()) => confirmed.push(bulky(n)),
                Err(e) => {
                    failure = Some((n, e));
                    break;
                }
            }
        }
        let (refused, e) = failure.expect("the capped store filled up");
        assert!(!confirmed.is_empty(), "some leases fitted before it filled");
        assert!(matches!(e, StoreError::Full { .. }), "{e}");
        assert_eq!(e.outage(), Some(Outage::Full));
        assert!(e.to_string().contains("disk full"), "{e}");
        // Still full: the probe cannot write either, and says why.
        let probe = store.probe().wait_blocking().unwrap_err();
        assert_eq!(probe.outage(), Some(Outage::Full), "{probe}");
        // The failed transaction was rolled back: the connection still serves reads and
        // holds exactly what was confirmed.
        assert_eq!(store.load_all().unwrap().len(), confirmed.len());
        drop(store);

        // Opened again (room made): what was confirmed is there, the refused lease is not,
        // and writing works.
        let store = SqliteStore::open(&path).unwrap();
        let mut back = store.load_all().unwrap();
        back.sort_by_key(Lease::key);
        assert_eq!(back, confirmed);
        let integrity: String =
            Connection::open(&path).unwrap().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(integrity, "ok");
        store.probe().wait_blocking().unwrap();
        store.commit(vec![LeaseOp::Upsert(bulky(refused))]).wait_blocking().unwrap();
        assert_eq!(store.load_all().unwrap().len(), confirmed.len() + 1);
    }

    #[test]
    fn a_database_deleted_or_replaced_under_the_store_takes_no_more_leases() {
        let dir = TempDir::new("lost");
        let path = dir.path().join("leases.db");
        let store = SqliteStore::open(&path).unwrap();
        store.commit(vec![LeaseOp::Upsert(address(1))]).wait_blocking().unwrap();
        // As `rm leases.db*` would.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let e = store.commit(vec![LeaseOp::Upsert(address(2))]).wait_blocking().unwrap_err();
        assert!(matches!(e, StoreError::Lost { .. }), "{e}");
        assert_eq!(e.outage(), Some(Outage::Lost));
        assert_eq!(store.probe().wait_blocking().unwrap_err().outage(), Some(Outage::Lost));
        // Another file put in its place is not ours either. (Opened without the lock, which
        // the first store still holds: the point is the file, not a second daemon.)
        let unlocked = || crate::leases::SqliteOptions { exclusive: false, ..Default::default() };
        drop(SqliteStore::open_with(&path, unlocked()).unwrap());
        assert_eq!(store.probe().wait_blocking().unwrap_err().outage(), Some(Outage::Lost));
        let fresh = SqliteStore::open_with(&path, unlocked()).unwrap();
        assert!(fresh.load_all().unwrap().is_empty(), "nothing was written into the new file");
    }

    #[test]
    fn a_probe_writes_and_leaves_nothing() {
        let dir = TempDir::new("probe");
        let path = dir.path().join("leases.db");
        let store = SqliteStore::open(&path).unwrap();
        let before = store.transactions();
        store.probe().wait_blocking().unwrap();
        assert_eq!(store.transactions(), before + 1, "a real transaction");
        assert!(store.load_all().unwrap().is_empty());
        let rows: i64 =
            Connection::open(&path).unwrap().query_row("SELECT count(*) FROM leases", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 0);
    }

    #[test]
    fn outages_are_told_apart_from_one_commit_s_problems() {
        let path = std::path::PathBuf::from("/x/leases.db");
        let sqlite = |code| StoreError::Sqlite {
            path: path.clone(),
            action: "commit",
            source: std::sync::Arc::new(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)),
        };
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_IOERR).outage(), Some(Outage::Io));
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_FULL).outage(), Some(Outage::Full));
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_READONLY).outage(), Some(Outage::Other));
        assert_eq!(
            StoreError::WriterStopped { store: crate::leases::Location::File(path.clone()) }.outage(),
            Some(Outage::Stopped)
        );
        assert_eq!(
            StoreError::QueueFull { store: crate::leases::Location::File(path.clone()), capacity: 1 }.outage(),
            None
        );
        let mut bad = address(1);
        bad.prefix_len = 64;
        assert_eq!(bad.validate().unwrap_err().outage(), None);
    }
}

/// Group commit (`group_commit.rs`) as the store's users see it: a full queue sheds load
/// instead of growing (many commits in few transactions is a contract case).
#[cfg(test)]
mod group_commit_tests {
    use super::super::testutil::*;
    use super::super::{CommitTicket, LeaseOp, LeaseStore, StoreError};
    use super::{SqliteOptions, SqliteStore};
    use rusqlite::Connection;

    #[test]
    fn full_queue_sheds_load() {
        let dir = TempDir::new("full");
        let path = dir.path().join("leases.db");
        let store =
            SqliteStore::open_with(&path, SqliteOptions { queue_capacity: 1, ..SqliteOptions::default() }).unwrap();
        // Hold the write lock from another connection so the writer is stuck on
        // its first batch; with capacity 1, the queue then fills.
        let blocker = Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let tickets: Vec<CommitTicket> = (0..10).map(|n| store.commit(vec![LeaseOp::Upsert(address(n))])).collect();
        blocker.execute_batch("COMMIT").unwrap();

        let results: Vec<_> = tickets.into_iter().map(CommitTicket::wait_blocking).collect();
        assert!(results.iter().any(|r| matches!(r, Err(StoreError::QueueFull { capacity: 1, .. }))));
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert!(ok >= 1);
        assert_eq!(store.load_all().unwrap().len(), ok, "exactly the Ok commits are stored");
    }

    #[test]
    fn a_url_is_not_taken_for_a_file() {
        // Relative to the test's working directory: exactly where the folder
        // `postgresql:` used to appear.
        let url = "postgresql:///dhcpv6?host=/run/postgresql&port=5432&user=dhcp";
        let err = SqliteStore::open(url).unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedSpec { .. }), "{err}");
        assert!(!std::path::Path::new("postgresql:").exists(), "no folder named after the scheme");
    }
}
