//! The PostgreSQL lease store: the same promise as the SQLite one, in a database that
//! several daemons (and the operator's `psql`) can share.
//!
//! * `schema.rs`: the versioned schema (table `schema_version`), created and migrated
//!   when the store opens. Addresses are `inet`, prefixes `cidr`, DUIDs `bytea`.
//! * `writer.rs`: the writer task. Group commit as in SQLite: everything queued while
//!   the previous transaction was in flight goes into the next one, sent as one
//!   pipeline (BEGIN, every statement, COMMIT, then wait for the answers), and every
//!   ticket of the batch resolves only once COMMIT has answered. A lost connection
//!   fails the batch in flight with [`StoreError::OutcomeUnknown`] (no Reply may be
//!   sent for it), then the store reconnects with backoff; meanwhile commits fail at
//!   once with [`StoreError::Unavailable`], and the outage is logged once.
//! * `rows.rs`: statements and the row codec.
//!
//! Why tokio-postgres without a pool: the writer needs one session of its own (a
//! transaction lives on one connection), and reads are rare (start-up,
//! `dhcpv6d leases`), so a second, lazily made connection serves them; a pool would add
//! a dependency and a second reconnect policy for nothing. tokio-postgres is the
//! maintained async client of the rust-postgres project, speaks the protocol itself
//! (no libpq to install), pipelines requests made concurrently on one connection, and
//! parses libpq's URL form, Unix socket directories included.
//!
//! The store runs its own single-threaded tokio runtime on a thread of its own, so it
//! works the same under the daemon's runtime, under a test's, or under none, and its
//! sockets keep being served (a dropped connection is noticed at once) whatever the
//! caller's runtime is doing.

mod listen;
mod rows;
mod schema;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tracing::{debug, error, warn};

use super::job::Job;
use super::spec::redacted;
use super::{CommitTicket, ForeignChange, Heartbeat, Lease, LeaseFilter, LeaseOp, LeaseStore, Location, StoreError};
use writer::Writer;

/// Tuning knobs of [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Commits that may wait for the writer before [`StoreError::QueueFull`].
    pub queue_capacity: usize,
    /// A transaction not answered within this is given up: its connection is closed
    /// (the server then rolls back whatever it had not committed), its tickets
    /// resolve with [`StoreError::OutcomeUnknown`], and the store reconnects.
    pub commit_timeout: Duration,
    /// For connections whose URL sets no `connect_timeout`.
    pub connect_timeout: Duration,
    /// First wait between reconnection attempts; it doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// This daemon's name in the `written_by` column. Daemons sharing a database must
    /// have distinct names: a claim replaces another client's unexpired binding only if
    /// this name wrote it. `None`: host name and process id.
    pub writer: Option<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            queue_capacity: 16_384,
            commit_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            writer: None,
        }
    }
}

/// State the writer and the store's callers share.
#[derive(Debug, Default)]
struct Shared {
    /// Our `written_by` name.
    writer: String,
    /// False while the writer has no connection: commits are refused at once.
    up: AtomicBool,
    transactions: AtomicU64,
    /// Commits refused because the database was unreachable, since the store opened.
    refused: AtomicU64,
}

/// Leases in a PostgreSQL database; see the module docs.
///
/// Dropping the store flushes every queued commit (or fails it, if the database is
/// unreachable) and joins the store's thread.
#[derive(Debug)]
pub struct PgStore {
    location: Arc<Location>,
    config: Arc<Config>,
    /// `None` only during drop: closing the queue is what stops the writer.
    queue: Option<mpsc::Sender<Job>>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    /// The connection `load_all` uses, made when first needed and again after a loss.
    reader: Arc<tokio::sync::Mutex<Option<(Client, ConnectionTask)>>>,
    thread: Option<JoinHandle<()>>,
    options: PgOptions,
}

impl PgStore {
    /// The schema version this build writes (`SELECT max(version) FROM schema_version`).
    pub const SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

    /// The SQL of schema versions 1..=`version` (description, statements), for tests that
    /// build a database as an older dhcpv6d left it.
    #[cfg(feature = "testing")]
    pub fn schema_until(version: usize) -> Vec<(&'static str, &'static str)> {
        schema::MIGRATIONS.iter().take(version).copied().collect()
    }

