//! Per-client state of the stateful generator, and the transaction id that maps an answer
//! to its client in O(1): one bit that tells a Request's exchange from the Solicit's (a
//! client uses a new transaction id for its Request, RFC 9915 section 18.2.2), 2 bits of
//! step tag (answers to an earlier step are stale, not this one's) and 21 bits of client
//! index.

use super::msg::{self, Granted, Invalid, Lease, Mode, Out, Parsed, MAX_OUT, MAX_SERVER_ID};

pub const INDEX_BITS: u32 = 21;
/// Most clients one step (or the population) can have.
pub const MAX_CLIENTS: usize = 1 << INDEX_BITS;

/// Step tags cycle through this many values.
pub const TAGS: u8 = 4;
const REQUEST_BIT: u32 = 1 << 23;

pub fn xid(tag: u8, index: usize) -> u32 {
    (u32::from(tag % TAGS) << INDEX_BITS) | (index as u32 & (MAX_CLIENTS as u32 - 1))
}

/// The transaction id of a client's Request: its Solicit's with the request bit set.
pub fn request_xid(tag: u8, index: usize) -> u32 {
    xid(tag, index) | REQUEST_BIT
}

/// (tag, index) of a transaction id.
pub fn split_xid(xid: u32) -> (u8, usize) {
    (((xid >> INDEX_BITS) & 3) as u8, (xid & (MAX_CLIENTS as u32 - 1)) as usize)
}

pub fn is_request_xid(xid: u32) -> bool {
    xid & REQUEST_BIT != 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Idle,
    /// Solicit sent, waiting for an Advertise.
    Soliciting,
    /// Request sent, waiting for the Reply.
    Requesting,
    Bound,
    /// Renew sent, waiting for the Reply (the client stays bound either way).
    Renewing,
}

/// The server IDs seen in a run: clients keep a one-byte index (there is one server).
#[derive(Default)]
pub struct Servers(Vec<Vec<u8>>);

impl Servers {
    /// Index of `id`, adding it; `None` once 255 distinct IDs were seen.
    pub fn intern(&mut self, id: &[u8]) -> Option<u8> {
        if let Some(i) = self.0.iter().position(|s| s == id) {
            return Some(i as u8);
        }
        if self.0.len() >= 255 || id.len() > MAX_SERVER_ID {
            return None;
        }
        self.0.push(id.to_vec());
        Some((self.0.len() - 1) as u8)
    }

    pub fn get(&self, i: u8) -> &[u8] {
        self.0.get(usize::from(i)).map_or(&[], |v| v.as_slice())
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Client {
    /// Which DUID the client has (distinct over the run; kept when the population drops
    /// clients that got no lease, so that indexes can move).
    pub duid_no: u32,
    pub phase: Phase,
    /// When the exchange under way began (ns since the run started): latency.
    pub since_ns: u64,
    pub server: u8,
    pub na: Option<Lease>,
    pub pd: Option<Lease>,
}

/// The clients of a step (or the population) and what they need to speak.
pub struct Clients {
    pub list: Vec<Client>,
    pub tag: u8,
    pub seed: u16,
    pub mode: Mode,
}

/// What an answer did to its client.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A valid Advertise: the client now sends its Request.
    Advertised(usize),
    /// A valid Reply to a Request or Renew, with the exchange's latency.
    Replied { index: usize, latency_ns: u64 },
    /// An answer for an exchange already answered or no longer awaited (the step's tag
    /// but the client in another phase), or for another step.
    Stale,
}

impl Clients {
    pub fn new(n: usize, tag: u8, seed: u16, first: u32, mode: Mode) -> Clients {
        let list = (0..n.min(MAX_CLIENTS))
            .map(|i| Client { duid_no: first.wrapping_add(i as u32), ..Client::default() })
            .collect();
        Clients { list, tag, seed, mode }
    }

    pub fn duid(&self, i: usize) -> [u8; 10] {
        msg::duid(self.seed, self.list.get(i).map_or(u32::MAX, |c| c.duid_no))
    }

    /// The next message of client `i` in phase `to` (Soliciting, Requesting or Renewing),
    /// written into `buf`; its length.
    pub fn message(&mut self, i: usize, to: Phase, now_ns: u64, servers: &Servers, buf: &mut [u8; MAX_OUT]) -> usize {
        let d = self.duid(i);
        let mode = self.mode;
        let x = if to == Phase::Requesting { request_xid(self.tag, i) } else { xid(self.tag, i) };
        let Some(c) = self.list.get_mut(i) else { return 0 };
        let (kind, sid, na, pd) = match to {
            Phase::Requesting => (msg::REQUEST, Some(servers.get(c.server)), Some(c.na), Some(c.pd)),
            Phase::Renewing => (msg::RENEW, Some(servers.get(c.server)), Some(c.na), Some(c.pd)),
            _ => (msg::SOLICIT, None, Some(None), Some(None)),
        };
        if to != Phase::Requesting {
            // A Request continues the Solicit's exchange; latency counts from the Solicit.
            c.since_ns = now_ns;
        }
        c.phase = to;
        let out = Out {
            kind,
            xid: x,
            duid: &d,
            server_id: sid,
            na: if mode.na() { na } else { None },
            pd: if mode.pd() { pd } else { None },
        };
        msg::encode(&out, buf)
    }

