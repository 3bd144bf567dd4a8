//! What a link hands out: address ranges for IA_NA and prefix pools for IA_PD, parsed from the
//! command-line forms `START-END` (`--na-pool`) and `PREFIX/LEN:DELEGATED_LEN` (`--pd-pool`).
//!
//! Both are numbered as slots `0..=last_slot()` so that the allocator (`occupancy.rs`) can
//! work on plain integers: slot `i` of a range is `start + i`, slot `i` of a prefix pool is
//! the `i`-th delegated prefix. Slots are `u64`, so a pool holds at most 2^64 entries, which
//! a /64 of addresses or a /0 delegating /64s still fits.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// Why a pool string or pool definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("{0:?}: expected START-END, e.g. 2001:db8:1::1000-2001:db8:1::1fff")]
    RangeSyntax(String),
    #[error("{input:?}: {part:?} is not an IPv6 address")]
    BadAddress { input: String, part: String },
    #[error("range {start}-{end}: start is after end")]
    Reversed { start: Ipv6Addr, end: Ipv6Addr },
    #[error("range {start}-{end} holds more than 2^64 addresses")]
    RangeTooLarge { start: Ipv6Addr, end: Ipv6Addr },
    #[error("{0} cannot be handed out (multicast, link-local, loopback or unspecified)")]
    NotUnicast(Ipv6Addr),
    #[error("{0:?}: expected PREFIX/LEN:DELEGATED_LEN, e.g. 2001:db8:100::/40:56")]
    PrefixSyntax(String),
    #[error("{input:?}: {part:?} is not a prefix length (0 to 128)")]
    BadLength { input: String, part: String },
    #[error("{prefix}/{len} has bits set beyond its length")]
    HostBits { prefix: Ipv6Addr, len: u8 },
    #[error("{prefix}/{len}: delegated length /{delegated} must be at least /{len} and at most /128")]
    DelegatedLength { prefix: Ipv6Addr, len: u8, delegated: u8 },
    #[error("{prefix}/{len} delegating /{delegated} gives more than 2^64 prefixes")]
    TooManyPrefixes { prefix: Ipv6Addr, len: u8, delegated: u8 },
}

/// `len` leading one bits.
pub(crate) fn mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0)
}

/// True if `addr` lies in `prefix/len`.
pub(crate) fn in_prefix(addr: Ipv6Addr, prefix: Ipv6Addr, len: u8) -> bool {
    u128::from(addr) & mask(len) == u128::from(prefix) & mask(len)
}

/// Addresses that must never be leased: a client could not use them as a global address.
fn check_unicast(a: Ipv6Addr) -> Result<(), PoolError> {
    let bad = a.is_multicast() || a.is_unspecified() || a.is_loopback() || a.is_unicast_link_local();
    if bad {
        Err(PoolError::NotUnicast(a))
    } else {
        Ok(())
    }
}

/// An inclusive range of addresses for IA_NA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrRange {
    start: Ipv6Addr,
    end: Ipv6Addr,
}

impl AddrRange {
    pub fn new(start: Ipv6Addr, end: Ipv6Addr) -> Result<Self, PoolError> {
        check_unicast(start)?;
        check_unicast(end)?;
        let (s, e) = (u128::from(start), u128::from(end));
        if s > e {
            return Err(PoolError::Reversed { start, end });
        }
        if e - s > u128::from(u64::MAX) {
            return Err(PoolError::RangeTooLarge { start, end });
        }
        Ok(Self { start, end })
    }

    pub fn start(&self) -> Ipv6Addr {
        self.start
    }

    pub fn end(&self) -> Ipv6Addr {
        self.end
    }

    /// Number of addresses (up to 2^64, hence u128).
    pub fn size(&self) -> u128 {
        u128::from(self.end) - u128::from(self.start) + 1
    }

    pub fn contains(&self, a: Ipv6Addr) -> bool {
        (self.start..=self.end).contains(&a)
    }

    /// The on-link prefix the range belongs to: the prefix shared by start and end, but never
    /// longer than /64, because SLAAC-style links are /64 and a client's address is "on the
    /// link" (RFC 9915 section 18.3.3, Confirm) when it is in that /64, not only in the range.
    pub fn link_prefix(&self) -> (Ipv6Addr, u8) {
        let common = (u128::from(self.start) ^ u128::from(self.end)).leading_zeros() as u8;
        let len = common.min(64);
        (Ipv6Addr::from(u128::from(self.start) & mask(len)), len)
    }

