//! After `cargo test` had to be stopped (Ctrl-C, timeout), its test binaries had no chance to
//! drop their guards: remove what they left, and only that. The testbed names a namespace
//! `d6{tag}{pid}x{n}` and the tests name their bpffs pins `dhcpv6-...-{pid}[-...]`, after
//! the PID of the test process; only names with a PID from the stopped group are touched.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testbed::run_command;

const NETNS_DIR: &str = "/run/netns";
const BPFFS: &str = "/sys/fs/bpf";

/// Deletes the namespaces and pins that processes `pids` (all gone now) left behind.
pub fn leftovers(pids: &BTreeSet<u32>) {
    for name in names(Path::new(NETNS_DIR)) {
        if netns_owner(&name).is_some_and(|p| pids.contains(&p)) {
            eprintln!("xtask: removing network namespace {name} left by a stopped test");
            if let Err(e) = run_command(Command::new("ip").args(["netns", "del", &name]), Duration::from_secs(30)) {
                eprintln!("xtask: warning: {e:#}");
            }
        }
    }
    for name in names(Path::new(BPFFS)) {
        if pin_owners(&name).any(|p| pids.contains(&p)) {
            let path = Path::new(BPFFS).join(&name);
            eprintln!("xtask: removing {} left by a stopped test", path.display());
            let res = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            if let Err(e) = res {
                eprintln!("xtask: warning: cannot remove {}: {e}", path.display());
            }
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()
}

/// The PID in a testbed namespace name `d6{letters}{pid}x{n}`.
fn netns_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("d6")?.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let (pid, n) = rest.split_once('x')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Every all-digit `-` separated part of a `dhcpv6-...` pin name: the candidates for its PID.
fn pin_owners(name: &str) -> impl Iterator<Item = u32> + '_ {
    name.strip_prefix("dhcpv6-").into_iter().flat_map(|rest| rest.split('-')).filter_map(|part| part.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names() {
        assert_eq!(netns_owner("d6lls14475x8"), Some(14475));
        assert_eq!(netns_owner("d6srv7111x0"), Some(7111));
        assert_eq!(netns_owner("d6srv7111x"), None);
        assert_eq!(netns_owner("bt1"), None);
        assert_eq!(netns_owner("d6srvx1"), None);
    }

    #[test]
    fn pin_names() {
        let owners = |n: &str| pin_owners(n).collect::<Vec<_>>();
        assert_eq!(owners("dhcpv6-aux-ll-14475-5"), [14475, 5]);
        assert_eq!(owners("dhcpv6-lab-7111"), [7111]);
        assert!(owners("dhcpv6").is_empty());
        assert!(owners("maps.debug").is_empty());
    }
}
