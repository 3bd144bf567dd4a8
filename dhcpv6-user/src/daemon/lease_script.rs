//! `--lease-script PATH`: runs PATH once per lease event, with the event in its environment
//! (`env`), never in the way of a Reply.
//!
//! The serving thread only puts the event into a bounded queue (`ScriptQueue::push`, never
//! waits); when the queue is full the event is dropped and counted
//! (`dhcpv6_lease_script_dropped_total`). A thread of its own takes events off the queue and
//! runs the script, at most `CONCURRENCY` at a time, each with a timeout after which its
//! process group is killed: forking, waiting and reading pipes cost the serving thread
//! nothing. Failures (cannot start, non-zero exit, timeout) are counted by reason and logged
//! at most once per `LOG_EVERY` with how many were held back. The script's stdout is
//! discarded; the first `STDERR_KEPT` bytes of its stderr go into the failure's log line,
//! the rest is read and discarded, so a chatty script neither blocks nor floods the log.
//!
//! The environment is cleared (nothing of the daemon's, such as a database password, is
//! passed on) but for a fixed `PATH`.

use std::{
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt},
    sync::{mpsc, Semaphore},
    task::JoinSet,
};
use tracing::warn;

use super::{lease_events, throttle::Throttle};
use crate::{
    config::LeaseScript,
    leases::LeaseKind,
    server::stateful::LeaseEvent,
    stats::{ScriptFailure, UserStats},
};

/// Events waiting for the script; more are dropped.
pub const QUEUE: usize = 4096;
/// Runs at once.
pub const CONCURRENCY: usize = 4;
/// At most one failure line (and one drop line) per this.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Of the script's stderr, what goes into a failure's log line.
const STDERR_KEPT: usize = 256;
/// After the script exits, how long a child it left holding its stderr may keep it open.
const STDERR_GRACE: Duration = Duration::from_secs(1);
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The serving side of the queue.
pub struct ScriptQueue {
    tx: mpsc::Sender<LeaseEvent>,
    script: LeaseScript,
    stats: Arc<UserStats>,
    drops: Mutex<Throttle>,
}

impl ScriptQueue {
    pub fn start(script: LeaseScript, stats: Arc<UserStats>) -> std::io::Result<Self> {
        Self::with_limits(script, stats, QUEUE, CONCURRENCY)
    }

    /// The runner thread, with `queue` events of room and `concurrency` runs at once. It
    /// ends once this is dropped and what was queued has run.
    pub fn with_limits(
        script: LeaseScript,
        stats: Arc<UserStats>,
        queue: usize,
        concurrency: usize,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (s, st) = (script.clone(), Arc::clone(&stats));
        std::thread::Builder::new()
            .name("lease-script".into())
            .spawn(move || runtime.block_on(runner(rx, s, st, concurrency.max(1))))?;
        Ok(Self { tx, script, stats, drops: Mutex::new(Throttle::new(LOG_EVERY)) })
    }

    pub fn script(&self) -> &LeaseScript {
        &self.script
    }

    /// Queues one event for the script; never waits. A full queue drops it (counted).
    pub fn push(&self, ev: LeaseEvent) {
        if self.tx.try_send(ev).is_ok() {
            return;
        }
        self.stats.lease_script.drop_one();
        let allowed = self.drops.lock().unwrap_or_else(PoisonError::into_inner).allow(Instant::now());
        if let Some(held_back) = allowed {
            warn!(
                script = %self.script.path.display(),
                queue = QUEUE,
                dropped_total = self.stats.lease_script.dropped(),
                held_back,
                "lease script queue full: event dropped (the script is slower than the leases)"
            );
        }
    }
}

async fn runner(mut rx: mpsc::Receiver<LeaseEvent>, script: LeaseScript, stats: Arc<UserStats>, concurrency: usize) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let failures = Arc::new(Mutex::new(Throttle::new(LOG_EVERY)));
    let mut running = JoinSet::new();
    while let Some(ev) = rx.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
        while running.try_join_next().is_some() {}
        let (script, stats, failures) = (script.clone(), Arc::clone(&stats), Arc::clone(&failures));
        running.spawn(async move {
            let outcome = run_once(&script, &ev).await;
            drop(slot);
            stats.lease_script.ran(outcome.as_ref().err().map(Failed::reason));
            if let Err(f) = outcome {
                let allowed = failures.lock().unwrap_or_else(PoisonError::into_inner).allow(Instant::now());
                if let Some(held_back) = allowed {
                    warn!(
                        script = %script.path.display(),
                        event = ev.kind.as_str(),
                        reason = f.reason().as_str(),
                        error = %f,
                        held_back,
                        "lease script failed"
                    );
                }
            }
        });
    }
    while running.join_next().await.is_some() {}
}

