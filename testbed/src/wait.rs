//! Bounded polling, so no test can hang forever on a condition.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

const POLL: Duration = Duration::from_millis(50);

/// Calls `f` every 50 ms until it returns `Ok(true)`; fails after `timeout`.
///
/// An `Err` from `f` is returned at once (it is not retried). Add
/// `.context("waiting for ...")` at the call site to say what was awaited.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("condition not met within {timeout:?}");
        }
        thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}
