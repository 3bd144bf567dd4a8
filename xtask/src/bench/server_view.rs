//! What a stateful row's server saw over the row, beside the generator's figures: the UDP
//! datagrams its namespace's kernel dropped for want of socket buffer (`Udp6RcvbufErrors` in
//! `/proc/net/snmp6`, read inside the server's namespace), and, for dhcpv6d, the lease
//! writer's time per transaction by step (`dhcpv6_store_step_seconds` from `--metrics`).
//! Both are read when the row's server has started and again when its last run is done; the
//! row reports the difference.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use testbed::Netns;

/// Where a stateful dhcpv6d of the bench serves its metrics, inside the server namespace
/// (each row has its own namespace, so one port does).
pub const METRICS_ADDR: &str = "[::1]:9464";

/// The store steps the writer times, in the order the report shows them.
pub const STORE_STEPS: [&str; 3] = ["write", "sync", "checkpoint"];

/// A snapshot at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `/proc/net/snmp6`'s `Udp6RcvbufErrors` in the server's namespace.
    pub rcvbuf_errors: Option<u64>,
    /// The metrics text (dhcpv6d only).
    pub metrics: Option<String>,
}

/// One store step's latency over the row: bucket bounds that hold the 50th and 99th
/// percentile (the histogram's resolution), and the largest seen (the daemon's `_max` gauge:
/// over its life, which is the row's, as every row starts its own server).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLatency {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// What a row's server saw.
#[derive(Debug, Clone, Default)]
pub struct ServerView {
    pub rcvbuf_errors: Option<u64>,
    /// (step, latency) for each of `STORE_STEPS` that ran at least once.
    pub store_steps: Vec<(&'static str, StepLatency)>,
}

/// Reads the server's counters now; what cannot be read is left `None` (a row's figures do
/// not depend on it).
pub fn snapshot(ns: &Netns, metrics: bool) -> Snapshot {
    let rcvbuf_errors = ns
        .run_timeout(&["cat", "/proc/net/snmp6"], Duration::from_secs(5))
        .ok()
        .and_then(|t| snmp6_counter(&t, "Udp6RcvbufErrors"));
    let metrics = metrics
        .then(|| {
            let url = format!("http://{METRICS_ADDR}/metrics");
            ns.run_timeout(&["curl", "-sf", "--max-time", "5", &url], Duration::from_secs(10)).ok()
        })
        .flatten();
    Snapshot { rcvbuf_errors, metrics }
}

/// The row's view: `after` less `before`.
pub fn between(before: &Snapshot, after: &Snapshot) -> ServerView {
    let rcvbuf_errors = match (before.rcvbuf_errors, after.rcvbuf_errors) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    let store_steps = match (&before.metrics, &after.metrics) {
        (Some(b), Some(a)) => store_steps(b, a).unwrap_or_default(),
        (None, Some(a)) => store_steps("", a).unwrap_or_default(),
        _ => Vec::new(),
    };
    ServerView { rcvbuf_errors, store_steps }
}

fn snmp6_counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next() == Some(name)).then(|| f.next()?.parse().ok()).flatten()
    })
}

/// Samples of a Prometheus text: (name with labels, value).
fn samples(text: &str) -> BTreeMap<&str, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k, v.parse().ok()?))
        })
        .collect()
}

/// The store steps' latency between two metrics texts.
fn store_steps(before: &str, after: &str) -> Result<Vec<(&'static str, StepLatency)>> {
    let (b, a) = (samples(before), samples(after));
    let mut out = Vec::new();
    for step in STORE_STEPS {
        let prefix = format!("dhcpv6_store_step_seconds_bucket{{step=\"{step}\",le=\"");
        let mut buckets: Vec<(f64, f64)> = a
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(prefix.as_str())?.strip_suffix("\"}")?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, v - b.get(k).copied().unwrap_or(0.0)))
            })
            .collect();
        buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
        let count = buckets.last().map_or(0.0, |(_, n)| *n);
        if count <= 0.0 {
            continue;
        }
        let at = |q: f64| buckets.iter().find(|(_, n)| *n >= q * count).map_or(f64::INFINITY, |(le, _)| *le);
        let max = a
            .get(format!("dhcpv6_store_step_seconds_max{{step=\"{step}\"}}").as_str())
            .copied()
            .with_context(|| format!("no _max gauge for step {step}"))?;
        out.push((step, StepLatency { count: count as u64, p50: at(0.5), p99: at(0.99), max }));
    }
    Ok(out)
}

