//! Stateful rows against Kea (memfile, persisting) and dhcpv6d (SQLite, every lease durable
//! before its Reply): Solicit-Advertise-Request-Reply for addresses and for address +
//! prefix, and Renew of a population of existing leases, each at the highest rate with at
//! most 0.1 % loss; then the servers' memory once they hold a population of leases.
//!
//! The load comes from the bench's own stateful generator (`dhcpv6-bench dhcp`), and, as a
//! check of it, from perfdhcp (Kea's own generator). perfdhcp offers at most ~10,000
//! exchanges/s here (it then uses its whole CPU): a server that passes every rate perfdhcp
//! manages is marked "perfdhcp-bound", the figure is a floor.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dhcpv6_bench_common::lines::{DhcpStep, Line, Population};
use testbed::run_command;

use super::ir::{run_gen, say};
use super::peers::{self, path_str, Peer, Running, Stateful};
use super::server_view::{self, ServerView};
use super::topo::{Topo, GEN_CPU, GEN_IF};
use super::{Paths, Plan};
use crate::interrupt;

#[derive(Debug, Clone, Default)]
pub struct PerfStep {
    pub target: f64,
    pub achieved: f64,
    pub sa: (u64, u64, u64),
    pub rr: (u64, u64, u64),
    pub loss: f64,
    pub pass: bool,
    pub short: bool,
    /// `dhcpv6-bench dhcp`'s wait after the step's drain until the server went quiet
    /// (none: perfdhcp, which does not wait).
    pub after: Option<AfterStep>,
}

/// The wait between a step and the next (`dhcpv6-bench dhcp --quiet-ms`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AfterStep {
    /// Answers that came after the step's drain (counted lost for the step).
    pub late: u64,
    pub wait_ms: f64,
    /// Probes the wait sent (a Solicit of its own, re-sent while unanswered).
    pub probes: u64,
    /// False: the server still answered when the wait reached its bound.
    pub quiet: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SarrRun {
    pub best: f64,
    pub bound: bool,
    /// No step failed: the search ran out of steps going up, the figure is a floor.
    pub no_fail: bool,
    pub steps: Vec<PerfStep>,
}

/// Which generator loaded a stateful row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    Perfdhcp,
    /// `dhcpv6-bench dhcp`.
    Ours,
    /// `dhcpv6-bench dhcp --coalesce-us 50` (`Plan::sarr_coalesce_us`): the `cores` rows,
    /// where the generator shares its CPU with a dhcpv6d worker.
    Coalesced,
}

