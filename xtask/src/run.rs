//! `cargo xtask run`: build, then replace this process with target/release/dhcpv6d.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::build;

/// On the machines this project runs on, eth0 is the uplink: an XDP program on it, or a
/// DHCPv6 server answering on it, can cut the box off or disturb the network.
const UPLINK: &str = "eth0";

pub struct RunOptions {
    pub ifaces: Vec<String>,
    pub i_know: bool,
    /// Passed to the daemon after the `--iface` flags.
    pub args: Vec<String>,
}

pub fn run(root: &Path, opts: &RunOptions) -> Result<()> {
    refuse_uplink(opts)?;
    testbed::require_root().context("dhcpv6d attaches XDP programs, pins BPF maps and binds UDP port 547")?;
    let bin = build::build_all(root, true)?;
    testbed::ensure_bpffs()?;
    let mut cmd = Command::new(&bin);
    for iface in &opts.ifaces {
        cmd.arg("--iface").arg(iface);
    }
    cmd.args(&opts.args);
    eprintln!("xtask: exec {}", describe(&cmd));
    // exec only returns on failure.
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot execute {}", bin.display()))
}

fn refuse_uplink(opts: &RunOptions) -> Result<()> {
    if opts.i_know {
        return Ok(());
    }
    let named = opts.ifaces.iter().map(String::as_str).chain(ifaces_in_args(&opts.args));
    for iface in named {
        if iface == UPLINK {
            bail!(
                "refusing to run on {UPLINK}: on these machines it is the uplink, and an XDP \
                 program or a DHCPv6 server on it can cut the box off. Use a spare NIC \
                 (e.g. `cargo xtask run --iface eth1`), try `cargo xtask lab`, or pass \
                 --i-know if you really mean it."
            );
        }
    }
    Ok(())
}

/// Interfaces named by `--iface X` / `--iface=X` among the daemon's extra arguments.
fn ifaces_in_args(args: &[String]) -> impl Iterator<Item = &str> {
    args.iter().enumerate().filter_map(|(i, a)| {
        if a == "--iface" {
            args.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix("--iface=")
        }
    })
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ifaces: &[&str], args: &[&str], i_know: bool) -> RunOptions {
        RunOptions {
            ifaces: ifaces.iter().map(|s| s.to_string()).collect(),
            i_know,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn eth0_needs_i_know() {
        assert!(refuse_uplink(&opts(&["eth0"], &[], false)).is_err());
        assert!(refuse_uplink(&opts(&["eth1"], &["--iface", "eth0"], false)).is_err());
        assert!(refuse_uplink(&opts(&["eth1"], &["--iface=eth0"], false)).is_err());
        assert!(refuse_uplink(&opts(&["eth0"], &[], true)).is_ok());
        assert!(refuse_uplink(&opts(&["eth1", "eth2"], &["--dns", "2001:db8::53"], false)).is_ok());
    }
}
