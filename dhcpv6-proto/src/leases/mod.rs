//! Durable lease store for stateful DHCPv6: IA_NA addresses and IA_PD prefixes
//! (RFC 9915).
//!
//! The operator-facing promise is "a crash loses no lease that a client was told it
//! has". The server keeps that promise by ordering: build the Reply, hand the lease
//! changes to [`LeaseStore::commit`], and send the Reply only after the returned
//! [`CommitTicket`] resolves `Ok`. If the ticket resolves with an error, the lease
//! may or may not be stored, so the Reply must not be sent (the client retransmits).
//!
//! * [`open`] (`spec.rs`) turns a `--lease-db` value into a store: a path is an SQLite
//!   file, a `postgresql://` or `postgres://` URL a PostgreSQL database; anything else
//!   that looks like a URL is refused rather than taken as a file name.
//! * [`SqliteStore`] (`sqlite.rs`): one SQLite file in WAL mode with `synchronous=FULL`,
//!   readable with the stock `sqlite3` tool, held by one daemon at a time (`lock.rs`).
//! * `group_commit.rs` holds its writer thread, which shares one fsync among all
//!   commits that queued up while the previous one was in flight, and times its steps
//!   ([`StoreTimings`]); `checkpoint.rs` copies the WAL into the database beside it, so
//!   that SQLite's auto-checkpoint inside a COMMIT finds little left to do.
//! * `rows.rs` is the SQLite table's row codec, shared by the two.
//! * [`PgStore`] (`postgres/`, cargo feature `postgres`): the same promise over a
//!   PostgreSQL database, with the same group commit, surviving the database going away.
//! * [`MemoryStore`] (`memory.rs`): a diskless store with the same semantics, for tests.
//! * `contract` (tests, and cargo feature `testing`): the behaviour every store must
//!   have, written once and run against each backend.
//!
//! The engine's own in-memory index of leases lives with the engine
//! (`server::stateful`), filled from [`LeaseStore::load_all`] at start.

mod checkpoint;
#[cfg(any(test, feature = "testing"))]
pub mod contract;
mod group_commit;
mod job;
mod lock;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod rows;
mod spec;
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgOptions, PgStore};
pub use spec::{open, open_for_inspection, StoreSpec};
pub use sqlite::{SqliteOptions, SqliteStore};

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

/// Longest DUID we accept: RFC 9915 §11.1 caps the DUID at 128 octets plus the
/// 2-octet type code.
pub const MAX_DUID_LEN: usize = 130;

/// Which IA option a lease belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseKind {
    /// A single address from an IA_NA.
    Address,
    /// A delegated prefix from an IA_PD.
    Prefix,
}

impl LeaseKind {
    /// Name used in the `kind` column; matches the IA option names operators know.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Address => "na",
            LeaseKind::Prefix => "pd",
        }
    }

    /// Inverse of [`LeaseKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "na" => Some(LeaseKind::Address),
            "pd" => Some(LeaseKind::Prefix),
            _ => None,
        }
    }
}

impl fmt::Display for LeaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Durable lease states. Offers are not stored: an Advertise promises nothing, so
/// losing it in a crash is harmless. A released lease is deleted rather than kept in
/// a "released" state, so every row in the store is a binding that blocks the
/// address or prefix from being handed to someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// Granted to the client by a Reply.
    Bound,
    /// The client sent a Decline (duplicate address detected); the address is held
    /// back from allocation until `valid_until`.
    Declined,
}

impl LeaseState {
    /// Name used in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Bound => "bound",
            LeaseState::Declined => "declined",
        }
    }

    /// Inverse of [`LeaseState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bound" => Some(LeaseState::Bound),
            "declined" => Some(LeaseState::Declined),
            _ => None,
        }
    }
}

