//! `dhcpv6-bench dhcp`: the stateful load generator. Solicit-Advertise-Request-Reply of new
//! clients (address, prefix or both), or Renew of a population it first builds, from an
//! ordinary UDP socket on the generator's interface; at fixed rates or in a bounded search
//! for the highest rate with at most a given loss, all in one process (the clients' state
//! lives here). perfdhcp offers at most ~10,000 exchanges/s on the bench machine; this
//! offers several times that from one core.
//!
//! Output, one JSON line each (`dhcpv6_bench_common::lines`): `population` (renew),
//! `dhcp_step` per fixed-rate step, `search`, `invalid` (reasons over the run), `totals`.

pub(crate) mod client;
pub(crate) mod msg;
pub(crate) mod responder;
mod run;
pub(crate) mod sock;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use dhcpv6_bench_common::lines::{self, Line};

pub use msg::Mode;

use crate::procstat;
use crate::search::{self, Bounds, Outcome};
use client::{Client, Clients, Phase, MAX_CLIENTS, TAGS};
use run::{Driver, Fill, Paced, Quiet, QuietWait, Quieted, Totals};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Exchange {
    /// Solicit-Advertise-Request-Reply, new clients every step.
    Sarr,
    /// Renew of a population built first (not counted).
    Renew,
}

#[derive(clap::Args, Debug)]
pub struct DhcpArgs {
    /// The generator's interface (the socket is bound to it).
    #[arg(long)]
    pub iface: String,
    #[arg(long, value_enum, default_value = "sarr")]
    pub exchange: Exchange,
    #[arg(long, value_enum, default_value = "address")]
    pub mode: Mode,
    /// Fixed-rate steps at this rate (exchanges/s) instead of the search.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub rate_runs: usize,
    /// Steps of the search for the highest rate with at most --max-loss.
    #[arg(long, default_value_t = 8)]
    pub search_steps: usize,
    #[arg(long, default_value_t = 2.0)]
    pub step_secs: f64,
    /// First rate the search tries.
    #[arg(long, default_value_t = 5000.0)]
    pub hint_pps: f64,
    #[arg(long, default_value_t = 500_000.0)]
    pub cap_pps: f64,
    #[arg(long, default_value_t = 0.001)]
    pub max_loss: f64,
    #[arg(long, default_value_t = 0.03)]
    pub precision: f64,
    /// Searches one after the other over the same population (renew) or server (sarr), each
    /// starting from the previous one's result: the runs of a benchmark row.
    #[arg(long, default_value_t = 1)]
    pub searches: usize,
    /// Wait for late answers after each step.
    #[arg(long, default_value_t = 500)]
    pub drain_ms: u64,
    /// After each step's drain (its figures taken: what comes later is lost for it), wait
    /// until no answer of any step came for this long before the next step starts, so that
    /// a step is not measured against the previous one's backlog; 0: no wait.
    #[arg(long, default_value_t = 250)]
    pub quiet_ms: u64,
    /// The longest that wait may be; the next step then starts anyway (and the step says
    /// the server did not go quiet).
    #[arg(long, default_value_t = 5000)]
    pub quiet_max_ms: u64,
    /// Renew: clients in the population.
    #[arg(long, default_value_t = 10_000)]
    pub population: usize,
    /// Renew: exchanges in flight while the population is built.
    #[arg(long, default_value_t = 32)]
    pub fill_window: usize,
    /// Renew: the longest the population may take to build (over all its passes).
    #[arg(long, default_value_t = 300.0)]
    pub fill_secs: f64,
    /// Renew: the share of the population that must hold leases before renewals start.
    #[arg(long, default_value_t = 0.99)]
    pub fill_min: f64,
    /// Renew: seconds to wait once the population is built, before renewals start (a server
    /// that prepares answers in the background, dhcpv6d --xdp-renew, gets them in place).
    #[arg(long, default_value_t = 0.0)]
    pub settle_secs: f64,
    /// Part of every client's DUID, so that runs against one server use new clients
    /// (default: from the clock).
    #[arg(long)]
    pub seed: Option<u16>,
    /// The socket's receive buffer (bytes).
    #[arg(long, default_value_t = 16 << 20)]
    pub rcvbuf: usize,
    /// Fixed-rate steps at the rates read from this file (a FIFO), one a line, until its
    /// end: a driver running several generators side by side (one per server) picks each
    /// step's rate from all of their results.
    #[arg(long, value_name = "PATH", conflicts_with = "rate")]
    pub rates_from: Option<std::path::PathBuf>,
    /// Paced steps: rounds at least this many microseconds apart while less than a batch of
    /// answers waits (what fell due meanwhile goes out in one sendmmsg; the `cores` rows use
    /// 50); 0: a round for every answer, as the rows checked against perfdhcp.
    #[arg(long, default_value_t = 0.0)]
    pub coalesce_us: f64,
}

