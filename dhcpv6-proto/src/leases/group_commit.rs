//! The writer thread: group commit over one SQLite connection.
//!
//! Durability costs one fsync per transaction, and an fsync takes milliseconds. If
//! each commit had its own transaction, the disk would cap the server at a few
//! hundred leases per second. Instead a single thread owns the write connection and
//! loops: wait for work, take *everything* queued at that moment, apply it in one
//! transaction, commit (one fsync), then resolve every ticket in the batch. While
//! one fsync is in flight the next batch accumulates, so the batch size adapts to
//! load by itself and no timer or batching delay is needed.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;
use tracing::{debug, error};

use super::job::Job;
use super::rows::{delete_expired, probe, remove, sql_error, upsert};
use super::{CommitTicket, Lease, LeaseOp, Location, StoreError, StoreTimings};

/// Handle to the writer thread. Dropping it flushes the queue and joins the thread.
#[derive(Debug)]
pub(super) struct GroupCommitter {
    /// `None` only during drop: closing the channel is what stops the thread.
    queue: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    transactions: Arc<AtomicU64>,
    path: Arc<Path>,
    /// The same path, as tickets and errors name it.
    location: Arc<Location>,
    capacity: usize,
    timings: Arc<StoreTimings>,
}

impl GroupCommitter {
    /// The writer over `conn`. After every transaction it nudges `committed` (without
    /// blocking: a nudge already pending is enough), for the checkpointer.
    pub(super) fn spawn(
        conn: Connection,
        path: Arc<Path>,
        capacity: usize,
        timings: Arc<StoreTimings>,
        committed: Option<SyncSender<()>>,
    ) -> Result<Self, StoreError> {
        let capacity = capacity.max(1);
        let (queue, jobs) = mpsc::sync_channel(capacity);
        let transactions = Arc::new(AtomicU64::new(0));
        let thread = {
            let (path, transactions, timings) = (Arc::clone(&path), Arc::clone(&transactions), Arc::clone(&timings));
            // Taken before the writer starts: the file the connection opened.
            let opened = file_id(&path);
            let w = Writer { path, opened, transactions, timings, committed, max_batch: capacity };
            std::thread::Builder::new().name("lease-writer".into()).spawn(move || run(conn, &jobs, &w))
        }
        .map_err(|e| StoreError::SpawnWriter { store: Location::File(path.to_path_buf()), source: Arc::new(e) })?;
        let location = Arc::new(Location::File(path.to_path_buf()));
        Ok(GroupCommitter { queue: Some(queue), thread: Some(thread), transactions, path, location, capacity, timings })
    }

    pub(super) fn timings(&self) -> Arc<StoreTimings> {
        Arc::clone(&self.timings)
    }

    /// Queues `ops` without blocking; a full queue fails the ticket at once.
    pub(super) fn commit(&self, ops: Vec<LeaseOp>) -> CommitTicket {
        let (done, rx) = oneshot::channel();
        self.try_queue(Job::Commit { ops, done }, rx)
    }

    /// Queues a probe without blocking, like a commit.
    pub(super) fn probe(&self) -> CommitTicket {
        let (done, rx) = oneshot::channel();
        self.try_queue(Job::Probe { done }, rx)
    }

    /// The ticket of a commit or probe, `rx` its answer: pending once queued, failed at
    /// once when the queue is full or the writer gone.
    fn try_queue(&self, job: Job, rx: oneshot::Receiver<Result<(), StoreError>>) -> CommitTicket {
        match self.sender().try_send(job) {
            Ok(()) => CommitTicket::pending(rx, Arc::clone(&self.location)),
            Err(TrySendError::Full(_)) => CommitTicket::resolved(Err(StoreError::QueueFull {
                store: Location::clone(&self.location),
                capacity: self.capacity,
            })),
            Err(TrySendError::Disconnected(_)) => CommitTicket::resolved(Err(self.stopped())),
        }
    }

    /// Runs a reclaim in the writer, in order with commits. Blocks while the queue is
    /// full: reclaiming is housekeeping and should wait its turn, not be shed.
    pub(super) fn reclaim(&self, now: u64) -> Result<Vec<Lease>, StoreError> {
        let (done, rx) = mpsc::channel();
        self.sender().send(Job::Reclaim { now, done }).map_err(|_| self.stopped())?;
        rx.recv().unwrap_or_else(|_| Err(self.stopped()))
    }