impl fmt::Display for LeaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a binding: at most one lease exists per address or prefix.
///
/// Two different prefixes may still overlap (`2001:db8::/48` and `2001:db8::/56`);
/// preventing that is the allocator's job, not the store's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    pub kind: LeaseKind,
    pub addr: Ipv6Addr,
    /// 128 for addresses.
    pub prefix_len: u8,
}

impl LeaseKey {
    /// Why this key cannot be stored, if it cannot.
    fn problem(&self) -> Option<String> {
        match self.kind {
            LeaseKind::Address if self.prefix_len != 128 => {
                Some(format!("an address lease must have prefix_len 128, not {}", self.prefix_len))
            }
            LeaseKind::Prefix if !(1..=128).contains(&self.prefix_len) => {
                Some(format!("prefix_len {} is outside 1..=128", self.prefix_len))
            }
            LeaseKind::Prefix => {
                // Host bits must be zero, otherwise 2001:db8::1/48 and 2001:db8::/48
                // would be two distinct keys for the same prefix.
                let host_mask = u128::MAX.checked_shr(u32::from(self.prefix_len)).unwrap_or(0);
                (u128::from(self.addr) & host_mask != 0).then(|| "prefix has bits set beyond its length".to_string())
            }
            LeaseKind::Address => None,
        }
    }

    /// Errors with [`StoreError::InvalidLease`] if the key cannot be stored.
    pub fn validate(&self) -> Result<(), StoreError> {
        match self.problem() {
            None => Ok(()),
            Some(reason) => Err(StoreError::InvalidLease { key: *self, reason }),
        }
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.addr, self.prefix_len)
    }
}

/// One binding of an address or prefix to a client's IA.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub duid: Vec<u8>,
    pub iaid: u32,
    pub kind: LeaseKind,
    pub addr: Ipv6Addr,
    /// 128 for addresses.
    pub prefix_len: u8,
    /// Link name, or relay link id for relayed clients.
    pub iface: String,
    /// Unix seconds; the lease is expired from this instant on.
    pub valid_until: u64,
    /// Unix seconds; never later than `valid_until`.
    pub preferred_until: u64,
    pub state: LeaseState,
    /// For a delegated prefix: where its route points, so that the route can be put back
    /// after the machine restarts (the kernel keeps it only across a daemon restart).
    /// Boxed: most leases are addresses, and a lease population is held in memory.
    pub next_hop: Option<Box<NextHop>>,
    /// Unix seconds of the client transaction that last wrote this lease (a grant, renewal or
    /// rebind): leasequery's client last transaction time (RFC 5007 OPTION_CLT_TIME). 0 when
    /// unknown (rows stored before schema v3 of either backend).
    pub last_transaction: u64,
    /// What the relays said about the client when the lease was last written; `None` for a
    /// client on the link. Boxed for the same reason as `next_hop`.
    pub relay: Option<Box<RelayRecord>>,
}

/// The relay identities of a relayed client's lease, as the Relay-Forward that last wrote it
/// carried them (RFC 9915 section 9; Interface-ID 21.18, Remote-ID RFC 4649, Subscriber-ID RFC
/// 4580, Relay-ID RFC 5460, client link-layer address RFC 6939). What leasequery answers by
/// (relay id, link address, remote id) and returns (OPTION_LQ_RELAY_DATA's peer-address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayRecord {
    /// The link-address that selected the client's link (innermost level that set one), or
    /// `::` when every level left it unspecified.
    pub link_address: Ipv6Addr,
    /// Peer-address of the innermost level: the client's address as the relay next to it saw it.
    pub peer_address: Ipv6Addr,
    /// Source address of the Relay-Forward datagram (the outermost relay).
    pub source: Ipv6Addr,
    pub interface_id: Option<Vec<u8>>,
    /// Remote-ID option data, whole: 4-byte enterprise number then the id.
    pub remote_id: Option<Vec<u8>>,
    pub subscriber_id: Option<Vec<u8>>,
    /// Relay-ID option data (a DUID, RFC 5460 section 5.4.1).
    pub relay_id: Option<Vec<u8>>,
    /// Client link-layer address option data, whole: 2-byte hardware type then the address.
    pub client_linklayer: Option<Vec<u8>>,
}

