//! The generator's loop: send what is due, read what came back, answer Advertises with
//! Requests at once (as a client does), count. Two kinds of load run in it: `Paced` (new
//! clients' Solicits, or bound clients' Renews, evenly spaced at a fixed rate over a
//! window, then a drain) and `Fill` (building a population with a bounded number of
//! exchanges in flight, which adapts to whatever rate the server sustains).

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::Result;

use super::client::{Clients, Outcome, Phase, Servers};
use super::msg::{self, Invalid};
use super::sock::{Inbox, Outbox, Sock, BATCH};
use crate::signal;

/// Longest sleep of the loop when nothing is due (the drain, the population's window).
const IDLE_WAIT_NS: u64 = 1_000_000;
/// Below this the loop spins instead of sleeping: ppoll's wake-up is coarser than this.
const MIN_WAIT_NS: u64 = 20_000;
/// Receive batches read before the next sends, at most.
const RECV_ROUNDS: usize = 8;

/// What the driver counts whatever the load: answers it could not use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub invalid: [u64; Invalid::ALL.len()],
    pub stale: u64,
    pub received: u64,
    /// Messages the socket refused (EAGAIN/ENOBUFS): the generator's loss, not the server's.
    pub refused: u64,
}

impl Totals {
    pub fn invalid_sum(&self) -> u64 {
        self.invalid.iter().sum()
    }

    pub fn since(&self, a: &Totals) -> Totals {
        let mut d = *self;
        for (x, y) in d.invalid.iter_mut().zip(a.invalid) {
            *x -= y;
        }
        d.stale -= a.stale;
        d.received -= a.received;
        d.refused -= a.refused;
        d
    }

    /// Invalid answers by reason, every reason named (zeros included).
    pub fn reasons(&self) -> std::collections::BTreeMap<String, u64> {
        Invalid::ALL.iter().map(|r| (r.name().to_string(), self.invalid[r.index()])).collect()
    }
}

/// One kind of load, driven by `Driver::run`.
pub trait Load {
    fn clients(&mut self) -> &mut Clients;
    /// Writes the messages due by `now` (as many as `out` holds).
    fn send_due(&mut self, now: u64, out: &mut Outbox, servers: &Servers);
    /// A valid answer's effect; an Advertise's Request goes into `out` (never full here).
    fn answered(&mut self, o: Outcome, now: u64, out: &mut Outbox, servers: &Servers);
    /// When the next message is due, if one is still to come.
    fn next_due(&self, now: u64) -> Option<u64>;
    fn over(&self, now: u64) -> bool;
    /// The least time between two rounds while the socket is drained (0: none, wake for
    /// each answer).
    fn coalesce_ns(&self) -> u64 {
        0
    }
    /// `n` datagrams came in at `now`, whatever they were (valid, stale or invalid).
    fn heard(&mut self, _now: u64, _n: u64) {}
}

pub struct Driver {
    sock: Sock,
    out: Outbox,
    inbox: Inbox,
    pub servers: Servers,
    epoch: Instant,
    pub totals: Totals,
    /// When the last datagram came in (ns on `now`'s clock; 0: none yet).
    pub last_rx: u64,
}

impl Driver {
    pub fn new(sock: Sock) -> Driver {
        Driver {
            sock,
            out: Outbox::default(),
            inbox: Inbox::default(),
            servers: Servers::default(),
            epoch: Instant::now(),
            totals: Totals::default(),
            last_rx: 0,
        }
    }