    pub(crate) fn last_slot(&self) -> u64 {
        // Fits: `new` refuses ranges of more than 2^64 addresses.
        (u128::from(self.end) - u128::from(self.start)) as u64
    }

    pub(crate) fn slot_of(&self, a: Ipv6Addr) -> Option<u64> {
        self.contains(a).then(|| (u128::from(a) - u128::from(self.start)) as u64)
    }

    pub(crate) fn at(&self, slot: u64) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.start) + u128::from(slot))
    }
}

impl FromStr for AddrRange {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Self, PoolError> {
        let (a, b) = s.trim().split_once('-').ok_or_else(|| PoolError::RangeSyntax(s.to_string()))?;
        let parse = |part: &str| {
            part.trim()
                .parse::<Ipv6Addr>()
                .map_err(|_| PoolError::BadAddress { input: s.to_string(), part: part.trim().to_string() })
        };
        Self::new(parse(a)?, parse(b)?)
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A prefix from which prefixes of one length are delegated (IA_PD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixPool {
    prefix: Ipv6Addr,
    len: u8,
    delegated_len: u8,
}

impl PrefixPool {
    pub fn new(prefix: Ipv6Addr, len: u8, delegated_len: u8) -> Result<Self, PoolError> {
        check_unicast(prefix)?;
        if len > 128 || delegated_len < len || delegated_len > 128 || delegated_len == 0 {
            return Err(PoolError::DelegatedLength { prefix, len, delegated: delegated_len });
        }
        if u128::from(prefix) & !mask(len) != 0 {
            return Err(PoolError::HostBits { prefix, len });
        }
        if delegated_len - len > 64 {
            return Err(PoolError::TooManyPrefixes { prefix, len, delegated: delegated_len });
        }
        Ok(Self { prefix, len, delegated_len })
    }

    pub fn prefix(&self) -> Ipv6Addr {
        self.prefix
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn delegated_len(&self) -> u8 {
        self.delegated_len
    }

    /// Number of delegable prefixes.
    pub fn size(&self) -> u128 {
        1u128 << (self.delegated_len - self.len)
    }

    /// True if `p/l` overlaps the pool's space at all.
    pub fn overlaps(&self, p: Ipv6Addr, l: u8) -> bool {
        let l = l.min(self.len);
        in_prefix(p, self.prefix, l)
    }

    fn shift(&self) -> u32 {
        128 - u32::from(self.delegated_len)
    }

    pub(crate) fn last_slot(&self) -> u64 {
        (self.size() - 1) as u64
    }

    /// The slot of `p/l` if it is exactly one of the delegable prefixes.
    pub(crate) fn slot_of(&self, p: Ipv6Addr, l: u8) -> Option<u64> {
        let v = u128::from(p);
        let exact = l == self.delegated_len && in_prefix(p, self.prefix, self.len) && v & !mask(l) == 0;
        exact.then(|| ((v - u128::from(self.prefix)) >> self.shift()) as u64)
    }

    pub(crate) fn at(&self, slot: u64) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.prefix) + (u128::from(slot) << self.shift()))
    }

    /// The slots that `p/l` overlaps, as an inclusive range (for leases whose length does not
    /// match the pool, e.g. left over from an older configuration).
    pub(crate) fn covered_slots(&self, p: Ipv6Addr, l: u8) -> Option<(u64, u64)> {
        if !self.overlaps(p, l) {
            return None;
        }
        if l <= self.len {
            return Some((0, self.last_slot()));
        }
        let first = ((u128::from(p) & mask(l.min(self.delegated_len))) - u128::from(self.prefix)) >> self.shift();
        let count = if l >= self.delegated_len { 1 } else { 1u128 << (self.delegated_len - l) };
        Some((first as u64, (first + count - 1) as u64))
    }
}

impl FromStr for PrefixPool {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Self, PoolError> {
        let syntax = || PoolError::PrefixSyntax(s.to_string());
        let (addr, lens) = s.trim().split_once('/').ok_or_else(syntax)?;
        let (len, delegated) = lens.split_once(':').ok_or_else(syntax)?;
        let prefix = addr
            .parse::<Ipv6Addr>()
            .map_err(|_| PoolError::BadAddress { input: s.to_string(), part: addr.to_string() })?;
        let length = |part: &str| {
            part.parse::<u8>()
                .ok()
                .filter(|l| *l <= 128)
                .ok_or_else(|| PoolError::BadLength { input: s.to_string(), part: part.to_string() })
        };
        Self::new(prefix, length(len)?, length(delegated)?)
    }
}

impl fmt::Display for PrefixPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.prefix, self.len, self.delegated_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ranges() {
        let r: AddrRange = "2001:db8:1::100-2001:db8:1::1ff".parse().unwrap();
        assert_eq!((r.start(), r.end(), r.size()), (a("2001:db8:1::100"), a("2001:db8:1::1ff"), 256));
        assert_eq!(r.link_prefix(), (a("2001:db8:1::"), 64));
        assert_eq!(r.slot_of(a("2001:db8:1::101")), Some(1));
        assert_eq!(r.at(255), a("2001:db8:1::1ff"));
        assert_eq!(r.slot_of(a("2001:db8:1::200")), None);
        assert_eq!(r.to_string().parse::<AddrRange>().unwrap(), r);
        // Wider than a /64: the link prefix is what start and end share.
        let w: AddrRange = "2001:db8:0:0:8000::-2001:db8:0:1:7fff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(w.link_prefix(), (a("2001:db8::"), 63));
    }