impl RelayRecord {
    /// A stored record from the eight relay columns both backends keep, the first at index
    /// `first`, each read by the backend's `addr` or `bytes`: the three addresses are set
    /// together (relayed) or all NULL (a client on the link, `None`).
    pub(crate) fn from_columns(
        first: usize,
        addr: impl Fn(usize, &str) -> Result<Option<Ipv6Addr>, String>,
        bytes: impl Fn(usize, &str) -> Result<Option<Vec<u8>>, String>,
    ) -> Result<Option<Box<Self>>, String> {
        let addrs = (
            addr(first, "relay_link_address")?,
            addr(first + 1, "relay_peer_address")?,
            addr(first + 2, "relay_source")?,
        );
        let (link_address, peer_address, source) = match addrs {
            (None, None, None) => return Ok(None),
            (Some(l), Some(p), Some(s)) => (l, p, s),
            _ => return Err("relay_link_address, relay_peer_address and relay_source must be set together".into()),
        };
        Ok(Some(Box::new(RelayRecord {
            link_address,
            peer_address,
            source,
            interface_id: bytes(first + 3, "relay_interface_id")?,
            remote_id: bytes(first + 4, "relay_remote_id")?,
            subscriber_id: bytes(first + 5, "relay_subscriber_id")?,
            relay_id: bytes(first + 6, "relay_id")?,
            client_linklayer: bytes(first + 7, "relay_client_linklayer")?,
        })))
    }
}

impl Default for RelayRecord {
    /// Every address unspecified, no identifier.
    fn default() -> Self {
        RelayRecord {
            link_address: Ipv6Addr::UNSPECIFIED,
            peer_address: Ipv6Addr::UNSPECIFIED,
            source: Ipv6Addr::UNSPECIFIED,
            interface_id: None,
            remote_id: None,
            subscriber_id: None,
            relay_id: None,
            client_linklayer: None,
        }
    }
}

/// What a leasequery (RFC 5007, RFC 5460) asks the store for. Answers hold every stored lease
/// that matches, expired and declined ones included: the caller decides what a binding is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LeaseFilter {
    /// The address lease of this address, and every prefix lease containing it.
    Address(Ipv6Addr),
    /// Every lease of this DUID.
    Client(Vec<u8>),
    /// Every lease written through a relay that sent this Relay-ID.
    RelayId(Vec<u8>),
    /// Every lease whose relay record's link-address is this one.
    LinkAddress(Ipv6Addr),
    /// Every lease whose relay record's Remote-ID (whole option data) is this one.
    RemoteId(Vec<u8>),
}

impl LeaseFilter {
    /// Whether `lease` is one this filter asks for.
    pub fn matches(&self, lease: &Lease) -> bool {
        let relay = lease.relay.as_deref();
        match self {
            LeaseFilter::Address(a) => match lease.kind {
                LeaseKind::Address => lease.addr == *a,
                LeaseKind::Prefix => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(lease.prefix_len)).unwrap_or(0);
                    u128::from(*a) & mask == u128::from(lease.addr)
                }
            },
            LeaseFilter::Client(duid) => lease.duid == *duid,
            LeaseFilter::RelayId(id) => relay.and_then(|r| r.relay_id.as_ref()) == Some(id),
            LeaseFilter::LinkAddress(a) => relay.is_some_and(|r| r.link_address == *a),
            LeaseFilter::RemoteId(id) => relay.and_then(|r| r.remote_id.as_ref()) == Some(id),
        }
    }
}

/// The route to a delegated prefix: via the client (or its relay) out of the interface
/// the request arrived on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextHop {
    pub via: Ipv6Addr,
    pub dev: String,
}

impl Lease {
    pub fn key(&self) -> LeaseKey {
        LeaseKey { kind: self.kind, addr: self.addr, prefix_len: self.prefix_len }
    }

