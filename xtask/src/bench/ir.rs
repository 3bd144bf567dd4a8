//! Information-Request rows: for each peer on srv0, `runs` runs of `dhcpv6-bench gen`
//! (pinned to the generator CPU) in the generator namespace: flat out, then the bounded
//! search for the highest rate with at most 0.1 % loss.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dhcpv6_bench_common::lines::{self, Flat, GenStep, Line, Search};
use dhcpv6_bench_common::maps::SinkCounters;

use super::peers::{self, path_str, Peer, Running, Stateful};
use super::topo::{mac_str, Topo, GEN_CPU, GEN_IF, SRV_CPU, SRV_IF};
use super::{Paths, Plan};
use crate::{build, interrupt};

#[derive(Debug, Clone, Default)]
pub struct IrRun {
    pub flat: Option<Flat>,
    pub steps: Vec<GenStep>,
    pub search: Option<Search>,
    pub sink: Option<SinkCounters>,
}

impl IrRun {
    pub fn best_pps(&self) -> Option<f64> {
        Some(self.search.as_ref()?.best_pps)
    }
    pub fn flat_replies(&self) -> Option<f64> {
        Some(self.flat.as_ref()?.replies_pps)
    }
    pub fn flat_offered(&self) -> Option<f64> {
        Some(self.flat.as_ref()?.offered_pps)
    }
    pub fn generator_bound(&self) -> bool {
        self.search.as_ref().is_some_and(|s| s.generator_bound)
    }
}

#[derive(Debug, Clone, Default)]
pub struct IrRow {
    pub command: String,
    pub gen_command: String,
    pub napi: String,
    pub runs: Vec<IrRun>,
    pub peak_rss_kb: Option<u64>,
    /// Counters of the set-up over the whole row (deltas): where frames were lost.
    pub drops: Vec<(String, u64)>,
    pub secs: f64,
}

/// `threaded`: srv0's NAPI threaded onto the server CPU (the set-up of every row); else
/// it stays in softirq on the generator's CPU, which then also does the server's kernel
/// receive work (the supplementary rows for userspace servers).
pub fn row(paths: &Paths, plan: &Plan, peer: Peer, threaded: bool) -> Result<IrRow> {
    row_of(paths, plan, peer, threaded, false)
}

/// As [`row`], the requests sent by a lightweight relay on the link (RFC 6221): each in a
/// Relay-Forward from port 547 with an Interface-ID (`dhcpv6-bench gen --relayed`).
pub fn relayed_row(paths: &Paths, plan: &Plan, peer: Peer) -> Result<IrRow> {
    row_of(paths, plan, peer, true, true)
}

fn row_of(paths: &Paths, plan: &Plan, peer: Peer, threaded: bool, relayed: bool) -> Result<IrRow> {
    let mut s = Setup::new(paths, plan, peer, threaded, relayed)?;
    for i in 0..plan.runs {
        s.run(paths, plan, i)?;
    }
    s.finish()
}

/// The rows of `peers` measured run by run in turn (a, b, a, b, ...) after one discarded
/// flat-out warm-up each, `plan.paired_runs` runs per row: each peer has its own set-up, and
/// the host's slow and fast phases (a shared VM) fall on all of them alike, so that their
/// ratio settles where back-to-back rows drift apart (the MAC swap's figure moved 1.5x
/// between rows of one recording).
pub fn alternated(paths: &Paths, plan: &Plan, peers: &[Peer]) -> Result<Vec<IrRow>> {
    let mut setups = Vec::with_capacity(peers.len());
    for &peer in peers {
        setups.push(Setup::new(paths, plan, peer, true, false)?);
    }
    for s in &mut setups {
        s.warm_up(paths, plan)?;
    }
    for i in 0..plan.paired_runs {
        for s in &mut setups {
            say(&format!("  {}:", s.peer.label()));
            s.run(paths, plan, i)?;
        }
    }
    setups.into_iter().map(Setup::finish).collect()
}

/// One peer's set-up on its own topology, measured run by run.
struct Setup {
    peer: Peer,
    relayed: bool,
    dir: std::path::PathBuf,
    // Declared before the topology: the server stops before its namespaces go.
    server: Running,
    topo: Topo,
    napi_pid: Option<u32>,
    before: Vec<(String, u64)>,
    row: IrRow,
    hint: Option<f64>,
    started: Instant,
}

