//! The storm's clients: per CPE the Solicit-Advertise-Request-Reply of RFC 9915 section 18.2
//! (Advertises collected over the first RT unless one has preference 255, Request with
//! REQ_MAX_RC transmissions, then discovery again), and per CPE one LAN host that asks
//! Information-Request once its CPE is bound. Timers only set `due`; the caller keeps the
//! wheel. Identities: CPE `i` has MAC 02:SS:SS:ii:ii:ii (SS the run's seed), DUID-LL of it,
//! and the link-local address derived from it; its LAN host has MAC 06:SS:SS:ii:ii:ii.
//! Odd CPEs (and their LAN hosts) sit behind the relay.

use std::net::Ipv6Addr;

use crate::stateful::client::Servers;
use crate::stateful::msg::{self, be32, Granted, Invalid, Lease, Mode, Parsed};

use super::timing::{self, Rng};

/// Bits of the transaction id that name the CPE; the two above name the exchange.
pub const INDEX_BITS: u32 = 22;
pub const MAX_CPES: usize = 1 << INDEX_BITS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Solicit = 0,
    Request = 1,
    InfoRequest = 2,
}

pub fn xid(kind: Kind, i: usize) -> u32 {
    ((kind as u32) << INDEX_BITS) | (i as u32 & (MAX_CPES as u32 - 1))
}

fn split_xid(x: u32) -> (u32, usize) {
    ((x >> INDEX_BITS) & 3, (x & (MAX_CPES as u32 - 1)) as usize)
}

pub fn mac(lan: bool, seed: u16, i: usize) -> [u8; 6] {
    let s = seed.to_be_bytes();
    let n = (i as u32).to_be_bytes();
    [if lan { 6 } else { 2 }, s[0], s[1], n[1], n[2], n[3]]
}

pub fn duid(mac: [u8; 6]) -> [u8; 10] {
    let mut d = [0, 3, 0, 1, 0, 0, 0, 0, 0, 0];
    d[4..].copy_from_slice(&mac);
    d
}

/// The modified EUI-64 link-local address of `mac` (RFC 4291 appendix A).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[0] = 0xfe;
    o[1] = 0x80;
    o[8..11].copy_from_slice(&[mac[0] ^ 2, mac[1], mac[2]]);
    o[11..13].copy_from_slice(&[0xff, 0xfe]);
    o[13..].copy_from_slice(&mac[3..]);
    Ipv6Addr::from(o)
}

