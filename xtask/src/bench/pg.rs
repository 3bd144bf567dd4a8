//! PostgreSQL rows: SARR and renewals with dhcpv6d keeping its leases in PostgreSQL, against
//! Kea 2.2 keeping its leases in the same PostgreSQL server, and two dhcpv6d on one database.
//!
//! One throwaway cluster (testbed's `PgCluster`: Debian's server, a Unix socket in a
//! temporary folder, `fsync` and `synchronous_commit` on as shipped) serves every row, each
//! row in a database of its own (Kea's made by `kea-admin db-init pgsql`). The cluster's
//! processes are pinned to the server CPU with the servers: the database is server-side
//! work. Every lease is durable in both: dhcpv6d sends a Reply only for leases its grouped
//! commit has committed, Kea commits each lease before it answers.
//!
//! A box is a bench pair of namespaces (gen0 <-> srv0) with its server on srv0; two boxes are
//! two such pairs, both servers on the one database, each loaded by its own generator
//! (`dhcpv6-bench dhcp --rates-from FIFO`, pinned to the generator CPU). The driver here
//! searches the total rate: at each step every generator offers its share, and the step
//! passes only when every box passed (<= 0.1 % loss, its generator not short), so the
//! two-box figure is work both boxes did at once.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dhcpv6_bench_common::lines::{self, DhcpStep, Line};
use testbed::postgres::PgCluster;
use testbed::{run_command, Proc};

use super::bracket::{Bracket, Moves};
use super::ir::{checked, say, slug};
use super::peers::{self, path_str, Peer, PgDb, Running, Stateful};
use super::report::{num, Fig};
use super::stateful::{AfterStep, PerfStep, SarrRow, SarrRun};
use super::topo::{Topo, GEN_CPU, GEN_IF, SRV_CPU};
use super::{Paths, Plan};
use crate::{build, interrupt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    Sarr,
    Renew,
}

impl Exchange {
    fn name(self) -> &'static str {
        match self {
            Exchange::Sarr => "sarr",
            Exchange::Renew => "renew",
        }
    }
}

/// The rows, in the order they run (a two-box row starts its search from the one-box result).
const ROWS: &[RowKey] = &[
    (Exchange::Sarr, Peer::Kea, 1),
    (Exchange::Sarr, Peer::Stateful, 1),
    (Exchange::Sarr, Peer::Stateful, 2),
    (Exchange::Renew, Peer::Kea, 1),
    (Exchange::Renew, Peer::Stateful, 1),
    (Exchange::Renew, Peer::Stateful, 2),
];

#[derive(Debug, Clone)]
pub struct PgRow {
    pub row: SarrRow,
    /// Leases in the database once the row ended (each box's server counts them its way).
    pub db_leases: Option<u64>,
    /// Replies each box's generator got over the whole row: the work each box did.
    pub replies_per_box: Vec<u64>,
    /// Population per box (renew rows).
    pub population: Option<u64>,
}

/// (exchange, server, boxes): which row.
type RowKey = (Exchange, Peer, usize);

/// (exchange, server, boxes, row).
pub type PgEntry = (Exchange, Peer, usize, Result<PgRow, String>);

/// Runs every PostgreSQL row into `out`.
pub fn rows(paths: &Paths, plan: &Plan, out: &mut Vec<PgEntry>) -> Result<()> {
    interrupt::check()?;
    say("PostgreSQL rows: starting a throwaway cluster");
    let server = match checked(Server::start(), "PostgreSQL cluster")? {
        Ok(s) => s,
        Err(e) => {
            out.extend(ROWS.iter().map(|&(x, p, b)| (x, p, b, Err(format!("no PostgreSQL cluster: {e}")))));
            return Ok(());
        }
    };
    say(&format!("  {}", server.settings));
    for &(ex, peer, boxes) in ROWS {
        interrupt::check()?;
        say(&format!(
            "{} on PostgreSQL, {boxes} box{}: {}",
            if ex == Exchange::Sarr { "SARR (address)" } else { "Renew" },
            if boxes == 1 { "" } else { "es" },
            peer.label()
        ));
        // Start from what the same server did on one box, shared out: fewer steps wasted.
        let one_box = out
            .iter()
            .find(|(x, p, b, _)| *x == ex && *p == peer && *b == 1)
            .and_then(|(_, _, _, r)| r.as_ref().ok())
            .and_then(|r| Fig::of(&r.row.runs.iter().map(|x| x.best).collect::<Vec<_>>()))
            .map(|f| f.med)
            .filter(|b| *b > 0.0);
        let r = checked(row(paths, plan, &server, ex, peer, boxes, one_box), peer.label())?;
        out.push((ex, peer, boxes, r));
    }
    Ok(())
}

