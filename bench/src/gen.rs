//! The Information-Request load generator: BPF_PROG_TEST_RUN of `bench_gen` in live-frames
//! mode on the generator's veth end (each repetition leaves as a distinct request through
//! XDP_TX), with `bench_sink` on the same end counting what comes back.

use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use aya::programs::{links::FdLink, ProgramError, TestRun, TestRunAttrs, TestRunOptions};
use aya::Ebpf;

use crate::object::{self, ethtool_stats, stat};
use crate::procstat;
use crate::search::{self, Bounds, Outcome};
use crate::signal;
use crate::template::{information_request, relayed_information_request, Template};

/// The request of `setup`'s kind with run tag `tag`.
fn template(setup: &GenSetup, tag: u8) -> Template {
    let make = if setup.relayed { relayed_information_request } else { information_request };
    make(setup.src_mac, setup.src_ip, &setup.vlans, tag)
}
use dhcpv6_bench_common::{
    lines::{Flat, GenStep, Search},
    maps::SinkCounters,
};

/// What a valid answer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Expect {
    /// A DHCPv6 Reply with this run's tag, checksum, options 23 and 24.
    Reply,
    /// The request itself, MACs swapped (the bare XDP_TX program).
    Echo,
    /// Nothing comes back (the generator's ceiling into a dropping program).
    None,
}

pub struct GenSetup {
    pub iface: String,
    pub src_mac: [u8; 6],
    pub src_ip: Ipv6Addr,
    pub vlans: Vec<u16>,
    pub expect: Expect,
    /// Frames per batch of the live-frames run (at most 256).
    pub batch: u32,
    /// Pacing in groups: the frames of this many microseconds go out back to back.
    pub coalesce_us: f64,
    /// The server end's NAPI kernel thread: SCHED_FIFO (priority 1) during fixed-rate
    /// steps, SCHED_OTHER while flooding (see `napi_policy`).
    pub napi_pid: Option<u32>,
    /// Attach the sink (else another process holds one on the interface; answers are not
    /// counted here).
    pub sink: bool,
    /// Send the requests as a lightweight relay would (`relayed_information_request`) and
    /// count Relay-Replies.
    pub relayed: bool,
}

pub struct Gen {
    ebpf: Ebpf,
    _sink: Option<FdLink>,
    setup: GenSetup,
    template: Template,
    md: [u8; 24],
    tag: u8,
    epoch: u64,
    /// BPF_PROG_TEST_RUN calls made and their total wall time, for the report.
    pub calls: u64,
    pub call_time: Duration,
}

/// The generator did not manage to offer the step's target rate.
pub fn short(s: &GenStep) -> bool {
    s.offered_pps < 0.98 * s.target_pps
}

pub struct SearchParams {
    pub hint_pps: f64,
    pub cap_pps: f64,
    pub max_steps: usize,
    pub step_secs: f64,
    pub drain: Duration,
    pub max_loss: f64,
    /// Stop when the gap between passing and failing rates is below this fraction.
    pub precision: f64,
}

impl Gen {
    pub fn new(obj: &std::path::Path, setup: GenSetup) -> Result<Gen> {
        let mut ebpf = object::load(obj)?;
        object::program(&mut ebpf, "bench_gen")?;
        let sink = if setup.sink { Some(object::attach(&mut ebpf, "bench_sink", &setup.iface)?) } else { None };
        let ifindex = object::ifindex(&setup.iface)?;
        let template = template(&setup, 0);
        let md = object::xdp_md(template.bytes.len(), ifindex);
        if setup.batch == 0 || setup.batch > 256 {
            bail!("--batch must be 1..=256");
        }
        signal::install_wakeup()?;
        let mut g =
            Gen { ebpf, _sink: sink, setup, template, md, tag: 0, epoch: 0, calls: 0, call_time: Duration::ZERO };
        g.next_tag()?;
        Ok(g)
    }

    /// A new run tag (transaction id byte 0): answers to earlier steps count as stale.
    fn next_tag(&mut self) -> Result<()> {
        self.tag = if self.tag == 255 { 1 } else { self.tag + 1 };
        let s = &self.setup;
        self.template = template(s, self.tag);
        object::set_sink_tag(&mut self.ebpf, self.tag, s.relayed)?;
        Ok(())
    }

    /// Up to `n` repetitions of the generator program (each sends or, outside the window
    /// or ahead of the pace, drops). Ok(false) when SIGUSR1 (the window's timer) ended it.
    fn run(&mut self, n: u32, batch: u32) -> Result<bool> {
        let prog = object::program(&mut self.ebpf, "bench_gen")?;
        let t = Instant::now();
        let r = prog.test_run(TestRunOptions {
            data_in: Some(&self.template.bytes),
            ctx_in: Some(&self.md),
            repeat: n,
            attrs: TestRunAttrs::new().xdp_live_frames(batch),
            ..TestRunOptions::default()
        });
        self.call_time += t.elapsed();
        self.calls += 1;
        match r {
            Ok(_) => Ok(true),
            Err(ProgramError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EINTR) => {
                signal::check()?;
                Ok(false)
            }
            Err(e) => Err(anyhow::Error::from(e)).context(run_hint(&self.setup.iface)),
        }
    }