pub fn relayed(i: usize) -> bool {
    i % 2 == 1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Before the first Solicit (the random delay of section 18.2.1).
    #[default]
    Waiting,
    Soliciting,
    /// An Advertise came within the first RT: the Request goes when it ends.
    Collecting,
    Requesting,
    Bound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LanPhase {
    /// Its CPE is not bound yet.
    #[default]
    Idle,
    Waiting,
    Asking,
    Done,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Cpe {
    pub phase: Phase,
    pub due: u64,
    rt: u64,
    /// Start of the exchange under way (Elapsed Time).
    started: u64,
    /// Transmissions of the current message.
    tx: u8,
    /// The server's SOL_MAX_RT (0: the default).
    sol_max_rt_s: u32,
    server: u8,
    pub na: Option<Lease>,
    pub pd: Option<Lease>,
    pub sent: u32,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Lan {
    pub phase: LanPhase,
    pub due: u64,
    rt: u64,
    started: u64,
    inf_max_rt_s: u32,
    pub sent: u32,
}

/// What the storm counts.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub solicits: u64,
    pub requests: u64,
    pub inf_requests: u64,
    /// Transmissions after an exchange's first: each says the one before got no answer in time.
    pub retransmissions: u64,
    pub advertises: u64,
    pub replies: u64,
    pub inf_replies: u64,
    /// Requests given up after REQ_MAX_RC transmissions (the CPE solicits again).
    pub request_failures: u64,
    /// Answers to an exchange already answered or no longer under way.
    pub stale: u64,
    /// Relay-Replies that did not unwrap, or named another peer.
    pub bad_relay: u64,
    /// Messages too long for the relay's buffer (never: a server ID past 130 bytes is refused).
    pub unsendable: u64,
    pub sol_max_rt: Option<u32>,
}

/// A message to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Send {
    pub kind: Kind,
    pub index: usize,
}

pub struct Population {
    pub cpes: Vec<Cpe>,
    pub lans: Vec<Lan>,
    pub seed: u16,
    pub counts: Counts,
    /// ns at which each bound CPE (each answered LAN host) got its Reply, in order.
    pub bound_at: Vec<u64>,
    pub inf_at: Vec<u64>,
    rng: Rng,
}

/// Timer ids: CPE `i` is `i`, its LAN host `n + i`.
impl Population {
    pub fn new(n: usize, seed: u16, start_ns: u64) -> Population {
        let n = n.min(MAX_CPES);
        let mut rng = Rng::new(u64::from(seed) << 20 | n as u64);
        let cpes =
            (0..n).map(|_| Cpe { due: start_ns + rng.below(timing::SOL_MAX_DELAY_NS), ..Cpe::default() }).collect();
        Population {
            cpes,
            lans: vec![Lan { due: u64::MAX, ..Lan::default() }; n],
            seed,
            counts: Counts::default(),
            bound_at: Vec::with_capacity(n),
            inf_at: Vec::with_capacity(n),
            rng,
        }
    }

    pub fn n(&self) -> usize {
        self.cpes.len()
    }

    pub fn due(&self, id: u32) -> u64 {
        let id = id as usize;
        match self.cpes.get(id) {
            Some(c) => c.due,
            None => self.lans.get(id - self.n()).map_or(u64::MAX, |l| l.due),
        }
    }

    pub fn finished(&self) -> bool {
        self.bound_at.len() == self.n() && self.inf_at.len() == self.n()
    }

    /// A timer of `id` went off at `now`: the message it sends, if any.
    pub fn fire(&mut self, id: u32, now: u64) -> Option<Send> {
        let n = self.n();
        let i = id as usize;
        if i >= n {
            return self.fire_lan(i - n, now);
        }
        let rng = &mut self.rng;
        let c = self.cpes.get_mut(i)?;
        let k = &mut self.counts;
        match c.phase {
            Phase::Waiting => {
                start(c, Phase::Soliciting, now, rng);
                k.solicits += 1;
                Some(Send { kind: Kind::Solicit, index: i })
            }
            Phase::Collecting => {
                start(c, Phase::Requesting, now, rng);
                k.requests += 1;
                Some(Send { kind: Kind::Request, index: i })
            }
            Phase::Requesting if c.tx >= timing::REQ_MAX_RC => {
                // Section 18.2.2 leaves the client's next step to it; ours discovers again.
                k.request_failures += 1;
                start(c, Phase::Soliciting, now, rng);
                k.solicits += 1;
                Some(Send { kind: Kind::Solicit, index: i })
            }
            Phase::Soliciting | Phase::Requesting => {
                // One retransmission, Solicit or Request: the RT doubles up to the message's MRT.
                let (kind, mrt_ns, sent) = if c.phase == Phase::Soliciting {
                    let mrt = u64::from(if c.sol_max_rt_s > 0 { c.sol_max_rt_s } else { timing::SOL_MAX_RT_S });
                    (Kind::Solicit, mrt * timing::NS, &mut k.solicits)
                } else {
                    (Kind::Request, timing::REQ_MAX_RT_NS, &mut k.requests)
                };
                c.rt = timing::next_rt(c.rt, mrt_ns, rng);
                c.due = now + c.rt;
                c.tx = c.tx.saturating_add(1);
                c.sent += 1;
                *sent += 1;
                k.retransmissions += 1;
                Some(Send { kind, index: i })
            }
            Phase::Bound => {
                c.due = u64::MAX;
                None
            }
        }
    }

    fn fire_lan(&mut self, i: usize, now: u64) -> Option<Send> {
        let l = self.lans.get_mut(i)?;
        let k = &mut self.counts;
        match l.phase {
            LanPhase::Waiting => {
                l.phase = LanPhase::Asking;
                l.started = now;
                l.rt = timing::first_rt(timing::INF_TIMEOUT_NS, false, &mut self.rng);
            }
            LanPhase::Asking => {
                let mrt = u64::from(if l.inf_max_rt_s > 0 { l.inf_max_rt_s } else { timing::INF_MAX_RT_S });
                l.rt = timing::next_rt(l.rt, mrt * timing::NS, &mut self.rng);
                k.retransmissions += 1;
            }
            LanPhase::Idle | LanPhase::Done => {
                l.due = u64::MAX;
                return None;
            }
        }
        l.due = now + l.rt;
        l.sent += 1;
        k.inf_requests += 1;
        Some(Send { kind: Kind::InfoRequest, index: i })
    }

    /// Writes message `s` (the client's part, before any relay) into `buf`; its length.
    pub fn encode(&self, s: Send, now: u64, servers: &Servers, buf: &mut [u8; msg::MAX_OUT]) -> usize {
        // DNS, domain search, SOL_MAX_RT and INF_MAX_RT (section 18.2.1: a client MUST
        // request SOL_MAX_RT in a Solicit, INF_MAX_RT in an Information-Request).
        const ORO: [u8; 8] = [0, 23, 0, 24, 0, 82, 0, 83];
        let elapsed = |started: u64| u16::try_from(now.saturating_sub(started) / 10_000_000).unwrap_or(u16::MAX);
        let i = s.index;
        if s.kind == Kind::InfoRequest {
            let Some(l) = self.lans.get(i) else { return 0 };
            let d = duid(mac(true, self.seed, i));
            let out = msg::Out {
                kind: msg::INFORMATION_REQUEST,
                xid: xid(s.kind, i),
                duid: &d,
                server_id: None,
                na: None,
                pd: None,
            };
            return msg::encode_with(&out, &[0, 23, 0, 24, 0, 83], elapsed(l.started), buf);
        }
        let Some(c) = self.cpes.get(i) else { return 0 };
        let d = duid(mac(false, self.seed, i));
        let (kind, sid, na, pd) = match s.kind {
            Kind::Request => (msg::REQUEST, Some(servers.get(c.server)), Some(c.na), Some(c.pd)),
            _ => (msg::SOLICIT, None, Some(None), Some(None)),
        };
        let out = msg::Out { kind, xid: xid(s.kind, i), duid: &d, server_id: sid, na, pd };
        let oro = if s.kind == Kind::Solicit { &ORO[..6] } else { &ORO[..4] };
        msg::encode_with(&out, oro, elapsed(c.started), buf)
    }

    /// An answer (`raw` the client message, unwrapped from its Relay-Reply if it came in
    /// one, `peer` that Relay-Reply's peer-address): its effect, and the message to send
    /// at once if any. Returns the id whose timer changed.
    pub fn answer(
        &mut self,
        raw: &[u8],
        peer: Option<Ipv6Addr>,
        now: u64,
        servers: &mut Servers,
    ) -> Result<(Option<u32>, Option<Send>), Invalid> {
        let p = msg::parse(raw)?;
        let (kind, i) = split_xid(p.xid);
        if i >= self.n() {
            return Err(Invalid::UnknownXid);
        }
        let lan = kind == Kind::InfoRequest as u32;
        let want_peer = relayed(i).then(|| link_local(mac(lan, self.seed, i)));
        if peer != want_peer {
            self.counts.bad_relay += 1;
            return Err(Invalid::WrongClient);
        }
        let ext = Extras::of(raw);
        match kind {
            0 => self.advertised(&p, i, &ext, now, servers),
            1 => self.replied(&p, i, &ext, now, servers),
            2 => self.informed(&p, i, &ext, now),
            _ => Err(Invalid::UnknownXid),
        }
    }

    fn advertised(
        &mut self,
        p: &Parsed,
        i: usize,
        ext: &Extras,
        now: u64,
        servers: &mut Servers,
    ) -> Result<(Option<u32>, Option<Send>), Invalid> {
        // None: a retransmission's second Advertise, or one after the Request went.
        let Some(g) = self.current(p, i, Phase::Soliciting, msg::ADVERTISE)? else {
            return Ok((None, None));
        };
        let c = &mut self.cpes[i];
        let sid = p.server_id.and_then(|s| servers.intern(s)).ok_or(Invalid::NoServerId)?;
        note_sol_max_rt(c, ext, &mut self.counts);
        self.counts.advertises += 1;
        c.server = sid;
        c.na = g.na;
        c.pd = g.pd;
        if c.tx <= 1 && ext.preference != Some(255) {
            // Section 18.2.1: collect Advertises until the first RT ends.
            c.phase = Phase::Collecting;
            return Ok((None, None));
        }
        start(c, Phase::Requesting, now, &mut self.rng);
        self.counts.requests += 1;
        Ok((Some(i as u32), Some(Send { kind: Kind::Request, index: i })))
    }

    /// What an answer of type `kind` to client `i`'s exchange in `phase` grants, checked;
    /// `None` for an answer to an exchange no longer under way (counted stale if it is
    /// this client's).
    fn current(&mut self, p: &Parsed, i: usize, phase: Phase, kind: u8) -> Result<Option<Granted>, Invalid> {
        let d = duid(mac(false, self.seed, i));
        if self.cpes[i].phase != phase {
            if p.client_id != Some(&d[..]) {
                return Err(Invalid::WrongClient);
            }
            self.counts.stale += 1;
            return Ok(None);
        }
        msg::check(p, kind, &d, Mode::Both, None).map(Some)
    }

    fn replied(
        &mut self,
        p: &Parsed,
        i: usize,
        ext: &Extras,
        now: u64,
        servers: &mut Servers,
    ) -> Result<(Option<u32>, Option<Send>), Invalid> {
        let Some(g) = self.current(p, i, Phase::Requesting, msg::REPLY)? else {
            return Ok((None, None));
        };
        let c = &mut self.cpes[i];
        if p.server_id.and_then(|s| servers.intern(s)) != Some(c.server) {
            return Err(Invalid::NoServerId);
        }
        note_sol_max_rt(c, ext, &mut self.counts);
        self.counts.replies += 1;
        c.na = g.na;
        c.pd = g.pd;
        c.phase = Phase::Bound;
        c.due = u64::MAX;
        self.bound_at.push(now);
        // Its LAN host asks once the CPE routes (within INF_MAX_DELAY, section 18.2.6).
        let n = self.n();
        let l = &mut self.lans[i];
        l.phase = LanPhase::Waiting;
        l.due = now + self.rng.below(timing::INF_MAX_DELAY_NS);
        Ok((Some((n + i) as u32), None))
    }

    fn informed(
        &mut self,
        p: &Parsed,
        i: usize,
        ext: &Extras,
        now: u64,
    ) -> Result<(Option<u32>, Option<Send>), Invalid> {
        let d = duid(mac(true, self.seed, i));
        if p.kind != msg::REPLY {
            return Err(Invalid::WrongType);
        }
        if p.client_id != Some(&d[..]) {
            return Err(Invalid::WrongClient);
        }
        if p.server_id.is_none_or(|s| s.is_empty()) {
            return Err(Invalid::NoServerId);
        }
        if p.status.is_some_and(|s| s != 0) {
            return Err(Invalid::Status);
        }
        let l = &mut self.lans[i];
        if l.phase != LanPhase::Asking {
            self.counts.stale += 1;
            return Ok((None, None));
        }
        if let Some(s) = ext.inf_max_rt.filter(|s| timing::valid_max_rt(*s)) {
            l.inf_max_rt_s = s;
        }
        l.phase = LanPhase::Done;
        l.due = u64::MAX;
        self.counts.inf_replies += 1;
        self.inf_at.push(now);
        Ok((None, None))
    }

    /// `DUID-hex lease` lines of every bound CPE (address, and prefix/len), for the check
    /// against the server's store.
    pub fn bound_leases(&self) -> String {
        let mut s = String::new();
        for (i, c) in self.cpes.iter().enumerate().filter(|(_, c)| c.phase == Phase::Bound) {
            let d: String = duid(mac(false, self.seed, i)).iter().map(|b| format!("{b:02x}")).collect();
            for l in [c.na, c.pd].into_iter().flatten() {
                if l.plen == 128 {
                    s += &format!("{d} {}\n", l.addr);
                } else {
                    s += &format!("{d} {}/{}\n", l.addr, l.plen);
                }
            }
        }
        s
    }
}

/// The first transmission of a Solicit (`Phase::Soliciting`) or a Request
/// (`Phase::Requesting`), now.
fn start(c: &mut Cpe, phase: Phase, now: u64, rng: &mut Rng) {
    let solicit = phase == Phase::Soliciting;
    let irt_ns = if solicit { timing::SOL_TIMEOUT_NS } else { timing::REQ_TIMEOUT_NS };
    c.phase = phase;
    c.started = now;
    c.rt = timing::first_rt(irt_ns, solicit, rng);
    c.due = now + c.rt;
    c.tx = 1;
    c.sent += 1;
}

fn note_sol_max_rt(c: &mut Cpe, ext: &Extras, k: &mut Counts) {
    // Section 18.2.9/18.2.10: a valid SOL_MAX_RT in an Advertise or Reply replaces ours.
    if let Some(s) = ext.sol_max_rt.filter(|s| timing::valid_max_rt(*s)) {
        c.sol_max_rt_s = s;
        k.sol_max_rt = Some(s);
    }
}

/// The top-level options the storm reads beyond what `msg::parse` does.
#[derive(Debug, Default, PartialEq, Eq)]
struct Extras {
    preference: Option<u8>,
    sol_max_rt: Option<u32>,
    inf_max_rt: Option<u32>,
}

impl Extras {
    fn of(raw: &[u8]) -> Extras {
        let mut e = Extras::default();
        for (code, body) in msg::options(raw.get(4..).unwrap_or(&[])).map_while(|o| o) {
            match code {
                msg::OPT_PREFERENCE => e.preference = body.first().copied(),
                msg::OPT_SOL_MAX_RT => e.sol_max_rt = be32(body, 0),
                msg::OPT_INF_MAX_RT => e.inf_max_rt = be32(body, 0),
                _ => {}
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRV: &[u8] = &[0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

    fn opt(code: u16, body: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
        v.extend(body);
        v
    }

    /// A server's Advertise/Reply to CPE `i` (or an Information-Reply to its LAN host).
    fn answer(kind: u8, x: u32, client: &[u8], extra: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend(&x.to_be_bytes()[1..]);
        m.extend(opt(2, SRV));
        m.extend(opt(1, client));
        let ia = |sub: Vec<u8>| [&1u32.to_be_bytes()[..], &[0; 8], &sub].concat();
        let addr: Ipv6Addr = "2001:db8:1::1:7".parse().unwrap();
        let body = [&addr.octets()[..], &300u32.to_be_bytes(), &600u32.to_be_bytes()].concat();
        m.extend(opt(3, &ia(opt(5, &body))));
        let pfx: Ipv6Addr = "2001:db8:8000:700::".parse().unwrap();
        let body = [&300u32.to_be_bytes()[..], &600u32.to_be_bytes(), &[56], &pfx.octets()].concat();
        m.extend(opt(25, &ia(opt(26, &body))));
        m.extend(extra);
        m
    }

    #[test]
    fn identities_are_distinct_and_the_link_local_is_the_macs() {
        assert_eq!(mac(false, 0x1234, 0x0a0b0c), [2, 0x12, 0x34, 0x0a, 0x0b, 0x0c]);
        assert_eq!(
            link_local([2, 0x12, 0x34, 0x0a, 0x0b, 0x0c]),
            "fe80::12:34ff:fe0a:b0c".parse::<Ipv6Addr>().unwrap()
        );
        assert_ne!(duid(mac(false, 1, 5)), duid(mac(true, 1, 5)));
        assert_eq!(split_xid(xid(Kind::Request, 77)), (1, 77));
    }

    #[test]
    fn a_cpe_solicits_collects_requests_binds_then_its_lan_host_asks() {
        let mut p = Population::new(2, 9, 0);
        let mut servers = Servers::default();
        assert!(p.cpes.iter().all(|c| c.due < timing::SOL_MAX_DELAY_NS));
        let t0 = p.cpes[0].due;
        assert_eq!(p.fire(0, t0), Some(Send { kind: Kind::Solicit, index: 0 }));
        let first_rt_end = p.cpes[0].due;
        assert!(first_rt_end > t0 + timing::SOL_TIMEOUT_NS);
        let mut buf = [0u8; msg::MAX_OUT];
        let n = p.encode(Send { kind: Kind::Solicit, index: 0 }, t0, &servers, &mut buf);
        let sol = msg::parse(&buf[..n]).unwrap();
        assert_eq!((sol.kind, sol.xid), (msg::SOLICIT, xid(Kind::Solicit, 0)));
        assert!(sol.na.is_some() && sol.pd.is_some());

        // Advertise within the first RT, preference 0: wait for the RT's end.
        let d = duid(mac(false, 9, 0));
        let adv = answer(msg::ADVERTISE, xid(Kind::Solicit, 0), &d, &opt(82, &120u32.to_be_bytes()));
        assert_eq!(p.answer(&adv, None, t0 + 1000, &mut servers), Ok((None, None)));
        assert_eq!(p.cpes[0].phase, Phase::Collecting);
        assert_eq!(p.counts.sol_max_rt, Some(120));
        assert_eq!(p.fire(0, first_rt_end), Some(Send { kind: Kind::Request, index: 0 }));
        let n = p.encode(Send { kind: Kind::Request, index: 0 }, first_rt_end, &servers, &mut buf);
        let req = msg::parse(&buf[..n]).unwrap();
        assert_eq!(req.server_id, Some(SRV));
        assert_eq!(req.na.unwrap().lease.unwrap().addr, "2001:db8:1::1:7".parse::<Ipv6Addr>().unwrap());

        let rep = answer(msg::REPLY, xid(Kind::Request, 0), &d, &[]);
        let t1 = first_rt_end + 5000;
        assert_eq!(p.answer(&rep, None, t1, &mut servers), Ok((Some(2), None)));
        assert_eq!(p.cpes[0].phase, Phase::Bound);
        assert_eq!(p.bound_at, vec![t1]);
        // The same Reply again is stale.
        assert_eq!(p.answer(&rep, None, t1 + 1, &mut servers), Ok((None, None)));
        assert_eq!(p.counts.stale, 1);
        assert!(p.bound_leases().contains("2001:db8:8000:700::/56"));

        let lan_due = p.due(2);
        assert!(lan_due >= t1 && lan_due < t1 + timing::INF_MAX_DELAY_NS);
        assert_eq!(p.fire(2, lan_due), Some(Send { kind: Kind::InfoRequest, index: 0 }));
        let n = p.encode(Send { kind: Kind::InfoRequest, index: 0 }, lan_due, &servers, &mut buf);
        let ir = msg::parse(&buf[..n]).unwrap();
        assert_eq!(ir.kind, msg::INFORMATION_REQUEST);
        let lan_d = duid(mac(true, 9, 0));
        let inf = answer(msg::REPLY, xid(Kind::InfoRequest, 0), &lan_d, &[]);
        assert_eq!(p.answer(&inf, None, lan_due + 10, &mut servers), Ok((None, None)));
        assert_eq!(p.inf_at.len(), 1);
        assert!(!p.finished());
    }

    #[test]
    fn retransmissions_back_off_honour_sol_max_rt_and_requests_give_up() {
        let mut p = Population::new(1, 1, 0);
        let mut servers = Servers::default();
        let mut t = p.cpes[0].due;
        p.fire(0, t);
        // A server's SOL_MAX_RT of 60 s caps the Solicit's RT (after an Advertise the
        // client would stop soliciting, so set it as a Reply would have).
        p.cpes[0].sol_max_rt_s = 60;
        let mut rts = Vec::new();
        for _ in 0..12 {
            t = p.cpes[0].due;
            assert_eq!(p.fire(0, t).map(|s| s.kind), Some(Kind::Solicit));
            rts.push(p.cpes[0].due - t);
        }
        assert!(rts.iter().all(|&r| r <= 66 * timing::NS), "{rts:?}");
        assert!(rts[11] >= 54 * timing::NS, "{rts:?}");
        assert_eq!(p.counts.retransmissions, 12);

        // A late Advertise (after the first RT): the Request goes at once.
        let d = duid(mac(false, 1, 0));
        let adv = answer(msg::ADVERTISE, xid(Kind::Solicit, 0), &d, &[]);
        let (id, send) = p.answer(&adv, None, t + 1, &mut servers).unwrap();
        assert_eq!((id, send.map(|s| s.kind)), (Some(0), Some(Kind::Request)));
        // Nine retransmissions, then the tenth expiry gives up and solicits again.
        for _ in 0..9 {
            t = p.cpes[0].due;
            assert_eq!(p.fire(0, t).map(|s| s.kind), Some(Kind::Request));
        }
        t = p.cpes[0].due;
        assert_eq!(p.fire(0, t).map(|s| s.kind), Some(Kind::Solicit));
        assert_eq!(p.counts.request_failures, 1);
        assert_eq!(p.cpes[0].sent, 13 + 10 + 1);
    }

    #[test]
    fn relayed_answers_must_name_the_cpe_and_bad_answers_are_refused() {
        let mut p = Population::new(2, 4, 0);
        let mut servers = Servers::default();
        let t = p.cpes[1].due;
        p.fire(1, t);
        let d = duid(mac(false, 4, 1));
        let adv = answer(msg::ADVERTISE, xid(Kind::Solicit, 1), &d, &opt(7, &[255]));
        // Direct, or relayed for another peer: refused.
        assert_eq!(p.answer(&adv, None, t + 1, &mut servers), Err(Invalid::WrongClient));
        assert_eq!(p.answer(&adv, Some(Ipv6Addr::LOCALHOST), t + 1, &mut servers), Err(Invalid::WrongClient));
        assert_eq!(p.counts.bad_relay, 2);
        // Preference 255: the Request goes at once.
        let ll = link_local(mac(false, 4, 1));
        let (_, send) = p.answer(&adv, Some(ll), t + 1, &mut servers).unwrap();
        assert_eq!(send.map(|s| s.kind), Some(Kind::Request));
        let other = answer(msg::REPLY, xid(Kind::Request, 1), &duid(mac(false, 4, 0)), &[]);
        assert_eq!(p.answer(&other, Some(ll), t + 2, &mut servers), Err(Invalid::WrongClient));
        assert_eq!(p.answer(&[7, 0, 0], Some(ll), t + 2, &mut servers), Err(Invalid::Malformed));
        assert_eq!(
            p.answer(&answer(7, 5 << 22 | 1, &d, &[]), None, t, &mut servers).unwrap_err(),
            Invalid::WrongClient
        );
    }
}
