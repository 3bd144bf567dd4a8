//! Renews answered in XDP (`xdp_renew`): the daemon's side of `DHCPV6_RENEWS`.
//!
//! The invariant: an entry is in the map only while the store durably holds its lease with a
//! valid-until at least the entry's deadline plus the valid lifetime the entry tells. Then a
//! Reply the kernel sends, whenever the daemon dies, never tells a client a lifetime the
//! store does not cover. It is kept by order alone:
//!
//! * entries are put only after the commit that stored their lease's expiry is durable
//!   (`put_durable`, after a pre-extension batch), and only while the engine still holds
//!   exactly the lease that commit stored;
//! * every other commit that touches a lease (a client's Request, Renew, Rebind, Release,
//!   Decline, the expiry sweep, an operator's release) deletes the lease's entry before it is
//!   queued (`forget`), under the engine's lock, so that no put can slip in between; a delete
//!   the kernel refuses stops the commit (the message is dropped and counted);
//! * a reload, and any change of the interfaces XDP answers Renews on, deletes every entry
//!   (`flush`): lifetimes, options, reservations or links may have changed; the leases go
//!   back in the queue and the next batches put them again;
//! * at start the map is emptied before anything is put: a previous process's entries are
//!   never trusted.
//!
//! Candidates come from a queue, not from walks of the lease population: every lease a
//! userspace commit touched (once durable), and every lease at start and after a flush. The
//! batch (`StatefulService`'s task, every `BATCH_INTERVAL`) takes at most `BATCH_MAX` keys,
//! lets `Engine::pre_extend` decide which qualify, commits their longer expiry in one
//! transaction, then puts their entries. An entry stops answering at its deadline; the next
//! Renew goes up, userspace answers it, and the queue takes the lease again.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use dhcpv6_common::{IfaceKey, RenewEntry, RenewKey, MAP_RENEWS};
use tracing::{debug, info, warn};

use crate::{
    leases::{LeaseKey, LeaseOp},
    server::stateful::{fast_renew, Engine, PreExtendPolicy, Renewable},
    stats::{Counter, UserStats},
};

/// How often a batch runs.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Leases one batch considers at most (one transaction; its entries are put under the
/// engine's lock in chunks of `PUT_CHUNK`).
pub const BATCH_MAX: usize = 1024;
pub const PUT_CHUNK: usize = 256;
/// Seconds between an entry's deadline and what the store covers, and between the deadline
/// the daemon computes and the one it writes (clock conversion, a slow put).
pub const MARGIN: u32 = 10;

/// The kernel's map, or a stand-in for tests.
pub trait RenewMap: Send + Sync {
    fn put(&self, key: &RenewKey, entry: &RenewEntry) -> Result<()>;
    /// A key that is not there is not an error.
    fn delete(&self, key: &RenewKey) -> Result<()>;
    /// Deletes every entry; returns how many there were.
    fn clear(&self) -> Result<usize>;
}

/// `DHCPV6_RENEWS` as pinned under the pin folder: a descriptor of its own, so that the
/// workers can delete entries without the server loop's dataplane.
pub struct PinnedRenews(Mutex<BpfHashMap<MapData, RenewKey, RenewEntry>>);

impl PinnedRenews {
    pub fn open(pin_dir: &Path) -> Result<Self> {
        let path = pin_dir.join(MAP_RENEWS);
        let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
        let map = BpfHashMap::try_from(aya::maps::Map::HashMap(data)).context("DHCPV6_RENEWS is not a hash map")?;
        Ok(Self(Mutex::new(map)))
    }

    fn map(&self) -> MutexGuard<'_, BpfHashMap<MapData, RenewKey, RenewEntry>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn absent(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

impl RenewMap for PinnedRenews {
    fn put(&self, key: &RenewKey, entry: &RenewEntry) -> Result<()> {
        // BPF_ANY: a whole element replaced in one syscall; the program checks the seal.
        self.map().insert(key, entry, 0).context("DHCPV6_RENEWS update")
    }

