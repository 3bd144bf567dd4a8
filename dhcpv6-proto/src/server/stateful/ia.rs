//! IA_NA and IA_PD options (RFC 9915 sections 21.4, 21.6, 21.21, 21.22): what a client asks
//! for and what it gets, in the engine's terms. The bytes are `wire::ia`'s business.
//!
//! Lifetimes and T1/T2 that clients put in their IAs are read past and never used: the
//! server decides them (RFC 9915 section 18.3.2 lets a server ignore them, and trusting them
//! would let a client hold an address for as long as it likes).

use std::net::Ipv6Addr;

use dhcpv6_common::wire::{opt, status};

use crate::leases::LeaseKind;
use crate::stats::Counter;
use crate::wire::{IaAddress, IaNa, IaPd, IaPrefix, Message, StatusCode, WireError, Writer};

use super::pools::mask;

/// An address (`len` 128) or prefix the client named in an IA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hint {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl Hint {
    /// False for a pure length hint (`::/56`, RFC 8168 section 3.1).
    pub fn is_specified(&self) -> bool {
        !self.addr.is_unspecified()
    }
}

/// One IA from the client's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IaRequest {
    pub kind: LeaseKind,
    pub iaid: u32,
    pub hints: Vec<Hint>,
}

impl IaRequest {
    /// The first prefix length the client hinted, if any (RFC 8168).
    pub fn length_hint(&self) -> Option<u8> {
        self.hints.iter().map(|h| h.len).find(|l| (1..=128).contains(l))
    }
}

impl Hint {
    fn of_address(a: &IaAddress) -> Self {
        Self { addr: a.addr, len: 128 }
    }

    /// Host bits beyond the hinted length are cleared; length 0 with a prefix is a prefix
    /// hint without a length (RFC 8168).
    fn of_prefix(p: &IaPrefix) -> Self {
        let keep = if p.prefix_len == 0 { u128::MAX } else { mask(p.prefix_len) };
        Self { addr: Ipv6Addr::from(u128::from(p.prefix) & keep), len: p.prefix_len }
    }
}

/// IAs of one kind served per message. A CPE uses one IA_NA and one IA_PD; without a cap
/// a single Request of 64 KiB could bind thousands of addresses to one client. IAs past
/// the cap are left out of the reply: the client gets nothing for them, as from a server
/// that does not serve that IA.
pub(crate) const MAX_IAS_PER_KIND: usize = 16;

/// The IA_NA and IA_PD options, in message order. IA_TA is ignored (RFC 9915 obsoletes
/// it); a repeated IAID of the same kind is ignored after its first appearance, so one IA
/// never gets two bindings; IAs past `MAX_IAS_PER_KIND` are ignored.
pub(crate) fn parse(m: &Message<'_>) -> Result<Vec<IaRequest>, WireError> {
    let mut out: Vec<IaRequest> = Vec::new();
    for o in m.options() {
        let (kind, iaid, hints) = match o.code {
            opt::IA_NA => {
                let ia = IaNa::parse(o.data)?;
                (LeaseKind::Address, ia.iaid, ia.leases.iter().map(Hint::of_address).collect())
            }
            opt::IA_PD => {
                let ia = IaPd::parse(o.data)?;
                (LeaseKind::Prefix, ia.iaid, ia.leases.iter().map(Hint::of_prefix).collect())
            }
            _ => continue,
        };
        let same_kind = out.iter().filter(|ia| ia.kind == kind);
        if same_kind.clone().count() < MAX_IAS_PER_KIND && !same_kind.clone().any(|ia| ia.iaid == iaid) {
            out.push(IaRequest { kind, iaid, hints });
        }
    }
    Ok(out)
}

/// An address or prefix in a reply, with the lifetimes to send (0 and 0: stop using it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Granted {
    pub addr: Ipv6Addr,
    pub len: u8,
    pub preferred: u32,
    pub valid: u32,
}

/// One IA in a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IaAnswer {
    pub kind: LeaseKind,
    pub iaid: u32,
    pub leases: Vec<Granted>,
    pub status: Option<(u16, &'static str)>,
    /// The limit that kept this IA from a new lease, to be counted.
    pub limit: Option<Counter>,
}

impl IaAnswer {
    pub fn new(ia: &IaRequest) -> Self {
        Self { kind: ia.kind, iaid: ia.iaid, leases: Vec::new(), status: None, limit: None }
    }

    pub fn with_status(ia: &IaRequest, code: u16, msg: &'static str) -> Self {
        Self { status: Some((code, msg)), ..Self::new(ia) }
    }

