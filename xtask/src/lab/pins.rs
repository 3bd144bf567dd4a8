//! The bpffs paths one lab run owns, named after this process's PID, and removed when the run
//! ends, however it ends. Removing the pass program's pin detaches it.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct Pins {
    /// The daemon's `--pin-dir`.
    pub daemon_dir: PathBuf,
    /// The pinned link of the pass program on the client end.
    pub aux: PathBuf,
}

impl Pins {
    /// Claims the paths for process `pid`; anything already there was left by an earlier run
    /// with the same PID (which has exited, since the PID is ours now) and is removed.
    pub fn claim(pid: u32) -> Result<Pins> {
        let pins = Pins {
            daemon_dir: PathBuf::from(format!("/sys/fs/bpf/dhcpv6-lab-{pid}")),
            aux: PathBuf::from(format!("/sys/fs/bpf/dhcpv6-lab-{pid}-aux")),
        };
        pins.remove().context("removing pins left by an earlier lab run")?;
        Ok(pins)
    }

    pub fn remove(&self) -> Result<()> {
        remove(&self.aux)?;
        remove(&self.daemon_dir)
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("lab: warning: {e:#}");
        }
    }
}

fn remove(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("looking at {}", path.display())),
    };
    let res = if meta.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    match res {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
