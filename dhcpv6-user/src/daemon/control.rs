//! The control socket (`--control-socket`, used by `dhcpv6d ctl`): a Unix socket, mode 0600
//! and root only, one request per connection (`control_proto`).
//!
//! Connections are read here, bounded in size, time and number; each request then goes to
//! the server loop over a channel, because answering it needs the loop's state (leases,
//! configuration). The loop answers in `Server::control`, below.

use std::{
    os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot, Semaphore},
};
use tracing::{debug, info, warn};

use super::Server;
use crate::{
    config,
    control_proto::{
        self as proto, IfaceStatus, Latency, LeaseFilter, LeaseView, ReleaseTarget, Request, Response, Stats, Status,
        WorkerView,
    },
    leases::unix_now,
    metrics::WorkerStats,
    stats::UserStats,
};

/// One request on its way to the server loop, with where its answer goes.
pub(super) type Call = (Request, oneshot::Sender<Response>);

/// Connections served at once; more are answered "busy" and closed.
const MAX_CONNECTIONS: usize = 8;
/// For the request line to arrive, and for the answer to be taken.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Input read and thrown away after the answer, at most.
const DRAIN_LEN: u64 = 64 * 1024;
/// For the server loop to answer (a reload re-reads interfaces; a release waits for a commit).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The control side of the server: where requests come from, and what `status` reports.
pub(super) struct Control {
    pub(super) rx: Option<mpsc::Receiver<Call>>,
    started: Instant,
    _socket: SocketPath,
}

impl Control {
    /// Binds `path` and starts accepting on it.
    pub(super) fn start(path: &Path) -> Result<Self> {
        let (listener, socket) = bind(path)?;
        let (tx, rx) = mpsc::channel(MAX_CONNECTIONS);
        info!(path = %path.display(), "control socket");
        tokio::spawn(accept(listener, tx, IO_TIMEOUT));
        Ok(Control { rx: Some(rx), started: Instant::now(), _socket: socket })
    }
}

/// The next request, for the server loop's select (never, once there is no receiver).
pub(super) async fn next(rx: &mut Option<mpsc::Receiver<Call>>) -> Option<Call> {
    match rx.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The socket's path, removed when the daemon ends, unless another daemon has put its own
/// socket there since.
struct SocketPath {
    path: PathBuf,
    dev_ino: (u64, u64),
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.dev_ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Creates the socket with mode 0600 under a temporary name and renames it into place, so
/// the path never names a socket with looser permissions. A socket already at the path is
/// one a daemon left behind (a crash): it is replaced. Anything else there is refused.
fn bind(path: &Path) -> Result<(UnixListener, SocketPath)> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            bail!("{} exists and is not a socket: refusing to replace it", path.display());
        }
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).with_context(|| format!("binding the control socket {}", tmp.display()))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| std::fs::symlink_metadata(path));
    match placed {
        Ok(m) => Ok((listener, SocketPath { path: path.to_owned(), dev_ino: (m.dev(), m.ino()) })),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e).with_context(|| format!("placing the control socket at {}", path.display()))
        }
    }
}

async fn accept(listener: UnixListener, tx: mpsc::Sender<Call>, io_timeout: Duration) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let conn = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                // Out of descriptors, typically: wait rather than spin.
                warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Best effort: a full socket buffer means the client is not reading anyway.
            let _ = conn.try_write(&proto::encode(&Response::error("busy: too many control connections")));
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection(conn, &tx, io_timeout).await {
                debug!(error = %format!("{e:#}"), "control connection");
            }
        });
    }
}

async fn connection(mut conn: UnixStream, tx: &mpsc::Sender<Call>, io_timeout: Duration) -> Result<()> {
    let uid = conn.peer_cred().context("peer credentials")?.uid();
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let ours = unsafe { libc::geteuid() };
    let answer = if uid != 0 && uid != ours {
        warn!(uid, "control socket: refused a connection that is not root's");
        Response::error("the control socket is root's only")
    } else {
        match tokio::time::timeout(io_timeout, read_request(&mut conn)).await {
            Err(_) => Response::error(format!("no request within {} ms", io_timeout.as_millis())),
            Ok(Err(e)) => Response::error(format!("bad request: {e:#}")),
            Ok(Ok(req)) => ask(tx, req).await,
        }
    };
    tokio::time::timeout(io_timeout, conn.write_all(&proto::encode(&answer)))
        .await
        .context("writing the answer timed out")??;
    let _ = conn.shutdown().await;
    // Closing with unread input resets the connection, and the client would lose the answer
    // (to a request that was too long): take a little more first.
    let mut rest = (&mut conn).take(DRAIN_LEN);
    let _ = tokio::time::timeout(io_timeout, tokio::io::copy(&mut rest, &mut tokio::io::sink())).await;
    Ok(())
}

/// One line, at most `MAX_REQUEST_LEN` bytes (the newline may be left out at the end).
async fn read_request(conn: &mut UnixStream) -> Result<Request> {
    let mut line = Vec::new();
    let limit = u64::try_from(proto::MAX_REQUEST_LEN + 1).unwrap_or(u64::MAX);
    BufReader::new(conn.take(limit)).read_until(b'\n', &mut line).await?;
    Ok(proto::decode_request(&line)?)
}