    fn delete(&self, key: &RenewKey) -> Result<()> {
        match self.map().remove(key) {
            Err(e) if !absent(&e) => Err(e).context("DHCPV6_RENEWS delete"),
            _ => Ok(()),
        }
    }

    fn clear(&self) -> Result<usize> {
        let mut map = self.map();
        let keys: Vec<RenewKey> = map.keys().filter_map(Result::ok).collect();
        for k in &keys {
            if let Err(e) = map.remove(k) {
                if !absent(&e) {
                    return Err(e).context("DHCPV6_RENEWS delete");
                }
            }
        }
        Ok(keys.len())
    }
}

/// The entries the daemon put for one lease: one per interface its link is reached by (the
/// command line's pools, `DEFAULT_LINK`, serve every interface without pools of its own).
#[derive(Debug, Clone)]
struct Put {
    keys: Vec<RenewKey>,
    /// Unix seconds: the deadline it was put with.
    answer_until: u64,
}

#[derive(Default)]
struct Inner {
    by_lease: HashMap<LeaseKey, Put>,
    by_entry: HashMap<RenewKey, LeaseKey>,
    deadlines: BTreeSet<(u64, LeaseKey)>,
    queue: VecDeque<LeaseKey>,
    queued: HashSet<LeaseKey>,
    /// Links whose clients' Renews XDP answers, by name: the ifindexes of the interfaces
    /// (reply data with `IFACE_RENEW`) their direct clients arrive on.
    ifaces: HashMap<String, Vec<u32>>,
    /// Bumped by every flush: a batch decided before one puts nothing.
    generation: u64,
}

impl Inner {
    fn enqueue(&mut self, key: LeaseKey) {
        if self.queued.insert(key) {
            self.queue.push_back(key);
        }
    }