    /// True if the client gets something usable from this IA.
    pub fn has_valid(&self) -> bool {
        self.leases.iter().any(|g| g.valid > 0)
    }

    /// NoAddrsAvail or NoPrefixAvail, inside the IA (RFC 9915 sections 18.3.2 and 18.3.9).
    pub fn unavailable(ia: &IaRequest) -> Self {
        match ia.kind {
            LeaseKind::Address => Self::with_status(ia, status::NO_ADDRS_AVAIL, "no addresses available"),
            LeaseKind::Prefix => Self::with_status(ia, status::NO_PREFIX_AVAIL, "no prefixes available"),
        }
    }
}

/// Appends the IA with the link's T1/T2 (the same for every IA of a message).
pub(crate) fn write(w: &mut Writer, a: &IaAnswer, t1: u32, t2: u32) {
    let status = a.status.map(|(code, msg)| StatusCode::new(code, msg));
    match a.kind {
        LeaseKind::Address => {
            let leases = a
                .leases
                .iter()
                .map(|g| IaAddress { addr: g.addr, preferred: g.preferred, valid: g.valid, status: None })
                .collect();
            IaNa { iaid: a.iaid, t1, t2, leases, status }.emit(w);
        }
        LeaseKind::Prefix => {
            let leases = a
                .leases
                .iter()
                .map(|g| IaPrefix {
                    preferred: g.preferred,
                    valid: g.valid,
                    prefix_len: g.len,
                    prefix: g.addr,
                    status: None,
                })
                .collect();
            IaPd { iaid: a.iaid, t1, t2, leases, status }.emit(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::writer::test_option as encode_option;
    use dhcpv6_common::wire::msg;

    fn message(opts: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![msg::SOLICIT, 0, 0, 1];
        for o in opts {
            v.extend_from_slice(o);
        }
        v
    }

    fn ia_na(iaid: u32, inner: &[u8]) -> Vec<u8> {
        let mut d = iaid.to_be_bytes().to_vec();
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(inner);
        encode_option(opt::IA_NA, &d)
    }

    #[test]
    fn reads_hints_and_ignores_lifetimes() {
        let mut addr = "2001:db8::5".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        addr.extend_from_slice(&[0xff; 8]);
        let iaaddr = encode_option(opt::IAADDR, &addr);
        let mut pfx = vec![0xff; 8];
        pfx.push(56);
        pfx.extend_from_slice(&"2001:db8:1:ff::".parse::<Ipv6Addr>().unwrap().octets());
        let iaprefix = encode_option(opt::IAPREFIX, &pfx);
        let mut pd = 9u32.to_be_bytes().to_vec();
        pd.extend_from_slice(&[0; 8]);
        pd.extend_from_slice(&iaprefix);
        let pd = encode_option(opt::IA_PD, &pd);
        let m = message(&[ia_na(1, &iaaddr), ia_na(1, &[]), pd]);
        let ias = parse(&Message::parse(&m).unwrap()).unwrap();
        assert_eq!(ias.len(), 2, "the repeated IAID 1 is ignored");
        assert_eq!(ias[0].hints, vec![Hint { addr: "2001:db8::5".parse().unwrap(), len: 128 }]);
        // Host bits beyond the hinted length are cleared.
        assert_eq!(ias[1].hints, vec![Hint { addr: "2001:db8:1::".parse().unwrap(), len: 56 }]);
        assert_eq!(ias[1].length_hint(), Some(56));
    }

    #[test]
    fn ias_past_the_cap_are_ignored() {
        let many: Vec<Vec<u8>> = (0..40).map(|i| ia_na(i, &[])).collect();
        let ias = parse(&Message::parse(&message(&many)).unwrap()).unwrap();
        assert_eq!(ias.len(), MAX_IAS_PER_KIND);
        assert_eq!(ias.last().map(|ia| ia.iaid), Some(MAX_IAS_PER_KIND as u32 - 1));
    }

    #[test]
    fn short_ia_and_short_iaaddr_are_malformed() {
        let short = encode_option(opt::IA_NA, &[0; 11]);
        assert!(parse(&Message::parse(&message(&[short])).unwrap()).is_err());
        let iaaddr = encode_option(opt::IAADDR, &[0; 23]);
        assert!(parse(&Message::parse(&message(&[ia_na(1, &iaaddr)])).unwrap()).is_err());
        let broken_inner = ia_na(1, &[0, 5, 0, 30, 1]);
        assert!(parse(&Message::parse(&message(&[broken_inner])).unwrap()).is_err());
    }
}
