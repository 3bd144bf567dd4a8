//! WAL checkpoints off the commit path.
//!
//! SQLite's auto-checkpoint runs inside the COMMIT that takes the WAL past 1000 pages: that
//! commit, and every Reply waiting for its batch, then also waits while the WAL is copied
//! into the database and the database is fsync'd, which under load happens several times a
//! second and takes as long as several commits. This thread does that copying beforehand,
//! from its own connection, in PASSIVE mode: it takes no lock the writer needs, so commits go
//! on meanwhile. The writer keeps SQLite's auto-checkpoint, which then finds (nearly)
//! everything copied already: it only wraps the WAL round to its start, which keeps the
//! file's size bounded as before. Durability is untouched: a lease is durable when its
//! COMMIT has fsync'd the WAL, checkpointed or not.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tracing::debug;

use super::StoreTimings;

/// The least time between two checkpoints. Each costs an fsync of the database, which
/// shares the disk with the writer's own, and copies every page written since the last one
/// (a page written ten times in between is copied once): checkpointing after every commit
/// cost as much CPU as it saved the writer, twice over. What the auto-checkpoint inside a
/// COMMIT still finds to copy is at most what this much time of commits wrote.
const PAUSE: Duration = Duration::from_millis(50);

/// A WAL smaller than this (about 256 pages) is left to the auto-checkpoint. A small WAL
/// costs little to checkpoint inline, and copying it beforehand would let the writer wrap
/// the WAL and reuse its space early: on a full disk, the store would then go on taking
/// commits for a while rather than failing at once, as `e2e_store_full` expects. (The WAL
/// file keeps its size when wrapped, so once a load has grown it this thread stays on.)
const MIN_WAL_BYTES: u64 = 1 << 20;

/// The checkpointer thread; joined on drop (it ends once the writer is gone).
#[derive(Debug)]
pub(super) struct Checkpointer {
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Checkpoints over `conn` whenever `committed` says a transaction was written, at
    /// most every `PAUSE`, until the writer drops its end (the thread then ends within a
    /// `PAUSE`).
    pub(super) fn spawn(
        conn: Connection,
        path: Arc<Path>,
        committed: Receiver<()>,
        timings: Arc<StoreTimings>,
    ) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name("lease-checkpoint".into())
            .spawn(move || run(&conn, &path, &committed, &timings))?;
        Ok(Self { thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: &Connection, path: &Path, committed: &Receiver<()>, timings: &StoreTimings) {
    let wal = {
        let mut p = path.as_os_str().to_owned();
        p.push("-wal");
        std::path::PathBuf::from(p)
    };
    while committed.recv().is_ok() {
        if std::fs::metadata(&wal).map_or(0, |m| m.len()) < MIN_WAL_BYTES {
            std::thread::sleep(PAUSE);
            continue;
        }
        let started = Instant::now();
        match checkpoint(conn) {
            Ok((wal, copied)) => {
                timings.checkpoint.since(started);
                debug!(path = %path.display(), wal, copied, "WAL checkpoint");
            }
            // A busy or failing database: the writer's own auto-checkpoint still runs, so
            // nothing is lost by skipping one here.
            Err(e) => debug!(path = %path.display(), error = %e, "WAL checkpoint failed"),
        }
        // Nudges during the pause collapse into the one pending (the channel holds one).
        std::thread::sleep(PAUSE);
    }
}

/// One PASSIVE checkpoint: (frames in the WAL, frames copied into the database so far).
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))
}