    /// Checks an answer and moves its client on.
    pub fn answer(&mut self, p: &Parsed, now_ns: u64, servers: &mut Servers) -> Result<Outcome, Invalid> {
        let (tag, i) = split_xid(p.xid);
        if tag != self.tag {
            return Ok(Outcome::Stale);
        }
        let d = self.duid(i);
        let mode = self.mode;
        let c = self.list.get_mut(i).ok_or(Invalid::UnknownXid)?;
        if matches!(c.phase, Phase::Soliciting | Phase::Requesting)
            && is_request_xid(p.xid) != (c.phase == Phase::Requesting)
        {
            // An answer to the other half of the exchange: late or duplicated.
            return Ok(Outcome::Stale);
        }
        if p.kind == msg::ADVERTISE && c.phase != Phase::Soliciting && p.client_id == Some(&d[..]) {
            // A second Advertise (retransmitted or from another server) after the Request.
            return Ok(Outcome::Stale);
        }
        let (kind, renewing) = match c.phase {
            Phase::Soliciting => (msg::ADVERTISE, None),
            Phase::Requesting => (msg::REPLY, None),
            Phase::Renewing => (msg::REPLY, Some(Granted { na: c.na, pd: c.pd })),
            Phase::Idle | Phase::Bound => {
                // Ours if the client ID matches: a duplicate or late answer.
                return if p.client_id == Some(&d[..]) { Ok(Outcome::Stale) } else { Err(Invalid::UnknownXid) };
            }
        };
        let g = msg::check(p, kind, &d, mode, renewing.as_ref())?;
        let sid = p.server_id.and_then(|s| servers.intern(s)).ok_or(Invalid::NoServerId)?;
        if renewing.is_some() && sid != c.server {
            return Err(Invalid::NotSame);
        }
        c.server = sid;
        c.na = g.na;
        c.pd = g.pd;
        if c.phase == Phase::Soliciting {
            return Ok(Outcome::Advertised(i));
        }
        c.phase = Phase::Bound;
        Ok(Outcome::Replied { index: i, latency_ns: now_ns.saturating_sub(c.since_ns) })
    }

