//! `cargo xtask bench`: dhcpv6d beside Kea and dnsmasq on the same traffic, in one run.
//!
//! Every row gets a fresh pair of network namespaces joined by a veth pair (gen0 <->
//! srv0, see `topo`), a server on srv0 pinned to CPU 1 with srv0's NAPI threaded on CPU 1,
//! and a load generator pinned to CPU 0 (`dhcpv6-bench gen`, BPF_PROG_TEST_RUN in
//! live-frames mode, or perfdhcp for the stateful rows). The results go to a table on the
//! terminal and into docs/benchmarks.md (`--quick`: target/bench/benchmarks-quick.md).
//! Everything started is stopped and every namespace removed however the run ends.

mod bracket;
mod cost;
mod ir;
mod peers;
mod pg;
mod progress;
mod report;
mod server_view;
mod stateful;
mod storm;
mod topo;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{build, interrupt};
use ir::{checked, say};
use peers::Peer;
use stateful::Loader;

/// Programs the benchmark runs, with the Debian packages that ship them.
const TOOLS: &[(&str, &str)] = &[
    ("kea-dhcp6", "kea-dhcp6-server"),
    ("perfdhcp", "kea-admin"),
    ("dnsmasq", "dnsmasq-base"),
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("nstat", "iproute2"),
    ("ethtool", "ethtool"),
    ("nsenter", "util-linux"),
    ("taskset", "util-linux"),
    // The stateful rows read dhcpv6d's metrics inside its namespace.
    ("curl", "curl"),
];

pub struct BenchOptions {
    /// Prove every row works end to end in under two minutes (figures not meaningful).
    pub quick: bool,
    /// Runs per row (default 3, --quick 1).
    pub runs: Option<usize>,
    /// Skip the stateful (perfdhcp) and lease-population rows.
    pub no_stateful: bool,
    /// Where to write the report (default docs/benchmarks.md, --quick target/bench/...).
    pub out: Option<PathBuf>,
    /// Only these groups of rows (`GROUPS`); empty: all.
    pub only: Vec<String>,
    /// Only these storm servers (`StormServer::name`); empty: all.
    pub storm_servers: Vec<String>,
}

/// Groups of rows `--only` can pick.
pub const GROUPS: &[(&str, &str)] = &[
    ("ir", "Information-Request rows (and the generator ceiling)"),
    ("cost", "test_run cost per answered frame"),
    ("relayed", "relayed Information-Request rows (a lightweight relay's Relay-Forwards): XDP, userspace, Kea"),
    ("sarr", "SARR with the bench's stateful generator"),
    ("check", "SARR with perfdhcp (the check of the stateful generator)"),
    ("renew", "renewals of a lease population"),
    ("rss", "memory with a lease population"),
    ("pg", "SARR and renewals with the leases in PostgreSQL (dhcpv6d, two dhcpv6d, Kea)"),
    ("cores", "userspace on both CPUs (--workers 2) against one worker on one: SARR and Information-Request"),
    ("storm", "boot storm: N CPEs after a power cut, time until all are bound"),
];

pub struct Paths {
    pub dir: PathBuf,
    pub daemon: PathBuf,
    pub bench: PathBuf,
    pub obj: PathBuf,
}