    fn drop_entry(&mut self, lease: &LeaseKey) -> Option<Put> {
        let put = self.by_lease.remove(lease)?;
        for k in &put.keys {
            self.by_entry.remove(k);
        }
        self.deadlines.remove(&(put.answer_until, *lease));
        Some(put)
    }
}

/// The daemon's record of `DHCPV6_RENEWS` and the queue of leases to pre-extend.
pub struct FastRenew {
    map: Box<dyn RenewMap>,
    window: u32,
    inner: Mutex<Inner>,
    stats: Arc<UserStats>,
}

/// A batch taken from the queue: the keys, and the generation they were taken in.
pub struct Batch {
    pub keys: Vec<LeaseKey>,
    generation: u64,
}

impl FastRenew {
    /// Over `map`, which it empties first (`Err`: the map cannot be emptied; the feature
    /// must stay off).
    pub fn new(map: Box<dyn RenewMap>, window: u32, stats: Arc<UserStats>) -> Result<Self> {
        let left = map.clear().context("emptying DHCPV6_RENEWS")?;
        if left > 0 {
            info!(entries = left, "removed Renew entries a previous daemon left");
        }
        Ok(Self { map, window, inner: Mutex::default(), stats })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes the entries of the leases `ops` touch, before their commit is queued. Call
    /// under the engine's lock. `Err`: an entry could not be deleted; do not commit.
    pub fn forget(&self, ops: &[LeaseOp]) -> Result<()> {
        let mut inner = self.inner();
        if inner.by_lease.is_empty() {
            return Ok(());
        }
        for op in ops {
            let key = op.key();
            let Some(put) = inner.by_lease.get(&key).cloned() else { continue };
            self.delete_all(&put.keys).inspect_err(|e| {
                warn!(lease = %key, error = %format!("{e:#}"), "cannot delete a Renew entry; the change is not committed");
            })?;
            inner.drop_entry(&key);
        }
        Ok(())
    }

    /// Leases a commit touched, now resolved (durable or not): the next batches look at them.
    pub fn enqueue(&self, keys: impl IntoIterator<Item = LeaseKey>) {
        let mut inner = self.inner();
        for k in keys {
            inner.enqueue(k);
        }
    }

    /// Deletes every entry (a reload, other interfaces) and queues `keys` (every lease the
    /// engine holds) for the next batches. Call under the engine's lock.
    pub fn flush(&self, keys: impl IntoIterator<Item = LeaseKey>) {
        let mut inner = self.inner();
        inner.generation += 1;
        let puts: Vec<(LeaseKey, Put)> = inner.by_lease.iter().map(|(l, p)| (*l, p.clone())).collect();
        for (lease, put) in puts {
            match self.delete_all(&put.keys) {
                Ok(()) => {
                    inner.drop_entry(&lease);
                }
                // Kept in the record: the lease's next change tries again, and fails its
                // commit if the entry still cannot go.
                Err(e) => warn!(lease = %lease, error = %format!("{e:#}"), "cannot delete a Renew entry"),
            }
        }
        for k in keys {
            inner.enqueue(k);
        }
    }

    /// Deletes `keys` from the map, counting; stops at the first the kernel refuses.
    fn delete_all(&self, keys: &[RenewKey]) -> Result<()> {
        for k in keys {
            if let Err(e) = self.map.delete(k) {
                self.stats.bump(Counter::XdpRenewMapErrors);
                return Err(e);
            }
            self.stats.bump(Counter::XdpRenewEntriesDeleted);
        }
        Ok(())
    }

    /// The links whose Renews XDP answers, each with the interfaces (ifindexes) its direct
    /// clients arrive on, after every sync of the served interfaces. A change flushes
    /// (`keys`: every lease, queued again); returns whether it did.
    pub fn set_ifaces(&self, ifaces: HashMap<String, Vec<u32>>, keys: impl FnOnce() -> Vec<LeaseKey>) -> bool {
        if self.inner().ifaces == ifaces {
            return false;
        }
        self.flush(keys());
        self.inner().ifaces = ifaces;
        true
    }

    /// Up to `BATCH_MAX` leases from the queue.
    pub fn take_batch(&self) -> Batch {
        let mut inner = self.inner();
        let n = inner.queue.len().min(BATCH_MAX);
        let keys: Vec<LeaseKey> = inner.queue.drain(..n).collect();
        for k in &keys {
            inner.queued.remove(k);
        }
        Batch { keys, generation: inner.generation }
    }

    /// What `Engine::pre_extend` is to do with a batch: this daemon's window and margin, and
    /// the interfaces XDP answers Renews on.
    pub fn pre_extend(&self, engine: &mut Engine, batch: &Batch, now: u64) -> crate::server::stateful::PreExtension {
        let inner = self.inner();
        let fast = |name: &str| inner.ifaces.contains_key(name);
        let policy = PreExtendPolicy { window: self.window, margin: MARGIN, fast_link: &fast };
        engine.pre_extend(&batch.keys, &policy, now)
    }

    /// Puts the entries of a batch whose commit is durable: those whose lease the engine
    /// still holds unchanged, unless a flush came in between (then they are queued again).
    /// Call under the engine's lock. Returns how many were put.
    pub fn put_durable(&self, engine: &Engine, batch: &Batch, renewable: &[Renewable]) -> usize {
        let mut inner = self.inner();
        if inner.generation != batch.generation {
            for r in renewable {
                inner.enqueue(r.lease.key());
            }
            return 0;
        }
        let clock = Clock::now();
        let mut put = 0;
        for r in renewable {
            if !engine.holds(&r.lease) {
                // Changed since (its own commit deleted nothing: the entry was not there yet).
                continue;
            }
            let Some(ifindexes) = inner.ifaces.get(&r.lease.iface).cloned() else { continue };
            let Some(until_ns) = clock.boot_ns(r.answer_until.saturating_sub(u64::from(MARGIN))) else { continue };
            let lease = r.lease.key();
            let mut keys = Vec::with_capacity(ifindexes.len());
            for ifindex in ifindexes {
                let (key, entry) =
                    match fast_renew::entry(IfaceKey::untagged(ifindex), &r.lease, &r.lifetimes, until_ns) {
                        Ok(e) => e,
                        Err(e) => {
                            debug!(lease = %lease, error = %e, "no Renew entry: its Renews go up");
                            break;
                        }
                    };
                // Another lease of the same IA had this entry: replaced below, so it is not
                // that lease's any more (its other entries go with it).
                if let Some(other) = inner.by_entry.get(&key).copied().filter(|o| *o != lease) {
                    if let Some(old) = inner.drop_entry(&other) {
                        let _ = self.delete_all(&old.keys);
                    }
                }
                if let Err(e) = self.map.put(&key, &entry) {
                    self.stats.bump(Counter::XdpRenewMapErrors);
                    warn!(lease = %lease, error = %format!("{e:#}"), "cannot put a Renew entry; its Renews go up");
                    continue;
                }
                keys.push(key);
            }
            if let Some(old) = inner.drop_entry(&lease) {
                // The same lease under keys it has no more (an interface re-created).
                let stale: Vec<RenewKey> = old.keys.into_iter().filter(|k| !keys.contains(k)).collect();
                let _ = self.delete_all(&stale);
            }
            if keys.is_empty() {
                continue;
            }
            put += keys.len();
            for k in &keys {
                inner.by_entry.insert(*k, lease);
            }
            inner.by_lease.insert(lease, Put { keys, answer_until: r.answer_until });
            inner.deadlines.insert((r.answer_until, lease));
        }
        self.stats.add(Counter::XdpRenewEntriesPut, put as u64);
        put
    }

    /// Entries whose deadline passed go (the program already passes them up): the map holds
    /// only what can still be answered.
    pub fn expire(&self, now: u64) {
        let mut inner = self.inner();
        while let Some(&(t, lease)) = inner.deadlines.first() {
            if t > now {
                break;
            }
            if let Some(put) = inner.drop_entry(&lease) {
                let _ = self.delete_all(&put.keys);
            }
        }
    }

    /// Leases waiting for a batch.
    pub fn backlog(&self) -> usize {
        self.inner().queue.len()
    }

    /// Entries in the map, as the daemon put them.
    pub fn entries(&self) -> usize {
        self.inner().by_entry.len()
    }
}

/// Wall clock and CLOCK_BOOTTIME read together, to turn a unix deadline into the program's.
struct Clock {
    wall_ns: u128,
    boot_ns: u64,
}

impl Clock {
    fn now() -> Self {
        let wall_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let boot_ns = if rc == 0 {
            u64::try_from(ts.tv_sec).unwrap_or(0).saturating_mul(1_000_000_000) + u64::try_from(ts.tv_nsec).unwrap_or(0)
        } else {
            0
        };
        Self { wall_ns, boot_ns }
    }

