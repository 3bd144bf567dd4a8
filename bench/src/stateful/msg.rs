//! The few DHCPv6 messages the stateful generator sends (Solicit, Request, Renew) and the
//! checks on what comes back (Advertise, Reply). A minimal codec of its own: the bench must
//! not depend on the server's wire code it measures, and it only needs client IDs, server
//! IDs, one IA_NA and one IA_PD with their first address/prefix and status codes.

use std::net::Ipv6Addr;

use thiserror::Error;

pub const SOLICIT: u8 = 1;
pub const ADVERTISE: u8 = 2;
pub const REQUEST: u8 = 3;
pub const RENEW: u8 = 5;
pub const REPLY: u8 = 7;
pub const INFORMATION_REQUEST: u8 = 11;

pub const OPT_PREFERENCE: u16 = 7;
pub const OPT_SOL_MAX_RT: u16 = 82;
pub const OPT_INF_MAX_RT: u16 = 83;

const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ORO: u16 = 6;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_STATUS_CODE: u16 = 13;
const OPT_IA_PD: u16 = 25;
const OPT_IAPREFIX: u16 = 26;

/// Every client uses IAID 1 for its IA_NA and its IA_PD.
pub const IAID: u32 = 1;
/// Longest message the generator builds (two IAs with one lease each, a 130-byte server
/// ID at most; see `Parsed`), with room for the storm's one level of Relay-Forward around it.
pub const MAX_OUT: usize = 384;
/// A server ID longer than this is refused (RFC 8415 caps DUIDs at 128 bytes + type).
pub const MAX_SERVER_ID: usize = 130;

/// Which IAs the clients ask for (perfdhcp's `-e address-only` / `address-and-prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Address,
    Prefix,
    Both,
}

impl Mode {
    pub fn na(self) -> bool {
        self != Mode::Prefix
    }
    pub fn pd(self) -> bool {
        self != Mode::Address
    }
}

/// A leased (or offered) address (`plen` 128) or delegated prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv6Addr,
    pub plen: u8,
    pub valid: u32,
}

/// What a client puts in one message.
pub struct Out<'a> {
    pub kind: u8,
    pub xid: u32,
    pub duid: &'a [u8],
    pub server_id: Option<&'a [u8]>,
    /// `Some(None)`: an empty IA (Solicit); `Some(Some(l))`: the IA with that lease.
    pub na: Option<Option<Lease>>,
    pub pd: Option<Option<Lease>>,
}

/// DUID-LL (type 3, Ethernet) whose six link-layer bytes are a run seed and the client's
/// number: distinct per client and per run, so that repeated runs against one server
/// allocate new leases rather than find old ones.
pub fn duid(seed: u16, n: u32) -> [u8; 10] {
    let mut d = [0u8; 10];
    d[..4].copy_from_slice(&[0, 3, 0, 1]);
    d[4..6].copy_from_slice(&seed.to_be_bytes());
    d[6..].copy_from_slice(&n.to_be_bytes());
    d
}

/// Writes `m` into `buf` and returns its length. `buf` must hold MAX_OUT bytes.
pub fn encode(m: &Out, buf: &mut [u8; MAX_OUT]) -> usize {
    // DNS servers and domain search, as perfdhcp and ordinary clients ask: the server's
    // replies then carry them, as they do for perfdhcp's load.
    encode_with(m, &[0, 23, 0, 24], 0, buf)
}