/// Durations and counts of one run of the benchmark.
#[derive(Clone)]
pub struct Plan {
    pub quick: bool,
    pub runs: usize,
    pub flat_secs: f64,
    pub warmup_secs: f64,
    pub step_secs: f64,
    pub search_steps: usize,
    /// Runs of each of the MAC swap and XDP rows, measured in turn (`ir::alternated`).
    pub paired_runs: usize,
    pub drain_xdp_ms: u64,
    pub drain_user_ms: u64,
    /// `dhcpv6-bench dhcp --quiet-ms` and `--quiet-max-ms`: after a step's drain, the
    /// silence awaited before the next step, and the longest that wait may be.
    pub quiet_ms: u64,
    pub quiet_max_ms: u64,
    pub cost_repeat: u32,
    pub cost_runs: usize,
    pub sarr_steps: usize,
    /// `dhcpv6-bench dhcp --coalesce-us` (0: a round per answer, as the rows checked
    /// against perfdhcp).
    pub sarr_coalesce_us: f64,
    pub sarr_secs: u64,
    pub sarr_hint: f64,
    /// Searches of the rows whose targets are judged on medians and spread (SARR with srv0's
    /// NAPI not threaded, renewals): 5 in a full run unless `--runs` says otherwise.
    pub stateful_runs: usize,
    /// Step length of `dhcpv6-bench dhcp` (SARR and renew rows).
    pub gen_step_secs: f64,
    /// Leases of the renew rows' population.
    pub renew_population: u64,
    pub renew_hint: f64,
    pub stateful: bool,
    /// Groups of rows to run (`GROUPS`).
    pub only: Vec<String>,
    /// (server, leases) populations whose memory is measured.
    pub rss: Vec<(Peer, u64)>,
    pub rss_rate: f64,
    /// CPEs of a boot storm, its time limit, and storms per server.
    pub storm_cpes: u64,
    pub storm_max_secs: f64,
    pub storm_runs: usize,
    /// The storm servers that run, in `storm::SERVERS` order.
    pub storm_servers: Vec<storm::StormServer>,
}

impl Plan {
    fn new(o: &BenchOptions) -> Plan {
        if o.quick {
            Plan {
                quick: true,
                runs: o.runs.unwrap_or(1),
                flat_secs: 0.3,
                warmup_secs: 0.1,
                step_secs: 0.3,
                search_steps: 2,
                paired_runs: o.runs.unwrap_or(1),
                drain_xdp_ms: 100,
                drain_user_ms: 300,
                quiet_ms: 100,
                quiet_max_ms: 1000,
                cost_repeat: 100_000,
                cost_runs: 2,
                sarr_steps: 1,
                sarr_coalesce_us: 0.0,
                sarr_secs: 1,
                sarr_hint: 1000.0,
                stateful_runs: o.runs.unwrap_or(1),
                gen_step_secs: 0.5,
                renew_population: 2000,
                renew_hint: 1000.0,
                stateful: !o.no_stateful,
                only: o.only.clone(),
                rss: vec![(Peer::Kea, 1000), (Peer::Stateful, 1000)],
                rss_rate: 1000.0,
                storm_cpes: 3000,
                storm_max_secs: 120.0,
                storm_runs: o.runs.unwrap_or(1),
                storm_servers: storm::chosen(&o.storm_servers),
            }
        } else {
            Plan {
                quick: false,
                runs: o.runs.unwrap_or(3),
                flat_secs: 2.0,
                warmup_secs: 0.3,
                step_secs: 1.0,
                search_steps: 10,
                paired_runs: o.runs.unwrap_or(3).max(5),
                drain_xdp_ms: 150,
                drain_user_ms: 500,
                quiet_ms: 250,
                quiet_max_ms: 5000,
                cost_repeat: 1_000_000,
                cost_runs: 5,
                sarr_steps: 7,
                sarr_coalesce_us: 0.0,
                sarr_secs: 3,
                sarr_hint: 4000.0,
                stateful_runs: o.runs.unwrap_or(5),
                gen_step_secs: 3.0,
                renew_population: 100_000,
                renew_hint: 5000.0,
                stateful: !o.no_stateful,
                only: o.only.clone(),
                rss: vec![(Peer::Kea, 100_000), (Peer::Stateful, 100_000), (Peer::Stateful, 1_000_000)],
                rss_rate: 5000.0,
                storm_cpes: 100_000,
                storm_max_secs: 600.0,
                // A storm that does not finish runs 10 minutes: at most 3 per server.
                storm_runs: o.runs.unwrap_or(3).min(3),
                storm_servers: storm::chosen(&o.storm_servers),
            }
        }
    }