async fn ask(tx: &mpsc::Sender<Call>, req: Request) -> Response {
    let (answer_tx, answer_rx) = oneshot::channel();
    if tx.send((req, answer_tx)).await.is_err() {
        return Response::error("the daemon is stopping");
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, answer_rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Response::error("the daemon is stopping"),
        Err(_) => Response::error(format!("no answer within {} s", ANSWER_TIMEOUT.as_secs())),
    }
}

impl Server {
    /// One request from the loop's select, answered back to its connection (which may have
    /// given up waiting meanwhile: then nobody is told).
    pub(super) async fn control(&mut self, (req, answer): Call) {
        let _ = answer.send(self.respond(req).await);
    }

    async fn respond(&mut self, req: Request) -> Response {
        debug!(?req, "control request");
        match req {
            Request::Status {} => Response::Status(self.status()),
            Request::Leases { filter } => self.leases(filter).await,
            Request::Release { target } => self.release(target).await,
            Request::Reload {} => match self.reload().await {
                Ok(()) => Response::Reloaded,
                Err(e) => Response::error(e),
            },
            Request::ConfigCheck { path } => {
                match config::load(Some(&path), &self.opts.overrides, &self.opts.resolv_conf) {
                    Ok(_) => Response::ConfigOk { path },
                    Err(e) => Response::error(e),
                }
            }
            Request::Stats {} => Response::Stats(self.stats_view()),
        }
    }