/// As `encode`, with the Option Request's body (`oro`, codes as big-endian pairs, at most
/// 8 codes) and the Elapsed Time (centiseconds) given.
pub fn encode_with(m: &Out, oro: &[u8], elapsed_cs: u16, buf: &mut [u8; MAX_OUT]) -> usize {
    let mut w = W { buf, n: 0 };
    w.bytes(&[m.kind]);
    w.bytes(&(m.xid & 0xff_ffff).to_be_bytes()[1..]);
    w.opt(OPT_CLIENTID, m.duid);
    if let Some(s) = m.server_id {
        w.opt(OPT_SERVERID, &s[..s.len().min(MAX_SERVER_ID)]);
    }
    w.opt(OPT_ORO, &oro[..oro.len().min(16)]);
    w.opt(OPT_ELAPSED_TIME, &elapsed_cs.to_be_bytes());
    if let Some(l) = m.na {
        let mut ia = [0u8; 12 + 4 + 24];
        ia[..4].copy_from_slice(&IAID.to_be_bytes());
        let len = match l {
            None => 12,
            Some(l) => {
                ia[12..16].copy_from_slice(&[0, OPT_IAADDR as u8, 0, 24]);
                ia[16..32].copy_from_slice(&l.addr.octets());
                // Preferred and valid lifetimes 0: the client leaves them to the server.
                40
            }
        };
        w.opt(OPT_IA_NA, &ia[..len]);
    }
    if let Some(l) = m.pd {
        let mut ia = [0u8; 12 + 4 + 25];
        ia[..4].copy_from_slice(&IAID.to_be_bytes());
        let len = match l {
            None => 12,
            Some(l) => {
                ia[12..16].copy_from_slice(&[0, OPT_IAPREFIX as u8, 0, 25]);
                ia[24] = l.plen;
                ia[25..41].copy_from_slice(&l.addr.octets());
                41
            }
        };
        w.opt(OPT_IA_PD, &ia[..len]);
    }
    w.n
}

struct W<'a> {
    buf: &'a mut [u8; MAX_OUT],
    n: usize,
}

impl W<'_> {
    fn bytes(&mut self, b: &[u8]) {
        // The callers' sizes add up to at most MAX_OUT (checked by the tests); truncating
        // here instead of panicking keeps a mistake visible as an invalid message.
        let end = (self.n + b.len()).min(MAX_OUT);
        self.buf[self.n..end].copy_from_slice(&b[..end - self.n]);
        self.n = end;
    }
    fn opt(&mut self, code: u16, data: &[u8]) {
        self.bytes(&code.to_be_bytes());
        // The generator's own options (DUIDs, IAs, an ORO): a few dozen bytes, never near 64 KiB.
        let len = u16::try_from(data.len()).expect("a generated option fits a 16-bit length");
        self.bytes(&len.to_be_bytes());
        self.bytes(data);
    }
}

/// One IA of an answer: its own status and its first address/prefix (with that one's
/// status, which servers also use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ia {
    pub iaid: u32,
    pub status: Option<u16>,
    pub lease: Option<Lease>,
    pub lease_status: Option<u16>,
}

/// An answer, read once; the slices point into the datagram.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    pub kind: u8,
    pub xid: u32,
    pub client_id: Option<&'a [u8]>,
    pub server_id: Option<&'a [u8]>,
    pub status: Option<u16>,
    pub na: Option<Ia>,
    pub pd: Option<Ia>,
}

/// Why an answer was not counted; `name` is the key the generator prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Invalid {
    #[error("malformed")]
    Malformed,
    #[error("not an Advertise or Reply as expected")]
    WrongType,
    #[error("transaction id of no outstanding exchange")]
    UnknownXid,
    #[error("client identifier is not the client's")]
    WrongClient,
    #[error("no or oversized server identifier")]
    NoServerId,
    #[error("status code other than Success")]
    Status,
    #[error("an IA carries a status code other than Success (NoAddrsAvail, NoPrefixAvail, ...)")]
    IaStatus,
    #[error("an IA asked for is missing or has no address/prefix")]
    NoLease,
    #[error("valid lifetime 0")]
    ZeroLifetime,
    #[error("a renewed IA came back with another address/prefix")]
    NotSame,
}

