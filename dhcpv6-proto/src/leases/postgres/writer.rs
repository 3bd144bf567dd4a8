//! The writer task: group commit over one PostgreSQL session, and what happens when
//! that session is lost.
//!
//! As with SQLite, the task takes everything queued at once into one transaction.
//! Here the transaction is sent as a pipeline: BEGIN, every statement of every
//! commit, COMMIT, all written before any answer is read, so a batch costs one round
//! trip plus the server's WAL flush, however many commits it holds.
//!
//! Outcomes, per batch:
//! * every statement and COMMIT answered without error: committed, tickets `Ok`;
//! * the server refused a statement, the session still up: the transaction rolled
//!   back (COMMIT of an aborted transaction is a ROLLBACK), tickets
//!   [`StoreError::Postgres`];
//! * the session was lost, or did not answer within `commit_timeout`: COMMIT may or
//!   may not have happened, tickets [`StoreError::OutcomeUnknown`]. The store goes
//!   down: commits fail fast with [`StoreError::Unavailable`] until a reconnection,
//!   retried with a doubling delay, succeeds. The outage is logged once when it
//!   starts and once when it ends.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, Row};
use tracing::{debug, error, info};

use super::rows::{decode_rows, KeyArgs, Statements, UpsertArgs, TAKEN};
use super::schema::migrate;
use super::{connect, is_connection_loss, message, pg_error, ConnectionTask, PgOptions, Shared};
use crate::leases::job::Job;
use crate::leases::{Lease, LeaseKey, LeaseOp, Location, StoreError};

/// The writer's session.
pub(super) struct Conn {
    client: Client,
    statements: Statements,
    task: ConnectionTask,
}

impl Conn {
    /// Connects; with `migrate`, creates or updates the schema first (at open only: a
    /// reconnection must not silently recreate an empty table someone dropped).
    pub(super) async fn open(config: &Config, location: &Location, with_migration: bool) -> Result<Self, StoreError> {
        let (mut client, task) = connect(config, location).await?;
        if with_migration {
            migrate(&mut client, location).await?;
        }
        let statements = Statements::prepare(&client).await.map_err(pg_error(location, "prepare statements"))?;
        Ok(Conn { client, statements, task })
    }
}

pub(super) struct Writer {
    config: Arc<Config>,
    location: Arc<Location>,
    shared: Arc<Shared>,
    jobs: mpsc::Receiver<Job>,
    max_batch: usize,
    commit_timeout: Duration,
    connect_timeout: Duration,
    retry_min: Duration,
    retry_max: Duration,
}

/// Why the session was given up.
enum Lost {
    /// The connection ended while idle.
    Idle,
    /// A batch was in flight; its tickets already got `OutcomeUnknown`.
    InFlight(String),
}

impl Writer {
    pub(super) fn new(
        config: Arc<Config>,
        location: Arc<Location>,
        shared: Arc<Shared>,
        options: &PgOptions,
        jobs: mpsc::Receiver<Job>,
    ) -> Self {
        Writer {
            config,
            location,
            shared,
            jobs,
            max_batch: options.queue_capacity.max(1),
            commit_timeout: options.commit_timeout,
            connect_timeout: options.connect_timeout,
            retry_min: options.retry_min,
            retry_max: options.retry_max.max(options.retry_min),
        }
    }

    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    /// The writer loop; returns once the queue is closed and drained.
    pub(super) async fn run(mut self, conn: Conn) {
        let mut conn = Some(conn);
        while let Some(c) = conn.as_mut() {
            let lost = match self.serve(c).await {
                Ok(()) => return,
                Err(lost) => lost,
            };
            // Closes the socket now: the server rolls back whatever it had not committed.
            drop(conn.take());
            conn = self.reconnect(lost).await;
        }
    }