    /// True once the valid lifetime has run out at `now` (unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        self.valid_until <= now
    }

    /// Why this lease cannot be stored, if it cannot. Shared by the write path
    /// (reject before queueing) and the load path (detect corrupt rows).
    pub(crate) fn problem(&self) -> Option<String> {
        if let Some(reason) = self.key().problem() {
            return Some(reason);
        }
        if self.duid.is_empty() || self.duid.len() > MAX_DUID_LEN {
            return Some(format!("DUID length {} is outside 1..={MAX_DUID_LEN}", self.duid.len()));
        }
        if self.preferred_until > self.valid_until {
            return Some("preferred_until is later than valid_until".to_string());
        }
        // SQLite integers are signed 64-bit.
        if i64::try_from(self.valid_until).is_err() {
            return Some("valid_until does not fit a signed 64-bit integer".to_string());
        }
        if i64::try_from(self.last_transaction).is_err() {
            return Some("last_transaction does not fit a signed 64-bit integer".to_string());
        }
        None
    }

    /// Errors with [`StoreError::InvalidLease`] if the lease cannot be stored.
    pub fn validate(&self) -> Result<(), StoreError> {
        match self.problem() {
            None => Ok(()),
            Some(reason) => Err(StoreError::InvalidLease { key: self.key(), reason }),
        }
    }
}

/// One change to the store. A commit applies a list of these atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOp {
    /// Insert the lease, or replace the one with the same [`LeaseKey`].
    Upsert(Lease),
    /// Delete the lease with this key (Release, or reclaiming a binding). Removing a
    /// key that is not stored is not an error.
    Remove { kind: LeaseKind, addr: Ipv6Addr, prefix_len: u8 },
}

impl LeaseOp {
    pub fn remove(key: LeaseKey) -> Self {
        LeaseOp::Remove { kind: key.kind, addr: key.addr, prefix_len: key.prefix_len }
    }

    pub fn key(&self) -> LeaseKey {
        match self {
            LeaseOp::Upsert(lease) => lease.key(),
            LeaseOp::Remove { kind, addr, prefix_len } => {
                LeaseKey { kind: *kind, addr: *addr, prefix_len: *prefix_len }
            }
        }
    }

    pub fn validate(&self) -> Result<(), StoreError> {
        match self {
            LeaseOp::Upsert(lease) => lease.validate(),
            LeaseOp::Remove { .. } => self.key().validate(),
        }
    }
}

/// Where a store keeps its leases, as errors and logs name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file.
    File(PathBuf),
    /// A PostgreSQL database, described without its password.
    Database(String),
    /// A [`MemoryStore`].
    Memory,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Database(name) => f.write_str(name),
            Location::Memory => f.write_str("(memory)"),
        }
    }
}

/// The `--lease-db` forms, for error messages.
pub const SUPPORTED_FORMS: &str = "a file path (SQLite, e.g. /var/lib/dhcpv6d/leases.db) or a PostgreSQL URL \
     in libpq's form (postgresql://USER@HOST:PORT/DB, or postgresql:///DB?host=/run/postgresql&port=5432&user=dhcp \
     for a Unix socket; postgres:// works too)";

