//! Durable lease store for stateful DHCPv6: IA_NA addresses and IA_PD prefixes
//! (RFC 9915).
//!
//! The operator-facing promise is "a crash loses no lease that a client was told it
//! has". The server keeps that promise by ordering: build the Reply, hand the lease
//! changes to [`LeaseStore::commit`], and send the Reply only after the returned
//! [`CommitTicket`] resolves `Ok`. If the ticket resolves with an error, the lease
//! may or may not be on disk, so the Reply must not be sent (the client retransmits).
//!
//! * [`SqliteStore`] (`sqlite.rs`) is the production store: one SQLite file in WAL
//!   mode with `synchronous=FULL`, readable with the stock `sqlite3` tool.
//! * `group_commit.rs` holds its writer thread, which shares one fsync among all
//!   commits that queued up while the previous one was in flight.
//! * `rows.rs` is the table's row codec, shared by the two.
//! * [`MemoryStore`] (`memory.rs`): a diskless store with the same semantics, for tests.
//!
//! The engine's own in-memory index of leases lives with the engine
//! (`server::stateful`), filled from [`LeaseStore::load_all`] at start.

mod group_commit;
mod memory;
mod rows;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::{SqliteOptions, SqliteStore};

use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
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

/// Errors of the lease store. `Clone` because one failed transaction is reported to
/// every commit that shared it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("lease store {path}: cannot create its directory: {source}")]
    CreateDir { path: PathBuf, source: Arc<std::io::Error> },
    #[error("lease store {path}: {action}: {source}")]
    Sqlite {
        path: PathBuf,
        /// What the store was doing, e.g. "open" or "commit".
        action: &'static str,
        source: Arc<rusqlite::Error>,
    },
    #[error(
        "lease store {path}: schema version {found} is not one this dhcpv6d knows \
         (newest: {supported}); refusing to use it"
    )]
    UnsupportedSchema { path: PathBuf, found: i64, supported: i64 },
    #[error("lease store {path}: journal_mode is {mode:?} but WAL is required")]
    NotWal { path: PathBuf, mode: String },
    #[error("lease store {path}: cannot start the writer thread: {source}")]
    SpawnWriter { path: PathBuf, source: Arc<std::io::Error> },
    /// The commit queue is full: the disk cannot keep up. The commit was not queued;
    /// the caller should drop the request (the client retransmits) rather than wait.
    #[error("lease store {path}: commit queue full ({capacity} commits pending)")]
    QueueFull { path: PathBuf, capacity: usize },
    /// The writer thread is gone (shut down or panicked). The outcome of the commit
    /// is unknown, so the Reply must not be sent.
    #[error("lease store {path}: writer thread stopped; commit outcome unknown")]
    WriterStopped { path: PathBuf },
    #[error("invalid lease {key}: {reason}")]
    InvalidLease { key: LeaseKey, reason: String },
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
    Pending { rx: oneshot::Receiver<Result<(), StoreError>>, path: Arc<Path> },
}

impl CommitTicket {
    /// A ticket that is already resolved (diskless stores, rejected commits).
    pub fn resolved(result: Result<(), StoreError>) -> Self {
        CommitTicket(TicketState::Resolved(result))
    }

    pub(crate) fn pending(rx: oneshot::Receiver<Result<(), StoreError>>, path: Arc<Path>) -> Self {
        CommitTicket(TicketState::Pending { rx, path })
    }

    /// Waits in async code for the commit to be durable.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            TicketState::Resolved(result) => result,
            TicketState::Pending { rx, path } => {
                rx.await.unwrap_or_else(|_| Err(StoreError::WriterStopped { path: path.to_path_buf() }))
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
            TicketState::Pending { rx, path } => {
                rx.blocking_recv().unwrap_or_else(|_| Err(StoreError::WriterStopped { path: path.to_path_buf() }))
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

    /// Number of transactions written since the store was opened (for metrics: with
    /// group commit this grows much slower than the number of commits).
    fn transactions(&self) -> u64;
}

/// Current time in unix seconds, the unit of `valid_until` and `preferred_until`.
pub fn unix_now() -> u64 {
    // A clock before 1970 is a broken clock; treating it as 0 keeps leases alive
    // rather than reclaiming them all.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
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

    /// Address lease number `n` of a client derived from `n`.
    pub fn address(n: u32) -> Lease {
        Lease {
            duid: vec![0, 1, 0, 1, (n >> 24) as u8, (n >> 16) as u8, (n >> 8) as u8, n as u8],
            iaid: n,
            kind: LeaseKind::Address,
            addr: Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(n)),
            prefix_len: 128,
            iface: "eth1".to_string(),
            valid_until: 2_000_000_000,
            preferred_until: 1_999_999_000,
            state: LeaseState::Bound,
            next_hop: None,
        }
    }

    /// Delegated /56 number `n`.
    pub fn prefix(n: u32) -> Lease {
        Lease {
            kind: LeaseKind::Prefix,
            addr: Ipv6Addr::from(0x2001_0db8_8000_0000_0000_0000_0000_0000u128 | (u128::from(n) << 72)),
            prefix_len: 56,
            iface: "relay:10.0.0.1/3".to_string(),
            next_hop: Some(Box::new(NextHop {
                via: Ipv6Addr::from(0x2001_0db8_ffff_0000_0000_0000_0000_0000u128 | u128::from(n)),
                dev: "eth1".to_string(),
            })),
            ..address(n)
        }
    }
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