/// Why one run failed.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("cannot start it: {0}")]
    Spawn(std::io::Error),
    #[error("{status}; stderr: {stderr:?}")]
    Exit { status: ExitStatus, stderr: String },
    #[error("still running after {0:?}: killed")]
    Timeout(Duration),
}

impl Failed {
    fn reason(&self) -> ScriptFailure {
        match self {
            Failed::Spawn(_) => ScriptFailure::Spawn,
            Failed::Exit { .. } => ScriptFailure::Exit,
            Failed::Timeout(_) => ScriptFailure::Timeout,
        }
    }
}

async fn run_once(script: &LeaseScript, ev: &LeaseEvent) -> Result<(), Failed> {
    let mut cmd = tokio::process::Command::new(&script.path);
    cmd.env_clear()
        .env("PATH", PATH)
        .envs(env(ev))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(Failed::Spawn)?;
    let pid = child.id();
    let mut stderr = tokio::spawn(keep_head(child.stderr.take()));
    match tokio::time::timeout(script.timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            stderr.abort();
            Ok(())
        }
        Ok(Ok(status)) => {
            // A child it left behind may hold the pipe open: read no longer than the grace.
            let stderr = match tokio::time::timeout(STDERR_GRACE, &mut stderr).await {
                Ok(Ok(head)) => head,
                _ => {
                    stderr.abort();
                    String::new()
                }
            };
            Err(Failed::Exit { status, stderr })
        }
        Ok(Err(e)) => Err(Failed::Spawn(e)),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The group the child leads (process_group(0)): the script and its children.
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.kill().await;
            stderr.abort();
            Err(Failed::Timeout(script.timeout))
        }
    }
}

/// The first `STDERR_KEPT` bytes of `r`, reading (and discarding) the rest to its end.
async fn keep_head(r: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut r) = r else { return String::new() };
    let mut head = Vec::with_capacity(STDERR_KEPT);
    let _ = (&mut r).take(STDERR_KEPT as u64).read_to_end(&mut head).await;
    let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&head).trim_end().to_owned()
}

/// The script's environment for one event; what is unknown is set, empty.
pub fn env(ev: &LeaseEvent) -> Vec<(&'static str, String)> {
    let l = &ev.lease;
    let (preferred, valid) = ev.lifetimes();
    let relay = ev.requester.relay.as_ref();
    let hex = |b: Option<&Vec<u8>>| b.map(|b| lease_events::hex(b)).unwrap_or_default();
    let (address, prefix) = match l.kind {
        LeaseKind::Address => (l.addr.to_string(), String::new()),
        LeaseKind::Prefix => (String::new(), format!("{}/{}", l.addr, l.prefix_len)),
    };
    vec![
        ("EVENT", ev.kind.as_str().to_owned()),
        ("ORIGIN", ev.origin.as_str().to_owned()),
        ("KIND", l.kind.as_str().to_owned()),
        ("DUID", lease_events::hex(&l.duid)),
        ("IAID", l.iaid.to_string()),
        ("ADDRESS", address),
        ("PREFIX", prefix),
        ("LINK", l.iface.clone()),
        ("PREFERRED_LIFETIME", preferred.to_string()),
        ("VALID_LIFETIME", valid.to_string()),
        ("TIME", ev.at.to_string()),
        ("PEER", ev.requester.peer.map(|p| p.to_string()).unwrap_or_default()),
        ("RELAY_LINK_ADDRESS", relay.and_then(|r| r.link_address).map(|a| a.to_string()).unwrap_or_default()),
        ("INTERFACE_ID", hex(relay.and_then(|r| r.interface_id.as_ref()))),
        ("REMOTE_ID", hex(relay.and_then(|r| r.remote_id.as_ref()))),
        ("SUBSCRIBER_ID", hex(relay.and_then(|r| r.subscriber_id.as_ref()))),
        ("CLIENT_MAC", relay.and_then(|r| r.client_mac).map(|m| lease_events::mac(&m)).unwrap_or_default()),
    ]
}

#[cfg(test)]
mod tests {
    use std::{
        net::Ipv6Addr,
        os::unix::fs::PermissionsExt,
        path::{Path, PathBuf},
    };

    use super::*;
    use crate::{
        leases::{Lease, LeaseState},
        server::stateful::{EventKind, Origin, RelayIds, Requester},
    };