    /// The CLOCK_BOOTTIME instant of unix second `at`; `None` when it is not in the future
    /// (or the clocks could not be read).
    fn boot_ns(&self, at: u64) -> Option<u64> {
        if self.boot_ns == 0 {
            return None;
        }
        let ahead = (u128::from(at) * 1_000_000_000).checked_sub(self.wall_ns).filter(|d| *d > 0)?;
        self.boot_ns.checked_add(u64::try_from(ahead).ok()?)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A map in memory, whose deletes can be made to fail.
    #[derive(Default)]
    pub struct FakeMap {
        pub entries: Mutex<HashMap<RenewKey, RenewEntry>>,
        pub fail_deletes: std::sync::atomic::AtomicBool,
    }

    impl RenewMap for Arc<FakeMap> {
        fn put(&self, key: &RenewKey, entry: &RenewEntry) -> Result<()> {
            self.entries.lock().unwrap().insert(*key, *entry);
            Ok(())
        }

        fn delete(&self, key: &RenewKey) -> Result<()> {
            if self.fail_deletes.load(std::sync::atomic::Ordering::Relaxed) {
                anyhow::bail!("delete refused (test)");
            }
            self.entries.lock().unwrap().remove(key);
            Ok(())
        }

        fn clear(&self) -> Result<usize> {
            let mut e = self.entries.lock().unwrap();
            let n = e.len();
            e.clear();
            Ok(n)
        }
    }
}