/// The cluster, pinned to the server CPU, and what it was set to.
struct Server {
    cluster: PgCluster,
    settings: String,
}

impl Server {
    fn start() -> Result<Server> {
        let cluster = PgCluster::start()?;
        let pid = cluster.postmaster_pid()?;
        // Sessions are forked by the postmaster later and inherit its CPU.
        let mut pinned = 0;
        for p in std::iter::once(pid).chain(children(pid)) {
            run_command(Command::new("taskset").args(["-a", "-p", "-c", SRV_CPU, &p.to_string()]), TIMEOUT)
                .with_context(|| format!("pinning PostgreSQL process {p} to CPU {SRV_CPU}"))?;
            pinned += 1;
        }
        let show = |k: &str| cluster.psql("postgres", &format!("SHOW {k}")).map(|v| format!("{k} = {}", v.trim()));
        let version = cluster.psql("postgres", "SHOW server_version")?;
        let settings = format!(
            "PostgreSQL {} ({}, {}, {}), {pinned} processes pinned to CPU {SRV_CPU}, socket {}",
            version.trim(),
            show("fsync")?,
            show("synchronous_commit")?,
            show("wal_sync_method")?,
            cluster.socket_dir().display()
        );
        Ok(Server { cluster, settings })
    }

    /// A new database for one row; Kea's with Kea's schema.
    fn database(&self, name: &str, kea: bool) -> Result<PgDb> {
        self.cluster.create_database(name)?;
        let db =
            PgDb { socket_dir: self.cluster.socket_dir().to_path_buf(), port: self.cluster.port(), name: name.into() };
        if kea {
            let dir = path_str(&db.socket_dir)?.to_string();
            let port = db.port.to_string();
            run_command(
                Command::new("kea-admin")
                    .args(["db-init", "pgsql", "-h", &dir, "-P", &port, "-u", "postgres", "-p", "", "-n", name]),
                Duration::from_secs(120),
            )
            .with_context(|| format!("kea-admin db-init pgsql -n {name}"))?;
        }
        Ok(db)
    }

    /// Leases the row left in its database.
    fn leases(&self, paths: &Paths, peer: Peer, db: &PgDb) -> Result<u64> {
        if peer == Peer::Kea {
            let n = self.cluster.psql(&db.name, "SELECT count(*) FROM lease6")?;
            return n.trim().parse().with_context(|| format!("count(*) said {n:?}"));
        }
        peers::dhcpv6d_leases(paths, &db.url())
    }
}

const TIMEOUT: Duration = Duration::from_secs(20);

/// PIDs whose parent is `pid` (field 4 of /proc/PID/stat, after the command's parentheses).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let p: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == pid).then_some(p)
    })
    .collect()
}

/// One box: its server (stopped first) and its namespaces.
struct Side {
    run: Running,
    topo: Topo,
}