    const AT: u64 = 1_700_000_000;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn lease(kind: LeaseKind, addr: &str, len: u8) -> Lease {
        Lease {
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 7],
            iaid: 9,
            kind,
            addr: a(addr),
            prefix_len: len,
            iface: "eth1".into(),
            valid_until: AT + 7200,
            preferred_until: AT + 3600,
            state: LeaseState::Bound,
            next_hop: None,
            last_transaction: 0,
            relay: None,
        }
    }

    fn grant() -> LeaseEvent {
        LeaseEvent {
            kind: EventKind::Grant,
            origin: Origin::Client,
            lease: lease(LeaseKind::Address, "2001:db8:1::100", 128),
            at: AT,
            requester: Requester {
                peer: Some(a("2001:db8:1::2")),
                relay: Some(RelayIds {
                    link_address: Some(a("2001:db8:1::1")),
                    interface_id: Some(b"p7".to_vec()),
                    remote_id: Some(vec![0, 0, 0, 9, 0xab]),
                    subscriber_id: Some(b"s1".to_vec()),
                    client_mac: Some([2, 0, 0, 0, 0, 0x42]),
                }),
            },
        }
    }

    #[test]
    fn the_environment_of_a_relayed_grant_and_of_a_prefix_release() {
        let env = env(&grant());
        let want = [
            ("EVENT", "grant"),
            ("ORIGIN", "client"),
            ("KIND", "na"),
            ("DUID", "00030001020000000007"),
            ("IAID", "9"),
            ("ADDRESS", "2001:db8:1::100"),
            ("PREFIX", ""),
            ("LINK", "eth1"),
            ("PREFERRED_LIFETIME", "3600"),
            ("VALID_LIFETIME", "7200"),
            ("TIME", "1700000000"),
            ("PEER", "2001:db8:1::2"),
            ("RELAY_LINK_ADDRESS", "2001:db8:1::1"),
            ("INTERFACE_ID", "7037"),
            ("REMOTE_ID", "00000009ab"),
            ("SUBSCRIBER_ID", "7331"),
            ("CLIENT_MAC", "02:00:00:00:00:42"),
        ];
        assert_eq!(env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(), want);

        let release = LeaseEvent::operator_release(lease(LeaseKind::Prefix, "2001:db8:100::", 56), AT);
        let env: std::collections::HashMap<_, _> = env_of(&release);
        assert_eq!(env["EVENT"], "release");
        assert_eq!(env["ORIGIN"], "operator");
        assert_eq!((env["ADDRESS"].as_str(), env["PREFIX"].as_str()), ("", "2001:db8:100::/56"));
        assert_eq!((env["PREFERRED_LIFETIME"].as_str(), env["VALID_LIFETIME"].as_str()), ("0", "0"));
        for k in ["PEER", "RELAY_LINK_ADDRESS", "INTERFACE_ID", "REMOTE_ID", "SUBSCRIBER_ID", "CLIENT_MAC"] {
            assert_eq!(env[k], "", "{k} is unknown, so empty");
        }
    }

    fn env_of(ev: &LeaseEvent) -> std::collections::HashMap<&'static str, String> {
        env(ev).into_iter().collect()
    }

    /// A folder of this test's own.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let d = std::env::temp_dir().join(format!("dhcpv6-lease-script-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Self(d)
        }

        /// An executable shell script with `body`.
        fn script(&self, body: &str, timeout: Duration) -> LeaseScript {
            let path = self.0.join("script.sh");
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            LeaseScript { path, timeout }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Waits (bounded) for `done`.
    fn until(what: &str, done: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn failures(stats: &UserStats, reason: &str) -> u64 {
        stats.lease_script.failures().into_iter().find(|f| f.0 == reason).map_or(0, |f| f.1)
    }

    #[test]
    fn each_event_runs_the_script_with_its_environment_and_nothing_of_the_daemons() {
        let d = Scratch::new("env");
        // Runs go in parallel: one file per event.
        let script = d.script(&format!("env > {}/$EVENT.env", d.0.display()), Duration::from_secs(10));
        let stats = Arc::new(UserStats::default());
        let q = ScriptQueue::start(script, stats.clone()).unwrap();
        q.push(grant());
        q.push(LeaseEvent { kind: EventKind::Renew, ..grant() });
        until("two runs", || stats.lease_script.runs() == 2);
        for kind in ["grant", "renew"] {
            let r = std::fs::read_to_string(d.path(&format!("{kind}.env"))).unwrap();
            assert!(r.lines().any(|l| l == format!("EVENT={kind}")), "{r}");
            assert!(r.lines().any(|l| l == "ADDRESS=2001:db8:1::100"), "{r}");
            assert!(r.lines().any(|l| l == "DUID=00030001020000000007"), "{r}");
            assert!(r.lines().any(|l| l == "CLIENT_MAC=02:00:00:00:00:42"), "{r}");
            assert!(r.lines().any(|l| l == format!("PATH={PATH}")), "{r}");
            assert!(
                !r.lines().any(|l| l.starts_with("CARGO") || l.starts_with("HOME=")),
                "the daemon's environment leaked: {r}"
            );
        }
        assert_eq!(stats.lease_script.failures().iter().map(|f| f.1).sum::<u64>(), 0);
        assert_eq!(stats.lease_script.dropped(), 0);
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_what_was_queued_still_runs() {
        let d = Scratch::new("full");
        let script = d.script("sleep 1", Duration::from_secs(10));
        let stats = Arc::new(UserStats::default());
        let q = ScriptQueue::with_limits(script, stats.clone(), 2, 1).unwrap();
        for _ in 0..10 {
            q.push(grant());
        }
        // One may be running already, two wait: at least seven of ten had no room.
        let dropped = stats.lease_script.dropped();
        assert!((7..=8).contains(&dropped), "{dropped} dropped");
        until("the queued ones to run", || stats.lease_script.runs() + stats.lease_script.dropped() == 10);
        assert_eq!(stats.lease_script.failures().iter().map(|f| f.1).sum::<u64>(), 0);
    }

    #[test]
    fn a_script_past_its_timeout_is_killed_with_what_it_started() {
        let d = Scratch::new("timeout");
        let pid_file = d.path("pid");
        let script = d.script(&format!("sleep 600 & echo $! > {}; wait", pid_file.display()), Duration::from_secs(1));
        let stats = Arc::new(UserStats::default());
        let q = ScriptQueue::start(script, stats.clone()).unwrap();
        q.push(grant());
        until("the timeout", || failures(&stats, "timeout") == 1);
        assert_eq!(stats.lease_script.runs(), 1);
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        until("the script's child to be gone", || gone(pid));
    }

    /// No such process, or a zombie nobody reaped yet.
    fn gone(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn a_failed_script_whose_child_holds_its_stderr_is_an_exit_not_a_timeout() {
        let d = Scratch::new("held");
        let pid_file = d.path("pid");
        let script =
            d.script(&format!("sleep 600 & echo $! > {}; exit 3", pid_file.display()), Duration::from_secs(10));
        let stats = Arc::new(UserStats::default());
        let q = ScriptQueue::start(script, stats.clone()).unwrap();
        let started = Instant::now();
        q.push(grant());
        until("the failed run", || failures(&stats, "exit") == 1);
        assert!(started.elapsed() < Duration::from_secs(8), "not held until the timeout: {:?}", started.elapsed());
        assert_eq!(failures(&stats, "timeout"), 0);
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        // The test's own child's child: ended here, by its PID.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }

    #[tokio::test]
    async fn a_failure_says_the_exit_status_and_the_head_of_stderr_only() {
        let d = Scratch::new("stderr");
        // 100,000 bytes of stderr: read to the end (no blocked script), 256 of them kept.
        let script =
            d.script("echo oops >&2; head -c 100000 /dev/zero | tr '\\0' x >&2; exit 3", Duration::from_secs(10));
        let Err(Failed::Exit { status, stderr }) = run_once(&script, &grant()).await else { panic!("an exit failure") };
        assert_eq!(status.code(), Some(3));
        assert!(stderr.starts_with("oops\nxxx") && stderr.len() == STDERR_KEPT, "{} bytes: {stderr:?}", stderr.len());
        assert!(Failed::Exit { status, stderr }.to_string().starts_with("exit status: 3; stderr: \"oops"));
    }

    #[test]
    fn non_zero_exits_and_scripts_that_cannot_start_are_counted_by_reason() {
        let d = Scratch::new("fail");
        let script = d.script("echo oops >&2; exit 3", Duration::from_secs(10));
        let stats = Arc::new(UserStats::default());
        let q = ScriptQueue::start(script.clone(), stats.clone()).unwrap();
        for _ in 0..3 {
            q.push(grant());
        }
        until("three failed runs", || failures(&stats, "exit") == 3);

        std::fs::remove_file(&script.path).unwrap();
        q.push(grant());
        until("a run that cannot start", || failures(&stats, "spawn") == 1);
        assert_eq!(stats.lease_script.runs(), 4);
        assert!(!Path::new(&script.path).exists());
    }
}
