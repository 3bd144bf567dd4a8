//! Entries of the XDP program's Renew map (`DHCPV6_RENEWS`, docs/fast-path.md "Renew"): what
//! a Renew for one bound IA is answered with in the kernel. Built here, beside the engine,
//! with the engine's own IA encoder (`ia::write`) and the same lifetimes `Allocator::grant`
//! gives, so the program's Reply cannot drift from the engine's. The daemon calls [`entry`]
//! for the leases it pre-extended and [`key`] for the ones it deletes; the differential
//! tests call the same functions.

use dhcpv6_common::{wire::msg, IfaceKey, RenewEntry, RenewKey, RENEW_IA_CAP, RENEW_KIND_ADDRESS, RENEW_KIND_PREFIX};

use crate::leases::{Lease, LeaseKind};
use crate::wire::Writer;

use super::config::Lifetimes;
use super::ia::{self, Granted, IaAnswer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FastRenewError {
    /// The program's key holds DUIDs of 3 to `RENEW_DUID_CAP` bytes: this client's Renews go
    /// up to userspace.
    #[error("DUID of {0} bytes does not fit the Renew map's key")]
    DuidLength(usize),
    #[error("the IA option is {0} bytes, more than the Renew map's {RENEW_IA_CAP}")]
    IaTooLong(usize),
    #[error("prefix length {0} is not a lease's")]
    PrefixLength(u8),
}

/// The map's `kind` for a lease kind (the IA option's code).
pub fn kind(k: LeaseKind) -> u8 {
    match k {
        LeaseKind::Address => RENEW_KIND_ADDRESS,
        LeaseKind::Prefix => RENEW_KIND_PREFIX,
    }
}

/// The map key of (arrival interface, DUID, IAID, kind).
pub fn key(iface: IfaceKey, duid: &[u8], iaid: u32, lease_kind: LeaseKind) -> Result<RenewKey, FastRenewError> {
    RenewKey::new(iface, duid, iaid, kind(lease_kind)).ok_or(FastRenewError::DuidLength(duid.len()))
}

/// The IA option the engine puts in a Renew's Reply for `lease` on a link with `lt`: the
/// lease with the link's preferred and valid lifetimes, the link's T1 and T2.
pub fn ia_option(lease: &Lease, lt: &Lifetimes) -> Vec<u8> {
    let answer = IaAnswer {
        kind: lease.kind,
        iaid: lease.iaid,
        leases: vec![Granted { addr: lease.addr, len: lease.prefix_len, preferred: lt.preferred, valid: lt.valid }],
        status: None,
        limit: None,
    };
    let mut w = Writer::message(msg::REPLY, [0; 3]);
    ia::write(&mut w, &answer, lt.t1, lt.t2);
    // An IA with one lease is far below any message limit; the header is not the IA's.
    let mut bytes = w.finish().unwrap_or_default();
    bytes.drain(..bytes.len().min(4));
    bytes
}

/// The sealed key and entry that answer a Renew for `lease` arriving on `iface` until
/// `answer_until_ns` (CLOCK_BOOTTIME). The caller keeps the daemon's invariant: the store
/// durably holds the lease past the moment this entry stops answering plus its valid lifetime.
pub fn entry(
    iface: IfaceKey,
    lease: &Lease,
    lt: &Lifetimes,
    answer_until_ns: u64,
) -> Result<(RenewKey, RenewEntry), FastRenewError> {
    let k = key(iface, &lease.duid, lease.iaid, lease.kind)?;
    let expected_len = match lease.kind {
        LeaseKind::Address => 128,
        LeaseKind::Prefix => lease.prefix_len,
    };
    if lease.prefix_len != expected_len || lease.prefix_len > 128 {
        return Err(FastRenewError::PrefixLength(lease.prefix_len));
    }
    let ia = ia_option(lease, lt);
    let ia_len = match u16::try_from(ia.len()) {
        Ok(n) if ia.len() <= RENEW_IA_CAP => n,
        _ => return Err(FastRenewError::IaTooLong(ia.len())),
    };
    let mut e = RenewEntry {
        answer_until_ns,
        check: 0,
        lease: lease.addr.octets(),
        prefix_len: lease.prefix_len,
        _pad: 0,
        ia_len,
        _pad2: 0,
        ia: [0; RENEW_IA_CAP],
    };
    e.ia[..ia.len()].copy_from_slice(&ia);
    e.seal(&k);
    Ok((k, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::LeaseState;
    use crate::wire::{IaNa, IaPd};

    fn lease(kind: LeaseKind, addr: &str, len: u8, duid: &[u8]) -> Lease {
        Lease {
            duid: duid.to_vec(),
            iaid: 7,
            kind,
            addr: addr.parse().unwrap(),
            prefix_len: len,
            iface: "eth1".into(),
            valid_until: 10_000,
            preferred_until: 5_000,
            state: LeaseState::Bound,
            next_hop: None,
            last_transaction: 0,
            relay: None,
        }
    }

    #[test]
    fn address_entry_holds_the_engines_ia_na_and_is_sealed() {
        let lt = Lifetimes { preferred: 3600, valid: 7200, t1: 1800, t2: 2880 };
        let l = lease(LeaseKind::Address, "2001:db8::5", 128, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 9]);
        let (k, e) = entry(IfaceKey::untagged(4), &l, &lt, 99).unwrap();
        assert_eq!((k.kind, k.iaid, k.duid_len, &k.duid[..10]), (RENEW_KIND_ADDRESS, 7, 10, &l.duid[..]));
        assert!(k.duid[10..].iter().all(|&b| b == 0));
        assert_eq!(e.ia_len, 44);
        let ia = IaNa::parse(&e.ia[4..44]).unwrap();
        assert_eq!((ia.iaid, ia.t1, ia.t2), (7, 1800, 2880));
        assert_eq!((ia.leases[0].addr, ia.leases[0].preferred, ia.leases[0].valid), (l.addr, 3600, 7200));
        assert!(e.is_sealed(&k));
        let mut other = k;
        other.iface = IfaceKey::untagged(5);
        assert!(!e.is_sealed(&other), "the seal covers the key");
        let mut torn = e;
        torn.ia[20] ^= 1;
        assert!(!torn.is_sealed(&k));
    }

    #[test]
    fn prefix_entry_and_refusals() {
        let lt = Lifetimes { preferred: 3600, valid: 7200, t1: 1800, t2: 2880 };
        let l = lease(LeaseKind::Prefix, "2001:db8:1:100::", 56, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 9]);
        let (k, e) = entry(IfaceKey::untagged(4), &l, &lt, 99).unwrap();
        assert_eq!((k.kind, e.ia_len, e.prefix_len), (RENEW_KIND_PREFIX, 45, 56));
        let pd = IaPd::parse(&e.ia[4..45]).unwrap();
        assert_eq!((pd.leases[0].prefix, pd.leases[0].prefix_len), (l.addr, 56));
        let long = lease(LeaseKind::Address, "2001:db8::5", 128, &[1; 33]);
        assert_eq!(entry(IfaceKey::untagged(4), &long, &lt, 99).unwrap_err(), FastRenewError::DuidLength(33));
        let bad = lease(LeaseKind::Address, "2001:db8::5", 64, &[1; 10]);
        assert_eq!(entry(IfaceKey::untagged(4), &bad, &lt, 99).unwrap_err(), FastRenewError::PrefixLength(64));
    }
}
