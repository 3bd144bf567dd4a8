//! A receive worker: one socket of the port's SO_REUSEPORT group (`steer` decides which
//! datagrams it gets), its own bounded queue, and its own thread and runtime. It receives,
//! admits, parses and answers on its own (`dispatch`); what it shares with the other
//! workers is `Shared`: the counters, the served-interface table (a snapshot, `table`), the
//! stateful service (one engine, one store, one group-commit writer) and the way to the
//! server loop for the relay agent's datagrams.
//!
//! Worker 0 runs on the server loop's runtime (with `--workers 1` that is today's daemon:
//! one thread); the others each on a thread of their own.

use std::sync::Arc;

use anyhow::{Context, Result};
use socket2::Socket;
use tokio::sync::mpsc;
use tracing::warn;

use super::queue::{Queued, RxQueue, QUEUE_LIMIT};
use super::stateful::StatefulService;
use super::table::{TableCell, TableReader};
use crate::{
    metrics::WorkerStats,
    socket::{RecvBatch, ServerSocket, BATCH, SLOT},
    stats::UserStats,
};

/// What every worker uses.
pub(super) struct Shared {
    pub stats: Arc<UserStats>,
    pub stateful: Option<Arc<StatefulService>>,
    pub table: Arc<TableCell>,
    /// Datagrams for the relay agent, to the server loop (bounded; full: shed and counted).
    pub agent: mpsc::Sender<Queued>,
    /// Leasequeries (RFC 5007) arrive on any worker's socket.
    pub lq: Arc<super::leasequery::Leasequery>,
    /// Stateful transactions on their way, whichever worker took them (`pending`).
    pub pending: Option<Arc<super::pending::Pending>>,
}

/// What handling one datagram needs: the worker's socket, its counters, and `Shared`.
pub(super) struct Handler {
    pub sock: Arc<ServerSocket>,
    pub shared: Arc<Shared>,
    pub counters: Arc<WorkerStats>,
}

pub(super) struct Worker {
    pub handler: Handler,
    pub table: TableReader,
    pub rx: RxQueue,
}

impl Worker {
    pub fn new(sock: Arc<ServerSocket>, shared: Arc<Shared>, counters: Arc<WorkerStats>) -> Self {
        let table = shared.table.reader();
        let rx = RxQueue::with_depth(QUEUE_LIMIT, Arc::clone(&counters.queue)).tracking(shared.pending.clone());
        Self { handler: Handler { sock, shared, counters }, table, rx }
    }

    /// Receives and answers until the runtime it runs on ends.
    pub async fn run(mut self) {
        // Once per worker: the batch's buffers are reused by every read.
        let mut batch = RecvBatch::new(BATCH, SLOT);
        loop {
            tokio::select! {
                r = self.handler.sock.recv_batch(&mut batch) => match r {
                    Ok(n) => self.enqueue(n, &mut batch),
                    Err(e) => warn!(error = %e, "receive failed"),
                },
                () = std::future::ready(()), if !self.rx.is_empty() => self.serve_queued(&mut batch).await,
            }
        }
    }
}

/// Starts worker `index` on a thread of its own, with `sock` (from `ServerSocket::bind_group`)
/// registered with the thread's runtime. The thread lives as long as the process; if it ends
/// (a panic), `died` is told, and the server loop stops the daemon: the dead worker's socket
/// would otherwise keep its share of the traffic unanswered.
pub(super) fn spawn(
    index: usize,
    sock: Socket,
    shared: Arc<Shared>,
    counters: Arc<WorkerStats>,
    died: mpsc::UnboundedSender<usize>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("worker runtime")?;
    let sock = {
        let _in = rt.enter();
        Arc::new(ServerSocket::register(sock)?)
    };
    let worker = Worker::new(sock, shared, counters);
    std::thread::Builder::new()
        .name(format!("dhcpv6d-w{index}"))
        .spawn(move || {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(worker.run())));
            if ran.is_err() {
                let _ = died.send(index);
            }
        })
        .with_context(|| format!("starting worker {index}"))?;
    Ok(())
}
