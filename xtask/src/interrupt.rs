//! Ctrl-C (SIGINT) and SIGTERM as a flag, so long tasks stop at their next check and their
//! guards (namespaces, processes, pins) are dropped instead of leaked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT and SIGTERM (idempotent). Child processes get the default
/// dispositions back when they exec.
pub fn install() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic; the sigaction struct is fully initialised.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!("cannot install a handler for signal {sig}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails with "interrupted" once Ctrl-C was pressed.
pub fn check() -> Result<()> {
    if interrupted() {
        bail!("interrupted (Ctrl-C / SIGTERM)");
    }
    Ok(())
}

/// Sleeps `d`, waking early (with an error) on Ctrl-C.
pub fn sleep(d: Duration) -> Result<()> {
    let deadline = Instant::now() + d;
    loop {
        check()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        thread::sleep(left.min(Duration::from_millis(100)));
    }
}