    #[test]
    fn range_errors_are_specific() {
        assert!(matches!("2001:db8::1".parse::<AddrRange>(), Err(PoolError::RangeSyntax(_))));
        assert!(
            matches!("2001:db8::1-zz".parse::<AddrRange>(), Err(PoolError::BadAddress { part, .. }) if part == "zz")
        );
        assert!(matches!("2001:db8::9-2001:db8::1".parse::<AddrRange>(), Err(PoolError::Reversed { .. })));
        assert!(matches!("2001:db8::-2001:db9::".parse::<AddrRange>(), Err(PoolError::RangeTooLarge { .. })));
        assert!(matches!("fe80::1-fe80::9".parse::<AddrRange>(), Err(PoolError::NotUnicast(_))));
        // Exactly 2^64 addresses is allowed.
        assert!("2001:db8::-2001:db8::ffff:ffff:ffff:ffff".parse::<AddrRange>().is_ok());
    }

    #[test]
    fn parses_prefix_pools() {
        let p: PrefixPool = "2001:db8:100::/40:56".parse().unwrap();
        assert_eq!((p.prefix(), p.prefix_len(), p.delegated_len(), p.size()), (a("2001:db8:100::"), 40, 56, 65536));
        assert_eq!(p.at(0), a("2001:db8:100::"));
        assert_eq!(p.at(1), a("2001:db8:100:100::"));
        assert_eq!(p.at(65535), a("2001:db8:1ff:ff00::"));
        assert_eq!(p.slot_of(a("2001:db8:100:100::"), 56), Some(1));
        assert_eq!(p.slot_of(a("2001:db8:100:100::"), 64), None, "wrong length");
        assert_eq!(p.slot_of(a("2001:db8:100:101::"), 56), None, "host bits");
        assert_eq!(p.slot_of(a("2001:db8:200::"), 56), None, "outside");
        assert_eq!(p.covered_slots(a("2001:db8:100:200::"), 55), Some((2, 3)));
        assert_eq!(p.covered_slots(a("2001:db8:100:200::"), 64), Some((2, 2)));
        assert_eq!(p.covered_slots(a("2001:db8::"), 32), Some((0, 65535)));
        assert_eq!(p.covered_slots(a("2001:db8:200::"), 48), None);
        assert_eq!(p.to_string().parse::<PrefixPool>().unwrap(), p);
    }

    #[test]
    fn prefix_pool_errors_are_specific() {
        assert!(matches!("2001:db8::/40".parse::<PrefixPool>(), Err(PoolError::PrefixSyntax(_))));
        assert!(matches!("2001:db8::40:56".parse::<PrefixPool>(), Err(PoolError::PrefixSyntax(_))));
        assert!(matches!("2001:db8::/x:56".parse::<PrefixPool>(), Err(PoolError::BadLength { .. })));
        assert!(matches!("2001:db8::/40:129".parse::<PrefixPool>(), Err(PoolError::BadLength { .. })));
        assert!(matches!("2001:db8::1/40:56".parse::<PrefixPool>(), Err(PoolError::HostBits { .. })));
        assert!(matches!("2001:db8::/56:48".parse::<PrefixPool>(), Err(PoolError::DelegatedLength { .. })));
        assert!(matches!("2000::/3:80".parse::<PrefixPool>(), Err(PoolError::TooManyPrefixes { .. })));
        assert!(matches!("ff00::/8:16".parse::<PrefixPool>(), Err(PoolError::NotUnicast(_))));
        assert!("2001:db8::/32:64".parse::<PrefixPool>().is_ok());
    }
}