    /// Connects to the database a libpq URL names, creating or migrating the schema.
    /// Fails if the database cannot be reached now: a daemon needs its leases to start.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, PgOptions::default())
    }

    pub fn open_with(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let config = Arc::new(config(url, &options)?);
        let location = Arc::new(Location::Database(redacted(url)));
        let writer = options.writer.clone().unwrap_or_else(default_writer);
        let shared = Arc::new(Shared { up: AtomicBool::new(true), writer, ..Shared::default() });
        let (queue, jobs) = mpsc::channel(options.queue_capacity.max(1));
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let writer = Writer::new(Arc::clone(&config), Arc::clone(&location), Arc::clone(&shared), &options, jobs);
        let thread = {
            let location = Arc::clone(&location);
            std::thread::Builder::new().name("lease-pg".into()).spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StoreError::SpawnWriter {
                            store: Location::clone(&location),
                            source: Arc::new(e),
                        }));
                        return;
                    }
                };
                match runtime.block_on(writer::Conn::open(writer.config(), &location, true)) {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(runtime.handle().clone()));
                        runtime.block_on(writer.run(conn));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
        }
        .map_err(|e| StoreError::SpawnWriter { store: Location::clone(&location), source: Arc::new(e) })?;
        let runtime = match ready_rx.recv() {
            Ok(Ok(runtime)) => runtime,
            failed => {
                // The thread has returned or is returning: nothing was queued yet.
                let _ = thread.join();
                return Err(match failed {
                    Ok(Err(e)) => e,
                    _ => StoreError::WriterStopped { store: Location::clone(&location) },
                });
            }
        };
        Ok(PgStore {
            location,
            config,
            queue: Some(queue),
            shared,
            runtime,
            reader: Arc::default(),
            thread: Some(thread),
            options,
        })
    }

    /// False while the database is unreachable (commits are being refused).
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    /// Commits refused because the database was unreachable, since the store opened.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    fn sender(&self) -> &mpsc::Sender<Job> {
        // Only `drop` takes the sender, and nothing can call us after that.
        self.queue.as_ref().expect("lease writer queue used after drop")
    }

    /// The ticket of a commit or probe, `rx` its answer: pending once queued, failed at
    /// once when the queue is full or the writer gone.
    fn try_queue(&self, job: Job, rx: oneshot::Receiver<Result<(), StoreError>>) -> CommitTicket {
        match self.sender().try_send(job) {
            Ok(()) => CommitTicket::pending(rx, Arc::clone(&self.location)),
            Err(TrySendError::Full(_)) => CommitTicket::resolved(Err(StoreError::QueueFull {
                store: Location::clone(&self.location),
                capacity: self.options.queue_capacity,
            })),
            Err(TrySendError::Closed(_)) => CommitTicket::resolved(Err(self.stopped())),
        }
    }

    fn refuse(&self) -> StoreError {
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
        StoreError::Unavailable { store: Location::clone(&self.location) }
    }

    fn stopped(&self) -> StoreError {
        StoreError::WriterStopped { store: Location::clone(&self.location) }
    }
}

impl LeaseStore for PgStore {
    /// Other servers share the database: see `LeaseStore::single_writer`.
    fn single_writer(&self) -> bool {
        false
    }

    fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
        let (done, rx) = std_mpsc::channel();
        let (reader, config, location) =
            (Arc::clone(&self.reader), Arc::clone(&self.config), Arc::clone(&self.location));
        self.runtime.spawn(async move {
            let _ = done.send(rows::load_all(&reader, &config, &location).await);
        });
        rx.recv().unwrap_or_else(|_| Err(self.stopped()))
    }

    fn query(&self, filter: &LeaseFilter) -> Result<Vec<Lease>, StoreError> {
        let (done, rx) = std_mpsc::channel();
        let (reader, config, location) =
            (Arc::clone(&self.reader), Arc::clone(&self.config), Arc::clone(&self.location));
        let filter = filter.clone();
        self.runtime.spawn(async move {
            let _ = done.send(rows::query(&reader, &config, &location, &filter).await);
        });
        rx.recv().unwrap_or_else(|_| Err(self.stopped()))
    }

    fn commit(&self, ops: Vec<LeaseOp>) -> CommitTicket {
        // Reject bad input here, not in the writer: one caller's mistake must not
        // fail the transaction it would share with other callers.
        if let Err(e) = ops.iter().try_for_each(LeaseOp::validate) {
            return CommitTicket::resolved(Err(e));
        }
        if !self.is_up() {
            return CommitTicket::resolved(Err(self.refuse()));
        }
        let (done, rx) = oneshot::channel();
        self.try_queue(Job::Commit { ops, done }, rx)
    }

    /// A round trip through the writer that proves the database takes writes again (see
    /// `Job::Probe`), in order with commits; refused at once while the session is down.
    fn probe(&self) -> CommitTicket {
        if !self.is_up() {
            return CommitTicket::resolved(Err(self.refuse()));
        }
        let (done, rx) = oneshot::channel();
        self.try_queue(Job::Probe { done }, rx)
    }

    /// Runs in the writer, in order with commits. Waits (bounded) while the queue is
    /// full: reclaiming is housekeeping and should wait its turn, not be shed.
    fn reclaim_expired(&self, now: u64) -> Result<Vec<Lease>, StoreError> {
        if !self.is_up() {
            return Err(StoreError::Unavailable { store: Location::clone(&self.location) });
        }
        let (done, rx) = std_mpsc::channel();
        let mut job = Job::Reclaim { now, done };
        let deadline = std::time::Instant::now() + self.options.commit_timeout;
        // Polling instead of a blocking send: this may be called on a runtime thread,
        // where tokio's blocking_send would panic.
        loop {
            match self.sender().try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    job = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(_)) => {
                    return Err(StoreError::QueueFull {
                        store: Location::clone(&self.location),
                        capacity: self.options.queue_capacity,
                    })
                }
                Err(TrySendError::Closed(_)) => return Err(self.stopped()),
            }
        }
        rx.recv().unwrap_or_else(|_| Err(self.stopped()))
    }

    fn transactions(&self) -> u64 {
        self.shared.transactions.load(Ordering::Relaxed)
    }

    fn location(&self) -> Location {
        Location::clone(&self.location)
    }

    fn heartbeat(&self, stale: Duration) -> Result<Option<Heartbeat>, StoreError> {
        let (done, rx) = std_mpsc::channel();
        let (reader, config, location) =
            (Arc::clone(&self.reader), Arc::clone(&self.config), Arc::clone(&self.location));
        let me = self.shared.writer.clone();
        self.runtime.spawn(async move {
            let _ = done.send(rows::heartbeat(&reader, &config, &location, &me, stale).await);
        });
        let live = rx.recv().unwrap_or_else(|_| Err(self.stopped()))?;
        Ok(Some(Heartbeat { me: self.shared.writer.clone(), live }))
    }

    fn subscribe(&self) -> Option<mpsc::UnboundedReceiver<ForeignChange>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (config, location) = (Arc::clone(&self.config), Arc::clone(&self.location));
        let retry = (self.options.retry_min, self.options.retry_max.max(self.options.retry_min));
        self.runtime.spawn(listen::run(config, location, self.shared.writer.clone(), tx, retry));
        Some(rx)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain what is queued, then return.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!(store = %self.location, "lease writer thread panicked");
            }
        }
    }
}