#[allow(clippy::too_many_arguments)]
fn row(
    paths: &Paths,
    plan: &Plan,
    server: &Server,
    ex: Exchange,
    peer: Peer,
    boxes: usize,
    one_box: Option<f64>,
) -> Result<PgRow> {
    let name = format!("{}_{}_{boxes}box", slug(peer), ex.name());
    let dir = paths.dir.join(format!("pg-{}", name.replace('_', "-")));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let db = server.database(&name, peer == Peer::Kea)?;
    let mut sides = Vec::new();
    for b in 0..boxes {
        let topo = Topo::new()?;
        let st = Stateful { on: true, postgres: Some(db.clone()), ..Stateful::default() };
        let run = peers::start(&topo, peer, paths, &dir.join(format!("box{b}")), st)?;
        sides.push(Side { run, topo });
    }
    let population = (ex == Exchange::Renew).then(|| (pg_population(plan) / boxes as u64).max(1));
    // Distinct DUIDs on every box (they share the database), new ones in every row.
    let seed = (std::process::id() as u16).wrapping_mul(31).wrapping_add(unique_seed());
    let mut gens = Vec::new();
    for (b, s) in sides.iter().enumerate() {
        let g = Gen::start(&s.topo, paths, plan, &dir, b, ex, population, seed.wrapping_add(b as u16 * 997))?;
        gens.push(g);
    }
    let mut row = SarrRow {
        command: format!(
            "{} box{}: {}; {}",
            boxes,
            if boxes == 1 { "" } else { "es" },
            sides[0].run.command,
            server.settings
        ),
        perf_command: gens[0].command.clone(),
        runs: Vec::new(),
        peak_rss_kb: None,
        population: None,
        server: Default::default(),
    };
    if let Some(n) = population {
        let fill = fill_secs(n);
        for g in &mut gens {
            let p = g.population(Duration::from_secs_f64(fill + 60.0), &sides)?;
            say(&format!("  box {}: {} of {} leases in {:.1} s", g.index, p.bound, p.wanted, p.secs));
            row.population = Some(p);
        }
    }
    for g in &mut gens {
        g.open_rates(&sides)?;
    }
    let base = match (ex, peer) {
        (Exchange::Sarr, Peer::Kea) => plan.sarr_hint / 4.0,
        (Exchange::Sarr, _) => plan.sarr_hint,
        (Exchange::Renew, Peer::Kea) => plan.renew_hint / 4.0,
        (Exchange::Renew, _) => plan.renew_hint,
    };
    // Two boxes start where one box passed: on this machine they share its server CPU, and
    // a first step far above what they sustain leaves a backlog the next steps pay for.
    let mut hint = one_box.unwrap_or(base);
    for i in 0..plan.runs {
        interrupt::check()?;
        let r = search(&mut gens, &sides, plan, hint)?;
        say(&format!(
            "  run {}: <= 0.1 % loss up to {:.0} {}/s over {boxes} box{}{} ({} steps)",
            i + 1,
            r.best,
            if ex == Exchange::Renew { "renewals" } else { "exchanges" },
            if boxes == 1 { "" } else { "es" },
            if r.bound { " (generator-bound)" } else { "" },
            r.steps.len()
        ));
        if r.best > 0.0 {
            hint = r.best;
        }
        row.runs.push(r);
    }
    for g in &mut gens {
        g.finish();
    }
    for s in &sides {
        s.run.check_running()?;
    }
    row.peak_rss_kb = sides[0].run.peak_rss_kb();
    // Let the last grouped commits land before counting.
    interrupt::sleep(Duration::from_millis(500))?;
    let db_leases = server.leases(paths, peer, &db).map_err(|e| say(&format!("  counting leases: {e:#}"))).ok();
    let replies_per_box = gens.iter().map(|g| g.steps.iter().map(|s| s.replies).sum()).collect();
    drop(gens);
    drop(sides);
    Ok(PgRow { row, db_leases, population, replies_per_box })
}

/// Leases of a renew row's population, over all its boxes: the SQLite rows' population, at
/// most 30,000, because Kea on PostgreSQL builds it at about 200 leases/s (100,000 took
/// 7.5 minutes) while its renewal rate does not depend on it.
fn pg_population(plan: &Plan) -> u64 {
    plan.renew_population.min(30_000)
}

fn fill_secs(n: u64) -> f64 {
    // As the SQLite renew rows: the population at whatever the server sustains with 32
    // exchanges in flight; Kea on PostgreSQL is slower, hence the longer floor.
    (n as f64 / 100.0).max(60.0)
}

fn unique_seed() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static N: AtomicU16 = AtomicU16::new(0);
    N.fetch_add(1, Ordering::Relaxed).wrapping_mul(4001)
}