    /// Whether the group of rows `g` (see `GROUPS`) runs.
    fn runs_group(&self, g: &str) -> bool {
        let stateful = !matches!(g, "ir" | "cost" | "relayed" | "cores");
        (self.only.is_empty() || self.only.iter().any(|o| o == g)) && (self.stateful || !stateful)
    }

    /// Time limit of one `dhcpv6-bench gen` run.
    fn gen_limit(&self, peer: Peer) -> Duration {
        let drain = if peer.userspace() { self.drain_user_ms } else { self.drain_xdp_ms } as f64 / 1000.0;
        let secs =
            self.warmup_secs + self.flat_secs + drain + self.search_steps as f64 * (self.step_secs + drain + 0.2);
        Duration::from_secs_f64(secs * 1.5 + 30.0)
    }
}

pub fn bench(root: &Path, opts: &BenchOptions) -> Result<()> {
    interrupt::install()?;
    for g in &opts.only {
        if !GROUPS.iter().any(|(n, _)| n == g) {
            let known: Vec<String> = GROUPS.iter().map(|(n, what)| format!("{n} ({what})")).collect();
            bail!("--only {g}: no such group of rows; groups: {}", known.join(", "));
        }
    }
    storm::check_names(&opts.storm_servers)?;
    testbed::require_root().context("`cargo xtask bench` creates network namespaces and attaches XDP programs")?;
    testbed::ensure_tools(TOOLS)?;
    testbed::ensure_bpffs()?;
    // A daemon built elsewhere (an earlier commit, for a before/after comparison in one
    // sitting); otherwise this tree's.
    let daemon = match std::env::var_os("DHCPV6D_BENCH_BIN") {
        Some(bin) => {
            build::build_ebpf(root)?;
            say(&format!("dhcpv6d: {} (DHCPV6D_BENCH_BIN)", Path::new(&bin).display()));
            PathBuf::from(bin)
        }
        None => build::build_all(root, true)?,
    };
    let bench = build::build_bench(root)?;
    let paths = Paths { dir: root.join("target/bench"), daemon, bench, obj: build::bench_ebpf_object(root) };
    fs::create_dir_all(&paths.dir)?;
    let plan = Plan::new(opts);
    let machine = report::Machine::describe();
    say(&format!(
        "{} ({} runs per row, {} for the SARR rows with srv0's NAPI not threaded and the renew rows); logs in {}",
        if plan.quick { "quick run" } else { "full run" },
        plan.runs,
        plan.stateful_runs,
        paths.dir.display()
    ));
    let started = Instant::now();
    progress::start();
    let res = measure(&paths, &plan);
    progress::finish();
    let res = res?;
    let elapsed = started.elapsed();
    let machine = machine.finish();

    let mut table = report::table(&res);
    table.push_str(&pg::table(&res.pg));
    println!("\n{table}");
    let out = opts.out.clone().unwrap_or_else(|| {
        if !plan.only.is_empty() {
            // Some rows only: never over the recorded full run.
            paths.dir.join("benchmarks-only.md")
        } else if plan.quick {
            paths.dir.join("benchmarks-quick.md")
        } else {
            root.join("docs/benchmarks.md")
        }
    });
    let plot_dir = out.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let plots = report::write_plots(&plot_dir, &res)?;
    let section = report::section(&machine, &plan, &res, &table, elapsed, &plots);
    report::write(&out, &section)?;
    say(&format!("measured in {:.0} s; report written to {}", elapsed.as_secs_f64(), out.display()));
    let mut failed = res.failures(plan.runs_group("cost"));
    failed.extend(pg::failures(&res.pg));
    if !failed.is_empty() {
        bail!("rows that produced no figure: {}", failed.join("; "));
    }
    Ok(())
}

/// A row begins: in the log and on the progress line.
fn row_start(s: &str) {
    progress::row(s);
    say(s);
}

