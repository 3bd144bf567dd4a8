//! Prometheus text exposition on `--metrics ADDR`: the XDP counters (read from the pinned map,
//! summed over CPUs), the userspace counters (events, messages by type and outcome, lease
//! events, the lease script's runs, failures and drops, lease-commit latency), the lease count
//! and pool usage. A minimal HTTP/1.0
//! responder: every request gets the metrics, whatever its path.
//!
//! `dist/grafana/dhcpv6d.json` graphs these; a test below holds it to what is rendered here.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tracing::{info, warn};

use dhcpv6_common::Counters;

use crate::{
    dataplane,
    stats::{Counter, HistogramSnapshot, Phase, UserStats},
};

/// What the exposition reads from.
#[derive(Clone)]
pub struct Sources {
    pub pin_dir: PathBuf,
    pub user: Arc<UserStats>,
    pub leases: Arc<AtomicU64>,
    /// Pool usage as of the last tick: (link, pool, used, size).
    pub pools: Arc<std::sync::Mutex<Vec<(String, String, u64, u128)>>>,
    /// Whether the lease store writes; `None` without pools (no store).
    pub store_up: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Each receive worker's counters and queue depth (`--workers`).
    pub workers: Vec<Arc<WorkerStats>>,
    /// Lease commits queued and not yet durable; `None` without a store.
    pub commits_in_flight: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// Stateful decisions, and those that waited for another worker's; `None` without pools.
    pub engine_lock: Option<Arc<crate::daemon::LockStats>>,
    /// The lease store's writer timings, if it measures them (SQLite).
    pub store_timings: Option<Arc<crate::leases::StoreTimings>>,
}

/// One receive worker's share of the traffic, for the metrics.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Datagrams its socket gave it.
    pub received: AtomicU64,
    /// Of those, shed from its full queue unanswered (oldest first).
    pub shed: AtomicU64,
    /// Datagrams in its queue now.
    pub queue: Arc<AtomicU64>,
}

