//! The work a store's writer (SQLite's thread, PostgreSQL's task) takes off its queue, and
//! how a job's waiter is told how it went. Both writers drain their queue into one
//! transaction and resolve the batch alike. A send to a waiter fails only if the caller
//! stopped waiting; there is nothing to do then.

use std::collections::VecDeque;
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::{Lease, LeaseOp, StoreError};

/// Work for the writer. Everything drained together runs in one transaction.
#[derive(Debug)]
pub(super) enum Job {
    Commit {
        ops: Vec<LeaseOp>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// `LeaseStore::probe`: a write that leaves nothing (in PostgreSQL one that must write
    /// WAL and flush it to commit): can the store write again?
    Probe {
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Reclaim {
        now: u64,
        // A std channel: the caller blocks on it, possibly in a thread that
        // belongs to a tokio runtime, where a oneshot's blocking_recv would panic.
        done: mpsc::Sender<Result<Vec<Lease>, StoreError>>,
    },
}

impl Job {
    /// The job's transaction committed; a reclaim gets the next of `reclaimed` (what
    /// each reclaim of the batch deleted, in batch order).
    pub(super) fn succeed(self, reclaimed: &mut VecDeque<Vec<Lease>>) {
        match self {
            Job::Commit { done, .. } | Job::Probe { done } => {
                let _ = done.send(Ok(()));
            }
            Job::Reclaim { done, .. } => {
                let _ = done.send(Ok(reclaimed.pop_front().unwrap_or_default()));
            }
        }
    }

    pub(super) fn fail(self, e: StoreError) {
        match self {
            Job::Commit { done, .. } | Job::Probe { done } => {
                let _ = done.send(Err(e));
            }
            Job::Reclaim { done, .. } => {
                let _ = done.send(Err(e));
            }
        }
    }
}