/// Errors of the lease store. `Clone` because one failed transaction is reported to
/// every commit that shared it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The `--lease-db` value is neither a path nor a supported URL.
    #[error("lease store {spec:?}: {reason}; --lease-db takes {SUPPORTED_FORMS}")]
    UnsupportedSpec { spec: String, reason: String },
    #[error("lease store {path}: cannot create its directory: {source}")]
    CreateDir { path: PathBuf, source: Arc<std::io::Error> },
    /// Another process holds the SQLite file: two daemons sharing one file would give
    /// the same address to two clients.
    #[error(
        "lease store {path} is in use by another dhcpv6d{}: it holds the lock {lock}. Two daemons \
         must not share one SQLite file (each would hand out addresses the other already gave): \
         give each daemon its own --lease-db, or share leases through PostgreSQL",
        holder.map_or_else(String::new, |pid| format!(" (pid {pid})"))
    )]
    Locked { path: PathBuf, lock: PathBuf, holder: Option<u32> },
    #[error("lease store {path}: cannot take the lock {lock}: {source}")]
    Lock { path: PathBuf, lock: PathBuf, source: Arc<std::io::Error> },
    #[error("lease store {path}: {action}: {source}")]
    Sqlite {
        path: PathBuf,
        /// What the store was doing, e.g. "open" or "commit".
        action: &'static str,
        source: Arc<rusqlite::Error>,
    },
    /// A PostgreSQL error. Rolled back: nothing of the failed transaction is stored.
    #[error("lease store {store}: {action}: {message}")]
    Postgres { store: Location, action: &'static str, message: String },
    /// The database cannot be reached; the store is reconnecting. The commit was not
    /// sent, so nothing of it is stored. The caller should count these and drop the
    /// request (the client retransmits); the store logs the outage itself, once.
    #[error("lease store {store}: database unreachable, reconnecting; new leases are refused until it is back")]
    Unavailable { store: Location },
    /// The connection was lost (or the database stopped answering) while the commit
    /// was in flight: it may or may not be stored, so the Reply must not be sent.
    #[error("lease store {store}: {reason}; the commit's outcome is unknown")]
    OutcomeUnknown { store: Location, reason: String },
    /// The disk (or the file system's quota) has no room for the write. Nothing of the
    /// failed transaction is kept; commits work again once room is made. The source is the
    /// backend's own error (SQLite's SQLITE_FULL, an ENOSPC).
    #[error("lease store {path}: {action}: disk full: {source}")]
    Full { path: PathBuf, action: &'static str, source: Arc<dyn std::error::Error + Send + Sync> },
    /// The file at the store's path is no longer the one it opened (deleted, or replaced by
    /// another file): a lease written now would not be there for the next start.
    #[error(
        "lease store {path}: the database file was deleted or replaced while open; \
         not writing to it (restart dhcpv6d to use the file now at that path)"
    )]
    Lost { path: PathBuf },
    #[error(
        "lease store {store}: schema version {found} is not one this dhcpv6d knows \
         (newest: {supported}); refusing to use it"
    )]
    UnsupportedSchema { store: Location, found: i64, supported: i64 },
    #[error("lease store {path}: journal_mode is {mode:?} but WAL is required")]
    NotWal { path: PathBuf, mode: String },
    #[error("lease store {store}: cannot start the writer thread: {source}")]
    SpawnWriter { store: Location, source: Arc<std::io::Error> },
    /// The commit queue is full: the store cannot keep up. The commit was not queued;
    /// the caller should drop the request (the client retransmits) rather than wait.
    #[error("lease store {store}: commit queue full ({capacity} commits pending)")]
    QueueFull { store: Location, capacity: usize },
    /// The writer thread is gone (shut down or panicked). The outcome of the commit
    /// is unknown, so the Reply must not be sent.
    #[error("lease store {store}: writer thread stopped; commit outcome unknown")]
    WriterStopped { store: Location },
    #[error("invalid lease {key}: {reason}")]
    InvalidLease { key: LeaseKey, reason: String },
    /// Another server sharing the database holds `key` for another client. Nothing of the
    /// commit is stored and its Reply must not be sent; `holder` is the binding found (if
    /// it could be read), for the engine to learn so that it offers something else.
    #[error("lease store {store}: {key} is held by another client (granted by another server)")]
    Conflict { store: Location, key: LeaseKey, holder: Option<Box<Lease>> },
}

/// A change another server sharing the store made (see [`LeaseStore::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForeignChange {
    /// The binding as it now stands in the store.
    Upsert(Lease),
    /// The row for `key` was deleted; it ended at `valid_until`. A copy that ends later
    /// was extended since and stays.
    Remove { key: LeaseKey, valid_until: u64 },
}

