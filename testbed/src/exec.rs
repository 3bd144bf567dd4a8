//! Running a command to completion with a time limit.
//!
//! Every helper command (`ip`, `ethtool`, `apt-get`, ...) goes through here so
//! that no wait is unbounded and every failure carries the command's stderr.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Time limit of [`crate::Netns::run`] and of the crate's own helper commands.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` (stdin from /dev/null) until it exits or `timeout` passes.
///
/// Returns its stdout. Fails, with the command line and its stderr, when it
/// exits unsuccessfully; on timeout it is killed (it is our own child) and
/// reaped before the error is returned.
pub fn run_command(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let shown = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;

    // Drain both pipes on threads so a chatty command can't block on a full pipe.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waitpid")? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{shown}` did not finish within {timeout:?} and was killed");
        }
        thread::sleep(Duration::from_millis(10));
    };

    // A grandchild that inherited a pipe may keep it open: don't wait for it forever.
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default()).into_owned()
    };
    let stdout = collect(out);
    let stderr = collect(err);
    if !status.success() {
        bail!("`{shown}` failed ({status}): {}", stderr.trim());
    }
    Ok(stdout)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// The command line, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a program in the current (host) namespaces with the default time limit.
pub(crate) fn host(args: &[&str]) -> Result<String> {
    let (prog, rest) = args.split_first().context("empty command")?;
    run_command(Command::new(prog).args(rest), DEFAULT_RUN_TIMEOUT)
}