    /// ns since the driver was made (every timestamp of a run uses this clock).
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Runs `load` until it is over or `deadline` (ns, the hard bound) passes.
    pub fn run(&mut self, load: &mut impl Load, deadline: u64) -> Result<()> {
        let Driver { sock, out, inbox, servers, totals, last_rx, .. } = self;
        let epoch = self.epoch;
        let now = || epoch.elapsed().as_nanos() as u64;
        let coalesce = load.coalesce_ns();
        // Bounded by `deadline`: every round reads the clock.
        loop {
            signal::check()?;
            let t = now();
            if t >= deadline || load.over(t) {
                return Ok(());
            }
            load.send_due(t, out, servers);
            let sent = out.len();
            totals.refused += sock.send(out)?.1 as u64;
            // Everything waiting first (a few batches at most): an exchange brings two answers
            // per message sent, and answers left queued would be late or dropped at our end.
            let mut got_any = false;
            let mut full = false;
            for _ in 0..RECV_ROUNDS {
                let got = sock.recv(inbox)?;
                if got == 0 {
                    full = false;
                    break;
                }
                full = got == BATCH;
                got_any = true;
                totals.received += got as u64;
                *last_rx = now();
                load.heard(*last_rx, got as u64);
                for i in 0..got {
                    let t = now();
                    let res = msg::parse(inbox.get(i)).and_then(|p| load.clients().answer(&p, t, servers));
                    match res {
                        Ok(Outcome::Stale) => totals.stale += 1,
                        Ok(o) => {
                            if out.full() {
                                totals.refused += sock.send(out)?.1 as u64;
                            }
                            load.answered(o, t, out, servers);
                        }
                        Err(e) => totals.invalid[e.index()] += 1,
                    }
                }
                if got < BATCH {
                    // Less than a batch: the socket was empty, another read would only say
                    // EAGAIN (a syscall per round saved).
                    break;
                }
            }
            totals.refused += sock.send(out)?.1 as u64;
            if coalesce > 0 && !full {
                let t = now();
                // Not past the load's end: the drain's early stop is seen within a round.
                sleep_ns(coalesce.min(deadline.saturating_sub(t)));
            } else if !got_any && sent == 0 {
                let t = now();
                let wait = load.next_due(t).map_or(IDLE_WAIT_NS, |d| d.saturating_sub(t)).min(IDLE_WAIT_NS);
                if wait >= MIN_WAIT_NS {
                    sock.wait(wait.min(deadline.saturating_sub(t)));
                }
            }
        }
    }
}

/// Sleeps `ns` (a signal ends it early; the caller's loop checks for a stop).
fn sleep_ns(ns: u64) {
    let ts = libc::timespec { tv_sec: (ns / 1_000_000_000) as _, tv_nsec: (ns % 1_000_000_000) as _ };
    // SAFETY: a valid timespec; no remainder wanted.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &ts, std::ptr::null_mut()) };
}

/// New clients' Solicits (`renew` false) or bound clients' Renews at a fixed rate over
/// `[start, end)`, then answers awaited until `drain_end`.
pub struct Paced<'c> {
    pub clients: &'c mut Clients,
    renew: bool,
    /// The first client of the window (renewals go round the population from here).
    first: usize,
    /// Clients to start at most.
    count: usize,
    start: u64,
    end: u64,
    drain_end: u64,
    per_ns: f64,
    pub started: u64,
    pub advertised: u64,
    pub requested: u64,
    pub replied: u64,
    pub latency_us: Vec<u32>,
    /// `Load::coalesce_ns` (0 unless set with `coalescing`).
    coalesce_ns: u64,
}

impl<'c> Paced<'c> {
    pub fn new(
        clients: &'c mut Clients,
        renew: bool,
        first: usize,
        rate: f64,
        start: u64,
        secs: f64,
        drain_ns: u64,
    ) -> Paced<'c> {
        let n = clients.list.len();
        let end = start + (secs * 1e9) as u64;
        let want = (rate * secs).ceil() as usize;
        Paced {
            clients,
            renew,
            first,
            count: want.min(n),
            start,
            end,
            drain_end: end + drain_ns,
            per_ns: rate / 1e9,
            started: 0,
            advertised: 0,
            requested: 0,
            replied: 0,
            latency_us: Vec::with_capacity(want.min(n)),
            coalesce_ns: 0,
        }
    }

    /// Rounds at least `ns` apart while the socket holds less than a batch (0: a round per
    /// answer): what fell due meanwhile goes out in one sendmmsg, and the answers that came
    /// in are read with one recvmmsg. Woken by every answer instead, the generator spent half
    /// of its CPU switching in and out against a server answering from two workers, CPU that
    /// the worker sharing its CPU then lacks (docs/benchmarks.md, `cores` rows: 50 µs, far
    /// below the exchanges' own latency). Not the default: the rows checked against
    /// perfdhcp keep the generator that check was made with.
    pub fn coalescing(mut self, ns: u64) -> Self {
        self.coalesce_ns = ns;
        self
    }

    /// Renewals the window awaited in vain: their clients are bound again (the server still
    /// holds their leases), ready for a later step.
    pub fn settle(&mut self) {
        let n = self.clients.list.len();
        for k in 0..self.started as usize {
            if let Some(c) = self.clients.list.get_mut((self.first + k) % n.max(1)) {
                if c.phase == Phase::Renewing {
                    c.phase = Phase::Bound;
                }
            }
        }
    }
}

