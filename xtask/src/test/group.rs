//! Running `cargo test` in a process group of its own, bounded in time and stoppable with
//! Ctrl-C, so that the test binaries and what they started stop with it.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::interrupt;

/// After SIGINT or SIGTERM, how long the group gets before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

pub enum Ended {
    /// It ran to the end (successfully or not).
    Exited(ExitStatus),
    /// It was stopped (Ctrl-C or timeout); `pids` were in its group when it was signalled.
    Stopped { why: &'static str, pids: BTreeSet<u32> },
}

/// Runs `cmd` in a new process group until it exits. On Ctrl-C the group gets SIGINT, after
/// `timeout` SIGTERM; SIGKILL follows if it is still there after [`GRACE`].
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Ended> {
    let mut child = cmd.process_group(0).spawn().with_context(|| format!("cannot start {cmd:?}"))?;
    // The group's ID is the child's PID; while the child is unreaped neither can be reused.
    let pgid = child.id();
    let deadline = Instant::now() + timeout;
    let mut stopping: Option<(Instant, &'static str)> = None;
    let mut pids = BTreeSet::new();
    loop {
        if let Some((since, why)) = stopping {
            if since.elapsed() >= GRACE {
                pids.extend(members(pgid));
                signal(pgid, libc::SIGKILL);
                child.wait().context("waiting for the stopped process group")?;
                return Ok(Ended::Stopped { why, pids });
            }
        }
        // Members are listed before the leader is reaped, while the group ID is still ours.
        if stopping.is_some() {
            pids.extend(members(pgid));
        }
        if let Some(status) = child.try_wait().context("waiting for the process group")? {
            return Ok(match stopping {
                Some((_, why)) => Ended::Stopped { why, pids },
                None => Ended::Exited(status),
            });
        }
        if stopping.is_none() {
            let why = if interrupt::interrupted() {
                Some(("interrupted", libc::SIGINT))
            } else if Instant::now() >= deadline {
                Some(("timed out", libc::SIGTERM))
            } else {
                None
            };
            if let Some((why, sig)) = why {
                eprintln!("xtask: {why}: stopping {cmd:?} and everything it started");
                pids.extend(members(pgid));
                signal(pgid, sig);
                stopping = Some((Instant::now(), why));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(pgid: u32, sig: libc::c_int) {
    // SAFETY: plain syscall, to the process group led by our own unreaped child.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), sig);
    }
}

/// PIDs of the processes in group `pgid` (from /proc/PID/stat).
fn members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        (pgrp(&stat)? == pgid).then_some(pid)
    })
    .collect()
}

/// The process group field of a /proc/PID/stat line; the command name, in parentheses, may
/// itself contain spaces and parentheses, so fields are counted from the last ')'.
fn pgrp(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // state, ppid, pgrp, ...
    rest.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_group_from_stat() {
        assert_eq!(pgrp("1234 (cargo) S 1 1234 1234 0 -1"), Some(1234));
        assert_eq!(pgrp("77 (a b) (c)) R 5 66 66 0"), Some(66));
        assert_eq!(pgrp("garbage"), None);
    }

    #[test]
    fn own_process_is_in_its_group() {
        // SAFETY: getpgrp has no preconditions.
        let pgid = unsafe { libc::getpgrp() } as u32;
        assert!(members(pgid).contains(&std::process::id()));
    }

    #[test]
    fn exits_normally() {
        let ended = run(Command::new("true").stdin(std::process::Stdio::null()), Duration::from_secs(10));
        assert!(matches!(ended, Ok(Ended::Exited(st)) if st.success()));
    }

    #[test]
    fn timeout_stops_the_whole_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30"]).stdin(std::process::Stdio::null());
        let started = Instant::now();
        match run(&mut cmd, Duration::from_millis(300)) {
            Ok(Ended::Stopped { why, pids }) => {
                assert_eq!(why, "timed out");
                assert!(pids.len() >= 2, "{pids:?}");
                for pid in pids {
                    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid));
                }
            }
            _ => panic!("expected a stop on timeout"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    fn is_zombie(pid: u32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s[s.rfind(')').unwrap_or(0) + 1..].trim_start().starts_with('Z'))
            .unwrap_or(true)
    }
}
