//! `dhcpv6-bench storm`: a boot storm after a power cut. N CPEs (distinct MACs and
//! DUID-LLs) start within SOL_MAX_DELAY, each Solicit with IA_NA + IA_PD + ORO,
//! Advertise, Request, Reply on RFC 9915's timers (`cpe`, `timing`); odd CPEs sit behind
//! one relay (Relay-Forward from UDP/547 of this interface's link-local address, the
//! CPE's link-local as peer-address, an Interface-ID), even ones speak directly from
//! UDP/546. Once a CPE is bound its LAN host asks one Information-Request the same way.
//! One thread, one timer wheel, memory proportional to N.
//!
//! Output (`dhcpv6_bench_common::lines`): `storm_tick` about once a second, then `storm`.
//! `--bound-out FILE` lists every bound CPE's leases (DUID, address, prefix) for the check
//! against the server's store.

mod cpe;
mod relay;
mod timing;
mod wheel;

use std::net::Ipv6Addr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use dhcpv6_bench_common::lines::{self, Line};

use crate::stateful::client::Servers;
use crate::stateful::msg::{Invalid, MAX_OUT};
use crate::stateful::sock::{Inbox, Outbox, Sock, BATCH};
use crate::{procstat, signal};
use cpe::{Kind, Population, Send};
use timing::NS;
use wheel::Wheel;

#[derive(clap::Args, Debug)]
pub struct StormArgs {
    /// The generator's interface (both sockets are bound to it).
    #[arg(long)]
    pub iface: String,
    #[arg(long, default_value_t = 100_000)]
    pub cpes: usize,
    /// The storm stops here and reports what it reached.
    #[arg(long, default_value_t = 600.0)]
    pub max_secs: f64,
    /// The relay's link-address (selects the relayed link's pools by prefix).
    #[arg(long, default_value = "2001:db8:2::1")]
    pub link_address: Ipv6Addr,
    /// The relay's Interface-ID (selects a `[[link]]` by name).
    #[arg(long, default_value = "storm-relay")]
    pub interface_id: String,
    /// The server's PID: its CPU time over the storm and its peak RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Where to write the bound CPEs' leases (`DUID-hex lease` lines).
    #[arg(long)]
    pub bound_out: Option<PathBuf>,
    /// Part of every MAC and DUID (default: from the clock).
    #[arg(long)]
    pub seed: Option<u16>,
    /// Each socket's receive buffer (bytes).
    #[arg(long, default_value_t = 64 << 20)]
    pub rcvbuf: usize,
    /// Points of the bound-over-time series per second.
    #[arg(long, default_value_t = 10)]
    pub samples_per_sec: u32,
}

/// Timers fired per round before the sockets are read again.
const FIRE_LIMIT: usize = 4 * BATCH;
const RECV_ROUNDS: usize = 8;

struct Io {
    direct: Sock,
    relay: Sock,
    out_direct: Outbox,
    out_relay: Outbox,
    inbox: Inbox,
    refused: u64,
    link: Ipv6Addr,
    ifid: Vec<u8>,
    scratch: [u8; MAX_OUT],
}