    fn status(&self) -> Status {
        let attached: Vec<&str> = self.dp.attached().collect();
        let ifaces = self
            .ifaces
            .iter()
            .map(|i| IfaceStatus {
                name: i.name().to_owned(),
                ifindex: i.ifindex(),
                xdp_attached: attached.contains(&i.name()),
                reply_data: i.has_reply_data(),
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_seconds: self.control.started.elapsed().as_secs(),
            fast_path: self.opts.fast_path,
            ifaces,
            relay_upstream: self.agent.upstream().map(str::to_owned),
            leases: self.stateful.as_ref().map(|s| s.lease_count() as u64),
        }
    }

    /// From the lease store, as `dhcpv6d leases` reads it: what is durable.
    async fn leases(&self, filter: LeaseFilter) -> Response {
        let Some(st) = self.stateful.as_ref() else {
            return Response::Leases { leases: Vec::new() };
        };
        let store = st.lease_store();
        let loaded = tokio::task::spawn_blocking(move || store.load_all()).await;
        let mut all = match loaded {
            Ok(Ok(all)) => all,
            Ok(Err(e)) => return Response::error(format!("reading the lease store: {e}")),
            Err(e) => return Response::error(format!("reading the lease store: {e}")),
        };
        all.retain(|l| filter.matches(l));
        all.sort_by(|a, b| (&a.iface, a.kind, a.addr).cmp(&(&b.iface, b.kind, b.addr)));
        let now = unix_now();
        Response::Leases { leases: all.iter().map(|l| LeaseView::new(l, now)).collect() }
    }

    async fn release(&self, target: ReleaseTarget) -> Response {
        let Some(st) = self.stateful.as_ref() else {
            return Response::error("no stateful service (no pools): nothing to release");
        };
        match st.release(|l| target.names(l)).await {
            Ok(Some(lease)) => {
                info!(%target, duid = %proto::hex(&lease.duid), "lease released by the operator");
                Response::Released { lease: LeaseView::new(&lease, unix_now()) }
            }
            Ok(None) => Response::error(format!("no lease holds {target}")),
            Err(e) => Response::error(format!("{e:#}")),
        }
    }

    fn stats_view(&self) -> Stats {
        stats_view(self.dp.counters(), &self.stats, &self.workers)
    }
}

fn stats_view(xdp: Result<dhcpv6_common::Counters>, user: &UserStats, workers: &[Arc<WorkerStats>]) -> Stats {
    let (xdp, xdp_error) = match xdp {
        Ok(c) => (Some(c.fields().iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let mut messages = std::collections::BTreeMap::<String, std::collections::BTreeMap<String, u64>>::new();
    for (t, o, n) in user.messages() {
        messages.entry(t.to_owned()).or_default().insert(o.to_owned(), n);
    }
    let h = user.commit_latency.snapshot();
    Stats {
        xdp,
        xdp_error,
        userspace: user.snapshot().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        messages,
        lease_events: user.lease_events().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        lease_script: {
            let s = &user.lease_script;
            let failed = s.failures().into_iter().map(|(r, v)| (format!("failed_{r}"), v));
            [("runs".to_owned(), s.runs()), ("dropped".to_owned(), s.dropped())].into_iter().chain(failed).collect()
        },
        commit_latency: Latency { count: h.count, sum_seconds: h.sum_seconds, buckets: h.cumulative },
        workers: workers
            .iter()
            .map(|w| {
                let ord = std::sync::atomic::Ordering::Relaxed;
                WorkerView { received: w.received.load(ord), shed: w.shed.load(ord), queue: w.queue.load(ord) }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Counter, MessageOutcome};

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dhcpv6-control-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    async fn roundtrip(path: &Path, line: &[u8]) -> Vec<u8> {
        let mut c = UnixStream::connect(path).await.unwrap();
        c.write_all(line).await.unwrap();
        c.shutdown().await.unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn socket_is_0600_replaces_a_stale_one_and_goes_on_drop() {
        let d = dir("bind");
        let path = d.join("control.sock");
        // A stale socket, as a crashed daemon leaves it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        let (listener, guard) = bind(&path).unwrap();
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "no temporary name left behind");
        drop(listener);
        drop(guard);
        assert!(!path.exists());
        // Not a socket: refused, and left alone.
        std::fs::write(&path, "precious").unwrap();
        assert!(bind(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn requests_reach_the_loop_and_bad_ones_are_answered_with_an_error() {
        let d = dir("serve");
        let path = d.join("c.sock");
        let mut control = Control::start(&path).unwrap();
        let mut rx = control.rx.take().unwrap();
        let server = tokio::spawn(async move {
            while let Some((req, answer)) = rx.recv().await {
                let r = match req {
                    Request::Release { target } => Response::error(format!("no lease holds {target}")),
                    _ => Response::Reloaded,
                };
                let _ = answer.send(r);
            }
        });
        let out = roundtrip(&path, b"{\"cmd\":\"reload\"}\n").await;
        assert_eq!(proto::decode_response(&out).unwrap(), Response::Reloaded);
        let out = roundtrip(&path, &proto::encode(&Request::Release { target: "2001:db8::1".parse().unwrap() })).await;
        assert_eq!(proto::decode_response(&out).unwrap(), Response::error("no lease holds 2001:db8::1"));
        // No newline, then end of stream: still one request.
        let out = roundtrip(&path, b"{\"cmd\":\"stats\"}").await;
        assert_eq!(proto::decode_response(&out).unwrap(), Response::Reloaded);
        let out = roundtrip(&path, b"{\"cmd\":\"rm -rf\"}\n").await;
        assert!(
            matches!(proto::decode_response(&out).unwrap(), Response::Error { message } if message.starts_with("bad request"))
        );
        let long = vec![b'x'; proto::MAX_REQUEST_LEN + 10];
        let out = roundtrip(&path, &long).await;
        assert!(
            matches!(proto::decode_response(&out).unwrap(), Response::Error { message } if message.contains("longer than"))
        );
        drop(control);
        assert!(!path.exists(), "removed with the daemon");
        server.abort();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_silent_client_is_cut_off() {
        let d = dir("silent");
        let path = d.join("c.sock");
        let (listener, _guard) = bind(&path).unwrap();
        let (tx, _rx) = mpsc::channel(1);
        tokio::spawn(accept(listener, tx, Duration::from_millis(200)));
        let mut c = UnixStream::connect(&path).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await.unwrap().unwrap();
        assert!(
            matches!(proto::decode_response(&out).unwrap(), Response::Error { message } if message.contains("no request within"))
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn stats_carry_every_counter() {
        let u = UserStats::default();
        u.bump(Counter::Replied);
        u.message(1, MessageOutcome::Replied);
        u.commit_latency.observe(Duration::from_millis(2));
        u.lease_script.ran(Some(crate::stats::ScriptFailure::Exit));
        u.lease_script.drop_one();
        let w = Arc::new(WorkerStats::default());
        w.received.store(4, std::sync::atomic::Ordering::Relaxed);
        let s = stats_view(Ok(dhcpv6_common::Counters::default()), &u, &[w, Arc::default()]);
        assert_eq!(s.xdp.as_ref().map(|x| x.len()), Some(34));
        assert!(s.xdp.as_ref().is_some_and(|x| x.contains_key("drop_flood") && x.contains_key("drop_flood_relay")));
        assert!(s.xdp.as_ref().is_some_and(|x| x.contains_key("pass_user_class")));
        for k in [
            "tx_relayed_ir",
            "pass_relay_untrusted",
            "pass_relay_shape",
            "drop_relay_malformed",
            "tx_renew",
            "pass_renew_no_entry",
            "pass_renew_torn",
        ] {
            assert!(s.xdp.as_ref().is_some_and(|x| x.contains_key(k)), "{k}");
        }
        assert_eq!(s.userspace.len(), Counter::ALL.len());
        assert_eq!(s.userspace["replied"], 1);
        assert_eq!(s.messages["solicit"]["replied"], 1);
        assert_eq!(s.messages["renew"]["dropped"], 0);
        assert_eq!(s.commit_latency.count, 1);
        let script: Vec<(&str, u64)> = s.lease_script.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            script,
            [("dropped", 1), ("failed_exit", 1), ("failed_spawn", 0), ("failed_timeout", 0), ("runs", 1)]
        );
        assert_eq!(s.workers.iter().map(|w| w.received).collect::<Vec<_>>(), [4, 0], "per worker, in order");
        let s = stats_view(Err(anyhow::anyhow!("no pinned map")), &u, &[]);
        assert_eq!((s.xdp, s.xdp_error.as_deref()), (None, Some("no pinned map")));
    }
}