impl Load for Paced<'_> {
    fn clients(&mut self) -> &mut Clients {
        self.clients
    }

    fn send_due(&mut self, now: u64, out: &mut Outbox, servers: &Servers) {
        if now < self.start || now >= self.end {
            return;
        }
        let due = (((now - self.start) as f64 * self.per_ns) as usize + 1).min(self.count) as u64;
        let n = self.clients.list.len().max(1);
        let to = if self.renew { Phase::Renewing } else { Phase::Soliciting };
        while self.started < due && !out.full() {
            let i = (self.first + self.started as usize) % n;
            let clients = &mut *self.clients;
            out.push(|b| clients.message(i, to, now, servers, b));
            self.started += 1;
        }
    }

    fn answered(&mut self, o: Outcome, now: u64, out: &mut Outbox, servers: &Servers) {
        match o {
            Outcome::Advertised(i) => {
                self.advertised += 1;
                let clients = &mut *self.clients;
                if out.push(|b| clients.message(i, Phase::Requesting, now, servers, b)) {
                    self.requested += 1;
                }
            }
            Outcome::Replied { latency_ns, .. } => {
                self.replied += 1;
                self.latency_us.push((latency_ns / 1000).min(u64::from(u32::MAX)) as u32);
            }
            Outcome::Stale => {}
        }
    }

    fn next_due(&self, _now: u64) -> Option<u64> {
        if self.started as usize >= self.count {
            return None;
        }
        Some(self.start + (self.started as f64 / self.per_ns.max(1e-12)) as u64)
    }

    fn over(&self, now: u64) -> bool {
        // Everything answered: the drain need not wait.
        now >= self.drain_end || (now >= self.end && self.replied == self.started)
    }

    fn coalesce_ns(&self) -> u64 {
        self.coalesce_ns
    }
}

/// The wait between two steps until the server has gone quiet. A server pushed past what it
/// sustains holds seconds of work in its queues and answers it after the step's drain; a step
/// started meanwhile would be measured against that backlog too, and a search's result would
/// then depend on its path (docs/benchmarks.md, "Why a search's result spreads"). Silence
/// alone does not show an empty queue: dhcpv6d went silent for 250 ms at the end of a failed
/// step's drain and still failed the next step at a rate it had passed fresh (its queue was
/// being worked off or shed without answers). So the wait also sends a probe, one Solicit
/// of a client of its own, which comes out of the server's receive queue only behind what
/// is queued ahead of it; a probe unanswered for `quiet_ns` is sent again (the server may
/// have dropped or shed it). The wait ends once a probe has been answered and no datagram
/// came for `quiet_ns`, or at `max_ns` (a server that never goes quiet does not stop the
/// run; the step says so).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuietWait {
    start: u64,
    last_heard: u64,
    quiet_ns: u64,
    max_ns: u64,
    /// Datagrams that came in during the wait, the probes' answers included.
    heard: u64,
    probes: u64,
    probe_answers: u64,
    /// When the probe awaited went out; `None`: none is out, or the last was answered.
    probe_out: Option<u64>,
    answered: bool,
}

/// How a `QuietWait` ended.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quieted {
    pub waited_ns: u64,
    /// Datagrams other than the probes' answers (after the step's drain: the step counted
    /// them lost).
    pub late: u64,
    pub probes: u64,
    /// False: `max_ns` passed before a probe was answered and answers stopped.
    pub quiet: bool,
}

impl QuietWait {
    /// A wait starting at `start`, the last datagram having come at `last_heard`; with
    /// `quiet_ns` 0 there is none.
    pub fn new(start: u64, last_heard: u64, quiet_ns: u64, max_ns: u64) -> QuietWait {
        QuietWait {
            start,
            last_heard: last_heard.min(start),
            quiet_ns,
            max_ns,
            heard: 0,
            probes: 0,
            probe_answers: 0,
            probe_out: None,
            answered: false,
        }
    }

    /// No probe can be sent (no room for its client): silence is all there is to wait for.
    pub fn without_probe(mut self) -> QuietWait {
        self.answered = true;
        self
    }