    /// Writes batches until the queue closes (`Ok`) or the session is lost.
    async fn serve(&mut self, c: &mut Conn) -> Result<(), Lost> {
        loop {
            let first = tokio::select! {
                // Loss first: a commit that arrives after it is refused, not sent to a
                // dead session and reported as of unknown outcome.
                biased;
                // The connection task ends as soon as the server goes away: notice
                // it now rather than with the next commit.
                _ = &mut c.task.0 => return Err(Lost::Idle),
                job = self.jobs.recv() => match job {
                    Some(job) => job,
                    None => return Ok(()),
                },
            };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            // A claim that ran into another server's binding aborts the transaction:
            // its commit is failed alone and the rest of the batch is written again.
            while !batch.is_empty() {
                let result = tokio::time::timeout(
                    self.commit_timeout,
                    write_batch(c, &batch, &self.location, &self.shared.writer),
                )
                .await;
                match result {
                    Ok(Ok(mut reclaimed)) => {
                        // Count before resolving, so a caller that saw its ticket resolve
                        // also sees its transaction counted.
                        self.shared.transactions.fetch_add(1, Ordering::Relaxed);
                        batch.drain(..).for_each(|job| job.succeed(&mut reclaimed));
                    }
                    Ok(Err(BatchError::Taken { job, key })) => {
                        let holder = holder(c, &key, &self.location).await;
                        debug!(store = %self.location, %key, holder = ?holder.as_ref().map(|l| &l.duid), "claim lost to another server");
                        let e = StoreError::Conflict { store: Location::clone(&self.location), key, holder };
                        batch.remove(job).fail(e);
                    }
                    Ok(Err(BatchError::Pg(e))) if !is_connection_loss(&e, &c.client) => {
                        let e = pg_error(&self.location, "commit")(e);
                        error!(store = %self.location, jobs = batch.len(), error = %e, "lease transaction rolled back");
                        batch.drain(..).for_each(|job| job.fail(e.clone()));
                    }
                    Ok(Err(BatchError::Pg(e))) => return Err(self.unknown(batch, message(&e))),
                    Err(_elapsed) => {
                        let reason = format!("no answer within {:?}", self.commit_timeout);
                        return Err(self.unknown(batch, reason));
                    }
                }
            }
        }
    }

    fn refuse(&self, job: Job) {
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
        job.fail(StoreError::Unavailable { store: Location::clone(&self.location) });
    }

    fn unknown(&self, batch: Vec<Job>, reason: String) -> Lost {
        let e = StoreError::OutcomeUnknown { store: Location::clone(&self.location), reason: reason.clone() };
        batch.into_iter().for_each(|job| job.fail(e.clone()));
        Lost::InFlight(reason)
    }

    /// Refuses commits until a new session is up, trying with a doubling delay.
    /// `None` if the queue closed meanwhile (the store was dropped).
    async fn reconnect(&mut self, lost: Lost) -> Option<Conn> {
        // Refuse before logging, so no commit slips into the queue meanwhile.
        self.shared.up.store(false, Ordering::Relaxed);
        let since = Instant::now();
        let refused_before = self.shared.refused.load(Ordering::Relaxed);
        let reason = match lost {
            Lost::Idle => "connection closed".to_string(),
            Lost::InFlight(reason) => format!("connection lost with a transaction in flight ({reason})"),
        };
        error!(store = %self.location, %reason, "lease database lost: new leases are refused until it is back; reconnecting");
        let mut delay = self.retry_min;
        loop {
            // Whatever was queued before the store went down is refused too.
            let wake = tokio::time::Instant::now() + delay;
            loop {
                tokio::select! {
                    job = self.jobs.recv() => match job {
                        Some(job) => self.refuse(job),
                        None => return None,
                    },
                    () = tokio::time::sleep_until(wake) => break,
                }
            }
            // Bounded: a server that accepts connections but does not answer (or holds
            // a lock on `leases`, which preparing the statements waits for) must not
            // keep the writer here. Commits that were queued before the store went down
            // are refused meanwhile, not kept waiting.
            let limit =
                self.config.get_connect_timeout().copied().unwrap_or(self.connect_timeout) + self.commit_timeout;
            let attempt = tokio::time::timeout(limit, Conn::open(&self.config, &self.location, false));
            tokio::pin!(attempt);
            let attempt = loop {
                tokio::select! {
                    result = &mut attempt => break result.unwrap_or_else(|_| Err(StoreError::Postgres {
                        store: Location::clone(&self.location),
                        action: "connect",
                        message: format!("no answer within {limit:?}"),
                    })),
                    job = self.jobs.recv() => match job {
                        Some(job) => self.refuse(job),
                        None => return None,
                    },
                }
            };
            match attempt {
                Ok(conn) => {
                    self.shared.up.store(true, Ordering::Relaxed);
                    let refused = self.shared.refused.load(Ordering::Relaxed) - refused_before;
                    info!(store = %self.location, down_for = ?since.elapsed(), refused, "lease database back: granting again");
                    return Some(conn);
                }
                Err(e) => {
                    debug!(store = %self.location, error = %e, retry_in = ?delay, "lease database still unreachable");
                    delay = (delay * 2).min(self.retry_max);
                }
            }
        }
    }
}

/// One pipelined step of a batch and what it answered.
type Step<'a> = Pin<Box<dyn Future<Output = Result<Option<Vec<Row>>, tokio_postgres::Error>> + 'a>>;

/// Why a batch was not written.
#[derive(Debug)]
enum BatchError {
    /// The claim of `key` by the commit at `job` in the batch found another server's
    /// binding; the transaction rolled back.
    Taken {
        job: usize,
        key: LeaseKey,
    },
    Pg(tokio_postgres::Error),
}