impl Invalid {
    pub const ALL: [Invalid; 10] = [
        Invalid::Malformed,
        Invalid::WrongType,
        Invalid::UnknownXid,
        Invalid::WrongClient,
        Invalid::NoServerId,
        Invalid::Status,
        Invalid::IaStatus,
        Invalid::NoLease,
        Invalid::ZeroLifetime,
        Invalid::NotSame,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Invalid::Malformed => "malformed",
            Invalid::WrongType => "wrong_type",
            Invalid::UnknownXid => "unknown_xid",
            Invalid::WrongClient => "wrong_client",
            Invalid::NoServerId => "no_server_id",
            Invalid::Status => "status",
            Invalid::IaStatus => "ia_status",
            Invalid::NoLease => "no_lease",
            Invalid::ZeroLifetime => "zero_lifetime",
            Invalid::NotSame => "not_same",
        }
    }

    pub fn index(self) -> usize {
        Invalid::ALL.iter().position(|x| *x == self).unwrap_or(0)
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn addr(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let o: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(o))
}

/// (code, body) of each option in `b`; `None` for an option that overruns `b`.
pub fn options(b: &[u8]) -> impl Iterator<Item = Option<(u16, &[u8])>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= b.len() {
            return None;
        }
        let item = (|| {
            let code = be16(b, at)?;
            let len = be16(b, at + 2)? as usize;
            let body = b.get(at + 4..at + 4 + len)?;
            Some((code, body))
        })();
        at = match item {
            Some((_, body)) => at + 4 + body.len(),
            None => b.len(),
        };
        Some(item)
    })
}

fn status(body: &[u8]) -> Option<u16> {
    be16(body, 0)
}

/// IA_NA/IA_PD body: IAID, T1, T2, then options.
fn ia(body: &[u8], pd: bool) -> Option<Ia> {
    let mut ia = Ia { iaid: be32(body, 0)?, ..Ia::default() };
    for o in options(body.get(12..)?) {
        let (code, b) = o?;
        match (code, pd) {
            (OPT_STATUS_CODE, _) => ia.status = Some(status(b)?),
            (OPT_IAADDR, false) if ia.lease.is_none() => {
                ia.lease = Some(Lease { addr: addr(b, 0)?, plen: 128, valid: be32(b, 20)? });
                ia.lease_status = sub_status(b.get(24..)?)?;
            }
            (OPT_IAPREFIX, true) if ia.lease.is_none() => {
                ia.lease = Some(Lease { addr: addr(b, 9)?, plen: *b.get(8)?, valid: be32(b, 4)? });
                ia.lease_status = sub_status(b.get(25..)?)?;
            }
            _ => {}
        }
    }
    Some(ia)
}

/// The status code among an address's or prefix's own options, if any.
fn sub_status(b: &[u8]) -> Option<Option<u16>> {
    for o in options(b) {
        let (code, body) = o?;
        if code == OPT_STATUS_CODE {
            return Some(Some(status(body)?));
        }
    }
    Some(None)
}

pub fn parse(b: &[u8]) -> Result<Parsed<'_>, Invalid> {
    (|| {
        let mut p = Parsed { kind: *b.first()?, xid: be32(b, 0)? & 0xff_ffff, ..Parsed::default() };
        for o in options(b.get(4..)?) {
            let (code, body) = o?;
            match code {
                OPT_CLIENTID => p.client_id = Some(body),
                OPT_SERVERID => p.server_id = Some(body),
                OPT_STATUS_CODE => p.status = Some(status(body)?),
                // The first IA with our IAID of each kind; others are not ours to count.
                OPT_IA_NA if p.na.is_none() => p.na = Some(ia(body, false)?).filter(|i| i.iaid == IAID),
                OPT_IA_PD if p.pd.is_none() => p.pd = Some(ia(body, true)?).filter(|i| i.iaid == IAID),
                _ => {}
            }
        }
        Some(p)
    })()
    .ok_or(Invalid::Malformed)
}

/// What an accepted answer gives the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub na: Option<Lease>,
    pub pd: Option<Lease>,
}