    /// One window of `secs`: flat out (`pps` None) or paced. Returns frames sent and the
    /// window's length. One long test_run call covers the window; a timer thread ends it
    /// with SIGUSR1 just after the window closes (the program stops sending on its own).
    fn window(&mut self, pps: Option<f64>, secs: f64) -> Result<(u64, f64)> {
        self.epoch += 1;
        let start = signal::monotonic_ns() + 30_000_000;
        let len_ns = (secs * 1e9) as u64;
        let end = start + len_ns;
        let mut cfg = self.template.config();
        cfg.t_start_ns = start;
        cfg.t_end_ns = end;
        cfg.interval_ps = pps.map_or(0, |r| (1e12 / r.max(1.0)) as u64);
        // Catch up after a stall (the generator CPU is shared with whatever else runs) of up
        // to half a millisecond, at most 128 frames (the veth ring holds 256).
        cfg.burst = pps.map_or(8, |r| (r * 0.0005).clamp(8.0, 128.0) as u32);
        // Groups of what `coalesce_us` of the rate holds (1..=32 frames).
        cfg.group = pps.map_or(1, |r| (r * self.setup.coalesce_us * 1e-6).clamp(1.0, 32.0) as u32);
        // Live-frames mode hands its frames over (xdp_do_flush) once per batch; a paced
        // batch lasts as long as its frames' schedule, so a batch of 64 would reach the
        // server as a burst of 64 every 64 intervals. One batch per group instead.
        let batch = if pps.is_some() { cfg.group } else { self.setup.batch };
        cfg.epoch = self.epoch;
        object::set_gen_config(&mut self.ebpf, &cfg)?;
        let s0 = object::gen_state(&self.ebpf)?;

        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let done = Arc::new(AtomicBool::new(false));
        let timer = {
            let done = done.clone();
            std::thread::spawn(move || {
                let wake = end + 2_000_000;
                loop {
                    let now = signal::monotonic_ns();
                    if now >= wake {
                        break;
                    }
                    std::thread::sleep(Duration::from_nanos((wake - now).min(20_000_000)));
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                }
                // Repeated: a signal that lands just before the call starts is not lost.
                while !done.load(Ordering::SeqCst) {
                    // SAFETY: `me` is the generating thread, which outlives this one (joined).
                    unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        // Bound per call: far more repetitions than the window can take; a call that ends
        // early (a faster machine) is followed by another.
        let bound = ((secs + 0.5) * 40e6).min(f64::from(u32::MAX)) as u32;
        let result = loop {
            match self.run(bound, batch) {
                Ok(true) if signal::monotonic_ns() < end => continue,
                Ok(_) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        done.store(true, Ordering::SeqCst);
        let _ = timer.join();
        result?;
        let s1 = object::gen_state(&self.ebpf)?;
        // The window as it was used: a call that started late (its set-up takes ~10 ms)
        // shortens it, and the rate is taken over what was left.
        let from = if s1.first_ns > start { s1.first_ns } else { start };
        let used = end.saturating_sub(from).max(1);
        Ok((s1.sent - s0.sent, used as f64 / 1e9))
    }

    pub fn sink(&self) -> Result<SinkCounters> {
        object::sink_counters(&self.ebpf)
    }

    fn xmit_errors(&self) -> u64 {
        ethtool_stats(&self.setup.iface).map(|s| stat(&s, "tx_queue_0_xdp_xmit_errors")).unwrap_or(0)
    }

    fn answered(&self, c: &SinkCounters) -> u64 {
        match self.setup.expect {
            Expect::Reply => c.valid,
            Expect::Echo => c.echo_valid,
            Expect::None => 0,
        }
    }

    fn stale(c: &SinkCounters) -> u64 {
        c.stale + c.echo_stale
    }

    /// The server end's NAPI thread gets the priority softirq work has on a real box while
    /// the load is sustainable (SCHED_FIFO 1: an incidental CFS task, ksoftirqd for the
    /// answers included, cannot hold it off for a time slice of milliseconds, which the
    /// 256-frame veth ring does not absorb), and shares its CPU fairly under a flood
    /// (SCHED_OTHER, like ksoftirqd taking over on a real box), where FIFO would leave a
    /// userspace server on that CPU only the 5 % RT throttling spares.
    fn napi_policy(&self, fifo: bool) -> Result<()> {
        let Some(pid) = self.setup.napi_pid else { return Ok(()) };
        let (policy, prio) = if fifo { (libc::SCHED_FIFO, 1) } else { (libc::SCHED_OTHER, 0) };
        let param = libc::sched_param { sched_priority: prio };
        // SAFETY: a valid sched_param; the PID names the NAPI thread xtask created and pinned.
        if unsafe { libc::sched_setscheduler(pid as libc::pid_t, policy, &param) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setting the scheduling policy of NAPI thread {pid}"));
        }
        Ok(())
    }

    /// The server end's NAPI thread's run_delay so far (None without `--napi-pid`).
    fn napi_wait_ns(&self) -> Option<u64> {
        procstat::run_delay_ns(self.setup.napi_pid?)
    }

    /// As fast as the generator goes for `secs` (after `warmup` seconds not counted):
    /// offered and answered rates.
    pub fn flat(&mut self, warmup: f64, secs: f64, drain: Duration) -> Result<Flat> {
        self.napi_policy(false)?;
        self.next_tag()?;
        if warmup > 0.0 {
            self.window(None, warmup)?;
        }
        let (c0, e0) = (self.sink()?, self.xmit_errors());
        let p0 = procstat::sample();
        let (sent, el) = self.window(None, secs)?;
        let cpu_busy = procstat::busy(&p0, &procstat::sample());
        sleep(drain)?;
        let c1 = self.sink()?;
        let e1 = self.xmit_errors();
        let replies = self.answered(&c1) - self.answered(&c0);
        Ok(Flat {
            secs: el,
            sent,
            offered_pps: sent as f64 / el,
            replies,
            replies_pps: replies as f64 / el,
            invalid: c1.invalid() - c0.invalid(),
            stale: Self::stale(&c1) - Self::stale(&c0),
            xmit_errors: e1.saturating_sub(e0),
            cpu_busy,
        })
    }

    /// Waits (at most `max`) until no answer has arrived for 200 ms: a server flooded by
    /// the flat-out window may still be working through its socket's backlog, which would
    /// crowd out the first fixed-rate step's requests.
    pub fn settle(&self, max: Duration) -> Result<()> {
        let end = Instant::now() + max;
        let mut last = self.sink()?.frames;
        let mut quiet = 0;
        while quiet < 2 && Instant::now() < end {
            sleep(Duration::from_millis(100))?;
            let now = self.sink()?.frames;
            quiet = if now == last { quiet + 1 } else { 0 };
            last = now;
        }
        Ok(())
    }

    /// `pps` for `secs`, paced per frame by the program; loss after `drain`. The step
    /// passes with at most `max_loss` loss at the rate it was to offer.
    pub fn step(&mut self, pps: f64, secs: f64, drain: Duration, max_loss: f64) -> Result<GenStep> {
        self.napi_policy(true)?;
        self.next_tag()?;
        let (c0, e0) = (self.sink()?, self.xmit_errors());
        let (u0, w0) = (procstat::sample_user(), self.napi_wait_ns());
        let (sent, el) = self.window(Some(pps), secs)?;
        let (u1, w1) = (procstat::sample_user(), self.napi_wait_ns());
        sleep(drain)?;
        let c1 = self.sink()?;
        let e1 = self.xmit_errors();
        let replies = self.answered(&c1) - self.answered(&c0);
        let loss = if sent == 0 { 1.0 } else { 1.0 - replies as f64 / sent as f64 };
        let mut st = GenStep {
            target_pps: pps,
            secs: el,
            sent,
            offered_pps: sent as f64 / el,
            replies,
            invalid: c1.invalid() - c0.invalid(),
            stale: Self::stale(&c1) - Self::stale(&c0),
            xmit_errors: e1.saturating_sub(e0),
            loss,
            pass: false,
            cpu_user: procstat::busy(&u0, &u1),
            napi_wait_ms: w0.zip(w1).map(|(a, b)| b.saturating_sub(a) as f64 / 1e6),
        };
        st.pass = loss <= max_loss && !short(&st);
        Ok(st)
    }

    /// The bounded search (`crate::search`) for the highest rate with at most `max_loss`
    /// loss. `report` sees every step.
    pub fn search(&mut self, p: &SearchParams, mut report: impl FnMut(&GenStep)) -> Result<Search> {
        let b =
            Bounds { hint: p.hint_pps, floor: 100.0, cap: p.cap_pps, max_steps: p.max_steps, precision: p.precision };
        search::search(&b, |r| {
            let st = self.step(r, p.step_secs, p.drain, p.max_loss)?;
            report(&st);
            // Answered all it got, but the generator could not offer the rate.
            Ok(Outcome { pass: st.pass, generator_short: short(&st) && st.loss <= p.max_loss })
        })
    }
}

fn run_hint(iface: &str) -> String {
    format!(
        "BPF_PROG_TEST_RUN (live frames) on {iface} failed; the server's end needs an XDP \
         program for XDP_TX to reach it"
    )
}

/// Sleeps `d`, returning early with an error on SIGINT/SIGTERM.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        signal::check()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}
