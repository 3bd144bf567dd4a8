//! The userspace receive queue. Under overload the kernel's socket buffer fills and drops the
//! newest datagrams, so the daemon ends up answering requests whose clients have long since
//! retransmitted (or given up) while their fresh copies are lost. Instead the daemon empties the
//! socket into this bounded queue whenever it gets the chance and serves it oldest first; when
//! the queue is full the oldest entry goes (`Counter::ShedOldest`): its client has retransmitted
//! by now, and the newer copy is the one worth an answer (Kea's congestion handling does the
//! same). The depth is a gauge in the metrics.
//!
//! A Request, Renew or Rebind whose transaction is already on its way (queued, being decided
//! or waiting for its commit), or a Solicit or Information-Request still queued, is not
//! queued again (`pending`): the copy is a retransmission the answer on its way answers.

use std::{
    collections::VecDeque,
    io,
    net::{Ipv6Addr, SocketAddrV6},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

use super::pending::{Admit, Claim, Pending};
use super::worker::Worker;
use crate::{
    socket::{RecvBatch, Rejected},
    stats::{Counter, Phase, UserStats},
};

/// Messages waiting for userspace. At 10-30 microseconds per message, a full queue is served in
/// well under a client's first retransmission timeout (SOL_TIMEOUT and REQ_TIMEOUT are 1 s,
/// RFC 9915 section 7.6), so what it holds is still worth answering. Not less: at 2048 the
/// queue held 25 ms of a SARR load, so any pause of the loop longer than that (a slow fsync,
/// the machine) was shed as loss where the socket buffer before it had only delayed the
/// answers; 8192 holds about what the 8 MB socket buffer did, some 100 ms.
/// Under a boot storm 8192 was not enough: the first Requests of 100,000 CPEs come within
/// about a second, the store commits some 35,000 a second, and while the commit pipeline is
/// full the queue waits (`serve_queued`); at 8192 it shed 144,000 of them, each costing its
/// CPE a doubled REQ_TIMEOUT. Held longer than REQ_TIMEOUT a Request is still worth its
/// Reply (the client keeps its transaction ID, and its copies are dropped on arrival,
/// `pending`), so the queue holds the burst: 65,536 datagrams of a few hundred bytes each,
/// some 25 MB.
/// Per worker: with N workers, N queues of this size.
pub(super) const QUEUE_LIMIT: usize = 65_536;

/// Messages handled per turn of the daemon's loop before signals, timers and the socket get
/// their turn again.
const SERVE_BATCH: usize = 64;

/// How long the queue waits for a commit slot before looking again: a group commit frees
/// hundreds of slots at once, some milliseconds apart under a storm.
const COMMIT_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// How long the queue waits for a commit slot at most, finding the pipeline full each time it
/// looks: longer, the store is stalled rather than busy (a hung disk, an unreachable PostgreSQL),
/// and the queue is served again as before the pause, so that Solicits, Information-Requests
/// and leasequeries behind the Requests are answered (the Requests shed) instead of all
/// waiting for the store.
const MAX_COMMIT_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// One datagram as it came off the socket.
pub(super) struct Queued {
    pub data: Box<[u8]>,
    pub from: SocketAddrV6,
    pub ifindex: u32,
    pub dst: Ipv6Addr,
    /// When it was read off the socket (`Phase::QueueWait`).
    pub at: Instant,
    /// Its transaction's hold on `Pending`, if tracked: goes with the message until its
    /// outcome is known (dropped with it when it is shed).
    pub claim: Option<Claim>,
}

/// Datagrams in arrival order, at most `limit` of them.
pub(super) struct RxQueue {
    q: VecDeque<Queued>,
    limit: usize,
    depth: Arc<AtomicU64>,
    /// Transactions on their way, when the daemon answers stateful messages.
    pending: Option<Arc<Pending>>,
    /// Since when the commit pipeline has been full without a break (`serve_queued`).
    full_since: Option<Instant>,
}

impl RxQueue {
    #[cfg(test)]
    pub fn new(limit: usize) -> Self {
        Self::with_depth(limit, Arc::default())
    }

    /// As `new`, publishing the depth into `depth` (a worker's gauge).
    pub fn with_depth(limit: usize, depth: Arc<AtomicU64>) -> Self {
        Self {
            q: VecDeque::with_capacity(limit.min(4096)),
            limit: limit.max(1),
            depth,
            pending: None,
            full_since: None,
        }
    }

    /// Drops copies of the Requests, Renews and Rebinds `pending` holds (see `push`).
    pub fn tracking(mut self, pending: Option<Arc<Pending>>) -> Self {
        self.pending = pending;
        self
    }

    /// The queue depth, for the metrics.
    #[cfg(test)]
    pub fn depth(&self) -> Arc<AtomicU64> {
        self.depth.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Appends `d`, shedding the oldest entries to stay within the limit; returns how many
    /// (counted in `stats`, as is a copy of a transaction on its way, which is not queued).
    pub fn push(&mut self, mut d: Queued, stats: &UserStats) -> usize {
        if let Some(p) = &self.pending {
            match p.admit(&d.data) {
                Admit::Duplicate(c) => {
                    stats.bump(c);
                    return 0;
                }
                Admit::Claimed(c) => d.claim = Some(c),
                Admit::Untracked => {}
            }
        }
        let mut shed = 0;
        while self.q.len() >= self.limit {
            self.q.pop_front();
            stats.bump(Counter::ShedOldest);
            shed += 1;
        }
        self.q.push_back(d);
        self.publish();
        shed
    }

    pub fn pop(&mut self) -> Option<Queued> {
        let d = self.q.pop_front();
        self.publish();
        d
    }

    /// Whether to wait for a commit slot now, the commit pipeline being `full` at `now`.
    fn waits_for_commits(&mut self, full: bool, now: Instant) -> bool {
        if !full {
            self.full_since = None;
            return false;
        }
        now.duration_since(*self.full_since.get_or_insert(now)) < MAX_COMMIT_PAUSE
    }

    fn publish(&self) {
        self.depth.store(self.q.len() as u64, Ordering::Relaxed);
    }
}

/// What a drain took off the socket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Drained {
    /// Datagrams read (the worker's `received`).
    pub received: u64,
    /// Queued entries shed to make room for them.
    pub shed: u64,
}

/// Moves what `read` has ready into `q`, a batch at a time (at most twice the limit per
/// call, so a flood cannot keep the loop here), counting what is shed. `read` fills `batch`
/// and returns how many datagrams it holds, `WouldBlock` when empty; a batch that comes back
/// short of full leaves the socket as good as empty, and ends the drain without a failed read.
pub(super) fn drain(
    q: &mut RxQueue,
    batch: &mut RecvBatch,
    stats: &UserStats,
    mut read: impl FnMut(&mut RecvBatch) -> io::Result<usize>,
) -> Drained {
    let mut total = Drained::default();
    let mut left = 2 * q.limit;
    while left > 0 {
        match read(batch) {
            Ok(n) => {
                let taken = take(q, batch, stats);
                total.received += taken.received;
                total.shed += taken.shed;
                if n < batch.capacity() {
                    return total;
                }
                left = left.saturating_sub(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => left -= 1,
            Err(e) => {
                tracing::warn!(error = %e, "receive failed");
                return total;
            }
        }
    }
    total
}

/// Queues the datagrams `batch` holds, in arrival order.
fn take(q: &mut RxQueue, batch: &RecvBatch, stats: &UserStats) -> Drained {
    let mut total = Drained::default();
    let at = Instant::now();
    for (r, data) in batch.messages() {
        match r {
            Ok(rx) => {
                total.received += 1;
                let d = Queued { data: data.into(), from: rx.from, ifindex: rx.ifindex, dst: rx.dst, at, claim: None };
                total.shed += q.push(d, stats) as u64;
            }
            Err(e @ Rejected::Truncated { .. }) => {
                // Received, but not whole: what is left of it is not the client's message.
                total.received += 1;
                tracing::debug!(error = %e, "datagram dropped");
                stats.bump(Counter::DropMalformed);
            }
            // As recvmsg's error was for the datagram it read: lost, and said so.
            Err(e) => tracing::warn!(error = %e, "receive failed"),
        }
    }
    total
}

impl Worker {
    /// Queues the datagrams the worker received, and whatever else its socket holds.
    pub(super) fn enqueue(&mut self, n: usize, batch: &mut RecvBatch) {
        let taken = take(&mut self.rx, batch, &self.handler.shared.stats);
        self.count(taken);
        if n == batch.capacity() {
            // Right after `recv_batch`: through the runtime's readiness (`try_recv_batch_ready`).
            self.drain(batch, true);
        }
    }

    /// Answers up to a batch of queued messages, oldest first, then takes in what arrived
    /// meanwhile if the batch was full (so that what is shed is the oldest, not the newest).
    /// While the commit pipeline is full the queue waits instead (`COMMIT_PAUSE`).
    pub(super) async fn serve_queued(&mut self, batch: &mut RecvBatch) {
        let full = self.handler.shared.stateful.as_ref().is_some_and(|s| s.commits_full());
        if self.rx.waits_for_commits(full, Instant::now()) {
            // A Request decided now would be shed for want of a commit slot (its decision
            // wasted, its client left to retransmit); queued, it keeps its place, and its
            // copies are dropped on arrival (`pending`). What arrived meanwhile joins it.
            tokio::time::sleep(COMMIT_PAUSE).await;
            self.drain(batch, false);
            return;
        }
        let mut served = 0;
        while served < SERVE_BATCH {
            let Some(d) = self.rx.pop() else { break };
            self.handler.shared.stats.phase(Phase::QueueWait).since(d.at);
            self.handler.handle(self.table.current(), &d.data, d.from, d.ifindex, d.dst, d.claim).await;
            served += 1;
        }
        if backlogged(served) {
            self.drain(batch, false);
        }
    }

    fn drain(&mut self, batch: &mut RecvBatch, after_recv: bool) {
        let h = &self.handler;
        let drained = drain(&mut self.rx, batch, &h.shared.stats, |b| {
            if after_recv {
                h.sock.try_recv_batch_ready(b)
            } else {
                h.sock.try_recv_batch(b)
            }
        });
        self.count(drained);
    }

    fn count(&self, d: Drained) {
        self.handler.counters.received.fetch_add(d.received, Ordering::Relaxed);
        self.handler.counters.shed.fetch_add(d.shed, Ordering::Relaxed);
    }
}

/// After `served` messages: under a backlog (a full batch) the socket is drained behind the
/// queue, which sheds its oldest. A batch that emptied the queue reads nothing: the worker's
/// `recv` comes next and waits for the kernel, where a drain here would only cost a failed
/// read per message (it did: twice the receive syscalls of the loop without a queue, and
/// about a tenth of the SARR rate). Arrivals during a batch wait in the socket's buffer,
/// which holds far more than a batch takes to serve.
fn backlogged(served: usize) -> bool {
    served == SERVE_BATCH
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::Received;

    fn datagram(n: u8) -> Received {
        Received {
            len: 1,
            from: SocketAddrV6::new(Ipv6Addr::LOCALHOST, 546, 0, 0),
            ifindex: u32::from(n),
            dst: Ipv6Addr::LOCALHOST,
        }
    }

    /// A source of `n` datagrams whose payload is their number, as many per read as the
    /// batch takes, then WouldBlock.
    fn source(n: u8) -> impl FnMut(&mut RecvBatch) -> io::Result<usize> {
        let mut next = 0u8;
        move |batch| {
            batch.clear();
            if next == n {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            while next < n && batch.push(Ok(datagram(next)), &[next]) {
                next += 1;
            }
            Ok(batch.messages().count())
        }
    }

    #[test]
    fn overload_sheds_the_oldest_and_serves_in_arrival_order() {
        let stats = UserStats::default();
        let mut q = RxQueue::new(4);
        let depth = q.depth();
        let mut batch = RecvBatch::new(3, 16);
        drain(&mut q, &mut batch, &stats, source(7));
        assert_eq!(stats.get(Counter::ShedOldest), 3, "three over the limit, counted");
        assert_eq!(depth.load(Ordering::Relaxed), 4);
        let kept: Vec<u8> = std::iter::from_fn(|| q.pop()).map(|d| d.data[0]).collect();
        assert_eq!(kept, [3, 4, 5, 6], "the newest four, oldest of them first");
        assert_eq!(depth.load(Ordering::Relaxed), 0);
        assert!(q.is_empty());
    }

    #[test]
    fn the_queue_waits_for_commit_slots_but_not_for_a_stalled_store() {
        let mut q = RxQueue::new(4);
        let t0 = Instant::now();
        assert!(!q.waits_for_commits(false, t0), "room: served");
        assert!(q.waits_for_commits(true, t0), "full: waits");
        assert!(q.waits_for_commits(true, t0 + MAX_COMMIT_PAUSE / 2));
        assert!(!q.waits_for_commits(true, t0 + MAX_COMMIT_PAUSE), "full for too long: stalled, served");
        assert!(!q.waits_for_commits(true, t0 + MAX_COMMIT_PAUSE * 3), "and stays served while stalled");
        // A commit resolves: the next time it is full, the wait starts over.
        assert!(!q.waits_for_commits(false, t0 + MAX_COMMIT_PAUSE * 3));
        assert!(q.waits_for_commits(true, t0 + MAX_COMMIT_PAUSE * 4));
    }

    #[test]
    fn a_flood_does_not_keep_the_drain_going() {
        let stats = UserStats::default();
        let mut q = RxQueue::new(8);
        // One datagram per read, every read full: the bound counts datagrams.
        let mut batch = RecvBatch::new(1, 16);
        let mut reads = 0;
        drain(&mut q, &mut batch, &stats, |b| {
            reads += 1;
            b.clear();
            b.push(Ok(datagram(1)), &[1]);
            Ok(1)
        });
        assert_eq!(reads, 16, "bounded at twice the limit");
        assert_eq!(stats.get(Counter::ShedOldest), 8);
    }

    #[test]
    fn only_a_full_batch_reads_the_socket_again() {
        assert!((0..SERVE_BATCH).all(|served| !backlogged(served)), "a batch that emptied the queue reads nothing");
        assert!(backlogged(SERVE_BATCH), "a full batch drains");
        // A backlog: what waits joins the queue behind, the oldest shed.
        let stats = UserStats::default();
        let mut q = RxQueue::new(4);
        let mut batch = RecvBatch::new(4, 16);
        drain(&mut q, &mut batch, &stats, source(6));
        assert_eq!(stats.get(Counter::ShedOldest), 2);
        let kept: Vec<u8> = std::iter::from_fn(|| q.pop()).map(|d| d.data[0]).collect();
        assert_eq!(kept, [2, 3, 4, 5]);
    }

    /// A datagram longer than its slot is counted as received and as malformed, and not
    /// queued; a rejected control message is not counted as received (as recvmsg's error was
    /// not); the rest of the batch is queued in order.
    #[test]
    fn a_truncated_datagram_is_counted_and_dropped_not_queued() {
        let stats = UserStats::default();
        let mut q = RxQueue::new(8);
        let mut batch = RecvBatch::new(4, 16);
        let mut reads = 0;
        let got = drain(&mut q, &mut batch, &stats, |b| {
            reads += 1;
            b.clear();
            b.push(Ok(datagram(0)), &[0]);
            b.push(Err(Rejected::Truncated { slot: 16 }), &[]);
            b.push(Err(Rejected::ControlTruncated), &[]);
            b.push(Ok(datagram(3)), &[3]);
            if reads == 1 {
                Ok(4)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        });
        assert_eq!(got, Drained { received: 3, shed: 0 });
        assert_eq!(stats.get(Counter::DropMalformed), 1);
        let kept: Vec<(u8, u32)> = std::iter::from_fn(|| q.pop()).map(|d| (d.data[0], d.ifindex)).collect();
        assert_eq!(kept, [(0, 0), (3, 3)], "each with its own pktinfo");
    }

    /// A batch that comes back short of full ends the drain: the socket had no more, and a
    /// further read would only fail.
    #[test]
    fn a_short_batch_ends_the_drain_without_another_read() {
        let stats = UserStats::default();
        let mut q = RxQueue::new(64);
        let mut batch = RecvBatch::new(4, 16);
        let mut reads = 0;
        let mut src = source(6);
        let got = drain(&mut q, &mut batch, &stats, |b| {
            reads += 1;
            src(b)
        });
        assert_eq!(reads, 2, "a full batch of 4, then a short one of 2");
        assert_eq!(got, Drained { received: 6, shed: 0 });
    }
}