/// One box's generator: a `dhcpv6-bench dhcp` process stepping at the rates written to
/// its FIFO, its JSON lines read back from its log.
struct Gen {
    index: usize,
    proc: Proc,
    log: PathBuf,
    fifo: PathBuf,
    rates: Option<fs::File>,
    /// Lines of the log already read, and the DhcpStep lines among them.
    read: usize,
    steps: Vec<DhcpStep>,
    population: Option<lines::Population>,
    command: String,
    step_limit: Duration,
}

impl Gen {
    #[allow(clippy::too_many_arguments)]
    fn start(
        topo: &Topo,
        paths: &Paths,
        plan: &Plan,
        dir: &Path,
        index: usize,
        ex: Exchange,
        population: Option<u64>,
        seed: u16,
    ) -> Result<Gen> {
        let fifo = dir.join(format!("rates-{index}.fifo"));
        let _ = fs::remove_file(&fifo);
        let c = std::ffi::CString::new(path_str(&fifo)?)?;
        // SAFETY: mkfifo(3) on a NUL-terminated path that outlives the call.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            bail!("mkfifo {}: {}", fifo.display(), std::io::Error::last_os_error());
        }
        let mut args: Vec<String> = vec![
            "dhcp".into(),
            "--iface".into(),
            GEN_IF.into(),
            "--exchange".into(),
            ex.name().into(),
            "--mode".into(),
            "address".into(),
            "--step-secs".into(),
            plan.gen_step_secs.to_string(),
            "--drain-ms".into(),
            plan.drain_user_ms.to_string(),
            "--max-loss".into(),
            "0.001".into(),
            "--seed".into(),
            seed.to_string(),
        ];
        if let Some(n) = population {
            args.extend(["--population".into(), n.to_string(), "--fill-secs".into(), format!("{:.0}", fill_secs(n))]);
        }
        args.extend(["--rates-from".into(), path_str(&fifo)?.into()]);
        let command =
            format!("taskset -c {GEN_CPU} dhcpv6-bench {} (one per box, each its share of the rate)", args.join(" "));
        let log = dir.join(format!("gen-{index}.log"));
        let mut cmd = topo.gen.cmd("taskset");
        cmd.args(["-c", GEN_CPU, path_str(&paths.bench)?]).args(&args).env(build::BENCH_OBJ_ENV, &paths.obj);
        let proc = topo.gen.spawn_command(cmd, Some(&log))?;
        let step_limit =
            Duration::from_secs_f64(2.0 * (plan.gen_step_secs + plan.drain_user_ms as f64 / 1000.0) + 15.0);
        Ok(Gen {
            index,
            proc,
            log,
            fifo,
            rates: None,
            read: 0,
            steps: Vec::new(),
            population: None,
            command,
            step_limit,
        })
    }

    /// Reads the complete lines the generator added to its log since the last call.
    fn poll(&mut self) -> Result<()> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        let new: Vec<&str> = complete.lines().skip(self.read).collect();
        self.read += new.len();
        for l in lines::parse(&new.join("\n")).with_context(|| format!("reading {}", self.log.display()))? {
            match l {
                Line::DhcpStep(s) => self.steps.push(s),
                Line::Population(p) => self.population = Some(p),
                _ => {}
            }
        }
        Ok(())
    }

    /// Waits until `done` holds of the lines read, the generator and the servers alive.
    fn wait(&mut self, limit: Duration, sides: &[Side], what: &str, done: impl Fn(&Gen) -> bool) -> Result<()> {
        let started = Instant::now();
        loop {
            self.poll()?;
            if done(self) {
                return Ok(());
            }
            interrupt::check()?;
            if !self.proc.is_running() {
                bail!(
                    "dhcpv6-bench dhcp (box {}) exited waiting for {what}:\n{}",
                    self.index,
                    peers::tail(Some(&self.log), 10)
                );
            }
            for s in sides {
                s.run.check_running()?;
            }
            if started.elapsed() > limit {
                bail!("no {what} from dhcpv6-bench dhcp (box {}) in {limit:?}; see {}", self.index, self.log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn population(&mut self, limit: Duration, sides: &[Side]) -> Result<lines::Population> {
        self.wait(limit, sides, "population", |g| g.population.is_some())?;
        let p = self.population.clone().context("population line")?;
        // The generator exits when too few leases were obtained; it says so in its log.
        Ok(p)
    }

    /// Opens the FIFO's writing end once the generator has opened its reading end.
    fn open_rates(&mut self, sides: &[Side]) -> Result<()> {
        let started = Instant::now();
        loop {
            match fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&self.fifo) {
                Ok(f) => {
                    self.rates = Some(f);
                    return Ok(());
                }
                // No reader yet.
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
                Err(e) => return Err(e).with_context(|| format!("opening {}", self.fifo.display())),
            }
            interrupt::check()?;
            if !self.proc.is_running() {
                bail!("dhcpv6-bench dhcp (box {}) exited:\n{}", self.index, peers::tail(Some(&self.log), 10));
            }
            for s in sides {
                s.run.check_running()?;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("dhcpv6-bench dhcp (box {}) did not open {} in 60 s", self.index, self.fifo.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, rate: f64) -> Result<()> {
        let f = self.rates.as_mut().context("the rates FIFO is not open")?;
        // A line is far below PIPE_BUF: written whole, and the pipe never fills (one line
        // a step, each read before the next is written).
        f.write_all(format!("{rate:.1}\n").as_bytes()).with_context(|| format!("writing to {}", self.fifo.display()))
    }

    fn step(&mut self, sides: &[Side], n: usize) -> Result<DhcpStep> {
        let limit = self.step_limit;
        self.wait(limit, sides, "step result", |g| g.steps.len() > n)?;
        Ok(self.steps[n].clone())
    }

    /// Closes the FIFO (the generator then prints its totals and exits) and waits a little.
    fn finish(&mut self) {
        self.rates = None;
        let _ = self.proc.wait_timeout(Duration::from_secs(10));
    }
}

impl Drop for Gen {
    fn drop(&mut self) {
        self.rates = None;
        if self.proc.is_running() {
            self.proc.terminate();
        }
        let _ = fs::remove_file(&self.fifo);
    }
}

/// The pause after a failed step (see `search`).
fn settle(plan: &Plan) -> Duration {
    Duration::from_secs_f64((plan.gen_step_secs * 0.7).max(0.3))
}

/// One step at `rate` in total: every box's generator its share, at once.
fn step(gens: &mut [Gen], sides: &[Side], rate: f64) -> Result<(PerfStep, bool)> {
    let n = gens[0].steps.len();
    let share = rate / gens.len() as f64;
    for g in gens.iter_mut() {
        g.send(share)?;
    }
    let mut st = PerfStep { target: rate, ..PerfStep::default() };
    let mut all_pass = true;
    let mut worst: f64 = 0.0;
    for g in gens.iter_mut() {
        let s = g.step(sides, n)?;
        st.achieved += s.offered_pps;
        st.sa.0 += s.sent;
        st.sa.1 += s.advertised;
        st.sa.2 += s.sent.saturating_sub(s.advertised);
        st.rr.0 += s.requested;
        st.rr.1 += s.replies;
        st.rr.2 += s.requested.saturating_sub(s.replies);
        st.short |= s.short;
        // The boxes' late answers together; the longest wait; quiet only if every box was.
        let a = st.after.get_or_insert(AfterStep { quiet: true, ..AfterStep::default() });
        a.late += s.late;
        a.wait_ms = a.wait_ms.max(s.quiet_wait_ms);
        a.probes += s.probes;
        a.quiet &= s.quiet;
        all_pass &= s.pass;
        worst = worst.max(s.loss);
    }
    // The worst box's loss: the step passes only if every box kept within the bound.
    st.loss = worst;
    st.pass = all_pass;
    Ok((st, all_pass))
}

/// The highest total rate every box sustained with <= 0.1 % loss: up by half while steps
/// pass, down by 40 % while they fail, then halving the interval to 4 %.
fn search(gens: &mut [Gen], sides: &[Side], plan: &Plan, hint: f64) -> Result<SarrRun> {
    let mut bracket = Bracket::default();
    let mut out = SarrRun::default();
    let mut r = hint.max(20.0);
    for _ in 0..plan.sarr_steps {
        interrupt::check()?;
        let (st, pass) = step(gens, sides, r)?;
        if st.short && st.loss <= 0.001 {
            out.bound = true;
        }
        if !pass {
            // Answers the generators gave up on are still queued in the servers (commits
            // in flight, datagrams in their queues): let them drain, or the next step,
            // at a lower rate, would be measured against this one's backlog.
            interrupt::sleep(settle(plan))?;
        }
        out.steps.push(st);
        let Some(next) = bracket.next(r, pass, &Moves { up: 1.5, down: 0.6, floor: 40.0 }) else {
            break;
        };
        r = next;
    }
    out.best = bracket.best();
    out.no_fail = bracket.no_fail();
    Ok(out)
}

fn median(r: &Result<PgRow, String>) -> Result<(Fig, bool), String> {
    match r {
        Ok(r) => {
            let f = Fig::of(&r.row.runs.iter().map(|x| x.best).collect::<Vec<_>>()).ok_or("no run")?;
            Ok((f, r.row.runs.iter().any(|x| x.bound || x.no_fail)))
        }
        Err(e) => Err(format!("failed: {}", e.lines().next().unwrap_or(""))),
    }
}

fn find(res: &[PgEntry], ex: Exchange, peer: Peer, boxes: usize) -> Result<(Fig, bool), String> {
    match res.iter().find(|(x, p, b, _)| *x == ex && *p == peer && *b == boxes) {
        Some((_, _, _, r)) => median(r),
        None => Err("not run".into()),
    }
}

fn show(f: &Result<(Fig, bool), String>) -> String {
    match f {
        Ok((f, floor)) => {
            let spread =
                if f.n > 1 && f.min != f.max { format!(" ({}..{})", num(f.min), num(f.max)) } else { String::new() };
            format!("{}{spread}{}", num(f.med), if *floor { " (floor)" } else { "" })
        }
        Err(e) => e.clone(),
    }
}

/// The PostgreSQL rows' table (the main table's columns), then each row's detail.
pub fn table(res: &[PgEntry]) -> String {
    use std::fmt::Write as _;
    if res.is_empty() {
        return String::new();
    }
    let population = res.iter().find_map(|(_, _, _, r)| r.as_ref().ok()?.population);
    let renew = |b: usize| match population {
        Some(n) => format!("population of {} leases", num((n * b as u64) as f64)),
        None => "population".to_string(),
    };
    let specs: [(String, RowKey, RowKey, Option<f64>); 6] = [
        (
            "SARR exchanges/s at <= 0.1 % loss (address), leases in PostgreSQL: dhcpv6d vs Kea (1 box each)".into(),
            (Exchange::Sarr, Peer::Stateful, 1),
            (Exchange::Sarr, Peer::Kea, 1),
            Some(3.0),
        ),
        (
            "SARR exchanges/s at <= 0.1 % loss (address), one PostgreSQL database: two dhcpv6d vs one".into(),
            (Exchange::Sarr, Peer::Stateful, 2),
            (Exchange::Sarr, Peer::Stateful, 1),
            Some(1.5),
        ),
        (
            "SARR exchanges/s at <= 0.1 % loss (address), leases in PostgreSQL: two dhcpv6d vs one Kea".into(),
            (Exchange::Sarr, Peer::Stateful, 2),
            (Exchange::Sarr, Peer::Kea, 1),
            None,
        ),
        (
            format!("Renewals/s at <= 0.1 % loss, {}, leases in PostgreSQL: dhcpv6d vs Kea (1 box each)", renew(1)),
            (Exchange::Renew, Peer::Stateful, 1),
            (Exchange::Renew, Peer::Kea, 1),
            Some(3.0),
        ),
        (
            format!("Renewals/s at <= 0.1 % loss, {}, one PostgreSQL database: two dhcpv6d vs one", renew(1)),
            (Exchange::Renew, Peer::Stateful, 2),
            (Exchange::Renew, Peer::Stateful, 1),
            Some(1.5),
        ),
        (
            format!("Renewals/s at <= 0.1 % loss, {}, leases in PostgreSQL: two dhcpv6d vs one Kea", renew(1)),
            (Exchange::Renew, Peer::Stateful, 2),
            (Exchange::Renew, Peer::Kea, 1),
            None,
        ),
    ];
    let mut s = String::from(
        "\n### PostgreSQL rows\n\n\
         Every lease durable in both: dhcpv6d answers only for leases its grouped commit has committed, \
         Kea commits each lease before it answers; one PostgreSQL server for both. \
         \"(floor)\": the generator was short, or no step failed.\n\n\
         | figure | dhcpv6d | peer | dhcpv6d / peer | target |\n|---|---|---|---|---|\n",
    );
    for (figure, ours, peer, target) in &specs {
        let o = find(res, ours.0, ours.1, ours.2);
        let p = find(res, peer.0, peer.1, peer.2);
        let (ratio, t) = match (&o, &p, target) {
            (Ok((a, _)), Ok((b, _)), _) if b.med > 0.0 => {
                let r = a.med / b.med;
                let t =
                    target.map_or(String::new(), |x| format!(">= {x}x: {}", if r >= x { "met" } else { "NOT met" }));
                (format!("{r:.2}x"), t)
            }
            (_, _, Some(x)) => ("-".into(), format!(">= {x}x: not measured")),
            _ => ("-".into(), String::new()),
        };
        let _ = writeln!(s, "| {figure} | {} | {} | {ratio} | {t} |", show(&o), show(&p));
    }
    s.push_str("\nPostgreSQL rows in detail:\n\n");
    for (ex, peer, boxes, r) in res {
        let title = format!(
            "{}, {boxes} box{}: {}",
            if *ex == Exchange::Sarr { "SARR (address)" } else { "Renew" },
            if *boxes == 1 { "" } else { "es" },
            peer.label()
        );
        match r {
            Err(e) => {
                let _ = writeln!(s, "- {title}: failed: `{}`", e.lines().next().unwrap_or(""));
            }
            Ok(r) => {
                let runs: Vec<String> = r
                    .row
                    .runs
                    .iter()
                    .map(|x| {
                        let steps: Vec<String> = x
                            .steps
                            .iter()
                            .map(|st| {
                                format!(
                                    "{} {}{}",
                                    num(st.target),
                                    if st.pass { "pass" } else { "fail" },
                                    if st.loss > 0.0 {
                                        format!(" ({:.2} % loss)", st.loss * 100.0)
                                    } else {
                                        String::new()
                                    }
                                )
                            })
                            .collect();
                        format!("{} [{}]", num(x.best), steps.join(", "))
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "- {title}: runs {}; leases in the database after the row: {}{}{}.\n  Server: `{}`. Load: `{}`.",
                    runs.join("; "),
                    r.db_leases.map_or("?".into(), |n| num(n as f64)),
                    if r.replies_per_box.len() > 1 {
                        let each: Vec<String> = r.replies_per_box.iter().map(|n| num(*n as f64)).collect();
                        format!("; replies per box over the row: {}", each.join(" / "))
                    } else {
                        String::new()
                    },
                    r.row.population.as_ref().map_or(String::new(), |p| format!(
                        "; population per box {} of {} bound in {:.0} s",
                        num(p.bound as f64),
                        num(p.wanted as f64),
                        p.secs
                    )),
                    r.row.command,
                    r.row.perf_command
                );
            }
        }
    }
    s
}

/// Rows that failed or completed no exchange.
pub fn failures(res: &[PgEntry]) -> Vec<String> {
    let mut v = Vec::new();
    for (ex, peer, boxes, r) in res {
        let what = format!("PostgreSQL {} {boxes} box(es) {}", ex.name(), peer.label());
        match r {
            Err(e) => v.push(format!("{what}: {}", e.lines().next().unwrap_or(""))),
            Ok(r) if r.row.runs.iter().all(|x| x.steps.iter().all(|s| s.rr.1 == 0)) => {
                v.push(format!("{what}: no exchange completed"))
            }
            Ok(r) if r.replies_per_box.contains(&0) => {
                v.push(format!("{what}: a box answered nothing ({:?} replies per box)", r.replies_per_box))
            }
            _ => {}
        }
    }
    v
}