/// The binding a lost claim ran into, if it can be read.
async fn holder(c: &Conn, key: &LeaseKey, location: &Location) -> Option<Box<Lease>> {
    let args = KeyArgs::new(key);
    match c.client.query(&c.statements.get, &args.params()).await {
        Ok(rows) => decode_rows(&rows, location).into_iter().next().map(Box::new),
        Err(e) => {
            debug!(store = %location, %key, error = %message(&e), "cannot read the holder of a lost claim");
            None
        }
    }
}

/// Applies a batch in one transaction. Returns what each reclaim deleted, in batch
/// order. On error nothing of the batch is kept: the first error is returned (later
/// ones only say the transaction was aborted).
async fn write_batch(
    c: &Conn,
    batch: &[Job],
    location: &Location,
    writer: &String,
) -> Result<VecDeque<Vec<Lease>>, BatchError> {
    // Unboxed: the arguments live for one transaction, and boxing would allocate once per op.
    #[allow(clippy::large_enum_variant)]
    enum Args<'a> {
        Upsert(UpsertArgs<'a>),
        Remove(KeyArgs),
        Reclaim(i64),
        Probe,
    }
    // Which commit each statement belongs to, for a claim that fails.
    let mut args = Vec::new();
    for (j, job) in batch.iter().enumerate() {
        match job {
            Job::Commit { ops, .. } => {
                for op in ops {
                    args.push((
                        Some((j, op.key())),
                        match op {
                            // Validation refused times past i64 before queueing.
                            LeaseOp::Upsert(lease) => match UpsertArgs::new(lease, writer) {
                                Some(a) => Args::Upsert(a),
                                None => continue,
                            },
                            LeaseOp::Remove { .. } => Args::Remove(KeyArgs::new(&op.key())),
                        },
                    ));
                }
            }
            Job::Probe { .. } => args.push((None, Args::Probe)),
            // Clamp rather than fail: "now" past i64::MAX means everything has expired.
            Job::Reclaim { now, .. } => args.push((None, Args::Reclaim(i64::try_from(*now).unwrap_or(i64::MAX)))),
        }
    }

    let (client, statements) = (&c.client, &c.statements);
    let mut steps: Vec<Step<'_>> = Vec::with_capacity(args.len() + 2);
    steps.push(Box::pin(async move { client.batch_execute("BEGIN").await.map(|()| None) }));
    for (_, a) in &args {
        steps.push(match a {
            Args::Upsert(u) => {
                Box::pin(async move { client.execute(&statements.upsert, &u.params()).await.map(|_| None) })
            }
            Args::Remove(k) => {
                Box::pin(async move { client.execute(&statements.remove, &k.params_by(writer)).await.map(|_| None) })
            }
            Args::Reclaim(now) => Box::pin(async move { client.query(&statements.reclaim, &[now]).await.map(Some) }),
            // An empty transaction writes nothing, so it commits even where nothing can be
            // written (a read-only database or session, a standby). A DELETE that matches
            // no row is refused there like any write to the table, and changes nothing;
            // taking a transaction ID makes COMMIT write its record to the WAL and wait for
            // the flush, as a commit of leases does.
            Args::Probe => Box::pin(async move {
                client.batch_execute("DELETE FROM leases WHERE false; SELECT txid_current()").await.map(|()| None)
            }),
        });
    }
    // With synchronous_commit on (checked at connect), COMMIT answers once the WAL is
    // flushed: this is the moment the leases become durable.
    steps.push(Box::pin(async move { client.batch_execute("COMMIT").await.map(|()| None) }));

    // The pipeline: poll every step once, in order. Each sends its request on its
    // first poll (the statements are prepared), so all of them are queued on the
    // connection before any answer is awaited.
    let mut early: Vec<Option<Result<Option<Vec<Row>>, tokio_postgres::Error>>> = steps.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (step, out) in steps.iter_mut().zip(early.iter_mut()) {
            if let Poll::Ready(r) = step.as_mut().poll(cx) {
                *out = Some(r);
            }
        }
        Poll::Ready(())
    })
    .await;

    let mut first_error = None;
    let mut reclaimed = VecDeque::new();
    for (i, (step, out)) in steps.into_iter().zip(early).enumerate() {
        let result = match out {
            Some(r) => r,
            None => step.await,
        };
        match result {
            Ok(Some(rows)) => reclaimed.push_back(decode_rows(&rows, location)),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert((i, e));
            }
        }
    }
    match first_error {
        None => Ok(reclaimed),
        Some((i, e)) => {
            // Step 0 is BEGIN: statement i - 1 of `args`.
            let owner = i.checked_sub(1).and_then(|a| args.get(a)).and_then(|(owner, _)| *owner);
            match owner {
                Some((job, key)) if e.code().is_some_and(|c| c.code() == TAKEN) => Err(BatchError::Taken { job, key }),
                _ => Err(BatchError::Pg(e)),
            }
        }
    }
}