/// "<= 1 ms / <= 25 ms / 61 ms": bucket bounds of p50 and p99, then the largest seen.
pub fn show(l: &StepLatency) -> String {
    let ms = |s: f64| if s < 0.001 { format!("{:.0} µs", s * 1e6) } else { format!("{} ms", trim(s * 1e3)) };
    // Past the last finite bucket (1 s, the daemon's `PHASE_BUCKETS`).
    let bound = |s: f64| if s.is_infinite() { "> 1 s".to_string() } else { format!("<= {}", ms(s)) };
    format!("{} / {} / {}", bound(l.p50), bound(l.p99), ms(l.max))
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE dhcpv6_store_step_seconds histogram
dhcpv6_store_step_seconds_bucket{step=\"sync\",le=\"0.001\"} 10
dhcpv6_store_step_seconds_bucket{step=\"sync\",le=\"0.01\"} 10
dhcpv6_store_step_seconds_bucket{step=\"sync\",le=\"+Inf\"} 10
dhcpv6_store_step_seconds_max{step=\"sync\"} 0.0004
";
    const AFTER: &str = "\
dhcpv6_store_step_seconds_bucket{step=\"write\",le=\"0.001\"} 100
dhcpv6_store_step_seconds_bucket{step=\"write\",le=\"+Inf\"} 100
dhcpv6_store_step_seconds_max{step=\"write\"} 0.0002
dhcpv6_store_step_seconds_bucket{step=\"sync\",le=\"0.001\"} 60
dhcpv6_store_step_seconds_bucket{step=\"sync\",le=\"0.01\"} 108
dhcpv6_store_step_seconds_bucket{step=\"sync\",le=\"+Inf\"} 110
dhcpv6_store_step_seconds_max{step=\"sync\"} 0.061
dhcpv6_store_step_seconds_bucket{step=\"checkpoint\",le=\"+Inf\"} 0
dhcpv6_store_step_seconds_max{step=\"checkpoint\"} 0
";

    #[test]
    fn store_steps_are_the_difference_of_the_two_texts() {
        let steps = store_steps(BEFORE, AFTER).unwrap();
        // Checkpoint never ran: left out. Sync: 100 in the row, 50 of them <= 1 ms, 98 <= 10 ms.
        assert_eq!(
            steps,
            vec![
                ("write", StepLatency { count: 100, p50: 0.001, p99: 0.001, max: 0.0002 }),
                ("sync", StepLatency { count: 100, p50: 0.001, p99: f64::INFINITY, max: 0.061 }),
            ]
        );
        assert_eq!(show(&steps[1].1), "<= 1 ms / > 1 s / 61 ms");
        assert_eq!(show(&steps[0].1), "<= 1 ms / <= 1 ms / 200 µs");
    }

    #[test]
    fn rcvbuf_errors_come_from_snmp6() {
        let text = "Udp6InDatagrams                 \t12\nUdp6RcvbufErrors                \t7\nUdp6SndbufErrors 0\n";
        assert_eq!(snmp6_counter(text, "Udp6RcvbufErrors"), Some(7));
        assert_eq!(snmp6_counter("Udp6InDatagrams 1\n", "Udp6RcvbufErrors"), None);
        let view = between(
            &Snapshot { rcvbuf_errors: Some(3), metrics: None },
            &Snapshot { rcvbuf_errors: Some(10), metrics: None },
        );
        assert_eq!(view.rcvbuf_errors, Some(7));
        assert!(view.store_steps.is_empty());
    }
}