impl Setup {
    fn new(paths: &Paths, _plan: &Plan, peer: Peer, threaded: bool, relayed: bool) -> Result<Setup> {
        let started = Instant::now();
        let dir = paths.dir.join(format!(
            "ir-{}{}{}",
            if relayed { "relayed-" } else { "" },
            slug(peer),
            if threaded { "" } else { "-unthreaded" }
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let topo = Topo::new()?;
        let server: Running = if relayed {
            peers::start_relayed(&topo, peer, paths, &dir)?
        } else {
            peers::start(&topo, peer, paths, &dir, Stateful::default())?
        };
        let (napi, napi_pid) = if threaded {
            topo.thread_napi(true)?
        } else {
            ("srv0 NAPI not threaded: its receive work runs in softirq on the generator's CPU".into(), None)
        };
        let before = counters(&topo);
        let row = IrRow { command: server.command.clone(), napi, ..IrRow::default() };
        Ok(Setup { peer, relayed, dir, server, topo, napi_pid, before, row, hint: None, started })
    }

    fn args(&self, plan: &Plan) -> (Vec<String>, String) {
        let (mut args, mut shown) = gen_args(&self.topo, plan, self.peer, self.hint, self.napi_pid);
        if self.relayed {
            args.push("--relayed".into());
            shown += " --relayed";
        }
        (args, shown)
    }

    /// A short flat-out run whose figures are dropped: caches, page pools, the NAPI thread
    /// and the sink's maps are warm before the first counted run.
    fn warm_up(&mut self, paths: &Paths, plan: &Plan) -> Result<()> {
        interrupt::check()?;
        self.server.check_running()?;
        let (mut args, _) = self.args(plan);
        for (flag, value) in [("--search-steps", "0"), ("--flat-secs", "1")] {
            if let Some(i) = args.iter().position(|a| a == flag) {
                args[i + 1] = value.into();
            }
        }
        let log = self.dir.join("gen-warmup.log");
        run_gen(&self.topo, paths, &args, &log, plan.gen_limit(self.peer))?;
        Ok(())
    }

    fn run(&mut self, paths: &Paths, plan: &Plan, i: usize) -> Result<()> {
        interrupt::check()?;
        self.server.check_running()?;
        let (args, shown) = self.args(plan);
        if self.row.gen_command.is_empty() {
            self.row.gen_command = shown;
        }
        let log = self.dir.join(format!("gen-{i}.log"));
        let lines = run_gen(&self.topo, paths, &args, &log, plan.gen_limit(self.peer))?;
        let run = parse_run(lines);
        if run.flat.is_none() {
            bail!("dhcpv6-bench gen printed no result; see {}", log.display());
        }
        if let Some(b) = run.best_pps().filter(|b| *b > 0.0) {
            self.hint = Some(b);
        }
        say(&format!("  run {}: {}", i + 1, summary(&run)));
        self.row.runs.push(run);
        Ok(())
    }

    fn finish(mut self) -> Result<IrRow> {
        self.server.check_running()?;
        self.row.peak_rss_kb = self.server.peak_rss_kb();
        let after = counters(&self.topo);
        self.row.drops = deltas(&self.before, &after);
        drop(self.server);
        self.row.secs = self.started.elapsed().as_secs_f64();
        Ok(self.row)
    }
}

pub fn slug(p: Peer) -> &'static str {
    match p {
        Peer::Drop => "ceiling",
        Peer::MacSwap => "macswap",
        Peer::FastPath => "xdp",
        Peer::Userspace => "userspace",
        Peer::Stateful => "stateful",
        Peer::UserspaceCores => "userspace-cores",
        Peer::StatefulCores => "stateful-cores",
        Peer::StatefulCoresOneWorker => "stateful-cores-1w",
        Peer::StatefulXdpRenew => "stateful-xdp-renew",
        Peer::Kea => "kea",
        Peer::Dnsmasq => "dnsmasq",
        Peer::Responder => "responder",
    }
}

fn gen_args(topo: &Topo, plan: &Plan, peer: Peer, hint: Option<f64>, napi: Option<u32>) -> (Vec<String>, String) {
    let expect = match peer {
        Peer::Drop => "none",
        Peer::MacSwap => "echo",
        _ => "reply",
    };
    let drain = if peer.userspace() { plan.drain_user_ms } else { plan.drain_xdp_ms };
    let mut a: Vec<String> = vec![
        "gen".into(),
        "--iface".into(),
        GEN_IF.into(),
        "--src-mac".into(),
        mac_str(&topo.gen_mac),
        "--src-ip".into(),
        topo.gen_ll.to_string(),
        "--expect".into(),
        expect.into(),
        "--flat-secs".into(),
        plan.flat_secs.to_string(),
        "--warmup-secs".into(),
        plan.warmup_secs.to_string(),
        "--step-secs".into(),
        plan.step_secs.to_string(),
        "--search-steps".into(),
        if peer == Peer::Drop { "0".into() } else { plan.search_steps.to_string() },
        "--drain-ms".into(),
        drain.to_string(),
        "--max-loss".into(),
        "0.001".into(),
    ];
    if idle_poll() {
        a.push("--idle-poll".into());
    }
    let mut shown = format!("taskset -c {GEN_CPU} dhcpv6-bench {}", a.join(" "));
    if let Some(p) = napi {
        a.extend(["--napi-pid".into(), p.to_string()]);
        shown += " --napi-pid PID";
    }
    if let Some(h) = hint {
        a.extend(["--hint-pps".into(), format!("{h:.0}")]);
    }
    (a, shown)
}

/// `DHCPV6_BENCH_IDLE_POLL=1`: the IR generator holds idle CPUs polling (`dhcpv6-bench gen
/// --idle-poll`, a PM QoS request), so that a halted vCPU's wake-up through the host does
/// not delay srv0's NAPI thread. Off unless asked: not shown to be the loss floor's cause.
/// The report's command lines show the flag when it was used.
pub const IDLE_POLL_ENV: &str = "DHCPV6_BENCH_IDLE_POLL";

fn idle_poll() -> bool {
    std::env::var(IDLE_POLL_ENV).is_ok_and(|v| v == "1")
}

/// Runs dhcpv6-bench in the generator namespace, pinned, until it exits (bounded by
/// `limit`; Ctrl-C stops it). The lines it printed.
pub fn run_gen(topo: &Topo, paths: &Paths, args: &[String], log: &Path, limit: Duration) -> Result<Vec<Line>> {
    let mut cmd = topo.gen.cmd("taskset");
    cmd.args(["-c", GEN_CPU, path_str(&paths.bench)?]).args(args).env(build::BENCH_OBJ_ENV, &paths.obj);
    let p = topo.gen.spawn_command(cmd, Some(log))?;
    let started = Instant::now();
    let mut seen = 0;
    loop {
        seen = show_step(log, seen);
        if let Some(st) = p.wait_timeout(Duration::from_millis(100)) {
            let text = fs::read_to_string(log).unwrap_or_default();
            if !st.success() {
                bail!(
                    "dhcpv6-bench {} failed ({st}):\n{}",
                    args.first().map_or("", String::as_str),
                    peers::tail(Some(log), 10)
                );
            }
            return lines::parse(&text).with_context(|| format!("reading {}", log.display()));
        }
        interrupt::check()?;
        if started.elapsed() > limit {
            p.terminate();
            bail!("dhcpv6-bench ran longer than {limit:?} and was stopped; see {}", log.display());
        }
    }
}

/// The progress line's step from the JSON lines `dhcpv6-bench` added to `log` past byte
/// `seen`; returns how far it read (whole lines only).
fn show_step(log: &Path, seen: usize) -> usize {
    let Ok(text) = fs::read_to_string(log) else { return seen };
    let Some(new) = text.get(seen..) else { return seen };
    let Some(end) = new.rfind('\n') else { return seen };
    let mut last = None;
    for l in lines::parse(&new[..end]).unwrap_or_default() {
        let s = match l {
            Line::GenStep(s) => format!("step at {}/s: {:.2} % lost", super::report::num(s.target_pps), 100.0 * s.loss),
            Line::DhcpStep(s) => {
                format!("step at {}/s: {:.2} % lost", super::report::num(s.target_pps), 100.0 * s.loss)
            }
            Line::Flat(f) => format!("flat out: {}/s answered", super::report::num(f.replies_pps)),
            Line::Population(p) => format!("population: {} of {} bound", p.bound, p.wanted),
            Line::StormTick(t) => format!("{:.0} s: {} bound, {} LAN hosts answered", t.secs, t.bound, t.informed),
            Line::Search(s) => format!("search done: {}/s", super::report::num(s.best_pps)),
            _ => continue,
        };
        last = Some(s);
    }
    if let Some(s) = last {
        super::progress::step(&s);
    }
    seen + end + 1
}

fn parse_run(lines: Vec<Line>) -> IrRun {
    let mut r = IrRun::default();
    for l in lines {
        match l {
            Line::Flat(f) => r.flat = Some(f),
            Line::GenStep(s) => r.steps.push(s),
            Line::Search(s) => r.search = Some(s),
            Line::Sink(c) => r.sink = Some(c),
            _ => {}
        }
    }
    r
}

/// For a failed step: " (cpu1 N % user)" when user-mode work took at least 1 % of the
/// server CPU during it, else "". An XDP row's server does all its work in the kernel, so
/// that was some other task's: the server CPU was shared, and a shared CPU delays srv0's
/// NAPI thread (traced: 2-11 ms behind other tasks' kernel sections), longer than srv0's
/// 256-frame ring lasts; the frames that do not fit are the generator's xdp_xmit_errors,
/// counted as lost. A mark, not a verdict: loss also came with the CPU not shared.
pub fn server_cpu_shared(st: &GenStep) -> String {
    let cpu: usize = SRV_CPU.parse().unwrap_or(usize::MAX);
    match st.cpu_user.get(cpu) {
        Some(&u) if u >= 1.0 => format!(" (cpu{cpu} {u:.0} % user)"),
        _ => String::new(),
    }
}

/// "cpu0", "cpu1", ... with each CPU's busy percentage, as the report shows them.
pub fn cpu_busy(f: &Flat) -> impl Iterator<Item = (String, String)> + '_ {
    f.cpu_busy.iter().enumerate().map(|(i, b)| (format!("cpu{i}"), format!("{b:.1}")))
}

