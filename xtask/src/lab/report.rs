//! The lab's verdict: what the client got, who answered it, and whether the daemon cleaned up.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use anyhow::Result;

use super::client::{Exchange, Received};
use super::{LabOptions, DNS, DOMAIN};

pub struct Outcome {
    pub exchange: Exchange,
    /// `dhcpv6d stats` output.
    pub stats: Result<String>,
    pub daemon_exit: ExitStatus,
    /// The daemon's pin folder was still there after it stopped.
    pub pins_left: bool,
    pub daemon_log: PathBuf,
    pub client_log: PathBuf,
    pub client_env: PathBuf,
}

impl Outcome {
    /// Prints the summary; true if the client was configured as expected.
    pub fn print(&self, dir: &Path, opts: &LabOptions) -> bool {
        let configured = match &self.exchange {
            Exchange::Configured(got) => configured(got),
            Exchange::Nothing(_) => false,
        };
        println!();
        println!("==== cargo xtask lab: summary ====");
        match &self.exchange {
            Exchange::Configured(got) => {
                println!("client        dhclient -6 -S on cli0: answered (INFORM6)");
                println!("  DNS servers {}  [{}]", list(&got.name_servers), check(got.name_servers.iter().any(|s| s == DNS), DNS));
                println!("  domains     {}  [{}]", list(&got.domain_search), check(got.domain_search.iter().any(|d| d == DOMAIN), DOMAIN));
                println!("  server id   {}", if got.server_id.is_empty() { "(none)" } else { &got.server_id });
            }
            Exchange::Nothing(why) => println!("client        dhclient -6 -S on cli0: NOT configured: {why}"),
        }
        match &self.stats {
            Ok(text) => {
                println!("XDP counters  (dhcpv6d stats)");
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    println!("  {line}");
                }
                println!("answered by   {}", answered_by(counter(text, "answered"), opts, &self.exchange));
            }
            Err(e) => {
                println!("XDP counters  unavailable: {e:#}");
                let who = if opts.no_fast_path { "userspace (--no-fast-path)" } else { "unknown (no counters)" };
                println!("answered by   {who}");
            }
        }
        let stopped = if self.daemon_exit.success() {
            "stopped cleanly on SIGTERM".to_owned()
        } else {
            format!("did NOT stop cleanly: {}", self.daemon_exit)
        };
        let pins = if self.pins_left { "; it left its pins behind (removed by the lab)" } else { "" };
        println!("dhcpv6d       {stopped}{pins}");
        println!("files         {} ({}, {}, {})", dir.display(), name(&self.daemon_log), name(&self.client_log), name(&self.client_env));
        println!("result        {}", if configured { "PASS" } else { "FAIL" });
        configured
    }
}

fn configured(got: &Received) -> bool {
    got.name_servers.iter().any(|s| s == DNS) && got.domain_search.iter().any(|d| d == DOMAIN)
}

fn answered_by(answered: Option<u64>, opts: &LabOptions, exchange: &Exchange) -> String {
    match (answered, exchange) {
        (_, Exchange::Nothing(_)) => "nobody (the client got no answer)".to_owned(),
        (Some(n), _) if n > 0 => format!("the XDP fast path (answered = {n})"),
        (Some(_), _) if opts.no_fast_path => "userspace (fast path off: --no-fast-path)".to_owned(),
        (Some(_), _) => "userspace (XDP answered 0 frames)".to_owned(),
        (None, _) => "unknown (no `answered` counter in the stats)".to_owned(),
    }
}

fn check(ok: bool, want: &str) -> String {
    if ok { format!("ok: has {want}") } else { format!("MISSING {want}") }
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "(none)".to_owned() } else { v.join(" ") }
}

fn name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Value of counter `name` in `name value` lines.
pub fn counter(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == name).then_some(())?;
        w.next()?.parse().ok()
    })
}

/// The last `n` lines of `text`, indented.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    if lines.is_empty() {
        return "    (empty)".to_owned();
    }
    lines[start..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters() {
        let s = "seen 3\nanswered 2\npassed 1\n";
        assert_eq!(counter(s, "answered"), Some(2));
        assert_eq!(counter(s, "seen"), Some(3));
        assert_eq!(counter(s, "dropped"), None);
        assert_eq!(counter("answered_x 5\n", "answered"), None);
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc\n", 2), "    b\n    c");
        assert_eq!(tail("", 2), "    (empty)");
    }
}