/// One fixed-rate step's figures.
#[derive(Debug, Clone, Default)]
struct Step {
    target: f64,
    offered: f64,
    secs: f64,
    started: u64,
    advertised: u64,
    requested: u64,
    replied: u64,
    loss: f64,
    sa_loss: f64,
    rr_loss: f64,
    lat: (u32, u32),
    during: Totals,
    rcvbuf_errors: u64,
    /// Busy percentage of each CPU during the step.
    cpu: Vec<f64>,
    /// The wait after the step's drain until the server went quiet.
    after: Quieted,
}

impl Step {
    /// The generator did not offer the rate, or lost messages itself (the step says
    /// nothing of the server).
    fn short(&self) -> bool {
        // Messages our socket refused or answers it dropped are the generator's loss.
        self.offered < 0.97 * self.target || self.during.refused > 0 || self.rcvbuf_errors > 0
    }

    fn pass(&self, max_loss: f64) -> bool {
        self.loss <= max_loss && !self.short()
    }

    fn line(&self, pass: bool) -> Line {
        Line::DhcpStep(lines::DhcpStep {
            target_pps: self.target,
            offered_pps: self.offered,
            secs: self.secs,
            sent: self.started,
            advertised: self.advertised,
            requested: self.requested,
            replies: self.replied,
            loss: self.loss,
            sa_loss: self.sa_loss,
            rr_loss: self.rr_loss,
            lat_med_us: self.lat.0,
            lat_p99_us: self.lat.1,
            invalid: self.during.invalid_sum(),
            stale: self.during.stale,
            refused: self.during.refused,
            gen_rcvbuf_errors: self.rcvbuf_errors,
            short: self.short(),
            pass,
            cpu_busy: self.cpu.clone(),
            late: self.after.late,
            probes: self.after.probes,
            quiet_wait_ms: self.after.waited_ns as f64 / 1e6,
            quiet: self.after.quiet,
        })
    }
}

/// The state shared by the steps of one run.
struct Gen {
    d: Driver,
    args: DhcpArgs,
    seed: u16,
    /// DUID number of the next new client.
    next_client: u32,
    steps: usize,
}

impl Gen {
    fn coalesce_ns(&self) -> u64 {
        (self.args.coalesce_us * 1000.0).max(0.0) as u64
    }

    fn tag(&self) -> u8 {
        // Tag 0 is the population's; steps cycle through the others.
        (self.steps % usize::from(TAGS - 1)) as u8 + 1
    }

    fn sarr_step(&mut self, rate: f64) -> Result<Step> {
        let secs = self.args.step_secs;
        let n = (rate * secs).ceil() as usize;
        if n > MAX_CLIENTS {
            bail!("{n} clients in one step; at most {MAX_CLIENTS} (shorter steps or a lower rate)");
        }
        let mut clients = Clients::new(n, self.tag(), self.seed, self.next_client, self.args.mode);
        self.next_client = self.next_client.wrapping_add(n as u32);
        let drain = Duration::from_millis(self.args.drain_ms).as_nanos() as u64;
        let start = self.d.now() + 1_000_000;
        let mut load = Paced::new(&mut clients, false, 0, rate, start, secs, drain).coalescing(self.coalesce_ns());
        let st = self.measure(&mut load, rate, secs)?;
        let after = self.quiet(&mut clients, rate)?;
        Ok(Step { after, ..st })
    }