    pub(super) fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    fn sender(&self) -> &SyncSender<Job> {
        // Only `drop` takes the sender, and nothing can call us after that.
        self.queue.as_ref().expect("lease writer queue used after drop")
    }

    fn stopped(&self) -> StoreError {
        StoreError::WriterStopped { store: Location::clone(&self.location) }
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        // Closing the channel lets the thread drain what is queued, then exit.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!(path = %self.path.display(), "lease writer thread panicked");
            }
        }
    }
}

/// (device, inode) of the file at `path`, following links as SQLite's open did.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// What the writer thread keeps beside its connection.
struct Writer {
    path: Arc<Path>,
    /// (device, inode) of the file the connection opened.
    opened: Option<(u64, u64)>,
    transactions: Arc<AtomicU64>,
    timings: Arc<StoreTimings>,
    committed: Option<SyncSender<()>>,
    max_batch: usize,
}

/// The writer loop; returns once the queue is closed and drained.
fn run(mut conn: Connection, jobs: &Receiver<Job>, w: &Writer) {
    let (path, opened, transactions, max_batch) = (&*w.path, w.opened, &*w.transactions, w.max_batch);
    while let Ok(first) = jobs.recv() {
        // Everything that queued up while the previous transaction was being
        // written shares this one. The cap only guards against producers that
        // refill the queue faster than we can drain it.
        let batch: Vec<Job> = std::iter::once(first).chain(jobs.try_iter().take(max_batch)).collect();
        // A database deleted (or swapped) under us still takes writes, into a file nobody
        // will open again: every lease written then would be gone at the next start. One
        // stat per transaction is nothing next to its fsync.
        let result = match opened {
            Some(id) if file_id(path) != Some(id) => Err(StoreError::Lost { path: path.to_path_buf() }),
            _ => write_batch(&mut conn, &batch, path, &w.timings),
        };
        w.timings.jobs.fetch_add(batch.len() as u64, Ordering::Relaxed);
        match result {
            Ok(mut reclaimed) => {
                // Count before resolving, so a caller that saw its ticket resolve
                // also sees its transaction counted.
                transactions.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = &w.committed {
                    // Full: a nudge is pending already. Disconnected: no checkpointer.
                    let _ = c.try_send(());
                }
                batch.into_iter().for_each(|job| job.succeed(&mut reclaimed));
            }
            Err(e) => {
                // Every waiter gets the error; whoever waits decides what to say. A daemon
                // with a full disk would otherwise log this once per batch, for hours.
                debug!(path = %path.display(), jobs = batch.len(), error = %e, "lease transaction failed");
                batch.into_iter().for_each(|job| job.fail(e.clone()));
            }
        }
    }
}

/// Applies a batch in one durable transaction. Returns what each reclaim deleted, in
/// batch order. On error nothing of the batch is kept: the transaction rolls back when
/// dropped, also when COMMIT itself failed (a full disk while writing the WAL leaves the
/// transaction open; rusqlite's drop sees that and rolls back), so the connection is
/// ready for the next batch.
fn write_batch(
    conn: &mut Connection,
    batch: &[Job],
    path: &Path,
    timings: &StoreTimings,
) -> Result<VecDeque<Vec<Lease>>, StoreError> {
    let err = |action| sql_error(path, action);
    let started = Instant::now();
    // IMMEDIATE takes the write lock up front (waiting out an operator's sqlite3
    // write via busy_timeout) instead of failing half-way through the batch.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("begin transaction"))?;
    let mut reclaimed = VecDeque::new();
    for job in batch {
        match job {
            Job::Commit { ops, .. } => {
                for op in ops {
                    match op {
                        LeaseOp::Upsert(lease) => upsert(&tx, lease).map_err(err("write lease"))?,
                        LeaseOp::Remove { .. } => remove(&tx, &op.key()).map_err(err("remove lease"))?,
                    }
                }
            }
            Job::Probe { .. } => probe(&tx).map_err(err("probe"))?,
            Job::Reclaim { now, .. } => {
                reclaimed.push_back(delete_expired(&tx, *now, path).map_err(err("reclaim expired leases"))?);
            }
        }
    }
    timings.write.since(started);
    // With journal_mode=WAL and synchronous=FULL, COMMIT returns after the WAL is
    // fsync'd: this is the moment the leases become durable.
    let syncing = Instant::now();
    let committed = tx.commit().map_err(err("commit"));
    timings.sync.since(syncing);
    committed?;
    Ok(reclaimed)
}
