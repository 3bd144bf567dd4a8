//! SIGINT and SIGTERM as a flag: loops stop at their next check, BPF_PROG_TEST_RUN returns
//! EINTR, and the XDP links are dropped (detached) on the way out.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::{bail, Result};

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNO: AtomicI32 = AtomicI32::new(0);
static SENDER: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    SIGNO.store(sig, Ordering::SeqCst);
    if !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
        SENDER.store(unsafe { (*info).si_pid() }, Ordering::SeqCst);
    }
    STOP.store(true, Ordering::SeqCst);
}

/// "signal N from pid P", once stopped.
pub fn describe() -> String {
    format!("signal {} from pid {}", SIGNO.load(Ordering::SeqCst), SENDER.load(Ordering::SeqCst))
}

pub fn install() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic; the struct is fully initialised.
        // No SA_RESTART: a blocking syscall returns EINTR so the caller sees the stop.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            act.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!("sigaction({sig}): {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

pub fn check() -> Result<()> {
    if stopped() {
        bail!("interrupted ({})", describe());
    }
    Ok(())
}

extern "C" fn on_wakeup(_: libc::c_int) {}

/// SIGUSR1 ends a running BPF_PROG_TEST_RUN (it returns EINTR) without stopping anything
/// else: the generator's timer sends it when a window is over.
pub fn install_wakeup() -> Result<()> {
    // SAFETY: as in `install`; the handler does nothing.
    let rc = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_wakeup as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGUSR1, &act, std::ptr::null_mut())
    };
    if rc != 0 {
        bail!("sigaction(SIGUSR1): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
