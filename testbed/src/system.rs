//! Preconditions on the host: root, and a bpffs where the daemon pins its maps.

use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::exec;

const BPFFS: &str = "/sys/fs/bpf";

/// Fails with a clear message unless the effective user is root.
///
/// Namespaces, veth pairs and XDP all need it; without this check the first
/// `ip` command would fail with a less obvious "Operation not permitted".
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!("this needs root (effective uid is {euid}): run it as root, e.g. with sudo");
    }
    Ok(())
}

/// Mounts bpffs on /sys/fs/bpf unless something is already mounted there as bpf.
///
/// Serialised within the process: two concurrent mounts would stack, and the
/// upper one would hide whatever was pinned in the lower one.
pub fn ensure_bpffs() -> Result<()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if bpffs_mounted()? {
        return Ok(());
    }
    exec::host(&["mount", "-t", "bpf", "bpf", BPFFS]).with_context(|| format!("cannot mount bpffs on {BPFFS}"))?;
    Ok(())
}

fn bpffs_mounted() -> Result<bool> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[1] == BPFFS && f[2] == "bpf"
    }))
}