/// Why the store as a whole cannot record leases now, as opposed to one commit's own
/// problem (an invalid lease, a queue momentarily full under load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outage {
    /// No room on the disk (ENOSPC, quota).
    Full,
    /// The disk or file system reports I/O errors.
    Io,
    /// The writer is gone: nothing more will be written by this process.
    Stopped,
    /// The database file was deleted or replaced under the running store.
    Lost,
    /// A database server cannot be reached (PostgreSQL: connection lost, reconnecting), or
    /// stopped answering in the middle of a commit.
    Unreachable,
    /// Anything else the database refuses with: read-only file system, a lock held for
    /// longer than the busy timeout, corruption.
    Other,
}

impl Outage {
    /// Short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outage::Full => "full",
            Outage::Io => "io",
            Outage::Stopped => "stopped",
            Outage::Lost => "lost",
            Outage::Unreachable => "unreachable",
            Outage::Other => "other",
        }
    }
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StoreError {
    /// The outage this failed commit reveals, or `None` when the fault lies with the
    /// commit (invalid lease) or with the moment (queue full), not with the store.
    pub fn outage(&self) -> Option<Outage> {
        match self {
            StoreError::Full { .. } => Some(Outage::Full),
            StoreError::Lost { .. } => Some(Outage::Lost),
            StoreError::Sqlite { source, .. } => Some(match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DiskFull) => Outage::Full,
                Some(rusqlite::ErrorCode::SystemIoFailure) => Outage::Io,
                _ => Outage::Other,
            }),
            StoreError::WriterStopped { .. } | StoreError::SpawnWriter { .. } => Some(Outage::Stopped),
            StoreError::CreateDir { .. } => Some(Outage::Io),
            StoreError::UnsupportedSchema { .. } | StoreError::NotWal { .. } => Some(Outage::Other),
            StoreError::Unavailable { .. } | StoreError::OutcomeUnknown { .. } => Some(Outage::Unreachable),
            StoreError::Postgres { .. } => Some(Outage::Other),
            // Refused at open, before the daemon serves: never the outcome of a commit.
            StoreError::UnsupportedSpec { .. } | StoreError::Locked { .. } | StoreError::Lock { .. } => {
                Some(Outage::Other)
            }
            // Another server holds the binding: the store works, the claim lost.
            StoreError::Conflict { .. } => None,
            StoreError::QueueFull { .. } | StoreError::InvalidLease { .. } => None,
        }
    }
}

/// Resolves once the commit it stands for is durable, or has failed.
///
/// Dropping a ticket does not cancel the commit; it only gives up on the answer.
#[derive(Debug)]
#[must_use = "a lease is durable only once its ticket resolves Ok: wait before sending the Reply"]
pub struct CommitTicket(TicketState);

#[derive(Debug)]
enum TicketState {
    Resolved(Result<(), StoreError>),
    Pending { rx: oneshot::Receiver<Result<(), StoreError>>, store: Arc<Location> },
}

impl CommitTicket {
    /// A ticket that is already resolved (diskless stores, rejected commits).
    pub fn resolved(result: Result<(), StoreError>) -> Self {
        CommitTicket(TicketState::Resolved(result))
    }

    pub(crate) fn pending(rx: oneshot::Receiver<Result<(), StoreError>>, store: Arc<Location>) -> Self {
        CommitTicket(TicketState::Pending { rx, store })
    }

    /// Waits in async code for the commit to be durable.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            TicketState::Resolved(result) => result,
            TicketState::Pending { rx, store } => {
                rx.await.unwrap_or_else(|_| Err(StoreError::WriterStopped { store: Location::clone(&store) }))
            }
        }
    }

    /// Blocks the calling thread until the commit is durable.
    ///
    /// # Panics
    /// When called from inside an async runtime (tokio forbids blocking there); use
    /// [`CommitTicket::wait`] instead.
    pub fn wait_blocking(self) -> Result<(), StoreError> {
        match self.0 {
            TicketState::Resolved(result) => result,
            TicketState::Pending { rx, store } => {
                rx.blocking_recv().unwrap_or_else(|_| Err(StoreError::WriterStopped { store: Location::clone(&store) }))
            }
        }
    }
}

