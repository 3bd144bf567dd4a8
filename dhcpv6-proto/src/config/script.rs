//! `lease_script` / `--lease-script PATH` and `lease_script_timeout` / `--lease-script-timeout`:
//! the program run once per lease event (the daemon's `lease_script.rs`). Refused at load when
//! it is not an executable file, so a typo shows at start, not as a failure per event.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Reason;

/// How long one run may take before it is killed, unless configured.
pub const DEFAULT_LEASE_SCRIPT_TIMEOUT: u32 = 10;
/// The longest `lease_script_timeout`: a run that takes longer is stuck.
pub const MAX_LEASE_SCRIPT_TIMEOUT: u32 = 3600;

/// A checked lease script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseScript {
    pub path: PathBuf,
    pub timeout: Duration,
}

/// Why `path` cannot be run, if it cannot (checked as the daemon's user; root runs any file
/// with an execute bit).
pub(crate) fn check_executable(path: &Path) -> Result<(), Reason> {
    let refuse = |problem: String| Reason::LeaseScript { path: path.to_path_buf(), problem };
    let meta = std::fs::metadata(path).map_err(|e| refuse(e.to_string()))?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(refuse("not executable (no execute permission)".into()));
    }
    Ok(())
}

pub(crate) fn check_timeout(secs: u32) -> Result<Duration, Reason> {
    if !(1..=MAX_LEASE_SCRIPT_TIMEOUT).contains(&secs) {
        return Err(Reason::Range {
            what: "lease_script_timeout",
            value: u64::from(secs),
            min: 1,
            max: u64::from(MAX_LEASE_SCRIPT_TIMEOUT),
        });
    }
    Ok(Duration::from_secs(u64::from(secs)))
}