    fn renew_step(&mut self, pop: &mut Clients, cursor: &mut usize, rate: f64) -> Result<Step> {
        let n = pop.list.len().max(1);
        // Each client at most once per step: a step that would need more is shortened.
        let secs = self.args.step_secs.min(n as f64 / rate);
        pop.tag = self.tag();
        let drain = Duration::from_millis(self.args.drain_ms).as_nanos() as u64;
        let start = self.d.now() + 1_000_000;
        let mut load = Paced::new(pop, true, *cursor, rate, start, secs, drain).coalescing(self.coalesce_ns());
        let st = self.measure(&mut load, rate, secs);
        load.settle();
        *cursor = (*cursor + load.started as usize) % n;
        let st = st?;
        let after = self.quiet(pop, rate)?;
        // A Renew is the request of a one-round exchange: print it as such.
        Ok(Step { requested: st.started, sa_loss: 0.0, rr_loss: st.loss, after, ..st })
    }

    /// Waits until the server has gone quiet (`--quiet-ms`, at most `--quiet-max-ms`) after
    /// a step at `rate` whose figures are taken: the next step starts on a server that is
    /// no longer answering this one.
    fn quiet(&mut self, clients: &mut Clients, rate: f64) -> Result<Quieted> {
        let ms = 1_000_000;
        let start = self.d.now();
        let mut wait = QuietWait::new(start, self.d.last_rx, self.args.quiet_ms * ms, self.args.quiet_max_ms * ms);
        // The probe: a new client at the end of the step's list (its transaction ids are the
        // step's tag and an index no other client has), removed afterwards.
        let probe = if clients.list.len() < MAX_CLIENTS {
            clients.list.push(Client { duid_no: self.next_client, ..Client::default() });
            self.next_client = self.next_client.wrapping_add(1);
            Some(clients.list.len() - 1)
        } else {
            wait = wait.without_probe();
            None
        };
        let deadline = wait.deadline() + 1_000 * ms;
        let mut q = Quiet { clients, probe, wait };
        // Bounded by the wait's own bound (and a second more for the loop's last round).
        let ran = self.d.run(&mut q, deadline);
        let r = q.wait.result(self.d.now());
        if probe.is_some() {
            q.clients.list.pop();
        }
        ran?;
        if !r.quiet {
            eprintln!(
                "dhcp: the server was not quiet {:.1} s after the step at {rate:.0}/s ({} late answers): the next step starts anyway",
                r.waited_ns as f64 / 1e9,
                r.late
            );
        }
        Ok(r)
    }

    fn measure(&mut self, load: &mut Paced, rate: f64, secs: f64) -> Result<Step> {
        self.steps += 1;
        let before = self.d.totals;
        let rcv = sock::Sock::rcvbuf_errors();
        let cpu0 = procstat::sample();
        // Hard bound: the window, the drain, and as much again.
        let deadline = self.d.now() + 2 * ((secs * 1e9) as u64 + self.args.drain_ms * 1_000_000) + 1_000_000_000;
        self.d.run(load, deadline)?;
        let cpu = procstat::busy(&cpu0, &procstat::sample());
        let frac = |a: u64, b: u64| if b == 0 { 0.0 } else { 1.0 - a as f64 / b as f64 };
        let mut lat = std::mem::take(&mut load.latency_us);
        Ok(Step {
            target: rate,
            offered: load.started as f64 / secs,
            secs,
            started: load.started,
            advertised: load.advertised,
            requested: load.requested,
            replied: load.replied,
            loss: if load.started == 0 { 1.0 } else { frac(load.replied, load.started) },
            sa_loss: frac(load.advertised, load.started),
            rr_loss: frac(load.replied, load.requested),
            lat: run::percentiles(&mut lat),
            during: self.d.totals.since(&before),
            rcvbuf_errors: sock::Sock::rcvbuf_errors().saturating_sub(rcv),
            cpu,
            after: Quieted::default(),
        })
    }