/// A place where leases survive restarts.
///
/// `commit` never blocks; `load_all` and `reclaim_expired` do I/O and may block, so
/// async callers should run them under `tokio::task::spawn_blocking`.
pub trait LeaseStore: Send + Sync {
    /// Every stored lease, expired ones included, in unspecified order. Rows that
    /// cannot be decoded are logged and skipped.
    fn load_all(&self) -> Result<Vec<Lease>, StoreError>;

    /// Applies `ops` atomically, in order. The ticket resolves `Ok` only once they
    /// are durable. An invalid op fails the whole commit before anything is written.
    fn commit(&self, ops: Vec<LeaseOp>) -> CommitTicket;

    /// Deletes every lease (bound or declined) whose `valid_until <= now` and
    /// returns what was deleted. Runs atomically with respect to commits, so a lease
    /// extended concurrently is either extended or deleted, never half of each; the
    /// caller should still drop a returned lease from its own index only if its copy
    /// is expired too.
    fn reclaim_expired(&self, now: u64) -> Result<Vec<Lease>, StoreError>;

    /// The stored leases `filter` asks for (leasequery), in unspecified order. May block. The
    /// default reads every lease; stores with indexes answer from those.
    fn query(&self, filter: &LeaseFilter) -> Result<Vec<Lease>, StoreError> {
        Ok(self.load_all()?.into_iter().filter(|l| filter.matches(l)).collect())
    }

    /// A write that changes no lease, to learn whether the store can write again after an
    /// outage. The default commits nothing; a store whose empty commit does not touch the
    /// disk should write something real (and leave no trace of it).
    fn probe(&self) -> CommitTicket {
        self.commit(Vec::new())
    }

    /// Number of transactions written since the store was opened (for metrics: with
    /// group commit this grows much slower than the number of commits).
    fn transactions(&self) -> u64;

    /// Where the leases are kept, for logs (a database URL without its password).
    /// Stores that keep nothing outside the process (test doubles) may leave this.
    fn location(&self) -> Location {
        Location::Memory
    }

    /// Changes other servers make to a shared store, as they commit (and, after the
    /// store lost and regained its database, every binding they hold). `None` for stores
    /// one daemon owns. Call once; the feed ends when the receiver is dropped.
    /// How long the store's writer spends per transaction, by step, if it measures that.
    fn timings(&self) -> Option<std::sync::Arc<StoreTimings>> {
        None
    }

    fn subscribe(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ForeignChange>> {
        None
    }

    /// Whether this daemon alone writes the leases (SQLite, memory): only then may it promise
    /// that a row it extended stays extended, which Renews answered in XDP rely on
    /// (`xdp_renew`). A store several servers share (PostgreSQL) says no: another box may
    /// shorten or end a lease at any moment without this daemon hearing of it first.
    fn single_writer(&self) -> bool {
        true
    }

    /// Several boxes on one store (the load split): records that this box is alive now and
    /// returns the boxes whose last heartbeat is at most `stale` old, by the store's clock.
    /// `None` for stores one daemon owns. Does I/O: call from a blocking task.
    fn heartbeat(&self, stale: std::time::Duration) -> Result<Option<Heartbeat>, StoreError> {
        let _ = stale;
        Ok(None)
    }
}

/// What [`LeaseStore::heartbeat`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// This box's name (its `written_by`).
    pub me: String,
    /// The boxes alive, sorted by name (this one included once its heartbeat is stored).
    pub live: Vec<String>,
}