/// The checks of an Advertise or Reply for client `duid` in `mode`, beyond the transaction
/// id (the caller maps that to the client). `renewing`: the leases a Renew asked to
/// extend, which must come back.
pub fn check(p: &Parsed, kind: u8, duid: &[u8], mode: Mode, renewing: Option<&Granted>) -> Result<Granted, Invalid> {
    if p.kind != kind {
        return Err(Invalid::WrongType);
    }
    if p.client_id != Some(duid) {
        return Err(Invalid::WrongClient);
    }
    if !p.server_id.is_some_and(|s| !s.is_empty() && s.len() <= MAX_SERVER_ID) {
        return Err(Invalid::NoServerId);
    }
    if p.status.is_some_and(|s| s != 0) {
        return Err(Invalid::Status);
    }
    let one = |ia: Option<Ia>, want: bool, old: Option<Lease>| -> Result<Option<Lease>, Invalid> {
        if !want {
            return Ok(None);
        }
        let ia = ia.ok_or(Invalid::NoLease)?;
        if ia.status.is_some_and(|s| s != 0) || ia.lease_status.is_some_and(|s| s != 0) {
            return Err(Invalid::IaStatus);
        }
        let l = ia.lease.ok_or(Invalid::NoLease)?;
        if l.valid == 0 {
            return Err(Invalid::ZeroLifetime);
        }
        if old.is_some_and(|o| (o.addr, o.plen) != (l.addr, l.plen)) {
            return Err(Invalid::NotSame);
        }
        Ok(Some(l))
    };
    Ok(Granted {
        na: one(p.na, mode.na(), renewing.and_then(|r| r.na))?,
        pd: one(p.pd, mode.pd(), renewing.and_then(|r| r.pd))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRV: &[u8] = &[0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

    fn na() -> Lease {
        Lease { addr: "2001:db8:1::1:5".parse().unwrap(), plen: 128, valid: 0 }
    }
    fn pd() -> Lease {
        Lease { addr: "2001:db8:8000:100::".parse().unwrap(), plen: 56, valid: 0 }
    }

    fn opt(code: u16, body: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend(u16::try_from(body.len()).expect("test option fits").to_be_bytes());
        v.extend(body);
        v
    }

    /// A server's answer, written independently of `encode`.
    fn answer(kind: u8, xid: u32, duid: &[u8], na_status: Option<u16>, valid: u32) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend(&xid.to_be_bytes()[1..]);
        m.extend(opt(OPT_SERVERID, SRV));
        m.extend(opt(OPT_CLIENTID, duid));
        let mut ia = [IAID.to_be_bytes(), 100u32.to_be_bytes(), 160u32.to_be_bytes()].concat();
        match na_status {
            Some(s) => ia.extend(opt(OPT_STATUS_CODE, &[&s.to_be_bytes()[..], b"no addresses"].concat())),
            None => {
                let body = [&na().addr.octets()[..], &200u32.to_be_bytes(), &valid.to_be_bytes()].concat();
                ia.extend(opt(OPT_IAADDR, &body));
            }
        }
        m.extend(opt(OPT_IA_NA, &ia));
        let mut ia = [IAID.to_be_bytes(), 100u32.to_be_bytes(), 160u32.to_be_bytes()].concat();
        let body = [&200u32.to_be_bytes()[..], &valid.to_be_bytes(), &[56], &pd().addr.octets()].concat();
        ia.extend(opt(OPT_IAPREFIX, &body));
        m.extend(opt(OPT_IA_PD, &ia));
        m
    }

    #[test]
    fn request_round_trips_through_the_parser() {
        let d = duid(7, 0x0102_0304);
        assert_eq!(d, [0, 3, 0, 1, 0, 7, 1, 2, 3, 4]);
        let mut buf = [0u8; MAX_OUT];
        let long_sid = [0x5a; MAX_SERVER_ID];
        let out = Out {
            kind: REQUEST,
            xid: 0xab_cdef,
            duid: &d,
            server_id: Some(&long_sid),
            na: Some(Some(na())),
            pd: Some(Some(pd())),
        };
        let n = encode(&out, &mut buf);
        assert!(n < MAX_OUT, "{n}");
        let p = parse(&buf[..n]).unwrap();
        assert_eq!((p.kind, p.xid), (REQUEST, 0xab_cdef));
        assert_eq!(p.client_id, Some(&d[..]));
        assert_eq!(p.server_id, Some(&long_sid[..]));
        assert_eq!(p.na.unwrap().lease, Some(na()));
        assert_eq!(p.pd.unwrap().lease, Some(pd()));
    }

    #[test]
    fn solicit_has_empty_ias() {
        let d = duid(1, 2);
        let mut buf = [0u8; MAX_OUT];
        let n = encode(&Out { kind: SOLICIT, xid: 5, duid: &d, server_id: None, na: Some(None), pd: None }, &mut buf);
        let p = parse(&buf[..n]).unwrap();
        assert_eq!(p.server_id, None);
        assert_eq!(p.na, Some(Ia { iaid: IAID, ..Ia::default() }));
        assert_eq!(p.pd, None);
        // Solicit, xid 5, Client ID (14), Option Request (8), Elapsed Time (6), empty IA_NA (16).
        assert_eq!(n, 4 + 14 + 8 + 6 + 16);
    }

    #[test]
    fn a_good_reply_is_granted_and_renews_the_same_leases() {
        let d = duid(1, 9);
        let m = answer(REPLY, 9, &d, None, 300);
        let p = parse(&m).unwrap();
        let g = check(&p, REPLY, &d, Mode::Both, None).unwrap();
        assert_eq!(g.na.map(|l| (l.addr, l.valid)), Some((na().addr, 300)));
        assert_eq!(g.pd.map(|l| (l.addr, l.plen)), Some((pd().addr, 56)));
        assert_eq!(check(&p, REPLY, &d, Mode::Both, Some(&g)), Ok(g));
        let other = Granted { na: Some(Lease { addr: "2001:db8:1::1:6".parse().unwrap(), ..na() }), pd: g.pd };
        assert_eq!(check(&p, REPLY, &d, Mode::Both, Some(&other)), Err(Invalid::NotSame));
    }

    #[test]
    fn ia_status_no_addrs_avail_is_a_failure() {
        let d = duid(1, 9);
        let m = answer(REPLY, 9, &d, Some(2), 300);
        let p = parse(&m).unwrap();
        assert_eq!(check(&p, REPLY, &d, Mode::Address, None), Err(Invalid::IaStatus));
        // The prefix alone is fine.
        assert!(check(&p, REPLY, &d, Mode::Prefix, None).is_ok());
    }

    #[test]
    fn zero_lifetime_wrong_client_and_wrong_type_are_refused() {
        let d = duid(1, 9);
        let p0 = answer(REPLY, 9, &d, None, 0);
        assert_eq!(check(&parse(&p0).unwrap(), REPLY, &d, Mode::Address, None), Err(Invalid::ZeroLifetime));
        let m = answer(ADVERTISE, 9, &d, None, 300);
        let p = parse(&m).unwrap();
        assert_eq!(check(&p, REPLY, &d, Mode::Address, None), Err(Invalid::WrongType));
        assert_eq!(check(&p, ADVERTISE, &duid(1, 10), Mode::Address, None), Err(Invalid::WrongClient));
        assert!(check(&p, ADVERTISE, &d, Mode::Address, None).is_ok());
    }

    #[test]
    fn truncated_answers_are_malformed_not_panics() {
        let d = duid(1, 9);
        let m = answer(REPLY, 9, &d, None, 300);
        for n in 0..m.len() {
            // Every prefix either parses (cut between options) or is refused.
            if let Ok(p) = parse(&m[..n]) {
                let _ = check(&p, REPLY, &d, Mode::Both, None);
            }
        }
        assert_eq!(parse(&m[..3]).unwrap_err(), Invalid::Malformed);
        assert_eq!(parse(&m[..10]).unwrap_err(), Invalid::Malformed);
    }
}