fn measure(paths: &Paths, plan: &Plan) -> Result<report::Results> {
    let mut res = report::Results::default();
    if plan.runs_group("ir") {
        interrupt::check()?;
        row_start(&format!("Information-Request: {}", Peer::Drop.label()));
        res.ir.push((Peer::Drop, checked(ir::row(paths, plan, Peer::Drop, true), Peer::Drop.label())?));
        // The pair whose ratio is the fast path's target, run by run in turn.
        let pair = [Peer::MacSwap, Peer::FastPath];
        row_start(&format!("Information-Request, in turn: {} and {}", pair[0].label(), pair[1].label()));
        match checked(ir::alternated(paths, plan, &pair), "MAC swap and XDP fast path in turn")? {
            Ok(rows) => res.ir.extend(pair.into_iter().zip(rows.into_iter().map(Ok))),
            Err(e) => res.ir.extend(pair.map(|p| (p, Err(e.clone())))),
        }
        for peer in [Peer::Userspace, Peer::Kea, Peer::Dnsmasq] {
            interrupt::check()?;
            row_start(&format!("Information-Request: {}", peer.label()));
            let r = checked(ir::row(paths, plan, peer, true), peer.label())?;
            res.ir.push((peer, r));
        }
        for peer in [Peer::Userspace, Peer::Kea, Peer::Dnsmasq] {
            interrupt::check()?;
            row_start(&format!("Information-Request, srv0 NAPI not threaded: {}", peer.label()));
            let r = checked(ir::row(paths, plan, peer, false), peer.label())?;
            res.ir_unthreaded.push((peer, r));
        }
    }
    if plan.runs_group("relayed") {
        for peer in [Peer::FastPath, Peer::Userspace, Peer::Kea] {
            interrupt::check()?;
            say(&format!("relayed Information-Request (lightweight relay): {}", peer.label()));
            let r = checked(ir::relayed_row(paths, plan, peer), peer.label())?;
            res.ir_relayed.push((peer, r));
        }
    }
    if plan.runs_group("cost") {
        interrupt::check()?;
        row_start("test_run cost per answered frame");
        res.cost = Some(checked(cost::row(paths, plan), "test_run cost")?);
    }
    if plan.runs_group("sarr") {
        for threaded in [false, true] {
            for (mode, name) in stateful::MODES {
                for server in [Peer::Kea, Peer::Stateful] {
                    interrupt::check()?;
                    let how = if threaded { ", srv0 NAPI threaded" } else { "" };
                    row_start(&format!("SARR ({name}{how}), dhcpv6-bench dhcp: {}", server.label()));
                    let r = checked(stateful::gen_row(paths, plan, server, mode, threaded, None), server.label())?;
                    res.sarr.push((server, mode, threaded, Loader::Ours, r));
                }
            }
        }
    }
    if plan.runs_group("check") {
        let (mode, name) = stateful::MODES[0];
        interrupt::check()?;
        row_start(&format!(
            "generator check, SARR ({name}), dhcpv6-bench dhcp and perfdhcp in turn: {}",
            Peer::Kea.label()
        ));
        match checked(stateful::check_row(paths, plan), "generator check")? {
            Ok((ours, perf)) => {
                res.check_ours = Some(Ok(ours));
                res.sarr.push((Peer::Kea, mode, false, Loader::Perfdhcp, Ok(perf)));
            }
            Err(e) => {
                res.check_ours = Some(Err(e.clone()));
                res.sarr.push((Peer::Kea, mode, false, Loader::Perfdhcp, Err(e)));
            }
        }
        interrupt::check()?;
        row_start(&format!("SARR ({name}), perfdhcp: {}", Peer::Stateful.label()));
        let r = checked(stateful::sarr_row(paths, plan, Peer::Stateful, mode, false), Peer::Stateful.label())?;
        res.sarr.push((Peer::Stateful, mode, false, Loader::Perfdhcp, r));
    }
    if plan.runs_group("renew") {
        let n = plan.renew_population;
        // One run, the same renew traffic: Kea, dhcpv6d answering in userspace, and dhcpv6d
        // answering in XDP from the entries its pre-extension batches put.
        for server in [Peer::Kea, Peer::Stateful, Peer::StatefulXdpRenew] {
            interrupt::check()?;
            row_start(&format!("Renew, population of {n} leases: {}", server.label()));
            let r =
                checked(stateful::gen_row(paths, plan, server, stateful::MODES[0].0, false, Some(n)), server.label())?;
            res.renew.push((server, n, r));
        }
    }
    if plan.runs_group("pg") {
        pg::rows(paths, plan, &mut res.pg)?;
    }
    if plan.runs_group("cores") {
        // Each all-CPU row beside its one-CPU row, run here unless another group did.
        let (mode, name) = stateful::MODES[0];
        if plan.stateful {
            // Three more steps than the other SARR rows, and each row after the first from the
            // best figure so far: these rows are compared with each other, and from afar the
            // search's x1.3 steps left all three on the same step. The generator coalesces
            // its rounds (`Loader::Coalesced`): it shares CPU 0 with a worker. All four rows
            // are this group's own, so they compare with each other only.
            let l = Loader::Coalesced;
            let fine = Plan { sarr_steps: plan.sarr_steps + 3, sarr_coalesce_us: 50.0, ..plan.clone() };
            let best = |res: &report::Results| {
                res.sarr
                    .iter()
                    .filter(|(p, m, t, x, _)| p.stateful() && *m == mode && !*t && *x == l)
                    .filter_map(|(p, ..)| res.sarr_best(*p, mode, false, l))
                    .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))))
            };
            // The generator's own ceiling last, from above the servers' figures.
            for server in [Peer::Stateful, Peer::StatefulCoresOneWorker, Peer::StatefulCores, Peer::Responder] {
                interrupt::check()?;
                say(&format!("SARR ({name}), {}: {}", l.name(), server.label()));
                let hint = match (best(&res), server) {
                    (Some(b), Peer::Responder) => Some(b * 1.3),
                    (b, _) => b,
                };
                let r = match hint {
                    Some(h) => stateful::gen_row_from(paths, &fine, server, mode, false, None, h),
                    None => stateful::gen_row(paths, &fine, server, mode, false, None),
                };
                res.sarr.push((server, mode, false, l, checked(r, server.label())?));
            }
        }
        for peer in [Peer::Userspace, Peer::UserspaceCores] {
            if res.ir_unthreaded.iter().any(|(p, _)| *p == peer) {
                continue;
            }
            interrupt::check()?;
            say(&format!("Information-Request, srv0 NAPI not threaded: {}", peer.label()));
            let r = checked(ir::row(paths, plan, peer, false), peer.label())?;
            res.ir_unthreaded.push((peer, r));
        }
    }
    if plan.runs_group("rss") {
        for &(server, n) in &plan.rss {
            interrupt::check()?;
            row_start(&format!("memory with {n} leases: {}", server.label()));
            // perfdhcp fills: at 70 % of what it managed, never above what it can offer.
            let best = res
                .sarr_best(server, "address-only", false, Loader::Perfdhcp)
                .or_else(|| res.sarr_best(server, "address-only", false, Loader::Ours));
            let rate = best.map_or(plan.rss_rate, |b| (b * 0.7).clamp(500.0, 8000.0));
            let r = checked(stateful::rss_row(paths, server, n, rate), server.label())?;
            res.rss.push((server, n, r));
        }
    }
    if plan.runs_group("storm") {
        for &server in &plan.storm_servers {
            interrupt::check()?;
            row_start(&format!("boot storm of {} CPEs: {}", plan.storm_cpes, server.label()));
            let r = checked(storm::row(paths, plan, server), server.label())?;
            res.storm.push((server, r));
        }
    }
    Ok(res)
}