impl Io {
    /// Queues `s` on the socket of its client's side, sending a full batch first.
    fn queue(&mut self, pop: &mut Population, s: Send, now: u64, servers: &Servers) -> Result<()> {
        let relayed = cpe::relayed(s.index);
        let out = if relayed { &mut self.out_relay } else { &mut self.out_direct };
        if out.full() {
            let sock = if relayed { &self.relay } else { &self.direct };
            self.refused += sock.send(out)?.1 as u64;
        }
        let n = pop.encode(s, now, servers, &mut self.scratch);
        if n == 0 {
            pop.counts.unsendable += 1;
            return Ok(());
        }
        let scratch = &self.scratch[..n];
        if relayed {
            let peer = cpe::link_local(cpe::mac(s.kind == Kind::InfoRequest, pop.seed, s.index));
            let (link, ifid) = (self.link, &self.ifid);
            let mut bad = false;
            self.out_relay.push(|buf| match relay::forward(scratch, link, peer, ifid, buf) {
                Ok(len) => len,
                Err(_) => {
                    bad = true;
                    0
                }
            });
            if bad {
                pop.counts.unsendable += 1;
            }
        } else {
            self.out_direct.push(|buf| {
                buf[..n].copy_from_slice(scratch);
                n
            });
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.refused += self.direct.send(&mut self.out_direct)?.1 as u64;
        self.refused += self.relay.send(&mut self.out_relay)?.1 as u64;
        Ok(())
    }

    /// Sleeps until either socket is readable or `timeout_ns` passed.
    fn wait(&self, timeout_ns: u64) {
        let mut p = [
            libc::pollfd { fd: self.direct.raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.relay.raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let ts = libc::timespec { tv_sec: 0, tv_nsec: timeout_ns.min(999_999_999) as _ };
        // SAFETY: two pollfds, a valid timespec, no signal mask change.
        unsafe { libc::ppoll(p.as_mut_ptr(), 2, &ts, std::ptr::null()) };
    }
}

/// How late timers fire: a histogram of 1 ms buckets up to 10 s (later ones in the last).
struct Lateness {
    buckets: Vec<u64>,
    max_ns: u64,
}

impl Default for Lateness {
    fn default() -> Self {
        Lateness { buckets: vec![0; 10_001], max_ns: 0 }
    }
}

impl Lateness {
    fn note(&mut self, ns: u64) {
        let b = ((ns / 1_000_000) as usize).min(self.buckets.len() - 1);
        self.buckets[b] += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// The 99th percentile, to the bucket's upper edge (ms).
    fn p99_ms(&self) -> f64 {
        let n: u64 = self.buckets.iter().sum();
        let want = n - n / 100;
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= want && n > 0 {
                return (i + 1) as f64;
            }
        }
        0.0
    }
}

/// CPU seconds (user + system) this process used so far.
fn own_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

pub fn storm(a: StormArgs) -> Result<()> {
    let seed = a.seed.unwrap_or_else(|| (signal::monotonic_ns() / 1000) as u16);
    let mut io = Io {
        direct: Sock::open(&a.iface, a.rcvbuf)?,
        relay: Sock::open_port(&a.iface, a.rcvbuf, 547).context("the relay's socket")?,
        out_direct: Outbox::default(),
        out_relay: Outbox::default(),
        inbox: Inbox::default(),
        refused: 0,
        link: a.link_address,
        ifid: a.interface_id.clone().into_bytes(),
        scratch: [0u8; MAX_OUT],
    };
    let epoch = std::time::Instant::now();
    let now = || epoch.elapsed().as_nanos() as u64;
    // The storm starts a little after the set-up, so the first slot of the wheel is not late.
    let start = now() + 10_000_000;
    let mut pop = Population::new(a.cpes, seed, start);
    let n = pop.n();
    let mut wheel = Wheel::new(start);
    for i in 0..n {
        wheel.arm(i as u32, pop.cpes[i].due);
    }
    let mut servers = Servers::default();
    let deadline = start + (a.max_secs * NS as f64) as u64;
    let step_ns = NS / u64::from(a.samples_per_sec.max(1));
    let (mut series_bound, mut series_inf) = (Vec::new(), Vec::new());
    let mut next_sample = start;
    let mut next_tick = start + NS;
    let rcv0 = Sock::rcvbuf_errors();
    let cpu0 = own_cpu_s();
    let busy0 = procstat::sample();
    let srv0 = a.server_pid.and_then(procstat::proc_cpu_s);
    let mut fired = Vec::with_capacity(FIRE_LIMIT);
    let mut late = Lateness::default();
    let mut invalid = [0u64; Invalid::ALL.len()];
    // Bounded by `deadline`: every round reads the clock.
    let end = loop {
        signal::check()?;
        let t = now();
        while t >= next_sample {
            series_bound.push(pop.bound_at.len() as u64);
            series_inf.push(pop.inf_at.len() as u64);
            next_sample += step_ns;
        }
        if t >= next_tick {
            next_tick += NS;
            let secs = t.saturating_sub(start) as f64 / 1e9;
            Line::StormTick(lines::StormTick {
                secs,
                bound: pop.bound_at.len() as u64,
                informed: pop.inf_at.len() as u64,
            })
            .print();
        }
        if pop.finished() || t >= deadline {
            break if pop.finished() { pop.bound_at.iter().chain(&pop.inf_at).copied().max().unwrap_or(t) } else { t };
        }
        fired.clear();
        wheel.expire(t, FIRE_LIMIT, |id| pop.due(id), &mut fired);
        let busy = !fired.is_empty();
        for &id in &fired {
            // An id armed twice for one slot fires once: the first firing moved its due and
            // armed it again.
            let due = pop.due(id);
            if due > t {
                continue;
            }
            late.note(t - due);
            if let Some(s) = pop.fire(id, t) {
                io.queue(&mut pop, s, t, &servers)?;
            }
            let d = pop.due(id);
            if d != u64::MAX {
                wheel.arm(id, d);
            }
        }
        io.flush()?;
        let mut got_any = false;
        for round in 0..RECV_ROUNDS {
            let mut got = 0;
            for from_relay in [false, true] {
                let sock = if from_relay { &io.relay } else { &io.direct };
                let k = sock.recv(&mut io.inbox)?;
                got += k;
                for j in 0..k {
                    let t = now();
                    let data = io.inbox.get(j);
                    let unwrapped = if from_relay {
                        relay::unwrap_reply(data).map(|(peer, m)| (Some(peer), m)).map_err(|_| Invalid::Malformed)
                    } else {
                        Ok((None, data))
                    };
                    // Copied out: the reply may queue a Request, which needs `io` mutably.
                    let mut msgbuf = [0u8; 1500];
                    let res = unwrapped.and_then(|(peer, m)| {
                        let len = m.len().min(msgbuf.len());
                        msgbuf[..len].copy_from_slice(&m[..len]);
                        pop.answer(&msgbuf[..len], peer, t, &mut servers)
                    });
                    match res {
                        Ok((timer, send)) => {
                            if let Some(s) = send {
                                io.queue(&mut pop, s, t, &servers)?;
                            }
                            if let Some(id) = timer {
                                let d = pop.due(id);
                                if d != u64::MAX {
                                    wheel.arm(id, d);
                                }
                            }
                        }
                        Err(e) => invalid[e.index()] += 1,
                    }
                }
            }
            got_any |= got > 0;
            if got == 0 || round + 1 == RECV_ROUNDS {
                break;
            }
        }
        io.flush()?;
        if !busy && !got_any {
            let t = now();
            let wait = wheel.next_tick_ns().saturating_sub(t).clamp(50_000, 1_000_000);
            io.wait(wait);
        }
    };
    let wall = end.saturating_sub(start).max(1) as f64 / 1e9;
    let cpu_busy = procstat::busy(&busy0, &procstat::sample());
    let cpu_share = (own_cpu_s() - cpu0) / (now().saturating_sub(start).max(1) as f64 / 1e9);
    let server_cpu_s = a.server_pid.and_then(procstat::proc_cpu_s).zip(srv0).map(|(b, a)| b - a);
    let server_peak_rss_kb = a.server_pid.and_then(procstat::peak_rss_kb);
    if let Some(path) = &a.bound_out {
        std::fs::write(path, pop.bound_leases()).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut bound_at = pop.bound_at.clone();
    bound_at.sort_unstable();
    let at = |share: f64| {
        let k = ((share * n as f64).ceil() as usize).max(1);
        bound_at.get(k - 1).map(|t| t.saturating_sub(start) as f64 / 1e9)
    };
    let inf_t100_s = (pop.inf_at.len() == n)
        .then(|| pop.inf_at.iter().max().map(|t| t.saturating_sub(start) as f64 / 1e9))
        .flatten();
    let k = &pop.counts;
    let msgs: u64 = pop.cpes.iter().map(|c| u64::from(c.sent)).sum();
    let rcvbuf_errors = Sock::rcvbuf_errors().saturating_sub(rcv0);
    let mut reasons = std::collections::BTreeMap::new();
    for r in Invalid::ALL {
        reasons.insert(r.name().to_string(), invalid[r.index()]);
    }
    Line::Storm(Box::new(lines::Storm {
        cpes: n as u64,
        relayed: (0..n).filter(|&i| cpe::relayed(i)).count() as u64,
        secs: wall,
        timed_out: !pop.finished(),
        bound: pop.bound_at.len() as u64,
        informed: pop.inf_at.len() as u64,
        t50_s: at(0.5),
        t99_s: at(0.99),
        t100_s: at(1.0),
        inf_t100_s,
        solicits: k.solicits,
        requests: k.requests,
        inf_requests: k.inf_requests,
        retransmissions: k.retransmissions,
        msgs_per_cpe: msgs as f64 / n.max(1) as f64,
        msgs_per_cpe_max: pop.cpes.iter().map(|c| u64::from(c.sent)).max().unwrap_or(0),
        request_failures: k.request_failures,
        never_bound: (n - pop.bound_at.len()) as u64,
        inf_unanswered: (n - pop.inf_at.len()) as u64,
        stale: k.stale,
        invalid: invalid.iter().sum(),
        reasons,
        bad_relay: k.bad_relay,
        refused: io.refused + k.unsendable,
        gen_rcvbuf_errors: rcvbuf_errors,
        gen_cpu_share: cpu_share,
        generator_bound: cpu_share >= 0.95 || late.p99_ms() > 100.0 || io.refused > 0 || rcvbuf_errors > 0,
        late_p99_ms: late.p99_ms(),
        late_max_ms: late.max_ns as f64 / 1e6,
        cpu_busy,
        server_cpu_s,
        server_peak_rss_kb,
        sol_max_rt: k.sol_max_rt,
        series_step_s: step_ns as f64 / 1e9,
        series_bound,
        series_informed: series_inf,
    }))
    .print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Lateness;

    #[test]
    fn lateness_percentile_and_max() {
        let mut l = Lateness::default();
        assert_eq!(l.p99_ms(), 0.0);
        for _ in 0..990 {
            l.note(300_000);
        }
        for _ in 0..10 {
            l.note(250_000_000);
        }
        assert_eq!(l.p99_ms(), 1.0);
        l.note(20_000_000_000);
        assert_eq!(l.p99_ms(), 251.0);
        assert_eq!(l.max_ns, 20_000_000_000);
    }
}