    /// Builds the population: passes of `Fill` until `fill_min` of it is bound or time
    /// runs out.
    fn populate(&mut self) -> Result<Clients> {
        let a = &self.args;
        let n = a.population.min(MAX_CLIENTS);
        let mut pop = Clients::new(n, 0, self.seed, self.next_client, a.mode);
        self.next_client = self.next_client.wrapping_add(n as u32);
        let started = self.d.now();
        let deadline = started + (a.fill_secs * 1e9) as u64;
        let mut passes = 0;
        let mut timed_out = 0;
        let bound = |p: &Clients| p.list.iter().filter(|c| c.phase == Phase::Bound).count();
        // Bounded: at most 5 passes, and the deadline.
        while passes < 5 && self.d.now() < deadline && bound(&pop) < n {
            passes += 1;
            let mut fill = Fill::new(&mut pop, a.fill_window, 1_000_000_000);
            self.d.run(&mut fill, deadline)?;
            timed_out += fill.timed_out;
        }
        let secs = (self.d.now() - started) as f64 / 1e9;
        let b = bound(&pop);
        Line::Population(lines::Population {
            wanted: n as u64,
            bound: b as u64,
            passes,
            timed_out,
            secs,
            rate: b as f64 / secs.max(1e-9),
        })
        .print();
        if (b as f64) < a.fill_min * n as f64 {
            bail!("only {b} of {n} clients got leases in {secs:.1} s ({timed_out} exchanges timed out)");
        }
        // Clients left without a lease would only add loss: renewals go round the bound ones.
        pop.list.retain(|c| c.phase == Phase::Bound);
        Ok(pop)
    }
}

pub fn dhcp(args: DhcpArgs) -> Result<()> {
    let seed = args.seed.unwrap_or_else(|| (crate::signal::monotonic_ns() / 1000) as u16);
    // Sleeps are for pacing: the default 50 µs timer slack would turn every wake-up at
    // 5,000-50,000 messages/s into a small burst.
    // SAFETY: a plain prctl on this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
    let sock = sock::Sock::open(&args.iface, args.rcvbuf)?;
    let mut g = Gen { d: Driver::new(sock), args, seed, next_client: 0, steps: 0 };
    let mut pop = if g.args.exchange == Exchange::Renew { Some(g.populate()?) } else { None };
    if pop.is_some() && g.args.settle_secs > 0.0 {
        // Bounded by the argument; answers still arriving meanwhile are the population's.
        std::thread::sleep(std::time::Duration::from_secs_f64(g.args.settle_secs.min(600.0)));
    }
    let mut cursor = 0usize;
    let max_loss = g.args.max_loss;
    let mut step = |g: &mut Gen, rate: f64| -> Result<Step> {
        let st = match pop.as_mut() {
            Some(p) => g.renew_step(p, &mut cursor, rate)?,
            None => g.sarr_step(rate)?,
        };
        st.line(st.pass(max_loss)).print();
        Ok(st)
    };
    if let Some(rate) = g.args.rate {
        for _ in 0..g.args.rate_runs.max(1) {
            step(&mut g, rate)?;
        }
    } else if let Some(path) = g.args.rates_from.clone() {
        use std::io::BufRead;
        let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // Bounded by the driver's input: the FIFO ends when the driver closes it (or dies).
        for line in std::io::BufReader::new(f).lines() {
            let line = line?;
            let rate: f64 = match line.trim().parse() {
                Ok(r) if r > 0.0 && r <= g.args.cap_pps => r,
                _ => bail!("{}: {line:?} is not a rate in (0, {}]", path.display(), g.args.cap_pps),
            };
            step(&mut g, rate)?;
        }
    } else {
        let mut hint = g.args.hint_pps;
        for _ in 0..g.args.searches.max(1) {
            let s = search(&mut g, hint, &mut step)?;
            Line::Search(s).print();
            if s.best_pps > 0.0 {
                hint = s.best_pps;
            }
        }
    }
    let t = g.d.totals;
    Line::Invalid(lines::Invalid { reasons: t.reasons() }).print();
    Line::Totals(lines::Totals {
        received: t.received,
        stale: t.stale,
        invalid: t.invalid_sum(),
        refused: t.refused,
        seed: g.seed,
    })
    .print();
    Ok(())
}

/// The bounded search of `gen` (`crate::search`) over this generator's steps.
fn search(g: &mut Gen, hint: f64, step: &mut impl FnMut(&mut Gen, f64) -> Result<Step>) -> Result<lines::Search> {
    let a = &g.args;
    let b = Bounds { hint, floor: 10.0, cap: a.cap_pps, max_steps: a.search_steps, precision: a.precision };
    let max_loss = a.max_loss;
    search::search(&b, |r| {
        let st = step(g, r)?;
        Ok(Outcome { pass: st.pass(max_loss), generator_short: st.short() && st.loss <= max_loss })
    })
}
