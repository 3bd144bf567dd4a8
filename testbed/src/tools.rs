//! Installing the external programs a test or lab needs, with apt-get.
//!
//! CI machines start bare: a test that needs `dhclient` or `ping` installs it
//! rather than skipping, and fails loudly if it cannot.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::exec::run_command;

/// apt-get can be slow, but not unboundedly so.
const APT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Held while checking and installing, so concurrent tests don't race apt/dpkg.
/// The bool records whether `apt-get update` already ran in this process.
static APT: Mutex<bool> = Mutex::new(false);

/// Makes sure every `(binary, debian package)` is available, installing the
/// packages of the missing binaries with apt-get (`apt-get update` runs at most
/// once per process). Prints the packages it installs to stderr. Fails, naming
/// the binary and its package, when a binary is still missing afterwards.
pub fn ensure_tools(tools: &[(&str, &str)]) -> Result<()> {
    let mut updated = APT.lock().unwrap_or_else(|e| e.into_inner());

    let missing: Vec<(&str, &str)> = tools.iter().copied().filter(|(bin, _)| find_binary(bin).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut pkgs: Vec<&str> = missing.iter().map(|&(_, p)| p).collect();
    pkgs.sort_unstable();
    pkgs.dedup();
    let wanted = missing.iter().map(|(b, p)| format!("`{b}` (package {p})")).collect::<Vec<_>>();
    eprintln!("testbed: missing {}; installing with apt-get: {}", wanted.join(", "), pkgs.join(" "));

    apt_install(&mut updated, &pkgs, &wanted.join(", "))?;
    for (bin, pkg) in missing {
        if find_binary(bin).is_none() {
            bail!("package {pkg} was installed but `{bin}` is still not on PATH, /usr/sbin or /sbin");
        }
    }
    Ok(())
}

/// Installs Debian packages, naming `wanted` (what they are for) when that fails.
/// Runs `apt-get update` first unless `updated` says it already ran.
fn apt_install(updated: &mut bool, pkgs: &[&str], wanted: &str) -> Result<()> {
    if find_binary("apt-get").is_none() {
        bail!("missing {wanted} and apt-get is not available to install it");
    }
    if !*updated {
        *updated = true;
        // Not fatal by itself: the package may already be known. If it isn't,
        // the install below fails and reports it.
        if let Err(e) = run_command(apt().arg("update"), APT_TIMEOUT) {
            eprintln!("testbed: warning: apt-get update failed: {e:#}");
        }
    }
    if let Err(e) = run_command(apt().args(["install", "-y", "--no-install-recommends"]).args(pkgs), APT_TIMEOUT) {
        bail!("cannot install {wanted}: {e:#}");
    }
    Ok(())
}

/// Like [`ensure_tools`] for files outside PATH: if `present()` is false, installs
/// `pkgs` (for `what`), and fails unless `present()` holds afterwards.
pub(crate) fn ensure_installed(what: &str, pkgs: &[&str], present: impl Fn() -> bool) -> Result<()> {
    let mut updated = APT.lock().unwrap_or_else(|e| e.into_inner());
    if present() {
        return Ok(());
    }
    eprintln!("testbed: missing {what}; installing with apt-get: {}", pkgs.join(" "));
    apt_install(&mut updated, pkgs, what)?;
    if !present() {
        bail!("packages {} were installed but {what} is still missing", pkgs.join(" "));
    }
    Ok(())
}

fn apt() -> Command {
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive")
        // Wait (bounded) for another apt/dpkg instead of failing at once.
        .args(["-o", "DPkg::Lock::Timeout=300"]);
    c
}

/// Looks `bin` up on PATH, then in /usr/sbin and /sbin (often missing from a
/// non-login root PATH). A name containing '/' is taken as a path.
pub(crate) fn find_binary(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        return is_executable(Path::new(bin)).then(|| PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(bin))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}