/// Current time in unix seconds, the unit of `valid_until` and `preferred_until`.
/// The writer's own view of a commit's way to disk (SQLite): where a stall on the commit path
/// sits, told apart from the wait of the queue before it.
pub struct StoreTimings {
    /// BEGIN and the statements of one batch.
    pub write: crate::stats::Histogram,
    /// COMMIT: the WAL's append and fsync. A checkpoint that SQLite ran inside it (its
    /// default auto-checkpoint) would show here.
    pub sync: crate::stats::Histogram,
    /// WAL checkpoints, run by their own thread off the commit path.
    pub checkpoint: crate::stats::Histogram,
    /// Jobs (commits, probes, reclaims) over every transaction: their mean batch with
    /// `LeaseStore::transactions`.
    pub jobs: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for StoreTimings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreTimings").field("jobs", &self.jobs).finish_non_exhaustive()
    }
}

impl Default for StoreTimings {
    fn default() -> Self {
        let h = || crate::stats::Histogram::new(&crate::stats::PHASE_BUCKETS);
        Self { write: h(), sync: h(), checkpoint: h(), jobs: std::sync::atomic::AtomicU64::new(0) }
    }
}

pub fn unix_now() -> u64 {
    // A clock before 1970 is a broken clock; treating it as 0 keeps leases alive
    // rather than reclaiming them all.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A unique directory under the system temp dir, removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let dir = std::env::temp_dir().join(format!(
                "dhcpv6-leases-{tag}-{}-{}-{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub use super::contract::{address, prefix};
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn kind_and_state_names_round_trip() {
        for kind in [LeaseKind::Address, LeaseKind::Prefix] {
            assert_eq!(LeaseKind::parse(kind.as_str()), Some(kind));
        }
        for state in [LeaseState::Bound, LeaseState::Declined] {
            assert_eq!(LeaseState::parse(state.as_str()), Some(state));
        }
        assert_eq!(LeaseKind::parse("ta"), None);
    }

    #[test]
    fn validation() {
        assert!(address(1).validate().is_ok());
        assert!(prefix(1).validate().is_ok());

        let mut l = address(1);
        l.prefix_len = 64;
        assert!(matches!(l.validate(), Err(StoreError::InvalidLease { .. })));

        let mut p = prefix(1);
        p.addr = "2001:db8::1".parse().unwrap();
        assert!(p.validate().is_err(), "host bits set");
        p.prefix_len = 0;
        assert!(p.validate().is_err());
        p.prefix_len = 129;
        assert!(p.validate().is_err());

        let mut l = address(1);
        l.duid.clear();
        assert!(l.validate().is_err());
        let mut l = address(1);
        l.preferred_until = l.valid_until + 1;
        assert!(l.validate().is_err());
        let mut l = address(1);
        l.valid_until = u64::MAX;
        l.preferred_until = 0;
        assert!(l.validate().is_err());
    }

    #[test]
    fn resolved_ticket() {
        assert!(CommitTicket::resolved(Ok(())).wait_blocking().is_ok());
    }
}

#[cfg(test)]
mod contract_tests {
    use super::contract::{self, Backend};
    use super::testutil::TempDir;
    use super::*;

    struct Sqlite(TempDir);

    impl Backend for Sqlite {
        fn open(&self) -> Arc<dyn LeaseStore> {
            Arc::new(SqliteStore::open(self.0.path().join("leases.db")).expect("open the SQLite store"))
        }
    }

    /// "Reopening" a memory store is taking the same one again.
    struct Memory(Arc<MemoryStore>);

    impl Backend for Memory {
        fn open(&self) -> Arc<dyn LeaseStore> {
            Arc::clone(&self.0) as Arc<dyn LeaseStore>
        }

        fn groups_commits(&self) -> bool {
            false
        }
    }

    #[test]
    fn sqlite_store_meets_the_contract() {
        contract::run_all(|name| Box::new(Sqlite(TempDir::new(name))));
    }

    #[test]
    fn memory_store_meets_the_contract() {
        contract::run_all(|_| Box::new(Memory(Arc::new(MemoryStore::new()))));
    }
}