/// Histogram families with one label, and beside each its largest observation
/// (`NAME_max`, a gauge: a stall shows there before it moves a percentile).
fn histograms(out: &mut String, name: &str, label: &str, hs: &[(&str, HistogramSnapshot)]) {
    for (v, h) in hs {
        for (le, n) in &h.cumulative {
            let _ = writeln!(out, "{name}_bucket{{{label}=\"{v}\",le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{label}=\"{v}\",le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{{label}=\"{v}\"}} {}", h.sum_seconds);
        let _ = writeln!(out, "{name}_count{{{label}=\"{v}\"}} {}", h.count);
    }
    let _ = writeln!(out, "# HELP {name}_max The largest observation since the start.\n# TYPE {name}_max gauge");
    for (v, h) in hs {
        let _ = writeln!(out, "{name}_max{{{label}=\"{v}\"}} {}", h.max_seconds);
    }
}

pub fn render(s: &Sources) -> String {
    let xdp = dataplane::pinned_counters(&s.pin_dir);
    if let Err(e) = &xdp {
        warn!(error = %format!("{e:#}"), "metrics: XDP counters unavailable");
    }
    render_with(xdp.ok().as_ref(), s)
}

/// The exposition with the XDP counters given (`None`: unreadable, the family stays empty).
pub fn render_with(xdp: Option<&Counters>, s: &Sources) -> String {
    let mut out = String::new();
    out.push_str("# HELP dhcpv6_xdp_frames_total Frames the XDP program handled, by outcome.\n");
    out.push_str("# TYPE dhcpv6_xdp_frames_total counter\n");
    for (name, v) in xdp.map(Counters::fields).into_iter().flatten() {
        let _ = writeln!(out, "dhcpv6_xdp_frames_total{{outcome=\"{name}\"}} {v}");
    }
    out.push_str("# HELP dhcpv6_userspace_total Userspace events (received, replied, drops by reason, ...).\n");
    out.push_str("# TYPE dhcpv6_userspace_total counter\n");
    for (name, v) in s.user.snapshot() {
        let _ = writeln!(out, "dhcpv6_userspace_total{{event=\"{name}\"}} {v}");
    }
    out.push_str(
        "# HELP dhcpv6_messages_total Client messages the userspace path took in, by type and outcome \
         (replied, dropped, failed: the send or the lease commit failed).\n",
    );
    out.push_str("# TYPE dhcpv6_messages_total counter\n");
    for (t, o, v) in s.user.messages() {
        let _ = writeln!(out, "dhcpv6_messages_total{{type=\"{t}\",outcome=\"{o}\"}} {v}");
    }
    out.push_str(
        "# HELP dhcpv6_duplicates_in_flight_total Client messages dropped on arrival: the same client DUID, \
         transaction ID and type was already queued or waiting for its commit (a retransmission the answer on \
         its way answers).\n",
    );
    out.push_str("# TYPE dhcpv6_duplicates_in_flight_total counter\n");
    for (t, c) in [
        ("request", Counter::DuplicateInFlightRequest),
        ("renew", Counter::DuplicateInFlightRenew),
        ("rebind", Counter::DuplicateInFlightRebind),
        ("solicit", Counter::DuplicateInFlightSolicit),
        ("information_request", Counter::DuplicateInFlightInformationRequest),
    ] {
        let _ = writeln!(out, "dhcpv6_duplicates_in_flight_total{{type=\"{t}\"}} {}", s.user.get(c));
    }
    out.push_str("# HELP dhcpv6_lease_events_total Lease changes made durable, by event.\n");
    out.push_str("# TYPE dhcpv6_lease_events_total counter\n");
    for (e, v) in s.user.lease_events() {
        let _ = writeln!(out, "dhcpv6_lease_events_total{{event=\"{e}\"}} {v}");
    }
    let script = &s.user.lease_script;
    out.push_str("# HELP dhcpv6_lease_script_runs_total Runs of the lease script that ended, however they ended.\n");
    out.push_str("# TYPE dhcpv6_lease_script_runs_total counter\n");
    let _ = writeln!(out, "dhcpv6_lease_script_runs_total {}", script.runs());
    out.push_str(
        "# HELP dhcpv6_lease_script_failures_total Runs of the lease script that failed, by reason \
         (spawn: could not start, exit: non-zero exit or signal, timeout: killed).\n",
    );
    out.push_str("# TYPE dhcpv6_lease_script_failures_total counter\n");
    for (reason, v) in script.failures() {
        let _ = writeln!(out, "dhcpv6_lease_script_failures_total{{reason=\"{reason}\"}} {v}");
    }
    out.push_str(
        "# HELP dhcpv6_lease_script_dropped_total Lease events not given to the lease script: its queue was full.\n",
    );
    out.push_str("# TYPE dhcpv6_lease_script_dropped_total counter\n");
    let _ = writeln!(out, "dhcpv6_lease_script_dropped_total {}", script.dropped());
    let h = s.user.commit_latency.snapshot();
    out.push_str("# HELP dhcpv6_store_commit_seconds Time from a lease commit to its being durable.\n");
    out.push_str("# TYPE dhcpv6_store_commit_seconds histogram\n");
    for (le, n) in &h.cumulative {
        let _ = writeln!(out, "dhcpv6_store_commit_seconds_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "dhcpv6_store_commit_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "dhcpv6_store_commit_seconds_sum {}", h.sum_seconds);
    let _ = writeln!(out, "dhcpv6_store_commit_seconds_count {}", h.count);
    out.push_str(
        "# HELP dhcpv6_phase_seconds Time of each step of a stateful message's way: queue_wait (receipt \
         to handling), decide (the engine, its lock included), reply_send (once durable).\n",
    );
    out.push_str("# TYPE dhcpv6_phase_seconds histogram\n");
    let phases: Vec<_> = Phase::ALL.iter().map(|p| (p.as_str(), s.user.phase(*p).snapshot())).collect();
    histograms(&mut out, "dhcpv6_phase_seconds", "phase", &phases);
    if let Some(t) = &s.store_timings {
        out.push_str(
            "# HELP dhcpv6_store_step_seconds The lease writer's time per transaction: write (the batch's \
             statements), sync (COMMIT: WAL append and fsync), checkpoint (WAL checkpoints, off the commit path).\n",
        );
        out.push_str("# TYPE dhcpv6_store_step_seconds histogram\n");
        let steps =
            [("write", t.write.snapshot()), ("sync", t.sync.snapshot()), ("checkpoint", t.checkpoint.snapshot())];
        histograms(&mut out, "dhcpv6_store_step_seconds", "step", &steps);
        out.push_str(
            "# HELP dhcpv6_store_jobs_total Commits (and probes, reclaims) the writer took, over all its \
             transactions: per transaction, the group commit's batch.\n# TYPE dhcpv6_store_jobs_total counter\n",
        );
        let _ = writeln!(out, "dhcpv6_store_jobs_total {}", t.jobs.load(Ordering::Relaxed));
    }
    out.push_str("# HELP dhcpv6_leases Leases held (addresses and prefixes).\n# TYPE dhcpv6_leases gauge\n");
    let _ = writeln!(out, "dhcpv6_leases {}", s.leases.load(Ordering::Relaxed));
    if let Some(up) = &s.store_up {
        out.push_str(
            "# HELP dhcpv6_store_healthy 1 while the lease store writes, 0 during an outage (no new leases).\n",
        );
        out.push_str("# TYPE dhcpv6_store_healthy gauge\n");
        let _ = writeln!(out, "dhcpv6_store_healthy {}", u8::from(up.load(Ordering::Relaxed)));
    }
    out.push_str(
        "# HELP dhcpv6_userspace_queue Messages waiting for userspace, all workers.\n# TYPE dhcpv6_userspace_queue gauge\n",
    );
    let depth: u64 = s.workers.iter().map(|w| w.queue.load(Ordering::Relaxed)).sum();
    let _ = writeln!(out, "dhcpv6_userspace_queue {depth}");
    out.push_str(
        "# HELP dhcpv6_worker_queue Messages waiting in one worker's queue.\n# TYPE dhcpv6_worker_queue gauge\n",
    );
    for (i, w) in s.workers.iter().enumerate() {
        let _ = writeln!(out, "dhcpv6_worker_queue{{worker=\"{i}\"}} {}", w.queue.load(Ordering::Relaxed));
    }
    out.push_str(
        "# HELP dhcpv6_worker_received_total Datagrams each receive worker's socket gave it.\n\
         # TYPE dhcpv6_worker_received_total counter\n",
    );
    for (i, w) in s.workers.iter().enumerate() {
        let _ = writeln!(out, "dhcpv6_worker_received_total{{worker=\"{i}\"}} {}", w.received.load(Ordering::Relaxed));
    }
    out.push_str(
        "# HELP dhcpv6_worker_shed_total Datagrams shed unanswered from a worker's full queue (oldest first).\n\
         # TYPE dhcpv6_worker_shed_total counter\n",
    );
    for (i, w) in s.workers.iter().enumerate() {
        let _ = writeln!(out, "dhcpv6_worker_shed_total{{worker=\"{i}\"}} {}", w.shed.load(Ordering::Relaxed));
    }
    if let Some(c) = &s.commits_in_flight {
        out.push_str(
            "# HELP dhcpv6_store_commits_in_flight Lease commits queued and not yet durable (bounded: past the \
             bound new lease changes are shed, shed_commit_backlog).\n# TYPE dhcpv6_store_commits_in_flight gauge\n",
        );
        let _ = writeln!(out, "dhcpv6_store_commits_in_flight {}", c.load(Ordering::Relaxed));
    }
    if let Some(l) = &s.engine_lock {
        out.push_str(
            "# HELP dhcpv6_engine_decisions_total Stateful decisions, by whether the engine's lock was free \
             (contended: another worker held it).\n# TYPE dhcpv6_engine_decisions_total counter\n",
        );
        let (all, waited) = (l.decisions.load(Ordering::Relaxed), l.contended.load(Ordering::Relaxed));
        let _ = writeln!(out, "dhcpv6_engine_decisions_total{{lock=\"free\"}} {}", all.saturating_sub(waited));
        let _ = writeln!(out, "dhcpv6_engine_decisions_total{{lock=\"contended\"}} {waited}");
    }
    out.push_str("# HELP dhcpv6_pool_used Addresses or prefixes in use per pool.\n# TYPE dhcpv6_pool_used gauge\n");
    out.push_str("# HELP dhcpv6_pool_size Addresses or prefixes per pool.\n# TYPE dhcpv6_pool_size gauge\n");
    if let Ok(pools) = s.pools.lock() {
        for (link, pool, used, size) in pools.iter() {
            let _ = writeln!(out, "dhcpv6_pool_used{{link=\"{link}\",pool=\"{pool}\"}} {used}");
            let _ = writeln!(out, "dhcpv6_pool_size{{link=\"{link}\",pool=\"{pool}\"}} {size}");
        }
    }
    out
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("binding the metrics listener on {addr}"))
}

pub async fn serve(listener: TcpListener, sources: Sources) {
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, "metrics on http://{a}/metrics");
    }
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { continue };
        let sources = sources.clone();
        tokio::spawn(async move {
            // Read (and ignore) the request, bounded in size and time.
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf)).await;
            let body = render(&sources);
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    //! The store gauge, and the Grafana dashboard (`dist/grafana/dhcpv6d.json`) against
    //! what `render` exports.

    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::stats::{Counter, MessageOutcome};

    const DASHBOARD: &str = include_str!("../../dist/grafana/dhcpv6d.json");

    /// Labels Prometheus adds to every series it scrapes: not the daemon's to export.
    const TARGET_LABELS: [&str; 2] = ["instance", "job"];

    /// A metric selector in an expression: name and `(label, op, value)` matchers.
    #[derive(Debug)]
    struct Selector {
        name: String,
        matchers: Vec<(String, String, String)>,
    }

    /// Sources with something counted in every family the dashboard reads.
    fn busy_sources() -> Sources {
        let user = Arc::new(UserStats::default());
        user.bump(Counter::Replied);
        user.bump(Counter::DuplicateInFlightRenew);
        user.message(1, MessageOutcome::Replied);
        user.commit_latency.observe(Duration::from_millis(3));
        user.phase(Phase::Decide).observe(Duration::from_micros(20));
        let timings = Arc::new(crate::leases::StoreTimings::default());
        timings.sync.observe(Duration::from_millis(40));
        Sources {
            pin_dir: PathBuf::from("/nonexistent"),
            user,
            leases: Arc::new(AtomicU64::new(1)),
            pools: Arc::new(std::sync::Mutex::new(vec![(
                "default".into(),
                "2001:db8:1::100-2001:db8:1::1ff".into(),
                1,
                256,
            )])),
            store_up: Some(Arc::new(AtomicBool::new(true))),
            workers: vec![
                Arc::new(WorkerStats {
                    received: AtomicU64::new(5),
                    queue: Arc::new(AtomicU64::new(2)),
                    ..Default::default()
                }),
                Arc::new(WorkerStats {
                    received: AtomicU64::new(3),
                    queue: Arc::new(AtomicU64::new(1)),
                    ..Default::default()
                }),
            ],
            commits_in_flight: Some(Arc::new(std::sync::atomic::AtomicUsize::new(4))),
            engine_lock: Some(Arc::new(crate::daemon::LockStats {
                decisions: AtomicU64::new(10),
                contended: AtomicU64::new(3),
            })),
            store_timings: Some(timings),
        }
    }

    /// Series by metric name, each as its labels.
    fn exported() -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
        let text = render_with(Some(&Counters::default()), &busy_sources());
        let mut out: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').expect("label=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            out.entry(name.to_owned()).or_default().push(labels);
        }
        out
    }

    const KEYWORDS: [&str; 12] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
    ];
    /// Aggregation operators: their grouping may come between the name and the parenthesis.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];

    /// The metric selectors of a PromQL expression: identifiers that are not functions,
    /// keywords, grouping labels, numbers, durations or strings.
    fn selectors(expr: &str) -> Vec<Selector> {
        let b = expr.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        let skip_ws = |mut j: usize| {
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            j
        };
        while i < b.len() {
            let c = b[i];
            if c == b'"' {
                i += 1 + expr[i + 1..].find('"').expect("closed string") + 1;
            } else if c == b'[' {
                i += expr[i..].find(']').expect("closed range") + 1;
            } else if c.is_ascii_digit() || c == b'.' {
                while i < b.len() && (ident(b[i]) || b[i] == b'.') {
                    i += 1;
                }
            } else if ident(c) {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let j = skip_ws(i);
                let next = b.get(j).copied();
                if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                    if matches!(word, "by" | "without" | "on" | "ignoring" | "group_left" | "group_right")
                        && next == Some(b'(')
                    {
                        i = j + expr[j..].find(')').expect("closed label list") + 1;
                    }
                } else if next == Some(b'(') || AGGREGATIONS.contains(&word) {
                    // A function or an aggregation.
                } else {
                    let mut matchers = Vec::new();
                    if next == Some(b'{') {
                        let end = j + expr[j..].find('}').expect("closed selector");
                        matchers = parse_matchers(&expr[j + 1..end]);
                        i = end + 1;
                    }
                    out.push(Selector { name: word.to_owned(), matchers });
                }
            } else {
                i += 1;
            }
        }
        out
    }

    fn parse_matchers(s: &str) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut rest = s.trim();
        while !rest.is_empty() {
            let op_at = rest.find(['=', '!']).expect("a matcher operator");
            let label = rest[..op_at].trim().to_owned();
            let op_len = if rest[op_at..].starts_with("=~")
                || rest[op_at..].starts_with("!=")
                || rest[op_at..].starts_with("!~")
            {
                2
            } else {
                1
            };
            let op = rest[op_at..op_at + op_len].to_owned();
            let after = rest[op_at + op_len..].trim_start();
            let after = after.strip_prefix('"').expect("a quoted value");
            let close = after.find('"').expect("closed value");
            out.push((label, op, after[..close].to_owned()));
            rest = after[close + 1..].trim_start().trim_start_matches(',').trim_start();
        }
        out
    }

    /// Every PromQL text in the dashboard with what it is for: panel targets (with their
    /// legend), and template variable queries.
    fn queries(d: &serde_json::Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for p in d["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().expect("targets") {
                let expr = t["expr"].as_str().expect("expr").to_owned();
                out.push((expr, t["legendFormat"].as_str().unwrap_or("").to_owned()));
            }
        }
        for v in d["templating"]["list"].as_array().expect("templating") {
            if let Some(q) = v["query"]["query"].as_str() {
                // label_values(SELECTOR, LABEL): the selector is PromQL, the label must be one.
                let inner = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')).expect("label_values");
                let (sel, label) = inner.rsplit_once(',').expect("two arguments");
                out.push((sel.trim().to_owned(), format!("{{{{{}}}}}", label.trim())));
            }
        }
        out
    }

    #[test]
    fn promql_selectors_are_found() {
        let s = selectors(
            "histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=\"1\", y=~\"b.*\"}[$__rate_interval]))) / on (z) b + 2e3",
        );
        let names: Vec<_> = s.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["a_bucket", "b"]);
        assert_eq!(s[0].matchers, [("x".into(), "=".into(), "1".into()), ("y".into(), "=~".into(), "b.*".into())]);
    }

    #[test]
    fn the_dashboard_uses_only_metrics_and_labels_the_daemon_exports() {
        let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
        let exported = exported();
        let mut used = BTreeSet::new();
        for (expr, legend) in queries(&d) {
            let sels = selectors(&expr);
            assert!(!sels.is_empty(), "no metric in {expr:?}");
            let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
            for sel in sels {
                let series = exported.get(&sel.name).unwrap_or_else(|| {
                    panic!("{expr:?} uses {}, which dhcpv6d does not export: {:?}", sel.name, exported.keys())
                });
                used.insert(sel.name.clone());
                labels.extend(series.iter().flat_map(|s| s.keys().cloned()));
                for (label, op, value) in &sel.matchers {
                    if TARGET_LABELS.contains(&label.as_str()) {
                        continue;
                    }
                    assert!(
                        series.iter().any(|s| s.contains_key(label)),
                        "{expr:?}: {} has no label {label}",
                        sel.name
                    );
                    if op == "=" {
                        assert!(
                            series.iter().any(|s| s.get(label) == Some(value)),
                            "{expr:?}: no {}{{{label}=\"{value}\"}} is exported",
                            sel.name
                        );
                    }
                }
            }
            for l in legend.split("{{").skip(1).filter_map(|x| x.split_once("}}")).map(|x| x.0.trim()) {
                assert!(labels.contains(l), "legend {legend:?} of {expr:?} names {l}, a label none of its metrics has");
            }
        }
        // The panels the dashboard is for: answers by path, drops, pool usage, commit latency.
        for m in [
            "dhcpv6_xdp_frames_total",
            "dhcpv6_userspace_total",
            "dhcpv6_messages_total",
            "dhcpv6_pool_used",
            "dhcpv6_pool_size",
            "dhcpv6_store_commit_seconds_bucket",
            "dhcpv6_lease_events_total",
        ] {
            assert!(used.contains(m), "the dashboard does not graph {m}");
        }
        let titles: Vec<&str> = d["panels"].as_array().unwrap().iter().filter_map(|p| p["title"].as_str()).collect();
        for t in [
            "Answers per second by path",
            "XDP drops by reason",
            "Userspace drops by reason",
            "Pool usage",
            "Lease commit latency",
        ] {
            assert!(titles.contains(&t), "no panel {t:?}: {titles:?}");
        }
    }

    /// Nothing counted; the store gauge as given (`None`: no stateful service).
    fn sources(store_up: Option<bool>) -> Sources {
        Sources {
            pin_dir: PathBuf::from("/nonexistent/dhcpv6-metrics-test"),
            user: Arc::default(),
            leases: Arc::default(),
            pools: Arc::default(),
            store_up: store_up.map(|up| Arc::new(AtomicBool::new(up))),
            workers: vec![Arc::default()],
            commits_in_flight: None,
            engine_lock: None,
            store_timings: None,
        }
    }

    #[test]
    fn render_exports_every_family_with_its_series() {
        let e = exported();
        assert_eq!(e["dhcpv6_xdp_frames_total"].len(), 34);
        for outcome in
            ["drop_flood", "pass_user_class", "tx_relayed_ir", "pass_relay_link", "tx_renew", "pass_renew_torn"]
        {
            assert!(e["dhcpv6_xdp_frames_total"].iter().any(|l| l.get("outcome").map(String::as_str) == Some(outcome)));
        }
        assert_eq!(e["dhcpv6_userspace_total"].len(), Counter::ALL.len());
        assert_eq!(e["dhcpv6_messages_total"].len(), 14 * MessageOutcome::ALL.len());
        assert_eq!(e["dhcpv6_duplicates_in_flight_total"].len(), 5);
        let busy = render_with(None, &busy_sources());
        assert!(busy.contains("dhcpv6_duplicates_in_flight_total{type=\"renew\"} 1\n"), "{busy}");
        assert!(busy.contains("dhcpv6_duplicates_in_flight_total{type=\"request\"} 0\n"), "{busy}");
        assert_eq!(e["dhcpv6_store_commit_seconds_bucket"].len(), crate::stats::COMMIT_BUCKETS.len() + 1);
        let text = render_with(None, &busy_sources());
        assert!(text.contains("dhcpv6_messages_total{type=\"solicit\",outcome=\"replied\"} 1\n"), "{text}");
        assert!(text.contains("dhcpv6_store_commit_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("dhcpv6_store_commit_seconds_bucket{le=\"0.0025\"} 0\n"), "{text}");
        assert!(text.contains("dhcpv6_store_commit_seconds_count 1\n"), "{text}");
        assert!(text.contains("dhcpv6_lease_events_total{event=\"granted\"} 0\n"), "{text}");
        assert!(text.contains("# TYPE dhcpv6_store_commit_seconds histogram\n"));
        assert!(!text.contains("dhcpv6_xdp_frames_total{"), "no XDP series without the map");
        assert!(text.contains("dhcpv6_pool_used{link=\"default\",pool=\"2001:db8:1::100-2001:db8:1::1ff\"} 1\n"));
        assert!(text.contains("\ndhcpv6_userspace_queue 3\n"), "the sum of the workers': {text}");
        assert!(text.contains("dhcpv6_worker_queue{worker=\"1\"} 1\n"), "{text}");
        assert!(text.contains("dhcpv6_worker_received_total{worker=\"0\"} 5\n"), "{text}");
        assert!(text.contains("dhcpv6_worker_received_total{worker=\"1\"} 3\n"), "{text}");
        assert!(text.contains("dhcpv6_worker_shed_total{worker=\"1\"} 0\n"), "{text}");
        assert!(text.contains("\ndhcpv6_store_commits_in_flight 4\n"), "{text}");
        assert!(text.contains("dhcpv6_engine_decisions_total{lock=\"free\"} 7\n"), "{text}");
        assert!(text.contains("dhcpv6_engine_decisions_total{lock=\"contended\"} 3\n"), "{text}");
        // The steps of a message's way and of the writer, each with its largest observation.
        assert_eq!(e["dhcpv6_phase_seconds_count"].len(), Phase::ALL.len());
        assert!(text.contains("dhcpv6_phase_seconds_bucket{phase=\"decide\",le=\"0.000025\"} 1\n"), "{text}");
        assert!(text.contains("dhcpv6_phase_seconds_max{phase=\"decide\"} 0.00002\n"), "{text}");
        assert_eq!(e["dhcpv6_store_step_seconds_max"].len(), 3);
        assert!(text.contains("dhcpv6_store_step_seconds_bucket{step=\"sync\",le=\"0.025\"} 0\n"), "{text}");
        assert!(text.contains("dhcpv6_store_step_seconds_max{step=\"sync\"} 0.04\n"), "{text}");
        assert!(!render_with(None, &sources(Some(true))).contains("dhcpv6_store_step_seconds"), "no store, no steps");
    }

    #[test]
    fn the_lease_script_families_count_runs_failures_by_reason_and_drops() {
        let s = sources(None);
        s.user.lease_script.ran(None);
        s.user.lease_script.ran(Some(crate::stats::ScriptFailure::Timeout));
        s.user.lease_script.drop_one();
        let text = render_with(None, &s);
        for line in [
            "# TYPE dhcpv6_lease_script_runs_total counter\n",
            "\ndhcpv6_lease_script_runs_total 2\n",
            "\ndhcpv6_lease_script_failures_total{reason=\"timeout\"} 1\n",
            "\ndhcpv6_lease_script_failures_total{reason=\"exit\"} 0\n",
            "\ndhcpv6_lease_script_failures_total{reason=\"spawn\"} 0\n",
            "\ndhcpv6_lease_script_dropped_total 1\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }

    #[test]
    fn the_store_gauge_follows_the_flag_and_is_absent_without_a_store() {
        assert!(render(&sources(Some(true))).contains("\ndhcpv6_store_healthy 1\n"));
        let down = render(&sources(Some(false)));
        assert!(down.contains("# TYPE dhcpv6_store_healthy gauge\n"), "{down}");
        assert!(down.contains("\ndhcpv6_store_healthy 0\n"), "{down}");
        assert!(!render(&sources(None)).contains("dhcpv6_store_healthy"));
    }
}