    pub fn heard(&mut self, now: u64, n: u64) {
        self.last_heard = self.last_heard.max(now);
        self.heard += n;
    }

    /// Whether a probe is to go out now: none yet, or the last one unanswered for `quiet_ns`.
    pub fn probe_due(&self, now: u64) -> bool {
        if self.answered || self.over(now) {
            return false;
        }
        self.probe_out.is_none_or(|t| now.saturating_sub(t) >= self.quiet_ns)
    }

    pub fn probe_sent(&mut self, now: u64) {
        self.probes += 1;
        self.probe_out = Some(now);
    }

    /// A probe's answer (counted by `heard` too: it is not a late answer).
    pub fn probe_answered(&mut self) {
        self.probe_answers += 1;
        self.probe_out = None;
        self.answered = true;
    }

    fn quiet(&self, now: u64) -> bool {
        self.quiet_ns == 0 || (self.answered && now.saturating_sub(self.last_heard) >= self.quiet_ns)
    }

    pub fn over(&self, now: u64) -> bool {
        self.quiet(now) || now >= self.deadline()
    }

    /// The wait's bound (ns on the driver's clock).
    pub fn deadline(&self) -> u64 {
        self.start.saturating_add(self.max_ns)
    }

    pub fn result(&self, now: u64) -> Quieted {
        Quieted {
            waited_ns: now.saturating_sub(self.start),
            late: self.heard.saturating_sub(self.probe_answers),
            probes: self.probes,
            quiet: self.quiet(now),
        }
    }
}

/// A `QuietWait` run by the driver: reads and counts; sends the probes, nothing else (a late
/// Advertise gets no Request: that would only add to the backlog being waited out).
pub struct Quiet<'c> {
    pub clients: &'c mut Clients,
    /// The probe client's index in `clients` (`None`: the wait is for silence only).
    pub probe: Option<usize>,
    pub wait: QuietWait,
}

impl Load for Quiet<'_> {
    fn clients(&mut self) -> &mut Clients {
        self.clients
    }

    fn send_due(&mut self, now: u64, out: &mut Outbox, servers: &Servers) {
        let Some(i) = self.probe else { return };
        if self.wait.probe_due(now) && !out.full() {
            let clients = &mut *self.clients;
            out.push(|b| clients.message(i, Phase::Soliciting, now, servers, b));
            self.wait.probe_sent(now);
        }
    }

    fn answered(&mut self, o: Outcome, _now: u64, _out: &mut Outbox, _servers: &Servers) {
        if matches!(o, Outcome::Advertised(i) if Some(i) == self.probe) {
            self.wait.probe_answered();
        }
    }

    fn next_due(&self, _now: u64) -> Option<u64> {
        None
    }

    fn over(&self, now: u64) -> bool {
        self.wait.over(now)
    }

    fn heard(&mut self, now: u64, n: u64) {
        self.wait.heard(now, n);
    }
}

/// Fills a population: every client in `todo` gets a Solicit, with at most `window`
/// exchanges in flight; an exchange unanswered after `timeout` is given up (its client
/// goes back to Idle, a later pass may try again).
pub struct Fill<'c> {
    pub clients: &'c mut Clients,
    todo: Vec<usize>,
    pos: usize,
    window: usize,
    timeout: u64,
    in_flight: usize,
    queue: VecDeque<(usize, u64)>,
    pub bound: u64,
    pub timed_out: u64,
}

impl<'c> Fill<'c> {
    pub fn new(clients: &'c mut Clients, window: usize, timeout_ns: u64) -> Fill<'c> {
        let todo = (0..clients.list.len()).filter(|&i| clients.list[i].phase != Phase::Bound).collect();
        Fill {
            clients,
            todo,
            pos: 0,
            window: window.max(1),
            timeout: timeout_ns,
            in_flight: 0,
            queue: VecDeque::new(),
            bound: 0,
            timed_out: 0,
        }
    }

    fn expire(&mut self, now: u64) {
        // Bounded by the queue's length; exchanges start in order, so the oldest is first.
        while let Some(&(i, t)) = self.queue.front() {
            let Some(c) = self.clients.list.get_mut(i) else {
                self.queue.pop_front();
                continue;
            };
            match c.phase {
                Phase::Soliciting | Phase::Requesting if now.saturating_sub(t) > self.timeout => {
                    c.phase = Phase::Idle;
                    self.in_flight -= 1;
                    self.timed_out += 1;
                }
                Phase::Soliciting | Phase::Requesting => return,
                _ => {}
            }
            self.queue.pop_front();
        }
    }
}

impl Load for Fill<'_> {
    fn clients(&mut self) -> &mut Clients {
        self.clients
    }