/// `host:pid`: distinct for every daemon, on one machine or several.
fn default_writer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// The connection settings of a libpq URL, with our defaults where it sets none.
fn config(url: &str, options: &PgOptions) -> Result<Config, StoreError> {
    let refuse = |reason: String| StoreError::UnsupportedSpec { spec: redacted(url), reason };
    let mut config: Config = url.parse().map_err(|e| refuse(format!("not a PostgreSQL URL libpq would take: {e}")))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(refuse(
            "sslmode=require: this dhcpv6d speaks no TLS; reach the database over a Unix socket or a \
             trusted network"
                .into(),
        ));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    if config.get_application_name().is_none() {
        // Shows in pg_stat_activity, so the DBA can tell our sessions apart.
        config.application_name("dhcpv6d");
    }
    // Notice a dead peer on TCP in about a minute rather than hours.
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// Connects and checks the session's durability. The connection is served by a task
/// on the current runtime; the returned handle ends it when dropped (closing the
/// socket, so the server rolls back what it had not committed).
async fn connect(config: &Config, location: &Location) -> Result<(Client, ConnectionTask), StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(pg_error(location, "connect"))?;
    let store = location.to_string();
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(%store, error = %message(&e), "lease database connection ended");
        }
    });
    let task = ConnectionTask(task);
    let row = client.query_one("SHOW synchronous_commit", &[]).await.map_err(pg_error(location, "connect"))?;
    let mode: String = row.try_get(0).map_err(pg_error(location, "connect"))?;
    if mode == "off" {
        // With it off, COMMIT returns before the WAL is flushed: a crash of the
        // database would lose leases that clients were told they have.
        warn!(store = %location, "synchronous_commit is off for this database; dhcpv6d turns it on for its sessions");
        client.batch_execute("SET synchronous_commit = on").await.map_err(pg_error(location, "connect"))?;
    }
    Ok((client, task))
}

/// The task serving one connection; aborted on drop.
#[derive(Debug)]
struct ConnectionTask(tokio::task::JoinHandle<()>);

impl ConnectionTask {
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn pg_error<'a>(location: &'a Location, action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + 'a {
    move |e| StoreError::Postgres { store: location.clone(), action, message: message(&e) }
}

/// The whole story of an error: the server's message and detail, or the chain of
/// causes (tokio-postgres' own Display says only "db error" or "error connecting").
fn message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            s.push_str(&format!(" ({detail})"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// True if the error means the session is gone (or going): the outcome of whatever
/// was in flight on it is unknown.
fn is_connection_loss(e: &tokio_postgres::Error, client: &Client) -> bool {
    if client.is_closed() || e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        // FATAL and PANIC end the session (e.g. the server shutting down).
        Some(db) => matches!(db.severity(), "FATAL" | "PANIC"),
        // Not the server's answer: I/O, protocol, or the connection task ending.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_gets_our_defaults_but_keeps_its_own_settings() {
        let options = PgOptions::default();
        let c = config("postgresql:///dhcpv6?host=/run/postgresql&port=5433&user=dhcp", &options).unwrap();
        assert_eq!(c.get_dbname(), Some("dhcpv6"));
        assert_eq!(c.get_user(), Some("dhcp"));
        assert_eq!(c.get_ports(), &[5433]);
        assert!(
            matches!(c.get_hosts(), [tokio_postgres::config::Host::Unix(p)] if p == std::path::Path::new("/run/postgresql"))
        );
        assert_eq!(c.get_application_name(), Some("dhcpv6d"));
        assert_eq!(c.get_connect_timeout(), Some(&options.connect_timeout));

        let c = config("postgres://db.example/x?connect_timeout=2&application_name=edge1", &options).unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(c.get_application_name(), Some("edge1"));
    }

    #[test]
    fn tls_required_and_malformed_urls_are_refused_without_the_password() {
        let err = config("postgresql://u:s3cret@db/x?sslmode=require", &PgOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedSpec { .. }), "{err}");
        assert!(err.to_string().contains("TLS") && !err.to_string().contains("s3cret"), "{err}");
        let err = config("postgresql://u:s3cret@db/x?port=notaport", &PgOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedSpec { .. }), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn no_server_fails_the_open_at_once_naming_the_database() {
        let dir = crate::leases::testutil::TempDir::new("pg-none");
        let url = format!("postgresql:///dhcpv6?host={}&port=5432&user=nobody", dir.path().display());
        let started = std::time::Instant::now();
        let err = PgStore::open(&url).unwrap_err();
        assert!(matches!(err, StoreError::Postgres { action: "connect", .. }), "{err}");
        assert!(err.to_string().contains("dhcpv6"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "a missing socket fails at once");
    }
}
