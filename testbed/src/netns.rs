//! Named network namespaces and running programs inside them.
//!
//! Programs are started with `nsenter --net=/run/netns/NAME`, which switches
//! only the network namespace. `ip netns exec` would also unshare the mount
//! namespace and remount /sys, hiding /sys/fs/bpf: a daemon started that way
//! pins its maps where nobody else can see them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::exec::{self, run_command, DEFAULT_RUN_TIMEOUT};
use crate::process::{lock, signal, Proc, Shared, TERM_GRACE};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted on Drop after the processes spawned in it
/// (that are still running) have been stopped.
pub struct Netns {
    name: String,
    path: PathBuf,
    procs: Mutex<Vec<Shared>>,
}

impl Netns {
    /// Creates namespace `d6{tag}{pid}{counter}` (unique per process and call,
    /// so parallel tests and concurrent test binaries don't collide) with `lo` up.
    pub fn new(tag: &str) -> Result<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("d6{tag}{}x{n}", std::process::id());
        exec::host(&["ip", "netns", "add", &name]).with_context(|| format!("creating network namespace {name}"))?;
        let ns = Netns { path: PathBuf::from(format!("/run/netns/{name}")), name, procs: Mutex::default() };
        // From here on Drop removes the namespace, also if this fails.
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, for `nsenter --net=` or `setns(2)`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A Command running `program` inside the namespace (add args yourself).
    /// Processes started from it directly are NOT tracked: use
    /// [`Netns::spawn_command`] for anything long-running.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path.display())).arg("--").arg(program);
        c
    }

    /// Runs `args` in the namespace to completion (at most
    /// [`DEFAULT_RUN_TIMEOUT`]); its stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.run_timeout(args, DEFAULT_RUN_TIMEOUT)
    }

    /// [`Netns::run`] with a chosen time limit.
    pub fn run_timeout(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let (prog, rest) = args.split_first().context("empty command")?;
        run_command(self.cmd(prog).args(rest), timeout).with_context(|| format!("in network namespace {}", self.name))
    }

    /// Starts a long-running program in the namespace; stdout and stderr go to
    /// `log` (created or truncated) or /dev/null.
    pub fn spawn(&self, args: &[&str], log: Option<&Path>) -> Result<Proc> {
        let (prog, rest) = args.split_first().context("empty command")?;
        let mut c = self.cmd(prog);
        c.args(rest);
        self.spawn_command(c, log)
    }

    /// Like [`Netns::spawn`] for a Command made with [`Netns::cmd`] (e.g. to
    /// set environment variables or the working directory).
    pub fn spawn_command(&self, cmd: Command, log: Option<&Path>) -> Result<Proc> {
        let (proc, slot) = Proc::start(cmd, log)?;
        self.procs.lock().unwrap_or_else(|e| e.into_inner()).push(slot);
        Ok(proc)
    }

    /// Stops whatever we spawned that still runs: SIGTERM to all, a common
    /// grace period, then SIGKILL. Only our own unreaped children are signalled.
    fn stop_procs(&self) {
        let procs = std::mem::take(&mut *self.procs.lock().unwrap_or_else(|e| e.into_inner()));
        let running: Vec<&Shared> = procs.iter().filter(|s| lock(s).poll().is_none()).collect();
        for s in &running {
            let _ = lock(s).send(signal::SIGTERM);
        }
        let deadline = Instant::now() + TERM_GRACE;
        for s in &running {
            let mut slot = lock(s);
            if slot.wait_until(deadline).is_none() {
                slot.kill_and_reap();
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.stop_procs();
        if let Err(e) = exec::host(&["ip", "netns", "del", &self.name]) {
            eprintln!("testbed: cannot delete network namespace {}: {e:#}", self.name);
        }
    }
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netns").field("name", &self.name).finish()
    }
}