    fn send_due(&mut self, now: u64, out: &mut Outbox, servers: &Servers) {
        self.expire(now);
        while self.in_flight < self.window && self.pos < self.todo.len() && !out.full() {
            let i = self.todo[self.pos];
            let clients = &mut *self.clients;
            out.push(|b| clients.message(i, Phase::Soliciting, now, servers, b));
            self.queue.push_back((i, now));
            self.pos += 1;
            self.in_flight += 1;
        }
    }

    fn answered(&mut self, o: Outcome, now: u64, out: &mut Outbox, servers: &Servers) {
        match o {
            Outcome::Advertised(i) => {
                let clients = &mut *self.clients;
                out.push(|b| clients.message(i, Phase::Requesting, now, servers, b));
            }
            Outcome::Replied { .. } => {
                self.bound += 1;
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            Outcome::Stale => {}
        }
    }

    fn next_due(&self, _now: u64) -> Option<u64> {
        None
    }

    fn over(&self, _now: u64) -> bool {
        self.pos >= self.todo.len() && self.in_flight == 0
    }
}

/// (median, 99th percentile) of latencies in µs.
pub fn percentiles(v: &mut [u32]) -> (u32, u32) {
    if v.is_empty() {
        return (0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stateful::client::xid;
    use crate::stateful::msg::{self, Lease, Mode, Out, MAX_OUT};

    const MS: u64 = 1_000_000;

    /// A wait whose probe went out at its start and was answered at `answer`.
    fn probed(start: u64, last_heard: u64, answer: u64) -> QuietWait {
        let mut w = QuietWait::new(start, last_heard, 250 * MS, 5_000 * MS);
        assert!(w.probe_due(start));
        w.probe_sent(start);
        assert!(!w.probe_due(start + 249 * MS), "one probe at a time");
        w.heard(answer, 1);
        w.probe_answered();
        w
    }

    #[test]
    fn a_quiet_server_is_waited_for_its_probe_and_the_quiet_period() {
        // Silent for 400 ms already: the probe's answer (5 ms) and 250 ms after it.
        let w = probed(1_000 * MS, 600 * MS, 1_005 * MS);
        assert!(!w.over(1_254 * MS) && w.over(1_255 * MS));
        assert_eq!(w.result(1_255 * MS), Quieted { waited_ns: 255 * MS, late: 0, probes: 1, quiet: true });
        assert!(!w.probe_due(1_100 * MS), "answered: no more probes");
        // Silence alone does not end it: no probe answered, no end before the bound.
        let mut w = QuietWait::new(1_000 * MS, 0, 250 * MS, 5_000 * MS);
        w.probe_sent(1_000 * MS);
        assert!(!w.over(3_000 * MS));
        // quiet 0: no wait at all.
        assert!(QuietWait::new(1_000 * MS, 999 * MS, 0, 5_000 * MS).over(1_000 * MS));
        // Without a probe, silence is enough.
        let w = QuietWait::new(1_000 * MS, 900 * MS, 250 * MS, 5_000 * MS).without_probe();
        assert!(!w.over(1_149 * MS) && w.over(1_150 * MS));
        assert_eq!(w.result(1_150 * MS).probes, 0);
    }

    #[test]
    fn a_probe_behind_a_backlog_ends_the_wait_only_once_answered() {
        let mut w = QuietWait::new(0, 0, 250 * MS, 5_000 * MS);
        w.probe_sent(0);
        // The server silent, the probe unanswered (shed or dropped): sent again every 250 ms.
        let mut t = 0;
        while t < 1_000 * MS {
            t += 10 * MS;
            if w.probe_due(t) {
                w.probe_sent(t);
            }
        }
        assert_eq!(w.result(t).probes, 5, "at 0, 250, 500, 750 and 1,000 ms");
        assert!(!w.over(t));
        // Late answers, then the probe's, then silence.
        w.heard(1_100 * MS, 40);
        w.heard(1_200 * MS, 1);
        w.probe_answered();
        assert!(!w.over(1_449 * MS) && w.over(1_450 * MS));
        assert_eq!(w.result(1_450 * MS), Quieted { waited_ns: 1_450 * MS, late: 40, probes: 5, quiet: true });
    }

    #[test]
    fn every_late_answer_moves_the_end_and_is_counted() {
        let mut w = probed(0, 0, MS);
        // Answers every 200 ms for 2 s: never 250 ms of silence until they stop.
        for k in 1..=10 {
            let t = k * 200 * MS;
            assert!(!w.over(t - MS), "over at {t}");
            w.heard(t, 3);
        }
        assert!(!w.over(2_249 * MS));
        assert!(w.over(2_250 * MS));
        assert_eq!(w.result(2_250 * MS), Quieted { waited_ns: 2_250 * MS, late: 30, probes: 1, quiet: true });
    }

    #[test]
    fn a_server_that_never_goes_quiet_is_waited_for_at_most_the_bound() {
        let mut w = probed(10 * MS, 10 * MS, 10 * MS);
        let mut t = 10 * MS;
        // Bounded: the wait's own bound ends it (at most 5 s / 100 ms rounds).
        while !w.over(t) {
            w.heard(t, 1);
            t += 100 * MS;
        }
        assert_eq!(t, 5_010 * MS);
        let r = w.result(t);
        assert!(!r.quiet && r.waited_ns == 5_000 * MS && r.late == 50, "{r:?}");
        assert!(!w.probe_due(t), "no probe after the bound");
    }

    /// An Advertise of one address to `duid` in `xid`, with a valid lifetime (the encoder
    /// writes lifetimes 0; a server grants some, and the valid lifetime ends the IA).
    fn advertise(duid: &[u8], xid: u32, buf: &mut [u8; MAX_OUT]) -> usize {
        let lease = Lease { addr: "2001:db8:1::1:7".parse().unwrap(), plen: 128, valid: 0 };
        let adv = Out { kind: msg::ADVERTISE, xid, duid, server_id: Some(b"srv"), na: Some(Some(lease)), pd: None };
        let n = msg::encode(&adv, buf);
        buf[n - 4..n].copy_from_slice(&3600u32.to_be_bytes());
        n
    }

    #[test]
    fn a_late_advertise_gets_no_request() {
        let mut cs = Clients::new(2, 1, 9, 100, Mode::Address);
        let mut servers = Servers::default();
        let mut buf = [0u8; MAX_OUT];
        cs.message(0, Phase::Soliciting, 0, &servers, &mut buf);
        let n = advertise(&cs.duid(0), xid(1, 0), &mut buf);
        let p = msg::parse(&buf[..n]).unwrap();
        // Client 1 is the probe.
        let mut q = Quiet { clients: &mut cs, probe: Some(1), wait: QuietWait::new(0, 0, 250 * MS, 5_000 * MS) };
        let mut out = Outbox::default();
        q.send_due(0, &mut out, &servers);
        assert_eq!(out.len(), 1, "the probe");
        let probe = msg::parse(out.get(0)).unwrap();
        assert_eq!((probe.kind, probe.xid), (msg::SOLICIT, xid(1, 1)));
        let mut out = Outbox::default();
        q.heard(MS, 1);
        let o = q.clients().answer(&p, MS, &mut servers);
        assert!(matches!(o, Ok(Outcome::Advertised(0))), "{o:?}");
        q.answered(o.unwrap(), MS, &mut out, &servers);
        q.send_due(MS, &mut out, &servers);
        assert_eq!(out.len(), 0, "no Request, and no second probe yet");
        assert!(!q.over(300 * MS), "the probe is not answered");
        // The probe's Advertise.
        let n = advertise(&q.clients.duid(1), xid(1, 1), &mut buf);
        q.heard(300 * MS, 1);
        let o = q.clients().answer(&msg::parse(&buf[..n]).unwrap(), 300 * MS, &mut servers).unwrap();
        q.answered(o, 300 * MS, &mut out, &servers);
        assert_eq!(out.len(), 0);
        assert!(!q.over(549 * MS) && q.over(550 * MS));
        assert_eq!(q.wait.result(550 * MS), Quieted { waited_ns: 550 * MS, late: 1, probes: 1, quiet: true });
        assert_eq!(q.next_due(MS), None);
    }
}