    #[cfg(test)]
    pub fn address(&self, i: usize) -> Option<std::net::Ipv6Addr> {
        self.list.get(i)?.na.map(|l| l.addr)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::stateful::msg::parse;

    fn reply(kind: u8, xid: u32, duid: &[u8], na: Option<Ipv6Addr>) -> Vec<u8> {
        // Reuse the encoder with the server's roles swapped: a valid answer shape.
        let mut buf = [0u8; MAX_OUT];
        let lease = na.map(|a| Lease { addr: a, plen: 128, valid: 0 });
        let n = msg::encode(&Out { kind, xid, duid, server_id: Some(b"srv-id"), na: Some(lease), pd: None }, &mut buf);
        let mut v = buf[..n].to_vec();
        // The encoder writes lifetimes 0; a server grants some (valid lifetime at its end).
        if na.is_some() {
            let l = v.len();
            v[l - 4..].copy_from_slice(&3600u32.to_be_bytes());
        }
        v
    }

    #[test]
    fn xid_maps_back_to_tag_and_index() {
        assert_eq!(split_xid(xid(3, 123_456)), (3, 123_456));
        assert_eq!(split_xid(request_xid(2, 77)), (2, 77));
        assert!(is_request_xid(request_xid(2, 77)) && !is_request_xid(xid(2, 77)));
        assert_eq!(split_xid(xid(3, MAX_CLIENTS - 1)), (3, MAX_CLIENTS - 1));
        assert!(request_xid(3, MAX_CLIENTS - 1) <= 0xff_ffff);
    }

    #[test]
    fn solicit_advertise_request_reply_then_renew() {
        let mut cs = Clients::new(4, 1, 9, 100, Mode::Address);
        let mut servers = Servers::default();
        let mut buf = [0u8; MAX_OUT];
        let n = cs.message(2, Phase::Soliciting, 1_000, &servers, &mut buf);
        let sol = parse(&buf[..n]).unwrap();
        assert_eq!(sol.kind, msg::SOLICIT);
        let x = sol.xid;
        let a: Ipv6Addr = "2001:db8:1::1:7".parse().unwrap();
        let d = cs.duid(2);
        let adv = reply(msg::ADVERTISE, x, &d, Some(a));
        assert_eq!(cs.answer(&parse(&adv).unwrap(), 2_000, &mut servers), Ok(Outcome::Advertised(2)));
        // The same Advertise again is stale once the Request is out.
        let n = cs.message(2, Phase::Requesting, 2_000, &servers, &mut buf);
        let req = parse(&buf[..n]).unwrap();
        assert_eq!((req.kind, req.server_id), (msg::REQUEST, Some(&b"srv-id"[..])));
        assert_eq!(req.na.unwrap().lease.unwrap().addr, a);
        assert_eq!(cs.answer(&parse(&adv).unwrap(), 2_500, &mut servers), Ok(Outcome::Stale));
        // The Request has a transaction id of its own; a Reply on the Solicit's is not its.
        assert_ne!(req.xid, x);
        let on_solicit = reply(msg::REPLY, x, &d, Some(a));
        assert_eq!(cs.answer(&parse(&on_solicit).unwrap(), 4_000, &mut servers), Ok(Outcome::Stale));
        let rep = reply(msg::REPLY, req.xid, &d, Some(a));
        assert_eq!(
            cs.answer(&parse(&rep).unwrap(), 5_000, &mut servers),
            Ok(Outcome::Replied { index: 2, latency_ns: 4_000 })
        );
        assert_eq!(cs.address(2), Some(a));
        assert_eq!(cs.answer(&parse(&rep).unwrap(), 5_100, &mut servers), Ok(Outcome::Stale));
        // Renew: the same address must come back.
        let n = cs.message(2, Phase::Renewing, 10_000, &servers, &mut buf);
        let rx = parse(&buf[..n]).unwrap().xid;
        let other = reply(msg::REPLY, rx, &d, Some("2001:db8:1::1:8".parse().unwrap()));
        assert_eq!(cs.answer(&parse(&other).unwrap(), 10_500, &mut servers), Err(Invalid::NotSame));
        assert_eq!(
            cs.answer(&parse(&reply(msg::REPLY, rx, &d, Some(a))).unwrap(), 11_000, &mut servers),
            Ok(Outcome::Replied { index: 2, latency_ns: 1_000 })
        );
    }

    #[test]
    fn clients_keep_their_duid_when_the_list_shrinks() {
        // The population drops clients that got no lease: the others must go on speaking
        // with their own DUIDs, or their Renews would name another client's lease.
        let mut cs = Clients::new(3, 0, 9, 100, Mode::Address);
        let third = cs.duid(2);
        cs.list.remove(1);
        assert_eq!(cs.duid(1), third);
    }

    #[test]
    fn wrong_xid_or_client_id_is_not_counted() {
        let mut cs = Clients::new(4, 1, 9, 100, Mode::Address);
        let mut servers = Servers::default();
        let mut buf = [0u8; MAX_OUT];
        let a: Ipv6Addr = "2001:db8:1::1:7".parse().unwrap();
        let n = cs.message(0, Phase::Soliciting, 0, &servers, &mut buf);
        let x = parse(&buf[..n]).unwrap().xid;
        // Another client's DUID on client 0's xid.
        let wrong = reply(msg::ADVERTISE, x, &cs.duid(1), Some(a));
        assert_eq!(cs.answer(&parse(&wrong).unwrap(), 1, &mut servers), Err(Invalid::WrongClient));
        // An index beyond the step's clients, and a client that sent nothing.
        let beyond = reply(msg::ADVERTISE, xid(1, 50), &cs.duid(0), Some(a));
        assert_eq!(cs.answer(&parse(&beyond).unwrap(), 1, &mut servers), Err(Invalid::UnknownXid));
        let idle = reply(msg::ADVERTISE, xid(1, 3), &cs.duid(0), Some(a));
        assert_eq!(cs.answer(&parse(&idle).unwrap(), 1, &mut servers), Err(Invalid::UnknownXid));
        // Another step's tag.
        let old = reply(msg::ADVERTISE, xid(2, 0), &cs.duid(0), Some(a));
        assert_eq!(cs.answer(&parse(&old).unwrap(), 1, &mut servers), Ok(Outcome::Stale));
        // Client 0 is still waiting: its real Advertise counts.
        let good = reply(msg::ADVERTISE, x, &cs.duid(0), Some(a));
        assert_eq!(cs.answer(&parse(&good).unwrap(), 1, &mut servers), Ok(Outcome::Advertised(0)));
    }
}
