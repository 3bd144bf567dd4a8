//! Long-running child processes (daemons, clients, load generators) and their
//! guards.
//!
//! The child is shared between its [`Proc`] guard and the [`crate::Netns`] it
//! was spawned in, behind one mutex: whoever stops it reaps it, and a signal
//! is only sent while the child is not yet reaped. An unreaped child's PID
//! cannot be reused, so a signal can never hit an unrelated process.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::exec::describe;

/// How long a process gets to exit after SIGTERM before it gets SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

const POLL: Duration = Duration::from_millis(10);

/// Signal numbers for [`Proc::signal`].
pub mod signal {
    pub use libc::{SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1, SIGUSR2};
}

/// A child and, once reaped, its exit status.
pub(crate) struct Slot {
    child: Child,
    status: Option<ExitStatus>,
}

pub(crate) type Shared = Arc<Mutex<Slot>>;

pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Slot> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slot {
    /// The exit status if it has exited (reaping it), else None.
    pub(crate) fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            // An error here means it is not our child any more: treat it as gone.
            self.status = self.child.try_wait().unwrap_or_else(|_| Some(ExitStatus::default()));
        }
        self.status
    }

    /// Sends `sig` unless the child has already been reaped.
    pub(crate) fn send(&mut self, sig: i32) -> Result<()> {
        if let Some(st) = self.poll() {
            bail!("process {} has already exited ({st})", self.child.id());
        }
        // SAFETY: plain syscall. The PID is our unreaped child (checked just
        // above, under the lock that every reaper holds), so it is not reused.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, sig) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("kill({}, {sig})", self.child.id()));
        }
        Ok(())
    }

    pub(crate) fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(st) = self.poll() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// SIGKILL and reap; for a child that ignored SIGTERM.
    pub(crate) fn kill_and_reap(&mut self) -> ExitStatus {
        if let Some(st) = self.poll() {
            return st;
        }
        let _ = self.child.kill();
        let st = self.child.wait().unwrap_or_default();
        self.status = Some(st);
        st
    }
}

/// Guard of a process started with [`crate::Netns::spawn`]: stopped (SIGTERM,
/// then SIGKILL after [`TERM_GRACE`]) when dropped, if still running.
pub struct Proc {
    slot: Shared,
    pid: u32,
    log: Option<PathBuf>,
    what: String,
}

impl Proc {
    /// Starts `cmd` with stdin from /dev/null and stdout+stderr into `log`
    /// (created or truncated) or /dev/null.
    pub(crate) fn start(mut cmd: Command, log: Option<&Path>) -> Result<(Proc, Shared)> {
        let what = describe(&cmd);
        let (out, err) = match log {
            Some(p) => {
                let f = File::create(p).with_context(|| format!("creating log {}", p.display()))?;
                (Stdio::from(f.try_clone()?), Stdio::from(f))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        // A shell starts background jobs with SIGINT/SIGQUIT ignored, and that
        // is inherited through exec: give the child default dispositions so it
        // reacts to signals the same however the test run was started.
        // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(sig, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start `{what}`"))?;
        let pid = child.id();
        let slot = Arc::new(Mutex::new(Slot { child, status: None }));
        let proc = Proc { slot: slot.clone(), pid, log: log.map(Path::to_path_buf), what };
        Ok((proc, slot))
    }

    /// PID of the process (nsenter execs the program, so it is the program's).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The log file given to `spawn`, if any.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The command line it was started with.
    pub fn command_line(&self) -> &str {
        &self.what
    }

    /// True until the process has exited.
    pub fn is_running(&self) -> bool {
        lock(&self.slot).poll().is_none()
    }

    /// Waits up to `timeout` for the process to exit; its status, or None if
    /// it is still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        lock(&self.slot).wait_until(Instant::now() + timeout)
    }

    /// Sends signal `sig` (see [`signal`]); fails if the process has exited.
    pub fn signal(&self, sig: i32) -> Result<()> {
        lock(&self.slot).send(sig)
    }

    /// SIGTERM, then SIGKILL if it has not exited after [`TERM_GRACE`].
    /// Returns the exit status (also when it had already exited), so a test
    /// can check that the program shut down cleanly on SIGTERM.
    pub fn terminate(&self) -> ExitStatus {
        let mut slot = lock(&self.slot);
        if let Some(st) = slot.poll() {
            return st;
        }
        let _ = slot.send(signal::SIGTERM);
        match slot.wait_until(Instant::now() + TERM_GRACE) {
            Some(st) => st,
            None => {
                eprintln!("testbed: `{}` (pid {}) ignored SIGTERM; sending SIGKILL", self.what, self.pid);
                slot.kill_and_reap()
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc").field("pid", &self.pid).field("cmd", &self.what).finish()
    }
}