fn summary(r: &IrRun) -> String {
    let mut s = format!(
        "flat out {:.0}/s offered, {:.0}/s answered",
        r.flat_offered().unwrap_or(0.0),
        r.flat_replies().unwrap_or(0.0)
    );
    if let Some(b) = r.best_pps() {
        s += &format!(
            "; <= 0.1 % loss up to {b:.0}/s ({} steps{})",
            r.steps.len(),
            if r.generator_bound() { ", generator-bound" } else { "" }
        );
    }
    if let Some(f) = &r.flat {
        let cpus: Vec<String> = cpu_busy(f).map(|(k, v)| format!("{k}_busy={v}%")).collect();
        if !cpus.is_empty() {
            s += &format!("; flat-out {}", cpus.join(" "));
        }
    }
    s
}

/// Drop counters of both ends and the server's UDP stack (cumulative).
pub fn counters(topo: &Topo) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for (ns, ifname) in [(&topo.gen, GEN_IF), (&topo.srv, SRV_IF)] {
        if let Ok(out) = ns.run(&["ethtool", "-S", ifname]) {
            for l in out.lines() {
                let Some((k, val)) = l.split_once(':') else { continue };
                let k = k.trim();
                if k.contains("drops")
                    || k.contains("errors")
                    || k.contains("xdp_tx")
                    || k.contains("xdp_packets")
                    || k.contains("xmit")
                {
                    if let Ok(n) = val.trim().parse() {
                        v.push((format!("{ifname}.{k}"), n));
                    }
                }
            }
        }
    }
    if let Ok(out) = topo.srv.run(&["nstat", "-asz", "Udp6*", "Ip6InDiscards", "Ip6InDelivers"]) {
        for l in out.lines().filter(|l| !l.starts_with('#')) {
            let w: Vec<&str> = l.split_whitespace().collect();
            if let (Some(k), Some(n)) = (w.first(), w.get(1).and_then(|x| x.parse().ok())) {
                v.push((format!("srv.{k}"), n));
            }
        }
    }
    v
}

pub fn deltas(a: &[(String, u64)], b: &[(String, u64)]) -> Vec<(String, u64)> {
    b.iter()
        .filter_map(|(k, y)| {
            let x = a.iter().find(|(ka, _)| ka == k).map_or(0, |(_, x)| *x);
            (y > &x).then(|| (k.clone(), y - x))
        })
        .collect()
}

pub fn say(s: &str) {
    super::progress::line(&format!("bench: {s}"));
}

pub fn checked<T>(r: Result<T>, what: &str) -> Result<Result<T, String>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => {
            interrupt::check().context("interrupted")?;
            say(&format!("{what} FAILED: {e:#}"));
            Ok(Err(format!("{e:#}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_names_the_server_cpus_other_user_work() {
        let mut st = GenStep { loss: 0.004, cpu_user: vec![30.0, 45.4], ..GenStep::default() };
        assert_eq!(server_cpu_shared(&st), format!(" (cpu{SRV_CPU} 45 % user)"));
        st.cpu_user = vec![30.0, 0.5];
        assert_eq!(server_cpu_shared(&st), "");
        // Logs written before the field existed.
        st.cpu_user = vec![];
        assert_eq!(server_cpu_shared(&st), "");
    }
}