impl Loader {
    pub fn name(self) -> &'static str {
        match self {
            Loader::Perfdhcp => "perfdhcp",
            Loader::Ours => "dhcpv6-bench dhcp",
            Loader::Coalesced => "dhcpv6-bench dhcp --coalesce-us 50",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SarrRow {
    pub command: String,
    pub perf_command: String,
    pub runs: Vec<SarrRun>,
    pub peak_rss_kb: Option<u64>,
    /// Renew rows: the generator's `population ...` line (how the leases were obtained).
    pub population: Option<Population>,
    /// What the server saw over the row (socket drops, store step timings).
    pub server: ServerView,
}

#[derive(Debug, Clone)]
pub struct RssRow {
    pub leases: u64,
    pub rss_kb: Option<u64>,
    pub peak_rss_kb: Option<u64>,
    pub secs: f64,
}

pub const MODES: [(&str, &str); 2] = [("address-only", "address"), ("address-and-prefix", "address + prefix")];

/// `threaded`: as in the Information-Request rows (srv0's NAPI threaded onto the server
/// CPU, SCHED_FIFO); else srv0's receive work stays in softirq on perfdhcp's CPU.
pub fn sarr_row(paths: &Paths, plan: &Plan, server: Peer, mode: &'static str, threaded: bool) -> Result<SarrRow> {
    let (dir, topo, run) = start_row(paths, "sarr", server, mode, threaded)?;
    let mut row = SarrRow {
        command: run.command.clone(),
        perf_command: String::new(),
        runs: Vec::new(),
        peak_rss_kb: None,
        population: None,
        server: ServerView::default(),
    };
    let mut hint = plan.sarr_hint;
    for i in 0..plan.runs {
        interrupt::check()?;
        let r = search(&topo, &run, &dir, plan, mode, hint, &mut row.perf_command, i)?;
        say_perfdhcp_run(i, &r);
        if r.best > 0.0 {
            hint = r.best;
        }
        row.runs.push(r);
    }
    run.check_running()?;
    row.peak_rss_kb = run.peak_rss_kb();
    Ok(row)
}

/// A stateful row's log directory (emptied), namespaces and running server; with
/// `threaded`, srv0's NAPI on the server CPU under SCHED_FIFO as in the XDP rows.
fn start_row(
    paths: &Paths,
    what: &str,
    server: Peer,
    mode: &str,
    threaded: bool,
) -> Result<(std::path::PathBuf, Topo, Running)> {
    let dir = paths.dir.join(format!(
        "{what}-{}-{mode}{}",
        super::ir::slug(server),
        if threaded { "" } else { "-unthreaded" }
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let topo = Topo::new()?;
    let run = peers::start(&topo, server, paths, &dir, Stateful { on: true, ..Stateful::default() })?;
    if threaded {
        let (_, napi) = topo.thread_napi(true)?;
        fifo(napi)?;
    }
    Ok((dir, topo, run))
}

/// Our generator's mode for a perfdhcp `-e` mode.
fn gen_mode(mode: &str) -> &'static str {
    if mode == "address-only" {
        "address"
    } else {
        "both"
    }
}

/// A stateful row loaded by `dhcpv6-bench dhcp`: SARR of new clients (`renew` None) or
/// Renew of a population of that many leases which the generator first obtains (not
/// counted). One generator process runs the row's searches one after the other (each
/// starting from the previous result), so that a renew row's population is built once.
pub fn gen_row(
    paths: &Paths,
    plan: &Plan,
    server: Peer,
    mode: &'static str,
    threaded: bool,
    renew: Option<u64>,
) -> Result<SarrRow> {
    let mut hint = if renew.is_some() { plan.renew_hint } else { plan.sarr_hint };
    if server.stateful() && !plan.quick {
        // dhcpv6d answered 2-4x Kea's rates while this was built: start nearer, so that the
        // search's steps reach a failing rate.
        hint *= 3.0;
    }
    gen_row_from(paths, plan, server, mode, threaded, renew, hint)
}

/// `gen_row` with the searches starting at `hint`: rows compared with one already
/// measured start from its figure, so that their steps are spent near both edges rather
/// than on the way up (from afar, rows a few per cent apart stop on the same step).
pub fn gen_row_from(
    paths: &Paths,
    plan: &Plan,
    server: Peer,
    mode: &'static str,
    threaded: bool,
    renew: Option<u64>,
    hint: f64,
) -> Result<SarrRow> {
    let what = if renew.is_some() { "renew-gen" } else { "sarr-gen" };
    let (dir, topo, mut run) = start_row(paths, what, server, mode, threaded)?;
    if renew.is_some() {
        // veth hands an XDP_TX frame (a Renew's Reply from the program) only to a peer with an
        // XDP program of its own: a pass program on the generator's end, for every server of
        // the row alike.
        peers::hold_on(&topo.gen, GEN_IF, &mut run, paths, &dir, "pass")?;
    }
    let mut row = SarrRow {
        command: run.command.clone(),
        perf_command: String::new(),
        runs: Vec::new(),
        peak_rss_kb: None,
        population: None,
        server: ServerView::default(),
    };
    // The rows whose targets are judged (medians and spread) get more searches.
    let runs = if threaded { plan.runs } else { plan.stateful_runs };
    let before = server_view::snapshot(&topo.srv, server.stateful());
    gen_searches(&topo, &run, paths, plan, &dir.join("gen.log"), mode, renew, runs, hint, &mut row)?;
    row.server = server_view::between(&before, &server_view::snapshot(&topo.srv, server.stateful()));
    row.peak_rss_kb = run.peak_rss_kb();
    Ok(row)
}

/// One `dhcpv6-bench dhcp` process making `searches` searches (SARR, or renew of a
/// population of `renew` leases) against the running server; adds its runs to `row`.
#[allow(clippy::too_many_arguments)]
fn gen_searches(
    topo: &Topo,
    run: &Running,
    paths: &Paths,
    plan: &Plan,
    log: &Path,
    mode: &str,
    renew: Option<u64>,
    searches: usize,
    hint: f64,
    row: &mut SarrRow,
) -> Result<()> {
    let what = if renew.is_some() { "renew" } else { "sarr" };
    let secs = plan.gen_step_secs;
    let mut args: Vec<String> = vec![
        "dhcp".into(),
        "--iface".into(),
        GEN_IF.into(),
        "--exchange".into(),
        what.into(),
        "--mode".into(),
        gen_mode(mode).into(),
        "--step-secs".into(),
        secs.to_string(),
        "--search-steps".into(),
        plan.sarr_steps.to_string(),
        "--searches".into(),
        searches.to_string(),
        "--drain-ms".into(),
        plan.drain_user_ms.to_string(),
        "--quiet-ms".into(),
        plan.quiet_ms.to_string(),
        "--quiet-max-ms".into(),
        plan.quiet_max_ms.to_string(),
        "--max-loss".into(),
        "0.001".into(),
    ];
    if plan.sarr_coalesce_us > 0.0 {
        args.extend(["--coalesce-us".into(), plan.sarr_coalesce_us.to_string()]);
    }
    let mut fill_secs = 0.0;
    if let Some(n) = renew {
        // The population is built at whatever rate the server sustains with 32 exchanges
        // in flight; 200/s would be far below either server's.
        fill_secs = (n as f64 / 200.0).max(30.0);
        args.extend(["--population".into(), n.to_string(), "--fill-secs".into(), format!("{fill_secs:.0}")]);
        if run.xdp_renew {
            // The pre-extension batches (1,024 leases a transaction, back to back while the
            // queue is full) write some tens of thousands of leases a second here: every
            // lease has its entry before the first step, with room to spare.
            let settle = (n as f64 / 10_000.0).ceil() + 3.0;
            args.extend(["--settle-secs".into(), format!("{settle:.0}")]);
        }
    }
    if row.perf_command.is_empty() {
        row.perf_command = format!("taskset -c {GEN_CPU} dhcpv6-bench {} --hint-pps HINT", args.join(" "));
    }
    args.extend(["--hint-pps".into(), format!("{hint:.0}")]);
    let per_step = secs + (plan.drain_user_ms + plan.quiet_max_ms) as f64 / 1000.0 + 0.2;
    let limit = Duration::from_secs_f64((searches * plan.sarr_steps) as f64 * per_step * 2.0 + fill_secs + 30.0);
    let lines = run_gen(topo, paths, &args, log, limit)?;
    run.check_running()?;
    let before = row.runs.len();
    let mut cur = SarrRun::default();
    for l in lines {
        match l {
            Line::Population(p) => row.population = Some(p),
            Line::DhcpStep(s) => cur.steps.push(gen_step(&s)),
            Line::Search(s) => {
                cur.best = s.best_pps;
                cur.bound = s.generator_bound;
                cur.no_fail = cur.best > 0.0 && s.lowest_fail_pps == 0.0;
                say(&format!(
                    "  run {}: <= 0.1 % loss up to {:.0} {}/s{} ({} steps)",
                    row.runs.len() + 1,
                    cur.best,
                    if renew.is_some() { "renewals" } else { "exchanges" },
                    if cur.bound { " (generator-bound)" } else { "" },
                    cur.steps.len()
                ));
                row.runs.push(std::mem::take(&mut cur));
            }
            _ => {}
        }
    }
    if row.runs.len() == before {
        bail!("dhcpv6-bench dhcp printed no search result; see {}", log.display());
    }
    Ok(())
}

/// The check of the stateful generator: Kea's SARR (address) searched with our generator
/// and with perfdhcp, alternately, run after run, against one Kea, so that both see the
/// same server and the same background load. Returns (ours, perfdhcp).
pub fn check_row(paths: &Paths, plan: &Plan) -> Result<(SarrRow, SarrRow)> {
    let mode = MODES[0].0;
    let dir = paths.dir.join("check-kea-address-only-unthreaded");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let topo = Topo::new()?;
    let run = peers::start(&topo, Peer::Kea, paths, &dir, Stateful { on: true, ..Stateful::default() })?;
    let empty = || SarrRow {
        command: run.command.clone(),
        perf_command: String::new(),
        runs: Vec::new(),
        peak_rss_kb: None,
        population: None,
        server: ServerView::default(),
    };
    let (mut ours, mut perf) = (empty(), empty());
    let (mut hint_ours, mut hint_perf) = (plan.sarr_hint, plan.sarr_hint);
    // Kea's own figure moves by up to 50 % between searches: three per generator left the
    // medians 10 % apart in one run and 3 % in another; five (full runs) settle them better.
    let runs = if plan.quick { plan.runs } else { plan.runs.max(5) };
    for i in 0..runs {
        interrupt::check()?;
        say("  dhcpv6-bench dhcp:");
        gen_searches(&topo, &run, paths, plan, &dir.join(format!("gen-{i}.log")), mode, None, 1, hint_ours, &mut ours)?;
        say("  perfdhcp:");
        let r = search(&topo, &run, &dir, plan, mode, hint_perf, &mut perf.perf_command, i)?;
        say_perfdhcp_run(i, &r);
        perf.runs.push(r);
        // Each from its own previous result: the two searches stay independent.
        hint_ours = ours.runs.last().map_or(hint_ours, |r| if r.best > 0.0 { r.best } else { hint_ours });
        hint_perf = perf.runs.last().map_or(hint_perf, |r| if r.best > 0.0 { r.best } else { hint_perf });
    }
    run.check_running()?;
    Ok((ours, perf))
}

/// A `step ...` line of `dhcpv6-bench dhcp` in perfdhcp's terms (Solicit-Advertise and
/// Request-Reply: sent, received, lost).
fn gen_step(s: &DhcpStep) -> PerfStep {
    let (sent, adv, req, rep) = (s.sent, s.advertised, s.requested, s.replies);
    PerfStep {
        target: s.target_pps,
        achieved: s.offered_pps,
        sa: (sent, adv, sent.saturating_sub(adv)),
        rr: (req, rep, req.saturating_sub(rep)),
        loss: s.loss,
        pass: s.pass,
        short: s.short,
        after: Some(AfterStep { late: s.late, wait_ms: s.quiet_wait_ms, probes: s.probes, quiet: s.quiet }),
    }
}

#[allow(clippy::too_many_arguments)]
fn search(
    topo: &Topo,
    run: &Running,
    dir: &Path,
    plan: &Plan,
    mode: &str,
    hint: f64,
    shown: &mut String,
    n: usize,
) -> Result<SarrRun> {
    let mut bracket = super::bracket::Bracket::default();
    let mut out = SarrRun::default();
    let mut r = hint;
    for s in 0..plan.sarr_steps {
        interrupt::check()?;
        run.check_running()?;
        let log = dir.join(format!("perfdhcp-{n}-{s}.log"));
        let st = perfdhcp(topo, r, plan.sarr_secs, mode, &log, shown)?;
        let pass = st.pass;
        if st.short && st.loss <= 0.001 {
            out.bound = true;
        }
        out.steps.push(st);
        let Some(next) = bracket.next(r, pass, &super::bracket::Moves { up: 1.3, down: 0.7, floor: 50.0 }) else {
            break;
        };
        r = next;
    }
    out.best = bracket.best();
    Ok(out)
}

/// The NAPI thread's priority during fixed-rate load, as in the Information-Request steps
/// (see `dhcpv6-bench gen --napi-pid`).
fn fifo(napi: Option<u32>) -> Result<()> {
    if let Some(pid) = napi {
        run_command(Command::new("chrt").args(["-f", "-p", "1", &pid.to_string()]), Duration::from_secs(10))
            .with_context(|| format!("chrt -f -p 1 {pid}"))?;
    }
    Ok(())
}

fn perfdhcp(topo: &Topo, rate: f64, secs: u64, mode: &str, log: &Path, shown: &mut String) -> Result<PerfStep> {
    let args = vec![
        "-6".to_string(),
        "-l".into(),
        GEN_IF.into(),
        "-r".into(),
        format!("{rate:.0}"),
        "-p".into(),
        secs.to_string(),
        "-R".into(),
        "10000000".into(),
        "-e".into(),
        mode.into(),
        "-W".into(),
        "1000000".into(),
    ];
    if shown.is_empty() {
        *shown =
            format!("taskset -c {GEN_CPU} perfdhcp {}", args.join(" ").replace(&format!("-r {rate:.0}"), "-r RATE"));
    }
    super::progress::step(&format!("perfdhcp at {rate:.0}/s for {secs} s"));
    let mut cmd = topo.gen.cmd("taskset");
    cmd.args(["-c", GEN_CPU, "perfdhcp"]).args(&args);
    let text = run_perfdhcp(&mut cmd, Duration::from_secs(secs + 30))?;
    fs::write(log, &text)?;
    let mut st = parse_perfdhcp(&text).with_context(|| format!("reading perfdhcp's report ({})", log.display()))?;
    st.target = rate;
    // perfdhcp's own "Rate:" divides by the whole run, exit wait included: the Solicits
    // sent over the test period say what it offered.
    st.achieved = st.sa.0 as f64 / secs as f64;
    st.short = st.achieved < 0.97 * rate;
    st.pass = st.loss <= 0.001 && !st.short;
    Ok(st)
}

/// Runs perfdhcp to completion (bounded; Ctrl-C stops it) and returns its report. Exit
/// status 3 only says that some packets were dropped, which the report details.
fn run_perfdhcp(cmd: &mut Command, limit: Duration) -> Result<String> {
    use std::io::Read;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting perfdhcp")?;
    let mut out = child.stdout.take().context("perfdhcp stdout")?;
    let mut err = child.stderr.take().context("perfdhcp stderr")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().context("waiting for perfdhcp")? {
            break st;
        }
        if interrupt::interrupted() || started.elapsed() > limit {
            // Our own unreaped child: the PID cannot have been reused.
            let _ = child.kill();
            let _ = child.wait();
            interrupt::check()?;
            bail!("perfdhcp ran longer than {limit:?} and was stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().unwrap_or_default();
    let errors = err_reader.join().unwrap_or_default();
    match status.code() {
        Some(0) | Some(3) => Ok(text),
        _ => bail!(
            "perfdhcp failed ({status}): {}\n{}",
            errors.trim(),
            text.lines().take(5).collect::<Vec<_>>().join("\n")
        ),
    }
}

fn parse_perfdhcp(text: &str) -> Result<PerfStep> {
    let mut st = PerfStep::default();
    let mut section = "";
    for l in text.lines() {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("Rate:") {
            st.achieved = rest.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
        } else if l.contains("SOLICIT-ADVERTISE") {
            section = "sa";
        } else if l.contains("REQUEST-REPLY") {
            section = "rr";
        }
        let num = |p: &str| l.strip_prefix(p).and_then(|x| x.trim().parse::<u64>().ok());
        let slot = match section {
            "sa" => &mut st.sa,
            "rr" => &mut st.rr,
            _ => continue,
        };
        if let Some(n) = num("sent packets:") {
            slot.0 = n;
        } else if let Some(n) = num("received packets:") {
            slot.1 = n;
        } else if let Some(n) = num("drops:") {
            slot.2 = n;
        }
    }
    if st.sa.0 == 0 {
        bail!("no SOLICIT-ADVERTISE statistics");
    }
    let frac = |(s, _, d): (u64, u64, u64)| if s == 0 { 1.0 } else { d as f64 / s as f64 };
    st.loss = frac(st.sa).max(frac(st.rr));
    Ok(st)
}

/// Memory of a server holding about `target` leases, acquired with perfdhcp at `rate`.
pub fn rss_row(paths: &Paths, server: Peer, target: u64, rate: f64) -> Result<RssRow> {
    let started = Instant::now();
    let dir = paths.dir.join(format!("rss-{}-{target}", super::ir::slug(server)));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let topo = Topo::new()?;
    // srv0's NAPI stays in softirq (memory does not depend on it; filling is quicker).
    let run = peers::start(&topo, server, paths, &dir, Stateful { on: true, ..Stateful::default() })?;
    // Distinct clients: perfdhcp draws DUIDs at random among -R; with 100 times more than
    // the leases wanted, repeats are rare, and the count below is what the server holds.
    let mut leases = 0;
    let mut round = 0;
    while leases < target && round < 3 {
        interrupt::check()?;
        run.check_running()?;
        let want = target - leases;
        let secs = ((want as f64 / rate).ceil() as u64).max(1) + 1;
        let args = [
            "-6".to_string(),
            "-l".into(),
            GEN_IF.into(),
            "-r".into(),
            format!("{rate:.0}"),
            "-n".into(),
            (want + want / 50 + 10).to_string(),
            "-p".into(),
            secs.to_string(),
            "-R".into(),
            (target * 100).to_string(),
            "-e".into(),
            "address-only".into(),
            "-W".into(),
            "1000000".into(),
        ];
        let mut cmd = topo.gen.cmd("taskset");
        cmd.args(["-c", GEN_CPU, "perfdhcp"]).args(&args);
        let text = run_perfdhcp(&mut cmd, Duration::from_secs(secs * 2 + 60)).context("populating leases")?;
        fs::write(dir.join(format!("perfdhcp-{round}.log")), text)?;
        leases = count_leases(paths, server, &dir)?;
        round += 1;
    }
    // Let the server settle (commits, lease-file writes) before reading its memory.
    interrupt::sleep(Duration::from_secs(1))?;
    run.check_running()?;
    let row =
        RssRow { leases, rss_kb: run.rss_kb(), peak_rss_kb: run.peak_rss_kb(), secs: started.elapsed().as_secs_f64() };
    say(&format!(
        "  {} leases: RSS {} kB, peak {} kB",
        row.leases,
        row.rss_kb.unwrap_or(0),
        row.peak_rss_kb.unwrap_or(0)
    ));
    Ok(row)
}

fn count_leases(paths: &Paths, server: Peer, dir: &Path) -> Result<u64> {
    match server {
        Peer::Kea => {
            let mut addrs = BTreeSet::new();
            for e in fs::read_dir(dir)?.flatten() {
                if !e.file_name().to_string_lossy().starts_with("kea-leases6") {
                    continue;
                }
                for l in fs::read_to_string(e.path()).unwrap_or_default().lines().skip(1) {
                    if let Some(a) = l.split(',').next() {
                        addrs.insert(a.to_owned());
                    }
                }
            }
            Ok(addrs.len() as u64)
        }
        _ => super::peers::dhcpv6d_leases(paths, path_str(&dir.join("leases.db"))?),
    }
}

/// One perfdhcp search's result, as the progress log shows it.
fn say_perfdhcp_run(i: usize, r: &SarrRun) {
    say(&format!(
        "  run {}: <= 0.1 % loss up to {:.0} exchanges/s{} ({} steps)",
        i + 1,
        r.best,
        if r.bound { " (perfdhcp-bound)" } else { "" },
        r.steps.len()
    ));
}
