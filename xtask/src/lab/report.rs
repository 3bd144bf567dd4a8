//! The lab's verdict: what the client got, who answered it, and whether the daemon cleaned up.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use anyhow::Result;

use super::client::{Exchange, Received};
use super::{LabOptions, DNS, DOMAIN};

pub struct Outcome {
    pub exchange: Exchange,
    /// dhclient -6 -N -P: an address and a prefix from the pools.
    pub stateful: Exchange,
    /// `dhcpv6d stats` output.
    pub stats: Result<String>,
    pub daemon_exit: ExitStatus,
    /// The daemon's pin folder was still there after it stopped (as it should be).
    pub pins_kept: bool,
    /// `dhcpv6d detach` removed them.
    pub detached: bool,
    pub daemon_log: PathBuf,
    pub client_log: PathBuf,
    pub client_env: PathBuf,
}

impl Outcome {
    /// Prints the summary; true if the client was configured as expected.
    pub fn print(&self, dir: &Path, opts: &LabOptions) -> bool {
        let stateful_ok = match &self.stateful {
            Exchange::Configured(got) => {
                println!();
                println!("stateful      dhclient -6 -N -P on cli0: answered ({})", got.reason);
                println!("  address     {}  [{}]", got.address, check(!got.address.is_empty(), super::NA_POOL));
                println!("  prefix      {}  [{}]", got.prefix, check(got.prefix.ends_with("/56"), super::PD_POOL));
                !got.address.is_empty() && got.prefix.ends_with("/56")
            }
            Exchange::Nothing(why) => {
                println!();
                println!("stateful      dhclient -6 -N -P on cli0: NOT configured: {why}");
                false
            }
        };
        let configured = stateful_ok
            && match &self.exchange {
                Exchange::Configured(got) => configured(got),
                Exchange::Nothing(_) => false,
            };
        println!();
        println!("==== cargo xtask lab: summary ====");
        match &self.exchange {
            Exchange::Configured(got) => {
                println!("client        dhclient -6 -S on cli0: answered ({})", got.reason);
                println!(
                    "  DNS servers {}  [{}]",
                    list(&got.name_servers),
                    check(got.name_servers.iter().any(|s| s == DNS), DNS)
                );
                println!(
                    "  domains     {}  [{}]",
                    list(&got.domain_search),
                    check(got.domain_search.iter().any(|d| d == DOMAIN), DOMAIN)
                );
                println!("  server id   {}", if got.server_id.is_empty() { "(none)" } else { &got.server_id });
            }
            Exchange::Nothing(why) => {
                println!("client        dhclient -6 -S on cli0: NOT configured: {why}")
            }
        }
        match &self.stats {
            Ok(text) => {
                println!("counters      (dhcpv6d stats)");
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    println!("  {line}");
                }
                let xdp = counter(text, &["xdp_answered", "answered"]);
                let user = counter(text, &["user_replied"]);
                println!("answered by   {}", answered_by(xdp, user, opts, &self.exchange));
            }
            Err(e) => {
                println!("counters      unavailable: {e:#}");
                let who = if opts.no_fast_path { "userspace (--no-fast-path)" } else { "unknown (no counters)" };
                println!("answered by   {who}");
            }
        }
        let stopped = if self.daemon_exit.success() {
            "stopped cleanly".to_owned()
        } else {
            format!("did NOT stop cleanly: {}", self.daemon_exit)
        };
        let pins = match (self.pins_kept, self.detached) {
            (true, true) => "; XDP stayed attached, `dhcpv6d detach` removed it",
            (true, false) => "; XDP stayed attached, `dhcpv6d detach` FAILED (the lab removed the pins)",
            (false, _) => "; its pins were gone after SIGTERM (they should stay)",
        };
        println!("dhcpv6d       {stopped}{pins}");
        println!(
            "files         {} ({}, {}, {})",
            dir.display(),
            name(&self.daemon_log),
            name(&self.client_log),
            name(&self.client_env)
        );
        println!("result        {}", if configured { "PASS" } else { "FAIL" });
        configured
    }
}

fn configured(got: &Received) -> bool {
    got.name_servers.iter().any(|s| s == DNS) && got.domain_search.iter().any(|d| d == DOMAIN)
}

/// Who answered, from the XDP program's `answered` and userspace's `replied` counters.
fn answered_by(xdp: Option<u64>, user: Option<u64>, opts: &LabOptions, exchange: &Exchange) -> String {
    let user = user.map(|n| format!(", userspace replied = {n}")).unwrap_or_default();
    match (xdp, exchange) {
        (_, Exchange::Nothing(_)) => {
            format!("nobody: the client got no answer (XDP answered = {}{user})", xdp.unwrap_or(0))
        }
        (Some(n), _) if n > 0 => format!("the XDP fast path (XDP answered = {n}{user})"),
        (Some(_), _) if opts.no_fast_path => {
            format!("userspace, fast path off (--no-fast-path; XDP answered = 0{user})")
        }
        (Some(_), _) => format!("userspace (XDP answered = 0{user})"),
        (None, _) => format!("unknown: no `answered` counter in the stats{user}"),
    }
}

fn check(ok: bool, want: &str) -> String {
    if ok {
        format!("ok: has {want}")
    } else {
        format!("MISSING {want}")
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".to_owned()
    } else {
        v.join(" ")
    }
}

fn name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Value of the first of `names` found in `name value` lines.
pub fn counter(stats: &str, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|name| {
        stats.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == *name).then_some(())?;
            w.next()?.parse().ok()
        })
    })
}

/// The last `n` lines of `text`, indented, without terminal colour codes.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    if lines.is_empty() {
        return "    (empty)".to_owned();
    }
    lines[start..].iter().map(|l| format!("    {}", strip_ansi(l))).collect::<Vec<_>>().join("\n")
}

/// Removes `ESC [ ... letter` sequences (colours).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters() {
        let s = "# XDP\nxdp_frames 3\nxdp_answered 2\n# userspace\nuser_replied 1\n";
        assert_eq!(counter(s, &["xdp_answered", "answered"]), Some(2));
        assert_eq!(counter("answered 4\n", &["xdp_answered", "answered"]), Some(4));
        assert_eq!(counter(s, &["user_replied"]), Some(1));
        assert_eq!(counter(s, &["dropped"]), None);
        assert_eq!(counter("answered_x 5\n", &["answered"]), None);
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc\n", 2), "    b\n    c");
        assert_eq!(tail("", 2), "    (empty)");
        assert_eq!(tail("\u{1b}[32m INFO\u{1b}[0m serving", 1), "     INFO serving");
    }
}
